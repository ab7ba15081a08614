//! The lab's network: five namespaces, and rstwall inline between them.
//!
//! ```text
//!  client  c0 198.18.0.1 ─┐                 appliance
//!                         ├─ lan (br0) ─ la ─ pa ══ rstwall run ══ pb ─ s0 198.18.0.2  server
//!  attacker x0 198.18.0.3 ─┘                          --inline pa,pb
//! ```
//!
//! Client, attacker and server share 198.18.0.0/24; the appliance is a
//! bump in the wire, so everything between the outside (client, attacker)
//! and the server crosses rstwall's XDP program and its AF_XDP workers.
//! Spoofed "internet" sources come from 198.19.0.0/16; the server routes
//! that range to the attacker, whose kernel drops what comes back (it does
//! not forward), as the real internet would for spoofed addresses.
//! Addresses and MAC addresses are fixed and neighbours are static: no ARP
//! and no IPv6 chatter crosses the wire, only the traffic of the scenarios.
//!
//! Everything is named after the lab: namespaces `rwlab-NAME-ROLE`, files
//! in `DIR/NAME/`. Interface names are the same in every lab (they live in
//! the lab's own namespaces), so labs with different names run side by
//! side.
//!
//! Two veth details, invisible on real NICs (as in the datapath tests):
//! the hosts' veths do no TX checksum offload (a frame handed to AF_XDP
//! would keep a partial checksum, and the receiver would drop it), and the
//! veths that receive what rstwall forwards (`la`, `s0`) have GRO on (veth
//! accepts frames redirected to it by XDP only when its peer runs NAPI).

use std::fs::File;
use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rstwall_api::Stats;
use rstwall_engine::policy::{Mode, PolicyConfig};
use rstwall_netlab::ethtool::{self, Offload};
use rstwall_netlab::{netns, signal_process, Mac, Namespaces, Netns, Veth};

use super::stats;

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const ATTACKER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);

/// Interfaces of the hosts, inside their namespaces.
pub const CLIENT_IF: &str = "c0";
pub const SERVER_IF: &str = "s0";
pub const ATTACKER_IF: &str = "x0";
/// The lan's port towards the appliance's `pa`.
pub const LAN_TO_APPLIANCE: &str = "la";

/// Where lab directories go unless `--dir` says otherwise.
pub const DEFAULT_BASE: &str = "/run/rstwall-lab";
pub const DEFAULT_NAME: &str = "default";

/// How often the daemon rewrites its statistics file.
pub const STATS_INTERVAL: Duration = Duration::from_millis(250);

/// The roles, in the order they are built; each is one namespace.
const ROLES: [&str; 5] = ["client", "attacker", "lan", "appliance", "server"];

const MAC_CLIENT: Mac = Mac([0x02, 0x72, 0x77, 0, 0, 1]);
const MAC_SERVER: Mac = Mac([0x02, 0x72, 0x77, 0, 0, 2]);
const MAC_ATTACKER: Mac = Mac([0x02, 0x72, 0x77, 0, 0, 3]);

/// Which lab: its name and the directory its files go under.
#[derive(Clone, Debug)]
pub struct LabConfig {
    pub name: String,
    pub base: PathBuf,
}

impl LabConfig {
    /// Check the name: it becomes part of namespace names and a directory.
    pub fn new(name: &str, base: &Path) -> Result<LabConfig, String> {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-');
        if !ok {
            return Err(format!(
                "--name {name:?}: use 1 to 32 characters a-z, 0-9 and '-', not starting with '-'"
            ));
        }
        if !base.is_absolute() {
            return Err(format!("--dir {}: give an absolute path", base.display()));
        }
        let cfg = LabConfig {
            name: name.to_string(),
            base: base.to_path_buf(),
        };
        // sockaddr_un holds 108 bytes, the terminating NUL included.
        if cfg.control_socket().as_os_str().len() > 107 {
            return Err(format!(
                "--dir {}: too long for the lab's control socket path (Unix sockets take 107 bytes)",
                base.display()
            ));
        }
        Ok(cfg)
    }

    pub fn dir(&self) -> PathBuf {
        self.base.join(&self.name)
    }

