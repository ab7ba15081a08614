//! `rstwall run --host [IFACE,...]`: host mode ([`rstwall_host`]) as a
//! service, behind the same seam as AF_XDP.
//!
//! Host mode watches this host's own interfaces (every one when none is
//! named, `lo` included, and interfaces that appear later) through tc
//! programs that pass every packet as it is, and judges copies of the TCP
//! headers. It observes: the workers' policy runs in monitor mode whatever
//! the daemon's policy says ([`Running::workers_policy`]), which the log
//! and the status document (`host.policy_runs_as`) say; there is no kernel
//! side that drops, so nothing is blocked either.
//!
//! Each turn of the main loop reads the RST events: every disagreement
//! between rstwall's class and the kernel's verdict is logged with its
//! packet, and with `[export.nats]` every event goes to the fleet exporter
//! ([`fleet_event`]) through its outbox, which never waits: a full outbox
//! loses the event and counts it, as do events the correlator had no room
//! for, so the exporter's `dropped` covers every event the stream misses. The statistics document gets each worker's ring (`host` in
//! `workers` and `totals`) and the kernel side's counters (`host`: records
//! lost, agreement, resets sent by reason); the metrics the same, as
//! `rstwall_host_*` families.
//!
//! Stopping (cleanly or not) drops the source, which detaches every
//! program: nothing is left that could alter traffic, and a SIGKILL leaves
//! only tc programs that pass everything until their links close with the
//! process.

use std::net::IpAddr;
use std::time::Instant;

use anyhow::anyhow;
use rstwall_api::fleet::FleetEvent;
use rstwall_api::host::{AgreementCounts, HostInterface, Unavailable};
use rstwall_api::stats::host::{HostKernel, HostTotals};
use rstwall_api::stats::{SourceTotals, SourceWorker};
use rstwall_api::{status, Failure};
use rstwall_engine::policy::{Mode, PolicyConfig};
use rstwall_export::{Outbox, Outgoing};
use rstwall_host::{Agreement, HostConfig, HostSource, HostWorkerStats, IfaceSelection, RstEvent};
use rstwall_source::{Source, WorkerError, WorkerStats};

use super::{KernelView, Running, SourceView};
use crate::metrics::family::{l1, Kind, MetricFamily};
use crate::settings::Settings;

/// Events read per turn of the main loop (twenty turns a second): the
/// channel bounds the rest.
const EVENTS_PER_TURN: usize = 4096;

/// Host mode, running.
pub struct HostMode {
    source: HostSource,
    /// The interfaces asked for (empty: all).
    wanted: Vec<String>,
    /// Events read, and disagreements logged.
    events: u64,
    disagreements: u64,
    /// The fleet exporter's outbox, with `[export.nats]`.
    export: Option<Outbox>,
    /// The correlator's `events_dropped` already counted as the
    /// exporter's losses.
    export_lost_counted: u64,
}

/// Start host mode on `ifaces` (empty: every interface) with the engine
/// settings and `policy` (run in monitor mode); its RST events go to
/// `export` too, when given.
pub fn start(
    settings: &Settings,
    ifaces: &[String],
    policy: &PolicyConfig,
    export: Option<Outbox>,
) -> Result<HostMode, Failure> {
    let mut engine = settings.engine.clone();
    engine.policy = monitor_only(policy);
    let cfg = HostConfig {
        ifaces: if ifaces.is_empty() {
            IfaceSelection::All
        } else {
            IfaceSelection::Named(ifaces.to_vec())
        },
        engine,
        ..HostConfig::default()
    };
    let source =
        HostSource::start(&cfg).map_err(|e| Failure::runtime(anyhow!(e).context("host mode")))?;
    if policy.mode() == Mode::Enforce {
        tracing::warn!(
            "host mode observes: the policy runs in monitor mode (what enforce would drop is \
             counted as would drop)"
        );
    }
    for (what, why) in source.capabilities().unavailable() {
        tracing::warn!("host mode: {what} unavailable on this kernel: {why}");
    }
    for i in source.interfaces() {
        if let Some(e) = &i.error {
            tracing::warn!("host mode: {} not observed: {e}", i.name);
        }
    }
    Ok(HostMode {
        source,
        wanted: ifaces.to_vec(),
        events: 0,
        disagreements: 0,
        export,
        export_lost_counted: 0,
    })
}

