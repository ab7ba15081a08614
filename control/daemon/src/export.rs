//! The fleet exporter in the daemon: the `[export.nats]` table of the
//! config file, checked like every other key, and the exporter's turn in
//! the main loop (alert changes, a summary a second, its state for
//! `status` and the metrics). The exporter itself is `rstwall-export`.
//!
//! ```toml
//! [export.nats]
//! servers = ["nats://10.0.0.5:4222", "nats://10.0.0.6:4222"]
//! node = "gw-1"                 # default: the host name
//! subject_prefix = "rstwall"    # rstwall.gw-1.events / .alerts / .summary
//! stream = "RSTWALL"            # the node's stream: RSTWALL_gw-1
//! replicas = 3                  # create it with 3 replicas; 0: never create it
//! credentials = "/etc/rstwall/nats.creds"  # or user + password, or token
//! tls_ca = "/etc/rstwall/nats-ca.pem"
//! spool_bytes = 268435456
//! queue = 65536
//! ```

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rstwall_api::fleet::{FleetAlert, FleetSummary};
use rstwall_engine::telemetry::AlertEvent;
use rstwall_export::config::{value, DEFAULT_QUEUE, DEFAULT_SPOOL_BYTES};
use rstwall_export::{Credentials, Exporter, NatsConfig, Outgoing, Tls};
use serde::Deserialize;
use toml::{Spanned, Value};

use crate::config::{field, string, Located};

/// `[export]`: one table per kind of exporter (NATS only, today).
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawExport {
    nats: Option<Spanned<RawNats>>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawNats {
    servers: Option<Spanned<Value>>,
    node: Option<Spanned<Value>>,
    subject_prefix: Option<Spanned<Value>>,
    stream: Option<Spanned<Value>>,
    replicas: Option<Spanned<Value>>,
    credentials: Option<Spanned<Value>>,
    user: Option<Spanned<Value>>,
    password: Option<Spanned<Value>>,
    token: Option<Spanned<Value>>,
    tls_required: Option<Spanned<Value>>,
    tls_ca: Option<Spanned<Value>>,
    tls_cert: Option<Spanned<Value>>,
    tls_key: Option<Spanned<Value>>,
    spool_bytes: Option<Spanned<Value>>,
    queue: Option<Spanned<Value>>,
}

/// Every key of `[export.nats]` (for the sample-config test).
pub const NATS_KEYS: [&str; 15] = [
    "servers",
    "node",
    "subject_prefix",
    "stream",
    "replicas",
    "credentials",
    "user",
    "password",
    "token",
    "tls_required",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "spool_bytes",
    "queue",
];

/// `[export.nats]`, checked; the spool's directory comes from the state
/// directory and the node's name, when the file does not give it, from
/// the host name ([`NatsFile::config`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NatsFile {
    pub servers: Vec<String>,
    pub node: Option<String>,
    pub subject_prefix: Option<String>,
    pub stream: Option<String>,
    /// `Some(0)`: never create the stream.
    pub replicas: Option<usize>,
    pub credentials: Credentials,
    pub tls: Tls,
    pub spool_bytes: Option<u64>,
    pub queue: Option<usize>,
}

fn int(v: &Value) -> Option<i64> {
    v.as_integer()
}