    /// The namespace of a role (`client`, `attacker`, `lan`, `appliance`,
    /// `server`): `rwlab-NAME-ROLE`.
    pub fn ns(&self, role: &str) -> String {
        Namespaces::named(&self.ns_prefix()).name_of(role)
    }

    fn ns_prefix(&self) -> String {
        format!("rwlab-{}", self.name)
    }

    pub fn namespaces(&self) -> Vec<String> {
        ROLES.iter().map(|r| self.ns(r)).collect()
    }

    pub fn stats_path(&self) -> PathBuf {
        self.dir().join("stats.json")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("rstwall.log")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.dir().join("rstwall.pid")
    }
    pub fn policy_path(&self) -> PathBuf {
        self.dir().join("policy.toml")
    }
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }
    /// Where the daemon's control API listens (`rstwall stats --socket
    /// PATH` and the other clients).
    pub fn control_socket(&self) -> PathBuf {
        self.dir().join("rstwall.sock")
    }
    fn lock_path(&self) -> PathBuf {
        self.base.join(format!(".{}.lock", self.name))
    }
}

/// One lab command at a time per lab: held while a command works on it.
/// Its file goes when it is released after the lab is gone.
pub struct LabLock {
    _file: File,
    path: PathBuf,
    dir: PathBuf,
}

impl LabLock {
    pub fn take(cfg: &LabConfig) -> anyhow::Result<LabLock> {
        std::fs::create_dir_all(&cfg.base)
            .with_context(|| format!("creating {}", cfg.base.display()))?;
        let path = cfg.lock_path();
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file we hold open.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!(
                "lab {:?} is busy: another `rstwall lab` command is working on it",
                cfg.name
            );
        }
        Ok(LabLock {
            _file: file,
            path,
            dir: cfg.dir(),
        })
    }
}