/// A host-mode event as the fleet streams it: the `--events` fields, the
/// kernel's verdict as the JSON object `--events` writes (as text), and
/// the process behind the local socket.
pub fn fleet_event(e: &RstEvent) -> FleetEvent {
    FleetEvent {
        ts: e.ts.clone(),
        rst: e.rst,
        service_port: e.service_port,
        worker: None,
        iface: Some(e.iface.clone()),
        direction: Some(e.direction.as_str().to_string()),
        kernel: serde_json::to_string(&e.kernel).ok(),
        agreement: Some(e.agreement.as_str().to_string()),
        pid: e.pid(),
        comm: e.comm().map(str::to_string),
    }
}

/// `policy` in monitor mode.
fn monitor_only(policy: &PolicyConfig) -> PolicyConfig {
    let mut p = policy.clone();
    p.set_mode(Mode::Monitor);
    p
}

impl HostMode {
    /// Read up to `most` events: log disagreements, hand each to the
    /// exporter.
    fn read_events(&mut self, most: usize) {
        let events = self.source.events().clone();
        for e in events.try_iter().take(most) {
            self.events += 1;
            if e.agreement == Agreement::Disagrees {
                self.log_disagreement(&e);
            }
            if let Some(outbox) = &self.export {
                outbox.send(Outgoing::Event(Box::new(fleet_event(&e))));
            }
        }
        if let Some(outbox) = &self.export {
            let dropped = self.source.correlation().events_dropped;
            outbox.count_lost(dropped.saturating_sub(self.export_lost_counted));
            self.export_lost_counted = dropped.max(self.export_lost_counted);
        }
    }

    fn log_disagreement(&mut self, e: &RstEvent) {
        self.disagreements += 1;
        tracing::warn!(
            "host mode: class {} disagrees with the kernel's verdict {} on {} {}:{} -> {}:{} \
             (process {}); packet {}",
            e.rst.class,
            serde_json::to_string(&e.kernel).unwrap_or_default(),
            e.iface,
            e.rst.src,
            e.rst.sport,
            e.rst.dst,
            e.rst.dport,
            e.process
                .as_ref()
                .map_or("unknown".to_string(), |p| format!(
                    "{} pid {}",
                    p.comm, p.pid
                )),
            e.packet.as_deref().unwrap_or("-"),
        );
    }
}

impl Running for HostMode {
    type Source = HostSource;

    fn source(&self) -> &HostSource {
        &self.source
    }

    fn source_mut(&mut self) -> &mut HostSource {
        &mut self.source
    }

    fn describe(&self) -> String {
        let watched: Vec<String> = self
            .source
            .interfaces()
            .into_iter()
            .filter(|i| i.error.is_none())
            .map(|i| i.name)
            .collect();
        format!(
            "host mode on {} ({}), observing only: {} ring{}",
            if self.wanted.is_empty() {
                format!("every interface, now {}", watched.join(", "))
            } else {
                watched.join(", ")
            },
            match &self.source.capabilities().packets {
                rstwall_host::Capability::Available { via } => via.clone(),
                rstwall_host::Capability::Unavailable { why } => why.clone(),
            },
            self.source.endpoints().len(),
            if self.source.endpoints().len() == 1 {
                ""
            } else {
                "s"
            },
        )
    }

    fn sockets(&self) -> Vec<status::Socket> {
        Vec::new()
    }

    /// No kernel side drops for host mode: the workers' policy is all.
    fn apply_policy(&mut self, policy: &PolicyConfig) {
        if policy.mode() == Mode::Enforce {
            tracing::warn!("host mode observes: the new policy runs in monitor mode");
        }
    }

    /// Never asked: the workers run in monitor mode, which only counts
    /// what it would block.
    fn block(&mut self, _src: IpAddr, _now: Instant) {}

    fn expire(&mut self, _now: Instant) {}

