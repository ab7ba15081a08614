//! What the control side hands the workers, and asks of them, while they
//! run: the policy (a latest-wins slot), questions answered between
//! batches (flows, a telemetry snapshot), live packet capture, and the
//! per-batch processing-time histogram the workers keep.
//!
//! None of it costs the per-packet path more than an atomic load per
//! loop iteration: a worker looks at the policy slot's version and the
//! capture switch once per iteration, and at its question queue when it
//! publishes its stats.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam::channel::Sender;
use crossbeam::queue::ArrayQueue;
use hdrhistogram::Histogram;
use serde::Serialize;

use rstwall_engine::class::RstClass;
use rstwall_engine::engine::Judged;
use rstwall_engine::flow::{FlowState, Side};
use rstwall_engine::policy::PolicyConfig;
use rstwall_engine::telemetry::Snapshot;

/// The policy every worker should run, with a generation number that
/// counts changes. [`PolicySlot::publish`] replaces whatever is there: a
/// worker that was busy while two changes arrived goes straight to the
/// newer one, and no change is ever lost (the queue it replaces could
/// overflow and drop one).
#[derive(Debug)]
pub struct PolicySlot {
    generation: AtomicU64,
    latest: Mutex<(u64, PolicyConfig)>,
}

impl PolicySlot {
    pub fn new(initial: PolicyConfig) -> PolicySlot {
        PolicySlot {
            generation: AtomicU64::new(1),
            latest: Mutex::new((1, initial)),
        }
    }

    /// Make `cfg` the policy; returns its generation.
    pub fn publish(&self, cfg: PolicyConfig) -> u64 {
        let mut slot = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let generation = slot.0 + 1;
        *slot = (generation, cfg);
        // Published after the slot holds it: a worker that sees the new
        // generation finds at least that policy under the lock.
        self.generation.store(generation, Ordering::Release);
        generation
    }

    /// The current generation: one atomic load, for the per-batch check.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The latest policy and its generation.
    pub fn latest(&self) -> (u64, PolicyConfig) {
        let slot = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        (slot.0, slot.1.clone())
    }
}

/// A flow as `rstwall flows` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowRow {
    /// The side that sent the first SYN when the handshake was seen, else
    /// the lower address.
    pub client: IpAddr,
    pub client_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
    pub state: FlowState,
    /// Picked up without its handshake.
    pub midstream: bool,
    /// Seconds since the flow last saw a packet.
    pub idle_s: u32,
    pub worker: usize,
}

/// Which flows a [`Query::Flows`] wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowFilter {
    pub state: Option<FlowState>,
    /// At most this many rows per worker.
    pub limit: usize,
}

/// A question for a worker, answered between batches when it next
/// publishes (within [`super::DatapathConfig::publish_every`]).
#[derive(Debug)]
pub enum Query {
    /// Its tracked flows.
    Flows {
        filter: FlowFilter,
        reply: Sender<Vec<FlowRow>>,
    },
    /// Its telemetry: top lists of `top` rows, per-second history, alerts.
    Telemetry { top: usize, reply: Sender<Snapshot> },
}

impl Query {
    /// What a worker scans for a flows query: the whole table when a state
    /// filter is given, but never more than this many entries per question
    /// (a worker must not stall for long; a million-flow table takes about
    /// 10 ms to walk).
    pub const MAX_FLOW_SCAN: usize = 1 << 20;
}

/// The most a captured frame keeps; longer frames are truncated (the pcap
/// record keeps their original length).
pub const CAPTURE_SNAPLEN: usize = 2048;
/// Frames in flight between the workers and the capture's writer; a full
/// pool loses frames (counted), it never blocks a worker.
pub const CAPTURE_POOL: usize = 512;

/// One captured frame.
pub struct Captured {
    pub timestamp_ns: u64,
    pub orig_len: u32,
    pub len: u16,
    pub class: Option<RstClass>,
    pub worker: u16,
    pub data: [u8; CAPTURE_SNAPLEN],
}

