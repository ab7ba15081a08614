//! Building Ethernet/IPv4 and Ethernet/IPv6 TCP frames into a caller's
//! buffer, with valid IP and TCP checksums: the one place the bench makes
//! frames, for the engine benchmarks, the traffic of the live benchmarks
//! and `rstwall-bench gen` alike.
//!
//! The bench marks what it sends in the source MAC: [`marker_mac`] puts a
//! one-byte code after a fixed prefix, and the bench's sink counts frames
//! by that code (nothing on the path looks at a source MAC). A per-frame
//! tag that survives any forwarder — the IPv4 identification or the IPv6
//! flow label, which no checksum covers end to end — carries the latency
//! stamps ([`set_ip_tag`], [`ip_tag`]).

use std::net::{IpAddr, SocketAddr};

/// Shortest frame handed to software: 64 bytes on the wire less the 4-byte
/// FCS the NIC strips. Shorter frames are zero-padded up to it.
pub const MIN_FRAME_LEN: usize = 60;
/// Largest IP packet a frame carries (a 1500-byte MTU).
pub const MAX_IP_LEN: usize = 1500;
/// Longest frame [`TcpRepr::emit`] writes: 14 bytes of Ethernet and an IP
/// packet of [`MAX_IP_LEN`].
pub const MAX_FRAME_LEN: usize = ETH_LEN + MAX_IP_LEN;

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const TCP_LEN: usize = 20;
const PROTO_TCP: u8 = 6;
/// Hop limit of the bench's frames unless told otherwise.
pub const TTL: u8 = 64;

/// The bench's destination MAC (a locally administered address): the
/// frames of the benchmarks are handed from socket to socket, and what
/// receives them does not look at it.
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// The first five bytes of every source MAC [`marker_mac`] makes
/// (locally administered; "rwb").
pub const MARKER_PREFIX: [u8; 5] = [0x02, 0x72, 0x77, 0x62, 0x00];
/// In a marker code: the sink hands this frame on to its host's stack
/// instead of dropping it after counting.
pub const MARK_DELIVER: u8 = 0x80;

/// A source MAC that carries `code`: [`MARKER_PREFIX`] then `code`.
pub const fn marker_mac(code: u8) -> [u8; 6] {
    let p = MARKER_PREFIX;
    [p[0], p[1], p[2], p[3], p[4], code]
}

/// The marker code of a frame, if its source MAC is a [`marker_mac`].
pub fn marker_code(frame: &[u8]) -> Option<u8> {
    (frame.len() >= ETH_LEN && frame[6..11] == MARKER_PREFIX).then(|| frame[11])
}

/// What Linux puts in a SYN that fits a minimum-size frame: MSS 1460, NOP,
/// window scale 7 (timestamps and SACK-permitted would push an IPv4 SYN past
/// 64 bytes).
const SYN_OPTIONS: [u8; 8] = [2, 4, 0x05, 0xb4, 1, 3, 3, 7];
/// The shift [`SYN_OPTIONS`] announces.
pub const WINDOW_SHIFT: u8 = 7;

/// Request-looking bytes for data segments, repeated for longer payloads.
const PAYLOAD: &[u8; 16] = b"GET / HTTP/1.1\r\n";

/// Longest payload a segment can carry within [`MAX_IP_LEN`].
pub const fn max_payload(ipv6: bool, syn_options: bool) -> usize {
    MAX_FRAME_LEN - header_len(ipv6, syn_options)
}

const fn header_len(ipv6: bool, syn_options: bool) -> usize {
    let ip = if ipv6 { IPV6_LEN } else { IPV4_LEN };
    let options = if syn_options { SYN_OPTIONS.len() } else { 0 };
    ETH_LEN + ip + TCP_LEN + options
}

/// Length of the frame for a TCP segment: Ethernet, IP (IPv6 or IPv4
/// without options), TCP (with [`SYN_OPTIONS`] or none), payload, padded
/// to [`MIN_FRAME_LEN`].
pub const fn frame_len(ipv6: bool, syn_options: bool, payload_len: usize) -> usize {
    let len = header_len(ipv6, syn_options) + payload_len;
    if len < MIN_FRAME_LEN {
        MIN_FRAME_LEN
    } else {
        len
    }
}

