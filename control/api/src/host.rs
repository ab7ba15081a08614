//! Host mode's report (`rstwall host --json`): every RST this host sent,
//! received or carried on loopback while it watched, by class and
//! direction, by service port and by process; the alerts; and netstat's
//! TCP counters over the same time, each explained by what caused it.
//!
//! The RSTs themselves (`rstwall host --events`) are rstwall-host's
//! `RstEvent`, one JSON line each; this document is what they add up to.

use rstwall_engine::class::RstClass;
use rstwall_engine::telemetry::{ActiveAlert, AlertEvent};
use serde::{Deserialize, Serialize};

/// The report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// RFC 3339, UTC: when host mode started watching.
    pub started_at: String,
    /// Seconds it watched.
    pub duration_s: f64,
    /// The interfaces it watched (or could not).
    pub interfaces: Vec<HostInterface>,
    /// What this kernel does not let host mode see, and why; empty when
    /// it sees everything.
    pub unavailable: Vec<Unavailable>,
    /// RSTs seen (each once, loopback included).
    pub rsts: u64,
    /// By rstwall's class, split by direction; every class, in class order.
    pub classes: Vec<ClassRow>,
    /// By the service side's port (the listening port of a refused or
    /// reset connection), most RSTs first.
    pub ports: Vec<PortRow>,
    /// By the process that owned the local socket, most RSTs first.
    pub processes: Vec<ProcessRow>,
    /// RSTs no local socket owner could be named for (sent to or from
    /// ports where nothing of this host's listened or connected).
    pub unowned: u64,
    /// How often rstwall's class and the kernel's verdict agreed.
    pub agreement: AgreementCounts,
    /// Alert level changes while it watched, oldest first.
    pub alerts: Vec<AlertEvent>,
    /// Alerts above `ok` at the end.
    pub active_alerts: Vec<ActiveAlert>,
    /// netstat's counters over the same time, explained.
    pub netstat: Vec<NetstatCounter>,
    /// What could not be seen for lack of room.
    pub loss: HostLoss,
}

/// An interface host mode watched, or tried to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInterface {
    pub name: String,
    /// Why it is not watched (`None`: it is).
    pub error: Option<String>,
}

/// As a list of interfaces shows it: `lo`, or `eth1 (not watched: ...)`.
impl std::fmt::Display for HostInterface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.error {
            None => f.write_str(&self.name),
            Some(e) => write!(f, "{} (not watched: {e})", self.name),
        }
    }
}

/// Something the kernel does not let host mode see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unavailable {
    /// What would be seen (`send_reset_reason`: why each RST was sent).
    pub what: String,
    pub why: String,
}

/// One class's RSTs by direction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionCounts {
    /// Received from another host.
    #[serde(rename = "in")]
    pub received: u64,
    /// Sent to another host.
    #[serde(rename = "out")]
    pub sent: u64,
    /// On loopback: sent and received by this host.
    pub local: u64,
}

impl DirectionCounts {
    pub fn total(&self) -> u64 {
        self.received + self.sent + self.local
    }
}

/// One class's RSTs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassRow {
    pub class: RstClass,
    pub rsts: u64,
    #[serde(flatten)]
    pub directions: DirectionCounts,
}

/// A count of one class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassTally {
    pub class: RstClass,
    pub rsts: u64,
}

/// One service port's RSTs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRow {
    pub port: u16,
    pub rsts: u64,
    /// The classes seen, most RSTs first.
    pub classes: Vec<ClassTally>,
}

/// One process's RSTs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRow {
    pub pid: u32,
    /// The command (the kernel's 15-character `comm`).
    pub comm: String,
    /// The cgroup (v2) path; empty when unknown.
    pub cgroup: String,
    pub unit: Option<String>,
    pub container: Option<String>,
    pub rsts: u64,
    /// The classes seen, most RSTs first.
    pub classes: Vec<ClassTally>,
    /// The service ports involved, ascending.
    pub ports: Vec<u16>,
}

/// rstwall's class against the kernel's verdict, over the run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementCounts {
    pub agrees: u64,
    pub disagrees: u64,
    /// No comparison possible (the receiver is another host, or the class
    /// predicts nothing).
    pub unjudged: u64,
    /// This host received the RST, but no verdict came in time.
    pub no_verdict: u64,
}

/// A process and how many of something it accounts for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCount {
    pub pid: u32,
    pub comm: String,
    pub count: u64,
}

/// One cause behind a netstat counter's growth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub count: u64,
    /// In words: `connects to 127.0.0.1:7211 refused`.
    pub what: String,
    /// The processes involved, most first (empty: none could be named).
    pub processes: Vec<ProcessCount>,
}

/// One of netstat's TCP counters over the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetstatCounter {
    /// The kernel's name (`AttemptFails`).
    pub counter: String,
    /// `netstat -s`'s words (`failed connection attempts`).
    pub name: String,
    /// What it means, for someone reading `netstat -s`.
    pub meaning: String,
    /// How much it grew while host mode watched.
    pub delta: u64,
    /// How many of those host mode saw happen (the kernel's events), when
    /// it counts this counter's events at all.
    pub observed: Option<u64>,
    /// What the observed ones were, most first.
    pub causes: Vec<Cause>,
}

/// What host mode could not see for lack of room.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostLoss {
    /// Header records the kernel had no ring-buffer room for (their
    /// segments are still counted by flag class in the kernel).
    pub records_lost: u64,
    /// Judged RSTs the correlator had no room for.
    pub rsts_dropped: u64,
    /// RST events the reader had no room for.
    pub events_dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_reads_back_as_written() {
        let r = HostReport {
            started_at: "2026-01-01T00:00:00.000000000Z".into(),
            duration_s: 10.0,
            interfaces: vec![HostInterface {
                name: "lo".into(),
                error: None,
            }],
            unavailable: vec![Unavailable {
                what: "challenge_ack".into(),
                why: "fentry refused".into(),
            }],
            rsts: 20,
            classes: vec![ClassRow {
                class: RstClass::Refused,
                rsts: 20,
                directions: DirectionCounts {
                    local: 20,
                    ..DirectionCounts::default()
                },
            }],
            ports: vec![PortRow {
                port: 7211,
                rsts: 20,
                classes: vec![ClassTally {
                    class: RstClass::Refused,
                    rsts: 20,
                }],
            }],
            processes: Vec::new(),
            unowned: 0,
            agreement: AgreementCounts {
                agrees: 20,
                ..AgreementCounts::default()
            },
            alerts: Vec::new(),
            active_alerts: Vec::new(),
            netstat: vec![NetstatCounter {
                counter: "AttemptFails".into(),
                name: "failed connection attempts".into(),
                meaning: "connections that failed before they were established".into(),
                delta: 20,
                observed: Some(20),
                causes: vec![Cause {
                    count: 20,
                    what: "connects to 127.0.0.1:7211 refused".into(),
                    processes: vec![ProcessCount {
                        pid: 4242,
                        comm: "collector".into(),
                        count: 20,
                    }],
                }],
            }],
            loss: HostLoss::default(),
        };
        let text = crate::document_json(&r).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(v["classes"][0]["local"], 20);
        assert_eq!(v["classes"][0]["in"], 0);
        assert_eq!(v["classes"][0]["class"], "refused");
        let back: HostReport = serde_json::from_slice(&text).unwrap();
        assert_eq!(back, r);
    }
}
