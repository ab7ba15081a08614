//! `rstwall-bench`: the benchmark harness.

mod net;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rstwall_bench::gen::{BadArg, GenArgs};
use rstwall_bench::harness::{self, Loops, Options};
use rstwall_bench::traffic::TrafficConfig;

/// The daemon's allocator, so the tables sit in memory as they do there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rstwall-bench",
    about = "rstwall benchmarks and traffic generator",
    after_help = "Bad arguments exit with status 2 and one line saying what is wrong; \
                  other failures with status 1."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time the engine against the parse-only baseline on one core.
    Engine(EngineArgs),
    /// Inline forwarding over AF_XDP on veth (copy mode): rstwall's
    /// datapath beside a bare AF_XDP rx→tx loop, throughput and latency.
    /// Needs root; builds and deletes its own network namespaces.
    Forward(net::forward::ForwardArgs),
    /// Send crafted TCP frames (IPv4 or IPv6, any flags; fixed, walked or
    /// random addresses, ports and sequence numbers), RST floods at one
    /// connection, SYN floods or the bench's traffic mixes, at a fixed
    /// rate or flat out, over AF_XDP or the kernel's XDP live-frames
    /// runner. Prints frames per second each second. Needs root.
    Gen(GenArgs),
    /// The benchmark suite on a namespace lab: a bare AF_XDP loop (the
    /// ceiling), Linux bridging with conntrack and nftables, rstwall in
    /// monitor and in enforce mode; for each, Mpps at 64 bytes, drop
    /// accuracy counted at the sink, latency percentiles, and a kernel TCP
    /// transfer's goodput alone and during a blind-reset flood. Writes a
    /// markdown report, JSON and an SVG chart to --out. Needs root; builds
    /// and deletes its own namespaces; about 4 minutes with the defaults.
    Run(net::suite::RunArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Only {
    Parse,
    Engine,
}

#[derive(clap::Args)]
struct EngineArgs {
    /// Concurrent flows.
    #[arg(long, default_value_t = 100_000)]
    flows: usize,
    /// Frames in one steady-state pass [default: 10 per flow].
    #[arg(long)]
    packets: Option<usize>,
    /// Timed rounds per loop; the report gives medians.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Length of one round, in seconds.
    #[arg(long, default_value_t = 2.0)]
    round_secs: f64,
    /// Traffic generator seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Time only one loop (e.g. under a profiler).
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// Also write the markdown report here.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

impl EngineArgs {
    fn validate(self) -> Result<(Options, Option<PathBuf>)> {
        let mut traffic = TrafficConfig {
            flows: self.flows,
            packets: self.packets.unwrap_or(self.flows.saturating_mul(10)),
            ..TrafficConfig::default()
        };
        if let Some(seed) = self.seed {
            traffic.seed = seed;
        }
        if let Err(e) = traffic.validate() {
            return Err(BadArg(format!("--{e}")).into());
        }
        if self.rounds == 0 {
            return Err(BadArg("--rounds: must be at least 1".into()).into());
        }
        if !(self.round_secs.is_finite() && self.round_secs > 0.0) {
            return Err(BadArg("--round-secs: must be a positive number of seconds".into()).into());
        }
        let loops = match self.only {
            None => Loops::Both,
            Some(Only::Parse) => Loops::ParseOnly,
            Some(Only::Engine) => Loops::EngineOnly,
        };
        let options = Options {
            traffic,
            rounds: self.rounds,
            round: Duration::from_secs_f64(self.round_secs),
            loops,
        };
        Ok((options, self.markdown))
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            eprintln!("rstwall-bench: {}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<BadArg>() => {
            eprintln!("rstwall-bench: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("rstwall-bench: error: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// clap's message without its usage and tips, on one line.
fn one_line(text: &str) -> String {
    let mut parts = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.trim_start_matches("error: "));
        }
    }
    parts.join(" ")
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Engine(args) => {
            let (options, markdown) = args.validate()?;
            let report = harness::run(options, |line| eprintln!("{line}"));
            let text = report.markdown();
            println!("{text}");
            if let Some(path) = markdown {
                std::fs::write(&path, &text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Forward(args) => net::forward::run(args)?,
        Command::Gen(args) => net::gen::run(args)?,
        Command::Run(args) => net::suite::run(args)?,
    }
    Ok(())
}
