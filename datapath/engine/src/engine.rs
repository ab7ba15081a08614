//! The engine: one frame in, one verdict out, telemetry on the side.
//!
//! An [`Engine`] is owned by exactly one thread (an AF_XDP queue worker, or
//! the offline analyzer). It does no I/O and takes time from its caller, so
//! live traffic, pcap files, fuzzers and benchmarks all run the same code.
//! After construction the per-packet path does not allocate.
//!
//! Two ways in, one judgment: [`Engine::process`] (and
//! [`Engine::process_at_current_time`]) take one frame and return its
//! [`Outcome`]; [`Engine::process_batch_with`] takes a burst, as an AF_XDP
//! worker receives it, and is several times faster at large flow counts:
//! it parses the burst and computes each frame's flow key and hash first,
//! asks the CPU for the flow-table slots, then for the entries a few frames
//! ahead of the one it judges, so the misses overlap. Both share every step
//! after the parse, and give the same results frame for frame.

use std::mem::MaybeUninit;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::class::RstClass;
use crate::flow::{FlowStats, FlowTable, Packet, RstJudgment, Timeouts};
use crate::policy::{BlockStats, Decision, Policy, PolicyConfig, Reason, Verdict};
use crate::telemetry::{AlertRule, HostHashes, Snapshot, Telemetry, TelemetryConfig};
use crate::wire::{self, LinkType, NotTcp, ParseError, TcpFlags};

/// How the engine is sized and what it enforces.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// Flows tracked at once; the oldest is evicted when full.
    pub flow_capacity: usize,
    pub timeouts: Timeouts,
    pub telemetry: TelemetryConfig,
    pub alerts: Vec<AlertRule>,
    pub policy: PolicyConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            flow_capacity: 262_144,
            timeouts: Timeouts::default(),
            telemetry: TelemetryConfig::default(),
            alerts: AlertRule::defaults(),
            policy: PolicyConfig::default(),
        }
    }
}

impl EngineConfig {
    /// Check sizes and rules; the error names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        let max = crate::table::MAX_CAPACITY;
        if !(1..=max).contains(&self.flow_capacity) {
            return Err(format!("flow_capacity: must be 1..={max}"));
        }
        if !(1..=max).contains(&self.telemetry.hosts) {
            return Err(format!("telemetry.hosts: must be 1..={max}"));
        }
        if !(1..=65_536).contains(&self.telemetry.ports) {
            return Err("telemetry.ports: must be 1..=65536".into());
        }
        let t = &self.timeouts;
        for (k, v) in [
            ("handshake", t.handshake),
            ("established", t.established),
            ("closing", t.closing),
            ("closed", t.closed),
        ] {
            if v == 0 {
                return Err(format!("timeouts.{k}: must be at least 1 second"));
            }
        }
        let mut names = std::collections::HashSet::new();
        for rule in &self.alerts {
            rule.validate()?;
            if !names.insert(&rule.name) {
                return Err(format!("alerts.{}: defined twice", rule.name));
            }
        }
        Ok(())
    }
}

/// The header fields of a TCP packet, copied out for reports and events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PacketInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    pub payload_len: u32,
}

/// One judged RST as every event stream writes it (`analyze --events`,
/// host mode's `--events`, the fleet's events): the segment's header
/// fields, rstwall's class and the policy's verdict. Each stream's record
/// flattens it (`#[serde(flatten)]`) beside what that stream adds, so
/// the fields are named and ordered alike in all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RstFields {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    /// In tcpdump's notation (`R.`).
    pub flags: TcpFlags,
    /// rstwall's class: how the receiving kernel would judge it.
    pub class: RstClass,
    pub with_data: bool,
    /// The policy's verdict (a monitoring source: what enforce would do).
    pub verdict: Verdict,
    pub reason: Reason,
}

impl RstFields {
    /// The fields of a RST the engine judged: its packet, its judgment and
    /// the policy's decision.
    pub fn of(packet: &PacketInfo, rst: &RstJudgment, decision: Decision) -> RstFields {
        RstFields {
            src: packet.src,
            dst: packet.dst,
            sport: packet.src_port,
            dport: packet.dst_port,
            seq: packet.seq,
            ack: packet.ack,
            flags: packet.flags,
            class: rst.class,
            with_data: rst.with_data,
            verdict: decision.verdict,
            reason: decision.reason,
        }
    }
}

/// What the engine decided for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    /// Present for TCP packets.
    pub packet: Option<PacketInfo>,
    /// Present for RSTs.
    pub rst: Option<RstJudgment>,
}

impl Outcome {
    /// A frame that is not a TCP segment we could read: passed untracked.
    pub const UNTRACKED: Outcome = Outcome {
        decision: Decision {
            verdict: Verdict::Pass,
            reason: Reason::NotRst,
        },
        packet: None,
        rst: None,
    };

