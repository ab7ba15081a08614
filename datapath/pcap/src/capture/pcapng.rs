//! pcapng: blocks, sections with their own byte order, interfaces with
//! their own link types and timestamp resolutions.

use std::io::Read;

use byteorder_slice::{BigEndian, LittleEndian};
use pcap_file::pcapng::RawBlock;
use pcap_file::PcapError;

use super::damage::{DamageReason, OpenError};
use super::input::{rd16, rd32, rd64, Input, Located, MAX_CAPLEN};

/// Largest pcapng block we buffer. Packet blocks are bounded by
/// [`MAX_CAPLEN`] long before this; the rest (name resolution, custom
/// blocks, decryption secrets) have no business being larger.
pub const MAX_BLOCK_LEN: u32 = 16 * 1024 * 1024;

/// Section header block type: also the file's magic number.
pub(super) const SHB: u32 = 0x0a0d_0d0a;
/// Byte-order magic in a section header block.
pub(super) const BOM: u32 = 0x1a2b_3c4d;

pub(super) mod block_type {
    pub const INTERFACE_DESCRIPTION: u32 = 1;
    pub const PACKET: u32 = 2;
    pub const SIMPLE_PACKET: u32 = 3;
    pub const ENHANCED_PACKET: u32 = 6;
}

/// What reading a pcapng file's blocks carries from one to the next.
pub(super) struct PcapNgState {
    big_endian: bool,
    interfaces: Vec<Interface>,
}

/// Per-interface facts a pcapng packet block needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Interface {
    linktype: u32,
    snaplen: u32,
    /// `if_tsresol`: 10^-n seconds, or 2^-n with the top bit set.
    tsresol: u8,
    /// `if_tsoffset`, seconds added to every timestamp.
    tsoffset_s: i64,
}

impl Interface {
    /// pcapng's default: microseconds, no offset.
    const DEFAULT_TSRESOL: u8 = 6;

    fn timestamp_ns(&self, units: u64) -> u64 {
        let exp = u32::from(self.tsresol & 0x7f);
        let ns: u128 = if self.tsresol & 0x80 == 0 {
            if exp <= 9 {
                u128::from(units) * 10u128.pow(9 - exp)
            } else if exp - 9 <= 38 {
                u128::from(units) / 10u128.pow(exp - 9)
            } else {
                0
            }
        } else {
            // 2^-exp seconds; exp <= 127, and units * 1e9 < 2^94.
            (u128::from(units) * 1_000_000_000) >> exp
        };
        let ns = ns as i128 + i128::from(self.tsoffset_s) * 1_000_000_000;
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }
}

pub(super) fn open<R: Read>(input: &mut Input<R>) -> Result<PcapNgState, OpenError> {
    let bad = |reason: String| OpenError::BadHeader {
        format: "pcapng",
        reason,
    };
    let big_endian = match shb_byte_order(input.bytes()) {
        Some(Ok(big)) => big,
        Some(Err(m)) => return Err(bad(format!("byte-order magic {m:#010x}"))),
        None => {
            return Err(OpenError::HeaderTruncated {
                format: "pcapng",
                have: input.available(),
                need: 12,
            })
        }
    };
    let len = rd32(input.bytes(), 4, big_endian);
    if let Err(why) = check_block_len(len) {
        return Err(bad(format!("section header block length {len}: {why}")));
    }
    input.fill(len as usize)?;
    if input.available() < len as usize {
        return Err(OpenError::HeaderTruncated {
            format: "pcapng",
            have: input.available(),
            need: len as usize,
        });
    }
    raw_block(&input.bytes()[..len as usize], big_endian).map_err(|e| bad(e.to_string()))?;
    input.consume(len as usize);
    Ok(PcapNgState {
        big_endian,
        interfaces: Vec::new(),
    })
}

