//! `rstwall run --inline A,B | --tap P`: the appliance.
//!
//! Start-up: validate arguments and the config file, check the ports, lock
//! the state directory and decide the start-up policy (see
//! [`crate::persist`]), bind the metrics endpoint, attach rstwall's XDP
//! program to each port (replacing a stale one left by a previous run),
//! fill its deny map from the policy (enforce mode), open the AF_XDP
//! sockets and start the workers, then register every socket in its port's
//! XSKMAP; from then on TCP goes through the workers.
//!
//! Running: the main thread waits for signals, collects the workers' stats,
//! publishes them to the metrics endpoint, and puts the sources their
//! policies ask to block (enforce mode, `ratelimit.block_seconds`) into
//! every port's block map — see [`KernelDrops`] for what the kernel drops on
//! the policy's behalf. SIGHUP reloads the policy: see `Reloader`.
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
use rstwall_afxdp::{sys, BindMode, Datapath, DatapathConfig, Topology, XskStats, XskTotals};
use rstwall_bpf::{
    DenyChange, KernelDropStats, KernelDrops, PortProgram, PortRole, XdpCounters, XdpMode,
};
use rstwall_engine::engine::EngineConfig;
use rstwall_engine::policy::{Mode, PolicyConfig};
use rstwall_engine::telemetry::{Level, MergedAlerts};
use rstwall_engine::{FlagClass, RstClass};
use rstwall_source::{Source, Totals, WorkerStats};

type DatapathStats = Totals<XskTotals>;
use serde_json::json;

use crate::blocks::Blocks;
use crate::config::{self, value, ConfigFile, LogLevel, MetricsListen};
use crate::flags::Flags;
use crate::metrics::{self, KernelSnapshot, Metrics, Reload, Snapshot};
use crate::persist::{Digest, Origin, PolicyState, StateDir};
use crate::server::{self as api, ApiError, Call, Op};
use rstwall_api::Failure;

/// `Flags` over the config file, checked.
#[derive(Debug)]
pub struct Settings {
    pub topology: Topology,
    pub xdp_mode: XdpMode,
    pub bind: BindMode,
    pub queues: Option<u32>,
    /// The engine, with the *configured* policy (see [`crate::persist`] for
    /// the policy that actually runs).
    pub engine: EngineConfig,
    pub stats_interval: Option<Duration>,
    pub stats_json: Option<PathBuf>,
    pub replace_foreign: bool,
    pub metrics_listen: MetricsListen,
    /// The control API's socket; `None`: off.
    pub control_socket: Option<PathBuf>,
    pub control_group: Option<String>,
    pub state_dir: PathBuf,
    pub log_level: LogLevel,
    /// The configured policy's file; `None`: the default policy.
    pub policy_file: Option<PathBuf>,
    /// `--policy` or `--mode` was given: the configured policy beats the
    /// persisted one.
    pub policy_from_flags: bool,
    pub config_file: Option<PathBuf>,
}

