//! Every RST a worker judged, handed off the packet path: for the fleet
//! exporter (`rstwall-export`), which streams them to NATS JetStream.
//!
//! The hand-off is a bounded channel of plain, fixed-size records: a
//! worker makes one per RST and tries to put it in; it never waits. A
//! full channel (the reader is behind) loses the record, and the loss is
//! counted in [`RstSink::dropped`], which the reader reports. A worker
//! without a sink ([`crate::Spawner::send_rsts_to`] not called) pays one
//! branch per batch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::channel::{self, Receiver, Sender, TrySendError};

use rstwall_engine::engine::PacketInfo;
use rstwall_engine::flow::RstJudgment;
use rstwall_engine::policy::Decision;

/// One RST as a worker judged it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RstRecord {
    /// When its batch was judged, ns since the Unix epoch (the engine's
    /// clock: one read per batch).
    pub ts_ns: u64,
    /// The worker that judged it.
    pub worker: u32,
    pub packet: PacketInfo,
    pub rst: RstJudgment,
    pub decision: Decision,
}

impl RstRecord {
    /// A refused RST (198.18.0.2:7211 answering a SYN from
    /// 198.18.0.1:`40000 + seq % 1000`, passed), its sequence number
    /// `seq`: for examples, tests and benchmarks of what reads records.
    pub fn example(seq: u32) -> RstRecord {
        RstRecord {
            ts_ns: 1_700_000_000_123_456_789 + u64::from(seq),
            worker: 1,
            packet: PacketInfo {
                src: std::net::Ipv4Addr::new(198, 18, 0, 2).into(),
                dst: std::net::Ipv4Addr::new(198, 18, 0, 1).into(),
                src_port: 7211,
                dst_port: 40000 + (seq % 1000) as u16,
                seq,
                ack: 99,
                flags: rstwall_engine::wire::TcpFlags(
                    rstwall_engine::wire::TcpFlags::RST | rstwall_engine::wire::TcpFlags::ACK,
                ),
                payload_len: 0,
            },
            rst: RstJudgment {
                class: rstwall_engine::class::RstClass::Refused,
                with_data: false,
                service_port: 7211,
            },
            decision: Decision {
                verdict: rstwall_engine::policy::Verdict::Pass,
                reason: rstwall_engine::policy::Reason::ClassPass,
            },
        }
    }
}

/// The workers' end of the hand-off: clone one per worker.
#[derive(Clone, Debug)]
pub struct RstSink {
    tx: Sender<RstRecord>,
    dropped: Arc<AtomicU64>,
}

/// A hand-off of `capacity` records: the workers' end and the reader's.
pub fn rst_channel(capacity: usize) -> (RstSink, Receiver<RstRecord>) {
    let (tx, rx) = channel::bounded(capacity.max(1));
    (
        RstSink {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        },
        rx,
    )
}

impl RstSink {
    /// Hand `record` over, or count it lost when the channel is full (or
    /// its reader is gone). Never waits.
    #[inline]
    pub fn offer(&self, record: RstRecord) {
        match self.tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records lost so far, by every worker of this sink.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records waiting in the channel.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }

    /// The channel's capacity.
    pub fn capacity(&self) -> usize {
        self.tx.capacity().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> RstRecord {
        RstRecord::example(n)
    }

    #[test]
    fn a_full_channel_counts_its_losses_and_never_blocks() {
        let (sink, rx) = rst_channel(2);
        let other = sink.clone();
        sink.offer(record(1));
        other.offer(record(2));
        sink.offer(record(3));
        other.offer(record(4));
        assert_eq!(sink.dropped(), 2);
        assert_eq!(other.queued(), 2);
        let got: Vec<u32> = rx.try_iter().map(|r| r.packet.seq).collect();
        assert_eq!(got, [1, 2], "the first two, in order");
        drop(rx);
        sink.offer(record(5));
        assert_eq!(sink.dropped(), 3, "a reader gone loses them too");
    }
}
