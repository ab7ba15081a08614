//! The exporter's settings (`[export.nats]` in the daemon's config file)
//! and the checks of each value; the daemon's config reader puts the key
//! and its line before a message.

use std::path::PathBuf;
use std::time::Duration;

/// Subject prefix when the file sets none: `rstwall.<node>.events`.
pub const DEFAULT_SUBJECT_PREFIX: &str = "rstwall";
/// Stream name when the file sets none.
pub const DEFAULT_STREAM: &str = "RSTWALL";
/// Spool capacity when the file sets none.
pub const DEFAULT_SPOOL_BYTES: u64 = 256 << 20;
/// Messages waiting in memory before they go to the spool.
pub const DEFAULT_QUEUE: usize = 65_536;

/// How the exporter proves who it is to the servers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Credentials {
    #[default]
    None,
    /// A `.creds` file (JWT and NKey seed), as `nsc` writes it.
    File(PathBuf),
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
}

/// TLS towards the servers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tls {
    /// Refuse a server that does not speak TLS.
    pub required: bool,
    /// PEM roots to trust (else the system's).
    pub ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), both or neither.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The exporter's settings, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct NatsConfig {
    /// `nats://host:port` (or `tls://`), at least one.
    pub servers: Vec<String>,
    pub credentials: Credentials,
    pub tls: Tls,
    /// Subjects are `<prefix>.<node>.events` (`.alerts`, `.summary`).
    pub subject_prefix: String,
    /// The node's name in subjects and messages.
    pub node: String,
    /// The node's JetStream stream is `<stream>_<node>` (see
    /// [`NatsConfig::stream_name`]).
    pub stream: String,
    /// Create the node's stream (`<prefix>.<node>.>`) when it does not
    /// exist, with this many replicas; `None`: the operator manages it.
    pub create_stream: Option<usize>,
    /// The spool's directory and capacity.
    pub spool_dir: PathBuf,
    pub spool_bytes: u64,
    /// Messages waiting in memory (and records in the workers' hand-off).
    pub queue: usize,
    /// How long a publish waits for the stream's acknowledgement.
    pub ack_timeout: Duration,
}

impl NatsConfig {
    /// `servers` with every other setting at its default.
    pub fn new(servers: Vec<String>, node: String, spool_dir: PathBuf) -> NatsConfig {
        NatsConfig {
            servers,
            credentials: Credentials::None,
            tls: Tls::default(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.into(),
            node,
            stream: DEFAULT_STREAM.into(),
            create_stream: None,
            spool_dir,
            spool_bytes: DEFAULT_SPOOL_BYTES,
            queue: DEFAULT_QUEUE,
            ack_timeout: Duration::from_secs(2),
        }
    }

    /// The node's own stream, `<stream>_<node>`: one per node, because
    /// every message names its predecessor's id (`Nats-Expected-Last-Msg-Id`)
    /// and the stream stores it only right after that one — which keeps a
    /// node's messages in order through broker failures, and holds only
    /// within a stream the node alone writes to. A fleet-wide view is a
    /// stream that sources the nodes' streams, or a subscription to
    /// `<prefix>.*.events`.
    pub fn stream_name(&self) -> String {
        format!("{}_{}", self.stream, self.node)
    }

    /// `<prefix>.<node>.<kind>`.
    pub fn subject(&self, kind: &str) -> String {
        format!("{}.{}.{kind}", self.subject_prefix, self.node)
    }
}

/// The value checks.
pub mod value {
    /// `nats://host:port`, `tls://host:port` or `host:port`.
    pub fn server(s: &str) -> Result<String, String> {
        let rest = s
            .strip_prefix("nats://")
            .or_else(|| s.strip_prefix("tls://"))
            .unwrap_or(s);
        let ok = rest.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if ok && !rest.contains('/') {
            Ok(s.to_string())
        } else {
            Err(format!(
                "{s:?} is not a server: expected nats://HOST:PORT or tls://HOST:PORT"
            ))
        }
    }

    /// One subject token: the node, the prefix's parts.
    fn token(s: &str) -> bool {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    }

    pub fn node(s: &str) -> Result<String, String> {
        if token(s) && s.len() <= 64 {
            Ok(s.to_string())
        } else {
            Err(format!(
                "{s:?} is not a node name: letters, digits, - and _ (one subject token), at most 64"
            ))
        }
    }

    pub fn subject_prefix(s: &str) -> Result<String, String> {
        if s.split('.').all(token) {
            Ok(s.to_string())
        } else {
            Err(format!(
                "{s:?} is not a subject prefix: dot-separated tokens of letters, digits, - and _"
            ))
        }
    }

    pub fn stream(s: &str) -> Result<String, String> {
        if token(s) && s.len() <= 255 {
            Ok(s.to_string())
        } else {
            Err(format!(
                "{s:?} is not a stream name: letters, digits, - and _"
            ))
        }
    }

    pub fn replicas(n: i64) -> Result<usize, String> {
        match n {
            1..=5 => Ok(n as usize),
            _ => Err(format!("1 to 5 replicas (got {n})")),
        }
    }

    /// At least one segment.
    pub fn spool_bytes(n: i64) -> Result<u64, String> {
        match u64::try_from(n) {
            Ok(b) if b >= crate::spool::SEGMENT_BYTES => Ok(b),
            _ => Err(format!(
                "at least {} bytes (one segment; got {n})",
                crate::spool::SEGMENT_BYTES
            )),
        }
    }

    pub fn queue(n: i64) -> Result<usize, String> {
        match usize::try_from(n) {
            Ok(q) if (16..=16 << 20).contains(&q) => Ok(q),
            _ => Err(format!("16 to {} messages (got {n})", 16 << 20)),
        }
    }

    /// A file that must exist and be readable now (credentials, TLS).
    pub fn readable_file(p: &std::path::Path) -> Result<std::path::PathBuf, String> {
        match std::fs::File::open(p) {
            Ok(_) => Ok(p.to_path_buf()),
            Err(e) => Err(format!("cannot read {}: {e}", p.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::value::*;

    #[test]
    fn values_are_checked() {
        assert!(server("nats://127.0.0.1:4222").is_ok());
        assert!(server("tls://nats.example:4443").is_ok());
        assert!(server("127.0.0.1:4222").is_ok());
        for bad in [
            "",
            "nats://",
            "nats://h",
            "nats://h:0",
            "http://h:1/x",
            "h:99999",
        ] {
            assert!(server(bad).is_err(), "{bad:?}");
        }
        assert!(node("gw-1").is_ok());
        for bad in ["", "gw.1", "gw 1", "*", ">"] {
            assert!(node(bad).is_err(), "{bad:?}");
        }
        assert!(subject_prefix("acme.rstwall").is_ok());
        for bad in ["", "a..b", "a.*", ".a"] {
            assert!(subject_prefix(bad).is_err(), "{bad:?}");
        }
        assert!(stream("RSTWALL").is_ok() && stream("A.B").is_err());
        assert_eq!(replicas(3), Ok(3));
        assert!(replicas(0).is_err() && replicas(6).is_err());
        assert!(spool_bytes(1).is_err() && spool_bytes(1 << 30).is_ok());
        assert!(queue(1).is_err() && queue(1024).is_ok());
        assert!(readable_file(std::path::Path::new("/nonexistent/x.creds")).is_err());
    }
}
