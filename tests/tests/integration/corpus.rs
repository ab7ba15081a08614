//! The corpus oracle: our capture reader and wire parser against tshark.
//!
//! `expected.tsv` holds what tshark (Wireshark 4.0) counted in each of the
//! 954 public captures; we count the same columns by running each file
//! through the engine exactly as `rstwall analyze` does and must agree, file by file, except where [`DELIBERATE`] names and explains
//! the difference. Many of these files are fuzzer-found or deliberately
//! malformed, so this is also the robustness test: every frame of every file
//! is parsed, a panic in one file is reported and the run goes on, and a
//! file that takes longer than [`PER_FILE_LIMIT`] fails the test.
//!
//! The same files also drive three properties that need no oracle: cut and
//! corrupted copies read and parse without panic or hang, a truncated frame
//! never yields different TCP flags, and every capture survives a round
//! trip through [`CaptureWriter`] (and, where installed, `tcpdump -r`).

use std::fmt;
use std::io::Cursor;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rstwall_engine::engine::EngineConfig;
use rstwall_engine::telemetry::TelemetryConfig;
use rstwall_engine::wire::{self, Parsed};
use rstwall_netlab::rng;
use rstwall_pcap::analyze;
use rstwall_pcap::capture::{CaptureReader, CaptureWriter, Resolution, WriteError};

/// The `expected.tsv` columns we count, in file order.
const COLUMNS: [&str; 7] = ["frames", "tcp", "syn", "synack", "fin", "rst", "rstack"];

/// Generous for a debug build on a busy 2-core machine; the slowest corpus
/// file takes well under a second.
const PER_FILE_LIMIT: Duration = Duration::from_secs(30);

/// Per-file counts in `expected.tsv` column order. Flag columns count flag
/// BITS over TCP frames, not exclusive classes: a frame with every flag set
/// counts in syn-and-ack (synack), fin, rst and rstack at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub frames: u64,
    pub tcp: u64,
    pub syn: u64,
    pub synack: u64,
    pub fin: u64,
    pub rst: u64,
    pub rstack: u64,
}

impl Counts {
    fn values(&self) -> [u64; 7] {
        [
            self.frames,
            self.tcp,
            self.syn,
            self.synack,
            self.fin,
            self.rst,
            self.rstack,
        ]
    }

    fn from_values(v: [u64; 7]) -> Counts {
        Counts {
            frames: v[0],
            tcp: v[1],
            syn: v[2],
            synack: v[3],
            fin: v[4],
            rst: v[5],
            rstack: v[6],
        }
    }
}

/// What reading one file gave: the counts, and why reading stopped early
/// (the file could not be opened, or was damaged part way).
#[derive(Clone, Debug, Default)]
pub struct FileCounts {
    pub counts: Counts,
    pub stopped: Option<String>,
}

/// Count one capture file by running it through the whole engine — the
/// same path `rstwall analyze` takes — and reading its counters. Also checks
/// an invariant that needs no oracle: every RST got exactly one class.
pub fn count_file(path: &Path) -> FileCounts {
    let mut out = FileCounts::default();
    let cfg = EngineConfig {
        flow_capacity: 4096,
        telemetry: TelemetryConfig {
            hosts: 1024,
            ports: 1024,
        },
        ..EngineConfig::default()
    };
    let report = match analyze::analyze(&[path], &cfg, 5, |_, _, _| Ok::<(), ()>(())) {
        Ok(Ok(report)) => report,
        Ok(Err(())) => unreachable!("the callback never fails"),
        Err(e) => {
            out.stopped = Some(format!("open: {e}"));
            return out;
        }
    };
    let file = &report.files[0];
    out.stopped = file.stopped.clone();
    let c = &report.snapshot.counters;
    let classified: u64 = report
        .snapshot
        .rst_classes()
        .iter()
        .map(|r| r.counts.total)
        .sum();
    assert_eq!(
        classified,
        c.rst,
        "{}: {} RSTs but {} classified",
        path.display(),
        c.rst,
        classified
    );
    out.counts = Counts {
        frames: file.frames,
        tcp: c.tcp,
        syn: c.syn,
        synack: c.synack,
        fin: c.fin,
        rst: c.rst,
        rstack: c.rstack,
    };
    out
}

/// A difference from tshark we accept, and why.
struct Deliberate {
    file: &'static str,
    /// (column, ours, tshark's) for every column that differs.
    differs: &'static [(&'static str, u64, u64)],
    why: &'static str,
}

