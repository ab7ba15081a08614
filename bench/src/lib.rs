//! rstwall's benchmarks, as a library; `rstwall-bench` (src/bin/) parses a
//! command line into the options of one of them and calls it.
//!
//! What the benchmarks send:
//!
//! * [`frame`] — TCP frames written into caller buffers, checksums
//!   included, marked for the sink;
//! * [`traffic`] — many concurrent flows as pre-built frames in ring
//!   order, each frame labelled with what it is (for RSTs: its class).
//!
//! The engine alone, on one core:
//!
//! * [`engine`] — the measured loops (parse-only baseline and engine),
//!   shared with `benches/engine.rs`, in timed rounds with a report;
//! * [`alloc`] — a counting allocator, to prove a path allocates nothing.
//!
//! The live network benchmarks, on namespaces and veths:
//!
//! * [`lab`] — the three namespaces, two veth pairs and the real TCP
//!   connection's hosts;
//! * [`gen`] — the traffic generator: frames crafted to a [`gen::Spec`] or
//!   the traffic mixes, sent over AF_XDP (paced, flat out or stamped for
//!   latency) or through the kernel's XDP live-frames runner;
//! * [`sink`] — what receives at the far end: a tc counter by kind of
//!   frame, and an AF_XDP socket that turns stamps into latencies;
//! * [`bare`] — the bare AF_XDP forwarding loop, the ceiling;
//! * [`kernel`] — the kernel contender, a Linux bridge with nftables;
//! * [`suite`] — `rstwall-bench run`: every contender, every measurement,
//!   rounds, and the report, JSON and chart;
//! * [`soak`] — `rstwall-bench soak`: enforce under legitimate traffic and
//!   a blind-reset flood for minutes, sampled every second, invariants;
//! * [`cpu`] — CPU accounting, the clock, the machine's description.
//! * [`host`] — `rstwall-bench host`: host mode's cost on kernel TCP over
//!   lo and a veth, without and with it, and its ring loss under a SYN
//!   flood.
//!
//! * [`xsk`] — the bench's own AF_XDP sockets, opened through
//!   `rstwall_afxdp::socket`;
//! * [`stats`] — medians, ranges, shares.
//!
//! Dependencies point one way: `suite` uses the others; `soak` uses
//! `suite`'s rig; `sink` uses
//! `gen`'s latency stamps; `gen`, `sink`, `bare` and `kernel` use `lab`,
//! `cpu` and `xsk`; `gen` and `engine` use `traffic`, which uses `frame`.
//! No module imports its parent.

pub mod alloc;
pub mod bare;
pub mod cpu;
pub mod engine;
pub mod frame;
pub mod gen;
pub mod host;
pub mod kernel;
pub mod lab;
pub mod sink;
pub mod soak;
pub mod stats;
pub mod suite;
pub mod traffic;
pub mod xsk;

mod error;

pub use error::BadArg;
