//! AF_XDP sockets on their own: a UMEM, sockets bound zero-copy first and
//! in copy mode when the driver has no zero-copy support, need_wakeup
//! always, the kicks the kernel asks for, and the kernel's ring
//! statistics. The datapath's workers are built on it; so can be anything
//! else that moves frames through AF_XDP (a bare forwarding loop, a
//! traffic generator, a sink), without the workers.
//!
//! # A socket's life
//!
//! ```text
//!   let (umem, mut free) = open_umem(UmemShape { frame_size: 4096, ring_size: 2048, frames: 4096 })?;
//!   let mut xsk = Xsk::open(&umem, "eth0", 0, &XskConfig::default())?;
//!   // register xsk.fd() in the XDP program's XSKMAP
//!   loop {
//!       unsafe { xsk.fill_from(&mut free, |_| {}) };      // frames to receive into
//!       let n = unsafe { xsk.rx.consume(&mut buf) };      // received frames, now ours
//!       if n == 0 { xsk.kick_fill()?; wait_readable([xsk.fd()], timeout)?; }
//!       ... read or write them through umem.data(d) / umem.data_mut(d) ...
//!       unsafe { xsk.transmit(&buf[..n]) }?;               // or push them back on `free`
//!       let done = unsafe { xsk.comp.consume(&mut comp) }; // sent: free again
//!       xsk.kick_tx()?;                                    // until the TX ring has drained
//!   }
//! ```
//!
//! libxdp never loads a program for these sockets: the caller's XDP
//! program (rstwall's, `rstwall-bpf`) redirects frames to them through its
//! XSKMAP, where the caller registers [`Xsk::fd`].
//!
//! Frames are [`FrameDesc`]s of one [`Umem`]; the caller keeps track of
//! which it holds. Several sockets may share one UMEM (one per (interface,
//! queue) pair, each with its own fill and completion rings): a frame
//! received on one can be transmitted on another without a copy. The rings
//! are the `xsk_rs` types, public on [`Xsk`]; their `produce` and
//! `consume` are `unsafe` for the same reason [`Xsk::fill_from`] and
//! [`Xsk::transmit`] are: a frame handed to the kernel must be one of the
//! socket's UMEM and must not be touched until the kernel gives it back.

use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

pub use rstwall_api::stats::afxdp::{PollMode, RingStats, XskMode};
use rstwall_engine::names::{alternatives, UnknownName};
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, RxQueue, TxQueue};

pub use xsk_rs::{FrameDesc, Umem};

use crate::error::AfXdpError;

/// A forwarding loop's idle policy (the datapath's workers, and any loop
/// that wants to be compared with them): after this many empty iterations
/// in a row, sleep in [`wait_readable`]. An empty iteration makes no
/// syscall (only ring index reads), so spinning a little keeps latency low
/// under load without burning a core when idle.
pub const SPINS_BEFORE_SLEEP: u32 = 256;
/// The longest such sleep: it bounds how late a stop request is seen.
pub const MAX_SLEEP: Duration = Duration::from_millis(20);

rstwall_engine::closed_enum! {
    /// Which bind modes to try (`--xsk-mode`, `xsk_mode` in the config
    /// file): `auto`, or one [`XskMode`] by its name.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub enum BindMode: "AF_XDP bind mode" else UnknownBindMode {
        /// Zero-copy, falling back to copy when the driver cannot.
        #[default]
        Auto,
        /// Zero-copy or fail.
        ZeroCopy = XskMode::ZeroCopy.as_str(),
        /// Copy mode only.
        Copy = XskMode::Copy.as_str(),
    }
}

/// A bind mode name that is none of [`BindMode::NAMES`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode `{0}` (expected {expected})", expected = alternatives(&BindMode::NAMES))]
pub struct UnknownBindMode(pub String);

impl From<UnknownName> for UnknownBindMode {
    fn from(e: UnknownName) -> Self {
        UnknownBindMode(e.name)
    }
}

/// A UMEM's size: frames of `frame_size` bytes (a power of two, 2048 to
/// 65536), and fill and completion rings of `ring_size` entries (a power
/// of two) for each socket bound to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UmemShape {
    pub frame_size: u32,
    pub ring_size: u32,
    pub frames: u32,
}

