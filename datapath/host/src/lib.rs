//! Host mode: a frame source that observes the host it runs on.
//!
//! Where the AF_XDP source takes frames off a wire, this one watches every
//! interface of the network namespace (`lo` included, and interfaces that
//! appear later) without touching a packet, and runs the same engine over
//! copies of the TCP headers:
//!
//! ```text
//!  tc ingress/egress (every interface)        tracepoints, LSM/fentry, iterator
//!      │ headers of each TCP segment               │ what the kernel did with each
//!      ▼ (ring per worker, by flow)               ▼ RST; who owns each socket
//!  workers: engine (monitor mode) ──judged RSTs──► correlator ──► RstEvent
//!                                                      │          (class + kernel verdict
//!                                                      │           + agreement + process)
//!                                                      └─► MibSecond (netstat's counters,
//!                                                           each second, with what caused them)
//! ```
//!
//! * [`HostSource::start`] loads and attaches everything ([`HostConfig`]);
//!   it implements [`rstwall_source::Source`], so the control side drives
//!   it like the AF_XDP datapath (statistics, policy, questions, capture).
//!   Its workers' own part of the statistics is [`HostWorkerStats`].
//! * [`HostSource::events`] — one [`RstEvent`] per RST: the packet's
//!   fields (those of `analyze --events`), `iface`, `direction`, rstwall's
//!   `class`, the kernel's verdict ([`KernelVerdict`]), their
//!   [`Agreement`], and the owning [`Process`] (pid, comm, cgroup, unit,
//!   container).
//! * [`HostSource::capabilities`] — what this kernel lets host mode see,
//!   and why not where it does not ([`Capabilities`]).
//! * [`HostSource::seconds`] — netstat's counters second by second
//!   ([`MibSecond`]: [`TcpMib`] deltas beside [`Observed`] kernel events,
//!   closes grouped by cause, endpoint and process).
//! * [`HostSource::kernel_counters`] — every segment the tc programs saw,
//!   by flag class, and the header records lost to full rings;
//!   [`HostSource::correlation`] — agreement counts, send reasons.
//!
//! Host mode never drops, delays or alters a packet: the tc programs
//! return "next" for every one, and the engine runs the policy in monitor
//! mode ([`HostSource::mode`]) whatever the configuration says.
//!
//! Everything here needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON,
//! CAP_SYS_ADMIN for the iterator).

mod correlate;
mod event;
mod ifaces;
mod mib;
mod process;
mod reconcile;
mod stats;
mod verdict;
mod worker;

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{self, Receiver};
use rstwall_bpf::host::{HostCounters, TcConfig, TcPrograms, TraceCounters, TracePrograms};
use rstwall_bpf::BpfError;
use rstwall_engine::engine::EngineConfig;
use rstwall_engine::policy::Mode;
use rstwall_source::{Source, Spawner, WorkerError, WorkerStats, Workers, WorkersConfig};
use serde::Serialize;

pub use correlate::CorrelationStats;
pub use event::{Direction, RstEvent};
pub use ifaces::{IfaceSelection, Interface};
pub use mib::TcpMib;
pub use process::{container_id, systemd_unit, OwnerSource, Process};
pub use reconcile::{CloseCause, CloseCounter, CloseGroup, MibSecond, Observed};
pub use rstwall_bpf::host::{Capability, KernelCapabilities, LinkKind, TcDirection, TcMode};
pub use stats::{HostTotals, HostWorker, HostWorkerStats};
pub use verdict::{agreement, state, Agreement, KernelVerdict, Received, Sent};

/// How host mode runs.
#[derive(Clone, Debug)]
pub struct HostConfig {
    pub ifaces: IfaceSelection,
    /// Workers, each with its own ring buffer and engine (1..=64); a
    /// flow's segments all reach one of them.
    pub workers: u32,
    /// Bytes per ring buffer (a power of two, at least 4096).
    pub ring_size: u32,
    /// Engine per worker. Its policy runs in monitor mode whatever its
    /// mode says: host mode never drops.
    pub engine: EngineConfig,
    /// CPUs to pin workers to (empty: any the process may use).
    pub cpus: Vec<usize>,
    pub publish_every: Duration,
    /// Records read per batch.
    pub batch: usize,
    /// How long a RST and the kernel's events about it wait for each
    /// other.
    pub correlation_window: Duration,
    /// RST events buffered for the consumer of [`HostSource::events`]
    /// (beyond, they are counted dropped), and judged RSTs buffered for
    /// the correlator. Both channels hold this many from the start (a few
    /// hundred bytes each).
    pub events_queued: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            ifaces: IfaceSelection::All,
            workers: 1,
            ring_size: 8 << 20,
            engine: EngineConfig::default(),
            cpus: Vec::new(),
            publish_every: Duration::from_millis(100),
            batch: 256,
            correlation_window: Duration::from_millis(250),
            events_queued: 8192,
        }
    }
}

/// Why host mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Bpf(#[from] BpfError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Workers(#[from] WorkerError),
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> HostError {
    move |source| HostError::Io { what, source }
}

