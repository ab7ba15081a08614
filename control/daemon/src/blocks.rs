//! Operator blocks: `rstwall block add CIDR [--ttl DURATION]`.
//!
//! A block is a deny-list entry the operator adds at run time, optionally
//! for a limited time. Blocks are kept apart from the policy (adding one
//! does not make a new policy version, and `policy apply` does not remove
//! them), persisted in `<state_dir>/blocks.json` (written durably, like the
//! policy) and restored on restart, with expiry times in wall-clock
//! seconds so a block's TTL runs while the daemon is down too.
//!
//! The daemon folds the active blocks into the deny list of the policy it
//! runs ([`rstwall_engine::policy::PolicyConfig::with_extra_deny`]): in
//! enforce mode every TCP packet from a blocked network dies in XDP; in
//! monitor mode it is counted as would-drop, like any deny entry.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::persist::write_durably;

/// Most blocks at once: the XDP deny map's size, shared with the policy's
/// own deny list.
pub const MAX_BLOCKS: usize = 16_384;
/// Longest TTL: a year. Longer is a job for the policy's deny list.
pub const MAX_TTL_SECS: u64 = 365 * 86_400;

/// One block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    pub cidr: IpNet,
    /// Unix second it was added.
    pub added: u64,
    /// Unix second it ends; none: until removed.
    pub until: Option<u64>,
}

/// The blocks in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blocks {
    entries: BTreeMap<IpNet, Block>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    blocks: Vec<Block>,
}

impl Blocks {
    fn path(dir: &Path) -> std::path::PathBuf {
        dir.join("blocks.json")
    }

    /// The persisted blocks (none if there is no file), less those that
    /// ended while the daemon was down.
    pub fn load(dir: &Path, now: u64) -> anyhow::Result<Blocks> {
        let path = Blocks::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Blocks::default()),
            Err(e) => return Err(anyhow!(e).context(format!("reading {}", path.display()))),
        };
        let file: File = serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "persisted blocks {} are not valid: line {}: {e}; fix the file or remove it",
                path.display(),
                e.line()
            )
        })?;
        let mut blocks = Blocks::default();
        for b in file.blocks {
            let b = Block {
                cidr: b.cidr.trunc(),
                ..b
            };
            if b.until.is_none_or(|u| u > now) {
                blocks.entries.insert(b.cidr, b);
            }
        }
        Ok(blocks)
    }

    /// Persist, durably and atomically.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let path = Blocks::path(dir);
        let file = File {
            blocks: self.entries.values().cloned().collect(),
        };
        let mut text = serde_json::to_string_pretty(&file).expect("blocks serialize");
        text.push('\n');
        write_durably(&path, text.as_bytes())
            .with_context(|| format!("persisting blocks to {}", path.display()))
    }

    /// Add (or renew: a new TTL replaces the old one) a block. The result
    /// is the new set; `self` is unchanged, so the caller can persist
    /// before it adopts it.
    pub fn with_added(&self, cidr: IpNet, ttl: Option<u64>, now: u64) -> Result<Blocks, String> {
        let cidr = cidr.trunc();
        if let Some(t) = ttl {
            if t == 0 || t > MAX_TTL_SECS {
                return Err(format!(
                    "ttl: must be 1 second to {} days, not {t} s",
                    MAX_TTL_SECS / 86_400
                ));
            }
        }
        if !self.entries.contains_key(&cidr) && self.entries.len() >= MAX_BLOCKS {
            return Err(format!(
                "{MAX_BLOCKS} blocks already: remove some, or use the policy's deny list"
            ));
        }
        let mut out = self.clone();
        out.entries.insert(
            cidr,
            Block {
                cidr,
                added: now,
                until: ttl.map(|t| now + t),
            },
        );
        Ok(out)
    }

    /// Without `cidr`; `None` if it is not blocked.
    pub fn without(&self, cidr: IpNet) -> Option<Blocks> {
        let cidr = cidr.trunc();
        let mut out = self.clone();
        out.entries.remove(&cidr)?;
        Some(out)
    }

    /// Without the blocks that end at or before `now`; `None` if none do.
    pub fn expired(&self, now: u64) -> Option<Blocks> {
        if !self
            .entries
            .values()
            .any(|b| b.until.is_some_and(|u| u <= now))
        {
            return None;
        }
        let mut out = self.clone();
        out.entries.retain(|_, b| b.until.is_none_or(|u| u > now));
        Some(out)
    }

    pub fn list(&self) -> impl Iterator<Item = &Block> {
        self.entries.values()
    }

    pub fn nets(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.entries.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn add_renew_remove_expire() {
        let b = Blocks::default();
        let b = b.with_added(net("198.18.7.9/24"), Some(60), 1000).unwrap();
        assert_eq!(b.nets().collect::<Vec<_>>(), vec![net("198.18.7.0/24")]);
        // Renewing replaces the TTL.
        let b = b.with_added(net("198.18.7.0/24"), None, 1010).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b.list().next().unwrap().until, None);
        let b = b.with_added(net("2001:2::/48"), Some(5), 1010).unwrap();
        assert!(b.expired(1014).is_none());
        let b = b.expired(1015).unwrap();
        assert_eq!(b.len(), 1);
        assert!(b.without(net("198.19.0.0/16")).is_none());
        assert!(b.without(net("198.18.7.1/24")).unwrap().is_empty());
        assert!(b.with_added(net("198.18.0.0/15"), Some(0), 0).is_err());
        assert!(b
            .with_added(net("198.18.0.0/15"), Some(MAX_TTL_SECS + 1), 0)
            .is_err());
    }

    #[test]
    fn persisted_and_restored_less_the_expired() {
        let dir = std::env::temp_dir().join(format!("rstwall-blocks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let b = Blocks::default()
            .with_added(net("198.18.1.0/24"), Some(10), 100)
            .unwrap()
            .with_added(net("198.18.2.0/24"), None, 100)
            .unwrap();
        b.save(&dir).unwrap();
        assert_eq!(Blocks::load(&dir, 105).unwrap(), b);
        let later = Blocks::load(&dir, 110).unwrap();
        assert_eq!(later.nets().collect::<Vec<_>>(), vec![net("198.18.2.0/24")]);
        std::fs::write(dir.join("blocks.json"), "{\"blocks\": [{\"cidr\": \"x\"}]}").unwrap();
        let e = Blocks::load(&dir, 0).unwrap_err().to_string();
        assert!(e.contains("blocks.json") && e.contains("line 1"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
