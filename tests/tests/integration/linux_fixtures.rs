//! Real Linux stacks as the oracle.
//!
//! `tests/fixtures/linux/` holds captures of real kernel TCP in network
//! namespaces (made by [`rstwall_tests::fixtures`], the
//! `make-linux-fixtures` binary), and for every RST
//! frame the class it must get and whether the receiving kernel acted on it
//! — measured on the real sockets, not assumed. The committed captures are
//! checked on every run; the live test makes fresh ones with this machine's
//! kernel, through the same code, and checks those too.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use rstwall_engine::engine::EngineConfig;
use rstwall_engine::RstClass;
use rstwall_pcap::analyze::{self, RstEvent};
use rstwall_tests::{fixtures, repo_root};

struct Expected {
    class: RstClass,
    kernel_accepted: bool,
    note: String,
}

fn read_expect(path: &Path) -> BTreeMap<u64, Expected> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = BTreeMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.splitn(4, '\t').collect();
        assert!(
            cols.len() >= 3,
            "{}:{}: malformed row",
            path.display(),
            i + 1
        );
        let frame: u64 = cols[0].parse().expect("frame number");
        let class: RstClass = cols[1].parse().expect("class name");
        let kernel_accepted = match cols[2] {
            "true" => true,
            "false" => false,
            other => panic!("{}:{}: kernel_accepted = {other}", path.display(), i + 1),
        };
        rows.insert(
            frame,
            Expected {
                class,
                kernel_accepted,
                note: cols.get(3).unwrap_or(&"").to_string(),
            },
        );
    }
    rows
}

/// Analyze every `<scenario>.pcap` in `dir` and compare with its `.expect`.
/// Returns the number of RSTs checked.
fn check_dir(dir: &Path) -> usize {
    let mut pcaps: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    pcaps.sort();
    assert!(
        pcaps.len() >= fixtures::SCENARIOS.len(),
        "expected the {} scenarios in {}",
        fixtures::SCENARIOS.len(),
        dir.display()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for pcap in &pcaps {
        let expected = read_expect(&pcap.with_extension("expect"));
        let mut got: BTreeMap<u64, RstClass> = BTreeMap::new();
        analyze::analyze(
            &[pcap],
            &EngineConfig::default(),
            5,
            |file, frame, outcome| {
                if let Some(ev) = RstEvent::of(file, frame, outcome) {
                    got.insert(ev.frame, ev.rst.class);
                }
                Ok::<(), ()>(())
            },
        )
        .expect("fixture opens")
        .expect("no callback error");
        let name = pcap.file_name().unwrap().to_string_lossy();
        for (frame, exp) in &expected {
            checked += 1;
            // The expectation file itself must agree with what each class
            // promises about the kernel.
            if let Some(accepts) = exp.class.kernel_accepts() {
                assert_eq!(
                    accepts, exp.kernel_accepted,
                    "{name} frame {frame}: class {} but kernel_accepted={} ({})",
                    exp.class, exp.kernel_accepted, exp.note
                );
            }
            match got.get(frame) {
                Some(c) if *c == exp.class => {}
                Some(c) => failures.push(format!(
                    "{name} frame {frame}: got {c}, kernel says {} ({})",
                    exp.class, exp.note
                )),
                None => failures.push(format!("{name} frame {frame}: not seen as a RST")),
            }
        }
        for frame in got.keys().filter(|f| !expected.contains_key(f)) {
            failures.push(format!(
                "{name} frame {frame}: a RST the expectation does not list"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    checked
}

#[test]
fn committed_linux_captures_classify_as_the_kernel_judged() {
    let n = check_dir(&repo_root().join("tests/fixtures/linux"));
    assert!(n >= 70, "only {n} RSTs checked");
}

/// Needs root (namespaces, raw sockets). Fails, rather than skips, without.
#[test]
fn live_linux_stacks_classify_as_the_kernel_judged() {
    let _cpu = rstwall_tests::cpu_share();
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "this test needs root: it builds network namespaces and captures real kernel TCP"
    );
    let out = std::env::temp_dir().join(format!("rstwall-live-fixtures-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let made = fixtures::make(&fixtures::Options {
        out: out.clone(),
        only: Vec::new(),
    });
    assert!(made.is_ok(), "making the Linux fixtures failed: {made:?}");
    let n = check_dir(&out);
    std::fs::remove_dir_all(&out).ok();
    assert!(n >= 70, "only {n} RSTs checked");
}
