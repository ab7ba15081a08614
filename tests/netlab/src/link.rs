//! A device's packet counters as the kernel keeps them (`/proc/net/dev`):
//! what the lab and the bench read to tell frames a veth dropped before
//! anything on the other side could see them.

use std::io;

/// One device's packet counters, cumulative since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub rx_packets: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    /// Frames dropped on transmit: on a veth, frames its peer's receive
    /// queue had no room for (never seen on the peer's side, by XDP or
    /// anything else).
    pub tx_dropped: u64,
}

impl LinkCounters {
    /// The counters of `dev` in the calling thread's network namespace.
    pub fn of(dev: &str) -> io::Result<LinkCounters> {
        let text = std::fs::read_to_string("/proc/thread-self/net/dev")?;
        parse(&text, dev).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{dev} is not in /proc/net/dev of this namespace"),
            )
        })
    }
}

/// `dev`'s line of a `/proc/net/dev` text: receive bytes, packets, errs,
/// drop, ... then transmit bytes, packets, errs, drop, ...
fn parse(text: &str, dev: &str) -> Option<LinkCounters> {
    let rest = text.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        (name.trim() == dev).then_some(rest)
    })?;
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse())
        .collect::<Result<_, _>>()
        .ok()?;
    (f.len() >= 12).then(|| LinkCounters {
        rx_packets: f[1],
        rx_dropped: f[3],
        tx_packets: f[9],
        tx_dropped: f[11],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1200      12    0    0    0     0          0         0     1200      12    0    0    0     0       0          0
    s0: 9000000    7001    0    2    0     0          0         0  8000000    6003    0    5    0     0       0          0
";

    #[test]
    fn a_devices_line_reads_by_column() {
        assert_eq!(
            parse(DEV, "s0"),
            Some(LinkCounters {
                rx_packets: 7001,
                rx_dropped: 2,
                tx_packets: 6003,
                tx_dropped: 5,
            })
        );
        assert_eq!(parse(DEV, "s1"), None);
        assert_eq!(parse("    s0: 1 2 3", "s0"), None, "a short line");
    }

    #[test]
    fn this_namespaces_loopback_is_there() {
        assert!(LinkCounters::of("lo").is_ok());
        assert!(LinkCounters::of("no-such-dev0").is_err());
    }
}
