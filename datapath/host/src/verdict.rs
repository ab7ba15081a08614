//! The kernel's verdict on a RST, and whether rstwall's class agrees.
//!
//! rstwall's class says how the *receiving* kernel would judge a RST
//! ([`RstClass`]); where this host is the receiver, its kernel says what it
//! did, and the two can be compared:
//!
//! | kernel (receiver side)                          | classes that agree        |
//! |-------------------------------------------------|---------------------------|
//! | reset (tcp_receive_reset) in SYN-SENT            | refused                   |
//! | reset in any other state                         | abort, teardown           |
//! | challenge ACK, or dropped TCP_RESET on a         | in_window                 |
//! | synchronized socket                              |                           |
//! | dropped on a time-wait socket                    | teardown, out_of_window   |
//! | dropped otherwise (sequence, ack, no socket...)  | out_of_window,            |
//! |                                                  | syn_sent_bad_ack, no_flow |
//!
//! `invalid_flags` (RST with SYN or FIN) has no prediction: the kernel
//! treats it as a RST. Where only the sender is this host (a RST sent to a
//! remote peer), the receiver's verdict is not visible; the send reason
//! still explains it, and a `refused` RST must have been sent for
//! NO_SOCKET.

use rstwall_engine::class::RstClass;
use serde::Serialize;

/// TCP states (include/net/tcp_states.h), for what the kernel reports.
pub mod state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
    pub const NEW_SYN_RECV: u8 = 12;

    /// The kernel's name of a state, as `ss` prints it.
    pub fn name(s: u8) -> &'static str {
        match s {
            ESTABLISHED => "ESTABLISHED",
            SYN_SENT => "SYN-SENT",
            SYN_RECV => "SYN-RECV",
            FIN_WAIT1 => "FIN-WAIT-1",
            FIN_WAIT2 => "FIN-WAIT-2",
            TIME_WAIT => "TIME-WAIT",
            CLOSE => "CLOSE",
            CLOSE_WAIT => "CLOSE-WAIT",
            LAST_ACK => "LAST-ACK",
            LISTEN => "LISTEN",
            CLOSING => "CLOSING",
            NEW_SYN_RECV => "NEW-SYN-RECV",
            _ => "UNKNOWN",
        }
    }

    /// Both sides' sequence numbers are known: RFC 5961's checks apply.
    pub fn synchronized(s: u8) -> bool {
        matches!(
            s,
            ESTABLISHED | FIN_WAIT1 | FIN_WAIT2 | CLOSE_WAIT | LAST_ACK | CLOSING
        )
    }
}

/// What this host's kernel did when it sent a RST.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sent {
    /// enum sk_rst_reason without its prefix (`NO_SOCKET`,
    /// `TCP_ABORT_ON_DATA`...); `None` on kernels without reasons.
    pub reason: Option<String>,
    /// The sending socket's state, if a socket sent it.
    pub state: Option<&'static str>,
}

/// What this host's kernel did with a RST it received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Received {
    /// Accepted: the socket (in `state`) was reset.
    Reset { state: &'static str },
    /// Discarded, with the kernel's drop reason (`TCP_RESET`,
    /// `TCP_INVALID_SEQUENCE`, `NO_SOCKET`...) and the receiving socket's
    /// state if the kernel says which socket it was.
    Dropped {
        reason: String,
        state: Option<&'static str>,
    },
}

/// The kernel's verdict on one RST, from the events matched to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KernelVerdict {
    /// This host sent it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<Sent>,
    /// This host received it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<Received>,
    /// The receiving socket decided to send a challenge ACK (RFC 5961;
    /// rate limits may have kept it from going out).
    pub challenge_ack: bool,
    /// Raw facts behind `received`, for the agreement rules.
    #[serde(skip)]
    pub(crate) received_state: Option<u8>,
    #[serde(skip)]
    pub(crate) drop_reason: Option<String>,
}

rstwall_engine::closed_enum! {
    /// Whether rstwall's class and the kernel's verdict agree.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Agreement: "agreement" {
        /// The kernel did what the class says it would.
        Agrees,
        /// It did not: the event keeps its packet for the log.
        Disagrees,
        /// No comparison possible: the receiver is remote, or the class
        /// predicts nothing (`invalid_flags`).
        Unjudged,
        /// A verdict was expected (this host received the RST) but none
        /// was seen within the correlation window.
        NoVerdict,
    }
}

