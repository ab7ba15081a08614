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
//! namespaces, named after the test's tag and this process id, and its
//! guard deletes them (and stops rstwall) even when the test fails.
//!
//! The binary under test is `target/<profile>/rstwall` ([`crate::rstwall_bin`]).
//!
//! Two veth details the lab has to take care of, both invisible on real
//! NICs: the hosts' veths do no TX checksum offload (a frame handed to
//! AF_XDP keeps a partial checksum otherwise, and the server would drop
//! it), and have GRO on (veth accepts frames redirected to it by XDP only
//! when its peer runs NAPI). Both are set with the ethtool ioctl.
//!
//! Sockets are opened from threads that joined a namespace with setns(2);
//! the few syscalls std does not wrap are declared in [`ffi`].

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rstwall_lab::packet::{self, Segment};
use rstwall_lab::sys;
use serde_json::Value;

use crate::rstwall_bin;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

pub mod ffi {
    use std::ffi::c_void;

    pub const AF_INET: i32 = 2;
    pub const AF_PACKET: i32 = 17;
    pub const SOCK_RAW: i32 = 3;
    pub const ETH_P_ALL: u16 = 0x0003;
    pub const SOL_SOCKET: i32 = 1;
    pub const SO_LINGER: i32 = 13;
    pub const SO_RCVTIMEO: i32 = 20;
    pub const ETHTOOL_STXCSUM: u32 = rstwall_lab::sys::ETHTOOL_STXCSUM;
    pub const ETHTOOL_SGRO: u32 = rstwall_lab::sys::ETHTOOL_SGRO;
    pub const SIGHUP: i32 = 1;
    pub const SIGTERM: i32 = 15;
    pub const SIGKILL: i32 = 9;

    extern "C" {
        pub fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
        pub fn setsockopt(fd: i32, level: i32, name: i32, val: *const c_void, len: u32) -> i32;
        pub fn sendto(
            fd: i32,
            buf: *const c_void,
            len: usize,
            flags: i32,
            addr: *const c_void,
            addrlen: u32,
        ) -> isize;
        pub fn geteuid() -> u32;
        pub fn kill(pid: i32, sig: i32) -> i32;
    }
}

pub fn require_root() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { ffi::geteuid() };
    assert_eq!(
        euid, 0,
        "the datapath tests need root (network namespaces, XDP, AF_XDP); run them as root"
    );
}

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sh_out(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(out.status.success(), "{args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `f` on a thread that has joined network namespace `ns`.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        s.spawn(|| enter_ns(ns).then(f))
            .join()
            .expect("namespace thread")
    })
    .unwrap_or_else(|| panic!("cannot enter network namespace {ns}"))
}

/// Spawn a thread in namespace `ns`.
pub fn spawn_in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let ns = ns.to_string();
    thread::spawn(move || {
        assert!(enter_ns(&ns), "cannot enter network namespace {ns}");
        f()
    })
}

pub fn enter_ns(ns: &str) -> bool {
    sys::enter_netns(ns).is_ok()
}

/// Set one ethtool flag (`ETHTOOL_S*`) of `ifname`, from inside its namespace.
pub fn ethtool_set(ifname: &str, cmd: u32, value: u32) {
    sys::ethtool_set(ifname, cmd, value)
        .unwrap_or_else(|e| panic!("ethtool {cmd:#x} on {ifname}: {e}"));
}

/// Create network namespace `ns` (replacing a stale one of that name),
/// IPv6 off (no neighbour discovery in the counts), loopback up.
pub fn add_netns(ns: &str) {
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
    sh(&["ip", "netns", "add", ns]);
    for key in ["all", "default", "lo"] {
        sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
        ]);
    }
    sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
}

