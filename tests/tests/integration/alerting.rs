//! dist/prometheus: rstwall's alert rules, tested by `promtool test rules`,
//! and end to end — a real Prometheus scraping the lab's rstwall during
//! its `refused` scenario sends the failed-connections alert to a real
//! Alertmanager, which posts it to this test's webhook.
//!
//! Prometheus, Alertmanager and the webhook run in the lab's appliance
//! namespace, on its loopback, beside rstwall's metrics endpoint.
//!
//! dist/grafana: every query of the dashboard returns data from a real
//! Prometheus scraping an rstwall that exports to NATS (so that the
//! exporter's panels have their series too).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rstwall_tests::lab::{connect, send_no_flow_rsts, CliLab, Lab};
use rstwall_tests::nats::Cluster;
use rstwall_tests::prom::{free_port, query, start_in_ns, which, Service, Webhook};
use rstwall_tests::{repo_root, rstwall_bin};
use serde_json::Value;

fn rules_dir() -> PathBuf {
    repo_root().join("dist/prometheus")
}

#[test]
fn promtool_checks_and_tests_the_alert_rules() {
    let promtool = which("promtool");
    for args in [
        &["check", "rules", "rstwall-rules.yml"][..],
        &["test", "rules", "rstwall-rules.test.yml"][..],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(rules_dir())
            .output()
            .expect("promtool");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {}: {text}", args.join(" "));
        assert!(
            text.contains("SUCCESS"),
            "promtool {}: {text}",
            args.join(" ")
        );
    }
}

/// A `rstwall lab` of this test, taken down when dropped.
struct LabUp(CliLab);

impl std::ops::Deref for LabUp {
    type Target = CliLab;
    fn deref(&self) -> &CliLab {
        &self.0
    }
}

