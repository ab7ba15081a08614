//! Every RST class, on IPv4 and IPv6, from conversations built the way two
//! Linux stacks put them on the wire (`rstwall_tests::linux`).
//!
//! Each test says which kernel function (or RFC 5961 rule) decides what the
//! receiving Linux host does with the RST; the flow table must agree.

use rstwall_engine::flow::{FlowState, RstJudgment};
use rstwall_engine::RstClass::{self, *};
use rstwall_tests::linux::{segment, Conn, Family, Host, Tap, ACK, FIN, PSH, RST, SYN};

use Host::{Client, Server};

/// A scenario `fn name(Family)` becomes `name::ipv4` and `name::ipv6`.
macro_rules! both_families {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[test]
            fn ipv4() {
                super::$name(Family::V4)
            }

            #[test]
            fn ipv6() {
                super::$name(Family::V6)
            }
        }
    };
}

/// Judge `frame` (a RST without payload) and check its class.
#[track_caller]
fn expect(tap: &mut Tap, frame: &[u8], class: RstClass) -> RstJudgment {
    judged(tap, frame, class, false)
}

/// Judge `frame` (a RST carrying payload) and check its class.
#[track_caller]
fn expect_data(tap: &mut Tap, frame: &[u8], class: RstClass) -> RstJudgment {
    judged(tap, frame, class, true)
}

#[track_caller]
fn judged(tap: &mut Tap, frame: &[u8], class: RstClass, with_data: bool) -> RstJudgment {
    let seg = segment(frame);
    let j = tap.judge(frame);
    assert_eq!(
        (j.class, j.with_data),
        (class, with_data),
        "RST {}:{} -> {}:{} flags {} seq {:#010x} ack {:#010x}",
        seg.src,
        seg.src_port,
        seg.dst,
        seg.dst_port,
        seg.flags,
        seg.seq,
        seg.ack
    );
    j
}

/// Judge `frame`, check the class and the flow state left behind.
#[track_caller]
fn expect_state(tap: &mut Tap, frame: &[u8], class: RstClass, state: Option<FlowState>) {
    let obs = tap.see(frame);
    let j = obs.rst.expect("a RST");
    assert_eq!(j.class, class);
    assert_eq!(obs.state, state);
}

fn seed(fam: Family, n: u64) -> u64 {
    n * 2 + (fam == Family::V6) as u64
}

/// Handshake, a request and a two-segment response, all acknowledged and
/// all seen by the tap.
fn established(fam: Family, n: u64) -> (Conn, Tap) {
    established_conn(Conn::new(fam, seed(fam, n)))
}

fn established_conn(mut c: Conn) -> (Conn, Tap) {
    let mut tap = Tap::new();
    tap.see_all(c.handshake());
    tap.see_all([
        c.data(Client, 517),
        c.ack(Server),
        c.data(Server, 1448),
        c.data(Server, 1448),
        c.ack(Client),
    ]);
    (c, tap)
}

/// Both FINs exchanged and acknowledged; the client closed first, so it
/// sits in TIME-WAIT and the server's LAST-ACK is over.
fn closed_gracefully(fam: Family, n: u64) -> (Conn, Tap) {
    let (mut c, mut tap) = established(fam, n);
    tap.see_all([c.fin(Client), c.ack(Server), c.fin(Server), c.ack(Client)]);
    (c, tap)
}

// ---- the builder itself

/// The frames carry what Linux puts in them.
fn linux_frames_are_faithful(fam: Family) {
    let mut c = Conn::new(fam, seed(fam, 1));
    let (mss, syn_win, synack_win) = match fam {
        Family::V4 => (1460, 64240, 65160),
        Family::V6 => (1440, 64800, 64260),
    };
    let hs = c.handshake();
    let syn = segment(&hs[0]);
    assert_eq!(syn.is_ipv6(), fam == Family::V6);
    assert_eq!(syn.flags.0, SYN);
    assert_eq!(syn.window, syn_win);
    assert_eq!(syn.options.mss, Some(mss));
    assert!(syn.options.sack_permitted);
    assert_eq!(syn.options.window_scale, Some(7));
    assert_eq!(syn.options.timestamps.map(|t| t.1), Some(0));
    let synack = segment(&hs[1]);
    assert_eq!(synack.flags.0, SYN | ACK);
    assert_eq!(synack.ack, syn.seq.wrapping_add(1));
    assert_eq!(synack.window, synack_win);
    assert_eq!(synack.options.window_scale, Some(7));
    assert_eq!(
        synack.options.timestamps.map(|t| t.1),
        syn.options.timestamps.map(|t| t.0)
    );
    let third = segment(&hs[2]);
    assert_eq!((third.flags.0, third.window), (ACK, 502));
    assert!(third.options.timestamps.is_some() && third.options.mss.is_none());
    let data = c.data(Client, 100);
    let data = segment(&data);
    assert_eq!((data.flags.0, data.payload_len), (PSH | ACK, 100));
    assert_eq!(data.seq, syn.seq.wrapping_add(1));
    // tcp_v4_send_reset(): no options, window 0.
    let reply = c.reset_reply(Server);
    let reply = segment(&reply);
    assert_eq!(reply.flags.0, RST);
    assert_eq!(reply.seq, data.ack);
    assert_eq!((reply.window, reply.options.timestamps), (0, None));
}
both_families!(linux_frames_are_faithful);

// ---- refused

