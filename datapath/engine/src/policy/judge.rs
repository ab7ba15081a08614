//! The compiled, per-worker policy and its judgment of each packet.

use std::net::IpAddr;

use crate::table::{BoundedTable, Insert};
use crate::RstClass;

use super::blocks::{BlockRequests, BlockStats};
use super::cidr::CidrSet;
use super::config::PolicyConfig;
use super::ratelimit::{secs, Rate, SourceKey, SourceState, TokenBucket, NANOS_PER_SEC};
use super::verdict::{Action, Decision, Mode, Reason, Verdict};

/// The compiled, per-worker policy. Build one per worker from a
/// [`PolicyConfig`]; rebuild to apply a changed policy (buckets start full).
pub struct Policy {
    enforce: bool,
    actions: [Action; RstClass::COUNT],
    /// Neither list has an entry: the per-packet path skips both lookups.
    no_lists: bool,
    deny: CidrSet,
    allow: CidrSet,
    per_source: Rate,
    global_rate: Rate,
    global: TokenBucket,
    sources: BoundedTable<SourceKey, SourceState, 1>,
    evictions: u64,
    /// `ratelimit.block_seconds` in ns; 0: never block.
    block_ns: u64,
    blocks: BlockRequests,
    /// Latest second seen by the rate limiter, so expiry never runs on a
    /// clock behind the buckets' own.
    newest_s: u32,
}

impl Policy {
    /// Block requests the ring holds before it loses them.
    pub const BLOCK_RING_CAPACITY: usize = BlockRequests::CAPACITY;

    /// A policy holding the whole global budget (one worker).
    pub fn new(cfg: &PolicyConfig) -> Policy {
        Policy::for_worker(cfg, 1)
    }

    /// A policy for one of `workers` workers: each gets an equal share of the
    /// global rate and burst (rounded up, at least 1). Per-source limits are
    /// not divided (see the module docs).
    pub fn for_worker(cfg: &PolicyConfig, workers: u32) -> Policy {
        let workers = u64::from(workers.max(1));
        let rl = &cfg.ratelimit;
        let global_rate = Rate::new(
            rl.global_rate.div_ceil(workers),
            rl.global_burst.div_ceil(workers),
        );
        let limits = cfg.actions.contains(&Action::RateLimit);
        // No class rate limited: no table worth the memory.
        let table_size = if limits {
            usize::try_from(rl.source_table_size).unwrap_or(usize::MAX)
        } else {
            1
        };
        Policy {
            enforce: cfg.mode == Mode::Enforce,
            actions: cfg.actions,
            no_lists: cfg.deny.is_empty() && cfg.allow.is_empty(),
            deny: CidrSet::new(&cfg.deny),
            allow: CidrSet::new(&cfg.allow),
            per_source: Rate::new(rl.per_source_rate, rl.per_source_burst),
            global_rate,
            global: TokenBucket::full(global_rate, 0),
            sources: BoundedTable::with_capacity(table_size),
            evictions: 0,
            block_ns: rl.block_seconds.saturating_mul(NANOS_PER_SEC),
            blocks: BlockRequests::new(),
            newest_s: 0,
        }
    }

    /// The verdict for one TCP packet from `src`; `rst` is its RST class, or
    /// `None` if it is not a RST. `now_ns` is a monotonic clock.
    #[inline]
    pub fn judge(&mut self, src: IpAddr, rst: Option<RstClass>, now_ns: u64) -> Decision {
        self.judge_lazy(|| src, rst, now_ns)
    }

    /// True when neither list has an entry: then a packet that is not a RST
    /// is passed for [`Reason::NotRst`] whatever its source and the mode.
    #[inline]
    pub fn no_lists(&self) -> bool {
        self.no_lists
    }

    /// [`Policy::judge`] with the source address built only if a list or
    /// a rate limit needs it (most packets need neither).
    #[inline]
    pub fn judge_lazy(
        &mut self,
        src: impl Fn() -> IpAddr,
        rst: Option<RstClass>,
        now_ns: u64,
    ) -> Decision {
        let reason = self.reason(src, rst, now_ns);
        let verdict = if self.enforce && reason.drops() {
            Verdict::Drop
        } else {
            Verdict::Pass
        };
        Decision { verdict, reason }
    }

    #[inline]
    fn reason(&mut self, src: impl Fn() -> IpAddr, rst: Option<RstClass>, now_ns: u64) -> Reason {
        if !self.no_lists {
            let src = src();
            if self.deny.contains(src) {
                return Reason::DenyList;
            }
            if self.allow.contains(src) {
                return Reason::AllowList;
            }
        }
        let Some(class) = rst else {
            return Reason::NotRst;
        };
        match self.actions[class.index()] {
            Action::Pass => Reason::ClassPass,
            Action::Drop => Reason::ClassDrop,
            Action::RateLimit => self.rate_limit(src(), now_ns),
        }
    }

