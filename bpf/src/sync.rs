//! Kernel map sync: what the XDP programs drop on the policy's behalf,
//! kept in step with the policy the workers run — the deny list in each
//! port's LPM trie ([`kernel_deny`]) and the sources the workers' policies
//! ask to block in each port's block map ([`KernelDrops`]).
//!
//! Userspace stays the authority: every packet the kernel lets through is
//! judged by the whole policy in a worker, so an entry the kernel could not
//! take costs CPU, not correctness.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv6Net};
use rstwall_engine::policy::{Mode, PolicyConfig};

use crate::error::BpfError;
use crate::port::PortProgram;

/// A port program's deny and block maps, as [`KernelDrops`] uses them (the
/// tests put a fake in its place).
pub trait DropMaps {
    fn port(&self) -> &str;
    fn deny_insert(&self, net: IpNet) -> Result<(), BpfError>;
    /// Removing a network that is not there is not an error.
    fn deny_remove(&self, net: IpNet) -> Result<(), BpfError>;
    fn block_insert(&self, src: IpAddr, ttl: Duration) -> Result<(), BpfError>;
    /// Removing an address that is not there is not an error.
    fn block_remove(&self, src: IpAddr) -> Result<(), BpfError>;
}

impl DropMaps for PortProgram {
    fn port(&self) -> &str {
        self.ifname()
    }
    fn deny_insert(&self, net: IpNet) -> Result<(), BpfError> {
        PortProgram::deny_insert(self, net)
    }
    fn deny_remove(&self, net: IpNet) -> Result<(), BpfError> {
        PortProgram::deny_remove(self, net)
    }
    fn block_insert(&self, src: IpAddr, ttl: Duration) -> Result<(), BpfError> {
        PortProgram::block_insert(self, src, ttl)
    }
    fn block_remove(&self, src: IpAddr) -> Result<(), BpfError> {
        PortProgram::block_remove(self, src)
    }
}

/// A deny-map change that failed on one port.
#[derive(Debug, thiserror::Error)]
#[error("port {port}: {what}: {error}")]
pub struct PortMapError {
    pub port: String,
    /// What was being done ("inserting 10.0.0.0/8 into the deny map").
    pub what: String,
    pub error: BpfError,
}

/// `::ffff:0:0/96`: where the XDP program keeps IPv4 (see [`kernel_deny`]).
const V4_MAPPED: u128 = 0xffff_0000_0000;
const V4_MAPPED_LEN: u8 = 96;

/// The deny-trie entries that make the XDP program drop exactly what the
/// policy's deny list denies — none outside enforce mode, where denied
/// packets must reach the workers to be reported as "would drop".
///
/// The program keeps both families in one trie, IPv4 as v4-mapped IPv6
/// (`::ffff:a.b.c.d`), while the policy keeps them apart (an IPv4-mapped
/// source matches only IPv6 entries). So an IPv6 network inside
/// `::ffff:0:0/96` stays in userspace only (in the kernel it would deny
/// IPv4 sources), and one that contains it (`::/0`, say) goes in as the
/// prefixes that cover it except that /96. The one difference left: an
/// IPv6 packet whose source is literally v4-mapped (never valid on the
/// wire) is dropped by an IPv4 entry in the kernel.
pub fn kernel_deny(cfg: &PolicyConfig) -> BTreeSet<IpNet> {
    let mut out = BTreeSet::new();
    if cfg.mode() != Mode::Enforce {
        return out;
    }
    let mapped = v6net(V4_MAPPED, V4_MAPPED_LEN);
    for &net in cfg.deny() {
        match net {
            IpNet::V6(n) if mapped.contains(&n) => {}
            IpNet::V6(n) if n.contains(&mapped) => {
                // Walk down from `n` to the /96: at each level, the half
                // that does not lead to it is denied whole.
                for len in n.prefix_len() + 1..=V4_MAPPED_LEN {
                    let bit = 1u128 << (128 - u32::from(len));
                    out.insert(IpNet::V6(v6net(V4_MAPPED ^ bit, len)));
                }
            }
            net => {
                out.insert(net);
            }
        }
    }
    out
}

/// `addr/len` with the host bits cleared.
fn v6net(addr: u128, len: u8) -> Ipv6Net {
    Ipv6Net::new(Ipv6Addr::from(addr), len)
        .expect("a prefix length of at most 128")
        .trunc()
}

