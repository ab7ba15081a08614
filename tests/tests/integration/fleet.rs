//! The fleet: rstwall's events in a real NATS JetStream cluster.
//!
//! Every test starts its own `nats-server`s on loopback (unique ports, its
//! own directory) and stops them, even when it fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use rstwall_api::fleet::ExportStatus;
use rstwall_engine::class::RstClass;
use rstwall_export::{Credentials, Exporter, Inputs, NatsConfig, Tls};
use rstwall_source::{rst_channel, RstRecord, RstSink};
use rstwall_tests::lab::{connect, in_ns, send_no_flow_rsts, spawn_in_ns, Lab};
use rstwall_tests::nats::{
    create_stream, delete_stream, read_stream, read_stream_as, Cluster, Pki, Stored,
};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rstwall-fleet-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Wait until `done(status)`, or fail with the last status.
#[track_caller]
fn wait_for(
    exporter: &Exporter,
    cluster: &Cluster,
    what: &str,
    secs: u64,
    mut done: impl FnMut(&ExportStatus) -> bool,
) -> ExportStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = exporter.status();
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not after {secs} s: {s:#?}\n{}",
            cluster.logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The node's events in stream order: no message twice, every `n` of
/// the node's run increasing.
fn events_of(stored: &[Stored], node: &str) -> Vec<u32> {
    let mine: Vec<&Stored> = stored.iter().filter(|m| m.json["node"] == node).collect();
    let mut ids = BTreeMap::new();
    for m in &mine {
        let id = (
            m.json["run"].as_u64().unwrap(),
            m.json["n"].as_u64().unwrap(),
        );
        if let Some(seq) = ids.insert(id, m.sequence) {
            panic!(
                "message {id:?} stored twice (stream sequences {seq} and {})",
                m.sequence
            );
        }
    }
    let ns: Vec<(u64, u64)> = mine
        .iter()
        .map(|m| {
            (
                m.json["run"].as_u64().unwrap(),
                m.json["n"].as_u64().unwrap(),
            )
        })
        .collect();
    if let Some(w) = ns.windows(2).find(|w| w[0] >= w[1]) {
        panic!("out of order in the stream: {:?} before {:?}", w[0], w[1]);
    }
    mine.iter()
        .filter(|m| m.subject.ends_with(".events"))
        .map(|m| m.json["seq"].as_u64().unwrap() as u32)
        .collect()
}

/// An exporter started with `cfg`, fed through a hand-off of `capacity`
/// records as a daemon in `mode` feeds it, and that hand-off's sink.
fn exporter_for(cfg: &NatsConfig, capacity: usize, mode: &str) -> (Exporter, RstSink) {
    let (sink, rx) = rst_channel(capacity);
    let exporter = Exporter::start(
        cfg.clone(),
        Inputs {
            rsts: Some((sink.clone(), rx)),
            mode: mode.into(),
        },
    )
    .expect("exporter");
    (exporter, sink)
}

/// The node's RST events in the stream (in order, none twice: as
/// [`events_of`] checks), as many of each class as the daemon counted.
#[track_caller]
fn events_as_counted<'a>(
    stored: &'a [Stored],
    node: &str,
    stats: &rstwall_api::Stats,
) -> Vec<&'a Stored> {
    events_of(stored, node);
    let subject = format!("rstwall.{node}.events");
    let events: Vec<&Stored> = stored.iter().filter(|m| m.subject == subject).collect();
    let c = &stats.totals.counters;
    for class in RstClass::ALL {
        let streamed = events
            .iter()
            .filter(|m| m.json["class"] == class.as_str())
            .count() as u64;
        assert_eq!(
            streamed,
            c.rst_total(class),
            "{class:?}: the stream against the daemon"
        );
    }
    events
}

