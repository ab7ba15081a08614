//! What the metrics show, as the main loop hands it over ([`Snapshot`]),
//! and the families made from it.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use rstwall_bpf::{FrameCounts, XdpCounters};
use rstwall_engine::policy::Reason;
use rstwall_engine::{FlagClass, RstClass};
use rstwall_source::{Totals, WorkerStats};

use super::family::{l1, l2, Kind, Labels, MetricFamily};

/// Everything the metrics show, as the main loop last saw it.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The latest stats of each worker that has published: the part every
    /// source has.
    pub workers: Vec<WorkerSample>,
    /// The source's own per-worker families (AF_XDP: UMEM frames, sockets).
    pub source: Vec<MetricFamily>,
    /// Each port and its XDP program's counters (`None`: unreadable).
    pub ports: Vec<(String, Option<XdpCounters>)>,
    pub kernel: KernelSnapshot,
    pub policy_version: u64,
    pub enforcing: bool,
    /// Each alert rule and its level: 0 ok, 1 warning, 2 critical.
    pub alerts: Vec<(String, u64)>,
    /// The fleet exporter (`None`: off, and no `rstwall_export_*` families).
    pub export: Option<rstwall_api::fleet::ExportStatus>,
}

/// One worker's statistics, and the label that names it in the
/// per-worker families (AF_XDP: `queue`).
#[derive(Clone, Debug)]
pub struct WorkerSample {
    pub label: (&'static str, String),
    pub stats: WorkerStats<()>,
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

/// Upper bounds of the batch-latency histogram's buckets, in ns.
const BATCH_BUCKETS_NS: [u64; 13] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000,
    5_000_000, 10_000_000,
];

/// `rstwall_batch_duration_seconds{queue}`: the engine's time per RX
/// batch, from each worker's hdrhistogram (cumulative since start).
pub fn encode_batch_latency(s: &Snapshot, enc: &mut DescriptorEncoder) -> fmt::Result {
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
        let h = &w.stats.batch_latency;
        let cumulative = h.cumulative(&BATCH_BUCKETS_NS);
        let count = h.0.len();
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(BATCH_BUCKETS_NS.len() + 1);
        let mut below = 0;
        for (bound, c) in BATCH_BUCKETS_NS.iter().zip(cumulative) {
            buckets.push((*bound as f64 / 1e9, c - below));
            below = c;
        }
        buckets.push((f64::INFINITY, count - below));
        let labels: Labels = vec![w.label.clone()];
        m.encode_family(&labels)?.encode_histogram::<NoLabelSet>(
            h.sum_ns() as f64 / 1e9,
            count,
            &buckets,
            None,
        )?;
    }
    Ok(())
}

