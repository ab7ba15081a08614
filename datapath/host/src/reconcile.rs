//! netstat's counters reconciled, second by second: the TCP MIB's deltas
//! beside what the kernel events say happened in the same second, with
//! the sockets that closed grouped by cause, endpoint and process.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use rstwall_engine::class::RstClass;
use serde::Serialize;

use crate::mib::TcpMib;
use crate::process::Process;

rstwall_engine::closed_enum! {
    /// Why a socket closed, as far as the kernel events show.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum CloseCause: "close cause" {
        /// It accepted a RST (tcp_receive_reset).
        ResetReceived,
        /// This host reset it (an abort: tcp_send_reset on the socket).
        ResetSent,
        /// Anything else: a timeout, an ICMP error, a close.
        Other,
    }
}

rstwall_engine::closed_enum! {
    /// Which netstat counter a close counts in.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub enum CloseCounter: "close counter" {
        /// SYN-SENT or SYN-RECV to CLOSE: AttemptFails, "failed
        /// connection attempts".
        AttemptFails,
        /// ESTABLISHED or CLOSE-WAIT to CLOSE: EstabResets, "connection
        /// resets received".
        EstabResets,
    }
}

/// Closes of one kind in one second, from one process to one endpoint.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CloseGroup {
    pub counter: CloseCounter,
    pub cause: CloseCause,
    /// The endpoint the connection was to: the remote one for a
    /// connect()ed socket, this host's own otherwise (a service).
    pub endpoint: SocketAddr,
    /// Whether `endpoint` is the remote end (a connect()ed socket).
    pub remote: bool,
    pub process: Option<Process>,
    pub count: u64,
}

/// What the kernel events showed in one second.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Observed {
    /// Sockets to CLOSE from SYN-SENT/SYN-RECV (AttemptFails' events).
    pub attempt_fails: u64,
    /// Sockets to CLOSE from ESTABLISHED/CLOSE-WAIT (EstabResets' events).
    pub estab_resets: u64,
    /// RSTs the kernel sent (OutRsts' events), by reason.
    pub resets_sent: BTreeMap<String, u64>,
    /// RSTs sockets accepted.
    pub resets_accepted: u64,
    /// RSTs discarded.
    pub resets_dropped: u64,
    /// Challenge ACKs decided.
    pub challenge_acks: u64,
    /// RST packets seen, by rstwall's class.
    pub rsts_by_class: BTreeMap<RstClass, u64>,
    /// The closes, grouped.
    pub closes: Vec<CloseGroup>,
}

impl Observed {
    pub fn resets_sent_total(&self) -> u64 {
        self.resets_sent.values().sum()
    }
}

/// One second: netstat's counters' deltas and what was observed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MibSecond {
    /// Unix seconds at the end of the interval.
    pub second: u64,
    /// The MIB's deltas over the interval.
    pub mib: TcpMib,
    pub observed: Observed,
}

/// Key of a close group (everything but the count).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CloseKey {
    pub counter: CloseCounter,
    pub cause: CloseCause,
    pub endpoint: (IpAddr, u16),
    pub remote: bool,
    pub pid: Option<u32>,
}

/// The current second being accumulated.
#[derive(Default)]
pub(crate) struct Accumulating {
    pub observed: Observed,
    pub closes: BTreeMap<CloseKey, (Option<Process>, u64)>,
}

impl Accumulating {
    pub fn close(&mut self, key: CloseKey, process: Option<Process>) {
        match key.counter {
            CloseCounter::AttemptFails => self.observed.attempt_fails += 1,
            CloseCounter::EstabResets => self.observed.estab_resets += 1,
        }
        let slot = self.closes.entry(key).or_insert((process, 0));
        slot.1 += 1;
    }

    /// Close the second: its record, and a fresh accumulator.
    pub fn finish(&mut self, second: u64, mib: TcpMib) -> MibSecond {
        let mut done = std::mem::take(self);
        done.observed.closes = done
            .closes
            .into_iter()
            .map(|(k, (process, count))| CloseGroup {
                counter: k.counter,
                cause: k.cause,
                endpoint: SocketAddr::new(k.endpoint.0, k.endpoint.1),
                remote: k.remote,
                process,
                count,
            })
            .collect();
        MibSecond {
            second,
            mib,
            observed: done.observed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_group_by_key() {
        let mut a = Accumulating::default();
        let key = CloseKey {
            counter: CloseCounter::AttemptFails,
            cause: CloseCause::ResetReceived,
            endpoint: ("127.0.0.1".parse().unwrap(), 7211),
            remote: true,
            pid: Some(4242),
        };
        a.close(key.clone(), None);
        a.close(key, None);
        a.observed.resets_sent.insert("NO_SOCKET".into(), 2);
        let s = a.finish(7, TcpMib::default());
        assert_eq!(s.observed.attempt_fails, 2);
        assert_eq!(s.observed.resets_sent_total(), 2);
        assert_eq!(s.observed.closes.len(), 1);
        assert_eq!(s.observed.closes[0].count, 2);
        assert_eq!(s.observed.closes[0].endpoint.port(), 7211);
        let next = a.finish(8, TcpMib::default());
        assert_eq!(next.observed, Observed::default());
    }
}
