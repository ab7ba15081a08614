//! The lab behind `rstwall lab up | down | run SCENARIO`: rstwall inline between real
//! Linux TCP stacks in network namespaces, and scenarios that check
//! themselves.
//!
//! * [`topology`] builds and removes the namespaces and runs the daemon;
//! * [`scenario`] drives the traffic and judges the outcome
//!   ([`run_scenario`], usable from Rust);
//! * [`stats`] is the one place the daemon's counters come from;
//! * [`report`] prints what a scenario did and whether it passed;
//! * [`traffic`] is the kernel TCP the scenarios drive; the namespaces,
//!   raw sockets, sniffer and random numbers underneath come from
//!   [`netlab`] (rstwall-netlab), re-exported for the CLI.

pub mod report;
pub mod scenario;
pub mod stats;
pub mod topology;
pub mod traffic;

pub use rstwall_netlab as netlab;

pub use report::Report;
pub use scenario::{run_scenario, Scenario, ScenarioOptions};
pub use topology::{Lab, LabConfig};
