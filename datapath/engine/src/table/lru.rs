//! Recency of a [`BoundedTable`]'s entries: the intrusive LRU lists, the
//! once-per-second touch, eviction of the oldest entry and expiry.

use std::hash::Hash;

use super::BoundedTable;

pub(super) const NIL: u32 = u32::MAX;
/// [`Links::list`] of a free entry.
pub(super) const FREE: u8 = u8::MAX;

/// Recency bookkeeping of one entry.
#[derive(Clone, Copy, Debug)]
pub(super) struct Links {
    pub(super) prev: u32,
    /// Next on the LRU list, or next free entry when the entry is free.
    pub(super) next: u32,
    /// Last use, in seconds of the caller's clock.
    pub(super) last_seen: u32,
    /// List number, or `FREE`.
    pub(super) list: u8,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct List {
    pub(super) head: u32,
    tail: u32,
    pub(super) len: u32,
}

impl List {
    pub(super) const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

impl<K: Hash + Eq + Copy, V, const L: usize, A, C: Default> BoundedTable<K, V, L, A, C> {
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

    /// Mark entry `e` used at `now`: its last use becomes `now` and it
    /// moves to its list's tail, at most once per second.
    #[inline(always)]
    pub(super) fn touch(&mut self, e: u32, now: u32) {
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

    /// Move entry `e` to the tail of `list`, if it is on another.
    pub(super) fn move_to_list(&mut self, e: u32, list: usize) {
        if self.links[e as usize].list as usize != list {
            self.unlink(e);
            self.links[e as usize].list = list as u8;
            self.push_tail(e, list);
        }
    }

    /// Least recently used entry across all lists.
    pub(super) fn oldest(&self) -> Option<u32> {
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

    #[inline]
    pub(super) fn unlink(&mut self, e: u32) {
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
    pub(super) fn push_tail(&mut self, e: u32, list: usize) {
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
