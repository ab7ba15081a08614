//! IPv4: header length and options, total length against captured length,
//! fragments (only the first fragment carries the TCP header).

use std::net::{IpAddr, Ipv4Addr};

#[cfg(test)]
use super::Parsed;
use super::{be16, checksum, room, tcp, EmitError, NotTcp, ParseError};

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    pub const MIN_LEN: usize = 20;
}

pub const PROTO_TCP: u8 = 6;
const FLAG_DF: u16 = 0x4000;
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
    /// Header length in bytes (IHL × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buf, field::IDENT)
    }
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buf[field::TTL]
    }
    #[inline]
    pub fn dont_fragment(&self) -> bool {
        be16(self.buf, field::FRAG) & FLAG_DF != 0
    }
    /// The header checksum is right.
    pub fn checksum_ok(&self) -> bool {
        checksum(&self.buf[..self.header_len], 0) == 0
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

/// An IPv4 header without options as a frame builder chooses it. Version,
/// IHL, total length, protocol and checksum are written by
/// [`Ipv4Repr::emit`]; DSCP/ECN, MF and the fragment offset are written as
/// zero and not read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
    pub dont_fragment: bool,
}

impl Ipv4Repr {
    pub const HEADER_LEN: usize = field::MIN_LEN;

    pub fn parse(p: &Ipv4Packet<'_>) -> Ipv4Repr {
        Ipv4Repr {
            src: p.src(),
            dst: p.dst(),
            ttl: p.ttl(),
            ident: p.ident(),
            dont_fragment: p.dont_fragment(),
        }
    }

    /// Write the 20-byte header for `payload_len` bytes of `protocol` at
    /// the start of `buf`, with its checksum.
    pub fn emit(&self, buf: &mut [u8], protocol: u8, payload_len: usize) -> Result<(), EmitError> {
        let max = usize::from(u16::MAX) - field::MIN_LEN;
        if payload_len > max {
            return Err(EmitError::TooLarge {
                field: "IPv4 payload length",
                value: payload_len,
                max,
            });
        }
        room(buf, field::MIN_LEN)?;
        let h = &mut buf[..field::MIN_LEN];
        h.fill(0);
        h[field::VER_IHL] = 0x45;
        let total = (field::MIN_LEN + payload_len) as u16;
        h[field::TOTAL_LEN..field::TOTAL_LEN + 2].copy_from_slice(&total.to_be_bytes());
        h[field::IDENT..field::IDENT + 2].copy_from_slice(&self.ident.to_be_bytes());
        let frag = if self.dont_fragment { FLAG_DF } else { 0 };
        h[field::FRAG..field::FRAG + 2].copy_from_slice(&frag.to_be_bytes());
        h[field::TTL] = self.ttl;
        h[field::PROTOCOL] = protocol;
        h[field::SRC..field::SRC + 4].copy_from_slice(&self.src.octets());
        h[field::DST..field::DST + 4].copy_from_slice(&self.dst.octets());
        fill_checksum(h)
    }
}

/// Compute and write the checksum of `header`, a whole IPv4 header (IHL ×
/// 4 bytes): after a field such as the identification was changed.
pub fn fill_checksum(header: &mut [u8]) -> Result<(), EmitError> {
    room(header, field::MIN_LEN)?;
    let at = field::CHECKSUM..field::CHECKSUM + 2;
    header[at.clone()].fill(0);
    let sum = checksum(header, 0);
    header[at].copy_from_slice(&sum.to_be_bytes());
    Ok(())
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
    fn repr_round_trip() {
        let r = Ipv4Repr {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 19, 255, 254),
            ttl: 63,
            ident: 0xbeef,
            dont_fragment: true,
        };
        for (df, payload_len) in [(true, 0), (false, 7), (true, 65_515)] {
            let r = Ipv4Repr {
                dont_fragment: df,
                ..r
            };
            let mut buf = [0xaau8; 27];
            r.emit(&mut buf, 17, payload_len).unwrap();
            let p = Ipv4Packet::new_checked(&buf).unwrap();
            assert_eq!(Ipv4Repr::parse(&p), r);
            assert!(p.checksum_ok());
            assert_eq!((p.protocol(), p.payload_len()), (17, payload_len as u32));
            assert_eq!((p.header_len(), p.more_fragments()), (20, false));
            assert_eq!(p.fragment_offset(), 0);
        }
        // Flip any bit of the header: the checksum no longer holds.
        let mut buf = [0u8; 20];
        r.emit(&mut buf, PROTO_TCP, 0).unwrap();
        for bit in 0..160 {
            let mut b = buf;
            b[bit / 8] ^= 1 << (bit % 8);
            if let Ok(p) = Ipv4Packet::new_checked(&b) {
                assert!(!p.checksum_ok(), "bit {bit}");
            }
        }
        // Refused without writing: too short, too long.
        let mut short = [0x11u8; 19];
        assert_eq!(
            r.emit(&mut short, PROTO_TCP, 0),
            Err(EmitError::BufferTooShort { need: 20, have: 19 })
        );
        assert_eq!(short, [0x11; 19]);
        assert!(matches!(
            r.emit(&mut buf, PROTO_TCP, 65_516),
            Err(EmitError::TooLarge { .. })
        ));
        assert!(fill_checksum(&mut short).is_err());
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
