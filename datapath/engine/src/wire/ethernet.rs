//! Ethernet II with up to two VLAN tags (802.1ad outer, 802.1Q inner).

use super::{be16, room, EmitError, ParseError};

mod field {
    use std::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const HEADER_LEN: usize = 14;
    pub const TAG_LEN: usize = 4;
}

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ ethertype still seen on older switches.
pub const ETHERTYPE_QINQ_LEGACY: u16 = 0x9100;

/// Maximum VLAN tags walked before giving up.
pub const MAX_VLAN_TAGS: usize = 2;

#[inline]
fn is_vlan(ethertype: u16) -> bool {
    matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_LEGACY
    )
}

/// Returns the innermost ethertype and the bytes after the Ethernet header
/// and its tags. An 802.3 length field (< 0x600) is returned as is and maps
/// to "not IP" upstream.
#[inline(always)]
pub fn strip(f: &[u8]) -> Result<(u16, &[u8]), ParseError> {
    if f.len() < field::HEADER_LEN {
        return Err(ParseError::TruncatedLink);
    }
    let mut ethertype = be16(f, field::ETHERTYPE.start);
    let mut off = field::HEADER_LEN;
    let mut tags = 0;
    while is_vlan(ethertype) {
        if tags == MAX_VLAN_TAGS {
            return Err(ParseError::TooManyVlanTags);
        }
        if f.len() < off + field::TAG_LEN {
            return Err(ParseError::TruncatedLink);
        }
        // TCI at off..off+2, inner ethertype at off+2..off+4.
        ethertype = be16(f, off + 2);
        off += field::TAG_LEN;
        tags += 1;
    }
    Ok((ethertype, &f[off..]))
}

/// A checked view over an Ethernet II header (the outer one: a VLAN tag
/// reads as its ethertype).
#[derive(Clone, Copy, Debug)]
pub struct EthernetFrame<'a> {
    buf: &'a [u8],
}

impl<'a> EthernetFrame<'a> {
    pub const HEADER_LEN: usize = field::HEADER_LEN;

    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, ParseError> {
        if buf.len() < field::HEADER_LEN {
            return Err(ParseError::TruncatedLink);
        }
        Ok(EthernetFrame { buf })
    }
    #[inline]
    pub fn dst(&self) -> [u8; 6] {
        mac(&self.buf[field::DST])
    }
    #[inline]
    pub fn src(&self) -> [u8; 6] {
        mac(&self.buf[field::SRC])
    }
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buf, field::ETHERTYPE.start)
    }
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[field::HEADER_LEN..]
    }
}

#[inline]
fn mac(b: &[u8]) -> [u8; 6] {
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

/// An untagged Ethernet II header: the two addresses. The ethertype is
/// the next header's, given to [`EthernetRepr::emit`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub src: [u8; 6],
    pub dst: [u8; 6],
}

impl EthernetRepr {
    pub const HEADER_LEN: usize = field::HEADER_LEN;

    pub fn parse(frame: &EthernetFrame<'_>) -> EthernetRepr {
        EthernetRepr {
            src: frame.src(),
            dst: frame.dst(),
        }
    }

    /// Write the header at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8], ethertype: u16) -> Result<(), EmitError> {
        room(buf, field::HEADER_LEN)?;
        buf[field::DST].copy_from_slice(&self.dst);
        buf[field::SRC].copy_from_slice(&self.src);
        buf[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tags: &[u16], inner: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        for &t in tags {
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&[0x00, 0x05]); // TCI, VLAN 5
        }
        f.extend_from_slice(&inner.to_be_bytes());
        f.extend_from_slice(&[0x45]);
        f
    }

    #[test]
    fn walks_up_to_two_tags() {
        let f = frame(&[], 0x0800);
        assert_eq!(strip(&f).unwrap(), (0x0800, &[0x45][..]));
        let f = frame(&[ETHERTYPE_VLAN], 0x86dd);
        assert_eq!(strip(&f).unwrap().0, 0x86dd);
        let f = frame(&[ETHERTYPE_QINQ, ETHERTYPE_VLAN], 0x0800);
        assert_eq!(strip(&f).unwrap(), (0x0800, &[0x45][..]));
        let f = frame(&[ETHERTYPE_QINQ, ETHERTYPE_VLAN, ETHERTYPE_VLAN], 0x0800);
        assert_eq!(strip(&f), Err(ParseError::TooManyVlanTags));
    }

    #[test]
    fn repr_round_trip() {
        let r = EthernetRepr {
            src: [2, 0, 0, 0, 0, 1],
            dst: [0xff; 6],
        };
        let mut buf = [0u8; 15];
        r.emit(&mut buf, ETHERTYPE_IPV6).unwrap();
        let f = EthernetFrame::new_checked(&buf).unwrap();
        assert_eq!(EthernetRepr::parse(&f), r);
        assert_eq!((f.ethertype(), f.payload()), (ETHERTYPE_IPV6, &[0][..]));
        assert_eq!(strip(&buf).unwrap().0, ETHERTYPE_IPV6);
        assert_eq!(
            r.emit(&mut buf[..13], ETHERTYPE_IPV4),
            Err(EmitError::BufferTooShort { need: 14, have: 13 })
        );
        assert_eq!(
            EthernetFrame::new_checked(&buf[..13]).unwrap_err(),
            ParseError::TruncatedLink
        );
    }

    #[test]
    fn truncated() {
        assert_eq!(strip(&[0u8; 13]), Err(ParseError::TruncatedLink));
        let mut f = frame(&[ETHERTYPE_VLAN], 0x0800);
        f.truncate(16);
        assert_eq!(strip(&f), Err(ParseError::TruncatedLink));
    }
}
