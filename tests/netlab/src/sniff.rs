//! The lab's one sniffer: an AF_PACKET socket that receives frames with
//! the kernel's timestamp and hands out TCP segments as the engine parses
//! them ([`wire::parse`]); and [`Recorder`], a sniffer on a thread of its
//! own that keeps everything it saw.

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rstwall_engine::wire::{self, LinkType, Parsed, Segment};
use rstwall_source::StopOnDrop;

use crate::netns::{ifindex, Netns};
use crate::sock::{setsockopt, socket};

const PACKET_IGNORE_OUTGOING: i32 = 23;
/// Frames captured whole: the lab's veths carry MTU-sized frames (no TSO,
/// no GRO on what is sniffed), far below this.
const MAX_FRAME: usize = 65_536;

/// One frame as the sniffer saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Nanoseconds since the Unix epoch, from the kernel.
    pub timestamp_ns: u64,
    /// The Ethernet frame.
    pub data: Vec<u8>,
}

impl Frame {
    /// The frame's TCP segment, if it carries one.
    pub fn segment(&self) -> Option<Segment<'_>> {
        segment_of(&self.data)
    }

    /// The Ethernet type (0x0800 IPv4, 0x86dd IPv6, ...).
    pub fn ethertype(&self) -> Option<u16> {
        self.data
            .get(12..14)
            .map(|t| u16::from_be_bytes([t[0], t[1]]))
    }
}

/// The TCP segment of an Ethernet frame, parsed by the engine's own parser.
pub fn segment_of(frame: &[u8]) -> Option<Segment<'_>> {
    match wire::parse(LinkType::Ethernet, frame) {
        Ok(Parsed::Tcp(seg)) => Some(seg),
        _ => None,
    }
}

/// What a sniffer listens to.
#[derive(Clone, Copy, Debug)]
pub enum Listen<'a> {
    /// Every frame on every interface of the namespace, both directions.
    All,
    /// Every frame on one interface, both directions.
    Interface(&'a str),
    /// Incoming IPv4 TCP segments on one interface to `dport` with at
    /// least one of the flag bits `any_flags` (`TcpFlags::RST`...) set.
    /// The filter runs in the kernel (classic BPF), so a busy interface
    /// costs the socket nothing beyond the frames it asked for.
    TcpTo {
        ifname: &'a str,
        dport: u16,
        any_flags: u16,
    },
    /// Outgoing IPv4 TCP segments on one interface from `sport` with at
    /// least one of the flag bits `any_flags` set: what this host's kernel
    /// sends from one of its ports (its RSTs), filtered in the kernel like
    /// [`Listen::TcpTo`]. Only frames the interface transmits: a frame
    /// that arrives from `sport` (a spoofed one, a backscatter RST whose
    /// random source port happens to be it) is not the host's.
    TcpFrom {
        ifname: &'a str,
        sport: u16,
        any_flags: u16,
    },
}

/// An AF_PACKET socket in the namespace of the thread that opened it.
pub struct Sniffer {
    fd: OwnedFd,
}

