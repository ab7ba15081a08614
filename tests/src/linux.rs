//! Frames of a TCP conversation exactly as two Linux hosts put them on the
//! wire, and a tap that runs them through the flow table.
//!
//! [`Conn`] plays both ends of one connection — a client that called
//! `connect()` and a server that `accept()`ed — over Ethernet, IPv4 or IPv6.
//! Addresses come from the benchmarking ranges (198.18.0.0/15 and
//! 2001:2::/48); the frames only ever live in memory.
//!
//! What is modelled, after Linux's `tcp_output.c`, `tcp_ipv4.c` and
//! `tcp_ipv6.c` with default sysctls:
//!
//! * SYN and SYN-ACK carry MSS (1460 on IPv4, 1440 on IPv6), SACK-permitted,
//!   timestamps, NOP and window scale 7, in `tcp_options_write()` order;
//!   the SYN window is 64240 (IPv4) / 64800 (IPv6) and the SYN-ACK's 65160
//!   / 64260. A host can be told not to offer window scaling
//!   (`net.ipv4.tcp_window_scaling = 0`); the SYN-ACK then carries no WS
//!   option and neither side scales.
//! * Every later segment carries NOP NOP TS (TSval from a per-connection
//!   random offset plus a millisecond clock, TSecr echoing the peer), the
//!   SACK blocks the host holds (a D-SACK block first) and a window field
//!   already shifted by the scale (502 / 509 with scale 7).
//! * Each end tracks SND.NXT and RCV.NXT, and queues out-of-order data so
//!   its ACKs report the SACK blocks Linux would.
//! * ISNs, timestamp offsets, IP IDs, flow labels and the client port are
//!   derived from a seed; [`Conn::with_isns`] pins ISNs, e.g. near 2^32 to
//!   exercise wraparound.
//! * The resets Linux really sends:
//!   - [`Conn::reset_reply`]: `tcp_v4_send_reset()` / `tcp_v6_send_reset()`,
//!     the answer of a host with no socket (closed port, closed connection,
//!     orphaned FIN-WAIT-2 or TIME-WAIT returning `TCP_TW_RST`). For a
//!     segment with ACK: RST, seq = its ack_seq, no ACK flag. Otherwise
//!     RST|ACK, seq 0, ack = its seq + SYN + FIN + payload. No options,
//!     window 0, IPv4 ID 0 (the per-netns control socket).
//!   - [`Conn::active_reset`]: `tcp_send_active_reset()` (close() with unread
//!     data, SO_LINGER 0, abort): RST|ACK, seq = SND.NXT
//!     (`tcp_acceptable_seq()`), ack = RCV.NXT, with the socket's window and
//!     options.
//!   - [`Conn::rst`] / [`Conn::raw`]: anything else, for RSTs no Linux host
//!     sends (spoofed, other stacks, middleboxes).
//!
//! Every segment a method returns is taken as delivered to the peer (it
//! updates the peer's RCV.NXT), except [`Conn::data_lost`], which models a
//! segment the tap saw but the receiver never got.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rstwall_engine::flow::{FlowTable, Observation, RstJudgment, Timeouts};
use rstwall_engine::wire::{
    self, EthernetRepr, IpRepr, Ipv4Repr, Ipv6Repr, LinkType, Parsed, SackBlocks, Segment,
    TcpFlags, TcpFrameRepr, TcpRepr,
};
use rstwall_netlab::rng;

pub const FIN: u16 = TcpFlags::FIN;
pub const SYN: u16 = TcpFlags::SYN;
pub const RST: u16 = TcpFlags::RST;
pub const PSH: u16 = TcpFlags::PSH;
pub const ACK: u16 = TcpFlags::ACK;

/// Window scale Linux offers with default buffers (tcp_rmem max 6 MiB).
pub const WSCALE: u8 = 7;

/// A segment's options and nothing else: what [`Conn::emit`] adds them to.
type Options<'a> = TcpRepr<'a>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// One end of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// Called `connect()`: sends the SYN.
    Client,
    /// Listening: answers with the SYN-ACK (or a reset on a closed port).
    Server,
}

impl Host {
    pub fn peer(self) -> Host {
        match self {
            Host::Client => Host::Server,
            Host::Server => Host::Client,
        }
    }

