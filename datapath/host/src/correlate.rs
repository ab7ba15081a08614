//! The correlator: each RST a worker judged meets the kernel events about
//! it (same addresses and ports, the same seq where the event has one,
//! within a bounded window), and leaves as one [`RstEvent`] with rstwall's
//! class, the kernel's verdict, their agreement and the owning process.
//! The same thread turns socket closes into netstat's per-second picture.
//!
//! A RST and its events arrive in either order (the kernel decides to send
//! a RST before its packet reaches tc; it judges a received one after), on
//! different rings read by different threads; so both wait here for up to
//! the window. A RST leaves as soon as every verdict its direction can
//! have is there (received here: the receiver's; sent here: the sender's),
//! else when its window ends. Kernel events that met no RST are counted.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use rstwall_bpf::host::{RecordAt, RingReader};
use rstwall_bpf::shared::{host as shared, Addr};
use rstwall_engine::class::RstClass;
use rstwall_engine::engine::RstFields;
use serde::Serialize;

use crate::event::{hex, RstEvent, SeenRst};
use crate::ifaces::IfaceTable;
use crate::mib::TcpMib;
use crate::process::{Cgroups, OwnerSource, RawOwner};
use crate::reconcile::{Accumulating, CloseCause, CloseCounter, CloseKey, MibSecond};
use crate::verdict::{agreement, state, Agreement, KernelVerdict, Received, Sent};

/// Pending RSTs and unmatched kernel events kept at most (each); past
/// that, every RST waiting leaves at once with what it has (counted as
/// rushed), and further kernel events are counted unmatched.
const MAX_WAITING: usize = 65_536;
/// Seconds of [`MibSecond`]s kept.
const SECONDS_KEPT: usize = 120;
/// Socket owners remembered by address (existing sockets, listeners).
const MAX_OWNERS: usize = 1 << 18;
/// How long a close waits for the reset that caused it (an abort's RST is
/// sent after the socket is set to CLOSE).
const CLOSE_CAUSE_WAIT_NS: u64 = 20_000_000;

/// A RST's addresses and ports, in its own direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Tuple {
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
}

/// What the correlator has counted since it started.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CorrelationStats {
    /// RST events emitted.
    pub rsts: u64,
    /// Per class: agrees, disagrees, unjudged, no_verdict (indexed by
    /// [`Agreement::index`]).
    pub by_class: BTreeMap<RstClass, [u64; Agreement::COUNT]>,
    /// RSTs this host sent, by the kernel's reason.
    pub sent_by_reason: BTreeMap<String, u64>,
    /// Kernel events read.
    pub kernel_events: u64,
    /// Verdict events that met no RST record within the window (the RST
    /// crossed no observed interface, or its record was lost), by kind.
    pub unmatched: BTreeMap<&'static str, u64>,
    /// RSTs that left before their window ended (too many waiting).
    pub rushed: u64,
    /// Events the consumer had no room for (its channel was full).
    pub events_dropped: u64,
}

impl CorrelationStats {
    pub fn count(&self, a: Agreement) -> u64 {
        self.by_class.values().map(|c| c[a.index()]).sum()
    }
}

/// What the correlator shares with the source's handle.
#[derive(Default)]
pub(crate) struct Shared {
    pub stats: CorrelationStats,
    pub seconds: std::collections::VecDeque<MibSecond>,
    pub mib: Option<TcpMib>,
    /// Disagreements, newest last (bounded); every one is also an event.
    pub disagreements: std::collections::VecDeque<RstEvent>,
}

const DISAGREEMENTS_KEPT: usize = 256;

struct Pending {
    rst: SeenRst,
    verdict: KernelVerdict,
    recv_owner: Option<RawOwner>,
    sent_owner: Option<RawOwner>,
}

impl Pending {
    fn complete(&self) -> bool {
        let d = self.rst.direction;
        (!d.received_here() || self.verdict.received.is_some())
            && (!d.sent_here() || self.verdict.sent.is_some())
    }
}

/// A reset a socket took part in, remembered for its close: the socket's
/// ports are still known at the reset, and gone (0) once it is closed.
#[derive(Clone, Copy)]
struct RecentReset {
    mono_ns: u64,
    cause: CloseCause,
    local: (IpAddr, u16),
}

