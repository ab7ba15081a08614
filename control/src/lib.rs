//! The `rstwall` command: argument parsing and one module per subcommand.

use std::process::ExitCode;

use clap::Parser;

pub mod analyze;
pub mod cli;
pub mod config;
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
