//! Hands off: with host mode observing `lo` and a veth, a bulk transfer
//! and many short connections arrive byte for byte; and when the process
//! running host mode is killed (SIGKILL, no clean-up), nothing stays
//! attached and traffic flows.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rstwall_bpf::host::{tcx_programs, TcDirection};
use rstwall_bpf::FrameCounts;
use rstwall_host::{HostConfig, HostSource};
use rstwall_netlab::{rng, Namespaces, Netns, Veth};

const BULK: usize = 32 << 20;
const SHORT: usize = 300;

/// Two namespaces on a veth: `a` (198.18.0.1, host mode's) and `b`.
fn two_hosts(tag: &str) -> (Namespaces, Arc<Netns>, Arc<Netns>) {
    rstwall_netlab::require_root("host mode");
    let mut nss = Namespaces::unique(tag);
    let a = nss.add("a").unwrap();
    let b = nss.add("b").unwrap();
    a.add_veth("ha0", &b, "hb0", &Veth::default()).unwrap();
    a.add_addr("ha0", "198.18.0.1/24").unwrap();
    b.add_addr("hb0", "198.18.0.2/24").unwrap();
    a.set_up("ha0").unwrap();
    b.set_up("hb0").unwrap();
    (nss, a, b)
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut r = rng::seeded(seed);
    (0..len).map(|_| r.u8(..)).collect()
}

/// A server in `server` that echoes what each connection sends; a client
/// in `client` sends a bulk stream then many short exchanges; every byte
/// must come back as sent.
fn exchange(server: &Netns, client: &Netns, addr: SocketAddr) {
    let listener = server.run(|| TcpListener::bind(addr)).unwrap().unwrap();
    let echo = std::thread::spawn(move || {
        for _ in 0..1 + SHORT {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).unwrap();
            }
        }
    });
    let sent = pattern(7, BULK);
    client
        .run(|| {
            let mut c = TcpStream::connect(addr).unwrap();
            let mut r = c.try_clone().unwrap();
            let reader = std::thread::spawn(move || {
                let mut got = Vec::with_capacity(BULK);
                r.read_to_end(&mut got).unwrap();
                got
            });
            c.write_all(&sent).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let got = reader.join().unwrap();
            assert!(
                got == sent,
                "bulk transfer: {} of {} bytes, or different",
                got.len(),
                BULK
            );
            for i in 0..SHORT {
                let msg = pattern(i as u64, 1 + i * 7 % 3000);
                let mut c = TcpStream::connect(addr).unwrap();
                c.write_all(&msg).unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
                let mut back = Vec::new();
                c.read_to_end(&mut back).unwrap();
                assert_eq!(back, msg, "short connection {i}");
            }
        })
        .unwrap();
    echo.join().unwrap();
}

#[test]
fn traffic_is_byte_exact_under_observation() {
    let (_nss, a, b) = two_hosts("host-hands");
    let source = a
        .run(|| HostSource::start(&HostConfig::default()))
        .unwrap()
        .unwrap();
    let lo: SocketAddr = "127.0.0.1:7400".parse().unwrap();
    exchange(&a, &a, lo);
    let veth: SocketAddr = "198.18.0.1:7401".parse().unwrap();
    exchange(&a, &b, veth);
    let names: Vec<String> = source.interfaces().iter().map(|i| i.name.clone()).collect();
    assert!(
        names.contains(&"lo".to_string()) && names.contains(&"ha0".to_string()),
        "{names:?}"
    );
    let c = source.kernel_counters().unwrap();
    // Two bulk and 2 x 300 short connections: at least their handshakes.
    assert!(c.tcp() > 4 * SHORT as u64, "{c:?}");
    assert_eq!(c.malformed, 0, "{c:?}");
    assert_eq!(c.records_lost, 0, "{c:?}");
}

/// Run by the test below in a child process: host mode in the namespace
/// named by RSTWALL_HOST_CHILD_NETNS until killed.
#[test]
#[ignore = "a helper: run as a child process by killed_host_mode_leaves_nothing_attached"]
fn child_runs_host_mode_until_killed() {
    let Ok(name) = std::env::var("RSTWALL_HOST_CHILD_NETNS") else {
        return;
    };
    Netns::open(&name).unwrap().enter().unwrap();
    let _source = HostSource::start(&HostConfig::default()).unwrap();
    println!("host mode running");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn attached(ns: &Netns, ifname: &str) -> Vec<String> {
    ns.run(|| {
        let ifindex = rstwall_netlab::netns::ifindex(ifname).unwrap();
        let mut names = tcx_programs(ifindex, TcDirection::Ingress).unwrap();
        names.extend(tcx_programs(ifindex, TcDirection::Egress).unwrap());
        names
    })
    .unwrap()
}

#[test]
fn killed_host_mode_leaves_nothing_attached() {
    let (_nss, a, b) = two_hosts("host-kill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "hands_off::child_runs_host_mode_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env("RSTWALL_HOST_CHILD_NETNS", a.name())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("host mode running"))),
        "the child started host mode"
    );
    let on_veth = attached(&a, "ha0");
    assert_eq!(
        on_veth,
        ["host_eth_in", "host_eth_out"],
        "attached while running"
    );
    assert_eq!(
        attached(&a, "lo"),
        ["host_eth_out"],
        "loopback: egress only"
    );

    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The links die with the process's file descriptors.
    let mut left = attached(&a, "ha0");
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = attached(&a, "ha0");
    }
    assert!(left.is_empty(), "left attached after SIGKILL: {left:?}");
    assert!(attached(&a, "lo").is_empty());
    exchange(&a, &b, "198.18.0.1:7402".parse().unwrap());
}
