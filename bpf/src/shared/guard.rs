//! The RST guard's part of the contract (`rstwall_shared.h`, "The RST
//! guard"): the `guard` map's key and entry, built from the engine's
//! [`RstGuard`] export, and the `guard_cfg` setting built from the policy.

use std::mem::size_of;
use std::net::IpAddr;

use rstwall_engine::flow::{FlowKey, GuardHalf as EngineHalf, RstGuard, Side};
use rstwall_engine::policy::{Action, Mode, PolicyConfig};
use rstwall_engine::RstClass;

use super::{Addr, ADDR_LEN};
use crate::skel::types;

pub const MAX_ENTRIES: u32 = 262_144;
pub const MODE_SYNCED: u8 = 1;
pub const MODE_SYN_SENT: u8 = 2;
pub const MODE_STALE: u8 = 3;
pub const KEY_SIZE: usize = 36;
pub const ENTRY_SIZE: usize = 52;
pub const CFG_SIZE: usize = 8;

/// The classes the guard can drop, the bits of [`GuardCfg::drop_classes`].
pub const CLASSES: [RstClass; 3] = [
    RstClass::InWindow,
    RstClass::OutOfWindow,
    RstClass::SynSentBadAck,
];

/// `struct rstwall_guard_key`: a flow's endpoints in FlowKey's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct GuardKey {
    pub lo_addr: [u8; ADDR_LEN],
    pub hi_addr: [u8; ADDR_LEN],
    pub lo_port: u16,
    pub hi_port: u16,
}

/// `struct rstwall_guard_half`: RSTs to one endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GuardHalf {
    pub peer_end: u32,
    pub ack: u32,
    pub win_edge: u32,
    pub isn: u32,
    pub isn_end: u32,
    pub wscale: u8,
    pub reserved: [u8; 3],
}

/// `struct rstwall_guard_entry`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GuardEntry {
    pub half: [GuardHalf; 2],
    pub mode: u8,
    pub syn_sent: u8,
    pub reserved: [u8; 2],
}

/// `struct rstwall_guard_cfg`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GuardCfg {
    pub drop_classes: u32,
    pub margin: u32,
}

const _: () = assert!(size_of::<GuardKey>() == KEY_SIZE);
const _: () = assert!(size_of::<GuardEntry>() == ENTRY_SIZE);
const _: () = assert!(size_of::<GuardCfg>() == CFG_SIZE);
const _: () = assert!(size_of::<GuardKey>() == size_of::<types::rstwall_guard_key>());
const _: () = assert!(size_of::<GuardEntry>() == size_of::<types::rstwall_guard_entry>());
const _: () = assert!(size_of::<GuardCfg>() == size_of::<types::rstwall_guard_cfg>());

/// The plain-old-data bytes of a `#[repr(C)]` value without padding.
fn pod_bytes<T: Copy, const N: usize>(v: &T) -> [u8; N] {
    assert_eq!(size_of::<T>(), N);
    let mut out = [0u8; N];
    // SAFETY: T is one of this module's repr(C) structs of integers and
    // byte arrays without padding (their sizes are asserted above to be
    // the sums of their fields), and `out` has exactly size_of::<T>() bytes.
    unsafe { std::ptr::copy_nonoverlapping((v as *const T).cast::<u8>(), out.as_mut_ptr(), N) };
    out
}

impl GuardKey {
    /// The key of an engine flow: the same order, lo first.
    pub fn new(key: &FlowKey) -> GuardKey {
        let (lo, lo_port) = key.endpoint(Side::Lo);
        let (hi, hi_port) = key.endpoint(Side::Hi);
        GuardKey::from_endpoints(lo, lo_port, hi, hi_port)
    }

    /// The key of two endpoints in either order.
    pub fn from_endpoints(a: IpAddr, a_port: u16, b: IpAddr, b_port: u16) -> GuardKey {
        let (a, b) = ((Addr::new(a).addr, a_port), (Addr::new(b).addr, b_port));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        GuardKey {
            lo_addr: lo.0,
            hi_addr: hi.0,
            lo_port: lo.1,
            hi_port: hi.1,
        }
    }

    pub fn to_bytes(self) -> [u8; KEY_SIZE] {
        pod_bytes(&self)
    }
}

