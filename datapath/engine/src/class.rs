//! The one definition of what a TCP reset *is*.
//!
//! Every later consumer — the `analyze` report and its JSON, `--events`,
//! Prometheus labels, BPF-side counters and the policy file — names RST
//! classes through [`RstClass`], so the string forms here are part of the
//! operator-facing contract and must not change.

crate::closed_enum! {
    /// How the receiving Linux kernel would judge a segment carrying RST.
    ///
    /// The decision itself lives in [`crate::flow`] (`judge.rs`, through
    /// `FlowTable::observe`), written against Linux's
    /// `tcp_validate_incoming()`, `tcp_rcv_synsent_state_process()`,
    /// `tcp_check_req()` and `tcp_timewait_state_process()`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    #[repr(u8)]
    pub enum RstClass: "RST class" {
        /// Answers a SYN and acknowledges it (ack = ISN+1): the port is closed.
        Refused,
        /// Synchronized flow, seq exactly the receiver's next expected sequence
        /// (RFC 5961 "exact match"): the kernel tears the connection down.
        Abort,
        /// An acceptable RST after a FIN was seen in either direction, including
        /// seq = RCV.NXT-1 in the closing states where Linux accepts it.
        Teardown,
        /// Inside the receiver's window but not exact: Linux sends a challenge
        /// ACK and keeps the connection. Blind in-window injection looks like this.
        InWindow,
        /// Outside the receiver's window: ignored by the kernel. Spoofed or stale.
        OutOfWindow,
        /// Answers a SYN without acknowledging it: the kernel ignores it. Spoofed.
        SynSentBadAck,
        /// No state for this 5-tuple (backscatter, scans, or older than the tracker).
        NoFlow,
        /// RST combined with SYN or FIN: no conforming stack sends it.
        InvalidFlags,
    }
}

impl RstClass {
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

crate::closed_enum! {
    /// The class of every TCP segment by its flags, independent of flow state.
    /// The XDP program counts these in the kernel (`RSTWALL_CNT_SYN` ..
    /// `RSTWALL_CNT_OTHER` in the BPF shared header, same names, same
    /// indices); userspace counts the same. Operators see these names as
    /// metrics labels and as the keys of the statistics document's XDP
    /// `flag_classes`: `synack` and `rstack`, one word, as in the header.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[repr(u8)]
    pub enum FlagClass: "TCP flag class" {
        /// SYN without ACK: an active open.
        Syn,
        /// SYN with ACK: a passive open.
        SynAck = "synack",
        /// FIN set (and no SYN or RST).
        Fin,
        /// RST without ACK.
        Rst,
        /// RST with ACK.
        RstAck = "rstack",
        /// Anything else: ACKs and data.
        Other,
    }
}

impl FlagClass {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::assert_consistent;

    #[test]
    fn names_round_trip_and_indices_are_dense() {
        assert_consistent::<RstClass>();
        for (i, c) in RstClass::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(c.as_str().parse::<RstClass>().unwrap(), c);
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert!("reset".parse::<RstClass>().is_err());
        assert_eq!(
            "reset".parse::<RstClass>().unwrap_err().to_string(),
            "unknown RST class `reset` (expected one of: refused, abort, teardown, in_window, \
             out_of_window, syn_sent_bad_ack, no_flow, invalid_flags)"
        );
    }

    /// The spelling operators see (metrics labels, the statistics
    /// document, the BPF header's counter names) is the only one: serde
    /// says `synack` and `rstack` too.
    #[test]
    fn flag_class_names() {
        assert_consistent::<FlagClass>();
        assert_eq!(
            FlagClass::NAMES,
            ["syn", "synack", "fin", "rst", "rstack", "other"]
        );
        assert_eq!(
            serde_json::to_string(&FlagClass::SynAck).unwrap(),
            "\"synack\""
        );
        assert_eq!(
            serde_json::to_string(&FlagClass::RstAck).unwrap(),
            "\"rstack\""
        );
        assert!(serde_json::from_str::<FlagClass>("\"syn_ack\"").is_err());
    }
}
