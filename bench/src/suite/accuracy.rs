//! Drop accuracy: the handshakes and exactly one steady pass at a rate
//! every contender keeps up with; the sink's counter says, by label, what
//! came through.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

use super::forwarder::StopReport;
use super::options::Contender;
use super::rig::{wait_for_secs, Rig};
use crate::cpu;
use crate::gen::Rate;
use crate::stats::pct;
use crate::traffic::{FrameCounts, Label};

/// Which RSTs a filter should stop: those the receiving kernel would never
/// act on (it ignores them, or answers with a challenge ACK). Spoofed.
pub fn is_spoofed(label: Label) -> bool {
    use rstwall_engine::RstClass::*;
    matches!(label, Label::Rst(InWindow | OutOfWindow | SynSentBadAck))
}

/// Which frames a filter must let through: everything the receiving
/// kernel accepts (the traffic's SYNs, SYN-ACKs, ACKs, data, FINs, and its
/// real resets: refused, abort, teardown).
pub fn is_legitimate(label: Label) -> bool {
    use rstwall_engine::RstClass::*;
    matches!(
        label,
        Label::Syn
            | Label::SynAck
            | Label::Ack
            | Label::Data
            | Label::Fin
            | Label::Rst(Refused | Abort | Teardown)
    )
}

/// One accuracy measurement: the labelled frames sent, and those counted
/// at the sink.
pub struct Accuracy {
    pub contender: Contender,
    pub round: usize,
    pub sent: FrameCounts,
    pub arrived: [u64; Label::ALL.len()],
    pub other: f64,
    pub stop: StopReport,
}

impl Accuracy {
    /// Frames of labels `which`: sent, arrived.
    pub fn of(&self, which: impl Fn(Label) -> bool) -> (u64, u64) {
        Label::ALL
            .iter()
            .filter(|l| which(**l))
            .map(|l| (self.sent.of(*l), self.arrived[l.code() as usize]))
            .fold((0, 0), |(s, a), (x, y)| (s + x, a + y))
    }

    /// Per cent of the spoofed RSTs that did not reach the sink.
    pub fn spoofed_dropped(&self) -> f64 {
        let (sent, arrived) = self.of(is_spoofed);
        100.0 - pct(arrived, sent)
    }

    /// Per cent of the legitimate frames that reached the sink.
    pub fn legit_passed(&self) -> f64 {
        let (sent, arrived) = self.of(is_legitimate);
        pct(arrived, sent)
    }

    pub fn line(&self) -> String {
        let (ls, la) = self.of(is_legitimate);
        let (ss, sa) = self.of(is_spoofed);
        format!(
            "round {} {:<23} legitimate {la}/{ls} passed ({:.3}%), spoofed RSTs {sa}/{ss} \
             passed ({:.2}% dropped){}{}, other processes {:.0}%",
            self.round + 1,
            self.contender.name(),
            self.legit_passed(),
            self.spoofed_dropped(),
            if self.stop.judged > 0 {
                format!(", engine dropped {}", self.stop.dropped)
            } else {
                String::new()
            },
            self.stop.nft.map_or(String::new(), |n| format!(
                ", nftables dropped {} invalid + {} over the RST limit",
                n.invalid, n.rst_limited
            )),
            self.other,
        )
    }
}

impl Rig<'_> {
    /// The handshakes and one steady pass at --accuracy-pps; what reached
    /// the sink, by label.
    pub fn accuracy(&self, c: Contender, round: usize) -> Result<Accuracy> {
        let t = &self.traffic;
        let (m, stop) = self.with(c, |_| {
            let k = self.kthreads();
            let load = cpu::OtherLoad::start(&k);
            let before = self.counter.counts()?;
            let gen = self.start_traffic(
                Rate::Paced(self.o.accuracy_pps),
                Some(t.steady.len() as u64),
            )?;
            let expect = t.steady.len() as f64 / self.o.accuracy_pps as f64;
            wait_for_secs(expect * 3.0 + 10.0, || {
                gen.shared.done.load(Ordering::Relaxed).then_some(())
            })
            .context("the pass did not finish")?;
            gen.finish()?;
            // What is still on its way.
            thread::sleep(Duration::from_millis(200));
            let after = self.counter.counts()?;
            let mut arrived = [0u64; Label::ALL.len()];
            for (i, a) in arrived.iter_mut().enumerate() {
                *a = after[i] - before[i];
            }
            Ok((arrived, load.pct(&k)))
        })?;
        let mut sent = *t.handshakes.counts();
        let steady = t.steady.counts();
        for label in Label::ALL {
            *sent_of(&mut sent, label) += steady.of(label);
        }
        Ok(Accuracy {
            contender: c,
            round,
            sent,
            arrived: m.0,
            other: m.1,
            stop,
        })
    }
}

fn sent_of(c: &mut FrameCounts, label: Label) -> &mut u64 {
    match label {
        Label::Syn => &mut c.syn,
        Label::SynAck => &mut c.synack,
        Label::Ack => &mut c.ack,
        Label::Data => &mut c.data,
        Label::Fin => &mut c.fin,
        Label::Rst(class) => &mut c.rst[class.index()],
        Label::Crafted => &mut c.crafted,
    }
}
