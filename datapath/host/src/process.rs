//! The process behind a socket: what the kernel side recorded (pid,
//! command, cgroup id) made readable — the cgroup's path, and the systemd
//! unit or container id where the path shows one.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rstwall_bpf::shared::host as shared;
use serde::Serialize;

rstwall_engine::closed_enum! {
    /// Where an owner was learned.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum OwnerSource: "owner source" {
        /// In connect(): the connecting process.
        Connect,
        /// In listen(): the listening process.
        Listen,
        /// In accept(): the accepting process.
        Accept,
        /// Found holding the socket when rstwall started.
        Existing,
        /// An accepted socket whose accept could not be seen: its
        /// listener's owner.
        Listener,
    }
}

impl OwnerSource {
    pub(crate) fn from_kernel(how: u32) -> Option<OwnerSource> {
        Some(match how {
            shared::OWNER_CONNECT => OwnerSource::Connect,
            shared::OWNER_LISTEN => OwnerSource::Listen,
            shared::OWNER_ACCEPT => OwnerSource::Accept,
            shared::OWNER_EXISTING => OwnerSource::Existing,
            _ => return None,
        })
    }
}

/// The process that owns a socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Process {
    pub pid: u32,
    /// The command (the kernel's 15-character `comm`).
    pub comm: String,
    /// The cgroup (v2) path, e.g. `/system.slice/nginx.service`; empty
    /// when the cgroup is gone or cgroup v2 is not mounted.
    pub cgroup: String,
    /// The systemd unit the cgroup path names, if any.
    pub unit: Option<String>,
    /// The container id the cgroup path names, if any.
    pub container: Option<String>,
    /// How the owner was learned.
    #[serde(rename = "owner_from")]
    pub source: OwnerSource,
}

/// A kernel-recorded owner, before its cgroup path is looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawOwner {
    pub pid: u32,
    pub comm: [u8; shared::COMM_LEN],
    pub cgroup_id: u64,
    pub source: OwnerSource,
}

impl RawOwner {
    pub fn from_kernel(o: &shared::Owner) -> Option<RawOwner> {
        Some(RawOwner {
            pid: o.tgid,
            comm: o.comm,
            cgroup_id: o.cgroup_id,
            source: OwnerSource::from_kernel(o.how)?,
        })
    }

    pub fn comm(&self) -> String {
        let end = self
            .comm
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.comm.len());
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }
}

/// Cgroup ids to paths: a cgroup v2 id is the inode number of its
/// directory, so a walk of the hierarchy maps them; walked again (at most
/// once per [`RESCAN_EVERY`]) when an id is not known yet.
pub(crate) struct Cgroups {
    root: PathBuf,
    paths: HashMap<u64, String>,
    scanned: Option<Instant>,
}

const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// Bound on the walk, against a pathological hierarchy.
const MAX_CGROUPS: usize = 100_000;

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on a
/// unified system, `/sys/fs/cgroup/unified` on a hybrid one.
pub(crate) fn cgroup2_root() -> PathBuf {
    fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                let mut f = l.split_whitespace();
                let (_, dir, kind) = (f.next()?, f.next()?, f.next()?);
                (kind == "cgroup2").then(|| PathBuf::from(dir))
            })
        })
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

impl Cgroups {
    pub fn new() -> Cgroups {
        Cgroups::at(&cgroup2_root())
    }

    pub fn at(root: &Path) -> Cgroups {
        Cgroups {
            root: root.to_path_buf(),
            paths: HashMap::new(),
            scanned: None,
        }
    }

    fn scan(&mut self) {
        self.paths.clear();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            if self.paths.len() >= MAX_CGROUPS {
                break;
            }
            let Ok(meta) = fs::metadata(&dir) else {
                continue;
            };
            let rel = dir.strip_prefix(&self.root).unwrap_or(&dir);
            self.paths.insert(meta.ino(), format!("/{}", rel.display()));
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        self.scanned = Some(Instant::now());
    }

    /// The path of cgroup `id`, if it exists.
    pub fn path(&mut self, id: u64) -> Option<&str> {
        if !self.paths.contains_key(&id) && self.scanned.is_none_or(|t| t.elapsed() >= RESCAN_EVERY)
        {
            self.scan();
        }
        self.paths.get(&id).map(String::as_str)
    }

    pub fn process(&mut self, o: &RawOwner) -> Process {
        let cgroup = self.path(o.cgroup_id).unwrap_or_default().to_string();
        Process {
            pid: o.pid,
            comm: o.comm(),
            unit: systemd_unit(&cgroup),
            container: container_id(&cgroup),
            cgroup,
            source: o.source,
        }
    }
}

/// The innermost systemd unit of a cgroup path: a component ending in
/// `.service` or `.scope` (`/system.slice/nginx.service` → `nginx.service`).
pub fn systemd_unit(cgroup: &str) -> Option<String> {
    cgroup
        .rsplit('/')
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .map(str::to_string)
}

/// A container id in a cgroup path, as Docker, containerd, CRI-O and
/// Podman name their cgroups: `docker-<id>.scope`, `/docker/<id>`,
/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `libpod-<id>.scope`.
pub fn container_id(cgroup: &str) -> Option<String> {
    let is_id = |s: &str| s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = cgroup.split('/').collect();
    for (i, c) in parts.iter().enumerate().rev() {
        let c = c.strip_suffix(".scope").unwrap_or(c);
        for prefix in ["docker-", "cri-containerd-", "crio-", "libpod-"] {
            if let Some(id) = c.strip_prefix(prefix) {
                if is_id(id) {
                    return Some(id.to_string());
                }
            }
        }
        if i > 0 && matches!(parts[i - 1], "docker" | "lxc" | "libpod") && is_id(c) {
            return Some(c.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_containers_from_paths() {
        assert_eq!(
            systemd_unit("/system.slice/nginx.service").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(
            systemd_unit("/user.slice/user-1000.slice/session-3.scope").as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(systemd_unit("/"), None);
        let id = "4f1c2a9b8d7e6f5a4f1c2a9b8d7e6f5a4f1c2a9b8d7e6f5a4f1c2a9b8d7e6f5a";
        for path in [
            format!("/system.slice/docker-{id}.scope"),
            format!("/docker/{id}"),
            format!("/kubepods.slice/kubepods-pod1.slice/cri-containerd-{id}.scope"),
            format!("/machine.slice/libpod-{id}.scope"),
        ] {
            assert_eq!(container_id(&path).as_deref(), Some(id), "{path}");
        }
        assert_eq!(container_id("/system.slice/nginx.service"), None);
        assert_eq!(container_id("/docker/not-hex"), None);
    }

    /// This process's own cgroup id (the inode of its cgroup directory)
    /// maps back to its path, as /proc/self/cgroup names it.
    #[test]
    fn this_process_cgroup() {
        let Ok(text) = fs::read_to_string("/proc/self/cgroup") else {
            return;
        };
        let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")) else {
            return; // cgroup v1 only: nothing to map
        };
        let dir = cgroup2_root().join(path.trim_start_matches('/'));
        let ino = fs::metadata(dir).unwrap().ino();
        let mut c = Cgroups::new();
        assert_eq!(c.path(ino), Some(path));
        let owner = RawOwner {
            pid: 42,
            comm: *b"collector\0\0\0\0\0\0\0",
            cgroup_id: ino,
            source: OwnerSource::Connect,
        };
        let p = c.process(&owner);
        assert_eq!(
            (p.pid, p.comm.as_str(), p.cgroup.as_str()),
            (42, "collector", path)
        );
    }
}