/// One TCP segment to write as a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRepr {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Both ends of one address family.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification, or the low 16 bits of the IPv6 flow label.
    pub ip_id: u16,
    pub seq: u32,
    pub ack: u32,
    /// [`rstwall_engine::wire::TcpFlags`] bits (all nine: NS/AE, CWR,
    /// ECE, URG, ACK, PSH, RST, SYN, FIN).
    pub flags: u16,
    pub window: u16,
    /// Carry [`SYN_OPTIONS`].
    pub syn_options: bool,
    /// Bytes of payload, at most [`max_payload`].
    pub payload_len: u16,
}

impl TcpRepr {
    /// A segment from `src` to `dst` with `flags`, everything else zero or
    /// the bench's default (MACs, TTL).
    pub fn new(src: SocketAddr, dst: SocketAddr, flags: u16) -> TcpRepr {
        TcpRepr {
            src_mac: marker_mac(0),
            dst_mac: DST_MAC,
            src,
            dst,
            ttl: TTL,
            ip_id: 0,
            seq: 0,
            ack: 0,
            flags,
            window: 0,
            syn_options: false,
            payload_len: 0,
        }
    }

    fn ip_header_len(&self) -> usize {
        match self.src {
            SocketAddr::V4(_) => IPV4_LEN,
            SocketAddr::V6(_) => IPV6_LEN,
        }
    }

    fn tcp_len(&self) -> usize {
        let options = if self.syn_options {
            SYN_OPTIONS.len()
        } else {
            0
        };
        TCP_LEN + options + self.payload_len as usize
    }

    /// Length of the frame [`TcpRepr::emit`] writes, padding included.
    pub fn frame_len(&self) -> usize {
        frame_len(
            self.src.is_ipv6(),
            self.syn_options,
            self.payload_len.into(),
        )
    }

    /// Write the frame at the start of `buf` and return its length.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than [`TcpRepr::frame_len`], the payload is longer
    /// than [`max_payload`], or the two addresses are of different families.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        assert!(
            self.payload_len as usize <= max_payload(self.src.is_ipv6(), self.syn_options),
            "payload too long"
        );
        let len = self.frame_len();
        let buf = &mut buf[..len];
        buf.fill(0);
        buf[0..6].copy_from_slice(&self.dst_mac);
        buf[6..12].copy_from_slice(&self.src_mac);
        let tcp_at = ETH_LEN + self.ip_header_len();
        let tcp_len = self.tcp_len();
        self.emit_tcp(&mut buf[tcp_at..tcp_at + tcp_len]);
        let pseudo = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                buf[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                let ip = &mut buf[ETH_LEN..tcp_at];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&((IPV4_LEN + tcp_len) as u16).to_be_bytes());
                ip[4..6].copy_from_slice(&self.ip_id.to_be_bytes());
                ip[6] = 0x40; // don't fragment
                ip[8] = self.ttl;
                ip[9] = PROTO_TCP;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                let sum = checksum(ip, 0);
                ip[10..12].copy_from_slice(&sum.to_be_bytes());
                sum_words(&s.octets(), sum_words(&d.octets(), 0))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                buf[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
                let ip = &mut buf[ETH_LEN..tcp_at];
                ip[0] = 0x60;
                ip[2..4].copy_from_slice(&self.ip_id.to_be_bytes());
                ip[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
                ip[6] = PROTO_TCP;
                ip[7] = self.ttl;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                sum_words(&s.octets(), sum_words(&d.octets(), 0))
            }
            _ => panic!("source and destination of different address families"),
        };
        // Both pseudo-headers add the protocol and the TCP length.
        let pseudo = pseudo + u64::from(PROTO_TCP) + tcp_len as u64;
        let tcp = &mut buf[tcp_at..tcp_at + tcp_len];
        let sum = checksum(tcp, pseudo);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        len
    }

    /// The TCP header and payload, checksum zero.
    fn emit_tcp(&self, tcp: &mut [u8]) {
        tcp[0..2].copy_from_slice(&self.src.port().to_be_bytes());
        tcp[2..4].copy_from_slice(&self.dst.port().to_be_bytes());
        tcp[4..8].copy_from_slice(&self.seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&self.ack.to_be_bytes());
        let header_len = tcp.len() - self.payload_len as usize;
        tcp[12] = ((header_len / 4) as u8) << 4 | (self.flags >> 8) as u8 & 1;
        tcp[13] = self.flags as u8;
        tcp[14..16].copy_from_slice(&self.window.to_be_bytes());
        if self.syn_options {
            tcp[TCP_LEN..TCP_LEN + SYN_OPTIONS.len()].copy_from_slice(&SYN_OPTIONS);
        }
        for (b, p) in tcp[header_len..].iter_mut().zip(PAYLOAD.iter().cycle()) {
            *b = *p;
        }
    }
}

