//! The interfaces observed: every one of the namespace (or those named),
//! attached at start and as they appear, detached as they go, learned from
//! rtnetlink (RTM_NEWLINK/RTM_DELLINK on RTMGRP_LINK, after a dump of the
//! links that exist).
//!
//! Loopback gets its egress program only: every segment on `lo` leaves
//! and comes back, so one hook sees each exactly once.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use rstwall_bpf::host::{LinkKind, TcAttachment, TcDirection, TcMode, TcPrograms};
use rstwall_source::StopOnDrop;
use serde::Serialize;

use libc::{
    ARPHRD_ETHER, ARPHRD_LOOPBACK, ARPHRD_NONE, ARPHRD_SIT, ARPHRD_TUNNEL, ARPHRD_TUNNEL6,
    IFLA_IFNAME, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK,
};

// libc's are `c_int`; the netlink header fields they meet are u16 and u32.
const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
const NLMSG_DONE: u16 = libc::NLMSG_DONE as u16;
const DUMP_REQUEST: u16 = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
const RTMGRP_LINK: u32 = libc::RTMGRP_LINK as u32;
const IFF_LOOPBACK: u32 = libc::IFF_LOOPBACK as u32;
const NLMSG_HDRLEN: usize = std::mem::size_of::<libc::nlmsghdr>();
const IFINFOMSG_LEN: usize = std::mem::size_of::<libc::ifinfomsg>();
/// Not in libc (include/uapi/linux/if_arp.h).
const ARPHRD_RAWIP: u16 = 519;

/// One interface as host mode sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    /// The Linux link type (ARPHRD_*).
    pub arphrd: u16,
    pub loopback: bool,
    /// How frames start on it; `None`: not a link type host mode reads.
    pub link: Option<LinkKind>,
    /// How the programs are attached; `None` when they are not.
    pub mode: Option<TcMode>,
    /// Directions observed.
    pub directions: Vec<TcDirection>,
    /// Why it is not observed, if it is not.
    pub error: Option<String>,
}

/// A link as rtnetlink announces it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Link {
    ifindex: u32,
    arphrd: u16,
    flags: u32,
    name: String,
}

fn link_kind(arphrd: u16) -> Option<LinkKind> {
    match arphrd {
        ARPHRD_ETHER | ARPHRD_LOOPBACK => Some(LinkKind::Ethernet),
        ARPHRD_NONE | ARPHRD_RAWIP | ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_SIT => {
            Some(LinkKind::RawIp)
        }
        _ => None,
    }
}

/// Parse one rtnetlink datagram into (message type, link) pairs; `done`
/// turns true at NLMSG_DONE. Malformed parts are skipped.
fn parse_links(buf: &[u8], out: &mut Vec<(u16, Link)>, done: &mut bool) {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let u32_at = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
        let u16_at = |i: usize| u16::from_ne_bytes(buf[i..i + 2].try_into().expect("2 bytes"));
        let len = u32_at(off) as usize;
        let kind = u16_at(off + 4);
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return;
        }
        match kind {
            NLMSG_DONE | NLMSG_ERROR => *done = true,
            RTM_NEWLINK | RTM_DELLINK if len >= NLMSG_HDRLEN + IFINFOMSG_LEN => {
                let m = off + NLMSG_HDRLEN;
                let arphrd = u16_at(m + 2);
                let ifindex = u32_at(m + 4);
                let flags = u32_at(m + 8);
                let mut name = String::new();
                let mut a = m + IFINFOMSG_LEN;
                while a + 4 <= off + len {
                    let alen = u16_at(a) as usize;
                    let atype = u16_at(a + 2) & 0x3fff;
                    if alen < 4 || a + alen > off + len {
                        break;
                    }
                    if atype == IFLA_IFNAME {
                        let v = &buf[a + 4..a + alen];
                        let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
                        name = String::from_utf8_lossy(&v[..end]).into_owned();
                    }
                    a += (alen + 3) & !3;
                }
                out.push((
                    kind,
                    Link {
                        ifindex,
                        arphrd,
                        flags,
                        name,
                    },
                ));
            }
            _ => {}
        }
        off += (len + 3) & !3;
    }
}

