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
//! without it: they are never skipped. Each test builds its own lab
//! ([`rstwall_tests::lab::Lab`]: namespaces named after the test and this
//! process id, deleted with rstwall stopped even when the test fails).
//!
//! The binary under test is `target/<profile>/rstwall`, found beside this
//! test binary (`target/<profile>/deps/..`): `CARGO_BIN_EXE_rstwall` exists
//! only for tests in the binary's own crate. `scripts/test` builds it
//! before running the tests; on its own, run `cargo build -p
//! rstwall-control` first.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rstwall_engine::telemetry::Counters;
use rstwall_engine::RstClass::{Abort, InWindow, NoFlow, OutOfWindow, Refused};
use rstwall_netlab::Veth;
use rstwall_tests::lab::*;
use rstwall_tests::rstwall_bin;
use serde::Deserialize;

/// What the tap test reads of `rstwall analyze --json`: its counters.
#[derive(Deserialize)]
struct Analyzed {
    counters: Counters,
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

    let s = lab.wait_stats("the connections' FINs", |s| s.totals.counters.fin >= 402);
    assert!(s.totals.counters.tcp > 14_000, "{s:#?}");
    assert_eq!(s.totals.counters.dropped, 0);
    assert_eq!(xsk(&s).frames.ledger_errors, 0);
    assert_eq!(xsk(&s).frames.leaked, 0);
    assert_eq!(xsk(&s).tx_ring_full_drops, 0);
    assert_eq!(s.xdp_sum(|x| x.bypassed), 0, "TCP bypassed the workers");
    assert!(s.xdp_sum(|x| x.to_xsk) > 14_000);
    assert_eq!(s.xsk_mode, "copy", "veth has no zero-copy");

    let st = lab.stop_rstwall(libc::SIGTERM);
    assert!(st.success(), "rstwall exit {st}:\n{}", lab.log());
    let s = lab.stats();
    assert!(s.is_final);
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
    let s = lab.wait_stats("a refused RST", |s| s.rst(Refused).total >= 1);
    assert_eq!(s.rst(Refused).passed, 1);
    assert_eq!(s.totals.counters.failed_connects, 1);
}

/// The client's next sequence number towards `server`, from the segments
/// `sniff` saw it send.
fn snd_nxt_of(sniff: &Sniffer, client: SocketAddrV4, server: SocketAddrV4) -> u32 {
    let ends: Vec<u32> = sniff
        .segments()
        .iter()
        .filter(|(src, dst, ..)| *src == client && *dst == server)
        .map(|(_, _, seq, flags, len)| seq.wrapping_add(*len as u32 + u32::from(flags & 0x03 != 0)))
        .collect();
    let first = *ends.first().expect("client segments sniffed");
    *ends.iter().max_by_key(|e| e.wrapping_sub(first)).unwrap()
}

/// After the spoofing: the connection lives (data still flows, and no
/// spoofed RST reached the server), then a real abort — SO_LINGER 0 and
/// close send a RST at exactly SND.NXT — resets the server's side
/// (`closed` runs between the close and joining the server, which has read
/// "ping 1" before).
fn alive_then_aborted(
    mut c: std::net::TcpStream,
    server_sniff: &Sniffer,
    port: u16,
    server: thread::JoinHandle<(Vec<u8>, std::io::Result<()>)>,
    closed: impl FnOnce(),
) {
    c.write_all(b"ping 2").unwrap();
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        rsts_at(server_sniff, port),
        0,
        "a spoofed RST reached the server"
    );
    set_linger_zero(c.as_raw_fd());
    drop(c);
    closed();
    let (got, result) = server.join().expect("server");
    assert_eq!(got, b"ping 1ping 2", "data lost or changed");
    let err = result.expect_err("the abort reset the server's connection");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

/// The server's side of the ping connection: everything it reads, and how
/// the connection ended. With `hold`, once it has read "ping 2" it waits
/// for the test before reading on.
fn reading_server(
    listener: std::net::TcpListener,
    hold: Option<std::sync::mpsc::Receiver<()>>,
) -> thread::JoinHandle<(Vec<u8>, std::io::Result<()>)> {
    thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return (got, Ok(())),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if let (Some(h), true) = (&hold, got.ends_with(b"ping 2")) {
                        h.recv().unwrap();
                    }
                }
                Err(e) => return (got, Err(e)),
            }
        }
    })
}

