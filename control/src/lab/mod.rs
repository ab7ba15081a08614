//! `rstwall lab up | down | run SCENARIO`: rstwall inline between real
//! Linux TCP stacks in network namespaces, and scenarios that check
//! themselves.
//!
//! * [`topology`] builds and removes the namespaces and runs the daemon;
//! * [`scenario`] drives the traffic and judges the outcome
//!   ([`run_scenario`], usable from Rust);
//! * [`stats`] is the one place the daemon's counters come from;
//! * [`report`] prints what a scenario did and whether it passed;
//! * [`traffic`], [`packet`] and [`sys`] are the sockets, the hand-built
//!   segments and the system calls underneath.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::anyhow;
use clap::Subcommand;
use rstwall_datapath::policy::Mode;

use crate::Failure;

pub mod packet;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod sys;
pub mod topology;
pub mod traffic;

pub use report::Report;
pub use scenario::{run_scenario, Scenario, ScenarioOptions};
pub use topology::{Lab, LabConfig};

const LAB_ABOUT: &str = "\
A lab of network namespaces with real Linux TCP stacks on either side of
rstwall, and scenarios that produce each kind of TCP reset and check that
rstwall counted (and, in enforce mode, dropped) exactly what was sent.

  client   198.18.0.1 ─┐
                       ├─ switch ─ pa ══ rstwall ══ pb ─ server 198.18.0.2
  attacker 198.18.0.3 ─┘

rstwall runs as `rstwall run --inline pa,pb` in the appliance namespace.

The attacker also spoofs addresses from 198.19.0.0/16. Every address is in
198.18.0.0/15 (reserved for benchmarks): nothing leaves the machine.

  rstwall lab up                 build the lab and start rstwall in it
  rstwall lab run SCENARIO       run a scenario (builds the lab if needed)
  rstwall lab down               remove everything

Namespaces are named rwlab-NAME-ROLE (--name, default \"default\"); the
daemon's log, statistics and state are in DIR/NAME (--dir, default
/run/rstwall-lab). `lab up` first removes whatever an earlier lab of the
same name left behind.

Needs root. Exit status: 0 on success (for `run`: every check passed), 1
when a scenario failed or the lab could not be built, 2 for bad arguments.";

/// Arguments of `rstwall lab`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = LAB_ABOUT)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: LabAction,
}

#[derive(Debug, Subcommand)]
pub enum LabAction {
    /// Build the lab (clearing a previous one of the same name) and start
    /// rstwall inline in it.
    #[command(long_about = UP_ABOUT)]
    Up(UpArgs),
    /// Stop rstwall (cleanly: its XDP programs are detached) and remove
    /// the lab's namespaces and files.
    #[command(long_about = DOWN_ABOUT)]
    Down(DownArgs),
    /// Run a scenario and check it; print a report.
    #[command(long_about = RUN_ABOUT)]
    Run(RunArgs),
}

/// Which lab.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// The lab's name: namespaces are rwlab-NAME-ROLE. Labs with different
    /// names run side by side [default: default].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Where lab directories go (the daemon's log, statistics, state)
    /// [default: /run/rstwall-lab].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

const UP_ABOUT: &str = "\
Build the lab and start rstwall in it.

Removes whatever an earlier lab of the same name left (a crashed run's
namespaces and daemon), then creates five network namespaces — client,
attacker, a switch, the appliance and the server — and starts
`rstwall run --inline pa,pb` in the appliance namespace with the lab's own
policy, state directory and statistics file. The daemon keeps running after
this command returns; `rstwall lab down` stops it.

Examples:
  rstwall lab up
  rstwall lab up --mode enforce
  rstwall lab up --name mine --dir /tmp/labs";

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub target: Target,

    /// The policy mode rstwall starts in: monitor (count only) or enforce
    /// (drop the RSTs the default policy drops) [default: monitor].
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
}

const DOWN_ABOUT: &str = "\
Remove the lab: stop its rstwall with SIGTERM (a clean stop detaches the XDP
programs; SIGKILL after 15 s), delete its namespaces (their veths and the
switch go with them) and its directory. Nothing to remove is not an error.";

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub target: Target,
}

