//! The contenders ([`Contender`]), started and stopped in the appliance
//! namespace.
//!
//! All but `nftables` sit behind the same XDP program (rstwall's, inline
//! on A and B) and differ only in what serves the AF_XDP sockets
//! registered in its XSKMAP:
//!
//! * `bare` — the ceiling ([`crate::bare`]): one UMEM and a socket per
//!   port, opened as `Datapath::start` opens them (same ring sizes,
//!   frames, batch), and a loop with the worker's structure that transmits
//!   every frame, without engine, frame ledger or stats.
//! * `touch` — the bare loop, also reading each frame's first cache line:
//!   a diagnostic, the cost of touching the frame at all.
//! * `monitor`, `enforce` — rstwall's `Datapath`, one worker, its engine's
//!   policy in that mode (the default policy otherwise).
//! * `guard` — `enforce` with the in-kernel RST guard: the worker keeps
//!   entries in both programs' guard maps for attacked flows, and the
//!   programs drop those flows' spoofed RSTs (the guard is switched off
//!   again when it stops).
//! * `export` — `monitor` handing every RST to a real fleet exporter
//!   that streams them to a local JetStream ([`super::export`]): the
//!   packet path's rate with export on, beside `monitor`'s with it off.
//! * `kernel` — no socket: the program's fail-open path forwards TCP to
//!   the peer port in the kernel (XDP_REDIRECT through its DEVMAP). A
//!   latency reference, not a contender: measured in the latency phase
//!   only (its throughput is the generator's, and the redirect needs NAPI
//!   on the sink, which the sink's counter must not have).
//! * `nftables` — Linux bridging A and B with conntrack and nftables
//!   ([`crate::kernel`]): rstwall's programs are detached for it.

use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rstwall_afxdp::{BindMode, Datapath, DatapathConfig, Poll, PollMode, Topology};
use rstwall_bpf::shared::guard::{margin_for, GuardCfg};
use rstwall_engine::engine::EngineConfig;
use rstwall_engine::policy::Mode;
use rstwall_export::Exporter;
use rstwall_source::Source;

use super::export::ExportTally;
use super::options::Contender;
use super::rig::{wait_for, Programs, Rig};
use crate::bare::{self, BareShape, BareSockets};
use crate::cpu;
use crate::kernel::{KernelBridge, NftCounters};
use crate::xsk::retry_busy;

/// A forwarder serving A and B.
pub enum Forwarder {
    Kernel(Rc<Programs>),
    Bare {
        progs: Rc<Programs>,
        stop: Arc<AtomicBool>,
        handle: JoinHandle<std::io::Result<()>>,
        tid: i32,
        fd_a: RawFd,
    },
    Rstwall {
        progs: Rc<Programs>,
        dp: Datapath,
        tid: i32,
        fd_a: RawFd,
        /// The fleet exporter its worker hands RSTs to (`export`).
        exporter: Option<Exporter>,
    },
    Nftables(KernelBridge),
}

impl Forwarder {
    /// rstwall's programs, when this forwarder runs behind them.
    pub fn programs(&self) -> Option<&Programs> {
        match self {
            Forwarder::Kernel(p) | Forwarder::Bare { progs: p, .. } => Some(p),
            Forwarder::Rstwall { progs, .. } => Some(progs),
            Forwarder::Nftables(_) => None,
        }
    }

    /// The exporter's counts now, for the export contender.
    pub fn export_tally(&self) -> Option<ExportTally> {
        match self {
            Forwarder::Rstwall {
                exporter: Some(x), ..
            } => Some(ExportTally::of(x)),
            _ => None,
        }
    }

    /// The forwarding thread's id and A's socket, for AF_XDP forwarders.
    pub fn thread_and_socket(&self) -> Option<(i32, RawFd)> {
        match self {
            Forwarder::Kernel(_) | Forwarder::Nftables(_) => None,
            Forwarder::Bare { tid, fd_a, .. } | Forwarder::Rstwall { tid, fd_a, .. } => {
                Some((*tid, *fd_a))
            }
        }
    }
}

