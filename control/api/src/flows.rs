//! `GET /v1/flows`: tracked flows.

use rstwall_source::FlowRow;
use serde::{Deserialize, Serialize};

/// The flows document: at most `limit` rows, from every worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flows {
    pub flows: Vec<FlowRow>,
    pub count: usize,
    /// The limit asked for: `count == limit` means there may be more.
    pub limit: usize,
}
