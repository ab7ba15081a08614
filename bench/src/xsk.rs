//! The bench's own AF_XDP sockets — the generator's, the latency sink's,
//! the bare loop's — opened with [`rstwall_afxdp::socket`], as the
//! datapath opens its own; and the wait for a queue that a closed socket
//! still holds.
//!
//! None lets libxdp load a program: rstwall's XDP program is on every port
//! that receives, and each socket is registered in its XSKMAP by the
//! caller.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use rstwall_afxdp::socket::{open_umem, FrameDesc, Umem, UmemShape, Xsk, XskConfig};
use rstwall_afxdp::BindMode;

/// How long to retry a bind that finds the queue busy: the kernel lets go
/// of a closed socket's queue asynchronously (in a work item that takes
/// the RTNL lock), so the previous contender's socket may still hold it
/// for a while, seconds when something else holds RTNL.
pub const BUSY_RETRY: Duration = Duration::from_secs(30);

/// Whether `e` is EBUSY somewhere down its chain.
pub fn is_busy(e: &anyhow::Error) -> bool {
    has_errno(e, libc::EBUSY)
}

fn has_errno(e: &anyhow::Error, errno: i32) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.raw_os_error() == Some(errno))
    })
}

/// `open()` again while it fails because a queue is busy, for up to
/// [`BUSY_RETRY`].
pub fn retry_busy<T>(mut open: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + BUSY_RETRY;
    loop {
        match open() {
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// A UMEM of `frames` frames of `frame_size` bytes, with fill and
/// completion rings of `ring`; every frame free.
pub fn umem(frame_size: u32, ring: u32, frames: u32) -> Result<(Umem, Vec<FrameDesc>)> {
    open_umem(UmemShape {
        frame_size,
        ring_size: ring,
        frames,
    })
    .map_err(|e| anyhow!("UMEM of {frames} frames: {e}"))
}

/// A socket on `ifname` queue `queue`, from the calling thread's
/// namespace, with RX and TX rings of `ring`, bound as `bind` says; a
/// queue still busy is waited for.
pub fn socket(umem: &Umem, ifname: &str, queue: u32, ring: u32, bind: BindMode) -> Result<Xsk> {
    let cfg = XskConfig {
        ring_size: ring,
        bind,
    };
    retry_busy(|| Ok(Xsk::open(umem, ifname, queue, &cfg)?)).map_err(|e| {
        if bind == BindMode::ZeroCopy && has_errno(&e, libc::EOPNOTSUPP) {
            e.context(format!(
                "{ifname} has no zero-copy AF_XDP (--xdp-mode auto falls back to copy mode)"
            ))
        } else {
            e
        }
    })
}