impl RawExport {
    pub(crate) fn validate(self, base: &Path) -> Result<Option<NatsFile>, Located> {
        let Some(nats) = self.nats else {
            return Ok(None);
        };
        let table_span = nats.span();
        let n = nats.into_inner();
        let file_path = |key: &'static str| {
            move |s: String| {
                let p = base.join(PathBuf::from(&s));
                if s.is_empty() {
                    return Err("expected a path, got an empty string".to_string());
                }
                value::readable_file(&p).map_err(|e| format!("{e} ({key})"))
            }
        };
        let servers =
            match n.servers {
                None => {
                    return Err((
                        table_span,
                        "export.nats.servers: missing: the NATS servers to send to".into(),
                    ))
                }
                Some(v) => {
                    let span = v.span();
                    let list: Option<Vec<&str>> = v
                        .get_ref()
                        .as_array()
                        .and_then(|a| a.iter().map(Value::as_str).collect());
                    match list {
                        Some(l) if !l.is_empty() => l
                            .into_iter()
                            .map(value::server)
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|m| (span, format!("export.nats.servers: {m}")))?,
                        _ => return Err((
                            span,
                            "export.nats.servers: expected a non-empty array of nats://HOST:PORT"
                                .into(),
                        )),
                    }
                }
            };
        let spans: Vec<Range<usize>> = [&n.credentials, &n.user, &n.token]
            .iter()
            .filter_map(|v| v.as_ref().map(Spanned::span))
            .collect();
        let credentials_file = field(
            "export.nats.credentials",
            n.credentials,
            "a path",
            string,
            file_path("a .creds file"),
        )?;
        let user = field("export.nats.user", n.user, "a string", string, Ok)?;
        let password_span = n.password.as_ref().map(Spanned::span);
        let password = field("export.nats.password", n.password, "a string", string, Ok)?;
        let token = field("export.nats.token", n.token, "a string", string, |t| {
            if t.is_empty() {
                Err("expected a token, got an empty string".to_string())
            } else {
                Ok(t)
            }
        })?;
        if spans.len() > 1 {
            return Err((
                spans[1].clone(),
                "export.nats: give one of credentials, user (with password) and token".into(),
            ));
        }
        let credentials = match (credentials_file, user, password, token) {
            (_, Some(_), None, _) => {
                return Err((
                    spans[0].clone(),
                    "export.nats.user: needs export.nats.password".into(),
                ))
            }
            (_, None, Some(_), _) => {
                return Err((
                    password_span.expect("password given"),
                    "export.nats.password: needs export.nats.user".into(),
                ))
            }
            (Some(f), _, _, _) => Credentials::File(f),
            (_, Some(user), Some(password), _) => Credentials::UserPassword { user, password },
            (_, _, _, Some(t)) => Credentials::Token(t),
            _ => Credentials::None,
        };
        let cert_span = n
            .tls_cert
            .as_ref()
            .or(n.tls_key.as_ref())
            .map(Spanned::span);
        let cert = field(
            "export.nats.tls_cert",
            n.tls_cert,
            "a path",
            string,
            file_path("a PEM certificate"),
        )?;
        let key = field(
            "export.nats.tls_key",
            n.tls_key,
            "a path",
            string,
            file_path("a PEM key"),
        )?;
        let client = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err((
                    cert_span.expect("one was given"),
                    "export.nats: give both tls_cert and tls_key, or neither".into(),
                ))
            }
        };
        let tls = Tls {
            required: field(
                "export.nats.tls_required",
                n.tls_required,
                "a boolean",
                Value::as_bool,
                Ok,
            )?
            .unwrap_or(false),
            ca: field(
                "export.nats.tls_ca",
                n.tls_ca,
                "a path",
                string,
                file_path("PEM roots"),
            )?,
            client,
        };
        Ok(Some(NatsFile {
            servers,
            node: field("export.nats.node", n.node, "a string", string, |s| {
                value::node(&s)
            })?,
            subject_prefix: field(
                "export.nats.subject_prefix",
                n.subject_prefix,
                "a string",
                string,
                |s| value::subject_prefix(&s),
            )?,
            stream: field("export.nats.stream", n.stream, "a string", string, |s| {
                value::stream(&s)
            })?,
            replicas: field("export.nats.replicas", n.replicas, "an integer", int, |r| {
                if r == 0 {
                    Ok(0)
                } else {
                    value::replicas(r)
                }
            })?,
            credentials,
            tls,
            spool_bytes: field(
                "export.nats.spool_bytes",
                n.spool_bytes,
                "an integer",
                int,
                value::spool_bytes,
            )?,
            queue: field(
                "export.nats.queue",
                n.queue,
                "an integer",
                int,
                value::queue,
            )?,
        }))
    }
}

impl NatsFile {
    /// The exporter's settings: the spool in `<state_dir>/export-spool`.
    pub fn config(&self, state_dir: &Path) -> NatsConfig {
        let mut c = NatsConfig::new(
            self.servers.clone(),
            self.node.clone().unwrap_or_else(host_node),
            state_dir.join("export-spool"),
        );
        c.credentials = self.credentials.clone();
        c.tls = self.tls.clone();
        if let Some(p) = &self.subject_prefix {
            c.subject_prefix = p.clone();
        }
        if let Some(s) = &self.stream {
            c.stream = s.clone();
        }
        c.create_stream = match self.replicas {
            Some(0) => None,
            Some(r) => Some(r),
            None => Some(1),
        };
        c.spool_bytes = self.spool_bytes.unwrap_or(DEFAULT_SPOOL_BYTES);
        c.queue = self.queue.unwrap_or(DEFAULT_QUEUE);
        c
    }
}

/// The host name as a subject token: other characters become `-`.
fn host_node() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let token: String = name
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if token.is_empty() {
        "rstwall".into()
    } else {
        token
    }
}

/// How often the main loop sends the node's summary.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);

/// The exporter as the main loop drives it.
pub struct Export {
    exporter: Exporter,
    next_summary: Instant,
}

impl Export {
    pub fn new(exporter: Exporter) -> Export {
        Export {
            exporter,
            next_summary: Instant::now(),
        }
    }

    pub fn exporter(&self) -> &Exporter {
        &self.exporter
    }

