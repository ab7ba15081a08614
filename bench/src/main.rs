//! `rstwall-bench`: the benchmark harness.

mod net;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rstwall_bench::harness::{self, Loops, Options};
use rstwall_bench::traffic::TrafficConfig;

/// The daemon's allocator, so the tables sit in memory as they do there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "rstwall-bench", about = "rstwall benchmark harness")]
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
            bail!("--{e}");
        }
        if self.rounds == 0 {
            bail!("--rounds: must be at least 1");
        }
        if !(self.round_secs.is_finite() && self.round_secs > 0.0) {
            bail!("--round-secs: must be a positive number of seconds");
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

fn main() -> Result<()> {
    match Cli::parse().command {
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
    }
    Ok(())
}
