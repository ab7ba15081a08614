//! `rstwall-bench host`'s arguments.

use anyhow::Result;
use rstwall_bench::host::Options;
use rstwall_bench::BadArg;

use super::values::secs;

#[derive(clap::Args)]
pub struct HostArgs {
    /// Length of each run, in seconds.
    #[arg(long, default_value_t = 3.0)]
    run_secs: f64,
    /// Rounds of (without, with host mode); the report gives medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also write the markdown report here.
    #[arg(long)]
    markdown: Option<std::path::PathBuf>,
}

impl HostArgs {
    pub fn validate(&self) -> Result<(Options, Option<std::path::PathBuf>)> {
        if !(1..=100).contains(&self.rounds) {
            return Err(BadArg("--rounds: from 1 to 100".into()).into());
        }
        Ok((
            Options {
                run: secs("run-secs", self.run_secs)?,
                rounds: self.rounds,
            },
            self.markdown.clone(),
        ))
    }
}
