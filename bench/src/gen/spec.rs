//! Crafted frames: a [`Spec`] gives each header field a [`Pick`] — one
//! value, a range walked in order, or random draws from a range — and
//! [`Spec::build`] writes a table of frames (with [`crate::frame`], like
//! every other frame of the bench) that the sender replays in order. Ranges
//! and random draws therefore repeat with the table's length; with ranges
//! only, the table holds exactly one full cycle when that fits.
//!
//! The parsers of the picks' text forms (`A-B+STEP`, `random:NET/LEN`, ...)
//! are here too; every error names the option it is about, in one line.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use rstwall_engine::wire::TcpFlags;
use rstwall_netlab::{rng, Rng};

use crate::error::BadArg;
use crate::frame::{self, marker_mac, TcpRepr, MARK_DELIVER};
use crate::traffic::{Frames, Label};

/// Largest frame table (`--frames`).
pub const MAX_TABLE: usize = 1 << 20;
/// Frame table length when picks are random (`--frames` default).
pub const DEFAULT_TABLE: usize = 65_536;
/// The default source MAC of crafted frames: the bench's marker for a
/// crafted frame that its sink delivers ([`frame::marker_mac`]).
pub const CRAFTED_MAC: [u8; 6] = marker_mac(Label::Crafted.code() | MARK_DELIVER);

/// `option: msg` as a [`BadArg`].
pub fn bad<T>(option: &str, msg: impl fmt::Display) -> Result<T, BadArg> {
    Err(BadArg(format!("{option}: {msg}")))
}

// ---------------------------------------------------------------------------
// Picks

/// How one header field gets its value in frame `i` of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pick {
    Fixed(u128),
    /// `first`, `first + step`, ... up to `last`, then again.
    Walk {
        first: u128,
        last: u128,
        step: u128,
    },
    /// Uniform in `first..=last`.
    Random {
        first: u128,
        last: u128,
    },
}

impl Pick {
    /// Values a walk goes through before it repeats (1 for a fixed value,
    /// 0 for random).
    pub fn cycle(&self) -> u128 {
        match *self {
            Pick::Fixed(_) => 1,
            Pick::Walk { first, last, step } => (last - first) / step + 1,
            Pick::Random { .. } => 0,
        }
    }

    pub fn is_fixed(&self) -> bool {
        matches!(self, Pick::Fixed(_))
    }

    fn nth(&self, i: u64, rng: &mut Rng) -> u128 {
        match *self {
            Pick::Fixed(v) => v,
            Pick::Walk { first, step, .. } => first + (u128::from(i) % self.cycle()) * step,
            Pick::Random { first, last } => rng.u128(first..=last),
        }
    }

    /// The largest value it gives.
    pub fn max(&self) -> u128 {
        match *self {
            Pick::Fixed(v) => v,
            Pick::Walk { last, .. } | Pick::Random { last, .. } => last,
        }
    }
}

/// A number pick: `N`, `A-B`, `A-B+STEP`, `random` (the whole range of
/// the field, `0..=max`), `random:A-B`. Numbers are decimal or `0x` hex.
pub fn parse_number_pick(option: &str, s: &str, max: u128) -> Result<Pick, BadArg> {
    let num = |t: &str| -> Result<u128, BadArg> {
        let t = t.trim();
        let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(hex) => u128::from_str_radix(hex, 16),
            None => t.parse::<u128>(),
        };
        match v {
            Ok(v) if v <= max => Ok(v),
            Ok(_) => bad(option, format!("{t} is over {max}")),
            Err(_) => bad(option, format!("'{t}' is not a number")),
        }
    };
    let range = |t: &str| -> Result<(u128, u128), BadArg> {
        let (a, b) = t
            .split_once('-')
            .ok_or_else(|| BadArg(format!("{option}: '{t}' is not a range A-B")))?;
        let (a, b) = (num(a)?, num(b)?);
        if a > b {
            return bad(option, format!("range {t} goes backwards"));
        }
        Ok((a, b))
    };
    let s = s.trim();
    if s == "random" {
        return Ok(Pick::Random {
            first: 0,
            last: max,
        });
    }
    if let Some(r) = s.strip_prefix("random:") {
        let (first, last) = range(r)?;
        return Ok(Pick::Random { first, last });
    }
    if s.contains('-') {
        let (r, step) = match s.split_once('+') {
            Some((r, step)) => (r, num(step)?),
            None => (s, 1),
        };
        if step == 0 {
            return bad(option, "the step of a range must be at least 1");
        }
        let (first, last) = range(r)?;
        return Ok(Pick::Walk { first, last, step });
    }
    Ok(Pick::Fixed(num(s)?))
}

