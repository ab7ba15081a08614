//! Each class a host can be made to produce simply, and the kernel's
//! verdict on it: they agree. Abort with unread data, a linger-0 close,
//! and blind RSTs at a live socket, in its window and out of it (built
//! with the engine's TcpFrameRepr, sent from a raw socket).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use rstwall_engine::class::RstClass;
use rstwall_host::{Agreement, Direction, Received, RstEvent};
use rstwall_netlab::RawSender;

use crate::support::{ipv4_rst, pair, rcv_nxt, set_comm, HostRun};

/// A blind RST from `from` to `to` with `seq`.
fn spoofed_rst(from: SocketAddr, to: SocketAddr, seq: u32) -> Vec<u8> {
    let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else {
        panic!("IPv4 only");
    };
    ipv4_rst(from, to, seq, None)
}

/// The event of the RST from `from` to `to`.
fn event_of(events: &[RstEvent], from: SocketAddr, to: SocketAddr) -> &RstEvent {
    events
        .iter()
        .find(|e| {
            (e.rst.src, e.rst.sport) == (from.ip(), from.port())
                && (e.rst.dst, e.rst.dport) == (to.ip(), to.port())
        })
        .unwrap_or_else(|| panic!("no event for a RST {from} -> {to} in {events:#?}"))
}

struct Scenario {
    name: &'static str,
    from: SocketAddr,
    to: SocketAddr,
    class: RstClass,
}

#[test]
fn kernel_verdicts_agree_with_classes() {
    let run = HostRun::start("host-agree");
    let lo = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let scenarios = run
        .ns
        .spawn(move || {
            set_comm("scenarios");
            let mut out = Vec::new();
            let raw = RawSender::open().unwrap();

            // Abort: the server closes with unread data.
            let (mut c, s) = pair(lo(7301));
            c.write_all(&[1u8; 100]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let (from, to) = (s.local_addr().unwrap(), c.local_addr().unwrap());
            drop(s);
            out.push(Scenario {
                name: "close with unread data",
                from,
                to,
                class: RstClass::Abort,
            });
            std::thread::sleep(Duration::from_millis(50));
            drop(c);

            // Abort: the client closes with SO_LINGER {1, 0}.
            let (c, s) = pair(lo(7302));
            rstwall_netlab::sock::set_linger_zero(c.as_raw_fd()).unwrap();
            let (from, to) = (c.local_addr().unwrap(), s.local_addr().unwrap());
            drop(c);
            out.push(Scenario {
                name: "linger-0 close",
                from,
                to,
                class: RstClass::Abort,
            });
            std::thread::sleep(Duration::from_millis(50));
            drop(s);

            // Blind RSTs at a live socket: in its window, and far out.
            let (c, s): (TcpStream, TcpStream) = pair(lo(7303));
            let (from, to) = (c.local_addr().unwrap(), s.local_addr().unwrap());
            let next = rcv_nxt(&s);
            raw.send(&spoofed_rst(from, to, next.wrapping_add(1 << 30)))
                .unwrap();
            out.push(Scenario {
                name: "out-of-window spoof",
                from,
                to,
                class: RstClass::OutOfWindow,
            });
            std::thread::sleep(Duration::from_millis(50));
            raw.send(&spoofed_rst(from, to, next.wrapping_add(10)))
                .unwrap();
            out.push(Scenario {
                name: "in-window spoof",
                from,
                to,
                class: RstClass::InWindow,
            });
            std::thread::sleep(Duration::from_millis(50));
            // Both were only challenged or ignored: the connection lives.
            assert_eq!(
                rstwall_netlab::sock::tcp_state(s.as_raw_fd()).unwrap(),
                rstwall_netlab::TcpState::Established
            );
            drop((c, s));
            out
        })
        .unwrap()
        .join()
        .unwrap();

    let events = run.events_until(Duration::from_secs(5), |e| {
        scenarios.iter().all(|s| {
            e.iter().any(|ev| {
                (
                    ev.rst.src,
                    ev.rst.sport,
                    ev.rst.dst,
                    ev.rst.dport,
                    ev.rst.class,
                ) == (s.from.ip(), s.from.port(), s.to.ip(), s.to.port(), s.class)
            })
        })
    });
    for s in &scenarios {
        let found: Vec<&RstEvent> = events
            .iter()
            .filter(|e| {
                (e.rst.src, e.rst.sport, e.rst.dst, e.rst.dport)
                    == (s.from.ip(), s.from.port(), s.to.ip(), s.to.port())
            })
            .collect();
        let e = found
            .iter()
            .find(|e| e.rst.class == s.class)
            .copied()
            .unwrap_or_else(|| panic!("{}: no {} event in {found:#?}", s.name, s.class));
        assert_eq!(e.direction, Direction::Local, "{}", s.name);
        assert_eq!(e.agreement, Agreement::Agrees, "{}: {e:#?}", s.name);
        assert!(
            e.process.is_some(),
            "{}: the local socket's owner: {e:#?}",
            s.name
        );
        match s.class {
            RstClass::Abort => {
                assert_eq!(
                    e.kernel.received,
                    Some(Received::Reset {
                        state: "ESTABLISHED"
                    }),
                    "{}",
                    s.name
                );
                let sent = e
                    .kernel
                    .sent
                    .as_ref()
                    .unwrap_or_else(|| panic!("{}: sent by the kernel: {e:#?}", s.name));
                assert!(sent.reason.is_some(), "{}: {e:#?}", s.name);
            }
            RstClass::InWindow => {
                let Some(Received::Dropped { reason, .. }) = &e.kernel.received else {
                    panic!("{}: {e:#?}", s.name);
                };
                assert_eq!(reason, "TCP_RESET");
                assert_eq!(e.kernel.sent, None, "a raw socket sent it, not the kernel");
            }
            _ => {
                let Some(Received::Dropped { reason, .. }) = &e.kernel.received else {
                    panic!("{}: {e:#?}", s.name);
                };
                assert_ne!(reason, "TCP_RESET", "{}", s.name);
            }
        }
    }
    let abort = event_of(&events, scenarios[0].from, scenarios[0].to);
    assert_eq!(
        abort.kernel.sent.as_ref().unwrap().reason.as_deref(),
        Some("TCP_ABORT_ON_CLOSE")
    );
    let stats = run.source().correlation();
    assert_eq!(stats.count(Agreement::Disagrees), 0, "{stats:#?}");
}
