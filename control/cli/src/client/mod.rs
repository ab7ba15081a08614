//! The client commands: `status`, `stats`, `top`, `flows`, `policy`,
//! `block`, `capture`, `alerts`. Each is one or a few requests to the
//! daemon's control API through [`rstwall_api::Client`], and a rendering
//! of the documents it answers with.
//!
//! Exit status: 0 on success; 1 when the daemon cannot be reached or
//! fails (one line says which); 2 when the request is refused as invalid
//! (bad arguments, a policy file with an error, an unknown CIDR...).

mod capture;
mod top;

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rstwall_api::stats::afxdp::XskTotals;
use rstwall_api::status::HostStatus;
use rstwall_api::text::thousands;
use rstwall_api::{BlockAdd, Client, FlowsQuery, PolicyChange, Stats};
use rstwall_engine::flow::FlowState;
use rstwall_engine::RstClass;
use rstwall_pcap::analyze::format_ts;
use serde::Serialize;

use crate::cli::{AlertsArgs, BlockCommand, FlowsArgs, PolicyCommand, StatsArgs, StatusArgs};
use crate::Failure;

pub use capture::capture;
pub use top::{on_terminal, run_top, run_view, top, top_frame, Previous, TopEnd, TopFeed};

/// A document as `--json` prints it: as the daemon wrote it.
fn print_json(doc: &impl Serialize) -> Result<(), Failure> {
    let text = rstwall_api::document_json(doc).map_err(Failure::runtime)?;
    io::stdout()
        .lock()
        .write_all(&text)
        .map_err(Failure::runtime)
}

/// A rate, compactly: 950, 12.3k, 4.56M.
pub fn rate(x: f64) -> String {
    if x < 1000.0 {
        format!("{x:.0}")
    } else if x < 1e6 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{:.2}M", x / 1e6)
    }
}

