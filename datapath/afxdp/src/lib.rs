//! The AF_XDP frame source: sockets, one pinned worker per queue, each
//! with its own [`Engine`](rstwall_engine::engine::Engine). What a worker
//! does besides moving frames (the engine batch, the policy, capture,
//! queries, statistics) is the worker core of [`rstwall_source`]; this
//! crate owns the rings, the UMEM, the frame ledger and TX. The sockets
//! alone, without the workers, are [`socket`].
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
//! `poll()`. Every frame's place is tracked by a [`Ledger`].
//!
//! The control side drives the running [`Datapath`] through
//! [`rstwall_source::Source`]: workers publish their statistics (the
//! common [`rstwall_source::WorkerStats`] with this source's
//! [`XskStats`]) every [`DatapathConfig::publish_every`], answer questions
//! at the same moment, take a new policy between two batches, feed a live
//! capture and hand on the sources their policy asks to block.

mod error;
mod guard;
mod ledger;
pub mod socket;
mod stats;
pub mod sys;
mod worker;

use std::fmt;
use std::os::fd::RawFd;
use std::time::Duration;

pub use error::AfXdpError;
pub use guard::{GuardStats, MAX_GUARDED};
pub use ledger::{FrameStats, Ledger, Place};
pub use socket::{BindMode, PollMode, RingStats, UnknownBindMode, XskMode};
pub use stats::{SocketStats, XskStats, XskTotals};

use guard::GuardKeeper;
use rstwall_engine::engine::EngineConfig;
use rstwall_source::{RstSink, Source, Spawner, WorkerError, WorkerStats, Workers, WorkersConfig};
use socket::{open_umem, FrameDesc, Umem, UmemShape, Xsk, XskConfig};
use worker::{PortRings, Worker};

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

/// As the log says it: "inline A <-> B", "tap P".
impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topology::Inline { a, b } => write!(f, "inline {a} <-> {b}"),
            Topology::Tap { port } => write!(f, "tap {port}"),
        }
    }
}

/// How the workers wait for frames ([`PollMode`] with busy polling's
/// parameters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Poll {
    /// Spin [`socket::SPINS_BEFORE_SLEEP`] empty iterations, then sleep in
    /// poll() until frames arrive (or the next publish).
    #[default]
    Wakeup,
    /// Never sleep: a worker keeps its CPU at 100%.
    Spin,
    /// Never sleep, and run the driver's NAPI from the worker: every
    /// socket gets SO_PREFER_BUSY_POLL, SO_BUSY_POLL `usecs` and
    /// SO_BUSY_POLL_BUDGET `budget`, and the worker calls recvfrom() when
    /// its RX ring is empty and sendto() while TX is pending, every
    /// iteration. Where the kernel refuses the options, or no NAPI stands
    /// behind a socket, the worker spins instead and says why
    /// ([`SocketInfo::poll_fallback`], the statistics' `poll_fallback`).
    Busy { usecs: u32, budget: u16 },
}

impl Poll {
    /// Busy polling's defaults: the kernel's sample (xdpsock -B) and
    /// DPDK's AF_XDP driver use a budget of 64; 20 µs is the kernel's
    /// suggested busy_read.
    pub const BUSY_USECS: u32 = 20;
    pub const BUSY_BUDGET: u16 = 64;

    pub fn mode(self) -> PollMode {
        match self {
            Poll::Wakeup => PollMode::Wakeup,
            Poll::Spin => PollMode::Spin,
            Poll::Busy { .. } => PollMode::Busy,
        }
    }
}

/// "wakeup", "spin", "busy (20 µs, budget 64)", as the log says it.
impl fmt::Display for Poll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Poll::Busy { usecs, budget } => write!(f, "busy ({usecs} µs, budget {budget})"),
            p => f.write_str(p.mode().as_str()),
        }
    }
}

