//! The engine's steady-state per-packet path allocates nothing.
//!
//! A counting global allocator (`rstwall_bench::alloc`) counts
//! allocations, reallocations and frees of the current thread only (a
//! thread-local counter), and this is a test binary of its own so no other
//! test's allocator traffic can reach it.
//! Setup allocates freely; then every frame of the measured window — RSTs of
//! every class, SYNs creating flows, FINs, deny- and allow-listed sources,
//! rate-limited classes, and the per-second work (flow expiry, telemetry
//! ticks, alert evaluation) over several second boundaries — must cost zero
//! calls into the allocator.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};

use rstwall_bench::alloc::{allocations_during, Counting, Counts};
use rstwall_bench::frame::TcpRepr;
use rstwall_bench::traffic::{Frames, Label, Traffic, TrafficConfig};
use rstwall_engine::engine::{Engine, EngineConfig};
use rstwall_engine::flow::Timeouts;
use rstwall_engine::policy::{PolicyConfig, Reason};
use rstwall_engine::telemetry::{AlertRule, Counters, Metric, TelemetryConfig, ALERT_HOLD_DOWN};
use rstwall_engine::wire::{LinkType, TcpFlags};
use rstwall_engine::RstClass;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BATCH: usize = 64;
/// Simulated time per frame: a pass of tens of thousands of frames spans
/// seconds, so expiry and alert ticks run many times in the window.
const NS_PER_FRAME: u64 = 40_000;

/// An engine driven as a worker drives it: one clock reading per batch.
struct Worker {
    engine: Engine,
    now_ns: u64,
}

impl Worker {
    fn run(&mut self, frames: &Frames) {
        let mut start = 0;
        while start < frames.len() {
            let end = (start + BATCH).min(frames.len());
            self.now_ns += (end - start) as u64 * NS_PER_FRAME;
            self.engine.advance(self.now_ns);
            for frame in frames.range(start..end) {
                black_box(
                    self.engine
                        .process_at_current_time(LinkType::Ethernet, frame),
                );
            }
            start = end;
        }
    }

    /// Time passes with no traffic.
    fn idle(&mut self, secs: u64) {
        self.now_ns += secs * 1_000_000_000;
        self.engine.advance(self.now_ns);
    }

    fn second(&self) -> u64 {
        self.now_ns / 1_000_000_000
    }
}

/// Enforce, with lists covering some clients and rate limits on three
/// classes, so every branch of the policy runs. Client hosts `n` are
/// 198.18.0.0 + n (2001:2:0:c::n): flows 256..512 come from the allowed
/// /24, flows 512..768 from the denied one.
const POLICY: &str = r#"
mode = "enforce"

[actions]
in_window = "ratelimit"
no_flow = "ratelimit"
invalid_flags = "ratelimit"
out_of_window = "drop"

[ratelimit]
per_source_rate = 5
per_source_burst = 5
global_rate = 1000
global_burst = 1000
source_table_size = 64

[lists]
allow = ["198.18.1.0/24", "2001:2:0:c::100/120"]
deny = ["198.18.2.0/24", "2001:2:0:c::200/120"]
"#;

fn config(alerts: Vec<AlertRule>) -> EngineConfig {
    EngineConfig {
        // Room for every flow of both traffic sets: no eviction needed.
        flow_capacity: 8192,
        // Short, so flows expire inside the measured window.
        timeouts: Timeouts {
            handshake: 2,
            established: 30,
            closing: 2,
            closed: 2,
        },
        // Small, so host and port entries are evicted all the time.
        telemetry: TelemetryConfig {
            hosts: 512,
            ports: 4,
        },
        alerts,
        policy: PolicyConfig::from_toml_str(POLICY).expect("test policy"),
    }
}

/// One rule per metric, evaluated every second, that never fires: alert
/// evaluation runs without changing any alert's level.
fn quiet_alerts() -> Vec<AlertRule> {
    let metrics = [
        Metric::FailedConnects,
        Metric::Rst,
        Metric::RstClass(RstClass::InWindow),
        Metric::Syn,
        Metric::Dropped,
    ];
    metrics
        .into_iter()
        .enumerate()
        .map(|(i, metric)| AlertRule {
            name: format!("quiet_{i}"),
            metric,
            warn: 1e15,
            critical: 1e15,
            window: 5,
        })
        .collect()
}

/// Flows 0..3000, warmed up; flows 3000..4000 seen first in the window.
struct Setup {
    worker: Worker,
    old: Traffic,
    new: Traffic,
    /// A burst of RSTs from one source, to empty its bucket.
    hammer: Frames,
}

/// RSTs for absent flows: a burst from one source (its bucket runs dry),
/// then a flood from many sources (the global budget runs dry, and the
/// per-source table evicts).
fn hammer() -> Frames {
    let rst = |src: Ipv4Addr, i: u32| {
        let mut repr = TcpRepr::new(
            SocketAddr::new(src.into(), 4444),
            "198.19.0.1:443".parse().unwrap(),
            TcpFlags::RST,
        );
        repr.seq = i.wrapping_mul(0x9e37_79b9);
        (repr, Label::Rst(RstClass::NoFlow))
    };
    let one = Ipv4Addr::new(198, 19, 200, 1);
    let many = |i: u32| Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 208, 0)) + i);
    let segments: Vec<_> = (0..64)
        .map(|i| rst(one, i))
        .chain((0..1500).map(|i| rst(many(i), i)))
        .collect();
    Frames::from_segments(&segments)
}

