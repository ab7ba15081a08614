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
//!   multi-millisecond stall on the per-packet path.) See [`index`].
//! * Every entry sits on one of `L` intrusive LRU lists (the caller picks the
//!   list, e.g. one per idle-timeout class). Lists are ordered by last use
//!   at one-second granularity: an entry is moved to its list's tail at most
//!   once per second, which keeps the per-packet cost to the lookup alone.
//!   Under pressure the least recently used entry across all lists is
//!   evicted (oldest first); expiry walks list heads only. See [`lru`].
//! * Layout: an entry holds key and value only — what a lookup compares and
//!   what the caller reads on its common path — at the alignment `A` the
//!   owner picks (the flow table packs its key and hot fields into exactly
//!   64 bytes at a 64-byte alignment, so a lookup touches one cache line).
//!   Beside the entries, in parallel arrays a lookup does not read: the
//!   owner's cold part of each value (`C`, read through the `*_cold` calls
//!   only when the caller needs it), and the LRU links and last-use times
//!   (read at most once per entry and second: a bitmap says which entries
//!   were already used this second). The `*_hashed` calls and the
//!   prefetches let a caller hash a batch of keys first and fetch their
//!   memory ahead of use. The big arrays ask for transparent huge pages
//!   (see [`memory`]).

mod index;
mod lru;
mod memory;
mod seed;
#[cfg(test)]
mod tests;

use std::hash::{BuildHasher, Hash};

pub use seed::HashSeed;

use index::Slot;
use lru::{Links, List, FREE, NIL};

/// Largest capacity: entry indices live in the low 24 bits of an index slot.
pub const MAX_CAPACITY: usize = (1 << index::INDEX_BITS) - 2;

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

/// 32-byte entry alignment: an entry of 32 bytes or less stays within one
/// cache line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(32))]
pub struct Align32;

/// Cache-line alignment: an entry of 64 bytes is exactly one cache line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(64))]
pub struct Align64;

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

/// Result of [`BoundedTable::get_or_insert`] (`T` is `&mut V`) and of
/// [`BoundedTable::get_or_insert_cold_hashed`] (`T` is `(&mut V, &mut C)`).
#[derive(Debug)]
pub enum Insert<T> {
    /// The key was present.
    Found(T),
    /// A new entry was created; `evicted` says whether the least recently
    /// used entry had to go to make room.
    Inserted { value: T, evicted: bool },
}

