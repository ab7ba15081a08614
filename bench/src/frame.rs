//! Building Ethernet/IPv4 and Ethernet/IPv6 TCP frames into a caller's
//! buffer, with valid IP and TCP checksums: the one place the bench makes
//! frames, for the engine benchmarks, the traffic of the live benchmarks
//! and `rstwall-bench gen` alike. The bytes are written by the engine's
//! own builder ([`rstwall_engine::wire::TcpFrameRepr`]); this module adds
//! the bench's conventions: its MACs and markers, minimum-size padding,
//! a fixed SYN option set and request-looking payload.
//!
//! The bench marks what it sends in the source MAC: [`marker_mac`] puts a
//! one-byte code after a fixed prefix, and the bench's sink counts frames
//! by that code (nothing on the path looks at a source MAC). A per-frame
//! tag that survives any forwarder — the IPv4 identification or the IPv6
//! flow label, which no checksum covers end to end — carries the latency
//! stamps ([`set_ip_tag`], [`ip_tag`]).

use std::net::SocketAddr;

use rstwall_engine::wire::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use rstwall_engine::wire::{
    ipv4, EthernetRepr, Ipv4Repr, Ipv6Repr, TcpFrameRepr, TcpRepr as SegmentRepr,
};
use rstwall_netlab::packet::Segment;

/// Shortest frame handed to software: 64 bytes on the wire less the 4-byte
/// FCS the NIC strips. Shorter frames are zero-padded up to it.
pub const MIN_FRAME_LEN: usize = 60;
/// Largest IP packet a frame carries (a 1500-byte MTU).
pub const MAX_IP_LEN: usize = 1500;
/// Longest frame [`TcpRepr::emit`] writes: 14 bytes of Ethernet and an IP
/// packet of [`MAX_IP_LEN`].
pub const MAX_FRAME_LEN: usize = ETH_LEN + MAX_IP_LEN;

const ETH_LEN: usize = EthernetRepr::HEADER_LEN;
const IPV4_LEN: usize = Ipv4Repr::HEADER_LEN;
const IPV6_LEN: usize = Ipv6Repr::HEADER_LEN;
const TCP_LEN: usize = SegmentRepr::MIN_HEADER_LEN;
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

/// What Linux puts in a SYN that fits a minimum-size frame: MSS 1460, then
/// NOP and window scale [`WINDOW_SHIFT`] (timestamps and SACK-permitted
/// would push an IPv4 SYN past 64 bytes). Eight bytes of options.
const SYN_MSS: u16 = 1460;
const SYN_OPTIONS_LEN: usize = 8;
/// The shift a SYN announces.
pub const WINDOW_SHIFT: u8 = 7;

/// Request-looking bytes for data segments, repeated for longer payloads.
const PAYLOAD: &[u8; 16] = b"GET / HTTP/1.1\r\n";
/// [`PAYLOAD`] repeated to the longest payload a frame carries.
static PAYLOAD_BYTES: [u8; MAX_IP_LEN] = {
    let mut out = [0u8; MAX_IP_LEN];
    let mut i = 0;
    while i < MAX_IP_LEN {
        out[i] = PAYLOAD[i % PAYLOAD.len()];
        i += 1;
    }
    out
};

/// Longest payload a segment can carry within [`MAX_IP_LEN`].
pub const fn max_payload(ipv6: bool, syn_options: bool) -> usize {
    MAX_FRAME_LEN - header_len(ipv6, syn_options)
}

const fn header_len(ipv6: bool, syn_options: bool) -> usize {
    let ip = if ipv6 { IPV6_LEN } else { IPV4_LEN };
    let options = if syn_options { SYN_OPTIONS_LEN } else { 0 };
    ETH_LEN + ip + TCP_LEN + options
}

/// Length of the frame for a TCP segment: Ethernet, IP (IPv6 or IPv4
/// without options), TCP (with the SYN options or none), payload, padded
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
    /// Carry the SYN options: MSS 1460, window scale [`WINDOW_SHIFT`].
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

    /// Length of the frame [`TcpRepr::emit`] writes, padding included.
    pub fn frame_len(&self) -> usize {
        frame_len(
            self.src.is_ipv6(),
            self.syn_options,
            self.payload_len.into(),
        )
    }

    /// The engine's frame for this segment (without the padding).
    ///
    /// # Panics
    ///
    /// If the payload is longer than [`MAX_IP_LEN`] or the two addresses
    /// are of different families.
    pub fn to_frame(&self) -> TcpFrameRepr<'static> {
        let segment = Segment {
            src: self.src,
            dst: self.dst,
            seq: self.seq,
            ack: self.ack,
            flags: self.flags,
            window: self.window,
        };
        // The IPv6 flow label carries the identification.
        let (ip, tcp) = segment
            .reprs(self.ttl, self.ip_id, u32::from(self.ip_id))
            .expect("source and destination of different address families");
        TcpFrameRepr {
            ethernet: EthernetRepr {
                src: self.src_mac,
                dst: self.dst_mac,
            },
            ip,
            tcp: SegmentRepr {
                mss: self.syn_options.then_some(SYN_MSS),
                window_scale: self.syn_options.then_some(WINDOW_SHIFT),
                payload: &PAYLOAD_BYTES[..usize::from(self.payload_len)],
                ..tcp
            },
        }
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
        let written = self
            .to_frame()
            .emit(buf)
            .expect("a frame of at most MAX_FRAME_LEN fits its buffer");
        buf[written..].fill(0);
        len
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
            ipv4::fill_checksum(ip).is_ok()
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
        (ETHERTYPE_IPV4, 4) => Some(4),
        (ETHERTYPE_IPV6, 6) if frame.len() >= ETH_LEN + IPV6_LEN => Some(6),
        _ => None,
    }
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
    fn syn_options_are_what_the_length_says() {
        let syn = repr("198.18.0.1:1", "198.19.0.1:2", TcpFlags::SYN, true, 0);
        assert_eq!(syn.to_frame().tcp.options_len(), SYN_OPTIONS_LEN);
        let frame = check(&syn);
        assert_eq!(frame[54..62], [2, 4, 0x05, 0xb4, 1, 3, 3, WINDOW_SHIFT]);
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
