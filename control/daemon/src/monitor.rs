//! The monitor: the latest statistics of each worker, the alerts judged on
//! all of them together, the stats line in the log, the statistics
//! document (one function for `GET /v1/stats` and `--stats-json`), the
//! alerts document and the metrics' snapshot.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use rstwall_api::stats::{self as doc, KernelDrops, PolicyRef};
use rstwall_api::{alerts, Topology};
use rstwall_bpf::XdpCounters;
use rstwall_engine::policy::Mode;
use rstwall_engine::telemetry::{Level, MergedAlerts};
use rstwall_engine::RstClass;
use rstwall_source::{sys, BatchLatency, Totals, WorkerStats};

use crate::metrics::{KernelSnapshot, Snapshot};
use crate::persist::{self, PolicyState};
use crate::settings::Settings;
use crate::source::{KernelView, SourceView};

/// Keeps the latest stats of each worker; judges the alerts on all of them;
/// prints and writes them, and makes the metrics' [`Snapshot`].
pub struct Monitor<S: SourceView> {
    topology: Topology,
    mode: Mode,
    policy_version: u64,
    policy_digest: String,
    interval: Option<Duration>,
    json: Option<PathBuf>,
    started: Instant,
    started_unix: u64,
    workers: Vec<Option<WorkerStats<S>>>,
    last_at: Instant,
    last_frames: u64,
    next: Instant,
    block_seconds: u64,
    /// The alert rules judged on the sum of every worker's seconds.
    alerts: MergedAlerts,
    /// The fleet exporter's latest state (`None`: export is off).
    export: Option<rstwall_api::fleet::ExportStatus>,
}

impl<S: SourceView> Monitor<S> {
    pub fn new(s: &Settings, live: &PolicyState, workers: usize) -> Monitor<S> {
        let now = Instant::now();
        Monitor {
            topology: s.frames.document(),
            mode: live.policy.mode(),
            policy_version: live.version,
            policy_digest: live.digest().to_string(),
            interval: s.stats_interval,
            json: s.stats_json.clone(),
            started: now,
            started_unix: sys::now_ns() / 1_000_000_000,
            workers: vec![None; workers],
            last_at: now,
            last_frames: 0,
            next: now + s.stats_interval.unwrap_or(Duration::from_secs(1)),
            block_seconds: live.policy.ratelimit().block_seconds,
            alerts: MergedAlerts::new(s.engine.alerts.clone()),
            export: None,
        }
    }

    /// The fleet exporter's state, for `status` and the metrics.
    pub fn set_export(&mut self, export: rstwall_api::fleet::ExportStatus) {
        self.export = Some(export);
    }

    pub fn export(&self) -> Option<&rstwall_api::fleet::ExportStatus> {
        self.export.as_ref()
    }

    pub fn set_policy(&mut self, live: &PolicyState) {
        self.mode = live.policy.mode();
        self.policy_version = live.version;
        self.policy_digest = live.digest().to_string();
        self.block_seconds = live.policy.ratelimit().block_seconds;
    }

    /// What the metrics endpoint shows.
    pub fn snapshot(&self, k: &KernelView) -> Snapshot {
        let workers: Vec<WorkerStats<S>> = self.workers.iter().flatten().cloned().collect();
        let kernel = k.drops;
        Snapshot {
            workers: S::samples(&workers),
            source: {
                let mut f = S::families(&workers);
                f.extend(k.families.iter().cloned());
                f
            },
            ports: k
                .ports
                .iter()
                .map(|p| (p.port.clone(), p.counters))
                .collect(),
            kernel: KernelSnapshot {
                deny_entries: kernel.deny_entries as u64,
                blocked_now: kernel.blocked_now as u64,
                sources_blocked: kernel.sources_blocked,
                block_errors: kernel.block_errors,
            },
            policy_version: self.policy_version,
            enforcing: self.mode == Mode::Enforce,
            export: self.export.clone(),
            alerts: {
                let a = self.alerts.alerts();
                let active = a.active();
                a.rules()
                    .iter()
                    .map(|r| {
                        let level = active
                            .iter()
                            .find(|x| x.rule == r.name)
                            .map_or(0, |x| match x.level {
                                Level::Ok => 0,
                                Level::Warning => 1,
                                Level::Critical => 2,
                            });
                        (r.name.clone(), level)
                    })
                    .collect()
            },
        }
    }

    pub fn update(&mut self, s: WorkerStats<S>) {
        if let Some(slot) = self.workers.get_mut(s.worker) {
            *slot = Some(s);
        }
    }

    /// Judge the alert rules on the seconds every worker has completed
    /// (once all have published), and log each level change; the changes.
    pub fn judge_alerts(&mut self) -> Vec<rstwall_engine::telemetry::AlertEvent> {
        if self.workers.iter().any(Option::is_none) {
            return Vec::new();
        }
        let before = self.alerts.alerts().changes();
        self.alerts.update(
            self.workers
                .iter()
                .flatten()
                .map(|w| (w.second, w.recent_seconds.as_slice())),
        );
        let new = (self.alerts.alerts().changes() - before) as usize;
        if new == 0 {
            return Vec::new();
        }
        let events = self.alerts.alerts().events();
        let changes = &events[events.len().saturating_sub(new)..];
        for e in changes {
            let msg = format!(
                "alert {}: {} ({} = {:.1}, threshold {})",
                e.rule,
                match e.level {
                    Level::Ok => "ok",
                    Level::Warning => "WARNING",
                    Level::Critical => "CRITICAL",
                },
                e.metric,
                e.value,
                e.threshold
            );
            match e.level {
                Level::Ok => tracing::info!("{msg}"),
                _ => tracing::warn!("{msg}"),
            }
        }
        changes.to_vec()
    }

