//! The bench's three network namespaces and two veth pairs:
//!
//! ```text
//!   gen ns (client)        appliance ns                        sink ns (server)
//!   rwg<pid> ─veth─ rwa<pid> ══ forwarder ══ rwb<pid> ─veth─ rws<pid>
//!   198.18.250.1/24                                          198.18.250.2/24
//! ```
//!
//! Names carry this process's id. [`Lab`] deletes the namespaces (and with
//! them the veths and the programs on them) when dropped, on a panic too;
//! [`delete_on_signal`] does it when the run is interrupted. Nothing
//! outside these namespaces is touched, and only addresses of
//! 198.18.0.0/15 are used.
//!
//! The generator's and the sink's veths are also the hosts of a real
//! kernel TCP connection ([`CLIENT`] to [`SERVER`]; one /24, so whatever
//! sits in the appliance namespace is a bump in the wire). Their neighbour
//! entries are static: ARP would need the appliance's non-TCP path, which
//! needs NAPI on the hosts' veths, which would put GRO in front of the
//! sink's counter. Like the end-to-end tests' lab, the hosts do no TX
//! checksum offload (a frame handed to AF_XDP would keep a partial
//! checksum). The appliance's ports have GRO off: no contender gets to
//! merge segments (it has no effect on frames that XDP redirects).

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

/// The real TCP connection's client (in the generator's namespace) and
/// server (in the sink's).
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 1);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 250, 2);
/// The hosts' MACs.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x72, 0x77, 0x63, 0, 1];
pub const SERVER_MAC: [u8; 6] = [0x02, 0x72, 0x77, 0x63, 0, 2];

/// A network namespace, by name and open handle.
pub struct Netns {
    pub name: String,
    file: File,
}

impl Netns {
    pub fn open(name: &str) -> Result<Netns> {
        let file = File::open(format!("/run/netns/{name}"))
            .with_context(|| format!("open network namespace {name}"))?;
        Ok(Netns {
            name: name.to_string(),
            file,
        })
    }

    /// Move the calling thread into this namespace for good (threads it
    /// spawns from then on start there too).
    pub fn enter(&self) -> io::Result<()> {
        setns(&self.file)
    }

    /// Run `f` with the calling thread in this namespace, then come back,
    /// even if `f` panics. Threads `f` spawns stay in the namespace.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        struct Back(File);
        impl Drop for Back {
            fn drop(&mut self) {
                if let Err(e) = setns(&self.0) {
                    // Carrying on in the wrong namespace would send the
                    // caller's netlink requests to the wrong interfaces.
                    eprintln!("cannot return to the original network namespace: {e}");
                    std::process::abort();
                }
            }
        }
        let home = File::open("/proc/thread-self/ns/net").context("open own namespace")?;
        self.enter()
            .with_context(|| format!("enter network namespace {}", self.name))?;
        let _back = Back(home);
        Ok(f())
    }
}

