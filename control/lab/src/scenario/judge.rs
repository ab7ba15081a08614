//! What the parts caused, summed, and the checks on rstwall's counters.

use std::thread;
use std::time::{Duration, Instant};

use rstwall_engine::policy::{Action, Mode, PolicyConfig};
use rstwall_engine::RstClass;

use crate::report::Check;
use rstwall_api::Stats;

use crate::stats::Counts;
use crate::topology::{Lab, STATS_INTERVAL};

use super::Part;

/// The sum of what the parts caused.
#[derive(Debug)]
pub(super) struct Expect {
    pub(super) rst: [u64; RstClass::COUNT],
    syns: u64,
    synacks: u64,
}

impl Expect {
    pub(super) fn of(parts: &[Part]) -> Expect {
        let mut e = Expect {
            rst: [0; RstClass::COUNT],
            syns: 0,
            synacks: 0,
        };
        for p in parts {
            let mut rst = p.rst;
            for r in &p.server_rsts {
                let n = &mut rst[r.class().index()];
                *n = (*n).max(r.first());
                rst[RstClass::NoFlow.index()] += r.again();
            }
            for (a, b) in e.rst.iter_mut().zip(rst) {
                *a += b;
            }
            e.syns += p.syns;
            e.synacks += p.synacks;
        }
        e
    }

    /// rstwall has counted at least everything expected.
    fn reached(&self, c: &Counts) -> bool {
        RstClass::ALL
            .iter()
            .all(|&k| c.class(k).total >= self.rst[k.index()])
            && c.syn >= self.syns
            && c.synack >= self.synacks
    }
}

