//! The network-namespace lab of the end-to-end tests, shared by the
//! integration tests' `datapath` and `daemon` modules.
//!
//! ```text
//!   client ns            appliance ns                 server ns
//!   c0 198.18.0.1/24 ─veth─ pa ══ rstwall run ══ pb ─veth─ s0 198.18.0.2/24
//! ```
//!
//! Client and server share a /24, so the appliance is a pure bump in the
//! wire: what reaches the server went through rstwall's XDP program and its
//! AF_XDP workers, or through the program's in-kernel bypass.
//!
//! A lab needs root (network namespaces, XDP, AF_XDP) and fails loudly
//! without it: its tests are never skipped. Each lab builds its own
//! namespaces with rstwall-netlab's guard, named after the test's tag and
//! this process id, and deletes them (and stops rstwall) even when the test
//! fails.
//!
//! The binary under test is `target/<profile>/rstwall` ([`crate::rstwall_bin`]).
//!
//! Two veth details the lab has to take care of, both invisible on real
//! NICs: the hosts' veths do no TX checksum offload (a frame handed to
//! AF_XDP keeps a partial checksum otherwise, and the server would drop
//! it), and have GRO on (veth accepts frames redirected to it by XDP only
//! when its peer runs NAPI). Both are set with netlab's ethtool.
//!
//! Sockets are opened from threads that joined a namespace with setns(2)
//! ([`in_ns`]).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rstwall_api::stats::afxdp::{XskTotals, XskWorker};
use rstwall_api::stats::Worker;
use rstwall_api::{Client, Stats};
use rstwall_engine::wire::TcpFlags;
use rstwall_netlab::ethtool::{self, Offload};
use rstwall_netlab::packet::Segment;
use rstwall_netlab::{
    rng, signal_process, sock, FrameSender, LinkCounters, Namespaces, Netns, RawSender, Recorder,
    Veth,
};
use serde::de::DeserializeOwned;

use crate::rstwall_bin;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

#[track_caller]
pub fn require_root() {
    rstwall_netlab::require_root("the datapath tests");
}

/// A `rstwall lab` driven through the binary as an operator runs it: its
/// name and directory, unique to this test process and `tag`.
pub struct CliLab {
    pub name: String,
    pub dir: PathBuf,
}

impl CliLab {
    /// Needs root; `dir_prefix` names the directory under the temporary one.
    pub fn new(tag: &str, dir_prefix: &str) -> CliLab {
        require_root();
        let pid = std::process::id();
        CliLab {
            name: format!("t{pid}-{tag}"),
            dir: std::env::temp_dir().join(format!("{dir_prefix}-{tag}-{pid}")),
        }
    }

    /// `rstwall ARGS --name NAME --dir DIR`, its output.
    pub fn rstwall(&self, args: &[&str]) -> Output {
        Command::new(rstwall_bin())
            .args(args)
            .args(["--name", &self.name, "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("run rstwall")
    }

    /// The lab's namespace of `role` (`appliance`, `server`, ...).
    pub fn namespace(&self, role: &str) -> String {
        format!("rwlab-{}-{role}", self.name)
    }
}

/// Run `f` with this thread in network namespace `ns` (by name), then
/// bring it back; sockets `f` opens stay in `ns`.
#[track_caller]
pub fn in_ns<T>(ns: &str, f: impl FnOnce() -> T) -> T {
    netns(ns)
        .run(f)
        .unwrap_or_else(|e| panic!("cannot enter network namespace {ns}: {e}"))
}

/// Spawn a thread in namespace `ns`.
#[track_caller]
pub fn spawn_in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    netns(ns)
        .spawn(f)
        .unwrap_or_else(|e| panic!("network namespace {ns}: {e}"))
}

#[track_caller]
fn netns(name: &str) -> Netns {
    Netns::open(name).unwrap_or_else(|e| panic!("{e}"))
}

/// The three namespaces and rstwall; everything is removed on drop.
pub struct Lab {
    /// The namespaces' names.
    pub client: String,
    pub appliance: String,
    pub server: String,
    pub rstwall: Option<Child>,
    pub dir: PathBuf,
    namespaces: Namespaces,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        Lab::with_queues(tag, 1)
    }