/// Every family, from one snapshot.
pub fn families(s: &Snapshot, started_unix: u64) -> Vec<MetricFamily> {
    use Kind::{Counter as C, Gauge as G};
    let mut out = vec![
        MetricFamily::new(Kind::Info, "build", "rstwall's version.")
            .with(l1("version", env!("CARGO_PKG_VERSION")), 1),
        MetricFamily::new(
            G,
            "start_time",
            "When the daemon started, in seconds since the Unix epoch.",
        )
        .unit(Unit::Seconds)
        .with(vec![], started_unix),
        MetricFamily::new(
            G,
            "policy_version",
            "Version of the running policy: one up at each change, kept across restarts.",
        )
        .with(vec![], s.policy_version),
        MetricFamily::new(
            G,
            "policy_enforcing",
            "1 when the running policy is in enforce mode, 0 in monitor mode.",
        )
        .with(vec![], u64::from(s.enforcing)),
    ];
    let mut alert = MetricFamily::new(
        G,
        "alert_level",
        "Each alert rule's level, judged on all workers together: 0 ok, 1 warning, 2 critical.",
    );
    for (rule, level) in &s.alerts {
        alert.add(l1("rule", rule), *level);
    }
    out.push(alert);

    // --- the XDP programs, per port ---
    let mut tcp = MetricFamily::new(
        C,
        "xdp_tcp_packets",
        "TCP packets seen by the XDP program, by port and exclusive TCP flag class \
         (syn, synack, fin, rst, rstack, other).",
    );
    let mut non_tcp = MetricFamily::new(
        C,
        "xdp_non_tcp_packets",
        "Well-formed packets without TCP seen by the XDP program.",
    );
    let mut malformed = MetricFamily::new(
        C,
        "xdp_malformed_packets",
        "Malformed packets seen by the XDP program.",
    );
    let mut actions = MetricFamily::new(
        C,
        "xdp_packets",
        "Packets by what the XDP program did with them; the actions sum to all packets. \
         to_xsk: to the workers; forwarded: non-TCP to the peer port; tap_dropped: \
         non-TCP on a tap; bypassed: fail-open, no worker socket on the queue; \
         deny_dropped and block_dropped: kernel-side policy drops (deny list, blocked \
         sources); malformed_dropped: malformed frames; peer_missing: no peer port \
         to forward to; guard_dropped: spoofed RSTs the in-kernel RST guard dropped.",
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
            ("guard_dropped", x.guard_dropped),
        ] {
            actions.add(l2("port", port, "action", action), v);
        }
    }
    out.extend([tcp, non_tcp, malformed, actions]);

    // --- kernel-side drops: what the daemon keeps in the XDP maps ---
    let k = &s.kernel;
    let mut t = Totals::<()>::sum(s.workers.iter().map(|w| &w.stats));
    // The RST guard's drops in the kernel are RSTs of their class dropped.
    rstwall_bpf::merge_guard_drops(
        &mut t.counters,
        s.ports.iter().filter_map(|(_, x)| x.as_ref()),
    );
    out.extend([
        MetricFamily::new(
            G,
            "kernel_deny_entries",
            "Deny-list entries in the XDP deny map (enforce mode).",
        )
        .with(vec![], k.deny_entries),
        MetricFamily::new(
            G,
            "kernel_blocked_sources",
            "Sources in the XDP block map now (ratelimit.block_seconds).",
        )
        .with(vec![], k.blocked_now),
        MetricFamily::new(
            C,
            "kernel_source_blocks",
            "Sources put in the XDP block map for exceeding their RST rate limit.",
        )
        .with(vec![], k.sources_blocked),
        MetricFamily::new(
            C,
            "kernel_block_errors",
            "Block map updates that failed on some port.",
        )
        .with(vec![], k.block_errors),
        MetricFamily::new(
            C,
            "block_requests",
            "Source blocks asked for by the workers' policies, by outcome: requested \
             (enforce), would_block (monitor mode), lost (a full ring or channel).",
        )
        .with(l1("outcome", "requested"), t.blocks.requested)
        .with(l1("outcome", "would_block"), t.blocks.would_block)
        .with(l1("outcome", "lost"), t.block_requests_lost()),
    ]);

    // --- the engine, summed over workers ---
    if !s.workers.is_empty() {
        let c = &t.counters;
        let mut segments = MetricFamily::new(
            C,
            "tcp_segments",
            "TCP segments judged by the workers, by exclusive TCP flag class.",
        );
        for class in FlagClass::ALL {
            segments.add(l1("class", class.as_str()), c.flag_classes[class.index()]);
        }
        let mut rsts =
            MetricFamily::new(C, "rsts", "RSTs by RST class and verdict (pass or drop).");
        let mut would = MetricFamily::new(
            C,
            "rsts_would_drop",
            "RSTs enforce mode drops, or would drop in monitor mode, by RST class.",
        );
        let mut with_data =
            MetricFamily::new(C, "rsts_with_data", "RSTs carrying data, by RST class.");
        for class in RstClass::ALL {
            let [passed, dropped] = c.rst_classes[class.index()];
            rsts.add(l2("class", class.as_str(), "verdict", "pass"), passed);
            rsts.add(l2("class", class.as_str(), "verdict", "drop"), dropped);
            would.add(l1("class", class.as_str()), c.rst_would_drop[class.index()]);
            with_data.add(l1("class", class.as_str()), c.rst_with_data[class.index()]);
        }
        let mut reasons = MetricFamily::new(
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
            MetricFamily::new(
                C,
                "failed_connection_attempts",
                "SYNs answered by a RST (refused), as netstat counts failed connection attempts.",
            )
            .with(vec![], c.failed_connects),
            reasons,
            MetricFamily::new(C, "verdicts", "TCP packets by verdict (pass or drop).")
                .with(l1("verdict", "pass"), c.passed)
                .with(l1("verdict", "drop"), c.dropped),
            MetricFamily::new(
                C,
                "would_drop_packets",
                "TCP packets enforce mode drops (counted in monitor mode too).",
            )
            .with(vec![], c.would_drop),
            MetricFamily::new(G, "flows_active", "Flows tracked now.")
                .with(vec![], t.active_flows as u64),
            MetricFamily::new(C, "flows_created", "Flows created.").with(vec![], f.created),
            MetricFamily::new(
                C,
                "flows_removed",
                "Flows removed, by reason: expired (idle timeout) or evicted (the oldest, \
                 to make room).",
            )
            .with(l1("reason", "expired"), f.expired)
            .with(l1("reason", "evicted"), f.evicted),
            MetricFamily::new(
                C,
                "flow_table_full",
                "Packets that needed a new flow and found the table full.",
            )
            .with(vec![], f.table_full),
        ]);
    }

    // --- per worker: what every source's workers count, then the source's own ---
    let mut frames =
        MetricFamily::new(C, "queue_frames", "Frames received by each queue's worker.");
    let mut bytes = MetricFamily::new(
        C,
        "queue_received",
        "Bytes received by each queue's worker.",
    )
    .unit(Unit::Bytes);
    let mut batches = MetricFamily::new(
        C,
        "queue_batches",
        "Worker loop turns that received at least one frame.",
    );
    let mut sleeps = MetricFamily::new(
        C,
        "queue_sleeps",
        "Times a worker slept in poll() for lack of traffic.",
    );
    for w in &s.workers {
        let q = || vec![w.label.clone()];
        frames.add(q(), w.stats.counters.frames);
        bytes.add(q(), w.stats.counters.bytes);
        batches.add(q(), w.stats.batches);
        sleeps.add(q(), w.stats.sleeps);
    }
    out.extend([frames, bytes, batches, sleeps]);
    out.extend(s.source.iter().cloned());
    if let Some(e) = &s.export {
        out.extend(export_families(e));
    }
    out
}

