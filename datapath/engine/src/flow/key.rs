//! A segment as tracking sees it: its flow's canonical 5-tuple, the side
//! that sent it, and the header fields tracking reads.

use std::net::IpAddr;

use crate::wire::{Segment, TcpFlags};

crate::closed_enum! {
    /// Which endpoint of a canonical key.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Side: "side" {
        /// The endpoint that sorts lower (address, then port).
        Lo,
        Hi,
    }
}

impl Side {
    #[inline]
    pub fn peer(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }
}

/// The 5-tuple in canonical order. IPv4 addresses are stored as
/// v4-mapped IPv6 with `v6` false, so the two families never collide.
/// Each address is two big-endian words (high, low): comparing the words
/// compares the addresses, and nothing handles them a byte at a time.
/// Packed (37 bytes, alignment 1) so that key and [`Flow`](super::Flow)
/// fill one 64-byte cache line of the flow table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, packed)]
pub struct FlowKey {
    lo_addr: [u64; 2],
    hi_addr: [u64; 2],
    lo_port: u16,
    hi_port: u16,
    v6: bool,
}

/// An address as two big-endian words; IPv4 as v4-mapped IPv6.
#[inline(always)]
fn addr_words(a: IpAddr) -> [u64; 2] {
    match a {
        IpAddr::V4(v4) => [0, 0xffff_0000_0000 | u64::from(u32::from(v4))],
        IpAddr::V6(v6) => {
            let x = u128::from(v6);
            [(x >> 64) as u64, x as u64]
        }
    }
}

impl std::hash::Hash for FlowKey {
    /// Whole words rather than byte slices: the hasher sees five integers.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // Every word goes in unmixed: folding two together would let an
        // attacker build keys that collide whatever the seed.
        let (lo, hi) = (self.lo_addr, self.hi_addr);
        h.write_u64(lo[0]);
        h.write_u64(lo[1]);
        h.write_u64(hi[0]);
        h.write_u64(hi[1]);
        h.write_u64(((self.lo_port as u64) << 32) | ((self.hi_port as u64) << 16) | self.v6 as u64);
    }
}

impl FlowKey {
    /// Key of a segment and the side its sender is on.
    #[inline]
    pub fn of(seg: &Segment<'_>) -> (FlowKey, Side) {
        let (s, d) = (addr_words(seg.src), addr_words(seg.dst));
        let v6 = seg.src.is_ipv6();
        // (address, port) pairs in order, compared as two integers.
        let wide = |w: [u64; 2]| (u128::from(w[0]) << 64) | u128::from(w[1]);
        let (sw, dw) = (wide(s), wide(d));
        if sw < dw || (sw == dw && seg.src_port <= seg.dst_port) {
            let key = FlowKey {
                lo_addr: s,
                hi_addr: d,
                lo_port: seg.src_port,
                hi_port: seg.dst_port,
                v6,
            };
            (key, Side::Lo)
        } else {
            let key = FlowKey {
                lo_addr: d,
                hi_addr: s,
                lo_port: seg.dst_port,
                hi_port: seg.src_port,
                v6,
            };
            (key, Side::Hi)
        }
    }

    #[inline]
    fn addr(&self, w: [u64; 2]) -> IpAddr {
        if self.v6 {
            IpAddr::V6(std::net::Ipv6Addr::from(
                (u128::from(w[0]) << 64) | u128::from(w[1]),
            ))
        } else {
            // Built from an IPv4 address: v4-mapped, the address in the
            // low 32 bits.
            IpAddr::V4(std::net::Ipv4Addr::from(w[1] as u32))
        }
    }

    /// Address and port of one side.
    #[inline]
    pub fn endpoint(&self, side: Side) -> (IpAddr, u16) {
        match side {
            Side::Lo => (self.addr(self.lo_addr), self.lo_port),
            Side::Hi => (self.addr(self.hi_addr), self.hi_port),
        }
    }
}

/// The header fields of a TCP segment that tracking reads: a [`Segment`]
/// without addresses, ports, payload and the options nobody judges by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub seq: u32,
    pub ack: u32,
    /// Payload length the IP header announces.
    pub payload_len: u32,
    pub sack_right_edge: Option<u32>,
    pub flags: TcpFlags,
    /// Raw (unscaled) window field.
    pub window: u16,
    pub window_scale: Option<u8>,
    pub header_complete: bool,
}

impl Header {
    #[inline(always)]
    pub fn of(seg: &Segment<'_>) -> Header {
        Header {
            seq: seg.seq,
            ack: seg.ack,
            payload_len: seg.payload_len,
            sack_right_edge: seg.options.sack_right_edge,
            flags: seg.flags,
            window: seg.window,
            window_scale: seg.options.window_scale,
            header_complete: seg.header_complete,
        }
    }

    /// Sequence space the segment occupies: payload plus one for SYN and FIN.
    #[inline]
    pub(super) fn seq_len(&self) -> u32 {
        self.payload_len
            .wrapping_add(self.flags.syn() as u32)
            .wrapping_add(self.flags.fin() as u32)
    }
}

/// A TCP segment as the engine tracks it: its flow's key and the key's
/// hash, the sender's side, and the header fields. Built once per frame by
/// [`FlowTable::packet`](super::FlowTable::packet); everything after the parse works from it.
#[derive(Clone, Copy, Debug)]
pub struct Packet {
    pub key: FlowKey,
    pub(super) hash: u64,
    pub hdr: Header,
    pub from: Side,
}

impl Packet {
    /// Sender's address.
    #[inline]
    pub fn src(&self) -> IpAddr {
        self.key.endpoint(self.from).0
    }

    /// Receiver's address.
    #[inline]
    pub fn dst(&self) -> IpAddr {
        self.key.endpoint(self.from.peer()).0
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        self.key.endpoint(self.from).1
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.key.endpoint(self.from.peer()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_names() {
        crate::names::assert_consistent::<Side>();
    }
}
