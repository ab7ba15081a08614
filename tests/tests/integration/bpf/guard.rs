//! The RST guard (rstwall_guard.h) against the engine, differentially: each
//! RST goes through the XDP program by `BPF_PROG_TEST_RUN` and is judged by
//! the engine's flow ([`Flow::judge_rst`]) and policy. The property, for
//! every RST: the program drops it only when the engine judges it in the
//! same class and the policy drops that class, so nothing the receiving
//! kernel would accept (refused, abort, teardown) is ever dropped in XDP.
//!
//! The engine sees what userspace would: only the frames the program passed,
//! in order, and its entries are what a worker installs (the engine's
//! export, inserted once). The stale cases let the engine lag behind the
//! program: frames that passed before the entry existed, data, FINs and
//! resets the program saw and the entry was not refreshed for.

use std::net::{IpAddr, SocketAddr};

use etherparse::{PacketBuilder, TcpOptionElement};
use rstwall_bpf::shared::guard::{GuardCfg, GuardEntry, GuardKey, MODE_STALE};
use rstwall_bpf::{action, TestProgram, XdpCounters};
use rstwall_engine::engine::{Engine, EngineConfig};
use rstwall_engine::flow::{FlowKey, Side};
use rstwall_engine::policy::{Action, Mode, PolicyConfig};
use rstwall_engine::wire::{self, LinkType, Parsed};
use rstwall_engine::RstClass;

use super::{inline, ACK, FIN, MAC_A, MAC_B, RST, SYN};

/// The margin for frames that passed before an entry existed. Small, so
/// most of the sequence space is the program's to judge in these tests.
const MARGIN: u32 = 64 * 1024;

/// Client and server ISNs; the client's sits near the wrap of the sequence
/// space so every comparison is modular.
const C_ISN: u32 = 0xffff_f000;
const S_ISN: u32 = 0x1234_5678;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Client,
    Server,
}

/// One TCP segment to build.
#[derive(Clone, Copy, Debug)]
struct Seg {
    from: End,
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    wscale: Option<u8>,
    payload: usize,
}

impl Seg {
    fn new(from: End, flags: u8, seq: u32, ack: u32) -> Seg {
        Seg {
            from,
            flags,
            seq,
            ack,
            window: 64_000,
            wscale: None,
            payload: 0,
        }
    }

    fn payload(mut self, len: usize) -> Seg {
        self.payload = len;
        self
    }

    fn wscale(mut self, shift: u8) -> Seg {
        self.wscale = Some(shift);
        self
    }
}

/// A flow between two endpoints, an engine playing userspace, and the
/// program with the guard on (the default enforce policy).
struct Rig {
    client: SocketAddr,
    server: SocketAddr,
    prog: TestProgram,
    engine: Engine,
    policy: PolicyConfig,
    now_ns: u64,
    /// RSTs the program dropped, and passed.
    dropped: u64,
    passed: u64,
}

/// What happened to one RST.
#[derive(Debug)]
struct Judged {
    /// The class the program dropped it as, if it did.
    xdp: Option<RstClass>,
    /// The engine's class for it.
    engine: RstClass,
}

fn rst_class_of_counters(d: &XdpCounters) -> Option<RstClass> {
    let moved: Vec<RstClass> = [
        (d.guard_in_window, RstClass::InWindow),
        (d.guard_out_of_window, RstClass::OutOfWindow),
        (d.guard_syn_sent_bad_ack, RstClass::SynSentBadAck),
    ]
    .into_iter()
    .filter(|&(n, _)| n != 0)
    .map(|(_, c)| c)
    .collect();
    assert!(
        moved.len() <= 1,
        "one RST moved several guard classes: {d:?}"
    );
    assert_eq!(d.guard_dropped, moved.len() as u64, "{d:?}");
    moved.first().copied()
}

impl Rig {
    fn new(client: &str, server: &str) -> Rig {
        let mut policy = PolicyConfig::default();
        policy.set_mode(Mode::Enforce);
        let engine = Engine::new(&EngineConfig {
            policy: policy.clone(),
            ..EngineConfig::default()
        });
        let prog = inline();
        prog.guard()
            .configure(GuardCfg::for_policy(&policy, MARGIN))
            .expect("switch the guard on");
        Rig {
            client: client.parse().unwrap(),
            server: server.parse().unwrap(),
            prog,
            engine,
            policy,
            now_ns: 1_000_000_000,
            dropped: 0,
            passed: 0,
        }
    }

