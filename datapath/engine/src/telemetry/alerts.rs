//! Alert rules, levels, the history of level changes, and the daemon's
//! alerts over the sum of every worker's counts.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::class::RstClass;

use super::window::{rate, Metric, SecondStats, RATE_WINDOW};

/// Alert events kept (oldest dropped).
pub const ALERT_HISTORY: usize = 256;
/// Seconds a rule must stay below its level before the level is lowered:
/// an attack that pauses for a second should not read as resolved.
pub const ALERT_HOLD_DOWN: u32 = 5;

crate::closed_enum! {
    /// Alert severity, in rising order.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum Level: "alert level" {
        Ok,
        Warning,
        Critical,
    }
}

/// An alert rule: the rate of `metric`, averaged over `window` seconds,
/// at or above `warn` is a warning, at or above `critical` critical.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    pub metric: Metric,
    pub warn: f64,
    pub critical: f64,
    /// Averaging window in whole seconds (1..=60).
    #[serde(default = "one")]
    pub window: u32,
}

fn one() -> u32 {
    1
}

impl AlertRule {
    fn new(name: &str, metric: Metric, warn: f64, critical: f64) -> AlertRule {
        AlertRule {
            name: name.into(),
            metric,
            warn,
            critical,
            window: 1,
        }
    }

    /// The rules an operator gets without configuring any.
    pub fn defaults() -> Vec<AlertRule> {
        vec![
            // The classic host alert: two failed connects a second.
            AlertRule::new("failed_connects", Metric::FailedConnects, 2.0, 20.0),
            // Any in-window RST that is not exact is a probe or an attack.
            AlertRule::new(
                "rst_in_window",
                Metric::RstClass(RstClass::InWindow),
                1.0,
                100.0,
            ),
            AlertRule::new(
                "rst_out_of_window",
                Metric::RstClass(RstClass::OutOfWindow),
                10.0,
                1000.0,
            ),
            AlertRule::new(
                "rst_syn_sent_bad_ack",
                Metric::RstClass(RstClass::SynSentBadAck),
                1.0,
                100.0,
            ),
            AlertRule::new(
                "rst_no_flow",
                Metric::RstClass(RstClass::NoFlow),
                50.0,
                1000.0,
            ),
            AlertRule::new(
                "rst_invalid_flags",
                Metric::RstClass(RstClass::InvalidFlags),
                1.0,
                100.0,
            ),
            AlertRule::new("rst_flood", Metric::Rst, 1000.0, 10000.0),
            AlertRule::new("syn_flood", Metric::Syn, 5000.0, 50000.0),
        ]
    }

    /// Check thresholds are sane; the error names the rule and field.
    pub fn validate(&self) -> Result<(), String> {
        let n = &self.name;
        if !(self.warn.is_finite() && self.warn > 0.0) {
            return Err(format!("alerts.{n}.warn: must be a positive number"));
        }
        if !(self.critical.is_finite() && self.critical >= self.warn) {
            return Err(format!(
                "alerts.{n}.critical: must be at least warn ({})",
                self.warn
            ));
        }
        if !(1..=RATE_WINDOW as u32).contains(&self.window) {
            return Err(format!(
                "alerts.{n}.window: must be 1..={RATE_WINDOW} seconds"
            ));
        }
        Ok(())
    }
}

/// A change of an alert's level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub rule: String,
    pub metric: String,
    pub level: Level,
    /// Unix second (end of the window) the level changed.
    pub at: u64,
    /// Rate that triggered it, per second.
    pub value: f64,
    /// Threshold it crossed (`warn` or `critical`; for `ok`, `warn`).
    pub threshold: f64,
}

/// An alert level change as recorded on the per-packet thread: plain
/// numbers, no strings, so recording never allocates. Names are attached
/// when a snapshot is taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct AlertRecord {
    pub(super) rule: usize,
    pub(super) level: Level,
    pub(super) at: u64,
    pub(super) value: f64,
    pub(super) threshold: f64,
}

/// Alert rules, their current levels and the history of level changes,
/// judged on a ring of per-second counts: one engine's own (offline
/// analysis, and each worker), or the sum of every worker's
/// ([`MergedAlerts`], the daemon's view).
#[derive(Clone, Debug)]
pub struct Alerts {
    rules: Vec<AlertRule>,
    levels: Vec<Level>,
    /// Consecutive seconds each rule has been below its current level.
    quiet: Vec<u32>,
    pub(super) history: VecDeque<AlertRecord>,
    /// Level changes ever (the history keeps the last [`ALERT_HISTORY`]).
    changes: u64,
}

impl Alerts {
    pub fn new(rules: Vec<AlertRule>) -> Alerts {
        let n = rules.len();
        Alerts {
            rules,
            levels: vec![Level::Ok; n],
            quiet: vec![0; n],
            history: VecDeque::with_capacity(ALERT_HISTORY),
            changes: 0,
        }
    }

