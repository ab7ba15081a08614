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

impl HostStats {
    /// Add another engine's counts of the same host.
    pub fn add(&mut self, o: &HostStats) {
        self.syn_sent += o.syn_sent;
        self.syn_received += o.syn_received;
        self.synack_sent += o.synack_sent;
        self.synack_received += o.synack_received;
        self.fin_sent += o.fin_sent;
        self.fin_received += o.fin_received;
        self.rst_sent += o.rst_sent;
        self.rst_received += o.rst_received;
        self.failed_connects += o.failed_connects;
        self.refused += o.refused;
        for (a, b) in self.rst_sent_by_class.iter_mut().zip(o.rst_sent_by_class) {
            *a += b;
        }
    }

    /// How busy the host is, by SYN, FIN and RST counts: the order of a
    /// snapshot's host rows.
    pub fn activity(&self) -> u64 {
        self.rst_sent + self.rst_received + self.syn_sent + self.syn_received + self.fin_sent
    }
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
