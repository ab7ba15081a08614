//! What the engine counts: packets by TCP flag class, RSTs by class and
//! verdict, per-host and per-port opens/closes/resets (what `netstat -s`
//! shows as one number per machine), per-second rates over a sliding
//! window, and alert rules with warn and critical thresholds.
//!
//! Everything here is bounded and preallocated: per-host and per-port
//! tables are [`BoundedTable`]s (least recently active evicted), the rate
//! window is a fixed ring, alert history a fixed-size ring. Recording a
//! packet never allocates. Reports are built from a [`Snapshot`], which does.

use std::collections::VecDeque;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::class::{FlagClass, RstClass};
use crate::flow::{FlowStats, Packet, RstJudgment};
use crate::policy::{Decision, Reason, Verdict};
use crate::table::BoundedTable;
use crate::wire::{NotTcp, ParseError, TcpFlags};

/// Seconds of per-second history kept.
pub const RATE_WINDOW: usize = 60;
/// Alert events kept (oldest dropped).
pub const ALERT_HISTORY: usize = 256;
/// Seconds a rule must stay below its level before the level is lowered:
/// an attack that pauses for a second should not read as resolved.
pub const ALERT_HOLD_DOWN: u32 = 5;

/// Global counters. Plain integers: each worker owns its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub frames: u64,
    pub bytes: u64,
    /// Frames of a link type we do not read.
    pub unsupported_link: u64,
    pub parse_errors: [u64; ParseError::COUNT],
    pub not_tcp: [u64; NotTcp::COUNT],
    /// TCP segments (at least the flags byte captured).
    pub tcp: u64,
    /// Exclusive classes, as the XDP program counts them.
    pub flag_classes: [u64; FlagClass::COUNT],
    /// Flag bits, as `netstat`/tshark count them (overlapping).
    pub syn: u64,
    pub synack: u64,
    pub fin: u64,
    pub rst: u64,
    pub rstack: u64,
    /// RSTs by class and verdict (`[class][0=pass,1=drop]`).
    pub rst_classes: [[u64; 2]; RstClass::COUNT],
    pub rst_with_data: [u64; RstClass::COUNT],
    /// RSTs by class that enforce mode drops (or would drop, in monitor mode).
    pub rst_would_drop: [u64; RstClass::COUNT],
    /// SYNs answered by a RST (`refused`): netstat's "failed connection attempts".
    pub failed_connects: u64,
    /// Policy decisions by reason.
    pub reasons: [u64; Reason::COUNT],
    /// Packets enforce mode would have dropped (counted in monitor mode too).
    pub would_drop: u64,
    pub passed: u64,
    pub dropped: u64,
}

impl Counters {
    pub fn rst_total(&self, class: RstClass) -> u64 {
        let [p, d] = self.rst_classes[class.index()];
        p + d
    }

    pub fn merge(&mut self, o: &Counters) {
        fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.unsupported_link += o.unsupported_link;
        add(&mut self.parse_errors, &o.parse_errors);
        add(&mut self.not_tcp, &o.not_tcp);
        self.tcp += o.tcp;
        add(&mut self.flag_classes, &o.flag_classes);
        self.syn += o.syn;
        self.synack += o.synack;
        self.fin += o.fin;
        self.rst += o.rst;
        self.rstack += o.rstack;
        for (a, b) in self.rst_classes.iter_mut().zip(&o.rst_classes) {
            add(a, b);
        }
        add(&mut self.rst_with_data, &o.rst_with_data);
        add(&mut self.rst_would_drop, &o.rst_would_drop);
        self.failed_connects += o.failed_connects;
        add(&mut self.reasons, &o.reasons);
        self.would_drop += o.would_drop;
        self.passed += o.passed;
        self.dropped += o.dropped;
    }
}