impl Captured {
    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len as usize]
    }
}

/// What a capture takes: every TCP packet, or RSTs of the given classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFilter {
    AllTcp,
    /// A bit per [`RstClass::index`].
    Rst(u32),
}

impl CaptureFilter {
    pub fn rst_classes(classes: &[RstClass]) -> CaptureFilter {
        CaptureFilter::Rst(classes.iter().fold(0, |m, c| m | 1 << c.index()))
    }

    fn bits(self) -> u32 {
        match self {
            CaptureFilter::AllTcp => ALL_TCP,
            CaptureFilter::Rst(m) => m & RST_MASK,
        }
    }
}

const ALL_TCP: u32 = 1 << 31;
const RST_MASK: u32 = (1 << RstClass::COUNT) - 1;

/// The live capture shared by the workers and one reader.
///
/// Workers take empty buffers from a preallocated pool, copy a matching
/// frame in and queue it; the reader writes it out and returns the buffer.
/// Nothing allocates and nothing blocks on the workers' side; when the
/// pool is empty the frame is not captured and [`CaptureTap::lost`] counts
/// it. A capture takes at most the number of frames it was started with.
pub struct CaptureTap {
    /// The filter's bits while a capture runs, 0 when none does: the one
    /// load a worker makes per batch.
    armed: AtomicU32,
    /// Frames still to take.
    remaining: AtomicU64,
    lost: AtomicU64,
    busy: AtomicBool,
    pool: ArrayQueue<Box<Captured>>,
    queue: ArrayQueue<Box<Captured>>,
}

impl std::fmt::Debug for CaptureTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureTap")
            .field("armed", &self.armed)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl CaptureTap {
    pub fn new() -> Arc<CaptureTap> {
        let pool = ArrayQueue::new(CAPTURE_POOL);
        let queue = ArrayQueue::new(CAPTURE_POOL);
        for _ in 0..CAPTURE_POOL {
            let frame = Box::new(Captured {
                timestamp_ns: 0,
                orig_len: 0,
                len: 0,
                class: None,
                worker: 0,
                data: [0; CAPTURE_SNAPLEN],
            });
            let _ = pool.push(frame);
        }
        Arc::new(CaptureTap {
            armed: AtomicU32::new(0),
            remaining: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            pool,
            queue,
        })
    }

    /// Start a capture of up to `count` frames; `None` if one is running.
    /// The capture ends when the returned guard drops.
    pub fn start(self: &Arc<Self>, filter: CaptureFilter, count: u64) -> Option<CaptureSession> {
        if self
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None;
        }
        // Leftovers of an earlier capture go back to the pool.
        while let Some(f) = self.queue.pop() {
            let _ = self.pool.push(f);
        }
        self.lost.store(0, Ordering::Relaxed);
        self.remaining.store(count, Ordering::Relaxed);
        self.armed.store(filter.bits(), Ordering::Release);
        Some(CaptureSession { tap: self.clone() })
    }

    /// The filter bits, 0 when no capture runs.
    #[inline]
    pub fn armed(&self) -> u32 {
        self.armed.load(Ordering::Relaxed)
    }

    /// Whether a frame of `class` (None: not a RST) matches `armed`.
    #[inline]
    pub fn matches(armed: u32, class: Option<RstClass>) -> bool {
        armed & ALL_TCP != 0 || class.is_some_and(|c| armed & (1 << c.index()) != 0)
    }

    /// Offer a judged frame if the capture `armed` (its filter bits, read
    /// once per batch) wants it; `frame` is read only then.
    #[inline]
    pub fn consider<'f>(
        &self,
        armed: u32,
        worker: usize,
        timestamp_ns: u64,
        judged: &Judged<'_>,
        frame: impl FnOnce() -> &'f [u8],
    ) {
        let class = judged.rst().map(|r| r.class);
        if judged.is_tcp() && CaptureTap::matches(armed, class) {
            self.offer(worker, timestamp_ns, class, frame());
        }
    }

    /// Offer a matching frame (worker side). Never blocks or allocates.
    #[inline]
    pub fn offer(&self, worker: usize, timestamp_ns: u64, class: Option<RstClass>, frame: &[u8]) {
        // Claim one of the remaining frames first: a capture of N takes N.
        let claimed = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1));
        match claimed {
            Ok(1) => self.armed.store(0, Ordering::Release),
            Ok(_) => {}
            Err(_) => {
                self.armed.store(0, Ordering::Release);
                return;
            }
        }
        let Some(mut buf) = self.pool.pop() else {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let len = frame.len().min(CAPTURE_SNAPLEN);
        buf.data[..len].copy_from_slice(&frame[..len]);
        buf.len = len as u16;
        buf.orig_len = frame.len() as u32;
        buf.timestamp_ns = timestamp_ns;
        buf.class = class;
        buf.worker = worker as u16;
        if let Err(buf) = self.queue.push(buf) {
            // Cannot happen (queue and pool hold the same buffers), but a
            // buffer must never be lost.
            self.lost.fetch_add(1, Ordering::Relaxed);
            let _ = self.pool.push(buf);
        }
    }
}

