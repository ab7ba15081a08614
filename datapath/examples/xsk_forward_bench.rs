//! Inline forwarding over AF_XDP on veth (copy mode), rstwall's datapath
//! beside a bare AF_XDP rx→tx loop, measured in the same run.
//!
//! ```text
//!   gen0 ─veth─ pa ══[forwarder: rstwall | bare]══ pb ─veth─ sink0
//! ```
//!
//! Everything lives in a network namespace of its own, deleted at exit.
//! A generator thread sends 64-byte TCP ACK frames of `--flows` flows from
//! an AF_XDP socket on gen0; the forwarder is either the rstwall datapath
//! (one worker, the engine judging every frame) or a bare loop that moves
//! frames from pa's RX ring to pb's TX ring with the same batching and the
//! same idle policy (spin, then sleep in poll()), and nothing else. XDP
//! steering uses libxdp's default program here (the benchmark measures the
//! userspace datapath, not rstwall's XDP program).
//!
//! * Throughput: the generator runs flat out; forwarded Mpps is what sink0
//!   receives (its kernel counter), over `--seconds`.
//! * Latency: the generator paces `--latency-pps` frames per second with a
//!   CLOCK_MONOTONIC stamp in the payload, an AF_XDP socket on sink0 reads
//!   them back; one-way latency percentiles via hdrhistogram. "Added" is
//!   rstwall's minus the bare loop's.
//!
//! Run as root: `cargo run --release --features afxdp --example xsk_forward_bench -p rstwall-datapath`
//! (`-- --help` for options).

use std::io::Write;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rstwall_datapath::afxdp::{sys, Datapath, DatapathConfig, ProgramLoad, Topology};
use rstwall_datapath::engine::EngineConfig;
use xsk_rs::config::{BindFlags, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{FrameDesc, Socket, Umem};

const BATCH: usize = 64;
const RING: u32 = 2048;
const FRAME_LEN: usize = 64;
/// Where the timestamp sits: right after Ethernet + IPv4 + TCP headers.
const STAMP_AT: usize = 54;

struct Options {
    seconds: u64,
    rounds: u32,
    flows: u32,
    latency_pps: u64,
    gen_cpu: usize,
    fwd_cpu: usize,
}

fn parse_options() -> Options {
    let mut o = Options {
        seconds: 3,
        rounds: 2,
        flows: 1024,
        latency_pps: 20_000,
        gen_cpu: 0,
        fwd_cpu: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--seconds" => o.seconds = val(),
            "--rounds" => o.rounds = val() as u32,
            "--flows" => o.flows = val() as u32,
            "--latency-pps" => o.latency_pps = val(),
            "--gen-cpu" => o.gen_cpu = val() as usize,
            "--fwd-cpu" => o.fwd_cpu = val() as usize,
            _ => {
                println!(
                    "options: --seconds N (per measurement, 3) --rounds N (2) --flows N (1024)\n\
                     \x20        --latency-pps N (20000) --gen-cpu N (0) --fwd-cpu N (1)"
                );
                std::process::exit(if a == "--help" { 0 } else { 2 });
            }
        }
    }
    o
}

/// A network namespace with the two veth pairs, deleted on drop.
struct Lab {
    ns: String,
    host_ns: std::fs::File,
}

impl Lab {
    fn new() -> Lab {
        let ns = format!("rstwall-bench-{}", std::process::id());
        let host_ns = std::fs::File::open("/proc/self/ns/net").expect("open own netns");
        sh(&["ip", "netns", "add", &ns]);
        let lab = Lab { ns, host_ns };
        for (x, y) in [("gen0", "pa"), ("pb", "sink0")] {
            sh(&[
                "ip", "-n", &lab.ns, "link", "add", x, "type", "veth", "peer", "name", y,
            ]);
        }
        for dev in ["gen0", "pa", "pb", "sink0"] {
            sh(&["ip", "-n", &lab.ns, "link", "set", dev, "up"]);
        }
        // Enter it: threads started from here on live in it too.
        let f = std::fs::File::open(format!("/run/netns/{}", lab.ns)).expect("open lab netns");
        // SAFETY: setns on a valid namespace fd.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        lab
    }

