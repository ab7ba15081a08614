//! A client of the control API: one request per connection to the
//! daemon's Unix socket, the JSON answer back, and the daemon's refusals
//! as [`Failure`]s with the exit status they deserve.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::{json, Value};

use crate::http;
use crate::Failure;

/// The largest answer a client reads (a long flow list fits).
const MAX_REPLY: usize = 256 << 20;

/// A connection factory for one daemon.
pub struct Client<'a> {
    socket: &'a Path,
}

impl<'a> Client<'a> {
    /// A client of the daemon listening on `socket`.
    pub fn at(socket: &'a Path) -> Client<'a> {
        Client { socket }
    }

    pub fn connect(&self) -> Result<UnixStream, Failure> {
        UnixStream::connect(self.socket).map_err(|e| {
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

    /// One request; the JSON answer, or the daemon's error as a failure
    /// (exit 2 for a 4xx, 1 otherwise).
    pub fn call(&self, method: &str, target: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let mut s = self.connect()?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let bytes = body.map(|b| serde_json::to_vec(b).expect("json"));
        http::send_request(&mut s, method, target, bytes.as_deref())
            .map_err(|e| Failure::runtime(anyhow!("sending the request: {e}")))?;
        let reply = http::read_reply(&mut s, true, MAX_REPLY)
            .map_err(|e| Failure::runtime(anyhow!("reading the daemon's answer: {e}")))?;
        decode(reply)
    }
}

pub fn decode(reply: http::Reply) -> Result<Value, Failure> {
    let v: Value = serde_json::from_slice(&reply.body).unwrap_or_else(
        |_| json!({ "error": String::from_utf8_lossy(&reply.body).trim().to_string() }),
    );
    if reply.status == 200 {
        return Ok(v);
    }
    let msg = v["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {}", reply.status));
    let e = anyhow!("the daemon refused: {msg}");
    Err(if (400..500).contains(&reply.status) {
        Failure::usage(e)
    } else {
        Failure::runtime(e)
    })
}
