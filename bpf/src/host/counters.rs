//! Host mode's kernel counters, summed over CPUs.

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use rstwall_api::stats::FrameCounts;
use rstwall_engine::class::FlagClass;
use serde::Serialize;

use crate::error::{BpfError, Errno};
use crate::shared::host::{HostCounter, TraceCounter};

/// Every slot of a PERCPU_ARRAY of u64 (`slots` of them), summed over CPUs.
pub(crate) fn per_cpu_totals(
    map: &MapHandle,
    name: &'static str,
    slots: usize,
) -> Result<Vec<u64>, BpfError> {
    (0..slots as u32)
        .map(|key| {
            let per_cpu = map
                .lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| BpfError::Map {
                    map: name,
                    op: format!("reading slot {key}"),
                    errno: Errno::from(&e),
                })?
                .unwrap_or_default();
            Ok(per_cpu
                .iter()
                .filter_map(|v| v.get(..8))
                .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
                .fold(0u64, u64::wrapping_add))
        })
        .collect()
}

/// The tc programs' counters (`host_counters`).
///
/// Every packet is in exactly one of the flag classes, `non_tcp` and
/// `malformed`; every TCP segment in exactly one of `records` and
/// `records_lost`. So [`FrameCounts::tcp`] equals `records +
/// records_lost`, up to packets in flight while the CPUs are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostCounters {
    /// TCP segments by flag class, indexed by [`FlagClass::index`].
    pub flag_classes: [u64; FlagClass::COUNT],
    pub non_tcp: u64,
    pub malformed: u64,
    /// Header records handed to a ring.
    pub records: u64,
    /// Records lost because their ring was full.
    pub records_lost: u64,
}

impl HostCounters {
    pub(crate) fn from_totals(t: &[u64]) -> HostCounters {
        let at = |c: HostCounter| t.get(c.index()).copied().unwrap_or(0);
        let mut flag_classes = [0; FlagClass::COUNT];
        for (i, slot) in flag_classes.iter_mut().enumerate() {
            *slot = at(HostCounter::ALL[i]);
        }
        HostCounters {
            flag_classes,
            non_tcp: at(HostCounter::NonTcp),
            malformed: at(HostCounter::Malformed),
            records: at(HostCounter::Records),
            records_lost: at(HostCounter::RecordsLost),
        }
    }

    /// What was counted since `earlier` (a counter that went backwards,
    /// after a reload, reads as 0).
    pub fn since(&self, earlier: &HostCounters) -> HostCounters {
        let mut out = *self;
        for (o, e) in out.flag_classes.iter_mut().zip(earlier.flag_classes) {
            *o = o.saturating_sub(e);
        }
        out.non_tcp = self.non_tcp.saturating_sub(earlier.non_tcp);
        out.malformed = self.malformed.saturating_sub(earlier.malformed);
        out.records = self.records.saturating_sub(earlier.records);
        out.records_lost = self.records_lost.saturating_sub(earlier.records_lost);
        out
    }
}

impl FrameCounts for HostCounters {
    fn frame_counts(&self) -> (&[u64; FlagClass::COUNT], u64, u64) {
        (&self.flag_classes, self.non_tcp, self.malformed)
    }
}

/// The tracing programs' counters (`host_tcounters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TraceCounters {
    /// Kernel events written to `host_events`.
    pub events: u64,
    /// Kernel events lost because `host_events` was full.
    pub events_lost: u64,
    /// Socket owners recorded in process context.
    pub owners: u64,
    /// Kernel memory reads that failed (a locked-down kernel).
    pub read_failed: u64,
}

impl TraceCounters {
    pub(crate) fn from_totals(t: &[u64]) -> TraceCounters {
        let at = |c: TraceCounter| t.get(c.index()).copied().unwrap_or(0);
        TraceCounters {
            events: at(TraceCounter::Events),
            events_lost: at(TraceCounter::EventsLost),
            owners: at(TraceCounter::Owners),
            read_failed: at(TraceCounter::ReadFailed),
        }
    }
}
