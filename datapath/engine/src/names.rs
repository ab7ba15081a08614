//! One definition of every closed enum's names.
//!
//! rstwall names its closed sets of values — RST classes, TCP flag
//! classes, policy modes, actions and reasons, flow states, XDP counters —
//! in policy files, JSON documents, metrics labels, CLI arguments and the
//! BPF shared header. Each such enum is declared once with
//! [`closed_enum!`](crate::closed_enum), which takes each name from the
//! variant's identifier in snake case (`SynSentBadAck` is
//! `syn_sent_bad_ack`), or from an explicit `= "name"` where it differs, and
//! derives everything else from that one declaration: `COUNT`, `ALL`, `NAMES`,
//! `as_str()`, `index()`, [`FromStr`], [`Display`](fmt::Display) and serde's
//! `Serialize`/`Deserialize` (both through `as_str`, so a document can
//! never spell a name differently from a label or a policy file).
//!
//! # Why a declarative macro and not `strum`
//!
//! * `as_str()` and `index()` are `const fn` here: `ALL`, per-class array
//!   sizes and compile-time checks (the XDP counters against
//!   [`FlagClass`](crate::FlagClass)) use them in constant context, and on
//!   the per-packet path they are a table load and a cast. strum's
//!   `IntoStaticStr`/`AsRefStr` are trait methods, not `const`.
//! * strum and serde each want the names in their own attribute
//!   (`#[strum(serialize)]` and `#[serde(rename)]`): two spellings per
//!   variant, which is how `FlagClass` came to say `synack` in metrics and
//!   `syn_ack` in serde. Here serde goes through `as_str`, so there is one.
//! * It is forty lines with no dependency beyond serde, which every crate
//!   that names things already uses (and reaches through this crate, so a
//!   user needs no serde dependency of its own).
//!
//! Every enum declared here has one test, [`assert_consistent`], that
//! proves the derived forms agree.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::Serialize;

#[doc(hidden)]
pub use serde as __serde;

/// What [`closed_enum!`](crate::closed_enum) derives, for code generic over named enums (and
/// for [`assert_consistent`]). The same items exist as inherent `const`
/// items and `const fn`s on each enum.
pub trait ClosedEnum:
    Copy + Eq + fmt::Debug + fmt::Display + FromStr + Serialize + DeserializeOwned + 'static
{
    /// What one value is called in messages ("RST class", "flow state").
    const KIND: &'static str;
    /// Every value, in index order.
    const ALL: &'static [Self];
    /// Every name, in index order.
    const NAMES: &'static [&'static str];
    fn as_str(self) -> &'static str;
    fn index(self) -> usize;
}

