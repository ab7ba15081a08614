//! `rstwall-bench run`'s arguments.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use rstwall_bench::kernel::RstLimit;
use rstwall_bench::suite::{Contender, Options, Phase};
use rstwall_bench::traffic::{Mix, TrafficConfig};
use rstwall_bench::BadArg;
use rstwall_engine::policy::RateLimitConfig;

use super::values::secs;

#[derive(clap::Args)]
#[command(
    after_help = "Reading the report: \"÷ bare\" is each round's forwarded rate over the \
    same round's bare AF_XDP loop (the most any AF_XDP forwarder can do on this machine); \
    \"spoofed RSTs dropped\" and \"legitimate passed\" are counted at the sink, frame by \
    frame, against what was sent; latency is one-way, generator to sink; goodput is a real \
    kernel TCP transfer through the appliance, alone and during the flood.\n\n\
    Contenders: bare, nftables, monitor, enforce, guard (enforce with the in-kernel RST \
    guard), export (monitor with every RST handed to the fleet exporter, which streams them \
    to a local nats-server -js started for the run; the report gives its rate over \
    monitor's), monitor-spin, enforce-spin, monitor-busy, enforce-busy (monitor and enforce \
    with the workers' poll mode spin or busy; busy sets the lab ports' napi_defer_hard_irqs 2 \
    and gro_flush_timeout 200000 while it runs); and two diagnostics: kernel (rstwall's \
    program redirecting in the kernel, no AF_XDP: a latency reference, measured in the \
    latency phase only) and touch (the bare loop reading each frame's first cache line).\n\n\
    Forwarding alone, as the former `forward` command measured it (throughput with the \
    forwarder's CPU per frame, latency beside the kernel's redirect, five rounds):\n  \
    rstwall-bench run --contenders kernel,bare,monitor,enforce --phases throughput,latency \
    --rounds 5\n\n\
    Latency by poll mode, beside the kernel's redirect:\n  \
    rstwall-bench run --contenders kernel,monitor,enforce,monitor-busy,enforce-busy \
    --phases latency --rounds 5"
)]
pub struct RunArgs {
    /// Directory for report.md, results.json and chart.svg (created; the
    /// default is inside cargo's target directory when run from the
    /// repository).
    #[arg(long, value_name = "DIR", default_value = "target/bench-run")]
    out: PathBuf,
    /// Contenders, in the order of the report.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "bare,nftables,monitor,enforce",
        value_parser = PossibleValuesParser::new(Contender::NAMES)
            .try_map(|s| s.parse::<Contender>())
    )]
    contenders: Vec<Contender>,
    /// Measurements to take, in this order within a round.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "throughput,accuracy,latency,goodput",
        value_parser = PossibleValuesParser::new(Phase::NAMES).try_map(|s| s.parse::<Phase>())
    )]
    phases: Vec<Phase>,
    /// Rounds; each takes every measurement of every contender once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent flows of the synthetic traffic.
    #[arg(long, default_value_t = 10_000)]
    flows: usize,
    /// Frames in one pass of the traffic [default: 10 per flow].
    #[arg(long)]
    packets: Option<usize>,
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
    /// Goodput: spoofed RSTs per second of a second, heavier flood window
    /// (0: none).
    #[arg(long, default_value_t = 1_000_000)]
    flood_high_pps: u64,
    /// Goodput: a last window under the --flood-pps flood made malformed
    /// (a TCP data offset of 4 words), which rstwall's XDP program drops at
    /// parse on every contender but nftables: what sending and taking in
    /// the flood costs the transfer on this machine, whatever a contender
    /// does with it.
    #[arg(long)]
    flood_void: bool,
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
    /// CPU of the latency sink [default: the generator's]. Beside the
    /// generator, the sink is woken on the CPU that delivers the kernel
    /// redirect's frames, and from the other CPU for AF_XDP forwarders.
    #[arg(long)]
    sink_cpu: Option<usize>,
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
    /// The busy contenders (monitor-busy, enforce-busy): the lab ports'
    /// napi_defer_hard_irqs and gro_flush_timeout (ns) while they run, as
    /// IRQS,NS (the kernel's af_xdp.rst suggests 2,200000; 0,0 leaves the
    /// kernel's defaults).
    #[arg(long, value_name = "IRQS,NS", default_value = "2,200000")]
    busy_defer: String,
}

/// `v` in order, each once.
fn once<T: PartialEq + Copy>(v: &[T]) -> Vec<T> {
    v.iter().fold(Vec::new(), |mut out, x| {
        if !out.contains(x) {
            out.push(*x);
        }
        out
    })
}

