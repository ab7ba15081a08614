//! The tracing side: what the kernel did with each RST and who owns each
//! socket, loaded program by program as far as the running kernel allows.
//!
//! Each program is optional. The loader first asks the kernel's BTF which
//! variant of a tracepoint it has (`tcp_send_reset` gained its reason in
//! 6.10, `kfree_skb` its receiving socket in 6.12), then loads the whole
//! set; if the kernel refuses that, it loads each program alone to find
//! the ones it refuses (here, for example, BPF trampolines are refused: no
//! fentry, fexit or LSM) and loads the rest. A program that loads but
//! cannot attach is dropped the same way. What is missing, and why, is in
//! [`KernelCapabilities`]; nothing else changes.

use std::collections::BTreeMap;
use std::io::Read;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use libbpf_rs::btf::{types, Btf, ReferencesType};
use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapHandle, OpenProgramMut, ProgramMut};
use serde::Serialize;

use crate::error::{BpfError, Errno};
use crate::shared::host::{self as shared, TraceCounter};
use crate::skel::host_trace::{OpenRstwallHostTraceSkel, RstwallHostTraceSkelBuilder};

use super::counters::{per_cpu_totals, TraceCounters};
use super::ring::RingReader;

/// Whether a part of host mode works on this kernel, and how or why not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Available { via: String },
    Unavailable { why: String },
}

impl Capability {
    pub fn is_available(&self) -> bool {
        matches!(self, Capability::Available { .. })
    }

    fn via(via: impl Into<String>) -> Capability {
        Capability::Available { via: via.into() }
    }

    fn missing(why: impl Into<String>) -> Capability {
        Capability::Unavailable { why: why.into() }
    }
}

/// What the kernel side of host mode can see on this kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelCapabilities {
    /// RSTs a socket accepted (tcp:tcp_receive_reset).
    pub receive_reset: Capability,
    /// RSTs the kernel sends (tcp:tcp_send_reset).
    pub send_reset: Capability,
    /// Why each RST was sent (enum sk_rst_reason, Linux 6.10+).
    pub send_reset_reason: Capability,
    /// RSTs the kernel discarded, with the drop reason (skb:kfree_skb).
    pub rst_dropped: Capability,
    /// The socket that discarded a RST (kfree_skb's rx_sk, Linux 6.12+).
    pub rst_dropped_socket: Capability,
    /// Challenge ACKs as they are decided (fentry on
    /// tcp_send_challenge_ack); without it, in-window RSTs show as a
    /// TCP_RESET drop on a synchronized socket, and the count as the
    /// TCPChallengeACK MIB counter.
    pub challenge_ack: Capability,
    /// Sockets closing from SYN_SENT/SYN_RECV/ESTABLISHED/CLOSE_WAIT, and
    /// owners at connect() and listen() (sock:inet_sock_set_state).
    pub socket_states: Capability,
    /// Owners of accepted sockets at accept(): BPF LSM sock_graft, or
    /// fexit on inet_csk_accept; without either, the listener's owner.
    pub owner_at_accept: Capability,
    /// Owners of sockets that existed before rstwall started
    /// (iter/task_file).
    pub owner_existing: Capability,
}

/// The tracing programs' maps, and names for the kernel's reason numbers.
#[derive(Debug)]
pub struct TracePrograms {
    events: MapHandle,
    counters: MapHandle,
    existing: Option<OwnedFd>,
    _links: Vec<Link>,
    caps: KernelCapabilities,
    rst_reasons: BTreeMap<u32, String>,
    drop_reasons: BTreeMap<u32, String>,
}

/// The programs of the tracing object, by what they do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Prog {
    ReceiveReset,
    SendReset,
    SendResetOld,
    KfreeSkb,
    KfreeSkbOld,
    ChallengeAck,
    SetState,
    SockGraft,
    CskAccept,
    Existing,
}

impl Prog {
    const ALL: [Prog; 10] = [
        Prog::ReceiveReset,
        Prog::SendReset,
        Prog::SendResetOld,
        Prog::KfreeSkb,
        Prog::KfreeSkbOld,
        Prog::ChallengeAck,
        Prog::SetState,
        Prog::SockGraft,
        Prog::CskAccept,
        Prog::Existing,
    ];

