//! Goodput: a kernel TCP transfer from the generator's namespace to the
//! sink's, without and then with a blind-reset flood at its 4-tuple.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rstwall_engine::wire::TcpFlags;
use rstwall_netlab::Netns;

use super::forwarder::StopReport;
use super::options::Contender;
use super::rig::Rig;
use crate::cpu;
use crate::frame::{marker_mac, MARK_DELIVER};
use crate::gen::{Family, GenShared, Pick, Rate, Spec};
use crate::lab::{self, Lab};
use crate::traffic::{Frames, Label};

/// One goodput measurement: the same connection without, then with, the
/// flood.
pub struct Goodput {
    pub contender: Contender,
    pub round: usize,
    pub calm: Window,
    pub flood: Window,
    /// Under the heavier flood (--flood-high-pps), after `flood`.
    pub flood_high: Option<Window>,
    /// Under the first flood made malformed (--flood-void), last.
    pub flood_void: Option<Window>,
    /// The client's error if the connection broke.
    pub reset: Option<String>,
    pub other: f64,
    pub stop: StopReport,
}

impl Goodput {
    /// What the contender's policy dropped over the whole measurement.
    pub fn dropped_by(&self) -> String {
        match self.stop.nft {
            Some(n) => format!(
                ", nftables dropped {} invalid + {} over the RST limit",
                n.invalid, n.rst_limited
            ),
            None if self.stop.judged > 0 => format!(", engine dropped {}", self.stop.dropped),
            None => String::new(),
        }
    }

    pub fn ratio(&self) -> f64 {
        self.flood.mbps() / self.calm.mbps().max(1e-9)
    }

    /// Goodput under the heavier flood ÷ alone.
    pub fn high_ratio(&self) -> Option<f64> {
        self.flood_high
            .map(|w| w.mbps() / self.calm.mbps().max(1e-9))
    }

    /// Goodput under the flood dropped at parse ÷ alone.
    pub fn void_ratio(&self) -> Option<f64> {
        self.flood_void
            .map(|w| w.mbps() / self.calm.mbps().max(1e-9))
    }

    /// Goodput under the real flood ÷ under the same flood dropped at
    /// parse: what the contender's handling of the flood costs beyond
    /// what receiving it costs the machine.
    pub fn flood_vs_void(&self) -> Option<f64> {
        self.flood_void
            .map(|w| self.flood.mbps() / w.mbps().max(1e-9))
    }

    pub fn line(&self) -> String {
        format!(
            "round {} {:<23} goodput {:.0} Mbit/s alone, {:.0} Mbit/s under a {:.0} kpps \
             blind-reset flood ({:.2}×); flood RSTs at the server {}/{}, its challenge ACKs \
             {}{}{}{}{}, other processes {:.0}%",
            self.round + 1,
            self.contender.name(),
            self.calm.mbps(),
            self.flood.mbps(),
            self.flood.flood_sent as f64 / self.flood.secs / 1e3,
            self.ratio(),
            self.flood.flood_arrived,
            self.flood.flood_sent,
            self.flood.challenge_acks,
            match self.flood_high {
                Some(w) => format!(
                    "; {:.0} Mbit/s under {:.0} kpps ({:.2}×), flood RSTs at the server {}/{}, \
                     challenge ACKs {}",
                    w.mbps(),
                    w.flood_sent as f64 / w.secs / 1e3,
                    self.high_ratio().unwrap_or(0.0),
                    w.flood_arrived,
                    w.flood_sent,
                    w.challenge_acks,
                ),
                None => String::new(),
            },
            match self.flood_void {
                Some(w) => format!(
                    "; {:.0} Mbit/s under the flood dropped at parse ({:.2}×)",
                    w.mbps(),
                    self.void_ratio().unwrap_or(0.0),
                ),
                None => String::new(),
            },
            self.dropped_by(),
            match &self.reset {
                Some(e) => format!(", CONNECTION BROKE: {e}"),
                None => String::new(),
            },
            self.other,
        )
    }
}

