//! How many events a second the exporter delivers to a local JetStream,
//! and what the workers' hand-off costs a RST.
//!
//!     cargo run --release -p rstwall-bench --example export_throughput [EVENTS] [RUNS]
//!
//! Starts the export contender's broker (`nats-server -js` on loopback, a
//! free port, a temporary store) and for each run a new node's exporter
//! (one file-backed stream with one replica, a hand-off that holds EVENTS
//! records): offers EVENTS records to the hand-off as fast as one thread
//! can (timing the offers: the packet path's share), then waits until the
//! stream acknowledged them all. Prints each run and the medians.

use std::time::{Duration, Instant};

use rstwall_bench::stats::median;
use rstwall_bench::suite::export::Broker;
use rstwall_source::RstRecord;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: u32 = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    anyhow::ensure!(events > 0 && runs > 0, "EVENTS and RUNS are at least 1");
    let broker = Broker::start()?;
    let (mut rates, mut offers) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let (exporter, sink) = broker.exporter(Some(events as usize))?;
        let warming = Instant::now();
        while exporter.status().acked == 0 {
            anyhow::ensure!(
                warming.elapsed() < Duration::from_secs(30),
                "no acknowledgement after 30 s: {:?}",
                exporter.status()
            );
            // The first acknowledgement opens the full window of
            // publishes in flight: one event to get there, not counted.
            if sink.queued() == 0 {
                sink.offer(RstRecord::example(u32::MAX));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let base = exporter.status().acked;
        let started = Instant::now();
        for i in 0..events {
            sink.offer(RstRecord::example(i));
        }
        let offered = started.elapsed();
        while exporter.status().acked < base + u64::from(events) {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(300),
                "not acknowledged: {:?}",
                exporter.status()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = started.elapsed().as_secs_f64();
        let s = exporter.status();
        anyhow::ensure!(s.dropped == 0 && sink.dropped() == 0, "losses: {s:?}");
        let rate = f64::from(events) / took;
        let offer_ns = offered.as_nanos() as f64 / f64::from(events);
        println!(
            "run {run}: {events} events acknowledged in {took:.2} s = {rate:.0} events/s; \
             hand-off {offer_ns:.1} ns/RST"
        );
        rates.push(rate);
        offers.push(offer_ns);
        exporter.stop();
    }
    println!(
        "median: {:.0} events/s to a local JetStream (1 replica, file store); hand-off {:.1} ns/RST",
        median(rates).unwrap_or_default(),
        median(offers).unwrap_or_default()
    );
    Ok(())
}
