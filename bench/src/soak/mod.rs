//! `rstwall-bench soak`: rstwall in enforce mode on the lab for a long
//! time, legitimate traffic and a blind-reset flood at the same flows
//! through it, sampled every second: the process's memory (RSS), the
//! worker's UMEM frames (the frame ledger: every frame in exactly one
//! place, none leaked), the flows tracked, the legitimate frames lost and
//! the spoofed RSTs passed (both counted at the sink against what was
//! sent). The report ([`report`]) gives the invariants, the RSS growth
//! after warm-up, a table and a text chart.
//!
//! The traffic is one table of crafted frames, sent round and round at a
//! paced rate: plain ACKs of `flows` client → server connections (the
//! engine picks them up midstream and tracks them) spread evenly among
//! RSTs spoofed as from the same clients with random sequence numbers
//! (the blind attacker's guesses: `in_window` or `out_of_window`, which
//! enforce drops). One ACK of every flow goes first, so that the flood
//! never meets a flow rstwall does not track yet (a RST to no flow is
//! `no_flow`, which the default policy passes). Legitimate frames are marked [`Label::Ack`] and flood
//! frames [`Label::Rst`]`(OutOfWindow)` for the sink's counter, which
//! counts and drops them (none reaches a stack, so nothing answers).

pub mod report;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rstwall_afxdp::{sys, FrameStats, XskStats};
use rstwall_engine::wire::TcpFlags;
use rstwall_engine::RstClass;
use rstwall_netlab::rng;
use rstwall_source::{Source, WorkerStats};

use crate::cpu::{self, Machine};
use crate::frame::{marker_mac, TcpRepr};
use crate::gen::Rate;
use crate::kernel::RstLimit;
use crate::lab::{self, Lab};
use crate::suite::forwarder::{Forwarder, StopReport};
use crate::suite::{self, Contender, Rig};
use crate::traffic::{Frames, Label, Traffic, TrafficConfig};

pub use report::Report;

/// A soak, checked.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where report.md and chart.txt go (created).
    pub out: PathBuf,
    pub duration: Duration,
    /// RSS growth is measured from the first sample after this.
    pub warmup: Duration,
    /// Legitimate connections, each sending plain ACKs.
    pub flows: usize,
    pub legit_pps: u64,
    pub flood_pps: u64,
    pub gen_cpu: usize,
    pub fwd_cpu: usize,
}

/// Most legitimate flows: their clients are 198.19.0.0/16.
pub const MAX_FLOWS: usize = 1 << 16;
/// Frames in the table sent round and round.
const TABLE: usize = 1 << 16;

impl Options {
    /// Check what needs no machine; the error names the option.
    pub fn validate(&self) -> Result<(), String> {
        if self.flows == 0 || self.flows > MAX_FLOWS {
            return Err(format!("flows: must be 1 to {MAX_FLOWS}"));
        }
        if self.legit_pps == 0 {
            return Err("legit-pps: must be at least 1".into());
        }
        if self.duration.is_zero() {
            return Err("duration: must be more than 0".into());
        }
        if self.warmup >= self.duration {
            return Err("warmup: must be shorter than the duration".into());
        }
        Ok(())
    }
}

/// Marker codes the sink counts the two kinds of frames by.
const LEGIT: Label = Label::Ack;
const FLOOD: Label = Label::Rst(RstClass::OutOfWindow);

/// The table: legitimate ACKs and flood RSTs in the ratio of their
/// rates, spread evenly; and, for each position, how many legitimate
/// frames the table holds before it (to count what was sent of each).
pub struct Table {
    /// One legitimate ACK of every flow, sent before the rest.
    pub first: Arc<Frames>,
    pub frames: Arc<Frames>,
    /// `legit_before[i]`: legitimate frames at positions `0..i`.
    legit_before: Vec<u32>,
}

