//! The soak's report: the invariants (from the end of the warm-up on:
//! the first second of a freshly started worker on a busy machine may
//! drop at its rings, and that is reported beside them), the RSS growth
//! after warm-up, about twenty rows, and a text chart (chart.txt beside
//! report.md).

use std::fmt::Write as _;

use super::{Options, Outcome, Sample};
use crate::cpu::Machine;

/// RSS may grow by less than this (per cent) from the first sample after
/// warm-up to the last.
pub const MAX_RSS_GROWTH_PCT: f64 = 1.0;

/// Everything a soak gives.
pub struct Report {
    pub machine: Machine,
    /// 1-minute load average before and after.
    pub load: (String, String),
    pub command: String,
    pub options: Options,
    pub outcome: Outcome,
}

/// One sample as a progress line.
pub fn sample_line(s: &Sample) -> String {
    format!(
        "{:>6.0} s  rss {:>8} KiB  frames {}/{} free, {} leaked, {} ledger errors  flows {:>6}  \
         legit {}/{} at the sink  spoofed {}/{} passed  ring drops {}  engine dropped {}",
        s.secs,
        s.rss_kib,
        s.frames.free,
        s.frames.total,
        s.frames.leaked,
        s.frames.ledger_errors,
        s.flows,
        s.legit_arrived,
        s.legit_sent,
        s.flood_arrived,
        s.flood_sent,
        s.ring_drops,
        s.engine_dropped
    )
}

impl Report {
    /// Samples from the first one after warm-up.
    fn settled(&self) -> &[Sample] {
        let w = self.options.warmup.as_secs_f64();
        let s = &self.outcome.samples;
        let i = s.iter().position(|x| x.secs >= w).unwrap_or(s.len());
        &s[i..]
    }

    /// RSS growth after warm-up, per cent (first settled sample to last).
    pub fn rss_growth_pct(&self) -> f64 {
        match self.settled() {
            [first, .., last] if first.rss_kib > 0 => {
                100.0 * (last.rss_kib as f64 - first.rss_kib as f64) / first.rss_kib as f64
            }
            _ => 0.0,
        }
    }

    /// The last sample of the warm-up (all zero without one): the soak's
    /// invariants hold from there on.
    fn warm(&self) -> Sample {
        let w = self.options.warmup.as_secs_f64();
        let s = &self.outcome.samples;
        s.iter()
            .take_while(|x| x.secs < w)
            .last()
            .copied()
            .unwrap_or_default()
    }

    /// Legitimate frames lost after warm-up: sent and never at the sink
    /// once the traffic drained, less those missing at the end of the
    /// warm-up (lost then, or in flight and arrived since).
    pub fn legit_lost(&self) -> u64 {
        self.outcome
            .last
            .legit_missing()
            .saturating_sub(self.warm().legit_missing())
    }

    /// Spoofed RSTs that reached the sink after warm-up.
    pub fn spoofed_passed(&self) -> u64 {
        self.outcome.last.flood_arrived - self.warm().flood_arrived
    }

    /// Samples whose frame ledger did not balance (or showed a leak).
    pub fn unconserved_samples(&self) -> usize {
        self.outcome
            .samples
            .iter()
            .chain([&self.outcome.last])
            .filter(|s| !s.frames_conserved())
            .count()
    }