/// Per host, by direction: what `netstat -s` shows for the whole machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStats {
    /// SYNs sent: active opens.
    pub syn_sent: u64,
    pub syn_received: u64,
    /// SYN-ACKs sent: passive opens.
    pub synack_sent: u64,
    pub synack_received: u64,
    pub fin_sent: u64,
    pub fin_received: u64,
    pub rst_sent: u64,
    pub rst_received: u64,
    /// This host's connection attempts refused (its SYN answered by RST).
    pub failed_connects: u64,
    /// Connection attempts this host refused.
    pub refused: u64,
    /// RSTs this host sent, by class.
    pub rst_sent_by_class: [u64; RstClass::COUNT],
}

/// Per service port (the responder's port where the handshake showed it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    /// SYNs aimed at this port.
    pub syn: u64,
    /// Connection attempts to this port refused.
    pub refused: u64,
    pub rst_by_class: [u64; RstClass::COUNT],
}

/// Counts for one second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondStats {
    /// Unix second these counts belong to.
    pub second: u64,
    pub packets: u64,
    pub syn: u64,
    pub synack: u64,
    pub fin: u64,
    pub rst: u64,
    pub rst_by_class: [u64; RstClass::COUNT],
    pub failed_connects: u64,
    pub dropped: u64,
}

impl SecondStats {
    /// Add another engine's counts of the same second.
    pub fn add(&mut self, o: &SecondStats) {
        self.packets += o.packets;
        self.syn += o.syn;
        self.synack += o.synack;
        self.fin += o.fin;
        self.rst += o.rst;
        for (a, b) in self.rst_by_class.iter_mut().zip(o.rst_by_class) {
            *a += b;
        }
        self.failed_connects += o.failed_connects;
        self.dropped += o.dropped;
    }
}

/// A per-second quantity an alert rule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// SYNs answered by RST per second.
    FailedConnects,
    /// All RSTs per second.
    Rst,
    /// RSTs of one class per second.
    RstClass(RstClass),
    /// SYNs per second.
    Syn,
    /// Packets dropped by policy per second.
    Dropped,
}

impl Metric {
    fn value(self, s: &SecondStats) -> u64 {
        match self {
            Metric::FailedConnects => s.failed_connects,
            Metric::Rst => s.rst,
            Metric::RstClass(c) => s.rst_by_class[c.index()],
            Metric::Syn => s.syn,
            Metric::Dropped => s.dropped,
        }
    }

    pub fn name(self) -> String {
        match self {
            Metric::FailedConnects => "failed_connects_per_second".into(),
            Metric::Rst => "rst_per_second".into(),
            Metric::RstClass(c) => format!("rst_{}_per_second", c.as_str()),
            Metric::Syn => "syn_per_second".into(),
            Metric::Dropped => "dropped_per_second".into(),
        }
    }
}

crate::closed_enum! {
    /// Alert severity, in rising order.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum Level: "alert level" {
        Ok = "ok",
        Warning = "warning",
        Critical = "critical",
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
struct AlertRecord {
    rule: usize,
    level: Level,
    at: u64,
    value: f64,
    threshold: f64,
}

/// Sizes of the bounded telemetry tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub hosts: usize,
    pub ports: usize,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            hosts: 65_536,
            ports: 16_384,
        }
    }
}

/// Where a segment's two hosts sit in the host table (their hashes), for
/// segments with SYN, FIN or RST, the ones counted per host: computed when
/// a batch is parsed so the entries can be fetched before they are used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostHashes {
    src: u64,
    dst: u64,
}