fn setns(f: &File) -> io::Result<()> {
    // SAFETY: setns on an open namespace fd; it affects the calling thread.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The namespaces and the names of the four veth ends.
pub struct Lab {
    pub gen: Arc<Netns>,
    pub app: Arc<Netns>,
    pub sink: Arc<Netns>,
    /// The generator's end, in `gen`.
    pub gen_if: String,
    /// The appliance's ports, in `app`: A faces the generator.
    pub port_a: String,
    pub port_b: String,
    /// The sink's end, in `sink`.
    pub sink_if: String,
    names: Vec<String>,
}

impl Lab {
    /// The lab, its namespaces named `rstwall-<tag>-{gen,app,sink}-<pid>`.
    pub fn new(tag: &str) -> Result<Lab> {
        let pid = std::process::id();
        let names = names(tag);
        // From here on every namespace created is deleted by `Cleanup`,
        // also when a later step fails.
        let cleanup = Cleanup(names.clone());
        for ns in &names {
            ip(&["netns", "add", ns])?;
        }
        let [gen, app, sink] = [0, 1, 2].map(|i| Netns::open(&names[i]).map(Arc::new));
        let (gen, app, sink) = (gen?, app?, sink?);
        // No IPv6 (router solicitations and the like) on the veths: the
        // only frames on the wire are the generator's.
        for ns in [&gen, &app, &sink] {
            ns.run(|| {
                for key in ["all", "default"] {
                    let _ =
                        std::fs::write(format!("/proc/sys/net/ipv6/conf/{key}/disable_ipv6"), "1");
                }
            })?;
        }
        let (gen_if, port_a, port_b, sink_if) = (
            format!("rwg{pid}"),
            format!("rwa{pid}"),
            format!("rwb{pid}"),
            format!("rws{pid}"),
        );
        let mac = |m: [u8; 6]| m.map(|b| format!("{b:02x}")).join(":");
        let (client_mac, server_mac) = (mac(CLIENT_MAC), mac(SERVER_MAC));
        for (ns, a, a_mac, peer_ns, b) in [
            (&gen, &gen_if, &client_mac, &app, &port_a),
            (&sink, &sink_if, &server_mac, &app, &port_b),
        ] {
            ip(&[
                "-n",
                &ns.name,
                "link",
                "add",
                a,
                "address",
                a_mac,
                "type",
                "veth",
                "peer",
                "name",
                b,
                "netns",
                &peer_ns.name,
            ])?;
        }
        for (ns, dev, addr, peer, peer_mac) in [
            (&gen, &gen_if, CLIENT, SERVER, &server_mac),
            (&sink, &sink_if, SERVER, CLIENT, &client_mac),
        ] {
            let n = ns.name.as_str();
            ip(&["-n", n, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            let peer = peer.to_string();
            ip(&[
                "-n",
                n,
                "neigh",
                "add",
                &peer,
                "lladdr",
                peer_mac,
                "dev",
                dev,
                "nud",
                "permanent",
            ])?;
            ns.run(|| ethtool_set(dev, ETHTOOL_STXCSUM, 0))?
                .with_context(|| format!("TX checksum offload off on {dev}"))?;
        }
        for port in [&port_a, &port_b] {
            app.run(|| ethtool_set(port, ETHTOOL_SGRO, 0))?
                .with_context(|| format!("GRO off on {port}"))?;
        }
        for (ns, dev) in [
            (&gen, &gen_if),
            (&app, &port_a),
            (&app, &port_b),
            (&sink, &sink_if),
        ] {
            ip(&["-n", &ns.name, "link", "set", dev, "up"])?;
        }
        std::mem::forget(cleanup);
        Ok(Lab {
            gen,
            app,
            sink,
            gen_if,
            port_a,
            port_b,
            sink_if,
            names,
        })
    }
}

/// The namespaces' names: this process's.
fn names(tag: &str) -> Vec<String> {
    let pid = std::process::id();
    ["gen", "app", "sink"]
        .iter()
        .map(|r| format!("rstwall-{tag}-{r}-{pid}"))
        .collect()
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_STXCSUM: u32 = 0x17;
const ETHTOOL_SGRO: u32 = 0x2c;

/// Set one ethtool flag (`ETHTOOL_S*`) of `ifname`, in the calling
/// thread's namespace.
fn ethtool_set(ifname: &str, cmd: u32, value: u32) -> io::Result<()> {
    #[repr(C)]
    struct IfReq {
        name: [u8; 16],
        data: *mut libc::c_void,
        _pad: [u8; 16],
    }
    if ifname.len() >= 16 {
        return Err(io::Error::other("interface name too long"));
    }
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    let mut val = [cmd, value];
    let mut req = IfReq {
        name: [0; 16],
        data: val.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: a valid ifreq pointing at a valid ethtool_value.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfReq) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Block SIGINT, SIGTERM and SIGHUP in this thread (call it before any
/// other thread exists, so all inherit the mask, and before [`Lab::new`])
/// and take them in a thread of their own that deletes the namespaces and
/// exits.
pub fn delete_on_signal(tag: &str) -> Result<()> {
    let names = names(tag);
    on_stop_signal("bench-signals", move |sig| {
        eprintln!("signal {sig}: deleting the bench namespaces");
        delete(&names);
        std::process::exit(128 + sig);
    })
}

/// Block SIGINT, SIGTERM and SIGHUP in this thread (call it before any
/// other thread exists, so that all inherit the mask) and run `then` with
/// the first that arrives, on a thread of its own.
pub fn on_stop_signal(name: &str, then: impl FnOnce(i32) + Send + 'static) -> Result<()> {
    // SAFETY: plain signal-set manipulation on a local set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    };
    // SAFETY: `set` is a valid signal set.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        bail!("pthread_sigmask: {}", io::Error::from_raw_os_error(rc));
    }
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut sig = 0;
            // SAFETY: `set` and `sig` are valid for the call.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                then(sig);
            }
        })
        .context("spawn the signal thread")?;
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        delete(&self.names);
    }
}

/// Deletes namespaces created so far if [`Lab::new`] fails half-way.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete(&self.0);
    }
}

fn delete(names: &[String]) {
    for ns in names {
        if std::path::Path::new("/run/netns").join(ns).exists() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("run ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
