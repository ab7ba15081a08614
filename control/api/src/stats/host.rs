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
    /// Header records read from it, and their bytes.
    pub records: u64,
    pub record_bytes: u64,
    /// The packets' own bytes (a GSO packet counts its whole length).
    pub wire_bytes: u64,
    /// Records shorter than they announce (a kernel/userspace mismatch).
    pub bad_records: u64,
    /// Judged RSTs the correlator had no room for.
    pub rsts_dropped: u64,
}

/// [`HostWorker`] summed over the workers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostTotals {
    pub records: u64,
    pub record_bytes: u64,
    pub wire_bytes: u64,
    pub bad_records: u64,
    pub rsts_dropped: u64,
}

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
