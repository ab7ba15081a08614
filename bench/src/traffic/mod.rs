//! Synthetic TCP traffic over many concurrent flows, pre-built as frames.
//!
//! [`Traffic::generate`] gives two frame sets:
//!
//! * `handshakes` — every flow's opening (SYN, SYN-ACK, ACK; or SYN and the
//!   RST refusing it), flows interleaved. Run it once to fill a flow table.
//! * `steady` — one *pass* of steady-state traffic: mostly data and ACK
//!   segments with correctly advancing sequence and acknowledgment numbers,
//!   a share of flows that end (exact RST, FIN exchange, FIN then RST) and
//!   open again with the same handshake, SYNs refused by closed ports, and
//!   spoofed RSTs (in window, out of window, RST+SYN, and RSTs for flows that
//!   do not exist).
//!
//! A pass can be replayed any number of times and every frame keeps its
//! meaning: flows that end in a pass open again before it is over, with the
//! handshake they started with, so the next pass finds them as the first
//! did; the others replay old segments, which a tracker takes as
//! retransmissions without changing state. Each frame carries a [`Label`]
//! saying what it is — for RSTs, the [`RstClass`] the receiving kernel gives
//! it — and the tests check the engine agrees on every frame of every pass.
//!
//! Every frame's source MAC is a [`marker_mac`] carrying its label's
//! [`Label::code`], so that a sink can count what arrives by kind.
//!
//! Frames of one set sit in one contiguous, 64-byte-aligned buffer in the
//! order a receive ring would hold them: flows interleave pseudo-randomly,
//! so consecutive frames hit unrelated flow-table entries, as on a real link
//! with this many concurrent flows.
//!
//! Addresses come only from the benchmarking ranges: IPv4 198.18.0.0/15
//! (RFC 2544) and IPv6 2001:2::/48 (RFC 5180).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;

use rstwall_engine::wire::TcpFlags;
use rstwall_engine::RstClass;

use crate::frame::{self, marker_mac, TcpRepr};

/// Distinct client hosts; flow `n` is client host `n % CLIENT_HOSTS` with
/// source port `32768 + n / CLIENT_HOSTS`, so every flow has its own 4-tuple.
pub const CLIENT_HOSTS: u32 = 50_000;
/// Distinct server hosts.
pub const SERVER_HOSTS: u32 = 1024;
/// Distinct sources of RSTs for flows that do not exist.
pub const SPOOFER_HOSTS: u32 = 4096;
const FIRST_CLIENT_PORT: u32 = 32_768;
const MAX_FLOWS: u64 = CLIENT_HOSTS as u64 * (65_536 - FIRST_CLIENT_PORT as u64);

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

/// Slot size of the frame buffer: a cache line per IPv4 frame, two per
/// IPv6 frame.
const SLOT: usize = 64;
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

/// What share of the traffic does what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    /// Per mille of flows (and of RSTs for absent flows) over IPv6.
    pub ipv6: u32,
    /// Per mille of flows that, in every pass, exchange data, end with an
    /// exact RST from either end (`abort`) and open again.
    pub abort: u32,
    /// ... that end with FIN, ACK, FIN, ACK and open again.
    pub fin: u32,
    /// ... that end with a FIN from one end and an exact RST from the other
    /// (`teardown`) and open again.
    pub teardown: u32,
    /// ... whose SYN is answered by a RST-ACK acknowledging it (`refused`).
    pub refused: u32,
    /// ... whose SYN is answered by a RST-ACK with a wrong ack
    /// (`syn_sent_bad_ack`).
    pub bad_ack: u32,
    /// Per mille of frames: spoofed RSTs inside the receiver's window.
    pub in_window: u32,
    /// ... far outside it.
    pub out_of_window: u32,
    /// ... with SYN set too.
    pub invalid_flags: u32,
    /// ... for 4-tuples nobody tracks.
    pub no_flow: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            ipv6: 50,
            abort: 40,
            fin: 60,
            teardown: 15,
            refused: 20,
            bad_ack: 5,
            in_window: 5,
            out_of_window: 5,
            invalid_flags: 1,
            no_flow: 5,
        }
    }
}

