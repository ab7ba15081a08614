//! Prometheus metrics: `GET /metrics` on `metrics_listen` (default
//! `127.0.0.1:9717`).
//!
//! # Where the numbers come from
//!
//! Nothing here touches the per-packet path. The workers already publish
//! their [`WorkerStats`] to the main loop ten times a second; the main loop
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
//! [`openmetrics_to_text`]: counter families are named with their `_total`,
//! and the `# UNIT` and `# EOF` lines go.
//!
//! # Metric names
//!
//! `rstwall_` prefix; counters end in `_total`; units in the name
//! (`_bytes`, `_seconds`); labels name what varies: `port`, `queue`,
//! `class` (a TCP flag class, or an RST class: the names of
//! [`FlagClass`] and [`RstClass`]), `verdict`, `reason`, `action`. A
//! family's samples partition what it counts unless its help says
//! otherwise, so `sum()` over a label is meaningful.
//!
//! # The HTTP server
//!
//! A std `TcpListener` on its own thread, one short-lived thread per
//! connection (at most [`MAX_CONNECTIONS`] at once; beyond that: 503), one
//! request per connection. Requests are bounded ([`MAX_REQUEST`] bytes of
//! head, [`REQUEST_DEADLINE`] to send it). `GET` or `HEAD` on `/metrics`
//! answer; any other path is 404, any other method on `/metrics` 405.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use rstwall_afxdp::{XskMode, XskStats, XskTotals};
use rstwall_bpf::XdpCounters;
use rstwall_engine::policy::Reason;
use rstwall_engine::{FlagClass, RstClass};
use rstwall_source::{Totals, WorkerStats};

use rstwall_api::http::{self, Request, Response};

/// How often the main loop publishes a [`Snapshot`].
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// The most bytes of request head read (request line and headers).
pub const MAX_REQUEST: usize = 8192;
/// The time a client has to send its request head.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// What the main loop hands over
// ---------------------------------------------------------------------------

/// Everything the metrics show, as the main loop last saw it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The latest stats of each worker that has published.
    pub workers: Vec<WorkerStats<XskStats>>,
    /// Each port and its XDP program's counters (`None`: unreadable).
    pub ports: Vec<(String, Option<XdpCounters>)>,
    pub kernel: KernelSnapshot,
    pub policy_version: u64,
    pub enforcing: bool,
    /// Each alert rule and its level: 0 ok, 1 warning, 2 critical.
    pub alerts: Vec<(String, u64)>,
}

/// What the XDP programs drop on the policy's behalf, as the main loop
/// keeps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelSnapshot {
    pub deny_entries: u64,
    pub blocked_now: u64,
    pub sources_blocked: u64,
    pub block_errors: u64,
}

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
            Format::Text => openmetrics_to_text(&out),
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
        for f in families(&latest, self.0.started_unix) {
            f.encode(&mut encoder)?;
        }
        encode_batch_latency(&latest, &mut encoder)
    }
}

/// Upper bounds of the batch-latency histogram's buckets, in ns.
const BATCH_BUCKETS_NS: [u64; 13] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000,
    5_000_000, 10_000_000,
];

