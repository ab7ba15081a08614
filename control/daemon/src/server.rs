//! The control API: HTTP with JSON bodies on a Unix socket (default
//! `/run/rstwall/rstwall.sock`), served by the daemon, used by every
//! client command of the CLI (and by anyone with `curl --unix-socket`).
//!
//! # Who may use it
//!
//! The socket is created mode 0600 and owned by root; with a control group
//! configured (`control_group`), 0660 and owned by that group. The file
//! mode is the first gate; the second is the peer's credentials
//! (SO_PEERCRED) on every connection: root, or a process whose primary or
//! supplementary groups include the control group. Anyone else gets 403.
//!
//! # Requests
//!
//! Every request is a [`Route`] of [`rstwall_api::route`], which lists
//! them with their bodies and answers; every answer is a document of
//! [`rstwall_api`], written with [`rstwall_api::document_json`].
//!
//! Errors are JSON, `{"error": "..."}`, with a 4xx status for the
//! client's mistakes (400 bad request, 403, 404, 405, 409 a capture is
//! already running, 411/413 body framing and size, 415 a body that is not
//! JSON) and 5xx for the daemon's (503 busy, 504 the workers did not
//! answer). A request changes nothing unless it is valid as a whole.
//!
//! # Threads
//!
//! An accept thread and a thread per connection (at most
//! [`MAX_CONNECTIONS`]). Requests about the daemon's state (status, stats,
//! policy, blocks) go to the main loop as a [`Call`] and are answered from
//! there, so policy changes are ordered with SIGHUP reloads; requests
//! about the traffic (flows, telemetry, alerts, capture) go straight to
//! the workers through a [`SourceHandle`].

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crossbeam::channel::{self, Sender};
use ipnet::IpNet;
use rstwall_api::http::{self, Limits, Request, Response};
use rstwall_api::{
    Alerts, ApiError, BlockAdd, BlockAdded, BlockList, BlockRemoved, CaptureClass, CaptureQuery,
    Flows, FlowsQuery, PolicyBody, PolicyChange, PolicyDiff, PolicySet, PolicyShow, Route, Stats,
    Status,
};
use rstwall_engine::telemetry::Snapshot;
use rstwall_engine::wire::LinkType;
use rstwall_pcap::capture::{CaptureWriter, Resolution};
use rstwall_source::{CaptureFilter, FlowFilter, QueryError, SourceHandle};
use serde::{Deserialize, Serialize};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// The largest request body (a policy file with a long deny list fits).
pub const MAX_BODY: usize = 1 << 20;
/// Requests are bounded in size and in time.
pub const LIMITS: Limits = Limits {
    max_head: 8192,
    max_body: MAX_BODY,
    deadline: Duration::from_secs(5),
};
/// How long a request waits for the main loop or the workers.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the main loop is asked to do.
#[derive(Debug)]
pub enum Op {
    Status,
    Stats,
    /// Alerts judged on all workers together.
    Alerts,
    PolicyShow,
    PolicySet(Vec<String>),
    PolicyApply(String),
    PolicyDiff(String),
    BlockList,
    BlockAdd {
        cidr: IpNet,
        ttl_s: Option<u64>,
    },
    BlockDel {
        cidr: IpNet,
    },
}

/// The main loop's answer: the document of its [`Op`].
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Status(Box<Status>),
    Stats(Box<Stats>),
    Alerts(Alerts),
    Policy(PolicyShow),
    PolicyChange(PolicyChange),
    PolicyDiff(PolicyDiff),
    Blocks(BlockList),
    BlockAdded(BlockAdded),
    BlockRemoved(BlockRemoved),
}

/// A request for the main loop, and where its answer goes.
#[derive(Debug)]
pub struct Call {
    pub op: Op,
    pub reply: Sender<Result<Answer, ApiError>>,
}

/// Who may connect besides root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

impl Group {
    /// Look a group up by name (or take a number).
    pub fn lookup(name: &str) -> anyhow::Result<Group> {
        if let Ok(gid) = name.parse::<u32>() {
            return Ok(Group {
                name: name.to_string(),
                gid,
            });
        }
        let cname = std::ffi::CString::new(name).map_err(|_| anyhow!("bad group name"))?;
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the call; `buf` outlives it.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut out,
            )
        };
        if rc != 0 || out.is_null() {
            return Err(anyhow!("no such group: {name}"));
        }
        Ok(Group {
            name: name.to_string(),
            gid: grp.gr_gid,
        })
    }
}

