//! The Rust mirror of `src/bpf/rstwall_shared.h`, the kernel/userspace
//! contract. Layouts carry compile-time size assertions (against the header's
//! numbers and against the types the skeleton generated from the object's
//! BTF); the test at the bottom reads the header as text and compares every
//! constant, so a change on one side only fails `cargo test -p rstwall-bpf`.

use std::mem::size_of;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use rstwall_engine::class::FlagClass;

use crate::skel::types;

/// The program's name as the kernel reports it: how a restarted rstwall
/// recognises the program a crashed one left on a port.
pub const PROG_NAME: &str = "rstwall_xdp";

pub const MAP_XSKS: &str = "xsks";
pub const MAP_PEER: &str = "peer";
pub const MAP_COUNTERS: &str = "counters";
pub const MAP_DENY: &str = "deny";
pub const MAP_BLOCK: &str = "block";
/// The `.rodata` setting holding the port's role.
pub const CFG_ROLE: &str = "cfg_role";

pub const ROLE_INLINE: u32 = 0;
pub const ROLE_TAP: u32 = 1;

/// XSKMAP slots: RX queues 0..MAX_QUEUES can have a socket.
pub const MAX_QUEUES: u32 = 256;
/// The one key of the `peer` DEVMAP.
pub const PEER_KEY: u32 = 0;
pub const DENY_MAX_ENTRIES: u32 = 65536;
pub const BLOCK_MAX_ENTRIES: u32 = 65536;
pub const ADDR_LEN: usize = 16;
/// Prefix length of `::ffff:0:0/96`, under which IPv4 addresses are stored.
pub const V4_MAPPED_PREFIXLEN: u32 = 96;

pub const MAX_VLAN_TAGS: usize = 2;
pub const MAX_EXT_HEADERS: usize = 8;
pub const TCP_FLAGS_END: usize = 14;

rstwall_engine::closed_enum! {
    /// Indices into the `counters` PERCPU_ARRAY (`enum rstwall_counter`).
    /// The first six are the [`FlagClass`]es, index for index and with
    /// their names. A name is the header's `RSTWALL_CNT_*` name without its
    /// prefix, in lower case, and the field name in [`crate::XdpCounters`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[repr(u32)]
    pub enum Counter: "XDP counter" {
        Syn = FlagClass::Syn.as_str(),
        SynAck = FlagClass::SynAck.as_str(),
        Fin = FlagClass::Fin.as_str(),
        Rst = FlagClass::Rst.as_str(),
        RstAck = FlagClass::RstAck.as_str(),
        Other = FlagClass::Other.as_str(),
        NonTcp = "non_tcp",
        Malformed = "malformed",
        ToXsk = "to_xsk",
        Forwarded = "forwarded",
        TapDropped = "tap_dropped",
        Bypassed = "bypassed",
        DenyDropped = "deny_dropped",
        BlockDropped = "block_dropped",
        MalformedDropped = "malformed_dropped",
        PeerMissing = "peer_missing",
    }
}

impl Counter {
    /// The key of this counter's slot in the `counters` map.
    #[inline]
    pub const fn key(self) -> u32 {
        self as u32
    }

    /// The counter of a TCP flag class (same index by construction).
    pub const fn of_class(class: FlagClass) -> Counter {
        Counter::ALL[class.index()]
    }
}

// The flag-class counters are FlagClass, index for index (their names are
// FlagClass's by construction).
const _: () = {
    let mut i = 0;
    while i < FlagClass::COUNT {
        assert!(Counter::ALL[i] as usize == FlagClass::ALL[i].index());
        i += 1;
    }
    assert!(Counter::NonTcp as usize == FlagClass::COUNT);
    let mut i = 0;
    while i < Counter::COUNT {
        assert!(Counter::ALL[i] as usize == i);
        i += 1;
    }
};

/// `struct rstwall_addr`: the key of the `block` hash. An IPv6 address as
/// is, an IPv4 address as its IPv4-mapped IPv6 form `::ffff:a.b.c.d`, so
/// one map serves both families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Addr {
    pub addr: [u8; ADDR_LEN],
}

