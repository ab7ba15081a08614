//! Zero-copy parsing of captured frames down to the TCP header.
//!
//! Every view here follows the same contract: a `new_checked` constructor
//! validates lengths once, after which no accessor can index out of bounds.
//! Nothing allocates, nothing loops without a bound (VLAN tags ≤ 2, IPv6
//! extension headers ≤ [`ipv6::MAX_EXT_HEADERS`], TCP options ≤ 40 bytes), and
//! every malformed input becomes a [`ParseError`] — never a panic.
//!
//! [`parse`] is the one entry point used by the engine, the pcap reader, the
//! fuzzers and the benchmarks.
//!
//! # Writing frames
//!
//! The module that reads a header also writes it, smoltcp style: a small
//! `Repr` per header ([`EthernetRepr`], [`Ipv4Repr`], [`Ipv6Repr`],
//! [`TcpRepr`]) is what a builder chooses, `emit` writes it into a caller's
//! buffer (never allocating, filling the IPv4 header checksum and the TCP
//! checksum over its pseudo-header) and `parse` reads it back from the
//! checked views. [`TcpFrameRepr`] is the three together, the frame the
//! benchmarks, the tests and the lab send. What is derived — lengths,
//! protocol numbers, ethertypes, checksums — is written by `emit` from the
//! layer above and is not a field, so `parse(emit(r)) == r` for every `r`.

pub mod ethernet;
mod frame;
pub mod ipv4;
pub mod ipv6;
pub mod link;
pub mod tcp;

use std::net::IpAddr;

pub use ethernet::{EthernetFrame, EthernetRepr};
pub use frame::{IpRepr, ReprError, TcpFrameRepr};
pub use ipv4::{Ipv4Packet, Ipv4Repr};
pub use ipv6::{Ipv6Packet, Ipv6Repr};
pub use link::LinkType;
pub use tcp::{SackBlocks, TcpFlags, TcpHeader, TcpOptions, TcpRepr};

crate::closed_enum! {
    /// Why a frame yielded no TCP header. Small and `Copy`: it is returned on
    /// the per-packet path and counted, never formatted there.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum ParseError: "parse error" {
        /// The link-layer header was cut short.
        TruncatedLink,
        /// More VLAN tags than we walk (two: 802.1ad outer, 802.1Q inner).
        TooManyVlanTags,
        /// IPv4 header shorter than 20 bytes, bad IHL, or total length below IHL.
        BadIpv4Header,
        /// IPv6 header cut short or an extension header running past the data.
        BadIpv6Header,
        /// More IPv6 extension headers than we walk.
        TooManyExtHeaders,
        /// The version nibble does not match the link layer's protocol.
        IpVersionMismatch,
        /// TCP header too short to hold the flags byte, or data offset < 5.
        BadTcpHeader,
    }
}

crate::closed_enum! {
    /// A well-formed frame that carries no TCP header we can use.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum NotTcp: "non-TCP frame kind" {
        /// Not IPv4 or IPv6 at the network layer (ARP, LLDP, STP, ...).
        NonIp,
        /// IP carrying another transport (UDP, ICMP, GRE, ...).
        OtherTransport,
        /// An IP fragment other than the first: the TCP header is elsewhere.
        LaterFragment,
    }
}

/// The parsed summary of a TCP segment: what the engine needs, copied out
/// of the frame, plus a borrow of the captured payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// Raw (unscaled) window field; 0 when the header was cut before it.
    pub window: u16,
    pub options: TcpOptions,
    /// Payload length the IP header announces (not what was captured).
    pub payload_len: u32,
    /// False when the capture ended inside the TCP header (only fields up to
    /// the flags byte are then reliable; window and options are zero).
    pub header_complete: bool,
    /// The first fragment of a fragmented IP datagram.
    pub fragmented: bool,
    /// Captured payload bytes (may be shorter than `payload_len`).
    pub payload: &'a [u8],
}

impl Segment<'_> {
    /// Sequence space the segment occupies: payload plus one for SYN and FIN.
    #[inline]
    pub fn seq_len(&self) -> u32 {
        self.payload_len
            .wrapping_add(self.flags.syn() as u32)
            .wrapping_add(self.flags.fin() as u32)
    }

    #[inline]
    pub fn is_ipv6(&self) -> bool {
        self.dst.is_ipv6()
    }
}