/// RSTs `sniff` saw arrive for `port`.
fn rsts_at(sniff: &Sniffer, port: u16) -> usize {
    sniff
        .segments()
        .iter()
        .filter(|(_, dst, _, flags, _)| dst.port() == port && flags & 0x04 != 0)
        .count()
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
    // It reads until the test says the spoofing is over and the abort sent.
    let server = reading_server(listener, Some(from_test));
    let mut c = connect(&lab, 5003).expect("connect");
    c.write_all(b"ping 1").unwrap();
    thread::sleep(Duration::from_millis(300));

    // The client's next sequence number, from what it has sent.
    let client = SocketAddrV4::new(CLIENT, c.local_addr().unwrap().port());
    let server_addr = SocketAddrV4::new(SERVER, 5003);
    let snd_nxt = snd_nxt_of(&client_sniff, client, server_addr);

    let stray = SocketAddrV4::new(CLIENT, 1);
    send_raw(
        &lab.client,
        vec![
            rst_packet(client, server_addr, snd_nxt.wrapping_add(0x4000_0000)), // out_of_window
            rst_packet(client, server_addr, snd_nxt.wrapping_add(100)),         // in_window
            rst_packet(stray, server_addr, 12345),                              // no_flow
        ],
    );
    let spoofed = [OutOfWindow, InWindow, NoFlow];
    let s = lab.wait_stats("three spoofed RSTs", |s| {
        spoofed.iter().all(|&k| s.rst(k).total >= 1)
    });
    for k in spoofed {
        assert_eq!(s.rst(k).dropped, 1, "{k} not dropped: {s:#?}");
    }

    alive_then_aborted(c, &server_sniff, 5003, server, || {
        to_server.send(()).unwrap()
    });
    let s = lab.wait_stats("the abort", |s| s.rst(Abort).total >= 1);
    assert_eq!(s.rst(Abort).passed, 1, "{s:#?}");
    assert_eq!(s.rst(Abort).dropped, 0);
}

/// `--rst-guard`: the first spoofed RST of a flow reaches a worker, which
/// gives the flow an entry in the XDP programs' guard; the flood after it
/// dies in XDP. The statistics count every spoofed RST once, by class,
/// wherever it was dropped; none reaches the server; a real abort passes.
#[test]
fn rst_guard_drops_a_flood_in_xdp_and_counts_it_exactly() {
    const FLOOD: u32 = 200;
    let mut lab = Lab::new("guard");
    lab.start_rstwall(&["--inline", "pa,pb", "--mode", "enforce", "--rst-guard"]);
    let server_sniff = Sniffer::start(&lab.server);
    let client_sniff = Sniffer::start(&lab.client);
    let listener = server_listener(&lab, 5013);
    let server = reading_server(listener, None);
    let mut c = connect(&lab, 5013).expect("connect");
    c.write_all(b"ping 1").unwrap();
    thread::sleep(Duration::from_millis(300));
    let client = SocketAddrV4::new(CLIENT, c.local_addr().unwrap().port());
    let server_addr = SocketAddrV4::new(SERVER, 5013);
    let snd_nxt = snd_nxt_of(&client_sniff, client, server_addr);
    let spoof = |i: u32| {
        rst_packet(
            client,
            server_addr,
            snd_nxt.wrapping_add(0x4000_0000 + i * 7919),
        )
    };

    // The first one reaches a worker, which guards the flow.
    send_raw(&lab.client, vec![spoof(0)]);
    lab.wait_stats("the first spoofed RST", |s| s.rst(OutOfWindow).total >= 1);
    send_raw(&lab.client, (1..=FLOOD).map(spoof).collect());
    let s = lab.wait_stats("the flood", |s| s.rst(OutOfWindow).total > u64::from(FLOOD));
    assert_eq!(s.rst(OutOfWindow).total, u64::from(FLOOD) + 1, "{s:#?}");
    assert_eq!(s.rst(OutOfWindow).dropped, u64::from(FLOOD) + 1);
    assert_eq!(
        s.xdp_sum(|x| x.guard_dropped),
        u64::from(FLOOD),
        "the flood after the first RST dies in XDP: {s:#?}"
    );
    assert_eq!(s.xdp_sum(|x| x.guard_out_of_window), u64::from(FLOOD));
    // The statistics say which flows are guarded and how entries came.
    let g = xsk(&s).guard.expect("the guard's entries in the totals");
    assert_eq!((g.guarded, g.inserted), (1, 1), "{g:?}");
    assert_eq!((g.errors, g.full), (0, 0), "{g:?}");
    let w = &s.workers[0];
    assert_eq!(xsk_worker(w).guard.map(|g| g.guarded), Some(1), "{w:#?}");

    // The real abort passes the guarded flow's entry.
    alive_then_aborted(c, &server_sniff, 5013, server, || {});
    let s = lab.wait_stats("the abort", |s| s.rst(Abort).total >= 1);
    assert_eq!(
        (s.rst(Abort).passed, s.rst(Abort).dropped),
        (1, 0),
        "{s:#?}"
    );
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
    let st = lab.stop_rstwall(libc::SIGKILL);
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
        s.totals.counters.tcp > 1000
    });
    assert_eq!(s.xdp_sum(|x| x.bypassed), 0, "{s:#?}");
    let st = lab.stop_rstwall(libc::SIGTERM);
    assert!(st.success(), "{}", lab.log());
    assert!(lab.xdp_progs("pa").is_empty() && lab.xdp_progs("pb").is_empty());
}