    fn idx(self) -> usize {
        self as usize
    }
}

/// The last segment a host received: what its reset answers.
#[derive(Clone, Copy, Debug)]
struct Received {
    seq: u32,
    ack: u32,
    flags: u16,
    len: u32,
}

#[derive(Clone, Debug)]
struct End {
    ip: IpAddr,
    port: u16,
    mac: [u8; 6],
    isn: u32,
    snd_nxt: u32,
    rcv_nxt: u32,
    mss: u16,
    /// Window of the SYN or SYN-ACK (never scaled).
    syn_window: u16,
    /// Window field of later segments, when set explicitly.
    window: Option<u16>,
    offers_wscale: bool,
    ts_offset: u32,
    /// Latest TSval received from the peer (echoed as TSecr).
    ts_recent: u32,
    ip_id: u16,
    flow_label: u32,
    /// Out-of-order blocks held, most recent first (Linux's selective_acks).
    ooo: Vec<(u32, u32)>,
    /// D-SACK block to report in the next segment.
    dsack: Option<(u32, u32)>,
    last_rx: Option<Received>,
}

/// Two Linux stacks and one TCP connection between them.
#[derive(Clone, Debug)]
pub struct Conn {
    family: Family,
    ends: [End; 2],
    /// Milliseconds: the TSval clock (tcp_time_stamp_ms), one tick a segment.
    clock_ms: u32,
    /// Both SYNs carried the WS option.
    wscale_ok: bool,
    /// Timestamps and SACK negotiated (SYN-ACK sent).
    synced: bool,
    tfo_cookie: [u8; 8],
}

impl Conn {
    /// A connection whose every random-looking value derives from `seed`.
    pub fn new(family: Family, seed: u64) -> Conn {
        let mut rng = rng::seeded(seed ^ 0x7273_7477_616c_6c00);
        let swap = rng.bool();
        let (a, b): (IpAddr, IpAddr) = match family {
            Family::V4 => {
                let r = rng.u32(..);
                (
                    Ipv4Addr::new(198, 18, (r >> 8) as u8, (r as u8).max(1)).into(),
                    Ipv4Addr::new(198, 19, (r >> 24) as u8, ((r >> 16) as u8).max(1)).into(),
                )
            }
            Family::V6 => {
                let r = rng.u64(..);
                let seg = |x: u64| (x as u16).max(1);
                (
                    Ipv6Addr::new(0x2001, 2, 0, seg(r), 0, 0, 0, seg(r >> 16)).into(),
                    Ipv6Addr::new(0x2001, 2, 0, seg(r >> 32), 0, 0, 0, seg(r >> 48)).into(),
                )
            }
        };
        let (client_ip, server_ip) = if swap { (b, a) } else { (a, b) };
        let (mss, syn_window, synack_window) = match family {
            Family::V4 => (1460, 64240, 65160),
            Family::V6 => (1440, 64800, 64260),
        };
        let mut end = |ip, port, mac, syn_window| End {
            ip,
            port,
            mac,
            isn: rng.u32(..),
            snd_nxt: 0,
            rcv_nxt: 0,
            mss,
            syn_window,
            window: None,
            offers_wscale: true,
            ts_offset: rng.u32(..),
            ts_recent: 0,
            ip_id: rng.u64(..) as u16,
            flow_label: (rng.u32(..) & 0xf_ffff).max(1),
            ooo: Vec::new(),
            dsack: None,
            last_rx: None,
        };
        let client_port = 32768 + (seed % 28232) as u16;
        let client = end(client_ip, client_port, [0x02, 0, 0, 0, 0, 0x01], syn_window);
        let server = end(server_ip, 443, [0x02, 0, 0, 0, 0, 0x02], synack_window);
        let mut c = Conn {
            family,
            ends: [client, server],
            clock_ms: 0,
            wscale_ok: false,
            synced: false,
            tfo_cookie: [0; 8],
        };
        c.clock_ms = rng.u32(..) >> 4;
        c.tfo_cookie = rng.u64(..).to_be_bytes();
        for e in &mut c.ends {
            e.snd_nxt = e.isn;
        }
        c
    }