/// How much traffic, over which flows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficConfig {
    /// Concurrent flows.
    pub flows: usize,
    /// Frames in one steady-state pass (about `packets / flows` per flow).
    pub packets: usize,
    /// Number of the first flow: configs with disjoint ranges
    /// (`first_flow..first_flow + flows`) have disjoint 4-tuples.
    pub first_flow: u32,
    pub seed: u64,
    pub mix: Mix,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            flows: 100_000,
            packets: 1_000_000,
            first_flow: 0,
            seed: 0x5eed_0000_7a11,
            mix: Mix::default(),
        }
    }
}

impl TrafficConfig {
    /// Check sizes and shares; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.flows == 0 {
            return Err("flows: must be at least 1".into());
        }
        if self.first_flow as u64 + self.flows as u64 > MAX_FLOWS {
            return Err(format!(
                "flows: first_flow + flows must be at most {MAX_FLOWS}"
            ));
        }
        if self.packets < self.flows {
            return Err("packets: must be at least flows".into());
        }
        let m = &self.mix;
        if m.abort + m.fin + m.teardown + m.refused + m.bad_ack > 1000 {
            return Err(
                "mix: abort + fin + teardown + refused + bad_ack exceed 1000 per mille".into(),
            );
        }
        if m.in_window + m.out_of_window + m.invalid_flags + m.no_flow > 1000 || m.ipv6 > 1000 {
            return Err("mix: spoofed RSTs or ipv6 exceed 1000 per mille".into());
        }
        Ok(())
    }
}

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    Syn,
    SynAck,
    /// ACK without data (handshake completion included).
    Ack,
    Data,
    /// FIN (with ACK).
    Fin,
    /// A RST and how the receiving kernel judges it.
    Rst(RstClass),
    /// Made to order (`rstwall-bench gen`): no meaning known.
    Crafted,
}

impl Label {
    /// Every label, in [`Label::code`] order.
    pub const ALL: [Label; 14] = {
        let mut all = [Label::Crafted; 14];
        let mut i = 0;
        while i < RstClass::COUNT {
            all[5 + i] = Label::Rst(RstClass::ALL[i]);
            i += 1;
        }
        all[0] = Label::Syn;
        all[1] = Label::SynAck;
        all[2] = Label::Ack;
        all[3] = Label::Data;
        all[4] = Label::Fin;
        all
    };

    /// The label's number, below 64: what the frame's source MAC carries
    /// ([`marker_mac`]).
    pub const fn code(self) -> u8 {
        match self {
            Label::Syn => 0,
            Label::SynAck => 1,
            Label::Ack => 2,
            Label::Data => 3,
            Label::Fin => 4,
            Label::Rst(class) => 5 + class.index() as u8,
            Label::Crafted => 13,
        }
    }

    /// The label of a [`Label::code`] (flag bits above 63 ignored).
    pub fn from_code(code: u8) -> Option<Label> {
        Label::ALL.get(usize::from(code & 0x3f)).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Label::Syn => "syn",
            Label::SynAck => "syn-ack",
            Label::Ack => "ack",
            Label::Data => "data",
            Label::Fin => "fin",
            Label::Rst(class) => class.as_str(),
            Label::Crafted => "crafted",
        }
    }
}

/// Frames by label, family and size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    pub frames: u64,
    pub ipv6: u64,
    /// Sum of frame lengths.
    pub bytes: u64,
    pub syn: u64,
    pub synack: u64,
    pub ack: u64,
    pub data: u64,
    pub fin: u64,
    pub rst: [u64; RstClass::COUNT],
    pub crafted: u64,
}

