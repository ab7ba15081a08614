//! A bounded hash table with per-class LRU lists: the one structure behind
//! the flow table, the per-source rate-limit buckets and the per-host and
//! per-port statistics.
//!
//! * Fixed capacity chosen at construction; nothing allocates afterwards.
//! * Keys are hashed with foldhash under secrets from the operating system
//!   (`getrandom`): see [`seed`] for what that does and does not defend.
//! * Open addressing with linear probing and backward-shift deletion: no
//!   tombstones, so churn never degrades probes or forces a rehash pause.
//!   (We hand-write this instead of using `hashbrown::HashTable` because its
//!   tombstones trigger an O(n) in-place rehash under steady churn — a
//!   multi-millisecond stall on the per-packet path.)
//! * Every entry sits on one of `L` intrusive LRU lists (the caller picks the
//!   list, e.g. one per idle-timeout class). Lists are ordered by last use
//!   at one-second granularity: an entry is moved to its list's tail at most
//!   once per second, which keeps the per-packet cost to the lookup alone.
//! * Under pressure the least recently used entry across all lists is
//!   evicted (oldest first); expiry walks list heads only.
//! * Layout: an entry holds only key and value, at the alignment `A` the
//!   owner picks (the flow table's 96-byte entries are 32-byte aligned, so
//!   every lookup touches exactly two cache lines); the LRU links and
//!   last-use times live in a parallel array that a lookup reads at most
//!   once per entry and second (a bitmap says which entries were already
//!   used this second). The `*_hashed` calls and the prefetches let a
//!   caller hash a batch of keys first and fetch their memory ahead of use.

mod seed;

use std::hash::{BuildHasher, Hash};

pub use seed::HashSeed;

const NIL: u32 = u32::MAX;

/// Largest capacity: entry indices live in the low 24 bits of an index slot.
pub const MAX_CAPACITY: usize = (1 << 24) - 2;
const INDEX_BITS: u32 = 24;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
/// Slots [`BoundedTable::prefetch_entry`] looks at.
const PREFETCH_PROBES: usize = 4;

/// Recency bookkeeping of one entry.
#[derive(Clone, Copy, Debug)]
struct Links {
    prev: u32,
    /// Next on the LRU list, or next free entry when the entry is free.
    next: u32,
    /// Last use, in seconds of the caller's clock.
    last_seen: u32,
    /// List number, or `FREE`.
    list: u8,
}

const FREE: u8 = u8::MAX;

/// Key and value side by side: one lookup touches one place. `A` (a
/// zero-sized array of it) sets the alignment.
#[repr(C)]
struct Entry<K, V, A> {
    _align: [A; 0],
    key: K,
    value: V,
}

/// Default entry alignment: that of key and value.
#[derive(Clone, Copy, Debug, Default)]
pub struct NaturalAlign;

/// 32-byte entry alignment: an entry of 64 bytes or less stays within one
/// cache line, one of 96 within exactly two.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(32))]
pub struct Align32;

