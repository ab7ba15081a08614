//! The per-second window: counts for each of the last [`RATE_WINDOW`]
//! seconds, and the rates alert rules watch.

use serde::{Deserialize, Serialize};

use crate::class::RstClass;

/// Seconds of per-second history kept.
pub const RATE_WINDOW: usize = 60;

/// Counts for one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondStats {
    /// Unix second these counts belong to.
    pub second: u64,
    pub packets: u64,
    pub syn: u64,
    pub synack: u64,
    pub fin: u64,
    pub rst: u64,
    pub rst_by_class: [u64; RstClass::COUNT],
    pub failed_connects: u64,
    pub dropped: u64,
}

impl SecondStats {
    /// Add another engine's counts of the same second.
    pub fn add(&mut self, o: &SecondStats) {
        self.packets += o.packets;
        self.syn += o.syn;
        self.synack += o.synack;
        self.fin += o.fin;
        self.rst += o.rst;
        for (a, b) in self.rst_by_class.iter_mut().zip(o.rst_by_class) {
            *a += b;
        }
        self.failed_connects += o.failed_connects;
        self.dropped += o.dropped;
    }
}

/// A per-second quantity an alert rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// SYNs answered by RST per second.
    FailedConnects,
    /// All RSTs per second.
    Rst,
    /// RSTs of one class per second.
    RstClass(RstClass),
    /// SYNs per second.
    Syn,
    /// Packets dropped by policy per second.
    Dropped,
}

impl Metric {
    fn value(self, s: &SecondStats) -> u64 {
        match self {
            Metric::FailedConnects => s.failed_connects,
            Metric::Rst => s.rst,
            Metric::RstClass(c) => s.rst_by_class[c.index()],
            Metric::Syn => s.syn,
            Metric::Dropped => s.dropped,
        }
    }

    pub fn name(self) -> String {
        match self {
            Metric::FailedConnects => "failed_connects_per_second".into(),
            Metric::Rst => "rst_per_second".into(),
            Metric::RstClass(c) => format!("rst_{}_per_second", c.as_str()),
            Metric::Syn => "syn_per_second".into(),
            Metric::Dropped => "dropped_per_second".into(),
        }
    }
}

/// The rate of `metric` over the `window` seconds ending at `end`.
pub(super) fn rate(
    seconds: &[SecondStats; RATE_WINDOW],
    metric: Metric,
    end: u64,
    window: u32,
) -> f64 {
    let mut sum = 0;
    for s in end.saturating_sub(window as u64 - 1)..=end {
        let slot = &seconds[(s % RATE_WINDOW as u64) as usize];
        if slot.second == s {
            sum += metric.value(slot);
        }
    }
    sum as f64 / window as f64
}
