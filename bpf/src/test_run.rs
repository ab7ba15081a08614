//! The program loaded but not attached, driven one frame at a time through
//! `BPF_PROG_TEST_RUN`: what the tests use to prove the C side.

use std::mem::size_of;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use ipnet::IpNet;
use libbpf_rs::libbpf_sys;

use crate::counters::XdpCounters;
use crate::error::{BpfError, Errno};
use crate::guard::GuardMaps;
use crate::load::{load_sharing, Loaded};
use crate::maps::Maps;
use crate::skel::types::xdp_md;
use crate::PortRole;

/// XDP verdicts, as [`TestProgram::run`] returns them.
pub mod action {
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;

    /// The kernel's name for a verdict, for test messages.
    pub fn name(action: u32) -> &'static str {
        match action {
            ABORTED => "XDP_ABORTED",
            DROP => "XDP_DROP",
            PASS => "XDP_PASS",
            TX => "XDP_TX",
            REDIRECT => "XDP_REDIRECT",
            _ => "XDP_?",
        }
    }
}

/// The shortest frame `BPF_PROG_TEST_RUN` accepts for XDP (ETH_HLEN).
pub const MIN_TEST_FRAME: usize = 14;

/// The rstwall program, loaded (verified) but attached nowhere.
///
/// In a test run `bpf_redirect_map` only looks up its target: `XDP_REDIRECT`
/// means the entry existed, nothing is transmitted. So an inline program
/// needs a peer ifindex that exists (1, `lo`, is always there), and TCP
/// reaches `to_xsk` only with a real AF_XDP socket in `xsks`.
#[derive(Debug)]
pub struct TestProgram {
    prog: OwnedFd,
    prog_id: u32,
    maps: Maps,
}

impl TestProgram {
    pub fn load(role: PortRole) -> Result<TestProgram, BpfError> {
        TestProgram::load_sharing(role, None)
    }

    /// [`TestProgram::load`] sharing `guard`'s RST guard map (as the
    /// programs of one datapath's ports do).
    pub fn load_sharing(
        role: PortRole,
        guard: Option<&GuardMaps>,
    ) -> Result<TestProgram, BpfError> {
        let Loaded {
            prog,
            prog_id,
            maps,
        } = load_sharing(role, guard)?;
        Ok(TestProgram {
            prog,
            prog_id,
            maps,
        })
    }

    /// Run one frame as if it arrived on RX queue `rx_queue` and return the
    /// XDP verdict ([`action`]). The kernel accepts a queue other than 0 only
    /// with a real ingress interface: see [`TestProgram::run_on`].
    pub fn run(&self, frame: &[u8], rx_queue: u32) -> Result<u32, BpfError> {
        if rx_queue != 0 {
            return Err(BpfError::TestQueueWithoutInterface { queue: rx_queue });
        }
        self.run_on(frame, 0, 0)
    }