/// Connect to a closed port: the server's tcp_v4_send_reset() /
/// tcp_v6_send_reset() answers the SYN (no ACK in it) with RST|ACK,
/// seq 0, ack = ISN+1. tcp_rcv_synsent_state_process() accepts it:
/// ACK set and SND.UNA < ack <= SND.NXT → tcp_reset(), ECONNREFUSED.
fn refused_closed_port(fam: Family) {
    let mut c = Conn::new(fam, seed(fam, 2)).with_server_port(5432);
    let mut tap = Tap::new();
    tap.see(&c.syn());
    let rst = c.reset_reply(Server);
    let seg = segment(&rst);
    assert_eq!((seg.flags.0, seg.seq), (RST | ACK, 0));
    assert_eq!(seg.ack, c.isn(Client).wrapping_add(1));
    let obs = tap.see(&rst);
    let j = obs.rst.unwrap();
    assert_eq!(
        (j.class, j.with_data, j.service_port),
        (Refused, false, 5432)
    );
    assert_eq!(obs.state, Some(FlowState::Closed));
}
both_families!(refused_closed_port);

/// A TCP Fast Open SYN carrying data to a closed port: the reset acks
/// ISN+1+len (tcp_v4_send_reset() adds the payload length), and SND.NXT
/// is ISN+1+len, so tcp_rcv_synsent_state_process() takes it. A reset
/// acking only the SYN (ISN+1) is acceptable too: SND.UNA < ISN+1.
fn refused_tfo_syn_with_data(fam: Family) {
    let mut c = Conn::new(fam, seed(fam, 3));
    let mut tap = Tap::new();
    tap.see(&c.syn_with_data(200));
    let rst = c.reset_reply(Server);
    assert_eq!(segment(&rst).ack, c.isn(Client).wrapping_add(201));
    expect(&mut tap, &rst, Refused);

    let mut c = Conn::new(fam, seed(fam, 4));
    let mut tap = Tap::new();
    tap.see(&c.syn_with_data(200));
    let isn = c.isn(Client);
    expect(
        &mut tap,
        &c.rst(Server, 0, isn.wrapping_add(1), true),
        Refused,
    );
}
both_families!(refused_tfo_syn_with_data);

// ---- syn_sent_bad_ack

/// Resets to a SYN-SENT client that tcp_rcv_synsent_state_process()
/// ignores: with ACK, ack <= SND.UNA (ISN) or ack > SND.NXT goes to
/// reset_and_undo, whose reply to a RST is suppressed; without ACK,
/// RFC 793 "drop the segment and return". The SYN-SENT socket lives on,
/// so the real refusal afterwards is still `refused`.
fn syn_sent_bad_ack(fam: Family) {
    let mut c = Conn::new(fam, seed(fam, 5));
    let mut tap = Tap::new();
    tap.see(&c.syn());
    let isn = c.isn(Client);
    for ack in [
        isn,
        isn.wrapping_add(2),
        isn.wrapping_sub(1),
        isn.wrapping_add(1 << 31),
    ] {
        expect(&mut tap, &c.rst(Server, 0, ack, true), SynSentBadAck);
    }
    // Bare RST, even one carrying the "right" sequence number.
    expect(&mut tap, &c.rst(Server, 0, 0, false), SynSentBadAck);
    let bare = c.rst(Server, isn.wrapping_add(1), 0, false);
    expect(&mut tap, &bare, SynSentBadAck);
    expect(&mut tap, &c.reset_reply(Server), Refused);

    // TFO: acking beyond the SYN's data is beyond SND.NXT.
    let mut c = Conn::new(fam, seed(fam, 6));
    let mut tap = Tap::new();
    tap.see(&c.syn_with_data(100));
    let isn = c.isn(Client);
    expect(
        &mut tap,
        &c.rst(Server, 0, isn.wrapping_add(102), true),
        SynSentBadAck,
    );
    expect(&mut tap, &c.reset_reply(Server), Refused);
}
both_families!(syn_sent_bad_ack);

// ---- abort

/// tcp_send_active_reset() (close() with unread data, SO_LINGER 0,
/// abort) by either side: RST|ACK with seq = SND.NXT = the peer's
/// RCV.NXT. tcp_validate_incoming(): exact match (RFC 5961 §3.2) →
/// tcp_reset().
fn abort_active_reset(fam: Family) {
    for (n, from) in [(7, Client), (8, Server)] {
        let (mut c, mut tap) = established(fam, n);
        let rst = c.active_reset(from);
        let seg = segment(&rst);
        assert_eq!(seg.flags.0, RST | ACK);
        assert_eq!(seg.seq, c.rcv_nxt(from.peer()));
        assert!(seg.options.timestamps.is_some());
        let obs = tap.see(&rst);
        let j = obs.rst.unwrap();
        assert_eq!((j.class, j.with_data), (Abort, false), "reset by {from:?}");
        assert_eq!(j.service_port, c.port(Server));
        assert_eq!(obs.state, Some(FlowState::Closed));
    }
}
both_families!(abort_active_reset);

/// The server closes with the client's request unread: tcp_close()
/// sends an active reset whose ack covers the unread request; the
/// client in turn resets with data of its own still unacknowledged
/// (its SND.NXT includes it). Both are exact for the receiver.
fn abort_with_unread_and_unacked_data(fam: Family) {
    let (mut c, mut tap) = established(fam, 9);
    tap.see(&c.data(Client, 700));
    expect(&mut tap, &c.active_reset(Server), Abort);

    let (mut c, mut tap) = established(fam, 10);
    tap.see(&c.data(Client, 1200));
    tap.see(&c.data(Client, 1200));
    expect(&mut tap, &c.active_reset(Client), Abort);
}
both_families!(abort_with_unread_and_unacked_data);

