//! The parts whose RSTs the kernel sends by itself: refused connects,
//! data after close (teardown), close with unread data (abort).

use std::collections::HashSet;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;
use rstwall_engine::wire::TcpFlags;
use rstwall_engine::RstClass;

use crate::topology::{SERVER, SERVER_IF};
use crate::traffic::{self, in_netns, join, spawn_in, Errors, Pacer, SetOnDrop};
use rstwall_netlab::rng;
use rstwall_netlab::{sock, Listen, Sniffer, TcpState};

use super::{connect, Ctx, Part, ABORT_PORT, CLOSED_PORT, TEARDOWN_PORT};

/// The RSTs the server's kernel sends from one port, counted on the wire
/// (a packet socket on the server's interface, filtered in the kernel, for
/// the frames it transmits) from before the part starts until the checks.
/// A part causes one per connection it has reset, in its class. The
/// server's kernel may send more: each segment that arrives after its
/// socket is gone is answered, and two back to back (a write split in two,
/// a retransmission) give two RSTs 20 µs apart (seen in a probe's trace:
/// identical RSTs to one client port). The first resets the client's
/// socket; the next finds none there, so the client's kernel drops it as
/// a RST for no socket: rstwall must count it `no_flow`. So the RSTs are
/// told apart by the connection they go to ([`connection`]): the first to
/// each is the part's class, the others `no_flow`.
pub(super) struct ServerRsts {
    class: RstClass,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The connection a RST of the server's goes to: the client's address and
/// port, and what tells this connection from an earlier one on the same
/// port (a refused client reuses its port at once: 68 times in 1,500
/// connects). A RST the server sends from a connection's sequence space
/// carries the server's SND.NXT as its sequence (the abort, a RST for no
/// socket answering the client's next segment, the teardown's), the same
/// for every RST of that connection and random across connections; a RST
/// answering a SYN carries sequence 0 and the client's ISN + 1 as its
/// acknowledgment, again one per connection.
fn connection(seg: &rstwall_engine::wire::Segment<'_>) -> (IpAddr, u16, u32) {
    let instance = if seg.seq != 0 { seg.seq } else { seg.ack };
    (seg.dst, seg.dst_port, instance)
}

/// RSTs to a connection not seen before, and to one already reset.
#[derive(Default)]
struct Counts {
    first: AtomicU64,
    again: AtomicU64,
}

impl ServerRsts {
    pub(super) fn start(ctx: &Ctx, port: u16, class: RstClass) -> anyhow::Result<ServerRsts> {
        let sniffer = in_netns(&ctx.server, || {
            Sniffer::open(Listen::TcpFrom {
                ifname: SERVER_IF,
                sport: port,
                any_flags: TcpFlags::RST,
            })
            .context("packet socket at the server")
        })?;
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (n, st) = (counts.clone(), stop.clone());
        let thread = thread::spawn(move || {
            let mut reset = HashSet::new();
            while !st.load(Ordering::Relaxed) {
                match sniffer.next_segment() {
                    Ok(Some(seg)) if seg.flags.rst() => {
                        let to = if reset.insert(connection(&seg)) {
                            &n.first
                        } else {
                            &n.again
                        };
                        to.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(ServerRsts {
            class,
            counts,
            stop,
            thread: Some(thread),
        })
    }

    /// Counts that are already known, for tests of what uses them.
    #[cfg(test)]
    pub(super) fn fixed(class: RstClass, first: u64, again: u64) -> ServerRsts {
        ServerRsts {
            class,
            counts: Arc::new(Counts {
                first: AtomicU64::new(first),
                again: AtomicU64::new(again),
            }),
            stop: Arc::new(AtomicBool::new(true)),
            thread: None,
        }
    }

    pub(super) fn class(&self) -> RstClass {
        self.class
    }

    /// The first RST to each connection so far: the part's class.
    pub(super) fn first(&self) -> u64 {
        self.counts.first.load(Ordering::Relaxed)
    }

    /// RSTs to a connection already reset so far: `no_flow`.
    pub(super) fn again(&self) -> u64 {
        self.counts.again.load(Ordering::Relaxed)
    }

    /// Every RST seen so far.
    pub(super) fn count(&self) -> u64 {
        self.first() + self.again()
    }
}

impl fmt::Debug for ServerRsts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ServerRsts({}: {}, then {} again)",
            self.class,
            self.first(),
            self.again()
        )
    }
}

impl Drop for ServerRsts {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The part's own check on the wire: the server's kernel sent a RST for
/// every connection the client saw reset.
fn sent_on_the_wire(p: &mut Part, rsts: ServerRsts, reset: u64) {
    let (first, again) = (rsts.first(), rsts.again());
    p.check(
        first >= reset,
        format!(
            "{} RSTs the server's kernel sent, on the wire: {first} for {reset} connections \
             reset, {again} more to connections already reset",
            rsts.class()
        ),
    );
    p.server_rsts.push(rsts);
}

/// Wait until the kernel has closed `s` (a RST arrived); its last state
/// otherwise.
pub(super) fn wait_reset(s: &TcpStream, within: Duration) -> Result<(), String> {
    let until = Instant::now() + within;
    loop {
        match sock::tcp_state(s.as_raw_fd()) {
            Ok(TcpState::Close) => return Ok(()),
            Ok(state) if Instant::now() > until => {
                return Err(format!("no RST: the socket is still in TCP state {state}"))
            }
            Ok(_) => thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("TCP_INFO: {e}")),
        }
    }
}

/// The client keeps connecting to a closed port.
pub(super) fn refused(ctx: &Ctx, per_sec: f64) -> anyhow::Result<Part> {
    let dst = SocketAddrV4::new(SERVER, CLOSED_PORT);
    let rsts = ServerRsts::start(ctx, CLOSED_PORT, RstClass::Refused)?;
    let (attempts, refused, errors) = thread::scope(|s| {
        let h = spawn_in(s, &ctx.client, || {
            let mut pace = Pacer::new(per_sec, &ctx.run);
            let (mut attempts, mut refused, mut errors) = (0u64, 0u64, Errors::default());
            while pace.wait() {
                attempts += 1;
                match TcpStream::connect_timeout(&dst.into(), Duration::from_secs(3)) {
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => refused += 1,
                    Err(e) => errors.add(format!("connect: {e}")),
                    Ok(_) => errors.add("connected: something listens on the closed port"),
                }
            }
            Ok((attempts, refused, errors))
        });
        join(h, "refused client")
    })?;
    let mut p = Part::default();
    p.did(
        "refused",
        format!("connection attempts, closed port {CLOSED_PORT}"),
        attempts,
    );
    p.rst[RstClass::Refused.index()] = refused;
    p.syns = attempts;
    p.check(
        attempts > 0 && refused == attempts,
        format!(
            "connection attempts refused by the server's kernel (ECONNREFUSED): {refused} of {attempts}{}",
            errors.detail()
        ),
    );
    sent_on_the_wire(&mut p, rsts, refused);
    Ok(p)
}

/// What one connection of [`reset_by_server`] came to.
pub(super) enum Tried {
    /// Something went wrong before the client sent its segment (noted).
    Failed,
    /// The client sent the segment that must be answered by a RST, but
    /// the RST did not come (noted).
    Sent,
    /// The server's kernel reset the connection, as it must.
    Reset,
}

/// A server on `addr` that treats each connection with `serve`, and a
/// client that connects `per_sec` times a second and plays `attempt` on
/// each: (attempts, segments sent that must be reset, resets seen, errors).
pub(super) fn reset_by_server(
    ctx: &Ctx,
    name: &str,
    addr: SocketAddrV4,
    per_sec: f64,
    serve: impl FnMut(TcpStream) + Send,
    mut attempt: impl FnMut(&mut TcpStream, &mut Errors) -> Tried + Send,
) -> anyhow::Result<(u64, u64, u64, Errors)> {
    let listener = traffic::listen(&ctx.server, addr)?;
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let server = s.spawn(|| traffic::serve_until(&listener, &done, serve));
        let client = spawn_in(s, &ctx.client, || {
            let _done = SetOnDrop(&done);
            let mut pace = Pacer::new(per_sec, &ctx.run);
            let (mut attempts, mut sent, mut reset) = (0u64, 0u64, 0u64);
            let mut errors = Errors::default();
            while pace.wait() {
                attempts += 1;
                let mut c = match connect(addr) {
                    Ok(c) => c,
                    Err(e) => {
                        errors.add(format!("connect: {e}"));
                        continue;
                    }
                };
                match attempt(&mut c, &mut errors) {
                    Tried::Failed => {}
                    Tried::Sent => sent += 1,
                    Tried::Reset => {
                        sent += 1;
                        reset += 1;
                    }
                }
            }
            Ok((attempts, sent, reset, errors))
        });
        let r = join(client, &format!("{name} client"));
        done.store(true, Ordering::Relaxed);
        join(server, &format!("{name} server"))?;
        r
    })
}

/// The part a [`reset_by_server`] run makes: a RST of `class` caused for
/// each segment sent, a handshake per attempt, the check (`reset_says`)
/// that every attempt was reset, and the RSTs the server sent on the wire.
fn reset_part(
    class: RstClass,
    did: String,
    reset_says: &str,
    (attempts, sent, reset, errors): (u64, u64, u64, Errors),
    rsts: ServerRsts,
) -> Part {
    let mut p = Part::default();
    p.did(class.as_str(), did, attempts);
    p.rst[class.index()] = sent;
    p.syns = attempts;
    p.synacks = sent;
    p.check(
        attempts > 0 && reset == attempts,
        format!("{reset_says}: {reset} of {attempts}{}", errors.detail()),
    );
    sent_on_the_wire(&mut p, rsts, reset);
    p
}

/// The server closes at once; the client, having seen the FIN, sends data
/// anyway; the server's kernel answers with a RST.
pub(super) fn teardown(ctx: &Ctx, per_sec: f64) -> anyhow::Result<Part> {
    let addr = SocketAddrV4::new(SERVER, TEARDOWN_PORT);
    let rsts = ServerRsts::start(ctx, TEARDOWN_PORT, RstClass::Teardown)?;
    let outcome = reset_by_server(ctx, "teardown", addr, per_sec, drop, |c, errors| {
        match c.read(&mut [0u8; 64]) {
            Ok(0) => {}
            Ok(_) => {
                errors.add("data instead of the server's FIN");
                return Tried::Failed;
            }
            Err(e) => {
                errors.add(format!("waiting for the server's FIN: {e}"));
                return Tried::Failed;
            }
        }
        if let Err(e) = c.write_all(b"data after the server closed\n") {
            errors.add(format!("write: {e}"));
            return Tried::Failed;
        }
        match wait_reset(c, Duration::from_secs(3)) {
            Ok(()) => Tried::Reset,
            Err(e) => {
                errors.add(e);
                Tried::Sent
            }
        }
    })?;
    Ok(reset_part(
        RstClass::Teardown,
        format!("connections sent data after the FIN, port {TEARDOWN_PORT}"),
        "connections reset by the server's kernel after its FIN",
        outcome,
        rsts,
    ))
}

const ABORT_UNREAD: usize = 100;

/// The client sends a request; the server closes without reading it: a
/// RST with the exact sequence number.
pub(super) fn abort(ctx: &Ctx, per_sec: f64) -> anyhow::Result<Part> {
    let addr = SocketAddrV4::new(SERVER, ABORT_PORT);
    let rsts = ServerRsts::start(ctx, ABORT_PORT, RstClass::Abort)?;
    // Close once the request is queued, unread.
    let serve = |conn: TcpStream| {
        let until = Instant::now() + Duration::from_secs(3);
        while sock::bytes_queued(conn.as_raw_fd()).unwrap_or(0) < ABORT_UNREAD
            && Instant::now() < until
        {
            thread::sleep(Duration::from_millis(1));
        }
    };
    let mut payload = rng::seeded(ctx.seed | 1);
    let outcome = reset_by_server(ctx, "abort", addr, per_sec, serve, |c, errors| {
        let mut req = [0u8; ABORT_UNREAD];
        payload.fill(&mut req);
        if let Err(e) = c.write_all(&req) {
            errors.add(format!("write: {e}"));
            return Tried::Failed;
        }
        match c.read(&mut [0u8; 64]) {
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Tried::Reset,
            Err(e) => errors.add(format!("read: {e}, not ECONNRESET")),
            Ok(0) => errors.add("a FIN, not a RST"),
            Ok(_) => errors.add("data, not a RST"),
        }
        Tried::Sent
    })?;
    Ok(reset_part(
        RstClass::Abort,
        format!("requests the server closed unread, port {ABORT_PORT}"),
        "connections reset by the server's close with unread data (ECONNRESET)",
        outcome,
        rsts,
    ))
}
