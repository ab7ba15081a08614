//! What `rstwall-bench gen` sends: its command line, checked and turned
//! into a [`Plan`], and the frames the plan describes.
//!
//! Crafted frames come from a [`Spec`]: each header field is a [`Pick`] —
//! one value, a range walked in order, or random draws from a range — and
//! [`Spec::build`] writes a table of frames (with [`crate::frame`], like
//! every other frame of the bench) that the sender replays in order. Ranges
//! and random draws therefore repeat with the table's length; with ranges
//! only, the table holds exactly one full cycle when that fits.
//!
//! Profiles fill in what an operator usually wants: `rst-flood` (spoofed
//! RSTs at one connection's 4-tuple with random sequence numbers),
//! `syn-flood`, and the bench's traffic mixes ([`crate::traffic`]):
//! `mix` (legitimate only) and `mix-spoofed` (with spoofed RSTs).
//!
//! Every error names the option it is about, in one line.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use clap::ValueEnum;
use rstwall_engine::wire::TcpFlags;

use crate::frame::{self, marker_mac, TcpRepr, MARK_DELIVER};
use crate::traffic::{Frames, Label, Mix, Rng, TrafficConfig};

/// Largest frame table (`--frames`).
pub const MAX_TABLE: usize = 1 << 20;
/// Frame table length when picks are random (`--frames` default).
pub const DEFAULT_TABLE: usize = 65_536;
/// The default source MAC of crafted frames: the bench's marker for a
/// crafted frame that its sink delivers ([`frame::marker_mac`]).
pub const CRAFTED_MAC: [u8; 6] = marker_mac(Label::Crafted.code() | MARK_DELIVER);

/// A bad argument: the message names the option.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadArg(pub String);

impl fmt::Display for BadArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadArg {}

fn bad<T>(option: &str, msg: impl fmt::Display) -> Result<T, BadArg> {
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
            Pick::Random { first, last } => first + below(rng, last - first + 1),
        }
    }

    fn max(&self) -> u128 {
        match *self {
            Pick::Fixed(v) => v,
            Pick::Walk { last, .. } | Pick::Random { last, .. } => last,
        }
    }
}

/// Uniform in `0..n`; `n == 0` means the whole `u128` range.
fn below(rng: &mut Rng, n: u128) -> u128 {
    let wide = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
    if n == 0 {
        return wide;
    }
    if n <= u128::from(u64::MAX) {
        return u128::from(rng.below(n as u64));
    }
    wide % n
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
    fn bench_block(self) -> (u128, u128) {
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
        let mut rng = Rng::new(seed);
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

// ---------------------------------------------------------------------------
// The command line

/// What to send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// Frames exactly as the field options say (--dst, --dport and --flags
    /// are needed).
    #[default]
    Custom,
    /// Spoofed RSTs at one live connection: --src, --sport, --dst and
    /// --dport name its 4-tuple (as one side sends it), sequence numbers
    /// random.
    RstFlood,
    /// SYNs from random sources and ports in the benchmarking block to
    /// --dst and --dport, random sequence numbers.
    SynFlood,
    /// The bench's legitimate traffic: --flows connections, their
    /// handshakes, then data, ACKs, closes, aborts and refused connections
    /// over and over.
    Mix,
    /// `mix` plus spoofed RSTs (in and out of window, RST+SYN, for absent
    /// flows), about 2% of the frames.
    MixSpoofed,
}

/// How frames leave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// `live` for --rate max, `xsk` for a fixed rate.
    #[default]
    Auto,
    /// An AF_XDP socket's TX ring.
    Xsk,
    /// The kernel's XDP live-frames test runner (BPF_PROG_RUN with
    /// BPF_F_TEST_XDP_LIVE_FRAMES) redirecting out of --dev: the fastest
    /// way out, as fast as it goes only.
    Live,
}

/// How the AF_XDP socket binds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum XskBind {
    /// Zero-copy where the driver supports it, copy mode otherwise.
    #[default]
    Auto,
    Copy,
    ZeroCopy,
}

