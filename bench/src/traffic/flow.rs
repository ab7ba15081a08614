//! How each flow behaves: its hosts and ports, its scripted frames in a
//! pass (a conversation, then an abort, a FIN exchange, a teardown, a
//! refused SYN, spoofed RSTs), and the interleaving of every flow's frames
//! in ring order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use rstwall_engine::wire::TcpFlags;
use rstwall_engine::RstClass;
use rstwall_netlab::Rng;

use super::frames::{Frames, SLOT};
use super::label::Label;
use crate::frame::{self, TcpRepr};

/// Distinct client hosts; flow `n` is client host `n % CLIENT_HOSTS` with
/// source port `32768 + n / CLIENT_HOSTS`, so every flow has its own 4-tuple.
pub const CLIENT_HOSTS: u32 = 50_000;
/// Distinct server hosts.
pub const SERVER_HOSTS: u32 = 1024;
/// Distinct sources of RSTs for flows that do not exist.
pub const SPOOFER_HOSTS: u32 = 4096;
const FIRST_CLIENT_PORT: u32 = 32_768;
pub(super) const MAX_FLOWS: u64 = CLIENT_HOSTS as u64 * (65_536 - FIRST_CLIENT_PORT as u64);

/// Service ports and their weights (percent).
const SERVICES: [(u16, u64); 6] = [
    (443, 55),
    (80, 25),
    (22, 5),
    (8080, 5),
    (5432, 5),
    (6379, 5),
];

/// Windows as Linux sends them: SYN, SYN-ACK, then a scaled 64 KiB.
const SYN_WINDOW: u16 = 64_240;
const SYNACK_WINDOW: u16 = 65_160;
const WINDOW: u16 = 502;
const DATA_LEN: u8 = 6;
/// Distance of a wrongly acknowledging SYN answer from the right ack.
const BAD_ACK_OFFSET: u32 = 1000;
const _: () = assert!(frame::frame_len(true, true, DATA_LEN as usize) <= 2 * SLOT);

/// The IPv4 address of client host `h`: 198.18.0.0/16.
pub fn client_v4(h: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + h)
}

fn server_v4(h: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + h)
}

fn spoofer_v4(h: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 128, 0)) + h)
}

/// 2001:2:0:`subnet`::`h`.
fn v6(subnet: u16, h: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 2, 0, subnet, 0, 0, (h >> 16) as u16, h as u16)
}

/// Which end of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    Client = 0,
    Server = 1,
}

impl End {
    fn peer(self) -> End {
        match self {
            End::Client => End::Server,
            End::Server => End::Client,
        }
    }
}

/// What a flow does in every pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Plain,
    Abort,
    Fin,
    Teardown,
    Refused,
    BadAck,
}

/// One scripted frame of a flow.
#[derive(Clone, Copy, Debug)]
pub(super) enum Step {
    Syn,
    SynAck,
    HandshakeAck,
    Data(End),
    Ack(End),
    Fin(End),
    /// RST-ACK at exactly the sender's next sequence number.
    ExactRst(End, RstClass),
    /// RST-ACK from the server answering the client's SYN: acknowledging it
    /// (`refused`) or not (`syn_sent_bad_ack`).
    SynRst {
        ack_ok: bool,
    },
    /// A spoofed RST of class `InWindow`, `OutOfWindow` or `InvalidFlags`
    /// that pretends to come from the given end.
    Spoof(End, RstClass),
}

pub(super) struct Flow {
    ends: [SocketAddr; 2],
    isn: [u32; 2],
    /// Next sequence number each end sends.
    next: [u32; 2],
    pub(super) kind: Kind,
}

impl Flow {
    pub(super) fn new(n: u32, ipv6: bool, kind: Kind, rng: &mut Rng) -> Flow {
        let client_host = n % CLIENT_HOSTS;
        let client_port = (FIRST_CLIENT_PORT + n / CLIENT_HOSTS) as u16;
        let server_host = rng.u32(0..SERVER_HOSTS);
        let service = pick_service(rng);
        let (client, server) = if ipv6 {
            (
                IpAddr::V6(v6(0xc, client_host)),
                IpAddr::V6(v6(0x5, server_host)),
            )
        } else {
            (
                IpAddr::V4(client_v4(client_host)),
                IpAddr::V4(server_v4(server_host)),
            )
        };
        Flow {
            ends: [
                SocketAddr::new(client, client_port),
                SocketAddr::new(server, service),
            ],
            isn: [rng.u32(..), rng.u32(..)],
            next: [0, 0],
            kind,
        }
    }

    /// A segment from `from` at its next sequence number, acknowledging
    /// everything the peer sent.
    fn segment(&self, from: End, flags: u16, payload_len: u8) -> TcpRepr {
        let to = from.peer();
        TcpRepr {
            seq: self.next[from as usize],
            ack: self.next[to as usize],
            window: WINDOW,
            payload_len: payload_len.into(),
            ..TcpRepr::new(self.ends[from as usize], self.ends[to as usize], flags)
        }
    }

