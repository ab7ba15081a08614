//! The engine: one frame in, one verdict out, telemetry on the side.
//!
//! An [`Engine`] is owned by exactly one thread (an AF_XDP queue worker, or
//! the offline analyzer). It does no I/O and takes time from its caller, so
//! live traffic, pcap files, fuzzers and benchmarks all run the same code.
//! After construction the per-packet path does not allocate.

use std::net::IpAddr;

use serde::Serialize;

use crate::flow::{FlowStats, FlowTable, RstJudgment, Timeouts};
use crate::policy::{BlockStats, Decision, Policy, PolicyConfig, Reason, Verdict};
use crate::telemetry::{AlertRule, Snapshot, Telemetry, TelemetryConfig};
use crate::wire::{self, LinkType, Parsed, TcpFlags};

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
    const UNTRACKED: Outcome = Outcome {
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

/// One thread's packet engine.
pub struct Engine {
    flows: FlowTable,
    policy: Policy,
    telemetry: Telemetry,
    /// Latest time seen, in ns; time never runs backwards inside the engine
    /// (captures can, and flow expiry would otherwise misfire).
    now_ns: u64,
    second: u64,
}

impl Engine {
    pub fn new(cfg: &EngineConfig) -> Engine {
        Engine {
            flows: FlowTable::new(cfg.flow_capacity, cfg.timeouts),
            policy: Policy::new(&cfg.policy),
            telemetry: Telemetry::new(&cfg.telemetry, cfg.alerts.clone()),
            now_ns: 0,
            second: 0,
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
        let second = self.now_ns / 1_000_000_000;
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
        self.telemetry.record_untracked(frame.len());
        let seg = match wire::parse(link, frame) {
            Ok(Parsed::Tcp(seg)) => seg,
            Ok(Parsed::NotTcp(kind)) => {
                self.telemetry.counters.not_tcp[kind.index()] += 1;
                self.telemetry.counters.passed += 1;
                return Outcome::UNTRACKED;
            }
            Err(e) => {
                self.telemetry.counters.parse_errors[e.index()] += 1;
                self.telemetry.counters.passed += 1;
                return Outcome::UNTRACKED;
            }
        };
        let now = self.second as u32;
        let obs = self.flows.observe(&seg, now);
        let decision = self
            .policy
            .judge(seg.src, obs.rst.map(|r| r.class), self.now_ns);
        self.telemetry
            .record_tcp(&seg, obs.rst.as_ref(), decision, now);
        Outcome {
            decision,
            packet: Some(PacketInfo {
                src: seg.src,
                dst: seg.dst,
                src_port: seg.src_port,
                dst_port: seg.dst_port,
                seq: seg.seq,
                ack: seg.ack,
                flags: seg.flags,
                payload_len: seg.payload_len,
            }),
            rst: obs.rst,
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
