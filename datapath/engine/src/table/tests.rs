//! Tests of [`BoundedTable`] as a whole: against std's `HashMap`, the
//! LRU order, the used-this-second bitmap, the cold parts.

use super::*;
use std::collections::HashMap;

/// The next state of a xorshift64 generator: the tests' reproducible keys
/// and operations.
fn xorshift(x: &mut u64) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
}

#[test]
fn evicts_oldest_first() {
    let mut t: BoundedTable<u32, u32, 2> = BoundedTable::with_capacity(3);
    t.get_or_insert(1, 10, 0, || 1);
    t.get_or_insert(2, 11, 1, || 2);
    t.get_or_insert(3, 12, 0, || 3);
    // Touch 1 so 2 is now the oldest.
    assert!(t.get_mut(&1, 13).is_some());
    match t.get_or_insert(4, 14, 0, || 4) {
        Insert::Inserted { evicted, .. } => assert!(evicted),
        _ => panic!(),
    }
    assert!(t.get(&2).is_none());
    assert!(t.get(&1).is_some() && t.get(&3).is_some() && t.get(&4).is_some());
    assert_eq!(t.len(), 3);
    assert!(t.try_insert(5, 15, 0, 5).is_none());
}

#[test]
fn expiry_per_list() {
    let mut t: BoundedTable<u32, (), 2> = BoundedTable::with_capacity(10);
    for k in 0..5 {
        t.get_or_insert(k, k, (k % 2) as usize, || ());
    }
    let mut gone = vec![];
    assert_eq!(t.expire(0, 10, 7, |k, _| gone.push(*k)), 2); // 0 and 2 idle > 7
    assert_eq!(gone, vec![0, 2]);
    assert_eq!(t.list_len(0), 1);
    assert_eq!(t.list_len(1), 2);
    t.set_list(&1, 0);
    assert_eq!(t.list_len(0), 2);
}

/// Differential test against std's HashMap under heavy churn, small
/// capacity (lots of probe-run collisions and wraparound).
#[test]
fn matches_hashmap_under_churn() {
    let cap = 64;
    let mut t: BoundedTable<u64, u64, 1> = BoundedTable::with_capacity(cap);
    let mut m: HashMap<u64, u64> = HashMap::new();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for step in 0..200_000u32 {
        xorshift(&mut x);
        let k = x % 150;
        if x & 0x300 == 0 {
            assert_eq!(t.remove(&k), m.remove(&k).is_some());
        } else if m.len() < cap || m.contains_key(&k) {
            match t.get_or_insert(k, step, 0, || k * 2) {
                Insert::Found(v) => assert_eq!(*v, m[&k]),
                Insert::Inserted { evicted, .. } => {
                    assert!(!evicted);
                    m.insert(k, k * 2);
                }
            }
        }
        assert_eq!(t.len(), m.len());
    }
    for (k, v) in &m {
        assert_eq!(t.get(k), Some(v));
    }
    assert_eq!(t.iter().count(), m.len());
}

/// The used-this-second bitmap only skips work: a table whose bitmap
/// is cleared before every call (so every lookup reads and moves the
/// links, as without it) ends up in exactly the same state, under
/// churn, evictions, expiry, list moves and a clock that jumps back.
#[test]
fn used_bitmap_changes_nothing() {
    let cap = 48;
    let mut a: BoundedTable<u64, u64, 2> = BoundedTable::with_capacity(cap);
    let mut b: BoundedTable<u64, u64, 2> = BoundedTable::with_capacity(cap);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut now: u32 = 1000;
    for step in 0..100_000u32 {
        xorshift(&mut x);
        now = match x % 97 {
            0 => now.wrapping_sub(3),
            1..=20 => now.wrapping_add(1),
            _ => now,
        };
        b.used.fill(0);
        let k = (x >> 8) % 80;
        let list = ((x >> 16) & 1) as usize;
        match (x >> 20) % 16 {
            0 => assert_eq!(a.remove(&k), b.remove(&k)),
            1 => {
                a.set_list(&k, list);
                b.set_list(&k, list);
            }
            2 => {
                let (mut ga, mut gb) = (vec![], vec![]);
                let timeout = ((x >> 24) % 4) as u32;
                a.expire(list, now, timeout, |k, _| ga.push(*k));
                b.expire(list, now, timeout, |k, _| gb.push(*k));
                assert_eq!(ga, gb, "step {step}");
            }
            3..=8 => assert_eq!(a.get_mut(&k, now).copied(), b.get_mut(&k, now).copied()),
            _ => {
                let ra = match a.get_or_insert(k, now, list, || k) {
                    Insert::Found(v) => (*v, false, false),
                    Insert::Inserted { value, evicted } => (*value, true, evicted),
                };
                let rb = match b.get_or_insert(k, now, list, || k) {
                    Insert::Found(v) => (*v, false, false),
                    Insert::Inserted { value, evicted } => (*value, true, evicted),
                };
                assert_eq!(ra, rb, "step {step}");
            }
        }
        let state = |t: &BoundedTable<u64, u64, 2>| {
            let mut v: Vec<_> = t.iter().map(|(k, v, l, s)| (*k, *v, l, s)).collect();
            v.sort_unstable();
            (v, t.list_len(0), t.list_len(1))
        };
        assert_eq!(state(&a), state(&b), "step {step}");
    }
    // And the LRU order: expiring everything returns keys oldest first.
    for list in 0..2 {
        let (mut ga, mut gb) = (vec![], vec![]);
        a.expire(list, now.wrapping_add(1000), 0, |k, _| ga.push(*k));
        b.expire(list, now.wrapping_add(1000), 0, |k, _| gb.push(*k));
        assert_eq!(ga, gb);
    }
}

