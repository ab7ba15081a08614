//! The AF_XDP sockets of the bench other than rstwall's own: the bare
//! forwarding loop (the ceiling), the generator and the latency sink.
//!
//! The lab's sockets are bound in copy mode with need_wakeup (veth has no
//! zero-copy), `rstwall-bench gen`'s in zero-copy where the driver can.
//! None lets libxdp load a program: rstwall's XDP program is on every port
//! that receives, and each socket is registered in its XSKMAP by the
//! caller.

use std::io::{self, Write};
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use hdrhistogram::Histogram;
use rstwall_bench::frame;
use rstwall_bench::gen::XskBind;
use rstwall_bench::traffic::Frames;
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

use super::cpu::gettid;
use super::lab::Netns;
use super::live::LiveGen;

/// The same idle policy as the datapath's worker (`afxdp/worker.rs`):
/// spin this many empty iterations, then sleep in poll().
const SPINS_BEFORE_SLEEP: u32 = 256;
const MAX_SLEEP_MS: i32 = 20;

pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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
fn tight_timers() {
    // SAFETY: PR_SET_TIMERSLACK takes a value in ns.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };
}

pub fn pin(cpu: usize) {
    if let Err(e) = rstwall_afxdp::sys::pin_current_thread(cpu) {
        eprintln!("cannot pin thread to CPU {cpu}: {e}");
    }
}

/// A UMEM of `frames` frames, with fill and completion rings of `ring`.
pub fn umem(frame_size: u32, ring: u32, frames: u32) -> Result<(Umem, Vec<FrameDesc>)> {
    let q = QueueSize::new(ring).map_err(|e| anyhow!("ring size {ring}: {e}"))?;
    let cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(frame_size).map_err(|e| anyhow!("frame size: {e}"))?)
        .fill_queue_size(q)
        .comp_queue_size(q)
        .build()
        .map_err(|e| anyhow!("UMEM config: {e}"))?;
    let frames = NonZeroU32::new(frames).context("UMEM of 0 frames")?;
    Umem::new(cfg, frames, false).map_err(|e| anyhow!("UMEM: {e}: {:?}", e))
}

/// One bound socket's four rings.
pub struct Rings {
    pub tx: TxQueue,
    pub rx: RxQueue,
    pub fill: FillQueue,
    pub comp: CompQueue,
}

impl Rings {
    pub fn fd(&self) -> RawFd {
        self.tx.fd().as_raw_fd()
    }
}

/// A socket on `ifname` queue `queue` from the calling thread's
/// namespace, bound as `bind` says; whether it is zero-copy. Each
/// (interface, queue) pair is bound once per UMEM.
pub fn socket(
    umem: &Umem,
    ifname: &str,
    queue: u32,
    ring: u32,
    bind: XskBind,
) -> Result<(Rings, bool)> {
    let attempts: &[bool] = match bind {
        XskBind::Auto => &[true, false],
        XskBind::ZeroCopy => &[true],
        XskBind::Copy => &[false],
    };
    let mut last = None;
    for &zero_copy in attempts {
        match bind_once(umem, ifname, queue, ring, zero_copy) {
            Ok(rings) => return Ok((rings, zero_copy)),
            Err(e) => {
                let unsupported = e.chain().any(|c| {
                    c.downcast_ref::<io::Error>()
                        .is_some_and(|e| e.raw_os_error() == Some(libc::EOPNOTSUPP))
                });
                last = Some(e);
                if !(zero_copy && unsupported) {
                    break;
                }
            }
        }
    }
    let e = last.expect("one bind attempted");
    let unsupported = e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.raw_os_error() == Some(libc::EOPNOTSUPP))
    });
    if bind == XskBind::ZeroCopy && unsupported {
        return Err(e.context(format!(
            "{ifname} has no zero-copy AF_XDP (--xdp-mode auto falls back to copy mode)"
        )));
    }
    Err(e)
}

