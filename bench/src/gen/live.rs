//! The flat-out generator: an XDP program run by `BPF_PROG_TEST_RUN` in
//! live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, the technique of
//! xdp-trafficgen), redirecting every frame out of an interface (the
//! generator's veth in the lab; any interface for `rstwall-bench gen`).
//!
//! On veth, frames enter the peer (the appliance's port A) as XDP frames
//! (`ndo_xdp_xmit`), the way a native driver hands them to XDP (the peer
//! must run NAPI: an XDP program, or GRO on): no socket buffer is built on the
//! generator's side, nor converted back on A's. That makes the generator
//! several times cheaper per frame than an AF_XDP TX socket in copy mode,
//! so that the forwarder, not the generator, is what limits the rate.
//!
//! The program (three dozen instructions, written out below) keeps a frame
//! index and a count of frames sent in a per-CPU array, copies frame
//! `index` of a second array (the frames, each zero-padded to the longest,
//! at least 64 bytes) over the packet, and returns `bpf_redirect(ifindex)`.
//! The frames are replayed in order, as the AF_XDP generator does.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::libbpf_sys as sys;
use rstwall_bench::traffic::Frames;

use super::bpfasm::*;

/// Every frame of the bench's throughput traffic is this long (60-byte
/// IPv4 frames and 62-byte SYNs padded).
pub const LIVE_FRAME: usize = 64;

/// The generator program for `frames` frames out of interface `ifindex`.
fn program(
    counter_fd: i32,
    frames_fd: i32,
    frames: u32,
    frame_len: usize,
    ifindex: u32,
) -> Vec<Insn> {
    // r6 = ctx; key 0 at fp-4; r0 = &counter
    let mut p = vec![
        insn(MOV64_X, 6, 1, 0, 0),
        insn(ST_W, 10, 0, -4, 0),
        insn(MOV64_X, 2, 10, 0, 0),
        insn(ADD64_K, 2, 0, 0, -4),
    ];
    p.extend(ld_map(1, counter_fd));
    p.push(insn(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM));
    let skip_1 = p.len();
    p.push(insn(JEQ_K, 0, 0, 0, 0)); // if !r0 goto out (patched)
                                     // counter->sent += 1
    p.push(insn(LDX_DW, 8, 0, 8, 0));
    p.push(insn(ADD64_K, 8, 0, 0, 1));
    p.push(insn(STX_DW, 0, 8, 8, 0));
    // r7 = counter->next; r8 = r7 + 1, wrapped to 0 at `frames`;
    // counter->next = r8
    p.push(insn(LDX_DW, 7, 0, 0, 0));
    p.push(insn(MOV64_X, 8, 7, 0, 0));
    p.push(insn(ADD64_K, 8, 0, 0, 1));
    p.push(insn(JLT_K, 8, 0, 1, frames as i32));
    p.push(insn(MOV64_K, 8, 0, 0, 0));
    p.push(insn(STX_DW, 0, 8, 0, 0));
    // key r7 at fp-8; r0 = &frames[r7]
    p.push(insn(STX_W, 10, 7, -8, 0));
    p.push(insn(MOV64_X, 2, 10, 0, 0));
    p.push(insn(ADD64_K, 2, 0, 0, -8));
    p.extend(ld_map(1, frames_fd));
    p.push(insn(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM));
    let skip_2 = p.len();
    p.push(insn(JEQ_K, 0, 0, 0, 0)); // if !r0 goto out (patched)
                                     // r2 = data, r3 = data_end; need 64 bytes
    p.push(insn(LDX_W, 2, 6, 0, 0));
    p.push(insn(LDX_W, 3, 6, 4, 0));
    p.push(insn(MOV64_X, 4, 2, 0, 0));
    p.push(insn(ADD64_K, 4, 0, 0, frame_len as i32));
    let skip_3 = p.len();
    p.push(insn(JGT_X, 4, 3, 0, 0)); // if r4 > r3 goto out (patched)
    for k in 0..(frame_len / 8) as i16 {
        p.push(insn(LDX_DW, 5, 0, 8 * k, 0));
        p.push(insn(STX_DW, 2, 5, 8 * k, 0));
    }
    // out: return bpf_redirect(ifindex, 0)
    let out = p.len();
    p.push(insn(MOV64_K, 1, 0, 0, ifindex as i32));
    p.push(insn(MOV64_K, 2, 0, 0, 0));
    p.push(insn(CALL, 0, 0, 0, FN_REDIRECT));
    p.push(insn(EXIT, 0, 0, 0, 0));
    for at in [skip_1, skip_2, skip_3] {
        p[at].off = (out - at - 1) as i16;
    }
    p
}

