//! `rstwall-bench run`: the benchmark suite on the lab, one run, every
//! contender — the bare AF_XDP loop (the ceiling), Linux bridging with
//! conntrack and nftables, rstwall in monitor and in enforce mode — and
//! every measurement of [`super::bench`] for each: Mpps at 64 bytes, drop
//! accuracy counted at the sink, one-way latency, and the goodput of a
//! kernel TCP transfer alone and during a blind-reset flood.
//!
//! Rounds: each runs every measurement of every contender once, the
//! contenders' order rotated; the report gives medians over rounds (and
//! merged latency histograms, summed accuracy counts). Output: `report.md`
//! (also on stdout), `results.json` and `chart.svg` in `--out`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::ValueEnum;
use hdrhistogram::Histogram;
use rstwall_afxdp::sys;
use rstwall_bench::gen::BadArg;
use rstwall_bench::traffic::{Label, Mix, Traffic, TrafficConfig};
use rstwall_engine::policy::RateLimitConfig;
use serde_json::{json, Value};

use super::bench::{
    is_legitimate, is_spoofed, median, min_max, pct, secs, us, Accuracy, Bench, Contender, Goodput,
    Lat, Settings, Tput,
};
use super::chart::{self, Panel, Series};
use super::cpu::{self, Machine};
use super::kernel::{self, RstLimit};
use super::lab::{self, Lab};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    Throughput,
    Accuracy,
    Latency,
    Goodput,
}

#[derive(clap::Args)]
#[command(
    after_help = "Reading the report: \"÷ bare\" is each round's forwarded rate over the \
    same round's bare AF_XDP loop (the most any AF_XDP forwarder can do on this machine); \
    \"spoofed RSTs dropped\" and \"legitimate passed\" are counted at the sink, frame by \
    frame, against what was sent; latency is one-way, generator to sink; goodput is a real \
    kernel TCP transfer through the appliance, alone and during the flood."
)]
pub struct RunArgs {
    /// Directory for report.md, results.json and chart.svg (created; the
    /// default is inside cargo's target directory when run from the
    /// repository).
    #[arg(long, value_name = "DIR", default_value = "target/bench-run")]
    out: PathBuf,
    /// Contenders, in the order of the report.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Contender::Bare, Contender::Nftables, Contender::Monitor, Contender::Enforce])]
    contenders: Vec<Contender>,
    /// Measurements to take.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Phase::Throughput, Phase::Accuracy, Phase::Latency, Phase::Goodput])]
    phases: Vec<Phase>,
    /// Rounds; each takes every measurement of every contender once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent flows of the synthetic traffic.
    #[arg(long, default_value_t = 10_000)]
    flows: usize,
    /// Throughput: measured seconds per contender and round.
    #[arg(long, default_value_t = 3.0)]
    round_secs: f64,
    /// Seconds of traffic before each throughput and latency window.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Latency: tagged frames per second (well below saturation).
    #[arg(long, default_value_t = 20_000)]
    latency_pps: u64,
    /// Latency: measured seconds per contender and round.
    #[arg(long, default_value_t = 3.0)]
    latency_secs: f64,
    /// Accuracy: frames per second of the one pass (below every
    /// contender's capacity, so that only policy drops anything).
    #[arg(long, default_value_t = 50_000)]
    accuracy_pps: u64,
    /// Goodput: seconds of the window alone, and of the window under flood.
    #[arg(long, default_value_t = 3.0)]
    goodput_secs: f64,
    /// Goodput: spoofed RSTs per second of the blind-reset flood.
    #[arg(long, default_value_t = 200_000)]
    flood_pps: u64,
    /// nftables: RSTs per second over which the RST limit drops
    /// [default: rstwall's ratelimit.global_rate].
    #[arg(long)]
    nft_rst_rate: Option<u64>,
    /// nftables: the RST limit's burst [default: rstwall's
    /// ratelimit.global_burst].
    #[arg(long)]
    nft_rst_burst: Option<u64>,
    /// Rate of the handshakes sent before the traffic.
    #[arg(long, default_value_t = 200_000)]
    handshake_pps: u64,
    /// CPU of the generator (and of the latency sink).
    #[arg(long, default_value_t = 0)]
    gen_cpu: usize,
    /// CPU of the forwarder (the bare loop, rstwall's worker, the kernel's
    /// steered receive).
    #[arg(long, default_value_t = 1)]
    fwd_cpu: usize,
    /// Take a measurement again when other processes used more than this
    /// much CPU during it (per cent of one CPU; 100 or more: never).
    #[arg(long, default_value_t = 10.0)]
    max_other: f64,
    /// ... at most this many times in a row (then keep it, and say so).
    #[arg(long, default_value_t = 3)]
    max_repeats: usize,
    /// Before taking a measurement again, wait for this many quiet seconds.
    #[arg(long, default_value_t = 10)]
    quiet_secs: u32,
}

