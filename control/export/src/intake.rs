//! The exporter's intake: its own thread, which takes what the workers and
//! the daemon hand over, stamps each message and puts it in memory or in
//! the spool — and never waits for the servers.
//!
//! The hand-offs before it are small and never wait (a full one loses the
//! record), so the intake must keep them empty whatever the servers do:
//! the sender's waits (a stream being created while the cluster has no
//! leader, a window of publishes, acknowledgements) are on the other
//! thread. An event is lost only when memory and the spool are both full,
//! or when this thread gets no CPU for as long as a hand-off takes to fill.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam::channel::{Receiver, Select};
use rstwall_api::fleet::{FleetAlert, FleetEvent, Stamped};
use rstwall_engine::telemetry::Level;
use rstwall_source::{RstRecord, RstSink};
use serde::Serialize;

use crate::spool::Spool;
use crate::{Message, Origin, Outgoing, EXPORT_LOSS_RULE};

/// Records taken from a hand-off per turn.
const INTAKE: usize = 8192;
/// After a turn that took something: a pause, so that the workers wake
/// this thread at most once per pause (a worker that hands a record to a
/// sleeping reader wakes it: a system call on the packet path).
const BATCH: Duration = Duration::from_millis(1);
/// The longest wait for a record, between looks at the stop flag.
const IDLE: Duration = Duration::from_millis(50);

/// A message in memory: when it came, and the spool segment it ends.
pub(crate) struct Pending {
    pub(crate) msg: Message,
    pub(crate) since: Instant,
    /// The last message of a segment replayed from the spool: its ack
    /// releases the segment.
    pub(crate) ends_segment: Option<u64>,
    /// Read from the spool (it is on disk until its segment is released).
    pub(crate) from_spool: bool,
}

/// What the intake and the sender share: the messages in order, memory
/// first, then the spool. The intake appends; the sender publishes from
/// the front, refills memory from the spool and forgets what the stream
/// acknowledged.
pub(crate) struct Store {
    pub(crate) memory: VecDeque<Pending>,
    pub(crate) spool: Spool,
    /// Events neither memory nor the spool had room for.
    pub(crate) dropped: u64,
    /// The intake's last error (encoding, spool), for the status.
    pub(crate) error: Option<String>,
}

impl Store {
    pub(crate) fn new(spool: Spool) -> Store {
        Store {
            memory: VecDeque::new(),
            spool,
            dropped: 0,
            error: None,
        }
    }
}

pub(crate) fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

/// Losses before the exporter: the workers' full hand-off, a full outbox.
#[derive(Clone)]
pub(crate) struct Before {
    pub(crate) sink: Option<RstSink>,
    pub(crate) outbox: Arc<AtomicU64>,
}

impl Before {
    pub(crate) fn lost(&self) -> u64 {
        self.outbox.load(Ordering::Relaxed) + self.sink.as_ref().map_or(0, |s| s.dropped())
    }
}

pub(crate) struct Intake {
    pub(crate) rsts: Option<Receiver<RstRecord>>,
    pub(crate) outbox: Receiver<Outgoing>,
    pub(crate) before: Before,
    pub(crate) store: Arc<Mutex<Store>>,
    /// Messages in memory before new ones go to the spool.
    pub(crate) queue: usize,
    pub(crate) origin: Origin,
    pub(crate) subjects: [String; 3],
    /// Set by the sender once it is done: take what is left, and end.
    pub(crate) done: Arc<AtomicBool>,
    pub(crate) loss_alerted: bool,
}

impl Intake {
    pub(crate) fn run(mut self) {
        loop {
            let last = self.done.load(Ordering::Acquire);
            let took = self.turn();
            if last {
                return;
            }
            if took > 0 {
                std::thread::sleep(BATCH);
            } else {
                self.wait();
            }
        }
    }

    /// Until a hand-off has something, or [`IDLE`].
    fn wait(&self) {
        let mut sel = Select::new();
        if let Some(rx) = &self.rsts {
            sel.recv(rx);
        }
        sel.recv(&self.outbox);
        let _ = sel.ready_timeout(IDLE);
    }

    /// Take in what the workers and the daemon handed over: how much.
    pub(crate) fn turn(&mut self) -> usize {
        // Encoded before the store is locked: the sender waits for it
        // only while messages are put in place.
        let mut batch: Vec<(Message, bool)> = Vec::new();
        let mut error = None;
        let records: Vec<RstRecord> = match &self.rsts {
            Some(rx) => rx.try_iter().take(INTAKE).collect(),
            None => Vec::new(),
        };
        let outgoing: Vec<Outgoing> = self.outbox.try_iter().take(INTAKE).collect();
        let took = records.len() + outgoing.len();
        for r in &records {
            match self.stamp(0, &FleetEvent::of_record(r)) {
                Ok(m) => batch.push((m, true)),
                Err(e) => error = Some(e),
            }
        }
        for o in &outgoing {
            let m = match o {
                Outgoing::Event(e) => self.stamp(0, &**e).map(|m| (m, true)),
                Outgoing::Alert(a) => self.stamp(1, a).map(|m| (m, false)),
                Outgoing::Summary(s) => self.stamp(2, s).map(|m| (m, false)),
            };
            match m {
                Ok(m) => batch.push(m),
                Err(e) => error = Some(e),
            }
        }
        let before = self.before.lost();
        let shared = self.store.clone();
        let mut store = lock(&shared);
        if error.is_some() {
            store.error = error;
        }
        for (msg, is_event) in batch {
            enqueue(&mut store, self.queue, msg, is_event);
        }
        let lost = store.dropped + before;
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
            match self.stamp(1, &alert) {
                Ok(msg) => enqueue_unbounded(&mut store, msg),
                Err(e) => store.error = Some(e),
            }
        }
        if took > 0 {
            if let Err(e) = store.spool.flush() {
                store.error = Some(format!("spool: {e}"));
            }
        }
        took
    }

    fn stamp<T: Serialize>(&mut self, kind: usize, body: &T) -> Result<Message, String> {
        self.origin.n += 1;
        let stamped = Stamped {
            origin: self.origin.clone(),
            body,
        };
        match serde_json::to_vec(&stamped) {
            Ok(json) => Ok(Message {
                subject: self.subjects[kind].clone(),
                id: self.origin.message_id(),
                payload: Bytes::from(json),
            }),
            Err(e) => Err(format!("encoding: {e}")),
        }
    }
}

/// Memory while nothing is on disk and memory has room; else the spool;
/// else lost (only events count: alerts and summaries are the node's own
/// and cheap to lose under a flood of events).
fn enqueue(store: &mut Store, queue: usize, msg: Message, is_event: bool) {
    if store.spool.is_empty() && store.memory.len() < queue {
        store.memory.push_back(Pending {
            msg,
            since: Instant::now(),
            ends_segment: None,
            from_spool: false,
        });
        return;
    }
    match store.spool.append(&msg) {
        Ok(Ok(())) => {}
        Ok(Err(_full)) => {
            if is_event {
                store.dropped += 1;
            }
        }
        Err(e) => {
            store.error = Some(format!("spool: {e}"));
            if is_event {
                store.dropped += 1;
            }
        }
    }
}

fn enqueue_unbounded(store: &mut Store, msg: Message) {
    let spooled = !store.spool.is_empty() && matches!(store.spool.append(&msg), Ok(Ok(())));
    if !spooled {
        // Out of order only when the spool refused it: rather late than
        // lost.
        store.memory.push_back(Pending {
            msg,
            since: Instant::now(),
            ends_segment: None,
            from_spool: false,
        });
    }
}
