//! Capture files in and out: classic pcap and pcapng readers, a pcap writer.
//!
//! [`CaptureReader`] detects the format by its magic number and yields
//! [`Frame`]s that borrow the reader's own buffer, so iterating a file
//! allocates nothing per frame (the buffer grows to the largest record once).
//! It reads a damaged file the way Wireshark's wiretap does: every record
//! before the damage is yielded, then [`CaptureReader::next_frame`] returns a
//! [`Damage`] naming the frame number, byte offset and reason, and the reader
//! is finished. Nothing here panics or loops on bad input: every step either
//! consumes at least one whole record header or stops.
//!
//! The `pcap-file` crate parses the file header, each pcap record header and
//! the pcapng block framing (length, trailer, section byte order). We own the
//! buffer around it so that frames can be borrowed without a copy and so that
//! a damaged record can be described precisely. The fixed fields of pcapng
//! packet and interface blocks are read here rather than through the crate's
//! typed blocks, which reject options Wireshark accepts (non-UTF-8 comments,
//! a 4-byte `if_tzone`) and allocate per packet.
//!
//! What counts as damage follows Wireshark 4.0, our oracle for the public
//! corpus: a record cut short, a captured length above [`MAX_CAPLEN`], bad
//! pcapng block framing, a packet naming an interface that was never
//! described. A captured length above the file's snaplen or above the
//! original length, or a microsecond field of a million or more, are not
//! damage: real files carry them and both tcpdump and Wireshark read on.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use byteorder_slice::{BigEndian, LittleEndian};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapParser, PcapWriter};
use pcap_file::pcapng::RawBlock;
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

use crate::wire::LinkType;

/// Largest captured length we accept in one record: libpcap's
/// `MAXIMUM_SNAPLEN` and Wireshark's standard maximum. Anything above it is
/// corruption, and refusing it bounds the memory a hostile file can claim.
pub const MAX_CAPLEN: u32 = 262_144;

/// Largest pcapng block we buffer. Packet blocks are bounded by
/// [`MAX_CAPLEN`] long before this; the rest (name resolution, custom
/// blocks, decryption secrets) have no business being larger.
pub const MAX_BLOCK_LEN: u32 = 16 * 1024 * 1024;

const PCAP_HEADER_LEN: usize = 24;
const PCAP_RECORD_HEADER_LEN: usize = 16;
const INITIAL_BUFFER: usize = 256 * 1024;

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;

mod block_type {
    pub const INTERFACE_DESCRIPTION: u32 = 1;
    pub const PACKET: u32 = 2;
    pub const SIMPLE_PACKET: u32 = 3;
    pub const ENHANCED_PACKET: u32 = 6;
}

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
    /// The link layer, or `None` for link types [`crate::wire`] does not read.
    pub link: Option<LinkType>,
    /// The LINKTYPE_* number as stored (the upper 16 bits of a pcap header's
    /// link-type field carry FCS information and are dropped).
    pub linktype: u32,
    /// pcapng interface index (0 for pcap).
    pub interface: u32,
}

/// The file could not be opened as a capture at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot read capture file: {0}")]
    Io(#[from] io::Error),
    #[error("empty file: not a pcap or pcapng capture")]
    Empty,
    #[error("not a pcap or pcapng file (magic number {magic:#010x})")]
    NotACapture { magic: u32 },
    #[error("{format} file header truncated ({have} of {need} bytes)")]
    HeaderTruncated {
        format: &'static str,
        have: usize,
        need: usize,
    },
    #[error("bad {format} file header: {reason}")]
    BadHeader {
        format: &'static str,
        reason: String,
    },
}

