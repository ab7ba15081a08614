//! Throughput: the steady pass flat out from the XDP live-frames
//! generator, 64-byte frames; forwarded = what the sink's counter saw,
//! offered = what the generator sent, arrived = what A's program saw, lost
//! = A's socket's drops (RX ring full); the forwarder's CPU time is its
//! thread's CPU clock, split into user and system time by its ticks. For
//! the export contender, also the RSTs its worker handed to the exporter,
//! those the stream acknowledged and those lost, per second of the window.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rstwall_afxdp::socket::ring_stats;
use rstwall_bpf::{FrameCounts, XdpCounters};
use rstwall_netlab::LinkCounters;
use rstwall_source::Source;

use super::export::ExportTally;
use super::forwarder::{Forwarder, StopReport};
use super::options::Contender;
use super::rig::Rig;
use crate::cpu::{self, CpuShare, CpuTimes};
use crate::gen::{GenShared, Rate};
use crate::sink::CODES;

/// Counters at one instant of a throughput measurement.
struct Snap {
    at: Instant,
    gen_sent: u64,
    /// Frames the contender's policy dropped so far (rstwall's engine,
    /// nftables' rules), and when that was counted (s since the epoch).
    policy: Option<(u64, f64)>,
    /// A's XDP counters (rstwall's program), when it is attached.
    a: Option<XdpCounters>,
    /// A's received frames (`/proc/net/dev`).
    a_rx: u64,
    /// B's transmit counters: frames handed to the sink's veth, and
    /// frames it dropped.
    b_tx: u64,
    b_tx_dropped: u64,
    /// The sink's counter, by marker code.
    sink: Box<[u64; CODES]>,
    xsk_drops_a: Option<u64>,
    fwd_cpu_ns: Option<u64>,
    fwd_ticks: Option<(u64, u64)>,
    gen_cpu_ns: Option<u64>,
    cpus: Vec<CpuTimes>,
    proc_cpu_ns: u64,
    /// Ticks of the bench's kernel threads (ksoftirqd, where softirq work
    /// is deferred, and the cpumap threads) and of the export contender's
    /// broker: outside this process.
    softirqd_ticks: u64,
    export: Option<ExportTally>,
}

/// One throughput measurement.
pub struct Tput {
    pub contender: Contender,
    pub round: usize,
    /// Frames per second, in millions: sent by the generator, arriving at
    /// A, taken into the forwarder's RX ring (A's program redirected them
    /// and the socket had room), counted at the sink.
    pub offered: f64,
    pub arrived: f64,
    pub handled: f64,
    pub forwarded: f64,
    /// B's transmitted frames (Mpps): the sink's count, from the other end.
    pub b_tx: f64,
    /// Frames the contender's policy dropped (Mpps), when it has one.
    pub policy_dropped: Option<f64>,
    /// Frames lost before the forwarder, per cent of what arrived: A's
    /// socket's drops (RX ring full) for AF_XDP contenders; for the bridge,
    /// all that arrived and was not forwarded.
    pub lost_pct: f64,
    /// Forwarder thread: CPU time per frame it received (ns), its CPU
    /// time in per cent of the window, and system time's share of it.
    pub fwd_ns: Option<f64>,
    pub fwd_util: Option<f64>,
    pub fwd_sys_pct: Option<f64>,
    pub gen_util: Option<f64>,
    pub cpus: Vec<CpuShare>,
    /// CPU per cent (of one CPU) used in the window by other processes:
    /// all that was busy less this process and its kernel threads.
    pub outside: f64,
    /// Frames B's veth dropped on transmit.
    pub b_dropped: u64,
    /// The export contender's exporter in the window, events per second.
    pub export: Option<ExportRates>,
    /// The forwarder's final word: frames received over its whole run and
    /// the share of what it judged that its policy dropped.
    pub stop: StopReport,
}

/// What the exporter did in a throughput window, events per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExportRates {
    /// RSTs the worker handed off (acknowledged, waiting or lost).
    pub handed: f64,
    /// Acknowledged by the stream.
    pub acked: f64,
    /// Lost: the hand-off was full, or the queue and the spool were.
    pub dropped: f64,
}

impl ExportRates {
    fn between(t0: &ExportTally, t1: &ExportTally, secs: f64) -> ExportRates {
        let rate = |x0: u64, x1: u64| x1.saturating_sub(x0) as f64 / secs;
        ExportRates {
            handed: rate(t0.handed(), t1.handed()),
            acked: rate(t0.acked, t1.acked),
            dropped: rate(t0.dropped, t1.dropped),
        }
    }
}