impl Drop for LabLock {
    fn drop(&mut self) {
        if !self.dir.exists() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A lab that is up: its namespaces exist and its daemon runs.
pub struct Lab {
    pub cfg: LabConfig,
    pid: u32,
    /// The daemon, when this process started it (then it is reaped here).
    child: Option<Child>,
}

impl Lab {
    /// Clear whatever an earlier lab of this name left, build the network
    /// and start rstwall in `mode`. On failure, nothing is left behind.
    pub fn up(cfg: &LabConfig, mode: Mode) -> anyhow::Result<Lab> {
        teardown(cfg)?;
        let guard = TeardownGuard::new(cfg.clone());
        let namespaces = build_network(cfg)?;
        let lab = start_daemon(cfg, mode)?;
        // From here on `down` (or the next `up`) removes them.
        namespaces.keep();
        guard.disarm();
        Ok(lab)
    }

    /// The lab of this name if it is up and whole: every namespace there
    /// and its daemon alive.
    pub fn find(cfg: &LabConfig) -> Option<Lab> {
        let all_ns = cfg.namespaces().iter().all(|ns| netns::exists(ns));
        let pid = daemon_pid(cfg)?;
        (all_ns && cfg.stats_path().exists()).then(|| Lab {
            cfg: cfg.clone(),
            pid,
            child: None,
        })
    }

    /// Whether anything of this lab exists (a namespace, its directory).
    pub fn traces(cfg: &LabConfig) -> bool {
        cfg.dir().exists() || cfg.namespaces().iter().any(|ns| netns::exists(ns))
    }

    pub fn ns(&self, role: &str) -> String {
        self.cfg.ns(role)
    }

    pub fn daemon_pid(&self) -> u32 {
        self.pid
    }

    /// The daemon still runs.
    pub fn daemon_alive(&self) -> bool {
        alive(self.pid)
    }

    /// The daemon's statistics now.
    pub fn stats(&self) -> anyhow::Result<Stats> {
        stats::read(&self.cfg)
    }

    /// The daemon's policy mode, per its statistics.
    pub fn mode(&self) -> anyhow::Result<Mode> {
        Ok(self.stats()?.mode)
    }

    /// Switch the running policy to `mode`: rewrite the lab's policy file
    /// and reload (SIGHUP), then wait until every worker runs it.
    pub fn set_mode(&mut self, mode: Mode) -> anyhow::Result<()> {
        let before = self.stats()?;
        if before.mode == mode {
            return Ok(());
        }
        write_policy(&self.cfg, mode)?;
        if !signal_process(self.pid, libc::SIGHUP) {
            bail!("rstwall (pid {}) is gone:\n{}", self.pid, self.log_tail(20));
        }
        let version = before.policy.version;
        let generation = before.totals.policy_generation_max;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.stats()?;
            // Every worker runs the new policy: the oldest generation in use
            // is newer than any before.
            let applied = s.totals.policy_generation_min > generation;
            if s.mode == mode && s.policy.version > version && applied {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "rstwall did not switch to {mode} mode within 10 s:\n{}",
                    self.log_tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `n` lines of the daemon's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.cfg, n)
    }

    /// Stop the daemon and remove the namespaces and files.
    pub fn down(mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            stop_process(self.pid, Some(&mut child));
        }
        teardown(&self.cfg)
    }

    /// Forget this process's handle on the daemon: it keeps running after
    /// this process exits (`lab up`).
    pub fn detach(mut self) {
        self.child = None;
    }
}

/// Removes a lab when dropped, unless disarmed: what a failed or
/// interrupted command built never outlives it, even on a panic.
pub struct TeardownGuard {
    cfg: Option<LabConfig>,
}

impl TeardownGuard {
    pub fn new(cfg: LabConfig) -> TeardownGuard {
        TeardownGuard { cfg: Some(cfg) }
    }
    pub fn disarm(mut self) {
        self.cfg = None;
    }
}

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        if let Some(cfg) = self.cfg.take() {
            if let Err(e) = teardown(&cfg) {
                eprintln!("rstwall: lab {}: cleaning up: {e:#}", cfg.name);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// building

/// Build the lab's namespaces and network; the guard removes them unless
/// kept.
fn build_network(cfg: &LabConfig) -> anyhow::Result<Namespaces> {
    let mut namespaces = Namespaces::named(&cfg.ns_prefix());
    let mut add = |role| namespaces.add(role);
    let (client, attacker, lan, appliance, server) = (
        add(ROLES[0])?,
        add(ROLES[1])?,
        add(ROLES[2])?,
        add(ROLES[3])?,
        add(ROLES[4])?,
    );
    let host = |mac| Veth {
        mac: Some(mac),
        ..Veth::default()
    };
    client.add_veth(CLIENT_IF, &lan, "lc", &host(MAC_CLIENT))?;
    attacker.add_veth(ATTACKER_IF, &lan, "lx", &host(MAC_ATTACKER))?;
    appliance.add_veth("pa", &lan, LAN_TO_APPLIANCE, &Veth::default())?;
    appliance.add_veth(
        "pb",
        &server,
        SERVER_IF,
        &Veth {
            peer_mac: Some(MAC_SERVER),
            ..Veth::default()
        },
    )?;
    lan.add_bridge("br0", &["lc", "lx", "la"])?;

    // Offloads (see the module docs), and IPv6 off on every device.
    for (ns, dev, gro) in [
        (&client, CLIENT_IF, false),
        (&attacker, ATTACKER_IF, false),
        (&server, SERVER_IF, true),
    ] {
        ns.run(|| -> std::io::Result<()> {
            ethtool::set(dev, Offload::TxChecksum, false)?;
            if gro {
                ethtool::set(dev, Offload::Gro, true)?;
            }
            Ok(())
        })??;
        ns.disable_ipv6(&[dev])?;
    }
    lan.run(|| ethtool::set("la", Offload::Gro, true))??;
    lan.disable_ipv6(&["lc", "lx", "la", "br0"])?;
    appliance.disable_ipv6(&["pa", "pb"])?;

    let cidr = |a: Ipv4Addr| format!("{a}/24");
    client.add_addr(CLIENT_IF, &cidr(CLIENT))?;
    attacker.add_addr(ATTACKER_IF, &cidr(ATTACKER))?;
    server.add_addr(SERVER_IF, &cidr(SERVER))?;
    for (ns, dev) in [
        (&client, CLIENT_IF),
        (&attacker, ATTACKER_IF),
        (&server, SERVER_IF),
        (&lan, "lc"),
        (&lan, "lx"),
        (&lan, "la"),
        (&lan, "br0"),
        (&appliance, "pa"),
        (&appliance, "pb"),
    ] {
        ns.set_up(dev)?;
    }
    for (ns, dev, peers) in [
        (
            &client,
            CLIENT_IF,
            [(SERVER, MAC_SERVER), (ATTACKER, MAC_ATTACKER)],
        ),
        (
            &attacker,
            ATTACKER_IF,
            [(SERVER, MAC_SERVER), (CLIENT, MAC_CLIENT)],
        ),
        (
            &server,
            SERVER_IF,
            [(CLIENT, MAC_CLIENT), (ATTACKER, MAC_ATTACKER)],
        ),
    ] {
        for (addr, mac) in peers {
            ns.add_neighbour(dev, &addr.to_string(), mac)?;
        }
    }
    // Answers to spoofed "internet" sources go to the attacker, who drops
    // them.
    server.add_route("198.19.0.0/16", &ATTACKER.to_string(), SERVER_IF)?;
    Ok(namespaces)
}

// ---------------------------------------------------------------------------
// the daemon
// ---------------------------------------------------------------------------

/// The lab's policy: rstwall's defaults, in `mode`.
fn write_policy(cfg: &LabConfig, mode: Mode) -> anyhow::Result<()> {
    let mut policy = PolicyConfig::default();
    policy.set_mode(mode);
    let path = cfg.policy_path();
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, policy.to_toml_string())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("writing {}", path.display()))
}

/// The arguments of `rstwall run` in the appliance namespace.
fn daemon_args(cfg: &LabConfig) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "run",
        "--inline",
        "pa,pb",
        "--stats-interval",
        &STATS_INTERVAL.as_secs_f64().to_string(),
        // The appliance namespace has its own loopback: the endpoint is
        // private to the lab (`ip netns exec rwlab-NAME-appliance curl
        // 127.0.0.1:9717/metrics`).
        "--metrics-listen",
        "127.0.0.1:9717",
        "--log-level",
        "info",
    ]
    .iter()
    .map(Into::into)
    .collect();
    // The control socket is a file, not namespaced: each lab needs its own
    // (the default one belongs to the machine's own rstwall).
    for (flag, path) in [
        ("--policy", cfg.policy_path()),
        ("--state-dir", cfg.state_dir()),
        ("--stats-json", cfg.stats_path()),
        ("--control-socket", cfg.control_socket()),
    ] {
        args.push(flag.into());
        args.push(path.into());
    }
    args
}

