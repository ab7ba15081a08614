//! What a host-mode worker adds to the statistics every source publishes
//! ([`rstwall_source::WorkerStats`]).

use serde::Serialize;

use rstwall_source::SourceStats;

/// One worker's own statistics: its ring buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostWorkerStats {
    /// The ring buffer the worker reads.
    pub ring: usize,
    /// Header records read from it.
    pub records: u64,
    /// Their bytes (fixed parts and headers).
    pub record_bytes: u64,
    /// The packets' own bytes (a GSO packet counts its whole length).
    pub wire_bytes: u64,
    /// Records too short to hold what their fixed part announces (never
    /// expected: a kernel/userspace mismatch).
    pub bad_records: u64,
    /// Judged RSTs the correlator had no room for (its channel was full).
    pub rsts_dropped: u64,
}

/// [`HostWorkerStats`] summed over workers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostTotals {
    pub records: u64,
    pub record_bytes: u64,
    pub wire_bytes: u64,
    pub bad_records: u64,
    pub rsts_dropped: u64,
}

impl SourceStats for HostWorkerStats {
    type Totals = HostTotals;

    fn add_to(&self, t: &mut HostTotals) {
        t.records += self.records;
        t.record_bytes += self.record_bytes;
        t.wire_bytes += self.wire_bytes;
        t.bad_records += self.bad_records;
        t.rsts_dropped += self.rsts_dropped;
    }
}
