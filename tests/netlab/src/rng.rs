//! The lab's one random number generator: [`fastrand::Rng`] (wyrand),
//! seeded. The same seed gives the same stream on every machine and run,
//! for a given fastrand version (the lockfile pins it); fast, and not for
//! anything secret.

pub use fastrand::Rng;

/// A generator that repeats for a given seed.
pub fn seeded(seed: u64) -> Rng {
    Rng::with_seed(seed)
}

/// A seed from the clock and the process id, mixed with `salt`: a
/// different run each time (print it to repeat one).
pub fn clock_seed(salt: u64) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // One draw spreads the bits of the three inputs over all 64.
    seeded(t ^ u64::from(std::process::id()).rotate_left(32) ^ salt).u64(..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_stay_in_bounds_and_a_seed_repeats() {
        let mut r = seeded(1);
        for _ in 0..10_000 {
            let v = r.u32(1024..=65535);
            assert!((1024..=65535).contains(&v));
        }
        assert_eq!(r.u32(5..=5), 5);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            seen[r.u32(0..=3) as usize] = true;
        }
        assert_eq!(seen, [true; 4]);
        let (mut a, mut b) = ([0u8; 100], [0u8; 100]);
        seeded(7).fill(&mut a);
        seeded(7).fill(&mut b);
        assert_eq!(a, b);
        seeded(8).fill(&mut b);
        assert_ne!(a, b);
    }
}