struct Close {
    mono_ns: u64,
    cookie: u64,
    counter: CloseCounter,
    local: (IpAddr, u16),
    remote: (IpAddr, u16),
    owner: Option<RawOwner>,
}

pub(crate) struct Correlator {
    /// The kernel's TCP counters when the source started, read before
    /// `HostSource::start` returns (the correlator's thread may start
    /// later on a busy machine, and the first second's delta would miss
    /// what happened meanwhile).
    pub mib_at_start: Option<TcpMib>,
    pub window_ns: u64,
    pub rsts: Receiver<SeenRst>,
    pub out: Sender<RstEvent>,
    pub shared: Arc<Mutex<Shared>>,
    pub ifaces: IfaceTable,
    pub rst_reasons: BTreeMap<u32, String>,
    pub drop_reasons: BTreeMap<u32, String>,
    pub stop: Arc<AtomicBool>,
}

struct State {
    pending: HashMap<Tuple, Vec<Pending>>,
    npending: usize,
    kevents: HashMap<Tuple, Vec<shared::Kevent>>,
    nkevents: usize,
    existing: HashMap<(IpAddr, u16, IpAddr, u16), RawOwner>,
    listeners: HashMap<u16, RawOwner>,
    /// Recent resets by the cookie of the socket they concern, for the
    /// cause of a close (its port may be released by then): when, and
    /// which.
    recent_resets: HashMap<u64, RecentReset>,
    closes: Vec<Close>,
    cgroups: Cgroups,
    second: Accumulating,
    wall_minus_mono: i128,
}

fn ip(a: &[u8; 16]) -> IpAddr {
    Addr { addr: *a }.to_ip()
}

fn mono_now() -> u64 {
    rstwall_bpf::monotonic_now_ns().unwrap_or(0)
}

fn wall_now() -> u64 {
    rstwall_source::sys::now_ns()
}

/// The RST tuple a kernel event is about (the RST's own direction).
fn kevent_tuple(k: &shared::Kevent) -> Tuple {
    let (l, r) = (ip(&k.laddr), ip(&k.raddr));
    if k.kind == shared::KEV_SEND_RESET {
        Tuple {
            src: l,
            dst: r,
            sport: k.lport,
            dport: k.rport,
        }
    } else {
        Tuple {
            src: r,
            dst: l,
            sport: k.rport,
            dport: k.lport,
        }
    }
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        shared::KEV_RECEIVE_RESET => "receive_reset",
        shared::KEV_SEND_RESET => "send_reset",
        shared::KEV_RST_DROPPED => "rst_dropped",
        shared::KEV_CHALLENGE_ACK => "challenge_ack",
        shared::KEV_SOCK_CLOSED => "sock_closed",
        shared::KEV_SOCK_OWNER => "sock_owner",
        _ => "unknown",
    }
}

impl Correlator {
    fn reason(&self, k: &shared::Kevent, send: bool) -> Option<String> {
        if k.flags & shared::KEV_HAS_REASON == 0 {
            return None;
        }
        let names = if send {
            &self.rst_reasons
        } else {
            &self.drop_reasons
        };
        Some(
            names
                .get(&k.reason)
                .cloned()
                .unwrap_or_else(|| k.reason.to_string()),
        )
    }

    fn owner(k: &shared::Kevent) -> Option<RawOwner> {
        (k.flags & shared::KEV_HAS_OWNER != 0)
            .then(|| RawOwner::from_kernel(&k.owner))
            .flatten()
    }

