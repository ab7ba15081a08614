//! The lab's raw senders: hand-built IPv4 packets from any source address
//! (IPPROTO_RAW), and whole Ethernet frames out of one interface
//! (AF_PACKET). Both belong to the namespace of the thread that opened
//! them and are meant for the lab's own addresses only.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use crate::netns::ifindex;
use crate::sock::socket;

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
        if packet.len() < 20 || packet[0] >> 4 != 4 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not an IPv4 packet",
            ));
        }
        // SAFETY: all-zero is a valid sockaddr_in.
        let mut sa: libc::sockaddr_in = unsafe { zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes([packet[16], packet[17], packet[18], packet[19]]);
        retry_full_queue(
            || {
                // SAFETY: valid buffer and sockaddr_in.
                unsafe {
                    libc::sendto(
                        self.fd.as_raw_fd(),
                        packet.as_ptr().cast(),
                        packet.len(),
                        0,
                        (&sa as *const libc::sockaddr_in).cast(),
                        size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                }
            },
            packet.len(),
        )
    }
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