    /// Pin both ISNs (before the handshake).
    pub fn with_isns(mut self, client: u32, server: u32) -> Conn {
        for (e, isn) in self.ends.iter_mut().zip([client, server]) {
            e.isn = isn;
            e.snd_nxt = isn;
        }
        self
    }

    /// The host runs with `net.ipv4.tcp_window_scaling = 0`.
    pub fn without_wscale(mut self, host: Host) -> Conn {
        self.ends[host.idx()].offers_wscale = false;
        self
    }

    pub fn with_server_port(mut self, port: u16) -> Conn {
        self.ends[Host::Server.idx()].port = port;
        self
    }

    /// Window field `host` puts in its segments from now on (already scaled).
    pub fn set_window(&mut self, host: Host, field: u16) {
        self.ends[host.idx()].window = Some(field);
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn port(&self, host: Host) -> u16 {
        self.end(host).port
    }

    pub fn isn(&self, host: Host) -> u32 {
        self.end(host).isn
    }

    pub fn snd_nxt(&self, host: Host) -> u32 {
        self.end(host).snd_nxt
    }

    pub fn rcv_nxt(&self, host: Host) -> u32 {
        self.end(host).rcv_nxt
    }

    /// Whether window scaling was negotiated.
    pub fn wscale_ok(&self) -> bool {
        self.wscale_ok
    }

    /// Window field `host` advertises in non-SYN segments.
    pub fn window_field(&self, host: Host) -> u16 {
        let e = self.end(host);
        e.window.unwrap_or(match (self.wscale_ok, host) {
            (true, Host::Client) => 502,
            (true, Host::Server) => 509,
            (false, _) => e.syn_window,
        })
    }

    /// The receive window `host` advertises, in bytes.
    pub fn rcv_wnd(&self, host: Host) -> u32 {
        (self.window_field(host) as u32) << self.shift()
    }

    fn shift(&self) -> u8 {
        if self.wscale_ok {
            WSCALE
        } else {
            0
        }
    }

    fn end(&self, host: Host) -> &End {
        &self.ends[host.idx()]
    }

    fn end_mut(&mut self, host: Host) -> &mut End {
        &mut self.ends[host.idx()]
    }

    /// One millisecond passes before each segment.
    fn tick(&mut self) {
        self.clock_ms = self.clock_ms.wrapping_add(1);
    }

    fn tsval(&self, host: Host) -> u32 {
        self.clock_ms.wrapping_add(self.end(host).ts_offset)
    }

    // ---- the handshake ------------------------------------------------

    /// The client's SYN (`tcp_connect()`).
    pub fn syn(&mut self) -> Vec<u8> {
        self.syn_inner(&[], false)
    }

    /// A TCP Fast Open SYN carrying `len` bytes and a cookie
    /// (`tcp_send_syn_data()`); SND.NXT = ISN + 1 + len.
    pub fn syn_with_data(&mut self, len: usize) -> Vec<u8> {
        self.syn_inner(&payload(len), true)
    }

    fn syn_inner(&mut self, data: &[u8], tfo: bool) -> Vec<u8> {
        self.tick();
        let c = Host::Client;
        let isn = self.end(c).isn;
        let opts = self.syn_options(c, 0, self.end(c).offers_wscale);
        let cookie = self.tfo_cookie;
        let opts = TcpRepr {
            fast_open: tfo.then_some(&cookie[..]),
            ..opts
        };
        let win = self.end(c).syn_window;
        self.end_mut(c).snd_nxt = isn.wrapping_add(1 + data.len() as u32);
        let frame = self.emit(c, SYN, isn, 0, win, opts, data, None);
        let tsval = self.tsval(c);
        let s = self.end_mut(Host::Server);
        s.last_rx = Some(Received {
            seq: isn,
            ack: 0,
            flags: SYN,
            len: data.len() as u32,
        });
        s.ts_recent = tsval;
        // A listener without TFO takes the SYN and drops its data.
        s.rcv_nxt = isn.wrapping_add(1);
        frame
    }

    /// The server's SYN-ACK (`tcp_make_synack()`): WS only if the SYN had it
    /// and the server scales; window never scaled; IPv4 ID 0.
    pub fn syn_ack(&mut self) -> Vec<u8> {
        self.tick();
        let s = Host::Server;
        self.wscale_ok = self.end(Host::Client).offers_wscale && self.end(s).offers_wscale;
        let tsecr = self.end(s).ts_recent;
        let opts = self.syn_options(s, tsecr, self.wscale_ok);
        let (isn, ack, win) = (self.end(s).isn, self.end(s).rcv_nxt, self.end(s).syn_window);
        self.end_mut(s).snd_nxt = isn.wrapping_add(1);
        self.synced = true;
        let frame = self.emit(s, SYN | ACK, isn, ack, win, opts, &[], Some(0));
        let tsval = self.tsval(s);
        let c = self.end_mut(Host::Client);
        c.last_rx = Some(Received {
            seq: isn,
            ack,
            flags: SYN | ACK,
            len: 0,
        });
        c.ts_recent = tsval;
        c.rcv_nxt = isn.wrapping_add(1);
        frame
    }

    /// The client's ACK completing the handshake.
    pub fn handshake_ack(&mut self) -> Vec<u8> {
        self.ack(Host::Client)
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self) -> Vec<Vec<u8>> {
        vec![self.syn(), self.syn_ack(), self.handshake_ack()]
    }

    /// MSS, SACK-permitted, timestamps and window scale (laid out in
    /// `tcp_options_write()` order by [`TcpRepr::emit`]).
    fn syn_options(&self, from: Host, tsecr: u32, wscale: bool) -> Options<'static> {
        TcpRepr {
            mss: Some(self.end(from).mss),
            sack_permitted: true,
            timestamps: Some((self.tsval(from), tsecr)),
            window_scale: wscale.then_some(WSCALE),
            ..TcpRepr::default()
        }
    }