/// The server holds a request socket (SYN-RECV) and the client has no
/// socket any more (connect() gave up): tcp_v4_send_reset() answers the
/// SYN-ACK, which has ACK, with a bare RST, seq = its ack_seq = the
/// client's ISN+1. tcp_check_req(): in [RCV.NXT, RCV.NXT + SYN-ACK
/// window] → embryonic_reset. Out of that window the request survives
/// (no challenge ACK for RSTs); with ACK set, ack must be the SYN-ACK's
/// ISN+1 or the segment goes to the listener, which drops RSTs.
fn abort_syn_recv(fam: Family) {
    let mut c = Conn::new(fam, seed(fam, 11));
    let mut tap = Tap::new();
    let (syn, syn_ack) = (c.syn(), c.syn_ack());
    let wnd = segment(&syn_ack).window as u32;
    tap.see_all([syn, syn_ack]);
    let (rcv_nxt, srv_isn) = (c.rcv_nxt(Server), c.isn(Server));
    let below = c.rst(Client, rcv_nxt.wrapping_sub(1), 0, false);
    expect(&mut tap, &below, OutOfWindow);
    let beyond = c.rst(Client, rcv_nxt.wrapping_add(wnd + 1), 0, false);
    expect(&mut tap, &beyond, OutOfWindow);
    for bad_ack in [srv_isn, srv_isn.wrapping_add(2)] {
        let rst = c.rst(Client, rcv_nxt, bad_ack, true);
        expect(&mut tap, &rst, SynSentBadAck);
    }
    let rst = c.reset_reply(Client);
    let seg = segment(&rst);
    assert_eq!((seg.flags.0, seg.seq), (RST, c.isn(Client).wrapping_add(1)));
    // The request socket is gone; the client, which answered the SYN-ACK
    // with a bare RST, never took it: it is in SYN-SENT (or gone), not
    // synchronized (tcp_rcv_synsent_state_process()).
    expect_state(&mut tap, &rst, Abort, Some(FlowState::SynSent));
    let to_client = c.rst(Server, c.isn(Server).wrapping_add(1), 0, false);
    expect(&mut tap, &to_client, SynSentBadAck);

    // Anywhere inside the SYN-ACK's window kills the request, with or
    // without a (correct) ACK.
    for (n, off, with_ack) in [(12, 1000, false), (13, 0, true), (14, 30_000, true)] {
        let mut c = Conn::new(fam, seed(fam, n));
        let mut tap = Tap::new();
        tap.see_all([c.syn(), c.syn_ack()]);
        let ack = c.isn(Server).wrapping_add(1);
        let rst = c.rst(Client, c.rcv_nxt(Server).wrapping_add(off), ack, with_ack);
        expect(&mut tap, &rst, Abort);
    }
}
both_families!(abort_syn_recv);

/// After an accepted reset the receiver has no socket: what the other
/// side still had in flight (data, or a FIN) reaches a host that answers
/// with tcp_v4_send_reset(), seq = that segment's ack_seq. Nothing is
/// left to reset → `no_flow`, however exact the sequence number.
fn second_rst_after_abort_is_no_flow(fam: Family) {
    let (mut c, mut tap) = established(fam, 15);
    expect(&mut tap, &c.active_reset(Client), Abort);
    tap.see(&c.data(Server, 300));
    let rst = c.reset_reply(Client);
    assert_eq!(segment(&rst).flags.0, RST);
    expect_state(&mut tap, &rst, NoFlow, Some(FlowState::Closed));

    // The server was closing: its FIN crossed the client's reset.
    let (mut c, mut tap) = established(fam, 16);
    expect(&mut tap, &c.active_reset(Client), Abort);
    tap.see(&c.fin(Server));
    let rst = c.reset_reply(Client);
    expect_state(&mut tap, &rst, NoFlow, Some(FlowState::Closed));
}
both_families!(second_rst_after_abort_is_no_flow);

/// A RST kills only its receiver's socket. A spoofed exact reset reaches
/// one side; the other still holds an established connection and, when
/// it next sends, the dead side's kernel answers with tcp_v4_send_reset()
/// (seq = the segment's ack_seq = the live side's RCV.NXT), which the
/// live side takes as an abort. Both directions; a RST to the dead side
/// finds no socket.
fn one_sided_reset(fam: Family) {
    for (n, victim) in [(19, Server), (20, Client)] {
        let (mut c, mut tap) = established(fam, n);
        let live = victim.peer();
        let spoof = c.rst(live, c.rcv_nxt(victim), c.snd_nxt(victim), true);
        expect_state(&mut tap, &spoof, Abort, Some(FlowState::Closed));
        let to_dead = c.rst(live, c.rcv_nxt(victim), 0, false);
        expect(&mut tap, &to_dead, NoFlow);
        tap.see(&c.data(live, 200));
        let reply = c.reset_reply(victim);
        assert_eq!(segment(&reply).seq, c.rcv_nxt(live));
        expect_state(&mut tap, &reply, Abort, Some(FlowState::Closed));
        // Now both are gone.
        tap.see(&c.data(live, 10));
        expect(&mut tap, &c.reset_reply(victim), NoFlow);
    }
    // The live side had sent a FIN: its reset is a teardown.
    let (mut c, mut tap) = established(fam, 21);
    let spoof = c.rst(Client, c.rcv_nxt(Server), 0, false);
    expect(&mut tap, &spoof, Abort);
    tap.see(&c.fin(Client));
    expect(&mut tap, &c.reset_reply(Server), Teardown);
}
both_families!(one_sided_reset);

/// The server's abort reset is lost after the tap: the client, still
/// established, retransmits (nothing new), and the server, without a
/// socket, answers that with a reset the client accepts. A socket that
/// took a reset sends nothing, so the retransmission shows the first
/// reset never arrived. New data from it, by contrast, may have crossed
/// the reset (second_rst_after_abort_is_no_flow).
fn reset_lost_then_retransmission(fam: Family) {
    let (mut c, mut tap) = established(fam, 23);
    let seq = c.snd_nxt(Client);
    tap.see(&c.data(Client, 100));
    expect(&mut tap, &c.active_reset(Server), Abort);
    tap.see(&c.retransmit(Client, seq, 100));
    let reply = c.reset_reply(Server);
    expect_state(&mut tap, &reply, Abort, Some(FlowState::Closed));

    // A keepalive (seq = SND.NXT-1, no data) says the same.
    let (mut c, mut tap) = established(fam, 24);
    expect(&mut tap, &c.active_reset(Server), Abort);
    let keepalive = c.raw(
        Client,
        ACK,
        c.snd_nxt(Client).wrapping_sub(1),
        c.rcv_nxt(Client),
        &[],
    );
    tap.see(&keepalive);
    expect(&mut tap, &c.reset_reply(Server), Abort);
}
both_families!(reset_lost_then_retransmission);

