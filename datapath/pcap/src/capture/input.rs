//! The bytes of a capture read but not yet consumed, in a buffer the
//! reader owns, and reading integers from them in the file's byte order.

use std::io::{self, Read};

/// Largest captured length we accept in one record: libpcap's
/// `MAXIMUM_SNAPLEN` and Wireshark's standard maximum. Anything above it is
/// corruption, and refusing it bounds the memory a hostile file can claim.
pub const MAX_CAPLEN: u32 = 262_144;

/// The buffer a reader starts with; it grows to the largest record once.
pub(super) const INITIAL_BUFFER: usize = 256 * 1024;

/// What a file format's state knows about the next frame; the bytes are
/// `buf[start..start + len]`, already consumed but not yet overwritten.
pub(super) struct Located {
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) timestamp_ns: u64,
    pub(super) orig_len: u32,
    pub(super) linktype: u32,
    pub(super) interface: u32,
}

/// The bytes read but not yet consumed, and where they sit in the file.
pub(super) struct Input<R> {
    src: R,
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
    end: usize,
    /// File offset of `buf[pos]`.
    pub(super) offset: u64,
    eof: bool,
}

impl<R: Read> Input<R> {
    pub(super) fn new(src: R) -> Input<R> {
        Input {
            src,
            buf: vec![0; INITIAL_BUFFER],
            pos: 0,
            end: 0,
            offset: 0,
            eof: false,
        }
    }

    #[inline]
    pub(super) fn available(&self) -> usize {
        self.end - self.pos
    }

    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    #[inline]
    pub(super) fn consume(&mut self, n: usize) {
        self.pos += n;
        self.offset += n as u64;
    }

    /// Make at least `need` bytes available, unless the file ends first.
    /// Callers bound `need` (by [`MAX_CAPLEN`] or [`MAX_BLOCK_LEN`]).
    pub(super) fn fill(&mut self, need: usize) -> io::Result<()> {
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

/// Read a u16/u32/u64 in the file's byte order; callers have checked the length.
#[inline]
pub(super) fn rd16(b: &[u8], at: usize, big: bool) -> u16 {
    let raw = [b[at], b[at + 1]];
    if big {
        u16::from_be_bytes(raw)
    } else {
        u16::from_le_bytes(raw)
    }
}

#[inline]
pub(super) fn rd32(b: &[u8], at: usize, big: bool) -> u32 {
    let raw = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big {
        u32::from_be_bytes(raw)
    } else {
        u32::from_le_bytes(raw)
    }
}

#[inline]
pub(super) fn rd64(b: &[u8], at: usize, big: bool) -> u64 {
    let hi = u64::from(rd32(b, at, big));
    let lo = u64::from(rd32(b, at + 4, big));
    if big {
        (hi << 32) | lo
    } else {
        (lo << 32) | hi
    }
}
