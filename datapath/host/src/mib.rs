//! netstat's TCP counters: the network namespace's TCP MIB, as
//! `/proc/net/snmp` (`Tcp:`) and `/proc/net/netstat` (`TcpExt:`) show it,
//! read as typed values and turned into per-second deltas.
//!
//! What the counters mean matters more than their names (netstat's words
//! in brackets):
//! * `EstabResets` ("connection resets received") counts established (or
//!   CLOSE-WAIT) connections that went to CLOSE, whatever the cause: a RST
//!   received, but also this host's own aborts. Linux has no counter of
//!   RSTs received.
//! * `AttemptFails` ("failed connection attempts") counts connections that
//!   went from SYN-SENT or SYN-RECV to CLOSE: refused connects, among others.
//! * `OutRsts` ("resets sent") counts segments sent with RST.
//! * `TCPAbortOn*` count this host's aborts by cause; `TCPChallengeACK`
//!   the challenge ACKs it sent (RFC 5961).
//!
//! The files are the reading thread's namespace's (`/proc/thread-self/net`),
//! so a thread that entered a namespace reads that namespace.

use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

/// The namespace's TCP counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TcpMib {
    /// Tcp: ActiveOpens — connect()s that sent a SYN.
    pub active_opens: u64,
    /// Tcp: PassiveOpens — connections accepted from a SYN.
    pub passive_opens: u64,
    /// Tcp: AttemptFails — "failed connection attempts".
    pub attempt_fails: u64,
    /// Tcp: EstabResets — "connection resets received".
    pub estab_resets: u64,
    /// Tcp: InSegs.
    pub in_segs: u64,
    /// Tcp: OutSegs.
    pub out_segs: u64,
    /// Tcp: RetransSegs.
    pub retrans_segs: u64,
    /// Tcp: InErrs.
    pub in_errs: u64,
    /// Tcp: OutRsts — "resets sent".
    pub out_rsts: u64,
    /// TcpExt: TCPAbortOnData — closed with unread data, or data after close.
    pub abort_on_data: u64,
    /// TcpExt: TCPAbortOnClose — closed with data still to send... or
    /// unread (see the kernel): the application's close aborted.
    pub abort_on_close: u64,
    /// TcpExt: TCPAbortOnMemory — out of memory (orphans, socket memory).
    pub abort_on_memory: u64,
    /// TcpExt: TCPAbortOnTimeout — retransmission or keepalive timeout.
    pub abort_on_timeout: u64,
    /// TcpExt: TCPAbortOnLinger — linger-2 timeout in FIN-WAIT-2.
    pub abort_on_linger: u64,
    /// TcpExt: TCPAbortFailed — an abort whose RST could not be sent.
    pub abort_failed: u64,
    /// TcpExt: TCPChallengeACK — challenge ACKs sent.
    pub challenge_ack: u64,
    /// TcpExt: TCPSYNChallenge — challenge ACKs for a SYN.
    pub syn_challenge: u64,
    /// TcpExt: EmbryonicRsts — RSTs that killed a SYN-RECV request.
    pub embryonic_rsts: u64,
    /// TcpExt: ListenOverflows — SYNs dropped for a full accept queue.
    pub listen_overflows: u64,
    /// TcpExt: ListenDrops.
    pub listen_drops: u64,
}

