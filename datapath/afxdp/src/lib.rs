//! The live datapath: AF_XDP sockets, one pinned worker per queue, each
//! with its own [`Engine`](rstwall_engine::engine::Engine).
//!
//! # Topologies
//!
//! * **Inline** (bump in the wire): ports A and B. rstwall's XDP program on
//!   each port redirects TCP to the AF_XDP socket of the packet's RX queue;
//!   the worker judges it and transmits what passes on the other port.
//!   Non-TCP never leaves the kernel (the program forwards it to the peer
//!   port), and a queue without a socket is forwarded in the kernel too:
//!   a dead worker fails open.
//! * **Tap** (mirror port): frames are judged and counted, then their
//!   buffers go straight back to the fill ring.
//!
//! # Workers and frame ownership
//!
//! One worker per queue index `i` serves queue `i` of every port: in inline
//! mode it owns both A-i and B-i. A split into an A-i and a B-i thread (each
//! owning its RX ring and the other port's TX ring) would need no locks
//! either, but it would put the two directions of a connection in two
//! different engines, and the RST judgment needs both directions of a flow
//! (RCV.NXT of the receiver is learned from what it sent). So the unit of
//! parallelism is the queue index, and the NICs' RSS must be symmetric and
//! identical on A and B (same key, symmetric hash) so that a flow's two
//! directions land on the same index; veth, with one queue, trivially is.
//!
//! The two sockets of a worker share one UMEM, so forwarding never copies:
//!
//! ```text
//!   A's frames:  free(A) → fill(A) → rx(A) → engine ─pass→ tx(B) → completion(B) → free(A)
//!                                                  └drop→ free(A)
//!   B's frames:  the mirror image
//! ```
//!
//! The UMEM is split into a partition per port; a frame never changes
//! owner, and only its worker touches it. Everything is batched: an RX burst
//! (up to [`DatapathConfig::batch`]), one clock read and one
//! [`advance`](rstwall_engine::engine::Engine::advance), the engine per frame, one TX
//! submit, one fill refill. Syscalls happen only when the kernel asks for
//! them (need_wakeup) or when a worker has been idle long enough to sleep in
//! `poll()`. Every frame's place is tracked by a [`ledger::Ledger`].
//!
//! Workers publish [`WorkerStats`] every [`DatapathConfig::publish_every`]
//! over a bounded channel and answer the control side's questions (flows,
//! telemetry; [`DatapathHandle`]) at the same moment. A new policy goes
//! into a latest-wins [`PolicySlot`] whose generation every worker checks
//! once per loop iteration, so a policy change reaches all workers within
//! one batch and every packet is judged by one whole policy. Live capture
//! goes through a [`CaptureTap`] of preallocated buffers. The
//! sources their policy asks to block (`ratelimit.block_seconds`) go to the
//! control side over a third bounded channel, [`Datapath::block_requests`],
//! once per batch and without blocking: a full channel loses requests,
//! counted in [`WorkerStats::block_requests_dropped`].

mod control;
mod ledger;
mod socket;
mod stats;
pub mod sys;
mod worker;

use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, Sender};
use xsk_rs::config::{FrameSize, QueueSize, UmemConfig};
use xsk_rs::Umem;

pub use control::{
    BatchLatency, CaptureFilter, CaptureSession, CaptureTap, Captured, FlowFilter, FlowRow,
    LatencySummary, PolicySlot, Query, CAPTURE_SNAPLEN,
};
pub use ledger::{FrameStats, Ledger, Place};
pub use socket::{BindMode, ProgramLoad, RingStats, XskMode};
pub use stats::{DatapathStats, SocketStats, WorkerStats};

use rstwall_engine::engine::{Engine, EngineConfig};
use rstwall_engine::policy::{Policy, PolicyConfig};
use rstwall_engine::telemetry::Snapshot;
use socket::Xsk;
use worker::{PortRings, Worker};

/// Block requests the channel to the control side holds: many more than
/// the control side sees between two looks at it, short of a flood of
/// sources each over its own limit.
const BLOCK_REQUESTS_QUEUED: usize = 4096;

/// The ports rstwall serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Bump in the wire between `a` and `b`.
    Inline { a: String, b: String },
    /// A mirror port: count only.
    Tap { port: String },
}

impl Topology {
    pub fn ports(&self) -> Vec<&str> {
        match self {
            Topology::Inline { a, b } => vec![a.as_str(), b.as_str()],
            Topology::Tap { port } => vec![port.as_str()],
        }
    }
}

