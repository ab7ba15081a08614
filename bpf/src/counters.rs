//! The program's counters, summed over CPUs.

use rstwall_engine::class::FlagClass;
use rstwall_engine::telemetry::Counters;
use rstwall_engine::RstClass;

use crate::shared::Counter;

/// A snapshot of the `counters` map, summed over CPUs: the statistics
/// document's XDP part ([`rstwall_api::stats::XdpCounters`]). Its fields
/// are named after `enum rstwall_counter`; [`ByCounter`] reads them by
/// [`Counter`].
pub use rstwall_api::stats::{FrameCounts, XdpCounters};

/// Merge the RST guard's drops, by class, of every port's program into a
/// worker total: one set of per-class counts for what was dropped, in the
/// kernel or by a worker.
pub fn merge_guard_drops<'a>(c: &mut Counters, ports: impl IntoIterator<Item = &'a XdpCounters>) {
    for x in ports {
        for (class, n) in [
            (RstClass::InWindow, x.guard_in_window),
            (RstClass::OutOfWindow, x.guard_out_of_window),
            (RstClass::SynSentBadAck, x.guard_syn_sent_bad_ack),
        ] {
            c.add_kernel_rst_drops(class, n);
        }
    }
}

/// The program's counters by [`Counter`]: from the map's per-counter
/// totals, and one at a time.
pub trait ByCounter {
    /// From per-counter totals indexed by [`Counter::index`].
    fn from_totals(t: &[u64; Counter::COUNT]) -> Self;
    /// One counter by its index.
    fn get(&self, counter: Counter) -> u64;
}

impl ByCounter for XdpCounters {
    fn from_totals(t: &[u64; Counter::COUNT]) -> XdpCounters {
        let at = |c: Counter| t[c.index()];
        XdpCounters {
            flag_classes: FlagClass::ALL.map(|class| at(Counter::of_class(class))),
            non_tcp: at(Counter::NonTcp),
            malformed: at(Counter::Malformed),
            to_xsk: at(Counter::ToXsk),
            forwarded: at(Counter::Forwarded),
            tap_dropped: at(Counter::TapDropped),
            bypassed: at(Counter::Bypassed),
            deny_dropped: at(Counter::DenyDropped),
            block_dropped: at(Counter::BlockDropped),
            malformed_dropped: at(Counter::MalformedDropped),
            peer_missing: at(Counter::PeerMissing),
            guard_dropped: at(Counter::GuardDropped),
            guard_in_window: at(Counter::GuardInWindow),
            guard_out_of_window: at(Counter::GuardOutOfWindow),
            guard_syn_sent_bad_ack: at(Counter::GuardSynSentBadAck),
            guard_stale: at(Counter::GuardStale),
        }
    }

    fn get(&self, counter: Counter) -> u64 {
        match counter {
            Counter::Syn => self.flag_classes[FlagClass::Syn.index()],
            Counter::SynAck => self.flag_classes[FlagClass::SynAck.index()],
            Counter::Fin => self.flag_classes[FlagClass::Fin.index()],
            Counter::Rst => self.flag_classes[FlagClass::Rst.index()],
            Counter::RstAck => self.flag_classes[FlagClass::RstAck.index()],
            Counter::Other => self.flag_classes[FlagClass::Other.index()],
            Counter::NonTcp => self.non_tcp,
            Counter::Malformed => self.malformed,
            Counter::ToXsk => self.to_xsk,
            Counter::Forwarded => self.forwarded,
            Counter::TapDropped => self.tap_dropped,
            Counter::Bypassed => self.bypassed,
            Counter::DenyDropped => self.deny_dropped,
            Counter::BlockDropped => self.block_dropped,
            Counter::MalformedDropped => self.malformed_dropped,
            Counter::PeerMissing => self.peer_missing,
            Counter::GuardDropped => self.guard_dropped,
            Counter::GuardInWindow => self.guard_in_window,
            Counter::GuardOutOfWindow => self.guard_out_of_window,
            Counter::GuardSynSentBadAck => self.guard_syn_sent_bad_ack,
            Counter::GuardStale => self.guard_stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_round_trip_through_fields() {
        let mut t = [0u64; Counter::COUNT];
        for (i, slot) in t.iter_mut().enumerate() {
            *slot = 100 + i as u64;
        }
        let c = XdpCounters::from_totals(&t);
        for counter in Counter::ALL {
            assert_eq!(c.get(counter), t[counter.index()], "{counter:?}");
        }
        assert_eq!(c.flag_class(FlagClass::RstAck), 104);
        assert_eq!(c.tcp(), (100..106).sum::<u64>());
        assert_eq!(c.packets(), (100..108).sum::<u64>());
        assert_eq!(c.verdicts(), (108..117).sum::<u64>());
        assert_eq!(c.since(&c), XdpCounters::default());
        // since() works field by field: every counter, by its index.
        let later = XdpCounters::from_totals(&t.map(|v| v * 3));
        let d = later.since(&c);
        for counter in Counter::ALL {
            assert_eq!(d.get(counter), 2 * t[counter.index()], "{counter:?}");
        }
    }
}
