//! `rstwall host`'s report: built from what was tallied (the document,
//! [`HostReport`]), and written as text for an operator.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;

use rstwall_api::host::{
    Cause, ClassRow, HostInterface, HostLoss, HostReport, NetstatCounter, PortRow, ProcessCount,
    ProcessRow, Unavailable,
};
use rstwall_api::text::thousands;
use rstwall_engine::telemetry::Snapshot;
use rstwall_engine::RstClass;
use rstwall_host::{Capabilities, CloseCause, CloseCounter, Interface, MibSecond, TcpMib};

use super::tally::{classes_ranked, ranked, ByProcess, Tally};

/// Everything the report is made of.
pub struct Inputs<'a> {
    pub started_at: String,
    pub duration_s: f64,
    pub interfaces: &'a [Interface],
    pub caps: &'a Capabilities,
    pub tally: &'a Tally,
    pub seconds: &'a [MibSecond],
    /// The MIB's growth over the seconds.
    pub mib: TcpMib,
    /// The workers' telemetry at the end (alerts).
    pub tele: Option<&'a Snapshot>,
    pub loss: HostLoss,
    /// Rows per list.
    pub top: usize,
}

pub fn build(i: &Inputs) -> HostReport {
    let t = i.tally;
    let classes = RstClass::ALL
        .iter()
        .map(|c| {
            let directions = t.classes.get(c).cloned().unwrap_or_default();
            ClassRow {
                class: *c,
                rsts: directions.total(),
                directions,
            }
        })
        .collect();
    let mut ports: Vec<PortRow> = t
        .ports
        .iter()
        .map(|(port, by)| PortRow {
            port: *port,
            rsts: by.values().sum(),
            classes: classes_ranked(by),
        })
        .collect();
    ports.sort_by(|a, b| b.rsts.cmp(&a.rsts).then(a.port.cmp(&b.port)));
    ports.truncate(i.top);
    let processes = t
        .processes_ranked()
        .into_iter()
        .take(i.top)
        .map(|p| ProcessRow {
            pid: p.process.pid,
            comm: p.process.comm.clone(),
            cgroup: p.process.cgroup.clone(),
            unit: p.process.unit.clone(),
            container: p.process.container.clone(),
            rsts: p.rsts,
            classes: classes_ranked(&p.classes),
            ports: p.ports.keys().copied().collect(),
        })
        .collect();
    HostReport {
        started_at: i.started_at.clone(),
        duration_s: i.duration_s,
        interfaces: i
            .interfaces
            .iter()
            .map(|f| HostInterface {
                name: f.name.clone(),
                error: f.error.clone(),
            })
            .collect(),
        unavailable: unavailable(i.caps),
        rsts: t.rsts,
        classes,
        ports,
        processes,
        unowned: t.unowned,
        agreement: t.agreement.clone(),
        alerts: i.tele.map(|s| s.alerts.clone()).unwrap_or_default(),
        active_alerts: i.tele.map(|s| s.active_alerts.clone()).unwrap_or_default(),
        netstat: netstat(i),
        loss: i.loss.clone(),
    }
}

/// What the kernel keeps from host mode, by what it would show.
fn unavailable(caps: &Capabilities) -> Vec<Unavailable> {
    caps.unavailable()
        .into_iter()
        .map(|(what, why)| Unavailable {
            what: what.into(),
            why,
        })
        .collect()
}

