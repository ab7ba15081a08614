//! The appliance's settings file: `rstwall run --config FILE`.
//!
//! One TOML file, flat: every key is the long option of `rstwall run` with
//! the same name (`xdp_mode` is `--xdp-mode`), and a flag given on the
//! command line overrides its key. `dist/rstwall.toml` is a commented
//! example of every key.
//!
//! ```toml
//! inline = ["eth1", "eth2"]          # or: tap = "eth3"
//! policy = "/etc/rstwall/policy.toml"
//! metrics_listen = "127.0.0.1:9717"  # or "off"
//! control_socket = "/run/rstwall/rstwall.sock"  # or "off"
//! state_dir = "/var/lib/rstwall"
//! ```
//!
//! The policy stays in its own file (the format of `rstwall analyze
//! --policy` and of the persisted state), named by the `policy` key, rather
//! than in a `[policy]` table here: one policy format, read by one parser,
//! whose errors name the policy file's own lines.
//!
//! Reading follows the raw → validated order of [`PolicyConfig`]: a
//! `#[serde(default, deny_unknown_fields)]` raw struct whose values are kept
//! as spanned TOML values, typed and checked in `RawConfig::validate`, so
//! that every error — an unknown key, a value of the wrong type, a value out
//! of range — names the key and its line.
//!
//! Relative paths in the file are relative to the file's directory.
//!
//! [`PolicyConfig`]: rstwall_engine::policy::PolicyConfig

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rstwall_afxdp::{BindMode, Poll, PollMode, Topology};
use rstwall_bpf::XdpMode;
use rstwall_engine::engine::EngineConfig;
use rstwall_engine::policy::{describe, Location};
use serde::Deserialize;
use toml::{Spanned, Value};

/// `metrics_listen` when neither the file nor `--metrics-listen` sets it.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9717";
/// `control_socket` when neither the file nor `--control-socket` sets it.
pub const DEFAULT_CONTROL_SOCKET: &str = rstwall_api::DEFAULT_SOCKET;
/// `state_dir` when neither the file nor `--state-dir` sets it.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/rstwall";
/// `stats_interval` (seconds) when neither the file nor the flag sets it.
pub const DEFAULT_STATS_INTERVAL: f64 = 10.0;

// ---------------------------------------------------------------------------
// Values, checked the same way from the file and from the command line
// ---------------------------------------------------------------------------

/// Where the Prometheus endpoint listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    On(SocketAddr),
}

impl fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsListen::Off => f.write_str("off"),
            MetricsListen::On(a) => write!(f, "{a}"),
        }
    }
}

/// The level of the daemon's log (`RUST_LOG`, when set, overrides it with
/// tracing's full filter syntax).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// The value parsers. Each error says what is wrong with the value; the
/// caller puts the key (`xdp_mode`) or the flag (`--xdp-mode`) before it.
pub mod value {
    use super::*;

    /// `PORT_A,PORT_B` (the command line) or its two parts (the file).
    pub fn inline(a: &str, b: &str) -> Result<Topology, String> {
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() || b.is_empty() || a == b {
            return Err(format!(
                "expected two different ports as PORT_A,PORT_B, got {:?}",
                format!("{a},{b}")
            ));
        }
        Ok(Topology::Inline {
            a: a.to_string(),
            b: b.to_string(),
        })
    }

    /// Host mode's interfaces: `lo,eth0`, or `all` (or nothing): every
    /// interface, and those that appear later (an empty list).
    pub fn host(list: &str) -> Result<Vec<String>, String> {
        let list = list.trim();
        if list.is_empty() || list == "all" {
            return Ok(Vec::new());
        }
        let names: Vec<String> = list.split(',').map(|n| n.trim().to_string()).collect();
        match names.iter().find(|n| n.is_empty() || n.len() > 15) {
            Some(bad) => Err(format!(
                "{bad:?} is not an interface name (expected IFACE,IFACE... or all)"
            )),
            None => Ok(names),
        }
    }