/// The fleet exporter's families (`[export.nats]`).
fn export_families(e: &rstwall_api::fleet::ExportStatus) -> Vec<MetricFamily> {
    use Kind::{Counter as C, Gauge as G};
    vec![
        MetricFamily::new(
            G,
            "export_connected",
            "1 while the fleet exporter's stream acknowledges, 0 otherwise.",
        )
        .with(vec![], u64::from(e.state == "connected")),
        MetricFamily::new(
            C,
            "export_messages_acked",
            "Messages the JetStream stream acknowledged (events, alerts, summaries).",
        )
        .with(vec![], e.acked),
        MetricFamily::new(
            C,
            "export_messages_duplicate",
            "Acknowledged messages the stream already had: replays it de-duplicated.",
        )
        .with(vec![], e.duplicates),
        MetricFamily::new(
            C,
            "export_events_dropped",
            "Events the exporter lost: its queue and its spool were full (or the workers' hand-off).",
        )
        .with(vec![], e.dropped),
        MetricFamily::new(
            C,
            "export_events_dropped_before_intake",
            "Of the events dropped, those the workers' hand-off or the daemon's outbox had no room for: the exporter's intake did not keep up.",
        )
        .with(vec![], e.dropped_before_intake),
        MetricFamily::new(G, "export_queued_messages", "Messages waiting in memory.")
            .with(vec![], e.queued),
        MetricFamily::new(G, "export_spool_messages", "Messages waiting in the on-disk spool.")
            .with(vec![], e.spool_messages),
        MetricFamily::new(G, "export_spool", "Bytes of the on-disk spool in use.")
            .unit(Unit::Bytes)
            .with(vec![], e.spool_bytes),
        MetricFamily::new(
            G,
            "export_lag_milliseconds",
            "Age of the oldest message not yet acknowledged by the stream.",
        )
        .with(vec![], e.lag_ms),
    ]
}