/// Where and why reading stopped before the end of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The number the first unreadable frame would have had; every frame
    /// before it was yielded.
    pub frame: u64,
    /// Byte offset of the bad record or block, when known.
    pub offset: Option<u64>,
    pub reason: DamageReason,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "frame {}", self.frame)?;
        if let Some(off) = self.offset {
            write!(f, " (byte offset {off})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for Damage {}

/// Why a record or block could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DamageReason {
    #[error("record header truncated ({have} of {need} bytes)")]
    RecordHeaderTruncated { have: u64, need: u64 },
    #[error("record truncated: captured length {caplen}, only {have} bytes follow the header")]
    RecordTruncated { caplen: u32, have: u64 },
    #[error("captured length {caplen} exceeds the maximum of {max}")]
    CaplenTooLarge { caplen: u32, max: u32 },
    #[error("block length {len} is invalid: {why}")]
    BadBlockLength { len: u32, why: &'static str },
    #[error("block truncated: length {len}, only {have} bytes left in the file")]
    BlockTruncated { len: u32, have: u64 },
    #[error("captured length {caplen} exceeds the {room} bytes its block holds")]
    CaplenExceedsBlock { caplen: u32, room: u32 },
    #[error("packet refers to interface {interface}, but only {described} are described")]
    UnknownInterface { interface: u32, described: u32 },
    #[error("malformed {block}: {why}")]
    Malformed { block: &'static str, why: String },
    #[error("read error: {0}")]
    Io(String),
}

impl From<io::Error> for DamageReason {
    fn from(e: io::Error) -> Self {
        DamageReason::Io(e.to_string())
    }
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

/// What a file format's state knows about the next frame; the bytes are
/// `buf[start..start + len]`, already consumed but not yet overwritten.
struct Located {
    start: usize,
    len: usize,
    timestamp_ns: u64,
    orig_len: u32,
    linktype: u32,
    interface: u32,
}

enum State {
    Pcap {
        parser: PcapParser,
        big_endian: bool,
        /// Nanoseconds per unit of the record's fraction field.
        frac_ns: u64,
        linktype: u32,
    },
    PcapNg {
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
}

/// The bytes read but not yet consumed, and where they sit in the file.
struct Input<R> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// File offset of `buf[pos]`.
    offset: u64,
    eof: bool,
}

impl<R: Read> Input<R> {
    #[inline]
    fn available(&self) -> usize {
        self.end - self.pos
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }

    /// Make at least `need` bytes available, unless the file ends first.
    /// Callers bound `need` (by [`MAX_CAPLEN`] or [`MAX_BLOCK_LEN`]).
    fn fill(&mut self, need: usize) -> io::Result<()> {
        while self.available() < need && !self.eof {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            }
            if self.buf.len() < need {
                self.buf.resize(need.max(INITIAL_BUFFER), 0);
            }
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end = (self.end + n).min(self.buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A pcap or pcapng reader; see the module documentation.
///
/// ```no_run
/// # use rstwall_datapath::capture::CaptureReader;
/// let mut r = CaptureReader::open("trace.pcap")?;
/// while let Some(frame) = r.next_frame()? {
///     println!("{} {} bytes", frame.number, frame.data.len());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct CaptureReader<R> {
    input: Input<R>,
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

/// Read a u16/u32/u64 in the file's byte order; callers have checked the length.
#[inline]
fn rd16(b: &[u8], at: usize, big: bool) -> u16 {
    let raw = [b[at], b[at + 1]];
    if big {
        u16::from_be_bytes(raw)
    } else {
        u16::from_le_bytes(raw)
    }
}

#[inline]
fn rd32(b: &[u8], at: usize, big: bool) -> u32 {
    let raw = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(raw)
    } else {
        u32::from_le_bytes(raw)
    }
}

#[inline]
fn rd64(b: &[u8], at: usize, big: bool) -> u64 {
    let hi = u64::from(rd32(b, at, big));
    let lo = u64::from(rd32(b, at + 4, big));
    if big {
        (hi << 32) | lo
    } else {
        (lo << 32) | hi
    }
}

/// The link-type number proper: pcap keeps FCS details in the upper bits.
#[inline]
fn linktype_number(field: u32) -> u32 {
    field & 0xffff
}

impl<R: Read> CaptureReader<R> {
    /// Read the file header of a pcap or pcapng stream.
    pub fn new(src: R) -> Result<Self, OpenError> {
        let mut input = Input {
            src,
            buf: vec![0; INITIAL_BUFFER],
            pos: 0,
            end: 0,
            offset: 0,
            eof: false,
        };
        input.fill(PCAP_HEADER_LEN)?;
        let head = input.bytes();
        if head.is_empty() {
            return Err(OpenError::Empty);
        }
        if head.len() < 4 {
            let magic = head.iter().fold(0, |m, &b| (m << 8) | u32::from(b));
            return Err(OpenError::NotACapture { magic });
        }
        let magic = rd32(head, 0, true);
        let (format, state) = if [PCAP_MAGIC_US, PCAP_MAGIC_NS].contains(&magic)
            || [PCAP_MAGIC_US, PCAP_MAGIC_NS].contains(&magic.swap_bytes())
        {
            open_pcap(&mut input)?
        } else if magic == PCAPNG_SHB {
            open_pcapng(&mut input)?
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
            State::Pcap {
                parser,
                big_endian,
                frac_ns,
                linktype,
            } => next_pcap(&mut self.input, parser, *big_endian, *frac_ns, *linktype),
            State::PcapNg {
                big_endian,
                interfaces,
            } => next_pcapng(&mut self.input, big_endian, interfaces),
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
        match self.state {
            State::Pcap { linktype, .. } => Some(linktype),
            State::PcapNg { .. } => None,
        }
    }
}

fn open_pcap<R: Read>(input: &mut Input<R>) -> Result<(Format, State), OpenError> {
    if input.available() < PCAP_HEADER_LEN {
        return Err(OpenError::HeaderTruncated {
            format: "pcap",
            have: input.available(),
            need: PCAP_HEADER_LEN,
        });
    }
    let (_, parser) = PcapParser::new(input.bytes()).map_err(|e| OpenError::BadHeader {
        format: "pcap",
        reason: e.to_string(),
    })?;
    let header: PcapHeader = parser.header();
    let big_endian = header.endianness == Endianness::Big;
    let nanos = header.ts_resolution == TsResolution::NanoSecond;
    let state = State::Pcap {
        parser,
        big_endian,
        frac_ns: if nanos { 1 } else { 1_000 },
        linktype: linktype_number(u32::from(header.datalink)),
    };
    input.consume(PCAP_HEADER_LEN);
    Ok((Format::Pcap { nanos, big_endian }, state))
}

fn open_pcapng<R: Read>(input: &mut Input<R>) -> Result<(Format, State), OpenError> {
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
    let state = State::PcapNg {
        big_endian,
        interfaces: Vec::new(),
    };
    Ok((Format::PcapNg, state))
}

/// The byte order a section header block announces: `None` if fewer than
/// 12 bytes are at hand, `Err` with the magic if it is neither order.
fn shb_byte_order(b: &[u8]) -> Option<Result<bool, u32>> {
    let magic = rd32(b.get(..12)?, 8, true);
    Some(match magic {
        PCAPNG_BOM => Ok(true),
        m if m.swap_bytes() == PCAPNG_BOM => Ok(false),
        m => Err(m),
    })
}

fn check_block_len(len: u32) -> Result<(), &'static str> {
    if len < 12 {
        Err("shorter than a block header and trailer")
    } else if len % 4 != 0 {
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

fn next_pcap<R: Read>(
    input: &mut Input<R>,
    parser: &PcapParser,
    big_endian: bool,
    frac_ns: u64,
    linktype: u32,
) -> Result<Option<Located>, DamageReason> {
    input.fill(PCAP_RECORD_HEADER_LEN)?;
    let have = input.available();
    if have == 0 {
        return Ok(None);
    }
    if have < PCAP_RECORD_HEADER_LEN {
        return Err(DamageReason::RecordHeaderTruncated {
            have: have as u64,
            need: PCAP_RECORD_HEADER_LEN as u64,
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
    let record_len = PCAP_RECORD_HEADER_LEN + caplen as usize;
    input.fill(record_len)?;
    if input.available() < record_len {
        return Err(DamageReason::RecordTruncated {
            caplen,
            have: (input.available() - PCAP_RECORD_HEADER_LEN) as u64,
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
        start: input.pos + PCAP_RECORD_HEADER_LEN,
        len: caplen as usize,
        timestamp_ns,
        orig_len: raw.orig_len,
        linktype,
        interface: 0,
    };
    input.consume(record_len);
    Ok(Some(located))
}

fn next_pcapng<R: Read>(
    input: &mut Input<R>,
    big_endian: &mut bool,
    interfaces: &mut Vec<Interface>,
) -> Result<Option<Located>, DamageReason> {
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
        if block_type == PCAPNG_SHB {
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
            PCAPNG_SHB => {
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
    /// of a link type [`crate::wire`] does not read).
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