/// How the datapath is built.
#[derive(Clone, Debug)]
pub struct DatapathConfig {
    pub topology: Topology,
    /// Queues `0..queues` of every port get a socket and a worker.
    pub queues: u32,
    /// Engine per worker; its policy is split with [`Policy::for_worker`].
    pub engine: EngineConfig,
    /// RX, TX, fill and completion ring sizes (power of two).
    pub ring_size: u32,
    /// UMEM frames owned by each port's partition (per queue).
    pub frames_per_port: u32,
    /// UMEM frame size (power of two, 2048 or 4096): the largest frame
    /// received is this minus the kernel's 256-byte XDP headroom.
    pub frame_size: u32,
    /// Frames per RX burst.
    pub batch: usize,
    pub bind: BindMode,
    pub program: ProgramLoad,
    /// CPUs to pin workers to, in order (worker `i` gets `cpus[i % len]`).
    /// Empty: the CPUs the process may use.
    pub cpus: Vec<usize>,
    pub publish_every: Duration,
}

impl DatapathConfig {
    pub fn new(topology: Topology, queues: u32, engine: EngineConfig) -> DatapathConfig {
        DatapathConfig {
            topology,
            queues,
            engine,
            ring_size: 2048,
            frames_per_port: 4096,
            frame_size: 4096,
            batch: 64,
            bind: BindMode::Auto,
            program: ProgramLoad::Inhibit,
            cpus: Vec::new(),
            publish_every: Duration::from_millis(100),
        }
    }

    pub fn validate(&self) -> Result<(), AfXdpError> {
        let pow2 = |name: &str, v: u32| {
            if v.is_power_of_two() {
                Ok(())
            } else {
                Err(AfXdpError::Config(format!(
                    "{name}: must be a power of two, not {v}"
                )))
            }
        };
        pow2("ring_size", self.ring_size)?;
        pow2("frame_size", self.frame_size)?;
        if !(2048..=65536).contains(&self.frame_size) {
            return Err(AfXdpError::Config(
                "frame_size: must be 2048..=65536".into(),
            ));
        }
        if self.queues == 0 {
            return Err(AfXdpError::Config("queues: at least 1".into()));
        }
        if self.batch == 0 || self.batch > self.ring_size as usize {
            return Err(AfXdpError::Config("batch: 1..=ring_size".into()));
        }
        // Enough frames to fill the fill ring and keep a burst in flight.
        if self.frames_per_port < self.ring_size + self.batch as u32 {
            return Err(AfXdpError::Config(
                "frames_per_port: at least ring_size + batch".into(),
            ));
        }
        if let Topology::Inline { a, b } = &self.topology {
            if a == b {
                return Err(AfXdpError::Config(format!(
                    "inline ports are the same: {a}"
                )));
            }
        }
        self.engine.validate().map_err(AfXdpError::Config)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error("{0}")]
    Config(String),
    #[error("UMEM for queue {queue}: {reason}")]
    Umem { queue: u32, reason: String },
    #[error("AF_XDP socket on {ifname} queue {queue}: {source}")]
    Socket {
        ifname: String,
        queue: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("worker {worker}: {source}")]
    Worker {
        worker: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("worker {worker} panicked")]
    WorkerPanicked { worker: usize },
    #[error("worker {worker} stopped unexpectedly")]
    Stopped { worker: usize },
}

/// A bound socket, for registering it in the XDP program's XSKMAP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketInfo {
    pub port: String,
    pub queue: u32,
    pub fd: RawFd,
    pub mode: XskMode,
}

/// The running datapath. Dropping it stops the workers.
pub struct Datapath {
    workers: Vec<(usize, JoinHandle<Result<WorkerStats, AfXdpError>>)>,
    policy: Arc<PolicySlot>,
    handle: DatapathHandle,
    stop: Arc<AtomicBool>,
    stats: Receiver<WorkerStats>,
    blocks: Receiver<IpAddr>,
    sockets: Vec<SocketInfo>,
}

