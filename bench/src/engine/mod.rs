//! `rstwall-bench engine`: the parse-only and engine loops
//! ([`loops`]) over the same steady-state frames, in alternating timed
//! rounds on one core ([`run`]; several flow counts in one run with their
//! rounds interleaved: [`sweep`]), medians over rounds, and a markdown
//! report ([`report`]).

pub mod loops;
mod options;
pub mod report;
mod rounds;

pub use loops::{engine_config, EngineLoop, EnginePath, ParseLoop, BATCH, NS_PER_FRAME, START_NS};
pub use options::{Loops, Options};
pub use report::{sweep_markdown, Report, Round, Summary};
pub use rounds::{run, sweep};
