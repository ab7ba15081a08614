//! The lab's addresses: only the benchmarking networks (198.18.0.0/15,
//! RFC 2544; 2001:2::/48, RFC 5180) and loopback, so nothing a lab sends
//! can reach a real network; and MAC addresses.

use std::fmt;
use std::io;
use std::net::IpAddr;

/// A MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Whether `addr` is one the lab may use.
pub fn is_lab_addr(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_loopback() || (o[0] == 198 && (o[1] & 0xfe) == 18)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback() || (s[0] == 0x2001 && s[1] == 2 && s[2] == 0)
        }
    }
}

/// `ADDR` or `ADDR/LEN` inside the lab's networks (a prefix as a whole).
pub(crate) fn check_lab_net(cidr: &str) -> io::Result<()> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{cidr}: {why} (the lab uses 198.18.0.0/15, 2001:2::/48 and loopback only)"),
        )
    };
    let (addr, len) = match cidr.split_once('/') {
        Some((a, l)) => (
            a,
            Some(l.parse::<u8>().map_err(|_| bad("bad prefix length"))?),
        ),
        None => (cidr, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad("not an address"))?;
    let min_len = match addr {
        IpAddr::V4(a) if a.is_loopback() => 8,
        IpAddr::V4(_) => 15,
        IpAddr::V6(a) if a.is_loopback() => 128,
        IpAddr::V6(_) => 48,
    };
    if !is_lab_addr(addr) {
        return Err(bad("outside the lab's networks"));
    }
    // A prefix shorter than the lab network's would route beyond it.
    if len.is_some_and(|l| l < min_len) {
        return Err(bad("a prefix wider than the lab's networks"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_benchmarking_and_loopback_addresses_pass() {
        for ok in [
            "198.18.0.1/24",
            "198.19.0.0/16",
            "198.18.250.2",
            "127.0.0.1",
            "2001:2::1/64",
            "::1",
        ] {
            assert!(check_lab_net(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.0.1/8",
            "192.168.1.1",
            "198.20.0.1",
            "198.16.0.0/12",
            "2001:db8::1",
            "fe80::1",
            "1.2.3.4/x",
            "nonsense",
        ] {
            assert!(check_lab_net(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn macs_print_as_ip_wants_them() {
        assert_eq!(
            Mac([0x02, 0x72, 0x77, 0, 0, 0x0a]).to_string(),
            "02:72:77:00:00:0a"
        );
    }
}
