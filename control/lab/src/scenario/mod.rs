//! The scenarios: what each sends, what rstwall must count, and the checks.
//!
//! A scenario is made of *parts* that run side by side (`mixed` runs all of
//! them). Each part drives real kernel TCP — or, for the attacker, hand-built
//! segments from a raw socket — and returns what it did and what that must
//! have caused: the RSTs by class, exactly, because each comes from a
//! socket sequence whose kernel behaviour is deterministic (the same ones
//! as `tests/fixtures/linux`):
//!
//! | part | what the kernel does | class |
//! |---|---|---|
//! | refused | SYN to a closed port: RST+ACK, ack = ISN+1 | `refused` |
//! | teardown | server closes (FIN), client sends data: the orphaned server socket answers with a RST, seq = RCV.NXT | `teardown` |
//! | abort | server closes with unread data: RST, seq = RCV.NXT | `abort` |
//! | blind-reset | spoofed RSTs at live sessions: seq RCV.NXT+128..+16384 (inside the 64 KiB window, never exact); others at least 16 MiB behind or 64 MiB ahead | `in_window`, `out_of_window` |
//! | backscatter | spoofed RST / RST+ACK from 198.19.128.0/17 to the server | `no_flow` |
//! | syn-flood | spoofed SYNs from 198.19.0.0/17; the server answers each with a SYN-ACK the attacker drops | none |
//! | short-lived, bulk | request/echo/close and paced transfers, closed with FINs | none |
//!
//! The blind attacker knows the sessions' 4-tuples, not their sequence
//! numbers; the lab knows them (the client's ISN from a packet socket at
//! the server, plus the bytes sent), which is what lets it aim "guessed"
//! in-window RSTs and check the class of every one. Each session is idle
//! while the RSTs of a round are in flight: a ping/echo first, then the
//! spray, so RCV.NXT does not move under them.
//!
//! The checks then compare rstwall's counters (the difference over the
//! run) with those numbers: per class exactly (for the parts whose RSTs the
//! server's kernel sends, every one it sent, counted on the wire: it may
//! answer a second segment of a connection it already reset, a RST that
//! meets no socket at the client, `no_flow`), the verdicts of the default
//! policy (enforce: dropped; monitor: `would drop`), the dropped total,
//! failed connection attempts, SYN and SYN-ACK lower bounds, no fail-open
//! bypass; and, from the sockets, that every connection that had to survive
//! did and every reset that had to happen did.

use std::net::{SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use rstwall_engine::policy::Mode;
use rstwall_engine::RstClass;

use crate::report::{Check, Did, Report};

use crate::stats::Counts;
use crate::topology::{Lab, ATTACKER_IF, CLIENT_IF, LAN_TO_APPLIANCE, SERVER_IF};
use crate::traffic::{in_netns, join, Running};
use rstwall_netlab::{rng, LinkCounters};

mod attacks;
mod host;
mod judge;
mod kernel_resets;
mod load;

use attacks::{backscatter, blind_reset, syn_flood, Spray};
use judge::{judge, settle, Expect};
use kernel_resets::{abort, refused, teardown};
use load::{bulk, short_lived, Direction};

/// Server ports, one per part, so that parts never share a flow.
const ECHO_PORT: u16 = 80;
const FLOOD_PORT: u16 = 443;
const VICTIM_PORT: u16 = 179; // BGP: the classic target of blind resets
const TEARDOWN_PORT: u16 = 8080;
const ABORT_PORT: u16 = 5432;
const BULK_UP_PORT: u16 = 9000;
const BULK_DOWN_PORT: u16 = 9001;
/// Nothing listens here: a service that is down.
const CLOSED_PORT: u16 = 8443;

/// The scenarios of `rstwall lab run`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Refused,
    Teardown,
    Abort,
    BlindReset,
    Backscatter,
    SynFlood,
    Mixed,
}

impl Scenario {
    pub const ALL: [Scenario; 7] = [
        Scenario::Refused,
        Scenario::Teardown,
        Scenario::Abort,
        Scenario::BlindReset,
        Scenario::Backscatter,
        Scenario::SynFlood,
        Scenario::Mixed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Scenario::Refused => "refused",
            Scenario::Teardown => "teardown",
            Scenario::Abort => "abort",
            Scenario::BlindReset => "blind-reset",
            Scenario::Backscatter => "backscatter",
            Scenario::SynFlood => "syn-flood",
            Scenario::Mixed => "mixed",
        }
    }

    /// By name (`_` accepted for `-`).
    pub fn parse(name: &str) -> Option<Scenario> {
        let name = name.replace('_', "-");
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn default_duration(self) -> Duration {
        match self {
            Scenario::Mixed => Duration::from_secs(30),
            _ => Duration::from_secs(5),
        }
    }

    /// Enforce where there is something the default policy drops to show.
    pub fn default_mode(self) -> Mode {
        match self {
            Scenario::BlindReset | Scenario::Mixed => Mode::Enforce,
            _ => Mode::Monitor,
        }
    }
}

