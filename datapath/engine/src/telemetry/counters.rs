//! The global counters.

use serde::{Deserialize, Serialize};

use crate::class::{FlagClass, RstClass};
use crate::policy::Reason;
use crate::wire::{NotTcp, ParseError};

/// Global counters. Plain integers: each worker owns its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub frames: u64,
    pub bytes: u64,
    /// Frames of a link type we do not read.
    pub unsupported_link: u64,
    pub parse_errors: [u64; ParseError::COUNT],
    pub not_tcp: [u64; NotTcp::COUNT],
    /// TCP segments (at least the flags byte captured).
    pub tcp: u64,
    /// Exclusive classes, as the XDP program counts them.
    pub flag_classes: [u64; FlagClass::COUNT],
    /// Flag bits, as `netstat`/tshark count them (overlapping).
    pub syn: u64,
    pub synack: u64,
    pub fin: u64,
    pub rst: u64,
    pub rstack: u64,
    /// RSTs by class and verdict (`[class][0=pass,1=drop]`).
    pub rst_classes: [[u64; 2]; RstClass::COUNT],
    pub rst_with_data: [u64; RstClass::COUNT],
    /// RSTs by class that enforce mode drops (or would drop, in monitor mode).
    pub rst_would_drop: [u64; RstClass::COUNT],
    /// SYNs answered by a RST (`refused`): netstat's "failed connection attempts".
    pub failed_connects: u64,
    /// Policy decisions by reason.
    pub reasons: [u64; Reason::COUNT],
    /// Packets enforce mode would have dropped (counted in monitor mode too).
    pub would_drop: u64,
    pub passed: u64,
    pub dropped: u64,
}

/// One RST class's counts by name, as documents show them: the per-class
/// arrays of [`Counters`] read at one class ([`Counters::class`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassCounts {
    pub total: u64,
    pub passed: u64,
    pub dropped: u64,
    /// Dropped under enforce, or would be in monitor mode.
    pub would_drop: u64,
    pub with_data: u64,
}

impl Counters {
    pub fn rst_total(&self, class: RstClass) -> u64 {
        let [p, d] = self.rst_classes[class.index()];
        p + d
    }

    /// The counts of one RST class, by name.
    pub fn class(&self, class: RstClass) -> ClassCounts {
        let i = class.index();
        let [passed, dropped] = self.rst_classes[i];
        ClassCounts {
            total: passed + dropped,
            passed,
            dropped,
            would_drop: self.rst_would_drop[i],
            with_data: self.rst_with_data[i],
        }
    }

    /// `n` RSTs of `class` that the in-kernel RST guard dropped: counted
    /// as the engine counts a RST of that class its policy drops (per-class
    /// drops and would-drops, the drop totals, the class-drop reason). They
    /// never reached a worker, so frames, TCP segments and flag bits do
    /// not include them.
    pub fn add_kernel_rst_drops(&mut self, class: RstClass, n: u64) {
        let i = class.index();
        self.rst_classes[i][1] += n;
        self.rst_would_drop[i] += n;
        self.reasons[Reason::ClassDrop.index()] += n;
        self.dropped += n;
        self.would_drop += n;
    }

    pub fn merge(&mut self, o: &Counters) {
        fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        self.frames += o.frames;
        self.bytes += o.bytes;
        self.unsupported_link += o.unsupported_link;
        add(&mut self.parse_errors, &o.parse_errors);
        add(&mut self.not_tcp, &o.not_tcp);
        self.tcp += o.tcp;
        add(&mut self.flag_classes, &o.flag_classes);
        self.syn += o.syn;
        self.synack += o.synack;
        self.fin += o.fin;
        self.rst += o.rst;
        self.rstack += o.rstack;
        for (a, b) in self.rst_classes.iter_mut().zip(&o.rst_classes) {
            add(a, b);
        }
        add(&mut self.rst_with_data, &o.rst_with_data);
        add(&mut self.rst_would_drop, &o.rst_would_drop);
        self.failed_connects += o.failed_connects;
        add(&mut self.reasons, &o.reasons);
        self.would_drop += o.would_drop;
        self.passed += o.passed;
        self.dropped += o.dropped;
    }
}
