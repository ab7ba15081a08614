//! rstwall benchmarks.
//!
//! * [`frame`] — TCP frames written into caller buffers, checksums included.
//! * [`gen`] — `rstwall-bench gen`'s command line and the frames it asks for.
//! * [`traffic`] — many concurrent flows as pre-built frames in ring order,
//!   each frame labelled with what it is (for RSTs: its class).
//! * [`run`] — the measured loops (parse-only baseline and engine), shared
//!   by `benches/engine.rs` and the `rstwall-bench` harness.
//! * [`harness`] — timed rounds, medians and the markdown report.

pub mod frame;
pub mod gen;
pub mod harness;
pub mod run;
pub mod traffic;