/// netstat's counters: the three an operator meets first always, the
/// abort counters where they grew.
fn netstat(i: &Inputs) -> Vec<NetstatCounter> {
    let m = &i.mib;
    let sum = |f: fn(&MibSecond) -> u64| Some(i.seconds.iter().map(f).sum::<u64>());
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    for s in i.seconds {
        for (reason, n) in &s.observed.resets_sent {
            *sent.entry(reason.clone()).or_default() += n;
        }
    }
    let reason_count = |r: &str| sent.get(r).copied();
    let mut out = vec![
        NetstatCounter {
            counter: "AttemptFails".into(),
            name: "failed connection attempts".into(),
            meaning: "connections that went to CLOSE from SYN-SENT or SYN-RECV: refused or \
                      timed-out connects, handshakes reset"
                .into(),
            delta: m.attempt_fails,
            observed: sum(|s| s.observed.attempt_fails),
            causes: closes(i.seconds, CloseCounter::AttemptFails),
        },
        NetstatCounter {
            counter: "EstabResets".into(),
            name: "connection resets received".into(),
            meaning: "established (or CLOSE-WAIT) connections that went straight to CLOSE, \
                      by a RST received or by this host's own abort; not RSTs received \
                      (Linux counts none)"
                .into(),
            delta: m.estab_resets,
            observed: sum(|s| s.observed.estab_resets),
            causes: closes(i.seconds, CloseCounter::EstabResets),
        },
        NetstatCounter {
            counter: "OutRsts".into(),
            name: "resets sent".into(),
            meaning: "segments this host sent with RST, for every reason".into(),
            delta: m.out_rsts,
            observed: sum(|s| s.observed.resets_sent_total()),
            causes: reasons(&sent, i.tally),
        },
    ];
    let aborts: [(&str, &str, &str, u64, Option<&str>); 5] = [
        (
            "TCPAbortOnData",
            "connections reset due to unexpected data",
            "data arrived for a socket its application had closed",
            m.abort_on_data,
            Some("TCP_ABORT_ON_DATA"),
        ),
        (
            "TCPAbortOnClose",
            "connections reset due to early user close",
            "an application closed a socket with data it had not read",
            m.abort_on_close,
            Some("TCP_ABORT_ON_CLOSE"),
        ),
        (
            "TCPAbortOnMemory",
            "connections aborted due to memory pressure",
            "too many orphaned sockets or too little socket memory",
            m.abort_on_memory,
            Some("TCP_ABORT_ON_MEMORY"),
        ),
        (
            "TCPAbortOnTimeout",
            "connections aborted due to timeout",
            "retransmissions or keepalives went unanswered",
            m.abort_on_timeout,
            None,
        ),
        (
            "TCPAbortOnLinger",
            "connections aborted after user close in linger timeout",
            "a closed connection waited too long in FIN-WAIT-2",
            m.abort_on_linger,
            Some("TCP_ABORT_ON_LINGER"),
        ),
    ];
    for (counter, name, meaning, delta, reason) in aborts {
        if delta > 0 {
            out.push(NetstatCounter {
                counter: counter.into(),
                name: name.into(),
                meaning: meaning.into(),
                delta,
                observed: reason.map(|r| reason_count(r).unwrap_or(0)),
                causes: Vec::new(),
            });
        }
    }
    if m.challenge_ack > 0 {
        out.push(NetstatCounter {
            counter: "TCPChallengeACK".into(),
            name: "challenge ACKs sent".into(),
            meaning: "answers to RSTs (or SYNs) in the window but not exact (RFC 5961): \
                      each is a RST this host did not accept"
                .into(),
            delta: m.challenge_ack,
            observed: sum(|s| s.observed.challenge_acks),
            causes: Vec::new(),
        });
    }
    out
}

/// The closes that counted in `counter`, grouped by cause and endpoint
/// over every second, most first.
fn closes(seconds: &[MibSecond], counter: CloseCounter) -> Vec<Cause> {
    type Key = (CloseCause, SocketAddr, bool);
    let mut groups: BTreeMap<Key, (u64, ByProcess)> = BTreeMap::new();
    for c in seconds
        .iter()
        .flat_map(|s| &s.observed.closes)
        .filter(|c| c.counter == counter)
    {
        let g = groups.entry((c.cause, c.endpoint, c.remote)).or_default();
        g.0 += c.count;
        if let Some(p) = &c.process {
            g.1.entry(p.pid).or_insert_with(|| (p.comm.clone(), 0)).1 += c.count;
        }
    }
    let mut out: Vec<Cause> = groups
        .into_iter()
        .map(|((cause, endpoint, remote), (count, procs))| Cause {
            count,
            what: close_words(counter, cause, endpoint, remote),
            processes: ranked(procs.into_iter().map(|(p, (c, n))| (p, c, n)).collect()),
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.what.cmp(&b.what)));
    out
}

/// A group of closes in words.
fn close_words(counter: CloseCounter, cause: CloseCause, ep: SocketAddr, remote: bool) -> String {
    let (to, on) = (format!("to {ep}"), format!("on {ep}"));
    let at = if remote { &to } else { &on };
    match (counter, cause) {
        (CloseCounter::AttemptFails, CloseCause::ResetReceived) if remote => {
            format!("connects {to} refused")
        }
        (CloseCounter::AttemptFails, CloseCause::ResetReceived) => {
            format!("handshakes {on} reset by the client")
        }
        (CloseCounter::AttemptFails, CloseCause::ResetSent) => {
            format!("handshakes {at} reset by this host")
        }
        (CloseCounter::AttemptFails, CloseCause::Other) if remote => {
            format!("connects {to} that failed without a RST (timeout, ICMP error, close)")
        }
        (CloseCounter::AttemptFails, CloseCause::Other) => {
            format!("handshakes {on} given up without a RST")
        }
        (CloseCounter::EstabResets, CloseCause::ResetReceived) => {
            format!("connections {at} reset by the peer's RST")
        }
        (CloseCounter::EstabResets, CloseCause::ResetSent) => {
            format!("connections {at} aborted by this host (it sent the RST)")
        }
        (CloseCounter::EstabResets, CloseCause::Other) => {
            format!("connections {at} closed without a RST (timeout or abort)")
        }
    }
}

