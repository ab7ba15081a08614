//! The ethtool settings a lab needs on veths, through the SIOCETHTOOL
//! ioctl (no ethtool binary).
//!
//! veth does what real NICs hide: with TX checksum offload on, a frame
//! handed to AF_XDP or captured keeps a partial checksum; and veth accepts
//! frames redirected to it by XDP only when its peer runs NAPI, which GRO
//! turns on.

use std::io;
use std::os::fd::AsRawFd;

const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// An offload flag of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offload {
    /// TX checksum offload (turning it off turns TSO off too).
    TxChecksum,
    /// Generic receive offload.
    Gro,
}

impl Offload {
    /// The ETHTOOL_G* and ETHTOOL_S* commands (linux/ethtool.h).
    fn commands(self) -> (u32, u32) {
        match self {
            Offload::TxChecksum => (0x16, 0x17),
            Offload::Gro => (0x2b, 0x2c),
        }
    }
}

/// Turn `offload` of `ifname` on or off; call it inside the interface's
/// namespace.
pub fn set(ifname: &str, offload: Offload, on: bool) -> io::Result<()> {
    ethtool_value(ifname, offload.commands().1, u32::from(on)).map(drop)
}

/// Whether `offload` of `ifname` is on; call it inside the interface's
/// namespace.
pub fn get(ifname: &str, offload: Offload) -> io::Result<bool> {
    ethtool_value(ifname, offload.commands().0, 0).map(|v| v != 0)
}

/// One `struct ethtool_value` command; the value the kernel left in it.
fn ethtool_value(ifname: &str, cmd: u32, value: u32) -> io::Result<u32> {
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut libc::c_void,
        _pad: [u8; 16],
    }
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {ifname:?}"),
        ));
    }
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    let mut val = [cmd, value];
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: val.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: a valid ifreq pointing at a valid struct ethtool_value, both
    // alive for the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfReq) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("ethtool {cmd:#x} on {ifname}: {e}"),
        ));
    }
    Ok(val[1])
}