impl LabUp {
    fn up(tag: &str) -> LabUp {
        let lab = LabUp(CliLab::new(tag, "rstwall-alerting"));
        let out = lab.rstwall(&["lab", "up"]);
        assert!(
            out.status.success(),
            "lab up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn appliance(&self) -> String {
        self.namespace("appliance")
    }
}

impl Drop for LabUp {
    fn drop(&mut self) {
        let _ = self.rstwall(&["lab", "down"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The rules as shipped, with every `for:` at 0s: the alert's expression,
/// labels and routing are what this test checks, in seconds rather than
/// the minute the rule waits (`promtool test rules` checks the waits).
fn rules_without_waits() -> String {
    let text = std::fs::read_to_string(rules_dir().join("rstwall-rules.yml")).unwrap();
    let out: Vec<String> = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 0s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect();
    assert!(text.contains("for: 1m"), "the rules wait somewhere");
    out.join("\n")
}

#[test]
fn alertmanager_gets_the_failed_connections_alert_during_the_labs_refused_scenario() {
    which("prometheus"); // before the lab: fail at once without it
    let alertmanager = which("prometheus-alertmanager");
    let _cpu = rstwall_tests::cpu_share();
    let lab = LabUp::up("alert");
    let ns = lab.appliance();
    let dir = lab.dir.join("alerting");
    std::fs::create_dir_all(dir.join("am")).unwrap();

    let hook = Webhook::start(&ns);
    let am_port = free_port(&ns);
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: test\n  group_by: [alertname, instance]\n  group_wait: 1s\n  \
             group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: test\n    \
             webhook_configs:\n      - url: http://{}/alert\n",
            hook.addr
        ),
    )
    .unwrap();
    let am = start_in_ns(
        &ns,
        &alertmanager,
        &[
            format!("--config.file={}", dir.join("alertmanager.yml").display()),
            format!("--storage.path={}", dir.join("am").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        dir.join("alertmanager.log"),
    );
    std::fs::write(dir.join("rules.yml"), rules_without_waits()).unwrap();
    let (prom, _) = start_prometheus(
        &ns,
        &dir.join("prom"),
        &format!(
            "rule_files: [{:?}]\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n",
            dir.join("rules.yml")
        ),
    );
    // Before the scenario: no failed connections, nothing fires.
    assert!(hook.bodies.try_recv().is_err());

    let scenario = {
        let (name, dir) = (lab.name.clone(), lab.dir.clone());
        std::thread::spawn(move || {
            Command::new(rstwall_bin())
                .args(["lab", "run", "refused", "--duration", "15", "--json"])
                .args(["--name", &name, "--dir"])
                .arg(&dir)
                .stdin(Stdio::null())
                .output()
                .expect("lab run")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let alert = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let body = hook.bodies.recv_timeout(left).unwrap_or_else(|_| {
            panic!(
                "no alert at the webhook\n--- prometheus:\n{}\n--- alertmanager:\n{}",
                prom.log(),
                am.log()
            )
        });
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        let failed = v["alerts"].as_array().and_then(|a| {
            a.iter()
                .find(|a| a["labels"]["alertname"] == "RstwallFailedConnections")
                .cloned()
        });
        if let Some(a) = failed {
            break a;
        }
    };
    assert_eq!(alert["status"], "firing", "{alert:#}");
    assert_eq!(alert["labels"]["severity"], "warning", "{alert:#}");
    assert_eq!(alert["labels"]["instance"], "127.0.0.1:9717", "{alert:#}");
    let summary = alert["annotations"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("failed connections/s"), "{alert:#}");

    let out = scenario.join().expect("the scenario thread");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["passed"], true, "{report:#}");
    let failed = report["counted"]["failed_connects"].as_u64().unwrap_or(0);
    assert!(
        failed >= 15 * 10,
        "the scenario refused too few: {report:#}"
    );
    drop(prom);
    drop(am);
}

/// A Prometheus in namespace `ns` (its files in `dir`) scraping rstwall's
/// metrics endpoint there every second, `extra` added to its config;
/// returned once it has scraped rstwall, with its address.
fn start_prometheus(ns: &str, dir: &std::path::Path, extra: &str) -> (Service, SocketAddr) {
    let prometheus = which("prometheus");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{extra}\
             scrape_configs:\n  - job_name: rstwall\n    scrape_timeout: 1s\n    \
             static_configs:\n      - targets: ['127.0.0.1:9717']\n"
        ),
    )
    .unwrap();
    let port = free_port(ns);
    let prom = start_in_ns(
        ns,
        &prometheus,
        &[
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        dir.join("prometheus.log"),
    );
    let web = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(ns, web, "up{job=\"rstwall\"} == 1").is_none_or(|r| r.is_empty()) {
        assert!(
            Instant::now() < deadline,
            "rstwall never scraped:\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    (prom, web)
}

/// Every PromQL query of the dashboard, with Grafana's variables as a
/// dashboard showing every node over the last minutes would fill them:
/// (panel title, query).
fn dashboard_queries() -> Vec<(String, String)> {
    let path = repo_root().join("dist/grafana/rstwall-fleet.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fill = |q: &str| q.replace("$__rate_interval", "1m").replace("$node", ".*");
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default();
        for t in panel["targets"].as_array().expect("targets") {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{title}: no expr"));
            out.push((title.to_string(), fill(expr)));
        }
    }
    // The node variable: label_values(SELECTOR, LABEL).
    for v in dash["templating"]["list"].as_array().expect("templating") {
        if let Some(def) = v["definition"].as_str() {
            let inner = def
                .strip_prefix("label_values(")
                .and_then(|d| d.strip_suffix(')'))
                .and_then(|d| d.rsplit_once(','))
                .unwrap_or_else(|| panic!("variable {}: {def}", v["name"]));
            out.push((format!("variable {}", v["name"]), fill(inner.0.trim())));
        }
    }
    out
}

#[test]
fn every_grafana_dashboard_query_returns_data_from_a_prometheus_scraping_rstwall() {
    which("prometheus"); // before the lab: fail at once without it
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "{queries:?}");
    let _cpu = rstwall_tests::cpu_share();
    let mut lab = Lab::new("grafana");
    let ns = lab.appliance.clone();
    let appliance = rstwall_netlab::Netns::open(&ns).expect("the appliance namespace");
    let cluster = Cluster::start(&lab.dir.join("nats"), 1, Some(&appliance));
    let config = lab.dir.join("rstwall.toml");
    std::fs::write(
        &config,
        format!(
            "metrics_listen = \"127.0.0.1:9717\"\n[export.nats]\nservers = [{:?}]\nnode = \"lab\"\n",
            cluster.urls()[0]
        ),
    )
    .unwrap();
    lab.start_rstwall(&["--inline", "pa,pb", "--config", config.to_str().unwrap()]);

    let (prom, web) = start_prometheus(&ns, &lab.dir.join("prometheus"), "");

    // Traffic for the panels: refused connections and RSTs for no flow,
    // spread over a few scrapes.
    for round in 0..4u16 {
        for _ in 0..10 {
            connect(&lab, 7).expect_err("nothing listens on port 7");
        }
        send_no_flow_rsts(&lab, 10, 20000 + round * 100);
        std::thread::sleep(Duration::from_millis(700));
    }
    // The exporter's panels have live numbers: it reached the server.
    let deadline = Instant::now() + Duration::from_secs(30);
    while lab
        .client()
        .status()
        .ok()
        .and_then(|s| s.export)
        .is_none_or(|e| e.state != "connected" || e.acked == 0)
    {
        assert!(
            Instant::now() < deadline,
            "export never connected:\n{}",
            lab.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every query answers with at least one series.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut empty: Vec<&(String, String)> = queries.iter().collect();
    while !empty.is_empty() {
        empty.retain(|(_, q)| query(&ns, web, q).is_none_or(|r| r.is_empty()));
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard queries without data: {empty:#?}\n{}",
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // And the numbers are rstwall's: every refused connection counted.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let failed = query(
            &ns,
            web,
            "sum(rstwall_failed_connection_attempts_total{job=\"rstwall\"})",
        )
        .unwrap_or_default();
        let value = failed
            .first()
            .and_then(|r| r["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok());
        if value == Some(40.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{failed:?}\n{}", lab.log());
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(prom);
    // The servers gone, rstwall still stops at once, and keeps what it
    // could not send (its last summary at least) in the spool.
    drop(cluster);
    let st = lab.stop_rstwall(libc::SIGTERM);
    assert!(st.success(), "{}", lab.log());
    let spool = lab.state_dir().join("export-spool");
    let segments = std::fs::read_dir(&spool)
        .unwrap_or_else(|e| panic!("{}: {e}", spool.display()))
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.metadata().is_ok_and(|m| m.len() > 0))
        })
        .count();
    assert!(segments > 0, "nothing spooled at stop:\n{}", lab.log());
}
