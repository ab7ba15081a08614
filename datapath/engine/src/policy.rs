//! Policy and verdicts: what happens to every TCP packet.
//!
//! Two forms, in the usual raw → validated → compiled order:
//!
//! * [`PolicyConfig`] — the operator's policy. Read from TOML
//!   ([`PolicyConfig::from_toml_str`], [`PolicyConfig::load`]), changed one key
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
//! The class defaults are derived from [`RstClass::kernel_accepts`]: only a
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

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use std::ops::{BitAnd, Range};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use toml::{Spanned, Value};

use crate::names::alternatives;
use crate::table::{BoundedTable, Insert};
use crate::RstClass;

const NANOS_PER_SEC: u64 = 1_000_000_000;

// ---------------------------------------------------------------------------
// Modes, actions, verdicts, reasons
// ---------------------------------------------------------------------------

crate::closed_enum! {
    /// Whether verdicts are applied or only reported.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub enum Mode: "mode" {
        /// Every packet passes; decisions say what enforce would have done.
        #[default]
        Monitor = "monitor",
        /// Drop decisions drop.
        Enforce = "enforce",
    }
}

crate::closed_enum! {
    /// What to do with a RST of a given class.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Action: "action" {
        Pass = "pass",
        Drop = "drop",
        /// Pass while the source's bucket and the global budget allow.
        RateLimit = "ratelimit",
    }
}

impl Action {
    /// The default action for `class`: drop only what the kernel is known to
    /// ignore (see the module docs).
    pub const fn default_for(class: RstClass) -> Action {
        match class.kernel_accepts() {
            Some(false) => Action::Drop,
            Some(true) | None => Action::Pass,
        }
    }
}

crate::closed_enum! {
    /// What happens to the packet.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub enum Verdict: "verdict" {
        Pass = "pass",
        Drop = "drop",
    }
}

crate::closed_enum! {
    /// Why a packet got its verdict. In monitor mode, what enforce would do.
    /// The names are reports', JSON's and metrics labels' (`reason`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[repr(u8)]
    pub enum Reason: "reason" {
        /// Not a RST, and the source is on neither list.
        NotRst = "not_rst",
        /// Source on the allow list.
        AllowList = "allow_list",
        /// Source on the deny list (drops any TCP packet).
        DenyList = "deny_list",
        /// The class action is `pass`.
        ClassPass = "class_pass",
        /// The class action is `drop`.
        ClassDrop = "class_drop",
        /// Class action `ratelimit`, and both buckets had a token.
        WithinRate = "within_rate",
        /// Class action `ratelimit`, and the source's bucket was empty.
        SourceRate = "source_rate",
        /// Class action `ratelimit`, and the global budget was empty.
        GlobalRate = "global_rate",
    }
}

impl Reason {
    /// Whether enforce mode drops a packet for this reason.
    #[inline]
    pub const fn drops(self) -> bool {
        matches!(
            self,
            Reason::DenyList | Reason::ClassDrop | Reason::SourceRate | Reason::GlobalRate
        )
    }
}

/// The policy's answer for one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
}

impl Decision {
    /// Whether enforce mode would drop this packet (in enforce mode: whether
    /// it was dropped). Lets monitor-mode reports show "would drop".
    #[inline]
    pub const fn would_drop(&self) -> bool {
        self.reason.drops()
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A line and column (both from 1; the column counts characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `src` (clamped to its end).
    pub fn of(src: &str, offset: usize) -> Location {
        let bytes = src.as_bytes();
        let before = &bytes[..offset.min(bytes.len())];
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        Location {
            line: before.iter().filter(|&&b| b == b'\n').count() + 1,
            // Count characters, not bytes: skip UTF-8 continuation bytes.
            column: before[line_start..]
                .iter()
                .filter(|&&b| b & 0xC0 != 0x80)
                .count()
                + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why a policy was rejected. A bad value's message starts with its key
/// (`lists.allow[2]: ...`); from a file, it is wrapped in [`PolicyError::At`]
/// (`line 7, column 11: ...`), and by [`PolicyConfig::load`] in the path.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "mode: unknown mode {value:?} (expected {})",
        alternatives(&Mode::NAMES)
    )]
    UnknownMode { value: String },
    #[error(
        "{key}: unknown action {value:?} (expected {})",
        alternatives(&Action::NAMES)
    )]
    UnknownAction { key: String, value: String },
    #[error(
        "actions.{name}: unknown RST class (expected one of: {})",
        RstClass::NAMES.join(", ")
    )]
    UnknownClass { name: String },
    #[error("{key}: {value} is out of range ({min}..={max})")]
    OutOfRange {
        key: String,
        value: i128,
        min: u64,
        max: u64,
    },
    #[error("{key}: {value:?} is not a CIDR")]
    NotCidr { key: String, value: String },
    #[error("{key}: expected {expected}, found {found}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("{key}: unknown key (expected {expected})")]
    UnknownKey { key: String, expected: String },
    #[error("{0:?}: expected KEY=VALUE")]
    NotAssignment(String),
    /// TOML syntax, a duplicate key, an unknown field or a section of the
    /// wrong type (toml's own message, which names the field).
    #[error("{message}")]
    Toml { message: String },
    /// Where in the file `error` was found.
    #[error("{at}: {error}")]
    At {
        at: Location,
        error: Box<PolicyError>,
    },
    #[error("{}: {error}", path.display())]
    File {
        path: PathBuf,
        error: Box<PolicyError>,
    },
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl PolicyError {
    /// Where in the file the error is, if it came from a file.
    pub fn location(&self) -> Option<Location> {
        match self {
            PolicyError::At { at, .. } => Some(*at),
            PolicyError::File { error, .. } => error.location(),
            _ => None,
        }
    }

    /// The error without its file and location.
    pub fn inner(&self) -> &PolicyError {
        match self {
            PolicyError::At { error, .. } | PolicyError::File { error, .. } => error.inner(),
            e => e,
        }
    }
}

const TOP_KEYS: &str = "mode, actions.<class>, ratelimit.<field>, lists.allow or lists.deny";

// ---------------------------------------------------------------------------
// Value checks shared by the file and `set`
// ---------------------------------------------------------------------------

fn parse_mode(s: &str) -> Result<Mode, PolicyError> {
    s.parse().map_err(|_| PolicyError::UnknownMode {
        value: s.to_string(),
    })
}

fn parse_class(name: &str) -> Result<RstClass, PolicyError> {
    name.parse().map_err(|_| PolicyError::UnknownClass {
        name: name.to_string(),
    })
}

fn parse_action(key: &str, s: &str) -> Result<Action, PolicyError> {
    s.parse().map_err(|_| PolicyError::UnknownAction {
        key: key.to_string(),
        value: s.to_string(),
    })
}

/// A CIDR or a bare host address, normalized to its network. Parsed with
/// std's address parser (which rejects octal-looking octets) and a strict
/// decimal prefix length.
fn parse_cidr(key: impl FnOnce() -> String, s: &str) -> Result<IpNet, PolicyError> {
    fn parse(t: &str) -> Option<IpNet> {
        match t.split_once('/') {
            None => t.parse::<IpAddr>().ok().map(IpNet::from),
            Some((addr, len)) => {
                if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let addr = addr.parse::<IpAddr>().ok()?;
                IpNet::new(addr, len.parse().ok()?).ok()
            }
        }
    }
    parse(s.trim())
        .map(|n| n.trunc())
        .ok_or_else(|| PolicyError::NotCidr {
            key: key(),
            value: s.to_string(),
        })
}

crate::closed_enum! {
    /// One of the `[ratelimit]` integers, by its key.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum RateField: "ratelimit key" {
        PerSourceRate = "per_source_rate",
        PerSourceBurst = "per_source_burst",
        GlobalRate = "global_rate",
        GlobalBurst = "global_burst",
        SourceTableSize = "source_table_size",
        BlockSeconds = "block_seconds",
    }
}

impl RateField {
    /// 0 means "off" only for `block_seconds`; a zero rate, burst or table
    /// size is a mistake.
    fn min(self) -> u64 {
        match self {
            RateField::BlockSeconds => 0,
            _ => 1,
        }
    }

    fn max(self) -> u64 {
        match self {
            RateField::PerSourceRate | RateField::GlobalRate => RateLimitConfig::MAX_RATE,
            RateField::PerSourceBurst | RateField::GlobalBurst => RateLimitConfig::MAX_BURST,
            RateField::SourceTableSize => RateLimitConfig::MAX_SOURCE_TABLE_SIZE,
            RateField::BlockSeconds => RateLimitConfig::MAX_BLOCK_SECONDS,
        }
    }

    fn slot(self, rl: &mut RateLimitConfig) -> &mut u64 {
        match self {
            RateField::PerSourceRate => &mut rl.per_source_rate,
            RateField::PerSourceBurst => &mut rl.per_source_burst,
            RateField::GlobalRate => &mut rl.global_rate,
            RateField::GlobalBurst => &mut rl.global_burst,
            RateField::SourceTableSize => &mut rl.source_table_size,
            RateField::BlockSeconds => &mut rl.block_seconds,
        }
    }

