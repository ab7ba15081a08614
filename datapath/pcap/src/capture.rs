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
//! a 4-byte `if_tzone`) and allocate for the options of every packet.
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

use rstwall_engine::wire::LinkType;

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
    /// The link layer, or `None` for link types [`rstwall_engine::wire`] does not read.
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
/// # use rstwall_pcap::capture::CaptureReader;
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
    use super::*;
    use std::io::Cursor;

    const ETH_FRAME: [u8; 14] = [
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00, // dst, src, IPv4
    ];

    /// A classic pcap file: (ts_sec, ts_frac, orig_len, data) per record.
    fn pcap(
        big: bool,
        nanos: bool,
        snaplen: u32,
        linktype: u32,
        recs: &[(u32, u32, u32, &[u8])],
    ) -> Vec<u8> {
        let w32 = |v: &mut Vec<u8>, x: u32| {
            v.extend_from_slice(&if big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        };
        let w16 = |v: &mut Vec<u8>, x: u16| {
            v.extend_from_slice(&if big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            })
        };
        let mut v = Vec::new();
        w32(&mut v, if nanos { PCAP_MAGIC_NS } else { PCAP_MAGIC_US });
        w16(&mut v, 2);
        w16(&mut v, 4);
        w32(&mut v, 0);
        w32(&mut v, 0);
        w32(&mut v, snaplen);
        w32(&mut v, linktype);
        for &(sec, frac, orig, data) in recs {
            w32(&mut v, sec);
            w32(&mut v, frac);
            w32(&mut v, data.len() as u32);
            w32(&mut v, orig);
            v.extend_from_slice(data);
        }
        v
    }

    /// pcapng blocks in one byte order.
    struct Ng {
        big: bool,
        out: Vec<u8>,
    }

    impl Ng {
        fn new(big: bool) -> Ng {
            let mut ng = Ng {
                big,
                out: Vec::new(),
            };
            ng.shb();
            ng
        }
        fn u16(&self, x: u16) -> [u8; 2] {
            if self.big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            }
        }
        fn u32(&self, x: u32) -> [u8; 4] {
            if self.big {
                x.to_be_bytes()
            } else {
                x.to_le_bytes()
            }
        }
        fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Ng {
            let mut body = body.to_vec();
            body.resize(body.len().next_multiple_of(4), 0);
            let len = body.len() as u32 + 12;
            let (t, l) = (self.u32(block_type), self.u32(len));
            self.out.extend_from_slice(&t);
            self.out.extend_from_slice(&l);
            self.out.extend_from_slice(&body);
            self.out.extend_from_slice(&l);
            self
        }
        fn shb(&mut self) -> &mut Ng {
            let mut b = self.u32(PCAPNG_BOM).to_vec();
            b.extend_from_slice(&self.u16(1));
            b.extend_from_slice(&self.u16(0));
            b.extend_from_slice(&[0xff; 8]); // section length: unknown
            self.block(PCAPNG_SHB, &b)
        }
        /// An IDB; `tsresol` adds an if_tsresol option, `offset` if_tsoffset.
        fn idb(
            &mut self,
            linktype: u16,
            snaplen: u32,
            tsresol: Option<u8>,
            offset: Option<u64>,
        ) -> &mut Ng {
            let mut b = self.u16(linktype).to_vec();
            b.extend_from_slice(&self.u16(0));
            b.extend_from_slice(&self.u32(snaplen));
            // A comment that is not UTF-8, which pcap-file's typed IDB refuses.
            b.extend_from_slice(&self.u16(1));
            b.extend_from_slice(&self.u16(3));
            b.extend_from_slice(&[0xff, 0xfe, 0xfd, 0]);
            if let Some(r) = tsresol {
                b.extend_from_slice(&self.u16(9));
                b.extend_from_slice(&self.u16(1));
                b.extend_from_slice(&[r, 0, 0, 0]);
            }
            if let Some(o) = offset {
                b.extend_from_slice(&self.u16(14));
                b.extend_from_slice(&self.u16(8));
                let raw = if self.big {
                    o.to_be_bytes()
                } else {
                    o.to_le_bytes()
                };
                b.extend_from_slice(&raw);
            }
            b.extend_from_slice(&[0; 4]); // opt_endofopt
            self.block(block_type::INTERFACE_DESCRIPTION, &b)
        }
        fn epb(&mut self, iface: u32, units: u64, orig: u32, data: &[u8]) -> &mut Ng {
            let mut b = self.u32(iface).to_vec();
            b.extend_from_slice(&self.u32((units >> 32) as u32));
            b.extend_from_slice(&self.u32(units as u32));
            b.extend_from_slice(&self.u32(data.len() as u32));
            b.extend_from_slice(&self.u32(orig));
            b.extend_from_slice(data);
            self.block(block_type::ENHANCED_PACKET, &b)
        }
        fn spb(&mut self, orig: u32, data: &[u8]) -> &mut Ng {
            let mut b = self.u32(orig).to_vec();
            b.extend_from_slice(data);
            self.block(block_type::SIMPLE_PACKET, &b)
        }
        fn pb(&mut self, iface: u16, units: u64, data: &[u8]) -> &mut Ng {
            let mut b = self.u16(iface).to_vec();
            b.extend_from_slice(&self.u16(0));
            b.extend_from_slice(&self.u32((units >> 32) as u32));
            b.extend_from_slice(&self.u32(units as u32));
            b.extend_from_slice(&self.u32(data.len() as u32));
            b.extend_from_slice(&self.u32(data.len() as u32));
            b.extend_from_slice(data);
            self.block(block_type::PACKET, &b)
        }
        fn bytes(&self) -> Vec<u8> {
            self.out.clone()
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    struct Owned {
        number: u64,
        ts: u64,
        orig_len: u32,
        data: Vec<u8>,
        link: Option<LinkType>,
        linktype: u32,
        interface: u32,
    }

    /// Read everything: the frames, then the damage if any.
    fn read_all<R: Read>(mut r: CaptureReader<R>) -> (Vec<Owned>, Option<Damage>) {
        let mut frames = Vec::new();
        loop {
            match r.next_frame() {
                Ok(Some(f)) => frames.push(Owned {
                    number: f.number,
                    ts: f.timestamp_ns,
                    orig_len: f.orig_len,
                    data: f.data.to_vec(),
                    link: f.link,
                    linktype: f.linktype,
                    interface: f.interface,
                }),
                Ok(None) => break,
                Err(d) => {
                    assert_eq!(r.damage(), Some(&d));
                    assert_eq!(r.next_frame(), Ok(None), "finished after damage");
                    return (frames, Some(d));
                }
            }
        }
        assert_eq!(r.next_frame(), Ok(None));
        (frames, None)
    }

    fn read_bytes(b: &[u8]) -> (Vec<Owned>, Option<Damage>) {
        read_all(CaptureReader::new(Cursor::new(b.to_vec())).expect("opens"))
    }

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

    /// A reader that hands out one byte per call, with interruptions.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        calls: usize,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % 3 == 0 {
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
