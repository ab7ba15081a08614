//! The bare AF_XDP forwarding loop: the ceiling of any AF_XDP forwarder
//! on the machine. The datapath worker's inline loop (`rstwall-afxdp`'s
//! `run_inline`) with the same sockets ([`rstwall_afxdp::socket`]), the
//! same rings, UMEM sharing, batching, kicks and idle policy, and without
//! the engine, the frame ledger and the stats: every frame received on one
//! port is transmitted on the other.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::Result;
use rstwall_afxdp::socket::{self, FrameDesc, Umem, Xsk, MAX_SLEEP, SPINS_BEFORE_SLEEP};
use rstwall_afxdp::BindMode;

use crate::cpu::gettid;
use crate::xsk;

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
    xsk: Xsk,
    /// Frames this port receives into (its partition of the UMEM).
    free: Vec<FrameDesc>,
}

impl BarePort {
    fn refill(&mut self) {
        // SAFETY: frames on our free list: nobody else holds them.
        unsafe { self.xsk.fill_from(&mut self.free, |_| {}) };
    }
}

/// Both ports' sockets over one UMEM, opened but not yet serviced.
pub struct BareSockets {
    umem: Umem,
    ports: [BarePort; 2],
    batch: usize,
}

impl BareSockets {
    /// Open a UMEM and a socket on queue 0 of `a` and of `b` (copy mode),
    /// as `Datapath::start` does: one UMEM, a partition of it per port.
    pub fn open(shape: BareShape, a: &str, b: &str) -> Result<BareSockets> {
        let (umem, mut descs) = xsk::umem(shape.frame_size, shape.ring, 2 * shape.frames_per_port)?;
        let free_b = descs.split_off(shape.frames_per_port as usize);
        let port = |name: &str, free: Vec<FrameDesc>| -> Result<BarePort> {
            Ok(BarePort {
                xsk: xsk::socket(&umem, name, 0, shape.ring, BindMode::Copy)?,
                free,
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
        [self.ports[0].xsk.fd(), self.ports[1].xsk.fd()]
    }
}

/// Completed TX frames of `sender` back onto their owner's free list.
fn reap(sender: &mut BarePort, owner_free: &mut Vec<FrameDesc>, buf: &mut [FrameDesc]) -> usize {
    // SAFETY: the completion ring returns frames of this UMEM we submitted.
    let n = unsafe { sender.xsk.comp.consume(buf) };
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
    // SAFETY: received frames are ours until handed on, below.
    let n = unsafe { socket::receive_for(&mut from.xsk, &mut to.xsk, rx_buf) };
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
    let sent = unsafe { to.xsk.transmit(&rx_buf[..n]) }?;
    from.free.extend_from_slice(&rx_buf[sent..n]);
    Ok(n)
}

/// Run the loop until `stop`; `tid` gets the calling thread's id first.
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
        a.xsk.kick_after(from_a)?;
        b.xsk.kick_after(from_b)?;
        work += from_a + from_b;
        if work == 0 {
            idle += 1;
            if idle >= SPINS_BEFORE_SLEEP && !a.xsk.tx_pending() && !b.xsk.tx_pending() {
                idle = 0;
                socket::wait_readable([a.xsk.fd(), b.xsk.fd()], MAX_SLEEP)?;
            }
        } else {
            idle = 0;
        }
    }
    Ok(())
}