impl Settings {
    /// The command line over the config file (`--config`), if any, over
    /// the defaults; the configured policy file is read too. Called again
    /// on SIGHUP.
    pub fn from_args(args: &Flags) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => Some(ConfigFile::load(path)?),
            None => None,
        };
        Settings::resolve(args, file.as_ref())
    }

    fn resolve(args: &Flags, file: Option<&ConfigFile>) -> anyhow::Result<Settings> {
        fn flag(name: &'static str) -> impl Fn(String) -> anyhow::Error {
            move |m| anyhow!("{name}: {m}")
        }
        let file_or_default = ConfigFile::default();
        let f = file.unwrap_or(&file_or_default);
        let topology = match (&args.inline, &args.tap) {
            (Some(pair), None) => {
                let (a, b) = pair.split_once(',').unwrap_or((pair, ""));
                if b.contains(',') {
                    return Err(anyhow!(
                        "--inline: expected two different ports as PORT_A,PORT_B, got {pair:?}"
                    ));
                }
                value::inline(a, b).map_err(flag("--inline"))?
            }
            (None, Some(port)) => value::tap(port).map_err(flag("--tap"))?,
            (None, None) => f.topology.clone().ok_or_else(|| {
                anyhow!(
                    "give the ports: --inline PORT_A,PORT_B or --tap PORT{}",
                    if file.is_some() {
                        " (or inline/tap in the config file)"
                    } else {
                        ""
                    }
                )
            })?,
            (Some(_), Some(_)) => {
                return Err(anyhow!(
                    "give exactly one of --inline PORT_A,PORT_B and --tap PORT"
                ))
            }
        };
        let xdp_mode = match &args.xdp_mode {
            Some(m) => value::xdp_mode(m).map_err(flag("--xdp-mode"))?,
            None => f.xdp_mode.unwrap_or_default(),
        };
        let bind = match &args.xsk_mode {
            Some(m) => value::xsk_mode(m).map_err(flag("--xsk-mode"))?,
            None => f.xsk_mode.unwrap_or_default(),
        };
        let queues = match args.queues {
            Some(q) => Some(value::queues(q.into()).map_err(flag("--queues"))?),
            None => f.queues,
        };
        let mut engine = EngineConfig::default();
        if let Some(n) = args.flow_capacity {
            engine.flow_capacity =
                value::flow_capacity(n as i128).map_err(flag("--flow-capacity"))?;
        } else if let Some(n) = f.flow_capacity {
            engine.flow_capacity = n;
        }
        let stats_interval = match args.stats_interval {
            Some(s) => value::stats_interval(s).map_err(flag("--stats-interval"))?,
            None => match f.stats_interval {
                Some(s) => s,
                None => value::stats_interval(config::DEFAULT_STATS_INTERVAL)
                    .expect("the default is valid"),
            },
        };
        let metrics_listen = match &args.metrics_listen {
            Some(a) => value::metrics_listen(a).map_err(flag("--metrics-listen"))?,
            None => match f.metrics_listen {
                Some(m) => m,
                None => value::metrics_listen(config::DEFAULT_METRICS_LISTEN)
                    .expect("the default is valid"),
            },
        };
        let control_socket = match &args.control_socket {
            Some(s) => value::control_socket(s).map_err(flag("--control-socket"))?,
            None => match &f.control_socket {
                Some(s) => s.clone(),
                None => Some(config::DEFAULT_CONTROL_SOCKET.into()),
            },
        };
        let control_group = match &args.control_group {
            Some(g) => Some(value::control_group(g).map_err(flag("--control-group"))?),
            None => f.control_group.clone(),
        };
        let state_dir = match &args.state_dir {
            Some(d) => value::path(&d.to_string_lossy()).map_err(flag("--state-dir"))?,
            None => f
                .state_dir
                .clone()
                .unwrap_or_else(|| config::DEFAULT_STATE_DIR.into()),
        };
        let log_level = match &args.log_level {
            Some(l) => value::log_level(l).map_err(flag("--log-level"))?,
            None => f.log_level.unwrap_or(LogLevel::Info),
        };

        // The configured policy: --policy, else the config's `policy`, else
        // the default; --mode on top.
        let policy_file = args.policy.clone().or_else(|| f.policy.clone());
        let mut policy = match &policy_file {
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
        engine.policy = policy;
        engine
            .validate()
            .map_err(|e| anyhow!("{e}"))
            .context("engine settings")?;
        Ok(Settings {
            topology,
            xdp_mode,
            bind,
            queues,
            engine,
            stats_interval,
            stats_json: args.stats_json.clone().or_else(|| f.stats_json.clone()),
            replace_foreign: args.replace_foreign_xdp || f.replace_foreign_xdp.unwrap_or(false),
            metrics_listen,
            control_socket,
            control_group,
            state_dir,
            log_level,
            policy_file,
            policy_from_flags: args.policy.is_some() || args.mode.is_some(),
            config_file: args.config.clone(),
        })
    }

    /// The settings other than the policy that differ in `new`: a reload
    /// cannot apply them (they shape the datapath, the endpoint or the
    /// state), so they wait for a restart.
    pub fn needing_restart(&self, new: &Settings) -> Vec<&'static str> {
        let mut keys = Vec::new();
        let mut check = |key, differs: bool| {
            if differs {
                keys.push(key);
            }
        };
        check("inline/tap", self.topology != new.topology);
        check("xdp_mode", self.xdp_mode != new.xdp_mode);
        check("xsk_mode", self.bind != new.bind);
        check("queues", self.queues != new.queues);
        check(
            "flow_capacity",
            self.engine.flow_capacity != new.engine.flow_capacity,
        );
        check("stats_interval", self.stats_interval != new.stats_interval);
        check("stats_json", self.stats_json != new.stats_json);
        check("metrics_listen", self.metrics_listen != new.metrics_listen);
        check("control_socket", self.control_socket != new.control_socket);
        check("control_group", self.control_group != new.control_group);
        check("state_dir", self.state_dir != new.state_dir);
        check("log_level", self.log_level != new.log_level);
        check(
            "replace_foreign_xdp",
            self.replace_foreign != new.replace_foreign,
        );
        keys
    }

    /// The configured policy's source, for the log.
    pub fn policy_source(&self) -> String {
        match &self.policy_file {
            Some(p) => p.display().to_string(),
            None => "the default policy".into(),
        }
    }
}