impl Datapath {
    /// Open a UMEM and the sockets for every queue, fill the fill rings and
    /// start the workers. Traffic reaches them once the caller registers
    /// [`Datapath::sockets`] in the XDP program's XSKMAP.
    pub fn start(cfg: &DatapathConfig) -> Result<Datapath, AfXdpError> {
        cfg.validate()?;
        let cpus = if cfg.cpus.is_empty() {
            sys::allowed_cpus().unwrap_or_default()
        } else {
            cfg.cpus.clone()
        };
        let workers_n = cfg.queues as usize;
        let stop = Arc::new(AtomicBool::new(false));
        let (stats_tx, stats_rx) = channel::bounded(workers_n * 16);
        let (blocks_tx, blocks_rx) = channel::bounded(BLOCK_REQUESTS_QUEUED);

        // Open everything first, so a failure leaves no thread behind.
        let mut prepared = Vec::with_capacity(workers_n);
        let mut sockets = Vec::new();
        for queue in 0..cfg.queues {
            let (umem, rings) = match open_queue(cfg, queue, cfg.bind) {
                // The second socket of a shared UMEM inherits the first
                // one's bind mode: when only the first port can do
                // zero-copy, the pair has to be opened again in copy mode.
                Err(AfXdpError::Socket { ref source, .. })
                    if cfg.bind == BindMode::Auto
                        && source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
                {
                    tracing::debug!("queue {queue}: zero-copy on only some ports; copy mode");
                    open_queue(cfg, queue, BindMode::Copy)?
                }
                other => other?,
            };
            for r in &rings {
                sockets.push(SocketInfo {
                    port: r.name().to_string(),
                    queue,
                    fd: r.fd(),
                    mode: r.mode(),
                });
            }
            let mut engine = Engine::new(&cfg.engine);
            engine.set_policy(Policy::for_worker(&cfg.engine.policy, cfg.queues));
            let (query_tx, query_rx) = channel::bounded(QUERIES_QUEUED);
            prepared.push((queue, umem, rings, engine, query_tx, query_rx));
        }
        let policy = Arc::new(PolicySlot::new(cfg.engine.policy.clone()));

        // Built before the threads: if one cannot be spawned, dropping it
        // stops the ones already running.
        let mut datapath = Datapath {
            workers: Vec::with_capacity(workers_n),
            policy: policy.clone(),
            handle: DatapathHandle {
                queries: Vec::with_capacity(workers_n),
                capture: CaptureTap::new(),
            },
            stop,
            stats: stats_rx,
            blocks: blocks_rx,
            sockets,
        };
        for (id, (queue, umem, rings, engine, query_tx, query_rx)) in
            prepared.into_iter().enumerate()
        {
            let worker = Worker {
                id,
                queue,
                cpu: (!cpus.is_empty()).then(|| cpus[id % cpus.len()]),
                umem,
                frame_size: cfg.frame_size as usize,
                engine,
                stop: datapath.stop.clone(),
                stats: stats_tx.clone(),
                policy: policy.clone(),
                policy_generation: policy.generation(),
                workers: cfg.queues,
                queries: query_rx,
                capture: datapath.handle.capture.clone(),
                latency: BatchLatency::default(),
                blocks: blocks_tx.clone(),
                publish_every: cfg.publish_every,
                batch: cfg.batch,
                counters: Default::default(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("rstwall-q{queue}"))
                .spawn(move || worker.run(rings))
                .map_err(|source| AfXdpError::Worker { worker: id, source })?;
            datapath.workers.push((id, handle));
            datapath.handle.queries.push(query_tx);
        }
        Ok(datapath)
    }

    /// Every socket: register each in its port's XSKMAP under its queue.
    pub fn sockets(&self) -> &[SocketInfo] {
        &self.sockets
    }

    /// Workers' published stats (the latest per worker is what counts).
    pub fn stats(&self) -> &Receiver<WorkerStats> {
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

    /// For asking the workers questions from another thread.
    pub fn handle(&self) -> DatapathHandle {
        self.handle.clone()
    }

    /// A worker that stopped by itself (it failed), with its error.
    pub fn failed_worker(&mut self) -> Option<AfXdpError> {
        let i = self.workers.iter().position(|(_, h)| h.is_finished())?;
        let (id, handle) = self.workers.swap_remove(i);
        Some(match handle.join() {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => AfXdpError::Stopped { worker: id },
            Err(_) => AfXdpError::WorkerPanicked { worker: id },
        })
    }

    /// Stop the workers and close the sockets; the final stats of each.
    pub fn stop(mut self) -> Result<Vec<WorkerStats>, AfXdpError> {
        self.stop_workers()
    }

    fn stop_workers(&mut self) -> Result<Vec<WorkerStats>, AfXdpError> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::with_capacity(self.workers.len());
        let mut first_err = None;
        for (i, h) in self.workers.drain(..) {
            match h.join() {
                Ok(Ok(s)) => out.push(s),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert(AfXdpError::WorkerPanicked { worker: i });
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Questions waiting per worker: a few clients at once.
const QUERIES_QUEUED: usize = 16;

/// Why a question to the workers got no full answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the workers are busy: too many questions waiting")]
    Busy,
    #[error("worker {worker} did not answer within {timeout:?}")]
    Timeout { worker: usize, timeout: Duration },
}

/// The workers' question queues and the capture tap: clonable, for the
/// control API's threads. Every call waits for all workers (each answers
/// within a publish interval) or gives up after `timeout`.
#[derive(Clone, Debug)]
pub struct DatapathHandle {
    queries: Vec<Sender<Query>>,
    capture: Arc<CaptureTap>,
}

impl DatapathHandle {
    pub fn workers(&self) -> usize {
        self.queries.len()
    }

    /// Tracked flows, up to `filter.limit` in all.
    pub fn flows(&self, filter: FlowFilter, timeout: Duration) -> Result<Vec<FlowRow>, QueryError> {
        let answers = self.ask(timeout, |reply| Query::Flows { filter, reply })?;
        let mut rows: Vec<FlowRow> = answers.into_iter().flat_map(|(_, r)| r).collect();
        rows.truncate(filter.limit);
        Ok(rows)
    }

    /// Every worker's telemetry snapshot, in worker order.
    pub fn telemetry(&self, top: usize, timeout: Duration) -> Result<Vec<Snapshot>, QueryError> {
        let answers = self.ask(timeout, |reply| Query::Telemetry { top, reply })?;
        Ok(answers.into_iter().map(|(_, s)| s).collect())
    }

    /// Ask every worker; their answers in worker order.
    fn ask<T>(
        &self,
        timeout: Duration,
        make: impl Fn(Sender<T>) -> Query,
    ) -> Result<Vec<(usize, T)>, QueryError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut pending = Vec::with_capacity(self.queries.len());
        for (worker, q) in self.queries.iter().enumerate() {
            let (tx, rx) = channel::bounded(1);
            q.try_send(make(tx)).map_err(|_| QueryError::Busy)?;
            pending.push((worker, rx));
        }
        pending
            .into_iter()
            .map(|(worker, rx)| {
                rx.recv_deadline(deadline)
                    .map(|a| (worker, a))
                    .map_err(|_| QueryError::Timeout { worker, timeout })
            })
            .collect()
    }

    /// The workers' live capture.
    pub fn capture(&self) -> &Arc<CaptureTap> {
        &self.capture
    }
}

/// One queue's UMEM and a socket on every port, each port with its
/// partition of the UMEM on its free list.
fn open_queue(
    cfg: &DatapathConfig,
    queue: u32,
    bind: BindMode,
) -> Result<(Umem, Vec<PortRings>), AfXdpError> {
    let umem_err = |reason: String| AfXdpError::Umem { queue, reason };
    let ports = cfg.topology.ports();
    let umem_cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(cfg.frame_size).map_err(|e| umem_err(e.to_string()))?)
        .fill_queue_size(QueueSize::new(cfg.ring_size).map_err(|e| umem_err(e.to_string()))?)
        .comp_queue_size(QueueSize::new(cfg.ring_size).map_err(|e| umem_err(e.to_string()))?)
        .build()
        .map_err(|e| umem_err(e.to_string()))?;
    let frames = cfg.frames_per_port * ports.len() as u32;
    let (umem, mut descs) = Umem::new(
        umem_cfg,
        std::num::NonZeroU32::new(frames).expect("validated non-zero"),
        false,
    )
    .map_err(|e| {
        umem_err(match std::error::Error::source(&e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        })
    })?;
    let mut rings = Vec::with_capacity(ports.len());
    for port in ports {
        let xsk = Xsk::open(&umem, port, queue, cfg.ring_size, bind, cfg.program)?;
        // The next partition of the UMEM belongs to this port.
        let rest = descs.split_off(cfg.frames_per_port as usize);
        let free = std::mem::replace(&mut descs, rest);
        rings.push(PortRings::new(port, xsk, free));
    }
    debug_assert!(descs.is_empty());
    Ok((umem, rings))
}

impl Drop for Datapath {
    fn drop(&mut self) {
        let _ = self.stop_workers();
    }
}
