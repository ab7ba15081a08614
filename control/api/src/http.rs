//! The little HTTP/1.1 both of rstwall's servers speak — the metrics
//! endpoint (TCP) and the control API (a Unix socket) — and the client
//! side the CLI uses: one request per connection, `Content-Length` bodies
//! only (no chunked encoding, no keep-alive), every size and time bounded.
//!
//! Both servers answer a handful of requests a second from trusted
//! scrapers and the CLI; a framework would be a lot of code for that. What
//! matters is what this module does take care of: a request that is too
//! big, too slow, malformed or chunked gets a clear 4xx and nothing more
//! is read from it.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// What a server accepts from one request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request line and headers.
    pub max_head: usize,
    /// Body (`Content-Length`).
    pub max_body: usize,
    /// Time to send the whole request.
    pub deadline: Duration,
}

/// A parsed request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// `key=value` pairs of the query string, percent-decoded.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A header's value (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response: status, extra headers, content type and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            content_type,
            body: body.into(),
        }
    }

    /// A plain-text error.
    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// A stream a server answers on: closing our half lets the client see the
/// end of the response.
pub trait Conn: Read + Write {
    fn shutdown_write(&self);
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Conn for TcpStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
    }
}

impl Conn for UnixStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, t)
    }
}

/// Read one request. `Ok(None)`: the client closed without sending one.
/// `Err`: the response to send instead of an answer (and then close).
pub fn read_request(stream: &mut impl Conn, limits: &Limits) -> Result<Option<Request>, Response> {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let deadline = Instant::now() + limits.deadline;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let timeout = || Response::text(408, "request timeout\n");
    let (head_len, body_start) = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() >= limits.max_head {
            return Err(Response::text(431, "request head too large\n"));
        }
        if Instant::now() >= deadline {
            return Err(timeout());
        }
        match read_some(stream, &mut chunk) {
            Got::End if buf.is_empty() => return Ok(None),
            Got::End => return Err(Response::text(400, "request ends inside its head\n")),
            Got::Data(n) => buf.extend_from_slice(&chunk[..n]),
            Got::Nothing => {}
            Got::Failed => return Ok(None),
        }
    };
    if head_len > limits.max_head {
        return Err(Response::text(431, "request head too large\n"));
    }
    let mut req = parse_head(&buf[..head_len])?;
    if req
        .header("transfer-encoding")
        .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
    {
        return Err(Response::text(
            411,
            "chunked bodies are not accepted: send Content-Length\n",
        ));
    }
    let length = match req.header("content-length") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| Response::text(400, "bad Content-Length\n"))?,
    };
    if length > limits.max_body {
        return Err(Response::text(
            413,
            &format!(
                "request body too large: {length} bytes, at most {} accepted\n",
                limits.max_body
            ),
        ));
    }
    let mut body = buf.split_off(body_start.min(buf.len()));
    while body.len() < length {
        if Instant::now() >= deadline {
            return Err(timeout());
        }
        match read_some(stream, &mut chunk) {
            Got::End | Got::Failed => return Err(Response::text(400, "request body cut short\n")),
            Got::Data(n) => body.extend_from_slice(&chunk[..n]),
            Got::Nothing => {}
        }
    }
    body.truncate(length);
    req.body = body;
    Ok(Some(req))
}

/// What one read gave.
enum Got {
    Data(usize),
    /// The client closed its half.
    End,
    /// Nothing within the read timeout: check the deadline, try again.
    Nothing,
    Failed,
}

fn read_some(stream: &mut impl Read, chunk: &mut [u8]) -> Got {
    match stream.read(chunk) {
        Ok(0) => Got::End,
        Ok(n) => Got::Data(n),
        Err(e) if nothing_yet(&e) => Got::Nothing,
        Err(_) => Got::Failed,
    }
}

/// A read that gave nothing this time — its timeout passed, or a signal
/// came — and may be tried again.
pub fn nothing_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// (end of head, start of body): the head ends before its blank line.
fn head_end(buf: &[u8]) -> Option<(usize, usize)> {
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = buf
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let head = std::str::from_utf8(head).map_err(|_| Response::text(400, "bad request\n"))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or("");
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(Response::text(400, "bad request line\n"));
    };
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Err(Response::text(400, "unsupported HTTP version\n"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_string(),
        path: path.to_string(),
        ..Request::default()
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (percent_decode(k), percent_decode(v)) else {
            return Err(Response::text(400, "bad query string\n"));
        };
        req.query.push((k, v));
    }
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Response::text(400, "bad header line\n"));
        };
        req.headers
            .push((name.trim().to_string(), value.trim().to_string()));
    }
    Ok(req)
}

/// `%XX` and `+` decoding of a query component; None if malformed.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encode a query component (everything but unreserved bytes).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            let _ = write!(out, "%{c:02X}");
        }
    }
    out
}

/// The status line and headers of a response with a known length.
pub fn response_head(r: &Response) -> String {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        reason_phrase(r.status),
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str("\r\n");
    head
}

