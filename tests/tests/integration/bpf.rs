//! The XDP program (rstwall-bpf), privileged: these tests load BPF programs,
//! create AF_XDP sockets and network namespaces, so they need root and FAIL
//! (never skip) without it.
//!
//! Most run frames through the unattached program with `BPF_PROG_TEST_RUN`
//! ([`TestProgram`]) and check the verdict and the counters: every frame
//! lands in exactly one class counter and one verdict counter. In a test run
//! `bpf_redirect_map` only looks its target up, so `XDP_REDIRECT` plus the
//! counter says where a frame went (`to_xsk`: the AF_XDP socket; `forwarded`
//! or `bypassed`: the peer port). Inline programs use ifindex 1 (`lo`) as
//! their peer, which every namespace has.
//!
//! The userspace parser (`wire::parse` + `FlagClass::of`) is the oracle for
//! classification throughout, and [`corpus_classes_match_the_userspace_parser`]
//! holds the two to the same answer on every Ethernet frame of the pcap
//! corpus. The last tests attach to veth pairs in private namespaces.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::panic;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use etherparse::PacketBuilder;
use rstwall_bpf::{
    action, detach_stale, monotonic_now_ns, AttachedMode, BpfError, Errno, FrameCounts,
    PortProgram, PortRole, TestProgram, XdpCounters, XdpMode, MIN_TEST_FRAME,
};
use rstwall_engine::wire::{self, LinkType, Parsed};
use rstwall_engine::FlagClass;
use rstwall_netlab::Namespaces;
use rstwall_pcap::capture::CaptureReader;

mod guard;

// ---------------------------------------------------------------------------
// Privileges, programs and running one frame

#[track_caller]
fn require_root() {
    rstwall_netlab::require_root(
        "the BPF tests (XDP programs, AF_XDP sockets, network namespaces; \
         CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN)",
    );
}

/// The loopback ifindex: the peer port of every inline test program.
const LO: u32 = 1;

fn inline() -> TestProgram {
    require_root();
    TestProgram::load(PortRole::Inline { peer_ifindex: LO }).expect("load the inline program")
}

fn tap() -> TestProgram {
    require_root();
    TestProgram::load(PortRole::Tap).expect("load the tap program")
}

/// Where a frame was classified: one of the class counters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Tcp(FlagClassKey),
    NonTcp,
    Malformed,
}

/// `FlagClass` by index, orderable for maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FlagClassKey(usize);

impl std::fmt::Debug for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Class::Tcp(FlagClassKey(i)) => write!(f, "tcp/{}", FlagClass::ALL[*i]),
            Class::NonTcp => f.write_str("non_tcp"),
            Class::Malformed => f.write_str("malformed"),
        }
    }
}

impl Class {
    fn tcp(c: FlagClass) -> Class {
        Class::Tcp(FlagClassKey(c.index()))
    }

    fn is_tcp(self) -> bool {
        matches!(self, Class::Tcp(_))
    }
}

/// What the userspace parser makes of an Ethernet frame.
fn userspace(frame: &[u8]) -> Class {
    match wire::parse(LinkType::Ethernet, frame) {
        Ok(Parsed::Tcp(seg)) => Class::tcp(FlagClass::of(seg.flags)),
        Ok(Parsed::NotTcp(_)) => Class::NonTcp,
        Err(_) => Class::Malformed,
    }
}

/// The one class counter a frame moved.
#[track_caller]
fn class_of(d: &XdpCounters) -> Class {
    let mut moved = Vec::new();
    for c in FlagClass::ALL {
        if d.flag_class(c) != 0 {
            moved.push(Class::tcp(c));
        }
    }
    if d.non_tcp != 0 {
        moved.push(Class::NonTcp);
    }
    if d.malformed != 0 {
        moved.push(Class::Malformed);
    }
    assert_eq!(
        moved.len(),
        1,
        "one frame moved class counters {moved:?}: {d:?}"
    );
    moved[0]
}

/// The verdict counters as (name, value) for those that moved.
fn verdicts(d: &XdpCounters) -> Vec<(&'static str, u64)> {
    [
        ("to_xsk", d.to_xsk),
        ("forwarded", d.forwarded),
        ("tap_dropped", d.tap_dropped),
        ("bypassed", d.bypassed),
        ("deny_dropped", d.deny_dropped),
        ("block_dropped", d.block_dropped),
        ("malformed_dropped", d.malformed_dropped),
        ("peer_missing", d.peer_missing),
        ("guard_dropped", d.guard_dropped),
    ]
    .into_iter()
    .filter(|&(_, v)| v != 0)
    .collect()
}

/// One frame through the program: its verdict, class and verdict counter.
struct Ran {
    action: u32,
    class: Class,
    verdict: &'static str,
}

#[track_caller]
fn run(p: &TestProgram, frame: &[u8]) -> Ran {
    run_on(p, frame, 0, 0)
}

#[track_caller]
fn run_on(p: &TestProgram, frame: &[u8], ifindex: u32, queue: u32) -> Ran {
    let before = p.counters().expect("counters");
    let action = p
        .run_on(frame, ifindex, queue)
        .unwrap_or_else(|e| panic!("test run of a {}-byte frame: {e}", frame.len()));
    let d = p.counters().expect("counters").since(&before);
    assert_eq!(d.packets(), 1, "class counters for one frame: {d:?}");
    let v = verdicts(&d);
    assert_eq!(v.len(), 1, "verdict counters for one frame: {v:?}");
    assert_eq!(v[0].1, 1, "{v:?}");
    Ran {
        action,
        class: class_of(&d),
        verdict: v[0].0,
    }
}

#[track_caller]
fn expect(p: &TestProgram, frame: &[u8], action: u32, class: Class, verdict: &str, what: &str) {
    let r = run(p, frame);
    assert_eq!(
        (action::name(r.action), r.class, r.verdict),
        (action::name(action), class, verdict),
        "{what}"
    );
}

