//! `rstwall-bench soak`'s arguments.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use rstwall_bench::soak::Options;
use rstwall_bench::BadArg;

#[derive(clap::Args)]
pub struct SoakArgs {
    /// How long (e.g. 10m, 90s).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// RSS growth is measured from the first sample after this.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Directory for report.md and chart.txt (created).
    #[arg(long, value_name = "DIR", default_value = "target/bench-soak")]
    out: PathBuf,
    /// Legitimate connections (their clients are 198.19.0.0/16).
    #[arg(long, default_value_t = 10_000)]
    flows: usize,
    /// Legitimate plain ACKs per second.
    #[arg(long, default_value_t = 10_000)]
    legit_pps: u64,
    /// Spoofed RSTs per second of the blind-reset flood.
    #[arg(long, default_value_t = 40_000)]
    flood_pps: u64,
    /// CPU of the generator.
    #[arg(long, default_value_t = 0)]
    gen_cpu: usize,
    /// CPU of rstwall's worker.
    #[arg(long, default_value_t = 1)]
    fwd_cpu: usize,
}

impl SoakArgs {
    pub fn options(self) -> Result<Options> {
        let o = Options {
            out: self.out,
            duration: self.duration,
            warmup: self.warmup,
            flows: self.flows,
            legit_pps: self.legit_pps,
            flood_pps: self.flood_pps,
            gen_cpu: self.gen_cpu,
            fwd_cpu: self.fwd_cpu,
        };
        o.validate().map_err(|e| BadArg(format!("--{e}")))?;
        Ok(o)
    }
}