#[test]
fn tap_counts_equal_offline_analysis_of_the_same_frames() {
    let mut lab = Lab::new("tap");
    let (feeder, appliance) = (lab.client.clone(), lab.appliance.clone());
    let (f, a) = (lab.netns(&feeder), lab.netns(&appliance));
    f.add_veth("tp", a, "t0", &Veth::default()).expect("veth");
    f.set_up("tp").expect("link up");
    a.set_up("t0").expect("link up");
    lab.start_rstwall(&["--tap", "t0"]);

    let pcap = rstwall_tests::repo_root().join("samples/demo.pcap");
    let mut reader = rstwall_pcap::capture::CaptureReader::open(&pcap).expect("demo.pcap");
    let mut frames = Vec::new();
    while let Some(f) = reader.next_frame().expect("demo.pcap frame") {
        assert_eq!(f.linktype, 1, "demo.pcap is Ethernet");
        frames.push(f.data.to_vec());
    }
    let n = frames.len() as u64;
    send_frames(&feeder, "tp", frames);
    let live = lab.wait_stats("every frame", |s| s.totals.counters.frames >= n);

    let out = Command::new(rstwall_bin())
        .args(["analyze", "--json"])
        .arg(&pcap)
        .output()
        .expect("rstwall analyze");
    assert!(out.status.success());
    let offline: Analyzed = serde_json::from_slice(&out.stdout).expect("analyze JSON");
    assert_eq!(
        live.totals.counters, offline.counters,
        "live tap counters differ from rstwall analyze"
    );
    assert_eq!(live.xdp_sum(|x| x.to_xsk), n);
    assert_eq!(xsk(&live).frames.ledger_errors, 0);
    let st = lab.stop_rstwall(libc::SIGTERM);
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
    let s = lab.wait_stats("the transfer", |s| s.totals.counters.fin >= 2);
    let workers = &s.workers;
    assert_eq!(workers.len(), 2, "one worker per queue: {s:#?}");
    for (i, w) in workers.iter().enumerate() {
        let xsk = xsk_worker(w);
        assert_eq!(xsk.queue, i as u32);
        let ports: Vec<&str> = xsk.sockets.iter().map(|s| s.port.as_str()).collect();
        assert_eq!(ports, ["pa", "pb"], "a worker owns queue {i} of both ports");
    }
    let cpus: Vec<usize> = workers.iter().filter_map(|w| w.cpu).collect();
    assert_eq!(cpus.len(), 2, "both workers pinned: {s:#?}");
    if std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        assert_ne!(cpus[0], cpus[1], "workers spread over CPUs");
    }
    assert_eq!(xsk(&s).frames.ledger_errors, 0);
    assert_eq!(s.xdp_sum(|x| x.bypassed), 0);
}

