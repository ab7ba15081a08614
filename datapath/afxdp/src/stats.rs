//! What an AF_XDP worker adds to the statistics every source publishes
//! ([`rstwall_source::WorkerStats`]): its sockets with their ring
//! statistics, its UMEM frames, and the frames the TX ring had no room for.

use serde::Serialize;

use rstwall_source::SourceStats;

use crate::ledger::FrameStats;
use crate::socket::{RingStats, XskMode};

/// One socket (one port's queue) as its worker sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SocketStats {
    pub port: String,
    pub queue: u32,
    pub mode: XskMode,
    /// Frames taken from this socket's RX ring.
    pub rx_frames: u64,
    /// Frames submitted on this socket's TX ring.
    pub tx_frames: u64,
    /// sendto() kicks for TX, and recvfrom() kicks for the fill ring.
    pub tx_wakeups: u64,
    pub fill_wakeups: u64,
    /// XDP_STATISTICS as of the last publish.
    pub ring: RingStats,
}

/// One AF_XDP worker's own statistics.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct XskStats {
    /// The queue index the worker serves on every port.
    pub queue: u32,
    /// Frames passed with no room on the TX ring (dropped, counted).
    pub tx_ring_full_drops: u64,
    pub sockets: Vec<SocketStats>,
    pub frames: FrameStats,
}

/// [`XskStats`] summed over workers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct XskTotals {
    pub tx_ring_full_drops: u64,
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub ring: RingStats,
    pub frames: FrameStats,
    /// Sockets per bind mode.
    pub zerocopy_sockets: usize,
    pub copy_sockets: usize,
}

impl SourceStats for XskStats {
    type Totals = XskTotals;

    fn add_to(&self, t: &mut XskTotals) {
        t.tx_ring_full_drops += self.tx_ring_full_drops;
        for s in &self.sockets {
            t.rx_frames += s.rx_frames;
            t.tx_frames += s.tx_frames;
            t.ring.merge(&s.ring);
            match s.mode {
                XskMode::ZeroCopy => t.zerocopy_sockets += 1,
                XskMode::Copy => t.copy_sockets += 1,
            }
        }
        t.frames.merge(&self.frames);
    }
}

impl XskTotals {
    /// "zerocopy", "copy", or "mixed (zerocopy N, copy M)".
    pub fn xsk_mode(&self) -> String {
        match (self.zerocopy_sockets, self.copy_sockets) {
            (0, 0) => "none".into(),
            (_, 0) => XskMode::ZeroCopy.as_str().into(),
            (0, _) => XskMode::Copy.as_str().into(),
            (z, c) => format!("mixed (zerocopy {z}, copy {c})"),
        }
    }
}