    fn v4() -> Rig {
        Rig::new("198.18.0.1:40000", "198.18.0.2:443")
    }

    fn v6() -> Rig {
        Rig::new("[2001:2::2]:40000", "[2001:2::1]:443")
    }

    fn frame(&self, s: &Seg) -> Vec<u8> {
        let (src, dst) = match s.from {
            End::Client => (self.client, self.server),
            End::Server => (self.server, self.client),
        };
        let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
        let ip = match (src.ip(), dst.ip()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => eth.ipv4(a.octets(), b.octets(), 64),
            (IpAddr::V6(a), IpAddr::V6(b)) => eth.ipv6(a.octets(), b.octets(), 64),
            _ => unreachable!("one family per rig"),
        };
        let mut b = ip.tcp(src.port(), dst.port(), s.seq, s.window);
        if s.flags & SYN != 0 {
            b = b.syn();
        }
        if s.flags & FIN != 0 {
            b = b.fin();
        }
        if s.flags & RST != 0 {
            b = b.rst();
        }
        if s.flags & ACK != 0 {
            b = b.ack(s.ack);
        }
        if let Some(shift) = s.wscale {
            b = b
                .options(&[TcpOptionElement::WindowScale(shift)])
                .expect("window scale option");
        }
        let payload = vec![0x5a; s.payload];
        let mut out = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut out, &payload).expect("build frame");
        out
    }

    /// The frame through the program: the RST class it dropped it as, or
    /// `None` when it went on (to the peer port: no socket in these tests).
    fn xdp(&mut self, frame: &[u8]) -> Option<RstClass> {
        let before = self.prog.counters().unwrap();
        let verdict = self.prog.run(frame, 0).unwrap();
        let d = self.prog.counters().unwrap().since(&before);
        let class = rst_class_of_counters(&d);
        match class {
            Some(_) => {
                assert_eq!(verdict, action::DROP, "a guard drop is XDP_DROP");
                self.dropped += 1;
            }
            None => {
                assert_eq!(
                    (action::name(verdict), d.bypassed),
                    ("XDP_REDIRECT", 1),
                    "passed on: {d:?}"
                );
                self.passed += 1;
            }
        }
        class
    }

    /// What userspace does with a frame that reached it.
    fn engine(&mut self, frame: &[u8]) {
        self.now_ns += 1_000_000;
        self.engine.process(LinkType::Ethernet, frame, self.now_ns);
    }

    /// A frame through the program, then (if it passed) the engine.
    fn both(&mut self, s: &Seg) -> Option<RstClass> {
        let f = self.frame(s);
        let dropped = self.xdp(&f);
        if dropped.is_none() {
            self.engine(&f);
        }
        dropped
    }

    fn key_and_side(&self, frame: &[u8]) -> (FlowKey, Side) {
        match wire::parse(LinkType::Ethernet, frame) {
            Ok(Parsed::Tcp(seg)) => FlowKey::of(&seg),
            other => panic!("not TCP: {other:?}"),
        }
    }

    fn flow_key(&self) -> FlowKey {
        self.key_and_side(&self.frame(&Seg::new(End::Client, ACK, 0, 0)))
            .0
    }

    /// The engine's class for a RST, judged now without changing the flow.
    fn engine_class(&self, frame: &[u8]) -> RstClass {
        let Ok(Parsed::Tcp(seg)) = wire::parse(LinkType::Ethernet, frame) else {
            panic!("not TCP");
        };
        let (key, from) = FlowKey::of(&seg);
        self.engine.flows().judge_rst(&key, from, &seg)
    }

    /// Install the engine's export, as a worker does: `true` when the flow
    /// had one.
    fn install(&self) -> bool {
        let key = self.flow_key();
        let Some(guard) = self.engine.flows().rst_guard(&key) else {
            return false;
        };
        assert!(self.prog.guard().insert(&key, &guard).unwrap());
        true
    }

    fn entry(&self) -> Option<GuardEntry> {
        self.prog.guard().get(&self.flow_key()).unwrap()
    }

    /// Whether the policy drops a class (no lists in these tests).
    fn policy_drops(&self, class: RstClass) -> bool {
        self.policy.mode() == Mode::Enforce && self.policy.action(class) == Action::Drop
    }

    /// One RST through the program and, judged at that moment, the engine;
    /// the differential property checked. The engine is not changed.
    fn probe(&mut self, s: &Seg) -> Judged {
        let f = self.frame(s);
        let xdp = self.xdp(&f);
        let engine = self.engine_class(&f);
        check(self, s, xdp, engine);
        Judged { xdp, engine }
    }

    /// The handshake (window scale 7 both ways) and `data` bytes each way.
    fn established(&mut self, data: usize) -> (u32, u32) {
        self.both(&Seg::new(End::Client, SYN, C_ISN, 0).wscale(7));
        self.both(&Seg::new(End::Server, SYN | ACK, S_ISN, C_ISN.wrapping_add(1)).wscale(7));
        let (mut c, mut s) = (C_ISN.wrapping_add(1), S_ISN.wrapping_add(1));
        self.both(&Seg::new(End::Client, ACK, c, s));
        self.both(&Seg::new(End::Client, ACK, c, s).payload(data));
        c = c.wrapping_add(data as u32);
        self.both(&Seg::new(End::Server, ACK, s, c).payload(data));
        s = s.wrapping_add(data as u32);
        self.both(&Seg::new(End::Client, ACK, c, s));
        (c, s)
    }
}

