//! The bench's three network namespaces and two veth pairs:
//!
//! ```text
//!   gen ns            appliance ns                     sink ns
//!   rwg<pid> ─veth─ rwa<pid> ══ forwarder ══ rwb<pid> ─veth─ rws<pid>
//! ```
//!
//! Names carry this process's id. [`Lab`] deletes the namespaces (and with
//! them the veths and the XDP programs on them) when dropped, on a panic
//! too; [`Lab::delete_on_signal`] does it when the run is interrupted.
//! Nothing outside these namespaces is touched, and no addresses are
//! configured: the frames (198.18.0.0/15 only) are handed from socket to
//! socket inside them.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

/// A network namespace, by name and open handle.
pub struct Netns {
    pub name: String,
    file: File,
}

impl Netns {
    fn open(name: &str) -> Result<Netns> {
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
    pub fn new() -> Result<Lab> {
        let pid = std::process::id();
        let names = names();
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
        for (ns, a, peer_ns, b) in [
            (&gen, &gen_if, &app, &port_a),
            (&app, &port_b, &sink, &sink_if),
        ] {
            ip(&[
                "-n",
                &ns.name,
                "link",
                "add",
                a,
                "type",
                "veth",
                "peer",
                "name",
                b,
                "netns",
                &peer_ns.name,
            ])?;
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
fn names() -> Vec<String> {
    let pid = std::process::id();
    ["gen", "app", "sink"]
        .iter()
        .map(|r| format!("rstwall-fwd-{r}-{pid}"))
        .collect()
}

/// Block SIGINT, SIGTERM and SIGHUP in this thread (call it before any
/// other thread exists, so all inherit the mask, and before [`Lab::new`])
/// and take them in a thread of their own that deletes the namespaces and
/// exits.
pub fn delete_on_signal() -> Result<()> {
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
    let names = names();
    std::thread::Builder::new()
        .name("bench-signals".into())
        .spawn(move || {
            let mut sig = 0;
            // SAFETY: `set` and `sig` are valid for the call.
            if unsafe { libc::sigwait(&set, &mut sig) } == 0 {
                eprintln!("signal {sig}: deleting the bench namespaces");
                delete(&names);
                std::process::exit(128 + sig);
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
