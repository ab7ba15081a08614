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
//! The judgment (`judge.rs`, reached through [`FlowTable::observe`]) follows
//! Linux (net/ipv4/tcp_input.c, tcp_minisocks.c):
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
//!   reset it): nothing to reset → `no_flow`.
//!
//! # The life of a flow around a RST
//!
//! * **A RST kills only its receiver's socket.** Each side carries a reset
//!   mark: the receiver of an accepted reset is closed, the sender keeps its
//!   sequence state (a spoofed reset, or an abort on one side only, leaves
//!   it established). When it next sends, the dead side's kernel answers
//!   with a RST (seq = the segment's ack), judged against the live side's
//!   window → `abort` (`teardown` after a FIN). The live side keeps the flow
//!   until it is reset itself or the flow times out (the `closed` timeout,
//!   refreshed by every segment it sends). A refusal leaves nothing on
//!   either side: it comes from a host without a socket.
//! * **A reset lost after the tap.** A socket that accepted a reset sends
//!   nothing but resets, so a retransmission (nothing new, or a keepalive)
//!   or a SYN-ACK from a side marked reset shows the reset never reached
//!   it: the mark goes. New data or a FIN from it may have crossed the
//!   reset and does not count.
//! * **SYN-ACKs the client refuses** (`tcp_rcv_synsent_state_process`): one
//!   whose ack is outside (SND.UNA, SND.NXT] does not establish anything;
//!   the client answers with a bare RST (seq = that ack) and stays in
//!   SYN-SENT, so the flow stays `syn_sent` and a later valid SYN-ACK starts
//!   the handshake. An accepted RST from the connecting side to a request
//!   socket (SYN-RECV) kills the request and leaves the client in SYN-SENT:
//!   a Linux client sends such a RST only to refuse a SYN-ACK, so the flow
//!   goes back to `syn_sent` with the responder forgotten.
//! * **Closes that leave a socket on one side only**: the side that closed
//!   second holds nothing once its FIN is acked (LAST-ACK ends in
//!   `tcp_done()`), while the first closer keeps TIME-WAIT.
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
//! * A socket destroyed in SYN-SENT (connect() gave up) sends nothing, so
//!   a RST to it is judged as if it were still in SYN-SENT (`refused` or
//!   `syn_sent_bad_ack`) where its kernel finds no socket.
//! * A SYN-ACK refused for its timestamp echo (PAWS in SYN-SENT) is taken
//!   as the handshake: checking it would cost the SYN's TSval in every flow.
//!   The client's bare RST answering it (seq = its ack) then shows the
//!   refusal, and the flow goes back to `syn_sent` (see above).
//! * Whether a server holds a request socket shows on the wire only as its
//!   own SYN-ACK. A RST refusing a SYN-ACK that acks data never sent is
//!   judged against the request socket the SYN would have made (in its
//!   window: `abort`); a server that dropped the SYN (full accept queue)
//!   has none and ignores it. The error is toward "accepted", the safe side
//!   for enforcement.
//! * New data or a FIN from a side marked reset is taken as having crossed
//!   the reset; if the reset was in fact lost, a RST answering that data
//!   is judged `no_flow` where the kernel accepts it. A retransmission from
//!   that side clears the mark (see above).
//! * The live side of a flow reset on one side is forgotten after the
//!   `closed` timeout without segments from it; a RST answering it later
//!   is `no_flow`.
//!
//! # Where things are
//!
//! * [`FlowKey`], [`Side`], [`Header`], [`Packet`] — a segment as tracking
//!   sees it (`key`);
//! * [`FlowState`], [`TimeoutClass`] — connection states (`state`);
//! * [`Flow`], [`RstJudgment`] — what is kept per flow and the judgment
//!   above (`judge`). A flow is kept in two parts: [`Flow`], what a plain
//!   ACK or data segment reads and writes, sits beside the key in one
//!   64-byte cache line of the table; the rest (ISNs, SACK edges, FIN
//!   sequence numbers: handshakes, SACKs, FINs and RSTs only) beside the
//!   entries; [`RstGuard`] — its export to the in-kernel RST guard
//!   (`judge::guard`);
//! * [`FlowTable`], [`Timeouts`], [`FlowStats`], [`Observation`] — the
//!   bounded table (`table`).

mod judge;
mod key;
mod state;
mod table;

pub use judge::guard::{GuardHalf, RstGuard};
pub use judge::{Flow, RstJudgment, MIDSTREAM_WSCALE};
pub use key::{FlowKey, Header, Packet, Side};
pub use state::{FlowState, TimeoutClass};
pub use table::{FlowStats, FlowTable, Observation, Timeouts};
