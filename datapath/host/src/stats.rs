//! What a host-mode worker adds to the statistics every source publishes
//! ([`rstwall_source::WorkerStats`]): its ring buffer. The document types
//! are rstwall-api's ([`HostWorker`], [`HostTotals`]), so the statistics
//! document shows exactly what the workers count.

use serde::Serialize;

use rstwall_source::SourceStats;

pub use rstwall_api::stats::host::{HostTotals, HostWorker};

/// One worker's own statistics: its ring buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HostWorkerStats(pub HostWorker);

impl SourceStats for HostWorkerStats {
    type Totals = HostTotals;

    fn add_to(&self, t: &mut HostTotals) {
        t.add(&self.0.counts);
    }
}
