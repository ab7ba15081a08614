//! `rstwall analyze FILE...`

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use rstwall_engine::engine::{EngineConfig, Outcome};
use rstwall_engine::policy::PolicyConfig;
use rstwall_engine::wire::LinkType;
use rstwall_engine::RstClass;
use rstwall_pcap::analyze::{self, RstEvent};
use rstwall_pcap::capture::{CaptureWriter, Frame, Resolution};

use crate::cli::AnalyzeArgs;
use rstwall_api::Failure;

use crate::render;

/// Where `--write` puts matching RSTs. The pcap is created at the first
/// match, with that frame's link type; frames of another link type cannot
/// share a classic pcap and are counted instead.
struct PcapSink<'a> {
    path: &'a Path,
    classes: Vec<RstClass>,
    writer: Option<CaptureWriter<BufWriter<File>>>,
    written: u64,
    skipped_linktype: u64,
}

impl PcapSink<'_> {
    fn offer(&mut self, frame: &Frame<'_>, outcome: &Outcome) -> anyhow::Result<()> {
        let Some(rst) = outcome.rst else {
            return Ok(());
        };
        if !self.classes.is_empty() && !self.classes.contains(&rst.class) {
            return Ok(());
        }
        if self.writer.is_none() {
            let file = File::create(self.path)
                .with_context(|| format!("cannot create {}", self.path.display()))?;
            let w = CaptureWriter::with_linktype(
                BufWriter::new(file),
                frame.linktype,
                Resolution::Nanos,
            )
            .with_context(|| format!("cannot create {}", self.path.display()))?;
            self.writer = Some(w);
        }
        let w = self.writer.as_mut().expect("created above");
        if w.linktype() != frame.linktype {
            self.skipped_linktype += 1;
            return Ok(());
        }
        w.write_frame(frame)
            .with_context(|| format!("writing {}", self.path.display()))?;
        self.written += 1;
        Ok(())
    }
}

/// Read and validate a policy file. The engine reads no files: the error
/// names the file here (and, from the engine, the line and column).
fn read_policy_file(path: &Path) -> anyhow::Result<PolicyConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    PolicyConfig::from_toml_str(&text).with_context(|| format!("policy file {}", path.display()))
}

fn load_policy(args: &AnalyzeArgs) -> Result<PolicyConfig, Failure> {
    let mut policy = match &args.policy {
        Some(path) => read_policy_file(path).map_err(Failure::usage)?,
        None => PolicyConfig::default(),
    };
    if let Some(mode) = &args.mode {
        policy
            .set("mode", mode)
            .context("--mode")
            .map_err(Failure::usage)?;
    }
    Ok(policy)
}

pub fn run(args: AnalyzeArgs) -> Result<(), Failure> {
    let classes = args
        .class
        .iter()
        .map(|c| c.trim().parse::<RstClass>())
        .collect::<Result<Vec<_>, _>>()
        .context("--class")
        .map_err(Failure::usage)?;
    let events_to_stdout = args.events.as_deref() == Some(Path::new("-"));
    if events_to_stdout && args.json {
        return Err(Failure::usage(anyhow::anyhow!(
            "--events - and --json would both write to standard output; give --events a file"
        )));
    }
    let mut cfg = EngineConfig {
        policy: load_policy(&args)?,
        ..EngineConfig::default()
    };
    if let Some(n) = args.flow_capacity {
        cfg.flow_capacity = n;
    }
    cfg.validate()
        .map_err(|e| Failure::usage(anyhow::anyhow!("{e}")))?;

    let mut events: Option<Box<dyn Write>> = match &args.events {
        None => None,
        Some(p) if events_to_stdout => {
            let _ = p;
            Some(Box::new(BufWriter::new(io::stdout().lock())))
        }
        Some(p) => Some(Box::new(BufWriter::new(
            File::create(p)
                .with_context(|| format!("cannot create {}", p.display()))
                .map_err(Failure::usage)?,
        ))),
    };
    let mut sink = args.write.as_deref().map(|path| PcapSink {
        path,
        classes: classes.clone(),
        writer: None,
        written: 0,
        skipped_linktype: 0,
    });

    let report = analyze::analyze(
        &args.files,
        &cfg,
        args.top as usize,
        |file, frame, outcome| {
            if let Some(out) = events.as_mut() {
                if let Some(ev) = RstEvent::of(file, frame, outcome) {
                    serde_json::to_writer(&mut *out, &ev)?;
                    out.write_all(b"\n")?;
                }
            }
            if let Some(sink) = sink.as_mut() {
                sink.offer(frame, outcome)?;
            }
            anyhow::Ok(())
        },
    )
    .map_err(Failure::usage)?
    .map_err(Failure::runtime)?;

    if let Some(mut out) = events.take() {
        out.flush()
            .context("writing events")
            .map_err(Failure::runtime)?;
    }
    let mut notes = Vec::new();
    if let Some(sink) = sink {
        match sink.writer {
            Some(w) => {
                w.finish()
                    .with_context(|| format!("writing {}", sink.path.display()))
                    .map_err(Failure::runtime)?;
            }
            None => {
                // Still leave a valid, empty capture behind.
                CaptureWriter::create(sink.path, LinkType::Ethernet, Resolution::Nanos)
                    .and_then(|w| w.finish().map(|_| ()))
                    .with_context(|| format!("cannot create {}", sink.path.display()))
                    .map_err(Failure::runtime)?;
            }
        }
        notes.push(format!(
            "wrote {} packets to {}",
            sink.written,
            sink.path.display()
        ));
        if sink.skipped_linktype > 0 {
            notes.push(format!(
                "{} matching packets of another link type were not written",
                sink.skipped_linktype
            ));
        }
    }

    let stdout = io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)
            .map_err(|e| Failure::runtime(io::Error::from(e)))?;
        writeln!(out).map_err(Failure::runtime)?;
    } else if !events_to_stdout {
        render::report(&mut out, &report).map_err(Failure::runtime)?;
        for n in notes {
            writeln!(out, "{n}").map_err(Failure::runtime)?;
        }
    } else {
        // Events went to stdout: keep it machine-readable, summary to stderr.
        let mut err = io::stderr().lock();
        render::report(&mut err, &report).map_err(Failure::runtime)?;
    }
    out.flush().map_err(Failure::runtime)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rstwall_engine::policy::PolicyError;

    use super::*;

    /// Moved from the engine (policy_load_names_the_file) with the reading
    /// of policy files: the error names the file, then the line and column.
    #[test]
    fn policy_load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("rstwall-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.toml");
        std::fs::write(&path, "\n[ratelimit]\nglobal_rate = 0\n").unwrap();
        let e = read_policy_file(&path).unwrap_err();
        let location = e
            .downcast_ref::<PolicyError>()
            .and_then(PolicyError::location);
        assert_eq!(location.map(|l| l.line), Some(3));
        assert!(
            format!("{e:#}").starts_with(&format!(
                "policy file {}: line 3, column 15: ratelimit.global_rate",
                path.display()
            )),
            "{e:#}"
        );
        std::fs::write(&path, PolicyConfig::default().to_toml_string()).unwrap();
        assert_eq!(read_policy_file(&path).unwrap(), PolicyConfig::default());
        std::fs::remove_dir_all(&dir).unwrap();
        let e = read_policy_file(&path).unwrap_err();
        assert!(e.downcast_ref::<std::io::Error>().is_some(), "{e:#}");
        assert!(
            format!("{e:#}").starts_with(&format!("cannot read policy file {}", path.display())),
            "{e:#}"
        );
    }
}