    /// `GET /v1/alerts`.
    pub fn alerts_document(&self) -> alerts::Alerts {
        let a = self.alerts.alerts();
        alerts::Alerts {
            active: a.active(),
            history: a.events(),
            rules: a.rules().iter().map(alerts::Rule::from).collect(),
        }
    }

    /// The sum over the workers' latest statistics.
    pub fn totals(&self) -> Totals<S::Totals> {
        Totals::sum(self.workers.iter().flatten())
    }

    /// Workers the source was started with.
    pub fn queues(&self) -> usize {
        self.workers.len()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// When the daemon started, in seconds since the Unix epoch.
    pub fn started_unix(&self) -> u64 {
        self.started_unix
    }

    /// Print and write when the interval is due, or at the end (`last`);
    /// `kernel` is read only then.
    pub fn tick(&mut self, kernel: impl FnOnce() -> KernelView, last: bool) -> anyhow::Result<()> {
        let now = Instant::now();
        if !last && now < self.next {
            return Ok(());
        }
        let k = &kernel();
        if let Some(i) = self.interval {
            self.next = now + i;
        } else {
            self.next = now + Duration::from_secs(1);
        }
        let mut total = self.totals();
        k.merge_guard_drops(&mut total.counters);
        if self.interval.is_some() || last {
            let secs = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
            let pps = (total.counters.frames.saturating_sub(self.last_frames)) as f64 / secs;
            tracing::info!(
                "{}{}",
                if last { "final: " } else { "" },
                self.line(&total, k, pps)
            );
        }
        self.last_at = now;
        self.last_frames = total.counters.frames;
        if let Some(path) = &self.json {
            let doc = rstwall_api::document_json(&self.stats_document(&total, k, last))
                .context("the statistics document")?;
            persist::write_durably(path, &doc)
                .with_context(|| format!("writing --stats-json {}", path.display()))?;
        }
        Ok(())
    }

    /// The stats line.
    fn line(&self, t: &Totals<S::Totals>, k: &KernelView, pps: f64) -> String {
        let c = &t.counters;
        let rst: Vec<String> = RstClass::ALL
            .iter()
            .filter(|k| c.rst_total(**k) > 0)
            .map(|k| {
                let [_, dropped] = c.rst_classes[k.index()];
                if dropped > 0 {
                    format!("{}={}({} dropped)", k.as_str(), c.rst_total(*k), dropped)
                } else {
                    format!("{}={}", k.as_str(), c.rst_total(*k))
                }
            })
            .collect();
        let sum = |f: fn(&XdpCounters) -> u64| k.xdp_sum(f);
        format!(
            "{:.0} pps | frames {} tcp {} passed {} dropped {} would_drop {} | rst [{}] | \
             xdp to_xsk {} bypassed {} non_tcp {} deny_dropped {} block_dropped {} | \
             blocked {} (now {}, would_block {}, requests_lost {}) | {} | flows {} | xsk {}",
            pps,
            c.frames,
            c.tcp,
            c.passed,
            c.dropped,
            c.would_drop,
            if rst.is_empty() {
                "none".to_string()
            } else {
                rst.join(" ")
            },
            sum(|x| x.to_xsk),
            sum(|x| x.bypassed),
            sum(|x| x.non_tcp),
            sum(|x| x.deny_dropped),
            sum(|x| x.block_dropped),
            k.drops.sources_blocked,
            k.drops.blocked_now,
            t.blocks.would_block,
            t.block_requests_lost(),
            S::line(&t.source),
            t.active_flows,
            S::mode(&t.source),
        )
    }

    /// The statistics document (`GET /v1/stats` and `--stats-json`): the
    /// totals `t` of the workers, the kernel side `k`, and whether this is
    /// the last one (`final`).
    pub fn stats_document(&self, t: &Totals<S::Totals>, k: &KernelView, last: bool) -> doc::Stats {
        let d = &k.drops;
        doc::Stats {
            at: rstwall_pcap::analyze::format_ts(sys::now_ns()),
            uptime_s: self.started.elapsed().as_secs_f64(),
            is_final: last,
            topology: self.topology.clone(),
            mode: self.mode,
            policy: PolicyRef {
                version: self.policy_version,
                digest: self.policy_digest.clone(),
            },
            xsk_mode: S::mode(&t.source),
            kernel: KernelDrops {
                deny_entries: d.deny_entries as u64,
                deny_dropped: k.xdp_sum(|x| x.deny_dropped),
                block_dropped: k.xdp_sum(|x| x.block_dropped),
                block_seconds: self.block_seconds,
                sources_blocked: d.sources_blocked,
                blocked_now: d.blocked_now as u64,
                block_errors: d.block_errors,
                block_requests: t.blocks.requested,
                would_block: t.blocks.would_block,
                block_requests_lost: t.block_requests_lost(),
            },
            totals: {
                let mut totals = Totals::sum_as(
                    self.workers.iter().flatten(),
                    |source| S::totals_document(&source),
                    |latency| latency.summary(),
                );
                k.merge_guard_drops(&mut totals.counters);
                totals
            },
            ports: k
                .ports
                .iter()
                .map(|p| doc::Port {
                    port: p.port.clone(),
                    xdp_mode: p.xdp_mode.clone(),
                    xdp: p.counters,
                })
                .collect(),
            workers: self
                .workers
                .iter()
                .flatten()
                .map(|w| w.map(S::document, BatchLatency::summary))
                .collect(),
            host: k.host.clone(),
        }
    }
}