/// The explanation shared by files tshark could not open at all.
macro_rules! wireshark_cannot_open {
    ($linktype:literal) => {
        concat!(
            $linktype,
            ": Wireshark 4.0's wiretap maps no encapsulation to this link type and ",
            "refuses the whole file, so tshark counted 0 frames. We read every record ",
            "(frame.link = None, nothing parsed), so only `frames` differs."
        )
    };
}

/// The explanation shared by link types tshark dissects and we do not.
macro_rules! link_not_read {
    ($linktype:literal, $detail:literal) => {
        concat!(
            $linktype,
            ": a link type we deliberately do not read (frame.link = None), so its ",
            "TCP goes uncounted while tshark dissects it. ",
            $detail
        )
    };
}

/// Every file where we knowingly disagree with tshark. An entry must match
/// the observed difference exactly; a stale entry fails the test too.
///
/// 16 files: 14 in link types Wireshark 4.0 cannot open (we count frames it
/// does not), and the two below "What remains". The corpus shows no
/// disagreement in Ethernet, VLAN, Linux cooked, NULL, raw IP, PPP, ARCnet,
/// IPoIB, IPv4, IPv6 (jumbograms included) or TCP parsing, nor in tunnels:
/// GRE, ERSPAN, IP-in-IP and the rest count as TCP for neither of us.
const DELIBERATE: &[Deliberate] = &[
    // --- Link types Wireshark 4.0 cannot open -------------------------------
    Deliberate {
        file: "tcpdump/brcm-tag-prepend.pcap",
        differs: &[("frames", 15, 0)],
        why: wireshark_cannot_open!("LINKTYPE_DSA_TAG_BRCM_PREPEND (282)"),
    },
    Deliberate {
        file: "tcpdump/brcm-tag.pcap",
        differs: &[("frames", 23, 0)],
        why: wireshark_cannot_open!("LINKTYPE_DSA_TAG_BRCM (281)"),
    },
    Deliberate {
        file: "tcpdump/dsa-high-vid.pcap",
        differs: &[("frames", 4, 0)],
        why: wireshark_cannot_open!("LINKTYPE_DSA_TAG_DSA (284)"),
    },
    Deliberate {
        file: "tcpdump/dsa.pcap",
        differs: &[("frames", 8, 0)],
        why: wireshark_cannot_open!("LINKTYPE_DSA_TAG_DSA (284)"),
    },
    Deliberate {
        file: "tcpdump/edsa-high-vid.pcap",
        differs: &[("frames", 4, 0)],
        why: wireshark_cannot_open!("LINKTYPE_DSA_TAG_EDSA (285)"),
    },
    Deliberate {
        file: "tcpdump/edsa.pcap",
        differs: &[("frames", 10, 0)],
        why: wireshark_cannot_open!("LINKTYPE_DSA_TAG_EDSA (285)"),
    },
    Deliberate {
        file: "tcpdump/frf16_magic_ie-oobr.pcap",
        differs: &[("frames", 1, 0)],
        why: wireshark_cannot_open!("LINKTYPE_MFR (182, FRF.16 multilink Frame Relay)"),
    },
    Deliberate {
        file: "tcpdump/kday6.pcap",
        differs: &[("frames", 1, 0)],
        why: wireshark_cannot_open!("LINKTYPE_MFR (182, FRF.16 multilink Frame Relay)"),
    },
    Deliberate {
        file: "tcpdump/vtp_asan.pcap",
        differs: &[("frames", 5, 0)],
        why: wireshark_cannot_open!("LINKTYPE_MFR (182, FRF.16 multilink Frame Relay)"),
    },
    Deliberate {
        file: "tcpdump/vtp_asan-2.pcap",
        differs: &[("frames", 1, 0)],
        why: wireshark_cannot_open!("LINKTYPE_MFR (182, FRF.16 multilink Frame Relay)"),
    },
    Deliberate {
        file: "tcpdump/vtp_asan-3.pcap",
        differs: &[("frames", 1, 0)],
        why: wireshark_cannot_open!("LINKTYPE_MFR (182, FRF.16 multilink Frame Relay)"),
    },
    Deliberate {
        file: "tcpdump/hoobr_juniper3.pcap",
        differs: &[("frames", 1, 0)],
        why: wireshark_cannot_open!("LINKTYPE_JUNIPER_ES (132, reserved for Juniper)"),
    },
    Deliberate {
        file: "tcpdump/juniper_es_oobr.pcap",
        differs: &[("frames", 1, 0)],
        why: wireshark_cannot_open!("LINKTYPE_JUNIPER_ES (132, reserved for Juniper)"),
    },
    Deliberate {
        file: "tcpdump/juniper_monitor_invalid_cookie_length.pcap",
        differs: &[("frames", 1, 0)],
        why: wireshark_cannot_open!("LINKTYPE_JUNIPER_MONITOR (164, reserved for Juniper)"),
    },
    // --- What remains: one line each ----------------------------------------
    Deliberate {
        file: "tcpdump/bgp-aigp.pcap",
        differs: &[("tcp", 0, 1)],
        why: link_not_read!("LINKTYPE_JUNIPER_ETHER (178)", "Juniper's private meta-data header before Ethernet: one corpus file, no port rstwall sits on."),
    },
    Deliberate {
        file: "tcpdump/bigtcp-ipv6.pcap",
        differs: &[("tcp", 1, 0)],
        why: "IPv6 payload length 0 without a Jumbo Payload option is a BIG TCP segment (Linux 6.3+, as current tcpdump reads it); Wireshark 4.0 takes the 0 literally and finds no TCP.",
    },
];