    /// Level changes since the start (more than [`Alerts::events`] keeps).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    pub fn rules(&self) -> &[AlertRule] {
        &self.rules
    }

    /// Judge every rule at second `end` over `seconds` (a ring indexed by
    /// `second % RATE_WINDOW`; slots of other seconds count as zero).
    pub(super) fn evaluate(&mut self, seconds: &[SecondStats; RATE_WINDOW], end: u64) {
        for i in 0..self.rules.len() {
            let rule = &self.rules[i];
            let value = rate(seconds, rule.metric, end, rule.window);
            let level = if value >= rule.critical {
                Level::Critical
            } else if value >= rule.warn {
                Level::Warning
            } else {
                Level::Ok
            };
            if level >= self.levels[i] {
                self.quiet[i] = 0;
            } else {
                self.quiet[i] += 1;
                if self.quiet[i] < ALERT_HOLD_DOWN {
                    continue;
                }
                self.quiet[i] = 0;
            }
            if level != self.levels[i] {
                let threshold = match level {
                    Level::Critical => rule.critical,
                    _ => rule.warn,
                };
                if self.history.len() == ALERT_HISTORY {
                    self.history.pop_front();
                }
                self.history.push_back(AlertRecord {
                    rule: i,
                    level,
                    at: end,
                    value,
                    threshold,
                });
                self.changes += 1;
                self.levels[i] = level;
            }
        }
    }

    /// The rules above `ok` now.
    pub fn active(&self) -> Vec<ActiveAlert> {
        self.rules
            .iter()
            .zip(&self.levels)
            .filter(|(_, l)| **l != Level::Ok)
            .map(|(r, l)| ActiveAlert {
                rule: r.name.clone(),
                level: *l,
            })
            .collect()
    }

    /// Every level change kept, oldest first.
    pub fn events(&self) -> Vec<AlertEvent> {
        self.history
            .iter()
            .map(|a| {
                let rule = &self.rules[a.rule];
                AlertEvent {
                    rule: rule.name.clone(),
                    metric: rule.metric.name(),
                    level: a.level,
                    at: a.at,
                    value: a.value,
                    threshold: a.threshold,
                }
            })
            .collect()
    }
}

/// An alert currently above `ok`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub rule: String,
    pub level: Level,
}

/// The alert rules judged on the sum of several engines' per-second
/// counts: the daemon's alerts, whatever the number of workers. A worker
/// judges its own share only, which with N queues reaches a threshold at
/// about N times the rate; this is the one that counts.
///
/// Each worker hands over its latest completed seconds
/// ([`Telemetry::recent_seconds`](super::Telemetry::recent_seconds)); a second is judged once every worker
/// has moved past it (idle workers move their clock on too).
#[derive(Clone, Debug)]
pub struct MergedAlerts {
    seconds: [SecondStats; RATE_WINDOW],
    alerts: Alerts,
    /// The last second judged.
    judged: u64,
}

impl MergedAlerts {
    pub fn new(rules: Vec<AlertRule>) -> MergedAlerts {
        MergedAlerts {
            seconds: [SecondStats::default(); RATE_WINDOW],
            alerts: Alerts::new(rules),
            judged: 0,
        }
    }

    /// Judge the seconds every worker has completed. `workers` gives, per
    /// worker, its current (incomplete) second and its recent completed
    /// seconds; a worker with nothing for a second had no traffic in it.
    pub fn update<'a>(&mut self, workers: impl IntoIterator<Item = (u64, &'a [SecondStats])>) {
        let mut complete_before = u64::MAX;
        let mut parts: Vec<&[SecondStats]> = Vec::new();
        for (current, recent) in workers {
            complete_before = complete_before.min(current);
            parts.push(recent);
        }
        if parts.is_empty() || complete_before == u64::MAX || complete_before == 0 {
            return;
        }
        let last = complete_before - 1;
        if self.judged == 0 {
            // Start with the most recent complete second.
            self.judged = last.saturating_sub(1);
        }
        let first = (self.judged + 1).max(last.saturating_sub(RATE_WINDOW as u64 - 1));
        for second in first..=last {
            let mut sum = SecondStats {
                second,
                ..SecondStats::default()
            };
            for recent in &parts {
                if let Some(s) = recent.iter().find(|s| s.second == second) {
                    sum.add(s);
                }
            }
            self.seconds[(second % RATE_WINDOW as u64) as usize] = sum;
            self.alerts.evaluate(&self.seconds, second);
            self.judged = second;
        }
    }

    pub fn alerts(&self) -> &Alerts {
        &self.alerts
    }

    /// The merged per-second counts kept, oldest first.
    pub fn seconds(&self) -> Vec<SecondStats> {
        let mut v: Vec<SecondStats> = self
            .seconds
            .iter()
            .filter(|s| s.second != 0)
            .copied()
            .collect();
        v.sort_by_key(|s| s.second);
        v
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn rule() -> AlertRule {
        AlertRule::new("failed", Metric::FailedConnects, 2.0, 10.0)
    }

    #[test]
    fn level_names() {
        crate::names::assert_consistent::<Level>();
        assert!(Level::Ok < Level::Warning && Level::Warning < Level::Critical);
    }

    #[test]
    fn default_rules_validate() {
        for r in AlertRule::defaults() {
            r.validate().unwrap();
        }
        let mut bad = rule();
        bad.critical = 1.0;
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("alerts.failed.critical"));
    }
}