/// One engine's telemetry.
pub struct Telemetry {
    pub counters: Counters,
    hosts: BoundedTable<IpAddr, HostStats, 1>,
    ports: BoundedTable<u16, PortStats, 1>,
    seconds: [SecondStats; RATE_WINDOW],
    current: u64,
    /// `current % RATE_WINDOW`, kept so the per-packet path never divides.
    current_slot: usize,
    alerts: Alerts,
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
    history: VecDeque<AlertRecord>,
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
    fn evaluate(&mut self, seconds: &[SecondStats; RATE_WINDOW], end: u64) {
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

/// The rate of `metric` over the `window` seconds ending at `end`.
fn rate(seconds: &[SecondStats; RATE_WINDOW], metric: Metric, end: u64, window: u32) -> f64 {
    let mut sum = 0;
    for s in end.saturating_sub(window as u64 - 1)..=end {
        let slot = &seconds[(s % RATE_WINDOW as u64) as usize];
        if slot.second == s {
            sum += metric.value(slot);
        }
    }
    sum as f64 / window as f64
}

/// The alert rules judged on the sum of several engines' per-second
/// counts: the daemon's alerts, whatever the number of workers. A worker
/// judges its own share only, which with N queues reaches a threshold at
/// about N times the rate; this is the one that counts.
///
/// Each worker hands over its latest completed seconds
/// ([`Telemetry::recent_seconds`]); a second is judged once every worker
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

impl Telemetry {
    pub fn new(cfg: &TelemetryConfig, rules: Vec<AlertRule>) -> Telemetry {
        Telemetry {
            counters: Counters::default(),
            hosts: BoundedTable::with_capacity(cfg.hosts),
            ports: BoundedTable::with_capacity(cfg.ports),
            seconds: [SecondStats::default(); RATE_WINDOW],
            current: 0,
            current_slot: 0,
            alerts: Alerts::new(rules),
        }
    }

    /// Move the clock to `second`. Completed seconds are closed and alert
    /// rules evaluated on them. Called once per batch, not per packet.
    pub fn tick(&mut self, second: u64) {
        if second == self.current {
            return;
        }
        if second < self.current {
            // The engine keeps time monotonic; a stale tick is ignored.
            return;
        }
        if self.current != 0 {
            // Evaluate each completed second up to (not including) `second`,
            // but no more than the window: longer gaps were silent.
            let first = (self.current).max(second.saturating_sub(RATE_WINDOW as u64));
            for s in first..second {
                self.slot_for(s);
                self.alerts.evaluate(&self.seconds, s);
            }
        }
        self.current = second;
        self.current_slot = (second % RATE_WINDOW as u64) as usize;
        self.slot_for(second);
    }

    /// Evaluate the alert rules over the current (possibly incomplete)
    /// second too — for the end of an offline analysis. Raises only: a
    /// partial second says nothing about an alert being over.
    pub fn finish(&mut self) {
        if self.current != 0 {
            self.alerts.evaluate(&self.seconds, self.current);
        }
    }

    fn slot_for(&mut self, second: u64) -> &mut SecondStats {
        let slot = &mut self.seconds[(second % RATE_WINDOW as u64) as usize];
        if slot.second != second {
            *slot = SecondStats {
                second,
                ..SecondStats::default()
            };
        }
        slot
    }

    /// The current (incomplete) second, and the completed seconds of the
    /// last `n` with traffic, oldest first: what a worker hands the
    /// daemon's [`MergedAlerts`].
    pub fn recent_seconds(&self, n: usize) -> (u64, Vec<SecondStats>) {
        let mut v: Vec<SecondStats> = self
            .seconds
            .iter()
            .filter(|s| {
                s.second != 0 && s.second < self.current && s.second + n as u64 >= self.current
            })
            .copied()
            .collect();
        v.sort_by_key(|s| s.second);
        (self.current, v)
    }

    /// True if [`Self::record_tcp`] looks `p`'s hosts up (SYN, FIN, RST).
    #[inline]
    pub fn counts_hosts(p: &Packet) -> bool {
        p.hdr.flags.0 & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) != 0
    }

    /// The host-table hashes of `p`'s hosts (see [`HostHashes`]).
    #[inline]
    pub fn host_hashes(&self, p: &Packet) -> HostHashes {
        HostHashes {
            src: self.hosts.hash_of(&p.src()),
            dst: self.hosts.hash_of(&p.dst()),
        }
    }

    /// Ask the CPU to fetch the host-table slots of both hosts.
    #[inline]
    pub fn prefetch_host_slots(&self, h: &HostHashes) {
        self.hosts.prefetch_slot(h.src);
        self.hosts.prefetch_slot(h.dst);
    }

    /// Ask the CPU to fetch both hosts' entries (reads their slots: call
    /// once [`Self::prefetch_host_slots`] had time to land).
    #[inline]
    pub fn prefetch_host_entries(&self, h: &HostHashes, now: u32) {
        self.hosts.prefetch_entry(h.src, now);
        self.hosts.prefetch_entry(h.dst, now);
    }

    #[inline]
    pub fn record_untracked(&mut self, len: usize) {
        self.counters.frames += 1;
        self.counters.bytes += len as u64;
        self.seconds_current().packets += 1;
    }

    #[inline]
    fn seconds_current(&mut self) -> &mut SecondStats {
        &mut self.seconds[self.current_slot]
    }

    /// Count one TCP segment with what tracking and policy made of it.
    /// `hosts` must be [`Self::host_hashes`] of `p` if
    /// [`Self::counts_hosts`] says `p`'s hosts are counted.
    #[inline]
    pub fn record_tcp(
        &mut self,
        p: &Packet,
        hosts: &HostHashes,
        rst: Option<&RstJudgment>,
        decision: Decision,
        now: u32,
    ) {
        let c = &mut self.counters;
        c.tcp += 1;
        c.reasons[decision.reason.index()] += 1;
        c.would_drop += decision.would_drop() as u64;
        let dropped = decision.verdict == Verdict::Drop;
        c.dropped += dropped as u64;
        c.passed += !dropped as u64;
        if p.hdr.flags.0 & (TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST) == 0 {
            // A plain ACK or data segment (most of the traffic): of the
            // flag counts only its class moves (one increment, not three
            // places); no per-second flag count, no host or port, no RST.
            c.flag_classes[FlagClass::Other.index()] += 1;
            self.seconds[self.current_slot].dropped += dropped as u64;
            return;
        }
        self.record_flags(p, hosts, rst, dropped, decision.would_drop(), now);
    }

    /// [`Self::record_tcp`] for a segment that is not a RST and was passed
    /// for [`Reason::NotRst`] (the engine's common case: see
    /// [`crate::policy::Policy::no_lists`]). Same `hosts` contract.
    #[inline]
    pub fn record_tcp_not_rst(&mut self, p: &Packet, hosts: &HostHashes, now: u32) {
        let c = &mut self.counters;
        c.tcp += 1;
        c.reasons[Reason::NotRst.index()] += 1;
        c.passed += 1;
        if p.hdr.flags.0 & (TcpFlags::SYN | TcpFlags::FIN) == 0 {
            c.flag_classes[FlagClass::Other.index()] += 1;
        } else {
            self.record_flags(p, hosts, None, false, false, now);
        }
    }

    /// The rest of [`Self::record_tcp`], for segments with SYN, FIN or RST.
    #[inline(never)]
    fn record_flags(
        &mut self,
        p: &Packet,
        hosts: &HostHashes,
        rst: Option<&RstJudgment>,
        dropped: bool,
        would_drop: bool,
        now: u32,
    ) {
        let c = &mut self.counters;
        let f = p.hdr.flags;
        c.flag_classes[FlagClass::of(f).index()] += 1;
        let syn = f.syn() && !f.ack();
        let synack = f.syn() && f.ack();
        c.syn += syn as u64;
        c.synack += synack as u64;
        c.fin += f.fin() as u64;
        c.rst += f.rst() as u64;
        c.rstack += (f.rst() && f.ack()) as u64;
        let refused = rst.is_some_and(|r| r.class == RstClass::Refused);
        if let Some(r) = rst {
            c.rst_classes[r.class.index()][dropped as usize] += 1;
            c.rst_with_data[r.class.index()] += r.with_data as u64;
            c.rst_would_drop[r.class.index()] += would_drop as u64;
            c.failed_connects += refused as u64;
        }

        let s = self.seconds_current();
        s.syn += syn as u64;
        s.synack += synack as u64;
        s.fin += f.fin() as u64;
        s.rst += f.rst() as u64;
        s.dropped += dropped as u64;
        if let Some(r) = rst {
            s.rst_by_class[r.class.index()] += 1;
            s.failed_connects += refused as u64;
        }

        // Per host and per port only for the packets netstat counts (those
        // with SYN, FIN or RST): everything else would cost two lookups
        // for nothing.
        debug_assert_eq!(*hosts, self.host_hashes(p));
        if let Some(h) = self.host(hosts.src, p.src(), now) {
            h.syn_sent += syn as u64;
            h.synack_sent += synack as u64;
            h.fin_sent += f.fin() as u64;
            if let Some(r) = rst {
                h.rst_sent += 1;
                h.rst_sent_by_class[r.class.index()] += 1;
                h.refused += refused as u64;
            }
        }
        if let Some(h) = self.host(hosts.dst, p.dst(), now) {
            h.syn_received += syn as u64;
            h.synack_received += synack as u64;
            h.fin_received += f.fin() as u64;
            h.rst_received += rst.is_some() as u64;
            h.failed_connects += refused as u64;
        }
        let port = match rst {
            Some(r) => Some(r.service_port),
            None if syn => Some(p.dst_port()),
            None => None,
        };
        if let Some(port) = port {
            let p = match self.ports.get_or_insert(port, now, 0, PortStats::default) {
                crate::table::Insert::Found(p) => p,
                crate::table::Insert::Inserted { value, .. } => value,
            };
            p.syn += syn as u64;
            if let Some(r) = rst {
                p.rst_by_class[r.class.index()] += 1;
                p.refused += refused as u64;
            }
        }
    }

    #[inline]
    fn host(&mut self, hash: u64, addr: IpAddr, now: u32) -> Option<&mut HostStats> {
        match self
            .hosts
            .get_or_insert_hashed(hash, addr, now, 0, HostStats::default)
        {
            crate::table::Insert::Found(h) => Some(h),
            crate::table::Insert::Inserted { value, .. } => Some(value),
        }
    }

    /// A serializable copy of everything, for reports and the control plane.
    pub fn snapshot(&self, flows: FlowStats, active_flows: usize, top: usize) -> Snapshot {
        let hosts: Vec<(IpAddr, HostStats)> =
            self.hosts.iter().map(|(k, v, _, _)| (*k, *v)).collect();
        let ports: Vec<(u16, PortStats)> = self.ports.iter().map(|(k, v, _, _)| (*k, *v)).collect();
        let mut seconds: Vec<SecondStats> = self
            .seconds
            .iter()
            .filter(|s| s.second != 0 && s.second + RATE_WINDOW as u64 > self.current)
            .copied()
            .collect();
        seconds.sort_by_key(|s| s.second);
        Snapshot::build(SnapshotParts {
            counters: self.counters,
            flows,
            active_flows,
            hosts,
            ports,
            seconds,
            alerts: self.alerts.events(),
            active_alerts: self.alerts.active(),
            top,
        })
    }
}

/// An alert currently above `ok`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub rule: String,
    pub level: Level,
}

