//! The `export` contender's broker and its exporter's tally: rstwall in
//! monitor mode whose worker hands every RST to a real fleet exporter
//! (`rstwall-export`), which streams them to a local JetStream — the
//! packet path's rate with export on, measured beside `monitor` (export
//! off) in the same run.
//!
//! The broker is one `nats-server -js` on loopback (a free port, its store
//! in a temporary directory removed with it), started once per run; each
//! start of the contender is a new node: its own stream (one replica,
//! created by the exporter) and spool. The broker's CPU counts as the
//! bench's own, not as other processes': it is part of what export costs
//! on this machine.

use std::cell::Cell;
use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use rstwall_export::{ExportStatus, Exporter, Inputs, NatsConfig};
use rstwall_source::{rst_channel, RstSink};

use super::options::Contender;
use super::report::{opt, Ratio, Report};
use super::throughput::{ExportRates, Tput};
use crate::stats::median;

/// The broker's program, looked up on `PATH`.
pub const NATS_SERVER: &str = "nats-server";

/// Why there is no broker when `nats-server` cannot be started.
pub const MISSING: &str = "the export contender needs nats-server (Debian package \
    nats-server: scripts/setup installs it), or leave it out with --contenders";

/// The broker's store: this prefix and the process id, in the temporary
/// directory.
const STORE_PREFIX: &str = "rstwall-bench-nats-";

/// Remove the stores of runs whose process is gone (killed before their
/// broker's drop).
fn remove_stale_stores() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(STORE_PREFIX))
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A `nats-server -js` on 127.0.0.1, stopped and its store removed on drop.
pub struct Broker {
    server: Child,
    dir: PathBuf,
    port: u16,
    /// Nodes started so far: each exporter gets the next.
    nodes: Cell<usize>,
}

