//! How many events a second the exporter delivers to a local JetStream,
//! and what the workers' hand-off costs a RST.
//!
//!     cargo run --release -p rstwall-export --example throughput [EVENTS] [RUNS]
//!
//! Starts its own `nats-server -js` on loopback (a free port, a temporary
//! store), one file-backed stream with one replica, and for each run:
//! offers EVENTS records to the hand-off as fast as one thread can
//! (timing the offers: the packet path's share), then waits until the
//! stream acknowledged them all. Prints each run and the medians.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rstwall_export::{Exporter, Inputs, NatsConfig};
use rstwall_source::{rst_channel, RstRecord};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let events: u32 = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let dir = std::env::temp_dir().join(format!("rstwall-export-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut server = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("store"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "nats-server does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut rates, mut offers) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let mut cfg = NatsConfig::new(
            vec![format!("nats://127.0.0.1:{port}")],
            format!("bench{run}"),
            dir.join(format!("spool{run}")),
        );
        cfg.create_stream = Some(1);
        let (sink, rx) = rst_channel(events as usize);
        let exporter = Exporter::start(
            cfg,
            Inputs {
                rsts: Some((sink.clone(), rx)),
                mode: "inline".into(),
            },
        )?;
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
        median(rates),
        median(offers)
    );
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