impl Tput {
    /// CPU busy in the window besides the forwarder thread, the generator
    /// and other processes (per cent of one CPU): the bench's other threads
    /// and kernel threads, and the export contender's broker — with export
    /// on, mostly the exporter and the broker.
    pub fn rest_cpu(&self) -> Option<f64> {
        let busy: f64 = self.cpus.iter().map(|c| c.busy()).sum();
        Some((busy - self.fwd_util? - self.gen_util? - self.outside).max(0.0))
    }

    fn new(c: Contender, round: usize, s0: &Snap, s1: &Snap, stop: &StopReport) -> Tput {
        let window = s1.at.duration_since(s0.at);
        let secs = window.as_secs_f64();
        let ns = window.as_nanos() as f64;
        let mpps = |n: u64| n as f64 / secs / 1e6;
        let a = match (&s0.a, &s1.a) {
            (Some(a0), Some(a1)) => Some(a1.since(a0)),
            _ => None,
        };
        let arrived = a.as_ref().map_or(s1.a_rx - s0.a_rx, |a| a.packets());
        let sink: u64 = s1.sink.iter().zip(s0.sink.iter()).map(|(x, y)| x - y).sum();
        let policy_dropped = match (s0.policy, s1.policy) {
            (Some((d0, t0)), Some((d1, t1))) if t1 > t0 => Some((d1 - d0) as f64 / (t1 - t0) / 1e6),
            _ => None,
        };
        let policy_frames = policy_dropped.map_or(0, |p| (p * 1e6 * secs) as u64);
        let drops = match (s0.xsk_drops_a, s1.xsk_drops_a) {
            (Some(x), Some(y)) => y.saturating_sub(x),
            // The bridge's losses (cpumap queue, backlog) are not counted
            // in one place: what arrived and was neither forwarded nor
            // dropped by a rule.
            _ if c == Contender::Nftables => arrived.saturating_sub(sink + policy_frames),
            _ => 0,
        };
        let handled = match &a {
            Some(a) if c.is_afxdp() => a.to_xsk.saturating_sub(drops),
            _ => arrived.saturating_sub(drops),
        };
        let delta = |x: Option<u64>, y: Option<u64>| Some(y?.saturating_sub(x?));
        let fwd_cpu = delta(s0.fwd_cpu_ns, s1.fwd_cpu_ns);
        let fwd_sys_pct = match (s0.fwd_ticks, s1.fwd_ticks) {
            (Some((u0, k0)), Some((u1, k1))) => {
                let (u, k) = (u1 - u0, k1 - k0);
                (u + k > 0).then(|| k as f64 * 100.0 / (u + k) as f64)
            }
            _ => None,
        };
        let cpus = cpu::cpu_shares(&s0.cpus, &s1.cpus);
        let busy: f64 = cpus.iter().map(CpuShare::busy).sum();
        let tick = cpu::tick_ns() as f64;
        let softirqd_ns = (s1.softirqd_ticks - s0.softirqd_ticks) as f64 * tick;
        let ours = ((s1.proc_cpu_ns - s0.proc_cpu_ns) as f64 + softirqd_ns) * 100.0 / ns;
        Tput {
            contender: c,
            round,
            offered: mpps(s1.gen_sent - s0.gen_sent),
            arrived: mpps(arrived),
            handled: mpps(handled),
            forwarded: mpps(sink),
            b_tx: mpps(s1.b_tx - s0.b_tx),
            policy_dropped,
            lost_pct: drops as f64 * 100.0 / arrived.max(1) as f64,
            fwd_ns: fwd_cpu.map(|c| c as f64 / handled.max(1) as f64),
            fwd_util: fwd_cpu.map(|c| c as f64 * 100.0 / ns),
            fwd_sys_pct,
            gen_util: delta(s0.gen_cpu_ns, s1.gen_cpu_ns).map(|c| c as f64 * 100.0 / ns),
            cpus,
            outside: (busy - ours).max(0.0),
            b_dropped: s1.b_tx_dropped - s0.b_tx_dropped,
            export: match (&s0.export, &s1.export) {
                (Some(t0), Some(t1)) => Some(ExportRates::between(t0, t1, secs)),
                _ => None,
            },
            stop: stop.clone(),
        }
    }

