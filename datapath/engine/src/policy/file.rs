//! The policy file: TOML read into spanned values, then typed and checked
//! with the same checks as `set`, so a bad value is reported with its key
//! and its line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use toml::{Spanned, Value};

use super::config::PolicyConfig;
use super::config::{parse_action, parse_cidr, parse_class, parse_mode, RateField};
use super::error::{Location, PolicyError};

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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::*;
    use crate::policy::{Action, Mode, RateLimitConfig};
    use crate::RstClass;

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
}