    fn check(self, value: i128) -> Result<u64, PolicyError> {
        match u64::try_from(value) {
            Ok(v) if (self.min()..=self.max()).contains(&v) => Ok(v),
            _ => Err(PolicyError::OutOfRange {
                key: format!("ratelimit.{}", self.as_str()),
                value,
                min: self.min(),
                max: self.max(),
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// The raw file form
// ---------------------------------------------------------------------------

// Values are kept as spanned `toml::Value`s and typed in `validate`, so a
// value of the wrong type is reported with its key and line, like any other
// bad value, instead of as serde's anonymous "invalid type".

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawPolicy {
    mode: Option<Spanned<Value>>,
    actions: BTreeMap<String, Spanned<Value>>,
    ratelimit: RawRateLimit,
    lists: RawLists,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRateLimit {
    per_source_rate: Option<Spanned<Value>>,
    per_source_burst: Option<Spanned<Value>>,
    global_rate: Option<Spanned<Value>>,
    global_burst: Option<Spanned<Value>>,
    source_table_size: Option<Spanned<Value>>,
    block_seconds: Option<Spanned<Value>>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawLists {
    allow: Option<Spanned<RawList>>,
    deny: Option<Spanned<RawList>>,
}

/// A list as written: its items with their own spans (so an error in a
/// multi-line array names the item's line), or what was there instead.
enum RawList {
    Items(Vec<Spanned<Value>>),
    NotArray(String),
}

impl<'de> Deserialize<'de> for RawList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of CIDR strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(RawList::Items(items))
            }
            fn visit_str<E>(self, v: &str) -> Result<RawList, E> {
                Ok(RawList::NotArray(format!("string {v:?}")))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RawList, E> {
                Ok(RawList::NotArray(format!("integer {v}")))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RawList, E> {
                Ok(RawList::NotArray(format!("float {v}")))
            }
            fn visit_bool<E>(self, v: bool) -> Result<RawList, E> {
                Ok(RawList::NotArray(format!("boolean {v}")))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawList, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(RawList::NotArray("a table".to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A TOML value as an error message names it ("string \"x\"", "an array").
pub fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("string {s:?}"),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(x) => format!("float {x}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

fn as_str(key: impl FnOnce() -> String, v: &Value) -> Result<&str, PolicyError> {
    v.as_str().ok_or_else(|| PolicyError::WrongType {
        key: key(),
        expected: "a string",
        found: describe(v),
    })
}

/// An error located at byte `span.start` of the file.
type Located = (Range<usize>, PolicyError);

fn at<T>(span: Range<usize>, r: Result<T, PolicyError>) -> Result<T, Located> {
    r.map_err(|e| (span, e))
}

impl RawPolicy {
    fn validate(self) -> Result<PolicyConfig, Located> {
        let mut cfg = PolicyConfig::default();

        if let Some(v) = self.mode {
            let s = at(v.span(), as_str(|| "mode".into(), v.get_ref()))?;
            cfg.mode = at(v.span(), parse_mode(s))?;
        }

        // Report the first bad entry in file order, not in name order.
        let mut actions: Vec<_> = self.actions.iter().collect();
        actions.sort_by_key(|(_, v)| v.span().start);
        for (name, v) in actions {
            let class = at(v.span(), parse_class(name))?;
            let key = format!("actions.{name}");
            let s = at(v.span(), as_str(|| key.clone(), v.get_ref()))?;
            cfg.actions[class.index()] = at(v.span(), parse_action(&key, s))?;
        }

        let rl = self.ratelimit;
        let raw = [
            rl.per_source_rate,
            rl.per_source_burst,
            rl.global_rate,
            rl.global_burst,
            rl.source_table_size,
            rl.block_seconds,
        ];
        for (field, v) in RateField::ALL.into_iter().zip(raw) {
            let Some(v) = v else { continue };
            let n = match v.get_ref() {
                Value::Integer(n) => *n,
                other => {
                    return Err((
                        v.span(),
                        PolicyError::WrongType {
                            key: format!("ratelimit.{}", field.as_str()),
                            expected: "an integer",
                            found: describe(other),
                        },
                    ))
                }
            };
            *field.slot(&mut cfg.ratelimit) = at(v.span(), field.check(n.into()))?;
        }

        for (name, v, out) in [
            ("allow", self.lists.allow, &mut cfg.allow),
            ("deny", self.lists.deny, &mut cfg.deny),
        ] {
            let Some(v) = v else { continue };
            let items = match v.get_ref() {
                RawList::Items(items) => items,
                RawList::NotArray(found) => {
                    return Err((
                        v.span(),
                        PolicyError::WrongType {
                            key: format!("lists.{name}"),
                            expected: "an array of CIDR strings",
                            found: found.clone(),
                        },
                    ))
                }
            };
            let mut nets = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let key = || format!("lists.{name}[{i}]");
                let s = at(item.span(), as_str(key, item.get_ref()))?;
                nets.push(at(item.span(), parse_cidr(key, s))?);
            }
            *out = nets;
        }

        Ok(cfg)
    }
}

// ---------------------------------------------------------------------------
// The validated policy
// ---------------------------------------------------------------------------

/// The `[ratelimit]` section, validated: every value is in its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RateLimitConfig {
    /// RSTs per second per source (IPv4 /32, IPv6 /64).
    pub per_source_rate: u64,
    pub per_source_burst: u64,
    /// RSTs per second, all sources together.
    pub global_rate: u64,
    pub global_burst: u64,
    /// Per-source buckets kept; the least recently used is evicted.
    pub source_table_size: u64,
    /// How long a source over its rate is blocked in the kernel, in
    /// seconds; 0 (the default) never blocks. See the module docs for why.
    pub block_seconds: u64,
}

impl RateLimitConfig {
    /// Upper bound of the `*_rate` keys (RSTs per second).
    pub const MAX_RATE: u64 = Rate::MAX_PER_SEC;
    /// Upper bound of the `*_burst` keys.
    pub const MAX_BURST: u64 = Rate::MAX_BURST;
    /// Upper bound of `source_table_size` (about 1 GiB of buckets per worker).
    pub const MAX_SOURCE_TABLE_SIZE: u64 = 1 << 24;
    /// Upper bound of `block_seconds` (one day): a longer block of a
    /// possibly spoofed address is a decision for the deny list.
    pub const MAX_BLOCK_SECONDS: u64 = 86_400;
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_source_rate: 50,
            per_source_burst: 100,
            global_rate: 10_000,
            global_burst: 20_000,
            source_table_size: 65_536,
            block_seconds: 0,
        }
    }
}

/// The operator's policy, validated. Build it with [`Default`],
/// [`PolicyConfig::from_toml_str`], [`PolicyConfig::load`] or
/// [`PolicyConfig::set`]; every way in runs the same checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    mode: Mode,
    actions: [Action; RstClass::COUNT],
    ratelimit: RateLimitConfig,
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            mode: Mode::Monitor,
            actions: RstClass::ALL.map(Action::default_for),
            ratelimit: RateLimitConfig::default(),
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

impl PolicyConfig {
    /// Parse and validate a policy file's text. Errors carry the line and
    /// column ([`PolicyError::location`]).
    pub fn from_toml_str(src: &str) -> Result<Self, PolicyError> {
        let located = |span: Range<usize>, error: PolicyError| PolicyError::At {
            at: Location::of(src, span.start),
            error: Box::new(error),
        };
        let raw: RawPolicy = toml::from_str(src).map_err(|e| {
            let error = PolicyError::Toml {
                message: e.message().trim_end().replace('\n', "; "),
            };
            match e.span() {
                Some(span) => located(span, error),
                None => error,
            }
        })?;
        raw.validate().map_err(|(span, e)| located(span, e))
    }

    /// Read and validate a policy file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let src = std::fs::read_to_string(path).map_err(|error| PolicyError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_toml_str(&src).map_err(|e| PolicyError::File {
            path: path.to_path_buf(),
            error: Box::new(e),
        })
    }

    /// The policy as a TOML file that [`PolicyConfig::from_toml_str`] reads
    /// back to an equal policy. Every key is written, classes in index order.
    pub fn to_toml_string(&self) -> String {
        // Only strings, integers, arrays of strings and tables, values before
        // tables: there is nothing here the TOML serializer can refuse.
        toml::to_string(self).expect("a policy is always representable in TOML")
    }

    /// Set one key from its text form, as `rstwall policy set KEY=VALUE`
    /// does. Keys: `mode`, `actions.<class>`, `ratelimit.<field>`,
    /// `lists.allow`, `lists.deny` (comma-separated CIDRs; empty clears the
    /// list). Values are checked exactly as in a file; on error nothing
    /// changes.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), PolicyError> {
        match key {
            "mode" => self.mode = parse_mode(value)?,
            "lists.allow" => self.allow = parse_cidr_list(key, value)?,
            "lists.deny" => self.deny = parse_cidr_list(key, value)?,
            _ => {
                if let Some(name) = key.strip_prefix("actions.") {
                    let class = parse_class(name)?;
                    self.actions[class.index()] = parse_action(key, value)?;
                } else if let Some(name) = key.strip_prefix("ratelimit.") {
                    let field: RateField = name.parse().map_err(|_| PolicyError::UnknownKey {
                        key: key.to_string(),
                        expected: alternatives(&RateField::NAMES),
                    })?;
                    let n: i128 = value.parse().map_err(|_| PolicyError::WrongType {
                        key: key.to_string(),
                        expected: "an integer",
                        found: format!("{value:?}"),
                    })?;
                    *field.slot(&mut self.ratelimit) = field.check(n)?;
                } else {
                    return Err(PolicyError::UnknownKey {
                        key: key.to_string(),
                        expected: TOP_KEYS.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// [`PolicyConfig::set`] from one `KEY=VALUE` argument (spaces around
    /// the key and the value are ignored).
    pub fn set_assignment(&mut self, assignment: &str) -> Result<(), PolicyError> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| PolicyError::NotAssignment(assignment.to_string()))?;
        self.set(key.trim(), value.trim())
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    pub fn action(&self, class: RstClass) -> Action {
        self.actions[class.index()]
    }

    pub fn set_action(&mut self, class: RstClass, action: Action) {
        self.actions[class.index()] = action;
    }

    pub fn ratelimit(&self) -> &RateLimitConfig {
        &self.ratelimit
    }

    /// Allow-list networks, normalized, in the order written.
    pub fn allow(&self) -> &[IpNet] {
        &self.allow
    }

    /// This policy with `nets` added to its deny list (those not on it
    /// already, normalized): how the daemon folds operator blocks
    /// (`rstwall block add`) into the policy the workers and XDP run.
    pub fn with_extra_deny(&self, nets: impl IntoIterator<Item = IpNet>) -> PolicyConfig {
        let mut out = self.clone();
        for net in nets {
            let net = net.trunc();
            if !out.deny.contains(&net) {
                out.deny.push(net);
            }
        }
        out
    }

    /// Deny-list networks, normalized, in the order written.
    pub fn deny(&self) -> &[IpNet] {
        &self.deny
    }
}

fn parse_cidr_list(key: &str, value: &str) -> Result<Vec<IpNet>, PolicyError> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .enumerate()
        .map(|(i, s)| parse_cidr(|| format!("{key}[{i}]"), s))
        .collect()
}

/// Serializes to the policy file's shape (also usable for JSON output).
impl Serialize for PolicyConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Actions<'a>(&'a [Action; RstClass::COUNT]);
        impl Serialize for Actions<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut m = s.serialize_map(Some(RstClass::COUNT))?;
                for c in RstClass::ALL {
                    m.serialize_entry(c.as_str(), &self.0[c.index()])?;
                }
                m.end()
            }
        }
        #[derive(Serialize)]
        struct Lists<'a> {
            allow: &'a [IpNet],
            deny: &'a [IpNet],
        }
        #[derive(Serialize)]
        struct Out<'a> {
            mode: Mode,
            actions: Actions<'a>,
            ratelimit: &'a RateLimitConfig,
            lists: Lists<'a>,
        }
        Out {
            mode: self.mode,
            actions: Actions(&self.actions),
            ratelimit: &self.ratelimit,
            lists: Lists {
                allow: &self.allow,
                deny: &self.deny,
            },
        }
        .serialize(s)
    }
}

// ---------------------------------------------------------------------------
// Token buckets
// ---------------------------------------------------------------------------

/// A refill rate and a capacity, shared by every bucket it governs (so the
/// per-source buckets themselves stay 16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    per_sec: u64,
    burst: u64,
}

