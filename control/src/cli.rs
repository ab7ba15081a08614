//! Command-line definitions (clap). Raw arguments only: each command turns
//! them into validated settings itself.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

const ABOUT: &str = "\
rstwall: a TCP-reset firewall and telemetry appliance.

rstwall judges every TCP RST the way the receiving Linux kernel would
(RFC 5961) and puts it in one class:

  refused           answers a SYN with ack=ISN+1: closed port, connection refused
  abort             exact-sequence RST in a live flow: a real abort
  teardown          acceptable RST after a FIN: data after close
  in_window         in window but not exact: challenge-ACKed; blind injection?
  out_of_window     outside the receiver's window: ignored; spoofed or stale
  syn_sent_bad_ack  answers a SYN without acknowledging it: spoofed
  no_flow           no state for this 5-tuple: backscatter, scan, old flow
  invalid_flags     RST with SYN or FIN: impossible flag combination";

#[derive(Debug, Parser)]
#[command(name = "rstwall", version, about = ABOUT, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyze pcap/pcapng captures offline with the live engine.
    #[command(long_about = ANALYZE_ABOUT)]
    Analyze(AnalyzeArgs),
}

const ANALYZE_ABOUT: &str = "\
Analyze pcap/pcapng captures offline with the same engine the datapath runs.

Reads Ethernet (with up to two VLAN tags), Linux cooked v1/v2 (tcpdump -i any),
BSD loopback/NULL and raw IPv4/IPv6 captures. Several files are read in the
order given, as one stream. A truncated or corrupt file is read up to the
damage and the report says where it stopped.

Exit status: 0 on success (also when a file was damaged), 1 when writing
output failed, 2 for bad arguments or files that are not captures.

Examples:
  rstwall analyze capture.pcap
  rstwall analyze --events - capture.pcap | jq .class
  rstwall analyze --write spoofed.pcap --class in_window,out_of_window capture.pcap
  rstwall analyze --policy policy.toml --mode enforce --json capture.pcapng";

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Capture files (pcap or pcapng).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,

    /// Write one JSON line per RST to FILE ("-" for standard output): frame,
    /// timestamp, 5-tuple, seq, ack, class, with_data, verdict.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// Write the RSTs matching --class to FILE as a pcap (tcpdump and
    /// Wireshark open it).
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// With --write: RST classes to keep, comma-separated (default: all).
    #[arg(long, value_name = "CLASS", value_delimiter = ',', requires = "write")]
    pub class: Vec<String>,

    /// Apply a policy file (TOML; see the README) to compute verdicts.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    /// Override the policy's mode: monitor (count only) or enforce.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,

    /// Rows in each top list.
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub top: u16,

    /// Flows tracked at once (oldest evicted beyond that).
    #[arg(long, value_name = "N")]
    pub flow_capacity: Option<usize>,
}
