//! `rstwall-bench gen`: send what a [`Plan`] describes out of an
//! interface, printing frames per second each second.
//!
//! The frames are built once into a table and replayed in order, from an
//! AF_XDP socket (zero-copy where the driver can, copy mode otherwise; at a
//! fixed rate or as fast as the ring takes them) or, flat out, from the
//! kernel's XDP live-frames test runner ([`super::live`]), which skips the
//! socket layer and is several times cheaper per frame on veth.

use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rstwall_afxdp::sys;
use rstwall_netlab::{LinkCounters, Netns};

use super::generator::{generator, GenConfig, Rate};
use super::live;
use super::plan::{Plan, Via, What};
use super::shared::GenShared;
use super::spec::Family;
use crate::cpu::mono_ns;
use crate::error::BadArg;
use crate::lab::on_stop_signal;
use crate::traffic::{Frames, Traffic};

/// Handshakes of the mix profiles, before the steady traffic, unless
/// --rate is lower.
const HANDSHAKE_PPS: u64 = 100_000;

/// Send `plan`; the rate each second, and a summary line, on stdout.
pub fn run(plan: &Plan) -> Result<()> {
    if !sys::is_root() {
        bail!("gen needs root (AF_XDP sockets, BPF programs)");
    }
    let ns = match &plan.netns {
        Some(name) => Some(Arc::new(Netns::open(name).map_err(|_| {
            BadArg(format!(
                "--netns: no network namespace {name} (/run/netns/{name})"
            ))
        })?)),
        None => None,
    };
    let ifindex = in_ns(&ns, || {
        sys::ifindex(&plan.dev).map_err(|_| {
            BadArg(format!(
                "--dev: no interface {}{}",
                plan.dev,
                plan.netns
                    .as_ref()
                    .map_or(String::new(), |n| format!(" in namespace {n}"))
            ))
            .into()
        })
    })?;
    if let Some(cpu) = plan.cpu {
        let allowed = sys::allowed_cpus().context("allowed CPUs")?;
        if !allowed.contains(&cpu) {
            return Err(BadArg(format!(
                "--cpu {cpu}: not one of this process's CPUs {allowed:?}"
            ))
            .into());
        }
    }

    let (first, frames, what) = build(plan);
    eprintln!(
        "gen: {what}; {} frames in the table, {}",
        frames.len(),
        match (plan.via, plan.rate) {
            (Via::Live, _) => "as fast as the kernel's live-frames runner sends".to_string(),
            (_, None) => "as fast as the AF_XDP socket takes them".to_string(),
            (_, Some(pps)) => format!("{pps} frames/s from an AF_XDP socket"),
        }
    );
    let rate = match (plan.via, plan.rate) {
        (Via::Live, _) => {
            let live = in_ns(&ns, || live::load(&frames, ifindex))?;
            eprintln!("gen: live frames of {} bytes", live.frame_len());
            Rate::Live(Arc::new(live))
        }
        (_, None) => Rate::Flat,
        (_, Some(pps)) => Rate::Paced(pps),
    };
    let handshake_pps = plan.rate.unwrap_or(HANDSHAKE_PPS).min(HANDSHAKE_PPS);
    let shared = Arc::new(GenShared::default());
    stop_on_signal(shared.clone())?;
    let dev_before = dev_tx(&ns, &plan.dev);
    let cfg = GenConfig {
        ns: ns.clone(),
        ifname: plan.dev.clone(),
        queue: plan.queue,
        bind: plan.bind,
        cpu: plan.cpu,
        first: first.map(|f| (f, handshake_pps)),
        frames,
        rate,
        limit: plan.count,
    };
    let handle = {
        let shared = shared.clone();
        thread::Builder::new()
            .name("gen".into())
            .spawn(move || generator(cfg, shared))?
    };
    let result = report(plan, &shared);
    shared.stop.store(true, Ordering::Relaxed);
    handle.join().map_err(|_| anyhow!("generator panicked"))?;
    shared.take_error()?;
    let (sent, secs) = result?;
    let dev_after = dev_tx(&ns, &plan.dev);
    let mode = match plan.via {
        Via::Live => "XDP live frames",
        _ if shared.zero_copy.load(Ordering::Relaxed) => "AF_XDP zero-copy",
        _ => "AF_XDP copy mode",
    };
    if let (Some(b), Some(a)) = (dev_before, dev_after) {
        let (tx, dropped) = (a.0 - b.0, a.1 - b.1);
        if dropped > 0 || tx < sent / 2 {
            eprintln!(
                "gen: warning: {} transmitted {tx} and dropped {dropped} of the {sent}: the \
                 receiver is slower{}",
                plan.dev,
                if plan.via == Via::Live {
                    ", or (on veth) its peer runs no XDP program and has GRO off, and so \
                     takes no XDP frames"
                } else {
                    ""
                }
            );
        }
    }
    println!(
        "gen: {sent} frames in {secs:.2} s, {:.0} frames/s on average ({mode}){}",
        sent as f64 / secs.max(1e-9),
        match (dev_before, dev_after) {
            (Some(b), Some(a)) => format!(
                "; {} counted {} transmitted, {} dropped",
                plan.dev,
                a.0 - b.0,
                a.1 - b.1
            ),
            _ => String::new(),
        }
    );
    Ok(())
}