    fn hook(self) -> &'static str {
        match self {
            Prog::ReceiveReset => "tp_btf/tcp_receive_reset",
            Prog::SendReset | Prog::SendResetOld => "tp_btf/tcp_send_reset",
            Prog::KfreeSkb | Prog::KfreeSkbOld => "tp_btf/kfree_skb",
            Prog::ChallengeAck => "fentry/tcp_send_challenge_ack",
            Prog::SetState => "tp_btf/inet_sock_set_state",
            Prog::SockGraft => "lsm/sock_graft",
            Prog::CskAccept => "fexit/inet_csk_accept",
            Prog::Existing => "iter/task_file",
        }
    }

    fn open<'a, 'o>(
        self,
        skel: &'a mut OpenRstwallHostTraceSkel<'o>,
    ) -> &'a mut OpenProgramMut<'o> {
        let p = &mut skel.progs;
        match self {
            Prog::ReceiveReset => &mut p.host_receive_reset,
            Prog::SendReset => &mut p.host_send_reset,
            Prog::SendResetOld => &mut p.host_send_reset_old,
            Prog::KfreeSkb => &mut p.host_kfree_skb,
            Prog::KfreeSkbOld => &mut p.host_kfree_skb_old,
            Prog::ChallengeAck => &mut p.host_challenge_ack,
            Prog::SetState => &mut p.host_set_state,
            Prog::SockGraft => &mut p.host_sock_graft,
            Prog::CskAccept => &mut p.host_csk_accept,
            Prog::Existing => &mut p.host_existing,
        }
    }
}

/// Arguments of a raw tracepoint, from its `btf_trace_<name>` typedef (a
/// pointer to a prototype whose first parameter is the context).
fn tracepoint_args(btf: &Btf<'_>, name: &str) -> Option<usize> {
    let typedef = btf.type_by_name::<types::Typedef<'_>>(&format!("btf_trace_{name}"))?;
    let ptr = types::Ptr::try_from(typedef.referenced_type()).ok()?;
    let proto = types::FuncProto::try_from(ptr.referenced_type()).ok()?;
    Some(proto.len().saturating_sub(1))
}

/// An enum of the kernel's BTF as value → name without `prefix`.
fn kernel_enum(btf: &Btf<'_>, name: &str, prefix: &str) -> BTreeMap<u32, String> {
    let Some(e) = btf.type_by_name::<types::Enum<'_>>(name) else {
        return BTreeMap::new();
    };
    e.iter()
        .filter_map(|m| {
            let n = m.name?.to_str()?;
            Some((
                m.value as u32,
                n.strip_prefix(prefix).unwrap_or(n).to_string(),
            ))
        })
        .collect()
}

type Loaded<'o> = crate::skel::host_trace::RstwallHostTraceSkel<'o>;

fn try_load<'o>(
    storage: &'o mut MaybeUninit<libbpf_rs::OpenObject>,
    netns: u32,
    progs: &[Prog],
) -> Result<Loaded<'o>, libbpf_rs::Error> {
    let mut open = RstwallHostTraceSkelBuilder::default().open(storage)?;
    open.maps
        .rodata_data
        .as_deref_mut()
        .expect("the object has a .rodata section (cfg_host_netns)")
        .cfg_host_netns = netns;
    for p in Prog::ALL {
        p.open(&mut open).set_autoload(progs.contains(&p));
    }
    open.load()
}

fn prog<'a, 'o>(skel: &'a Loaded<'o>, p: Prog) -> &'a ProgramMut<'o> {
    let s = &skel.progs;
    match p {
        Prog::ReceiveReset => &s.host_receive_reset,
        Prog::SendReset => &s.host_send_reset,
        Prog::SendResetOld => &s.host_send_reset_old,
        Prog::KfreeSkb => &s.host_kfree_skb,
        Prog::KfreeSkbOld => &s.host_kfree_skb_old,
        Prog::ChallengeAck => &s.host_challenge_ack,
        Prog::SetState => &s.host_set_state,
        Prog::SockGraft => &s.host_sock_graft,
        Prog::CskAccept => &s.host_csk_accept,
        Prog::Existing => &s.host_existing,
    }
}

fn refused(e: &libbpf_rs::Error) -> String {
    let errno = Errno::from(e);
    if errno.0 == 0 {
        format!("{e}")
    } else {
        errno.to_string()
    }
}

