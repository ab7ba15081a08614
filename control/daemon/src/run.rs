//! `rstwall run`: start-up, the main loop, shutdown.
//!
//! Start-up: validate arguments and the config file ([`Settings`]), check
//! the ports, lock the state directory and decide the start-up policy (see
//! [`crate::persist`]), bind the control socket and the metrics endpoint,
//! then start the frame source with its kernel side ([`crate::source`];
//! AF_XDP: [`crate::source::afxdp`]). From then on TCP goes through the
//! workers.
//!
//! Running: the main thread waits for signals ([`crate::signals`]), collects
//! the workers' stats into the [`Monitor`], publishes them to the metrics
//! endpoint, answers the control API ([`ControlState`]), and hands the
//! sources the workers' policies ask to block (enforce mode,
//! `ratelimit.block_seconds`) to the kernel side. SIGHUP reloads the
//! policy.
//!
//! Shutdown (SIGINT/SIGTERM): stop the workers, write the final statistics,
//! and release the kernel side — removed after a clean stop, left in place
//! to fail open when a worker failed (see the source's module).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rstwall_afxdp::{sys, Topology};
use rstwall_api::Failure;
use rstwall_source::Source;

use crate::blocks::Blocks;
use crate::config::{LogLevel, MetricsListen};
use crate::control::{ControlState, Ctx};
use crate::export::{self, Export};
use crate::flags::Flags;
use crate::metrics::{self, Metrics};
use crate::monitor::Monitor;
use crate::persist::{Origin, PolicyState, StateDir};
use crate::server::{self as api, Call};
use crate::settings::{Frames, Settings};
use crate::signals::{Signal, Signals};
use crate::source::{afxdp, host, tap_guard, Running};

/// How long the main loop waits for a signal before it looks at the
/// workers' statistics, the control API and the block requests again.
const LOOP_EVERY: Duration = Duration::from_millis(50);
/// Block requests taken from the workers per turn of the main loop (twenty
/// a second): a flood of them is bounded by the channel, not by this loop.
const BLOCKS_PER_LOOP: usize = 4096;

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
            "rstwall run must run as root (it attaches BPF programs: XDP and AF_XDP sockets \
             on ports, tc and tracing programs in host mode)"
        )));
    }
    let mut start = match &settings.frames {
        Frames::Ports(topology) => Start::Ports(afxdp::Plan::check(&settings, topology)?),
        Frames::Host(ifaces) => Start::Host(ifaces.clone()),
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
    // Tap mode would cut this host's own TCP on one of its interfaces.
    if let Frames::Ports(Topology::Tap { port }) = &settings.frames {
        tap_guard::check(port, settings.tap_host_interface)?;
    }
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

    // The fleet exporter, before the workers: they (or host mode's
    // adapter, through the outbox) hand it every RST. Its spool is in the
    // state directory, locked above.
    let export = match &settings.export {
        None => None,
        Some(cfg) => {
            let (mode, rsts) = match &mut start {
                Start::Ports(plan) => {
                    let (sink, rx) = rstwall_source::rst_channel(cfg.queue);
                    plan.rsts = Some(sink.clone());
                    let mode = match &settings.frames {
                        Frames::Ports(Topology::Tap { .. }) => "tap",
                        _ => "inline",
                    };
                    (mode, Some((sink, rx)))
                }
                // Host mode's events carry their own fields: its adapter
                // sends them through the outbox.
                Start::Host(_) => ("host", None),
            };
            let exporter = rstwall_export::Exporter::start(
                cfg.clone(),
                rstwall_export::Inputs {
                    rsts,
                    mode: mode.into(),
                },
            )
            .map_err(Failure::runtime)?;
            tracing::info!(
                "exporting to NATS JetStream at {}: subjects {}, stream {}",
                cfg.servers.join(", "),
                cfg.subject("*"),
                cfg.stream_name()
            );
            Some(Export::new(exporter))
        }
    };

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

    // Caught from here on; each becomes a byte the main loop reads.
    let signals = Signals::install()
        .context("catching signals")
        .map_err(Failure::runtime)?;

    let started_unix = sys::now_ns() / 1_000_000_000;
    let metrics = Metrics::new(started_unix);
    let _server = match settings.metrics_listen {
        MetricsListen::Off => None,
        MetricsListen::On(addr) => {
            let server = metrics::http::Server::start(addr, metrics.clone())
                .with_context(|| format!("metrics endpoint: cannot listen on {addr}"))
                .map_err(Failure::runtime)?;
            tracing::info!("metrics at http://{}/metrics", server.local_addr());
            Some(server)
        }
    };

    let effective = ControlState::effective(&live.policy, &blocks);
    let ready = Ready {
        args,
        settings,
        live,
        blocks,
        state,
        control,
        signals,
        export,
    };
    match start {
        Start::Ports(plan) => {
            let running = plan.start(&ready.settings, &effective)?;
            launch(running, ready, &metrics)
        }
        Start::Host(ifaces) => {
            let outbox = ready.export.as_ref().map(|x| x.exporter().outbox());
            let running = host::start(&ready.settings, &ifaces, &effective, outbox)?;
            launch(running, ready, &metrics)
        }
    }
}

