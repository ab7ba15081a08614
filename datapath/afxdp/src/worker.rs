//! The AF_XDP worker loops: rings, UMEM frames, the ledger, TX. The engine
//! batch, the policy, the capture, queries and publishing are the worker
//! core's ([`rstwall_source::WorkerCore`]). See the module docs of
//! [`super`] for the design.

use std::io;
use std::time::{Duration, Instant};

use rstwall_api::stats::afxdp::XskWorker;
use rstwall_engine::policy::Verdict;
use rstwall_engine::wire::LinkType;
use rstwall_source::WorkerCore;
use xsk_rs::{FrameDesc, Umem};

use super::guard::GuardKeeper;
use super::ledger::Ledger;
use super::socket::{self, PollMode, RingStats, Xsk, MAX_SLEEP, SPINS_BEFORE_SLEEP};
use super::stats::{SocketStats, XskStats};
use super::Poll;

/// One port's socket on this worker's queue, and the free list of the
/// frames this port receives into (its UMEM partition).
pub(super) struct PortRings {
    name: String,
    xsk: Xsk,
    free: Vec<FrameDesc>,
    rx_frames: u64,
    tx_frames: u64,
    ring: RingStats,
    /// The poll mode in effect on this socket, and why it is not the
    /// configured one.
    poll: PollMode,
    poll_fallback: Option<String>,
    /// SO_INCOMING_NAPI_ID as of the last publish.
    napi_id: u32,
}

impl PortRings {
    pub(super) fn new(name: &str, xsk: Xsk, free: Vec<FrameDesc>) -> PortRings {
        PortRings {
            name: name.to_string(),
            xsk,
            free,
            rx_frames: 0,
            tx_frames: 0,
            ring: RingStats::default(),
            poll: PollMode::Wakeup,
            poll_fallback: None,
            napi_id: 0,
        }
    }

    /// Apply the configured poll mode: busy polling's socket options, or
    /// spinning when the kernel refuses them ([`PortRings::poll_fallback`]).
    pub(super) fn set_poll(&mut self, poll: Poll) {
        self.poll = poll.mode();
        if let Poll::Busy { usecs, budget } = poll {
            if let Err(e) = self.xsk.set_busy_poll(usecs, budget) {
                self.poll = PollMode::Spin;
                self.poll_fallback = Some(format!("busy polling refused: {e}"));
            }
        }
    }

    pub(super) fn poll(&self) -> PollMode {
        self.poll
    }

    pub(super) fn poll_fallback(&self) -> Option<&str> {
        self.poll_fallback.as_deref()
    }