/// The differential property for one RST.
#[track_caller]
fn check(rig: &Rig, s: &Seg, xdp: Option<RstClass>, engine: RstClass) {
    if let Some(class) = xdp {
        assert_eq!(
            class, engine,
            "the program dropped {s:?} as {class}, the engine judges it {engine}"
        );
        assert!(
            rig.policy_drops(engine),
            "the program dropped {s:?} ({engine}), which the policy passes"
        );
        assert!(
            !matches!(
                engine,
                RstClass::Refused | RstClass::Abort | RstClass::Teardown
            ),
            "the program dropped {s:?}, a RST the kernel accepts ({engine})"
        );
    }
}

/// Sequence numbers to probe around `rcv_nxt` and a window of `wnd`: every
/// edge the judgment has, and a seeded spread over the whole space.
fn probe_seqs(rcv_nxt: u32, wnd: u32, seed: u64) -> Vec<u32> {
    let mut out = Vec::new();
    for base in [
        rcv_nxt,
        rcv_nxt.wrapping_add(wnd),
        rcv_nxt.wrapping_add(MARGIN),
    ] {
        for d in [-2i64, -1, 0, 1, 2] {
            out.push(base.wrapping_add(d as u32));
        }
    }
    for d in [
        wnd / 2,
        MARGIN + 1,
        1 << 20,
        1 << 30,
        0x8000_0000,
        0xc000_0000,
    ] {
        out.push(rcv_nxt.wrapping_add(d));
        out.push(rcv_nxt.wrapping_sub(d));
    }
    let mut rng = rstwall_netlab::rng::seeded(seed);
    out.extend((0..600).map(|_| rng.u32(..)));
    out
}

/// Every RST a probe makes of one sequence number: bare, with ACK, with a
/// payload, and with SYN or FIN (invalid_flags, never the guard's).
fn rst_variants(from: End, seq: u32, ack: u32) -> [Seg; 5] {
    [
        Seg::new(from, RST, seq, 0),
        Seg::new(from, RST | ACK, seq, ack),
        Seg::new(from, RST | ACK, seq, ack).payload(40),
        Seg::new(from, RST | FIN | ACK, seq, ack),
        Seg::new(from, RST | SYN, seq, 0),
    ]
}

