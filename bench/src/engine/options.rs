//! [`Options`]: what `rstwall-bench engine` times, checked.

use std::time::Duration;

use crate::traffic::TrafficConfig;

/// Which loops to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loops {
    Both,
    ParseOnly,
    EngineOnly,
}

/// Validated options of one run.
#[derive(Clone, Debug)]
pub struct Options {
    pub traffic: TrafficConfig,
    pub rounds: usize,
    pub round: Duration,
    pub loops: Loops,
}
