#!/usr/bin/env python3
"""Generate tests/fixtures/linux/<scenario>.pcap and <scenario>.expect.

Run through scripts/make-linux-fixtures, which creates the two namespaces and
the veth pair and removes them afterwards; this program only uses them.

Every RST in every pcap gets one row in the .expect file:

    frame <TAB> class <TAB> kernel_accepted <TAB> note

`kernel_accepted` is measured, never assumed: it is true when the receiving
socket went to CLOSE (TCP_INFO) because of that RST (or, for TIME_WAIT, when
the time-wait socket disappeared from `ss`), false when the socket survived
(same state, no SO_ERROR, data still flows) or when there was no socket at all.
When the kernel does something the scenario did not predict, the row says
"UNEXPECTED" and records what the kernel did.
"""

from __future__ import annotations

import argparse
import os
import random
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field

sys.dont_write_bytecode = True  # leave no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rstlab import (ACK, FIN, MASK32, RST, SYN, Capture, Frame, Netns, flag_str,  # noqa: E402
                    linger0, queued_in, read_pcap, seq_add, seq_diff, side, so_error,
                    tcp_state, try_recv)

CLIENT_IP, SERVER_IP = "198.18.0.1", "198.18.0.2"
SERVER_PORT = 8080
# Linux rate-limits challenge ACKs per socket to one per
# net.ipv4.tcp_invalid_ratelimit (500 ms by default); space spoofs wider.
SPOOF_SPACING = 0.6
# How long to watch for the receiver's reaction to a RST.
REACTION = 0.3


@dataclass
class Conn:
    c: socket.socket
    s: socket.socket
    ca: tuple[str, int]
    sa: tuple[str, int]

    def sock(self, addr):
        return self.c if addr == self.ca else self.s

    def peer(self, addr):
        return self.sa if addr == self.ca else self.ca


def who(addr) -> str:
    return f"{'client' if addr[0] == CLIENT_IP else 'server'} {addr[0]}:{addr[1]}"


@dataclass
class Row:
    frame: Frame
    cls: str
    accepted: bool
    note: str