/// `rstwall-bench gen`'s options, as typed.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Values of --src/--dst: ADDR, A-B or NET/LEN (walked in order), random \
                  (random in 198.18.0.0/15, or 2001:2::/48 with --ipv6), random:NET/LEN, \
                  random:A-B.\nValues of --sport/--dport/--seq/--ack: N, A-B, A-B+STEP \
                  (walked in order), random, random:A-B.\n\n\
                  Frames are built once into a table (--frames) and replayed in order; each \
                  second a line gives the frames per second sent.\n\n\
                  Examples:\n  \
                  rstwall-bench gen --dev veth0 --profile syn-flood --dst 198.18.0.2 --dport 80 \
                  --rate 100k\n  \
                  rstwall-bench gen --dev veth0 --profile rst-flood --dst-mac 02:00:00:00:00:02 \\\n      \
                  --src 198.18.0.1 --sport 40000 --dst 198.18.0.2 --dport 5201\n  \
                  rstwall-bench gen --dev veth0 --flags syn,ack --dst 2001:2::5 --dport 443 \
                  --count 1000\n  \
                  rstwall-bench gen --netns lab-attacker --dev eth0 --profile mix --via xsk \
                  --rate 50k"
)]
pub struct GenArgs {
    /// Interface to send on.
    #[arg(long, value_name = "IFACE", required = true)]
    pub dev: Option<String>,
    /// Network namespace of the interface (a name under /run/netns).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// What to send.
    #[arg(long, value_enum, default_value_t = Profile::Custom)]
    pub profile: Profile,
    /// Source addresses.
    #[arg(long, value_name = "ADDRS")]
    pub src: Option<String>,
    /// Destination addresses.
    #[arg(long, value_name = "ADDRS")]
    pub dst: Option<String>,
    /// Source ports [default: random:1024-65535].
    #[arg(long, value_name = "PORTS")]
    pub sport: Option<String>,
    /// Destination ports.
    #[arg(long, value_name = "PORTS")]
    pub dport: Option<String>,
    /// Sequence numbers [default: random].
    #[arg(long, value_name = "NUMBERS")]
    pub seq: Option<String>,
    /// Acknowledgment numbers [default: random with ACK, 0 without].
    #[arg(long, value_name = "NUMBERS")]
    pub ack: Option<String>,
    /// TCP flags: names separated by commas (syn, ack, rst, fin, psh, urg,
    /// ece, cwr, ns), or a number.
    #[arg(long, value_name = "FLAGS")]
    pub flags: Option<String>,
    /// Receive window [default: 64240 with SYN, 502 otherwise].
    #[arg(long)]
    pub window: Option<u16>,
    /// Payload bytes (at most 1460 over IPv4, 1440 over IPv6, 8 less with
    /// SYN options).
    #[arg(long, default_value_t = 0)]
    pub payload: u16,
    /// IPv4 TTL or IPv6 hop limit.
    #[arg(long, default_value_t = frame::TTL)]
    pub ttl: u8,
    /// SYN options (MSS 1460, window scale 7) [default: on with SYN].
    #[arg(long, value_name = "BOOL")]
    pub syn_options: Option<bool>,
    /// IPv6 when no address says the family (both ends `random`).
    #[arg(long)]
    pub ipv6: bool,
    /// Source MAC [default: 02:72:77:62:00:8d, the bench's marker].
    #[arg(long, value_name = "MAC")]
    pub src_mac: Option<String>,
    /// Destination MAC (a host's own for frames it should take in).
    #[arg(long, value_name = "MAC", default_value = "02:00:00:00:00:02")]
    pub dst_mac: String,
    /// Connections of the mix profiles.
    #[arg(long)]
    pub flows: Option<usize>,
    /// Frames per second: a number (200k, 1.5M) or max.
    #[arg(long, default_value = "max")]
    pub rate: String,
    /// Stop after this many frames (default: never).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds (default: never; Ctrl-C stops too).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// How frames leave.
    #[arg(long, value_enum, default_value_t = Via::Auto)]
    pub via: Via,
    /// AF_XDP bind mode (--via xsk, and the mix profiles' handshakes).
    #[arg(long, value_enum, default_value_t = XskBind::Auto)]
    pub xdp_mode: XskBind,
    /// AF_XDP queue.
    #[arg(long, default_value_t = 0)]
    pub queue: u32,
    /// Pin the sending threads to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
    /// Frames in the table [default: one cycle of the ranges, or 65536].
    #[arg(long)]
    pub frames: Option<usize>,
    /// Seed of the random picks and the mixes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// What the table holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    Crafted {
        spec: Box<Spec>,
        table: usize,
    },
    /// The bench's traffic: handshakes once, then the steady pass.
    Mix(TrafficConfig),
}

