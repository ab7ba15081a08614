//! Operator blocks: `GET`, `POST` and `DELETE /v1/blocks`.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The blocks in force (`GET /v1/blocks`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockList {
    pub blocks: Vec<Block>,
    /// False in monitor mode: blocked TCP is counted as would-drop.
    pub enforced: bool,
}

/// One block. Times are seconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub cidr: IpNet,
    pub added: u64,
    /// When it ends by itself (`null`: when removed).
    pub until: Option<u64>,
    pub ttl_left_s: Option<u64>,
}

/// Block a network (`POST /v1/blocks`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockAdd {
    /// A CIDR or a bare address ([`crate::parse_cidr`]).
    pub cidr: String,
    /// How long, in seconds (`null`: until removed).
    #[serde(default)]
    pub ttl_s: Option<u64>,
}

/// The answer to [`BlockAdd`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockAdded {
    pub cidr: IpNet,
    pub until: Option<u64>,
    pub enforced: bool,
    /// The generation handed to the workers.
    pub generation: u64,
}

/// The answer to `DELETE /v1/blocks?cidr=C`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRemoved {
    pub cidr: IpNet,
    pub generation: u64,
}