    fn rx_packets(&self, dev: &str) -> u64 {
        let text = std::fs::read_to_string("/proc/thread-self/net/dev").expect("read net/dev");
        text.lines()
            .find_map(|l| {
                let (name, rest) = l.split_once(':')?;
                (name.trim() == dev).then(|| rest.split_whitespace().nth(1)?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("{dev} not in /proc/net/dev"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // SAFETY: back to where we came from before deleting the lab.
        unsafe { libc::setns(self.host_ns.as_raw_fd(), libc::CLONE_NEWNET) };
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect(args[0]);
    assert!(st.success(), "{args:?} failed");
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn pin(cpu: usize) {
    if let Err(e) = sys::pin_current_thread(cpu) {
        eprintln!("cannot pin to CPU {cpu}: {e}");
    }
}

fn umem(frames: u32) -> (Umem, Vec<FrameDesc>) {
    let cfg = UmemConfig::builder()
        .fill_queue_size(QueueSize::new(RING).unwrap())
        .comp_queue_size(QueueSize::new(RING).unwrap())
        .build()
        .unwrap();
    Umem::new(cfg, NonZeroU32::new(frames).unwrap(), false).expect("UMEM")
}

fn socket_config(load: ProgramLoad) -> SocketConfig {
    let mut b = SocketConfig::builder();
    b.rx_queue_size(QueueSize::new(RING).unwrap())
        .tx_queue_size(QueueSize::new(RING).unwrap())
        .bind_flags(BindFlags::XDP_COPY | BindFlags::XDP_USE_NEED_WAKEUP);
    if load == ProgramLoad::Inhibit {
        b.libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD);
    }
    b.build()
}

/// A TCP ACK from client `flow` to a server: 54 header bytes, then the
/// timestamp, zero padding to 64.
fn frame(flow: u32) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((FRAME_LEN - 14) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[198, 18, (flow >> 8) as u8, flow as u8]);
    ip[16..20].copy_from_slice(&[198, 19, 0, 1]);
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&(10_000 + (flow % 50_000) as u16).to_be_bytes());
    tcp[2..4].copy_from_slice(&443u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&2000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x10; // ACK
    tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
    f
}

/// Send frames on gen0 until `stop`: flat out, or paced at `pps` with a
/// timestamp in each frame.
fn generator(stop: Arc<AtomicBool>, flows: u32, pps: Option<u64>, sent: Arc<AtomicU64>) {
    let (umem, mut free) = umem(4096);
    // SAFETY: gen0 queue 0 is bound once.
    let (mut tx, _rx, rings) = unsafe {
        Socket::new(
            socket_config(ProgramLoad::Inhibit),
            &umem,
            &"gen0".parse().unwrap(),
            0,
        )
    }
    .expect("generator socket");
    let (_fill, mut comp) = rings.expect("rings");
    for (i, d) in free.iter_mut().enumerate() {
        // SAFETY: the frame is ours, nothing else touches it.
        let mut data = unsafe { umem.data_mut(d) };
        data.cursor().write_all(&frame(i as u32 % flows)).unwrap();
    }
    let mut comp_buf = vec![FrameDesc::default(); BATCH];
    let start = Instant::now();
    let mut total = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: completions are our frames back.
        let n = unsafe { comp.consume(&mut comp_buf) };
        free.extend_from_slice(&comp_buf[..n]);
        let mut k = free.len().min(BATCH);
        if let Some(pps) = pps {
            let due =
                (start.elapsed().as_nanos() as u64 * pps / 1_000_000_000).saturating_sub(total);
            k = k.min(due as usize);
        }
        if k > 0 {
            let at = free.len() - k;
            let stamp = mono_ns().to_ne_bytes();
            for d in &mut free[at..] {
                // SAFETY: as above; restore the length the completion reset.
                let mut data = unsafe { umem.data_mut(d) };
                let mut c = data.cursor();
                c.set_pos(FRAME_LEN);
                if pps.is_some() {
                    data.contents_mut()[STAMP_AT..STAMP_AT + 8].copy_from_slice(&stamp);
                }
            }
            // SAFETY: frames are ours until completed.
            let done = unsafe { tx.produce(&free[at..]) };
            free.truncate(at + (k - done));
            total += done as u64;
        }
        if tx.needs_wakeup() {
            tx.wakeup().expect("generator sendto");
        }
        if pps.is_some() && k == 0 {
            thread::sleep(Duration::from_micros(20));
        }
    }
    sent.store(total, Ordering::Relaxed);
}

/// The bare loop: pa RX → pb TX over one shared UMEM, nothing else.
fn bare_forwarder(stop: Arc<AtomicBool>) {
    let (umem, mut descs) = umem(8192);
    let free_b = descs.split_off(4096);
    drop(free_b); // pb only transmits: its partition is unused
    let mut free = descs;
    // SAFETY: each (device, queue) pair is bound once on this UMEM.
    let (_txa, mut rxa, ra) = unsafe {
        Socket::new(
            socket_config(ProgramLoad::LibxdpDefault),
            &umem,
            &"pa".parse().unwrap(),
            0,
        )
    }
    .expect("pa socket");
    let (mut txb, _rxb, rb) = unsafe {
        Socket::new(
            socket_config(ProgramLoad::LibxdpDefault),
            &umem,
            &"pb".parse().unwrap(),
            0,
        )
    }
    .expect("pb socket");
    let (mut fill_a, _comp_a) = ra.expect("pa rings");
    let (_fill_b, mut comp_b) = rb.expect("pb rings");
    let mut rx_buf = vec![FrameDesc::default(); BATCH];
    let mut comp_buf = vec![FrameDesc::default(); BATCH];
    let mut idle = 0u32;
    while !stop.load(Ordering::Relaxed) {
        // The datapath's idle policy: spin 256 empty rounds, then poll().
        if idle >= 256 {
            idle = 0;
            let _ = rxa.poll(20);
        }
        // SAFETY: the same frame discipline as the datapath.
        let n = unsafe { comp_b.consume(&mut comp_buf) };
        free.extend_from_slice(&comp_buf[..n]);
        let room = fill_a.nb_free(free.len() as u32) as usize;
        if room > 0 {
            let at = free.len() - room.min(free.len());
            let done = unsafe { fill_a.produce(&free[at..]) };
            free.truncate(free.len() - done);
        }
        let max = (txb.nb_free(BATCH as u32) as usize).min(BATCH);
        let n = unsafe { rxa.consume(&mut rx_buf[..max]) };
        if n > 0 {
            let done = unsafe { txb.produce(&rx_buf[..n]) };
            assert_eq!(done, n);
        }
        let pending = txb.nb_free_exact() != RING;
        if pending && txb.needs_wakeup() {
            txb.wakeup().expect("bare sendto");
        }
        if n == 0 && !pending {
            idle += 1;
        } else {
            idle = 0;
        }
    }
}

/// Count stamped frames on sink0 into a histogram of one-way latency (ns).
fn sink(stop: Arc<AtomicBool>, hist: Arc<std::sync::Mutex<Histogram<u64>>>) {
    let (umem, free) = umem(4096);
    // SAFETY: sink0 queue 0 bound once.
    let (_tx, mut rx, rings) = unsafe {
        Socket::new(
            socket_config(ProgramLoad::LibxdpDefault),
            &umem,
            &"sink0".parse().unwrap(),
            0,
        )
    }
    .expect("sink socket");
    let (mut fill, _comp) = rings.expect("rings");
    // SAFETY: all frames are ours. (A reservation is all or nothing: no
    // more than the ring holds.)
    unsafe { fill.produce(&free[..RING as usize]) };
    let mut buf = vec![FrameDesc::default(); BATCH];
    let mut local = Histogram::<u64>::new(3).unwrap();
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: received frames are ours until put back on the fill ring.
        let n = unsafe { rx.poll_and_consume(&mut buf, 10) }.unwrap_or(0);
        let now = mono_ns();
        for d in &buf[..n] {
            let data = unsafe { umem.data(d) };
            let c = data.contents();
            if c.len() >= STAMP_AT + 8 {
                let t = u64::from_ne_bytes(c[STAMP_AT..STAMP_AT + 8].try_into().unwrap());
                if t != 0 && t <= now {
                    let _ = local.record(now - t);
                }
            }
        }
        unsafe { fill.produce(&buf[..n]) };
    }
    hist.lock().unwrap().add(&local).unwrap();
}

#[derive(Clone, Copy, PartialEq)]
enum Forwarder {
    Bare,
    Rstwall,
}

struct Throughput {
    offered_mpps: f64,
    forwarded_mpps: f64,
    /// The forwarder thread's CPU time (user + system) per forwarded frame.
    cpu_ns_per_frame: f64,
}

const BARE_THREAD: &str = "bench-bare-fwd";
/// The datapath names its workers `rstwall-q<queue>`.
const RSTWALL_THREAD: &str = "rstwall-q0";

/// CPU time (user + system, ns) of this process's thread named `name`.
fn thread_cpu_ns(name: &str) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let tick_ns = 1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // After the parenthesised comm: state (field 3) ... utime (14), stime (15).
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        return (f[11] + f[12]) * tick_ns;
    }
    panic!("no thread named {name}");
}

