//! The run's report: one summary row per contender, how it was measured,
//! then a section per phase ([`super::tables`]).

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::accuracy::{is_legitimate, is_spoofed, Accuracy};
use super::goodput::Goodput;
use super::latency::{us, Lat};
use super::options::Contender;
use super::options::{Options, Phase};
use super::throughput::Tput;
use crate::cpu::Machine;
use crate::kernel;
use crate::stats::{median, min_max, pct};
use crate::traffic::{Label, Traffic};

/// Everything measured.
#[derive(Default)]
pub struct Results {
    pub tput: Vec<Tput>,
    pub acc: Vec<Accuracy>,
    pub lat: Vec<Lat>,
    pub good: Vec<Goodput>,
    /// Measurements taken again because the machine was busy.
    pub repeats: usize,
}

/// Everything a run's outputs are made of.
pub struct Report<'a> {
    pub machine: Machine,
    /// 1-minute load average before and after the run.
    pub load: (String, String),
    pub minutes: f64,
    pub command: String,
    pub traffic: &'a Traffic,
    pub o: &'a Options,
    pub xdp_mode: String,
    pub r: Results,
}

/// A median over rounds of per-round ratios, and their range.
#[derive(Clone, Copy, Debug)]
pub struct Ratio {
    pub median: f64,
    pub lo: f64,
    pub hi: f64,
}

/// Medians and merged figures of one contender.
pub struct Summary {
    pub c: Contender,
    pub mpps: Option<f64>,
    pub mpps_range: Option<(f64, f64)>,
    /// This round's forwarded rate ÷ the same round's bare loop's.
    pub vs_bare: Option<Ratio>,
    /// The forwarder thread's CPU time per frame it received (ns), and
    /// system time's share of it (per cent).
    pub cpu_ns: Option<f64>,
    pub cpu_sys_pct: Option<f64>,
    /// The bare loop's CPU per frame ÷ this one's, round by round: frames
    /// per CPU-second against the bare loop's.
    pub cpu_vs_bare: Option<Ratio>,
    pub spoofed_dropped: Option<f64>,
    pub legit_passed: Option<f64>,
    pub latency: Option<Histogram<u64>>,
    pub calm_mbps: Option<f64>,
    pub flood_mbps: Option<f64>,
    pub flood_ratio: Option<f64>,
    /// Under the heavier flood (--flood-high-pps).
    pub flood_high_mbps: Option<f64>,
    pub flood_high_ratio: Option<f64>,
    /// Rounds whose connection broke under the flood.
    pub broke: usize,
}

/// `v` with `decimals`, or a dash.
pub(super) fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or("—".into(), |v| format!("{v:.decimals$}"))
}

/// Every histogram of `lat` in one.
pub(super) fn merged<'l>(lat: impl IntoIterator<Item = &'l Lat>) -> Histogram<u64> {
    let mut h = Histogram::<u64>::new_with_max(10_000_000_000, 3).expect("histogram");
    for l in lat {
        let _ = h.add(&l.hist);
    }
    h
}