    #[inline]
    pub fn verdict(&self) -> Verdict {
        self.decision.verdict
    }
}

/// Frames [`Engine::process_batch_with`] parses, locates and prefetches
/// before it judges the first of them; longer batches go in chunks.
pub const BATCH_MAX: usize = 64;

/// How many frames ahead of the one being judged a batch fetches flow
/// entries.
const PREFETCH_AHEAD: usize = 16;

/// One judged frame of a batch, as [`Engine::process_batch_with`] hands it
/// over: the verdict at once, the full [`Outcome`] on request.
#[derive(Clone, Copy, Debug)]
pub struct Judged<'a> {
    decision: Decision,
    rst: Option<RstJudgment>,
    packet: Option<&'a Packet>,
}

impl Judged<'_> {
    #[inline]
    pub fn verdict(&self) -> Verdict {
        self.decision.verdict
    }

    #[inline]
    pub fn decision(&self) -> Decision {
        self.decision
    }

    #[inline]
    pub fn rst(&self) -> Option<RstJudgment> {
        self.rst
    }

    /// The segment as tracking saw it (its flow's key among others), when
    /// the frame parsed as TCP.
    #[inline]
    pub fn packet(&self) -> Option<&Packet> {
        self.packet
    }

    /// Whether the frame parsed as TCP.
    #[inline]
    pub fn is_tcp(&self) -> bool {
        self.packet.is_some()
    }

    /// The same [`Outcome`] [`Engine::process_at_current_time`] returns.
    #[inline]
    pub fn outcome(&self) -> Outcome {
        Outcome {
            decision: self.decision,
            packet: self.packet.map(|p| PacketInfo {
                src: p.src(),
                dst: p.dst(),
                src_port: p.src_port(),
                dst_port: p.dst_port(),
                seq: p.hdr.seq,
                ack: p.hdr.ack,
                flags: p.hdr.flags,
                payload_len: p.hdr.payload_len,
            }),
            rst: self.rst,
        }
    }
}

/// A frame of a batch between parse and judgment. The packet is written
/// straight into its place by the parser's callback (no copies of it);
/// it is initialized exactly when `kind` is [`StagedKind::Tcp`].
struct Staged {
    len: usize,
    kind: StagedKind,
    /// For segments whose hosts are counted (see
    /// [`Telemetry::counts_hosts`]); else unused.
    hosts: HostHashes,
    packet: MaybeUninit<Packet>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StagedKind {
    Tcp,
    NotTcp(NotTcp),
    Error(ParseError),
}

impl Staged {
    #[inline(always)]
    fn packet(&self) -> Option<&Packet> {
        match self.kind {
            // SAFETY: `packet` is initialized when `kind` is `Tcp` (see
            // `Engine::stage`, the only place either is written).
            StagedKind::Tcp => Some(unsafe { self.packet.assume_init_ref() }),
            _ => None,
        }
    }
}

/// One thread's packet engine.
pub struct Engine {
    flows: FlowTable,
    policy: Policy,
    telemetry: Telemetry,
    /// Latest time seen, in ns; time never runs backwards inside the engine
    /// (captures can, and flow expiry would otherwise misfire).
    now_ns: u64,
    second: u64,
    /// Start of the next second, in ns: until `now_ns` reaches it the
    /// second cannot have changed (no division per call).
    next_second_ns: u64,
}

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// The decision for a segment that is not a RST from a source on no list.
const NOT_RST: Decision = Decision {
    verdict: Verdict::Pass,
    reason: Reason::NotRst,
};

impl Engine {
    pub fn new(cfg: &EngineConfig) -> Engine {
        Engine {
            flows: FlowTable::new(cfg.flow_capacity, cfg.timeouts),
            policy: Policy::new(&cfg.policy),
            telemetry: Telemetry::new(&cfg.telemetry, cfg.alerts.clone()),
            now_ns: 0,
            second: 0,
            next_second_ns: NANOS_PER_SEC,
        }
    }

    /// Replace the policy (between batches: no packet sees half of one).
    /// Its block counters and undrained requests carry over.
    pub fn set_policy(&mut self, mut policy: Policy) {
        policy.carry_over(&mut self.policy);
        self.policy = policy;
    }

    /// Hand each source the policy asked to block since the last call to
    /// `f` (see [`Policy::drain_block_requests`]); call it once per batch.
    #[inline]
    pub fn drain_block_requests(&mut self, f: impl FnMut(IpAddr)) {
        self.policy.drain_block_requests(f);
    }

    pub fn block_stats(&self) -> BlockStats {
        self.policy.block_stats()
    }