/// Resets sent, by the kernel's reason, most first.
fn reasons(sent: &BTreeMap<String, u64>, tally: &Tally) -> Vec<Cause> {
    let mut out: Vec<Cause> = sent
        .iter()
        .map(|(reason, count)| Cause {
            count: *count,
            what: reason_words(reason),
            processes: tally.senders(reason),
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.what.cmp(&b.what)));
    out
}

/// The kernel's reason for sending a RST (enum sk_rst_reason), in words.
fn reason_words(reason: &str) -> String {
    let words = match reason {
        "NO_SOCKET" => "nothing listened on the port, or the connection was gone",
        "TCP_ABORT_ON_DATA" => "data arrived for a socket its application had closed",
        "TCP_ABORT_ON_CLOSE" => "an application closed a socket with unread data",
        "TCP_ABORT_ON_LINGER" => "a closed connection waited too long in FIN-WAIT-2",
        "TCP_ABORT_ON_MEMORY" => "out of memory for orphaned sockets",
        "TCP_KEEPALIVE_TIMEOUT" => "keepalives went unanswered",
        "TCP_DISCONNECT_WITH_DATA" => "an application disconnected with data queued",
        "TCP_STATE" => "a socket was closed in a state that needs a reset",
        "TCP_TIMEWAIT_SOCKET" => "a segment for a TIME-WAIT socket",
        "INVALID_SYN" => "an invalid SYN",
        _ => return reason.to_string(),
    };
    format!("{words} ({reason})")
}

/// The processes behind a count, in words: `all by collector (pid 4242)`.
pub fn by_whom(total: u64, procs: &[ProcessCount]) -> String {
    let named: u64 = procs.iter().map(|p| p.count).sum();
    let name = |p: &ProcessCount| format!("{} (pid {})", p.comm, p.pid);
    match procs {
        [] => "process unknown".into(),
        [p] if named == total => format!("all by {}", name(p)),
        _ => {
            let mut parts: Vec<String> = procs
                .iter()
                .take(5)
                .map(|p| format!("{} by {}", thousands(p.count), name(p)))
                .collect();
            if procs.len() > 5 {
                parts.push(format!("{} more processes", procs.len() - 5));
            }
            if named < total {
                parts.push(format!("{} by processes unknown", thousands(total - named)));
            }
            parts.join(", ")
        }
    }
}

