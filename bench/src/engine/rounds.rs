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
pub fn run(options: Options, progress: impl FnMut(&str)) -> Report {
    sweep(vec![options], progress)
        .pop()
        .expect("one report per options")
}

/// One workload of a run: its traffic and both loops, warmed.
struct Workload {
    options: Options,
    traffic: Traffic,
    engine: EngineLoop,
    parse: ParseLoop,
    parse_rounds: Vec<Round>,
    engine_rounds: Vec<Round>,
}

impl Workload {
    fn warmed(options: Options, progress: &mut impl FnMut(&str)) -> Workload {
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
        let engine = EngineLoop::warmed(&cfg, &traffic);
        progress(&format!(
            "warmed the engine (handshakes + one pass) in {:.1} s: {} flows tracked",
            t.elapsed().as_secs_f64(),
            engine.engine.flows().len()
        ));
        let mut parse = ParseLoop::default();
        let frames = &traffic.steady;
        parse.run(frames, frames.len().div_ceil(BATCH));
        Workload {
            options,
            traffic,
            engine,
            parse,
            parse_rounds: Vec::new(),
            engine_rounds: Vec::new(),
        }
    }

    /// Round `i`: the parse-only loop, then the engine, as the options ask.
    fn round(&mut self, i: usize, progress: &mut impl FnMut(&str)) {
        let (o, frames) = (&self.options, &self.traffic.steady);
        let flows = o.traffic.flows;
        if o.loops != Loops::EngineOnly {
            let parse = &mut self.parse;
            let r = round(o.round, || parse.run(frames, BATCHES_PER_CHECK));
            progress(&format!(
                "round {i}/{}, {flows} flows: parse-only {:.2} ns/frame ({:.2} Mpps)",
                o.rounds,
                r.ns_per_frame(),
                1e3 / r.ns_per_frame()
            ));
            self.parse_rounds.push(r);
        }
        if o.loops != Loops::ParseOnly {
            let engine = &mut self.engine;
            let r = round(o.round, || engine.run(frames, BATCHES_PER_CHECK));
            progress(&format!(
                "round {i}/{}, {flows} flows: engine     {:.2} ns/frame ({:.2} Mpps)",
                o.rounds,
                r.ns_per_frame(),
                1e3 / r.ns_per_frame()
            ));
            self.engine_rounds.push(r);
        }
    }

    fn report(self) -> Report {
        let flows = self.engine.engine.flows();
        Report {
            machine: Machine::describe(),
            mix: *self.traffic.steady.counts(),
            frame_buffer_bytes: self.traffic.steady.buffer_bytes(),
            flows_tracked: flows.len(),
            flow_capacity: flows.capacity(),
            bytes_per_flow: flows.bytes_per_flow(),
            evicted: self.engine.engine.flow_stats().evicted,
            parse: self.parse_rounds,
            engine: self.engine_rounds,
            options: self.options,
        }
    }
}

/// Several workloads (e.g. one per flow count) in one run: all generated
/// and warmed first, then their rounds interleaved (round 1 of each, round
/// 2 of each...), so that a change in the machine's load lands on all of
/// them alike. One report per workload, in order.
pub fn sweep(options: Vec<Options>, mut progress: impl FnMut(&str)) -> Vec<Report> {
    let mut workloads: Vec<Workload> = options
        .into_iter()
        .map(|o| Workload::warmed(o, &mut progress))
        .collect();
    let rounds = workloads
        .iter()
        .map(|w| w.options.rounds)
        .max()
        .unwrap_or(0);
    for i in 1..=rounds {
        for w in workloads.iter_mut().filter(|w| i <= w.options.rounds) {
            w.round(i, &mut progress);
        }
    }
    workloads.into_iter().map(Workload::report).collect()
}