/// What the last [`KernelDrops::apply`] changed in the deny tries.
#[derive(Debug, Default)]
pub struct DenyChange {
    pub inserted: usize,
    pub removed: usize,
    pub errors: Vec<PortMapError>,
}

/// Counts for the stats line and JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelDropStats {
    /// Deny-trie entries per port (the most any port holds).
    pub deny_entries: usize,
    /// Sources put in the block maps since start-up.
    pub sources_blocked: u64,
    /// Sources in the block maps now.
    pub blocked_now: usize,
    /// Block requests that failed on some port.
    pub block_errors: u64,
}

/// What the XDP programs drop on the policy's behalf, kept in step with it:
///
/// * the deny list, in enforce mode, in every port's LPM trie
///   ([`kernel_deny`]);
/// * the sources the workers' policies ask to block
///   (`ratelimit.block_seconds`, enforce mode), in every port's block map
///   for `block_seconds`.
///
/// The maps start empty (each start loads fresh programs), and what is in
/// them is tracked per port so that a change of policy touches only the
/// difference. Nothing is undone at a stop: the maps go with the programs
/// when they are detached, and stay with them (the policy still enforced
/// in the kernel) when they are left attached.
pub struct KernelDrops {
    /// Deny-trie entries known to be in each port's trie.
    deny: Vec<BTreeSet<IpNet>>,
    /// Zero: blocking is off (monitor mode, or `block_seconds = 0`).
    block_ttl: Duration,
    /// Sources in the block maps, and when their block runs out. Removed
    /// then: the program deletes an expired entry only when that source
    /// sends again, and a map full of the dead refuses the living.
    blocked: HashMap<IpAddr, Instant>,
    next_expiry: Instant,
    sources_blocked: u64,
    block_errors: u64,
    log: LogBudget,
}

impl KernelDrops {
    pub fn new(ports: usize) -> KernelDrops {
        KernelDrops {
            deny: vec![BTreeSet::new(); ports],
            block_ttl: Duration::ZERO,
            blocked: HashMap::new(),
            next_expiry: Instant::now(),
            sources_blocked: 0,
            block_errors: 0,
            log: LogBudget::new(BLOCK_LOGS_PER_SECOND),
        }
    }

    /// Bring the maps in line with `cfg`: insert the deny entries it adds,
    /// remove those it drops (all of them when it is not enforcing), and
    /// lift every block if it no longer blocks. An entry that fails on a
    /// port is retried by the next call; userspace denies what the kernel
    /// misses, so a failure costs CPU, not correctness.
    pub fn apply(&mut self, cfg: &PolicyConfig, ports: &[impl DropMaps]) -> DenyChange {
        let wanted = kernel_deny(cfg);
        let mut change = DenyChange::default();
        self.deny.resize(ports.len(), BTreeSet::new());
        for (port, have) in ports.iter().zip(&mut self.deny) {
            // Removals first: they make room in a full trie.
            let gone: Vec<IpNet> = have.difference(&wanted).copied().collect();
            for net in gone {
                match port.deny_remove(net) {
                    Ok(()) => {
                        have.remove(&net);
                        change.removed += 1;
                    }
                    Err(error) => change.errors.push(PortMapError {
                        port: port.port().to_string(),
                        what: format!("removing {net} from the deny map"),
                        error,
                    }),
                }
            }
            let new: Vec<IpNet> = wanted.difference(have).copied().collect();
            for net in new {
                match port.deny_insert(net) {
                    Ok(()) => {
                        have.insert(net);
                        change.inserted += 1;
                    }
                    Err(error) => change.errors.push(PortMapError {
                        port: port.port().to_string(),
                        what: format!("inserting {net} into the deny map"),
                        error,
                    }),
                }
            }
        }

        let seconds = cfg.ratelimit().block_seconds;
        self.block_ttl = if cfg.mode() == Mode::Enforce {
            Duration::from_secs(seconds)
        } else {
            Duration::ZERO
        };
        if self.block_ttl.is_zero() {
            self.unblock(ports, |_| true);
        }
        change
    }

