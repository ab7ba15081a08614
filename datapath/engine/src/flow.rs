//! Bidirectional TCP flow tracking and the RST judgment.
//!
//! A flow is keyed by its 5-tuple in canonical order (lower endpoint first),
//! so both directions find the same entry. For each endpoint we keep what
//! it has shown on the wire as a sender: its ISN, the next sequence number
//! after everything it sent, the latest ACK it sent, the right edge of the
//! window it advertised, its window scale, its highest SACK edge and its FIN.
//! From the two halves we can reconstruct, for any RST, what the receiving
//! kernel holds: RCV.NXT, RCV.WUP, the window, and its RFC 793 state.
//!
//! # How a RST is judged (and where we differ from Linux)
//!
//! [`Flow::judge_rst`] follows Linux (net/ipv4/tcp_input.c, tcp_minisocks.c):
//!
//! * **SYN-SENT receiver** (`tcp_rcv_synsent_state_process`): a RST is acted
//!   on only with ACK set and `SND.UNA < ack <= SND.NXT` — for a SYN that is
//!   ack = ISN+1 (more with TFO data) → `refused`; anything else is ignored →
//!   `syn_sent_bad_ack`.
//! * **SYN-RECV receiver** (`tcp_check_req`): a RST with ACK set whose ack
//!   is not the SYN-ACK's ISN+1 goes to the listener, which drops it: it
//!   answers the SYN-ACK without acknowledging it → `syn_sent_bad_ack`
//!   (not checked when the SYN-ACK acked TFO data: that child is a full
//!   socket). Otherwise a request socket accepts any RST whose seq lies in
//!   `[RCV.NXT, RCV.NXT + SYN-ACK window]` → `abort` (the embryonic
//!   connection dies), and ignores the rest → `out_of_window`. Linux sends
//!   no challenge ACK here, so `in_window` cannot occur.
//! * **Synchronized receiver** (`tcp_validate_incoming`, RFC 5961 §3.2): the
//!   connection is reset when seq == RCV.NXT, or seq == RCV.NXT-1 in
//!   CLOSE-WAIT, LAST-ACK or CLOSING (`tcp_reset_check`), or seq equals the
//!   right edge of the highest SACK block the receiver advertises (a D-SACK
//!   block, at or below its ACK, is not one of its `selective_acks`). Accepted
//!   resets are `teardown` when a FIN was seen in either direction, else
//!   `abort`. Anything else inside `[RCV.WUP, RCV.WUP + RCV.WND]` — the range
//!   `tcp_sequence()` lets through — is challenge-ACKed → `in_window`;
//!   the rest is dropped → `out_of_window`.
//! * **TIME-WAIT receiver** (`tcp_timewait_state_process`): only seq ==
//!   RCV.NXT kills the time-wait socket → `teardown`; any other RST is
//!   dropped without a challenge ACK → `out_of_window`.
//! * **Receiver with no socket** (it completed LAST-ACK, or a RST already
//!   reset the flow): nothing to reset → `no_flow`.
//!
//! Deliberate differences, each because the wire cannot show the state:
//!
//! * RCV.NXT is estimated as the later of the sender's next sequence and
//!   the receiver's latest ACK; RCV.WUP as the receiver's latest ACK (Linux
//!   moves RCV.WUP exactly when it sends a window, i.e. an ACK). Data lost
//!   between us and the receiver would make the kernel's RCV.NXT lower.
//! * FIN-WAIT-2: Linux accepts any in-window RST once the socket is orphaned
//!   (a `tcp_timewait_sock` in FIN-WAIT-2 substate) but only exact ones while
//!   the application still holds it. Orphaned is the common case and the
//!   safe one for enforcement, so an in-window RST to a receiver in FIN-WAIT-2
//!   is judged accepted (`teardown`).
//! * Flows picked up midstream have no window scale on record. We assume
//!   a shift of [`MIDSTREAM_WSCALE`] (Linux's default with default buffers).
//!   Only the in_window/out_of_window split depends on it; the accept
//!   decision (exact match) does not.
//! * PAWS is ignored: `tcp_validate_incoming()` accepts RSTs that fail PAWS.
//!   (SYN-SENT, SYN-RECV and TIME-WAIT do apply PAWS to RSTs carrying a
//!   timestamp; Linux's own resets carry none, so only crafted RSTs differ.)
//! * Simultaneous close: both sides end in TIME-WAIT, but we treat only the
//!   side whose FIN we saw first as the active closer.