pub fn duration_text(secs: f64) -> String {
    let s = secs as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A duration argument: `90s`, `10m`, `2h`, `1d`, `1h30m`, or seconds.
pub fn parse_duration(name: &str, text: &str) -> Result<Duration, Failure> {
    let t = text.trim();
    let d = match t.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => humantime::parse_duration(t).map_err(|e| e.to_string()),
    };
    match d {
        Ok(d) if d >= Duration::from_secs(1) => Ok(d),
        Ok(_) => Err(Failure::usage(anyhow!(
            "{name}: at least one second, not {text:?}"
        ))),
        Err(e) => Err(Failure::usage(anyhow!(
            "{name}: {text:?} is not a duration ({e}; e.g. 90s, 10m, 2h, 1d)"
        ))),
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Catch SIGINT and SIGTERM: commands that write files end them cleanly.
pub fn catch_interrupts() {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// status, stats
// ---------------------------------------------------------------------------

pub fn status(args: StatusArgs) -> Result<(), Failure> {
    let st = Client::at(&args.socket.socket).status()?;
    if args.json {
        return print_json(&st);
    }
    let ports: Vec<String> = st
        .ports
        .iter()
        .map(|p| format!("{} (xdp {})", p.port, p.xdp_mode))
        .collect();
    let policy = &st.policy;
    if let Some(host) = &st.host {
        return print_host_status(&st, host);
    }
    let text = format!(
        "rstwall {} (pid {}), up {}\n\
         mode:     {}\n\
         ports:    {}\n\
         queues:   {} ({} workers publishing), AF_XDP {}, poll {}\n\
         {}\
         policy:   version {} (digest {}), {}, {} operator block{}\n",
        st.version,
        st.pid,
        duration_text(st.uptime_s),
        st.mode,
        ports.join(", "),
        st.queues,
        st.workers_running,
        st.xsk_mode,
        poll_summary(&st.sockets),
        st.sockets
            .iter()
            .filter_map(|s| s
                .poll_fallback
                .as_ref()
                .map(|why| format!("          {}/{}: {why}\n", s.port, s.queue)))
            .collect::<String>(),
        policy.version,
        policy.digest,
        policy.mode,
        st.blocks,
        plural(st.blocks),
    );
    let text = match &st.export {
        None => text,
        Some(e) => format!(
            "{text}export:   {} to {} (stream {}, node {}): {} acked, {} queued, \
             {} spooled ({} bytes), lag {} ms, {} dropped ({} before the intake){}\n",
            e.state,
            e.servers.join(", "),
            e.stream,
            e.node,
            e.acked,
            e.queued,
            e.spool_messages,
            e.spool_bytes,
            e.lag_ms,
            e.dropped,
            e.dropped_before_intake,
            e.last_error
                .as_deref()
                .map_or(String::new(), |err| format!("; last error: {err}")),
        ),
    };
    io::stdout()
        .write_all(text.as_bytes())
        .map_err(Failure::runtime)
}

/// The sockets' poll modes in effect: one name when they agree, else
/// each with its count ("spin 1, busy 1").
fn poll_summary(sockets: &[rstwall_api::status::Socket]) -> String {
    let mut modes: Vec<(&str, usize)> = Vec::new();
    for s in sockets {
        match modes.iter_mut().find(|(m, _)| *m == s.poll.as_str()) {
            Some((_, n)) => *n += 1,
            None => modes.push((s.poll.as_str(), 1)),
        }
    }
    match modes.as_slice() {
        [] => "none".into(),
        [(m, _)] => (*m).to_string(),
        many => many
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// `status` of a daemon in host mode: what it watches, and what it cannot
/// see on this kernel.
fn print_host_status(st: &rstwall_api::Status, host: &HostStatus) -> Result<(), Failure> {
    let watched: Vec<String> = host.interfaces.iter().map(ToString::to_string).collect();
    let policy = &st.policy;
    let mut text = format!(
        "rstwall {} (pid {}), up {}\n\
         mode:     host mode: observes this host's own TCP, never touches a packet\n\
         watching: {}\n\
         workers:  {} ({} publishing)\n\
         policy:   version {} (digest {}), {}; runs as {} in host mode\n",
        st.version,
        st.pid,
        duration_text(st.uptime_s),
        watched.join(", "),
        st.queues,
        st.workers_running,
        policy.version,
        policy.digest,
        policy.mode,
        host.policy_runs_as,
    );
    for u in &host.unavailable {
        text.push_str(&format!(
            "unavailable on this kernel: {} ({})\n",
            u.what, u.why
        ));
    }
    io::stdout()
        .write_all(text.as_bytes())
        .map_err(Failure::runtime)
}

/// The AF_XDP source's totals (zeros for another source).
fn xsk(s: &Stats) -> XskTotals {
    s.totals.source.afxdp.clone().unwrap_or_default()
}

/// A number of a statistics document.
type Counter = fn(&Stats) -> u64;

/// One statistics document, and the one before it for rates.
struct Watched<'a> {
    now: &'a Stats,
    /// The previous document and the seconds between the two.
    before: Option<(&'a Stats, f64)>,
}

impl Watched<'_> {
    /// A counter and, when watching, its rate.
    fn per(&self, counter: impl Fn(&Stats) -> u64) -> String {
        match self.before {
            Some((p, secs)) => {
                let d = counter(self.now).saturating_sub(counter(p));
                format!("{:>9}/s", rate(d as f64 / secs))
            }
            None => String::new(),
        }
    }
}

fn stats_text(w: &Watched) -> String {
    let v = w.now;
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "at {}  mode {}  policy v{}  AF_XDP {}  uptime {}",
        v.at,
        v.mode,
        v.policy.version,
        v.xsk_mode,
        duration_text(v.uptime_s),
    ));
    let row = |name: &str, counter: Counter| {
        format!(
            "  {name:<24}{:>16}{}",
            thousands(counter(v)),
            w.per(counter)
        )
    };
    line("packets".into());
    let packets: [(&str, Counter); 10] = [
        ("frames", |s| s.totals.counters.frames),
        ("tcp", |s| s.totals.counters.tcp),
        ("syn", |s| s.totals.counters.syn),
        ("syn-ack", |s| s.totals.counters.synack),
        ("fin", |s| s.totals.counters.fin),
        ("rst", |s| s.totals.counters.rst),
        ("failed connects", |s| s.totals.counters.failed_connects),
        ("passed", |s| s.totals.counters.passed),
        ("dropped", |s| s.totals.counters.dropped),
        ("would drop", |s| s.totals.counters.would_drop),
    ];
    for (name, counter) in packets {
        line(row(name, counter));
    }
    line(format!(
        "rst by class {:>28}{:>12}{:>12}",
        "total", "dropped", "would_drop"
    ));
    for class in RstClass::ALL {
        let c = v.rst(class);
        line(format!(
            "  {:<24}{:>16}{:>12}{:>12}{}",
            class.as_str(),
            thousands(c.total),
            thousands(c.dropped),
            thousands(c.would_drop),
            w.per(|s| s.rst(class).total),
        ));
    }
    line("flows".into());
    line(row("active", |s| s.totals.active_flows as u64));
    line(row("created", |s| s.totals.flows.created));
    line(row("evicted", |s| s.totals.flows.evicted));
    line(row("table full", |s| s.totals.flows.table_full));
    if v.host.is_some() {
        // Host mode: no XDP, no AF_XDP; its kernel side and verdicts.
        fn host(s: &Stats) -> rstwall_api::stats::host::HostKernel {
            s.host.clone().unwrap_or_default()
        }
        line("host mode (observes only)".into());
        line(row("ring records", |s| host(s).records));
        line(row("ring records lost", |s| host(s).records_lost));
        line(row("kernel events", |s| host(s).kernel_events));
        line(row("kernel events lost", |s| host(s).kernel_events_lost));
        line(row("RSTs agreeing", |s| host(s).agreement.agrees));
        line(row("RSTs disagreeing", |s| host(s).agreement.disagrees));
        line(row("RSTs not comparable", |s| host(s).agreement.unjudged));
        line(row("RSTs without verdict", |s| {
            host(s).agreement.no_verdict
        }));
        for reason in host(v).resets_sent.keys() {
            line(format!(
                "  {:<24}{:>16}",
                format!("sent {reason}"),
                thousands(host(v).resets_sent[reason])
            ));
        }
    } else {
        line("kernel (XDP)".into());
        line(row("deny dropped", |s| s.kernel.deny_dropped));
        line(row("block dropped", |s| s.kernel.block_dropped));
        line(row("sources blocked", |s| s.kernel.sources_blocked));
        line("AF_XDP".into());
        line(row("rx frames", |s| xsk(s).rx_frames));
        line(row("tx frames", |s| xsk(s).tx_frames));
        line(row("rx ring full", |s| xsk(s).ring.rx_ring_full));
        line(row("fill ring empty", |s| {
            xsk(s).ring.rx_fill_ring_empty_descs
        }));
        line(row("rx dropped", |s| xsk(s).ring.rx_dropped));
    }
    let lat = &v.totals.batch_latency;
    line(format!(
        "batch time: {} batches, p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
        thousands(lat.batches),
        lat.p50_ns as f64 / 1e3,
        lat.p99_ns as f64 / 1e3,
        lat.p999_ns as f64 / 1e3,
        lat.max_ns as f64 / 1e3,
    ));
    out
}

pub fn stats(args: StatsArgs) -> Result<(), Failure> {
    let client = Client::at(&args.socket.socket);
    let Some(every) = args.watch else {
        let v = client.stats()?;
        if args.json {
            return print_json(&v);
        }
        let text = stats_text(&Watched {
            now: &v,
            before: None,
        });
        return io::stdout()
            .write_all(text.as_bytes())
            .map_err(Failure::runtime);
    };
    if !(every.is_finite() && (0.1..=3600.0).contains(&every)) {
        return Err(Failure::usage(anyhow!(
            "--watch: from 0.1 to 3600 seconds, not {every}"
        )));
    }
    let tty = io::stdout().is_terminal();
    let mut prev: Option<(Instant, Stats)> = None;
    loop {
        let v = client.stats()?;
        let now = Instant::now();
        let mut out = io::stdout().lock();
        let r = if args.json {
            // One document a line, keys as the daemon writes them.
            serde_json::to_value(&v)
                .and_then(|doc| serde_json::to_writer(&mut out, &doc))
                .map_err(io::Error::from)
                .and_then(|()| writeln!(out))
        } else {
            let text = stats_text(&Watched {
                now: &v,
                before: prev
                    .as_ref()
                    .map(|(t, p)| (p, now.duration_since(*t).as_secs_f64().max(1e-3))),
            });
            let clear = if tty { "\x1b[H\x1b[2J" } else { "" };
            write!(out, "{clear}{text}{}", if tty { "" } else { "\n" })
        };
        r.and_then(|()| out.flush()).map_err(Failure::runtime)?;
        drop(out);
        prev = Some((now, v));
        std::thread::sleep(Duration::from_secs_f64(every));
    }
}

// ---------------------------------------------------------------------------
// flows
// ---------------------------------------------------------------------------

pub fn flows(args: FlowsArgs) -> Result<(), Failure> {
    let state = args
        .state
        .as_deref()
        .map(|st| {
            // Checked here, for a usage error before any connection.
            st.parse::<FlowState>()
                .map_err(|e| Failure::usage(anyhow!("--state: {e}")))
        })
        .transpose()?;
    let v = Client::at(&args.socket.socket).flows(FlowsQuery {
        state,
        limit: args.limit as usize,
    })?;
    if args.json {
        return print_json(&v);
    }
    let mut out = String::new();
    out.push_str(&format!(
        "{:<28} {:<28} {:<13} {:>6} {:>3}\n",
        "CLIENT", "SERVER", "STATE", "IDLE", "Q"
    ));
    for f in &v.flows {
        out.push_str(&format!(
            "{:<28} {:<28} {:<13} {:>5}s {:>3}\n",
            SocketAddr::new(f.client, f.client_port).to_string(),
            SocketAddr::new(f.server, f.server_port).to_string(),
            format!("{}{}", f.state, if f.midstream { "*" } else { "" }),
            f.idle_s,
            f.worker,
        ));
    }
    out.push_str(&format!(
        "{} flow{} shown{}\n",
        v.flows.len(),
        plural(v.flows.len()),
        if v.flows.len() >= v.limit {
            " (the limit: --limit N for more)"
        } else {
            ""
        }
    ));
    io::stdout()
        .write_all(out.as_bytes())
        .map_err(Failure::runtime)
}

// ---------------------------------------------------------------------------
// policy
// ---------------------------------------------------------------------------

fn read_policy_file(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(anyhow!("cannot read {}: {e}", path.display())))
}

/// Name the file in a policy error the daemon sends back.
fn in_file(path: &Path, f: Failure) -> Failure {
    Failure {
        status: f.status,
        error: f.error.context(format!("{}", path.display())),
    }
}

pub fn policy(cmd: PolicyCommand) -> Result<(), Failure> {
    let text = match cmd {
        PolicyCommand::Show { socket, json } => {
            let p = Client::at(&socket.socket).policy()?;
            if json {
                return print_json(&p);
            }
            format!(
                "# running policy: version {} (digest {}), {} operator block{} \
                 (rstwall block list)\n{}",
                p.version,
                p.digest,
                p.blocks,
                plural(p.blocks),
                p.toml,
            )
        }
        PolicyCommand::Set {
            socket,
            assignments,
        } => {
            // The same checks the daemon runs, before connecting.
            let mut scratch = rstwall_engine::policy::PolicyConfig::default();
            for a in &assignments {
                scratch
                    .set_assignment(a)
                    .map_err(|e| Failure::usage(anyhow!("{e}")))?;
            }
            changed_text(&Client::at(&socket.socket).policy_set(assignments)?)
        }
        PolicyCommand::Apply { socket, file } => {
            let toml = read_policy_file(&file)?;
            let c = Client::at(&socket.socket)
                .policy_apply(toml)
                .map_err(|e| in_file(&file, e))?;
            changed_text(&c)
        }
        PolicyCommand::Diff { socket, file } => {
            let toml = read_policy_file(&file)?;
            let d = Client::at(&socket.socket)
                .policy_diff(toml)
                .map_err(|e| in_file(&file, e))?;
            if d.changed {
                d.diff
            } else {
                format!(
                    "no differences: {} is the running policy (version {})\n",
                    file.display(),
                    d.version
                )
            }
        }
    };
    io::stdout()
        .write_all(text.as_bytes())
        .map_err(Failure::runtime)
}

fn changed_text(c: &PolicyChange) -> String {
    if c.changed {
        format!(
            "policy version {} applied ({}, digest {})\n",
            c.version,
            c.mode.map_or("?", |m| m.as_str()),
            c.digest
        )
    } else {
        format!(
            "unchanged: the running policy (version {}) already says so\n",
            c.version
        )
    }
}

// ---------------------------------------------------------------------------
// block
// ---------------------------------------------------------------------------

pub fn block(cmd: BlockCommand) -> Result<(), Failure> {
    let check = |c: &str| rstwall_api::parse_cidr(c).map_err(|e| Failure::usage(anyhow!(e)));
    let text = match cmd {
        BlockCommand::Add { socket, cidr, ttl } => {
            let cidr = check(&cidr)?;
            let ttl_s = ttl
                .map(|t| parse_duration("--ttl", &t))
                .transpose()?
                .map(|d| d.as_secs());
            let b = Client::at(&socket.socket).block_add(&BlockAdd {
                cidr: cidr.to_string(),
                ttl_s,
            })?;
            let until = match b.until {
                Some(t) => format!(" until {}", format_ts(t * 1_000_000_000)),
                None => " until removed".into(),
            };
            let note = if b.enforced {
                ""
            } else {
                "\nnote: the policy is in monitor mode: its TCP is counted as would-drop, \
                 not dropped"
            };
            format!("blocked {}{until}{note}\n", b.cidr)
        }
        BlockCommand::Del { socket, cidr } => {
            let b = Client::at(&socket.socket).block_del(check(&cidr)?)?;
            format!("unblocked {}\n", b.cidr)
        }
        BlockCommand::List { socket, json } => {
            let list = Client::at(&socket.socket).blocks()?;
            if json {
                return print_json(&list);
            }
            let mut out = format!("{:<44} {:<32} {}\n", "CIDR", "UNTIL", "LEFT");
            for b in &list.blocks {
                let (until, left) = match b.until {
                    Some(t) => (
                        format_ts(t * 1_000_000_000),
                        duration_text(b.ttl_left_s.unwrap_or(0) as f64),
                    ),
                    None => ("removed".into(), "-".into()),
                };
                out.push_str(&format!("{:<44} {until:<32} {left}\n", b.cidr.to_string()));
            }
            let n = list.blocks.len();
            out.push_str(&format!(
                "{n} block{}{}\n",
                plural(n),
                if list.enforced || n == 0 {
                    ""
                } else {
                    " (monitor mode: counted, not dropped)"
                }
            ));
            out
        }
    };
    io::stdout()
        .write_all(text.as_bytes())
        .map_err(Failure::runtime)
}

// ---------------------------------------------------------------------------
// alerts
// ---------------------------------------------------------------------------

pub fn alerts(args: AlertsArgs) -> Result<(), Failure> {
    let a = Client::at(&args.socket.socket).alerts()?;
    if args.json {
        return print_json(&a);
    }
    let mut out = String::new();
    if a.active.is_empty() {
        out.push_str("active: none\n");
    } else {
        out.push_str("active:\n");
        for x in &a.active {
            out.push_str(&format!("  {:<24} {}\n", x.rule, x.level));
        }
    }
    out.push_str(&format!(
        "\nhistory ({} change{}):\n",
        a.history.len(),
        plural(a.history.len())
    ));
    if !a.history.is_empty() {
        out.push_str(&format!(
            "  {:<30} {:<22} {:<9} {:>12} {:>12}\n",
            "AT", "RULE", "LEVEL", "VALUE/s", "THRESHOLD"
        ));
    }
    for e in &a.history {
        out.push_str(&format!(
            "  {:<30} {:<22} {:<9} {:>12.1} {:>12.1}\n",
            format_ts(e.at * 1_000_000_000),
            e.rule,
            e.level.as_str(),
            e.value,
            e.threshold,
        ));
    }
    out.push_str("\nrules:\n");
    for r in &a.rules {
        out.push_str(&format!(
            "  {:<22} {:<34} warn {:>8} critical {:>8} over {} s\n",
            r.name,
            r.metric,
            json_number(r.warn),
            json_number(r.critical),
            r.window,
        ));
    }
    io::stdout()
        .write_all(out.as_bytes())
        .map_err(Failure::runtime)
}

/// A threshold as the rules table has always shown it: as JSON writes
/// the number (`2.0`, `1000.0`).
fn json_number(x: f64) -> String {
    serde_json::Number::from_f64(x).map_or_else(|| x.to_string(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_modes_summed_up() {
        use rstwall_api::stats::afxdp::{PollMode, XskMode};
        let sock = |poll| rstwall_api::status::Socket {
            port: "pa".into(),
            queue: 0,
            xsk_mode: XskMode::Copy,
            poll,
            poll_fallback: None,
        };
        assert_eq!(poll_summary(&[]), "none");
        assert_eq!(
            poll_summary(&[sock(PollMode::Busy), sock(PollMode::Busy)]),
            "busy"
        );
        assert_eq!(
            poll_summary(&[
                sock(PollMode::Spin),
                sock(PollMode::Busy),
                sock(PollMode::Spin)
            ]),
            "spin 2, busy 1"
        );
    }

    #[test]
    fn numbers_and_durations() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(rate(950.4), "950");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(
            parse_duration("--ttl", "90").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_duration("--ttl", "10m").unwrap(),
            Duration::from_secs(600)
        );
        assert_eq!(
            parse_duration("--ttl", "1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        for bad in ["", "0", "5ms", "ten", "-3"] {
            let e = parse_duration("--ttl", bad).unwrap_err();
            assert_eq!(e.status, 2, "{bad}");
        }
        assert_eq!(
            (json_number(2.0), json_number(0.5)),
            ("2.0".into(), "0.5".into())
        );
    }
}
