//! IPv4: header length and options, total length against captured length,
//! fragments (only the first fragment carries the TCP header).

use std::net::{IpAddr, Ipv4Addr};

#[cfg(test)]
use super::Parsed;
use super::{be16, tcp, NotTcp, ParseError};

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const FRAG: usize = 6;
    pub const PROTOCOL: usize = 9;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const MIN_LEN: usize = 20;
}

pub const PROTO_TCP: u8 = 6;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A checked view over an IPv4 header.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Packet<'a> {
    buf: &'a [u8],
    header_len: usize,
    /// End of the datagram within `buf`: min(total length, captured).
    end: usize,
    /// Payload length the header announces.
    payload_len: u32,
}

impl<'a> Ipv4Packet<'a> {
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, ParseError> {
        if buf.len() < field::MIN_LEN {
            return Err(ParseError::BadIpv4Header);
        }
        if buf[field::VER_IHL] >> 4 != 4 {
            return Err(ParseError::IpVersionMismatch);
        }
        let header_len = ((buf[field::VER_IHL] & 0x0f) as usize) * 4;
        if header_len < field::MIN_LEN || header_len > buf.len() {
            return Err(ParseError::BadIpv4Header);
        }
        let total = be16(buf, field::TOTAL_LEN) as usize;
        // Total length 0 is what TSO/GSO leaves in captures taken on the
        // sending host; the captured length is then the only truth.
        let total = if total == 0 { buf.len() } else { total };
        if total < header_len {
            return Err(ParseError::BadIpv4Header);
        }
        Ok(Ipv4Packet {
            buf,
            header_len,
            end: total.min(buf.len()),
            payload_len: (total - header_len) as u32,
        })
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buf[field::PROTOCOL]
    }
    #[inline]
    pub fn src(&self) -> Ipv4Addr {
        let b = &self.buf[field::SRC..field::SRC + 4];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    #[inline]
    pub fn dst(&self) -> Ipv4Addr {
        let b = &self.buf[field::DST..field::DST + 4];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    #[inline]
    pub fn fragment_offset(&self) -> u16 {
        be16(self.buf, field::FRAG) & OFFSET_MASK
    }
    #[inline]
    pub fn more_fragments(&self) -> bool {
        be16(self.buf, field::FRAG) & FLAG_MF != 0
    }
    /// Captured payload, trimmed of link-layer padding.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..self.end]
    }
    #[inline]
    pub fn payload_len(&self) -> u32 {
        self.payload_len
    }
}

#[cfg(test)]
pub(crate) fn parse_tcp(data: &[u8]) -> Result<Parsed<'_>, ParseError> {
    parse_tcp_with(data, Parsed::Tcp, Parsed::NotTcp)
}

/// The TCP segment of an IPv4 datagram, handed to `tcp` (see
/// [`super::parse_with`]).
#[inline(always)]
pub(crate) fn parse_tcp_with<'a, T>(
    data: &'a [u8],
    tcp: impl FnOnce(super::Segment<'a>) -> T,
    not_tcp: impl FnOnce(NotTcp) -> T,
) -> Result<T, ParseError> {
    let ip = Ipv4Packet::new_checked(data)?;
    if ip.protocol() != PROTO_TCP {
        return Ok(not_tcp(NotTcp::OtherTransport));
    }
    if ip.fragment_offset() != 0 {
        return Ok(not_tcp(NotTcp::LaterFragment));
    }
    let seg = tcp::parse(
        IpAddr::V4(ip.src()),
        IpAddr::V4(ip.dst()),
        ip.payload(),
        ip.payload_len(),
        ip.more_fragments(),
    )?;
    Ok(tcp(seg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(total_len: u16, ihl: u8, frag: u16, proto: u8) -> Vec<u8> {
        let mut h = vec![0u8; (ihl as usize * 4).max(20)];
        h[0] = 0x40 | ihl;
        h[2..4].copy_from_slice(&total_len.to_be_bytes());
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&[198, 18, 0, 1]);
        h[16..20].copy_from_slice(&[198, 18, 0, 2]);
        h
    }

    #[test]
    fn options_and_padding() {
        let mut p = header(24 + 4, 6, 0, 17);
        p.extend_from_slice(&[1, 2, 3, 4, 0xee, 0xee]); // 4 payload + 2 padding
        let ip = Ipv4Packet::new_checked(&p).unwrap();
        assert_eq!(ip.payload(), &[1, 2, 3, 4]);
        assert_eq!(ip.payload_len(), 4);
        assert_eq!(ip.src(), Ipv4Addr::new(198, 18, 0, 1));
    }

    #[test]
    fn impossible_lengths() {
        assert_eq!(
            Ipv4Packet::new_checked(&header(20, 4, 0, 6)).unwrap_err(),
            ParseError::BadIpv4Header
        );
        assert_eq!(
            Ipv4Packet::new_checked(&header(16, 5, 0, 6)).unwrap_err(),
            ParseError::BadIpv4Header
        );
        let mut h = header(40, 5, 0, 6);
        h[0] = 0x4f; // IHL 60 bytes, only 20 captured
        assert_eq!(
            Ipv4Packet::new_checked(&h).unwrap_err(),
            ParseError::BadIpv4Header
        );
        assert_eq!(
            Ipv4Packet::new_checked(&h[..19]).unwrap_err(),
            ParseError::BadIpv4Header
        );
        let mut v6 = header(20, 5, 0, 6);
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6).unwrap_err(),
            ParseError::IpVersionMismatch
        );
    }

    #[test]
    fn truncated_capture_keeps_announced_length() {
        let mut p = header(1500, 5, 0, 17);
        p.extend_from_slice(&[0; 10]);
        let ip = Ipv4Packet::new_checked(&p).unwrap();
        assert_eq!(ip.payload().len(), 10);
        assert_eq!(ip.payload_len(), 1480);
    }

    #[test]
    fn later_fragments_are_not_tcp() {
        let p = header(40, 5, 185, PROTO_TCP);
        let mut p2 = p.clone();
        p2.extend_from_slice(&[0; 20]);
        assert_eq!(
            parse_tcp(&p2).unwrap(),
            Parsed::NotTcp(NotTcp::LaterFragment)
        );
    }
}
