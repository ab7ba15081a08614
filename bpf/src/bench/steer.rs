//! [`CpuSteer`]: receive steering for the kernel contender
//! (`src/bpf/bench_steer.bpf.c`).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle, Xdp, XdpFlags};

use super::sink::test_run;
use super::{load_skel, own_map, own_prog, possible_cpus, BenchProgError};
use crate::skel::bench_steer::BenchSteerSkelBuilder;

const PROGRAM: &str = "CPU steering";

/// The program, loaded with its cpumap entry, and the ports it is attached
/// to (in driver mode; detached when dropped, in the calling thread's
/// namespace).
#[derive(Debug)]
pub struct CpuSteer {
    prog: OwnedFd,
    _cpus: MapHandle,
    attached: Vec<u32>,
}

impl CpuSteer {
    /// Load the program that steers every frame to `cpu`, whose cpumap
    /// entry queues up to `qsize` frames (its kernel thread starts now).
    pub fn load(cpu: u32, qsize: u32) -> Result<CpuSteer, BenchProgError> {
        let cpus = possible_cpus();
        if cpu >= cpus {
            return Err(BenchProgError::Invalid {
                program: PROGRAM,
                reason: format!("CPU {cpu} is not one of the {cpus} possible"),
            });
        }
        let mut storage = MaybeUninit::uninit();
        let skel = load_skel::<BenchSteerSkelBuilder>(PROGRAM, &mut storage, |open| {
            open.maps
                .rodata_data
                .as_deref_mut()
                .expect("the object has a .rodata section (target_cpu)")
                .target_cpu = cpu;
            open.maps.steer_cpus.set_max_entries(cpus)
        })?;
        let map = own_map(PROGRAM, &skel.maps.steer_cpus)?;
        // struct bpf_cpumap_val: the queue size, and no program (fd 0).
        let mut value = [0u8; 8];
        value[..4].copy_from_slice(&qsize.to_ne_bytes());
        map.update(&cpu.to_ne_bytes(), &value, MapFlags::ANY)
            .map_err(BenchProgError::libbpf(
                PROGRAM,
                format!("the cpumap entry of CPU {cpu}"),
            ))?;
        Ok(CpuSteer {
            prog: own_prog(PROGRAM, &skel.progs.bench_steer)?,
            _cpus: map,
            attached: Vec::new(),
        })
    }

    /// Attach to `ifindex` (in the calling thread's namespace), in driver
    /// mode.
    pub fn attach(&mut self, ifindex: u32) -> Result<(), BenchProgError> {
        Xdp::new(self.prog.as_fd())
            .attach(ifindex as i32, XdpFlags::DRV_MODE)
            .map_err(BenchProgError::libbpf(
                PROGRAM,
                format!("attaching to ifindex {ifindex}"),
            ))?;
        self.attached.push(ifindex);
        Ok(())
    }

    /// Run one frame through the program (`BPF_PROG_TEST_RUN`); its XDP
    /// verdict ([`crate::action`]).
    pub fn test_run(&self, frame: &[u8]) -> Result<u32, BenchProgError> {
        test_run(PROGRAM, &self.prog, frame)
    }
}

impl Drop for CpuSteer {
    fn drop(&mut self) {
        let xdp = Xdp::new(self.prog.as_fd());
        for &ifindex in &self.attached {
            let _ = xdp.detach(ifindex as i32, XdpFlags::DRV_MODE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action;

    #[test]
    fn redirects_every_frame_to_its_cpu() {
        super::super::tests::require_root();
        let steer = CpuSteer::load(0, 64).expect("load");
        let mut frame = [0u8; 60];
        frame[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        let verdict = steer.test_run(&frame).unwrap();
        assert_eq!(verdict, action::REDIRECT, "{}", action::name(verdict));
        assert!(matches!(
            CpuSteer::load(possible_cpus(), 64),
            Err(BenchProgError::Invalid { .. })
        ));
    }
}
