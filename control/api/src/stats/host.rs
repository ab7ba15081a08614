//! Host mode's part of the statistics (`rstwall run --host`): each
//! worker's ring buffer, and what the kernel side counted — segments
//! handed over and lost, the kernel's verdicts beside rstwall's classes,
//! resets sent by reason. `rstwall-host` counts them; the daemon copies
//! them here as they are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::host::AgreementCounts;

/// One host-mode worker's ring buffer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostWorker {
    /// The ring buffer the worker reads.
    pub ring: usize,
    /// What the worker counted of it.
    #[serde(flatten)]
    pub counts: HostCounts,
}

/// What host-mode workers count of their ring buffers: one worker's in
/// [`HostWorker`], all of them summed in [`HostTotals`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCounts {
    /// Header records read, and their bytes.
    pub records: u64,
    pub record_bytes: u64,
    /// The packets' own bytes (a GSO packet counts its whole length).
    pub wire_bytes: u64,
    /// Records shorter than they announce (a kernel/userspace mismatch).
    pub bad_records: u64,
    /// Judged RSTs the correlator had no room for.
    pub rsts_dropped: u64,
}

impl HostCounts {
    /// Add `other`'s counts to these.
    pub fn add(&mut self, other: &HostCounts) {
        self.records += other.records;
        self.record_bytes += other.record_bytes;
        self.wire_bytes += other.wire_bytes;
        self.bad_records += other.bad_records;
        self.rsts_dropped += other.rsts_dropped;
    }
}

/// [`HostWorker`]'s counts summed over the workers.
pub type HostTotals = HostCounts;

/// What host mode's kernel side and correlator counted since start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKernel {
    /// Header records the tc programs handed to the rings.
    pub records: u64,
    /// Records lost to full rings (their segments are still counted).
    pub records_lost: u64,
    /// Kernel events (verdicts, owners) read, and lost to a full ring.
    pub kernel_events: u64,
    pub kernel_events_lost: u64,
    /// RST events made (one per RST).
    pub rsts: u64,
    /// rstwall's class against the kernel's verdict.
    pub agreement: AgreementCounts,
    /// RSTs this host sent, by the kernel's reason (`NO_SOCKET`...).
    pub resets_sent: BTreeMap<String, u64>,
    /// Events nobody read in time (the daemon logs each disagreement and
    /// counts the rest).
    pub events_dropped: u64,
}
