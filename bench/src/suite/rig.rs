//! [`Rig`]: the lab with its instruments — rstwall's XDP programs on the
//! appliance's ports, the sink's counter, the generator — that every
//! measurement drives; and the rule for a busy machine: a measurement
//! during which other processes used too much CPU is taken again once the
//! machine is quiet.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rstwall_afxdp::{sys, BindMode};
use rstwall_bpf::bench::LiveFrames;
use rstwall_bpf::{PortProgram, PortRole, XdpMode};
use rstwall_netlab::Netns;

use super::export::Broker;
use super::options::{Contender, Options};
use crate::cpu;
use crate::gen::{generator, live, GenConfig, GenShared, Rate};
use crate::lab::{InNs, Lab};
use crate::sink::SinkCounter;
use crate::traffic::{Frames, Traffic};

/// rstwall's program attached to a port of `ns` (and detached from there).
pub fn port_program(ns: &Arc<Netns>, ifname: &str, role: PortRole) -> Result<InNs<PortProgram>> {
    InNs::make(ns, || {
        Ok(PortProgram::attach(ifname, role, XdpMode::Auto, false)?)
    })
}

/// rstwall's programs on the appliance's ports, each the other's peer.
pub struct Programs {
    a: InNs<PortProgram>,
    b: InNs<PortProgram>,
}

impl Programs {
    pub fn attach(lab: &Lab) -> Result<Programs> {
        let (ia, ib) = lab.app.run(|| -> Result<(u32, u32)> {
            Ok((sys::ifindex(&lab.port_a)?, sys::ifindex(&lab.port_b)?))
        })??;
        let a = port_program(&lab.app, &lab.port_a, PortRole::Inline { peer_ifindex: ib })?;
        // B shares A's RST guard map: one entry per flow for both directions.
        let b = InNs::make(&lab.app, || {
            Ok(PortProgram::attach_sharing_guard(
                &lab.port_b,
                PortRole::Inline { peer_ifindex: ia },
                XdpMode::Auto,
                false,
                Some(a.guard()),
            )?)
        })?;
        Ok(Programs { a, b })
    }

    pub fn a(&self) -> &PortProgram {
        &self.a
    }

    pub fn b(&self) -> &PortProgram {
        &self.b
    }
}

pub struct Rig<'a> {
    pub lab: &'a Lab,
    pub traffic: Arc<Traffic>,
    pub o: &'a Options,
    /// rstwall's programs on A and B, while an AF_XDP contender or the
    /// kernel redirect needs them (the bridge takes them off).
    programs: RefCell<Option<Rc<Programs>>>,
    /// The live-frames generator, loaded at the first throughput
    /// measurement and kept.
    live: OnceLock<Arc<LiveFrames>>,
    pub counter: SinkCounter,
    /// The XDP mode rstwall's programs were attached in.
    xdp_mode: RefCell<String>,
    /// The export contender's JetStream, when the run has it.
    pub broker: Option<Broker>,
}

