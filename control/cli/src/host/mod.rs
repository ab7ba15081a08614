//! `rstwall host`: host mode ([`rstwall_host::HostSource`]) in this
//! process, on this network namespace, for a person at the server. A
//! thread reads the RST events (writing `--events`, adding them up); the
//! main thread shows the live view on a terminal ([`crate::client`]'s
//! renderer, fed from the source in-process) or waits; at the end
//! (`--duration`, q, Ctrl-C, SIGTERM) it prints the report.

mod report;
mod tally;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context};
use crossbeam::channel::{Receiver, RecvTimeoutError};
use rstwall_api::host::HostLoss;
use rstwall_api::text::thousands;
use rstwall_engine::telemetry::Snapshot;
use rstwall_host::{HostConfig, HostSource, IfaceSelection, RstEvent};
use rstwall_pcap::analyze::format_ts;
use rstwall_source::Source;

use crate::cli::HostArgs;
use crate::client::{
    catch_interrupts, duration_text, interrupted, on_terminal, parse_duration, run_view, top_frame,
    Previous, TopFeed,
};
use crate::Failure;
use tally::{Seconds, Tally};

/// How long the workers get to answer a telemetry question.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn run(args: HostArgs) -> Result<(), Failure> {
    let duration = args
        .duration
        .as_deref()
        .map(|d| parse_duration("--duration", d))
        .transpose()?;
    let ifaces = if args.iface.is_empty() {
        IfaceSelection::All
    } else {
        let names: Vec<String> = args.iface.iter().map(|s| s.trim().to_string()).collect();
        if let Some(bad) = names.iter().find(|n| n.is_empty() || n.len() > 15) {
            return Err(Failure::usage(anyhow!(
                "--iface: {bad:?} is not an interface name"
            )));
        }
        IfaceSelection::Named(names)
    };
    let events_to_stdout = args.events.as_deref() == Some(Path::new("-"));
    let sink: Option<Box<dyn Write + Send>> = match &args.events {
        None => None,
        Some(_) if events_to_stdout => Some(Box::new(io::stdout())),
        Some(path) => Some(Box::new(
            File::create(path)
                .with_context(|| format!("--events {}", path.display()))
                .map_err(Failure::usage)?,
        )),
    };
    let live = on_terminal() && !args.json && !events_to_stdout;

    let mut source = HostSource::start(&HostConfig {
        ifaces,
        ..HostConfig::default()
    })
    .context("host mode could not start (it needs root: CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)")
    .map_err(Failure::runtime)?;
    let started = SystemTime::now();
    let t0 = Instant::now();
    // One line once everything is attached: from here on, every RST counts.
    eprintln!(
        "rstwall host: watching {}; {}",
        watched(&source).join(", "),
        match duration {
            Some(d) => format!("the report after {}", humantime::format_duration(d)),
            None => "q, Ctrl-C or SIGTERM ends it with the report".into(),
        }
    );
    let reader = EventReader::start(source.events().clone(), sink)?;
    let mut seconds = Seconds::default();

    if live {
        let mut prev: Option<Previous> = None;
        run_view(Duration::from_secs(1), duration, &|| false, |w, h| {
            seconds.take(source.seconds());
            // A frame the workers were too busy for shows zeros; the next
            // one catches up.
            let tele = telemetry(&source, 10).unwrap_or_else(|_| empty_snapshot());
            let now = Instant::now();
            let feed = TopFeed {
                title: title(&source, t0),
                counters: &tele.counters,
                active_flows: tele.active_flows,
                tele: &tele,
                extra: reader.with_tally(process_lines),
            };
            let lines = top_frame(&feed, prev.as_ref(), now, w, h);
            prev = Some((now, tele.counters));
            Ok(lines)
        })?;
    } else {
        catch_interrupts();
        let end = duration.map(|d| t0 + d);
        while !interrupted() && end.is_none_or(|e| Instant::now() < e) {
            std::thread::sleep(Duration::from_millis(100));
            seconds.take(source.seconds());
        }
    }

    // The second under way closes (its closes settled): netstat's counters
    // are the seconds' deltas, each beside what caused it, so the last one
    // must be in.
    let ended = SystemTime::now();
    let end_second = unix_secs(ended);
    let wait_until = Instant::now() + Duration::from_millis(1500);
    while seconds.last().is_none_or(|s| s <= end_second) && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(50));
        seconds.take(source.seconds());
    }
    let tele = telemetry(&source, args.top as usize).ok();
    let interfaces = source.interfaces();
    let caps = source.capabilities().clone();
    let records_lost = source
        .kernel_counters()
        .map(|c| c.records_lost)
        .unwrap_or(0);
    let final_stats = source.stop();
    seconds.take(source.seconds());
    let correlation = source.correlation();
    let tally = reader.finish()?;
    let rsts_dropped = match &final_stats {
        Ok(workers) => workers.iter().map(|w| w.source.0.counts.rsts_dropped).sum(),
        Err(e) => {
            eprintln!("rstwall: warning: a worker failed: {e}");
            0
        }
    };
    drop(source);

    let doc = report::build(&report::Inputs {
        started_at: format_ts(nanos(started)),
        duration_s: ended
            .duration_since(started)
            .unwrap_or_default()
            .as_secs_f64(),
        interfaces: &interfaces,
        caps: &caps,
        tally: &tally,
        seconds: &seconds.all,
        mib: seconds.mib(),
        tele: tele.as_ref(),
        loss: HostLoss {
            records_lost,
            rsts_dropped,
            events_dropped: correlation.events_dropped,
        },
        top: args.top as usize,
    });
    // With the events on standard output, the report goes to standard error.
    let mut out: Box<dyn Write> = if events_to_stdout {
        Box::new(io::stderr().lock())
    } else {
        Box::new(io::stdout().lock())
    };
    if args.json {
        let text = rstwall_api::document_json(&doc).map_err(Failure::runtime)?;
        out.write_all(&text).map_err(Failure::runtime)
    } else {
        report::text(&mut out, &doc).map_err(Failure::runtime)
    }
}