    /// Block `src` on every port for the configured time, unless blocking is
    /// off or it is blocked already (several workers may ask for one source,
    /// and a request can cross its own block). True if newly blocked.
    pub fn block(&mut self, src: IpAddr, now: Instant, ports: &[impl DropMaps]) -> bool {
        if self.block_ttl.is_zero() || self.blocked.get(&src).is_some_and(|&t| t > now) {
            return false;
        }
        let mut ok = 0;
        for port in ports {
            match port.block_insert(src, self.block_ttl) {
                Ok(()) => ok += 1,
                Err(e) => {
                    self.block_errors += 1;
                    if self.log.take(now) {
                        tracing::warn!("port {}: {e}", port.port());
                    }
                }
            }
        }
        if ok == 0 {
            return false;
        }
        self.blocked.insert(src, now + self.block_ttl);
        self.sources_blocked += 1;
        if self.log.take(now) {
            tracing::info!(
                "blocked {src} for {} s in XDP: RSTs over its rate limit \
                 (ratelimit.block_seconds)",
                self.block_ttl.as_secs()
            );
        }
        true
    }

    /// Once a second: remove the blocks that have run out from the maps.
    pub fn expire(&mut self, now: Instant, ports: &[impl DropMaps]) {
        if let Some(n) = self.log.refused(now) {
            tracing::info!(
                "{n} more block messages not logged (at most {BLOCK_LOGS_PER_SECOND} a second)"
            );
        }
        if now < self.next_expiry {
            return;
        }
        self.next_expiry = now + Duration::from_secs(1);
        self.unblock(ports, |until| until <= now);
    }

    /// Remove the blocks `which` selects (by expiry) from every port. One
    /// that cannot be removed everywhere is kept, to be retried.
    fn unblock(&mut self, ports: &[impl DropMaps], which: impl Fn(Instant) -> bool) {
        let log = &mut self.log;
        self.blocked.retain(|&src, &mut until| {
            if !which(until) {
                return true;
            }
            let mut kept = false;
            for port in ports {
                if let Err(e) = port.block_remove(src) {
                    kept = true;
                    if log.take(Instant::now()) {
                        tracing::warn!("port {}: {e}", port.port());
                    }
                }
            }
            if !kept {
                tracing::debug!("unblocked {src}");
            }
            kept
        });
    }

    pub fn stats(&self) -> KernelDropStats {
        KernelDropStats {
            deny_entries: self.deny.iter().map(BTreeSet::len).max().unwrap_or(0),
            sources_blocked: self.sources_blocked,
            blocked_now: self.blocked.len(),
            block_errors: self.block_errors,
        }
    }
}

/// Block messages logged per second at most: each newly blocked source gets
/// its line, but a flood of them must not flood the log.
const BLOCK_LOGS_PER_SECOND: u32 = 20;

/// A per-second allowance of log lines; what it refused is counted until
/// reported.
#[derive(Debug)]
struct LogBudget {
    per_second: u32,
    left: u32,
    second_ends: Option<Instant>,
    refused: u64,
}

impl LogBudget {
    fn new(per_second: u32) -> LogBudget {
        LogBudget {
            per_second,
            left: per_second,
            second_ends: None,
            refused: 0,
        }
    }

    /// Whether one more line may be logged now.
    fn take(&mut self, now: Instant) -> bool {
        self.new_second_if_due(now);
        if self.left == 0 {
            self.refused += 1;
            return false;
        }
        self.left -= 1;
        true
    }

    /// The lines refused so far, once the second that refused the last of
    /// them is over (so the report comes after the burst, not inside it).
    fn refused(&mut self, now: Instant) -> Option<u64> {
        if self.refused == 0 || !self.new_second_if_due(now) {
            return None;
        }
        Some(std::mem::take(&mut self.refused))
    }

