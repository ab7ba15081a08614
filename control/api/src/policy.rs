//! The policy's documents and request bodies: `GET /v1/policy`,
//! `PUT /v1/policy`, `POST /v1/policy/set`, `POST /v1/policy/diff`.

use rstwall_engine::policy::Mode;
use serde::{Deserialize, Serialize};

/// The running policy (`GET /v1/policy`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyShow {
    pub version: u64,
    pub digest: String,
    pub mode: Mode,
    /// The policy as a policy file.
    pub toml: String,
    /// Operator blocks in force.
    pub blocks: usize,
}

/// The answer to a change (`PUT /v1/policy`, `POST /v1/policy/set`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChange {
    /// False: the running policy already said so; nothing was done.
    pub changed: bool,
    /// The running policy's version and digest, after the change.
    pub version: u64,
    pub digest: String,
    /// Its mode, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// The generation handed to the workers.
    pub generation: u64,
}

/// What `PUT /v1/policy` would change (`POST /v1/policy/diff`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDiff {
    /// The running policy's version.
    pub version: u64,
    pub changed: bool,
    /// A unified diff, running policy first.
    pub diff: String,
}

/// A whole policy file: the body of `PUT /v1/policy` and
/// `POST /v1/policy/diff`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    pub toml: String,
}

/// `KEY=VALUE` assignments, applied together: the body of
/// `POST /v1/policy/set`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySet {
    pub set: Vec<String>,
}
