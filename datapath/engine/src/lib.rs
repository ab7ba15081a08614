//! The rstwall packet engine.
//!
//! Frames go in, verdicts and telemetry come out; the engine does no I/O of
//! its own, so the same code runs behind every frame source (AF_XDP
//! workers), over pcap files (`rstwall-pcap`), in fuzzers and in
//! benchmarks.
//!
//! * [`wire`] — zero-copy views over frames, down to the TCP header.
//! * [`table`] — the bounded, randomly keyed LRU table everything else uses.
//! * [`flow`] — bidirectional flow tracking and the RST judgment.
//! * [`class`] — the RST classes ([`RstClass`]) and TCP flag classes.
//! * [`policy`] — monitor/enforce, per-class actions, rate limits, CIDR lists.
//! * [`telemetry`] — counters, per-host/port tables, rates, alerts.
//! * [`engine`] — one frame in, one verdict out.
//! * [`names`] — [`closed_enum!`], the one definition of every closed
//!   enum's names.

pub mod class;
pub mod engine;
pub mod flow;
pub mod names;
pub mod policy;
pub mod seq;
pub mod table;
pub mod telemetry;
pub mod wire;

pub use class::{FlagClass, RstClass};