/// One row of a top list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopEntry<K> {
    pub key: K,
    pub count: u64,
}

/// Top sources and ports for one RST class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassTop {
    pub class: RstClass,
    pub sources: Vec<TopEntry<IpAddr>>,
    pub ports: Vec<TopEntry<u16>>,
}

/// Per-class summary row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassCount {
    pub class: RstClass,
    pub total: u64,
    pub passed: u64,
    pub dropped: u64,
    /// Dropped under enforce, or would be in monitor mode.
    pub would_drop: u64,
    pub with_data: u64,
}

/// Everything a report or the control plane shows, in serializable form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub counters: Counters,
    pub rst_classes: Vec<ClassCount>,
    pub flows: FlowStats,
    pub active_flows: usize,
    pub top_by_class: Vec<ClassTop>,
    /// Hosts whose connection attempts were refused most.
    pub top_failed_clients: Vec<TopEntry<IpAddr>>,
    /// Hosts that sent the most RSTs.
    pub top_rst_senders: Vec<TopEntry<IpAddr>>,
    /// The most active hosts (by SYN, FIN and RST counts).
    pub hosts: Vec<HostRow>,
    pub seconds: Vec<SecondStats>,
    pub alerts: Vec<AlertEvent>,
    pub active_alerts: Vec<ActiveAlert>,
}

