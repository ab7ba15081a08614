//! Host mode on the lab's server (`rstwall lab run SCENARIO --host`): the
//! same scenario, watched a second time from the server itself by
//! rstwall-host, which asks the server's kernel what it did with each RST
//! and names the process behind it.
//!
//! Its checks: every RST the server received got the kernel's verdict and
//! it agrees with rstwall's class (refused: sent for NO_SOCKET; in_window:
//! challenged; out_of_window, no_flow: discarded; abort, teardown: reset the
//! socket); every RST the server sent has the kernel's send event; host mode
//! saw, class by class, what the parts caused (rstwall inline passes every
//! RST in monitor mode, so the server sees them all); and every RST that
//! met a socket of the server names that socket's process. Nothing was
//! lost on the way (ring records, events).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::anyhow;
use rstwall_engine::RstClass;
use rstwall_host::{Agreement, Direction, HostConfig, HostSource, RstEvent};
use rstwall_source::Source;

use crate::report::{Check, Did};
use crate::traffic::in_netns;

use super::judge::Expect;

/// Host mode running on the server, its events collected as they come.
pub(super) struct HostWatch {
    source: HostSource,
    events: Arc<Mutex<Vec<RstEvent>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl HostWatch {
    pub(super) fn start(server: &str) -> anyhow::Result<HostWatch> {
        let source = in_netns(server, || {
            HostSource::start(&HostConfig::default())
                .map_err(|e| anyhow!("host mode on the server: {e}"))
        })?;
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (rx, out, st) = (source.events().clone(), events.clone(), stop.clone());
        let reader = thread::spawn(move || loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(e) => out.lock().unwrap_or_else(|e| e.into_inner()).push(e),
                Err(_) if st.load(Ordering::Relaxed) => break,
                Err(_) => {}
            }
        });
        Ok(HostWatch {
            source,
            events,
            stop,
            reader: Some(reader),
        })
    }

    /// Stop host mode (the RSTs still waiting for a verdict leave with
    /// what they have) and judge what it saw against what the parts caused.
    pub(super) fn finish(mut self, expect: &Expect) -> (Vec<Did>, Vec<Check>) {
        let stopped = self.source.stop();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let events = std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()));
        let lost = self
            .source
            .kernel_counters()
            .map(|c| c.records_lost)
            .unwrap_or(0);
        let correlation = self.source.correlation();
        judge(
            &events,
            expect,
            Lost {
                records: lost,
                events: correlation.events_dropped,
                rsts: stopped
                    .map(|w| w.iter().map(|w| w.source.0.counts.rsts_dropped).sum())
                    .unwrap_or(u64::MAX),
            },
        )
    }
}

/// What host mode could not see.
struct Lost {
    records: u64,
    events: u64,
    /// `u64::MAX` when a worker failed.
    rsts: u64,
}

/// The classes of RSTs that meet a socket of the server's: their process
/// must be named.
fn meets_a_socket(class: RstClass) -> bool {
    matches!(
        class,
        RstClass::Abort | RstClass::Teardown | RstClass::InWindow | RstClass::OutOfWindow
    )
}

fn judge(events: &[RstEvent], expect: &Expect, lost: Lost) -> (Vec<Did>, Vec<Check>) {
    let did = |what: String, value: String| Did {
        part: "host mode".into(),
        what,
        value,
    };
    let mut dids = Vec::new();
    let mut checks = Vec::new();
    let count = |a: Agreement| events.iter().filter(|e| e.agreement == a).count();
    let (agrees, disagrees, unjudged, no_verdict) = (
        count(Agreement::Agrees),
        count(Agreement::Disagrees),
        count(Agreement::Unjudged),
        count(Agreement::NoVerdict),
    );
    dids.push(did(
        "RSTs seen on the server (agree / disagree / not comparable / no verdict)".into(),
        format!(
            "{} ({agrees} / {disagrees} / {unjudged} / {no_verdict})",
            events.len()
        ),
    ));
    let first_disagreement = events
        .iter()
        .find(|e| matches!(e.agreement, Agreement::Disagrees | Agreement::NoVerdict))
        .map(|e| {
            format!(
                ": first {} {} -> {} with the kernel's {}",
                e.rst.class,
                e.rst.src,
                e.rst.dst,
                verdict_text(&e.kernel)
            )
        })
        .unwrap_or_default();
    checks.push(Check::new(
        disagrees == 0 && no_verdict == 0,
        format!(
            "host mode: every RST the server received has the kernel's verdict, and it agrees \
             with the class ({disagrees} disagree, {no_verdict} without a verdict){first_disagreement}"
        ),
    ));
    let sent: Vec<&RstEvent> = events
        .iter()
        .filter(|e| e.direction == Direction::Out)
        .collect();
    let unsent = sent.iter().filter(|e| e.kernel.sent.is_none()).count();
    checks.push(Check::new(
        unsent == 0,
        format!(
            "host mode: every RST the server sent has the kernel's send event ({unsent} of {} \
             without)",
            sent.len()
        ),
    ));
    let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
    for e in &sent {
        if let Some(r) = e.kernel.sent.as_ref().and_then(|s| s.reason.clone()) {
            *by_reason.entry(format!("{} {r}", e.rst.class)).or_default() += 1;
        }
    }
    for (what, n) in by_reason {
        dids.push(did(
            format!("RSTs the server sent, by class and reason: {what}"),
            n.to_string(),
        ));
    }

    let mut seen = [0u64; RstClass::COUNT];
    for e in events {
        seen[e.rst.class.index()] += 1;
    }
    let differ: Vec<String> = RstClass::ALL
        .iter()
        .filter(|c| seen[c.index()] != expect.rst[c.index()])
        .map(|c| format!("{c} {} for {}", seen[c.index()], expect.rst[c.index()]))
        .collect();
    checks.push(Check::new(
        differ.is_empty(),
        format!(
            "host mode saw, class by class, the RSTs the parts caused{}",
            if differ.is_empty() {
                String::new()
            } else {
                format!(": {}", differ.join(", "))
            }
        ),
    ));

    let socketed: Vec<&RstEvent> = events
        .iter()
        .filter(|e| meets_a_socket(e.rst.class))
        .collect();
    let unnamed = socketed.iter().filter(|e| e.process.is_none()).count();
    let mut processes: BTreeMap<String, u64> = BTreeMap::new();
    for p in socketed.iter().filter_map(|e| e.process.as_ref()) {
        *processes
            .entry(format!("{} (pid {})", p.comm, p.pid))
            .or_default() += 1;
    }
    for (who, n) in &processes {
        dids.push(did(
            format!("RSTs on the server's sockets, by process: {who}"),
            n.to_string(),
        ));
    }
    checks.push(Check::new(
        unnamed == 0,
        format!(
            "host mode names the process of every socket a RST met on the server ({unnamed} of \
             {} unnamed)",
            socketed.len()
        ),
    ));
    checks.push(Check::new(
        lost.records == 0 && lost.events == 0 && lost.rsts == 0,
        format!(
            "host mode lost nothing (ring records {}, events {}, judged RSTs {})",
            lost.records,
            lost.events,
            if lost.rsts == u64::MAX {
                "unknown: a worker failed".to_string()
            } else {
                lost.rsts.to_string()
            }
        ),
    ));
    (dids, checks)
}

/// The kernel's verdict in a line.
fn verdict_text(v: &rstwall_host::KernelVerdict) -> String {
    match (&v.sent, &v.received) {
        (_, Some(r)) => format!("{r:?}"),
        (Some(s), None) => format!("{s:?}"),
        (None, None) => "nothing".into(),
    }
}