/// `rstwall_batch_duration_seconds{queue}`: the engine's time per RX
/// batch, from each worker's hdrhistogram (cumulative since start).
fn encode_batch_latency(s: &Snapshot, enc: &mut DescriptorEncoder) -> fmt::Result {
    if s.workers.is_empty() {
        return Ok(());
    }
    let mut m = enc.encode_descriptor(
        "batch_duration",
        "Time the worker spent on one RX batch (parse, judge, count, ring work).",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for w in &s.workers {
        let h = &w.batch_latency;
        let cumulative = h.cumulative(&BATCH_BUCKETS_NS);
        let count = h.0.len();
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(BATCH_BUCKETS_NS.len() + 1);
        let mut below = 0;
        for (bound, c) in BATCH_BUCKETS_NS.iter().zip(cumulative) {
            buckets.push((*bound as f64 / 1e9, c - below));
            below = c;
        }
        buckets.push((f64::INFINITY, count - below));
        let labels: Labels = vec![("queue", w.source.queue.to_string())];
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            h.sum_ns() as f64 / 1e9,
            count,
            &buckets,
            None,
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The families
// ---------------------------------------------------------------------------

type Labels = Vec<(&'static str, String)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Info,
}

/// One metric family, ready to encode. `name` is without the prefix, the
/// unit and `_total`: the encoder adds them.
#[derive(Debug)]
struct Fam {
    kind: Kind,
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    samples: Vec<(Labels, u64)>,
}

impl Fam {
    fn new(kind: Kind, name: &'static str, help: &'static str) -> Fam {
        Fam {
            kind,
            name,
            help,
            unit: None,
            samples: Vec::new(),
        }
    }

    fn unit(mut self, unit: Unit) -> Fam {
        self.unit = Some(unit);
        self
    }

    fn add(&mut self, labels: Labels, value: u64) {
        self.samples.push((labels, value));
    }

    fn with(mut self, labels: Labels, value: u64) -> Fam {
        self.add(labels, value);
        self
    }

    fn encode(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        if self.samples.is_empty() {
            return Ok(());
        }
        let ty = match self.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Info => MetricType::Info,
        };
        let mut m = enc.encode_descriptor(self.name, self.help, self.unit.as_ref(), ty)?;
        for (labels, value) in &self.samples {
            match (self.kind, labels.is_empty()) {
                // An info's labels are its value.
                (Kind::Info, _) => m.encode_info(labels)?,
                (Kind::Counter, true) => m.encode_counter::<NoLabelSet, _, u64>(value, None)?,
                (Kind::Gauge, true) => m.encode_gauge(value)?,
                (Kind::Counter, false) => m
                    .encode_family(labels)?
                    .encode_counter::<NoLabelSet, _, u64>(value, None)?,
                (Kind::Gauge, false) => m.encode_family(labels)?.encode_gauge(value)?,
            }
        }
        Ok(())
    }
}

fn l1(k: &'static str, v: impl ToString) -> Labels {
    vec![(k, v.to_string())]
}

fn l2(k1: &'static str, v1: impl ToString, k2: &'static str, v2: impl ToString) -> Labels {
    vec![(k1, v1.to_string()), (k2, v2.to_string())]
}

/// Every family, from one snapshot.
fn families(s: &Snapshot, started_unix: u64) -> Vec<Fam> {
    use Kind::{Counter as C, Gauge as G};
    let mut out = vec![
        Fam::new(Kind::Info, "build", "rstwall's version.")
            .with(l1("version", env!("CARGO_PKG_VERSION")), 1),
        Fam::new(
            G,
            "start_time",
            "When the daemon started, in seconds since the Unix epoch.",
        )
        .unit(Unit::Seconds)
        .with(vec![], started_unix),
        Fam::new(
            G,
            "policy_version",
            "Version of the running policy: one up at each change, kept across restarts.",
        )
        .with(vec![], s.policy_version),
        Fam::new(
            G,
            "policy_enforcing",
            "1 when the running policy is in enforce mode, 0 in monitor mode.",
        )
        .with(vec![], u64::from(s.enforcing)),
    ];
    let mut alert = Fam::new(
        G,
        "alert_level",
        "Each alert rule's level, judged on all workers together: 0 ok, 1 warning, 2 critical.",
    );
    for (rule, level) in &s.alerts {
        alert.add(l1("rule", rule), *level);
    }
    out.push(alert);

    // --- the XDP programs, per port ---
    let mut tcp = Fam::new(
        C,
        "xdp_tcp_packets",
        "TCP packets seen by the XDP program, by port and exclusive TCP flag class \
         (syn, synack, fin, rst, rstack, other).",
    );
    let mut non_tcp = Fam::new(
        C,
        "xdp_non_tcp_packets",
        "Well-formed packets without TCP seen by the XDP program.",
    );
    let mut malformed = Fam::new(
        C,
        "xdp_malformed_packets",
        "Malformed packets seen by the XDP program.",
    );
    let mut actions = Fam::new(
        C,
        "xdp_packets",
        "Packets by what the XDP program did with them; the actions sum to all packets. \
         to_xsk: to the workers; forwarded: non-TCP to the peer port; tap_dropped: \
         non-TCP on a tap; bypassed: fail-open, no worker socket on the queue; \
         deny_dropped and block_dropped: kernel-side policy drops (deny list, blocked \
         sources); malformed_dropped: malformed frames; peer_missing: no peer port \
         to forward to.",
    );
    for (port, x) in &s.ports {
        let Some(x) = x else { continue };
        for class in FlagClass::ALL {
            tcp.add(
                l2("port", port, "class", class.as_str()),
                x.flag_class(class),
            );
        }
        non_tcp.add(l1("port", port), x.non_tcp);
        malformed.add(l1("port", port), x.malformed);
        for (action, v) in [
            ("to_xsk", x.to_xsk),
            ("forwarded", x.forwarded),
            ("tap_dropped", x.tap_dropped),
            ("bypassed", x.bypassed),
            ("deny_dropped", x.deny_dropped),
            ("block_dropped", x.block_dropped),
            ("malformed_dropped", x.malformed_dropped),
            ("peer_missing", x.peer_missing),
        ] {
            actions.add(l2("port", port, "action", action), v);
        }
    }
    out.extend([tcp, non_tcp, malformed, actions]);

    // --- kernel-side drops: what the daemon keeps in the XDP maps ---
    let k = &s.kernel;
    let t = Totals::<XskTotals>::sum(&s.workers);
    out.extend([
        Fam::new(
            G,
            "kernel_deny_entries",
            "Deny-list entries in the XDP deny map (enforce mode).",
        )
        .with(vec![], k.deny_entries),
        Fam::new(
            G,
            "kernel_blocked_sources",
            "Sources in the XDP block map now (ratelimit.block_seconds).",
        )
        .with(vec![], k.blocked_now),
        Fam::new(
            C,
            "kernel_source_blocks",
            "Sources put in the XDP block map for exceeding their RST rate limit.",
        )
        .with(vec![], k.sources_blocked),
        Fam::new(
            C,
            "kernel_block_errors",
            "Block map updates that failed on some port.",
        )
        .with(vec![], k.block_errors),
        Fam::new(
            C,
            "block_requests",
            "Source blocks asked for by the workers' policies, by outcome: requested \
             (enforce), would_block (monitor mode), lost (a full ring or channel).",
        )
        .with(l1("outcome", "requested"), t.blocks.requested)
        .with(l1("outcome", "would_block"), t.blocks.would_block)
        .with(
            l1("outcome", "lost"),
            t.blocks.lost + t.block_requests_dropped,
        ),
    ]);

    // --- the engine, summed over workers ---
    if !s.workers.is_empty() {
        let c = &t.counters;
        let mut segments = Fam::new(
            C,
            "tcp_segments",
            "TCP segments judged by the workers, by exclusive TCP flag class.",
        );
        for class in FlagClass::ALL {
            segments.add(l1("class", class.as_str()), c.flag_classes[class.index()]);
        }
        let mut rsts = Fam::new(C, "rsts", "RSTs by RST class and verdict (pass or drop).");
        let mut would = Fam::new(
            C,
            "rsts_would_drop",
            "RSTs enforce mode drops, or would drop in monitor mode, by RST class.",
        );
        let mut with_data = Fam::new(C, "rsts_with_data", "RSTs carrying data, by RST class.");
        for class in RstClass::ALL {
            let [passed, dropped] = c.rst_classes[class.index()];
            rsts.add(l2("class", class.as_str(), "verdict", "pass"), passed);
            rsts.add(l2("class", class.as_str(), "verdict", "drop"), dropped);
            would.add(l1("class", class.as_str()), c.rst_would_drop[class.index()]);
            with_data.add(l1("class", class.as_str()), c.rst_with_data[class.index()]);
        }
        let mut reasons = Fam::new(
            C,
            "policy_decisions",
            "Policy decisions on TCP packets by reason. deny_list, class_drop, source_rate \
             and global_rate drop in enforce mode (would drop in monitor mode); source_rate \
             and global_rate are the rate-limit drops.",
        );
        for r in Reason::ALL {
            reasons.add(l1("reason", r.as_str()), c.reasons[r.index()]);
        }
        let f = &t.flows;
        out.extend([
            segments,
            rsts,
            would,
            with_data,
            Fam::new(
                C,
                "failed_connection_attempts",
                "SYNs answered by a RST (refused), as netstat counts failed connection attempts.",
            )
            .with(vec![], c.failed_connects),
            reasons,
            Fam::new(C, "verdicts", "TCP packets by verdict (pass or drop).")
                .with(l1("verdict", "pass"), c.passed)
                .with(l1("verdict", "drop"), c.dropped),
            Fam::new(
                C,
                "would_drop_packets",
                "TCP packets enforce mode drops (counted in monitor mode too).",
            )
            .with(vec![], c.would_drop),
            Fam::new(G, "flows_active", "Flows tracked now.").with(vec![], t.active_flows as u64),
            Fam::new(C, "flows_created", "Flows created.").with(vec![], f.created),
            Fam::new(
                C,
                "flows_removed",
                "Flows removed, by reason: expired (idle timeout) or evicted (the oldest, \
                 to make room).",
            )
            .with(l1("reason", "expired"), f.expired)
            .with(l1("reason", "evicted"), f.evicted),
            Fam::new(
                C,
                "flow_table_full",
                "Packets that needed a new flow and found the table full.",
            )
            .with(vec![], f.table_full),
        ]);
    }

    // --- per queue: workers and their frames ---
    let mut frames = Fam::new(C, "queue_frames", "Frames received by each queue's worker.");
    let mut bytes = Fam::new(
        C,
        "queue_received",
        "Bytes received by each queue's worker.",
    )
    .unit(Unit::Bytes);
    let mut batches = Fam::new(
        C,
        "queue_batches",
        "Worker loop turns that received at least one frame.",
    );
    let mut sleeps = Fam::new(
        C,
        "queue_sleeps",
        "Times a worker slept in poll() for lack of traffic.",
    );
    let mut tx_full = Fam::new(
        C,
        "queue_tx_ring_full_drops",
        "Frames passed by the engine but dropped for lack of room on the TX ring.",
    );
    let mut umem = Fam::new(
        G,
        "umem_frames",
        "UMEM frames of each queue by place: free, receive (with the kernel for \
         receiving), in_hand (being judged), transmit (with the kernel for sending).",
    );
    let mut leaked = Fam::new(
        G,
        "umem_frames_leaked",
        "UMEM frames the kernel will not give back (stuck in transmit over two quiet audits).",
    );
    let mut ledger = Fam::new(
        C,
        "umem_ledger_errors",
        "Frame addresses handed back that were not where the ledger had them.",
    );
    let mut xsk = XskFamilies::new();
    for w in &s.workers {
        let q = || l1("queue", w.source.queue);
        frames.add(q(), w.counters.frames);
        bytes.add(q(), w.counters.bytes);
        batches.add(q(), w.batches);
        sleeps.add(q(), w.sleeps);
        tx_full.add(q(), w.source.tx_ring_full_drops);
        for (place, v) in [
            ("free", w.source.frames.free),
            ("receive", w.source.frames.receive),
            ("in_hand", w.source.frames.in_hand),
            ("transmit", w.source.frames.transmit),
        ] {
            umem.add(l2("queue", w.source.queue, "place", place), v);
        }
        leaked.add(q(), w.source.frames.leaked);
        ledger.add(q(), w.source.frames.ledger_errors);
        for sock in &w.source.sockets {
            xsk.add(sock);
        }
    }
    out.extend([
        frames, bytes, batches, sleeps, tx_full, umem, leaked, ledger,
    ]);
    out.extend(xsk.into_families());
    out
}

/// The AF_XDP socket families, per port and queue.
struct XskFamilies([Fam; 10]);

impl XskFamilies {
    fn new() -> XskFamilies {
        use Kind::{Counter as C, Gauge as G};
        XskFamilies([
            Fam::new(
                C,
                "xsk_rx_frames",
                "Frames taken from the socket's RX ring.",
            ),
            Fam::new(
                C,
                "xsk_tx_frames",
                "Frames submitted on the socket's TX ring.",
            ),
            Fam::new(
                C,
                "xsk_wakeups",
                "Kernel wake-ups (syscalls) by ring: tx (sendto) or fill (recvfrom).",
            ),
            Fam::new(
                C,
                "xsk_rx_dropped",
                "Received frames the kernel dropped for other reasons (e.g. too large).",
            ),
            Fam::new(C, "xsk_rx_invalid_descriptors", "Invalid RX descriptors."),
            Fam::new(C, "xsk_tx_invalid_descriptors", "Invalid TX descriptors."),
            Fam::new(
                C,
                "xsk_rx_ring_full",
                "Frames the kernel dropped because the RX ring was full: the worker fell behind.",
            ),
            Fam::new(
                C,
                "xsk_fill_ring_empty",
                "Times the kernel found the fill ring empty.",
            ),
            Fam::new(
                C,
                "xsk_tx_ring_empty",
                "Times the kernel found the TX ring empty when woken.",
            ),
            Fam::new(
                G,
                "xsk_zerocopy",
                "1 when the socket is bound in zero-copy mode, 0 in copy mode.",
            ),
        ])
    }

    fn add(&mut self, sock: &rstwall_afxdp::SocketStats) {
        let l = || l2("port", &sock.port, "queue", sock.queue);
        let r = &sock.ring;
        let [rx, tx, wake, rx_drop, rx_inv, tx_inv, rx_full, fill_empty, tx_empty, zc] =
            &mut self.0;
        rx.add(l(), sock.rx_frames);
        tx.add(l(), sock.tx_frames);
        let mut w = l();
        w.push(("ring", "tx".into()));
        wake.add(w, sock.tx_wakeups);
        let mut w = l();
        w.push(("ring", "fill".into()));
        wake.add(w, sock.fill_wakeups);
        rx_drop.add(l(), r.rx_dropped);
        rx_inv.add(l(), r.rx_invalid_descs);
        tx_inv.add(l(), r.tx_invalid_descs);
        rx_full.add(l(), r.rx_ring_full);
        fill_empty.add(l(), r.rx_fill_ring_empty_descs);
        tx_empty.add(l(), r.tx_ring_empty_descs);
        zc.add(l(), u64::from(sock.mode == XskMode::ZeroCopy));
    }

    fn into_families(self) -> impl Iterator<Item = Fam> {
        self.0.into_iter()
    }
}

// ---------------------------------------------------------------------------
// OpenMetrics → Prometheus text 0.0.4
// ---------------------------------------------------------------------------

/// The classic Prometheus text format of an OpenMetrics exposition written
/// by `prometheus-client` (counters, gauges and infos without exemplars or
/// `_created` samples, which is all this module writes): a counter family
/// `x` is `x_total` there, an info family `x` is a gauge `x_info`, and
/// `# UNIT` and `# EOF` lines do not exist.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (suffix, ty) = match ty {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "unknown" => ("", "untyped"),
                other => ("", other),
            };
            if let Some(h) = help.take() {
                let text = h.strip_prefix(name).unwrap_or(h);
                let _ = writeln!(out, "# HELP {name}{suffix}{text}");
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {ty}");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------
// The HTTP server
// ---------------------------------------------------------------------------

/// The `/metrics` endpoint, served until dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind `listen` now (so a busy address fails the start) and serve on
    /// a thread.
    pub fn start(listen: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rstwall-metrics".into())
            .spawn(move || accept_loop(listener, metrics, stopping))?;
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocked accept() with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) {
    let busy = Response::text(503, "too many connections\n");
    let handle = Arc::new(move |stream: TcpStream| serve(stream, &metrics));
    http::accept_loop(
        listener.incoming(),
        "rstwall-metrics",
        MAX_CONNECTIONS,
        &stop,
        &busy,
        handle,
    );
}

/// Answer one request. `HEAD` gets the headers of `GET`, without the
/// body: the caller leaves it out.
pub fn answer(req: &Request, metrics: &Metrics) -> (Response, bool) {
    if req.path != "/metrics" {
        return (
            Response::text(404, "not found: the metrics are at /metrics\n"),
            false,
        );
    }
    let head_only = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let r = Response::text(405, "method not allowed: GET /metrics\n")
                .with_header("Allow", "GET, HEAD");
            return (r, false);
        }
    };
    let format = Format::negotiate(req.header("accept"));
    (
        Response::new(200, format.content_type(), metrics.render(format)),
        head_only,
    )
}