/// The three namespaces and rstwall; everything is removed on drop.
pub struct Lab {
    pub client: String,
    pub appliance: String,
    pub server: String,
    pub rstwall: Option<Child>,
    pub dir: PathBuf,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        Lab::with_queues(tag, 1)
    }

    /// A lab whose four veths have `queues` RX and TX queues each.
    pub fn with_queues(tag: &str, queues: u32) -> Lab {
        require_root();
        let pid = std::process::id();
        let name = |role: &str| format!("rw{role}-{tag}-{pid}");
        let dir = std::env::temp_dir().join(format!("rstwall-dp-{tag}-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("lab dir");
        let lab = Lab {
            client: name("c"),
            appliance: name("a"),
            server: name("s"),
            rstwall: None,
            dir,
        };
        for ns in [&lab.client, &lab.appliance, &lab.server] {
            add_netns(ns);
        }
        let (c, a, s) = (&lab.client, &lab.appliance, &lab.server);
        let q = queues.to_string();
        let mq = ["numtxqueues", &q, "numrxqueues", &q];
        for (ns, host, port) in [(c, "c0", "pa"), (s, "s0", "pb")] {
            let mut args = vec!["ip", "-n", ns, "link", "add", host];
            args.extend(mq);
            args.extend(["type", "veth", "peer", "name", port]);
            args.extend(mq);
            args.extend(["netns", a]);
            sh(&args);
        }
        for (ns, dev) in [(c, "c0"), (s, "s0")] {
            in_ns(ns, || {
                ethtool_set(dev, ffi::ETHTOOL_STXCSUM, 0);
                ethtool_set(dev, ffi::ETHTOOL_SGRO, 1);
            });
        }
        for dev in ["pa", "pb"] {
            for key in ["all", "default", dev] {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    a,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
                ]);
            }
        }
        sh(&["ip", "-n", c, "addr", "add", "198.18.0.1/24", "dev", "c0"]);
        sh(&["ip", "-n", s, "addr", "add", "198.18.0.2/24", "dev", "s0"]);
        for (ns, dev) in [(c, "c0"), (a, "pa"), (a, "pb"), (s, "s0")] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        lab
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

    /// [`Lab::cli_ok`] of a `--json` command, parsed.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let text = self.cli_ok(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
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
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.appliance])
            .arg(rstwall_bin())
            .arg("run")
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
        // SAFETY: kill(2) on our own, still running child.
        let rc = unsafe { ffi::kill(child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Send `sig` to rstwall and wait for it; its exit status.
    pub fn stop_rstwall(&mut self, sig: i32) -> std::process::ExitStatus {
        let mut child = self.rstwall.take().expect("rstwall running");
        // `ip netns exec` execs the binary: the child is rstwall itself.
        // SAFETY: kill(2) on our own child.
        unsafe { ffi::kill(child.id() as i32, sig) };
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

    pub fn stats(&self) -> Value {
        let text = std::fs::read_to_string(self.stats_path())
            .unwrap_or_else(|e| panic!("stats file: {e}\n{}", self.log()));
        serde_json::from_str(&text).expect("stats JSON")
    }

    /// Wait until `pred` holds for the stats snapshot; the snapshot.
    pub fn wait_stats(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.stats();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "stats never showed {what}: {s:#}\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// XDP program ids attached to an appliance port.
    pub fn xdp_progs(&self, dev: &str) -> Vec<u64> {
        let out = sh_out(&[
            "ip",
            "-n",
            &self.appliance,
            "-d",
            "link",
            "show",
            "dev",
            dev,
        ]);
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
        for ns in [&self.client, &self.appliance, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
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

pub fn rst_count(stats: &Value, class: &str, key: &str) -> u64 {
    stats["rst"][class][key].as_u64().unwrap_or(0)
}

pub fn total(stats: &Value, path: &[&str]) -> u64 {
    let mut v = &stats["totals"];
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("totals.{} missing in {stats:#}", path.join(".")))
}

pub fn xdp_sum(stats: &Value, key: &str) -> u64 {
    stats["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| p["xdp"][key].as_u64().unwrap_or(0))
        .sum()
}

/// Deterministic bytes, unlike any TCP pattern a bug would produce.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
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
        src,
        dst,
        seq,
        ack: 0,
        flags: packet::RST,
        window: 0,
    }
    .to_ipv4(0)
    .to_vec()
}

/// Send raw IPv4 packets from namespace `ns` (IP_HDRINCL).
pub fn send_raw(ns: &str, packets: Vec<Vec<u8>>) {
    in_ns(ns, move || {
        let sender = sys::RawSender::open().expect("raw socket");
        for p in packets {
            sender.send(&p).expect("raw send");
        }
    });
}

/// Every frame seen on a namespace's interfaces while it runs.
pub struct Sniffer {
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Sniffer {
    pub fn start(ns: &str) -> Sniffer {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, st) = (frames.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = spawn_in_ns(ns, move || {
            // SAFETY: plain socket calls on a fd we own.
            let fd = unsafe {
                ffi::socket(ffi::AF_PACKET, ffi::SOCK_RAW, ffi::ETH_P_ALL.to_be() as i32)
            };
            assert!(
                fd >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            let tv = [0i64, 50_000]; // 50 ms receive timeout
                                     // SAFETY: valid timeval.
            unsafe {
                ffi::setsockopt(
                    fd,
                    ffi::SOL_SOCKET,
                    ffi::SO_RCVTIMEO,
                    tv.as_ptr().cast(),
                    16,
                )
            };
            // SAFETY: the fd is ours; File closes it.
            let mut sock = unsafe { File::from_raw_fd(fd) };
            ready_tx.send(()).unwrap();
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::Relaxed) {
                if let Ok(n) = sock.read(&mut buf) {
                    f.lock().unwrap().push(buf[..n].to_vec());
                }
            }
        });
        ready_rx.recv().expect("sniffer started");
        Sniffer {
            frames,
            stop,
            thread: Some(thread),
        }
    }

    /// TCP segments as (src, dst, seq, flags, payload length).
    pub fn segments(&self) -> Vec<(SocketAddrV4, SocketAddrV4, u32, u8, usize)> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter_map(|f| {
                if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[23] != 6 {
                    return None;
                }
                let ip = &f[14..];
                let ihl = (ip[0] & 0x0f) as usize * 4;
                let tot = u16::from_be_bytes([ip[2], ip[3]]) as usize;
                let tcp = &ip[ihl..];
                let doff = (tcp[12] >> 4) as usize * 4;
                let addr = |a: &[u8], p: &[u8]| {
                    SocketAddrV4::new(
                        Ipv4Addr::new(a[0], a[1], a[2], a[3]),
                        u16::from_be_bytes([p[0], p[1]]),
                    )
                };
                Some((
                    addr(&ip[12..16], &tcp[0..2]),
                    addr(&ip[16..20], &tcp[2..4]),
                    u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
                    tcp[13],
                    tot.saturating_sub(ihl + doff),
                ))
            })
            .collect()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn set_linger_zero(fd: RawFd) {
    let linger = [1i32, 0];
    // SAFETY: valid struct linger.
    let rc = unsafe {
        ffi::setsockopt(
            fd,
            ffi::SOL_SOCKET,
            ffi::SO_LINGER,
            linger.as_ptr().cast(),
            8,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
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
    let out = sh_out(&["ip", "-o", "-n", ns, "link", "show", "dev", ifname]);
    let ifindex: i32 = out
        .split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .expect("ifindex");
    in_ns(ns, move || {
        // SAFETY: plain socket calls on a fd we own.
        let fd = unsafe { ffi::socket(ffi::AF_PACKET, ffi::SOCK_RAW, 0) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` was just opened and is ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // struct sockaddr_ll: family, protocol, ifindex, hatype, pkttype,
        // halen, addr[8].
        let mut sll = [0u8; 20];
        sll[0..2].copy_from_slice(&(ffi::AF_PACKET as u16).to_ne_bytes());
        sll[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        for (i, f) in frames.iter().enumerate() {
            // SAFETY: valid buffer and sockaddr_ll.
            let n = unsafe {
                ffi::sendto(
                    fd.as_raw_fd(),
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    sll.as_ptr().cast(),
                    20,
                )
            };
            assert_eq!(
                n,
                f.len() as isize,
                "frame {}: {}",
                i + 1,
                std::io::Error::last_os_error()
            );
            // veth queues a few hundred frames for its NAPI: stay below that.
            if i % 16 == 15 {
                thread::sleep(Duration::from_millis(2));
            }
        }
    });
}

/// Write `policy` into the lab's directory; its path.
pub fn policy_file(lab: &Lab, policy: &str) -> String {
    let path = lab.dir.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    path.to_str().unwrap().to_string()
}

/// The engine's count of policy decisions for `reason` (by index).
pub fn reason_count(stats: &Value, reason: rstwall_engine::policy::Reason) -> u64 {
    stats["totals"]["counters"]["reasons"][reason.index()]
        .as_u64()
        .unwrap_or_else(|| panic!("totals.counters.reasons missing in {stats:#}"))
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