struct Expected {
    file: String,
    counts: Counts,
}

fn load_expected(corpus: &Path) -> Vec<Expected> {
    let tsv = std::fs::read_to_string(corpus.join("expected.tsv")).expect("read expected.tsv");
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    assert_eq!(header[0], "file");
    assert_eq!(&header[1..=COLUMNS.len()], COLUMNS, "expected.tsv columns");
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split('\t').collect();
            let mut v = [0u64; 7];
            for (i, slot) in v.iter_mut().enumerate() {
                *slot = cells[i + 1].parse().expect("numeric cell");
            }
            Expected {
                file: cells[0].to_string(),
                counts: Counts::from_values(v),
            }
        })
        .collect()
}

/// One file's outcome as the worker thread reports it.
struct Outcome {
    counts: Result<FileCounts, String>,
    elapsed: Duration,
}

#[derive(Default)]
struct Report {
    unexplained: Vec<String>,
    explained: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.explained {
            writeln!(f, "  deliberate  {line}")?;
        }
        for line in &self.unexplained {
            writeln!(f, "  MISMATCH    {line}")?;
        }
        Ok(())
    }
}

fn diff(ours: &Counts, theirs: &Counts) -> Vec<(&'static str, u64, u64)> {
    COLUMNS
        .iter()
        .zip(ours.values().into_iter().zip(theirs.values()))
        .filter(|(_, (a, b))| a != b)
        .map(|(c, (a, b))| (*c, a, b))
        .collect()
}