impl Rate {
    pub const MAX_PER_SEC: u64 = 10_000_000;
    /// Keeps `burst × 10⁹` (the capacity in credit units) far below `u64::MAX`.
    pub const MAX_BURST: u64 = 1_000_000_000;

    /// `per_sec` tokens per second (0: never refills), at most `burst`
    /// (at least 1) held. Out-of-range values are clamped.
    pub const fn new(per_sec: u64, burst: u64) -> Rate {
        let per_sec = if per_sec > Self::MAX_PER_SEC {
            Self::MAX_PER_SEC
        } else {
            per_sec
        };
        let burst = if burst == 0 {
            1
        } else if burst > Self::MAX_BURST {
            Self::MAX_BURST
        } else {
            burst
        };
        Rate { per_sec, burst }
    }

    pub const fn per_sec(self) -> u64 {
        self.per_sec
    }

    pub const fn burst(self) -> u64 {
        self.burst
    }

    /// Capacity in credit units (one token = 10⁹ units).
    #[inline]
    const fn capacity(self) -> u64 {
        self.burst * NANOS_PER_SEC
    }

    /// Whole seconds an empty bucket takes to fill, `None` if it never does.
    fn fill_secs(self) -> Option<u64> {
        (self.per_sec > 0).then(|| self.burst.div_ceil(self.per_sec))
    }
}

/// A token bucket on a caller-supplied monotonic clock in nanoseconds.
///
/// Credit is kept in units of 10⁻⁹ token, so a refill of `elapsed_ns ×
/// per_sec` units is exact integer arithmetic: no floats, no rounding drift,
/// and saturating so a long idle period simply fills the bucket. A clock that
/// steps backwards refills nothing and re-anchors the bucket at the new time,
/// so no tokens are minted for the step and a large step (two captures
/// concatenated, say) cannot stall the bucket until the clock catches up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    credit: u64,
    last_ns: u64,
}

impl TokenBucket {
    const TOKEN: u64 = NANOS_PER_SEC;

    /// A full bucket as of `now_ns`.
    pub const fn full(rate: Rate, now_ns: u64) -> TokenBucket {
        TokenBucket {
            credit: rate.capacity(),
            last_ns: now_ns,
        }
    }

    /// Add the credit earned since the last refill, up to the burst.
    #[inline]
    pub fn refill(&mut self, rate: Rate, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = now_ns;
        self.credit = self
            .credit
            .saturating_add(elapsed.saturating_mul(rate.per_sec))
            .min(rate.capacity());
    }

    /// Whole tokens available (as of the last refill).
    pub const fn tokens(&self) -> u64 {
        self.credit / Self::TOKEN
    }

    #[inline]
    pub const fn has_token(&self) -> bool {
        self.credit >= Self::TOKEN
    }

    /// Take one token if there is one (no refill).
    #[inline]
    pub fn take(&mut self) -> bool {
        let ok = self.has_token();
        if ok {
            self.credit -= Self::TOKEN;
        }
        ok
    }

    /// Refill, then take one token if there is one.
    #[inline]
    pub fn try_take(&mut self, rate: Rate, now_ns: u64) -> bool {
        self.refill(rate, now_ns);
        self.take()
    }
}

// ---------------------------------------------------------------------------
// CIDR matching
// ---------------------------------------------------------------------------

trait AddrBits: Copy + Eq + Hash + BitAnd<Output = Self> {
    const BITS: u8;
    fn mask(len: u8) -> Self;
}

impl AddrBits for u32 {
    const BITS: u8 = 32;
    fn mask(len: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
    }
}

impl AddrBits for u128 {
    const BITS: u8 = 128;
    fn mask(len: u8) -> u128 {
        u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
    }
}

/// The networks of one prefix length, stored masked.
struct Level<A> {
    len: u8,
    mask: A,
    nets: HashSet<A, foldhash::fast::RandomState>,
}

/// Networks of one address family: one set per prefix length present,
/// longest first, so a lookup costs one hash probe per distinct length.
struct PrefixSet<A> {
    levels: Vec<Level<A>>,
}

impl<A: AddrBits> PrefixSet<A> {
    fn new() -> Self {
        PrefixSet { levels: Vec::new() }
    }

    fn insert(&mut self, addr: A, len: u8) {
        let len = len.min(A::BITS);
        let pos = match self.levels.binary_search_by(|l| len.cmp(&l.len)) {
            Ok(pos) => pos,
            Err(pos) => {
                let level = Level {
                    len,
                    mask: A::mask(len),
                    nets: HashSet::default(),
                };
                self.levels.insert(pos, level);
                pos
            }
        };
        let level = &mut self.levels[pos];
        level.nets.insert(addr & level.mask);
    }

    /// The longest stored prefix containing `addr`: (network, length).
    #[inline]
    fn longest(&self, addr: A) -> Option<(A, u8)> {
        self.levels.iter().find_map(|l| {
            let net = addr & l.mask;
            l.nets.contains(&net).then_some((net, l.len))
        })
    }
}

/// A set of IPv4 and IPv6 networks with longest-prefix lookup. IPv4 and IPv6
/// are separate: an IPv4-mapped IPv6 address matches only IPv6 entries.
pub struct CidrSet {
    v4: PrefixSet<u32>,
    v6: PrefixSet<u128>,
    empty: bool,
}

impl CidrSet {
    pub fn new(nets: &[IpNet]) -> CidrSet {
        let mut set = CidrSet {
            v4: PrefixSet::new(),
            v6: PrefixSet::new(),
            empty: nets.is_empty(),
        };
        for net in nets {
            match net {
                IpNet::V4(n) => set.v4.insert(u32::from(n.addr()), n.prefix_len()),
                IpNet::V6(n) => set.v6.insert(u128::from(n.addr()), n.prefix_len()),
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether any network contains `ip`.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.empty {
            return false;
        }
        match ip {
            IpAddr::V4(a) => self.v4.longest(u32::from(a)).is_some(),
            IpAddr::V6(a) => self.v6.longest(u128::from(a)).is_some(),
        }
    }

    /// The most specific network containing `ip`.
    pub fn longest_match(&self, ip: IpAddr) -> Option<IpNet> {
        match ip {
            IpAddr::V4(a) => self
                .v4
                .longest(u32::from(a))
                .and_then(|(n, len)| IpNet::new(IpAddr::V4(n.into()), len).ok()),
            IpAddr::V6(a) => self
                .v6
                .longest(u128::from(a))
                .and_then(|(n, len)| IpNet::new(IpAddr::V6(n.into()), len).ok()),
        }
    }
}

// ---------------------------------------------------------------------------
// The compiled policy
// ---------------------------------------------------------------------------

/// What a per-source bucket is keyed by: an IPv4 /32 or an IPv6 /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum SourceKey {
    V4(u32),
    V6(u64),
}

impl SourceKey {
    #[inline]
    fn of(ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(a) => SourceKey::V4(u32::from(a)),
            IpAddr::V6(a) => SourceKey::V6((u128::from(a) >> 64) as u64),
        }
    }
}

