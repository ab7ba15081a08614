//! What is kept per flow — each endpoint's half — how segments update it,
//! and the judgment of a RST (see the module docs of [`crate::flow`]).

use serde::Serialize;

use crate::class::RstClass;
use crate::seq;

use super::key::{FlowKey, Header, Side};
use super::state::FlowState;

pub(super) mod guard;

/// Window shift assumed for flows whose handshake we never saw.
pub const MIDSTREAM_WSCALE: u8 = 7;
/// Linux clamps window scale to 14 (RFC 7323).
const MAX_WSCALE: u8 = 14;
/// SYN-ACK windows are never scaled.
const MAX_UNSCALED_WINDOW: u32 = 65_535;

// Half flags.
const SYN_SEEN: u8 = 1 << 0;
const SEQ_KNOWN: u8 = 1 << 1;
const ACK_KNOWN: u8 = 1 << 2;
const WSCALE_OFFERED: u8 = 1 << 3;
const FIN_SENT: u8 = 1 << 4;
const FIN_ACKED: u8 = 1 << 5;
/// This side's FIN went out before it saw the peer's: it closed first and
/// ends in TIME-WAIT.
const FIN_FIRST: u8 = 1 << 6;
const SACK_VALID: u8 = 1 << 7;

/// The part of one endpoint's half that a plain ACK or data segment reads
/// and writes: it lives in the flow table's entry, beside the key. Packed
/// (alignment 1, 12 bytes) so the key and the whole [`Flow`] fill exactly
/// one 64-byte cache line. The window is kept as it came (raw field and
/// the shift it was scaled by) rather than as its right edge: two bytes
/// instead of four per half, which is what makes the line fit.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
struct HotHalf {
    /// Sequence number after the last byte (or SYN/FIN) it sent.
    next_seq: u32,
    /// Latest acknowledgment it sent: its RCV.NXT then, i.e. RCV.WUP.
    ack: u32,
    /// Raw window field of the segment that carried `ack`.
    window: u16,
    /// Low nibble: the shift applied to the windows it advertises (its
    /// window scale, at most 14). High nibble: the shift `window` was
    /// scaled by when it came (0 for a SYN-ACK's).
    shifts: u8,
    flags: u8,
}

impl HotHalf {
    #[inline]
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }

    #[inline]
    fn wscale(&self) -> u8 {
        self.shifts & 0x0f
    }

    #[inline]
    fn set_wscale(&mut self, wscale: u8) {
        self.shifts = (self.shifts & 0xf0) | (wscale & 0x0f);
    }

    /// Right edge of the window it advertised: ack + (window << shift).
    #[inline]
    fn win_edge(&self) -> u32 {
        self.ack
            .wrapping_add(u32::from(self.window) << (self.shifts >> 4))
    }

    /// Take an acknowledgment and the window that came with it, scaled by
    /// `shift` (at most 14).
    #[inline]
    fn set_ack(&mut self, ack: u32, window: u16, shift: u8) {
        self.ack = ack;
        self.window = window;
        self.shifts = (self.shifts & 0x0f) | ((shift & 0x0f) << 4);
    }
}

/// The rest of one endpoint's half: read and written on handshakes, FINs,
/// SACK blocks and RSTs only. It lives beside the table's entries.
#[derive(Clone, Copy, Debug, Default)]
struct ColdHalf {
    isn: u32,
    /// Right edge of the highest SACK block in its latest ACK.
    sack_edge: u32,
    /// Sequence number of its FIN.
    fin_seq: u32,
}

// Flow flags.
/// Window scale negotiated (both SYNs seen, both offered).
const WSCALE_KNOWN: u8 = 1 << 0;
/// The side's socket is gone: it accepted a reset (`RESET_LO << side`).
const RESET_LO: u8 = 1 << 1;

#[inline]
fn reset_bit(side: Side) -> u8 {
    RESET_LO << side as u8
}

/// Per-flow state a plain ACK or data segment needs: what the flow table
/// keeps in its entry beside the key (27 bytes). The rest of a flow's
/// state ([`FlowCold`]) lives beside the entries.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    halves: [HotHalf; 2],
    pub(super) state: FlowState,
    /// The side that sent the first SYN, if we saw it.
    pub(super) origin: Option<Side>,
    /// `WSCALE_KNOWN`, and which sides a reset closed.
    flags: u8,
}

/// The rest of a flow's state: each side's ISN, SACK edge and FIN.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct FlowCold {
    halves: [ColdHalf; 2],
}

