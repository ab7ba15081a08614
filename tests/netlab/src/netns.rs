//! Network namespaces: [`Netns`], a handle that runs code and commands
//! inside one, and [`Namespaces`], the guard that creates them and removes
//! them when dropped — on a panic too, and on SIGINT, SIGTERM or SIGHUP
//! once [`crate::remove_on_signal`] is armed.
//!
//! Namespaces are named ones (`ip netns add`, a file in `/run/netns`), so
//! `ip -n NAME`, `ip netns exec NAME` and other processes find them. setns(2)
//! moves only the calling thread; a socket belongs for its whole life to the
//! namespace of the thread that opened it, whichever thread uses it later.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::net::{check_lab_net, Mac};

/// Where `ip netns` keeps its namespaces.
const NETNS_DIR: &str = "/run/netns";

/// The longest interface name the kernel takes (IFNAMSIZ less the NUL).
pub const MAX_IFNAME: usize = libc::IFNAMSIZ - 1;

/// The file of a named namespace (`/run/netns/NAME`).
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether a named namespace exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Delete a named namespace (its interfaces go with it); fine when there is
/// none. Processes still inside keep it alive, unnamed, until they exit.
pub fn delete(name: &str) -> io::Result<()> {
    if !exists(name) {
        return Ok(());
    }
    run_ip(&["netns", "del", name]).map(drop)
}

/// The index of interface `name` in the calling thread's namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
    // SAFETY: a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("interface {name}: {e}")));
    }
    Ok(i)
}

/// An open handle on a named network namespace.
#[derive(Debug)]
pub struct Netns {
    name: String,
    file: File,
}

impl Netns {
    /// The namespace `/run/netns/NAME`.
    pub fn open(name: &str) -> io::Result<Netns> {
        let file = File::open(path(name))
            .map_err(|e| io::Error::new(e.kind(), format!("network namespace {name}: {e}")))?;
        Ok(Netns {
            name: name.to_string(),
            file,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Move the calling thread into this namespace for good; threads it
    /// spawns from then on start there too.
    pub fn enter(&self) -> io::Result<()> {
        setns(&self.file).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("entering network namespace {}: {e}", self.name),
            )
        })
    }