/// Check the options: the settings, and the traffic's configuration.
fn settings(args: &RunArgs) -> Result<(Settings, TrafficConfig), BadArg> {
    let bad = |m: String| Err(BadArg(m));
    let traffic = TrafficConfig {
        flows: args.flows,
        packets: args.flows.saturating_mul(10),
        // IPv4 only: every frame is a minimum-size one.
        mix: Mix {
            ipv6: 0,
            ..Mix::default()
        },
        ..TrafficConfig::default()
    };
    if let Err(e) = traffic.validate() {
        return bad(format!("--{e}"));
    }
    if args.rounds == 0 {
        return bad("--rounds: must be at least 1".into());
    }
    if args.contenders.is_empty() || args.phases.is_empty() {
        return bad("--contenders and --phases: at least one each".into());
    }
    if let Some(c) = args
        .contenders
        .iter()
        .find(|c| matches!(c, Contender::Kernel | Contender::Touch))
    {
        return bad(format!(
            "--contenders: {} is a diagnostic of `rstwall-bench forward`, not a contender here",
            c.key()
        ));
    }
    for (name, v) in [
        ("latency-pps", args.latency_pps),
        ("accuracy-pps", args.accuracy_pps),
        ("flood-pps", args.flood_pps),
        ("handshake-pps", args.handshake_pps),
    ] {
        if v == 0 || v > 100_000_000 {
            return bad(format!("--{name}: must be 1 to 100000000"));
        }
    }
    if !(args.max_other.is_finite() && args.max_other >= 0.0) {
        return bad("--max-other: a percentage".into());
    }
    let defaults = RateLimitConfig::default();
    let rst_limit = RstLimit {
        rate: args.nft_rst_rate.unwrap_or(defaults.global_rate),
        burst: args.nft_rst_burst.unwrap_or(defaults.global_burst),
    };
    if rst_limit.rate == 0 || rst_limit.burst == 0 {
        return bad("--nft-rst-rate and --nft-rst-burst: at least 1".into());
    }
    let mut contenders = Vec::new();
    for c in &args.contenders {
        if !contenders.contains(c) {
            contenders.push(*c);
        }
    }
    let has = |p| args.phases.contains(&p);
    let s = Settings {
        rounds: args.rounds,
        round: secs("round-secs", args.round_secs)?,
        warmup: secs("warmup-secs", args.warmup_secs)?,
        contenders: if has(Phase::Throughput) {
            contenders.clone()
        } else {
            Vec::new()
        },
        latency_pps: args.latency_pps,
        latency: secs("latency-secs", args.latency_secs)?,
        latency_contenders: if has(Phase::Latency) {
            contenders.clone()
        } else {
            Vec::new()
        },
        handshake_pps: args.handshake_pps,
        gen_cpu: args.gen_cpu,
        fwd_cpu: args.fwd_cpu,
        max_other: args.max_other,
        max_repeats: args.max_repeats,
        quiet_secs: args.quiet_secs,
        accuracy_pps: args.accuracy_pps,
        goodput: secs("goodput-secs", args.goodput_secs)?,
        flood_pps: args.flood_pps,
        rst_limit,
    };
    Ok((s, traffic))
}

/// Everything measured.
#[derive(Default)]
struct Results {
    tput: Vec<Tput>,
    acc: Vec<Accuracy>,
    lat: Vec<Lat>,
    good: Vec<Goodput>,
    /// Measurements taken again because the machine was busy.
    repeats: usize,
}

