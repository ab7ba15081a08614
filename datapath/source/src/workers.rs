//! A source's workers: one thread each, started by a [`Spawner`] and run
//! until [`Workers::stop`]; the control side's end of their channels.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};

use rstwall_engine::engine::{Engine, EngineConfig};
use rstwall_engine::policy::{Policy, PolicyConfig};

use crate::capture::CaptureTap;
use crate::latency::BatchLatency;
use crate::policy_slot::PolicySlot;
use crate::query::{SourceHandle, QUERIES_QUEUED};
use crate::rst_events::RstSink;
use crate::stats::{SourceStats, WorkerStats};
use crate::sys;
use crate::worker::WorkerCore;

/// Block requests the channel to the control side holds: many more than
/// the control side sees between two looks at it, short of a flood of
/// sources each over its own limit.
const BLOCK_REQUESTS_QUEUED: usize = 4096;
/// Statistics waiting per worker before the newest are dropped.
const STATS_QUEUED_PER_WORKER: usize = 16;

/// What every source's workers share.
#[derive(Clone, Debug)]
pub struct WorkersConfig {
    /// How many workers (they share the policy's global rate budgets).
    pub workers: u32,
    /// Engine per worker; its policy is split with [`Policy::for_worker`].
    pub engine: EngineConfig,
    /// CPUs to pin workers to, in order (worker `i` gets `cpus[i % len]`).
    /// Empty: the CPUs the process may use.
    pub cpus: Vec<usize>,
    /// How often each worker publishes its statistics and answers
    /// questions.
    pub publish_every: Duration,
}

/// Why a worker stopped, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker {worker}: {source}")]
    Failed {
        worker: usize,
        #[source]
        source: io::Error,
    },
    #[error("worker {worker}: cannot start its thread: {source}")]
    Spawn {
        worker: usize,
        #[source]
        source: io::Error,
    },
    #[error("worker {worker} panicked")]
    Panicked { worker: usize },
    #[error("worker {worker} stopped unexpectedly")]
    Stopped { worker: usize },
}

type Thread<S> = JoinHandle<Result<WorkerStats<S>, WorkerError>>;

/// The running workers of a source. Dropping it stops them.
pub struct Workers<S> {
    threads: Vec<(usize, Thread<S>)>,
    policy: Arc<PolicySlot>,
    handle: SourceHandle,
    stop: Arc<AtomicBool>,
    stats: Receiver<WorkerStats<S>>,
    blocks: Receiver<IpAddr>,
}

impl<S> Workers<S> {
    /// Workers started (and not yet found failed).
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Workers' published stats (the latest per worker is what counts).
    pub fn stats(&self) -> &Receiver<WorkerStats<S>> {
        &self.stats
    }

    /// Sources the workers' policies asked to block (enforce mode, with
    /// `ratelimit.block_seconds` above 0). Each worker asks at most once per
    /// block period per source, but several workers may ask for the same one.
    pub fn block_requests(&self) -> &Receiver<IpAddr> {
        &self.blocks
    }

    /// Make `cfg` every worker's policy (each gets its share of the global
    /// rate limits), replacing any not yet taken; each worker switches
    /// between two batches, at most one batch later. Returns the policy's
    /// generation, which [`WorkerStats::policy_generation`] reports once a
    /// worker runs it.
    pub fn set_policy(&self, cfg: &PolicyConfig) -> u64 {
        self.policy.publish(cfg.clone())
    }

    /// Generation of the latest policy handed to the workers.
    pub fn policy_generation(&self) -> u64 {
        self.policy.generation()
    }

    /// For asking the workers questions, and capturing, from another thread.
    pub fn handle(&self) -> SourceHandle {
        self.handle.clone()
    }

    /// A worker that stopped by itself (it failed), with its error.
    pub fn failed_worker(&mut self) -> Option<WorkerError> {
        let i = self.threads.iter().position(|(_, h)| h.is_finished())?;
        let (worker, handle) = self.threads.swap_remove(i);
        Some(match handle.join() {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => WorkerError::Stopped { worker },
            Err(_) => WorkerError::Panicked { worker },
        })
    }

