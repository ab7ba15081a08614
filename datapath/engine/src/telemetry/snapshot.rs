//! The serializable copy of an engine's telemetry that reports and the
//! control plane are built from, and the merge of several engines'.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::class::RstClass;
use crate::flow::FlowStats;

use super::alerts::{ActiveAlert, AlertEvent, Level};
use super::counters::{ClassCounts, Counters};
use super::hosts::{HostStats, PortStats};
use super::window::SecondStats;

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

/// Per-class summary row: `{"class": ..., "total": ..., ...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCount {
    pub class: RstClass,
    #[serde(flatten)]
    pub counts: ClassCounts,
}

/// Everything a report or the control plane shows, in serializable form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The global counters. Documents show their per-class arrays twice:
    /// as they are (`counters.rst_classes`...) and by name beside them
    /// (`rst_classes`, one [`ClassCount`] per class, in class order). The
    /// named list is written from the arrays and not kept: the counts are
    /// held once ([`Snapshot::rst_classes`]).
    #[serde(flatten, with = "named_classes")]
    pub counters: Counters,
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

pub(super) struct SnapshotParts {
    pub(super) counters: Counters,
    pub(super) flows: FlowStats,
    pub(super) active_flows: usize,
    pub(super) hosts: Vec<(IpAddr, HostStats)>,
    pub(super) ports: Vec<(u16, PortStats)>,
    pub(super) seconds: Vec<SecondStats>,
    pub(super) alerts: Vec<AlertEvent>,
    pub(super) active_alerts: Vec<ActiveAlert>,
    pub(super) top: usize,
}

fn top_n<K: Clone + Ord>(items: impl Iterator<Item = (K, u64)>, n: usize) -> Vec<TopEntry<K>> {
    let mut v: Vec<(K, u64)> = items.filter(|(_, c)| *c > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v.into_iter()
        .map(|(key, count)| TopEntry { key, count })
        .collect()
}

/// The `top` most active hosts, most active first (ties by address).
fn host_rows(hosts: impl IntoIterator<Item = (IpAddr, HostStats)>, top: usize) -> Vec<HostRow> {
    let mut rows: Vec<HostRow> = hosts
        .into_iter()
        .map(|(host, stats)| HostRow { host, stats })
        .collect();
    rows.sort_by(|a, b| {
        b.stats
            .activity()
            .cmp(&a.stats.activity())
            .then_with(|| a.host.cmp(&b.host))
    });
    rows.truncate(top);
    rows
}

/// `counters` and the named view of its per-class arrays, `rst_classes`:
/// written side by side, read back from `counters` alone.
mod named_classes {
    use serde::de::IgnoredAny;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{rst_classes, ClassCount, Counters};

    #[derive(Serialize)]
    struct Written<'a> {
        counters: &'a Counters,
        rst_classes: Vec<ClassCount>,
    }

    #[derive(Deserialize)]
    struct Read {
        counters: Counters,
        /// Derived from `counters`: accepted and left.
        #[serde(default, rename = "rst_classes")]
        _named: IgnoredAny,
    }

    pub fn serialize<S: Serializer>(counters: &Counters, s: S) -> Result<S::Ok, S::Error> {
        Written {
            counters,
            rst_classes: rst_classes(counters),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Counters, D::Error> {
        Read::deserialize(d).map(|r| r.counters)
    }
}

/// Every RST class's counts by name, in class order.
fn rst_classes(c: &Counters) -> Vec<ClassCount> {
    RstClass::ALL
        .iter()
        .map(|&class| ClassCount {
            class,
            counts: c.class(class),
        })
        .collect()
}

impl Snapshot {
    /// Every RST class's counts by name, in class order: the per-class
    /// arrays of [`Snapshot::counters`], read by class.
    pub fn rst_classes(&self) -> Vec<ClassCount> {
        rst_classes(&self.counters)
    }

    pub(super) fn build(p: SnapshotParts) -> Snapshot {
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
        let hosts = host_rows(p.hosts, p.top);
        Snapshot {
            counters: p.counters,
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
                hosts.entry(h.host).or_default().add(&h.stats);
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
        let host_rows = host_rows(hosts, top);
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

    #[test]
    fn counts_are_held_once_and_written_both_ways() {
        let mut counters = Counters::default();
        counters.rst_classes[RstClass::InWindow.index()] = [2, 5];
        counters.rst_would_drop[RstClass::InWindow.index()] = 5;
        counters.rst_with_data[RstClass::Abort.index()] = 1;
        counters.rst_classes[RstClass::Abort.index()] = [1, 0];
        let s = Snapshot::merge(
            vec![Snapshot::build(SnapshotParts {
                counters,
                flows: FlowStats::default(),
                active_flows: 0,
                hosts: Vec::new(),
                ports: Vec::new(),
                seconds: Vec::new(),
                alerts: Vec::new(),
                active_alerts: Vec::new(),
                top: 10,
            })],
            10,
        );
        let v = serde_json::to_value(&s).unwrap();
        // The arrays as they are...
        assert_eq!(v["counters"]["rst_classes"][3], serde_json::json!([2, 5]));
        // ...and by name, in class order, derived from them.
        let named = v["rst_classes"].as_array().unwrap();
        assert_eq!(named.len(), RstClass::COUNT);
        assert_eq!(
            named[RstClass::InWindow.index()],
            serde_json::json!({
                "class": "in_window", "total": 7, "passed": 2, "dropped": 5,
                "would_drop": 5, "with_data": 0
            })
        );
        assert_eq!(named[RstClass::Abort.index()]["with_data"], 1);
        assert_eq!(s.rst_classes()[RstClass::InWindow.index()].counts.total, 7);
        // Read back: the same snapshot, from the arrays alone.
        let back: Snapshot = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, s);
        let mut without = v;
        without.as_object_mut().unwrap().remove("rst_classes");
        assert_eq!(serde_json::from_value::<Snapshot>(without).unwrap(), s);
    }
}
