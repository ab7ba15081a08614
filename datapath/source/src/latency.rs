//! How long a worker takes per batch: a histogram that never allocates
//! while recording.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Longest batch time the histogram records exactly (longer ones are
/// clamped to it): one second.
const LATENCY_MAX_NS: u64 = 1_000_000_000;

/// How long the engine takes per RX batch (parse, judge, count, and the
/// verdict's ring work), in nanoseconds: cumulative since the worker
/// started. Recording never allocates.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchLatency(pub Histogram<u64>);

impl Default for BatchLatency {
    fn default() -> Self {
        BatchLatency(
            Histogram::new_with_bounds(1, LATENCY_MAX_NS, 2).expect("valid histogram bounds"),
        )
    }
}

impl BatchLatency {
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.clamp(1, LATENCY_MAX_NS));
    }

    pub fn merge(&mut self, o: &BatchLatency) {
        // Same bounds on both sides: cannot fail.
        let _ = self.0.add(&o.0);
    }

    /// Batches recorded at or below each bound (ns), cumulative, for a
    /// Prometheus histogram.
    pub fn cumulative(&self, bounds_ns: &[u64]) -> Vec<u64> {
        bounds_ns
            .iter()
            .map(|&b| {
                if self.0.is_empty() {
                    0
                } else {
                    self.0.count_between(0, b)
                }
            })
            .collect()
    }

    /// Sum of all recorded times, in ns (bucketed: within the histogram's
    /// precision of 1%).
    pub fn sum_ns(&self) -> u64 {
        self.0
            .iter_recorded()
            .map(|v| v.value_iterated_to() * v.count_at_value())
            .sum()
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        let q = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        LatencySummary {
            batches: h.len(),
            p50_ns: q(0.5),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: if h.is_empty() { 0 } else { h.max() },
        }
    }
}

/// Percentiles of [`BatchLatency`]: what documents show of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub batches: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_cumulative() {
        let mut l = BatchLatency::default();
        for ns in [500, 1_500, 20_000, 20_000, 3_000_000] {
            l.record(ns);
        }
        assert_eq!(
            l.cumulative(&[1_000, 10_000, 100_000, 10_000_000]),
            vec![1, 2, 4, 5]
        );
        let s = l.summary();
        assert_eq!(s.batches, 5);
        assert!(s.max_ns >= 2_990_000, "{s:?}");
        let mut m = BatchLatency::default();
        m.merge(&l);
        m.merge(&l);
        assert_eq!(m.summary().batches, 10);
    }
}
