//! The running policy, versioned and kept across restarts in the state
//! directory.
//!
//! `<state_dir>/policy.toml` always holds the policy the daemon runs. It is
//! rewritten — durably: a temporary file in the same directory, fsync,
//! rename, fsync of the directory — *before* a new policy is applied, so a
//! crash at any moment leaves the old policy or the new one, never a mix,
//! and what is on disk is never older than what was running.
//!
//! Its body is a policy file (`rstwall analyze --policy` reads it); a few
//! comment lines before it carry what the next start needs:
//!
//! * `policy_version` — a counter, one up each time the running policy
//!   changes, kept across restarts (the control API shows it);
//! * `configured_digest` — the [`Digest`] of the *configured* policy (the
//!   policy file named by the config or `--policy`, with `--mode` applied)
//!   when it was last loaded.
//!
//! # Which policy a start runs
//!
//! The newest intent wins:
//!
//! 1. `--policy` or `--mode` on the command line: the configured policy.
//!    Flags are explicit, so they beat anything remembered.
//! 2. Otherwise, the persisted policy — unless the configured policy has
//!    changed since it was last loaded (its digest differs from
//!    `configured_digest`): then someone edited the policy file, or pointed
//!    the config at another one, after the state was written, and the
//!    configured policy wins. So an edit followed by a restart is applied as
//!    an operator expects, while a policy changed at run time (the control
//!    API) survives a restart of an unchanged configuration.
//! 3. No persisted state: the configured policy (the default policy, in
//!    monitor mode, when none is configured).
//!
//! A state file that cannot be read or is not valid stops the start with
//! an error that names it and the line: it is never skipped silently.
//!
//! The directory is locked (`flock` on `<state_dir>/lock`) for as long as
//! the daemon runs: two daemons sharing one state would overwrite each
//! other's policy.

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use rstwall_engine::policy::PolicyConfig;

/// A content hash of a policy: FNV-1a (64 bits) over its canonical TOML
/// ([`PolicyConfig::to_toml_string`], every key written in a fixed order),
/// so two equal policies have the same digest however their files were
/// written. For recognising change, not for security.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Digest(pub u64);

impl Digest {
    pub fn of(policy: &PolicyConfig) -> Digest {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in policy.to_toml_string().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Digest(h)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for Digest {
    type Err = ();
    fn from_str(s: &str) -> Result<Digest, ()> {
        if s.len() != 16 {
            return Err(());
        }
        u64::from_str_radix(s, 16).map(Digest).map_err(|_| ())
    }
}

/// The running policy and what the next start needs to know about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyState {
    /// One up each time the running policy changes; from 1.
    pub version: u64,
    pub policy: PolicyConfig,
    /// The configured policy when it was last loaded.
    pub configured: Digest,
}

/// Where the start-up policy came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `--policy`/`--mode` on the command line.
    Flags,
    /// The persisted state (the configuration had not changed).
    Restored,
    /// The configuration: no state yet, or the configured policy changed.
    Configured,
}

impl PolicyState {
    /// The policy a start runs (see the module docs): the persisted state,
    /// or `configured` adopted as the next version.
    pub fn at_start(
        configured: &PolicyConfig,
        from_flags: bool,
        persisted: Option<PolicyState>,
    ) -> (PolicyState, Origin) {
        let digest = Digest::of(configured);
        match persisted {
            Some(p) if !from_flags && p.configured == digest => (p, Origin::Restored),
            p => (
                PolicyState::adopt(p.as_ref(), configured),
                if from_flags {
                    Origin::Flags
                } else {
                    Origin::Configured
                },
            ),
        }
    }

    /// `configured` as the running policy after `prev`: the same version
    /// if the policy did not change, the next one if it did.
    pub fn adopt(prev: Option<&PolicyState>, configured: &PolicyConfig) -> PolicyState {
        let version = match prev {
            None => 1,
            Some(p) if p.policy == *configured => p.version,
            Some(p) => p.version + 1,
        };
        PolicyState {
            version,
            policy: configured.clone(),
            configured: Digest::of(configured),
        }
    }

    /// The digest of the running policy (not of the configured one).
    pub fn digest(&self) -> Digest {
        Digest::of(&self.policy)
    }

    /// The state file's text.
    pub fn render(&self) -> String {
        format!(
            "{MAGIC}: the policy rstwall runs, restored when it starts.\n\
             # Written by rstwall whenever the policy changes: edit the configured\n\
             # policy file and reload (SIGHUP) rather than this file. Below the\n\
             # header it is a policy file (`rstwall analyze --policy` reads it).\n\
             # policy_version = {}\n\
             # configured_digest = {}\n\
             {}",
            self.version,
            self.configured,
            self.policy.to_toml_string()
        )
    }

