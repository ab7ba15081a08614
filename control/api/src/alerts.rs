//! `GET /v1/alerts`: the daemon's alerts, judged on all workers together.

use rstwall_engine::telemetry::{ActiveAlert, AlertEvent, AlertRule};
use serde::{Deserialize, Serialize};

/// The alerts document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alerts {
    /// Alerts above `ok` now.
    pub active: Vec<ActiveAlert>,
    /// Every level change kept, oldest first.
    pub history: Vec<AlertEvent>,
    pub rules: Vec<Rule>,
}

/// An alert rule as the document shows it: its metric by the name level
/// changes give it (`failed_connects_per_second`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub metric: String,
    pub warn: f64,
    pub critical: f64,
    /// Averaging window, in seconds.
    pub window: u32,
}

impl From<&AlertRule> for Rule {
    fn from(r: &AlertRule) -> Rule {
        Rule {
            name: r.name.clone(),
            metric: r.metric.name(),
            warn: r.warn,
            critical: r.critical,
            window: r.window,
        }
    }
}
