//! Link layers: Ethernet for live ports, plus the link types people capture
//! on (`tcpdump -i any` gives Linux cooked v1/v2, BSD loopback gives NULL)
//! and the two more Wireshark reads where that costs a few lines (Linux
//! ARCnet, IP over InfiniBand).

use super::ethernet::{self, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::{be16, ParseError};

crate::closed_enum! {
    /// Link-layer header types, numbered as in pcap/pcapng (`LINKTYPE_*`).
    /// [`LinkType::ALL`] is every link type [`crate::wire`] reads.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum LinkType: "link type" {
        /// LINKTYPE_ETHERNET (1).
        Ethernet,
        /// LINKTYPE_NULL (0): 4-byte address family in the writer's byte order.
        Null,
        /// LINKTYPE_LOOP (108): 4-byte address family in network byte order.
        Loop,
        /// LINKTYPE_RAW (101), and DLT_RAW's platform numbers 12 and 14: bare IP.
        Raw,
        /// LINKTYPE_IPV4 (228).
        Ipv4,
        /// LINKTYPE_IPV6 (229).
        Ipv6,
        /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1.
        LinuxSll,
        /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2.
        LinuxSll2,
        /// LINKTYPE_PPP (9): PPP, with or without the 0xff 0x03 HDLC address
        /// and control bytes, with a 1- or 2-byte protocol field.
        Ppp,
        /// LINKTYPE_PPP_HDLC (50): PPP in HDLC-like framing, which on serial
        /// lines may also carry Cisco HDLC frames.
        PppSerial,
        /// LINKTYPE_ARCNET_LINUX (129): Linux's ARCnet header, then RFC 1051
        /// or RFC 1201 framing.
        ArcnetLinux,
        /// LINKTYPE_IPOIB (242): IP over InfiniBand (RFC 4391) behind Linux's
        /// 40-byte pseudo-header of link addresses.
        Ipoib,
    }
}

impl LinkType {
    /// Map a pcap link-type number; `None` for link types we do not read.
    pub fn from_pcap(linktype: u32) -> Option<LinkType> {
        Some(match linktype {
            1 => LinkType::Ethernet,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            101 | 12 | 14 => LinkType::Raw,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            9 => LinkType::Ppp,
            50 => LinkType::PppSerial,
            129 => LinkType::ArcnetLinux,
            242 => LinkType::Ipoib,
            _ => return None,
        })
    }

    /// The pcap number we write back out.
    pub fn to_pcap(self) -> u32 {
        match self {
            LinkType::Ethernet => 1,
            LinkType::Null => 0,
            LinkType::Loop => 108,
            LinkType::Raw => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Ppp => 9,
            LinkType::PppSerial => 50,
            LinkType::ArcnetLinux => 129,
            LinkType::Ipoib => 242,
        }
    }
}

/// What the link layer says sits above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Network {
    Ipv4,
    Ipv6,
    /// Bare IP whose version nibble decides.
    ByVersion,
    Unknown,
}

#[inline]
fn by_ethertype(ethertype: u16) -> Network {
    match ethertype {
        ETHERTYPE_IPV4 => Network::Ipv4,
        ETHERTYPE_IPV6 => Network::Ipv6,
        _ => Network::Unknown,
    }
}

/// BSD address families for IPv6 differ per OS (24 NetBSD/OpenBSD, 28
/// FreeBSD, 30 macOS); 2 is AF_INET everywhere.
#[inline]
fn by_bsd_family(family: u32) -> Network {
    match family {
        2 => Network::Ipv4,
        10 | 24 | 28 | 30 => Network::Ipv6,
        _ => Network::Unknown,
    }
}

/// Strip the link layer: what protocol follows and the bytes where it starts.
#[inline(always)]
pub(crate) fn network_layer(link: LinkType, f: &[u8]) -> Result<(Network, &[u8]), ParseError> {
    match link {
        LinkType::Ethernet => {
            let (ethertype, rest) = ethernet::strip(f)?;
            Ok((by_ethertype(ethertype), rest))
        }
        LinkType::Null | LinkType::Loop => {
            if f.len() < 4 {
                return Err(ParseError::TruncatedLink);
            }
            let raw = [f[0], f[1], f[2], f[3]];
            let family = if link == LinkType::Loop {
                u32::from_be_bytes(raw)
            } else {
                // Written in the capturing host's byte order, which the file
                // does not record; a family number is small, so the order in
                // which it is small is the right one.
                let le = u32::from_le_bytes(raw);
                if le <= 0xffff {
                    le
                } else {
                    u32::from_be_bytes(raw)
                }
            };
            Ok((by_bsd_family(family), &f[4..]))
        }
        LinkType::Raw => Ok((Network::ByVersion, f)),
        LinkType::Ipv4 => Ok((Network::Ipv4, f)),
        LinkType::Ipv6 => Ok((Network::Ipv6, f)),
        LinkType::LinuxSll => {
            // packet type(2) ARPHRD(2) addr len(2) addr(8) protocol(2)
            if f.len() < 16 {
                return Err(ParseError::TruncatedLink);
            }
            Ok((sll_protocol(be16(f, 2), be16(f, 14)), &f[16..]))
        }
        LinkType::LinuxSll2 => {
            // protocol(2) reserved(2) ifindex(4) ARPHRD(2) type(1) addr len(1) addr(8)
            if f.len() < 20 {
                return Err(ParseError::TruncatedLink);
            }
            Ok((sll_protocol(be16(f, 8), be16(f, 0)), &f[20..]))
        }
        LinkType::Ppp | LinkType::PppSerial => ppp(f),
        LinkType::ArcnetLinux => arcnet(f),
        LinkType::Ipoib => {
            // Link addresses (40), then RFC 4391's header: type(2) reserved(2).
            if f.len() < 44 {
                return Err(ParseError::TruncatedLink);
            }
            Ok((by_ethertype(be16(f, 40)), &f[44..]))
        }
    }
}

