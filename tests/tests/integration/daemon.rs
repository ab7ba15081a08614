//! `rstwall run` as a daemon: its config file, the persisted policy, SIGHUP
//! reloads, the Prometheus endpoint (checked by `promtool` and scraped by a
//! real Prometheus server) and the systemd unit.
//!
//! The end-to-end tests run in the namespace lab of [`rstwall_tests::lab`]
//! and need root; like the datapath tests, they fail loudly without it.
//! Everything listens on loopback inside the lab's appliance namespace, and
//! the traffic stays in 198.18.0.0/15.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rstwall_api::{Stats, Topology};
use rstwall_engine::policy::Mode;
use rstwall_engine::RstClass::{NoFlow, Refused};
use rstwall_tests::lab::*;
use rstwall_tests::prom::{http_get, try_http_get, url_encode, which, Service};
use rstwall_tests::{repo_root, rstwall_bin};
use serde_json::Value;

/// The daemon's settings for a lab: inline pa/pb, the lab's stats file and
/// state directory, `policy.toml` beside it; `extra` lines appended.
fn write_config(lab: &Lab, extra: &str) -> PathBuf {
    let path = lab.dir.join("rstwall.toml");
    let text = format!(
        "# written by the daemon tests\n\
         inline = [\"pa\", \"pb\"]\n\
         stats_interval = 0.2\n\
         stats_json = \"{}\"\n\
         state_dir = \"{}\"\n\
         control_socket = \"{}\"\n\
         policy = \"policy.toml\"\n\
         {extra}",
        lab.stats_path().display(),
        lab.state_dir().display(),
        lab.socket().display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn write_policy(lab: &Lab, text: &str) {
    std::fs::write(lab.dir.join("policy.toml"), text).unwrap();
}

fn start_with_config(lab: &mut Lab, config: &Path, extra_args: &[&str]) {
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    lab.start_rstwall_exact(&args);
}

/// Run `rstwall run ARGS` to its end (for arguments it must refuse).
fn run_to_exit(lab: &Lab, args: &[&str]) -> Output {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &lab.appliance])
        .arg(rstwall_bin())
        .arg("run")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rstwall");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rstwall {args:?} did not exit");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Exit status 2, and stderr naming every one of `needles`.