/// The frame source to start, checked.
enum Start {
    Ports(afxdp::Plan),
    /// Host mode on these interfaces (empty: all).
    Host(Vec<String>),
}

/// Everything but the source, ready to serve.
struct Ready {
    args: Flags,
    settings: Settings,
    live: PolicyState,
    blocks: Blocks,
    state: StateDir,
    control: Option<api::Bound>,
    signals: Signals,
    export: Option<Export>,
}

fn launch<R: Running>(running: R, r: Ready, metrics: &Metrics) -> Result<(), Failure> {
    tracing::info!(
        "running {}, policy {} (version {})",
        running.describe(),
        r.live.policy.mode(),
        r.live.version,
    );
    let control_state = ControlState::new(r.args, r.settings, r.live, r.blocks, r.state);
    serve(
        running,
        control_state,
        r.control,
        r.signals,
        metrics,
        r.export,
    )
}

/// Run `running` until a signal stops it or a worker fails; then stop it.
fn serve<R: Running>(
    mut running: R,
    mut state: ControlState,
    control: Option<api::Bound>,
    mut signals: Signals,
    metrics: &Metrics,
    mut export: Option<Export>,
) -> Result<(), Failure> {
    let (calls_tx, calls) = crossbeam::channel::bounded::<Call>(64);
    let _api = match control {
        None => None,
        Some(bound) => {
            let path = bound.path().to_path_buf();
            let server = api::Server::start(bound, calls_tx, running.source().workers().handle())
                .context("control API")
                .map_err(Failure::runtime)?;
            tracing::info!("control API on {}", path.display());
            Some(server)
        }
    };

    let mut monitor = Monitor::new(
        state.settings(),
        state.live(),
        running.source().workers().len(),
    );
    let stats = running.source().workers().stats().clone();
    let block_requests = running.source().workers().block_requests().clone();
    let mut next_publish = Instant::now();
    let outcome = loop {
        match signals.wait(LOOP_EVERY) {
            Ok(Some(Signal::Reload)) => state.request_reload(),
            Ok(Some(Signal::Stop(name))) => {
                tracing::info!("{name}: stopping");
                break Ok(());
            }
            Ok(None) => {}
            Err(e) => break Err(anyhow!(e).context("waiting for signals")),
        }
        for s in stats.try_iter() {
            monitor.update(s);
        }
        let alert_changes = monitor.judge_alerts();
        let now = Instant::now();
        if let Some(x) = &mut export {
            monitor.set_export(x.exporter().status());
            x.turn(&alert_changes, now, |e| export::summary(&monitor, e));
        }
        {
            let mut ctx = Ctx {
                running: &mut running,
                monitor: &mut monitor,
            };
            state.reload_if_due(now, &mut ctx, metrics);
            for call in calls.try_iter() {
                let answer = state.answer(call.op, &mut ctx);
                let _ = call.reply.try_send(answer);
            }
        }
        // Bounded: workers may refill the channel as fast as it drains.
        for src in block_requests.try_iter().take(BLOCKS_PER_LOOP) {
            running.block(src, now);
        }
        running.expire(now);
        running.tick();
        if let Some(e) = running.source_mut().workers_mut().failed_worker() {
            break Err(anyhow!(e));
        }
        if now >= next_publish {
            next_publish = now + metrics::PUBLISH_EVERY;
            metrics.publish(monitor.snapshot(&running.kernel()));
        }
        if let Err(e) = monitor.tick(|| running.kernel(), false) {
            break Err(e);
        }
    };

    // Teardown: always, whatever the outcome.
    let mut teardown_error = None;
    match running.stop_workers() {
        Ok(stats) => {
            for s in stats {
                monitor.update(s);
            }
        }
        Err(e) => teardown_error = Some(anyhow!(e)),
    }
    if let Err(e) = monitor.tick(|| running.kernel(), true) {
        teardown_error.get_or_insert(e);
    }
    // The workers are stopped: every RST is handed over. The last summary,
    // then a moment to deliver; what is left waits in the spool.
    if let Some(mut x) = export {
        x.turn(&[], Instant::now() + Duration::from_secs(3600), |e| {
            export::summary(&monitor, e)
        });
        x.stop();
    }
    // Only a clean stop removes the kernel side: when the source failed,
    // it stays and keeps the wire up.
    if let Err(e) = running.release(outcome.is_ok()) {
        teardown_error.get_or_insert(e);
    }
    outcome.map_err(Failure::runtime)?;
    match teardown_error {
        Some(e) => Err(Failure::runtime(e)),
        None => Ok(()),
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