    /// Timestamps, then the SACK blocks: the D-SACK block first and the
    /// held out-of-order blocks (three at most beside timestamps).
    fn established_options(&mut self, from: Host, with_sack: bool) -> Options<'static> {
        if !self.synced {
            return TcpRepr::default();
        }
        let timestamps = Some((self.tsval(from), self.end(from).ts_recent));
        let mut sack_blocks = SackBlocks::default();
        if with_sack {
            let e = self.end_mut(from);
            for block in e
                .dsack
                .take()
                .into_iter()
                .chain(e.ooo.iter().copied())
                .take(3)
            {
                sack_blocks.push(block);
            }
        }
        TcpRepr {
            timestamps,
            sack_blocks,
            ..TcpRepr::default()
        }
    }

    // ---- established traffic -------------------------------------------

    /// `len` bytes of data from `from` (PSH|ACK), delivered.
    pub fn data(&mut self, from: Host, len: usize) -> Vec<u8> {
        self.send(from, PSH | ACK, len, true)
    }

    /// `len` bytes of data the tap sees but the receiver never gets (lost
    /// downstream); later data then sits in the receiver's out-of-order
    /// queue and shows up in its SACK blocks.
    pub fn data_lost(&mut self, from: Host, len: usize) -> Vec<u8> {
        self.send(from, PSH | ACK, len, false)
    }

    /// Retransmit `len` bytes from `seq` (already sent), delivered; if the
    /// receiver had them it answers with a D-SACK.
    pub fn retransmit(&mut self, from: Host, seq: u32, len: usize) -> Vec<u8> {
        self.tick();
        let ack = self.end(from).rcv_nxt;
        let win = self.window_field(from);
        let opts = self.established_options(from, true);
        let frame = self.emit(from, PSH | ACK, seq, ack, win, opts, &payload(len), None);
        self.deliver(from, seq, ack, PSH | ACK, len as u32);
        frame
    }

    /// FIN|ACK from `from` (`tcp_send_fin()` after close() or shutdown()).
    pub fn fin(&mut self, from: Host) -> Vec<u8> {
        self.send(from, FIN | ACK, 0, true)
    }

    /// A pure ACK of everything `from` received, with its SACK blocks.
    pub fn ack(&mut self, from: Host) -> Vec<u8> {
        self.send(from, ACK, 0, true)
    }

    fn send(&mut self, from: Host, flags: u16, len: usize, delivered: bool) -> Vec<u8> {
        self.tick();
        let (seq, ack) = (self.end(from).snd_nxt, self.end(from).rcv_nxt);
        let win = self.window_field(from);
        let opts = self.established_options(from, true);
        let seq_len = len as u32 + (flags & FIN != 0) as u32;
        self.end_mut(from).snd_nxt = seq.wrapping_add(seq_len);
        let frame = self.emit(from, flags, seq, ack, win, opts, &payload(len), None);
        if delivered {
            self.deliver(from, seq, ack, flags, len as u32);
        }
        frame
    }

    /// The peer of `from` receives a segment: RCV.NXT, out-of-order queue,
    /// D-SACK, and the segment its reset would answer.
    fn deliver(&mut self, from: Host, seq: u32, ack: u32, flags: u16, len: u32) {
        let tsval = self.tsval(from);
        let synced = self.synced;
        let r = self.end_mut(from.peer());
        r.last_rx = Some(Received {
            seq,
            ack,
            flags,
            len,
        });
        if synced {
            r.ts_recent = tsval;
        }
        let seg_len = len + (flags & FIN != 0) as u32 + (flags & SYN != 0) as u32;
        if seg_len == 0 || flags & RST != 0 {
            return;
        }
        let end = seq.wrapping_add(seg_len);
        if !after(end, r.rcv_nxt) {
            // tcp_data_queue(): a retransmission of data already received.
            r.dsack = Some((seq, end));
        } else if !after(seq, r.rcv_nxt) {
            r.rcv_nxt = end;
            // tcp_ofo_queue(): pull in what now follows.
            while let Some(i) = r.ooo.iter().position(|&(l, _)| !after(l, r.rcv_nxt)) {
                let (_, e) = r.ooo.remove(i);
                if after(e, r.rcv_nxt) {
                    r.rcv_nxt = e;
                }
            }
        } else {
            // tcp_data_queue_ofo() + tcp_sack_new_ofo_skb(): the block
            // holding the newest segment goes first.
            let (mut l, mut e) = (seq, end);
            r.ooo.retain(|&(bl, be)| {
                let touches = !after(bl, e) && !after(l, be);
                if touches {
                    l = if after(bl, l) { l } else { bl };
                    e = if after(be, e) { be } else { e };
                }
                !touches
            });
            r.ooo.insert(0, (l, e));
        }
    }

    // ---- resets -----------------------------------------------------

    /// `tcp_send_active_reset()`: RST|ACK, seq = SND.NXT, ack = RCV.NXT,
    /// sent through the socket (window, timestamps).
    pub fn active_reset(&mut self, from: Host) -> Vec<u8> {
        self.tick();
        let (seq, ack) = (self.end(from).snd_nxt, self.end(from).rcv_nxt);
        let win = self.window_field(from);
        let opts = self.established_options(from, true);
        let frame = self.emit(from, RST | ACK, seq, ack, win, opts, &[], None);
        self.deliver(from, seq, ack, RST | ACK, 0);
        frame
    }

    /// `tcp_v4_send_reset()` / `tcp_v6_send_reset()`: what `from`, holding
    /// no socket that takes it, answers to the last segment it received.
    pub fn reset_reply(&mut self, from: Host) -> Vec<u8> {
        let rx = self
            .end(from)
            .last_rx
            .expect("the host received nothing to answer");
        assert!(
            rx.flags & RST == 0,
            "Linux never answers a reset with a reset"
        );
        if rx.flags & ACK != 0 {
            self.rst(from, rx.ack, 0, false)
        } else {
            let ack = rx
                .seq
                .wrapping_add(rx.len)
                .wrapping_add((rx.flags & SYN != 0) as u32)
                .wrapping_add((rx.flags & FIN != 0) as u32);
            self.rst(from, 0, ack, true)
        }
    }

    /// A reset in the form of the control socket (no options, window 0,
    /// IPv4 ID 0) with the given numbers; `with_ack` adds the ACK flag.
    pub fn rst(&mut self, from: Host, seq: u32, ack: u32, with_ack: bool) -> Vec<u8> {
        self.rst_payload(from, seq, ack, with_ack, &[])
    }

    /// [`Conn::rst`] carrying `payload` (RFC 9293 §3.5.3 diagnostic text).
    pub fn rst_payload(
        &mut self,
        from: Host,
        seq: u32,
        ack: u32,
        with_ack: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        self.tick();
        let flags = if with_ack { RST | ACK } else { RST };
        let ack = if with_ack { ack } else { 0 };
        let frame = self.emit(
            from,
            flags,
            seq,
            ack,
            0,
            Options::default(),
            payload,
            Some(0),
        );
        self.deliver(from, seq, ack, flags, payload.len() as u32);
        frame
    }

    /// Any segment from `from`'s socket (its window and timestamps) with
    /// the given flags and numbers. Sequence state is left alone; the
    /// peer records it as the segment its reset would answer.
    pub fn raw(&mut self, from: Host, flags: u16, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        self.tick();
        let win = if flags & SYN != 0 {
            self.end(from).syn_window
        } else {
            self.window_field(from)
        };
        let opts = self.established_options(from, false);
        let frame = self.emit(from, flags, seq, ack, win, opts, payload, None);
        let r = self.end_mut(from.peer());
        r.last_rx = Some(Received {
            seq,
            ack,
            flags,
            len: payload.len() as u32,
        });
        frame
    }

    // ---- framing ------------------------------------------------------

    /// Ethernet + IP + TCP with checksums, built with the engine's
    /// [`TcpFrameRepr`]. `ip_id` None: the socket's counter; Some: a fixed
    /// ID (0 for SYN-ACKs and control-socket resets, both sent with DF).
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        from: Host,
        flags: u16,
        seq: u32,
        ack: u32,
        window: u16,
        options: Options<'_>,
        payload: &[u8],
        ip_id: Option<u16>,
    ) -> Vec<u8> {
        let id = match ip_id {
            Some(id) => id,
            None => {
                let e = self.end_mut(from);
                e.ip_id = e.ip_id.wrapping_add(1);
                e.ip_id
            }
        };
        let (s, d) = (self.end(from), self.end(from.peer()));
        let ip = match (s.ip, d.ip) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => IpRepr::V4(Ipv4Repr {
                src,
                dst,
                ttl: 64,
                ident: id,
                dont_fragment: true,
            }),
            (IpAddr::V6(src), IpAddr::V6(dst)) => IpRepr::V6(Ipv6Repr {
                src,
                dst,
                hop_limit: 64,
                flow_label: s.flow_label,
            }),
            _ => unreachable!("both ends share a family"),
        };
        let frame = TcpFrameRepr {
            ethernet: EthernetRepr {
                src: s.mac,
                dst: d.mac,
            },
            ip,
            tcp: TcpRepr {
                src_port: s.port,
                dst_port: d.port,
                seq,
                ack,
                flags: TcpFlags(flags),
                window,
                payload,
                ..options
            },
        };
        let mut out = vec![0; frame.len()];
        frame.emit(&mut out).expect("frame serializes");
        out
    }
}