/// A peer that restarted lost every socket: the client's next segment
/// draws a reset with seq = its ack_seq, exact for the client → `abort`.
fn peer_restarted(fam: Family) {
    let (mut c, mut tap) = established(fam, 25);
    tap.see(&c.data(Client, 50));
    expect(&mut tap, &c.reset_reply(Server), Abort);
}
both_families!(peer_restarted);

// ---- handshakes the client refuses

/// tcp_rcv_synsent_state_process(): a SYN-ACK whose ack is not in
/// (SND.UNA, SND.NXT] (it acks data never sent) does not establish the
/// connection: the client answers with a bare RST (seq = that ack) and
/// stays in SYN-SENT, where a RST counts only with an acceptable ACK.
/// Where that answering RST lands depends on whether the server holds a
/// request socket, which the wire shows only by a valid SYN-ACK: in the
/// window of one it is taken as killing it (`abort`), beyond as ignored.
fn refused_syn_ack(fam: Family) {
    for (n, off, class) in [(27, 1000, Abort), (28, 100_000, OutOfWindow)] {
        let mut c = Conn::new(fam, seed(fam, n));
        let mut tap = Tap::new();
        tap.see(&c.syn());
        let (cisn, sisn) = (c.isn(Client), c.isn(Server));
        let bad = c.raw(Server, SYN | ACK, sisn, cisn.wrapping_add(off), &[]);
        assert_eq!(tap.see(&bad).state, Some(FlowState::SynSent));
        let answer = c.reset_reply(Client);
        assert_eq!(segment(&answer).seq, cisn.wrapping_add(off));
        expect_state(&mut tap, &answer, class, Some(FlowState::SynSent));
        // Still SYN-SENT: a RST at what would be RCV.NXT after that
        // SYN-ACK is ignored without an ACK, accepted (refused) with one.
        let seq = sisn.wrapping_add(1);
        expect(&mut tap, &c.rst(Server, seq, 0, false), SynSentBadAck);
        expect(
            &mut tap,
            &c.rst(Server, seq, cisn.wrapping_add(1), true),
            Refused,
        );
    }
}
both_families!(refused_syn_ack);

/// After a refused SYN-ACK a valid one completes the handshake; a server
/// without a socket answers the client's ACK (or FIN) with a reset the
/// established client accepts: `abort`, `teardown` after its FIN.
fn valid_syn_ack_after_a_refused_one(fam: Family) {
    // The refusing RST beyond a request socket's window is ignored; inside
    // it, it is taken as killing one (abort), which must not end the flow:
    // the client is still in SYN-SENT.
    let cases = [
        (29, false, 100_000, OutOfWindow),
        (30, true, 100_000, OutOfWindow),
        (31, false, 1000, Abort),
        (32, true, 1000, Abort),
    ];
    for (n, fin, off, answer) in cases {
        let mut c = Conn::new(fam, seed(fam, n));
        let mut tap = Tap::new();
        tap.see(&c.syn());
        let (cisn, sisn) = (c.isn(Client), c.isn(Server));
        tap.see(&c.raw(Server, SYN | ACK, sisn, cisn.wrapping_add(off), &[]));
        expect(&mut tap, &c.reset_reply(Client), answer);
        tap.see_all([c.syn_ack(), c.handshake_ack()]);
        if fin {
            tap.see(&c.fin(Client));
        }
        let class = if fin { Teardown } else { Abort };
        expect_state(
            &mut tap,
            &c.reset_reply(Server),
            class,
            Some(FlowState::Closed),
        );
    }
}
both_families!(valid_syn_ack_after_a_refused_one);

// ---- teardown

/// The server close()s; the client, not knowing, sends more data. The
/// orphaned server socket (a FIN-WAIT-2 time-wait socket,
/// tcp_timewait_state_process() → TCP_TW_RST; or a full socket with
/// RCV_SHUTDOWN in tcp_rcv_state_process()) answers through
/// tcp_v4_send_reset(): RST, seq = the data's ack_seq = the client's
/// RCV.NXT. Exact for a client that saw a FIN → `teardown`. A second
/// pipelined segment draws a second reset, to a client already gone.
fn teardown_data_after_fin(fam: Family) {
    let (mut c, mut tap) = established(fam, 17);
    tap.see_all([c.fin(Server), c.ack(Client)]);
    let data = c.data(Client, 300);
    tap.see(&data);
    let rst = c.reset_reply(Server);
    let seg = segment(&rst);
    assert_eq!((seg.flags.0, seg.seq), (RST, segment(&data).ack));
    expect_state(&mut tap, &rst, Teardown, Some(FlowState::Closed));
    tap.see(&c.data(Client, 300));
    let rst = c.reset_reply(Server);
    expect_state(&mut tap, &rst, NoFlow, Some(FlowState::Closed));

    // Same with the FIN not yet acknowledged (FIN-WAIT-1): the data
    // acks it, tcp_rcv_state_process() moves to FIN-WAIT-2, finds the
    // socket dead with new data, tcp_done() and reset.
    let (mut c, mut tap) = established(fam, 18);
    tap.see(&c.fin(Server));
    tap.see(&c.data(Client, 300));
    expect(&mut tap, &c.reset_reply(Server), Teardown);
}
both_families!(teardown_data_after_fin);

