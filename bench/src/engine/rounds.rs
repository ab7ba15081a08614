//! The engine run: both loops warmed, then alternating timed rounds.

use std::time::{Duration, Instant};

use super::loops::{engine_config, EngineLoop, ParseLoop, BATCH};
use super::options::{Loops, Options};
use super::report::{Report, Round};
use crate::cpu::Machine;
use crate::traffic::Traffic;

/// Timing is checked after this many batches (~65k frames): often enough
/// for a round to end close to its length, rarely enough to cost nothing.
const BATCHES_PER_CHECK: usize = 1024;

/// Time `step` (which runs `BATCHES_PER_CHECK` batches and returns the
/// frames done) until `length` has passed.
fn round(length: Duration, mut step: impl FnMut() -> u64) -> Round {
    let start = Instant::now();
    let mut frames = 0;
    loop {
        frames += step();
        let elapsed = start.elapsed();
        if elapsed >= length {
            return Round { frames, elapsed };
        }
    }
}

/// Generate the traffic, warm both loops, then alternate timed rounds.
/// `progress` sees one line per step.
pub fn run(options: Options, mut progress: impl FnMut(&str)) -> Report {
    let t = Instant::now();
    let traffic = Traffic::generate(&options.traffic);
    progress(&format!(
        "generated {} flows in {:.1} s; steady pass: {}",
        traffic.flows,
        t.elapsed().as_secs_f64(),
        traffic.steady.counts().describe()
    ));
    let cfg = engine_config(&traffic);
    let t = Instant::now();
    let mut engine = EngineLoop::warmed(&cfg, &traffic);
    progress(&format!(
        "warmed the engine (handshakes + one pass) in {:.1} s: {} flows tracked",
        t.elapsed().as_secs_f64(),
        engine.engine.flows().len()
    ));
    let mut parse = ParseLoop::default();
    let frames = &traffic.steady;
    parse.run(frames, frames.len().div_ceil(BATCH));

    let mut parse_rounds = Vec::new();
    let mut engine_rounds = Vec::new();
    for i in 1..=options.rounds {
        if options.loops != Loops::EngineOnly {
            let r = round(options.round, || parse.run(frames, BATCHES_PER_CHECK));
            progress(&format!(
                "round {i}/{}: parse-only {:.2} ns/frame ({:.2} Mpps)",
                options.rounds,
                r.ns_per_frame(),
                1e3 / r.ns_per_frame()
            ));
            parse_rounds.push(r);
        }
        if options.loops != Loops::ParseOnly {
            let r = round(options.round, || engine.run(frames, BATCHES_PER_CHECK));
            progress(&format!(
                "round {i}/{}: engine     {:.2} ns/frame ({:.2} Mpps)",
                options.rounds,
                r.ns_per_frame(),
                1e3 / r.ns_per_frame()
            ));
            engine_rounds.push(r);
        }
    }
    let flows = engine.engine.flows();
    Report {
        machine: Machine::describe(),
        mix: *frames.counts(),
        frame_buffer_bytes: frames.buffer_bytes(),
        flows_tracked: flows.len(),
        flow_capacity: flows.capacity(),
        bytes_per_flow: flows.bytes_per_flow(),
        evicted: engine.engine.flow_stats().evicted,
        parse: parse_rounds,
        engine: engine_rounds,
        options,
    }
}
