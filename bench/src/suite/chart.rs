//! A hand-written SVG chart: panels of horizontal bars, one group of bars
//! per contender, the value written at the end of each bar, so that the
//! report's main table can be read at a glance.

use std::fmt::Write as _;

use super::latency::us;
use super::report::{Report, Summary};

/// One bar series of a panel: its name (in the legend) and colour.
pub struct Series {
    pub name: &'static str,
    pub color: &'static str,
}

impl Series {
    pub const fn new(name: &'static str, color: &'static str) -> Series {
        Series { name, color }
    }
}

/// One panel: a title, the series, and per contender (in order) one value
/// per series (None: not measured).
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
    pub rows: Vec<(String, Vec<Option<f64>>)>,
    /// Decimals of the printed values, and a unit after them.
    pub decimals: usize,
    pub unit: &'static str,
    /// The axis' end (None: the largest value).
    pub max: Option<f64>,
    /// Per row, words after its last bar's value (empty: none).
    pub notes: Vec<String>,
}

const PANEL_W: f64 = 620.0;
const LABEL_W: f64 = 180.0;
/// Room right of the longest bar for its value and note.
const TEXT_W: f64 = 170.0;
/// What is left for the bars.
const PLOT_W: f64 = PANEL_W - LABEL_W - TEXT_W;
const BAR_H: f64 = 16.0;
const GAP: f64 = 10.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Panel {
    fn height(&self) -> f64 {
        let group = self.series.len() as f64 * BAR_H + GAP;
        56.0 + self.rows.len() as f64 * group + 8.0
    }

    fn draw(&self, out: &mut String, x0: f64, y0: f64) {
        let max = self.max.unwrap_or_else(|| {
            self.rows
                .iter()
                .flat_map(|(_, v)| v.iter().flatten().copied())
                .fold(0.0, f64::max)
        });
        let max = if max > 0.0 { max } else { 1.0 };
        let _ = writeln!(
            out,
            r#"<text x="{x0}" y="{}" class="title">{}</text>"#,
            y0 + 18.0,
            esc(&self.title)
        );
        // Legend.
        let mut lx = x0;
        for s in &self.series {
            let _ = writeln!(
                out,
                r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" class="small">{}</text>"#,
                y0 + 28.0,
                s.color,
                lx + 14.0,
                y0 + 37.0,
                esc(s.name)
            );
            lx += 24.0 + 7.0 * s.name.len() as f64;
        }
        let top = y0 + 50.0;
        let axis_x = x0 + LABEL_W;
        let group = self.series.len() as f64 * BAR_H + GAP;
        for (i, (name, values)) in self.rows.iter().enumerate() {
            let gy = top + i as f64 * group;
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" class="label" text-anchor="end">{}</text>"#,
                axis_x - 8.0,
                gy + self.series.len() as f64 * BAR_H / 2.0 + 4.0,
                esc(name)
            );
            let last = self.series.len() - 1;
            for (j, (s, v)) in self.series.iter().zip(values).enumerate() {
                let by = gy + j as f64 * BAR_H;
                let note = match self.notes.get(i) {
                    Some(n) if j == last && !n.is_empty() => format!(" {}", esc(n)),
                    _ => String::new(),
                };
                match v {
                    Some(v) => {
                        let w = (v / max).clamp(0.0, 1.0) * PLOT_W;
                        let _ = writeln!(
                            out,
                            r#"<rect x="{axis_x}" y="{by}" width="{w:.1}" height="{}" fill="{}"/><text x="{:.1}" y="{}" class="value">{:.*}{}{note}</text>"#,
                            BAR_H - 3.0,
                            s.color,
                            axis_x + w + 4.0,
                            by + BAR_H - 5.0,
                            self.decimals,
                            v,
                            self.unit
                        );
                    }
                    None => {
                        let _ = writeln!(
                            out,
                            r#"<text x="{}" y="{}" class="value">not measured</text>"#,
                            axis_x + 4.0,
                            by + BAR_H - 5.0
                        );
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            r##"<line x1="{axis_x}" y1="{}" x2="{axis_x}" y2="{}" stroke="#444"/>"##,
            top - 4.0,
            top + self.rows.len() as f64 * group - GAP + 4.0
        );
    }
}

/// Panels in two columns under a title and a footnote.
pub fn svg(title: &str, note: &str, panels: &[Panel]) -> String {
    // The margin around everything.
    const PAD: f64 = 20.0;
    let cols = 2;
    let rows = panels.len().div_ceil(cols);
    let mut heights = vec![0.0f64; rows];
    for (i, p) in panels.iter().enumerate() {
        heights[i / cols] = heights[i / cols].max(p.height());
    }
    let width = PAD * 2.0 + cols as f64 * PANEL_W;
    let height = 50.0 + heights.iter().sum::<f64>() + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    out.push_str(
        "<style>.title{font-size:15px;font-weight:bold}.label{font-size:13px}\
         .value{font-size:12px}.small{font-size:11px}.head{font-size:18px;font-weight:bold}\
         .note{font-size:11px;fill:#555}</style>\n",
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{PAD}" y="30" class="head">{}</text>"#,
        esc(title)
    );
    let mut y = 50.0;
    for (r, h) in heights.iter().enumerate() {
        for c in 0..cols {
            if let Some(p) = panels.get(r * cols + c) {
                p.draw(&mut out, PAD + c as f64 * PANEL_W, y);
            }
        }
        y += h;
    }
    let _ = writeln!(
        out,
        r#"<text x="{PAD}" y="{}" class="note">{}</text>"#,
        y + 20.0,
        esc(note)
    );
    out.push_str("</svg>\n");
    out
}

impl Report<'_> {
    /// The report's first table as `chart.svg`.
    pub fn chart(&self) -> String {
        let sums = self.summaries();
        let rows = |f: &dyn Fn(&Summary) -> Vec<Option<f64>>| -> Vec<(String, Vec<Option<f64>>)> {
            sums.iter()
                .map(|x| (x.c.name().to_string(), f(x)))
                .collect()
        };
        let s = self.o;
        let panels = vec![
            Panel {
                title: "Forwarded, 64-byte frames (Mpps, median)".into(),
                series: vec![Series::new("Mpps", "#4c72b0")],
                rows: rows(&|x| vec![x.mpps]),
                decimals: 2,
                unit: "",
                max: None,
                notes: sums
                    .iter()
                    .map(|x| {
                        x.vs_bare
                            .map_or(String::new(), |r| format!("({:.2}× bare)", r.median))
                    })
                    .collect(),
            },
            Panel {
                title: "Drop accuracy, counted at the sink (%)".into(),
                series: vec![
                    Series::new("spoofed RSTs dropped", "#c44e52"),
                    Series::new("legitimate frames passed", "#55a868"),
                ],
                rows: rows(&|x| vec![x.spoofed_dropped, x.legit_passed]),
                decimals: 1,
                unit: "%",
                max: Some(100.0),
                notes: Vec::new(),
            },
            Panel {
                title: format!("One-way latency at {} kpps (µs)", s.latency_pps / 1000),
                series: vec![Series::new("p50", "#8172b2"), Series::new("p99", "#ccb974")],
                rows: rows(&|x| {
                    x.latency.as_ref().map_or(vec![None, None], |h| {
                        vec![Some(us(h, 0.5)), Some(us(h, 0.99))]
                    })
                }),
                decimals: 0,
                unit: "",
                max: None,
                notes: sums
                    .iter()
                    .map(|x| {
                        x.latency
                            .as_ref()
                            .map_or(String::new(), |h| format!("(p99.9 {:.0})", us(h, 0.999)))
                    })
                    .collect(),
            },
            Panel {
                title: format!(
                    "TCP goodput (Mbit/s), alone / {} kpps RST flood",
                    s.flood_pps / 1000
                ),
                series: vec![
                    Series::new("alone", "#64b5cd"),
                    Series::new("under flood", "#dd8452"),
                ],
                rows: rows(&|x| vec![x.calm_mbps, x.flood_mbps]),
                decimals: 0,
                unit: "",
                max: None,
                notes: sums
                    .iter()
                    .map(|x| {
                        let broke = if x.broke > 0 {
                            ", connection broke"
                        } else {
                            ""
                        };
                        x.flood_ratio
                            .map_or(String::new(), |r| format!("({r:.2}× alone{broke})"))
                    })
                    .collect(),
            },
        ];
        let m = &self.machine;
        svg(
            "rstwall-bench run: rstwall inline vs a bare AF_XDP loop and Linux + nftables",
            &format!(
                "{} on {} ({} vCPUs), Linux {}, commit {}; {} rounds, medians. Longer bars are \
                 better except latency.",
                m.date, m.cpu_model, m.cpus, m.kernel, m.commit, s.rounds
            ),
            &panels,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_and_missing_values_are_said() {
        let panel = Panel {
            title: "Mpps <64 B>".into(),
            series: vec![Series::new("forwarded", "#1f77b4")],
            rows: vec![("a".into(), vec![Some(2.0)]), ("b".into(), vec![None])],
            decimals: 2,
            unit: "",
            max: None,
            notes: vec!["(0.5× <x>)".into()],
        };
        let s = svg("t", "n", &[panel]);
        assert!(s.contains(">2.00 (0.5× &lt;x&gt;)<"));
        assert!(s.starts_with("<svg"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert!(s.contains("Mpps &lt;64 B&gt;"));
        assert!(s.contains("not measured"));
        let full = PANEL_W - LABEL_W - TEXT_W;
        assert!(s.contains(&format!("width=\"{full:.1}\"")));
    }
}