/// What the receiving kernel would make of a RST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RstJudgment {
    pub class: RstClass,
    /// The RST carries payload (diagnostic text, RFC 9293 §3.5.3).
    pub with_data: bool,
    /// Port of the service side: the responder's port when the handshake
    /// showed who connected to whom, else the RST's destination port.
    pub service_port: u16,
}

impl Flow {
    /// A new flow in `state`, with its (empty) cold part.
    pub(super) fn new(state: FlowState) -> (Flow, FlowCold) {
        let flow = Flow {
            halves: [HotHalf::default(); 2],
            state,
            origin: None,
            flags: 0,
        };
        (flow, FlowCold::default())
    }

    /// Whether `side` accepted a reset (its socket is gone).
    pub fn is_reset(&self, side: Side) -> bool {
        self.flags & reset_bit(side) != 0
    }

    pub fn state(&self) -> FlowState {
        self.state
    }

    pub fn origin(&self) -> Option<Side> {
        self.origin
    }

    pub fn picked_up_midstream(&self) -> bool {
        self.origin.is_none()
    }

    /// The port of the side that accepted the connection, if known.
    pub(super) fn service_port(&self, key: &FlowKey) -> Option<u16> {
        self.origin.map(|o| key.endpoint(o.peer()).1)
    }
}

/// A tracked flow, both parts, as the table hands it out: everything that
/// updates a flow or judges a RST works on this. A plain ACK or data
/// segment reads `hot` only (see [`FlowMut::update_other`]); the cold part
/// is read only where a handshake, a FIN, a SACK block or a RST needs it.
pub(super) struct FlowMut<'a> {
    pub(super) hot: &'a mut Flow,
    cold: &'a mut FlowCold,
}