impl Broker {
    /// Start the server and wait until it listens. Its store goes in a
    /// directory of this process's own (stores left by runs that were
    /// killed are removed first); the server is killed with this thread
    /// (`PR_SET_PDEATHSIG`), so a run stopped by a signal leaves none.
    pub fn start() -> Result<Broker> {
        remove_stale_stores();
        let dir = std::env::temp_dir().join(format!("{STORE_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new(NATS_SERVER);
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("store"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl(2) only, async-signal-safe, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let server = match command.spawn() {
            Ok(server) => server,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e).context(MISSING);
            }
        };
        let mut broker = Broker {
            server,
            dir,
            port,
            nodes: Cell::new(0),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = broker.server.try_wait()? {
                bail!("nats-server exited at start: {status}");
            }
            if Instant::now() > deadline {
                bail!("nats-server does not listen on 127.0.0.1:{port} after 10 s");
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "export: nats-server -js on 127.0.0.1:{port}, store {}",
            broker.dir.display()
        );
        Ok(broker)
    }

    /// The server's process id (its CPU is the bench's).
    pub fn pid(&self) -> i32 {
        self.server.id() as i32
    }

    /// A new node's exporter, started, and the sink its worker hands RSTs
    /// to: the daemon's defaults (queue, spool size, acknowledgement
    /// timeout), its stream created with one replica. The hand-off holds
    /// `hand_off` records (`None`: as many as the queue, as the daemon's).
    pub fn exporter(&self, hand_off: Option<usize>) -> Result<(Exporter, RstSink)> {
        let n = self.nodes.get();
        self.nodes.set(n + 1);
        let mut cfg = NatsConfig::new(
            vec![format!("nats://127.0.0.1:{}", self.port)],
            format!("bench{n}"),
            self.dir.join(format!("spool{n}")),
        );
        cfg.create_stream = Some(1);
        let (sink, rx) = rst_channel(hand_off.unwrap_or(cfg.queue));
        let exporter = Exporter::start(
            cfg,
            Inputs {
                rsts: Some((sink.clone(), rx)),
                mode: "inline".into(),
            },
        )?;
        // Measured from a connected exporter (its stream made, its window
        // open), as a daemon's is after its first second: not its start.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = exporter.status();
            if s.state == "connected" {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the exporter is not connected to 127.0.0.1:{} after 30 s: {} ({})",
                    self.port,
                    s.state,
                    s.last_error.unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok((exporter, sink))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The exporter's counts at one instant (cumulative since it started).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExportTally {
    /// Events the stream acknowledged.
    pub acked: u64,
    /// Waiting: in memory (the hand-off and the queue) and on disk.
    pub queued: u64,
    pub spooled: u64,
    /// Lost: the hand-off was full, or the queue and the spool were.
    pub dropped: u64,
}

impl ExportTally {
    pub fn of(exporter: &Exporter) -> ExportTally {
        ExportTally::from_status(&exporter.status())
    }

    pub fn from_status(s: &ExportStatus) -> ExportTally {
        ExportTally {
            acked: s.acked,
            queued: s.queued,
            spooled: s.spool_messages,
            dropped: s.dropped,
        }
    }

    /// Every RST the worker handed off: acknowledged, waiting or lost.
    pub fn handed(&self) -> u64 {
        self.acked + self.queued + self.spooled + self.dropped
    }
}

impl Report<'_> {
    /// Each round's forwarded rate of `export` ÷ the same round's
    /// `monitor`: median and range, when the run has both.
    pub fn export_vs_monitor(&self) -> Option<Ratio> {
        self.vs(Contender::Export, Contender::Monitor, |t| Some(t.forwarded))
    }

    /// The throughput section's paragraph on export on against off.
    pub(super) fn export_paragraph(&self, o: &mut String) {
        let runs = self.tput_of(Contender::Export);
        if runs.is_empty() {
            return;
        }
        let rates: Vec<ExportRates> = runs.iter().filter_map(|t| t.export).collect();
        let med = |f: fn(&ExportRates) -> f64| opt(median(rates.iter().map(f).collect()), 0);
        let ends: Vec<ExportTally> = runs.iter().filter_map(|t| t.stop.export).collect();
        let total = |f: fn(&ExportTally) -> u64| ends.iter().map(f).sum::<u64>();
        let monitor = self.tput_of(Contender::Monitor);
        let cpu = |ts: &[&Tput], f: fn(&Tput) -> Option<f64>| {
            median(ts.iter().filter_map(|t| f(t)).collect())
        };
        let (rest_on, rest_off) = (cpu(&runs, Tput::rest_cpu), cpu(&monitor, Tput::rest_cpu));
        let (fwd_on, fwd_off) = (cpu(&runs, |t| t.fwd_util), cpu(&monitor, |t| t.fwd_util));
        let per_event = match (
            rest_on,
            rest_off,
            median(rates.iter().map(|x| x.handed).collect()),
        ) {
            (Some(on), Some(off), Some(n)) if n > 0.0 => {
                format!(
                    ", about {:.1} µs of CPU per RST handed off",
                    (on - off).max(0.0) * 1e4 / n
                )
            }
            _ => String::new(),
        };
        let vs = self.export_vs_monitor().map_or(
            "— (the run has no monitor contender to compare with)".into(),
            |r| format!("**{:.3}** ({:.3}–{:.3})", r.median, r.lo, r.hi),
        );
        let _ = writeln!(
            o,
            "- Export on against off: {} forwarded {vs} of {}'s rate, each round against the \
             same round's (median and range over {} rounds). Its worker handed every RST to \
             a real fleet exporter (`rstwall-export`, the daemon's defaults) streaming to a \
             `nats-server -js` on loopback (one-replica file stream), whose CPU counts as the \
             bench's. In the measured windows (medians): {} RSTs/s handed off, {}/s \
             acknowledged by the stream, {}/s lost (hand-off full, or queue and spool full). \
             When each run's worker stopped: {} acknowledged, {} in memory, {} on the spool, \
             {} lost, over all rounds. CPU besides the forwarder thread, the generator and \
             other processes (the exporter, its broker, the bench's other threads and kernel \
             threads), medians in per cent of one CPU: {}% with export, {}% without{per_event}; \
             the forwarder thread's own CPU: {}% with export, {}% without (the exporter and the \
             broker are not pinned: where no CPU is idle they take their time from the \
             forwarder's and the generator's).",
            Contender::Export.name(),
            Contender::Monitor.name(),
            runs.len(),
            med(|x| x.handed),
            med(|x| x.acked),
            med(|x| x.dropped),
            total(|x| x.acked),
            total(|x| x.queued),
            total(|x| x.spooled),
            total(|x| x.dropped),
            opt(rest_on, 0),
            opt(rest_off, 0),
            opt(fwd_on, 0),
            opt(fwd_off, 0),
        );
    }
}