impl Report<'_> {
    pub(super) fn tput_of(&self, c: Contender) -> Vec<&Tput> {
        self.r.tput.iter().filter(|t| t.contender == c).collect()
    }

    pub(super) fn acc_of(&self, c: Contender) -> Vec<&Accuracy> {
        self.r.acc.iter().filter(|a| a.contender == c).collect()
    }

    pub(super) fn lat_of(&self, c: Contender) -> Vec<&Lat> {
        self.r.lat.iter().filter(|l| l.contender == c).collect()
    }

    pub(super) fn good_of(&self, c: Contender) -> Vec<&Goodput> {
        self.r.good.iter().filter(|g| g.contender == c).collect()
    }

    /// The median over `c`'s rounds of `f`, where it has a value.
    pub(super) fn med(&self, c: Contender, f: impl Fn(&Tput) -> Option<f64>) -> Option<f64> {
        median(self.tput_of(c).into_iter().filter_map(f).collect())
    }

    /// Median and range over rounds of `f(c) / f(bare)`, each round against
    /// the same round's bare loop.
    fn vs_bare(&self, c: Contender, f: impl Fn(&Tput) -> Option<f64>) -> Option<Ratio> {
        if c == Contender::Bare {
            return None;
        }
        self.vs(c, Contender::Bare, f)
    }

    /// Median and range over rounds of `f(c) / f(base)`, each round against
    /// the same round's `base`; rounds where `base` has no value or 0 are
    /// left out.
    pub(super) fn vs(
        &self,
        c: Contender,
        base: Contender,
        f: impl Fn(&Tput) -> Option<f64>,
    ) -> Option<Ratio> {
        let base = self.tput_of(base);
        let ratios: Vec<f64> = self
            .tput_of(c)
            .into_iter()
            .filter_map(|t| {
                let b = base.iter().find(|b| b.round == t.round)?;
                let d = f(b)?;
                (d > 0.0).then_some(f(t)? / d)
            })
            .collect();
        let (lo, hi) = min_max(&ratios);
        Some(Ratio {
            median: median(ratios)?,
            lo,
            hi,
        })
    }

    pub fn summary(&self, c: Contender) -> Summary {
        let mpps: Vec<f64> = self.tput_of(c).iter().map(|t| t.forwarded).collect();
        let acc = self.acc_of(c);
        let sums = |which: fn(Label) -> bool| {
            acc.iter()
                .map(|a| a.of(which))
                .fold((0, 0), |(s, a), (x, y)| (s + x, a + y))
        };
        let (ss, sa) = sums(is_spoofed);
        let (ls, la) = sums(is_legitimate);
        let lat = self.lat_of(c);
        let good = self.good_of(c);
        Summary {
            c,
            mpps_range: (!mpps.is_empty()).then(|| min_max(&mpps)),
            mpps: median(mpps),
            vs_bare: self.vs_bare(c, |t| Some(t.forwarded)),
            cpu_ns: self.med(c, |t| t.fwd_ns),
            cpu_sys_pct: self.med(c, |t| t.fwd_sys_pct),
            // ns(bare) / ns(c): frames per CPU-second against bare's.
            cpu_vs_bare: self.vs_bare(c, |t| t.fwd_ns.map(|n| 1.0 / n)),
            spoofed_dropped: (!acc.is_empty()).then(|| 100.0 - pct(sa, ss)),
            legit_passed: (!acc.is_empty()).then(|| pct(la, ls)),
            latency: (!lat.is_empty()).then(|| merged(lat)),
            calm_mbps: median(good.iter().map(|g| g.calm.mbps()).collect()),
            flood_mbps: median(good.iter().map(|g| g.flood.mbps()).collect()),
            flood_ratio: median(good.iter().map(|g| g.ratio()).collect()),
            flood_high_mbps: median(
                good.iter()
                    .filter_map(|g| g.flood_high.map(|w| w.mbps()))
                    .collect(),
            ),
            flood_high_ratio: median(good.iter().filter_map(|g| g.high_ratio()).collect()),
            broke: good.iter().filter(|g| g.reset.is_some()).count(),
        }
    }

    pub fn summaries(&self) -> Vec<Summary> {
        self.o.contenders.iter().map(|&c| self.summary(c)).collect()
    }

    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let s = self.o;
        let sums = self.summaries();
        let _ = writeln!(
            o,
            "Measured {} on commit `{}`{}: {} ({} vCPUs), Linux {}; 1-minute load {} before, \
             {} after; the run took {:.1} minutes.\n",
            m.date,
            m.commit,
            if m.dirty {
                " plus the uncommitted changes in the tree at the time"
            } else {
                ""
            },
            m.cpu_model,
            m.cpus,
            m.kernel,
            self.load.0,
            self.load.1,
            self.minutes,
        );
        let _ = writeln!(o, "```sh\n{}\n```\n", self.command);
        let _ = writeln!(
            o,
            "| contender | Mpps at 64 B (min–max) | ÷ bare | spoofed RSTs dropped | \
             legitimate passed | latency p50 / p99 / p99.9 µs | TCP goodput alone | \
             under a {} kpps blind-reset flood | flood ÷ alone | under {} kpps | ÷ alone |",
            s.flood_pps / 1000,
            s.flood_high_pps / 1000,
        );
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for x in &sums {
            let lat = x.latency.as_ref().map_or("—".into(), |h| {
                format!(
                    "{:.0} / {:.0} / {:.0}",
                    us(h, 0.5),
                    us(h, 0.99),
                    us(h, 0.999)
                )
            });
            let _ = writeln!(
                o,
                "| {} | {}{} | {} | {} | {} | {} | {} | {} | {}{} | {} | {} |",
                x.c.name(),
                opt(x.mpps, 3),
                x.mpps_range
                    .map_or(String::new(), |(lo, hi)| format!(" ({lo:.3}–{hi:.3})")),
                x.vs_bare
                    .map_or("—".into(), |v| format!("**{:.2}**", v.median)),
                x.spoofed_dropped.map_or("—".into(), |v| format!("{v:.1}%")),
                x.legit_passed.map_or("—".into(), |v| format!("{v:.2}%")),
                lat,
                x.calm_mbps.map_or("—".into(), |v| format!("{v:.0} Mbit/s")),
                x.flood_mbps
                    .map_or("—".into(), |v| format!("{v:.0} Mbit/s")),
                x.flood_ratio.map_or("—".into(), |v| format!("**{v:.2}**")),
                if x.broke > 0 {
                    format!(" (connection broke in {} rounds)", x.broke)
                } else {
                    String::new()
                },
                x.flood_high_mbps
                    .map_or("—".into(), |v| format!("{v:.0} Mbit/s")),
                x.flood_high_ratio
                    .map_or("—".into(), |v| format!("**{v:.2}**")),
            );
        }
        let _ = writeln!(o);
        self.setup(&mut o);
        if !self.r.tput.is_empty() {
            self.throughput_tables(&mut o, &sums);
        }
        if !self.r.acc.is_empty() {
            self.accuracy_table(&mut o);
        }
        if !self.r.lat.is_empty() {
            self.latency_table(&mut o, &sums);
        }
        if !self.r.good.is_empty() {
            self.goodput_table(&mut o);
        }
        o
    }

    fn setup(&self, o: &mut String) {
        let s = self.o;
        let t = self.traffic;
        let c = t.steady.counts();
        let has = |p| s.phases.contains(&p);
        let bridge = if s.contenders.contains(&Contender::Nftables) {
            format!(
                "; the kernel contender is a Linux bridge with `nf_call_iptables` (conntrack \
                 and an `inet` nftables table: `ct state invalid drop`, and RSTs over {}/s, \
                 burst {}, dropped), whose ports' receive an XDP cpumap steers to CPU {} too",
                s.rst_limit.rate, s.rst_limit.burst, s.fwd_cpu
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "- Wire: three network namespaces, veth pairs; the appliance namespace in the \
             middle has the two ports, A (towards the generator) and B (towards the sink). \
             AF_XDP contenders sit behind rstwall's XDP program (attached {}), copy mode, one \
             queue, one forwarder thread pinned to CPU {}{bridge}. The generator runs on CPU \
             {}, the latency sink on CPU {}; what A receives is taken in (the XDP program) on \
             the generator's CPU, everything after it on the forwarder's.\n\
             - Traffic: {} flows over IPv4 (`rstwall_bench::traffic`), every handshake first \
             (at {} kpps), then a {}-frame pass: data {:.1}%, ACK {:.1}%, SYN and SYN-ACK \
             {:.1}%, FIN {:.1}%, RST {:.1}% ({} of them spoofed: in and out of window, RST \
             answering a SYN with a wrong ack).",
            self.xdp_mode,
            s.fwd_cpu,
            s.gen_cpu,
            s.sink_cpu,
            t.flows,
            s.handshake_pps / 1000,
            t.steady.len(),
            pct(c.data, c.frames),
            pct(c.ack, c.frames),
            pct(c.syn + c.synack, c.frames),
            pct(c.fin, c.frames),
            pct(c.rst_total(), c.frames),
            Label::ALL
                .iter()
                .filter(|l| is_spoofed(**l))
                .map(|l| c.of(*l))
                .sum::<u64>(),
        );
        if has(Phase::Throughput) {
            let _ = writeln!(
                o,
                "- Mpps: the pass replayed flat out from the XDP live-frames generator, \
                 64-byte frames, {:.1} s after {:.1} s of warm-up; forwarded = frames counted \
                 at the sink (a tc program on its veth counts every frame by the kind its \
                 source MAC carries).",
                s.round.as_secs_f64(),
                s.warmup.as_secs_f64(),
            );
        }
        if has(Phase::Accuracy) {
            let _ = writeln!(
                o,
                "- Drop accuracy: the handshakes and exactly one pass at {} kpps, below every \
                 contender's capacity; every frame counted at the sink by kind. Spoofed RSTs \
                 are those the receiving kernel never acts on (in-window but not exact, out of \
                 window, a SYN-SENT answer with a wrong ack); legitimate frames are SYN, \
                 SYN-ACK, ACK, data, FIN and the real RSTs (refused, abort, teardown). RSTs \
                 for absent flows and RST+SYN are judgement calls, listed but counted in \
                 neither.",
                s.accuracy_pps / 1000,
            );
        }
        if has(Phase::Latency) {
            let _ = writeln!(
                o,
                "- Latency: the pass at {} frames/s from an AF_XDP socket, each frame tagged \
                 in its IPv4 identification field, received by an AF_XDP socket on the sink; \
                 {:.1} s per contender and round after {:.1} s of warm-up, every round's \
                 samples in one hdrhistogram.",
                s.latency_pps,
                s.latency.as_secs_f64(),
                s.warmup.as_secs_f64(),
            );
        }
        if has(Phase::Goodput) {
            let _ = writeln!(
                o,
                "- Goodput: one kernel TCP connection from the generator's namespace to the \
                 sink's (bulk send, 1500-byte MTU, no TSO: the XDP programs on the ports take \
                 it off) for {:.1} s alone, then {:.1} s while the generator sends {} RSTs/s \
                 at its 4-tuple as if from the client, random sequence numbers \
                 (`rstwall-bench gen --profile rst-flood`'s frames), to the server's MAC. The \
                 generator shares the two CPUs with the forwarder and the TCP endpoints, so \
                 sending the flood costs every contender's transfer the same; what differs is \
                 what the contender lets through to the server.",
                s.goodput.as_secs_f64(),
                s.goodput.as_secs_f64(),
                s.flood_pps,
            );
        }
        let _ = writeln!(
            o,
            "- Rounds: {}; each took every measurement of every contender once, contenders \
             rotated. A measurement during which other processes used more than {:.0}% of a \
             CPU was taken again after a quiet wait (that happened {} times).",
            s.rounds, s.max_other, self.r.repeats,
        );
        if s.contenders
            .iter()
            .any(|c| matches!(c.poll(), rstwall_afxdp::Poll::Busy { .. }))
        {
            let _ = writeln!(
                o,
                "- Busy contenders: busy polling {}; the ports' napi_defer_hard_irqs {} and \
                 gro_flush_timeout {} ns while they run.",
                Contender::MonitorBusy.poll(),
                s.busy_defer.0,
                s.busy_defer.1
            );
        }
        let diagnostics: Vec<String> = [
            (
                Contender::Kernel,
                "the kernel XDP redirect is rstwall's program forwarding TCP to the peer \
                 port in the kernel (its fail-open path, no AF_XDP socket): a latency \
                 reference, measured in the latency phase only",
            ),
            (
                Contender::Touch,
                "the bare loop + frame read also reads the first cache line of every frame \
                 it forwards: what any parser pays before it parses",
            ),
        ]
        .iter()
        .filter(|(c, _)| s.contenders.contains(c))
        .map(|(_, what)| what.to_string())
        .collect();
        if !diagnostics.is_empty() {
            let _ = writeln!(o, "- Diagnostics: {}.", diagnostics.join("; "));
        }
        let _ = writeln!(o);
        if s.contenders.contains(&Contender::Nftables) {
            let _ = writeln!(
                o,
                "nftables rules of the kernel contender:\n\n```\n{}```\n",
                kernel::ruleset(s.rst_limit)
            );
        }
    }
}
