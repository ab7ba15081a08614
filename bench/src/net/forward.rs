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
//! Contenders and measurements are [`super::bench`]'s: `bare`, `monitor`
//! and `enforce` by default, and the in-kernel XDP redirect as a latency
//! reference.
//!
//! Traffic: `rstwall_bench::traffic` flows over IPv4, every flow's
//! handshake first (from an AF_XDP socket, paced), then the steady pass
//! replayed in order.
//!
//! * Throughput: the steady pass flat out from an XDP live-frames generator
//!   ([`super::live`]), 64-byte frames. Forwarded = frames the sink
//!   counted (its veth has no XDP program: a tc program counts and drops
//!   what arrives, [`super::sink`]); offered = what A's program saw; lost
//!   = A's socket's XDP_STATISTICS drops. The forwarder's CPU time is its
//!   thread's CPU clock.
//! * Latency: the steady pass at a low, fixed rate from an AF_XDP socket,
//!   each frame tagged in its IP header; an AF_XDP socket on the sink
//!   (rstwall's program, tap role), in this process, records receive −
//!   send time in an hdrhistogram.
//!
//! The CPUs are shared with whatever else runs: a measurement during which
//! other processes used more than `--max-other` of a CPU is taken again
//! once the machine is quiet.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use hdrhistogram::Histogram;
use rstwall_afxdp::sys;
use rstwall_bench::gen::BadArg;
use rstwall_bench::traffic::{Mix, Traffic, TrafficConfig};

use super::bench::{median, min_max, pct, secs, us, Bench, Contender, Lat, Settings, Tput};
use super::cpu::{self, Machine};
use super::kernel::RstLimit;
use super::lab::{self, Lab};

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
    let usage = |m: String| -> anyhow::Error { BadArg(m).into() };
    if let Err(e) = traffic_cfg.validate() {
        return Err(usage(format!("--{e}")));
    }
    if args.rounds == 0 {
        return Err(usage("--rounds: must be at least 1".into()));
    }
    if args.latency_pps == 0 || args.handshake_pps == 0 {
        return Err(usage(
            "--latency-pps and --handshake-pps: must be at least 1".into(),
        ));
    }
    let allowed = sys::allowed_cpus().context("allowed CPUs")?;
    for (name, cpu) in [("gen-cpu", args.gen_cpu), ("fwd-cpu", args.fwd_cpu)] {
        if !allowed.contains(&cpu) {
            return Err(usage(format!(
                "--{name} {cpu}: not one of this process's CPUs {allowed:?}"
            )));
        }
    }
    if args.contenders.contains(&Contender::Kernel) && args.only != Some(Phase::Latency) {
        return Err(usage(
            "--contenders: `kernel` is a latency reference only (its throughput is the \
             generator's, and in the kernel it needs NAPI on the sink)"
                .into(),
        ));
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
        // Not measured here.
        accuracy_pps: 1,
        goodput: std::time::Duration::from_secs(1),
        flood_pps: 1,
        rst_limit: RstLimit {
            rate: 10_000,
            burst: 20_000,
        },
    };

    let machine = Machine::describe();
    let load_before = cpu::loadavg();
    eprintln!("generating {} flows ...", traffic_cfg.flows);
    let traffic = Arc::new(Traffic::generate(&traffic_cfg));

    lab::delete_on_signal()?;
    let lab = Lab::new("fwd").context("building the namespaces")?;
    let bench = Bench::new(&lab, traffic.clone(), &s)?;
    eprintln!(
        "lab: {} ─ {}|{} ─ {}; XDP {} on A and B; AF_XDP copy mode",
        lab.gen_if,
        lab.port_a,
        lab.port_b,
        lab.sink_if,
        bench.xdp_mode.borrow(),
    );

    // A measurement during which other processes took more than
    // --max-other of a CPU is thrown away and taken again once the machine
    // is quiet: the CPUs are shared.
    let mut repeats = (0, 0);
    let mut tput = Vec::new();
    for round in 0..s.rounds {
        for i in 0..s.contenders.len() {
            let c = s.contenders[(i + round) % s.contenders.len()];
            let (t, again) =
                bench.steady(|| bench.throughput(c, round), |t| t.outside, Tput::line)?;
            repeats.0 += again;
            tput.push(t);
        }
    }
    let mut lat = Vec::new();
    for round in 0..s.rounds {
        for i in 0..s.latency_contenders.len() {
            let c = s.latency_contenders[(i + round) % s.latency_contenders.len()];
            let (l, again) = bench.steady(|| bench.latency(c, round), |l| l.other, Lat::line)?;
            repeats.1 += again;
            lat.push(l);
        }
    }
    let report = Report {
        machine,
        load: (load_before, cpu::loadavg()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        traffic: &traffic,
        settings: &s,
        xdp_mode: bench.xdp_mode.borrow().clone(),
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
             tc ingress program that counts each frame by kind and drops it) run in softirq \
             within the forwarder's transmit, on its CPU and in its CPU time.\n\
             - Traffic: {} flows over IPv4 (`rstwall_bench::traffic`, default mix less IPv6), \
             every handshake first (at {} kpps), then a {}-frame steady pass replayed in order \
             (data {:.1}%, ACK {:.1}%, SYN and SYN-ACK {:.1}%, FIN {:.1}%, RST {:.1}%).\n\
             - Throughput: the steady pass flat out from an XDP live-frames generator \
             (`BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`), every frame 64 bytes; {} \
             rounds of {:.1} s per contender after {:.1} s of warm-up, the order rotated each \
             round. Forwarded: frames counted at the sink.\n\
             - Latency: the steady pass at {} frames/s from an AF_XDP socket in copy mode, \
             each frame tagged in its IPv4 identification field and its CLOCK_MONOTONIC send \
             time kept by tag (64-byte frames), received by an AF_XDP socket \
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
