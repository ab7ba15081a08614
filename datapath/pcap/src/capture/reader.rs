//! The reader: a pcap or pcapng file, frame by frame.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use rstwall_engine::wire::LinkType;

use super::damage::{Damage, OpenError};
use super::input::{rd32, Input};
use super::pcap::{self, PcapState};
use super::pcapng::{self, PcapNgState};

/// Which file format a reader found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap; `nanos` for the 0xa1b23c4d nanosecond variant.
    Pcap {
        nanos: bool,
        big_endian: bool,
    },
    PcapNg,
}

/// One captured frame, borrowed from the reader's buffer until the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// 1-based, counting every packet record in the file whatever its link
    /// type, as tcpdump and Wireshark number frames.
    pub number: u64,
    /// Nanoseconds since the Unix epoch (saturating; 0 for pcapng simple
    /// packet blocks, which carry no timestamp).
    pub timestamp_ns: u64,
    /// Length of the packet on the wire.
    pub orig_len: u32,
    /// The captured bytes, starting at the link-layer header.
    pub data: &'a [u8],
    /// The link layer, or `None` for link types [`rstwall_engine::wire`] does not read.
    pub link: Option<LinkType>,
    /// The LINKTYPE_* number as stored (the upper 16 bits of a pcap header's
    /// link-type field carry FCS information and are dropped).
    pub linktype: u32,
    /// pcapng interface index (0 for pcap).
    pub interface: u32,
}

enum State {
    Pcap(PcapState),
    PcapNg(PcapNgState),
}

/// A pcap or pcapng reader; see the module documentation of
/// [`crate::capture`].
///
/// ```no_run
/// # use rstwall_pcap::capture::CaptureReader;
/// let mut r = CaptureReader::open("trace.pcap")?;
/// while let Some(frame) = r.next_frame()? {
///     println!("{} {} bytes", frame.number, frame.data.len());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CaptureReader<R> {
    pub(super) input: Input<R>,
    format: Format,
    state: State,
    next_number: u64,
    damage: Option<Damage>,
    finished: bool,
}

impl CaptureReader<File> {
    /// Open a capture file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        CaptureReader::new(File::open(path)?)
    }
}

impl<R> fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("format", &self.format)
            .field("offset", &self.input.offset)
            .field("next_number", &self.next_number)
            .field("damage", &self.damage)
            .finish_non_exhaustive()
    }
}

impl<R: Read> CaptureReader<R> {
    /// Read the file header of a pcap or pcapng stream.
    pub fn new(src: R) -> Result<Self, OpenError> {
        let mut input = Input::new(src);
        input.fill(pcap::HEADER_LEN)?;
        let head = input.bytes();
        if head.is_empty() {
            return Err(OpenError::Empty);
        }
        if head.len() < 4 {
            let magic = head.iter().fold(0, |m, &b| (m << 8) | u32::from(b));
            return Err(OpenError::NotACapture { magic });
        }
        let magic = rd32(head, 0, true);
        let (format, state) = if pcap::is_magic(magic) {
            let st = pcap::open(&mut input)?;
            let format = Format::Pcap {
                nanos: st.nanos(),
                big_endian: st.big_endian,
            };
            (format, State::Pcap(st))
        } else if magic == pcapng::SHB {
            (Format::PcapNg, State::PcapNg(pcapng::open(&mut input)?))
        } else {
            return Err(OpenError::NotACapture { magic });
        };
        Ok(CaptureReader {
            input,
            format,
            state,
            next_number: 1,
            damage: None,
            finished: false,
        })
    }