use std::net::IpAddr;

use serde::Serialize;

use crate::class::RstClass;
use crate::seq;
use crate::table::{Align32, BoundedTable, Insert};
use crate::wire::{Segment, TcpFlags};

/// Window shift assumed for flows whose handshake we never saw.
pub const MIDSTREAM_WSCALE: u8 = 7;
/// Linux clamps window scale to 14 (RFC 7323).
const MAX_WSCALE: u8 = 14;
/// SYN-ACK windows are never scaled.
const MAX_UNSCALED_WINDOW: u32 = 65_535;

crate::closed_enum! {
    /// Which endpoint of a canonical key.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Side: "side" {
        /// The endpoint that sorts lower (address, then port).
        Lo = "lo",
        Hi = "hi",
    }
}

impl Side {
    #[inline]
    pub fn peer(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }
}

/// The 5-tuple in canonical order. IPv4 addresses are stored as
/// v4-mapped IPv6 with `v6` false, so the two families never collide.
/// Each address is two big-endian words (high, low): comparing the words
/// compares the addresses, and nothing handles them a byte at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    lo_addr: [u64; 2],
    hi_addr: [u64; 2],
    lo_port: u16,
    hi_port: u16,
    v6: bool,
}

/// An address as two big-endian words; IPv4 as v4-mapped IPv6.
#[inline(always)]
fn addr_words(a: IpAddr) -> [u64; 2] {
    match a {
        IpAddr::V4(v4) => [0, 0xffff_0000_0000 | u64::from(u32::from(v4))],
        IpAddr::V6(v6) => {
            let x = u128::from(v6);
            [(x >> 64) as u64, x as u64]
        }
    }
}

impl std::hash::Hash for FlowKey {
    /// Whole words rather than byte slices: the hasher sees five integers.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // Every word goes in unmixed: folding two together would let an
        // attacker build keys that collide whatever the seed.
        h.write_u64(self.lo_addr[0]);
        h.write_u64(self.lo_addr[1]);
        h.write_u64(self.hi_addr[0]);
        h.write_u64(self.hi_addr[1]);
        h.write_u64(((self.lo_port as u64) << 32) | ((self.hi_port as u64) << 16) | self.v6 as u64);
    }
}

impl FlowKey {
    /// Key of a segment and the side its sender is on.
    #[inline]
    pub fn of(seg: &Segment<'_>) -> (FlowKey, Side) {
        let (s, d) = (addr_words(seg.src), addr_words(seg.dst));
        let v6 = seg.src.is_ipv6();
        // (address, port) pairs in order, compared as two integers.
        let wide = |w: [u64; 2]| (u128::from(w[0]) << 64) | u128::from(w[1]);
        let (sw, dw) = (wide(s), wide(d));
        if sw < dw || (sw == dw && seg.src_port <= seg.dst_port) {
            let key = FlowKey {
                lo_addr: s,
                hi_addr: d,
                lo_port: seg.src_port,
                hi_port: seg.dst_port,
                v6,
            };
            (key, Side::Lo)
        } else {
            let key = FlowKey {
                lo_addr: d,
                hi_addr: s,
                lo_port: seg.dst_port,
                hi_port: seg.src_port,
                v6,
            };
            (key, Side::Hi)
        }
    }

    #[inline]
    fn addr(&self, w: [u64; 2]) -> IpAddr {
        if self.v6 {
            IpAddr::V6(std::net::Ipv6Addr::from(
                (u128::from(w[0]) << 64) | u128::from(w[1]),
            ))
        } else {
            // Built from an IPv4 address: v4-mapped, the address in the
            // low 32 bits.
            IpAddr::V4(std::net::Ipv4Addr::from(w[1] as u32))
        }
    }

