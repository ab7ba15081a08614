//! What host mode costs, measured: the same runs with and without it.
//!
//! * request/response transactions per second (one connection, 64-byte
//!   request, 64-byte response, like netperf's TCP_RR), over `lo` and over
//!   a veth between two namespaces;
//! * bulk throughput (one connection, as fast as it goes), same paths;
//! * ring-buffer loss under a SYN flood on the veth, with one worker and
//!   with two (a ring each, flows hashed to them).
//!
//! Run as root: `cargo run --release -p rstwall-host --example host_cost
//! [SECONDS per run, default 3]`. Everything runs in namespaces of its own.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rstwall_host::{HostConfig, HostSource};
use rstwall_netlab::packet::Segment;
use rstwall_netlab::{Namespaces, Netns, RawSender, Veth};

const MSG: usize = 64;

fn transactions(server: &Netns, client: &Netns, addr: SocketAddr, secs: f64) -> f64 {
    let l = server.run(|| TcpListener::bind(addr)).unwrap().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; MSG];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let n = client
        .run(|| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_nodelay(true).unwrap();
            let mut buf = [7u8; MSG];
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed().as_secs_f64() < secs {
                c.write_all(&buf).unwrap();
                c.read_exact(&mut buf).unwrap();
                n += 1;
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
        .unwrap();
    echo.join().unwrap();
    n
}

fn bulk(server: &Netns, client: &Netns, addr: SocketAddr, secs: f64) -> f64 {
    let l = server.run(|| TcpListener::bind(addr)).unwrap().unwrap();
    let sink = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n as u64,
            }
        }
    });
    let start = Instant::now();
    client
        .run(|| {
            let mut c = TcpStream::connect(addr).unwrap();
            let buf = vec![1u8; 256 * 1024];
            while start.elapsed().as_secs_f64() < secs {
                c.write_all(&buf).unwrap();
            }
        })
        .unwrap();
    let bytes = sink.join().unwrap();
    bytes as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9
}

/// SYNs from random sources to a closed port for `secs`; what host mode's
/// counters say of them.
fn syn_flood(attacker: &Netns, target: Ipv4Addr, secs: f64) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let sent = attacker
        .spawn(move || {
            let raw = RawSender::open().unwrap();
            let mut rng = rstwall_netlab::rng::seeded(1);
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let seg = Segment {
                    src: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), rng.u16(1024..)).into(),
                    dst: SocketAddrV4::new(target, 7999).into(),
                    seq: rng.u32(..),
                    ack: 0,
                    flags: rstwall_engine::wire::TcpFlags::SYN,
                    window: 64240,
                };
                if raw.send_segment(&seg, n as u16).is_ok() {
                    n += 1;
                }
            }
            n
        })
        .unwrap();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    sent.join().unwrap()
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3.0);
    rstwall_netlab::require_root("host_cost");
    let mut nss = Namespaces::unique("host-cost");
    let a = nss.add("a").unwrap();
    let b = nss.add("b").unwrap();
    a.add_veth("ca0", &b, "cb0", &Veth::default()).unwrap();
    a.add_addr("ca0", "198.18.0.1/24").unwrap();
    b.add_addr("cb0", "198.18.0.2/24").unwrap();
    a.set_up("ca0").unwrap();
    b.set_up("cb0").unwrap();

    let mut port = 7500u16;
    let mut next = || {
        port += 1;
        port
    };
    let lo = |p| SocketAddr::from(([127, 0, 0, 1], p));
    let veth = |p| SocketAddr::from(([198, 18, 0, 1], p));

    println!(
        "host mode cost, {secs} s per run, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<28} {:>14} {:>14} {:>8}",
        "run", "without", "with", "change"
    );
    let report = |name: &str, without: f64, with: f64, unit: &str| {
        println!(
            "{:<28} {:>10.0} {unit:<3} {:>10.0} {unit:<3} {:>+7.1}%",
            name,
            without,
            with,
            (with - without) / without * 100.0
        );
    };
    // Runs alternate without and with host mode, several rounds, and the
    // medians are compared: other load on the machine moves single runs
    // by more than host mode does.
    const ROUNDS: usize = 3;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (name, server, client, addr) in [
        ("lo", &a, &a, lo as fn(u16) -> SocketAddr),
        ("veth", &a, &b, veth as fn(u16) -> SocketAddr),
    ] {
        let (mut rr, mut bw) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
        let mut seen = (0, 0);
        for _ in 0..ROUNDS {
            for with in [false, true] {
                let source = with.then(|| {
                    a.run(|| HostSource::start(&HostConfig::default()))
                        .unwrap()
                        .unwrap()
                });
                rr[usize::from(with)].push(transactions(server, client, addr(next()), secs));
                bw[usize::from(with)].push(bulk(server, client, addr(next()), secs) * 1000.0);
                if let Some(s) = source {
                    let c = s.kernel_counters().unwrap();
                    seen = (seen.0 + c.tcp(), seen.1 + c.records_lost);
                }
            }
        }
        let [rr0, rr1] = rr.map(median);
        let [bw0, bw1] = bw.map(median);
        report(&format!("transactions/s over {name}"), rr0, rr1, "t/s");
        report(&format!("bulk Mbit/s over {name}"), bw0, bw1, "Mb");
        println!(
            "  (host mode saw {} TCP segments, lost {} records)",
            seen.0, seen.1
        );
    }
    for workers in [1, 2] {
        let cfg = HostConfig {
            workers,
            ..HostConfig::default()
        };
        let source = a.run(|| HostSource::start(&cfg)).unwrap().unwrap();
        let sent = syn_flood(&b, Ipv4Addr::new(198, 18, 0, 1), secs);
        std::thread::sleep(Duration::from_millis(500));
        let c = source.kernel_counters().unwrap();
        println!(
            "SYN flood, {workers} worker(s): {sent} SYNs sent ({:.0}/s); host mode saw {} TCP segments \
             (SYNs and the RSTs answering them), {} records, {} lost ({:.2}%)",
            sent as f64 / secs,
            c.tcp(),
            c.records,
            c.records_lost,
            c.records_lost as f64 * 100.0 / c.tcp().max(1) as f64
        );
    }
}
