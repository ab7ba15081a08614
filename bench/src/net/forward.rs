//! `rstwall-bench forward`: inline forwarding over AF_XDP on veth (copy
//! mode), rstwall's datapath beside a bare AF_XDP rx→tx loop, in the same
//! run and in alternating rounds.
//!
//! ```text
//!   gen ns                      appliance ns                        sink ns
//!   generator ─veth─ A ══[forwarder: one thread, one queue]══ B ─veth─ sink
//!                    rstwall's XDP program, inline, on A and B
//! ```
//!
//! Contenders, all behind the same XDP program (rstwall's, attached to A
//! and B once for the whole run) and differing only in what serves the
//! AF_XDP sockets registered in its XSKMAP:
//!
//! * `bare` — the ceiling: one UMEM and a socket per port, opened as
//!   `Datapath::start` opens them (same ring sizes, frames, batch), and a
//!   loop with the worker's structure (completions, refill, RX burst → TX,
//!   kicks, the same spin-then-poll idle policy) that transmits every
//!   frame, without engine, frame ledger or stats.
//! * `monitor`, `enforce` — rstwall's `Datapath`, one worker, its engine's
//!   policy in that mode.
//! * `kernel` — no socket: the program's fail-open path forwards TCP to the
//!   peer port in the kernel (XDP_REDIRECT through its DEVMAP). A latency
//!   reference, not a contender.
//!
//! Traffic: `rstwall_bench::traffic` flows over IPv4, every flow's
//! handshake first (from an AF_XDP socket, paced), then the steady pass
//! replayed in order.
//!
//! * Throughput: the steady pass flat out from an XDP live-frames generator
//!   ([`live`]), 64-byte frames. Forwarded = B's transmitted frames; offered
//!   = what A's program saw; lost = A's socket's XDP_STATISTICS drops. The
//!   sink's veth has no XDP program: a tc filter drops what arrives. The
//!   forwarder's CPU time is its thread's CPU clock.
//! * Latency: the steady pass at a low, fixed rate from an AF_XDP socket,
//!   each frame stamped (CLOCK_MONOTONIC, a 4-byte trailer after the IP
//!   datagram); an AF_XDP socket on the sink (rstwall's program, tap role),
//!   in this process, records receive − send time in an hdrhistogram.
//!
//! The CPUs are shared with whatever else runs: a measurement during which
//! other processes used more than `--max-other` of a CPU is taken again
//! once the machine is quiet.

use super::{cpu, lab, live, xsk};

use std::io::Write as _;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::ValueEnum;
use hdrhistogram::Histogram;
use rstwall_bench::traffic::{Mix, Traffic, TrafficConfig};
use rstwall_bpf::{PortProgram, PortRole, XdpCounters, XdpMode};
use rstwall_datapath::afxdp::{sys, BindMode, Datapath, DatapathConfig, Topology};
use rstwall_datapath::engine::EngineConfig;
use rstwall_datapath::policy::Mode;

use cpu::{CpuShare, CpuTimes, Machine};
use lab::{Lab, Netns};
use xsk::{BareShape, BareSockets, GenConfig, GenShared, Rate, Sink, SinkShared};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum Contender {
    /// In-kernel XDP redirect A → B, no AF_XDP (reference).
    Kernel,
    /// Bare AF_XDP rx→tx loop (the ceiling).
    Bare,
    /// The bare loop, also reading each frame's first cache line (a
    /// diagnostic: the cost of touching the frame at all).
    Touch,
    /// rstwall's datapath, policy in monitor mode.
    Monitor,
    /// rstwall's datapath, policy in enforce mode.
    Enforce,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Kernel => "kernel XDP redirect",
            Contender::Bare => "bare AF_XDP loop",
            Contender::Touch => "bare loop + frame read",
            Contender::Monitor => "rstwall monitor",
            Contender::Enforce => "rstwall enforce",
        }
    }

    fn is_rstwall(self) -> bool {
        matches!(self, Contender::Monitor | Contender::Enforce)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    Throughput,
    Latency,
}

