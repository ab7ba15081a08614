//! The client commands: `status`, `stats`, `top`, `flows`, `policy`,
//! `block`, `capture`, `alerts`. Each is one or a few requests to the
//! daemon's control API ([`crate::api`]) and a rendering of the answer.
//!
//! Exit status: 0 on success; 1 when the daemon cannot be reached or
//! fails (one line says which); 2 when the request is refused as invalid
//! (bad arguments, a policy file with an error, an unknown CIDR...).

use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::{json, Value};

use crate::cli::{
    AlertsArgs, BlockCommand, CaptureArgs, FlowsArgs, PolicyCommand, StatsArgs, StatusArgs, TopArgs,
};
use crate::Failure;
use rstwall_api::text::thousands;
use rstwall_api::{http, Client};
use rstwall_engine::RstClass;
use rstwall_pcap::analyze::format_ts;

fn print_json(v: &Value) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)
        .map_err(io::Error::from)
        .and_then(|()| writeln!(out))
        .map_err(Failure::runtime)
}

fn u(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

fn s<'v>(v: &'v Value, path: &[&str]) -> &'v str {
    path.iter().fold(v, |v, k| &v[*k]).as_str().unwrap_or("?")
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

fn duration_text(secs: f64) -> String {
    let s = secs as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
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

// ---------------------------------------------------------------------------
// status, stats
// ---------------------------------------------------------------------------

pub fn status(args: StatusArgs) -> Result<(), Failure> {
    let v = Client::at(&args.socket.socket).call("GET", "/v1/status", None)?;
    if args.json {
        return print_json(&v);
    }
    let ports: Vec<String> = v["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{} (xdp {})", s(p, &["port"]), s(p, &["xdp_mode"])))
        .collect();
    let policy = &v["policy"];
    let text = format!(
        "rstwall {} (pid {}), up {}\n\
         mode:     {}\n\
         ports:    {}\n\
         queues:   {} ({} workers publishing), AF_XDP {}\n\
         policy:   version {} (digest {}), {}, {} operator block{}\n",
        s(&v, &["version"]),
        u(&v, &["pid"]),
        duration_text(v["uptime_s"].as_f64().unwrap_or(0.0)),
        s(&v, &["mode"]),
        ports.join(", "),
        u(&v, &["queues"]),
        u(&v, &["workers_running"]),
        s(&v, &["xsk_mode"]),
        u(policy, &["version"]),
        s(policy, &["digest"]),
        s(policy, &["mode"]),
        u(&v, &["blocks"]),
        if u(&v, &["blocks"]) == 1 { "" } else { "s" },
    );
    io::stdout()
        .write_all(text.as_bytes())
        .map_err(Failure::runtime)
}

/// Rates between two stats documents.
struct Rates {
    secs: f64,
}

impl Rates {
    fn of(prev: Option<&(Instant, Value)>, now: Instant) -> Option<Rates> {
        prev.map(|(t, _)| Rates {
            secs: now.duration_since(*t).as_secs_f64().max(1e-3),
        })
    }
}

