//! A typed client of the control API: one request per connection to the
//! daemon's Unix socket, each answer read into its document, and the
//! daemon's refusals as [`Failure`]s with the exit status they deserve
//! (2 for a 4xx, 1 otherwise).

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use ipnet::IpNet;
use rstwall_engine::telemetry::Snapshot;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::route::{CaptureQuery, FlowsQuery, Route};
use crate::{
    http, Alerts, BlockAdd, BlockAdded, BlockList, BlockRemoved, ErrorDoc, Failure, Flows,
    PolicyBody, PolicyChange, PolicyDiff, PolicySet, PolicyShow, Stats, Status,
};

/// The largest answer a client reads (a long flow list fits).
const MAX_REPLY: usize = 256 << 20;
/// How long a client waits for an answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A client of the daemon listening on one socket.
#[derive(Clone, Debug)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    /// A client of the daemon listening on `socket`.
    pub fn at(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Status, Failure> {
        self.call(&Route::Status, None::<&()>)
    }

    /// `GET /v1/stats`: the `--stats-json` document.
    pub fn stats(&self) -> Result<Stats, Failure> {
        self.call(&Route::Stats, None::<&()>)
    }

    /// `GET /v1/telemetry?top=N`: top lists, per-second history, alerts.
    pub fn telemetry(&self, top: usize) -> Result<Snapshot, Failure> {
        self.call(&Route::Telemetry { top }, None::<&()>)
    }

    /// `GET /v1/flows`.
    pub fn flows(&self, query: FlowsQuery) -> Result<Flows, Failure> {
        self.call(&Route::Flows(query), None::<&()>)
    }

    /// `GET /v1/alerts`.
    pub fn alerts(&self) -> Result<Alerts, Failure> {
        self.call(&Route::Alerts, None::<&()>)
    }

    /// `GET /v1/policy`.
    pub fn policy(&self) -> Result<PolicyShow, Failure> {
        self.call(&Route::Policy, None::<&()>)
    }

    /// `POST /v1/policy/set`: `KEY=VALUE` assignments, applied together.
    pub fn policy_set(&self, assignments: Vec<String>) -> Result<PolicyChange, Failure> {
        self.call(&Route::PolicySet, Some(&PolicySet { set: assignments }))
    }

    /// `PUT /v1/policy`: replace the policy with a policy file's text.
    pub fn policy_apply(&self, toml: String) -> Result<PolicyChange, Failure> {
        self.call(&Route::PolicyApply, Some(&PolicyBody { toml }))
    }

    /// `POST /v1/policy/diff`: what [`Client::policy_apply`] would change.
    pub fn policy_diff(&self, toml: String) -> Result<PolicyDiff, Failure> {
        self.call(&Route::PolicyDiff, Some(&PolicyBody { toml }))
    }

    /// `GET /v1/blocks`.
    pub fn blocks(&self) -> Result<BlockList, Failure> {
        self.call(&Route::Blocks, None::<&()>)
    }

    /// `POST /v1/blocks`.
    pub fn block_add(&self, block: &BlockAdd) -> Result<BlockAdded, Failure> {
        self.call(&Route::BlockAdd, Some(block))
    }

    /// `DELETE /v1/blocks?cidr=C`.
    pub fn block_del(&self, cidr: IpNet) -> Result<BlockRemoved, Failure> {
        self.call(&Route::BlockDel { cidr }, None::<&()>)
    }

    /// `GET /v1/capture`: the pcap stream, once the daemon has accepted.
    pub fn capture(&self, query: CaptureQuery) -> Result<CaptureStream, Failure> {
        let route = Route::Capture(query);
        let mut stream = self.send(&route, None::<&()>)?;
        let reply = http::read_reply(&mut stream, false, 0).map_err(reading)?;
        if reply.status != 200 {
            let mut reply = reply;
            let _ = stream.read_to_end(&mut reply.body);
            return Err(refusal(&reply));
        }
        Ok(CaptureStream {
            stream,
            head: io::Cursor::new(reply.body),
        })
    }

    /// A connection to the daemon; the failure says why there is none.
    pub fn connect(&self) -> Result<UnixStream, Failure> {
        UnixStream::connect(&self.socket).map_err(|e| {
            let path = self.socket.display();
            Failure::runtime(match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => anyhow!(
                    "no rstwall daemon is running: nothing answers on {path} (start one with \
                     `rstwall run`, or give its control socket with --socket)"
                ),
                io::ErrorKind::PermissionDenied => anyhow!(
                    "permission denied on {path}: the control API admits root and the \
                     daemon's control_group only"
                ),
                _ => anyhow!("cannot reach the daemon on {path}: {e}"),
            })
        })
    }

    /// One request and its answer, read into `T`.
    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        route: &Route,
        body: Option<&B>,
    ) -> Result<T, Failure> {
        let mut stream = self.send(route, body)?;
        let reply = http::read_reply(&mut stream, true, MAX_REPLY).map_err(reading)?;
        if reply.status != 200 {
            return Err(refusal(&reply));
        }
        serde_json::from_slice(&reply.body).map_err(|e| {
            Failure::runtime(anyhow!(
                "the daemon's answer to {} {}: {e}",
                route.method(),
                route.path()
            ))
        })
    }

    fn send<B: Serialize>(&self, route: &Route, body: Option<&B>) -> Result<UnixStream, Failure> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| Failure::runtime(anyhow!("the request's body: {e}")))?;
        let mut stream = self.connect()?;
        let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
        http::send_request(
            &mut stream,
            route.method(),
            &route.target(),
            bytes.as_deref(),
        )
        .map_err(|e| Failure::runtime(anyhow!("sending the request: {e}")))?;
        Ok(stream)
    }
}