/// `struct rstwall_lpm_key`: the key of the `deny` trie. `prefixlen` is in
/// host byte order, as BPF_MAP_TYPE_LPM_TRIE requires; an IPv4 prefix `/n`
/// is stored as `96 + n` over the mapped address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct LpmKey {
    pub prefixlen: u32,
    pub addr: [u8; ADDR_LEN],
}

/// `RSTWALL_ADDR_SIZE`, `RSTWALL_LPM_KEY_SIZE`.
pub const ADDR_SIZE: usize = 16;
pub const LPM_KEY_SIZE: usize = 20;

const _: () = assert!(size_of::<Addr>() == ADDR_SIZE);
const _: () = assert!(size_of::<LpmKey>() == LPM_KEY_SIZE);
// And against what the skeleton read from the compiled object's BTF.
const _: () = assert!(size_of::<Addr>() == size_of::<types::rstwall_addr>());
const _: () = assert!(size_of::<LpmKey>() == size_of::<types::rstwall_lpm_key>());

impl Addr {
    /// The shared 16-byte form of an address.
    pub fn new(ip: IpAddr) -> Addr {
        let v6 = match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        Addr { addr: v6.octets() }
    }

    /// The key bytes as the map stores them.
    pub fn to_bytes(self) -> [u8; ADDR_SIZE] {
        self.addr
    }

    pub fn to_ip(self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.addr);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }
}

impl LpmKey {
    /// The trie key of a network. Host bits are cleared: the trie ignores
    /// them on lookup but keeps them in the key, and removing `a.b.c.1/24`
    /// should remove what inserting `a.b.c.0/24` added.
    pub fn new(net: IpNet) -> LpmKey {
        let net = net.trunc();
        let prefixlen = match net {
            IpNet::V4(n) => V4_MAPPED_PREFIXLEN + u32::from(n.prefix_len()),
            IpNet::V6(n) => u32::from(n.prefix_len()),
        };
        LpmKey {
            prefixlen,
            addr: Addr::new(net.addr()).addr,
        }
    }

