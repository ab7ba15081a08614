//! Where a table's hash secrets come from.
//!
//! Flow, source and host keys are chosen by whoever sends packets, so a
//! table must not let them choose where keys land. Every table hashes with
//! foldhash (`fast`) under two secrets from the operating system's random
//! source (`getrandom`): one per process, expanded into foldhash's shared
//! seed, and one per table. foldhash's own `RandomState` does not do this:
//! its secrets come from memory addresses and the clock.
//!
//! What that buys, from foldhash 0.2's documentation ("HashDoS
//! resistance"): every folded multiply mixes in a secret, so no list of
//! keys collides under every seed — with secrets an attacker cannot guess,
//! colliding keys cannot be precomputed, and each table probes in its own
//! order. foldhash calls this "minimally DoS-resistant" and says plainly
//! that it does not resist an *interactive* attacker who learns the secrets
//! by observing hash outputs (timing, iteration order). Here nothing hands
//! out hash order — entries are iterated in the order of their storage,
//! not of their slots — and a table's capacity is fixed, so a flood can at
//! worst fill it; timing of the per-packet path remains the channel a
//! patient attacker could study. A keyed PRF such as SipHash-1-3 would
//! close it at several times foldhash's cost per lookup on 40-byte flow
//! keys, on the path every packet takes; we keep foldhash for its speed.

use std::sync::OnceLock;

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;

/// The secrets one table hashes under.
#[derive(Clone, Copy, Debug)]
pub struct HashSeed {
    per_table: u64,
    shared: &'static SharedSeed,
}

/// The process's shared seed, drawn once from the OS.
static SHARED: OnceLock<SharedSeed> = OnceLock::new();

/// 64 random bits from the operating system.
///
/// # Panics
/// When the OS has no random source to give (`getrandom` fails: on Linux,
/// neither the syscall nor `/dev/urandom` works). Tables are made at start
/// and on reconfiguration, never per packet; hashing attacker-chosen keys
/// under guessable secrets is the one thing this module exists to avoid.
fn os_random() -> u64 {
    getrandom::u64().expect("the operating system's random source (getrandom) failed")
}

impl HashSeed {
    /// Fresh secrets: the process's shared seed (drawn from the OS on first
    /// use) and a per-table seed drawn now.
    pub fn from_os() -> HashSeed {
        HashSeed {
            per_table: os_random(),
            shared: SHARED.get_or_init(|| SharedSeed::from_u64(os_random())),
        }
    }

    /// The same secrets every time: for tests and reproducible benchmarks,
    /// never for tables that hold keys from the network.
    pub fn fixed(per_table: u64) -> HashSeed {
        HashSeed {
            per_table,
            shared: SharedSeed::global_fixed(),
        }
    }

    pub(super) fn hasher(self) -> SeedableRandomState {
        SeedableRandomState::with_seed(self.per_table, self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::super::BoundedTable;
    use super::*;

    /// A probe length per key: slots from its home slot to its own.
    fn probe_lengths(t: &BoundedTable<u64, (), 1>, keys: &[u64]) -> (f64, usize) {
        let lens: Vec<usize> = keys.iter().map(|k| t.probe_length(k)).collect();
        let mean = lens.iter().sum::<usize>() as f64 / lens.len() as f64;
        (mean, lens.into_iter().max().unwrap_or(0))
    }

    /// Keys brute-forced to share one home slot under a fixed seed pile up
    /// there (one probe run as long as their number); in a table seeded
    /// from the OS the same keys spread out with ordinary probe lengths.
    #[test]
    fn keys_colliding_under_a_fixed_seed_spread_under_the_os_seed() {
        const CAPACITY: usize = 3000;
        const KEYS: usize = 2000;
        let fixed = HashSeed::fixed(7);
        let mut probe: BoundedTable<u64, (), 1> =
            BoundedTable::with_capacity_and_seed(CAPACITY, fixed);
        let mask = probe.slot_count() as u64 - 1;
        let home = |t: &BoundedTable<u64, (), 1>, k: &u64| t.hash_of(k) & mask;
        let target = home(&probe, &0);
        let keys: Vec<u64> = (0u64..)
            .filter(|k| home(&probe, k) == target)
            .take(KEYS)
            .collect();
        for &k in &keys {
            assert!(probe.try_insert(k, 0, 0, ()).is_some());
        }
        let (mean, max) = probe_lengths(&probe, &keys);
        assert!(max >= KEYS - 1, "fixed seed: longest probe {max}");
        assert!(mean > KEYS as f64 / 3.0, "fixed seed: mean probe {mean}");

        let mut os: BoundedTable<u64, (), 1> = BoundedTable::with_capacity(CAPACITY);
        for &k in &keys {
            assert!(os.try_insert(k, 0, 0, ()).is_some());
        }
        let (mean, max) = probe_lengths(&os, &keys);
        // 2000 keys in 4096 slots (load 0.49): linear probing averages
        // about one extra probe; the longest run stays a few dozen.
        assert!(mean < 2.0, "OS seed: mean probe {mean}");
        assert!(max < 40, "OS seed: longest probe {max}");
    }

    /// Two tables of one process draw different per-table secrets.
    #[test]
    fn tables_of_one_process_hash_differently() {
        let a: BoundedTable<u64, (), 1> = BoundedTable::with_capacity(8);
        let b: BoundedTable<u64, (), 1> = BoundedTable::with_capacity(8);
        let differ = (0u64..8).any(|k| a.hash_of(&k) != b.hash_of(&k));
        assert!(differ);
    }

    /// Child mode of the next test: print the hash of a fixed key in a
    /// table seeded from the OS.
    #[test]
    fn print_os_seeded_hash() {
        if std::env::var_os("RSTWALL_PRINT_HASH").is_some() {
            let t: BoundedTable<u64, (), 1> = BoundedTable::with_capacity(8);
            println!("hash={:016x}", t.hash_of(&42));
        }
    }

    /// Two processes get different secrets: this test binary, run twice,
    /// hashes the same key differently.
    #[test]
    fn two_processes_get_different_seeds() {
        let exe = std::env::current_exe().expect("test binary");
        let run = || {
            let out = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "table::seed::tests::print_os_seeded_hash",
                    "--nocapture",
                ])
                .env("RSTWALL_PRINT_HASH", "1")
                .output()
                .expect("run the test binary");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.lines()
                .find_map(|l| l.strip_prefix("hash=").map(str::to_string))
                .unwrap_or_else(|| panic!("no hash printed: {text}"))
        };
        let (a, b) = (run(), run());
        assert_ne!(a, b, "two processes hashed key 42 alike");
    }
}