const RUN_ABOUT: &str = "\
Run a scenario on the lab and check it. Real Linux TCP stacks produce the
resets (only the attacker's packets are hand-built); rstwall's counters are
compared with what was sent.

Scenarios:
  refused      the client keeps connecting to a closed port; the server's
               kernel answers every SYN with a RST: counted `refused`.
  teardown     the server closes, the client sends data anyway; the server's
               kernel answers with a RST: counted `teardown`.
  abort        the server closes with unread data: a RST with the exact
               sequence number, counted `abort`.
  blind-reset  the attacker sprays spoofed RSTs with guessed sequence numbers
               at live connections: `in_window` and `out_of_window`. The
               connections must survive; in enforce mode (the default for
               blind-reset and mixed) rstwall drops every one and none
               reaches the server.
  backscatter  RSTs for connections that do not exist, from spoofed
               addresses: `no_flow`.
  syn-flood    spoofed SYNs from random addresses and ports at a listening
               port; legitimate connections must still get through.
  mixed        all of the above at once, over legitimate bulk transfers and
               short connections.

Every scenario checks itself: the connections that must survive did, the
resets that must happen did, and rstwall counted exactly what was sent, by
class, with the verdicts the policy gives (dropped in enforce mode, `would
drop` in monitor mode). The report lists each check with its numbers.

The lab is built first if it is not up, and removed afterwards unless
--keep is given; a lab that was already up is left up. Ctrl-C stops the
scenario and removes what this command built.

Exit status: 0 when every check passed, 1 when one failed (or the lab could
not be built), 2 for bad arguments.

Examples:
  rstwall lab run refused
  rstwall lab run blind-reset --mode monitor
  rstwall lab run mixed --duration 60 --keep
  rstwall lab run mixed --json > report.json";

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// refused, teardown, abort, blind-reset, backscatter, syn-flood or
    /// mixed.
    #[arg(value_name = "SCENARIO")]
    pub scenario: String,

    #[command(flatten)]
    pub target: Target,

    /// How long the scenario sends, in seconds (1 to 3600; fractions
    /// allowed) [default: 30 for mixed, 5 for the others].
    #[arg(long, value_name = "SECS")]
    pub duration: Option<String>,

    /// The policy mode for the run: monitor or enforce [default: enforce
    /// for blind-reset and mixed, monitor for the others]. The lab stays
    /// in it.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,

    /// Leave the lab up afterwards (for `rstwall lab down` later).
    #[arg(long)]
    pub keep: bool,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// Show `rstwall top` while the scenario runs (q stops watching, Ctrl-C
    /// stops the scenario); the report follows.
    #[arg(long, conflicts_with = "json")]
    pub top: bool,
}

pub fn run(args: LabArgs) -> Result<(), Failure> {
    match args.action {
        LabAction::Up(a) => up(a),
        LabAction::Down(a) => down(a),
        LabAction::Run(a) => run_command(a),
    }
}

fn lab_config(t: &Target) -> Result<LabConfig, Failure> {
    let name = t.name.as_deref().unwrap_or(topology::DEFAULT_NAME);
    let base = t
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(topology::DEFAULT_BASE));
    LabConfig::new(name, &base).map_err(|e| Failure::usage(anyhow!(e)))
}

fn parse_mode(flag: &str, text: &str) -> Result<Mode, Failure> {
    match text {
        "monitor" => Ok(Mode::Monitor),
        "enforce" => Ok(Mode::Enforce),
        _ => Err(Failure::usage(anyhow!(
            "{flag} {text:?}: expected monitor or enforce"
        ))),
    }
}

