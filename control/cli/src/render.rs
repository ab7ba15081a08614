//! Text rendering of reports for a terminal, 80 columns wide.

use std::io::{self, Write};

use rstwall_api::text::thousands;
use rstwall_engine::policy::Mode;
use rstwall_engine::telemetry::{Level, Snapshot};
use rstwall_engine::wire::{NotTcp, ParseError};
use rstwall_engine::RstClass;
use rstwall_pcap::analyze::{format_ts, Report};

fn duration(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}.{:03}s", s, ns % 1_000_000_000 / 1_000_000)
    }
}

/// The `analyze` report.
pub fn report(out: &mut impl Write, r: &Report) -> io::Result<()> {
    writeln!(out, "rstwall analyze")?;
    for f in &r.files {
        write!(
            out,
            "  {}  {}, {} frames",
            f.path,
            f.format,
            thousands(f.frames)
        )?;
        if let Some(stop) = &f.stopped {
            write!(out, "\n    ! damaged: read up to {stop}")?;
        }
        for (lt, n) in &f.unsupported_linktypes {
            write!(
                out,
                "\n    {} frames of link type {lt} not read",
                thousands(*n)
            )?;
        }
        writeln!(out)?;
    }
    if let (Some(a), Some(b)) = (r.first_ns, r.last_ns) {
        writeln!(
            out,
            "  {} .. {} ({})",
            format_ts(a),
            format_ts(b),
            duration(b.saturating_sub(a))
        )?;
    }
    writeln!(out)?;
    match r.mode {
        Mode::Monitor => writeln!(
            out,
            "Policy: monitor. Nothing is dropped; \"would drop\" is what enforce would do."
        )?,
        Mode::Enforce => writeln!(out, "Policy: enforce.")?,
    }
    writeln!(out)?;
    snapshot(out, &r.snapshot, r.mode)
}