    /// Address and port of one side.
    #[inline]
    pub fn endpoint(&self, side: Side) -> (IpAddr, u16) {
        match side {
            Side::Lo => (self.addr(self.lo_addr), self.lo_port),
            Side::Hi => (self.addr(self.hi_addr), self.hi_port),
        }
    }
}

/// The header fields of a TCP segment that tracking reads: a [`Segment`]
/// without addresses, ports, payload and the options nobody judges by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub seq: u32,
    pub ack: u32,
    /// Payload length the IP header announces.
    pub payload_len: u32,
    pub sack_right_edge: Option<u32>,
    pub flags: TcpFlags,
    /// Raw (unscaled) window field.
    pub window: u16,
    pub window_scale: Option<u8>,
    pub header_complete: bool,
}

impl Header {
    #[inline(always)]
    pub fn of(seg: &Segment<'_>) -> Header {
        Header {
            seq: seg.seq,
            ack: seg.ack,
            payload_len: seg.payload_len,
            sack_right_edge: seg.options.sack_right_edge,
            flags: seg.flags,
            window: seg.window,
            window_scale: seg.options.window_scale,
            header_complete: seg.header_complete,
        }
    }

    /// Sequence space the segment occupies: payload plus one for SYN and FIN.
    #[inline]
    fn seq_len(&self) -> u32 {
        self.payload_len
            .wrapping_add(self.flags.syn() as u32)
            .wrapping_add(self.flags.fin() as u32)
    }
}

/// A TCP segment as the engine tracks it: its flow's key and the key's
/// hash, the sender's side, and the header fields. Built once per frame by
/// [`FlowTable::packet`]; everything after the parse works from it.
#[derive(Clone, Copy, Debug)]
pub struct Packet {
    pub key: FlowKey,
    hash: u64,
    pub hdr: Header,
    pub from: Side,
}

impl Packet {
    /// Sender's address.
    #[inline]
    pub fn src(&self) -> IpAddr {
        self.key.endpoint(self.from).0
    }

    /// Receiver's address.
    #[inline]
    pub fn dst(&self) -> IpAddr {
        self.key.endpoint(self.from.peer()).0
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        self.key.endpoint(self.from).1
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.key.endpoint(self.from.peer()).1
    }
}

crate::closed_enum! {
    /// Connection state as seen between the two endpoints: RFC 793's states
    /// named from the connection's point of view (as conntrack does), plus
    /// `midstream` for flows whose handshake was never seen.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[repr(u8)]
    pub enum FlowState: "flow state" {
        /// SYN seen, no SYN-ACK yet.
        SynSent = "syn_sent",
        /// SYN-ACK seen, handshake not completed.
        SynReceived = "syn_received",
        /// Handshake completed.
        Established = "established",
        /// Data seen but never the handshake.
        Midstream = "midstream",
        /// One side sent FIN, not yet acknowledged.
        FinWait = "fin_wait",
        /// One side's FIN acknowledged; the other may still send.
        CloseWait = "close_wait",
        /// Both sides sent FIN; the second not yet acknowledged.
        LastAck = "last_ack",
        /// Both FINs acknowledged.
        TimeWait = "time_wait",
        /// Reset accepted by the receiver.
        Closed = "closed",
    }
}

impl FlowState {
    /// Which idle-timeout class (and LRU list) the state belongs to.
    #[inline]
    pub const fn timeout_class(self) -> TimeoutClass {
        match self {
            FlowState::SynSent | FlowState::SynReceived => TimeoutClass::Handshake,
            FlowState::Established | FlowState::Midstream => TimeoutClass::Established,
            FlowState::FinWait | FlowState::CloseWait | FlowState::LastAck => TimeoutClass::Closing,
            FlowState::TimeWait | FlowState::Closed => TimeoutClass::Closed,
        }
    }
}

/// Idle-timeout classes; each is one LRU list of the flow table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutClass {
    Handshake = 0,
    Established = 1,
    Closing = 2,
    Closed = 3,
}

const LISTS: usize = 4;

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