impl Rig<'_> {
    /// A kernel TCP transfer from the client to the server, measured for
    /// --goodput-secs alone and then for as long again during a
    /// blind-reset flood at its 4-tuple (random sequence numbers, from the
    /// generator at --flood-pps).
    pub fn goodput(&self, c: Contender, round: usize) -> Result<Goodput> {
        let ((calm, flood, flood_high, flood_void, reset, other), stop) = self.with(c, |_| {
            let transfer = Transfer::start(self.lab)?;
            let k = self.kthreads();
            let load = cpu::OtherLoad::start(&k);
            thread::sleep(Duration::from_secs(1));
            let calm = transfer.window(self.o.goodput, self, None)?;
            let frames = Arc::new(flood_frames(transfer.client, 1 + round as u64));
            let gen =
                self.start_generator(None, frames.clone(), Rate::Paced(self.o.flood_pps), None)?;
            thread::sleep(Duration::from_millis(500));
            let flood = transfer.window(self.o.goodput, self, Some(&gen.shared))?;
            gen.finish()?;
            let flood_high = match self.o.flood_high_pps {
                0 => None,
                pps => {
                    let gen = self.start_generator(None, frames.clone(), Rate::Paced(pps), None)?;
                    thread::sleep(Duration::from_millis(500));
                    let w = transfer.window(self.o.goodput, self, Some(&gen.shared))?;
                    gen.finish()?;
                    Some(w)
                }
            };
            let flood_void = if self.o.flood_void {
                let void = Arc::new(void_frames(&frames));
                let rate = Rate::Paced(self.o.flood_pps);
                let gen = self.start_generator(None, void, rate, None)?;
                thread::sleep(Duration::from_millis(500));
                let w = transfer.window(self.o.goodput, self, Some(&gen.shared))?;
                gen.finish()?;
                Some(w)
            } else {
                None
            };
            let other = load.pct(&k);
            let reset = transfer.finish();
            Ok((calm, flood, flood_high, flood_void, reset, other))
        })?;
        Ok(Goodput {
            contender: c,
            round,
            calm,
            flood,
            flood_high,
            flood_void,
            reset,
            other,
            stop,
        })
    }
}

/// The blind-reset flood at the connection `client` → [`lab::SERVER`]:
/// RSTs as if from the client, random sequence numbers, to the server's
/// MAC (its stack takes them in), marked for the sink's counter as crafted
/// frames to deliver.
pub fn flood_frames(client: SocketAddrV4, seed: u64) -> Frames {
    let v4 = |a: std::net::Ipv4Addr| Pick::Fixed(u32::from(a).into());
    let spec = Spec {
        family: Family::V4,
        src: v4(*client.ip()),
        dst: v4(lab::SERVER),
        sport: Pick::Fixed(client.port().into()),
        dport: Pick::Fixed(TRANSFER_PORT.into()),
        seq: Pick::Random {
            first: 0,
            last: u32::MAX.into(),
        },
        ack: Pick::Fixed(0),
        flags: TcpFlags::RST,
        window: 0,
        ttl: 64,
        payload: 0,
        syn_options: false,
        src_mac: marker_mac(Label::Crafted.code() | MARK_DELIVER),
        dst_mac: lab::SERVER_MAC,
    };
    spec.build(65_536, seed)
}

/// The flood `flood` made malformed: each RST's TCP data offset set to 4
/// words (below the minimum of 5), so that rstwall's XDP program, which
/// every contender but nftables runs on its ports, drops it at parse
/// (behind nftables the bridge's stack drops it). Same frames, same rate,
/// same path into the appliance: a window under it measures what the
/// flood costs the transfer on this machine before any contender judges
/// it.
pub fn void_frames(flood: &Frames) -> Frames {
    let mut void = flood.clone();
    void.for_each_mut(|f| {
        // Ethernet (14) + IPv4 without options (20): TCP's data-offset
        // byte is the 13th of its header.
        if let Some(b) = f.get_mut(14 + 20 + 12) {
            *b = (4 << 4) | (*b & 0x0f);
        }
    });
    void
}

/// The server's port.
pub const TRANSFER_PORT: u16 = 5201;