/// A checked `gen` command line.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub dev: String,
    pub netns: Option<String>,
    pub what: What,
    /// Frames per second; `None`: as fast as possible.
    pub rate: Option<u64>,
    pub count: Option<u64>,
    pub duration: Option<Duration>,
    /// Never `Via::Auto`.
    pub via: Via,
    pub bind: XskBind,
    pub queue: u32,
    pub cpu: Option<usize>,
    pub seed: u64,
}

impl GenArgs {
    /// Check everything that can be checked without the machine.
    pub fn plan(&self) -> Result<Plan, BadArg> {
        let dev = match &self.dev {
            Some(d) if !d.is_empty() && d.len() < 16 && !d.contains(['/', ' ']) => d.clone(),
            Some(d) => return bad("--dev", format!("'{d}' is not an interface name")),
            None => return bad("--dev", "which interface to send on is needed"),
        };
        let rate = parse_rate(&self.rate)?;
        let via = match (self.via, rate) {
            (Via::Auto, None) => Via::Live,
            (Via::Auto, Some(_)) => Via::Xsk,
            (Via::Live, Some(_)) => {
                return bad(
                    "--via",
                    "live sends as fast as it can: use --via xsk for a fixed --rate",
                )
            }
            (v, _) => v,
        };
        if self.count == Some(0) {
            return bad("--count", "must be at least 1");
        }
        let duration = match self.duration {
            None => None,
            Some(d) if d.is_finite() && d > 0.0 && d < 1e9 => Some(Duration::from_secs_f64(d)),
            Some(d) => {
                return bad(
                    "--duration",
                    format!("{d} is not a positive number of seconds"),
                )
            }
        };
        if let Some(n) = self.frames {
            if n == 0 || n > MAX_TABLE {
                return bad("--frames", format!("must be 1 to {MAX_TABLE}"));
            }
        }
        let what = match self.profile {
            Profile::Mix | Profile::MixSpoofed => self.mix()?,
            _ => {
                if self.flows.is_some() {
                    return bad("--flows", "only for --profile mix and mix-spoofed");
                }
                let spec = self.spec()?;
                let table = self.frames.unwrap_or_else(|| spec.natural_table());
                if via == Via::Live && spec.frame_len() * table > 512 << 20 {
                    return bad(
                        "--frames",
                        "the table would take over 512 MiB of kernel memory: fewer frames",
                    );
                }
                What::Crafted {
                    spec: Box::new(spec),
                    table,
                }
            }
        };
        Ok(Plan {
            dev,
            netns: self.netns.clone(),
            what,
            rate,
            count: self.count,
            duration,
            via,
            bind: self.xdp_mode,
            queue: self.queue,
            cpu: self.cpu,
            seed: self.seed,
        })
    }

