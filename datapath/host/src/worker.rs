//! A host-mode worker: its ring buffer, read a batch at a time in place,
//! through the engine (the worker core's), each judged RST on to the
//! correlator. The per-packet path reads ring memory and the engine's
//! tables; it allocates nothing, takes no lock and makes no syscall (the
//! interface table is read only for RSTs).

use std::io;
use std::time::{Duration, Instant};

use crossbeam::channel::Sender;
use rstwall_bpf::host::{RecordAt, RingReader};
use rstwall_bpf::shared::host::{self as shared, Record};
use rstwall_engine::wire::LinkType;
use rstwall_source::WorkerCore;

use crate::event::{Direction, SeenRst};
use crate::ifaces::IfaceTable;
use crate::stats::{HostWorker, HostWorkerStats};

/// Empty polls before a worker sleeps on its ring.
const SPINS_BEFORE_SLEEP: u32 = 4;
/// Longest sleep. The tc programs wake the worker only when its ring is a
/// quarter full (a wakeup per packet would cost the traffic more than the
/// whole observation), so this is also how late a record is read: a few
/// milliseconds, a batch at a time.
const MAX_SLEEP: Duration = Duration::from_millis(2);

pub(crate) struct Worker {
    pub ring_index: usize,
    pub ring: RingReader,
    pub batch: usize,
    pub rsts: Sender<SeenRst>,
    pub ifaces: IfaceTable,
}

fn link_of(r: &Record) -> LinkType {
    if r.link == shared::LINK_RAW {
        LinkType::Raw
    } else {
        LinkType::Ethernet
    }
}

/// A record's fixed part (all zero if it is too short), and its frame.
#[inline]
fn split(bytes: &[u8]) -> (Record, &[u8]) {
    let r = Record::read(bytes).unwrap_or_default();
    let end = (shared::RECORD_SIZE + usize::from(r.caplen)).min(bytes.len());
    (r, bytes.get(shared::RECORD_SIZE..end).unwrap_or(&[]))
}

impl Worker {
    pub fn run(mut self, core: &mut WorkerCore<HostWorkerStats>) -> io::Result<HostWorkerStats> {
        let mut stats = HostWorkerStats(HostWorker {
            ring: self.ring_index,
            ..Default::default()
        });
        let mut taken: Vec<RecordAt> = Vec::with_capacity(self.batch);
        let mut idle = 0u32;
        while core.running() {
            core.take_new_policy();
            let mut slept = false;
            let n = self.ring.take(&mut taken, self.batch);
            if n > 0 {
                idle = 0;
                self.judge(core, &taken, &mut stats);
                self.ring.release();
            } else {
                idle += 1;
                if idle >= SPINS_BEFORE_SLEEP {
                    idle = 0;
                    slept = true;
                    core.record_sleep();
                    let wait = core
                        .next_publish()
                        .saturating_duration_since(Instant::now())
                        .min(MAX_SLEEP);
                    self.ring.wait(wait)?;
                } else {
                    std::hint::spin_loop();
                }
            }
            if core.publish_due(slept) {
                core.publish(stats.clone());
            }
        }
        Ok(stats)
    }

    /// One batch: runs of records of one link type through the engine.
    fn judge(
        &self,
        core: &mut WorkerCore<HostWorkerStats>,
        taken: &[RecordAt],
        stats: &mut HostWorkerStats,
    ) {
        let ring = &self.ring;
        let mut start = 0;
        while start < taken.len() {
            let (first, _) = split(ring.record(&taken[start]));
            let link = link_of(&first);
            let len = taken[start..]
                .iter()
                .position(|at| link_of(&split(ring.record(at)).0) != link)
                .unwrap_or(taken.len() - start);
            let run = &taken[start..start + len];
            let t = core.judge_batch_with(
                link,
                run,
                |at| split(ring.record(at)).1,
                |at, judged| {
                    let bytes = ring.record(at);
                    let (r, frame) = split(bytes);
                    stats.0.counts.records += 1;
                    stats.0.counts.record_bytes += bytes.len() as u64;
                    stats.0.counts.wire_bytes += u64::from(r.wire_len);
                    if frame.len() < usize::from(r.caplen) {
                        stats.0.counts.bad_records += 1;
                    }
                    let Some(judgment) = judged.rst() else { return };
                    let Some(packet) = judged.outcome().packet else {
                        return;
                    };
                    let direction = if self.is_loopback(r.ifindex) {
                        Direction::Local
                    } else if r.direction == shared::DIR_IN {
                        Direction::In
                    } else {
                        Direction::Out
                    };
                    let mut headers = [0u8; shared::SNAPLEN];
                    let n = frame.len().min(shared::SNAPLEN);
                    headers[..n].copy_from_slice(&frame[..n]);
                    let seen = SeenRst {
                        mono_ns: r.ts_ns,
                        ifindex: r.ifindex,
                        direction,
                        packet,
                        judgment,
                        decision: judged.decision(),
                        headers,
                        caplen: n as u16,
                    };
                    if self.rsts.try_send(seen).is_err() {
                        stats.0.counts.rsts_dropped += 1;
                    }
                },
            );
            core.batch_done(t);
            start += len;
        }
    }

    fn is_loopback(&self, ifindex: u32) -> bool {
        self.ifaces
            .read()
            .map(|t| t.get(&ifindex).is_some_and(|i| i.loopback))
            .unwrap_or(false)
    }
}