fn start_forwarder(kind: Forwarder, cpu: usize, stop: &Arc<AtomicBool>) -> Option<Datapath> {
    match kind {
        Forwarder::Bare => {
            let stop = stop.clone();
            thread::Builder::new()
                .name(BARE_THREAD.into())
                .spawn(move || {
                    pin(cpu);
                    bare_forwarder(stop)
                })
                .unwrap();
            None
        }
        Forwarder::Rstwall => {
            let mut cfg = DatapathConfig::new(
                Topology::Inline {
                    a: "pa".into(),
                    b: "pb".into(),
                },
                1,
                EngineConfig::default(),
            );
            cfg.program = ProgramLoad::LibxdpDefault;
            cfg.bind = rstwall_datapath::afxdp::BindMode::Copy;
            cfg.cpus = vec![cpu];
            Some(Datapath::start(&cfg).expect("rstwall datapath"))
        }
    }
}

fn throughput(kind: Forwarder, o: &Options) -> Throughput {
    let lab = Lab::new();
    let stop = Arc::new(AtomicBool::new(false));
    let dp = start_forwarder(kind, o.fwd_cpu, &stop);
    thread::sleep(Duration::from_millis(200));
    let sent = Arc::new(AtomicU64::new(0));
    let g = {
        let (stop, sent, flows, cpu) = (stop.clone(), sent.clone(), o.flows, o.gen_cpu);
        thread::spawn(move || {
            pin(cpu);
            generator(stop, flows, None, sent)
        })
    };
    thread::sleep(Duration::from_secs(1)); // warm up
    let thread_name = match kind {
        Forwarder::Bare => BARE_THREAD,
        Forwarder::Rstwall => RSTWALL_THREAD,
    };
    let (t0, rx0, tx0) = (
        Instant::now(),
        lab.rx_packets("sink0"),
        lab.rx_packets("pa"),
    );
    let cpu0 = thread_cpu_ns(thread_name);
    thread::sleep(Duration::from_secs(o.seconds));
    let cpu1 = thread_cpu_ns(thread_name);
    let (secs, rx1, tx1) = (
        t0.elapsed().as_secs_f64(),
        lab.rx_packets("sink0"),
        lab.rx_packets("pa"),
    );
    stop.store(true, Ordering::Relaxed);
    g.join().unwrap();
    if let Some(dp) = dp {
        let stats = dp.stop().expect("stop");
        let f = &stats[0].frames;
        assert_eq!(f.ledger_errors, 0, "ledger errors");
    }
    thread::sleep(Duration::from_millis(100));
    drop(lab);
    Throughput {
        offered_mpps: (tx1 - tx0) as f64 / secs / 1e6,
        forwarded_mpps: (rx1 - rx0) as f64 / secs / 1e6,
        cpu_ns_per_frame: (cpu1 - cpu0) as f64 / (rx1 - rx0).max(1) as f64,
    }
}

