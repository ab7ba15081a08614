//! The corpus oracle: our capture reader and wire parser against tshark.
//!
//! `expected.tsv` holds what tshark (Wireshark 4.0) counted in each of the
//! 954 public captures; we count the same columns with
//! [`rstwall_datapath::capture`] and [`rstwall_datapath::wire::parse`] and
//! must agree, file by file, except where [`DELIBERATE`] names and explains
//! the difference. Many of these files are fuzzer-found or deliberately
//! malformed, so this is also the robustness test: every frame of every file
//! is parsed, a panic in one file is reported and the run goes on, and a
//! file that takes longer than [`PER_FILE_LIMIT`] fails the test.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use rstwall_datapath::capture::CaptureReader;
use rstwall_datapath::wire::{self, Parsed};

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

/// Count one capture file. The one place to re-point at the full engine.
pub fn count_file(path: &Path) -> FileCounts {
    let mut out = FileCounts::default();
    let mut reader = match CaptureReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            out.stopped = Some(format!("open: {e}"));
            return out;
        }
    };
    let c = &mut out.counts;
    loop {
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(damage) => {
                out.stopped = Some(damage.to_string());
                break;
            }
        };
        c.frames += 1;
        let Some(link) = frame.link else { continue };
        let Ok(Parsed::Tcp(seg)) = wire::parse(link, frame.data) else {
            continue;
        };
        let f = seg.flags;
        c.tcp += 1;
        c.syn += u64::from(f.syn() && !f.ack());
        c.synack += u64::from(f.syn() && f.ack());
        c.fin += u64::from(f.fin());
        c.rst += u64::from(f.rst());
        c.rstack += u64::from(f.rst() && f.ack());
    }
    out
}

/// A difference from tshark we accept, and why.
struct Deliberate {
    file: &'static str,
    /// (column, ours, tshark's) for every column that differs.
    differs: &'static [(&'static str, u64, u64)],
    why: &'static str,
}

/// Every file where we knowingly disagree with tshark. An entry must match
/// the observed difference exactly; a stale entry fails the test too.
const DELIBERATE: &[Deliberate] = &[];

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
            Ok(got) => got,
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
    print!("{report}");
    assert!(
        report.unexplained.is_empty(),
        "{} files differ from tshark without an explanation",
        report.unexplained.len()
    );
}
