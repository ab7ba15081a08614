//! `GET /v1/stats` and `rstwall run --stats-json FILE`: every counter, in
//! one document.
//!
//! What every frame source has (the engine's counters, flows, policy
//! generations, batch latency, blocks) is what the workers publish,
//! defined once by the frame-source seam ([`rstwall_source::WorkerStats`],
//! [`rstwall_source::Totals`]): [`Worker`] and [`Totals`] are those types
//! with the batch latency summed up ([`LatencySummary`]). What a source
//! adds is flattened into the same objects from its own part
//! ([`SourceTotals`], [`SourceWorker`]: AF_XDP's sockets, rings and UMEM
//! frames, [`afxdp`]), and the kernel side's counters are [`XdpCounters`]
//! ([`xdp`]). Those parts are defined here and filled by the sources
//! themselves (`rstwall-afxdp`, `rstwall-bpf`), so a document shows
//! exactly what was counted. A host-mode source adds its part beside
//! AF_XDP's.

pub mod afxdp;
pub mod host;
pub mod xdp;

use rstwall_engine::policy::Mode;
use rstwall_engine::telemetry::ClassCounts;
use rstwall_engine::RstClass;
use serde::{Deserialize, Serialize};

pub use rstwall_source::LatencySummary;
pub use xdp::{FrameCounts, XdpCounters};

use crate::status::Topology;
use crate::ByName;

/// One worker's latest statistics.
pub type Worker = rstwall_source::WorkerStats<SourceWorker, LatencySummary>;

/// The sum over a source's workers.
pub type Totals = rstwall_source::Totals<SourceTotals, LatencySummary>;

/// The statistics document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// When it was taken (RFC 3339, UTC).
    pub at: String,
    pub uptime_s: f64,
    /// The last document of a run (written at shutdown).
    #[serde(rename = "final")]
    pub is_final: bool,
    pub topology: Topology,
    /// The policy's mode.
    pub mode: Mode,
    pub policy: PolicyRef,
    /// How frames reach the workers, summed up (as in the status).
    pub xsk_mode: String,
    /// What the kernel drops on the policy's behalf.
    pub kernel: KernelDrops,
    /// The sum over the workers. Written with `rst` beside it: every RST
    /// class's counts by name, from `totals.counters` ([`Stats::rst`]).
    #[serde(flatten, with = "totals_and_rst")]
    pub totals: Totals,
    pub ports: Vec<Port>,
    pub workers: Vec<Worker>,
    /// Host mode's kernel side and verdicts (`rstwall run --host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<host::HostKernel>,
}

impl Stats {
    /// One RST class's counts, over every worker.
    pub fn rst(&self, class: RstClass) -> ClassCounts {
        self.totals.counters.class(class)
    }

    /// One XDP counter summed over the ports whose counters could be read.
    pub fn xdp_sum(&self, counter: fn(&XdpCounters) -> u64) -> u64 {
        self.ports
            .iter()
            .filter_map(|p| p.xdp.as_ref())
            .map(counter)
            .sum()
    }
}

/// `totals`, and `rst` written from it: the counts are held once.
mod totals_and_rst {
    use serde::de::IgnoredAny;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{ByName, ClassCounts, RstClass, Totals};

    #[derive(Serialize)]
    struct Written<'a> {
        rst: ByName<RstClass, ClassCounts>,
        totals: &'a Totals,
    }

    #[derive(Deserialize)]
    struct Read {
        totals: Totals,
        /// Derived from `totals`: accepted and left.
        #[serde(default, rename = "rst")]
        _by_class: IgnoredAny,
    }

    pub fn serialize<S: Serializer>(totals: &Totals, s: S) -> Result<S::Ok, S::Error> {
        Written {
            rst: ByName::from_fn(|c| totals.counters.class(c)),
            totals,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Totals, D::Error> {
        Read::deserialize(d).map(|r| r.totals)
    }
}

/// The running policy's version and digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub version: u64,
    pub digest: String,
}

/// What XDP drops on the policy's behalf, summed over the ports, and the
/// blocks behind `block_dropped`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelDrops {
    /// Deny-list entries in each port's trie.
    pub deny_entries: u64,
    pub deny_dropped: u64,
    pub block_dropped: u64,
    /// How long a source over its rate limit is blocked.
    pub block_seconds: u64,
    /// Sources blocked since start-up, and now.
    pub sources_blocked: u64,
    pub blocked_now: u64,
    pub block_errors: u64,
    /// The workers' block requests (enforce), and what monitor mode would
    /// have requested.
    pub block_requests: u64,
    pub would_block: u64,
    /// Requests that never reached the control side.
    pub block_requests_lost: u64,
}

/// One port, its XDP program's mode and counters (`null`: they could not
/// be read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub port: String,
    pub xdp_mode: String,
    pub xdp: Option<XdpCounters>,
}

/// What a frame source adds to [`Totals`], flattened into it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceTotals {
    #[serde(flatten)]
    pub afxdp: Option<afxdp::XskTotals>,
    /// Host mode's rings (`rstwall run --host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<host::HostTotals>,
}

/// What a frame source adds to [`Worker`], flattened into it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceWorker {
    #[serde(flatten)]
    pub afxdp: Option<afxdp::XskWorker>,
    /// Host mode's ring (`rstwall run --host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<host::HostWorker>,
}
