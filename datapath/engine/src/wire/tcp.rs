//! TCP header, flags and the options that matter for judging resets:
//! MSS, window scale, SACK-permitted, SACK blocks and timestamps.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{be16, be32, checksum, pseudo_header_sum, room, EmitError, ParseError, Segment};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    /// Bytes needed to read everything up to and including the flags.
    pub const FLAGS_END: usize = 14;
    pub const MIN_LEN: usize = 20;
    /// Data offset 15: 60 bytes, 40 of them options.
    pub const MAX_LEN: usize = 60;
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

/// The letters of tcpdump's notation, in its order.
const NOTATION: [(u16, char); 8] = [
    (TcpFlags::SYN, 'S'),
    (TcpFlags::FIN, 'F'),
    (TcpFlags::PSH, 'P'),
    (TcpFlags::RST, 'R'),
    (TcpFlags::URG, 'U'),
    (TcpFlags::ECE, 'E'),
    (TcpFlags::CWR, 'W'),
    (TcpFlags::ACK, '.'),
];

/// tcpdump's notation: `S`, `S.`, `R.`, `FP.`...
impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        for (bit, c) in NOTATION {
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

/// Reads what [`Display`](fmt::Display) writes (the notation has no NS
/// bit: it reads back without it).
impl std::str::FromStr for TcpFlags {
    type Err = String;
    fn from_str(s: &str) -> Result<TcpFlags, String> {
        if s == "none" {
            return Ok(TcpFlags(0));
        }
        let mut flags = 0;
        for c in s.chars() {
            match NOTATION.iter().find(|&&(_, n)| n == c) {
                Some(&(bit, _)) => flags |= bit,
                None => return Err(format!("`{s}` is not TCP flags in tcpdump's notation")),
            }
        }
        Ok(TcpFlags(flags))
    }
}

impl Serialize for TcpFlags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TcpFlags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TcpFlags, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
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
const OPT_FAST_OPEN: u8 = 34;

/// Walk options the way Linux's `tcp_parse_options()` does, handing each
/// one's kind and body to `each`: stop at EOL, at a length below 2, or at a
/// length running past the header. At most 40 bytes are walked.
#[inline(always)]
fn for_each_option<'a>(mut b: &'a [u8], mut each: impl FnMut(u8, &'a [u8])) {
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
        each(kind, &b[2..len]);
        b = &b[len..];
    }
}

/// The (left, right) edges of the SACK blocks in an option body, if it
/// is one (a whole number of 8-byte blocks, at least one).
#[inline]
fn sack_blocks(body: &[u8]) -> Option<impl Iterator<Item = (u32, u32)> + '_> {
    (body.len() >= 8 && body.len().is_multiple_of(8)).then(|| {
        body.chunks_exact(8)
            .map(|block| (be32(block, 0), be32(block, 4)))
    })
}

/// The highest right edge in sequence space.
#[inline]
fn highest_edge(blocks: impl Iterator<Item = (u32, u32)>) -> Option<u32> {
    let mut edge: Option<u32> = None;
    for (_, right) in blocks {
        edge = Some(match edge {
            Some(e) if crate::seq::after(e, right) => e,
            _ => right,
        });
    }
    edge
}

impl TcpOptions {
    /// Parse options the way Linux's `tcp_parse_options()` does, ignoring
    /// a known option whose length is wrong.
    #[inline]
    pub fn parse(b: &[u8]) -> TcpOptions {
        let mut o = TcpOptions::default();
        for_each_option(b, |kind, body| match (kind, body.len()) {
            (OPT_MSS, 2) => o.mss = Some(be16(body, 0)),
            (OPT_WSCALE, 1) => o.window_scale = Some(body[0]),
            (OPT_SACK_PERM, 0) => o.sack_permitted = true,
            (OPT_TIMESTAMP, 8) => o.timestamps = Some((be32(body, 0), be32(body, 4))),
            (OPT_SACK, _) => {
                if let Some(blocks) = sack_blocks(body) {
                    o.sack_right_edge = highest_edge(blocks);
                }
            }
            _ => {}
        });
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
    /// The options and the payload, if the whole header (options included)
    /// was captured and its data offset is at least 5.
    #[inline]
    pub fn options_and_payload(&self) -> Option<(&'a [u8], &'a [u8])> {
        let hlen = self.header_len();
        if hlen < field::MIN_LEN || self.buf.len() < hlen {
            return None;
        }
        Some((&self.buf[field::MIN_LEN..hlen], &self.buf[hlen..]))
    }
    /// The checksum is right for a segment from `src` to `dst`, taking the
    /// view as the whole segment (so only when all of it was captured).
    pub fn checksum_ok(&self, src: IpAddr, dst: IpAddr) -> bool {
        let Ok(len) = u32::try_from(self.buf.len()) else {
            return false;
        };
        pseudo_header_sum(src, dst, len).is_some_and(|sum| checksum(self.buf, sum) == 0)
    }
}

/// SACK blocks (left, right) as a segment carries them: at most four fit
/// in 40 bytes of options, three beside timestamps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SackBlocks {
    /// `blocks[len..]` stay (0, 0), so equal lists compare equal.
    blocks: [(u32, u32); SackBlocks::MAX],
    len: u8,
}

