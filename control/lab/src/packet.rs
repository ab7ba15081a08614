//! Hand-built IPv4/TCP segments for the attacker, and the small random
//! number generator that picks their addresses, ports and sequence numbers.

use std::net::SocketAddrV4;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// One TCP segment without options or payload, as a spoofing attacker
/// sends it.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
}

impl Segment {
    pub const LEN: usize = 40;

    /// The IPv4 packet (header without options, DF, TTL 64), both
    /// checksums filled in.
    pub fn to_ipv4(&self, ip_id: u16) -> [u8; Segment::LEN] {
        let mut p = [0u8; Segment::LEN];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(Segment::LEN as u16).to_be_bytes());
        p[4..6].copy_from_slice(&ip_id.to_be_bytes());
        p[6] = 0x40; // don't fragment
        p[8] = 64;
        p[9] = 6;
        p[12..16].copy_from_slice(&self.src.ip().octets());
        p[16..20].copy_from_slice(&self.dst.ip().octets());
        let ip_sum = checksum(&p[..20], 0);
        p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        let t = &mut p[20..];
        t[0..2].copy_from_slice(&self.src.port().to_be_bytes());
        t[2..4].copy_from_slice(&self.dst.port().to_be_bytes());
        t[4..8].copy_from_slice(&self.seq.to_be_bytes());
        t[8..12].copy_from_slice(&self.ack.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = self.flags;
        t[14..16].copy_from_slice(&self.window.to_be_bytes());
        // Pseudo-header: addresses, protocol, TCP length.
        let mut pseudo = 6 + 20;
        for a in [self.src.ip().octets(), self.dst.ip().octets()] {
            pseudo += u32::from(u16::from_be_bytes([a[0], a[1]]));
            pseudo += u32::from(u16::from_be_bytes([a[2], a[3]]));
        }
        let tcp_sum = checksum(&p[20..], pseudo);
        p[36..38].copy_from_slice(&tcp_sum.to_be_bytes());
        p
    }
}

/// The Internet checksum of `bytes`, starting from a partial sum.
fn checksum(bytes: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    for c in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// xorshift64*: fast, and good enough to scatter addresses, ports and
/// sequence numbers. Not for anything secret.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // Spread the seed's bits; the state must never be zero.
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// Seeded from the clock and the process id: a different run each time.
    pub fn from_time(salt: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng::new(t ^ u64::from(std::process::id()).rotate_left(32) ^ salt)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        debug_assert!(lo <= hi);
        let span = u64::from(hi - lo) + 1;
        lo + ((u64::from(self.next_u32()) * span) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn a_built_segment_checksums_to_zero() {
        let s = Segment {
            src: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 40_000),
            dst: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 5004),
            seq: 0xdead_beef,
            ack: 0,
            flags: RST,
            window: 0,
        };
        let p = s.to_ipv4(7);
        assert_eq!(checksum(&p[..20], 0), 0, "IPv4 header checksum");
        let mut pseudo = 6 + 20;
        for c in p[12..20].chunks(2) {
            pseudo += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        assert_eq!(checksum(&p[20..], pseudo), 0, "TCP checksum");
        assert_eq!(p[33], RST);
        assert_eq!(&p[24..28], &0xdead_beefu32.to_be_bytes());
    }

    #[test]
    fn range_stays_in_bounds() {
        let mut r = Rng::new(1);
        for _ in 0..10_000 {
            let v = r.range(1024, 65535);
            assert!((1024..=65535).contains(&v));
        }
        assert_eq!(r.range(5, 5), 5);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            seen[r.range(0, 3) as usize] = true;
        }
        assert_eq!(seen, [true; 4]);
    }
}