@dataclass
class Scenario:
    lab: "Lab"
    name: str
    summary: str
    rows: dict = field(default_factory=dict)
    socks: list = field(default_factory=list)
    cap: Capture | None = None
    listener: socket.socket | None = None
    last_spoof: float = 0.0

    # ---- plumbing ------------------------------------------------------------

    @property
    def c(self) -> Netns:
        return self.lab.c

    @property
    def s(self) -> Netns:
        return self.lab.s

    def ns_of(self, ip: str) -> Netns:
        return self.c if ip == CLIENT_IP else self.s

    def capture(self):
        self.pcap_tmp = os.path.join(self.lab.tmp, self.name + ".pcap")
        self.cap = Capture(self.s, self.pcap_tmp)
        self.lab.captures.append(self.cap)

    def tcp(self, ns: Netns, port: int) -> socket.socket:
        sk = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socks.append(sk)
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sk.bind((ns.ip, port))
        sk.settimeout(5)
        return sk

    def listen(self, port: int = SERVER_PORT, backlog: int = 8) -> socket.socket:
        self.listener = self.tcp(self.s, port)
        self.listener.listen(backlog)
        return self.listener

    def connect(self, cport: int, exchange: bool = True) -> Conn:
        c = self.tcp(self.c, cport)
        c.connect((SERVER_IP, SERVER_PORT))
        s, _ = self.listener.accept()
        self.socks.append(s)
        s.settimeout(5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(c, s, (CLIENT_IP, cport), (SERVER_IP, SERVER_PORT))
        if exchange:
            self.exchange(conn, "hello")
        return conn

    def exchange(self, conn: Conn, tag: str):
        """One request/response, then wait until both sides have ACKed."""
        req = f"{tag} request from {conn.ca[1]}\n".encode()
        resp = f"{tag} response to {conn.ca[1]}\n".encode()
        conn.c.sendall(req)
        recv_exact(conn.s, len(req))
        conn.s.sendall(resp)
        recv_exact(conn.c, len(resp))
        if self.cap:
            self.settle(conn)

    def settle(self, conn: Conn, timeout: float = 3.0):
        """Wait until each side has ACKed everything the other sent, as the
        capture shows. Returns (client Side, server Side)."""
        deadline = time.monotonic() + timeout
        while True:
            fr = self.cap.frames()
            a, b = side(fr, conn.ca, conn.sa), side(fr, conn.sa, conn.ca)
            if (a.snd_nxt is not None and b.snd_nxt is not None
                    and a.rcv_nxt == b.snd_nxt and b.rcv_nxt == a.snd_nxt):
                return a, b
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: flow {conn.ca}<->{conn.sa} did not settle")
            time.sleep(0.02)

    def rx(self, conn: Conn, addr):
        """Wire view of endpoint `addr` of `conn` (after settling)."""
        a, b = self.settle(conn)
        return a if addr == conn.ca else b

    def spoof(self, frm, to, seq: int, flags: int, ack: int = 0) -> Frame:
        """Send a forged segment from `frm` to `to`; return its frame."""
        wait = self.last_spoof + SPOOF_SPACING - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        mark = self.cap.last_no()
        self.ns_of(frm[0]).send_tcp(frm, to, seq, ack, flags)
        self.last_spoof = time.monotonic()
        seq &= MASK32
        return self.cap.wait_for(lambda f: f.is_(frm, to) and f.flags == flags and f.seq == seq,
                                 f"spoofed {flag_str(flags)} seq {seq}", after=mark)

    def kernel_rst(self, frm, to, mark: int) -> Frame:
        return self.cap.wait_for(lambda f: f.is_(frm, to) and f.flags & RST,
                                 f"kernel RST {frm} -> {to}", after=mark)

    def record(self, frame: Frame, cls: str, accepted: bool, note: str, expect_accept: bool):
        if accepted != expect_accept:
            note = (f"UNEXPECTED: predicted the kernel would {'accept' if expect_accept else 'ignore'} it, "
                    f"it {'accepted' if accepted else 'ignored'} it; ") + note
            self.lab.surprises.append(f"{self.name} #{frame.no}: {note}")
        assert frame.no not in self.rows, f"frame {frame.no} recorded twice"
        assert "\t" not in note and "\n" not in note
        self.rows[frame.no] = Row(frame, cls, accepted, note)

    def surprise(self, frame: Frame, text: str) -> str:
        self.lab.surprises.append(f"{self.name} #{frame.no}: {text}")
        return "UNEXPECTED: " + text

    # ---- the kernel's verdict on one RST -------------------------------------

    def verdict(self, conn: Conn, to, frame: Frame, before: str, how: str, cls: str | None,
                expect_accept: bool, expect_challenge: bool | None = None, prove_alive: bool = True,
                rcv_nxt: int | None = None):
        """Watch what the kernel owning `to` did with RST `frame` and record it.

        cls=None: the class of a surviving spoof follows the kernel: in_window
        if it answered with a challenge ACK, out_of_window if it stayed silent.
        """
        sk = conn.sock(to)
        peer = conn.peer(to)
        replies = [f for f in self.cap.frames_after(frame.no, REACTION) if f.is_(to, peer)]
        after = tcp_state(sk)
        accepted = before != "CLOSE" and after == "CLOSE"
        parts = [how]
        if rcv_nxt is not None:
            d = seq_diff(frame.seq, rcv_nxt)
            parts.append("seq = RCV.NXT" if d == 0 else f"seq = RCV.NXT{d:+d}")
        parts.append(f"{who(to)} {before} -> {after}")
        if accepted:
            parts.append(try_recv(sk))
            err = so_error(sk)
            if err != "0":
                parts.append(f"SO_ERROR={err}")
            if replies:
                parts.append("then sent " + ", ".join(f"#{f.no} [{flag_str(f.flags)}]" for f in replies))
        else:
            err = so_error(sk)
            parts.append(f"SO_ERROR={err}")
            challenge = next((f for f in replies if f.flags == ACK and f.plen == 0), None)
            if challenge:
                parts.append(f"challenge ACK #{challenge.no} (seq {challenge.seq} ack {challenge.ack})")
            else:
                parts.append("no reply (silently dropped)")
            if expect_challenge is not None and bool(challenge) != expect_challenge:
                parts.append(self.surprise(frame, f"expected {'a challenge ACK' if expect_challenge else 'no reply'}, "
                                                  f"got {'one' if challenge else 'none'}"))
            if cls is None:
                cls = "in_window" if challenge else "out_of_window"
            if prove_alive and after != "CLOSE":
                parts.append(self.prove_alive(conn, to))
        self.record(frame, cls, accepted, "; ".join(parts), expect_accept)

    def prove_alive(self, conn: Conn, to) -> str:
        """Move data over the connection in every direction its state allows."""
        rcv, peer = conn.sock(to), conn.sock(conn.peer(to))
        st_r, st_p = tcp_state(rcv), tcp_state(peer)
        tag = f"alive-check {len(self.rows) + 1}"
        try:
            if st_r == "ESTABLISHED" and st_p == "ESTABLISHED":
                self.exchange(conn, tag)
                return "data flows both ways afterwards"
            senders = []
            if st_r in ("ESTABLISHED", "CLOSE_WAIT"):
                senders.append((rcv, peer))
            if st_p in ("ESTABLISHED", "CLOSE_WAIT"):
                senders.append((peer, rcv))
            if not senders:
                return f"states {st_r}/{st_p}: no direction can carry data"
            for a, b in senders:
                msg = f"{tag}\n".encode()
                a.sendall(msg)
                recv_exact(b, len(msg))
            self.settle(conn)
            return f"data still delivered ({st_r}/{st_p})"
        except OSError as e:
            return f"DATA FAILED afterwards: {e!r}"

    # ---- finishing -----------------------------------------------------------

    def finish(self):
        self.cap.stop()
        frames, total = read_pcap(self.pcap_tmp)
        rsts = [f for f in frames if f.flags & RST]
        missing = [f for f in rsts if f.no not in self.rows]
        if missing:
            raise RuntimeError(f"{self.name}: RST frames without a verdict: "
                               + "; ".join(str(f) for f in missing))
        bad = [f for f in frames if not f.csum_ok]
        if bad:
            raise RuntimeError(f"{self.name}: bad TCP checksums in {[f.no for f in bad]}")
        if total != len(frames):
            raise RuntimeError(f"{self.name}: {total - len(frames)} non-TCP frames captured")
        for sk in self.socks:
            try:
                if tcp_state(sk) not in ("CLOSE", "LISTEN"):
                    linger0(sk)  # no orphans may outlive the lab
            except OSError:
                pass
            sk.close()
        with open(os.path.join(self.lab.tmp, self.name + ".expect"), "w") as f:
            f.write("frame\tclass\tkernel_accepted\tnote\n")
            for no in sorted(self.rows):
                r = self.rows[no]
                f.write(f"{no}\t{r.cls}\t{str(r.accepted).lower()}\t{r.note}\n")
        self.lab.done.append(self)
        size = os.path.getsize(self.pcap_tmp)
        print(f"  {self.name}: {total} frames, {size} bytes, {len(rsts)} RSTs: "
              + ", ".join(f"#{r.frame.no} {r.cls}{'' if r.accepted else ' (ignored)'}"
                          for r in sorted(self.rows.values(), key=lambda r: r.frame.no)))
        if size > 50_000:
            raise RuntimeError(f"{self.name}: pcap is {size} bytes (> 50 KB)")


def recv_exact(sk: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sk.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("EOF while expecting data")
        buf += chunk
    return buf


def ss_lines(ns: Netns, *filt: str) -> list[str]:
    return [l for l in ns.run("ss", "-Htan", *filt).splitlines() if l.strip()]


# ==============================================================================
# scenarios
# ==============================================================================

def sc_refused(lab):
    sc = Scenario(lab, "refused", "connect() to closed ports: RST+ACK with ack = ISN+1")
    sc.capture()
    plan = [(sc.c, 42001, SERVER_IP, 9), (sc.c, 42002, SERVER_IP, 9), (sc.c, 42003, SERVER_IP, 2049),
            (sc.s, 42101, CLIENT_IP, 7)]
    for ns, cport, dip, dport in plan:
        sk = sc.tcp(ns, cport)
        me, dst = (ns.ip, cport), (dip, dport)
        mark = sc.cap.last_no()
        try:
            sk.connect(dst)
            outcome = "connect() SUCCEEDED"
        except ConnectionRefusedError:
            outcome = "connect() raised ECONNREFUSED"
        except OSError as e:
            outcome = f"connect() raised {e!r}"
        syn = sc.cap.wait_for(lambda f: f.is_(me, dst) and f.flags == SYN, "SYN", after=mark)
        rst = sc.kernel_rst(dst, me, mark)
        state = tcp_state(sk)
        ackd = "ack = ISN+1" if rst.ack == seq_add(syn.seq, 1) else f"ack = ISN{seq_diff(rst.ack, syn.seq):+d}"
        note = (f"closed port {dport}: kernel answered SYN #{syn.no} with [{flag_str(rst.flags)}] {ackd}; "
                f"{who(me)} {outcome}, socket now {state}")
        sc.record(rst, "refused", outcome.endswith("ECONNREFUSED") and state == "CLOSE", note, True)
    sc.finish()


def sc_abort(lab):
    sc = Scenario(lab, "abort", "exact-sequence RSTs from close() with unread data and SO_LINGER{1,0}")
    sc.listen()
    sc.capture()

    # A1: server closes with unread data in its receive queue.
    k = sc.connect(43001)
    k.c.sendall(b"x" * 100)
    wait_until(lambda: queued_in(k.s) == 100, "100 bytes queued at the server")
    sc.settle(k)
    rcv = sc.rx(k, k.ca).rcv_nxt
    before, mark = tcp_state(k.c), sc.cap.last_no()
    k.s.close()
    rst = sc.kernel_rst(k.sa, k.ca, mark)
    sc.verdict(k, k.ca, rst, before, "server close() with 100 unread bytes (tcp_close: data_was_unread)",
               "abort", True, rcv_nxt=rcv)

    # A2: client SO_LINGER {1,0} + close() after a request/response.
    k = sc.connect(43002)
    rcv = sc.rx(k, k.sa).rcv_nxt
    before, mark = tcp_state(k.s), sc.cap.last_no()
    linger0(k.c)
    k.c.close()
    rst = sc.kernel_rst(k.ca, k.sa, mark)
    sc.verdict(k, k.sa, rst, before, "client SO_LINGER{1,0} + close()", "abort", True, rcv_nxt=rcv)

    # A3: client closes with unread data the server sent it.
    k = sc.connect(43003)
    k.s.sendall(b"y" * 50)
    wait_until(lambda: queued_in(k.c) == 50, "50 bytes queued at the client")
    sc.settle(k)
    rcv = sc.rx(k, k.sa).rcv_nxt
    before, mark = tcp_state(k.s), sc.cap.last_no()
    k.c.close()
    rst = sc.kernel_rst(k.ca, k.sa, mark)
    sc.verdict(k, k.sa, rst, before, "client close() with 50 unread bytes", "abort", True, rcv_nxt=rcv)
    sc.finish()


def sc_teardown(lab):
    sc = Scenario(lab, "teardown", "acceptable RSTs after a FIN: data after close, linger-0 after FIN, "
                                   "RCV.NXT-1 in CLOSE_WAIT, TIME_WAIT assassination")
    sc.listen()
    sc.capture()

    # T1: server close() (FIN), client keeps sending -> server kernel RSTs.
    k = sc.connect(47001)
    k.s.close()
    sc.settle(k)
    rcv = sc.rx(k, k.ca).rcv_nxt
    before, mark = tcp_state(k.c), sc.cap.last_no()
    k.c.sendall(b"data after the server's FIN\n")
    rst = sc.kernel_rst(k.sa, k.ca, mark)
    sc.verdict(k, k.ca, rst, before, "server close()d (FIN, orphaned FIN_WAIT2), client sent data: "
               "server kernel answered with RST (RFC 1122 data after close)", "teardown", True, rcv_nxt=rcv)

    # T2: client shutdown(SHUT_RDWR) (FIN), server keeps sending -> client kernel RSTs.
    k = sc.connect(47002)
    k.c.shutdown(socket.SHUT_RDWR)
    sc.settle(k)
    rcv = sc.rx(k, k.sa).rcv_nxt
    before, mark = tcp_state(k.s), sc.cap.last_no()
    k.s.sendall(b"data after the client's shutdown(SHUT_RDWR)\n")
    rst = sc.kernel_rst(k.ca, k.sa, mark)
    sc.verdict(k, k.sa, rst, before, "client shutdown(SHUT_RDWR) (FIN), server sent data: "
               "client kernel answered with RST", "teardown", True, rcv_nxt=rcv)

    # T3: client shutdown(SHUT_WR); the server, in CLOSE_WAIT, aborts with SO_LINGER 0.
    k = sc.connect(47003)
    k.c.shutdown(socket.SHUT_WR)
    sc.settle(k)
    rcv = sc.rx(k, k.ca).rcv_nxt
    before, mark = tcp_state(k.c), sc.cap.last_no()
    linger0(k.s)
    k.s.close()
    rst = sc.kernel_rst(k.sa, k.ca, mark)
    sc.verdict(k, k.ca, rst, before, "after the client's FIN the server (CLOSE_WAIT) did SO_LINGER{1,0} + close()",
               "teardown", True, rcv_nxt=rcv)

    # T4: half-closed flow, spoofed RSTs around RCV.NXT-1.
    k = sc.connect(47004)
    k.c.shutdown(socket.SHUT_WR)
    sc.settle(k)
    cl = sc.rx(k, k.ca)
    before = tcp_state(k.c)
    rst = sc.spoof(k.sa, k.ca, seq_add(cl.rcv_nxt, -1), RST | ACK, ack=cl.snd_nxt)
    sc.verdict(k, k.ca, rst, before, "spoofed RST seq = RCV.NXT-1 to the FIN_WAIT2 side (it sent the FIN, "
               "received none): left of the window, tcp_reset_check() does not apply", None, False,
               expect_challenge=False, rcv_nxt=cl.rcv_nxt)
    sv, before = sc.rx(k, k.sa), tcp_state(k.s)
    rst = sc.spoof(k.ca, k.sa, seq_add(sv.rcv_nxt, 10), RST | ACK, ack=sv.snd_nxt)
    sc.verdict(k, k.sa, rst, before, "spoofed RST seq = RCV.NXT+10 to the CLOSE_WAIT side", None, False,
               expect_challenge=True, rcv_nxt=sv.rcv_nxt)
    sv, before = sc.rx(k, k.sa), tcp_state(k.s)
    rst = sc.spoof(k.ca, k.sa, seq_add(sv.rcv_nxt, -1), RST, ack=0)
    sc.verdict(k, k.sa, rst, before, "spoofed RST seq = RCV.NXT-1 (the FIN's seq) to the CLOSE_WAIT side: "
               "tcp_reset_check()", "teardown", True, rcv_nxt=sv.rcv_nxt)

    # T5: TIME_WAIT assassination (RFC 1337) with an exact RST.
    k = sc.connect(47005)
    k.c.close()
    wait_until(lambda: tcp_state(k.s) == "CLOSE_WAIT", "server in CLOSE_WAIT")
    k.s.close()
    tw, _ = sc.settle(k)  # both FINs sent and ACKed: the client is in TIME_WAIT
    filt = ("state", "time-wait", "sport", "=", f":{k.ca[1]}")
    tw_before = ss_lines(sc.c, *filt)
    rst = sc.spoof(k.sa, k.ca, tw.rcv_nxt, RST | ACK, ack=tw.snd_nxt)
    time.sleep(REACTION)
    tw_after = ss_lines(sc.c, *filt)
    replies = [f for f in sc.cap.frames() if f.no > rst.no]
    accepted = bool(tw_before) and not tw_after
    note = (f"both sides closed, client in TIME_WAIT (ss: {len(tw_before)} socket); spoofed RST seq = RCV.NXT: "
            f"TIME_WAIT socket {'gone' if not tw_after else 'still there'} afterwards (tcp_rfc1337=0 lets "
            f"tcp_timewait_state_process() kill it); {'no reply' if not replies else 'replies ' + str([f.no for f in replies])}")
    sc.record(rst, "teardown", accepted, note, True)
    sc.finish()


def sc_blind_reset(lab):
    sc = Scenario(lab, "blind-reset", "spoofed in-window / out-of-window RSTs against a live flow, "
                                      "then one exact-sequence RST that kills it")
    sc.listen()
    sc.capture()
    k = sc.connect(40001)
    for i in range(3):
        sc.exchange(k, f"warm-up {i}")

    def hit(to, offset, flags, how, expect_challenge, cls=None):
        st = sc.rx(k, to)
        off = offset(st) if callable(offset) else offset
        before = tcp_state(k.sock(to))
        rst = sc.spoof(k.peer(to), to, seq_add(st.rcv_nxt, off), flags, ack=st.snd_nxt if flags & ACK else 0)
        win = f"window {st.window} (field {st.win_raw} << {st.wscale})"
        sc.verdict(k, to, rst, before, f"spoofed {how}; {win}", cls, False,
                   expect_challenge=expect_challenge, rcv_nxt=st.rcv_nxt)

    sa, ca = k.sa, k.ca
    hit(sa, 1, RST | ACK, "RST seq = RCV.NXT+1", True)
    hit(sa, lambda st: st.window // 2, RST, "RST seq = RCV.NXT+window/2", True)
    hit(sa, lambda st: st.window - 1, RST | ACK, "RST seq = RCV.NXT+window-1 (last byte in window)", True)
    hit(ca, 1000, RST | ACK, "RST towards the client seq = RCV.NXT+1000", True)
    hit(sa, -100000, RST, "RST seq = RCV.NXT-100000", False)
    hit(sa, 1 << 30, RST | ACK, "RST seq = RCV.NXT+2^30", False)
    hit(sa, -1, RST | ACK, "RST seq = RCV.NXT-1 in ESTABLISHED (left of the window; RCV.NXT-1 is only "
                           "acceptable in CLOSE_WAIT/LAST_ACK/CLOSING)", False)
    hit(sa, lambda st: st.window, RST, "RST seq = RCV.NXT+window (right edge: RFC 793 says outside; "
                                       "Linux tcp_sequence() only rejects seq > RCV.NXT+window)", True)
    hit(sa, lambda st: st.window + 1, RST, "RST seq = RCV.NXT+window+1 (just past the right edge)", False)
    hit(ca, -70000, RST | ACK, "RST towards the client seq = RCV.NXT-70000", False)

    st = sc.rx(k, sa)
    before = tcp_state(k.s)
    rst = sc.spoof(ca, sa, st.rcv_nxt, RST | ACK, ack=st.snd_nxt)
    sc.verdict(k, sa, rst, before, "spoofed RST seq = RCV.NXT exactly (a successful blind reset)", "abort", True,
               rcv_nxt=st.rcv_nxt)
    sc.finish()


def sc_syn_sent_bad_ack(lab):
    sc = Scenario(lab, "syn-sent-bad-ack", "spoofed RSTs answering a SYN without acknowledging it; the "
                                           "connect() survives and succeeds")
    lst = sc.listen(backlog=0)
    sc.capture()
    # Fill the accept queue (backlog 0 holds one connection): further SYNs to
    # the port are dropped silently (LISTENOVERFLOWS) until someone accept()s.
    filler = sc.tcp(sc.c, 45000)
    filler.connect((SERVER_IP, SERVER_PORT))
    cport = 45001
    me, srv = (CLIENT_IP, cport), (SERVER_IP, SERVER_PORT)
    cs = sc.tcp(sc.c, cport)
    cs.setblocking(False)
    mark = sc.cap.last_no()
    rc = cs.connect_ex(srv)
    assert rc == 115, f"connect_ex returned {rc}"  # EINPROGRESS
    syn = sc.cap.wait_for(lambda f: f.is_(me, srv) and f.flags == SYN, "SYN", after=mark)
    isn = syn.seq
    time.sleep(0.1)
    pending = []
    rng = random.Random(45001)
    plan = [
        (RST | ACK, 0, seq_add(isn, 1000), "RST+ACK with ack = ISN+1000 (> SND.NXT)"),
        (RST, rng.getrandbits(32), 0, "RST without ACK"),
        (RST | ACK, 0, isn, "RST+ACK with ack = ISN (not after SND.UNA)"),
        (RST | ACK, rng.getrandbits(32), seq_add(isn, -5000), "RST+ACK with ack = ISN-5000"),
    ]
    for flags, seq, ack, how in plan:
        rst = sc.spoof(srv, me, seq, flags, ack=ack)
        time.sleep(REACTION)
        state, err = tcp_state(cs), so_error(cs)
        pending.append((rst, how, state, err))
    # Let it through.
    m2 = sc.cap.last_no()
    acc, _ = lst.accept()
    sc.socks.append(acc)
    r, w, _ = select.select([], [cs], [], 10)
    err = so_error(cs) if w else "timeout"
    synack = next((f for f in sc.cap.frames() if f.no > m2 and f.is_(srv, me) and f.flags == SYN | ACK), None)
    state = tcp_state(cs)
    connected = err == "0" and state == "ESTABLISHED"
    if connected:
        s2, _ = lst.accept()
        sc.socks.append(s2)
        s2.settimeout(5)
        cs.setblocking(True)
        cs.settimeout(5)
        k = Conn(cs, s2, me, srv)
        sc.exchange(k, "after bad-ack RSTs")
    syns = [f for f in sc.cap.frames() if f.is_(me, srv) and f.flags == SYN]
    for rst, how, state_then, err_then in pending:
        retrans = next((f for f in syns if f.no > rst.no), None)
        parts = [f"spoofed {how} while the client (ISN {isn}) was in SYN_SENT (server accept queue full, SYN dropped)",
                 f"{who(me)} SYN_SENT -> {state_then}, SO_ERROR={err_then}"]
        if retrans is not None:
            parts.append(f"next SYN retransmission #{retrans.no} {1000 * (retrans.ts - rst.ts):.0f} ms later")
        parts.append(f"connect() then {'succeeded (SYN-ACK #%d), data flowed' % synack.no if connected else 'FAILED: ' + err}")
        accepted = state_then == "CLOSE"
        sc.record(rst, "syn_sent_bad_ack", accepted, "; ".join(parts), False)
    sc.finish()


def sc_backscatter(lab):
    sc = Scenario(lab, "backscatter", "RSTs for 5-tuples with no connection")
    lst = sc.listen()
    sc.capture()
    rng = random.Random(51000)
    plan = [
        ((CLIENT_IP, 51001), (SERVER_IP, 31337), RST, "RST to a closed port"),
        ((CLIENT_IP, 51002), (SERVER_IP, 445), RST | ACK, "RST+ACK to a closed port"),
        ((SERVER_IP, 80), (CLIENT_IP, 51003), RST | ACK, "RST+ACK to an unused client port (SYN-flood backscatter)"),
        ((SERVER_IP, 443), (CLIENT_IP, 51004), RST, "RST to an unused client port"),
        ((CLIENT_IP, 51005), (SERVER_IP, SERVER_PORT), RST | ACK,
         f"RST+ACK to the LISTENing port {SERVER_PORT} (no connection from this source port)"),
    ]
    for frm, to, flags, how in plan:
        rcv_ns = sc.ns_of(to[0])
        socks_before = [l for l in ss_lines(rcv_ns, "sport", "=", f":{to[1]}") if not l.startswith("LISTEN")]
        rst = sc.spoof(frm, to, rng.getrandbits(32), flags, ack=rng.getrandbits(32) if flags & ACK else 0)
        replies = [f for f in sc.cap.frames_after(rst.no, REACTION) if f.is_(to, frm)]
        parts = [f"spoofed {how}", f"no socket for this 4-tuple in the receiver (ss: {len(socks_before)} "
                                   f"non-listening sockets on port {to[1]})",
                 "no reply (kernel does not answer a RST)" if not replies else f"replies {[f.no for f in replies]}"]
        if to[1] == SERVER_PORT:
            parts.append(f"listener still {tcp_state(lst)}")
        sc.record(rst, "no_flow", False, "; ".join(parts), False)
    # The listener is unharmed: a fresh connection to it works.
    sc.connect(51006)
    sc.finish()


def sc_invalid_flags(lab):
    sc = Scenario(lab, "invalid-flags", "RST combined with SYN or FIN at live connections")
    sc.listen()
    sc.capture()
    k = sc.connect(46001)
    sa, ca = k.sa, k.ca

    def hit(to, off, flags, how, expect_accept, expect_challenge=None):
        st = sc.rx(k, to)
        before = tcp_state(k.sock(to))
        rst = sc.spoof(k.peer(to), to, seq_add(st.rcv_nxt, off), flags, ack=st.snd_nxt if flags & ACK else 0)
        sc.verdict(k, to, rst, before, f"spoofed [{flag_str(flags)}] {how}", "invalid_flags", expect_accept,
                   expect_challenge=expect_challenge, rcv_nxt=st.rcv_nxt)

    hit(sa, 1, RST | SYN, "in window, not exact: Linux handles the RST first -> challenge ACK", False, True)
    hit(sa, 1 << 30, RST | FIN, "out of window", False, False)
    hit(ca, 5, RST | FIN | ACK, "in window, not exact", False, True)
    hit(sa, 0, RST | SYN, "seq exact: processed as a RST", True)
    k = sc.connect(46002)
    hit(k.ca, 0, RST | FIN | ACK, "seq exact: processed as a RST", True)
    sc.finish()


def sc_midstream(lab):
    sc = Scenario(lab, "midstream", "capture starts after the handshake; spoofed RSTs then a real abort")
    sc.listen()
    k = sc.connect(48001, exchange=False)
    for i in range(3):
        sc.exchange(k, f"before capture {i}")
    sc.capture()
    sc.exchange(k, "captured")
    sa, ca = k.sa, k.ca

    def hit(to, off, flags, how, expect_challenge):
        st = sc.rx(k, to)
        before = tcp_state(k.sock(to))
        rst = sc.spoof(k.peer(to), to, seq_add(st.rcv_nxt, off), flags, ack=st.snd_nxt if flags & ACK else 0)
        sc.verdict(k, to, rst, before, f"spoofed {how}; handshake not in the capture "
                   f"(window field {st.win_raw}, scale unknown)", None, False,
                   expect_challenge=expect_challenge, rcv_nxt=st.rcv_nxt)

    hit(sa, 1, RST | ACK, "RST seq = RCV.NXT+1", True)
    hit(sa, 1 << 30, RST, "RST seq = RCV.NXT+2^30", False)
    hit(ca, 100, RST, "RST towards the client seq = RCV.NXT+100", True)
    hit(ca, -100000, RST | ACK, "RST towards the client seq = RCV.NXT-100000", False)
    st = sc.rx(k, sa)
    before, mark = tcp_state(k.s), sc.cap.last_no()
    linger0(k.c)
    k.c.close()
    rst = sc.kernel_rst(ca, sa, mark)
    sc.verdict(k, sa, rst, before, "client SO_LINGER{1,0} + close() (real abort)", "abort", True,
               rcv_nxt=st.rcv_nxt)
    sc.finish()


def wait_until(pred, what: str, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for: {what}")
        time.sleep(0.02)


SCENARIOS = {
    "refused": sc_refused,
    "abort": sc_abort,
    "teardown": sc_teardown,
    "blind-reset": sc_blind_reset,
    "syn-sent-bad-ack": sc_syn_sent_bad_ack,
    "backscatter": sc_backscatter,
    "invalid-flags": sc_invalid_flags,
    "midstream": sc_midstream,
}


class Lab:
    def __init__(self, args):
        self.c = Netns(args.client_ns, args.client_if, CLIENT_IP)
        self.s = Netns(args.server_ns, args.server_if, SERVER_IP)
        self.out = args.out
        self.tmp = tempfile.mkdtemp(prefix="rstwall-fixtures-")
        self.surprises: list[str] = []
        self.done: list[Scenario] = []
        self.captures: list[Capture] = []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--client-ns", required=True)
    ap.add_argument("--server-ns", required=True)
    ap.add_argument("--client-if", required=True)
    ap.add_argument("--server-if", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run only these scenarios")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    lab = Lab(args)
    try:
        for ns in (lab.c, lab.s):
            ns.disable_tx_offloads()
        for name, fn in SCENARIOS.items():
            if args.only and name not in args.only:
                continue
            print(f"scenario {name} ...", flush=True)
            fn(lab)
        # Every socket was closed (linger 0 where still connected); anything
        # but TIME_WAIT left would keep the namespace alive after `ip netns del`.
        time.sleep(0.2)
        for ns in (lab.c, lab.s):
            left = [l for l in ss_lines(ns) if not l.startswith("TIME-WAIT")]
            if left:
                raise RuntimeError(f"sockets left in {ns.name}: {left}")
        os.makedirs(lab.out, exist_ok=True)
        for sc in lab.done:
            for ext in (".pcap", ".expect"):
                shutil.move(os.path.join(lab.tmp, sc.name + ext), os.path.join(lab.out, sc.name + ext))
    except BaseException:
        for cap in lab.captures:
            if cap.proc.poll() is None:
                cap.proc.kill()
                cap.proc.wait()
        print(f"make_fixtures: failed; partial captures kept in {lab.tmp}", file=sys.stderr)
        raise
    shutil.rmtree(lab.tmp, ignore_errors=True)
    if lab.surprises:
        print("\nThe kernel did not do what the scenarios predicted (recorded as it happened):")
        for s in lab.surprises:
            print("  - " + s)
    print(f"\nwrote {2 * len(lab.done)} files to {lab.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
