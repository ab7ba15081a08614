//! `rstwall run`: the appliance daemon.
//!
//! * [`flags`] and [`config`] — the command line and the config file,
//!   merged and checked into [`Settings`] ([`settings`]);
//! * [`mod@run`] — start-up, the main loop, shutdown; [`signals`] — what stops
//!   and reloads it;
//! * [`source`] — the frame sources it runs, one module each (AF_XDP:
//!   [`source::afxdp`]): starting them with their kernel side, keeping
//!   that in step with the policy, stopping them;
//! * [`control`] — the control-plane state: policy versions, operator
//!   blocks, reloads, the control API's requests and the status document;
//! * [`monitor`] — the workers' statistics: alerts, the stats line, the
//!   statistics document, the metrics' snapshot;
//! * [`server`] — the control API on its Unix socket;
//! * [`metrics`] — the Prometheus endpoint;
//! * [`export`] — the fleet exporter (`[export.nats]`, `rstwall-export`);
//! * [`persist`] and [`blocks`] — what survives a restart.

pub mod blocks;
pub mod config;
pub mod control;
pub mod export;
pub mod flags;
pub mod metrics;
pub mod monitor;
pub mod persist;
pub mod run;
pub mod server;
pub mod settings;
pub mod signals;
pub mod source;

pub use flags::Flags;
pub use run::run;
pub use settings::Settings;