impl FrameCounts {
    fn add(&mut self, label: Label, ipv6: bool, len: usize) {
        self.frames += 1;
        self.ipv6 += ipv6 as u64;
        self.bytes += len as u64;
        match label {
            Label::Syn => self.syn += 1,
            Label::SynAck => self.synack += 1,
            Label::Ack => self.ack += 1,
            Label::Data => self.data += 1,
            Label::Fin => self.fin += 1,
            Label::Rst(class) => self.rst[class.index()] += 1,
            Label::Crafted => self.crafted += 1,
        }
    }

    /// Frames with `label`.
    pub fn of(&self, label: Label) -> u64 {
        match label {
            Label::Syn => self.syn,
            Label::SynAck => self.synack,
            Label::Ack => self.ack,
            Label::Data => self.data,
            Label::Fin => self.fin,
            Label::Rst(class) => self.rst[class.index()],
            Label::Crafted => self.crafted,
        }
    }

    pub fn rst_total(&self) -> u64 {
        self.rst.iter().sum()
    }

    /// One line: shares of the frames by kind.
    pub fn describe(&self) -> String {
        let pct = |n: u64| 100.0 * n as f64 / self.frames.max(1) as f64;
        let mut s = format!(
            "{} frames, {:.1} B average, {:.1}% IPv6: data {:.1}%, ack {:.1}%, syn {:.2}%, \
             syn-ack {:.2}%, fin {:.2}%, rst {:.2}% (",
            self.frames,
            self.bytes as f64 / self.frames.max(1) as f64,
            pct(self.ipv6),
            pct(self.data),
            pct(self.ack),
            pct(self.syn),
            pct(self.synack),
            pct(self.fin),
            pct(self.rst_total()),
        );
        let classes: Vec<String> = RstClass::ALL
            .iter()
            .filter(|c| self.rst[c.index()] > 0)
            .map(|c| format!("{} {:.2}%", c.as_str(), pct(self.rst[c.index()])))
            .collect();
        s.push_str(&classes.join(", "));
        s.push(')');
        s
    }
}

#[derive(Clone, Copy, Debug)]
struct FrameRef {
    offset: u32,
    len: u32,
}

/// Pre-built frames in one contiguous buffer, in ring order.
pub struct Frames {
    buf: Vec<u8>,
    /// Offset of the first 64-byte-aligned byte of `buf`.
    base: usize,
    /// Bytes used after `base`.
    used: usize,
    refs: Vec<FrameRef>,
    labels: Vec<Label>,
    counts: FrameCounts,
}

impl Frames {
    /// Room for frames taking `slots` 64-byte slots in all.
    fn with_slots(frames: usize, slots: usize) -> Frames {
        let buf = vec![0u8; slots * SLOT + SLOT];
        let base = buf.as_ptr().align_offset(SLOT);
        assert!(base < SLOT, "cannot align the frame buffer");
        assert!(slots * SLOT <= u32::MAX as usize, "frame buffer over 4 GiB");
        Frames {
            buf,
            base,
            used: 0,
            refs: Vec::with_capacity(frames),
            labels: Vec::with_capacity(frames),
            counts: FrameCounts::default(),
        }
    }

    /// Frames for hand-made segments, in the given order, each marked
    /// with its label.
    pub fn from_segments(segments: &[(TcpRepr, Label)]) -> Frames {
        let slots = segments
            .iter()
            .map(|(r, _)| r.frame_len().div_ceil(SLOT))
            .sum();
        let mut frames = Frames::with_slots(segments.len(), slots);
        for (repr, label) in segments {
            frames.push(repr, *label);
        }
        frames
    }

    /// Frames made to order, in the given order, exactly as described
    /// (source MAC included); labelled [`Label::Crafted`].
    pub fn crafted(segments: &[TcpRepr]) -> Frames {
        let slots = segments.iter().map(|r| r.frame_len().div_ceil(SLOT)).sum();
        let mut frames = Frames::with_slots(segments.len(), slots);
        for repr in segments {
            frames.push_as_is(repr, Label::Crafted);
        }
        frames
    }

