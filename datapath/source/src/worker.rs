//! The part of a worker every source shares: the engine over each batch,
//! the policy switch between batches, the capture tap, block requests,
//! the control side's questions and the published statistics.
//!
//! A source's worker loop owns its I/O (rings, buffers) and calls its
//! [`WorkerCore`] at four moments: [`WorkerCore::take_new_policy`] at the
//! top of each iteration, [`WorkerCore::judge_batch`] and
//! [`WorkerCore::batch_done`] around each batch it received,
//! [`WorkerCore::record_sleep`] when it had to wait for traffic, and
//! [`WorkerCore::publish`] when [`WorkerCore::publish_due`] says so.
//! Nothing here allocates, locks or makes a syscall per packet; per batch
//! it costs one clock read and a few atomic loads.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};

use rstwall_engine::engine::{Engine, Judged};
use rstwall_engine::policy::{Policy, Verdict};
use rstwall_engine::wire::LinkType;

use crate::capture::CaptureTap;
use crate::latency::BatchLatency;
use crate::policy_slot::PolicySlot;
use crate::query::{FlowRow, Query};
use crate::rst_events::{RstRecord, RstSink};
use crate::stats::{SourceStats, WorkerStats};
use crate::sys;

/// Iterations between looks at the clock for publishing (a busy worker
/// runs a few million iterations a second; the batch clock is separate).
const CLOCK_CHECK_EVERY: u32 = 64;
/// Completed seconds a worker publishes for the daemon's merged alerts:
/// enough to ride out a few missed publishes.
const RECENT_SECONDS: usize = 5;

/// One worker's engine and its links to the control side. Made by
/// [`crate::Spawner::spawn`], which hands it to the source's loop.
pub struct WorkerCore<S> {
    pub(crate) id: usize,
    pub(crate) cpu: Option<usize>,
    pub(crate) engine: Engine,
    pub(crate) stop: Arc<AtomicBool>,
    /// The policy to run; looked at once per loop iteration.
    pub(crate) policy: Arc<PolicySlot>,
    /// Generation of the policy the engine runs.
    pub(crate) policy_generation: u64,
    /// Workers sharing the global rate budgets ([`Policy::for_worker`]).
    pub(crate) workers: u32,
    pub(crate) queries: Receiver<Query>,
    pub(crate) capture: Arc<CaptureTap>,
    pub(crate) latency: BatchLatency,
    /// Sources the policy asked to block, for the control side.
    pub(crate) blocks: Sender<IpAddr>,
    pub(crate) stats: Sender<WorkerStats<S>>,
    pub(crate) publish_every: Duration,
    pub(crate) next_publish: Instant,
    pub(crate) iterations: u32,
    pub(crate) batches: u64,
    pub(crate) sleeps: u64,
    /// Block requests the control side had no room for.
    pub(crate) block_requests_dropped: u64,
    /// Where every judged RST goes, when something streams them.
    pub(crate) rsts: Option<RstSink>,
}

