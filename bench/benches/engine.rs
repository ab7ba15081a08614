//! `parse_only` (the baseline: `wire::parse` over the frames), `engine`
//! (`Engine::process_batch_with`, as the AF_XDP worker runs it: parse, flow
//! update, RST judgment, policy, telemetry, with the batch's table entries
//! prefetched) and `engine_per_frame` (`Engine::process_at_current_time`
//! for each frame, as `rstwall analyze` runs it) over 100,000 concurrent
//! flows in steady state, one batch of frames per iteration, throughput in
//! frames.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rstwall_bench::engine::{engine_config, EngineLoop, EnginePath, ParseLoop, BATCH};
use rstwall_bench::traffic::{Traffic, TrafficConfig};

/// The daemon's allocator, so the tables sit in memory as they do there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn engine(c: &mut Criterion) {
    let traffic = Traffic::generate(&TrafficConfig::default());
    let frames = &traffic.steady;
    let id = format!("{}k_flows", traffic.flows / 1000);

    let mut g = c.benchmark_group("parse_only");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut parse = ParseLoop::default();
    g.bench_function(&id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            parse.run(frames, iters as usize);
            start.elapsed()
        })
    });
    g.finish();

    for (group, path) in [
        ("engine", EnginePath::Batch),
        ("engine_per_frame", EnginePath::PerFrame),
    ] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(BATCH as u64));
        let mut engine = EngineLoop::warmed_on(path, &engine_config(&traffic), &traffic);
        g.bench_function(&id, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                engine.run(frames, iters as usize);
                start.elapsed()
            })
        });
        g.finish();
        assert_eq!(
            engine.engine.flow_stats().evicted,
            0,
            "the table must hold every flow"
        );
    }
}

criterion_group!(benches, engine);
criterion_main!(benches);
