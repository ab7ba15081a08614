//! The bench's own BPF programs (`rstwall-bench`), in C beside rstwall's
//! (`src/bpf/bench_*.bpf.c`), each loaded through its libbpf-cargo
//! skeleton:
//!
//! * [`SinkCounter`] — a tc ingress program on the sink's veth that counts
//!   the frames the bench marked by their marker code, and drops them or
//!   hands them to the sink's stack;
//! * [`LiveFrames`] — an XDP program that `BPF_PROG_TEST_RUN` runs in
//!   live-frames mode to send a table of frames out of an interface, flat
//!   out (the generator of the throughput measurements);
//! * [`CpuSteer`] — an XDP program that hands every frame of a port to one
//!   CPU through a cpumap (the kernel contender's receive steering).
//!
//! As with [`crate::PortProgram`], the skeleton is let go once loaded: each
//! type keeps owned file descriptors on its program and maps. Attachments
//! are made and removed in the calling thread's network namespace, drops
//! included. Everything here needs CAP_BPF and CAP_NET_ADMIN.

mod live;
mod sink;
mod steer;

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, OpenObject};

use crate::error::Errno;

pub use live::{LiveFrames, LIVE_MAX_FRAME, LIVE_MIN_FRAME};
pub use sink::{SinkCounter, SINK_CODES, TC_ACT_OK, TC_ACT_SHOT};
pub use steer::CpuSteer;

/// What can go wrong with one of the bench's programs; the message names
/// the program and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum BenchProgError {
    #[error("loading the bench's {program} program: {source:#}")]
    Load {
        program: &'static str,
        #[source]
        source: libbpf_rs::Error,
    },
    #[error("the bench's {program} program: {op}: {errno}")]
    Kernel {
        program: &'static str,
        op: String,
        errno: Errno,
    },
    #[error("the bench's {program} program: {reason}")]
    Invalid {
        program: &'static str,
        reason: String,
    },
}

impl BenchProgError {
    fn kernel(program: &'static str, op: impl Into<String>) -> impl FnOnce(Errno) -> Self {
        let op = op.into();
        move |errno| BenchProgError::Kernel { program, op, errno }
    }

    fn libbpf(
        program: &'static str,
        op: impl Into<String>,
    ) -> impl FnOnce(libbpf_rs::Error) -> Self {
        let op = op.into();
        move |e| BenchProgError::Kernel {
            program,
            op,
            errno: Errno::from(&e),
        }
    }
}

/// Open skeleton `B` in `storage`, let `configure` set what is known
/// before load (read-only settings, map sizes), and load it.
fn load_skel<'obj, B: SkelBuilder<'obj> + Default>(
    program: &'static str,
    storage: &'obj mut MaybeUninit<OpenObject>,
    configure: impl FnOnce(&mut B::Output) -> Result<(), libbpf_rs::Error>,
) -> Result<<B::Output as OpenSkel<'obj>>::Output, BenchProgError> {
    let load = |source| BenchProgError::Load { program, source };
    let mut open = B::default().open(storage).map_err(load)?;
    configure(&mut open).map_err(load)?;
    open.load().map_err(load)
}

/// An owned fd on a loaded program, which outlives the skeleton.
fn own_prog(program: &'static str, prog: &impl AsFd) -> Result<OwnedFd, BenchProgError> {
    prog.as_fd()
        .try_clone_to_owned()
        .map_err(|e| BenchProgError::Load {
            program,
            source: e.into(),
        })
}

/// An owned handle on a loaded map.
fn own_map(
    program: &'static str,
    map: &libbpf_rs::MapMut<'_>,
) -> Result<MapHandle, BenchProgError> {
    MapHandle::try_from(map).map_err(|source| BenchProgError::Load { program, source })
}

/// Key 0 of a per-CPU array whose value is `N` u64s, summed over CPUs.
fn percpu_sum<const N: usize>(
    program: &'static str,
    map: &MapHandle,
) -> Result<[u64; N], BenchProgError> {
    let per_cpu = map
        .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        .map_err(BenchProgError::libbpf(program, "reading its counters"))?
        .unwrap_or_default();
    let mut sum = [0u64; N];
    for value in &per_cpu {
        for (s, b) in sum.iter_mut().zip(value.chunks_exact(8)) {
            *s = s.wrapping_add(u64::from_ne_bytes(b.try_into().expect("8 bytes")));
        }
    }
    Ok(sum)
}

/// The possible CPUs (per-CPU maps have a value for each; a cpumap needs
/// an entry for each it may steer to).
fn possible_cpus() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libbpf_rs::libbpf_sys::libbpf_num_possible_cpus() }.max(1) as u32
}

#[cfg(test)]
mod tests {
    /// Loading a program needs root: fail loudly, never skip.
    pub(super) fn require_root() {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "loading BPF programs needs root (CAP_BPF + CAP_NET_ADMIN); run the tests as root"
        );
    }
}
