//! IPv6 with a bounded walk over extension headers and fragments.

use std::net::{IpAddr, Ipv6Addr};

#[cfg(test)]
use super::Parsed;
use super::{be16, be32, room, tcp, EmitError, NotTcp, ParseError};

mod field {
    pub const VER_CLASS_LABEL: usize = 0;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
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

const FLOW_LABEL_MASK: u32 = 0x000f_ffff;

/// Whether `next_header` is an extension header the parser walks.
pub fn is_extension_header(next_header: u8) -> bool {
    matches!(
        next_header,
        HOP_BY_HOP | ROUTING | FRAGMENT | AUTH | DEST_OPTS | MOBILITY | HIP | SHIM6
    )
}

#[inline]
fn addr(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

/// A checked view over the fixed IPv6 header.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6Packet<'a> {
    buf: &'a [u8],
    /// End of the packet within `buf`: min(40 + payload length, captured).
    end: usize,
    /// Payload length the header announces (0, a jumbogram or a TSO
    /// capture, reads as what was captured).
    payload_len: u32,
}

impl<'a> Ipv6Packet<'a> {
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, ParseError> {
        if buf.len() < field::HEADER_LEN {
            return Err(ParseError::BadIpv6Header);
        }
        if buf[field::VER_CLASS_LABEL] >> 4 != 6 {
            return Err(ParseError::IpVersionMismatch);
        }
        let announced = be16(buf, field::PAYLOAD_LEN) as usize;
        // Payload length 0 is a jumbogram or a TSO capture: trust what we have.
        let announced = if announced == 0 {
            buf.len() - field::HEADER_LEN
        } else {
            announced
        };
        Ok(Ipv6Packet {
            buf,
            // Trim link-layer padding; keep the announced length for TCP.
            end: (field::HEADER_LEN + announced).min(buf.len()),
            payload_len: announced as u32,
        })
    }
    #[inline]
    pub fn src(&self) -> Ipv6Addr {
        addr(self.buf, field::SRC)
    }
    #[inline]
    pub fn dst(&self) -> Ipv6Addr {
        addr(self.buf, field::DST)
    }
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buf[field::NEXT_HEADER]
    }
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buf[field::HOP_LIMIT]
    }
    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32(self.buf, field::VER_CLASS_LABEL) & FLOW_LABEL_MASK
    }
    /// Captured payload (extension headers included), trimmed of
    /// link-layer padding.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[field::HEADER_LEN..self.end]
    }
    #[inline]
    pub fn payload_len(&self) -> u32 {
        self.payload_len
    }
}

/// An IPv6 header without extension headers as a frame builder chooses it.
/// Version, payload length and next header are written by
/// [`Ipv6Repr::emit`]; the traffic class is written as zero and not read
/// back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    /// 20 bits.
    pub flow_label: u32,
}

impl Ipv6Repr {
    pub const HEADER_LEN: usize = field::HEADER_LEN;

    pub fn parse(p: &Ipv6Packet<'_>) -> Ipv6Repr {
        Ipv6Repr {
            src: p.src(),
            dst: p.dst(),
            hop_limit: p.hop_limit(),
            flow_label: p.flow_label(),
        }
    }

    /// Write the 40-byte header for `payload_len` bytes of `next_header` at
    /// the start of `buf`.
    pub fn emit(
        &self,
        buf: &mut [u8],
        next_header: u8,
        payload_len: usize,
    ) -> Result<(), EmitError> {
        let max = usize::from(u16::MAX);
        if payload_len > max {
            return Err(EmitError::TooLarge {
                field: "IPv6 payload length",
                value: payload_len,
                max,
            });
        }
        if self.flow_label > FLOW_LABEL_MASK {
            return Err(EmitError::TooLarge {
                field: "IPv6 flow label",
                value: self.flow_label as usize,
                max: FLOW_LABEL_MASK as usize,
            });
        }
        room(buf, field::HEADER_LEN)?;
        let h = &mut buf[..field::HEADER_LEN];
        let first = (6 << 28) | self.flow_label;
        h[field::VER_CLASS_LABEL..field::VER_CLASS_LABEL + 4].copy_from_slice(&first.to_be_bytes());
        h[field::PAYLOAD_LEN..field::PAYLOAD_LEN + 2]
            .copy_from_slice(&(payload_len as u16).to_be_bytes());
        h[field::NEXT_HEADER] = next_header;
        h[field::HOP_LIMIT] = self.hop_limit;
        h[field::SRC..field::SRC + 16].copy_from_slice(&self.src.octets());
        h[field::DST..field::DST + 16].copy_from_slice(&self.dst.octets());
        Ok(())
    }
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
    let ip = Ipv6Packet::new_checked(data)?;
    let mut announced = ip.payload_len() as usize;
    let pkt = ip.payload();
    // Payload length 0: a jumbogram (RFC 2675), whose hop-by-hop Jumbo
    // Payload option says the length, or a BIG TCP segment captured on the
    // sending host without that option (Linux 6.3 on), where the captured
    // length is all there is.
    let jumbo = be16(data, field::PAYLOAD_LEN) == 0;

