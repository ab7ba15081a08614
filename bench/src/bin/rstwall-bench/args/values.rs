//! Values several commands take.

use std::time::Duration;

use rstwall_bench::BadArg;

/// A positive number of seconds (below a million).
pub fn secs(name: &str, v: f64) -> Result<Duration, BadArg> {
    if !(v.is_finite() && v > 0.0 && v < 1e6) {
        return Err(BadArg(format!(
            "--{name}: must be a positive number of seconds"
        )));
    }
    Ok(Duration::from_secs_f64(v))
}
