//! Host mode's kernel side: observe a host's TCP without touching a packet.
//!
//! * [`TcPrograms`] — tc programs on ingress and egress of each interface
//!   (tcx links, or clsact where tcx is missing) that pass every packet
//!   on unchanged, count every one per CPU by flag class, and hand each TCP
//!   segment's headers (never its payload) to a ring buffer;
//! * [`TracePrograms`] — the kernel's own verdict on each RST (sent, with
//!   its reason; accepted; discarded, with the drop reason; challenge-ACKed)
//!   and the owners of sockets, recorded in process context, with what
//!   this kernel cannot provide in [`KernelCapabilities`];
//! * [`RingReader`] — a ring buffer read in place, a batch at a time;
//! * [`HostCounters`], [`TraceCounters`] — the kernel counters.
//!
//! The layouts are in [`crate::shared::host`], mirroring
//! `src/bpf/rstwall_shared.h`.

mod counters;
mod ring;
mod tc;
mod trace;

pub use counters::{HostCounters, TraceCounters};
pub use ring::{RecordAt, RingReader};
pub use tc::{tcx_programs, LinkKind, TcAttachment, TcConfig, TcDirection, TcMode, TcPrograms};
pub use trace::{Capability, KernelCapabilities, TracePrograms};