/// tcp_reset_check(): seq == RCV.NXT-1 (the FIN's own sequence number)
/// resets a receiver in CLOSE-WAIT, LAST-ACK or CLOSING, even though it
/// lies below RCV.WUP. In ESTABLISHED the same offset is simply out of
/// window (tcp_sequence(): end_seq before RCV.WUP).
fn teardown_rcv_nxt_minus_one(fam: Family) {
    // CLOSE-WAIT.
    let (mut c, mut tap) = established(fam, 19);
    tap.see_all([c.fin(Client), c.ack(Server)]);
    let fin_seq = c.snd_nxt(Client).wrapping_sub(1);
    assert_eq!(fin_seq, c.rcv_nxt(Server).wrapping_sub(1));
    let ack = c.rcv_nxt(Client);
    expect(&mut tap, &c.rst(Client, fin_seq, ack, true), Teardown);

    // LAST-ACK.
    let (mut c, mut tap) = established(fam, 20);
    tap.see_all([c.fin(Client), c.ack(Server), c.fin(Server)]);
    let fin_seq = c.snd_nxt(Client).wrapping_sub(1);
    let ack = c.rcv_nxt(Client);
    expect(&mut tap, &c.rst(Client, fin_seq, ack, true), Teardown);

    // ESTABLISHED: no FIN, no exception; the flow survives it.
    let (mut c, mut tap) = established(fam, 21);
    let seq = c.rcv_nxt(Server).wrapping_sub(1);
    let ack = c.rcv_nxt(Client);
    expect(&mut tap, &c.rst(Client, seq, ack, true), OutOfWindow);
    expect(&mut tap, &c.active_reset(Client), Abort);
}
both_families!(teardown_rcv_nxt_minus_one);

/// The client closed first and sits in TIME-WAIT; the server's LAST-ACK
/// is over. An old duplicate from the server reaches the time-wait
/// socket, which re-ACKs it (tcp_timewait_state_process() → TCP_TW_ACK);
/// the server, without a socket, answers that ACK with
/// tcp_v4_send_reset(): seq = its ack_seq = the client's RCV.NXT.
/// tcp_timewait_state_process(): seq == rcv_nxt with RST kills the
/// time-wait socket (RFC 1337 assassination, tcp_rfc1337 = 0). Any other
/// RST is dropped silently.
fn teardown_time_wait(fam: Family) {
    let (mut c, mut tap) = closed_gracefully(fam, 22);
    let rcv_nxt = c.rcv_nxt(Client);
    // Silently dropped, no challenge ACK: out_of_window even though it is
    // next to RCV.NXT.
    let near = c.rst(Server, rcv_nxt.wrapping_add(1), 0, false);
    expect(&mut tap, &near, OutOfWindow);
    let far = c.rst(Server, rcv_nxt.wrapping_add(1 << 30), 0, false);
    expect(&mut tap, &far, OutOfWindow);

    let (old_seq, old_ack) = (c.isn(Server).wrapping_add(1), c.isn(Client).wrapping_add(1));
    tap.see(&c.raw(Server, PSH | ACK, old_seq, old_ack, b"old duplicate"));
    let dup_ack = c.ack(Client);
    tap.see(&dup_ack);
    let rst = c.reset_reply(Server);
    assert_eq!(segment(&rst).seq, segment(&dup_ack).ack);
    expect_state(&mut tap, &rst, Teardown, Some(FlowState::Closed));
}
both_families!(teardown_time_wait);

/// The server close()d and its FIN was acked: with default
/// tcp_fin_timeout the orphan becomes a FIN-WAIT-2 time-wait socket, and
/// tcp_timewait_state_process() kills it on any RST tcp_in_window() takes
/// ([RCV.NXT, RCV.NXT + window]). The module docs take this orphaned case
/// for every FIN-WAIT-2 receiver. In FIN-WAIT-1 (FIN unacked) the socket
/// is a full one: tcp_validate_incoming() challenges anything not exact.
fn teardown_orphaned_fin_wait2(fam: Family) {
    let (mut c, mut tap) = established(fam, 23);
    tap.see_all([c.fin(Server), c.ack(Client)]);
    let (rcv_nxt, ack) = (c.rcv_nxt(Server), c.rcv_nxt(Client));
    let far = c.rst(Client, rcv_nxt.wrapping_add(1 << 30), ack, true);
    expect(&mut tap, &far, OutOfWindow);
    let rst = c.rst(Client, rcv_nxt.wrapping_add(1000), ack, true);
    expect_state(&mut tap, &rst, Teardown, Some(FlowState::Closed));

    // FIN-WAIT-1.
    let (mut c, mut tap) = established(fam, 24);
    tap.see(&c.fin(Server));
    let (rcv_nxt, ack) = (c.rcv_nxt(Server), c.rcv_nxt(Client));
    let near = c.rst(Client, rcv_nxt.wrapping_add(1000), ack, true);
    expect(&mut tap, &near, InWindow);
    expect(&mut tap, &c.active_reset(Client), Teardown);
}
both_families!(teardown_orphaned_fin_wait2);

// ---- in_window / out_of_window

/// tcp_validate_incoming(): a RST that passes tcp_sequence()
/// ([RCV.WUP, RCV.NXT + receive window]) but is not RCV.NXT gets a
/// challenge ACK (RFC 5961 §3.2) and the connection stays. Checked in
/// both directions, up to the right edge inclusive; the exact reset
/// afterwards still aborts.
fn in_window(fam: Family) {
    for (n, from) in [(25, Client), (26, Server)] {
        let (mut c, mut tap) = established(fam, n);
        let to = from.peer();
        let (rcv_nxt, wnd, ack) = (c.rcv_nxt(to), c.rcv_wnd(to), c.rcv_nxt(from));
        assert_eq!(wnd, c.window_field(to) as u32 * 128);
        for off in [1, wnd / 2, wnd] {
            let rst = c.rst(from, rcv_nxt.wrapping_add(off), ack, true);
            expect(&mut tap, &rst, InWindow);
        }
        let rst = c.rst(from, rcv_nxt.wrapping_add(wnd + 1), ack, true);
        expect(&mut tap, &rst, OutOfWindow);
        expect(&mut tap, &c.active_reset(from), Abort);
    }
}
both_families!(in_window);

