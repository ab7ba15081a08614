//! Ethernet II with up to two VLAN tags (802.1ad outer, 802.1Q inner).

use super::{be16, ParseError};

mod field {
    use std::ops::Range;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const HEADER_LEN: usize = 14;
    pub const TAG_LEN: usize = 4;
}

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
    fn truncated() {
        assert_eq!(strip(&[0u8; 13]), Err(ParseError::TruncatedLink));
        let mut f = frame(&[ETHERTYPE_VLAN], 0x0800);
        f.truncate(16);
        assert_eq!(strip(&f), Err(ParseError::TruncatedLink));
    }
}