/// Recognisable payload bytes.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn after(a: u32, b: u32) -> bool {
    rstwall_engine::seq::after(a, b)
}

/// Parse one of our frames back (panics if it is not TCP).
pub fn segment(frame: &[u8]) -> Segment<'_> {
    match wire::parse(LinkType::Ethernet, frame) {
        Ok(Parsed::Tcp(seg)) => seg,
        other => panic!("not a TCP frame: {other:?}"),
    }
}

/// A vantage point on the path: every frame goes through
/// [`FlowTable::observe`], RSTs come back judged.
pub struct Tap {
    table: FlowTable,
    now: u32,
}

impl Default for Tap {
    fn default() -> Self {
        Tap::new()
    }
}

impl Tap {
    pub fn new() -> Tap {
        Tap {
            table: FlowTable::new(1024, Timeouts::default()),
            now: 1_000,
        }
    }

    /// Observe one frame.
    pub fn see(&mut self, frame: &[u8]) -> Observation {
        let seg = segment(frame);
        self.table.observe(&seg, self.now)
    }

    /// Observe frames that carry no RST.
    pub fn see_all<I>(&mut self, frames: I)
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        for f in frames {
            let obs = self.see(f.as_ref());
            assert!(obs.rst.is_none(), "see_all() is for non-RST frames");
        }
    }

    /// Observe a RST frame and return its judgment.
    pub fn judge(&mut self, frame: &[u8]) -> RstJudgment {
        self.see(frame).rst.expect("frame is not a RST")
    }

    pub fn table(&self) -> &FlowTable {
        &self.table
    }
}
