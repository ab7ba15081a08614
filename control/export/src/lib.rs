//! rstwall's fleet exporter: every RST event, alert level change and a
//! summary a second, to NATS JetStream, at least once.
//!
//! The exporter runs on two threads: the intake (`intake.rs`) takes in
//! what is handed over and puts it in memory or in the spool, never
//! waiting for the servers; the sender, with its own small (single-thread)
//! Tokio runtime and the `async-nats` client, publishes and waits for the
//! stream. The intake reads:
//!
//! * the workers' [`RstRecord`]s, from the bounded hand-off of
//!   `rstwall-source` ([`rstwall_source::rst_channel`]: the packet path
//!   never waits, a full hand-off counts its losses);
//! * [`Outgoing`] messages from the daemon through an [`Outbox`] (alerts,
//!   summaries, and host mode's events, which carry their own fields).
//!
//! Each becomes one JSON message ([`rstwall_api::fleet`]) stamped with its
//! [`Origin`] and published to `<prefix>.<node>.events` (`.alerts`,
//! `.summary`) with the message id `node.run.n`: the stream de-duplicates a
//! replay within its duplicate window.
//!
//! Delivery: messages wait in memory, in order, until the stream
//! acknowledges them; a message is only forgotten once acknowledged. When
//! memory holds [`NatsConfig::queue`] messages (the servers are
//! unreachable or slow), new ones go to the [`spool`] on disk, and once
//! anything is on disk every newer message goes there too, so the order
//! is kept: memory first, then the spool, oldest segment first. Only when
//! the spool is full too are events dropped: counted, and raised once as
//! the [`EXPORT_LOSS_RULE`] alert. At stop, the exporter tries to flush
//! for a moment, then writes what memory still holds before the spool's
//! segments, so the next run replays it first.

pub mod config;
mod intake;
mod run;
pub mod spool;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam::channel::{Receiver, Sender, TrySendError};
use rstwall_api::fleet::{FleetAlert, FleetEvent, FleetSummary};
use rstwall_source::{RstRecord, RstSink};

pub use config::{Credentials, NatsConfig, Tls};
pub use rstwall_api::fleet::{ExportStatus, Origin, EXPORT_LOSS_RULE, SCHEMA};

/// One message as it is published and spooled.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub subject: String,
    /// `Nats-Msg-Id`.
    pub id: String,
    pub payload: Bytes,
}

/// What the daemon hands the exporter.
#[derive(Clone, Debug)]
pub enum Outgoing {
    Event(Box<FleetEvent>),
    Alert(FleetAlert),
    Summary(FleetSummary),
}

/// The daemon's end: never waits; a full outbox loses the message, and a
/// lost event counts as dropped.
#[derive(Clone)]
pub struct Outbox {
    tx: Sender<Outgoing>,
    lost: Arc<AtomicU64>,
}

impl Outbox {
    pub fn send(&self, msg: Outgoing) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(msg) {
            self.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count `n` events lost before they reached the outbox: a source
    /// whose own bounded hand-off was full (host mode's correlator) says
    /// so here, so the exporter's `dropped` covers every event the stream
    /// will never see.
    pub fn count_lost(&self, n: u64) {
        if n > 0 {
            self.lost.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// What the exporter reads.
pub struct Inputs {
    /// The workers' records and their sink (its loss count).
    pub rsts: Option<(RstSink, Receiver<RstRecord>)>,
    /// `inline`, `tap` or `host`.
    pub mode: String,
}

/// The running exporter.
pub struct Exporter {
    status: Arc<Mutex<ExportStatus>>,
    outbox: Outbox,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Open the spool and start the exporter's thread. Connecting happens
    /// on that thread, in the background: unreachable servers at start
    /// only mean the spool fills.
    pub fn start(cfg: NatsConfig, inputs: Inputs) -> anyhow::Result<Exporter> {
        let spool = spool::Spool::open(&cfg.spool_dir, cfg.spool_bytes)
            .map_err(|e| anyhow::anyhow!("export spool {}: {e}", cfg.spool_dir.display()))?;
        let status = Arc::new(Mutex::new(ExportStatus {
            state: "connecting".into(),
            servers: cfg.servers.clone(),
            stream: cfg.stream_name(),
            subject_prefix: cfg.subject_prefix.clone(),
            node: cfg.node.clone(),
            acked: 0,
            duplicates: 0,
            queued: 0,
            queue_capacity: cfg.queue as u64,
            spool_messages: spool.messages(),
            spool_bytes: spool.bytes(),
            spool_capacity_bytes: spool.capacity(),
            dropped: 0,
            dropped_before_intake: 0,
            lag_ms: 0,
            last_error: None,
        }));
        let (tx, rx) = crossbeam::channel::bounded(cfg.queue);
        let outbox = Outbox {
            tx,
            lost: Arc::new(AtomicU64::new(0)),
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut runner = run::Runner::new(
            cfg,
            inputs,
            spool,
            run::Shared {
                outbox: rx,
                outbox_lost: outbox.lost.clone(),
                status: status.clone(),
                stop: stop.clone(),
            },
        );
        let intake = runner.start_intake()?;
        let done = runner.intake_done();
        let thread = match std::thread::Builder::new()
            .name("rstwall-export".into())
            .spawn(move || runner.run(intake))
        {
            Ok(t) => t,
            Err(e) => {
                done.store(true, Ordering::Release);
                return Err(e.into());
            }
        };
        Ok(Exporter {
            status,
            outbox,
            stop,
            thread: Some(thread),
        })
    }

    /// Where the daemon sends alerts, summaries and host events.
    pub fn outbox(&self) -> Outbox {
        self.outbox.clone()
    }

    /// The exporter's part of `status`.
    pub fn status(&self) -> ExportStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Stop: flush for a moment, spool what is left, join the thread; the
    /// final status.
    pub fn stop(mut self) -> ExportStatus {
        self.stop_and_join();
        self.status()
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Events a source lost before its outbox count as the exporter's
    /// losses, in `status` and in its loss alert, with no server reachable.
    #[test]
    fn events_lost_before_the_outbox_count_as_dropped() {
        let dir = std::env::temp_dir().join(format!("rstwall-export-lost-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Port 1 on loopback: nothing answers there.
        let cfg = NatsConfig::new(vec!["nats://127.0.0.1:1".into()], "t".into(), dir.clone());
        let exporter = Exporter::start(
            cfg,
            Inputs {
                rsts: None,
                mode: "host".into(),
            },
        )
        .unwrap();
        let outbox = exporter.outbox();
        outbox.count_lost(0);
        outbox.count_lost(3);
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            let s = exporter.status();
            // The loss alert waits in memory beside nothing else.
            if s.dropped == 3 && s.queued == 1 {
                break s;
            }
            assert!(Instant::now() < deadline, "{s:#?}");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.acked, 0, "{status:#?}");
        assert_eq!(status.dropped_before_intake, 3, "{status:#?}");
        exporter.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
