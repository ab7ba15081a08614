//! What `rstwall run` runs with: the command line ([`Flags`]) over the
//! config file ([`crate::config`]) over the defaults, checked. Made at
//! start-up and again at every SIGHUP, which applies the policy and reports
//! the other settings that changed as waiting for a restart.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use rstwall_afxdp::{BindMode, Poll, Topology};
use rstwall_bpf::XdpMode;
use rstwall_engine::engine::EngineConfig;
use rstwall_engine::policy::PolicyConfig;

use crate::config::{self, value, ConfigFile, LogLevel, MetricsListen};
use crate::flags::Flags;

/// Where the frames come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frames {
    /// Ports, through rstwall's XDP program and AF_XDP: inline or tap.
    Ports(Topology),
    /// Host mode on this host's own interfaces (empty: every one).
    Host(Vec<String>),
}

impl Frames {
    /// As the documents show it.
    pub fn document(&self) -> rstwall_api::Topology {
        match self {
            Frames::Ports(t) => crate::source::afxdp::topology_document(t),
            Frames::Host(ifaces) => rstwall_api::Topology::Host(ifaces.clone()),
        }
    }
}

/// `Flags` over the config file, checked.
#[derive(Debug)]
pub struct Settings {
    pub frames: Frames,
    pub xdp_mode: XdpMode,
    pub bind: BindMode,
    /// How the AF_XDP workers wait for frames.
    pub poll: Poll,
    pub queues: Option<u32>,
    /// The engine, with the *configured* policy (see [`crate::persist`] for
    /// the policy that actually runs).
    pub engine: EngineConfig,
    pub stats_interval: Option<Duration>,
    pub stats_json: Option<PathBuf>,
    pub replace_foreign: bool,
    /// The in-kernel RST guard (`--rst-guard`).
    pub rst_guard: bool,
    /// Tap mode may run on an interface with this host's addresses.
    pub tap_host_interface: bool,
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
    /// `[export.nats]`: the fleet exporter; `None`: off.
    pub export: Option<rstwall_export::NatsConfig>,
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
        let frames = match (&args.inline, &args.tap, &args.host) {
            (Some(pair), None, None) => {
                let (a, b) = pair.split_once(',').unwrap_or((pair, ""));
                if b.contains(',') {
                    return Err(anyhow!(
                        "--inline: expected two different ports as PORT_A,PORT_B, got {pair:?}"
                    ));
                }
                Frames::Ports(value::inline(a, b).map_err(flag("--inline"))?)
            }
            (None, Some(port), None) => Frames::Ports(value::tap(port).map_err(flag("--tap"))?),
            (None, None, Some(list)) => Frames::Host(value::host(list).map_err(flag("--host"))?),
            (None, None, None) => match (&f.topology, &f.host) {
                (Some(t), _) => Frames::Ports(t.clone()),
                (None, Some(h)) => Frames::Host(h.clone()),
                (None, None) => {
                    return Err(anyhow!(
                        "give the ports: --inline PORT_A,PORT_B or --tap PORT, or --host \
                         [IFACE,...] for this host's own TCP{}",
                        if file.is_some() {
                            " (or inline/tap/host in the config file)"
                        } else {
                            ""
                        }
                    ))
                }
            },
            _ => {
                return Err(anyhow!(
                    "give exactly one of --inline PORT_A,PORT_B, --tap PORT and --host [IFACE,...]"
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
        // Each of the three from the flag, else the file; checked together.
        let poll_mode = match &args.poll {
            Some(m) => Some(value::poll(m).map_err(flag("--poll"))?),
            None => f.poll,
        };
        let usecs = match args.busy_poll_usecs {
            Some(n) => Some(value::busy_poll_usecs(n.into()).map_err(flag("--busy-poll-usecs"))?),
            None => f.busy_poll_usecs,
        };
        let budget = match args.busy_poll_budget {
            Some(n) => Some(value::busy_poll_budget(n.into()).map_err(flag("--busy-poll-budget"))?),
            None => f.busy_poll_budget,
        };
        let poll = value::poll_with(poll_mode.unwrap_or_default(), usecs, budget)
            .map_err(flag("--busy-poll-usecs/--busy-poll-budget"))?;
        if poll_mode.is_some() && matches!(frames, Frames::Host(_)) {
            return Err(anyhow!(
                "poll: host mode has no AF_XDP sockets to poll; the poll mode is for --inline \
                 and --tap"
            ));
        }
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
        let rst_guard = args.rst_guard || f.rst_guard.unwrap_or(false);
        if rst_guard && matches!(frames, Frames::Host(_)) {
            return Err(anyhow!(
                "rst_guard: host mode never drops a packet; the RST guard is for inline ports \
                 (--inline PORT_A,PORT_B)"
            ));
        }
        let export = f.export_nats.as_ref().map(|n| n.config(&state_dir));
        Ok(Settings {
            frames,
            xdp_mode,
            bind,
            poll,
            queues,
            engine,
            stats_interval,
            stats_json: args.stats_json.clone().or_else(|| f.stats_json.clone()),
            replace_foreign: args.replace_foreign_xdp || f.replace_foreign_xdp.unwrap_or(false),
            rst_guard,
            tap_host_interface: args.tap_host_interface || f.tap_host_interface.unwrap_or(false),
            metrics_listen,
            control_socket,
            control_group,
            state_dir,
            log_level,
            policy_file,
            policy_from_flags: args.policy.is_some() || args.mode.is_some(),
            config_file: args.config.clone(),
            export,
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
        let ports = |f: &Frames| match f {
            Frames::Ports(t) => Some(t.clone()),
            Frames::Host(_) => None,
        };
        let host = |f: &Frames| match f {
            Frames::Host(h) => Some(h.clone()),
            Frames::Ports(_) => None,
        };
        check("inline/tap", ports(&self.frames) != ports(&new.frames));
        check("host", host(&self.frames) != host(&new.frames));
        check("xdp_mode", self.xdp_mode != new.xdp_mode);
        check("xsk_mode", self.bind != new.bind);
        check("poll", self.poll != new.poll);
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
        check("export.nats", self.export != new.export);
        check(
            "replace_foreign_xdp",
            self.replace_foreign != new.replace_foreign,
        );
        check("rst_guard", self.rst_guard != new.rst_guard);
        check(
            "tap_host_interface",
            self.tap_host_interface != new.tap_host_interface,
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
