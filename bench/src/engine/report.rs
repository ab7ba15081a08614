//! The engine run's figures: timed rounds, medians, the markdown report.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cpu::Machine;
use crate::stats::{median, min_max};
use crate::traffic::FrameCounts;

use super::loops::BATCH;
use super::options::Options;

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
        let ns: Vec<f64> = rounds.iter().map(Round::ns_per_frame).collect();
        let (min_ns, max_ns) = min_max(&ns);
        Some(Summary {
            median_ns: median(ns)?,
            min_ns,
            max_ns,
        })
    }

    /// Million frames per second on this one core.
    pub fn mpps(&self) -> f64 {
        1e3 / self.median_ns
    }
}

/// Everything one run measured.
pub struct Report {
    pub options: Options,
    /// The machine, and the date of the run.
    pub machine: Machine,
    pub mix: FrameCounts,
    pub frame_buffer_bytes: usize,
    pub flows_tracked: usize,
    pub flow_capacity: usize,
    pub bytes_per_flow: usize,
    pub evicted: u64,
    pub parse: Vec<Round>,
    pub engine: Vec<Round>,
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
            m.cpu_model, m.cpus, m.kernel, m.date
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

/// The sweep's table: the engine's rate at each flow count beside the
/// first count's, from one run whose rounds were interleaved.
pub fn sweep_markdown(reports: &[Report]) -> String {
    let mut s = String::new();
    let base = reports.first().and_then(Report::engine_summary);
    let _ = writeln!(
        s,
        "| flows | engine Mpps (median) | ns/frame min–max | ÷ first | bytes per flow | evicted |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        let Some(e) = r.engine_summary() else {
            continue;
        };
        let ratio = base.map_or(f64::NAN, |b| e.mpps() / b.mpps());
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2}–{:.2} | {:.2} | {} | {} |",
            r.options.traffic.flows,
            e.mpps(),
            e.min_ns,
            e.max_ns,
            ratio,
            r.bytes_per_flow,
            r.evicted
        );
    }
    s
}