    /// The frame for `step`, advancing the flow's sequence numbers.
    fn emit(&mut self, step: Step, rng: &mut Rng) -> (TcpRepr, Label) {
        const C: usize = End::Client as usize;
        const S: usize = End::Server as usize;
        match step {
            Step::Syn => {
                self.next = [self.isn[C].wrapping_add(1), self.isn[S]];
                let repr = TcpRepr {
                    seq: self.isn[C],
                    ack: 0,
                    window: SYN_WINDOW,
                    syn_options: true,
                    ..self.segment(End::Client, TcpFlags::SYN, 0)
                };
                (repr, Label::Syn)
            }
            Step::SynAck => {
                self.next[S] = self.isn[S].wrapping_add(1);
                let repr = TcpRepr {
                    seq: self.isn[S],
                    window: SYNACK_WINDOW,
                    syn_options: true,
                    ..self.segment(End::Server, TcpFlags::SYN | TcpFlags::ACK, 0)
                };
                (repr, Label::SynAck)
            }
            Step::HandshakeAck => (self.segment(End::Client, TcpFlags::ACK, 0), Label::Ack),
            Step::Data(e) => {
                let repr = self.segment(e, TcpFlags::PSH | TcpFlags::ACK, DATA_LEN);
                self.next[e as usize] = self.next[e as usize].wrapping_add(DATA_LEN.into());
                (repr, Label::Data)
            }
            Step::Ack(e) => (self.segment(e, TcpFlags::ACK, 0), Label::Ack),
            Step::Fin(e) => {
                let repr = self.segment(e, TcpFlags::FIN | TcpFlags::ACK, 0);
                self.next[e as usize] = self.next[e as usize].wrapping_add(1);
                (repr, Label::Fin)
            }
            Step::ExactRst(e, class) => {
                let repr = TcpRepr {
                    window: 0,
                    ..self.segment(e, TcpFlags::RST | TcpFlags::ACK, 0)
                };
                (repr, Label::Rst(class))
            }
            Step::SynRst { ack_ok } => {
                let ack = self.isn[C].wrapping_add(1);
                let (ack, class) = if ack_ok {
                    (ack, RstClass::Refused)
                } else {
                    (ack.wrapping_add(BAD_ACK_OFFSET), RstClass::SynSentBadAck)
                };
                let repr = TcpRepr {
                    seq: 0,
                    ack,
                    window: 0,
                    ..self.segment(End::Server, TcpFlags::RST | TcpFlags::ACK, 0)
                };
                (repr, Label::Rst(class))
            }
            Step::Spoof(e, class) => {
                let next = self.next[e as usize];
                // In-window offsets stay far from RCV.NXT (a pass moves it
                // by tens of bytes) and inside the 64 KiB window.
                let (seq, flags) = match class {
                    RstClass::InWindow => (next.wrapping_add(rng.u32(1000..21_000)), TcpFlags::RST),
                    RstClass::OutOfWindow => (
                        next.wrapping_add(rng.u32(0x4000_0000..0x5000_0000)),
                        TcpFlags::RST,
                    ),
                    _ => (next, TcpFlags::RST | TcpFlags::SYN),
                };
                let repr = TcpRepr {
                    seq,
                    ack: 0,
                    window: 0,
                    ..self.segment(e, flags, 0)
                };
                (repr, Label::Rst(class))
            }
        }
    }

    /// How the flow first appears: the handshake, or a refused SYN.
    pub(super) fn opening(&self) -> &'static [Step] {
        match self.kind {
            Kind::Refused => &[Step::Syn, Step::SynRst { ack_ok: true }],
            Kind::BadAck => &[Step::Syn, Step::SynRst { ack_ok: false }],
            _ => &[Step::Syn, Step::SynAck, Step::HandshakeAck],
        }
    }

    /// One pass of this flow: about `len` frames (plus `spoofs`).
    pub(super) fn script(&self, len: usize, spoofs: &[Step], rng: &mut Rng, out: &mut Vec<Step>) {
        let start = out.len();
        let reopen = [Step::Syn, Step::SynAck, Step::HandshakeAck];
        let either = |rng: &mut Rng| {
            if rng.bool() {
                End::Client
            } else {
                End::Server
            }
        };
        let converse = |n: usize, rng: &mut Rng, out: &mut Vec<Step>| {
            for _ in 0..n.max(1) {
                out.push(match rng.u32(0..10) {
                    0..4 => Step::Data(End::Client),
                    4..8 => Step::Data(End::Server),
                    _ => Step::Ack(either(rng)),
                });
            }
        };
        // Spread lengths (mean `len`) so flows do not move in lockstep.
        let len = (len - len / 2) + rng.usize(0..=2 * (len / 2));
        match self.kind {
            Kind::Plain => {
                converse(len, rng, out);
                for &s in spoofs {
                    let at = rng.usize(start..=out.len());
                    out.insert(at, s);
                }
            }
            Kind::Abort => {
                converse(len.saturating_sub(4), rng, out);
                out.push(Step::ExactRst(either(rng), RstClass::Abort));
                out.extend(reopen);
            }
            Kind::Fin => {
                converse(len.saturating_sub(7), rng, out);
                let a = either(rng);
                let b = a.peer();
                out.extend([Step::Fin(a), Step::Ack(b), Step::Fin(b), Step::Ack(a)]);
                out.extend(reopen);
            }
            Kind::Teardown => {
                converse(len.saturating_sub(6), rng, out);
                let a = either(rng);
                let b = a.peer();
                out.extend([
                    Step::Fin(a),
                    Step::Ack(b),
                    Step::ExactRst(b, RstClass::Teardown),
                ]);
                out.extend(reopen);
            }
            Kind::Refused | Kind::BadAck => out.extend_from_slice(self.opening()),
        }
    }
}