/// Which kernel verdicts a class agrees with (see the module docs).
pub fn agreement(class: RstClass, received_here: bool, v: &KernelVerdict) -> Agreement {
    if received_here {
        if class == RstClass::InvalidFlags {
            return Agreement::Unjudged;
        }
        let Some(received) = &v.received else {
            return Agreement::NoVerdict;
        };
        let ok = match received {
            Received::Reset { .. } => {
                let syn_sent = v.received_state == Some(state::SYN_SENT);
                match class {
                    RstClass::Refused => syn_sent,
                    RstClass::Abort | RstClass::Teardown => !syn_sent,
                    _ => false,
                }
            }
            Received::Dropped { .. } => {
                let st = v.received_state;
                let challenged = v.challenge_ack
                    || (v.drop_reason.as_deref() == Some("TCP_RESET")
                        && st.is_some_and(state::synchronized));
                if st == Some(state::TIME_WAIT) {
                    matches!(class, RstClass::Teardown | RstClass::OutOfWindow)
                } else if challenged {
                    class == RstClass::InWindow
                } else {
                    matches!(
                        class,
                        RstClass::OutOfWindow | RstClass::SynSentBadAck | RstClass::NoFlow
                    )
                }
            }
        };
        return if ok {
            Agreement::Agrees
        } else {
            Agreement::Disagrees
        };
    }
    match (&v.sent, class) {
        (
            Some(Sent {
                reason: Some(r), ..
            }),
            RstClass::Refused,
        ) => {
            if r == "NO_SOCKET" {
                Agreement::Agrees
            } else {
                Agreement::Disagrees
            }
        }
        _ => Agreement::Unjudged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset(st: u8) -> KernelVerdict {
        KernelVerdict {
            received: Some(Received::Reset {
                state: state::name(st),
            }),
            received_state: Some(st),
            ..Default::default()
        }
    }

    fn dropped(reason: &str, st: Option<u8>) -> KernelVerdict {
        KernelVerdict {
            received: Some(Received::Dropped {
                reason: reason.into(),
                state: st.map(state::name),
            }),
            received_state: st,
            drop_reason: Some(reason.into()),
            ..Default::default()
        }
    }

    #[test]
    fn receiver_side_rules() {
        use Agreement::*;
        use RstClass::*;
        let cases = [
            (Refused, reset(state::SYN_SENT), Agrees),
            (Abort, reset(state::SYN_SENT), Disagrees),
            (Refused, reset(state::ESTABLISHED), Disagrees),
            (Abort, reset(state::ESTABLISHED), Agrees),
            (Teardown, reset(state::CLOSE_WAIT), Agrees),
            (InWindow, reset(state::ESTABLISHED), Disagrees),
            (
                InWindow,
                dropped("TCP_RESET", Some(state::ESTABLISHED)),
                Agrees,
            ),
            (
                OutOfWindow,
                dropped("TCP_RESET", Some(state::ESTABLISHED)),
                Disagrees,
            ),
            (
                OutOfWindow,
                dropped("TCP_INVALID_SEQUENCE", Some(state::ESTABLISHED)),
                Agrees,
            ),
            (
                SynSentBadAck,
                dropped("TCP_INVALID_ACK_SEQUENCE", Some(state::SYN_SENT)),
                Agrees,
            ),
            (
                SynSentBadAck,
                dropped("TCP_RESET", Some(state::SYN_SENT)),
                Agrees,
            ),
            (NoFlow, dropped("NO_SOCKET", None), Agrees),
            (NoFlow, reset(state::ESTABLISHED), Disagrees),
            (Abort, dropped("NO_SOCKET", None), Disagrees),
            (
                Teardown,
                dropped("NOT_SPECIFIED", Some(state::TIME_WAIT)),
                Agrees,
            ),
            (InvalidFlags, reset(state::ESTABLISHED), Unjudged),
            (Abort, KernelVerdict::default(), NoVerdict),
        ];
        for (class, v, want) in cases {
            assert_eq!(agreement(class, true, &v), want, "{class} {v:?}");
        }
        let mut challenged = dropped("TCP_RESET", None);
        challenged.challenge_ack = true;
        assert_eq!(agreement(InWindow, true, &challenged), Agrees);
    }

    #[test]
    fn sender_side_rules() {
        let sent = |r: &str| KernelVerdict {
            sent: Some(Sent {
                reason: Some(r.into()),
                state: None,
            }),
            ..Default::default()
        };
        assert_eq!(
            agreement(RstClass::Refused, false, &sent("NO_SOCKET")),
            Agreement::Agrees
        );
        assert_eq!(
            agreement(RstClass::Refused, false, &sent("TCP_ABORT_ON_DATA")),
            Agreement::Disagrees
        );
        assert_eq!(
            agreement(RstClass::Abort, false, &sent("TCP_ABORT_ON_DATA")),
            Agreement::Unjudged
        );
        assert_eq!(
            agreement(RstClass::Abort, false, &KernelVerdict::default()),
            Agreement::Unjudged
        );
    }
}
