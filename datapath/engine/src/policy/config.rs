//! The operator's policy, validated: [`PolicyConfig`], the checks every
//! value passes whichever way it comes in (a file or `set`), and its TOML
//! form going out.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

use crate::names::alternatives;
use crate::RstClass;

use super::error::PolicyError;
use super::ratelimit::Rate;
use super::verdict::{Action, Mode};

const TOP_KEYS: &str = "mode, actions.<class>, ratelimit.<field>, lists.allow or lists.deny";

pub(super) fn parse_mode(s: &str) -> Result<Mode, PolicyError> {
    s.parse().map_err(|_| PolicyError::UnknownMode {
        value: s.to_string(),
    })
}

pub(super) fn parse_class(name: &str) -> Result<RstClass, PolicyError> {
    name.parse().map_err(|_| PolicyError::UnknownClass {
        name: name.to_string(),
    })
}

pub(super) fn parse_action(key: &str, s: &str) -> Result<Action, PolicyError> {
    s.parse().map_err(|_| PolicyError::UnknownAction {
        key: key.to_string(),
        value: s.to_string(),
    })
}

/// A CIDR or a bare host address, normalized to its network. Parsed with
/// std's address parser (which rejects octal-looking octets) and a strict
/// decimal prefix length.
pub(super) fn parse_cidr(key: impl FnOnce() -> String, s: &str) -> Result<IpNet, PolicyError> {
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
    pub(super) enum RateField: "ratelimit key" {
        PerSourceRate,
        PerSourceBurst,
        GlobalRate,
        GlobalBurst,
        SourceTableSize,
        BlockSeconds,
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

    pub(super) fn slot(self, rl: &mut RateLimitConfig) -> &mut u64 {
        match self {
            RateField::PerSourceRate => &mut rl.per_source_rate,
            RateField::PerSourceBurst => &mut rl.per_source_burst,
            RateField::GlobalRate => &mut rl.global_rate,
            RateField::GlobalBurst => &mut rl.global_burst,
            RateField::SourceTableSize => &mut rl.source_table_size,
            RateField::BlockSeconds => &mut rl.block_seconds,
        }
    }

    pub(super) fn check(self, value: i128) -> Result<u64, PolicyError> {
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
/// [`PolicyConfig::from_toml_str`] or [`PolicyConfig::set`]; every way
/// in runs the same checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    pub(super) mode: Mode,
    pub(super) actions: [Action; RstClass::COUNT],
    pub(super) ratelimit: RateLimitConfig,
    pub(super) allow: Vec<IpNet>,
    pub(super) deny: Vec<IpNet>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::*;

    #[test]
    fn policy_ratelimit_key_names() {
        crate::names::assert_consistent::<RateField>();
    }

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
}