fn start_daemon(cfg: &LabConfig, mode: Mode) -> anyhow::Result<Lab> {
    let dir = cfg.dir();
    std::fs::create_dir_all(cfg.state_dir())
        .with_context(|| format!("creating {}", dir.display()))?;
    write_policy(cfg, mode)?;
    let exe = std::env::current_exe().context("the path of this rstwall binary")?;
    let log = File::options()
        .create(true)
        .append(true)
        .open(cfg.log_path())
        .with_context(|| format!("opening {}", cfg.log_path().display()))?;
    let child = Netns::open(&cfg.ns("appliance"))?
        .command(&exe)
        .args(daemon_args(cfg))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C meant for `lab run` is not its.
        .process_group(0)
        .spawn()
        .context("starting rstwall in the appliance namespace")?;
    // `ip netns exec` execs rstwall: the child is the daemon itself.
    let pid = child.id();
    let mut lab = Lab {
        cfg: cfg.clone(),
        pid,
        child: Some(child),
    };
    std::fs::write(cfg.pid_path(), format!("{pid}\n"))
        .with_context(|| format!("writing {}", cfg.pid_path().display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Its first statistics file: the sockets are registered, TCP flows
    // through the workers.
    while !cfg.stats_path().exists() {
        if let Some(child) = lab.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                lab.child = None;
                bail!(
                    "rstwall exited at start-up ({status}); its log:\n{}",
                    log_tail(cfg, 30)
                );
            }
        }
        if Instant::now() > deadline {
            bail!(
                "rstwall did not start within 30 s; its log:\n{}",
                log_tail(cfg, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(lab)
}

fn log_tail(cfg: &LabConfig, n: usize) -> String {
    let Ok(f) = File::open(cfg.log_path()) else {
        return String::from("  (no log)");
    };
    let lines: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| format!("  {l}\n")).collect()
}

/// The running daemon of this lab, per its pid file: alive, and started
/// with this lab's statistics file (a recycled pid is not it).
fn daemon_pid(cfg: &LabConfig) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(cfg.pid_path())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (alive(pid) && started_with(pid, &cfg.stats_path())).then_some(pid)
}

/// Running, not a zombie: a daemon whose parent exited is reaped by
/// whatever inherited it, maybe never.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

fn started_with(pid: u32, arg: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = arg.as_os_str().as_encoded_bytes();
    cmdline.split(|&b| b == 0).any(|a| a == want)
}

/// SIGTERM (a clean stop: rstwall detaches its XDP programs), then SIGKILL
/// if it has not exited within 15 s.
fn stop_process(pid: u32, mut child: Option<&mut Child>) {
    let exited = |child: &mut Option<&mut Child>| match child {
        Some(c) => !matches!(c.try_wait(), Ok(None)),
        None => !alive(pid),
    };
    if exited(&mut child) {
        return;
    }
    signal_process(pid, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if exited(&mut child) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_process(pid, libc::SIGKILL);
    if let Some(c) = child {
        let _ = c.wait();
    }
}

/// Every rstwall process whose network namespace is `ns`, whatever
/// started it (a pid file can be lost).
fn rstwall_processes_in(ns: &str) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(target) = std::fs::metadata(netns::path(ns)) else {
        return Vec::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|m| m.ino() == target.ino() && m.dev() == target.dev())
        })
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end() == "rstwall")
        })
        .filter(|&pid| alive(pid))
        .collect()
}

