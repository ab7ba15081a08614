//! What the lab knows of the daemon's counters, and the one place it gets
//! them from ([`read`]).

use anyhow::anyhow;
use rstwall_api::{ByName, Client, Stats};
use rstwall_engine::RstClass;
use serde::{Serialize, Serializer};

use super::topology::LabConfig;

/// The daemon's statistics now: the statistics document
/// ([`rstwall_api::Stats`], the one `--stats-json` writes too), asked for
/// on the lab's control socket ([`LabConfig::control_socket`]). Nothing
/// else reads statistics.
pub fn read(cfg: &LabConfig) -> anyhow::Result<Stats> {
    Client::at(cfg.control_socket())
        .stats()
        .map_err(|f| anyhow!(f.error).context("asking rstwall for its statistics"))
}

/// One RST class's counters, as the lab's report shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    pub total: u64,
    pub passed: u64,
    pub dropped: u64,
    pub would_drop: u64,
}

/// The counters the lab checks, from one snapshot ([`Counts::of`]) or as
/// the difference of two ([`Counts::since`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// By class, in [`RstClass::ALL`] order.
    #[serde(serialize_with = "by_name")]
    pub rst: [ClassCounts; RstClass::COUNT],
    /// TCP segments the engine judged.
    pub tcp: u64,
    pub syn: u64,
    pub synack: u64,
    pub fin: u64,
    /// Segments with the RST bit.
    pub rst_segments: u64,
    pub failed_connects: u64,
    pub passed: u64,
    pub dropped: u64,
    pub would_drop: u64,
    /// TCP frames the XDP program handed to rstwall's sockets, and TCP
    /// frames it forwarded itself because no socket was there (fail-open).
    pub to_xsk: u64,
    pub bypassed: u64,
    /// Frames the kernel could not put on a socket's RX ring (ring full, no
    /// buffer): lost before rstwall saw them.
    pub socket_lost: u64,
    pub flows_created: u64,
    pub flows_evicted: u64,
    pub table_full: u64,
}

fn by_name<S: Serializer>(rst: &[ClassCounts; RstClass::COUNT], s: S) -> Result<S::Ok, S::Error> {
    ByName::<RstClass, ClassCounts>::from_fn(|c| rst[c.index()]).serialize(s)
}

impl Counts {
    /// The counters of one statistics document.
    pub fn of(s: &Stats) -> Counts {
        let c = &s.totals.counters;
        let ring = s
            .totals
            .source
            .afxdp
            .as_ref()
            .map(|x| x.ring)
            .unwrap_or_default();
        Counts {
            rst: RstClass::ALL.map(|class| {
                let k = s.rst(class);
                ClassCounts {
                    total: k.total,
                    passed: k.passed,
                    dropped: k.dropped,
                    would_drop: k.would_drop,
                }
            }),
            tcp: c.tcp,
            syn: c.syn,
            synack: c.synack,
            fin: c.fin,
            rst_segments: c.rst,
            failed_connects: c.failed_connects,
            passed: c.passed,
            dropped: c.dropped,
            would_drop: c.would_drop,
            to_xsk: s.xdp_sum(|x| x.to_xsk),
            bypassed: s.xdp_sum(|x| x.bypassed),
            socket_lost: ring.rx_dropped + ring.rx_ring_full,
            flows_created: s.totals.flows.created,
            flows_evicted: s.totals.flows.evicted,
            table_full: s.totals.flows.table_full,
        }
    }

    pub fn class(&self, class: RstClass) -> ClassCounts {
        self.rst[class.index()]
    }

    /// What was counted after `before` (counters only grow; a restarted
    /// daemon would make this meaningless, and the caller checks for it).
    pub fn since(&self, before: &Counts) -> Counts {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let mut rst = [ClassCounts::default(); RstClass::COUNT];
        for (i, r) in rst.iter_mut().enumerate() {
            let (a, b) = (self.rst[i], before.rst[i]);
            *r = ClassCounts {
                total: d(a.total, b.total),
                passed: d(a.passed, b.passed),
                dropped: d(a.dropped, b.dropped),
                would_drop: d(a.would_drop, b.would_drop),
            };
        }
        Counts {
            rst,
            tcp: d(self.tcp, before.tcp),
            syn: d(self.syn, before.syn),
            synack: d(self.synack, before.synack),
            fin: d(self.fin, before.fin),
            rst_segments: d(self.rst_segments, before.rst_segments),
            failed_connects: d(self.failed_connects, before.failed_connects),
            passed: d(self.passed, before.passed),
            dropped: d(self.dropped, before.dropped),
            would_drop: d(self.would_drop, before.would_drop),
            to_xsk: d(self.to_xsk, before.to_xsk),
            bypassed: d(self.bypassed, before.bypassed),
            socket_lost: d(self.socket_lost, before.socket_lost),
            flows_created: d(self.flows_created, before.flows_created),
            flows_evicted: d(self.flows_evicted, before.flows_evicted),
            table_full: d(self.table_full, before.table_full),
        }
    }
}
