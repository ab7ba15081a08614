//! The program's counters, summed over CPUs.

use rstwall_engine::class::FlagClass;

use crate::shared::Counter;

/// A snapshot of the `counters` map, summed over CPUs. Fields are named
/// after `enum rstwall_counter`; the six flag-class counters are
/// `flag_classes`, indexed by [`FlagClass::index`].
///
/// Two invariants hold in every snapshot, because the program counts each
/// packet once in each group: [`XdpCounters::packets`] (class counters) and
/// [`XdpCounters::verdicts`] (verdict counters) are equal — up to packets
/// in flight on another CPU while the snapshot is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters {
    /// TCP segments by exclusive flag class.
    pub flag_classes: [u64; FlagClass::COUNT],
    /// Well-formed frames without TCP: non-IP, other transports, later
    /// fragments.
    pub non_tcp: u64,
    /// Frames the userspace parser would reject.
    pub malformed: u64,
    /// TCP handed to the AF_XDP socket of its queue.
    pub to_xsk: u64,
    /// Inline: non-TCP forwarded to the peer port.
    pub forwarded: u64,
    /// Tap: non-TCP dropped.
    pub tap_dropped: u64,
    /// TCP whose queue had no socket: forwarded (inline) or dropped (tap).
    pub bypassed: u64,
    /// IP packets dropped for a denied source.
    pub deny_dropped: u64,
    /// IP packets dropped for a blocked source.
    pub block_dropped: u64,
    /// Malformed frames dropped (all of them).
    pub malformed_dropped: u64,
    /// Inline: forwards that found no peer port; dropped.
    pub peer_missing: u64,
}

impl XdpCounters {
    /// From per-counter totals indexed by [`Counter::index`].
    pub fn from_totals(t: &[u64; Counter::COUNT]) -> XdpCounters {
        let at = |c: Counter| t[c.index()];
        let mut flag_classes = [0; FlagClass::COUNT];
        for class in FlagClass::ALL {
            flag_classes[class.index()] = at(Counter::of_class(class));
        }
        XdpCounters {
            flag_classes,
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
        }
    }

    /// One counter by its index.
    pub fn get(&self, counter: Counter) -> u64 {
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
        }
    }

    #[inline]
    pub fn flag_class(&self, class: FlagClass) -> u64 {
        self.flag_classes[class.index()]
    }

    /// TCP segments seen.
    pub fn tcp(&self) -> u64 {
        self.flag_classes.iter().sum()
    }

    /// Frames seen, by the class counters.
    pub fn packets(&self) -> u64 {
        self.tcp() + self.non_tcp + self.malformed
    }

    /// Frames seen, by the verdict counters.
    pub fn verdicts(&self) -> u64 {
        self.to_xsk
            + self.forwarded
            + self.tap_dropped
            + self.bypassed
            + self.deny_dropped
            + self.block_dropped
            + self.malformed_dropped
            + self.peer_missing
    }

    /// What was counted since `earlier` (counters only grow; a counter
    /// that went backwards, after a reload, reads as 0).
    pub fn since(&self, earlier: &XdpCounters) -> XdpCounters {
        let mut t = [0u64; Counter::COUNT];
        for c in Counter::ALL {
            t[c.index()] = self.get(c).saturating_sub(earlier.get(c));
        }
        XdpCounters::from_totals(&t)
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
        assert_eq!(c.verdicts(), (108..116).sum::<u64>());
        assert_eq!(c.since(&c), XdpCounters::default());
    }
}