    /// Run `f` with the calling thread in this namespace, then bring the
    /// thread back, even if `f` panics. Threads `f` spawns stay inside.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> io::Result<T> {
        struct Back(File);
        impl Drop for Back {
            fn drop(&mut self) {
                if let Err(e) = setns(&self.0) {
                    // Carrying on in the wrong namespace would send the
                    // caller's sockets and netlink requests elsewhere.
                    eprintln!("cannot return to the original network namespace: {e}");
                    std::process::abort();
                }
            }
        }
        let home = File::open("/proc/thread-self/ns/net")?;
        self.enter()?;
        let _back = Back(home);
        Ok(f())
    }

    /// Spawn a thread that runs `f` inside this namespace; the thread
    /// panics if it cannot enter it.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<JoinHandle<T>> {
        let ns = Netns {
            name: self.name.clone(),
            file: self.file.try_clone()?,
        };
        Ok(thread::spawn(move || {
            if let Err(e) = ns.enter() {
                panic!("{e}");
            }
            f()
        }))
    }

    /// `ip netns exec NAME PROGRAM`: a command run inside (add arguments,
    /// then spawn it).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// `ip -n NAME ARGS...`; its standard output, or an error with its
    /// standard error.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_ip(&all)
    }

    /// Write `/proc/sys/KEY` (`net/ipv4/...`) inside this namespace. A key
    /// that does not exist is an error.
    pub fn sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        let path = format!("/proc/sys/{key}");
        self.run(|| std::fs::write(&path, value))?
            .map_err(|e| io::Error::new(e.kind(), format!("{path} in {}: {e}", self.name)))
    }

    /// Write the device `dev`'s `napi_defer_hard_irqs` and
    /// `gro_flush_timeout` (ns) inside this namespace (through `ip netns
    /// exec`, whose /sys is the namespace's): the interrupt deferral that
    /// preferred busy polling works with. 0 and 0 are the kernel's
    /// defaults.
    pub fn set_napi_defer(
        &self,
        dev: &str,
        defer_hard_irqs: u32,
        gro_flush_timeout_ns: u64,
    ) -> io::Result<()> {
        let script = format!(
            "echo {defer_hard_irqs} > /sys/class/net/{dev}/napi_defer_hard_irqs && \
             echo {gro_flush_timeout_ns} > /sys/class/net/{dev}/gro_flush_timeout"
        );
        let out = self.command("sh").args(["-c", &script]).output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{dev} in {}: napi_defer_hard_irqs/gro_flush_timeout: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// IPv6 off on the namespace's devices `devs` (`all`, `default` and
    /// names): no link-local addresses, router solicitations or MLD on the
    /// wire. A kernel without IPv6 has nothing to turn off.
    pub fn disable_ipv6(&self, devs: &[&str]) -> io::Result<()> {
        for dev in devs {
            match self.sysctl(&format!("net/ipv6/conf/{dev}/disable_ipv6"), "1") {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// A veth pair: `name` here, `peer_name` in `peer` (which may be this
    /// namespace). Both ends are created down.
    pub fn add_veth(
        &self,
        name: &str,
        peer: &Netns,
        peer_name: &str,
        opts: &Veth,
    ) -> io::Result<()> {
        for n in [name, peer_name] {
            check_ifname(n)?;
        }
        let queues = opts.queues.map(|q| q.to_string());
        let (mac, peer_mac) = (
            opts.mac.map(|m| m.to_string()),
            opts.peer_mac.map(|m| m.to_string()),
        );
        let mut args = vec!["link", "add", name];
        push_end(&mut args, mac.as_deref(), queues.as_deref());
        args.extend(["type", "veth", "peer", "name", peer_name]);
        push_end(&mut args, peer_mac.as_deref(), queues.as_deref());
        args.extend(["netns", peer.name()]);
        self.ip(&args).map(drop)
    }

    /// A bridge `name` with `ports` enslaved.
    pub fn add_bridge(&self, name: &str, ports: &[&str]) -> io::Result<()> {
        check_ifname(name)?;
        self.ip(&["link", "add", name, "type", "bridge"])?;
        for port in ports {
            self.ip(&["link", "set", port, "master", name])?;
        }
        Ok(())
    }

    pub fn set_up(&self, dev: &str) -> io::Result<()> {
        self.ip(&["link", "set", dev, "up"]).map(drop)
    }

    pub fn set_mac(&self, dev: &str, mac: Mac) -> io::Result<()> {
        self.ip(&["link", "set", dev, "address", &mac.to_string()])
            .map(drop)
    }

    /// Give `dev` the address `cidr` (`198.18.0.1/24`): only lab addresses.
    pub fn add_addr(&self, dev: &str, cidr: &str) -> io::Result<()> {
        check_lab_net(cidr)?;
        self.ip(&["addr", "add", cidr, "dev", dev]).map(drop)
    }

    /// Route the lab network `to` via the lab address `via` on `dev`.
    pub fn add_route(&self, to: &str, via: &str, dev: &str) -> io::Result<()> {
        check_lab_net(to)?;
        check_lab_net(via)?;
        self.ip(&["route", "add", to, "via", via, "dev", dev])
            .map(drop)
    }

    /// A permanent neighbour entry: no ARP or ND on the wire.
    pub fn add_neighbour(&self, dev: &str, addr: &str, mac: Mac) -> io::Result<()> {
        check_lab_net(addr)?;
        let mac = mac.to_string();
        self.ip(&[
            "neigh",
            "replace",
            addr,
            "lladdr",
            &mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ])
        .map(drop)
    }
}

/// Options of [`Netns::add_veth`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Veth {
    pub mac: Option<Mac>,
    pub peer_mac: Option<Mac>,
    /// RX and TX queues of each end (veth's default: one).
    pub queues: Option<u32>,
}

fn push_end<'a>(args: &mut Vec<&'a str>, mac: Option<&'a str>, queues: Option<&'a str>) {
    if let Some(mac) = mac {
        args.extend(["address", mac]);
    }
    if let Some(q) = queues {
        args.extend(["numtxqueues", q, "numrxqueues", q]);
    }
}

fn check_ifname(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() > MAX_IFNAME || name.contains(['/', ' ']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?}: 1 to {MAX_IFNAME} bytes, no '/' or space"),
        ));
    }
    Ok(())
}