/// Data the server received but has not acknowledged yet: RCV.WUP (its
/// last ACK) lags RCV.NXT, and tcp_sequence() lets [RCV.WUP, RCV.NXT)
/// through, so a RST there is challenged, not accepted.
fn in_window_between_wup_and_rcv_nxt(fam: Family) {
    let (mut c, mut tap) = established(fam, 27);
    let wup = c.rcv_nxt(Server);
    tap.see(&c.data(Client, 1000));
    let ack = c.rcv_nxt(Client);
    for seq in [wup, wup.wrapping_add(500), wup.wrapping_add(999)] {
        expect(&mut tap, &c.rst(Client, seq, ack, true), InWindow);
    }
    let below = c.rst(Client, wup.wrapping_sub(1), ack, true);
    expect(&mut tap, &below, OutOfWindow);
    expect(&mut tap, &c.active_reset(Client), Abort);
}
both_families!(in_window_between_wup_and_rcv_nxt);

/// tcp_sequence() fails (far below RCV.WUP or beyond the window): the
/// RST is dropped without a word (tcp_reset_check() does not apply
/// outside the closing states) and the connection goes on.
fn out_of_window(fam: Family) {
    let (mut c, mut tap) = established(fam, 28);
    let (rcv_nxt, ack) = (c.rcv_nxt(Server), c.rcv_nxt(Client));
    for seq in [
        rcv_nxt.wrapping_sub(1 << 20),
        rcv_nxt.wrapping_sub(1 << 31),
        rcv_nxt.wrapping_add(1 << 30),
        rcv_nxt.wrapping_add((1 << 31) - 1),
    ] {
        expect(&mut tap, &c.rst(Client, seq, ack, false), OutOfWindow);
        expect(&mut tap, &c.rst(Client, seq, ack, true), OutOfWindow);
    }
    let near = c.rst(Client, rcv_nxt.wrapping_add(7), ack, true);
    expect(&mut tap, &near, InWindow);
    expect(&mut tap, &c.active_reset(Client), Abort);
}
both_families!(out_of_window);

/// ISNs just below 2^32: sequence numbers wrap during the exchange and
/// the before()/after() arithmetic must hold across it, for the window
/// (spanning the wrap) as for the exact match.
fn sequence_wraparound(fam: Family) {
    let c = Conn::new(fam, seed(fam, 29)).with_isns(u32::MAX - 600, u32::MAX - 2000);
    let (mut c, mut tap) = established_conn(c);
    // The server's response crossed zero: the client's RCV.NXT is past it.
    let to_cli = c.rcv_nxt(Client);
    assert!(to_cli < 2000);
    // The client's request ends just below 2^32: the server's window spans
    // the wrap.
    let to_srv = c.rcv_nxt(Server);
    assert!(to_srv > u32::MAX - 100);
    for (seq, class) in [
        (to_srv.wrapping_add(1000), InWindow),
        (to_srv.wrapping_sub(1000), OutOfWindow),
        (to_srv.wrapping_add(1 << 31), OutOfWindow),
    ] {
        expect(&mut tap, &c.rst(Client, seq, to_cli, true), class);
    }
    for (seq, class) in [
        (to_cli.wrapping_sub(3000), OutOfWindow),
        (to_cli.wrapping_add(3000), InWindow),
    ] {
        expect(&mut tap, &c.rst(Server, seq, to_srv, true), class);
    }
    // More data crosses zero on the client side too, then the abort.
    tap.see_all([c.data(Client, 1400), c.ack(Server)]);
    assert!(c.rcv_nxt(Server) < 2000);
    expect(&mut tap, &c.active_reset(Client), Abort);

    // And an abort exactly at the wrap: RCV.NXT == 0.
    let c = Conn::new(fam, seed(fam, 30)).with_isns(u32::MAX - 517, 12345);
    let (mut c, mut tap) = established_conn(c);
    assert_eq!(c.rcv_nxt(Server), 0);
    expect(&mut tap, &c.active_reset(Client), Abort);
}
both_families!(sequence_wraparound);

// ---- SACK

/// tcp_validate_incoming() also resets on seq == the right edge of the
/// highest SACK block the receiver holds (tp->selective_acks): a sender
/// whose segment was lost aborts with seq = SND.NXT, past the hole.
fn sack_right_edge(fam: Family) {
    // The realistic case: segment 2 of 3 is lost, the server SACKs 3,
    // the client aborts at SND.NXT = the SACK block's right edge.
    let (mut c, mut tap) = established(fam, 31);
    tap.see_all([
        c.data(Client, 1000),
        c.data_lost(Client, 1000),
        c.data(Client, 1000),
    ]);
    let ack = c.ack(Server);
    let edge = c.snd_nxt(Client);
    assert_eq!(segment(&ack).options.sack_right_edge, Some(edge));
    assert_ne!(segment(&ack).ack, edge);
    tap.see(&ack);
    expect(&mut tap, &c.active_reset(Client), Abort);

    // The SACK edge on its own: a fourth segment is lost too, so the
    // edge is neither the client's SND.NXT nor the server's RCV.NXT.
    let (mut c, mut tap) = established(fam, 32);
    tap.see_all([
        c.data(Client, 1000),
        c.data_lost(Client, 1000),
        c.data(Client, 1000),
    ]);
    let edge = c.snd_nxt(Client);
    tap.see_all([c.ack(Server), c.data_lost(Client, 1000)]);
    let ack = c.rcv_nxt(Client);
    let before_edge = c.rst(Client, edge.wrapping_sub(1), ack, true);
    expect(&mut tap, &before_edge, InWindow);
    expect(&mut tap, &c.rst(Client, edge, ack, true), Abort);
}
both_families!(sack_right_edge);

