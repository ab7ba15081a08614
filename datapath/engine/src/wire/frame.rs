//! A whole frame to send: Ethernet II, IPv4 or IPv6, one TCP segment.

use std::net::IpAddr;

use super::ethernet::{
    EthernetFrame, EthernetRepr, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ,
    ETHERTYPE_QINQ_LEGACY, ETHERTYPE_VLAN,
};
use super::ipv4::{Ipv4Packet, Ipv4Repr, PROTO_TCP};
use super::ipv6::{self, Ipv6Packet, Ipv6Repr};
use super::tcp::{TcpHeader, TcpRepr};
use super::{room, EmitError, NotTcp, ParseError};

/// The IP header of a frame, either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpRepr {
    V4(Ipv4Repr),
    V6(Ipv6Repr),
}

impl IpRepr {
    pub fn src(&self) -> IpAddr {
        match self {
            IpRepr::V4(r) => IpAddr::V4(r.src),
            IpRepr::V6(r) => IpAddr::V6(r.src),
        }
    }

    pub fn dst(&self) -> IpAddr {
        match self {
            IpRepr::V4(r) => IpAddr::V4(r.dst),
            IpRepr::V6(r) => IpAddr::V6(r.dst),
        }
    }

    pub fn header_len(&self) -> usize {
        match self {
            IpRepr::V4(_) => Ipv4Repr::HEADER_LEN,
            IpRepr::V6(_) => Ipv6Repr::HEADER_LEN,
        }
    }

    /// The ethertype of a frame carrying this header.
    pub fn ethertype(&self) -> u16 {
        match self {
            IpRepr::V4(_) => ETHERTYPE_IPV4,
            IpRepr::V6(_) => ETHERTYPE_IPV6,
        }
    }

    /// Write the header for `payload_len` bytes of `protocol`.
    pub fn emit(&self, buf: &mut [u8], protocol: u8, payload_len: usize) -> Result<(), EmitError> {
        match self {
            IpRepr::V4(r) => r.emit(buf, protocol, payload_len),
            IpRepr::V6(r) => r.emit(buf, protocol, payload_len),
        }
    }
}

/// An Ethernet frame carrying one TCP segment over IPv4 or IPv6, no VLAN
/// tag, no IP options or extension headers: what the benchmarks, the tests
/// and the lab put on a wire. Frames are not padded to the 60-byte
/// Ethernet minimum (a NIC pads on transmit; a sender that hands frames
/// to software pads them itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TcpFrameRepr<'a> {
    pub ethernet: EthernetRepr,
    pub ip: IpRepr,
    pub tcp: TcpRepr<'a>,
}

/// Why a frame could not be read as a [`TcpFrameRepr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReprError {
    #[error("malformed frame: {0}")]
    Malformed(ParseError),
    #[error("not a TCP frame: {0}")]
    NotTcp(NotTcp),
    /// Well-formed, but beyond what the `Repr`s describe.
    #[error("a frame with {0} has no TcpFrameRepr")]
    Unsupported(&'static str),
    /// The IP header announces more than was captured.
    #[error("IP payload truncated: {captured} of {announced} bytes captured")]
    Truncated { announced: usize, captured: usize },
}

impl From<ParseError> for ReprError {
    fn from(e: ParseError) -> Self {
        ReprError::Malformed(e)
    }
}

impl<'a> TcpFrameRepr<'a> {
    /// Bytes [`TcpFrameRepr::emit`] writes.
    pub fn len(&self) -> usize {
        EthernetRepr::HEADER_LEN + self.ip.header_len() + self.tcp.len()
    }

