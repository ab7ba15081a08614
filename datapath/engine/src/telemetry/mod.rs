//! What the engine counts: packets by TCP flag class, RSTs by class and
//! verdict, per-host and per-port opens/closes/resets (what `netstat -s`
//! shows as one number per machine), per-second rates over a sliding
//! window, and alert rules with warn and critical thresholds.
//!
//! Everything here is bounded and preallocated: per-host and per-port
//! tables are [`BoundedTable`](crate::table::BoundedTable)s (least recently active evicted), the rate
//! window is a fixed ring, alert history a fixed-size ring. Recording a
//! packet never allocates. Reports are built from a [`Snapshot`], which does.
//!
//! * [`Counters`], [`ClassCounts`] — the global counters, and one RST
//!   class's of them by name (`counters`);
//! * [`HostStats`], [`PortStats`] — what the per-host and per-port tables
//!   hold (`hosts`);
//! * [`SecondStats`], [`Metric`] — the per-second window and its rates
//!   (`window`);
//! * [`AlertRule`], [`Level`], [`Alerts`], [`MergedAlerts`] — alerting
//!   (`alerts`);
//! * [`Telemetry`] — one engine's telemetry, recording each packet
//!   (`record`);
//! * [`Snapshot`] — the serializable copy reports are built from, and the
//!   merge of several engines' (`snapshot`).

mod alerts;
mod counters;
mod hosts;
mod record;
mod snapshot;
mod window;

pub use alerts::{
    ActiveAlert, AlertEvent, AlertRule, Alerts, Level, MergedAlerts, ALERT_HISTORY, ALERT_HOLD_DOWN,
};
pub use counters::{ClassCounts, Counters};
pub use hosts::{HostStats, PortStats};
pub use record::{HostHashes, Telemetry, TelemetryConfig};
pub use snapshot::{ClassCount, ClassTop, HostRow, Snapshot, TopEntry};
pub use window::{Metric, SecondStats, RATE_WINDOW};
