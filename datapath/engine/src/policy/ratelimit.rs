//! Rate limiting: token buckets on a caller's clock, and what the
//! per-source table keys and keeps.

use std::net::IpAddr;

/// Token credit per token, and nanoseconds per second of the clock.
pub(super) const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A refill rate and a capacity, shared by every bucket it governs (so the
/// per-source buckets themselves stay 16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    per_sec: u64,
    burst: u64,
}

impl Rate {
    pub const MAX_PER_SEC: u64 = 10_000_000;
    /// Keeps `burst × 10⁹` (the capacity in credit units) far below `u64::MAX`.
    pub const MAX_BURST: u64 = 1_000_000_000;

    /// `per_sec` tokens per second (0: never refills), at most `burst`
    /// (at least 1) held. Out-of-range values are clamped.
    pub const fn new(per_sec: u64, burst: u64) -> Rate {
        let per_sec = if per_sec > Self::MAX_PER_SEC {
            Self::MAX_PER_SEC
        } else {
            per_sec
        };
        let burst = if burst == 0 {
            1
        } else if burst > Self::MAX_BURST {
            Self::MAX_BURST
        } else {
            burst
        };
        Rate { per_sec, burst }
    }

    pub const fn per_sec(self) -> u64 {
        self.per_sec
    }

    pub const fn burst(self) -> u64 {
        self.burst
    }

    /// Capacity in credit units (one token = 10⁹ units).
    #[inline]
    const fn capacity(self) -> u64 {
        self.burst * NANOS_PER_SEC
    }

    /// Whole seconds an empty bucket takes to fill, `None` if it never does.
    pub(super) fn fill_secs(self) -> Option<u64> {
        (self.per_sec > 0).then(|| self.burst.div_ceil(self.per_sec))
    }
}

/// A token bucket on a caller-supplied monotonic clock in nanoseconds.
///
/// Credit is kept in units of 10⁻⁹ token, so a refill of `elapsed_ns ×
/// per_sec` units is exact integer arithmetic: no floats, no rounding drift,
/// and saturating so a long idle period simply fills the bucket. A clock that
/// steps backwards refills nothing and re-anchors the bucket at the new time,
/// so no tokens are minted for the step and a large step (two captures
/// concatenated, say) cannot stall the bucket until the clock catches up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    credit: u64,
    last_ns: u64,
}

impl TokenBucket {
    const TOKEN: u64 = NANOS_PER_SEC;

    /// A full bucket as of `now_ns`.
    pub const fn full(rate: Rate, now_ns: u64) -> TokenBucket {
        TokenBucket {
            credit: rate.capacity(),
            last_ns: now_ns,
        }
    }

    /// Add the credit earned since the last refill, up to the burst.
    #[inline]
    pub fn refill(&mut self, rate: Rate, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = now_ns;
        self.credit = self
            .credit
            .saturating_add(elapsed.saturating_mul(rate.per_sec))
            .min(rate.capacity());
    }

    /// Whole tokens available (as of the last refill).
    pub const fn tokens(&self) -> u64 {
        self.credit / Self::TOKEN
    }

    #[inline]
    pub const fn has_token(&self) -> bool {
        self.credit >= Self::TOKEN
    }

    /// Take one token if there is one (no refill).
    #[inline]
    pub fn take(&mut self) -> bool {
        let ok = self.has_token();
        if ok {
            self.credit -= Self::TOKEN;
        }
        ok
    }

    /// Refill, then take one token if there is one.
    #[inline]
    pub fn try_take(&mut self, rate: Rate, now_ns: u64) -> bool {
        self.refill(rate, now_ns);
        self.take()
    }
}

/// What a per-source bucket is keyed by: an IPv4 /32 or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum SourceKey {
    V4(u32),
    V6(u64),
}

impl SourceKey {
    #[inline]
    pub(super) fn of(ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(a) => SourceKey::V4(u32::from(a)),
            IpAddr::V6(a) => SourceKey::V6((u128::from(a) >> 64) as u64),
        }
    }
}

/// One tracked source: its bucket, and until when it has had its block
/// requested (so a source is asked for once per block period, found by the
/// lookup the bucket needs anyway).
#[derive(Clone, Copy, Debug)]
pub(super) struct SourceState {
    pub(super) bucket: TokenBucket,
    pub(super) block_requested_until_ns: u64,
}

#[inline]
pub(super) fn secs(now_ns: u64) -> u32 {
    // The table's LRU clock is in seconds and compares with wrapping
    // arithmetic; truncating to u32 wraps after 136 years.
    (now_ns / NANOS_PER_SEC) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::*;

    #[test]
    fn policy_token_bucket_refills_caps_and_survives_bad_clocks() {
        let rate = Rate::new(10, 3); // one token per 100 ms, at most 3
        let mut b = TokenBucket::full(rate, 1000 * SEC);
        let t0 = 1000 * SEC;
        assert!(b.try_take(rate, t0) && b.try_take(rate, t0) && b.try_take(rate, t0));
        assert!(!b.try_take(rate, t0));
        assert!(!b.try_take(rate, t0 + SEC / 10 - 1));
        assert!(b.try_take(rate, t0 + SEC / 10)); // exactly one token earned
        assert!(!b.try_take(rate, t0 + SEC / 10));
        // Long idle fills to the burst, not beyond.
        b.refill(rate, t0 + 3600 * SEC);
        assert_eq!(b.tokens(), 3);
        // Clock going backwards: no refill, no panic.
        let mut b = TokenBucket::full(rate, t0);
        while b.take() {}
        b.refill(rate, t0 - 50 * SEC);
        assert_eq!(b.tokens(), 0);
        // ...and re-anchored: it refills from the new time, not the old.
        b.refill(rate, t0 - 50 * SEC + SEC / 10);
        assert_eq!(b.tokens(), 1);
        // Extremes never overflow.
        let big = Rate::new(u64::MAX, u64::MAX);
        assert_eq!(
            (big.per_sec(), big.burst()),
            (Rate::MAX_PER_SEC, Rate::MAX_BURST)
        );
        let mut b = TokenBucket::full(big, 0);
        b.refill(big, u64::MAX);
        assert_eq!(b.tokens(), Rate::MAX_BURST);
        b.refill(big, 0);
        assert_eq!(b.tokens(), Rate::MAX_BURST);
        // A rate that does not divide a second is still exact over time.
        let odd = Rate::new(7, 2);
        let mut b = TokenBucket::full(odd, 0);
        let mut passed = 0;
        for i in 0..=70_000u64 {
            passed += u64::from(b.try_take(odd, i * SEC / 7000));
        }
        assert_eq!(passed, 2 + 70); // initial burst + 10 s at 7/s
                                    // Zero rate never refills; zero burst is clamped to 1.
        let zero = Rate::new(0, 0);
        let mut b = TokenBucket::full(zero, 0);
        assert!(b.try_take(zero, 0) && !b.try_take(zero, u64::MAX));
    }
}
