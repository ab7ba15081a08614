//! The measurements on the lab, shared by `rstwall-bench forward` and
//! `rstwall-bench run`: contenders started and stopped in the appliance
//! namespace, the generator driven, the sink read.
//!
//! ```text
//!   gen ns                      appliance ns                        sink ns
//!   generator ─veth─ A ══[forwarder: one thread, one queue]══ B ─veth─ sink
//!   TCP client                                                       TCP server
//! ```
//!
//! Contenders. All but `nftables` sit behind the same XDP program
//! (rstwall's, inline on A and B) and differ only in what serves the
//! AF_XDP sockets registered in its XSKMAP:
//!
//! * `bare` — the ceiling: one UMEM and a socket per port, opened as
//!   `Datapath::start` opens them (same ring sizes, frames, batch), and a
//!   loop with the worker's structure (completions, refill, RX burst → TX,
//!   kicks, the same spin-then-poll idle policy) that transmits every
//!   frame, without engine, frame ledger or stats.
//! * `monitor`, `enforce` — rstwall's `Datapath`, one worker, its engine's
//!   policy in that mode (the default policy otherwise).
//! * `kernel` — no socket: the program's fail-open path forwards TCP to the
//!   peer port in the kernel (XDP_REDIRECT through its DEVMAP). A latency
//!   reference, not a contender.
//! * `nftables` — Linux bridging A and B with conntrack and nftables
//!   ([`super::kernel`]): rstwall's programs are detached for it.
//!
//! Measurements (each from a freshly started contender):
//!
//! * [`Bench::throughput`] — the steady pass flat out from the XDP
//!   live-frames generator, 64-byte frames; forwarded = what the sink's
//!   counter saw.
//! * [`Bench::latency`] — the steady pass at a low, fixed rate from an
//!   AF_XDP socket, each frame tagged; an AF_XDP socket on the sink
//!   (rstwall's program, tap role) records receive − send time.
//! * [`Bench::accuracy`] — the handshakes and exactly one steady pass at a
//!   rate every contender keeps up with; the sink's counter says, by label,
//!   what came through.
//! * [`Bench::goodput`] — a kernel TCP transfer from the generator's
//!   namespace to the sink's, without and then with a blind-reset flood at
//!   its 4-tuple.
//!
//! The CPUs are shared with whatever else runs: every measurement reports
//! the CPU other processes used during it, and the commands take it again
//! when that was too much.

use std::cell::RefCell;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use hdrhistogram::Histogram;
use rstwall_afxdp::{sys, BindMode, Datapath, DatapathConfig, Topology};
use rstwall_bench::frame::{marker_mac, MARK_DELIVER};
use rstwall_bench::gen::{Family, Pick, Spec, XskBind};
use rstwall_bench::traffic::{FrameCounts, Frames, Label, Traffic};
use rstwall_bpf::{PortProgram, PortRole, XdpCounters, XdpMode};
use rstwall_engine::engine::EngineConfig;
use rstwall_engine::policy::Mode;
use rstwall_engine::wire::TcpFlags;
use rstwall_source::Source;

use super::cpu::{self, CpuShare, CpuTimes};
use super::kernel::{KernelBridge, NftCounters, RstLimit};
use super::lab::{self, Lab, Netns};
use super::live;
use super::sink::{SinkCounter, CODES};
use super::xsk::{
    self, BareShape, BareSockets, GenConfig, GenShared, Rate, Sink, SinkShared, Stamps,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Contender {
    /// In-kernel XDP redirect A → B, no AF_XDP (reference).
    Kernel,
    /// Bare AF_XDP rx→tx loop (the ceiling).
    Bare,
    /// The bare loop, also reading each frame's first cache line (a
    /// diagnostic: the cost of touching the frame at all).
    Touch,
    /// Linux bridging with conntrack and nftables (invalid drop, RST
    /// limit).
    Nftables,
    /// rstwall's datapath, policy in monitor mode.
    Monitor,
    /// rstwall's datapath, policy in enforce mode.
    Enforce,
}

impl Contender {
    pub fn name(self) -> &'static str {
        match self {
            Contender::Kernel => "kernel XDP redirect",
            Contender::Bare => "bare AF_XDP loop",
            Contender::Touch => "bare loop + frame read",
            Contender::Nftables => "Linux bridge + nftables",
            Contender::Monitor => "rstwall monitor",
            Contender::Enforce => "rstwall enforce",
        }
    }

    /// The name as typed on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Contender::Kernel => "kernel",
            Contender::Bare => "bare",
            Contender::Touch => "touch",
            Contender::Nftables => "nftables",
            Contender::Monitor => "monitor",
            Contender::Enforce => "enforce",
        }
    }

    pub fn is_rstwall(self) -> bool {
        matches!(self, Contender::Monitor | Contender::Enforce)
    }

    /// Whether it forwards from AF_XDP sockets.
    fn is_afxdp(self) -> bool {
        matches!(
            self,
            Contender::Bare | Contender::Touch | Contender::Monitor | Contender::Enforce
        )
    }
}

/// What the measurements need to know; the commands fill it from their
/// options.
pub struct Settings {
    pub rounds: usize,
    /// Throughput: measured window, and steady traffic before it.
    pub round: Duration,
    pub warmup: Duration,
    pub contenders: Vec<Contender>,
    pub latency_pps: u64,
    pub latency: Duration,
    pub latency_contenders: Vec<Contender>,
    pub handshake_pps: u64,
    pub gen_cpu: usize,
    pub fwd_cpu: usize,
    pub max_other: f64,
    pub max_repeats: usize,
    pub quiet_secs: u32,
    /// Accuracy: frames per second of the one steady pass.
    pub accuracy_pps: u64,
    /// Goodput: each window's length, and the flood's rate.
    pub goodput: Duration,
    pub flood_pps: u64,
    /// The nftables contender's RST limit.
    pub rst_limit: RstLimit,
}