    /// A lab whose four veths have `queues` RX and TX queues each.
    pub fn with_queues(tag: &str, queues: u32) -> Lab {
        require_root();
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("rstwall-dp-{tag}-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("lab dir");
        let mut namespaces = Namespaces::unique(tag);
        let mut add = |role| namespaces.add(role).expect("network namespace");
        let (c, a, s) = (add("c"), add("a"), add("s"));
        let veth = Veth {
            queues: Some(queues),
            ..Veth::default()
        };
        for (ns, host, port, addr) in [(&c, "c0", "pa", CLIENT), (&s, "s0", "pb", SERVER)] {
            ns.add_veth(host, &a, port, &veth).expect("veth");
            ns.run(|| {
                ethtool::set(host, Offload::TxChecksum, false)?;
                ethtool::set(host, Offload::Gro, true)
            })
            .and_then(|r| r)
            .unwrap_or_else(|e| panic!("offloads of {host}: {e}"));
            ns.add_addr(host, &format!("{addr}/24")).expect("address");
            ns.set_up(host).expect("link up");
        }
        a.disable_ipv6(&["pa", "pb"]).expect("IPv6 off");
        for dev in ["pa", "pb"] {
            a.set_up(dev).expect("link up");
        }
        Lab {
            client: c.name().to_string(),
            appliance: a.name().to_string(),
            server: s.name().to_string(),
            rstwall: None,
            dir,
            namespaces,
        }
    }

    /// The namespace of the client, the appliance or the server.
    pub fn netns(&self, name: &str) -> &Netns {
        self.namespaces
            .all()
            .iter()
            .find(|ns| ns.name() == name)
            .unwrap_or_else(|| panic!("{name} is not a namespace of this lab"))
    }

    /// Frames the hosts' veths (c0, s0) dropped on their way to the
    /// appliance so far: their peer's queue was full (a burst, a busy
    /// machine), so rstwall never saw them.
    pub fn link_drops(&self) -> u64 {
        [(&self.client, "c0"), (&self.server, "s0")]
            .into_iter()
            .map(|(ns, dev)| {
                in_ns(ns, || LinkCounters::of(dev))
                    .unwrap_or_else(|e| panic!("{dev}'s counters: {e}"))
                    .tx_dropped
            })
            .sum()
    }

    pub fn refs(&self) -> LabRef {
        LabRef {
            client: self.client.clone(),
            server: self.server.clone(),
        }
    }

    pub fn stats_path(&self) -> PathBuf {
        self.dir.join("stats.json")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("rstwall.log")
    }

    /// Where the daemons of this lab keep their state (`--state-dir`): one
    /// per lab, since a state directory is locked by the rstwall using it.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The lab's control socket: Unix socket paths are not per network
    /// namespace, so every lab needs its own.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("rstwall.sock")
    }

