//! The flat-out generator: [`rstwall_bpf::bench::LiveFrames`], an XDP
//! program that `BPF_PROG_TEST_RUN` runs in live-frames mode
//! (`BPF_F_TEST_XDP_LIVE_FRAMES`, the technique of xdp-trafficgen),
//! redirecting every frame of a table out of an interface (the generator's
//! veth in the lab; any interface for `rstwall-bench gen`).
//!
//! On veth, frames enter the peer (the appliance's port A) as XDP frames
//! (`ndo_xdp_xmit`), the way a native driver hands them to XDP (the peer
//! must run NAPI: an XDP program, or GRO on): no socket buffer is built on
//! the generator's side, nor converted back on A's. That makes the
//! generator several times cheaper per frame than an AF_XDP TX socket in
//! copy mode, so that the forwarder, not the generator, is what limits the
//! rate. The frames are replayed in order, as the AF_XDP generator does.

use anyhow::{Context, Result};
use rstwall_bpf::bench::LiveFrames;

use crate::traffic::Frames;

/// The bench's throughput frames are this long (60-byte IPv4 frames and
/// 62-byte SYNs padded).
pub use rstwall_bpf::bench::LIVE_MIN_FRAME as LIVE_FRAME;

/// Load the generator for `frames`, out of `ifindex` (an interface of the
/// calling thread's namespace, where it must also run). Every frame goes
/// out as long as the longest, rounded up to 8 bytes and at least
/// [`LIVE_FRAME`]: shorter ones are zero-padded (Ethernet padding).
pub fn load(frames: &Frames, ifindex: u32) -> Result<LiveFrames> {
    let table: Vec<&[u8]> = frames.iter().collect();
    LiveFrames::load(&table, ifindex).context("the live-frames generator")
}