pub fn run(args: Flags) -> Result<(), Failure> {
    let settings = Settings::from_args(&args).map_err(Failure::usage)?;
    init_logging(settings.log_level);
    tracing::debug!(
        "settings: config {}, state {}, metrics {}, policy {}",
        settings
            .config_file
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string()),
        settings.state_dir.display(),
        settings.metrics_listen,
        settings.policy_source()
    );
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

    // Checked before anything is written or attached.
    let control_group = settings
        .control_group
        .as_deref()
        .map(api::Group::lookup)
        .transpose()
        .context("control_group")
        .map_err(Failure::usage)?;

    // The policy to start with, persisted before anything runs it.
    let state = StateDir::open(&settings.state_dir).map_err(Failure::runtime)?;
    let persisted = state.load_policy().map_err(Failure::usage)?;
    let had_state = persisted.is_some();
    let (live, origin) = PolicyState::at_start(
        &settings.engine.policy,
        settings.policy_from_flags,
        persisted.clone(),
    );
    if persisted.as_ref() != Some(&live) {
        state.save_policy(&live).map_err(Failure::runtime)?;
    }
    tracing::info!(
        "policy version {} (digest {}): {}, {}",
        live.version,
        live.digest(),
        live.policy.mode(),
        match (origin, had_state) {
            (Origin::Restored, _) => format!(
                "restored from {} (the configured policy, {}, is unchanged since it was loaded)",
                state.policy_path().display(),
                settings.policy_source()
            ),
            (Origin::Flags, _) => format!(
                "from the command line (--policy/--mode: {}){}",
                settings.policy_source(),
                if had_state {
                    ", replacing the persisted policy"
                } else {
                    ""
                }
            ),
            (Origin::Configured, true) => format!(
                "from {}, which changed since it was last loaded: it replaces the persisted policy",
                settings.policy_source()
            ),
            (Origin::Configured, false) => format!(
                "from {} (nothing persisted in {} yet)",
                settings.policy_source(),
                state.path().display()
            ),
        }
    );

    let now_unix = sys::now_ns() / 1_000_000_000;
    let blocks = Blocks::load(state.path(), now_unix).map_err(Failure::usage)?;
    if !blocks.is_empty() {
        tracing::info!("{} operator blocks restored", blocks.len());
    }

    // The control socket, bound before anything is attached: a socket in
    // use by another daemon stops the start here.
    let control = match &settings.control_socket {
        None => None,
        Some(path) => {
            let bound = api::Bound::bind(path, control_group)
                .context("control API")
                .map_err(Failure::runtime)?;
            Some(bound)
        }
    };

    // Signals are taken synchronously by this thread: block them before any
    // thread exists (the metrics server, the workers), so every thread
    // inherits the mask.
    let signals = SignalSet::block().map_err(Failure::runtime)?;

    let started_unix = sys::now_ns() / 1_000_000_000;
    let metrics = Metrics::new(started_unix);
    let _server = match settings.metrics_listen {
        MetricsListen::Off => None,
        MetricsListen::On(addr) => {
            let server = metrics::Server::start(addr, metrics.clone())
                .with_context(|| format!("metrics endpoint: cannot listen on {addr}"))
                .map_err(Failure::runtime)?;
            tracing::info!("metrics at http://{}/metrics", server.local_addr());
            Some(server)
        }
    };

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

    // The policy's share of the kernel goes in before any socket is
    // registered: from the first packet, denied sources die in XDP.
    let effective = live.policy.with_extra_deny(blocks.nets());
    let mut kernel = KernelDrops::new(programs.len());
    let change = kernel.apply(&effective, &programs);
    log_kernel_drops(&effective, &change, kernel.stats().deny_entries);

    let mut engine = settings.engine.clone();
    engine.policy = effective;
    let mut cfg = DatapathConfig::new(settings.topology.clone(), queues, engine);
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
        "running {}: {} queue{}, xdp [{}], xsk [{}], policy {} (version {})",
        describe(&settings.topology),
        queues,
        if queues > 1 { "s" } else { "" },
        xdp_modes.join(", "),
        xsk_modes.join(", "),
        live.policy.mode(),
        live.version,
    );

    let (calls_tx, calls) = crossbeam::channel::bounded::<Call>(64);
    let _api = match control {
        None => None,
        Some(bound) => {
            let path = bound.path().to_path_buf();
            let server = api::Server::start(bound, calls_tx, datapath.workers().handle())
                .context("control API")
                .map_err(Failure::runtime)?;
            tracing::info!("control API on {}", path.display());
            Some(server)
        }
    };

    let mut monitor = Monitor::new(&settings, &live, queues as usize, &programs);
    let mut reloader = Reloader {
        args: &args,
        settings,
        live,
        blocks,
        state,
        pending: false,
        next_expiry_check: Instant::now(),
    };
    let mut next_publish = Instant::now();
    let outcome = loop {
        match signals.wait(Duration::from_millis(50)) {
            Ok(Some(libc::SIGHUP)) => reloader.pending = true,
            Ok(Some(sig)) => {
                tracing::info!("{}: stopping", signal_name(sig));
                break Ok(());
            }
            Ok(None) => {}
            Err(e) => break Err(anyhow!(e).context("waiting for signals")),
        }
        for s in datapath.workers().stats().try_iter() {
            monitor.update(s);
        }
        monitor.judge_alerts();
        let now = Instant::now();
        {
            let mut ctx = Ctx {
                datapath: &datapath,
                kernel: &mut kernel,
                programs: &programs,
                monitor: &mut monitor,
            };
            reloader.reload_if_due(now, &mut ctx, &metrics);
            for call in calls.try_iter() {
                let answer = reloader.answer(call.op, &mut ctx);
                let _ = call.reply.try_send(answer);
            }
        }
        // Bounded: workers may refill the channel as fast as it drains.
        for src in datapath
            .workers()
            .block_requests()
            .try_iter()
            .take(BLOCKS_PER_LOOP)
        {
            kernel.block(src, now, &programs);
        }
        kernel.expire(now, &programs);
        if let Some(e) = datapath.workers_mut().failed_worker() {
            break Err(anyhow!(e));
        }
        if now >= next_publish {
            next_publish = now + metrics::PUBLISH_EVERY;
            metrics.publish(monitor.snapshot(&programs, kernel.stats()));
        }
        if let Err(e) = monitor.tick(&programs, kernel.stats(), false) {
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
    if let Err(e) = monitor.tick(&programs, kernel.stats(), true) {
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

/// What a policy change touches.
struct Ctx<'a> {
    datapath: &'a Datapath,
    kernel: &'a mut KernelDrops,
    programs: &'a Attached,
    monitor: &'a mut Monitor,
}

/// The running policy and the operator blocks, and every way they change:
/// SIGHUP reloads and the control API.
///
/// SIGHUP: the config file (if any) and the policy file are read and
/// validated again, exactly as at start-up (`--policy`/`--mode` given on
/// the command line still override them). Invalid → an error naming the
/// file, line and key is logged and the running policy stays. Settings
/// other than the policy that changed are reported as needing a restart;
/// they are not applied.
///
/// Every change, whatever its source, goes through [`Reloader::install`]:
/// validated as a whole first, persisted (durably) next, then handed to
/// every worker at once ([`Datapath::set_policy`]: a latest-wins slot each
/// worker checks between batches, so no packet is judged by a mix) and to
/// the XDP maps ([`KernelDrops::apply`]). A failure before the hand-over
/// changes nothing.
///
/// The XDP deny map is updated entry by entry after the workers have the
/// new policy, and a packet is still judged by one policy or the other,
/// never a mix: the deny list is the first rule in XDP and in the engine
/// alike, so a packet XDP drops matched an entry of the old or the new
/// list (that policy drops it too), and a packet XDP lets through gets the
/// whole verdict of the worker's policy.
struct Reloader<'a> {
    args: &'a Flags,
    /// As of the start, for what a reload cannot change.
    settings: Settings,
    live: PolicyState,
    blocks: Blocks,
    state: StateDir,
    /// A SIGHUP not yet acted on.
    pending: bool,
    next_expiry_check: Instant,
}

impl Reloader<'_> {
    fn reload_if_due(&mut self, now: Instant, ctx: &mut Ctx, metrics: &Metrics) {
        if now >= self.next_expiry_check {
            self.next_expiry_check = now + Duration::from_secs(1);
            let unix = sys::now_ns() / 1_000_000_000;
            if let Some(left) = self.blocks.expired(unix) {
                let ended = self.blocks.len() - left.len();
                match self.install(self.live.clone(), left, ctx) {
                    Ok(_) => tracing::info!("{ended} operator block(s) ended"),
                    Err(e) => tracing::error!("ending expired blocks: {e:#}"),
                }
            }
        }
        if !self.pending {
            return;
        }
        self.pending = false;
        let outcome = self.reload(ctx);
        metrics.count_reload(outcome);
    }

    /// The policy the workers and XDP run: the running policy with the
    /// operator blocks on its deny list.
    fn effective(policy: &PolicyConfig, blocks: &Blocks) -> PolicyConfig {
        policy.with_extra_deny(blocks.nets())
    }

    /// Persist and apply `next` and `blocks`; the workers' policy
    /// generation.
    fn install(&mut self, next: PolicyState, blocks: Blocks, ctx: &mut Ctx) -> anyhow::Result<u64> {
        if next != self.live {
            self.state.save_policy(&next)?;
        }
        if blocks != self.blocks {
            blocks.save(self.state.path())?;
        }
        let old = Reloader::effective(&self.live.policy, &self.blocks);
        let new = Reloader::effective(&next.policy, &blocks);
        let generation = if new != old {
            let g = ctx.datapath.workers().set_policy(&new);
            let change = ctx.kernel.apply(&new, ctx.programs);
            log_kernel_drops(&new, &change, ctx.kernel.stats().deny_entries);
            g
        } else {
            ctx.datapath.workers().policy_generation()
        };
        ctx.monitor.set_policy(&next);
        self.live = next;
        self.blocks = blocks;
        Ok(generation)
    }

    fn reload(&mut self, ctx: &mut Ctx) -> Reload {
        let running = self.live.version;
        let new = match Settings::from_args(self.args) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    "SIGHUP: reload rejected, policy version {running} keeps running: {e:#}"
                );
                return Reload::Rejected;
            }
        };
        let restart = self.settings.needing_restart(&new);
        if !restart.is_empty() {
            tracing::warn!(
                "SIGHUP: {} changed: not applied until rstwall restarts (a reload applies \
                 the policy only)",
                restart.join(", ")
            );
        }
        // A policy changed at run time (the control API) stays until the
        // configured policy itself changes, as it does across a restart.
        if Digest::of(&new.engine.policy) == self.live.configured
            && new.engine.policy != self.live.policy
        {
            tracing::info!(
                "SIGHUP: {} is unchanged since it was loaded: the running policy, version \
                 {running} (changed at run time), stays",
                new.policy_source()
            );
            return Reload::Unchanged;
        }
        let next = PolicyState::adopt(Some(&self.live), &new.engine.policy);
        if next == self.live {
            tracing::info!(
                "SIGHUP: policy version {running} (digest {}) unchanged ({})",
                next.digest(),
                new.policy_source()
            );
            return Reload::Unchanged;
        }
        let changed = next.policy != self.live.policy;
        let (version, digest, mode) = (next.version, next.digest(), next.policy.mode());
        if let Err(e) = self.install(next, self.blocks.clone(), ctx) {
            tracing::error!(
                "SIGHUP: reload rejected, policy version {running} keeps running: {e:#}"
            );
            return Reload::Rejected;
        }
        tracing::info!(
            "SIGHUP: policy version {version} (digest {digest}): {mode}, {}",
            if changed {
                format!("reloaded from {}", new.policy_source())
            } else {
                format!("unchanged ({})", new.policy_source())
            }
        );
        if changed {
            Reload::Applied
        } else {
            Reload::Unchanged
        }
    }

    /// A control API call.
    fn answer(&mut self, op: Op, ctx: &mut Ctx) -> Result<serde_json::Value, ApiError> {
        let internal = |e: anyhow::Error| ApiError::internal(format!("{e:#}"));
        let unix = sys::now_ns() / 1_000_000_000;
        match op {
            Op::Status => Ok(self.status(ctx)),
            Op::Stats => Ok(ctx.monitor.doc(ctx.programs, ctx.kernel.stats())),
            Op::Alerts => Ok(ctx.monitor.alerts_doc()),
            Op::PolicyShow => Ok(json!({
                "version": self.live.version,
                "digest": self.live.digest().to_string(),
                "mode": self.live.policy.mode(),
                "toml": self.live.policy.to_toml_string(),
                "blocks": self.blocks.len(),
            })),
            Op::PolicySet(assignments) => {
                let mut policy = self.live.policy.clone();
                for a in &assignments {
                    policy
                        .set_assignment(a)
                        .map_err(|e| ApiError::bad(e.to_string()))?;
                }
                self.change_policy(policy, &format!("set {}", assignments.join(" ")), ctx)
            }
            Op::PolicyApply(text) => {
                let policy = PolicyConfig::from_toml_str(&text)
                    .map_err(|e| ApiError::bad(format!("policy: {e}")))?;
                self.change_policy(policy, "applied over the control API", ctx)
            }
            Op::PolicyDiff(text) => {
                let policy = PolicyConfig::from_toml_str(&text)
                    .map_err(|e| ApiError::bad(format!("policy: {e}")))?;
                let (old, new) = (self.live.policy.to_toml_string(), policy.to_toml_string());
                Ok(json!({
                    "version": self.live.version,
                    "changed": old != new,
                    "diff": unified_diff(&old, &new, "running", "file"),
                }))
            }
            Op::BlockList => Ok(self.blocks_doc(unix)),
            Op::BlockAdd { cidr, ttl_s } => {
                let blocks = self
                    .blocks
                    .with_added(cidr, ttl_s, unix)
                    .map_err(ApiError::bad)?;
                let generation = self
                    .install(self.live.clone(), blocks, ctx)
                    .map_err(internal)?;
                tracing::info!(
                    "block {cidr} added{} over the control API",
                    ttl_s.map_or(String::new(), |t| format!(" for {t} s"))
                );
                Ok(json!({
                    "cidr": cidr.to_string(),
                    "until": ttl_s.map(|t| unix + t),
                    "enforced": self.live.policy.mode() == Mode::Enforce,
                    "generation": generation,
                }))
            }
            Op::BlockDel { cidr } => {
                let Some(blocks) = self.blocks.without(cidr) else {
                    return Err(ApiError {
                        status: 404,
                        message: format!("{cidr} is not blocked"),
                    });
                };
                let generation = self
                    .install(self.live.clone(), blocks, ctx)
                    .map_err(internal)?;
                tracing::info!("block {cidr} removed over the control API");
                Ok(json!({ "cidr": cidr.to_string(), "generation": generation }))
            }
        }
    }

    fn change_policy(
        &mut self,
        policy: PolicyConfig,
        what: &str,
        ctx: &mut Ctx,
    ) -> Result<serde_json::Value, ApiError> {
        if policy == self.live.policy {
            return Ok(json!({
                "changed": false,
                "version": self.live.version,
                "digest": self.live.digest().to_string(),
                "generation": ctx.datapath.workers().policy_generation(),
            }));
        }
        // A change made at run time: the configured digest stays, so a
        // restart with an unchanged configuration keeps this policy.
        let next = PolicyState {
            version: self.live.version + 1,
            policy,
            configured: self.live.configured,
        };
        let generation = self
            .install(next, self.blocks.clone(), ctx)
            .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        tracing::info!(
            "policy version {} (digest {}): {}, {what}",
            self.live.version,
            self.live.digest(),
            self.live.policy.mode()
        );
        Ok(json!({
            "changed": true,
            "version": self.live.version,
            "digest": self.live.digest().to_string(),
            "mode": self.live.policy.mode(),
            "generation": generation,
        }))
    }

    fn blocks_doc(&self, unix: u64) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .blocks
            .list()
            .map(|b| {
                json!({
                    "cidr": b.cidr.to_string(),
                    "added": b.added,
                    "until": b.until,
                    "ttl_left_s": b.until.map(|u| u.saturating_sub(unix)),
                })
            })
            .collect();
        json!({
            "blocks": rows,
            "enforced": self.live.policy.mode() == Mode::Enforce,
        })
    }

    fn status(&self, ctx: &Ctx) -> serde_json::Value {
        let m = &*ctx.monitor;
        let total = DatapathStats::sum(m.workers.iter().flatten());
        let sockets: Vec<serde_json::Value> = ctx
            .datapath
            .sockets()
            .iter()
            .map(|s| json!({ "port": s.port, "queue": s.queue, "xsk_mode": s.mode.as_str() }))
            .collect();
        let ports: Vec<serde_json::Value> = m
            .xdp_modes
            .iter()
            .map(|(port, mode)| json!({ "port": port, "xdp_mode": mode }))
            .collect();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "mode": match &m.topology { Topology::Inline { .. } => "inline", Topology::Tap { .. } => "tap" },
            "topology": match &m.topology {
                Topology::Inline { a, b } => json!({ "inline": [a, b] }),
                Topology::Tap { port } => json!({ "tap": port }),
            },
            "ports": ports,
            "queues": m.workers.len(),
            "workers_running": total.workers,
            "xsk_mode": total.source.xsk_mode(),
            "sockets": sockets,
            "uptime_s": m.started.elapsed().as_secs_f64(),
            "started_at": m.started_unix,
            "policy": {
                "version": self.live.version,
                "digest": self.live.digest().to_string(),
                "mode": self.live.policy.mode(),
                "generation": ctx.datapath.workers().policy_generation(),
                "workers_generation_min": total.policy_generation_min,
            },
            "blocks": self.blocks.len(),
            "state_dir": self.state.path(),
        })
    }
}