    let mut next = ip.next_header();
    // Offsets from the end of the fixed header.
    let mut off = 0;
    let mut fragmented = false;
    for _ in 0..=MAX_EXT_HEADERS {
        match next {
            TCP => {
                let payload_len = announced
                    .checked_sub(off)
                    .ok_or(ParseError::BadIpv6Header)?;
                let seg = tcp::parse(
                    IpAddr::V6(ip.src()),
                    IpAddr::V6(ip.dst()),
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
                let len = (pkt[off + 1] as usize + 1) * 8;
                if jumbo && off == 0 && next == HOP_BY_HOP {
                    if let Some(n) = pkt.get(2..len.min(pkt.len())).and_then(jumbo_payload) {
                        announced = n as usize;
                    }
                }
                next = pkt[off];
                off += len;
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

/// Option type of RFC 2675's Jumbo Payload option, and its data length.
const OPT_JUMBO: u8 = 0xc2;
const OPT_JUMBO_LEN: u8 = 4;
const OPT_PAD1: u8 = 0;

/// The Jumbo Payload length among hop-by-hop `options` (TLVs), if there.
fn jumbo_payload(options: &[u8]) -> Option<u32> {
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        if kind == OPT_PAD1 {
            i += 1;
            continue;
        }
        let len = *options.get(i + 1)?;
        if kind == OPT_JUMBO && len == OPT_JUMBO_LEN {
            return Some(be32(options.get(i + 2..i + 6)?, 0));
        }
        i += 2 + len as usize;
    }
    None
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
    fn repr_round_trip() {
        let r = Ipv6Repr {
            src: "2001:2::1".parse().unwrap(),
            dst: "2001:2:0:ffff::2".parse().unwrap(),
            hop_limit: 255,
            flow_label: 0xf_ffff,
        };
        for (label, payload_len) in [(0, 3), (1, 9), (0xf_ffff, 65_535)] {
            let r = Ipv6Repr {
                flow_label: label,
                ..r
            };
            let mut buf = [0xaau8; 49];
            r.emit(&mut buf, 17, payload_len).unwrap();
            let p = Ipv6Packet::new_checked(&buf).unwrap();
            assert_eq!(Ipv6Repr::parse(&p), r);
            assert_eq!((p.next_header(), p.payload_len()), (17, payload_len as u32));
            assert_eq!(p.payload().len(), payload_len.min(9));
        }
        let mut short = [0x11u8; 39];
        assert_eq!(
            r.emit(&mut short, TCP, 0),
            Err(EmitError::BufferTooShort { need: 40, have: 39 })
        );
        assert_eq!(short, [0x11; 39]);
        let mut buf = [0u8; 40];
        assert!(matches!(
            r.emit(&mut buf, TCP, 65_536),
            Err(EmitError::TooLarge { .. })
        ));
        let wide = Ipv6Repr {
            flow_label: 0x10_0000,
            ..r
        };
        assert!(matches!(
            wide.emit(&mut buf, TCP, 0),
            Err(EmitError::TooLarge { .. })
        ));
        assert_eq!(
            Ipv6Packet::new_checked(&buf[..39]).unwrap_err(),
            ParseError::BadIpv6Header
        );
        assert!(is_extension_header(DEST_OPTS) && !is_extension_header(TCP));
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

    /// RFC 2675 jumbogram: payload length 0 and a hop-by-hop Jumbo Payload
    /// option, which gives the length even where the capture is cut short;
    /// without the option (BIG TCP from Linux 6.3 on) the captured length.
    #[test]
    fn jumbograms() {
        let mut data = tcp_hdr();
        data[13] = 0x18; // PSH|ACK
        data.extend_from_slice(&[0xab; 100]);
        // Pad1, PadN(1), Jumbo Payload, PadN(2): 16 bytes of hop-by-hop
        // header; the jumbo length counts it, the TCP header and 70 000
        // bytes of data (100 of them captured).
        let jumbo = (16u32 + 20 + 70_000).to_be_bytes();
        let mut hbh = vec![TCP, 1, 0, 1, 1, 0, 0xc2, 4];
        hbh.extend_from_slice(&jumbo);
        hbh.extend_from_slice(&[1, 2, 0, 0]);
        assert_eq!(hbh.len(), 16);
        let mut p = v6(HOP_BY_HOP, &hbh, &data);
        p[4..6].fill(0);
        match parse_tcp(&p).unwrap() {
            Parsed::Tcp(s) => assert_eq!(s.payload_len, 70_000),
            other => panic!("{other:?}"),
        }
        // No option: what was captured.
        let mut p = v6(TCP, &[], &data);
        p[4..6].fill(0);
        match parse_tcp(&p).unwrap() {
            Parsed::Tcp(s) => assert_eq!(s.payload_len, 100),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn jumbo_option_among_others() {
        assert_eq!(jumbo_payload(&[0, 1, 0, 0xc2, 4, 0, 1, 0, 0]), Some(65_536));
        assert_eq!(jumbo_payload(&[1, 4, 0, 0, 0, 0]), None);
        assert_eq!(jumbo_payload(&[0xc2, 4, 0, 1]), None, "cut short");
        assert_eq!(jumbo_payload(&[0xc2, 2, 0, 1, 0, 0]), None, "wrong length");
        assert_eq!(jumbo_payload(&[1]), None);
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
