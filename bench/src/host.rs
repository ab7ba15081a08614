//! `rstwall-bench host`: what host mode ([`rstwall_host`]) costs the host
//! it watches, measured against the same runs without it.
//!
//! * request/response transactions per second (one connection, 64-byte
//!   request, 64-byte response, like netperf's TCP_RR), over `lo` and over
//!   a veth between two namespaces;
//! * bulk throughput (one connection, as fast as it goes), same paths;
//! * ring-buffer loss under a SYN flood on the veth, with one worker and
//!   with two (a ring each, flows hashed to them).
//!
//! Runs alternate without and with host mode (which goes first alternates
//! too) for several rounds, and the medians are compared: other load on the machine moves single runs by
//! more than host mode does. Everything runs in namespaces of its own.
//! Needs root.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use rstwall_bpf::FrameCounts;
use rstwall_host::{HostConfig, HostSource};
use rstwall_netlab::packet::Segment;
use rstwall_netlab::{Namespaces, Netns, RawSender, Veth};

use crate::cpu::Machine;
use crate::stats::median;

/// Bytes of a request and of its response.
const MSG: usize = 64;

/// How long and how often.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Each run's length.
    pub run: Duration,
    /// Rounds of (without, with); the medians are compared.
    pub rounds: usize,
}

/// One path's figures: medians without and with host mode.
#[derive(Clone, Debug)]
pub struct PathCost {
    pub path: &'static str,
    pub transactions: (f64, f64),
    pub bulk_mbit: (f64, f64),
    /// TCP segments host mode saw over its runs, and records it lost.
    pub segments: u64,
    pub records_lost: u64,
}

/// One SYN flood under host mode.
#[derive(Clone, Debug)]
pub struct FloodLoss {
    pub workers: u32,
    pub syns_sent: u64,
    pub segments: u64,
    pub records: u64,
    pub records_lost: u64,
}

/// The whole measurement.
pub struct Report {
    pub options: Options,
    pub machine: Machine,
    /// /proc/loadavg before the first run.
    pub load: String,
    pub paths: Vec<PathCost>,
    pub floods: Vec<FloodLoss>,
}

fn change(without: f64, with: f64) -> f64 {
    (with - without) / without * 100.0
}

impl Report {
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "### Host mode's cost\n\n{} ({} CPUs), Linux {}, {} (commit {}{}); load average \
             before: {}. {} rounds of {:.0} s runs, alternately without and with host mode; \
             medians.\n\n| run | without | with | change |\n|---|---:|---:|---:|\n",
            m.cpu_model,
            m.cpus,
            m.kernel,
            m.date,
            m.commit,
            if m.dirty { ", with changes" } else { "" },
            self.load,
            self.options.rounds,
            self.options.run.as_secs_f64(),
        );
        for p in &self.paths {
            let (t0, t1) = p.transactions;
            let (b0, b1) = p.bulk_mbit;
            out.push_str(&format!(
                "| transactions/s over {} | {t0:.0} | {t1:.0} | {:+.1}% |\n\
                 | bulk Mbit/s over {} | {b0:.0} | {b1:.0} | {:+.1}% |\n",
                p.path,
                change(t0, t1),
                p.path,
                change(b0, b1),
            ));
        }
        out.push('\n');
        for p in &self.paths {
            out.push_str(&format!(
                "Over {}, host mode saw {} TCP segments and lost {} records.\n",
                p.path, p.segments, p.records_lost
            ));
        }
        out.push_str("\n| SYN flood on the veth | SYNs sent | per second | segments seen | records | lost |\n|---|---:|---:|---:|---:|---:|\n");
        let secs = self.options.run.as_secs_f64();
        for f in &self.floods {
            out.push_str(&format!(
                "| {} worker{} | {} | {:.0} | {} | {} | {} ({:.2}%) |\n",
                f.workers,
                if f.workers == 1 { "" } else { "s" },
                f.syns_sent,
                f.syns_sent as f64 / secs,
                f.segments,
                f.records,
                f.records_lost,
                f.records_lost as f64 * 100.0 / f.segments.max(1) as f64
            ));
        }
        out
    }
}

/// Request/response transactions per second on one connection.
fn transactions(server: &Netns, client: &Netns, addr: SocketAddr, run: Duration) -> Result<f64> {
    let l = server.run(|| TcpListener::bind(addr))??;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = l.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; MSG];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let rate = client.run(|| -> std::io::Result<f64> {
        let mut c = TcpStream::connect(addr)?;
        c.set_nodelay(true)?;
        let mut buf = [7u8; MSG];
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < run {
            c.write_all(&buf)?;
            c.read_exact(&mut buf)?;
            n += 1;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    })??;
    echo.join()
        .map_err(|_| anyhow!("the echo server panicked"))??;
    Ok(rate)
}

