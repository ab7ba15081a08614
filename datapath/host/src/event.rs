//! One RST as host mode reports it: the packet, rstwall's class, the
//! kernel's verdict, their agreement and the process behind it.

use rstwall_engine::engine::{PacketInfo, RstFields};
use rstwall_engine::flow::RstJudgment;
use rstwall_engine::policy::Decision;
use serde::Serialize;

use crate::process::Process;
use crate::verdict::{Agreement, KernelVerdict};

rstwall_engine::closed_enum! {
    /// Which way a RST crossed the host.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Direction: "direction" {
        /// Received from another host: the receiver is this host.
        In,
        /// Sent to another host: the receiver is the peer.
        Out,
        /// On loopback: sent and received by this host.
        Local,
    }
}

impl Direction {
    /// Whether this host's kernel received it (and so has a verdict on it).
    pub fn received_here(self) -> bool {
        matches!(self, Direction::In | Direction::Local)
    }

    /// Whether this host's kernel sent it.
    pub fn sent_here(self) -> bool {
        matches!(self, Direction::Out | Direction::Local)
    }
}

/// A RST a worker judged, on its way to the correlator. Plain data of a
/// fixed size: the per-packet path makes one and moves it into a bounded
/// channel, nothing else.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeenRst {
    /// CLOCK_MONOTONIC, when the tc program saw it.
    pub mono_ns: u64,
    pub ifindex: u32,
    pub direction: Direction,
    pub packet: PacketInfo,
    pub judgment: RstJudgment,
    pub decision: Decision,
    /// The header bytes the record carried.
    pub headers: [u8; rstwall_bpf::shared::host::SNAPLEN],
    pub caplen: u16,
}

/// One RST, correlated: what `--events` writes, one JSON line each.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RstEvent {
    /// RFC 3339, UTC, nanoseconds.
    pub ts: String,
    /// The interface it crossed.
    pub iface: String,
    pub direction: Direction,
    /// The segment, rstwall's class and the policy's verdict (host mode
    /// monitors: what enforce would do).
    #[serde(flatten)]
    pub rst: RstFields,
    /// The port of the service side (rstwall's judgment: the responder's
    /// port when the handshake showed who connected to whom, else the
    /// RST's destination port): 7211 for a refused connect to port 7211.
    pub service_port: u16,
    /// What this host's kernel did.
    pub kernel: KernelVerdict,
    pub agreement: Agreement,
    /// The process behind it: the local socket's owner.
    #[serde(flatten)]
    pub process: Option<Process>,
    /// The packet's headers in hex, kept for disagreements (the log).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet: Option<String>,
}

impl RstEvent {
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.pid)
    }

    pub fn comm(&self) -> Option<&str> {
        self.process.as_ref().map(|p| p.comm.as_str())
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
