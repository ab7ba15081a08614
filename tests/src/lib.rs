//! Helpers shared by the integration tests.

pub mod linux;

use std::path::PathBuf;

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The public pcap corpus (`../shared/corpus` beside the repository), or
/// `$RSTWALL_CORPUS`. Tests that need it fail loudly when it is missing.
pub fn corpus_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("RSTWALL_CORPUS") {
        return PathBuf::from(dir);
    }
    let dir = repo_root().join("../shared/corpus");
    assert!(
        dir.join("expected.tsv").is_file(),
        "pcap corpus not found at {} (set RSTWALL_CORPUS)",
        dir.display()
    );
    dir
}
