//! The tc side: the four programs loaded once, their rings, their
//! counters, and an attachment per interface and direction.
//!
//! Attachments are tcx links (Linux 6.6+): a link lives as long as its file
//! descriptor, so when rstwall dies, killed or not, the kernel detaches the
//! programs; nothing is left behind to alter traffic, and nothing needs
//! cleaning at the next start. Where tcx is missing, a clsact filter at
//! rstwall's own handle and priority is used instead; that one outlives the
//! process, so [`TcAttachment`] removes it on drop and a start removes one
//! a killed rstwall left ([`TcPrograms::attach`]).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType, TcHook, TcHookBuilder};

use crate::error::{BpfError, Errno};
use crate::shared::host::{self as shared, HostCounter};
use crate::skel::host_tc::RstwallHostTcSkelBuilder;

use super::counters::{per_cpu_totals, HostCounters};
use super::ring::RingReader;

/// clsact fallback: rstwall's filter handle and priority, so a restart
/// finds (and replaces) what a killed rstwall left.
const CLSACT_HANDLE: u32 = 0x7277;
const CLSACT_PRIORITY: u32 = 0xc7;

rstwall_engine::closed_enum! {
    /// Which way a packet crosses an interface.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum TcDirection: "tc direction" {
        Ingress,
        Egress,
    }
}

rstwall_engine::closed_enum! {
    /// What sits in front of the IP header on an interface.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum LinkKind: "link kind" {
        /// An Ethernet header (Ethernet devices, veth, bridges, loopback).
        Ethernet,
        /// Nothing: the packet starts with its IP header (tun, WireGuard).
        RawIp,
    }
}

rstwall_engine::closed_enum! {
    /// How a program is attached.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum TcMode: "tc attach mode" {
        /// A tcx link: gone with the last file descriptor on it.
        Tcx,
        /// A clsact filter (kernels before 6.6): removed by rstwall.
        Clsact,
    }
}

/// How the tc programs are loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcConfig {
    /// Ring buffers (1..=64): a flow's segments all go to one of them.
    pub rings: u32,
    /// Bytes per ring (a power of two, at least a page).
    pub ring_size: u32,
}

/// The loaded tc programs with their rings and counters.
#[derive(Debug)]
pub struct TcPrograms {
    progs: [OwnedFd; 4],
    counters: MapHandle,
    rings: Vec<MapHandle>,
    ring_size: u32,
    _rings_outer: MapHandle,
}

fn load_err(what: &str) -> impl FnOnce(libbpf_rs::Error) -> BpfError + '_ {
    move |e| BpfError::Host {
        what: what.to_string(),
        errno: Errno::from(&e),
        detail: format!("{e:#}"),
    }
}

