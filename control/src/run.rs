//! `rstwall run --inline A,B | --tap P`: the appliance.
//!
//! Start-up: validate arguments, check the ports, attach rstwall's XDP
//! program to each port (replacing a stale one left by a previous run),
//! open the AF_XDP sockets and start the workers, then register every
//! socket in its port's XSKMAP; from then on TCP goes through the workers.
//!
//! Shutdown (SIGINT/SIGTERM): unregister the sockets (traffic falls back to
//! the kernel bypass for the moment it takes), stop the workers, close the
//! sockets, detach the programs. Nothing is left behind. A crash or SIGKILL
//! skips all of it: the kernel closes the sockets, which removes them from
//! the XSKMAPs, and the programs keep forwarding in the kernel (fail-open)
//! until the next start replaces them. A failing worker, a start-up that
//! fails after attaching, or a panic end the same way on purpose: only a
//! clean stop detaches, so rstwall failing never cuts an inline wire.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rstwall_bpf::{PortProgram, PortRole, XdpCounters, XdpMode};
use rstwall_datapath::afxdp::{
    sys, BindMode, Datapath, DatapathConfig, DatapathStats, Topology, WorkerStats,
};
use rstwall_datapath::engine::EngineConfig;
use rstwall_datapath::policy::PolicyConfig;
use rstwall_datapath::{FlagClass, RstClass};
use serde_json::json;

use crate::cli::RunArgs;
use crate::Failure;

/// `RunArgs`, checked.
#[derive(Debug)]
pub struct Settings {
    pub topology: Topology,
    pub xdp_mode: XdpMode,
    pub bind: BindMode,
    pub queues: Option<u32>,
    pub engine: EngineConfig,
    pub stats_interval: Option<Duration>,
    pub stats_json: Option<PathBuf>,
    pub replace_foreign: bool,
}

impl Settings {
    pub fn from_args(args: &RunArgs) -> anyhow::Result<Settings> {
        let topology = match (&args.inline, &args.tap) {
            (Some(pair), None) => {
                let ports: Vec<&str> = pair.split(',').map(str::trim).collect();
                match ports[..] {
                    [a, b] if !a.is_empty() && !b.is_empty() && a != b => Topology::Inline {
                        a: a.to_string(),
                        b: b.to_string(),
                    },
                    _ => {
                        return Err(anyhow!(
                            "--inline: expected two different ports as PORT_A,PORT_B, got {pair:?}"
                        ))
                    }
                }
            }
            (None, Some(port)) if !port.trim().is_empty() => Topology::Tap {
                port: port.trim().to_string(),
            },
            _ => {
                return Err(anyhow!(
                    "give exactly one of --inline PORT_A,PORT_B and --tap PORT"
                ))
            }
        };
        let xdp_mode: XdpMode = args.xdp_mode.parse().context("--xdp-mode")?;
        let bind = match args.xsk_mode.as_str() {
            "auto" => BindMode::Auto,
            "zerocopy" => BindMode::ZeroCopy,
            "copy" => BindMode::Copy,
            other => {
                return Err(anyhow!(
                    "--xsk-mode: unknown mode `{other}` (expected auto, zerocopy or copy)"
                ))
            }
        };
        if args.queues == Some(0) {
            return Err(anyhow!("--queues: at least 1"));
        }
        let mut policy = match &args.policy {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read policy file {}", path.display()))?;
                PolicyConfig::from_toml_str(&text)
                    .with_context(|| format!("policy file {}", path.display()))?
            }
            None => PolicyConfig::default(),
        };
        if let Some(mode) = &args.mode {
            policy.set("mode", mode).context("--mode")?;
        }
        let mut engine = EngineConfig {
            policy,
            ..EngineConfig::default()
        };
        if let Some(n) = args.flow_capacity {
            engine.flow_capacity = n;
        }
        engine
            .validate()
            .map_err(|e| anyhow!("{e}"))
            .context(if args.flow_capacity.is_some() {
                "--flow-capacity"
            } else {
                "engine settings"
            })?;
        if !(args.stats_interval.is_finite() && args.stats_interval >= 0.0) {
            return Err(anyhow!("--stats-interval: a number of seconds, 0 or more"));
        }
        let stats_interval = (args.stats_interval > 0.0)
            .then(|| Duration::from_secs_f64(args.stats_interval.max(0.05)));
        Ok(Settings {
            topology,
            xdp_mode,
            bind,
            queues: args.queues,
            engine,
            stats_interval,
            stats_json: args.stats_json.clone(),
            replace_foreign: args.replace_foreign_xdp,
        })
    }
}

