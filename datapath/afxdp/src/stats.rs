//! What an AF_XDP worker adds to the statistics every source publishes
//! ([`rstwall_source::WorkerStats`]): its sockets with their ring
//! statistics, its UMEM frames, and the frames the TX ring had no room for.
//! The types are the control API's ([`rstwall_api::stats::afxdp`]), so
//! the statistics document shows exactly what the workers counted.

use std::ops::Deref;

use rstwall_api::stats::afxdp::XskWorker;
pub use rstwall_api::stats::afxdp::{SocketStats, XskTotals};
use rstwall_source::SourceStats;

use crate::socket::XskMode;

/// One AF_XDP worker's own statistics, as it publishes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XskStats(pub XskWorker);

impl Deref for XskStats {
    type Target = XskWorker;
    fn deref(&self) -> &XskWorker {
        &self.0
    }
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
        if let Some(g) = &self.guard {
            t.guard.get_or_insert_with(Default::default).merge(g);
        }
    }
}
