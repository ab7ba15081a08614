//! rstwall's XDP program and its loader.
//!
//! One program instance runs on each port (`src/bpf/rstwall.bpf.c`). It
//! classifies every frame exactly as the userspace parser does
//! (`rstwall_engine::wire` and [`FlagClass`](rstwall_engine::FlagClass)),
//! drops malformed frames and traffic from denied or blocked sources, hands
//! TCP to the AF_XDP socket of the frame's RX queue, and fails open when no
//! socket is there: an inline port forwards to its peer through a DEVMAP, in
//! the kernel, whether or not the daemon is alive.
//!
//! * [`PortProgram`] — load, attach to a port (replacing a stale rstwall
//!   program, never stacking), steer queues to sockets, read counters, edit
//!   the deny and block lists, detach.
//! * [`TestProgram`] — the same program, unattached, one frame at a time
//!   through `BPF_PROG_TEST_RUN`.
//! * [`GuardMaps`] — the RST guard: spoofed RSTs dropped in XDP against
//!   per-flow acceptance state the engine exports ([`shared::guard`]).
//! * [`KernelDrops`] — kernel map sync: the deny and block maps of every
//!   port kept in step with the policy.
//! * [`host`] — host mode's kernel side: tc programs that observe every
//!   interface without altering a packet, and tracing programs for the
//!   kernel's verdict on each RST and the owner of each socket.
//! * [`shared`] — the Rust mirror of `src/bpf/rstwall_shared.h`, the one
//!   definition of map names, layouts and counter indices.
//! * [`bench`](mod@bench) — the benchmark's own programs (`src/bpf/bench_*.bpf.c`):
//!   the sink's counter, the live-frames generator, receive steering.
//!
//! Everything here needs CAP_BPF and CAP_NET_ADMIN (root will do).

pub mod bench;
mod counters;
mod error;
mod guard;
pub mod host;
mod load;
mod maps;
mod netlink;
mod port;
pub mod shared;
mod sync;
mod test_run;

/// The skeletons libbpf-cargo generated from the compiled objects
/// (build.rs): rstwall's program here, the bench's in submodules.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unused,
    non_camel_case_types
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/rstwall.skel.rs"));

    /// Host mode's tc programs.
    pub mod host_tc {
        include!(concat!(env!("OUT_DIR"), "/rstwall_host_tc.skel.rs"));
    }

    /// Host mode's tracing programs.
    pub mod host_trace {
        include!(concat!(env!("OUT_DIR"), "/rstwall_host_trace.skel.rs"));
    }

    /// The bench's programs.
    pub mod bench_sink {
        include!(concat!(env!("OUT_DIR"), "/bench_sink.skel.rs"));
    }
    pub mod bench_gen {
        include!(concat!(env!("OUT_DIR"), "/bench_gen.skel.rs"));
    }
    pub mod bench_steer {
        include!(concat!(env!("OUT_DIR"), "/bench_steer.skel.rs"));
    }
}

pub use counters::{merge_guard_drops, ByCounter, FrameCounts, XdpCounters};
pub use error::{BpfError, Errno};
pub use guard::GuardMaps;
pub use port::{detach_stale, AttachedMode, PortProgram, PortRole, UnknownXdpMode, XdpMode};
pub use shared::Counter;
pub use sync::{kernel_deny, DenyChange, DropMaps, KernelDropStats, KernelDrops, PortMapError};
pub use test_run::{action, monotonic_now_ns, TestProgram, MIN_TEST_FRAME};

// The daemon shares ports between its workers and its control thread.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<PortProgram>();
    send_sync::<TestProgram>();
    send_sync::<BpfError>();
};