fn parse_duration(text: &str) -> Result<Duration, Failure> {
    match text.trim().parse::<f64>() {
        Ok(s) if (1.0..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(Failure::usage(anyhow!(
            "--duration {text:?}: give seconds from 1 to 3600"
        ))),
    }
}

fn require_root() -> Result<(), Failure> {
    if sys::is_root() {
        Ok(())
    } else {
        Err(Failure::runtime(anyhow!(
            "rstwall lab needs root (network namespaces, XDP, AF_XDP): run it as root"
        )))
    }
}

fn up(a: UpArgs) -> Result<(), Failure> {
    let cfg = lab_config(&a.target)?;
    let mode = match &a.mode {
        Some(m) => parse_mode("--mode", m)?,
        None => Mode::Monitor,
    };
    require_root()?;
    let lock = topology::LabLock::take(&cfg).map_err(Failure::runtime)?;
    if Lab::traces(&cfg) {
        eprintln!("lab {:?}: removing the earlier lab of this name", cfg.name);
    }
    let lab = Lab::up(&cfg, mode).map_err(|e| Failure::runtime(e.context("lab up")))?;
    let mut out = std::io::stdout().lock();
    topology::describe(&lab, &mut out).map_err(Failure::runtime)?;
    lab.detach();
    drop(lock);
    Ok(())
}

fn down(a: DownArgs) -> Result<(), Failure> {
    let cfg = lab_config(&a.target)?;
    require_root()?;
    let lock = topology::LabLock::take(&cfg).map_err(Failure::runtime)?;
    let existed = Lab::traces(&cfg);
    topology::teardown(&cfg).map_err(|e| Failure::runtime(e.context("lab down")))?;
    drop(lock);
    if existed {
        println!("lab {:?} removed", cfg.name);
    } else {
        println!("lab {:?}: nothing to remove", cfg.name);
    }
    Ok(())
}

fn run_command(a: RunArgs) -> Result<(), Failure> {
    let scenario = Scenario::parse(&a.scenario).ok_or_else(|| {
        Failure::usage(anyhow!(
            "unknown scenario {:?}: expected one of {}",
            a.scenario,
            Scenario::ALL.map(Scenario::name).join(", ")
        ))
    })?;
    let cfg = lab_config(&a.target)?;
    let duration = match &a.duration {
        Some(d) => parse_duration(d)?,
        None => scenario.default_duration(),
    };
    let mode = match &a.mode {
        Some(m) => parse_mode("--mode", m)?,
        None => scenario.default_mode(),
    };
    require_root()?;
    let lock = topology::LabLock::take(&cfg).map_err(Failure::runtime)?;
    let stop = sys::catch_stop_signals();

    let (mut lab, guard) = match Lab::find(&cfg) {
        Some(lab) => (lab, None),
        None => {
            if Lab::traces(&cfg) {
                eprintln!("lab {:?}: clearing what an earlier run left", cfg.name);
            }
            eprintln!("lab {:?}: building it", cfg.name);
            let lab =
                Lab::up(&cfg, mode).map_err(|e| Failure::runtime(e.context("building the lab")))?;
            // Removes the lab on every way out (error, Ctrl-C, panic) unless
            // disarmed below.
            (lab, Some(topology::TeardownGuard::new(cfg.clone())))
        }
    };
    let built = guard.is_some();
    let opts = ScenarioOptions { duration, mode };
    eprintln!(
        "lab {:?}: running {} for {:.0} s in {} mode (watch it: rstwall top --socket {})",
        cfg.name,
        scenario.name(),
        duration.as_secs_f64(),
        mode,
        cfg.control_socket().display()
    );
    let outcome = if a.top {
        watch_while_running(&mut lab, scenario, &opts, stop, &cfg)
    } else {
        run_scenario(&mut lab, scenario, &opts, stop)
    };

    // What happens to the lab: built here and not kept → removed (also
    // after a failure); otherwise it stays as it was found.
    let keep = a.keep || !built;
    let log_tail = lab.log_tail(20);
    let removal = if keep {
        if let Some(g) = guard {
            g.disarm();
        }
        lab.detach();
        Ok(())
    } else {
        if let Some(g) = guard {
            g.disarm();
        }
        lab.down()
    };

    let report = outcome
        .map_err(|e| Failure::runtime(e.context(format!("scenario {}", scenario.name()))))?;
    let mut out = std::io::stdout().lock();
    let printed = if a.json {
        report.write_json(&mut out)
    } else {
        report.write_text(&mut out)
    };
    printed.map_err(Failure::runtime)?;
    drop(out);
    if !report.passed() && !report.interrupted {
        eprintln!("rstwall's log (last lines):\n{log_tail}");
    }
    if keep {
        eprintln!(
            "lab {:?} left up: rstwall lab down{}",
            cfg.name,
            name_flag(&cfg)
        );
    }
    removal.map_err(|e| Failure::runtime(e.context("removing the lab")))?;
    drop(lock);
    if report.interrupted {
        return Err(Failure::runtime(anyhow!("interrupted")));
    }
    if !report.passed() {
        return Err(Failure::runtime(anyhow!(
            "scenario {} failed: {} of {} checks failed",
            scenario.name(),
            report.failed_checks(),
            report.checks.len()
        )));
    }
    Ok(())
}

/// Run the scenario on a thread while `rstwall top` shows the daemon on
/// this terminal. Quitting the view (q) lets the scenario finish; Ctrl-C
/// stops it.
fn watch_while_running(
    lab: &mut Lab,
    scenario: Scenario,
    opts: &ScenarioOptions,
    stop: &'static AtomicBool,
    cfg: &LabConfig,
) -> anyhow::Result<report::Report> {
    let socket = cfg.control_socket();
    let finished = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let finished_ref = &finished;
        let runner = scope.spawn(move || {
            let r = run_scenario(lab, scenario, opts, stop);
            finished_ref.store(true, Ordering::Relaxed);
            r
        });
        let client = crate::client::Client::at(&socket);
        let done = || finished.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
        // Watching is optional: a view that fails leaves the run alone.
        match crate::client::run_top(&client, 1.0, None, &done) {
            Ok(crate::client::TopEnd::Interrupt) => stop.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => eprintln!("rstwall top: {:#}", e.error),
        }
        if !finished.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
            eprintln!(
                "lab {:?}: {} is still running; its report follows",
                cfg.name,
                scenario.name()
            );
        }
        runner
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the scenario thread panicked")))
    })
}

fn name_flag(cfg: &LabConfig) -> String {
    let mut s = String::new();
    if cfg.name != topology::DEFAULT_NAME {
        s.push_str(&format!(" --name {}", cfg.name));
    }
    if cfg.base != std::path::Path::new(topology::DEFAULT_BASE) {
        s.push_str(&format!(" --dir {}", cfg.base.display()));
    }
    s
}