    fn mix(&self) -> Result<What, BadArg> {
        let field_options = [
            ("--src", self.src.is_some()),
            ("--dst", self.dst.is_some()),
            ("--sport", self.sport.is_some()),
            ("--dport", self.dport.is_some()),
            ("--seq", self.seq.is_some()),
            ("--ack", self.ack.is_some()),
            ("--flags", self.flags.is_some()),
            ("--window", self.window.is_some()),
            ("--syn-options", self.syn_options.is_some()),
            ("--src-mac", self.src_mac.is_some()),
            ("--frames", self.frames.is_some()),
            ("--payload", self.payload != 0),
        ];
        if let Some((name, _)) = field_options.iter().find(|(_, set)| *set) {
            return bad(
                name,
                "the mix profiles make their own frames (--flows, --ipv6 and --seed apply)",
            );
        }
        let flows = self.flows.unwrap_or(10_000);
        let mut mix = Mix::default();
        if self.profile == Profile::Mix {
            mix.in_window = 0;
            mix.out_of_window = 0;
            mix.invalid_flags = 0;
            mix.no_flow = 0;
            mix.bad_ack = 0;
        }
        if self.ipv6 {
            mix.ipv6 = 1000;
        }
        let cfg = TrafficConfig {
            flows,
            packets: flows.saturating_mul(10),
            seed: self.seed,
            mix,
            ..TrafficConfig::default()
        };
        if let Err(e) = cfg.validate() {
            return bad("--flows", e.trim_start_matches("flows: "));
        }
        Ok(What::Mix(cfg))
    }

    fn spec(&self) -> Result<Spec, BadArg> {
        let p = self.profile;
        let src = match &self.src {
            Some(s) => parse_addr_pick("--src", s)?,
            None if p == Profile::RstFlood => {
                return bad(
                    "--src",
                    "rst-flood aims at one connection: give its source address",
                )
            }
            None => AddrPick::AnyBench,
        };
        let dst = match &self.dst {
            Some(s) => parse_addr_pick("--dst", s)?,
            None => return bad("--dst", "the destination address is needed"),
        };
        let family = match (src, dst) {
            (AddrPick::Known(a, _), AddrPick::Known(b, _)) if a != b => {
                return bad("--dst", "--src and --dst are of different address families")
            }
            (AddrPick::Known(f, _), _) | (_, AddrPick::Known(f, _)) => f,
            _ if self.ipv6 => Family::V6,
            _ => Family::V4,
        };
        if self.ipv6 && family == Family::V4 {
            return bad("--ipv6", "the addresses given are IPv4");
        }
        let settle = |a: AddrPick| match a {
            AddrPick::Known(_, pick) => pick,
            AddrPick::AnyBench => {
                let (first, last) = family.bench_block();
                Pick::Random { first, last }
            }
        };
        let (src, dst) = (settle(src), settle(dst));
        let port =
            |name: &str, v: &Option<String>, default: Option<&str>| match (v.as_deref(), default) {
                (Some(s), _) | (None, Some(s)) => parse_number_pick(name, s, 65_535),
                (None, None) => bad(name, "the destination port is needed"),
            };
        let sport = match p {
            Profile::RstFlood => port("--sport", &self.sport, None).map_err(|_| {
                BadArg("--sport: rst-flood aims at one connection: give its source port".into())
            })?,
            _ => port("--sport", &self.sport, Some("random:1024-65535"))?,
        };
        let dport = port("--dport", &self.dport, None)?;
        if p == Profile::RstFlood {
            for (name, pick) in [("--src", &src), ("--dst", &dst)] {
                if !pick.is_fixed() {
                    return bad(name, "rst-flood aims at one connection: one address");
                }
            }
            for (name, pick) in [("--sport", &sport), ("--dport", &dport)] {
                if !pick.is_fixed() {
                    return bad(name, "rst-flood aims at one connection: one port");
                }
            }
        }
        let flags = match (&self.flags, p) {
            (Some(f), _) => parse_flags(f)?,
            (None, Profile::RstFlood) => TcpFlags::RST,
            (None, Profile::SynFlood) => TcpFlags::SYN,
            (None, _) => return bad("--flags", "which TCP flags to set is needed (e.g. syn)"),
        };
        let syn = flags & TcpFlags::SYN != 0;
        let seq = parse_number_pick(
            "--seq",
            self.seq.as_deref().unwrap_or("random"),
            u32::MAX.into(),
        )?;
        let ack_default = if flags & TcpFlags::ACK != 0 {
            "random"
        } else {
            "0"
        };
        let ack = parse_number_pick(
            "--ack",
            self.ack.as_deref().unwrap_or(ack_default),
            u32::MAX.into(),
        )?;
        let syn_options = self.syn_options.unwrap_or(syn);
        let ipv6 = family == Family::V6;
        let max = frame::max_payload(ipv6, syn_options);
        if usize::from(self.payload) > max {
            return bad("--payload", format!("at most {max} bytes here"));
        }
        let src_mac = match &self.src_mac {
            Some(m) => parse_mac("--src-mac", m)?,
            None => CRAFTED_MAC,
        };
        let dst_mac = parse_mac("--dst-mac", &self.dst_mac)?;
        let spec = Spec {
            family,
            src,
            dst,
            sport,
            dport,
            seq,
            ack,
            flags,
            window: self.window.unwrap_or(if syn { 64_240 } else { 502 }),
            ttl: self.ttl,
            payload: self.payload,
            syn_options,
            src_mac,
            dst_mac,
        };
        let limit = match family {
            Family::V4 => u128::from(u32::MAX),
            Family::V6 => u128::MAX,
        };
        debug_assert!(spec.src.max() <= limit && spec.dst.max() <= limit);
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use std::collections::HashSet;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        gen: GenArgs,
    }

