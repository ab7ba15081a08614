//! The benchmark tools, run for real but briefly (root; they build their
//! own namespaces): the generator sends exactly what it is asked over
//! AF_XDP and through the kernel's live-frames runner, and the harness runs
//! every contender and writes its report, JSON and chart. The figures
//! themselves are not checked (tests assert behaviour, not speed); what
//! enforce mode drops is.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use rstwall_netlab::ethtool::{self, Offload};
use rstwall_netlab::{Mac, Namespaces, Netns, Veth};
use rstwall_tests::bench_bin;
use rstwall_tests::lab::require_root;
use serde_json::Value;

fn run(args: &[&str]) -> Output {
    Command::new(bench_bin())
        .args(args)
        .output()
        .expect("run rstwall-bench")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Run `rstwall-bench <args> --out DIR` (DIR made fresh, named after
/// `tag`) and check that it succeeded; DIR and its stderr.
fn run_with_out(tag: &str, args: &[&str]) -> (PathBuf, String) {
    let out_dir = std::env::temp_dir().join(format!("rstwall-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out_dir);
    let dir = out_dir.to_str().unwrap().to_string();
    let mut all = args.to_vec();
    all.extend(["--out", dir.as_str()]);
    let out = run(&all);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    (out_dir, stderr)
}

/// A file a run wrote (its stderr in the message if it is missing).
fn read_out(dir: &Path, name: &str, stderr: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{stderr}"))
}

/// Two namespaces joined by a veth pair (`g0` sends, `s0` receives), both
/// removed on drop.
struct Pair {
    gen: String,
    sink: Arc<Netns>,
    _namespaces: Namespaces,
}

impl Pair {
    fn new(tag: &str) -> Pair {
        require_root();
        let mut namespaces = Namespaces::unique(tag);
        let gen = namespaces.add("g").expect("namespace");
        let sink = namespaces.add("s").expect("namespace");
        // The generator's default destination MAC: frames are for s0.
        let s0 = Veth {
            peer_mac: Some(Mac([0x02, 0, 0, 0, 0, 0x02])),
            ..Veth::default()
        };
        gen.add_veth("g0", &sink, "s0", &s0).expect("veth");
        // veth takes XDP-redirected frames only when its peer runs NAPI.
        sink.run(|| ethtool::set("s0", Offload::Gro, true))
            .and_then(|r| r)
            .expect("GRO on s0");
        gen.set_up("g0").expect("link up");
        sink.set_up("s0").expect("link up");
        Pair {
            gen: gen.name().to_string(),
            sink,
            _namespaces: namespaces,
        }
    }

    /// Frames s0 has received.
    fn received(&self) -> u64 {
        let out = self
            .sink
            .ip(&["-j", "-s", "link", "show", "s0"])
            .expect("ip link");
        let v: Value = serde_json::from_str(&out).expect("ip -j");
        v[0]["stats64"]["rx"]["packets"]
            .as_u64()
            .unwrap_or_else(|| panic!("no rx packets in {v}"))
    }
}

#[test]
fn gen_sends_exactly_what_it_is_asked_over_af_xdp_and_live_frames() {
    let pair = Pair::new("gen");
    let before = pair.received();
    let out = run(&[
        "gen",
        "--dev",
        "g0",
        "--netns",
        &pair.gen,
        "--profile",
        "rst-flood",
        "--src",
        "198.18.0.1",
        "--sport",
        "40000",
        "--dst",
        "198.18.0.2",
        "--dport",
        "179",
        "--rate",
        "2000",
        "--count",
        "500",
        "--via",
        "xsk",
    ]);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(out.status.success(), "{:?}: {all}", out.status);
    assert!(all.contains("frames/s"), "a rate line: {all}");
    assert!(
        all.contains("500 frames") && all.contains("AF_XDP"),
        "{all}"
    );
    assert_eq!(pair.received() - before, 500, "{all}");

    let before = pair.received();
    let out = run(&[
        "gen",
        "--dev",
        "g0",
        "--netns",
        &pair.gen,
        "--profile",
        "syn-flood",
        "--dst",
        "198.18.0.2",
        "--dport",
        "80",
        "--count",
        "2000",
        "--via",
        "live",
    ]);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("live frames"), "{all}");
    assert_eq!(pair.received() - before, 2000, "{all}");

    // IPv6 and a custom segment, counted the same way.
    let before = pair.received();
    let out = run(&[
        "gen",
        "--dev",
        "g0",
        "--netns",
        &pair.gen,
        "--src",
        "2001:2::1",
        "--dst",
        "2001:2::2",
        "--dport",
        "443",
        "--flags",
        "rst,ack",
        "--count",
        "100",
        "--rate",
        "1000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(pair.received() - before, 100);

    // Bad arguments: one line, exit 2, nothing sent.
    for args in [
        &[
            "gen",
            "--dev",
            "g0",
            "--netns",
            &pair.gen,
            "--profile",
            "custom",
        ][..],
        &[
            "gen",
            "--dev",
            "g0",
            "--netns",
            &pair.gen,
            "--dst",
            "198.18.0.2",
            "--dport",
            "70000",
            "--flags",
            "syn",
        ],
        &[
            "gen",
            "--dev",
            "nope0",
            "--netns",
            &pair.gen,
            "--profile",
            "syn-flood",
            "--dst",
            "198.18.0.2",
            "--dport",
            "80",
        ],
    ] {
        let out = run(args);
        let err = text(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{args:?}: {:?} {err}",
            out.status
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn the_harness_runs_every_contender_and_writes_report_json_and_chart() {
    require_root();
    // Both CPUs flat out for half a minute: not while tests time real TCP.
    let _cpu = rstwall_tests::cpu_alone();
    let (out_dir, stderr) = run_with_out(
        "run",
        &[
            "run",
            "--rounds",
            "1",
            "--round-secs",
            "0.5",
            "--warmup-secs",
            "0.2",
            "--latency-secs",
            "0.5",
            "--goodput-secs",
            "1",
            "--flood-void",
            "--flows",
            "1000",
            "--max-other",
            "100",
        ],
    );
    let read = |name: &str| read_out(&out_dir, name, &stderr);
    let report = read("report.md");
    for name in [
        "bare AF_XDP loop",
        "Linux bridge + nftables",
        "rstwall monitor",
        "rstwall enforce",
    ] {
        assert!(
            report.contains(name),
            "{name} missing in report.md:\n{report}"
        );
    }
    let chart = read("chart.svg");
    assert!(
        chart.trim_start().starts_with("<svg") || chart.starts_with("<?xml"),
        "{chart}"
    );
    assert!(chart.contains("rstwall enforce") && chart.trim_end().ends_with("</svg>"));
    let json: Value = serde_json::from_str(&read("results.json")).expect("results.json");
    let summary = json["summary"].as_array().expect("summary");
    let names: Vec<&str> = summary
        .iter()
        .map(|c| c["contender"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bare", "nftables", "monitor", "enforce"]);
    for c in summary {
        assert!(c["mpps"].as_f64().unwrap() > 0.0, "{c:#}");
        assert!(c["latency_us"]["samples"].as_u64().unwrap() > 0, "{c:#}");
        assert!(c["goodput_mbps"]["alone"].as_f64().unwrap() > 0.0, "{c:#}");
    }
    // What enforce mode drops does not depend on the machine's speed:
    // every spoofed RST of the accuracy pass, and none reached the sink.
    assert_eq!(
        summary[3]["spoofed_rst_dropped_pct"], 100.0,
        "{:#}",
        summary[3]
    );
    let acc = json["accuracy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["contender"] == "enforce")
        .expect("enforce's accuracy");
    for kind in ["in_window", "out_of_window", "syn_sent_bad_ack"] {
        let k = &acc["by_kind"][kind];
        assert!(k["sent"].as_u64().unwrap() > 0, "{acc:#}");
        assert_eq!(k["arrived"], 0, "{kind}: {acc:#}");
    }
    // The flood made malformed (--flood-void) was sent, and rstwall's XDP
    // program, on every port but the bridge's, let none of it through.
    assert!(
        report.contains("Under the same flood made malformed"),
        "{report}"
    );
    for g in json["goodput"].as_array().expect("goodput") {
        let void = &g["flood_void"];
        assert!(void["flood_sent"].as_u64().unwrap() > 0, "{g:#}");
        if g["contender"] != "nftables" {
            assert_eq!(void["flood_at_server"], 0, "{g:#}");
        }
    }
    assert!(json["settings"].is_object());
    assert!(Path::new(&out_dir).join("results.json").exists());
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// The `export` contender (rstwall monitor handing every RST to the fleet
/// exporter, streaming to a local `nats-server -js`): without nats-server
/// on PATH the run stops before building anything and says what is
/// missing; with it, a short throughput run beside `monitor` reports the
/// ratio and the exporter's counts, and the exporter was handed RSTs and
/// accounted for every one (acknowledged, waiting or lost).
#[test]
fn the_export_contender_needs_nats_server_and_reports_the_exporter() {
    require_root();
    let _cpu = rstwall_tests::cpu_alone();
    // No nats-server: a clear error, before any namespace or broker.
    let empty = std::env::temp_dir().join(format!("rstwall-bench-nopath-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(bench_bin())
        .args([
            "run",
            "--contenders",
            "monitor,export",
            "--phases",
            "throughput",
        ])
        .args(["--out", empty.join("out").to_str().unwrap()])
        .env("PATH", &empty)
        .output()
        .expect("run rstwall-bench");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the export contender needs nats-server") && !err.contains("panicked"),
        "{err}"
    );
    assert!(!empty.join("out").exists(), "nothing written: {err}");
    std::fs::remove_dir_all(&empty).ok();

    let (out_dir, stderr) = run_with_out(
        "export",
        &[
            "run",
            "--contenders",
            "monitor,export",
            "--phases",
            "throughput",
            "--rounds",
            "1",
            "--round-secs",
            "0.5",
            "--warmup-secs",
            "0.2",
            "--flows",
            "1000",
            "--max-other",
            "100",
        ],
    );
    let report = read_out(&out_dir, "report.md", &stderr);
    assert!(report.contains("rstwall monitor + export"), "{report}");
    assert!(report.contains("Export on against off"), "{report}");
    let json: Value =
        serde_json::from_str(&read_out(&out_dir, "results.json", &stderr)).expect("results.json");
    assert!(
        json["export_vs_monitor"]["median"].as_f64().unwrap() > 0.0,
        "{:#}",
        json["export_vs_monitor"]
    );
    let tput = json["throughput"].as_array().expect("throughput");
    let monitor = tput.iter().find(|t| t["contender"] == "monitor").unwrap();
    assert!(monitor["export_at_stop"].is_null(), "{monitor:#}");
    let export = tput.iter().find(|t| t["contender"] == "export").unwrap();
    let stop = &export["export_at_stop"];
    let n = |k: &str| {
        stop[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k}: {export:#}"))
    };
    // The traffic mixes RSTs: the worker handed the exporter some, and
    // the stream acknowledged some (the broker was reached, the stream
    // made).
    assert!(n("handed") > 0, "{export:#}");
    assert!(n("acked") > 0, "{export:#}");
    assert!(
        export["export_events_per_s"]["handed"].as_f64().unwrap() > 0.0,
        "{export:#}"
    );
    // The broker went with the run: its port is closed, its store removed.
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("export: nats-server -js on "))
        .unwrap_or_else(|| panic!("no broker line: {stderr}"));
    let (addr, store) = line.split_once(", store ").expect(line);
    assert!(std::net::TcpStream::connect(addr).is_err(), "{line}");
    assert!(!Path::new(store).exists(), "{line}");
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// The report's first line that starts with `prefix`.
#[track_caller]
fn line_starting(report: &str, prefix: &str) -> String {
    report
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}:\n{report}"))
        .to_string()
}

/// The poll-mode contenders in the latency phase, beside the kernel's
/// redirect: each is measured, the report has the p99 ÷ kernel's row, and
/// each round's worker line says the poll mode in effect — busy polling
/// with a NAPI to poll, or spinning and why not.
#[test]
fn the_latency_phase_runs_the_poll_mode_contenders_beside_the_kernel() {
    require_root();
    let _cpu = rstwall_tests::cpu_alone();
    let (out_dir, stderr) = run_with_out(
        "poll",
        &[
            "run",
            "--contenders",
            "kernel,monitor-spin,enforce-busy",
            "--phases",
            "latency",
            "--rounds",
            "1",
            "--warmup-secs",
            "0.2",
            "--latency-secs",
            "0.5",
            "--flows",
            "1000",
            "--max-other",
            "100",
            "--busy-defer",
            "0,0",
        ],
    );
    let report = read_out(&out_dir, "report.md", &stderr);
    for needle in [
        "kernel XDP redirect",
        "rstwall monitor + spin",
        "rstwall enforce + busy poll",
        "| p99 ÷ kernel's (median of rounds) | 1.00× |",
        "napi_defer_hard_irqs 0 and gro_flush_timeout 0 ns",
    ] {
        assert!(report.contains(needle), "{needle:?} missing:\n{report}");
    }
    let line = |name: &str| line_starting(&report, &format!("- {name}: "));
    let spin = line("rstwall monitor + spin");
    assert!(
        spin.contains("sleeps 0,") && spin.contains("poll spin"),
        "{spin}"
    );
    let busy = line("rstwall enforce + busy poll");
    assert!(busy.contains("sleeps 0,"), "{busy}");
    assert!(
        (busy.contains("poll busy") && !busy.contains("NAPI 0"))
            || (busy.contains("poll spin, NAPI 0 (no NAPI behind the socket")),
        "{busy}"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// `rstwall-bench host` runs every measurement with and without host mode
/// and writes its report; host mode saw the runs' segments and, at this
/// load, lost none of the transfer's records.
#[test]
fn host_cost_runs_with_and_without_host_mode_and_reports() {
    require_root();
    let _cpu = rstwall_tests::cpu_alone();
    let md = std::env::temp_dir().join(format!("rstwall-bench-host-{}.md", std::process::id()));
    let out = run(
        &["host", "--run-secs", "0.3", "--rounds", "1", "--markdown"]
            .iter()
            .copied()
            .chain([md.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = std::fs::read_to_string(&md).unwrap();
    std::fs::remove_file(&md).ok();
    for needle in [
        "| transactions/s over lo |",
        "| bulk Mbit/s over lo |",
        "| transactions/s over veth |",
        "| bulk Mbit/s over veth |",
        "| 1 worker |",
        "| 2 workers |",
    ] {
        assert!(report.contains(needle), "{needle}: {report}");
    }
    let progress = text(&out.stderr);
    assert_eq!(
        progress.matches("with host mode").count(),
        2,
        "one round per path: {progress}"
    );
    assert!(
        !report.contains("saw 0 TCP segments"),
        "host mode saw the runs: {report}"
    );
}

/// The soak, for a few seconds: what it asserts does not depend on the
/// machine's speed — every UMEM frame accounted for in every sample and
/// none leaked, no legitimate frame lost, no spoofed RST passed (its exit
/// status says so; the report shows the counts).
#[test]
fn the_soak_keeps_its_invariants_and_writes_report_and_chart() {
    require_root();
    let _cpu = rstwall_tests::cpu_alone();
    let (out_dir, stderr) = run_with_out(
        "soak",
        &[
            "soak",
            "--duration",
            "4s",
            "--warmup",
            "1s",
            "--flows",
            "1000",
            // Well inside what a debug build's worker judges.
            "--legit-pps",
            "1000",
            "--flood-pps",
            "4000",
        ],
    );
    let read = |name: &str| read_out(&out_dir, name, &stderr);
    let report = read("report.md");
    let row = |name: &str| line_starting(&report, &format!("| {name}"));
    let frames = row("UMEM frames conserved");
    assert!(
        frames.contains("| ok (") && frames.contains(" frames, 0 leaked, 0 ledger errors"),
        "{report}"
    );
    assert!(
        row("legitimate frames lost after warm-up").contains("| ok (0 of "),
        "{report}"
    );
    assert!(
        row("spoofed RSTs passed after warm-up").contains("| ok (0 of "),
        "{report}"
    );
    // Something was sent of both kinds: "0 of 0" would prove nothing.
    for name in [
        "legitimate frames lost after warm-up",
        "spoofed RSTs passed after warm-up",
    ] {
        let r = row(name);
        let sent: u64 = r
            .split(" of ")
            .nth(1)
            .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{r}"));
        assert!(sent > 1000, "{r}");
    }
    let chart = read("chart.txt");
    assert!(
        chart.contains("RSS (KiB)") && chart.contains("flows tracked"),
        "{chart}"
    );
    let _ = std::fs::remove_dir_all(&out_dir);
}
