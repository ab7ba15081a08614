//! The one definition of what a TCP reset *is*.
//!
//! Every later consumer — the `analyze` report and its JSON, `--events`,
//! Prometheus labels, BPF-side counters and the policy file — names RST
//! classes through [`RstClass`], so the string forms here are part of the
//! operator-facing contract and must not change.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the receiving Linux kernel would judge a segment carrying RST.
///
/// The decision itself lives in [`crate::flow`] (`Flow::judge_rst`), written
/// against Linux's `tcp_validate_incoming()`, `tcp_rcv_synsent_state_process()`,
/// `tcp_check_req()` and `tcp_timewait_state_process()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum RstClass {
    /// Answers a SYN and acknowledges it (ack = ISN+1): the port is closed.
    Refused = 0,
    /// Synchronized flow, seq exactly the receiver's next expected sequence
    /// (RFC 5961 "exact match"): the kernel tears the connection down.
    Abort = 1,
    /// An acceptable RST after a FIN was seen in either direction, including
    /// seq = RCV.NXT-1 in the closing states where Linux accepts it.
    Teardown = 2,
    /// Inside the receiver's window but not exact: Linux sends a challenge
    /// ACK and keeps the connection. Blind in-window injection looks like this.
    InWindow = 3,
    /// Outside the receiver's window: ignored by the kernel. Spoofed or stale.
    OutOfWindow = 4,
    /// Answers a SYN without acknowledging it: the kernel ignores it. Spoofed.
    SynSentBadAck = 5,
    /// No state for this 5-tuple (backscatter, scans, or older than the tracker).
    NoFlow = 6,
    /// RST combined with SYN or FIN: no conforming stack sends it.
    InvalidFlags = 7,
}

impl RstClass {
    /// Number of classes; sizes every per-class counter array.
    pub const COUNT: usize = 8;

    /// All classes in index order.
    pub const ALL: [RstClass; Self::COUNT] = [
        RstClass::Refused,
        RstClass::Abort,
        RstClass::Teardown,
        RstClass::InWindow,
        RstClass::OutOfWindow,
        RstClass::SynSentBadAck,
        RstClass::NoFlow,
        RstClass::InvalidFlags,
    ];

    /// Stable name used in reports, JSON, metrics labels and policy files.
    pub const fn as_str(self) -> &'static str {
        match self {
            RstClass::Refused => "refused",
            RstClass::Abort => "abort",
            RstClass::Teardown => "teardown",
            RstClass::InWindow => "in_window",
            RstClass::OutOfWindow => "out_of_window",
            RstClass::SynSentBadAck => "syn_sent_bad_ack",
            RstClass::NoFlow => "no_flow",
            RstClass::InvalidFlags => "invalid_flags",
        }
    }

    /// Index into per-class arrays (`0..COUNT`).
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether the receiving Linux kernel acts on a RST of this class (tears
    /// the connection or the connection attempt down).
    ///
    /// `invalid_flags` and `no_flow` are neither: Linux processes RST+SYN as a
    /// RST, and a flow unknown to the tracker may still be known to the host.
    /// Policy defaults therefore never drop those two (see [`crate::policy`]).
    pub const fn kernel_accepts(self) -> Option<bool> {
        match self {
            RstClass::Refused | RstClass::Abort | RstClass::Teardown => Some(true),
            RstClass::InWindow | RstClass::OutOfWindow | RstClass::SynSentBadAck => Some(false),
            RstClass::NoFlow | RstClass::InvalidFlags => None,
        }
    }

    /// One-line meaning, for `--help` and reports.
    pub const fn describe(self) -> &'static str {
        match self {
            RstClass::Refused => "answers a SYN with ack=ISN+1: closed port, connection refused",
            RstClass::Abort => "exact-sequence RST in a live flow: a real abort",
            RstClass::Teardown => "acceptable RST after a FIN: data after close",
            RstClass::InWindow => "in window but not exact: challenge-ACKed, blind injection?",
            RstClass::OutOfWindow => "outside the receiver's window: ignored, spoofed or stale",
            RstClass::SynSentBadAck => "answers a SYN without acknowledging it: spoofed",
            RstClass::NoFlow => "no state for this 5-tuple: backscatter, scan, old flow",
            RstClass::InvalidFlags => "RST with SYN or FIN: impossible flag combination",
        }
    }
}

impl fmt::Display for RstClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a class name that is not one of [`RstClass::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown RST class `{0}` (expected one of: refused, abort, teardown, in_window, out_of_window, syn_sent_bad_ack, no_flow, invalid_flags)")]
pub struct UnknownClass(pub String);

impl FromStr for RstClass {
    type Err = UnknownClass;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RstClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownClass(s.to_string()))
    }
}

/// The class of every TCP segment by its flags, independent of flow state.
/// The XDP program counts these in the kernel; userspace counts the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum FlagClass {
    /// SYN without ACK: an active open.
    Syn = 0,
    /// SYN with ACK: a passive open.
    SynAck = 1,
    /// FIN set (and no SYN or RST).
    Fin = 2,
    /// RST without ACK.
    Rst = 3,
    /// RST with ACK.
    RstAck = 4,
    /// Anything else: ACKs and data.
    Other = 5,
}

impl FlagClass {
    pub const COUNT: usize = 6;
    pub const ALL: [FlagClass; Self::COUNT] = [
        FlagClass::Syn,
        FlagClass::SynAck,
        FlagClass::Fin,
        FlagClass::Rst,
        FlagClass::RstAck,
        FlagClass::Other,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            FlagClass::Syn => "syn",
            FlagClass::SynAck => "synack",
            FlagClass::Fin => "fin",
            FlagClass::Rst => "rst",
            FlagClass::RstAck => "rstack",
            FlagClass::Other => "other",
        }
    }

    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Classify by flag bits. RST wins over everything, then SYN, then FIN,
    /// the precedence the kernel's own processing follows.
    #[inline]
    pub const fn of(flags: crate::wire::TcpFlags) -> FlagClass {
        if flags.rst() {
            if flags.ack() {
                FlagClass::RstAck
            } else {
                FlagClass::Rst
            }
        } else if flags.syn() {
            if flags.ack() {
                FlagClass::SynAck
            } else {
                FlagClass::Syn
            }
        } else if flags.fin() {
            FlagClass::Fin
        } else {
            FlagClass::Other
        }
    }
}

impl fmt::Display for FlagClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_indices_are_dense() {
        for (i, c) in RstClass::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(c.as_str().parse::<RstClass>().unwrap(), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert!("reset".parse::<RstClass>().is_err());
    }
}