#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[derive(Clone, Copy, Debug)]
struct List {
    head: u32,
    tail: u32,
    len: u32,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

/// An index slot packs 8 bits of the hash (so most probes that do not match
/// never touch the entry) over a 24-bit entry index plus one; 0 is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot(u32);

impl Slot {
    const EMPTY: Slot = Slot(0);

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

/// Result of [`BoundedTable::get_or_insert`].
#[derive(Debug)]
pub enum Insert<'a, V> {
    /// The key was present.
    Found(&'a mut V),
    /// A new entry was created; `evicted` says whether the least recently
    /// used entry had to go to make room.
    Inserted { value: &'a mut V, evicted: bool },
}

/// Bounded LRU hash table with `L` lists, entries aligned as `A`.
pub struct BoundedTable<K, V, const L: usize, A = NaturalAlign> {
    slots: Box<[Slot]>,
    mask: usize,
    entries: Vec<Entry<K, V, A>>,
    /// Recency of each entry, parallel to `entries`.
    links: Vec<Links>,
    /// Bit `e` set: entry `e` was used in second `used_second` (its
    /// `last_seen` is that second), so using it again then changes nothing.
    /// A clear bit says nothing; all are cleared when the second changes.
    used: Box<[u64]>,
    used_second: u32,
    /// Head of the chain of free entries (through `Links::next`).
    free_head: u32,
    len: usize,
    lists: [List; L],
    capacity: usize,
    hasher: foldhash::fast::SeedableRandomState,
}

impl<K: Hash + Eq + Copy, V, const L: usize, A> BoundedTable<K, V, L, A> {
    /// A table for `capacity` entries (clamped to `1..=MAX_CAPACITY`). The
    /// index is sized for a load factor of at most 0.8.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_seed(capacity, HashSeed::from_os())
    }

    /// [`Self::with_capacity`] hashing under `seed` (tests, benchmarks).
    pub fn with_capacity_and_seed(capacity: usize, seed: HashSeed) -> Self {
        assert!(L > 0 && L < FREE as usize, "list count out of range");
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let slots = (capacity + capacity / 4 + 1).next_power_of_two();
        BoundedTable {
            slots: vec![Slot::EMPTY; slots].into_boxed_slice(),
            mask: slots - 1,
            entries: Vec::with_capacity(capacity),
            links: Vec::with_capacity(capacity),
            used: vec![0; capacity.div_ceil(64)].into_boxed_slice(),
            used_second: 0,
            free_head: NIL,
            len: 0,
            lists: [List::EMPTY; L],
            capacity,
            hasher: seed.hasher(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    pub fn list_len(&self, list: usize) -> usize {
        self.lists[list].len as usize
    }

    /// Bytes of memory held per entry of capacity (index, entries, links
    /// and the used-this-second bitmap).
    pub fn bytes_per_entry(&self) -> usize {
        let index = self.slots.len() * std::mem::size_of::<Slot>();
        let entries = self.capacity * std::mem::size_of::<Entry<K, V, A>>();
        let links = self.capacity * std::mem::size_of::<Links>();
        let used = std::mem::size_of_val(&*self.used);
        (index + entries + links + used).div_ceil(self.capacity)
    }

    /// Size of one entry (key and value, padded to the alignment).
    pub const fn entry_size() -> usize {
        std::mem::size_of::<Entry<K, V, A>>()
    }

    /// Alignment of the entries.
    pub const fn entry_align() -> usize {
        std::mem::align_of::<Entry<K, V, A>>()
    }

    #[inline]
    fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The hash of `key`, for the `*_hashed` calls and the prefetches.
    #[inline]
    pub fn hash_of(&self, key: &K) -> u64 {
        self.hash(key)
    }

    /// Ask the CPU to fetch the index slot a lookup of `hash` starts at.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        prefetch(self.slots.as_ptr().wrapping_add(hash as usize & self.mask));
    }

    /// Ask the CPU to fetch the entry a lookup of `hash` would compare
    /// first (call once [`Self::prefetch_slot`] had time to land: this reads
    /// the probe run): every cache line of the entry, and its links if it
    /// was not used yet this second (a lookup at `now` then moves it on its
    /// LRU list). Probe runs are short: the first few slots are looked at,
    /// for the first whose tag matches.
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
        // Every cache line the entry touches (two for the flow table's).
        let p = self.entries.as_ptr().wrapping_add(e).cast::<u8>();
        let first = p.wrapping_sub(p as usize % 64);
        let end = p.wrapping_add(Self::entry_size());
        // An entry of `size` bytes at `align` starts at most 64 - align
        // bytes into a line: that many lines at most (known at compile time).
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
    fn find(&self, key: &K, hash: u64) -> Option<u32> {
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
    fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Slots a lookup of `key` passes before its own (0: its home slot).
    #[cfg(test)]
    fn probe_length(&self, key: &K) -> usize {
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

    /// Look a key up without touching its recency.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        let h = self.hash(key);
        self.find(key, h).map(|e| &self.entries[e as usize].value)
    }

    /// Whether `key`, of hash `hash`, is present.
    #[inline]
    pub fn contains_hashed(&self, hash: u64, key: &K) -> bool {
        self.find(key, hash).is_some()
    }

    /// Look a key up and mark it used at `now` (seconds).
    #[inline]
    pub fn get_mut(&mut self, key: &K, now: u32) -> Option<&mut V> {
        let h = self.hash(key);
        self.get_mut_hashed(h, key, now)
    }

    /// [`Self::get_mut`] for a key whose hash is known.
    #[inline(always)]
    pub fn get_mut_hashed(&mut self, hash: u64, key: &K, now: u32) -> Option<&mut V> {
        let e = self.find(key, hash)?;
        self.touch(e, now);
        Some(&mut self.entries[e as usize].value)
    }

    /// Find `key` or insert `make()` on list `list`, evicting the least
    /// recently used entry when full.
    #[inline]
    pub fn get_or_insert(
        &mut self,
        key: K,
        now: u32,
        list: usize,
        make: impl FnOnce() -> V,
    ) -> Insert<'_, V> {
        let h = self.hash(&key);
        self.get_or_insert_hashed(h, key, now, list, make)
    }

    /// [`Self::get_or_insert`] for a key whose hash is known.
    #[inline]
    pub fn get_or_insert_hashed(
        &mut self,
        h: u64,
        key: K,
        now: u32,
        list: usize,
        make: impl FnOnce() -> V,
    ) -> Insert<'_, V> {
        if let Some(e) = self.find(&key, h) {
            self.touch(e, now);
            return Insert::Found(&mut self.entries[e as usize].value);
        }
        let e = self.insert_new(h, key, now, list, make);
        let evicted = e.1;
        Insert::Inserted {
            value: &mut self.entries[e.0 as usize].value,
            evicted,
        }
    }

    /// Insert a key known to be absent.
    fn insert_new(
        &mut self,
        h: u64,
        key: K,
        now: u32,
        list: usize,
        make: impl FnOnce() -> V,
    ) -> (u32, bool) {
        let evicted = if self.len == self.capacity {
            let victim = self.oldest().expect("full table has entries");
            self.remove_entry(victim);
            true
        } else {
            false
        };
        let links = Links {
            prev: NIL,
            next: NIL,
            last_seen: now,
            list: list as u8,
        };
        let entry = Entry {
            _align: [],
            key,
            value: make(),
        };
        let e = if self.free_head != NIL {
            let e = self.free_head;
            self.free_head = self.links[e as usize].next;
            self.entries[e as usize] = entry;
            self.links[e as usize] = links;
            e
        } else {
            self.entries.push(entry);
            self.links.push(links);
            (self.entries.len() - 1) as u32
        };
        // Its bit may be left from a former use of the entry: clear it, so
        // a set bit still means "used in `used_second`".
        self.used[e as usize / 64] &= !(1u64 << (e % 64));
        self.len += 1;
        self.push_tail(e, list);
        let mut i = h as usize & self.mask;
        while !self.slots[i].is_empty() {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = Slot::new(Self::tag(h), e);
        (e, evicted)
    }

    /// Insert only if there is room (never evicts). `None` when full.
    #[inline]
    pub fn try_insert(&mut self, key: K, now: u32, list: usize, value: V) -> Option<&mut V> {
        if self.len == self.capacity {
            return None;
        }
        match self.get_or_insert(key, now, list, || value) {
            Insert::Found(v) => Some(v),
            Insert::Inserted { value, .. } => Some(value),
        }
    }

    /// Move an existing key to another list (e.g. its timeout class changed).
    #[inline]
    pub fn set_list(&mut self, key: &K, list: usize) {
        let h = self.hash(key);
        self.set_list_hashed(h, key, list);
    }

    /// [`Self::set_list`] for a key whose hash is known.
    #[inline]
    pub fn set_list_hashed(&mut self, hash: u64, key: &K, list: usize) {
        if let Some(e) = self.find(key, hash) {
            if self.links[e as usize].list as usize != list {
                self.unlink(e);
                self.links[e as usize].list = list as u8;
                self.push_tail(e, list);
            }
        }
    }

    /// Remove a key; true if it was present.
    pub fn remove(&mut self, key: &K) -> bool {
        let h = self.hash(key);
        match self.find(key, h) {
            Some(e) => {
                self.remove_entry(e);
                true
            }
            None => false,
        }
    }

    /// Remove entries of `list` idle for longer than `timeout` seconds,
    /// calling `on_expire` for each. Returns how many were removed. Only
    /// list heads are visited, so the cost is proportional to the removals.
    pub fn expire(
        &mut self,
        list: usize,
        now: u32,
        timeout: u32,
        mut on_expire: impl FnMut(&K, &V),
    ) -> usize {
        let mut n = 0;
        loop {
            let e = self.lists[list].head;
            if e == NIL {
                break;
            }
            if now.wrapping_sub(self.links[e as usize].last_seen) <= timeout {
                break;
            }
            let entry = &self.entries[e as usize];
            on_expire(&entry.key, &entry.value);
            self.remove_entry(e);
            n += 1;
        }
        n
    }

    /// Seconds since `key` was last used.
    pub fn idle(&self, key: &K, now: u32) -> Option<u32> {
        let h = self.hash(key);
        self.find(key, h)
            .map(|e| now.wrapping_sub(self.links[e as usize].last_seen))
    }

    /// Iterate over live entries (unordered), with each entry's list and
    /// last-seen time.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V, usize, u32)> + '_ {
        self.entries.iter().zip(&self.links).filter_map(|(e, l)| {
            (l.list != FREE).then_some((&e.key, &e.value, l.list as usize, l.last_seen))
        })
    }

    /// Drop everything (keeps the memory).
    pub fn clear(&mut self) {
        self.slots.fill(Slot::EMPTY);
        self.entries.clear();
        self.links.clear();
        self.used.fill(0);
        self.free_head = NIL;
        self.len = 0;
        self.lists = [List::EMPTY; L];
    }

    // --- internals ---

    /// Mark entry `e` used at `now`: its last use becomes `now` and it
    /// moves to its list's tail, at most once per second.
    #[inline(always)]
    fn touch(&mut self, e: u32, now: u32) {
        if self.used_second != now {
            self.new_used_second(now);
        }
        let (word, bit) = (e as usize / 64, 1u64 << (e % 64));
        if self.used[word] & bit != 0 {
            return;
        }
        self.used[word] |= bit;
        self.touch_links(e, now);
    }

    #[cold]
    fn new_used_second(&mut self, now: u32) {
        self.used.fill(0);
        self.used_second = now;
    }

    /// The part of [`Self::touch`] that reads and moves links: at most
    /// once per entry and second.
    #[inline(never)]
    fn touch_links(&mut self, e: u32, now: u32) {
        let l = self.links[e as usize];
        if l.last_seen != now {
            self.links[e as usize].last_seen = now;
            if self.lists[l.list as usize].tail != e {
                self.unlink(e);
                self.push_tail(e, l.list as usize);
            }
        }
    }

    /// Least recently used entry across all lists.
    fn oldest(&self) -> Option<u32> {
        let mut best: Option<(u32, u32)> = None;
        for list in &self.lists {
            if list.head == NIL {
                continue;
            }
            let seen = self.links[list.head as usize].last_seen;
            // Wrapping comparison: `seen` is older than `b` if it is before it.
            match best {
                Some((_, b)) if (seen.wrapping_sub(b) as i32) >= 0 => {}
                _ => best = Some((list.head, seen)),
            }
        }
        best.map(|(e, _)| e)
    }

    fn remove_entry(&mut self, e: u32) {
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
        self.unlink(e);
        let links = &mut self.links[e as usize];
        links.list = FREE;
        links.next = self.free_head;
        self.free_head = e;
        self.len -= 1;
    }

    #[inline]
    fn unlink(&mut self, e: u32) {
        let Links {
            prev, next, list, ..
        } = self.links[e as usize];
        let list = &mut self.lists[list as usize];
        if prev == NIL {
            list.head = next;
        } else {
            self.links[prev as usize].next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.links[next as usize].prev = prev;
        }
        list.len -= 1;
    }

    #[inline]
    fn push_tail(&mut self, e: u32, list: usize) {
        let tail = self.lists[list].tail;
        let links = &mut self.links[e as usize];
        links.prev = tail;
        links.next = NIL;
        if tail == NIL {
            self.lists[list].head = e;
        } else {
            self.links[tail as usize].next = e;
        }
        self.lists[list].tail = e;
        self.lists[list].len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
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
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
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
}
