//! Loading the program through the generated skeleton.
//!
//! The skeleton borrows its object storage, which would make every
//! `PortProgram` self-referential; instead we load, take owned file
//! descriptors on the program and its maps, and let the skeleton go. The
//! kernel keeps a program alive while an fd or an attachment refers to it,
//! and a map while the program or an fd does.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapHandle, Program};

use crate::error::BpfError;
use crate::guard::GuardMaps;
use crate::maps::Maps;
use crate::shared;
use crate::skel::RstwallSkelBuilder;
use crate::PortRole;

#[derive(Debug)]
pub(crate) struct Loaded {
    pub prog: OwnedFd,
    pub prog_id: u32,
    pub maps: Maps,
}

/// Load the program for `role`, its `guard` map being `guard`'s when given: the
/// programs of one datapath's ports share one (see [`GuardMaps`]).
pub(crate) fn load_sharing(role: PortRole, guard: Option<&GuardMaps>) -> Result<Loaded, BpfError> {
    let mut storage = MaybeUninit::uninit();
    let mut open = RstwallSkelBuilder::default()
        .open(&mut storage)
        .map_err(BpfError::Load)?;
    if let Some(g) = guard {
        open.maps
            .guard
            .reuse_fd(g.map_fd())
            .map_err(BpfError::Load)?;
    }
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .expect("the object has a .rodata section (cfg_role)");
    rodata.cfg_role = match role {
        PortRole::Inline { .. } => shared::ROLE_INLINE,
        PortRole::Tap => shared::ROLE_TAP,
    };
    let skel = open.load().map_err(BpfError::Load)?;

    let handle = |map: &libbpf_rs::MapMut<'_>| MapHandle::try_from(map).map_err(BpfError::Load);
    let maps = Maps {
        xsks: handle(&skel.maps.xsks)?,
        peer: handle(&skel.maps.peer)?,
        counters: handle(&skel.maps.counters)?,
        deny: handle(&skel.maps.deny)?,
        block: handle(&skel.maps.block)?,
        guard: GuardMaps::new(handle(&skel.maps.guard)?, handle(&skel.maps.guard_cfg)?),
    };
    let prog = skel
        .progs
        .rstwall_xdp
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| BpfError::Load(e.into()))?;
    let prog_id = Program::id_from_fd(prog.as_fd()).map_err(BpfError::Load)?;

    if let PortRole::Inline { peer_ifindex } = role {
        maps.set_peer(peer_ifindex)?;
    }
    Ok(Loaded {
        prog,
        prog_id,
        maps,
    })
}
