//! The library on real namespaces (root; fails, never skips, without).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use rstwall_engine::wire::TcpFlags;
use rstwall_netlab::ethtool::{self, Offload};
use rstwall_netlab::packet::Segment;
use rstwall_netlab::{
    netns, require_root, Listen, Mac, Namespaces, Netns, RawSender, Sniffer, Veth,
};

const A: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 2);

#[test]
fn namespaces_are_removed_on_drop_on_panic_and_kept_on_request() {
    require_root("the netlab tests");
    let mut ns = Namespaces::unique("guard");
    let name = ns.add("x").expect("namespace").name().to_string();
    assert!(netns::exists(&name));
    drop(ns);
    assert!(!netns::exists(&name), "removed on drop");

    let name = std::thread::spawn(|| {
        let mut ns = Namespaces::unique("panic");
        let name = ns.add("x").expect("namespace").name().to_string();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _ns = ns;
            panic!("a failing test");
        }));
        assert!(result.is_err());
        name
    })
    .join()
    .expect("thread");
    assert!(!netns::exists(&name), "removed on panic");

    let mut ns = Namespaces::named(&format!("rw-kept-{}", std::process::id()));
    let name = ns.add("x").expect("namespace").name().to_string();
    ns.keep();
    assert!(netns::exists(&name), "kept");
    netns::delete(&name).expect("delete");
    assert!(!netns::exists(&name));
}

/// A sniffer opened in `ns`.
fn open_sniffer(ns: &Netns, what: Listen<'_>) -> Sniffer {
    ns.run(|| Sniffer::open(what)).unwrap().unwrap()
}

/// The sniffer's next segment, within 5 s.
#[track_caller]
fn next_within_5s(sniffer: &Sniffer, what: &str) -> rstwall_engine::wire::Segment<'static> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(seg) = sniffer.next_segment().unwrap() {
            return seg;
        }
        assert!(Instant::now() < deadline, "{what}");
    }
}

#[test]
fn a_spoofed_segment_crosses_a_veth_and_the_sniffer_parses_it() {
    require_root("the netlab tests");
    let mut lab = Namespaces::unique("veth");
    let (a, b) = (lab.add("a").unwrap(), lab.add("b").unwrap());
    let mac_a = Mac([0x02, 0x72, 0x77, 0x07, 0, 1]);
    let mac_b = Mac([0x02, 0x72, 0x77, 0x07, 0, 2]);
    a.add_veth(
        "va",
        &b,
        "vb",
        &Veth {
            mac: Some(mac_a),
            peer_mac: Some(mac_b),
            ..Veth::default()
        },
    )
    .unwrap();
    a.add_addr("va", &format!("{A}/24")).unwrap();
    b.add_addr("vb", &format!("{B}/24")).unwrap();
    a.add_neighbour("va", &B.to_string(), mac_b).unwrap();
    b.add_neighbour("vb", &A.to_string(), mac_a).unwrap();
    assert!(
        a.add_addr("va", "10.1.2.3/8").is_err(),
        "only lab addresses"
    );
    a.set_up("va").unwrap();
    b.set_up("vb").unwrap();
    a.run(|| {
        ethtool::set("va", Offload::TxChecksum, false).unwrap();
        assert!(!ethtool::get("va", Offload::TxChecksum).unwrap());
    })
    .unwrap();

    let to_179 = || Listen::TcpTo {
        ifname: "vb",
        dport: 179,
        any_flags: TcpFlags::RST,
    };
    let sniffer = open_sniffer(&b, to_179());
    let sender = a.run(RawSender::open).unwrap().unwrap();
    let rst = Segment {
        src: SocketAddrV4::new(A, 40_000).into(),
        dst: SocketAddrV4::new(B, 179).into(),
        seq: 0x1234_5678,
        ack: 0,
        flags: TcpFlags::RST,
        window: 0,
    };
    // Filtered out: wrong port, and no RST bit.
    let other_port = Segment {
        dst: SocketAddrV4::new(B, 180).into(),
        ..rst
    };
    sender.send_segment(&other_port, 1).unwrap();
    let syn = Segment {
        flags: TcpFlags::SYN,
        ..rst
    };
    sender.send_segment(&syn, 2).unwrap();
    sender.send_segment(&rst, 3).unwrap();
    let seg = next_within_5s(&sniffer, "the RST never arrived");
    assert_eq!(
        (seg.src_port, seg.dst_port, seg.seq),
        (40_000, 179, 0x1234_5678)
    );
    assert_eq!(seg.flags, TcpFlags(TcpFlags::RST));
    assert!(
        sniffer.next_segment().unwrap().is_none(),
        "nothing else passes the filter"
    );

    // What a's kernel sends from port 40000: its own RST out of va, not a
    // RST that arrives from some other host's port 40000.
    let sent_by_a = open_sniffer(
        &a,
        Listen::TcpFrom {
            ifname: "va",
            sport: 40_000,
            any_flags: TcpFlags::RST,
        },
    );
    let from_b = b.run(RawSender::open).unwrap().unwrap();
    let arriving = Segment {
        src: SocketAddrV4::new(B, 40_000).into(),
        dst: SocketAddrV4::new(A, 179).into(),
        seq: 0x0bad_0bad,
        ..rst
    };
    from_b.send_segment(&arriving, 4).unwrap();
    sender.send_segment(&rst, 5).unwrap();
    let seg = next_within_5s(&sent_by_a, "a's RST never seen leaving");
    assert_eq!((seg.src_port, seg.seq), (40_000, 0x1234_5678), "{seg:?}");
    assert!(
        sent_by_a.next_segment().unwrap().is_none(),
        "an arriving RST from port 40000 is not a's"
    );

    // A sniffer opened while other frames stream in holds none of them:
    // nothing is queued before its filter is attached.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 10;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sender.send_segment(&other_port, n).unwrap();
                n = n.wrapping_add(1);
            }
        });
        for _ in 0..200 {
            let s = open_sniffer(&b, to_179());
            std::thread::sleep(Duration::from_micros(200));
            if let Some(f) = s.next_frame(false).unwrap() {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                panic!("an unfiltered frame was queued: {f:?}");
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}
