//! Classic pcap: the file header, then one 16-byte record header per frame.

use std::io::Read;

use pcap_file::pcap::{PcapHeader, PcapParser};
use pcap_file::{Endianness, TsResolution};

use super::damage::{DamageReason, OpenError};
use super::input::{rd32, Input, Located, MAX_CAPLEN};

pub(super) const HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

pub(super) const MAGIC_US: u32 = 0xa1b2_c3d4;
pub(super) const MAGIC_NS: u32 = 0xa1b2_3c4d;

/// A pcap magic number, in either byte order.
pub(super) fn is_magic(magic: u32) -> bool {
    [MAGIC_US, MAGIC_NS].contains(&magic) || [MAGIC_US, MAGIC_NS].contains(&magic.swap_bytes())
}

/// What reading a pcap file's records needs from its header.
pub(super) struct PcapState {
    parser: PcapParser,
    pub(super) big_endian: bool,
    /// Nanoseconds per unit of the record's fraction field.
    frac_ns: u64,
    pub(super) linktype: u32,
}

impl PcapState {
    /// The 0xa1b23c4d variant, nanoseconds.
    pub(super) fn nanos(&self) -> bool {
        self.frac_ns == 1
    }
}

/// The link-type number proper: pcap keeps FCS details in the upper bits.
#[inline]
fn linktype_number(field: u32) -> u32 {
    field & 0xffff
}

pub(super) fn open<R: Read>(input: &mut Input<R>) -> Result<PcapState, OpenError> {
    if input.available() < HEADER_LEN {
        return Err(OpenError::HeaderTruncated {
            format: "pcap",
            have: input.available(),
            need: HEADER_LEN,
        });
    }
    let (_, parser) = PcapParser::new(input.bytes()).map_err(|e| OpenError::BadHeader {
        format: "pcap",
        reason: e.to_string(),
    })?;
    let header: PcapHeader = parser.header();
    let big_endian = header.endianness == Endianness::Big;
    let nanos = header.ts_resolution == TsResolution::NanoSecond;
    let state = PcapState {
        parser,
        big_endian,
        frac_ns: if nanos { 1 } else { 1_000 },
        linktype: linktype_number(u32::from(header.datalink)),
    };
    input.consume(HEADER_LEN);
    Ok(state)
}

