//! One engine's telemetry: what recording a packet touches.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::class::{FlagClass, RstClass};
use crate::flow::{FlowStats, Packet, RstJudgment};
use crate::policy::{Decision, Reason, Verdict};
use crate::table::BoundedTable;
use crate::wire::TcpFlags;

use super::alerts::{AlertRule, Alerts};
use super::counters::Counters;
use super::hosts::{HostStats, PortStats};
use super::snapshot::{Snapshot, SnapshotParts};
use super::window::{SecondStats, RATE_WINDOW};

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
    /// daemon's [`MergedAlerts`](super::MergedAlerts).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::alerts::tests::rule;
    use crate::telemetry::alerts::{Level, MergedAlerts, ALERT_HOLD_DOWN};
    use crate::telemetry::window::{rate, Metric};

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
