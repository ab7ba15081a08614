//! Userspace's side of the RST guard: the `guard` map of one loaded program
//! (entries per flow, exported by the engine) and its `guard_cfg` setting.
//! The contract is `rstwall_shared.h` ("The RST guard") and
//! [`crate::shared::guard`].

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle};
use rstwall_engine::flow::{FlowKey, RstGuard};

use crate::error::{BpfError, Errno};
use crate::shared::guard::{GuardCfg, GuardEntry, GuardKey};
use crate::shared::{MAP_GUARD, MAP_GUARD_CFG};

/// Handles on one program's guard maps. Cloning opens new handles (file
/// descriptors) on the same maps: one per worker.
///
/// The programs of one datapath's ports share one `guard` map
/// ([`crate::PortProgram::attach_sharing_guard`]): the two directions of a
/// flow arrive on different ports, and each program follows the fields its
/// direction carries, so both must write the same entry. Their `guard_cfg`
/// stays each program's own.
#[derive(Debug)]
pub struct GuardMaps {
    map: MapHandle,
    cfg: MapHandle,
}

fn map_err(map: &'static str, op: String) -> impl FnOnce(libbpf_rs::Error) -> BpfError {
    move |e| BpfError::Map {
        map,
        op,
        errno: Errno::from(&e),
    }
}

/// Whether a map error is `errno`.
fn is_errno(e: &libbpf_rs::Error, errno: i32) -> bool {
    Errno::from(e).0 == errno
}

impl GuardMaps {
    pub(crate) fn new(map: MapHandle, cfg: MapHandle) -> GuardMaps {
        GuardMaps { map, cfg }
    }

    /// The `guard` map, for another program to share.
    pub(crate) fn map_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.map.as_fd()
    }

    /// The kernel's id of the `guard` map: programs sharing it show the
    /// same.
    pub fn map_id(&self) -> Result<u32, BpfError> {
        Ok(self
            .map
            .info()
            .map_err(map_err(MAP_GUARD, "info".into()))?
            .info
            .id)
    }

    /// New handles on the same maps.
    pub fn try_clone(&self) -> Result<GuardMaps, BpfError> {
        let reopen = |h: &MapHandle, name: &'static str| {
            MapHandle::from_map_id(h.info().map_err(map_err(name, "info".into()))?.info.id)
                .map_err(map_err(name, "reopening".into()))
        };
        Ok(GuardMaps {
            map: reopen(&self.map, MAP_GUARD)?,
            cfg: reopen(&self.cfg, MAP_GUARD_CFG)?,
        })
    }

    /// Switch the guard on with `cfg` (or off with [`GuardCfg::OFF`]).
    pub fn configure(&self, cfg: GuardCfg) -> Result<(), BpfError> {
        self.cfg
            .update(&0u32.to_ne_bytes(), &cfg.to_bytes(), MapFlags::ANY)
            .map_err(map_err(MAP_GUARD_CFG, format!("setting {cfg:?}")))
    }

    /// The setting now.
    pub fn cfg(&self) -> Result<GuardCfg, BpfError> {
        let v = self
            .cfg
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_err(MAP_GUARD_CFG, "reading".into()))?
            .unwrap_or_default();
        let word = |i: usize| {
            v.get(i..i + 4)
                .map_or(0, |b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
        };
        Ok(GuardCfg {
            drop_classes: word(0),
            margin: word(4),
        })
    }

    /// Put a flow's export in the map. Never overwrites: an entry already
    /// there (perhaps marked stale by the program) stays, and `Ok(false)`
    /// says so; remove it first to replace it. A full map is `Ok(false)` too:
    /// that flow's RSTs keep going to userspace.
    pub fn insert(&self, key: &FlowKey, guard: &RstGuard) -> Result<bool, BpfError> {
        self.insert_raw(GuardKey::new(key), GuardEntry::new(guard))
    }

    /// [`GuardMaps::insert`] with the kernel's layouts.
    pub fn insert_raw(&self, key: GuardKey, entry: GuardEntry) -> Result<bool, BpfError> {
        match self
            .map
            .update(&key.to_bytes(), &entry.to_bytes(), MapFlags::NO_EXIST)
        {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::EEXIST) || is_errno(&e, libc::E2BIG) => Ok(false),
            Err(e) => Err(map_err(MAP_GUARD, format!("inserting {key:?}"))(e)),
        }
    }

    /// Remove a flow's entry; `Ok(false)` when there was none.
    pub fn remove(&self, key: &FlowKey) -> Result<bool, BpfError> {
        self.remove_raw(GuardKey::new(key))
    }

    pub fn remove_raw(&self, key: GuardKey) -> Result<bool, BpfError> {
        match self.map.delete(&key.to_bytes()) {
            Ok(()) => Ok(true),
            Err(e) if is_errno(&e, libc::ENOENT) => Ok(false),
            Err(e) => Err(map_err(MAP_GUARD, format!("removing {key:?}"))(e)),
        }
    }

    /// A flow's entry as the program holds it now.
    pub fn get(&self, key: &FlowKey) -> Result<Option<GuardEntry>, BpfError> {
        self.get_raw(GuardKey::new(key))
    }

    pub fn get_raw(&self, key: GuardKey) -> Result<Option<GuardEntry>, BpfError> {
        let v = self
            .map
            .lookup(&key.to_bytes(), MapFlags::ANY)
            .map_err(map_err(MAP_GUARD, format!("looking up {key:?}")))?;
        Ok(v.as_deref().and_then(GuardEntry::from_bytes))
    }

    /// The kernel's account of the map's memory (`memlock` in its fdinfo),
    /// in bytes: with entries allocated one by one, it grows with them.
    pub fn memory_bytes(&self) -> Result<u64, BpfError> {
        let path = format!("/proc/self/fdinfo/{}", self.map.as_fd().as_raw_fd());
        let text = std::fs::read_to_string(&path).map_err(|e| BpfError::Map {
            map: MAP_GUARD,
            op: format!("reading {path}"),
            errno: Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Entries in the map (walks its keys: for reports, not per packet).
    pub fn len(&self) -> usize {
        self.map.keys().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