/// A running capture; stops it when dropped.
pub struct CaptureSession {
    tap: Arc<CaptureTap>,
}

impl CaptureSession {
    /// The next captured frame, if any is waiting.
    pub fn next(&self) -> Option<Box<Captured>> {
        self.tap.queue.pop()
    }

    /// Hand a frame's buffer back once it is written.
    pub fn recycle(&self, frame: Box<Captured>) {
        let _ = self.tap.pool.push(frame);
    }

    /// Whether the capture has taken all its frames (the queue may still
    /// hold some).
    pub fn exhausted(&self) -> bool {
        self.tap.remaining.load(Ordering::Acquire) == 0
    }

    /// Matching frames not captured because the pool was empty.
    pub fn lost(&self) -> u64 {
        self.tap.lost.load(Ordering::Relaxed)
    }
}

impl Drop for CaptureSession {
    fn drop(&mut self) {
        self.tap.armed.store(0, Ordering::Release);
        self.tap.remaining.store(0, Ordering::Release);
        while let Some(f) = self.tap.queue.pop() {
            let _ = self.tap.pool.push(f);
        }
        self.tap.busy.store(false, Ordering::Release);
    }
}

/// Longest batch time the histogram records exactly (longer ones are
/// clamped to it): one second.
const LATENCY_MAX_NS: u64 = 1_000_000_000;

/// How long the engine takes per RX batch (parse, judge, count, and the
/// verdict's ring work), in nanoseconds: cumulative since the worker
/// started. Recording never allocates.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchLatency(pub Histogram<u64>);

impl Default for BatchLatency {
    fn default() -> Self {
        BatchLatency(
            Histogram::new_with_bounds(1, LATENCY_MAX_NS, 2).expect("valid histogram bounds"),
        )
    }
}

impl BatchLatency {
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.0.saturating_record(ns.clamp(1, LATENCY_MAX_NS));
    }

    pub fn merge(&mut self, o: &BatchLatency) {
        // Same bounds on both sides: cannot fail.
        let _ = self.0.add(&o.0);
    }

    /// Batches recorded at or below each bound (ns), cumulative, for a
    /// Prometheus histogram.
    pub fn cumulative(&self, bounds_ns: &[u64]) -> Vec<u64> {
        bounds_ns
            .iter()
            .map(|&b| {
                if self.0.is_empty() {
                    0
                } else {
                    self.0.count_between(0, b)
                }
            })
            .collect()
    }

    /// Sum of all recorded times, in ns (bucketed: within the histogram's
    /// precision of 1%).
    pub fn sum_ns(&self) -> u64 {
        self.0
            .iter_recorded()
            .map(|v| v.value_iterated_to() * v.count_at_value())
            .sum()
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        let q = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        LatencySummary {
            batches: h.len(),
            p50_ns: q(0.5),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: if h.is_empty() { 0 } else { h.max() },
        }
    }
}