/// Write `tag` into a frame [`TcpRepr::emit`] wrote (or any untagged
/// Ethernet frame with an IPv4 or IPv6 header): the IPv4 identification,
/// with the header checksum updated, or the low 16 bits of the IPv6 flow
/// label. Returns false, changing nothing, for anything else.
pub fn set_ip_tag(frame: &mut [u8], tag: u16) -> bool {
    match ip_version(frame) {
        Some(4) => {
            let ihl = usize::from(frame[ETH_LEN] & 0x0f) * 4;
            if ihl < IPV4_LEN || frame.len() < ETH_LEN + ihl {
                return false;
            }
            let ip = &mut frame[ETH_LEN..ETH_LEN + ihl];
            ip[4..6].copy_from_slice(&tag.to_be_bytes());
            ip[10..12].fill(0);
            let sum = checksum(ip, 0);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            true
        }
        Some(6) => {
            frame[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&tag.to_be_bytes());
            true
        }
        _ => false,
    }
}

/// The tag [`set_ip_tag`] wrote.
pub fn ip_tag(frame: &[u8]) -> Option<u16> {
    let at = match ip_version(frame)? {
        4 => ETH_LEN + 4,
        _ => ETH_LEN + 2,
    };
    Some(u16::from_be_bytes([frame[at], frame[at + 1]]))
}

/// 4 or 6 for an untagged Ethernet frame long enough for that header.
fn ip_version(frame: &[u8]) -> Option<u8> {
    if frame.len() < ETH_LEN + IPV4_LEN {
        return None;
    }
    match (
        u16::from_be_bytes([frame[12], frame[13]]),
        frame[ETH_LEN] >> 4,
    ) {
        (0x0800, 4) => Some(4),
        (0x86dd, 6) if frame.len() >= ETH_LEN + IPV6_LEN => Some(6),
        _ => None,
    }
}