    fn rate_limit(&mut self, src: IpAddr, now_ns: u64) -> Reason {
        let now_s = secs(now_ns);
        self.newest_s = self.newest_s.max(now_s);
        let per_source = self.per_source;
        let state = match self
            .sources
            .get_or_insert(SourceKey::of(src), now_s, 0, || SourceState {
                bucket: TokenBucket::full(per_source, now_ns),
                block_requested_until_ns: 0,
            }) {
            Insert::Found(s) => s,
            Insert::Inserted { value, evicted } => {
                self.evictions += u64::from(evicted);
                value
            }
        };
        state.bucket.refill(per_source, now_ns);
        if !state.bucket.has_token() {
            if self.block_ns > 0 {
                let until = state.block_requested_until_ns;
                // Due once the period is over, or if the clock stepped back
                // by more than a period (a capture replayed after a later one).
                let due = now_ns >= until || until - now_ns > self.block_ns;
                if due && self.blocks.record(src, self.enforce) {
                    state.block_requested_until_ns = now_ns.saturating_add(self.block_ns);
                }
            }
            return Reason::SourceRate;
        }
        self.global.refill(self.global_rate, now_ns);
        if !self.global.has_token() {
            return Reason::GlobalRate;
        }
        state.bucket.take();
        self.global.take();
        Reason::WithinRate
    }

    /// Hand each recorded block request to `f` and empty the ring. Call it
    /// once per batch: the ring holds [`Policy::BLOCK_RING_CAPACITY`]
    /// requests, and a full one loses them.
    pub fn drain_block_requests(&mut self, f: impl FnMut(IpAddr)) {
        self.blocks.drain(f);
    }

    /// Block requests recorded, would-be and lost since construction (plus
    /// those of the policies it replaced, see [`Policy::carry_over`]).
    pub fn block_stats(&self) -> BlockStats {
        self.blocks.stats
    }

    /// Take over what `old` counted and has not yet handed on, so that
    /// replacing a policy neither resets counters nor loses requests.
    pub fn carry_over(&mut self, old: &mut Policy) {
        self.evictions += old.evictions;
        self.blocks.stats.merge(&old.blocks.stats);
        let blocks = &mut self.blocks;
        old.blocks.drain(|src| {
            blocks.push(src);
        });
    }

    /// Drop per-source buckets idle long enough to be full again (a fresh
    /// bucket is identical). Housekeeping, not needed for correctness: the
    /// table evicts the least recently used source when full. Returns how
    /// many were removed.
    pub fn expire_sources(&mut self, now_ns: u64) -> usize {
        let Some(fill) = self.per_source.fill_secs() else {
            return 0;
        };
        let timeout = u32::try_from(fill).unwrap_or(u32::MAX);
        let now_s = secs(now_ns).max(self.newest_s);
        self.sources.expire(0, now_s, timeout, |_, _| {})
    }

    pub fn mode(&self) -> Mode {
        if self.enforce {
            Mode::Enforce
        } else {
            Mode::Monitor
        }
    }

    pub fn action(&self, class: RstClass) -> Action {
        self.actions[class.index()]
    }

    /// Sources evicted from the full per-source table since construction.
    pub fn source_table_evictions(&self) -> u64 {
        self.evictions
    }

    /// Sources currently tracked.
    pub fn source_table_len(&self) -> usize {
        self.sources.len()
    }

    pub fn source_table_capacity(&self) -> usize {
        self.sources.capacity()
    }

    /// Memory held by the per-source table (preallocated; constant).
    pub fn source_table_bytes(&self) -> usize {
        self.sources
            .bytes_per_entry()
            .saturating_mul(self.sources.capacity())
    }

