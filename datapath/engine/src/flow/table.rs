//! The bounded flow table: lookups, insertion and eviction, idle timeouts
//! per state class, and the observation of each segment.

use serde::Serialize;

use crate::class::RstClass;
use crate::table::{Align64, BoundedTable, Insert};
use crate::wire::{Segment, TcpFlags};

use super::judge::guard::RstGuard;
use super::judge::{Flow, FlowCold, FlowMut, RstJudgment};
use super::key::{FlowKey, Header, Packet, Side};
use super::state::{FlowState, TimeoutClass, LISTS};

/// Idle timeouts per state class, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// SYN-SENT and SYN-RECEIVED (Linux retries a SYN for ~127 s; a
    /// half-open entry is the first thing a SYN flood creates).
    pub handshake: u32,
    /// Established and midstream flows.
    pub established: u32,
    /// FIN-WAIT, CLOSE-WAIT, LAST-ACK.
    pub closing: u32,
    /// TIME-WAIT (Linux holds it 60 s) and reset flows (kept so repeated
    /// RSTs are recognised).
    pub closed: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: 60,
            established: 7200,
            closing: 120,
            closed: 60,
        }
    }
}

impl Timeouts {
    fn of(&self, class: TimeoutClass) -> u32 {
        match class {
            TimeoutClass::Handshake => self.handshake,
            TimeoutClass::Established => self.established,
            TimeoutClass::Closing => self.closing,
            TimeoutClass::Closed => self.closed,
        }
    }
}

/// Flow-table counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FlowStats {
    /// Flows created.
    pub created: u64,
    /// Flows removed after their idle timeout.
    pub expired: u64,
    /// Live flows evicted (oldest first) to make room.
    pub evicted: u64,
    /// Packets that needed a new entry and found the table full (room is
    /// then made from expired flows, else by evicting the oldest).
    pub table_full: u64,
}

/// What tracking learned from one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Present for RST segments.
    pub rst: Option<RstJudgment>,
    /// State after the segment; `None` when no flow exists (untracked RST).
    pub state: Option<FlowState>,
}

/// The table's entries: key and [`Flow`] in one 64-byte cache line, the
/// [`FlowCold`] part beside them.
type Entries = BoundedTable<FlowKey, Flow, LISTS, Align64, FlowCold>;

/// The bounded flow table.
pub struct FlowTable {
    table: Entries,
    timeouts: Timeouts,
    stats: FlowStats,
    /// Last second an expiry sweep ran.
    swept: u32,
}

impl FlowTable {
    pub fn new(capacity: usize, timeouts: Timeouts) -> FlowTable {
        FlowTable {
            table: BoundedTable::with_capacity(capacity),
            timeouts,
            stats: FlowStats::default(),
            swept: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }

    pub fn stats(&self) -> FlowStats {
        self.stats
    }

    /// Memory per tracked flow of capacity, in bytes.
    pub fn bytes_per_flow(&self) -> usize {
        self.table.bytes_per_entry()
    }

    /// Iterate over tracked flows with their idle time in seconds.
    pub fn iter(&self, now: u32) -> impl Iterator<Item = (&FlowKey, &Flow, u32)> + '_ {
        self.table
            .iter()
            .map(move |(k, f, _, seen)| (k, f, now.wrapping_sub(seen)))
    }

    /// Remove flows past their idle timeout. Runs at most once per second
    /// of `now`; cost is proportional to what expires.
    #[inline]
    pub fn expire(&mut self, now: u32) {
        if now == self.swept {
            return;
        }
        self.swept = now;
        self.expire_all(now);
    }

    fn expire_all(&mut self, now: u32) {
        for (list, class) in [
            TimeoutClass::Handshake,
            TimeoutClass::Established,
            TimeoutClass::Closing,
            TimeoutClass::Closed,
        ]
        .into_iter()
        .enumerate()
        {
            let n = self
                .table
                .expire(list, now, self.timeouts.of(class), |_, _| {});
            self.stats.expired += n as u64;
        }
    }

    /// The key, side and hash of `seg`'s flow, with the header fields:
    /// what [`Self::observe_packet`] and the rest of the engine work from.
    #[inline]
    pub fn packet(&self, seg: &Segment<'_>) -> Packet {
        let (key, from) = FlowKey::of(seg);
        Packet {
            key,
            hash: self.table.hash_of(&key),
            hdr: Header::of(seg),
            from,
        }
    }

    /// Ask the CPU to fetch the index slot of `p`'s flow.
    #[inline]
    pub fn prefetch_slot(&self, p: &Packet) {
        self.table.prefetch_slot(p.hash);
    }

