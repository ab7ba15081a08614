//! What workers publish, and the sum over workers the control side shows.
//!
//! Each worker owns its counters outright (its [`Engine`]'s telemetry and a
//! few plain integers) and sends a copy every publish interval over a
//! bounded channel; nothing on the per-packet path is shared.
//!
//! [`Engine`]: rstwall_engine::engine::Engine

use serde::Serialize;

use super::control::BatchLatency;
use super::ledger::FrameStats;
use super::socket::{RingStats, XskMode};
use rstwall_engine::flow::FlowStats;
use rstwall_engine::policy::BlockStats;
use rstwall_engine::telemetry::Counters;

/// One socket (one port's queue) as its worker sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SocketStats {
    pub port: String,
    pub queue: u32,
    pub mode: XskMode,
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

/// One worker's published state.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkerStats {
    pub worker: usize,
    pub queue: u32,
    /// The CPU the worker is pinned to (None: pinning failed).
    pub cpu: Option<usize>,
    /// When this copy was taken (ns since the Unix epoch).
    pub at_ns: u64,
    /// Loop iterations that received at least one frame.
    pub batches: u64,
    /// Times the worker slept in poll() for lack of traffic.
    pub sleeps: u64,
    /// Frames passed with no room on the TX ring (dropped, counted).
    pub tx_ring_full_drops: u64,
    /// The policy's block requests (`ratelimit.block_seconds`).
    pub blocks: BlockStats,
    /// Block requests lost because the control side's channel was full.
    pub block_requests_dropped: u64,
    pub counters: Counters,
    pub flows: FlowStats,
    pub active_flows: usize,
    pub sockets: Vec<SocketStats>,
    pub frames: FrameStats,
    /// Generation of the policy the worker runs ([`super::PolicySlot`]).
    pub policy_generation: u64,
    /// Engine time per RX batch, since the worker started.
    pub batch_latency: BatchLatency,
    /// The engine's current (incomplete) second, and its last few
    /// completed seconds' counts: for the daemon's alerts, judged on the
    /// sum of all workers ([`rstwall_engine::telemetry::MergedAlerts`]).
    #[serde(skip)]
    pub second: u64,
    #[serde(skip)]
    pub recent_seconds: Vec<rstwall_engine::telemetry::SecondStats>,
}

/// The sum over all workers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DatapathStats {
    pub workers: usize,
    pub batches: u64,
    pub sleeps: u64,
    pub tx_ring_full_drops: u64,
    pub blocks: BlockStats,
    pub block_requests_dropped: u64,
    pub counters: Counters,
    pub flows: FlowStats,
    pub active_flows: usize,
    pub rx_frames: u64,
    pub tx_frames: u64,
    pub ring: RingStats,
    pub frames: FrameStats,
    /// Sockets per bind mode: `(zerocopy, copy)`.
    pub zerocopy_sockets: usize,
    pub copy_sockets: usize,
    /// The oldest and newest policy generation the workers run: equal
    /// once every worker has taken the latest policy.
    pub policy_generation_min: u64,
    pub policy_generation_max: u64,
    pub batch_latency: BatchLatency,
}

impl DatapathStats {
    pub fn sum<'a>(workers: impl IntoIterator<Item = &'a WorkerStats>) -> DatapathStats {
        let mut t = DatapathStats::default();
        for w in workers {
            t.workers += 1;
            t.batches += w.batches;
            t.sleeps += w.sleeps;
            t.tx_ring_full_drops += w.tx_ring_full_drops;
            t.blocks.merge(&w.blocks);
            t.block_requests_dropped += w.block_requests_dropped;
            t.counters.merge(&w.counters);
            t.flows.created += w.flows.created;
            t.flows.expired += w.flows.expired;
            t.flows.evicted += w.flows.evicted;
            t.flows.table_full += w.flows.table_full;
            t.active_flows += w.active_flows;
            for s in &w.sockets {
                t.rx_frames += s.rx_frames;
                t.tx_frames += s.tx_frames;
                t.ring.merge(&s.ring);
                match s.mode {
                    XskMode::ZeroCopy => t.zerocopy_sockets += 1,
                    XskMode::Copy => t.copy_sockets += 1,
                }
            }
            let f = &w.frames;
            t.frames.total += f.total;
            t.frames.free += f.free;
            t.frames.receive += f.receive;
            t.frames.in_hand += f.in_hand;
            t.frames.transmit += f.transmit;
            t.frames.leaked += f.leaked;
            t.frames.ledger_errors += f.ledger_errors;
            t.policy_generation_min = if t.workers == 1 {
                w.policy_generation
            } else {
                t.policy_generation_min.min(w.policy_generation)
            };
            t.policy_generation_max = t.policy_generation_max.max(w.policy_generation);
            t.batch_latency.merge(&w.batch_latency);
        }
        t
    }

    /// "zerocopy", "copy", or "mixed (zerocopy N, copy M)".
    pub fn xsk_mode(&self) -> String {
        match (self.zerocopy_sockets, self.copy_sockets) {
            (0, 0) => "none".into(),
            (_, 0) => XskMode::ZeroCopy.as_str().into(),
            (0, _) => XskMode::Copy.as_str().into(),
            (z, c) => format!("mixed (zerocopy {z}, copy {c})"),
        }
    }
}