/// A synchronized flow in both families: every RST from either side,
/// exact (abort), in window, out of window, invalid flags; the program
/// drops exactly the spoofed ones outside the band around RCV.NXT, in the
/// engine's class, and counts them.
#[test]
fn guard_judges_synchronized_flows_as_the_engine_does() {
    for mut rig in [Rig::v4(), Rig::v6()] {
        let (c_next, s_next) = rig.established(1000);
        assert!(rig.install(), "an established flow has an export");
        let wnd = 64_000u32 << 7;
        let before = rig.prog.counters().unwrap();
        let mut seen = std::collections::BTreeMap::<(RstClass, bool), u64>::new();
        for (from, rcv_nxt, ack) in [(End::Client, c_next, s_next), (End::Server, s_next, c_next)] {
            for seq in probe_seqs(rcv_nxt, wnd, u64::from(rcv_nxt)) {
                for s in rst_variants(from, seq, ack) {
                    let j = rig.probe(&s);
                    *seen.entry((j.engine, j.xdp.is_some())).or_default() += 1;
                    // Outside the band every spoofed RST dies in XDP.
                    let off = seq.wrapping_sub(rcv_nxt.wrapping_sub(1));
                    let in_band = off <= MARGIN + 1;
                    if s.flags & (SYN | FIN) == 0 && !in_band {
                        assert!(
                            j.xdp.is_some(),
                            "{s:?} ({}) outside the band passed",
                            j.engine
                        );
                    }
                }
            }
        }
        let d = rig.prog.counters().unwrap().since(&before);
        assert_eq!(d.guard_dropped, rig.dropped);
        assert_eq!(
            d.guard_in_window + d.guard_out_of_window + d.guard_syn_sent_bad_ack,
            rig.dropped
        );
        // Every class of a synchronized flow occurred, and the accepted one
        // always passed.
        for class in [
            RstClass::Abort,
            RstClass::InWindow,
            RstClass::OutOfWindow,
            RstClass::InvalidFlags,
        ] {
            assert!(
                seen.keys().any(|&(c, _)| c == class),
                "no {class} among the probes: {seen:?}"
            );
        }
        assert!(
            seen.contains_key(&(RstClass::OutOfWindow, true)),
            "{seen:?}"
        );
        assert!(seen.contains_key(&(RstClass::InWindow, true)), "{seen:?}");
        assert!(!seen.contains_key(&(RstClass::Abort, true)), "{seen:?}");
        assert!(
            !seen.contains_key(&(RstClass::InvalidFlags, true)),
            "{seen:?}"
        );

        // The legitimate abort, after all that: passes, and the engine
        // accepts it.
        let abort = Seg::new(End::Server, RST | ACK, s_next, c_next);
        assert_eq!(rig.both(&abort), None);
        let f = rig.frame(&Seg::new(End::Server, RST, s_next, 0));
        assert_eq!(
            rig.engine_class(&f),
            RstClass::NoFlow,
            "the abort reset the client"
        );
    }
}

/// SYN-SENT: a RST to the connecting side is dropped unless its ACK acks
/// the SYN (refused, which passes); RSTs to the listener are userspace's.
#[test]
fn guard_judges_syn_sent_as_the_engine_does() {
    let mut rig = Rig::v4();
    rig.both(&Seg::new(End::Client, SYN, C_ISN, 0).wscale(7));
    assert!(rig.install(), "a SYN-SENT flow has an export");
    let mut classes = std::collections::BTreeSet::new();
    let mut rng = rstwall_netlab::rng::seeded(7);
    let mut acks: Vec<u32> = (0..200).map(|_| rng.u32(..)).collect();
    acks.extend([
        C_ISN,
        C_ISN.wrapping_add(1),
        C_ISN.wrapping_add(2),
        C_ISN.wrapping_sub(1),
    ]);
    for ack in acks {
        for s in [
            Seg::new(End::Server, RST | ACK, rng.u32(..), ack),
            Seg::new(End::Server, RST, rng.u32(..), ack),
            Seg::new(End::Client, RST | ACK, rng.u32(..), ack),
        ] {
            let j = rig.probe(&s);
            classes.insert((j.engine, j.xdp.is_some()));
            if s.from == End::Server && j.engine == RstClass::SynSentBadAck {
                assert_eq!(j.xdp, Some(RstClass::SynSentBadAck), "{s:?}");
            }
            if s.from == End::Client {
                assert_eq!(j.xdp, None, "RSTs to the listener pass: {s:?}");
            }
        }
    }
    assert!(classes.contains(&(RstClass::Refused, false)), "{classes:?}");
    assert!(
        classes.contains(&(RstClass::SynSentBadAck, true)),
        "{classes:?}"
    );

    // The SYN-ACK makes the entry stale; the refusal that answers it (or
    // any RST to the client) then goes to userspace.
    let synack = Seg::new(End::Server, SYN | ACK, S_ISN, C_ISN.wrapping_add(1)).wscale(7);
    let f = rig.frame(&synack);
    assert_eq!(rig.xdp(&f), None);
    assert_eq!(rig.entry().map(|e| e.mode), Some(MODE_STALE));
    for ack in [C_ISN, C_ISN.wrapping_add(5)] {
        let s = Seg::new(End::Server, RST | ACK, S_ISN.wrapping_add(1), ack);
        let f = rig.frame(&s);
        assert_eq!(rig.xdp(&f), None, "a stale entry drops nothing: {s:?}");
    }
}