impl<S: SourceStats> WorkerCore<S> {
    /// The worker's engine, to read (its flows, for the RST guard).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The worker's index among its source's workers.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Until the source is stopped.
    #[inline]
    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// Pin the calling thread to the worker's CPU; a worker that cannot be
    /// pinned runs unpinned (and says so in its statistics).
    pub(crate) fn pin(&mut self) {
        self.cpu = self.cpu.filter(|&c| match sys::pin_current_thread(c) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(worker = self.id, cpu = c, "cannot pin worker: {e}");
                false
            }
        });
    }

    /// Switch to a newly published policy, between batches: every packet
    /// is judged by one whole policy, the old or the new.
    #[inline]
    pub fn take_new_policy(&mut self) {
        if self.policy.generation() == self.policy_generation {
            return;
        }
        let (generation, cfg) = self.policy.latest();
        self.engine
            .set_policy(Policy::for_worker(&cfg, self.workers));
        self.policy_generation = generation;
    }

    /// One batch through the engine: counted, the clock read once, every
    /// frame judged, offered to a running capture, and handed to `each`
    /// with its verdict to be placed (on a TX ring, back on a free list);
    /// then the batch's block requests go to the control side. `bytes`
    /// gives a frame's bytes (read once for the engine, and again only for
    /// a capture that wants it). Returns the batch's start time, for
    /// [`WorkerCore::batch_done`].
    #[inline]
    pub fn judge_batch<'f, F>(
        &mut self,
        link: LinkType,
        frames: &[F],
        bytes: impl Fn(&F) -> &'f [u8],
        mut each: impl FnMut(&F, Verdict),
    ) -> u64 {
        self.judge_batch_with(link, frames, bytes, |frame, judged| {
            each(frame, judged.verdict())
        })
    }

    /// [`WorkerCore::judge_batch`] for a source that needs more of each
    /// judgment than its verdict (host mode: the RST class of each
    /// segment, for its events): `each` gets the whole [`Judged`].
    #[inline]
    pub fn judge_batch_with<'f, F>(
        &mut self,
        link: LinkType,
        frames: &[F],
        bytes: impl Fn(&F) -> &'f [u8],
        mut each: impl FnMut(&F, &Judged<'_>),
    ) -> u64 {
        self.batches += 1;
        let started = sys::now_ns();
        self.engine.advance(started);
        let (capture, armed, id) = (&self.capture, self.capture.armed(), self.id);
        let rsts = self.rsts.as_ref();
        self.engine
            .process_batch_with(link, frames.iter().map(&bytes), |i, judged| {
                let frame = &frames[i];
                if armed != 0 {
                    capture.consider(armed, id, started, &judged, || bytes(frame));
                }
                if let (Some(sink), Some(rst)) = (rsts, judged.rst()) {
                    if let Some(packet) = judged.outcome().packet {
                        sink.offer(RstRecord {
                            ts_ns: started,
                            worker: id as u32,
                            packet,
                            rst,
                            decision: judged.decision(),
                        });
                    }
                }
                each(frame, &judged);
            });
        self.hand_on_block_requests();
        started
    }

    /// The batch that started at `started` is placed: its time (engine
    /// and ring work) goes into the batch latency.
    #[inline]
    pub fn batch_done(&mut self, started: u64) {
        self.latency.record(sys::now_ns().saturating_sub(started));
    }

    /// The worker waited for traffic.
    #[inline]
    pub fn record_sleep(&mut self) {
        self.sleeps += 1;
    }

    /// Whether it is time to publish: the clock is read every few
    /// iterations, and after every sleep (`slept`).
    #[inline]
    pub fn publish_due(&mut self, slept: bool) -> bool {
        self.iterations = self.iterations.wrapping_add(1);
        if (slept || self.iterations.is_multiple_of(CLOCK_CHECK_EVERY))
            && Instant::now() >= self.next_publish
        {
            self.next_publish = Instant::now() + self.publish_every;
            return true;
        }
        false
    }

    /// When the next publish is due: a worker waiting for traffic should
    /// wake by then.
    pub fn next_publish(&self) -> Instant {
        self.next_publish
    }

    /// Publish: move the clock on, answer the control side's questions and
    /// send a copy of the statistics, the source's part `source` with them.
    pub fn publish(&mut self, source: S) {
        // The clock moves on without traffic too: seconds close (alerts
        // are judged, rates roll) and idle flows expire.
        self.engine.advance(sys::now_ns());
        self.answer_queries();
        let stats = self.stats(source);
        // Full channel: the control side is behind; it gets the next one.
        let _ = self.stats.try_send(stats);
    }

    /// The statistics as of now, with the source's part `source`.
    pub fn stats(&self, source: S) -> WorkerStats<S> {
        let (second, recent_seconds) = self.engine.telemetry().recent_seconds(RECENT_SECONDS);
        WorkerStats {
            worker: self.id,
            cpu: self.cpu,
            at_ns: sys::now_ns(),
            batches: self.batches,
            sleeps: self.sleeps,
            blocks: self.engine.block_stats(),
            block_requests_dropped: self.block_requests_dropped,
            counters: self.engine.telemetry().counters,
            flows: self.engine.flow_stats(),
            active_flows: self.engine.flows().len(),
            policy_generation: self.policy_generation,
            batch_latency: self.latency.clone(),
            second,
            recent_seconds,
            source,
        }
    }

    /// Answer the control side's questions (between batches).
    fn answer_queries(&mut self) {
        while let Ok(q) = self.queries.try_recv() {
            match q {
                Query::Flows { filter, reply } => {
                    let now = (self.engine.now_ns() / 1_000_000_000) as u32;
                    let rows: Vec<_> = self
                        .engine
                        .flows()
                        .iter(now)
                        .take(Query::MAX_FLOW_SCAN)
                        .filter(|(_, f, _)| filter.state.is_none_or(|s| f.state() == s))
                        .take(filter.limit)
                        .map(|(k, f, idle)| FlowRow::new(k, f, idle, self.id))
                        .collect();
                    let _ = reply.try_send(rows);
                }
                Query::Telemetry { top, reply } => {
                    let _ = reply.try_send(self.engine.snapshot(top));
                }
            }
        }
    }

    /// Send the batch's block requests to the control side. A full channel
    /// loses them (counted): the control side is far behind, and the
    /// policy will not ask for those sources again this block period.
    #[inline]
    fn hand_on_block_requests(&mut self) {
        let (blocks, dropped) = (&self.blocks, &mut self.block_requests_dropped);
        self.engine.drain_block_requests(|src| {
            if blocks.try_send(src).is_err() {
                *dropped += 1;
            }
        });
    }
}