#[test]
fn deny_list_drops_in_xdp_in_enforce_mode_and_is_only_reported_in_monitor() {
    use rstwall_engine::policy::Reason;

    let mut lab = Lab::new("deny");
    let policy = policy_file(
        &lab,
        "mode = \"enforce\"\n[lists]\ndeny = [\"198.18.0.1\"]\n",
    );
    lab.start_rstwall(&["--inline", "pa,pb", "--policy", &policy]);
    let s = lab.stats();
    assert_eq!(s.kernel.deny_entries, 1, "{s:#?}");

    let _listener = server_listener(&lab, 5010);
    let err = connect_within(&lab, 5010, Duration::from_secs(2))
        .expect_err("a deny-listed client cannot connect");
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    // The SYN and its retransmissions died in XDP: the workers never saw
    // a TCP packet, let alone one to deny.
    let s = lab.wait_stats("deny drops in XDP", |s| s.xdp_sum(|x| x.deny_dropped) >= 2);
    assert_eq!(s.kernel.deny_dropped, s.xdp_sum(|x| x.deny_dropped));
    assert_eq!(s.totals.counters.tcp, 0, "{s:#?}");
    assert_eq!(reason_count(&s, Reason::DenyList), 0);
    assert_eq!(s.xdp_sum(|x| x.to_xsk), 0);
    assert_eq!(s.xdp_sum(|x| x.block_dropped), 0);
    let st = lab.stop_rstwall(libc::SIGTERM);
    assert!(st.success(), "{}", lab.log());

    // Monitor mode: the same client gets through, reported as would-drop.
    lab.start_rstwall(&[
        "--inline", "pa,pb", "--policy", &policy, "--mode", "monitor",
    ]);
    echo_once(&lab, 5011).expect("monitor mode lets a deny-listed client through");
    let s = lab.wait_stats("the connection's FINs", |s| s.totals.counters.fin >= 2);
    assert_eq!(s.kernel.deny_entries, 0, "{s:#?}");
    assert_eq!(s.xdp_sum(|x| x.deny_dropped), 0);
    assert!(reason_count(&s, Reason::DenyList) >= 3, "{s:#?}");
    assert!(s.totals.counters.would_drop >= 3);
    assert_eq!(s.totals.counters.dropped, 0);
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
    let s = lab.wait_stats("the attacker blocked", |s| s.kernel.sources_blocked >= 1);
    let seen = s.rst(NoFlow).total;
    assert_eq!(s.rst(NoFlow).passed, 5, "{s:#?}");
    assert!(seen > 5 && s.rst(NoFlow).dropped == seen - 5, "{s:#?}");
    let k = &s.kernel;
    assert_eq!(k.sources_blocked, 1, "asked for once: {s:#?}");
    assert_eq!(k.blocked_now, 1);
    assert_eq!(k.block_seconds, 30);
    assert_eq!(k.block_requests, 1);
    assert_eq!(k.block_requests_lost, 0);
    assert_eq!(k.block_errors, 0);
    assert!(
        lab.log().contains("blocked 198.19.0.66 for 30 s"),
        "{}",
        lab.log()
    );

    // From now on the kernel drops the attacker: the engine's count for it
    // stops growing.
    let blocked_before = s.xdp_sum(|x| x.block_dropped);
    send_raw(&lab.client, rsts(40, 10));
    let s = lab.wait_stats("40 packets dropped by the block", |s| {
        s.xdp_sum(|x| x.block_dropped) >= blocked_before + 40
    });
    assert_eq!(s.rst(NoFlow).total, seen, "{s:#?}");
    assert_eq!(s.kernel.block_dropped, s.xdp_sum(|x| x.block_dropped));
    assert_eq!(s.xdp_sum(|x| x.deny_dropped), 0);

    // The client and the server are not the attacker: they carry on.
    echo_once(&lab, 5013).expect("traffic during the block");
    let data = Arc::new(payload(1024 * 1024, 19));
    let got = transfer(&lab, 5014, data.clone(), None);
    assert_same(&data, &got);
    let s = lab.stats();
    assert_eq!(s.rst(NoFlow).total, seen);
    assert_eq!(s.kernel.sources_blocked, 1);
    let st = lab.stop_rstwall(libc::SIGTERM);
    assert!(st.success(), "{}", lab.log());
}
