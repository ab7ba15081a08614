//! `rstwall-bench run`: the benchmark suite on the lab, one run, the
//! contenders ([`Contender`]) — the bare AF_XDP loop (the ceiling), Linux
//! bridging with conntrack and nftables, rstwall in monitor and in enforce
//! mode, and the diagnostics (the kernel's own XDP redirect as a latency
//! reference, the bare loop reading every frame) — and the measurements
//! ([`Phase`]) of each: Mpps at 64 bytes and the CPU it costs, drop
//! accuracy counted at the sink, one-way latency, and the goodput of a
//! kernel TCP transfer alone and during a blind-reset flood.
//!
//! ```text
//!   gen ns                      appliance ns                        sink ns
//!   generator ─veth─ A ══[forwarder: one thread, one queue]══ B ─veth─ sink
//!   TCP client                                                       TCP server
//! ```
//!
//! Rounds: each runs every measurement of every contender once, the
//! contenders' order rotated; the report gives medians over rounds (and
//! merged latency histograms, summed accuracy counts). Output: `report.md`
//! (also on stdout), `results.json` and `chart.svg` in [`Options::out`].
//!
//! * [`options`] — the contenders, the phases, the checked options;
//! * [`rig`] — the lab with its instruments: rstwall's programs, the
//!   sink's counter, the generator; quiet waits and re-measurements;
//! * [`forwarder`] — starting and stopping each contender, with
//!   [`export`], the export contender's broker;
//! * [`throughput`], [`accuracy`], [`latency`], [`goodput`] — one
//!   measurement each;
//! * [`report`] (markdown, with [`tables`]), [`json`], [`chart`] — the
//!   output.
//!
//! A new measurement is a module with a `Rig` method and a record type, a
//! [`Phase`], and its table; a new contender is a [`Contender`] and its
//! arm in [`forwarder`].

pub mod accuracy;
pub mod chart;
pub mod export;
pub mod forwarder;
pub mod goodput;
pub mod json;
pub mod latency;
pub mod options;
pub mod report;
pub mod rig;
pub mod tables;
pub mod throughput;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rstwall_afxdp::sys;

use crate::cpu::{self, Machine};
use crate::error::BadArg;
use crate::lab::{self, Lab};
use crate::traffic::Traffic;

pub use accuracy::Accuracy;
pub use goodput::Goodput;
pub use latency::Lat;
pub use options::{Contender, Options, Phase};
pub use report::{Report, Results};
pub use rig::Rig;
pub use throughput::Tput;

/// Run the suite; the markdown report goes to stdout, and with the JSON
/// and the chart to `o.out`.
pub fn run(o: &Options) -> Result<()> {
    if !sys::is_root() {
        bail!("run needs root (network namespaces, XDP, AF_XDP, nftables)");
    }
    let allowed = sys::allowed_cpus().context("allowed CPUs")?;
    for (name, cpu) in [
        ("gen-cpu", o.gen_cpu),
        ("fwd-cpu", o.fwd_cpu),
        ("sink-cpu", o.sink_cpu),
    ] {
        if !allowed.contains(&cpu) {
            return Err(BadArg(format!(
                "--{name} {cpu}: not one of this process's CPUs {allowed:?}"
            ))
            .into());
        }
    }
    if o.gen_cpu == o.fwd_cpu {
        eprintln!("warning: generator and forwarder share CPU {}", o.gen_cpu);
    }
    check_programs(o)?;
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;

    let machine = Machine::describe();
    let load_before = cpu::loadavg();
    let started = Instant::now();
    eprintln!("generating {} flows ...", o.traffic.flows);
    let traffic = Arc::new(Traffic::generate(&o.traffic));

    lab::delete_on_signal()?;
    let lab = Lab::new("run").context("building the namespaces")?;
    let rig = Rig::new(&lab, traffic.clone(), o)?;
    eprintln!(
        "lab: {} ─ {}|{} ─ {}; rstwall's XDP {} on A and B; AF_XDP copy mode",
        lab.gen_if,
        lab.port_a,
        lab.port_b,
        lab.sink_if,
        rig.xdp_mode(),
    );
    let r = measure(&rig, o)?;
    let xdp_mode = rig.xdp_mode();
    drop(rig);
    drop(lab);

    let report = Report {
        machine,
        load: (load_before, cpu::loadavg()),
        minutes: started.elapsed().as_secs_f64() / 60.0,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        traffic: &traffic,
        o,
        xdp_mode,
        r,
    };
    let md = report.markdown();
    let json = serde_json::to_string_pretty(&report.json())?;
    let svg = report.chart();
    for (name, text) in [
        ("report.md", &md),
        ("results.json", &json),
        ("chart.svg", &svg),
    ] {
        let path = o.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{md}");
    eprintln!(
        "wrote {0}/report.md, {0}/results.json and {0}/chart.svg",
        o.out.display()
    );
    Ok(())
}

/// The rounds: each takes every phase, in order, of every contender that
/// has it, the contenders' order rotated by one each round.
fn measure(rig: &Rig, o: &Options) -> Result<Results> {
    let mut r = Results::default();
    let n = o.contenders.len();
    for round in 0..o.rounds {
        let order: Vec<Contender> = (0..n).map(|i| o.contenders[(i + round) % n]).collect();
        for &phase in &o.phases {
            for &c in order.iter().filter(|c| c.measures(phase)) {
                let again = match phase {
                    Phase::Throughput => {
                        let (t, again) =
                            rig.steady(|| rig.throughput(c, round), |t| t.outside, Tput::line)?;
                        r.tput.push(t);
                        again
                    }
                    Phase::Accuracy => {
                        let (a, again) =
                            rig.steady(|| rig.accuracy(c, round), |a| a.other, Accuracy::line)?;
                        r.acc.push(a);
                        again
                    }
                    Phase::Latency => {
                        let (l, again) =
                            rig.steady(|| rig.latency(c, round), |l| l.other, Lat::line)?;
                        r.lat.push(l);
                        again
                    }
                    Phase::Goodput => {
                        let (g, again) =
                            rig.steady(|| rig.goodput(c, round), |g| g.other, Goodput::line)?;
                        r.good.push(g);
                        again
                    }
                };
                r.repeats += again;
            }
        }
    }
    Ok(r)
}

/// Whether `program` is a file in a directory of `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// The programs the contenders start, before anything is built: a missing
/// one is named with its package.
fn check_programs(o: &Options) -> Result<()> {
    if o.contenders.contains(&Contender::Nftables) && !on_path("nft") {
        bail!(
            "the nftables contender needs nft (Debian package nftables: scripts/setup \
             installs it), or leave it out with --contenders"
        );
    }
    if o.contenders.contains(&Contender::Export) && !on_path(export::NATS_SERVER) {
        bail!(export::MISSING);
    }
    Ok(())
}
