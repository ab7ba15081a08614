//! Prometheus and Alertmanager in the tests: the HTTP GET the tests ask
//! them (and rstwall's metrics endpoint) with from inside a namespace, and
//! the servers a test starts (moved from tests/integration/daemon.rs,
//! which uses them too).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use crate::lab::in_ns;

/// One HTTP/1.1 GET from inside namespace `ns`: (status, headers, body).
pub fn http_get(ns: &str, addr: SocketAddr, target: &str, accept: &str) -> (u16, String, String) {
    try_http_get(ns, addr, target, accept)
        .unwrap_or_else(|e| panic!("GET http://{addr}{target}: {e}"))
}

pub fn try_http_get(
    ns: &str,
    addr: SocketAddr,
    target: &str,
    accept: &str,
) -> std::io::Result<(u16, String, String)> {
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    let raw = in_ns(ns, move || -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(request.as_bytes())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    })?;
    let bad = |what: &str| std::io::Error::other(format!("bad response: {what}"));
    let text = String::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| bad("no head"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, head.to_string(), body))
}

/// A chunked body, joined.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// `[0-9A-Za-z]` and a few safe marks as they are, everything else %XX.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A server a test started (Prometheus, Alertmanager), killed on drop.
pub struct Service {
    pub child: Child,
    pub log: PathBuf,
}

impl Service {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn which(program: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} not found: install Debian's `prometheus` package (scripts/setup does)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A port free on namespace `ns`'s loopback now.
pub fn free_port(ns: &str) -> u16 {
    in_ns(ns, || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    })
}

/// Start `program ARGS` in namespace `ns`, its output in `log`.
pub fn start_in_ns(ns: &str, program: &std::path::Path, args: &[String], log: PathBuf) -> Service {
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    Service { child, log }
}

/// An instant query to the Prometheus at `web` in namespace `ns`: its
/// result vector, or `None` while it cannot answer.
pub fn query(ns: &str, web: SocketAddr, q: &str) -> Option<Vec<serde_json::Value>> {
    let target = format!("/api/v1/query?query={}", url_encode(q));
    let (status, _, body) = try_http_get(ns, web, &target, "application/json").ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200 && v["status"] == "success")
        .then(|| v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// A tiny HTTP listener in a namespace that takes POSTs (Alertmanager's
/// webhook notifications) and hands their bodies over.
pub struct Webhook {
    pub addr: SocketAddr,
    pub bodies: std::sync::mpsc::Receiver<String>,
}

impl Webhook {
    pub fn start(ns: &str) -> Webhook {
        let listener = in_ns(ns, || std::net::TcpListener::bind("127.0.0.1:0")).expect("webhook");
        let addr = listener.local_addr().expect("bound");
        let (tx, bodies) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let Some(body) = read_post(&mut conn) else {
                    continue;
                };
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                if tx.send(body).is_err() {
                    return;
                }
            }
        });
        Webhook { addr, bodies }
    }
}

/// One request's body (by its Content-Length).
fn read_post(conn: &mut TcpStream) -> Option<String> {
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return Some(body[..len].to_string());
            }
        }
    }
}
