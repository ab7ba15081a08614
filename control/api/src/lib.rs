//! The contract between the rstwall daemon and everything that talks to
//! it: the CLI, the lab and the tests (and anyone with `curl
//! --unix-socket`).
//!
//! Every document the control API sends and every request body it takes
//! is a type here that serializes and deserializes, with the JSON names
//! operators see; every request is a [`Route`]. The daemon builds the
//! documents, the [`Client`] reads them, and neither indexes JSON by
//! string or spells a path.
//!
//! * [`route`] — the requests: methods, paths, typed queries, the table
//!   of what each answers.
//! * The documents: [`status`], [`stats`] (also `rstwall run
//!   --stats-json`), the telemetry ([`Snapshot`], from the engine),
//!   [`flows`], [`alerts`], [`policy`], [`blocks`], and every refusal,
//!   [`ErrorDoc`]; host mode's report, [`host`] (`rstwall host --json`).
//! * [`fleet`] — what the fleet exporter streams to NATS JetStream, and
//!   its part of the status document.
//! * [`client`] — the typed client on the daemon's Unix socket.
//! * [`http`] — the small HTTP/1.1 both the control API and the metrics
//!   endpoint speak, server and client side.
//! * [`Failure`] — how a command fails, with its exit status.
//! * [`text`] — numbers as operators read them.
//!
//! [`Snapshot`]: rstwall_engine::telemetry::Snapshot

use ipnet::IpNet;

pub mod alerts;
pub mod blocks;
mod by_name;
pub mod client;
mod error;
pub mod fleet;
pub mod flows;
pub mod host;
pub mod http;
pub mod policy;
pub mod route;
pub mod stats;
pub mod status;
pub mod text;

pub use alerts::Alerts;
pub use blocks::{BlockAdd, BlockAdded, BlockList, BlockRemoved};
pub use by_name::ByName;
pub use client::{CaptureStream, Client};
pub use error::{ApiError, ErrorDoc};
pub use flows::Flows;
pub use host::HostReport;
pub use policy::{PolicyBody, PolicyChange, PolicyDiff, PolicySet, PolicyShow};
pub use route::{CaptureClass, CaptureQuery, FlowsQuery, Route};
pub use stats::Stats;
pub use status::{Status, Topology};

/// A document as the daemon answers it, writes it (`--stats-json`) and
/// the CLI prints it (`--json`): pretty, with a newline, and its keys in
/// alphabetical order at every level — the order they have always had
/// (serde_json's map), whatever the order of a type's fields.
pub fn document_json(doc: &impl serde::Serialize) -> serde_json::Result<Vec<u8>> {
    let mut out = serde_json::to_vec_pretty(&serde_json::to_value(doc)?)?;
    out.push(b'\n');
    Ok(out)
}

/// The control API's default socket.
pub const DEFAULT_SOCKET: &str = "/run/rstwall/rstwall.sock";

/// An error with the exit status it deserves: 2 for bad arguments and
/// inputs (like a usage error), 1 for failures while running.
#[derive(Debug)]
pub struct Failure {
    pub status: u8,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            status: 2,
            error: error.into(),
        }
    }
    pub fn runtime(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            status: 1,
            error: error.into(),
        }
    }
}

/// A CIDR or a bare address (a host), host bits cleared; the error says
/// what was expected.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("invalid CIDR {s:?} (expected e.g. 198.18.0.0/24 or 2001:db8::/32)"))
}
