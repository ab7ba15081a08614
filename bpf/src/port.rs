//! One port: the program loaded for it and attached to it.

use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::time::Duration;

use ipnet::IpNet;
use rstwall_engine::names::{alternatives, UnknownName};

use crate::counters::XdpCounters;
use crate::error::{BpfError, Errno};
use crate::guard::GuardMaps;
use crate::load::{load_sharing, Loaded};
use crate::maps::Maps;
use crate::netlink::{self, Found, Hook};
use crate::shared;

rstwall_engine::closed_enum! {
    /// How to attach.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub enum XdpMode: "XDP mode" else UnknownXdpMode {
        /// Native (driver) mode, falling back to generic if the driver refuses.
        #[default]
        Auto,
        /// Driver mode only: fails on drivers without XDP support.
        Native,
        /// Generic (skb) mode: works everywhere, slower, copies frames for AF_XDP.
        Generic,
    }
}

impl XdpMode {
    fn candidates(self) -> &'static [AttachedMode] {
        match self {
            XdpMode::Auto => &[AttachedMode::Native, AttachedMode::Generic],
            XdpMode::Native => &[AttachedMode::Native],
            XdpMode::Generic => &[AttachedMode::Generic],
        }
    }
}

/// An XDP mode name that is none of [`XdpMode::NAMES`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown XDP mode `{0}` (expected {expected})", expected = alternatives(&XdpMode::NAMES))]
pub struct UnknownXdpMode(pub String);

impl From<UnknownName> for UnknownXdpMode {
    fn from(e: UnknownName) -> Self {
        UnknownXdpMode(e.name)
    }
}

rstwall_engine::closed_enum! {
    /// The mode a program ended up attached in.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum AttachedMode: "attached XDP mode" {
        Native,
        Generic,
    }
}

impl AttachedMode {
    fn hook(self) -> Hook {
        match self {
            AttachedMode::Native => Hook::Driver,
            AttachedMode::Generic => Hook::Generic,
        }
    }
}

/// What a port does with what userspace does not take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortRole {
    /// One half of a bump in the wire: non-TCP, and TCP while no AF_XDP
    /// socket serves its queue, goes out of `peer_ifindex` (fail-open).
    Inline { peer_ifindex: u32 },
    /// A mirror or tap: only TCP for the AF_XDP sockets; the rest is dropped.
    Tap,
}

/// The rstwall XDP program attached to one port.
///
/// Attached through netlink (`bpf_xdp_attach`), not a `bpf_link`: a link
/// goes away with the last fd on it, so a crashed daemon would take its
/// program along and an inline port would stop forwarding. A netlink
/// attachment belongs to the interface: if the process dies, the program
/// stays, and non-TCP plus TCP whose socket died keep flowing to the peer.
/// [`PortProgram::detach`] (or drop) removes it; [`PortProgram::leave_attached`]
/// lets go of it on purpose, for a restart that should not interrupt the wire.
#[derive(Debug)]
pub struct PortProgram {
    ifname: String,
    ifindex: u32,
    role: PortRole,
    mode: AttachedMode,
    prog: OwnedFd,
    prog_id: u32,
    maps: Maps,
    attached: bool,
}

/// Every program on the port must be ours (by name) unless foreign ones may
/// be replaced.
fn check_replaceable(ifname: &str, found: &[Found], replace_foreign: bool) -> Result<(), BpfError> {
    if replace_foreign {
        return Ok(());
    }
    for f in found {
        if let Some((name, _)) = netlink::program(f.id) {
            if name != shared::PROG_NAME {
                return Err(BpfError::ForeignProgram {
                    ifname: ifname.to_string(),
                    name,
                    id: f.id,
                });
            }
        }
    }
    Ok(())
}

/// Put `prog` on the port in `mode`. A program already at that hook is
/// swapped out atomically (no gap in forwarding); programs at other hooks
/// are removed first, because the kernel runs one mode at a time.
fn attach_in(
    ifname: &str,
    ifindex: u32,
    prog: &OwnedFd,
    mode: AttachedMode,
    replace_foreign: bool,
) -> Result<(), Errno> {
    let found = netlink::query(ifname, ifindex).map_err(|e| match e {
        BpfError::Query { errno, .. } => errno,
        _ => Errno(libc::EIO),
    })?;
    // Checked again here: the port may have changed since the caller looked.
    if check_replaceable(ifname, &found, replace_foreign).is_err() {
        return Err(Errno(libc::EEXIST));
    }
    let hook = mode.hook();
    for other in found.iter().filter(|f| f.hook != hook) {
        netlink::detach_id(ifindex, other.hook, other.id)?;
    }
    match found.iter().find(|f| f.hook == hook) {
        Some(old) => match netlink::program(old.id) {
            Some((_, old_fd)) => netlink::attach(ifindex, prog.as_fd(), hook, Some(old_fd.as_fd())),
            // It went away between the query and now.
            None => netlink::attach(ifindex, prog.as_fd(), hook, None),
        },
        None => netlink::attach(ifindex, prog.as_fd(), hook, None),
    }
}