impl RunArgs {
    /// The run's options: everything checked but what needs the machine.
    pub fn options(&self) -> Result<Options, BadArg> {
        let bad = |m: String| Err(BadArg(m));
        let traffic = TrafficConfig {
            flows: self.flows,
            packets: self
                .packets
                .unwrap_or_else(|| self.flows.saturating_mul(10)),
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
        if self.rounds == 0 {
            return bad("--rounds: must be at least 1".into());
        }
        if self.contenders.is_empty() || self.phases.is_empty() {
            return bad("--contenders and --phases: at least one each".into());
        }
        let (contenders, phases) = (once(&self.contenders), once(&self.phases));
        if let Some(p) = phases
            .iter()
            .find(|&&p| !contenders.iter().any(|c| c.measures(p)))
        {
            return bad(format!(
                "--contenders: none is measured in the {p} phase (kernel is a latency \
                 reference only)"
            ));
        }
        for (name, v) in [
            ("latency-pps", self.latency_pps),
            ("accuracy-pps", self.accuracy_pps),
            ("flood-pps", self.flood_pps),
            ("handshake-pps", self.handshake_pps),
        ] {
            if v == 0 || v > 100_000_000 {
                return bad(format!("--{name}: must be 1 to 100000000"));
            }
        }
        if self.flood_high_pps > 100_000_000 {
            return bad("--flood-high-pps: must be 0 to 100000000".into());
        }
        if !(self.max_other.is_finite() && self.max_other >= 0.0) {
            return bad("--max-other: a percentage".into());
        }
        let defaults = RateLimitConfig::default();
        let rst_limit = RstLimit {
            rate: self.nft_rst_rate.unwrap_or(defaults.global_rate),
            burst: self.nft_rst_burst.unwrap_or(defaults.global_burst),
        };
        if rst_limit.rate == 0 || rst_limit.burst == 0 {
            return bad("--nft-rst-rate and --nft-rst-burst: at least 1".into());
        }
        Ok(Options {
            out: self.out.clone(),
            contenders,
            phases,
            rounds: self.rounds,
            traffic,
            round: secs("round-secs", self.round_secs)?,
            warmup: secs("warmup-secs", self.warmup_secs)?,
            latency_pps: self.latency_pps,
            latency: secs("latency-secs", self.latency_secs)?,
            accuracy_pps: self.accuracy_pps,
            goodput: secs("goodput-secs", self.goodput_secs)?,
            flood_pps: self.flood_pps,
            flood_high_pps: self.flood_high_pps,
            flood_void: self.flood_void,
            rst_limit,
            handshake_pps: self.handshake_pps,
            gen_cpu: self.gen_cpu,
            sink_cpu: self.sink_cpu.unwrap_or(self.gen_cpu),
            fwd_cpu: self.fwd_cpu,
            max_other: self.max_other,
            max_repeats: self.max_repeats,
            quiet_secs: self.quiet_secs,
            busy_defer: self
                .busy_defer
                .split_once(',')
                .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)))
                .ok_or_else(|| {
                    BadArg(format!(
                        "--busy-defer: expected IRQS,NS (e.g. 2,200000), got {:?}",
                        self.busy_defer
                    ))
                })?,
        })
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

    fn check(line: &str) -> Result<Options, BadArg> {
        let argv = std::iter::once("run").chain(line.split_whitespace());
        Cli::try_parse_from(argv).expect("clap").run.options()
    }

    // Moved from bench/src/net/suite.rs; `contenders` and
    // `latency_contenders` of the old settings are now the contenders
    // measured in the throughput and in the latency phase.
    #[test]
    fn defaults_measure_every_contender_in_every_phase() {
        let s = check("").unwrap();
        let t = &s.traffic;
        assert_eq!(
            s.contenders_in(Phase::Throughput),
            [
                Contender::Bare,
                Contender::Nftables,
                Contender::Monitor,
                Contender::Enforce
            ]
        );
        assert_eq!(
            s.contenders_in(Phase::Latency),
            s.contenders_in(Phase::Throughput)
        );
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
        let s = check("--phases latency --contenders enforce,bare,enforce").unwrap();
        assert!(s.contenders_in(Phase::Throughput).is_empty());
        assert_eq!(
            s.contenders_in(Phase::Latency),
            [Contender::Enforce, Contender::Bare]
        );
    }

    /// What `forward` measured is `run` with options: its contenders, the
    /// kernel redirect as a latency reference beside them, its pass size.
    #[test]
    fn the_former_forward_is_run_with_options() {
        let s = check(
            "--contenders kernel,bare,touch,monitor,enforce --phases throughput,latency \
             --rounds 5 --packets 50000",
        )
        .unwrap();
        assert_eq!(
            s.contenders_in(Phase::Throughput),
            [
                Contender::Bare,
                Contender::Touch,
                Contender::Monitor,
                Contender::Enforce
            ]
        );
        assert_eq!(s.contenders_in(Phase::Latency)[0], Contender::Kernel);
        assert!(s.contenders_in(Phase::Accuracy).is_empty());
        assert_eq!((s.rounds, s.traffic.packets), (5, 50_000));
        let s = check("--phases latency --contenders kernel").unwrap();
        assert_eq!(s.contenders_in(Phase::Latency), [Contender::Kernel]);
        for (line, option) in [
            ("--contenders kernel,bogus", "invalid value"),
            ("--packets 5", "--packets"),
        ] {
            let argv = std::iter::once("run").chain(line.split_whitespace());
            let e = match Cli::try_parse_from(argv) {
                Ok(cli) => cli.run.options().expect_err(line).0,
                Err(e) => e.to_string(),
            };
            assert!(e.contains(option), "{line}: {e}");
        }
    }

    /// `export` is a contender of every phase, asked for by name, never by
    /// default (it needs nats-server).
    #[test]
    fn export_is_asked_for_and_measured_beside_monitor() {
        assert!(!check("").unwrap().contenders.contains(&Contender::Export));
        let s = check("--contenders monitor,export --phases throughput --rounds 5").unwrap();
        assert_eq!(
            s.contenders_in(Phase::Throughput),
            [Contender::Monitor, Contender::Export]
        );
        assert!(Contender::Export.is_rstwall() && Contender::Export.is_afxdp());
        for p in Phase::ALL {
            assert!(Contender::Export.measures(p), "{p}");
        }
    }
}