/// One tracked source: its bucket, and until when it has had its block
/// requested (so a source is asked for once per block period, found by the
/// lookup the bucket needs anyway).
#[derive(Clone, Copy, Debug)]
struct SourceState {
    bucket: TokenBucket,
    block_requested_until_ns: u64,
}

/// Block requests and their counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlockStats {
    /// Requests recorded for the daemon (enforce mode).
    pub requested: u64,
    /// Requests monitor mode would have recorded.
    pub would_block: u64,
    /// Requests lost to a full ring (the next dropped RST asks again).
    pub lost: u64,
}

impl BlockStats {
    pub fn merge(&mut self, o: &BlockStats) {
        self.requested += o.requested;
        self.would_block += o.would_block;
        self.lost += o.lost;
    }
}

/// Block requests waiting to be drained: a fixed array, so recording one
/// on the per-packet path never allocates. Drained whole every batch, it
/// only has to hold the requests of one batch: at most one per frame, so a
/// batch of the default 64 frames can never overflow it.
struct BlockRequests {
    addrs: [IpAddr; BlockRequests::CAPACITY],
    len: usize,
    stats: BlockStats,
}

impl BlockRequests {
    const CAPACITY: usize = 64;

    fn new() -> BlockRequests {
        BlockRequests {
            addrs: [IpAddr::V4(0.into()); Self::CAPACITY],
            len: 0,
            stats: BlockStats::default(),
        }
    }

    /// Record a request for `src` (in monitor mode, only count it). False
    /// if the ring was full and the request was lost.
    #[inline]
    fn record(&mut self, src: IpAddr, enforce: bool) -> bool {
        if !enforce {
            self.stats.would_block += 1;
            return true;
        }
        let queued = self.push(src);
        if queued {
            self.stats.requested += 1;
        }
        queued
    }

    /// Queue `src`, or count it lost.
    #[inline]
    fn push(&mut self, src: IpAddr) -> bool {
        match self.addrs.get_mut(self.len) {
            Some(slot) => {
                *slot = src;
                self.len += 1;
                true
            }
            None => {
                self.stats.lost += 1;
                false
            }
        }
    }

    fn drain(&mut self, mut f: impl FnMut(IpAddr)) {
        for &src in &self.addrs[..self.len] {
            f(src);
        }
        self.len = 0;
    }
}

#[inline]
fn secs(now_ns: u64) -> u32 {
    // The table's LRU clock is in seconds and compares with wrapping
    // arithmetic; truncating to u32 wraps after 136 years.
    (now_ns / NANOS_PER_SEC) as u32
}

/// The compiled, per-worker policy. Build one per worker from a
/// [`PolicyConfig`]; rebuild to apply a changed policy (buckets start full).
pub struct Policy {
    enforce: bool,
    actions: [Action; RstClass::COUNT],
    /// Neither list has an entry: the per-packet path skips both lookups.
    no_lists: bool,
    deny: CidrSet,
    allow: CidrSet,
    per_source: Rate,
    global_rate: Rate,
    global: TokenBucket,
    sources: BoundedTable<SourceKey, SourceState, 1>,
    evictions: u64,
    /// `ratelimit.block_seconds` in ns; 0: never block.
    block_ns: u64,
    blocks: BlockRequests,
    /// Latest second seen by the rate limiter, so expiry never runs on a
    /// clock behind the buckets' own.
    newest_s: u32,
}

impl Policy {
    /// Block requests the ring holds before it loses them.
    pub const BLOCK_RING_CAPACITY: usize = BlockRequests::CAPACITY;

    /// A policy holding the whole global budget (one worker).
    pub fn new(cfg: &PolicyConfig) -> Policy {
        Policy::for_worker(cfg, 1)
    }

    /// A policy for one of `workers` workers: each gets an equal share of the
    /// global rate and burst (rounded up, at least 1). Per-source limits are
    /// not divided (see the module docs).
    pub fn for_worker(cfg: &PolicyConfig, workers: u32) -> Policy {
        let workers = u64::from(workers.max(1));
        let rl = &cfg.ratelimit;
        let global_rate = Rate::new(
            rl.global_rate.div_ceil(workers),
            rl.global_burst.div_ceil(workers),
        );
        let limits = cfg.actions.contains(&Action::RateLimit);
        // No class rate limited: no table worth the memory.
        let table_size = if limits {
            usize::try_from(rl.source_table_size).unwrap_or(usize::MAX)
        } else {
            1
        };
        Policy {
            enforce: cfg.mode == Mode::Enforce,
            actions: cfg.actions,
            no_lists: cfg.deny.is_empty() && cfg.allow.is_empty(),
            deny: CidrSet::new(&cfg.deny),
            allow: CidrSet::new(&cfg.allow),
            per_source: Rate::new(rl.per_source_rate, rl.per_source_burst),
            global_rate,
            global: TokenBucket::full(global_rate, 0),
            sources: BoundedTable::with_capacity(table_size),
            evictions: 0,
            block_ns: rl.block_seconds.saturating_mul(NANOS_PER_SEC),
            blocks: BlockRequests::new(),
            newest_s: 0,
        }
    }

    /// The verdict for one TCP packet from `src`; `rst` is its RST class, or
    /// `None` if it is not a RST. `now_ns` is a monotonic clock.
    #[inline]
    pub fn judge(&mut self, src: IpAddr, rst: Option<RstClass>, now_ns: u64) -> Decision {
        self.judge_lazy(|| src, rst, now_ns)
    }

    /// True when neither list has an entry: then a packet that is not a RST
    /// is passed for [`Reason::NotRst`] whatever its source and the mode.
    #[inline]
    pub fn no_lists(&self) -> bool {
        self.no_lists
    }

    /// [`Policy::judge`] with the source address built only if a list or
    /// a rate limit needs it (most packets need neither).
    #[inline]
    pub fn judge_lazy(
        &mut self,
        src: impl Fn() -> IpAddr,
        rst: Option<RstClass>,
        now_ns: u64,
    ) -> Decision {
        let reason = self.reason(src, rst, now_ns);
        let verdict = if self.enforce && reason.drops() {
            Verdict::Drop
        } else {
            Verdict::Pass
        };
        Decision { verdict, reason }
    }

    #[inline]
    fn reason(&mut self, src: impl Fn() -> IpAddr, rst: Option<RstClass>, now_ns: u64) -> Reason {
        if !self.no_lists {
            let src = src();
            if self.deny.contains(src) {
                return Reason::DenyList;
            }
            if self.allow.contains(src) {
                return Reason::AllowList;
            }
        }
        let Some(class) = rst else {
            return Reason::NotRst;
        };
        match self.actions[class.index()] {
            Action::Pass => Reason::ClassPass,
            Action::Drop => Reason::ClassDrop,
            Action::RateLimit => self.rate_limit(src(), now_ns),
        }
    }

    fn rate_limit(&mut self, src: IpAddr, now_ns: u64) -> Reason {
        let now_s = secs(now_ns);
        self.newest_s = self.newest_s.max(now_s);
        let per_source = self.per_source;
        let state = match self
            .sources
            .get_or_insert(SourceKey::of(src), now_s, 0, || SourceState {
                bucket: TokenBucket::full(per_source, now_ns),
                block_requested_until_ns: 0,
            }) {
            Insert::Found(s) => s,
            Insert::Inserted { value, evicted } => {
                self.evictions += u64::from(evicted);
                value
            }
        };
        state.bucket.refill(per_source, now_ns);
        if !state.bucket.has_token() {
            if self.block_ns > 0 {
                let until = state.block_requested_until_ns;
                // Due once the period is over, or if the clock stepped back
                // by more than a period (a capture replayed after a later one).
                let due = now_ns >= until || until - now_ns > self.block_ns;
                if due && self.blocks.record(src, self.enforce) {
                    state.block_requested_until_ns = now_ns.saturating_add(self.block_ns);
                }
            }
            return Reason::SourceRate;
        }
        self.global.refill(self.global_rate, now_ns);
        if !self.global.has_token() {
            return Reason::GlobalRate;
        }
        state.bucket.take();
        self.global.take();
        Reason::WithinRate
    }

    /// Hand each recorded block request to `f` and empty the ring. Call it
    /// once per batch: the ring holds [`Policy::BLOCK_RING_CAPACITY`]
    /// requests, and a full one loses them.
    pub fn drain_block_requests(&mut self, f: impl FnMut(IpAddr)) {
        self.blocks.drain(f);
    }

    /// Block requests recorded, would-be and lost since construction (plus
    /// those of the policies it replaced, see [`Policy::carry_over`]).
    pub fn block_stats(&self) -> BlockStats {
        self.blocks.stats
    }

    /// Take over what `old` counted and has not yet handed on, so that
    /// replacing a policy neither resets counters nor loses requests.
    pub fn carry_over(&mut self, old: &mut Policy) {
        self.evictions += old.evictions;
        self.blocks.stats.merge(&old.blocks.stats);
        let blocks = &mut self.blocks;
        old.blocks.drain(|src| {
            blocks.push(src);
        });
    }

    /// Drop per-source buckets idle long enough to be full again (a fresh
    /// bucket is identical). Housekeeping, not needed for correctness: the
    /// table evicts the least recently used source when full. Returns how
    /// many were removed.
    pub fn expire_sources(&mut self, now_ns: u64) -> usize {
        let Some(fill) = self.per_source.fill_secs() else {
            return 0;
        };
        let timeout = u32::try_from(fill).unwrap_or(u32::MAX);
        let now_s = secs(now_ns).max(self.newest_s);
        self.sources.expire(0, now_s, timeout, |_, _| {})
    }