/// What one endpoint has shown as a sender. Packed to 2-byte alignment so
/// two halves take 52 bytes, not 56: key and flow then fill a 96-byte entry.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed(2))]
struct Half {
    isn: u32,
    /// Sequence number after the last byte (or SYN/FIN) it sent.
    next_seq: u32,
    /// Latest acknowledgment it sent: its RCV.NXT then, i.e. RCV.WUP.
    ack: u32,
    /// Right edge of the window it advertised: ack + (window << wscale).
    win_edge: u32,
    /// Right edge of the highest SACK block in its latest ACK.
    sack_edge: u32,
    /// Sequence number of its FIN.
    fin_seq: u32,
    /// Shift applied to the windows it advertises.
    wscale: u8,
    flags: u8,
}

impl Half {
    #[inline]
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// Per-flow state. Kept small: the table holds one per tracked connection.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    halves: [Half; 2],
    state: FlowState,
    /// The side that sent the first SYN, if we saw it.
    origin: Option<Side>,
    /// Window scale negotiated (both SYNs seen, both offered).
    wscale_known: bool,
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
    fn new(state: FlowState) -> Flow {
        Flow {
            halves: [Half::default(); 2],
            state,
            origin: None,
            wscale_known: false,
        }
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

    fn half(&self, s: Side) -> &Half {
        &self.halves[s as usize]
    }

    /// Next sequence number the side `s` expects to receive (its RCV.NXT).
    fn rcv_nxt(&self, receiver: Side) -> Option<u32> {
        let r = self.half(receiver);
        let s = self.half(receiver.peer());
        match (s.has(SEQ_KNOWN), r.has(ACK_KNOWN)) {
            (true, true) => Some(seq::max(s.next_seq, r.ack)),
            (true, false) => Some(s.next_seq),
            (false, true) => Some(r.ack),
            (false, false) => None,
        }
    }

    /// The port of the side that accepted the connection, if known.
    fn service_port(&self, key: &FlowKey) -> Option<u16> {
        self.origin.map(|o| key.endpoint(o.peer()).1)
    }

    /// Update the flow with a non-RST segment sent by `from`.
    fn update(&mut self, from: Side, seg: &Header) {
        if seg.flags.syn() {
            self.update_syn(from, seg);
        } else {
            self.update_other(from, seg);
        }
    }

    /// [`Self::update`] for a SYN or SYN-ACK.
    fn update_syn(&mut self, from: Side, seg: &Header) {
        let to = from.peer();
        let end = seg.seq.wrapping_add(seg.seq_len());
        let ws = seg.window_scale.map(|w| w.min(MAX_WSCALE));
        let s = &mut self.halves[from as usize];
        s.isn = seg.seq;
        s.next_seq = end;
        s.flags |= SYN_SEEN | SEQ_KNOWN;
        if let Some(w) = ws {
            s.wscale = w;
            s.flags |= WSCALE_OFFERED;
        } else {
            s.flags &= !WSCALE_OFFERED;
        }
        if seg.flags.ack() {
            // SYN-ACK: scaling holds only if both SYNs offered it.
            let peer_offered = self.half(to).has(WSCALE_OFFERED);
            let both = peer_offered && self.half(from).has(WSCALE_OFFERED);
            if !both {
                self.halves[0].wscale = 0;
                self.halves[1].wscale = 0;
            }
            self.wscale_known = true;
            // The SYN-ACK's window is unscaled.
            let s = &mut self.halves[from as usize];
            s.ack = seg.ack;
            s.win_edge = seg.ack.wrapping_add(seg.window as u32);
            s.flags |= ACK_KNOWN;
            if self.state == FlowState::SynSent {
                self.state = FlowState::SynReceived;
            }
        }
    }

    /// [`Self::update`] for a segment without SYN (nor RST).
    #[inline(always)]
    fn update_other(&mut self, from: Side, seg: &Header) {
        let to = from.peer();
        let flags = seg.flags;
        let end = seg.seq.wrapping_add(seg.seq_len());
        let shift = if self.wscale_known {
            self.half(from).wscale
        } else {
            MIDSTREAM_WSCALE
        };
        let s = &mut self.halves[from as usize];
        if s.has(SEQ_KNOWN) {
            s.next_seq = seq::max(s.next_seq, end);
        } else {
            s.next_seq = end;
            s.flags |= SEQ_KNOWN;
        }
        if flags.ack() && seg.header_complete {
            if !s.has(ACK_KNOWN) || !seq::before(seg.ack, s.ack) {
                s.ack = seg.ack;
                s.win_edge = seg.ack.wrapping_add((seg.window as u32) << shift);
            }
            s.flags |= ACK_KNOWN;
            match seg.sack_right_edge {
                // A block ending at or below the ACK is a D-SACK (RFC 2883):
                // a duplicate report, not out-of-order data the receiver
                // holds, so not in the selective_acks Linux checks a RST
                // against.
                Some(edge) if seq::after(edge, seg.ack) => {
                    s.sack_edge = edge;
                    s.flags |= SACK_VALID;
                }
                _ => s.flags &= !SACK_VALID,
            }
        }
        if flags.fin() && !s.has(FIN_SENT) {
            s.fin_seq = seg.seq.wrapping_add(seg.payload_len);
            s.flags |= FIN_SENT;
            if !self.halves[to as usize].has(FIN_SENT) {
                self.halves[from as usize].flags |= FIN_FIRST;
            }
        }
        // Does this ACK cover the peer's FIN? (The peer's flags first: its
        // FIN is rarely pending.)
        let p = self.halves[to as usize];
        if p.flags & (FIN_SENT | FIN_ACKED) == FIN_SENT {
            let s = &self.halves[from as usize];
            if s.has(ACK_KNOWN) && seq::after(s.ack, p.fin_seq) {
                self.halves[to as usize].flags |= FIN_ACKED;
            }
        }

        // The connecting side only sends a plain ACK once it has taken a
        // SYN-ACK, so that completes the handshake even when we missed the
        // SYN-ACK or the third packet itself.
        if matches!(self.state, FlowState::SynSent | FlowState::SynReceived)
            && Some(from) == self.origin
            && flags.ack()
        {
            let responder = self.half(to);
            if !responder.has(SYN_SEEN) || seq::after(seg.ack, responder.isn) {
                self.state = FlowState::Established;
            }
        }
        self.state = self.closing_state().unwrap_or(self.state);
    }

    /// The closing state implied by the FIN flags, if any FIN was seen.
    #[inline]
    fn closing_state(&self) -> Option<FlowState> {
        let [a, b] = &self.halves;
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

    /// Judge a RST sent by `from` as the receiving kernel would.
    pub fn judge_rst(&self, from: Side, seg: &Segment<'_>) -> RstClass {
        self.judge(from, &Header::of(seg))
    }

    fn judge(&self, from: Side, seg: &Header) -> RstClass {
        if seg.flags.syn() || seg.flags.fin() {
            return RstClass::InvalidFlags;
        }
        let to = from.peer();
        let r = self.half(to);
        let s = self.half(from);
        let rst_seq = seg.seq;

        if self.state == FlowState::Closed {
            return RstClass::NoFlow;
        }

        // Receiver still in SYN-SENT: it sent the SYN and we saw no answer
        // that it could have taken as one.
        if self.state == FlowState::SynSent && self.origin == Some(to) {
            // SND.UNA = ISN, SND.NXT = ISN + 1 + SYN data (TFO).
            let acceptable =
                seg.flags.ack() && seq::after(seg.ack, r.isn) && !seq::after(seg.ack, r.next_seq);
            return if acceptable {
                RstClass::Refused
            } else {
                RstClass::SynSentBadAck
            };
        }

        // Receiver holds a request socket (SYN-RECV): tcp_check_req().
        if matches!(self.state, FlowState::SynSent | FlowState::SynReceived)
            && self.origin == Some(from)
        {
            // With ACK set, ack must be the SYN-ACK's ISN+1, or the segment
            // goes to the listener, which never acts on a RST. A SYN-ACK
            // acking TFO data made a full child socket: no such check.
            let tfo = r.ack != s.isn.wrapping_add(1);
            if seg.flags.ack()
                && r.has(SYN_SEEN)
                && s.has(SYN_SEEN)
                && !tfo
                && seg.ack != r.isn.wrapping_add(1)
            {
                return RstClass::SynSentBadAck;
            }
            let rcv_nxt = s.next_seq;
            let wnd = if r.has(ACK_KNOWN) {
                r.win_edge.wrapping_sub(r.ack)
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
            (r.ack, r.win_edge)
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
        let sack_edge = r.has(SACK_VALID) && rst_seq == r.sack_edge;
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

/// Idle timeouts per state class, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// SYN-SENT and SYN-RECEIVED (Linux retries a SYN for ~127 s; a
    /// half-open entry is the first thing a SYN flood creates).
    pub handshake: u32,
    /// Established and midstream flows.
    pub established: u32,
    /// FIN-WAIT, CLOSE-WAIT, LAST-ACK.
    pub closing: u32,
    /// TIME-WAIT (Linux holds it 60 s) and reset flows (kept so repeated
    /// RSTs are recognised).
    pub closed: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: 60,
            established: 7200,
            closing: 120,
            closed: 60,
        }
    }
}

impl Timeouts {
    fn of(&self, class: TimeoutClass) -> u32 {
        match class {
            TimeoutClass::Handshake => self.handshake,
            TimeoutClass::Established => self.established,
            TimeoutClass::Closing => self.closing,
            TimeoutClass::Closed => self.closed,
        }
    }
}

/// Flow-table counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FlowStats {
    /// Flows created.
    pub created: u64,
    /// Flows removed after their idle timeout.
    pub expired: u64,
    /// Live flows evicted (oldest first) to make room.
    pub evicted: u64,
    /// Packets that needed a new entry and found the table full (room is
    /// then made from expired flows, else by evicting the oldest).
    pub table_full: u64,
}

/// What tracking learned from one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Present for RST segments.
    pub rst: Option<RstJudgment>,
    /// State after the segment; `None` when no flow exists (untracked RST).
    pub state: Option<FlowState>,
}

/// The bounded flow table.
pub struct FlowTable {
    table: BoundedTable<FlowKey, Flow, LISTS, Align32>,
    timeouts: Timeouts,
    stats: FlowStats,
    /// Last second an expiry sweep ran.
    swept: u32,
}

impl FlowTable {
    pub fn new(capacity: usize, timeouts: Timeouts) -> FlowTable {
        FlowTable {
            table: BoundedTable::with_capacity(capacity),
            timeouts,
            stats: FlowStats::default(),
            swept: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// Memory per tracked flow of capacity, in bytes.
    pub fn bytes_per_flow(&self) -> usize {
        self.table.bytes_per_entry()
    }

    /// Iterate over tracked flows with their idle time in seconds.
    pub fn iter(&self, now: u32) -> impl Iterator<Item = (&FlowKey, &Flow, u32)> + '_ {
        self.table
            .iter()
            .map(move |(k, f, _, seen)| (k, f, now.wrapping_sub(seen)))
    }

    /// Remove flows past their idle timeout. Runs at most once per second
    /// of `now`; cost is proportional to what expires.
    #[inline]
    pub fn expire(&mut self, now: u32) {
        if now == self.swept {
            return;
        }
        self.swept = now;
        self.expire_all(now);
    }

    fn expire_all(&mut self, now: u32) {
        for (list, class) in [
            TimeoutClass::Handshake,
            TimeoutClass::Established,
            TimeoutClass::Closing,
            TimeoutClass::Closed,
        ]
        .into_iter()
        .enumerate()
        {
            let n = self
                .table
                .expire(list, now, self.timeouts.of(class), |_, _| {});
            self.stats.expired += n as u64;
        }
    }

    /// The key, side and hash of `seg`'s flow, with the header fields:
    /// what [`Self::observe_packet`] and the rest of the engine work from.
    #[inline]
    pub fn packet(&self, seg: &Segment<'_>) -> Packet {
        let (key, from) = FlowKey::of(seg);
        Packet {
            key,
            hash: self.table.hash_of(&key),
            hdr: Header::of(seg),
            from,
        }
    }

    /// Ask the CPU to fetch the index slot of `p`'s flow.
    #[inline]
    pub fn prefetch_slot(&self, p: &Packet) {
        self.table.prefetch_slot(p.hash);
    }

    /// Ask the CPU to fetch `p`'s flow entry for a lookup at `now` (reads
    /// its index slot: call once [`Self::prefetch_slot`] had time to land).
    #[inline]
    pub fn prefetch_entry(&self, p: &Packet, now: u32) {
        self.table.prefetch_entry(p.hash, now);
    }

    /// Track one TCP segment at time `now` (seconds) and judge it if it is a
    /// RST. RSTs never create flows; SYNs, SYN-ACKs and other segments do.
    #[inline]
    pub fn observe(&mut self, seg: &Segment<'_>, now: u32) -> Observation {
        let p = self.packet(seg);
        self.observe_packet(&p, now)
    }

    /// [`Self::observe`] for a segment already reduced to a [`Packet`].
    #[inline(always)]
    pub fn observe_packet(&mut self, p: &Packet, now: u32) -> Observation {
        if p.hdr.flags.0 & (TcpFlags::SYN | TcpFlags::RST) == 0 {
            // Most segments: neither SYN nor RST, on a flow we track. What
            // the general path below does for them, without its branches.
            if let Some(flow) = self.table.get_mut_hashed(p.hash, &p.key, now) {
                let before = flow.state;
                if before != FlowState::Closed {
                    flow.update_other(p.from, &p.hdr);
                }
                let state = flow.state;
                if state != before {
                    self.relist(p.hash, &p.key, before.timeout_class(), state);
                }
                return Observation {
                    rst: None,
                    state: Some(state),
                };
            }
        }
        self.observe_slow(p, now)
    }

    #[inline(never)]
    fn observe_slow(&mut self, p: &Packet, now: u32) -> Observation {
        let (key, from, hash, seg) = (p.key, p.from, p.hash, &p.hdr);
        if seg.flags.rst() {
            return self.observe_rst(p, now);
        }
        let new_state = if seg.flags.syn() {
            if seg.flags.ack() {
                FlowState::SynReceived
            } else {
                FlowState::SynSent
            }
        } else {
            FlowState::Midstream
        };
        if self.table.is_full() && !self.table.contains_hashed(hash, &key) {
            // Room first from flows already past their timeout; only if
            // there are none does the insert below evict a live flow.
            self.stats.table_full += 1;
            self.expire_all(now);
        }
        let (flow, before) = match self.table.get_or_insert_hashed(
            hash,
            key,
            now,
            new_state.timeout_class() as usize,
            || Flow::new(new_state),
        ) {
            Insert::Found(flow) => {
                let before = flow.state.timeout_class();
                // A fresh SYN on a finished connection is a new connection
                // reusing the 4-tuple.
                if seg.flags.syn()
                    && !seg.flags.ack()
                    && matches!(flow.state, FlowState::TimeWait | FlowState::Closed)
                {
                    *flow = Flow::new(FlowState::SynSent);
                    flow.origin = Some(from);
                }
                (flow, before)
            }
            Insert::Inserted { value, evicted } => {
                self.stats.created += 1;
                self.stats.evicted += evicted as u64;
                if seg.flags.syn() {
                    value.origin = Some(if seg.flags.ack() { from.peer() } else { from });
                }
                (value, new_state.timeout_class())
            }
        };
        // A flow whose reset the receiver accepted is over: later segments
        // (a reset lost after us, stragglers) do not revive it. Only a new
        // SYN, handled above, starts the 4-tuple again.
        if flow.state != FlowState::Closed {
            flow.update(from, seg);
        }
        let state = flow.state;
        self.relist(hash, &key, before, state);
        Observation {
            rst: None,
            state: Some(state),
        }
    }

    fn observe_rst(&mut self, p: &Packet, now: u32) -> Observation {
        let (key, from, seg) = (&p.key, p.from, &p.hdr);
        let with_data = seg.payload_len > 0;
        let Some(flow) = self.table.get_mut_hashed(p.hash, key, now) else {
            let class = if seg.flags.syn() || seg.flags.fin() {
                RstClass::InvalidFlags
            } else {
                RstClass::NoFlow
            };
            return Observation {
                rst: Some(RstJudgment {
                    class,
                    with_data,
                    service_port: p.dst_port(),
                }),
                state: None,
            };
        };
        let class = flow.judge(from, seg);
        let service_port = flow.service_port(key).unwrap_or_else(|| p.dst_port());
        let before = flow.state.timeout_class();
        if matches!(
            class,
            RstClass::Refused | RstClass::Abort | RstClass::Teardown
        ) {
            flow.state = FlowState::Closed;
        }
        let state = flow.state;
        self.relist(p.hash, key, before, state);
        Observation {
            rst: Some(RstJudgment {
                class,
                with_data,
                service_port,
            }),
            state: Some(state),
        }
    }

    #[inline(always)]
    fn relist(&mut self, hash: u64, key: &FlowKey, before: TimeoutClass, state: FlowState) {
        let after = state.timeout_class();
        if after != before {
            self.table.set_list_hashed(hash, key, after as usize);
        }
    }

    /// Look a flow up by one of its packets' addresses.
    pub fn get(&self, key: &FlowKey) -> Option<&Flow> {
        self.table.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(i: u32) -> Vec<u8> {
        // Ethernet + IPv4 + TCP SYN from 198.18.x.y:40000 to 198.19.0.1:80.
        let mut f = vec![0u8; 54];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[198, 18, (i >> 8) as u8, i as u8]);
        ip[16..20].copy_from_slice(&[198, 19, 0, 1]);
        let tcp = &mut f[34..54];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&i.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x02;
        f
    }

    fn observe(t: &mut FlowTable, frame: &[u8], now: u32) {
        match crate::wire::parse(crate::wire::LinkType::Ethernet, frame).unwrap() {
            crate::wire::Parsed::Tcp(seg) => {
                t.observe(&seg, now);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_table_reclaims_expired_before_evicting() {
        let timeouts = Timeouts {
            handshake: 10,
            ..Timeouts::default()
        };
        let mut t = FlowTable::new(4, timeouts);
        for i in 0..4 {
            observe(&mut t, &syn(i), 100);
        }
        // Half-open flows are past their 10 s timeout at 111: reclaimed.
        observe(&mut t, &syn(4), 111);
        let s = t.stats();
        assert_eq!((s.table_full, s.expired, s.evicted), (1, 4, 0));
        for i in 5..8 {
            observe(&mut t, &syn(i), 111);
        }
        // Full of live flows now: the oldest goes.
        observe(&mut t, &syn(8), 112);
        let s = t.stats();
        assert_eq!((s.table_full, s.evicted, s.created), (2, 1, 9));
        assert_eq!(t.len(), 4);
    }

    /// A flow-table entry (key and flow) is 96 bytes at a 32-byte
    /// alignment: every lookup touches exactly two cache lines.
    #[test]
    fn entries_span_two_cache_lines() {
        type Table = BoundedTable<FlowKey, Flow, LISTS, Align32>;
        assert_eq!(Table::entry_size(), 96);
        assert_eq!(Table::entry_align(), 32);
        for i in 0..6 {
            let (start, end) = (i * 96, i * 96 + 95);
            assert_eq!(end / 64 - start / 64, 1, "entry {i}");
        }
    }

    #[test]
    fn flow_state_names() {
        crate::names::assert_consistent::<FlowState>();
        assert_eq!(
            "open".parse::<FlowState>().unwrap_err().to_string(),
            "unknown flow state `open` (expected one of: syn_sent, syn_received, established, \
             midstream, fin_wait, close_wait, last_ack, time_wait, closed)"
        );
    }

    #[test]
    fn side_names() {
        crate::names::assert_consistent::<Side>();
    }

    #[test]
    fn flow_fits_the_memory_budget() {
        let t = FlowTable::new(100_000, Timeouts::default());
        eprintln!(
            "key {} B, flow {} B, {} B per flow at 100k",
            std::mem::size_of::<FlowKey>(),
            std::mem::size_of::<Flow>(),
            t.bytes_per_flow()
        );
        assert!(
            t.bytes_per_flow() <= 128,
            "{} bytes per flow",
            t.bytes_per_flow()
        );
    }
}