pub fn run(args: RunArgs) -> Result<(), Failure> {
    let settings = Settings::from_args(&args).map_err(Failure::usage)?;
    init_logging();
    if !sys::is_root() {
        return Err(Failure::runtime(anyhow!(
            "rstwall run must run as root (it attaches XDP programs and opens AF_XDP sockets)"
        )));
    }
    let ports: Vec<String> = settings
        .topology
        .ports()
        .into_iter()
        .map(String::from)
        .collect();
    let mut ifindexes = Vec::new();
    let mut queue_limit = u32::MAX;
    for port in &ports {
        let index = sys::ifindex(port)
            .map_err(|_| Failure::usage(anyhow!("port {port}: no such network interface")))?;
        ifindexes.push(index);
        let n = sys::rx_queue_count(port)
            .with_context(|| format!("port {port}: cannot count its RX queues"))
            .map_err(Failure::runtime)?;
        queue_limit = queue_limit.min(n.max(1));
    }
    let queues = match settings.queues {
        Some(q) if q > queue_limit => {
            return Err(Failure::usage(anyhow!(
                "--queues {q}: the port{} {} only {queue_limit} RX queue{}",
                if ports.len() > 1 { "s" } else { "" },
                if ports.len() > 1 { "have" } else { "has" },
                if queue_limit > 1 { "s" } else { "" },
            )))
        }
        Some(q) => q,
        None => queue_limit,
    };

    // Signals are taken synchronously by this thread: block them before any
    // worker exists, so every thread inherits the mask.
    let signals = SignalSet::block_termination().map_err(Failure::runtime)?;

    // From here on only a clean stop detaches: any failure or panic leaves
    // the programs forwarding in the kernel (see `Attached`).
    let mut programs = Attached(Vec::new());
    for (i, port) in ports.iter().enumerate() {
        let role = match settings.topology {
            Topology::Inline { .. } => PortRole::Inline {
                peer_ifindex: ifindexes[1 - i],
            },
            Topology::Tap { .. } => PortRole::Tap,
        };
        let program = PortProgram::attach(port, role, settings.xdp_mode, settings.replace_foreign)
            .map_err(|e| Failure::runtime(anyhow!(e)))?;
        programs.0.push(program);
    }

    let mut cfg = DatapathConfig::new(settings.topology.clone(), queues, settings.engine.clone());
    cfg.bind = settings.bind;
    let mut datapath = Datapath::start(&cfg).map_err(|e| Failure::runtime(anyhow!(e)))?;
    for s in datapath.sockets() {
        let i = ports
            .iter()
            .position(|p| *p == s.port)
            .expect("a port of ours");
        programs[i]
            .register_xsk(s.queue, s.fd)
            .map_err(|e| Failure::runtime(anyhow!(e)))?;
    }

    let xdp_modes: Vec<String> = programs
        .iter()
        .map(|p| format!("{} {}", p.ifname(), p.attached_mode()))
        .collect();
    let xsk_modes: Vec<String> = datapath
        .sockets()
        .iter()
        .map(|s| format!("{}/{} {}", s.port, s.queue, s.mode.as_str()))
        .collect();
    tracing::info!(
        "running {}: {} queue{}, xdp [{}], xsk [{}], policy {}",
        describe(&settings.topology),
        queues,
        if queues > 1 { "s" } else { "" },
        xdp_modes.join(", "),
        xsk_modes.join(", "),
        settings.engine.policy.mode(),
    );

    let mut monitor = Monitor::new(&settings, queues as usize, &programs);
    let outcome = loop {
        match signals.wait(Duration::from_millis(100)) {
            Ok(Some(sig)) => {
                tracing::info!("{}: stopping", signal_name(sig));
                break Ok(());
            }
            Ok(None) => {}
            Err(e) => break Err(anyhow!(e).context("waiting for signals")),
        }
        for s in datapath.stats().try_iter() {
            monitor.update(s);
        }
        if let Some(e) = datapath.failed_worker() {
            break Err(anyhow!(e));
        }
        if let Err(e) = monitor.tick(&programs, false) {
            break Err(e);
        }
    };

    // Teardown: always, whatever the outcome.
    for s in datapath.sockets().to_vec() {
        if let Some(i) = ports.iter().position(|p| *p == s.port) {
            if let Err(e) = programs[i].unregister_xsk(s.queue) {
                tracing::warn!("{e}");
            }
        }
    }
    let final_stats = datapath.stop();
    let mut teardown_error = None;
    match final_stats {
        Ok(stats) => {
            for s in stats {
                monitor.update(s);
            }
        }
        Err(e) => teardown_error = Some(anyhow!(e)),
    }
    if let Err(e) = monitor.tick(&programs, true) {
        teardown_error.get_or_insert(e);
    }
    if outcome.is_ok() {
        // A clean stop: nothing is left behind.
        if let Err(e) = programs.detach_all() {
            teardown_error.get_or_insert(e);
        }
    } else {
        // The datapath failed: keep the wire up. `programs` drops here and
        // leaves the XDP programs forwarding in the kernel.
        drop(programs);
    }
    outcome.map_err(Failure::runtime)?;
    match teardown_error {
        Some(e) => Err(Failure::runtime(e)),
        None => Ok(()),
    }
}