    /// Whole tokens left in this worker's global budget (as of its last use).
    pub fn global_tokens(&self) -> u64 {
        self.global.tokens()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::policy::testing::*;

    #[test]
    fn policy_defaults_never_drop_what_the_kernel_may_accept() {
        let mut p = policy(&["mode=enforce"]);
        let src = ip("192.0.2.1");
        for class in RstClass::ALL {
            let d = p.judge(src, Some(class), 0);
            match class.kernel_accepts() {
                Some(false) => assert_eq!(
                    d,
                    Decision {
                        verdict: Verdict::Drop,
                        reason: Reason::ClassDrop
                    },
                    "{class}"
                ),
                Some(true) | None => {
                    assert_eq!(
                        d,
                        Decision {
                            verdict: Verdict::Pass,
                            reason: Reason::ClassPass
                        },
                        "{class}"
                    )
                }
            }
        }
        // The named ones, explicitly.
        for class in [
            RstClass::Refused,
            RstClass::Abort,
            RstClass::Teardown,
            RstClass::NoFlow,
            RstClass::InvalidFlags,
        ] {
            assert_eq!(PolicyConfig::default().action(class), Action::Pass);
        }
        assert_eq!(PolicyConfig::default().mode(), Mode::Monitor);
        // No class rate limited by default: no table to speak of.
        assert_eq!(p.source_table_capacity(), 1);
    }

    #[test]
    fn policy_monitor_reports_what_enforce_would_do() {
        let lines = [
            "lists.deny=198.19.0.0/16",
            "actions.no_flow=ratelimit",
            "ratelimit.per_source_burst=1",
            "ratelimit.per_source_rate=1",
        ];
        let mut mon = policy(&lines);
        let mut enf = policy(&[&lines[..], &["mode=enforce"]].concat());
        assert_eq!(mon.mode(), Mode::Monitor);
        assert_eq!(enf.mode(), Mode::Enforce);
        let (a, d) = (ip("192.0.2.1"), ip("198.19.3.4"));
        let cases = [
            (d, None, Reason::DenyList),
            (a, None, Reason::NotRst),
            (a, Some(RstClass::InWindow), Reason::ClassDrop),
            (a, Some(RstClass::Abort), Reason::ClassPass),
            (a, Some(RstClass::NoFlow), Reason::WithinRate),
            (a, Some(RstClass::NoFlow), Reason::SourceRate), // buckets run in monitor too
        ];
        for (src, rst, reason) in cases {
            let m = mon.judge(src, rst, 5 * SEC);
            let e = enf.judge(src, rst, 5 * SEC);
            assert_eq!(
                m,
                Decision {
                    verdict: Verdict::Pass,
                    reason
                }
            );
            assert_eq!(e.reason, reason);
            assert_eq!(e.verdict == Verdict::Drop, reason.drops());
            assert_eq!(m.would_drop(), reason.drops());
        }
    }

    #[test]
    fn policy_order_is_deny_allow_notrst_class() {
        let mut p = policy(&[
            "mode=enforce",
            "lists.deny=10.0.0.0/8,2001:db8::/32",
            "lists.allow=10.1.0.0/16,192.0.2.0/24",
            "actions.refused=drop",
        ]);
        let j = |p: &mut Policy, s: &str, r| p.judge(ip(s), r, 0).reason;
        // Deny beats allow even when the allow entry is more specific.
        assert_eq!(
            j(&mut p, "10.1.2.3", Some(RstClass::Abort)),
            Reason::DenyList
        );
        assert_eq!(j(&mut p, "10.1.2.3", None), Reason::DenyList);
        assert_eq!(j(&mut p, "2001:db8::1", None), Reason::DenyList);
        // Allow skips the RST policy, even an explicit drop.
        assert_eq!(
            j(&mut p, "192.0.2.9", Some(RstClass::InWindow)),
            Reason::AllowList
        );
        assert_eq!(j(&mut p, "192.0.2.9", None), Reason::AllowList);
        assert_eq!(
            j(&mut p, "203.0.113.1", Some(RstClass::Refused)),
            Reason::ClassDrop
        );
        assert_eq!(j(&mut p, "203.0.113.1", None), Reason::NotRst);
        // A v4-mapped source is not on the v4 deny list.
        assert_eq!(j(&mut p, "::ffff:10.1.2.3", None), Reason::NotRst);
    }

    #[test]
    fn policy_per_source_buckets_aggregate_ipv6_per_64() {
        let mut p = policy(&[
            "mode=enforce",
            "actions.no_flow=ratelimit",
            "ratelimit.per_source_rate=1",
            "ratelimit.per_source_burst=2",
        ]);
        let r = Some(RstClass::NoFlow);
        let t = 7 * SEC;
        assert_eq!(
            p.judge(ip("2001:db8:0:1::1"), r, t).reason,
            Reason::WithinRate
        );
        assert_eq!(
            p.judge(ip("2001:db8:0:1:ffff::2"), r, t).reason,
            Reason::WithinRate
        );
        // Same /64: the bucket is shared and now empty.
        assert_eq!(
            p.judge(ip("2001:db8:0:1::3"), r, t),
            Decision {
                verdict: Verdict::Drop,
                reason: Reason::SourceRate
            }
        );
        // Next /64 over: its own bucket.
        assert_eq!(
            p.judge(ip("2001:db8:0:2::1"), r, t).reason,
            Reason::WithinRate
        );
        // IPv4 is per /32.
        assert_eq!(p.judge(ip("192.0.2.1"), r, t).reason, Reason::WithinRate);
        assert_eq!(p.judge(ip("192.0.2.1"), r, t).reason, Reason::WithinRate);
        assert_eq!(p.judge(ip("192.0.2.1"), r, t).reason, Reason::SourceRate);
        assert_eq!(p.judge(ip("192.0.2.2"), r, t).reason, Reason::WithinRate);
        // One second later the /64 has one more token.
        assert_eq!(
            p.judge(ip("2001:db8:0:1::9"), r, t + SEC).reason,
            Reason::WithinRate
        );
        assert_eq!(
            p.judge(ip("2001:db8:0:1::9"), r, t + SEC).reason,
            Reason::SourceRate
        );
        assert_eq!(p.source_table_len(), 4);
        // Non-RST and non-ratelimited classes never touch the buckets.
        assert_eq!(p.judge(ip("198.51.100.1"), None, t).reason, Reason::NotRst);
        assert_eq!(
            p.judge(ip("198.51.100.1"), Some(RstClass::Abort), t).reason,
            Reason::ClassPass
        );
        assert_eq!(p.source_table_len(), 4);
        assert_eq!(SourceKey::of(ip("::ffff:1.2.3.4")), SourceKey::V6(0));
        assert_ne!(SourceKey::of(ip("0.0.0.0")), SourceKey::of(ip("::")));
    }

    #[test]
    fn policy_global_budget_bounds_all_sources() {
        let mut p = policy(&[
            "mode=enforce",
            "actions.out_of_window=ratelimit",
            "ratelimit.global_rate=100",
            "ratelimit.global_burst=10",
            "ratelimit.per_source_rate=1",
            "ratelimit.per_source_burst=2",
        ]);
        let r = Some(RstClass::OutOfWindow);
        let t = SEC;
        let mut within = 0;
        for i in 0..50u32 {
            let d = p.judge(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), r, t);
            match d.reason {
                Reason::WithinRate => within += 1,
                Reason::GlobalRate => assert_eq!(d.verdict, Verdict::Drop),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(within, 10);
        assert_eq!(p.global_tokens(), 0);
        // A source refused by the global budget was not charged: after the
        // budget refills (10 ms = 1 token) it still has its full burst.
        let late = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 40));
        assert_eq!(p.judge(late, r, t + SEC / 100).reason, Reason::WithinRate);
        assert_eq!(p.judge(late, r, t + SEC / 50).reason, Reason::WithinRate);
        assert_eq!(
            p.judge(late, r, t + 3 * SEC / 100).reason,
            Reason::SourceRate
        );
    }

