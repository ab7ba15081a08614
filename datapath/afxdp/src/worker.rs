//! The worker loops. See the module docs of [`super`] for the design.

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};

use xsk_rs::{FrameDesc, Umem};

use super::control::{flow_row, BatchLatency, CaptureTap, PolicySlot, Query};
use super::ledger::Ledger;
use super::socket::{RingStats, Xsk};
use super::stats::{SocketStats, WorkerStats};
use super::{sys, AfXdpError};
use rstwall_engine::engine::Engine;
use rstwall_engine::policy::{Policy, Verdict};
use rstwall_engine::wire::LinkType;

/// Empty loop iterations before a worker sleeps in poll(). An empty
/// iteration makes no syscall (only ring index reads), so spinning a little
/// keeps latency low under load without burning a core when idle.
const SPINS_BEFORE_SLEEP: u32 = 256;
/// Iterations between looks at the clock for publishing (a busy worker
/// runs a few million iterations a second; the batch clock is separate).
const CLOCK_CHECK_EVERY: u32 = 64;
/// Completed seconds a worker publishes for the daemon's merged alerts:
/// enough to ride out a few missed publishes.
const RECENT_SECONDS: usize = 5;
/// Longest sleep: bounds how late a stop request or a publish is seen.
const MAX_SLEEP: Duration = Duration::from_millis(20);

/// One port's socket on this worker's queue, and the free list of the
/// frames this port receives into (its UMEM partition).
pub(super) struct PortRings {
    name: String,
    xsk: Xsk,
    free: Vec<FrameDesc>,
    /// The TX ring may still hold descriptors the kernel has not taken.
    tx_pending: bool,
    rx_frames: u64,
    tx_frames: u64,
    tx_wakeups: u64,
    fill_wakeups: u64,
    ring: RingStats,
}

