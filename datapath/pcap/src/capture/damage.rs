//! Why a file could not be opened, or where and why reading stopped.

use std::fmt;
use std::io;

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
