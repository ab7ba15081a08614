//! The generator thread: a table's first frames (the handshakes) at their
//! rate, then the main frames at theirs — from an AF_XDP socket (paced,
//! flat out, or one at a time and stamped for latency) or from the
//! kernel's live-frames runner — until a limit or a stop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rstwall_afxdp::{BindMode, XskMode};
use rstwall_bpf::bench::LiveFrames;
use rstwall_netlab::Netns;

use super::shared::GenShared;
use super::xsk::{tight_timers, Pace, Sender, Stamps, GEN_BATCH};
use crate::cpu::{gettid, mono_ns, pin};
use crate::traffic::Frames;

/// Frames per live-frames run. Each run sets up and tears down its
/// page pool, which takes a while (tens of ms here): long runs amortise it.
const LIVE_BATCH: u64 = 1 << 20;

/// How the main frames are sent.
#[derive(Clone)]
pub enum Rate {
    /// As fast as the kernel's live-frames runner sends the frames loaded
    /// in this program.
    Live(Arc<LiveFrames>),
    /// As fast as the AF_XDP socket takes them.
    Flat,
    /// This many frames a second from the AF_XDP socket.
    Paced(u64),
    /// This many frames a second, one at a time, each stamped.
    Stamped(u64, Arc<Stamps>),
}

pub struct GenConfig {
    /// Where `ifname` is (None: the calling thread's namespace).
    pub ns: Option<Arc<Netns>>,
    pub ifname: String,
    pub queue: u32,
    pub bind: BindMode,
    pub cpu: Option<usize>,
    /// Sent once first, at this rate (the handshakes; slow enough that
    /// none is lost).
    pub first: Option<(Arc<Frames>, u64)>,
    /// Then these, over and over.
    pub frames: Arc<Frames>,
    pub rate: Rate,
    /// Stop after this many of `frames`.
    pub limit: Option<u64>,
}

/// The generator thread's body: the first frames at their rate, then the
/// main ones at `rate`, until the limit or `shared.stop`.
pub fn generator(cfg: GenConfig, shared: Arc<GenShared>) {
    if let Err(e) = run_generator(&cfg, &shared) {
        *shared.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{e:#}"));
    }
    // Unblock a driver waiting for the steady phase, or for the end.
    shared.steady.store(true, Ordering::Relaxed);
    shared.done.store(true, Ordering::Relaxed);
}

fn run_generator(cfg: &GenConfig, shared: &GenShared) -> Result<()> {
    if let Some(ns) = &cfg.ns {
        ns.enter().context("generator: enter namespace")?;
    }
    if let Some(cpu) = cfg.cpu {
        pin(cpu);
    }
    tight_timers();
    shared.tid.store(gettid(), Ordering::Relaxed);
    let needs_socket = cfg.first.is_some() || !matches!(cfg.rate, Rate::Live(_));
    let mut s = if needs_socket {
        let s = Sender::open(&cfg.ifname, cfg.queue, cfg.bind)?;
        shared
            .zero_copy
            .store(s.xsk().mode() == XskMode::ZeroCopy, Ordering::Relaxed);
        Some(s)
    } else {
        None
    };
    if let (Some((first, pps)), Some(s)) = (&cfg.first, s.as_mut()) {
        let pace = Pace {
            pps: Some(*pps),
            burst: 16,
            limit: Some(first.len() as u64),
        };
        s.paced(first, &mut 0, pace, None, shared)?;
        // Let the last of them through before the main frames.
        std::thread::sleep(Duration::from_millis(20));
        s.reap(shared);
    }
    shared
        .steady_sent
        .store(shared.sent.load(Ordering::Relaxed), Ordering::Relaxed);
    shared.steady_ns.store(mono_ns(), Ordering::Relaxed);
    shared.steady.store(true, Ordering::Relaxed);
    let mut cursor = 0;
    let frames = &cfg.frames;
    let (pps, burst, stamps) = match &cfg.rate {
        Rate::Live(live) => return send_live(live, cfg.limit, shared),
        Rate::Flat => (None, GEN_BATCH, None),
        &Rate::Paced(pps) => (Some(pps), GEN_BATCH, None),
        Rate::Stamped(pps, stamps) => (Some(*pps), 1, Some(&**stamps)),
    };
    let mut s = s.expect("a socket for every AF_XDP rate");
    let pace = Pace {
        pps,
        burst,
        limit: cfg.limit,
    };
    s.paced(frames, &mut cursor, pace, stamps, shared)?;
    Ok(())
}

/// The live-frames program, flat out, until `limit` frames or a stop.
///
/// Two threads on this CPU take turns running the program: each run ends
/// with a page-pool teardown that sleeps for a while (tens of ms here), and
/// one thread alone would leave gaps in the traffic. The program's per-CPU
/// state stays consistent: a run is not preempted. A third thread
/// publishes the program's own count of frames sent.
fn send_live(live: &LiveFrames, limit: Option<u64>, shared: &GenShared) -> Result<()> {
    let base = shared.sent.load(Ordering::Relaxed);
    let left = AtomicU64::new(limit.unwrap_or(u64::MAX));
    let done = AtomicBool::new(false);
    let run = || -> Result<()> {
        while !shared.stop.load(Ordering::Relaxed) {
            let mut n = 0;
            let take = left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                n = l.min(LIVE_BATCH);
                Some(l - n)
            });
            if take.is_err() || n == 0 {
                break;
            }
            live.send(n as u32)?;
        }
        Ok(())
    };
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                shared
                    .sent
                    .store(base + live.sent().unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
            shared
                .sent
                .store(base + live.sent().unwrap_or(0), Ordering::Relaxed);
        });
        let second = scope.spawn(|| {
            shared.tid2.store(gettid(), Ordering::Relaxed);
            run()
        });
        let r = run();
        let r2 = second
            .join()
            .unwrap_or_else(|_| Err(anyhow!("generator panicked")));
        done.store(true, Ordering::Relaxed);
        r.and(r2)
    })
}
