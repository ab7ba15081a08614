//! Tap mode on one of this host's own interfaces cuts the host's TCP:
//! rstwall's XDP program takes every TCP segment off the port for the
//! AF_XDP workers, which count it and forward nothing, so the host's own
//! connections over that interface stall (`rstwall run --tap lo` made a
//! local HTTP request time out for as long as it ran). A mirror port
//! carries no address of the host's; so tap mode refuses a port that is a
//! loopback or carries one, and points to host mode, which watches the
//! host's own TCP without touching it. `tap_host_interface` overrides the
//! check for a real mirror port that also has an address.
//!
//! IPv6 link-local addresses (fe80::/10) do not count: the kernel gives one
//! to every port that comes up with IPv6 on, mirror ports included.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::anyhow;
use rstwall_api::Failure;

/// What makes `port` one of this host's own interfaces, if anything: it is
/// a loopback, or carries these addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInterface {
    pub loopback: bool,
    pub addresses: Vec<IpAddr>,
}

impl HostInterface {
    fn is_host(&self) -> bool {
        self.loopback || !self.addresses.is_empty()
    }
}

/// Refuse `--tap port` on a host interface unless `allowed`.
pub fn check(port: &str, allowed: bool) -> Result<(), Failure> {
    if allowed {
        return Ok(());
    }
    let found = inspect(port)
        .map_err(|e| Failure::runtime(anyhow!("--tap {port}: cannot read its addresses: {e}")))?;
    if !found.is_host() {
        return Ok(());
    }
    let what = if found.loopback {
        "is this host's loopback".to_string()
    } else {
        let list: Vec<String> = found.addresses.iter().map(IpAddr::to_string).collect();
        format!("carries this host's address {}", list.join(", "))
    };
    Err(Failure::usage(anyhow!(
        "--tap {port}: {port} {what}, and tap mode would cut this host's own TCP on it; \
         to watch this host's resets use `rstwall host` (or --tap-host-interface if {port} \
         is a mirror port that also has an address)"
    )))
}

/// The port's loopback flag and its addresses (link-local IPv6 left out).
pub fn inspect(port: &str) -> io::Result<HostInterface> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = HostInterface {
        loopback: false,
        addresses: Vec::new(),
    };
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        // SAFETY: ifa_name is a NUL-terminated string of the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
        if name.to_bytes() != port.as_bytes() {
            continue;
        }
        if ifa.ifa_flags & libc::IFF_LOOPBACK as u32 != 0 {
            out.loopback = true;
        }
        // SAFETY: ifa_addr is null or a sockaddr of the family it says.
        if let Some(addr) = unsafe { address(ifa.ifa_addr) } {
            if !is_link_local(&addr) && !out.addresses.contains(&addr) {
                out.addresses.push(addr);
            }
        }
    }
    // SAFETY: the list getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The IP address in `sa`, if it holds one.
///
/// # Safety
/// `sa` is null or points to a sockaddr whose family says its size.
unsafe fn address(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    match i32::from((*sa).sa_family) {
        libc::AF_INET => {
            let v4 = &*(sa as *const libc::sockaddr_in);
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))))
        }
        libc::AF_INET6 => {
            let v6 = &*(sa as *const libc::sockaddr_in6);
            Some(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

fn is_link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
        IpAddr::V4(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every network namespace has `lo`: a loopback with 127.0.0.1 once
    /// it is up, a loopback in any case.
    #[test]
    fn lo_is_a_host_interface_and_refused() {
        let lo = inspect("lo").unwrap();
        assert!(lo.loopback, "{lo:?}");
        let e = check("lo", false).unwrap_err();
        assert_eq!(e.status, 2);
        let text = e.error.to_string();
        assert!(text.contains("rstwall host"), "{text}");
        assert!(text.contains("--tap-host-interface"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(check("lo", true).is_ok());
    }

    #[test]
    fn an_interface_that_does_not_exist_has_nothing() {
        let none = inspect("rstwall-none0").unwrap();
        assert!(!none.is_host(), "{none:?}");
    }

    #[test]
    fn link_local_is_left_out() {
        assert!(is_link_local(&"fe80::1".parse().unwrap()));
        assert!(!is_link_local(&"2001:2::1".parse().unwrap()));
        assert!(!is_link_local(&"198.18.0.1".parse().unwrap()));
    }
}