impl Table {
    pub fn build(o: &Options, seed: u64) -> Table {
        let mut rng = rng::seeded(seed);
        let total = o.legit_pps + o.flood_pps;
        let client = |k: usize| {
            let k = k % o.flows;
            SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(198, 19, (k >> 8) as u8, k as u8)),
                40_000,
            )
        };
        let server = SocketAddr::new(IpAddr::V4(lab::SERVER), 80);
        let ack = |k: usize| TcpRepr {
            src_mac: marker_mac(LEGIT.code()),
            dst_mac: lab::SERVER_MAC,
            seq: 1_000,
            ack: 2_000,
            window: 512,
            ..TcpRepr::new(client(k), server, TcpFlags::ACK)
        };
        let first: Vec<TcpRepr> = (0..o.flows).map(ack).collect();
        let (mut legit, mut flood) = (0usize, 0usize);
        let mut segments = Vec::with_capacity(TABLE);
        let mut legit_before = Vec::with_capacity(TABLE + 1);
        for i in 0..TABLE as u64 {
            legit_before.push(legit as u32);
            // Bresenham: frame i is a flood frame when the flood's share
            // of the first i + 1 frames grows past a whole frame.
            let is_flood = (i + 1) * o.flood_pps / total > i * o.flood_pps / total;
            let repr = if is_flood {
                flood += 1;
                TcpRepr {
                    src_mac: marker_mac(FLOOD.code()),
                    dst_mac: lab::SERVER_MAC,
                    seq: rng.u32(..),
                    ..TcpRepr::new(client(flood), server, TcpFlags::RST)
                }
            } else {
                legit += 1;
                ack(legit)
            };
            segments.push(repr);
        }
        legit_before.push(legit as u32);
        Table {
            first: Arc::new(Frames::crafted(&first)),
            frames: Arc::new(Frames::crafted(&segments)),
            legit_before,
        }
    }

    /// Legitimate and flood frames among `sent` frames sent: the first
    /// ACKs (`first_sent` of them), then the table round and round.
    pub fn split(&self, first_sent: u64, sent: u64) -> (u64, u64) {
        let sent = sent - first_sent;
        let n = TABLE as u64;
        let per_table = u64::from(self.legit_before[TABLE]);
        let legit = sent / n * per_table + u64::from(self.legit_before[(sent % n) as usize]);
        (first_sent + legit, sent - legit)
    }
}

/// One second's sample (counts are since the start).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    pub secs: f64,
    pub rss_kib: u64,
    /// The worker's frames, as it last published them.
    pub frames: FrameStats,
    pub flows: usize,
    pub legit_sent: u64,
    pub legit_arrived: u64,
    pub flood_sent: u64,
    pub flood_arrived: u64,
    /// Frames the appliance dropped for want of room (TX ring full, RX
    /// ring full or dropped by the kernel before the socket).
    pub ring_drops: u64,
    /// RSTs the engine dropped.
    pub engine_dropped: u64,
    /// Frames other than RSTs the engine dropped (none: enforce judges
    /// RSTs only, and the soak's policy blocks no source).
    pub engine_dropped_other: u64,
}

impl Sample {
    /// Legitimate frames sent and not (yet) at the sink: in flight while
    /// traffic runs, lost once it has drained.
    pub fn legit_missing(&self) -> u64 {
        self.legit_sent.saturating_sub(self.legit_arrived)
    }

    /// Every frame in exactly one place, none leaked, no ledger error.
    pub fn frames_conserved(&self) -> bool {
        let f = &self.frames;
        f.total == f.free + f.receive + f.in_hand + f.transmit
            && f.leaked == 0
            && f.ledger_errors == 0
    }
}

/// Everything a soak measured.
pub struct Outcome {
    pub samples: Vec<Sample>,
    /// After the traffic stopped and drained.
    pub last: Sample,
    pub stop: StopReport,
}

/// The process's resident memory, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The suite's options the rig needs (CPUs; no re-measurement).
fn rig_options(o: &Options, traffic: TrafficConfig) -> suite::Options {
    suite::Options {
        out: o.out.clone(),
        contenders: vec![Contender::Enforce],
        phases: Vec::new(),
        rounds: 1,
        traffic,
        round: Duration::from_secs(1),
        warmup: Duration::from_secs(1),
        latency_pps: 1,
        latency: Duration::from_secs(1),
        accuracy_pps: 1,
        goodput: Duration::from_secs(1),
        flood_pps: o.flood_pps,
        flood_high_pps: o.flood_pps,
        flood_void: false,
        rst_limit: RstLimit { rate: 1, burst: 1 },
        handshake_pps: 1,
        gen_cpu: o.gen_cpu,
        sink_cpu: o.gen_cpu,
        fwd_cpu: o.fwd_cpu,
        max_other: 100.0,
        max_repeats: 0,
        quiet_secs: 0,
        busy_defer: (0, 0),
    }
}