pub fn run(args: RunArgs) -> Result<()> {
    let (s, traffic_cfg) = settings(&args)?;
    if !sys::is_root() {
        anyhow::bail!("run needs root (network namespaces, XDP, AF_XDP, nftables)");
    }
    let allowed = sys::allowed_cpus().context("allowed CPUs")?;
    for (name, cpu) in [("gen-cpu", s.gen_cpu), ("fwd-cpu", s.fwd_cpu)] {
        if !allowed.contains(&cpu) {
            return Err(BadArg(format!(
                "--{name} {cpu}: not one of this process's CPUs {allowed:?}"
            ))
            .into());
        }
    }
    if s.gen_cpu == s.fwd_cpu {
        eprintln!("warning: generator and forwarder share CPU {}", s.gen_cpu);
    }
    let contenders: Vec<Contender> = args.contenders.iter().fold(Vec::new(), |mut v, c| {
        if !v.contains(c) {
            v.push(*c);
        }
        v
    });
    if contenders.contains(&Contender::Nftables) {
        which_nft()?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let machine = Machine::describe();
    let load_before = cpu::loadavg();
    let started = std::time::Instant::now();
    eprintln!("generating {} flows ...", traffic_cfg.flows);
    let traffic = Arc::new(Traffic::generate(&traffic_cfg));

    lab::delete_on_signal()?;
    let lab = Lab::new("run").context("building the namespaces")?;
    let bench = Bench::new(&lab, traffic.clone(), &s)?;
    eprintln!(
        "lab: {} ─ {}|{} ─ {}; rstwall's XDP {} on A and B; AF_XDP copy mode",
        lab.gen_if,
        lab.port_a,
        lab.port_b,
        lab.sink_if,
        bench.xdp_mode.borrow(),
    );

    let mut r = Results::default();
    for round in 0..s.rounds {
        let order: Vec<Contender> = (0..contenders.len())
            .map(|i| contenders[(i + round) % contenders.len()])
            .collect();
        for phase in &args.phases {
            for &c in &order {
                match phase {
                    Phase::Throughput => {
                        let (t, again) = bench.steady(
                            || bench.throughput(c, round),
                            |t| t.outside,
                            Tput::line,
                        )?;
                        r.repeats += again;
                        r.tput.push(t);
                    }
                    Phase::Accuracy => {
                        let (a, again) = bench.steady(
                            || bench.accuracy(c, round),
                            |a| a.other,
                            Accuracy::line,
                        )?;
                        r.repeats += again;
                        r.acc.push(a);
                    }
                    Phase::Latency => {
                        let (l, again) =
                            bench.steady(|| bench.latency(c, round), |l| l.other, Lat::line)?;
                        r.repeats += again;
                        r.lat.push(l);
                    }
                    Phase::Goodput => {
                        let (g, again) =
                            bench.steady(|| bench.goodput(c, round), |g| g.other, Goodput::line)?;
                        r.repeats += again;
                        r.good.push(g);
                    }
                }
            }
        }
    }
    let xdp_mode = bench.xdp_mode.borrow().clone();
    drop(bench);
    drop(lab);
    let report = Report {
        machine,
        load: (load_before, cpu::loadavg()),
        minutes: started.elapsed().as_secs_f64() / 60.0,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        traffic: &traffic,
        s: &s,
        contenders: &contenders,
        phases: &args.phases,
        xdp_mode,
        r,
    };
    let md = report.markdown();
    let json = serde_json::to_string_pretty(&report.json())?;
    let svg = report.chart();
    for (name, text) in [
        ("report.md", &md),
        ("results.json", &json),
        ("chart.svg", &svg),
    ] {
        let path = args.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{md}");
    eprintln!(
        "wrote {0}/report.md, {0}/results.json and {0}/chart.svg",
        args.out.display()
    );
    Ok(())
}

fn which_nft() -> Result<()> {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("nft").is_file()));
    if !found {
        anyhow::bail!(
            "the nftables contender needs nft (Debian package nftables: scripts/setup \
             installs it), or leave it out with --contenders"
        );
    }
    Ok(())
}

/// Medians and merged figures of one contender.
struct Summary {
    c: Contender,
    mpps: Option<f64>,
    mpps_range: Option<(f64, f64)>,
    /// Median over rounds of this round's rate ÷ the bare loop's.
    vs_bare: Option<f64>,
    spoofed_dropped: Option<f64>,
    legit_passed: Option<f64>,
    latency: Option<Histogram<u64>>,
    calm_mbps: Option<f64>,
    flood_mbps: Option<f64>,
    flood_ratio: Option<f64>,
    /// Rounds whose connection broke under the flood.
    broke: usize,
}

struct Report<'a> {
    machine: Machine,
    load: (String, String),
    minutes: f64,
    command: String,
    traffic: &'a Traffic,
    s: &'a Settings,
    contenders: &'a [Contender],
    phases: &'a [Phase],
    xdp_mode: String,
    r: Results,
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.decimals$}"))
}

fn med(v: Vec<f64>) -> Option<f64> {
    (!v.is_empty()).then(|| median(v))
}

