//! XDP attachment through netlink (libbpf's `bpf_xdp_attach`/`_query`).
//!
//! Deliberately not a `bpf_link`: a link is torn down when the last fd on it
//! closes, so a crashed daemon would take its program with it and an inline
//! port would stop forwarding. A netlink attachment belongs to the interface
//! and outlives the process; the program keeps forwarding non-TCP, and TCP
//! whose socket died, to the peer port (fail-open) until a restarted rstwall
//! replaces it.

use std::ffi::CString;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::Program;

use crate::error::{BpfError, Errno};

/// Where an XDP program runs: in the driver, in the generic (skb) path, or
/// on the NIC (offload — never ours, but it may be what we find).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hook {
    Driver,
    Generic,
    Offload,
}

impl Hook {
    pub fn flag(self) -> u32 {
        match self {
            Hook::Driver => libbpf_sys::XDP_FLAGS_DRV_MODE,
            Hook::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
            Hook::Offload => libbpf_sys::XDP_FLAGS_HW_MODE,
        }
    }
}

/// A program found attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub hook: Hook,
    pub id: u32,
}

pub(crate) fn ifindex_of(ifname: &str) -> Result<u32, BpfError> {
    let c = CString::new(ifname).map_err(|_| BpfError::BadInterfaceName(ifname.to_string()))?;
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
        return Err(BpfError::BadInterfaceName(ifname.to_string()));
    }
    // SAFETY: `c` is a valid NUL-terminated string.
    let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if ifindex == 0 {
        return Err(BpfError::NoSuchInterface {
            ifname: ifname.to_string(),
            errno: Errno::last(),
        });
    }
    Ok(ifindex)
}

/// The programs attached to `ifindex`, by hook.
pub(crate) fn query(ifname: &str, ifindex: u32) -> Result<Vec<Found>, BpfError> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: size_of::<libbpf_sys::bpf_xdp_query_opts>() as libbpf_sys::size_t,
        ..Default::default()
    };
    // SAFETY: `opts` is a valid, sized bpf_xdp_query_opts.
    let ret = unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    if ret < 0 {
        return Err(BpfError::Query {
            ifname: ifname.to_string(),
            errno: Errno::from_ret(ret),
        });
    }
    Ok([
        (Hook::Driver, opts.drv_prog_id),
        (Hook::Generic, opts.skb_prog_id),
        (Hook::Offload, opts.hw_prog_id),
    ]
    .into_iter()
    .filter(|&(_, id)| id != 0)
    .map(|(hook, id)| Found { hook, id })
    .collect())
}

/// A program's name and an fd on it, or `None` when it is gone already.
pub(crate) fn program(id: u32) -> Option<(String, OwnedFd)> {
    let fd = Program::fd_from_id(id).ok()?;
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: `info` is a writable bpf_prog_info of `len` bytes.
    let ret = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd.as_raw_fd(),
            (&mut info as *mut libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        return None;
    }
    let bytes: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Some((String::from_utf8_lossy(&bytes).into_owned(), fd))
}

/// Attach `prog` at `hook`. With `replace`, atomically swap out exactly that
/// program (the kernel refuses with EEXIST if another one is there now);
/// without, only when no program is attached at that hook.
pub(crate) fn attach(
    ifindex: u32,
    prog: BorrowedFd<'_>,
    hook: Hook,
    replace: Option<BorrowedFd<'_>>,
) -> Result<(), Errno> {
    let (flags, old_prog_fd) = match replace {
        Some(old) => (hook.flag() | libbpf_sys::XDP_FLAGS_REPLACE, old.as_raw_fd()),
        None => (hook.flag() | libbpf_sys::XDP_FLAGS_UPDATE_IF_NOEXIST, 0),
    };
    let opts = libbpf_sys::bpf_xdp_attach_opts {
        sz: size_of::<libbpf_sys::bpf_xdp_attach_opts>() as libbpf_sys::size_t,
        old_prog_fd,
        ..Default::default()
    };
    // SAFETY: plain values and a valid, sized opts struct.
    let ret = unsafe { libbpf_sys::bpf_xdp_attach(ifindex as i32, prog.as_raw_fd(), flags, &opts) };
    if ret < 0 {
        return Err(Errno::from_ret(ret));
    }
    Ok(())
}

/// Detach `expected` from `hook`, only if it is still the program there.
pub(crate) fn detach(ifindex: u32, hook: Hook, expected: BorrowedFd<'_>) -> Result<(), Errno> {
    let opts = libbpf_sys::bpf_xdp_attach_opts {
        sz: size_of::<libbpf_sys::bpf_xdp_attach_opts>() as libbpf_sys::size_t,
        old_prog_fd: expected.as_raw_fd(),
        ..Default::default()
    };
    let flags = hook.flag() | libbpf_sys::XDP_FLAGS_REPLACE;
    // SAFETY: plain values and a valid, sized opts struct.
    let ret = unsafe { libbpf_sys::bpf_xdp_detach(ifindex as i32, flags, &opts) };
    if ret < 0 {
        return Err(Errno::from_ret(ret));
    }
    Ok(())
}

/// Detach the program with `id` from `hook` if it is still there. Gone
/// already (ENOENT: no such program; EEXIST: another one took its place)
/// counts as done.
pub(crate) fn detach_id(ifindex: u32, hook: Hook, id: u32) -> Result<(), Errno> {
    let Some((_, fd)) = program(id) else {
        return Ok(());
    };
    match detach(ifindex, hook, fd.as_fd()) {
        Err(Errno(libc::EEXIST | libc::ENOENT)) => Ok(()),
        other => other,
    }
}