    pub fn tap(port: &str) -> Result<Topology, String> {
        match port.trim() {
            "" => Err("expected a port name".into()),
            p => Ok(Topology::Tap { port: p.into() }),
        }
    }

    pub fn xdp_mode(s: &str) -> Result<XdpMode, String> {
        s.parse()
            .map_err(|e: rstwall_bpf::UnknownXdpMode| e.to_string())
    }

    pub fn xsk_mode(s: &str) -> Result<BindMode, String> {
        s.parse()
            .map_err(|e: rstwall_afxdp::UnknownBindMode| e.to_string())
    }

    pub fn poll(s: &str) -> Result<PollMode, String> {
        s.parse().map_err(|e: rstwall_engine::names::UnknownName| {
            format!(
                "unknown poll mode `{}` (expected {})",
                e.name,
                rstwall_engine::names::alternatives(&PollMode::NAMES)
            )
        })
    }

    pub fn busy_poll_usecs(n: i128) -> Result<u32, String> {
        match u32::try_from(n) {
            Ok(u) if (1..=1_000_000).contains(&u) => Ok(u),
            _ => Err(format!("1..=1000000 microseconds (got {n})")),
        }
    }

    pub fn busy_poll_budget(n: i128) -> Result<u16, String> {
        match u16::try_from(n) {
            Ok(b) if (1..=1024).contains(&b) => Ok(b),
            _ => Err(format!("1..=1024 frames (got {n})")),
        }
    }

    /// The poll mode with busy polling's parameters; they are refused
    /// beside a mode other than busy, where they would do nothing.
    pub fn poll_with(
        mode: PollMode,
        usecs: Option<u32>,
        budget: Option<u16>,
    ) -> Result<Poll, String> {
        match mode {
            PollMode::Busy => Ok(Poll::Busy {
                usecs: usecs.unwrap_or(Poll::BUSY_USECS),
                budget: budget.unwrap_or(Poll::BUSY_BUDGET),
            }),
            _ if usecs.is_some() || budget.is_some() => Err(format!(
                "busy_poll_usecs and busy_poll_budget need poll = \"busy\" (poll is {:?})",
                mode.as_str()
            )),
            PollMode::Wakeup => Ok(Poll::Wakeup),
            PollMode::Spin => Ok(Poll::Spin),
        }
    }

    pub fn queues(n: i128) -> Result<u32, String> {
        match u32::try_from(n) {
            Ok(q) if q >= 1 => Ok(q),
            _ => Err(format!("at least 1 (got {n})")),
        }
    }

    pub fn flow_capacity(n: i128) -> Result<usize, String> {
        let cfg = EngineConfig {
            flow_capacity: usize::try_from(n).unwrap_or(0),
            ..EngineConfig::default()
        };
        match cfg.validate() {
            Ok(()) => Ok(cfg.flow_capacity),
            // "flow_capacity: must be 1..=N": the caller names the key.
            Err(e) => Err(e
                .strip_prefix("flow_capacity: ")
                .map(|m| format!("{m} (got {n})"))
                .unwrap_or(e)),
        }
    }

