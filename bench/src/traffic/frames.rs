//! [`Frames`]: pre-built frames in one buffer.

use std::ops::Range;

use super::label::{FrameCounts, Label};
use crate::frame::{marker_mac, TcpRepr};

/// Slot size of the frame buffer: a cache line per IPv4 frame, two per
/// IPv6 frame.
pub(super) const SLOT: usize = 64;

#[derive(Clone, Copy, Debug)]
struct FrameRef {
    offset: u32,
    len: u32,
}

/// Pre-built frames in one contiguous buffer, in ring order.
#[derive(Clone)]
pub struct Frames {
    buf: Vec<u8>,
    /// Offset of the first 64-byte-aligned byte of `buf`.
    base: usize,
    /// Bytes used after `base`.
    used: usize,
    refs: Vec<FrameRef>,
    labels: Vec<Label>,
    counts: FrameCounts,
}

impl Frames {
    /// Room for frames taking `slots` 64-byte slots in all.
    pub(super) fn with_slots(frames: usize, slots: usize) -> Frames {
        let buf = vec![0u8; slots * SLOT + SLOT];
        let base = buf.as_ptr().align_offset(SLOT);
        assert!(base < SLOT, "cannot align the frame buffer");
        assert!(slots * SLOT <= u32::MAX as usize, "frame buffer over 4 GiB");
        Frames {
            buf,
            base,
            used: 0,
            refs: Vec::with_capacity(frames),
            labels: Vec::with_capacity(frames),
            counts: FrameCounts::default(),
        }
    }

    /// Frames for hand-made segments, in the given order, each marked
    /// with its label.
    pub fn from_segments(segments: &[(TcpRepr, Label)]) -> Frames {
        let slots = segments
            .iter()
            .map(|(r, _)| r.frame_len().div_ceil(SLOT))
            .sum();
        let mut frames = Frames::with_slots(segments.len(), slots);
        for (repr, label) in segments {
            frames.push(repr, *label);
        }
        frames
    }

    /// Frames made to order, in the given order, exactly as described
    /// (source MAC included); labelled [`Label::Crafted`].
    pub fn crafted(segments: &[TcpRepr]) -> Frames {
        let slots = segments.iter().map(|r| r.frame_len().div_ceil(SLOT)).sum();
        let mut frames = Frames::with_slots(segments.len(), slots);
        for repr in segments {
            frames.push_as_is(repr, Label::Crafted);
        }
        frames
    }

    /// Longest frame.
    pub fn max_len(&self) -> usize {
        self.refs.iter().map(|r| r.len as usize).max().unwrap_or(0)
    }

    pub(super) fn push(&mut self, repr: &TcpRepr, label: Label) {
        let marked = TcpRepr {
            src_mac: marker_mac(label.code()),
            ..*repr
        };
        self.push_as_is(&marked, label);
    }

    fn push_as_is(&mut self, repr: &TcpRepr, label: Label) {
        let at = self.base + self.used;
        let len = repr.emit(&mut self.buf[at..]);
        self.refs.push(FrameRef {
            offset: self.used as u32,
            len: len as u32,
        });
        self.labels.push(label);
        self.counts.add(label, repr.src.is_ipv6(), len);
        self.used += len.div_ceil(SLOT) * SLOT;
    }

    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// Frame `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        self.frame(self.refs[i])
    }

    #[inline]
    fn frame(&self, r: FrameRef) -> &[u8] {
        let at = self.base + r.offset as usize;
        &self.buf[at..at + r.len as usize]
    }

    /// Frames `range`, in order.
    #[inline]
    pub fn range(&self, range: Range<usize>) -> impl Iterator<Item = &[u8]> + '_ {
        self.refs[range].iter().map(|&r| self.frame(r))
    }

    /// Change every frame in place (its length stays).
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut [u8])) {
        for r in &self.refs {
            let at = self.base + r.offset as usize;
            f(&mut self.buf[at..at + r.len as usize]);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.range(0..self.len())
    }

    pub fn label(&self, i: usize) -> Label {
        self.labels[i]
    }

    pub fn counts(&self) -> &FrameCounts {
        &self.counts
    }

    /// Memory the frames occupy (slots, not the index).
    pub fn buffer_bytes(&self) -> usize {
        self.used
    }
}
