//! Hand-built IPv4/TCP segments, as a spoofing attacker sends them.
//!
//! Only this: the engine's `wire` module is to gain the one packet builder
//! (a `Repr` with `emit`), and this goes when it does.

use std::net::SocketAddrV4;

/// One TCP segment without options or payload.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    /// `TcpFlags::RST | TcpFlags::ACK`...; the NS bit is not sent.
    pub flags: u16,
    pub window: u16,
}

impl Segment {
    pub const LEN: usize = 40;

    /// The IPv4 packet (header without options, DF, TTL 64), both
    /// checksums filled in.
    pub fn to_ipv4(&self, ip_id: u16) -> [u8; Segment::LEN] {
        let mut p = [0u8; Segment::LEN];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(Segment::LEN as u16).to_be_bytes());
        p[4..6].copy_from_slice(&ip_id.to_be_bytes());
        p[6] = 0x40; // don't fragment
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&self.src.ip().octets());
        p[16..20].copy_from_slice(&self.dst.ip().octets());
        let ip_sum = checksum(&p[..20], 0);
        p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&self.src.port().to_be_bytes());
        t[2..4].copy_from_slice(&self.dst.port().to_be_bytes());
        t[4..8].copy_from_slice(&self.seq.to_be_bytes());
        t[8..12].copy_from_slice(&self.ack.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = self.flags as u8;
        t[14..16].copy_from_slice(&self.window.to_be_bytes());
        let tcp_sum = checksum(&p[20..], pseudo_header(&p));
        p[36..38].copy_from_slice(&tcp_sum.to_be_bytes());
        p
    }
}

/// Whether the TCP checksum of an IPv4 packet (header, TCP header and
/// payload, as captured) is right. False for anything shorter than its
/// headers.
pub fn ipv4_tcp_checksum_ok(ip: &[u8]) -> bool {
    let Some(&first) = ip.first() else {
        return false;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || ip.len() < ihl + 20 {
        return false;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let Some(tcp) = ip.get(ihl..total) else {
        return false;
    };
    let mut pseudo = 6 + tcp.len() as u32;
    for c in ip[12..20].chunks(2) {
        pseudo += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    checksum(tcp, pseudo) == 0
}

/// The partial sum of the IPv4 pseudo-header of a packet without IP
/// options: addresses, protocol, TCP length.
fn pseudo_header(p: &[u8; Segment::LEN]) -> u32 {
    let mut sum = 6 + (Segment::LEN as u32 - 20);
    for c in p[12..20].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    sum
}

/// The Internet checksum of `bytes`, starting from a partial sum.
fn checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for c in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use rstwall_engine::wire::TcpFlags;

    use super::*;

    #[test]
    fn a_built_segment_checksums_to_zero() {
        let s = Segment {
            src: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40_000),
            dst: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 5004),
            seq: 0xdead_beef,
            ack: 0,
            flags: TcpFlags::RST,
            window: 0,
        };
        let p = s.to_ipv4(7);
        assert_eq!(checksum(&p[..20], 0), 0, "IPv4 header checksum");
        let mut pseudo = 6 + 20;
        for c in p[12..20].chunks(2) {
            pseudo += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        assert_eq!(checksum(&p[20..], pseudo), 0, "TCP checksum");
        assert_eq!(u16::from(p[33]), TcpFlags::RST);
        assert!(ipv4_tcp_checksum_ok(&p));
        let mut bad = p;
        bad[30] ^= 1;
        assert!(!ipv4_tcp_checksum_ok(&bad), "a flipped bit");
        assert!(!ipv4_tcp_checksum_ok(&p[..30]), "cut short");
        assert_eq!(&p[24..28], &0xdead_beefu32.to_be_bytes());
    }
}
