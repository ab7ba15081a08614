//! The flat-out generator: an XDP program run by `BPF_PROG_TEST_RUN` in
//! live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, the technique of
//! xdp-trafficgen), redirecting every frame out of the generator's veth.
//!
//! Frames enter the appliance's port A as XDP frames (`ndo_xdp_xmit`), the
//! way a native driver hands them to XDP: no socket buffer is built on the
//! generator's side, nor converted back on A's. That makes the generator
//! several times cheaper per frame than an AF_XDP TX socket in copy mode,
//! so that the forwarder, not the generator, is what limits the rate.
//!
//! The program (three dozen instructions, written out below) keeps a frame
//! index and a count of frames sent in a per-CPU array, copies frame `index` of a
//! second array (64-byte values: the steady pass, each frame zero-padded
//! to 64 bytes) over the packet, and returns `bpf_redirect(ifindex)`. The
//! pass is replayed in order, as the AF_XDP generator does.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::libbpf_sys as sys;
use rstwall_bench::traffic::Frames;

/// Every frame is this long (60-byte IPv4 frames and 62-byte SYNs padded).
pub const LIVE_FRAME: usize = 64;

/// One BPF instruction, as the kernel lays it out (`struct bpf_insn`:
/// destination register in the low nibble of the second byte).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const _: () = assert!(std::mem::size_of::<Insn>() == std::mem::size_of::<sys::bpf_insn>());

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Opcodes (BPF class | op | source).
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const LD_IMM64: u8 = 0x18;
const ST_W: u8 = 0x62;
const STX_W: u8 = 0x63;
const STX_DW: u8 = 0x7b;
const LDX_W: u8 = 0x61;
const LDX_DW: u8 = 0x79;
const JEQ_K: u8 = 0x15;
const JLT_K: u8 = 0xa5;
const JGT_X: u8 = 0x2d;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const PSEUDO_MAP_FD: u8 = 1;
const FN_MAP_LOOKUP_ELEM: i32 = 1;
const FN_REDIRECT: i32 = 23;

/// `dst = map` (a two-slot load of the map's fd).
fn ld_map(dst: u8, fd: i32) -> [Insn; 2] {
    [
        insn(LD_IMM64, dst, PSEUDO_MAP_FD, 0, fd),
        insn(0, 0, 0, 0, 0),
    ]
}

/// The generator program for `frames` frames out of interface `ifindex`.
fn program(counter_fd: i32, frames_fd: i32, frames: u32, ifindex: u32) -> Vec<Insn> {
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
    p.push(insn(ADD64_K, 4, 0, 0, LIVE_FRAME as i32));
    let skip_3 = p.len();
    p.push(insn(JGT_X, 4, 3, 0, 0)); // if r4 > r3 goto out (patched)
    for k in 0..(LIVE_FRAME / 8) as i16 {
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

fn map(kind: sys::bpf_map_type, name: &str, value_size: u32, entries: u32) -> Result<OwnedFd> {
    let name = CString::new(name).expect("no NUL");
    // SAFETY: a valid name; no options.
    let fd = unsafe {
        sys::bpf_map_create(
            kind,
            name.as_ptr(),
            4,
            value_size,
            entries,
            std::ptr::null(),
        )
    };
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(-fd)).context("bpf_map_create");
    }
    // SAFETY: a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The loaded program and its maps.
pub struct LiveGen {
    prog: OwnedFd,
    counter: OwnedFd,
    _frames: OwnedFd,
    template: [u8; LIVE_FRAME],
}

impl LiveGen {
    /// Load the program for `frames` out of `ifindex` (an interface of the
    /// calling thread's namespace, where it must also run).
    pub fn new(frames: &Frames, ifindex: u32) -> Result<LiveGen> {
        let n = u32::try_from(frames.len()).context("too many frames")?;
        if n == 0 {
            bail!("no frames");
        }
        // Per CPU: the next frame's index, and the frames sent.
        let counter = map(sys::BPF_MAP_TYPE_PERCPU_ARRAY, "gen_counter", 16, 1)?;
        let table = map(sys::BPF_MAP_TYPE_ARRAY, "gen_frames", LIVE_FRAME as u32, n)?;
        for i in 0..n {
            let f = frames.get(i as usize);
            if f.len() > LIVE_FRAME {
                bail!("frame {i} is {} bytes, over {LIVE_FRAME}", f.len());
            }
            let mut v = [0u8; LIVE_FRAME];
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
        let insns = program(counter.as_raw_fd(), table.as_raw_fd(), n, ifindex);
        let mut log = vec![0u8; 1 << 16];
        let mut opts = sys::bpf_prog_load_opts {
            sz: std::mem::size_of::<sys::bpf_prog_load_opts>() as sys::size_t,
            log_level: 1,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr().cast(),
            ..Default::default()
        };
        let (name, license) = (
            CString::new("bench_gen").unwrap(),
            CString::new("GPL").unwrap(),
        );
        // SAFETY: `insns` is a valid instruction array of the length given;
        // `opts` and the log buffer outlive the call.
        let fd = unsafe {
            sys::bpf_prog_load(
                sys::BPF_PROG_TYPE_XDP,
                name.as_ptr(),
                license.as_ptr(),
                insns.as_ptr().cast(),
                insns.len() as sys::size_t,
                &mut opts,
            )
        };
        if fd < 0 {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            bail!(
                "loading the generator program: {}\n{}",
                io::Error::from_raw_os_error(-fd),
                String::from_utf8_lossy(&log[..end])
            );
        }
        // What the kernel initialises each frame with; the program
        // overwrites all of it.
        let mut template = [0u8; LIVE_FRAME];
        let f = frames.get(0);
        template[..f.len()].copy_from_slice(f);
        Ok(LiveGen {
            // SAFETY: a new fd we own.
            prog: unsafe { OwnedFd::from_raw_fd(fd) },
            counter,
            _frames: table,
            template,
        })
    }

    /// Frames the program has sent so far (read from its counter map;
    /// while a run is under way too).
    pub fn sent(&self) -> u64 {
        // SAFETY: no preconditions.
        let cpus = unsafe { sys::libbpf_num_possible_cpus() }.max(1) as usize;
        let mut values = vec![[0u64; 2]; cpus];
        let key = 0u32;
        // SAFETY: a per-CPU map: one 16-byte value per possible CPU.
        let rc = unsafe {
            sys::bpf_map_lookup_elem(
                self.counter.as_raw_fd(),
                (&key as *const u32).cast(),
                values.as_mut_ptr().cast(),
            )
        };
        if rc != 0 {
            return 0;
        }
        values.iter().map(|v| v[1]).sum()
    }

    /// Send `repeat` frames (synchronously, on the calling thread's CPU).
    pub fn send(&self, repeat: u32) -> Result<()> {
        let mut opts = sys::bpf_test_run_opts {
            sz: std::mem::size_of::<sys::bpf_test_run_opts>() as sys::size_t,
            data_in: self.template.as_ptr().cast(),
            data_size_in: LIVE_FRAME as u32,
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
