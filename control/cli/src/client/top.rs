//! `rstwall top`: the live view of a running daemon, and the view itself
//! (one renderer and one terminal loop), which `rstwall host` feeds from
//! host mode in-process.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rstwall_api::text::thousands;
use rstwall_api::{Client, Stats, Status, Topology};
use rstwall_engine::telemetry::{Counters, Snapshot};
use rstwall_engine::RstClass;

use super::{catch_interrupts, duration_text, interrupted, rate};
use crate::cli::TopArgs;
use crate::Failure;

/// What one frame of the live view shows, wherever it comes from.
pub struct TopFeed<'a> {
    /// The first line: what is watched, how, for how long.
    pub title: String,
    /// The counters now.
    pub counters: &'a Counters,
    pub active_flows: usize,
    /// Top lists and alerts.
    pub tele: &'a Snapshot,
    /// Lines of the feed's own, after the top lists (host mode: the
    /// processes).
    pub extra: Vec<String>,
}

/// The counters of the previous frame, for rates.
pub type Previous = (Instant, Counters);

/// The title of `rstwall top` on a daemon.
fn daemon_title(status: &Status, stats: &Stats) -> String {
    let topo = match &status.topology {
        Topology::Inline([a, b]) => format!("inline {a}<->{b}"),
        Topology::Tap(p) => format!("tap {p}"),
        Topology::Host(i) if i.is_empty() => "host (every interface)".into(),
        Topology::Host(i) => format!("host {}", i.join(",")),
    };
    let frames = match &status.host {
        Some(h) => format!("observes only, policy runs as {}", h.policy_runs_as),
        None => format!("AF_XDP {}", status.xsk_mode),
    };
    format!(
        "rstwall top - {topo} - {} - policy v{} - {frames} - up {}",
        status.policy.mode,
        status.policy.version,
        duration_text(stats.uptime_s),
    )
}

/// One frame of the live view, `width` columns, at most `height` lines.
pub fn top_frame(
    feed: &TopFeed,
    prev: Option<&Previous>,
    now: Instant,
    width: usize,
    height: usize,
) -> Vec<String> {
    let per = |counter: &dyn Fn(&Counters) -> u64| -> f64 {
        match prev {
            Some((t, p)) => {
                let secs = now.duration_since(*t).as_secs_f64().max(1e-3);
                counter(feed.counters).saturating_sub(counter(p)) as f64 / secs
            }
            None => 0.0,
        }
    };
    let tele = feed.tele;
    let mut lines = vec![feed.title.clone()];
    lines.push(format!(
        "pkts {}/s  syn {}/s  rst {}/s  failed conn {}/s  dropped {}/s  flows {}",
        rate(per(&|c| c.frames)),
        rate(per(&|c| c.syn)),
        rate(per(&|c| c.rst)),
        rate(per(&|c| c.failed_connects)),
        rate(per(&|c| c.dropped)),
        thousands(feed.active_flows as u64),
    ));
    lines.push(String::new());
    lines.push(format!(
        "{:<18}{:>9}{:>14}{:>14}{:>14}",
        "RST class", "per sec", "total", "dropped", "would drop"
    ));
    for class in RstClass::ALL {
        let c = feed.counters.class(class);
        lines.push(format!(
            "{:<18}{:>9}{:>14}{:>14}{:>14}",
            class.as_str(),
            rate(per(&|s| s.class(class).total)),
            thousands(c.total),
            thousands(c.dropped),
            thousands(c.would_drop),
        ));
    }
    lines.push(String::new());
    // Top RST senders and top ports, side by side, since the daemon started.
    let senders: Vec<String> = tele
        .top_rst_senders
        .iter()
        .map(|e| format!("{:<26}{:>12}", e.key.to_string(), thousands(e.count)))
        .collect();
    let mut ports: BTreeMap<u16, u64> = BTreeMap::new();
    for t in &tele.top_by_class {
        for p in &t.ports {
            *ports.entry(p.key).or_default() += p.count;
        }
    }
    let mut ports: Vec<(u16, u64)> = ports.into_iter().collect();
    ports.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let ports: Vec<String> = ports
        .iter()
        .map(|(p, n)| format!("{p:<10}{:>12}", thousands(*n)))
        .collect();
    lines.push(format!(
        "{:<40}{}",
        "Top RST sources (since start)", "Top destination ports (RSTs)"
    ));
    let rows = height
        .saturating_sub(lines.len() + 4 + feed.extra.len())
        .clamp(1, 10);
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
    if !feed.extra.is_empty() {
        lines.push(String::new());
        lines.extend(feed.extra.iter().cloned());
    }
    lines.push(String::new());
    let active: Vec<String> = tele
        .active_alerts
        .iter()
        .map(|a| format!("{} ({})", a.rule, a.level))
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
    if !on_terminal() {
        catch_interrupts();
    }
    run_top(
        &client,
        args.interval,
        args.duration.map(Duration::from_secs_f64),
        &interrupted,
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

/// The live view of a daemon, until `q`, Ctrl-C, `duration`, or `stop()`
/// returns true (see [`run_view`]).
pub fn run_top(
    client: &Client,
    interval: f64,
    duration: Option<Duration>,
    stop: &dyn Fn() -> bool,
) -> Result<TopEnd, Failure> {
    // Reach the daemon before touching the terminal.
    let mut status = client.status()?;
    let mut prev: Option<Previous> = None;
    let mut frames = 0u64;
    let every = Duration::from_secs_f64(interval);
    run_view(every, duration, stop, |width, height| {
        let stats = client.stats()?;
        let tele = client.telemetry(10)?;
        if frames.is_multiple_of(5) {
            status = client.status()?;
        }
        frames += 1;
        let now = Instant::now();
        let feed = TopFeed {
            title: daemon_title(&status, &stats),
            counters: &stats.totals.counters,
            active_flows: stats.totals.active_flows,
            tele: &tele,
            extra: Vec::new(),
        };
        let lines = top_frame(&feed, prev.as_ref(), now, width, height);
        prev = Some((now, stats.totals.counters));
        Ok(lines)
    })
}

/// Whether the live view has a terminal to draw on.
pub fn on_terminal() -> bool {
    io::stdout().is_terminal() && io::stdin().is_terminal()
}

/// The live view's loop: a frame from `frame(width, height)` every
/// `every`, until `q`, Ctrl-C, `duration`, or `stop()` returns true
/// (checked ten times a second). Without a terminal it prints one frame
/// per refresh, and signals are the caller's to handle.
pub fn run_view(
    every: Duration,
    duration: Option<Duration>,
    stop: &dyn Fn() -> bool,
    mut frame: impl FnMut(usize, usize) -> Result<Vec<String>, Failure>,
) -> Result<TopEnd, Failure> {
    let tty = on_terminal();
    let _screen = if tty {
        Some(Screen::open().map_err(Failure::runtime)?)
    } else {
        None
    };
    let end = duration.map(|d| Instant::now() + d);
    loop {
        let now = Instant::now();
        let (w, h) = if tty {
            // A terminal that does not say its size (0x0) gets 80x24.
            crossterm::terminal::size()
                .ok()
                .filter(|&(w, h)| w > 0 && h > 0)
                .map_or((80, 24), |(w, h)| (w as usize, h as usize))
        } else {
            (100, 24)
        };
        let lines = frame(w, h)?;
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
                if let Some(key_end) = key(wait)? {
                    return Ok(key_end);
                }
            } else {
                std::thread::sleep(wait);
            }
        }
    }
}

