//! `rstwall-bench engine`'s arguments.

use std::path::PathBuf;

use anyhow::Result;
use clap::ValueEnum;
use rstwall_bench::engine::{Loops, Options};
use rstwall_bench::traffic::TrafficConfig;
use rstwall_bench::BadArg;

use super::values::secs;

#[derive(Clone, Copy, ValueEnum)]
pub enum Only {
    Parse,
    Engine,
}

#[derive(clap::Args)]
pub struct EngineArgs {
    /// Concurrent flows; several, comma-separated, sweep them in one run
    /// with their rounds interleaved (e.g. 100000,1000000).
    #[arg(long, value_delimiter = ',', default_value = "100000")]
    flows: Vec<usize>,
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
    /// The run's options (one per flow count), and where to write the
    /// report too.
    pub fn validate(self) -> Result<(Vec<Options>, Option<PathBuf>)> {
        if self.flows.is_empty() {
            return Err(BadArg("--flows: give at least one count".into()).into());
        }
        if self.packets.is_some() && self.flows.len() > 1 {
            return Err(BadArg("--packets: only with one --flows count".into()).into());
        }
        if self.rounds == 0 {
            return Err(BadArg("--rounds: must be at least 1".into()).into());
        }
        let loops = match self.only {
            None => Loops::Both,
            Some(Only::Parse) => Loops::ParseOnly,
            Some(Only::Engine) => Loops::EngineOnly,
        };
        let round = secs("round-secs", self.round_secs)?;
        let mut all = Vec::new();
        for &flows in &self.flows {
            let mut traffic = TrafficConfig {
                flows,
                packets: self.packets.unwrap_or(flows.saturating_mul(10)),
                ..TrafficConfig::default()
            };
            if let Some(seed) = self.seed {
                traffic.seed = seed;
            }
            if let Err(e) = traffic.validate() {
                return Err(BadArg(format!("--{e}")).into());
            }
            all.push(Options {
                traffic,
                rounds: self.rounds,
                round,
                loops,
            });
        }
        Ok((all, self.markdown))
    }
}