impl SackBlocks {
    pub const MAX: usize = 4;

    /// `None` for more than [`SackBlocks::MAX`] blocks.
    pub fn new(blocks: &[(u32, u32)]) -> Option<SackBlocks> {
        let mut out = SackBlocks::default();
        for &b in blocks {
            if !out.push(b) {
                return None;
            }
        }
        Some(out)
    }

    /// Append a block; false (and nothing changed) when full.
    pub fn push(&mut self, block: (u32, u32)) -> bool {
        let Some(slot) = self.blocks.get_mut(self.len as usize) else {
            return false;
        };
        *slot = block;
        self.len += 1;
        true
    }

    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.blocks[..self.len as usize]
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A TCP segment as a frame builder chooses it, options as
/// [`TcpOptions::parse`] reads them (plus the SACK blocks themselves and a
/// TCP Fast Open cookie). The data offset, checksum and option layout are
/// written by [`TcpRepr::emit`]; the urgent pointer is written as zero.
///
/// Options go out in the order and with the padding of Linux's
/// `tcp_options_write()`: MSS; SACK-permitted and timestamps in one word
/// (or `NOP NOP TS`, or `NOP NOP SACK-permitted`); `NOP WS`; `NOP NOP
/// SACK`; Fast Open, NOP-padded to a word. So a frame built here carries
/// the bytes a Linux host would send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// Raw (unscaled) window field.
    pub window: u16,
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    pub sack_blocks: SackBlocks,
    /// A Fast Open option (RFC 7413) and its cookie; empty asks for one.
    pub fast_open: Option<&'a [u8]>,
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// The fixed header, without options.
    pub const MIN_HEADER_LEN: usize = field::MIN_LEN;