/// How the datapath is built.
#[derive(Clone, Debug)]
pub struct DatapathConfig {
    pub topology: Topology,
    /// Queues `0..queues` of every port get a socket and a worker.
    pub queues: u32,
    /// Engine per worker; its policy is split with
    /// [`Policy::for_worker`](rstwall_engine::policy::Policy::for_worker).
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
    /// How the workers wait for frames.
    pub poll: Poll,
    /// CPUs to pin workers to, in order (worker `i` gets `cpus[i % len]`).
    /// Empty: the CPUs the process may use.
    pub cpus: Vec<usize>,
    pub publish_every: Duration,
    /// Where the workers hand every RST they judge (the fleet exporter);
    /// `None`: nowhere.
    pub rsts: Option<RstSink>,
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
            poll: Poll::Wakeup,
            cpus: Vec::new(),
            publish_every: Duration::from_millis(100),
            rsts: None,
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
        if let Poll::Busy { usecs, budget } = self.poll {
            if usecs == 0 || usecs > i32::MAX as u32 {
                return Err(AfXdpError::Config(format!(
                    "busy_poll_usecs: 1..={} (got {usecs})",
                    i32::MAX
                )));
            }
            if budget == 0 {
                return Err(AfXdpError::Config(
                    "busy_poll_budget: at least 1 (got 0)".into(),
                ));
            }
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

/// A bound socket, for registering it in the XDP program's XSKMAP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketInfo {
    pub port: String,
    pub queue: u32,
    pub fd: RawFd,
    pub mode: XskMode,
    /// The poll mode its worker starts in: the configured one, or
    /// [`PollMode::Spin`] when the kernel refused busy polling's options
    /// (`poll_fallback` says which and why).
    pub poll: PollMode,
    pub poll_fallback: Option<String>,
}

impl SocketInfo {
    /// Queue 1 of port `pa` (fd 7), zero-copy, polling on wakeup: for
    /// tests and examples of what shows sockets.
    pub fn example() -> SocketInfo {
        SocketInfo {
            port: "pa".into(),
            queue: 1,
            fd: 7,
            mode: XskMode::ZeroCopy,
            poll: PollMode::Wakeup,
            poll_fallback: None,
        }
    }
}

/// "PORT/QUEUE MODE POLL", as the start-up log lists the sockets, with
/// a fallback's reason.
impl fmt::Display for SocketInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} {} poll {}",
            self.port,
            self.queue,
            self.mode.as_str(),
            self.poll.as_str()
        )?;
        if let Some(why) = &self.poll_fallback {
            write!(f, " ({why})")?;
        }
        Ok(())
    }
}

/// The running datapath. Dropping it stops the workers.
pub struct Datapath {
    workers: Workers<XskStats>,
    sockets: Vec<SocketInfo>,
}

impl Datapath {
    /// Open a UMEM and the sockets for every queue, fill the fill rings and
    /// start the workers. Traffic reaches them once the caller registers
    /// [`Datapath::sockets`] in the XDP program's XSKMAP.
    pub fn start(cfg: &DatapathConfig) -> Result<Datapath, AfXdpError> {
        Datapath::start_with_guard(cfg, &[])
    }

    /// [`Datapath::start`] with the in-kernel RST guard: each inline
    /// worker keeps entries in every one of `guard` (one per port's
    /// program) for the flows under attack (see `guard.rs`). The caller
    /// switches the guard on in the programs ([`rstwall_bpf::GuardMaps::configure`]).
    pub fn start_with_guard(
        cfg: &DatapathConfig,
        guard: &[&rstwall_bpf::GuardMaps],
    ) -> Result<Datapath, AfXdpError> {
        cfg.validate()?;
        // Open everything first, so a failure leaves no thread behind.
        let mut prepared = Vec::with_capacity(cfg.queues as usize);
        let mut sockets = Vec::new();
        for queue in 0..cfg.queues {
            let (umem, mut rings) = match open_queue(cfg, queue, cfg.bind) {
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
            for r in &mut rings {
                r.set_poll(cfg.poll);
                if let Some(why) = r.poll_fallback() {
                    tracing::warn!(
                        "{}/{queue}: spinning instead of busy polling: {why}",
                        r.name()
                    );
                }
                sockets.push(SocketInfo {
                    port: r.name().to_string(),
                    queue,
                    fd: r.xsk().fd(),
                    mode: r.xsk().mode(),
                    poll: r.poll(),
                    poll_fallback: r.poll_fallback().map(str::to_string),
                });
            }
            prepared.push((queue, umem, rings));
        }

        let mut spawner = Spawner::new(WorkersConfig {
            workers: cfg.queues,
            engine: cfg.engine.clone(),
            cpus: cfg.cpus.clone(),
            publish_every: cfg.publish_every,
        });
        // Every worker's handles on the guard maps, before any thread runs.
        let mut keepers = Vec::with_capacity(prepared.len());
        for _ in &prepared {
            keepers.push(match (&cfg.topology, guard) {
                (_, []) | (Topology::Tap { .. }, _) => None,
                (Topology::Inline { .. }, maps) => Some(GuardKeeper::new(
                    maps.iter()
                        .map(|m| m.try_clone())
                        .collect::<Result<_, _>>()
                        .map_err(|e| AfXdpError::Config(format!("RST guard: {e}")))?,
                )),
            });
        }
        if let Some(sink) = &cfg.rsts {
            spawner.send_rsts_to(sink.clone());
        }
        for ((queue, umem, rings), keeper) in prepared.into_iter().zip(keepers) {
            let worker = Worker {
                queue,
                umem,
                frame_size: cfg.frame_size as usize,
                batch: cfg.batch,
                tx_ring_full_drops: 0,
                tx_since_audit: 0,
                poll: cfg.poll.mode(),
                guard: keeper,
            };
            spawner.spawn(format!("rstwall-q{queue}"), move |core| {
                worker.run(core, rings)
            })?;
        }
        Ok(Datapath {
            workers: spawner.finish(),
            sockets,
        })
    }

    /// Every socket: register each in its port's XSKMAP under its queue.
    pub fn sockets(&self) -> &[SocketInfo] {
        &self.sockets
    }
}

impl Source for Datapath {
    type Stats = XskStats;
    type Endpoint = SocketInfo;