    /// Seconds between statistics lines; 0 turns them off.
    pub fn stats_interval(secs: f64) -> Result<Option<Duration>, String> {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(format!("a number of seconds, 0 or more (got {secs})"));
        }
        Ok((secs > 0.0).then(|| Duration::from_secs_f64(secs.max(0.05))))
    }

    pub fn metrics_listen(s: &str) -> Result<MetricsListen, String> {
        if s == "off" {
            return Ok(MetricsListen::Off);
        }
        s.parse().map(MetricsListen::On).map_err(|_| {
            format!(
                "{s:?} is not an address: expected IP:PORT (e.g. {DEFAULT_METRICS_LISTEN}) or off"
            )
        })
    }

    /// The control API's socket path, or `off` (None).
    pub fn control_socket(s: &str) -> Result<Option<PathBuf>, String> {
        if s == "off" {
            return Ok(None);
        }
        path(s).map(Some)
    }

    /// A group name (or number) that may use the control API.
    pub fn control_group(s: &str) -> Result<String, String> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if ok {
            Ok(s.to_string())
        } else {
            Err(format!("{s:?} is not a group name"))
        }
    }

    pub fn log_level(s: &str) -> Result<LogLevel, String> {
        Ok(match s {
            "off" => LogLevel::Off,
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => {
                return Err(format!(
                    "unknown level {s:?} (expected off, error, warn, info, debug or trace)"
                ))
            }
        })
    }

    pub fn path(s: &str) -> Result<PathBuf, String> {
        if s.is_empty() {
            return Err("expected a path, got an empty string".into());
        }
        Ok(PathBuf::from(s))
    }
}

// ---------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------

/// The settings file, validated: `None` for a key it does not set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// From `inline` or `tap`.
    pub topology: Option<Topology>,
    /// From `host`: host mode on these interfaces (empty: all).
    pub host: Option<Vec<String>>,
    pub xdp_mode: Option<XdpMode>,
    pub xsk_mode: Option<BindMode>,
    pub poll: Option<PollMode>,
    pub busy_poll_usecs: Option<u32>,
    pub busy_poll_budget: Option<u16>,
    pub queues: Option<u32>,
    pub flow_capacity: Option<usize>,
    /// `Some(None)`: set to 0, no statistics lines.
    pub stats_interval: Option<Option<Duration>>,
    pub stats_json: Option<PathBuf>,
    pub metrics_listen: Option<MetricsListen>,
    /// `Some(None)`: set to `off`.
    pub control_socket: Option<Option<PathBuf>>,
    pub control_group: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub log_level: Option<LogLevel>,
    /// The policy file (see the module docs for why not a table).
    pub policy: Option<PathBuf>,
    pub replace_foreign_xdp: Option<bool>,
    pub rst_guard: Option<bool>,
    /// Tap mode on an interface with this host's addresses (a mirror
    /// port that also has one).
    pub tap_host_interface: Option<bool>,
    /// `[export.nats]`: the fleet exporter (see [`crate::export`]).
    pub export_nats: Option<crate::export::NatsFile>,
}

/// A settings file that cannot be used: which file, where, and what is
/// wrong (the message starts with the key).
#[derive(Debug)]
pub struct ConfigError {
    pub path: PathBuf,
    pub at: Option<Location>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config file {}: ", self.path.display())?;
        if let Some(at) = self.at {
            write!(f, "{at}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigFile {
    /// Read and validate a settings file.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_path_buf(),
            at: None,
            message: format!("cannot read it: {e}"),
        })?;
        ConfigFile::parse(&text, path)
    }

    /// Validate a settings file's text; `path` names it in errors and
    /// anchors its relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        let error = |span: Option<Range<usize>>, message: String| ConfigError {
            path: path.to_path_buf(),
            at: span.map(|s| Location::of(text, s.start)),
            message,
        };
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| error(e.span(), e.message().trim_end().replace('\n', "; ")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        raw.validate(path, base)
            .map_err(|(span, message)| error(Some(span), message))
    }
}

// Values are kept as spanned `toml::Value`s and typed in `validate`, so a
// value of the wrong type is reported with its key and line, like any other
// bad value, instead of as serde's anonymous "invalid type".
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    inline: Option<Spanned<Value>>,
    tap: Option<Spanned<Value>>,
    host: Option<Spanned<Value>>,
    xdp_mode: Option<Spanned<Value>>,
    xsk_mode: Option<Spanned<Value>>,
    poll: Option<Spanned<Value>>,
    busy_poll_usecs: Option<Spanned<Value>>,
    busy_poll_budget: Option<Spanned<Value>>,
    queues: Option<Spanned<Value>>,
    flow_capacity: Option<Spanned<Value>>,
    stats_interval: Option<Spanned<Value>>,
    stats_json: Option<Spanned<Value>>,
    metrics_listen: Option<Spanned<Value>>,
    control_socket: Option<Spanned<Value>>,
    control_group: Option<Spanned<Value>>,
    state_dir: Option<Spanned<Value>>,
    log_level: Option<Spanned<Value>>,
    policy: Option<Spanned<Value>>,
    replace_foreign_xdp: Option<Spanned<Value>>,
    rst_guard: Option<Spanned<Value>>,
    tap_host_interface: Option<Spanned<Value>>,
    export: Option<crate::export::RawExport>,
}