    fn args(line: &str) -> GenArgs {
        let argv = std::iter::once("gen").chain(line.split_whitespace());
        Cli::try_parse_from(argv).expect("clap").gen
    }

    fn plan(line: &str) -> Result<Plan, BadArg> {
        args(line).plan()
    }

    fn crafted(line: &str) -> (Spec, usize) {
        match plan(line).unwrap().what {
            What::Crafted { spec, table } => (*spec, table),
            What::Mix(_) => panic!("a mix"),
        }
    }

    fn err(line: &str) -> String {
        let e = plan(line).expect_err(line).0;
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    /// Every frame parses with valid checksums (etherparse), and what
    /// etherparse reads is handed to `f`.
    fn each_frame(frames: &Frames, mut f: impl FnMut(IpAddr, IpAddr, u16, u16, u32, u32, u8)) {
        for raw in frames.iter() {
            let p = SlicedPacket::from_ethernet(raw).expect("parses");
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!("no TCP")
            };
            let (src, dst, sum) = match p.net.as_ref().unwrap() {
                NetSlice::Ipv4(ip) => {
                    let h = ip.header().to_header();
                    assert_eq!(h.header_checksum, h.calc_header_checksum());
                    let sum = tcp.to_header().calc_checksum_ipv4(&h, tcp.payload());
                    (
                        IpAddr::V4(h.source.into()),
                        IpAddr::V4(h.destination.into()),
                        sum.unwrap(),
                    )
                }
                NetSlice::Ipv6(ip) => {
                    let h = ip.header().to_header();
                    let sum = tcp.to_header().calc_checksum_ipv6(&h, tcp.payload());
                    (
                        IpAddr::V6(h.source.into()),
                        IpAddr::V6(h.destination.into()),
                        sum.unwrap(),
                    )
                }
            };
            assert_eq!(tcp.checksum(), sum, "TCP checksum");
            let flags = raw[14 + if src.is_ipv4() { 20 } else { 40 } + 13];
            f(
                src,
                dst,
                tcp.source_port(),
                tcp.destination_port(),
                tcp.sequence_number(),
                tcp.acknowledgment_number(),
                flags,
            );
        }
    }

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

