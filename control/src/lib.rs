//! The `rstwall` command: argument parsing and one module per subcommand.

use std::process::ExitCode;

use clap::Parser;

pub mod analyze;
pub mod api;
pub mod blocks;
pub mod cli;
pub mod client;
pub mod config;
pub mod http;
pub mod lab;
pub mod metrics;
pub mod persist;
pub mod render;
pub mod run;

/// An error with the exit status it deserves: 2 for bad arguments and
/// inputs (like a usage error), 1 for failures while running.
#[derive(Debug)]
pub struct Failure {
    pub status: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            status: 2,
            error: error.into(),
        }
    }
    pub fn runtime(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            status: 1,
            error: error.into(),
        }
    }
}

pub fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let result = match args.command {
        cli::Command::Analyze(a) => analyze::run(a),
        cli::Command::Run(a) => run::run(a),
        cli::Command::Status(a) => client::status(a),
        cli::Command::Stats(a) => client::stats(a),
        cli::Command::Top(a) => client::top(a),
        cli::Command::Flows(a) => client::flows(a),
        cli::Command::Policy(c) => client::policy(c),
        cli::Command::Block(c) => client::block(c),
        cli::Command::Capture(a) => client::capture(a),
        cli::Command::Alerts(a) => client::alerts(a),
        cli::Command::Lab(a) => lab::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // A closed pipe (`rstwall analyze ... | head`) is not an error.
            if let Some(io) = f.error.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("rstwall: error: {:#}", f.error);
            ExitCode::from(f.status)
        }
    }
}
