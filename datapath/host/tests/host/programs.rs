//! The tc programs alone, through BPF_PROG_TEST_RUN: every frame passes
//! unchanged, every one is counted by flag class, TCP (only) becomes a
//! record of its headers (never its payload), and a full ring's records
//! are counted lost, never silently missing.

use std::net::{Ipv4Addr, Ipv6Addr};

use rstwall_bpf::host::{LinkKind, RecordAt, TcConfig, TcDirection, TcPrograms};
use rstwall_bpf::shared::host::{Record, DIR_IN, DIR_OUT, LINK_ETHERNET, RECORD_SIZE};
use rstwall_bpf::FrameCounts;
use rstwall_engine::class::FlagClass;
use rstwall_engine::wire::{
    EthernetRepr, IpRepr, Ipv4Repr, Ipv6Repr, SackBlocks, TcpFlags, TcpFrameRepr, TcpRepr,
};

fn tcp_frame(v6: bool, flags: u16, payload: &[u8]) -> (Vec<u8>, usize) {
    let ip = if v6 {
        IpRepr::V6(Ipv6Repr {
            src: Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1),
            dst: Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2),
            hop_limit: 64,
            flow_label: 7,
        })
    } else {
        IpRepr::V4(Ipv4Repr {
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 18, 0, 2),
            ttl: 64,
            ident: 1,
            dont_fragment: true,
        })
    };
    let repr = TcpFrameRepr {
        ethernet: EthernetRepr {
            src: [2, 0, 0, 0, 0, 1],
            dst: [2, 0, 0, 0, 0, 2],
        },
        ip,
        tcp: TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: 1000,
            ack: 2000,
            flags: TcpFlags(flags),
            window: 512,
            mss: (flags & TcpFlags::SYN != 0).then_some(1460),
            window_scale: (flags & TcpFlags::SYN != 0).then_some(7),
            sack_permitted: flags & TcpFlags::SYN != 0,
            timestamps: Some((1, 2)),
            sack_blocks: SackBlocks::default(),
            fast_open: None,
            payload,
        },
    };
    let mut buf = vec![0u8; repr.len()];
    let n = repr.emit(&mut buf).unwrap();
    buf.truncate(n);
    let headers = n - payload.len();
    (buf, headers)
}

fn records(progs: &TcPrograms) -> Vec<Vec<u8>> {
    let mut reader = progs.ring_reader(0).unwrap();
    let mut taken: Vec<RecordAt> = Vec::new();
    let mut out = Vec::new();
    while reader.take(&mut taken, 1024) > 0 {
        out.extend(taken.iter().map(|at| reader.record(at).to_vec()));
        reader.release();
    }
    out
}

#[test]
fn frames_pass_unchanged_and_only_tcp_headers_are_recorded() {
    rstwall_netlab::require_root("BPF_PROG_TEST_RUN");
    let progs = TcPrograms::load(TcConfig {
        rings: 1,
        ring_size: 1 << 16,
    })
    .unwrap();
    let payload = [0xabu8; 300];
    let (syn, syn_hdr) = tcp_frame(false, TcpFlags::SYN, &payload);
    let (rst6, rst6_hdr) = tcp_frame(true, TcpFlags::RST | TcpFlags::ACK, &[]);
    let (data, data_hdr) = tcp_frame(false, TcpFlags::ACK | TcpFlags::PSH, &payload);
    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    // IPv4 whose header (IHL 15: 60 bytes) runs past the frame.
    let mut short = syn[..14 + 24].to_vec();
    short[14] = 0x4f;
    let mut udp = syn.clone();
    udp[14 + 9] = 17;

    let cases: [(&[u8], TcDirection); 6] = [
        (&syn, TcDirection::Ingress),
        (&rst6, TcDirection::Egress),
        (&data, TcDirection::Egress),
        (&arp, TcDirection::Ingress),
        (&short, TcDirection::Ingress),
        (&udp, TcDirection::Egress),
    ];
    for (frame, dir) in cases {
        let (verdict, out) = progs
            .test_run(LinkKind::Ethernet, dir, frame)
            .unwrap_or_else(|e| panic!("{} bytes: {e}", frame.len()));
        // TC_ACT_UNSPEC (TCX_NEXT): on to the next program, as it came.
        assert_eq!(verdict, -1);
        assert_eq!(out, frame, "the frame left the program unchanged");
    }
    let c = progs.counters().unwrap();
    assert_eq!(c.flag_class(FlagClass::Syn), 1, "{c:?}");
    assert_eq!(c.flag_class(FlagClass::RstAck), 1, "{c:?}");
    assert_eq!(c.flag_class(FlagClass::Other), 1, "{c:?}");
    assert_eq!((c.non_tcp, c.malformed), (2, 1), "{c:?}");
    assert_eq!((c.records, c.records_lost), (3, 0), "{c:?}");

    let recs = records(&progs);
    assert_eq!(
        recs.len(),
        3,
        "one record per TCP segment, none for the rest"
    );
    for (rec, (frame, hdr, dir)) in recs.iter().zip([
        (&syn, syn_hdr, DIR_IN),
        (&rst6, rst6_hdr, DIR_OUT),
        (&data, data_hdr, DIR_OUT),
    ]) {
        let r = Record::read(rec).unwrap();
        assert_eq!(
            usize::from(r.caplen),
            hdr,
            "headers only, up to the TCP data offset"
        );
        assert_eq!(&rec[RECORD_SIZE..RECORD_SIZE + hdr], &frame[..hdr]);
        assert!(
            !rec[RECORD_SIZE + hdr..].contains(&0xab),
            "no payload byte reaches userspace"
        );
        assert_eq!((r.direction, r.link), (dir, LINK_ETHERNET));
        assert_eq!(r.wire_len as usize, frame.len());
        assert!(r.ts_ns > 0);
    }
}

/// A flood larger than the ring, with nobody reading: every segment is
/// counted, and each is either a record in the ring or counted lost.
#[test]
fn a_full_ring_counts_what_it_loses() {
    rstwall_netlab::require_root("BPF_PROG_TEST_RUN");
    let progs = TcPrograms::load(TcConfig {
        rings: 1,
        ring_size: 1 << 14,
    })
    .unwrap();
    let (syn, _) = tcp_frame(false, TcpFlags::SYN, &[]);
    let flood = 2_000u64;
    for _ in 0..flood {
        progs
            .test_run(LinkKind::Ethernet, TcDirection::Ingress, &syn)
            .unwrap();
    }
    let c = progs.counters().unwrap();
    let in_ring = records(&progs).len() as u64;
    assert_eq!(c.tcp(), flood);
    assert!(c.records_lost > 0, "the ring overflowed: {c:?}");
    assert_eq!(c.records, in_ring, "every record counted is in the ring");
    assert_eq!(c.records + c.records_lost, c.tcp(), "{c:?}");
}