/// An error at a byte range of the file, its message starting with the key.
pub(crate) type Located = (Range<usize>, String);

/// One key's value, typed by `typed` and checked by `check`; errors are
/// prefixed with the key and located at the value.
pub(crate) fn field<T, U>(
    key: &str,
    v: Option<Spanned<Value>>,
    expected: &str,
    typed: impl FnOnce(&Value) -> Option<T>,
    check: impl FnOnce(T) -> Result<U, String>,
) -> Result<Option<U>, Located> {
    let Some(v) = v else { return Ok(None) };
    let span = v.span();
    let Some(t) = typed(v.get_ref()) else {
        return Err((
            span,
            format!(
                "{key}: expected {expected}, found {}",
                describe(v.get_ref())
            ),
        ));
    };
    check(t)
        .map(Some)
        .map_err(|message| (span, format!("{key}: {message}")))
}

pub(crate) fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

impl RawConfig {
    fn validate(self, path: &Path, base: &Path) -> Result<ConfigFile, Located> {
        let file_path = |s: String| value::path(&s).map(|p| base.join(p));
        let inline = match self.inline {
            None => None,
            Some(v) => {
                let span = v.span();
                let ports: Option<Vec<&str>> = v
                    .get_ref()
                    .as_array()
                    .and_then(|a| a.iter().map(Value::as_str).collect());
                match ports.as_deref() {
                    Some([a, b]) => Some(
                        value::inline(a, b).map_err(|m| (span.clone(), format!("inline: {m}")))?,
                    ),
                    _ => {
                        return Err((
                            span,
                            format!(
                                "inline: expected an array of two port names, found {}",
                                describe(v.get_ref())
                            ),
                        ))
                    }
                }
            }
        };
        let tap_span = self.tap.as_ref().map(Spanned::span);
        let tap = field("tap", self.tap, "a string", string, |s| value::tap(&s))?;
        let topology = match (inline, tap) {
            (Some(_), Some(_)) => {
                return Err((
                    tap_span.expect("tap was given"),
                    "tap: give either inline or tap, not both".into(),
                ))
            }
            (i, t) => i.or(t),
        };
        let host_span = self.host.as_ref().map(Spanned::span);
        let host = field("host", self.host, "a string", string, |s| value::host(&s))?;
        if host.is_some() && topology.is_some() {
            return Err((
                host_span.expect("host was given"),
                "host: give one of inline, tap and host".into(),
            ));
        }
        let poll = field("poll", self.poll, "a string", string, |s| value::poll(&s))?;
        let usecs_span = self.busy_poll_usecs.as_ref().map(Spanned::span);
        let budget_span = self.busy_poll_budget.as_ref().map(Spanned::span);
        let busy_poll_usecs = field(
            "busy_poll_usecs",
            self.busy_poll_usecs,
            "an integer",
            Value::as_integer,
            |n| value::busy_poll_usecs(n.into()),
        )?;
        let busy_poll_budget = field(
            "busy_poll_budget",
            self.busy_poll_budget,
            "an integer",
            Value::as_integer,
            |n| value::busy_poll_budget(n.into()),
        )?;
        if let Err(m) =
            value::poll_with(poll.unwrap_or_default(), busy_poll_usecs, busy_poll_budget)
        {
            let (key, span) = match usecs_span {
                Some(s) => ("busy_poll_usecs", s),
                None => ("busy_poll_budget", budget_span.expect("one was given")),
            };
            return Err((span, format!("{key}: {m}")));
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            topology,
            host,
            xdp_mode: field("xdp_mode", self.xdp_mode, "a string", string, |s| {
                value::xdp_mode(&s)
            })?,
            xsk_mode: field("xsk_mode", self.xsk_mode, "a string", string, |s| {
                value::xsk_mode(&s)
            })?,
            poll,
            busy_poll_usecs,
            busy_poll_budget,
            queues: field(
                "queues",
                self.queues,
                "an integer",
                Value::as_integer,
                |n| value::queues(n.into()),
            )?,
            flow_capacity: field(
                "flow_capacity",
                self.flow_capacity,
                "an integer",
                Value::as_integer,
                |n| value::flow_capacity(n.into()),
            )?,
            stats_interval: field(
                "stats_interval",
                self.stats_interval,
                "a number of seconds",
                |v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)),
                value::stats_interval,
            )?,
            stats_json: field("stats_json", self.stats_json, "a path", string, file_path)?,
            metrics_listen: field(
                "metrics_listen",
                self.metrics_listen,
                "a string",
                string,
                |s| value::metrics_listen(&s),
            )?,
            control_socket: field(
                "control_socket",
                self.control_socket,
                "a path",
                string,
                |s| match value::control_socket(&s)? {
                    Some(p) => Ok(Some(base.join(p))),
                    None => Ok(None),
                },
            )?,
            control_group: field(
                "control_group",
                self.control_group,
                "a string",
                string,
                |s| value::control_group(&s),
            )?,
            state_dir: field("state_dir", self.state_dir, "a path", string, file_path)?,
            log_level: field("log_level", self.log_level, "a string", string, |s| {
                value::log_level(&s)
            })?,
            policy: field("policy", self.policy, "a path", string, file_path)?,
            replace_foreign_xdp: field(
                "replace_foreign_xdp",
                self.replace_foreign_xdp,
                "a boolean",
                Value::as_bool,
                Ok,
            )?,
            rst_guard: field("rst_guard", self.rst_guard, "a boolean", Value::as_bool, Ok)?,
            tap_host_interface: field(
                "tap_host_interface",
                self.tap_host_interface,
                "a boolean",
                Value::as_bool,
                Ok,
            )?,
            export_nats: match self.export {
                Some(e) => e.validate(base)?,
                None => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(text, Path::new("/etc/rstwall/rstwall.toml"))
    }