#[derive(clap::Args)]
pub struct ForwardArgs {
    /// Concurrent flows in the traffic.
    #[arg(long, default_value_t = 10_000)]
    flows: usize,
    /// Frames in one steady-state pass [default: 10 per flow].
    #[arg(long)]
    packets: Option<usize>,
    /// Rounds; each runs every contender once (order rotated per round).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Measured seconds per contender and round (throughput).
    #[arg(long, default_value_t = 3.0)]
    round_secs: f64,
    /// Seconds of steady traffic before each measurement window.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Throughput contenders.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Contender::Bare, Contender::Monitor, Contender::Enforce])]
    contenders: Vec<Contender>,
    /// Latency: stamped frames per second (well below saturation).
    #[arg(long, default_value_t = 20_000)]
    latency_pps: u64,
    /// Measured seconds per contender and round (latency).
    #[arg(long, default_value_t = 3.0)]
    latency_secs: f64,
    /// Latency contenders.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Contender::Kernel, Contender::Bare, Contender::Monitor])]
    latency_contenders: Vec<Contender>,
    /// Rate of the handshakes sent before each measurement.
    #[arg(long, default_value_t = 200_000)]
    handshake_pps: u64,
    /// CPU of the generator (and of the latency sink).
    #[arg(long, default_value_t = 0)]
    gen_cpu: usize,
    /// CPU of the forwarder (bare loop or rstwall's worker).
    #[arg(long, default_value_t = 1)]
    fwd_cpu: usize,
    /// Take a measurement again when other processes used more than this
    /// much CPU during it (per cent of one CPU).
    #[arg(long, default_value_t = 10.0)]
    max_other: f64,
    /// ... at most this many times in a row (then keep it, and say so).
    #[arg(long, default_value_t = 10)]
    max_repeats: usize,
    /// Before taking a measurement again, wait for this many quiet seconds.
    #[arg(long, default_value_t = 15)]
    quiet_secs: u32,
    /// Run one phase only.
    #[arg(long, value_enum)]
    only: Option<Phase>,
    /// Also write the markdown report here.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

struct Settings {
    rounds: usize,
    round: Duration,
    warmup: Duration,
    contenders: Vec<Contender>,
    latency_pps: u64,
    latency: Duration,
    latency_contenders: Vec<Contender>,
    handshake_pps: u64,
    gen_cpu: usize,
    fwd_cpu: usize,
    max_other: f64,
    max_repeats: usize,
    quiet_secs: u32,
}

fn secs(name: &str, v: f64) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0) {
        bail!("--{name}: must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(v))
}

/// Run the benchmark; the markdown report goes to stdout (and `--markdown`).
pub fn run(args: ForwardArgs) -> Result<()> {
    if !sys::is_root() {
        bail!("forward needs root (network namespaces, XDP, AF_XDP)");
    }
    let mut traffic_cfg = TrafficConfig {
        flows: args.flows,
        packets: args.packets.unwrap_or(args.flows.saturating_mul(10)),
        // IPv4 only: every frame is a minimum-size one.
        mix: Mix {
            ipv6: 0,
            ..Mix::default()
        },
        ..TrafficConfig::default()
    };
    traffic_cfg.first_flow = 0;
    if let Err(e) = traffic_cfg.validate() {
        bail!("--{e}");
    }
    if args.rounds == 0 {
        bail!("--rounds: must be at least 1");
    }
    if args.latency_pps == 0 || args.handshake_pps == 0 {
        bail!("--latency-pps and --handshake-pps: must be at least 1");
    }
    let allowed = sys::allowed_cpus().context("allowed CPUs")?;
    for (name, cpu) in [
        ("gen-cpu", Some(args.gen_cpu)),
        ("fwd-cpu", Some(args.fwd_cpu)),
    ] {
        let Some(cpu) = cpu else { continue };
        if !allowed.contains(&cpu) {
            bail!("--{name} {cpu}: not one of this process's CPUs {allowed:?}");
        }
    }
    if args.contenders.contains(&Contender::Kernel) && args.only != Some(Phase::Latency) {
        bail!(
            "--contenders: `kernel` is a latency reference only (its throughput is the \
             generator's, and in the kernel it needs NAPI on the sink)"
        );
    }
    if args.gen_cpu == args.fwd_cpu {
        eprintln!(
            "warning: generator and forwarder share CPU {}",
            args.gen_cpu
        );
    }
    let dedup = |v: &[Contender]| {
        let mut out: Vec<Contender> = Vec::new();
        for c in v {
            if !out.contains(c) {
                out.push(*c);
            }
        }
        out
    };
    let s = Settings {
        rounds: args.rounds,
        round: secs("round-secs", args.round_secs)?,
        warmup: secs("warmup-secs", args.warmup_secs)?,
        contenders: match args.only {
            Some(Phase::Latency) => Vec::new(),
            _ => dedup(&args.contenders),
        },
        latency_pps: args.latency_pps,
        latency: secs("latency-secs", args.latency_secs)?,
        latency_contenders: match args.only {
            Some(Phase::Throughput) => Vec::new(),
            _ => dedup(&args.latency_contenders),
        },
        handshake_pps: args.handshake_pps,
        gen_cpu: args.gen_cpu,
        fwd_cpu: args.fwd_cpu,
        max_other: args.max_other,
        max_repeats: args.max_repeats,
        quiet_secs: args.quiet_secs,
    };

    let machine = Machine::describe();
    let load_before = cpu::loadavg();
    eprintln!("generating {} flows ...", traffic_cfg.flows);
    let traffic = Arc::new(Traffic::generate(&traffic_cfg));

    lab::delete_on_signal()?;
    let lab = Lab::new().context("building the namespaces")?;
    let bench = Bench::new(&lab, traffic.clone(), &s)?;
    eprintln!(
        "lab: {} ─ {}|{} ─ {}; XDP {} on A and B; AF_XDP copy mode",
        lab.gen_if,
        lab.port_a,
        lab.port_b,
        lab.sink_if,
        bench.programs.a().attached_mode(),
    );

    // A measurement during which other processes took more than
    // --max-other of a CPU is thrown away and taken again once the machine
    // is quiet: the CPUs are shared.
    let mut repeats = (0, 0);
    let mut tput = Vec::new();
    for round in 0..s.rounds {
        for i in 0..s.contenders.len() {
            let c = s.contenders[(i + round) % s.contenders.len()];
            let mut tries = 0;
            let t = loop {
                let t = bench.throughput(c, round)?;
                eprintln!("{}", t.line());
                if t.outside <= s.max_other || tries == s.max_repeats {
                    break t;
                }
                tries += 1;
                repeats.0 += 1;
                eprintln!(
                    "  other processes used {:.0}% of a CPU: again, once quiet",
                    t.outside
                );
                bench.wait_quiet();
            };
            tput.push(t);
        }
    }
    let mut lat = Vec::new();
    for round in 0..s.rounds {
        for i in 0..s.latency_contenders.len() {
            let c = s.latency_contenders[(i + round) % s.latency_contenders.len()];
            let mut tries = 0;
            let l = loop {
                let l = bench.latency(c, round)?;
                eprintln!("{}", l.line());
                if l.other <= s.max_other || tries == s.max_repeats {
                    break l;
                }
                tries += 1;
                repeats.1 += 1;
                eprintln!(
                    "  other processes used {:.0}% of a CPU: again, once quiet",
                    l.other
                );
                bench.wait_quiet();
            };
            lat.push(l);
        }
    }
    let report = Report {
        machine,
        load: (load_before, cpu::loadavg()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        traffic: &traffic,
        settings: &s,
        xdp_mode: bench.programs.a().attached_mode().to_string(),
        tput,
        lat,
        repeats,
    }
    .markdown();
    drop(bench);
    drop(lab);
    println!("{report}");
    if let Some(path) = args.markdown {
        std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A port's XDP program, detached from inside its namespace when dropped
/// (an ifindex means nothing elsewhere).
struct NsProgram {
    ns: Arc<Netns>,
    prog: Option<PortProgram>,
}

impl NsProgram {
    fn attach(ns: &Arc<Netns>, ifname: &str, role: PortRole) -> Result<NsProgram> {
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
struct Programs {
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

    fn a(&self) -> &PortProgram {
        &self.a
    }

    fn b(&self) -> &PortProgram {
        &self.b
    }
}

struct Bench<'a> {
    lab: &'a Lab,
    programs: Programs,
    traffic: Arc<Traffic>,
    s: &'a Settings,
    ksoftirqd: Vec<i32>,
    /// The live-frames generator, loaded at the first throughput
    /// measurement and kept.
    live: std::sync::OnceLock<Arc<live::LiveGen>>,
}

/// The sink's discard in the throughput phase: the sink veth has no XDP
/// program then (no NAPI), so a frame the forwarder transmits is received
/// with netif_rx and dropped by a tc ingress filter, in softirq within the
/// transmit itself, on the forwarder's CPU. That is the cheapest receive a
/// veth allows; a NIC would do none of it.
fn sink_discard(lab: &Lab) -> Result<()> {
    for args in [
        vec!["qdisc", "add", "dev", &lab.sink_if, "clsact"],
        // A one-instruction classic BPF filter, `ret #2`: in direct-action
        // mode, TC_ACT_SHOT (cls_bpf is what this kernel has, not matchall).
        vec![
            "filter",
            "add",
            "dev",
            &lab.sink_if,
            "ingress",
            "protocol",
            "all",
            "bpf",
            "direct-action",
            "bytecode",
            "1,6 0 0 2,",
        ],
    ] {
        let out = std::process::Command::new("tc")
            .args(["-n", &lab.sink.name])
            .args(&args)
            .output()
            .context("run tc (iproute2)")?;
        if !out.status.success() {
            bail!(
                "tc {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// Packets counted by a device of the calling thread's namespace: received,
/// transmitted, dropped on transmit (`/proc/net/dev`).
fn dev_packets(dev: &str) -> Result<(u64, u64, u64)> {
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

/// A forwarder serving A and B.
enum Forwarder {
    Kernel,
    Bare {
        stop: Arc<AtomicBool>,
        handle: JoinHandle<std::io::Result<xsk::BareStats>>,
        tid: i32,
        fd_a: RawFd,
    },
    Rstwall {
        dp: Datapath,
        tid: i32,
        fd_a: RawFd,
    },
}

/// What a forwarder says when it stops.
#[derive(Default)]
struct StopReport {
    /// Frames taken from A's RX ring over the whole run of the forwarder.
    rx_frames: u64,
    /// Frames the engine judged, passed and dropped.
    judged: u64,
    dropped: u64,
    active_flows: usize,
}

impl<'a> Bench<'a> {
    fn new(lab: &'a Lab, traffic: Arc<Traffic>, s: &'a Settings) -> Result<Bench<'a>> {
        let programs = Programs::attach(lab).context("attaching rstwall's XDP programs")?;
        sink_discard(lab).context("the sink's tc drop")?;
        Ok(Bench {
            lab,
            programs,
            traffic,
            s,
            ksoftirqd: cpu::find_pids("ksoftirqd/"),
            live: std::sync::OnceLock::new(),
        })
    }

    /// Wait (at most 15 minutes) until other processes have used less than
    /// half of --max-other for --quiet-secs in a row: long enough, with
    /// luck, that someone else's benchmark is over, not between two runs.
    fn wait_quiet(&self) {
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut calm = 0;
        while calm < self.s.quiet_secs && Instant::now() < deadline {
            let load = cpu::OtherLoad::start(&self.ksoftirqd);
            thread::sleep(Duration::from_secs(1));
            if load.pct(&self.ksoftirqd) < self.s.max_other / 2.0 {
                calm += 1;
            } else {
                calm = 0;
            }
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
        let deadline = Instant::now() + xsk::BUSY_RETRY;
        loop {
            match self.try_start(c) {
                Err(e) if xsk::is_busy(&e) && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10));
                }
                r => return r,
            }
        }
    }

    fn try_start(&self, c: Contender) -> Result<Forwarder> {
        let lab = self.lab;
        match c {
            Contender::Kernel => Ok(Forwarder::Kernel),
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
                self.programs.a().register_xsk(0, fd_a)?;
                self.programs.b().register_xsk(0, fd_b)?;
                Ok(Forwarder::Bare {
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
                        self.programs.a().register_xsk(sock.queue, sock.fd)?;
                        fd_a = sock.fd;
                    } else {
                        self.programs.b().register_xsk(sock.queue, sock.fd)?;
                    }
                }
                let tid = wait_for(|| cpu::find_thread("rstwall-q0"))
                    .context("no rstwall-q0 worker thread")?;
                Ok(Forwarder::Rstwall { dp, tid, fd_a })
            }
        }
    }

    fn stop(&self, f: Forwarder) -> Result<StopReport> {
        if !matches!(f, Forwarder::Kernel) {
            self.programs.a().unregister_xsk(0)?;
            self.programs.b().unregister_xsk(0)?;
        }
        match f {
            Forwarder::Kernel => Ok(StopReport::default()),
            Forwarder::Bare { stop, handle, .. } => {
                stop.store(true, Ordering::Relaxed);
                let stats = handle
                    .join()
                    .map_err(|_| anyhow!("bare loop panicked"))?
                    .context("bare loop")?;
                Ok(StopReport {
                    rx_frames: stats.rx_frames[0],
                    ..StopReport::default()
                })
            }
            Forwarder::Rstwall { dp, .. } => {
                let stats = dp.stop()?;
                let w = stats.first().context("no worker stats")?;
                if w.frames.ledger_errors != 0 || w.frames.leaked != 0 {
                    bail!(
                        "datapath frame ledger: {} errors, {} leaked",
                        w.frames.ledger_errors,
                        w.frames.leaked
                    );
                }
                Ok(StopReport {
                    rx_frames: w.sockets.iter().map(|s| s.rx_frames).sum(),
                    judged: w.counters.frames,
                    dropped: w.counters.dropped,
                    active_flows: w.active_flows,
                })
            }
        }
    }

    /// Start the generator; returns once every handshake is out.
    fn start_generator(&self, rate: Rate) -> Result<Generator> {
        let shared = Arc::new(GenShared::default());
        let cfg = GenConfig {
            ns: self.lab.gen.clone(),
            ifname: self.lab.gen_if.clone(),
            cpu: self.s.gen_cpu,
            traffic: self.traffic.clone(),
            handshake_pps: self.s.handshake_pps,
            rate,
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
        // Handshakes done (or the generator failed).
        wait_for_secs(30.0, || {
            gen.shared.steady.load(Ordering::Relaxed).then_some(())
        })
        .context("generator: handshakes did not finish")?;
        gen_error(&gen.shared)?;
        Ok(gen)
    }

    fn snapshot(&self, f: &Forwarder, gen: &GenShared) -> Result<Snap> {
        let (fwd_tid, fd_a) = match f {
            Forwarder::Kernel => (None, None),
            Forwarder::Bare { tid, fd_a, .. } | Forwarder::Rstwall { tid, fd_a, .. } => {
                (Some(*tid), Some(*fd_a))
            }
        };
        let a = self.programs.a().counters()?;
        let (_, b_tx, b_tx_dropped) = self.lab.app.run(|| dev_packets(&self.lab.port_b))??;
        Ok(Snap {
            at: Instant::now(),
            gen_sent: gen.sent.load(Ordering::Relaxed),
            a,
            b_tx,
            b_tx_dropped,
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
                .ksoftirqd
                .iter()
                .filter_map(|&p| cpu::pid_ticks(p))
                .sum(),
        })
    }

    fn throughput(&self, c: Contender, round: usize) -> Result<Tput> {
        let f = self.start(c)?;
        let result = self.throughput_window(&f);
        // Let what is in flight drain before the sockets go.
        thread::sleep(Duration::from_millis(50));
        let stop = self.stop(f);
        let (s0, s1) = result?;
        Ok(Tput::new(c, round, &s0, &s1, &stop?))
    }

    /// The live-frames generator for the steady pass, out of the
    /// generator's veth.
    fn live(&self) -> Result<Arc<live::LiveGen>> {
        if let Some(l) = self.live.get() {
            return Ok(l.clone());
        }
        let lab = self.lab;
        let ifindex = lab.gen.run(|| sys::ifindex(&lab.gen_if))??;
        let l = Arc::new(live::LiveGen::new(&self.traffic.steady, ifindex)?);
        Ok(self.live.get_or_init(|| l).clone())
    }

    fn throughput_window(&self, f: &Forwarder) -> Result<(Snap, Snap)> {
        let gen = self.start_generator(Rate::Flat(self.live()?))?;
        thread::sleep(self.s.warmup);
        let s0 = self.snapshot(f, &gen.shared)?;
        thread::sleep(self.s.round);
        let s1 = self.snapshot(f, &gen.shared)?;
        gen.finish()?;
        Ok((s0, s1))
    }

    fn latency(&self, c: Contender, round: usize) -> Result<Lat> {
        // The sink receives with AF_XDP here: rstwall's program in the tap
        // role, for the socket's XSKMAP (and NAPI on the sink's veth, which
        // the kernel contender's redirect needs).
        let lab = self.lab;
        let prog = NsProgram::attach(&lab.sink, &lab.sink_if, PortRole::Tap)?;
        let f = self.start(c)?;
        let result = self.latency_with_sink(&prog);
        thread::sleep(Duration::from_millis(20));
        let stop = self.stop(f);
        let (secs, sent, received, other, hist) = result?;
        stop?;
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
        let (fd_tx, fd_rx) = mpsc::channel();
        let handle = {
            let (ns, ifname, cpu, shared) = (
                self.lab.sink.clone(),
                self.lab.sink_if.clone(),
                self.s.gen_cpu,
                shared.clone(),
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
                            Some(sink.run(cpu, &shared))
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
            .and_then(|()| self.latency_window(&shared));
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
    fn latency_window(&self, sink: &SinkShared) -> Result<(f64, u64, u64, f64)> {
        let gen = self.start_generator(Rate::Stamped(self.s.latency_pps))?;
        thread::sleep(self.s.warmup);
        let load = cpu::OtherLoad::start(&self.ksoftirqd);
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
        let other = load.pct(&self.ksoftirqd);
        gen.finish()?;
        Ok((secs, sent, received, other))
    }
}

/// The running generator thread; stopped and joined when dropped.
struct Generator {
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
    a: XdpCounters,
    /// B's transmit counters: frames handed to the sink's veth, and
    /// frames it dropped.
    b_tx: u64,
    b_tx_dropped: u64,
    xsk_drops_a: Option<u64>,
    fwd_cpu_ns: Option<u64>,
    fwd_ticks: Option<(u64, u64)>,
    gen_cpu_ns: Option<u64>,
    cpus: Vec<CpuTimes>,
    proc_cpu_ns: u64,
    /// Ticks of ksoftirqd (the bench's softirq work, when deferred, runs
    /// there: outside this process).
    softirqd_ticks: u64,
}

/// One throughput measurement.
struct Tput {
    contender: Contender,
    round: usize,
    /// Frames per second, in millions: sent by the generator, arriving at
    /// A (its XDP program), taken into the forwarder's RX ring (A's program
    /// redirected them and the socket had room), sent on by B.
    offered: f64,
    arrived: f64,
    handled: f64,
    forwarded: f64,
    /// Frames A's socket dropped (RX ring full: the forwarder fell
    /// behind), per cent of what arrived.
    lost_pct: f64,
    /// Forwarder thread: CPU time per frame it received (ns), its CPU
    /// time in per cent of the window, and system time's share of it.
    fwd_ns: Option<f64>,
    fwd_util: Option<f64>,
    fwd_sys_pct: Option<f64>,
    gen_util: Option<f64>,
    cpus: Vec<CpuShare>,
    /// CPU per cent (of one CPU) used in the window by other processes:
    /// all that was busy less this process and ksoftirqd.
    outside: f64,
    /// Frames B's veth dropped on transmit.
    b_dropped: u64,
    /// The forwarder's final word: frames received over its whole run and
    /// the share of what it judged that its policy dropped.
    stop: StopReport,
}

impl Tput {
    fn new(c: Contender, round: usize, s0: &Snap, s1: &Snap, stop: &StopReport) -> Tput {
        let window = s1.at.duration_since(s0.at);
        let secs = window.as_secs_f64();
        let ns = window.as_nanos() as f64;
        let mpps = |n: u64| n as f64 / secs / 1e6;
        let a = s1.a.since(&s0.a);
        let drops = match (s0.xsk_drops_a, s1.xsk_drops_a) {
            (Some(x), Some(y)) => y.saturating_sub(x),
            _ => 0,
        };
        let handled = a.to_xsk.saturating_sub(drops);
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
            arrived: mpps(a.packets()),
            handled: mpps(handled),
            forwarded: mpps(s1.b_tx - s0.b_tx),
            lost_pct: drops as f64 * 100.0 / a.packets().max(1) as f64,
            fwd_ns: fwd_cpu.map(|c| c as f64 / handled.max(1) as f64),
            fwd_util: fwd_cpu.map(|c| c as f64 * 100.0 / ns),
            fwd_sys_pct,
            gen_util: delta(s0.gen_cpu_ns, s1.gen_cpu_ns).map(|c| c as f64 * 100.0 / ns),
            cpus,
            outside: (busy - ours).max(0.0),
            b_dropped: s1.b_tx_dropped - s0.b_tx_dropped,
            stop: StopReport {
                rx_frames: stop.rx_frames,
                judged: stop.judged,
                dropped: stop.dropped,
                active_flows: stop.active_flows,
            },
        }
    }

    fn line(&self) -> String {
        let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
        format!(
            "round {} {:<20} offered {:.3} arrived {:.3} handled {:.3} forwarded {:.3} Mpps, \
             lost at A {:.2}%, forwarder {} ns/frame at {}% CPU ({}% sys), generator {}% CPU, \
             dropped by B {}, CPUs busy {}, steal {:.1}%, other processes {:.0}%",
            self.round + 1,
            self.contender.name(),
            self.offered,
            self.arrived,
            self.handled,
            self.forwarded,
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
        )
    }
}

/// One latency measurement.
struct Lat {
    contender: Contender,
    round: usize,
    /// Other processes' CPU during the window (per cent of one CPU).
    other: f64,
    secs: f64,
    sent: u64,
    received: u64,
    hist: Histogram<u64>,
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

impl Lat {
    fn line(&self) -> String {
        format!(
            "round {} {:<20} {:.1} kpps sent, {} samples ({} received): p50 {:.1} µs, \
             p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
            self.round + 1,
            self.contender.name(),
            self.sent as f64 / self.secs / 1e3,
            self.hist.len(),
            self.received,
            us(&self.hist, 0.5),
            us(&self.hist, 0.99),
            us(&self.hist, 0.999),
            self.hist.max() as f64 / 1000.0,
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
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

fn pct(n: u64, of: u64) -> f64 {
    n as f64 * 100.0 / of.max(1) as f64
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

struct Report<'a> {
    machine: Machine,
    load: (String, String),
    command: String,
    traffic: &'a Traffic,
    settings: &'a Settings,
    xdp_mode: String,
    tput: Vec<Tput>,
    /// Measurements taken again (throughput, latency).
    repeats: (usize, usize),
    lat: Vec<Lat>,
}

impl Report<'_> {
    fn markdown(&self) -> String {
        let mut o = Vec::new();
        let m = &self.machine;
        let s = self.settings;
        let t = self.traffic;
        let _ = writeln!(
            o,
            "Measured {} on commit `{}`{}: {} ({} vCPUs), Linux {}; 1-minute load {} before, \
             {} after.\n",
            m.date,
            m.commit,
            if m.dirty {
                " plus the uncommitted changes in the tree at the time"
            } else {
                ""
            },
            m.cpu_model,
            m.cpus,
            m.kernel,
            self.load.0,
            self.load.1
        );
        let _ = writeln!(o, "```sh\n{}\n```\n", self.command);
        let c = t.steady.counts();
        let _ = writeln!(
            o,
            "- Wire: veth pairs between three namespaces; rstwall's XDP program attached {} to \
             both appliance ports (inline); AF_XDP in copy mode, one queue, one forwarder \
             thread pinned to CPU {}, the generator pinned to CPU {}. A's receive (the XDP \
             program and the copy into the UMEM) runs in softirq on the generator's CPU; B's \
             transmit (the copy into a socket buffer) and the sink's receive (netif_rx, then a \
             tc ingress drop: a one-instruction `bpf direct-action` filter) run in softirq \
             within the forwarder's transmit, on its CPU and in its CPU time.\n\
             - Traffic: {} flows over IPv4 (`rstwall_bench::traffic`, default mix less IPv6), \
             every handshake first (at {} kpps), then a {}-frame steady pass replayed in order \
             (data {:.1}%, ACK {:.1}%, SYN and SYN-ACK {:.1}%, FIN {:.1}%, RST {:.1}%).\n\
             - Throughput: the steady pass flat out from an XDP live-frames generator \
             (`BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`), every frame 64 bytes; {} \
             rounds of {:.1} s per contender after {:.1} s of warm-up, the order rotated each \
             round. Forwarded: frames B's veth transmitted (tx_packets).\n\
             - Latency: the steady pass at {} frames/s from an AF_XDP socket in copy mode, \
             each frame with a CLOCK_MONOTONIC send stamp in a 4-byte trailer after the IP \
             datagram (64-byte frames; 66 for SYN and SYN-ACK), received by an AF_XDP socket \
             on the sink (rstwall's program in the tap role) in the same process, which sleeps \
             in poll() on CPU {}; {} rounds of {:.1} s per contender.\n\
             - Noise: a measurement during which other processes used more than {:.0}% of a CPU \
             was thrown away and taken again once the machine was quiet ({} throughput and {} \
             latency measurements were).\n",
            self.xdp_mode,
            s.fwd_cpu,
            s.gen_cpu,
            t.flows,
            s.handshake_pps / 1000,
            t.steady.len(),
            pct(c.data, c.frames),
            pct(c.ack, c.frames),
            pct(c.syn + c.synack, c.frames),
            pct(c.fin, c.frames),
            pct(c.rst_total(), c.frames),
            s.rounds,
            s.round.as_secs_f64(),
            s.warmup.as_secs_f64(),
            s.latency_pps,
            s.gen_cpu,
            s.rounds,
            s.latency.as_secs_f64(),
            s.max_other,
            self.repeats.0,
            self.repeats.1,
        );
        if !s.contenders.is_empty() {
            self.throughput_tables(&mut o);
        }
        if !s.latency_contenders.is_empty() {
            self.latency_table(&mut o);
        }
        String::from_utf8(o).expect("utf-8")
    }

    fn of(&self, c: Contender) -> Vec<&Tput> {
        self.tput.iter().filter(|t| t.contender == c).collect()
    }

    /// The median over `c`'s rounds of `f`, where it has a value.
    fn med(&self, c: Contender, f: impl Fn(&Tput) -> Option<f64>) -> Option<f64> {
        let v: Vec<f64> = self.of(c).into_iter().filter_map(f).collect();
        (!v.is_empty()).then(|| median(v))
    }

    /// Median and range over rounds of `f(c) / f(bare)`, each round against
    /// the same round's bare loop.
    fn vs_bare(&self, c: Contender, f: impl Fn(&Tput) -> Option<f64>) -> Option<(f64, f64, f64)> {
        let bare = self.of(Contender::Bare);
        let ratios: Vec<f64> = self
            .of(c)
            .into_iter()
            .filter_map(|t| {
                let b = bare.iter().find(|b| b.round == t.round)?;
                Some(f(t)? / f(b)?)
            })
            .collect();
        if ratios.is_empty() {
            return None;
        }
        let (lo, hi) = min_max(&ratios);
        Some((median(ratios), lo, hi))
    }

    fn throughput_tables(&self, o: &mut Vec<u8>) {
        let s = self.settings;
        let fmt = |v: Option<f64>, p: usize| v.map_or("—".into(), |v| format!("{v:.p$}"));
        let ratio = |r: Option<(f64, f64, f64)>| {
            r.map_or("—".into(), |(m, lo, hi)| {
                format!("**{m:.2}** ({lo:.2}–{hi:.2})")
            })
        };
        let _ = writeln!(
            o,
            "Throughput (medians over rounds; ratios are each round's against the same \
             round's bare loop, median and range):\n"
        );
        let _ = writeln!(
            o,
            "| contender | forwarded Mpps (min–max) | ÷ bare | forwarder CPU ns/frame \
             (user + sys) | bare's ns ÷ this (frames per CPU-second) |"
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|");
        for &c in &s.contenders {
            let fwd: Vec<f64> = self.of(c).iter().map(|t| t.forwarded).collect();
            let (lo, hi) = min_max(&fwd);
            let ns = self.med(c, |t| t.fwd_ns);
            let sys = self.med(c, |t| t.fwd_sys_pct);
            let split = match (ns, sys) {
                (Some(ns), Some(sys)) => format!(
                    "{ns:.0} ({:.0} + {:.0})",
                    ns * (100.0 - sys) / 100.0,
                    ns * sys / 100.0
                ),
                (Some(ns), None) => format!("{ns:.0}"),
                _ => "—".into(),
            };
            let (r_fwd, r_cpu) = if c == Contender::Bare {
                ("—".to_string(), "—".to_string())
            } else {
                (
                    ratio(self.vs_bare(c, |t| Some(t.forwarded))),
                    // ns(bare) / ns(c): frames per CPU-second against bare's.
                    ratio(self.vs_bare(c, |t| t.fwd_ns.map(|n| 1.0 / n))),
                )
            };
            let _ = writeln!(
                o,
                "| {} | {:.3} ({lo:.3}–{hi:.3}) | {r_fwd} | {split} | {r_cpu} |",
                c.name(),
                median(fwd.clone()),
            );
        }
        let _ = writeln!(o);
        for &c in s.contenders.iter().filter(|c| c.is_rstwall()) {
            let runs = self.of(c);
            let judged: u64 = runs.iter().map(|t| t.stop.judged).sum();
            let dropped: u64 = runs.iter().map(|t| t.stop.dropped).sum();
            let flows = runs.iter().map(|t| t.stop.active_flows).max().unwrap_or(0);
            let _ = writeln!(
                o,
                "- {}: the engine judged {judged} frames over all rounds, its policy dropped \
                 {dropped} ({:.2}%); {flows} flows tracked at the end.",
                c.name(),
                pct(dropped, judged),
            );
        }
        let _ = writeln!(o);
        let ncpu = self.tput.first().map_or(0, |t| t.cpus.len());
        let _ = writeln!(
            o,
            "Load and CPU (medians over rounds; CPU in per cent of one CPU):\n"
        );
        let mut head = "| contender | offered Mpps | arrived at A Mpps | lost at A's socket | \
                        dropped by B | forwarder thread CPU | generator threads CPU |"
            .to_string();
        for i in 0..ncpu {
            head += &format!(" CPU {i} busy (sys, irq) |");
        }
        let _ = writeln!(o, "{head} steal | other processes |");
        let _ = writeln!(o, "|---|{}", "---:|".repeat(8 + ncpu));
        for &c in &s.contenders {
            let mut row = format!(
                "| {} | {} | {} | {}% | {} | {}% | {}% |",
                c.name(),
                fmt(self.med(c, |t| Some(t.offered)), 3),
                fmt(self.med(c, |t| Some(t.arrived)), 3),
                fmt(self.med(c, |t| Some(t.lost_pct)), 1),
                fmt(self.med(c, |t| Some(t.b_dropped as f64)), 0),
                fmt(self.med(c, |t| t.fwd_util), 0),
                fmt(self.med(c, |t| t.gen_util), 0),
            );
            for i in 0..ncpu {
                row += &format!(
                    " {}% ({}, {}) |",
                    fmt(self.med(c, |t| Some(t.cpus[i].busy())), 0),
                    fmt(self.med(c, |t| Some(t.cpus[i].system)), 0),
                    fmt(self.med(c, |t| Some(t.cpus[i].irq)), 0),
                );
            }
            let _ = writeln!(
                o,
                "{row} {}% | {}% |",
                fmt(
                    self.med(c, |t| Some(t.cpus.iter().map(|x| x.steal).sum())),
                    1
                ),
                fmt(self.med(c, |t| Some(t.outside)), 0),
            );
        }
        let _ = writeln!(o);
    }

    fn latency_table(&self, o: &mut Vec<u8>) {
        let s = self.settings;
        let merged = |c: Contender| {
            let mut h = Histogram::<u64>::new_with_max(10_000_000_000, 3).expect("histogram");
            for l in self.lat.iter().filter(|l| l.contender == c) {
                let _ = h.add(&l.hist);
            }
            h
        };
        let hists: Vec<(Contender, Histogram<u64>)> = s
            .latency_contenders
            .iter()
            .map(|&c| (c, merged(c)))
            .collect();
        let bare = hists.iter().find(|(c, _)| *c == Contender::Bare);
        let added: Vec<&(Contender, Histogram<u64>)> = if bare.is_some() {
            hists.iter().filter(|(c, _)| c.is_rstwall()).collect()
        } else {
            Vec::new()
        };
        let _ = writeln!(
            o,
            "One-way latency, generator to sink, at {} frames/s (µs; every round's samples in \
             one hdrhistogram per contender; \"added\" is rstwall's minus the bare loop's, at \
             each percentile):\n",
            s.latency_pps
        );
        let mut head = "| percentile |".to_string();
        for (c, _) in &hists {
            head += &format!(" {} |", c.name());
        }
        for (c, _) in &added {
            head += &format!(" added by {} |", c.name());
        }
        let _ = writeln!(o, "{head}");
        let _ = writeln!(o, "|---|{}", "---:|".repeat(hists.len() + added.len()));
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
            let mut row = format!("| {name} |");
            for (_, h) in &hists {
                row += &format!(" {:.1} |", us(h, q));
            }
            if let Some((_, b)) = bare {
                for (_, h) in &added {
                    row += &format!(" **{:+.1}** |", us(h, q) - us(b, q));
                }
            }
            let _ = writeln!(o, "{row}");
        }
        let mut row = "| samples |".to_string();
        for (_, h) in &hists {
            row += &format!(" {} |", h.len());
        }
        row += &" |".repeat(added.len());
        let _ = writeln!(o, "{row}\n");
        let _ = writeln!(
            o,
            "Per round (p50 / p99 / p99.9 µs, other processes' CPU during the window):\n"
        );
        for &c in &s.latency_contenders {
            let runs: Vec<&Lat> = self.lat.iter().filter(|l| l.contender == c).collect();
            let rounds: Vec<String> = runs
                .iter()
                .map(|l| {
                    format!(
                        "{:.1} / {:.1} / {:.1} ({:.0}%)",
                        us(&l.hist, 0.5),
                        us(&l.hist, 0.99),
                        us(&l.hist, 0.999),
                        l.other
                    )
                })
                .collect();
            let lost: u64 = runs.iter().map(|l| l.sent.saturating_sub(l.received)).sum();
            let _ = writeln!(
                o,
                "- {}: {}; frames sent in the windows but not received: {lost}",
                c.name(),
                rounds.join("; ")
            );
        }
        let _ = writeln!(o);
    }
}