impl GuardEntry {
    /// The entry for an engine flow's export.
    pub fn new(guard: &RstGuard) -> GuardEntry {
        let half = |h: &EngineHalf| GuardHalf {
            peer_end: h.peer_end,
            ack: h.ack,
            win_edge: h.win_edge,
            wscale: h.wscale,
            ..GuardHalf::default()
        };
        match guard {
            RstGuard::Synced(halves) => GuardEntry {
                half: [half(&halves[0]), half(&halves[1])],
                mode: MODE_SYNCED,
                ..GuardEntry::default()
            },
            &RstGuard::SynSent {
                receiver,
                isn,
                isn_end,
            } => {
                let mut e = GuardEntry {
                    mode: MODE_SYN_SENT,
                    syn_sent: receiver as u8,
                    ..GuardEntry::default()
                };
                e.half[receiver as usize].isn = isn;
                e.half[receiver as usize].isn_end = isn_end;
                e
            }
        }
    }

    pub fn to_bytes(self) -> [u8; ENTRY_SIZE] {
        pod_bytes(&self)
    }

    /// An entry from the map's value bytes (`None` when they are not one).
    pub fn from_bytes(b: &[u8]) -> Option<GuardEntry> {
        if b.len() != ENTRY_SIZE {
            return None;
        }
        // SAFETY: GuardEntry is plain old data (every bit pattern valid) of
        // ENTRY_SIZE bytes, and `b` has that many; no alignment needed.
        Some(unsafe { std::ptr::read_unaligned(b.as_ptr().cast::<GuardEntry>()) })
    }

    /// The kernel marked it stale: it drops nothing until replaced.
    pub fn is_stale(&self) -> bool {
        self.mode == MODE_STALE
    }
}

impl GuardCfg {
    /// The guard's setting for a policy: the classes among [`CLASSES`]
    /// enforce drops outright (ratelimit needs userspace's buckets), none
    /// in monitor mode or while an allow list exists, whose sources skip
    /// the RST policy (the kernel program does not read the list).
    pub fn for_policy(policy: &PolicyConfig, margin: u32) -> GuardCfg {
        let enforcing = policy.mode() == Mode::Enforce && policy.allow().is_empty();
        let drop_classes = CLASSES
            .iter()
            .filter(|&&c| enforcing && policy.action(c) == Action::Drop)
            .fold(0u32, |m, c| m | 1 << c.index());
        GuardCfg {
            drop_classes,
            margin,
        }
    }

    /// The guard switched off: the program looks nothing up.
    pub const OFF: GuardCfg = GuardCfg {
        drop_classes: 0,
        margin: 0,
    };

    pub fn to_bytes(self) -> [u8; CFG_SIZE] {
        pod_bytes(&self)
    }
}

/// The margin for frames that passed the program before userspace inserted
/// an entry: what the peer can have sent in them, at most every frame an RX
/// ring (and a NAPI batch) holds, each at most a UMEM frame of payload.
pub fn margin_for(ring_frames: u32, frame_size: u32) -> u32 {
    const NAPI_BATCH: u32 = 64;
    ring_frames
        .saturating_add(NAPI_BATCH)
        .saturating_mul(frame_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_orders_endpoints_as_flow_key() {
        let a: IpAddr = "198.18.0.2".parse().unwrap();
        let b: IpAddr = "198.18.0.1".parse().unwrap();
        let k = GuardKey::from_endpoints(a, 80, b, 40000);
        assert_eq!(k, GuardKey::from_endpoints(b, 40000, a, 80));
        assert_eq!((k.lo_port, k.hi_port), (40000, 80));
        assert_eq!(Addr { addr: k.lo_addr }.to_ip(), b);
        // Same address: the port decides.
        let k = GuardKey::from_endpoints(a, 9, a, 8);
        assert_eq!((k.lo_port, k.hi_port), (8, 9));
    }

    #[test]
    fn cfg_follows_the_policy() {
        let mut p = PolicyConfig::default();
        assert_eq!(
            GuardCfg::for_policy(&p, 7),
            GuardCfg {
                drop_classes: 0,
                margin: 7
            }
        );
        p.set_mode(Mode::Enforce);
        let all = (1 << 3) | (1 << 4) | (1 << 5);
        assert_eq!(GuardCfg::for_policy(&p, 7).drop_classes, all);
        p.set_action(RstClass::InWindow, Action::RateLimit);
        assert_eq!(GuardCfg::for_policy(&p, 7).drop_classes, all & !(1 << 3));
        p.set("lists.allow", "198.18.0.0/24").unwrap();
        assert_eq!(GuardCfg::for_policy(&p, 7).drop_classes, 0);
    }

    #[test]
    fn entry_bytes_round_trip() {
        let e = GuardEntry::new(&RstGuard::SynSent {
            receiver: Side::Hi,
            isn: 5,
            isn_end: 6,
        });
        assert_eq!(GuardEntry::from_bytes(&e.to_bytes()), Some(e));
        assert_eq!((e.mode, e.syn_sent, e.half[1].isn), (MODE_SYN_SENT, 1, 5));
        assert!(GuardEntry::from_bytes(&[0; 3]).is_none());
    }
}
