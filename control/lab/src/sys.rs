//! The system calls the lab needs that std does not wrap: network
//! namespaces (setns), raw IPv4 and packet sockets with a classic BPF
//! filter, the ethtool flags of a veth, a socket's TCP state, signals.
//!
//! Every `unsafe` block is a plain system call on a file descriptor this
//! module owns, with buffers of the size the call expects.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Make the calling thread a member of the named network namespace
/// (`/run/netns/NAME`, as `ip netns add` makes them). Sockets it opens from
/// then on live in that namespace for their whole life, whichever thread
/// uses them later.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let f = File::open(format!("/run/netns/{name}"))
        .map_err(|e| io::Error::new(e.kind(), format!("network namespace {name}: {e}")))?;
    // SAFETY: setns on a namespace fd we hold; affects this thread only.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("entering network namespace {name}: {e}"),
        ));
    }
    Ok(())
}

/// Run `f` on a fresh thread that joined namespace `ns`; its result. The
/// caller's own thread never changes namespace.
pub fn in_netns<T: Send>(
    ns: &str,
    f: impl FnOnce() -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            enter_netns(ns)?;
            f()
        });
        h.join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("a thread in namespace {ns} panicked")))
    })
}

// ---------------------------------------------------------------------------
// ethtool
// ---------------------------------------------------------------------------

const SIOCETHTOOL: libc::c_ulong = 0x8946;
/// Set TX checksum offload.
pub const ETHTOOL_STXCSUM: u32 = 0x17;
/// Set generic receive offload.
pub const ETHTOOL_SGRO: u32 = 0x2c;

/// Set one ethtool flag (`ETHTOOL_S*`) of `ifname`; call it from a thread
/// inside the interface's namespace.
pub fn ethtool_set(ifname: &str, cmd: u32, value: u32) -> io::Result<()> {
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut libc::c_void,
        _pad: [u8; 16],
    }
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
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
    // SAFETY: a valid ifreq pointing at a valid struct ethtool_value.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req as *mut IfReq) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("ethtool {cmd:#x} on {ifname}: {e}"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// sockets
// ---------------------------------------------------------------------------

fn socket(domain: i32, ty: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: RawFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An IPv4 raw socket that sends complete, hand-built IPv4 packets
/// (IPPROTO_RAW implies IP_HDRINCL): the source address is whatever the
/// packet says.
pub struct RawSender {
    fd: OwnedFd,
}

impl RawSender {
    /// Open it in the calling thread's namespace.
    pub fn open() -> io::Result<RawSender> {
        let fd = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
        Ok(RawSender { fd })
    }

    /// Send one IPv4 packet (destination from its header). A full device
    /// queue (ENOBUFS) is waited out briefly rather than lost.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        if packet.len() < 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an IPv4 packet",
            ));
        }
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes([packet[16], packet[17], packet[18], packet[19]]);
        let mut tries = 0;
        loop {
            // SAFETY: valid buffer and sockaddr_in.
            let n = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if n == packet.len() as isize {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOBUFS) && tries < 100 {
                tries += 1;
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            return Err(e);
        }
    }
}

/// One IPv4/TCP frame a [`TcpSniffer`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenSegment {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

/// A packet socket on one interface that receives only the incoming IPv4
/// TCP frames to one destination port with at least one of some flag bits
/// set. The filter runs in the kernel (classic BPF), so a busy interface
/// costs this socket nothing beyond the frames it asked for.
pub struct TcpSniffer {
    fd: OwnedFd,
}

const PACKET_IGNORE_OUTGOING: i32 = 23;

impl TcpSniffer {
    /// Open it on `ifname` in the calling thread's namespace.
    pub fn open(ifname: &str, dport: u16, any_flags: u8) -> io::Result<TcpSniffer> {
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, proto)?;
        let raw = fd.as_raw_fd();
        // The filter first, then bind: no unfiltered frame gets queued.
        let prog = tcp_filter(dport, any_flags);
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr() as *mut libc::sock_filter,
        };
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;
        setsockopt(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32)?;
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &(8i32 << 20))?;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        let name = std::ffi::CString::new(ifname)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto as u16;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: a valid sockaddr_ll.
        let rc = unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(TcpSniffer { fd })
    }

    /// The next matching segment, or `None` after 50 ms without one.
    pub fn next(&self) -> io::Result<Option<SeenSegment>> {
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: a valid buffer of the given length. Frames longer
            // than it are truncated, which keeps the headers.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if let Some(s) = parse_segment(&buf[..n as usize]) {
                return Ok(Some(s));
            }
        }
    }
}