    /// Longest frame.
    pub fn max_len(&self) -> usize {
        self.refs.iter().map(|r| r.len as usize).max().unwrap_or(0)
    }

    fn push(&mut self, repr: &TcpRepr, label: Label) {
        let marked = TcpRepr {
            src_mac: marker_mac(label.code()),
            ..*repr
        };
        self.push_as_is(&marked, label);
    }

    fn push_as_is(&mut self, repr: &TcpRepr, label: Label) {
        let at = self.base + self.used;
        let len = repr.emit(&mut self.buf[at..]);
        self.refs.push(FrameRef {
            offset: self.used as u32,
            len: len as u32,
        });
        self.labels.push(label);
        self.counts.add(label, repr.src.is_ipv6(), len);
        self.used += len.div_ceil(SLOT) * SLOT;
    }

    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// Frame `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        self.frame(self.refs[i])
    }

    #[inline]
    fn frame(&self, r: FrameRef) -> &[u8] {
        let at = self.base + r.offset as usize;
        &self.buf[at..at + r.len as usize]
    }

    /// Frames `range`, in order.
    #[inline]
    pub fn range(&self, range: Range<usize>) -> impl Iterator<Item = &[u8]> + '_ {
        self.refs[range].iter().map(|&r| self.frame(r))
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.range(0..self.len())
    }

    pub fn label(&self, i: usize) -> Label {
        self.labels[i]
    }

    pub fn counts(&self) -> &FrameCounts {
        &self.counts
    }

    /// Memory the frames occupy (slots, not the index).
    pub fn buffer_bytes(&self) -> usize {
        self.used
    }
}

/// Which end of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
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
enum Kind {
    Plain,
    Abort,
    Fin,
    Teardown,
    Refused,
    BadAck,
}

