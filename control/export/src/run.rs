//! The exporter's thread: intake, publish with acknowledgements, spool.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::future::IntoFuture;

use async_nats::connection::State;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;
use crossbeam::channel::Receiver;
use futures_util::stream::{FuturesOrdered, StreamExt};
use rstwall_api::fleet::{ExportStatus, FleetAlert, FleetEvent, Stamped};
use rstwall_engine::telemetry::Level;
use serde::Serialize;

use crate::config::{Credentials, NatsConfig};
use crate::spool::Spool;
use crate::{Inputs, Message, Origin, Outgoing, EXPORT_LOSS_RULE, SCHEMA};

/// Acknowledgements awaited at once while the stream answers.
const WINDOW: usize = 256;
/// How often the loop takes in new messages when nothing else wakes it.
const TICK: Duration = Duration::from_millis(5);
/// Records taken from the hand-off per turn.
const INTAKE: usize = 8192;
/// First wait after a failed publish; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// At stop: how long the exporter tries to empty memory before it spools.
const FLUSH_AT_STOP: Duration = Duration::from_secs(3);

/// A message in memory: when it came, and the spool segment it ends.
struct Pending {
    msg: Message,
    since: Instant,
    /// The last message of a segment replayed from the spool: its ack
    /// releases the segment.
    ends_segment: Option<u64>,
    /// Read from the spool (it is on disk until its segment is released).
    from_spool: bool,
}

/// What the exporter shares with its [`crate::Exporter`] handle.
pub(crate) struct Shared {
    pub(crate) outbox: Receiver<Outgoing>,
    /// Messages the outbox had no room for.
    pub(crate) outbox_lost: Arc<AtomicU64>,
    pub(crate) status: Arc<Mutex<ExportStatus>>,
    pub(crate) stop: Arc<AtomicBool>,
}

pub(crate) struct Runner {
    cfg: NatsConfig,
    inputs: Inputs,
    outbox: Receiver<Outgoing>,
    outbox_lost: Arc<AtomicU64>,
    spool: Spool,
    status: Arc<Mutex<ExportStatus>>,
    stop: Arc<AtomicBool>,
    origin: Origin,
    subjects: [String; 3],
    memory: VecDeque<Pending>,
    /// Messages of `memory`'s head published and awaiting their ack.
    sent: usize,
    dropped: u64,
    loss_alerted: bool,
    acked: u64,
    duplicates: u64,
    /// The id of the last message the stream acknowledged: the next one
    /// expects it. `None` at start (whatever the stream holds comes first).
    last_acked: Option<String>,
    last_error: Option<String>,
    /// What the client last said of its connection (a refused password, a
    /// certificate not trusted, a disconnect); `None` once connected.
    link_error: Arc<Mutex<Option<String>>>,
}

impl Runner {
    pub(crate) fn new(cfg: NatsConfig, inputs: Inputs, spool: Spool, shared: Shared) -> Runner {
        let Shared {
            outbox,
            outbox_lost,
            status,
            stop,
        } = shared;
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Runner {
            origin: Origin {
                schema: SCHEMA,
                node: cfg.node.clone(),
                mode: inputs.mode.clone(),
                run,
                n: 0,
            },
            subjects: [
                cfg.subject("events"),
                cfg.subject("alerts"),
                cfg.subject("summary"),
            ],
            cfg,
            inputs,
            outbox,
            outbox_lost,
            spool,
            status,
            stop,
            memory: VecDeque::new(),
            sent: 0,
            dropped: 0,
            loss_alerted: false,
            acked: 0,
            duplicates: 0,
            last_acked: None,
            last_error: None,
            link_error: Arc::new(Mutex::new(None)),
        }
    }

