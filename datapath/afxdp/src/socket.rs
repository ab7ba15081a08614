//! Opening AF_XDP sockets: zero-copy first, copy mode when the driver has
//! no zero-copy support, need_wakeup always; and reading their statistics.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use serde::Serialize;
use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, QueueSize, SocketConfig};
use xsk_rs::{CompQueue, FillQueue, RxQueue, TxQueue, Umem};

use super::AfXdpError;

/// How a socket moves frames between the NIC and the UMEM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum XskMode {
    /// The driver DMAs straight into the UMEM.
    ZeroCopy,
    /// The kernel copies between its buffers and the UMEM (any driver,
    /// veth, generic XDP).
    Copy,
}

impl XskMode {
    pub const fn as_str(self) -> &'static str {
        match self {
            XskMode::ZeroCopy => "zerocopy",
            XskMode::Copy => "copy",
        }
    }
}

/// Which bind modes to try.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BindMode {
    /// Zero-copy, falling back to copy when the driver cannot.
    #[default]
    Auto,
    /// Zero-copy or fail.
    ZeroCopy,
    /// Copy mode only.
    Copy,
}

/// Whether libxdp may load its own XDP program for the socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgramLoad {
    /// The appliance: rstwall's own XDP program is attached by the caller,
    /// which registers each socket in its XSKMAP.
    #[default]
    Inhibit,
    /// Benchmarks and experiments only: libxdp attaches its default
    /// program (redirect everything on the queue) and registers the socket.
    LibxdpDefault,
}

/// The kernel's XDP_STATISTICS for one socket (cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RingStats {
    /// Received frames dropped for other reasons (e.g. larger than a frame).
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Received frames dropped because the RX ring was full: the worker
    /// fell behind.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the kernel found the TX ring empty when woken.
    pub tx_ring_empty_descs: u64,
}

impl RingStats {
    pub fn merge(&mut self, o: &RingStats) {
        self.rx_dropped += o.rx_dropped;
        self.rx_invalid_descs += o.rx_invalid_descs;
        self.tx_invalid_descs += o.tx_invalid_descs;
        self.rx_ring_full += o.rx_ring_full;
        self.rx_fill_ring_empty_descs += o.rx_fill_ring_empty_descs;
        self.tx_ring_empty_descs += o.tx_ring_empty_descs;
    }
}

/// One bound socket's four rings.
pub struct Xsk {
    pub rx: RxQueue,
    pub tx: TxQueue,
    pub fill: FillQueue,
    pub comp: CompQueue,
    pub mode: XskMode,
    pub ring_size: u32,
}

impl Xsk {
    /// Create a socket on `ifname` queue `queue` over `umem`. With a shared
    /// UMEM, each (interface, queue) pair must be bound only once: it gets
    /// its own fill and completion rings.
    pub fn open(
        umem: &Umem,
        ifname: &str,
        queue: u32,
        ring_size: u32,
        bind: BindMode,
        load: ProgramLoad,
    ) -> Result<Xsk, AfXdpError> {
        let iface: Interface = ifname.parse().map_err(|_| AfXdpError::Socket {
            ifname: ifname.to_string(),
            queue,
            source: io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"),
        })?;
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
            let mut builder = SocketConfig::builder();
            builder
                .rx_queue_size(size)
                .tx_queue_size(size)
                .bind_flags(flags);
            if load == ProgramLoad::Inhibit {
                builder.libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD);
            }
            // SAFETY: each (ifname, queue) pair is bound once per UMEM and
            // the program load is inhibited for the appliance (the contract
            // of `Socket::new`).
            match unsafe { xsk_rs::Socket::new(builder.build(), umem, &iface, queue) } {
                Ok((tx, rx, Some((fill, comp)))) => {
                    let mode = verified_mode(tx_fd(&tx)).unwrap_or(mode);
                    return Ok(Xsk {
                        rx,
                        tx,
                        fill,
                        comp,
                        mode,
                        ring_size,
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

    pub fn fd(&self) -> RawFd {
        tx_fd(&self.tx)
    }

    /// XDP_STATISTICS, read with one getsockopt.
    pub fn ring_stats(&self) -> io::Result<RingStats> {
        let s = self.tx.fd().xdp_statistics()?;
        Ok(RingStats {
            rx_dropped: s.rx_dropped(),
            rx_invalid_descs: s.rx_invalid_descs(),
            tx_invalid_descs: s.tx_invalid_descs(),
            rx_ring_full: s.rx_ring_full(),
            rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs(),
            tx_ring_empty_descs: s.tx_ring_empty_descs(),
        })
    }
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