/// A counter's name in its file, and its field.
type Field = (&'static str, fn(&mut TcpMib) -> &mut u64);

/// The counters' names in the two files, and where each goes.
const TCP_FIELDS: [Field; 9] = [
    ("ActiveOpens", |m| &mut m.active_opens),
    ("PassiveOpens", |m| &mut m.passive_opens),
    ("AttemptFails", |m| &mut m.attempt_fails),
    ("EstabResets", |m| &mut m.estab_resets),
    ("InSegs", |m| &mut m.in_segs),
    ("OutSegs", |m| &mut m.out_segs),
    ("RetransSegs", |m| &mut m.retrans_segs),
    ("InErrs", |m| &mut m.in_errs),
    ("OutRsts", |m| &mut m.out_rsts),
];
const TCPEXT_FIELDS: [Field; 11] = [
    ("TCPAbortOnData", |m| &mut m.abort_on_data),
    ("TCPAbortOnClose", |m| &mut m.abort_on_close),
    ("TCPAbortOnMemory", |m| &mut m.abort_on_memory),
    ("TCPAbortOnTimeout", |m| &mut m.abort_on_timeout),
    ("TCPAbortOnLinger", |m| &mut m.abort_on_linger),
    ("TCPAbortFailed", |m| &mut m.abort_failed),
    ("TCPChallengeACK", |m| &mut m.challenge_ack),
    ("TCPSYNChallenge", |m| &mut m.syn_challenge),
    ("EmbryonicRsts", |m| &mut m.embryonic_rsts),
    ("ListenOverflows", |m| &mut m.listen_overflows),
    ("ListenDrops", |m| &mut m.listen_drops),
];

/// The values of the `prefix` table of a /proc/net/{snmp,netstat} file:
/// a line of names and a line of values, both starting with `prefix:`.
/// Counters missing from the file stay 0.
fn read_table(text: &str, prefix: &str, fields: &[Field], into: &mut TcpMib) {
    let tag = format!("{prefix}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&tag));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return;
    };
    for (name, value) in names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
    {
        if let Some((_, field)) = fields.iter().find(|(n, _)| *n == name) {
            // Negative in the file only for Tcp's MaxConn; none of ours.
            *field(into) = value.parse().unwrap_or(0);
        }
    }
}

impl TcpMib {
    /// Parse the texts of the two files.
    pub fn parse(snmp: &str, netstat: &str) -> TcpMib {
        let mut m = TcpMib::default();
        read_table(snmp, "Tcp", &TCP_FIELDS, &mut m);
        read_table(netstat, "TcpExt", &TCPEXT_FIELDS, &mut m);
        m
    }

    /// Read the calling thread's network namespace's counters.
    pub fn read() -> io::Result<TcpMib> {
        TcpMib::read_from(Path::new("/proc/thread-self/net"))
    }

    /// Read `dir/snmp` and `dir/netstat`.
    pub fn read_from(dir: &Path) -> io::Result<TcpMib> {
        let snmp = fs::read_to_string(dir.join("snmp"))?;
        let netstat = fs::read_to_string(dir.join("netstat"))?;
        Ok(TcpMib::parse(&snmp, &netstat))
    }

    /// Add `other`'s counts, field by field (deltas of consecutive
    /// intervals add up to the delta of the whole).
    pub fn add(&mut self, other: &TcpMib) {
        let mut o = *other;
        for (_, f) in TCP_FIELDS.iter().chain(TCPEXT_FIELDS.iter()) {
            *f(self) = f(self).saturating_add(*f(&mut o));
        }
    }

    /// What was counted since `earlier`, field by field (a counter that
    /// went backwards reads as 0).
    pub fn since(&self, earlier: &TcpMib) -> TcpMib {
        let mut out = TcpMib::default();
        let mut now = *self;
        let mut then = *earlier;
        for (_, f) in TCP_FIELDS.iter().chain(TCPEXT_FIELDS.iter()) {
            *f(&mut out) = f(&mut now).saturating_sub(*f(&mut then));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "\
Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 100
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 35 12 20 3 2 1000 990 4 0 25 0
Udp: InDatagrams
Udp: 5
";
    const NETSTAT: &str = "\
TcpExt: SyncookiesSent EmbryonicRsts TCPAbortOnData TCPAbortOnClose TCPAbortOnMemory TCPAbortOnTimeout TCPAbortOnLinger TCPAbortFailed TCPChallengeACK TCPSYNChallenge ListenOverflows ListenDrops
TcpExt: 0 1 7 2 0 3 1 0 9 4 5 6
IpExt: InNoRoutes
IpExt: 0
";

    #[test]
    fn parses_the_tcp_tables() {
        let m = TcpMib::parse(SNMP, NETSTAT);
        assert_eq!(
            m,
            TcpMib {
                active_opens: 35,
                passive_opens: 12,
                attempt_fails: 20,
                estab_resets: 3,
                in_segs: 1000,
                out_segs: 990,
                retrans_segs: 4,
                in_errs: 0,
                out_rsts: 25,
                abort_on_data: 7,
                abort_on_close: 2,
                abort_on_memory: 0,
                abort_on_timeout: 3,
                abort_on_linger: 1,
                abort_failed: 0,
                challenge_ack: 9,
                syn_challenge: 4,
                embryonic_rsts: 1,
                listen_overflows: 5,
                listen_drops: 6,
            }
        );
        let later = TcpMib {
            attempt_fails: 40,
            out_rsts: 20,
            ..m
        };
        let d = later.since(&m);
        assert_eq!((d.attempt_fails, d.out_rsts, d.in_segs), (20, 0, 0));
        let mut sum = d;
        sum.add(&d);
        assert_eq!((sum.attempt_fails, sum.out_rsts), (40, 0));
        // A counter that went backwards adds nothing.
        let mut back = m;
        back.add(&d);
        assert_eq!((back.attempt_fails, back.out_rsts), (40, 25));
    }

    #[test]
    fn bad_input_reads_as_zero() {
        assert_eq!(TcpMib::parse("", ""), TcpMib::default());
        assert_eq!(
            TcpMib::parse("Tcp: A B\n", "TcpExt:\nTcpExt: x"),
            TcpMib::default()
        );
        let m = TcpMib::parse("Tcp: AttemptFails OutRsts\nTcp: x 4\n", "");
        assert_eq!((m.attempt_fails, m.out_rsts), (0, 4));
    }

    /// The namespace's own files parse, and count something on a host
    /// that has used TCP at all (this test process's runner has).
    #[test]
    fn reads_this_namespace() {
        let m = TcpMib::read().unwrap();
        let d = m.since(&m);
        assert_eq!(d, TcpMib::default());
    }
}