/// Run the soak; `progress` sees one line per sample.
pub fn run(o: &Options, mut progress: impl FnMut(&str)) -> Result<Report> {
    if !sys::is_root() {
        bail!("soak needs root (network namespaces, XDP, AF_XDP)");
    }
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let machine = Machine::describe();
    let load_before = cpu::loadavg();
    // The rig's own traffic is not sent: a few flows keep it small.
    let traffic_cfg = TrafficConfig {
        flows: 16,
        packets: 160,
        ..TrafficConfig::default()
    };
    let ro = rig_options(o, traffic_cfg.clone());
    let traffic = Arc::new(Traffic::generate(&traffic_cfg));
    let table = Table::build(o, 0x50a4);

    crate::lab::delete_on_signal()?;
    let lab = Lab::new("soak").context("building the namespaces")?;
    let rig = Rig::new(&lab, traffic, &ro)?;
    let (outcome, stop) = rig.with(Contender::Enforce, |fwd| {
        soak(&rig, fwd, o, &table, &mut progress)
    })?;
    drop(rig);
    drop(lab);
    Ok(Report {
        machine,
        load: (load_before, cpu::loadavg()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        options: o.clone(),
        outcome: Outcome { stop, ..outcome },
    })
}

/// The soak itself, with enforce started.
fn soak(
    rig: &Rig,
    fwd: &Forwarder,
    o: &Options,
    table: &Table,
    progress: &mut impl FnMut(&str),
) -> Result<Outcome> {
    let Forwarder::Rstwall { dp, .. } = fwd else {
        bail!("the soak runs rstwall");
    };
    let (legit_code, flood_code) = (usize::from(LEGIT.code()), usize::from(FLOOD.code()));
    // The worker's first moments (its thread, its tables' first pages)
    // are not the soak's subject.
    thread::sleep(Duration::from_secs(1));
    let base = rig.counter.counts()?;
    let rate = Rate::Paced(o.legit_pps + o.flood_pps);
    let first = Some((table.first.clone(), o.legit_pps.max(10_000)));
    let gen = rig.start_generator(first, table.frames.clone(), rate, None)?;
    let mut published: Option<WorkerStats<XskStats>> = None;
    let start = Instant::now();
    let mut samples = Vec::new();
    let shared = gen.shared.clone();
    let sample = |published: &mut Option<WorkerStats<XskStats>>, secs: f64| -> Result<Sample> {
        while let Ok(s) = dp.workers().stats().try_recv() {
            *published = Some(s);
        }
        let counts = rig.counter.counts()?;
        let (legit_sent, flood_sent) = table.split(
            shared.steady_sent.load(Ordering::Relaxed),
            shared.sent.load(Ordering::Relaxed),
        );
        let mut s = Sample {
            secs,
            rss_kib: rss_kib(),
            legit_sent,
            legit_arrived: counts[legit_code] - base[legit_code],
            flood_sent,
            flood_arrived: counts[flood_code] - base[flood_code],
            ..Sample::default()
        };
        if let Some(w) = published.as_ref() {
            s.frames = w.source.frames;
            s.flows = w.active_flows;
            s.engine_dropped = w.counters.dropped;
            let rst_dropped: u64 = w.counters.rst_classes.iter().map(|c| c[1]).sum();
            s.engine_dropped_other = w.counters.dropped - rst_dropped;
            s.ring_drops = w.source.tx_ring_full_drops
                + w.source
                    .sockets
                    .iter()
                    .map(|k| k.ring.rx_dropped + k.ring.rx_ring_full)
                    .sum::<u64>();
        }
        Ok(s)
    };
    for second in 1..=o.duration.as_secs().max(1) {
        let next = start + Duration::from_secs(second);
        thread::sleep(next.saturating_duration_since(Instant::now()));
        gen.shared.take_error()?;
        let s = sample(&mut published, start.elapsed().as_secs_f64())?;
        progress(&report::sample_line(&s));
        samples.push(s);
    }
    gen.finish()?;
    // What is in flight arrives; the worker publishes once more.
    thread::sleep(Duration::from_millis(500));
    let last = sample(&mut published, start.elapsed().as_secs_f64())?;
    progress(&format!("drained: {}", report::sample_line(&last)));
    Ok(Outcome {
        samples,
        last,
        stop: StopReport::default(),
    })
}
