//! The contract between the rstwall daemon and everything that talks to
//! it: the CLI, the lab and the tests.
//!
//! * [`http`] — the small HTTP/1.1 both the control API and the metrics
//!   endpoint speak, server and client side.
//! * [`client`] — a client of the control API on its Unix socket.
//! * [`Failure`] — how a command fails, with its exit status.
//! * [`text`] — numbers as operators read them.

use ipnet::IpNet;

pub mod client;
pub mod http;
pub mod text;

pub use client::Client;

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
