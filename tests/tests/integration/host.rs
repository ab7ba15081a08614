//! `rstwall host` as an operator runs it on a server, through the binary
//! inside a namespace of its own (root; fails loudly without it).
//!
//! The classic case: a process named `collector` connects to
//! 127.0.0.1:7211 twice a second with nothing listening. The report names
//! every refused connect on `lo` for port 7211 and `collector` with its
//! pid, the failed-connections alert fires, netstat's "failed connection
//! attempts" grew by exactly as many and is explained by them, and
//! `--events` has one line per RST with its fields.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rstwall_api::host::HostReport;
use rstwall_engine::RstClass;
use rstwall_netlab::Namespaces;
use rstwall_tests::rstwall_bin;
use serde_json::Value;

/// Connects the collector makes, one every half second: 8.5 s of them,
/// inside the 10 s `rstwall host` watches from its first line on.
const CONNECTS: u64 = 18;

#[test]
fn the_classic_case_through_the_binary() {
    rstwall_netlab::require_root("rstwall host");
    let _cpu = rstwall_tests::cpu_share();
    let mut nss = Namespaces::unique("host-cli");
    let ns = nss.add("server").expect("namespace");
    let dir = std::env::temp_dir().join(format!("rstwall-host-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let events_path = dir.join("events.jsonl");

    let mut child = ns
        .command(rstwall_bin())
        .args(["host", "--duration", "10", "--json", "--events"])
        .arg(&events_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rstwall host");
    // Its first line says it is watching.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.starts_with("rstwall host: watching lo"), "{first}");

    let collector = ns
        .spawn(|| {
            let to = "127.0.0.1:7211".parse().unwrap();
            let every = Duration::from_millis(500);
            rstwall_netlab::sock::refused_connects("collector", to, CONNECTS as usize, every)
                .expect("refused connects to 7211");
        })
        .unwrap();
    collector.join().unwrap();
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(out.status.success(), "{first}{rest}");
    let report: HostReport = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let pid = std::process::id();

    // RSTs: every one refused, on lo, for port 7211, by collector.
    assert_eq!(report.rsts, CONNECTS, "{report:#?}");
    let refused = report
        .classes
        .iter()
        .find(|c| c.class == RstClass::Refused)
        .unwrap();
    assert_eq!(
        (refused.rsts, refused.directions.local),
        (CONNECTS, CONNECTS)
    );
    assert!(report
        .interfaces
        .iter()
        .any(|i| i.name == "lo" && i.error.is_none()));
    assert_eq!(report.ports[0].port, 7211);
    assert_eq!(report.ports[0].rsts, CONNECTS);
    assert_eq!(report.processes.len(), 1, "{report:#?}");
    let p = &report.processes[0];
    assert_eq!(
        (p.pid, p.comm.as_str(), p.rsts),
        (pid, "collector", CONNECTS)
    );
    assert_eq!(p.ports, vec![7211]);
    assert_eq!(report.agreement.agrees, CONNECTS, "{:?}", report.agreement);
    assert_eq!(report.agreement.disagrees, 0);

    // The failed-connections alert: two a second is its warning level.
    assert!(
        report
            .alerts
            .iter()
            .any(|a| a.rule == "failed_connects" && a.value >= 2.0),
        "{:#?}",
        report.alerts
    );

    // netstat: "failed connection attempts" grew by as many, all of them
    // connects to 127.0.0.1:7211 refused, by collector.
    let fails = report
        .netstat
        .iter()
        .find(|n| n.counter == "AttemptFails")
        .unwrap();
    assert_eq!(fails.name, "failed connection attempts");
    assert_eq!((fails.delta, fails.observed), (CONNECTS, Some(CONNECTS)));
    assert_eq!(fails.causes.len(), 1, "{fails:#?}");
    let cause = &fails.causes[0];
    assert_eq!(cause.what, "connects to 127.0.0.1:7211 refused");
    assert_eq!(cause.count, CONNECTS);
    assert_eq!(cause.processes.len(), 1);
    assert_eq!(
        (cause.processes[0].pid, cause.processes[0].comm.as_str()),
        (pid, "collector")
    );
    let sent = report
        .netstat
        .iter()
        .find(|n| n.counter == "OutRsts")
        .unwrap();
    assert_eq!((sent.delta, sent.observed), (CONNECTS, Some(CONNECTS)));
    assert!(sent.causes[0].what.contains("NO_SOCKET"), "{sent:#?}");

    // --events: one line per RST, with analyze --events' fields and host
    // mode's own.
    let text = std::fs::read_to_string(&events_path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, CONNECTS, "{text}");
    for e in &lines {
        for field in [
            "ts",
            "src",
            "dst",
            "sport",
            "dport",
            "seq",
            "ack",
            "class",
            "with_data",
            "verdict",
            "iface",
            "direction",
            "kernel",
            "pid",
            "comm",
            "cgroup",
        ] {
            assert!(e.get(field).is_some(), "{field} missing: {e}");
        }
        assert_eq!(e["class"], "refused");
        assert_eq!(e["iface"], "lo");
        assert_eq!(e["direction"], "local");
        assert_eq!(e["sport"], 7211);
        assert_eq!(e["kernel"]["sent"]["reason"], "NO_SOCKET");
        assert_eq!(e["kernel"]["received"]["state"], "SYN-SENT");
        assert_eq!(e["pid"], pid);
        assert_eq!(e["comm"], "collector");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn rstwall(args: &[&str]) -> Output {
    Command::new(rstwall_bin())
        .args(args)
        .output()
        .expect("run rstwall")
}

/// Bad arguments: one line, exit status 2, before anything is attached.
#[test]
fn bad_arguments_are_refused_in_one_line() {
    for (args, needle) in [
        (&["host", "--duration", "0s"][..], "--duration"),
        (&["host", "--duration", "soon"][..], "--duration"),
        (&["host", "--iface", "a-name-much-too-long"][..], "--iface"),
        (
            &["host", "--events", "/nonexistent/dir/events.jsonl"][..],
            "--events",
        ),
    ] {
        let o = rstwall(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}

/// `rstwall run --tap` on one of the host's own interfaces would cut the
/// host's TCP there: refused in one line that points to `rstwall host`,
/// unless `--tap-host-interface` says it is a mirror port anyway.
#[test]
fn tap_on_a_host_interface_is_refused() {
    rstwall_netlab::require_root("rstwall run --tap");
    let mut nss = Namespaces::unique("host-tap");
    let ns = nss.add("server").expect("namespace");
    let peer = nss.add("peer").expect("namespace");
    ns.add_veth("hv0", &peer, "hv1", &rstwall_netlab::Veth::default())
        .expect("veth");
    ns.set_up("hv0").unwrap();
    ns.add_addr("hv0", "198.18.7.1/24").unwrap();
    // An interface without an address of the host's: a mirror port.
    ns.add_veth("mv0", &peer, "mv1", &rstwall_netlab::Veth::default())
        .expect("veth");
    ns.set_up("mv0").unwrap();
    let dir = std::env::temp_dir().join(format!("rstwall-host-tap-{}", std::process::id()));
    let run = |port: &str, extra: &[&str]| {
        let mut cmd = ns.command(rstwall_bin());
        cmd.args(["run", "--tap", port, "--metrics-listen", "off"])
            .args(["--control-socket", "off", "--stats-interval", "0"])
            .arg("--state-dir")
            .arg(dir.join(port))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    };
    for (port, why) in [
        ("lo", "is this host's loopback"),
        ("hv0", "carries this host's address 198.18.7.1"),
    ] {
        let o = run(port, &[]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{port}: {err}");
        assert_eq!(err.lines().count(), 1, "{port}: {err}");
        assert!(err.contains(why), "{port}: {err}");
        assert!(err.contains("rstwall host"), "{port}: {err}");
    }
    // The mirror port, and the host's interface with the override, start.
    for (port, extra) in [("mv0", &[][..]), ("hv0", &["--tap-host-interface"][..])] {
        let mut child = run(port, extra).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut log = String::new();
        let mut line = String::new();
        while !log.contains("running ") {
            line.clear();
            if stderr.read_line(&mut line).unwrap() == 0 {
                break;
            }
            log.push_str(&line);
        }
        assert!(log.contains("running "), "{port}: {log}");
        // SAFETY: signalling the child this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let st = child.wait().unwrap();
        assert!(st.success(), "{port}: {log}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------
// rstwall run --host: host mode as a service
// ---------------------------------------------------------------------------

/// Bytes sent and echoed back on one connection: what arrives is what was
/// sent, byte for byte.
fn echo_exact(addr: SocketAddr, bytes: usize) {
    use std::io::{Read, Write};
    let data: Vec<u8> = (0..bytes).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut c = TcpStream::connect(addr).unwrap();
    let mut r = c.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut back = vec![0u8; bytes];
        r.read_exact(&mut back).map(|()| back)
    });
    c.write_all(&data).unwrap();
    let back = reader.join().unwrap().unwrap();
    assert!(back == data, "{bytes} bytes came back altered");
}

/// An echo server in the namespace until the test ends.
fn echo_server(ns: &rstwall_netlab::Netns, addr: SocketAddr) {
    use std::io::{Read, Write};
    let l = ns
        .run(|| std::net::TcpListener::bind(addr))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// Short connections and a bulk transfer over lo, byte-exact.
fn traffic_is_untouched(ns: &rstwall_netlab::Netns, addr: SocketAddr) {
    ns.spawn(move || {
        for _ in 0..50 {
            echo_exact(addr, 1024);
        }
        echo_exact(addr, 16 << 20);
    })
    .unwrap()
    .join()
    .unwrap();
}

#[test]
fn run_host_serves_the_clients_and_metrics_and_keeps_hands_off() {
    use rstwall_api::Client;
    rstwall_netlab::require_root("rstwall run --host");
    let _cpu = rstwall_tests::cpu_share();
    let mut nss = Namespaces::unique("host-run");
    let ns = nss.add("server").expect("namespace");
    let dir = std::env::temp_dir().join(format!("rstwall-host-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("rstwall.sock");
    let echo: SocketAddr = "127.0.0.1:7300".parse().unwrap();
    echo_server(&ns, echo);

    let mut daemon = ns
        .command(rstwall_bin())
        .args(["run", "--host", "--stats-interval", "0"])
        .args(["--metrics-listen", "127.0.0.1:9717", "--control-socket"])
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rstwall run --host");
    // Its log, read as it comes (the pipe must not fill).
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (log, err) = (log.clone(), daemon.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        })
    };
    let log_text = || log.lock().unwrap().clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !log_text().contains("control API on") {
        assert!(std::time::Instant::now() < deadline, "{}", log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(log_text().contains("running host mode"), "{}", log_text());
    let client = Client::at(&socket);

    // An enforce policy that would drop refused RSTs: host mode observes,
    // so they are counted as "would drop" and nothing is dropped.
    let o = Command::new(rstwall_bin())
        .args([
            "policy",
            "set",
            "mode=enforce",
            "actions.refused=drop",
            "--socket",
        ])
        .arg(&socket)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A capture of the refused RSTs, started before they happen.
    let pcap = dir.join("refused.pcap");
    let capture = Command::new(rstwall_bin())
        .args(["capture", "--class", "refused", "--count", "6", "--write"])
        .arg(&pcap)
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The file is created once the daemon has answered: the tap is on.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !pcap.exists() {
        assert!(std::time::Instant::now() < deadline, "no capture started");
        std::thread::sleep(Duration::from_millis(20));
    }

    let collector = ns
        .spawn(|| {
            rstwall_netlab::sock::set_comm("collector").expect("PR_SET_NAME");
            let to: SocketAddr = "127.0.0.1:7211".parse().unwrap();
            for _ in 0..6 {
                let e = TcpStream::connect_timeout(&to, Duration::from_secs(1)).unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
            }
        })
        .unwrap();
    collector.join().unwrap();
    traffic_is_untouched(&ns, echo);
    let captured = capture.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&captured.stderr);
    assert!(captured.status.success(), "{said}");
    assert!(said.contains("6 packets written"), "{said}");
    let o = Command::new(rstwall_bin())
        .args(["analyze", "--json"])
        .arg(&pcap)
        .output()
        .unwrap();
    let analyzed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(analyzed["files"][0]["frames"], 6, "{analyzed:#}");
    assert_eq!(analyzed["counters"]["rst"], 6, "{analyzed:#}");

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let s = client.stats().unwrap();
        let agreed = s.host.as_ref().map_or(0, |h| h.agreement.agrees);
        if s.rst(RstClass::Refused).total >= 6 && agreed >= 6 {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "{s:#?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let refused = stats.rst(RstClass::Refused);
    assert_eq!(
        (refused.total, refused.dropped, refused.would_drop),
        (6, 0, 6),
        "{stats:#?}"
    );
    assert_eq!(stats.totals.counters.dropped, 0, "host mode never drops");
    let host = stats.host.as_ref().unwrap();
    assert_eq!(host.agreement.disagrees, 0, "{host:#?}");
    assert_eq!(host.resets_sent.get("NO_SOCKET"), Some(&6), "{host:#?}");
    assert!(stats.totals.source.host.as_ref().unwrap().records > 0);
    assert_eq!(stats.workers[0].source.host.as_ref().unwrap().ring, 0);

    let st = client.status().unwrap();
    assert_eq!(st.topology, rstwall_api::Topology::Host(vec![]));
    assert_eq!(st.mode, "host");
    assert_eq!(st.policy.mode, rstwall_engine::policy::Mode::Enforce);
    let hs = st.host.as_ref().expect("host mode's status");
    assert_eq!(hs.policy_runs_as, rstwall_engine::policy::Mode::Monitor);
    assert!(hs
        .interfaces
        .iter()
        .any(|i| i.name == "lo" && i.error.is_none()));

    // Every client command answers.
    for args in [
        &["status"][..],
        &["stats"],
        &["flows"],
        &["alerts"],
        &["top", "--duration", "1"],
    ] {
        let o = Command::new(rstwall_bin())
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let shown = String::from_utf8_lossy(&o.stdout);
        if args[0] == "stats" {
            assert!(shown.contains("host mode (observes only)"), "{shown}");
            assert!(shown.contains("sent NO_SOCKET"), "{shown}");
        }
        if args[0] == "status" {
            assert!(shown.contains("watching: lo"), "{shown}");
        }
    }

    // The metrics: host mode's families beside the common ones.
    let metrics = ns
        .run(|| {
            use std::io::{Read, Write};
            let mut c = TcpStream::connect("127.0.0.1:9717").unwrap();
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut text = String::new();
            c.read_to_string(&mut text).unwrap();
            text
        })
        .unwrap();
    assert!(
        metrics.contains("rstwall_host_rst_agreement_total{agreement=\"agrees\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rstwall_host_resets_sent_total{reason=\"NO_SOCKET\"} 6"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rstwall_host_ring_records_lost_total 0"),
        "{metrics}"
    );

    // SIGHUP reloads; the daemon carries on.
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGHUP) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !log_text().contains("SIGHUP") {
        assert!(std::time::Instant::now() < deadline, "{}", log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(client.status().is_ok());

    // SIGKILL: nothing left behind alters traffic.
    // SAFETY: as above.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGKILL) };
    daemon.wait().unwrap();
    reader.join().unwrap();
    traffic_is_untouched(&ns, echo);
    std::fs::remove_dir_all(&dir).ok();
}