    #[test]
    fn policy_workers_share_the_global_budget() {
        let mut c = PolicyConfig::default();
        c.set("actions.no_flow", "ratelimit").unwrap();
        c.set("ratelimit.global_burst", "10").unwrap();
        let mut w = Policy::for_worker(&c, 4);
        assert_eq!(w.global_tokens(), 3); // ceil(10 / 4)
        assert_eq!(Policy::for_worker(&c, 0).global_tokens(), 10);
        let n = (0..20u32)
            .filter(|&i| {
                w.judge(IpAddr::V4(i.into()), Some(RstClass::NoFlow), 0)
                    .reason
                    == Reason::WithinRate
            })
            .count();
        assert_eq!(n, 3);
    }

    #[test]
    fn policy_source_table_is_bounded_and_counts_evictions() {
        let mut p = policy(&[
            "actions.no_flow=ratelimit",
            "ratelimit.source_table_size=8",
            "ratelimit.global_rate=10000000",
            "ratelimit.global_burst=1000000000",
        ]);
        assert_eq!(p.source_table_capacity(), 8);
        assert!(p.source_table_bytes() >= 8 * (16 + 16));
        for i in 0..100u32 {
            let src = IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64));
            assert_eq!(
                p.judge(src, Some(RstClass::NoFlow), u64::from(i) * SEC)
                    .reason,
                Reason::WithinRate
            );
        }
        assert_eq!(p.source_table_len(), 8);
        assert_eq!(p.source_table_evictions(), 92);
        // Sources last used at 92..=99 s. Buckets fill in ceil(100 / 50) =
        // 2 s; those idle longer than that are removed.
        assert_eq!(p.expire_sources(99 * SEC), 5);
        assert_eq!(p.source_table_len(), 3);
        // A clock behind the buckets' own counts as the newest time seen.
        assert_eq!(p.expire_sources(0), 0);
        assert_eq!(p.expire_sources(101 * SEC + SEC / 2), 2);
        assert_eq!(p.source_table_len(), 1);
    }
}