/// Stale entries: the program keeps up with data, frames that passed
/// before the entry existed are covered by the margin, and a FIN leaves
/// the entry dropping nothing — so a RST the kernel accepts passes in each
/// case, and every drop matches the engine once it has caught up.
#[test]
fn stale_entries_only_ever_pass() {
    // 1. Data the program saw and userspace has not processed yet: the
    //    entry follows it, far beyond the margin.
    let mut rig = Rig::v4();
    let (mut c, s) = rig.established(100);
    assert!(rig.install());
    let mut lagging = Vec::new();
    for _ in 0..100 {
        let d = rig.frame(&Seg::new(End::Client, ACK, c, s).payload(1400));
        assert_eq!(rig.xdp(&d), None);
        lagging.push(d);
        c = c.wrapping_add(1400);
    }
    // Beyond the margin: only the program's following covers it.
    const { assert!(100 * 1400 > 2 * MARGIN) };
    let legit = Seg::new(End::Client, RST | ACK, c, s);
    let probes: Vec<(Seg, Option<RstClass>)> = probe_seqs(c, 64_000 << 7, 11)
        .into_iter()
        .chain([c])
        .map(|seq| {
            let p = Seg::new(End::Client, RST | ACK, seq, s);
            let f = rig.frame(&p);
            (p, rig.xdp(&f))
        })
        .collect();
    // Userspace catches up; then each probe is judged as it would be there.
    for d in &lagging {
        rig.engine(d);
    }
    for (p, xdp) in &probes {
        let engine = rig.engine_class(&rig.frame(p));
        check(&rig, p, *xdp, engine);
    }
    assert_eq!(rig.engine_class(&rig.frame(&legit)), RstClass::Abort);
    assert!(
        probes.iter().any(|(_, x)| x.is_some()),
        "the guard dropped none"
    );

    // 2. Frames that passed the program before the entry was inserted,
    //    from an engine that has not seen them: the margin covers them.
    let mut rig = Rig::v4();
    let (mut c, s) = rig.established(100);
    let mut unseen = Vec::new();
    while c.wrapping_sub(C_ISN) < MARGIN - 1400 {
        let d = rig.frame(&Seg::new(End::Client, ACK, c, s).payload(1400));
        assert_eq!(rig.xdp(&d), None);
        unseen.push(d);
        c = c.wrapping_add(1400);
    }
    assert!(rig.install(), "inserted from the engine's older state");
    let legit = Seg::new(End::Client, RST | ACK, c, s);
    let f = rig.frame(&legit);
    assert_eq!(rig.xdp(&f), None, "the abort at the new RCV.NXT passes");
    for d in &unseen {
        rig.engine(d);
    }
    assert_eq!(rig.engine_class(&f), RstClass::Abort);

    // 3. A FIN: the entry goes stale and drops nothing, so RCV.NXT-1 in
    //    CLOSE-WAIT (teardown) and the orphaned FIN-WAIT-2's in-window
    //    RSTs pass, as does everything else until userspace replaces it.
    for fin_from in [End::Client, End::Server] {
        let mut rig = Rig::v6();
        let (c, s) = rig.established(500);
        assert!(rig.install());
        let before = rig.prog.counters().unwrap();
        let (fin_seq, fin_ack) = match fin_from {
            End::Client => (c, s),
            End::Server => (s, c),
        };
        let fin = rig.frame(&Seg::new(fin_from, FIN | ACK, fin_seq, fin_ack));
        assert_eq!(rig.xdp(&fin), None);
        assert_eq!(rig.entry().map(|e| e.is_stale()), Some(true));
        assert_eq!(rig.prog.counters().unwrap().since(&before).guard_stale, 1);
        let peer = match fin_from {
            End::Client => End::Server,
            End::Server => End::Client,
        };
        let mut probes = Vec::new();
        for seq in probe_seqs(fin_seq, 64_000 << 7, 3) {
            let p = Seg::new(fin_from, RST | ACK, seq, fin_ack);
            let q = Seg::new(peer, RST | ACK, seq, fin_seq);
            for p in [p, q] {
                let f = rig.frame(&p);
                assert_eq!(rig.xdp(&f), None, "a stale entry drops nothing: {p:?}");
                probes.push(p);
            }
        }
        rig.engine(&fin);
        assert_eq!(rig.flow_guard(), None, "a closing flow has no export");
        // Among what passed: the RST the closing states accept.
        let minus_one = Seg::new(fin_from, RST | ACK, fin_seq, fin_ack);
        let f = rig.frame(&minus_one);
        assert_eq!(rig.engine_class(&f), RstClass::Teardown);
    }

    // 4. A reset the program passed and userspace accepted: the worker
    //    removes the entry (the export is gone), and what follows passes.
    let mut rig = Rig::v4();
    let (c, s) = rig.established(10);
    assert!(rig.install());
    assert_eq!(rig.both(&Seg::new(End::Client, RST | ACK, c, s)), None);
    assert_eq!(rig.flow_guard(), None, "a reset flow has no export");
    assert!(rig.prog.guard().remove(&rig.flow_key()).unwrap());
    for seq in probe_seqs(c, 64_000 << 7, 5) {
        let j = rig.probe(&Seg::new(End::Client, RST | ACK, seq, s));
        assert_eq!(j.xdp, None);
    }
}