fn assert_refused(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

fn policy_version(stats: &Stats) -> u64 {
    stats.policy.version
}

/// The persisted state file's text.
fn state_file(lab: &Lab) -> String {
    std::fs::read_to_string(lab.state_dir().join("policy.toml")).expect("persisted policy")
}

/// Wait until the daemon's log contains `needle` (`count` times).
fn wait_log(lab: &Lab, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while lab.log().matches(needle).count() < count {
        assert!(
            Instant::now() < deadline,
            "the log never said {needle:?} ({count}x):\n{}",
            lab.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until the stats count `total` no_flow RSTs; the snapshot.
fn wait_no_flow(lab: &Lab, total: u64) -> Stats {
    lab.wait_stats(&format!("{total} no_flow RSTs"), |s| {
        s.rst(NoFlow).total >= total
    })
}

/// How long a worker may take to pick up a policy the main loop handed
/// over: it looks between batches, and an idle worker wakes at least every
/// 20 ms; the main loop acts on a SIGHUP within 50 ms.
const POLICY_PICKUP: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------
// (a) the config file
// ---------------------------------------------------------------------------

#[test]
fn config_file_starts_the_daemon_and_flags_override_it() {
    let mut lab = Lab::new("cfg");
    write_policy(&lab, "mode = \"enforce\"\n[actions]\nno_flow = \"drop\"\n");
    let config = write_config(&lab, "log_level = \"debug\"\n");
    start_with_config(&mut lab, &config, &[]);
    let s = lab.stats();
    assert_eq!(s.topology, Topology::Inline(["pa".into(), "pb".into()]));
    assert_eq!(s.mode, Mode::Enforce, "the policy file named by the config");
    assert_eq!(policy_version(&s), 1);
    echo_once(&lab, 6001).expect("traffic through the appliance");
    send_no_flow_rsts(&lab, 1, 30_000);
    let s = wait_no_flow(&lab, 1);
    assert_eq!(s.rst(NoFlow).dropped, 1, "{s:#?}");
    let log = lab.log();
    assert!(
        log.contains("metrics at http://127.0.0.1:9717/metrics"),
        "{log}"
    );
    assert!(log.contains("DEBUG"), "log_level = debug: {log}");
    let st = lab.stop_rstwall(libc::SIGTERM);
    assert!(st.success(), "{}", lab.log());

    // Flags win over the file: --mode over the policy, --metrics-listen
    // over the default address, --log-level over log_level.
    start_with_config(
        &mut lab,
        &config,
        &[
            "--mode",
            "monitor",
            "--metrics-listen",
            "off",
            "--log-level",
            "info",
        ],
    );
    let s = lab.stats();
    assert_eq!(s.mode, Mode::Monitor, "{s:#?}");
    send_no_flow_rsts(&lab, 1, 30_001);
    let s = wait_no_flow(&lab, 1);
    assert_eq!(s.rst(NoFlow).passed, 1, "{s:#?}");
    assert_eq!(
        TcpStream::connect_timeout(&"127.0.0.1:9717".parse().unwrap(), Duration::from_secs(1))
            .map(|_| ())
            .map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "metrics off, yet something listens"
    );
    let st = lab.stop_rstwall(libc::SIGTERM);
    assert!(st.success(), "{}", lab.log());
}

#[test]
fn bad_config_or_policy_files_exit_2_naming_key_and_line() {
    let lab = Lab::new("badcfg");
    write_policy(&lab, "mode = \"enforce\"\n");
    let config = |extra: &str| write_config(&lab, extra);

    // An unknown key, on line 8 (after the seven lines write_config writes).
    let c = config("polcy = \"other.toml\"\n");
    let out = run_to_exit(&lab, &["--config", c.to_str().unwrap()]);
    assert_refused(
        &out,
        &[
            c.to_str().unwrap(),
            "line 8, column 1",
            "unknown field `polcy`",
        ],
    );

    // A bad value.
    let c = config("\nqueues = 0\n");
    let out = run_to_exit(&lab, &["--config", c.to_str().unwrap()]);
    assert_refused(&out, &["line 9, column 10", "queues: at least 1"]);
    let c = config("xdp_mode = \"fast\"\n");
    let out = run_to_exit(&lab, &["--config", c.to_str().unwrap()]);
    assert_refused(&out, &["line 8", "xdp_mode: unknown XDP mode `fast`"]);
    let c = config("metrics_listen = 9717\n");
    let out = run_to_exit(&lab, &["--config", c.to_str().unwrap()]);
    assert_refused(
        &out,
        &[
            "line 8",
            "metrics_listen: expected a string, found integer 9717",
        ],
    );

    let c = config("control_group = \"no such group!\"\n");
    let out = run_to_exit(&lab, &["--config", c.to_str().unwrap()]);
    assert_refused(
        &out,
        &[
            "line 8",
            "control_group: \"no such group!\" is not a group name",
        ],
    );
    let c = config("control_group = \"rstwall-no-such-group\"\n");
    let out = run_to_exit(&lab, &["--config", c.to_str().unwrap()]);
    assert_refused(
        &out,
        &["control_group", "no such group: rstwall-no-such-group"],
    );

    // A bad policy file named by a good config: the policy file's line.
    write_policy(
        &lab,
        "mode = \"enforce\"\n[ratelimit]\nper_source_rate = -1\n",
    );
    let c = config("");
    let out = run_to_exit(&lab, &["--config", c.to_str().unwrap()]);
    assert_refused(
        &out,
        &[
            "policy.toml",
            "line 3, column 19",
            "ratelimit.per_source_rate",
        ],
    );

    // A missing config file, and a bad flag over a good file.
    let out = run_to_exit(&lab, &["--config", "/nonexistent/rstwall.toml"]);
    assert_refused(&out, &["/nonexistent/rstwall.toml: cannot read it"]);
    write_policy(&lab, "mode = \"enforce\"\n");
    let out = run_to_exit(
        &lab,
        &[
            "--config",
            c.to_str().unwrap(),
            "--metrics-listen",
            "nowhere",
        ],
    );
    assert_refused(&out, &["--metrics-listen", "not an address"]);
    // The poll mode: a bad name, and busy polling's parameters without it.
    let c = config("poll = \"fast\"\n");
    let out = run_to_exit(&lab, &["--config", c.to_str().unwrap()]);
    assert_refused(
        &out,
        &[
            "line 8",
            "poll: unknown poll mode `fast` (expected wakeup, spin or busy)",
        ],
    );
    let c = config("poll = \"spin\"\nbusy_poll_budget = 16\n");
    let out = run_to_exit(&lab, &["--config", c.to_str().unwrap()]);
    assert_refused(
        &out,
        &[
            "line 9",
            "busy_poll_budget: busy_poll_usecs and busy_poll_budget need poll = \"busy\"",
        ],
    );
    // Settings that contradict each other: host mode drops nothing, and
    // has no AF_XDP socket to poll.
    let out = run_to_exit(&lab, &["--host", "lo", "--rst-guard"]);
    assert_refused(&out, &["rst_guard", "host mode never drops a packet"]);
    let out = run_to_exit(&lab, &["--host", "lo", "--poll", "busy"]);
    assert_refused(&out, &["poll: host mode has no AF_XDP sockets"]);
    // Nothing was attached or persisted by any of them.
    assert!(lab.xdp_progs("pa").is_empty() && lab.xdp_progs("pb").is_empty());
    assert!(!lab.state_dir().join("policy.toml").exists());
}

/// `poll = "spin"` and `poll = "busy"`: traffic passes, the worker never
/// sleeps, and the status and statistics show the poll mode in effect on
/// every socket. Busy polling on the lab's veths either runs (the kernel
/// took the options, and the sockets' frames came through a NAPI, whose id
/// they show, with busy polls made) or fell back to spinning, saying why.
#[test]
fn poll_modes_spin_and_busy_pass_traffic_and_report_the_mode_in_effect() {
    use rstwall_api::stats::afxdp::PollMode;
    let mut lab = Lab::new("poll");
    write_policy(&lab, "mode = \"monitor\"\n");
    for (extra, want) in [
        ("poll = \"spin\"\n", PollMode::Spin),
        (
            "poll = \"busy\"\nbusy_poll_usecs = 50\nbusy_poll_budget = 16\n",
            PollMode::Busy,
        ),
    ] {
        let config = write_config(&lab, extra);
        start_with_config(&mut lab, &config, &[]);
        let status = lab.client().status().expect("status");
        assert_eq!(status.sockets.len(), 2, "{status:#?}");
        for s in &status.sockets {
            match (want, s.poll, &s.poll_fallback) {
                (PollMode::Spin, PollMode::Spin, None) => {}
                (PollMode::Busy, PollMode::Busy, None) => {}
                (PollMode::Busy, PollMode::Spin, Some(why)) => {
                    assert!(why.contains("busy polling refused"), "{why}");
                    assert!(lab.log().contains(why.as_str()), "{}", lab.log());
                }
                other => panic!("{extra}: {other:?} in {status:#?}"),
            }
        }
        // `rstwall status` says it too (both sockets start alike here).
        let text = lab.cli_ok(&["status"]);
        let line = format!("poll {}\n", status.sockets[0].poll.as_str());
        assert!(text.contains(&line), "{line:?} missing in:\n{text}");
        for port in 7001..7004 {
            echo_once(&lab, port).expect("traffic through the appliance");
        }
        let stats = lab.wait_stats("both sockets' frames published", |s| {
            s.workers.len() == 1
                && xsk_worker(&s.workers[0])
                    .sockets
                    .iter()
                    .all(|k| k.rx_frames > 0)
        });
        let w = &stats.workers[0];
        assert_eq!(w.sleeps, 0, "{extra}: a spinning worker never sleeps");
        for k in &xsk_worker(w).sockets {
            match (want, k.poll, &k.poll_fallback) {
                (PollMode::Spin, PollMode::Spin, None) => {}
                (PollMode::Busy, PollMode::Busy, None) => {
                    assert_ne!(k.napi_id, 0, "busy polling without a NAPI: {k:#?}");
                    assert!(k.busy_polls > 0, "{k:#?}");
                }
                (PollMode::Busy, PollMode::Spin, Some(why)) => {
                    assert!(
                        why.contains("busy polling refused") || why.contains("no NAPI"),
                        "{why}"
                    );
                    assert!(lab.log().contains(why.as_str()), "{}", lab.log());
                }
                other => panic!("{extra}: {other:?} in {k:#?}"),
            }
        }
        let st = lab.stop_rstwall(libc::SIGTERM);
        assert!(st.success(), "{}", lab.log());
    }
}

// ---------------------------------------------------------------------------
// (b) the policy persisted across restarts
// ---------------------------------------------------------------------------

#[test]
fn policy_is_persisted_and_restored_across_restarts() {
    let mut lab = Lab::new("persist");
    write_policy(&lab, "mode = \"enforce\"\n");
    let config = write_config(&lab, "");

    // First start: the configured policy becomes version 1, on disk.
    start_with_config(&mut lab, &config, &[]);
    assert_eq!(policy_version(&lab.stats()), 1);
    let first = state_file(&lab);
    assert!(first.contains("# policy_version = 1\n"), "{first}");
    assert!(first.contains("mode = \"enforce\""), "{first}");
    assert!(first.contains("no_flow = \"pass\""), "{first}");
    assert!(lab.log().contains("nothing persisted"), "{}", lab.log());
    assert!(lab.stop_rstwall(libc::SIGTERM).success(), "{}", lab.log());

    // Unchanged configuration: the persisted policy is restored as is.
    start_with_config(&mut lab, &config, &[]);
    assert_eq!(policy_version(&lab.stats()), 1);
    assert_eq!(state_file(&lab), first, "a restore rewrites nothing");
    assert!(lab.log().contains("restored from"), "{}", lab.log());
    assert!(lab.stop_rstwall(libc::SIGTERM).success(), "{}", lab.log());

    // A policy changed at run time (as the control API will: the persisted
    // policy differs from the configured one, whose digest is unchanged)
    // survives a restart, and it is what the workers enforce.
    let runtime = first
        .replace("# policy_version = 1", "# policy_version = 5")
        .replace("no_flow = \"pass\"", "no_flow = \"drop\"");
    std::fs::write(lab.state_dir().join("policy.toml"), &runtime).unwrap();
    start_with_config(&mut lab, &config, &[]);
    assert_eq!(policy_version(&lab.stats()), 5);
    send_no_flow_rsts(&lab, 2, 31_000);
    let s = wait_no_flow(&lab, 2);
    assert_eq!(s.rst(NoFlow).dropped, 2, "restored: {s:#?}\n{}", lab.log());
    // SIGKILL: no clean stop, and the state is still what ran.
    assert!(!lab.stop_rstwall(libc::SIGKILL).success());
    assert_eq!(state_file(&lab), runtime);

    // The policy file edited while rstwall was down: the file wins at the
    // next start, as the next version.
    write_policy(
        &lab,
        "mode = \"enforce\"\n[actions]\nin_window = \"pass\"\n",
    );
    start_with_config(&mut lab, &config, &[]);
    assert_eq!(policy_version(&lab.stats()), 6);
    send_no_flow_rsts(&lab, 1, 31_100);
    let s = wait_no_flow(&lab, 1);
    assert_eq!(s.rst(NoFlow).passed, 1, "{s:#?}");
    let state = state_file(&lab);
    assert!(state.contains("# policy_version = 6\n"), "{state}");
    assert!(state.contains("in_window = \"pass\""), "{state}");
    assert!(
        lab.log().contains("changed since it was last loaded"),
        "{}",
        lab.log()
    );
    assert!(lab.stop_rstwall(libc::SIGTERM).success(), "{}", lab.log());

    // Flags beat the persisted policy.
    start_with_config(&mut lab, &config, &["--mode", "monitor"]);
    let s = lab.stats();
    assert_eq!((policy_version(&s), s.mode), (7, Mode::Monitor));
    assert!(lab.stop_rstwall(libc::SIGTERM).success(), "{}", lab.log());

    // A damaged state is an error naming the file and the line, never
    // skipped; nothing is attached.
    let damaged = state_file(&lab).replace("mode = \"monitor\"", "mode = \"monitr\"");
    std::fs::write(lab.state_dir().join("policy.toml"), damaged).unwrap();
    let out = run_to_exit(&lab, &["--config", config.to_str().unwrap()]);
    let state_path = lab.state_dir().join("policy.toml");
    assert_refused(
        &out,
        &[
            state_path.to_str().unwrap(),
            "line 7, column 8",
            "mode: unknown mode",
            "remove it",
        ],
    );
    assert!(lab.xdp_progs("pa").is_empty());

    // One daemon per state directory.
    std::fs::remove_file(&state_path).unwrap();
    start_with_config(&mut lab, &config, &[]);
    let out = run_to_exit(
        &lab,
        &[
            "--tap",
            "lo",
            "--state-dir",
            lab.state_dir().to_str().unwrap(),
            "--metrics-listen",
            "off",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("in use by another rstwall"), "{err}");
    assert!(lab.stop_rstwall(libc::SIGTERM).success(), "{}", lab.log());
}

// ---------------------------------------------------------------------------
// (c) SIGHUP
// ---------------------------------------------------------------------------

#[test]
fn sighup_reloads_a_changed_policy_and_keeps_the_running_one_on_errors() {
    let mut lab = Lab::new("hup");
    write_policy(&lab, "mode = \"enforce\"\n[actions]\nno_flow = \"pass\"\n");
    let config = write_config(&lab, "");
    start_with_config(&mut lab, &config, &[]);
    send_no_flow_rsts(&lab, 2, 32_000);
    let s = wait_no_flow(&lab, 2);
    assert_eq!(s.rst(NoFlow).passed, 2, "{s:#?}");

    // no_flow pass → drop: the verdicts change.
    write_policy(&lab, "mode = \"enforce\"\n[actions]\nno_flow = \"drop\"\n");
    lab.signal_rstwall(libc::SIGHUP);
    lab.wait_stats("policy version 2", |s| policy_version(s) == 2);
    wait_log(&lab, "SIGHUP: policy version 2 (digest ", 1);
    assert!(state_file(&lab).contains("# policy_version = 2\n"));
    // The workers take the new policy when they next publish: probe until
    // one RST is dropped, then every one is.
    let (mut sent, deadline) = (2, Instant::now() + Duration::from_secs(10));
    loop {
        send_no_flow_rsts(&lab, 1, 32_100 + sent as u16);
        sent += 1;
        if wait_no_flow(&lab, sent).rst(NoFlow).dropped == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the workers kept passing:\n{}",
            lab.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let passed = sent - 1;
    send_no_flow_rsts(&lab, 3, 32_200);
    sent += 3;
    let s = wait_no_flow(&lab, sent);
    assert_eq!(s.rst(NoFlow).passed, passed, "{s:#?}");
    assert_eq!(s.rst(NoFlow).dropped, 4, "{s:#?}");

    // The same file again: nothing changes, and the version stays.
    lab.signal_rstwall(libc::SIGHUP);
    wait_log(&lab, "SIGHUP: policy version 2 (digest ", 2);
    assert!(lab.log().contains("unchanged"), "{}", lab.log());

    // An invalid edit: the error names the line and key, and the running
    // policy, its version and its file on disk stay.
    let persisted = state_file(&lab);
    write_policy(&lab, "mode = \"enforce\"\n[actions]\nno_flow = \"maybe\"\n");
    lab.signal_rstwall(libc::SIGHUP);
    wait_log(&lab, "reload rejected, policy version 2 keeps running", 1);
    let log = lab.log();
    let line = log.lines().find(|l| l.contains("reload rejected")).unwrap();
    assert!(
        line.contains("policy.toml")
            && line.contains("line 3, column 11")
            && line.contains("actions.no_flow"),
        "{line}"
    );
    // A broken config file is refused the same way.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap() + "stats_intreval = 1\n",
    )
    .unwrap();
    lab.signal_rstwall(libc::SIGHUP);
    wait_log(&lab, "reload rejected, policy version 2 keeps running", 2);
    assert!(lab
        .log()
        .contains("line 8, column 1: unknown field `stats_intreval`"));
    thread::sleep(POLICY_PICKUP);
    send_no_flow_rsts(&lab, 2, 32_300);
    let s = wait_no_flow(&lab, sent + 2);
    let dropped = s.rst(NoFlow).dropped;
    assert_eq!(dropped, 6, "still dropping: {s:#?}");
    assert_eq!(policy_version(&s), 2);
    assert_eq!(state_file(&lab), persisted);

    // Fixed again, with a setting a reload cannot apply: the policy is
    // applied, the setting reported.
    write_config(&lab, "queues = 1\n");
    write_policy(&lab, "mode = \"monitor\"\n");
    lab.signal_rstwall(libc::SIGHUP);
    let s = lab.wait_stats("policy version 3", |s| policy_version(s) == 3);
    assert_eq!(s.mode, Mode::Monitor);
    wait_log(
        &lab,
        "queues changed: not applied until rstwall restarts",
        1,
    );
    let st = lab.stop_rstwall(libc::SIGTERM);
    assert!(st.success(), "{}", lab.log());
}

// ---------------------------------------------------------------------------
// (d) the metrics endpoint, promtool and a real Prometheus
// ---------------------------------------------------------------------------

const METRICS: &str = "127.0.0.1:9717";
const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0";

#[test]
fn metrics_pass_promtool_and_a_real_prometheus_scrapes_them() {
    let promtool = which("promtool");
    let prometheus = which("prometheus");
    let mut lab = Lab::new("prom");
    write_policy(&lab, "mode = \"enforce\"\n[actions]\nno_flow = \"drop\"\n");
    let config = write_config(&lab, &format!("metrics_listen = \"{METRICS}\"\n"));
    start_with_config(&mut lab, &config, &[]);
    let metrics: SocketAddr = METRICS.parse().unwrap();

    // Traffic of several kinds: a connection, a refused one, spoofed RSTs.
    echo_once(&lab, 6002).expect("echo");
    let _ = connect_within(&lab, 6999, Duration::from_secs(3)).expect_err("refused");
    send_no_flow_rsts(&lab, 3, 33_000);
    wait_no_flow(&lab, 3);
    lab.wait_stats("the refused RST", |s| s.rst(Refused).total >= 1);
    thread::sleep(Duration::from_millis(400)); // one publish to the endpoint

    // The classic text format, for curl and promtool.
    let (status, head, text) = http_get(&lab.appliance, metrics, "/metrics", "*/*");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for sample in [
        "rstwall_rsts_total{class=\"no_flow\",verdict=\"drop\"} 3\n",
        "rstwall_rsts_total{class=\"refused\",verdict=\"pass\"} 1\n",
        "rstwall_failed_connection_attempts_total 1\n",
        "rstwall_policy_version 1\n",
        "rstwall_policy_enforcing 1\n",
        "rstwall_xsk_zerocopy{port=\"pa\",queue=\"0\"} 0\n",
    ] {
        assert!(text.contains(sample), "{sample} missing:\n{text}");
    }
    let syns = text
        .lines()
        .find_map(|l| l.strip_prefix("rstwall_xdp_tcp_packets_total{port=\"pa\",class=\"syn\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .expect("SYNs from pa in XDP");
    assert!(syns >= 2, "{text}");

    // OpenMetrics for those who ask, ending in # EOF.
    let (status, head, om) = http_get(&lab.appliance, metrics, "/metrics", OPENMETRICS);
    assert_eq!(status, 200);
    assert!(
        head.contains("application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(om.ends_with("# EOF\n") && om.contains("# TYPE rstwall_rsts counter\n"));
    // Anything else is refused.
    assert_eq!(http_get(&lab.appliance, metrics, "/", "*/*").0, 404);
    assert_eq!(
        http_get(&lab.appliance, metrics, "/api/v1/query", "*/*").0,
        404
    );

    // A real Prometheus, in the appliance namespace, scraping every second.
    let web = in_ns(&lab.appliance, || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    });
    let pdir = lab.dir.join("prometheus");
    std::fs::create_dir_all(pdir.join("data")).unwrap();
    std::fs::write(
        pdir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: rstwall\n    scrape_interval: 1s\n    \
             scrape_timeout: 1s\n    static_configs:\n      - targets: ['{METRICS}']\n"
        ),
    )
    .unwrap();
    let log = pdir.join("prometheus.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &lab.appliance])
        .arg(&prometheus)
        .arg(format!(
            "--config.file={}",
            pdir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            pdir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("prometheus");
    let prom = Service { child, log };

    // Ask its API until the counters appear with the values rstwall has.
    let query = |q: &str| -> Option<Vec<Value>> {
        let target = format!("/api/v1/query?query={}", url_encode(q));
        let (status, _, body) =
            try_http_get(&lab.appliance, web, &target, "application/json").ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && v["status"] == "success")
            .then(|| v["data"]["result"].as_array().cloned().unwrap_or_default())
    };
    let value = |r: &Value| -> f64 { r["value"][1].as_str().unwrap().parse().unwrap() };
    let deadline = Instant::now() + Duration::from_secs(90);
    let result = loop {
        if let Some(r) = query("rstwall_rsts_total{class=\"no_flow\",verdict=\"drop\"}")
            .filter(|r| !r.is_empty())
        {
            if value(&r[0]) > 0.0 {
                break r;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never showed rstwall_rsts_total:\n{}",
            prom.log()
        );
        thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(value(&result[0]), 3.0, "{result:?}");
    assert_eq!(result[0]["metric"]["job"], "rstwall");
    // It scraped OpenMetrics (what it asks for), and the target is healthy.
    let om_scrapes = query("rstwall_metrics_scrapes_total{format=\"openmetrics\"}").unwrap();
    assert!(value(&om_scrapes[0]) >= 1.0, "{om_scrapes:?}");
    let syn = query("sum(rstwall_xdp_tcp_packets_total{class=\"syn\"})").unwrap();
    assert!(value(&syn[0]) >= 2.0, "{syn:?}");
    let up = query("up{job=\"rstwall\"}").unwrap();
    assert_eq!(value(&up[0]), 1.0, "{up:?}");
    drop(prom);

    let st = lab.stop_rstwall(libc::SIGTERM);
    assert!(st.success(), "{}", lab.log());
}

// ---------------------------------------------------------------------------
// The systemd unit
// ---------------------------------------------------------------------------

#[test]
fn the_systemd_unit_runs_the_daemon_as_documented() {
    let unit = repo_root().join("dist/rstwall.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let has = |line: &str| text.lines().any(|l| l.trim() == line);
    for line in [
        "Type=simple",
        "ExecStart=/usr/local/bin/rstwall run --config /etc/rstwall/rstwall.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_BPF CAP_SYS_ADMIN CAP_NET_RAW CAP_IPC_LOCK",
        "LimitMEMLOCK=infinity",
        "RuntimeDirectory=rstwall",
        "StateDirectory=rstwall",
    ] {
        assert!(has(line), "{line} missing in {}", unit.display());
    }
    // The state directory it provides is the daemon's default.
    let sample = std::fs::read_to_string(repo_root().join("dist/rstwall.toml")).unwrap();
    assert!(sample.contains("state_dir = \"/var/lib/rstwall\""));

    // systemd's own check, with ExecStart pointing at this build (verify
    // insists the binary exists). systemd-analyze comes with systemd; a
    // machine without it gets the checks above only.
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: unit checked by its keys only");
        return;
    };
    assert!(out.status.success());
    let dir = std::env::temp_dir().join(format!("rstwall-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("rstwall.service");
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/rstwall", rstwall_bin().to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
