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

pub mod guard;

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
pub const MAP_GUARD: &str = "guard";
pub const MAP_GUARD_CFG: &str = "guard_cfg";

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

/// Compile-time checks of a counter enum: each value's discriminant is its
/// index (its slot in the map); with `flag_classes_first`, the first
/// [`FlagClass::COUNT`] values are the [`FlagClass`]es, index for index
/// and name for name.
macro_rules! assert_counter_slots {
    ($counter:ident) => {
        const _: () = {
            let mut i = 0;
            while i < $counter::COUNT {
                assert!($counter::ALL[i] as usize == i);
                i += 1;
            }
        };
    };
    ($counter:ident, flag_classes_first) => {
        assert_counter_slots!($counter);
        const _: () = {
            let mut i = 0;
            while i < FlagClass::COUNT {
                assert!($counter::ALL[i] as usize == FlagClass::ALL[i].index());
                let (a, b) = (
                    $counter::NAMES[i].as_bytes(),
                    FlagClass::NAMES[i].as_bytes(),
                );
                assert!(a.len() == b.len());
                let mut j = 0;
                while j < a.len() {
                    assert!(a[j] == b[j]);
                    j += 1;
                }
                i += 1;
            }
        };
    };
}

rstwall_engine::closed_enum! {
    /// Indices into the `counters` PERCPU_ARRAY (`enum rstwall_counter`).
    /// The first six are the [`FlagClass`]es, index for index and with
    /// their names. A name is the header's `RSTWALL_CNT_*` name without its
    /// prefix, in lower case, and the field name in [`crate::XdpCounters`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[repr(u32)]
    pub enum Counter: "XDP counter" {
        // The flag classes (checked below).
        Syn, SynAck = FlagClass::SynAck.as_str(), Fin, Rst, RstAck = FlagClass::RstAck.as_str(), Other,
        NonTcp,
        Malformed,
        ToXsk,
        Forwarded,
        TapDropped,
        Bypassed,
        DenyDropped,
        BlockDropped,
        MalformedDropped,
        PeerMissing,
        GuardDropped,
        GuardInWindow,
        GuardOutOfWindow,
        GuardSynSentBadAck,
        GuardStale,
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

assert_counter_slots!(Counter, flag_classes_first);
const _: () = assert!(Counter::NonTcp as usize == FlagClass::COUNT);

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

/// Host mode's part of the contract (`rstwall_host_tc.bpf.c`,
/// `rstwall_host_trace.bpf.c`), as the header's host section defines it.
pub mod host {
    use std::mem::size_of;

    use rstwall_engine::class::FlagClass;

    use crate::skel::{host_tc, host_trace};

    /// The tc programs by link kind and direction (kernel names, at most
    /// 15 characters).
    pub const PROG_ETH_IN: &str = "host_eth_in";
    pub const PROG_ETH_OUT: &str = "host_eth_out";
    pub const PROG_RAW_IN: &str = "host_raw_in";
    pub const PROG_RAW_OUT: &str = "host_raw_out";
    pub const MAP_COUNTERS: &str = "host_counters";
    pub const MAP_RINGS: &str = "host_rings";
    pub const CFG_RINGS: &str = "cfg_host_rings";
    pub const MAP_EVENTS: &str = "host_events";
    pub const MAP_OWNERS: &str = "host_owners";
    pub const MAP_TRACE_COUNTERS: &str = "host_tcounters";
    pub const CFG_NETNS: &str = "cfg_host_netns";

    pub const MAX_RINGS: u32 = 64;
    /// Longest header copy a record carries.
    pub const SNAPLEN: usize = 256;
    pub const RECORD_SIZE: usize = 24;
    pub const EVENTS_SIZE: u32 = 1 << 20;

    pub const DIR_IN: u8 = 0;
    pub const DIR_OUT: u8 = 1;
    pub const LINK_ETHERNET: u8 = 0;
    pub const LINK_RAW: u8 = 1;

    pub const OWNER_CONNECT: u32 = 1;
    pub const OWNER_LISTEN: u32 = 2;
    pub const OWNER_ACCEPT: u32 = 3;
    pub const OWNER_EXISTING: u32 = 4;
    pub const COMM_LEN: usize = 16;
    pub const OWNER_SIZE: usize = 32;

    pub const KEV_RECEIVE_RESET: u8 = 1;
    pub const KEV_SEND_RESET: u8 = 2;
    pub const KEV_RST_DROPPED: u8 = 3;
    pub const KEV_CHALLENGE_ACK: u8 = 4;
    pub const KEV_SOCK_CLOSED: u8 = 5;
    pub const KEV_SOCK_OWNER: u8 = 6;
    pub const KEV_HAS_OWNER: u8 = 1;
    pub const KEV_HAS_SEQ: u8 = 2;
    pub const KEV_HAS_REASON: u8 = 4;
    pub const KEV_HAS_SOCKET: u8 = 8;
    pub const KEVENT_SIZE: usize = 96;

    rstwall_engine::closed_enum! {
        /// Indices into `host_counters` (`enum rstwall_host_counter`): the
        /// six [`FlagClass`]es first, index for index and with their names.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum HostCounter: "host counter" {
            // The flag classes (checked below).
            Syn, SynAck = FlagClass::SynAck.as_str(), Fin, Rst, RstAck = FlagClass::RstAck.as_str(), Other,
            NonTcp,
            Malformed,
            Records,
            RecordsLost,
        }
    }

    rstwall_engine::closed_enum! {
        /// Indices into `host_tcounters`
        /// (`enum rstwall_host_trace_counter`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum TraceCounter: "host trace counter" {
            Events,
            EventsLost,
            Owners,
            ReadFailed,
        }
    }

    assert_counter_slots!(HostCounter, flag_classes_first);
    assert_counter_slots!(TraceCounter);

    /// `struct rstwall_host_record`: the fixed part of a header record;
    /// `caplen` bytes of the frame follow it.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct Record {
        pub ts_ns: u64,
        pub ifindex: u32,
        pub wire_len: u32,
        pub caplen: u16,
        pub direction: u8,
        pub link: u8,
        pub reserved: u32,
    }

    /// `struct rstwall_host_owner`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct Owner {
        pub tgid: u32,
        pub how: u32,
        pub cgroup_id: u64,
        pub comm: [u8; COMM_LEN],
    }

    /// `struct rstwall_host_kevent`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    #[repr(C)]
    pub struct Kevent {
        pub ts_ns: u64,
        pub kind: u8,
        pub state: u8,
        pub flags: u8,
        pub reserved: u8,
        pub reason: u32,
        pub laddr: [u8; super::ADDR_LEN],
        pub raddr: [u8; super::ADDR_LEN],
        pub lport: u16,
        pub rport: u16,
        pub seq: u32,
        pub owner: Owner,
        pub sk_cookie: u64,
    }

    const _: () = assert!(size_of::<Record>() == RECORD_SIZE);
    const _: () = assert!(size_of::<Owner>() == OWNER_SIZE);
    const _: () = assert!(size_of::<Kevent>() == KEVENT_SIZE);
    // And against what the skeletons read from the objects' BTF.
    const _: () = assert!(size_of::<Record>() == size_of::<host_tc::types::rstwall_host_record>());
    const _: () = assert!(size_of::<Owner>() == size_of::<host_trace::types::rstwall_host_owner>());
    const _: () = assert!(
        size_of::<host_tc::types::host_scratch>() == RECORD_SIZE + SNAPLEN,
        "the scratch record is a record and a snap length of bytes"
    );

    impl Record {
        /// The fixed part at the start of `bytes` (a record from a ring),
        /// or `None` when it is shorter than that.
        pub fn read(bytes: &[u8]) -> Option<Record> {
            let b = bytes.get(..RECORD_SIZE)?;
            let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
            let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            Some(Record {
                ts_ns: u64::from(u32_at(0)) | (u64::from(u32_at(4)) << 32),
                ifindex: u32_at(8),
                wire_len: u32_at(12),
                caplen: u16_at(16),
                direction: b[18],
                link: b[19],
                reserved: u32_at(20),
            })
        }
    }

    impl Kevent {
        /// An event from its ring bytes, or `None` when they are fewer
        /// than an event's.
        pub fn read(bytes: &[u8]) -> Option<Kevent> {
            if bytes.len() < KEVENT_SIZE {
                return None;
            }
            // SAFETY: Kevent is plain old data (integers and byte arrays,
            // every bit pattern valid) of KEVENT_SIZE bytes, and `bytes`
            // has at least that many; read_unaligned needs no alignment.
            Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<Kevent>()) })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use rstwall_engine::RstClass;

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
            ("RSTWALL_MAP_GUARD", MAP_GUARD),
            ("RSTWALL_MAP_GUARD_CFG", MAP_GUARD_CFG),
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
            ("RSTWALL_GUARD_MAX_ENTRIES", u64::from(guard::MAX_ENTRIES)),
            ("RSTWALL_GUARD_SYNCED", u64::from(guard::MODE_SYNCED)),
            ("RSTWALL_GUARD_SYN_SENT", u64::from(guard::MODE_SYN_SENT)),
            ("RSTWALL_GUARD_STALE", u64::from(guard::MODE_STALE)),
            (
                "RSTWALL_GUARD_CLASS_IN_WINDOW",
                RstClass::InWindow.index() as u64,
            ),
            (
                "RSTWALL_GUARD_CLASS_OUT_OF_WINDOW",
                RstClass::OutOfWindow.index() as u64,
            ),
            (
                "RSTWALL_GUARD_CLASS_SYN_SENT_BAD_ACK",
                RstClass::SynSentBadAck.index() as u64,
            ),
            ("RSTWALL_GUARD_KEY_SIZE", guard::KEY_SIZE as u64),
            ("RSTWALL_GUARD_ENTRY_SIZE", guard::ENTRY_SIZE as u64),
            ("RSTWALL_GUARD_CFG_SIZE", guard::CFG_SIZE as u64),
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

    #[test]
    fn host_names_and_numbers_match_the_header() {
        use super::host::*;
        let c = header_constants();
        for (name, ours) in [
            ("RSTWALL_HOST_ETH_IN", PROG_ETH_IN),
            ("RSTWALL_HOST_ETH_OUT", PROG_ETH_OUT),
            ("RSTWALL_HOST_RAW_IN", PROG_RAW_IN),
            ("RSTWALL_HOST_RAW_OUT", PROG_RAW_OUT),
            ("RSTWALL_MAP_HOST_COUNTERS", MAP_COUNTERS),
            ("RSTWALL_MAP_HOST_RINGS", MAP_RINGS),
            ("RSTWALL_CFG_HOST_RINGS", CFG_RINGS),
            ("RSTWALL_MAP_HOST_EVENTS", MAP_EVENTS),
            ("RSTWALL_MAP_HOST_OWNERS", MAP_OWNERS),
            ("RSTWALL_MAP_HOST_TRACE_COUNTERS", MAP_TRACE_COUNTERS),
            ("RSTWALL_CFG_HOST_NETNS", CFG_NETNS),
        ] {
            assert_eq!(get(&c, name), ours, "{name}");
            assert!(ours.len() <= 15, "{name}: the kernel keeps 15 characters");
        }
        for (name, ours) in [
            ("RSTWALL_HOST_MAX_RINGS", u64::from(MAX_RINGS)),
            ("RSTWALL_HOST_SNAPLEN", SNAPLEN as u64),
            ("RSTWALL_HOST_RECORD_SIZE", RECORD_SIZE as u64),
            ("RSTWALL_HOST_EVENTS_SIZE", u64::from(EVENTS_SIZE)),
            ("RSTWALL_HOST_DIR_IN", u64::from(DIR_IN)),
            ("RSTWALL_HOST_DIR_OUT", u64::from(DIR_OUT)),
            ("RSTWALL_HOST_LINK_ETHERNET", u64::from(LINK_ETHERNET)),
            ("RSTWALL_HOST_LINK_RAW", u64::from(LINK_RAW)),
            ("RSTWALL_HOST_OWNER_CONNECT", u64::from(OWNER_CONNECT)),
            ("RSTWALL_HOST_OWNER_LISTEN", u64::from(OWNER_LISTEN)),
            ("RSTWALL_HOST_OWNER_ACCEPT", u64::from(OWNER_ACCEPT)),
            ("RSTWALL_HOST_OWNER_EXISTING", u64::from(OWNER_EXISTING)),
            ("RSTWALL_HOST_COMM_LEN", COMM_LEN as u64),
            ("RSTWALL_HOST_OWNER_SIZE", OWNER_SIZE as u64),
            (
                "RSTWALL_HOST_KEV_RECEIVE_RESET",
                u64::from(KEV_RECEIVE_RESET),
            ),
            ("RSTWALL_HOST_KEV_SEND_RESET", u64::from(KEV_SEND_RESET)),
            ("RSTWALL_HOST_KEV_RST_DROPPED", u64::from(KEV_RST_DROPPED)),
            (
                "RSTWALL_HOST_KEV_CHALLENGE_ACK",
                u64::from(KEV_CHALLENGE_ACK),
            ),
            ("RSTWALL_HOST_KEV_SOCK_CLOSED", u64::from(KEV_SOCK_CLOSED)),
            ("RSTWALL_HOST_KEV_SOCK_OWNER", u64::from(KEV_SOCK_OWNER)),
            ("RSTWALL_HOST_KEV_HAS_OWNER", u64::from(KEV_HAS_OWNER)),
            ("RSTWALL_HOST_KEV_HAS_SEQ", u64::from(KEV_HAS_SEQ)),
            ("RSTWALL_HOST_KEV_HAS_REASON", u64::from(KEV_HAS_REASON)),
            ("RSTWALL_HOST_KEV_HAS_SOCKET", u64::from(KEV_HAS_SOCKET)),
            ("RSTWALL_HOST_KEVENT_SIZE", KEVENT_SIZE as u64),
            ("RSTWALL_HOST_CNT_MAX", HostCounter::COUNT as u64),
            ("RSTWALL_HOST_TCNT_MAX", TraceCounter::COUNT as u64),
        ] {
            assert_eq!(num(&c, name), ours, "{name}");
        }
        for counter in HostCounter::ALL {
            let name = format!("RSTWALL_HOST_CNT_{}", counter.as_str().to_uppercase());
            assert_eq!(num(&c, &name), counter as u64, "{name}");
        }
        for counter in TraceCounter::ALL {
            let name = format!("RSTWALL_HOST_TCNT_{}", counter.as_str().to_uppercase());
            assert_eq!(num(&c, &name), counter as u64, "{name}");
        }
        let host_counters = c
            .keys()
            .filter(|k| k.starts_with("RSTWALL_HOST_CNT_"))
            .count();
        assert_eq!(
            host_counters,
            HostCounter::COUNT + 1,
            "host counters in the header"
        );
        rstwall_engine::names::assert_consistent::<HostCounter>();
        rstwall_engine::names::assert_consistent::<TraceCounter>();
    }

    #[test]
    fn host_records_read_back() {
        use super::host::*;
        let mut bytes = vec![0u8; RECORD_SIZE + 3];
        bytes[..8].copy_from_slice(&0x0102_0304_0506_0708u64.to_ne_bytes());
        bytes[8..12].copy_from_slice(&7u32.to_ne_bytes());
        bytes[12..16].copy_from_slice(&1500u32.to_ne_bytes());
        bytes[16..18].copy_from_slice(&3u16.to_ne_bytes());
        bytes[18] = DIR_OUT;
        bytes[19] = LINK_RAW;
        let r = Record::read(&bytes).unwrap();
        assert_eq!(
            r,
            Record {
                ts_ns: 0x0102_0304_0506_0708,
                ifindex: 7,
                wire_len: 1500,
                caplen: 3,
                direction: DIR_OUT,
                link: LINK_RAW,
                reserved: 0,
            }
        );
        assert_eq!(Record::read(&bytes[..RECORD_SIZE - 1]), None);
        let mut ev = vec![0u8; KEVENT_SIZE];
        ev[8] = KEV_SEND_RESET;
        ev[12..16].copy_from_slice(&1u32.to_ne_bytes());
        ev[48..50].copy_from_slice(&7211u16.to_ne_bytes());
        let k = Kevent::read(&ev).unwrap();
        assert_eq!((k.kind, k.reason, k.lport), (KEV_SEND_RESET, 1, 7211));
        assert_eq!(Kevent::read(&ev[..KEVENT_SIZE - 1]), None);
    }
}