/// The workers' telemetry, merged.
fn telemetry(source: &HostSource, top: usize) -> anyhow::Result<Snapshot> {
    let parts = source.workers().handle().telemetry(top, ASK_TIMEOUT)?;
    Ok(Snapshot::merge(parts, top))
}

/// A snapshot with nothing in it, for a frame the workers did not answer.
fn empty_snapshot() -> Snapshot {
    Snapshot::merge(Vec::new(), 0)
}

/// The live view's first line.
fn title(source: &HostSource, t0: Instant) -> String {
    let lost = source
        .kernel_counters()
        .map(|c| c.records_lost)
        .unwrap_or(0);
    format!(
        "rstwall host - {} - observes only - ring loss {} - up {}",
        watched(source).join(","),
        thousands(lost),
        duration_text(t0.elapsed().as_secs_f64())
    )
}

/// The interfaces watched now.
fn watched(source: &HostSource) -> Vec<String> {
    source
        .interfaces()
        .into_iter()
        .filter(|i| i.error.is_none())
        .map(|i| i.name)
        .collect()
}

/// The live view's own lines: the processes behind the RSTs so far.
fn process_lines(t: &Tally) -> Vec<String> {
    let mut lines = vec![format!("{:<32}{:>10}  {}", "Processes", "RSTs", "classes")];
    let ranked = t.processes_ranked();
    for p in ranked.iter().take(5) {
        let classes: Vec<String> = p
            .classes
            .iter()
            .map(|(c, n)| format!("{c} {}", thousands(*n)))
            .collect();
        lines.push(format!(
            "{:<32}{:>10}  {}",
            format!("{} (pid {})", p.process.comm, p.process.pid),
            thousands(p.rsts),
            classes.join(", ")
        ));
    }
    if ranked.is_empty() {
        lines.push("(none yet)".into());
    }
    lines
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn unix_secs(t: SystemTime) -> u64 {
    nanos(t) / 1_000_000_000
}

/// The thread that reads the RST events: writes them (`--events`) and
/// adds them up.
struct EventReader {
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<io::Result<()>>,
}

impl EventReader {
    fn start(
        events: Receiver<RstEvent>,
        sink: Option<Box<dyn Write + Send>>,
    ) -> Result<EventReader, Failure> {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (tally.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("rstwall-events".into())
            .spawn(move || read_events(&events, sink, &t, &s))
            .map_err(Failure::runtime)?;
        Ok(EventReader {
            tally,
            stop,
            thread,
        })
    }

    fn with_tally<T>(&self, f: impl FnOnce(&Tally) -> T) -> T {
        let t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        f(&t)
    }

    /// Read what is left (the source has stopped) and hand over the tally.
    fn finish(self) -> Result<Tally, Failure> {
        self.stop.store(true, Ordering::Relaxed);
        let written = self
            .thread
            .join()
            .map_err(|_| Failure::runtime(anyhow!("the events thread panicked")))?;
        if let Err(e) = written {
            // A closed pipe (`--events - | head`) stops the lines, not the report.
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(Failure::runtime(
                    anyhow::Error::new(e).context("writing --events"),
                ));
            }
        }
        let t = std::mem::take(&mut *self.tally.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(t)
    }
}

/// Until `stop` and the channel is empty (or closed): each event added
/// up, and written as a JSON line.
fn read_events(
    events: &Receiver<RstEvent>,
    sink: Option<Box<dyn Write + Send>>,
    tally: &Mutex<Tally>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut sink = sink.map(BufWriter::new);
    let mut failed: Option<io::Error> = None;
    loop {
        let e = match events.recv_timeout(Duration::from_millis(100)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => {
                if let (Some(w), None) = (sink.as_mut(), &failed) {
                    if let Err(err) = w.flush() {
                        failed = Some(err);
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        tally.lock().unwrap_or_else(|e| e.into_inner()).add(&e);
        if let (Some(w), None) = (sink.as_mut(), &failed) {
            let line = serde_json::to_writer(&mut *w, &e)
                .map_err(io::Error::from)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(err) = line {
                failed = Some(err);
            }
        }
    }
    if let (Some(w), None) = (sink.as_mut(), &failed) {
        w.flush()?;
    }
    failed.map_or(Ok(()), Err)
}