fn latency(kind: Forwarder, o: &Options) -> Histogram<u64> {
    let lab = Lab::new();
    let stop = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new(3).unwrap()));
    let dp = start_forwarder(kind, o.fwd_cpu, &stop);
    let s = {
        let (stop, hist, cpu) = (stop.clone(), hist.clone(), o.gen_cpu);
        thread::spawn(move || {
            pin(cpu);
            sink(stop, hist)
        })
    };
    thread::sleep(Duration::from_millis(200));
    let gstop = Arc::new(AtomicBool::new(false));
    let g = {
        let (gstop, flows, cpu, pps) = (gstop.clone(), o.flows, o.gen_cpu, o.latency_pps);
        thread::spawn(move || {
            pin(cpu);
            generator(gstop, flows, Some(pps), Arc::new(AtomicU64::new(0)))
        })
    };
    thread::sleep(Duration::from_secs(o.seconds));
    gstop.store(true, Ordering::Relaxed);
    g.join().unwrap();
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    s.join().unwrap();
    if let Some(dp) = dp {
        dp.stop().expect("stop");
    }
    drop(lab);
    Arc::try_unwrap(hist).unwrap().into_inner().unwrap()
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn main() {
    let o = parse_options();
    assert!(sys::is_root(), "run as root (network namespaces, AF_XDP)");
    println!(
        "veth, copy mode, {FRAME_LEN}-byte frames, {} flows, batch {BATCH}, generator CPU {}, forwarder CPU {}",
        o.flows, o.gen_cpu, o.fwd_cpu
    );
    let mut best = [(0.0f64, 0.0f64); 2];
    let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=o.rounds {
        for (i, kind) in [Forwarder::Bare, Forwarder::Rstwall]
            .into_iter()
            .enumerate()
        {
            let t = throughput(kind, &o);
            let name = if kind == Forwarder::Bare {
                "bare   "
            } else {
                "rstwall"
            };
            println!(
                "round {round} {name}: offered {:.3} Mpps, forwarded {:.3} Mpps, forwarder CPU {:.0} ns/frame",
                t.offered_mpps, t.forwarded_mpps, t.cpu_ns_per_frame
            );
            cpu[i].push(t.cpu_ns_per_frame);
            if t.forwarded_mpps > best[i].1 {
                best[i] = (t.offered_mpps, t.forwarded_mpps);
            }
        }
    }
    println!(
        "throughput (best of {}): bare {:.3} Mpps, rstwall {:.3} Mpps, ratio {:.2}",
        o.rounds,
        best[0].1,
        best[1].1,
        best[1].1 / best[0].1
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (cb, cr) = (median(&mut cpu[0]), median(&mut cpu[1]));
    println!(
        "forwarder CPU per frame (median of {}): bare {cb:.0} ns, rstwall {cr:.0} ns: \
         capacity ratio {:.2} (bare/rstwall)",
        o.rounds,
        cb / cr
    );
    let bare = latency(Forwarder::Bare, &o);
    let rst = latency(Forwarder::Rstwall, &o);
    println!(
        "latency at {} pps, one way gen0→sink0 (µs), samples bare {} rstwall {}",
        o.latency_pps,
        bare.len(),
        rst.len()
    );
    for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
        println!(
            "  {name:>5}: bare {:8.1}  rstwall {:8.1}  added {:8.1}",
            us(&bare, q),
            us(&rst, q),
            us(&rst, q) - us(&bare, q)
        );
    }
}