fn show(d: &[(&str, u64, u64)]) -> String {
    d.iter()
        .map(|(c, a, b)| format!("{c} {a}≠{b}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn corpus_matches_tshark() {
    let corpus = rstwall_tests::corpus_dir();
    let expected = load_expected(&corpus);
    assert!(
        expected.len() > 900,
        "expected.tsv has {} rows",
        expected.len()
    );

    // One worker reads the files in order; the test thread bounds the time
    // each may take, so a hang fails the test instead of stalling it.
    let paths: Vec<PathBuf> = expected.iter().map(|e| corpus.join(&e.file)).collect();
    let (tx, rx) = mpsc::channel::<Outcome>();
    let worker = thread::spawn(move || {
        for path in paths {
            let start = Instant::now();
            let counts = panic::catch_unwind(AssertUnwindSafe(|| count_file(&path))).map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            });
            let elapsed = start.elapsed();
            if tx.send(Outcome { counts, elapsed }).is_err() {
                return;
            }
        }
    });

    // RSTWALL_CORPUS_VERBOSE=1 also lists where matching files stopped early.
    let verbose = std::env::var_os("RSTWALL_CORPUS_VERBOSE").is_some();
    let started = Instant::now();
    let mut report = Report::default();
    let mut used = vec![false; DELIBERATE.len()];
    let mut slowest = (Duration::ZERO, "");
    let mut totals = [0u64; 7];
    for exp in &expected {
        let outcome = match rx.recv_timeout(PER_FILE_LIMIT) {
            Ok(o) => o,
            Err(_) => panic!(
                "{} did not finish within {PER_FILE_LIMIT:?}\n{report}",
                exp.file
            ),
        };
        if outcome.elapsed > slowest.0 {
            slowest = (outcome.elapsed, &exp.file);
        }
        let got = match outcome.counts {
            Ok(got) => {
                for (sum, v) in totals.iter_mut().zip(got.counts.values()) {
                    *sum += v;
                }
                got
            }
            Err(msg) => {
                report
                    .unexplained
                    .push(format!("{}: PANIC {msg}", exp.file));
                continue;
            }
        };
        let d = diff(&got.counts, &exp.counts);
        if verbose {
            if let Some(stopped) = &got.stopped {
                println!("  stopped     {}: {stopped}", exp.file);
            }
        }
        if d.is_empty() {
            continue;
        }
        let note = got.stopped.map(|s| format!("  [{s}]")).unwrap_or_default();
        let line = format!("{}: {}{note}", exp.file, show(&d));
        match DELIBERATE.iter().position(|a| a.file == exp.file) {
            Some(i) if DELIBERATE[i].differs == d.as_slice() => {
                used[i] = true;
                report
                    .explained
                    .push(format!("{line}\n              why: {}", DELIBERATE[i].why));
            }
            Some(i) => {
                used[i] = true;
                report.unexplained.push(format!(
                    "{line}  (allow-list says: {})",
                    show(DELIBERATE[i].differs)
                ));
            }
            None => report.unexplained.push(line),
        }
    }
    worker.join().expect("worker thread");
    for (entry, used) in DELIBERATE.iter().zip(used) {
        if !used {
            report.unexplained.push(format!(
                "{}: allow-list entry is stale (file now matches)",
                entry.file
            ));
        }
    }

    println!(
        "corpus: {} files in {:.1?} (slowest {} in {:.1?}); {} deliberate differences, {} unexplained",
        expected.len(),
        started.elapsed(),
        slowest.1,
        slowest.0,
        report.explained.len(),
        report.unexplained.len()
    );
    let totals: Vec<String> = COLUMNS
        .iter()
        .zip(totals)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    println!("corpus totals (ours): {}", totals.join(", "));
    print!("{report}");
    assert!(
        report.unexplained.is_empty(),
        "{} files differ from tshark without an explanation",
        report.unexplained.len()
    );
}

/// Every corpus file's bytes, in `expected.tsv` order.
fn corpus_files() -> Vec<(String, Vec<u8>)> {
    let corpus = rstwall_tests::corpus_dir();
    load_expected(&corpus)
        .into_iter()
        .map(|e| {
            let bytes = std::fs::read(corpus.join(&e.file)).expect("read corpus file");
            (e.file, bytes)
        })
        .collect()
}

/// Read and parse every frame of an in-memory capture; frames read, or
/// `None` if it does not open.
fn read_and_parse(bytes: &[u8]) -> Option<u64> {
    let mut r = CaptureReader::new(Cursor::new(bytes)).ok()?;
    let mut n = 0;
    while let Ok(Some(f)) = r.next_frame() {
        n += 1;
        if let Some(link) = f.link {
            let _ = wire::parse(link, f.data);
        }
    }
    Some(n)
}