fn setup(alerts: Vec<AlertRule>) -> Setup {
    let old = Traffic::generate(&TrafficConfig {
        flows: 3000,
        packets: 40_000,
        ..TrafficConfig::default()
    });
    let new = Traffic::generate(&TrafficConfig {
        flows: 1000,
        packets: 12_000,
        first_flow: 3000,
        seed: 7,
        ..TrafficConfig::default()
    });
    let mut worker = Worker {
        engine: Engine::new(&config(alerts)),
        now_ns: 1_700_000_000 * 1_000_000_000,
    };
    // Warm-up: handshakes, then two passes (two seconds of clock), so every
    // table has its entries and every per-second path has run once.
    worker.run(&old.handshakes);
    worker.run(&old.steady);
    worker.run(&old.steady);
    let hammer = hammer();
    worker.run(&hammer);
    Setup {
        worker,
        old,
        new,
        hammer,
    }
}

fn diff(after: &Counters, before: &Counters) -> (Vec<u64>, Vec<u64>) {
    let classes = RstClass::ALL
        .iter()
        .map(|c| after.rst_total(*c) - before.rst_total(*c))
        .collect();
    let reasons = Reason::ALL
        .iter()
        .map(|r| after.reasons[r.index()] - before.reasons[r.index()])
        .collect();
    (classes, reasons)
}

#[test]
fn steady_state_packet_path_allocates_nothing() {
    let Setup {
        mut worker,
        old,
        new,
        hammer,
    } = setup(quiet_alerts());
    let counters = worker.engine.telemetry().counters;
    let flows = worker.engine.flow_stats();
    let second = worker.second();

    let cost = allocations_during(|| {
        // New flows: SYNs into a table with room, then their first pass.
        worker.run(&new.handshakes);
        worker.run(&new.steady);
        // The new flows go idle long enough for some to expire.
        for _ in 0..4 {
            worker.run(&old.steady);
            worker.run(&hammer);
        }
        worker.run(&new.steady);
    });

    // The window covered what it claims to.
    let (classes, reasons) = diff(&worker.engine.telemetry().counters, &counters);
    for (class, n) in RstClass::ALL.iter().zip(&classes) {
        assert!(*n > 0, "no {class} RST in the window");
    }
    for reason in [
        Reason::NotRst,
        Reason::AllowList,
        Reason::DenyList,
        Reason::ClassPass,
        Reason::ClassDrop,
        Reason::WithinRate,
        Reason::SourceRate,
        Reason::GlobalRate,
    ] {
        assert!(
            reasons[reason.index()] > 0,
            "no {reason} verdict in the window"
        );
    }
    let now = worker.engine.flow_stats();
    assert!(now.created > flows.created, "no flow created");
    assert!(now.expired > flows.expired, "no flow expired");
    assert_eq!(now.evicted, 0, "the table was meant to have room");
    assert!(worker.second() - second >= 5, "too few second boundaries");

    assert_eq!(
        cost,
        Counts::ZERO,
        "the per-packet path called the allocator"
    );
}

/// With `ratelimit.block_seconds` on, a source over its rate is asked to be
/// blocked on the per-packet path (into the policy's fixed ring), and the
/// ring is drained between batches, as a worker does.
#[test]
fn block_requests_allocate_nothing() {
    let mut cfg = config(quiet_alerts());
    cfg.policy
        .set("ratelimit.block_seconds", "1")
        .expect("block_seconds");
    let mut worker = Worker {
        engine: Engine::new(&cfg),
        now_ns: 1_700_000_000 * 1_000_000_000,
    };
    let hammer = hammer();
    worker.run(&hammer);
    worker.engine.drain_block_requests(|_| {});
    let before = worker.engine.block_stats();

    let mut drained = 0u64;
    let cost = allocations_during(|| {
        for _ in 0..5 {
            // A second later the source's bucket and block period are
            // both renewed: it runs dry and is asked for again.
            worker.idle(1);
            worker.run(&hammer);
            worker.engine.drain_block_requests(|src| {
                black_box(src);
                drained += 1;
            });
        }
    });

    let after = worker.engine.block_stats();
    assert_eq!(after.requested - before.requested, 5, "{after:?}");
    assert_eq!(drained, 5);
    assert_eq!(after.lost, 0);
    assert_eq!(cost, Counts::ZERO, "block requests called the allocator");
}

/// Alert levels changing (here: seconds full of RSTs, then idle seconds
/// past the hold-down) is part of the per-second work a worker does between
/// batches.
#[test]
fn alert_level_changes_allocate_nothing() {
    let Setup {
        mut worker, old, ..
    } = setup(AlertRule::defaults());
    let before = worker.engine.snapshot(0).alerts;
    let cost = allocations_during(|| {
        for _ in 0..3 {
            worker.run(&old.steady);
            worker.idle(2 * u64::from(ALERT_HOLD_DOWN));
        }
    });
    assert_ne!(
        worker.engine.snapshot(0).alerts,
        before,
        "no alert level changed"
    );
    assert_eq!(cost, Counts::ZERO, "alert evaluation called the allocator");
}

/// The counter sees what it must see, or a zero above would prove nothing.
#[test]
fn the_counter_counts_this_thread() {
    let cost = allocations_during(|| {
        let mut v: Vec<u64> = black_box(Vec::with_capacity(1));
        v.extend([1, 2, 3]);
        black_box(&v);
    });
    assert_eq!(
        cost,
        Counts {
            allocs: 1,
            reallocs: 1,
            frees: 1
        }
    );
    // Another thread's allocations are not ours (spawning one costs this
    // thread a few).
    let cost = allocations_during(|| {
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..100 {
                    black_box(vec![0u8; 64]);
                }
            });
        })
    });
    assert!(cost.allocs < 100, "{cost:?}");
}
