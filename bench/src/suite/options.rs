//! What a run consists of: the contenders ([`Contender`]), the kinds of
//! measurement ([`Phase`]), and the checked options ([`Options`]).

use std::path::PathBuf;
use std::time::Duration;

use rstwall_afxdp::Poll;
use rstwall_engine::policy::Mode;

use crate::kernel::RstLimit;
use crate::traffic::TrafficConfig;

rstwall_engine::closed_enum! {
    /// What forwards between A and B, by the name typed on the command
    /// line ([`Contender::name`] is the report's): `kernel`, rstwall's
    /// program redirecting A → B in the kernel, no AF_XDP (a latency
    /// reference); `bare`, the bare AF_XDP rx→tx loop (the ceiling);
    /// `touch`, the bare loop also reading each frame's first cache line;
    /// `nftables`, Linux bridging with conntrack and nftables (invalid
    /// drop, RST limit); `monitor` and `enforce`, rstwall's datapath with
    /// its policy in that mode; `guard`, enforce with the in-kernel RST
    /// guard (spoofed RSTs of attacked flows dropped in XDP); `export`,
    /// monitor with every RST handed to the fleet exporter, which streams
    /// them to a local JetStream; `monitor-spin`, `enforce-spin`,
    /// `monitor-busy`, `enforce-busy`: monitor and enforce with the
    /// workers' poll mode `spin` or `busy` (the others run `wakeup`, the
    /// default).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Contender: "contender" {
        Kernel = "kernel", Bare = "bare", Touch = "touch",
        Nftables = "nftables", Monitor = "monitor", Enforce = "enforce",
        Guard = "guard", Export = "export",
        MonitorSpin = "monitor-spin", EnforceSpin = "enforce-spin",
        MonitorBusy = "monitor-busy", EnforceBusy = "enforce-busy",
    }
}

impl Contender {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Kernel => "kernel XDP redirect",
            Contender::Bare => "bare AF_XDP loop",
            Contender::Touch => "bare loop + frame read",
            Contender::Nftables => "Linux bridge + nftables",
            Contender::Monitor => "rstwall monitor",
            Contender::Enforce => "rstwall enforce",
            Contender::Guard => "rstwall enforce + RST guard",
            Contender::Export => "rstwall monitor + export",
            Contender::MonitorSpin => "rstwall monitor + spin",
            Contender::EnforceSpin => "rstwall enforce + spin",
            Contender::MonitorBusy => "rstwall monitor + busy poll",
            Contender::EnforceBusy => "rstwall enforce + busy poll",
        }
    }

    /// The policy's mode of an rstwall contender.
    pub fn policy_mode(self) -> Option<Mode> {
        match self {
            Contender::Monitor
            | Contender::Export
            | Contender::MonitorSpin
            | Contender::MonitorBusy => Some(Mode::Monitor),
            Contender::Enforce
            | Contender::Guard
            | Contender::EnforceSpin
            | Contender::EnforceBusy => Some(Mode::Enforce),
            _ => None,
        }
    }

    /// The workers' poll mode of an rstwall contender.
    pub fn poll(self) -> Poll {
        match self {
            Contender::MonitorSpin | Contender::EnforceSpin => Poll::Spin,
            Contender::MonitorBusy | Contender::EnforceBusy => Poll::Busy {
                usecs: Poll::BUSY_USECS,
                budget: Poll::BUSY_BUDGET,
            },
            _ => Poll::Wakeup,
        }
    }

    /// The name as typed on the command line.
    pub fn key(self) -> &'static str {
        self.as_str()
    }

    pub fn is_rstwall(self) -> bool {
        self.policy_mode().is_some()
    }

    /// Whether it forwards from AF_XDP sockets.
    pub fn is_afxdp(self) -> bool {
        matches!(self, Contender::Bare | Contender::Touch) || self.is_rstwall()
    }

    /// Whether it takes part in `phase` (the kernel redirect is a latency
    /// reference only).
    pub fn measures(self, phase: Phase) -> bool {
        self != Contender::Kernel || phase == Phase::Latency
    }
}