    /// Stop the workers; the final stats of each. The handle's questions
    /// go unanswered from then on.
    pub fn stop(&mut self) -> Result<Vec<WorkerStats<S>>, WorkerError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::with_capacity(self.threads.len());
        let mut first_err = None;
        for (worker, h) in self.threads.drain(..) {
            match h.join() {
                Ok(Ok(s)) => out.push(s),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(WorkerError::Panicked { worker });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

impl<S> Drop for Workers<S> {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Starts a source's workers one by one. Dropped before
/// [`Spawner::finish`] (a later worker could not start), it stops those
/// already running.
pub struct Spawner<S> {
    workers: Workers<S>,
    cfg: WorkersConfig,
    cpus: Vec<usize>,
    stats: Sender<WorkerStats<S>>,
    blocks: Sender<IpAddr>,
    rsts: Option<RstSink>,
}

impl<S: SourceStats> Spawner<S> {
    pub fn new(cfg: WorkersConfig) -> Spawner<S> {
        let n = cfg.workers as usize;
        let cpus = if cfg.cpus.is_empty() {
            sys::allowed_cpus().unwrap_or_default()
        } else {
            cfg.cpus.clone()
        };
        let (stats_tx, stats_rx) = channel::bounded(n.max(1) * STATS_QUEUED_PER_WORKER);
        let (blocks_tx, blocks_rx) = channel::bounded(BLOCK_REQUESTS_QUEUED);
        Spawner {
            workers: Workers {
                threads: Vec::with_capacity(n),
                policy: Arc::new(PolicySlot::new(cfg.engine.policy.clone())),
                handle: SourceHandle {
                    queries: Vec::with_capacity(n),
                    capture: CaptureTap::new(),
                },
                stop: Arc::new(AtomicBool::new(false)),
                stats: stats_rx,
                blocks: blocks_rx,
            },
            cfg,
            cpus,
            stats: stats_tx,
            blocks: blocks_tx,
            rsts: None,
        }
    }

    /// Hand every RST the workers spawned from now on judge to `sink`
    /// (see [`RstSink`]: never waiting, losses counted).
    pub fn send_rsts_to(&mut self, sink: RstSink) {
        self.rsts = Some(sink);
    }

    /// Start the next worker on a thread named `name`. Its engine is
    /// made here, on the calling thread; `run` is the source's loop: it
    /// owns the worker's I/O, drives the [`WorkerCore`] it is given until
    /// [`WorkerCore::running`] says stop, and returns the source's part of
    /// the final statistics. The thread is pinned first (see
    /// [`WorkersConfig::cpus`]).
    pub fn spawn<R>(&mut self, name: String, run: R) -> Result<(), WorkerError>
    where
        R: FnOnce(&mut WorkerCore<S>) -> io::Result<S> + Send + 'static,
    {
        let id = self.workers.threads.len();
        let mut engine = Engine::new(&self.cfg.engine);
        engine.set_policy(Policy::for_worker(
            &self.cfg.engine.policy,
            self.cfg.workers,
        ));
        let (query_tx, query_rx) = channel::bounded(QUERIES_QUEUED);
        let w = &self.workers;
        let mut core = WorkerCore {
            id,
            cpu: (!self.cpus.is_empty()).then(|| self.cpus[id % self.cpus.len()]),
            engine,
            stop: w.stop.clone(),
            policy: w.policy.clone(),
            policy_generation: w.policy.generation(),
            workers: self.cfg.workers,
            queries: query_rx,
            capture: w.handle.capture.clone(),
            latency: BatchLatency::default(),
            blocks: self.blocks.clone(),
            stats: self.stats.clone(),
            publish_every: self.cfg.publish_every,
            next_publish: Instant::now() + self.cfg.publish_every,
            iterations: 0,
            batches: 0,
            sleeps: 0,
            block_requests_dropped: 0,
            rsts: self.rsts.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                core.pin();
                let source =
                    run(&mut core).map_err(|source| WorkerError::Failed { worker: id, source })?;
                Ok(core.stats(source))
            })
            .map_err(|source| WorkerError::Spawn { worker: id, source })?;
        self.workers.threads.push((id, thread));
        self.workers.handle.queries.push(query_tx);
        Ok(())
    }

    /// Every worker is started.
    pub fn finish(self) -> Workers<S> {
        self.workers
    }
}
