//! The frame sources the daemon runs, one module each.
//!
//! A source is a [`rstwall_source::Source`] (its workers) and the kernel
//! side that brings them frames (AF_XDP: rstwall's XDP program on every
//! port, which also drops what the policy denies). Its module starts both,
//! keeps the kernel side in step with the policy ([`Running`]), stops them,
//! and says how to show what only this source counts ([`SourceView`]).
//! Everything else — the control-plane state, the monitor and its one
//! statistics document, the metrics, the control API — is the same for
//! every source.
//!
//! * [`host`] — `rstwall run --host`: host mode (rstwall-host), which
//!   observes this host's own interfaces and never touches a packet.
//! * [`afxdp`] — `rstwall run --inline/--tap`: AF_XDP workers behind
//!   rstwall's XDP program; [`tap_guard`] keeps tap mode off this host's
//!   own interfaces.

pub mod afxdp;
pub mod host;
pub mod tap_guard;

use std::net::IpAddr;
use std::time::Instant;

use rstwall_api::stats::{SourceTotals, SourceWorker};
use rstwall_api::status;
use rstwall_bpf::{KernelDropStats, XdpCounters};
use rstwall_engine::policy::PolicyConfig;
use rstwall_source::{Source, SourceStats, WorkerError, WorkerStats};

use crate::metrics::family::MetricFamily;
use crate::metrics::snapshot::WorkerSample;

/// How the daemon shows what a source adds to its workers' statistics.
pub trait SourceView: SourceStats {
    /// The label that names this worker in the per-worker metrics, and its
    /// value (AF_XDP: `queue`).
    fn worker_label(&self) -> (&'static str, String);
    /// How frames reach the workers, summed up (the documents' `xsk_mode`).
    fn mode(totals: &Self::Totals) -> String;
    /// The source's part of the stats line.
    fn line(totals: &Self::Totals) -> String;
    /// The source's per-worker metric families.
    fn families(workers: &[WorkerStats<Self>]) -> Vec<MetricFamily>;
    /// This worker's part of the statistics document.
    fn document(&self) -> SourceWorker;
    /// The totals' part of the statistics document.
    fn totals_document(totals: &Self::Totals) -> SourceTotals;

    /// What the common per-worker metric families show of each worker.
    fn samples(workers: &[WorkerStats<Self>]) -> Vec<WorkerSample> {
        workers
            .iter()
            .map(|w| WorkerSample {
                label: w.source.worker_label(),
                stats: w.common(),
            })
            .collect()
    }
}

/// The statistics a running source's workers publish.
pub type StatsOf<R> = <<R as Running>::Source as Source>::Stats;

/// A source as the daemon runs it.
pub trait Running {
    type Source: Source<Stats: SourceView>;

    fn source(&self) -> &Self::Source;
    fn source_mut(&mut self) -> &mut Self::Source;

    /// One line for the log: where frames come from and how.
    fn describe(&self) -> String;
    /// Where frames come from, as the status document lists them.
    fn sockets(&self) -> Vec<status::Socket>;

    /// Bring what the kernel drops on the policy's behalf in line with
    /// `policy` (the workers have it already).
    fn apply_policy(&mut self, policy: &PolicyConfig);
    /// The workers' policy asked to block `src`.
    fn block(&mut self, src: IpAddr, now: Instant);
    /// Called every turn of the main loop: blocks that have run out go.
    fn expire(&mut self, now: Instant);

    /// The kernel side as of now.
    fn kernel(&self) -> KernelView;

    /// The policy the workers run when `policy` is the daemon's (host
    /// mode: always in monitor mode).
    fn workers_policy(&self, policy: &PolicyConfig) -> PolicyConfig {
        policy.clone()
    }

    /// Called every turn of the main loop, for what the source does on the
    /// control side (host mode: reading its RST events).
    fn tick(&mut self) {}

    /// Host mode's part of the status document.
    fn host_status(&self) -> Option<status::HostStatus> {
        None
    }

    /// Stop the workers; their final statistics. The kernel side stays
    /// (it forwards without them) until [`Running::release`].
    fn stop_workers(&mut self) -> Result<Vec<WorkerStats<StatsOf<Self>>>, WorkerError>;
    /// Let go of the kernel side: removed after a clean stop (`clean`),
    /// left in place to fail open otherwise.
    fn release(self, clean: bool) -> anyhow::Result<()>;
}

/// The kernel side of a running source, as of one moment.
#[derive(Clone, Debug, Default)]
pub struct KernelView {
    pub ports: Vec<PortView>,
    /// What the kernel drops on the policy's behalf, as the daemon keeps it.
    pub drops: KernelDropStats,
    /// Host mode's kernel side and verdicts.
    pub host: Option<rstwall_api::stats::host::HostKernel>,
    /// The kernel side's own metric families (host mode's).
    pub families: Vec<MetricFamily>,
}

/// One port and its program.
#[derive(Clone, Debug)]
pub struct PortView {
    pub port: String,
    /// The mode the program is attached in.
    pub xdp_mode: String,
    /// Its counters (`None`: they could not be read).
    pub counters: Option<XdpCounters>,
}

impl KernelView {
    /// One XDP counter summed over the ports whose counters could be read.
    pub fn xdp_sum(&self, f: fn(&XdpCounters) -> u64) -> u64 {
        self.ports
            .iter()
            .filter_map(|p| p.counters.as_ref())
            .map(f)
            .sum()
    }

    /// Add what the programs' RST guards dropped, by class, to the
    /// workers' counts (see [`rstwall_bpf::merge_guard_drops`]).
    pub fn merge_guard_drops(&self, c: &mut rstwall_engine::telemetry::Counters) {
        rstwall_bpf::merge_guard_drops(c, self.ports.iter().filter_map(|p| p.counters.as_ref()));
    }
}