/// No entry, or the guard switched off: nothing is judged in XDP; no_flow
/// RSTs always go to userspace. And the entry's key is the engine's flow
/// whichever side sends.
#[test]
fn without_an_entry_or_switched_off_nothing_is_dropped() {
    let mut rig = Rig::v4();
    let (c, s) = rig.established(10);
    for seq in probe_seqs(c, 1 << 20, 9).into_iter().take(50) {
        let j = rig.probe(&Seg::new(End::Client, RST | ACK, seq, s));
        assert_eq!(j.xdp, None, "no entry yet");
    }
    assert!(rig.install());
    let key = rig.flow_key();
    assert_eq!(
        GuardKey::new(&key),
        GuardKey::from_endpoints(rig.server.ip(), 443, rig.client.ip(), 40000)
    );
    let spoofed = rig.frame(&Seg::new(
        End::Client,
        RST | ACK,
        c.wrapping_add(1 << 30),
        s,
    ));
    assert_eq!(rig.xdp(&spoofed), Some(RstClass::OutOfWindow));
    rig.prog.guard().configure(GuardCfg::OFF).unwrap();
    assert_eq!(rig.xdp(&spoofed), None, "switched off");
    let mut monitor = PolicyConfig::default();
    monitor.set_mode(Mode::Monitor);
    rig.prog
        .guard()
        .configure(GuardCfg::for_policy(&monitor, MARGIN))
        .unwrap();
    assert_eq!(rig.xdp(&spoofed), None, "monitor drops nothing");
    // A flow the engine never saw (no_flow): no entry, passes.
    let other = Rig::new("198.18.0.9:1234", "198.18.0.2:443");
    let f = other.frame(&Seg::new(End::Client, RST, 5, 0));
    assert_eq!(rig.xdp(&f), None);
    // Entries never overwrite one another.
    let guard = rig.flow_guard().expect("export");
    assert!(!rig.prog.guard().insert(&key, &guard).unwrap());
}

impl Rig {
    fn flow_guard(&self) -> Option<rstwall_engine::flow::RstGuard> {
        self.engine.flows().rst_guard(&self.flow_key())
    }
}

/// The two programs of an inline pair share one guard map: each direction
/// arrives on its own port, and the entry follows both (the server's ACKs
/// through B move the ack the client's RSTs through A are judged by).
#[test]
fn the_ports_of_a_pair_share_one_entry() {
    let mut rig = Rig::v4();
    let (c, s) = rig.established(100);
    assert!(rig.install());
    let b = TestProgram::load_sharing(
        rstwall_bpf::PortRole::Inline { peer_ifindex: 1 },
        Some(rig.prog.guard()),
    )
    .expect("load the second port's program");
    assert_eq!(
        b.guard().map_id().unwrap(),
        rig.prog.guard().map_id().unwrap()
    );
    b.guard()
        .configure(GuardCfg::for_policy(&rig.policy, MARGIN))
        .unwrap();
    // Client data through A, the server's ACK of it through B.
    let data = rig.frame(&Seg::new(End::Client, ACK, c, s).payload(1000));
    assert_eq!(rig.xdp(&data), None);
    let c2 = c.wrapping_add(1000);
    let ack = rig.frame(&Seg::new(End::Server, ACK, s, c2));
    assert_eq!(b.run(&ack, 0).unwrap(), action::REDIRECT);
    let e = rig.entry().expect("the entry");
    // RSTs to the server (hi: 198.18.0.2) are half[1].
    assert_eq!((e.half[1].peer_end, e.half[1].ack), (c2, c2));
    // A spoofed RST through B is judged by the same entry.
    let spoofed = rig.frame(&Seg::new(End::Client, RST, c2.wrapping_add(1 << 30), 0));
    assert_eq!(b.run(&spoofed, 0).unwrap(), action::DROP);
    assert_eq!(b.counters().unwrap().guard_out_of_window, 1);
}