/// The attached programs. Dropped without [`Attached::detach_all`] — a
/// start-up that failed half way, a worker that died, a panic — they stay
/// attached: with no sockets registered the program forwards every packet
/// in the kernel (inline) so a failing rstwall never cuts the wire, and the
/// next start replaces it. Only a clean stop detaches.
struct Attached(Vec<PortProgram>);

impl Attached {
    fn detach_all(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        for p in std::mem::take(&mut self.0) {
            let name = p.ifname().to_string();
            if let Err(e) = p.detach() {
                first_error.get_or_insert(anyhow!(e).context(format!("port {name}")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl std::ops::Deref for Attached {
    type Target = [PortProgram];
    fn deref(&self) -> &[PortProgram] {
        &self.0
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        for p in std::mem::take(&mut self.0) {
            tracing::warn!(
                "leaving rstwall's XDP program on {} forwarding in the kernel (fail-open); \
                 a restart takes over, `ip link set dev {} xdp off` removes it",
                p.ifname(),
                p.ifname()
            );
            p.leave_attached();
        }
    }
}

fn describe(t: &Topology) -> String {
    match t {
        Topology::Inline { a, b } => format!("inline {a} <-> {b}"),
        Topology::Tap { port } => format!("tap {port}"),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// SIGINT and SIGTERM, blocked and waited for.
struct SignalSet(libc::sigset_t);

impl SignalSet {
    fn block_termination() -> anyhow::Result<SignalSet> {
        // SAFETY: sigset_t is plain data; the calls initialise it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
        }
        // SAFETY: a valid set; the old mask is not needed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc)).context("blocking signals");
        }
        Ok(SignalSet(set))
    }

    /// The signal that arrived within `timeout`, if any.
    fn wait(&self, timeout: Duration) -> std::io::Result<Option<i32>> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: valid set and timespec; no siginfo wanted.
        let sig = unsafe { libc::sigtimedwait(&self.0, std::ptr::null_mut(), &ts) };
        if sig >= 0 {
            return Ok(Some(sig));
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) => Ok(None),
            _ => Err(e),
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

/// Keeps the latest stats of each worker; prints and writes them.
struct Monitor {
    topology: Topology,
    mode: String,
    interval: Option<Duration>,
    json: Option<PathBuf>,
    started: Instant,
    workers: Vec<Option<WorkerStats>>,
    last_at: Instant,
    last_frames: u64,
    next: Instant,
    xdp_modes: Vec<(String, String)>,
}

impl Monitor {
    fn new(s: &Settings, workers: usize, programs: &[PortProgram]) -> Monitor {
        let now = Instant::now();
        Monitor {
            topology: s.topology.clone(),
            mode: s.engine.policy.mode().to_string(),
            interval: s.stats_interval,
            json: s.stats_json.clone(),
            started: now,
            workers: vec![None; workers],
            last_at: now,
            last_frames: 0,
            next: now + s.stats_interval.unwrap_or(Duration::from_secs(1)),
            xdp_modes: programs
                .iter()
                .map(|p| (p.ifname().to_string(), p.attached_mode().to_string()))
                .collect(),
        }
    }

    fn update(&mut self, s: WorkerStats) {
        if let Some(slot) = self.workers.get_mut(s.worker) {
            *slot = Some(s);
        }
    }

    /// Print and write when the interval is due, or at the end (`last`).
    fn tick(&mut self, programs: &[PortProgram], last: bool) -> anyhow::Result<()> {
        let now = Instant::now();
        if !last && now < self.next {
            return Ok(());
        }
        if let Some(i) = self.interval {
            self.next = now + i;
        } else {
            self.next = now + Duration::from_secs(1);
        }
        let total = DatapathStats::sum(self.workers.iter().flatten());
        let xdp: Vec<(String, Option<XdpCounters>)> = programs
            .iter()
            .map(|p| (p.ifname().to_string(), p.counters().ok()))
            .collect();
        if self.interval.is_some() || last {
            let secs = now.duration_since(self.last_at).as_secs_f64().max(1e-3);
            let pps = (total.counters.frames.saturating_sub(self.last_frames)) as f64 / secs;
            tracing::info!(
                "{}{}",
                if last { "final: " } else { "" },
                self.line(&total, &xdp, pps)
            );
        }
        self.last_at = now;
        self.last_frames = total.counters.frames;
        if let Some(path) = &self.json {
            let doc = self.json_doc(&total, &xdp, last);
            write_atomically(path, &doc)
                .with_context(|| format!("writing --stats-json {}", path.display()))?;
        }
        Ok(())
    }

    fn line(&self, t: &DatapathStats, xdp: &[(String, Option<XdpCounters>)], pps: f64) -> String {
        let c = &t.counters;
        let rst: Vec<String> = RstClass::ALL
            .iter()
            .filter(|k| c.rst_total(**k) > 0)
            .map(|k| {
                let [_, dropped] = c.rst_classes[k.index()];
                if dropped > 0 {
                    format!("{}={}({} dropped)", k.as_str(), c.rst_total(*k), dropped)
                } else {
                    format!("{}={}", k.as_str(), c.rst_total(*k))
                }
            })
            .collect();
        let sum = |f: fn(&XdpCounters) -> u64| -> u64 {
            xdp.iter().filter_map(|(_, x)| x.as_ref()).map(f).sum()
        };
        format!(
            "{:.0} pps | frames {} tcp {} passed {} dropped {} would_drop {} | rst [{}] | \
             xdp to_xsk {} bypassed {} non_tcp {} | ring rx_full {} fill_empty {} rx_drop {} \
             tx_invalid {} | frames leaked {} ledger_errors {} | flows {} | xsk {}",
            pps,
            c.frames,
            c.tcp,
            c.passed,
            c.dropped,
            c.would_drop,
            if rst.is_empty() {
                "none".to_string()
            } else {
                rst.join(" ")
            },
            sum(|x| x.to_xsk),
            sum(|x| x.bypassed),
            sum(|x| x.non_tcp),
            t.ring.rx_ring_full,
            t.ring.rx_fill_ring_empty_descs,
            t.ring.rx_dropped,
            t.ring.tx_invalid_descs,
            t.frames.leaked,
            t.frames.ledger_errors,
            t.active_flows,
            t.xsk_mode(),
        )
    }

    fn json_doc(
        &self,
        t: &DatapathStats,
        xdp: &[(String, Option<XdpCounters>)],
        last: bool,
    ) -> serde_json::Value {
        let c = &t.counters;
        let rst: serde_json::Map<String, serde_json::Value> = RstClass::ALL
            .iter()
            .map(|k| {
                let [passed, dropped] = c.rst_classes[k.index()];
                (
                    k.as_str().to_string(),
                    json!({
                        "total": passed + dropped,
                        "passed": passed,
                        "dropped": dropped,
                        "would_drop": c.rst_would_drop[k.index()],
                        "with_data": c.rst_with_data[k.index()],
                    }),
                )
            })
            .collect();
        let ports: Vec<serde_json::Value> = xdp
            .iter()
            .map(|(name, x)| {
                let mode = self
                    .xdp_modes
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, m)| m.as_str())
                    .unwrap_or("unknown");
                json!({ "port": name, "xdp_mode": mode, "xdp": x.as_ref().map(xdp_json) })
            })
            .collect();
        json!({
            "at": rstwall_datapath::analyze::format_ts(sys::now_ns()),
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "final": last,
            "topology": match &self.topology {
                Topology::Inline { a, b } => json!({ "inline": [a, b] }),
                Topology::Tap { port } => json!({ "tap": port }),
            },
            "mode": self.mode,
            "xsk_mode": t.xsk_mode(),
            "rst": rst,
            "totals": t,
            "ports": ports,
            "workers": self.workers.iter().flatten().collect::<Vec<_>>(),
        })
    }
}

fn xdp_json(x: &XdpCounters) -> serde_json::Value {
    let classes: serde_json::Map<String, serde_json::Value> = FlagClass::ALL
        .iter()
        .map(|k| (k.as_str().to_string(), json!(x.flag_classes[k.index()])))
        .collect();
    json!({
        "flag_classes": classes,
        "non_tcp": x.non_tcp,
        "malformed": x.malformed,
        "to_xsk": x.to_xsk,
        "forwarded": x.forwarded,
        "tap_dropped": x.tap_dropped,
        "bypassed": x.bypassed,
        "deny_dropped": x.deny_dropped,
        "block_dropped": x.block_dropped,
        "malformed_dropped": x.malformed_dropped,
        "peer_missing": x.peer_missing,
    })
}

/// Write `doc` to a temporary file beside `path`, then rename it over
/// `path`: a reader sees the old snapshot or the new one, never a mix.
fn write_atomically(path: &Path, doc: &serde_json::Value) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        serde_json::to_writer_pretty(&mut f, doc)?;
        f.write_all(b"\n")?;
        f.into_inner().map_err(|e| e.into_error())?.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn settings(args: &[&str]) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from(["rstwall", "run"].iter().chain(args))
            .map_err(|e| anyhow!("{e}"))?;
        match cli.command {
            Command::Run(a) => Settings::from_args(&a),
            _ => unreachable!(),
        }
    }

    fn err(args: &[&str]) -> String {
        format!("{:#}", settings(args).expect_err("should be rejected"))
    }

    #[test]
    fn inline_and_tap_topologies() {
        let s = settings(&["--inline", "eth1, eth2"]).unwrap();
        assert_eq!(
            s.topology,
            Topology::Inline {
                a: "eth1".into(),
                b: "eth2".into()
            }
        );
        assert_eq!(s.xdp_mode, XdpMode::Auto);
        assert_eq!(s.bind, BindMode::Auto);
        assert_eq!(s.stats_interval, Some(Duration::from_secs(10)));
        let s = settings(&["--tap", "eth3", "--stats-interval", "0"]).unwrap();
        assert_eq!(
            s.topology,
            Topology::Tap {
                port: "eth3".into()
            }
        );
        assert_eq!(s.stats_interval, None);
    }

    #[test]
    fn bad_arguments_are_named() {
        assert!(err(&["--inline", "eth1"]).contains("--inline"));
        assert!(err(&["--inline", "eth1,eth1"]).contains("two different ports"));
        assert!(err(&["--inline", "a,b", "--tap", "c"]).contains("cannot be used with"));
        assert!(err(&["--tap", "a", "--xdp-mode", "fast"]).contains("--xdp-mode"));
        assert!(err(&["--tap", "a", "--xsk-mode", "fast"]).contains("--xsk-mode"));
        assert!(err(&["--tap", "a", "--queues", "0"]).contains("--queues"));
        assert!(err(&["--tap", "a", "--mode", "block"]).contains("--mode"));
        assert!(err(&["--tap", "a", "--flow-capacity", "0"]).contains("--flow-capacity"));
        assert!(err(&["--tap", "a", "--stats-interval=-1"]).contains("--stats-interval"));
        assert!(err(&["--tap", "a", "--policy", "/nonexistent.toml"]).contains("policy file"));
    }

    #[test]
    fn mode_overrides_the_policy() {
        let s = settings(&["--tap", "a", "--mode", "enforce"]).unwrap();
        assert_eq!(s.engine.policy.mode().as_str(), "enforce");
    }
}
