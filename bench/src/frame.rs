//! Building Ethernet/IPv4 and Ethernet/IPv6 TCP frames into a caller's
//! buffer, with valid IP and TCP checksums, so the same bytes serve the
//! benchmarks here and, later, a load generator that puts them on a wire.

use std::net::{IpAddr, SocketAddr};

/// Shortest frame handed to software: 64 bytes on the wire less the 4-byte
/// FCS the NIC strips. Shorter frames are zero-padded up to it.
pub const MIN_FRAME_LEN: usize = 60;
/// Longest frame [`TcpRepr::emit`] writes (IPv6, SYN options, payload).
pub const MAX_FRAME_LEN: usize = ETH_LEN + IPV6_LEN + TCP_LEN + SYN_OPTIONS.len() + MAX_PAYLOAD;
/// Longest payload a frame carries.
pub const MAX_PAYLOAD: usize = 16;

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const TCP_LEN: usize = 20;
const PROTO_TCP: u8 = 6;
const TTL: u8 = 64;

/// Locally administered MACs: the frames never leave this process as
/// anything but bytes, and the parser does not look at them.
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// What Linux puts in a SYN that fits a minimum-size frame: MSS 1460, NOP,
/// window scale 7 (timestamps and SACK-permitted would push an IPv4 SYN past
/// 64 bytes).
const SYN_OPTIONS: [u8; 8] = [2, 4, 0x05, 0xb4, 1, 3, 3, 7];
/// The shift [`SYN_OPTIONS`] announces.
pub const WINDOW_SHIFT: u8 = 7;

/// Request-looking bytes for data segments.
const PAYLOAD: &[u8; MAX_PAYLOAD] = b"GET / HTTP/1.1\r\n";

/// One TCP segment to write as a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRepr {
    /// Both ends of one address family.
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    /// [`rstwall_datapath::wire::TcpFlags`] bits.
    pub flags: u16,
    pub window: u16,
    /// Carry [`SYN_OPTIONS`].
    pub syn_options: bool,
    /// Bytes of payload, at most [`MAX_PAYLOAD`].
    pub payload_len: u8,
}

impl TcpRepr {
    fn ip_header_len(&self) -> usize {
        match self.src {
            SocketAddr::V4(_) => IPV4_LEN,
            SocketAddr::V6(_) => IPV6_LEN,
        }
    }

    fn tcp_len(&self) -> usize {
        let options = if self.syn_options {
            SYN_OPTIONS.len()
        } else {
            0
        };
        TCP_LEN + options + self.payload_len as usize
    }

    /// Length of the frame [`TcpRepr::emit`] writes, padding included.
    pub fn frame_len(&self) -> usize {
        (ETH_LEN + self.ip_header_len() + self.tcp_len()).max(MIN_FRAME_LEN)
    }

    /// Write the frame at the start of `buf` and return its length.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than [`TcpRepr::frame_len`], the payload is longer
    /// than [`MAX_PAYLOAD`], or the two addresses are of different families.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        assert!(self.payload_len as usize <= MAX_PAYLOAD, "payload too long");
        let len = self.frame_len();
        let buf = &mut buf[..len];
        buf.fill(0);
        buf[0..6].copy_from_slice(&DST_MAC);
        buf[6..12].copy_from_slice(&SRC_MAC);
        let tcp_at = ETH_LEN + self.ip_header_len();
        let tcp_len = self.tcp_len();
        self.emit_tcp(&mut buf[tcp_at..tcp_at + tcp_len]);
        let pseudo = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                buf[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
                let ip = &mut buf[ETH_LEN..tcp_at];
                ip[0] = 0x45;
                ip[2..4].copy_from_slice(&((IPV4_LEN + tcp_len) as u16).to_be_bytes());
                ip[6] = 0x40; // don't fragment
                ip[8] = TTL;
                ip[9] = PROTO_TCP;
                ip[12..16].copy_from_slice(&s.octets());
                ip[16..20].copy_from_slice(&d.octets());
                let sum = checksum(ip, 0);
                ip[10..12].copy_from_slice(&sum.to_be_bytes());
                sum_words(&s.octets(), sum_words(&d.octets(), 0))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                buf[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
                let ip = &mut buf[ETH_LEN..tcp_at];
                ip[0] = 0x60;
                ip[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
                ip[6] = PROTO_TCP;
                ip[7] = TTL;
                ip[8..24].copy_from_slice(&s.octets());
                ip[24..40].copy_from_slice(&d.octets());
                sum_words(&s.octets(), sum_words(&d.octets(), 0))
            }
            _ => panic!("source and destination of different address families"),
        };
        // Both pseudo-headers add the protocol and the TCP length.
        let pseudo = pseudo + u64::from(PROTO_TCP) + tcp_len as u64;
        let tcp = &mut buf[tcp_at..tcp_at + tcp_len];
        let sum = checksum(tcp, pseudo);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        len
    }

