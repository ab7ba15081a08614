//! The lab's raw senders: hand-built IPv4 and IPv6 packets from any
//! source address (IPPROTO_RAW), and whole Ethernet frames out of one
//! interface (AF_PACKET). Both belong to the namespace of the thread that
//! opened them and are meant for the lab's own addresses only.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use crate::netns::ifindex;
use crate::packet::Segment;
use crate::sock::socket;

/// Raw sockets that send complete, hand-built IP packets (IPPROTO_RAW
/// implies IP_HDRINCL, and IPV6_HDRINCL for IPv6): the source address is
/// whatever the packet says.
pub struct RawSender {
    v4: OwnedFd,
    /// `None` where the kernel has no IPv6.
    v6: Option<OwnedFd>,
}

impl RawSender {
    /// Open it in the calling thread's namespace.
    pub fn open() -> io::Result<RawSender> {
        let v4 = socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
        let v6 = socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_RAW).ok();
        Ok(RawSender { v4, v6 })
    }

    /// Send one IPv4 or IPv6 packet (destination from its header). A full
    /// device queue (ENOBUFS) is waited out briefly rather than lost.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
        match packet.first().map(|b| b >> 4) {
            Some(4) if packet.len() >= 20 => {
                // SAFETY: all-zero is a valid sockaddr_in.
                let mut sa: libc::sockaddr_in = unsafe { zeroed() };
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr =
                    u32::from_ne_bytes([packet[16], packet[17], packet[18], packet[19]]);
                send_to(&self.v4, packet, &sa)
            }
            Some(6) if packet.len() >= 40 => {
                let fd = self
                    .v6
                    .as_ref()
                    .ok_or_else(|| invalid("no IPv6 raw socket in this namespace"))?;
                // SAFETY: all-zero is a valid sockaddr_in6. Port 0: the
                // protocol is the socket's (IPPROTO_RAW, header included).
                let mut sa: libc::sockaddr_in6 = unsafe { zeroed() };
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr.s6_addr.copy_from_slice(&packet[24..40]);
                send_to(fd, packet, &sa)
            }
            _ => Err(invalid("not an IPv4 or IPv6 packet")),
        }
    }

    /// Build `seg` (IPv4 identification `ip_id`) and send it.
    pub fn send_segment(&self, seg: &Segment, ip_id: u16) -> io::Result<()> {
        let packet = seg.to_ip(ip_id).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} > {}: mixed address families", seg.src, seg.dst),
            )
        })?;
        self.send(&packet)
    }
}

/// sendto(2) of `packet` to the socket address `sa`.
fn send_to<A>(fd: &OwnedFd, packet: &[u8], sa: &A) -> io::Result<()> {
    retry_full_queue(
        || {
            // SAFETY: valid buffer; `sa` is a sockaddr of its own size.
            unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    packet.as_ptr().cast(),
                    packet.len(),
                    0,
                    (sa as *const A).cast(),
                    size_of::<A>() as libc::socklen_t,
                )
            }
        },
        packet.len(),
    )
}

/// An AF_PACKET socket that sends whole Ethernet frames out of one
/// interface, as they are.
pub struct FrameSender {
    fd: OwnedFd,
    sll: libc::sockaddr_ll,
}

impl FrameSender {
    /// Open it on `ifname` in the calling thread's namespace.
    pub fn open(ifname: &str) -> io::Result<FrameSender> {
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0)?;
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex(ifname)? as i32;
        Ok(FrameSender { fd, sll })
    }

    /// Send one frame (a full queue is waited out briefly).
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        retry_full_queue(
            || {
                // SAFETY: valid buffer and sockaddr_ll.
                unsafe {
                    libc::sendto(
                        self.fd.as_raw_fd(),
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        (&self.sll as *const libc::sockaddr_ll).cast(),
                        size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                }
            },
            frame.len(),
        )
    }
}

/// Run one send until it takes all `len` bytes, waiting out ENOBUFS for up
/// to about 100 ms.
fn retry_full_queue(mut send: impl FnMut() -> isize, len: usize) -> io::Result<()> {
    let mut tries = 0;
    loop {
        let n = send();
        if n == len as isize {
            return Ok(());
        }
        if n >= 0 {
            return Err(io::Error::other(format!("sent {n} of {len} bytes")));
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