/// A name that is none of a closed enum's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// [`ClosedEnum::KIND`].
    pub kind: &'static str,
    /// What was given.
    pub name: String,
    /// [`ClosedEnum::NAMES`].
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}` (expected one of: {})",
            self.kind,
            self.name,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

/// For callers whose errors are strings (an API error body, `clap`).
impl From<UnknownName> for String {
    fn from(e: UnknownName) -> String {
        e.to_string()
    }
}

/// `a, b or c`: a short list of names for an error message.
pub fn alternatives(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The length of [`snake_case`]'s result: one byte more per upper-case
/// ASCII letter after the first.
#[doc(hidden)]
pub const fn snake_case_len(ident: &str) -> usize {
    let bytes = ident.as_bytes();
    let mut len = bytes.len();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i].is_ascii_uppercase() {
            len += 1;
        }
        i += 1;
    }
    len
}

/// A variant's default name, at compile time: `SynSentBadAck` is
/// `syn_sent_bad_ack`. `N` is [`snake_case_len`]`(ident)`.
#[doc(hidden)]
pub const fn snake_case<const N: usize>(ident: &str) -> [u8; N] {
    let bytes = ident.as_bytes();
    let mut out = [0u8; N];
    let (mut i, mut o) = (0, 0);
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_uppercase() {
            if i > 0 {
                out[o] = b'_';
                o += 1;
            }
            out[o] = b.to_ascii_lowercase();
        } else {
            out[o] = b;
        }
        o += 1;
        i += 1;
    }
    assert!(o == N, "N is snake_case_len(ident)");
    out
}

/// Declare a closed enum whose every variant has one name.
///
/// ```
/// rstwall_engine::closed_enum! {
///     /// Which way a packet goes.
///     #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
///     pub enum Direction: "direction" {
///         /// Towards the server.
///         Inbound,
///         Outbound,
///         /// Neither way: named explicitly, not `lateral`.
///         Lateral = "sideways",
///         NoRoute,
///     }
/// }
/// assert_eq!(Direction::Outbound.as_str(), "outbound");
/// assert_eq!(Direction::Lateral.as_str(), "sideways");
/// assert_eq!(Direction::NoRoute.as_str(), "no_route");
/// assert_eq!(Direction::Outbound.index(), 1);
/// assert_eq!("inbound".parse::<Direction>().unwrap(), Direction::Inbound);
/// assert_eq!(
///     "up".parse::<Direction>().unwrap_err().to_string(),
///     "unknown direction `up` (expected one of: inbound, outbound, sideways, no_route)"
/// );
/// ```
///
/// Variants take their indices (and discriminants) in declaration order.
/// A variant's name is its identifier in snake case: each upper-case letter
/// after the first becomes `_` and its lower-case form (`InWindow` is
/// `in_window`; `Ipv4` is `ipv4`). Where the name differs, write it after
/// `=`: a string literal, or any constant `&'static str` expression:
/// an enum whose values include another's takes those names from it
/// (`Syn = FlagClass::Syn.as_str()`), so they are still written once.
/// `FromStr` fails with [`UnknownName`], or with a type of the caller's
/// choosing written after `else` (it must implement `From<UnknownName>`):
/// `pub enum XdpMode: "XDP mode" else UnknownXdpMode { ... }`.
#[macro_export]
macro_rules! closed_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident : $kind:literal $(else $err:ty)? {
            $( $(#[$vmeta:meta])* $variant:ident $(= $text:expr)? ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Number of values; sizes per-value arrays.
            pub const COUNT: usize = [$($name::$variant),+].len();
            /// Every value, in index order.
            pub const ALL: [$name; $name::COUNT] = [$($name::$variant),+];
            /// Every name, in index order.
            pub const NAMES: [&'static str; $name::COUNT] =
                [$($crate::closed_enum!(@name $variant $($text)?)),+];

            /// The one name of this value: in files, documents, labels and
            /// messages alike.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $crate::closed_enum!(@name $variant $($text)?), )+
                }
            }

            /// Index into per-value arrays (`0..COUNT`).
            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        impl $crate::names::ClosedEnum for $name {
            const KIND: &'static str = $kind;
            const ALL: &'static [$name] = &$name::ALL;
            const NAMES: &'static [&'static str] = &$name::NAMES;
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
            fn index(self) -> usize {
                $name::index(self)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::closed_enum!(@err $($err)?);
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match $name::NAMES.iter().position(|&n| n == s) {
                    Some(i) => Ok($name::ALL[i]),
                    None => Err($crate::names::UnknownName {
                        kind: $kind,
                        name: s.to_string(),
                        expected: &$name::NAMES,
                    }
                    .into()),
                }
            }
        }

        impl $crate::names::__serde::Serialize for $name {
            fn serialize<S: $crate::names::__serde::Serializer>(
                &self,
                s: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> $crate::names::__serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::names::__serde::Deserializer<'de>>(
                d: D,
            ) -> ::std::result::Result<Self, D::Error> {
                struct Visitor;
                impl $crate::names::__serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        write!(f, "a {} name", $kind)
                    }
                    fn visit_str<E: $crate::names::__serde::de::Error>(
                        self,
                        v: &str,
                    ) -> ::std::result::Result<$name, E> {
                        v.parse()
                            .map_err(|_| E::unknown_variant(v, &$name::NAMES))
                    }
                }
                d.deserialize_str(Visitor)
            }
        }
    };
    (@name $variant:ident $text:expr) => { $text };
    (@name $variant:ident) => {{
        const BYTES: [u8; $crate::names::snake_case_len(stringify!($variant))] =
            $crate::names::snake_case(stringify!($variant));
        const NAME: &str = match ::core::str::from_utf8(&BYTES) {
            Ok(name) => name,
            Err(_) => panic!("an identifier's snake case is UTF-8"),
        };
        NAME
    }};
    (@err) => { $crate::names::UnknownName };
    (@err $err:ty) => { $err };
}

