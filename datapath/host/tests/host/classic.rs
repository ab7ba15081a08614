//! The classic case: a process named `collector` connects to
//! 127.0.0.1:7211 twice a second with nothing listening. Host mode names
//! every refused connect, the kernel agrees (it sent NO_SOCKET resets and
//! reset the connecting sockets in SYN-SENT), and netstat's "failed
//! connection attempts" grew by exactly as many, all by `collector`.

use std::time::Duration;

use rstwall_engine::class::RstClass;
use rstwall_host::{Agreement, CloseCause, CloseCounter, Direction, OwnerSource, Received, TcpMib};

use crate::support::HostRun;

const CONNECTS: usize = 6;

#[test]
fn refused_connects_are_named_and_reconciled() {
    let run = HostRun::start("host-classic");
    let before = run.ns.run(TcpMib::read).unwrap().unwrap();
    let collector = run
        .ns
        .spawn(|| {
            let to = "127.0.0.1:7211".parse().unwrap();
            let every = Duration::from_millis(500);
            rstwall_netlab::sock::refused_connects("collector", to, CONNECTS, every)
                .expect("refused connects to 7211");
        })
        .unwrap();
    collector.join().unwrap();
    let events = run.events_until(Duration::from_secs(5), |e| e.len() >= CONNECTS);
    let after = run.ns.run(TcpMib::read).unwrap().unwrap();
    // The last second closes, with its closes counted.
    std::thread::sleep(Duration::from_millis(1300));

    assert_eq!(events.len(), CONNECTS, "{events:#?}");
    for e in &events {
        assert_eq!(e.rst.class, RstClass::Refused, "{e:#?}");
        assert_eq!((e.iface.as_str(), e.direction), ("lo", Direction::Local));
        assert_eq!(e.service_port, 7211);
        assert_eq!(e.rst.sport, 7211);
        let sent = e.kernel.sent.as_ref().expect("the kernel sent it");
        assert_eq!(sent.reason.as_deref(), Some("NO_SOCKET"), "{e:#?}");
        assert_eq!(
            e.kernel.received,
            Some(Received::Reset { state: "SYN-SENT" }),
            "{e:#?}"
        );
        assert_eq!(e.agreement, Agreement::Agrees, "{e:#?}");
        let p = e.process.as_ref().expect("the connecting process");
        assert_eq!((p.pid, p.comm.as_str()), (std::process::id(), "collector"));
        assert_eq!(p.source, OwnerSource::Connect);
    }

    let mib = after.since(&before);
    assert_eq!(mib.attempt_fails, CONNECTS as u64, "{mib:?}");
    assert_eq!(mib.out_rsts, CONNECTS as u64, "{mib:?}");
    let seconds = run.source().seconds();
    let observed: u64 = seconds.iter().map(|s| s.observed.attempt_fails).sum();
    let counted: u64 = seconds.iter().map(|s| s.mib.attempt_fails).sum();
    assert_eq!(observed, CONNECTS as u64, "{seconds:#?}");
    assert_eq!(counted, CONNECTS as u64, "{seconds:#?}");
    let closes: Vec<_> = seconds.iter().flat_map(|s| &s.observed.closes).collect();
    assert!(!closes.is_empty());
    for c in &closes {
        assert_eq!(
            (c.counter, c.cause),
            (CloseCounter::AttemptFails, CloseCause::ResetReceived)
        );
        assert_eq!(c.endpoint, "127.0.0.1:7211".parse().unwrap());
        assert!(c.remote);
        let p = c.process.as_ref().unwrap();
        assert_eq!((p.pid, p.comm.as_str()), (std::process::id(), "collector"));
    }
    assert_eq!(closes.iter().map(|c| c.count).sum::<u64>(), CONNECTS as u64);
    let sent: u64 = seconds
        .iter()
        .map(|s| {
            s.observed
                .resets_sent
                .get("NO_SOCKET")
                .copied()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(sent, CONNECTS as u64);

    let stats = run.source().correlation();
    assert_eq!(stats.count(Agreement::Agrees), CONNECTS as u64, "{stats:?}");
    assert_eq!(stats.count(Agreement::Disagrees), 0, "{stats:?}");
    let c = run.source().kernel_counters().unwrap();
    assert_eq!(c.records_lost, 0, "{c:?}");
}