fn stats_text(v: &Value, prev: Option<&Value>, rates: Option<&Rates>) -> String {
    let c = &v["totals"]["counters"];
    let per = |path: &[&str]| -> String {
        match (prev, rates) {
            (Some(p), Some(r)) => {
                let d = u(v, path).saturating_sub(u(p, path));
                format!("{:>9}/s", rate(d as f64 / r.secs))
            }
            _ => String::new(),
        }
    };
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "at {}  mode {}  policy v{}  AF_XDP {}  uptime {}",
        s(v, &["at"]),
        s(v, &["mode"]),
        u(v, &["policy", "version"]),
        s(v, &["xsk_mode"]),
        duration_text(v["uptime_s"].as_f64().unwrap_or(0.0)),
    ));
    let row = |name: &str, path: &[&str]| {
        format!("  {name:<24}{:>16}{}", thousands(u(v, path)), per(path))
    };
    line("packets".into());
    for (name, key) in [
        ("frames", "frames"),
        ("tcp", "tcp"),
        ("syn", "syn"),
        ("syn-ack", "synack"),
        ("fin", "fin"),
        ("rst", "rst"),
        ("failed connects", "failed_connects"),
        ("passed", "passed"),
        ("dropped", "dropped"),
        ("would drop", "would_drop"),
    ] {
        line(row(name, &["totals", "counters", key]));
    }
    line(format!(
        "rst by class {:>28}{:>12}{:>12}",
        "total", "dropped", "would_drop"
    ));
    for class in RstClass::ALL {
        let k = class.as_str();
        line(format!(
            "  {k:<24}{:>16}{:>12}{:>12}{}",
            thousands(u(v, &["rst", k, "total"])),
            thousands(u(v, &["rst", k, "dropped"])),
            thousands(u(v, &["rst", k, "would_drop"])),
            per(&["rst", k, "total"]),
        ));
    }
    let _ = c;
    line("flows".into());
    line(row("active", &["totals", "active_flows"]));
    line(row("created", &["totals", "flows", "created"]));
    line(row("evicted", &["totals", "flows", "evicted"]));
    line(row("table full", &["totals", "flows", "table_full"]));
    line("kernel (XDP)".into());
    line(row("deny dropped", &["kernel", "deny_dropped"]));
    line(row("block dropped", &["kernel", "block_dropped"]));
    line(row("sources blocked", &["kernel", "sources_blocked"]));
    line("AF_XDP".into());
    line(row("rx frames", &["totals", "rx_frames"]));
    line(row("tx frames", &["totals", "tx_frames"]));
    line(row("rx ring full", &["totals", "ring", "rx_ring_full"]));
    line(row(
        "fill ring empty",
        &["totals", "ring", "rx_fill_ring_empty_descs"],
    ));
    line(row("rx dropped", &["totals", "ring", "rx_dropped"]));
    let lat = &v["totals"]["batch_latency"];
    line(format!(
        "batch time: {} batches, p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
        thousands(u(lat, &["batches"])),
        u(lat, &["p50_ns"]) as f64 / 1e3,
        u(lat, &["p99_ns"]) as f64 / 1e3,
        u(lat, &["p999_ns"]) as f64 / 1e3,
        u(lat, &["max_ns"]) as f64 / 1e3,
    ));
    out
}