/// Address family of an address pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn of(a: IpAddr) -> Family {
        if a.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn value(a: IpAddr) -> u128 {
        match a {
            IpAddr::V4(a) => u32::from(a).into(),
            IpAddr::V6(a) => u128::from(a),
        }
    }

    fn addr(self, v: u128) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
            Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
        }
    }

    /// The benchmarking block: 198.18.0.0/15 or 2001:2::/48.
    pub fn bench_block(self) -> (u128, u128) {
        match self {
            Family::V4 => cidr(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 0)), 15),
            Family::V6 => cidr(IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0)), 48),
        }
    }
}

/// First and last address of `addr/len`.
fn cidr(addr: IpAddr, len: u32) -> (u128, u128) {
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    let host = bits - len;
    let v = Family::value(addr);
    let mask = if host == 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    (v & !mask, (v & !mask) | mask)
}

/// An address pick, before its family is settled: `random` alone takes
/// the family of the other end (or `--ipv6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrPick {
    Known(Family, Pick),
    /// `random` with no block: random in the family's benchmarking block.
    AnyBench,
}

/// An address pick: `ADDR`, `A-B` (walked in order), `NET/LEN` (the block,
/// walked in order), `random` (random in 198.18.0.0/15 or 2001:2::/48),
/// `random:NET/LEN`, `random:A-B`.
pub fn parse_addr_pick(option: &str, s: &str) -> Result<AddrPick, BadArg> {
    let s = s.trim();
    if s == "random" {
        return Ok(AddrPick::AnyBench);
    }
    let (random, body) = match s.strip_prefix("random:") {
        Some(b) => (true, b),
        None => (false, s),
    };
    let addr = |t: &str| -> Result<IpAddr, BadArg> {
        t.trim()
            .parse::<IpAddr>()
            .map_err(|_| BadArg(format!("{option}: '{}' is not an IP address", t.trim())))
    };
    let (family, first, last) = if let Some((net, len)) = body.split_once('/') {
        let net = addr(net)?;
        let bits = if net.is_ipv4() { 32 } else { 128 };
        let len: u32 = match len.trim().parse() {
            Ok(l) if l <= bits => l,
            _ => return bad(option, format!("'/{len}' is not a prefix length 0-{bits}")),
        };
        let (first, last) = cidr(net, len);
        (Family::of(net), first, last)
    } else if let Some((a, b)) = body.split_once('-') {
        let (a, b) = (addr(a)?, addr(b)?);
        if Family::of(a) != Family::of(b) {
            return bad(option, format!("{a} and {b} are of different families"));
        }
        let (first, last) = (Family::value(a), Family::value(b));
        if first > last {
            return bad(option, format!("range {body} goes backwards"));
        }
        (Family::of(a), first, last)
    } else {
        let a = addr(body)?;
        if random {
            return bad(option, "random: wants a block (NET/LEN) or a range (A-B)");
        }
        return Ok(AddrPick::Known(
            Family::of(a),
            Pick::Fixed(Family::value(a)),
        ));
    };
    let pick = if random {
        Pick::Random { first, last }
    } else if first == last {
        Pick::Fixed(first)
    } else {
        Pick::Walk {
            first,
            last,
            step: 1,
        }
    };
    Ok(AddrPick::Known(family, pick))
}