const LIMITS: http::Limits = http::Limits {
    max_head: MAX_REQUEST,
    max_body: 0,
    deadline: REQUEST_DEADLINE,
};

fn serve(mut stream: TcpStream, metrics: &Metrics) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let (response, head_only) = match http::read_request(&mut stream, &LIMITS) {
        Ok(None) => return,
        Ok(Some(req)) => answer(&req, metrics),
        Err(r) => (r, false),
    };
    let _ = http::respond(&mut stream, &response, head_only);
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Instant;

    use std::collections::BTreeMap;

    use rstwall_afxdp::{FrameStats, RingStats, SocketStats};
    use rstwall_engine::flow::FlowStats;
    use rstwall_engine::policy::BlockStats;
    use rstwall_engine::telemetry::Counters;

    use super::*;

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
            source: XskStats {
                queue,
                tx_ring_full_drops: 0,
                sockets: vec![sock("pa"), sock("pb")],
                frames: FrameStats {
                    total: 8192,
                    free: 4000,
                    receive: 4192,
                    ..FrameStats::default()
                },
            },
        }
    }

    fn snapshot() -> Snapshot {
        let mut x = XdpCounters::default();
        x.flag_classes[FlagClass::Syn.index()] = 5;
        x.to_xsk = 5;
        x.non_tcp = 2;
        x.forwarded = 2;
        Snapshot {
            workers: vec![worker(0), worker(1)],
            ports: vec![("pa".into(), Some(x)), ("pb".into(), None)],
            kernel: KernelSnapshot {
                deny_entries: 1,
                ..KernelSnapshot::default()
            },
            policy_version: 3,
            enforcing: true,
            alerts: vec![("rst_flood".into(), 2), ("syn_flood".into(), 0)],
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
            ("rstwall_kernel_deny_entries", "1"),
            ("rstwall_policy_version", "3"),
            ("rstwall_alert_level{rule=\"rst_flood\"}", "2"),
            ("rstwall_alert_level{rule=\"syn_flood\"}", "0"),
            ("rstwall_policy_enforcing", "1"),
            ("rstwall_start_time_seconds", "1700000000"),
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

    /// One request on a fresh connection; the raw response.
    fn request(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(raw);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn http_serves_get_and_head_of_metrics_only() {
        let m = metrics();
        let server = Server::start("127.0.0.1:0".parse().unwrap(), m.clone()).unwrap();
        let addr = server.local_addr();

        let r = request(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        assert!(body.contains("rstwall_policy_version 3\n"));

        let r = request(
            addr,
            b"GET /metrics?x=1 HTTP/1.0\r\naccept: application/openmetrics-text\r\n\r\n",
        );
        assert!(
            r.contains("Content-Type: application/openmetrics-text;"),
            "{r}"
        );
        assert!(r.ends_with("# EOF\n"));

        let r = request(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );

        let r = request(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("Allow: GET, HEAD\r\n"), "{r}");
        for path in ["/", "/metrics/", "/metricsx", "/api"] {
            let r = request(addr, format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes());
            assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{path}: {r}");
        }
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET /metrics HTTP/2\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            let r = request(addr, bad);
            assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
        }
        // A head that never ends is cut off at the bound.
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_REQUEST * 2));
        let r = request(addr, &huge);
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");

        let text = m.render(Format::Text);
        // GET, HEAD, and this render.
        assert!(
            text.contains("rstwall_metrics_scrapes_total{format=\"text\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("rstwall_metrics_scrapes_total{format=\"openmetrics\"} 1\n"));
        drop(server);
        assert!(TcpStream::connect(addr).is_err(), "stopped with the server");
    }

    #[test]
    fn a_slow_client_does_not_hold_up_others() {
        let server = Server::start("127.0.0.1:0".parse().unwrap(), metrics()).unwrap();
        let addr = server.local_addr();
        // Say half a request and then nothing.
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /met").unwrap();
        let t = Instant::now();
        let r = request(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // The slow one is answered at the deadline.
        slow.set_read_timeout(Some(REQUEST_DEADLINE * 2)).unwrap();
        let mut out = String::new();
        let _ = slow.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    }

    #[test]
    fn text_conversion_of_a_hand_written_exposition() {
        let om = "# HELP x_seconds Time.\n# TYPE x_seconds gauge\n# UNIT x_seconds seconds\n\
                  x_seconds 1.5\n# HELP c Things.\n# TYPE c counter\nc_total{a=\"b\"} 2\n\
                  # HELP i Build.\n# TYPE i info\ni_info{v=\"1\"} 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP x_seconds Time.\n# TYPE x_seconds gauge\nx_seconds 1.5\n\
             # HELP c_total Things.\n# TYPE c_total counter\nc_total{a=\"b\"} 2\n\
             # HELP i_info Build.\n# TYPE i_info gauge\ni_info{v=\"1\"} 1\n"
        );
    }
}