impl TracePrograms {
    /// Load and attach what this kernel allows, observing the network
    /// namespace whose `ns/net` inode number is `netns`.
    pub fn load(netns: u32) -> Result<TracePrograms, BpfError> {
        let btf = Btf::from_vmlinux().map_err(|e| BpfError::Host {
            what: "reading the kernel's BTF (/sys/kernel/btf/vmlinux)".into(),
            errno: Errno::from(&e),
            detail: format!("{e:#}"),
        })?;
        let send_args = tracepoint_args(&btf, "tcp_send_reset");
        let kfree_args = tracepoint_args(&btf, "kfree_skb");
        let mut why_not: BTreeMap<Prog, String> = BTreeMap::new();
        let mut wanted = vec![Prog::ReceiveReset, Prog::SetState, Prog::ChallengeAck];
        wanted.extend([Prog::SockGraft, Prog::CskAccept, Prog::Existing]);
        match send_args {
            Some(n) if n >= 3 => wanted.push(Prog::SendReset),
            Some(_) => wanted.push(Prog::SendResetOld),
            None => {
                why_not.insert(Prog::SendReset, "no tcp_send_reset tracepoint".into());
            }
        }
        match kfree_args {
            Some(n) if n >= 4 => wanted.push(Prog::KfreeSkb),
            Some(_) => wanted.push(Prog::KfreeSkbOld),
            None => {
                why_not.insert(Prog::KfreeSkb, "no kfree_skb tracepoint".into());
            }
        }

        // The whole set, else each alone to find those the kernel refuses.
        // Refusals are expected here and reported in the capabilities, so
        // libbpf's own messages about them stay quiet (its default prints
        // them to stderr); the final load below prints as usual.
        let printer = libbpf_rs::set_print(None);
        let (mut first, mut second) = (MaybeUninit::uninit(), MaybeUninit::uninit());
        let loaded = match try_load(&mut first, netns, &wanted) {
            Ok(skel) => Ok(skel),
            Err(all) => {
                tracing::debug!("host tracing programs: {all:#}; loading them one by one");
                wanted.retain(|&p| {
                    let mut one = MaybeUninit::uninit();
                    let alone = try_load(&mut one, netns, &[p]).map(drop);
                    match alone {
                        Ok(()) => true,
                        Err(e) => {
                            why_not.insert(p, format!("{} refused: {}", p.hook(), refused(&e)));
                            false
                        }
                    }
                });
                libbpf_rs::set_print(printer);
                try_load(&mut second, netns, &wanted)
            }
        };
        libbpf_rs::set_print(printer);
        let skel = loaded.map_err(|e| BpfError::Host {
            what: "loading host mode's tracing programs".into(),
            errno: Errno::from(&e),
            detail: format!("{e:#}"),
        })?;

        let mut links = Vec::new();
        let mut attached = Vec::new();
        for &p in &wanted {
            // The iterator runs on demand; the fexit is only the LSM
            // hook's stand-in.
            if p == Prog::Existing || (p == Prog::CskAccept && attached.contains(&Prog::SockGraft))
            {
                continue;
            }
            match prog(&skel, p).attach() {
                Ok(link) => {
                    links.push(link);
                    attached.push(p);
                }
                Err(e) => {
                    why_not.insert(p, format!("{} not attached: {}", p.hook(), refused(&e)));
                }
            }
        }
        let existing = if wanted.contains(&Prog::Existing) {
            prog(&skel, Prog::Existing)
                .as_fd()
                .try_clone_to_owned()
                .ok()
        } else {
            None
        };

        let on = |p: Prog| attached.contains(&p);
        let cap = |ps: &[Prog], why_default: &str| -> Capability {
            match ps.iter().find(|&&p| on(p)) {
                Some(p) => Capability::via(p.hook()),
                None => Capability::missing(
                    ps.iter()
                        .find_map(|p| why_not.get(p).cloned())
                        .unwrap_or_else(|| why_default.to_string()),
                ),
            }
        };
        let caps = KernelCapabilities {
            receive_reset: cap(&[Prog::ReceiveReset], "not loaded"),
            send_reset: cap(&[Prog::SendReset, Prog::SendResetOld], "not loaded"),
            send_reset_reason: if on(Prog::SendReset) {
                Capability::via("tcp_send_reset's enum sk_rst_reason")
            } else if on(Prog::SendResetOld) {
                Capability::missing("this kernel's tcp_send_reset has no reason (before 6.10)")
            } else {
                cap(&[Prog::SendReset], "not loaded")
            },
            rst_dropped: cap(&[Prog::KfreeSkb, Prog::KfreeSkbOld], "not loaded"),
            rst_dropped_socket: if on(Prog::KfreeSkb) {
                Capability::via("kfree_skb's rx_sk")
            } else if on(Prog::KfreeSkbOld) {
                Capability::missing("this kernel's kfree_skb has no receiving socket (before 6.12)")
            } else {
                cap(&[Prog::KfreeSkb], "not loaded")
            },
            challenge_ack: cap(&[Prog::ChallengeAck], "not loaded"),
            socket_states: cap(&[Prog::SetState], "not loaded"),
            owner_at_accept: match cap(&[Prog::SockGraft, Prog::CskAccept], "not loaded") {
                Capability::Unavailable { why } => Capability::missing(format!(
                    "{why}; an accepted socket is attributed to its listener's owner"
                )),
                ok => ok,
            },
            owner_existing: if existing.is_some() {
                Capability::via(Prog::Existing.hook())
            } else {
                cap(&[Prog::Existing], "not loaded")
            },
        };

        let handle = |map: &libbpf_rs::MapMut<'_>| {
            MapHandle::try_from(map).map_err(|e| BpfError::Host {
                what: "taking a host tracing map".into(),
                errno: Errno::from(&e),
                detail: format!("{e:#}"),
            })
        };
        Ok(TracePrograms {
            events: handle(&skel.maps.host_events)?,
            counters: handle(&skel.maps.host_tcounters)?,
            existing,
            _links: links,
            caps,
            rst_reasons: kernel_enum(&btf, "sk_rst_reason", "SK_RST_REASON_"),
            drop_reasons: kernel_enum(&btf, "skb_drop_reason", "SKB_DROP_REASON_"),
        })
    }

    pub fn capabilities(&self) -> &KernelCapabilities {
        &self.caps
    }

    /// A reader for the kernel events ring.
    pub fn events_reader(&self) -> std::io::Result<RingReader> {
        RingReader::new(self.events.as_fd(), shared::EVENTS_SIZE)
    }

    pub fn counters(&self) -> Result<TraceCounters, BpfError> {
        let t = per_cpu_totals(
            &self.counters,
            shared::MAP_TRACE_COUNTERS,
            TraceCounter::COUNT,
        )?;
        Ok(TraceCounters::from_totals(&t))
    }

    /// The kernel's name of a `tcp_send_reset` reason (`NO_SOCKET`, ...).
    pub fn rst_reason(&self, reason: u32) -> Option<&str> {
        self.rst_reasons.get(&reason).map(String::as_str)
    }

    /// The kernel's name of a drop reason (`TCP_RESET`, `NO_SOCKET`, ...).
    pub fn drop_reason(&self, reason: u32) -> Option<&str> {
        self.drop_reasons.get(&reason).map(String::as_str)
    }

    /// The reason names, for a consumer on another thread.
    pub fn reason_names(&self) -> (BTreeMap<u32, String>, BTreeMap<u32, String>) {
        (self.rst_reasons.clone(), self.drop_reasons.clone())
    }

    /// Report every existing TCP socket of the namespace with its owner
    /// (SOCK_OWNER events on the events ring); returns false when the
    /// iterator is unavailable. Run it once the events ring is read.
    pub fn scan_existing_sockets(&self) -> Result<bool, BpfError> {
        let Some(prog) = &self.existing else {
            return Ok(false);
        };
        let fail = |errno: Errno| BpfError::Host {
            what: "running the socket iterator".into(),
            errno,
            detail: String::new(),
        };
        // SAFETY: all-zero options are the defaults; `sz` versions them.
        let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as libbpf_sys::size_t;
        // SAFETY: a valid program fd and options.
        let link = unsafe {
            libbpf_sys::bpf_link_create(prog.as_raw_fd(), 0, libbpf_sys::BPF_TRACE_ITER, &opts)
        };
        if link < 0 {
            return Err(fail(Errno::from_ret(link)));
        }
        // SAFETY: a new fd, owned from here.
        let link = unsafe { OwnedFd::from_raw_fd(link) };
        // SAFETY: a valid iterator link fd.
        let iter = unsafe { libbpf_sys::bpf_iter_create(link.as_raw_fd()) };
        if iter < 0 {
            return Err(fail(Errno::from_ret(iter)));
        }
        // SAFETY: a new fd, owned from here.
        let mut iter = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(iter) });
        // The program writes nothing; reading drives it to the end.
        let mut sink = [0u8; 256];
        loop {
            match iter.read(&mut sink) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(Errno(e.raw_os_error().unwrap_or(0)))),
            }
        }
    }
}