/// How to run a scenario.
#[derive(Clone, Debug)]
pub struct ScenarioOptions {
    /// How long the parts send (each then finishes what it started).
    pub duration: Duration,
    /// The policy mode rstwall runs in (the lab's policy is rstwall's
    /// default policy in that mode).
    pub mode: Mode,
    /// Host mode on the server too, and its checks (see [`host`]).
    pub host: bool,
}

/// Run `scenario` on `lab` and judge it. `stop` (Ctrl-C) ends the sending
/// early; the report then says it was interrupted. An error means the
/// scenario could not run (a socket could not be opened, the daemon's
/// statistics are unreadable); a scenario that ran but misbehaved is a
/// report whose checks failed.
pub fn run_scenario(
    lab: &mut Lab,
    scenario: Scenario,
    opts: &ScenarioOptions,
    stop: &AtomicBool,
) -> anyhow::Result<Report> {
    lab.set_mode(opts.mode)?;
    let before_stats = lab.stats()?;
    let before = Counts::of(&before_stats);
    let links_before = dropped_on_links(lab)?;
    let started = Instant::now();
    let ctx = Ctx {
        client: lab.ns("client"),
        attacker: lab.ns("attacker"),
        server: lab.ns("server"),
        run: Running {
            until: started + opts.duration,
            stop,
        },
        mode: opts.mode,
        seed: rng::clock_seed(scenario as u64),
    };
    let watch = if opts.host {
        Some(host::HostWatch::start(&ctx.server)?)
    } else {
        None
    };
    let plan = plan(scenario);
    let ctx = &ctx;
    let parts: Vec<Part> = thread::scope(|s| {
        let handles: Vec<_> = plan
            .into_iter()
            .map(|(name, f)| {
                let h = s.spawn(move || f(ctx).with_context(|| format!("part {name}")));
                (name, h)
            })
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| join(h, name))
            .collect::<anyhow::Result<Vec<Part>>>()
    })?;
    let sent_for = started.elapsed();
    let interrupted = stop.load(Ordering::Relaxed);

    let expect = Expect::of(&parts);
    let after_stats = settle(lab, &before, &expect)?;
    let counted = Counts::of(&after_stats).since(&before);
    // Again, with every RST the server's kernel sent until now.
    let expect = Expect::of(&parts);
    let (host_did, host_checks) = match watch {
        Some(w) => w.finish(&expect),
        None => (Vec::new(), Vec::new()),
    };
    let mut checks: Vec<Check> = parts.iter().flat_map(|p| p.checks.clone()).collect();
    let link_lost = dropped_on_links(lab)?.saturating_sub(links_before);
    checks.extend(judge(&expect, &counted, opts.mode, link_lost));
    checks.extend(host_checks);
    // Statistics that stopped moving come from a daemon that died (and an
    // inline pair left forwarding in the kernel, fail-open).
    let fresh = after_stats.uptime_s - before_stats.uptime_s + 1.0 >= sent_for.as_secs_f64();
    checks.push(Check::new(
        lab.daemon_alive() && fresh,
        format!(
            "rstwall (pid {}) kept running through the scenario{}",
            lab.daemon_pid(),
            if lab.daemon_alive() {
                ""
            } else {
                ": it is gone"
            }
        ),
    ));
    Ok(Report {
        scenario: scenario.name(),
        lab: lab.cfg.name.clone(),
        mode: opts.mode,
        duration_s: sent_for.as_secs_f64(),
        interrupted,
        did: parts
            .iter()
            .flat_map(|p| {
                let on_wire = p.server_rsts.iter().flat_map(|r| {
                    let did = |what: &str, n: u64| Did {
                        part: r.class().to_string(),
                        what: what.into(),
                        value: n.to_string(),
                    };
                    [
                        did("RSTs the server's kernel sent (on the wire)", r.count()),
                        did("of them to a connection already reset (no_flow)", r.again()),
                    ]
                });
                p.did.iter().cloned().chain(on_wire)
            })
            .chain(host_did)
            .collect(),
        expected: expect.rst,
        counted,
        checks,
    })
}