/// Bounded LRU hash table with `L` lists, entries aligned as `A`, and a
/// cold part `C` of each value kept beside the entries.
pub struct BoundedTable<K, V, const L: usize, A = NaturalAlign, C = ()> {
    slots: Box<[Slot]>,
    mask: usize,
    entries: Vec<Entry<K, V, A>>,
    /// Cold part of each value, parallel to `entries`.
    cold: Vec<C>,
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

impl<K: Hash + Eq + Copy, V, const L: usize, A, C: Default> BoundedTable<K, V, L, A, C> {
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
        let index = vec![Slot::EMPTY; slots].into_boxed_slice();
        let entries = Vec::with_capacity(capacity);
        let cold = Vec::with_capacity(capacity);
        let links = Vec::with_capacity(capacity);
        memory::advise_huge_pages(index.as_ptr(), std::mem::size_of_val(&*index));
        memory::advise_huge_pages(entries.as_ptr(), capacity * Self::entry_size());
        memory::advise_huge_pages(cold.as_ptr(), capacity * std::mem::size_of::<C>());
        memory::advise_huge_pages(links.as_ptr(), capacity * std::mem::size_of::<Links>());
        BoundedTable {
            slots: index,
            mask: slots - 1,
            entries,
            cold,
            links,
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

    /// Bytes of memory held per entry of capacity (index, entries, cold
    /// parts, links and the used-this-second bitmap).
    pub fn bytes_per_entry(&self) -> usize {
        let index = self.slots.len() * std::mem::size_of::<Slot>();
        let entries = self.capacity * std::mem::size_of::<Entry<K, V, A>>();
        let cold = self.capacity * std::mem::size_of::<C>();
        let links = self.capacity * std::mem::size_of::<Links>();
        let used = std::mem::size_of_val(&*self.used);
        (index + entries + cold + links + used).div_ceil(self.capacity)
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

    /// Look a key up without touching its recency.
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        let h = self.hash(key);
        self.find(key, h).map(|e| &self.entries[e as usize].value)
    }

    /// [`Self::get`] with the value's cold part.
    #[inline]
    pub fn get_cold(&self, key: &K) -> Option<(&V, &C)> {
        let h = self.hash(key);
        self.find(key, h)
            .map(|e| (&self.entries[e as usize].value, &self.cold[e as usize]))
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

    /// [`Self::get_mut_hashed`] with the value's cold part (which the
    /// lookup itself does not read).
    #[inline(always)]
    pub fn get_mut_cold_hashed(
        &mut self,
        hash: u64,
        key: &K,
        now: u32,
    ) -> Option<(&mut V, &mut C)> {
        let e = self.find(key, hash)? as usize;
        self.touch(e as u32, now);
        Some((&mut self.entries[e].value, &mut self.cold[e]))
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
    ) -> Insert<&mut V> {
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
    ) -> Insert<&mut V> {
        match self.get_or_insert_cold_hashed(h, key, now, list, || (make(), C::default())) {
            Insert::Found((value, _)) => Insert::Found(value),
            Insert::Inserted {
                value: (value, _),
                evicted,
            } => Insert::Inserted { value, evicted },
        }
    }

    /// [`Self::get_or_insert_hashed`] with the value's cold part: `make`
    /// builds both.
    #[inline]
    pub fn get_or_insert_cold_hashed(
        &mut self,
        h: u64,
        key: K,
        now: u32,
        list: usize,
        make: impl FnOnce() -> (V, C),
    ) -> Insert<(&mut V, &mut C)> {
        if let Some(e) = self.find(&key, h) {
            self.touch(e, now);
            let e = e as usize;
            return Insert::Found((&mut self.entries[e].value, &mut self.cold[e]));
        }
        let (e, evicted) = self.insert_new(h, key, now, list, make());
        let e = e as usize;
        Insert::Inserted {
            value: (&mut self.entries[e].value, &mut self.cold[e]),
            evicted,
        }
    }

    /// Insert a key known to be absent, with its value and cold part.
    fn insert_new(&mut self, h: u64, key: K, now: u32, list: usize, made: (V, C)) -> (u32, bool) {
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
        let (value, cold) = made;
        let entry = Entry {
            _align: [],
            key,
            value,
        };
        let e = if self.free_head != NIL {
            let e = self.free_head;
            self.free_head = self.links[e as usize].next;
            self.entries[e as usize] = entry;
            self.cold[e as usize] = cold;
            self.links[e as usize] = links;
            e
        } else {
            self.entries.push(entry);
            self.cold.push(cold);
            self.links.push(links);
            (self.entries.len() - 1) as u32
        };
        // Its bit may be left from a former use of the entry: clear it, so
        // a set bit still means "used in `used_second`".
        self.used[e as usize / 64] &= !(1u64 << (e % 64));
        self.len += 1;
        self.push_tail(e, list);
        self.index_insert(h, e);
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
            self.move_to_list(e, list);
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

    /// Seconds since `key` was last used.
    pub fn idle(&self, key: &K, now: u32) -> Option<u32> {
        let h = self.hash(key);
        self.find(key, h)
            .map(|e| now.wrapping_sub(self.links[e as usize].last_seen))
    }

    /// Iterate over live entries (unordered), with each entry's list and
    /// last-seen time.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V, usize, u32)> + '_ {
        self.iter_cold()
            .map(|(k, v, _, list, seen)| (k, v, list, seen))
    }

    /// [`Self::iter`] with each value's cold part.
    pub fn iter_cold(&self) -> impl Iterator<Item = (&K, &V, &C, usize, u32)> + '_ {
        self.entries
            .iter()
            .zip(&self.cold)
            .zip(&self.links)
            .filter_map(|((e, c), l)| {
                (l.list != FREE).then_some((&e.key, &e.value, c, l.list as usize, l.last_seen))
            })
    }

    /// Drop everything (keeps the memory).
    pub fn clear(&mut self) {
        self.slots.fill(Slot::EMPTY);
        self.entries.clear();
        self.cold.clear();
        self.links.clear();
        self.used.fill(0);
        self.free_head = NIL;
        self.len = 0;
        self.lists = [List::EMPTY; L];
    }

    /// Take entry `e` out of the index and its list, onto the free chain.
    fn remove_entry(&mut self, e: u32) {
        self.index_remove(e);
        self.unlink(e);
        let links = &mut self.links[e as usize];
        links.list = FREE;
        links.next = self.free_head;
        self.free_head = e;
        self.len -= 1;
    }
}