pub fn secs(name: &str, v: f64) -> Result<Duration, rstwall_bench::gen::BadArg> {
    if !(v.is_finite() && v > 0.0 && v < 1e6) {
        return Err(rstwall_bench::gen::BadArg(format!(
            "--{name}: must be a positive number of seconds"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A port's XDP program, detached from inside its namespace when dropped
/// (an ifindex means nothing elsewhere).
pub struct NsProgram {
    ns: Arc<Netns>,
    prog: Option<PortProgram>,
}

impl NsProgram {
    pub fn attach(ns: &Arc<Netns>, ifname: &str, role: PortRole) -> Result<NsProgram> {
        let prog = ns.run(|| PortProgram::attach(ifname, role, XdpMode::Auto, false))??;
        Ok(NsProgram {
            ns: ns.clone(),
            prog: Some(prog),
        })
    }
}

impl std::ops::Deref for NsProgram {
    type Target = PortProgram;
    fn deref(&self) -> &PortProgram {
        self.prog.as_ref().expect("attached")
    }
}

impl Drop for NsProgram {
    fn drop(&mut self) {
        let prog = self.prog.take();
        let _ = self.ns.run(move || drop(prog));
    }
}

/// rstwall's programs on the appliance's ports, each the other's peer.
pub struct Programs {
    a: NsProgram,
    b: NsProgram,
}

impl Programs {
    fn attach(lab: &Lab) -> Result<Programs> {
        let (ia, ib) = lab.app.run(|| -> Result<(u32, u32)> {
            Ok((sys::ifindex(&lab.port_a)?, sys::ifindex(&lab.port_b)?))
        })??;
        let a = NsProgram::attach(&lab.app, &lab.port_a, PortRole::Inline { peer_ifindex: ib })?;
        let b = NsProgram::attach(&lab.app, &lab.port_b, PortRole::Inline { peer_ifindex: ia })?;
        Ok(Programs { a, b })
    }

    pub fn a(&self) -> &PortProgram {
        &self.a
    }

    pub fn b(&self) -> &PortProgram {
        &self.b
    }
}

pub struct Bench<'a> {
    pub lab: &'a Lab,
    /// rstwall's programs on A and B, while an AF_XDP contender or the
    /// kernel redirect needs them.
    programs: RefCell<Option<Rc<Programs>>>,
    pub traffic: Arc<Traffic>,
    pub s: &'a Settings,
    /// The live-frames generator, loaded at the first throughput
    /// measurement and kept.
    live: std::sync::OnceLock<Arc<live::LiveGen>>,
    counter: SinkCounter,
    /// The XDP mode rstwall's programs were attached in.
    pub xdp_mode: RefCell<String>,
}

/// Packets counted by a device of the calling thread's namespace: received,
/// transmitted, dropped on transmit (`/proc/net/dev`).
pub(super) fn dev_packets(dev: &str) -> Result<(u64, u64, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/net/dev")?;
    for line in text.lines() {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == dev {
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if f.len() >= 12 {
                return Ok((f[1], f[9], f[11]));
            }
        }
    }
    bail!("{dev} not in /proc/net/dev")
}

/// A TCP counter of the calling thread's namespace (`/proc/net/netstat`,
/// `TcpExt:` lines).
fn tcp_ext(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A forwarder serving A and B.
enum Forwarder {
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
    },
    Nftables(KernelBridge),
}

impl Forwarder {
    /// rstwall's programs, when this forwarder runs behind them.
    fn programs(&self) -> Option<&Programs> {
        match self {
            Forwarder::Kernel(p) | Forwarder::Bare { progs: p, .. } => Some(p),
            Forwarder::Rstwall { progs, .. } => Some(progs),
            Forwarder::Nftables(_) => None,
        }
    }
}

/// What a forwarder says when it stops.
#[derive(Clone, Copy, Debug, Default)]
pub struct StopReport {
    /// Frames the engine judged, passed and dropped.
    pub judged: u64,
    pub dropped: u64,
    pub active_flows: usize,
    /// What the nftables rules dropped.
    pub nft: Option<NftCounters>,
}

impl<'a> Bench<'a> {
    pub fn new(lab: &'a Lab, traffic: Arc<Traffic>, s: &'a Settings) -> Result<Bench<'a>> {
        let counter = SinkCounter::attach(&lab.sink, &lab.sink_if).context("the sink's counter")?;
        let b = Bench {
            lab,
            programs: RefCell::new(None),
            traffic,
            s,
            live: std::sync::OnceLock::new(),
            counter,
            xdp_mode: RefCell::new(String::new()),
        };
        b.programs().context("attaching rstwall's XDP programs")?;
        Ok(b)
    }

    /// The kernel threads that run the bench's own work: ksoftirqd (the
    /// softirqs it defers) and the cpumap threads of the kernel contender.
    fn kthreads(&self) -> Vec<i32> {
        let mut k = cpu::find_pids("ksoftirqd/");
        k.extend(cpu::find_pids("cpumap/"));
        k
    }

    /// rstwall's programs, attached now if they are not.
    fn programs(&self) -> Result<Rc<Programs>> {
        if let Some(p) = self.programs.borrow().as_ref() {
            return Ok(p.clone());
        }
        let p = Rc::new(Programs::attach(self.lab)?);
        *self.xdp_mode.borrow_mut() = p.a().attached_mode().to_string();
        *self.programs.borrow_mut() = Some(p.clone());
        Ok(p)
    }

    /// Wait (at most 15 minutes) until other processes have used less than
    /// half of --max-other for --quiet-secs in a row: long enough, with
    /// luck, that someone else's benchmark is over, not between two runs.
    pub fn wait_quiet(&self) {
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut calm = 0;
        while calm < self.s.quiet_secs && Instant::now() < deadline {
            let k = self.kthreads();
            let load = cpu::OtherLoad::start(&k);
            thread::sleep(Duration::from_secs(1));
            if load.pct(&k) < self.s.max_other / 2.0 {
                calm += 1;
            } else {
                calm = 0;
            }
        }
    }

    /// Take `measure` again (after a quiet wait) while other processes
    /// used more than --max-other during it, at most --max-repeats times;
    /// the measurement and how often it was taken again.
    pub fn steady<T>(
        &self,
        mut measure: impl FnMut() -> Result<T>,
        other: impl Fn(&T) -> f64,
        line: impl Fn(&T) -> String,
    ) -> Result<(T, usize)> {
        let mut tries = 0;
        loop {
            let m = measure()?;
            eprintln!("{}", line(&m));
            let o = other(&m);
            if o <= self.s.max_other || tries == self.s.max_repeats {
                return Ok((m, tries));
            }
            tries += 1;
            eprintln!("  other processes used {o:.0}% of a CPU: again, once quiet");
            self.wait_quiet();
        }
    }

    fn datapath_config(&self, mode: Mode) -> DatapathConfig {
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
        cfg.cpus = vec![self.s.fwd_cpu];
        cfg
    }

    /// Start `c`; a queue still held by the previous contender's closed
    /// socket (EBUSY) is waited for.
    fn start(&self, c: Contender) -> Result<Forwarder> {
        if c == Contender::Nftables {
            // The bridge's ports get a program of their own.
            self.programs.borrow_mut().take();
            return Ok(Forwarder::Nftables(KernelBridge::start(
                self.lab,
                self.s.fwd_cpu,
                self.s.rst_limit,
            )?));
        }
        let progs = self.programs()?;
        let deadline = Instant::now() + xsk::BUSY_RETRY;
        loop {
            match self.try_start(c, progs.clone()) {
                Err(e) if xsk::is_busy(&e) && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10));
                }
                r => return r,
            }
        }
    }

    fn try_start(&self, c: Contender, progs: Rc<Programs>) -> Result<Forwarder> {
        let lab = self.lab;
        match c {
            Contender::Kernel => Ok(Forwarder::Kernel(progs)),
            Contender::Bare | Contender::Touch => {
                // The datapath's own shape, so the only difference is the
                // engine (and its bookkeeping).
                let d = self.datapath_config(Mode::Monitor);
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
                let cpu = self.s.fwd_cpu;
                let touch = c == Contender::Touch;
                let handle = {
                    let (stop, tid) = (stop.clone(), tid.clone());
                    thread::Builder::new()
                        .name("bench-bare-q0".into())
                        .spawn(move || {
                            xsk::pin(cpu);
                            xsk::run_bare(sockets, touch, &stop, &tid)
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
            Contender::Monitor | Contender::Enforce => {
                let mode = if c == Contender::Monitor {
                    Mode::Monitor
                } else {
                    Mode::Enforce
                };
                let cfg = self.datapath_config(mode);
                let dp = lab.app.run(|| Datapath::start(&cfg))??;
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
                })
            }
            Contender::Nftables => unreachable!("started above"),
        }
    }

    fn stop(&self, f: Forwarder) -> Result<StopReport> {
        if let Forwarder::Bare { progs, .. } | Forwarder::Rstwall { progs, .. } = &f {
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
            Forwarder::Rstwall { mut dp, .. } => {
                let stats = dp.stop()?;
                let w = stats.first().context("no worker stats")?;
                if w.source.frames.ledger_errors != 0 || w.source.frames.leaked != 0 {
                    bail!(
                        "datapath frame ledger: {} errors, {} leaked",
                        w.source.frames.ledger_errors,
                        w.source.frames.leaked
                    );
                }
                Ok(StopReport {
                    judged: w.counters.frames,
                    dropped: w.counters.dropped,
                    active_flows: w.active_flows,
                    nft: None,
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
    fn with<T>(
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

    /// Start the generator from the generator's namespace; returns once the
    /// first frames (if any) are out.
    fn start_generator(
        &self,
        first: Option<(Arc<Frames>, u64)>,
        frames: Arc<Frames>,
        rate: Rate,
        limit: Option<u64>,
    ) -> Result<Generator> {
        let shared = Arc::new(GenShared::default());
        let cfg = GenConfig {
            ns: Some(self.lab.gen.clone()),
            ifname: self.lab.gen_if.clone(),
            queue: 0,
            bind: XskBind::Copy,
            cpu: Some(self.s.gen_cpu),
            first,
            frames,
            rate,
            limit,
        };
        let handle = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("bench-gen".into())
                .spawn(move || xsk::generator(cfg, shared))?
        };
        let gen = Generator {
            shared,
            handle: Some(handle),
        };
        wait_for_secs(30.0, || {
            gen.shared.steady.load(Ordering::Relaxed).then_some(())
        })
        .context("generator: handshakes did not finish")?;
        gen_error(&gen.shared)?;
        Ok(gen)
    }

    /// The traffic's handshakes first, then its steady pass.
    fn start_traffic(&self, rate: Rate, limit: Option<u64>) -> Result<Generator> {
        let t = &self.traffic;
        self.start_generator(
            Some((t.handshakes.clone(), self.s.handshake_pps)),
            t.steady.clone(),
            rate,
            limit,
        )
    }

    fn snapshot(&self, f: &Forwarder, gen: &GenShared) -> Result<Snap> {
        let (fwd_tid, fd_a) = match f {
            Forwarder::Kernel(_) | Forwarder::Nftables(_) => (None, None),
            Forwarder::Bare { tid, fd_a, .. } | Forwarder::Rstwall { tid, fd_a, .. } => {
                (Some(*tid), Some(*fd_a))
            }
        };
        let a = f.programs().map(|p| p.a().counters()).transpose()?;
        let policy = match f {
            Forwarder::Rstwall { dp, .. } => {
                // The worker publishes every 100 ms into a small channel
                // that keeps the oldest: empty it, take the next one.
                while dp.workers().stats().try_recv().is_ok() {}
                let w = dp
                    .workers()
                    .stats()
                    .recv_timeout(Duration::from_secs(1))
                    .context("no stats from the worker")?;
                Some((w.counters.dropped, w.at_ns as f64 / 1e9))
            }
            Forwarder::Nftables(k) => {
                let n = k.counters()?;
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                Some((n.invalid + n.rst_limited, t))
            }
            _ => None,
        };
        let lab = self.lab;
        let ((a_rx, _, _), (_, b_tx, b_tx_dropped)) = lab.app.run(|| -> Result<_> {
            Ok((dev_packets(&lab.port_a)?, dev_packets(&lab.port_b)?))
        })??;
        Ok(Snap {
            at: Instant::now(),
            gen_sent: gen.sent.load(Ordering::Relaxed),
            policy,
            a,
            a_rx,
            b_tx,
            b_tx_dropped,
            sink: self.counter.counts()?,
            xsk_drops_a: fd_a.and_then(xsk::xsk_rx_drops),
            fwd_cpu_ns: fwd_tid.and_then(cpu::thread_cpu_ns),
            fwd_ticks: fwd_tid.and_then(cpu::thread_user_sys_ticks),
            gen_cpu_ns: [&gen.tid, &gen.tid2]
                .iter()
                .map(|t| t.load(Ordering::Relaxed))
                .filter(|&t| t != 0)
                .map(cpu::thread_cpu_ns)
                .sum(),
            cpus: cpu::cpu_times(),
            proc_cpu_ns: cpu::process_cpu_ns(),
            softirqd_ticks: self
                .kthreads()
                .iter()
                .filter_map(|&p| cpu::pid_ticks(p))
                .sum(),
        })
    }

    /// The live-frames generator for the steady pass, out of the
    /// generator's veth.
    fn live(&self) -> Result<Arc<live::LiveGen>> {
        if let Some(l) = self.live.get() {
            return Ok(l.clone());
        }
        let lab = self.lab;
        let ifindex = lab.gen.run(|| sys::ifindex(&lab.gen_if))??;
        let l = Arc::new(
            lab.gen
                .run(|| live::LiveGen::new(&self.traffic.steady, ifindex))??,
        );
        Ok(self.live.get_or_init(|| l).clone())
    }

    pub fn throughput(&self, c: Contender, round: usize) -> Result<Tput> {
        let live = self.live()?;
        let ((s0, s1), stop) = self.with(c, |f| {
            let gen = self.start_traffic(Rate::Live(live), None)?;
            thread::sleep(self.s.warmup);
            let s0 = self.snapshot(f, &gen.shared)?;
            thread::sleep(self.s.round);
            let s1 = self.snapshot(f, &gen.shared)?;
            gen.finish()?;
            Ok((s0, s1))
        })?;
        Ok(Tput::new(c, round, &s0, &s1, &stop))
    }

    pub fn latency(&self, c: Contender, round: usize) -> Result<Lat> {
        // The sink receives with AF_XDP here: rstwall's program in the tap
        // role, for the socket's XSKMAP (and NAPI on the sink's veth, which
        // the kernel contender's redirect needs).
        let lab = self.lab;
        let prog = NsProgram::attach(&lab.sink, &lab.sink_if, PortRole::Tap)?;
        let ((secs, sent, received, other, hist), _) =
            self.with(c, |_| self.latency_with_sink(&prog))?;
        Ok(Lat {
            contender: c,
            round,
            other,
            secs,
            sent,
            received,
            hist,
        })
    }

    /// Open the sink's socket, register it with the sink's program (rstwall's,
    /// tap role), measure, take it away again.
    fn latency_with_sink(
        &self,
        prog: &PortProgram,
    ) -> Result<(f64, u64, u64, f64, Histogram<u64>)> {
        let shared = Arc::new(SinkShared::default());
        let stamps = Arc::new(Stamps::default());
        let (fd_tx, fd_rx) = mpsc::channel();
        let handle = {
            let (ns, ifname, cpu, shared, stamps) = (
                self.lab.sink.clone(),
                self.lab.sink_if.clone(),
                self.s.gen_cpu,
                shared.clone(),
                stamps.clone(),
            );
            thread::Builder::new()
                .name("bench-sink".into())
                .spawn(move || {
                    let sink = ns
                        .enter()
                        .context("sink: enter namespace")
                        .and_then(|()| Sink::open(&ifname));
                    match sink {
                        Ok(sink) => {
                            let _ = fd_tx.send(Ok(sink.fd()));
                            Some(sink.run(cpu, &stamps, &shared))
                        }
                        Err(e) => {
                            let _ = fd_tx.send(Err(e));
                            None
                        }
                    }
                })?
        };
        let measured = fd_rx
            .recv()
            .map_err(|_| anyhow!("sink thread died"))
            .and_then(|r| r)
            .and_then(|fd| Ok(prog.register_xsk(0, fd)?))
            .and_then(|()| self.latency_window(&shared, stamps));
        thread::sleep(Duration::from_millis(20));
        let _ = prog.unregister_xsk(0);
        shared.stop.store(true, Ordering::Relaxed);
        let hist = handle.join().map_err(|_| anyhow!("sink thread panicked"))?;
        if let Some(e) = shared.error.lock().unwrap().take() {
            bail!("{e}");
        }
        let (secs, sent, received, other) = measured?;
        Ok((
            secs,
            sent,
            received,
            other,
            hist.context("sink did not run")?,
        ))
    }

    /// Stamped traffic; the window's length and frames sent and received.
    fn latency_window(
        &self,
        sink: &SinkShared,
        stamps: Arc<Stamps>,
    ) -> Result<(f64, u64, u64, f64)> {
        let gen = self.start_traffic(Rate::Stamped(self.s.latency_pps, stamps), None)?;
        thread::sleep(self.s.warmup);
        let k = self.kthreads();
        let load = cpu::OtherLoad::start(&k);
        let (t0, sent0, recv0) = (
            Instant::now(),
            gen.shared.sent.load(Ordering::Relaxed),
            sink.received.load(Ordering::Relaxed),
        );
        sink.record.store(true, Ordering::Relaxed);
        thread::sleep(self.s.latency);
        sink.record.store(false, Ordering::Relaxed);
        let secs = t0.elapsed().as_secs_f64();
        let sent = gen.shared.sent.load(Ordering::Relaxed) - sent0;
        let received = sink.received.load(Ordering::Relaxed) - recv0;
        let other = load.pct(&k);
        gen.finish()?;
        Ok((secs, sent, received, other))
    }

    /// The handshakes and one steady pass at --accuracy-pps; what reached
    /// the sink, by label.
    pub fn accuracy(&self, c: Contender, round: usize) -> Result<Accuracy> {
        let t = &self.traffic;
        let (m, stop) = self.with(c, |_| {
            let k = self.kthreads();
            let load = cpu::OtherLoad::start(&k);
            let before = self.counter.counts()?;
            let gen = self.start_traffic(
                Rate::Paced(self.s.accuracy_pps),
                Some(t.steady.len() as u64),
            )?;
            let expect = t.steady.len() as f64 / self.s.accuracy_pps as f64;
            wait_for_secs(expect * 3.0 + 10.0, || {
                gen.shared.done.load(Ordering::Relaxed).then_some(())
            })
            .context("the pass did not finish")?;
            gen.finish()?;
            // What is still on its way.
            thread::sleep(Duration::from_millis(200));
            let after = self.counter.counts()?;
            let mut arrived = [0u64; Label::ALL.len()];
            for (i, a) in arrived.iter_mut().enumerate() {
                *a = after[i] - before[i];
            }
            Ok((arrived, load.pct(&k)))
        })?;
        let mut sent = *t.handshakes.counts();
        let steady = t.steady.counts();
        for label in Label::ALL {
            *sent_of(&mut sent, label) += steady.of(label);
        }
        Ok(Accuracy {
            contender: c,
            round,
            sent,
            arrived: m.0,
            other: m.1,
            stop,
        })
    }

    /// A kernel TCP transfer from the client to the server, measured for
    /// --goodput-secs alone and then for as long again during a
    /// blind-reset flood at its 4-tuple (random sequence numbers, from the
    /// generator at --flood-pps).
    pub fn goodput(&self, c: Contender, round: usize) -> Result<Goodput> {
        let ((calm, flood, reset, other), stop) = self.with(c, |_| {
            let transfer = Transfer::start(self.lab)?;
            let k = self.kthreads();
            let load = cpu::OtherLoad::start(&k);
            thread::sleep(Duration::from_secs(1));
            let calm = transfer.window(self.s.goodput, self, None)?;
            let flood_frames = Arc::new(flood_frames(transfer.client, 1 + round as u64));
            let gen =
                self.start_generator(None, flood_frames, Rate::Paced(self.s.flood_pps), None)?;
            thread::sleep(Duration::from_millis(500));
            let flood = transfer.window(self.s.goodput, self, Some(&gen.shared))?;
            gen.finish()?;
            let other = load.pct(&k);
            let reset = transfer.finish();
            Ok((calm, flood, reset, other))
        })?;
        Ok(Goodput {
            contender: c,
            round,
            calm,
            flood,
            reset,
            other,
            stop,
        })
    }
}

fn sent_of(c: &mut FrameCounts, label: Label) -> &mut u64 {
    match label {
        Label::Syn => &mut c.syn,
        Label::SynAck => &mut c.synack,
        Label::Ack => &mut c.ack,
        Label::Data => &mut c.data,
        Label::Fin => &mut c.fin,
        Label::Rst(class) => &mut c.rst[class.index()],
        Label::Crafted => &mut c.crafted,
    }
}

/// The blind-reset flood at the connection `client` → [`lab::SERVER`]:
/// RSTs as if from the client, random sequence numbers, to the server's
/// MAC (its stack takes them in), marked for the sink's counter as crafted
/// frames to deliver.
pub fn flood_frames(client: SocketAddrV4, seed: u64) -> Frames {
    let v4 = |a: std::net::Ipv4Addr| Pick::Fixed(u32::from(a).into());
    let spec = Spec {
        family: Family::V4,
        src: v4(*client.ip()),
        dst: v4(lab::SERVER),
        sport: Pick::Fixed(client.port().into()),
        dport: Pick::Fixed(TRANSFER_PORT.into()),
        seq: Pick::Random {
            first: 0,
            last: u32::MAX.into(),
        },
        ack: Pick::Fixed(0),
        flags: TcpFlags::RST,
        window: 0,
        ttl: 64,
        payload: 0,
        syn_options: false,
        src_mac: marker_mac(Label::Crafted.code() | MARK_DELIVER),
        dst_mac: lab::SERVER_MAC,
    };
    spec.build(65_536, seed)
}

/// The server's port.
pub const TRANSFER_PORT: u16 = 5201;

/// One goodput window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    pub secs: f64,
    /// Bytes the server received.
    pub bytes: u64,
    /// Flood frames sent, and those that reached the server.
    pub flood_sent: u64,
    pub flood_arrived: u64,
    /// Challenge ACKs the server sent (RFC 5961: its answer to an
    /// in-window RST or SYN).
    pub challenge_acks: u64,
}

impl Window {
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs / 1e6
    }
}

/// The real TCP connection: a server thread in the sink's namespace
/// reading everything, a client thread in the generator's writing as fast
/// as it can.
struct Transfer {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    /// The client's error, if the connection broke.
    client_err: Arc<std::sync::Mutex<Option<String>>>,
    client: SocketAddrV4,
    threads: Vec<JoinHandle<()>>,
    sink_ns: Arc<Netns>,
}

impl Transfer {
    fn start(lab: &Lab) -> Result<Transfer> {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let client_err = Arc::new(std::sync::Mutex::new(None));
        let server_addr = SocketAddrV4::new(lab::SERVER, TRANSFER_PORT);
        let listener = lab
            .sink
            .run(|| TcpListener::bind(server_addr))?
            .context("the server's listening socket")?;
        listener.set_nonblocking(true)?;
        let server = {
            let (stop, received) = (stop.clone(), received.clone());
            thread::Builder::new()
                .name("bench-server".into())
                .spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    let mut conn = loop {
                        match listener.accept() {
                            Ok((c, _)) => break c,
                            Err(_)
                                if Instant::now() < deadline && !stop.load(Ordering::Relaxed) =>
                            {
                                thread::sleep(Duration::from_millis(5))
                            }
                            Err(_) => return,
                        }
                    };
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = vec![0u8; 1 << 16];
                    while !stop.load(Ordering::Relaxed) {
                        match conn.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                received.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                })?
        };
        let conn = lab
            .gen
            .run(|| TcpStream::connect_timeout(&server_addr.into(), Duration::from_secs(5)))?
            .context("connecting the client to the server through the appliance")?;
        let client = match conn.local_addr()? {
            std::net::SocketAddr::V4(a) => a,
            a => bail!("client address {a} is not IPv4"),
        };
        conn.set_write_timeout(Some(Duration::from_millis(200)))?;
        let writer = {
            let (stop, err) = (stop.clone(), client_err.clone());
            thread::Builder::new()
                .name("bench-client".into())
                .spawn(move || {
                    let mut conn = conn;
                    let buf = vec![0x5au8; 1 << 16];
                    while !stop.load(Ordering::Relaxed) {
                        match conn.write(&buf) {
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(e) => {
                                *err.lock().unwrap() = Some(e.to_string());
                                break;
                            }
                        }
                    }
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                })?
        };
        Ok(Transfer {
            stop,
            received,
            client_err,
            client,
            threads: vec![server, writer],
            sink_ns: lab.sink.clone(),
        })
    }

    fn window(&self, len: Duration, bench: &Bench, flood: Option<&GenShared>) -> Result<Window> {
        let challenge = || self.sink_ns.run(|| tcp_ext("TCPChallengeACK"));
        let code = usize::from(Label::Crafted.code() | MARK_DELIVER);
        let (t0, b0, c0, f0) = (
            Instant::now(),
            self.received.load(Ordering::Relaxed),
            challenge()?,
            bench.counter.counts()?[code],
        );
        let sent0 = flood.map_or(0, |g| g.sent.load(Ordering::Relaxed));
        thread::sleep(len);
        Ok(Window {
            secs: t0.elapsed().as_secs_f64(),
            bytes: self.received.load(Ordering::Relaxed) - b0,
            flood_sent: flood.map_or(0, |g| g.sent.load(Ordering::Relaxed)) - sent0,
            flood_arrived: bench.counter.counts()?[code] - f0,
            challenge_acks: challenge()? - c0,
        })
    }

    /// Stop both ends; the client's error if the connection broke.
    fn finish(mut self) -> Option<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.client_err.lock().unwrap().take()
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The running generator thread; stopped and joined when dropped.
pub struct Generator {
    shared: Arc<GenShared>,
    handle: Option<JoinHandle<()>>,
}

impl Generator {
    /// Stop it; its error, if it had one.
    fn finish(mut self) -> Result<()> {
        self.join();
        gen_error(&self.shared)
    }

    fn join(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.join();
    }
}

fn gen_error(gen: &GenShared) -> Result<()> {
    match gen.error.lock().unwrap().take() {
        Some(e) => Err(anyhow!("generator: {e}")),
        None => Ok(()),
    }
}

fn wait_for<T>(f: impl FnMut() -> Option<T>) -> Option<T> {
    wait_for_secs(2.0, f)
}

fn wait_for_secs<T>(secs: f64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Counters at one instant of a throughput measurement.
struct Snap {
    at: Instant,
    gen_sent: u64,
    /// Frames the contender's policy dropped so far (rstwall's engine,
    /// nftables' rules), and when that was counted (s since the epoch).
    policy: Option<(u64, f64)>,
    /// A's XDP counters (rstwall's program), when it is attached.
    a: Option<XdpCounters>,
    /// A's received frames (`/proc/net/dev`).
    a_rx: u64,
    /// B's transmit counters: frames handed to the sink's veth, and
    /// frames it dropped.
    b_tx: u64,
    b_tx_dropped: u64,
    /// The sink's counter, by marker code.
    sink: Box<[u64; CODES]>,
    xsk_drops_a: Option<u64>,
    fwd_cpu_ns: Option<u64>,
    fwd_ticks: Option<(u64, u64)>,
    gen_cpu_ns: Option<u64>,
    cpus: Vec<CpuTimes>,
    proc_cpu_ns: u64,
    /// Ticks of the bench's kernel threads (ksoftirqd, where softirq work
    /// is deferred, and the cpumap threads): outside this process.
    softirqd_ticks: u64,
}

/// One throughput measurement.
pub struct Tput {
    pub contender: Contender,
    pub round: usize,
    /// Frames per second, in millions: sent by the generator, arriving at
    /// A, taken into the forwarder's RX ring (A's program redirected them
    /// and the socket had room), counted at the sink.
    pub offered: f64,
    pub arrived: f64,
    pub handled: f64,
    pub forwarded: f64,
    /// B's transmitted frames (Mpps): the sink's count, from the other end.
    pub b_tx: f64,
    /// Frames the contender's policy dropped (Mpps), when it has one.
    pub policy_dropped: Option<f64>,
    /// Frames lost before the forwarder, per cent of what arrived: A's
    /// socket's drops (RX ring full) for AF_XDP contenders; for the bridge,
    /// all that arrived and was not forwarded.
    pub lost_pct: f64,
    /// Forwarder thread: CPU time per frame it received (ns), its CPU
    /// time in per cent of the window, and system time's share of it.
    pub fwd_ns: Option<f64>,
    pub fwd_util: Option<f64>,
    pub fwd_sys_pct: Option<f64>,
    pub gen_util: Option<f64>,
    pub cpus: Vec<CpuShare>,
    /// CPU per cent (of one CPU) used in the window by other processes:
    /// all that was busy less this process and its kernel threads.
    pub outside: f64,
    /// Frames B's veth dropped on transmit.
    pub b_dropped: u64,
    /// The forwarder's final word: frames received over its whole run and
    /// the share of what it judged that its policy dropped.
    pub stop: StopReport,
}

impl Tput {
    fn new(c: Contender, round: usize, s0: &Snap, s1: &Snap, stop: &StopReport) -> Tput {
        let window = s1.at.duration_since(s0.at);
        let secs = window.as_secs_f64();
        let ns = window.as_nanos() as f64;
        let mpps = |n: u64| n as f64 / secs / 1e6;
        let a = match (&s0.a, &s1.a) {
            (Some(a0), Some(a1)) => Some(a1.since(a0)),
            _ => None,
        };
        let arrived = a.as_ref().map_or(s1.a_rx - s0.a_rx, |a| a.packets());
        let sink: u64 = s1.sink.iter().zip(s0.sink.iter()).map(|(x, y)| x - y).sum();
        let policy_dropped = match (s0.policy, s1.policy) {
            (Some((d0, t0)), Some((d1, t1))) if t1 > t0 => Some((d1 - d0) as f64 / (t1 - t0) / 1e6),
            _ => None,
        };
        let policy_frames = policy_dropped.map_or(0, |p| (p * 1e6 * secs) as u64);
        let drops = match (s0.xsk_drops_a, s1.xsk_drops_a) {
            (Some(x), Some(y)) => y.saturating_sub(x),
            // The bridge's losses (cpumap queue, backlog) are not counted
            // in one place: what arrived and was neither forwarded nor
            // dropped by a rule.
            _ if c == Contender::Nftables => arrived.saturating_sub(sink + policy_frames),
            _ => 0,
        };
        let handled = match &a {
            Some(a) if c.is_afxdp() => a.to_xsk.saturating_sub(drops),
            _ => arrived.saturating_sub(drops),
        };
        let delta = |x: Option<u64>, y: Option<u64>| Some(y?.saturating_sub(x?));
        let fwd_cpu = delta(s0.fwd_cpu_ns, s1.fwd_cpu_ns);
        let fwd_sys_pct = match (s0.fwd_ticks, s1.fwd_ticks) {
            (Some((u0, k0)), Some((u1, k1))) => {
                let (u, k) = (u1 - u0, k1 - k0);
                (u + k > 0).then(|| k as f64 * 100.0 / (u + k) as f64)
            }
            _ => None,
        };
        let cpus = cpu::cpu_shares(&s0.cpus, &s1.cpus);
        let busy: f64 = cpus.iter().map(CpuShare::busy).sum();
        let tick = cpu::tick_ns() as f64;
        let softirqd_ns = (s1.softirqd_ticks - s0.softirqd_ticks) as f64 * tick;
        let ours = ((s1.proc_cpu_ns - s0.proc_cpu_ns) as f64 + softirqd_ns) * 100.0 / ns;
        Tput {
            contender: c,
            round,
            offered: mpps(s1.gen_sent - s0.gen_sent),
            arrived: mpps(arrived),
            handled: mpps(handled),
            forwarded: mpps(sink),
            b_tx: mpps(s1.b_tx - s0.b_tx),
            policy_dropped,
            lost_pct: drops as f64 * 100.0 / arrived.max(1) as f64,
            fwd_ns: fwd_cpu.map(|c| c as f64 / handled.max(1) as f64),
            fwd_util: fwd_cpu.map(|c| c as f64 * 100.0 / ns),
            fwd_sys_pct,
            gen_util: delta(s0.gen_cpu_ns, s1.gen_cpu_ns).map(|c| c as f64 * 100.0 / ns),
            cpus,
            outside: (busy - ours).max(0.0),
            b_dropped: s1.b_tx_dropped - s0.b_tx_dropped,
            stop: *stop,
        }
    }

    pub fn line(&self) -> String {
        let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
        format!(
            "round {} {:<23} offered {:.3} arrived {:.3} handled {:.3} forwarded {:.3} Mpps{}, \
             lost before the forwarder {:.2}%, forwarder {} ns/frame at {}% CPU ({}% sys), \
             generator {}% CPU, dropped by B {}, CPUs busy {}, steal {:.1}%, other processes \
             {:.0}%{}",
            self.round + 1,
            self.contender.name(),
            self.offered,
            self.arrived,
            self.handled,
            self.forwarded,
            self.policy_dropped
                .map_or(String::new(), |p| format!(" (policy dropped {p:.3})")),
            self.lost_pct,
            opt(self.fwd_ns, 0),
            opt(self.fwd_util, 0),
            opt(self.fwd_sys_pct, 0),
            opt(self.gen_util, 0),
            self.b_dropped,
            self.cpus
                .iter()
                .map(|c| format!("{:.0}%", c.busy()))
                .collect::<Vec<_>>()
                .join("/"),
            self.cpus.iter().map(|c| c.steal).sum::<f64>(),
            self.outside,
            self.stop.nft.map_or(String::new(), |n| format!(
                "; over the whole run nftables dropped {} invalid, {} over the RST limit",
                n.invalid, n.rst_limited
            )),
        )
    }
}

/// One latency measurement.
pub struct Lat {
    pub contender: Contender,
    pub round: usize,
    /// Other processes' CPU during the window (per cent of one CPU).
    pub other: f64,
    pub secs: f64,
    pub sent: u64,
    pub received: u64,
    pub hist: Histogram<u64>,
}

pub fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

impl Lat {
    pub fn line(&self) -> String {
        format!(
            "round {} {:<23} {:.1} kpps sent, {} samples ({} received): p50 {:.1} µs, \
             p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs, other processes {:.0}%",
            self.round + 1,
            self.contender.name(),
            self.sent as f64 / self.secs / 1e3,
            self.hist.len(),
            self.received,
            us(&self.hist, 0.5),
            us(&self.hist, 0.99),
            us(&self.hist, 0.999),
            self.hist.max() as f64 / 1000.0,
            self.other,
        )
    }
}

/// Which RSTs a filter should stop: those the receiving kernel would never
/// act on (it ignores them, or answers with a challenge ACK). Spoofed.
pub fn is_spoofed(label: Label) -> bool {
    use rstwall_engine::RstClass::*;
    matches!(label, Label::Rst(InWindow | OutOfWindow | SynSentBadAck))
}

/// Which frames a filter must let through: everything the receiving
/// kernel accepts (the traffic's SYNs, SYN-ACKs, ACKs, data, FINs, and its
/// real resets: refused, abort, teardown).
pub fn is_legitimate(label: Label) -> bool {
    use rstwall_engine::RstClass::*;
    matches!(
        label,
        Label::Syn
            | Label::SynAck
            | Label::Ack
            | Label::Data
            | Label::Fin
            | Label::Rst(Refused | Abort | Teardown)
    )
}

/// One accuracy measurement: the labelled frames sent, and those counted
/// at the sink.
pub struct Accuracy {
    pub contender: Contender,
    pub round: usize,
    pub sent: FrameCounts,
    pub arrived: [u64; Label::ALL.len()],
    pub other: f64,
    pub stop: StopReport,
}

impl Accuracy {
    /// Frames of labels `which`: sent, arrived.
    pub fn of(&self, which: impl Fn(Label) -> bool) -> (u64, u64) {
        Label::ALL
            .iter()
            .filter(|l| which(**l))
            .map(|l| (self.sent.of(*l), self.arrived[l.code() as usize]))
            .fold((0, 0), |(s, a), (x, y)| (s + x, a + y))
    }

    /// Per cent of the spoofed RSTs that did not reach the sink.
    pub fn spoofed_dropped(&self) -> f64 {
        let (sent, arrived) = self.of(is_spoofed);
        100.0 - pct(arrived, sent)
    }

    /// Per cent of the legitimate frames that reached the sink.
    pub fn legit_passed(&self) -> f64 {
        let (sent, arrived) = self.of(is_legitimate);
        pct(arrived, sent)
    }

    pub fn line(&self) -> String {
        let (ls, la) = self.of(is_legitimate);
        let (ss, sa) = self.of(is_spoofed);
        format!(
            "round {} {:<23} legitimate {la}/{ls} passed ({:.3}%), spoofed RSTs {sa}/{ss} \
             passed ({:.2}% dropped){}{}, other processes {:.0}%",
            self.round + 1,
            self.contender.name(),
            self.legit_passed(),
            self.spoofed_dropped(),
            if self.stop.judged > 0 {
                format!(", engine dropped {}", self.stop.dropped)
            } else {
                String::new()
            },
            self.stop.nft.map_or(String::new(), |n| format!(
                ", nftables dropped {} invalid + {} over the RST limit",
                n.invalid, n.rst_limited
            )),
            self.other,
        )
    }
}

/// One goodput measurement: the same connection without, then with, the
/// flood.
pub struct Goodput {
    pub contender: Contender,
    pub round: usize,
    pub calm: Window,
    pub flood: Window,
    /// The client's error if the connection broke.
    pub reset: Option<String>,
    pub other: f64,
    pub stop: StopReport,
}

impl Goodput {
    /// What the contender's policy dropped over the whole measurement.
    pub fn dropped_by(&self) -> String {
        match self.stop.nft {
            Some(n) => format!(
                ", nftables dropped {} invalid + {} over the RST limit",
                n.invalid, n.rst_limited
            ),
            None if self.stop.judged > 0 => format!(", engine dropped {}", self.stop.dropped),
            None => String::new(),
        }
    }

    pub fn ratio(&self) -> f64 {
        self.flood.mbps() / self.calm.mbps().max(1e-9)
    }

    pub fn line(&self) -> String {
        format!(
            "round {} {:<23} goodput {:.0} Mbit/s alone, {:.0} Mbit/s under a {:.0} kpps \
             blind-reset flood ({:.2}×); flood RSTs at the server {}/{}, its challenge ACKs \
             {}{}{}, other processes {:.0}%",
            self.round + 1,
            self.contender.name(),
            self.calm.mbps(),
            self.flood.mbps(),
            self.flood.flood_sent as f64 / self.flood.secs / 1e3,
            self.ratio(),
            self.flood.flood_arrived,
            self.flood.flood_sent,
            self.flood.challenge_acks,
            self.dropped_by(),
            match &self.reset {
                Some(e) => format!(", CONNECTION BROKE: {e}"),
                None => String::new(),
            },
            self.other,
        )
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn pct(n: u64, of: u64) -> f64 {
    n as f64 * 100.0 / of.max(1) as f64
}

pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}