/// Why a UMEM could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UmemError(String);

/// A UMEM of `shape.frames` frames, and a descriptor for each: all free.
/// The largest frame a socket receives into it is `frame_size` less the
/// kernel's XDP headroom (256 bytes).
pub fn open_umem(shape: UmemShape) -> Result<(Umem, Vec<FrameDesc>), UmemError> {
    let err = |e: &dyn std::fmt::Display| UmemError(e.to_string());
    let ring = QueueSize::new(shape.ring_size).map_err(|e| err(&e))?;
    let cfg = UmemConfig::builder()
        .frame_size(FrameSize::new(shape.frame_size).map_err(|e| err(&e))?)
        .fill_queue_size(ring)
        .comp_queue_size(ring)
        .build()
        .map_err(|e| err(&e))?;
    let frames =
        NonZeroU32::new(shape.frames).ok_or_else(|| UmemError("a UMEM of 0 frames".into()))?;
    Umem::new(cfg, frames, false).map_err(|e| {
        UmemError(match std::error::Error::source(&e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        })
    })
}

/// How to open a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XskConfig {
    /// RX and TX ring size (a power of two). The fill and completion rings
    /// are the UMEM's ([`UmemShape::ring_size`]).
    pub ring_size: u32,
    pub bind: BindMode,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            ring_size: 2048,
            bind: BindMode::Auto,
        }
    }
}

/// One bound socket: its four rings, the mode the kernel bound it in, and
/// the need_wakeup kicks it made.
pub struct Xsk {
    pub rx: RxQueue,
    pub tx: TxQueue,
    pub fill: FillQueue,
    pub comp: CompQueue,
    mode: XskMode,
    ring_size: u32,
    /// The TX ring may still hold descriptors the kernel has not taken.
    tx_pending: bool,
    /// Busy polling is on: every kick is made whether the kernel asks or
    /// not, for the busy-poll loop it runs ([`Xsk::set_busy_poll`]).
    busy: bool,
    tx_wakeups: u64,
    fill_wakeups: u64,
    busy_polls: u64,
}

impl Xsk {
    /// Create a socket on `ifname` queue `queue` over `umem`. With a shared
    /// UMEM, each (interface, queue) pair must be bound only once: it gets
    /// its own fill and completion rings. With [`BindMode::Auto`] a driver
    /// without zero-copy gets a copy-mode socket; note that the second
    /// socket of a shared UMEM inherits the first one's mode (EOPNOTSUPP
    /// when only the first port can do zero-copy: open them all again in
    /// copy mode).
    pub fn open(umem: &Umem, ifname: &str, queue: u32, cfg: &XskConfig) -> Result<Xsk, AfXdpError> {
        let iface: Interface = ifname.parse().map_err(|_| AfXdpError::Socket {
            ifname: ifname.to_string(),
            queue,
            source: io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"),
        })?;
        let (ring_size, bind) = (cfg.ring_size, cfg.bind);
        let attempts: &[XskMode] = match bind {
            BindMode::Auto => &[XskMode::ZeroCopy, XskMode::Copy],
            BindMode::ZeroCopy => &[XskMode::ZeroCopy],
            BindMode::Copy => &[XskMode::Copy],
        };
        let mut last = None;
        for &mode in attempts {
            let flags = match mode {
                XskMode::ZeroCopy => BindFlags::XDP_ZEROCOPY,
                XskMode::Copy => BindFlags::XDP_COPY,
            } | BindFlags::XDP_USE_NEED_WAKEUP;
            let size = QueueSize::new(ring_size).map_err(|_| {
                AfXdpError::Config(format!("ring size {ring_size}: must be a power of two"))
            })?;
            // libxdp never loads a program of its own: the caller's XDP
            // program steers frames to the socket through its XSKMAP.
            let config = SocketConfig::builder()
                .rx_queue_size(size)
                .tx_queue_size(size)
                .bind_flags(flags)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .build();
            // SAFETY: the program load is inhibited, which is what
            // `Socket::new` requires of a second bind of a (interface,
            // queue) pair on one UMEM; such a bind is refused below.
            match unsafe { xsk_rs::Socket::new(config, umem, &iface, queue) } {
                Ok((tx, rx, Some((fill, comp)))) => {
                    let mode = verified_mode(tx_fd(&tx)).unwrap_or(mode);
                    return Ok(Xsk {
                        rx,
                        tx,
                        fill,
                        comp,
                        mode,
                        ring_size,
                        tx_pending: false,
                        busy: false,
                        tx_wakeups: 0,
                        fill_wakeups: 0,
                        busy_polls: 0,
                    });
                }
                Ok((_, _, None)) => {
                    return Err(AfXdpError::Socket {
                        ifname: ifname.to_string(),
                        queue,
                        source: io::Error::other(
                            "queue already bound with this UMEM (no fill/completion rings)",
                        ),
                    });
                }
                Err(e) => {
                    let source = std::error::Error::source(&e)
                        .and_then(|s| s.downcast_ref::<io::Error>())
                        .and_then(io::Error::raw_os_error)
                        .map(io::Error::from_raw_os_error)
                        .unwrap_or_else(|| io::Error::other(e.to_string()));
                    let unsupported = source.raw_os_error() == Some(libc::EOPNOTSUPP);
                    if mode == XskMode::ZeroCopy && unsupported && bind == BindMode::Auto {
                        tracing::debug!("{ifname} queue {queue}: no zero-copy support, copy mode");
                    }
                    last = Some(AfXdpError::Socket {
                        ifname: ifname.to_string(),
                        queue,
                        source,
                    });
                    // Only a driver without zero-copy gets a second try.
                    if !(mode == XskMode::ZeroCopy && unsupported) {
                        break;
                    }
                }
            }
        }
        Err(last.expect("at least one bind attempted"))
    }