/// One goodput window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Window {
    pub secs: f64,
    /// Bytes the server received.
    pub bytes: u64,
    /// Flood frames sent, and those that reached the server.
    pub flood_sent: u64,
    pub flood_arrived: u64,
    /// Challenge ACKs the server sent (RFC 5961: its answer to an
    /// in-window RST or SYN).
    pub challenge_acks: u64,
}

impl Window {
    pub fn mbps(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs / 1e6
    }
}

/// The real TCP connection: a server thread in the sink's namespace
/// reading everything, a client thread in the generator's writing as fast
/// as it can.
struct Transfer {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    /// The client's error, if the connection broke.
    client_err: Arc<Mutex<Option<String>>>,
    client: SocketAddrV4,
    threads: Vec<JoinHandle<()>>,
    sink_ns: Arc<Netns>,
}

impl Transfer {
    fn start(lab: &Lab) -> Result<Transfer> {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        let client_err = Arc::new(Mutex::new(None));
        let server_addr = SocketAddrV4::new(lab::SERVER, TRANSFER_PORT);
        let listener = lab
            .sink
            .run(|| TcpListener::bind(server_addr))?
            .context("the server's listening socket")?;
        listener.set_nonblocking(true)?;
        let server = {
            let (stop, received) = (stop.clone(), received.clone());
            thread::Builder::new()
                .name("bench-server".into())
                .spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    let mut conn = loop {
                        match listener.accept() {
                            Ok((c, _)) => break c,
                            Err(_)
                                if Instant::now() < deadline && !stop.load(Ordering::Relaxed) =>
                            {
                                thread::sleep(Duration::from_millis(5))
                            }
                            Err(_) => return,
                        }
                    };
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = vec![0u8; 1 << 16];
                    while !stop.load(Ordering::Relaxed) {
                        match conn.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                received.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => break,
                        }
                    }
                })?
        };
        let conn = lab
            .gen
            .run(|| TcpStream::connect_timeout(&server_addr.into(), Duration::from_secs(5)))?
            .context("connecting the client to the server through the appliance")?;
        let client = match conn.local_addr()? {
            std::net::SocketAddr::V4(a) => a,
            a => bail!("client address {a} is not IPv4"),
        };
        conn.set_write_timeout(Some(Duration::from_millis(200)))?;
        let writer = {
            let (stop, err) = (stop.clone(), client_err.clone());
            thread::Builder::new()
                .name("bench-client".into())
                .spawn(move || {
                    let mut conn = conn;
                    let buf = vec![0x5au8; 1 << 16];
                    while !stop.load(Ordering::Relaxed) {
                        match conn.write(&buf) {
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(e) => {
                                *err.lock().unwrap_or_else(|e| e.into_inner()) =
                                    Some(e.to_string());
                                break;
                            }
                        }
                    }
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                })?
        };
        Ok(Transfer {
            stop,
            received,
            client_err,
            client,
            threads: vec![server, writer],
            sink_ns: lab.sink.clone(),
        })
    }

    fn window(&self, len: Duration, rig: &Rig, flood: Option<&GenShared>) -> Result<Window> {
        let challenge = || self.sink_ns.run(|| tcp_ext("TCPChallengeACK"));
        let code = usize::from(Label::Crafted.code() | MARK_DELIVER);
        let (t0, b0, c0, f0) = (
            Instant::now(),
            self.received.load(Ordering::Relaxed),
            challenge()?,
            rig.counter.counts()?[code],
        );
        let sent0 = flood.map_or(0, |g| g.sent.load(Ordering::Relaxed));
        thread::sleep(len);
        Ok(Window {
            secs: t0.elapsed().as_secs_f64(),
            bytes: self.received.load(Ordering::Relaxed) - b0,
            flood_sent: flood.map_or(0, |g| g.sent.load(Ordering::Relaxed)) - sent0,
            flood_arrived: rig.counter.counts()?[code] - f0,
            challenge_acks: challenge()? - c0,
        })
    }

    /// Stop both ends; the client's error if the connection broke.
    fn finish(mut self) -> Option<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.client_err
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A TCP counter of the calling thread's namespace (`/proc/net/netstat`,
/// `TcpExt:` lines).
fn tcp_ext(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}
