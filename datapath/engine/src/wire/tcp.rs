//! TCP header, flags and the options that matter for judging resets:
//! MSS, window scale, SACK-permitted, SACK blocks and timestamps.

use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};

use super::{be16, be32, ParseError, Segment};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    /// Bytes needed to read everything up to and including the flags.
    pub const FLAGS_END: usize = 14;
    pub const MIN_LEN: usize = 20;
}

/// The TCP flag bits (the low 8 bits of the flags field plus the NS bit,
/// which lives in the data-offset byte).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u16);

impl TcpFlags {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
    pub const PSH: u16 = 0x008;
    pub const ACK: u16 = 0x010;
    pub const URG: u16 = 0x020;
    pub const ECE: u16 = 0x040;
    pub const CWR: u16 = 0x080;
    pub const NS: u16 = 0x100;

    #[inline]
    pub const fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    #[inline]
    pub const fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    #[inline]
    pub const fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    #[inline]
    pub const fn psh(self) -> bool {
        self.0 & Self::PSH != 0
    }
    #[inline]
    pub const fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
    #[inline]
    pub const fn urg(self) -> bool {
        self.0 & Self::URG != 0
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// tcpdump's notation: `S`, `S.`, `R.`, `FP.`...
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u16, char); 8] = [
            (TcpFlags::SYN, 'S'),
            (TcpFlags::FIN, 'F'),
            (TcpFlags::PSH, 'P'),
            (TcpFlags::RST, 'R'),
            (TcpFlags::URG, 'U'),
            (TcpFlags::ECE, 'E'),
            (TcpFlags::CWR, 'W'),
            (TcpFlags::ACK, '.'),
        ];
        let mut any = false;
        for (bit, c) in NAMES {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
                any = true;
            }
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

impl Serialize for TcpFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The options we act on. Absent options read as `None`/`false`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    /// Shift count as sent; clamped to 14 on use, as Linux does.
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// Right edge of the highest SACK block in this segment, if any.
    pub sack_right_edge: Option<u32>,
}

const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WSCALE: u8 = 3;
const OPT_SACK_PERM: u8 = 4;
const OPT_SACK: u8 = 5;
const OPT_TIMESTAMP: u8 = 8;

impl TcpOptions {
    /// Parse options the way Linux's `tcp_parse_options()` does: stop at EOL,
    /// at a length below 2, or at a length running past the header; ignore
    /// a known option whose length is wrong. At most 40 bytes are walked.
    #[inline]
    pub fn parse(mut b: &[u8]) -> TcpOptions {
        let mut o = TcpOptions::default();
        while let Some(&kind) = b.first() {
            match kind {
                OPT_EOL => break,
                OPT_NOP => {
                    b = &b[1..];
                    continue;
                }
                _ => {}
            }
            let Some(&len) = b.get(1) else { break };
            let len = len as usize;
            if len < 2 || len > b.len() {
                break;
            }
            let body = &b[2..len];
            match (kind, body.len()) {
                (OPT_MSS, 2) => o.mss = Some(be16(body, 0)),
                (OPT_WSCALE, 1) => o.window_scale = Some(body[0]),
                (OPT_SACK_PERM, 0) => o.sack_permitted = true,
                (OPT_TIMESTAMP, 8) => o.timestamps = Some((be32(body, 0), be32(body, 4))),
                (OPT_SACK, n) if n >= 8 && n % 8 == 0 => {
                    let mut edge: Option<u32> = None;
                    for block in body.chunks_exact(8) {
                        let right = be32(block, 4);
                        edge = Some(match edge {
                            Some(e) if crate::seq::after(e, right) => e,
                            _ => right,
                        });
                    }
                    o.sack_right_edge = edge;
                }
                _ => {}
            }
            b = &b[len..];
        }
        o
    }
}

/// A checked view over a TCP header of which at least the flags byte was
/// captured.
#[derive(Clone, Copy, Debug)]
pub struct TcpHeader<'a> {
    buf: &'a [u8],
}