    /// The socket's fd: for the XSKMAP, and for poll().
    pub fn fd(&self) -> RawFd {
        tx_fd(&self.tx)
    }

    /// The mode the kernel bound the socket in.
    pub fn mode(&self) -> XskMode {
        self.mode
    }

    pub fn ring_size(&self) -> u32 {
        self.ring_size
    }

    /// Move frames from the end of `free` onto the fill ring, as many as
    /// fit; `each` sees every frame moved. The number moved.
    ///
    /// # Safety
    ///
    /// Every frame on `free` belongs to the UMEM this socket was opened
    /// on, and nothing else holds it: the kernel may write into it from now
    /// until it comes back on the RX ring.
    #[inline]
    pub unsafe fn fill_from(
        &mut self,
        free: &mut Vec<FrameDesc>,
        mut each: impl FnMut(&FrameDesc),
    ) -> usize {
        let have = free.len();
        if have == 0 {
            return 0;
        }
        let n = (self.fill.nb_free(have as u32) as usize).min(have);
        if n == 0 {
            return 0;
        }
        let start = have - n;
        // SAFETY: the caller's contract.
        let done = unsafe { self.fill.produce(&free[start..]) };
        for d in &free[start..start + done] {
            each(d);
        }
        free.drain(start..start + done);
        done
    }

