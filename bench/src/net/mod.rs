//! The live network benchmarks: a lab of network namespaces and veths, the
//! traffic generators that drive it (AF_XDP sockets and the kernel's XDP
//! live-frames test runner), the forwarders under test, and CPU accounting.

pub mod bench;
pub mod bpfasm;
pub mod chart;
pub mod cpu;
pub mod forward;
pub mod gen;
pub mod kernel;
pub mod lab;
pub mod live;
pub mod sink;
pub mod suite;
pub mod xsk;
