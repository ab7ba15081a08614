//! One integration-test binary; each module is one area.

mod alerting;
mod api;
mod bench;
mod bpf;
mod classes;
mod cli;
mod corpus;
mod daemon;
mod datapath;
mod fleet;
mod host;
mod lab;
mod linux_fixtures;