    /// Hand over the alert changes; once a second, the summary `summary`
    /// makes (given the exporter's state, so that it reports it too).
    pub fn turn(
        &mut self,
        alerts: &[AlertEvent],
        now: Instant,
        summary: impl FnOnce(&rstwall_api::fleet::ExportStatus) -> FleetSummary,
    ) {
        let outbox = self.exporter.outbox();
        for a in alerts {
            outbox.send(Outgoing::Alert(FleetAlert::of_event(a)));
        }
        if now >= self.next_summary {
            self.next_summary = now + SUMMARY_EVERY;
            outbox.send(Outgoing::Summary(summary(&self.exporter.status())));
        }
    }

    /// Flush for a moment, spool the rest.
    pub fn stop(self) {
        self.exporter.stop();
    }
}

/// The node's summary: its totals since it started, and the exporter's.
pub fn summary<S: crate::source::SourceView>(
    m: &crate::monitor::Monitor<S>,
    e: &rstwall_api::fleet::ExportStatus,
) -> FleetSummary {
    let c = m.totals().counters;
    FleetSummary {
        ts: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
        uptime_s: m.uptime().as_secs_f64(),
        frames: c.frames,
        tcp: c.tcp,
        rst: rstwall_api::ByName::from_fn(|class| c.rst_total(class)),
        dropped: c.dropped,
        would_drop: c.would_drop,
        events: c.rst_classes.iter().flatten().sum(),
        events_dropped: e.dropped,
        spooled: e.spool_messages,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ConfigFile;
    use std::path::Path;

    fn parse(text: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(text, Path::new("/etc/rstwall/rstwall.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_nats_table_is_read_with_its_defaults() {
        let c = parse("[export.nats]\nservers = [\"nats://10.0.0.5:4222\"]\nnode = \"gw-1\"\nreplicas = 3\nuser = \"u\"\npassword = \"p\"\n")
            .unwrap();
        let n = c.export_nats.expect("the table");
        let cfg = n.config(Path::new("/var/lib/rstwall"));
        assert_eq!(cfg.servers, ["nats://10.0.0.5:4222"]);
        assert_eq!(cfg.stream_name(), "RSTWALL_gw-1");
        assert_eq!(cfg.subject("events"), "rstwall.gw-1.events");
        assert_eq!(cfg.create_stream, Some(3));
        assert_eq!(cfg.spool_dir, Path::new("/var/lib/rstwall/export-spool"));
        assert_eq!(
            cfg.credentials,
            rstwall_export::Credentials::UserPassword {
                user: "u".into(),
                password: "p".into()
            }
        );
        assert!(parse("").unwrap().export_nats.is_none());
    }

    #[test]
    fn bad_nats_keys_are_named_with_their_line() {
        for (text, needle, line) in [
            (
                "[export.nats]\nnode = \"a\"",
                "export.nats.servers: missing",
                1,
            ),
            (
                "[export.nats]\nservers = []",
                "export.nats.servers: expected a non-empty",
                2,
            ),
            (
                "[export.nats]\nservers = [\"http://x/\"]",
                "is not a server",
                2,
            ),
            (
                "[export.nats]\nservers = [\"h:1\"]\nnode = \"a.b\"",
                "export.nats.node:",
                3,
            ),
            (
                "[export.nats]\nservers = [\"h:1\"]\nreplicas = 9",
                "export.nats.replicas: 1 to 5",
                3,
            ),
            (
                "[export.nats]\nservers = [\"h:1\"]\nqueue = \"big\"",
                "export.nats.queue: expected an integer",
                3,
            ),
            (
                "[export.nats]\nservers = [\"h:1\"]\nspool_bytes = 10",
                "export.nats.spool_bytes: at least",
                3,
            ),
            (
                "[export.nats]\nservers = [\"h:1\"]\ncredentials = \"/nonexistent.creds\"",
                "cannot read /nonexistent.creds",
                3,
            ),
            (
                "[export.nats]\nservers = [\"h:1\"]\nuser = \"u\"",
                "needs export.nats.password",
                3,
            ),
            (
                "[export.nats]\nservers = [\"h:1\"]\npassword = \"p\"",
                "needs export.nats.user",
                3,
            ),
            (
                "[export.nats]\nservers = [\"h:1\"]\nuser = \"u\"\npassword = \"p\"\ntoken = \"t\"",
                "give one of credentials",
                5,
            ),
            (
                "[export.nats]\nservers = [\"h:1\"]\ntls_cert = \"/etc/hostname\"",
                "both tls_cert and tls_key",
                3,
            ),
            (
                "[export.nats]\nservers = [\"h:1\"]\ntls_ca = \"/nonexistent.pem\"",
                "export.nats.tls_ca: cannot read",
                3,
            ),
            (
                "[export.nats]\nservers = [\"h:1\"]\nsubjects = 1",
                "unknown field `subjects`",
                3,
            ),
            ("[export.kafka]\nbrokers = 1", "unknown field `kafka`", 1),
        ] {
            let e = parse(text).expect_err(text);
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains(&format!("line {line},")), "{text:?}: {e}");
        }
    }
}