    pub(crate) fn run(mut self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("export: no runtime: {e}");
                self.set_state("stopped", Some(format!("no runtime: {e}")));
                return;
            }
        };
        rt.block_on(self.serve());
    }

    async fn connect(&self) -> Result<async_nats::Client, String> {
        let link_error = self.link_error.clone();
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("rstwall-{}", self.cfg.node))
            .event_callback(move |event| {
                let link_error = link_error.clone();
                async move {
                    use async_nats::Event;
                    let said = match event {
                        Event::Connected => None,
                        Event::Disconnected => Some("disconnected".to_string()),
                        Event::ServerError(e) => Some(format!("server: {e}")),
                        Event::ClientError(e) => Some(e.to_string()),
                        _ => return,
                    };
                    if let Some(e) = &said {
                        tracing::warn!("export: connection: {e}");
                    }
                    if let Ok(mut slot) = link_error.lock() {
                        *slot = said;
                    }
                }
            })
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|n| {
                Duration::from_millis(100u64.saturating_mul(1 << n.min(4)))
            });
        opts = match &self.cfg.credentials {
            Credentials::None => opts,
            Credentials::File(p) => opts
                .credentials_file(p)
                .await
                .map_err(|e| format!("credentials {}: {e}", p.display()))?,
            Credentials::UserPassword { user, password } => {
                opts.user_and_password(user.clone(), password.clone())
            }
            Credentials::Token(t) => opts.token(t.clone()),
        };
        let tls = &self.cfg.tls;
        if tls.required {
            opts = opts.require_tls(true);
        }
        if let Some(ca) = &tls.ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &tls.client {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        opts.connect(self.cfg.servers.clone())
            .await
            .map_err(|e| format!("connect: {e}"))
    }

    async fn serve(&mut self) {
        let client = match self.connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("export: {e}");
                // Nothing can be sent: keep spooling until stopped.
                self.set_state("stopped", Some(e));
                while !self.stop.load(Ordering::Relaxed) {
                    self.intake();
                    self.publish_status("stopped");
                    tokio::time::sleep(TICK).await;
                }
                self.spill();
                return;
            }
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(self.cfg.ack_timeout)
            .max_ack_inflight(WINDOW * 2)
            .build(client.clone());
        let mut stream_ready = self.cfg.create_stream.is_none();
        let mut acks = FuturesOrdered::new();
        let mut retry_at = Instant::now();
        let mut backoff = RETRY_MIN;
        // After a failure, one message at a time until one is acknowledged.
        let mut window = 1usize;
        let mut stopping_since: Option<Instant> = None;
        loop {
            if stopping_since.is_none() && self.stop.load(Ordering::Relaxed) {
                stopping_since = Some(Instant::now());
            }
            if let Some(t) = stopping_since {
                if self.memory.is_empty() || t.elapsed() >= FLUSH_AT_STOP {
                    break;
                }
            }
            self.intake();
            if let Err(e) = self.refill() {
                self.last_error = Some(format!("spool: {e}"));
            }
            let connected = client.connection_state() == State::Connected;
            if !connected {
                let said = self.link_error.lock().ok().and_then(|e| e.clone());
                if let Some(e) = said {
                    self.last_error = Some(format!("connection: {e}"));
                }
            }
            if !stream_ready && connected && Instant::now() >= retry_at {
                match self.ensure_stream(&js).await {
                    Ok(()) => stream_ready = true,
                    Err(e) => {
                        self.last_error = Some(e);
                        retry_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(RETRY_MAX);
                    }
                }
            }
            // Send what the window allows.
            while stream_ready
                && connected
                && Instant::now() >= retry_at
                && acks.len() < window
                && self.sent < self.memory.len()
            {
                let m = &self.memory[self.sent].msg;
                let mut publish = PublishMessage::build()
                    .payload(m.payload.clone())
                    .message_id(&m.id);
                // Chained: the stream stores a message only right after its
                // predecessor, so a message the client still delivers after
                // a failure (a gap before it) is refused, not reordered.
                let previous = match self.sent {
                    0 => self.last_acked.as_deref(),
                    k => Some(self.memory[k - 1].msg.id.as_str()),
                };
                if let Some(previous) = previous {
                    publish = publish.expected_last_message_id(previous);
                }
                let sending = js.send_publish(m.subject.clone(), publish);
                match tokio::time::timeout(Duration::from_millis(50), sending).await {
                    Ok(Ok(ack)) => {
                        acks.push_back(ack.into_future());
                        self.sent += 1;
                    }
                    Ok(Err(e)) => {
                        self.last_error = Some(format!("publish: {e}"));
                        break;
                    }
                    // The client's own buffer is full: wait for acks.
                    Err(_) => break,
                }
            }
            // Connected: the stream acknowledges (a full window), or it is
            // ready and nothing waits to be sent (an idle node is not
            // "connecting" until its first event).
            let state = if !connected {
                "unreachable"
            } else if stream_ready && (window == WINDOW || self.memory.is_empty()) {
                "connected"
            } else {
                "connecting"
            };
            self.publish_status(state);
            if acks.is_empty() {
                tokio::time::sleep(TICK).await;
                continue;
            }
            // The oldest ack, or a tick to take in more.
            tokio::select! {
                ack = acks.next() => match ack {
                    Some(Ok(ack)) => {
                        let ack: jetstream::publish::PublishAck = ack;
                        self.acked += 1;
                        self.duplicates += u64::from(ack.duplicate);
                        self.sent -= 1;
                        let done = self.memory.pop_front().expect("an ack is for the head");
                        self.last_acked = Some(done.msg.id.clone());
                        if let Some(seg) = done.ends_segment {
                            if let Err(e) = self.spool.release(seg) {
                                self.last_error = Some(format!("spool: {e}"));
                            }
                        }
                        backoff = RETRY_MIN;
                        window = WINDOW;
                    }
                    Some(Err(e)) => {
                        // Everything after it is sent again, in order:
                        // what the stream already has is a duplicate.
                        tracing::debug!("export: publish failed: {e}");
                        self.last_error = Some(format!("publish: {e}"));
                        acks = FuturesOrdered::new();
                        self.sent = 0;
                        window = 1;
                        retry_at = Instant::now() + backoff;
                        backoff = (backoff * 2).min(RETRY_MAX);
                    }
                    None => {}
                },
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        self.intake();
        self.spill();
        self.publish_status("stopped");
        // Bounded: with the servers gone, a flush waits for them forever.
        match tokio::time::timeout(Duration::from_secs(1), client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("export: flush at stop: {e}"),
            Err(_) => tracing::debug!("export: flush at stop: no server"),
        }
    }

    /// Create the stream when asked to and it does not exist.
    async fn ensure_stream(&self, js: &jetstream::Context) -> Result<(), String> {
        let Some(replicas) = self.cfg.create_stream else {
            return Ok(());
        };
        let create = js.get_or_create_stream(stream::Config {
            name: self.cfg.stream_name(),
            subjects: vec![self.cfg.subject(">")],
            num_replicas: replicas,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        });
        // Bounded like every wait of this loop: a stalled connection must
        // not stop the intake (the workers' hand-off would fill).
        match tokio::time::timeout(self.cfg.ack_timeout, create).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("stream {}: {e}", self.cfg.stream_name())),
            Err(_) => Err(format!("stream {}: no answer", self.cfg.stream_name())),
        }
    }

    /// Take in what the workers and the daemon handed over.
    fn intake(&mut self) {
        let mut took = 0;
        if let Some((_, rx)) = &self.inputs.rsts {
            let records: Vec<_> = rx.try_iter().take(INTAKE).collect();
            took += records.len();
            for r in records {
                self.enqueue(0, &FleetEvent::of_record(&r), true);
            }
        }
        let outgoing: Vec<_> = self.outbox.try_iter().take(INTAKE).collect();
        took += outgoing.len();
        for o in outgoing {
            match o {
                Outgoing::Event(e) => self.enqueue(0, &*e, true),
                Outgoing::Alert(a) => self.enqueue(1, &a, false),
                Outgoing::Summary(s) => self.enqueue(2, &s, false),
            }
        }
        let lost = self.lost();
        if lost > 0 && !self.loss_alerted {
            // Once per run: the exporter's queue and spool are full, or
            // the hand-off before it was.
            self.loss_alerted = true;
            let alert = FleetAlert {
                ts: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
                rule: EXPORT_LOSS_RULE.into(),
                metric: "export_events_dropped".into(),
                level: Level::Critical,
                value: lost as f64,
                threshold: 0.0,
            };
            // Past the spool's capacity: an alert is small, and it is
            // the one message that says what was lost.
            self.enqueue_unbounded(1, &alert);
        }
        if took > 0 {
            if let Err(e) = self.spool.flush() {
                self.last_error = Some(format!("spool: {e}"));
            }
        }
    }

    /// Events lost before or in the exporter.
    fn lost(&self) -> u64 {
        self.dropped
            + self.outbox_lost.load(Ordering::Relaxed)
            + self.inputs.rsts.as_ref().map_or(0, |(s, _)| s.dropped())
    }

    fn stamp<T: Serialize>(&mut self, kind: usize, body: &T) -> Option<Message> {
        self.origin.n += 1;
        let stamped = Stamped {
            origin: self.origin.clone(),
            body,
        };
        match serde_json::to_vec(&stamped) {
            Ok(json) => Some(Message {
                subject: self.subjects[kind].clone(),
                id: self.origin.message_id(),
                payload: Bytes::from(json),
            }),
            Err(e) => {
                self.last_error = Some(format!("encoding: {e}"));
                None
            }
        }
    }

    /// Memory while nothing is on disk and memory has room; else the
    /// spool; else lost (only events count: alerts and summaries are
    /// the node's own and cheap to lose under a flood of events).
    fn enqueue<T: Serialize>(&mut self, kind: usize, body: &T, is_event: bool) {
        let Some(msg) = self.stamp(kind, body) else {
            return;
        };
        if self.spool.is_empty() && self.memory.len() < self.cfg.queue {
            self.memory.push_back(Pending {
                msg,
                since: Instant::now(),
                ends_segment: None,
                from_spool: false,
            });
            return;
        }
        match self.spool.append(&msg) {
            Ok(Ok(())) => {}
            Ok(Err(_full)) => {
                if is_event {
                    self.dropped += 1;
                }
            }
            Err(e) => {
                self.last_error = Some(format!("spool: {e}"));
                if is_event {
                    self.dropped += 1;
                }
            }
        }
    }

    fn enqueue_unbounded<T: Serialize>(&mut self, kind: usize, body: &T) {
        let Some(msg) = self.stamp(kind, body) else {
            return;
        };
        let spooled = !self.spool.is_empty() && matches!(self.spool.append(&msg), Ok(Ok(())));
        if !spooled {
            // Out of order only when the spool refused it: rather late
            // than lost.
            self.memory.push_back(Pending {
                msg,
                since: Instant::now(),
                ends_segment: None,
                from_spool: false,
            });
        }
    }

    /// Move the oldest spool segment into memory while memory has room.
    fn refill(&mut self) -> std::io::Result<()> {
        while self.memory.len() < self.cfg.queue {
            let Some((seg, msgs)) = self.spool.load()? else {
                return Ok(());
            };
            let now = Instant::now();
            let last = msgs.len().saturating_sub(1);
            if msgs.is_empty() {
                self.spool.release(seg)?;
                continue;
            }
            for (i, msg) in msgs.into_iter().enumerate() {
                self.memory.push_back(Pending {
                    msg,
                    since: now,
                    ends_segment: (i == last).then_some(seg),
                    from_spool: true,
                });
            }
        }
        Ok(())
    }

    /// At stop: memory's messages that are not on disk yet go before the
    /// spool's segments.
    fn spill(&mut self) {
        let keep: Vec<Message> = self
            .memory
            .drain(..)
            .filter(|p| !p.from_spool)
            .map(|p| p.msg)
            .collect();
        if let Err(e) = self.spool.prepend(&keep) {
            tracing::error!("export: {} messages not spooled at stop: {e}", keep.len());
            self.dropped += keep.len() as u64;
        }
        self.sent = 0;
    }

    fn set_state(&self, state: &str, error: Option<String>) {
        if let Ok(mut s) = self.status.lock() {
            s.state = state.into();
            if error.is_some() {
                s.last_error = error;
            }
        }
    }

    fn publish_status(&self, state: &str) {
        let lag_ms = self
            .memory
            .front()
            .map_or(0, |p| p.since.elapsed().as_millis() as u64);
        let queued = self.memory.len() as u64
            + self
                .inputs
                .rsts
                .as_ref()
                .map_or(0, |(s, _)| s.queued() as u64)
            + self.outbox.len() as u64;
        if let Ok(mut s) = self.status.lock() {
            s.state = state.into();
            s.acked = self.acked;
            s.duplicates = self.duplicates;
            s.queued = queued;
            s.spool_messages = self.spool.messages();
            s.spool_bytes = self.spool.bytes();
            s.dropped = self.lost();
            s.lag_ms = lag_ms;
            s.last_error.clone_from(&self.last_error);
        }
    }
}