/// Cut and corrupt every corpus file in a few places: reading and parsing
/// must neither panic nor hang, and a cut file yields at most the frames of
/// the whole one (the reader stops at the damage, it does not invent).
#[test]
fn corpus_survives_truncation_and_corruption() {
    let started = Instant::now();
    // Seeded: a failure reproduces.
    let mut rng = rng::seeded(0x2545_f491_4f6c_dd1d);
    for (file, bytes) in corpus_files() {
        let whole = read_and_parse(&bytes).unwrap_or(0);
        let len = bytes.len();
        let cuts = [
            0,
            4,
            23,
            24,
            25,
            40,
            len / 3,
            len / 2,
            len - 1,
            len.saturating_sub(17),
        ];
        for cut in cuts.into_iter().filter(|&c| c <= len) {
            let got = read_and_parse(&bytes[..cut]).unwrap_or(0);
            assert!(got <= whole, "{file} cut at {cut}: {got} frames > {whole}");
        }
        for _ in 0..16 {
            let mut b = bytes.clone();
            let at = rng.usize(..len);
            b[at] ^= rng.u8(1..);
            read_and_parse(&b);
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "mutation pass took {:?}",
        started.elapsed()
    );
}

/// Truncating a frame may lose its TCP header, never change what we read
/// from it: every prefix of every corpus frame that still parses as TCP
/// carries the same flags as the whole frame.
#[test]
fn corpus_frame_prefixes_parse_consistently() {
    /// Enough to reach the flags through Ethernet, two VLAN tags, IPv6 and
    /// a few extension headers; longer prefixes change nothing.
    const PREFIX: usize = 160;
    for (file, bytes) in corpus_files() {
        let Ok(mut r) = CaptureReader::new(Cursor::new(&bytes[..])) else {
            continue;
        };
        while let Ok(Some(f)) = r.next_frame() {
            let Some(link) = f.link else { continue };
            let whole = match wire::parse(link, f.data) {
                Ok(Parsed::Tcp(s)) => Some(s.flags),
                _ => None,
            };
            for cut in 0..f.data.len().min(PREFIX) {
                if let Ok(Parsed::Tcp(s)) = wire::parse(link, &f.data[..cut]) {
                    assert_eq!(
                        Some(s.flags),
                        whole,
                        "{file} frame {} cut to {cut} bytes",
                        f.number
                    );
                }
            }
        }
    }
}

/// Whether `tcpdump` can be run here (it is on the CI image).
fn have_tcpdump() -> bool {
    Command::new("tcpdump")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Rewrite every single-link-type corpus capture with [`CaptureWriter`] and
/// read it back: same frames, same bytes, same timestamps (nanosecond
/// files) and same original lengths (raised to the captured length where a
/// fuzzed record had it smaller). Where tcpdump is installed it must read
/// a sample of the rewritten files, in both resolutions, without error.
#[test]
fn corpus_rewrites_through_capture_writer() {
    let tcpdump = have_tcpdump();
    let scratch = std::env::temp_dir().join(format!("rstwall-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let mut checked_with_tcpdump = 0;
    for (i, (file, bytes)) in corpus_files().into_iter().enumerate() {
        let Ok(mut r) = CaptureReader::new(Cursor::new(&bytes[..])) else {
            continue;
        };
        let mut frames = Vec::new();
        while let Ok(Some(f)) = r.next_frame() {
            frames.push((f.timestamp_ns, f.orig_len, f.data.to_vec(), f.linktype));
        }
        let Some(&(_, _, _, linktype)) = frames.first() else {
            continue;
        };
        if frames.iter().any(|f| f.3 != linktype) {
            continue; // pcap holds one link type; pcapng may mix them
        }
        for resolution in [Resolution::Nanos, Resolution::Micros] {
            let mut w = CaptureWriter::with_linktype(Vec::new(), linktype, resolution).unwrap();
            let mut written = Vec::new();
            for frame @ (ts, orig_len, data, _) in &frames {
                match w.write(*ts, *orig_len, data) {
                    Ok(()) => written.push(frame),
                    // time_2106_overflow.pcapng: pcap's seconds are 32 bits.
                    Err(WriteError::TimestampOutOfRange(_))
                        if *ts / 1_000_000_000 > u64::from(u32::MAX) => {}
                    Err(e) => panic!("{file}: {e}"),
                }
            }
            let out = w.finish().unwrap();
            let mut back = CaptureReader::new(Cursor::new(&out[..])).unwrap();
            for (ts, orig_len, data, _) in written {
                let f = back.next_frame().unwrap().expect("frame written");
                let ts = match resolution {
                    Resolution::Nanos => *ts,
                    Resolution::Micros => ts - ts % 1_000,
                };
                assert_eq!(f.timestamp_ns, ts, "{file} frame {}", f.number);
                assert_eq!(f.orig_len, (*orig_len).max(data.len() as u32), "{file}");
                assert_eq!(f.data, &data[..], "{file} frame {}", f.number);
                assert_eq!(f.linktype, linktype);
            }
            assert_eq!(back.next_frame(), Ok(None), "{file}");

            // Every 25th file through tcpdump: it must read every frame.
            if tcpdump && i % 25 == 0 {
                let path = scratch.join(format!("{i}.pcap"));
                std::fs::write(&path, &out).unwrap();
                let run = Command::new("tcpdump")
                    .args(["-nn", "-q", "-r"])
                    .arg(&path)
                    .output()
                    .expect("run tcpdump");
                let stderr = String::from_utf8_lossy(&run.stderr);
                assert!(
                    run.status.success(),
                    "tcpdump -r {file} rewritten: {stderr}"
                );
                assert!(
                    !stderr.contains("truncated") && !stderr.contains("error"),
                    "tcpdump -r {file} rewritten: {stderr}"
                );
                checked_with_tcpdump += 1;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if tcpdump {
        assert!(checked_with_tcpdump > 20);
    } else {
        println!("tcpdump not installed: rewritten files not checked with it");
    }
}
