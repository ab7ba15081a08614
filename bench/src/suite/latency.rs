//! Latency: the steady pass at a low, fixed rate from an AF_XDP socket,
//! each frame tagged; an AF_XDP socket on the sink (rstwall's program,
//! tap role) records receive − send time.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hdrhistogram::Histogram;
use rstwall_bpf::{PortProgram, PortRole};

use super::forwarder::StopReport;
use super::options::Contender;
use super::rig::port_program;
use super::rig::Rig;
use crate::cpu;
use crate::gen::{Rate, Stamps};
use crate::sink::{Sink, SinkShared};

/// One latency measurement.
pub struct Lat {
    pub contender: Contender,
    pub round: usize,
    /// Other processes' CPU during the window (per cent of one CPU).
    pub other: f64,
    pub secs: f64,
    pub sent: u64,
    pub received: u64,
    pub hist: Histogram<u64>,
    /// What the forwarder said when it stopped (rstwall: its sleeps,
    /// kicks, drops and poll mode, for reading the tail).
    pub stop: StopReport,
}

/// Percentile `q` of `h` (ns) in µs.
pub fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

impl Lat {
    /// An rstwall contender's worker during the window and its warm-up:
    /// "judged 80000, dropped 4000, sleeps 1234, kicks tx 567 fill 0,
    /// busy polls 0, poll busy, NAPI 8195"; empty for the others.
    pub fn worker(&self) -> String {
        if !self.contender.is_rstwall() {
            return String::new();
        }
        let s = &self.stop;
        let mut w = format!(
            "judged {}, dropped {}, sleeps {}, kicks tx {} fill {}, busy polls {}, poll {}, NAPI {}",
            s.judged,
            s.dropped,
            s.sleeps,
            s.tx_kicks,
            s.fill_kicks,
            s.busy_polls,
            s.poll.map_or("?", |p| p.as_str()),
            s.napi_id
        );
        if let Some(why) = &s.poll_fallback {
            w += &format!(" ({why})");
        }
        w
    }

    pub fn line(&self) -> String {
        let worker = self.worker();
        let worker = if worker.is_empty() {
            worker
        } else {
            format!("; {worker}")
        };
        format!(
            "round {} {:<23} {:.1} kpps sent, {} samples ({} received): p50 {:.1} µs, \
             p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs, other processes {:.0}%{worker}",
            self.round + 1,
            self.contender.name(),
            self.sent as f64 / self.secs / 1e3,
            self.hist.len(),
            self.received,
            us(&self.hist, 0.5),
            us(&self.hist, 0.99),
            us(&self.hist, 0.999),
            self.hist.max() as f64 / 1000.0,
            self.other,
        )
    }
}

impl Rig<'_> {
    pub fn latency(&self, c: Contender, round: usize) -> Result<Lat> {
        // The sink receives with AF_XDP here: rstwall's program in the tap
        // role, for the socket's XSKMAP (and NAPI on the sink's veth, which
        // the kernel contender's redirect needs).
        let lab = self.lab;
        let prog = port_program(&lab.sink, &lab.sink_if, PortRole::Tap)?;
        let ((secs, sent, received, other, hist), stop) =
            self.with(c, |_| self.latency_with_sink(&prog))?;
        Ok(Lat {
            contender: c,
            round,
            other,
            secs,
            sent,
            received,
            hist,
            stop,
        })
    }

    /// Open the sink's socket, register it with the sink's program (rstwall's,
    /// tap role), measure, take it away again.
    fn latency_with_sink(
        &self,
        prog: &PortProgram,
    ) -> Result<(f64, u64, u64, f64, Histogram<u64>)> {
        let shared = Arc::new(SinkShared::default());
        let stamps = Arc::new(Stamps::default());
        let (fd_tx, fd_rx) = mpsc::channel();
        let handle = {
            let (ns, ifname, cpu, shared, stamps) = (
                self.lab.sink.clone(),
                self.lab.sink_if.clone(),
                self.o.sink_cpu,
                shared.clone(),
                stamps.clone(),
            );
            thread::Builder::new()
                .name("bench-sink".into())
                .spawn(move || {
                    let sink = ns
                        .enter()
                        .context("sink: enter namespace")
                        .and_then(|()| Sink::open(&ifname));
                    match sink {
                        Ok(sink) => {
                            let _ = fd_tx.send(Ok(sink.fd()));
                            Some(sink.run(cpu, &stamps, &shared))
                        }
                        Err(e) => {
                            let _ = fd_tx.send(Err(e));
                            None
                        }
                    }
                })?
        };
        let measured = fd_rx
            .recv()
            .map_err(|_| anyhow!("sink thread died"))
            .and_then(|r| r)
            .and_then(|fd| Ok(prog.register_xsk(0, fd)?))
            .and_then(|()| self.latency_window(&shared, stamps));
        thread::sleep(Duration::from_millis(20));
        let _ = prog.unregister_xsk(0);
        shared.stop.store(true, Ordering::Relaxed);
        let hist = handle.join().map_err(|_| anyhow!("sink thread panicked"))?;
        if let Some(e) = shared
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            bail!("{e}");
        }
        let (secs, sent, received, other) = measured?;
        Ok((
            secs,
            sent,
            received,
            other,
            hist.context("sink did not run")?,
        ))
    }

    /// Stamped traffic; the window's length and frames sent and received.
    fn latency_window(
        &self,
        sink: &SinkShared,
        stamps: Arc<Stamps>,
    ) -> Result<(f64, u64, u64, f64)> {
        let gen = self.start_traffic(Rate::Stamped(self.o.latency_pps, stamps), None)?;
        thread::sleep(self.o.warmup);
        let k = self.kthreads();
        let load = cpu::OtherLoad::start(&k);
        let (t0, sent0, recv0) = (
            Instant::now(),
            gen.shared.sent.load(Ordering::Relaxed),
            sink.received.load(Ordering::Relaxed),
        );
        sink.record.store(true, Ordering::Relaxed);
        thread::sleep(self.o.latency);
        sink.record.store(false, Ordering::Relaxed);
        let secs = t0.elapsed().as_secs_f64();
        let sent = gen.shared.sent.load(Ordering::Relaxed) - sent0;
        let received = sink.received.load(Ordering::Relaxed) - recv0;
        let other = load.pct(&k);
        gen.finish()?;
        Ok((secs, sent, received, other))
    }
}