    /// Whether kernel event `k` fits pending RST `p`; if so, fill it in.
    fn apply(&self, p: &mut Pending, k: &shared::Kevent) -> bool {
        let window = self.window_ns;
        if k.ts_ns.abs_diff(p.rst.mono_ns) > window {
            return false;
        }
        let seq_ok = k.flags & shared::KEV_HAS_SEQ == 0 || k.seq == p.rst.packet.seq;
        let v = &mut p.verdict;
        match k.kind {
            shared::KEV_SEND_RESET if v.sent.is_none() && p.rst.direction.sent_here() && seq_ok => {
                v.sent = Some(Sent {
                    reason: self.reason(k, true),
                    state: (k.flags & shared::KEV_HAS_SOCKET != 0).then(|| state::name(k.state)),
                });
                p.sent_owner = Self::owner(k);
            }
            shared::KEV_RECEIVE_RESET
                if v.received.is_none() && p.rst.direction.received_here() =>
            {
                v.received = Some(Received::Reset {
                    state: state::name(k.state),
                });
                v.received_state = Some(k.state);
                p.recv_owner = Self::owner(k);
            }
            shared::KEV_RST_DROPPED
                if v.received.is_none() && p.rst.direction.received_here() && seq_ok =>
            {
                let has_sock = k.flags & shared::KEV_HAS_SOCKET != 0;
                let reason = self.reason(k, false).unwrap_or_default();
                v.received = Some(Received::Dropped {
                    reason: reason.clone(),
                    state: has_sock.then(|| state::name(k.state)),
                });
                v.received_state = has_sock.then_some(k.state);
                v.drop_reason = Some(reason);
                p.recv_owner = Self::owner(k);
            }
            shared::KEV_CHALLENGE_ACK if !v.challenge_ack && p.rst.direction.received_here() => {
                v.challenge_ack = true;
                if p.recv_owner.is_none() {
                    p.recv_owner = Self::owner(k);
                }
            }
            _ => return false,
        }
        true
    }

    /// Run until stopped, reading kernel events from `events`.
    pub fn run(self, mut events: RingReader) {
        let mut st = State {
            pending: HashMap::new(),
            npending: 0,
            kevents: HashMap::new(),
            nkevents: 0,
            existing: HashMap::new(),
            listeners: HashMap::new(),
            recent_resets: HashMap::new(),
            closes: Vec::new(),
            cgroups: Cgroups::new(),
            second: Accumulating::default(),
            wall_minus_mono: i128::from(wall_now()) - i128::from(mono_now()),
        };
        let this = self;
        let mut mib = this.mib_at_start;
        if let Ok(mut s) = this.shared.lock() {
            s.mib = mib;
        }
        let mut next_second = Instant::now() + Duration::from_secs(1);
        let mut batch: Vec<RecordAt> = Vec::with_capacity(256);
        while !this.stop.load(Ordering::Relaxed) {
            while let Ok(rst) = this.rsts.try_recv() {
                this.rst_arrived(&mut st, rst);
            }
            while events.take(&mut batch, 256) > 0 {
                for at in &batch {
                    if let Some(k) = shared::Kevent::read(events.record(at)) {
                        this.kevent_arrived(&mut st, k);
                    }
                }
                events.release();
            }
            let now = mono_now();
            this.flush(&mut st, now, false);
            this.settle_closes(&mut st, now, false);
            if Instant::now() >= next_second {
                next_second += Duration::from_secs(1);
                let now_mib = TcpMib::read().ok();
                let delta = match (now_mib, mib) {
                    (Some(n), Some(o)) => n.since(&o),
                    _ => TcpMib::default(),
                };
                mib = now_mib.or(mib);
                let sec = st.second.finish(wall_now() / 1_000_000_000, delta);
                if let Ok(mut s) = this.shared.lock() {
                    s.mib = mib;
                    s.seconds.push_back(sec);
                    while s.seconds.len() > SECONDS_KEPT {
                        s.seconds.pop_front();
                    }
                }
            }
            let _ = events.wait(Duration::from_millis(10));
        }
        // Everything still waiting leaves with what it has.
        while let Ok(rst) = this.rsts.try_recv() {
            this.rst_arrived(&mut st, rst);
        }
        this.flush(&mut st, u64::MAX, true);
        this.settle_closes(&mut st, u64::MAX, true);
    }

    fn rst_arrived(&self, st: &mut State, rst: SeenRst) {
        let tuple = Tuple {
            src: rst.packet.src,
            dst: rst.packet.dst,
            sport: rst.packet.src_port,
            dport: rst.packet.dst_port,
        };
        let mut p = Pending {
            rst,
            verdict: KernelVerdict::default(),
            recv_owner: None,
            sent_owner: None,
        };
        if let Some(ks) = st.kevents.get_mut(&tuple) {
            let before = ks.len();
            ks.retain(|k| !self.apply(&mut p, k));
            st.nkevents -= before - ks.len();
            if ks.is_empty() {
                st.kevents.remove(&tuple);
            }
        }
        if p.complete() {
            self.emit(st, p);
            return;
        }
        if st.npending >= MAX_WAITING {
            self.flush(st, 0, true);
            if let Ok(mut s) = self.shared.lock() {
                s.stats.rushed += 1;
            }
        }
        st.pending.entry(tuple).or_default().push(p);
        st.npending += 1;
    }

