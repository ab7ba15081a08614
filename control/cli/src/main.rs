//! `rstwall`: the command line. [`cli`] holds every argument; each other
//! module runs one command over the libraries (the daemon, the lab, the
//! API client, the pcap analyzer).

use std::process::ExitCode;

use clap::Parser;

mod analyze;
mod cli;
mod client;
mod host;
mod lab;
mod render;
mod run;

use rstwall_api::Failure;

/// The daemon's allocator too: it places the flow tables.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let result = match args.command {
        cli::Command::Analyze(a) => analyze::run(a),
        cli::Command::Host(a) => host::run(a),
        cli::Command::Run(a) => run::run(*a),
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
