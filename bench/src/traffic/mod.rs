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
//! Every frame's source MAC is a [`marker_mac`](crate::frame::marker_mac) carrying its label's
//! [`Label::code`], so that a sink can count what arrives by kind.
//!
//! Frames of one set sit in one contiguous, 64-byte-aligned buffer in the
//! order a receive ring would hold them: flows interleave pseudo-randomly,
//! so consecutive frames hit unrelated flow-table entries, as on a real link
//! with this many concurrent flows.
//!
//! Addresses come only from the benchmarking ranges: IPv4 198.18.0.0/15
//! (RFC 2544) and IPv6 2001:2::/48 (RFC 5180). The randomness is the lab's
//! one seeded generator ([`rstwall_netlab::rng`]): a seed gives the same
//! bytes on every machine.
//!
//! * [`Label`] and [`FrameCounts`] — what a frame is, and counts by kind;
//! * [`Frames`] — the frames of a set, in one buffer;
//! * `flow` — how each flow behaves in a pass, and the interleaving.

mod flow;
mod frames;
mod label;

use std::sync::Arc;

use rstwall_engine::RstClass;
use rstwall_netlab::rng;

pub use flow::{client_v4, CLIENT_HOSTS, SERVER_HOSTS, SPOOFER_HOSTS};
use flow::{interleave, End, Flow, Kind, Scripts, Step, MAX_FLOWS};
pub use frames::Frames;
pub use label::{FrameCounts, Label};

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
        let mut rng = rng::seeded(cfg.seed);
        let m = cfg.mix;
        let mut flows: Vec<Flow> = (0..cfg.flows)
            .map(|i| {
                let mut r = rng.u32(0..1000);
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
                let ipv6 = rng.u32(0..1000) < m.ipv6;
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
                    let f = plain[rng.usize(0..plain.len())];
                    let end = if rng.bool() { End::Client } else { End::Server };
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

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use rstwall_engine::wire::TcpFlags;

    use super::frames::SLOT;
    use super::*;
    use crate::frame::{self, TcpRepr};
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
        let mut now = crate::engine::START_NS;
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
