//! `rstwall analyze` as an operator uses it: outputs checked field by field,
//! and every bad input answered with one clear line and exit status 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rstwall_tests::{repo_root, rstwall_bin};
use serde_json::Value;

fn rstwall(args: &[&str]) -> Output {
    Command::new(rstwall_bin())
        .args(args)
        .output()
        .expect("run rstwall")
}

fn demo() -> String {
    repo_root().join("samples/demo.pcap").display().to_string()
}

fn fixture(name: &str) -> String {
    repo_root()
        .join("tests/fixtures/linux")
        .join(name)
        .display()
        .to_string()
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("rstwall-cli-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit status 2 and exactly one line on stderr that contains `needle`.
fn assert_usage_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn text_report_names_every_class() {
    let o = rstwall(&["analyze", &demo()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    for class in rstwall_engine::RstClass::ALL {
        assert!(text.contains(class.as_str()), "{class} missing:\n{text}");
    }
    assert!(text.contains("failed connection attempts"));
    assert!(text.contains("Alerts"));
}

#[test]
fn json_report_fields() {
    let o = rstwall(&["analyze", "--json", &demo()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["mode"], "monitor");
    assert_eq!(v["files"][0]["frames"], 240);
    assert_eq!(v["files"][0]["format"], "pcap");
    assert!(v["files"][0]["stopped"].is_null());
    let c = &v["counters"];
    assert_eq!(c["rst"], 44);
    assert_eq!(c["failed_connects"], 4);
    let classes = v["rst_classes"].as_array().unwrap();
    assert_eq!(classes.len(), 8);
    let total: u64 = classes.iter().map(|c| c["total"].as_u64().unwrap()).sum();
    assert_eq!(total, 44);
    let refused = classes.iter().find(|c| c["class"] == "refused").unwrap();
    assert_eq!(refused["total"], 4);
    let in_window = classes.iter().find(|c| c["class"] == "in_window").unwrap();
    // Monitor mode drops nothing, but shows what enforce would.
    assert_eq!(in_window["dropped"], 0);
    assert_eq!(in_window["would_drop"], in_window["total"]);
    assert!(v["bytes_per_flow"].as_u64().unwrap() <= 128);
    assert!(v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["rule"] == "failed_connects"));
}

#[test]
fn events_one_line_per_rst() {
    let s = Scratch::new("events");
    let ev = s.path("events.jsonl");
    let o = rstwall(&[
        "analyze",
        "--events",
        ev.to_str().unwrap(),
        &fixture("refused.pcap"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&ev).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let first = &lines[0];
    assert_eq!(first["frame"], 2);
    assert_eq!(first["class"], "refused");
    assert_eq!(first["with_data"], false);
    assert_eq!(first["verdict"], "pass");
    assert_eq!(first["flags"], "R.");
    assert_eq!(first["seq"], 0);
    for key in [
        "file", "ts", "src", "dst", "sport", "dport", "ack", "reason",
    ] {
        assert!(!first[key].is_null(), "{key} missing: {first}");
    }
    assert!(first["ts"].as_str().unwrap().ends_with('Z'));

    // `--events -` keeps stdout machine-readable.
    let o = rstwall(&["analyze", "--events", "-", &fixture("refused.pcap")]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 4);
    assert!(stderr(&o).contains("RSTs by class"));
}

#[test]
fn enforce_policy_sets_verdicts() {
    let s = Scratch::new("enforce");
    let policy = s.path("policy.toml");
    std::fs::write(
        &policy,
        "mode = \"enforce\"\n[actions]\nno_flow = \"drop\"\n",
    )
    .unwrap();
    let ev = s.path("ev.jsonl");
    let o = rstwall(&[
        "analyze",
        "--policy",
        policy.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
        &fixture("backscatter.pcap"),
        &fixture("blind-reset.pcap"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for line in std::fs::read_to_string(&ev).unwrap().lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        let expect = match e["class"].as_str().unwrap() {
            "no_flow" | "in_window" | "out_of_window" => "drop",
            _ => "pass",
        };
        assert_eq!(e["verdict"], expect, "{e}");
    }
}

#[test]
fn write_keeps_only_the_chosen_classes_and_tcpdump_reads_it() {
    let s = Scratch::new("write");
    let out = s.path("spoofed.pcap");
    let o = rstwall(&[
        "analyze",
        "--write",
        out.to_str().unwrap(),
        "--class",
        "in_window,out_of_window",
        &fixture("blind-reset.pcap"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("wrote 10 packets"));
    // Read back with our reader: ten RSTs, all of the chosen classes.
    let ev = s.path("ev.jsonl");
    let o = rstwall(&[
        "analyze",
        "--events",
        ev.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let n = std::fs::read_to_string(&ev).unwrap().lines().count();
    assert_eq!(n, 10);
    // And with tcpdump, which the setup installs.
    let t = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(&out)
        .output()
        .expect("tcpdump (scripts/setup installs it)");
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    assert_eq!(String::from_utf8_lossy(&t.stdout).lines().count(), 10);
}

#[test]
fn damaged_capture_is_read_up_to_the_damage() {
    let s = Scratch::new("damaged");
    let mut bytes = std::fs::read(repo_root().join("samples/demo.pcap")).unwrap();
    bytes.truncate(bytes.len() - 30);
    let cut = s.path("cut.pcap");
    std::fs::write(&cut, &bytes).unwrap();
    let o = rstwall(&["analyze", "--json", cut.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["files"][0]["frames"], 239);
    let stopped = v["files"][0]["stopped"].as_str().unwrap();
    assert!(stopped.starts_with("frame 240"), "{stopped}");
    let o = rstwall(&["analyze", cut.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("damaged: read up to frame 240"));
}

#[test]
fn bad_inputs_exit_2_with_a_clear_message() {
    let s = Scratch::new("bad");
    let not_pcap = s.path("notes.txt");
    std::fs::write(&not_pcap, "hello, not a capture\n").unwrap();
    let empty = s.path("empty.pcap");
    std::fs::write(&empty, "").unwrap();
    let bad_policy = s.path("bad.toml");
    std::fs::write(
        &bad_policy,
        "mode = \"enforce\"\n[actions]\nin_window = \"dorp\"\n",
    )
    .unwrap();
    let unknown_key = s.path("unknown.toml");
    std::fs::write(&unknown_key, "[ratelimit]\nper_source_rat = 5\n").unwrap();
    let demo = demo();
    let p = |p: &Path| p.to_str().unwrap().to_string();

    assert_usage_error(
        &rstwall(&["analyze", "/nonexistent/x.pcap"]),
        "/nonexistent/x.pcap",
    );
    assert_usage_error(
        &rstwall(&["analyze", &p(&not_pcap)]),
        "not a pcap or pcapng file",
    );
    assert_usage_error(&rstwall(&["analyze", &p(&empty)]), "empty file");
    assert_usage_error(
        &rstwall(&["analyze", "--policy", &p(&bad_policy), &demo]),
        "actions.in_window",
    );
    assert_usage_error(
        &rstwall(&["analyze", "--policy", &p(&bad_policy), &demo]),
        "line 3",
    );
    assert_usage_error(
        &rstwall(&["analyze", "--policy", &p(&unknown_key), &demo]),
        "per_source_rat",
    );
    assert_usage_error(
        &rstwall(&[
            "analyze",
            "--write",
            &p(&s.path("o.pcap")),
            "--class",
            "reset",
            &demo,
        ]),
        "unknown RST class `reset`",
    );
    assert_usage_error(&rstwall(&["analyze", "--class", "abort", &demo]), "--write");
    assert_usage_error(&rstwall(&["analyze", "--mode", "panic", &demo]), "--mode");
    assert_usage_error(
        &rstwall(&["analyze", "--json", "--events", "-", &demo]),
        "--events",
    );
    assert_usage_error(&rstwall(&["analyze", "--top", "0", &demo]), "--top");
    assert_usage_error(
        &rstwall(&["analyze", "--flow-capacity", "0", &demo]),
        "flow_capacity",
    );
    assert_usage_error(&rstwall(&["analyze"]), "FILE");
    assert_usage_error(&rstwall(&["frobnicate"]), "frobnicate");
}
