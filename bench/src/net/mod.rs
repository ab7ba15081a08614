//! The live network benchmarks: a lab of network namespaces and veths, the
//! traffic generators that drive it (AF_XDP sockets and the kernel's XDP
//! live-frames test runner), the forwarders under test, and CPU accounting.

pub mod cpu;
pub mod forward;
pub mod lab;
pub mod live;
pub mod xsk;
