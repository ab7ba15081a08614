//! The live datapath: `rstwall run` between real kernel TCP stacks.
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
//! These tests need root (network namespaces, XDP, AF_XDP) and fail loudly
//! without it: they are never skipped. Each test builds its own namespaces,
//! named after the test and this process id, and a guard deletes them (and
//! stops rstwall) even when the test fails.
//!
//! The binary under test is `target/<profile>/rstwall`, found beside this
//! test binary (`target/<profile>/deps/..`): `CARGO_BIN_EXE_rstwall` exists
//! only for tests in the binary's own crate. `scripts/test` builds it
//! before running the tests; on its own, run `cargo build -p
//! rstwall-control` first.
//!
//! Two veth details the lab has to take care of, both invisible on real
//! NICs: the hosts' veths do no TX checksum offload (a frame handed to
//! AF_XDP keeps a partial checksum otherwise, and the server would drop
//! it), and have GRO on (veth accepts frames redirected to it by XDP only
//! when its peer runs NAPI). Both are set with the ethtool ioctl.
//!
//! Sockets are opened from threads that joined a namespace with setns(2);
//! the few syscalls std does not wrap are declared below.

use std::ffi::c_void;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

mod ffi {
    use std::ffi::c_void;

    pub const AF_INET: i32 = 2;
    pub const AF_PACKET: i32 = 17;
    pub const SOCK_RAW: i32 = 3;
    pub const IPPROTO_RAW: i32 = 255;
    pub const ETH_P_ALL: u16 = 0x0003;
    pub const SOL_SOCKET: i32 = 1;
    pub const SO_LINGER: i32 = 13;
    pub const SO_RCVTIMEO: i32 = 20;
    pub const CLONE_NEWNET: i32 = 0x4000_0000;
    pub const SIOCETHTOOL: u64 = 0x8946;
    pub const ETHTOOL_STXCSUM: u32 = 0x17;
    pub const ETHTOOL_SGRO: u32 = 0x2c;
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
        pub fn ioctl(fd: i32, request: u64, ...) -> i32;
        pub fn setns(fd: i32, nstype: i32) -> i32;
        pub fn geteuid() -> u32;
        pub fn kill(pid: i32, sig: i32) -> i32;
    }
}

fn require_root() {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { ffi::geteuid() };
    assert_eq!(
        euid, 0,
        "the datapath tests need root (network namespaces, XDP, AF_XDP); run them as root"
    );
}

/// `target/<profile>/rstwall`, beside the directory of this test binary.
fn rstwall_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .join("rstwall");
    assert!(
        bin.is_file(),
        "{} not found: build it first (cargo build -p rstwall-control; scripts/test does)",
        bin.display()
    );
    bin
}

fn sh(args: &[&str]) {
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

fn sh_out(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(out.status.success(), "{args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `f` on a thread that has joined network namespace `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        s.spawn(|| enter_ns(ns).then(f))
            .join()
            .expect("namespace thread")
    })
    .unwrap_or_else(|| panic!("cannot enter network namespace {ns}"))
}

/// Spawn a thread in namespace `ns`.
fn spawn_in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let ns = ns.to_string();
    thread::spawn(move || {
        assert!(enter_ns(&ns), "cannot enter network namespace {ns}");
        f()
    })
}

fn enter_ns(ns: &str) -> bool {
    let Ok(f) = File::open(format!("/run/netns/{ns}")) else {
        return false;
    };
    // SAFETY: setns on a namespace fd; affects the calling thread only.
    unsafe { ffi::setns(f.as_raw_fd(), ffi::CLONE_NEWNET) == 0 }
}

/// Set one ethtool flag (`ETHTOOL_S*`) of `ifname`, from inside its namespace.
fn ethtool_set(ifname: &str, cmd: u32, value: u32) {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").expect("ioctl socket");
    let mut val = [cmd, value];
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        data: *mut c_void,
        _pad: [u8; 16],
    }
    let mut req = IfReq {
        name: [0; 16],
        data: val.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: a valid ifreq pointing at a valid ethtool_value.
    let rc = unsafe { ffi::ioctl(sock.as_raw_fd(), ffi::SIOCETHTOOL, &mut req as *mut IfReq) };
    assert_eq!(
        rc,
        0,
        "ethtool {cmd:#x} on {ifname}: {}",
        std::io::Error::last_os_error()
    );
}