/// A D-SACK block (RFC 2883: a duplicate, at or below the ACK) is not
/// in tp->selective_acks, so its right edge earns no exception: a RST
/// there is below RCV.WUP and tcp_sequence() drops it.
fn dsack_edge_is_not_a_sack_edge(fam: Family) {
    let (mut c, mut tap) = established(fam, 33);
    let first = c.snd_nxt(Client);
    tap.see_all([c.data(Client, 1000), c.data(Client, 1000), c.ack(Server)]);
    tap.see(&c.retransmit(Client, first, 1000));
    let ack = c.ack(Server);
    let dup_edge = first.wrapping_add(1000);
    assert_eq!(segment(&ack).options.sack_right_edge, Some(dup_edge));
    tap.see(&ack);
    let cack = c.rcv_nxt(Client);
    expect(&mut tap, &c.rst(Client, dup_edge, cack, true), OutOfWindow);
    expect(&mut tap, &c.active_reset(Client), Abort);
}
both_families!(dsack_edge_is_not_a_sack_edge);

// ---- no_flow

/// No state for the 5-tuple at all (backscatter, a flow older than the
/// tracker), with or without ACK. A RST never creates a flow.
fn no_flow_without_state(fam: Family) {
    let mut c = Conn::new(fam, seed(fam, 34));
    let mut tap = Tap::new();
    let bare = c.rst(Server, 0x1234_5678, 0, false);
    expect_state(&mut tap, &bare, NoFlow, None);
    let with_ack = c.rst(Client, 0, 0x0bad_cafe, true);
    expect_state(&mut tap, &with_ack, NoFlow, None);
    expect_state(&mut tap, &c.active_reset(Client), NoFlow, None);
    assert!(tap.table().is_empty());
}
both_families!(no_flow_without_state);

/// The server closed second: once the client's ACK of its FIN arrived,
/// LAST-ACK ended in tcp_done() and nothing holds the 5-tuple on the
/// server. A late reset toward it (a middlebox, a spoofer), exact or
/// not, finds no socket.
fn no_flow_after_last_ack(fam: Family) {
    let (mut c, mut tap) = closed_gracefully(fam, 35);
    let (rcv_nxt, ack) = (c.rcv_nxt(Server), c.rcv_nxt(Client));
    expect(&mut tap, &c.rst(Client, rcv_nxt, ack, true), NoFlow);
    let minus_one = c.rst(Client, rcv_nxt.wrapping_sub(1), ack, true);
    expect(&mut tap, &minus_one, NoFlow);
    // The client's TIME-WAIT socket is still there the other way.
    expect(&mut tap, &c.rst(Server, ack, 0, false), Teardown);
}
both_families!(no_flow_after_last_ack);

// ---- invalid_flags

/// RST with SYN or FIN: no conforming stack sends either. Judged before
/// any state, on a live flow (which survives) and with no flow.
fn invalid_flags(fam: Family) {
    let (mut c, mut tap) = established(fam, 36);
    let (rcv_nxt, ack) = (c.rcv_nxt(Server), c.rcv_nxt(Client));
    for flags in [RST | SYN, RST | FIN | ACK, RST | SYN | ACK, RST | SYN | FIN] {
        let rst = c.raw(Client, flags, rcv_nxt, ack, &[]);
        expect(&mut tap, &rst, InvalidFlags);
    }
    expect(&mut tap, &c.active_reset(Client), Abort);

    let mut c = Conn::new(fam, seed(fam, 37));
    let mut tap = Tap::new();
    expect_state(
        &mut tap,
        &c.raw(Server, RST | SYN, 1, 0, &[]),
        InvalidFlags,
        None,
    );
    expect_state(
        &mut tap,
        &c.raw(Server, RST | FIN, 1, 0, &[]),
        InvalidFlags,
        None,
    );
    assert!(tap.table().is_empty());
}
both_families!(invalid_flags);

// ---- midstream

/// The tap starts after the handshake (restart, route change): both
/// directions seen, window scale assumed 7 — which is what Linux
/// negotiated here, so even the right edge matches. The same
/// tcp_validate_incoming() rules apply.
fn midstream_both_directions(fam: Family) {
    for (n, from) in [(38, Client), (39, Server)] {
        let mut c = Conn::new(fam, seed(fam, n));
        let _unseen = c.handshake();
        let mut tap = Tap::new();
        for f in [
            c.data(Client, 517),
            c.ack(Server),
            c.data(Server, 1448),
            c.ack(Client),
        ] {
            assert_eq!(tap.see(&f).state, Some(FlowState::Midstream));
        }
        let to = from.peer();
        let (rcv_nxt, wnd, ack) = (c.rcv_nxt(to), c.rcv_wnd(to), c.rcv_nxt(from));
        for off in [1, wnd / 2, wnd] {
            let rst = c.rst(from, rcv_nxt.wrapping_add(off), ack, true);
            expect(&mut tap, &rst, InWindow);
        }
        for seq in [rcv_nxt.wrapping_add(wnd + 1), rcv_nxt.wrapping_sub(1 << 24)] {
            expect(&mut tap, &c.rst(from, seq, ack, true), OutOfWindow);
        }
        let j = expect(&mut tap, &c.active_reset(from), Abort);
        // No handshake: the service side is the RST's destination.
        assert_eq!(j.service_port, c.port(to));
    }
}
both_families!(midstream_both_directions);

