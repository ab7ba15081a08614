//! The measured loops, shared by the criterion benches and the
//! `rstwall-bench` harness so both time exactly the same code.
//!
//! Frames are handed over in batches of [`BATCH`], as an AF_XDP worker
//! receives them: the clock is read (here: advanced) once per batch, then
//! the batch goes through [`Engine::process_batch_with`], as the worker
//! does ([`EnginePath::Batch`]), or every frame of it through
//! [`Engine::process_at_current_time`] ([`EnginePath::PerFrame`]; set
//! `RSTWALL_BENCH_ENGINE_PATH=per-frame` to time that in the harness).
//! The parse-only baseline runs [`wire::parse`] over the same frames in
//! the same order.

use std::hint::black_box;

use rstwall_engine::engine::{Engine, EngineConfig};
use rstwall_engine::wire::{self, LinkType};

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

/// How the engine loop hands frames to the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnginePath {
    /// [`Engine::process_batch_with`], as the AF_XDP worker does.
    Batch,
    /// [`Engine::process_at_current_time`] for each frame.
    PerFrame,
}

impl EnginePath {
    /// `RSTWALL_BENCH_ENGINE_PATH` (`batch` or `per-frame`), else batch.
    pub fn from_env() -> EnginePath {
        match std::env::var("RSTWALL_BENCH_ENGINE_PATH").as_deref() {
            Ok("per-frame") => EnginePath::PerFrame,
            Ok("batch") | Err(_) => EnginePath::Batch,
            Ok(other) => panic!("RSTWALL_BENCH_ENGINE_PATH: `{other}` is not batch or per-frame"),
        }
    }
}

/// An engine that has seen every flow's handshake and one full pass, with
/// its clock and its place in the steady-state frames.
pub struct EngineLoop {
    pub engine: Engine,
    now_ns: u64,
    cursor: Cursor,
    path: EnginePath,
}

impl EngineLoop {
    /// Build the engine, run the handshakes and one steady pass: from then
    /// on every batch is steady state. The path is
    /// [`EnginePath::from_env`].
    pub fn warmed(cfg: &EngineConfig, traffic: &Traffic) -> EngineLoop {
        Self::warmed_on(EnginePath::from_env(), cfg, traffic)
    }

