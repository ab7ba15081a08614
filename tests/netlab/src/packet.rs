//! Hand-built TCP segments, as a spoofing attacker sends them: IPv4 or
//! IPv6 packets written by the engine's wire `Repr`s (the one packet
//! builder), for the raw senders.

use std::net::{IpAddr, SocketAddr};

use rstwall_engine::wire::{
    IpRepr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpFlags, TcpHeader, TcpRepr,
};

/// One TCP segment without options or payload.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    /// `TcpFlags::RST | TcpFlags::ACK`...
    pub flags: u16,
    pub window: u16,
}

/// TCP protocol number in the IP header.
const PROTO_TCP: u8 = 6;

impl Segment {
    /// Bytes of an IPv4 packet of it: IP header and TCP header.
    pub const LEN: usize = Ipv4Repr::HEADER_LEN + TcpRepr::MIN_HEADER_LEN;

    /// Its IP and TCP headers as the engine's `Repr`s: IPv4 (no options,
    /// DF, TTL `ttl`, identification `ip_id`) or IPv6 (hop limit `ttl`,
    /// flow label `flow_label`); TCP without options. `None` when the
    /// addresses are of different families. A frame builder adds what it
    /// needs (options, payload) to the TCP part.
    pub fn reprs(
        &self,
        ttl: u8,
        ip_id: u16,
        flow_label: u32,
    ) -> Option<(IpRepr, TcpRepr<'static>)> {
        let ip = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => IpRepr::V4(Ipv4Repr {
                src,
                dst,
                ttl,
                ident: ip_id,
                dont_fragment: true,
            }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => IpRepr::V6(Ipv6Repr {
                src,
                dst,
                hop_limit: ttl,
                flow_label,
            }),
            _ => return None,
        };
        let tcp = TcpRepr {
            src_port: self.src.port(),
            dst_port: self.dst.port(),
            seq: self.seq,
            ack: self.ack,
            flags: TcpFlags(self.flags),
            window: self.window,
            ..TcpRepr::default()
        };
        Some((ip, tcp))
    }

    /// The IP packet: IPv4 (no options, DF, TTL 64, identification
    /// `ip_id`) or IPv6 (hop limit 64, flow label 0), both checksums
    /// filled in. `None` when the addresses are of different families.
    pub fn to_ip(&self, ip_id: u16) -> Option<Vec<u8>> {
        let (ip, tcp) = self.reprs(64, ip_id, 0)?;
        let hlen = ip.header_len();
        let mut p = vec![0u8; hlen + TcpRepr::MIN_HEADER_LEN];
        let (head, seg) = p.split_at_mut(hlen);
        let len = tcp.emit(seg, ip.src(), ip.dst()).ok()?;
        ip.emit(head, PROTO_TCP, len).ok()?;
        Some(p)
    }

    /// [`Segment::to_ip`] for IPv4 addresses: the 40-byte packet.
    pub fn to_ipv4(&self, ip_id: u16) -> Option<[u8; Segment::LEN]> {
        self.to_ip(ip_id)?.try_into().ok()
    }
}

/// Whether the TCP checksum of an IPv4 or IPv6 packet (IP header, TCP
/// header and payload, as captured, no IPv6 extension headers) is right.
/// False for anything shorter than its headers or not TCP.
pub fn tcp_checksum_ok(ip: &[u8]) -> bool {
    let (src, dst, tcp) = match ip.first().map(|b| b >> 4) {
        Some(4) => {
            let Ok(p) = Ipv4Packet::new_checked(ip) else {
                return false;
            };
            if p.protocol() != PROTO_TCP {
                return false;
            }
            (IpAddr::V4(p.src()), IpAddr::V4(p.dst()), p.payload())
        }
        Some(6) => {
            let Ok(p) = Ipv6Packet::new_checked(ip) else {
                return false;
            };
            if p.next_header() != PROTO_TCP {
                return false;
            }
            (IpAddr::V6(p.src()), IpAddr::V6(p.dst()), p.payload())
        }
        _ => return false,
    };
    TcpHeader::new_checked(tcp).is_ok_and(|h| h.checksum_ok(src, dst))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

    use rstwall_engine::wire::{self, LinkType, Parsed};

    use super::*;

    #[test]
    fn a_built_segment_checksums_to_zero() {
        let s = Segment {
            src: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40_000).into(),
            dst: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 5004).into(),
            seq: 0xdead_beef,
            ack: 0,
            flags: TcpFlags::RST,
            window: 0,
        };
        let p = s.to_ipv4(7).expect("IPv4");
        assert_eq!(u16::from(p[33]), TcpFlags::RST);
        assert_eq!(&p[4..6], &7u16.to_be_bytes(), "identification");
        assert!(tcp_checksum_ok(&p));
        let mut bad = p;
        bad[30] ^= 1;
        assert!(!tcp_checksum_ok(&bad), "a flipped bit");
        assert!(!tcp_checksum_ok(&p[..30]), "cut short");
        assert_eq!(&p[24..28], &0xdead_beefu32.to_be_bytes());
        // The engine reads back what was built, IP checksum included.
        match wire::parse(LinkType::Raw, &p).unwrap() {
            Parsed::Tcp(seg) => {
                assert_eq!(
                    (seg.seq, seg.flags.0, seg.dst_port),
                    (0xdead_beef, TcpFlags::RST, 5004)
                );
                assert!(seg.header_complete);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ipv6_segments_and_mixed_families() {
        let src = SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1)),
            40_000,
        );
        let dst = SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2)), 8080);
        let s = Segment {
            src,
            dst,
            seq: 5,
            ack: 9,
            flags: TcpFlags::RST | TcpFlags::ACK,
            window: 0,
        };
        let p = s.to_ip(0).expect("IPv6");
        assert_eq!(p.len(), 60);
        assert!(tcp_checksum_ok(&p));
        assert!(s.to_ipv4(0).is_none());
        match wire::parse(LinkType::Raw, &p).unwrap() {
            Parsed::Tcp(seg) => assert_eq!((seg.src, seg.ack), (src.ip(), 9)),
            other => panic!("{other:?}"),
        }
        let mixed = Segment {
            dst: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 1).into(),
            ..s
        };
        assert!(mixed.to_ip(0).is_none());
    }
}
