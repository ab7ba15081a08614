//! The kernel side's part of the statistics: what rstwall's XDP program
//! on one port counted. `rstwall-bpf` reads it from the program's per-CPU
//! `counters` map (its fields are named after `enum rstwall_counter` in
//! the BPF shared header); the documents show it as it is.

use rstwall_engine::FlagClass;
use serde::{Deserialize, Serialize};

/// A snapshot of one program's `counters` map, summed over CPUs. The six
/// flag-class counters are `flag_classes`, indexed by
/// [`FlagClass::index`] (in documents, an object by their names).
///
/// Two invariants hold in every snapshot, because the program counts each
/// packet once in each group: [`XdpCounters::packets`] (class counters) and
/// [`XdpCounters::verdicts`] (verdict counters) are equal — up to packets
/// in flight on another CPU while the snapshot is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpCounters {
    /// TCP segments by exclusive flag class.
    #[serde(with = "by_flag_class")]
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
    /// RSTs the in-kernel RST guard dropped (a verdict). The guard's
    /// counters are written only once they are not 0: a port without the
    /// guard reads as before it existed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub guard_dropped: u64,
    /// `guard_dropped` by RST class: in_window.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub guard_in_window: u64,
    /// `guard_dropped` by RST class: out_of_window.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub guard_out_of_window: u64,
    /// `guard_dropped` by RST class: syn_sent_bad_ack.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub guard_syn_sent_bad_ack: u64,
    /// Segments (SYN, FIN) that marked a guard entry stale.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub guard_stale: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// `flag_classes`, written as an object by flag-class name.
mod by_flag_class {
    use rstwall_engine::FlagClass;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::ByName;

    type Named = ByName<FlagClass, u64>;

    pub fn serialize<S: Serializer>(v: &[u64; FlagClass::COUNT], s: S) -> Result<S::Ok, S::Error> {
        Named::from_fn(|c| v[c.index()]).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<[u64; FlagClass::COUNT], D::Error> {
        let named = Named::deserialize(d)?;
        Ok(FlagClass::ALL.map(|c| named[c]))
    }
}

/// What the packet programs count every frame under exactly once: TCP
/// segments by flag class, frames without TCP, and frames the parser
/// rejects. The XDP program's [`XdpCounters`] and host mode's tc programs'
/// counters (`rstwall_bpf::host::HostCounters`) both start with these;
/// what they add up to is derived here once.
pub trait FrameCounts {
    /// TCP segments by flag class (indexed by [`FlagClass::index`]),
    /// well-formed frames without TCP, frames the parser rejects.
    fn frame_counts(&self) -> (&[u64; FlagClass::COUNT], u64, u64);

    #[inline]
    fn flag_class(&self, class: FlagClass) -> u64 {
        self.frame_counts().0[class.index()]
    }

    /// TCP segments seen.
    fn tcp(&self) -> u64 {
        self.frame_counts().0.iter().sum()
    }

    /// Frames seen, by the class counters.
    fn packets(&self) -> u64 {
        let (_, non_tcp, malformed) = self.frame_counts();
        self.tcp() + non_tcp + malformed
    }
}

impl FrameCounts for XdpCounters {
    fn frame_counts(&self) -> (&[u64; FlagClass::COUNT], u64, u64) {
        (&self.flag_classes, self.non_tcp, self.malformed)
    }
}

impl XdpCounters {
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
            + self.guard_dropped
    }

    /// What was counted since `earlier` (counters only grow; a counter
    /// that went backwards, after a reload, reads as 0).
    pub fn since(&self, earlier: &XdpCounters) -> XdpCounters {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        XdpCounters {
            flag_classes: FlagClass::ALL.map(|c| d(self.flag_class(c), earlier.flag_class(c))),
            non_tcp: d(self.non_tcp, earlier.non_tcp),
            malformed: d(self.malformed, earlier.malformed),
            to_xsk: d(self.to_xsk, earlier.to_xsk),
            forwarded: d(self.forwarded, earlier.forwarded),
            tap_dropped: d(self.tap_dropped, earlier.tap_dropped),
            bypassed: d(self.bypassed, earlier.bypassed),
            deny_dropped: d(self.deny_dropped, earlier.deny_dropped),
            block_dropped: d(self.block_dropped, earlier.block_dropped),
            malformed_dropped: d(self.malformed_dropped, earlier.malformed_dropped),
            peer_missing: d(self.peer_missing, earlier.peer_missing),
            guard_dropped: d(self.guard_dropped, earlier.guard_dropped),
            guard_in_window: d(self.guard_in_window, earlier.guard_in_window),
            guard_out_of_window: d(self.guard_out_of_window, earlier.guard_out_of_window),
            guard_syn_sent_bad_ack: d(self.guard_syn_sent_bad_ack, earlier.guard_syn_sent_bad_ack),
            guard_stale: d(self.guard_stale, earlier.guard_stale),
        }
    }
}