/// The byte order a section header block announces: `None` if fewer than
/// 12 bytes are at hand, `Err` with the magic if it is neither order.
fn shb_byte_order(b: &[u8]) -> Option<Result<bool, u32>> {
    let magic = rd32(b.get(..12)?, 8, true);
    Some(match magic {
        BOM => Ok(true),
        m if m.swap_bytes() == BOM => Ok(false),
        m => Err(m),
    })
}

fn check_block_len(len: u32) -> Result<(), &'static str> {
    if len < 12 {
        Err("shorter than a block header and trailer")
    } else if !len.is_multiple_of(4) {
        Err("not a multiple of 4")
    } else if len > MAX_BLOCK_LEN {
        Err("larger than any block we read")
    } else {
        Ok(())
    }
}

/// Let pcap-file check one block's framing (lengths, trailer).
fn raw_block(b: &[u8], big_endian: bool) -> Result<RawBlock<'_>, PcapError> {
    let (_, block) = if big_endian {
        RawBlock::from_slice::<BigEndian>(b)?
    } else {
        RawBlock::from_slice::<LittleEndian>(b)?
    };
    Ok(block)
}

pub(super) fn next<R: Read>(
    input: &mut Input<R>,
    state: &mut PcapNgState,
) -> Result<Option<Located>, DamageReason> {
    let PcapNgState {
        big_endian,
        interfaces,
    } = state;
    // Every pass consumes one whole block of at least 12 bytes, or returns.
    loop {
        input.fill(12)?;
        let have = input.available();
        if have == 0 {
            return Ok(None);
        }
        if have < 8 {
            return Err(DamageReason::RecordHeaderTruncated {
                have: have as u64,
                need: 8,
            });
        }
        let block_type = rd32(input.bytes(), 0, *big_endian);
        let mut big = *big_endian;
        if block_type == SHB {
            big = match shb_byte_order(input.bytes()) {
                Some(Ok(big)) => big,
                Some(Err(m)) => {
                    return Err(DamageReason::Malformed {
                        block: "section header block",
                        why: format!("byte-order magic {m:#010x}"),
                    })
                }
                None => {
                    return Err(DamageReason::RecordHeaderTruncated {
                        have: have as u64,
                        need: 12,
                    })
                }
            };
        }
        let len = rd32(input.bytes(), 4, big);
        check_block_len(len).map_err(|why| DamageReason::BadBlockLength { len, why })?;
        input.fill(len as usize)?;
        if input.available() < len as usize {
            return Err(DamageReason::BlockTruncated {
                len,
                have: input.available() as u64,
            });
        }
        let block = &input.bytes()[..len as usize];
        raw_block(block, big).map_err(|e| DamageReason::Malformed {
            block: "block",
            why: e.to_string(),
        })?;
        let body = &block[8..block.len() - 4];
        let body_start = input.pos + 8;
        let found = match block_type {
            SHB => {
                *big_endian = big;
                interfaces.clear();
                None
            }
            block_type::INTERFACE_DESCRIPTION => {
                interfaces.push(parse_idb(body, big)?);
                None
            }
            block_type::ENHANCED_PACKET | block_type::PACKET => {
                Some(packet_block(block_type, body, body_start, big, interfaces)?)
            }
            block_type::SIMPLE_PACKET => {
                Some(simple_packet_block(body, body_start, big, interfaces)?)
            }
            _ => None,
        };
        input.consume(len as usize);
        if found.is_some() {
            return Ok(found);
        }
    }
}

/// Interface Description Block: link type, snaplen, `if_tsresol` and
/// `if_tsoffset`. Malformed options end the option walk, nothing more:
/// they do not change how packets are framed.
fn parse_idb(body: &[u8], big: bool) -> Result<Interface, DamageReason> {
    if body.len() < 8 {
        return Err(DamageReason::Malformed {
            block: "interface description block",
            why: format!("{} bytes, 8 needed", body.len()),
        });
    }
    let mut iface = Interface {
        linktype: u32::from(rd16(body, 0, big)),
        snaplen: rd32(body, 4, big),
        tsresol: Interface::DEFAULT_TSRESOL,
        tsoffset_s: 0,
    };
    let mut opts = &body[8..];
    while opts.len() >= 4 {
        let code = rd16(opts, 0, big);
        let len = usize::from(rd16(opts, 2, big));
        if code == 0 || opts.len() - 4 < len {
            break;
        }
        let value = &opts[4..4 + len];
        match (code, len) {
            (9, 1) => iface.tsresol = value[0],
            (14, 8) => iface.tsoffset_s = rd64(value, 0, big) as i64,
            _ => {}
        }
        opts = &opts[(4 + len.next_multiple_of(4)).min(opts.len())..];
    }
    Ok(iface)
}