/// Send `r` (its head only for `HEAD`) and close our half of the stream.
pub fn respond(stream: &mut impl Conn, r: &Response, head_only: bool) -> io::Result<()> {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    stream.write_all(response_head(r).as_bytes())?;
    if !head_only {
        stream.write_all(&r.body)?;
    }
    stream.flush()?;
    finish(stream);
    Ok(())
}

/// Close our half, and let the client read everything before the socket
/// closes (a close with unread request bytes would reset the connection).
pub fn finish(stream: &mut impl Conn) {
    stream.shutdown_write();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut sink = [0u8; 256];
    let until = Instant::now() + Duration::from_millis(200);
    while Instant::now() < until {
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// Serve connections from `incoming` until `stop` is set (checked after
/// each accept: the owner wakes the loop with a connection of its own),
/// each on its own thread, at most `max` at once; beyond that, `busy` is
/// the answer. Accept errors (EMFILE and friends) pause the loop briefly
/// rather than spin.
pub fn accept_loop<S, I>(
    incoming: I,
    name: &'static str,
    max: usize,
    stop: &std::sync::atomic::AtomicBool,
    busy: &Response,
    handle: std::sync::Arc<dyn Fn(S) + Send + Sync>,
) where
    S: Conn + Send + 'static,
    I: Iterator<Item = io::Result<S>>,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let active = Arc::new(AtomicUsize::new(0));
    for conn in incoming {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("{name}: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::AcqRel) >= max {
            active.fetch_sub(1, Ordering::AcqRel);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = respond(&mut stream, busy, false);
            continue;
        }
        let (h, a) = (handle.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-conn"))
            .spawn(move || {
                h(stream);
                a.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

// ---------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------

/// A response as the client reads it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body read so far: all of it, unless the caller asked to stream.
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Write a request; `body` is JSON.
pub fn send_request(
    stream: &mut impl Write,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
) -> io::Result<()> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: rstwall\r\nConnection: close\r\n");
    if let Some(b) = body {
        let _ = write!(
            head,
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        );
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if let Some(b) = body {
        stream.write_all(b)?;
    }
    stream.flush()
}

/// Read a response head, and with `whole_body` the body too (up to its
/// Content-Length, or to the end of the stream without one).
pub fn read_reply(stream: &mut impl Read, whole_body: bool, max_body: usize) -> io::Result<Reply> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let (head_len, body_start) = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        if buf.len() > 64 * 1024 {
            return Err(bad("response head too large"));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("connection closed before a response"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| bad("bad response head"))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body: buf.split_off(body_start.min(buf.len())),
    };
    if whole_body {
        let length = reply
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok());
        loop {
            if length.is_some_and(|l| reply.body.len() >= l) {
                break;
            }
            if reply.body.len() > max_body {
                return Err(bad("response too large"));
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                if length.is_some() {
                    return Err(bad("response cut short"));
                }
                break;
            }
            reply.body.extend_from_slice(&chunk[..n]);
        }
        if let Some(l) = length {
            reply.body.truncate(l);
        }
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    const LIMITS: Limits = Limits {
        max_head: 1024,
        max_body: 64,
        deadline: Duration::from_secs(2),
    };

    fn serve_one(request: &[u8]) -> Result<Option<Request>, Response> {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        b.write_all(request).unwrap();
        b.shutdown(std::net::Shutdown::Write).unwrap();
        read_request(&mut a, &LIMITS)
    }

    #[test]
    fn requests_with_query_and_body() {
        let r = serve_one(
            b"POST /v1/blocks?cidr=198.18.0.0%2F24&x=a+b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/blocks");
        assert_eq!(r.param("cidr"), Some("198.18.0.0/24"));
        assert_eq!(r.param("x"), Some("a b"));
        assert_eq!(r.body, b"hello");
        assert_eq!(r.header("content-LENGTH"), Some("5"));
    }

    #[test]
    fn bad_requests_get_the_right_status() {
        let status = |req: &[u8]| serve_one(req).map(|_| 200).unwrap_or_else(|r| r.status);
        assert_eq!(status(b"GET / HTTP/1.1\r\nContent-Length: 65\r\n\r\n"), 413);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
            411
        );
        assert_eq!(status(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nContent-Length: 9\r\n\r\nshort"),
            400
        );
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
        assert_eq!(status(b"GET /?a=%zz HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(&[b'a'; 2000]), 431);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost"), 400);
        assert!(serve_one(b"").unwrap().is_none());
    }

    #[test]
    fn a_client_reads_what_a_server_writes() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let r =
            Response::new(404, "application/json", "{\"error\":\"no\"}").with_header("X-A", "1");
        respond(&mut a, &r, false).unwrap();
        drop(a);
        let reply = read_reply(&mut b, true, 1 << 20).unwrap();
        assert_eq!(reply.status, 404);
        assert_eq!(reply.header("x-a"), Some("1"));
        assert_eq!(reply.body, b"{\"error\":\"no\"}");
        assert_eq!(
            percent_decode(&percent_encode("198.18.0.0/24 ü")).unwrap(),
            "198.18.0.0/24 ü"
        );
    }
}
