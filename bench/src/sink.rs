//! The sink's counter: a tc ingress program on the sink's veth that counts
//! every frame the bench marked ([`frame::marker_mac`]) by its marker
//! code, then drops it — or, with [`frame::MARK_DELIVER`] in the code,
//! hands it on to the sink's own stack (the blind-reset flood aimed at a
//! real connection). Frames without a marker (the real TCP transfer) go
//! on untouched.
//!
//! tc, not XDP: the sink's veth then runs no NAPI, so a frame a forwarder
//! transmits is received with netif_rx, in softirq within the transmit
//! itself, on the forwarder's CPU — the cheapest receive a veth allows —
//! and no GRO merges frames before they are counted.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use anyhow::{Context, Result};
use libbpf_rs::libbpf_sys as sys;
use rstwall_bench::frame::{MARKER_PREFIX, MARK_DELIVER};

use super::bpfasm::*;
use super::lab::Netns;

/// One counter per marker code.
pub const CODES: usize = 256;

/// `struct __sk_buff` offsets of `data` and `data_end` (uapi, stable).
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;

/// The counter program (30 instructions).
fn program(counts_fd: i32) -> Vec<Insn> {
    let prefix = u32::from_le_bytes([
        MARKER_PREFIX[0],
        MARKER_PREFIX[1],
        MARKER_PREFIX[2],
        MARKER_PREFIX[3],
    ]);
    assert!(prefix < 1 << 31, "compared as a sign-extended immediate");
    let mut p = vec![
        insn(MOV64_X, 6, 1, 0, 0),
        // r2 = data, r3 = data_end; need the 12 bytes of the two MACs
        insn(LDX_W, 2, 6, SKB_DATA, 0),
        insn(LDX_W, 3, 6, SKB_DATA_END, 0),
        insn(MOV64_X, 4, 2, 0, 0),
        insn(ADD64_K, 4, 0, 0, 12),
    ];
    let mut to_pass = vec![p.len()];
    p.push(insn(JGT_X, 4, 3, 0, 0));
    // source MAC bytes 0-3 and 4 against the prefix
    p.push(insn(LDX_W, 5, 2, 6, 0));
    to_pass.push(p.len());
    p.push(insn(JNE_K, 5, 0, 0, prefix as i32));
    p.push(insn(LDX_B, 5, 2, 10, 0));
    to_pass.push(p.len());
    p.push(insn(JNE_K, 5, 0, 0, i32::from(MARKER_PREFIX[4])));
    // r7 = code; r0 = &counts[0]
    p.push(insn(LDX_B, 7, 2, 11, 0));
    p.push(insn(ST_W, 10, 0, -4, 0));
    p.push(insn(MOV64_X, 2, 10, 0, 0));
    p.push(insn(ADD64_K, 2, 0, 0, -4));
    p.extend(ld_map(1, counts_fd));
    p.push(insn(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM));
    let to_verdict = p.len();
    p.push(insn(JEQ_K, 0, 0, 0, 0));
    // counts[code] += 1
    p.push(insn(MOV64_X, 1, 7, 0, 0));
    p.push(insn(LSH64_K, 1, 0, 0, 3));
    p.push(insn(ADD64_X, 0, 1, 0, 0));
    p.push(insn(LDX_DW, 1, 0, 0, 0));
    p.push(insn(ADD64_K, 1, 0, 0, 1));
    p.push(insn(STX_DW, 0, 1, 0, 0));
    // verdict: deliver or drop
    let verdict = p.len();
    to_pass.push(p.len());
    p.push(insn(JSET_K, 7, 0, 0, i32::from(MARK_DELIVER)));
    p.push(insn(MOV64_K, 0, 0, 0, TC_ACT_SHOT));
    p.push(insn(EXIT, 0, 0, 0, 0));
    let pass = p.len();
    p.push(insn(MOV64_K, 0, 0, 0, TC_ACT_OK));
    p.push(insn(EXIT, 0, 0, 0, 0));
    for at in to_pass {
        p[at].off = (pass - at - 1) as i16;
    }
    p[to_verdict].off = (verdict - to_verdict - 1) as i16;
    p
}

/// The counter, attached to a veth's tc ingress hook in its namespace;
/// the hook (clsact) is removed when dropped.
pub struct SinkCounter {
    ns: Arc<Netns>,
    ifindex: i32,
    counts: OwnedFd,
    _prog: OwnedFd,
}

fn tc_hook(ifindex: i32) -> sys::bpf_tc_hook {
    sys::bpf_tc_hook {
        sz: std::mem::size_of::<sys::bpf_tc_hook>() as sys::size_t,
        ifindex,
        attach_point: sys::BPF_TC_INGRESS,
        ..Default::default()
    }
}

impl SinkCounter {
    pub fn attach(ns: &Arc<Netns>, ifname: &str) -> Result<SinkCounter> {
        let counts = map(
            sys::BPF_MAP_TYPE_PERCPU_ARRAY,
            "sink_counts",
            (CODES * 8) as u32,
            1,
        )?;
        let prog = load(
            sys::BPF_PROG_TYPE_SCHED_CLS,
            "bench_sink",
            &program(counts.as_raw_fd()),
        )?;
        let ifindex = ns.run(|| -> Result<i32> {
            let ifindex = rstwall_afxdp::sys::ifindex(ifname)? as i32;
            let mut hook = tc_hook(ifindex);
            // SAFETY: a valid hook; EEXIST (a clsact already there) is fine.
            let rc = unsafe { sys::bpf_tc_hook_create(&mut hook) };
            if rc != 0 && rc != -libc::EEXIST {
                return Err(io::Error::from_raw_os_error(-rc)).context("tc clsact on the sink");
            }
            let mut opts = sys::bpf_tc_opts {
                sz: std::mem::size_of::<sys::bpf_tc_opts>() as sys::size_t,
                prog_fd: prog.as_raw_fd(),
                handle: 1,
                priority: 1,
                ..Default::default()
            };
            // SAFETY: valid hook and options; the program fd is open.
            let rc = unsafe { sys::bpf_tc_attach(&hook, &mut opts) };
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(-rc)).context("tc filter on the sink");
            }
            Ok(ifindex)
        })??;
        Ok(SinkCounter {
            ns: ns.clone(),
            ifindex,
            counts,
            _prog: prog,
        })
    }

    /// Frames counted so far, by marker code.
    pub fn counts(&self) -> Result<Box<[u64; CODES]>> {
        percpu_sum::<CODES>(&self.counts)
            .map(Box::new)
            .context("reading the sink's counters")
    }
}

impl Drop for SinkCounter {
    fn drop(&mut self) {
        let ifindex = self.ifindex;
        let _ = self.ns.run(|| {
            let mut hook = tc_hook(ifindex);
            // SAFETY: a valid hook.
            unsafe { sys::bpf_tc_hook_destroy(&mut hook) };
        });
    }
}
