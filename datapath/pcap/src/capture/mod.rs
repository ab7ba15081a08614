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
//!
//! * [`CaptureReader`], [`Frame`], [`Format`] — the reader (`reader`),
//!   over a buffer it owns (`input`), with one state machine per format:
//!   classic pcap (`pcap`) and pcapng (`pcapng`);
//! * [`OpenError`], [`Damage`], [`DamageReason`] — what can go wrong
//!   (`damage`);
//! * [`CaptureWriter`] — the pcap writer (`writer`).

mod damage;
mod input;
mod pcap;
mod pcapng;
mod reader;
mod writer;

#[cfg(test)]
mod testing;

pub use damage::{Damage, DamageReason, OpenError};
pub use input::MAX_CAPLEN;
pub use pcapng::MAX_BLOCK_LEN;
pub use reader::{CaptureReader, Format, Frame};
pub use writer::{CaptureWriter, Resolution, WriteError};
