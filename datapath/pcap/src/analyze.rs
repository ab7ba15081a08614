//! Offline analysis: capture files through the same engine the datapath
//! runs, in file order, with each frame's own timestamp as the clock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::capture::{CaptureReader, Format, Frame, OpenError};
use rstwall_engine::engine::{Engine, EngineConfig, Outcome, RstFields};
use rstwall_engine::policy::Mode;
use rstwall_engine::telemetry::Snapshot;

/// A capture that could not be opened at all.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {error}")]
pub struct OpenFailed {
    pub path: String,
    /// Displayed inline, not chained, so the message says it once.
    pub error: OpenError,
}

/// What happened to one input file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileSummary {
    pub path: String,
    pub format: &'static str,
    pub frames: u64,
    /// Where reading stopped early, if it did ("frame 35 (byte offset
    /// 4096): record truncated ...").
    pub stopped: Option<String>,
    /// Frames per link-type number we cannot read.
    pub unsupported_linktypes: BTreeMap<u32, u64>,
}

/// The result of an analysis.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub files: Vec<FileSummary>,
    pub mode: Mode,
    /// Earliest and latest frame timestamps (ns since the epoch).
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub bytes_per_flow: usize,
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

/// One RST as `--events` writes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RstEvent<'a> {
    pub file: &'a str,
    /// 1-based, as tcpdump and Wireshark count.
    pub frame: u64,
    /// RFC 3339, UTC, nanoseconds.
    pub ts: String,
    #[serde(flatten)]
    pub rst: RstFields,
}

impl<'a> RstEvent<'a> {
    /// The event for a frame's outcome, if the frame is a RST.
    pub fn of(file: &'a str, frame: &Frame<'_>, outcome: &Outcome) -> Option<RstEvent<'a>> {
        let (p, r) = (outcome.packet?, outcome.rst?);
        Some(RstEvent {
            file,
            frame: frame.number,
            ts: format_ts(frame.timestamp_ns),
            rst: RstFields::of(&p, &r, outcome.decision),
        })
    }
}

/// RFC 3339 in UTC with nanoseconds, for any u64 timestamp (u64
/// nanoseconds end in 2554; humantime formats up to 9999).
pub fn format_ts(ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// Opened inputs, checked before any analysis starts so a bad argument
/// fails fast.
pub struct Inputs {
    files: Vec<(PathBuf, CaptureReader<std::fs::File>)>,
}

impl Inputs {
    pub fn open(paths: &[impl AsRef<Path>]) -> Result<Inputs, OpenFailed> {
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            let p = p.as_ref();
            let reader = CaptureReader::open(p).map_err(|error| OpenFailed {
                path: p.display().to_string(),
                error,
            })?;
            files.push((p.to_path_buf(), reader));
        }
        Ok(Inputs { files })
    }

    /// Run every frame of every file through `engine`, in order, calling
    /// `each(file, frame, outcome)` after each judged frame. `each` may stop
    /// the analysis by returning an error.
    pub fn run<E>(
        self,
        engine: &mut Engine,
        mut each: impl FnMut(&str, &Frame<'_>, &Outcome) -> Result<(), E>,
    ) -> Result<Vec<FileSummary>, E> {
        let mut summaries = Vec::with_capacity(self.files.len());
        for (path, mut reader) in self.files {
            let name = path.display().to_string();
            let mut unsupported = BTreeMap::new();
            let mut stopped = None;
            loop {
                let frame = match reader.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(damage) => {
                        stopped = Some(damage.to_string());
                        break;
                    }
                };
                let outcome = match frame.link {
                    Some(link) => engine.process(link, frame.data, frame.timestamp_ns),
                    None => {
                        *unsupported.entry(frame.linktype).or_insert(0u64) += 1;
                        engine.advance(frame.timestamp_ns);
                        engine.count_unsupported_link(frame.data.len());
                        continue;
                    }
                };
                // Offline there is no kernel to block in: requests are
                // taken so they read as requested, not as lost.
                engine.drain_block_requests(|_| {});
                each(&name, &frame, &outcome)?;
            }
            summaries.push(FileSummary {
                path: name,
                format: match reader.format() {
                    Format::Pcap { .. } => "pcap",
                    Format::PcapNg => "pcapng",
                },
                frames: reader.frames_read(),
                stopped,
                unsupported_linktypes: unsupported,
            });
        }
        engine.finish();
        Ok(summaries)
    }
}