impl<'a> TcpHeader<'a> {
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, ParseError> {
        if buf.len() < field::FLAGS_END {
            return Err(ParseError::BadTcpHeader);
        }
        Ok(TcpHeader { buf })
    }
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buf, field::SRC_PORT)
    }
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, field::DST_PORT)
    }
    #[inline]
    pub fn seq(&self) -> u32 {
        be32(self.buf, field::SEQ)
    }
    #[inline]
    pub fn ack(&self) -> u32 {
        be32(self.buf, field::ACK)
    }
    /// Header length in bytes as announced by the data offset.
    #[inline]
    pub fn header_len(&self) -> usize {
        ((self.buf[field::DATA_OFF] >> 4) as usize) * 4
    }
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        let ns = ((self.buf[field::DATA_OFF] & 1) as u16) << 8;
        TcpFlags(ns | self.buf[field::FLAGS] as u16)
    }
    /// The whole fixed header was captured.
    #[inline]
    pub fn fixed_complete(&self) -> bool {
        self.buf.len() >= field::MIN_LEN
    }
    #[inline]
    pub fn window(&self) -> Option<u16> {
        self.fixed_complete().then(|| be16(self.buf, field::WINDOW))
    }
}

/// Build a [`Segment`] from the transport bytes of an IP datagram.
/// `tcp_len` is the TCP length the IP header announces (header + data).
/// Always inlined: the caller then builds its result in place, and a
/// caller that reads a few fields (the engine) never builds the rest.
#[inline(always)]
pub(crate) fn parse(
    src: IpAddr,
    dst: IpAddr,
    buf: &[u8],
    tcp_len: u32,
    fragmented: bool,
) -> Result<Segment<'_>, ParseError> {
    let h = TcpHeader::new_checked(buf)?;
    let hlen = h.header_len();
    if hlen < field::MIN_LEN {
        return Err(ParseError::BadTcpHeader);
    }
    let header_complete = buf.len() >= hlen;
    let (window, options, payload) = if header_complete {
        let opts = if hlen > field::MIN_LEN {
            TcpOptions::parse(&buf[field::MIN_LEN..hlen])
        } else {
            TcpOptions::default()
        };
        (be16(buf, field::WINDOW), opts, &buf[hlen..])
    } else {
        (
            h.window().unwrap_or(0),
            TcpOptions::default(),
            &buf[buf.len()..],
        )
    };
    Ok(Segment {
        src,
        dst,
        src_port: h.src_port(),
        dst_port: h.dst_port(),
        seq: h.seq(),
        ack: h.ack(),
        flags: h.flags(),
        window,
        options,
        payload_len: tcp_len.saturating_sub(hlen as u32),
        header_complete,
        fragmented,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));

    #[test]
    fn linux_syn_options() {
        // mss 1460, sackOK, TS val 1 ecr 0, nop, wscale 7
        let opts = [
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let o = TcpOptions::parse(&opts);
        assert_eq!(o.mss, Some(1460));
        assert!(o.sack_permitted);
        assert_eq!(o.timestamps, Some((1, 0)));
        assert_eq!(o.window_scale, Some(7));
    }

    #[test]
    fn sack_blocks_highest_edge() {
        let opts = [
            1, 1, 5, 18, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 30, 0, 0, 0, 40,
        ];
        assert_eq!(TcpOptions::parse(&opts).sack_right_edge, Some(40));
    }

    #[test]
    fn malformed_options_stop_without_panic() {
        assert_eq!(TcpOptions::parse(&[2, 0, 5, 5]), TcpOptions::default());
        assert_eq!(TcpOptions::parse(&[2, 40, 1]), TcpOptions::default());
        assert_eq!(TcpOptions::parse(&[3]), TcpOptions::default());
        // wrong length for a known kind is skipped, parsing continues
        let o = TcpOptions::parse(&[2, 3, 9, 3, 3, 5]);
        assert_eq!(o.mss, None);
        assert_eq!(o.window_scale, Some(5));
    }

    #[test]
    fn partial_header_keeps_flags() {
        let mut h = [0u8; 20];
        h[12] = 5 << 4;
        h[13] = 0x14; // RST|ACK
        let s = parse(A, B, &h[..14], 20, false).unwrap();
        assert!(s.flags.rst() && s.flags.ack());
        assert!(!s.header_complete);
        assert_eq!(s.window, 0);
        assert_eq!(
            parse(A, B, &h[..13], 20, false),
            Err(ParseError::BadTcpHeader)
        );
        h[12] = 4 << 4;
        assert_eq!(parse(A, B, &h, 20, false), Err(ParseError::BadTcpHeader));
    }

    #[test]
    fn payload_length_from_ip() {
        let mut h = vec![0u8; 24];
        h[12] = 5 << 4;
        h[13] = 0x18;
        let s = parse(A, B, &h, 1000, false).unwrap();
        assert_eq!(s.payload_len, 980);
        assert_eq!(s.payload.len(), 4);
        assert_eq!(format!("{}", s.flags), "P.");
    }
}