    /// [`Self::warmed`] on a given path.
    pub fn warmed_on(path: EnginePath, cfg: &EngineConfig, traffic: &Traffic) -> EngineLoop {
        let mut l = EngineLoop {
            engine: Engine::new(cfg),
            now_ns: START_NS,
            cursor: Cursor::default(),
            path,
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
        match self.path {
            EnginePath::Batch => {
                self.engine
                    .process_batch_with(LinkType::Ethernet, frames.range(range), |_, j| {
                        black_box(j.verdict());
                    })
            }
            EnginePath::PerFrame => {
                for frame in frames.range(range) {
                    black_box(
                        self.engine
                            .process_at_current_time(LinkType::Ethernet, frame),
                    );
                }
            }
        }
        n
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    pub fn path(&self) -> EnginePath {
        self.path
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

#[cfg(test)]
mod tests {
    //! The batch path ([`Engine::process_batch`], as the AF_XDP worker
    //! runs it) gives exactly what [`Engine::process_at_current_time`]
    //! gives frame by frame: every outcome, every block request, and in the
    //! end every counter, table and alert.

    use std::net::IpAddr;
    use std::path::PathBuf;

    use rstwall_engine::engine::{Engine, EngineConfig, Outcome};
    use rstwall_engine::flow::Timeouts;
    use rstwall_engine::policy::{PolicyConfig, Reason};
    use rstwall_engine::telemetry::{AlertRule, TelemetryConfig};
    use rstwall_engine::wire::LinkType;
    use rstwall_pcap::capture::CaptureReader;

    use crate::traffic::{Traffic, TrafficConfig};

    /// Frames handed over together, at one clock reading.
    struct Batch {
        now_ns: u64,
        link: LinkType,
        frames: Vec<Vec<u8>>,
    }

    /// What a run produced, to compare.
    #[derive(Debug, PartialEq)]
    struct Run {
        outcomes: Vec<Outcome>,
        blocks: Vec<IpAddr>,
    }

    fn per_frame(engine: &mut Engine, batches: &[Batch]) -> Run {
        let mut run = Run {
            outcomes: Vec::new(),
            blocks: Vec::new(),
        };
        for b in batches {
            engine.advance(b.now_ns);
            for f in &b.frames {
                run.outcomes.push(engine.process_at_current_time(b.link, f));
            }
            engine.drain_block_requests(|a| run.blocks.push(a));
        }
        run
    }

    fn batched(engine: &mut Engine, batches: &[Batch]) -> Run {
        let mut run = Run {
            outcomes: Vec::new(),
            blocks: Vec::new(),
        };
        for b in batches {
            engine.advance(b.now_ns);
            let frames: Vec<&[u8]> = b.frames.iter().map(Vec::as_slice).collect();
            let mut out = vec![Outcome::UNTRACKED; frames.len()];
            engine.process_batch(b.link, &frames, &mut out);
            run.outcomes.extend(out);
            engine.drain_block_requests(|a| run.blocks.push(a));
        }
        run
    }

    /// Both paths over `batches` with fresh engines of `cfg`: identical in
    /// everything. Returns the batched engine and its block requests.
    fn assert_same(what: &str, cfg: &EngineConfig, batches: &[Batch]) -> (Engine, Vec<IpAddr>) {
        let (mut a, mut b) = (Engine::new(cfg), Engine::new(cfg));
        let (ra, rb) = (per_frame(&mut a, batches), batched(&mut b, batches));
        assert_eq!(ra.outcomes.len(), rb.outcomes.len(), "{what}");
        for (i, (x, y)) in ra.outcomes.iter().zip(&rb.outcomes).enumerate() {
            assert_eq!(x, y, "{what}: frame {i}");
        }
        assert_eq!(ra.blocks, rb.blocks, "{what}: block requests");
        a.finish();
        b.finish();
        assert_eq!(a.snapshot(usize::MAX), b.snapshot(usize::MAX), "{what}");
        assert_eq!(a.flow_stats(), b.flow_stats(), "{what}");
        assert_eq!(a.block_stats(), b.block_stats(), "{what}");
        let flows = |e: &Engine| {
            let now = (e.now_ns() / 1_000_000_000) as u32;
            let mut v: Vec<String> = e
                .flows()
                .iter(now)
                .map(|(k, f, idle)| format!("{k:?} {f:?} {idle}"))
                .collect();
            v.sort();
            v
        };
        assert_eq!(flows(&a), flows(&b), "{what}: flow tables");
        (b, rb.blocks)
    }

    /// The strict configuration's run went through what it is there for.
    fn assert_covers(what: &str, engine: &Engine, blocks: &[IpAddr]) {
        let s = engine.snapshot(usize::MAX);
        let f = engine.flow_stats();
        assert!(
            f.evicted > 0 && f.expired > 0 && f.table_full > 0,
            "{what}: {f:?}"
        );
        use Reason::*;
        let reasons = [
            NotRst, AllowList, DenyList, ClassPass, ClassDrop, WithinRate, SourceRate,
        ];
        for reason in reasons {
            assert!(
                s.counters.reasons[reason.index()] > 0,
                "{what}: no {reason} verdict"
            );
        }
        assert!(s.counters.dropped > 0, "{what}: nothing dropped");
        assert!(!blocks.is_empty(), "{what}: no block request");
        assert!(!s.alerts.is_empty(), "{what}: no alert");
    }

    /// Enforce, both lists, three rate-limited classes, blocks: every
    /// branch of the policy (client `n` is 198.18.0.0 + n); as `rstwall
    /// policy set` would write it, one assignment after another.
    fn strict_policy() -> PolicyConfig {
        let mut policy = PolicyConfig::default();
        "mode=enforce; actions.in_window=ratelimit; actions.no_flow=ratelimit; \
         actions.invalid_flags=ratelimit; actions.out_of_window=drop; \
         ratelimit.per_source_rate=2; ratelimit.per_source_burst=2; ratelimit.global_rate=50; \
         ratelimit.global_burst=50; ratelimit.source_table_size=32; ratelimit.block_seconds=1; \
         lists.allow=198.18.1.0/24,2001:2:0:c::100/120; \
         lists.deny=198.18.2.0/24,2001:2:0:c::200/120"
            .split(';')
            .for_each(|a| policy.set_assignment(a).expect("test policy"));
        policy
    }

    /// The configurations compared: the default one, and a small, strict
    /// one whose tables evict and whose flows expire.
    fn configs() -> Vec<(&'static str, EngineConfig)> {
        let strict = EngineConfig {
            flow_capacity: 1500,
            timeouts: Timeouts {
                handshake: 1,
                established: 1,
                closing: 1,
                closed: 1,
            },
            telemetry: TelemetryConfig {
                hosts: 300,
                ports: 4,
            },
            alerts: AlertRule::defaults(),
            policy: strict_policy(),
        };
        vec![("default", EngineConfig::default()), ("strict", strict)]
    }

    /// The bench traffic (handshakes, then three passes) cut into batches
    /// of `size` frames, 400 µs of clock per frame (a pass is 8 s: flows
    /// expire, seconds and alerts tick).
    fn traffic_batches(t: &Traffic, size: usize) -> Vec<Batch> {
        let mut frames: Vec<&[u8]> = t.handshakes.iter().collect();
        for _ in 0..3 {
            frames.extend(t.steady.iter());
        }
        let mut now = super::START_NS;
        frames
            .chunks(size)
            .map(|c| {
                now += c.len() as u64 * 400_000;
                Batch {
                    now_ns: now,
                    link: LinkType::Ethernet,
                    frames: c.iter().map(|f| f.to_vec()).collect(),
                }
            })
            .collect()
    }

    #[test]
    fn batches_judge_the_bench_traffic_as_frame_by_frame() {
        let t = Traffic::generate(&TrafficConfig {
            flows: 2000,
            packets: 20_000,
            ..TrafficConfig::default()
        });
        for (name, cfg) in configs() {
            // Under, at and over the staging size, and one frame.
            for size in [1, 13, 64, 100, 256] {
                let what = format!("{name} config, batches of {size}");
                let (engine, blocks) = assert_same(&what, &cfg, &traffic_batches(&t, size));
                if name == "strict" {
                    assert_covers(&what, &engine, &blocks);
                }
            }
        }
    }

    /// Counts this thread's calls into the allocator (as
    /// `tests/tests/no_alloc.rs` does for the frame-by-frame path).
    #[global_allocator]
    static ALLOCATOR: crate::alloc::Counting = crate::alloc::Counting;

    /// The batch path, driven as the worker drives it (clock, batch, block
    /// requests drained), allocates nothing once the engine is built.
    #[test]
    fn batch_path_allocates_nothing() {
        let t = Traffic::generate(&TrafficConfig {
            flows: 2000,
            packets: 20_000,
            ..TrafficConfig::default()
        });
        let batches = traffic_batches(&t, 64);
        let (_, cfg) = configs().pop().expect("strict config");
        let mut engine = Engine::new(&cfg);
        let (warm, measured) = batches.split_at(batches.len() / 3);
        let frames: Vec<Vec<&[u8]>> = measured
            .iter()
            .map(|b| b.frames.iter().map(Vec::as_slice).collect())
            .collect();
        // Frame lists are built before the measured window.
        fn drive(engine: &mut Engine, batches: &[Batch], frames: &[Vec<&[u8]>]) {
            for (b, f) in batches.iter().zip(frames) {
                engine.advance(b.now_ns);
                engine.process_batch_with(b.link, f.iter().copied(), |_, j| {
                    std::hint::black_box(j.verdict());
                });
                engine.drain_block_requests(|a| {
                    std::hint::black_box(a);
                });
            }
        }
        let warm_frames: Vec<Vec<&[u8]>> = warm
            .iter()
            .map(|b| b.frames.iter().map(Vec::as_slice).collect())
            .collect();
        drive(&mut engine, warm, &warm_frames);
        let (before, flows) = (crate::alloc::counts(), engine.flow_stats());
        drive(&mut engine, measured, &frames);
        let calls = crate::alloc::counts().since(before).total();
        let f = engine.flow_stats();
        assert!(
            f.created > flows.created && f.expired > flows.expired && f.evicted > flows.evicted
        );
        assert!(engine.block_stats().requested > 0);
        assert_eq!(calls, 0, "the batch path called the allocator");
    }

    /// The public pcap corpus (`RSTWALL_CORPUS`, else `../shared/corpus`
    /// beside the repository), as the integration tests find it.
    fn corpus_dir() -> PathBuf {
        if let Ok(dir) = std::env::var("RSTWALL_CORPUS") {
            return PathBuf::from(dir);
        }
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus");
        assert!(
            dir.join("expected.tsv").is_file(),
            "pcap corpus not found at {} (set RSTWALL_CORPUS)",
            dir.display()
        );
        dir
    }

    fn pcaps(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("corpus directory")
            .map(|e| e.expect("corpus entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                pcaps(&p, out);
            } else if p
                .extension()
                .is_some_and(|e| e == "pcap" || e == "pcapng" || e == "cap")
            {
                out.push(p);
            }
        }
    }

    /// Every frame of every capture (malformed, non-TCP, VLAN, IPv6
    /// extension headers, every link type we read), in batches of up to
    /// 100 frames of one link type, each at its first frame's time.
    #[test]
    fn batches_judge_the_corpus_as_frame_by_frame() {
        let mut files = Vec::new();
        pcaps(&corpus_dir(), &mut files);
        assert!(files.len() > 900, "{} capture files", files.len());
        let mut batches: Vec<Batch> = Vec::new();
        let mut frames = 0;
        for path in &files {
            let Ok(mut reader) = CaptureReader::open(path) else {
                continue;
            };
            while let Ok(Some(f)) = reader.next_frame() {
                let Some(link) = f.link else { continue };
                frames += 1;
                match batches.last_mut() {
                    Some(b) if b.link == link && b.frames.len() < 100 => {
                        b.frames.push(f.data.to_vec())
                    }
                    _ => batches.push(Batch {
                        now_ns: f.timestamp_ns,
                        link,
                        frames: vec![f.data.to_vec()],
                    }),
                }
            }
        }
        assert!(frames > 10_000, "{frames} frames");
        for (name, cfg) in configs() {
            let what = format!("corpus, {name} config");
            let (engine, _) = assert_same(&what, &cfg, &batches);
            let c = engine.snapshot(0).counters;
            assert!(
                c.parse_errors.iter().sum::<u64>() > 0 && c.not_tcp.iter().sum::<u64>() > 0,
                "{what}: {c:?}"
            );
        }
    }
}