/// Bulk throughput in Mbit/s on one connection.
fn bulk(server: &Netns, client: &Netns, addr: SocketAddr, run: Duration) -> Result<f64> {
    let l = server.run(|| TcpListener::bind(addr))??;
    let sink = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = l.accept()?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return Ok(total),
                Ok(n) => total += n as u64,
            }
        }
    });
    let start = Instant::now();
    client.run(|| -> std::io::Result<()> {
        let mut c = TcpStream::connect(addr)?;
        let buf = vec![1u8; 256 * 1024];
        while start.elapsed() < run {
            c.write_all(&buf)?;
        }
        Ok(())
    })??;
    let bytes = sink.join().map_err(|_| anyhow!("the sink panicked"))??;
    Ok(bytes as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e6)
}

/// SYNs from random ports to a closed port of `target` for `run`: how
/// many were sent.
fn syn_flood(attacker: &Netns, target: Ipv4Addr, run: Duration) -> Result<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let sender = attacker.spawn(move || -> std::io::Result<u64> {
        let raw = RawSender::open()?;
        let mut rng = rstwall_netlab::rng::seeded(1);
        let mut n = 0u64;
        while !s.load(Ordering::Relaxed) {
            let seg = Segment {
                src: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), rng.u16(1024..)).into(),
                dst: SocketAddrV4::new(target, 7999).into(),
                seq: rng.u32(..),
                ack: 0,
                flags: rstwall_engine::wire::TcpFlags::SYN,
                window: 64240,
            };
            if raw.send_segment(&seg, n as u16).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    })?;
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    Ok(sender
        .join()
        .map_err(|_| anyhow!("the SYN sender panicked"))??)
}

fn host_mode(ns: &Netns, cfg: &HostConfig) -> Result<HostSource> {
    ns.run(|| HostSource::start(cfg))?
        .context("starting host mode")
}

/// Measure. `progress` gets a line per finished run.
pub fn run(opts: &Options, mut progress: impl FnMut(String)) -> Result<Report> {
    rstwall_netlab::require_root("rstwall-bench host");
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into());
    let mut nss = Namespaces::unique("host-cost");
    let a = nss.add("a")?;
    let b = nss.add("b")?;
    a.add_veth("ca0", &b, "cb0", &Veth::default())?;
    a.add_addr("ca0", "198.18.0.1/24")?;
    b.add_addr("cb0", "198.18.0.2/24")?;
    a.set_up("ca0")?;
    b.set_up("cb0")?;

    let mut port = 7500u16;
    let mut next = || {
        port += 1;
        port
    };
    let lo = |p| SocketAddr::from(([127, 0, 0, 1], p));
    let veth = |p| SocketAddr::from(([198, 18, 0, 1], p));
    let mut paths = Vec::new();
    for (path, server, client, addr) in [
        ("lo", &a, &a, lo as fn(u16) -> SocketAddr),
        ("veth", &a, &b, veth as fn(u16) -> SocketAddr),
    ] {
        let (mut rr, mut bw) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
        let (mut segments, mut lost) = (0, 0);
        for round in 0..opts.rounds {
            // Which goes first alternates too: a round's first run pays
            // for what the second finds warm.
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for with in order {
                let source = match with {
                    true => Some(host_mode(&a, &HostConfig::default())?),
                    false => None,
                };
                let t = transactions(server, client, addr(next()), opts.run)?;
                let m = bulk(server, client, addr(next()), opts.run)?;
                progress(format!(
                    "{path} round {} {}: {t:.0} transactions/s, {m:.0} Mbit/s",
                    round + 1,
                    if with { "with host mode" } else { "without" }
                ));
                rr[usize::from(with)].push(t);
                bw[usize::from(with)].push(m);
                if let Some(s) = source {
                    let c = s.kernel_counters()?;
                    segments += c.tcp();
                    lost += c.records_lost;
                }
            }
        }
        let med = |v: &[Vec<f64>; 2]| -> (f64, f64) {
            (
                median(v[0].clone()).unwrap_or(0.0),
                median(v[1].clone()).unwrap_or(0.0),
            )
        };
        paths.push(PathCost {
            path,
            transactions: med(&rr),
            bulk_mbit: med(&bw),
            segments,
            records_lost: lost,
        });
    }
    let mut floods = Vec::new();
    for workers in [1, 2] {
        let source = host_mode(
            &a,
            &HostConfig {
                workers,
                ..HostConfig::default()
            },
        )?;
        let syns_sent = syn_flood(&b, Ipv4Addr::new(198, 18, 0, 1), opts.run)?;
        // The last records reach the rings.
        std::thread::sleep(Duration::from_millis(500));
        let c = source.kernel_counters()?;
        progress(format!(
            "SYN flood, {workers} worker(s): {syns_sent} sent, {} lost",
            c.records_lost
        ));
        floods.push(FloodLoss {
            workers,
            syns_sent,
            segments: c.tcp(),
            records: c.records,
            records_lost: c.records_lost,
        });
    }
    Ok(Report {
        options: *opts,
        machine: Machine::describe(),
        load,
        paths,
        floods,
    })
}
