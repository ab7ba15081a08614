//! What the tests share: a host-mode run inside a namespace, and sockets
//! driven the way the scenarios need.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rstwall_engine::wire::{
    EthernetRepr, IpRepr, Ipv4Repr, SackBlocks, TcpFlags, TcpFrameRepr, TcpRepr,
};
use rstwall_host::{HostConfig, HostSource, RstEvent};
use rstwall_netlab::{Namespaces, Netns};

/// A namespace with host mode running in it.
pub struct HostRun {
    pub source: Option<HostSource>,
    pub ns: Arc<Netns>,
    pub _nss: Namespaces,
}

impl HostRun {
    /// A fresh namespace (`lo` up) with host mode observing it.
    pub fn start(tag: &str) -> HostRun {
        rstwall_netlab::require_root("host mode");
        let mut nss = Namespaces::unique(tag);
        let ns = nss.add("host").expect("namespace");
        let source = ns
            .run(|| HostSource::start(&HostConfig::default()))
            .expect("entering the namespace")
            .expect("host mode starts");
        HostRun {
            source: Some(source),
            ns,
            _nss: nss,
        }
    }

    pub fn source(&self) -> &HostSource {
        self.source.as_ref().expect("running")
    }

    /// Events until `done` says enough, or `timeout`.
    pub fn events_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&[RstEvent]) -> bool,
    ) -> Vec<RstEvent> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while Instant::now() < deadline && !done(&out) {
            if let Ok(e) = self
                .source()
                .events()
                .recv_timeout(Duration::from_millis(50))
            {
                out.push(e);
            }
        }
        out
    }
}

/// Name the calling thread (its `comm`), as a program names itself.
pub fn set_comm(name: &str) {
    rstwall_netlab::sock::set_comm(name).expect("PR_SET_NAME");
}

/// A connected pair on `addr`'s address: (client, accepted server side).
pub fn pair(addr: SocketAddr) -> (TcpStream, TcpStream) {
    let l = std::net::TcpListener::bind(addr).unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

fn sockopt(fd: RawFd, opt: i32, val: i32) -> io::Result<()> {
    // SAFETY: an int option of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_TCP,
            opt,
            (&val as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The socket's RCV.NXT, read through TCP_REPAIR (in and straight out of
/// repair mode): what a blind attacker would have to guess.
pub fn rcv_nxt(s: &TcpStream) -> u32 {
    const TCP_REPAIR: i32 = 19;
    const TCP_REPAIR_QUEUE: i32 = 20;
    const TCP_QUEUE_SEQ: i32 = 21;
    const TCP_RECV_QUEUE: i32 = 1;
    let fd = s.as_raw_fd();
    sockopt(fd, TCP_REPAIR, 1).expect("TCP_REPAIR on");
    sockopt(fd, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE).expect("TCP_REPAIR_QUEUE");
    let mut seq = 0u32;
    let mut len = 4u32;
    // SAFETY: a u32 option of the right size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_TCP,
            TCP_QUEUE_SEQ,
            (&mut seq as *mut u32).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_QUEUE_SEQ: {}", io::Error::last_os_error());
    sockopt(fd, TCP_REPAIR, 0).expect("TCP_REPAIR off");
    seq
}

/// A bare IPv4 RST (no link header) from `from` to `to`, built with the
/// engine's TcpFrameRepr: what a raw socket or a tun device sends.
pub fn ipv4_rst(from: SocketAddrV4, to: SocketAddrV4, seq: u32, ack: Option<u32>) -> Vec<u8> {
    let flags = if ack.is_some() {
        TcpFlags::RST | TcpFlags::ACK
    } else {
        TcpFlags::RST
    };
    let repr = TcpFrameRepr {
        ethernet: EthernetRepr {
            src: [0; 6],
            dst: [0; 6],
        },
        ip: IpRepr::V4(Ipv4Repr {
            src: *from.ip(),
            dst: *to.ip(),
            ttl: 64,
            ident: 0,
            dont_fragment: true,
        }),
        tcp: TcpRepr {
            src_port: from.port(),
            dst_port: to.port(),
            seq,
            ack: ack.unwrap_or(0),
            flags: TcpFlags(flags),
            window: 0,
            mss: None,
            window_scale: None,
            sack_permitted: false,
            timestamps: None,
            sack_blocks: SackBlocks::default(),
            fast_open: None,
            payload: &[],
        },
    };
    let mut frame = vec![0u8; repr.len()];
    let n = repr.emit(&mut frame).unwrap();
    frame[EthernetRepr::HEADER_LEN..n].to_vec()
}
