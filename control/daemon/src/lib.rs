//! `rstwall run`: the appliance daemon.
//!
//! * [`flags`] and [`config`] — the command line and the config file,
//!   merged and checked into [`run::Settings`];
//! * [`run`] — start-up, the main loop, shutdown;
//! * [`server`] — the control API on its Unix socket;
//! * [`metrics`] — the Prometheus endpoint;
//! * [`persist`] and [`blocks`] — what survives a restart.

pub mod blocks;
pub mod config;
pub mod flags;
pub mod metrics;
pub mod persist;
pub mod run;
pub mod server;

pub use flags::Flags;
pub use run::{run, Settings};
