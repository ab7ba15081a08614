//! What receives at the far end of the lab, on the sink's veth:
//!
//! * [`SinkCounter`] — a tc ingress program
//!   ([`rstwall_bpf::bench::SinkCounter`]) that counts every frame the
//!   bench marked ([`frame::marker_mac`]) by its marker code, then drops it
//!   — or, with [`frame::MARK_DELIVER`] in the code, hands it on to the
//!   sink's own stack (the blind-reset flood aimed at a real connection).
//!   Frames without a marker (the real TCP transfer) go on untouched. tc,
//!   not XDP: the sink's veth then runs no NAPI, so a frame a forwarder
//!   transmits is received with netif_rx, in softirq within the transmit
//!   itself, on the forwarder's CPU — the cheapest receive a veth allows —
//!   and no GRO merges frames before they are counted.
//! * [`Sink`] — an AF_XDP socket that turns each stamped frame into a
//!   one-way latency sample.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rstwall_afxdp::socket::{self, FrameDesc, Umem, Xsk};
use rstwall_afxdp::BindMode;
use rstwall_bpf::bench;

use crate::cpu::{mono_ns, pin};
use crate::frame::{self, MARKER_PREFIX, MARK_DELIVER};
use crate::gen::Stamps;
use crate::lab::{InNs, Netns};
use crate::xsk;

/// One counter per marker code.
pub const CODES: usize = bench::SINK_CODES;

/// The counter, attached to a veth's tc ingress hook in its namespace (and
/// taken off it from there when dropped).
pub struct SinkCounter(InNs<bench::SinkCounter>);

impl SinkCounter {
    pub fn attach(ns: &Arc<Netns>, ifname: &str) -> Result<SinkCounter> {
        let counter = InNs::make(ns, || {
            let ifindex = rstwall_afxdp::sys::ifindex(ifname)?;
            let mut counter = bench::SinkCounter::load(MARKER_PREFIX, MARK_DELIVER)?;
            counter.attach(ifindex)?;
            Ok(counter)
        })
        .with_context(|| format!("the sink's counter on {ifname}"))?;
        Ok(SinkCounter(counter))
    }

    /// Frames counted so far, by marker code.
    pub fn counts(&self) -> Result<Box<[u64; CODES]>> {
        self.0.counts().context("reading the sink's counters")
    }
}

/// What the latency sink and the thread driving it share.
#[derive(Default)]
pub struct SinkShared {
    pub stop: AtomicBool,
    /// Record stamped frames (the measurement window).
    pub record: AtomicBool,
    pub received: AtomicU64,
    pub error: Mutex<Option<String>>,
}

const SINK_RING: u32 = 2048;

/// An AF_XDP socket on the sink's veth that turns each stamped frame into
/// a one-way latency sample (receive time − send time, both read from
/// CLOCK_MONOTONIC in this process). It waits in poll(): the wake-up is
/// part of every sample, for every contender alike.
pub struct Sink {
    umem: Umem,
    xsk: Xsk,
}

impl Sink {
    /// Open the socket (from the calling thread, in the sink namespace)
    /// and hand all its frames to the fill ring.
    pub fn open(ifname: &str) -> Result<Sink> {
        let (umem, mut free) = xsk::umem(2048, SINK_RING, SINK_RING)?;
        let mut xsk = xsk::socket(&umem, ifname, 0, SINK_RING, BindMode::Copy)?;
        let frames = free.len();
        // SAFETY: all frames are ours; the ring holds exactly that many.
        let n = unsafe { xsk.fill_from(&mut free, |_| {}) };
        if n != frames {
            bail!("sink: fill ring took {n} of {frames} frames");
        }
        Ok(Sink { umem, xsk })
    }

    pub fn fd(&self) -> RawFd {
        self.xsk.fd()
    }

    /// Receive until `shared.stop`; the latency histogram (ns).
    pub fn run(mut self, cpu: usize, stamps: &Stamps, shared: &SinkShared) -> Histogram<u64> {
        pin(cpu);
        let mut hist = Histogram::<u64>::new_with_max(10_000_000_000, 3).expect("histogram");
        let mut buf = vec![FrameDesc::default(); 64];
        let fd = self.fd();
        while !shared.stop.load(Ordering::Relaxed) {
            // SAFETY: received frames are ours until back on the fill ring.
            let n = unsafe { self.xsk.rx.consume(&mut buf) };
            if n == 0 {
                if let Err(e) = socket::wait_readable([fd], Duration::from_millis(10)) {
                    *shared.error.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(format!("sink poll: {e}"));
                    break;
                }
                continue;
            }
            let now = mono_ns();
            let record = shared.record.load(Ordering::Relaxed);
            for d in &buf[..n] {
                // SAFETY: as above.
                let data = unsafe { self.umem.data(d) };
                let sent = frame::ip_tag(data.contents()).and_then(|t| stamps.take(t));
                if let (true, Some(sent)) = (record, sent) {
                    hist.saturating_record(now.saturating_sub(sent));
                }
            }
            shared.received.fetch_add(n as u64, Ordering::Relaxed);
            // SAFETY: the frames came off the RX ring; the fill ring has
            // room for every frame of the UMEM.
            unsafe { self.xsk.fill.produce(&buf[..n]) };
        }
        hist
    }
}
