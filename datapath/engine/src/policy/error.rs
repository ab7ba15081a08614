//! Why a policy was rejected, and where in its file.

use std::fmt;

use crate::names::alternatives;
use crate::RstClass;

use super::verdict::{Action, Mode};

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
/// (`lists.allow[2]: ...`); from a file's text, it is wrapped in
/// [`PolicyError::At`] (`line 7, column 11: ...`). Whoever reads the file
/// names it.
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
}

impl PolicyError {
    /// Where in the file the error is, if it came from a file's text.
    pub fn location(&self) -> Option<Location> {
        match self {
            PolicyError::At { at, .. } => Some(*at),
            _ => None,
        }
    }

    /// The error without its location.
    pub fn inner(&self) -> &PolicyError {
        match self {
            PolicyError::At { error, .. } => error.inner(),
            e => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::testing::*;

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
}
