//! The classic Prometheus text format (0.0.4), for the clients that do not
//! ask for OpenMetrics (`curl`, `promtool check metrics`, older scrapers).
//!
//! Why by hand: `prometheus-client` 0.26 has an encoder for this format
//! (`encoding::prometheus_text`), but it writes a histogram's buckets as
//! `{queue="0",le="1e-06"}` where the OpenMetrics encoder writes
//! `{le="0.000001",queue="0"}`, so the two formats would no longer show the
//! same series for the same samples; deriving one from the other keeps them
//! identical.

use std::fmt::Write as _;

/// The classic Prometheus text format of an OpenMetrics exposition written
/// by `prometheus-client` (counters, gauges and infos without exemplars or
/// `_created` samples, which is all this module writes): a counter family
/// `x` is `x_total` there, an info family `x` is a gauge `x_info`, and
/// `# UNIT` and `# EOF` lines do not exist.
pub fn openmetrics_to_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    let mut help: Option<&str> = None;
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (suffix, ty) = match ty {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "unknown" => ("", "untyped"),
                other => ("", other),
            };
            if let Some(h) = help.take() {
                let text = h.strip_prefix(name).unwrap_or(h);
                let _ = writeln!(out, "# HELP {name}{suffix}{text}");
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {ty}");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_conversion_of_a_hand_written_exposition() {
        let om = "# HELP x_seconds Time.\n# TYPE x_seconds gauge\n# UNIT x_seconds seconds\n\
                  x_seconds 1.5\n# HELP c Things.\n# TYPE c counter\nc_total{a=\"b\"} 2\n\
                  # HELP i Build.\n# TYPE i info\ni_info{v=\"1\"} 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP x_seconds Time.\n# TYPE x_seconds gauge\nx_seconds 1.5\n\
             # HELP c_total Things.\n# TYPE c_total counter\nc_total{a=\"b\"} 2\n\
             # HELP i_info Build.\n# TYPE i_info gauge\ni_info{v=\"1\"} 1\n"
        );
    }
}