    pub fn to_bytes(self) -> [u8; LPM_KEY_SIZE] {
        let mut b = [0u8; LPM_KEY_SIZE];
        b[..4].copy_from_slice(&self.prefixlen.to_ne_bytes());
        b[4..].copy_from_slice(&self.addr);
        b
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const HEADER: &str = include_str!("bpf/rstwall_shared.h");

    /// Every `#define NAME value` and enum `NAME = value,` in the header.
    fn header_constants() -> HashMap<String, String> {
        let mut out = HashMap::new();
        for line in HEADER.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("#define ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(value)) = (parts.next(), parts.next()) {
                    out.insert(name.to_string(), value.to_string());
                }
            } else if let Some((name, value)) = line.split_once(" = ") {
                if name.starts_with("RSTWALL_") {
                    out.insert(name.to_string(), value.trim_end_matches(',').to_string());
                }
            }
        }
        out
    }

    fn get<'a>(c: &'a HashMap<String, String>, name: &str) -> &'a str {
        c.get(name)
            .unwrap_or_else(|| panic!("{name} is missing from rstwall_shared.h"))
    }

    fn num(c: &HashMap<String, String>, name: &str) -> u64 {
        let v = get(c, name);
        v.parse()
            .unwrap_or_else(|_| panic!("{name} = {v} in rstwall_shared.h is not a number"))
    }

    #[test]
    fn names_match_the_header() {
        let c = header_constants();
        for (name, ours) in [
            ("RSTWALL_PROG_NAME", PROG_NAME),
            ("RSTWALL_MAP_XSKS", MAP_XSKS),
            ("RSTWALL_MAP_PEER", MAP_PEER),
            ("RSTWALL_MAP_COUNTERS", MAP_COUNTERS),
            ("RSTWALL_MAP_DENY", MAP_DENY),
            ("RSTWALL_MAP_BLOCK", MAP_BLOCK),
            ("RSTWALL_CFG_ROLE", CFG_ROLE),
        ] {
            assert_eq!(get(&c, name), ours, "{name}");
        }
        // The kernel keeps 15 characters of a program name.
        assert!(PROG_NAME.len() <= 15);
    }

    #[test]
    fn numbers_match_the_header() {
        let c = header_constants();
        for (name, ours) in [
            ("RSTWALL_ROLE_INLINE", u64::from(ROLE_INLINE)),
            ("RSTWALL_ROLE_TAP", u64::from(ROLE_TAP)),
            ("RSTWALL_MAX_QUEUES", u64::from(MAX_QUEUES)),
            ("RSTWALL_PEER_KEY", u64::from(PEER_KEY)),
            ("RSTWALL_DENY_MAX_ENTRIES", u64::from(DENY_MAX_ENTRIES)),
            ("RSTWALL_BLOCK_MAX_ENTRIES", u64::from(BLOCK_MAX_ENTRIES)),
            ("RSTWALL_ADDR_LEN", ADDR_LEN as u64),
            (
                "RSTWALL_V4_MAPPED_PREFIXLEN",
                u64::from(V4_MAPPED_PREFIXLEN),
            ),
            ("RSTWALL_ADDR_SIZE", ADDR_SIZE as u64),
            ("RSTWALL_LPM_KEY_SIZE", LPM_KEY_SIZE as u64),
            ("RSTWALL_CNT_MAX", Counter::COUNT as u64),
            ("RSTWALL_FLAG_CLASSES", FlagClass::COUNT as u64),
            ("RSTWALL_MAX_VLAN_TAGS", MAX_VLAN_TAGS as u64),
            ("RSTWALL_MAX_EXT_HEADERS", MAX_EXT_HEADERS as u64),
            ("RSTWALL_TCP_FLAGS_END", TCP_FLAGS_END as u64),
        ] {
            assert_eq!(num(&c, name), ours, "{name}");
        }
    }

    #[test]
    fn counters_match_the_header() {
        let c = header_constants();
        let in_header = c.keys().filter(|k| k.starts_with("RSTWALL_CNT_")).count();
        // Every counter, plus RSTWALL_CNT_MAX.
        assert_eq!(in_header, Counter::COUNT + 1, "counters in the header");
        for counter in Counter::ALL {
            let name = format!("RSTWALL_CNT_{}", counter.as_str().to_uppercase());
            assert_eq!(num(&c, &name), u64::from(counter.key()), "{name}");
        }
        for class in FlagClass::ALL {
            assert_eq!(Counter::of_class(class).as_str(), class.as_str());
        }
    }

    /// The counter names are one closed enum's, and the flag-class ones are
    /// FlagClass's names, which the daemon's metrics use as `class` labels.
    #[test]
    fn counter_names() {
        rstwall_engine::names::assert_consistent::<Counter>();
        for class in FlagClass::ALL {
            assert_eq!(Counter::of_class(class).as_str(), class.as_str());
            assert_eq!(Counter::of_class(class).index(), class.index());
        }
    }

    /// The parser limits are the userspace parser's.
    #[test]
    fn limits_match_the_userspace_parser() {
        use rstwall_engine::wire::{ethernet, ipv6};
        assert_eq!(MAX_VLAN_TAGS, ethernet::MAX_VLAN_TAGS);
        assert_eq!(MAX_EXT_HEADERS, ipv6::MAX_EXT_HEADERS);
    }

    #[test]
    fn addresses_map_into_one_space() {
        let v4: IpAddr = "198.18.0.7".parse().unwrap();
        let a = Addr::new(v4);
        assert_eq!(
            a.addr,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 7]
        );
        assert_eq!(a.to_ip(), v4);
        let v6: IpAddr = "2001:2::9".parse().unwrap();
        assert_eq!(Addr::new(v6).to_ip(), v6);

        let k = LpmKey::new("198.18.0.77/15".parse().unwrap());
        assert_eq!(k.prefixlen, 96 + 15);
        assert_eq!(&k.addr[12..], &[198, 18, 0, 0]);
        let bytes = k.to_bytes();
        assert_eq!(bytes[..4], (96u32 + 15).to_ne_bytes());
        assert_eq!(bytes[4..], k.addr);
        let k = LpmKey::new("2001:2::/48".parse().unwrap());
        assert_eq!(k.prefixlen, 48);
        assert_eq!(&k.addr[..6], &[0x20, 0x01, 0, 2, 0, 0]);
    }
}