impl TcPrograms {
    pub fn load(cfg: TcConfig) -> Result<TcPrograms, BpfError> {
        if !(1..=shared::MAX_RINGS).contains(&cfg.rings) {
            return Err(BpfError::HostConfig(format!(
                "rings: must be 1..={}, not {}",
                shared::MAX_RINGS,
                cfg.rings
            )));
        }
        if !cfg.ring_size.is_power_of_two() || cfg.ring_size < 4096 {
            return Err(BpfError::HostConfig(format!(
                "ring_size: a power of two of at least 4096 bytes, not {}",
                cfg.ring_size
            )));
        }
        let mut storage = MaybeUninit::uninit();
        let mut open = RstwallHostTcSkelBuilder::default()
            .open(&mut storage)
            .map_err(load_err("opening the host tc programs"))?;
        open.maps
            .rodata_data
            .as_deref_mut()
            .expect("the object has a .rodata section (cfg_host_rings)")
            .cfg_host_rings = cfg.rings;
        let skel = open
            .load()
            .map_err(load_err("loading the host tc programs"))?;
        let handle = |map: &libbpf_rs::MapMut<'_>| {
            MapHandle::try_from(map).map_err(load_err("taking a host tc map"))
        };
        let counters = handle(&skel.maps.host_counters)?;
        let outer = handle(&skel.maps.host_rings)?;
        let mut rings = Vec::with_capacity(cfg.rings as usize);
        for i in 0..cfg.rings {
            let ring = MapHandle::create(
                MapType::RingBuf,
                Some(format!("host_ring{i}")),
                0,
                0,
                cfg.ring_size,
                &libbpf_sys::bpf_map_create_opts {
                    sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
                    ..Default::default()
                },
            )
            .map_err(load_err("creating a host ring buffer"))?;
            let fd = ring.as_fd().as_raw_fd() as u32;
            outer
                .update(&i.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
                .map_err(load_err("registering a host ring buffer"))?;
            rings.push(ring);
        }
        let fd = |p: &libbpf_rs::ProgramMut<'_>| {
            p.as_fd()
                .try_clone_to_owned()
                .map_err(|e| BpfError::Load(e.into()))
        };
        let p = &skel.progs;
        Ok(TcPrograms {
            progs: [
                fd(&p.host_eth_in)?,
                fd(&p.host_eth_out)?,
                fd(&p.host_raw_in)?,
                fd(&p.host_raw_out)?,
            ],
            counters,
            rings,
            ring_size: cfg.ring_size,
            _rings_outer: outer,
        })
    }

    /// The program for a link kind and direction.
    pub fn program(&self, link: LinkKind, direction: TcDirection) -> BorrowedFd<'_> {
        let i = match (link, direction) {
            (LinkKind::Ethernet, TcDirection::Ingress) => 0,
            (LinkKind::Ethernet, TcDirection::Egress) => 1,
            (LinkKind::RawIp, TcDirection::Ingress) => 2,
            (LinkKind::RawIp, TcDirection::Egress) => 3,
        };
        self.progs[i].as_fd()
    }

    /// A reader for ring `i` (one per worker).
    pub fn ring_reader(&self, i: usize) -> std::io::Result<RingReader> {
        let ring = self.rings.get(i).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no ring {i}"))
        })?;
        RingReader::new(ring.as_fd(), self.ring_size)
    }

    pub fn rings(&self) -> usize {
        self.rings.len()
    }

    pub fn ring_size(&self) -> u32 {
        self.ring_size
    }

    /// The per-CPU counters, summed.
    pub fn counters(&self) -> Result<HostCounters, BpfError> {
        let totals = per_cpu_totals(&self.counters, shared::MAP_COUNTERS, HostCounter::COUNT)?;
        Ok(HostCounters::from_totals(&totals))
    }

    /// Attach the program for `link` to `ifindex` in `direction`: a tcx
    /// link, or a clsact filter where the kernel has no tcx.
    pub fn attach(
        &self,
        ifindex: u32,
        link: LinkKind,
        direction: TcDirection,
    ) -> Result<TcAttachment, BpfError> {
        let prog = self.program(link, direction);
        match attach_tcx(prog, ifindex, direction) {
            Ok(fd) => Ok(TcAttachment {
                ifindex,
                direction,
                mode: TcMode::Tcx,
                _link: Some(fd),
                hook: None,
            }),
            // No tcx (before 6.6): EINVAL for the unknown attach type.
            Err(Errno(libc::EINVAL | libc::EOPNOTSUPP)) => {
                let hook = attach_clsact(prog, ifindex, direction)?;
                Ok(TcAttachment {
                    ifindex,
                    direction,
                    mode: TcMode::Clsact,
                    _link: None,
                    hook: Some(hook),
                })
            }
            Err(errno) => Err(BpfError::HostAttach {
                ifindex,
                direction: direction.as_str(),
                errno,
            }),
        }
    }

    /// Run one frame through a program with `BPF_PROG_TEST_RUN` and return
    /// its verdict and the frame as it left the program.
    pub fn test_run(
        &self,
        link: LinkKind,
        direction: TcDirection,
        frame: &[u8],
    ) -> Result<(i32, Vec<u8>), BpfError> {
        let mut out = vec![0u8; frame.len() + 256];
        let mut opts = libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_test_run_opts>() as libbpf_sys::size_t,
            data_in: frame.as_ptr().cast(),
            data_size_in: frame.len() as u32,
            data_out: out.as_mut_ptr().cast(),
            data_size_out: out.len() as u32,
            repeat: 1,
            ..Default::default()
        };
        let prog = self.program(link, direction);
        // SAFETY: the buffers outlive the call and their sizes are given.
        let ret = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_raw_fd(), &mut opts) };
        if ret < 0 {
            return Err(BpfError::TestRun(Errno::from_ret(ret)));
        }
        out.truncate(opts.data_size_out as usize);
        Ok((opts.retval as i32, out))
    }
}