/// Ethernet + IPv4 + TCP headers of a frame, if it is one.
fn parse_segment(f: &[u8]) -> Option<SeenSegment> {
    if f.len() < 14 + 20 || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &f[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || ip[9] != 6 || ihl < 20 || ip.len() < ihl + 20 {
        return None;
    }
    let tcp = &ip[ihl..];
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some(SeenSegment {
        src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: be32(&tcp[4..8]),
        ack: be32(&tcp[8..12]),
        flags: tcp[13],
    })
}

/// Classic BPF over an Ethernet frame: accept IPv4 TCP to `dport` whose
/// flags byte has any bit of `any_flags` set.
fn tcp_filter(dport: u16, any_flags: u8) -> Vec<libc::sock_filter> {
    const LD_H_ABS: u16 = 0x28;
    const LD_B_ABS: u16 = 0x30;
    const LD_H_IND: u16 = 0x48;
    const LD_B_IND: u16 = 0x50;
    const LDX_B_MSH: u16 = 0xb1;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    vec![
        op(LD_H_ABS, 0, 0, 12),                 // 0: ethertype
        op(JEQ_K, 0, 8, 0x0800),                // 1: IPv4, else 10
        op(LD_B_ABS, 0, 0, 23),                 // 2: IP protocol
        op(JEQ_K, 0, 6, 6),                     // 3: TCP, else 10
        op(LDX_B_MSH, 0, 0, 14),                // 4: x = IP header length
        op(LD_H_IND, 0, 0, 14 + 2),             // 5: TCP destination port
        op(JEQ_K, 0, 3, u32::from(dport)),      // 6: else 10
        op(LD_B_IND, 0, 0, 14 + 13),            // 7: TCP flags
        op(JSET_K, 0, 1, u32::from(any_flags)), // 8: else 10
        op(RET_K, 0, 0, 0xffff),                // 9: accept
        op(RET_K, 0, 0, 0),                     // 10: drop
    ]
}

/// The kernel's TCP state of a socket (`TCP_INFO`'s first byte: 1
/// ESTABLISHED ... 7 CLOSE, 8 CLOSE_WAIT).
pub fn tcp_state(fd: RawFd) -> io::Result<u8> {
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info[0])
}

pub const TCP_CLOSE: u8 = 7;

/// Bytes waiting in a socket's receive queue (FIONREAD).
pub fn bytes_queued(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// Wait until `fd` is readable (a listener: a connection to accept), at
/// most `timeout`. True if it is.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
    rc > 0 && p.revents & libc::POLLIN != 0
}

// ---------------------------------------------------------------------------
// processes and signals
// ---------------------------------------------------------------------------

/// Send `sig` to `pid`; false if there is no such process.
pub fn kill(pid: u32, sig: i32) -> bool {
    // SAFETY: kill(2).
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

/// SIGINT or SIGTERM received since [`catch_stop_signals`].
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// From now on SIGINT (Ctrl-C) and SIGTERM set a flag instead of killing
/// the process, once: a second one kills it as usual. The flag.
pub fn catch_stop_signals() -> &'static AtomicBool {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installing an async-signal-safe handler (one atomic store).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    &STOP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_ethernet_ipv4_tcp_frame_and_rejects_others() {
        let mut f = vec![0u8; 14 + 40];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 6;
        f[14 + 12..14 + 16].copy_from_slice(&[198, 18, 0, 1]);
        f[14 + 16..14 + 20].copy_from_slice(&[198, 18, 0, 2]);
        f[34..36].copy_from_slice(&40000u16.to_be_bytes());
        f[36..38].copy_from_slice(&5004u16.to_be_bytes());
        f[38..42].copy_from_slice(&7u32.to_be_bytes());
        f[34 + 13] = 0x04;
        let s = parse_segment(&f).expect("a TCP frame");
        assert_eq!((s.sport, s.dport, s.seq, s.flags), (40000, 5004, 7, 0x04));
        assert_eq!(s.src, Ipv4Addr::new(198, 18, 0, 1));
        assert!(parse_segment(&f[..40]).is_none(), "truncated");
        f[14 + 9] = 17;
        assert!(parse_segment(&f).is_none(), "UDP");
    }

    #[test]
    fn the_filter_jumps_stay_inside_the_program() {
        let p = tcp_filter(5004, 0x04);
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                assert!(i + 1 + (ins.jt as usize) < p.len());
                assert!(i + 1 + (ins.jf as usize) < p.len());
                assert_eq!(p[i + 1 + ins.jf as usize].k, 0, "false branches drop");
            }
        }
    }
}
