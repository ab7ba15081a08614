//! Merge the Linux fixture captures (`tests/fixtures/linux/*.pcap`) into
//! `samples/demo.pcap`, in timestamp order: the capture the README's quick
//! start analyzes.
//!
//! ```text
//! make-demo-pcap [OUT]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = rstwall_tests::repo_root();
    let out = std::env::args_os()
        .nth(1)
        .map_or_else(|| root.join("samples/demo.pcap"), PathBuf::from);
    match rstwall_tests::fixtures::merge_captures(&root.join("tests/fixtures/linux"), &out) {
        Ok(n) => {
            println!("wrote {n} frames to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("make-demo-pcap: {e:#}");
            ExitCode::FAILURE
        }
    }
}
