//! Requests to block a source in the kernel (`ratelimit.block_seconds`),
//! queued on the per-packet path without allocating; see the module docs
//! of [`crate::policy`] for why blocking is off by default.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Block requests and their counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    /// Requests recorded for the daemon (enforce mode).
    pub requested: u64,
    /// Requests monitor mode would have recorded.
    pub would_block: u64,
    /// Requests lost to a full ring (the next dropped RST asks again).
    pub lost: u64,
}

impl BlockStats {
    pub fn merge(&mut self, o: &BlockStats) {
        self.requested += o.requested;
        self.would_block += o.would_block;
        self.lost += o.lost;
    }
}

/// Block requests waiting to be drained: a fixed array, so recording one
/// on the per-packet path never allocates. Drained whole every batch, it
/// only has to hold the requests of one batch: at most one per frame, so a
/// batch of the default 64 frames can never overflow it.
pub(super) struct BlockRequests {
    addrs: [IpAddr; BlockRequests::CAPACITY],
    len: usize,
    pub(super) stats: BlockStats,
}

impl BlockRequests {
    pub(super) const CAPACITY: usize = 64;

    pub(super) fn new() -> BlockRequests {
        BlockRequests {
            addrs: [IpAddr::V4(0.into()); Self::CAPACITY],
            len: 0,
            stats: BlockStats::default(),
        }
    }

    /// Record a request for `src` (in monitor mode, only count it). False
    /// if the ring was full and the request was lost.
    #[inline]
    pub(super) fn record(&mut self, src: IpAddr, enforce: bool) -> bool {
        if !enforce {
            self.stats.would_block += 1;
            return true;
        }
        let queued = self.push(src);
        if queued {
            self.stats.requested += 1;
        }
        queued
    }

    /// Queue `src`, or count it lost.
    #[inline]
    pub(super) fn push(&mut self, src: IpAddr) -> bool {
        match self.addrs.get_mut(self.len) {
            Some(slot) => {
                *slot = src;
                self.len += 1;
                true
            }
            None => {
                self.stats.lost += 1;
                false
            }
        }
    }