    /// Ask the CPU to fetch `p`'s flow entry for a lookup at `now` (reads
    /// its index slot: call once [`Self::prefetch_slot`] had time to land).
    #[inline]
    pub fn prefetch_entry(&self, p: &Packet, now: u32) {
        self.table.prefetch_entry(p.hash, now);
    }

    /// Track one TCP segment at time `now` (seconds) and judge it if it is a
    /// RST. RSTs never create flows; SYNs, SYN-ACKs and other segments do.
    #[inline]
    pub fn observe(&mut self, seg: &Segment<'_>, now: u32) -> Observation {
        let p = self.packet(seg);
        self.observe_packet(&p, now)
    }

    /// [`Self::observe`] for a segment already reduced to a [`Packet`].
    #[inline(always)]
    pub fn observe_packet(&mut self, p: &Packet, now: u32) -> Observation {
        if p.hdr.flags.0 & (TcpFlags::SYN | TcpFlags::RST) == 0 {
            // Most segments: neither SYN nor RST, on a flow we track. What
            // the general path below does for them, without its branches.
            if let Some((hot, cold)) = self.table.get_mut_cold_hashed(p.hash, &p.key, now) {
                let before = hot.state;
                // A flow a reset closed takes the general path.
                if before != FlowState::Closed {
                    let mut flow = FlowMut::new(hot, cold);
                    flow.update_other(p.from, &p.hdr);
                    let state = flow.hot.state;
                    if state != before {
                        self.relist(p.hash, &p.key, before.timeout_class(), state);
                    }
                    return Observation {
                        rst: None,
                        state: Some(state),
                    };
                }
            }
        }
        self.observe_slow(p, now)
    }

    #[inline(never)]
    fn observe_slow(&mut self, p: &Packet, now: u32) -> Observation {
        let (key, from, hash, seg) = (p.key, p.from, p.hash, &p.hdr);
        if seg.flags.rst() {
            return self.observe_rst(p, now);
        }
        let new_state = if seg.flags.syn() {
            if seg.flags.ack() {
                FlowState::SynReceived
            } else {
                FlowState::SynSent
            }
        } else {
            FlowState::Midstream
        };
        if self.table.is_full() && !self.table.contains_hashed(hash, &key) {
            // Room first from flows already past their timeout; only if
            // there are none does the insert below evict a live flow.
            self.stats.table_full += 1;
            self.expire_all(now);
        }
        let (mut flow, before) = match self.table.get_or_insert_cold_hashed(
            hash,
            key,
            now,
            new_state.timeout_class() as usize,
            || Flow::new(new_state),
        ) {
            Insert::Found((hot, cold)) => {
                let mut flow = FlowMut::new(hot, cold);
                let before = flow.hot.state.timeout_class();
                // A fresh SYN on a finished connection is a new connection
                // reusing the 4-tuple.
                if seg.flags.syn()
                    && !seg.flags.ack()
                    && matches!(flow.hot.state, FlowState::TimeWait | FlowState::Closed)
                {
                    flow.reset_to(FlowState::SynSent);
                    flow.hot.origin = Some(from);
                }
                (flow, before)
            }
            Insert::Inserted {
                value: (hot, cold),
                evicted,
            } => {
                self.stats.created += 1;
                self.stats.evicted += evicted as u64;
                if seg.flags.syn() {
                    hot.origin = Some(if seg.flags.ack() { from.peer() } else { from });
                }
                (FlowMut::new(hot, cold), new_state.timeout_class())
            }
        };
        // A flow a reset closed (on one side or both): see
        // `Flow::update_after_reset`. A new SYN, handled above, starts the
        // 4-tuple again.
        if flow.hot.state == FlowState::Closed {
            flow.update_after_reset(from, seg);
        } else {
            flow.update(from, seg);
        }
        let state = flow.hot.state;
        self.relist(hash, &key, before, state);
        Observation {
            rst: None,
            state: Some(state),
        }
    }