    #[test]
    fn custom_frames_have_the_asked_fields_and_valid_checksums() {
        let (spec, table) = crafted(
            "--dev v0 --src 198.18.0.0/30 --dst 198.19.0.9 --sport 1000-1004 --dport 443 \
             --seq 7 --ack 9 --flags psh,ack --payload 100 --rate 1k",
        );
        // Cycles of 4 and 5: one table of 20 frames holds them all.
        assert_eq!(table, 20);
        let frames = spec.build(table, 1);
        let mut pairs = HashSet::new();
        each_frame(&frames, |src, dst, sport, dport, seq, ack, flags| {
            assert_eq!(dst, "198.19.0.9".parse::<IpAddr>().unwrap());
            assert_eq!(dport, 443);
            assert!((1000..=1004).contains(&sport));
            assert_eq!((seq, ack), (7, 9));
            assert_eq!(u16::from(flags), TcpFlags::PSH | TcpFlags::ACK);
            pairs.insert((src, sport));
        });
        assert_eq!(pairs.len(), 20, "every combination once");
        assert_eq!(frames.get(0).len(), 14 + 20 + 20 + 100);
        assert_eq!(frames.get(0)[6..12], CRAFTED_MAC);
    }

    #[test]
    fn random_picks_stay_in_their_ranges() {
        let (spec, table) = crafted(
            "--dev v0 --src random:198.18.4.0/22 --dst 198.18.0.1 --dport random:20-30 \
             --seq random:100-199 --flags syn",
        );
        assert_eq!(table, DEFAULT_TABLE);
        let frames = spec.build(2000, 3);
        let (mut seqs, mut ports) = (HashSet::new(), HashSet::new());
        each_frame(&frames, |src, _, sport, dport, seq, ack, flags| {
            let IpAddr::V4(a) = src else { panic!() };
            assert_eq!(
                u32::from(a) >> 10,
                u32::from(Ipv4Addr::new(198, 18, 4, 0)) >> 10
            );
            assert!((1024..=65_535).contains(&sport));
            assert!((20..=30).contains(&dport));
            assert!((100..=199).contains(&seq));
            assert_eq!(ack, 0);
            assert_eq!(u16::from(flags), TcpFlags::SYN);
            seqs.insert(seq);
            ports.insert(dport);
        });
        assert!(seqs.len() > 90 && ports.len() == 11, "random, not fixed");
        // SYN: options and the SYN window.
        assert!(spec.syn_options);
        assert_eq!(spec.window, 64_240);
    }

    #[test]
    fn ipv6_frames() {
        let (spec, _) = crafted("--dev v0 --dst 2001:2:0:5::1 --dport 80 --flags syn --count 5");
        assert_eq!(spec.family, Family::V6);
        let frames = spec.build(50, 1);
        each_frame(&frames, |src, dst, _, _, _, _, _| {
            let IpAddr::V6(s) = src else { panic!("{src}") };
            assert_eq!(s.segments()[..3], [0x2001, 2, 0], "random in 2001:2::/48");
            assert_eq!(dst, "2001:2:0:5::1".parse::<IpAddr>().unwrap());
        });
        let (spec, _) = crafted("--dev v0 --ipv6 --dst random --dport 80 --flags ack");
        assert_eq!(spec.family, Family::V6);
        assert!(
            err("--dev v0 --ipv6 --dst 198.18.0.1 --dport 1 --flags syn").starts_with("--ipv6")
        );
        assert!(
            err("--dev v0 --src 2001:2::1 --dst 198.18.0.1 --dport 1 --flags syn")
                .contains("families")
        );
    }

    #[test]
    fn rst_flood_aims_at_one_connection_with_random_sequence_numbers() {
        let (spec, table) = crafted(
            "--dev v0 --profile rst-flood --src 198.18.250.1 --sport 40000 --dst 198.18.250.2 \
             --dport 5201 --rate 200k",
        );
        let frames = spec.build(table, 9);
        let mut seqs = HashSet::new();
        each_frame(&frames, |src, dst, sport, dport, seq, _, flags| {
            assert_eq!((src, sport), ("198.18.250.1".parse().unwrap(), 40_000));
            assert_eq!((dst, dport), ("198.18.250.2".parse().unwrap(), 5201));
            assert_eq!(u16::from(flags), TcpFlags::RST);
            seqs.insert(seq);
        });
        assert!(seqs.len() > table * 99 / 100, "random sequence numbers");
        for (line, option) in [
            ("--dport 5201 --src 198.18.0.1 --sport 1", "--dst"),
            ("--dst 198.18.0.2 --dport 5201 --sport 1", "--src"),
            ("--dst 198.18.0.2 --dport 5201 --src 198.18.0.1", "--sport"),
            (
                "--dst 198.18.0.2 --dport 5201 --src 198.18.0.0/24 --sport 1",
                "--src",
            ),
            (
                "--dst 198.18.0.2 --dport 1-2 --src 198.18.0.1 --sport 1",
                "--dport",
            ),
        ] {
            let e = err(&format!("--dev v0 --profile rst-flood {line}"));
            assert!(e.starts_with(option), "{line}: {e}");
        }
    }