/// TCP flags: names separated by commas (`syn`, `ack`, `rst`, `fin`,
/// `psh`, `urg`, `ece`, `cwr`, `ns` or `ae`), `none`, or a number up to
/// 0x1ff.
pub fn parse_flags(s: &str) -> Result<u16, BadArg> {
    let s = s.trim();
    if s.is_empty() || s == "none" {
        return Ok(0);
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return match parse_number_pick("--flags", s, 0x1ff)? {
            Pick::Fixed(v) => Ok(v as u16),
            _ => bad("--flags", "a number, or names separated by commas"),
        };
    }
    let mut flags = 0;
    for name in s.split(',') {
        flags |= match name.trim().to_ascii_lowercase().as_str() {
            "fin" => TcpFlags::FIN,
            "syn" => TcpFlags::SYN,
            "rst" => TcpFlags::RST,
            "psh" => TcpFlags::PSH,
            "ack" => TcpFlags::ACK,
            "urg" => TcpFlags::URG,
            "ece" => TcpFlags::ECE,
            "cwr" => TcpFlags::CWR,
            "ns" | "ae" => TcpFlags::NS,
            other => {
                return bad(
                    "--flags",
                    format!(
                        "unknown flag '{other}' (fin, syn, rst, psh, ack, urg, ece, cwr, ns, or a number)"
                    ),
                )
            }
        };
    }
    Ok(flags)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(option: &str, s: &str) -> Result<[u8; 6], BadArg> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return bad(
            option,
            format!("'{s}' is not a MAC address aa:bb:cc:dd:ee:ff"),
        );
    }
    for (b, p) in mac.iter_mut().zip(&parts) {
        *b = match u8::from_str_radix(p, 16) {
            Ok(v) if !p.is_empty() && p.len() <= 2 => v,
            _ => {
                return bad(
                    option,
                    format!("'{s}' is not a MAC address aa:bb:cc:dd:ee:ff"),
                )
            }
        };
    }
    Ok(mac)
}

/// Frames per second: `N`, `Nk`, `NM` (decimals allowed with a suffix), or
/// `max`.
pub fn parse_rate(s: &str) -> Result<Option<u64>, BadArg> {
    let s = s.trim();
    if s == "max" {
        return Ok(None);
    }
    let (num, mult) = match s.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1e3),
        None => match s.strip_suffix('M') {
            Some(n) => (n, 1e6),
            None => (s, 1.0),
        },
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v * mult >= 1.0 && v * mult <= 1e9 => {
            Ok(Some((v * mult).round() as u64))
        }
        _ => bad(
            "--rate",
            format!("'{s}' is not a rate (frames per second, e.g. 50000, 200k, 1.5M, or max)"),
        ),
    }
}

// ---------------------------------------------------------------------------
// The spec of crafted frames

/// Crafted frames, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub family: Family,
    pub src: Pick,
    pub dst: Pick,
    pub sport: Pick,
    pub dport: Pick,
    pub seq: Pick,
    pub ack: Pick,
    pub flags: u16,
    pub window: u16,
    pub ttl: u8,
    pub payload: u16,
    pub syn_options: bool,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

impl Spec {
    fn picks(&self) -> [&Pick; 6] {
        [
            &self.src,
            &self.dst,
            &self.sport,
            &self.dport,
            &self.seq,
            &self.ack,
        ]
    }

    /// The table length that replays every walk exactly: 1 when every
    /// field is fixed, the least common multiple of the walks' cycles when
    /// nothing is random and that is at most [`MAX_TABLE`]; otherwise
    /// [`DEFAULT_TABLE`].
    pub fn natural_table(&self) -> usize {
        let mut l: u128 = 1;
        for p in self.picks() {
            match p.cycle() {
                0 => return DEFAULT_TABLE,
                c => {
                    l = l / gcd(l, c) * c;
                    if l > MAX_TABLE as u128 {
                        return DEFAULT_TABLE;
                    }
                }
            }
        }
        l as usize
    }

    /// Segment `i` of the table.
    pub fn segment(&self, i: u64, rng: &mut Rng) -> TcpRepr {
        let src = self.family.addr(self.src.nth(i, rng));
        let dst = self.family.addr(self.dst.nth(i, rng));
        let sport = self.sport.nth(i, rng) as u16;
        let dport = self.dport.nth(i, rng) as u16;
        TcpRepr {
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            ttl: self.ttl,
            seq: self.seq.nth(i, rng) as u32,
            ack: self.ack.nth(i, rng) as u32,
            window: self.window,
            syn_options: self.syn_options,
            payload_len: self.payload,
            ..TcpRepr::new(
                SocketAddr::new(src, sport),
                SocketAddr::new(dst, dport),
                self.flags,
            )
        }
    }

