//! The loader's error type.

use std::fmt;
use std::io;

use crate::AttachedMode;

/// An errno from a BPF or netlink call, shown as the C library's message
/// ("Operation not supported"), which is what an operator searches for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// From a libbpf return value: a negative errno.
    pub(crate) fn from_ret(ret: i32) -> Errno {
        Errno(ret.saturating_abs())
    }

    pub(crate) fn last() -> Errno {
        Errno(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

impl From<&libbpf_rs::Error> for Errno {
    fn from(e: &libbpf_rs::Error) -> Errno {
        // libbpf-rs keeps the errno of a failed call in an io::Error, whose
        // message ends in "(os error N)"; it offers no other way to it.
        Errno(parse_os_error(&format!("{e:#}")))
    }
}

/// libbpf-rs formats errors as "... (os error N)"; recover N.
fn parse_os_error(text: &str) -> i32 {
    text.rsplit_once("(os error ")
        .and_then(|(_, tail)| tail.split(')').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = io::Error::from_raw_os_error(self.0).to_string();
        // "Operation not supported (os error 95)" -> "Operation not supported"
        let msg = full.split(" (os error").next().unwrap_or(&full);
        f.write_str(msg)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Errno({}: {self})", self.0)
    }
}

impl std::error::Error for Errno {}

/// Everything the loader can fail at. Messages name the interface, the map
/// and the operation, so they read well at the top of a daemon's log.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("no network interface named `{ifname}`: {errno}")]
    NoSuchInterface { ifname: String, errno: Errno },

    #[error("interface name `{0}` is not valid (empty, too long or contains NUL)")]
    BadInterfaceName(String),

    #[error("loading the rstwall XDP program: {0:#}")]
    Load(#[source] libbpf_rs::Error),

    #[error("inline port {ifname}: its peer ifindex {peer} is the port itself")]
    PeerIsSelf { ifname: String, peer: u32 },

    #[error("attaching XDP to {ifname} in {mode} mode: {errno}")]
    Attach {
        ifname: String,
        mode: AttachedMode,
        errno: Errno,
    },

    #[error(
        "attaching XDP to {ifname}: native mode failed ({native}), and generic mode failed too ({generic})"
    )]
    AttachAuto {
        ifname: String,
        native: Errno,
        generic: Errno,
    },

    #[error(
        "{ifname} already runs a foreign XDP program `{name}` (id {id}); \
         refusing to replace it (replace_foreign not set)"
    )]
    ForeignProgram {
        ifname: String,
        name: String,
        id: u32,
    },

    #[error("detaching XDP from {ifname}: {errno}")]
    Detach { ifname: String, errno: Errno },

    #[error("querying the XDP program of {ifname}: {errno}")]
    Query { ifname: String, errno: Errno },

    #[error("map `{map}`: {op}: {errno}")]
    Map {
        map: &'static str,
        op: String,
        errno: Errno,
    },

    #[error("RX queue {queue} is beyond the {max} queues the `xsks` map holds")]
    QueueOutOfRange { queue: u32, max: u32 },

    #[error("frame of {len} bytes is shorter than an Ethernet header (14); BPF_PROG_TEST_RUN refuses it")]
    FrameTooShort { len: usize },

    #[error(
        "BPF_PROG_TEST_RUN: RX queue {queue} needs an ingress interface that has it \
         (TestProgram::run_on); without one only queue 0 is accepted"
    )]
    TestQueueWithoutInterface { queue: u32 },

    #[error("BPF_PROG_TEST_RUN: {0}")]
    TestRun(Errno),

    #[error("reading CLOCK_MONOTONIC: {0}")]
    Clock(Errno),

    #[error("host mode: {what}: {errno} ({detail})")]
    Host {
        what: String,
        errno: Errno,
        detail: String,
    },

    #[error("host mode: {0}")]
    HostConfig(String),

    #[error("host mode: attaching to ifindex {ifindex} ({direction}): {errno}")]
    HostAttach {
        ifindex: u32,
        direction: &'static str,
        errno: Errno,
    },
}
