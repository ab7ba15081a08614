//! `rstwall-bench engine`: the parse-only and engine loops in alternating
//! timed rounds, medians over rounds, and a markdown report.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rstwall_pcap::analyze::format_ts;

use crate::run::{engine_config, EngineLoop, ParseLoop, BATCH};
use crate::traffic::{FrameCounts, Traffic, TrafficConfig};

/// Which loops to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loops {
    Both,
    ParseOnly,
    EngineOnly,
}

/// Validated options of one run.
#[derive(Clone, Debug)]
pub struct Options {
    pub traffic: TrafficConfig,
    pub rounds: usize,
    pub round: Duration,
    pub loops: Loops,
}

/// Timing is checked after this many batches (~65k frames): often enough
/// for a round to end close to its length, rarely enough to cost nothing.
const BATCHES_PER_CHECK: usize = 1024;

/// One timed round: frames processed and time taken.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    pub frames: u64,
    pub elapsed: Duration,
}

impl Round {
    pub fn ns_per_frame(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.frames as f64
    }
}

/// Median of per-round ns/frame, with the spread.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub median_ns: f64,
    pub min_ns: f64,
    pub max_ns: f64,
}

impl Summary {
    fn of(rounds: &[Round]) -> Option<Summary> {
        let mut ns: Vec<f64> = rounds.iter().map(Round::ns_per_frame).collect();
        ns.sort_by(f64::total_cmp);
        let median = match ns.len() {
            0 => return None,
            n if n % 2 == 1 => ns[n / 2],
            n => (ns[n / 2 - 1] + ns[n / 2]) / 2.0,
        };
        Some(Summary {
            median_ns: median,
            min_ns: ns[0],
            max_ns: ns[ns.len() - 1],
        })
    }

    /// Million frames per second on this one core.
    pub fn mpps(&self) -> f64 {
        1e3 / self.median_ns
    }
}

/// Facts about the machine, for the report.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub kernel: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == "model name").then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
        }
    }
}

/// Everything one run measured.
pub struct Report {
    pub options: Options,
    pub machine: Machine,
    pub date: String,
    pub mix: FrameCounts,
    pub frame_buffer_bytes: usize,
    pub flows_tracked: usize,
    pub flow_capacity: usize,
    pub bytes_per_flow: usize,
    pub evicted: u64,
    pub parse: Vec<Round>,
    pub engine: Vec<Round>,
}

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
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Report {
        machine: Machine::probe(),
        date: format_ts(now_ns)[..10].to_string(),
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

impl Report {
    pub fn parse_summary(&self) -> Option<Summary> {
        Summary::of(&self.parse)
    }

    pub fn engine_summary(&self) -> Option<Summary> {
        Summary::of(&self.engine)
    }

    /// The figures as a markdown section.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let o = &self.options;
        let m = &self.machine;
        let _ = writeln!(
            s,
            "Machine: {} ({} logical CPUs), Linux {}. Date: {}.\n",
            m.cpu, m.cpus, m.kernel, self.date
        );
        let _ = writeln!(
            s,
            "Workload: {} concurrent flows, one core, batches of {BATCH} frames, \
             {} rounds of {:.1} s per loop, medians (min–max over rounds).\n",
            o.traffic.flows,
            o.rounds,
            o.round.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "| loop | Mpps (median) | ns/frame (median) | ns/frame min–max |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|");
        let (p, e) = (self.parse_summary(), self.engine_summary());
        for (name, sum) in [
            ("parse-only (`wire::parse`)", p),
            ("engine (`Engine::process`)", e),
        ] {
            if let Some(x) = sum {
                let _ = writeln!(
                    s,
                    "| {name} | {:.2} | {:.2} | {:.2}–{:.2} |",
                    x.mpps(),
                    x.median_ns,
                    x.min_ns,
                    x.max_ns
                );
            }
        }
        if let (Some(p), Some(e)) = (p, e) {
            let _ = writeln!(
                s,
                "\nEngine / parse-only: {:.2}× the time per frame ({:.1}% of the parse-only rate). \
                 10 GbE line rate at 64-byte frames is 14.88 Mpps: the engine reaches {:.0}% of it on one core.",
                e.median_ns / p.median_ns,
                100.0 * p.median_ns / e.median_ns,
                100.0 * e.mpps() / 14.88
            );
        }
        let _ = writeln!(
            s,
            "\nFlow table: {} flows tracked, capacity {}, {} bytes per flow of capacity \
             (`FlowTable::bytes_per_flow`), {} evicted.",
            self.flows_tracked, self.flow_capacity, self.bytes_per_flow, self.evicted
        );
        let _ = writeln!(
            s,
            "\nSteady-state pass ({:.1} MiB of frames): {}.",
            self.frame_buffer_bytes as f64 / (1 << 20) as f64,
            self.mix.describe()
        );
        s
    }
}
