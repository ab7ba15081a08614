//! Policy and verdicts: what happens to every TCP packet.
//!
//! Two forms, in the usual raw → validated → compiled order:
//!
//! * [`PolicyConfig`] — the operator's policy. Read from a file's TOML text
//!   ([`PolicyConfig::from_toml_str`]; the engine does no I/O, so the
//!   caller reads the file and names it in errors), changed one key
//!   at a time ([`PolicyConfig::set`], for `rstwall policy set KEY=VALUE`) and
//!   written back ([`PolicyConfig::to_toml_string`]). Both input paths run the
//!   same checks and produce the same [`PolicyError`] text, which always names
//!   the key (and, for a file, the line and column).
//! * [`Policy`] — the compiled, per-worker form with CIDR matchers and token
//!   buckets. [`Policy::judge`] gives each packet a [`Decision`]; it never
//!   allocates and never panics.
//!
//! # The policy file
//!
//! ```toml
//! mode = "monitor"            # or "enforce"
//!
//! [actions]                   # per RST class: "pass" | "drop" | "ratelimit"
//! in_window = "drop"
//! no_flow = "ratelimit"
//!
//! [ratelimit]
//! per_source_rate = 50        # RSTs per second per source (IPv4 /32, IPv6 /64)
//! per_source_burst = 100
//! global_rate = 10000         # one global RST budget, RSTs per second
//! global_burst = 20000
//! source_table_size = 65536   # bounded table of per-source buckets (oldest evicted)
//! block_seconds = 0           # > 0: block a source over its rate in XDP this long
//!
//! [lists]
//! allow = ["198.18.0.0/24"]   # always passed (RST policy skipped)
//! deny  = ["198.19.0.0/16"]   # every TCP packet dropped in enforce mode
//! ```
//!
//! Every key is optional; a missing key keeps its default. Unknown keys and
//! unknown class names are errors, not warnings: a misspelt key silently
//! ignored is a policy the operator did not write.
//!
//! List entries are CIDRs, IPv4 or IPv6. A bare address means a host (`/32`
//! or `/128`). A CIDR with host bits set (`10.1.2.3/8`) is accepted and
//! normalized to its network (`10.0.0.0/8`) — the intent is unambiguous, and
//! [`PolicyConfig::to_toml_string`] writes the normalized form back.
//!
//! # Defaults, and why they are safe
//!
//! The governing rule: **enforce never drops a RST the receiving kernel would
//! have accepted unless the policy says so explicitly.**
//!
//! * `mode = "monitor"`: nothing is dropped until an operator has looked at
//!   what enforce *would* drop ([`Decision::would_drop`]).
//! * `refused`, `abort`, `teardown` → `pass`. The kernel accepts these: they
//!   are the real thing, and dropping them would leave connections hanging.
//! * `in_window`, `out_of_window`, `syn_sent_bad_ack` → `drop`. The kernel
//!   never acts on these (it sends a challenge ACK or ignores them), so
//!   dropping them cannot break a connection — it only saves the receiver a
//!   challenge ACK and hides the probe from it.
//! * `no_flow`, `invalid_flags` → `pass`. The tracker may lack state the host
//!   has (table eviction, a restart of rstwall, asymmetric routing), and Linux
//!   processes RST+SYN as a RST, so dropping these could drop a RST the kernel
//!   would have accepted. An operator may choose `drop` or `ratelimit`
//!   explicitly.
//! * Rate limits (used only by classes set to `ratelimit`): 50/s per source
//!   with a burst of 100, 10 000/s globally with a burst of 20 000, 65 536
//!   tracked sources. Lists are empty.
//! * `block_seconds = 0`: a source over its rate is never blocked, only
//!   rate limited (see [Blocking sources](#blocking-sources)).
//!
//! The class defaults are derived from [`RstClass::kernel_accepts`](crate::RstClass::kernel_accepts): only a
//! class the kernel is known to ignore defaults to `drop`.
//!
//! # Verdicts
//!
//! [`Policy::judge`] decides in this order, first match wins:
//!
//! 1. deny list — any TCP packet, RST or not → [`Reason::DenyList`];
//! 2. allow list → [`Reason::AllowList`] (the RST policy is skipped);
//! 3. not a RST → [`Reason::NotRst`];
//! 4. the class action: `pass` → [`Reason::ClassPass`], `drop` →
//!    [`Reason::ClassDrop`], `ratelimit` → the source's bucket, then the
//!    global budget ([`Reason::SourceRate`], [`Reason::GlobalRate`] or
//!    [`Reason::WithinRate`]).
//!
//! The deny list wins over the allow list when both match. In monitor mode
//! the verdict is always [`Verdict::Pass`] while the reason still says what
//! enforce would have done; the buckets run in monitor mode too, so the
//! preview is faithful.
//!
//! Lists match the address family as seen on the wire: an IPv4-mapped IPv6
//! source (`::ffff:198.19.0.1`) does not match `198.19.0.0/16`. Such packets
//! do not occur in normal traffic; list `::ffff:198.19.0.0/112` to cover them.
//!
//! # Rate limiting
//!
//! Sources are aggregated to an IPv4 /32 or an IPv6 /64 (one host's
//! privacy addresses share one bucket). A RST is let through only if both its
//! source's bucket and the global budget hold a token, and then it takes one
//! from each; a RST refused by either takes nothing, so a source is not
//! charged for RSTs the global budget dropped. The per-source table is
//! bounded: when full, the least recently used source is evicted and comes
//! back with a full bucket, so a spoofed-source flood is bounded by the
//! global budget, not the per-source one.
//!
//! Buckets are per worker. [`Policy::new`] gives a worker the whole global
//! budget; with several workers use [`Policy::for_worker`], which gives each
//! worker an equal share. One source's flows may spread over several
//! workers, so its effective per-source limit is up to `workers ×` the
//! configured one.
//!
//! # Blocking sources
//!
//! With `ratelimit.block_seconds` above 0 (at most 86 400, one day), a RST
//! dropped for [`Reason::SourceRate`] also asks for its source address to
//! be blocked for that long: the daemon puts it in the XDP program's block
//! map, and every IP packet from it then dies in the kernel before it costs
//! userspace anything. It is **off by default on purpose**: the source of a
//! RST is trivially spoofed, and a block drops *everything* from the
//! address, not just its RSTs. An attacker who sends a few hundred RSTs with
//! a real server's address as their source gets that server cut off — the
//! rate limit turned into a denial of service against an innocent host. Only
//! an operator who knows the topology (spoofed sources cannot reach this
//! port, say, or the addresses that can are on the allow list, which is
//! checked first) should turn it on.
//!
//! The request is recorded at most once per block period per tracked source
//! (the time is kept in the source's bucket entry), into a small fixed ring
//! that [`Policy::drain_block_requests`] empties — the worker drains it
//! every batch. A full ring loses the request (counted in
//! [`BlockStats::lost`]); the source's next dropped RST asks again. In
//! monitor mode nothing is requested: the request is counted as
//! [`BlockStats::would_block`] instead, once per period per source, so the
//! preview is faithful.
//!
//! The key is the address as seen, not the bucket's aggregate: the kernel
//! blocks single addresses, so for IPv6 it blocks the /128 that went over
//! the limit of its /64 bucket. Other addresses of that /64 stay limited by
//! the shared bucket in userspace (blocking the whole /64 would need the
//! deny trie, whose entries do not expire and belong to the operator's
//! list). Sources on the allow list are never rate limited, so never
//! blocked.
//!
//! # Where things are
//!
//! * [`Mode`], [`Action`], [`Verdict`], [`Reason`], [`Decision`] — `verdict`.
//! * [`PolicyConfig`] and the value checks shared by the file and `set` —
//!   `config`; reading the TOML file with error locations — `file`;
//!   [`PolicyError`] and [`Location`] — `error`.
//! * [`Policy`], the compiled form, and its judgment — `judge`; token
//!   buckets and the per-source table's keys — `ratelimit`; block
//!   requests — `blocks`; CIDR sets — `cidr`.