    /// Turn on preferred busy polling (the kernel's
    /// Documentation/networking/af_xdp.rst, "Busy-Polling"):
    /// SO_PREFER_BUSY_POLL, SO_BUSY_POLL `usecs` and SO_BUSY_POLL_BUDGET
    /// `budget` on the socket. From then on every [`Xsk::kick_fill`] and
    /// [`Xsk::kick_tx`] makes its syscall, asked or not: each recvfrom() or
    /// sendto() runs the driver's NAPI for up to `budget` frames in this
    /// thread, so the loop must call them often (it never sleeps). The
    /// interface's `napi_defer_hard_irqs` and `gro_flush_timeout` (sysfs)
    /// keep the interrupts off while it does; they are the host's to set.
    /// An error names the option the kernel refused; the socket is left
    /// as it was then (the caller falls back to spinning).
    pub fn set_busy_poll(&mut self, usecs: u32, budget: u16) -> io::Result<()> {
        let fd = self.fd();
        for (name, opt, value) in [
            ("SO_PREFER_BUSY_POLL", libc::SO_PREFER_BUSY_POLL, 1),
            ("SO_BUSY_POLL", libc::SO_BUSY_POLL, usecs as libc::c_int),
            (
                "SO_BUSY_POLL_BUDGET",
                libc::SO_BUSY_POLL_BUDGET,
                libc::c_int::from(budget),
            ),
        ] {
            // SAFETY: `value` is a valid c_int for the length given.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(e.kind(), format!("{name}: {e}")));
            }
        }
        self.busy = true;
        Ok(())
    }

    /// Stop making the busy-poll kicks (the socket options stay; nothing
    /// calls into the kernel for them any more but need_wakeup's kicks).
    pub fn stop_busy_poll(&mut self) {
        self.busy = false;
    }

    /// The NAPI instance the kernel marked the socket with when frames
    /// arrived (SO_INCOMING_NAPI_ID); 0: none (nothing received yet, or
    /// a receive path without NAPI, where busy polling has nothing to run).
    pub fn napi_id(&self) -> io::Result<u32> {
        let mut id: libc::c_uint = 0;
        let mut len = std::mem::size_of::<libc::c_uint>() as libc::socklen_t;
        // SAFETY: `id` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_INCOMING_NAPI_ID,
                (&mut id as *mut libc::c_uint).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(id)
    }

    /// Zero-copy drivers may ask to be kicked to pick up fill entries: a
    /// zero-length, non-blocking recvfrom when the fill ring says so, or
    /// always when busy polling (where the recvfrom runs the driver).
    #[inline]
    pub fn kick_fill(&mut self) -> io::Result<()> {
        let asked = self.fill.needs_wakeup();
        if asked || self.busy {
            if asked {
                self.fill_wakeups += 1;
            } else {
                self.busy_polls += 1;
            }
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

    /// Submit `frames` on the TX ring, as many as fit, and kick the kernel
    /// if it asks; the number submitted. Those left over are still the
    /// caller's.
    ///
    /// # Safety
    ///
    /// Every frame belongs to the UMEM this socket was opened on and is the
    /// caller's (received, or never handed out); none may be touched until
    /// it comes back on the completion ring.
    #[inline]
    pub unsafe fn transmit(&mut self, frames: &[FrameDesc]) -> io::Result<usize> {
        // SAFETY: the caller's contract.
        let sent = unsafe { self.tx.produce(frames) };
        if sent > 0 {
            self.tx_pending = true;
            if self.busy || self.tx.needs_wakeup() {
                self.tx_wakeups += 1;
                self.tx.wakeup()?;
            }
        }
        Ok(sent)
    }

    /// The TX ring has frames to go out, or had no room: keep kicking
    /// ([`Xsk::kick_tx`]) until it drains.
    #[inline]
    pub fn mark_tx_pending(&mut self) {
        self.tx_pending = true;
    }

    /// Whether the TX ring may still hold frames the kernel has not taken.
    #[inline]
    pub fn tx_pending(&self) -> bool {
        self.tx_pending
    }

    /// Kick the kernel to transmit what is on the TX ring, when it asks.
    /// Copy mode sends a limited number of frames per kick, so this is
    /// repeated every iteration until the ring has drained.
    #[inline]
    pub fn kick_tx(&mut self) -> io::Result<()> {
        if !self.tx_pending {
            return Ok(());
        }
        if self.tx.nb_free_exact() == self.ring_size {
            self.tx_pending = false;
            return Ok(());
        }
        if self.busy || self.tx.needs_wakeup() {
            self.tx_wakeups += 1;
            self.tx.wakeup()?;
        }
        Ok(())
    }

    /// The kicks a forwarding loop's iteration owes the kernel: the fill
    /// ring's when the socket received nothing (a zero-copy driver may be
    /// waiting for it), the TX ring's while it has not drained.
    #[inline]
    pub fn kick_after(&mut self, received: usize) -> io::Result<()> {
        if received == 0 {
            self.kick_fill()?;
        }
        self.kick_tx()
    }

    /// Nothing on the TX ring and nothing on the completion ring: every
    /// frame sent has been taken back.
    pub fn quiet(&mut self) -> bool {
        self.tx.nb_free_exact() == self.ring_size && self.comp.nb_avail_exact() == 0
    }

    /// Kicks made so far: TX (sendto), fill (recvfrom).
    pub fn wakeups(&self) -> (u64, u64) {
        (self.tx_wakeups, self.fill_wakeups)
    }

    /// recvfrom() calls made only to busy-poll (the kernel had not asked).
    pub fn busy_polls(&self) -> u64 {
        self.busy_polls
    }

    /// XDP_STATISTICS, read with one getsockopt.
    pub fn ring_stats(&self) -> io::Result<RingStats> {
        ring_stats(self.fd())
    }
}

/// XDP_STATISTICS of the socket `fd`, read with one getsockopt: for a
/// thread that watches a socket another one serves (through its
/// [`Xsk::fd`]).
pub fn ring_stats(fd: RawFd) -> io::Result<RingStats> {
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
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(RingStats {
        rx_dropped: s.rx_dropped,
        rx_invalid_descs: s.rx_invalid_descs,
        tx_invalid_descs: s.tx_invalid_descs,
        rx_ring_full: s.rx_ring_full,
        rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
        tx_ring_empty_descs: s.tx_ring_empty_descs,
    })
}

/// One RX burst of `from` for transmission on `to`: up to `buf.len()`
/// received frames into `buf`, but no more than `to`'s TX ring has room
/// for — what stays on the RX ring is back-pressure the kernel can count
/// (`rx_ring_full`), not a silent drop here. When `to` has no room at all,
/// it is marked to be kicked ([`Xsk::kick_tx`]) until it drains. The number
/// of frames taken, now the caller's, in `buf[..n]`.
///
/// # Safety
///
/// `buf` is the caller's to overwrite, and the frames taken belong to the
/// UMEM `from` was opened on: the caller hands each back to the kernel
/// (fill or TX ring) exactly once.
#[inline]
pub unsafe fn receive_for(from: &mut Xsk, to: &mut Xsk, buf: &mut [FrameDesc]) -> usize {
    let room = to.tx.nb_free(buf.len() as u32) as usize;
    let max = room.min(buf.len());
    if max == 0 {
        to.mark_tx_pending();
        return 0;
    }
    // SAFETY: the caller's contract.
    unsafe { from.rx.consume(&mut buf[..max]) }
}

/// Sleep in poll() until one of the sockets `fds` has frames to read, or
/// `timeout` passes. With need_wakeup, poll() also kicks a zero-copy
/// driver's RX. Allocates nothing.
pub fn wait_readable<const N: usize>(fds: [RawFd; N], timeout: Duration) -> io::Result<()> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let timeout = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: `pfds` holds N valid pollfd entries.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, timeout) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

fn tx_fd(tx: &TxQueue) -> RawFd {
    tx.fd().as_raw_fd()
}

/// The mode the kernel says the socket is in (XDP_OPTIONS).
fn verified_mode(fd: RawFd) -> Option<XskMode> {
    let mut opts = libc::xdp_options { flags: 0 };
    let mut len = std::mem::size_of::<libc::xdp_options>() as libc::socklen_t;
    // SAFETY: `opts` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libc::XDP_OPTIONS,
            (&mut opts as *mut libc::xdp_options).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    Some(if opts.flags & libc::XDP_OPTIONS_ZEROCOPY != 0 {
        XskMode::ZeroCopy
    } else {
        XskMode::Copy
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_are_consistent() {
        rstwall_engine::names::assert_consistent::<BindMode>();
        // One vocabulary: a bind mode that names one socket mode says it
        // the same way.
        assert_eq!(BindMode::ZeroCopy.as_str(), XskMode::ZeroCopy.as_str());
        assert_eq!(BindMode::Copy.as_str(), XskMode::Copy.as_str());
        assert_eq!(
            "fast".parse::<BindMode>().unwrap_err().to_string(),
            "unknown mode `fast` (expected auto, zerocopy or copy)"
        );
    }
}