#[test]
fn no_allocation_after_construction_is_structural() {
    let mut t: BoundedTable<u64, [u8; 16], 1> = BoundedTable::with_capacity(1000);
    let cap_before = t.entries.capacity();
    for i in 0..10_000u64 {
        t.get_or_insert(i, i as u32, 0, || [0; 16]);
        if i % 3 == 0 {
            t.remove(&(i / 2));
        }
    }
    assert_eq!(t.entries.capacity(), cap_before);
    assert!(t.len() <= 1000);
}

/// The cold part of a value follows its key through churn, eviction and
/// the reuse of freed entries: every key's cold part is the one written
/// for it, never a former tenant's; a new entry's starts as `make` built it.
#[test]
fn cold_parts_follow_their_keys() {
    let cap = 32;
    let mut t: BoundedTable<u64, u64, 2, Align64, [u64; 3]> = BoundedTable::with_capacity(cap);
    let mut m: HashMap<u64, (u64, [u64; 3])> = HashMap::new();
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for step in 0..100_000u32 {
        xorshift(&mut x);
        let k = x % 60;
        let h = t.hash_of(&k);
        match (x >> 8) % 8 {
            0 => assert_eq!(t.remove(&k), m.remove(&k).is_some()),
            1 | 2 => match (t.get_mut_cold_hashed(h, &k, step), m.get_mut(&k)) {
                (Some((v, c)), Some((mv, mc))) => {
                    assert_eq!((*v, *c), (*mv, *mc), "step {step}");
                    c[(x >> 16) as usize % 3] = u64::from(step);
                    *mc = *c;
                }
                (None, None) => {}
                (t, m) => panic!("step {step}: table {t:?}, map {m:?}"),
            },
            _ => match t.get_or_insert_cold_hashed(h, k, step, 0, || (k, [k; 3])) {
                Insert::Found((v, c)) => assert_eq!((*v, *c), m[&k], "step {step}"),
                Insert::Inserted {
                    value: (v, c),
                    evicted,
                } => {
                    assert_eq!((*v, *c), (k, [k; 3]));
                    if evicted {
                        // The least recently used key went: find it.
                        let gone: Vec<u64> =
                            m.keys().copied().filter(|g| t.get(g).is_none()).collect();
                        assert_eq!(gone.len(), 1, "step {step}");
                        m.remove(&gone[0]);
                    }
                    m.insert(k, (k, [k; 3]));
                }
            },
        }
        assert_eq!(t.len(), m.len());
    }
    for (k, v, c, _, _) in t.iter_cold() {
        assert_eq!((*v, *c), m[k]);
    }
    assert_eq!(t.get_cold(&u64::MAX), None);
}

/// An entry of exactly 64 bytes at `Align64` is one cache line, and the
/// cold parts are not part of it.
#[test]
fn align64_entries_are_one_cache_line() {
    type T = BoundedTable<[u8; 40], [u8; 24], 1, Align64, [u64; 4]>;
    assert_eq!(T::entry_size(), 64);
    assert_eq!(T::entry_align(), 64);
    let t = T::with_capacity_and_seed(1024, HashSeed::fixed(1));
    // 64 entry + 32 cold + 16 links + 8 index (2048 slots) + the bitmap.
    assert_eq!(t.bytes_per_entry(), 64 + 32 + 16 + 8 + 1);
}