impl PortProgram {
    /// Load and attach to `ifname`. Auto = native (driver) mode, falling back
    /// to generic if the driver refuses.
    ///
    /// A program left by a crashed rstwall (recognised by program name) is
    /// REPLACED, atomically when it is in the same mode, never stacked; a
    /// foreign XDP program is an error unless `replace_foreign`. Note that a
    /// live rstwall's program looks the same as a crashed one's: two daemons
    /// on one port replace each other.
    pub fn attach(
        ifname: &str,
        role: PortRole,
        mode: XdpMode,
        replace_foreign: bool,
    ) -> Result<PortProgram, BpfError> {
        PortProgram::attach_sharing_guard(ifname, role, mode, replace_foreign, None)
    }

    /// [`PortProgram::attach`], the program sharing `guard`'s RST guard
    /// map: the second port of an inline pair shares the first's, so both
    /// directions of a flow keep one entry (see [`GuardMaps`]).
    pub fn attach_sharing_guard(
        ifname: &str,
        role: PortRole,
        mode: XdpMode,
        replace_foreign: bool,
        guard: Option<&GuardMaps>,
    ) -> Result<PortProgram, BpfError> {
        let ifindex = netlink::ifindex_of(ifname)?;
        if role
            == (PortRole::Inline {
                peer_ifindex: ifindex,
            })
        {
            return Err(BpfError::PeerIsSelf {
                ifname: ifname.to_string(),
                peer: ifindex,
            });
        }
        let found = netlink::query(ifname, ifindex)?;
        check_replaceable(ifname, &found, replace_foreign)?;

        let Loaded {
            prog,
            prog_id,
            maps,
        } = load_sharing(role, guard)?;

        let mut failures = Vec::new();
        for &candidate in mode.candidates() {
            match attach_in(ifname, ifindex, &prog, candidate, replace_foreign) {
                Ok(()) => {
                    return Ok(PortProgram {
                        ifname: ifname.to_string(),
                        ifindex,
                        role,
                        mode: candidate,
                        prog,
                        prog_id,
                        maps,
                        attached: true,
                    })
                }
                Err(errno) => failures.push((candidate, errno)),
            }
        }
        // A foreign program that appeared meanwhile is worth naming.
        if let Ok(found) = netlink::query(ifname, ifindex) {
            check_replaceable(ifname, &found, replace_foreign)?;
        }
        Err(match failures.as_slice() {
            [(AttachedMode::Native, native), (AttachedMode::Generic, generic)] => {
                BpfError::AttachAuto {
                    ifname: ifname.to_string(),
                    native: *native,
                    generic: *generic,
                }
            }
            [(mode, errno), ..] => BpfError::Attach {
                ifname: ifname.to_string(),
                mode: *mode,
                errno: *errno,
            },
            [] => unreachable!("every XdpMode has a candidate"),
        })
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn attached_mode(&self) -> AttachedMode {
        self.mode
    }

    pub fn role(&self) -> PortRole {
        self.role
    }

    /// The kernel's id of our program (what `ip link` and `bpftool` show).
    pub fn prog_id(&self) -> u32 {
        self.prog_id
    }

    /// Steer TCP arriving on RX `queue` to the AF_XDP socket `xsk_fd`. The
    /// socket must be bound to this port and queue; closing it unregisters
    /// it (the kernel removes it from the map), and TCP on that queue fails
    /// open again.
    pub fn register_xsk(&self, queue: u32, xsk_fd: RawFd) -> Result<(), BpfError> {
        self.maps.register_xsk(queue, xsk_fd)
    }

    pub fn unregister_xsk(&self, queue: u32) -> Result<(), BpfError> {
        self.maps.unregister_xsk(queue)
    }

    /// Counters summed over CPUs.
    pub fn counters(&self) -> Result<XdpCounters, BpfError> {
        self.maps.counters()
    }

    /// The RST guard's maps (entries are kept by the workers, the setting
    /// by whoever owns the policy).
    pub fn guard(&self) -> &GuardMaps {
        &self.maps.guard
    }

    /// Drop IP packets from `net` (IPv4 nets are stored v4-mapped; see the
    /// shared header). Host bits are ignored.
    pub fn deny_insert(&self, net: IpNet) -> Result<(), BpfError> {
        self.maps.deny_insert(net)
    }

    pub fn deny_remove(&self, net: IpNet) -> Result<(), BpfError> {
        self.maps.deny_remove(net)
    }

    /// Drop IP packets from `src` for `ttl` (from now, on CLOCK_MONOTONIC).
    /// Inserting again replaces the expiry.
    pub fn block_insert(&self, src: IpAddr, ttl: Duration) -> Result<(), BpfError> {
        self.maps.block_insert(src, ttl)
    }

    pub fn block_remove(&self, src: IpAddr) -> Result<(), BpfError> {
        self.maps.block_remove(src)
    }

    /// The expiry (CLOCK_MONOTONIC ns) of a block entry, expired or not,
    /// while the program has not yet deleted it.
    pub fn block_expiry(&self, src: IpAddr) -> Result<Option<u64>, BpfError> {
        self.maps.block_expiry(src)
    }

    /// Remove the program from the port, if it is still the one there (a
    /// newer rstwall that replaced it keeps its own).
    pub fn detach(mut self) -> Result<(), BpfError> {
        self.attached = false;
        self.detach_now()
    }

    /// Let go without detaching: the program stays on the port, forwarding
    /// fail-open, until a restarted rstwall replaces it or
    /// [`detach_stale`] removes it.
    pub fn leave_attached(mut self) {
        self.attached = false;
    }

    fn detach_now(&self) -> Result<(), BpfError> {
        // Only if it is still ours: asking the kernel to detach a program
        // that was replaced fails (safely, thanks to XDP_FLAGS_REPLACE), but
        // libbpf logs a warning for it.
        match netlink::query(&self.ifname, self.ifindex) {
            Ok(found) if !found.iter().any(|f| f.id == self.prog_id) => return Ok(()),
            Err(BpfError::Query {
                errno: Errno(libc::ENODEV),
                ..
            }) => return Ok(()),
            _ => {}
        }
        match netlink::detach(self.ifindex, self.mode.hook(), self.prog.as_fd()) {
            Ok(()) => Ok(()),
            // EEXIST: another program replaced ours; ENOENT/ENODEV: nothing
            // there, or the interface is gone (and our program with it).
            Err(Errno(libc::EEXIST | libc::ENOENT | libc::ENODEV)) => Ok(()),
            Err(errno) => Err(BpfError::Detach {
                ifname: self.ifname.clone(),
                errno,
            }),
        }
    }
}

impl Drop for PortProgram {
    fn drop(&mut self) {
        if self.attached {
            let _ = self.detach_now();
        }
    }
}

/// Remove an rstwall program left on `ifname` (by a crashed daemon, or one
/// that called [`PortProgram::leave_attached`]). `Ok(false)` when there was
/// none; a foreign program is left alone and also gives `Ok(false)`.
pub fn detach_stale(ifname: &str) -> Result<bool, BpfError> {
    let ifindex = netlink::ifindex_of(ifname)?;
    let mut removed = false;
    for found in netlink::query(ifname, ifindex)? {
        let Some((name, fd)) = netlink::program(found.id) else {
            continue;
        };
        if name != shared::PROG_NAME {
            continue;
        }
        match netlink::detach(ifindex, found.hook, fd.as_fd()) {
            Ok(()) => removed = true,
            Err(Errno(libc::EEXIST | libc::ENOENT)) => {}
            Err(errno) => {
                return Err(BpfError::Detach {
                    ifname: ifname.to_string(),
                    errno,
                })
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdp_mode_names() {
        rstwall_engine::names::assert_consistent::<XdpMode>();
    }

    #[test]
    fn attached_mode_names() {
        rstwall_engine::names::assert_consistent::<AttachedMode>();
    }

    #[test]
    fn modes_parse() {
        for m in [XdpMode::Auto, XdpMode::Native, XdpMode::Generic] {
            assert_eq!(m.as_str().parse::<XdpMode>().unwrap(), m);
        }
        assert_eq!(
            "driver".parse::<XdpMode>().unwrap_err().to_string(),
            "unknown XDP mode `driver` (expected auto, native or generic)"
        );
    }
}