impl Sniffer {
    /// Open it in the calling thread's namespace; a receive waits at most
    /// 50 ms.
    pub fn open(what: Listen<'_>) -> io::Result<Sniffer> {
        let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
        // Protocol 0: the socket receives nothing until it is bound (a
        // socket opened with ETH_P_ALL receives every frame at once). The
        // filter first, then bind with ETH_P_ALL: no unfiltered frame gets
        // queued.
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW, 0)?;
        let raw = fd.as_raw_fd();
        let filter = match what {
            Listen::TcpTo {
                dport, any_flags, ..
            } => Some((Port::Destination(dport), any_flags)),
            Listen::TcpFrom {
                sport, any_flags, ..
            } => Some((Port::Source(sport), any_flags)),
            Listen::All | Listen::Interface(_) => None,
        };
        if let Some((port, any_flags)) = filter {
            let prog = tcp_filter(port, any_flags as u8);
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            setsockopt(raw, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)?;
            if let Port::Destination(_) = port {
                setsockopt(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &1i32)?;
            }
        }
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &(16i32 << 20))?;
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &1i32)?;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)?;
        let ifindex = match what {
            // Every interface of the namespace.
            Listen::All => 0,
            Listen::Interface(name)
            | Listen::TcpTo { ifname: name, .. }
            | Listen::TcpFrom { ifname: name, .. } => ifindex(name)? as i32,
        };
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto as u16;
        sll.sll_ifindex = ifindex;
        // SAFETY: a valid sockaddr_ll.
        let rc = unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Sniffer { fd })
    }

    /// The next frame: waits at most 50 ms, or not at all when `wait` is
    /// false; `None` when there was none.
    pub fn next_frame(&self, wait: bool) -> io::Result<Option<Frame>> {
        let mut buf = vec![0u8; MAX_FRAME];
        Ok(self.recv(&mut buf, wait)?.map(|(timestamp_ns, n)| {
            buf.truncate(n);
            Frame {
                timestamp_ns,
                data: buf,
            }
        }))
    }

    /// The next TCP segment (within 50 ms, else `None`), its payload left
    /// out (`payload_len` still says how long it was).
    pub fn next_segment(&self) -> io::Result<Option<Segment<'static>>> {
        // Headers only: longer frames are cut, which keeps them.
        let mut buf = [0u8; 256];
        loop {
            let Some((_, n)) = self.recv(&mut buf, true)? else {
                return Ok(None);
            };
            if let Some(seg) = segment_of(&buf[..n]) {
                return Ok(Some(Segment {
                    payload: &[],
                    ..seg
                }));
            }
        }
    }

    /// Frames the kernel dropped because this socket's queue was full,
    /// since the last call (`PACKET_STATISTICS`, which resets them).
    pub fn drops(&self) -> io::Result<u32> {
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: a tpacket_stats-sized buffer.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.tp_drops)
    }

    /// One frame into `buf`: (timestamp, captured length).
    fn recv(&self, buf: &mut [u8], wait: bool) -> io::Result<Option<(u64, usize)>> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one SCM_TIMESTAMPNS control message.
        let mut control = [0u64; 8];
        loop {
            // SAFETY: all-zero is a valid msghdr; the pointers set below
            // outlive the call.
            let mut msg: libc::msghdr = unsafe { zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 8]>() as _;
            let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
            // SAFETY: a valid msghdr over live buffers.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, flags) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            return Ok(Some((timestamp(&msg), n as usize)));
        }
    }
}

/// The SCM_TIMESTAMPNS of a received message, or 0.
fn timestamp(msg: &libc::msghdr) -> u64 {
    // SAFETY: walking the control buffer recvmsg filled, with the kernel's
    // own CMSG macros.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                return (ts.tv_sec as u64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(ts.tv_nsec as u64);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    0
}

/// Which TCP port a filter matches.
#[derive(Clone, Copy, Debug)]
enum Port {
    Source(u16),
    Destination(u16),
}