    fn kevent_arrived(&self, st: &mut State, k: shared::Kevent) {
        if let Ok(mut s) = self.shared.lock() {
            s.stats.kernel_events += 1;
        }
        let local = (ip(&k.laddr), k.lport);
        let remote = (ip(&k.raddr), k.rport);
        match k.kind {
            shared::KEV_SOCK_OWNER => {
                if let Some(o) = Self::owner(&k) {
                    if st.existing.len() < MAX_OWNERS {
                        if k.state == state::LISTEN {
                            st.listeners.insert(k.lport, o);
                        } else {
                            st.existing
                                .insert((local.0, local.1, remote.0, remote.1), o);
                        }
                    }
                }
                return;
            }
            shared::KEV_SOCK_CLOSED => {
                let counter = match k.state {
                    state::SYN_SENT | state::SYN_RECV => CloseCounter::AttemptFails,
                    _ => CloseCounter::EstabResets,
                };
                st.closes.push(Close {
                    mono_ns: k.ts_ns,
                    cookie: k.sk_cookie,
                    counter,
                    local,
                    remote,
                    owner: Self::owner(&k).or_else(|| {
                        st.existing
                            .get(&(local.0, local.1, remote.0, remote.1))
                            .copied()
                    }),
                });
                return;
            }
            shared::KEV_RECEIVE_RESET => {
                st.second.observed.resets_accepted += 1;
                if k.sk_cookie != 0 {
                    st.recent_resets.insert(
                        k.sk_cookie,
                        RecentReset {
                            mono_ns: k.ts_ns,
                            cause: CloseCause::ResetReceived,
                            local,
                        },
                    );
                }
            }
            shared::KEV_SEND_RESET => {
                let reason = self.reason(&k, true).unwrap_or_else(|| "UNKNOWN".into());
                *st.second
                    .observed
                    .resets_sent
                    .entry(reason.clone())
                    .or_default() += 1;
                if let Ok(mut s) = self.shared.lock() {
                    *s.stats.sent_by_reason.entry(reason).or_default() += 1;
                }
                if k.sk_cookie != 0 {
                    st.recent_resets.entry(k.sk_cookie).or_insert(RecentReset {
                        mono_ns: k.ts_ns,
                        cause: CloseCause::ResetSent,
                        local,
                    });
                }
            }
            shared::KEV_RST_DROPPED => st.second.observed.resets_dropped += 1,
            shared::KEV_CHALLENGE_ACK => st.second.observed.challenge_acks += 1,
            _ => return,
        }
        let tuple = kevent_tuple(&k);
        if let Some(ps) = st.pending.get_mut(&tuple) {
            if let Some(i) = ps.iter_mut().position(|p| self.apply(p, &k)) {
                if ps[i].complete() {
                    let p = ps.remove(i);
                    if ps.is_empty() {
                        st.pending.remove(&tuple);
                    }
                    st.npending -= 1;
                    self.emit(st, p);
                }
                return;
            }
        }
        if st.nkevents >= MAX_WAITING {
            return self.unmatched(k.kind);
        }
        st.kevents.entry(tuple).or_default().push(k);
        st.nkevents += 1;
    }

    fn unmatched(&self, kind: u8) {
        if let Ok(mut s) = self.shared.lock() {
            *s.stats.unmatched.entry(kind_name(kind)).or_default() += 1;
        }
    }

    /// RSTs whose window ended by `now` leave; kernel events too old to
    /// meet a RST are counted unmatched. `all`: everything.
    fn flush(&self, st: &mut State, now: u64, all: bool) {
        let w = self.window_ns;
        let mut due = Vec::new();
        for ps in st.pending.values_mut() {
            let (go, stay): (Vec<_>, Vec<_>) = std::mem::take(ps)
                .into_iter()
                .partition(|p| all || p.rst.mono_ns.saturating_add(w) <= now);
            *ps = stay;
            due.extend(go);
        }
        st.pending.retain(|_, ps| !ps.is_empty());
        st.npending -= due.len();
        due.sort_by_key(|p| p.rst.mono_ns);
        for p in due {
            self.emit(st, p);
        }
        let mut old = Vec::new();
        st.kevents.retain(|_, ks| {
            ks.retain(|k| {
                let keep = !all && k.ts_ns.saturating_add(w) > now;
                if !keep {
                    old.push(k.kind);
                }
                keep
            });
            !ks.is_empty()
        });
        st.nkevents -= old.len();
        for kind in old {
            self.unmatched(kind);
        }
        st.recent_resets
            .retain(|_, r| !all && r.mono_ns.saturating_add(1_000_000_000) > now);
    }

