//! `GET /v1/status`: what runs, where, since when, with which policy.

use std::path::PathBuf;

use rstwall_engine::policy::Mode;
use serde::{Deserialize, Serialize};

use crate::stats::afxdp::{PollMode, XskMode};

/// The status document.
///
/// The AF_XDP source fills `ports`, `sockets` and `xsk_mode`; another
/// frame source (host mode) adds its own fields beside them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// rstwall's version.
    pub version: String,
    pub pid: u32,
    /// How it sits in the network: `inline` or `tap` ([`Topology::mode`]).
    pub mode: String,
    pub topology: Topology,
    /// Each port and the mode its XDP program is attached in.
    pub ports: Vec<PortMode>,
    /// Workers the source was started with (one per queue).
    pub queues: usize,
    /// Workers that have published statistics.
    pub workers_running: usize,
    /// How frames reach the workers, summed up: `zerocopy`, `copy`, or
    /// `mixed (zerocopy N, copy M)`.
    pub xsk_mode: String,
    pub sockets: Vec<Socket>,
    pub uptime_s: f64,
    /// When the daemon started, in seconds since the Unix epoch.
    pub started_at: u64,
    pub policy: PolicyStatus,
    /// Operator blocks in force.
    pub blocks: usize,
    pub state_dir: PathBuf,
    /// Host mode (`rstwall run --host`): what it watches and what this
    /// kernel keeps from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostStatus>,
    /// The fleet exporter (`[export.nats]`); absent when it is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<crate::fleet::ExportStatus>,
}

/// Host mode in the status document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    /// Host mode never drops, delays or alters a packet: the policy runs in
    /// monitor mode whatever its mode says (enforce's verdicts show as
    /// `would drop`).
    pub policy_runs_as: Mode,
    /// The interfaces watched (or that could not be).
    pub interfaces: Vec<crate::host::HostInterface>,
    /// What this kernel does not let host mode see, and why.
    pub unavailable: Vec<crate::host::Unavailable>,
}

/// The ports rstwall serves: `{"inline": [A, B]}` or `{"tap": P}`; or
/// host mode's interfaces, `{"host": [...]}` (empty: every interface).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topology {
    /// Bump in the wire between two ports.
    Inline([String; 2]),
    /// A mirror port: count only.
    Tap(String),
    /// Host mode: this host's own interfaces, observed.
    Host(Vec<String>),
}

impl Topology {
    /// `inline` or `tap`: the topology's key in documents.
    pub fn mode(&self) -> &'static str {
        match self {
            Topology::Inline(_) => "inline",
            Topology::Tap(_) => "tap",
            Topology::Host(_) => "host",
        }
    }
}

/// A port and the mode its XDP program is attached in (`native`,
/// `generic`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMode {
    pub port: String,
    pub xdp_mode: String,
}

/// One AF_XDP socket: a port's queue and its bind mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Socket {
    pub port: String,
    pub queue: u32,
    pub xsk_mode: XskMode,
    /// How its worker waits for frames, as started: the configured poll
    /// mode, or the one it fell back to (`poll_fallback` says why). A
    /// fallback found later (no NAPI behind the socket) is in the
    /// statistics' sockets.
    #[serde(default)]
    pub poll: PollMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_fallback: Option<String>,
}

/// The running policy and how far the workers have taken it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyStatus {
    pub version: u64,
    pub digest: String,
    pub mode: Mode,
    /// The generation handed to the workers (each change is a new one).
    pub generation: u64,
    /// The oldest generation a worker still runs: equal to `generation`
    /// once every worker has taken the latest policy.
    pub workers_generation_min: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_as_the_documents_show_it() {
        let inline = Topology::Inline(["pa".into(), "pb".into()]);
        let tap = Topology::Tap("t0".into());
        let host = Topology::Host(vec!["lo".into(), "eth0".into()]);
        for (t, json) in [
            (&inline, r#"{"inline":["pa","pb"]}"#),
            (&tap, r#"{"tap":"t0"}"#),
            (&host, r#"{"host":["lo","eth0"]}"#),
        ] {
            assert_eq!(serde_json::to_string(t).unwrap(), json);
            assert_eq!(&serde_json::from_str::<Topology>(json).unwrap(), t);
            // The key is the mode.
            assert!(json.starts_with(&format!("{{\"{}\"", t.mode())), "{json}");
        }
    }
}