    fn kernel(&self) -> KernelView {
        let c = self.source.correlation();
        let packets = self.source.kernel_counters().ok();
        let trace = self.source.trace_counters();
        let agreement = AgreementCounts {
            agrees: c.count(Agreement::Agrees),
            disagrees: c.count(Agreement::Disagrees),
            unjudged: c.count(Agreement::Unjudged),
            no_verdict: c.count(Agreement::NoVerdict),
        };
        let host = HostKernel {
            records: packets.as_ref().map_or(0, |p| p.records),
            records_lost: packets.as_ref().map_or(0, |p| p.records_lost),
            kernel_events: c.kernel_events,
            kernel_events_lost: trace.as_ref().map_or(0, |t| t.events_lost),
            rsts: c.rsts,
            agreement,
            resets_sent: c.sent_by_reason.clone(),
            events_dropped: c.events_dropped,
        };
        KernelView {
            families: host_families(&host),
            host: Some(host),
            ..KernelView::default()
        }
    }

    fn workers_policy(&self, policy: &PolicyConfig) -> PolicyConfig {
        monitor_only(policy)
    }

    fn tick(&mut self) {
        self.read_events(EVENTS_PER_TURN);
    }

    fn host_status(&self) -> Option<status::HostStatus> {
        Some(status::HostStatus {
            policy_runs_as: Mode::Monitor,
            interfaces: self
                .source
                .interfaces()
                .into_iter()
                .map(|i| HostInterface {
                    name: i.name,
                    error: i.error,
                })
                .collect(),
            unavailable: self
                .source
                .capabilities()
                .unavailable()
                .into_iter()
                .map(|(what, why)| Unavailable {
                    what: what.into(),
                    why,
                })
                .collect(),
        })
    }

    /// The workers stopped, every event they made is in the channel: all
    /// of it goes to the exporter before the main loop stops that.
    fn stop_workers(&mut self) -> Result<Vec<WorkerStats<HostWorkerStats>>, WorkerError> {
        let stopped = self.source.stop();
        self.read_events(usize::MAX);
        stopped
    }

    /// Dropping the source detaches every program, clean stop or not:
    /// host mode has no wire to keep up.
    fn release(mut self, _clean: bool) -> anyhow::Result<()> {
        // Only the log still reads these: the exporter has stopped.
        self.export = None;
        self.tick();
        tracing::info!(
            "host mode: {} RST events, {} disagreements with the kernel",
            self.events,
            self.disagreements
        );
        drop(self.source);
        Ok(())
    }
}

/// The kernel side's metric families.
fn host_families(h: &HostKernel) -> Vec<MetricFamily> {
    use Kind::Counter as C;
    let a = &h.agreement;
    let mut agreement = MetricFamily::new(
        C,
        "host_rst_agreement",
        "RSTs by whether rstwall's class agrees with the receiving kernel's verdict: agrees, \
         disagrees (each logged with its packet), unjudged (the receiver is another host), \
         no_verdict",
    );
    for (name, n) in [
        (Agreement::Agrees, a.agrees),
        (Agreement::Disagrees, a.disagrees),
        (Agreement::Unjudged, a.unjudged),
        (Agreement::NoVerdict, a.no_verdict),
    ] {
        agreement.add(l1("agreement", name), n);
    }
    let mut sent = MetricFamily::new(
        C,
        "host_resets_sent",
        "RSTs this host's kernel sent, by its reason (NO_SOCKET, TCP_ABORT_ON_CLOSE...)",
    );
    for (reason, n) in &h.resets_sent {
        sent.add(l1("reason", reason), *n);
    }
    vec![
        MetricFamily::new(
            C,
            "host_ring_records",
            "TCP header records the tc programs handed to the ring buffers",
        )
        .with(vec![], h.records),
        MetricFamily::new(
            C,
            "host_ring_records_lost",
            "Header records lost to a full ring buffer (their segments are still counted)",
        )
        .with(vec![], h.records_lost),
        MetricFamily::new(
            C,
            "host_kernel_events_lost",
            "Kernel verdict and owner events lost to a full ring buffer",
        )
        .with(vec![], h.kernel_events_lost),
        agreement,
        sent,
    ]
}

impl SourceView for HostWorkerStats {
    fn worker_label(&self) -> (&'static str, String) {
        ("ring", self.0.ring.to_string())
    }

    fn mode(_totals: &HostTotals) -> String {
        "host".into()
    }

    fn line(t: &HostTotals) -> String {
        format!(
            "ring records {} ({} bad), rsts not correlated {}",
            t.records, t.bad_records, t.rsts_dropped
        )
    }