/// Panics unless `E`'s derived forms agree: indices dense `0..COUNT` in
/// `ALL` order, names unique, `as_str` round-trips through `FromStr`,
/// `Display` is `as_str`, serde writes `as_str` and reads it back, and an
/// unknown name is refused by both `FromStr` and serde. The one test every
/// [`closed_enum!`](crate::closed_enum) gets.
pub fn assert_consistent<E: ClosedEnum>() {
    assert_eq!(E::ALL.len(), E::NAMES.len(), "{}: ALL and NAMES", E::KIND);
    for (i, &v) in E::ALL.iter().enumerate() {
        let name = v.as_str();
        assert_eq!(v.index(), i, "{} {name}: index", E::KIND);
        assert_eq!(E::NAMES[i], name, "{} {name}: NAMES", E::KIND);
        assert_eq!(
            E::NAMES.iter().filter(|&&n| n == name).count(),
            1,
            "{} {name}: names are unique",
            E::KIND
        );
        assert_eq!(
            name.parse::<E>().ok(),
            Some(v),
            "{} {name}: FromStr",
            E::KIND
        );
        assert_eq!(v.to_string(), name, "{} {name}: Display", E::KIND);
        // serde's data model, through a format that keeps a bare string.
        let written = toml::Value::try_from(v).expect("serializes");
        assert_eq!(
            written,
            toml::Value::String(name.to_string()),
            "{} {name}: serde writes the name",
            E::KIND
        );
        assert_eq!(
            written.try_into::<E>().ok(),
            Some(v),
            "{} {name}: serde reads the name",
            E::KIND
        );
    }
    let bogus = "no such name";
    assert!(bogus.parse::<E>().is_err(), "{}: FromStr refuses", E::KIND);
    assert!(
        toml::Value::String(bogus.into()).try_into::<E>().is_err(),
        "{}: serde refuses",
        E::KIND
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::closed_enum! {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Light: "light" {
            Red,
            Amber,
            Green,
        }
    }

    #[test]
    fn derived_forms_agree() {
        assert_consistent::<Light>();
        assert_eq!(Light::COUNT, 3);
        assert_eq!(Light::NAMES, ["red", "amber", "green"]);
        // Usable in constant context.
        const AMBER: (usize, &str) = (Light::Amber.index(), Light::Amber.as_str());
        assert_eq!(AMBER, (1, "amber"));
    }

    crate::closed_enum! {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Named: "named" {
            One,
            TwoWords,
            ThreeWordsLong,
            Ipv4,
            Explicit = "other",
            FromAnother = Light::Amber.as_str(),
        }
    }

    #[test]
    fn names_are_the_identifiers_in_snake_case_unless_written() {
        assert_consistent::<Named>();
        assert_eq!(
            Named::NAMES,
            [
                "one",
                "two_words",
                "three_words_long",
                "ipv4",
                "other",
                "amber"
            ]
        );
        assert_eq!((snake_case_len("A"), snake_case_len("SynAckOk")), (1, 10));
        assert_eq!(&snake_case::<10>("SynAckOk"), b"syn_ack_ok");
    }

    #[test]
    fn unknown_names_say_what_was_expected() {
        let e = "blue".parse::<Light>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown light `blue` (expected one of: red, amber, green)"
        );
        assert_eq!(String::from(e.clone()), e.to_string());
        let json = serde_json::from_str::<Light>("\"blue\"").unwrap_err();
        assert!(
            json.to_string()
                .starts_with("unknown variant `blue`, expected one of `red`, `amber`, `green`"),
            "{json}"
        );
        assert_eq!(serde_json::to_string(&Light::Green).unwrap(), "\"green\"");
    }

    #[test]
    fn alternatives_read_as_a_sentence() {
        assert_eq!(alternatives(&[]), "");
        assert_eq!(alternatives(&["a"]), "a");
        assert_eq!(alternatives(&["a", "b"]), "a or b");
        assert_eq!(alternatives(&["a", "b", "c"]), "a, b or c");
    }
}