/// What a forwarder says when it stops.
#[derive(Clone, Debug, Default)]
pub struct StopReport {
    /// Frames the engine judged, passed and dropped.
    pub judged: u64,
    pub dropped: u64,
    pub active_flows: usize,
    /// What the nftables rules dropped.
    pub nft: Option<NftCounters>,
    /// The exporter's counts once the worker stopped and the exporter
    /// flushed what it held (or spooled it) and stopped.
    pub export: Option<ExportTally>,
    /// rstwall: the worker's sleeps in poll(), and over its sockets the
    /// TX kicks (sendto), fill kicks and busy polls (recvfrom).
    pub sleeps: u64,
    pub tx_kicks: u64,
    pub fill_kicks: u64,
    pub busy_polls: u64,
    /// rstwall: the poll mode in effect on A's socket at the end, its NAPI
    /// id, and why it is not the configured one.
    pub poll: Option<PollMode>,
    pub napi_id: u32,
    pub poll_fallback: Option<String>,
}

impl Rig<'_> {
    fn datapath_config(&self, mode: Mode, poll: Poll) -> DatapathConfig {
        let mut engine = EngineConfig::default();
        engine.flow_capacity = engine
            .flow_capacity
            .max(self.traffic.flows + self.traffic.flows / 4);
        engine.policy.set_mode(mode);
        let mut cfg = DatapathConfig::new(
            Topology::Inline {
                a: self.lab.port_a.clone(),
                b: self.lab.port_b.clone(),
            },
            1,
            engine,
        );
        cfg.bind = BindMode::Copy;
        cfg.poll = poll;
        cfg.cpus = vec![self.o.fwd_cpu];
        cfg
    }

    /// Start `c`; a queue still held by the previous contender's closed
    /// socket (EBUSY) is waited for.
    pub fn start(&self, c: Contender) -> Result<Forwarder> {
        if c == Contender::Nftables {
            // The bridge's ports get a program of their own.
            self.detach_programs();
            return Ok(Forwarder::Nftables(KernelBridge::start(
                self.lab,
                self.o.fwd_cpu,
                self.o.rst_limit,
            )?));
        }
        let progs = self.programs()?;
        retry_busy(|| self.try_start(c, progs.clone()))
    }

    fn try_start(&self, c: Contender, progs: Rc<Programs>) -> Result<Forwarder> {
        let lab = self.lab;
        match c {
            Contender::Kernel => Ok(Forwarder::Kernel(progs)),
            Contender::Bare | Contender::Touch => {
                // The datapath's own shape, so the only difference is the
                // engine (and its bookkeeping).
                let d = self.datapath_config(Mode::Monitor, Poll::Wakeup);
                let shape = BareShape {
                    ring: d.ring_size,
                    frames_per_port: d.frames_per_port,
                    frame_size: d.frame_size,
                    batch: d.batch,
                };
                let sockets = lab
                    .app
                    .run(|| BareSockets::open(shape, &lab.port_a, &lab.port_b))??;
                let [fd_a, fd_b] = sockets.fds();
                let stop = Arc::new(AtomicBool::new(false));
                let tid = Arc::new(AtomicI32::new(0));
                let cpu = self.o.fwd_cpu;
                let touch = c == Contender::Touch;
                let handle = {
                    let (stop, tid) = (stop.clone(), tid.clone());
                    thread::Builder::new()
                        .name("bench-bare-q0".into())
                        .spawn(move || {
                            cpu::pin(cpu);
                            bare::run_bare(sockets, touch, &stop, &tid)
                        })?
                };
                let tid = wait_for(|| Some(tid.load(Ordering::Relaxed)).filter(|&t| t != 0))
                    .context("bare loop did not start")?;
                progs.a().register_xsk(0, fd_a)?;
                progs.b().register_xsk(0, fd_b)?;
                Ok(Forwarder::Bare {
                    progs,
                    stop,
                    handle,
                    tid,
                    fd_a,
                })
            }
            Contender::Monitor
            | Contender::Enforce
            | Contender::Guard
            | Contender::Export
            | Contender::MonitorSpin
            | Contender::EnforceSpin
            | Contender::MonitorBusy
            | Contender::EnforceBusy => {
                let mode = c.policy_mode().expect("an rstwall contender");
                let mut cfg = self.datapath_config(mode, c.poll());
                // Busy polling wants the ports' interrupts deferred (the
                // kernel's af_xdp.rst); the lab's ports are ours to set,
                // and set back when the contender stops.
                if matches!(cfg.poll, Poll::Busy { .. }) {
                    let (irqs, ns) = self.o.busy_defer;
                    for port in [&lab.port_a, &lab.port_b] {
                        lab.app.set_napi_defer(port, irqs, ns)?;
                    }
                }
                // The exporter first, as the daemon starts it: the worker
                // hands it every RST from its first batch.
                let exporter = if c == Contender::Export {
                    let broker = self.broker.as_ref().context("no broker for export")?;
                    let (exporter, sink) = broker.exporter(None)?;
                    cfg.rsts = Some(sink);
                    Some(exporter)
                } else {
                    None
                };
                let dp = if c == Contender::Guard {
                    let guard = GuardCfg::for_policy(
                        &cfg.engine.policy,
                        margin_for(cfg.ring_size, cfg.frame_size),
                    );
                    progs.a().guard().configure(guard)?;
                    progs.b().guard().configure(guard)?;
                    // One map, shared by both programs.
                    let maps = [progs.a().guard()];
                    lab.app.run(|| Datapath::start_with_guard(&cfg, &maps))??
                } else {
                    lab.app.run(|| Datapath::start(&cfg))??
                };
                let mut fd_a = -1;
                for sock in dp.sockets() {
                    if sock.port == lab.port_a {
                        progs.a().register_xsk(sock.queue, sock.fd)?;
                        fd_a = sock.fd;
                    } else {
                        progs.b().register_xsk(sock.queue, sock.fd)?;
                    }
                }
                let tid = wait_for(|| cpu::find_thread("rstwall-q0"))
                    .context("no rstwall-q0 worker thread")?;
                Ok(Forwarder::Rstwall {
                    progs,
                    dp,
                    tid,
                    fd_a,
                    exporter,
                })
            }
            Contender::Nftables => unreachable!("started above"),
        }
    }

    pub fn stop(&self, f: Forwarder) -> Result<StopReport> {
        if let Forwarder::Bare { progs, .. } | Forwarder::Rstwall { progs, .. } = &f {
            // The guard, if it was on, goes with the forwarder.
            progs.a().guard().configure(GuardCfg::OFF)?;
            progs.b().guard().configure(GuardCfg::OFF)?;
            progs.a().unregister_xsk(0)?;
            progs.b().unregister_xsk(0)?;
        }
        match f {
            Forwarder::Kernel(_) => Ok(StopReport::default()),
            Forwarder::Bare { stop, handle, .. } => {
                stop.store(true, Ordering::Relaxed);
                handle
                    .join()
                    .map_err(|_| anyhow!("bare loop panicked"))?
                    .context("bare loop")?;
                Ok(StopReport::default())
            }
            Forwarder::Rstwall {
                mut dp, exporter, ..
            } => {
                let stats = dp.stop()?;
                let export = exporter.map(|x| ExportTally::from_status(&x.stop()));
                for port in [&self.lab.port_a, &self.lab.port_b] {
                    self.lab.app.set_napi_defer(port, 0, 0)?;
                }
                let w = stats.first().context("no worker stats")?;
                if w.source.frames.ledger_errors != 0 || w.source.frames.leaked != 0 {
                    bail!(
                        "datapath frame ledger: {} errors, {} leaked",
                        w.source.frames.ledger_errors,
                        w.source.frames.leaked
                    );
                }
                let socks = &w.source.sockets;
                let a = socks.first();
                Ok(StopReport {
                    judged: w.counters.frames,
                    dropped: w.counters.dropped,
                    active_flows: w.active_flows,
                    nft: None,
                    export,
                    sleeps: w.sleeps,
                    tx_kicks: socks.iter().map(|s| s.tx_wakeups).sum(),
                    fill_kicks: socks.iter().map(|s| s.fill_wakeups).sum(),
                    busy_polls: socks.iter().map(|s| s.busy_polls).sum(),
                    poll: a.map(|s| s.poll),
                    napi_id: a.map_or(0, |s| s.napi_id),
                    poll_fallback: socks.iter().find_map(|s| s.poll_fallback.clone()),
                })
            }
            Forwarder::Nftables(k) => {
                let nft = k.counters();
                k.stop()?;
                Ok(StopReport {
                    nft: Some(nft?),
                    ..StopReport::default()
                })
            }
        }
    }

    /// Run `f` with `c` started, and stop it even when `f` fails.
    pub fn with<T>(
        &self,
        c: Contender,
        f: impl FnOnce(&Forwarder) -> Result<T>,
    ) -> Result<(T, StopReport)> {
        let fwd = self.start(c)?;
        let result = f(&fwd);
        // Let what is in flight drain before the sockets go.
        thread::sleep(Duration::from_millis(50));
        let stop = self.stop(fwd);
        Ok((result?, stop?))
    }
}