impl PortRings {
    pub(super) fn new(name: &str, xsk: Xsk, free: Vec<FrameDesc>) -> PortRings {
        PortRings {
            name: name.to_string(),
            xsk,
            free,
            tx_pending: false,
            rx_frames: 0,
            tx_frames: 0,
            tx_wakeups: 0,
            fill_wakeups: 0,
            ring: RingStats::default(),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn fd(&self) -> RawFd {
        self.xsk.fd()
    }

    pub(super) fn mode(&self) -> super::XskMode {
        self.xsk.mode
    }

    /// Move free frames onto the fill ring: as many as fit.
    fn refill(&mut self, ledger: &mut Ledger) {
        let have = self.free.len();
        if have == 0 {
            return;
        }
        let room = self.xsk.fill.nb_free(have as u32) as usize;
        let n = room.min(have);
        if n == 0 {
            return;
        }
        let start = have - n;
        // SAFETY: these frames are on our free list: neither the kernel nor
        // any other code holds them.
        let done = unsafe { self.xsk.fill.produce(&self.free[start..]) };
        for d in &self.free[start..start + done] {
            ledger.to_receive(d.addr());
        }
        self.free.drain(start..start + done);
    }

    /// Zero-copy drivers may ask to be kicked to pick up fill entries.
    fn kick_fill(&mut self) -> io::Result<()> {
        if self.xsk.fill.needs_wakeup() {
            self.fill_wakeups += 1;
            // SAFETY: a zero-length, non-blocking recvfrom on our socket.
            let rc = unsafe {
                libc::recvfrom(
                    self.fd(),
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

    /// Kick the kernel to transmit what is on the TX ring, when it asks.
    /// Copy mode sends a limited number of frames per kick, so this is
    /// repeated every iteration until the ring has drained.
    fn kick_tx(&mut self) -> io::Result<()> {
        if !self.tx_pending {
            return Ok(());
        }
        if self.xsk.tx.nb_free_exact() == self.xsk.ring_size {
            self.tx_pending = false;
            return Ok(());
        }
        if self.xsk.tx.needs_wakeup() {
            self.tx_wakeups += 1;
            self.xsk.tx.wakeup()?;
        }
        Ok(())
    }

    fn quiet(&mut self) -> bool {
        self.xsk.tx.nb_free_exact() == self.xsk.ring_size && self.xsk.comp.nb_avail_exact() == 0
    }

    fn stats(&self, queue: u32) -> SocketStats {
        SocketStats {
            port: self.name.clone(),
            queue,
            mode: self.xsk.mode,
            rx_frames: self.rx_frames,
            tx_frames: self.tx_frames,
            tx_wakeups: self.tx_wakeups,
            fill_wakeups: self.fill_wakeups,
            ring: self.ring,
        }
    }
}

/// Take completed TX frames back onto their owner's free list.
fn reap(
    ledger: &mut Ledger,
    sender: &mut PortRings,
    owner_free: &mut Vec<FrameDesc>,
    buf: &mut [FrameDesc],
) -> usize {
    // SAFETY: the completion ring returns frames of this UMEM that we
    // submitted; the kernel is done with them.
    let n = unsafe { sender.xsk.comp.consume(buf) };
    for d in &buf[..n] {
        ledger.completed(d.addr());
        owner_free.push(*d);
    }
    n
}

/// Everything a worker owns besides its rings.
pub(super) struct Worker {
    pub id: usize,
    pub queue: u32,
    pub cpu: Option<usize>,
    pub umem: Umem,
    pub frame_size: usize,
    pub engine: Engine,
    pub stop: Arc<AtomicBool>,
    pub stats: Sender<WorkerStats>,
    /// The policy to run; looked at once per loop iteration.
    pub policy: Arc<PolicySlot>,
    /// Generation of the policy the engine runs.
    pub policy_generation: u64,
    /// Workers sharing the global rate budgets ([`Policy::for_worker`]).
    pub workers: u32,
    pub queries: Receiver<Query>,
    pub capture: Arc<CaptureTap>,
    pub latency: BatchLatency,
    /// Sources the policy asked to block, for the control side.
    pub blocks: Sender<IpAddr>,
    pub publish_every: Duration,
    pub batch: usize,
    pub counters: LoopCounters,
}

/// Counters of the loop itself.
#[derive(Default)]
pub(super) struct LoopCounters {
    batches: u64,
    sleeps: u64,
    tx_ring_full_drops: u64,
    /// Block requests the control side had no room for.
    block_requests_dropped: u64,
    /// Frames submitted for TX since the last audit.
    tx_since_audit: u64,
}

impl Worker {
    /// Run until stopped; the final stats on a clean stop.
    pub(super) fn run(mut self, mut ports: Vec<PortRings>) -> Result<WorkerStats, AfXdpError> {
        let cpu = self.cpu.filter(|&c| match sys::pin_current_thread(c) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(worker = self.id, cpu = c, "cannot pin worker: {e}");
                false
            }
        });
        self.cpu = cpu;
        let total: usize = ports.iter().map(|p| p.free.len()).sum();
        let mut ledger = Ledger::new(total, self.frame_size);
        let id = self.id;
        let fail = |source: io::Error| AfXdpError::Worker { worker: id, source };
        match ports.len() {
            2 => self.run_inline(&mut ports, &mut ledger).map_err(fail)?,
            1 => self.run_tap(&mut ports[0], &mut ledger).map_err(fail)?,
            n => unreachable!("{n} ports per worker"),
        }
        let mut refs: Vec<&mut PortRings> = ports.iter_mut().collect();
        for p in refs.iter_mut() {
            if let Ok(r) = p.xsk.ring_stats() {
                p.ring = r;
            }
        }
        Ok(self.snapshot(&refs, &ledger))
    }

    fn run_inline(&mut self, ports: &mut [PortRings], ledger: &mut Ledger) -> io::Result<()> {
        let (a, b) = match ports {
            [a, b] => (a, b),
            _ => unreachable!(),
        };
        let mut rx_buf = vec![FrameDesc::default(); self.batch];
        let mut comp_buf = vec![FrameDesc::default(); self.batch];
        let mut tx_buf: Vec<FrameDesc> = Vec::with_capacity(self.batch);
        let mut idle = 0u32;
        let mut next_publish = Instant::now() + self.publish_every;
        let mut iterations = 0u32;
        a.refill(ledger);
        b.refill(ledger);
        while !self.stop.load(Ordering::Relaxed) {
            self.take_new_policy();
            // Completions first: B's completion ring returns A's frames.
            let mut work = reap(ledger, b, &mut a.free, &mut comp_buf);
            work += reap(ledger, a, &mut b.free, &mut comp_buf);
            a.refill(ledger);
            b.refill(ledger);
            let from_a = self.forward(a, b, ledger, &mut rx_buf, &mut tx_buf)?;
            let from_b = self.forward(b, a, ledger, &mut rx_buf, &mut tx_buf)?;
            if from_a == 0 {
                a.kick_fill()?;
            }
            if from_b == 0 {
                b.kick_fill()?;
            }
            a.kick_tx()?;
            b.kick_tx()?;
            work += from_a + from_b;
            debug_assert_eq!(
                ledger.check(a.free.len() + b.free.len()),
                Ok(()),
                "worker {}",
                self.id
            );
            let mut slept = false;
            if work == 0 {
                idle += 1;
                if idle >= SPINS_BEFORE_SLEEP && !a.tx_pending && !b.tx_pending {
                    idle = 0;
                    slept = true;
                    self.counters.sleeps += 1;
                    sleep_until_readable(&[a.fd(), b.fd()], next_publish)?;
                }
            } else {
                idle = 0;
            }
            iterations = iterations.wrapping_add(1);
            if (slept || iterations % CLOCK_CHECK_EVERY == 0) && Instant::now() >= next_publish {
                next_publish = Instant::now() + self.publish_every;
                let quiet = self.counters.tx_since_audit == 0 && a.quiet() && b.quiet();
                self.counters.tx_since_audit = 0;
                ledger.audit(quiet);
                self.tick(&mut [a, b], ledger);
            }
        }
        Ok(())
    }

    fn run_tap(&mut self, port: &mut PortRings, ledger: &mut Ledger) -> io::Result<()> {
        let mut rx_buf = vec![FrameDesc::default(); self.batch];
        let mut idle = 0u32;
        let mut next_publish = Instant::now() + self.publish_every;
        port.refill(ledger);
        let mut iterations = 0u32;
        while !self.stop.load(Ordering::Relaxed) {
            self.take_new_policy();
            let mut slept = false;
            // SAFETY: the RX ring hands us frames of this UMEM that the
            // kernel has finished writing.
            let n = unsafe { port.xsk.rx.consume(&mut rx_buf) };
            if n > 0 {
                let free = &mut port.free;
                // A mirror port only counts: the verdict is what enforce
                // would do, and it is in the telemetry.
                let started =
                    self.judge_batch(&rx_buf[..n], &mut port.rx_frames, ledger, |ledger, d, _| {
                        ledger.release(d.addr());
                        free.push(d);
                    });
                port.refill(ledger);
                self.latency.record(sys::now_ns().saturating_sub(started));
                idle = 0;
            } else {
                port.refill(ledger);
                port.kick_fill()?;
                idle += 1;
                if idle >= SPINS_BEFORE_SLEEP {
                    idle = 0;
                    slept = true;
                    self.counters.sleeps += 1;
                    sleep_until_readable(&[port.fd()], next_publish)?;
                }
            }
            debug_assert_eq!(ledger.check(port.free.len()), Ok(()), "worker {}", self.id);
            iterations = iterations.wrapping_add(1);
            if (slept || iterations % CLOCK_CHECK_EVERY == 0) && Instant::now() >= next_publish {
                next_publish = Instant::now() + self.publish_every;
                ledger.audit(true);
                self.tick(&mut [port], ledger);
            }
        }
        Ok(())
    }

    /// One RX burst from `from`, judged, and what passes submitted on `to`.
    fn forward(
        &mut self,
        from: &mut PortRings,
        to: &mut PortRings,
        ledger: &mut Ledger,
        rx_buf: &mut [FrameDesc],
        tx_buf: &mut Vec<FrameDesc>,
    ) -> io::Result<usize> {
        // Take no more than the TX ring can take: what stays on the RX ring
        // is back-pressure the kernel can count (rx_ring_full), not a silent
        // drop here.
        let room = to.xsk.tx.nb_free(rx_buf.len() as u32) as usize;
        let max = room.min(rx_buf.len());
        if max == 0 {
            to.tx_pending = true;
            return Ok(0);
        }
        // SAFETY: as in run_tap.
        let n = unsafe { from.xsk.rx.consume(&mut rx_buf[..max]) };
        if n == 0 {
            return Ok(0);
        }
        tx_buf.clear();
        let free = &mut from.free;
        let started = self.judge_batch(
            &rx_buf[..n],
            &mut from.rx_frames,
            ledger,
            |ledger, d, verdict| match verdict {
                Verdict::Pass => tx_buf.push(d),
                Verdict::Drop => {
                    ledger.release(d.addr());
                    free.push(d);
                }
            },
        );
        // SAFETY: the frames are ours (in hand) and belong to the UMEM `to`
        // shares; until they come back on its completion ring nobody
        // touches them.
        let sent = unsafe { to.xsk.tx.produce(tx_buf) };
        for d in &tx_buf[..sent] {
            ledger.to_transmit(d.addr());
        }
        for d in &tx_buf[sent..] {
            // Not expected: the room was checked. Dropped, and counted.
            self.counters.tx_ring_full_drops += 1;
            ledger.release(d.addr());
            from.free.push(*d);
        }
        if sent > 0 {
            to.tx_frames += sent as u64;
            self.counters.tx_since_audit += sent as u64;
            to.tx_pending = true;
            if to.xsk.tx.needs_wakeup() {
                to.tx_wakeups += 1;
                to.xsk.tx.wakeup()?;
            }
        }
        self.latency.record(sys::now_ns().saturating_sub(started));
        Ok(n)
    }

    /// One RX burst through the engine, for both roles: counted, the clock
    /// read once, every frame judged, offered to a running capture, and
    /// handed to `each` with its verdict to be placed (TX ring or free
    /// list). Returns the batch's start time.
    fn judge_batch(
        &mut self,
        rx: &[FrameDesc],
        rx_frames: &mut u64,
        ledger: &mut Ledger,
        mut each: impl FnMut(&mut Ledger, FrameDesc, Verdict),
    ) -> u64 {
        self.counters.batches += 1;
        *rx_frames += rx.len() as u64;
        let started = sys::now_ns();
        self.engine.advance(started);
        for d in rx {
            ledger.received(d.addr());
        }
        let umem = &self.umem;
        // SAFETY: the frames are in hand (see the ledger) until `each`
        // puts them on a TX ring or a free list.
        let frame = |d: &FrameDesc| unsafe { umem.data(d) }.contents();
        let (capture, armed, id) = (&self.capture, self.capture.armed(), self.id);
        self.engine
            .process_batch_with(LinkType::Ethernet, rx.iter().map(frame), |i, judged| {
                let d = rx[i];
                if armed != 0 {
                    capture.consider(armed, id, started, &judged, || frame(&d));
                }
                each(ledger, d, judged.verdict());
            });
        self.hand_on_block_requests();
        started
    }

    /// Switch to a newly published policy, between batches: every packet
    /// is judged by one whole policy, the old or the new.
    #[inline]
    fn take_new_policy(&mut self) {
        if self.policy.generation() == self.policy_generation {
            return;
        }
        let (generation, cfg) = self.policy.latest();
        self.engine
            .set_policy(Policy::for_worker(&cfg, self.workers));
        self.policy_generation = generation;
    }

    /// Answer the control side's questions (between batches).
    fn answer_queries(&mut self) {
        while let Ok(q) = self.queries.try_recv() {
            match q {
                Query::Flows { filter, reply } => {
                    let now = (self.engine.now_ns() / 1_000_000_000) as u32;
                    let rows: Vec<_> = self
                        .engine
                        .flows()
                        .iter(now)
                        .take(Query::MAX_FLOW_SCAN)
                        .filter(|(_, f, _)| filter.state.is_none_or(|s| f.state() == s))
                        .take(filter.limit)
                        .map(|(k, f, idle)| flow_row(k, f, idle, self.id))
                        .collect();
                    let _ = reply.try_send(rows);
                }
                Query::Telemetry { top, reply } => {
                    let _ = reply.try_send(self.engine.snapshot(top));
                }
            }
        }
    }

    /// Send the batch's block requests to the control side. A full channel
    /// loses them (counted): the control side is far behind, and the
    /// policy will not ask for those sources again this block period.
    #[inline]
    fn hand_on_block_requests(&mut self) {
        let (blocks, dropped) = (&self.blocks, &mut self.counters.block_requests_dropped);
        self.engine.drain_block_requests(|src| {
            if blocks.try_send(src).is_err() {
                *dropped += 1;
            }
        });
    }

    /// Publish: answer questions, read the kernel's ring stats, check
    /// the ledger thoroughly (debug builds) and send a copy of everything.
    fn tick(&mut self, ports: &mut [&mut PortRings], ledger: &Ledger) {
        // The clock moves on without traffic too: seconds close (alerts
        // are judged, rates roll) and idle flows expire.
        self.engine.advance(sys::now_ns());
        self.answer_queries();
        for p in ports.iter_mut() {
            if let Ok(r) = p.xsk.ring_stats() {
                p.ring = r;
            }
        }
        if cfg!(debug_assertions) {
            let free: usize = ports.iter().map(|p| p.free.len()).sum();
            if let Err(e) = ledger.check_thoroughly(free) {
                panic!("worker {}: {e}", self.id);
            }
        }
        let stats = self.snapshot(ports, ledger);
        // Full channel: the control side is behind; it gets the next one.
        let _ = self.stats.try_send(stats);
    }

    fn snapshot(&self, ports: &[&mut PortRings], ledger: &Ledger) -> WorkerStats {
        let lc = &self.counters;
        let (second, recent_seconds) = self.engine.telemetry().recent_seconds(RECENT_SECONDS);
        WorkerStats {
            worker: self.id,
            queue: self.queue,
            cpu: self.cpu,
            at_ns: sys::now_ns(),
            batches: lc.batches,
            sleeps: lc.sleeps,
            tx_ring_full_drops: lc.tx_ring_full_drops,
            blocks: self.engine.block_stats(),
            block_requests_dropped: lc.block_requests_dropped,
            counters: self.engine.telemetry().counters,
            flows: self.engine.flow_stats(),
            active_flows: self.engine.flows().len(),
            sockets: ports.iter().map(|p| p.stats(self.queue)).collect(),
            frames: ledger.stats(),
            policy_generation: self.policy_generation,
            batch_latency: self.latency.clone(),
            second,
            recent_seconds,
        }
    }
}

/// Sleep in poll() until a socket has frames to read, or until `deadline`
/// (capped at [`MAX_SLEEP`]). With need_wakeup, poll() also kicks a
/// zero-copy driver's RX.
fn sleep_until_readable(fds: &[RawFd], deadline: Instant) -> io::Result<()> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 2];
    for (p, &fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .min(MAX_SLEEP)
        .as_millis() as i32;
    // SAFETY: `pfds` holds `fds.len()` valid pollfd entries.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}