/// The report as text, 80 columns.
pub fn text(out: &mut impl Write, r: &HostReport) -> io::Result<()> {
    let watched: Vec<String> = r.interfaces.iter().map(ToString::to_string).collect();
    writeln!(
        out,
        "rstwall host - {:.0}s from {} - interfaces: {}",
        r.duration_s,
        r.started_at,
        watched.join(", ")
    )?;
    writeln!(
        out,
        "Host mode observes: nothing was dropped, delayed or changed."
    )?;
    for u in &r.unavailable {
        writeln!(out, "  unavailable on this kernel: {} ({})", u.what, u.why)?;
    }
    writeln!(out)?;
    writeln!(out, "RSTs: {}", thousands(r.rsts))?;
    writeln!(
        out,
        "  {:<18}{:>10}{:>10}{:>10}{:>10}",
        "class", "total", "in", "out", "local"
    )?;
    for c in r.classes.iter().filter(|c| c.rsts > 0) {
        writeln!(
            out,
            "  {:<18}{:>10}{:>10}{:>10}{:>10}",
            c.class.as_str(),
            thousands(c.rsts),
            thousands(c.directions.received),
            thousands(c.directions.sent),
            thousands(c.directions.local)
        )?;
    }
    let a = &r.agreement;
    writeln!(
        out,
        "  the kernel's verdict: {} agree, {} disagree, {} not comparable, {} without a verdict",
        thousands(a.agrees),
        thousands(a.disagrees),
        thousands(a.unjudged),
        thousands(a.no_verdict)
    )?;
    if !r.ports.is_empty() {
        writeln!(out, "\nBy service port")?;
        for p in &r.ports {
            writeln!(
                out,
                "  {:<8}{:>10}  {}",
                p.port,
                thousands(p.rsts),
                tallies(p)
            )?;
        }
    }
    if !r.processes.is_empty() || r.unowned > 0 {
        writeln!(out, "\nBy process")?;
        for p in &r.processes {
            let classes: Vec<String> = p
                .classes
                .iter()
                .map(|c| format!("{} {}", c.class, thousands(c.rsts)))
                .collect();
            let ports: Vec<String> = p.ports.iter().map(u16::to_string).collect();
            let place = p
                .unit
                .clone()
                .or_else(|| p.container.as_ref().map(|c| format!("container {c}")))
                .unwrap_or_else(|| p.cgroup.clone());
            let line = format!(
                "  {} (pid {}){:>10}  {}; port {}  {}",
                p.comm,
                p.pid,
                thousands(p.rsts),
                classes.join(", "),
                ports.join(","),
                place
            );
            writeln!(out, "{}", line.trim_end())?;
        }
        if r.unowned > 0 {
            writeln!(
                out,
                "  no local process{:>10}  (no socket of this host's)",
                thousands(r.unowned)
            )?;
        }
    }
    writeln!(out, "\nAlerts")?;
    if r.alerts.is_empty() {
        writeln!(out, "  none fired")?;
    }
    for e in &r.alerts {
        writeln!(
            out,
            "  {} {}: {:.1}/s (its threshold: {}/s)",
            e.rule, e.level, e.value, e.threshold
        )?;
    }
    writeln!(out, "\nnetstat -s, over the same time")?;
    for n in &r.netstat {
        let seen = match n.observed {
            Some(o) => format!(" (host mode saw {})", thousands(o)),
            None => String::new(),
        };
        writeln!(
            out,
            "  {} +{} [{}]{seen}",
            n.name,
            thousands(n.delta),
            n.counter
        )?;
        for line in wrap(&n.meaning, 72) {
            writeln!(out, "      {line}")?;
        }
        for c in &n.causes {
            writeln!(
                out,
                "      {} {}, {}",
                thousands(c.count),
                c.what,
                by_whom(c.count, &c.processes)
            )?;
        }
    }
    let l = &r.loss;
    if l.records_lost + l.rsts_dropped + l.events_dropped > 0 {
        writeln!(
            out,
            "\nNot seen for lack of room: {} header records, {} judged RSTs, {} events",
            thousands(l.records_lost),
            thousands(l.rsts_dropped),
            thousands(l.events_dropped)
        )?;
    }
    Ok(())
}

/// `text` in lines of at most `width` columns (a longer word keeps its
/// own line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn tallies(p: &PortRow) -> String {
    p.classes
        .iter()
        .map(|c| format!("{} {}", c.class, thousands(c.rsts)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pc(pid: u32, comm: &str, count: u64) -> ProcessCount {
        ProcessCount {
            pid,
            comm: comm.into(),
            count,
        }
    }

    #[test]
    fn whom_in_words() {
        assert_eq!(
            by_whom(60, &[pc(4242, "collector", 60)]),
            "all by collector (pid 4242)"
        );
        assert_eq!(
            by_whom(10, &[pc(1, "a", 6), pc(2, "b", 3)]),
            "6 by a (pid 1), 3 by b (pid 2), 1 by processes unknown"
        );
        assert_eq!(by_whom(3, &[]), "process unknown");
    }

    #[test]
    fn closes_in_words() {
        let ep: SocketAddr = "127.0.0.1:7211".parse().unwrap();
        assert_eq!(
            close_words(
                CloseCounter::AttemptFails,
                CloseCause::ResetReceived,
                ep,
                true
            ),
            "connects to 127.0.0.1:7211 refused"
        );
        assert_eq!(
            close_words(CloseCounter::EstabResets, CloseCause::ResetSent, ep, false),
            "connections on 127.0.0.1:7211 aborted by this host (it sent the RST)"
        );
        assert_eq!(
            reason_words("NO_SOCKET"),
            "nothing listened on the port, or the connection was gone (NO_SOCKET)"
        );
        assert_eq!(reason_words("SOMETHING_NEW"), "SOMETHING_NEW");
    }

    #[test]
    fn meanings_wrap() {
        assert_eq!(wrap("aa bb cc", 5), vec!["aa bb", "cc"]);
        assert_eq!(wrap("a verylongword b", 4), vec!["a", "verylongword", "b"]);
        assert!(wrap("  ", 10).is_empty());
    }
}