    fn families(workers: &[WorkerStats<HostWorkerStats>]) -> Vec<MetricFamily> {
        use Kind::Counter as C;
        let mut records = MetricFamily::new(
            C,
            "host_worker_records",
            "Header records a host-mode worker read from its ring buffer",
        );
        let mut bad = MetricFamily::new(
            C,
            "host_worker_bad_records",
            "Records shorter than they announce (a kernel/userspace mismatch)",
        );
        let mut dropped = MetricFamily::new(
            C,
            "host_worker_rsts_uncorrelated",
            "Judged RSTs the correlator had no room for",
        );
        for w in workers {
            let s = &w.source.0;
            let ring = l1("ring", s.ring);
            records.add(ring.clone(), s.counts.records);
            bad.add(ring.clone(), s.counts.bad_records);
            dropped.add(ring, s.counts.rsts_dropped);
        }
        vec![records, bad, dropped]
    }

    fn document(&self) -> SourceWorker {
        SourceWorker {
            afxdp: None,
            host: Some(self.0.clone()),
        }
    }

    fn totals_document(t: &HostTotals) -> SourceTotals {
        SourceTotals {
            afxdp: None,
            host: Some(t.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstwall_engine::class::RstClass;
    use rstwall_engine::engine::RstFields;
    use rstwall_engine::policy::{Reason, Verdict};
    use rstwall_engine::wire::TcpFlags;
    use rstwall_host::{Direction, KernelVerdict, OwnerSource, Process, Received, Sent};

    /// A refused connect on lo: sent for NO_SOCKET, reset in SYN-SENT.
    fn refused_on_lo() -> RstEvent {
        let mut kernel = KernelVerdict::default();
        kernel.sent = Some(Sent {
            reason: Some("NO_SOCKET".into()),
            state: None,
        });
        kernel.received = Some(Received::Reset { state: "SYN-SENT" });
        RstEvent {
            ts: "2026-12-03T15:00:00.000000001Z".into(),
            iface: "lo".into(),
            direction: Direction::Local,
            rst: RstFields {
                src: "127.0.0.1".parse().unwrap(),
                dst: "127.0.0.1".parse().unwrap(),
                sport: 7211,
                dport: 40000,
                seq: 0,
                ack: 12345,
                flags: TcpFlags(TcpFlags::RST | TcpFlags::ACK),
                class: RstClass::Refused,
                with_data: false,
                verdict: Verdict::Pass,
                reason: Reason::ClassPass,
            },
            service_port: 7211,
            kernel,
            agreement: Agreement::Agrees,
            process: Some(Process {
                pid: 42,
                comm: "collector".into(),
                cgroup: "/system.slice/collector.service".into(),
                unit: Some("collector.service".into()),
                container: None,
                source: OwnerSource::Connect,
            }),
            packet: None,
        }
    }

    #[test]
    fn a_host_event_reaches_the_fleet_with_its_host_fields() {
        let e = refused_on_lo();
        let f = fleet_event(&e);
        assert_eq!(f.iface.as_deref(), Some("lo"));
        assert_eq!(f.direction.as_deref(), Some("local"));
        assert_eq!(f.agreement.as_deref(), Some("agrees"));
        assert_eq!((f.pid, f.comm.as_deref()), (Some(42), Some("collector")));
        assert_eq!(f.worker, None);
        assert_eq!((f.rst.class, f.service_port), (RstClass::Refused, 7211));
        assert_eq!(f.rst.flags.to_string(), "R.");
        assert_eq!(f.ts, e.ts);
        let kernel: serde_json::Value =
            serde_json::from_str(f.kernel.as_deref().expect("a verdict")).unwrap();
        assert_eq!(kernel["sent"]["reason"], "NO_SOCKET", "{kernel}");
        assert_eq!(kernel["received"]["outcome"], "reset", "{kernel}");
        assert_eq!(kernel["received"]["state"], "SYN-SENT", "{kernel}");
        assert_eq!(kernel, serde_json::to_value(&e.kernel).unwrap());

        // No process known: no pid or comm, the rest as before.
        let mut orphan = e;
        orphan.process = None;
        let f = fleet_event(&orphan);
        assert_eq!((f.pid, f.comm), (None, None));
        assert_eq!(f.iface.as_deref(), Some("lo"));
    }
}
