//! The exporter's thread: publish with acknowledgements, refill memory
//! from the spool; and the intake's thread ([`crate::intake`]), started
//! and ended here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::future::IntoFuture;

use async_nats::connection::State;
use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishErrorKind};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use crossbeam::channel::Receiver;
use futures_util::stream::{FuturesOrdered, StreamExt};
use rstwall_api::fleet::ExportStatus;

use crate::config::{Credentials, NatsConfig};
use crate::intake::{lock, Before, Intake, Pending, Store};
use crate::spool::Spool;
use crate::{Inputs, Message, Origin, Outgoing, SCHEMA};

/// Acknowledgements awaited at once while the stream answers.
const WINDOW: usize = 256;
/// How often the loop looks for new messages when no ack wakes it.
const TICK: Duration = Duration::from_millis(5);
/// First wait after a failed publish; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// When the next try may be, after failures: [`RETRY_MIN`] after the
/// first, doubling up to [`RETRY_MAX`], back to the first once a
/// message is acknowledged.
struct Backoff {
    at: Instant,
    step: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            at: Instant::now(),
            step: RETRY_MIN,
        }
    }

    /// Whether the wait after the last failure is over.
    fn ready(&self) -> bool {
        Instant::now() >= self.at
    }

    /// A failure: wait, longer each time.
    fn failed(&mut self) {
        self.at = Instant::now() + self.step;
        self.step = (self.step * 2).min(RETRY_MAX);
    }

    /// A success: the next failure waits the least again.
    fn succeeded(&mut self) {
        self.step = RETRY_MIN;
    }
}
/// At stop: how long the exporter tries to empty memory before it spools.
const FLUSH_AT_STOP: Duration = Duration::from_secs(3);

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
    /// Messages waiting in the daemon's outbox (for the status).
    outbox: Receiver<Outgoing>,
    before: Before,
    store: Arc<Mutex<Store>>,
    /// The intake, until [`Runner::start_intake`] starts its thread.
    intake: Option<Intake>,
    /// Tells the intake to take what is left and end.
    done: Arc<AtomicBool>,
    status: Arc<Mutex<ExportStatus>>,
    stop: Arc<AtomicBool>,
    /// Messages of memory's head published and awaiting their ack.
    sent: usize,
    acked: u64,
    duplicates: u64,
    /// The id of the last message the stream acknowledged: the next one
    /// expects it. `None` at start and once the chain restarts on what the
    /// stream holds ([`Runner::resync`]): the next one is stored whatever
    /// the stream's last message is.
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
        let Inputs { rsts, mode } = inputs;
        let (sink, rsts) = match rsts {
            Some((sink, rx)) => (Some(sink), Some(rx)),
            None => (None, None),
        };
        let before = Before {
            sink,
            outbox: outbox_lost,
        };
        let store = Arc::new(Mutex::new(Store::new(spool)));
        let done = Arc::new(AtomicBool::new(false));
        let intake = Intake {
            rsts,
            outbox: outbox.clone(),
            before: before.clone(),
            store: store.clone(),
            queue: cfg.queue,
            origin: Origin {
                schema: SCHEMA,
                node: cfg.node.clone(),
                mode,
                run,
                n: 0,
            },
            subjects: [
                cfg.subject("events"),
                cfg.subject("alerts"),
                cfg.subject("summary"),
            ],
            done: done.clone(),
            loss_alerted: false,
        };
        Runner {
            cfg,
            outbox,
            before,
            store,
            intake: Some(intake),
            done,
            status,
            stop,
            sent: 0,
            acked: 0,
            duplicates: 0,
            last_acked: None,
            last_error: None,
            link_error: Arc::new(Mutex::new(None)),
        }
    }

    /// Start the intake's thread (before the exporter's: from then on,
    /// the hand-offs are emptied whatever happens to the servers).
    pub(crate) fn start_intake(&mut self) -> std::io::Result<JoinHandle<()>> {
        let intake = self.intake.take().expect("the intake starts once");
        std::thread::Builder::new()
            .name("rstwall-intake".into())
            .spawn(move || intake.run())
    }

    /// Tell the intake to take what is left and end (also when the
    /// exporter's thread could not start).
    pub(crate) fn intake_done(&self) -> Arc<AtomicBool> {
        self.done.clone()
    }

    pub(crate) fn run(mut self, intake: JoinHandle<()>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => Some(rt),
            Err(e) => {
                tracing::error!("export: no runtime: {e}");
                self.last_error = Some(format!("no runtime: {e}"));
                None
            }
        };
        let client = match &rt {
            Some(rt) => rt.block_on(self.serve()),
            None => {
                // Nothing can be sent: the intake spools until stopped.
                while !self.stop.load(Ordering::Relaxed) {
                    self.publish_status("stopped");
                    std::thread::sleep(TICK);
                }
                None
            }
        };
        // The intake's last turn; then what memory holds goes to disk.
        self.done.store(true, Ordering::Release);
        if intake.join().is_err() {
            self.last_error = Some("intake: its thread panicked".into());
        }
        self.spill();
        self.publish_status("stopped");
        if let (Some(rt), Some(client)) = (rt, client) {
            // Bounded: with the servers gone, a flush waits for them forever.
            let flush =
                async { tokio::time::timeout(Duration::from_secs(1), client.flush()).await };
            match rt.block_on(flush) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("export: flush at stop: {e}"),
                Err(_) => tracing::debug!("export: flush at stop: no server"),
            }
        }
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

    /// Publish until stopped (and memory is empty, or
    /// [`FLUSH_AT_STOP`] passed); the client, to flush.
    async fn serve(&mut self) -> Option<async_nats::Client> {
        let client = match self.connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("export: {e}");
                // Nothing can be sent: the intake spools until stopped.
                self.last_error = Some(e);
                while !self.stop.load(Ordering::Relaxed) {
                    self.publish_status("stopped");
                    tokio::time::sleep(TICK).await;
                }
                return None;
            }
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(self.cfg.ack_timeout)
            .max_ack_inflight(WINDOW * 2)
            .build(client.clone());
        let mut stream_ready = self.cfg.create_stream.is_none();
        // The stream refused the chain or went missing: what it holds is
        // to be read before anything is sent again.
        let mut resync = false;
        let mut acks = FuturesOrdered::new();
        let mut retry = Backoff::new();
        // After a failure, one message at a time until one is acknowledged.
        let mut window = 1usize;
        let mut stopping_since: Option<Instant> = None;
        loop {
            if stopping_since.is_none() && self.stop.load(Ordering::Relaxed) {
                stopping_since = Some(Instant::now());
            }
            if let Some(t) = stopping_since {
                if lock(&self.store).memory.is_empty() || t.elapsed() >= FLUSH_AT_STOP {
                    break;
                }
            }
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
            if !stream_ready && connected && retry.ready() {
                match self.ensure_stream(&js).await {
                    Ok(()) => stream_ready = true,
                    Err(e) => {
                        self.last_error = Some(e);
                        retry.failed();
                    }
                }
            }
            if stream_ready && resync && connected && retry.ready() {
                match self.resync(&js).await {
                    Ok(()) => resync = false,
                    Err((missing, e)) => {
                        self.last_error = Some(e);
                        // Created again when it is ours to create.
                        if missing && self.cfg.create_stream.is_some() {
                            stream_ready = false;
                        }
                        retry.failed();
                    }
                }
            }
            // Send what the window allows.
            while stream_ready && !resync && connected && retry.ready() && acks.len() < window {
                // Chained: the stream stores a message only right after its
                // predecessor, so a message the client still delivers after
                // a failure (a gap before it) is refused, not reordered.
                let (m, previous) = {
                    let store = lock(&self.store);
                    let Some(p) = store.memory.get(self.sent) else {
                        break;
                    };
                    let previous = match self.sent {
                        0 => self.last_acked.clone(),
                        k => Some(store.memory[k - 1].msg.id.clone()),
                    };
                    (p.msg.clone(), previous)
                };
                let mut publish = PublishMessage::build().payload(m.payload).message_id(&m.id);
                if let Some(previous) = previous {
                    publish = publish.expected_last_message_id(previous);
                }
                let sending = js.send_publish(m.subject, publish);
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
            let idle = lock(&self.store).memory.is_empty();
            let state = if !connected {
                "unreachable"
            } else if stream_ready && (window == WINDOW || idle) {
                "connected"
            } else {
                "connecting"
            };
            self.publish_status(state);
            if acks.is_empty() {
                tokio::time::sleep(TICK).await;
                continue;
            }
            // The oldest ack, or a tick to look for more.
            tokio::select! {
                ack = acks.next() => match ack {
                    Some(Ok(ack)) => {
                        let ack: jetstream::publish::PublishAck = ack;
                        self.duplicates += u64::from(ack.duplicate);
                        self.sent -= 1;
                        let id = self.stored(1);
                        self.last_acked = id;
                        retry.succeeded();
                        window = WINDOW;
                    }
                    Some(Err(e)) => {
                        // Everything after it is sent again, in order:
                        // what the stream already has is a duplicate.
                        tracing::debug!("export: publish failed: {e}");
                        let stream = self.cfg.stream_name();
                        match e.kind() {
                            // Deleted, or a cluster back without its data.
                            PublishErrorKind::StreamNotFound => {
                                tracing::warn!("export: stream {stream} missing: {e}");
                                self.last_error =
                                    Some(format!("stream {stream} missing: publish: {e}"));
                                stream_ready = self.cfg.create_stream.is_none();
                                resync = true;
                            }
                            // The stream does not end with our last
                            // message: another stream, or one that lost
                            // messages.
                            PublishErrorKind::WrongLastMessageId => {
                                tracing::warn!("export: stream {stream}: {e}");
                                self.last_error = Some(format!("stream {stream}: publish: {e}"));
                                resync = true;
                            }
                            _ => self.last_error = Some(format!("publish: {e}")),
                        }
                        acks = FuturesOrdered::new();
                        self.sent = 0;
                        window = 1;
                        retry.failed();
                    }
                    None => {}
                },
                _ = tokio::time::sleep(TICK) => {}
            }
        }
        Some(client)
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
        // Bounded like every wait of this loop, so that the status stays
        // current and a stop is not held up (the intake, on its own
        // thread, goes on meanwhile).
        match tokio::time::timeout(self.cfg.ack_timeout, create).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("stream {}: {e}", self.cfg.stream_name())),
            Err(_) => Err(format!("stream {}: no answer", self.cfg.stream_name())),
        }
    }

    /// Forget memory's first `n` messages, which the stream holds (their
    /// spool segments are released); the id of the last one.
    fn stored(&mut self, n: usize) -> Option<String> {
        let mut store = lock(&self.store);
        let mut last = None;
        for _ in 0..n {
            let done = store.memory.pop_front().expect("stored from the head");
            self.acked += 1;
            last = Some(done.msg.id);
            if let Some(seg) = done.ends_segment {
                if let Err(e) = store.spool.release(seg) {
                    self.last_error = Some(format!("spool: {e}"));
                }
            }
        }
        last
    }

    /// Restart the chain on what the stream holds (after it went missing
    /// or refused the expected last message id): the messages of memory up
    /// to the stream's last one are stored already and forgotten; the next
    /// one is sent with no expected id, as at start. Else `(missing, why)`.
    async fn resync(&mut self, js: &jetstream::Context) -> Result<(), (bool, String)> {
        let name = self.cfg.stream_name();
        let subject = lock(&self.store)
            .memory
            .front()
            .map_or_else(|| self.cfg.subject("events"), |p| p.msg.subject.clone());
        let read = async {
            let found = match js.stream_by_subject(subject.as_str()).await {
                Ok(found) => found,
                Err(e) if e.kind() == GetStreamByNameErrorKind::NotFound => {
                    return Err((true, format!("stream {name} missing: none takes {subject}")));
                }
                Err(e) => return Err((false, format!("stream {name}: {e}"))),
            };
            let stream = js
                .get_stream(&found)
                .await
                .map_err(|e| (false, format!("stream {found}: {e}")))?;
            let state = &stream.cached_info().state;
            if state.messages == 0 {
                return Ok(None);
            }
            let last = match stream.get_raw_message(state.last_sequence).await {
                Ok(last) => last,
                // Deleted since: not one of ours to look for.
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
                Err(e) => return Err((false, format!("stream {found}: its last message: {e}"))),
            };
            Ok(last
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|id| id.as_str().to_string()))
        };
        let last = match tokio::time::timeout(self.cfg.ack_timeout, read).await {
            Ok(r) => r?,
            Err(_) => return Err((false, format!("stream {name}: no answer"))),
        };
        let held = last.and_then(|id| {
            let store = lock(&self.store);
            store.memory.iter().position(|p| p.msg.id == id)
        });
        if let Some(k) = held {
            tracing::info!("export: stream {name} holds {} more of ours", k + 1);
            self.stored(k + 1);
        }
        tracing::info!("export: stream {name}: the chain restarts");
        self.last_acked = None;
        Ok(())
    }

    /// Move the oldest spool segment into memory while memory has room;
    /// take the intake's last error.
    fn refill(&mut self) -> std::io::Result<()> {
        let mut guard = lock(&self.store);
        let store = &mut *guard;
        if let Some(e) = store.error.take() {
            self.last_error = Some(e);
        }
        while store.memory.len() < self.cfg.queue {
            let Some((seg, msgs)) = store.spool.load()? else {
                return Ok(());
            };
            let now = Instant::now();
            let last = msgs.len().saturating_sub(1);
            if msgs.is_empty() {
                store.spool.release(seg)?;
                continue;
            }
            for (i, msg) in msgs.into_iter().enumerate() {
                store.memory.push_back(Pending {
                    msg,
                    since: now,
                    ends_segment: (i == last).then_some(seg),
                    from_spool: true,
                });
            }
        }
        Ok(())
    }

    /// At stop, the intake ended: memory's messages that are not on disk
    /// yet go before the spool's segments.
    fn spill(&mut self) {
        let mut store = lock(&self.store);
        let keep: Vec<Message> = store
            .memory
            .drain(..)
            .filter(|p| !p.from_spool)
            .map(|p| p.msg)
            .collect();
        if let Err(e) = store.spool.prepend(&keep) {
            tracing::error!("export: {} messages not spooled at stop: {e}", keep.len());
            store.dropped += keep.len() as u64;
        }
        self.sent = 0;
    }

    fn publish_status(&self, state: &str) {
        let (memory, lag_ms, spool_messages, spool_bytes, dropped) = {
            let store = lock(&self.store);
            (
                store.memory.len() as u64,
                store
                    .memory
                    .front()
                    .map_or(0, |p| p.since.elapsed().as_millis() as u64),
                store.spool.messages(),
                store.spool.bytes(),
                store.dropped,
            )
        };
        let queued = memory
            + self.before.sink.as_ref().map_or(0, |s| s.queued() as u64)
            + self.outbox.len() as u64;
        if let Ok(mut s) = self.status.lock() {
            s.state = state.into();
            s.acked = self.acked;
            s.duplicates = self.duplicates;
            s.queued = queued;
            s.spool_messages = spool_messages;
            s.spool_bytes = spool_bytes;
            let before = self.before.lost();
            s.dropped = dropped + before;
            s.dropped_before_intake = before;
            s.lag_ms = lag_ms;
            s.last_error.clone_from(&self.last_error);
        }
    }
}
