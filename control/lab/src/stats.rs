//! What the lab knows of the daemon's counters, and the one place it gets
//! them from ([`read`]).

use std::path::Path;

use anyhow::{anyhow, Context};
use rstwall_engine::policy::Mode;
use rstwall_engine::RstClass;
use serde::Serialize;
use serde_json::Value;

use super::topology::LabConfig;

/// The daemon's statistics now: its `--stats-json` file, rewritten
/// atomically every [`super::topology::STATS_INTERVAL`]. This is the one
/// function to point at the control API instead
/// ([`LabConfig::control_socket`]); nothing else reads statistics.
pub fn read(cfg: &LabConfig) -> anyhow::Result<Stats> {
    read_file(&cfg.stats_path())
}

fn read_file(path: &Path) -> anyhow::Result<Stats> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading rstwall's statistics {}", path.display()))?;
    let doc = serde_json::from_str(&text)
        .with_context(|| format!("rstwall's statistics {}", path.display()))?;
    Ok(Stats(doc))
}

/// One statistics snapshot (the document of `rstwall run --stats-json`).
#[derive(Clone, Debug)]
pub struct Stats(pub Value);

impl Stats {
    pub fn mode(&self) -> anyhow::Result<Mode> {
        match self.0["mode"].as_str() {
            Some("monitor") => Ok(Mode::Monitor),
            Some("enforce") => Ok(Mode::Enforce),
            other => Err(anyhow!("rstwall's statistics: unexpected mode {other:?}")),
        }
    }

    pub fn policy_version(&self) -> u64 {
        self.0["policy"]["version"].as_u64().unwrap_or(0)
    }

    /// The oldest and newest policy generation the workers run (each
    /// policy change is a new generation), if the daemon reports them.
    pub fn policy_generations(&self) -> Option<(u64, u64)> {
        let t = &self.0["totals"];
        Some((
            t["policy_generation_min"].as_u64()?,
            t["policy_generation_max"].as_u64()?,
        ))
    }

    /// The daemon's uptime in seconds: a new daemon starts from zero.
    pub fn uptime(&self) -> f64 {
        self.0["uptime_s"].as_f64().unwrap_or(0.0)
    }

    pub fn counts(&self) -> Counts {
        let v = &self.0;
        let c = &v["totals"]["counters"];
        let n = |x: &Value| x.as_u64().unwrap_or(0);
        let mut rst = [ClassCounts::default(); RstClass::COUNT];
        for class in RstClass::ALL {
            let r = &v["rst"][class.as_str()];
            rst[class.index()] = ClassCounts {
                total: n(&r["total"]),
                passed: n(&r["passed"]),
                dropped: n(&r["dropped"]),
                would_drop: n(&r["would_drop"]),
            };
        }
        let xdp = |key: &str| -> u64 {
            v["ports"]
                .as_array()
                .map(|ports| ports.iter().map(|p| n(&p["xdp"][key])).sum())
                .unwrap_or(0)
        };
        Counts {
            rst,
            tcp: n(&c["tcp"]),
            syn: n(&c["syn"]),
            synack: n(&c["synack"]),
            fin: n(&c["fin"]),
            rst_segments: n(&c["rst"]),
            failed_connects: n(&c["failed_connects"]),
            passed: n(&c["passed"]),
            dropped: n(&c["dropped"]),
            would_drop: n(&c["would_drop"]),
            to_xsk: xdp("to_xsk"),
            socket_lost: n(&v["totals"]["ring"]["rx_dropped"])
                + n(&v["totals"]["ring"]["rx_ring_full"]),
            bypassed: xdp("bypassed"),
            flows_created: n(&v["totals"]["flows"]["created"]),
            flows_evicted: n(&v["totals"]["flows"]["evicted"]),
            table_full: n(&v["totals"]["flows"]["table_full"]),
        }
    }
}

/// One RST class's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounts {
    pub total: u64,
    pub passed: u64,
    pub dropped: u64,
    pub would_drop: u64,
}

/// The counters the lab checks, from one snapshot or as the difference of
/// two ([`Counts::since`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// By class, in [`RstClass::ALL`] order.
    #[serde(serialize_with = "rst_by_name")]
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

fn rst_by_name<S: serde::Serializer>(
    rst: &[ClassCounts; RstClass::COUNT],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(RstClass::COUNT))?;
    for class in RstClass::ALL {
        m.serialize_entry(class.as_str(), &rst[class.index()])?;
    }
    m.end()
}

impl Counts {
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
