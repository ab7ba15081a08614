//! What `rstwall host` adds up while it watches: the RST events (by
//! class and direction, service port, process, kernel send reason, and
//! agreement) and netstat's seconds (kept past the source's two minutes).

use std::collections::BTreeMap;

use rstwall_api::host::{AgreementCounts, ClassTally, DirectionCounts, ProcessCount};
use rstwall_engine::RstClass;
use rstwall_host::{Agreement, Direction, MibSecond, Process, RstEvent, TcpMib};

/// Counts by process: pid to (comm, count).
pub type ByProcess = BTreeMap<u32, (String, u64)>;

/// The RST events so far.
#[derive(Default)]
pub struct Tally {
    pub rsts: u64,
    pub classes: BTreeMap<RstClass, DirectionCounts>,
    pub ports: BTreeMap<u16, BTreeMap<RstClass, u64>>,
    pub processes: BTreeMap<u32, ProcessTally>,
    pub unowned: u64,
    pub agreement: AgreementCounts,
    /// RSTs this host sent, by the kernel's reason, and the processes of
    /// the sockets involved.
    pub sent: BTreeMap<String, ByProcess>,
}

/// One process's RSTs.
pub struct ProcessTally {
    pub process: Process,
    pub rsts: u64,
    pub classes: BTreeMap<RstClass, u64>,
    pub ports: BTreeMap<u16, u64>,
}

impl Tally {
    pub fn add(&mut self, e: &RstEvent) {
        self.rsts += 1;
        let d = self.classes.entry(e.rst.class).or_default();
        match e.direction {
            Direction::In => d.received += 1,
            Direction::Out => d.sent += 1,
            Direction::Local => d.local += 1,
        }
        *self
            .ports
            .entry(e.service_port)
            .or_default()
            .entry(e.rst.class)
            .or_default() += 1;
        match &e.process {
            Some(p) => {
                let t = self.processes.entry(p.pid).or_insert_with(|| ProcessTally {
                    process: p.clone(),
                    rsts: 0,
                    classes: BTreeMap::new(),
                    ports: BTreeMap::new(),
                });
                t.rsts += 1;
                *t.classes.entry(e.rst.class).or_default() += 1;
                *t.ports.entry(e.service_port).or_default() += 1;
            }
            None => self.unowned += 1,
        }
        let a = &mut self.agreement;
        match e.agreement {
            Agreement::Agrees => a.agrees += 1,
            Agreement::Disagrees => a.disagrees += 1,
            Agreement::Unjudged => a.unjudged += 1,
            Agreement::NoVerdict => a.no_verdict += 1,
        }
        if let Some(reason) = e.kernel.sent.as_ref().and_then(|s| s.reason.clone()) {
            let by = self.sent.entry(reason).or_default();
            if let Some(p) = &e.process {
                by.entry(p.pid).or_insert_with(|| (p.comm.clone(), 0)).1 += 1;
            }
        }
    }

    /// The processes, most RSTs first (then by pid).
    pub fn processes_ranked(&self) -> Vec<&ProcessTally> {
        let mut v: Vec<&ProcessTally> = self.processes.values().collect();
        v.sort_by(|a, b| b.rsts.cmp(&a.rsts).then(a.process.pid.cmp(&b.process.pid)));
        v
    }

    /// The processes of the sockets behind RSTs sent for `reason`, most
    /// first.
    pub fn senders(&self, reason: &str) -> Vec<ProcessCount> {
        let Some(by) = self.sent.get(reason) else {
            return Vec::new();
        };
        ranked(
            by.iter()
                .map(|(pid, (comm, n))| (*pid, comm.clone(), *n))
                .collect(),
        )
    }
}

/// Processes and counts, most first (then by pid).
pub fn ranked(mut v: Vec<(u32, String, u64)>) -> Vec<ProcessCount> {
    v.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    v.into_iter()
        .map(|(pid, comm, count)| ProcessCount { pid, comm, count })
        .collect()
}

/// Classes and counts, most first (then in class order).
pub fn classes_ranked(m: &BTreeMap<RstClass, u64>) -> Vec<ClassTally> {
    let mut v: Vec<ClassTally> = m
        .iter()
        .map(|(class, rsts)| ClassTally {
            class: *class,
            rsts: *rsts,
        })
        .collect();
    v.sort_by(|a, b| b.rsts.cmp(&a.rsts).then(a.class.cmp(&b.class)));
    v
}

/// netstat's seconds since host mode started, each once: the source keeps
/// the last two minutes, this keeps them all.
#[derive(Default)]
pub struct Seconds {
    pub all: Vec<MibSecond>,
}

impl Seconds {
    /// Take the seconds not taken yet.
    pub fn take(&mut self, latest: Vec<MibSecond>) {
        let last = self.all.last().map(|s| s.second);
        self.all.extend(
            latest
                .into_iter()
                .filter(|s| last.is_none_or(|l| s.second > l)),
        );
    }

    /// netstat's counters' growth over every second taken.
    pub fn mib(&self) -> TcpMib {
        let mut sum = TcpMib::default();
        for s in &self.all {
            sum.add(&s.mib);
        }
        sum
    }

    /// The last second closed (Unix seconds).
    pub fn last(&self) -> Option<u64> {
        self.all.last().map(|s| s.second)
    }
}