    pub(super) fn drain(&mut self, mut f: impl FnMut(IpAddr)) {
        for &src in &self.addrs[..self.len] {
            f(src);
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use crate::policy::testing::*;
    use crate::policy::{BlockStats, Policy, Reason, Verdict};
    use crate::RstClass;

    /// Enforce, `no_flow` rate limited to a burst of 1, blocks of 10 s.
    fn blocking(extra: &[&str]) -> Policy {
        let lines = [
            "mode=enforce",
            "actions.no_flow=ratelimit",
            "ratelimit.per_source_rate=1",
            "ratelimit.per_source_burst=1",
            "ratelimit.block_seconds=10",
        ];
        policy(&[&lines[..], extra].concat())
    }

    fn drained(p: &mut Policy) -> Vec<IpAddr> {
        let mut out = Vec::new();
        p.drain_block_requests(|src| out.push(src));
        out
    }

    #[test]
    fn policy_asks_to_block_a_source_once_per_block_period() {
        let mut p = blocking(&[]);
        let r = Some(RstClass::NoFlow);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let t = 100 * SEC;
        assert_eq!(p.judge(a, r, t).reason, Reason::WithinRate);
        assert!(drained(&mut p).is_empty(), "within its rate: no block");
        for _ in 0..5 {
            assert_eq!(p.judge(a, r, t).reason, Reason::SourceRate);
        }
        assert_eq!(p.judge(b, r, t).reason, Reason::WithinRate);
        assert_eq!(p.judge(b, r, t).reason, Reason::SourceRate);
        assert_eq!(drained(&mut p), [a, b], "one request per source");
        // Still over its rate within the period: no second request.
        assert_eq!(p.judge(a, r, t + 9 * SEC).reason, Reason::WithinRate);
        assert_eq!(p.judge(a, r, t + 9 * SEC).reason, Reason::SourceRate);
        assert!(drained(&mut p).is_empty());
        // Once the period is over, the next dropped RST asks again.
        assert_eq!(p.judge(a, r, t + 10 * SEC).reason, Reason::WithinRate);
        assert_eq!(p.judge(a, r, t + 10 * SEC).reason, Reason::SourceRate);
        assert_eq!(drained(&mut p), [a]);
        // A clock stepped back by more than a period asks again too.
        assert_eq!(p.judge(a, r, SEC).reason, Reason::SourceRate);
        assert_eq!(drained(&mut p), [a]);
        assert_eq!(
            p.block_stats(),
            BlockStats {
                requested: 4,
                would_block: 0,
                lost: 0
            }
        );
    }

    #[test]
    fn policy_blocks_only_for_the_source_rate() {
        let r = Some(RstClass::NoFlow);
        let t = 5 * SEC;
        // Off by default.
        let mut off = policy(&[
            "mode=enforce",
            "actions.no_flow=ratelimit",
            "ratelimit.per_source_burst=1",
        ]);
        for _ in 0..10 {
            off.judge(ip("192.0.2.1"), r, t);
        }
        assert!(drained(&mut off).is_empty());
        assert_eq!(off.block_stats(), BlockStats::default());
        // The global budget running dry is nobody's fault in particular.
        let mut p = blocking(&[
            "ratelimit.per_source_burst=100",
            "ratelimit.global_burst=1",
            "ratelimit.global_rate=1",
        ]);
        assert_eq!(p.judge(ip("192.0.2.1"), r, t).reason, Reason::WithinRate);
        assert_eq!(p.judge(ip("192.0.2.1"), r, t).reason, Reason::GlobalRate);
        assert!(drained(&mut p).is_empty());
        // Neither a class drop nor the deny list is a rate.
        let mut p = blocking(&["lists.deny=198.19.0.0/16", "lists.allow=192.0.2.0/24"]);
        for _ in 0..5 {
            assert_eq!(p.judge(ip("198.19.0.1"), r, t).reason, Reason::DenyList);
            assert_eq!(p.judge(ip("192.0.2.1"), r, t).reason, Reason::AllowList);
            p.judge(ip("203.0.113.1"), Some(RstClass::InWindow), t);
        }
        assert!(drained(&mut p).is_empty());
    }

    #[test]
    fn policy_block_request_names_the_address_not_its_64() {
        let mut p = blocking(&[]);
        let r = Some(RstClass::NoFlow);
        let t = 3 * SEC;
        assert_eq!(
            p.judge(ip("2001:db8:0:1::1"), r, t).reason,
            Reason::WithinRate
        );
        // The /64's bucket is empty: the address that found it so is the
        // one asked for, once for the whole /64.
        assert_eq!(
            p.judge(ip("2001:db8:0:1::2"), r, t).reason,
            Reason::SourceRate
        );
        assert_eq!(
            p.judge(ip("2001:db8:0:1::3"), r, t).reason,
            Reason::SourceRate
        );
        assert_eq!(drained(&mut p), [ip("2001:db8:0:1::2")]);
    }

    #[test]
    fn policy_full_block_ring_counts_lost_requests_and_asks_again() {
        let mut p = blocking(&["ratelimit.global_burst=1000000"]);
        let r = Some(RstClass::NoFlow);
        let t = 7 * SEC;
        let n = Policy::BLOCK_RING_CAPACITY as u32 + 3;
        let src = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..n {
            assert_eq!(p.judge(src(i), r, t).reason, Reason::WithinRate);
            assert_eq!(p.judge(src(i), r, t).reason, Reason::SourceRate);
        }
        let stats = p.block_stats();
        assert_eq!(stats.requested, Policy::BLOCK_RING_CAPACITY as u64);
        assert_eq!(stats.lost, 3);
        let got = drained(&mut p);
        assert_eq!(got.len(), Policy::BLOCK_RING_CAPACITY);
        assert_eq!(got[0], src(0));
        // The lost ones were not marked as asked for: their next dropped
        // RST asks again, and now there is room.
        for i in 0..n {
            assert_eq!(p.judge(src(i), r, t).reason, Reason::SourceRate);
        }
        assert_eq!(drained(&mut p), (n - 3..n).map(src).collect::<Vec<_>>());
        assert_eq!(p.block_stats().lost, 3);
    }

    #[test]
    fn policy_monitor_counts_would_block_and_requests_nothing() {
        let mut p = blocking(&["mode=monitor"]);
        let r = Some(RstClass::NoFlow);
        let a = ip("192.0.2.1");
        for i in 0..5 {
            let d = p.judge(a, r, 2 * SEC);
            assert_eq!(d.verdict, Verdict::Pass);
            assert_eq!(d.reason.drops(), i > 0);
        }
        assert!(drained(&mut p).is_empty(), "monitor mode blocks nothing");
        // Counted once per period, as enforce would have asked.
        assert_eq!(
            p.block_stats(),
            BlockStats {
                requested: 0,
                would_block: 1,
                lost: 0
            }
        );
        p.judge(a, r, 12 * SEC);
        p.judge(a, r, 12 * SEC);
        assert_eq!(p.block_stats().would_block, 2);
    }

    #[test]
    fn policy_replacement_keeps_block_counts_and_pending_requests() {
        let r = Some(RstClass::NoFlow);
        let mut old = blocking(&[]);
        old.judge(ip("192.0.2.1"), r, SEC);
        old.judge(ip("192.0.2.1"), r, SEC);
        let mut new = blocking(&["mode=monitor"]);
        new.carry_over(&mut old);
        assert!(drained(&mut old).is_empty());
        assert_eq!(new.block_stats().requested, 1);
        assert_eq!(drained(&mut new), [ip("192.0.2.1")]);
    }
}
