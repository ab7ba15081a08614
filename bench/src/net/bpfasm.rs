//! Small BPF programs written out as instructions, and the maps they use:
//! the bench's own programs are a few dozen instructions each, and writing
//! them here keeps the bench free of a second BPF build.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::libbpf_sys as sys;

/// One BPF instruction, as the kernel lays it out (`struct bpf_insn`:
/// destination register in the low nibble of the second byte).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Insn {
    code: u8,
    regs: u8,
    pub off: i16,
    imm: i32,
}

const _: () = assert!(std::mem::size_of::<Insn>() == std::mem::size_of::<sys::bpf_insn>());

pub fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Opcodes (BPF class | op | source).
pub const MOV64_X: u8 = 0xbf;
pub const MOV64_K: u8 = 0xb7;
pub const ADD64_K: u8 = 0x07;
pub const ADD64_X: u8 = 0x0f;
pub const LSH64_K: u8 = 0x67;
pub const LD_IMM64: u8 = 0x18;
pub const ST_W: u8 = 0x62;
pub const STX_W: u8 = 0x63;
pub const STX_DW: u8 = 0x7b;
pub const LDX_B: u8 = 0x71;
pub const LDX_W: u8 = 0x61;
pub const LDX_DW: u8 = 0x79;
pub const JEQ_K: u8 = 0x15;
pub const JNE_K: u8 = 0x55;
pub const JSET_K: u8 = 0x45;
pub const JLT_K: u8 = 0xa5;
pub const JGT_X: u8 = 0x2d;
pub const CALL: u8 = 0x85;
pub const EXIT: u8 = 0x95;
const PSEUDO_MAP_FD: u8 = 1;
pub const FN_MAP_LOOKUP_ELEM: i32 = 1;
pub const FN_REDIRECT: i32 = 23;

/// `dst = map` (a two-slot load of the map's fd).
pub fn ld_map(dst: u8, fd: i32) -> [Insn; 2] {
    [
        insn(LD_IMM64, dst, PSEUDO_MAP_FD, 0, fd),
        insn(0, 0, 0, 0, 0),
    ]
}

/// A map with 4-byte keys.
pub fn map(kind: sys::bpf_map_type, name: &str, value_size: u32, entries: u32) -> Result<OwnedFd> {
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

/// Load `insns` as a program of type `kind`; the verifier's log in the
/// error if it refuses.
pub fn load(kind: sys::bpf_prog_type, name: &str, insns: &[Insn]) -> Result<OwnedFd> {
    let mut log = vec![0u8; 1 << 16];
    let mut opts = sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<sys::bpf_prog_load_opts>() as sys::size_t,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr().cast(),
        ..Default::default()
    };
    let (cname, license) = (CString::new(name).expect("no NUL"), c"GPL");
    // SAFETY: `insns` is a valid instruction array of the length given;
    // `opts` and the log buffer outlive the call.
    let fd = unsafe {
        sys::bpf_prog_load(
            kind,
            cname.as_ptr(),
            license.as_ptr(),
            insns.as_ptr().cast(),
            insns.len() as sys::size_t,
            &mut opts,
        )
    };
    if fd < 0 {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        bail!(
            "loading the {name} program: {}\n{}",
            io::Error::from_raw_os_error(-fd),
            String::from_utf8_lossy(&log[..end])
        );
    }
    // SAFETY: a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The per-CPU values of key 0 of a per-CPU array whose value is `N`
/// u64s, summed over CPUs.
pub fn percpu_sum<const N: usize>(map: &OwnedFd) -> Option<[u64; N]> {
    // SAFETY: no preconditions.
    let cpus = unsafe { sys::libbpf_num_possible_cpus() }.max(1) as usize;
    let mut values = vec![[0u64; N]; cpus];
    let key = 0u32;
    // SAFETY: a per-CPU map: one value of N u64s per possible CPU.
    let rc = unsafe {
        sys::bpf_map_lookup_elem(
            map.as_raw_fd(),
            (&key as *const u32).cast(),
            values.as_mut_ptr().cast(),
        )
    };
    if rc != 0 {
        return None;
    }
    let mut sum = [0u64; N];
    for v in &values {
        for (s, x) in sum.iter_mut().zip(v) {
            *s += x;
        }
    }
    Some(sum)
}