    pub fn mode(&self) -> Mode {
        if self.enforce {
            Mode::Enforce
        } else {
            Mode::Monitor
        }
    }

    pub fn action(&self, class: RstClass) -> Action {
        self.actions[class.index()]
    }

    /// Sources evicted from the full per-source table since construction.
    pub fn source_table_evictions(&self) -> u64 {
        self.evictions
    }

    /// Sources currently tracked.
    pub fn source_table_len(&self) -> usize {
        self.sources.len()
    }

    pub fn source_table_capacity(&self) -> usize {
        self.sources.capacity()
    }

    /// Memory held by the per-source table (preallocated; constant).
    pub fn source_table_bytes(&self) -> usize {
        self.sources
            .bytes_per_entry()
            .saturating_mul(self.sources.capacity())
    }

    /// Whole tokens left in this worker's global budget (as of its last use).
    pub fn global_tokens(&self) -> u64 {
        self.global.tokens()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SEC: u64 = NANOS_PER_SEC;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn cfg(src: &str) -> PolicyConfig {
        PolicyConfig::from_toml_str(src).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(src: &str) -> PolicyError {
        match PolicyConfig::from_toml_str(src) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e,
        }
    }

    const EXAMPLE: &str = r#"mode = "monitor"            # or "enforce"
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

    // --- parsing ---

    #[test]
    fn policy_parses_the_documented_example() {
        let c = cfg(EXAMPLE);
        assert_eq!(c.mode(), Mode::Monitor);
        assert_eq!(c.action(RstClass::InWindow), Action::Drop);
        assert_eq!(c.action(RstClass::NoFlow), Action::RateLimit);
        assert_eq!(c.action(RstClass::Refused), Action::Pass);
        assert_eq!(*c.ratelimit(), RateLimitConfig::default());
        assert_eq!(c.allow(), &[net("198.18.0.0/24")]);
        assert_eq!(c.deny(), &[net("198.19.0.0/16")]);
        assert_eq!(cfg(""), PolicyConfig::default());
    }

    #[test]
    fn policy_errors_name_key_and_line() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "mode = \"enforce\"\n[actions]\nin_window = \"dorp\"\n",
                3,
                r#"actions.in_window: unknown action "dorp" (expected pass, drop or ratelimit)"#,
            ),
            (
                "[ratelimit]\n\nper_source_rate = 0\n",
                3,
                "ratelimit.per_source_rate: 0 is out of range (1..=10000000)",
            ),
            (
                "[ratelimit]\nglobal_burst = -7\n",
                2,
                "ratelimit.global_burst: -7 is out of range (1..=1000000000)",
            ),
            (
                "[lists]\nallow = [\n  \"10.0.0.1\",\n  \"::1\",\n  \"10.0.0.0/33\",\n]\n",
                5,
                r#"lists.allow[2]: "10.0.0.0/33" is not a CIDR"#,
            ),
            (
                "mode = \"Enforce\"\n",
                1,
                r#"mode: unknown mode "Enforce" (expected monitor or enforce)"#,
            ),
            ("mode = 1\n", 1, "mode: expected a string, found integer 1"),
            (
                "[ratelimit]\nglobal_rate = \"fast\"\n",
                2,
                r#"ratelimit.global_rate: expected an integer, found string "fast""#,
            ),
            (
                "[ratelimit]\nglobal_rate = 1.5\n",
                2,
                "ratelimit.global_rate: expected an integer, found float 1.5",
            ),
            (
                "[lists]\ndeny = \"10.0.0.0/8\"\n",
                2,
                r#"lists.deny: expected an array of CIDR strings, found string "10.0.0.0/8""#,
            ),
            (
                "[lists]\ndeny = [\"10.0.0.0/8\", 7]\n",
                2,
                "lists.deny[1]: expected a string, found integer 7",
            ),
            (
                "[actions]\nrefused = \"pass\"\nreset = \"drop\"\n",
                3,
                "actions.reset: unknown RST class (expected one of: refused, abort, teardown, \
                 in_window, out_of_window, syn_sent_bad_ack, no_flow, invalid_flags)",
            ),
        ];
        for (src, line, msg) in cases {
            let e = err(src);
            assert_eq!(e.inner().to_string(), *msg, "{src}");
            assert_eq!(e.location().map(|l| l.line), Some(*line), "{src}: {e}");
            assert!(e.to_string().starts_with(&format!("line {line}, column ")));
        }
    }

    #[test]
    fn policy_toml_level_errors_carry_line() {
        for (src, line, needle) in [
            (
                "mode = \"monitor\"\nmodes = 1\n",
                2,
                "unknown field `modes`",
            ),
            (
                "[ratelimit]\nper_source_rat = 5\n",
                2,
                "unknown field `per_source_rat`",
            ),
            (
                "[lists]\nallow = []\nignore = []\n",
                3,
                "unknown field `ignore`",
            ),
            ("[limits]\n", 1, "unknown field `limits`"),
            (
                "mode = \"monitor\"\n\nmode = \"enforce\"\n",
                3,
                "duplicate key",
            ),
            ("[actions\n", 1, ""),
            ("actions = 5\n", 1, ""),
        ] {
            let e = err(src);
            assert!(
                matches!(e.inner(), PolicyError::Toml { .. }),
                "{src}: {e:?}"
            );
            assert_eq!(e.location().map(|l| l.line), Some(line), "{src}: {e}");
            assert!(e.to_string().contains(needle), "{src}: {e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        // The earliest bad action in the file is the one reported.
        let e = err("[actions]\nteardown = \"x\"\nabort = \"y\"\n");
        assert!(e.to_string().contains("actions.teardown"), "{e}");
    }

    #[test]
    fn policy_location_counts_characters() {
        assert_eq!(Location::of("", 5), Location { line: 1, column: 1 });
        assert_eq!(Location::of("ab\ncd", 4), Location { line: 2, column: 2 });
        // "é" is two bytes, one column; an offset inside it must not panic.
        assert_eq!(Location::of("é=x", 2), Location { line: 1, column: 2 });
        assert_eq!(Location::of("é=x", 3), Location { line: 1, column: 3 });
        assert_eq!(Location::of("é=x", 1).line, 1);
        let e = err("# é\n[actions]\n\"in_window\" = \"nope\" # ü\n");
        assert_eq!(
            e.location(),
            Some(Location {
                line: 3,
                column: 15
            })
        );
    }

    #[test]
    fn policy_cidrs_accept_hosts_and_normalize() {
        let c = cfg(r#"[lists]
allow = ["10.1.2.3", "2001:db8::1", " 10.1.2.3/8 ", "2001:db8:1:2:3::/48", "0.0.0.0/0"]
"#);
        assert_eq!(
            c.allow(),
            &[
                net("10.1.2.3/32"),
                net("2001:db8::1/128"),
                net("10.0.0.0/8"),
                net("2001:db8:1::/48"),
                net("0.0.0.0/0"),
            ]
        );
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0/8",
            "010.0.0.1",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "10.0.0.0/0x8",
            "10.0.0.0/0008",
            "fe80::1%eth0",
            "host",
            "",
        ] {
            let src = format!("[lists]\ndeny = [{bad:?}]\n");
            assert!(
                matches!(err(&src).inner(), PolicyError::NotCidr { .. }),
                "{bad:?}"
            );
            // An empty `set` value clears the list; anything else must fail.
            if !bad.is_empty() {
                let e = PolicyConfig::default().set("lists.deny", bad).unwrap_err();
                assert!(matches!(e, PolicyError::NotCidr { .. }), "{bad:?}");
            }
        }
    }

    // --- set and round trip ---

    #[test]
    fn policy_set_validates_like_the_file() {
        let mut c = PolicyConfig::default();
        c.set("mode", "enforce").unwrap();
        c.set("actions.no_flow", "ratelimit").unwrap();
        c.set_assignment(" ratelimit.global_rate = 123 ").unwrap();
        c.set("lists.allow", "198.18.0.0/24, 2001:db8::/32,10.0.0.7")
            .unwrap();
        assert_eq!(c.mode(), Mode::Enforce);
        assert_eq!(c.action(RstClass::NoFlow), Action::RateLimit);
        assert_eq!(c.ratelimit().global_rate, 123);
        assert_eq!(c.allow().len(), 3);
        c.set("lists.allow", "").unwrap();
        assert!(c.allow().is_empty());

        // The same bad value gives the same message by both paths.
        let pairs = [
            (
                "actions.in_window",
                "dorp",
                "[actions]\nin_window = \"dorp\"\n",
            ),
            (
                "ratelimit.per_source_rate",
                "0",
                "[ratelimit]\nper_source_rate = 0\n",
            ),
            ("mode", "on", "mode = \"on\"\n"),
            ("actions.reset", "drop", "[actions]\nreset = \"drop\"\n"),
            (
                "lists.allow",
                "1.2.3.4,5.6.7.8,10.0.0.0/33",
                "[lists]\nallow = [\"1.2.3.4\", \"5.6.7.8\", \"10.0.0.0/33\"]\n",
            ),
        ];
        for (key, value, src) in pairs {
            let before = c.clone();
            let set_err = c.set(key, value).unwrap_err().to_string();
            assert_eq!(c, before, "failed set must change nothing");
            assert_eq!(set_err, err(src).inner().to_string());
        }

        let e = c
            .set("ratelimit.global_rate", "99999999999999999999")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ratelimit.global_rate: 99999999999999999999 is out of range (1..=10000000)"
        );
        let e = c.set("ratelimit.global_rate", "fast").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"ratelimit.global_rate: expected an integer, found "fast""#
        );
        assert!(matches!(
            c.set("ratelimit.rate", "1"),
            Err(PolicyError::UnknownKey { .. })
        ));
        assert!(matches!(
            c.set("modes", "x"),
            Err(PolicyError::UnknownKey { .. })
        ));
        assert!(matches!(
            c.set("lists", "x"),
            Err(PolicyError::UnknownKey { .. })
        ));
        assert!(matches!(
            c.set_assignment("mode"),
            Err(PolicyError::NotAssignment(_))
        ));
        assert!(c.set("lists.deny", "1.2.3.4,").is_err());
    }

    #[test]
    fn policy_round_trips_through_toml() {
        let mut c = cfg(EXAMPLE);
        assert_eq!(cfg(&c.to_toml_string()), c);
        c.set("mode", "enforce").unwrap();
        c.set("actions.invalid_flags", "drop").unwrap();
        c.set("ratelimit.source_table_size", "16777216").unwrap();
        c.set("ratelimit.per_source_burst", "1000000000").unwrap();
        c.set("lists.deny", "10.9.9.9/8,::ffff:0:0/96,2001:db8::5")
            .unwrap();
        let text = c.to_toml_string();
        assert_eq!(cfg(&text), c);
        // Classes are written in index order, and CIDRs normalized.
        let order: Vec<usize> = RstClass::ALL
            .iter()
            .map(|k| text.find(&format!("\n{} = ", k.as_str())).unwrap())
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(
            text.contains("\"10.0.0.0/8\"") && text.contains("\"2001:db8::5/128\""),
            "{text}"
        );
        assert!(text.starts_with("mode = \"enforce\"\n"), "{text}");
        assert_eq!(
            cfg(&PolicyConfig::default().to_toml_string()),
            PolicyConfig::default()
        );
    }

    #[test]
    fn policy_load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("rstwall-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.toml");
        std::fs::write(&path, "\n[ratelimit]\nglobal_rate = 0\n").unwrap();
        let e = PolicyConfig::load(&path).unwrap_err();
        assert_eq!(e.location().map(|l| l.line), Some(3));
        assert!(
            e.to_string().starts_with(&format!(
                "{}: line 3, column 15: ratelimit.global_rate",
                path.display()
            )),
            "{e}"
        );
        std::fs::write(&path, PolicyConfig::default().to_toml_string()).unwrap();
        assert_eq!(PolicyConfig::load(&path).unwrap(), PolicyConfig::default());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            PolicyConfig::load(&path),
            Err(PolicyError::Io { .. })
        ));
    }

    #[test]
    fn policy_garbage_never_panics() {
        let mut x: u64 = 0x2545F4914F6CDD1D;
        let alphabet = b"[]=\"'.,/:#\n mode actions ratelimit lists allow deny 0123456789 -_{}";
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..(x % 60) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(alphabet[(x % alphabet.len() as u64) as usize] as char);
            }
            let _ = PolicyConfig::from_toml_str(&s);
            let _ = PolicyConfig::default().set_assignment(&s);
        }
    }

    // --- CIDR matching ---

    #[test]
    fn policy_cidr_set_matches_longest_prefix() {
        let set = CidrSet::new(&[
            net("10.0.0.0/8"),
            net("10.1.0.0/16"),
            net("10.1.2.3/32"),
            net("2001:db8::/32"),
            net("2001:db8:0:1::/64"),
            net("2001:db8::1/128"),
        ]);
        let lm = |s: &str| set.longest_match(ip(s));
        assert_eq!(lm("10.1.2.3"), Some(net("10.1.2.3/32")));
        assert_eq!(lm("10.1.2.4"), Some(net("10.1.0.0/16")));
        assert_eq!(lm("10.200.0.1"), Some(net("10.0.0.0/8")));
        assert_eq!(lm("11.0.0.0"), None);
        assert_eq!(lm("2001:db8::1"), Some(net("2001:db8::1/128")));
        assert_eq!(lm("2001:db8:0:1::9"), Some(net("2001:db8:0:1::/64")));
        assert_eq!(lm("2001:db8:ffff::"), Some(net("2001:db8::/32")));
        assert_eq!(lm("2001:db9::"), None);
        assert!(set.contains(ip("10.255.255.255")) && !set.contains(ip("9.255.255.255")));
        // The families are separate: v4-mapped v6 does not match v4 entries,
        // and v4 does not match v6 entries.
        assert!(!set.contains(ip("::ffff:10.1.2.3")));
        assert!(!CidrSet::new(&[net("::/0")]).contains(ip("10.0.0.1")));
        assert!(CidrSet::new(&[net("::ffff:0:0/96")]).contains(ip("::ffff:10.0.0.1")));

        let all = CidrSet::new(&[net("0.0.0.0/0"), net("::/0")]);
        assert!(all.contains(ip("255.255.255.255")) && all.contains(ip("::")));
        assert_eq!(all.longest_match(ip("1.2.3.4")), Some(net("0.0.0.0/0")));
        let hosts = CidrSet::new(&[net("192.0.2.1/32"), net("::2/128")]);
        assert!(hosts.contains(ip("192.0.2.1")) && !hosts.contains(ip("192.0.2.0")));
        assert!(hosts.contains(ip("::2")) && !hosts.contains(ip("::3")));
        let empty = CidrSet::new(&[]);
        assert!(empty.is_empty() && !empty.contains(ip("1.1.1.1")));
        // One level per distinct length, longest first.
        let lens: Vec<u8> = set.v4.levels.iter().map(|l| l.len).collect();
        assert_eq!(lens, [32, 16, 8]);
    }

    // --- token buckets ---

    #[test]
    fn policy_token_bucket_refills_caps_and_survives_bad_clocks() {
        let rate = Rate::new(10, 3); // one token per 100 ms, at most 3
        let mut b = TokenBucket::full(rate, 1000 * SEC);
        let t0 = 1000 * SEC;
        assert!(b.try_take(rate, t0) && b.try_take(rate, t0) && b.try_take(rate, t0));
        assert!(!b.try_take(rate, t0));
        assert!(!b.try_take(rate, t0 + SEC / 10 - 1));
        assert!(b.try_take(rate, t0 + SEC / 10)); // exactly one token earned
        assert!(!b.try_take(rate, t0 + SEC / 10));
        // Long idle fills to the burst, not beyond.
        b.refill(rate, t0 + 3600 * SEC);
        assert_eq!(b.tokens(), 3);
        // Clock going backwards: no refill, no panic.
        let mut b = TokenBucket::full(rate, t0);
        while b.take() {}
        b.refill(rate, t0 - 50 * SEC);
        assert_eq!(b.tokens(), 0);
        // ...and re-anchored: it refills from the new time, not the old.
        b.refill(rate, t0 - 50 * SEC + SEC / 10);
        assert_eq!(b.tokens(), 1);
        // Extremes never overflow.
        let big = Rate::new(u64::MAX, u64::MAX);
        assert_eq!(
            (big.per_sec(), big.burst()),
            (Rate::MAX_PER_SEC, Rate::MAX_BURST)
        );
        let mut b = TokenBucket::full(big, 0);
        b.refill(big, u64::MAX);
        assert_eq!(b.tokens(), Rate::MAX_BURST);
        b.refill(big, 0);
        assert_eq!(b.tokens(), Rate::MAX_BURST);
        // A rate that does not divide a second is still exact over time.
        let odd = Rate::new(7, 2);
        let mut b = TokenBucket::full(odd, 0);
        let mut passed = 0;
        for i in 0..=70_000u64 {
            passed += u64::from(b.try_take(odd, i * SEC / 7000));
        }
        assert_eq!(passed, 2 + 70); // initial burst + 10 s at 7/s
                                    // Zero rate never refills; zero burst is clamped to 1.
        let zero = Rate::new(0, 0);
        let mut b = TokenBucket::full(zero, 0);
        assert!(b.try_take(zero, 0) && !b.try_take(zero, u64::MAX));
    }

    // --- the compiled policy ---

    fn policy(lines: &[&str]) -> Policy {
        let mut c = PolicyConfig::default();
        for l in lines {
            c.set_assignment(l).unwrap();
        }
        Policy::new(&c)
    }

    #[test]
    fn policy_defaults_never_drop_what_the_kernel_may_accept() {
        let mut p = policy(&["mode=enforce"]);
        let src = ip("192.0.2.1");
        for class in RstClass::ALL {
            let d = p.judge(src, Some(class), 0);
            match class.kernel_accepts() {
                Some(false) => assert_eq!(
                    d,
                    Decision {
                        verdict: Verdict::Drop,
                        reason: Reason::ClassDrop
                    },
                    "{class}"
                ),
                Some(true) | None => {
                    assert_eq!(
                        d,
                        Decision {
                            verdict: Verdict::Pass,
                            reason: Reason::ClassPass
                        },
                        "{class}"
                    )
                }
            }
        }
        // The named ones, explicitly.
        for class in [
            RstClass::Refused,
            RstClass::Abort,
            RstClass::Teardown,
            RstClass::NoFlow,
            RstClass::InvalidFlags,
        ] {
            assert_eq!(PolicyConfig::default().action(class), Action::Pass);
        }
        assert_eq!(PolicyConfig::default().mode(), Mode::Monitor);
        // No class rate limited by default: no table to speak of.
        assert_eq!(p.source_table_capacity(), 1);
    }

    #[test]
    fn policy_monitor_reports_what_enforce_would_do() {
        let lines = [
            "lists.deny=198.19.0.0/16",
            "actions.no_flow=ratelimit",
            "ratelimit.per_source_burst=1",
            "ratelimit.per_source_rate=1",
        ];
        let mut mon = policy(&lines);
        let mut enf = policy(&[&lines[..], &["mode=enforce"]].concat());
        assert_eq!(mon.mode(), Mode::Monitor);
        assert_eq!(enf.mode(), Mode::Enforce);
        let (a, d) = (ip("192.0.2.1"), ip("198.19.3.4"));
        let cases = [
            (d, None, Reason::DenyList),
            (a, None, Reason::NotRst),
            (a, Some(RstClass::InWindow), Reason::ClassDrop),
            (a, Some(RstClass::Abort), Reason::ClassPass),
            (a, Some(RstClass::NoFlow), Reason::WithinRate),
            (a, Some(RstClass::NoFlow), Reason::SourceRate), // buckets run in monitor too
        ];
        for (src, rst, reason) in cases {
            let m = mon.judge(src, rst, 5 * SEC);
            let e = enf.judge(src, rst, 5 * SEC);
            assert_eq!(
                m,
                Decision {
                    verdict: Verdict::Pass,
                    reason
                }
            );
            assert_eq!(e.reason, reason);
            assert_eq!(e.verdict == Verdict::Drop, reason.drops());
            assert_eq!(m.would_drop(), reason.drops());
        }
    }

    #[test]
    fn policy_order_is_deny_allow_notrst_class() {
        let mut p = policy(&[
            "mode=enforce",
            "lists.deny=10.0.0.0/8,2001:db8::/32",
            "lists.allow=10.1.0.0/16,192.0.2.0/24",
            "actions.refused=drop",
        ]);
        let j = |p: &mut Policy, s: &str, r| p.judge(ip(s), r, 0).reason;
        // Deny beats allow even when the allow entry is more specific.
        assert_eq!(
            j(&mut p, "10.1.2.3", Some(RstClass::Abort)),
            Reason::DenyList
        );
        assert_eq!(j(&mut p, "10.1.2.3", None), Reason::DenyList);
        assert_eq!(j(&mut p, "2001:db8::1", None), Reason::DenyList);
        // Allow skips the RST policy, even an explicit drop.
        assert_eq!(
            j(&mut p, "192.0.2.9", Some(RstClass::InWindow)),
            Reason::AllowList
        );
        assert_eq!(j(&mut p, "192.0.2.9", None), Reason::AllowList);
        assert_eq!(
            j(&mut p, "203.0.113.1", Some(RstClass::Refused)),
            Reason::ClassDrop
        );
        assert_eq!(j(&mut p, "203.0.113.1", None), Reason::NotRst);
        // A v4-mapped source is not on the v4 deny list.
        assert_eq!(j(&mut p, "::ffff:10.1.2.3", None), Reason::NotRst);
    }

    #[test]
    fn policy_per_source_buckets_aggregate_ipv6_per_64() {
        let mut p = policy(&[
            "mode=enforce",
            "actions.no_flow=ratelimit",
            "ratelimit.per_source_rate=1",
            "ratelimit.per_source_burst=2",
        ]);
        let r = Some(RstClass::NoFlow);
        let t = 7 * SEC;
        assert_eq!(
            p.judge(ip("2001:db8:0:1::1"), r, t).reason,
            Reason::WithinRate
        );
        assert_eq!(
            p.judge(ip("2001:db8:0:1:ffff::2"), r, t).reason,
            Reason::WithinRate
        );
        // Same /64: the bucket is shared and now empty.
        assert_eq!(
            p.judge(ip("2001:db8:0:1::3"), r, t),
            Decision {
                verdict: Verdict::Drop,
                reason: Reason::SourceRate
            }
        );
        // Next /64 over: its own bucket.
        assert_eq!(
            p.judge(ip("2001:db8:0:2::1"), r, t).reason,
            Reason::WithinRate
        );
        // IPv4 is per /32.
        assert_eq!(p.judge(ip("192.0.2.1"), r, t).reason, Reason::WithinRate);
        assert_eq!(p.judge(ip("192.0.2.1"), r, t).reason, Reason::WithinRate);
        assert_eq!(p.judge(ip("192.0.2.1"), r, t).reason, Reason::SourceRate);
        assert_eq!(p.judge(ip("192.0.2.2"), r, t).reason, Reason::WithinRate);
        // One second later the /64 has one more token.
        assert_eq!(
            p.judge(ip("2001:db8:0:1::9"), r, t + SEC).reason,
            Reason::WithinRate
        );
        assert_eq!(
            p.judge(ip("2001:db8:0:1::9"), r, t + SEC).reason,
            Reason::SourceRate
        );
        assert_eq!(p.source_table_len(), 4);
        // Non-RST and non-ratelimited classes never touch the buckets.
        assert_eq!(p.judge(ip("198.51.100.1"), None, t).reason, Reason::NotRst);
        assert_eq!(
            p.judge(ip("198.51.100.1"), Some(RstClass::Abort), t).reason,
            Reason::ClassPass
        );
        assert_eq!(p.source_table_len(), 4);
        assert_eq!(SourceKey::of(ip("::ffff:1.2.3.4")), SourceKey::V6(0));
        assert_ne!(SourceKey::of(ip("0.0.0.0")), SourceKey::of(ip("::")));
    }

    #[test]
    fn policy_global_budget_bounds_all_sources() {
        let mut p = policy(&[
            "mode=enforce",
            "actions.out_of_window=ratelimit",
            "ratelimit.global_rate=100",
            "ratelimit.global_burst=10",
            "ratelimit.per_source_rate=1",
            "ratelimit.per_source_burst=2",
        ]);
        let r = Some(RstClass::OutOfWindow);
        let t = SEC;
        let mut within = 0;
        for i in 0..50u32 {
            let d = p.judge(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), r, t);
            match d.reason {
                Reason::WithinRate => within += 1,
                Reason::GlobalRate => assert_eq!(d.verdict, Verdict::Drop),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(within, 10);
        assert_eq!(p.global_tokens(), 0);
        // A source refused by the global budget was not charged: after the
        // budget refills (10 ms = 1 token) it still has its full burst.
        let late = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 40));
        assert_eq!(p.judge(late, r, t + SEC / 100).reason, Reason::WithinRate);
        assert_eq!(p.judge(late, r, t + SEC / 50).reason, Reason::WithinRate);
        assert_eq!(
            p.judge(late, r, t + 3 * SEC / 100).reason,
            Reason::SourceRate
        );
    }

    #[test]
    fn policy_workers_share_the_global_budget() {
        let mut c = PolicyConfig::default();
        c.set("actions.no_flow", "ratelimit").unwrap();
        c.set("ratelimit.global_burst", "10").unwrap();
        let mut w = Policy::for_worker(&c, 4);
        assert_eq!(w.global_tokens(), 3); // ceil(10 / 4)
        assert_eq!(Policy::for_worker(&c, 0).global_tokens(), 10);
        let n = (0..20u32)
            .filter(|&i| {
                w.judge(IpAddr::V4(i.into()), Some(RstClass::NoFlow), 0)
                    .reason
                    == Reason::WithinRate
            })
            .count();
        assert_eq!(n, 3);
    }

    #[test]
    fn policy_source_table_is_bounded_and_counts_evictions() {
        let mut p = policy(&[
            "actions.no_flow=ratelimit",
            "ratelimit.source_table_size=8",
            "ratelimit.global_rate=10000000",
            "ratelimit.global_burst=1000000000",
        ]);
        assert_eq!(p.source_table_capacity(), 8);
        assert!(p.source_table_bytes() >= 8 * (16 + 16));
        for i in 0..100u32 {
            let src = IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64));
            assert_eq!(
                p.judge(src, Some(RstClass::NoFlow), u64::from(i) * SEC)
                    .reason,
                Reason::WithinRate
            );
        }
        assert_eq!(p.source_table_len(), 8);
        assert_eq!(p.source_table_evictions(), 92);
        // Sources last used at 92..=99 s. Buckets fill in ceil(100 / 50) =
        // 2 s; those idle longer than that are removed.
        assert_eq!(p.expire_sources(99 * SEC), 5);
        assert_eq!(p.source_table_len(), 3);
        // A clock behind the buckets' own counts as the newest time seen.
        assert_eq!(p.expire_sources(0), 0);
        assert_eq!(p.expire_sources(101 * SEC + SEC / 2), 2);
        assert_eq!(p.source_table_len(), 1);
    }

    #[test]
    fn policy_mode_names() {
        crate::names::assert_consistent::<Mode>();
    }

    #[test]
    fn policy_action_names() {
        crate::names::assert_consistent::<Action>();
    }

    #[test]
    fn policy_verdict_names() {
        crate::names::assert_consistent::<Verdict>();
    }

    #[test]
    fn policy_ratelimit_key_names() {
        crate::names::assert_consistent::<RateField>();
    }

    #[test]
    fn policy_reason_names_are_stable_and_dense() {
        crate::names::assert_consistent::<Reason>();
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(serde_json::to_string(&Verdict::Drop).unwrap(), "\"drop\"");
        assert_eq!(
            serde_json::to_string(&Action::RateLimit).unwrap(),
            "\"ratelimit\""
        );
        let drops: Vec<_> = Reason::ALL.into_iter().filter(|r| r.drops()).collect();
        assert_eq!(
            drops,
            [
                Reason::DenyList,
                Reason::ClassDrop,
                Reason::SourceRate,
                Reason::GlobalRate
            ]
        );
    }

    // --- block requests ---

    #[test]
    fn policy_block_seconds_is_checked_like_the_other_ratelimit_keys() {
        let mut c = PolicyConfig::default();
        assert_eq!(c.ratelimit().block_seconds, 0, "off unless asked for");
        c.set("ratelimit.block_seconds", "0").unwrap();
        c.set("ratelimit.block_seconds", "86400").unwrap();
        assert_eq!(c.ratelimit().block_seconds, 86_400);
        assert_eq!(
            cfg("[ratelimit]\nblock_seconds = 30\n")
                .ratelimit()
                .block_seconds,
            30
        );
        // The same bad value gives the same message by both paths, with the
        // line from a file, and a failed `set` changes nothing.
        for value in ["86401", "-1", "99999999999999999999"] {
            let msg = format!("ratelimit.block_seconds: {value} is out of range (0..=86400)");
            let e = err(&format!("[ratelimit]\nblock_seconds = {value}\n"));
            if value.len() < 19 {
                // (TOML itself refuses an integer beyond i64.)
                assert_eq!(e.inner().to_string(), msg);
                assert_eq!(e.location().map(|l| l.line), Some(2));
            }
            let before = c.clone();
            let set_err = c.set("ratelimit.block_seconds", value).unwrap_err();
            assert_eq!(set_err.to_string(), msg);
            assert_eq!(c, before);
        }
        assert_eq!(
            c.set("ratelimit.block_seconds", "30s")
                .unwrap_err()
                .to_string(),
            r#"ratelimit.block_seconds: expected an integer, found "30s""#
        );
        assert_eq!(
            err("[ratelimit]\nblock_seconds = \"30\"\n")
                .inner()
                .to_string(),
            r#"ratelimit.block_seconds: expected an integer, found string "30""#
        );
        assert_eq!(
            err("[ratelimit]\nblock_seconds = 1.5\n")
                .inner()
                .to_string(),
            "ratelimit.block_seconds: expected an integer, found float 1.5"
        );
        // The other keys still refuse 0.
        assert!(c.set("ratelimit.per_source_rate", "0").is_err());
        // A misspelt key names the real ones.
        let e = c.set("ratelimit.block_secs", "5").unwrap_err().to_string();
        assert!(e.contains("block_seconds"), "{e}");
        // Written back and read again.
        c.set("ratelimit.block_seconds", "300").unwrap();
        let text = c.to_toml_string();
        assert!(text.contains("\nblock_seconds = 300\n"), "{text}");
        assert_eq!(cfg(&text), c);
    }

    /// Enforce, `no_flow` rate limited to a burst of 1, blocks of 10 s.
    fn blocking(extra: &[&str]) -> Policy {
        let lines = [
            "mode=enforce",
            "actions.no_flow=ratelimit",
            "ratelimit.per_source_rate=1",
            "ratelimit.per_source_burst=1",
            "ratelimit.block_seconds=10",
        ];
        policy(&[&lines[..], extra].concat())
    }

    fn drained(p: &mut Policy) -> Vec<IpAddr> {
        let mut out = Vec::new();
        p.drain_block_requests(|src| out.push(src));
        out
    }

    #[test]
    fn policy_asks_to_block_a_source_once_per_block_period() {
        let mut p = blocking(&[]);
        let r = Some(RstClass::NoFlow);
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        let t = 100 * SEC;
        assert_eq!(p.judge(a, r, t).reason, Reason::WithinRate);
        assert!(drained(&mut p).is_empty(), "within its rate: no block");
        for _ in 0..5 {
            assert_eq!(p.judge(a, r, t).reason, Reason::SourceRate);
        }
        assert_eq!(p.judge(b, r, t).reason, Reason::WithinRate);
        assert_eq!(p.judge(b, r, t).reason, Reason::SourceRate);
        assert_eq!(drained(&mut p), [a, b], "one request per source");
        // Still over its rate within the period: no second request.
        assert_eq!(p.judge(a, r, t + 9 * SEC).reason, Reason::WithinRate);
        assert_eq!(p.judge(a, r, t + 9 * SEC).reason, Reason::SourceRate);
        assert!(drained(&mut p).is_empty());
        // Once the period is over, the next dropped RST asks again.
        assert_eq!(p.judge(a, r, t + 10 * SEC).reason, Reason::WithinRate);
        assert_eq!(p.judge(a, r, t + 10 * SEC).reason, Reason::SourceRate);
        assert_eq!(drained(&mut p), [a]);
        // A clock stepped back by more than a period asks again too.
        assert_eq!(p.judge(a, r, SEC).reason, Reason::SourceRate);
        assert_eq!(drained(&mut p), [a]);
        assert_eq!(
            p.block_stats(),
            BlockStats {
                requested: 4,
                would_block: 0,
                lost: 0
            }
        );
    }

    #[test]
    fn policy_blocks_only_for_the_source_rate() {
        let r = Some(RstClass::NoFlow);
        let t = 5 * SEC;
        // Off by default.
        let mut off = policy(&[
            "mode=enforce",
            "actions.no_flow=ratelimit",
            "ratelimit.per_source_burst=1",
        ]);
        for _ in 0..10 {
            off.judge(ip("192.0.2.1"), r, t);
        }
        assert!(drained(&mut off).is_empty());
        assert_eq!(off.block_stats(), BlockStats::default());
        // The global budget running dry is nobody's fault in particular.
        let mut p = blocking(&[
            "ratelimit.per_source_burst=100",
            "ratelimit.global_burst=1",
            "ratelimit.global_rate=1",
        ]);
        assert_eq!(p.judge(ip("192.0.2.1"), r, t).reason, Reason::WithinRate);
        assert_eq!(p.judge(ip("192.0.2.1"), r, t).reason, Reason::GlobalRate);
        assert!(drained(&mut p).is_empty());
        // Neither a class drop nor the deny list is a rate.
        let mut p = blocking(&["lists.deny=198.19.0.0/16", "lists.allow=192.0.2.0/24"]);
        for _ in 0..5 {
            assert_eq!(p.judge(ip("198.19.0.1"), r, t).reason, Reason::DenyList);
            assert_eq!(p.judge(ip("192.0.2.1"), r, t).reason, Reason::AllowList);
            p.judge(ip("203.0.113.1"), Some(RstClass::InWindow), t);
        }
        assert!(drained(&mut p).is_empty());
    }

    #[test]
    fn policy_block_request_names_the_address_not_its_64() {
        let mut p = blocking(&[]);
        let r = Some(RstClass::NoFlow);
        let t = 3 * SEC;
        assert_eq!(
            p.judge(ip("2001:db8:0:1::1"), r, t).reason,
            Reason::WithinRate
        );
        // The /64's bucket is empty: the address that found it so is the
        // one asked for, once for the whole /64.
        assert_eq!(
            p.judge(ip("2001:db8:0:1::2"), r, t).reason,
            Reason::SourceRate
        );
        assert_eq!(
            p.judge(ip("2001:db8:0:1::3"), r, t).reason,
            Reason::SourceRate
        );
        assert_eq!(drained(&mut p), [ip("2001:db8:0:1::2")]);
    }

    #[test]
    fn policy_full_block_ring_counts_lost_requests_and_asks_again() {
        let mut p = blocking(&["ratelimit.global_burst=1000000"]);
        let r = Some(RstClass::NoFlow);
        let t = 7 * SEC;
        let n = Policy::BLOCK_RING_CAPACITY as u32 + 3;
        let src = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..n {
            assert_eq!(p.judge(src(i), r, t).reason, Reason::WithinRate);
            assert_eq!(p.judge(src(i), r, t).reason, Reason::SourceRate);
        }
        let stats = p.block_stats();
        assert_eq!(stats.requested, Policy::BLOCK_RING_CAPACITY as u64);
        assert_eq!(stats.lost, 3);
        let got = drained(&mut p);
        assert_eq!(got.len(), Policy::BLOCK_RING_CAPACITY);
        assert_eq!(got[0], src(0));
        // The lost ones were not marked as asked for: their next dropped
        // RST asks again, and now there is room.
        for i in 0..n {
            assert_eq!(p.judge(src(i), r, t).reason, Reason::SourceRate);
        }
        assert_eq!(drained(&mut p), (n - 3..n).map(src).collect::<Vec<_>>());
        assert_eq!(p.block_stats().lost, 3);
    }

    #[test]
    fn policy_monitor_counts_would_block_and_requests_nothing() {
        let mut p = blocking(&["mode=monitor"]);
        let r = Some(RstClass::NoFlow);
        let a = ip("192.0.2.1");
        for i in 0..5 {
            let d = p.judge(a, r, 2 * SEC);
            assert_eq!(d.verdict, Verdict::Pass);
            assert_eq!(d.reason.drops(), i > 0);
        }
        assert!(drained(&mut p).is_empty(), "monitor mode blocks nothing");
        // Counted once per period, as enforce would have asked.
        assert_eq!(
            p.block_stats(),
            BlockStats {
                requested: 0,
                would_block: 1,
                lost: 0
            }
        );
        p.judge(a, r, 12 * SEC);
        p.judge(a, r, 12 * SEC);
        assert_eq!(p.block_stats().would_block, 2);
    }

    #[test]
    fn policy_replacement_keeps_block_counts_and_pending_requests() {
        let r = Some(RstClass::NoFlow);
        let mut old = blocking(&[]);
        old.judge(ip("192.0.2.1"), r, SEC);
        old.judge(ip("192.0.2.1"), r, SEC);
        let mut new = blocking(&["mode=monitor"]);
        new.carry_over(&mut old);
        assert!(drained(&mut old).is_empty());
        assert_eq!(new.block_stats().requested, 1);
        assert_eq!(drained(&mut new), [ip("192.0.2.1")]);
    }
}