/// The frames of the plan: the mixes' handshakes (sent first), the
/// table, and a description.
fn build(plan: &Plan) -> (Option<Arc<Frames>>, Arc<Frames>, String) {
    match &plan.what {
        What::Crafted { spec, table } => {
            let frames = spec.build(*table, plan.seed);
            let what = format!(
                "crafted TCP over IPv{}, {} bytes a frame",
                if spec.family == Family::V6 { 6 } else { 4 },
                spec.frame_len()
            );
            (None, Arc::new(frames), what)
        }
        What::Mix(cfg) => {
            let t = Traffic::generate(cfg);
            let what = format!(
                "{} connections: {} handshake frames first, then {}",
                cfg.flows,
                t.handshakes.len(),
                t.steady.counts().describe()
            );
            (Some(t.handshakes), t.steady, what)
        }
    }
}

/// Print the rate each second until the plan's end (count, duration) or a
/// signal; frames sent and seconds taken.
fn report(plan: &Plan, shared: &GenShared) -> Result<(u64, f64)> {
    // The first frames (the mixes' handshakes) are not timed.
    while !shared.steady.load(Ordering::Relaxed) && !shared.stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(5));
    }
    let steady_ns = shared.steady_ns.load(Ordering::Relaxed);
    if steady_ns == 0 {
        // The generator failed before sending: its error says why.
        return Ok((0, 0.0));
    }
    let since = mono_ns().saturating_sub(steady_ns);
    let start = Instant::now() - Duration::from_nanos(since);
    let base = shared.steady_sent.load(Ordering::Relaxed);
    let mut last = (start, base);
    let mut out = std::io::stdout();
    loop {
        let next = last.0 + Duration::from_secs(1);
        let end = plan.duration.map(|d| start + d);
        let wake = end.map_or(next, |e| e.min(next));
        while Instant::now() < wake {
            if shared.done.load(Ordering::Relaxed) || shared.stop.load(Ordering::Relaxed) {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let now = Instant::now();
        let sent = shared.sent.load(Ordering::Relaxed);
        let dt = now.duration_since(last.0).as_secs_f64();
        if dt > 0.05 {
            let _ = writeln!(
                out,
                "{:8.2} s {:>12.0} frames/s {:>14} sent",
                now.duration_since(start).as_secs_f64(),
                (sent - last.1) as f64 / dt,
                sent - base
            );
        }
        last = (now, sent);
        let finished = shared.done.load(Ordering::Relaxed)
            || shared.stop.load(Ordering::Relaxed)
            || end.is_some_and(|e| now >= e);
        if finished {
            shared.stop.store(true, Ordering::Relaxed);
            // The last completions and the live counter's last word.
            thread::sleep(Duration::from_millis(20));
            let sent = shared.sent.load(Ordering::Relaxed);
            return Ok((sent - base, start.elapsed().as_secs_f64()));
        }
    }
}

/// `f` in namespace `ns` (None: this one).
fn in_ns<T>(ns: &Option<Arc<Netns>>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match ns {
        Some(ns) => ns.run(f)?,
        None => f(),
    }
}

/// Transmitted and dropped-on-transmit frames of `dev`.
fn dev_tx(ns: &Option<Arc<Netns>>, dev: &str) -> Option<(u64, u64)> {
    in_ns(ns, || Ok(LinkCounters::of(dev)?))
        .ok()
        .map(|l| (l.tx_packets, l.tx_dropped))
}

/// SIGINT, SIGTERM and SIGHUP stop the generator.
fn stop_on_signal(shared: Arc<GenShared>) -> Result<()> {
    on_stop_signal("gen-signals", move |_| {
        shared.stop.store(true, Ordering::Relaxed)
    })
    .context("catching stop signals")
}