    /// Advance the clock. Cheap when the second has not changed; call it
    /// per batch (or per packet, for captures with their own timestamps).
    #[inline]
    pub fn advance(&mut self, now_ns: u64) {
        if now_ns > self.now_ns {
            self.now_ns = now_ns;
        }
        if self.now_ns >= self.next_second_ns {
            self.next_second(self.now_ns);
        }
    }

    fn next_second(&mut self, now_ns: u64) {
        let second = now_ns / NANOS_PER_SEC;
        self.next_second_ns = (second + 1).saturating_mul(NANOS_PER_SEC);
        if second != self.second {
            self.second = second;
            self.flows.expire(second as u32);
            self.telemetry.tick(second);
        }
    }

    /// Judge one frame at time `now_ns` (ns since the Unix epoch).
    #[inline]
    pub fn process(&mut self, link: LinkType, frame: &[u8], now_ns: u64) -> Outcome {
        self.advance(now_ns);
        self.process_at_current_time(link, frame)
    }

    /// Judge one frame at the engine's current time (see [`Engine::advance`]).
    #[inline]
    pub fn process_at_current_time(&mut self, link: LinkType, frame: &[u8]) -> Outcome {
        let mut slot = MaybeUninit::uninit();
        let staged = self.stage(link, frame, &mut slot);
        self.locate_hosts(staged);
        self.judge(staged).outcome()
    }

    /// Judge a batch of frames at the engine's current time, as
    /// [`Engine::process_at_current_time`] would one after the other:
    /// `out[i]` gets frame `i`'s outcome. Panics if `out` is shorter.
    pub fn process_batch(&mut self, link: LinkType, frames: &[&[u8]], out: &mut [Outcome]) {
        let out = &mut out[..frames.len()];
        self.process_batch_with(link, frames.iter().copied(), |i, j| out[i] = j.outcome());
    }