    /// Closes whose cause had time to show are counted in the second.
    fn settle_closes(&self, st: &mut State, now: u64, all: bool) {
        let closes = std::mem::take(&mut st.closes);
        for c in closes {
            if !all && c.mono_ns.saturating_add(CLOSE_CAUSE_WAIT_NS) > now {
                st.closes.push(c);
                continue;
            }
            let reset = st
                .recent_resets
                .get(&c.cookie)
                .filter(|r| r.mono_ns.abs_diff(c.mono_ns) <= self.window_ns)
                .copied();
            let cause = reset.map_or(CloseCause::Other, |r| r.cause);
            let local = match reset {
                Some(r) if c.local.1 == 0 => r.local,
                _ => c.local,
            };
            let connected = c.owner.is_some_and(|o| o.source == OwnerSource::Connect);
            let endpoint = if connected { c.remote } else { local };
            let process = c.owner.map(|o| st.cgroups.process(&o));
            st.second.close(
                CloseKey {
                    counter: c.counter,
                    cause,
                    endpoint,
                    remote: connected,
                    pid: c.owner.map(|o| o.pid),
                },
                process,
            );
        }
    }

    fn emit(&self, st: &mut State, p: Pending) {
        let rst = &p.rst;
        let pk = &rst.packet;
        let received = rst.direction.received_here();
        // The local socket: the receiver's when this host received it.
        let (local, remote) = if received {
            ((pk.dst, pk.dst_port), (pk.src, pk.src_port))
        } else {
            ((pk.src, pk.src_port), (pk.dst, pk.dst_port))
        };
        let owner = if received {
            p.recv_owner.or(p.sent_owner)
        } else {
            p.sent_owner
        }
        .or_else(|| {
            st.existing
                .get(&(local.0, local.1, remote.0, remote.1))
                .copied()
        })
        .or_else(|| {
            st.listeners.get(&local.1).map(|o| RawOwner {
                source: OwnerSource::Listener,
                ..*o
            })
        });
        let agreement = agreement(rst.judgment.class, received, &p.verdict);
        let iface = self
            .ifaces
            .read()
            .ok()
            .and_then(|t| t.get(&rst.ifindex).map(|i| i.name.clone()))
            .unwrap_or_else(|| format!("if{}", rst.ifindex));
        let wall = (i128::from(rst.mono_ns) + st.wall_minus_mono).max(0) as u64;
        let event = RstEvent {
            ts: format_ts(wall),
            iface,
            direction: rst.direction,
            rst: RstFields::of(pk, &rst.judgment, rst.decision),
            service_port: rst.judgment.service_port,
            kernel: p.verdict,
            agreement,
            process: owner.map(|o| st.cgroups.process(&o)),
            packet: (agreement == Agreement::Disagrees)
                .then(|| hex(&rst.headers[..usize::from(rst.caplen).min(rst.headers.len())])),
        };
        *st.second
            .observed
            .rsts_by_class
            .entry(rst.judgment.class)
            .or_default() += 1;
        let dropped = self.out.try_send(event.clone()).is_err();
        if let Ok(mut s) = self.shared.lock() {
            s.stats.rsts += 1;
            s.stats.by_class.entry(event.rst.class).or_default()[agreement.index()] += 1;
            if dropped {
                s.stats.events_dropped += 1;
            }
            if agreement == Agreement::Disagrees {
                tracing::warn!(
                    class = %event.rst.class,
                    kernel = ?event.kernel,
                    packet = event.packet.as_deref().unwrap_or(""),
                    "rstwall's class and the kernel's verdict disagree"
                );
                s.disagreements.push_back(event);
                while s.disagreements.len() > DISAGREEMENTS_KEPT {
                    s.disagreements.pop_front();
                }
            }
        }
    }
}

/// RFC 3339 in UTC with nanoseconds.
fn format_ts(ns: u64) -> String {
    humantime::format_rfc3339_nanos(std::time::UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}