/// Counters, classes, tops and alerts: shared by `analyze` and `stats`.
pub fn snapshot(out: &mut impl Write, s: &Snapshot, mode: Mode) -> io::Result<()> {
    let c = &s.counters;
    let not_tcp: u64 = c.not_tcp.iter().sum();
    let bad: u64 = c.parse_errors.iter().sum();
    writeln!(out, "Packets")?;
    writeln!(
        out,
        "  frames {}   TCP {}   not TCP {}   unparsable {}   unknown link {}",
        thousands(c.frames),
        thousands(c.tcp),
        thousands(not_tcp),
        thousands(bad),
        thousands(c.unsupported_link)
    )?;
    writeln!(
        out,
        "  SYN {}   SYN-ACK {}   FIN {}   RST {} (with ACK {})",
        thousands(c.syn),
        thousands(c.synack),
        thousands(c.fin),
        thousands(c.rst),
        thousands(c.rstack)
    )?;
    writeln!(
        out,
        "  failed connection attempts (SYN answered by RST): {}",
        thousands(c.failed_connects)
    )?;
    if bad > 0 {
        let parts: Vec<String> = ParseError::ALL
            .iter()
            .filter(|e| c.parse_errors[e.index()] > 0)
            .map(|e| format!("{} {}", e.as_str(), thousands(c.parse_errors[e.index()])))
            .collect();
        writeln!(out, "  unparsable: {}", parts.join(", "))?;
    }
    let later = c.not_tcp[NotTcp::LaterFragment.index()];
    if later > 0 {
        writeln!(
            out,
            "  non-first IP fragments (no TCP header): {}",
            thousands(later)
        )?;
    }
    writeln!(out)?;

    let drop_col = match mode {
        Mode::Monitor => "would drop",
        Mode::Enforce => "dropped",
    };
    writeln!(
        out,
        "RSTs by class          total  {drop_col:>10}  with data  meaning"
    )?;
    let classes = s.rst_classes();
    let total: u64 = classes.iter().map(|r| r.counts.total).sum();
    for row in &classes {
        let c = &row.counts;
        let dropped = match mode {
            Mode::Enforce => c.dropped,
            Mode::Monitor => c.would_drop,
        };
        writeln!(
            out,
            "  {:<17} {:>10}  {:>10}  {:>9}  {}",
            row.class.as_str(),
            thousands(c.total),
            thousands(dropped),
            thousands(c.with_data),
            short(row.class)
        )?;
    }
    writeln!(out, "  {:<17} {:>10}", "all", thousands(total))?;
    writeln!(out)?;

    writeln!(
        out,
        "Flows: {} tracked now, {} created, {} expired, {} evicted, {} table-full",
        thousands(s.active_flows as u64),
        thousands(s.flows.created),
        thousands(s.flows.expired),
        thousands(s.flows.evicted),
        thousands(s.flows.table_full)
    )?;
    writeln!(out)?;

    if !s.top_by_class.is_empty() {
        writeln!(out, "Top RST senders and service ports by class")?;
        for t in &s.top_by_class {
            let srcs: Vec<String> = t
                .sources
                .iter()
                .take(3)
                .map(|e| format!("{} ({})", e.key, thousands(e.count)))
                .collect();
            let ports: Vec<String> = t
                .ports
                .iter()
                .take(3)
                .map(|e| format!("{} ({})", e.key, thousands(e.count)))
                .collect();
            writeln!(out, "  {}", t.class.as_str())?;
            if !srcs.is_empty() {
                writeln!(out, "    sources: {}", srcs.join(", "))?;
            }
            if !ports.is_empty() {
                writeln!(out, "    ports:   {}", ports.join(", "))?;
            }
        }
        writeln!(out)?;
    }
    if !s.top_failed_clients.is_empty() {
        let v: Vec<String> = s
            .top_failed_clients
            .iter()
            .take(5)
            .map(|e| format!("{} ({})", e.key, thousands(e.count)))
            .collect();
        writeln!(out, "Clients with refused connections: {}", v.join(", "))?;
        writeln!(out)?;
    }

    if !s.hosts.is_empty() {
        writeln!(
            out,
            "Hosts (most active)      SYN out/in  SYN-ACK out/in  FIN out/in  RST out/in  failed"
        )?;
        for h in s.hosts.iter().take(10) {
            let st = &h.stats;
            writeln!(
                out,
                "  {:<22} {:>10}  {:>14}  {:>10}  {:>10}  {:>6}",
                h.host.to_string(),
                format!("{}/{}", st.syn_sent, st.syn_received),
                format!("{}/{}", st.synack_sent, st.synack_received),
                format!("{}/{}", st.fin_sent, st.fin_received),
                format!("{}/{}", st.rst_sent, st.rst_received),
                st.failed_connects
            )?;
        }
        writeln!(
            out,
            "  (out = sent by the host; failed = its SYNs answered by RST)"
        )?;
        writeln!(out)?;
    }
    if let Some(peak) = s.seconds.iter().filter(|x| x.rst > 0).max_by_key(|x| x.rst) {
        writeln!(
            out,
            "Busiest second of the last minute: {} with {} RSTs, {} SYNs, {} failed connects",
            &format_ts(peak.second * 1_000_000_000)[..19],
            thousands(peak.rst),
            thousands(peak.syn),
            thousands(peak.failed_connects)
        )?;
        writeln!(out)?;
    }

    writeln!(out, "Alerts")?;
    if s.alerts.is_empty() {
        writeln!(out, "  none fired")?;
    }
    for a in &s.alerts {
        let level = match a.level {
            Level::Ok => "ok      ",
            Level::Warning => "WARNING ",
            Level::Critical => "CRITICAL",
        };
        let cmp = if a.level == Level::Ok { "<" } else { ">=" };
        writeln!(
            out,
            "  {}  {}  {}: {} = {:.1} {} {}",
            &format_ts(a.at * 1_000_000_000)[..19],
            level,
            a.rule,
            a.metric,
            a.value,
            cmp,
            a.threshold
        )?;
    }
    if !s.active_alerts.is_empty() {
        let v: Vec<String> = s
            .active_alerts
            .iter()
            .map(|a| format!("{} ({:?})", a.rule, a.level).to_lowercase())
            .collect();
        writeln!(out, "  active at end: {}", v.join(", "))?;
    }
    Ok(())
}

fn short(c: RstClass) -> &'static str {
    match c {
        RstClass::Refused => "closed port answered a SYN",
        RstClass::Abort => "real abort of a live flow",
        RstClass::Teardown => "reset after FIN (data after close)",
        RstClass::InWindow => "not exact: challenge ACK; injection?",
        RstClass::OutOfWindow => "outside window: spoofed or stale",
        RstClass::SynSentBadAck => "answers SYN, wrong ack: spoofed",
        RstClass::NoFlow => "no flow: backscatter, scan, old",
        RstClass::InvalidFlags => "RST with SYN or FIN",
    }
}