#[test]
fn fleet_exporter_loses_duplicates_and_reorders_nothing_when_the_cluster_fails() {
    const TOTAL: u32 = 9000;
    let dir = temp_dir("cluster");
    let mut cluster = Cluster::start(&dir.join("nats"), 3, None);
    let node = format!("t{}", std::process::id());
    let mut cfg = NatsConfig::new(cluster.urls(), node.clone(), dir.join("spool"));
    cfg.stream = format!("FLEET{}", std::process::id());
    cfg.subject_prefix = format!("rstwall-{}", std::process::id());
    cfg.create_stream = Some(3);
    // Small, so that an outage fills memory and goes on to the spool.
    cfg.queue = 500;
    let (exporter, sink) = exporter_for(&cfg, 1 << 16, "inline");

    // 3000 events a second, in three parts: the cluster up, all three
    // servers killed then restarted, one server of three down.
    let feed = |from: u32, to: u32| {
        for i in from..to {
            sink.offer(RstRecord::example(i));
            if i % 30 == 0 {
                thread::sleep(Duration::from_millis(10));
            }
        }
    };
    feed(0, TOTAL / 3);
    wait_for(&exporter, &cluster, "first acks", 30, |s| s.acked > 0);
    for i in 0..3 {
        cluster.kill_one(i);
    }
    feed(TOTAL / 3, 2 * TOTAL / 3);
    let out = wait_for(&exporter, &cluster, "spooling while down", 10, |s| {
        s.state == "unreachable" && s.spool_messages > 0
    });
    assert_eq!(out.dropped, 0, "{out:#?}");
    for i in 0..3 {
        cluster.start_one(i);
    }
    let back = wait_for(&exporter, &cluster, "acks after the restart", 60, |s| {
        s.acked > out.acked
    });
    cluster.kill_one(0);
    feed(2 * TOTAL / 3, TOTAL);
    let end = wait_for(&exporter, &cluster, "everything acknowledged", 90, |s| {
        s.queued == 0 && s.spool_messages == 0 && s.acked >= u64::from(TOTAL)
    });
    assert!(
        end.acked > back.acked,
        "delivery went on with one server down"
    );
    assert_eq!(end.dropped, 0, "{end:#?}");
    assert_eq!(sink.dropped(), 0);

    let stored = read_stream(
        &cluster.urls()[1..],
        &cfg.stream_name(),
        Duration::from_secs(30),
    );
    let seqs = events_of(&stored, &node);
    let want: Vec<u32> = (0..TOTAL).collect();
    if seqs != want {
        let missing = want.iter().filter(|i| !seqs.contains(i)).count();
        panic!(
            "{} events stored, {missing} missing; first differences: {:?}",
            seqs.len(),
            seqs.iter().zip(&want).find(|(a, b)| a != b)
        );
    }
    exporter.stop();
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Events taken while no server was ever reachable wait in the spool
/// across a stop, and the next run sends them first, in order, once.
#[test]
fn fleet_exporter_replays_its_spool_at_the_next_start() {
    let dir = temp_dir("replay");
    let mut cluster = Cluster::start(&dir.join("nats"), 1, None);
    cluster.kill_one(0);
    let mut cfg = NatsConfig::new(
        cluster.urls(),
        format!("r{}", std::process::id()),
        dir.join("spool"),
    );
    cfg.create_stream = Some(1);
    cfg.queue = 100;
    let run = |cfg: &NatsConfig, from: u32, to: u32| {
        let (exporter, sink) = exporter_for(cfg, 1 << 12, "tap");
        for i in from..to {
            sink.offer(RstRecord::example(i));
        }
        exporter
    };
    // No server: 300 events, 200 of them past the memory queue, all on
    // disk after the stop.
    let first = run(&cfg, 0, 300);
    wait_for(&first, &cluster, "spooling", 10, |s| {
        s.spool_messages > 0 && s.queued <= 100
    });
    first.stop();
    // The server back, a new run: the old events first, then the new.
    cluster.start_one(0);
    let second = run(&cfg, 300, 350);
    let end = wait_for(&second, &cluster, "the replay", 60, |s| {
        s.acked >= 350 && s.spool_messages == 0 && s.queued == 0
    });
    assert_eq!(end.dropped, 0, "{end:#?}");
    let stored = read_stream(&cluster.urls(), &cfg.stream_name(), Duration::from_secs(30));
    let runs: Vec<u64> = stored
        .iter()
        .map(|m| m.json["run"].as_u64().unwrap())
        .collect();
    assert!(
        runs.windows(2).all(|w| w[0] <= w[1]),
        "the old run first: {runs:?}"
    );
    let seqs: Vec<u32> = stored
        .iter()
        .filter(|m| m.subject.ends_with(".events"))
        .map(|m| m.json["seq"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(seqs, (0..350).collect::<Vec<_>>());
    second.stop();
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The exporter's TLS and credentials settings against a real server that
/// requires all of them (TLS, a client certificate signed by its CA, a
/// user and password): every event reaches the stream. With a wrong
/// password, or without the CA that signed the server's certificate, the
/// exporter never counts an event as sent: it keeps them all, drops none,
/// and its status says why.
#[test]
fn fleet_exporter_speaks_tls_with_a_client_certificate_and_a_password() {
    const EVENTS: u32 = 200;
    let dir = temp_dir("tls");
    let pki = Pki::make(&dir.join("pki"));
    let extra = format!(
        "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n  timeout: 2\n}}\n\
         authorization {{\n  user: rstwall\n  password: \"s3cret\"\n}}\n",
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string(),
        pki.ca.display().to_string(),
    );
    let cluster = Cluster::start_with(&dir.join("nats"), 1, None, &extra);
    let urls: Vec<String> = cluster
        .servers
        .iter()
        .map(|s| format!("tls://127.0.0.1:{}", s.port))
        .collect();
    let mut cfg = NatsConfig::new(
        urls.clone(),
        format!("tls{}", std::process::id()),
        dir.join("spool"),
    );
    cfg.create_stream = Some(1);
    cfg.credentials = Credentials::UserPassword {
        user: "rstwall".into(),
        password: "s3cret".into(),
    };
    cfg.tls = Tls {
        required: true,
        ca: Some(pki.ca.clone()),
        client: Some((pki.client_cert.clone(), pki.client_key.clone())),
    };
    let run = |cfg: &NatsConfig| {
        let (exporter, sink) = exporter_for(cfg, 1 << 12, "inline");
        for i in 0..EVENTS {
            sink.offer(RstRecord::example(i));
        }
        exporter
    };

    let good = run(&cfg);
    let end = wait_for(&good, &cluster, "every event acknowledged", 30, |s| {
        s.acked >= u64::from(EVENTS) && s.queued == 0 && s.spool_messages == 0
    });
    assert_eq!(end.state, "connected", "{end:#?}");
    assert_eq!(end.dropped, 0, "{end:#?}");
    let reader = async_nats::ConnectOptions::new()
        .user_and_password("rstwall".into(), "s3cret".into())
        .require_tls(true)
        .add_root_certificates(pki.ca.clone())
        .add_client_certificate(pki.client_cert.clone(), pki.client_key.clone());
    let stored = read_stream_as(&urls, reader, &cfg.stream_name(), Duration::from_secs(30));
    assert_eq!(
        events_of(&stored, &cfg.node),
        (0..EVENTS).collect::<Vec<_>>()
    );
    good.stop();

    // A wrong password; then the right one without the server's CA.
    let mut wrong = cfg.clone();
    wrong.node = format!("pw{}", std::process::id());
    wrong.spool_dir = dir.join("spool-pw");
    wrong.credentials = Credentials::UserPassword {
        user: "rstwall".into(),
        password: "wrong".into(),
    };
    let mut untrusted = cfg.clone();
    untrusted.node = format!("ca{}", std::process::id());
    untrusted.spool_dir = dir.join("spool-ca");
    untrusted.tls.ca = None;
    // async-nats reports a server certificate it cannot verify only as an
    // I/O error (its connect error kinds); the password, by name.
    for (what, cfg, says) in [
        ("a wrong password", &wrong, "authorization violation"),
        ("an untrusted server", &untrusted, "io error"),
    ] {
        let x = run(cfg);
        let s = wait_for(&x, &cluster, what, 15, |s| {
            s.queued + s.spool_messages >= u64::from(EVENTS) && s.last_error.is_some()
        });
        assert_eq!(s.state, "unreachable", "{what}: {s:#?}");
        assert_eq!(s.acked, 0, "{what}: {s:#?}");
        assert_eq!(s.dropped, 0, "{what}: {s:#?}");
        let error = s.last_error.as_deref().unwrap_or_default().to_lowercase();
        assert!(
            error.starts_with("connection: ") && error.contains(says),
            "{what}: {s:#?}"
        );
        x.stop();
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rstwall run` with `[export.nats]`, in the lab's appliance namespace,
/// streams to a three-server cluster on that namespace's loopback: every
/// RST the daemon counts is one event in the node's stream, by class,
/// also across a restart of the whole cluster mid-stream; `status` and the
/// summaries report the exporter. Then dist/clickhouse's schema and
/// queries, on real ClickHouse (chDB), answer with the scenario's numbers.
#[test]
fn fleet_run_streams_every_rst_it_counts_to_a_cluster() {
    let _cpu = rstwall_tests::cpu_share();
    let mut lab = Lab::new("fleet");
    let appliance = rstwall_netlab::Netns::open(&lab.appliance).expect("the appliance namespace");
    let mut cluster = Cluster::start(&lab.dir.join("nats"), 3, Some(&appliance));
    let config = lab.dir.join("rstwall.toml");
    let servers: Vec<String> = cluster.urls().iter().map(|u| format!("{u:?}")).collect();
    std::fs::write(
        &config,
        format!(
            "[export.nats]\nservers = [{}]\nnode = \"lab\"\nstream = \"LAB\"\nreplicas = 3\nqueue = 256\n",
            servers.join(", ")
        ),
    )
    .unwrap();
    lab.start_rstwall(&["--inline", "pa,pb", "--config", config.to_str().unwrap()]);
    let status = |lab: &Lab| {
        lab.client()
            .status()
            .expect("status")
            .export
            .expect("export")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&lab).state != "connected" {
        assert!(
            Instant::now() < deadline,
            "{:#?}\n{}",
            status(&lab),
            lab.log()
        );
        thread::sleep(Duration::from_millis(100));
    }

    // Refused connections (the server has no listener on 7) and RSTs for
    // no flow; the cluster killed between two rounds, restarted in a third.
    let refuse = |n: usize| {
        for _ in 0..n {
            let e = connect(&lab, 7).expect_err("nothing listens on port 7");
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
        }
    };
    refuse(100);
    send_no_flow_rsts(&lab, 150, 20000);
    for i in 0..3 {
        cluster.kill_one(i);
    }
    refuse(100);
    send_no_flow_rsts(&lab, 150, 21000);
    lab.wait_stats("the RSTs while the cluster is down", |s| {
        s.totals.counters.rst + s.totals.counters.rstack >= 500
    });
    let export = status(&lab);
    assert_ne!(export.state, "connected", "{export:#?}");
    for i in 0..3 {
        cluster.start_one(i);
    }
    refuse(50);

    // Everything the daemon counted is acknowledged.
    let deadline = Instant::now() + Duration::from_secs(90);
    let (stats, export) = loop {
        let s = lab.client().stats().expect("stats");
        let e = status(&lab);
        let counted: u64 = s.totals.counters.rst_classes.iter().flatten().sum();
        if e.queued == 0 && e.spool_messages == 0 && e.state == "connected" && counted >= 550 {
            break (s, e);
        }
        assert!(
            Instant::now() < deadline,
            "not delivered: {e:#?}\n{}\n{}",
            cluster.logs(),
            lab.log()
        );
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(export.dropped, 0, "{export:#?}");
    let text = lab.cli_ok(&["status"]);
    assert!(
        text.contains("export:   connected to nats://127.0.0.1:"),
        "{text}"
    );

    let urls = cluster.urls();
    let stored = in_ns(&lab.appliance, || {
        read_stream(&urls, "LAB_lab", Duration::from_secs(30))
    });
    let events = events_as_counted(&stored, "lab", &stats);
    let c = &stats.totals.counters;
    assert_eq!(c.rst_total(RstClass::Refused), 250, "{c:#?}");
    assert_eq!(c.rst_total(RstClass::NoFlow), 300, "{c:#?}");
    let first = events[0].json.clone();
    assert_eq!(first["schema"], 1);
    assert_eq!(first["mode"], "inline");
    assert!(
        stored.iter().any(|m| m.subject == "rstwall.lab.summary"),
        "no summary in the stream"
    );

    // ClickHouse (dist/clickhouse) over these events answers with the
    // scenario's numbers.
    let answers = clickhouse_answers(&lab.dir, &events);
    let by_class = |key: &str| -> Vec<(String, u64)> {
        answers[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {answers:#}"))
            .iter()
            .map(|r| (r["class"].as_str().unwrap().to_string(), as_u64(&r["n"])))
            .collect()
    };
    let want = vec![("no_flow".to_string(), 300), ("refused".to_string(), 250)];
    assert_eq!(by_class("events"), want, "{answers:#}");
    assert_eq!(by_class("per_minute"), want, "{answers:#}");
    let refused = &answers["refused"][0];
    assert_eq!(refused["service_port"], 7, "{answers:#}");
    assert_eq!(as_u64(&refused["refused"]), 250, "{answers:#}");
    assert_eq!(refused["nodes"], serde_json::json!(["lab"]), "{answers:#}");
    assert_eq!(answers["in_window"], serde_json::json!([]), "{answers:#}");
    let no_flow = answers["no_flow"].as_array().expect("no_flow rows");
    assert_eq!(no_flow.len(), 1, "{answers:#}");
    assert_eq!(
        no_flow[0]["destination"], "::ffff:198.18.0.2",
        "{answers:#}"
    );
    assert_eq!(no_flow[0]["service_port"], 5999, "{answers:#}");
    assert_eq!(as_u64(&no_flow[0]["rsts"]), 300, "{answers:#}");
    assert_eq!(as_u64(&no_flow[0]["sources"]), 1, "{answers:#}");
    lab.stop_rstwall(libc::SIGTERM);
}

/// `run --host lo` with `[export.nats]`: every RST host mode reports is one
/// event in a single JetStream server's stream, with host mode's fields.
#[test]
fn fleet_run_host_streams_every_rst_with_its_host_fields() {
    const CONNECTS: u64 = 20;
    let _cpu = rstwall_tests::cpu_share();
    let mut lab = Lab::new("fleet-host");
    let appliance = rstwall_netlab::Netns::open(&lab.appliance).expect("the appliance namespace");
    let cluster = Cluster::start(&lab.dir.join("nats"), 1, Some(&appliance));
    let config = lab.dir.join("rstwall.toml");
    std::fs::write(
        &config,
        format!(
            "[export.nats]\nservers = [{:?}]\nnode = \"host-1\"\nstream = \"HOST\"\nreplicas = 1\n",
            cluster.urls()[0]
        ),
    )
    .unwrap();
    lab.start_rstwall(&["--host", "lo", "--config", config.to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = lab.client().status().expect("status");
        let export = st.export.expect("export in the status");
        if export.state == "connected" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{export:#?}\n{}\n{}",
            cluster.logs(),
            lab.log()
        );
        thread::sleep(Duration::from_millis(100));
    }

    // Refused connects on lo, from a thread named like a service.
    spawn_in_ns(&lab.appliance, || {
        let to = "127.0.0.1:7211".parse().unwrap();
        rstwall_netlab::sock::refused_connects("collector", to, CONNECTS as usize, Duration::ZERO)
            .expect("refused connects to 7211");
    })
    .join()
    .unwrap();

    // The stream holds one event per RST host mode counted. (The daemon's
    // and this test's own NATS connections are on lo too: whatever RSTs
    // they make are counted and streamed like the others.)
    let urls = cluster.urls();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (stats, stored) = loop {
        let stats = lab.client().stats().expect("stats");
        let stored = in_ns(&lab.appliance, || {
            read_stream(&urls, "HOST_host-1", Duration::from_secs(30))
        });
        let counted = stats.host.as_ref().map_or(0, |h| h.rsts);
        let streamed = stored
            .iter()
            .filter(|m| m.subject == "rstwall.host-1.events")
            .count() as u64;
        if counted >= CONNECTS && streamed == counted {
            break (stats, stored);
        }
        assert!(
            Instant::now() < deadline,
            "{streamed} events streamed, {counted} RSTs counted: {:#?}\n{:#?}\n{}",
            stats.host,
            lab.client().status().map(|s| s.export),
            lab.log()
        );
        thread::sleep(Duration::from_millis(200));
    };
    let events = events_as_counted(&stored, "host-1", &stats);
    let host = stats.host.as_ref().expect("host mode's counters");
    assert_eq!(host.events_dropped, 0, "{host:#?}");
    let refused: Vec<&serde_json::Value> = events
        .iter()
        .map(|m| &m.json)
        .filter(|e| e["service_port"] == 7211)
        .collect();
    assert_eq!(refused.len() as u64, CONNECTS, "{refused:#?}");
    for e in &refused {
        assert_eq!(e["mode"], "host", "{e:#}");
        assert_eq!(e["class"], "refused", "{e:#}");
        assert_eq!(e["iface"], "lo", "{e:#}");
        assert_eq!(e["direction"], "local", "{e:#}");
        assert_eq!(e["agreement"], "agrees", "{e:#}");
        assert_eq!(e["comm"], "collector", "{e:#}");
        assert!(e["pid"].as_u64().is_some_and(|p| p > 0), "{e:#}");
        assert!(e.get("worker").is_none(), "{e:#}");
        let kernel: serde_json::Value =
            serde_json::from_str(e["kernel"].as_str().expect("the kernel's verdict"))
                .unwrap_or_else(|err| panic!("{err}: {e:#}"));
        assert_eq!(kernel["received"]["outcome"], "reset", "{e:#}");
        assert_eq!(kernel["received"]["state"], "SYN-SENT", "{e:#}");
        assert_eq!(kernel["sent"]["reason"], "NO_SOCKET", "{e:#}");
    }
    let export = lab
        .client()
        .status()
        .expect("status")
        .export
        .expect("export");
    assert_eq!(export.dropped, 0, "{export:#?}");
    assert!(
        stored.iter().any(|m| m.subject == "rstwall.host-1.summary"),
        "no summary in the stream"
    );
    assert!(lab.stop_rstwall(libc::SIGTERM).success(), "{}", lab.log());
}

/// ClickHouse's JSON writes 64-bit integers as strings.
fn as_u64(v: &serde_json::Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a count: {v}"))
}

/// tests/clickhouse/check.py over `events` (the stream's event messages):
/// dist/clickhouse's schema and queries on real ClickHouse (chDB).
fn clickhouse_answers(dir: &std::path::Path, events: &[&Stored]) -> serde_json::Value {
    let file = dir.join("events.jsonl");
    let lines: Vec<String> = events.iter().map(|m| m.json.to_string()).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let root = rstwall_tests::repo_root();
    let out = std::process::Command::new("python3")
        .arg(root.join("tests/clickhouse/check.py"))
        .arg(root.join("dist/clickhouse"))
        .arg(&file)
        .output()
        .expect("python3 (scripts/setup installs it with chdb)");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "tests/clickhouse/check.py (needs chDB: scripts/setup installs it): {stderr}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

/// The README's ClickHouse queries are the ones the ClickHouse test runs
/// (dist/clickhouse/queries.sql), whitespace aside.
#[test]
fn the_readme_shows_the_checked_clickhouse_queries() {
    let root = rstwall_tests::repo_root();
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let checked: Vec<String> = std::fs::read_to_string(root.join("dist/clickhouse/queries.sql"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .split_inclusive(';')
        .map(words)
        .filter(|q| !q.is_empty())
        .collect();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let shown: Vec<String> = readme
        .split("```sql\n")
        .skip(1)
        .map(|block| words(block.split("```").next().unwrap()))
        .collect();
    assert!(shown.len() >= 2, "the README shows {} queries", shown.len());
    for q in &shown {
        assert!(
            checked.contains(q),
            "not in dist/clickhouse/queries.sql: {q}"
        );
    }
}

/// The exporter takes in what the workers hand it while the servers do
/// not answer: with two servers of three down, the cluster has no leader
/// and the stream cannot be created, so each attempt waits for its
/// timeout. A steady feed through a hand-off as small as the daemon's
/// (`queue`) is taken in all the same — into memory, then the spool — and
/// nothing is dropped while the spool has room; once the servers are
/// back, the stream is created and receives every event, in order, once.
#[test]
fn fleet_exporter_takes_in_every_event_while_the_stream_cannot_be_created() {
    const TOTAL: u32 = 4000;
    let dir = temp_dir("noleader");
    let mut cluster = Cluster::start(&dir.join("nats"), 3, None);
    cluster.kill_one(1);
    cluster.kill_one(2);
    let node = format!("q{}", std::process::id());
    let mut cfg = NatsConfig::new(cluster.urls(), node.clone(), dir.join("spool"));
    cfg.stream = format!("NOLEADER{}", std::process::id());
    cfg.subject_prefix = format!("rstwall-q{}", std::process::id());
    cfg.create_stream = Some(3);
    cfg.queue = 256;
    // The daemon's hand-off holds `queue` records.
    let (exporter, sink) = exporter_for(&cfg, cfg.queue, "inline");
    // 2000 events a second: a hand-off of 256 fills in an eighth of a
    // second unless it is emptied.
    for i in 0..TOTAL {
        sink.offer(RstRecord::example(i));
        if i % 20 == 19 {
            thread::sleep(Duration::from_millis(10));
        }
    }
    let held = wait_for(&exporter, &cluster, "every event taken in", 30, |s| {
        s.queued + s.spool_messages >= u64::from(TOTAL) || s.dropped > 0
    });
    assert_eq!(held.dropped, 0, "{held:#?}");
    assert_eq!(sink.dropped(), 0, "{held:#?}");
    assert_eq!(held.acked, 0, "no stream without a leader: {held:#?}");
    assert!(held.spool_messages > 0, "{held:#?}");
    assert_ne!(held.state, "connected", "{held:#?}");

    cluster.start_one(1);
    cluster.start_one(2);
    let end = wait_for(&exporter, &cluster, "everything acknowledged", 90, |s| {
        s.queued == 0 && s.spool_messages == 0 && s.acked >= u64::from(TOTAL)
    });
    assert_eq!(end.dropped, 0, "{end:#?}");
    let stored = read_stream(&cluster.urls(), &cfg.stream_name(), Duration::from_secs(30));
    assert_eq!(events_of(&stored, &node), (0..TOTAL).collect::<Vec<_>>());
    exporter.stop();
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Feed `sink` events `from..to`, about 3000 a second.
fn feed(sink: &RstSink, from: u32, to: u32) {
    for i in from..to {
        sink.offer(RstRecord::example(i));
        if i % 30 == 0 {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// What a stream deleted under a running exporter left: the node's events
/// in the new stream are one run of `first..total` (in order, none twice,
/// as [`events_of`] checks), `first` being what the old stream had
/// acknowledged — not fewer than `acked_before` (acknowledged before the
/// deletion: not sent again), and none of the events fed after the
/// deletion (`fed_before..total`) missing. The exporter acknowledged
/// every event once: `total`, with nothing dropped.
#[track_caller]
fn only_the_unacknowledged_in_the_new_stream(
    cluster: &Cluster,
    cfg: &NatsConfig,
    end: &ExportStatus,
    acked_before: u64,
    fed_before: u32,
    total: u32,
) {
    assert_eq!(end.dropped, 0, "{end:#?}");
    assert_eq!(end.acked, u64::from(total), "{end:#?}");
    let stored = read_stream(&cluster.urls(), &cfg.stream_name(), Duration::from_secs(30));
    let events = events_of(&stored, &cfg.node);
    let first = total - events.len() as u32;
    assert_eq!(events, (first..total).collect::<Vec<_>>(), "{end:#?}");
    assert!(
        u64::from(first) >= acked_before && first <= fed_before,
        "the new stream starts at event {first}: {acked_before} were acknowledged \
         before the deletion, {fed_before} fed before it"
    );
}

/// The node's stream deleted while the exporter runs (`nats stream rm`,
/// or a cluster back without its data), with `create_stream` set: the
/// exporter creates it again and goes on, the chain of expected message
/// ids restarting on the new, empty stream. Every event not acknowledged
/// before the deletion arrives, once, in order, nothing dropped; the
/// status names the missing stream.
#[test]
fn fleet_exporter_creates_its_stream_again_when_it_is_deleted() {
    const TOTAL: u32 = 3000;
    let dir = temp_dir("deleted");
    let cluster = Cluster::start(&dir.join("nats"), 1, None);
    let node = format!("d{}", std::process::id());
    let mut cfg = NatsConfig::new(cluster.urls(), node, dir.join("spool"));
    cfg.stream = format!("DELETED{}", std::process::id());
    cfg.subject_prefix = format!("rstwall-d{}", std::process::id());
    cfg.create_stream = Some(1);
    cfg.queue = 256;
    let (exporter, sink) = exporter_for(&cfg, 1 << 16, "inline");

    feed(&sink, 0, TOTAL / 3);
    let before = wait_for(&exporter, &cluster, "first acks", 30, |s| s.acked > 0);
    delete_stream(&cluster.urls(), &cfg.stream_name());
    feed(&sink, TOTAL / 3, TOTAL);

    // Every event acknowledged again; meanwhile, the status said which
    // stream was missing.
    let stream = cfg.stream_name();
    let named = |s: &ExportStatus| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains(&stream) && e.contains("missing"))
    };
    let mut said = None;
    let end = wait_for(&exporter, &cluster, "everything acknowledged", 60, |s| {
        if said.is_none() && named(s) {
            said = s.last_error.clone();
        }
        s.queued == 0 && s.spool_messages == 0 && s.acked >= u64::from(TOTAL)
    });
    assert!(said.is_some() || named(&end), "{end:#?}");
    assert_eq!(end.state, "connected", "{end:#?}");
    assert_eq!(sink.dropped(), 0);
    only_the_unacknowledged_in_the_new_stream(&cluster, &cfg, &end, before.acked, TOTAL / 3, TOTAL);
    exporter.stop();
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The node's stream, managed by an operator (`create_stream` unset),
/// deleted while the exporter runs: the events wait, nothing is dropped,
/// and the status names the missing stream; the operator creates it again,
/// empty: the exporter restarts its chain on it (instead of being refused
/// for a last message id the new stream never had) and every event not
/// acknowledged before the deletion arrives, once, in order.
#[test]
fn fleet_exporter_goes_on_when_its_stream_is_created_again_empty() {
    const TOTAL: u32 = 3000;
    let dir = temp_dir("recreated");
    let cluster = Cluster::start(&dir.join("nats"), 1, None);
    let node = format!("e{}", std::process::id());
    let mut cfg = NatsConfig::new(cluster.urls(), node, dir.join("spool"));
    cfg.stream = format!("RECREATED{}", std::process::id());
    cfg.subject_prefix = format!("rstwall-e{}", std::process::id());
    cfg.queue = 256;
    let (stream, subjects) = (cfg.stream_name(), cfg.subject(">"));
    create_stream(&cluster.urls(), &stream, &subjects);
    let (exporter, sink) = exporter_for(&cfg, 1 << 16, "inline");

    feed(&sink, 0, TOTAL / 3);
    let before = wait_for(&exporter, &cluster, "first acks", 30, |s| s.acked > 0);
    delete_stream(&cluster.urls(), &stream);
    feed(&sink, TOTAL / 3, 2 * TOTAL / 3);
    let missing = wait_for(&exporter, &cluster, "the missing stream seen", 30, |s| {
        s.last_error.is_some()
    });
    assert_eq!(missing.dropped, 0, "{missing:#?}");
    assert_ne!(missing.state, "connected", "{missing:#?}");
    assert!(missing.queued + missing.spool_messages > 0, "{missing:#?}");

    create_stream(&cluster.urls(), &stream, &subjects);
    feed(&sink, 2 * TOTAL / 3, TOTAL);
    let end = wait_for(&exporter, &cluster, "everything acknowledged", 60, |s| {
        s.queued == 0 && s.spool_messages == 0 && s.acked >= u64::from(TOTAL)
    });
    assert_eq!(end.state, "connected", "{end:#?}");
    assert_eq!(sink.dropped(), 0);
    only_the_unacknowledged_in_the_new_stream(&cluster, &cfg, &end, before.acked, TOTAL / 3, TOTAL);
    let error = missing.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&stream) && error.contains("missing"),
        "the status names the missing stream: {missing:#?}"
    );
    exporter.stop();
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}