    /// Run one frame as if it arrived on `ifindex` (0: none), RX `rx_queue`
    /// (which must exist on that interface).
    pub fn run_on(&self, frame: &[u8], ifindex: u32, rx_queue: u32) -> Result<u32, BpfError> {
        if frame.len() < MIN_TEST_FRAME {
            return Err(BpfError::FrameTooShort { len: frame.len() });
        }
        let ctx = xdp_md {
            data: 0,
            data_end: frame.len() as u32,
            data_meta: 0,
            ingress_ifindex: ifindex,
            rx_queue_index: rx_queue,
            egress_ifindex: 0,
        };
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
            data_in: frame.as_ptr().cast(),
            data_size_in: frame.len() as u32,
            ctx_in: (&ctx as *const xdp_md).cast(),
            ctx_size_in: size_of::<xdp_md>() as u32,
            repeat: 1,
            ..Default::default()
        };
        // SAFETY: the input buffers outlive the call; no output buffers.
        let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts) };
        if ret < 0 {
            return Err(BpfError::TestRun(Errno::from_ret(ret)));
        }
        Ok(opts.retval)
    }

    /// The program's own time per run of `frame`, over `repeat` runs in
    /// the kernel (`BPF_PROG_TEST_RUN`'s duration; on RX queue 0, no
    /// interface). Every run counts, and the program's maps see each.
    pub fn time_run(&self, frame: &[u8], repeat: u32) -> Result<Duration, BpfError> {
        if frame.len() < MIN_TEST_FRAME {
            return Err(BpfError::FrameTooShort { len: frame.len() });
        }
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
            data_in: frame.as_ptr().cast(),
            data_size_in: frame.len() as u32,
            repeat: i32::try_from(repeat.max(1)).unwrap_or(i32::MAX),
            ..Default::default()
        };
        // SAFETY: the input buffer outlives the call; no output buffers.
        let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts) };
        if ret < 0 {
            return Err(BpfError::TestRun(Errno::from_ret(ret)));
        }
        Ok(Duration::from_nanos(u64::from(opts.duration)))
    }

    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    pub fn counters(&self) -> Result<XdpCounters, BpfError> {
        self.maps.counters()
    }

    pub fn register_xsk(&self, queue: u32, xsk_fd: RawFd) -> Result<(), BpfError> {
        self.maps.register_xsk(queue, xsk_fd)
    }

    pub fn unregister_xsk(&self, queue: u32) -> Result<(), BpfError> {
        self.maps.unregister_xsk(queue)
    }

    pub fn deny_insert(&self, net: IpNet) -> Result<(), BpfError> {
        self.maps.deny_insert(net)
    }

    /// The RST guard's maps.
    pub fn guard(&self) -> &GuardMaps {
        &self.maps.guard
    }

    pub fn deny_remove(&self, net: IpNet) -> Result<(), BpfError> {
        self.maps.deny_remove(net)
    }

    pub fn block_insert(&self, src: IpAddr, ttl: Duration) -> Result<(), BpfError> {
        self.maps.block_insert(src, ttl)
    }

    /// Block until an absolute CLOCK_MONOTONIC time (ns), past or future.
    pub fn block_insert_until(&self, src: IpAddr, expiry_ns: u64) -> Result<(), BpfError> {
        self.maps.block_insert_until(src, expiry_ns)
    }

    pub fn block_remove(&self, src: IpAddr) -> Result<(), BpfError> {
        self.maps.block_remove(src)
    }

    pub fn block_expiry(&self, src: IpAddr) -> Result<Option<u64>, BpfError> {
        self.maps.block_expiry(src)
    }
}

/// Now on CLOCK_MONOTONIC in ns: the clock of block expiries.
pub fn monotonic_now_ns() -> Result<u64, BpfError> {
    crate::maps::monotonic_now_ns()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameCounts;

    /// The program passes the verifier in both roles and runs: the smallest
    /// privileged check, kept here so `cargo test -p rstwall-bpf` proves the
    /// object loads. The behaviour is tested in tests/tests/integration/bpf.rs.
    #[test]
    fn loads_and_runs_in_both_roles() {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "loading an XDP program needs root (CAP_BPF + CAP_NET_ADMIN); run the tests as root"
        );
        let mut arp = [0u8; 60];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        for (role, expected, forwarded, tap_dropped) in [
            (PortRole::Inline { peer_ifindex: 1 }, action::REDIRECT, 1, 0),
            (PortRole::Tap, action::DROP, 0, 1),
        ] {
            let prog = TestProgram::load(role).unwrap_or_else(|e| panic!("{role:?}: {e}"));
            assert_eq!(prog.run(&arp, 0).unwrap(), expected, "{role:?}");
            let c = prog.counters().unwrap();
            assert_eq!(
                (c.non_tcp, c.forwarded, c.tap_dropped, c.packets()),
                (1, forwarded, tap_dropped, 1),
                "{role:?}: {c:?}"
            );
            assert!(matches!(
                prog.run(&arp[..13], 0),
                Err(BpfError::FrameTooShort { len: 13 })
            ));
        }
    }
}