/// Asymmetric routing: the tap sees only client → server. The server's
/// RCV.NXT is the client's SND.NXT, its window unknown (assumed the
/// largest Linux would advertise with scale 7); the client's RCV.NXT is
/// what its own ACKs carry.
fn midstream_one_direction(fam: Family) {
    let mut c = Conn::new(fam, seed(fam, 40));
    let _unseen = c.handshake();
    let mut tap = Tap::new();
    tap.see(&c.data(Client, 517));
    let _unseen = [c.data(Server, 1448), c.data(Server, 1448)];
    tap.see_all([c.ack(Client), c.data(Client, 200)]);
    let _unseen = c.ack(Server);
    let (rcv_nxt, ack) = (c.rcv_nxt(Server), c.rcv_nxt(Client));
    for (seq, class) in [
        (rcv_nxt.wrapping_add(1000), InWindow),
        (rcv_nxt.wrapping_add(1 << 30), OutOfWindow),
        (rcv_nxt.wrapping_sub(1 << 20), OutOfWindow),
    ] {
        expect(&mut tap, &c.rst(Client, seq, ack, true), class);
    }
    expect(&mut tap, &c.active_reset(Client), Abort);

    // A reset toward the client, whose RCV.NXT its ACKs showed.
    let mut c = Conn::new(fam, seed(fam, 41));
    let _unseen = c.handshake();
    let mut tap = Tap::new();
    let _unseen = c.data(Server, 1448);
    tap.see_all([c.ack(Client), c.data(Client, 100)]);
    let (rcv_nxt, ack) = (c.rcv_nxt(Client), c.rcv_nxt(Server));
    let near = c.rst(Server, rcv_nxt.wrapping_add(1000), ack, true);
    expect(&mut tap, &near, InWindow);
    expect(&mut tap, &c.active_reset(Server), Abort);
}
both_families!(midstream_one_direction);

// ---- with_data

/// RFC 9293 §3.5.3 (RFC 1122 4.2.2.12): a RST may carry diagnostic
/// text. Linux ignores the payload for the decision (tcp_reset(),
/// tcp_send_challenge_ack() and tcp_rcv_synsent_state_process() look at
/// seq and ack only); the class stays and `with_data` is set.
fn rst_with_data(fam: Family) {
    let text = b"connection reset by policy";

    let mut c = Conn::new(fam, seed(fam, 42));
    let mut tap = Tap::new();
    tap.see(&c.syn());
    let isn = c.isn(Client);
    let rst = c.rst_payload(Server, 0, isn.wrapping_add(1), true, b"port closed");
    expect_data(&mut tap, &rst, Refused);

    let (mut c, mut tap) = established(fam, 43);
    let (rcv_nxt, ack) = (c.rcv_nxt(Server), c.rcv_nxt(Client));
    let rst = c.rst_payload(Client, rcv_nxt.wrapping_add(100), ack, true, text);
    expect_data(&mut tap, &rst, InWindow);
    let rst = c.rst_payload(Client, rcv_nxt.wrapping_add(1 << 30), ack, true, text);
    expect_data(&mut tap, &rst, OutOfWindow);
    let rst = c.raw(Client, RST | ACK, rcv_nxt, ack, text);
    assert_eq!(segment(&rst).payload_len, text.len() as u32);
    let obs = tap.see(&rst);
    let j = obs.rst.unwrap();
    assert_eq!((j.class, j.with_data), (Abort, true));
    assert_eq!(obs.state, Some(FlowState::Closed));

    let (mut c, mut tap) = established(fam, 44);
    tap.see_all([c.fin(Server), c.ack(Client), c.data(Client, 10)]);
    let seq = c.rcv_nxt(Client);
    expect_data(
        &mut tap,
        &c.rst_payload(Server, seq, 0, false, text),
        Teardown,
    );
    expect_data(
        &mut tap,
        &c.rst_payload(Server, seq, 0, false, text),
        NoFlow,
    );
}
both_families!(rst_with_data);

// ---- window scaling

/// One side does not offer window scaling (tcp_window_scaling = 0), so
/// neither scales (RFC 7323 §2.2): windows are the raw 16-bit field.
/// rcv_nxt + 60000 is in window only where the advertised window
/// reaches that far — not for a 29200-byte window, which scaled by 7
/// would have covered it.
fn window_scaling_not_negotiated(fam: Family) {
    for (n, quiet) in [(45, Server), (46, Client)] {
        let mut c = Conn::new(fam, seed(fam, n)).without_wscale(quiet);
        c.set_window(Client, 29200);
        let mut tap = Tap::new();
        let hs = c.handshake();
        let syn_ws = segment(&hs[0]).options.window_scale;
        assert_eq!(syn_ws.is_some(), quiet == Server);
        assert_eq!(segment(&hs[1]).options.window_scale, None);
        assert!(!c.wscale_ok());
        tap.see_all(hs);
        tap.see_all([
            c.data(Client, 517),
            c.ack(Server),
            c.data(Server, 1448),
            c.ack(Client),
        ]);
        let srv_wnd = c.rcv_wnd(Server);
        assert!(srv_wnd > 60_000 && srv_wnd < 65_536, "{srv_wnd}");
        assert_eq!(c.rcv_wnd(Client), 29200);

        let (to_srv, to_cli) = (c.rcv_nxt(Server), c.rcv_nxt(Client));
        for (off, class) in [
            (60_000, InWindow),
            (srv_wnd, InWindow),
            (srv_wnd + 1, OutOfWindow),
        ] {
            let rst = c.rst(Client, to_srv.wrapping_add(off), to_cli, true);
            expect(&mut tap, &rst, class);
        }
        for (off, class) in [
            (29_200, InWindow),
            (29_201, OutOfWindow),
            (60_000, OutOfWindow),
        ] {
            let rst = c.rst(Server, to_cli.wrapping_add(off), to_srv, true);
            expect(&mut tap, &rst, class);
        }
        expect(&mut tap, &c.active_reset(Server), Abort);
    }
}
both_families!(window_scaling_not_negotiated);
