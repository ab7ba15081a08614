//! rstwall's network lab library: real kernel TCP stacks in network
//! namespaces, for the lab (`rstwall lab`), the benchmarks and the tests.
//!
//! * [`Namespaces`] creates named namespaces and removes them on drop, on a
//!   panic and — with [`remove_on_signal`] — on SIGINT, SIGTERM and SIGHUP;
//!   [`Netns`] runs code, threads and commands inside one and builds its
//!   network (veths, bridges, addresses, routes, neighbours, sysctls);
//! * [`ethtool`] turns veth offloads on and off; [`LinkCounters`] reads a
//!   device's packet and drop counters;
//! * [`RawSender`] and [`FrameSender`] send hand-built packets
//!   ([`packet::Segment`]) and frames; [`Sniffer`] and [`Recorder`]
//!   receive frames and hand out the engine's own parsed
//!   [`rstwall_engine::wire::Segment`]s;
//! * [`sock`] creates, drives and inspects kernel TCP sockets (state,
//!   pending error, queued bytes, linger-0 aborts) and names threads;
//! * [`rng`] is the one seeded generator of the lab and the tests.
//!
//! Only addresses of the benchmarking networks (198.18.0.0/15,
//! 2001:2::/48) and loopback are configured, and nothing is attached to an
//! interface outside the namespaces a guard made.
//!
//! Everything here needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_NET_RAW):
//! [`require_root`] makes a test fail, not skip, without it.

pub mod ethtool;
pub mod link;
pub mod net;
pub mod netns;
pub mod packet;
pub mod raw;
pub mod rng;
pub mod signals;
pub mod sniff;
pub mod sock;

pub use link::LinkCounters;
pub use net::{is_lab_addr, Mac};
pub use netns::{Namespaces, Netns, Veth};
pub use raw::{FrameSender, RawSender};
pub use rng::Rng;
pub use signals::{catch_stop_signals, on_stop_signal, remove_on_signal, signal_process};
pub use sniff::{Frame, Listen, Recorder, Sniffer};
pub use sock::TcpState;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Panic unless this process runs as root: what needs namespaces fails
/// loudly, never skips. `what` says what needs it.
#[track_caller]
pub fn require_root(what: &str) {
    assert!(
        is_root(),
        "{what}: this needs root (network namespaces, raw sockets, XDP, AF_XDP); run it as root"
    );
}