    fn observe_rst(&mut self, p: &Packet, now: u32) -> Observation {
        let (key, from, seg) = (&p.key, p.from, &p.hdr);
        let with_data = seg.payload_len > 0;
        let Some((hot, cold)) = self.table.get_mut_cold_hashed(p.hash, key, now) else {
            let class = if seg.flags.syn() || seg.flags.fin() {
                RstClass::InvalidFlags
            } else {
                RstClass::NoFlow
            };
            return Observation {
                rst: Some(RstJudgment {
                    class,
                    with_data,
                    service_port: p.dst_port(),
                }),
                state: None,
            };
        };
        let mut flow = FlowMut::new(hot, cold);
        let class = flow.judge(from, seg);
        let service_port = flow.hot.service_port(key).unwrap_or_else(|| p.dst_port());
        let before = flow.hot.state.timeout_class();
        flow.after_reset(from, class);
        let state = flow.hot.state;
        self.relist(p.hash, key, before, state);
        Observation {
            rst: Some(RstJudgment {
                class,
                with_data,
                service_port,
            }),
            state: Some(state),
        }
    }

    #[inline(always)]
    fn relist(&mut self, hash: u64, key: &FlowKey, before: TimeoutClass, state: FlowState) {
        let after = state.timeout_class();
        if after != before {
            self.table.set_list_hashed(hash, key, after as usize);
        }
    }

    /// Look a flow up by one of its packets' addresses.
    pub fn get(&self, key: &FlowKey) -> Option<&Flow> {
        self.table.get(key)
    }

    /// Judge a RST sent by `from` on the flow of `key` as the receiving
    /// kernel would, without changing the flow (`no_flow` when it is not
    /// tracked): for tests and tools that compare a judgment made elsewhere.
    pub fn judge_rst(&self, key: &FlowKey, from: Side, seg: &Segment<'_>) -> RstClass {
        match self.table.get_cold(key) {
            Some((flow, cold)) => {
                let (mut flow, mut cold) = (*flow, *cold);
                FlowMut::new(&mut flow, &mut cold).judge(from, &Header::of(seg))
            }
            None => RstClass::NoFlow,
        }
    }

    /// The state the in-kernel RST guard may judge the flow of `key` by
    /// (see [`RstGuard`]), or `None`: not tracked, or its RSTs must all
    /// reach the engine.
    pub fn rst_guard(&self, key: &FlowKey) -> Option<RstGuard> {
        self.table
            .get_cold(key)
            .and_then(|(flow, cold)| flow.rst_guard(cold))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(i: u32) -> Vec<u8> {
        // Ethernet + IPv4 + TCP SYN from 198.18.x.y:40000 to 198.19.0.1:80.
        let mut f = vec![0u8; 54];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[198, 18, (i >> 8) as u8, i as u8]);
        ip[16..20].copy_from_slice(&[198, 19, 0, 1]);
        let tcp = &mut f[34..54];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&i.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x02;
        f
    }

    fn observe(t: &mut FlowTable, frame: &[u8], now: u32) {
        match crate::wire::parse(crate::wire::LinkType::Ethernet, frame).unwrap() {
            crate::wire::Parsed::Tcp(seg) => {
                t.observe(&seg, now);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_table_reclaims_expired_before_evicting() {
        let timeouts = Timeouts {
            handshake: 10,
            ..Timeouts::default()
        };
        let mut t = FlowTable::new(4, timeouts);
        for i in 0..4 {
            observe(&mut t, &syn(i), 100);
        }
        // Half-open flows are past their 10 s timeout at 111: reclaimed.
        observe(&mut t, &syn(4), 111);
        let s = t.stats();
        assert_eq!((s.table_full, s.expired, s.evicted), (1, 4, 0));
        for i in 5..8 {
            observe(&mut t, &syn(i), 111);
        }
        // Full of live flows now: the oldest goes.
        observe(&mut t, &syn(8), 112);
        let s = t.stats();
        assert_eq!((s.table_full, s.evicted, s.created), (2, 1, 9));
        assert_eq!(t.len(), 4);
    }

    /// A flow-table entry (key and the flow's hot part) is 64 bytes at a
    /// 64-byte alignment: every lookup touches exactly one cache line.
    #[test]
    fn entries_are_one_cache_line() {
        assert_eq!(std::mem::size_of::<FlowKey>(), 37);
        assert_eq!(std::mem::size_of::<Flow>(), 27);
        assert_eq!(Entries::entry_size(), 64);
        assert_eq!(Entries::entry_align(), 64);
    }

    #[test]
    fn flow_fits_the_memory_budget() {
        let t = FlowTable::new(100_000, Timeouts::default());
        eprintln!(
            "key {} B, flow {} + {} B, {} B per flow at 100k",
            std::mem::size_of::<FlowKey>(),
            std::mem::size_of::<Flow>(),
            std::mem::size_of::<FlowCold>(),
            t.bytes_per_flow()
        );
        assert!(
            t.bytes_per_flow() <= 128,
            "{} bytes per flow",
            t.bytes_per_flow()
        );
    }
}
