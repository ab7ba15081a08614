//! The pcap writer (`rstwall analyze --write`).

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

use rstwall_engine::wire::LinkType;

use super::input::MAX_CAPLEN;
use super::reader::Frame;

/// Timestamp resolution of a written pcap file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Resolution {
    /// Magic 0xa1b2c3d4: read by every tool.
    #[default]
    Micros,
    /// Magic 0xa1b23c4d: tcpdump ≥ 4.6 / libpcap ≥ 1.5 and Wireshark.
    Nanos,
}

/// Why a frame could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("writing capture: {0}")]
    Io(#[from] io::Error),
    #[error("frame of {len} bytes exceeds the snaplen of {max}")]
    FrameTooLong { len: usize, max: u32 },
    #[error("timestamp {0} ns is past 2106-02-07, the last second pcap can store")]
    TimestampOutOfRange(u64),
    #[error("writing capture: {0}")]
    Pcap(String),
}

impl From<PcapError> for WriteError {
    fn from(e: PcapError) -> Self {
        match e {
            PcapError::IoError(e) => WriteError::Io(e),
            other => WriteError::Pcap(other.to_string()),
        }
    }
}

/// Writes classic pcap (`rstwall analyze --write`), native byte order,
/// snaplen [`MAX_CAPLEN`].
pub struct CaptureWriter<W: Write> {
    inner: PcapWriter<W>,
    linktype: u32,
}

impl<W: Write> fmt::Debug for CaptureWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureWriter")
            .field("linktype", &self.linktype)
            .field("resolution", &self.inner.ts_resolution())
            .finish_non_exhaustive()
    }
}

impl CaptureWriter<BufWriter<File>> {
    /// Create (or truncate) `path` and write the file header.
    pub fn create(
        path: impl AsRef<Path>,
        link: LinkType,
        resolution: Resolution,
    ) -> Result<Self, WriteError> {
        CaptureWriter::new(BufWriter::new(File::create(path)?), link, resolution)
    }
}

impl<W: Write> CaptureWriter<W> {
    /// Write the file header for frames of link type `link`.
    pub fn new(writer: W, link: LinkType, resolution: Resolution) -> Result<Self, WriteError> {
        CaptureWriter::with_linktype(writer, link.to_pcap(), resolution)
    }

    /// As [`CaptureWriter::new`], for any LINKTYPE_* number (to copy frames
    /// of a link type [`rstwall_engine::wire`] does not read).
    pub fn with_linktype(
        writer: W,
        linktype: u32,
        resolution: Resolution,
    ) -> Result<Self, WriteError> {
        let header = PcapHeader {
            snaplen: MAX_CAPLEN,
            datalink: DataLink::from(linktype),
            ts_resolution: match resolution {
                Resolution::Micros => TsResolution::MicroSecond,
                Resolution::Nanos => TsResolution::NanoSecond,
            },
            endianness: Endianness::native(),
            ..PcapHeader::default()
        };
        Ok(CaptureWriter {
            inner: PcapWriter::with_header(writer, header)?,
            linktype,
        })
    }

    /// Append one frame. A microsecond file truncates the timestamp; an
    /// `orig_len` below the captured length is raised to it.
    pub fn write(
        &mut self,
        timestamp_ns: u64,
        orig_len: u32,
        data: &[u8],
    ) -> Result<(), WriteError> {
        if data.len() > MAX_CAPLEN as usize {
            return Err(WriteError::FrameTooLong {
                len: data.len(),
                max: MAX_CAPLEN,
            });
        }
        let ts = Duration::from_nanos(timestamp_ns);
        if ts.as_secs() > u64::from(u32::MAX) {
            return Err(WriteError::TimestampOutOfRange(timestamp_ns));
        }
        let orig_len = orig_len.max(data.len() as u32);
        self.inner
            .write_packet(&PcapPacket::new(ts, orig_len, data))?;
        Ok(())
    }

    /// Append a frame read from a capture (its timestamp, lengths and bytes).
    pub fn write_frame(&mut self, frame: &Frame<'_>) -> Result<(), WriteError> {
        self.write(frame.timestamp_ns, frame.orig_len, frame.data)
    }

    /// The LINKTYPE_* number in the file header.
    pub fn linktype(&self) -> u32 {
        self.linktype
    }

    /// Flush and return the underlying writer.
    pub fn finish(self) -> Result<W, WriteError> {
        let mut w = self.inner.into_writer();
        w.flush()?;
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::super::testing::*;
    use super::super::{CaptureReader, Format};
    use super::*;

    #[test]
    fn writer_round_trip() {
        for (res, ts) in [
            (Resolution::Micros, 1_700_000_000_123_456_000),
            (Resolution::Nanos, 1_700_000_000_123_456_789),
        ] {
            let mut w = CaptureWriter::new(Vec::new(), LinkType::Ethernet, res).unwrap();
            assert_eq!(w.linktype(), 1);
            w.write(
                ts + 789 * u64::from(res == Resolution::Micros),
                60,
                &ETH_FRAME,
            )
            .unwrap();
            w.write(0, 0, &ETH_FRAME[..2]).unwrap(); // orig_len raised to 2
            let f = Frame {
                number: 9,
                timestamp_ns: 5_000,
                orig_len: 1514,
                data: &ETH_FRAME,
                link: Some(LinkType::Ethernet),
                linktype: 1,
                interface: 0,
            };
            w.write_frame(&f).unwrap();
            let bytes = w.finish().unwrap();
            let r = CaptureReader::new(Cursor::new(bytes)).unwrap();
            let nanos = res == Resolution::Nanos;
            assert!(matches!(r.format(), Format::Pcap { nanos: n, .. } if n == nanos));
            let (frames, damage) = read_all(r);
            assert_eq!(damage, None);
            let summary: Vec<_> = frames
                .iter()
                .map(|f| (f.number, f.ts, f.orig_len, f.data.as_slice(), f.link))
                .collect();
            let eth = Some(LinkType::Ethernet);
            assert_eq!(
                summary,
                [
                    (1, ts, 60, &ETH_FRAME[..], eth),
                    (2, 0, 2, &ETH_FRAME[..2], eth),
                    (3, 5_000, 1514, &ETH_FRAME[..], eth)
                ]
            );
        }
    }

    #[test]
    fn writer_refuses_what_pcap_cannot_hold() {
        let mut w = CaptureWriter::with_linktype(Vec::new(), 147, Resolution::Nanos).unwrap();
        let big = vec![0u8; MAX_CAPLEN as usize + 1];
        assert!(matches!(
            w.write(0, 0, &big),
            Err(WriteError::FrameTooLong { .. })
        ));
        let late = (u64::from(u32::MAX) + 1) * 1_000_000_000;
        assert!(matches!(
            w.write(late, 14, &ETH_FRAME),
            Err(WriteError::TimestampOutOfRange(_))
        ));
        let r = CaptureReader::new(Cursor::new(w.finish().unwrap())).unwrap();
        assert_eq!(r.pcap_linktype(), Some(147));
        assert_eq!(read_all(r), (vec![], None));
    }
}