/// Enhanced Packet Block, or the obsolete Packet Block (16-bit interface
/// id and drop count where the EPB has a 32-bit interface id).
fn packet_block(
    block_type: u32,
    body: &[u8],
    body_start: usize,
    big: bool,
    interfaces: &[Interface],
) -> Result<Located, DamageReason> {
    const FIXED: usize = 20;
    if body.len() < FIXED {
        return Err(DamageReason::Malformed {
            block: "packet block",
            why: format!("{} bytes, {FIXED} needed", body.len()),
        });
    }
    let interface = if block_type == block_type::PACKET {
        u32::from(rd16(body, 0, big))
    } else {
        rd32(body, 0, big)
    };
    let units = (u64::from(rd32(body, 4, big)) << 32) | u64::from(rd32(body, 8, big));
    let caplen = rd32(body, 12, big);
    let orig_len = rd32(body, 16, big);
    let iface = interface_at(interfaces, interface)?;
    if caplen > MAX_CAPLEN {
        return Err(DamageReason::CaplenTooLarge {
            caplen,
            max: MAX_CAPLEN,
        });
    }
    let room = (body.len() - FIXED) as u32;
    if caplen > room {
        return Err(DamageReason::CaplenExceedsBlock { caplen, room });
    }
    Ok(Located {
        start: body_start + FIXED,
        len: caplen as usize,
        timestamp_ns: iface.timestamp_ns(units),
        orig_len,
        linktype: iface.linktype,
        interface,
    })
}

/// Simple Packet Block: interface 0, no timestamp; the captured length is
/// the original length cut to the interface's snaplen.
fn simple_packet_block(
    body: &[u8],
    body_start: usize,
    big: bool,
    interfaces: &[Interface],
) -> Result<Located, DamageReason> {
    if body.len() < 4 {
        return Err(DamageReason::Malformed {
            block: "simple packet block",
            why: format!("{} bytes, 4 needed", body.len()),
        });
    }
    let iface = interface_at(interfaces, 0)?;
    let orig_len = rd32(body, 0, big);
    let caplen = match iface.snaplen {
        0 => orig_len,
        snap => orig_len.min(snap),
    };
    if caplen > MAX_CAPLEN {
        return Err(DamageReason::CaplenTooLarge {
            caplen,
            max: MAX_CAPLEN,
        });
    }
    let room = (body.len() - 4) as u32;
    if caplen > room {
        return Err(DamageReason::CaplenExceedsBlock { caplen, room });
    }
    Ok(Located {
        start: body_start + 4,
        len: caplen as usize,
        timestamp_ns: 0,
        orig_len,
        linktype: iface.linktype,
        interface: 0,
    })
}