rstwall_engine::closed_enum! {
    /// One kind of measurement: `throughput`, Mpps at 64 bytes flat out and
    /// the forwarder's CPU per frame; `accuracy`, one pass at a rate every
    /// contender keeps up with, what came through by kind of frame;
    /// `latency`, one-way at a low rate; `goodput`, a kernel TCP transfer
    /// alone, then under a blind-reset flood.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Phase: "phase" {
        Throughput = "throughput", Accuracy = "accuracy",
        Latency = "latency", Goodput = "goodput",
    }
}

/// A run, checked: everything but what needs the machine (root, the CPUs
/// this process may use, nft).
#[derive(Clone, Debug)]
pub struct Options {
    /// Where report.md, results.json and chart.svg go (created).
    pub out: PathBuf,
    /// In the order of the report, each once.
    pub contenders: Vec<Contender>,
    /// In the order taken within a round, each once.
    pub phases: Vec<Phase>,
    pub rounds: usize,
    pub traffic: TrafficConfig,
    /// Throughput: measured window, and steady traffic before it (before
    /// a latency window too).
    pub round: Duration,
    pub warmup: Duration,
    /// Latency: stamped frames per second, and the window.
    pub latency_pps: u64,
    pub latency: Duration,
    /// Accuracy: frames per second of the one steady pass.
    pub accuracy_pps: u64,
    /// Goodput: each window's length, and the flood's rate.
    pub goodput: Duration,
    pub flood_pps: u64,
    /// Goodput: the rate of a second, heavier flood window after the
    /// first (0: none).
    pub flood_high_pps: u64,
    /// Goodput: a last window under the first flood made malformed, which
    /// the XDP programs drop at parse (the machine's own cost of a flood).
    pub flood_void: bool,
    /// The nftables contender's RST limit.
    pub rst_limit: RstLimit,
    /// Rate of the handshakes before the traffic.
    pub handshake_pps: u64,
    pub gen_cpu: usize,
    /// The latency sink's CPU (the generator's unless told).
    pub sink_cpu: usize,
    pub fwd_cpu: usize,
    /// Take a measurement again when other processes used more than this
    /// much CPU during it (per cent of one CPU) ...
    pub max_other: f64,
    /// ... at most this many times in a row ...
    pub max_repeats: usize,
    /// ... after this many quiet seconds.
    pub quiet_secs: u32,
    /// The busy contenders: the ports' napi_defer_hard_irqs and
    /// gro_flush_timeout (ns) while they run.
    pub busy_defer: (u32, u64),
}

impl Options {
    /// The contenders measured in `phase`, in the report's order (none if
    /// the run leaves the phase out).
    pub fn contenders_in(&self, phase: Phase) -> Vec<Contender> {
        if !self.phases.contains(&phase) {
            return Vec::new();
        }
        self.contenders
            .iter()
            .copied()
            .filter(|c| c.measures(phase))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_definition_and_the_kernel_redirect_is_latency_only() {
        rstwall_engine::names::assert_consistent::<Contender>();
        rstwall_engine::names::assert_consistent::<Phase>();
        for c in Contender::ALL {
            assert_eq!(c.key().parse::<Contender>(), Ok(c));
            assert!(c.measures(Phase::Latency));
        }
        assert!(!Contender::Kernel.measures(Phase::Throughput));
        assert!(Contender::Touch.measures(Phase::Accuracy));
        assert_eq!(Contender::EnforceBusy.policy_mode(), Some(Mode::Enforce));
        assert_eq!(Contender::MonitorSpin.poll(), Poll::Spin);
        assert!(matches!(Contender::MonitorBusy.poll(), Poll::Busy { .. }));
        assert_eq!(Contender::Guard.poll(), Poll::Wakeup);
        assert!(Contender::EnforceSpin.is_afxdp() && !Contender::Kernel.is_rstwall());
    }
}