    /// The invariants that hold whatever the machine's speed: no frame
    /// leaked or misplaced, no legitimate frame lost, no spoofed RST
    /// passed; what broke, if any.
    pub fn broken(&self) -> Vec<String> {
        let mut v = Vec::new();
        let last = &self.outcome.last;
        if last.frames.total == 0 {
            v.push("the worker never published its frames".into());
        }
        let bad = self.unconserved_samples();
        if bad > 0 {
            v.push(format!("{bad} samples with frames not conserved"));
        }
        let warm = self.warm();
        if self.legit_lost() > 0 {
            v.push(format!(
                "{} of {} legitimate frames lost after warm-up",
                self.legit_lost(),
                last.legit_sent - warm.legit_sent
            ));
        }
        if last.engine_dropped_other > 0 {
            v.push(format!(
                "the engine dropped {} frames that were not RSTs",
                last.engine_dropped_other
            ));
        }
        if self.spoofed_passed() > 0 {
            v.push(format!(
                "{} of {} spoofed RSTs passed after warm-up",
                self.spoofed_passed(),
                last.flood_sent - warm.flood_sent
            ));
        }
        if last.flood_sent == 0 || last.legit_sent == 0 {
            v.push("nothing sent".into());
        }
        v
    }

    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let (o, m, last) = (&self.options, &self.machine, &self.outcome.last);
        let _ = writeln!(
            s,
            "Measured {} on commit `{}`{}: {} ({} vCPUs), Linux {}; 1-minute load {} before, {} \
             after.\n\nCommand: `{}`\n",
            m.date,
            m.commit,
            if m.dirty { " (with changes)" } else { "" },
            m.cpu_model,
            m.cpus,
            m.kernel,
            self.load.0,
            self.load.1,
            self.command
        );
        let _ = writeln!(
            s,
            "rstwall enforce, one worker (CPU {}), AF_XDP copy mode on veth; the generator on CPU \
             {} sends {} legitimate plain ACKs/s on {} flows and {} spoofed RSTs/s (random \
             sequence numbers, at the same flows) for {:.0} s; sampled every second.\n",
            o.fwd_cpu,
            o.gen_cpu,
            o.legit_pps,
            o.flows,
            o.flood_pps,
            o.duration.as_secs_f64()
        );
        let broken = self.broken();
        let _ = writeln!(s, "| invariant | result |\n|---|---|");
        let _ = writeln!(
            s,
            "| UMEM frames conserved in every sample, none leaked | {} ({} frames, {} leaked, {} \
             ledger errors at the end) |",
            ok(self.unconserved_samples() == 0),
            last.frames.total,
            last.frames.leaked,
            last.frames.ledger_errors
        );
        let warm = self.warm();
        let _ = writeln!(
            s,
            "| legitimate frames lost after warm-up | {} ({} of {}) |",
            ok(self.legit_lost() == 0),
            self.legit_lost(),
            last.legit_sent - warm.legit_sent
        );
        let _ = writeln!(
            s,
            "| frames other than RSTs the engine dropped | {} ({}) |",
            ok(last.engine_dropped_other == 0),
            last.engine_dropped_other
        );
        let _ = writeln!(
            s,
            "| spoofed RSTs passed after warm-up | {} ({} of {}; the engine dropped {} in all) |",
            ok(self.spoofed_passed() == 0),
            self.spoofed_passed(),
            last.flood_sent - warm.flood_sent,
            last.engine_dropped
        );
        let growth = self.rss_growth_pct();
        let settled = self.settled();
        let _ = writeln!(
            s,
            "| RSS growth after {:.0} s of warm-up < {MAX_RSS_GROWTH_PCT}% | {} ({:+.3}%: {} → {} \
             KiB) |",
            o.warmup.as_secs_f64(),
            ok(growth < MAX_RSS_GROWTH_PCT),
            growth,
            settled.first().map_or(0, |x| x.rss_kib),
            settled.last().map_or(0, |x| x.rss_kib)
        );
        let _ = writeln!(
            s,
            "\nDuring the {:.0} s of warm-up: {} of {} legitimate frames not (yet) at the sink, {} of \
             {} spoofed RSTs passed (a RST at a flow whose first ACK was lost is `no_flow`, \
             which the default policy passes).",
            o.warmup.as_secs_f64(),
            warm.legit_missing(),
            warm.legit_sent,
            warm.flood_arrived,
            warm.flood_sent
        );
        let _ = writeln!(
            s,
            "\nRing drops (TX ring full, RX ring full or dropped: the worker did not get the CPU \
             in time): {}. Flows tracked at the end: {}.\n",
            last.ring_drops, last.flows
        );
        if !broken.is_empty() {
            let _ = writeln!(s, "**Broken:** {}.\n", broken.join("; "));
        }
        let _ = writeln!(
            s,
            "| s | RSS KiB | frames free/total | flows | legit sent | legit at sink | spoofed sent \
             | spoofed passed | ring drops |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let step = (self.outcome.samples.len() / 20).max(1);
        let rows = self
            .outcome
            .samples
            .iter()
            .enumerate()
            .filter(|(i, _)| (i + 1) % step == 0)
            .map(|(_, x)| x)
            .chain([last]);
        for x in rows {
            let _ = writeln!(
                s,
                "| {:.0} | {} | {}/{} | {} | {} | {} | {} | {} | {} |",
                x.secs,
                x.rss_kib,
                x.frames.free,
                x.frames.total,
                x.flows,
                x.legit_sent,
                x.legit_arrived,
                x.flood_sent,
                x.flood_arrived,
                x.ring_drops
            );
        }
        let _ = writeln!(
            s,
            "\n(The last row is after the traffic stopped and drained.)"
        );
        s
    }

    /// RSS, flows and legitimate frames in flight over time, as text.
    pub fn chart(&self) -> String {
        let samples = &self.outcome.samples;
        let mut s = String::new();
        let series: [(&str, Series); 4] = [
            ("RSS (KiB)", |x| x.rss_kib as f64),
            ("flows tracked", |x| x.flows as f64),
            ("frames free", |x| x.frames.free as f64),
            (
                "legitimate frames in flight or lost (sent - at sink)",
                |x| x.legit_missing() as f64,
            ),
        ];
        for (name, f) in series {
            let _ = writeln!(s, "{}", text_chart(name, samples, f));
        }
        s
    }
}

/// One charted quantity of a sample.
type Series = fn(&Sample) -> f64;

fn ok(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "BROKEN"
    }
}

/// Sparkline-style rows: one column per group of samples (at most 100),
/// eight levels between the series' minimum and maximum.
fn text_chart(name: &str, samples: &[Sample], f: Series) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let values: Vec<f64> = samples.iter().map(f).collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let group = values.len().div_ceil(100).max(1);
    let line: String = values
        .chunks(group)
        .map(|c| {
            let v = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let level = if hi > lo {
                ((v - lo) / (hi - lo) * 7.0).round() as usize
            } else {
                0
            };
            LEVELS[level.min(7)]
        })
        .collect();
    format!(
        "{name}: min {lo:.0}, max {hi:.0}, {} s per column\n{line}\n",
        group
    )
}
