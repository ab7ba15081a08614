//! What the per-host and per-port tables count.

use serde::{Deserialize, Serialize};

use crate::class::RstClass;

/// Per host, by direction: what `netstat -s` shows for the whole machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStats {
    /// SYNs sent: active opens.
    pub syn_sent: u64,
    pub syn_received: u64,
    /// SYN-ACKs sent: passive opens.
    pub synack_sent: u64,
    pub synack_received: u64,
    pub fin_sent: u64,
    pub fin_received: u64,
    pub rst_sent: u64,
    pub rst_received: u64,
    /// This host's connection attempts refused (its SYN answered by RST).
    pub failed_connects: u64,
    /// Connection attempts this host refused.
    pub refused: u64,
    /// RSTs this host sent, by class.
    pub rst_sent_by_class: [u64; RstClass::COUNT],
}

/// Per service port (the responder's port where the handshake showed it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    /// SYNs aimed at this port.
    pub syn: u64,
    /// Connection attempts to this port refused.
    pub refused: u64,
    pub rst_by_class: [u64; RstClass::COUNT],
}
