//! The fleet's documents: what `rstwall run` streams to NATS JetStream
//! (see `rstwall-export`), one JSON message each, and the exporter's part
//! of the status document.
//!
//! Three kinds of message, each on its own subject of the node
//! (`<prefix>.<node>.events`, `.alerts`, `.summary`):
//!
//! * [`FleetEvent`] — one RST: the `rstwall analyze --events` schema (less
//!   the capture's file and frame number), with host mode's fields when
//!   host mode judged it;
//! * [`FleetAlert`] — an alert rule changed level;
//! * [`FleetSummary`] — once a second, the node's running totals.
//!
//! Every message carries an [`Origin`]: the schema version, the node's
//! name, its mode, and its place in the node's stream (`run`, `n`), which
//! also makes its JetStream message id: a replay of the same message is
//! de-duplicated by the stream, and a consumer orders a node's messages
//! by `(run, n)`.
//!
//! A source hands the exporter a [`FleetEvent`] without the origin: the
//! exporter stamps it. The AF_XDP workers' records are made events here
//! ([`FleetEvent::of_record`]); host mode fills the host fields from its
//! own events.

use rstwall_engine::class::RstClass;
use rstwall_engine::engine::RstFields;
use rstwall_engine::telemetry::{AlertEvent, Level};
use rstwall_source::RstRecord;
use serde::{Deserialize, Serialize};

use crate::ByName;

/// The version of the fleet messages' schema: a consumer that reads
/// version 1 reads every message whose `schema` is 1.
pub const SCHEMA: u32 = 1;

/// Who sent a message and where it stands in the node's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The node's name (`[export.nats] node`, the host name by default).
    pub node: String,
    /// `inline`, `tap` or `host`.
    pub mode: String,
    /// The exporter's run: ns since the Unix epoch when it started, so a
    /// later run of the node sorts after an earlier one.
    pub run: u64,
    /// The message's number in its run, from 1, over all three subjects.
    pub n: u64,
}

impl Origin {
    /// The JetStream message id (`Nats-Msg-Id`): `node.run.n`.
    pub fn message_id(&self) -> String {
        format!("{}.{}.{}", self.node, self.run, self.n)
    }
}

/// A message as it goes on the wire: its origin and its body, side by
/// side in one JSON object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stamped<T> {
    #[serde(flatten)]
    pub origin: Origin,
    #[serde(flatten)]
    pub body: T,
}

/// One RST.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetEvent {
    /// RFC 3339, UTC, nanoseconds.
    pub ts: String,
    /// As `--events` writes them.
    #[serde(flatten)]
    pub rst: RstFields,
    /// The port of the service side: the responder's port when the
    /// handshake showed who connected to whom, else the RST's destination
    /// port.
    pub service_port: u16,
    /// The worker that judged it (AF_XDP: its queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u32>,
    /// Host mode: the interface the RST crossed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iface: Option<String>,
    /// Host mode: `in`, `out` or `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Host mode: what this host's kernel did with it, the JSON object
    /// host mode's `--events` writes (`sent`, `received`,
    /// `challenge_ack`), as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Host mode: whether the kernel agreed with rstwall's class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
    /// Host mode: the process behind the local socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
}

impl FleetEvent {
    /// The event of a RST an AF_XDP worker judged.
    pub fn of_record(r: &RstRecord) -> FleetEvent {
        FleetEvent {
            ts: rfc3339_ns(r.ts_ns),
            rst: RstFields::of(&r.packet, &r.rst, r.decision),
            service_port: r.rst.service_port,
            worker: Some(r.worker),
            iface: None,
            direction: None,
            kernel: None,
            agreement: None,
            pid: None,
            comm: None,
        }
    }
}

/// An alert rule changed level.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetAlert {
    /// RFC 3339, UTC: when the level changed.
    pub ts: String,
    pub rule: String,
    pub metric: String,
    pub level: Level,
    /// The rate that changed it, per second.
    pub value: f64,
    pub threshold: f64,
}

impl FleetAlert {
    /// The daemon's alert rules' level changes.
    pub fn of_event(e: &AlertEvent) -> FleetAlert {
        FleetAlert {
            ts: rfc3339_ns(e.at.saturating_mul(1_000_000_000)),
            rule: e.rule.clone(),
            metric: e.metric.clone(),
            level: e.level,
            value: e.value,
            threshold: e.threshold,
        }
    }
}

/// The name of the exporter's own alert: events lost because both its
/// queue and its spool were full.
pub const EXPORT_LOSS_RULE: &str = "export_events_dropped";

/// Once a second: the node's totals since it started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetSummary {
    /// RFC 3339, UTC.
    pub ts: String,
    pub uptime_s: f64,
    pub frames: u64,
    pub tcp: u64,
    /// RSTs by class.
    pub rst: ByName<RstClass, u64>,
    /// Packets the policy dropped (enforce) and would drop (monitor).
    pub dropped: u64,
    pub would_drop: u64,
    /// RSTs judged (one event each); events the exporter lost (its queue
    /// and spool full, or the workers' hand-off); messages waiting on disk.
    pub events: u64,
    pub events_dropped: u64,
    pub spooled: u64,
}

/// The exporter in `GET /v1/status` (`export`; absent when it is off).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportStatus {
    /// `connecting`, `connected` (the stream acknowledges), `unreachable`
    /// (events go to the spool) or `stopped`.
    pub state: String,
    pub servers: Vec<String>,
    pub stream: String,
    pub subject_prefix: String,
    pub node: String,
    /// Messages the stream acknowledged (duplicates included).
    pub acked: u64,
    /// Of those, replays the stream had already (de-duplicated).
    pub duplicates: u64,
    /// Waiting in memory (the hand-off from the workers and the queue).
    pub queued: u64,
    pub queue_capacity: u64,
    /// Waiting on disk.
    pub spool_messages: u64,
    pub spool_bytes: u64,
    pub spool_capacity_bytes: u64,
    /// Events lost, all of them: the workers' hand-off or the daemon's
    /// outbox was full (see `dropped_before_intake`), or the queue and the
    /// spool both were.
    pub dropped: u64,
    /// Of `dropped`, those lost before the exporter took them in: the
    /// workers' hand-off or the daemon's outbox was full, so the intake
    /// thread did not keep up (raise `queue`, or give the exporter CPU).
    /// The rest found the queue and the spool full (the servers were
    /// unreachable for longer than the spool holds).
    #[serde(default)]
    pub dropped_before_intake: u64,
    /// Age of the oldest message not yet acknowledged, ms (0: none).
    pub lag_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// RFC 3339 in UTC with nanoseconds, as `--events` writes `ts`.
fn rfc3339_ns(ns: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_nanos(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_reads_back_as_written_with_its_origin_beside_it() {
        let record = RstRecord::example(0);
        let msg = Stamped {
            origin: Origin {
                schema: SCHEMA,
                node: "gw-1".into(),
                mode: "inline".into(),
                run: 5,
                n: 7,
            },
            body: FleetEvent::of_record(&record),
        };
        let json = serde_json::to_value(&msg).unwrap();
        assert_eq!(json["node"], "gw-1");
        assert_eq!(json["schema"], 1);
        assert_eq!(json["class"], "refused");
        assert_eq!(json["service_port"], 7211);
        assert_eq!(json["ts"], "2023-11-14T22:13:20.123456789Z");
        assert!(json.get("iface").is_none(), "no host fields: {json}");
        assert_eq!(msg.origin.message_id(), "gw-1.5.7");
        let back: Stamped<FleetEvent> = serde_json::from_value(json).unwrap();
        assert_eq!(back, msg);
    }
}