// ---------------------------------------------------------------------------
// Frames (addresses in 198.18.0.0/15 and 2001:2::/48 only)

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const V4_SRC: [u8; 4] = [198, 18, 0, 1];
const V4_DST: [u8; 4] = [198, 18, 0, 2];
const V4_OTHER: [u8; 4] = [198, 19, 7, 7];
const V6_SRC: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_DST: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const V6_OTHER: [u8; 16] = [0x20, 0x01, 0, 2, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Flag combinations and the exclusive class each belongs to.
const FLAG_CASES: &[(u8, FlagClass, &str)] = &[
    (SYN, FlagClass::Syn, "SYN"),
    (SYN | ACK, FlagClass::SynAck, "SYN-ACK"),
    (FIN, FlagClass::Fin, "FIN"),
    (FIN | ACK, FlagClass::Fin, "FIN-ACK"),
    (RST, FlagClass::Rst, "RST"),
    (RST | ACK, FlagClass::RstAck, "RST-ACK"),
    (ACK, FlagClass::Other, "ACK"),
    (PSH | ACK, FlagClass::Other, "PSH-ACK"),
    (0, FlagClass::Other, "no flags"),
    (SYN | RST, FlagClass::Rst, "SYN-RST (RST wins)"),
    (
        SYN | FIN | ACK,
        FlagClass::SynAck,
        "SYN-FIN-ACK (SYN beats FIN)",
    ),
    (FIN | RST | ACK, FlagClass::RstAck, "FIN-RST-ACK"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

fn tcp_step(
    ip: etherparse::PacketBuilderStep<etherparse::IpHeaders>,
    flags: u8,
) -> etherparse::PacketBuilderStep<etherparse::TcpHeader> {
    let mut b = ip.tcp(40_000, 443, 0x1000_0000, 64_240);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    if flags & PSH != 0 {
        b = b.psh();
    }
    if flags & ACK != 0 {
        b = b.ack(0x2000_0000);
    }
    b
}

fn tcp_from(family: Family, src: IpAddr, flags: u8, payload: &[u8]) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    let ip = match (family, src) {
        (Family::V4, IpAddr::V4(s)) => eth.ipv4(s.octets(), V4_DST, 64),
        (Family::V6, IpAddr::V6(s)) => eth.ipv6(s.octets(), V6_DST, 64),
        _ => panic!("{family:?} frame from {src}"),
    };
    let b = tcp_step(ip, flags);
    let mut out = Vec::with_capacity(b.size(payload.len()));
    b.write(&mut out, payload).expect("build frame");
    out
}

fn tcp(family: Family, flags: u8) -> Vec<u8> {
    tcp_from(family, default_src(family), flags, &[])
}

fn default_src(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(V4_SRC)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(V6_SRC)),
    }
}

fn udp_from(src: IpAddr) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
    let b = match src {
        IpAddr::V4(s) => eth.ipv4(s.octets(), V4_DST, 64).udp(5353, 53),
        IpAddr::V6(s) => eth.ipv6(s.octets(), V6_DST, 64).udp(5353, 53),
    };
    let mut out = Vec::new();
    b.write(&mut out, &[0xab; 12]).expect("build frame");
    out
}

fn icmp4() -> Vec<u8> {
    let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(V4_SRC, V4_DST, 64)
        .icmpv4_echo_request(1, 1);
    let mut out = Vec::new();
    b.write(&mut out, &[0; 8]).expect("build frame");
    out
}

fn arp() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    // Request: who has 198.18.0.2, tell 198.18.0.1.
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&V4_SRC);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&V4_DST);
    f.resize(60, 0);
    f
}

/// An 802.3 frame (length field instead of an ethertype), LLC/STP.
fn ieee8023() -> Vec<u8> {
    let mut f = vec![0x01, 0x80, 0xc2, 0, 0, 0];
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&38u16.to_be_bytes());
    f.extend_from_slice(&[0x42, 0x42, 0x03]);
    f.resize(60, 0);
    f
}

