//! [`LiveFrames`]: the flat-out generator (`src/bpf/bench_gen.bpf.c`).

use std::mem::{size_of, MaybeUninit};
use std::os::fd::{AsRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use super::{load_skel, own_map, own_prog, percpu_sum, BenchProgError};
use crate::error::Errno;
use crate::skel::bench_gen::{types, BenchGenSkelBuilder};

const PROGRAM: &str = "live-frames generator";

/// The longest frame the program copies (`GEN_MAX_FRAME`): 1514 bytes, a
/// 1500-byte MTU, rounded up to 8.
pub const LIVE_MAX_FRAME: usize = 1520;
/// The shortest frame it sends: a minimum Ethernet frame (60 bytes)
/// rounded up to 8.
pub const LIVE_MIN_FRAME: usize = 64;
/// Frames the kernel's live-frames runner hands on at a time.
const LIVE_BATCH: u32 = 64;

const _: () = assert!(size_of::<types::gen_state>() == 2 * 8);

/// The generator program and its frame table, loaded.
#[derive(Debug)]
pub struct LiveFrames {
    prog: OwnedFd,
    state: MapHandle,
    _frames: MapHandle,
    /// What the kernel initialises each frame with (the program writes
    /// over all of it): its length is every frame's.
    template: Vec<u8>,
}

impl LiveFrames {
    /// Load the program for `frames`, replayed in order out of interface
    /// `ifindex` (of the namespace of the thread that will send). Every
    /// frame goes out as long as the longest, rounded up to 8 bytes and at
    /// least [`LIVE_MIN_FRAME`]: shorter ones are zero-padded (Ethernet
    /// padding).
    pub fn load(frames: &[&[u8]], ifindex: u32) -> Result<LiveFrames, BenchProgError> {
        let invalid = |reason: String| BenchProgError::Invalid {
            program: PROGRAM,
            reason,
        };
        let count = u32::try_from(frames.len())
            .map_err(|_| invalid(format!("{} frames are too many", frames.len())))?;
        let longest = frames
            .iter()
            .map(|f| f.len())
            .max()
            .ok_or_else(|| invalid("no frames".into()))?;
        let frame_len = longest.next_multiple_of(8).max(LIVE_MIN_FRAME);
        if frame_len > LIVE_MAX_FRAME {
            return Err(invalid(format!(
                "a frame of {longest} bytes is longer than {LIVE_MAX_FRAME}"
            )));
        }

        let mut storage = MaybeUninit::uninit();
        let skel = load_skel::<BenchGenSkelBuilder>(PROGRAM, &mut storage, |open| {
            let rodata = open
                .maps
                .rodata_data
                .as_deref_mut()
                .expect("the object has a .rodata section (the settings)");
            rodata.frame_len = frame_len as u32;
            rodata.frame_count = count;
            rodata.out_ifindex = ifindex;
            open.maps.gen_frames.set_value_size(frame_len as u32)?;
            open.maps.gen_frames.set_max_entries(count)
        })?;
        let table = own_map(PROGRAM, &skel.maps.gen_frames)?;
        let mut padded = vec![0u8; frame_len];
        for (i, f) in (0..count).zip(frames) {
            padded.fill(0);
            padded[..f.len()].copy_from_slice(f);
            table
                .update(&i.to_ne_bytes(), &padded, MapFlags::ANY)
                .map_err(BenchProgError::libbpf(PROGRAM, "filling the frame table"))?;
        }
        let mut template = vec![0u8; frame_len];
        template[..frames[0].len()].copy_from_slice(frames[0]);
        Ok(LiveFrames {
            prog: own_prog(PROGRAM, &skel.progs.bench_gen)?,
            state: own_map(PROGRAM, &skel.maps.gen_state)?,
            _frames: table,
            template,
        })
    }

    /// Length of every frame sent.
    pub fn frame_len(&self) -> usize {
        self.template.len()
    }

    /// Frames sent so far, on every CPU (while a run is under way too).
    pub fn sent(&self) -> Result<u64, BenchProgError> {
        percpu_sum::<2>(PROGRAM, &self.state).map(|[_, sent]| sent)
    }

    /// Send `repeat` frames, synchronously, on the calling thread's CPU
    /// (`BPF_PROG_TEST_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`).
    pub fn send(&self, repeat: u32) -> Result<(), BenchProgError> {
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
            data_in: self.template.as_ptr().cast(),
            data_size_in: self.template.len() as u32,
            repeat: repeat as i32,
            flags: libbpf_sys::BPF_F_TEST_XDP_LIVE_FRAMES,
            batch_size: LIVE_BATCH,
            ..Default::default()
        };
        // SAFETY: `opts` and the template it points to outlive the call.
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts) };
        if rc != 0 {
            return Err(BenchProgError::kernel(
                PROGRAM,
                "BPF_PROG_TEST_RUN (live frames)",
            )(Errno::from_ret(rc)));
        }
        Ok(())
    }

    /// Run the program once without sending (`BPF_PROG_TEST_RUN`, not
    /// live): its verdict and the frame it wrote.
    pub fn test_run(&self) -> Result<(u32, Vec<u8>), BenchProgError> {
        let mut out = vec![0u8; self.template.len()];
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
            data_in: self.template.as_ptr().cast(),
            data_size_in: self.template.len() as u32,
            data_out: out.as_mut_ptr().cast(),
            data_size_out: out.len() as u32,
            repeat: 1,
            ..Default::default()
        };
        // SAFETY: the template and `out` outlive the call; `out` is as long
        // as the size given.
        let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts) };
        if rc != 0 {
            return Err(BenchProgError::kernel(PROGRAM, "BPF_PROG_TEST_RUN")(
                Errno::from_ret(rc),
            ));
        }
        out.truncate(opts.data_size_out as usize);
        Ok((opts.retval, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action;

    /// A frame of `len` bytes whose every byte says which frame it is.
    fn frame(n: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| n ^ (i as u8)).collect()
    }

    #[test]
    fn writes_the_frames_in_order_padded_and_counts_them() {
        super::super::tests::require_root();
        let frames = [frame(1, 60), frame(2, 54), frame(3, 70)];
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        let live = LiveFrames::load(&refs, 1).expect("load");
        // The longest, 70, rounded up to 8.
        assert_eq!(live.frame_len(), 72);
        for round in 0..2 {
            for f in &frames {
                let (verdict, out) = live.test_run().unwrap();
                assert_eq!(verdict, action::REDIRECT, "{}", action::name(verdict));
                assert_eq!(out.len(), 72);
                assert_eq!(&out[..f.len()], f.as_slice(), "round {round}");
                assert!(out[f.len()..].iter().all(|&b| b == 0), "zero-padded");
            }
        }
        assert_eq!(live.sent().unwrap(), 6);
    }

    #[test]
    fn copies_the_longest_frame_whole_and_refuses_longer_ones() {
        super::super::tests::require_root();
        let longest = frame(7, LIVE_MAX_FRAME);
        let live = LiveFrames::load(&[&longest], 1).expect("load");
        let (_, out) = live.test_run().unwrap();
        assert_eq!(out, longest);
        let short = frame(9, 20);
        assert_eq!(LiveFrames::load(&[&short], 1).unwrap().frame_len(), 64);
        let over = frame(8, LIVE_MAX_FRAME + 1);
        assert!(matches!(
            LiveFrames::load(&[&over], 1),
            Err(BenchProgError::Invalid { .. })
        ));
        assert!(matches!(
            LiveFrames::load(&[], 1),
            Err(BenchProgError::Invalid { .. })
        ));
    }
}
