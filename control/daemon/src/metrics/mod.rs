//! Prometheus metrics: `GET /metrics` on `metrics_listen` (default
//! `127.0.0.1:9717`).
//!
//! # Where the numbers come from
//!
//! Nothing here touches the per-packet path. The workers already publish
//! their statistics to the main loop ten times a second; the main loop
//! reads the XDP programs' per-CPU counters and keeps the kernel-drop
//! bookkeeping. A few times a second it hands a copy of all of it, a
//! [`Snapshot`], to [`Metrics::publish`] — one pointer swap under a mutex
//! that nobody holds for longer than a clone of an `Arc`. A scrape encodes
//! the latest snapshot on the HTTP thread. So a scrape costs the datapath
//! nothing, and is at most [`PUBLISH_EVERY`] old.
//!
//! Counters are cumulative since the daemon started (each worker's, each
//! XDP program's), so `rate()` works on all of them.
//!
//! # Formats
//!
//! The `prometheus-client` crate encodes OpenMetrics text, which Prometheus
//! asks for (`Accept: application/openmetrics-text`). Other clients —
//! `curl`, `promtool check metrics`, older scrapers — get the classic
//! Prometheus text format (0.0.4), derived from the same encoding by
//! [`text::openmetrics_to_text`]: counter families are named with their
//! `_total`, and the `# UNIT` and `# EOF` lines go.
//!
//! # Metric names
//!
//! `rstwall_` prefix; counters end in `_total`; units in the name
//! (`_bytes`, `_seconds`); labels name what varies: `port`, `queue`,
//! `class` (a TCP flag class, or an RST class: the names of
//! [`rstwall_engine::FlagClass`] and [`rstwall_engine::RstClass`]), `verdict`, `reason`, `action`. A
//! family's samples partition what it counts unless its help says
//! otherwise, so `sum()` over a label is meaningful.
//!
//! # Modules
//!
//! * [`family`] — one family and its samples, as every part of the daemon
//!   hands them over;
//! * [`snapshot`] — what the main loop publishes, and the families made
//!   from it (a source adds its own per-worker families);
//! * [`text`] — the classic text format;
//! * [`http`] — the endpoint's HTTP server.

pub mod family;
pub mod http;
pub mod snapshot;
pub mod text;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use family::{l1, l2, Kind, Labels, MetricFamily};
pub use snapshot::{KernelSnapshot, Snapshot, WorkerSample};

/// How often the main loop publishes a [`Snapshot`].
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// The exposition format of a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Text,
}

impl Format {
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    const fn label(self) -> &'static str {
        match self {
            Format::OpenMetrics => "openmetrics",
            Format::Text => "text",
        }
    }

    /// OpenMetrics when the client's `Accept` asks for it (with a q above
    /// 0), the classic text format otherwise.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let wants_openmetrics = accept.is_some_and(|a| {
            a.split(',').any(|entry| {
                let mut parts = entry.split(';').map(str::trim);
                let media = parts.next().unwrap_or("");
                let q = parts
                    .filter_map(|p| p.strip_prefix("q="))
                    .find_map(|q| q.parse::<f32>().ok())
                    .unwrap_or(1.0);
                media.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
            })
        });
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// The daemon's metrics: the registry, the latest snapshot, and the
/// counters the daemon increments itself.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    published: Arc<Published>,
    scrapes: Family<[(&'static str, &'static str); 1], Counter>,
    reloads: Family<[(&'static str, &'static str); 1], Counter>,
}

/// Outcomes of a policy reload, the `result` label of
/// `rstwall_policy_reloads_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// The policy changed and runs now.
    Applied,
    /// The reloaded policy was the running one.
    Unchanged,
    /// Invalid, or could not be persisted: the running policy stays.
    Rejected,
}

impl Reload {
    const fn as_str(self) -> &'static str {
        match self {
            Reload::Applied => "applied",
            Reload::Unchanged => "unchanged",
            Reload::Rejected => "rejected",
        }
    }
}