impl Serialize for BatchLatency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.summary().serialize(s)
    }
}

/// Percentiles of [`BatchLatency`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    pub batches: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
}

/// The flow row for a table entry.
pub(super) fn flow_row(
    key: &rstwall_engine::flow::FlowKey,
    flow: &rstwall_engine::flow::Flow,
    idle_s: u32,
    worker: usize,
) -> FlowRow {
    let client_side = flow.origin().unwrap_or(Side::Lo);
    let (client, client_port) = key.endpoint(client_side);
    let (server, server_port) = key.endpoint(client_side.peer());
    FlowRow {
        client,
        client_port,
        server,
        server_port,
        state: flow.state(),
        midstream: flow.picked_up_midstream(),
        idle_s,
        worker,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_keeps_only_the_latest_policy() {
        let slot = PolicySlot::new(PolicyConfig::default());
        assert_eq!(slot.generation(), 1);
        let mut a = PolicyConfig::default();
        a.set("mode", "enforce").unwrap();
        let mut b = a.clone();
        b.set("ratelimit.per_source_rate", "7").unwrap();
        assert_eq!(slot.publish(a), 2);
        assert_eq!(slot.publish(b.clone()), 3);
        assert_eq!(slot.generation(), 3);
        assert_eq!(slot.latest(), (3, b));
    }

    #[test]
    fn a_capture_takes_exactly_its_count_and_stops() {
        let tap = CaptureTap::new();
        assert_eq!(tap.armed(), 0);
        let s = tap
            .start(CaptureFilter::rst_classes(&[RstClass::InWindow]), 3)
            .unwrap();
        assert!(
            tap.start(CaptureFilter::AllTcp, 1).is_none(),
            "one at a time"
        );
        let armed = tap.armed();
        assert!(CaptureTap::matches(armed, Some(RstClass::InWindow)));
        assert!(!CaptureTap::matches(armed, Some(RstClass::Abort)));
        assert!(!CaptureTap::matches(armed, None));
        for i in 0..5u8 {
            if CaptureTap::matches(tap.armed(), Some(RstClass::InWindow)) {
                tap.offer(0, u64::from(i), Some(RstClass::InWindow), &[i; 60]);
            }
        }
        assert!(s.exhausted());
        assert_eq!(tap.armed(), 0, "disarmed after the last frame");
        let got: Vec<u64> = std::iter::from_fn(|| s.next())
            .map(|f| {
                let ts = f.timestamp_ns;
                assert_eq!(f.bytes(), &[ts as u8; 60]);
                s.recycle(f);
                ts
            })
            .collect();
        assert_eq!(got, vec![0, 1, 2]);
        drop(s);
        // All buffers are back, and a new capture can start.
        assert_eq!(tap.pool.len(), CAPTURE_POOL);
        let s = tap.start(CaptureFilter::AllTcp, 1).unwrap();
        assert!(CaptureTap::matches(tap.armed(), None));
        let long = vec![7u8; CAPTURE_SNAPLEN + 100];
        tap.offer(1, 9, None, &long);
        let f = s.next().unwrap();
        assert_eq!(f.bytes().len(), CAPTURE_SNAPLEN);
        assert_eq!(f.orig_len as usize, long.len());
    }

    #[test]
    fn latency_buckets_are_cumulative() {
        let mut l = BatchLatency::default();
        for ns in [500, 1_500, 20_000, 20_000, 3_000_000] {
            l.record(ns);
        }
        assert_eq!(
            l.cumulative(&[1_000, 10_000, 100_000, 10_000_000]),
            vec![1, 2, 4, 5]
        );
        let s = l.summary();
        assert_eq!(s.batches, 5);
        assert!(s.max_ns >= 2_990_000, "{s:?}");
        let mut m = BatchLatency::default();
        m.merge(&l);
        m.merge(&l);
        assert_eq!(m.summary().batches, 10);
    }
}