fn setns(f: &File) -> io::Result<()> {
    // SAFETY: setns on an open namespace fd; it affects the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Run `ip ARGS...`; its standard output, or an error with its standard
/// error.
fn run_ip(args: &[&str]) -> io::Result<String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running ip (iproute2): {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---------------------------------------------------------------------------
// the guard

/// Namespaces this process made and has not handed over: what a signal
/// removes ([`crate::remove_on_signal`]).
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<String>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Delete every namespace a guard of this process still holds (the signal
/// handler's job).
pub(crate) fn delete_live() {
    for name in live().drain(..) {
        let _ = delete(&name);
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Creates named network namespaces and deletes them when dropped.
///
/// Each is `PREFIX-ROLE`. [`Namespaces::unique`] makes the prefix unique to
/// this process and call, for tests and benchmarks; [`Namespaces::named`]
/// takes it as given, for a lab that outlives the command that built it
/// ([`Namespaces::keep`]).
#[derive(Debug)]
pub struct Namespaces {
    prefix: String,
    made: Vec<Arc<Netns>>,
}

impl Namespaces {
    /// Namespaces named `rw-TAG-PID-N-ROLE`: nothing else on the machine
    /// has these names, even with the same tag in one process.
    pub fn unique(tag: &str) -> Namespaces {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        Namespaces::named(&format!("rw-{tag}-{}-{n}", std::process::id()))
    }

    /// Namespaces named `PREFIX-ROLE`.
    pub fn named(prefix: &str) -> Namespaces {
        Namespaces {
            prefix: prefix.to_string(),
            made: Vec::new(),
        }
    }

    /// The name of role `role`'s namespace.
    pub fn name_of(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Create the namespace of `role` (replacing a stale one of that name)
    /// with its loopback up and IPv6 off on every device made in it from
    /// now on.
    pub fn add(&mut self, role: &str) -> io::Result<Arc<Netns>> {
        self.add_with(role, false)
    }

    /// [`Namespaces::add`] with IPv6 left on, for labs that use 2001:2::/48
    /// (addresses are checked as for IPv4). Devices made in it skip
    /// duplicate address detection, so an address works as soon as it is
    /// added, and send no router solicitations.
    pub fn add_dual_stack(&mut self, role: &str) -> io::Result<Arc<Netns>> {
        self.add_with(role, true)
    }

    fn add_with(&mut self, role: &str, ipv6: bool) -> io::Result<Arc<Netns>> {
        let name = self.name_of(role);
        delete(&name)?;
        run_ip(&["netns", "add", &name])?;
        let ns = match Netns::open(&name) {
            Ok(ns) => Arc::new(ns),
            Err(e) => {
                let _ = delete(&name);
                return Err(e);
            }
        };
        // Held before anything else can fail: a half-built namespace goes
        // too.
        live().push(name);
        self.made.push(ns.clone());
        if ipv6 {
            for conf in ["all", "default"] {
                ns.sysctl(&format!("net/ipv6/conf/{conf}/accept_dad"), "0")?;
                ns.sysctl(&format!("net/ipv6/conf/{conf}/router_solicitations"), "0")?;
            }
        } else {
            ns.disable_ipv6(&["all", "default", "lo"])?;
        }
        ns.set_up("lo")?;
        Ok(ns)
    }

    /// The namespaces made, in order.
    pub fn all(&self) -> &[Arc<Netns>] {
        &self.made
    }

    /// Leave the namespaces in place: someone else deletes them later
    /// (`rstwall lab down`).
    pub fn keep(mut self) {
        let names: Vec<String> = self.made.drain(..).map(|ns| ns.name.clone()).collect();
        live().retain(|n| !names.contains(n));
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in self.made.drain(..).rev() {
            live().retain(|n| n != &ns.name);
            if let Err(e) = delete(&ns.name) {
                // A drop may run while a panic unwinds: a second panic
                // (eprintln! on a stderr that cannot be written) would abort.
                let _ = writeln!(io::stderr(), "netlab: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_must_fit_the_kernel() {
        assert!(check_ifname("c0").is_ok());
        assert!(check_ifname("rwg4194304").is_ok());
        assert!(check_ifname("a-name-16-bytes!").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
    }

    #[test]
    fn unique_prefixes_differ_within_one_process() {
        let (a, b) = (Namespaces::unique("t"), Namespaces::unique("t"));
        assert_ne!(a.name_of("x"), b.name_of("x"));
        assert!(a
            .name_of("x")
            .starts_with(&format!("rw-t-{}-", std::process::id())));
        assert_eq!(
            Namespaces::named("rwlab-demo").name_of("server"),
            "rwlab-demo-server"
        );
    }
}