pub fn stats(args: StatsArgs) -> Result<(), Failure> {
    let client = Client::at(&args.socket.socket);
    let Some(every) = args.watch else {
        let v = client.call("GET", "/v1/stats", None)?;
        if args.json {
            return print_json(&v);
        }
        return io::stdout()
            .write_all(stats_text(&v, None, None).as_bytes())
            .map_err(Failure::runtime);
    };
    if !(every.is_finite() && (0.1..=3600.0).contains(&every)) {
        return Err(Failure::usage(anyhow!(
            "--watch: from 0.1 to 3600 seconds, not {every}"
        )));
    }
    let tty = io::stdout().is_terminal();
    let mut prev: Option<(Instant, Value)> = None;
    loop {
        let v = client.call("GET", "/v1/stats", None)?;
        let now = Instant::now();
        let mut out = io::stdout().lock();
        let r = if args.json {
            serde_json::to_writer(&mut out, &v)
                .map_err(io::Error::from)
                .and_then(|()| writeln!(out))
        } else {
            let rates = Rates::of(prev.as_ref(), now);
            let text = stats_text(&v, prev.as_ref().map(|(_, p)| p), rates.as_ref());
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
// top
// ---------------------------------------------------------------------------

/// One frame of `rstwall top`, `width` columns, at most `height` lines.
fn top_frame(
    status: &Value,
    stats: &Value,
    prev: Option<&(Instant, Value)>,
    now: Instant,
    tele: &Value,
    width: usize,
    height: usize,
) -> Vec<String> {
    let secs = prev.map(|(t, _)| now.duration_since(*t).as_secs_f64().max(1e-3));
    let per = |path: &[&str]| -> f64 {
        match (prev, secs) {
            (Some((_, p)), Some(secs)) => u(stats, path).saturating_sub(u(p, path)) as f64 / secs,
            _ => 0.0,
        }
    };
    let mut lines = Vec::new();
    let topo = match (&status["topology"]["inline"], &status["topology"]["tap"]) {
        (Value::Array(a), _) => format!(
            "inline {}<->{}",
            a.first().and_then(Value::as_str).unwrap_or("?"),
            a.get(1).and_then(Value::as_str).unwrap_or("?")
        ),
        (_, Value::String(p)) => format!("tap {p}"),
        _ => "?".into(),
    };
    lines.push(format!(
        "rstwall top - {topo} - {} - policy v{} - AF_XDP {} - up {}",
        s(status, &["policy", "mode"]),
        u(status, &["policy", "version"]),
        s(status, &["xsk_mode"]),
        duration_text(stats["uptime_s"].as_f64().unwrap_or(0.0)),
    ));
    let c = ["totals", "counters"];
    let cp = |k: &'static str| [c[0], c[1], k];
    lines.push(format!(
        "pkts {}/s  syn {}/s  rst {}/s  failed conn {}/s  dropped {}/s  flows {}",
        rate(per(&cp("frames"))),
        rate(per(&cp("syn"))),
        rate(per(&cp("rst"))),
        rate(per(&cp("failed_connects"))),
        rate(per(&cp("dropped"))),
        thousands(u(stats, &["totals", "active_flows"])),
    ));
    lines.push(String::new());
    lines.push(format!(
        "{:<18}{:>9}{:>14}{:>14}{:>14}",
        "RST class", "per sec", "total", "dropped", "would drop"
    ));
    for class in RstClass::ALL {
        let k = class.as_str();
        lines.push(format!(
            "{k:<18}{:>9}{:>14}{:>14}{:>14}",
            rate(per(&["rst", k, "total"])),
            thousands(u(stats, &["rst", k, "total"])),
            thousands(u(stats, &["rst", k, "dropped"])),
            thousands(u(stats, &["rst", k, "would_drop"])),
        ));
    }
    lines.push(String::new());
    // Top RST senders and top ports, side by side, since the daemon started.
    let senders: Vec<String> = tele["top_rst_senders"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("{:<26}{:>12}", s(e, &["key"]), thousands(u(e, &["count"]))))
        .collect();
    let mut ports: std::collections::BTreeMap<u64, u64> = Default::default();
    for t in tele["top_by_class"].as_array().into_iter().flatten() {
        for p in t["ports"].as_array().into_iter().flatten() {
            *ports.entry(u(p, &["key"])).or_default() += u(p, &["count"]);
        }
    }
    let mut ports: Vec<(u64, u64)> = ports.into_iter().collect();
    ports.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let ports: Vec<String> = ports
        .iter()
        .map(|(p, n)| format!("{p:<10}{:>12}", thousands(*n)))
        .collect();
    lines.push(format!(
        "{:<40}{}",
        "Top RST sources (since start)", "Top destination ports (RSTs)"
    ));
    let rows = height.saturating_sub(lines.len() + 4).clamp(1, 10);
    for i in 0..rows {
        let l = senders.get(i).map(String::as_str).unwrap_or("");
        let r = ports.get(i).map(String::as_str).unwrap_or("");
        if l.is_empty() && r.is_empty() {
            if i == 0 {
                lines.push("(none yet)".into());
            }
            break;
        }
        lines.push(format!("{l:<40}{r}"));
    }
    lines.push(String::new());
    let active: Vec<String> = tele["active_alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| format!("{} ({})", s(a, &["rule"]), s(a, &["level"])))
        .collect();
    lines.push(if active.is_empty() {
        "Alerts: none active".to_string()
    } else {
        format!("Alerts: {}", active.join(", "))
    });
    lines.truncate(height.saturating_sub(1).max(1));
    while lines.len() < height.saturating_sub(1) {
        lines.push(String::new());
    }
    lines.push("q quits".into());
    lines
        .into_iter()
        .map(|l| l.chars().take(width).collect())
        .collect()
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// Catch SIGINT and SIGTERM: commands that write files end them cleanly.
fn catch_interrupts() {
    let handler: extern "C" fn(libc::c_int) = on_interrupt;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

/// Puts the terminal back however `top` ends.
struct Screen {
    raw: bool,
}

impl Screen {
    fn open() -> io::Result<Screen> {
        crossterm::terminal::enable_raw_mode()?;
        let mut out = io::stdout();
        crossterm::execute!(
            out,
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )?;
        Ok(Screen { raw: true })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if self.raw {
            let mut out = io::stdout();
            let _ = crossterm::execute!(
                out,
                crossterm::cursor::Show,
                crossterm::terminal::LeaveAlternateScreen
            );
            let _ = crossterm::terminal::disable_raw_mode();
        }
    }
}

pub fn top(args: TopArgs) -> Result<(), Failure> {
    if !(args.interval.is_finite() && (0.2..=60.0).contains(&args.interval)) {
        return Err(Failure::usage(anyhow!(
            "--interval: from 0.2 to 60 seconds, not {}",
            args.interval
        )));
    }
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            return Err(Failure::usage(anyhow!(
                "--duration: a positive number of seconds"
            )));
        }
    }
    let client = Client::at(&args.socket.socket);
    let tty = io::stdout().is_terminal() && io::stdin().is_terminal();
    if !tty {
        catch_interrupts();
    }
    let quit = || INTERRUPTED.load(Ordering::Relaxed);
    run_top(
        &client,
        args.interval,
        args.duration.map(Duration::from_secs_f64),
        &quit,
    )
    .map(|_| ())
}

/// Why [`run_top`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopEnd {
    /// `q` or Esc.
    Quit,
    /// Ctrl-C in the terminal (raw mode takes it as a key, not a signal).
    Interrupt,
    /// The duration passed, or `stop` said so.
    Done,
}

/// The live view, until `q`, Ctrl-C, `duration`, or `stop()` returns true
/// (checked ten times a second). Without a terminal it prints one frame
/// per refresh, and signals are the caller's to handle.
pub fn run_top(
    client: &Client,
    interval: f64,
    duration: Option<Duration>,
    stop: &dyn Fn() -> bool,
) -> Result<TopEnd, Failure> {
    // Reach the daemon before touching the terminal.
    let mut status = client.call("GET", "/v1/status", None)?;
    let tty = io::stdout().is_terminal() && io::stdin().is_terminal();
    let _screen = if tty {
        Some(Screen::open().map_err(Failure::runtime)?)
    } else {
        None
    };
    let end = duration.map(|d| Instant::now() + d);
    let every = Duration::from_secs_f64(interval);
    let mut prev: Option<(Instant, Value)> = None;
    let mut frames = 0u64;
    loop {
        let stats = client.call("GET", "/v1/stats", None)?;
        let tele = client.call("GET", "/v1/telemetry?top=10", None)?;
        if frames.is_multiple_of(5) {
            status = client.call("GET", "/v1/status", None)?;
        }
        let now = Instant::now();
        let (w, h) = if tty {
            crossterm::terminal::size()
                .map(|(w, h)| (w as usize, h as usize))
                .unwrap_or((80, 24))
        } else {
            (100, 24)
        };
        let lines = top_frame(&status, &stats, prev.as_ref(), now, &tele, w, h);
        let mut out = io::stdout().lock();
        let text = if tty {
            // Raw mode: lines end in CR LF.
            format!("\x1b[H\x1b[2J{}", lines.join("\r\n"))
        } else {
            format!("{}\n\n", lines.join("\n"))
        };
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(Failure::runtime)?;
        drop(out);
        frames += 1;
        prev = Some((now, stats));
        // Wait for the next refresh, watching the keyboard.
        let next = now + every;
        loop {
            let t = Instant::now();
            if end.is_some_and(|e| t >= e) || stop() {
                return Ok(TopEnd::Done);
            }
            if t >= next {
                break;
            }
            let wait = (next - t).min(Duration::from_millis(100));
            if tty {
                use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
                if event::poll(wait).map_err(Failure::runtime)? {
                    if let Event::Key(k) = event::read().map_err(Failure::runtime)? {
                        if k.kind == KeyEventKind::Press {
                            if matches!(k.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) {
                                return Ok(TopEnd::Quit);
                            }
                            if k.code == KeyCode::Char('c')
                                && k.modifiers.contains(KeyModifiers::CONTROL)
                            {
                                return Ok(TopEnd::Interrupt);
                            }
                        }
                    }
                }
            } else {
                std::thread::sleep(wait);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// flows
// ---------------------------------------------------------------------------

pub fn flows(args: FlowsArgs) -> Result<(), Failure> {
    let mut target = format!("/v1/flows?limit={}", args.limit);
    if let Some(st) = &args.state {
        // Checked here too, for a usage error before any connection.
        st.parse::<rstwall_engine::flow::FlowState>()
            .map_err(|e| Failure::usage(anyhow!("--state: {e}")))?;
        target.push_str(&format!("&state={}", http::percent_encode(st)));
    }
    let v = Client::at(&args.socket.socket).call("GET", &target, None)?;
    if args.json {
        return print_json(&v);
    }
    let mut out = String::new();
    let ep = |f: &Value, a: &str, p: &str| -> String {
        let addr = s(f, &[a]);
        if addr.contains(':') {
            format!("[{addr}]:{}", u(f, &[p]))
        } else {
            format!("{addr}:{}", u(f, &[p]))
        }
    };
    out.push_str(&format!(
        "{:<28} {:<28} {:<13} {:>6} {:>3}\n",
        "CLIENT", "SERVER", "STATE", "IDLE", "Q"
    ));
    let rows = v["flows"].as_array().cloned().unwrap_or_default();
    for f in &rows {
        out.push_str(&format!(
            "{:<28} {:<28} {:<13} {:>5}s {:>3}\n",
            ep(f, "client", "client_port"),
            ep(f, "server", "server_port"),
            format!(
                "{}{}",
                s(f, &["state"]),
                if f["midstream"].as_bool() == Some(true) {
                    "*"
                } else {
                    ""
                }
            ),
            u(f, &["idle_s"]),
            u(f, &["worker"]),
        ));
    }
    out.push_str(&format!(
        "{} flow{} shown{}\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        if rows.len() as u64 >= u(&v, &["limit"]) {
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
    let mut out = io::stdout().lock();
    let text = match cmd {
        PolicyCommand::Show { socket, json } => {
            let v = Client::at(&socket.socket).call("GET", "/v1/policy", None)?;
            if json {
                drop(out);
                return print_json(&v);
            }
            format!(
                "# running policy: version {} (digest {}), {} operator block{} \
                 (rstwall block list)\n{}",
                u(&v, &["version"]),
                s(&v, &["digest"]),
                u(&v, &["blocks"]),
                if u(&v, &["blocks"]) == 1 { "" } else { "s" },
                s(&v, &["toml"]),
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
            let v = Client::at(&socket.socket).call(
                "POST",
                "/v1/policy/set",
                Some(&json!({ "set": assignments })),
            )?;
            changed_text(&v)
        }
        PolicyCommand::Apply { socket, file } => {
            let toml = read_policy_file(&file)?;
            let v = Client::at(&socket.socket)
                .call("PUT", "/v1/policy", Some(&json!({ "toml": toml })))
                .map_err(|e| in_file(&file, e))?;
            changed_text(&v)
        }
        PolicyCommand::Diff { socket, file } => {
            let toml = read_policy_file(&file)?;
            let v = Client::at(&socket.socket)
                .call("POST", "/v1/policy/diff", Some(&json!({ "toml": toml })))
                .map_err(|e| in_file(&file, e))?;
            if v["changed"].as_bool() == Some(true) {
                s(&v, &["diff"]).to_string()
            } else {
                format!(
                    "no differences: {} is the running policy (version {})\n",
                    file.display(),
                    u(&v, &["version"])
                )
            }
        }
    };
    out.write_all(text.as_bytes()).map_err(Failure::runtime)
}

fn changed_text(v: &Value) -> String {
    if v["changed"].as_bool() == Some(true) {
        format!(
            "policy version {} applied ({}, digest {})\n",
            u(v, &["version"]),
            s(v, &["mode"]),
            s(v, &["digest"])
        )
    } else {
        format!(
            "unchanged: the running policy (version {}) already says so\n",
            u(v, &["version"])
        )
    }
}

// ---------------------------------------------------------------------------
// block
// ---------------------------------------------------------------------------

pub fn block(cmd: BlockCommand) -> Result<(), Failure> {
    let check = |c: &str| {
        rstwall_api::parse_cidr(c)
            .map(|n| n.to_string())
            .map_err(|e| Failure::usage(anyhow!(e)))
    };
    let text = match cmd {
        BlockCommand::Add { socket, cidr, ttl } => {
            let cidr = check(&cidr)?;
            let ttl = ttl
                .map(|t| parse_duration("--ttl", &t))
                .transpose()?
                .map(|d| d.as_secs());
            let v = Client::at(&socket.socket).call(
                "POST",
                "/v1/blocks",
                Some(&json!({ "cidr": cidr, "ttl_s": ttl })),
            )?;
            let until = match v["until"].as_u64() {
                Some(t) => format!(" until {}", format_ts(t * 1_000_000_000)),
                None => " until removed".into(),
            };
            let note = if v["enforced"].as_bool() == Some(true) {
                ""
            } else {
                "\nnote: the policy is in monitor mode: its TCP is counted as would-drop, \
                 not dropped"
            };
            format!("blocked {}{until}{note}\n", s(&v, &["cidr"]))
        }
        BlockCommand::Del { socket, cidr } => {
            let cidr = check(&cidr)?;
            let target = format!("/v1/blocks?cidr={}", http::percent_encode(&cidr));
            let v = Client::at(&socket.socket).call("DELETE", &target, None)?;
            format!("unblocked {}\n", s(&v, &["cidr"]))
        }
        BlockCommand::List { socket, json } => {
            let v = Client::at(&socket.socket).call("GET", "/v1/blocks", None)?;
            if json {
                return print_json(&v);
            }
            let rows = v["blocks"].as_array().cloned().unwrap_or_default();
            let mut out = format!("{:<44} {:<32} {}\n", "CIDR", "UNTIL", "LEFT");
            for b in &rows {
                let (until, left) = match b["until"].as_u64() {
                    Some(t) => (
                        format_ts(t * 1_000_000_000),
                        duration_text(u(b, &["ttl_left_s"]) as f64),
                    ),
                    None => ("removed".into(), "-".into()),
                };
                out.push_str(&format!("{:<44} {until:<32} {left}\n", s(b, &["cidr"])));
            }
            out.push_str(&format!(
                "{} block{}{}\n",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" },
                if v["enforced"].as_bool() == Some(true) || rows.is_empty() {
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
// capture
// ---------------------------------------------------------------------------

/// Splits a pcap byte stream into whole records, so that an interrupted
/// capture still leaves a valid file.
struct PcapSplitter {
    buf: Vec<u8>,
    header_done: bool,
    big_endian: bool,
    records: u64,
}

impl PcapSplitter {
    /// Feed bytes; the prefix that ends on a record boundary is returned.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        self.buf.extend_from_slice(bytes);
        let mut end = 0;
        if !self.header_done {
            if self.buf.len() < 24 {
                return Ok(Vec::new());
            }
            let magic = u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes"));
            self.big_endian = match magic {
                0xa1b2_c3d4 | 0xa1b2_3c4d => false,
                0xd4c3_b2a1 | 0x4d3c_b2a1 => true,
                _ => return Err("the daemon sent something that is not a pcap stream".into()),
            };
            self.header_done = true;
            end = 24;
        }
        loop {
            if self.buf.len() < end + 16 {
                break;
            }
            let b: [u8; 4] = self.buf[end + 8..end + 12].try_into().expect("4 bytes");
            let incl = if self.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            } as usize;
            if self.buf.len() < end + 16 + incl {
                break;
            }
            end += 16 + incl;
            self.records += 1;
        }
        Ok(self.buf.drain(..end).collect())
    }
}

pub fn capture(args: CaptureArgs) -> Result<(), Failure> {
    let class = args.class.trim();
    if !matches!(class, "rst" | "all" | "tcp") {
        for c in class.split(',') {
            c.trim()
                .parse::<RstClass>()
                .map_err(|e| Failure::usage(anyhow!("--class: {e}")))?;
        }
    }
    let timeout = args
        .timeout
        .as_deref()
        .map(|t| parse_duration("--timeout", t))
        .transpose()?;
    let client = Client::at(&args.socket.socket);
    let mut target = format!(
        "/v1/capture?class={}&count={}",
        http::percent_encode(class),
        args.count
    );
    if let Some(t) = timeout {
        target.push_str(&format!("&timeout_s={}", t.as_secs()));
    }
    let mut stream = client.connect()?;
    http::send_request(&mut stream, "GET", &target, None)
        .map_err(|e| Failure::runtime(anyhow!("sending the request: {e}")))?;
    let reply = http::read_reply(&mut stream, false, 0)
        .map_err(|e| Failure::runtime(anyhow!("reading the daemon's answer: {e}")))?;
    if reply.status != 200 {
        let mut reply = reply;
        let _ = stream.read_to_end(&mut reply.body);
        return rstwall_api::client::decode(reply).map(|_| ());
    }
    let mut file = std::fs::File::create(&args.write)
        .map_err(|e| Failure::usage(anyhow!("cannot create {}: {e}", args.write.display())))?;
    catch_interrupts();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut split = PcapSplitter {
        buf: Vec::new(),
        header_done: false,
        big_endian: false,
        records: 0,
    };
    let write_err =
        |e: io::Error| Failure::runtime(anyhow!("writing {}: {e}", args.write.display()));
    let mut pending = reply.body;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if !pending.is_empty() {
            let whole = split
                .feed(&pending)
                .map_err(|e| Failure::runtime(anyhow!(e)))?;
            file.write_all(&whole).map_err(write_err)?;
            pending.clear();
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::runtime(anyhow!("reading the capture: {e}"))),
        }
    }
    if !split.header_done {
        // Nothing at all arrived: still leave a valid, empty capture.
        let empty = rstwall_pcap::capture::CaptureWriter::new(
            Vec::new(),
            rstwall_engine::wire::LinkType::Ethernet,
            rstwall_pcap::capture::Resolution::Nanos,
        )
        .and_then(|w| w.finish())
        .map_err(|e| Failure::runtime(anyhow!("{e}")))?;
        file.write_all(&empty).map_err(write_err)?;
    }
    file.sync_all().map_err(write_err)?;
    eprintln!(
        "{} packet{} written to {}",
        split.records,
        if split.records == 1 { "" } else { "s" },
        args.write.display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// alerts
// ---------------------------------------------------------------------------

pub fn alerts(args: AlertsArgs) -> Result<(), Failure> {
    let v = Client::at(&args.socket.socket).call("GET", "/v1/alerts", None)?;
    if args.json {
        return print_json(&v);
    }
    let mut out = String::new();
    let active = v["active"].as_array().cloned().unwrap_or_default();
    if active.is_empty() {
        out.push_str("active: none\n");
    } else {
        out.push_str("active:\n");
        for a in &active {
            out.push_str(&format!("  {:<24} {}\n", s(a, &["rule"]), s(a, &["level"])));
        }
    }
    let history = v["history"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!(
        "\nhistory ({} change{}):\n",
        history.len(),
        if history.len() == 1 { "" } else { "s" }
    ));
    if !history.is_empty() {
        out.push_str(&format!(
            "  {:<30} {:<22} {:<9} {:>12} {:>12}\n",
            "AT", "RULE", "LEVEL", "VALUE/s", "THRESHOLD"
        ));
    }
    for a in &history {
        out.push_str(&format!(
            "  {:<30} {:<22} {:<9} {:>12.1} {:>12.1}\n",
            format_ts(u(a, &["at"]) * 1_000_000_000),
            s(a, &["rule"]),
            s(a, &["level"]),
            a["value"].as_f64().unwrap_or(0.0),
            a["threshold"].as_f64().unwrap_or(0.0),
        ));
    }
    out.push_str("\nrules:\n");
    for r in v["rules"].as_array().into_iter().flatten() {
        let metric = s(r, &["metric"]);
        out.push_str(&format!(
            "  {:<22} {:<34} warn {:>8} critical {:>8} over {} s\n",
            s(r, &["name"]),
            metric,
            r["warn"],
            r["critical"],
            u(r, &["window"]),
        ));
    }
    io::stdout()
        .write_all(out.as_bytes())
        .map_err(Failure::runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn the_pcap_splitter_keeps_whole_records_only() {
        let mut w = rstwall_pcap::capture::CaptureWriter::new(
            Vec::new(),
            rstwall_engine::wire::LinkType::Ethernet,
            rstwall_pcap::capture::Resolution::Nanos,
        )
        .unwrap();
        w.write(1, 60, &[1; 60]).unwrap();
        w.write(2, 70, &[2; 70]).unwrap();
        let bytes = w.finish().unwrap();
        let mut sp = PcapSplitter {
            buf: Vec::new(),
            header_done: false,
            big_endian: false,
            records: 0,
        };
        let mut out = Vec::new();
        // Byte by byte: only whole records come out.
        for (i, b) in bytes.iter().enumerate() {
            let got = sp.feed(&[*b]).unwrap();
            out.extend_from_slice(&got);
            if i + 1 < 24 + 16 + 60 {
                assert!(out.len() <= 24, "{i}");
            }
        }
        assert_eq!(out, bytes);
        assert_eq!(sp.records, 2);
        let mut bad = PcapSplitter {
            buf: Vec::new(),
            header_done: false,
            big_endian: false,
            records: 0,
        };
        assert!(bad.feed(&[0u8; 24]).is_err());
    }

    #[test]
    fn top_fits_80_by_24() {
        let status = json!({
            "topology": {"inline": ["pa", "pb"]},
            "policy": {"mode": "enforce", "version": 3},
            "xsk_mode": "copy"
        });
        let mut stats = json!({
            "totals": {"counters": {"frames": 100, "rst": 10}, "active_flows": 7},
            "rst": {},
            "uptime_s": 75.0
        });
        for c in RstClass::ALL {
            stats["rst"][c.as_str()] =
                json!({"total": 12345678, "dropped": 1234567, "would_drop": 1234567});
        }
        let senders: Vec<Value> = (0..20)
            .map(|i| json!({"key": format!("2001:2:0:ffff:ffff:ffff:ffff:{i:x}"), "count": 1_000_000 + i}))
            .collect();
        let tele = json!({
            "top_rst_senders": senders,
            "top_by_class": [{"class": "no_flow", "ports": [{"key": 80, "count": 5}, {"key": 443, "count": 9}]}],
            "active_alerts": [{"rule": "rst_flood", "level": "critical"}]
        });
        let t0 = Instant::now();
        let mut later = stats.clone();
        later["totals"]["counters"]["rst"] = json!(1010);
        let lines = top_frame(
            &status,
            &later,
            Some(&(t0, stats)),
            t0 + Duration::from_secs(1),
            &tele,
            80,
            24,
        );
        assert_eq!(lines.len(), 24, "{lines:#?}");
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{lines:#?}");
        let all = lines.join("\n");
        assert!(all.contains("rst 1.0k/s"), "{all}");
        assert!(lines[0].contains("up 00:01:15"), "{}", lines[0]);
        assert!(all.contains("443"), "{all}");
        assert!(all.contains("rst_flood (critical)"), "{all}");
        assert_eq!(lines[23], "q quits");
    }
}