fn reading(e: io::Error) -> Failure {
    Failure::runtime(anyhow!("reading the daemon's answer: {e}"))
}

/// The daemon's refusal: exit status 2 for a 4xx (the request was wrong),
/// 1 otherwise.
fn refusal(reply: &http::Reply) -> Failure {
    let message = match serde_json::from_slice::<ErrorDoc>(&reply.body) {
        Ok(doc) => doc.error,
        Err(_) => match String::from_utf8_lossy(&reply.body).trim() {
            text if !text.is_empty()
                && serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() =>
            {
                text.to_string()
            }
            _ => format!("HTTP {}", reply.status),
        },
    };
    let e = anyhow!("the daemon refused: {message}");
    if (400..500).contains(&reply.status) {
        Failure::usage(e)
    } else {
        Failure::runtime(e)
    }
}

/// A capture the daemon accepted: its pcap byte stream, from the file
/// header on, until the capture ends.
pub struct CaptureStream {
    stream: UnixStream,
    /// What arrived with the answer's head.
    head: io::Cursor<Vec<u8>>,
}

impl CaptureStream {
    /// How long a read waits (`None`: until bytes arrive or the stream
    /// ends); a read that times out fails with `WouldBlock` or `TimedOut`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }
}

impl Read for CaptureStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.head.read(buf)? {
            0 => self.stream.read(buf),
            n => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{respond, Response};

    fn refused_with(status: u16, body: &str) -> Failure {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        respond(
            &mut a,
            &Response::new(status, "application/json", body),
            false,
        )
        .unwrap();
        drop(a);
        refusal(&http::read_reply(&mut b, true, 1 << 20).unwrap())
    }

    #[test]
    fn refusals_become_failures_with_their_exit_status() {
        let f = refused_with(400, "{\"error\": \"set: give at least one KEY=VALUE\"}\n");
        assert_eq!(f.status, 2);
        assert_eq!(
            f.error.to_string(),
            "the daemon refused: set: give at least one KEY=VALUE"
        );
        let f = refused_with(504, "{\"error\": \"the daemon did not answer in time\"}");
        assert_eq!(f.status, 1);
        assert_eq!(
            refused_with(503, "busy\n").error.to_string(),
            "the daemon refused: busy"
        );
        assert_eq!(
            refused_with(500, "{}").error.to_string(),
            "the daemon refused: HTTP 500"
        );
    }

    #[test]
    fn nothing_listening_is_said_in_one_line() {
        let f = Client::at("/nonexistent/rstwall.sock")
            .status()
            .unwrap_err();
        assert_eq!(f.status, 1);
        let msg = f.error.to_string();
        assert!(msg.starts_with("no rstwall daemon is running"), "{msg}");
        assert_eq!(msg.lines().count(), 1);
    }
}