pub(super) fn next<R: Read>(
    input: &mut Input<R>,
    state: &PcapState,
) -> Result<Option<Located>, DamageReason> {
    let PcapState {
        ref parser,
        big_endian,
        frac_ns,
        linktype,
    } = *state;
    input.fill(RECORD_HEADER_LEN)?;
    let have = input.available();
    if have == 0 {
        return Ok(None);
    }
    if have < RECORD_HEADER_LEN {
        return Err(DamageReason::RecordHeaderTruncated {
            have: have as u64,
            need: RECORD_HEADER_LEN as u64,
        });
    }
    // Check the announced length before buffering it.
    let caplen = rd32(input.bytes(), 8, big_endian);
    if caplen > MAX_CAPLEN {
        return Err(DamageReason::CaplenTooLarge {
            caplen,
            max: MAX_CAPLEN,
        });
    }
    let record_len = RECORD_HEADER_LEN + caplen as usize;
    input.fill(record_len)?;
    if input.available() < record_len {
        return Err(DamageReason::RecordTruncated {
            caplen,
            have: (input.available() - RECORD_HEADER_LEN) as u64,
        });
    }
    let (_, raw) = parser
        .next_raw_packet(input.bytes())
        .map_err(|e| DamageReason::Malformed {
            block: "pcap record",
            why: e.to_string(),
        })?;
    // ts_sec < 2^32 and ts_frac < 2^32 (times 1000): no overflow in u64.
    let timestamp_ns = u64::from(raw.ts_sec) * 1_000_000_000 + u64::from(raw.ts_frac) * frac_ns;
    let located = Located {
        start: input.pos + RECORD_HEADER_LEN,
        len: caplen as usize,
        timestamp_ns,
        orig_len: raw.orig_len,
        linktype,
        interface: 0,
    };
    input.consume(record_len);
    Ok(Some(located))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use rstwall_engine::wire::LinkType;

    use super::super::input::INITIAL_BUFFER;
    use super::super::testing::*;
    use super::super::{CaptureReader, DamageReason, Format};
    use super::*;

    #[test]
    fn pcap_little_and_big_endian() {
        for big in [false, true] {
            let f = pcap(
                big,
                false,
                65535,
                1,
                &[(10, 500_000, 60, &ETH_FRAME), (11, 7, 14, &ETH_FRAME[..3])],
            );
            let r = CaptureReader::new(Cursor::new(f)).unwrap();
            assert_eq!(
                r.format(),
                Format::Pcap {
                    nanos: false,
                    big_endian: big
                }
            );
            assert_eq!(r.pcap_linktype(), Some(1));
            let (frames, damage) = read_all(r);
            assert_eq!(damage, None);
            assert_eq!(frames.len(), 2);
            assert_eq!(frames[0].number, 1);
            assert_eq!(frames[0].ts, 10_500_000_000);
            assert_eq!(frames[0].orig_len, 60);
            assert_eq!(frames[0].data, ETH_FRAME);
            assert_eq!(frames[0].link, Some(LinkType::Ethernet));
            assert_eq!(frames[1].number, 2);
            assert_eq!(frames[1].ts, 11_000_007_000);
            assert_eq!(frames[1].data, &ETH_FRAME[..3]);
        }
    }

    #[test]
    fn pcap_nanoseconds_and_odd_but_readable_records() {
        // A fraction of a million microseconds or more, a captured length
        // above the snaplen and above the original length: Wireshark and
        // tcpdump read these, and so do we.
        let f = pcap(
            false,
            true,
            4,
            101,
            &[
                (1, 999_999_999, 9, &ETH_FRAME),
                (u32::MAX, u32::MAX, 0, &[]),
            ],
        );
        let (frames, damage) = read_bytes(&f);
        assert_eq!(damage, None);
        assert_eq!(frames[0].ts, 1_999_999_999);
        assert_eq!(frames[0].link, Some(LinkType::Raw));
        assert_eq!(frames[0].orig_len, 9);
        assert_eq!(frames[0].data.len(), 14);
        assert_eq!(frames[1].ts, u64::from(u32::MAX) * 1_000_000_001);
        let f = pcap(false, false, 65535, 1, &[(0, 2_500_000, 14, &ETH_FRAME)]);
        assert_eq!(read_bytes(&f).0[0].ts, 2_500_000_000);
    }

    #[test]
    fn pcap_link_type_upper_bits_and_unknown_link_types() {
        // FCS-length bits above the link type, as in several corpus files.
        let f = pcap(false, false, 65535, 0x3000_0001, &[(0, 0, 14, &ETH_FRAME)]);
        let (frames, _) = read_bytes(&f);
        assert_eq!(
            (frames[0].link, frames[0].linktype),
            (Some(LinkType::Ethernet), 1)
        );
        let f = pcap(false, false, 65535, 127, &[(0, 0, 14, &ETH_FRAME)]);
        let (frames, _) = read_bytes(&f);
        assert_eq!((frames[0].link, frames[0].linktype), (None, 127));
    }

    #[test]
    fn pcap_truncated_record_header() {
        let mut f = pcap(
            false,
            false,
            65535,
            1,
            &[(0, 0, 14, &ETH_FRAME), (1, 0, 14, &ETH_FRAME)],
        );
        f.extend_from_slice(&[1, 2, 3, 4, 5]);
        let (frames, damage) = read_bytes(&f);
        assert_eq!(frames.len(), 2);
        let d = damage.unwrap();
        assert_eq!(d.frame, 3);
        assert_eq!(d.offset, Some(24 + 2 * 30));
        assert_eq!(
            d.reason,
            DamageReason::RecordHeaderTruncated { have: 5, need: 16 }
        );
        assert_eq!(
            d.to_string(),
            "frame 3 (byte offset 84): record header truncated (5 of 16 bytes)"
        );
    }

    #[test]
    fn pcap_truncated_record_data() {
        let mut f = pcap(
            false,
            false,
            65535,
            1,
            &[(0, 0, 14, &ETH_FRAME), (1, 0, 14, &ETH_FRAME)],
        );
        f.truncate(f.len() - 4);
        let (frames, damage) = read_bytes(&f);
        assert_eq!(frames.len(), 1);
        let d = damage.unwrap();
        assert_eq!((d.frame, d.offset), (2, Some(54)));
        assert_eq!(
            d.reason,
            DamageReason::RecordTruncated {
                caplen: 14,
                have: 10
            }
        );
    }

    #[test]
    fn pcap_absurd_captured_length_stops_without_buffering_it() {
        let mut f = pcap(false, false, 65535, 1, &[(0, 0, 14, &ETH_FRAME)]);
        let rec = pcap(false, false, 65535, 1, &[(0, 0, 14, &ETH_FRAME)]);
        f.extend_from_slice(&rec[24..]);
        f[24 + 30 + 8..24 + 30 + 12].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let mut r = CaptureReader::new(Cursor::new(f)).unwrap();
        assert!(r.next_frame().unwrap().is_some());
        let d = r.next_frame().unwrap_err();
        assert_eq!(d.frame, 2);
        assert_eq!(
            d.reason,
            DamageReason::CaplenTooLarge {
                caplen: 0xffff_fff0,
                max: MAX_CAPLEN
            }
        );
        assert!(d
            .to_string()
            .contains("captured length 4294967280 exceeds the maximum of 262144"));
        assert!(r.input.buf.len() <= INITIAL_BUFFER);
    }
}
