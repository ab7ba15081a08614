//! The HTTP server of the metrics endpoint.
//!
//! A std `TcpListener` on its own thread, one short-lived thread per
//! connection (at most [`MAX_CONNECTIONS`] at once; beyond that: 503), one
//! request per connection. Requests are bounded ([`MAX_REQUEST`] bytes of
//! head, [`REQUEST_DEADLINE`] to send it). `GET` or `HEAD` on `/metrics`
//! answer; any other path is 404, any other method on `/metrics` 405.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rstwall_api::http::{self, Request, Response};

use super::{Format, Metrics};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// The most bytes of request head read (request line and headers).
pub const MAX_REQUEST: usize = 8192;
/// The time a client has to send its request head.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// The `/metrics` endpoint, served until dropped.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind `listen` now (so a busy address fails the start) and serve on
    /// a thread.
    pub fn start(listen: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<Server> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rstwall-metrics".into())
            .spawn(move || accept_loop(listener, metrics, stopping))?;
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocked accept() with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>, stop: Arc<AtomicBool>) {
    let busy = Response::text(503, "too many connections\n");
    let handle = Arc::new(move |stream: TcpStream| serve(stream, &metrics));
    http::accept_loop(
        listener.incoming(),
        "rstwall-metrics",
        MAX_CONNECTIONS,
        &stop,
        &busy,
        handle,
    );
}

/// Answer one request. `HEAD` gets the headers of `GET`, without the
/// body: the caller leaves it out.
pub fn answer(req: &Request, metrics: &Metrics) -> (Response, bool) {
    if req.path != "/metrics" {
        return (
            Response::text(404, "not found: the metrics are at /metrics\n"),
            false,
        );
    }
    let head_only = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let r = Response::text(405, "method not allowed: GET /metrics\n")
                .with_header("Allow", "GET, HEAD");
            return (r, false);
        }
    };
    let format = Format::negotiate(req.header("accept"));
    (
        Response::new(200, format.content_type(), metrics.render(format)),
        head_only,
    )
}

const LIMITS: http::Limits = http::Limits {
    max_head: MAX_REQUEST,
    max_body: 0,
    deadline: REQUEST_DEADLINE,
};

fn serve(mut stream: TcpStream, metrics: &Metrics) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let (response, head_only) = match http::read_request(&mut stream, &LIMITS) {
        Ok(None) => return,
        Ok(Some(req)) => answer(&req, metrics),
        Err(r) => (r, false),
    };
    let _ = http::respond(&mut stream, &response, head_only);
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Instant;

    use super::super::Snapshot;
    use super::*;

    /// Metrics with a policy version to look for.
    fn metrics() -> Arc<Metrics> {
        let m = Metrics::new(1_700_000_000);
        m.publish(Snapshot {
            policy_version: 3,
            ..Snapshot::default()
        });
        m
    }

    /// One request on a fresh connection; the raw response.
    fn request(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(raw);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn http_serves_get_and_head_of_metrics_only() {
        let m = metrics();
        let server = Server::start("127.0.0.1:0".parse().unwrap(), m.clone()).unwrap();
        let addr = server.local_addr();

        let r = request(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
        assert!(body.contains("rstwall_policy_version 3\n"));

        let r = request(
            addr,
            b"GET /metrics?x=1 HTTP/1.0\r\naccept: application/openmetrics-text\r\n\r\n",
        );
        assert!(
            r.contains("Content-Type: application/openmetrics-text;"),
            "{r}"
        );
        assert!(r.ends_with("# EOF\n"));

        let r = request(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );

        let r = request(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
        assert!(r.contains("Allow: GET, HEAD\r\n"), "{r}");
        for path in ["/", "/metrics/", "/metricsx", "/api"] {
            let r = request(addr, format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes());
            assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{path}: {r}");
        }
        for bad in [
            &b"GET /metrics\r\n\r\n"[..],
            b"GET /metrics HTTP/2\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            let r = request(addr, bad);
            assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{r}");
        }
        // A head that never ends is cut off at the bound.
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_REQUEST * 2));
        let r = request(addr, &huge);
        assert!(r.starts_with("HTTP/1.1 431 "), "{r}");

        let text = m.render(Format::Text);
        // GET, HEAD, and this render.
        assert!(
            text.contains("rstwall_metrics_scrapes_total{format=\"text\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("rstwall_metrics_scrapes_total{format=\"openmetrics\"} 1\n"));
        drop(server);
        assert!(TcpStream::connect(addr).is_err(), "stopped with the server");
    }

    #[test]
    fn a_slow_client_does_not_hold_up_others() {
        let server = Server::start("127.0.0.1:0".parse().unwrap(), metrics()).unwrap();
        let addr = server.local_addr();
        // Say half a request and then nothing.
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /met").unwrap();
        let t = Instant::now();
        let r = request(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // The slow one is answered at the deadline.
        slow.set_read_timeout(Some(REQUEST_DEADLINE * 2)).unwrap();
        let mut out = String::new();
        let _ = slow.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    }
}
