//! The frame-source seam: what every source of frames shares.
//!
//! A *source* brings frames to engines: the AF_XDP workers
//! (`rstwall-afxdp`) today, host mode's ring buffer next. Each runs one
//! worker per queue (or per CPU), and each worker runs its own
//! [`Engine`](rstwall_engine::engine::Engine). What a worker does besides
//! its I/O is the same whatever the source, and lives here:
//!
//! * [`WorkerCore`] — the engine over each batch, the policy switch between
//!   batches ([`PolicySlot`]: latest wins, so every packet is judged by one
//!   whole policy), the live [`CaptureTap`], the sources the policy asks to
//!   block, the control side's [`Query`]s, the published
//!   [`WorkerStats`] and, when asked for, every RST handed off the packet
//!   path ([`RstSink`], for the fleet exporter);
//! * [`Spawner`] and [`Workers`] — the workers' threads (pinned, one each),
//!   their channels to the control side, stop, and a worker that failed;
//! * [`SourceHandle`] — the clonable handle the control API's threads ask
//!   the workers through (flows, telemetry, capture);
//! * [`WorkerStats`] and [`Totals`] — the statistics every source has, with
//!   the source's own part ([`SourceStats`]) flattened into them;
//! * [`StopOnDrop`] — a thread beside the workers (an interface watcher, a
//!   lab's sniffer) that stops and is joined when its owner is dropped.
//!
//! A source's worker loop owns only its I/O and calls its core:
//!
//! ```text
//!   while core.running() {
//!       core.take_new_policy();
//!       receive a batch (source I/O)
//!       let t = core.judge_batch(link, &batch, bytes_of, |frame, verdict| place it (source I/O));
//!       core.batch_done(t);
//!       nothing received for a while: wait (source I/O), core.record_sleep()
//!       if core.publish_due(slept) { core.publish(source's own stats) }
//!   }
//! ```
//!
//! and the control side drives every running source through [`Source`].
//! None of it costs the per-packet path more than an atomic load per loop
//! iteration: a worker looks at the policy slot's version and the capture
//! switch once per batch, and at its question queue when it publishes.

mod capture;
mod latency;
mod policy_slot;
mod query;
mod rst_events;
mod stats;
mod stop_on_drop;
pub mod sys;
mod worker;
mod workers;

use std::fmt;

pub use capture::{
    CaptureFilter, CaptureSession, CaptureTap, Captured, CAPTURE_POOL, CAPTURE_SNAPLEN,
};
pub use latency::{BatchLatency, LatencySummary};
pub use policy_slot::PolicySlot;
pub use query::{FlowFilter, FlowRow, Query, QueryError, SourceHandle};
pub use rst_events::{rst_channel, RstRecord, RstSink};
pub use stats::{SourceStats, Totals, WorkerStats};
pub use stop_on_drop::StopOnDrop;
pub use worker::WorkerCore;
pub use workers::{Spawner, WorkerError, Workers, WorkersConfig};

/// A running source of frames, as the control side drives it: its workers
/// (statistics, policy, questions, capture, block requests, failures), a
/// description of where its frames come from, and stop.
pub trait Source {
    /// What the source adds to each worker's statistics.
    type Stats: SourceStats;
    /// One place frames come from (an AF_XDP socket: port, queue, bind
    /// mode), as the start-up log names it.
    type Endpoint: fmt::Display;

    fn workers(&self) -> &Workers<Self::Stats>;
    fn workers_mut(&mut self) -> &mut Workers<Self::Stats>;
    fn endpoints(&self) -> &[Self::Endpoint];

    /// Stop the workers and close the source's I/O; each worker's final
    /// statistics. The source has no workers from then on.
    fn stop(&mut self) -> Result<Vec<WorkerStats<Self::Stats>>, WorkerError>;
}