/// Analyze files with `cfg` and build the report; `each` sees every judged
/// frame (for `--events` and `--write`).
pub fn analyze<E>(
    paths: &[impl AsRef<Path>],
    cfg: &EngineConfig,
    top: usize,
    each: impl FnMut(&str, &Frame<'_>, &Outcome) -> Result<(), E>,
) -> Result<Result<Report, E>, OpenFailed> {
    let inputs = Inputs::open(paths)?;
    let mut engine = Engine::new(cfg);
    let mut first_ns = None;
    let mut last_ns = None;
    let mut each = each;
    let files = inputs.run(&mut engine, |name, frame, outcome| {
        let t = frame.timestamp_ns;
        first_ns = Some(first_ns.map_or(t, |f: u64| f.min(t)));
        last_ns = Some(last_ns.map_or(t, |l: u64| l.max(t)));
        each(name, frame, outcome)
    });
    Ok(files.map(|files| Report {
        files,
        mode: cfg.policy.mode(),
        first_ns,
        last_ns,
        bytes_per_flow: engine.flows().bytes_per_flow(),
        snapshot: engine.snapshot(top),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two engines that split the flows between them (as the AF_XDP
    /// workers do), their snapshots merged, show what one engine that saw
    /// everything shows: counters, classes, per-second counts, hosts and
    /// top lists (every entry fits the lists here).
    #[test]
    fn merged_snapshots_of_split_flows_equal_one_engine() {
        use crate::capture::CaptureReader;
        use rstwall_engine::telemetry::Snapshot;
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../samples/demo.pcap");
        let mut reader = CaptureReader::open(path).unwrap();
        let cfg = EngineConfig::default();
        let (mut one, mut parts) = (Engine::new(&cfg), [Engine::new(&cfg), Engine::new(&cfg)]);
        let mut probe = Engine::new(&cfg);
        let mut frames = 0;
        while let Some(f) = reader.next_frame().unwrap() {
            let link = f.link.unwrap();
            one.process(link, f.data, f.timestamp_ns);
            // Both directions of a flow go to the same part.
            let part = match probe.process(link, f.data, f.timestamp_ns).packet {
                Some(p) => {
                    let a = (p.src, p.src_port);
                    let b = (p.dst, p.dst_port);
                    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                    (u16::from(lo.1 % 2 == 0) ^ (hi.1 % 2)) as usize
                }
                None => 0,
            };
            parts[part].process(link, f.data, f.timestamp_ns);
            frames += 1;
        }
        assert!(frames > 100);
        let top = 1000;
        let want = one.snapshot(top);
        let got = Snapshot::merge(parts.iter().map(|e| e.snapshot(top)).collect(), top);
        assert!(
            parts.iter().all(|e| e.telemetry().counters.tcp > 0),
            "both parts saw flows"
        );
        assert_eq!(got.counters, want.counters);
        assert_eq!(got.rst_classes(), want.rst_classes());
        assert_eq!(got.active_flows, want.active_flows);
        assert_eq!(got.seconds, want.seconds);
        assert_eq!(got.hosts, want.hosts);
        assert_eq!(got.top_rst_senders, want.top_rst_senders);
        assert_eq!(got.top_failed_clients, want.top_failed_clients);
        assert_eq!(got.top_by_class, want.top_by_class);
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_ts(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            format_ts(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert!(format_ts(u64::MAX).starts_with("2554-07-21T23:34:33"));
    }
}