    /// The next frame; `Ok(None)` at the end of the file. After damage is
    /// returned once, the reader is finished and returns `Ok(None)`.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, Damage> {
        if self.finished {
            return Ok(None);
        }
        let located = match &mut self.state {
            State::Pcap(st) => pcap::next(&mut self.input, st),
            State::PcapNg(st) => pcapng::next(&mut self.input, st),
        };
        match located {
            Ok(Some(at)) => {
                let number = self.next_number;
                self.next_number += 1;
                Ok(Some(Frame {
                    number,
                    timestamp_ns: at.timestamp_ns,
                    orig_len: at.orig_len,
                    data: &self.input.buf[at.start..at.start + at.len],
                    link: LinkType::from_pcap(at.linktype),
                    linktype: at.linktype,
                    interface: at.interface,
                }))
            }
            Ok(None) => {
                self.finished = true;
                Ok(None)
            }
            Err(reason) => {
                let damage = Damage {
                    frame: self.next_number,
                    offset: Some(self.input.offset),
                    reason,
                };
                self.finished = true;
                self.damage = Some(damage.clone());
                Err(damage)
            }
        }
    }

    /// The format found in the file header.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Frames yielded so far.
    pub fn frames_read(&self) -> u64 {
        self.next_number - 1
    }

    /// Why reading stopped early, once it has.
    pub fn damage(&self) -> Option<&Damage> {
        self.damage.as_ref()
    }

    /// For pcap, the file's link-type number (pcapng has one per interface).
    pub fn pcap_linktype(&self) -> Option<u32> {
        match &self.state {
            State::Pcap(st) => Some(st.linktype),
            State::PcapNg(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Cursor, Read};

    use super::super::testing::*;
    use super::super::DamageReason;
    use super::*;

    #[test]
    fn not_a_capture() {
        let open = |b: &[u8]| CaptureReader::new(Cursor::new(b.to_vec())).unwrap_err();
        assert!(matches!(open(b""), OpenError::Empty));
        assert!(matches!(
            open(b"GET / HTTP/1.1\r\n\r\n"),
            OpenError::NotACapture { magic: 0x4745_5420 }
        ));
        assert!(matches!(
            open(b"\x1f"),
            OpenError::NotACapture { magic: 0x1f }
        ));
        let err = open(&pcap(false, false, 65535, 1, &[])[..20]);
        assert!(matches!(
            err,
            OpenError::HeaderTruncated {
                format: "pcap",
                have: 20,
                need: 24
            }
        ));
        assert_eq!(
            err.to_string(),
            "pcap file header truncated (20 of 24 bytes)"
        );
        let ng = Ng::new(false).bytes();
        assert!(matches!(
            open(&ng[..10]),
            OpenError::HeaderTruncated {
                format: "pcapng",
                ..
            }
        ));
        assert!(matches!(
            open(&ng[..20]),
            OpenError::HeaderTruncated {
                format: "pcapng",
                ..
            }
        ));
        let mut bad_bom = ng.clone();
        bad_bom[8] = 0;
        assert!(matches!(
            open(&bad_bom),
            OpenError::BadHeader {
                format: "pcapng",
                ..
            }
        ));
        // A header alone is a valid, empty capture.
        assert_eq!(read_bytes(&pcap(true, true, 65535, 1, &[])), (vec![], None));
        assert_eq!(read_bytes(&ng), (vec![], None));
    }

    /// A reader that hands out one byte per call, with interruptions.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        calls: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(3) {
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            match (self.data.get(self.at), buf.first_mut()) {
                (Some(&b), Some(slot)) => {
                    *slot = b;
                    self.at += 1;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn short_and_interrupted_reads() {
        let mut ng = Ng::new(true);
        ng.idb(1, 0, None, None)
            .epb(0, 0, 14, &ETH_FRAME)
            .epb(0, 1, 14, &ETH_FRAME);
        let p = pcap(
            false,
            false,
            65535,
            1,
            &[(0, 0, 14, &ETH_FRAME), (1, 0, 14, &ETH_FRAME)],
        );
        for bytes in [ng.bytes(), p] {
            let whole = read_bytes(&bytes);
            let trickle = Trickle {
                data: bytes,
                at: 0,
                calls: 0,
            };
            assert_eq!(read_all(CaptureReader::new(trickle).unwrap()), whole);
        }
    }

    #[test]
    fn read_errors_are_damage() {
        struct Failing(Cursor<Vec<u8>>);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(40);
                match self.0.read(&mut buf[..n])? {
                    0 => Err(io::Error::other("disk on fire")),
                    n => Ok(n),
                }
            }
        }
        let p = pcap(
            false,
            false,
            65535,
            1,
            &[(0, 0, 14, &ETH_FRAME), (1, 0, 14, &ETH_FRAME)],
        );
        let (frames, damage) = read_all(CaptureReader::new(Failing(Cursor::new(p))).unwrap());
        assert_eq!(frames.len(), 2);
        assert_eq!(
            damage.unwrap().reason,
            DamageReason::Io("disk on fire".into())
        );
    }

    #[test]
    fn every_truncation_and_byte_flip_is_safe() {
        let mut ng = Ng::new(false);
        ng.idb(1, 0, Some(9), None)
            .epb(0, 5, 14, &ETH_FRAME)
            .spb(14, &ETH_FRAME)
            .pb(0, 6, &ETH_FRAME);
        let p = pcap(
            true,
            false,
            65535,
            1,
            &[(0, 0, 14, &ETH_FRAME), (1, 0, 14, &ETH_FRAME)],
        );
        for bytes in [ng.bytes(), p] {
            let (all, _) = read_bytes(&bytes);
            for cut in 0..bytes.len() {
                if let Ok(r) = CaptureReader::new(Cursor::new(bytes[..cut].to_vec())) {
                    let (frames, _) = read_all(r);
                    assert!(all.starts_with(&frames), "cut at {cut}");
                }
            }
            for at in 0..bytes.len() {
                for bit in [0x01, 0x80, 0xff] {
                    let mut b = bytes.clone();
                    b[at] ^= bit;
                    if let Ok(r) = CaptureReader::new(Cursor::new(b)) {
                        read_all(r);
                    }
                }
            }
        }
    }
}