/// ARCnet protocol IDs: IPv4 in RFC 1051 framing, IPv4 and IPv6 (RFC 2497)
/// in RFC 1201 framing.
const ARC_IPV4_RFC1051: u8 = 240;
const ARC_IPV4: u8 = 212;
const ARC_IPV6: u8 = 196;
/// RFC 1201 split flag of an exception packet (a 4-byte filler follows).
const ARC_EXCEPTION: u8 = 0xff;

/// Linux's ARCnet header: source(1) destination(1) offset(2) protocol(1).
/// RFC 1051 framing puts IP right after it; RFC 1201 adds a split flag(1)
/// and a sequence number(2), and an exception packet repeats the three
/// after a filler. A fragment other than the first (an even, non-zero
/// split flag) carries no IP header.
#[inline]
fn arcnet(f: &[u8]) -> Result<(Network, &[u8]), ParseError> {
    let proto = *f.get(4).ok_or(ParseError::TruncatedLink)?;
    let network = match proto {
        ARC_IPV4_RFC1051 => return Ok((Network::Ipv4, &f[5..])),
        ARC_IPV4 => Network::Ipv4,
        ARC_IPV6 => Network::Ipv6,
        _ => return Ok((Network::Unknown, &f[5..])),
    };
    let (flag, start) = match f.get(5) {
        Some(&ARC_EXCEPTION) => (f.get(9), 12),
        flag => (flag, 8),
    };
    let (Some(&flag), Some(rest)) = (flag, f.get(start..)) else {
        return Err(ParseError::TruncatedLink);
    };
    if flag != 0 && flag & 1 == 0 {
        return Ok((Network::Unknown, rest));
    }
    Ok((network, rest))
}

const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
const CHDLC_UNICAST: u8 = 0x0f;
const CHDLC_MULTICAST: u8 = 0x8f;

/// PPP as Wireshark and tcpdump read it: a first byte of 0xff is the HDLC
/// address (followed by control), 0x0f/0x8f starts a Cisco HDLC frame
/// (address, control, ethertype); otherwise address and control were
/// compressed away. A protocol whose first byte is odd is one byte long
/// (protocol-field compression, RFC 1661 §6.5).
#[inline]
fn ppp(f: &[u8]) -> Result<(Network, &[u8]), ParseError> {
    let rest = match f.first() {
        None => return Err(ParseError::TruncatedLink),
        Some(&(CHDLC_UNICAST | CHDLC_MULTICAST)) => {
            if f.len() < 4 {
                return Err(ParseError::TruncatedLink);
            }
            return Ok((by_ethertype(be16(f, 2)), &f[4..]));
        }
        Some(&0xff) => f.get(2..).ok_or(ParseError::TruncatedLink)?,
        Some(_) => f,
    };
    let (protocol, rest) = match rest {
        [p, tail @ ..] if p & 1 == 1 => (u16::from(*p), tail),
        [hi, lo, tail @ ..] => (u16::from_be_bytes([*hi, *lo]), tail),
        _ => return Err(ParseError::TruncatedLink),
    };
    let network = match protocol {
        PPP_IPV4 => Network::Ipv4,
        PPP_IPV6 => Network::Ipv6,
        _ => Network::Unknown,
    };
    Ok((network, rest))
}

