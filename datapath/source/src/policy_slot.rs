//! The policy every worker should run: a latest-wins slot the control side
//! writes and each worker looks at once per loop iteration.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rstwall_engine::policy::PolicyConfig;

/// The policy every worker should run, with a generation number that
/// counts changes. [`PolicySlot::publish`] replaces whatever is there: a
/// worker that was busy while two changes arrived goes straight to the
/// newer one, and no change is ever lost (the queue it replaces could
/// overflow and drop one).
#[derive(Debug)]
pub struct PolicySlot {
    generation: AtomicU64,
    latest: Mutex<(u64, PolicyConfig)>,
}

impl PolicySlot {
    pub fn new(initial: PolicyConfig) -> PolicySlot {
        PolicySlot {
            generation: AtomicU64::new(1),
            latest: Mutex::new((1, initial)),
        }
    }

    /// Make `cfg` the policy; returns its generation.
    pub fn publish(&self, cfg: PolicyConfig) -> u64 {
        let mut slot = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let generation = slot.0 + 1;
        *slot = (generation, cfg);
        // Published after the slot holds it: a worker that sees the new
        // generation finds at least that policy under the lock.
        self.generation.store(generation, Ordering::Release);
        generation
    }

    /// The current generation: one atomic load, for the per-batch check.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The latest policy and its generation.
    pub fn latest(&self) -> (u64, PolicyConfig) {
        let slot = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        (slot.0, slot.1.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_keeps_only_the_latest_policy() {
        let slot = PolicySlot::new(PolicyConfig::default());
        assert_eq!(slot.generation(), 1);
        let mut a = PolicyConfig::default();
        a.set("mode", "enforce").unwrap();
        let mut b = a.clone();
        b.set("ratelimit.per_source_rate", "7").unwrap();
        assert_eq!(slot.publish(a), 2);
        assert_eq!(slot.publish(b.clone()), 3);
        assert_eq!(slot.generation(), 3);
        assert_eq!(slot.latest(), (3, b));
    }
}
