//! `rstwall lab up | down | run SCENARIO`: the command around the lab
//! library ([`rstwall_lab`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::anyhow;
use rstwall_api::Failure;

use crate::cli::{DownArgs, LabAction, LabArgs, LabRunArgs, Target, UpArgs};
use rstwall_engine::policy::Mode;
use rstwall_lab::{
    netlab, report, run_scenario, topology, Lab, LabConfig, Scenario, ScenarioOptions,
};

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
    if netlab::is_root() {
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

fn run_command(a: LabRunArgs) -> Result<(), Failure> {
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
        None if a.host => Mode::Monitor,
        None => scenario.default_mode(),
    };
    if a.host && mode == Mode::Enforce {
        return Err(Failure::usage(anyhow!(
            "--host: host mode on the server sees only the RSTs rstwall passes; use --mode monitor"
        )));
    }
    require_root()?;
    let lock = topology::LabLock::take(&cfg).map_err(Failure::runtime)?;
    let stop = netlab::catch_stop_signals()
        .map_err(|e| Failure::runtime(anyhow!("catching Ctrl-C: {e}")))?;

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
    let opts = ScenarioOptions {
        duration,
        mode,
        host: a.host,
    };
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
        let client = rstwall_api::Client::at(&socket);
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