/// Classic BPF over an Ethernet frame: accept IPv4 TCP from or to `port`
/// whose flags byte has any bit of `any_flags` set.
fn tcp_filter(port: Port, any_flags: u8) -> Vec<libc::sock_filter> {
    const LD_H_ABS: u16 = 0x28;
    const LD_B_ABS: u16 = 0x30;
    const LD_H_IND: u16 = 0x48;
    const LD_B_IND: u16 = 0x50;
    const LDX_B_MSH: u16 = 0xb1;
    const JEQ_K: u16 = 0x15;
    const JSET_K: u16 = 0x45;
    const RET_K: u16 = 0x06;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    const LD_W_ABS: u16 = 0x20;
    // The ancillary load of the frame's packet type (SKF_AD_OFF +
    // SKF_AD_PKTTYPE), and the type of a frame the host transmits.
    const AD_PKTTYPE: u32 = (-0x1000i32 + 4) as u32;
    const PACKET_OUTGOING: u32 = 4;
    let (offset, port) = match port {
        Port::Source(p) => (0, p),
        Port::Destination(p) => (2, p),
    };
    let mut prog = Vec::new();
    if offset == 0 {
        // Outgoing frames only; else to the final drop (2 + 10).
        prog.extend([
            op(LD_W_ABS, 0, 0, AD_PKTTYPE),
            op(JEQ_K, 0, 10, PACKET_OUTGOING),
        ]);
    }
    prog.extend([
        op(LD_H_ABS, 0, 0, 12),                 // 0: ethertype
        op(JEQ_K, 0, 8, 0x0800),                // 1: IPv4, else 10
        op(LD_B_ABS, 0, 0, 23),                 // 2: IP protocol
        op(JEQ_K, 0, 6, 6),                     // 3: TCP, else 10
        op(LDX_B_MSH, 0, 0, 14),                // 4: x = IP header length
        op(LD_H_IND, 0, 0, 14 + offset),        // 5: TCP source or destination port
        op(JEQ_K, 0, 3, u32::from(port)),       // 6: else 10
        op(LD_B_IND, 0, 0, 14 + 13),            // 7: TCP flags
        op(JSET_K, 0, 1, u32::from(any_flags)), // 8: else 10
        op(RET_K, 0, 0, 0xffff),                // 9: accept
        op(RET_K, 0, 0, 0),                     // 10: drop
    ]);
    prog
}

/// Every frame seen on a namespace's interfaces while it runs, kept by a
/// thread of its own.
pub struct Recorder {
    frames: Arc<Mutex<Vec<Frame>>>,
    _thread: StopOnDrop<io::Result<()>>,
}

impl Recorder {
    /// Start recording in `ns`; it records from the moment this returns.
    pub fn start(ns: &Netns) -> io::Result<Recorder> {
        let sniffer = ns.run(|| Sniffer::open(Listen::All))??;
        let frames = Arc::new(Mutex::new(Vec::new()));
        let f = frames.clone();
        let thread = StopOnDrop::spawn("netlab-recorder", move |stop| {
            while !stop.load(Ordering::Relaxed) {
                if let Some(frame) = sniffer.next_frame(true)? {
                    f.lock().unwrap_or_else(|e| e.into_inner()).push(frame);
                }
            }
            Ok(())
        })?;
        Ok(Recorder {
            frames,
            _thread: thread,
        })
    }

    /// The frames so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Segment as Built;
    use rstwall_engine::wire::TcpFlags;
    use std::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn a_frame_yields_the_engines_segment_and_other_frames_none() {
        let built = Built {
            src: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40_000).into(),
            dst: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 5004).into(),
            seq: 7,
            ack: 0,
            flags: TcpFlags::RST,
            window: 0,
        };
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&built.to_ipv4(1).expect("IPv4"));
        let frame = Frame {
            timestamp_ns: 1,
            data: f.clone(),
        };
        let s = frame.segment().expect("a TCP frame");
        assert_eq!((s.src_port, s.dst_port, s.seq), (40000, 5004, 7));
        assert_eq!(s.flags, TcpFlags(TcpFlags::RST));
        assert_eq!(s.src, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(frame.ethertype(), Some(0x0800));
        assert!(segment_of(&f[..40]).is_none(), "truncated");
        f[14 + 9] = 17;
        assert!(segment_of(&f).is_none(), "UDP");
    }

    #[test]
    fn the_filter_jumps_stay_inside_the_program() {
        for p in [
            tcp_filter(Port::Destination(5004), 0x04),
            tcp_filter(Port::Source(5004), 0x04),
        ] {
            for (i, ins) in p.iter().enumerate() {
                if ins.code & 0x07 == 0x05 {
                    assert!(i + 1 + (ins.jt as usize) < p.len());
                    assert!(i + 1 + (ins.jf as usize) < p.len());
                    assert_eq!(p[i + 1 + ins.jf as usize].k, 0, "false branches drop");
                }
            }
        }
    }
}