/// Remove every trace of a lab: its daemon (by pid file, and any rstwall
/// in its appliance namespace), its namespaces (their veths and the
/// bridge go with them), its directory. Fine when there is nothing.
pub fn teardown(cfg: &LabConfig) -> anyhow::Result<()> {
    let mut pids: Vec<u32> = daemon_pid(cfg).into_iter().collect();
    for pid in rstwall_processes_in(&cfg.ns("appliance")) {
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    for pid in pids {
        stop_process(pid, None);
    }
    let mut errors = Vec::new();
    for ns in cfg.namespaces() {
        if let Err(e) = netns::delete(&ns) {
            errors.push(e.to_string());
        }
    }
    let dir = cfg.dir();
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            errors.push(format!("removing {}: {e}", dir.display()));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("{}", errors.join("; ")))
    }
}

/// Print one line per namespace and the daemon, for `lab up`.
pub fn describe(lab: &Lab, out: &mut impl Write) -> std::io::Result<()> {
    let cfg = &lab.cfg;
    writeln!(out, "lab {:?} is up:", cfg.name)?;
    writeln!(
        out,
        "  client    {:<24} {CLIENT_IF} {CLIENT}/24",
        cfg.ns("client")
    )?;
    writeln!(
        out,
        "  attacker  {:<24} {ATTACKER_IF} {ATTACKER}/24 (spoofs 198.19.0.0/16 too)",
        cfg.ns("attacker")
    )?;
    writeln!(
        out,
        "  switch    {:<24} br0: client, attacker, appliance port pa",
        cfg.ns("lan")
    )?;
    writeln!(
        out,
        "  appliance {:<24} rstwall run --inline pa,pb (pid {})",
        cfg.ns("appliance"),
        lab.pid
    )?;
    writeln!(
        out,
        "  server    {:<24} {SERVER_IF} {SERVER}/24",
        cfg.ns("server")
    )?;
    writeln!(out, "  files     {}", cfg.dir().display())?;
    writeln!(
        out,
        "  watch     rstwall top --socket {}",
        cfg.control_socket().display()
    )?;
    writeln!(
        out,
        "  metrics   ip netns exec {} curl -s 127.0.0.1:9717/metrics",
        cfg.ns("appliance")
    )
}