    /// Run a client command (`rstwall ARGS --socket <the lab's socket>`)
    /// to its end.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(rstwall_bin())
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .stdin(Stdio::null())
            .output()
            .expect("run rstwall")
    }

    /// [`Lab::cli`] that must succeed; its standard output.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "rstwall {}: {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// [`Lab::cli_ok`] of a `--json` command, read as the document it
    /// prints (a type of [`rstwall_api`]).
    #[track_caller]
    pub fn cli_json<T: DeserializeOwned>(&self, args: &[&str]) -> T {
        let text = self.cli_ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// A client of the lab's daemon (its control socket).
    pub fn client(&self) -> Client {
        Client::at(self.socket())
    }

    /// Start `rstwall run` in the appliance namespace, with the lab's
    /// statistics file (every 0.2 s), state directory and control socket,
    /// and wait until it has registered its sockets (its first stats
    /// snapshot).
    pub fn start_rstwall(&mut self, args: &[&str]) {
        let (stats, state, socket) = (self.stats_path(), self.state_dir(), self.socket());
        let mut all = vec![
            "--stats-interval",
            "0.2",
            "--stats-json",
            stats.to_str().expect("UTF-8 path"),
            "--state-dir",
            state.to_str().expect("UTF-8 path"),
            "--control-socket",
            socket.to_str().expect("UTF-8 path"),
        ];
        all.extend_from_slice(args);
        self.start_rstwall_exact(&all);
    }

    /// Start `rstwall run ARGS` in the appliance namespace with nothing
    /// added, and wait until the lab's stats file appears (the arguments or
    /// the config file must name it as the stats JSON).
    pub fn start_rstwall_exact(&mut self, args: &[&str]) {
        assert!(self.rstwall.is_none(), "rstwall already running");
        let stats = self.stats_path();
        let _ = std::fs::remove_file(&stats);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut cmd = self.netns(&self.appliance).command(rstwall_bin());
        cmd.arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("start rstwall");
        self.rstwall = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stats.exists() {
            if let Some(st) = self.rstwall.as_mut().unwrap().try_wait().unwrap() {
                self.rstwall = None;
                panic!("rstwall exited at start-up ({st}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "rstwall did not start:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send `sig` to the running rstwall (SIGHUP: reload), without waiting.
    pub fn signal_rstwall(&self, sig: i32) {
        let child = self.rstwall.as_ref().expect("rstwall running");
        assert!(
            signal_process(child.id(), sig),
            "kill: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Send `sig` to rstwall and wait for it; its exit status.
    pub fn stop_rstwall(&mut self, sig: i32) -> std::process::ExitStatus {
        let mut child = self.rstwall.take().expect("rstwall running");
        // `ip netns exec` execs the binary: the child is rstwall itself.
        signal_process(child.id(), sig);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("rstwall did not stop on signal {sig}:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The statistics file (`--stats-json`), as the daemon last wrote it.
    pub fn stats(&self) -> Stats {
        let text = std::fs::read_to_string(self.stats_path())
            .unwrap_or_else(|e| panic!("stats file: {e}\n{}", self.log()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("stats JSON: {e}\n{text}"))
    }

    /// Wait until `pred` holds for the stats snapshot; the snapshot.
    pub fn wait_stats(&self, what: &str, pred: impl Fn(&Stats) -> bool) -> Stats {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.stats();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "stats never showed {what}: {s:#?}\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// XDP program ids attached to an appliance port.
    pub fn xdp_progs(&self, dev: &str) -> Vec<u64> {
        let out = self
            .netns(&self.appliance)
            .ip(&["-d", "link", "show", "dev", dev])
            .unwrap_or_else(|e| panic!("{e}"));
        out.split("prog/xdp id ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.rstwall.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The namespaces go with `self.namespaces`.
        if !thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("rstwall log kept in {}", self.dir.display());
        }
    }
}

/// Send `n` RSTs for no flow from spoofed client ports (`first_port..`)
/// to the server's port 5999.
pub fn send_no_flow_rsts(lab: &Lab, n: u16, first_port: u16) {
    let packets = (0..n)
        .map(|i| {
            rst_packet(
                SocketAddrV4::new(CLIENT, first_port + i),
                SocketAddrV4::new(SERVER, 5999),
                0x1234_5678u32.wrapping_mul(u32::from(i) + 1),
            )
        })
        .collect();
    send_raw(&lab.client, packets);
}

/// What the AF_XDP source adds to the totals (the lab runs no other).
#[track_caller]
pub fn xsk(stats: &Stats) -> &XskTotals {
    stats
        .totals
        .source
        .afxdp
        .as_ref()
        .unwrap_or_else(|| panic!("no AF_XDP totals in {stats:#?}"))
}

/// What the AF_XDP source adds to one worker's statistics.
#[track_caller]
pub fn xsk_worker(worker: &Worker) -> &XskWorker {
    worker
        .source
        .afxdp
        .as_ref()
        .unwrap_or_else(|| panic!("no AF_XDP part in {worker:#?}"))
}

/// Deterministic bytes, unlike any TCP pattern a bug would produce.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng::seeded(seed).fill(&mut bytes);
    bytes
}

pub fn server_listener(lab: &Lab, port: u16) -> TcpListener {
    in_ns(&lab.server, || {
        TcpListener::bind(SocketAddrV4::new(SERVER, port)).expect("server listen")
    })
}

pub fn connect(lab: &Lab, port: u16) -> std::io::Result<TcpStream> {
    connect_within(lab, port, Duration::from_secs(5))
}

pub fn connect_within(lab: &Lab, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    in_ns(&lab.client, || {
        TcpStream::connect_timeout(&SocketAddrV4::new(SERVER, port).into(), timeout)
    })
}

/// Send `data` over a fresh connection (`pace`: sleep between 64 KiB
/// chunks) and return what the server read.
pub fn transfer(lab: &Lab, port: u16, data: Arc<Vec<u8>>, pace: Option<Duration>) -> Vec<u8> {
    lab.refs().transfer(port, data, pace)
}

pub fn assert_same(sent: &[u8], got: &[u8]) {
    assert_eq!(
        got.len(),
        sent.len(),
        "bytes received differ from bytes sent"
    );
    if let Some(i) = sent.iter().zip(got).position(|(a, b)| a != b) {
        panic!("payload differs at byte {i}");
    }
}

/// An IPv4 + TCP RST from `src` to `dst`, checksums filled in.
pub fn rst_packet(src: SocketAddrV4, dst: SocketAddrV4, seq: u32) -> Vec<u8> {
    Segment {
        src: src.into(),
        dst: dst.into(),
        seq,
        ack: 0,
        flags: TcpFlags::RST,
        window: 0,
    }
    .to_ip(0)
    .expect("two IPv4 addresses")
}

/// Send raw IPv4 packets from namespace `ns` (IP_HDRINCL).
pub fn send_raw(ns: &str, packets: Vec<Vec<u8>>) {
    in_ns(ns, move || {
        let sender = RawSender::open().expect("raw socket");
        for p in packets {
            sender.send(&p).expect("raw send");
        }
    });
}

/// Every frame seen on a namespace's interfaces while it runs.
pub struct Sniffer(Recorder);

impl Sniffer {
    #[track_caller]
    pub fn start(ns: &str) -> Sniffer {
        Sniffer(Recorder::start(&netns(ns)).unwrap_or_else(|e| panic!("sniffer in {ns}: {e}")))
    }

    /// IPv4 TCP segments as (src, dst, seq, flags, payload length).
    pub fn segments(&self) -> Vec<(SocketAddrV4, SocketAddrV4, u32, u8, usize)> {
        self.0
            .frames()
            .iter()
            .filter_map(|f| {
                let seg = f.segment()?;
                let (std::net::IpAddr::V4(src), std::net::IpAddr::V4(dst)) = (seg.src, seg.dst)
                else {
                    return None;
                };
                Some((
                    SocketAddrV4::new(src, seg.src_port),
                    SocketAddrV4::new(dst, seg.dst_port),
                    seg.seq,
                    seg.flags.0 as u8,
                    seg.payload_len as usize,
                ))
            })
            .collect()
    }
}

#[track_caller]
pub fn set_linger_zero(fd: RawFd) {
    sock::set_linger_zero(fd).unwrap_or_else(|e| panic!("SO_LINGER: {e}"));
}

/// The namespaces of a lab, for threads that outlive a borrow of it.
pub struct LabRef {
    pub client: String,
    pub server: String,
}

impl LabRef {
    pub fn transfer(&self, port: u16, data: Arc<Vec<u8>>, pace: Option<Duration>) -> Vec<u8> {
        let listener = in_ns(&self.server, || {
            TcpListener::bind(SocketAddrV4::new(SERVER, port)).expect("server listen")
        });
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).expect("server read");
            got
        });
        let mut c = in_ns(&self.client, || {
            TcpStream::connect_timeout(
                &SocketAddrV4::new(SERVER, port).into(),
                Duration::from_secs(5),
            )
        })
        .expect("connect");
        for chunk in data.chunks(64 * 1024) {
            c.write_all(chunk).expect("client write");
            if let Some(p) = pace {
                thread::sleep(p);
            }
        }
        c.shutdown(Shutdown::Write).unwrap();
        server.join().expect("server thread")
    }
}

/// Send raw Ethernet frames out of `ifname` in namespace `ns` (AF_PACKET).
pub fn send_frames(ns: &str, ifname: &str, frames: Vec<Vec<u8>>) {
    let sender = in_ns(ns, || FrameSender::open(ifname)).expect("packet socket");
    for (i, f) in frames.iter().enumerate() {
        sender
            .send(f)
            .unwrap_or_else(|e| panic!("frame {}: {e}", i + 1));
        // veth queues a few hundred frames for its NAPI: stay below that.
        if i % 16 == 15 {
            thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Write `policy` into the lab's directory; its path.
pub fn policy_file(lab: &Lab, policy: &str) -> String {
    let path = lab.dir.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    path.to_str().unwrap().to_string()
}

/// The engine's count of policy decisions for `reason`.
pub fn reason_count(stats: &Stats, reason: rstwall_engine::policy::Reason) -> u64 {
    stats.totals.counters.reasons[reason.index()]
}

/// One request, echoed back by the server: the connection works end to end.
pub fn echo_once(lab: &Lab, port: u16) -> std::io::Result<()> {
    let listener = server_listener(lab, port);
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept()?;
        let mut buf = [0u8; 64];
        s.read_exact(&mut buf)?;
        s.write_all(&buf)
    });
    let mut c = connect_within(lab, port, Duration::from_secs(3))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    let req = payload(64, u64::from(port));
    c.write_all(&req)?;
    let mut back = [0u8; 64];
    c.read_exact(&mut back)?;
    assert_eq!(back[..], req[..], "echo differs");
    server.join().expect("server thread")
}
