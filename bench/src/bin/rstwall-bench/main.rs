//! `rstwall-bench`: the benchmarks' command line. Each subcommand's
//! arguments are checked into the options of one library call ([`args`]);
//! everything else is the `rstwall_bench` library.

mod args;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use rstwall_bench::{engine, gen, host, soak, suite, BadArg};

use args::engine::EngineArgs;
use args::gen::GenArgs;
use args::host::HostArgs;
use args::run::RunArgs;
use args::soak::SoakArgs;

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
    /// Send crafted TCP frames (IPv4 or IPv6, any flags; fixed, walked or
    /// random addresses, ports and sequence numbers), RST floods at one
    /// connection, SYN floods or the bench's traffic mixes, at a fixed
    /// rate or flat out, over AF_XDP or the kernel's XDP live-frames
    /// runner. Prints frames per second each second. Needs root.
    Gen(GenArgs),
    /// The benchmark suite on a namespace lab: a bare AF_XDP loop (the
    /// ceiling), Linux bridging with conntrack and nftables, rstwall in
    /// monitor and in enforce mode (and, on request, enforce with the RST
    /// guard, monitor with the fleet exporter, the kernel's own XDP
    /// redirect as a latency reference and the bare loop reading every
    /// frame); for each, Mpps at 64 bytes and the CPU per frame, drop
    /// accuracy counted at the sink, latency percentiles, and a kernel TCP
    /// transfer's goodput alone and during a blind-reset flood. Writes a
    /// markdown report, JSON and an SVG chart to --out. Needs root; builds
    /// and deletes its own namespaces; about 4 minutes with the defaults.
    Run(RunArgs),
    /// What host mode (`rstwall host`, `rstwall run --host`) costs the host
    /// it watches: request/response transactions and bulk throughput over
    /// lo and a veth, without and with it (alternating rounds, medians),
    /// and ring-buffer loss under a SYN flood with one and two workers.
    /// Needs root; about a minute with the defaults.
    Host(HostArgs),
    /// rstwall enforce on the lab for a long time (default 10 minutes):
    /// legitimate ACKs and a blind-reset flood at the same flows, sampled
    /// every second — RSS, the worker's UMEM frames (none leaked), flows,
    /// legitimate frames lost and spoofed RSTs passed (both must be 0).
    /// Writes report.md and chart.txt to --out; exits with status 1 when
    /// an invariant broke. Needs root.
    Soak(SoakArgs),
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
            let reports = engine::sweep(options, |line| eprintln!("{line}"));
            let mut text: String = reports.iter().map(engine::Report::markdown).collect();
            if reports.len() > 1 {
                text.push_str("\nFlows sweep (rounds interleaved, one run):\n\n");
                text.push_str(&engine::sweep_markdown(&reports));
            }
            println!("{text}");
            if let Some(path) = markdown {
                std::fs::write(&path, &text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Command::Gen(args) => gen::run(&args.plan()?),
        Command::Run(args) => suite::run(&args.options()?),
        Command::Host(args) => {
            let (options, markdown) = args.validate()?;
            let report = host::run(&options, |line| eprintln!("{line}"))?;
            print_report(&report.markdown(), markdown)
        }
        Command::Soak(args) => {
            let o = args.options()?;
            let report = soak::run(&o, |line| eprintln!("{line}"))?;
            let md = report.markdown();
            let chart = report.chart();
            for (name, text) in [("report.md", &md), ("chart.txt", &chart)] {
                let path = o.out.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{md}\n{chart}");
            let broken = report.broken();
            if !broken.is_empty() {
                anyhow::bail!("soak: {}", broken.join("; "));
            }
            Ok(())
        }
    }
}

/// A markdown report on standard output, and in `markdown` if given.
fn print_report(text: &str, markdown: Option<std::path::PathBuf>) -> Result<()> {
    println!("{text}");
    if let Some(path) = markdown {
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