    fn err(text: &str) -> (String, Option<usize>) {
        let e = parse(text).expect_err("should be rejected");
        (e.to_string(), e.at.map(|a| a.line))
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"
inline = ["eth1", "eth2"]
xdp_mode = "generic"
xsk_mode = "copy"
poll = "busy"
busy_poll_usecs = 50
busy_poll_budget = 16
queues = 2
flow_capacity = 1000
stats_interval = 0.5
stats_json = "stats.json"
metrics_listen = "[::1]:9999"
state_dir = "/srv/rstwall"
log_level = "debug"
policy = "policy.toml"
replace_foreign_xdp = true
rst_guard = true
"#,
        )
        .unwrap();
        assert_eq!(
            c.topology,
            Some(Topology::Inline {
                a: "eth1".into(),
                b: "eth2".into()
            })
        );
        assert_eq!(c.xdp_mode, Some(XdpMode::Generic));
        assert_eq!(c.xsk_mode, Some(BindMode::Copy));
        assert_eq!(c.poll, Some(PollMode::Busy));
        assert_eq!(c.busy_poll_usecs, Some(50));
        assert_eq!(c.busy_poll_budget, Some(16));
        assert_eq!(c.queues, Some(2));
        assert_eq!(c.flow_capacity, Some(1000));
        assert_eq!(c.stats_interval, Some(Some(Duration::from_millis(500))));
        // Relative paths are relative to the file's directory.
        assert_eq!(c.stats_json, Some("/etc/rstwall/stats.json".into()));
        assert_eq!(c.policy, Some("/etc/rstwall/policy.toml".into()));
        assert_eq!(c.state_dir, Some("/srv/rstwall".into()));
        assert_eq!(
            c.metrics_listen,
            Some(MetricsListen::On("[::1]:9999".parse().unwrap()))
        );
        assert_eq!(c.log_level, Some(LogLevel::Debug));
        assert_eq!(c.replace_foreign_xdp, Some(true));
        assert_eq!(c.rst_guard, Some(true));
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        let c = parse("# nothing\n").unwrap();
        assert_eq!(
            c,
            ConfigFile {
                path: "/etc/rstwall/rstwall.toml".into(),
                ..ConfigFile::default()
            }
        );
        let c = parse("tap = \"eth3\"\nstats_interval = 0\nmetrics_listen = \"off\"\n").unwrap();
        assert_eq!(
            c.topology,
            Some(Topology::Tap {
                port: "eth3".into()
            })
        );
        assert_eq!(c.stats_interval, Some(None));
        assert_eq!(c.metrics_listen, Some(MetricsListen::Off));
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let (e, line) = err("tap = \"eth3\"\n\npolcy = \"p.toml\"\n");
        assert_eq!(line, Some(3), "{e}");
        assert!(e.contains("unknown field `polcy`"), "{e}");
        assert!(
            e.starts_with("config file /etc/rstwall/rstwall.toml: line 3, column 1: "),
            "{e}"
        );
        // A table where a key belongs is unknown too.
        let (e, line) = err("tap = \"eth3\"\n[policy]\nmode = \"enforce\"\n");
        assert!(e.contains("policy: expected a path, found a table"), "{e}");
        assert_eq!(line, Some(2), "{e}");
    }

    #[test]
    fn bad_values_are_named_with_their_line() {
        for (text, needle, want_line) in [
            (
                "\nxdp_mode = \"fast\"",
                "xdp_mode: unknown XDP mode `fast`",
                2,
            ),
            (
                "xsk_mode = 1",
                "xsk_mode: expected a string, found integer 1",
                1,
            ),
            ("\n\nqueues = 0", "queues: at least 1 (got 0)", 3),
            (
                "\npoll = \"fast\"",
                "poll: unknown poll mode `fast` (expected wakeup, spin or busy)",
                2,
            ),
            ("poll = true", "poll: expected a string, found boolean", 1),
            (
                "poll = \"busy\"\nbusy_poll_usecs = 0",
                "busy_poll_usecs: 1..=1000000 microseconds (got 0)",
                2,
            ),
            (
                "poll = \"busy\"\nbusy_poll_budget = 70000",
                "busy_poll_budget: 1..=1024 frames (got 70000)",
                2,
            ),
            (
                "busy_poll_budget = \"64\"",
                "busy_poll_budget: expected an integer",
                1,
            ),
            (
                "poll = \"spin\"\n\nbusy_poll_usecs = 20",
                "busy_poll_usecs: busy_poll_usecs and busy_poll_budget need poll = \"busy\" (poll is \"spin\")",
                3,
            ),
            (
                "busy_poll_budget = 8",
                "busy_poll_budget: busy_poll_usecs and busy_poll_budget need poll = \"busy\" (poll is \"wakeup\")",
                1,
            ),
            (
                "queues = \"2\"",
                "queues: expected an integer, found string \"2\"",
                1,
            ),
            ("flow_capacity = 0", "flow_capacity: must be 1..=", 1),
            ("flow_capacity = -5", "flow_capacity: must be 1..=", 1),
            (
                "stats_interval = -1",
                "stats_interval: a number of seconds",
                1,
            ),
            (
                "stats_interval = \"10s\"",
                "stats_interval: expected a number",
                1,
            ),
            (
                "metrics_listen = \"localhost:9717\"",
                "metrics_listen: \"localhost:9717\" is not an address",
                1,
            ),
            (
                "log_level = \"loud\"",
                "log_level: unknown level \"loud\"",
                1,
            ),
            (
                "inline = \"eth1,eth2\"",
                "inline: expected an array of two port names",
                1,
            ),
            (
                "inline = [\"eth1\"]",
                "inline: expected an array of two port names",
                1,
            ),
            (
                "inline = [\"eth1\", \"eth1\"]",
                "inline: expected two different ports",
                1,
            ),
            ("tap = \"\"", "tap: expected a port name", 1),
            (
                "tap = \"a\"\ninline = [\"b\", \"c\"]",
                "tap: give either inline or tap",
                1,
            ),
            ("state_dir = \"\"", "state_dir: expected a path", 1),
            (
                "replace_foreign_xdp = \"yes\"",
                "replace_foreign_xdp: expected a boolean",
                1,
            ),
            ("tap = \"a\"\ntap = \"b\"", "duplicate key", 2),
            ("tap = ", "", 1),
        ] {
            let (e, line) = err(text);
            assert!(e.contains(needle), "{text:?}: {e}");
            assert_eq!(line, Some(want_line), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let e = ConfigFile::load(Path::new("/nonexistent/rstwall.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config file /nonexistent/rstwall.toml: cannot read it"),
            "{e}"
        );
    }

    #[test]
    fn the_sample_config_is_valid_and_sets_what_it_documents() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/rstwall.toml");
        let c = ConfigFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.topology.is_some(), "the sample names its ports");
        assert_eq!(
            c.metrics_listen,
            Some(value::metrics_listen(DEFAULT_METRICS_LISTEN).unwrap())
        );
        assert_eq!(c.state_dir.as_deref(), Some(Path::new(DEFAULT_STATE_DIR)));
        assert_eq!(
            c.policy.as_deref(),
            Some(Path::new("/etc/rstwall/policy.toml"))
        );
        // Every key of the raw struct appears in the sample, commented.
        let text = std::fs::read_to_string(&path).unwrap();
        let shows = |key: &str| {
            text.lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} =")))
        };
        for key in KEYS.iter().filter(|k| **k != "export") {
            assert!(shows(key), "dist/rstwall.toml does not show `{key}`");
        }
        assert!(
            text.lines()
                .any(|l| l.trim_start_matches("# ") == "[export.nats]"),
            "dist/rstwall.toml does not show [export.nats]"
        );
        for key in crate::export::NATS_KEYS {
            assert!(
                shows(key),
                "dist/rstwall.toml does not show export.nats.{key}"
            );
        }
    }

    #[test]
    fn the_sample_policy_is_the_default_policy() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/policy.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let p = rstwall_engine::policy::PolicyConfig::from_toml_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(p, rstwall_engine::policy::PolicyConfig::default());
    }

    /// Every key, for the sample test (kept in step with `RawConfig`: a key
    /// missing here is missing from the `unknown field` message test below).
    const KEYS: [&str; 22] = [
        "inline",
        "tap",
        "host",
        "xdp_mode",
        "xsk_mode",
        "poll",
        "busy_poll_usecs",
        "busy_poll_budget",
        "queues",
        "flow_capacity",
        "stats_interval",
        "stats_json",
        "metrics_listen",
        "control_socket",
        "control_group",
        "state_dir",
        "log_level",
        "policy",
        "replace_foreign_xdp",
        "rst_guard",
        "tap_host_interface",
        "export",
    ];

    #[test]
    fn the_key_list_is_complete() {
        let (e, _) = err("nope = 1");
        let listed = e.matches('`').count() / 2 - 1;
        assert_eq!(listed, KEYS.len(), "{e}");
        for key in KEYS {
            assert!(e.contains(&format!("`{key}`")), "{key} missing in {e}");
        }
    }
}