/// Block requests taken from the workers per turn of the main loop (ten a
/// second): a flood of them is bounded by the channel, not by this loop.
const BLOCKS_PER_LOOP: usize = 4096;

/// Tell the operator what the kernel drops on the policy's behalf, and which
/// deny entries it could not take.
fn log_kernel_drops(policy: &PolicyConfig, change: &DenyChange, entries: usize) {
    const SHOWN: usize = 5;
    for e in change.errors.iter().take(SHOWN) {
        tracing::warn!("{e:#} (userspace still denies it)");
    }
    if change.errors.len() > SHOWN {
        tracing::warn!(
            "{} more deny map errors not shown",
            change.errors.len() - SHOWN
        );
    }
    let networks = policy.deny().len();
    let seconds = policy.ratelimit().block_seconds;
    match policy.mode() {
        Mode::Enforce => {
            if networks > 0 {
                tracing::info!(
                    "deny list: {networks} networks, {entries} entries in XDP on every port"
                );
            }
            if seconds > 0 {
                tracing::info!(
                    "sources over their RST rate limit are blocked in XDP for {seconds} s \
                     (ratelimit.block_seconds)"
                );
            }
        }
        Mode::Monitor => {
            if networks > 0 {
                tracing::info!(
                    "deny list: {networks} networks, reported as would-drop \
                     (monitor mode: none in XDP)"
                );
            }
            if seconds > 0 {
                tracing::info!(
                    "sources over their RST rate limit are counted as would-block \
                     (monitor mode: none blocked)"
                );
            }
        }
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

/// `RUST_LOG`, when set, wins (it takes tracing's full filter syntax);
/// otherwise `level`.
fn init_logging(level: LogLevel) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.as_str()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colours for a terminal only, not for the journal or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// SIGINT and SIGTERM (stop) and SIGHUP (reload), blocked and waited for.
struct SignalSet(libc::sigset_t);

impl SignalSet {
    fn block() -> anyhow::Result<SignalSet> {
        // SAFETY: sigset_t is plain data; the calls initialise it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGHUP);
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

/// Keeps the latest stats of each worker; prints and writes them, and
/// makes the metrics' [`Snapshot`].
struct Monitor {
    topology: Topology,
    mode: Mode,
    policy_version: u64,
    policy_digest: String,
    interval: Option<Duration>,
    json: Option<PathBuf>,
    started: Instant,
    started_unix: u64,
    workers: Vec<Option<WorkerStats<XskStats>>>,
    last_at: Instant,
    last_frames: u64,
    next: Instant,
    xdp_modes: Vec<(String, String)>,
    block_seconds: u64,
    /// The alert rules judged on the sum of every worker's seconds.
    alerts: MergedAlerts,
}

impl Monitor {
    fn new(s: &Settings, live: &PolicyState, workers: usize, programs: &[PortProgram]) -> Monitor {
        let now = Instant::now();
        Monitor {
            topology: s.topology.clone(),
            mode: live.policy.mode(),
            policy_version: live.version,
            policy_digest: live.digest().to_string(),
            interval: s.stats_interval,
            json: s.stats_json.clone(),
            started: now,
            started_unix: sys::now_ns() / 1_000_000_000,
            workers: vec![None; workers],
            last_at: now,
            last_frames: 0,
            next: now + s.stats_interval.unwrap_or(Duration::from_secs(1)),
            xdp_modes: programs
                .iter()
                .map(|p| (p.ifname().to_string(), p.attached_mode().to_string()))
                .collect(),
            block_seconds: live.policy.ratelimit().block_seconds,
            alerts: MergedAlerts::new(s.engine.alerts.clone()),
        }
    }

    fn set_policy(&mut self, live: &PolicyState) {
        self.mode = live.policy.mode();
        self.policy_version = live.version;
        self.policy_digest = live.digest().to_string();
        self.block_seconds = live.policy.ratelimit().block_seconds;
    }

    /// What the metrics endpoint shows.
    fn snapshot(&self, programs: &[PortProgram], kernel: KernelDropStats) -> Snapshot {
        Snapshot {
            workers: self.workers.iter().flatten().cloned().collect(),
            ports: programs
                .iter()
                .map(|p| (p.ifname().to_string(), p.counters().ok()))
                .collect(),
            kernel: KernelSnapshot {
                deny_entries: kernel.deny_entries as u64,
                blocked_now: kernel.blocked_now as u64,
                sources_blocked: kernel.sources_blocked,
                block_errors: kernel.block_errors,
            },
            policy_version: self.policy_version,
            enforcing: self.mode == Mode::Enforce,
            alerts: {
                let a = self.alerts.alerts();
                let active = a.active();
                a.rules()
                    .iter()
                    .map(|r| {
                        let level = active
                            .iter()
                            .find(|x| x.rule == r.name)
                            .map_or(0, |x| match x.level {
                                Level::Ok => 0,
                                Level::Warning => 1,
                                Level::Critical => 2,
                            });
                        (r.name.clone(), level)
                    })
                    .collect()
            },
        }
    }

    fn update(&mut self, s: WorkerStats<XskStats>) {
        if let Some(slot) = self.workers.get_mut(s.worker) {
            *slot = Some(s);
        }
    }

    /// Judge the alert rules on the seconds every worker has completed
    /// (once all have published), and log each level change.
    fn judge_alerts(&mut self) {
        if self.workers.iter().any(Option::is_none) {
            return;
        }
        let before = self.alerts.alerts().changes();
        self.alerts.update(
            self.workers
                .iter()
                .flatten()
                .map(|w| (w.second, w.recent_seconds.as_slice())),
        );
        let new = (self.alerts.alerts().changes() - before) as usize;
        if new == 0 {
            return;
        }
        let events = self.alerts.alerts().events();
        for e in &events[events.len().saturating_sub(new)..] {
            let msg = format!(
                "alert {}: {} ({} = {:.1}, threshold {})",
                e.rule,
                match e.level {
                    Level::Ok => "ok",
                    Level::Warning => "WARNING",
                    Level::Critical => "CRITICAL",
                },
                e.metric,
                e.value,
                e.threshold
            );
            match e.level {
                Level::Ok => tracing::info!("{msg}"),
                _ => tracing::warn!("{msg}"),
            }
        }
    }

    /// `GET /v1/alerts`.
    fn alerts_doc(&self) -> serde_json::Value {
        let rules: Vec<serde_json::Value> = self
            .alerts
            .alerts()
            .rules()
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "metric": r.metric.name(),
                    "warn": r.warn,
                    "critical": r.critical,
                    "window": r.window,
                })
            })
            .collect();
        json!({
            "active": self.alerts.alerts().active(),
            "history": self.alerts.alerts().events(),
            "rules": rules,
        })
    }

    /// Print and write when the interval is due, or at the end (`last`).
    fn tick(
        &mut self,
        programs: &[PortProgram],
        kernel: KernelDropStats,
        last: bool,
    ) -> anyhow::Result<()> {
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
                self.line(&total, &xdp, &kernel, pps)
            );
        }
        self.last_at = now;
        self.last_frames = total.counters.frames;
        if let Some(path) = &self.json {
            let doc = self.json_doc(&total, &xdp, &kernel, last);
            write_atomically(path, &doc)
                .with_context(|| format!("writing --stats-json {}", path.display()))?;
        }
        Ok(())
    }

    fn line(
        &self,
        t: &DatapathStats,
        xdp: &[(String, Option<XdpCounters>)],
        k: &KernelDropStats,
        pps: f64,
    ) -> String {
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
        let sum = |f: fn(&XdpCounters) -> u64| xdp_sum(xdp, f);
        format!(
            "{:.0} pps | frames {} tcp {} passed {} dropped {} would_drop {} | rst [{}] | \
             xdp to_xsk {} bypassed {} non_tcp {} deny_dropped {} block_dropped {} | \
             blocked {} (now {}, would_block {}, requests_lost {}) | ring rx_full {} \
             fill_empty {} rx_drop {} tx_invalid {} | frames leaked {} ledger_errors {} | \
             flows {} | xsk {}",
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
            sum(|x| x.deny_dropped),
            sum(|x| x.block_dropped),
            k.sources_blocked,
            k.blocked_now,
            t.blocks.would_block,
            block_requests_lost(t),
            t.source.ring.rx_ring_full,
            t.source.ring.rx_fill_ring_empty_descs,
            t.source.ring.rx_dropped,
            t.source.ring.tx_invalid_descs,
            t.source.frames.leaked,
            t.source.frames.ledger_errors,
            t.active_flows,
            t.source.xsk_mode(),
        )
    }

    /// The statistics document, as of now (`GET /v1/stats`).
    fn doc(&self, programs: &[PortProgram], kernel: KernelDropStats) -> serde_json::Value {
        let total = DatapathStats::sum(self.workers.iter().flatten());
        let xdp: Vec<(String, Option<XdpCounters>)> = programs
            .iter()
            .map(|p| (p.ifname().to_string(), p.counters().ok()))
            .collect();
        self.json_doc(&total, &xdp, &kernel, false)
    }

    fn json_doc(
        &self,
        t: &DatapathStats,
        xdp: &[(String, Option<XdpCounters>)],
        k: &KernelDropStats,
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
            "at": rstwall_pcap::analyze::format_ts(sys::now_ns()),
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "final": last,
            "topology": match &self.topology {
                Topology::Inline { a, b } => json!({ "inline": [a, b] }),
                Topology::Tap { port } => json!({ "tap": port }),
            },
            "mode": self.mode,
            "policy": { "version": self.policy_version, "digest": self.policy_digest },
            "xsk_mode": t.source.xsk_mode(),
            "rst": rst,
            // What XDP drops on the policy's behalf, summed over ports, and
            // the blocks behind `block_dropped`.
            "kernel": {
                "deny_entries": k.deny_entries,
                "deny_dropped": xdp_sum(xdp, |x| x.deny_dropped),
                "block_dropped": xdp_sum(xdp, |x| x.block_dropped),
                "block_seconds": self.block_seconds,
                "sources_blocked": k.sources_blocked,
                "blocked_now": k.blocked_now,
                "block_errors": k.block_errors,
                "block_requests": t.blocks.requested,
                "would_block": t.blocks.would_block,
                "block_requests_lost": block_requests_lost(t),
            },
            "totals": t,
            "ports": ports,
            "workers": self.workers.iter().flatten().collect::<Vec<_>>(),
        })
    }
}

/// One XDP counter summed over the ports whose counters could be read.
fn xdp_sum(xdp: &[(String, Option<XdpCounters>)], f: fn(&XdpCounters) -> u64) -> u64 {
    xdp.iter().filter_map(|(_, x)| x.as_ref()).map(f).sum()
}

/// Block requests that never reached the control side: a worker's ring was
/// full, or the channel to the control side was.
fn block_requests_lost(t: &DatapathStats) -> u64 {
    t.blocks.lost + t.block_requests_dropped
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

/// The unified diff of two texts (for `policy diff`).
pub fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}