/// What host mode can do on this kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// How tc programs attach (tcx, or clsact before Linux 6.6), per
    /// interface in [`HostSource::interfaces`].
    pub packets: Capability,
    /// The kernel's verdicts and socket owners; all unavailable when the
    /// tracing programs could not load at all.
    pub kernel: KernelCapabilities,
}

impl Capabilities {
    /// What this kernel does not let host mode see (the capability's name,
    /// e.g. `send_reset_reason`), and why.
    pub fn unavailable(&self) -> Vec<(&'static str, String)> {
        let k = &self.kernel;
        let all: [(&'static str, &Capability); 10] = [
            ("packets", &self.packets),
            ("receive_reset", &k.receive_reset),
            ("send_reset", &k.send_reset),
            ("send_reset_reason", &k.send_reset_reason),
            ("rst_dropped", &k.rst_dropped),
            ("rst_dropped_socket", &k.rst_dropped_socket),
            ("challenge_ack", &k.challenge_ack),
            ("socket_states", &k.socket_states),
            ("owner_at_accept", &k.owner_at_accept),
            ("owner_existing", &k.owner_existing),
        ];
        all.into_iter()
            .filter_map(|(what, c)| match c {
                Capability::Available { .. } => None,
                Capability::Unavailable { why } => Some((what, why.clone())),
            })
            .collect()
    }
}

/// One ring buffer and its worker: where a worker's frames come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RingEndpoint {
    pub ring: usize,
    pub bytes: u32,
}

impl fmt::Display for RingEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ring {} ({} KiB)", self.ring, self.bytes / 1024)
    }
}

/// Host mode, running. Dropping it stops everything and detaches every
/// program.
pub struct HostSource {
    workers: Workers<HostWorkerStats>,
    rings: Vec<RingEndpoint>,
    events: Receiver<RstEvent>,
    shared: Arc<Mutex<correlate::Shared>>,
    caps: Capabilities,
    tc: Arc<TcPrograms>,
    trace: Option<TracePrograms>,
    // Field order is drop order: the interface watcher (attachments)
    // goes before the correlator stops.
    ifaces: ifaces::IfaceWatcher,
    correlator_stop: Arc<AtomicBool>,
    correlator: Option<JoinHandle<()>>,
}

/// The inode number of the calling thread's network namespace.
fn netns_inode() -> std::io::Result<u32> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.ino() as u32)
}

impl HostSource {
    /// Load the programs, start the workers and the correlator, attach to
    /// the interfaces that exist, and report the sockets that exist. The
    /// calling thread's network namespace is the one observed (threads
    /// started here inherit it).
    pub fn start(cfg: &HostConfig) -> Result<HostSource, HostError> {
        if cfg.batch == 0 {
            return Err(HostError::Config("batch: at least 1".into()));
        }
        cfg.engine.validate().map_err(HostError::Config)?;
        let mut engine = cfg.engine.clone();
        engine.policy.set_mode(Mode::Monitor);

        let tc = Arc::new(TcPrograms::load(TcConfig {
            rings: cfg.workers,
            ring_size: cfg.ring_size,
        })?);
        let netns = netns_inode().map_err(io_err("reading /proc/thread-self/ns/net"))?;
        let (trace, kernel_caps) = match TracePrograms::load(netns) {
            Ok(t) => {
                let caps = t.capabilities().clone();
                (Some(t), caps)
            }
            Err(e) => {
                tracing::warn!("host mode without the kernel's verdicts: {e}");
                (None, unavailable(&e.to_string()))
            }
        };

        let (rst_tx, rst_rx) = channel::bounded(cfg.events_queued.max(1));
        let (event_tx, event_rx) = channel::bounded(cfg.events_queued.max(1));
        let shared = Arc::new(Mutex::new(correlate::Shared::default()));
        let ifaces = ifaces::IfaceWatcher::start(tc.clone(), cfg.ifaces.clone())
            .map_err(io_err("watching the interfaces (rtnetlink)"))?;

        let correlator_stop = Arc::new(AtomicBool::new(false));
        let correlator = match &trace {
            Some(t) => {
                let events = t
                    .events_reader()
                    .map_err(io_err("mapping the kernel events ring"))?;
                let (rst_reasons, drop_reasons) = t.reason_names();
                let c = correlate::Correlator {
                    mib_at_start: TcpMib::read().ok(),
                    window_ns: cfg.correlation_window.as_nanos() as u64,
                    rsts: rst_rx,
                    out: event_tx,
                    shared: shared.clone(),
                    ifaces: ifaces.table(),
                    rst_reasons,
                    drop_reasons,
                    stop: correlator_stop.clone(),
                };
                Some(
                    std::thread::Builder::new()
                        .name("rstwall-correlate".into())
                        .spawn(move || c.run(events))
                        .map_err(io_err("starting the correlator"))?,
                )
            }
            None => {
                // No kernel events: a ring nobody writes.
                None
            }
        };

        let mut spawner = Spawner::new(WorkersConfig {
            workers: cfg.workers,
            engine,
            cpus: cfg.cpus.clone(),
            publish_every: cfg.publish_every,
        });
        let mut rings = Vec::new();
        for i in 0..cfg.workers as usize {
            let w = worker::Worker {
                ring_index: i,
                ring: tc.ring_reader(i).map_err(io_err("mapping a ring buffer"))?,
                batch: cfg.batch,
                rsts: rst_tx.clone(),
                ifaces: ifaces.table(),
            };
            spawner.spawn(format!("rstwall-host{i}"), move |core| w.run(core))?;
            rings.push(RingEndpoint {
                ring: i,
                bytes: tc.ring_size(),
            });
        }
        drop(rst_tx);
        let workers = spawner.finish();

        if let Some(t) = &trace {
            if let Err(e) = t.scan_existing_sockets() {
                tracing::warn!("owners of existing sockets unknown: {e}");
            }
        }
        Ok(HostSource {
            workers,
            rings,
            events: event_rx,
            shared,
            caps: Capabilities {
                packets: Capability::Available {
                    via: "tc (tcx links; clsact where tcx is missing)".into(),
                },
                kernel: kernel_caps,
            },
            tc,
            trace,
            ifaces,
            correlator_stop,
            correlator,
        })
    }