impl Report<'_> {
    fn summary(&self, c: Contender) -> Summary {
        let r = &self.r;
        let tput: Vec<&Tput> = r.tput.iter().filter(|t| t.contender == c).collect();
        let mpps: Vec<f64> = tput.iter().map(|t| t.forwarded).collect();
        let vs_bare: Vec<f64> = tput
            .iter()
            .filter_map(|t| {
                let b = r
                    .tput
                    .iter()
                    .find(|b| b.contender == Contender::Bare && b.round == t.round)?;
                Some(t.forwarded / b.forwarded)
            })
            .collect();
        let acc: Vec<&Accuracy> = r.acc.iter().filter(|a| a.contender == c).collect();
        let sums = |which: fn(Label) -> bool| {
            acc.iter()
                .map(|a| a.of(which))
                .fold((0, 0), |(s, a), (x, y)| (s + x, a + y))
        };
        let (ss, sa) = sums(is_spoofed);
        let (ls, la) = sums(is_legitimate);
        let lat: Vec<&Lat> = r.lat.iter().filter(|l| l.contender == c).collect();
        let latency = (!lat.is_empty()).then(|| {
            let mut h = Histogram::<u64>::new_with_max(10_000_000_000, 3).expect("histogram");
            for l in &lat {
                let _ = h.add(&l.hist);
            }
            h
        });
        let good: Vec<&Goodput> = r.good.iter().filter(|g| g.contender == c).collect();
        Summary {
            c,
            mpps: med(mpps.clone()),
            mpps_range: (!mpps.is_empty()).then(|| min_max(&mpps)),
            vs_bare: if c == Contender::Bare {
                None
            } else {
                med(vs_bare)
            },
            spoofed_dropped: (!acc.is_empty()).then(|| 100.0 - pct(sa, ss)),
            legit_passed: (!acc.is_empty()).then(|| pct(la, ls)),
            latency,
            calm_mbps: med(good.iter().map(|g| g.calm.mbps()).collect()),
            flood_mbps: med(good.iter().map(|g| g.flood.mbps()).collect()),
            flood_ratio: med(good.iter().map(|g| g.ratio()).collect()),
            broke: good.iter().filter(|g| g.reset.is_some()).count(),
        }
    }

    fn markdown(&self) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let s = self.s;
        let sums: Vec<Summary> = self.contenders.iter().map(|&c| self.summary(c)).collect();
        let _ = writeln!(
            o,
            "Measured {} on commit `{}`{}: {} ({} vCPUs), Linux {}; 1-minute load {} before, \
             {} after; the run took {:.1} minutes.\n",
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
            self.load.1,
            self.minutes,
        );
        let _ = writeln!(o, "```sh\n{}\n```\n", self.command);
        let _ = writeln!(
            o,
            "| contender | Mpps at 64 B (min–max) | ÷ bare | spoofed RSTs dropped | \
             legitimate passed | latency p50 / p99 / p99.9 µs | TCP goodput alone | \
             under a {} kpps blind-reset flood | flood ÷ alone |",
            s.flood_pps / 1000
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for x in &sums {
            let lat = x.latency.as_ref().map_or("—".into(), |h| {
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    us(h, 0.5),
                    us(h, 0.99),
                    us(h, 0.999)
                )
            });
            let _ = writeln!(
                o,
                "| {} | {}{} | {} | {} | {} | {} | {} | {} | {}{} |",
                x.c.name(),
                opt(x.mpps, 3),
                x.mpps_range
                    .map_or(String::new(), |(lo, hi)| format!(" ({lo:.3}–{hi:.3})")),
                x.vs_bare.map_or("—".into(), |v| format!("**{v:.2}**")),
                x.spoofed_dropped.map_or("—".into(), |v| format!("{v:.1}%")),
                x.legit_passed.map_or("—".into(), |v| format!("{v:.2}%")),
                lat,
                x.calm_mbps.map_or("—".into(), |v| format!("{v:.0} Mbit/s")),
                x.flood_mbps
                    .map_or("—".into(), |v| format!("{v:.0} Mbit/s")),
                x.flood_ratio.map_or("—".into(), |v| format!("**{v:.2}**")),
                if x.broke > 0 {
                    format!(" (connection broke in {} rounds)", x.broke)
                } else {
                    String::new()
                },
            );
        }
        let _ = writeln!(o);
        self.setup(&mut o);
        if !self.r.tput.is_empty() {
            self.throughput_table(&mut o);
        }
        if !self.r.acc.is_empty() {
            self.accuracy_table(&mut o);
        }
        if !self.r.lat.is_empty() {
            self.latency_table(&mut o, &sums);
        }
        if !self.r.good.is_empty() {
            self.goodput_table(&mut o);
        }
        o
    }

    fn setup(&self, o: &mut String) {
        let s = self.s;
        let t = self.traffic;
        let c = t.steady.counts();
        let _ = writeln!(
            o,
            "- Wire: three network namespaces, veth pairs; the appliance namespace in the \
             middle has the two ports, A (towards the generator) and B (towards the sink). \
             AF_XDP contenders sit behind rstwall's XDP \
             program (attached {}), copy mode, one queue, one forwarder thread pinned to CPU \
             {}; the kernel contender is a Linux bridge with `nf_call_iptables` (conntrack and \
             an `inet` nftables table: `ct state invalid drop`, and RSTs over {}/s, burst {}, \
             dropped), whose ports' receive an XDP cpumap steers to CPU {} too. The generator \
             and the latency sink run on CPU {}; what A receives is taken in (the XDP program) \
             on the generator's CPU, everything after it on the forwarder's.\n\
             - Traffic: {} flows over IPv4 (`rstwall_bench::traffic`), every handshake first \
             (at {} kpps), then a {}-frame pass: data {:.1}%, ACK {:.1}%, SYN and SYN-ACK \
             {:.1}%, FIN {:.1}%, RST {:.1}% ({} of them spoofed: in and out of window, RST \
             answering a SYN with a wrong ack).\n\
             - Mpps: the pass replayed flat out from the XDP live-frames generator, 64-byte \
             frames, {:.1} s after {:.1} s of warm-up; forwarded = frames counted at the sink \
             (a tc program on its veth counts every frame by the kind its source MAC carries).\n\
             - Drop accuracy: the handshakes and exactly one pass at {} kpps, below every \
             contender's capacity; every frame counted at the sink by kind. Spoofed RSTs are \
             those the receiving kernel never acts on (in-window but not exact, out of window, \
             a SYN-SENT answer with a wrong ack); legitimate frames are SYN, SYN-ACK, ACK, \
             data, FIN and the real RSTs (refused, abort, teardown). RSTs for absent flows and \
             RST+SYN are judgement calls, listed but counted in neither.\n\
             - Latency: the pass at {} frames/s from an AF_XDP socket, each frame tagged in its \
             IPv4 identification field, received by an AF_XDP socket on the sink; {:.1} s per \
             contender and round, every round's samples in one hdrhistogram.\n\
             - Goodput: one kernel TCP connection from the generator's namespace to the \
             sink's (bulk send, 1500-byte MTU, no TSO: the XDP programs on the ports take it \
             off) for {:.1} s alone, then {:.1} s while the generator sends {} RSTs/s at its \
             4-tuple as if from the client, random sequence numbers (`rstwall-bench gen \
             --profile rst-flood`'s frames), to the server's MAC.\n\
             - Rounds: {}; each took every measurement of every contender once, contenders \
             rotated. A measurement during which other processes used more than {:.0}% of a \
             CPU was taken again after a quiet wait (that happened {} times). The generator \
             shares the two CPUs with the forwarder and the TCP endpoints, so sending the \
             flood costs every contender's transfer the same; what differs is what the \
             contender lets through to the server.\n",
            self.xdp_mode,
            s.fwd_cpu,
            s.rst_limit.rate,
            s.rst_limit.burst,
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
            Label::ALL
                .iter()
                .filter(|l| is_spoofed(**l))
                .map(|l| c.of(*l))
                .sum::<u64>(),
            s.round.as_secs_f64(),
            s.warmup.as_secs_f64(),
            s.accuracy_pps / 1000,
            s.latency_pps,
            s.latency.as_secs_f64(),
            s.goodput.as_secs_f64(),
            s.goodput.as_secs_f64(),
            s.flood_pps,
            s.rounds,
            s.max_other,
            self.r.repeats,
        );
        let _ = writeln!(
            o,
            "nftables rules of the kernel contender:\n\n```\n{}```\n",
            kernel::ruleset(s.rst_limit)
        );
    }

    fn throughput_table(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "Throughput (medians over rounds; CPU in per cent of one CPU):\n\n\
             | contender | offered Mpps | arrived at A Mpps | forwarded Mpps | dropped by policy Mpps | \
             lost before the forwarder | forwarder thread CPU | CPU {} busy (sys, irq) | CPU {} busy \
             (sys, irq) | other processes |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            self.s.gen_cpu, self.s.fwd_cpu
        );
        for &c in self.contenders {
            let t: Vec<&Tput> = self.r.tput.iter().filter(|t| t.contender == c).collect();
            if t.is_empty() {
                continue;
            }
            let m = |f: &dyn Fn(&Tput) -> Option<f64>| med(t.iter().filter_map(|x| f(x)).collect());
            let cpu = |i: usize| {
                format!(
                    "{}% ({}, {})",
                    opt(m(&|x| x.cpus.get(i).map(|c| c.busy())), 0),
                    opt(m(&|x| x.cpus.get(i).map(|c| c.system)), 0),
                    opt(m(&|x| x.cpus.get(i).map(|c| c.irq)), 0)
                )
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {}% | {} | {} | {} | {}% |",
                c.name(),
                opt(m(&|x| Some(x.offered)), 3),
                opt(m(&|x| Some(x.arrived)), 3),
                opt(m(&|x| Some(x.forwarded)), 3),
                opt(m(&|x| x.policy_dropped), 3),
                opt(m(&|x| Some(x.lost_pct)), 1),
                m(&|x| x.fwd_util).map_or("in the kernel".into(), |v| format!("{v:.0}%")),
                cpu(self.s.gen_cpu),
                cpu(self.s.fwd_cpu),
                opt(m(&|x| Some(x.outside)), 0),
            );
        }
        let _ = writeln!(
            o,
            "\n\"Dropped by policy\": rstwall's engine (enforce: the spoofed RSTs, about 1% of the \
             pass) or the nftables rules. At saturation a forwarder sees only a random part of \
             each flow's segments, which for conntrack means segments outside the window it \
             knows: it marks them invalid and drops them (at the accuracy phase's rate it drops \
             nothing legitimate). \"Lost before the forwarder\": A's AF_XDP socket's drops (its \
             RX ring full) for AF_XDP contenders; for the bridge, every frame that arrived and \
             was neither forwarded nor dropped by a rule.\n"
        );
    }

    fn accuracy_table(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "Drop accuracy by kind of frame (frames counted at the sink ÷ frames sent, all \
             rounds together):\n"
        );
        let mut head = "| frames | kind | sent |".to_string();
        let mut rule = "|---|---|---:|".to_string();
        for c in self.contenders {
            head += &format!(" {} |", c.name());
            rule += "---:|";
        }
        let _ = writeln!(o, "{head}\n{rule}");
        let of = |c: Contender| -> Vec<&Accuracy> {
            self.r.acc.iter().filter(|a| a.contender == c).collect()
        };
        for label in Label::ALL {
            let sent: u64 = of(self.contenders[0])
                .iter()
                .map(|a| a.sent.of(label))
                .sum();
            if sent == 0 {
                continue;
            }
            let kind = if is_spoofed(label) {
                "spoofed"
            } else if is_legitimate(label) {
                "legitimate"
            } else {
                "judgement call"
            };
            let mut row = format!("| {} | {kind} | {sent} |", label.name());
            for &c in self.contenders {
                let runs = of(c);
                let s: u64 = runs.iter().map(|a| a.sent.of(label)).sum();
                let a: u64 = runs.iter().map(|a| a.arrived[label.code() as usize]).sum();
                row += &if s == 0 {
                    " — |".to_string()
                } else {
                    format!(" {:.1}% |", pct(a, s))
                };
            }
            let _ = writeln!(o, "{row}");
        }
        let _ = writeln!(o);
        for &c in self.contenders {
            let runs = of(c);
            if runs.is_empty() {
                continue;
            }
            let judged: u64 = runs.iter().map(|a| a.stop.judged).sum();
            let dropped: u64 = runs.iter().map(|a| a.stop.dropped).sum();
            let nft = runs
                .iter()
                .filter_map(|a| a.stop.nft)
                .fold((0, 0), |(i, r), n| (i + n.invalid, r + n.rst_limited));
            if judged > 0 {
                let _ = writeln!(
                    o,
                    "- {}: the engine judged {judged} frames, its policy dropped {dropped}.",
                    c.name()
                );
            } else if c == Contender::Nftables {
                let _ = writeln!(
                    o,
                    "- {}: `ct state invalid` dropped {}, the RST limit {}.",
                    c.name(),
                    nft.0,
                    nft.1
                );
            }
        }
        let _ = writeln!(o);
    }

    fn latency_table(&self, o: &mut String, sums: &[Summary]) {
        let _ = writeln!(
            o,
            "One-way latency, generator to sink, at {} frames/s (µs; every round's samples in \
             one hdrhistogram per contender; frames not received include those a policy \
             dropped: the pass has spoofed RSTs):\n",
            self.s.latency_pps
        );
        let with: Vec<&Summary> = sums.iter().filter(|x| x.latency.is_some()).collect();
        let mut head = "| percentile |".to_string();
        for x in &with {
            head += &format!(" {} |", x.c.name());
        }
        let _ = writeln!(o, "{head}\n|---|{}", "---:|".repeat(with.len()));
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            let mut row = format!("| {name} |");
            for x in &with {
                row += &format!(" {:.1} |", us(x.latency.as_ref().expect("some"), q));
            }
            let _ = writeln!(o, "{row}");
        }
        let mut row = "| samples (not received) |".to_string();
        for x in &with {
            let lost: u64 = self
                .r
                .lat
                .iter()
                .filter(|l| l.contender == x.c)
                .map(|l| l.sent.saturating_sub(l.received))
                .sum();
            row += &format!(" {} ({lost}) |", x.latency.as_ref().expect("some").len());
        }
        let _ = writeln!(o, "{row}\n");
    }

    fn goodput_table(&self, o: &mut String) {
        let _ = writeln!(
            o,
            "Goodput per round (Mbit/s alone → under the flood; flood RSTs that reached the \
             server / sent; the server's challenge ACKs during the flood):\n"
        );
        for &c in self.contenders {
            let rounds: Vec<String> = self
                .r
                .good
                .iter()
                .filter(|g| g.contender == c)
                .map(|g| {
                    format!(
                        "{:.0} → {:.0} ({}/{} RSTs, {} challenge ACKs{}{})",
                        g.calm.mbps(),
                        g.flood.mbps(),
                        g.flood.flood_arrived,
                        g.flood.flood_sent,
                        g.flood.challenge_acks,
                        g.dropped_by(),
                        g.reset
                            .as_ref()
                            .map_or(String::new(), |e| format!(", connection broke: {e}"))
                    )
                })
                .collect();
            if !rounds.is_empty() {
                let _ = writeln!(o, "- {}: {}", c.name(), rounds.join("; "));
            }
        }
        let _ = writeln!(o);
    }

    fn json(&self) -> Value {
        let m = &self.machine;
        let s = self.s;
        let summary: Vec<Value> = self
            .contenders
            .iter()
            .map(|&c| {
                let x = self.summary(c);
                json!({
                    "contender": c.key(),
                    "name": c.name(),
                    "mpps": x.mpps,
                    "mpps_min": x.mpps_range.map(|r| r.0),
                    "mpps_max": x.mpps_range.map(|r| r.1),
                    "mpps_vs_bare": x.vs_bare,
                    "spoofed_rst_dropped_pct": x.spoofed_dropped,
                    "legitimate_passed_pct": x.legit_passed,
                    "latency_us": x.latency.as_ref().map(|h| json!({
                        "p50": us(h, 0.5), "p90": us(h, 0.9), "p99": us(h, 0.99),
                        "p999": us(h, 0.999), "max": h.max() as f64 / 1000.0,
                        "samples": h.len(),
                    })),
                    "goodput_mbps": {
                        "alone": x.calm_mbps, "flood": x.flood_mbps, "ratio": x.flood_ratio,
                    },
                    "connection_broke_rounds": x.broke,
                })
            })
            .collect();
        let tput: Vec<Value> = self
            .r
            .tput
            .iter()
            .map(|t| {
                json!({
                    "contender": t.contender.key(), "round": t.round + 1,
                    "offered_mpps": t.offered, "arrived_mpps": t.arrived,
                    "forwarded_mpps": t.forwarded, "b_tx_mpps": t.b_tx,
                    "policy_dropped_mpps": t.policy_dropped,
                    "lost_before_forwarder_pct": t.lost_pct,
                    "forwarder_cpu_ns_per_frame": t.fwd_ns, "forwarder_cpu_pct": t.fwd_util,
                    "cpu_busy_pct": t.cpus.iter().map(|c| c.busy()).collect::<Vec<_>>(),
                    "other_processes_pct": t.outside,
                })
            })
            .collect();
        let acc: Vec<Value> = self
            .r
            .acc
            .iter()
            .map(|a| {
                let by: serde_json::Map<String, Value> = Label::ALL
                    .iter()
                    .filter(|l| a.sent.of(**l) > 0)
                    .map(|l| {
                        (
                            l.name().to_string(),
                            json!({"sent": a.sent.of(*l), "arrived": a.arrived[l.code() as usize]}),
                        )
                    })
                    .collect();
                json!({
                    "contender": a.contender.key(), "round": a.round + 1,
                    "spoofed_rst_dropped_pct": a.spoofed_dropped(),
                    "legitimate_passed_pct": a.legit_passed(),
                    "by_kind": by,
                    "engine_judged": a.stop.judged, "engine_dropped": a.stop.dropped,
                    "nft_invalid_dropped": a.stop.nft.map(|n| n.invalid),
                    "nft_rst_limit_dropped": a.stop.nft.map(|n| n.rst_limited),
                    "other_processes_pct": a.other,
                })
            })
            .collect();
        let lat: Vec<Value> = self
            .r
            .lat
            .iter()
            .map(|l| {
                json!({
                    "contender": l.contender.key(), "round": l.round + 1,
                    "p50_us": us(&l.hist, 0.5), "p99_us": us(&l.hist, 0.99),
                    "p999_us": us(&l.hist, 0.999), "samples": l.hist.len(),
                    "sent": l.sent, "received": l.received, "other_processes_pct": l.other,
                })
            })
            .collect();
        let good: Vec<Value> = self
            .r
            .good
            .iter()
            .map(|g| {
                json!({
                    "contender": g.contender.key(), "round": g.round + 1,
                    "alone_mbps": g.calm.mbps(), "flood_mbps": g.flood.mbps(),
                    "ratio": g.ratio(),
                    "flood_sent": g.flood.flood_sent, "flood_at_server": g.flood.flood_arrived,
                    "challenge_acks": g.flood.challenge_acks,
                    "connection_broke": g.reset,
                    "other_processes_pct": g.other,
                })
            })
            .collect();
        json!({
            "machine": {
                "date": m.date, "commit": m.commit, "dirty": m.dirty, "cpu": m.cpu_model,
                "cpus": m.cpus, "kernel": m.kernel,
                "load_before": self.load.0, "load_after": self.load.1,
            },
            "command": self.command,
            "minutes": self.minutes,
            "settings": {
                "rounds": s.rounds, "flows": self.traffic.flows,
                "pass_frames": self.traffic.steady.len(),
                "phases": self.phases.iter().map(|p| format!("{p:?}").to_lowercase()).collect::<Vec<_>>(),
                "throughput_secs": s.round.as_secs_f64(), "warmup_secs": s.warmup.as_secs_f64(),
                "latency_pps": s.latency_pps, "latency_secs": s.latency.as_secs_f64(),
                "accuracy_pps": s.accuracy_pps, "goodput_secs": s.goodput.as_secs_f64(),
                "flood_pps": s.flood_pps,
                "nft_rst_rate": s.rst_limit.rate, "nft_rst_burst": s.rst_limit.burst,
                "gen_cpu": s.gen_cpu, "fwd_cpu": s.fwd_cpu, "max_other_pct": s.max_other,
                "xdp_mode": self.xdp_mode,
            },
            "remeasured": self.r.repeats,
            "summary": summary,
            "throughput": tput,
            "accuracy": acc,
            "latency": lat,
            "goodput": good,
        })
    }

    fn chart(&self) -> String {
        let sums: Vec<Summary> = self.contenders.iter().map(|&c| self.summary(c)).collect();
        let rows = |f: &dyn Fn(&Summary) -> Vec<Option<f64>>| -> Vec<(String, Vec<Option<f64>>)> {
            sums.iter()
                .map(|x| (x.c.name().to_string(), f(x)))
                .collect()
        };
        let s = self.s;
        let panels = vec![
            Panel {
                title: "Forwarded, 64-byte frames (Mpps, median)".into(),
                series: vec![Series {
                    name: "Mpps",
                    color: "#4c72b0",
                }],
                rows: rows(&|x| vec![x.mpps]),
                decimals: 2,
                unit: "",
                max: None,
                notes: sums
                    .iter()
                    .map(|x| {
                        x.vs_bare
                            .map_or(String::new(), |r| format!("({r:.2}× bare)"))
                    })
                    .collect(),
            },
            Panel {
                title: "Drop accuracy, counted at the sink (%)".into(),
                series: vec![
                    Series {
                        name: "spoofed RSTs dropped",
                        color: "#c44e52",
                    },
                    Series {
                        name: "legitimate frames passed",
                        color: "#55a868",
                    },
                ],
                rows: rows(&|x| vec![x.spoofed_dropped, x.legit_passed]),
                decimals: 1,
                unit: "%",
                max: Some(100.0),
                notes: Vec::new(),
            },
            Panel {
                title: format!("One-way latency at {} kpps (µs)", s.latency_pps / 1000),
                series: vec![
                    Series {
                        name: "p50",
                        color: "#8172b2",
                    },
                    Series {
                        name: "p99",
                        color: "#ccb974",
                    },
                ],
                rows: rows(&|x| {
                    x.latency.as_ref().map_or(vec![None, None], |h| {
                        vec![Some(us(h, 0.5)), Some(us(h, 0.99))]
                    })
                }),
                decimals: 0,
                unit: "",
                max: None,
                notes: sums
                    .iter()
                    .map(|x| {
                        x.latency
                            .as_ref()
                            .map_or(String::new(), |h| format!("(p99.9 {:.0})", us(h, 0.999)))
                    })
                    .collect(),
            },
            Panel {
                title: format!(
                    "TCP goodput (Mbit/s), alone / {} kpps RST flood",
                    s.flood_pps / 1000
                ),
                series: vec![
                    Series {
                        name: "alone",
                        color: "#64b5cd",
                    },
                    Series {
                        name: "under flood",
                        color: "#dd8452",
                    },
                ],
                rows: rows(&|x| vec![x.calm_mbps, x.flood_mbps]),
                decimals: 0,
                unit: "",
                max: None,
                notes: sums
                    .iter()
                    .map(|x| {
                        let broke = if x.broke > 0 {
                            ", connection broke"
                        } else {
                            ""
                        };
                        x.flood_ratio
                            .map_or(String::new(), |r| format!("({r:.2}× alone{broke})"))
                    })
                    .collect(),
            },
        ];
        let m = &self.machine;
        chart::svg(
            "rstwall-bench run: rstwall inline vs a bare AF_XDP loop and Linux + nftables",
            &format!(
                "{} on {} ({} vCPUs), Linux {}, commit {}; {} rounds, medians. Longer bars are \
                 better except latency.",
                m.date, m.cpu_model, m.cpus, m.kernel, m.commit, s.rounds
            ),
            &panels,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn check(line: &str) -> Result<(Settings, TrafficConfig), BadArg> {
        let argv = std::iter::once("run").chain(line.split_whitespace());
        settings(&Cli::try_parse_from(argv).expect("clap").run)
    }

    #[test]
    fn defaults_measure_every_contender_in_every_phase() {
        let (s, t) = check("").unwrap();
        assert_eq!(
            s.contenders,
            [
                Contender::Bare,
                Contender::Nftables,
                Contender::Monitor,
                Contender::Enforce
            ]
        );
        assert_eq!(s.latency_contenders, s.contenders);
        assert_eq!(t.mix.ipv6, 0, "64-byte frames only");
        let d = RateLimitConfig::default();
        assert_eq!(
            (s.rst_limit.rate, s.rst_limit.burst),
            (d.global_rate, d.global_burst)
        );
    }

    #[test]
    fn bad_options_name_themselves() {
        for (line, option) in [
            ("--rounds 0", "--rounds"),
            ("--flows 0", "--flows"),
            ("--round-secs 0", "--round-secs"),
            ("--goodput-secs nan", "--goodput-secs"),
            ("--flood-pps 0", "--flood-pps"),
            ("--contenders kernel", "--contenders"),
            ("--nft-rst-rate 0", "--nft-rst-rate"),
        ] {
            let e = check(line)
                .err()
                .unwrap_or_else(|| panic!("{line} accepted"))
                .0;
            assert!(e.starts_with(option), "{line}: {e}");
            assert!(!e.contains('\n'));
        }
        let (s, _) = check("--phases latency --contenders enforce,bare,enforce").unwrap();
        assert!(s.contenders.is_empty());
        assert_eq!(s.latency_contenders, [Contender::Enforce, Contender::Bare]);
    }
}
