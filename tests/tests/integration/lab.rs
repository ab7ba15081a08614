//! `rstwall lab` as an operator runs it: every scenario in its own lab,
//! passing its own checks, and `lab up` / `lab down` leaving nothing behind.
//!
//! Each test names its lab after itself and this process id, under its own
//! directory, so the tests run side by side with each other and with the
//! other namespace tests. They need root and fail without it.
//!
//! The scenarios run for a few seconds each: what they check is exact
//! (every RST by class), so a short run proves as much as a long one.

use std::process::Command;

use rstwall_tests::lab::CliLab;
use rstwall_tests::rstwall_bin;
use serde_json::Value;

/// A lab name and directory of this test process, removed when dropped.
struct TestLab {
    lab: CliLab,
    /// Not alongside the benchmark harness (see `cpu_share`).
    _cpu: std::sync::RwLockReadGuard<'static, ()>,
}

impl std::ops::Deref for TestLab {
    type Target = CliLab;
    fn deref(&self) -> &CliLab {
        &self.lab
    }
}

impl TestLab {
    fn new(tag: &str) -> TestLab {
        TestLab {
            lab: CliLab::new(tag, "rstwall-labtest"),
            _cpu: rstwall_tests::cpu_share(),
        }
    }

    /// This lab's namespaces that exist.
    fn namespaces(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip netns list");
        let prefix = format!("rwlab-{}-", self.name);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|ns| ns.starts_with(&prefix))
            .map(str::to_string)
            .collect()
    }

    fn daemon_pid(&self) -> u32 {
        let path = self.dir.join(&self.name).join("rstwall.pid");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .expect("pid file")
    }

    /// Run a scenario; its JSON report, after checking that it passed and
    /// took its lab down.
    fn scenario(&self, scenario: &str, secs: u32, extra: &[&str]) -> Value {
        let secs = secs.to_string();
        let mut args = vec!["lab", "run", scenario, "--duration", &secs, "--json"];
        args.extend_from_slice(extra);
        let out = self.rstwall(&args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success(),
            "lab run {scenario}: {}\n{stdout}\n{stderr}",
            out.status
        );
        let report: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("report JSON: {e}\n{stdout}\n{stderr}"));
        assert_eq!(report["passed"], true, "{report:#}");
        assert_eq!(report["scenario"], scenario);
        let checks = report["checks"].as_array().expect("checks");
        assert!(checks.len() >= 8, "{report:#}");
        assert!(checks.iter().all(|c| c["ok"] == true), "{report:#}");
        assert_eq!(
            self.namespaces(),
            Vec::<String>::new(),
            "lab run {scenario} left namespaces behind"
        );
        assert!(
            !self.dir.join(&self.name).exists(),
            "lab run {scenario} left its directory behind"
        );
        report
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if !self.namespaces().is_empty() || self.dir.join(&self.name).exists() {
            let _ = self.rstwall(&["lab", "down"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// RSTs of `class` rstwall counted, which must equal what the scenario
/// caused, and be some.
fn counted(report: &Value, class: &str) -> u64 {
    let got = report["counted"]["rst"][class]["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("counted.rst.{class}.total in {report:#}"));
    assert_eq!(report["expected"][class], got, "{class}: {report:#}");
    assert!(got > 0, "no {class} RST at all: {report:#}");
    got
}

fn rst(report: &Value, class: &str, key: &str) -> u64 {
    report["counted"]["rst"][class][key].as_u64().unwrap_or(0)
}

#[test]
fn lab_refused_counts_every_refused_connection() {
    let lab = TestLab::new("refused");
    let r = lab.scenario("refused", 2, &[]);
    let n = counted(&r, "refused");
    assert_eq!(r["counted"]["failed_connects"], n);
    assert_eq!(r["mode"], "monitor");
}

#[test]
fn lab_teardown_counts_data_after_close() {
    let lab = TestLab::new("teardown");
    let r = lab.scenario("teardown", 2, &[]);
    counted(&r, "teardown");
}

#[test]
fn lab_abort_counts_close_with_unread_data() {
    let lab = TestLab::new("abort");
    let r = lab.scenario("abort", 2, &[]);
    counted(&r, "abort");
}

#[test]
fn lab_blind_reset_is_dropped_in_enforce_mode_and_sessions_survive() {
    let lab = TestLab::new("blind");
    let r = lab.scenario("blind-reset", 3, &[]);
    assert_eq!(
        r["mode"], "enforce",
        "blind-reset runs in enforce by default"
    );
    for class in ["in_window", "out_of_window"] {
        let n = counted(&r, class);
        assert_eq!(rst(&r, class, "dropped"), n, "{class}: {r:#}");
        assert_eq!(rst(&r, class, "passed"), 0, "{class}: {r:#}");
    }
    let checks = r["checks"].to_string();
    assert!(
        checks.contains("sessions alive after the attack"),
        "{checks}"
    );
    assert!(checks.contains("reached the server: 0 of"), "{checks}");
}

#[test]
fn lab_backscatter_is_no_flow() {
    let lab = TestLab::new("backscatter");
    let r = lab.scenario("backscatter", 2, &[]);
    let n = counted(&r, "no_flow");
    assert_eq!(
        rst(&r, "no_flow", "passed"),
        n,
        "the default policy passes no_flow"
    );
}

#[test]
fn lab_syn_flood_lets_legitimate_connections_through() {
    let lab = TestLab::new("synflood");
    let r = lab.scenario("syn-flood", 3, &[]);
    let syn = r["counted"]["syn"].as_u64().expect("syn");
    assert!(syn > 1000, "{r:#}");
    assert!(
        r["counted"]["synack"].as_u64().expect("synack") >= syn,
        "{r:#}"
    );
    assert_eq!(r["counted"]["rst_segments"], 0, "{r:#}");
}

/// The classes the mixed scenario causes.
const MIXED_CLASSES: [&str; 6] = [
    "refused",
    "abort",
    "teardown",
    "in_window",
    "out_of_window",
    "no_flow",
];

#[test]
fn lab_mixed_counts_every_class_at_once_over_legitimate_traffic() {
    let lab = TestLab::new("mixed");
    let r = lab.scenario("mixed", 6, &[]);
    assert_eq!(r["mode"], "enforce");
    for class in MIXED_CLASSES {
        counted(&r, class);
    }
    let dropped = rst(&r, "in_window", "dropped") + rst(&r, "out_of_window", "dropped");
    assert_eq!(r["counted"]["dropped"], dropped, "{r:#}");
    let checks = r["checks"].to_string();
    assert!(checks.contains("bulk upload intact"), "{checks}");
    assert!(checks.contains("bulk download intact"), "{checks}");
}

/// Every class on a host: host mode on the lab's server while the mixed
/// scenario runs (refused, abort, teardown, blind resets aimed at the
/// server, backscatter, a SYN flood, over legitimate traffic). Every RST's
/// class agrees with the server kernel's verdict, host mode sees what the
/// parts caused class by class, and each socket a RST met names its
/// process: the lab's own (the `rstwall` process running the scenario).
#[test]
fn lab_host_mode_on_the_server_agrees_for_every_class() {
    let lab = TestLab::new("host");
    let r = lab.scenario("mixed", 6, &["--host"]);
    assert_eq!(r["mode"], "monitor");
    for class in MIXED_CLASSES {
        counted(&r, class);
    }
    let checks: Vec<String> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap_or_default().to_string())
        .collect();
    for needle in [
        "host mode: every RST the server received has the kernel's verdict, and it agrees",
        "host mode: every RST the server sent has the kernel's send event",
        "host mode saw, class by class, the RSTs the parts caused",
        "host mode names the process of every socket a RST met",
        "host mode lost nothing",
    ] {
        assert!(
            checks.iter().any(|c| c.starts_with(needle)),
            "{needle}: {checks:#?}"
        );
    }
    let did = r["did"].to_string();
    assert!(did.contains("by process: rstwall (pid"), "{did}");
    assert!(did.contains("refused NO_SOCKET"), "{did}");
}

#[test]
fn lab_up_twice_replaces_the_first_and_down_leaves_nothing() {
    let lab = TestLab::new("updown");
    let up = lab.rstwall(&["lab", "up"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert_eq!(lab.namespaces().len(), 5, "{:?}", lab.namespaces());
    let first = lab.daemon_pid();

    // A second `lab up` clears the first lab (its daemon too) and builds
    // a new one.
    let up = lab.rstwall(&["lab", "up", "--mode", "enforce"]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let second = lab.daemon_pid();
    assert_ne!(first, second);
    let stat = std::fs::read_to_string(format!("/proc/{first}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "the first lab's rstwall still runs: {stat}"
    );
    assert_eq!(lab.namespaces().len(), 5, "{:?}", lab.namespaces());

    // `lab run` on a lab that is up uses it and leaves it up.
    let r = lab.rstwall(&["lab", "run", "refused", "--duration", "1", "--json"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(lab.daemon_pid(), second, "lab run replaced the daemon");
    assert_eq!(lab.namespaces().len(), 5);

    let down = lab.rstwall(&["lab", "down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_eq!(lab.namespaces(), Vec::<String>::new());
    assert!(!lab.dir.join(&lab.name).exists(), "lab directory left");
    let stat = std::fs::read_to_string(format!("/proc/{second}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "rstwall still runs after lab down: {stat}"
    );
    // Nothing left to remove is fine.
    let again = lab.rstwall(&["lab", "down"]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to remove"));
}

#[test]
fn lab_bad_arguments_exit_2_with_one_line() {
    for (args, needle) in [
        (&["lab", "run", "nope"][..], "unknown scenario \"nope\""),
        (&["lab", "run", "mixed", "--duration", "0"], "--duration"),
        (&["lab", "run", "mixed", "--duration", "x"], "--duration"),
        (&["lab", "run", "refused", "--mode", "drop"], "--mode"),
        (
            &["lab", "run", "refused", "--host", "--mode", "enforce"],
            "--host",
        ),
        (&["lab", "up", "--name", "Not_Valid"], "--name"),
        (&["lab", "up", "--dir", "relative/dir"], "--dir"),
    ] {
        let out = Command::new(rstwall_bin())
            .args(args)
            .output()
            .expect("run rstwall");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
}

/// What the README's main command runs (`scripts/demo`: `rstwall lab run
/// mixed --top`), without a terminal: `rstwall top` frames while the
/// scenario runs, then the report, and nothing left behind.
#[test]
fn lab_run_with_top_shows_the_live_view_then_the_report() {
    let lab = TestLab::new("top");
    let out = lab.rstwall(&["lab", "run", "mixed", "--duration", "4", "--top"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    let frames = stdout
        .matches("rstwall top - inline pa<->pb - enforce")
        .count();
    assert!(frames >= 3, "{frames} frames of top:\n{stdout}");
    assert!(
        stdout.contains("in_window") && stdout.contains("q quits"),
        "{stdout}"
    );
    let report = stdout
        .find("rstwall lab: scenario mixed")
        .unwrap_or_else(|| panic!("no report after the view:\n{stdout}"));
    assert!(
        stdout[report..].contains("PASS mixed"),
        "{}",
        &stdout[report..]
    );
    assert!(lab.namespaces().is_empty(), "namespaces left behind");
}