    /// The RST events, in the order their windows closed.
    pub fn events(&self) -> &Receiver<RstEvent> {
        &self.events
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Host mode only monitors.
    pub fn mode(&self) -> Mode {
        Mode::Monitor
    }

    /// The interfaces observed (or that could not be), now.
    pub fn interfaces(&self) -> Vec<Interface> {
        self.ifaces.interfaces()
    }

    /// The tc programs' per-CPU counters, summed.
    pub fn kernel_counters(&self) -> Result<HostCounters, BpfError> {
        self.tc.counters()
    }

    /// The tracing programs' counters (None without them).
    pub fn trace_counters(&self) -> Option<TraceCounters> {
        self.trace.as_ref().and_then(|t| t.counters().ok())
    }

    /// What the correlator counted since start.
    pub fn correlation(&self) -> CorrelationStats {
        self.shared
            .lock()
            .map(|s| s.stats.clone())
            .unwrap_or_default()
    }

    /// The last seconds (up to two minutes) of netstat's counters and what
    /// was observed, oldest first.
    pub fn seconds(&self) -> Vec<MibSecond> {
        self.shared
            .lock()
            .map(|s| s.seconds.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The TCP MIB as last read.
    pub fn mib(&self) -> Option<TcpMib> {
        self.shared.lock().ok().and_then(|s| s.mib)
    }

    /// The latest disagreements (each was an event, and logged).
    pub fn disagreements(&self) -> Vec<RstEvent> {
        self.shared
            .lock()
            .map(|s| s.disagreements.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn stop_all(&mut self) -> Result<Vec<WorkerStats<HostWorkerStats>>, WorkerError> {
        let out = self.workers.stop();
        self.correlator_stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.correlator.take() {
            let _ = t.join();
        }
        out
    }
}

fn unavailable(why: &str) -> KernelCapabilities {
    let c = || Capability::Unavailable {
        why: why.to_string(),
    };
    KernelCapabilities {
        receive_reset: c(),
        send_reset: c(),
        send_reset_reason: c(),
        rst_dropped: c(),
        rst_dropped_socket: c(),
        challenge_ack: c(),
        socket_states: c(),
        owner_at_accept: c(),
        owner_existing: c(),
    }
}

impl Source for HostSource {
    type Stats = HostWorkerStats;
    type Endpoint = RingEndpoint;

    fn workers(&self) -> &Workers<HostWorkerStats> {
        &self.workers
    }

    fn workers_mut(&mut self) -> &mut Workers<HostWorkerStats> {
        &mut self.workers
    }

    fn endpoints(&self) -> &[RingEndpoint] {
        &self.rings
    }

    /// Stops the workers and the correlator (the RSTs still waiting leave
    /// with what they have); the programs stay attached until drop.
    fn stop(&mut self) -> Result<Vec<WorkerStats<HostWorkerStats>>, WorkerError> {
        self.stop_all()
    }
}

impl Drop for HostSource {
    fn drop(&mut self) {
        let _ = self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel without some hooks: what is missing is listed by name,
    /// with its reason, and nothing else.
    #[test]
    fn what_the_kernel_keeps_is_listed() {
        let mut kernel = unavailable("no BTF");
        kernel.receive_reset = Capability::Available {
            via: "tp_btf/tcp_receive_reset".into(),
        };
        let caps = Capabilities {
            packets: Capability::Available { via: "tcx".into() },
            kernel,
        };
        let missing = caps.unavailable();
        assert_eq!(missing.len(), 8, "{missing:?}");
        assert!(missing.iter().all(|(_, why)| why == "no BTF"));
        assert!(!missing.iter().any(|(what, _)| *what == "receive_reset"));
        assert!(missing.iter().any(|(what, _)| *what == "send_reset_reason"));
    }
}