fn interface_at(interfaces: &[Interface], id: u32) -> Result<&Interface, DamageReason> {
    interfaces
        .get(id as usize)
        .ok_or(DamageReason::UnknownInterface {
            interface: id,
            described: interfaces.len() as u32,
        })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use rstwall_engine::wire::LinkType;

    use super::super::testing::*;
    use super::super::{CaptureReader, DamageReason, Format};
    use super::*;

    #[test]
    fn pcapng_two_interfaces_of_different_link_types() {
        for big in [false, true] {
            let mut ng = Ng::new(big);
            ng.idb(1, 0, None, None)
                .idb(101, 96, Some(9), None)
                .epb(0, 1_500_000, 60, &ETH_FRAME)
                .block(5, &[0; 8]) // interface statistics: skipped
                .epb(1, 42, 1500, &[0x45, 0, 0, 20])
                .block(0x0bad_cafe, &[1, 2, 3]) // unknown block: skipped
                .spb(14, &ETH_FRAME)
                .pb(1, 7, &[0x60]);
            let r = CaptureReader::new(Cursor::new(ng.bytes())).unwrap();
            assert_eq!(r.format(), Format::PcapNg);
            assert_eq!(r.pcap_linktype(), None);
            let (frames, damage) = read_all(r);
            assert_eq!(damage, None);
            let summary: Vec<_> = frames
                .iter()
                .map(|f| {
                    (
                        f.number,
                        f.interface,
                        f.link,
                        f.ts,
                        f.orig_len,
                        f.data.len(),
                    )
                })
                .collect();
            assert_eq!(
                summary,
                [
                    (1, 0, Some(LinkType::Ethernet), 1_500_000_000, 60, 14),
                    (2, 1, Some(LinkType::Raw), 42, 1500, 4),
                    (3, 0, Some(LinkType::Ethernet), 0, 14, 14),
                    (4, 1, Some(LinkType::Raw), 7, 1, 1),
                ]
            );
            assert_eq!(frames[1].data, [0x45, 0, 0, 20]);
        }
    }

    #[test]
    fn pcapng_simple_packet_block_cut_to_snaplen() {
        let mut ng = Ng::new(false);
        ng.idb(1, 6, None, None).spb(14, &ETH_FRAME[..6]);
        let (frames, damage) = read_bytes(&ng.bytes());
        assert_eq!(damage, None);
        assert_eq!(
            (frames[0].orig_len, frames[0].data.as_slice()),
            (14, &ETH_FRAME[..6])
        );
        // Without a snaplen the block must hold the whole original length.
        let mut ng = Ng::new(false);
        ng.idb(1, 0, None, None).spb(100, &ETH_FRAME);
        let (_, damage) = read_bytes(&ng.bytes());
        assert_eq!(
            damage.unwrap().reason,
            DamageReason::CaplenExceedsBlock {
                caplen: 100,
                room: 16
            }
        );
    }

    #[test]
    fn pcapng_unknown_interface_is_damage_at_that_frame() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, None, None)
            .epb(0, 0, 14, &ETH_FRAME)
            .epb(2, 0, 14, &ETH_FRAME);
        let (frames, damage) = read_bytes(&ng.bytes());
        assert_eq!(frames.len(), 1);
        let d = damage.unwrap();
        assert_eq!(d.frame, 2);
        assert_eq!(
            d.reason,
            DamageReason::UnknownInterface {
                interface: 2,
                described: 1
            }
        );
        // A simple packet block before any interface.
        let mut ng = Ng::new(false);
        ng.spb(14, &ETH_FRAME);
        let (_, damage) = read_bytes(&ng.bytes());
        assert_eq!(
            damage.unwrap().reason,
            DamageReason::UnknownInterface {
                interface: 0,
                described: 0
            }
        );
    }

    #[test]
    fn pcapng_new_section_resets_interfaces_and_byte_order() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, None, None).epb(0, 1, 14, &ETH_FRAME);
        let mut second = Ng::new(true);
        second
            .idb(229, 0, None, None)
            .epb(0, 2, 1, &[0x60])
            .epb(1, 3, 1, &[0x60]);
        let mut bytes = ng.bytes();
        let second_at = bytes.len() as u64;
        bytes.extend_from_slice(&second.bytes());
        let (frames, damage) = read_bytes(&bytes);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].link, Some(LinkType::Ipv6));
        let d = damage.unwrap();
        assert_eq!(d.frame, 3);
        assert_eq!(
            d.reason,
            DamageReason::UnknownInterface {
                interface: 1,
                described: 1
            }
        );
        assert!(d.offset.unwrap() > second_at);
    }

    #[test]
    fn pcapng_timestamp_resolutions() {
        let iface = |tsresol, tsoffset_s| Interface {
            linktype: 1,
            snaplen: 0,
            tsresol,
            tsoffset_s,
        };
        assert_eq!(
            iface(6, 0).timestamp_ns(1_700_000_000_123_456),
            1_700_000_000_123_456_000
        );
        assert_eq!(iface(9, 0).timestamp_ns(123), 123);
        assert_eq!(iface(3, 0).timestamp_ns(1500), 1_500_000_000);
        assert_eq!(iface(12, 0).timestamp_ns(123_456), 123);
        assert_eq!(
            iface(0x80 | 10, 0).timestamp_ns(1024 * 5 + 512),
            5_500_000_000
        );
        assert_eq!(iface(0x80 | 30, 0).timestamp_ns(1 << 30), 1_000_000_000);
        assert_eq!(iface(6, 100).timestamp_ns(1), 100_000_001_000);
        // Nothing overflows or panics, whatever the file says.
        assert_eq!(iface(0, 0).timestamp_ns(u64::MAX), u64::MAX);
        assert_eq!(iface(127, 0).timestamp_ns(u64::MAX), 0);
        assert_eq!(iface(0xff, 0).timestamp_ns(u64::MAX), 0);
        assert_eq!(iface(47, 0).timestamp_ns(u64::MAX), 0);
        assert_eq!(iface(6, i64::MIN).timestamp_ns(5), 0);
        assert_eq!(iface(9, i64::MAX).timestamp_ns(u64::MAX), u64::MAX);

        let mut ng = Ng::new(false);
        ng.idb(1, 0, Some(0x80 | 20), Some(10))
            .epb(0, 1 << 19, 14, &ETH_FRAME);
        assert_eq!(read_bytes(&ng.bytes()).0[0].ts, 10_500_000_000);
    }

    #[test]
    fn pcapng_damaged_blocks() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, None, None).epb(0, 0, 14, &ETH_FRAME);
        let good = ng.bytes();
        let epb_at = good.len();
        ng.epb(0, 0, 14, &ETH_FRAME);
        let two = ng.bytes();

        // Cut inside the second EPB.
        let (frames, damage) = read_bytes(&two[..two.len() - 3]);
        assert_eq!(frames.len(), 1);
        let d = damage.unwrap();
        assert_eq!((d.frame, d.offset), (2, Some(epb_at as u64)));
        assert!(matches!(
            d.reason,
            DamageReason::BlockTruncated { len: 48, .. }
        ));
        // Cut inside its block header.
        let (_, damage) = read_bytes(&two[..epb_at + 5]);
        assert_eq!(
            damage.unwrap().reason,
            DamageReason::RecordHeaderTruncated { have: 5, need: 8 }
        );
        // Trailer length disagrees with the header.
        let mut bad = two.clone();
        let n = bad.len();
        bad[n - 4] ^= 4;
        assert!(matches!(
            read_bytes(&bad).1.unwrap().reason,
            DamageReason::Malformed { .. }
        ));
        // Length not a multiple of 4, or too short to be a block.
        for len in [47u32, 8] {
            let mut bad = two.clone();
            bad[epb_at + 4..epb_at + 8].copy_from_slice(&len.to_le_bytes());
            assert!(matches!(
                read_bytes(&bad).1.unwrap().reason,
                DamageReason::BadBlockLength { .. }
            ));
        }
        // Captured length larger than the block.
        let mut bad = two.clone();
        bad[epb_at + 20..epb_at + 24].copy_from_slice(&17u32.to_le_bytes());
        assert_eq!(
            read_bytes(&bad).1.unwrap().reason,
            DamageReason::CaplenExceedsBlock {
                caplen: 17,
                room: 16
            }
        );
        // An interface description too short to hold its fixed fields.
        let mut ng = Ng::new(false);
        ng.block(block_type::INTERFACE_DESCRIPTION, &[1, 0]);
        assert!(matches!(
            read_bytes(&ng.bytes()).1.unwrap().reason,
            DamageReason::Malformed { .. }
        ));
    }
}
