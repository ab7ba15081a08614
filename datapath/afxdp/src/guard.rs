//! The workers' side of the in-kernel RST guard: which flows have an entry
//! in the XDP programs' `guard` maps, and keeping those entries true to the
//! engine (see `rstwall_shared.h`, "The RST guard").
//!
//! Entries are kept for the flows under attack: a flow gets one when a RST
//! the guard could have dropped (in_window, out_of_window, syn_sent_bad_ack,
//! dropped by the policy) reached the worker, so from then on the flood
//! against it dies in XDP. The ports' programs share one map (the two
//! directions of a flow arrive on different ports and both keep the
//! entry); a keeper given several maps puts the entry in each.
//!
//! The kernel program follows the flow itself from then on; the worker only
//! removes entries whose flow the engine no longer exports (a FIN, a reset,
//! forgotten), and replaces an entry the program marked stale while the
//! engine still exports the flow — only when it was stale at two sweeps in
//! a row, so that the segment that made it stale (a FIN still in the RX
//! ring, say) has reached the engine by then and the export reflects it.
//! The kernel is asked whether an entry is stale only for a guarded flow
//! whose spoofed RSTs still reach the worker (a stale entry drops nothing;
//! a live one lets through only the band around RCV.NXT): one lookup per
//! such flow and sweep, none for the flows the guard keeps quiet.
//!
//! Nothing here allocates on the per-packet path: the pending list and the
//! table of guarded flows are sized up front and stop taking flows when
//! full.

use std::collections::HashMap;

use rstwall_bpf::GuardMaps;
use rstwall_engine::engine::{Engine, Judged};
use rstwall_engine::flow::FlowKey;
use rstwall_engine::policy::Verdict;
use rstwall_engine::RstClass;

/// Flows one worker guards at most.
pub const MAX_GUARDED: usize = 16_384;
/// Flows that can wait for an entry within one batch.
const MAX_PENDING: usize = 256;

/// What a worker knows of a guarded flow's entry.
#[derive(Clone, Copy, Debug, Default)]
struct Guarded {
    /// The entry was stale at the last sweep.
    stale_once: bool,
    /// A RST the guard could have dropped reached the worker since the
    /// last sweep: the entry may be stale.
    suspect: bool,
}

/// A worker's guard keeper: handles on every port's guard maps.
#[derive(Debug)]
pub(crate) struct GuardKeeper {
    maps: Vec<GuardMaps>,
    pending: Vec<FlowKey>,
    guarded: HashMap<FlowKey, Guarded>,
    stats: GuardStats,
}

/// What the keeper did, for the worker's statistics: the API's type, so
/// the statistics document shows it as counted.
pub use rstwall_api::stats::afxdp::GuardStats;

/// Whether the guard could have dropped this RST: the worker should make
/// sure the next one of its flow dies in XDP.
#[inline]
fn guardable(j: &Judged<'_>) -> bool {
    matches!(
        j.rst().map(|r| r.class),
        Some(RstClass::InWindow | RstClass::OutOfWindow | RstClass::SynSentBadAck)
    ) && j.verdict() == Verdict::Drop
}

impl GuardKeeper {
    pub(crate) fn new(maps: Vec<GuardMaps>) -> GuardKeeper {
        GuardKeeper {
            maps,
            pending: Vec::with_capacity(MAX_PENDING),
            guarded: HashMap::with_capacity(MAX_GUARDED),
            stats: GuardStats::default(),
        }
    }

    /// One judged frame: note its flow if it needs an entry.
    #[inline]
    pub(crate) fn consider(&mut self, j: &Judged<'_>) {
        if !guardable(j) {
            return;
        }
        let Some(p) = j.packet() else { return };
        if let Some(g) = self.guarded.get_mut(&p.key) {
            g.suspect = true;
        } else if self.pending.len() < MAX_PENDING {
            self.pending.push(p.key);
        }
    }

    /// After a batch: entries for the flows noted in it.
    pub(crate) fn flush(&mut self, engine: &Engine) {
        for i in 0..self.pending.len() {
            let key = self.pending[i];
            if self.guarded.contains_key(&key) {
                continue;
            }
            if self.guarded.len() >= MAX_GUARDED {
                self.stats.full += 1;
                continue;
            }
            let Some(export) = engine.flows().rst_guard(&key) else {
                continue;
            };
            let mut inserted = false;
            for m in &self.maps {
                match m.insert(&key, &export) {
                    Ok(true) => inserted = true,
                    Ok(false) => {}
                    Err(_) => self.stats.errors += 1,
                }
            }
            if inserted {
                self.stats.inserted += 1;
                self.guarded.insert(key, Guarded::default());
            }
        }
        self.pending.clear();
    }

    /// At each publish: remove the entries of flows the engine no longer
    /// exports, and replace those found stale twice in a row.
    pub(crate) fn sweep(&mut self, engine: &Engine) {
        let maps = &self.maps;
        let stats = &mut self.stats;
        self.guarded.retain(|key, g| {
            let export = engine.flows().rst_guard(key);
            let Some(export) = export else {
                for m in maps {
                    if m.remove(key).is_err() {
                        stats.errors += 1;
                    }
                }
                stats.removed += 1;
                return false;
            };
            if !std::mem::take(&mut g.suspect) && !g.stale_once {
                return true;
            }
            let stale = maps
                .iter()
                .any(|m| m.get(key).ok().flatten().is_some_and(|e| e.is_stale()));
            if !stale {
                g.stale_once = false;
                return true;
            }
            if !g.stale_once {
                g.stale_once = true;
                return true;
            }
            g.stale_once = false;
            for m in maps {
                let _ = m.remove(key);
                if m.insert(key, &export).is_err() {
                    stats.errors += 1;
                }
            }
            stats.replaced += 1;
            true
        });
        self.stats.guarded = self.guarded.len() as u64;
    }

    /// Remove every entry this worker made (a clean stop).
    pub(crate) fn clear(&mut self) {
        for key in self.guarded.keys() {
            for m in &self.maps {
                let _ = m.remove(key);
            }
        }
        self.stats.removed += self.guarded.len() as u64;
        self.guarded.clear();
        self.stats.guarded = 0;
    }

    pub(crate) fn stats(&self) -> GuardStats {
        self.stats
    }
}