/// Outcome of parsing one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    Tcp(Segment<'a>),
    NotTcp(NotTcp),
}

/// Parse a frame of the given link type down to its TCP header.
#[inline]
pub fn parse(link: LinkType, frame: &[u8]) -> Result<Parsed<'_>, ParseError> {
    parse_with(link, frame, Parsed::Tcp, Parsed::NotTcp)
}

/// [`parse`] with the segment handed to `tcp` where it is built (always
/// inlined): the engine turns it into what it keeps right there, so the
/// segment never has to exist in memory and fields nobody reads are never
/// computed. A frame that carries no TCP goes to `not_tcp`.
#[inline(always)]
pub(crate) fn parse_with<'a, T>(
    link: LinkType,
    frame: &'a [u8],
    tcp: impl FnOnce(Segment<'a>) -> T,
    not_tcp: impl FnOnce(NotTcp) -> T,
) -> Result<T, ParseError> {
    let (l3, data) = link::network_layer(link, frame)?;
    match l3 {
        link::Network::Ipv4 => ipv4::parse_tcp_with(data, tcp, not_tcp),
        link::Network::Ipv6 => ipv6::parse_tcp_with(data, tcp, not_tcp),
        link::Network::Unknown => Ok(not_tcp(NotTcp::NonIp)),
        link::Network::ByVersion => match data.first().map(|b| b >> 4) {
            Some(4) => ipv4::parse_tcp_with(data, tcp, not_tcp),
            Some(6) => ipv6::parse_tcp_with(data, tcp, not_tcp),
            Some(_) => Ok(not_tcp(NotTcp::NonIp)),
            None => Err(ParseError::TruncatedLink),
        },
    }
}

/// Why a `Repr` could not be written. Checked before anything is written:
/// on error the buffer is as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("buffer of {have} bytes, {need} needed")]
    BufferTooShort { need: usize, have: usize },
    /// A value wider than its field on the wire.
    #[error("{field} of {value} does not fit (at most {max})")]
    TooLarge {
        field: &'static str,
        value: usize,
        max: usize,
    },
    /// An IPv4 and an IPv6 address in one pseudo-header.
    #[error("source and destination are of different address families")]
    MixedFamilies,
}

/// `Err` unless `buf` holds `need` bytes.
#[inline]
pub(crate) fn room(buf: &[u8], need: usize) -> Result<(), EmitError> {
    if buf.len() < need {
        return Err(EmitError::BufferTooShort {
            need,
            have: buf.len(),
        });
    }
    Ok(())
}

/// Sum of the big-endian 16-bit words of `data` (an odd tail padded with
/// zero) added to `acc`, not yet folded.
pub(crate) fn sum_words(data: &[u8], acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    let mut acc = acc;
    for w in &mut chunks {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// The Internet checksum (RFC 1071) of `data`, starting from the sum
/// `acc`. Over data that carries its own correct checksum it is 0.
pub(crate) fn checksum(data: &[u8], acc: u64) -> u16 {
    let mut acc = sum_words(data, acc);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The sum of a TCP pseudo-header (RFC 9293 §3.1, RFC 8200 §8.1):
/// addresses, protocol and the TCP length. `None` for mixed families.
pub(crate) fn pseudo_header_sum(src: IpAddr, dst: IpAddr, len: u32) -> Option<u64> {
    let addrs = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => sum_words(&s.octets(), sum_words(&d.octets(), 0)),
        (IpAddr::V6(s), IpAddr::V6(d)) => sum_words(&s.octets(), sum_words(&d.octets(), 0)),
        _ => return None,
    };
    Some(addrs + u64::from(ipv4::PROTO_TCP) + u64::from(len >> 16) + u64::from(len & 0xffff))
}

/// Read a big-endian u16 at `at`; callers have checked the length.
#[inline(always)]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_error_names() {
        crate::names::assert_consistent::<ParseError>();
    }

    #[test]
    fn not_tcp_names() {
        crate::names::assert_consistent::<NotTcp>();
    }
}