/// The peer of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

impl Peer {
    pub fn of(stream: &UnixStream) -> io::Result<Peer> {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` is a ucred and `len` its size.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Peer {
            pid: cred.pid,
            uid: cred.uid,
            gid: cred.gid,
        })
    }

    /// Root, or a member of `group` (primary or supplementary groups of
    /// the connecting process, as /proc shows them).
    pub fn allowed(&self, group: Option<&Group>) -> bool {
        if self.uid == 0 {
            return true;
        }
        let Some(g) = group else { return false };
        self.gid == g.gid || supplementary_groups(self.pid).contains(&g.gid)
    }
}

fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// The control API, served until dropped (the socket file goes with it).
pub struct Server {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the request handlers need.
struct Shared {
    calls: Sender<Call>,
    datapath: SourceHandle,
    group: Option<Group>,
}

/// The socket, bound but not yet served: bound early in the start-up so
/// a socket in use stops the start before anything is attached.
pub struct Bound {
    path: PathBuf,
    listener: UnixListener,
    group: Option<Group>,
}

impl Bound {
    /// Create the socket (replacing a stale one; refusing if another
    /// daemon answers on it), mode 0600, or 0660 and group-owned.
    pub fn bind(path: &Path, group: Option<Group>) -> anyhow::Result<Bound> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) => {
                use std::os::unix::fs::FileTypeExt;
                if !meta.file_type().is_socket() {
                    return Err(anyhow!(
                        "{} exists and is not a socket: remove it or choose another \
                         --control-socket",
                        path.display()
                    ));
                }
                if UnixStream::connect(path).is_ok() {
                    return Err(anyhow!(
                        "another rstwall answers on {}: stop it, or give this one its own \
                         --control-socket",
                        path.display()
                    ));
                }
                // Left by a daemon that died.
                std::fs::remove_file(path)
                    .with_context(|| format!("removing the stale socket {}", path.display()))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow!(e).context(format!("{}", path.display()))),
        }
        // No moment with a socket anyone may connect to: created with no
        // permissions for group and others, then opened up as configured.
        // SAFETY: umask only changes the process's file-creation mask.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = bound.with_context(|| format!("cannot listen on {}", path.display()))?;
        if let Some(g) = &group {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|_| anyhow!("bad socket path"))?;
            // SAFETY: a valid C string path.
            let chowned = unsafe { libc::chown(c.as_ptr(), 0, g.gid) } == 0;
            let e = io::Error::last_os_error();
            if !chowned
                || std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).is_err()
            {
                let _ = std::fs::remove_file(path);
                return Err(anyhow!(e).context(format!(
                    "giving {} to group {}",
                    path.display(),
                    g.name
                )));
            }
        }
        Ok(Bound {
            path: path.to_path_buf(),
            listener,
            group,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Server {
    /// Serve `bound` on a thread: calls about the daemon's state go to
    /// `calls` (the main loop), questions about traffic to `datapath`.
    pub fn start(
        bound: Bound,
        calls: Sender<Call>,
        datapath: SourceHandle,
    ) -> anyhow::Result<Server> {
        let Bound {
            path,
            listener,
            group,
        } = bound;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            calls,
            datapath,
            group,
        });
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rstwall-api".into())
            .spawn(move || accept_loop(listener, shared, stopping));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e.into());
            }
        };
        Ok(Server {
            path,
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the blocked accept() with a connection of our own.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept_loop(listener: UnixListener, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    let busy = error(&ApiError::new(503, "too many connections"));
    let handle = Arc::new(move |stream: UnixStream| serve(stream, &shared));
    http::accept_loop(
        listener.incoming(),
        "rstwall-api",
        MAX_CONNECTIONS,
        &stop,
        &busy,
        handle,
    );
}

/// A refusal, `{"error": "..."}` on one line.
fn error(e: &ApiError) -> Response {
    let mut body = serde_json::to_vec(&e.document()).unwrap_or_default();
    body.push(b'\n');
    Response::new(e.status, "application/json", body)
}

fn serve(mut stream: UnixStream, shared: &Shared) {
    match Peer::of(&stream) {
        Ok(p) if p.allowed(shared.group.as_ref()) => {}
        Ok(p) => {
            tracing::warn!(
                "control API: refused pid {} uid {} gid {} (not root{})",
                p.pid,
                p.uid,
                p.gid,
                shared
                    .group
                    .as_ref()
                    .map_or(String::new(), |g| format!(", not in group {}", g.name))
            );
            let msg = match &shared.group {
                Some(g) => format!("permission denied: root or group {} only", g.name),
                None => "permission denied: root only".to_string(),
            };
            let _ = http::respond(&mut stream, &error(&ApiError::new(403, msg)), false);
            return;
        }
        Err(e) => {
            tracing::debug!("control API: peer credentials: {e}");
            return;
        }
    }
    let req = match http::read_request(&mut stream, &LIMITS) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(r) => {
            // The framing errors, as JSON like every other error.
            let msg = String::from_utf8_lossy(&r.body).trim().to_string();
            let _ = http::respond(&mut stream, &error(&ApiError::new(r.status, msg)), false);
            return;
        }
    };
    let route = Route::parse(&req).and_then(|route| {
        if !route.takes_body() && !req.body.is_empty() {
            return Err(ApiError::bad(format!(
                "{} {} takes no body",
                req.method, req.path
            )));
        }
        Ok(route)
    });
    let response = match route {
        Ok(Route::Capture(query)) => return capture(&mut stream, query, shared),
        Ok(route) => match answer(route, &req, shared) {
            Ok(doc) => Response::new(200, "application/json", doc),
            Err(e) => error(&e),
        },
        Err(e) => error(&e),
    };
    let _ = http::respond(&mut stream, &response, false);
}

/// A JSON body of type `T`; unknown fields are errors.
fn body<T: for<'de> Deserialize<'de>>(req: &Request) -> Result<T, ApiError> {
    if let Some(ct) = req.header("content-type") {
        if !ct.starts_with("application/json") {
            return Err(ApiError::new(
                415,
                format!("content type {ct}: send application/json"),
            ));
        }
    }
    serde_json::from_slice(&req.body).map_err(|e| {
        ApiError::bad(format!(
            "request body: {e}{}",
            if req.body.is_empty() {
                " (the body is empty)"
            } else {
                ""
            }
        ))
    })
}

/// The document that answers `route`, written out.
fn answer(route: Route, req: &Request, shared: &Shared) -> Result<Vec<u8>, ApiError> {
    let main = |op: Op| ask_main(shared, op);
    match route {
        Route::Status => document(&main(Op::Status)?),
        Route::Stats => document(&main(Op::Stats)?),
        Route::Alerts => document(&main(Op::Alerts)?),
        Route::Telemetry { top } => document(&telemetry(shared, top)?),
        Route::Flows(query) => document(&flows(shared, query)?),
        Route::Policy => document(&main(Op::PolicyShow)?),
        Route::PolicyApply => document(&main(Op::PolicyApply(body::<PolicyBody>(req)?.toml))?),
        Route::PolicySet => {
            let b: PolicySet = body(req)?;
            if b.set.is_empty() {
                return Err(ApiError::bad("set: give at least one KEY=VALUE"));
            }
            document(&main(Op::PolicySet(b.set))?)
        }
        Route::PolicyDiff => document(&main(Op::PolicyDiff(body::<PolicyBody>(req)?.toml))?),
        Route::Blocks => document(&main(Op::BlockList)?),
        Route::BlockAdd => {
            let b: BlockAdd = body(req)?;
            let cidr = rstwall_api::parse_cidr(&b.cidr).map_err(ApiError::bad)?;
            document(&main(Op::BlockAdd {
                cidr,
                ttl_s: b.ttl_s,
            })?)
        }
        Route::BlockDel { cidr } => document(&main(Op::BlockDel { cidr })?),
        Route::Capture(_) => Err(ApiError::internal("a capture is a stream")),
    }
}

fn document(doc: &impl Serialize) -> Result<Vec<u8>, ApiError> {
    rstwall_api::document_json(doc).map_err(|e| ApiError::internal(format!("the answer: {e}")))
}

fn ask_main(shared: &Shared, op: Op) -> Result<Answer, ApiError> {
    let (tx, rx) = channel::bounded(1);
    shared
        .calls
        .send_timeout(Call { op, reply: tx }, ANSWER_TIMEOUT)
        .map_err(|_| ApiError::new(503, "the daemon is busy or stopping"))?;
    rx.recv_timeout(ANSWER_TIMEOUT)
        .unwrap_or_else(|_| Err(ApiError::new(504, "the daemon did not answer in time")))
}

fn query_error(e: QueryError) -> ApiError {
    let status = match e {
        QueryError::Busy => 503,
        QueryError::Timeout { .. } => 504,
    };
    ApiError::new(status, e.to_string())
}

/// `GET /v1/telemetry`: the workers' telemetry merged, with the daemon's
/// alerts — judged on all workers together, not each worker's on its
/// share.
fn telemetry(shared: &Shared, top: usize) -> Result<Snapshot, ApiError> {
    let parts = shared
        .datapath
        .telemetry(top, ANSWER_TIMEOUT)
        .map_err(query_error)?;
    let mut snapshot = Snapshot::merge(parts, top);
    let Answer::Alerts(alerts) = ask_main(shared, Op::Alerts)? else {
        return Err(ApiError::internal(
            "the main loop answered with another document",
        ));
    };
    snapshot.active_alerts = alerts.active;
    snapshot.alerts = alerts.history;
    Ok(snapshot)
}

/// `GET /v1/flows`.
fn flows(shared: &Shared, query: FlowsQuery) -> Result<Flows, ApiError> {
    let filter = FlowFilter {
        state: query.state,
        limit: query.limit,
    };
    let rows = shared
        .datapath
        .flows(filter, ANSWER_TIMEOUT)
        .map_err(query_error)?;
    Ok(Flows {
        count: rows.len(),
        flows: rows,
        limit: query.limit,
    })
}

/// `GET /v1/capture`: a pcap stream of matching frames until `count` are
/// written, `timeout_s` passes, or the client goes away.
fn capture(stream: &mut UnixStream, query: CaptureQuery, shared: &Shared) {
    let fail = |stream: &mut UnixStream, e: ApiError| {
        let _ = http::respond(stream, &error(&e), false);
    };
    let filter = match &query.class {
        CaptureClass::Rst => CaptureFilter::Rst(u32::MAX),
        CaptureClass::AllTcp => CaptureFilter::AllTcp,
        CaptureClass::Classes(classes) => CaptureFilter::rst_classes(classes),
    };
    let (count, timeout) = (query.count, query.timeout_s);
    let Some(session) = shared.datapath.capture().start(filter, count) else {
        return fail(
            stream,
            ApiError::new(409, "a capture is already running; try again when it ends"),
        );
    };
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.tcpdump.pcap\r\n\
                Connection: close\r\n\r\n";
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let out = match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    };
    // Unbuffered: a frame reaches the client as soon as it is captured.
    let mut writer = match CaptureWriter::new(out, LinkType::Ethernet, Resolution::Nanos) {
        Ok(w) => w,
        Err(_) => return,
    };
    let deadline = (timeout > 0).then(|| Instant::now() + Duration::from_secs(timeout));
    let mut written = 0u64;
    loop {
        let mut any = false;
        while let Some(frame) = session.next() {
            any = true;
            let r = writer.write(frame.timestamp_ns, frame.orig_len, frame.bytes());
            session.recycle(frame);
            if r.is_err() {
                return;
            }
            written += 1;
        }
        if written >= count || (session.exhausted() && !any && written + session.lost() >= count) {
            break;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if !any {
            if client_gone(stream) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let lost = session.lost();
    drop(session);
    if let Ok(mut w) = writer.finish() {
        let _ = w.flush();
    }
    if lost > 0 {
        tracing::info!("capture: {written} frames written, {lost} lost (writer too slow)");
    }
    http::finish(stream);
}

/// Whether the peer closed its end (or the connection failed).
fn client_gone(stream: &UnixStream) -> bool {
    let mut p = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    rc > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}