mod blocks;
mod cidr;
mod config;
mod error;
mod file;
mod judge;
mod ratelimit;
mod verdict;

pub use blocks::BlockStats;
pub use cidr::CidrSet;
pub use config::{PolicyConfig, RateLimitConfig};
pub use error::{Location, PolicyError};
pub use file::describe;
pub use judge::Policy;
pub use ratelimit::{Rate, TokenBucket};
pub use verdict::{Action, Decision, Mode, Reason, Verdict};

/// What the tests of every part of the policy share.
#[cfg(test)]
mod testing {
    use std::net::IpAddr;

    use ipnet::IpNet;

    use super::*;

    pub const SEC: u64 = super::ratelimit::NANOS_PER_SEC;

    pub fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    pub fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    pub fn cfg(src: &str) -> PolicyConfig {
        PolicyConfig::from_toml_str(src).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn err(src: &str) -> PolicyError {
        match PolicyConfig::from_toml_str(src) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e,
        }
    }

    pub const EXAMPLE: &str = r#"mode = "monitor"            # or "enforce"
[actions]                   # per RST class: "pass" | "drop" | "ratelimit"
in_window = "drop"
no_flow = "ratelimit"
[ratelimit]
per_source_rate = 50        # RSTs per second per source (IPv4 /32, IPv6 /64)
per_source_burst = 100
global_rate = 10000         # one global RST budget, RSTs per second
global_burst = 20000
source_table_size = 65536   # bounded table of per-source buckets (oldest evicted)
[lists]
allow = ["198.18.0.0/24"]   # CIDRs (IPv4 and IPv6) always passed (RST policy skipped)
deny  = ["198.19.0.0/16"]   # CIDRs whose packets are dropped in enforce mode
"#;

    pub fn policy(lines: &[&str]) -> Policy {
        let mut c = PolicyConfig::default();
        for l in lines {
            c.set_assignment(l).unwrap();
        }
        Policy::new(&c)
    }
}