impl<'a> Rig<'a> {
    pub fn new(lab: &'a Lab, traffic: Arc<Traffic>, o: &'a Options) -> Result<Rig<'a>> {
        let counter = SinkCounter::attach(&lab.sink, &lab.sink_if)?;
        let broker = if o.contenders.contains(&Contender::Export) {
            Some(Broker::start()?)
        } else {
            None
        };
        let rig = Rig {
            lab,
            programs: RefCell::new(None),
            traffic,
            o,
            live: OnceLock::new(),
            counter,
            xdp_mode: RefCell::new(String::new()),
            broker,
        };
        rig.programs().context("attaching rstwall's XDP programs")?;
        Ok(rig)
    }

    /// The XDP mode rstwall's programs were last attached in.
    pub fn xdp_mode(&self) -> String {
        self.xdp_mode.borrow().clone()
    }

    /// The kernel threads that run the bench's own work: ksoftirqd (the
    /// softirqs it defers) and the cpumap threads of the kernel contender.
    pub fn kthreads(&self) -> Vec<i32> {
        let mut k = cpu::find_pids("ksoftirqd/");
        k.extend(cpu::find_pids("cpumap/"));
        k
    }

    /// rstwall's programs, attached now if they are not.
    pub fn programs(&self) -> Result<Rc<Programs>> {
        if let Some(p) = self.programs.borrow().as_ref() {
            return Ok(p.clone());
        }
        let p = Rc::new(Programs::attach(self.lab)?);
        *self.xdp_mode.borrow_mut() = p.a().attached_mode().to_string();
        *self.programs.borrow_mut() = Some(p.clone());
        Ok(p)
    }

    /// Take rstwall's programs off the ports (for a contender that puts
    /// its own there).
    pub fn detach_programs(&self) {
        self.programs.borrow_mut().take();
    }

    /// Wait (at most 15 minutes) until other processes have used less than
    /// half of --max-other for --quiet-secs in a row: long enough, with
    /// luck, that someone else's benchmark is over, not between two runs.
    pub fn wait_quiet(&self) {
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut calm = 0;
        while calm < self.o.quiet_secs && Instant::now() < deadline {
            let k = self.kthreads();
            let load = cpu::OtherLoad::start(&k);
            thread::sleep(Duration::from_secs(1));
            if load.pct(&k) < self.o.max_other / 2.0 {
                calm += 1;
            } else {
                calm = 0;
            }
        }
    }

    /// Take `measure` again (after a quiet wait) while other processes
    /// used more than --max-other during it, at most --max-repeats times;
    /// the measurement and how often it was taken again. A --max-other of
    /// 100 or more never takes one again (other processes can use more
    /// than one CPU: the figure goes up to 100 per CPU).
    pub fn steady<T>(
        &self,
        mut measure: impl FnMut() -> Result<T>,
        other: impl Fn(&T) -> f64,
        line: impl Fn(&T) -> String,
    ) -> Result<(T, usize)> {
        let mut tries = 0;
        loop {
            let m = measure()?;
            eprintln!("{}", line(&m));
            let o = other(&m);
            if o <= self.o.max_other || self.o.max_other >= 100.0 || tries == self.o.max_repeats {
                return Ok((m, tries));
            }
            tries += 1;
            eprintln!("  other processes used {o:.0}% of a CPU: again, once quiet");
            self.wait_quiet();
        }
    }

    /// Start the generator from the generator's namespace; returns once the
    /// first frames (if any) are out.
    pub fn start_generator(
        &self,
        first: Option<(Arc<Frames>, u64)>,
        frames: Arc<Frames>,
        rate: Rate,
        limit: Option<u64>,
    ) -> Result<Generator> {
        let shared = Arc::new(GenShared::default());
        let cfg = GenConfig {
            ns: Some(self.lab.gen.clone()),
            ifname: self.lab.gen_if.clone(),
            queue: 0,
            bind: BindMode::Copy,
            cpu: Some(self.o.gen_cpu),
            first,
            frames,
            rate,
            limit,
        };
        let handle = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("bench-gen".into())
                .spawn(move || generator(cfg, shared))?
        };
        let gen = Generator {
            shared,
            handle: Some(handle),
        };
        wait_for_secs(30.0, || {
            gen.shared.steady.load(Ordering::Relaxed).then_some(())
        })
        .context("generator: handshakes did not finish")?;
        gen.shared.take_error()?;
        Ok(gen)
    }

    /// The traffic's handshakes first, then its steady pass.
    pub fn start_traffic(&self, rate: Rate, limit: Option<u64>) -> Result<Generator> {
        let t = &self.traffic;
        self.start_generator(
            Some((t.handshakes.clone(), self.o.handshake_pps)),
            t.steady.clone(),
            rate,
            limit,
        )
    }

    /// The live-frames generator for the steady pass, out of the
    /// generator's veth.
    pub fn live(&self) -> Result<Arc<LiveFrames>> {
        if let Some(l) = self.live.get() {
            return Ok(l.clone());
        }
        let lab = self.lab;
        let ifindex = lab.gen.run(|| sys::ifindex(&lab.gen_if))??;
        let l = Arc::new(
            lab.gen
                .run(|| live::load(&self.traffic.steady, ifindex))??,
        );
        Ok(self.live.get_or_init(|| l).clone())
    }
}

/// The running generator thread; stopped and joined when dropped.
pub struct Generator {
    pub shared: Arc<GenShared>,
    handle: Option<JoinHandle<()>>,
}

impl Generator {
    /// Stop it; its error, if it had one.
    pub fn finish(mut self) -> Result<()> {
        self.join();
        self.shared.take_error()
    }

    fn join(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.join();
    }
}

/// `f()` until it has a value, for up to 2 s.
pub fn wait_for<T>(f: impl FnMut() -> Option<T>) -> Option<T> {
    wait_for_secs(2.0, f)
}

/// `f()` until it has a value, for up to `secs`.
pub fn wait_for_secs<T>(secs: f64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(1));
    }
}