fn pick_service(rng: &mut Rng) -> u16 {
    let mut r = rng.u64(0..100);
    for (port, weight) in SERVICES {
        if r < weight {
            return port;
        }
        r -= weight;
    }
    SERVICES[0].0
}

/// A RST for a 4-tuple nobody tracks: from the spoofer range to a server.
fn no_flow_rst(ipv6: bool, rng: &mut Rng) -> TcpRepr {
    let spoofer = rng.u32(0..SPOOFER_HOSTS);
    let server = rng.u32(0..SERVER_HOSTS);
    let (src, dst) = if ipv6 {
        (IpAddr::V6(v6(0xbad, spoofer)), IpAddr::V6(v6(0x5, server)))
    } else {
        (
            IpAddr::V4(spoofer_v4(spoofer)),
            IpAddr::V4(server_v4(server)),
        )
    };
    let flags = if rng.bool() {
        TcpFlags::RST
    } else {
        TcpFlags::RST | TcpFlags::ACK
    };
    TcpRepr {
        seq: rng.u32(..),
        ack: rng.u32(..),
        ..TcpRepr::new(
            SocketAddr::new(src, rng.u16(1024..65_024)),
            SocketAddr::new(dst, pick_service(rng)),
            flags,
        )
    }
}

/// Flows' scripts, flat: flow `i` owns `steps[spans[i]]`.
pub(super) struct Scripts {
    steps: Vec<Step>,
    spans: Vec<Range<usize>>,
}

impl Scripts {
    pub(super) fn build(
        flows: &[Flow],
        mut script: impl FnMut(usize, &Flow, &mut Vec<Step>),
    ) -> Scripts {
        let mut steps = Vec::new();
        let mut spans = Vec::with_capacity(flows.len());
        for (i, f) in flows.iter().enumerate() {
            let start = steps.len();
            script(i, f, &mut steps);
            spans.push(start..steps.len());
        }
        Scripts { steps, spans }
    }
}

const NO_FLOW_V4: u32 = u32::MAX;
const NO_FLOW_V6: u32 = u32::MAX - 1;

/// Emit every flow's script, flows interleaved in a random order that keeps
/// each flow's own frames in sequence, plus `no_flow` RSTs scattered through.
pub(super) fn interleave(
    flows: &mut [Flow],
    scripts: &Scripts,
    no_flow: usize,
    ipv6_per_mille: u32,
    rng: &mut Rng,
) -> Frames {
    let mut order: Vec<u32> = Vec::with_capacity(scripts.steps.len() + no_flow);
    let mut slots = 0;
    for (i, span) in scripts.spans.iter().enumerate() {
        order.extend(std::iter::repeat_n(i as u32, span.len()));
        let per_frame = if flows[i].ends[0].is_ipv6() { 2 } else { 1 };
        slots += per_frame * span.len();
    }
    for _ in 0..no_flow {
        order.push(if rng.u32(0..1000) < ipv6_per_mille {
            NO_FLOW_V6
        } else {
            NO_FLOW_V4
        });
    }
    slots += 2 * no_flow;
    // Fisher-Yates.
    for i in (1..order.len()).rev() {
        let j = rng.usize(0..=i);
        order.swap(i, j);
    }
    let mut cursor: Vec<usize> = scripts.spans.iter().map(|s| s.start).collect();
    let mut frames = Frames::with_slots(order.len(), slots);
    for &i in &order {
        if i == NO_FLOW_V4 || i == NO_FLOW_V6 {
            let repr = no_flow_rst(i == NO_FLOW_V6, rng);
            frames.push(&repr, Label::Rst(RstClass::NoFlow));
            continue;
        }
        let i = i as usize;
        let step = scripts.steps[cursor[i]];
        cursor[i] += 1;
        let (repr, label) = flows[i].emit(step, rng);
        frames.push(&repr, label);
    }
    frames
}
