//! CIDR sets with longest-prefix lookup, for the allow and deny lists.

use std::collections::HashSet;
use std::hash::Hash;
use std::net::IpAddr;
use std::ops::BitAnd;

use ipnet::IpNet;

trait AddrBits: Copy + Eq + Hash + BitAnd<Output = Self> {
    const BITS: u8;
    fn mask(len: u8) -> Self;
}

impl AddrBits for u32 {
    const BITS: u8 = 32;
    fn mask(len: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
    }
}

impl AddrBits for u128 {
    const BITS: u8 = 128;
    fn mask(len: u8) -> u128 {
        u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
    }
}

/// The networks of one prefix length, stored masked.
struct Level<A> {
    len: u8,
    mask: A,
    nets: HashSet<A, foldhash::fast::RandomState>,
}

/// Networks of one address family: one set per prefix length present,
/// longest first, so a lookup costs one hash probe per distinct length.
struct PrefixSet<A> {
    levels: Vec<Level<A>>,
}

impl<A: AddrBits> PrefixSet<A> {
    fn new() -> Self {
        PrefixSet { levels: Vec::new() }
    }

    fn insert(&mut self, addr: A, len: u8) {
        let len = len.min(A::BITS);
        let pos = match self.levels.binary_search_by(|l| len.cmp(&l.len)) {
            Ok(pos) => pos,
            Err(pos) => {
                let level = Level {
                    len,
                    mask: A::mask(len),
                    nets: HashSet::default(),
                };
                self.levels.insert(pos, level);
                pos
            }
        };
        let level = &mut self.levels[pos];
        level.nets.insert(addr & level.mask);
    }

    /// The longest stored prefix containing `addr`: (network, length).
    #[inline]
    fn longest(&self, addr: A) -> Option<(A, u8)> {
        self.levels.iter().find_map(|l| {
            let net = addr & l.mask;
            l.nets.contains(&net).then_some((net, l.len))
        })
    }
}

/// A set of IPv4 and IPv6 networks with longest-prefix lookup. IPv4 and IPv6
/// are separate: an IPv4-mapped IPv6 address matches only IPv6 entries.
pub struct CidrSet {
    v4: PrefixSet<u32>,
    v6: PrefixSet<u128>,
    empty: bool,
}

impl CidrSet {
    pub fn new(nets: &[IpNet]) -> CidrSet {
        let mut set = CidrSet {
            v4: PrefixSet::new(),
            v6: PrefixSet::new(),
            empty: nets.is_empty(),
        };
        for net in nets {
            match net {
                IpNet::V4(n) => set.v4.insert(u32::from(n.addr()), n.prefix_len()),
                IpNet::V6(n) => set.v6.insert(u128::from(n.addr()), n.prefix_len()),
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether any network contains `ip`.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.empty {
            return false;
        }
        match ip {
            IpAddr::V4(a) => self.v4.longest(u32::from(a)).is_some(),
            IpAddr::V6(a) => self.v6.longest(u128::from(a)).is_some(),
        }
    }

    /// The most specific network containing `ip`.
    pub fn longest_match(&self, ip: IpAddr) -> Option<IpNet> {
        match ip {
            IpAddr::V4(a) => self
                .v4
                .longest(u32::from(a))
                .and_then(|(n, len)| IpNet::new(IpAddr::V4(n.into()), len).ok()),
            IpAddr::V6(a) => self
                .v6
                .longest(u128::from(a))
                .and_then(|(n, len)| IpNet::new(IpAddr::V6(n.into()), len).ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::*;

    #[test]
    fn policy_cidr_set_matches_longest_prefix() {
        let set = CidrSet::new(&[
            net("10.0.0.0/8"),
            net("10.1.0.0/16"),
            net("10.1.2.3/32"),
            net("2001:db8::/32"),
            net("2001:db8:0:1::/64"),
            net("2001:db8::1/128"),
        ]);
        let lm = |s: &str| set.longest_match(ip(s));
        assert_eq!(lm("10.1.2.3"), Some(net("10.1.2.3/32")));
        assert_eq!(lm("10.1.2.4"), Some(net("10.1.0.0/16")));
        assert_eq!(lm("10.200.0.1"), Some(net("10.0.0.0/8")));
        assert_eq!(lm("11.0.0.0"), None);
        assert_eq!(lm("2001:db8::1"), Some(net("2001:db8::1/128")));
        assert_eq!(lm("2001:db8:0:1::9"), Some(net("2001:db8:0:1::/64")));
        assert_eq!(lm("2001:db8:ffff::"), Some(net("2001:db8::/32")));
        assert_eq!(lm("2001:db9::"), None);
        assert!(set.contains(ip("10.255.255.255")) && !set.contains(ip("9.255.255.255")));
        // The families are separate: v4-mapped v6 does not match v4 entries,
        // and v4 does not match v6 entries.
        assert!(!set.contains(ip("::ffff:10.1.2.3")));
        assert!(!CidrSet::new(&[net("::/0")]).contains(ip("10.0.0.1")));
        assert!(CidrSet::new(&[net("::ffff:0:0/96")]).contains(ip("::ffff:10.0.0.1")));

        let all = CidrSet::new(&[net("0.0.0.0/0"), net("::/0")]);
        assert!(all.contains(ip("255.255.255.255")) && all.contains(ip("::")));
        assert_eq!(all.longest_match(ip("1.2.3.4")), Some(net("0.0.0.0/0")));
        let hosts = CidrSet::new(&[net("192.0.2.1/32"), net("::2/128")]);
        assert!(hosts.contains(ip("192.0.2.1")) && !hosts.contains(ip("192.0.2.0")));
        assert!(hosts.contains(ip("::2")) && !hosts.contains(ip("::3")));
        let empty = CidrSet::new(&[]);
        assert!(empty.is_empty() && !empty.contains(ip("1.1.1.1")));
        // One level per distinct length, longest first.
        let lens: Vec<u8> = set.v4.levels.iter().map(|l| l.len).collect();
        assert_eq!(lens, [32, 16, 8]);
    }
}