/// A key that ends the view, if one is pressed within `wait`.
fn key(wait: Duration) -> Result<Option<TopEnd>, Failure> {
    use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    if !event::poll(wait).map_err(Failure::runtime)? {
        return Ok(None);
    }
    let Event::Key(k) = event::read().map_err(Failure::runtime)? else {
        return Ok(None);
    };
    if k.kind != KeyEventKind::Press {
        return Ok(None);
    }
    if matches!(k.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) {
        return Ok(Some(TopEnd::Quit));
    }
    if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
        return Ok(Some(TopEnd::Interrupt));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstwall_api::stats::{KernelDrops, PolicyRef, Totals};
    use rstwall_api::status::PolicyStatus;
    use rstwall_engine::flow::FlowStats;
    use rstwall_engine::policy::Mode;
    use rstwall_engine::telemetry::{ActiveAlert, ClassTop, Counters, Level, TopEntry};

    fn status() -> Status {
        Status {
            version: "0.1.0".into(),
            pid: 1,
            mode: "inline".into(),
            topology: Topology::Inline(["pa".into(), "pb".into()]),
            ports: Vec::new(),
            queues: 1,
            workers_running: 1,
            xsk_mode: "copy".into(),
            sockets: Vec::new(),
            uptime_s: 75.0,
            started_at: 0,
            policy: PolicyStatus {
                version: 3,
                digest: "0".into(),
                mode: Mode::Enforce,
                generation: 1,
                workers_generation_min: 1,
            },
            blocks: 0,
            state_dir: "/var/lib/rstwall".into(),
            host: None,
            export: None,
        }
    }

    fn stats(rst: u64) -> Stats {
        let mut counters = Counters {
            frames: 100,
            rst,
            ..Counters::default()
        };
        for c in RstClass::ALL {
            counters.rst_classes[c.index()] = [12345678 - 1234567, 1234567];
            counters.rst_would_drop[c.index()] = 1234567;
        }
        Stats {
            at: "2026-01-01T00:00:00.000000000Z".into(),
            uptime_s: 75.0,
            is_final: false,
            topology: Topology::Inline(["pa".into(), "pb".into()]),
            mode: Mode::Enforce,
            policy: PolicyRef {
                version: 3,
                digest: "0".into(),
            },
            xsk_mode: "copy".into(),
            kernel: KernelDrops::default(),
            totals: Totals {
                counters,
                active_flows: 7,
                ..Totals::default()
            },
            ports: Vec::new(),
            workers: Vec::new(),
            host: None,
        }
    }

    #[test]
    fn top_fits_80_by_24() {
        let senders: Vec<TopEntry<std::net::IpAddr>> = (0..20u16)
            .map(|i| TopEntry {
                key: format!("2001:2:0:ffff:ffff:ffff:ffff:{i:x}")
                    .parse()
                    .unwrap(),
                count: 1_000_000 + u64::from(i),
            })
            .collect();
        let tele = Snapshot {
            counters: Counters::default(),
            flows: FlowStats::default(),
            active_flows: 0,
            top_by_class: vec![ClassTop {
                class: RstClass::NoFlow,
                sources: Vec::new(),
                ports: vec![
                    TopEntry { key: 80, count: 5 },
                    TopEntry { key: 443, count: 9 },
                ],
            }],
            top_failed_clients: Vec::new(),
            top_rst_senders: senders,
            hosts: Vec::new(),
            seconds: Vec::new(),
            alerts: Vec::new(),
            active_alerts: vec![ActiveAlert {
                rule: "rst_flood".into(),
                level: Level::Critical,
            }],
        };
        let t0 = Instant::now();
        let (status, now) = (status(), stats(1010));
        let feed = TopFeed {
            title: daemon_title(&status, &now),
            counters: &now.totals.counters,
            active_flows: now.totals.active_flows,
            tele: &tele,
            extra: Vec::new(),
        };
        let lines = top_frame(
            &feed,
            Some(&(t0, stats(10).totals.counters)),
            t0 + Duration::from_secs(1),
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