impl Metrics {
    /// `started_unix`: when the daemon started, in seconds since the epoch.
    pub fn new(started_unix: u64) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("rstwall");
        let published = Arc::new(Published {
            latest: Mutex::new(Arc::new(Snapshot::default())),
            started_unix,
        });
        registry.register_collector(Box::new(SnapshotCollector(published.clone())));
        let scrapes = Family::default();
        // `register` ends the help with a period itself.
        registry.register(
            "metrics_scrapes",
            "Scrapes of this endpoint, by the format served (openmetrics or text)",
            scrapes.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "policy_reloads",
            "Policy reloads (SIGHUP) by result: applied, unchanged (the reloaded policy \
             was the running one) or rejected (invalid or not persisted: the running \
             policy stays)",
            reloads.clone(),
        );
        // Every label value from the start, so a rate() over them is defined.
        for r in [Reload::Applied, Reload::Unchanged, Reload::Rejected] {
            let _ = reloads.get_or_create(&[("result", r.as_str())]);
        }
        for f in [Format::OpenMetrics, Format::Text] {
            let _ = scrapes.get_or_create(&[("format", f.label())]);
        }
        Arc::new(Metrics {
            registry,
            published,
            scrapes,
            reloads,
        })
    }

    /// Make `s` what the next scrape shows.
    pub fn publish(&self, s: Snapshot) {
        let s = Arc::new(s);
        *self
            .published
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = s;
    }

    pub fn count_reload(&self, r: Reload) {
        self.reloads.get_or_create(&[("result", r.as_str())]).inc();
    }

    /// The exposition, as a scrape gets it.
    pub fn render(&self, format: Format) -> String {
        self.scrapes
            .get_or_create(&[("format", format.label())])
            .inc();
        let mut out = String::with_capacity(64 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        match format {
            Format::OpenMetrics => out,
            Format::Text => text::openmetrics_to_text(&out),
        }
    }
}

#[derive(Debug)]
struct Published {
    latest: Mutex<Arc<Snapshot>>,
    started_unix: u64,
}

impl Published {
    fn latest(&self) -> Arc<Snapshot> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Debug)]