    #[test]
    fn syn_flood_defaults() {
        let (spec, _) = crafted("--dev v0 --profile syn-flood --dst 198.18.0.2 --dport 80");
        assert_eq!(spec.flags, TcpFlags::SYN);
        assert!(matches!(spec.src, Pick::Random { .. }));
        assert!(matches!(spec.seq, Pick::Random { .. }));
        assert!(spec.syn_options);
    }

    #[test]
    fn mixes() {
        let Plan { what, via, .. } = plan("--dev v0 --profile mix --flows 500").unwrap();
        assert_eq!(via, Via::Live);
        let What::Mix(cfg) = what else { panic!() };
        assert_eq!(cfg.flows, 500);
        assert_eq!(cfg.mix.in_window + cfg.mix.no_flow + cfg.mix.bad_ack, 0);
        let What::Mix(spoofed) = plan("--dev v0 --profile mix-spoofed").unwrap().what else {
            panic!()
        };
        assert!(spoofed.mix.in_window > 0);
        assert!(err("--dev v0 --profile mix --flags syn").starts_with("--flags"));
        assert!(err("--dev v0 --profile mix --flows 0").starts_with("--flows"));
        assert!(
            err("--dev v0 --flows 5 --dst 198.18.0.1 --dport 1 --flags syn").starts_with("--flows")
        );
    }

    #[test]
    fn sending_options() {
        let p = plan("--dev v0 --dst 198.18.0.1 --dport 1 --flags syn --rate 10k").unwrap();
        assert_eq!((p.via, p.rate), (Via::Xsk, Some(10_000)));
        let p = plan("--dev v0 --dst 198.18.0.1 --dport 1 --flags syn --duration 2.5").unwrap();
        assert_eq!(p.via, Via::Live);
        assert_eq!(p.duration, Some(Duration::from_millis(2500)));
        let base = "--dev v0 --dst 198.18.0.1 --dport 1 --flags syn";
        for (extra, option) in [
            ("--via live --rate 5", "--via"),
            ("--count 0", "--count"),
            ("--duration=-1", "--duration"),
            ("--duration 0", "--duration"),
            ("--frames 0", "--frames"),
            ("--frames 99999999", "--frames"),
            ("--payload 1453", "--payload"),
            ("--rate slow", "--rate"),
            ("--dst-mac 1:2", "--dst-mac"),
        ] {
            let e = err(&format!("{base} {extra}"));
            assert!(e.starts_with(option), "{extra}: {e}");
        }
        let argv = [
            "gen",
            "--dst",
            "198.18.0.1",
            "--dport",
            "1",
            "--flags",
            "syn",
        ];
        assert!(Cli::try_parse_from(argv).is_err(), "--dev is required");
        assert!(err("--dev v0 --dst 198.18.0.1 --flags syn").starts_with("--dport"));
        assert!(err("--dev v0 --dst 198.18.0.1 --dport 1").starts_with("--flags"));
        assert!(err("--dev v0 --dport 1 --flags syn").starts_with("--dst"));
    }

    #[test]
    fn fixed_frames_make_a_table_of_one() {
        let (spec, table) = crafted(
            "--dev v0 --src 198.18.0.1 --sport 1 --dst 198.18.0.2 --dport 2 --seq 5 --flags fin,ack --ack 6",
        );
        assert_eq!(table, 1);
        assert_eq!(spec.build(1, 0).len(), 1);
    }
}