/// The loaded program and its maps.
pub struct LiveGen {
    prog: OwnedFd,
    counter: OwnedFd,
    _frames: OwnedFd,
    /// What the kernel initialises each frame with (the program
    /// overwrites all of it): its length is every frame's.
    template: Vec<u8>,
}

impl LiveGen {
    /// Load the program for `frames` out of `ifindex` (an interface of the
    /// calling thread's namespace, where it must also run). Every frame
    /// goes out as long as the longest, rounded up to 8 bytes and at least
    /// [`LIVE_FRAME`]: shorter ones are zero-padded (Ethernet padding).
    pub fn new(frames: &Frames, ifindex: u32) -> Result<LiveGen> {
        let n = u32::try_from(frames.len()).context("too many frames")?;
        if n == 0 {
            bail!("no frames");
        }
        let frame_len = frames.max_len().next_multiple_of(8).max(LIVE_FRAME);
        // Per CPU: the next frame's index, and the frames sent.
        let counter = map(sys::BPF_MAP_TYPE_PERCPU_ARRAY, "gen_counter", 16, 1)?;
        let table = map(sys::BPF_MAP_TYPE_ARRAY, "gen_frames", frame_len as u32, n)?;
        let mut v = vec![0u8; frame_len];
        for i in 0..n {
            let f = frames.get(i as usize);
            v.fill(0);
            v[..f.len()].copy_from_slice(f);
            // SAFETY: key and value point to buffers of the map's sizes.
            let rc = unsafe {
                sys::bpf_map_update_elem(
                    table.as_raw_fd(),
                    (&i as *const u32).cast(),
                    v.as_ptr().cast(),
                    0,
                )
            };
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(-rc)).context("filling the frame map");
            }
        }
        let insns = program(
            counter.as_raw_fd(),
            table.as_raw_fd(),
            n,
            frame_len,
            ifindex,
        );
        let prog = load(sys::BPF_PROG_TYPE_XDP, "bench_gen", &insns)?;
        let mut template = vec![0u8; frame_len];
        let f = frames.get(0);
        template[..f.len()].copy_from_slice(f);
        Ok(LiveGen {
            prog,
            counter,
            _frames: table,
            template,
        })
    }

    /// Length of every frame sent.
    pub fn frame_len(&self) -> usize {
        self.template.len()
    }

    /// Frames the program has sent so far (read from its counter map;
    /// while a run is under way too).
    pub fn sent(&self) -> u64 {
        percpu_sum::<2>(&self.counter).map_or(0, |v| v[1])
    }

    /// Send `repeat` frames (synchronously, on the calling thread's CPU).
    pub fn send(&self, repeat: u32) -> Result<()> {
        let mut opts = sys::bpf_test_run_opts {
            sz: std::mem::size_of::<sys::bpf_test_run_opts>() as sys::size_t,
            data_in: self.template.as_ptr().cast(),
            data_size_in: self.template.len() as u32,
            repeat: repeat as i32,
            flags: sys::BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: 64,
            ..Default::default()
        };
        // SAFETY: `opts` and the template it points to outlive the call.
        let rc = unsafe { sys::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(-rc))
                .context("BPF_PROG_TEST_RUN (live frames)");
        }
        Ok(())
    }
}