    /// Judge frames at the engine's current time, calling `each(i, judged)`
    /// for the `i`th frame, in order. Same results as
    /// [`Engine::process_at_current_time`] frame by frame, but faster: up
    /// to [`BATCH_MAX`] frames are parsed and their flows located (key and
    /// hash computed, index slot prefetched) first, then their flow
    /// entries prefetched, then they are judged, so the table's cache
    /// misses overlap instead of following one another.
    #[inline]
    pub fn process_batch_with<'f>(
        &mut self,
        link: LinkType,
        frames: impl IntoIterator<Item = &'f [u8]>,
        mut each: impl FnMut(usize, Judged<'_>),
    ) {
        let mut frames = frames.into_iter();
        // The frame after those staged so far: a chunk ends when it is
        // `None`, without a call on an empty one.
        let mut next = frames.next();
        let mut base = 0;
        while next.is_some() {
            let mut buf = [const { MaybeUninit::<Staged>::uninit() }; BATCH_MAX];
            let mut n = 0;
            for slot in buf.iter_mut() {
                let Some(frame) = next else { break };
                let staged = self.stage(link, frame, slot);
                if let Some(p) = staged.packet() {
                    self.flows.prefetch_slot(p);
                }
                if self.locate_hosts(staged) {
                    self.telemetry.prefetch_host_slots(&staged.hosts);
                }
                n += 1;
                next = frames.next();
            }
            // SAFETY: the first `n` elements were written above, and
            // `MaybeUninit<Staged>` has the layout of `Staged`.
            let staged: &[Staged] =
                unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<Staged>(), n) };
            // Entries are fetched a few frames ahead of the judging rather
            // than all at once: a burst of 128 line fetches would overrun
            // what the core can have in flight.
            for s in staged.iter().take(PREFETCH_AHEAD) {
                self.prefetch_entries(s);
            }
            for (i, s) in staged.iter().enumerate() {
                if let Some(ahead) = staged.get(i + PREFETCH_AHEAD) {
                    self.prefetch_entries(ahead);
                }
                let judged = self.judge(s);
                each(base + i, judged);
            }
            base += n;
        }
    }

    /// Ask the CPU to fetch the table entries judging `s` will use (its
    /// flow, and for SYN, FIN and RST its hosts' statistics).
    #[inline(always)]
    fn prefetch_entries(&self, s: &Staged) {
        if let Some(p) = s.packet() {
            let now = self.second as u32;
            self.flows.prefetch_entry(p, now);
            if Telemetry::counts_hosts(p) {
                self.telemetry.prefetch_host_entries(&s.hosts, now);
            }
        }
    }

    /// Parse a frame into `slot` and, for TCP, locate its flow (see
    /// [`Engine::locate_hosts`] for the rest).
    #[inline(always)]
    fn stage<'s>(
        &self,
        link: LinkType,
        frame: &[u8],
        slot: &'s mut MaybeUninit<Staged>,
    ) -> &'s mut Staged {
        let out = slot.as_mut_ptr();
        let kind = wire::parse_with(
            link,
            frame,
            // SAFETY: `out` points to `slot`, valid for writes; the packet
            // is written (in place: it is the largest part) only for TCP,
            // and `kind` says so below.
            #[inline(always)]
            |seg| unsafe {
                std::ptr::addr_of_mut!((*out).packet)
                    .write(MaybeUninit::new(self.flows.packet(&seg)));
                StagedKind::Tcp
            },
            StagedKind::NotTcp,
        )
        .unwrap_or_else(StagedKind::Error);
        // SAFETY: as above; with these every field is initialized (the
        // packet is `MaybeUninit`).
        unsafe {
            std::ptr::addr_of_mut!((*out).len).write(frame.len());
            std::ptr::addr_of_mut!((*out).kind).write(kind);
            std::ptr::addr_of_mut!((*out).hosts).write(HostHashes::default());
            slot.assume_init_mut()
        }
    }

    /// For a staged segment whose hosts are counted, where they are in the
    /// host table; true if they are.
    #[inline(always)]
    fn locate_hosts(&self, s: &mut Staged) -> bool {
        match s.packet() {
            Some(p) if Telemetry::counts_hosts(p) => {
                s.hosts = self.telemetry.host_hashes(p);
                true
            }
            _ => false,
        }
    }

    /// Track, judge and count a staged frame.
    #[inline(always)]
    fn judge<'s>(&mut self, s: &'s Staged) -> Judged<'s> {
        self.telemetry.record_untracked(s.len);
        let p = match s.kind {
            StagedKind::Tcp => s.packet().expect("a staged TCP frame has its packet"),
            StagedKind::NotTcp(kind) => {
                self.telemetry.counters.not_tcp[kind.index()] += 1;
                self.telemetry.counters.passed += 1;
                return Judged {
                    decision: Outcome::UNTRACKED.decision,
                    rst: None,
                    packet: None,
                };
            }
            StagedKind::Error(e) => {
                self.telemetry.counters.parse_errors[e.index()] += 1;
                self.telemetry.counters.passed += 1;
                return Judged {
                    decision: Outcome::UNTRACKED.decision,
                    rst: None,
                    packet: None,
                };
            }
        };
        let now = self.second as u32;
        let obs = self.flows.observe_packet(p, now);
        if obs.rst.is_none() && self.policy.no_lists() {
            // What the policy decides for any segment but a RST when there
            // are no lists, and the telemetry that follows, without asking.
            self.telemetry.record_tcp_not_rst(p, &s.hosts, now);
            return Judged {
                decision: NOT_RST,
                rst: None,
                packet: Some(p),
            };
        }
        let decision = self
            .policy
            .judge_lazy(|| p.src(), obs.rst.map(|r| r.class), self.now_ns);
        self.telemetry
            .record_tcp(p, &s.hosts, obs.rst.as_ref(), decision, now);
        Judged {
            decision,
            rst: obs.rst,
            packet: Some(p),
        }
    }

    /// Count a frame whose link type we cannot read.
    pub fn count_unsupported_link(&mut self, len: usize) {
        self.telemetry.record_untracked(len);
        self.telemetry.counters.unsupported_link += 1;
        self.telemetry.counters.passed += 1;
    }

    /// Close the books: evaluate alerts over the last (partial) second.
    pub fn finish(&mut self) {
        self.telemetry.finish();
    }

    pub fn flows(&self) -> &FlowTable {
        &self.flows
    }

    pub fn flow_stats(&self) -> FlowStats {
        self.flows.stats()
    }

    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    pub fn snapshot(&self, top: usize) -> Snapshot {
        self.telemetry
            .snapshot(self.flows.stats(), self.flows.len(), top)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, Mode};
    use crate::RstClass;

    /// The shortcut `judge` takes for segments that are not RSTs when
    /// neither list has an entry is what the policy decides for them.
    #[test]
    fn not_rst_shortcut_is_the_policy_decision() {
        for mode in [Mode::Monitor, Mode::Enforce] {
            for class in RstClass::ALL {
                for action in [Action::Pass, Action::Drop, Action::RateLimit] {
                    let mut cfg = PolicyConfig::default();
                    cfg.set_mode(mode);
                    cfg.set_action(class, action);
                    let mut policy = Policy::new(&cfg);
                    assert!(policy.no_lists());
                    for src in ["198.18.0.1", "2001:2::1", "10.0.0.1"] {
                        let src: IpAddr = src.parse().unwrap();
                        assert_eq!(policy.judge(src, None, 1), NOT_RST);
                    }
                }
            }
        }
        let mut cfg = PolicyConfig::default();
        cfg.set("lists.deny", "10.0.0.0/8").unwrap();
        assert!(!Policy::new(&cfg).no_lists());
    }
}
