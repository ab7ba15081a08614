//! [`Plan`]: what `rstwall-bench gen` was asked to send, checked.

use std::time::Duration;

use rstwall_afxdp::BindMode;

use super::spec::Spec;
use crate::traffic::TrafficConfig;

/// What the table holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    Crafted {
        spec: Box<Spec>,
        table: usize,
    },
    /// The bench's traffic: handshakes once, then the steady pass.
    Mix(TrafficConfig),
}

/// How frames leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// An AF_XDP socket's TX ring.
    Xsk,
    /// The kernel's XDP live-frames test runner (BPF_PROG_RUN with
    /// BPF_F_TEST_XDP_LIVE_FRAMES) redirecting out of the interface: the
    /// fastest way out, as fast as it goes only.
    Live,
}

/// What `rstwall-bench gen` does: checked, all but what needs the machine
/// (the interface, the namespace, the CPU).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub dev: String,
    pub netns: Option<String>,
    pub what: What,
    /// Frames per second; `None`: as fast as possible.
    pub rate: Option<u64>,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    pub via: Via,
    /// How the AF_XDP socket binds (`Via::Xsk`, and the mixes' handshakes).
    pub bind: BindMode,
    pub queue: u32,
    pub cpu: Option<usize>,
    pub seed: u64,
}