    /// Never: a frame has at least its headers.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Write the frame at the start of `buf`, every length and checksum
    /// filled in; returns [`TcpFrameRepr::len`]. On error nothing was
    /// written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, EmitError> {
        let tcp_len = self.tcp.checked_len()?;
        let ip_at = EthernetRepr::HEADER_LEN;
        let tcp_at = ip_at + self.ip.header_len();
        let len = tcp_at + tcp_len;
        room(buf, len)?;
        // The IP header checks its length before it writes; after it
        // nothing can fail.
        self.ip.emit(&mut buf[ip_at..], PROTO_TCP, tcp_len)?;
        self.tcp
            .emit(&mut buf[tcp_at..len], self.ip.src(), self.ip.dst())?;
        self.ethernet.emit(buf, self.ip.ethertype())?;
        Ok(len)
    }

    /// Read a frame [`TcpFrameRepr::emit`] could have written. Ethernet
    /// padding after the IP packet is ignored; checksums are not checked
    /// (a capture on the sending host holds checksums its NIC had yet to
    /// fill: see [`Ipv4Packet::checksum_ok`], [`TcpHeader::checksum_ok`]).
    pub fn parse(frame: &'a [u8]) -> Result<TcpFrameRepr<'a>, ReprError> {
        let eth = EthernetFrame::new_checked(frame)?;
        let (ip, segment, announced) = match eth.ethertype() {
            ETHERTYPE_IPV4 => {
                let p = Ipv4Packet::new_checked(eth.payload())?;
                if p.header_len() != Ipv4Repr::HEADER_LEN {
                    return Err(ReprError::Unsupported("IPv4 options"));
                }
                if p.more_fragments() || p.fragment_offset() != 0 {
                    return Err(ReprError::Unsupported("IP fragments"));
                }
                if p.protocol() != PROTO_TCP {
                    return Err(ReprError::NotTcp(NotTcp::OtherTransport));
                }
                (
                    IpRepr::V4(Ipv4Repr::parse(&p)),
                    p.payload(),
                    p.payload_len(),
                )
            }
            ETHERTYPE_IPV6 => {
                let p = Ipv6Packet::new_checked(eth.payload())?;
                match p.next_header() {
                    PROTO_TCP => {}
                    n if ipv6::is_extension_header(n) => {
                        return Err(ReprError::Unsupported("IPv6 extension headers"))
                    }
                    _ => return Err(ReprError::NotTcp(NotTcp::OtherTransport)),
                }
                (
                    IpRepr::V6(Ipv6Repr::parse(&p)),
                    p.payload(),
                    p.payload_len(),
                )
            }
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_LEGACY => {
                return Err(ReprError::Unsupported("VLAN tags"))
            }
            _ => return Err(ReprError::NotTcp(NotTcp::NonIp)),
        };
        if (segment.len() as u64) < u64::from(announced) {
            return Err(ReprError::Truncated {
                announced: announced as usize,
                captured: segment.len(),
            });
        }
        let tcp = TcpRepr::parse(&TcpHeader::new_checked(segment)?)?;
        Ok(TcpFrameRepr {
            ethernet: EthernetRepr::parse(&eth),
            ip,
            tcp,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::wire::{self, LinkType, Parsed, SackBlocks, TcpFlags, TcpOptions};

    fn v4() -> IpRepr {
        IpRepr::V4(Ipv4Repr {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 19, 0, 2),
            ttl: 64,
            ident: 0x1234,
            dont_fragment: true,
        })
    }

    fn v6() -> IpRepr {
        IpRepr::V6(Ipv6Repr {
            src: "2001:2:0:c::1".parse().unwrap(),
            dst: "2001:2:0:5::1".parse().unwrap(),
            hop_limit: 64,
            flow_label: 0xa_bcde,
        })
    }

    fn frame<'a>(ip: IpRepr, tcp: TcpRepr<'a>) -> TcpFrameRepr<'a> {
        TcpFrameRepr {
            ethernet: EthernetRepr {
                src: [2, 0, 0, 0, 0, 1],
                dst: [2, 0, 0, 0, 0, 2],
            },
            ip,
            tcp,
        }
    }

    const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\nHost: rstwall\r\n\r\n";
    const COOKIE: [u8; 16] = *b"0123456789abcdef";

    /// Segments with every option the Repr knows, alone and together.
    fn segments() -> Vec<TcpRepr<'static>> {
        let base = TcpRepr {
            src_port: 40000,
            dst_port: 443,
            seq: 0xdead_beef,
            ack: 0xffff_fff0,
            flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
            window: 502,
            ..TcpRepr::default()
        };
        let mut out = vec![base];
        for bits in 0..1u16 << 9 {
            out.push(TcpRepr {
                flags: TcpFlags(bits),
                ..base
            });
        }
        for n in 0..=PAYLOAD.len() {
            out.push(TcpRepr {
                payload: &PAYLOAD[..n],
                ..base
            });
        }
        let blocks = [(10, 20), (30, 40), (u32::MAX - 5, 3), (50, 60)];
        for n in 1..=SackBlocks::MAX {
            out.push(TcpRepr {
                sack_blocks: SackBlocks::new(&blocks[..n]).unwrap(),
                ..base
            });
        }
        for n in [0, 4, 6, 7, 8, 16] {
            out.push(TcpRepr {
                fast_open: Some(&COOKIE[..n]),
                payload: PAYLOAD,
                ..base
            });
        }
        for mss in [None, Some(1460)] {
            for window_scale in [None, Some(0), Some(14)] {
                for sack_permitted in [false, true] {
                    for timestamps in [None, Some((1, 0)), Some((u32::MAX, 7))] {
                        // 40 bytes at most: three blocks fit beside MSS, SACK-permitted
                        // and WS, two beside timestamps too.
                        let sack = if timestamps.is_some() { 2 } else { 3 };
                        out.push(TcpRepr {
                            mss,
                            window_scale,
                            sack_permitted,
                            timestamps,
                            sack_blocks: SackBlocks::new(&blocks[..sack]).unwrap(),
                            ..base
                        });
                    }
                }
            }
        }
        out
    }

    #[test]
    fn round_trips_and_checksums_verify() {
        for ip in [v4(), v6()] {
            for tcp in segments() {
                let r = frame(ip, tcp);
                let mut buf = [0x5au8; 1600];
                let len = r.emit(&mut buf).unwrap_or_else(|e| panic!("{r:?}: {e}"));
                assert_eq!(len, r.len());
                assert_eq!(buf[len], 0x5a, "nothing written past the frame");
                let bytes = &buf[..len];
                assert_eq!(TcpFrameRepr::parse(bytes), Ok(r));

                // Both checksums hold.
                let eth = EthernetFrame::new_checked(bytes).unwrap();
                let segment = match ip {
                    IpRepr::V4(_) => {
                        let p = Ipv4Packet::new_checked(eth.payload()).unwrap();
                        assert!(p.checksum_ok());
                        p.payload()
                    }
                    IpRepr::V6(_) => Ipv6Packet::new_checked(eth.payload()).unwrap().payload(),
                };
                let h = TcpHeader::new_checked(segment).unwrap();
                assert!(h.checksum_ok(ip.src(), ip.dst()), "{r:?}");
                assert_eq!(segment.len() % 2 == 1, tcp.payload.len() % 2 == 1);

                // The engine's parser reads what was written.
                let Ok(Parsed::Tcp(seg)) = wire::parse(LinkType::Ethernet, bytes) else {
                    panic!("{r:?} does not parse")
                };
                assert_eq!((seg.src, seg.dst), (ip.src(), ip.dst()));
                assert_eq!((seg.src_port, seg.dst_port), (tcp.src_port, tcp.dst_port));
                assert_eq!((seg.seq, seg.ack, seg.flags), (tcp.seq, tcp.ack, tcp.flags));
                assert_eq!(seg.window, tcp.window);
                assert_eq!(seg.options, tcp.options());
                assert_eq!(seg.payload, tcp.payload);
                assert_eq!(seg.payload_len as usize, tcp.payload.len());
                assert!(seg.header_complete && !seg.fragmented);
            }
        }
    }

    #[test]
    fn highest_sack_edge_is_what_the_parser_keeps() {
        let tcp = TcpRepr {
            sack_blocks: SackBlocks::new(&[(10, 20), (u32::MAX - 5, 3), (30, 40)]).unwrap(),
            ..TcpRepr::default()
        };
        assert_eq!(tcp.options().sack_right_edge, Some(40));
        assert_eq!(TcpRepr::default().options(), TcpOptions::default());
        assert!(SackBlocks::new(&[(0, 1); SackBlocks::MAX + 1]).is_none());
        let mut full = SackBlocks::new(&[(0, 1); SackBlocks::MAX]).unwrap();
        assert!(!full.push((2, 3)));
        assert_eq!(full.len(), SackBlocks::MAX);
    }

    /// Frames Linux 6.x sent in `samples/demo.pcap` (a SYN, its SYN-ACK,
    /// a data segment): read and written again, byte for byte, checksums
    /// included.
    #[test]
    fn linux_frames_come_back_byte_for_byte() {
        for hex in [
            "02525700000202525700000108004500003c1043400040069e51c6120001c6120002a7f91f90\
             4164fd2700000000a002faf0dc6a0000020405b40402080a82285c3b000000000103030a",
            "02525700000102525700000208004500003c000040004006ae94c6120002c61200011f90a7f9\
             bb7a5a544164fd28a012fe886cde0000020405b40402080a2ad22b4282285c3b0103030a",
            "02525700000202525700000108004500004d1045400040069e3ec6120001c6120002a7f91f90\
             4164fd28bb7a5a558018003f350000000101080a82285c3b2ad22b4268656c6c6f2072657175\
             6573742066726f6d2034333030310a",
        ] {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            let r = TcpFrameRepr::parse(&bytes).unwrap();
            let mut out = vec![0u8; r.len()];
            assert_eq!(r.emit(&mut out), Ok(bytes.len()));
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn options_are_laid_out_as_linux_writes_them() {
        let options = |tcp: TcpRepr| {
            let r = frame(v4(), tcp);
            let mut buf = [0u8; 200];
            let len = r.emit(&mut buf).unwrap();
            buf[54..len - tcp.payload.len()].to_vec()
        };
        // A SYN: MSS, SACK-permitted folded into the timestamps word, NOP WS.
        let syn = TcpRepr {
            mss: Some(1460),
            sack_permitted: true,
            timestamps: Some((1, 0)),
            window_scale: Some(7),
            ..TcpRepr::default()
        };
        assert_eq!(
            options(syn),
            [2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7]
        );
        // ... with a Fast Open cookie after, padded with two NOPs.
        let tfo = TcpRepr {
            fast_open: Some(&COOKIE[..8]),
            ..syn
        };
        assert_eq!(options(tfo)[20..], *b"\x22\x0a01234567\x01\x01");
        // MSS and window scale only: the bench's minimum-size SYN.
        let small = TcpRepr {
            mss: Some(1460),
            window_scale: Some(7),
            ..TcpRepr::default()
        };
        assert_eq!(options(small), [2, 4, 5, 0xb4, 1, 3, 3, 7]);
        // Established: NOP NOP TS, then NOP NOP SACK.
        let ack = TcpRepr {
            timestamps: Some((2, 3)),
            sack_blocks: SackBlocks::new(&[(5, 6)]).unwrap(),
            ..TcpRepr::default()
        };
        assert_eq!(
            options(ack),
            [1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 3, 1, 1, 5, 10, 0, 0, 0, 5, 0, 0, 0, 6]
        );
        let sack_perm = TcpRepr {
            sack_permitted: true,
            ..TcpRepr::default()
        };
        assert_eq!(options(sack_perm), [1, 1, 4, 2]);
    }

    #[test]
    fn what_does_not_fit_is_refused_and_nothing_written() {
        let full = TcpRepr {
            timestamps: Some((1, 2)),
            sack_blocks: SackBlocks::new(&[(1, 2); 4]).unwrap(),
            ..TcpRepr::default()
        };
        assert_eq!(full.options_len(), 48);
        let big = vec![0u8; 70_000];
        let too_long = TcpRepr {
            payload: &big[..65_536 - 40],
            ..TcpRepr::default()
        };
        let long_v6 = TcpRepr {
            payload: &big[..65_536 - 20],
            ..TcpRepr::default()
        };
        for (r, want) in [
            (frame(v4(), full), "TCP options"),
            (frame(v6(), full), "TCP options"),
            (frame(v4(), too_long), "IPv4 payload length"),
            (frame(v6(), long_v6), "IPv6 payload length"),
        ] {
            let mut buf = vec![0x77u8; 70_000];
            match r.emit(&mut buf) {
                Err(EmitError::TooLarge { field, .. }) => assert_eq!(field, want),
                other => panic!("{want}: {other:?}"),
            }
            assert!(buf.iter().all(|&b| b == 0x77), "{want}: buffer untouched");
        }
        // The largest that fits does.
        let fits = TcpRepr {
            payload: &big[..65_535 - 40],
            ..TcpRepr::default()
        };
        let mut buf = vec![0u8; 70_000];
        assert_eq!(frame(v4(), fits).emit(&mut buf), Ok(14 + 65_535));
        assert_eq!(frame(v6(), fits).emit(&mut buf), Ok(14 + 40 + 65_535 - 20));
        // A TCP segment between address families has no pseudo-header.
        let r = TcpRepr::default();
        let mixed = r.emit(
            &mut buf,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        );
        assert_eq!(mixed, Err(EmitError::MixedFamilies));
    }

    #[test]
    fn short_buffers_are_refused_without_panic() {
        for ip in [v4(), v6()] {
            let r = frame(
                ip,
                TcpRepr {
                    timestamps: Some((9, 9)),
                    payload: PAYLOAD,
                    ..TcpRepr::default()
                },
            );
            let mut whole = vec![0u8; r.len()];
            r.emit(&mut whole).unwrap();
            for cut in 0..r.len() {
                let mut buf = vec![0xeeu8; cut];
                assert_eq!(
                    r.emit(&mut buf),
                    Err(EmitError::BufferTooShort {
                        need: r.len(),
                        have: cut
                    })
                );
                assert!(buf.iter().all(|&b| b == 0xee));
                // Every truncated capture is refused, never misread.
                assert!(TcpFrameRepr::parse(&whole[..cut]).is_err(), "cut at {cut}");
            }
            // Padding after the packet is not part of it.
            let mut padded = whole.clone();
            padded.resize(whole.len() + 9, 0);
            assert_eq!(TcpFrameRepr::parse(&padded), Ok(r));
        }
    }

    #[test]
    fn frames_it_cannot_describe() {
        let r = frame(v4(), TcpRepr::default());
        let mut good = vec![0u8; r.len()];
        r.emit(&mut good).unwrap();
        let parse = |f: &[u8]| TcpFrameRepr::parse(f).unwrap_err();

        let mut udp = good.clone();
        udp[23] = 17;
        assert_eq!(parse(&udp), ReprError::NotTcp(NotTcp::OtherTransport));
        let mut arp = good.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse(&arp), ReprError::NotTcp(NotTcp::NonIp));
        let mut vlan = good.clone();
        vlan[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        assert_eq!(parse(&vlan), ReprError::Unsupported("VLAN tags"));
        let mut fragment = good.clone();
        fragment[20] |= 0x20; // MF
        assert_eq!(parse(&fragment), ReprError::Unsupported("IP fragments"));
        let mut options = good.clone();
        options[14] = 0x46;
        options.splice(34..34, [1, 1, 1, 0]);
        assert_eq!(parse(&options), ReprError::Unsupported("IPv4 options"));
        let mut bad_offset = good.clone();
        bad_offset[46] = 4 << 4;
        assert_eq!(
            parse(&bad_offset),
            ReprError::Malformed(ParseError::BadTcpHeader)
        );
        let mut long = good.clone();
        long[16..18].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            parse(&long),
            ReprError::Truncated {
                announced: 80,
                captured: 20
            }
        );

        let r6 = frame(v6(), TcpRepr::default());
        let mut good6 = vec![0u8; r6.len()];
        r6.emit(&mut good6).unwrap();
        let mut ext = good6.clone();
        ext[20] = 0; // hop-by-hop
        assert_eq!(
            parse(&ext),
            ReprError::Unsupported("IPv6 extension headers")
        );
        ext[20] = 58; // ICMPv6
        assert_eq!(parse(&ext), ReprError::NotTcp(NotTcp::OtherTransport));
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = [0u8; 120];
        let mut parsed = 0;
        for round in 0..20_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Mostly Ethernet + IPv4/IPv6 + TCP, so the deep paths run.
            let (ethertype, version) = if round % 2 == 0 {
                (ETHERTYPE_IPV4, 0x45)
            } else {
                (ETHERTYPE_IPV6, 0x60)
            };
            buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
            buf[14] = version;
            buf[23] = PROTO_TCP;
            buf[20] = PROTO_TCP;
            let len = (x % buf.len() as u64) as usize;
            // Announce what was captured (often), so some frames are whole.
            if round % 3 != 0 && len >= 54 {
                let ip_len = (len - 14) as u16;
                buf[16..18].copy_from_slice(&ip_len.to_be_bytes());
                buf[18..20].copy_from_slice(&(ip_len.wrapping_sub(40)).to_be_bytes());
            }
            if let Ok(r) = TcpFrameRepr::parse(&buf[..len]) {
                parsed += 1;
                // Options laid out anew may need more room than the
                // original packed them in.
                let mut out = [0u8; 200];
                match r.emit(&mut out) {
                    Ok(n) => assert_eq!(TcpFrameRepr::parse(&out[..n]), Ok(r)),
                    Err(e) => assert!(matches!(e, EmitError::TooLarge { .. }), "{e}"),
                }
            }
        }
        assert!(parsed > 500, "only {parsed} frames parsed");
    }
}
