//! IPv6 with a bounded walk over extension headers and fragments.

use std::net::{IpAddr, Ipv6Addr};

#[cfg(test)]
use super::Parsed;
use super::{be16, tcp, NotTcp, ParseError};

mod field {
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
    pub const HEADER_LEN: usize = 40;
}

const HOP_BY_HOP: u8 = 0;
const TCP: u8 = 6;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AUTH: u8 = 51;
const DEST_OPTS: u8 = 60;
const MOBILITY: u8 = 135;
const HIP: u8 = 139;
const SHIM6: u8 = 140;

/// Extension headers walked before we give up. Real traffic carries at most
/// two or three; a long chain is an evasion attempt or garbage.
pub const MAX_EXT_HEADERS: usize = 8;

#[inline]
fn addr(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

#[cfg(test)]
pub(crate) fn parse_tcp(data: &[u8]) -> Result<Parsed<'_>, ParseError> {
    parse_tcp_with(data, Parsed::Tcp, Parsed::NotTcp)
}

/// The TCP segment of an IPv6 packet, handed to `tcp` (see
/// [`super::parse_with`]).
#[inline]
pub(crate) fn parse_tcp_with<'a, T>(
    data: &'a [u8],
    tcp: impl FnOnce(super::Segment<'a>) -> T,
    not_tcp: impl FnOnce(NotTcp) -> T,
) -> Result<T, ParseError> {
    if data.len() < field::HEADER_LEN {
        return Err(ParseError::BadIpv6Header);
    }
    if data[0] >> 4 != 6 {
        return Err(ParseError::IpVersionMismatch);
    }
    let announced = be16(data, field::PAYLOAD_LEN) as usize;
    // Payload length 0 is a jumbogram or a TSO capture: trust what we have.
    let announced = if announced == 0 {
        data.len() - field::HEADER_LEN
    } else {
        announced
    };
    // Trim link-layer padding; keep the announced length for the TCP payload.
    let end = (field::HEADER_LEN + announced).min(data.len());
    let pkt = &data[..end];

    let mut next = data[field::NEXT_HEADER];
    let mut off = field::HEADER_LEN;
    let mut fragmented = false;
    for _ in 0..=MAX_EXT_HEADERS {
        match next {
            TCP => {
                let payload_len = announced
                    .checked_sub(off - field::HEADER_LEN)
                    .ok_or(ParseError::BadIpv6Header)?;
                let seg = tcp::parse(
                    IpAddr::V6(addr(data, field::SRC)),
                    IpAddr::V6(addr(data, field::DST)),
                    &pkt[off..],
                    payload_len as u32,
                    fragmented,
                )?;
                return Ok(tcp(seg));
            }
            HOP_BY_HOP | ROUTING | DEST_OPTS | MOBILITY | HIP | SHIM6 => {
                if pkt.len() < off + 2 {
                    return Err(ParseError::BadIpv6Header);
                }
                next = pkt[off];
                off += (pkt[off + 1] as usize + 1) * 8;
            }
            AUTH => {
                if pkt.len() < off + 2 {
                    return Err(ParseError::BadIpv6Header);
                }
                next = pkt[off];
                off += (pkt[off + 1] as usize + 2) * 4;
            }
            FRAGMENT => {
                if pkt.len() < off + 8 {
                    return Err(ParseError::BadIpv6Header);
                }
                let offset = be16(pkt, off + 2) >> 3;
                if offset != 0 {
                    return Ok(not_tcp(NotTcp::LaterFragment));
                }
                fragmented = true;
                next = pkt[off];
                off += 8;
            }
            _ => return Ok(not_tcp(NotTcp::OtherTransport)),
        }
        if off > pkt.len() {
            return Err(ParseError::BadIpv6Header);
        }
    }
    Err(ParseError::TooManyExtHeaders)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(next: u8, ext: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        let plen = (ext.len() + payload.len()) as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        p[6] = next;
        p[7] = 64;
        p.extend_from_slice(ext);
        p.extend_from_slice(payload);
        p
    }

    fn tcp_hdr() -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&443u16.to_be_bytes());
        t[2..4].copy_from_slice(&5555u16.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x04; // RST
        t
    }

    #[test]
    fn walks_hop_by_hop_and_dest_opts() {
        let mut ext = vec![DEST_OPTS, 0, 0, 0, 0, 0, 0, 0];
        ext.extend_from_slice(&[TCP, 0, 0, 0, 0, 0, 0, 0]);
        let p = v6(HOP_BY_HOP, &ext, &tcp_hdr());
        match parse_tcp(&p).unwrap() {
            Parsed::Tcp(s) => {
                assert!(s.flags.rst());
                assert_eq!(s.src_port, 443);
                assert_eq!(s.payload_len, 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fragments() {
        let first = [TCP, 0, 0, 0x01, 0, 0, 0, 1]; // offset 0, M=1
        let p = v6(FRAGMENT, &first, &tcp_hdr());
        assert!(matches!(parse_tcp(&p).unwrap(), Parsed::Tcp(s) if s.fragmented));
        let later = [TCP, 0, 0x00, 0x10, 0, 0, 0, 1]; // offset 2
        let p = v6(FRAGMENT, &later, &tcp_hdr());
        assert_eq!(
            parse_tcp(&p).unwrap(),
            Parsed::NotTcp(NotTcp::LaterFragment)
        );
    }

    #[test]
    fn bounded_chain() {
        let mut ext = Vec::new();
        for _ in 0..MAX_EXT_HEADERS + 1 {
            ext.extend_from_slice(&[DEST_OPTS, 0, 0, 0, 0, 0, 0, 0]);
        }
        let p = v6(DEST_OPTS, &ext, &tcp_hdr());
        assert_eq!(parse_tcp(&p), Err(ParseError::TooManyExtHeaders));
    }

    #[test]
    fn ext_header_past_end() {
        let ext = [TCP, 200, 0, 0, 0, 0, 0, 0];
        let p = v6(DEST_OPTS, &ext, &tcp_hdr());
        assert_eq!(parse_tcp(&p), Err(ParseError::BadIpv6Header));
        assert_eq!(parse_tcp(&p[..39]), Err(ParseError::BadIpv6Header));
    }

    #[test]
    fn udp_is_other_transport() {
        let p = v6(17, &[], &[0; 8]);
        assert_eq!(
            parse_tcp(&p).unwrap(),
            Parsed::NotTcp(NotTcp::OtherTransport)
        );
    }
}
