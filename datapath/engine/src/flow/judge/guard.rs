//! The per-flow acceptance state the in-kernel RST guard judges by
//! (rstwall-bpf's `guard` map): an export of what [`Flow::judge`] reads, for
//! the flows whose RSTs the guard can judge exactly as the engine does.
//!
//! The guard drops a RST only when the engine would judge it `in_window`,
//! `out_of_window` or `syn_sent_bad_ack`; everything the receiving kernel
//! could accept passes to userspace. So only two kinds of flow are exported,
//! where that set is simple:
//!
//! * [`RstGuard::Synced`]: handshake done (or picked up midstream), no FIN
//!   either way, neither side reset, and each side's sequence and ack known.
//!   A RST is accepted only at the receiver's RCV.NXT, which lies between its
//!   ack and what its peer sent, or at a SACK edge, which lies there too.
//! * [`RstGuard::SynSent`]: the connecting side's SYN is unanswered; a RST to
//!   it is accepted only with an ack in (ISN, SND.NXT].
//!
//! A FIN, a SYN, a reset or a forgotten side changes what is accepted in
//! ways the kernel program cannot follow: such flows export nothing, and the
//! program marks an entry stale itself when it sees a SYN or FIN go by.

use crate::seq;

use super::super::key::Side;
use super::super::state::FlowState;
use super::{
    Flow, FlowCold, ACK_KNOWN, MIDSTREAM_WSCALE, SACK_VALID, SEQ_KNOWN, SYN_SEEN, WSCALE_KNOWN,
};

/// RSTs to one endpoint of a synchronized flow: what the engine judges them
/// against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardHalf {
    /// The sequence after everything the endpoint's peer sent (its SND.NXT).
    pub peer_end: u32,
    /// The endpoint's latest acknowledgment (its RCV.WUP).
    pub ack: u32,
    /// The right edge of the window it advertised.
    pub win_edge: u32,
    /// The shift its window field is scaled by.
    pub wscale: u8,
}

/// A flow's acceptance state, as the RST guard holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RstGuard {
    /// RSTs to each side (indexed by [`Side`]: `[lo, hi]`).
    Synced([GuardHalf; 2]),
    /// `receiver` sent a SYN (sequence `isn`, next `isn_end`) that nothing
    /// answered yet.
    SynSent {
        receiver: Side,
        isn: u32,
        isn_end: u32,
    },
}

impl Flow {
    /// The state the RST guard may judge this flow's RSTs by, or `None`
    /// when its RSTs must all reach the engine (see the module docs). It
    /// reads both parts of the flow (`cold`: the ISN of a SYN-SENT side,
    /// the SACK edges); [`crate::flow::FlowTable::rst_guard`] looks them up.
    pub(in crate::flow) fn rst_guard(&self, cold: &FlowCold) -> Option<RstGuard> {
        if self.flags & (super::reset_bit(Side::Lo) | super::reset_bit(Side::Hi)) != 0 {
            return None;
        }
        match self.state {
            FlowState::SynSent => {
                let receiver = self.origin?;
                let c = &self.halves[receiver as usize];
                c.has(SYN_SEEN).then_some(RstGuard::SynSent {
                    receiver,
                    isn: cold.halves[receiver as usize].isn,
                    isn_end: c.next_seq,
                })
            }
            FlowState::Established | FlowState::Midstream => {
                let half = |r: Side| self.guard_half(cold, r);
                Some(RstGuard::Synced([half(Side::Lo)?, half(Side::Hi)?]))
            }
            _ => None,
        }
    }

    fn guard_half(&self, cold: &FlowCold, receiver: Side) -> Option<GuardHalf> {
        let r = self.halves[receiver as usize];
        let s = self.halves[receiver.peer() as usize];
        if !(r.has(ACK_KNOWN) && s.has(SEQ_KNOWN)) || (r.flags | s.flags) & super::FIN_SENT != 0 {
            return None;
        }
        // A SACK edge beyond anything the peer sent is one the guard's
        // window of acceptable sequences would not cover.
        let sack_edge = cold.halves[receiver as usize].sack_edge;
        let (peer_end, ack) = (s.next_seq, r.ack);
        if r.has(SACK_VALID) && seq::after(sack_edge, seq::max(peer_end, ack)) {
            return None;
        }
        Some(GuardHalf {
            peer_end,
            ack,
            win_edge: r.win_edge(),
            wscale: if self.flags & WSCALE_KNOWN != 0 {
                r.wscale()
            } else {
                MIDSTREAM_WSCALE
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Header;
    use crate::wire::TcpFlags;

    fn hdr(flags: u16, seq: u32, ack: u32, payload_len: u32, wscale: Option<u8>) -> Header {
        Header {
            seq,
            ack,
            payload_len,
            sack_right_edge: None,
            flags: TcpFlags(flags),
            window: 1000,
            window_scale: wscale,
            header_complete: true,
        }
    }

    /// Both parts of a flow, as the table keeps them.
    #[derive(Clone, Copy)]
    struct Tracked(Flow, FlowCold);

    impl Tracked {
        fn update(&mut self, from: Side, seg: &Header) {
            super::super::FlowMut::new(&mut self.0, &mut self.1).update(from, seg);
        }

        fn after_reset(&mut self, from: Side, class: crate::class::RstClass) {
            super::super::FlowMut::new(&mut self.0, &mut self.1).after_reset(from, class);
        }

        fn rst_guard(&self) -> Option<RstGuard> {
            self.0.rst_guard(&self.1)
        }
    }

    /// A handshake from lo (the client) and data each way: the export
    /// follows each step, and a FIN or a reset ends it.
    #[test]
    fn exported_while_the_guard_can_judge_and_not_after() {
        let (c, s) = (Side::Lo, Side::Hi);
        let (hot, cold) = Flow::new(FlowState::SynSent);
        let mut f = Tracked(hot, cold);
        f.0.origin = Some(c);
        f.update(c, &hdr(TcpFlags::SYN, 100, 0, 0, Some(7)));
        assert_eq!(
            f.rst_guard(),
            Some(RstGuard::SynSent {
                receiver: c,
                isn: 100,
                isn_end: 101
            })
        );
        f.update(s, &hdr(TcpFlags::SYN | TcpFlags::ACK, 500, 101, 0, Some(7)));
        assert_eq!(f.rst_guard(), None, "SYN-RECV: userspace's");
        f.update(c, &hdr(TcpFlags::ACK, 101, 501, 10, None));
        f.update(s, &hdr(TcpFlags::ACK, 501, 111, 20, None));
        let Some(RstGuard::Synced(h)) = f.rst_guard() else {
            panic!("established: {:?}", f.rst_guard());
        };
        // RSTs to the client: the server sent up to 521, the client acked 501.
        assert_eq!(
            h[c as usize],
            GuardHalf {
                peer_end: 521,
                ack: 501,
                win_edge: 501 + (1000 << 7),
                wscale: 7
            }
        );
        assert_eq!((h[s as usize].peer_end, h[s as usize].ack), (111, 111));

        let mut closing = f;
        closing.update(c, &hdr(TcpFlags::FIN | TcpFlags::ACK, 111, 521, 0, None));
        assert_eq!(closing.rst_guard(), None, "a FIN");
        let mut reset = f;
        reset.after_reset(c, crate::class::RstClass::Abort);
        assert_eq!(reset.rst_guard(), None, "a reset side");
    }
}
