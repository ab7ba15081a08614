//! What workers publish, and the sum over workers the control side shows.
//!
//! Each worker owns its counters outright (its [`Engine`]'s telemetry and a
//! few plain integers) and sends a copy every publish interval over a
//! bounded channel; nothing on the per-packet path is shared.
//!
//! The part every source has (the engine's counters, flows, policy
//! generation, batch latency, blocks, the seconds the alerts are judged
//! on) is defined here once; a source adds its own part (AF_XDP: sockets,
//! UMEM frames) as the `S` of [`WorkerStats`], which serializes flattened
//! into the same object.
//!
//! The same types are the statistics document's (`rstwall_api::stats`):
//! there the batch latency is its [`LatencySummary`](crate::LatencySummary) (the `L` of
//! [`WorkerStats`] and [`Totals`], a histogram while running) and the
//! source's part is the document's union of every source's
//! ([`WorkerStats::map`], [`Totals::sum_as`]).
//!
//! [`Engine`]: rstwall_engine::engine::Engine

use std::fmt;

use serde::{Deserialize, Serialize};

use rstwall_engine::flow::FlowStats;
use rstwall_engine::policy::BlockStats;
use rstwall_engine::telemetry::{Counters, SecondStats};

use crate::latency::BatchLatency;

/// A source's own part of a worker's statistics.
pub trait SourceStats: Clone + fmt::Debug + PartialEq + Send + 'static {
    /// Its sum over workers.
    type Totals: Clone + fmt::Debug + Default + PartialEq;

    /// Add this worker's part to `totals`.
    fn add_to(&self, totals: &mut Self::Totals);
}

/// A source with nothing of its own to count (tests, and the common part
/// alone).
impl SourceStats for () {
    type Totals = ();
    fn add_to(&self, _: &mut ()) {}
}

/// One worker's published state: its batch latency `L` is a histogram
/// while running, its summary in documents.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats<S, L = BatchLatency> {
    pub worker: usize,
    /// The CPU the worker is pinned to (None: not pinned, or pinning failed).
    pub cpu: Option<usize>,
    /// When this copy was taken (ns since the Unix epoch).
    pub at_ns: u64,
    /// Loop iterations that received at least one frame.
    pub batches: u64,
    /// Times the worker slept for lack of traffic.
    pub sleeps: u64,
    /// The policy's block requests (`ratelimit.block_seconds`).
    pub blocks: BlockStats,
    /// Block requests lost because the control side's channel was full.
    pub block_requests_dropped: u64,
    pub counters: Counters,
    pub flows: FlowStats,
    pub active_flows: usize,
    /// Generation of the policy the worker runs ([`crate::PolicySlot`]).
    pub policy_generation: u64,
    /// Engine time per batch, since the worker started.
    pub batch_latency: L,
    /// The engine's current (incomplete) second, and its last few
    /// completed seconds' counts: for the daemon's alerts, judged on the
    /// sum of all workers ([`rstwall_engine::telemetry::MergedAlerts`]).
    #[serde(skip)]
    pub second: u64,
    #[serde(skip)]
    pub recent_seconds: Vec<SecondStats>,
    /// What the source adds.
    #[serde(flatten)]
    pub source: S,
}

impl<S, L: Clone> WorkerStats<S, L> {
    /// The part every source has, without the source's own.
    pub fn common(&self) -> WorkerStats<(), L> {
        self.map(|_| (), L::clone)
    }

    /// The same statistics with the source's part and the batch latency
    /// as `source` and `latency` make them.
    pub fn map<S2, L2>(
        &self,
        source: impl FnOnce(&S) -> S2,
        latency: impl FnOnce(&L) -> L2,
    ) -> WorkerStats<S2, L2> {
        WorkerStats {
            worker: self.worker,
            cpu: self.cpu,
            at_ns: self.at_ns,
            batches: self.batches,
            sleeps: self.sleeps,
            blocks: self.blocks,
            block_requests_dropped: self.block_requests_dropped,
            counters: self.counters,
            flows: self.flows,
            active_flows: self.active_flows,
            policy_generation: self.policy_generation,
            batch_latency: latency(&self.batch_latency),
            second: self.second,
            recent_seconds: self.recent_seconds.clone(),
            source: source(&self.source),
        }
    }
}

/// The sum over a source's workers (the batch latency `L` as in
/// [`WorkerStats`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals<T, L = BatchLatency> {
    pub workers: usize,
    pub batches: u64,
    pub sleeps: u64,
    pub blocks: BlockStats,
    pub block_requests_dropped: u64,
    pub counters: Counters,
    pub flows: FlowStats,
    pub active_flows: usize,
    /// The oldest and newest policy generation the workers run: equal
    /// once every worker has taken the latest policy.
    pub policy_generation_min: u64,
    pub policy_generation_max: u64,
    pub batch_latency: L,
    /// The source's own part, summed.
    #[serde(flatten)]
    pub source: T,
}

impl<T: Default> Totals<T> {
    pub fn sum<'a, S>(workers: impl IntoIterator<Item = &'a WorkerStats<S>>) -> Totals<T>
    where
        S: SourceStats<Totals = T>,
    {
        Totals::sum_as(workers, |source| source, |latency| latency)
    }
}

impl<T: Default, L: Default> Totals<T, L> {
    /// The sum over `workers`, with the source's summed part and the
    /// merged batch latency as `source` and `latency` make them (the
    /// statistics document: the union of the sources' parts, the latency
    /// summed up).
    pub fn sum_as<'a, S: SourceStats>(
        workers: impl IntoIterator<Item = &'a WorkerStats<S>>,
        source: impl FnOnce(S::Totals) -> T,
        latency: impl FnOnce(BatchLatency) -> L,
    ) -> Totals<T, L> {
        let mut t = Totals::<T, L>::default();
        let mut source_sum = S::Totals::default();
        let mut latency_sum = BatchLatency::default();
        for w in workers {
            t.workers += 1;
            t.batches += w.batches;
            t.sleeps += w.sleeps;
            t.blocks.merge(&w.blocks);
            t.block_requests_dropped += w.block_requests_dropped;
            t.counters.merge(&w.counters);
            t.flows.created += w.flows.created;
            t.flows.expired += w.flows.expired;
            t.flows.evicted += w.flows.evicted;
            t.flows.table_full += w.flows.table_full;
            t.active_flows += w.active_flows;
            t.policy_generation_min = if t.workers == 1 {
                w.policy_generation
            } else {
                t.policy_generation_min.min(w.policy_generation)
            };
            t.policy_generation_max = t.policy_generation_max.max(w.policy_generation);
            latency_sum.merge(&w.batch_latency);
            w.source.add_to(&mut source_sum);
        }
        t.source = source(source_sum);
        t.batch_latency = latency(latency_sum);
        t
    }
}

impl<T, L> Totals<T, L> {
    /// Block requests that never reached the control side: a worker's ring
    /// was full, or the channel to the control side was.
    pub fn block_requests_lost(&self) -> u64 {
        self.blocks.lost + self.block_requests_dropped
    }
}
