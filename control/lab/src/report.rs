//! A scenario's report: what the lab did, what rstwall counted, the checks.

use std::io::{self, Write};

use rstwall_api::text::thousands;
use rstwall_api::ByName;
use rstwall_engine::policy::Mode;
use rstwall_engine::RstClass;
use serde::Serialize;

use super::stats::Counts;

/// One thing a scenario part did, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct Did {
    pub part: String,
    pub what: String,
    pub value: String,
}

/// One check and whether it held; the text carries the numbers.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub ok: bool,
    pub text: String,
}

impl Check {
    pub fn new(ok: bool, text: impl Into<String>) -> Check {
        Check {
            ok,
            text: text.into(),
        }
    }
}

/// What [`super::run_scenario`] found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub lab: String,
    pub mode: Mode,
    /// How long the scenario sent.
    pub duration_s: f64,
    /// Ctrl-C ended it early.
    pub interrupted: bool,
    pub did: Vec<Did>,
    /// RSTs by class the scenario caused, in [`RstClass::ALL`] order.
    #[serde(serialize_with = "by_class")]
    pub expected: [u64; RstClass::COUNT],
    /// rstwall's counters over the scenario.
    pub counted: Counts,
    pub checks: Vec<Check>,
}

fn by_class<S: serde::Serializer>(v: &[u64; RstClass::COUNT], s: S) -> Result<S::Ok, S::Error> {
    ByName::<RstClass, u64>::from_fn(|c| v[c.index()]).serialize(s)
}

/// The report with its verdict, as `--json` writes it.
#[derive(Serialize)]
struct Judged<'a> {
    #[serde(flatten)]
    report: &'a Report,
    passed: bool,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.interrupted && self.checks.iter().all(|c| c.ok)
    }

    pub fn failed_checks(&self) -> usize {
        self.checks.iter().filter(|c| !c.ok).count()
    }

    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        let judged = Judged {
            report: self,
            passed: self.passed(),
        };
        out.write_all(&rstwall_api::document_json(&judged).map_err(io::Error::other)?)
    }

    /// The report for a terminal (80 columns).
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        let c = &self.counted;
        writeln!(
            out,
            "rstwall lab: scenario {}, {:.1} s, {} mode, lab {:?}{}",
            self.scenario,
            self.duration_s,
            self.mode,
            self.lab,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        )?;
        writeln!(out)?;
        writeln!(out, "What the lab did")?;
        for d in &self.did {
            writeln!(out, "  {:<12} {:<54} {:>9}", d.part, d.what, d.value)?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "RSTs judged by rstwall  {:>9} {:>9} {:>9} {:>9} {:>10}",
            "caused", "counted", "passed", "dropped", "would drop"
        )?;
        let mut sum = [0u64; 5];
        for class in RstClass::ALL {
            let k = c.class(class);
            let row = [
                self.expected[class.index()],
                k.total,
                k.passed,
                k.dropped,
                k.would_drop,
            ];
            for (s, v) in sum.iter_mut().zip(row) {
                *s += v;
            }
            writeln!(
                out,
                "  {:<21} {:>9} {:>9} {:>9} {:>9} {:>10}",
                class.as_str(),
                thousands(row[0]),
                thousands(row[1]),
                thousands(row[2]),
                thousands(row[3]),
                thousands(row[4])
            )?;
        }
        writeln!(
            out,
            "  {:<21} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "total",
            thousands(sum[0]),
            thousands(sum[1]),
            thousands(sum[2]),
            thousands(sum[3]),
            thousands(sum[4])
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "TCP segments judged {}: SYN {}, SYN-ACK {}, FIN {}, RST {}",
            thousands(c.tcp),
            thousands(c.syn),
            thousands(c.synack),
            thousands(c.fin),
            thousands(c.rst_segments)
        )?;
        writeln!(
            out,
            "Failed connection attempts {}; flows created {}; packets dropped {}",
            thousands(c.failed_connects),
            thousands(c.flows_created),
            thousands(c.dropped)
        )?;
        writeln!(out)?;
        writeln!(out, "Checks")?;
        for check in &self.checks {
            writeln!(
                out,
                "  {}  {}",
                if check.ok { "ok  " } else { "FAIL" },
                check.text
            )?;
        }
        writeln!(out)?;
        let n = self.checks.len();
        if self.interrupted {
            writeln!(
                out,
                "INTERRUPTED {}: the numbers cover the part that ran",
                self.scenario
            )
        } else if self.passed() {
            writeln!(out, "PASS {}: all {n} checks passed", self.scenario)
        } else {
            writeln!(
                out,
                "FAIL {}: {} of {n} checks failed",
                self.scenario,
                self.failed_checks()
            )
        }
    }
}
