//! The measured loops, shared by the criterion benches and the
//! `rstwall-bench` harness so both time exactly the same code.
//!
//! Frames are handed over in batches of [`BATCH`], as an AF_XDP worker
//! receives them: the clock is read (here: advanced) once per batch, then
//! every frame of the batch goes through
//! [`Engine::process_at_current_time`]. The parse-only baseline runs
//! [`wire::parse`] over the same frames in the same order.

use std::hint::black_box;

use rstwall_datapath::engine::{Engine, EngineConfig};
use rstwall_datapath::wire::{self, LinkType};

use crate::traffic::{Frames, Traffic};

/// Frames per batch (one clock reading each).
pub const BATCH: usize = 64;
/// The simulated clock advances this much per frame: 64-byte frames at
/// 10 GbE line rate (14.88 Mpps).
pub const NS_PER_FRAME: u64 = 67;
/// The simulated clock starts here (2023-11-14), so second boundaries,
/// expiry and alert ticks fall where they would on a live system.
pub const START_NS: u64 = 1_700_000_000 * 1_000_000_000;

/// An engine sized for `traffic` so no flow is ever evicted: every flow
/// plus a quarter of headroom.
pub fn engine_config(traffic: &Traffic) -> EngineConfig {
    EngineConfig {
        flow_capacity: traffic.flows + traffic.flows / 4,
        ..EngineConfig::default()
    }
}

/// Where the next batch starts in a frame set that is replayed endlessly.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cursor {
    next: usize,
}

impl Cursor {
    /// The next batch's frame range (shorter at the end of the set).
    #[inline]
    fn batch(&mut self, frames: &Frames) -> std::ops::Range<usize> {
        let start = self.next;
        let end = (start + BATCH).min(frames.len());
        self.next = if end == frames.len() { 0 } else { end };
        start..end
    }
}

/// An engine that has seen every flow's handshake and one full pass, with
/// its clock and its place in the steady-state frames.
pub struct EngineLoop {
    pub engine: Engine,
    now_ns: u64,
    cursor: Cursor,
}

impl EngineLoop {
    /// Build the engine, run the handshakes and one steady pass: from then
    /// on every batch is steady state.
    pub fn warmed(cfg: &EngineConfig, traffic: &Traffic) -> EngineLoop {
        let mut l = EngineLoop {
            engine: Engine::new(cfg),
            now_ns: START_NS,
            cursor: Cursor::default(),
        };
        let mut hs = Cursor::default();
        for _ in 0..traffic.handshakes.len().div_ceil(BATCH) {
            l.batch_from(&traffic.handshakes, &mut hs);
        }
        l.run(&traffic.steady, traffic.steady.len().div_ceil(BATCH));
        l
    }

    /// Process `batches` batches of `frames` from where the last call
    /// stopped; returns the frames processed.
    #[inline(never)]
    pub fn run(&mut self, frames: &Frames, batches: usize) -> u64 {
        let mut cursor = self.cursor;
        let mut n = 0;
        for _ in 0..batches {
            n += self.batch_from(frames, &mut cursor);
        }
        self.cursor = cursor;
        n
    }

    #[inline(always)]
    fn batch_from(&mut self, frames: &Frames, cursor: &mut Cursor) -> u64 {
        let range = cursor.batch(frames);
        let n = range.len() as u64;
        self.now_ns += n * NS_PER_FRAME;
        self.engine.advance(self.now_ns);
        for frame in frames.range(range) {
            black_box(
                self.engine
                    .process_at_current_time(LinkType::Ethernet, frame),
            );
        }
        n
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }
}

/// The baseline: parse the same frames the same way, do nothing else.
#[derive(Default)]
pub struct ParseLoop {
    cursor: Cursor,
}

impl ParseLoop {
    #[inline(never)]
    pub fn run(&mut self, frames: &Frames, batches: usize) -> u64 {
        let mut n = 0;
        for _ in 0..batches {
            let range = self.cursor.batch(frames);
            n += range.len() as u64;
            for frame in frames.range(range) {
                let _ = black_box(wire::parse(LinkType::Ethernet, frame));
            }
        }
        n
    }
}