fn bind_once(umem: &Umem, ifname: &str, queue: u32, ring: u32, zero_copy: bool) -> Result<Rings> {
    let q = QueueSize::new(ring).map_err(|e| anyhow!("ring size {ring}: {e}"))?;
    let mode = if zero_copy {
        BindFlags::XDP_ZEROCOPY
    } else {
        BindFlags::XDP_COPY
    };
    let cfg = SocketConfig::builder()
        .rx_queue_size(q)
        .tx_queue_size(q)
        .bind_flags(mode | BindFlags::XDP_USE_NEED_WAKEUP)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .build();
    let iface: Interface = ifname
        .parse()
        .map_err(|_| anyhow!("bad interface name {ifname}"))?;
    let deadline = Instant::now() + BUSY_RETRY;
    loop {
        // SAFETY: program load inhibited, and every caller binds a pair once.
        match unsafe { xsk_rs::Socket::new(cfg, umem, &iface, queue) } {
            Ok((tx, rx, rings)) => {
                let (fill, comp) = rings.context("socket without fill and completion rings")?;
                return Ok(Rings { tx, rx, fill, comp });
            }
            Err(e) => {
                // The OS error, if any, as the source: is_busy looks for it.
                let os = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<io::Error>())
                    .and_then(io::Error::raw_os_error);
                let e = match os {
                    Some(code) => anyhow::Error::new(io::Error::from_raw_os_error(code))
                        .context(format!("AF_XDP socket on {ifname}/{queue}: {e}")),
                    None => anyhow!("AF_XDP socket on {ifname}/{queue}: {e}"),
                };
                if !is_busy(&e) || Instant::now() > deadline {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// How long to retry a bind that finds the queue busy: the kernel lets go
/// of a closed socket's queue asynchronously (in a work item that takes
/// the RTNL lock), so the previous contender's socket may still hold it
/// for a while, seconds when something else holds RTNL.
pub const BUSY_RETRY: Duration = Duration::from_secs(30);

/// Whether `e` is EBUSY somewhere down its chain.
pub fn is_busy(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.raw_os_error() == Some(libc::EBUSY))
    })
}

/// The kernel's drop counters of an AF_XDP socket (XDP_STATISTICS): frames
/// lost because its RX ring was full, or for other reasons.
pub fn xsk_rx_drops(fd: RawFd) -> Option<u64> {
    // SAFETY: an all-zero xdp_statistics is valid.
    let mut s: libc::xdp_statistics = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
    // SAFETY: `s` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_STATISTICS,
            (&mut s as *mut libc::xdp_statistics).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(s.rx_ring_full + s.rx_dropped)
}

// ---------------------------------------------------------------------------
// The bare loop

/// The shape of the bare loop's UMEM and rings: taken from the datapath's
/// configuration so the two match.
#[derive(Clone, Copy, Debug)]
pub struct BareShape {
    pub ring: u32,
    pub frames_per_port: u32,
    pub frame_size: u32,
    pub batch: usize,
}

struct BarePort {
    rings: Rings,
    /// Frames this port receives into (its partition of the UMEM).
    free: Vec<FrameDesc>,
    tx_pending: bool,
    ring: u32,
}

/// Both ports' sockets over one UMEM, opened but not yet serviced.
pub struct BareSockets {
    umem: Umem,
    ports: [BarePort; 2],
    batch: usize,
}

impl BareSockets {
    /// Open a UMEM and a socket on queue 0 of `a` and of `b`, as
    /// `Datapath::start` does: one UMEM, a partition of it per port.
    pub fn open(shape: BareShape, a: &str, b: &str) -> Result<BareSockets> {
        let (umem, mut descs) = umem(shape.frame_size, shape.ring, 2 * shape.frames_per_port)?;
        let free_b = descs.split_off(shape.frames_per_port as usize);
        let port = |name: &str, free: Vec<FrameDesc>| -> Result<BarePort> {
            Ok(BarePort {
                rings: socket(&umem, name, 0, shape.ring, XskBind::Copy)?.0,
                free,
                tx_pending: false,
                ring: shape.ring,
            })
        };
        let pa = port(a, descs)?;
        let pb = port(b, free_b)?;
        Ok(BareSockets {
            umem,
            ports: [pa, pb],
            batch: shape.batch,
        })
    }

    /// The sockets' fds, A's then B's, to register in the XSKMAPs.
    pub fn fds(&self) -> [RawFd; 2] {
        [self.ports[0].rings.fd(), self.ports[1].rings.fd()]
    }
}

impl BarePort {
    fn refill(&mut self) {
        let have = self.free.len();
        if have == 0 {
            return;
        }
        let n = (self.rings.fill.nb_free(have as u32) as usize).min(have);
        if n == 0 {
            return;
        }
        let start = have - n;
        // SAFETY: frames on our free list: nobody else holds them.
        let done = unsafe { self.rings.fill.produce(&self.free[start..]) };
        self.free.truncate(have - done);
    }

    fn kick_fill(&mut self) -> io::Result<()> {
        if self.rings.fill.needs_wakeup() {
            // SAFETY: a zero-length, non-blocking recvfrom on our socket.
            let rc = unsafe {
                libc::recvfrom(
                    self.rings.fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN) => {}
                    _ => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn kick_tx(&mut self) -> io::Result<()> {
        if !self.tx_pending {
            return Ok(());
        }
        if self.rings.tx.nb_free_exact() == self.ring {
            self.tx_pending = false;
            return Ok(());
        }
        if self.rings.tx.needs_wakeup() {
            self.rings.tx.wakeup()?;
        }
        Ok(())
    }
}

/// Completed TX frames of `sender` back onto their owner's free list.
fn reap(sender: &mut BarePort, owner_free: &mut Vec<FrameDesc>, buf: &mut [FrameDesc]) -> usize {
    // SAFETY: the completion ring returns frames of this UMEM we submitted.
    let n = unsafe { sender.rings.comp.consume(buf) };
    owner_free.extend_from_slice(&buf[..n]);
    n
}

/// One RX burst from `from` straight onto `to`'s TX ring.
fn forward(
    from: &mut BarePort,
    to: &mut BarePort,
    rx_buf: &mut [FrameDesc],
    touch: Option<&Umem>,
) -> io::Result<usize> {
    let room = to.rings.tx.nb_free(rx_buf.len() as u32) as usize;
    let max = room.min(rx_buf.len());
    if max == 0 {
        to.tx_pending = true;
        return Ok(0);
    }
    // SAFETY: received frames are ours until handed on.
    let n = unsafe { from.rings.rx.consume(&mut rx_buf[..max]) };
    if n == 0 {
        return Ok(0);
    }
    if let Some(umem) = touch {
        // Read each frame's first cache line, as any parser must.
        let mut sum = 0u64;
        for d in &rx_buf[..n] {
            // SAFETY: we hold the frame until it goes on the TX ring.
            let data = unsafe { umem.data(d) };
            let c = data.contents();
            sum = c[..c.len().min(64)]
                .iter()
                .fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
        }
        std::hint::black_box(sum);
    }
    // SAFETY: the frames are ours and belong to the UMEM `to` shares.
    let sent = unsafe { to.rings.tx.produce(&rx_buf[..n]) };
    from.free.extend_from_slice(&rx_buf[sent..n]);
    if sent > 0 {
        to.tx_pending = true;
        if to.rings.tx.needs_wakeup() {
            to.rings.tx.wakeup()?;
        }
    }
    Ok(n)
}

fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` holds `fds.len()` valid entries.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// The bare loop: the datapath worker's inline loop (`run_inline`) with
/// the same rings, batching, kicks and idle policy, and without the
/// engine, the frame ledger and the stats: every frame received on one
/// port is transmitted on the other.
///
/// With `touch`, the loop also reads the first cache line of every frame
/// it forwards: what any parser pays before it parses (in copy mode the
/// frame was last written by the kernel, on the CPU that received it).
pub fn run_bare(
    mut s: BareSockets,
    touch: bool,
    stop: &AtomicBool,
    tid: &AtomicI32,
) -> io::Result<()> {
    tid.store(gettid(), Ordering::Relaxed);
    let batch = s.batch;
    let BareSockets { umem, ports, .. } = &mut s;
    let touch = touch.then_some(&*umem);
    let [a, b] = ports;
    let mut rx_buf = vec![FrameDesc::default(); batch];
    let mut comp_buf = vec![FrameDesc::default(); batch];
    let mut idle = 0u32;
    a.refill();
    b.refill();
    while !stop.load(Ordering::Relaxed) {
        // B's completion ring returns A's frames, and the other way round.
        let mut work = reap(b, &mut a.free, &mut comp_buf);
        work += reap(a, &mut b.free, &mut comp_buf);
        a.refill();
        b.refill();
        let from_a = forward(a, b, &mut rx_buf, touch)?;
        let from_b = forward(b, a, &mut rx_buf, touch)?;
        if from_a == 0 {
            a.kick_fill()?;
        }
        if from_b == 0 {
            b.kick_fill()?;
        }
        a.kick_tx()?;
        b.kick_tx()?;
        work += from_a + from_b;
        if work == 0 {
            idle += 1;
            if idle >= SPINS_BEFORE_SLEEP && !a.tx_pending && !b.tx_pending {
                idle = 0;
                poll_readable(&[a.rings.fd(), b.rings.fd()], MAX_SLEEP_MS)?;
            }
        } else {
            idle = 0;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The generator

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

/// What the generator and the thread driving it share.
#[derive(Default)]
pub struct GenShared {
    pub stop: AtomicBool,
    /// Frames sent (taken from the TX ring by the kernel, or counted by
    /// the live-frames program).
    pub sent: AtomicU64,
    /// The first frames (handshakes) are out; the main ones follow.
    pub steady: AtomicBool,
    /// When they started (CLOCK_MONOTONIC ns), and `sent` then.
    pub steady_ns: AtomicU64,
    pub steady_sent: AtomicU64,
    /// Everything asked for was sent (a limit was reached).
    pub done: AtomicBool,
    pub tid: AtomicI32,
    /// The second live-frames thread, when there is one.
    pub tid2: AtomicI32,
    /// The AF_XDP socket is in zero-copy mode.
    pub zero_copy: AtomicBool,
    pub error: Mutex<Option<String>>,
}

/// How the main frames are sent.
#[derive(Clone)]
pub enum Rate {
    /// As fast as the kernel's live-frames runner sends the frames loaded
    /// in this program.
    Live(Arc<LiveGen>),
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
    pub bind: XskBind,
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

const GEN_FRAMES: u32 = 4096;
const GEN_RING: u32 = 2048;
const GEN_BATCH: usize = 64;
/// Frames per live-frames run. Each run sets up and tears down its
/// page pool, which takes a while (tens of ms here): long runs amortise it.
const LIVE_BATCH: u64 = 1 << 20;

/// How [`Sender::paced`] sends.
#[derive(Clone, Copy)]
struct Pace {
    /// Frames per second; None: as fast as the ring takes them.
    pps: Option<u64>,
    /// At most this many frames at a time (catching up after a late wake).
    burst: usize,
    /// Stop after this many frames.
    limit: Option<u64>,
}

struct Sender {
    umem: Umem,
    rings: Rings,
    free: Vec<FrameDesc>,
    comp_buf: Vec<FrameDesc>,
    /// Frames handed to the TX ring and not yet completed.
    in_flight: u64,
}

impl Sender {
    fn reap(&mut self, shared: &GenShared) {
        // SAFETY: completions are frames of this UMEM we submitted.
        let n = unsafe { self.rings.comp.consume(&mut self.comp_buf) };
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
        let k = (self.rings.tx.nb_free(k as u32) as usize).min(k);
        if k > 0 {
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
            let done = unsafe { self.rings.tx.produce(&self.free[at..]) };
            self.free.truncate(self.free.len() - done);
            self.in_flight += done as u64;
        }
        if self.rings.tx.needs_wakeup() {
            self.rings.tx.wakeup()?;
        }
        Ok(k)
    }

    /// Send `frames` (from `cursor`) as `pace` says, until its limit or
    /// until the bench stops; then wait (up to 100 ms) for the last ones
    /// to complete.
    fn paced(
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
            if self.rings.tx.needs_wakeup() {
                self.rings.tx.wakeup()?;
            }
            self.reap(shared);
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }
}

/// The generator thread's body: the first frames at their rate, then the
/// main ones at `rate`, until the limit or `shared.stop`.
pub fn generator(cfg: GenConfig, shared: Arc<GenShared>) {
    if let Err(e) = run_generator(&cfg, &shared) {
        *shared.error.lock().unwrap() = Some(format!("{e:#}"));
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
        let (umem, free) = umem(2048, GEN_RING, GEN_FRAMES)?;
        let (rings, zero_copy) = socket(&umem, &cfg.ifname, cfg.queue, GEN_RING, cfg.bind)?;
        shared.zero_copy.store(zero_copy, Ordering::Relaxed);
        Some(Sender {
            umem,
            rings,
            free,
            comp_buf: vec![FrameDesc::default(); GEN_BATCH],
            in_flight: 0,
        })
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
    match (&cfg.rate, s.as_mut()) {
        (Rate::Live(live), _) => send_live(live, cfg.limit, shared)?,
        (Rate::Flat, Some(s)) => {
            let pace = Pace {
                pps: None,
                burst: GEN_BATCH,
                limit: cfg.limit,
            };
            s.paced(frames, &mut cursor, pace, None, shared)?
        }
        (&Rate::Paced(pps), Some(s)) => {
            let pace = Pace {
                pps: Some(pps),
                burst: GEN_BATCH,
                limit: cfg.limit,
            };
            s.paced(frames, &mut cursor, pace, None, shared)?
        }
        (Rate::Stamped(pps, stamps), Some(s)) => {
            let pace = Pace {
                pps: Some(*pps),
                burst: 1,
                limit: cfg.limit,
            };
            s.paced(frames, &mut cursor, pace, Some(stamps), shared)?
        }
        (_, None) => unreachable!("a socket for every AF_XDP rate"),
    }
    Ok(())
}

/// The live-frames program, flat out, until `limit` frames or a stop.
///
/// Two threads on this CPU take turns running the program: each run ends
/// with a page-pool teardown that sleeps for a while (tens of ms here), and
/// one thread alone would leave gaps in the traffic. The program's per-CPU
/// state stays consistent: a run is not preempted. A third thread
/// publishes the program's own count of frames sent.
fn send_live(live: &LiveGen, limit: Option<u64>, shared: &GenShared) -> Result<()> {
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
                shared.sent.store(base + live.sent(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
            shared.sent.store(base + live.sent(), Ordering::Relaxed);
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

// ---------------------------------------------------------------------------
// The latency sink

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
    rings: Rings,
}

impl Sink {
    /// Open the socket (from the calling thread, in the sink namespace)
    /// and hand all its frames to the fill ring.
    pub fn open(ifname: &str) -> Result<Sink> {
        let (umem, free) = umem(2048, SINK_RING, SINK_RING)?;
        let (mut rings, _) = socket(&umem, ifname, 0, SINK_RING, XskBind::Copy)?;
        // SAFETY: all frames are ours; the ring holds exactly that many.
        let n = unsafe { rings.fill.produce(&free) };
        if n != free.len() {
            return Err(anyhow!("sink: fill ring took {n} of {} frames", free.len()));
        }
        Ok(Sink { umem, rings })
    }

    pub fn fd(&self) -> RawFd {
        self.rings.fd()
    }

    /// Receive until `shared.stop`; the latency histogram (ns).
    pub fn run(mut self, cpu: usize, stamps: &Stamps, shared: &SinkShared) -> Histogram<u64> {
        pin(cpu);
        let mut hist = Histogram::<u64>::new_with_max(10_000_000_000, 3).expect("histogram");
        let mut buf = vec![FrameDesc::default(); 64];
        let fd = self.fd();
        while !shared.stop.load(Ordering::Relaxed) {
            // SAFETY: received frames are ours until back on the fill ring.
            let n = unsafe { self.rings.rx.consume(&mut buf) };
            if n == 0 {
                if let Err(e) = poll_readable(&[fd], 10) {
                    *shared.error.lock().unwrap() = Some(format!("sink poll: {e}"));
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
            unsafe { self.rings.fill.produce(&buf[..n]) };
        }
        hist
    }
}