    /// Read a state file's text (errors name the line, not the file).
    pub fn parse(text: &str) -> Result<PolicyState, String> {
        if !text.starts_with(MAGIC) {
            return Err(format!(
                "line 1: not written by rstwall (it starts with `{MAGIC}`)"
            ));
        }
        let mut version = None;
        let mut configured = None;
        for (i, line) in text.lines().enumerate() {
            let Some(comment) = line.strip_prefix('#') else {
                break;
            };
            let Some((key, value)) = comment.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            let bad = || format!("line {}: {key}: bad value {value:?}", i + 1);
            match key {
                "policy_version" => match value.parse::<u64>() {
                    Ok(v) if v >= 1 => version = Some(v),
                    _ => return Err(bad()),
                },
                "configured_digest" => configured = Some(value.parse().map_err(|()| bad())?),
                _ => {}
            }
        }
        let missing = |key: &str| format!("the header has no `# {key} = ...` line");
        let version = version.ok_or_else(|| missing("policy_version"))?;
        let configured = configured.ok_or_else(|| missing("configured_digest"))?;
        let policy = PolicyConfig::from_toml_str(text).map_err(|e| e.to_string())?;
        Ok(PolicyState {
            version,
            policy,
            configured,
        })
    }
}

/// The first words of every state file.
const MAGIC: &str = "# rstwall policy state";

/// The state directory, locked for this process.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// Holds the `flock`; released when the process ends, however it ends.
    _lock: File,
}

impl StateDir {
    /// Create the directory if needed (mode 0750) and lock it.
    pub fn open(path: &Path) -> anyhow::Result<StateDir> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(path)
            .with_context(|| format!("state directory {}: cannot create it", path.display()))?;
        let lock_path = path.join("lock");
        let mut lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&lock_path)
            .with_context(|| format!("state directory: cannot open {}", lock_path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut pid = String::new();
                let _ = lock.read_to_string(&mut pid);
                return Err(anyhow!(
                    "state directory {} is in use by another rstwall (pid {}): give each \
                     instance its own --state-dir",
                    path.display(),
                    pid.trim()
                ));
            }
            return Err(anyhow!(e).context(format!("locking {}", lock_path.display())));
        }
        // Ours now: say who holds it, for the message above.
        lock.set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| writeln!(lock, "{}", std::process::id()))
            .with_context(|| format!("writing {}", lock_path.display()))?;
        Ok(StateDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn policy_path(&self) -> PathBuf {
        self.path.join("policy.toml")
    }

    /// The persisted policy, `None` if there is none yet.
    pub fn load_policy(&self) -> anyhow::Result<Option<PolicyState>> {
        let path = self.policy_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(anyhow!(e).context(format!(
                    "persisted policy {}: cannot read it",
                    path.display()
                )))
            }
        };
        PolicyState::parse(&text).map(Some).map_err(|e| {
            anyhow!(
                "persisted policy {} is not valid: {e}; fix it, or remove it to start \
                 from the configured policy",
                path.display()
            )
        })
    }

    /// Replace the persisted policy, durably and atomically.
    pub fn save_policy(&self, state: &PolicyState) -> anyhow::Result<()> {
        let path = self.policy_path();
        write_durably(&path, state.render().as_bytes())
            .with_context(|| format!("persisting the policy to {}", path.display()))
    }
}