/// Per-host row in a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRow {
    pub host: IpAddr,
    #[serde(flatten)]
    pub stats: HostStats,
}

struct SnapshotParts {
    counters: Counters,
    flows: FlowStats,
    active_flows: usize,
    hosts: Vec<(IpAddr, HostStats)>,
    ports: Vec<(u16, PortStats)>,
    seconds: Vec<SecondStats>,
    alerts: Vec<AlertEvent>,
    active_alerts: Vec<ActiveAlert>,
    top: usize,
}

fn top_n<K: Clone + Ord>(items: impl Iterator<Item = (K, u64)>, n: usize) -> Vec<TopEntry<K>> {
    let mut v: Vec<(K, u64)> = items.filter(|(_, c)| *c > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v.into_iter()
        .map(|(key, count)| TopEntry { key, count })
        .collect()
}

impl Snapshot {
    fn build(p: SnapshotParts) -> Snapshot {
        let rst_classes = RstClass::ALL
            .iter()
            .map(|&class| {
                let [passed, dropped] = p.counters.rst_classes[class.index()];
                ClassCount {
                    class,
                    total: passed + dropped,
                    passed,
                    dropped,
                    would_drop: p.counters.rst_would_drop[class.index()],
                    with_data: p.counters.rst_with_data[class.index()],
                }
            })
            .collect();
        let top_by_class = RstClass::ALL
            .iter()
            .map(|&class| ClassTop {
                class,
                sources: top_n(
                    p.hosts
                        .iter()
                        .map(|(h, s)| (*h, s.rst_sent_by_class[class.index()])),
                    p.top,
                ),
                ports: top_n(
                    p.ports
                        .iter()
                        .map(|(port, s)| (*port, s.rst_by_class[class.index()])),
                    p.top,
                ),
            })
            .filter(|t| !t.sources.is_empty() || !t.ports.is_empty())
            .collect();
        let top_failed_clients = top_n(p.hosts.iter().map(|(h, s)| (*h, s.failed_connects)), p.top);
        let top_rst_senders = top_n(p.hosts.iter().map(|(h, s)| (*h, s.rst_sent)), p.top);
        let activity =
            |s: &HostStats| s.rst_sent + s.rst_received + s.syn_sent + s.syn_received + s.fin_sent;
        let mut hosts: Vec<HostRow> = p
            .hosts
            .into_iter()
            .map(|(host, stats)| HostRow { host, stats })
            .collect();
        hosts.sort_by(|a, b| {
            activity(&b.stats)
                .cmp(&activity(&a.stats))
                .then_with(|| a.host.cmp(&b.host))
        });
        hosts.truncate(p.top);
        Snapshot {
            counters: p.counters,
            rst_classes,
            flows: p.flows,
            active_flows: p.active_flows,
            top_by_class,
            top_failed_clients,
            top_rst_senders,
            hosts,
            seconds: p.seconds,
            alerts: p.alerts,
            active_alerts: p.active_alerts,
        }
    }

    /// One snapshot for several engines (the AF_XDP workers, each with
    /// its share of the flows): counters and per-second counts summed, top
    /// lists merged by key and cut to `top` rows, alert histories joined
    /// in time order, each active alert at its highest level. A host or
    /// port whose flows spread over several workers is summed over them;
    /// one that fell off a worker's top list is missing from that
    /// worker's share, so with several workers the lists are a close
    /// lower bound, not exact.
    pub fn merge(parts: Vec<Snapshot>, top: usize) -> Snapshot {
        use std::collections::BTreeMap;
        fn sum_top<K: Clone + Ord>(lists: Vec<Vec<TopEntry<K>>>, top: usize) -> Vec<TopEntry<K>> {
            let mut m: BTreeMap<K, u64> = BTreeMap::new();
            for e in lists.into_iter().flatten() {
                *m.entry(e.key).or_default() += e.count;
            }
            top_n(m.into_iter(), top)
        }
        if parts.len() == 1 {
            return parts.into_iter().next().expect("one part");
        }
        let mut counters = Counters::default();
        let mut flows = FlowStats::default();
        let mut active_flows = 0;
        type Lists = (Vec<Vec<TopEntry<IpAddr>>>, Vec<Vec<TopEntry<u16>>>);
        let mut by_class: BTreeMap<RstClass, Lists> = BTreeMap::new();
        let (mut failed, mut senders) = (Vec::new(), Vec::new());
        let mut hosts: BTreeMap<IpAddr, HostStats> = BTreeMap::new();
        let mut seconds: BTreeMap<u64, SecondStats> = BTreeMap::new();
        let mut alerts = Vec::new();
        let mut active: BTreeMap<String, Level> = BTreeMap::new();
        for p in parts {
            counters.merge(&p.counters);
            flows.created += p.flows.created;
            flows.expired += p.flows.expired;
            flows.evicted += p.flows.evicted;
            flows.table_full += p.flows.table_full;
            active_flows += p.active_flows;
            for t in p.top_by_class {
                let e = by_class.entry(t.class).or_default();
                e.0.push(t.sources);
                e.1.push(t.ports);
            }
            failed.push(p.top_failed_clients);
            senders.push(p.top_rst_senders);
            for h in p.hosts {
                let e = hosts.entry(h.host).or_default();
                let s = &h.stats;
                e.syn_sent += s.syn_sent;
                e.syn_received += s.syn_received;
                e.synack_sent += s.synack_sent;
                e.synack_received += s.synack_received;
                e.fin_sent += s.fin_sent;
                e.fin_received += s.fin_received;
                e.rst_sent += s.rst_sent;
                e.rst_received += s.rst_received;
                e.failed_connects += s.failed_connects;
                e.refused += s.refused;
                for (a, b) in e.rst_sent_by_class.iter_mut().zip(s.rst_sent_by_class) {
                    *a += b;
                }
            }
            for sec in p.seconds {
                seconds
                    .entry(sec.second)
                    .or_insert(SecondStats {
                        second: sec.second,
                        ..SecondStats::default()
                    })
                    .add(&sec);
            }
            alerts.extend(p.alerts);
            for a in p.active_alerts {
                let e = active.entry(a.rule).or_insert(a.level);
                *e = (*e).max(a.level);
            }
        }
        alerts.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.rule.cmp(&b.rule)));
        let activity =
            |s: &HostStats| s.rst_sent + s.rst_received + s.syn_sent + s.syn_received + s.fin_sent;
        let mut host_rows: Vec<HostRow> = hosts
            .into_iter()
            .map(|(host, stats)| HostRow { host, stats })
            .collect();
        host_rows.sort_by(|a, b| {
            activity(&b.stats)
                .cmp(&activity(&a.stats))
                .then_with(|| a.host.cmp(&b.host))
        });
        host_rows.truncate(top);
        let mut merged = Snapshot::build(SnapshotParts {
            counters,
            flows,
            active_flows,
            hosts: Vec::new(),
            ports: Vec::new(),
            seconds: seconds.into_values().collect(),
            alerts,
            active_alerts: active
                .into_iter()
                .map(|(rule, level)| ActiveAlert { rule, level })
                .collect(),
            top,
        });
        merged.top_by_class = by_class
            .into_iter()
            .map(|(class, (sources, ports))| ClassTop {
                class,
                sources: sum_top(sources, top),
                ports: sum_top(ports, top),
            })
            .collect();
        merged.top_failed_clients = sum_top(failed, top);
        merged.top_rst_senders = sum_top(senders, top);
        merged.hosts = host_rows;
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> AlertRule {
        AlertRule::new("failed", Metric::FailedConnects, 2.0, 10.0)
    }

    fn failed_at(t: &mut Telemetry, second: u64, n: u64) {
        t.tick(second);
        t.seconds_current().failed_connects += n;
    }

    #[test]
    fn alerts_rise_at_once_and_clear_after_hold_down() {
        let mut t = Telemetry::new(&TelemetryConfig::default(), vec![rule()]);
        failed_at(&mut t, 100, 3); // warning
        failed_at(&mut t, 101, 12); // critical
        failed_at(&mut t, 102, 0);
        for s in 103..=101 + ALERT_HOLD_DOWN as u64 {
            failed_at(&mut t, s, 0);
        }
        let levels: Vec<(u64, Level)> = t.alerts.history.iter().map(|a| (a.at, a.level)).collect();
        assert_eq!(levels, vec![(100, Level::Warning), (101, Level::Critical)]);
        // A one-second pause does not clear it; five quiet seconds do.
        failed_at(&mut t, 102 + ALERT_HOLD_DOWN as u64, 0);
        let last = t.alerts.history.back().unwrap();
        assert_eq!(
            (last.level, last.at),
            (Level::Ok, 101 + ALERT_HOLD_DOWN as u64)
        );
        assert_eq!(last.threshold, 2.0);
    }

    #[test]
    fn rates_average_over_the_window() {
        let mut r = rule();
        r.window = 4;
        let mut t = Telemetry::new(&TelemetryConfig::default(), vec![r]);
        for s in 10..14 {
            failed_at(&mut t, s, 2);
        }
        t.finish();
        assert_eq!(t.alerts.history.len(), 1);
        assert_eq!(t.alerts.history[0].value, 2.0);
        // A gap longer than the ring leaves no stale counts behind.
        t.tick(10 + 10 * RATE_WINDOW as u64);
        assert_eq!(rate(&t.seconds, Metric::FailedConnects, t.current, 4), 0.0);
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

    /// Two workers each under a rule's threshold, together over it: the
    /// merged alerts fire, each worker's own do not; a second is judged
    /// only once every worker has finished it.
    #[test]
    fn merged_alerts_judge_the_sum_of_the_workers() {
        let rules = vec![rule()]; // failed connects: warn 2/s, critical 10/s
        let (mut a, mut b) = (
            Telemetry::new(&TelemetryConfig::default(), rules.clone()),
            Telemetry::new(&TelemetryConfig::default(), rules.clone()),
        );
        let mut merged = MergedAlerts::new(rules);
        let update = |merged: &mut MergedAlerts, a: &Telemetry, b: &Telemetry| {
            let (ca, ra) = a.recent_seconds(5);
            let (cb, rb) = b.recent_seconds(5);
            merged.update([(ca, ra.as_slice()), (cb, rb.as_slice())]);
        };
        failed_at(&mut a, 100, 1);
        failed_at(&mut b, 100, 1);
        update(&mut merged, &a, &b);
        // a moves on to 101, b is still in 100: 100 is not judged yet.
        failed_at(&mut a, 101, 1);
        update(&mut merged, &a, &b);
        assert!(merged.alerts().events().is_empty());
        failed_at(&mut b, 101, 1);
        for second in 102..104 {
            failed_at(&mut a, second, 1);
            failed_at(&mut b, second, 1);
            update(&mut merged, &a, &b);
        }
        assert!(a.alerts.active().is_empty() && b.alerts.active().is_empty());
        let events = merged.alerts().events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!((events[0].at, events[0].level), (100, Level::Warning));
        assert_eq!(events[0].value, 2.0);
        assert_eq!(merged.alerts().active()[0].rule, "failed");
        let judged: Vec<(u64, u64)> = merged
            .seconds()
            .iter()
            .map(|s| (s.second, s.failed_connects))
            .collect();
        assert_eq!(judged, vec![(99, 0), (100, 2), (101, 2), (102, 2)]);
        // Workers that moved on without traffic hold nothing back, and
        // the quiet seconds clear the alert after the hold-down.
        failed_at(&mut a, 110, 0);
        failed_at(&mut b, 110, 0);
        update(&mut merged, &a, &b);
        assert!(merged.alerts().active().is_empty());
    }
}