    /// Read a segment whose header (options included) was captured whole;
    /// the view's bytes after the header are the payload. Options are read
    /// as [`TcpOptions::parse`] reads them; unknown ones are skipped.
    pub fn parse(h: &TcpHeader<'a>) -> Result<TcpRepr<'a>, ParseError> {
        let (options, payload) = h.options_and_payload().ok_or(ParseError::BadTcpHeader)?;
        let mut r = TcpRepr {
            src_port: h.src_port(),
            dst_port: h.dst_port(),
            seq: h.seq(),
            ack: h.ack(),
            flags: h.flags(),
            window: be16(h.buf, field::WINDOW),
            payload,
            ..TcpRepr::default()
        };
        for_each_option(options, |kind, body| match (kind, body.len()) {
            (OPT_MSS, 2) => r.mss = Some(be16(body, 0)),
            (OPT_WSCALE, 1) => r.window_scale = Some(body[0]),
            (OPT_SACK_PERM, 0) => r.sack_permitted = true,
            (OPT_TIMESTAMP, 8) => r.timestamps = Some((be32(body, 0), be32(body, 4))),
            (OPT_SACK, _) => {
                if let Some(blocks) = sack_blocks(body) {
                    r.sack_blocks = SackBlocks::default();
                    for b in blocks {
                        r.sack_blocks.push(b);
                    }
                }
            }
            (OPT_FAST_OPEN, _) => r.fast_open = Some(body),
            _ => {}
        });
        Ok(r)
    }

    /// What [`TcpOptions::parse`] reads from the emitted segment.
    pub fn options(&self) -> TcpOptions {
        TcpOptions {
            mss: self.mss,
            window_scale: self.window_scale,
            sack_permitted: self.sack_permitted,
            timestamps: self.timestamps,
            sack_right_edge: highest_edge(self.sack_blocks.as_slice().iter().copied()),
        }
    }

    /// Bytes of options, padding included.
    pub fn options_len(&self) -> usize {
        let mss = if self.mss.is_some() { 4 } else { 0 };
        let ts_and_sack_perm = match (self.timestamps.is_some(), self.sack_permitted) {
            (true, _) => 12,
            (false, true) => 4,
            (false, false) => 0,
        };
        let wscale = if self.window_scale.is_some() { 4 } else { 0 };
        let sack = if self.sack_blocks.is_empty() {
            0
        } else {
            4 + 8 * self.sack_blocks.len()
        };
        let fast_open = self
            .fast_open
            .map_or(0, |c| (2 + c.len()).next_multiple_of(4));
        mss + ts_and_sack_perm + wscale + sack + fast_open
    }

    /// Header length, options included.
    pub fn header_len(&self) -> usize {
        field::MIN_LEN + self.options_len()
    }

    /// Header and payload: the bytes [`TcpRepr::emit`] writes.
    pub fn len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Never: a segment has at least its 20-byte header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// [`TcpRepr::len`], if the options fit in a header.
    pub(crate) fn checked_len(&self) -> Result<usize, EmitError> {
        let options_len = self.options_len();
        let max = field::MAX_LEN - field::MIN_LEN;
        if options_len > max {
            return Err(EmitError::TooLarge {
                field: "TCP options",
                value: options_len,
                max,
            });
        }
        Ok(field::MIN_LEN + options_len + self.payload.len())
    }

    /// Write the segment at the start of `buf`, with the checksum of its
    /// pseudo-header from `src` to `dst`; returns [`TcpRepr::len`].
    pub fn emit(&self, buf: &mut [u8], src: IpAddr, dst: IpAddr) -> Result<usize, EmitError> {
        let len = self.checked_len()?;
        let hlen = len - self.payload.len();
        let Some(sum) = u32::try_from(len)
            .ok()
            .and_then(|l| pseudo_header_sum(src, dst, l))
        else {
            return Err(if src.is_ipv4() == dst.is_ipv4() {
                EmitError::TooLarge {
                    field: "TCP length",
                    value: len,
                    max: u32::MAX as usize,
                }
            } else {
                EmitError::MixedFamilies
            });
        };
        room(buf, len)?;
        let seg = &mut buf[..len];
        seg[field::SRC_PORT..field::SRC_PORT + 2].copy_from_slice(&self.src_port.to_be_bytes());
        seg[field::DST_PORT..field::DST_PORT + 2].copy_from_slice(&self.dst_port.to_be_bytes());
        seg[field::SEQ..field::SEQ + 4].copy_from_slice(&self.seq.to_be_bytes());
        seg[field::ACK..field::ACK + 4].copy_from_slice(&self.ack.to_be_bytes());
        seg[field::DATA_OFF] = ((hlen / 4) as u8) << 4 | (self.flags.0 >> 8) as u8 & 1;
        seg[field::FLAGS] = self.flags.0 as u8;
        seg[field::WINDOW..field::WINDOW + 2].copy_from_slice(&self.window.to_be_bytes());
        // Checksum zero while it is computed; urgent pointer zero.
        seg[field::CHECKSUM..field::MIN_LEN].fill(0);
        self.emit_options(&mut seg[field::MIN_LEN..hlen]);
        seg[hlen..].copy_from_slice(self.payload);
        let sum = checksum(seg, sum);
        seg[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&sum.to_be_bytes());
        Ok(len)
    }

    /// The options into `out`, exactly [`TcpRepr::options_len`] bytes.
    fn emit_options(&self, out: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let [hi, lo] = mss.to_be_bytes();
            put(&[OPT_MSS, 4, hi, lo]);
        }
        match (self.timestamps, self.sack_permitted) {
            (Some((val, ecr)), sack_perm) => {
                if sack_perm {
                    put(&[OPT_SACK_PERM, 2, OPT_TIMESTAMP, 10]);
                } else {
                    put(&[OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10]);
                }
                put(&val.to_be_bytes());
                put(&ecr.to_be_bytes());
            }
            (None, true) => put(&[OPT_NOP, OPT_NOP, OPT_SACK_PERM, 2]),
            (None, false) => {}
        }
        if let Some(shift) = self.window_scale {
            put(&[OPT_NOP, OPT_WSCALE, 3, shift]);
        }
        if !self.sack_blocks.is_empty() {
            let len = 2 + 8 * self.sack_blocks.len() as u8;
            put(&[OPT_NOP, OPT_NOP, OPT_SACK, len]);
            for &(left, right) in self.sack_blocks.as_slice() {
                put(&left.to_be_bytes());
                put(&right.to_be_bytes());
            }
        }
        if let Some(cookie) = self.fast_open {
            let len = 2 + cookie.len();
            put(&[OPT_FAST_OPEN, len as u8]);
            put(cookie);
            for _ in len..len.next_multiple_of(4) {
                put(&[OPT_NOP]);
            }
        }
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

    #[test]
    fn flags_read_back_from_tcpdumps_notation() {
        for bits in [
            0,
            TcpFlags::SYN,
            TcpFlags::SYN | TcpFlags::ACK,
            TcpFlags::RST | TcpFlags::ACK,
            TcpFlags::FIN | TcpFlags::PSH | TcpFlags::URG | TcpFlags::ECE | TcpFlags::CWR,
        ] {
            let flags = TcpFlags(bits);
            assert_eq!(flags.to_string().parse::<TcpFlags>(), Ok(flags), "{flags}");
            let json = serde_json::to_string(&flags).unwrap();
            assert_eq!(
                serde_json::from_str::<TcpFlags>(&json).unwrap(),
                flags,
                "{json}"
            );
        }
        assert_eq!(
            "R.".parse::<TcpFlags>(),
            Ok(TcpFlags(TcpFlags::RST | TcpFlags::ACK))
        );
        assert!("RX".parse::<TcpFlags>().is_err());
        assert!(serde_json::from_str::<TcpFlags>("\"syn\"").is_err());
    }
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