/// In cooked captures the protocol field is an ethertype, except for a few
/// ARPHRD types where it means something else (netlink, CAN...).
#[inline]
fn sll_protocol(arphrd: u16, protocol: u16) -> Network {
    const ARPHRD_NETLINK: u16 = 824;
    const ARPHRD_CAN: u16 = 280;
    match arphrd {
        ARPHRD_NETLINK | ARPHRD_CAN => Network::Unknown,
        _ => by_ethertype(protocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse, Parsed};

    #[test]
    fn link_type_names() {
        crate::names::assert_consistent::<LinkType>();
    }

    #[test]
    fn pcap_numbers_round_trip() {
        for link in LinkType::ALL {
            assert_eq!(LinkType::from_pcap(link.to_pcap()), Some(link));
        }
        assert_eq!(LinkType::from_pcap(127), None);
    }

    /// An IPv4 + TCP RST|ACK, 40 bytes.
    fn ipv4_rst() -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        p[9] = 6;
        p[32] = 5 << 4;
        p[33] = 0x14;
        p
    }

    fn with(prefix: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut f = prefix.to_vec();
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn ppp_framings() {
        let ip = ipv4_rst();
        for link in [LinkType::Ppp, LinkType::PppSerial] {
            // HDLC address/control, then 2-byte protocol.
            let f = with(&[0xff, 0x03, 0x00, 0x21], &ip);
            assert_eq!(network_layer(link, &f), Ok((Network::Ipv4, &ip[..])));
            // Address/control compressed; protocol-field compressed.
            let f = with(&[0x21], &ip);
            assert_eq!(network_layer(link, &f), Ok((Network::Ipv4, &ip[..])));
            let f = with(&[0x00, 0x57], &[0x60]);
            assert_eq!(network_layer(link, &f), Ok((Network::Ipv6, &[0x60][..])));
            // Cisco HDLC on a PPP link: address, control, ethertype.
            let f = with(&[0x0f, 0x00, 0x08, 0x00], &ip);
            assert_eq!(network_layer(link, &f), Ok((Network::Ipv4, &ip[..])));
            let f = with(&[0x8f, 0x00, 0x86, 0xdd], &[]);
            assert_eq!(network_layer(link, &f), Ok((Network::Ipv6, &[][..])));
            // LCP and MPLS are not IP.
            let f = with(&[0xff, 0x03, 0xc0, 0x21], &[1, 2]);
            assert_eq!(network_layer(link, &f).unwrap().0, Network::Unknown);
            let f = with(&[0xff, 0x03, 0x02, 0x81], &ip);
            assert_eq!(network_layer(link, &f).unwrap().0, Network::Unknown);
            let f = with(&[0xff, 0x03, 0x00, 0x21], &ip);
            assert!(matches!(parse(link, &f), Ok(Parsed::Tcp(s)) if s.flags.rst()));
        }
    }

    #[test]
    fn arcnet_framings() {
        let ip = ipv4_rst();
        let link = LinkType::ArcnetLinux;
        // RFC 1051: source, destination, offset, protocol.
        let f = with(&[0xbe, 0x50, 0xab, 0x08, 240], &ip);
        assert!(matches!(parse(link, &f), Ok(Parsed::Tcp(s)) if s.flags.rst()));
        // RFC 1201, unfragmented and first fragment.
        for flag in [0, 1, 3] {
            let f = with(&[0xbe, 0x50, 0xa8, 0xe7, 212, flag, 0x01, 0x66], &ip);
            assert_eq!(
                network_layer(link, &f),
                Ok((Network::Ipv4, &ip[..])),
                "{flag}"
            );
        }
        // A later fragment, an exception packet, ARP, IPv6.
        let f = with(&[0xbe, 0x50, 0, 0, 212, 2, 0x01, 0x66], &ip);
        assert_eq!(network_layer(link, &f).unwrap().0, Network::Unknown);
        let f = with(
            &[0xbe, 0x50, 0, 0, 212, 0xff, 0xff, 0xff, 212, 0, 0, 1],
            &ip,
        );
        assert_eq!(network_layer(link, &f), Ok((Network::Ipv4, &ip[..])));
        let f = with(&[0xbe, 0x50, 0, 0, 213, 0, 0, 1], &[1, 2]);
        assert_eq!(network_layer(link, &f).unwrap().0, Network::Unknown);
        let f = with(&[0xbe, 0x50, 0, 0, 196, 0, 0, 1], &[0x60]);
        assert_eq!(network_layer(link, &f), Ok((Network::Ipv6, &[0x60][..])));
        for short in [
            &[0xbe, 0x50, 0, 0][..],
            &[0, 0, 0, 0, 212, 0, 0],
            &[0, 0, 0, 0, 212, 0xff, 0xff, 0xff, 212, 0, 0],
        ] {
            assert_eq!(
                network_layer(link, short),
                Err(ParseError::TruncatedLink),
                "{short:?}"
            );
        }
    }

    #[test]
    fn ipoib_pseudo_header() {
        let ip = ipv4_rst();
        let mut head = [0u8; 44];
        head[40..42].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let f = with(&head, &ip);
        assert_eq!(
            network_layer(LinkType::Ipoib, &f),
            Ok((Network::Ipv4, &ip[..]))
        );
        assert_eq!(
            network_layer(LinkType::Ipoib, &f[..43]),
            Err(ParseError::TruncatedLink)
        );
        head[40..42].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(
            network_layer(LinkType::Ipoib, &head).unwrap().0,
            Network::Unknown
        );
    }

    #[test]
    fn ppp_truncated() {
        for f in [
            &[][..],
            &[0xff],
            &[0xff, 0x03],
            &[0xff, 0x03, 0x00],
            &[0x00],
            &[0x0f, 0, 8],
        ] {
            assert_eq!(
                network_layer(LinkType::Ppp, f),
                Err(ParseError::TruncatedLink),
                "{f:?}"
            );
        }
    }
}
