//! The control side's questions to the workers, answered between batches,
//! and the clonable handle the control API's threads ask them through.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Sender};
use serde::{Deserialize, Serialize};

use rstwall_engine::flow::{Flow, FlowKey, FlowState, Side};
use rstwall_engine::telemetry::Snapshot;

use crate::capture::CaptureTap;

/// A flow as `rstwall flows` shows it: a row of the control API's flows
/// document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRow {
    /// The side that sent the first SYN when the handshake was seen, else
    /// the lower address.
    pub client: IpAddr,
    pub client_port: u16,
    pub server: IpAddr,
    pub server_port: u16,
    pub state: FlowState,
    /// Picked up without its handshake.
    pub midstream: bool,
    /// Seconds since the flow last saw a packet.
    pub idle_s: u32,
    pub worker: usize,
}

impl FlowRow {
    /// The row for a table entry.
    pub fn new(key: &FlowKey, flow: &Flow, idle_s: u32, worker: usize) -> FlowRow {
        let client_side = flow.origin().unwrap_or(Side::Lo);
        let (client, client_port) = key.endpoint(client_side);
        let (server, server_port) = key.endpoint(client_side.peer());
        FlowRow {
            client,
            client_port,
            server,
            server_port,
            state: flow.state(),
            midstream: flow.picked_up_midstream(),
            idle_s,
            worker,
        }
    }
}

/// Which flows a [`Query::Flows`] wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowFilter {
    pub state: Option<FlowState>,
    /// At most this many rows per worker.
    pub limit: usize,
}

/// A question for a worker, answered between batches when it next
/// publishes (within [`crate::WorkersConfig::publish_every`]).
#[derive(Debug)]
pub enum Query {
    /// Its tracked flows.
    Flows {
        filter: FlowFilter,
        reply: Sender<Vec<FlowRow>>,
    },
    /// Its telemetry: top lists of `top` rows, per-second history, alerts.
    Telemetry { top: usize, reply: Sender<Snapshot> },
}

impl Query {
    /// What a worker scans for a flows query: the whole table when a state
    /// filter is given, but never more than this many entries per question
    /// (a worker must not stall for long; a million-flow table takes about
    /// 10 ms to walk).
    pub const MAX_FLOW_SCAN: usize = 1 << 20;
}

/// Questions waiting per worker: a few clients at once.
pub(crate) const QUERIES_QUEUED: usize = 16;

/// Why a question to the workers got no full answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the workers are busy: too many questions waiting")]
    Busy,
    #[error("worker {worker} did not answer within {timeout:?}")]
    Timeout { worker: usize, timeout: Duration },
}

/// The workers' question queues and the capture tap: clonable, for the
/// control API's threads. Every call waits for all workers (each answers
/// within a publish interval) or gives up after `timeout`.
#[derive(Clone, Debug)]
pub struct SourceHandle {
    pub(crate) queries: Vec<Sender<Query>>,
    pub(crate) capture: Arc<CaptureTap>,
}

impl SourceHandle {
    pub fn workers(&self) -> usize {
        self.queries.len()
    }

    /// Tracked flows, up to `filter.limit` in all.
    pub fn flows(&self, filter: FlowFilter, timeout: Duration) -> Result<Vec<FlowRow>, QueryError> {
        let answers = self.ask(timeout, |reply| Query::Flows { filter, reply })?;
        let mut rows: Vec<FlowRow> = answers.into_iter().flat_map(|(_, r)| r).collect();
        rows.truncate(filter.limit);
        Ok(rows)
    }

    /// Every worker's telemetry snapshot, in worker order.
    pub fn telemetry(&self, top: usize, timeout: Duration) -> Result<Vec<Snapshot>, QueryError> {
        let answers = self.ask(timeout, |reply| Query::Telemetry { top, reply })?;
        Ok(answers.into_iter().map(|(_, s)| s).collect())
    }

    /// Ask every worker; their answers in worker order.
    fn ask<T>(
        &self,
        timeout: Duration,
        make: impl Fn(Sender<T>) -> Query,
    ) -> Result<Vec<(usize, T)>, QueryError> {
        let deadline = Instant::now() + timeout;
        let mut pending = Vec::with_capacity(self.queries.len());
        for (worker, q) in self.queries.iter().enumerate() {
            let (tx, rx) = channel::bounded(1);
            q.try_send(make(tx)).map_err(|_| QueryError::Busy)?;
            pending.push((worker, rx));
        }
        pending
            .into_iter()
            .map(|(worker, rx)| {
                rx.recv_deadline(deadline)
                    .map(|a| (worker, a))
                    .map_err(|_| QueryError::Timeout { worker, timeout })
            })
            .collect()
    }

    /// The workers' live capture.
    pub fn capture(&self) -> &Arc<CaptureTap> {
        &self.capture
    }
}
