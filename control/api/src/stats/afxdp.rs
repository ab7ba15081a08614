//! The AF_XDP source's part of the statistics: its sockets with their ring
//! statistics, its UMEM frames, and the frames the TX ring had no room
//! for. `rstwall-afxdp`'s workers fill these; the documents show them as
//! they are.

use serde::{Deserialize, Serialize};

rstwall_engine::closed_enum! {
    /// How a socket moves frames between the NIC and the UMEM: one name
    /// for the option value (`--xsk-mode zerocopy`), the documents (status
    /// and statistics: `xsk_mode`, each socket's `mode`), the log and the
    /// metrics.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum XskMode: "AF_XDP mode" {
        /// The driver DMAs straight into the UMEM.
        ZeroCopy = "zerocopy",
        /// The kernel copies between its buffers and the UMEM (any driver,
        /// veth, generic XDP).
        Copy,
    }
}

rstwall_engine::closed_enum! {
    /// How a worker waits for frames (`poll` in the config, `--poll`): one
    /// name for the option value, the documents (each socket's `poll`),
    /// the log and the metrics.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub enum PollMode: "poll mode" {
        /// Spin a little when idle, then sleep in poll() until frames
        /// arrive (need_wakeup): no CPU when idle, a wake-up's latency.
        #[default]
        Wakeup,
        /// Never sleep: one CPU per worker at 100%, always.
        Spin,
        /// Spin, and drive the driver's NAPI from the worker
        /// (SO_PREFER_BUSY_POLL, SO_BUSY_POLL, SO_BUSY_POLL_BUDGET; a
        /// recvfrom()/sendto() each iteration).
        Busy,
    }
}

/// One AF_XDP worker's own statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XskWorker {
    /// The queue index the worker serves on every port.
    pub queue: u32,
    /// Frames passed with no room on the TX ring (dropped, counted).
    pub tx_ring_full_drops: u64,
    pub sockets: Vec<SocketStats>,
    pub frames: FrameStats,
    /// The in-kernel RST guard's entries this worker keeps (`--rst-guard`,
    /// inline only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardStats>,
}

/// What a worker did to the RST guard's map: the flows it guards (their
/// acceptance state in the map, so that their spoofed RSTs die in XDP)
/// and how entries came and went. The drops themselves are the XDP
/// counters' `guard_*`, merged into the RST classes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardStats {
    /// Entries made, removed (flow closed or expired, or at stop) and
    /// rewritten (the flow's state moved).
    pub inserted: u64,
    pub removed: u64,
    pub replaced: u64,
    /// Map operations that failed (the flow stays unguarded).
    pub errors: u64,
    /// Flows that found the worker's share of the map full (unguarded).
    pub full: u64,
    /// Flows guarded now.
    pub guarded: u64,
}

impl GuardStats {
    pub fn merge(&mut self, o: &GuardStats) {
        self.inserted += o.inserted;
        self.removed += o.removed;
        self.replaced += o.replaced;
        self.errors += o.errors;
        self.full += o.full;
        self.guarded += o.guarded;
    }
}

/// [`XskWorker`] summed over workers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XskTotals {
    pub tx_ring_full_drops: u64,
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub ring: RingStats,
    pub frames: FrameStats,
    /// Sockets per bind mode.
    pub zerocopy_sockets: usize,
    pub copy_sockets: usize,
    /// The RST guard's entries, over the workers that keep them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardStats>,
}

impl XskTotals {
    /// "zerocopy", "copy", or "mixed (zerocopy N, copy M)": the documents'
    /// `xsk_mode`.
    pub fn xsk_mode(&self) -> String {
        match (self.zerocopy_sockets, self.copy_sockets) {
            (0, 0) => "none".into(),
            (_, 0) => XskMode::ZeroCopy.as_str().into(),
            (0, _) => XskMode::Copy.as_str().into(),
            (z, c) => format!(
                "mixed ({} {z}, {} {c})",
                XskMode::ZeroCopy.as_str(),
                XskMode::Copy.as_str()
            ),
        }
    }
}

/// One socket (one port's queue) as its worker sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketStats {
    pub port: String,
    pub queue: u32,
    pub mode: XskMode,
    /// How the worker waits for this socket's frames: the mode in effect,
    /// which is not the configured one when `poll_fallback` says why.
    #[serde(default)]
    pub poll: PollMode,
    /// Why the configured poll mode is not in effect (busy polling refused
    /// by the kernel, or no NAPI behind the socket to poll); absent when it
    /// is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_fallback: Option<String>,
    /// The NAPI instance the kernel saw this socket's frames come from
    /// (SO_INCOMING_NAPI_ID, as of the last publish); 0: none yet, or a
    /// receive path without NAPI — busy polling has nothing to poll then.
    #[serde(default)]
    pub napi_id: u32,
    /// recvfrom() calls made to busy-poll the driver (`busy` only).
    #[serde(default)]
    pub busy_polls: u64,
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

/// The kernel's XDP_STATISTICS for one socket (cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RingStats {
    /// Received frames dropped for other reasons (e.g. larger than a frame).
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Received frames dropped because the RX ring was full: the worker
    /// fell behind.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty when woken.
    pub tx_ring_empty_descs: u64,
}

impl RingStats {
    pub fn merge(&mut self, o: &RingStats) {
        self.rx_dropped += o.rx_dropped;
        self.rx_invalid_descs += o.rx_invalid_descs;
        self.tx_invalid_descs += o.tx_invalid_descs;
        self.rx_ring_full += o.rx_ring_full;
        self.rx_fill_ring_empty_descs += o.rx_fill_ring_empty_descs;
        self.tx_ring_empty_descs += o.tx_ring_empty_descs;
    }
}

/// A worker's frame accounting (`rstwall-afxdp`'s ledger): where its UMEM
/// frames are, by the names of its places, and the ones lost track of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameStats {
    /// Frames the worker owns.
    pub total: u64,
    pub free: u64,
    /// With the kernel for receiving (fill ring, driver, RX ring).
    pub receive: u64,
    /// Being judged right now (0 between batches).
    pub in_hand: u64,
    /// With the kernel for sending (TX ring, driver, completion ring).
    pub transmit: u64,
    /// Frames the kernel will never give back (stuck in transmit over two
    /// quiet audits).
    pub leaked: u64,
    /// Addresses handed back that were not where the ledger had them.
    pub ledger_errors: u64,
}

impl FrameStats {
    /// Add another worker's frames (for totals over workers).
    pub fn merge(&mut self, o: &FrameStats) {
        self.total += o.total;
        self.free += o.free;
        self.receive += o.receive;
        self.in_hand += o.in_hand;
        self.transmit += o.transmit;
        self.leaked += o.leaked;
        self.ledger_errors += o.ledger_errors;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_are_consistent() {
        rstwall_engine::names::assert_consistent::<XskMode>();
        let t = |zerocopy_sockets, copy_sockets| XskTotals {
            zerocopy_sockets,
            copy_sockets,
            ..XskTotals::default()
        };
        assert_eq!(t(2, 0).xsk_mode(), "zerocopy");
        assert_eq!(t(0, 2).xsk_mode(), "copy");
        assert_eq!(t(1, 3).xsk_mode(), "mixed (zerocopy 1, copy 3)");
    }
}