/// One scripted frame of a flow.
#[derive(Clone, Copy, Debug)]
enum Step {
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

struct Flow {
    ends: [SocketAddr; 2],
    isn: [u32; 2],
    /// Next sequence number each end sends.
    next: [u32; 2],
    kind: Kind,
}

impl Flow {
    fn new(n: u32, ipv6: bool, kind: Kind, rng: &mut Rng) -> Flow {
        let client_host = n % CLIENT_HOSTS;
        let client_port = (FIRST_CLIENT_PORT + n / CLIENT_HOSTS) as u16;
        let server_host = rng.below(SERVER_HOSTS.into()) as u32;
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
            isn: [rng.next_u32(), rng.next_u32()],
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
                    RstClass::InWindow => (
                        next.wrapping_add(1000 + rng.below(20_000) as u32),
                        TcpFlags::RST,
                    ),
                    RstClass::OutOfWindow => (
                        next.wrapping_add(0x4000_0000 + rng.below(0x1000_0000) as u32),
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
    fn opening(&self) -> &'static [Step] {
        match self.kind {
            Kind::Refused => &[Step::Syn, Step::SynRst { ack_ok: true }],
            Kind::BadAck => &[Step::Syn, Step::SynRst { ack_ok: false }],
            _ => &[Step::Syn, Step::SynAck, Step::HandshakeAck],
        }
    }

    /// One pass of this flow: about `len` frames (plus `spoofs`).
    fn script(&self, len: usize, spoofs: &[Step], rng: &mut Rng, out: &mut Vec<Step>) {
        let start = out.len();
        let reopen = [Step::Syn, Step::SynAck, Step::HandshakeAck];
        let either = |rng: &mut Rng| {
            if rng.below(2) == 0 {
                End::Client
            } else {
                End::Server
            }
        };
        let converse = |n: usize, rng: &mut Rng, out: &mut Vec<Step>| {
            for _ in 0..n.max(1) {
                out.push(match rng.below(10) {
                    0..4 => Step::Data(End::Client),
                    4..8 => Step::Data(End::Server),
                    _ => Step::Ack(either(rng)),
                });
            }
        };
        // Spread lengths (mean `len`) so flows do not move in lockstep.
        let len = (len - len / 2) + rng.below(2 * (len / 2) as u64 + 1) as usize;
        match self.kind {
            Kind::Plain => {
                converse(len, rng, out);
                for &s in spoofs {
                    let at = start + rng.below((out.len() - start + 1) as u64) as usize;
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
    let mut r = rng.below(100);
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
    let spoofer = rng.below(SPOOFER_HOSTS.into()) as u32;
    let server = rng.below(SERVER_HOSTS.into()) as u32;
    let (src, dst) = if ipv6 {
        (IpAddr::V6(v6(0xbad, spoofer)), IpAddr::V6(v6(0x5, server)))
    } else {
        (
            IpAddr::V4(spoofer_v4(spoofer)),
            IpAddr::V4(server_v4(server)),
        )
    };
    let flags = if rng.below(2) == 0 {
        TcpFlags::RST
    } else {
        TcpFlags::RST | TcpFlags::ACK
    };
    TcpRepr {
        seq: rng.next_u32(),
        ack: rng.next_u32(),
        ..TcpRepr::new(
            SocketAddr::new(src, 1024 + rng.below(64_000) as u16),
            SocketAddr::new(dst, pick_service(rng)),
            flags,
        )
    }
}

/// Flows' scripts, flat: flow `i` owns `steps[spans[i]]`.
struct Scripts {
    steps: Vec<Step>,
    spans: Vec<Range<usize>>,
}

impl Scripts {
    fn build(flows: &[Flow], mut script: impl FnMut(usize, &Flow, &mut Vec<Step>)) -> Scripts {
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
fn interleave(
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
        order.push(if rng.per_mille(ipv6_per_mille) {
            NO_FLOW_V6
        } else {
            NO_FLOW_V4
        });
    }
    slots += 2 * no_flow;
    // Fisher-Yates.
    for i in (1..order.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
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

/// The generated traffic.
pub struct Traffic {
    /// Every flow's opening, to run once.
    pub handshakes: Arc<Frames>,
    /// One steady-state pass, to run after `handshakes` as often as wanted.
    pub steady: Arc<Frames>,
    /// Flows (each needs one flow-table entry).
    pub flows: usize,
}

impl Traffic {
    /// # Panics
    ///
    /// If `cfg` does not [validate](TrafficConfig::validate).
    pub fn generate(cfg: &TrafficConfig) -> Traffic {
        if let Err(e) = cfg.validate() {
            panic!("traffic config: {e}");
        }
        let mut rng = Rng::new(cfg.seed);
        let m = cfg.mix;
        let mut flows: Vec<Flow> = (0..cfg.flows)
            .map(|i| {
                let mut r = rng.below(1000) as u32;
                let mut kind = Kind::Plain;
                for (k, share) in [
                    (Kind::Abort, m.abort),
                    (Kind::Fin, m.fin),
                    (Kind::Teardown, m.teardown),
                    (Kind::Refused, m.refused),
                    (Kind::BadAck, m.bad_ack),
                ] {
                    if r < share {
                        kind = k;
                        break;
                    }
                    r -= share;
                }
                let ipv6 = rng.per_mille(m.ipv6);
                Flow::new(cfg.first_flow + i as u32, ipv6, kind, &mut rng)
            })
            .collect();

        let opening = Scripts::build(&flows, |_, f, out| out.extend_from_slice(f.opening()));
        let handshakes = interleave(&mut flows, &opening, 0, m.ipv6, &mut rng);

        // Spoofed RSTs land in plain flows, anywhere in their pass.
        let plain: Vec<usize> = (0..flows.len())
            .filter(|&i| flows[i].kind == Kind::Plain)
            .collect();
        let mut spoofs: Vec<Vec<Step>> = vec![Vec::new(); flows.len()];
        if !plain.is_empty() {
            for (class, share) in [
                (RstClass::InWindow, m.in_window),
                (RstClass::OutOfWindow, m.out_of_window),
                (RstClass::InvalidFlags, m.invalid_flags),
            ] {
                for _ in 0..cfg.packets * share as usize / 1000 {
                    let f = plain[rng.below(plain.len() as u64) as usize];
                    let end = if rng.below(2) == 0 {
                        End::Client
                    } else {
                        End::Server
                    };
                    spoofs[f].push(Step::Spoof(end, class));
                }
            }
        }
        let no_flow = cfg.packets * m.no_flow as usize / 1000;
        // What is left after RSTs for absent flows, spoofs and the two
        // frames of each refused SYN goes to the other flows' conversations.
        let spoofed: usize = spoofs.iter().map(Vec::len).sum();
        let short = flows
            .iter()
            .filter(|f| matches!(f.kind, Kind::Refused | Kind::BadAck))
            .count();
        let budget = cfg.packets.saturating_sub(no_flow + spoofed + 2 * short);
        let (long, mut nth) = ((cfg.flows - short).max(1), 0);
        let pass = Scripts::build(&flows, |i, f, out| {
            // Flow n of the long ones gets its share of the budget, the
            // remainder spread evenly.
            let len = budget * (nth + 1) / long - budget * nth / long;
            if !matches!(f.kind, Kind::Refused | Kind::BadAck) {
                nth += 1;
            }
            f.script(len, &spoofs[i], &mut rng, out)
        });
        let steady = interleave(&mut flows, &pass, no_flow, m.ipv6, &mut rng);
        Traffic {
            handshakes: Arc::new(handshakes),
            steady: Arc::new(steady),
            flows: cfg.flows,
        }
    }
}

/// SplitMix64: small, fast, and the same sequence everywhere for a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p`/1000.
    pub fn per_mille(&mut self, p: u32) -> bool {
        self.below(1000) < u64::from(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstwall_engine::engine::{Engine, EngineConfig};
    use rstwall_engine::wire::{self, LinkType, Parsed};

    fn small() -> TrafficConfig {
        TrafficConfig {
            flows: 3000,
            packets: 40_000,
            ..TrafficConfig::default()
        }
    }

    /// The engine judges every frame as its label says, on the first pass
    /// and on replays, and the table ends up holding exactly the flows.
    #[test]
    fn engine_agrees_with_every_label_on_every_pass() {
        let cfg = small();
        let t = Traffic::generate(&cfg);
        let mut engine = Engine::new(&EngineConfig {
            flow_capacity: cfg.flows * 2,
            ..EngineConfig::default()
        });
        let mut now = crate::run::START_NS;
        let mut check = |frames: &Frames, what: &str| {
            for i in 0..frames.len() {
                now += 1000;
                let o = engine.process(LinkType::Ethernet, frames.get(i), now);
                let got = o.rst.map(|r| r.class);
                let want = match frames.label(i) {
                    Label::Rst(class) => Some(class),
                    _ => None,
                };
                assert_eq!(got, want, "{what}, frame {i}: {:?}", o.packet);
            }
            engine.flows().len()
        };
        assert_eq!(check(&t.handshakes, "handshakes"), cfg.flows);
        for pass in 1..=3 {
            assert_eq!(check(&t.steady, &format!("pass {pass}")), cfg.flows);
        }
        let stats = engine.flow_stats();
        assert_eq!(stats.created as usize, cfg.flows);
        assert_eq!(stats.evicted + stats.expired, 0);
    }

    #[test]
    fn mix_has_every_class_and_the_requested_size() {
        let cfg = small();
        let t = Traffic::generate(&cfg);
        let c = t.steady.counts();
        for class in RstClass::ALL {
            assert!(
                c.rst[class.index()] > 0,
                "no {class} RSTs: {}",
                c.describe()
            );
        }
        let frames = c.frames as f64;
        assert!(
            (frames / cfg.packets as f64 - 1.0).abs() < 0.05,
            "{frames} frames"
        );
        assert!(c.data + c.ack > c.frames * 8 / 10, "{}", c.describe());
        let v6 = c.ipv6 as f64 / frames;
        assert!((0.02..0.1).contains(&v6), "{}", c.describe());
        assert_eq!(t.handshakes.counts().syn as usize, cfg.flows);
    }

    /// 198.18.0.0/15 or 2001:2::/48.
    fn in_benchmarking_ranges(a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => u32::from(a) >> 17 == u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 17,
            IpAddr::V6(a) => a.segments()[..3] == [0x2001, 2, 0],
        }
    }

    #[test]
    fn addresses_stay_in_the_benchmarking_ranges() {
        let t = Traffic::generate(&small());
        for frames in [&t.handshakes, &t.steady] {
            for f in frames.iter() {
                let Ok(Parsed::Tcp(seg)) = wire::parse(LinkType::Ethernet, f) else {
                    panic!("unparsable frame {f:02x?}")
                };
                for a in [seg.src, seg.dst] {
                    assert!(in_benchmarking_ranges(a), "{a} outside the ranges");
                }
                let len = f.len();
                if seg.is_ipv6() {
                    assert!((74..=frame::frame_len(true, true, 16)).contains(&len));
                } else {
                    assert!(len == 60 || (len == 62 && seg.flags.syn()), "{len} bytes");
                }
            }
        }
        assert!(!in_benchmarking_ranges(IpAddr::V4(Ipv4Addr::new(
            198, 20, 0, 0
        ))));
        assert!(!in_benchmarking_ranges(IpAddr::V4(Ipv4Addr::new(
            198, 17, 255, 255
        ))));
    }

    #[test]
    fn every_frame_is_marked_with_its_label() {
        for (i, label) in Label::ALL.iter().enumerate() {
            assert_eq!(label.code() as usize, i);
            assert_eq!(Label::from_code(label.code()), Some(*label));
            assert_eq!(
                Label::from_code(label.code() | frame::MARK_DELIVER),
                Some(*label)
            );
        }
        assert_eq!(Label::from_code(14), None);
        let t = Traffic::generate(&small());
        for frames in [&t.handshakes, &t.steady] {
            for i in 0..frames.len() {
                let code = frame::marker_code(frames.get(i));
                assert_eq!(code, Some(frames.label(i).code()), "frame {i}");
            }
        }
        let r = TcpRepr::new(
            "198.18.0.1:1".parse().unwrap(),
            "198.18.0.2:2".parse().unwrap(),
            TcpFlags::RST,
        );
        let crafted = Frames::crafted(&[TcpRepr {
            src_mac: [2, 0, 0, 0, 0, 9],
            ..r
        }]);
        assert_eq!(crafted.label(0), Label::Crafted);
        assert_eq!(crafted.get(0)[6..12], [2, 0, 0, 0, 0, 9]);
        assert_eq!(crafted.counts().crafted, 1);
    }

    #[test]
    fn same_seed_same_bytes() {
        let a = Traffic::generate(&small());
        let b = Traffic::generate(&small());
        assert!(a.steady.iter().eq(b.steady.iter()));
        let c = Traffic::generate(&TrafficConfig { seed: 1, ..small() });
        assert!(!a.steady.iter().eq(c.steady.iter()));
    }

    #[test]
    fn frames_are_aligned_in_one_buffer() {
        let t = Traffic::generate(&small());
        let f = &t.steady;
        for i in 0..f.len() {
            assert_eq!(f.get(i).as_ptr() as usize % SLOT, 0);
        }
        assert!(f.buffer_bytes() <= f.len() * 2 * SLOT);
    }
}