fn netlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd, owned from here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: a zeroed sockaddr_nl is valid; we set family and groups.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = RTMGRP_LINK;
    // SAFETY: a valid address of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // A dump of the links that exist (subscribed first: none is missed).
    let mut req = [0u8; NLMSG_HDRLEN + IFINFOMSG_LEN];
    let req_len = req.len() as u32;
    req[0..4].copy_from_slice(&req_len.to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    req[6..8].copy_from_slice(&DUMP_REQUEST.to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[NLMSG_HDRLEN] = libc::AF_UNSPEC as u8;
    // SAFETY: sending a valid buffer.
    let rc = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// The interfaces observed, shared with the workers (for a record's
/// interface name and whether it is loopback; read only for RSTs).
pub(crate) type IfaceTable = Arc<RwLock<BTreeMap<u32, Interface>>>;

/// The thread that keeps the attachments in step with the namespace's
/// interfaces. Dropping it detaches everything.
pub(crate) struct IfaceWatcher {
    _thread: StopOnDrop,
    table: IfaceTable,
}

/// Which interfaces to observe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfaceSelection {
    /// Every interface, and those that appear later.
    All,
    /// These, whenever they exist.
    Named(Vec<String>),
}

impl IfaceSelection {
    fn wants(&self, name: &str) -> bool {
        match self {
            IfaceSelection::All => true,
            IfaceSelection::Named(names) => names.iter().any(|n| n == name),
        }
    }
}

struct Attached {
    _hooks: Vec<TcAttachment>,
}

fn attach(progs: &TcPrograms, l: &Link) -> (Interface, Option<Attached>) {
    let loopback = l.flags & IFF_LOOPBACK != 0 || l.arphrd == ARPHRD_LOOPBACK;
    let mut iface = Interface {
        name: l.name.clone(),
        ifindex: l.ifindex,
        arphrd: l.arphrd,
        loopback,
        link: link_kind(l.arphrd),
        mode: None,
        directions: Vec::new(),
        error: None,
    };
    let Some(kind) = iface.link else {
        iface.error = Some(format!("link type {} is not one host mode reads", l.arphrd));
        return (iface, None);
    };
    let directions: &[TcDirection] = if loopback {
        &[TcDirection::Egress]
    } else {
        &[TcDirection::Ingress, TcDirection::Egress]
    };
    let mut hooks = Vec::new();
    for &d in directions {
        match progs.attach(l.ifindex, kind, d) {
            Ok(a) => {
                iface.mode = Some(a.mode());
                iface.directions.push(d);
                hooks.push(a);
            }
            Err(e) => {
                iface.error = Some(e.to_string());
                return (iface, None);
            }
        }
    }
    (iface, Some(Attached { _hooks: hooks }))
}

impl IfaceWatcher {
    /// Attach to what exists now (before returning) and start watching.
    /// The calling thread's network namespace is the one observed.
    pub fn start(progs: Arc<TcPrograms>, which: IfaceSelection) -> io::Result<IfaceWatcher> {
        let sock = netlink_socket()?;
        let table: IfaceTable = Arc::default();
        let mut attached: BTreeMap<u32, Attached> = BTreeMap::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut links = Vec::new();
        // The dump, synchronously: start() returns with every existing
        // interface observed.
        let mut done = false;
        while !done {
            // SAFETY: receiving into a valid buffer.
            let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            links.clear();
            parse_links(&buf[..n as usize], &mut links, &mut done);
            apply(&progs, &which, &links, &mut attached, &table);
        }
        let t = table.clone();
        let thread = StopOnDrop::spawn("rstwall-ifaces", move |stop| {
            while !stop.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd {
                    fd: sock.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                    continue;
                }
                // SAFETY: as above.
                let n =
                    unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    continue;
                }
                links.clear();
                let mut done = false;
                parse_links(&buf[..n as usize], &mut links, &mut done);
                apply(&progs, &which, &links, &mut attached, &t);
            }
            // Detach before the table says so.
            attached.clear();
        })?;
        Ok(IfaceWatcher {
            _thread: thread,
            table,
        })
    }

    pub fn table(&self) -> IfaceTable {
        self.table.clone()
    }

    pub fn interfaces(&self) -> Vec<Interface> {
        self.table
            .read()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }
}

fn apply(
    progs: &TcPrograms,
    which: &IfaceSelection,
    links: &[(u16, Link)],
    attached: &mut BTreeMap<u32, Attached>,
    table: &IfaceTable,
) {
    for (kind, l) in links {
        match *kind {
            RTM_NEWLINK if !attached.contains_key(&l.ifindex) && which.wants(&l.name) => {
                let (iface, hooks) = attach(progs, l);
                match &iface.error {
                    Some(e) => tracing::warn!(iface = %iface.name, "not observed: {e}"),
                    None => tracing::info!(iface = %iface.name, "observing"),
                }
                if let Some(h) = hooks {
                    attached.insert(l.ifindex, h);
                }
                if let Ok(mut t) = table.write() {
                    t.insert(l.ifindex, iface);
                }
            }
            RTM_DELLINK => {
                // The kernel detached its programs with the device.
                attached.remove(&l.ifindex);
                if let Ok(mut t) = table.write() {
                    t.remove(&l.ifindex);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn newlink(ifindex: u32, arphrd: u16, flags: u32, name: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        let alen = 4 + name.len() + 1;
        attr.extend_from_slice(&(alen as u16).to_ne_bytes());
        attr.extend_from_slice(&IFLA_IFNAME.to_ne_bytes());
        attr.extend_from_slice(name.as_bytes());
        attr.push(0);
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let len = NLMSG_HDRLEN + IFINFOMSG_LEN + attr.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&arphrd.to_ne_bytes());
        m.extend_from_slice(&ifindex.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn parses_link_messages() {
        let mut buf = newlink(1, ARPHRD_LOOPBACK, IFF_LOOPBACK, "lo");
        buf.extend(newlink(7, ARPHRD_NONE, 0, "wg0"));
        let mut done_msg = vec![0u8; NLMSG_HDRLEN];
        done_msg[0..4].copy_from_slice(&(NLMSG_HDRLEN as u32).to_ne_bytes());
        done_msg[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        buf.extend(done_msg);
        let (mut out, mut done) = (Vec::new(), false);
        parse_links(&buf, &mut out, &mut done);
        assert!(done);
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].1.name.as_str(), out[0].1.ifindex), ("lo", 1));
        assert_eq!(
            (out[1].1.name.as_str(), out[1].1.arphrd),
            ("wg0", ARPHRD_NONE)
        );
        assert_eq!(link_kind(ARPHRD_NONE), Some(LinkKind::RawIp));
        assert_eq!(link_kind(ARPHRD_LOOPBACK), Some(LinkKind::Ethernet));
        assert_eq!(link_kind(32), None);
        // Truncated input parses as far as it goes, and never panics.
        for cut in 0..buf.len() {
            let (mut o, mut d) = (Vec::new(), false);
            parse_links(&buf[..cut], &mut o, &mut d);
            assert!(o.len() <= 2);
        }
    }
}