struct SnapshotCollector(Arc<Published>);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let latest = self.0.latest();
        for f in snapshot::families(&latest, self.0.started_unix) {
            f.encode(&mut encoder)?;
        }
        snapshot::encode_batch_latency(&latest, &mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rstwall_afxdp::{FrameStats, RingStats, SocketStats, XskMode, XskStats};
    use rstwall_api::stats::afxdp::XskWorker;
    use rstwall_bpf::XdpCounters;
    use rstwall_engine::flow::FlowStats;
    use rstwall_engine::policy::{BlockStats, Reason};
    use rstwall_engine::telemetry::Counters;
    use rstwall_engine::{FlagClass, RstClass};
    use rstwall_source::WorkerStats;

    use super::*;
    use crate::source::SourceView;

    fn worker(queue: u32) -> WorkerStats<XskStats> {
        let mut counters = Counters {
            frames: 100 + u64::from(queue),
            bytes: 6400,
            failed_connects: 4,
            passed: 98,
            dropped: 2,
            ..Counters::default()
        };
        counters.flag_classes[FlagClass::Syn.index()] = 7;
        counters.rst_classes[RstClass::NoFlow.index()] = [3, 2];
        counters.rst_would_drop[RstClass::NoFlow.index()] = 2;
        counters.reasons[Reason::ClassDrop.index()] = 2;
        let sock = |port: &str| SocketStats {
            port: port.into(),
            queue,
            mode: XskMode::Copy,
            poll: Default::default(),
            poll_fallback: None,
            napi_id: 0,
            busy_polls: 0,
            rx_frames: 50,
            tx_frames: 49,
            tx_wakeups: 3,
            fill_wakeups: 1,
            ring: RingStats {
                rx_ring_full: 5,
                ..RingStats::default()
            },
        };
        WorkerStats {
            worker: queue as usize,
            cpu: Some(0),
            at_ns: 0,
            batches: 10,
            sleeps: 2,
            blocks: BlockStats::default(),
            block_requests_dropped: 0,
            counters,
            flows: FlowStats {
                created: 9,
                expired: 1,
                evicted: 2,
                table_full: 3,
            },
            active_flows: 6,
            policy_generation: 1,
            batch_latency: {
                let mut l = rstwall_source::BatchLatency::default();
                l.record(1_500);
                l.record(30_000);
                l
            },
            second: 0,
            recent_seconds: Vec::new(),
            source: XskStats(XskWorker {
                queue,
                tx_ring_full_drops: 0,
                sockets: vec![sock("pa"), sock("pb")],
                frames: FrameStats {
                    total: 8192,
                    free: 4000,
                    receive: 4192,
                    ..FrameStats::default()
                },
                // Queue 1's worker keeps RST guard entries, queue 0's none.
                guard: (queue == 1).then_some(rstwall_api::stats::afxdp::GuardStats {
                    inserted: 5,
                    removed: 2,
                    guarded: 3,
                    ..Default::default()
                }),
            }),
        }
    }

    fn snapshot() -> Snapshot {
        let mut x = XdpCounters::default();
        x.flag_classes[FlagClass::Syn.index()] = 5;
        x.to_xsk = 5;
        x.non_tcp = 2;
        x.forwarded = 2;
        let workers = [worker(0), worker(1)];
        Snapshot {
            workers: XskStats::samples(&workers),
            source: XskStats::families(&workers),
            ports: vec![("pa".into(), Some(x)), ("pb".into(), None)],
            kernel: KernelSnapshot {
                deny_entries: 1,
                ..KernelSnapshot::default()
            },
            policy_version: 3,
            enforcing: true,
            alerts: vec![("rst_flood".into(), 2), ("syn_flood".into(), 0)],
            export: Some(rstwall_api::fleet::ExportStatus {
                state: "connected".into(),
                servers: vec!["nats://127.0.0.1:4222".into()],
                stream: "RSTWALL_gw".into(),
                subject_prefix: "rstwall".into(),
                node: "gw".into(),
                acked: 41,
                duplicates: 2,
                queued: 5,
                queue_capacity: 100,
                spool_messages: 7,
                spool_bytes: 4096,
                spool_capacity_bytes: 1 << 20,
                dropped: 3,
                dropped_before_intake: 1,
                lag_ms: 12,
                last_error: None,
            }),
        }
    }

    fn metrics() -> Arc<Metrics> {
        let m = Metrics::new(1_700_000_000);
        m.publish(snapshot());
        m
    }

    /// Samples of a text exposition: `name{labels}` → value.
    fn samples(text: &str) -> BTreeMap<String, String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').expect("sample value");
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn openmetrics_shows_the_snapshot() {
        let om = metrics().render(Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"), "{om}");
        let s = samples(&om);
        for (key, value) in [
            (
                r#"rstwall_xdp_tcp_packets_total{port="pa",class="syn"}"#,
                "5",
            ),
            (
                r#"rstwall_xdp_packets_total{port="pa",action="to_xsk"}"#,
                "5",
            ),
            (r#"rstwall_xdp_non_tcp_packets_total{port="pa"}"#, "2"),
            (r#"rstwall_rsts_total{class="no_flow",verdict="pass"}"#, "6"),
            (r#"rstwall_rsts_total{class="no_flow",verdict="drop"}"#, "4"),
            (r#"rstwall_rsts_would_drop_total{class="no_flow"}"#, "4"),
            (r#"rstwall_tcp_segments_total{class="syn"}"#, "14"),
            ("rstwall_failed_connection_attempts_total", "8"),
            (
                r#"rstwall_policy_decisions_total{reason="class_drop"}"#,
                "4",
            ),
            (r#"rstwall_verdicts_total{verdict="drop"}"#, "4"),
            ("rstwall_flows_active", "12"),
            (r#"rstwall_flows_removed_total{reason="evicted"}"#, "4"),
            ("rstwall_flow_table_full_total", "6"),
            (r#"rstwall_queue_frames_total{queue="1"}"#, "101"),
            (r#"rstwall_queue_received_bytes_total{queue="0"}"#, "6400"),
            (r#"rstwall_umem_frames{queue="0",place="free"}"#, "4000"),
            (
                r#"rstwall_xsk_rx_ring_full_total{port="pb",queue="1"}"#,
                "5",
            ),
            (
                r#"rstwall_xsk_wakeups_total{port="pa",queue="0",ring="tx"}"#,
                "3",
            ),
            (r#"rstwall_xsk_zerocopy{port="pa",queue="0"}"#, "0"),
            (
                r#"rstwall_xsk_poll_mode{port="pa",queue="0",mode="wakeup"}"#,
                "1",
            ),
            (r#"rstwall_xsk_poll_fallback{port="pa",queue="0"}"#, "0"),
            (r#"rstwall_xsk_busy_polls_total{port="pa",queue="0"}"#, "0"),
            (r#"rstwall_guard_flows{queue="1"}"#, "3"),
            (
                r#"rstwall_guard_entries_total{queue="1",op="inserted"}"#,
                "5",
            ),
            (
                r#"rstwall_guard_entries_total{queue="1",op="removed"}"#,
                "2",
            ),
            ("rstwall_kernel_deny_entries", "1"),
            ("rstwall_policy_version", "3"),
            ("rstwall_alert_level{rule=\"rst_flood\"}", "2"),
            ("rstwall_alert_level{rule=\"syn_flood\"}", "0"),
            ("rstwall_policy_enforcing", "1"),
            ("rstwall_start_time_seconds", "1700000000"),
            ("rstwall_export_connected", "1"),
            ("rstwall_export_messages_acked_total", "41"),
            ("rstwall_export_messages_duplicate_total", "2"),
            ("rstwall_export_events_dropped_total", "3"),
            ("rstwall_export_events_dropped_before_intake_total", "1"),
            ("rstwall_export_queued_messages", "5"),
            ("rstwall_export_spool_messages", "7"),
            ("rstwall_export_spool_bytes", "4096"),
            ("rstwall_export_lag_milliseconds", "12"),
            (r#"rstwall_policy_reloads_total{result="rejected"}"#, "0"),
            (
                r#"rstwall_metrics_scrapes_total{format="openmetrics"}"#,
                "1",
            ),
        ] {
            assert_eq!(
                s.get(key).map(String::as_str),
                Some(value),
                "{key} in:\n{om}"
            );
        }
        let version = format!(
            r#"rstwall_build_info{{version="{}"}}"#,
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(s.get(&version).map(String::as_str), Some("1"), "{om}");
        // A worker without guard entries has no guard samples.
        assert!(!om.contains(r#"rstwall_guard_flows{queue="0"}"#), "{om}");
        // A port whose counters could not be read is left out, not zeroed.
        assert!(!om.contains(r#"port="pb",class"#), "{om}");
        assert!(om.contains("# TYPE rstwall_xdp_tcp_packets counter\n"));
        assert!(om.contains("# UNIT rstwall_start_time_seconds seconds\n"));
    }

    #[test]
    fn names_follow_the_conventions() {
        let om = metrics().render(Format::OpenMetrics);
        let mut types = BTreeMap::new();
        for line in om.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').unwrap();
                assert!(
                    types.insert(name.to_string(), ty.to_string()).is_none(),
                    "{name} twice"
                );
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let help = rest.split_once(' ').unwrap().1;
                assert!(help.ends_with('.') && !help.ends_with(".."), "{line}");
                // The classic text format allows no other escapes.
                assert!(!help.contains(['"', '\\']), "{line}");
            }
        }
        for (name, ty) in &types {
            assert!(name.starts_with("rstwall_"), "{name}");
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert!(!name.ends_with("_total"), "the encoder adds _total: {name}");
            if ty == "counter" {
                let sample = format!("{name}_total");
                assert!(
                    om.lines().any(|l| l.starts_with(&sample)),
                    "{name} has no sample"
                );
            }
        }
        // Every sample belongs to a declared family.
        for key in samples(&om).keys() {
            let name = key.split('{').next().unwrap();
            let family = name
                .strip_suffix("_total")
                .filter(|f| types.get(*f).is_some_and(|t| t == "counter"))
                .or_else(|| {
                    name.strip_suffix("_info")
                        .filter(|f| types.contains_key(*f))
                })
                .or_else(|| {
                    ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(family), "{key}: no family");
        }
    }

    #[test]
    fn text_format_names_counters_with_total() {
        let m = metrics();
        let text = m.render(Format::Text);
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
        assert!(text.contains("# TYPE rstwall_xdp_tcp_packets_total counter\n"));
        assert!(text.contains("# HELP rstwall_xdp_tcp_packets_total TCP packets"));
        assert!(text.contains("# TYPE rstwall_build_info gauge\n"));
        assert!(text.contains("# TYPE rstwall_flows_active gauge\n"));
        // In this format, every sample's name is its family's name (a
        // histogram's with _bucket, _sum or _count).
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_string();
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let name = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|n| *n == family)
                    .unwrap_or(name);
                assert_eq!(name, family, "{line}");
            }
        }
        assert!(text.contains("# TYPE rstwall_batch_duration_seconds histogram\n"));
        for (le, n) in [
            ("0.000001", 0),
            ("0.000002", 1),
            ("0.00005", 2),
            ("+Inf", 2),
        ] {
            let line =
                format!("rstwall_batch_duration_seconds_bucket{{le=\"{le}\",queue=\"0\"}} {n}\n");
            assert!(text.contains(&line), "{line}");
        }
        assert!(
            text.contains("rstwall_batch_duration_seconds_count{queue=\"1\"} 2\n"),
            "{text}"
        );
        // The same samples as OpenMetrics (the scrape counters aside).
        let om = m.render(Format::OpenMetrics);
        let strip = |s: &str| {
            let mut m = samples(s);
            m.retain(|k, _| !k.starts_with("rstwall_metrics_scrapes"));
            m
        };
        assert_eq!(strip(&text), strip(&om));
    }

    #[test]
    fn openmetrics_only_for_those_who_ask() {
        let prometheus = "application/openmetrics-text;version=1.0.0,\
                          application/openmetrics-text;version=0.0.1;q=0.75,\
                          text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text; q=0.5")),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0, text/plain")),
            Format::Text
        );
    }
}