/// Sum of big-endian 16-bit words (odd tail padded with zero), unfolded.
fn sum_words(data: &[u8], acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    let mut acc = acc;
    for w in &mut chunks {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// The Internet checksum (RFC 1071) of `data`, starting from `acc`.
fn checksum(data: &[u8], acc: u64) -> u16 {
    let mut acc = sum_words(data, acc);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use rstwall_engine::wire::{self, LinkType, Parsed, TcpFlags};

    fn repr(src: &str, dst: &str, flags: u16, syn_options: bool, payload_len: u16) -> TcpRepr {
        TcpRepr {
            seq: 0xdead_beef,
            ack: 0x0102_0304,
            window: 502,
            syn_options,
            payload_len,
            ..TcpRepr::new(src.parse().unwrap(), dst.parse().unwrap(), flags)
        }
    }

    /// etherparse agrees on every field and on both checksums; so does
    /// rstwall's parser.
    pub(crate) fn check(r: &TcpRepr) -> Vec<u8> {
        let mut buf = [0xffu8; MAX_FRAME_LEN];
        let len = r.emit(&mut buf);
        assert_eq!(len, r.frame_len());
        let frame = buf[..len].to_vec();
        check_frame(&frame, r);
        frame
    }

    pub(crate) fn check_frame(frame: &[u8], r: &TcpRepr) {
        let p = SlicedPacket::from_ethernet(frame).unwrap();
        let eth = p.link.as_ref().and_then(|l| l.to_header()).unwrap();
        let etherparse::LinkHeader::Ethernet2(eth) = eth else {
            panic!("not Ethernet II")
        };
        assert_eq!(eth.source, r.src_mac);
        assert_eq!(eth.destination, r.dst_mac);
        let Some(TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("no TCP in {frame:02x?}")
        };
        assert_eq!(tcp.source_port(), r.src.port());
        assert_eq!(tcp.destination_port(), r.dst.port());
        assert_eq!(tcp.sequence_number(), r.seq);
        assert_eq!(tcp.acknowledgment_number(), r.ack);
        assert_eq!(tcp.window_size(), r.window);
        assert_eq!(tcp.payload().len(), r.payload_len as usize);
        let flags = [
            (TcpFlags::FIN, tcp.fin()),
            (TcpFlags::SYN, tcp.syn()),
            (TcpFlags::RST, tcp.rst()),
            (TcpFlags::PSH, tcp.psh()),
            (TcpFlags::ACK, tcp.ack()),
            (TcpFlags::URG, tcp.urg()),
            (TcpFlags::ECE, tcp.ece()),
            (TcpFlags::CWR, tcp.cwr()),
            (TcpFlags::NS, tcp.ns()),
        ];
        for (bit, set) in flags {
            assert_eq!(r.flags & bit != 0, set, "flag {bit:#x}");
        }
        let expected = match p.net.unwrap() {
            NetSlice::Ipv4(ip) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum());
                assert_eq!(h.identification, r.ip_id);
                assert_eq!(h.time_to_live, r.ttl);
                tcp.to_header()
                    .calc_checksum_ipv4(&h, tcp.payload())
                    .unwrap()
            }
            NetSlice::Ipv6(ip) => {
                let h = ip.header().to_header();
                assert_eq!(h.flow_label.value() as u16, r.ip_id);
                assert_eq!(h.hop_limit, r.ttl);
                tcp.to_header()
                    .calc_checksum_ipv6(&h, tcp.payload())
                    .unwrap()
            }
        };
        assert_eq!(tcp.checksum(), expected, "TCP checksum");

        let Ok(Parsed::Tcp(seg)) = wire::parse(LinkType::Ethernet, frame) else {
            panic!("rstwall does not parse {frame:02x?}")
        };
        assert_eq!(seg.flags, TcpFlags(r.flags));
        assert_eq!(seg.payload_len, r.payload_len as u32);
        if r.syn_options {
            assert_eq!(seg.options.window_scale, Some(WINDOW_SHIFT));
            assert_eq!(seg.options.mss, Some(1460));
        }
    }

    #[test]
    fn ipv4_frames_are_minimum_size() {
        let data = repr(
            "198.18.0.1:40000",
            "198.19.0.1:443",
            TcpFlags::ACK | TcpFlags::PSH,
            false,
            6,
        );
        assert_eq!(check(&data).len(), MIN_FRAME_LEN);
        let ack = repr(
            "198.18.0.1:40000",
            "198.19.0.1:443",
            TcpFlags::ACK,
            false,
            0,
        );
        let frame = check(&ack);
        assert_eq!(frame.len(), MIN_FRAME_LEN);
        assert!(frame[54..].iter().all(|&b| b == 0), "padding is zero");
        let syn = repr("198.18.0.1:40000", "198.19.0.1:443", TcpFlags::SYN, true, 0);
        assert_eq!(check(&syn).len(), 62);
    }

    #[test]
    fn ipv6_frames() {
        let syn = repr(
            "[2001:2:0:c::1]:40000",
            "[2001:2:0:5::1]:443",
            TcpFlags::SYN,
            true,
            0,
        );
        assert_eq!(check(&syn).len(), 82);
        let rst = repr(
            "[2001:2:0:5::1]:443",
            "[2001:2:0:c::1]:40000",
            TcpFlags::RST | TcpFlags::ACK,
            false,
            0,
        );
        assert_eq!(check(&rst).len(), 74);
        let data = repr(
            "[2001:2:0:c::1]:40000",
            "[2001:2:0:5::1]:443",
            TcpFlags::ACK,
            false,
            16,
        );
        assert_eq!(check(&data).len(), 90);
    }

    #[test]
    fn odd_payload_checksums() {
        for n in 0..=40 {
            check(&repr(
                "198.18.0.1:1",
                "198.19.0.1:2",
                TcpFlags::ACK,
                n % 2 == 0,
                n,
            ));
        }
    }

    #[test]
    fn every_flag_bit_ttl_and_id() {
        for bit in 0..9 {
            for (src, dst) in [
                ("198.18.0.1:1", "198.19.0.1:2"),
                ("[2001:2::1]:1", "[2001:2::2]:2"),
            ] {
                let r = TcpRepr {
                    ttl: 3 + bit as u8,
                    ip_id: 0xa5a5 ^ bit,
                    ..repr(src, dst, 1 << bit, false, 0)
                };
                check(&r);
            }
        }
        check(&repr("198.18.0.1:1", "198.19.0.1:2", 0x1ff, true, 3));
    }

    #[test]
    fn full_size_frames() {
        for (src, dst, ipv6) in [
            ("198.18.0.1:1", "198.19.0.1:2", false),
            ("[2001:2::1]:1", "[2001:2::2]:2", true),
        ] {
            for syn in [false, true] {
                let max = max_payload(ipv6, syn) as u16;
                let r = repr(src, dst, TcpFlags::ACK, syn, max);
                assert_eq!(check(&r).len(), MAX_FRAME_LEN);
            }
        }
        assert_eq!(max_payload(false, false), 1460);
        assert_eq!(max_payload(true, false), 1440);
    }

    #[test]
    #[should_panic(expected = "payload too long")]
    fn oversized_payload_panics() {
        let r = repr("[2001:2::1]:1", "[2001:2::2]:2", TcpFlags::ACK, false, 1441);
        r.emit(&mut [0u8; 2 * MAX_FRAME_LEN]);
    }

    #[test]
    fn ip_tags_keep_every_checksum_valid() {
        for (src, dst) in [
            ("198.18.0.1:1", "198.19.0.1:2"),
            ("[2001:2::1]:1", "[2001:2::2]:2"),
        ] {
            let r = repr(src, dst, TcpFlags::ACK | TcpFlags::PSH, false, 6);
            let mut frame = check(&r);
            assert_eq!(ip_tag(&frame), Some(0));
            for tag in [1, 0x8000, 0xffff, 0x1234] {
                assert!(set_ip_tag(&mut frame, tag));
                assert_eq!(ip_tag(&frame), Some(tag));
                check_frame(&frame, &TcpRepr { ip_id: tag, ..r });
            }
        }
        let mut arp = [0u8; 60];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(!set_ip_tag(&mut arp, 1));
        assert_eq!(ip_tag(&arp), None);
        assert_eq!(ip_tag(&[0u8; 10]), None);
    }

    #[test]
    fn markers() {
        let r = TcpRepr {
            src_mac: marker_mac(7 | MARK_DELIVER),
            ..repr("198.18.0.1:1", "198.19.0.1:2", TcpFlags::RST, false, 0)
        };
        let frame = check(&r);
        assert_eq!(marker_code(&frame), Some(7 | MARK_DELIVER));
        let plain = TcpRepr {
            src_mac: [0x02, 0, 0, 0, 0, 1],
            ..r
        };
        assert_eq!(marker_code(&check(&plain)), None);
        assert_eq!(marker_code(&[0u8; 8]), None);
    }
}