    /// Busy polling runs the NAPI instance the kernel marked the socket
    /// with when frames arrived. Once frames have come with no such mark,
    /// there is nothing to poll (a receive path without NAPI): the
    /// busy-poll syscalls would only cost, so the socket goes back to
    /// spinning, and says so.
    fn check_napi(&mut self, queue: u32) {
        if let Ok(id) = self.xsk.napi_id() {
            self.napi_id = id;
        }
        if self.poll == PollMode::Busy && self.rx_frames > 0 && self.napi_id == 0 {
            self.xsk.stop_busy_poll();
            self.poll = PollMode::Spin;
            let mut why = format!(
                "no NAPI behind the socket (SO_INCOMING_NAPI_ID 0 after {} frames): \
                 nothing to busy-poll",
                self.rx_frames
            );
            // Interrupt deferral set for busy polling now only delays
            // frames (until gro_flush_timeout's timer): say so.
            let sysfs = |key: &str| {
                std::fs::read_to_string(format!("/sys/class/net/{}/{key}", self.name))
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let (irqs, timeout) = (sysfs("napi_defer_hard_irqs"), sysfs("gro_flush_timeout"));
            if irqs > 0 && timeout > 0 {
                why += &format!(
                    "; its napi_defer_hard_irqs {irqs} and gro_flush_timeout {timeout} ns now \
                     delay frames: set them back to 0"
                );
            }
            tracing::warn!(
                "{}/{queue}: spinning instead of busy polling: {why}",
                self.name
            );
            self.poll_fallback = Some(why);
        }
    }

    pub(super) fn xsk(&self) -> &Xsk {
        &self.xsk
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Move free frames onto the fill ring: as many as fit.
    fn refill(&mut self, ledger: &mut Ledger) {
        // SAFETY: the free list holds frames of this worker's UMEM that
        // neither the kernel nor any other code holds.
        unsafe {
            self.xsk
                .fill_from(&mut self.free, |d| ledger.to_receive(d.addr()))
        };
    }

    /// Read the kernel's ring statistics (kept from the last read if this
    /// one fails) and the socket's NAPI id.
    fn read_ring_stats(&mut self, queue: u32) {
        if let Ok(r) = self.xsk.ring_stats() {
            self.ring = r;
        }
        self.check_napi(queue);
    }

    fn stats(&self, queue: u32) -> SocketStats {
        let (tx_wakeups, fill_wakeups) = self.xsk.wakeups();
        SocketStats {
            port: self.name.clone(),
            queue,
            mode: self.xsk.mode(),
            poll: self.poll,
            poll_fallback: self.poll_fallback.clone(),
            napi_id: self.napi_id,
            busy_polls: self.xsk.busy_polls(),
            rx_frames: self.rx_frames,
            tx_frames: self.tx_frames,
            tx_wakeups,
            fill_wakeups,
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

/// What a worker owns besides its core: the queue's UMEM and the frames'
/// ledger.
pub(super) struct Worker {
    pub queue: u32,
    pub umem: Umem,
    pub frame_size: usize,
    pub batch: usize,
    /// Frames passed with no room on the TX ring.
    pub tx_ring_full_drops: u64,
    /// Frames submitted for TX since the last audit.
    pub tx_since_audit: u64,
    /// The configured poll mode: only `wakeup` ever sleeps.
    pub poll: PollMode,
    /// The RST guard's entries this worker keeps (inline only).
    pub guard: Option<GuardKeeper>,
}

impl Worker {
    /// Run until stopped; the worker's own final statistics on a clean stop.
    pub(super) fn run(
        mut self,
        core: &mut WorkerCore<XskStats>,
        mut ports: Vec<PortRings>,
    ) -> io::Result<XskStats> {
        let total: usize = ports.iter().map(|p| p.free.len()).sum();
        let mut ledger = Ledger::new(total, self.frame_size);
        match ports.as_mut_slice() {
            [a, b] => {
                let ran = self.run_inline(core, a, b, &mut ledger);
                if let Some(g) = &mut self.guard {
                    g.clear();
                    tracing::debug!("worker {}: RST guard {:?}", core.id(), g.stats());
                }
                ran?
            }
            [port] => self.run_tap(core, port, &mut ledger)?,
            other => unreachable!("{} ports per worker", other.len()),
        }
        for p in &mut ports {
            p.read_ring_stats(self.queue);
        }
        Ok(self.stats(ports.iter(), &ledger))
    }

    fn run_inline(
        &mut self,
        core: &mut WorkerCore<XskStats>,
        a: &mut PortRings,
        b: &mut PortRings,
        ledger: &mut Ledger,
    ) -> io::Result<()> {
        let mut rx_buf = vec![FrameDesc::default(); self.batch];
        let mut comp_buf = vec![FrameDesc::default(); self.batch];
        let mut tx_buf: Vec<FrameDesc> = Vec::with_capacity(self.batch);
        let mut idle = 0u32;
        a.refill(ledger);
        b.refill(ledger);
        while core.running() {
            core.take_new_policy();
            // Completions first: B's completion ring returns A's frames.
            let mut work = reap(ledger, b, &mut a.free, &mut comp_buf);
            work += reap(ledger, a, &mut b.free, &mut comp_buf);
            a.refill(ledger);
            b.refill(ledger);
            let from_a = self.forward(core, a, b, ledger, &mut rx_buf, &mut tx_buf)?;
            let from_b = self.forward(core, b, a, ledger, &mut rx_buf, &mut tx_buf)?;
            a.xsk.kick_after(from_a)?;
            b.xsk.kick_after(from_b)?;
            work += from_a + from_b;
            debug_assert_eq!(
                ledger.check(a.free.len() + b.free.len()),
                Ok(()),
                "worker {}",
                core.id()
            );
            let mut slept = false;
            if work == 0 {
                idle += 1;
                if self.poll != PollMode::Wakeup {
                    spin(&mut idle);
                } else if idle >= SPINS_BEFORE_SLEEP && !a.xsk.tx_pending() && !b.xsk.tx_pending() {
                    idle = 0;
                    slept = true;
                    core.record_sleep();
                    socket::wait_readable([a.xsk.fd(), b.xsk.fd()], sleep_for(core))?;
                }
            } else {
                idle = 0;
            }
            if core.publish_due(slept) {
                let quiet = self.tx_since_audit == 0 && a.xsk.quiet() && b.xsk.quiet();
                self.tx_since_audit = 0;
                ledger.audit(quiet);
                if let Some(g) = &mut self.guard {
                    g.sweep(core.engine());
                }
                let stats = self.publishing(core.id(), &mut [a, b], ledger);
                core.publish(stats);
            }
        }
        Ok(())
    }

    fn run_tap(
        &mut self,
        core: &mut WorkerCore<XskStats>,
        port: &mut PortRings,
        ledger: &mut Ledger,
    ) -> io::Result<()> {
        let mut rx_buf = vec![FrameDesc::default(); self.batch];
        let mut idle = 0u32;
        port.refill(ledger);
        while core.running() {
            core.take_new_policy();
            let mut slept = false;
            // SAFETY: the RX ring hands us frames of this UMEM that the
            // kernel has finished writing.
            let n = unsafe { port.xsk.rx.consume(&mut rx_buf) };
            if n > 0 {
                let rx = &rx_buf[..n];
                port.rx_frames += n as u64;
                for d in rx {
                    ledger.received(d.addr());
                }
                let free = &mut port.free;
                // A mirror port only counts: the verdict is what enforce
                // would do, and it is in the telemetry.
                let started =
                    core.judge_batch(LinkType::Ethernet, rx, frame_of(&self.umem), |d, _| {
                        ledger.release(d.addr());
                        free.push(*d);
                    });
                port.refill(ledger);
                core.batch_done(started);
                idle = 0;
            } else {
                port.refill(ledger);
                port.xsk.kick_fill()?;
                idle += 1;
                if self.poll != PollMode::Wakeup {
                    spin(&mut idle);
                } else if idle >= SPINS_BEFORE_SLEEP {
                    idle = 0;
                    slept = true;
                    core.record_sleep();
                    socket::wait_readable([port.xsk.fd()], sleep_for(core))?;
                }
            }
            debug_assert_eq!(
                ledger.check(port.free.len()),
                Ok(()),
                "worker {}",
                core.id()
            );
            if core.publish_due(slept) {
                ledger.audit(true);
                let stats = self.publishing(core.id(), &mut [port], ledger);
                core.publish(stats);
            }
        }
        Ok(())
    }

    /// One RX burst from `from`, judged, and what passes submitted on `to`.
    fn forward(
        &mut self,
        core: &mut WorkerCore<XskStats>,
        from: &mut PortRings,
        to: &mut PortRings,
        ledger: &mut Ledger,
        rx_buf: &mut [FrameDesc],
        tx_buf: &mut Vec<FrameDesc>,
    ) -> io::Result<usize> {
        // No more than `to`'s TX ring can take (back-pressure stays on the
        // RX ring, where the kernel counts it).
        // SAFETY: as in run_tap.
        let n = unsafe { socket::receive_for(&mut from.xsk, &mut to.xsk, rx_buf) };
        if n == 0 {
            return Ok(0);
        }
        let rx = &rx_buf[..n];
        from.rx_frames += n as u64;
        for d in rx {
            ledger.received(d.addr());
        }
        tx_buf.clear();
        let free = &mut from.free;
        let guard = &mut self.guard;
        let started =
            core.judge_batch_with(LinkType::Ethernet, rx, frame_of(&self.umem), |d, judged| {
                if let Some(g) = guard.as_mut() {
                    g.consider(judged);
                }
                match judged.verdict() {
                    Verdict::Pass => tx_buf.push(*d),
                    Verdict::Drop => {
                        ledger.release(d.addr());
                        free.push(*d);
                    }
                }
            });
        if let Some(g) = &mut self.guard {
            g.flush(core.engine());
        }
        // SAFETY: the frames are ours (in hand) and belong to the UMEM `to`
        // shares; until they come back on its completion ring nobody
        // touches them.
        let sent = unsafe { to.xsk.transmit(tx_buf) }?;
        for d in &tx_buf[..sent] {
            ledger.to_transmit(d.addr());
        }
        for d in &tx_buf[sent..] {
            // Not expected: the room was checked. Dropped, and counted.
            self.tx_ring_full_drops += 1;
            ledger.release(d.addr());
            from.free.push(*d);
        }
        to.tx_frames += sent as u64;
        self.tx_since_audit += sent as u64;
        core.batch_done(started);
        Ok(n)
    }

    /// What to publish: the kernel's ring statistics read, and the ledger
    /// checked thoroughly (debug builds).
    fn publishing(&self, worker: usize, ports: &mut [&mut PortRings], ledger: &Ledger) -> XskStats {
        for p in ports.iter_mut() {
            p.read_ring_stats(self.queue);
        }
        if cfg!(debug_assertions) {
            let free: usize = ports.iter().map(|p| p.free.len()).sum();
            if let Err(e) = ledger.check_thoroughly(free) {
                panic!("worker {worker}: {e}");
            }
        }
        self.stats(ports.iter().map(|p| &**p), ledger)
    }

    fn stats<'p>(&self, ports: impl Iterator<Item = &'p PortRings>, ledger: &Ledger) -> XskStats {
        XskStats(XskWorker {
            queue: self.queue,
            tx_ring_full_drops: self.tx_ring_full_drops,
            sockets: ports.map(|p| p.stats(self.queue)).collect(),
            frames: ledger.stats(),
            guard: self.guard.as_ref().map(|g| g.stats()),
        })
    }
}

/// An empty iteration of a worker that never sleeps (`spin`, `busy`):
/// every [`SPINS_BEFORE_SLEEP`] of them in a row, yield the CPU to any
/// other runnable thread on it. The kernel's own work for this CPU — the
/// softirqs that `sendto()` raised for the peer's veth, when they are
/// deferred to ksoftirqd — would otherwise wait for the scheduler to
/// preempt a thread that never blocks.
#[inline]
fn spin(idle: &mut u32) {
    if *idle >= SPINS_BEFORE_SLEEP {
        *idle = 0;
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// A received frame's bytes.
#[inline]
fn frame_of<'u>(umem: &'u Umem) -> impl Fn(&FrameDesc) -> &'u [u8] + 'u {
    // SAFETY: the frames are in hand (see the ledger) until the batch puts
    // them on a TX ring or a free list.
    move |d| unsafe { umem.data(d) }.contents()
}

/// How long a worker with nothing to do may sleep: until its next publish,
/// at most [`MAX_SLEEP`] (which bounds how late a stop is seen).
fn sleep_for(core: &WorkerCore<XskStats>) -> Duration {
    core.next_publish()
        .saturating_duration_since(Instant::now())
        .min(MAX_SLEEP)
}