/// Frames the lab's own links dropped on their way to the appliance so
/// far: each veth that carries frames towards it counts on transmit what
/// its peer's queue had no room for (under load, the appliance's side
/// busy), and the appliance never sees those.
fn dropped_on_links(lab: &Lab) -> anyhow::Result<u64> {
    let mut n = 0;
    for (role, dev) in [
        ("client", CLIENT_IF),
        ("attacker", ATTACKER_IF),
        ("lan", LAN_TO_APPLIANCE),
        ("server", SERVER_IF),
    ] {
        n += in_netns(&lab.ns(role), || {
            LinkCounters::of(dev)
                .map(|l| l.tx_dropped)
                .with_context(|| format!("the {role}'s {dev}"))
        })?;
    }
    Ok(n)
}

/// The parts of each scenario, with their rates. Alone, a part runs at a
/// rate that shows its effect in a few seconds; in `mixed` the rates are
/// lower, all at once, over legitimate traffic.
type PartFn = Box<dyn Fn(&Ctx) -> anyhow::Result<Part> + Send + Sync>;

fn plan(scenario: Scenario) -> Vec<(&'static str, PartFn)> {
    fn p(
        name: &'static str,
        f: impl Fn(&Ctx) -> anyhow::Result<Part> + Send + Sync + 'static,
    ) -> (&'static str, PartFn) {
        (name, Box::new(f))
    }
    match scenario {
        Scenario::Refused => vec![p("refused", |c| refused(c, 100.0))],
        Scenario::Teardown => vec![p("teardown", |c| teardown(c, 50.0))],
        Scenario::Abort => vec![p("abort", |c| abort(c, 50.0))],
        Scenario::BlindReset => vec![p("blind-reset", |c| {
            blind_reset(
                c,
                Spray {
                    sessions: 4,
                    rounds_per_sec: 10.0,
                    in_window: 2,
                    out_of_window: 20,
                },
            )
        })],
        Scenario::Backscatter => vec![p("backscatter", |c| backscatter(c, 500.0))],
        Scenario::SynFlood => vec![p("syn-flood", |c| syn_flood(c, 1000.0, 10.0))],
        Scenario::Mixed => vec![
            p("short-lived", |c| short_lived(c, 20.0)),
            p("bulk upload", |c| bulk(c, Direction::Upload, 4 << 20)),
            p("bulk download", |c| bulk(c, Direction::Download, 4 << 20)),
            p("refused", |c| refused(c, 20.0)),
            p("teardown", |c| teardown(c, 10.0)),
            p("abort", |c| abort(c, 10.0)),
            p("blind-reset", |c| {
                blind_reset(
                    c,
                    Spray {
                        sessions: 4,
                        rounds_per_sec: 5.0,
                        in_window: 1,
                        out_of_window: 10,
                    },
                )
            }),
            p("backscatter", |c| backscatter(c, 100.0)),
            p("syn-flood", |c| syn_flood(c, 300.0, 5.0)),
        ],
    }
}

/// What every part needs.
struct Ctx<'a> {
    client: String,
    attacker: String,
    server: String,
    run: Running<'a>,
    mode: Mode,
    seed: u64,
}

/// What one part did and caused, and its own checks.
#[derive(Debug, Default)]
struct Part {
    did: Vec<Did>,
    /// RSTs by class this part caused, exactly.
    rst: [u64; RstClass::COUNT],
    /// SYNs it certainly put on the wire (connection attempts, spoofed
    /// SYNs), and SYN-ACKs that certainly crossed (connections that were
    /// established, spoofed SYNs the server answered).
    syns: u64,
    synacks: u64,
    checks: Vec<Check>,
    /// The RSTs the server's kernel sent for this part, counted on the
    /// wire until the checks: where it sent more than `rst` says (a
    /// retransmission answered again), rstwall must count those too.
    server_rsts: Vec<kernel_resets::ServerRsts>,
}

impl Part {
    fn did(&mut self, part: &str, what: impl Into<String>, value: impl ToString) {
        self.did.push(Did {
            part: part.to_string(),
            what: what.into(),
            value: value.to_string(),
        });
    }
    fn check(&mut self, ok: bool, text: impl Into<String>) {
        self.checks.push(Check::new(ok, text));
    }
}

/// A client's connect, with the timeouts every part uses.
fn connect(dst: SocketAddrV4) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(Scenario::parse(s.name()), Some(s));
        }
        assert_eq!(Scenario::parse("syn_flood"), Some(Scenario::SynFlood));
        assert_eq!(Scenario::parse("nope"), None);
    }

    #[test]
    fn every_scenario_has_parts_and_mixed_has_them_all() {
        for s in Scenario::ALL {
            assert!(!plan(s).is_empty());
        }
        let mixed: Vec<&str> = plan(Scenario::Mixed).iter().map(|(n, _)| *n).collect();
        for s in Scenario::ALL.iter().filter(|s| **s != Scenario::Mixed) {
            assert!(mixed.contains(&s.name()), "mixed lacks {}", s.name());
        }
    }
}
