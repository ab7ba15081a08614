//! Live capture: the workers copy matching frames into preallocated
//! buffers, one reader (the control API's capture request) writes them out.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

use rstwall_engine::class::RstClass;
use rstwall_engine::engine::Judged;

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
/// pool is empty the frame is not captured and [`CaptureSession::lost`] counts
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
