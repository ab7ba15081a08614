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

/// Name the calling thread (its `comm`), as a program names itself.
fn set_comm(name: &str) {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

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
            set_comm("collector");
            let to: SocketAddr = "127.0.0.1:7211".parse().unwrap();
            for _ in 0..CONNECTS {
                let e = TcpStream::connect_timeout(&to, Duration::from_secs(1)).unwrap_err();
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
                std::thread::sleep(Duration::from_millis(500));
            }
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