    fn new_second_if_due(&mut self, now: Instant) -> bool {
        if self.second_ends.is_some_and(|end| now < end) {
            return false;
        }
        self.second_ends = Some(now + Duration::from_secs(1));
        self.left = self.per_second;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::{Cell, RefCell};

    use crate::error::Errno;

    /// A port's maps, in memory; `fail` makes every call fail.
    #[derive(Default)]
    struct FakePort {
        deny: RefCell<BTreeSet<IpNet>>,
        blocks: RefCell<HashMap<IpAddr, Duration>>,
        fail: Cell<bool>,
    }

    impl FakePort {
        fn check(&self) -> Result<(), BpfError> {
            if self.fail.get() {
                Err(BpfError::Map {
                    map: "fake",
                    op: "updating".into(),
                    errno: Errno(libc::ENOSPC),
                })
            } else {
                Ok(())
            }
        }
        fn deny(&self) -> Vec<String> {
            self.deny.borrow().iter().map(|n| n.to_string()).collect()
        }
        fn blocked(&self) -> Vec<IpAddr> {
            let mut v: Vec<IpAddr> = self.blocks.borrow().keys().copied().collect();
            v.sort();
            v
        }
    }

    impl DropMaps for FakePort {
        fn port(&self) -> &str {
            "fake"
        }
        fn deny_insert(&self, net: IpNet) -> Result<(), BpfError> {
            self.check()?;
            self.deny.borrow_mut().insert(net);
            Ok(())
        }
        fn deny_remove(&self, net: IpNet) -> Result<(), BpfError> {
            self.check()?;
            self.deny.borrow_mut().remove(&net);
            Ok(())
        }
        fn block_insert(&self, src: IpAddr, ttl: Duration) -> Result<(), BpfError> {
            self.check()?;
            self.blocks.borrow_mut().insert(src, ttl);
            Ok(())
        }
        fn block_remove(&self, src: IpAddr) -> Result<(), BpfError> {
            self.check()?;
            self.blocks.borrow_mut().remove(&src);
            Ok(())
        }
    }

    fn policy(lines: &[&str]) -> PolicyConfig {
        let mut c = PolicyConfig::default();
        for l in lines {
            c.set_assignment(l).unwrap();
        }
        c
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn kernel_deny_is_the_deny_list_in_enforce_mode_only() {
        let lines = ["lists.deny=198.19.0.0/16,2001:db8::/32,10.0.0.1"];
        assert!(kernel_deny(&policy(&lines)).is_empty(), "monitor mode");
        let k = kernel_deny(&policy(&[lines[0], "mode=enforce"]));
        let k: Vec<String> = k.iter().map(|n| n.to_string()).collect();
        assert_eq!(k, ["10.0.0.1/32", "198.19.0.0/16", "2001:db8::/32"]);
    }

    #[test]
    fn kernel_deny_keeps_ipv6_entries_off_ipv4() {
        // The kernel would match IPv4 sources against these: v4-mapped
        // networks stay in userspace, and ::/0 goes in without its /96.
        let c = policy(&["mode=enforce", "lists.deny=::ffff:198.19.0.0/112,::/0"]);
        let k = kernel_deny(&c);
        assert_eq!(k.len(), 96);
        let mapped = v6net(V4_MAPPED, V4_MAPPED_LEN);
        let covered = |a: &str| {
            let a: Ipv6Addr = a.parse().unwrap();
            k.iter().any(|n| n.contains(&IpAddr::V6(a)))
        };
        for a in [
            "::",
            "::1",
            "2001:db8::1",
            "ffff::",
            "::fffe:ffff:ffff",
            "::1:0:0:0",
        ] {
            assert!(covered(a), "{a} not denied");
        }
        for a in [
            "::ffff:0.0.0.0",
            "::ffff:198.19.0.1",
            "::ffff:255.255.255.255",
        ] {
            assert!(!covered(a), "{a} denied: it would deny IPv4");
        }
        for n in &k {
            let IpNet::V6(n) = n else { panic!("{n}") };
            assert!(!n.contains(&mapped) && !mapped.contains(n), "{n}");
        }
        // A prefix that reaches into the /96 from above, and one beside it.
        let k = kernel_deny(&policy(&[
            "mode=enforce",
            "lists.deny=::ff00:0:0/88,::1:0:0:0/80",
        ]));
        let k: Vec<String> = k.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            k,
            [
                "::ff00:0:0/89",
                "::ff80:0:0/90",
                "::ffc0:0:0/91",
                "::ffe0:0:0/92",
                "::fff0:0:0/93",
                "::fff8:0:0/94",
                "::fffc:0:0/95",
                "::fffe:0:0/96",
                "::1:0:0:0/80",
            ]
        );
    }

    #[test]
    fn kernel_drops_follow_the_policy() {
        let ports = [FakePort::default(), FakePort::default()];
        let mut k = KernelDrops::new(ports.len());
        let enforce = policy(&["mode=enforce", "lists.deny=198.19.0.0/16,10.0.0.0/8"]);
        let change = k.apply(&enforce, &ports);
        assert_eq!((change.inserted, change.removed), (4, 0));
        assert!(change.errors.is_empty());
        for p in &ports {
            assert_eq!(p.deny(), ["10.0.0.0/8", "198.19.0.0/16"]);
        }
        assert_eq!(k.stats().deny_entries, 2);

        // A new policy: one entry gone, one new, one kept untouched.
        let mut next = enforce.clone();
        next.set("lists.deny", "198.19.0.0/16,192.0.2.0/24")
            .unwrap();
        let change = k.apply(&next, &ports);
        assert_eq!((change.inserted, change.removed), (2, 2));
        for p in &ports {
            assert_eq!(p.deny(), ["192.0.2.0/24", "198.19.0.0/16"]);
        }
        // The same policy again changes nothing.
        let change = k.apply(&next, &ports);
        assert_eq!((change.inserted, change.removed), (0, 0));

        // Enforce to monitor empties the maps; back to enforce fills them.
        next.set("mode", "monitor").unwrap();
        let change = k.apply(&next, &ports);
        assert_eq!((change.inserted, change.removed), (0, 4));
        assert!(ports.iter().all(|p| p.deny().is_empty()));
        assert_eq!(k.stats().deny_entries, 0);

        // A port that fails keeps what it could not do for the next call.
        ports[1].fail.set(true);
        let change = k.apply(&enforce, &ports);
        assert_eq!(change.inserted, 2);
        assert_eq!(change.errors.len(), 2);
        assert!(
            format!("{:#}", change.errors[0]).contains("port fake: inserting 10.0.0.0/8"),
            "{:#}",
            change.errors[0]
        );
        assert!(ports[1].deny().is_empty());
        ports[1].fail.set(false);
        let change = k.apply(&enforce, &ports);
        assert_eq!((change.inserted, change.removed), (2, 0));
        assert_eq!(ports[1].deny(), ["10.0.0.0/8", "198.19.0.0/16"]);
    }

    #[test]
    fn kernel_blocks_once_for_block_seconds_then_expire() {
        let ports = [FakePort::default(), FakePort::default()];
        let mut k = KernelDrops::new(ports.len());
        let t0 = Instant::now();
        let (a, b) = (ip("198.18.7.7"), ip("2001:db8::7"));

        // Off: monitor mode, or enforce without block_seconds.
        k.apply(&policy(&["ratelimit.block_seconds=30"]), &ports);
        assert!(!k.block(a, t0, &ports));
        k.apply(&policy(&["mode=enforce"]), &ports);
        assert!(!k.block(a, t0, &ports));
        assert!(ports[0].blocked().is_empty());

        let on = policy(&["mode=enforce", "ratelimit.block_seconds=30"]);
        k.apply(&on, &ports);
        assert!(k.block(a, t0, &ports));
        assert!(k.block(b, t0, &ports));
        // Another worker asking for the same source changes nothing.
        assert!(!k.block(a, t0 + Duration::from_secs(1), &ports));
        for p in &ports {
            assert_eq!(p.blocked(), [a, b]);
            assert_eq!(p.blocks.borrow()[&a], Duration::from_secs(30));
        }
        assert_eq!(
            k.stats(),
            KernelDropStats {
                deny_entries: 0,
                sources_blocked: 2,
                blocked_now: 2,
                block_errors: 0
            }
        );

        // Run out: removed from every port, and blockable again.
        k.expire(t0 + Duration::from_secs(29), &ports);
        assert_eq!(ports[0].blocked(), [a, b]);
        k.expire(t0 + Duration::from_secs(30), &ports);
        assert!(ports.iter().all(|p| p.blocked().is_empty()));
        assert_eq!(k.stats().blocked_now, 0);
        assert!(k.block(a, t0 + Duration::from_secs(31), &ports));
        assert_eq!(k.stats().sources_blocked, 3);

        // A port that fails is counted; a source blocked on none is not.
        ports[0].fail.set(true);
        assert!(k.block(b, t0 + Duration::from_secs(31), &ports));
        ports[1].fail.set(true);
        assert!(!k.block(ip("198.18.7.8"), t0 + Duration::from_secs(31), &ports));
        assert_eq!(k.stats().block_errors, 3);
        ports[0].fail.set(false);
        ports[1].fail.set(false);

        // Turning enforce off lifts every block.
        let mut off = on.clone();
        off.set("mode", "monitor").unwrap();
        k.apply(&off, &ports);
        assert!(ports.iter().all(|p| p.blocked().is_empty()));
        assert_eq!(k.stats().blocked_now, 0);
        assert!(!k.block(a, t0 + Duration::from_secs(32), &ports));
    }

    #[test]
    fn log_budget_refuses_beyond_its_rate_and_reports_after() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(3);
        assert_eq!((0..5).filter(|_| b.take(t0)).count(), 3);
        assert_eq!(b.refused(t0 + Duration::from_millis(500)), None);
        assert_eq!(b.refused(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(b.refused(t0 + Duration::from_secs(5)), None);
        assert!(b.take(t0 + Duration::from_secs(5)));
    }
}
