//! Userspace access to the program's maps, shared by [`crate::PortProgram`]
//! and [`crate::TestProgram`].

use std::net::IpAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use ipnet::IpNet;
use libbpf_rs::{MapCore, MapFlags, MapHandle};

use crate::counters::{ByCounter, XdpCounters};
use crate::error::{BpfError, Errno};
use crate::guard::GuardMaps;
use crate::shared::{self, Addr, Counter, LpmKey};

/// Owned handles (file descriptors) on the maps of one loaded program.
#[derive(Debug)]
pub(crate) struct Maps {
    pub xsks: MapHandle,
    pub peer: MapHandle,
    pub counters: MapHandle,
    pub deny: MapHandle,
    pub block: MapHandle,
    pub guard: GuardMaps,
}

fn map_err(map: &'static str, op: impl Into<String>) -> impl FnOnce(libbpf_rs::Error) -> BpfError {
    let op = op.into();
    move |e| BpfError::Map {
        map,
        op,
        errno: Errno::from(&e),
    }
}

/// Now on CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns()`, in ns.
pub(crate) fn monotonic_now_ns() -> Result<u64, BpfError> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return Err(BpfError::Clock(Errno::last()));
    }
    Ok((ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64)
}

impl Maps {
    pub fn set_peer(&self, ifindex: u32) -> Result<(), BpfError> {
        self.peer
            .update(
                &shared::PEER_KEY.to_ne_bytes(),
                &ifindex.to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(map_err(
                shared::MAP_PEER,
                format!("setting the peer port to ifindex {ifindex}"),
            ))
    }

    fn check_queue(queue: u32) -> Result<(), BpfError> {
        if queue >= shared::MAX_QUEUES {
            return Err(BpfError::QueueOutOfRange {
                queue,
                max: shared::MAX_QUEUES,
            });
        }
        Ok(())
    }

    pub fn register_xsk(&self, queue: u32, xsk_fd: RawFd) -> Result<(), BpfError> {
        Self::check_queue(queue)?;
        let fd = u32::try_from(xsk_fd).map_err(|_| BpfError::Map {
            map: shared::MAP_XSKS,
            op: format!("registering socket fd {xsk_fd} for queue {queue}"),
            errno: Errno(libc::EBADF),
        })?;
        self.xsks
            .update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err(
                shared::MAP_XSKS,
                format!("registering socket fd {xsk_fd} for queue {queue}"),
            ))
    }

    pub fn unregister_xsk(&self, queue: u32) -> Result<(), BpfError> {
        Self::check_queue(queue)?;
        match self.xsks.delete(&queue.to_ne_bytes()) {
            Ok(()) => Ok(()),
            // Nothing registered (or the socket closed, which removes it).
            Err(e) if Errno::from(&e).0 == libc::ENOENT => Ok(()),
            Err(e) => Err(map_err(
                shared::MAP_XSKS,
                format!("unregistering queue {queue}"),
            )(e)),
        }
    }

    pub fn counters(&self) -> Result<XdpCounters, BpfError> {
        let mut totals = [0u64; Counter::COUNT];
        for counter in Counter::ALL {
            let key = counter.key().to_ne_bytes();
            let per_cpu = self
                .counters
                .lookup_percpu(&key, MapFlags::ANY)
                .map_err(map_err(
                    shared::MAP_COUNTERS,
                    format!("reading counter {}", counter.as_str()),
                ))?
                .unwrap_or_default();
            totals[counter.index()] = per_cpu
                .iter()
                .filter_map(|v| v.get(..8))
                .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
                .fold(0u64, u64::wrapping_add);
        }
        Ok(XdpCounters::from_totals(&totals))
    }

    pub fn deny_insert(&self, net: IpNet) -> Result<(), BpfError> {
        self.deny
            .update(&LpmKey::new(net).to_bytes(), &[1u8], MapFlags::ANY)
            .map_err(map_err(
                shared::MAP_DENY,
                format!("inserting {}", net.trunc()),
            ))
    }

    /// Removing a network that is not in the list is not an error.
    pub fn deny_remove(&self, net: IpNet) -> Result<(), BpfError> {
        match self.deny.delete(&LpmKey::new(net).to_bytes()) {
            Ok(()) => Ok(()),
            Err(e) if Errno::from(&e).0 == libc::ENOENT => Ok(()),
            Err(e) => Err(map_err(
                shared::MAP_DENY,
                format!("removing {}", net.trunc()),
            )(e)),
        }
    }

    pub fn block_insert(&self, src: IpAddr, ttl: Duration) -> Result<(), BpfError> {
        let ttl_ns = u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX);
        self.block_insert_until(src, monotonic_now_ns()?.saturating_add(ttl_ns))
    }

    pub fn block_insert_until(&self, src: IpAddr, expiry_ns: u64) -> Result<(), BpfError> {
        self.block
            .update(
                &Addr::new(src).to_bytes(),
                &expiry_ns.to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(map_err(shared::MAP_BLOCK, format!("inserting {src}")))
    }

    /// Removing an address that is not blocked is not an error.
    pub fn block_remove(&self, src: IpAddr) -> Result<(), BpfError> {
        match self.block.delete(&Addr::new(src).to_bytes()) {
            Ok(()) => Ok(()),
            Err(e) if Errno::from(&e).0 == libc::ENOENT => Ok(()),
            Err(e) => Err(map_err(shared::MAP_BLOCK, format!("removing {src}"))(e)),
        }
    }

    pub fn block_expiry(&self, src: IpAddr) -> Result<Option<u64>, BpfError> {
        let value = self
            .block
            .lookup(&Addr::new(src).to_bytes(), MapFlags::ANY)
            .map_err(map_err(shared::MAP_BLOCK, format!("looking up {src}")))?;
        Ok(value.and_then(|v| {
            v.get(..8)
                .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
        }))
    }
}