/// Write `bytes` to `path` so that after a crash at any point `path` holds
/// either its old content or all of the new: a temporary file in the same
/// directory (same filesystem, so the rename is atomic), fsync'd, renamed
/// over `path`, then the directory fsync'd so the rename itself is on disk.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(lines: &[&str]) -> PolicyConfig {
        let mut c = PolicyConfig::default();
        for l in lines {
            c.set_assignment(l).unwrap();
        }
        c
    }

    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let p = std::env::temp_dir().join(format!(
                "rstwall-persist-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            Tmp(p)
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn digest_is_of_the_content_not_the_spelling() {
        let a = PolicyConfig::from_toml_str("mode = 'enforce'\n").unwrap();
        let b = PolicyConfig::from_toml_str("# hello\nmode   =   \"enforce\"\n[lists]\n").unwrap();
        assert_eq!(Digest::of(&a), Digest::of(&b));
        assert_ne!(Digest::of(&a), Digest::of(&PolicyConfig::default()));
        let d = Digest::of(&a);
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        assert_eq!(d.to_string().len(), 16);
    }

    #[test]
    fn state_round_trips_through_its_file() {
        let s = PolicyState {
            version: 42,
            policy: policy(&[
                "mode=enforce",
                "actions.no_flow=ratelimit",
                "lists.deny=198.19.0.0/16",
            ]),
            configured: Digest(0x0123_4567_89ab_cdef),
        };
        let text = s.render();
        assert!(text.contains("# policy_version = 42\n"), "{text}");
        assert_eq!(PolicyState::parse(&text), Ok(s.clone()));
        // The body is a policy file as it is.
        assert_eq!(PolicyConfig::from_toml_str(&text).unwrap(), s.policy);
    }

    #[test]
    fn bad_state_files_are_named_by_line() {
        let good = PolicyState::adopt(None, &policy(&["mode=enforce"])).render();
        let cases = [
            (
                "mode = \"enforce\"\n".to_string(),
                "line 1: not written by rstwall",
            ),
            (
                good.replace("policy_version = 1", "policy_version = x"),
                "line 5: policy_version: bad value \"x\"",
            ),
            (
                good.replace("policy_version = 1", "policy_version = 0"),
                "line 5: policy_version",
            ),
            (
                good.replace("# policy_version = 1\n", ""),
                "no `# policy_version = ...` line",
            ),
            (
                good.replace("configured_digest = ", "configured_digest = zz"),
                "line 6: configured_digest",
            ),
            (
                good.replace("mode = \"enforce\"", "mode = \"block\""),
                "line 7, column 8: mode: unknown mode",
            ),
            (
                good.replace("mode = \"enforce\"", "mood = 1"),
                "line 7, column 1: unknown field `mood`",
            ),
        ];
        for (text, needle) in cases {
            let e = PolicyState::parse(&text).expect_err(needle);
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
    }

    #[test]
    fn start_up_precedence() {
        let file_a = policy(&["mode=enforce"]);
        let file_b = policy(&["mode=enforce", "actions.no_flow=drop"]);
        // First start: the configured policy, version 1.
        let (s, o) = PolicyState::at_start(&file_a, false, None);
        assert_eq!((s.version, o), (1, Origin::Configured));
        assert_eq!(s.policy, file_a);

        // Changed at run time (the control API): version 2, configured
        // digest still file A's.
        let mut runtime = s.clone();
        runtime.policy.set("actions.abort", "drop").unwrap();
        runtime.version += 1;

        // Restart, file unchanged: the run-time policy survives.
        let (s, o) = PolicyState::at_start(&file_a, false, Some(runtime.clone()));
        assert_eq!((s, o), (runtime.clone(), Origin::Restored));

        // Restart after the file was edited: the file wins, next version.
        let (s, o) = PolicyState::at_start(&file_b, false, Some(runtime.clone()));
        assert_eq!((s.version, o), (3, Origin::Configured));
        assert_eq!(
            (s.policy, s.configured),
            (file_b.clone(), Digest::of(&file_b))
        );

        // Flags always win, even over an unchanged configuration.
        let (s, o) = PolicyState::at_start(&file_a, true, Some(runtime.clone()));
        assert_eq!((s.version, o), (3, Origin::Flags));
        assert_eq!(s.policy, file_a);

        // Adopting the policy that already runs keeps its version.
        let same = PolicyState::adopt(Some(&runtime), &runtime.policy);
        assert_eq!(same.version, runtime.version);
    }

    #[test]
    fn state_dir_saves_loads_and_locks() {
        let tmp = Tmp::new("dir");
        let dir = tmp.0.join("nested/state");
        let state = StateDir::open(&dir).unwrap();
        assert!(state.load_policy().unwrap().is_none());
        let s = PolicyState::adopt(None, &policy(&["mode=enforce"]));
        state.save_policy(&s).unwrap();
        assert_eq!(state.load_policy().unwrap(), Some(s.clone()));
        // No temporary file is left behind.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, ["lock", "policy.toml"]);

        // A second holder is refused, with our pid in the message. (flock
        // locks belong to the open file description, so a second open in
        // this process conflicts like another process would.)
        let e = StateDir::open(&dir).unwrap_err().to_string();
        assert!(e.contains("in use by another rstwall"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(state);
        let again = StateDir::open(&dir).unwrap();

        // A damaged file is an error naming it, never ignored.
        std::fs::write(again.policy_path(), "garbage\n").unwrap();
        let e = format!("{:#}", again.load_policy().unwrap_err());
        assert!(
            e.contains(&again.policy_path().display().to_string()),
            "{e}"
        );
        assert!(
            e.contains("not written by rstwall") && e.contains("remove it"),
            "{e}"
        );
    }

    #[test]
    fn write_durably_replaces_whole_files() {
        let tmp = Tmp::new("write");
        std::fs::create_dir_all(&tmp.0).unwrap();
        let p = tmp.0.join("f.toml");
        write_durably(&p, b"one").unwrap();
        write_durably(&p, b"two, longer").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two, longer");
        assert!(write_durably(&tmp.0.join("missing/f"), b"x").is_err());
    }
}