/// `frame` with VLAN tags (outermost first) inserted after the MACs.
fn tagged(frame: &[u8], tpids: &[u16]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (i, tpid) in tpids.iter().enumerate() {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&(100 + i as u16).to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}

const IPV4_AT: usize = 14;
const IPV6_AT: usize = 14;

/// IPv6 extension headers (the first byte is filled with the next header).
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AUTH: u8 = 51;
const DEST_OPTS: u8 = 60;

fn ext(kind: u8) -> Vec<u8> {
    match kind {
        // PadN over the 6 option bytes.
        HOP_BY_HOP | DEST_OPTS => vec![0, 0, 1, 4, 0, 0, 0, 0],
        // Type 0 is deprecated; segments left 0 means "ignore".
        ROUTING => vec![0, 0, 4, 0, 0, 0, 0, 0],
        // Offset 0, more fragments: the first fragment.
        FRAGMENT => vec![0, 0, 0, 1, 0, 0, 0x12, 0x34],
        // Payload length 1: (1 + 2) * 4 = 12 bytes.
        AUTH => vec![0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
        _ => unreachable!(),
    }
}

/// An IPv6 frame (no VLAN) with extension headers inserted after the fixed
/// header, chained, the payload length updated.
fn with_ext_headers(frame: &[u8], exts: &[Vec<u8>], kinds: &[u8]) -> Vec<u8> {
    assert_eq!(exts.len(), kinds.len());
    let l3 = IPV6_AT;
    let upper = frame[l3 + 6];
    let mut out = frame[..l3 + 40].to_vec();
    out[l3 + 6] = kinds.first().copied().unwrap_or(upper);
    let mut added = 0;
    for (i, e) in exts.iter().enumerate() {
        let mut e = e.clone();
        e[0] = kinds.get(i + 1).copied().unwrap_or(upper);
        added += e.len();
        out.extend_from_slice(&e);
    }
    out.extend_from_slice(&frame[l3 + 40..]);
    let plen = u16::from_be_bytes([out[l3 + 4], out[l3 + 5]]) + added as u16;
    out[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
    out
}

fn with_exts(frame: &[u8], kinds: &[u8]) -> Vec<u8> {
    let exts: Vec<Vec<u8>> = kinds.iter().map(|&k| ext(k)).collect();
    with_ext_headers(frame, &exts, kinds)
}

// ---------------------------------------------------------------------------
// A minimal AF_XDP socket: enough for the XSKMAP to accept it

/// An AF_XDP socket with a UMEM and its rings set up but never bound or
/// mapped: the XSKMAP takes it, and in a test run a redirect to it is
/// decided by the map lookup alone.
struct XskStub {
    fd: OwnedFd,
    umem: *mut libc::c_void,
    len: usize,
}

impl XskStub {
    fn new() -> XskStub {
        const FRAMES: u32 = 16;
        const FRAME: u32 = 2048;
        // SAFETY: plain syscalls with valid arguments; every result checked.
        unsafe {
            let raw = libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
            assert!(raw >= 0, "AF_XDP socket: {}", io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(raw);
            let len = (FRAMES * FRAME) as usize;
            let umem = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(umem, libc::MAP_FAILED, "mmap UMEM");
            let reg = libc::xdp_umem_reg {
                addr: umem as u64,
                len: len as u64,
                chunk_size: FRAME,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            let set = |opt: libc::c_int, val: *const libc::c_void, size: usize, what: &str| {
                let r = libc::setsockopt(raw, libc::SOL_XDP, opt, val, size as libc::socklen_t);
                assert_eq!(r, 0, "setsockopt {what}: {}", io::Error::last_os_error());
            };
            set(
                libc::XDP_UMEM_REG,
                (&reg as *const libc::xdp_umem_reg).cast(),
                std::mem::size_of::<libc::xdp_umem_reg>(),
                "XDP_UMEM_REG",
            );
            let n: u32 = FRAMES;
            let np = (&n as *const u32).cast();
            set(libc::XDP_UMEM_FILL_RING, np, 4, "XDP_UMEM_FILL_RING");
            set(
                libc::XDP_UMEM_COMPLETION_RING,
                np,
                4,
                "XDP_UMEM_COMPLETION_RING",
            );
            set(libc::XDP_RX_RING, np, 4, "XDP_RX_RING");
            XskStub { fd, umem, len }
        }
    }
}

impl Drop for XskStub {
    fn drop(&mut self) {
        // SAFETY: `umem` is the mapping made in `new`, of `len` bytes; the
        // socket (closed after this) holds its own pin on the pages.
        unsafe {
            libc::munmap(self.umem, self.len);
        }
    }
}

// ---------------------------------------------------------------------------
// Classification: every kind of TCP frame, every encapsulation

/// Every encapsulation the parsers accept, for a TCP frame with `flags`.
fn encapsulations(flags: u8) -> Vec<(String, Vec<u8>)> {
    let v4 = tcp(Family::V4, flags);
    let v6 = tcp(Family::V6, flags);
    vec![
        ("IPv4".into(), v4.clone()),
        ("IPv6".into(), v6.clone()),
        ("802.1Q IPv4".into(), tagged(&v4, &[0x8100])),
        ("802.1Q IPv6".into(), tagged(&v6, &[0x8100])),
        ("QinQ 802.1ad IPv4".into(), tagged(&v4, &[0x88a8, 0x8100])),
        ("QinQ 0x9100 IPv6".into(), tagged(&v6, &[0x9100, 0x8100])),
        (
            "IPv6 hop-by-hop, dest opts".into(),
            with_exts(&v6, &[HOP_BY_HOP, DEST_OPTS]),
        ),
        (
            "IPv6 routing, first fragment, AH".into(),
            with_exts(&v6, &[ROUTING, FRAGMENT, AUTH]),
        ),
        (
            "IPv6 eight extension headers (the most walked)".into(),
            with_exts(
                &v6,
                &[
                    HOP_BY_HOP, DEST_OPTS, ROUTING, AUTH, FRAGMENT, DEST_OPTS, AUTH, DEST_OPTS,
                ],
            ),
        ),
        ("IPv4 with payload".into(), {
            tcp_from(Family::V4, default_src(Family::V4), flags, &[7; 100])
        }),
    ]
}

#[test]
fn tcp_flag_classes_in_every_encapsulation() {
    let inline = inline();
    let tap = tap();
    for &(flags, class, name) in FLAG_CASES {
        for (encap, frame) in encapsulations(flags) {
            let what = format!("{name} over {encap}");
            assert_eq!(userspace(&frame), Class::tcp(class), "userspace: {what}");
            // No socket registered: inline fails open to the peer, tap drops.
            expect(
                &inline,
                &frame,
                action::REDIRECT,
                Class::tcp(class),
                "bypassed",
                &what,
            );
            expect(
                &tap,
                &frame,
                action::DROP,
                Class::tcp(class),
                "bypassed",
                &what,
            );
        }
    }
    for p in [&inline, &tap] {
        let c = p.counters().unwrap();
        assert_eq!(c.packets(), c.verdicts(), "{c:?}");
        assert_eq!(c.tcp(), c.packets());
    }
}

#[test]
fn tcp_goes_to_the_socket_of_its_queue() {
    for p in [inline(), tap()] {
        let xsk = XskStub::new();
        p.register_xsk(0, xsk.fd.as_raw_fd())
            .expect("register an AF_XDP socket for queue 0");
        for family in [Family::V4, Family::V6] {
            let frame = tcp(family, RST | ACK);
            expect(
                &p,
                &frame,
                action::REDIRECT,
                Class::tcp(FlagClass::RstAck),
                "to_xsk",
                "TCP with a socket on its queue",
            );
        }
        // Non-TCP never goes to the socket.
        let r = run(&p, &udp_from(default_src(Family::V4)));
        assert_eq!(r.class, Class::NonTcp);
        assert_ne!(r.verdict, "to_xsk");

        // The daemon goes away: the socket closes, the kernel empties the
        // slot, and TCP fails open again.
        drop(xsk);
        let frame = tcp(Family::V4, SYN);
        assert_eq!(
            run(&p, &frame).verdict,
            "bypassed",
            "after the socket closed"
        );

        // Explicit unregistering does the same.
        let xsk = XskStub::new();
        p.register_xsk(0, xsk.fd.as_raw_fd()).unwrap();
        assert_eq!(run(&p, &frame).verdict, "to_xsk");
        p.unregister_xsk(0).unwrap();
        assert_eq!(run(&p, &frame).verdict, "bypassed", "after unregister");
        p.unregister_xsk(0)
            .expect("unregistering an empty queue is fine");
    }
}

#[test]
fn queue_numbers_are_checked() {
    let p = tap();
    let xsk = XskStub::new();
    let err = p.register_xsk(256, xsk.fd.as_raw_fd()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "RX queue 256 is beyond the 256 queues the `xsks` map holds"
    );
    let err = p.register_xsk(3, 0).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("map `xsks`: registering socket fd 0 for queue 3:"),
        "{err}"
    );
    let err = p.run(&tcp(Family::V4, SYN), 2).unwrap_err();
    assert!(
        matches!(err, BpfError::TestQueueWithoutInterface { queue: 2 }),
        "{err}"
    );
    let err = p.run(&[0u8; 13], 0).unwrap_err();
    assert!(matches!(err, BpfError::FrameTooShort { len: 13 }), "{err}");
}

// ---------------------------------------------------------------------------
// Non-TCP

fn non_tcp_frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut later4 = tcp(Family::V4, SYN);
    // Fragment offset 185 (x8 bytes), no MF: a later fragment of TCP.
    later4[IPV4_AT + 6..IPV4_AT + 8].copy_from_slice(&185u16.to_be_bytes());
    let v6 = tcp(Family::V6, RST);
    let later6 = with_ext_headers(
        &v6,
        &[vec![0, 0, 0x05, 0xc8, 0, 0, 0x12, 0x34]], // offset 185, M=0
        &[FRAGMENT],
    );
    let mut no_next = udp_from(default_src(Family::V6));
    no_next[IPV6_AT + 6] = 59; // No Next Header
    vec![
        ("UDP over IPv4", udp_from(default_src(Family::V4))),
        ("UDP over IPv6", udp_from(default_src(Family::V6))),
        ("ICMP echo", icmp4()),
        ("ARP", arp()),
        ("802.3/LLC", ieee8023()),
        (
            "UDP in QinQ",
            tagged(&udp_from(default_src(Family::V4)), &[0x88a8, 0x8100]),
        ),
        ("IPv4 later fragment of TCP", later4),
        ("IPv6 later fragment of TCP", later6),
        ("IPv6 no next header", no_next),
        (
            "UDP after IPv6 extension headers",
            with_exts(&udp_from(default_src(Family::V6)), &[HOP_BY_HOP, DEST_OPTS]),
        ),
    ]
}

#[test]
fn non_tcp_is_forwarded_inline_and_dropped_on_a_tap() {
    let inline = inline();
    let tap = tap();
    let xsk = XskStub::new();
    inline.register_xsk(0, xsk.fd.as_raw_fd()).unwrap();
    tap.register_xsk(0, xsk.fd.as_raw_fd()).unwrap();
    for (what, frame) in non_tcp_frames() {
        assert_eq!(userspace(&frame), Class::NonTcp, "userspace: {what}");
        expect(
            &inline,
            &frame,
            action::REDIRECT,
            Class::NonTcp,
            "forwarded",
            what,
        );
        expect(
            &tap,
            &frame,
            action::DROP,
            Class::NonTcp,
            "tap_dropped",
            what,
        );
    }
}

// ---------------------------------------------------------------------------
// Deny and block lists

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn denied_sources_are_dropped_in_the_kernel() {
    for p in [inline(), tap()] {
        let v4 = ip("198.18.0.1");
        let v6 = ip("2001:2::1");
        let frames = |src: IpAddr| {
            let family = if src.is_ipv4() {
                Family::V4
            } else {
                Family::V6
            };
            [tcp_from(family, src, SYN, &[]), udp_from(src)]
        };
        // Host bits in the network are ignored.
        p.deny_insert("198.18.0.77/24".parse().unwrap()).unwrap();
        p.deny_insert("2001:2::/48".parse().unwrap()).unwrap();
        for src in [v4, v6] {
            for f in frames(src) {
                let r = run(&p, &f);
                assert_eq!(
                    (action::name(r.action), r.verdict),
                    ("XDP_DROP", "deny_dropped"),
                    "from {src}"
                );
                // Still classified: the class counters see every frame.
                assert_eq!(r.class, userspace(&f));
            }
        }
        // Outside the prefixes: not denied.
        for src in [ip("198.18.1.1"), ip("198.19.7.7"), ip("2001:2:1::1")] {
            let family = if src.is_ipv4() {
                Family::V4
            } else {
                Family::V6
            };
            let r = run(&p, &tcp_from(family, src, SYN, &[]));
            assert_ne!(r.verdict, "deny_dropped", "from {src}");
        }
        // An IPv4 entry does not match IPv6 sources that are not v4-mapped,
        // and a /32 works.
        p.deny_insert("198.19.7.7/32".parse().unwrap()).unwrap();
        assert_eq!(
            run(&p, &tcp_from(Family::V4, IpAddr::from(V4_OTHER), SYN, &[])).verdict,
            "deny_dropped"
        );
        assert_ne!(
            run(&p, &tcp_from(Family::V6, IpAddr::from(V6_OTHER), SYN, &[])).verdict,
            "deny_dropped"
        );
        // Removal, and removing what is not there.
        p.deny_remove("198.18.0.0/24".parse().unwrap()).unwrap();
        p.deny_remove("2001:2::/48".parse().unwrap()).unwrap();
        p.deny_remove("2001:2::/48".parse().unwrap()).unwrap();
        for src in [v4, v6] {
            for f in frames(src) {
                assert_ne!(run(&p, &f).verdict, "deny_dropped", "removed: {src}");
            }
        }
        // Non-IP has no source to deny.
        p.deny_insert("::/0".parse().unwrap()).unwrap();
        assert_ne!(run(&p, &arp()).verdict, "deny_dropped");
        // ::/0 covers the v4-mapped space, so IPv4 too (documented).
        assert_eq!(run(&p, &udp_from(v4)).verdict, "deny_dropped");
    }
}

#[test]
fn blocked_sources_are_dropped_until_they_expire() {
    for p in [inline(), tap()] {
        let v4 = ip("198.18.0.1");
        let v6 = ip("2001:2::1");
        p.block_insert(v4, Duration::from_secs(3600)).unwrap();
        p.block_insert(v6, Duration::from_secs(3600)).unwrap();
        for (src, family) in [(v4, Family::V4), (v6, Family::V6)] {
            for f in [tcp_from(family, src, RST, &[]), udp_from(src)] {
                let r = run(&p, &f);
                assert_eq!(
                    (action::name(r.action), r.verdict),
                    ("XDP_DROP", "block_dropped"),
                    "from {src}"
                );
            }
        }
        // Another source is not blocked.
        let other = tcp_from(Family::V4, IpAddr::from(V4_OTHER), RST, &[]);
        assert_ne!(run(&p, &other).verdict, "block_dropped");

        // An expiry in the past counts as absent, and the program deletes it.
        let now = monotonic_now_ns().unwrap();
        p.block_insert_until(v6, now - 1_000_000_000).unwrap();
        assert!(p.block_expiry(v6).unwrap().is_some());
        let r = run(&p, &tcp_from(Family::V6, v6, RST, &[]));
        assert_ne!(r.verdict, "block_dropped", "expired block");
        assert_eq!(p.block_expiry(v6).unwrap(), None, "the program deletes it");
        // A zero TTL expires at once.
        p.block_insert(v6, Duration::ZERO).unwrap();
        assert_ne!(run(&p, &udp_from(v6)).verdict, "block_dropped");

        // The expiry is on the program's clock: now + ttl.
        let before = monotonic_now_ns().unwrap();
        p.block_insert(v4, Duration::from_secs(60)).unwrap();
        let expiry = p.block_expiry(v4).unwrap().expect("blocked");
        let after = monotonic_now_ns().unwrap();
        assert!(
            (before + 60_000_000_000..=after + 60_000_000_000).contains(&expiry),
            "{before} {expiry} {after}"
        );

        p.block_remove(v4).unwrap();
        p.block_remove(v4)
            .expect("removing what is not there is fine");
        assert_ne!(run(&p, &udp_from(v4)).verdict, "block_dropped");
    }
}

#[test]
fn deny_and_block_apply_before_the_socket() {
    let p = inline();
    let xsk = XskStub::new();
    p.register_xsk(0, xsk.fd.as_raw_fd()).unwrap();
    let f = tcp(Family::V4, SYN);
    assert_eq!(run(&p, &f).verdict, "to_xsk");
    p.block_insert(default_src(Family::V4), Duration::from_secs(60))
        .unwrap();
    assert_eq!(run(&p, &f).verdict, "block_dropped");
    p.deny_insert("198.18.0.1/32".parse().unwrap()).unwrap();
    assert_eq!(run(&p, &f).verdict, "deny_dropped", "deny is checked first");
}

// ---------------------------------------------------------------------------
// Malformed and truncated frames

/// Frames the userspace parser rejects, each with why.
fn malformed_frames() -> Vec<(&'static str, Vec<u8>)> {
    let v4 = tcp(Family::V4, RST);
    let v6 = tcp(Family::V6, RST);
    let mut out = Vec::new();

    let mut f = v4.clone();
    f[IPV4_AT] = 0x44; // IHL 4: 16 bytes
    out.push(("IPv4 IHL below 5", f));
    let mut f = v4.clone();
    f[IPV4_AT] = 0x4f; // IHL 15: 60 bytes, past the frame's 54
    f.truncate(IPV4_AT + 40);
    out.push(("IPv4 IHL past the data", f));
    let mut f = v4.clone();
    f[IPV4_AT + 2..IPV4_AT + 4].copy_from_slice(&19u16.to_be_bytes());
    out.push(("IPv4 total length below the header", f));
    let mut f = v4.clone();
    f[IPV4_AT] = 0x65;
    out.push(("version 6 under ethertype IPv4", f));
    let mut f = v6.clone();
    f[IPV6_AT] = 0x45;
    out.push(("version 4 under ethertype IPv6", f));
    let mut f = v4.clone();
    // Total length leaves 10 TCP bytes; the rest is link padding.
    f[IPV4_AT + 2..IPV4_AT + 4].copy_from_slice(&30u16.to_be_bytes());
    out.push(("IPv4 total length cuts TCP before its flags", f));
    let mut f = v6.clone();
    f[IPV6_AT + 4..IPV6_AT + 6].copy_from_slice(&13u16.to_be_bytes());
    out.push(("IPv6 payload length cuts TCP before its flags", f));
    let mut f = v4.clone();
    f[IPV4_AT + 20 + 12] = 4 << 4;
    out.push(("TCP data offset 4", f));
    out.push(("three VLAN tags", tagged(&v4, &[0x88a8, 0x8100, 0x8100])));
    out.push((
        "nine IPv6 extension headers",
        with_exts(&v6, &[DEST_OPTS; 9]),
    ));
    let mut f = with_exts(&v6, &[DEST_OPTS]);
    f[IPV6_AT + 40 + 1] = 200; // 1608 bytes, far past the frame
    out.push(("IPv6 extension header past the data", f));
    let mut f = with_exts(&v6, &[HOP_BY_HOP, AUTH]);
    f[IPV6_AT + 40 + 8 + 1] = 100; // AH of 408 bytes
    out.push(("IPv6 AH past the data", f));
    let mut f = tagged(&v4, &[0x8100]);
    f.truncate(16);
    out.push(("VLAN tag cut short", f));
    out.push(("IPv4 header cut short", v4[..IPV4_AT + 19].to_vec()));
    out.push(("IPv6 header cut short", v6[..IPV6_AT + 39].to_vec()));
    out
}

#[test]
fn malformed_frames_are_dropped_and_never_reach_the_socket() {
    for p in [inline(), tap()] {
        let xsk = XskStub::new();
        p.register_xsk(0, xsk.fd.as_raw_fd()).unwrap();
        for (what, frame) in malformed_frames() {
            assert_eq!(userspace(&frame), Class::Malformed, "userspace: {what}");
            expect(
                &p,
                &frame,
                action::DROP,
                Class::Malformed,
                "malformed_dropped",
                what,
            );
        }
        // And the near misses are not malformed: exactly eight extension
        // headers, and a total length of 0 (TSO) or payload length 0 (BIG
        // TCP), which mean "what was captured".
        let mut tso = tcp(Family::V4, RST);
        tso[IPV4_AT + 2..IPV4_AT + 4].copy_from_slice(&0u16.to_be_bytes());
        let mut big = tcp(Family::V6, RST);
        big[IPV6_AT + 4..IPV6_AT + 6].copy_from_slice(&0u16.to_be_bytes());
        for (what, frame) in [
            (
                "eight extension headers",
                with_exts(&tcp(Family::V6, RST), &[DEST_OPTS; 8]),
            ),
            ("IPv4 total length 0", tso),
            ("IPv6 payload length 0", big),
        ] {
            assert_eq!(
                userspace(&frame),
                Class::tcp(FlagClass::Rst),
                "userspace: {what}"
            );
            expect(
                &p,
                &frame,
                action::REDIRECT,
                Class::tcp(FlagClass::Rst),
                "to_xsk",
                what,
            );
        }
    }
}

/// Cut at every length: wherever the userspace parser no longer finds the
/// flags byte, the program must not count TCP nor hand the frame to the
/// socket; where it still does (the cut is past the flags), both agree.
#[test]
fn truncated_frames_never_count_as_tcp() {
    let p = inline();
    let xsk = XskStub::new();
    p.register_xsk(0, xsk.fd.as_raw_fd()).unwrap();
    let mut frames = Vec::new();
    for (encap, frame) in encapsulations(SYN | ACK) {
        frames.push((encap, frame));
    }
    frames.push(("IPv4 with options".into(), {
        // IHL 6 with a 4-byte NOP option block, then TCP.
        let f = tcp(Family::V4, FIN);
        let mut g = f[..IPV4_AT + 20].to_vec();
        g[IPV4_AT] = 0x46;
        let total = u16::from_be_bytes([g[IPV4_AT + 2], g[IPV4_AT + 3]]) + 4;
        g[IPV4_AT + 2..IPV4_AT + 4].copy_from_slice(&total.to_be_bytes());
        g.extend_from_slice(&[1, 1, 1, 0]);
        g.extend_from_slice(&f[IPV4_AT + 20..]);
        g
    }));
    let mut cuts = 0;
    for (encap, frame) in &frames {
        for len in MIN_TEST_FRAME..frame.len() {
            let cut = &frame[..len];
            let expected = userspace(cut);
            let r = run(&p, cut);
            assert_eq!(r.class, expected, "{encap} cut to {len} bytes");
            if !expected.is_tcp() {
                assert_ne!(r.verdict, "to_xsk", "{encap} cut to {len} bytes");
                if expected == Class::Malformed {
                    assert_eq!(r.action, action::DROP, "{encap} cut to {len} bytes");
                }
            }
            cuts += 1;
        }
        // Cut before the flags byte is always short of TCP.
        let tcp_at = frame.len() - 20 - if encap.contains("payload") { 100 } else { 0 };
        for len in MIN_TEST_FRAME..tcp_at + 14 {
            assert!(!userspace(&frame[..len]).is_tcp(), "{encap} cut to {len}");
        }
    }
    assert!(cuts > 500, "{cuts} cuts");
}

// ---------------------------------------------------------------------------
// The corpus: the program and the userspace parser agree on every frame

#[derive(Default)]
struct Tally {
    files: usize,
    frames: u64,
    ethernet: u64,
    too_short: u64,
    too_long: u64,
    by_class: BTreeMap<Class, u64>,
}

/// Every Ethernet frame of the pcap corpus through the XDP program and
/// through `wire::parse` + `FlagClass::of`: per file, the same count in
/// every flag class, non-TCP and malformed. On a difference the offending
/// frames are found one by one and listed.
///
/// Frames under 14 bytes are skipped (BPF_PROG_TEST_RUN refuses them; the
/// parser calls them truncated, and no NIC delivers them), and so are frames
/// longer than a test run takes in one buffer (the program is not
/// multi-buffer aware; such MTUs cannot carry it attached either). Both are
/// counted and printed.
#[test]
fn corpus_classes_match_the_userspace_parser() {
    let p = tap();
    let corpus = rstwall_tests::corpus_dir();
    let tsv = std::fs::read_to_string(corpus.join("expected.tsv")).expect("expected.tsv");
    let files: Vec<String> = tsv
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect();
    assert!(files.len() > 900, "{} corpus files", files.len());

    let mut tally = Tally::default();
    let mut mismatches: Vec<String> = Vec::new();
    for file in &files {
        let path = corpus.join(file);
        let Ok(mut reader) = CaptureReader::open(&path) else {
            continue; // the corpus test covers files that do not open
        };
        tally.files += 1;
        let mut frames: Vec<Vec<u8>> = Vec::new();
        while let Ok(Some(frame)) = reader.next_frame() {
            tally.frames += 1;
            if frame.link == Some(LinkType::Ethernet) {
                frames.push(frame.data.to_vec());
            }
        }
        if frames.is_empty() {
            continue;
        }
        let before = p.counters().unwrap();
        let mut expected: BTreeMap<Class, u64> = BTreeMap::new();
        let mut ran = Vec::new();
        for f in &frames {
            tally.ethernet += 1;
            if f.len() < MIN_TEST_FRAME {
                tally.too_short += 1;
                continue;
            }
            match p.run(f, 0) {
                Ok(_) => {}
                // Past one page the kernel builds a multi-buffer frame,
                // up to MAX_SKB_FRAGS pages, or refuses.
                Err(BpfError::TestRun(Errno(libc::EINVAL | libc::ENOMEM))) if f.len() > 3000 => {
                    tally.too_long += 1;
                    continue;
                }
                Err(e) => panic!("{file}: test run of a {}-byte frame: {e}", f.len()),
            }
            *expected.entry(userspace(f)).or_default() += 1;
            ran.push(f);
        }
        let d = p.counters().unwrap().since(&before);
        let mut got: BTreeMap<Class, u64> = BTreeMap::new();
        for c in FlagClass::ALL {
            got.insert(Class::tcp(c), d.flag_class(c));
        }
        got.insert(Class::NonTcp, d.non_tcp);
        got.insert(Class::Malformed, d.malformed);
        got.retain(|_, v| *v != 0);
        for (class, n) in &expected {
            *tally.by_class.entry(*class).or_default() += n;
        }
        if got != expected {
            // Find the frames.
            let mut which = Vec::new();
            for (i, f) in ran.iter().enumerate() {
                let r = run(&p, f);
                let u = userspace(f);
                if r.class != u && which.len() < 5 {
                    which.push(format!(
                        "#{i} ({} bytes): xdp {:?}, userspace {u:?}",
                        f.len(),
                        r.class
                    ));
                }
            }
            mismatches.push(format!(
                "{file}: xdp {got:?} vs userspace {expected:?}; {}",
                which.join("; ")
            ));
        }
    }
    eprintln!(
        "corpus differential: {} files, {} frames, {} Ethernet, skipped {} under 14 bytes \
         and {} too long for a test run; classes {:?}",
        tally.files, tally.frames, tally.ethernet, tally.too_short, tally.too_long, tally.by_class
    );
    assert!(
        mismatches.is_empty(),
        "{} files where the XDP program and wire::parse disagree:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(
        tally.ethernet > 10_000,
        "{} Ethernet frames",
        tally.ethernet
    );
    let tcp: u64 = tally
        .by_class
        .iter()
        .filter(|(c, _)| c.is_tcp())
        .map(|(_, n)| n)
        .sum();
    assert!(tcp > 1000, "{tcp} TCP frames in the corpus");
    assert!(
        tally.too_long * 100 < tally.ethernet,
        "too many frames skipped"
    );
}

// ---------------------------------------------------------------------------
// Attached to veth pairs in private namespaces

/// A network namespace (rstwall-netlab's guard) that is removed with its
/// interfaces when dropped, also when the test fails. IPv6 is off in it:
/// no autoconfiguration chatter (router and neighbour solicitations, MLD)
/// on its interfaces, since the forwarding test counts packets.
struct Netns {
    ns: Arc<rstwall_netlab::Netns>,
    _guard: Namespaces,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        require_root();
        let mut guard = Namespaces::unique(&format!("bpf-{tag}"));
        let ns = guard.add("x").expect("network namespace");
        Netns { ns, _guard: guard }
    }

    /// `ip -n <ns> args...`, which must succeed.
    #[track_caller]
    fn ip(&self, args: &[&str]) -> String {
        self.ns.ip(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A veth pair inside the namespace; `extra` goes to `a`'s end only.
    fn veth(&self, a: &str, b: &str, extra: &[&str]) {
        let mut args = vec!["link", "add", a];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["type", "veth", "peer", "name", b]);
        self.ip(&args);
        self.ip(&["link", "set", a, "up"]);
        self.ip(&["link", "set", b, "up"]);
    }

    /// XDP programs on `dev` as `ip -j link` reports them: (mode, id), mode
    /// 1 = driver, 2 = generic, 3 = offload.
    fn xdp_on(&self, dev: &str) -> Vec<(u64, u64)> {
        let out = self.ip(&["-j", "link", "show", "dev", dev]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
        let link = &v[0];
        let xdp = &link["xdp"];
        if xdp.is_null() {
            return Vec::new();
        }
        if let Some(all) = xdp["attached"].as_array() {
            return all
                .iter()
                .map(|a| {
                    (
                        a["mode"].as_u64().unwrap_or(0),
                        a["prog"]["id"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
        }
        vec![(
            xdp["mode"].as_u64().unwrap_or(0),
            xdp["prog"]["id"].as_u64().unwrap_or(0),
        )]
    }

    fn rx_packets(&self, dev: &str) -> u64 {
        let out = self.ip(&["-j", "-s", "link", "show", "dev", dev]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
        v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .expect("rx packets")
    }

    fn mac(&self, dev: &str) -> String {
        let out = self.ip(&["-j", "link", "show", "dev", dev]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j output");
        v[0]["address"].as_str().expect("address").to_string()
    }

    /// Run `f` inside the namespace (its panic is the test's).
    fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        self.ns.run(f).unwrap_or_else(|e| panic!("{e}"))
    }
}

#[track_caller]
fn ifindex(dev: &str) -> u32 {
    rstwall_netlab::netns::ifindex(dev).unwrap_or_else(|e| panic!("{e}"))
}

/// A trivial XDP_PASS program named `foreign_xdp`: someone else's program.
fn foreign_program() -> OwnedFd {
    use libbpf_rs::libbpf_sys as sys;
    // r0 = XDP_PASS; exit
    let insns: [u64; 2] = [
        u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]),
        u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
    ];
    let name = c"foreign_xdp";
    let license = c"GPL";
    // SAFETY: valid instruction array and strings; null opts.
    let fd = unsafe {
        sys::bpf_prog_load(
            sys::BPF_PROG_TYPE_XDP,
            name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr().cast(),
            insns.len() as _,
            std::ptr::null_mut(),
        )
    };
    assert!(fd >= 0, "load the foreign program: {}", Errno(-fd));
    // SAFETY: a fresh fd we own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[test]
fn attach_replaces_and_detach_leaves_nothing() {
    let ns = Netns::new("attach");
    ns.veth("rwa0", "rwa1", &["numrxqueues", "4"]);
    ns.veth("rwb0", "rwb1", &[]);
    ns.enter(|| {
        let peer = ifindex("rwb0");
        let role = PortRole::Inline { peer_ifindex: peer };

        // Native attach on veth, and it shows.
        let first = PortProgram::attach("rwa0", role, XdpMode::Native, false).expect("attach");
        assert_eq!(first.attached_mode(), AttachedMode::Native);
        assert_eq!(first.ifindex(), ifindex("rwa0"));
        assert_eq!(ns.xdp_on("rwa0"), vec![(1, u64::from(first.prog_id()))]);

        // A second attach (a restarted daemon) replaces, never stacks.
        let second = PortProgram::attach("rwa0", role, XdpMode::Auto, false).expect("re-attach");
        assert_eq!(second.attached_mode(), AttachedMode::Native, "auto on veth");
        assert_ne!(second.prog_id(), first.prog_id());
        assert_eq!(ns.xdp_on("rwa0"), vec![(1, u64::from(second.prog_id()))]);
        // Detaching the replaced one leaves the new one alone.
        first.detach().expect("detach the replaced program");
        assert_eq!(ns.xdp_on("rwa0"), vec![(1, u64::from(second.prog_id()))]);

        // Across modes: generic replaces native (the kernel runs one mode).
        let third =
            PortProgram::attach("rwa0", role, XdpMode::Generic, false).expect("attach generic");
        assert_eq!(third.attached_mode(), AttachedMode::Generic);
        assert_eq!(ns.xdp_on("rwa0"), vec![(2, u64::from(third.prog_id()))]);
        drop(second);
        assert_eq!(ns.xdp_on("rwa0"), vec![(2, u64::from(third.prog_id()))]);

        // Detach leaves nothing; so does drop.
        third.detach().expect("detach");
        assert_eq!(ns.xdp_on("rwa0"), vec![]);
        let fourth = PortProgram::attach("rwa0", PortRole::Tap, XdpMode::Auto, false).unwrap();
        assert_eq!(ns.xdp_on("rwa0").len(), 1);
        drop(fourth);
        assert_eq!(ns.xdp_on("rwa0"), vec![]);

        // A program left behind is found by name and removed.
        let left = PortProgram::attach("rwa0", role, XdpMode::Native, false).unwrap();
        let left_id = left.prog_id();
        left.leave_attached();
        assert_eq!(ns.xdp_on("rwa0"), vec![(1, u64::from(left_id))]);
        assert!(detach_stale("rwa0").expect("detach_stale"));
        assert_eq!(ns.xdp_on("rwa0"), vec![]);
        assert!(!detach_stale("rwa0").unwrap(), "nothing left to remove");

        // Someone else's program: refused, unless told to replace it.
        let foreign = foreign_program();
        libbpf_rs::Xdp::new(foreign.as_fd())
            .attach(ifindex("rwb1") as i32, libbpf_rs::XdpFlags::DRV_MODE)
            .expect("attach the foreign program");
        let err = PortProgram::attach("rwb1", PortRole::Tap, XdpMode::Auto, false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("rwb1 already runs a foreign XDP program `foreign_xdp` (id "),
            "{err}"
        );
        assert!(
            !detach_stale("rwb1").unwrap(),
            "foreign programs are left alone"
        );
        assert_eq!(ns.xdp_on("rwb1").len(), 1);
        let ours = PortProgram::attach("rwb1", PortRole::Tap, XdpMode::Auto, true)
            .expect("replace the foreign program");
        assert_eq!(ns.xdp_on("rwb1"), vec![(1, u64::from(ours.prog_id()))]);
        ours.detach().unwrap();
        assert_eq!(ns.xdp_on("rwb1"), vec![]);

        // A device without driver-mode XDP (the namespace's loopback):
        // native is refused with the kernel's reason, auto falls back.
        ns.ip(&["link", "set", "lo", "up"]);
        let err = PortProgram::attach("lo", PortRole::Tap, XdpMode::Native, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "attaching XDP to lo in native mode: Operation not supported"
        );
        assert_eq!(ns.xdp_on("lo"), vec![]);
        let lo = PortProgram::attach("lo", PortRole::Tap, XdpMode::Auto, false).expect("auto");
        assert_eq!(lo.attached_mode(), AttachedMode::Generic);
        assert_eq!(ns.xdp_on("lo"), vec![(2, u64::from(lo.prog_id()))]);
        lo.detach().unwrap();
        assert_eq!(ns.xdp_on("lo"), vec![]);

        // Errors name what went wrong.
        let err = PortProgram::attach("rw-nope0", PortRole::Tap, XdpMode::Auto, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no network interface named `rw-nope0`: No such device"
        );
        let own = ifindex("rwa0");
        let err = PortProgram::attach(
            "rwa0",
            PortRole::Inline { peer_ifindex: own },
            XdpMode::Auto,
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("is the port itself"), "{err}");
        let err = PortProgram::attach(
            "rwa0",
            PortRole::Inline {
                peer_ifindex: 999_999,
            },
            XdpMode::Auto,
            false,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("map `peer`: setting the peer port to ifindex 999999:"),
            "{err}"
        );
        assert_eq!(ns.xdp_on("rwa0"), vec![]);
    });
}

/// TCP on a queue without a socket fails open even when another queue has
/// one; and a peer port that disappears is counted, not crashed into.
#[test]
fn per_queue_sockets_and_a_vanished_peer() {
    let ns = Netns::new("queues");
    ns.veth("rwq0", "rwq1", &["numrxqueues", "4"]);
    ns.veth("rwp0", "rwp1", &[]);
    ns.enter(|| {
        let port = ifindex("rwq0");
        let p = TestProgram::load(PortRole::Inline {
            peer_ifindex: ifindex("rwp0"),
        })
        .unwrap();
        let xsk = XskStub::new();
        p.register_xsk(2, xsk.fd.as_raw_fd()).unwrap();
        let frame = tcp(Family::V4, RST);
        assert_eq!(run_on(&p, &frame, port, 2).verdict, "to_xsk");
        assert_eq!(run_on(&p, &frame, port, 0).verdict, "bypassed");
        assert_eq!(run_on(&p, &frame, port, 3).verdict, "bypassed");

        // The peer goes away: the kernel empties the DEVMAP slot.
        ns.ip(&["link", "del", "rwp0"]);
        let r = run_on(&p, &frame, port, 0);
        assert_eq!((r.action, r.verdict), (action::DROP, "peer_missing"));
        let r = run_on(&p, &arp(), port, 1);
        assert_eq!((r.action, r.verdict), (action::DROP, "peer_missing"));
        assert_eq!(run_on(&p, &frame, port, 2).verdict, "to_xsk");
    });
}

/// End to end: traffic sent into one veth leaves through the peer port's
/// veth, in the kernel, and keeps doing so after the loader let go of every
/// fd on the program — what a crashed daemon leaves (a bpf_link would have
/// taken the program with it). `leave_attached` closes every fd we hold,
/// so the kernel state afterwards is the same as after SIGKILL.
#[test]
fn inline_port_forwards_and_fails_open_without_the_daemon() {
    let ns = Netns::new("failopen");
    // a0 (sender) -- a1 [rstwall port] ==peer==> b1 [port] -- b0 (receiver)
    ns.veth("rwfa0", "rwfa1", &[]);
    ns.veth("rwfb0", "rwfb1", &[]);
    ns.ip(&["addr", "add", "198.18.0.1/24", "dev", "rwfa0"]);
    let b0_mac = ns.mac("rwfb0");
    ns.ip(&[
        "neigh",
        "add",
        "198.18.0.2",
        "lladdr",
        &b0_mac,
        "dev",
        "rwfa0",
        "nud",
        "permanent",
    ]);
    ns.enter(|| {
        let port = PortProgram::attach(
            "rwfa1",
            PortRole::Inline {
                peer_ifindex: ifindex("rwfb1"),
            },
            XdpMode::Generic,
            false,
        )
        .expect("attach");
        let send_udp = |n: usize| {
            let s = UdpSocket::bind("198.18.0.1:0").expect("bind in the namespace");
            for _ in 0..n {
                s.send_to(b"rstwall", "198.18.0.2:9").expect("send");
            }
        };
        let settle = || thread::sleep(Duration::from_millis(200));

        let rx0 = ns.rx_packets("rwfb0");
        let c0 = port.counters().unwrap();
        send_udp(10);
        // A TCP SYN: no socket serves the queue, so it is bypassed to the peer.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([198, 18, 0, 2], 443)),
            Duration::from_millis(100),
        );
        settle();
        let c = port.counters().unwrap().since(&c0);
        assert!(c.forwarded >= 10, "{c:?}");
        assert!(
            c.bypassed >= 1 && c.flag_class(FlagClass::Syn) >= 1,
            "{c:?}"
        );
        assert!(
            ns.rx_packets("rwfb0") >= rx0 + 11,
            "frames reached the peer side"
        );

        // The daemon dies: every fd closed, the program stays and forwards.
        port.leave_attached();
        let rx1 = ns.rx_packets("rwfb0");
        send_udp(10);
        settle();
        assert!(
            ns.rx_packets("rwfb0") >= rx1 + 10,
            "still forwarding with no process holding the program"
        );
        assert_eq!(ns.xdp_on("rwfa1").len(), 1);

        // Cleaned up by a restarted daemon; then nothing forwards.
        assert!(detach_stale("rwfa1").unwrap());
        let rx2 = ns.rx_packets("rwfb0");
        send_udp(10);
        settle();
        let arrived = ns.rx_packets("rwfb0") - rx2;
        assert!(arrived < 10, "no program, no forwarding: {arrived} arrived");
    });
}