/// The names of the programs attached to `ifindex` (of the calling
/// thread's namespace) in `direction` through tcx: what an operator's
/// `bpftool net` would list there. For tests and status.
pub fn tcx_programs(ifindex: u32, direction: TcDirection) -> Result<Vec<String>, Errno> {
    let attach_type = match direction {
        TcDirection::Ingress => libbpf_sys::BPF_TCX_INGRESS,
        TcDirection::Egress => libbpf_sys::BPF_TCX_EGRESS,
    };
    let mut ids = [0u32; 64];
    let mut opts = libbpf_sys::bpf_prog_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_prog_query_opts>() as libbpf_sys::size_t,
        prog_ids: ids.as_mut_ptr(),
        ..Default::default()
    };
    opts.__bindgen_anon_1.count = ids.len() as u32;
    // SAFETY: `ids` outlives the call and its length is given.
    let ret = unsafe { libbpf_sys::bpf_prog_query_opts(ifindex as i32, attach_type, &mut opts) };
    if ret < 0 {
        return Err(Errno::from_ret(ret));
    }
    // SAFETY: the kernel wrote the count into the union's one field.
    let n = (unsafe { opts.__bindgen_anon_1.count } as usize).min(ids.len());
    Ok(ids[..n]
        .iter()
        .map(|&id| crate::netlink::program(id).map_or_else(|| format!("id {id}"), |(name, _)| name))
        .collect())
}

fn attach_tcx(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    direction: TcDirection,
) -> Result<OwnedFd, Errno> {
    let attach_type = match direction {
        TcDirection::Ingress => libbpf_sys::BPF_TCX_INGRESS,
        TcDirection::Egress => libbpf_sys::BPF_TCX_EGRESS,
    };
    // SAFETY: an all-zero bpf_link_create_opts is its default (no flags,
    // no relative program); `sz` says which version it is.
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as libbpf_sys::size_t;
    // SAFETY: plain values and a valid, sized opts struct.
    let fd = unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex as i32, attach_type, &opts)
    };
    if fd < 0 {
        return Err(Errno::from_ret(fd));
    }
    // SAFETY: a new file descriptor the kernel gave us, owned from here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn clsact_hook(prog: BorrowedFd<'_>, ifindex: u32, direction: TcDirection) -> TcHook {
    let point = match direction {
        TcDirection::Ingress => libbpf_rs::TC_INGRESS,
        TcDirection::Egress => libbpf_rs::TC_EGRESS,
    };
    let mut builder = TcHookBuilder::new(prog);
    builder
        .ifindex(ifindex as i32)
        .replace(true)
        .handle(CLSACT_HANDLE)
        .priority(CLSACT_PRIORITY);
    builder.hook(point)
}

fn attach_clsact(
    prog: BorrowedFd<'_>,
    ifindex: u32,
    direction: TcDirection,
) -> Result<TcHook, BpfError> {
    let mut hook = clsact_hook(prog, ifindex, direction);
    let fail = |e: libbpf_rs::Error| BpfError::HostAttach {
        ifindex,
        direction: direction.as_str(),
        errno: Errno::from(&e),
    };
    // The qdisc may exist already (EEXIST): that is fine.
    if let Err(e) = hook.create() {
        if Errno::from(&e).0 != libc::EEXIST {
            return Err(fail(e));
        }
    }
    // `replace` swaps out whatever a killed rstwall left at our handle.
    hook.attach().map_err(fail)?;
    Ok(hook)
}

/// One program on one interface and direction. Dropping it detaches it.
#[derive(Debug)]
pub struct TcAttachment {
    ifindex: u32,
    direction: TcDirection,
    mode: TcMode,
    /// The tcx link: held for its file descriptor, whose closing detaches.
    _link: Option<OwnedFd>,
    hook: Option<TcHook>,
}

impl TcAttachment {
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn direction(&self) -> TcDirection {
        self.direction
    }

    pub fn mode(&self) -> TcMode {
        self.mode
    }
}

impl Drop for TcAttachment {
    fn drop(&mut self) {
        // A tcx link detaches when its fd closes (`_link` drops after
        // this). A clsact filter must be removed; the interface may be gone
        // already, which removed it.
        if let Some(hook) = self.hook.as_mut() {
            let _ = hook.detach();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameCounts;

    /// The smallest privileged check, kept here so `cargo test -p
    /// rstwall-bpf` proves the object loads and its programs pass a frame;
    /// the behaviour is tested with rstwall-host.
    #[test]
    fn loads_and_passes_a_frame() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "loading BPF programs needs root"
        );
        let progs = TcPrograms::load(TcConfig {
            rings: 2,
            ring_size: 1 << 16,
        })
        .unwrap();
        let mut arp = [0u8; 60];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        let (verdict, out) = progs
            .test_run(LinkKind::Ethernet, TcDirection::Ingress, &arp)
            .unwrap();
        // TC_ACT_UNSPEC: on to the next program, untouched.
        assert_eq!((verdict, out.as_slice()), (-1, &arp[..]));
        let c = progs.counters().unwrap();
        assert_eq!((c.non_tcp, c.packets()), (1, 1), "{c:?}");
    }
}
