//! [`SinkCounter`]: the sink's tc counter (`src/bpf/bench_sink.bpf.c`).

use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapHandle, TcHook, TcHookBuilder, TC_INGRESS};

use super::{load_skel, own_map, own_prog, percpu_sum, BenchProgError};
use crate::error::Errno;
use crate::skel::bench_sink::{types, BenchSinkSkelBuilder};

const PROGRAM: &str = "sink counter";

/// One counter per marker code (a byte).
pub const SINK_CODES: usize = 256;
const _: () = assert!(size_of::<types::sink_counts>() == SINK_CODES * 8);

/// tc verdicts, as [`SinkCounter::test_run`] returns them.
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;

/// The counter, loaded; on a veth's tc ingress hook once attached (the
/// hook's filters are removed when it is dropped, in the calling thread's
/// namespace).
#[derive(Debug)]
pub struct SinkCounter {
    prog: OwnedFd,
    counts: MapHandle,
    hook: Option<TcHook>,
}

impl SinkCounter {
    /// Load the counter for frames whose source MAC begins with `prefix`
    /// and ends in a code; a code with a bit of `deliver` set goes on to
    /// the stack after counting, the others are dropped.
    pub fn load(prefix: [u8; 5], deliver: u8) -> Result<SinkCounter, BenchProgError> {
        let mut storage = MaybeUninit::uninit();
        let skel = load_skel::<BenchSinkSkelBuilder>(PROGRAM, &mut storage, |open| {
            let rodata = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("the object has a .rodata section (the marker)");
            rodata.marker_prefix = prefix;
            rodata.mark_deliver = deliver;
            Ok(())
        })?;
        Ok(SinkCounter {
            prog: own_prog(PROGRAM, &skel.progs.bench_sink)?,
            counts: own_map(PROGRAM, &skel.maps.sink_counts)?,
            hook: None,
        })
    }

    /// Attach to the tc ingress hook of `ifindex` (in the calling
    /// thread's namespace), creating its clsact qdisc if there is none.
    pub fn attach(&mut self, ifindex: u32) -> Result<(), BenchProgError> {
        let mut hook = TcHookBuilder::new(self.prog.as_fd())
            .ifindex(ifindex as i32)
            .replace(true)
            .handle(1)
            .priority(1)
            .hook(TC_INGRESS);
        hook.create()
            .map_err(BenchProgError::libbpf(PROGRAM, "creating the clsact qdisc"))?;
        let hook = hook.attach().map_err(BenchProgError::libbpf(
            PROGRAM,
            format!("attaching to tc ingress of ifindex {ifindex}"),
        ))?;
        self.hook = Some(hook);
        Ok(())
    }

    /// Frames counted so far, by marker code.
    pub fn counts(&self) -> Result<Box<[u64; SINK_CODES]>, BenchProgError> {
        percpu_sum::<SINK_CODES>(PROGRAM, &self.counts).map(Box::new)
    }

    /// Run one frame through the program (`BPF_PROG_TEST_RUN`, counted
    /// like any other); its tc verdict ([`TC_ACT_OK`], [`TC_ACT_SHOT`]).
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, BenchProgError> {
        test_run(PROGRAM, &self.prog, frame)
    }
}

impl Drop for SinkCounter {
    fn drop(&mut self) {
        if let Some(mut hook) = self.hook.take() {
            let _ = hook.destroy();
        }
    }
}

/// One frame through a program with `BPF_PROG_TEST_RUN`; its verdict.
pub(super) fn test_run(
    program: &'static str,
    prog: &OwnedFd,
    frame: &[u8],
) -> Result<u32, BenchProgError> {
    let mut opts = libbpf_sys::bpf_test_run_opts {
        sz: size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
        data_in: frame.as_ptr().cast(),
        data_size_in: frame.len() as u32,
        repeat: 1,
        ..Default::default()
    };
    // SAFETY: the frame outlives the call; no output buffers.
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
    if rc < 0 {
        return Err(BenchProgError::kernel(program, "BPF_PROG_TEST_RUN")(
            Errno::from_ret(rc),
        ));
    }
    Ok(opts.retval)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: [u8; 5] = [0x02, 0x72, 0x77, 0x62, 0x00];
    const DELIVER: u8 = 0x80;

    /// A 60-byte frame from source MAC `src`.
    fn frame(src: [u8; 6]) -> [u8; 60] {
        let mut f = [0u8; 60];
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f
    }

    fn marked(code: u8) -> [u8; 60] {
        let mut src = [0u8; 6];
        src[..5].copy_from_slice(&PREFIX);
        src[5] = code;
        frame(src)
    }

    #[test]
    fn counts_marked_frames_by_code_and_drops_all_but_delivered_ones() {
        super::super::tests::require_root();
        let sink = SinkCounter::load(PREFIX, DELIVER).expect("load");
        assert_eq!(sink.test_run(&marked(3)).unwrap(), TC_ACT_SHOT);
        assert_eq!(sink.test_run(&marked(3)).unwrap(), TC_ACT_SHOT);
        assert_eq!(sink.test_run(&marked(13 | DELIVER)).unwrap(), TC_ACT_OK);
        assert_eq!(sink.test_run(&marked(255)).unwrap(), TC_ACT_OK);
        // No marker, or one byte of it wrong: untouched, not counted.
        assert_eq!(
            sink.test_run(&frame([2, 0, 0, 0, 0, 3])).unwrap(),
            TC_ACT_OK
        );
        for at in 0..5 {
            let mut f = marked(3);
            f[6 + at] ^= 1;
            assert_eq!(sink.test_run(&f).unwrap(), TC_ACT_OK, "byte {at}");
        }
        let counts = sink.counts().unwrap();
        let mut want = [0u64; SINK_CODES];
        want[3] = 2;
        want[usize::from(13 | DELIVER)] = 1;
        want[255] = 1;
        assert_eq!(*counts, want);
    }
}
