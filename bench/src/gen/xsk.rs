//! The AF_XDP sender: frames of a table written into UMEM frames and put
//! on the TX ring, paced or as fast as the ring takes them; and the
//! latency stamps some of them carry.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use rstwall_afxdp::socket::{FrameDesc, Umem, Xsk};
use rstwall_afxdp::BindMode;

use super::shared::GenShared;
use crate::cpu::mono_ns;
use crate::frame;
use crate::traffic::Frames;
use crate::xsk;

const GEN_FRAMES: u32 = 4096;
const GEN_RING: u32 = 2048;
pub(super) const GEN_BATCH: usize = 64;

/// Latency stamps: each stamped frame carries a 16-bit tag in its IP header
/// ([`frame::set_ip_tag`]: the IPv4 identification or the IPv6 flow label,
/// which every forwarder, the kernel's included, passes on unchanged), and
/// the send time of each tag is kept here for the sink, in the same
/// process, to look up. Tags wrap after 65,536 frames (3.3 s at 20 kpps),
/// far above any latency measured.
pub struct Stamps {
    sent: Box<[AtomicU64]>,
    next: AtomicU16,
}

impl Default for Stamps {
    fn default() -> Self {
        Stamps {
            sent: (0..1 << 16).map(|_| AtomicU64::new(0)).collect(),
            next: AtomicU16::new(0),
        }
    }
}

impl Stamps {
    /// A fresh tag, sent at `now_ns`.
    fn stamp(&self, now_ns: u64) -> u16 {
        let tag = self.next.fetch_add(1, Ordering::Relaxed);
        self.sent[usize::from(tag)].store(now_ns, Ordering::Relaxed);
        tag
    }

    /// When the frame tagged `tag` was sent (once: the tag is cleared).
    pub fn take(&self, tag: u16) -> Option<u64> {
        let t = self.sent[usize::from(tag)].swap(0, Ordering::Relaxed);
        (t != 0).then_some(t)
    }
}

/// How [`Sender::paced`] sends.
#[derive(Clone, Copy)]
pub(super) struct Pace {
    /// Frames per second; None: as fast as the ring takes them.
    pub pps: Option<u64>,
    /// At most this many frames at a time (catching up after a late wake).
    pub burst: usize,
    /// Stop after this many frames.
    pub limit: Option<u64>,
}

/// One AF_XDP socket and its own UMEM, for sending.
pub(super) struct Sender {
    umem: Umem,
    xsk: Xsk,
    free: Vec<FrameDesc>,
    comp_buf: Vec<FrameDesc>,
    /// Frames handed to the TX ring and not yet completed.
    in_flight: u64,
}

impl Sender {
    /// A socket on `ifname` queue `queue` of the calling thread's namespace.
    pub fn open(ifname: &str, queue: u32, bind: BindMode) -> Result<Sender> {
        let (umem, free) = xsk::umem(2048, GEN_RING, GEN_FRAMES)?;
        let xsk = xsk::socket(&umem, ifname, queue, GEN_RING, bind)?;
        Ok(Sender {
            umem,
            xsk,
            free,
            comp_buf: vec![FrameDesc::default(); GEN_BATCH],
            in_flight: 0,
        })
    }

    pub fn xsk(&self) -> &Xsk {
        &self.xsk
    }

    /// Completed frames back on the free list, counted as sent.
    pub fn reap(&mut self, shared: &GenShared) {
        // SAFETY: completions are frames of this UMEM we submitted.
        let n = unsafe { self.xsk.comp.consume(&mut self.comp_buf) };
        self.free.extend_from_slice(&self.comp_buf[..n]);
        self.in_flight -= n as u64;
        shared.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Send up to `k` frames of `frames` from `cursor` on; the number the
    /// TX ring took.
    fn send(
        &mut self,
        frames: &Frames,
        cursor: &mut usize,
        k: usize,
        stamps: Option<&Stamps>,
        shared: &GenShared,
    ) -> io::Result<usize> {
        self.reap(shared);
        let k = k.min(self.free.len());
        let k = (self.xsk.tx.nb_free(k as u32) as usize).min(k);
        let at = self.free.len() - k;
        for d in &mut self.free[at..] {
            // SAFETY: the frame is on our free list: ours alone.
            let mut data = unsafe { self.umem.data_mut(d) };
            let mut c = data.cursor();
            c.set_pos(0);
            c.write_all(frames.get(*cursor))?;
            if let Some(stamps) = stamps {
                let tag = stamps.stamp(mono_ns());
                frame::set_ip_tag(data.contents_mut(), tag);
            }
            *cursor += 1;
            if *cursor == frames.len() {
                *cursor = 0;
            }
        }
        // SAFETY: ours until they come back on the completion ring.
        let done = unsafe { self.xsk.transmit(&self.free[at..]) }?;
        self.free.truncate(self.free.len() - done);
        self.in_flight += done as u64;
        if done == 0 {
            // Nothing new went on the ring: what is there may still need
            // a kick (transmit kicks only for what it submits).
            self.xsk.kick_tx()?;
        }
        Ok(k)
    }

    /// Send `frames` (from `cursor`) as `pace` says, until its limit or
    /// until the bench stops; then wait (up to 100 ms) for the last ones
    /// to complete.
    pub fn paced(
        &mut self,
        frames: &Frames,
        cursor: &mut usize,
        pace: Pace,
        stamps: Option<&Stamps>,
        shared: &GenShared,
    ) -> io::Result<()> {
        let Pace { pps, burst, limit } = pace;
        let start = mono_ns();
        let mut produced = 0u64;
        while !shared.stop.load(Ordering::Relaxed) && limit.is_none_or(|l| produced < l) {
            let mut k = burst;
            if let Some(pps) = pps {
                let elapsed = mono_ns() - start;
                let allowed = (elapsed as u128 * pps as u128 / 1_000_000_000) as u64 + 1;
                if allowed <= produced {
                    sleep_until(start + (produced as u128 * 1_000_000_000 / pps as u128) as u64);
                    continue;
                }
                k = k.min((allowed - produced) as usize);
            }
            if let Some(l) = limit {
                k = k.min((l - produced) as usize);
            }
            produced += self.send(frames, cursor, k, stamps, shared)? as u64;
        }
        let deadline = mono_ns() + 100_000_000;
        while self.in_flight > 0 && mono_ns() < deadline {
            self.xsk.kick_tx()?;
            self.reap(shared);
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }
}

fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec; the remainder is not wanted.
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

/// Timers of the calling thread fire within 1 µs of their deadline (the
/// default slack is 50 µs, a whole period at 20 kpps).
pub(super) fn tight_timers() {
    // SAFETY: PR_SET_TIMERSLACK takes a value in ns.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
}