/// Wait until rstwall's counters show what the parts caused (packets still
/// in flight, the next statistics file), then a little longer so that
/// anything *more* than expected shows up too; the last snapshot. Gives up
/// waiting after 10 s: the checks then say what is missing.
pub(super) fn settle(lab: &Lab, before: &Counts, expect: &Expect) -> anyhow::Result<Stats> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = lab.stats()?;
        if expect.reached(&Counts::of(&s).since(before)) {
            thread::sleep(STATS_INTERVAL * 2 + Duration::from_millis(200));
            return lab.stats();
        }
        if Instant::now() > deadline {
            return Ok(s);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The checks on rstwall's counters. `link_lost` is what the lab's own
/// veths dropped on the way to the appliance (a full queue, under load):
/// frames counted on the wire or sent by a part that rstwall never had a
/// chance to see. A class may come short of what was caused by at most
/// that many; it may never count more.
pub(super) fn judge(e: &Expect, c: &Counts, mode: Mode, link_lost: u64) -> Vec<Check> {
    let policy = PolicyConfig::default();
    let mut checks = Vec::new();
    let mut others = Vec::new();
    for class in RstClass::ALL {
        let (want, got) = (e.rst[class.index()], c.class(class).total);
        if want == 0 {
            others.push((class, got));
            continue;
        }
        let short = want.saturating_sub(got);
        checks.push(Check::new(
            got == want || (got < want && short <= link_lost),
            if got < want && link_lost > 0 {
                format!(
                    "{class}: {got} counted, {want} caused ({link_lost} frames dropped by the \
                     lab's veths before rstwall could see them)"
                )
            } else {
                format!("{class}: {got} counted, {want} caused")
            },
        ));
    }
    let stray: Vec<String> = others
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    checks.push(Check::new(
        stray.is_empty(),
        if stray.is_empty() {
            format!("no RST of any other class ({} classes at 0)", others.len())
        } else {
            format!("RSTs nobody caused: {}", stray.join(", "))
        },
    ));

    // Verdicts of the default policy: what it drops (enforce) or would
    // drop (monitor), and what it passes.
    let (mut dropping, mut passing) = (Vec::new(), Vec::new());
    let (mut dropping_ok, mut passing_ok) = (true, true);
    let mut drops = 0;
    for class in RstClass::ALL {
        let k = c.class(class);
        if k.total == 0 {
            continue;
        }
        if policy.action(class) == Action::Drop {
            let n = match mode {
                Mode::Enforce => k.dropped,
                Mode::Monitor => k.would_drop,
            };
            dropping_ok &= n == k.total && (mode == Mode::Enforce || k.dropped == 0);
            dropping.push(format!("{class} {n} of {}", k.total));
            drops += k.total;
        } else {
            passing_ok &= k.passed == k.total && k.would_drop == 0;
            passing.push(format!("{class} {} of {}", k.passed, k.total));
        }
    }
    if !dropping.is_empty() {
        checks.push(Check::new(
            dropping_ok,
            format!(
                "{} by the default policy: {}",
                match mode {
                    Mode::Enforce => "dropped",
                    Mode::Monitor => "would be dropped in enforce mode",
                },
                dropping.join(", ")
            ),
        ));
    }
    if !passing.is_empty() {
        checks.push(Check::new(
            passing_ok,
            format!("passed by the default policy: {}", passing.join(", ")),
        ));
    }
    let want_dropped = if mode == Mode::Enforce { drops } else { 0 };
    checks.push(Check::new(
        c.dropped == want_dropped,
        match mode {
            Mode::Enforce => format!(
                "packets dropped: {} = the RSTs the policy drops ({want_dropped}), nothing else",
                c.dropped
            ),
            Mode::Monitor => format!(
                "packets dropped: {} (monitor mode drops nothing)",
                c.dropped
            ),
        },
    ));
    let refused = e.rst[RstClass::Refused.index()];
    checks.push(Check::new(
        c.failed_connects == refused,
        format!(
            "failed connection attempts: {} counted, {refused} refused",
            c.failed_connects
        ),
    ));
    checks.push(Check::new(
        c.syn >= e.syns,
        format!("SYNs: {} counted, at least {} sent", c.syn, e.syns),
    ));
    checks.push(Check::new(
        c.synack >= e.synacks,
        format!(
            "SYN-ACKs: {} counted, at least {} expected",
            c.synack, e.synacks
        ),
    ));
    checks.push(Check::new(
        c.bypassed == 0 && c.socket_lost == 0,
        format!(
            "every TCP frame went through rstwall's workers: {} handed over, {} bypassed, {} lost at a full socket \
             ({link_lost} dropped by the lab's veths before reaching rstwall)",
            c.to_xsk, c.bypassed, c.socket_lost
        ),
    ));
    checks
}

#[cfg(test)]
mod tests {
    use super::super::kernel_resets::ServerRsts;
    use super::*;

    /// A teardown part that reset `teardown` connections, whose server
    /// sent `first` RSTs to distinct connections and `again` more to
    /// connections already reset.
    fn part_sent(teardown: u64, first: u64, again: u64) -> Part {
        let mut p = Part::default();
        p.rst[RstClass::Teardown.index()] = teardown;
        p.rst[RstClass::Refused.index()] = 3;
        p.server_rsts
            .push(ServerRsts::fixed(RstClass::Teardown, first, again));
        p
    }

    fn part(teardown: u64, on_wire: u64) -> Part {
        part_sent(teardown, on_wire, 0)
    }

    /// A first RST to a connection the server's kernel sent beyond what
    /// the part counted is expected too; a count on the wire that fell
    /// short (a sniffer that missed one) never lowers what the part
    /// caused; a RST to a connection already reset meets no socket there:
    /// `no_flow`.
    #[test]
    fn expected_rsts_are_what_the_server_sent() {
        let e = Expect::of(&[part(40, 41)]);
        assert_eq!(e.rst[RstClass::Teardown.index()], 41);
        assert_eq!(e.rst[RstClass::Refused.index()], 3);
        let e = Expect::of(&[part(40, 39), part(2, 2)]);
        assert_eq!(e.rst[RstClass::Teardown.index()], 42);
        assert_eq!(e.rst[RstClass::Refused.index()], 6);
        let e = Expect::of(&[part_sent(40, 40, 2)]);
        assert_eq!(e.rst[RstClass::Teardown.index()], 40);
        assert_eq!(e.rst[RstClass::NoFlow.index()], 2);
    }

    fn teardown_check(counted: u64, caused: u64, link_lost: u64) -> Check {
        let e = Expect::of(&[part(40, caused)]);
        let mut c = Counts::default();
        c.rst[RstClass::Teardown.index()].total = counted;
        c.rst[RstClass::Teardown.index()].passed = counted;
        c.rst[RstClass::Refused.index()].total = 3;
        judge(&e, &c, Mode::Enforce, link_lost)
            .into_iter()
            .find(|k| k.text.starts_with("teardown:"))
            .expect("a teardown check")
    }

    /// A class comes short of what was caused only by frames the lab's
    /// veths are known to have dropped before the appliance; never over.
    #[test]
    fn a_class_may_come_short_by_the_frames_the_lab_lost_only() {
        assert!(teardown_check(41, 41, 0).ok);
        assert!(!teardown_check(40, 41, 0).ok, "nothing lost: exact");
        let k = teardown_check(40, 41, 1);
        assert!(k.ok, "{k:?}");
        assert!(
            k.text.contains("1 frames dropped by the lab's veths"),
            "{k:?}"
        );
        assert!(!teardown_check(39, 41, 1).ok, "short by more than was lost");
        assert!(
            !teardown_check(42, 41, 5).ok,
            "more than caused is never fine"
        );
    }
}