/// The three namespaces and rstwall; everything is removed on drop.
struct Lab {
    client: String,
    appliance: String,
    server: String,
    rstwall: Option<Child>,
    dir: PathBuf,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        Lab::with_queues(tag, 1)
    }

    /// A lab whose four veths have `queues` RX and TX queues each.
    fn with_queues(tag: &str, queues: u32) -> Lab {
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

    fn refs(&self) -> LabRef {
        LabRef {
            client: self.client.clone(),
            server: self.server.clone(),
        }
    }

    fn stats_path(&self) -> PathBuf {
        self.dir.join("stats.json")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("rstwall.log")
    }

    /// Start `rstwall run` in the appliance namespace and wait until it has
    /// registered its sockets (its first stats snapshot).
    fn start_rstwall(&mut self, args: &[&str]) {
        assert!(self.rstwall.is_none(), "rstwall already running");
        let _ = std::fs::remove_file(self.stats_path());
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let stats = self.stats_path();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.appliance])
            .arg(rstwall_bin())
            .args(["run", "--stats-interval", "0.2", "--stats-json"])
            .arg(&stats)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = cmd.spawn().expect("start rstwall");
        self.rstwall = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !stats.exists() {
            if let Some(st) = self.rstwall.as_mut().unwrap().try_wait().unwrap() {
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

    /// Send `sig` to rstwall and wait for it; its exit status.
    fn stop_rstwall(&mut self, sig: i32) -> std::process::ExitStatus {
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

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn stats(&self) -> Value {
        let text = std::fs::read_to_string(self.stats_path())
            .unwrap_or_else(|e| panic!("stats file: {e}\n{}", self.log()));
        serde_json::from_str(&text).expect("stats JSON")
    }

    /// Wait until `pred` holds for the stats snapshot; the snapshot.
    fn wait_stats(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
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
    fn xdp_progs(&self, dev: &str) -> Vec<u64> {
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

fn rst_count(stats: &Value, class: &str, key: &str) -> u64 {
    stats["rst"][class][key].as_u64().unwrap_or(0)
}

fn total(stats: &Value, path: &[&str]) -> u64 {
    let mut v = &stats["totals"];
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("totals.{} missing in {stats:#}", path.join(".")))
}

fn xdp_sum(stats: &Value, key: &str) -> u64 {
    stats["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| p["xdp"][key].as_u64().unwrap_or(0))
        .sum()
}

/// Deterministic bytes, unlike any TCP pattern a bug would produce.
fn payload(len: usize, seed: u64) -> Vec<u8> {
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

fn server_listener(lab: &Lab, port: u16) -> TcpListener {
    in_ns(&lab.server, || {
        TcpListener::bind(SocketAddrV4::new(SERVER, port)).expect("server listen")
    })
}

fn connect(lab: &Lab, port: u16) -> std::io::Result<TcpStream> {
    connect_within(lab, port, Duration::from_secs(5))
}

fn connect_within(lab: &Lab, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    in_ns(&lab.client, || {
        TcpStream::connect_timeout(&SocketAddrV4::new(SERVER, port).into(), timeout)
    })
}

/// Send `data` over a fresh connection (`pace`: sleep between 64 KiB
/// chunks) and return what the server read.
fn transfer(lab: &Lab, port: u16, data: Arc<Vec<u8>>, pace: Option<Duration>) -> Vec<u8> {
    lab.refs().transfer(port, data, pace)
}

fn assert_same(sent: &[u8], got: &[u8]) {
    assert_eq!(
        got.len(),
        sent.len(),
        "bytes received differ from bytes sent"
    );
    if let Some(i) = sent.iter().zip(got).position(|(a, b)| a != b) {
        panic!("payload differs at byte {i}");
    }
}

#[test]
fn inline_bulk_transfer_and_short_connections_pass_unchanged() {
    let mut lab = Lab::new("bulk");
    lab.start_rstwall(&["--inline", "pa,pb"]);

    let data = Arc::new(payload(20 * 1024 * 1024, 7));
    let got = transfer(&lab, 5001, data.clone(), None);
    assert_same(&data, &got);

    // 200 short connections: request, echo, close.
    let listener = server_listener(&lab, 5002);
    let server = thread::spawn(move || {
        for _ in 0..200 {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 1000];
            s.read_exact(&mut buf).expect("server read");
            s.write_all(&buf).expect("server write");
        }
    });
    for i in 0..200u64 {
        let mut c = connect(&lab, 5002).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = payload(1000, i + 100);
        c.write_all(&req).unwrap();
        let mut back = vec![0u8; 1000];
        c.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(back, req, "connection {i}: echo differs");
    }
    server.join().expect("server");

    let s = lab.wait_stats("the connections' FINs", |s| {
        total(s, &["counters", "fin"]) >= 402
    });
    assert!(total(&s, &["counters", "tcp"]) > 14_000, "{s:#}");
    assert_eq!(total(&s, &["counters", "dropped"]), 0);
    assert_eq!(total(&s, &["frames", "ledger_errors"]), 0);
    assert_eq!(total(&s, &["frames", "leaked"]), 0);
    assert_eq!(total(&s, &["tx_ring_full_drops"]), 0);
    assert_eq!(xdp_sum(&s, "bypassed"), 0, "TCP bypassed the workers");
    assert!(xdp_sum(&s, "to_xsk") > 14_000);
    assert_eq!(s["xsk_mode"], "copy", "veth has no zero-copy");

    let st = lab.stop_rstwall(ffi::SIGTERM);
    assert!(st.success(), "rstwall exit {st}:\n{}", lab.log());
    let s = lab.stats();
    assert_eq!(s["final"], true);
    for dev in ["pa", "pb"] {
        assert!(
            lab.xdp_progs(dev).is_empty(),
            "XDP left on {dev} after SIGTERM"
        );
    }
}

#[test]
fn connection_to_closed_port_is_refused_and_counted() {
    let mut lab = Lab::new("refused");
    lab.start_rstwall(&["--inline", "pa,pb"]);
    let err = connect(&lab, 5999).expect_err("nothing listens on 5999");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    let s = lab.wait_stats("a refused RST", |s| rst_count(s, "refused", "total") >= 1);
    assert_eq!(rst_count(&s, "refused", "passed"), 1);
    assert_eq!(total(&s, &["counters", "failed_connects"]), 1);
}

/// An IPv4 + TCP RST from `src` to `dst`, checksums filled in.
fn rst_packet(src: SocketAddrV4, dst: SocketAddrV4, seq: u32) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&40u16.to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&src.ip().octets());
    p[16..20].copy_from_slice(&dst.ip().octets());
    let ip_sum = checksum(&p[..20], 0);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let t = 20;
    p[t..t + 2].copy_from_slice(&src.port().to_be_bytes());
    p[t + 2..t + 4].copy_from_slice(&dst.port().to_be_bytes());
    p[t + 4..t + 8].copy_from_slice(&seq.to_be_bytes());
    p[t + 12] = 5 << 4;
    p[t + 13] = 0x04; // RST
    let mut pseudo = 0u32;
    for c in p[12..20].chunks(2) {
        pseudo += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    pseudo += 6 + 20;
    let tcp_sum = checksum(&p[t..], pseudo);
    p[t + 16..t + 18].copy_from_slice(&tcp_sum.to_be_bytes());
    p
}

fn checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for c in bytes.chunks(2) {
        sum += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Send raw IPv4 packets from namespace `ns` (IP_HDRINCL).
fn send_raw(ns: &str, packets: Vec<Vec<u8>>) {
    in_ns(ns, move || {
        // SAFETY: plain socket calls on a fd we own.
        let fd = unsafe { ffi::socket(ffi::AF_INET, ffi::SOCK_RAW, ffi::IPPROTO_RAW) };
        assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just opened and is ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        for p in packets {
            let mut sa = [0u8; 16];
            sa[0..2].copy_from_slice(&(ffi::AF_INET as u16).to_ne_bytes());
            sa[4..8].copy_from_slice(&p[16..20]);
            // SAFETY: valid buffer and sockaddr_in.
            let n = unsafe {
                ffi::sendto(
                    fd.as_raw_fd(),
                    p.as_ptr().cast(),
                    p.len(),
                    0,
                    sa.as_ptr().cast(),
                    16,
                )
            };
            assert_eq!(
                n,
                p.len() as isize,
                "raw send: {}",
                std::io::Error::last_os_error()
            );
        }
    });
}

/// Every frame seen on a namespace's interfaces while it runs.
struct Sniffer {
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Sniffer {
    fn start(ns: &str) -> Sniffer {
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
    fn segments(&self) -> Vec<(SocketAddrV4, SocketAddrV4, u32, u8, usize)> {
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

fn set_linger_zero(fd: RawFd) {
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

#[test]
fn enforce_drops_spoofed_rsts_and_passes_a_real_abort() {
    let mut lab = Lab::new("enforce");
    let policy = lab.dir.join("policy.toml");
    std::fs::write(
        &policy,
        "mode = \"enforce\"\n[actions]\nno_flow = \"drop\"\n",
    )
    .unwrap();
    lab.start_rstwall(&["--inline", "pa,pb", "--policy", policy.to_str().unwrap()]);

    let client_sniff = Sniffer::start(&lab.client);
    let server_sniff = Sniffer::start(&lab.server);
    let listener = server_listener(&lab, 5003);
    let (to_server, from_test) = std::sync::mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the test says the spoofing is over and the abort sent.
        loop {
            match s.read(&mut buf) {
                Ok(0) => return (got, Ok(())),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.ends_with(b"ping 2") {
                        from_test.recv().unwrap();
                    }
                }
                Err(e) => return (got, Err(e)),
            }
        }
    });
    let mut c = connect(&lab, 5003).expect("connect");
    c.write_all(b"ping 1").unwrap();
    thread::sleep(Duration::from_millis(300));

    // The client's next sequence number, from what it has sent.
    let client = SocketAddrV4::new(CLIENT, c.local_addr().unwrap().port());
    let server_addr = SocketAddrV4::new(SERVER, 5003);
    let ends: Vec<u32> = client_sniff
        .segments()
        .iter()
        .filter(|(src, dst, ..)| *src == client && *dst == server_addr)
        .map(|(_, _, seq, flags, len)| seq.wrapping_add(*len as u32 + u32::from(flags & 0x03 != 0)))
        .collect();
    let first = *ends.first().expect("client segments sniffed");
    let snd_nxt = *ends.iter().max_by_key(|e| e.wrapping_sub(first)).unwrap();

    let stray = SocketAddrV4::new(CLIENT, 1);
    send_raw(
        &lab.client,
        vec![
            rst_packet(client, server_addr, snd_nxt.wrapping_add(0x4000_0000)), // out_of_window
            rst_packet(client, server_addr, snd_nxt.wrapping_add(100)),         // in_window
            rst_packet(stray, server_addr, 12345),                              // no_flow
        ],
    );
    let s = lab.wait_stats("three spoofed RSTs", |s| {
        ["out_of_window", "in_window", "no_flow"]
            .iter()
            .all(|k| rst_count(s, k, "total") >= 1)
    });
    for k in ["out_of_window", "in_window", "no_flow"] {
        assert_eq!(rst_count(&s, k, "dropped"), 1, "{k} not dropped: {s:#}");
    }

    // The connection lives: data still flows.
    c.write_all(b"ping 2").unwrap();
    thread::sleep(Duration::from_millis(300));
    let rsts_at_server = server_sniff
        .segments()
        .iter()
        .filter(|(_, dst, _, flags, _)| dst.port() == 5003 && flags & 0x04 != 0)
        .count();
    assert_eq!(rsts_at_server, 0, "a spoofed RST reached the server");

    // A real abort: SO_LINGER 0 and close sends a RST at exactly SND.NXT.
    set_linger_zero(c.as_raw_fd());
    drop(c);
    to_server.send(()).unwrap();
    let (got, result) = server.join().expect("server");
    assert_eq!(got, b"ping 1ping 2", "data lost or changed");
    let err = result.expect_err("the abort reset the server's connection");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let s = lab.wait_stats("the abort", |s| rst_count(s, "abort", "total") >= 1);
    assert_eq!(rst_count(&s, "abort", "passed"), 1, "{s:#}");
    assert_eq!(rst_count(&s, "abort", "dropped"), 0);
}

#[test]
fn fail_open_on_sigkill_then_restart_takes_over() {
    let mut lab = Lab::new("failopen");
    lab.start_rstwall(&["--inline", "pa,pb"]);
    let first = (lab.xdp_progs("pa"), lab.xdp_progs("pb"));
    assert_eq!(
        (first.0.len(), first.1.len()),
        (1, 1),
        "one XDP program per port"
    );

    // ~3 s transfer; rstwall is killed one second in.
    let data = Arc::new(payload(12 * 1024 * 1024, 11));
    let t = {
        let (refs, d) = (lab.refs(), data.clone());
        thread::spawn(move || refs.transfer(5004, d, Some(Duration::from_millis(15))))
    };
    thread::sleep(Duration::from_secs(1));
    let st = lab.stop_rstwall(ffi::SIGKILL);
    assert!(!st.success());
    let got = t.join().expect("transfer");
    assert_same(&data, &got);
    assert_eq!(
        (lab.xdp_progs("pa"), lab.xdp_progs("pb")),
        first,
        "the XDP programs stay after a crash"
    );

    // Restart: the stale programs are replaced, not stacked.
    lab.start_rstwall(&["--inline", "pa,pb"]);
    let second = (lab.xdp_progs("pa"), lab.xdp_progs("pb"));
    assert_eq!(
        (second.0.len(), second.1.len()),
        (1, 1),
        "exactly one XDP program per port"
    );
    let data = Arc::new(payload(2 * 1024 * 1024, 13));
    let got = transfer(&lab, 5005, data.clone(), None);
    assert_same(&data, &got);
    let s = lab.wait_stats("traffic through the new workers", |s| {
        total(s, &["counters", "tcp"]) > 1000
    });
    assert_eq!(xdp_sum(&s, "bypassed"), 0, "{s:#}");
    let st = lab.stop_rstwall(ffi::SIGTERM);
    assert!(st.success(), "{}", lab.log());
    assert!(lab.xdp_progs("pa").is_empty() && lab.xdp_progs("pb").is_empty());
}

/// The namespaces of a lab, for threads that outlive a borrow of it.
struct LabRef {
    client: String,
    server: String,
}

impl LabRef {
    fn transfer(&self, port: u16, data: Arc<Vec<u8>>, pace: Option<Duration>) -> Vec<u8> {
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
fn send_frames(ns: &str, ifname: &str, frames: Vec<Vec<u8>>) {
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

#[test]
fn tap_counts_equal_offline_analysis_of_the_same_frames() {
    let mut lab = Lab::new("tap");
    let (feeder, appliance) = (lab.client.clone(), lab.appliance.clone());
    sh(&[
        "ip", "-n", &feeder, "link", "add", "tp", "type", "veth", "peer", "name", "t0", "netns",
        &appliance,
    ]);
    sh(&["ip", "-n", &feeder, "link", "set", "tp", "up"]);
    sh(&["ip", "-n", &appliance, "link", "set", "t0", "up"]);
    lab.start_rstwall(&["--tap", "t0"]);

    let pcap = rstwall_tests::repo_root().join("samples/demo.pcap");
    let mut reader = rstwall_datapath::capture::CaptureReader::open(&pcap).expect("demo.pcap");
    let mut frames = Vec::new();
    while let Some(f) = reader.next_frame().expect("demo.pcap frame") {
        assert_eq!(f.linktype, 1, "demo.pcap is Ethernet");
        frames.push(f.data.to_vec());
    }
    let n = frames.len() as u64;
    send_frames(&feeder, "tp", frames);
    let live = lab.wait_stats("every frame", |s| total(s, &["counters", "frames"]) >= n);

    let out = Command::new(rstwall_bin())
        .args(["analyze", "--json"])
        .arg(&pcap)
        .output()
        .expect("rstwall analyze");
    assert!(out.status.success());
    let offline: Value = serde_json::from_slice(&out.stdout).expect("analyze JSON");
    assert_eq!(
        live["totals"]["counters"], offline["counters"],
        "live tap counters differ from rstwall analyze"
    );
    assert_eq!(xdp_sum(&live, "to_xsk"), n);
    assert_eq!(total(&live, &["frames", "ledger_errors"]), 0);
    let st = lab.stop_rstwall(ffi::SIGTERM);
    assert!(st.success(), "{}", lab.log());
    assert!(lab.xdp_progs("t0").is_empty(), "XDP left on t0");
}

#[test]
fn two_queues_get_two_pinned_workers() {
    let mut lab = Lab::with_queues("mq", 2);
    lab.start_rstwall(&["--inline", "pa,pb"]);
    let data = Arc::new(payload(4 * 1024 * 1024, 17));
    let got = transfer(&lab, 5006, data.clone(), None);
    assert_same(&data, &got);
    let s = lab.wait_stats("the transfer", |s| total(s, &["counters", "fin"]) >= 2);
    let workers = s["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "one worker per queue: {s:#}");
    for (i, w) in workers.iter().enumerate() {
        assert_eq!(w["queue"], i as u64);
        let ports: Vec<&str> = w["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["port"].as_str().unwrap())
            .collect();
        assert_eq!(ports, ["pa", "pb"], "a worker owns queue {i} of both ports");
    }
    let cpus: Vec<u64> = workers.iter().filter_map(|w| w["cpu"].as_u64()).collect();
    assert_eq!(cpus.len(), 2, "both workers pinned: {s:#}");
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        assert_ne!(cpus[0], cpus[1], "workers spread over CPUs");
    }
    assert_eq!(total(&s, &["frames", "ledger_errors"]), 0);
    assert_eq!(xdp_sum(&s, "bypassed"), 0);
}

/// Write `policy` into the lab's directory; its path.
fn policy_file(lab: &Lab, policy: &str) -> String {
    let path = lab.dir.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    path.to_str().unwrap().to_string()
}

/// The engine's count of policy decisions for `reason` (by index).
fn reason_count(stats: &Value, reason: rstwall_datapath::policy::Reason) -> u64 {
    stats["totals"]["counters"]["reasons"][reason.index()]
        .as_u64()
        .unwrap_or_else(|| panic!("totals.counters.reasons missing in {stats:#}"))
}

/// One request, echoed back by the server: the connection works end to end.
fn echo_once(lab: &Lab, port: u16) -> std::io::Result<()> {
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

#[test]
fn deny_list_drops_in_xdp_in_enforce_mode_and_is_only_reported_in_monitor() {
    use rstwall_datapath::policy::Reason;

    let mut lab = Lab::new("deny");
    let policy = policy_file(
        &lab,
        "mode = \"enforce\"\n[lists]\ndeny = [\"198.18.0.1\"]\n",
    );
    lab.start_rstwall(&["--inline", "pa,pb", "--policy", &policy]);
    let s = lab.stats();
    assert_eq!(s["kernel"]["deny_entries"], 1, "{s:#}");

    let _listener = server_listener(&lab, 5010);
    let err = connect_within(&lab, 5010, Duration::from_secs(2))
        .expect_err("a deny-listed client cannot connect");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    // The SYN and its retransmissions died in XDP: the workers never saw
    // a TCP packet, let alone one to deny.
    let s = lab.wait_stats("deny drops in XDP", |s| xdp_sum(s, "deny_dropped") >= 2);
    assert_eq!(s["kernel"]["deny_dropped"], xdp_sum(&s, "deny_dropped"));
    assert_eq!(total(&s, &["counters", "tcp"]), 0, "{s:#}");
    assert_eq!(reason_count(&s, Reason::DenyList), 0);
    assert_eq!(xdp_sum(&s, "to_xsk"), 0);
    assert_eq!(xdp_sum(&s, "block_dropped"), 0);
    let st = lab.stop_rstwall(ffi::SIGTERM);
    assert!(st.success(), "{}", lab.log());

    // Monitor mode: the same client gets through, reported as would-drop.
    lab.start_rstwall(&[
        "--inline", "pa,pb", "--policy", &policy, "--mode", "monitor",
    ]);
    echo_once(&lab, 5011).expect("monitor mode lets a deny-listed client through");
    let s = lab.wait_stats("the connection's FINs", |s| {
        total(s, &["counters", "fin"]) >= 2
    });
    assert_eq!(s["kernel"]["deny_entries"], 0, "{s:#}");
    assert_eq!(xdp_sum(&s, "deny_dropped"), 0);
    assert!(reason_count(&s, Reason::DenyList) >= 3, "{s:#}");
    assert!(total(&s, &["counters", "would_drop"]) >= 3);
    assert_eq!(total(&s, &["counters", "dropped"]), 0);
}

#[test]
fn rate_limit_abuse_blocks_the_source_in_xdp() {
    let mut lab = Lab::new("block");
    let policy = policy_file(
        &lab,
        "mode = \"enforce\"\n\
         [actions]\nno_flow = \"ratelimit\"\n\
         [ratelimit]\nper_source_rate = 5\nper_source_burst = 5\nblock_seconds = 30\n",
    );
    lab.start_rstwall(&["--inline", "pa,pb", "--policy", &policy]);
    echo_once(&lab, 5012).expect("traffic before the attack");

    // RSTs for no flow, from a spoofed source next door: over its rate
    // after five, and then blocked.
    let attacker = Ipv4Addr::new(198, 19, 0, 66);
    let rsts = |n: u32, first: u32| -> Vec<Vec<u8>> {
        (first..first + n)
            .map(|i| {
                rst_packet(
                    SocketAddrV4::new(attacker, 40_000 + i as u16),
                    SocketAddrV4::new(SERVER, 5012),
                    i.wrapping_mul(0x9e37_79b9),
                )
            })
            .collect()
    };
    send_raw(&lab.client, rsts(10, 0));
    let s = lab.wait_stats("the attacker blocked", |s| {
        s["kernel"]["sources_blocked"].as_u64().unwrap_or(0) >= 1
    });
    let seen = rst_count(&s, "no_flow", "total");
    assert_eq!(rst_count(&s, "no_flow", "passed"), 5, "{s:#}");
    assert!(
        seen > 5 && rst_count(&s, "no_flow", "dropped") == seen - 5,
        "{s:#}"
    );
    let k = &s["kernel"];
    assert_eq!(k["sources_blocked"], 1, "asked for once: {s:#}");
    assert_eq!(k["blocked_now"], 1);
    assert_eq!(k["block_seconds"], 30);
    assert_eq!(k["block_requests"], 1);
    assert_eq!(k["block_requests_lost"], 0);
    assert_eq!(k["block_errors"], 0);
    assert!(
        lab.log().contains("blocked 198.19.0.66 for 30 s"),
        "{}",
        lab.log()
    );

    // From now on the kernel drops the attacker: the engine's count for it
    // stops growing.
    let blocked_before = xdp_sum(&s, "block_dropped");
    send_raw(&lab.client, rsts(40, 10));
    let s = lab.wait_stats("40 packets dropped by the block", |s| {
        xdp_sum(s, "block_dropped") >= blocked_before + 40
    });
    assert_eq!(rst_count(&s, "no_flow", "total"), seen, "{s:#}");
    assert_eq!(s["kernel"]["block_dropped"], xdp_sum(&s, "block_dropped"));
    assert_eq!(xdp_sum(&s, "deny_dropped"), 0);

    // The client and the server are not the attacker: they carry on.
    echo_once(&lab, 5013).expect("traffic during the block");
    let data = Arc::new(payload(1024 * 1024, 19));
    let got = transfer(&lab, 5014, data.clone(), None);
    assert_same(&data, &got);
    let s = lab.stats();
    assert_eq!(rst_count(&s, "no_flow", "total"), seen);
    assert_eq!(s["kernel"]["sources_blocked"], 1);
    let st = lab.stop_rstwall(ffi::SIGTERM);
    assert!(st.success(), "{}", lab.log());
}