    /// The TCP header and payload, checksum zero.
    fn emit_tcp(&self, tcp: &mut [u8]) {
        tcp[0..2].copy_from_slice(&self.src.port().to_be_bytes());
        tcp[2..4].copy_from_slice(&self.dst.port().to_be_bytes());
        tcp[4..8].copy_from_slice(&self.seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&self.ack.to_be_bytes());
        let header_len = tcp.len() - self.payload_len as usize;
        tcp[12] = ((header_len / 4) as u8) << 4 | (self.flags >> 8) as u8 & 1;
        tcp[13] = self.flags as u8;
        tcp[14..16].copy_from_slice(&self.window.to_be_bytes());
        if self.syn_options {
            tcp[TCP_LEN..TCP_LEN + SYN_OPTIONS.len()].copy_from_slice(&SYN_OPTIONS);
        }
        tcp[header_len..].copy_from_slice(&PAYLOAD[..self.payload_len as usize]);
    }
}

/// Sum of big-endian 16-bit words (odd tail padded with zero), unfolded.
fn sum_words(data: &[u8], acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    let mut acc = acc;
    for w in &mut chunks {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// The Internet checksum (RFC 1071) of `data`, starting from `acc`.
fn checksum(data: &[u8], acc: u64) -> u16 {
    let mut acc = sum_words(data, acc);
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use rstwall_datapath::wire::{self, LinkType, Parsed, TcpFlags};

    fn repr(src: &str, dst: &str, flags: u16, syn_options: bool, payload_len: u8) -> TcpRepr {
        TcpRepr {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            seq: 0xdead_beef,
            ack: 0x0102_0304,
            flags,
            window: 502,
            syn_options,
            payload_len,
        }
    }

    /// etherparse agrees on every field and on both checksums.
    fn check(r: &TcpRepr) -> Vec<u8> {
        let mut buf = [0xffu8; MAX_FRAME_LEN];
        let len = r.emit(&mut buf);
        assert_eq!(len, r.frame_len());
        let frame = buf[..len].to_vec();
        let p = SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = p.transport else {
            panic!("no TCP in {frame:02x?}")
        };
        assert_eq!(tcp.source_port(), r.src.port());
        assert_eq!(tcp.destination_port(), r.dst.port());
        assert_eq!(tcp.sequence_number(), r.seq);
        assert_eq!(tcp.acknowledgment_number(), r.ack);
        assert_eq!(tcp.window_size(), r.window);
        assert_eq!(tcp.payload().len(), r.payload_len as usize);
        let expected = match p.net.unwrap() {
            NetSlice::Ipv4(ip) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum());
                tcp.to_header()
                    .calc_checksum_ipv4(&h, tcp.payload())
                    .unwrap()
            }
            NetSlice::Ipv6(ip) => tcp
                .to_header()
                .calc_checksum_ipv6(&ip.header().to_header(), tcp.payload())
                .unwrap(),
        };
        assert_eq!(tcp.checksum(), expected, "TCP checksum");

        let Ok(Parsed::Tcp(seg)) = wire::parse(LinkType::Ethernet, &frame) else {
            panic!("rstwall does not parse {frame:02x?}")
        };
        assert_eq!(seg.flags, TcpFlags(r.flags));
        assert_eq!(seg.payload_len, r.payload_len as u32);
        if r.syn_options {
            assert_eq!(seg.options.window_scale, Some(WINDOW_SHIFT));
            assert_eq!(seg.options.mss, Some(1460));
        }
        frame
    }

    #[test]
    fn ipv4_frames_are_minimum_size() {
        let data = repr(
            "198.18.0.1:40000",
            "198.19.0.1:443",
            TcpFlags::ACK | TcpFlags::PSH,
            false,
            6,
        );
        assert_eq!(check(&data).len(), MIN_FRAME_LEN);
        let ack = repr(
            "198.18.0.1:40000",
            "198.19.0.1:443",
            TcpFlags::ACK,
            false,
            0,
        );
        let frame = check(&ack);
        assert_eq!(frame.len(), MIN_FRAME_LEN);
        assert!(frame[54..].iter().all(|&b| b == 0), "padding is zero");
        let syn = repr("198.18.0.1:40000", "198.19.0.1:443", TcpFlags::SYN, true, 0);
        assert_eq!(check(&syn).len(), 62);
    }

    #[test]
    fn ipv6_frames() {
        let syn = repr(
            "[2001:2:0:c::1]:40000",
            "[2001:2:0:5::1]:443",
            TcpFlags::SYN,
            true,
            0,
        );
        assert_eq!(check(&syn).len(), 82);
        let rst = repr(
            "[2001:2:0:5::1]:443",
            "[2001:2:0:c::1]:40000",
            TcpFlags::RST | TcpFlags::ACK,
            false,
            0,
        );
        assert_eq!(check(&rst).len(), 74);
        let data = repr(
            "[2001:2:0:c::1]:40000",
            "[2001:2:0:5::1]:443",
            TcpFlags::ACK,
            false,
            MAX_PAYLOAD as u8,
        );
        assert_eq!(check(&data).len(), MAX_FRAME_LEN - SYN_OPTIONS.len());
    }

    #[test]
    fn odd_payload_checksums() {
        for n in 0..=MAX_PAYLOAD as u8 {
            check(&repr(
                "198.18.0.1:1",
                "198.19.0.1:2",
                TcpFlags::ACK,
                n % 2 == 0,
                n,
            ));
        }
    }
}
