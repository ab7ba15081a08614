//! Every document of the control API, read into its type and written back:
//! the bytes must be the ones the daemon wrote before the documents had
//! types (captured from `rstwall lab run mixed` against the daemon of
//! 94e8b83, with `curl --unix-socket` and the CLI's `--json`; long lists
//! cut short). A field renamed, dropped or added, a value spelled another
//! way, and this fails.

use std::path::Path;

use rstwall_api::{
    document_json, Alerts, BlockAdded, BlockList, BlockRemoved, ErrorDoc, Flows, PolicyChange,
    PolicyDiff, PolicyShow, Stats, Status,
};
use rstwall_engine::telemetry::Snapshot;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn golden(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/documents")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `name` read as a `T` and written again, byte for byte; the document.
#[track_caller]
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let text = golden(name);
    let doc: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let written = String::from_utf8(document_json(&doc).unwrap()).unwrap();
    assert!(written == text, "{name} written differently:\n{written}");
    doc
}

#[test]
fn status() {
    let s: Status = round_trip("status.json");
    assert_eq!(s.topology.mode(), s.mode);
    assert_eq!(s.sockets.len(), 2);
}

#[test]
fn stats_with_its_rst_map_written_from_the_counters() {
    let s: Stats = round_trip("stats.json");
    let refused = s.rst(rstwall_engine::RstClass::Refused);
    assert_eq!((refused.total, refused.passed), (60, 60));
    let xsk = s.totals.source.afxdp.as_ref().expect("AF_XDP totals");
    assert_eq!(xsk.copy_sockets, 2);
    let w = s.workers[0].source.afxdp.as_ref().expect("AF_XDP worker");
    assert_eq!(w.sockets[1].port, "pb");
    assert_eq!(s.xdp_sum(|x| x.to_xsk), 8726 + 8046);
    // The rst map is derived: a document without it reads the same.
    let mut v: serde_json::Value = serde_json::from_str(&golden("stats.json")).unwrap();
    v.as_object_mut().unwrap().remove("rst");
    assert_eq!(serde_json::from_value::<Stats>(v).unwrap(), s);
}

#[test]
fn telemetry() {
    let t: Snapshot = round_trip("telemetry.json");
    assert_eq!(t.rst_classes().len(), rstwall_engine::RstClass::COUNT);
}

#[test]
fn flows_alerts_policy_and_blocks() {
    let f: Flows = round_trip("flows.json");
    assert_eq!(f.flows.len(), f.count);
    let _: Flows = round_trip("flows-established.json");
    let a: Alerts = round_trip("alerts.json");
    assert_eq!(a.rules[0].metric, "failed_connects_per_second");
    let _: PolicyShow = round_trip("policy-show.json");
    let c: PolicyChange = round_trip("policy-set-changed.json");
    assert!(c.changed && c.mode.is_some());
    let u: PolicyChange = round_trip("policy-set-unchanged.json");
    assert!(!u.changed && u.mode.is_none(), "no mode when unchanged");
    let _: PolicyChange = round_trip("policy-apply.json");
    let _: PolicyDiff = round_trip("policy-diff.json");
    let b: BlockList = round_trip("blocks.json");
    assert_eq!(b.blocks[0].until, None);
    let _: BlockAdded = round_trip("block-add.json");
    let _: BlockRemoved = round_trip("block-del.json");
}

#[test]
fn refusals() {
    // The server writes refusals compactly, on one line.
    let e: ErrorDoc = serde_json::from_str(&golden("error-404.json")).unwrap();
    let mut line = serde_json::to_string(&e).unwrap();
    line.push('\n');
    assert_eq!(line, golden("error-404.json"));
}
