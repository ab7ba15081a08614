//! The index of a [`BoundedTable`]: open addressing with linear probing
//! over 32-bit slots, backward-shift deletion, and the prefetches that
//! fetch a lookup's memory ahead of use.

use std::hash::Hash;

use super::{prefetch, BoundedTable};

pub(super) const INDEX_BITS: u32 = 24;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// Slots [`BoundedTable::prefetch_entry`] looks at.
const PREFETCH_PROBES: usize = 4;

/// An index slot packs 8 bits of the hash (so most probes that do not match
/// never touch the entry) over a 24-bit entry index plus one; 0 is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot(u32);

impl Slot {
    pub(super) const EMPTY: Slot = Slot(0);

    #[inline]
    fn new(tag: u32, entry: u32) -> Slot {
        Slot((tag << INDEX_BITS) | (entry + 1))
    }
    #[inline]
    fn is_empty(self) -> bool {
        self.0 == 0
    }
    #[inline]
    fn entry(self) -> u32 {
        (self.0 & INDEX_MASK) - 1
    }
    #[inline]
    fn tag(self) -> u32 {
        self.0 >> INDEX_BITS
    }
}

impl<K: Hash + Eq + Copy, V, const L: usize, A, C: Default> BoundedTable<K, V, L, A, C> {
    /// Ask the CPU to fetch the index slot a lookup of `hash` starts at.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        prefetch(self.slots.as_ptr().wrapping_add(hash as usize & self.mask));
    }

    /// Ask the CPU to fetch the entry a lookup of `hash` would compare
    /// first (call once [`Self::prefetch_slot`] had time to land: this reads
    /// the probe run): every cache line of the entry, and its links if it
    /// was not used yet this second (a lookup at `now` then moves it on its
    /// LRU list). Never the cold part: a lookup does not read it. Probe runs
    /// are short: the first few slots are looked at, for the first whose
    /// tag matches.
    #[inline]
    pub fn prefetch_entry(&self, hash: u64, now: u32) {
        let tag = Self::tag(hash);
        let mut i = hash as usize;
        for _ in 0..PREFETCH_PROBES {
            let s = self.slot(i);
            if s.is_empty() {
                return;
            }
            if s.tag() == tag {
                self.prefetch_at(s.entry() as usize, now);
                return;
            }
            i = i.wrapping_add(1);
        }
    }

    #[inline]
    fn prefetch_at(&self, e: usize, now: u32) {
        let p = self.entries.as_ptr().wrapping_add(e).cast::<u8>();
        let first = p.wrapping_sub(p as usize % 64);
        let end = p.wrapping_add(Self::entry_size());
        // An entry of `size` bytes at `align` starts at most 64 - align
        // bytes into a line: that many lines at most (known at compile time;
        // one for the flow table's).
        let most = (64 - Self::entry_align().min(64) + Self::entry_size()).div_ceil(64);
        if most <= 2 {
            prefetch(first);
            if most == 2 {
                prefetch(first.wrapping_add(64));
            }
        } else {
            let mut line = first;
            while line < end {
                prefetch(line);
                line = line.wrapping_add(64);
            }
        }
        let used = self.used_second == now
            && self
                .used
                .get(e / 64)
                .is_some_and(|w| w & (1u64 << (e % 64)) != 0);
        if !used {
            prefetch(self.links.as_ptr().wrapping_add(e));
        }
    }

    #[inline]
    fn tag(hash: u64) -> u32 {
        (hash >> 56) as u32
    }

    /// The slot at `i & mask`.
    #[inline(always)]
    fn slot(&self, i: usize) -> Slot {
        let i = i & self.mask;
        debug_assert!(i < self.slots.len());
        // SAFETY: `slots.len()` is a power of two and `mask` is one less
        // (set together in `with_capacity`, never changed), so `i & mask`
        // is in bounds.
        unsafe { *self.slots.get_unchecked(i) }
    }

    /// Entry index of `key`, if present.
    #[inline(always)]
    pub(super) fn find(&self, key: &K, hash: u64) -> Option<u32> {
        let tag = Self::tag(hash);
        let mut i = hash as usize;
        loop {
            let s = self.slot(i);
            if s.is_empty() {
                return None;
            }
            if s.tag() == tag && self.entries[s.entry() as usize].key == *key {
                return Some(s.entry());
            }
            i = i.wrapping_add(1);
        }
    }

    /// Index slots (a power of two).
    #[cfg(test)]
    pub(super) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Slots a lookup of `key` passes before its own (0: its home slot).
    #[cfg(test)]
    pub(super) fn probe_length(&self, key: &K) -> usize {
        let h = self.hash(key);
        let e = self.find(key, h).expect("key present");
        let mut i = h as usize;
        let mut n = 0;
        while self.slot(i).is_empty() || self.slot(i).entry() != e {
            i = i.wrapping_add(1);
            n += 1;
        }
        n
    }

    /// Point the first free slot of `h`'s probe run at entry `e`.
    pub(super) fn index_insert(&mut self, h: u64, e: u32) {
        let mut i = h as usize & self.mask;
        while !self.slots[i].is_empty() {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = Slot::new(Self::tag(h), e);
    }

    /// Take entry `e` out of the index.
    pub(super) fn index_remove(&mut self, e: u32) {
        let h = self.hash(&self.entries[e as usize].key);
        let mut i = h as usize & self.mask;
        while self.slots[i].is_empty() || self.slots[i].entry() != e {
            i = (i + 1) & self.mask;
        }
        // Backward-shift deletion: pull later members of the probe run back
        // into the hole so lookups never need tombstones.
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s.is_empty() {
                break;
            }
            let home = self.hash(&self.entries[s.entry() as usize].key) as usize & self.mask;
            // s may fill the hole at i unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                home > i && home <= j
            } else {
                home > i || home <= j
            };
            if !stays {
                self.slots[i] = s;
                i = j;
            }
        }
        self.slots[i] = Slot::EMPTY;
    }
}
