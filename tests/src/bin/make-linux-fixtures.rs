//! Regenerate `tests/fixtures/linux/<scenario>.pcap` and `.expect` from
//! the real Linux TCP stack (root): every TCP RST class, with the
//! receiving kernel's own verdict, measured on the real sockets.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rstwall_tests::fixtures::{self, Options, SCENARIOS};

/// Make the Linux TCP-reset fixtures in two private network namespaces
/// (198.18.0.1 <-> 198.18.0.2 on a veth pair), removed again on any exit.
#[derive(Parser, Debug)]
#[command(name = "make-linux-fixtures")]
struct Args {
    /// Where the files go [default: tests/fixtures/linux of this repository].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only this scenario (repeatable).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(SCENARIOS))]
    only: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = rstwall_netlab::remove_on_signal() {
        eprintln!("make-linux-fixtures: catching signals: {e}");
        return ExitCode::FAILURE;
    }
    let out = args
        .out
        .unwrap_or_else(|| rstwall_tests::repo_root().join("tests/fixtures/linux"));
    match fixtures::make(&Options {
        out,
        only: args.only,
    }) {
        Ok(surprises) => {
            if !surprises.is_empty() {
                println!("\nThe kernel did not do what the scenarios predicted (recorded as it happened):");
                for s in surprises {
                    println!("  - {s}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make-linux-fixtures: {e:#}");
            ExitCode::FAILURE
        }
    }
}