    pub fn line(&self) -> String {
        let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
        format!(
            "round {} {:<23} offered {:.3} arrived {:.3} handled {:.3} forwarded {:.3} Mpps{}, \
             lost before the forwarder {:.2}%, forwarder {} ns/frame at {}% CPU ({}% sys), \
             generator {}% CPU, dropped by B {}, CPUs busy {}, steal {:.1}%, other processes \
             {:.0}%{}{}",
            self.round + 1,
            self.contender.name(),
            self.offered,
            self.arrived,
            self.handled,
            self.forwarded,
            self.policy_dropped
                .map_or(String::new(), |p| format!(" (policy dropped {p:.3})")),
            self.lost_pct,
            opt(self.fwd_ns, 0),
            opt(self.fwd_util, 0),
            opt(self.fwd_sys_pct, 0),
            opt(self.gen_util, 0),
            self.b_dropped,
            self.cpus
                .iter()
                .map(|c| format!("{:.0}%", c.busy()))
                .collect::<Vec<_>>()
                .join("/"),
            self.cpus.iter().map(|c| c.steal).sum::<f64>(),
            self.outside,
            self.stop.nft.map_or(String::new(), |n| format!(
                "; over the whole run nftables dropped {} invalid, {} over the RST limit",
                n.invalid, n.rst_limited
            )),
            self.export.map_or(String::new(), |x| format!(
                "; export: {:.0} RSTs/s handed off, {:.0}/s acknowledged, {:.0}/s lost",
                x.handed, x.acked, x.dropped
            )),
        )
    }
}

impl Rig<'_> {
    /// Every counter of a throughput measurement, now.
    fn snapshot(&self, f: &Forwarder, gen: &GenShared) -> Result<Snap> {
        let (fwd_tid, fd_a) = f.thread_and_socket().unzip();
        let a = f.programs().map(|p| p.a().counters()).transpose()?;
        let policy = match f {
            Forwarder::Rstwall { dp, .. } => {
                // The worker publishes every 100 ms into a small channel
                // that keeps the oldest: empty it, take the next one (which
                // a worker starved of its CPU by other processes may take
                // seconds to send).
                while dp.workers().stats().try_recv().is_ok() {}
                let w = dp
                    .workers()
                    .stats()
                    .recv_timeout(Duration::from_secs(10))
                    .context("no stats from the worker")?;
                Some((w.counters.dropped, w.at_ns as f64 / 1e9))
            }
            Forwarder::Nftables(k) => {
                let n = k.counters()?;
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                Some((n.invalid + n.rst_limited, t))
            }
            _ => None,
        };
        let lab = self.lab;
        let (port_a, port_b) = lab.app.run(|| -> Result<_> {
            Ok((
                LinkCounters::of(&lab.port_a)?,
                LinkCounters::of(&lab.port_b)?,
            ))
        })??;
        Ok(Snap {
            at: Instant::now(),
            gen_sent: gen.sent.load(Ordering::Relaxed),
            policy,
            a,
            a_rx: port_a.rx_packets,
            b_tx: port_b.tx_packets,
            b_tx_dropped: port_b.tx_dropped,
            sink: self.counter.counts()?,
            xsk_drops_a: fd_a
                .and_then(|fd| ring_stats(fd).ok())
                .map(|r| r.rx_ring_full + r.rx_dropped),
            fwd_cpu_ns: fwd_tid.and_then(cpu::thread_cpu_ns),
            fwd_ticks: fwd_tid.and_then(cpu::thread_user_sys_ticks),
            gen_cpu_ns: [&gen.tid, &gen.tid2]
                .iter()
                .map(|t| t.load(Ordering::Relaxed))
                .filter(|&t| t != 0)
                .map(cpu::thread_cpu_ns)
                .sum(),
            cpus: cpu::cpu_times(),
            proc_cpu_ns: cpu::process_cpu_ns(),
            softirqd_ticks: self
                .kthreads()
                .iter()
                .chain(self.broker.as_ref().map(|b| b.pid()).as_ref())
                .filter_map(|&p| cpu::pid_ticks(p))
                .sum(),
            export: f.export_tally(),
        })
    }

    pub fn throughput(&self, c: Contender, round: usize) -> Result<Tput> {
        let live = self.live()?;
        let ((s0, s1), stop) = self.with(c, |f| {
            let gen = self.start_traffic(Rate::Live(live), None)?;
            thread::sleep(self.o.warmup);
            let s0 = self.snapshot(f, &gen.shared)?;
            thread::sleep(self.o.round);
            let s1 = self.snapshot(f, &gen.shared)?;
            gen.finish()?;
            Ok((s0, s1))
        })?;
        Ok(Tput::new(c, round, &s0, &s1, &stop))
    }
}