    /// `n` frames (`n >= 1`).
    pub fn build(&self, n: usize, seed: u64) -> Frames {
        let mut rng = rng::seeded(seed);
        let segments: Vec<TcpRepr> = (0..n as u64).map(|i| self.segment(i, &mut rng)).collect();
        Frames::crafted(&segments)
    }

    /// Length of every frame of the table.
    pub fn frame_len(&self) -> usize {
        frame::frame_len(
            self.family == Family::V6,
            self.syn_options,
            self.payload.into(),
        )
    }
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_picks() {
        let p = |s| parse_number_pick("--x", s, 65_535);
        assert_eq!(p("80"), Ok(Pick::Fixed(80)));
        assert_eq!(p("0x50"), Ok(Pick::Fixed(80)));
        assert_eq!(
            p("1000-1010"),
            Ok(Pick::Walk {
                first: 1000,
                last: 1010,
                step: 1
            })
        );
        assert_eq!(
            p("0-65535+4096").map(|p| p.cycle()),
            Ok(16),
            "0, 4096, ..., 61440"
        );
        assert_eq!(
            p("random"),
            Ok(Pick::Random {
                first: 0,
                last: 65_535
            })
        );
        assert_eq!(p("random:5-9"), Ok(Pick::Random { first: 5, last: 9 }));
        for bad in ["65536", "x", "9-5", "1-2+0", "random:7", "-", "1-", ""] {
            let e = p(bad).expect_err(bad).0;
            assert!(e.starts_with("--x: "), "{e}");
        }
    }

    #[test]
    fn address_picks() {
        let p = |s| parse_addr_pick("--src", s);
        assert_eq!(
            p("198.18.0.1"),
            Ok(AddrPick::Known(Family::V4, Pick::Fixed(0xc612_0001)))
        );
        assert_eq!(
            p("198.18.0.0/30"),
            Ok(AddrPick::Known(
                Family::V4,
                Pick::Walk {
                    first: 0xc612_0000,
                    last: 0xc612_0003,
                    step: 1
                }
            ))
        );
        assert_eq!(
            p("random:198.18.0.5/24"),
            Ok(AddrPick::Known(
                Family::V4,
                Pick::Random {
                    first: 0xc612_0000,
                    last: 0xc612_00ff
                }
            ))
        );
        assert_eq!(p("random"), Ok(AddrPick::AnyBench));
        let AddrPick::Known(Family::V6, Pick::Walk { first, last, .. }) =
            p("2001:2::1-2001:2::ff").unwrap()
        else {
            panic!()
        };
        assert_eq!(last - first, 0xfe);
        for bad in [
            "198.18.0.300",
            "198.18.0.0/33",
            "198.18.0.9-198.18.0.1",
            "198.18.0.1-2001:2::1",
            "random:198.18.0.1",
            "host",
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags() {
        assert_eq!(parse_flags("syn,ack"), Ok(TcpFlags::SYN | TcpFlags::ACK));
        assert_eq!(parse_flags("RST, ACK"), Ok(TcpFlags::RST | TcpFlags::ACK));
        assert_eq!(parse_flags("0x1ff"), Ok(0x1ff));
        assert_eq!(parse_flags("none"), Ok(0));
        assert_eq!(parse_flags("fin,syn,rst,psh,ack,urg,ece,cwr,ns"), Ok(0x1ff));
        assert!(parse_flags("0x200").is_err());
        assert!(parse_flags("syn,bogus").unwrap_err().0.contains("bogus"));
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("max"), Ok(None));
        assert_eq!(parse_rate("50000"), Ok(Some(50_000)));
        assert_eq!(parse_rate("200k"), Ok(Some(200_000)));
        assert_eq!(parse_rate("1.5M"), Ok(Some(1_500_000)));
        for bad in ["0", "-5", "fast", "1e12", "NaN", ""] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("--dst-mac", "02:00:0a:FF:00:01"),
            Ok([2, 0, 0x0a, 0xff, 0, 1])
        );
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:001",
            "zz:00:00:00:00:00",
            "::::::",
        ] {
            assert!(parse_mac("--dst-mac", bad).is_err(), "{bad}");
        }
    }
}
