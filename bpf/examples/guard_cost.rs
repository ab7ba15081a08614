//! What the RST guard costs, measured on the program itself:
//!
//! * the XDP program's time per frame (`BPF_PROG_TEST_RUN`, in the kernel,
//!   a million runs each): a data segment and a spoofed RST with the guard
//!   off, on without an entry for the flow, and on with one (the data
//!   segment then updates the entry; the RST is dropped);
//! * the `guard` map's memory per entry (the kernel's own account) and the
//!   rate userspace inserts and removes entries at, at 10,000 and 100,000
//!   flows.
//!
//! Run as root: `cargo run --release -p rstwall-bpf --example guard_cost`.
//! Nothing is attached; the program runs unattached.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use rstwall_bpf::shared::guard::{GuardCfg, GuardEntry, GuardHalf, GuardKey, MODE_SYNCED};
use rstwall_bpf::{PortRole, TestProgram};

const RUNS: u32 = 1_000_000;
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// An Ethernet/IPv4/TCP frame, no options (checksums are not read).
fn frame(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20 + payload];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&CLIENT.octets());
    ip[16..20].copy_from_slice(&SERVER.octets());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&500u16.to_be_bytes());
    f
}

fn key(client_port: u16) -> GuardKey {
    GuardKey::from_endpoints(IpAddr::V4(CLIENT), client_port, IpAddr::V4(SERVER), 443)
}

fn entry() -> GuardEntry {
    let half = |next: u32| GuardHalf {
        peer_end: next,
        ack: next,
        win_edge: next.wrapping_add(64_000 << 7),
        wscale: 7,
        ..GuardHalf::default()
    };
    GuardEntry {
        half: [half(5000), half(1000)],
        mode: MODE_SYNCED,
        ..GuardEntry::default()
    }
}

fn ns_per_run(p: &TestProgram, f: &[u8]) -> f64 {
    p.time_run(f, RUNS).expect("test run").as_nanos() as f64
}

fn main() {
    let p = TestProgram::load(PortRole::Inline { peer_ifindex: 1 }).expect("load (root?)");
    let g = p.guard();
    // The client is lo (198.18.0.1 < 198.18.0.2): its half is half[0].
    let data = frame(40_000, 443, 1000, 5000, 0x10, 1000);
    let spoofed = frame(40_000, 443, 1000 + 0x4000_0000, 0, 0x04, 0);
    let mut policy = rstwall_engine::policy::PolicyConfig::default();
    policy.set_mode(rstwall_engine::policy::Mode::Enforce);
    let on = GuardCfg::for_policy(&policy, 8 << 20);

    println!("XDP program, ns per frame ({RUNS} runs in the kernel):");
    println!("| guard | data segment | spoofed RST |\n|---|---:|---:|");
    g.configure(GuardCfg::OFF).unwrap();
    println!(
        "| off | {:.1} | {:.1} |",
        ns_per_run(&p, &data),
        ns_per_run(&p, &spoofed)
    );
    g.configure(on).unwrap();
    println!(
        "| on, no entry | {:.1} | {:.1} |",
        ns_per_run(&p, &data),
        ns_per_run(&p, &spoofed)
    );
    assert!(g.insert_raw(key(40_000), entry()).unwrap());
    let d = ns_per_run(&p, &data);
    let r = ns_per_run(&p, &spoofed);
    let c = p.counters().unwrap();
    assert!(
        c.guard_dropped >= u64::from(RUNS),
        "the RST is dropped: {c:?}"
    );
    println!("| on, entry (RST dropped) | {d:.1} | {r:.1} |");
    g.remove_raw(key(40_000)).unwrap();

    println!("\nguard map, per entry:");
    println!("| entries | bytes per entry | inserts/s | removes/s |\n|---:|---:|---:|---:|");
    let empty = g.memory_bytes().unwrap();
    for n in [10_000u32, 100_000] {
        let keys: Vec<GuardKey> = (0..n)
            .map(|i| {
                GuardKey::from_endpoints(
                    IpAddr::V4(Ipv4Addr::from(u32::from(CLIENT) + i / 60_000)),
                    (1024 + i % 60_000) as u16,
                    IpAddr::V4(SERVER),
                    443,
                )
            })
            .collect();
        let t = Instant::now();
        for k in &keys {
            assert!(g.insert_raw(*k, entry()).unwrap());
        }
        let insert = t.elapsed().as_secs_f64();
        let bytes = g.memory_bytes().unwrap().saturating_sub(empty);
        let t = Instant::now();
        for k in &keys {
            g.remove_raw(*k).unwrap();
        }
        let remove = t.elapsed().as_secs_f64();
        println!(
            "| {n} | {:.0} | {:.0} | {:.0} |",
            bytes as f64 / f64::from(n),
            f64::from(n) / insert,
            f64::from(n) / remove
        );
    }
}