    fn workers(&self) -> &Workers<XskStats> {
        &self.workers
    }

    fn workers_mut(&mut self) -> &mut Workers<XskStats> {
        &mut self.workers
    }

    fn endpoints(&self) -> &[SocketInfo] {
        &self.sockets
    }

    /// The sockets close with their workers.
    fn stop(&mut self) -> Result<Vec<WorkerStats<XskStats>>, WorkerError> {
        self.workers.stop()
    }
}

/// One queue's UMEM and a socket on every port, each port with its
/// partition of the UMEM on its free list.
fn open_queue(
    cfg: &DatapathConfig,
    queue: u32,
    bind: BindMode,
) -> Result<(Umem, Vec<PortRings>), AfXdpError> {
    let ports = cfg.topology.ports();
    let (umem, mut descs): (Umem, Vec<FrameDesc>) = open_umem(UmemShape {
        frame_size: cfg.frame_size,
        ring_size: cfg.ring_size,
        frames: cfg.frames_per_port * ports.len() as u32,
    })
    .map_err(|e| AfXdpError::Umem {
        queue,
        reason: e.to_string(),
    })?;
    let xsk_cfg = XskConfig {
        ring_size: cfg.ring_size,
        bind,
    };
    let mut rings = Vec::with_capacity(ports.len());
    for port in ports {
        let xsk = Xsk::open(&umem, port, queue, &xsk_cfg)?;
        // The next partition of the UMEM belongs to this port.
        let rest = descs.split_off(cfg.frames_per_port as usize);
        let free = std::mem::replace(&mut descs, rest);
        rings.push(PortRings::new(port, xsk, free));
    }
    debug_assert!(descs.is_empty());
    Ok((umem, rings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_and_sockets_as_the_log_names_them() {
        let inline = Topology::Inline {
            a: "pa".into(),
            b: "pb".into(),
        };
        let tap = Topology::Tap { port: "t0".into() };
        assert_eq!(inline.to_string(), "inline pa <-> pb");
        assert_eq!(tap.to_string(), "tap t0");
        let s = SocketInfo::example();
        assert_eq!(s.to_string(), "pa/1 zerocopy poll wakeup");
        let s = SocketInfo {
            poll: PollMode::Spin,
            poll_fallback: Some("SO_PREFER_BUSY_POLL: Operation not permitted".into()),
            ..s
        };
        assert_eq!(
            s.to_string(),
            "pa/1 zerocopy poll spin (SO_PREFER_BUSY_POLL: Operation not permitted)"
        );
        assert_eq!(
            Poll::Busy {
                usecs: 20,
                budget: 64
            }
            .to_string(),
            "busy (20 µs, budget 64)"
        );
        assert_eq!(Poll::Spin.to_string(), "spin");
    }

    #[test]
    fn busy_poll_parameters_are_checked() {
        let mut cfg = DatapathConfig::new(
            Topology::Tap { port: "t0".into() },
            1,
            EngineConfig::default(),
        );
        cfg.poll = Poll::Busy {
            usecs: 0,
            budget: 64,
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("busy_poll_usecs"));
        cfg.poll = Poll::Busy {
            usecs: 20,
            budget: 0,
        };
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("busy_poll_budget"));
        cfg.poll = Poll::Busy {
            usecs: 20,
            budget: 64,
        };
        assert!(cfg.validate().is_ok());
    }
}