impl<'a> FlowMut<'a> {
    #[inline(always)]
    pub(super) fn new(hot: &'a mut Flow, cold: &'a mut FlowCold) -> FlowMut<'a> {
        FlowMut { hot, cold }
    }

    /// Start the flow again as a new one in `state`.
    pub(super) fn reset_to(&mut self, state: FlowState) {
        (*self.hot, *self.cold) = Flow::new(state);
    }

    #[inline]
    fn is_reset(&self, side: Side) -> bool {
        self.hot.is_reset(side)
    }

    #[inline]
    fn wscale_known(&self) -> bool {
        self.hot.flags & WSCALE_KNOWN != 0
    }

    #[inline]
    fn hot(&self, s: Side) -> &HotHalf {
        &self.hot.halves[s as usize]
    }

    #[inline]
    fn cold(&self, s: Side) -> &ColdHalf {
        &self.cold.halves[s as usize]
    }

    /// [`Self::cold`] for [`Self::update_other`]: a call, so that the
    /// compiler never hoists the load onto the path of a plain ACK (a
    /// reference is known dereferenceable, and a load through it may be
    /// speculated above the branch that guards it: one more cache miss
    /// per segment, on a line the lookup never fetched).
    #[inline(never)]
    fn cold_half(&self, s: Side) -> ColdHalf {
        self.cold.halves[s as usize]
    }

    /// Next sequence number the side `s` expects to receive (its RCV.NXT).
    fn rcv_nxt(&self, receiver: Side) -> Option<u32> {
        let r = self.hot(receiver);
        let s = self.hot(receiver.peer());
        match (s.has(SEQ_KNOWN), r.has(ACK_KNOWN)) {
            (true, true) => Some(seq::max(s.next_seq, r.ack)),
            (true, false) => Some(s.next_seq),
            (false, true) => Some(r.ack),
            (false, false) => None,
        }
    }

    /// Update the flow with a non-RST segment sent by `from`.
    pub(super) fn update(&mut self, from: Side, seg: &Header) {
        if seg.flags.syn() {
            self.update_syn(from, seg);
        } else {
            self.update_other(from, seg);
        }
    }

    /// Whether the connecting side, in SYN-SENT, would refuse this SYN-ACK
    /// from `from`: `tcp_rcv_synsent_state_process()` takes only one whose
    /// ack lies in (SND.UNA, SND.NXT] (ISN < ack <= ISN + 1 + TFO data) and
    /// answers any other with a RST (seq = its ack), staying in SYN-SENT.
    #[inline]
    fn refuses_syn_ack(&self, from: Side, seg: &Header) -> bool {
        let to = from.peer();
        let c = self.hot(to);
        matches!(self.hot.state, FlowState::SynSent | FlowState::SynReceived)
            && self.hot.origin == Some(to)
            && c.has(SYN_SEEN)
            && (!seq::after(seg.ack, self.cold(to).isn) || seq::after(seg.ack, c.next_seq))
    }

    /// [`Self::update`] for a SYN or SYN-ACK.
    fn update_syn(&mut self, from: Side, seg: &Header) {
        if seg.flags.ack() && self.refuses_syn_ack(from, seg) {
            // Not the handshake: the client stays in SYN-SENT.
            return;
        }
        let to = from.peer();
        let end = seg.seq.wrapping_add(seg.seq_len());
        let ws = seg.window_scale.map(|w| w.min(MAX_WSCALE));
        self.cold.halves[from as usize].isn = seg.seq;
        let s = &mut self.hot.halves[from as usize];
        s.next_seq = end;
        s.flags |= SYN_SEEN | SEQ_KNOWN;
        if let Some(w) = ws {
            s.set_wscale(w);
            s.flags |= WSCALE_OFFERED;
        } else {
            s.flags &= !WSCALE_OFFERED;
        }
        if seg.flags.ack() {
            // SYN-ACK: scaling holds only if both SYNs offered it.
            let peer_offered = self.hot(to).has(WSCALE_OFFERED);
            let both = peer_offered && self.hot(from).has(WSCALE_OFFERED);
            if !both {
                self.hot.halves[0].set_wscale(0);
                self.hot.halves[1].set_wscale(0);
            }
            self.hot.flags |= WSCALE_KNOWN;
            // The SYN-ACK's window is unscaled.
            let s = &mut self.hot.halves[from as usize];
            s.set_ack(seg.ack, seg.window, 0);
            s.flags |= ACK_KNOWN;
            if self.hot.state == FlowState::SynSent {
                self.hot.state = FlowState::SynReceived;
            }
        }
    }

    /// [`Self::update`] for a segment without SYN (nor RST). A plain ACK or
    /// data segment on an established flow reads and writes the hot part
    /// only; the cold part is read for a SACK block, a FIN (sent, or
    /// pending on the peer) and during the handshake.
    #[inline(always)]
    pub(super) fn update_other(&mut self, from: Side, seg: &Header) {
        let to = from.peer();
        let flags = seg.flags;
        let end = seg.seq.wrapping_add(seg.seq_len());
        let shift = if self.wscale_known() {
            self.hot(from).wscale()
        } else {
            MIDSTREAM_WSCALE
        };
        let s = &mut self.hot.halves[from as usize];
        if s.has(SEQ_KNOWN) {
            s.next_seq = seq::max(s.next_seq, end);
        } else {
            s.next_seq = end;
            s.flags |= SEQ_KNOWN;
        }
        if flags.ack() && seg.header_complete {
            if !s.has(ACK_KNOWN) || !seq::before(seg.ack, s.ack) {
                s.set_ack(seg.ack, seg.window, shift);
            }
            s.flags |= ACK_KNOWN;
            match seg.sack_right_edge {
                // A block ending at or below the ACK is a D-SACK (RFC 2883):
                // a duplicate report, not out-of-order data the receiver
                // holds, so not in the selective_acks Linux checks a RST
                // against.
                Some(edge) if seq::after(edge, seg.ack) => {
                    s.flags |= SACK_VALID;
                    self.cold.halves[from as usize].sack_edge = edge;
                }
                _ => s.flags &= !SACK_VALID,
            }
        }
        let s = &mut self.hot.halves[from as usize];
        if flags.fin() && !s.has(FIN_SENT) {
            s.flags |= FIN_SENT;
            self.cold.halves[from as usize].fin_seq = seg.seq.wrapping_add(seg.payload_len);
            if !self.hot(to).has(FIN_SENT) {
                self.hot.halves[from as usize].flags |= FIN_FIRST;
            }
        }
        // Does this ACK cover the peer's FIN? (The peer's flags first: its
        // FIN is rarely pending.)
        if self.hot(to).flags & (FIN_SENT | FIN_ACKED) == FIN_SENT {
            let s = self.hot(from);
            if s.has(ACK_KNOWN) && seq::after(s.ack, self.cold_half(to).fin_seq) {
                self.hot.halves[to as usize].flags |= FIN_ACKED;
            }
        }

        // The connecting side only sends a plain ACK once it has taken a
        // SYN-ACK, so that completes the handshake even when we missed the
        // SYN-ACK or the third packet itself.
        if matches!(self.hot.state, FlowState::SynSent | FlowState::SynReceived)
            && Some(from) == self.hot.origin
            && flags.ack()
        {
            let responder = self.hot(to);
            if !responder.has(SYN_SEEN) || seq::after(seg.ack, self.cold_half(to).isn) {
                self.hot.state = FlowState::Established;
            }
        }
        self.hot.state = self.closing_state().unwrap_or(self.hot.state);
    }

    /// The closing state implied by the FIN flags, if any FIN was seen.
    #[inline]
    fn closing_state(&self) -> Option<FlowState> {
        let [a, b] = &self.hot.halves;
        if (a.flags | b.flags) & FIN_SENT == 0 {
            return None;
        }
        Some(match (a.has(FIN_SENT), b.has(FIN_SENT)) {
            (false, false) => return None,
            (true, true) if a.has(FIN_ACKED) && b.has(FIN_ACKED) => FlowState::TimeWait,
            (true, true) => FlowState::LastAck,
            (true, false) if a.has(FIN_ACKED) => FlowState::CloseWait,
            (false, true) if b.has(FIN_ACKED) => FlowState::CloseWait,
            _ => FlowState::FinWait,
        })
    }

    /// What an accepted reset (`class`, sent by `from`) leaves of the flow.
    pub(super) fn after_reset(&mut self, from: Side, class: RstClass) {
        let to = from.peer();
        let handshake = matches!(self.hot.state, FlowState::SynSent | FlowState::SynReceived);
        match class {
            // The refusal comes from a host without a socket, to a client
            // whose connect() fails: nothing is left on either side.
            RstClass::Refused => self.hot.flags |= reset_bit(from) | reset_bit(to),
            // A request socket (SYN-RECV) died. The client's side is not
            // synchronized: a Linux client in SYN-SENT sends a reset only to
            // answer a SYN-ACK it refuses (its ack, or a failed timestamp
            // check the wire cannot show), and stays in SYN-SENT — or its
            // connect() gave up, and a socket destroyed in SYN-SENT sends
            // nothing, so the wire cannot tell it is gone. The responder is
            // forgotten: a new SYN-ACK starts the handshake again.
            RstClass::Abort if handshake && self.hot.origin == Some(from) => {
                self.hot.halves[to as usize] = HotHalf::default();
                self.cold.halves[to as usize] = ColdHalf::default();
                self.hot.flags &= !WSCALE_KNOWN;
                self.hot.state = FlowState::SynSent;
                return;
            }
            RstClass::Abort | RstClass::Teardown => {
                self.hot.flags |= reset_bit(to);
            }
            _ => return,
        }
        self.hot.state = FlowState::Closed;
    }

    /// [`Self::update`] on a flow a reset closed on one side or both. A
    /// socket that accepted a reset is gone and sends nothing but resets
    /// from then on, so a SYN-ACK or a retransmission (nothing new, or a
    /// keepalive) from such a side shows that the reset never reached it:
    /// it was lost on the way (after we saw it). New data or a FIN from it had
    /// crossed the reset and is not taken as a sign of life. The other
    /// side keeps its sequence state until it is reset itself or the flow
    /// times out.
    pub(super) fn update_after_reset(&mut self, from: Side, seg: &Header) {
        if self.is_reset(from) {
            let s = self.hot(from);
            let end = seg.seq.wrapping_add(seg.seq_len());
            let retransmitted = s.has(SEQ_KNOWN)
                && seq::before(seg.seq, s.next_seq)
                && !seq::after(end, s.next_seq);
            if !(seg.flags.syn() || retransmitted) {
                return;
            }
            self.hot.flags &= !reset_bit(from);
        }
        let revived = self.hot.flags & (reset_bit(Side::Lo) | reset_bit(Side::Hi)) == 0;
        self.hot.state = if seg.flags.syn() {
            FlowState::SynSent
        } else if self.hot.origin.is_some() {
            FlowState::Established
        } else {
            FlowState::Midstream
        };
        self.update(from, seg);
        if !revived {
            self.hot.state = FlowState::Closed;
        }
    }

    /// Judge a RST sent by `from` as the receiving kernel would (see the
    /// module docs of [`crate::flow`]).
    pub(super) fn judge(&self, from: Side, seg: &Header) -> RstClass {
        if seg.flags.syn() || seg.flags.fin() {
            return RstClass::InvalidFlags;
        }
        let to = from.peer();
        let r = self.hot(to);
        let s = self.hot(from);
        let rst_seq = seg.seq;

        // A reset receiver holds no socket; the other side of a flow reset
        // on one side only still does, and is judged as synchronized below.
        if self.hot.state == FlowState::Closed && self.is_reset(to) {
            return RstClass::NoFlow;
        }

        // Receiver still in SYN-SENT: it sent the SYN and we saw no answer
        // that it could have taken as one.
        if self.hot.state == FlowState::SynSent && self.hot.origin == Some(to) {
            // SND.UNA = ISN, SND.NXT = ISN + 1 + SYN data (TFO).
            let acceptable = seg.flags.ack()
                && seq::after(seg.ack, self.cold(to).isn)
                && !seq::after(seg.ack, r.next_seq);
            return if acceptable {
                RstClass::Refused
            } else {
                RstClass::SynSentBadAck
            };
        }

        // Receiver holds a request socket (SYN-RECV): tcp_check_req().
        if matches!(self.hot.state, FlowState::SynSent | FlowState::SynReceived)
            && self.hot.origin == Some(from)
        {
            // With ACK set, ack must be the SYN-ACK's ISN+1, or the segment
            // goes to the listener, which never acts on a RST. A SYN-ACK
            // acking TFO data made a full child socket: no such check.
            let (r_isn, s_isn) = (self.cold(to).isn, self.cold(from).isn);
            let tfo = r.ack != s_isn.wrapping_add(1);
            if seg.flags.ack()
                && r.has(SYN_SEEN)
                && s.has(SYN_SEEN)
                && !tfo
                && seg.ack != r_isn.wrapping_add(1)
            {
                return RstClass::SynSentBadAck;
            }
            let rcv_nxt = s.next_seq;
            let wnd = if r.has(ACK_KNOWN) {
                r.win_edge().wrapping_sub(r.ack)
            } else {
                MAX_UNSCALED_WINDOW
            };
            return if seq::between(rst_seq, rcv_nxt, rcv_nxt.wrapping_add(wnd)) {
                RstClass::Abort
            } else {
                RstClass::OutOfWindow
            };
        }

        // Synchronized receiver.
        let Some(rcv_nxt) = self.rcv_nxt(to) else {
            return RstClass::NoFlow;
        };
        let got_fin = s.has(FIN_SENT);
        let sent_fin = r.has(FIN_SENT);
        let fin_acked = r.has(FIN_ACKED);
        let any_fin = got_fin || sent_fin;
        let accepted_class = if any_fin {
            RstClass::Teardown
        } else {
            RstClass::Abort
        };

        if got_fin && sent_fin && fin_acked && !r.has(FIN_FIRST) {
            // The receiver closed second and its last FIN was acknowledged:
            // LAST-ACK is over and it holds no socket.
            return RstClass::NoFlow;
        }
        let time_wait = got_fin && sent_fin && fin_acked;

        // The window tcp_sequence() lets through: [RCV.WUP, RCV.WUP + RCV.WND].
        let (wup, edge) = if r.has(ACK_KNOWN) {
            (r.ack, r.win_edge())
        } else {
            (
                rcv_nxt,
                rcv_nxt.wrapping_add(MAX_UNSCALED_WINDOW << MIDSTREAM_WSCALE),
            )
        };
        let right = seq::max(edge, rcv_nxt);
        // tcp_sequence() tests the lower bound with the segment's end, so a
        // RST carrying data that starts just left of RCV.WUP still counts.
        let end_seq = rst_seq.wrapping_add(seg.payload_len);
        let in_window = !seq::before(end_seq, wup) && !seq::after(rst_seq, right);

        let exact = rst_seq == rcv_nxt;
        // tcp_reset_check(): RCV.NXT-1 in CLOSE-WAIT, LAST-ACK, CLOSING — the
        // receiver got a FIN and its own FIN, if any, is not yet acked.
        let closing_minus_one =
            got_fin && !(sent_fin && fin_acked) && rst_seq == rcv_nxt.wrapping_sub(1);
        let sack_edge = r.has(SACK_VALID) && rst_seq == self.cold(to).sack_edge;
        // Orphaned FIN-WAIT-2 accepts anything tcp_in_window() takes, a
        // window that starts at RCV.NXT (see module docs).
        let fin_wait2 = sent_fin
            && fin_acked
            && !got_fin
            && !seq::before(end_seq, rcv_nxt)
            && !seq::after(rst_seq, right);

        if exact || (!time_wait && (closing_minus_one || sack_edge || fin_wait2)) {
            accepted_class
        } else if in_window && !time_wait {
            RstClass::InWindow
        } else {
            // Includes every non-exact RST to TIME-WAIT, which
            // tcp_timewait_state_process() drops without a challenge ACK.
            RstClass::OutOfWindow
        }
    }
}
