//! `rstwall-bench gen`'s arguments: profiles fill in what an operator
//! usually wants — `rst-flood` (spoofed RSTs at one connection's 4-tuple
//! with random sequence numbers), `syn-flood`, and the bench's traffic
//! mixes ([`rstwall_bench::traffic`]): `mix` (legitimate only) and
//! `mix-spoofed` (with spoofed RSTs) — and the field options make a
//! [`Spec`] of crafted frames.

use std::time::Duration;

use clap::ValueEnum;
use rstwall_afxdp::BindMode;
use rstwall_bench::frame;
use rstwall_bench::gen::spec::{
    bad, parse_addr_pick, parse_flags, parse_mac, parse_number_pick, parse_rate, AddrPick,
    CRAFTED_MAC, MAX_TABLE,
};
use rstwall_bench::gen::{Family, Pick, Plan, Spec, Via, What};
use rstwall_bench::traffic::{Mix, TrafficConfig};
use rstwall_bench::BadArg;
use rstwall_engine::wire::TcpFlags;

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

/// How frames leave, as typed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ViaArg {
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
    #[arg(long, value_enum, default_value_t = ViaArg::Auto)]
    pub via: ViaArg,
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
            (ViaArg::Auto, None) | (ViaArg::Live, None) => Via::Live,
            (ViaArg::Auto, Some(_)) | (ViaArg::Xsk, _) => Via::Xsk,
            (ViaArg::Live, Some(_)) => {
                return bad(
                    "--via",
                    "live sends as fast as it can: use --via xsk for a fixed --rate",
                )
            }
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
            bind: match self.xdp_mode {
                XskBind::Auto => BindMode::Auto,
                XskBind::Copy => BindMode::Copy,
                XskBind::ZeroCopy => BindMode::ZeroCopy,
            },
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

// Moved from bench/src/gen.rs (where the command line was part of the
// library).
#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    use rstwall_bench::gen::spec::DEFAULT_TABLE;
    use rstwall_bench::traffic::Frames;
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv4Addr};

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
