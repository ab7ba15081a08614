//! Helpers shared by the integration tests.

pub mod fixtures;
pub mod lab;
pub mod linux;
pub mod nats;
pub mod prom;

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

/// The `rstwall` binary of this build (`target/<profile>/rstwall`), built by
/// `scripts/test` before the tests run (`cargo build --workspace --bins`):
/// cargo builds another package's binaries only for that package's tests.
pub fn rstwall_bin() -> PathBuf {
    built_bin("rstwall")
}

/// `target/<profile>/rstwall-bench`, the benchmark tools.
pub fn bench_bin() -> PathBuf {
    built_bin("rstwall-bench")
}

/// A binary of this workspace, built beside the test executable.
fn built_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// Tests that time real kernel TCP (the lab's scenarios, the live Linux
/// captures) hold this for reading; the benchmark harness, which keeps both
/// CPUs busy flat out for half a minute, holds it for writing. So they
/// never overlap, while the others still run side by side.
pub fn cpu_share() -> std::sync::RwLockReadGuard<'static, ()> {
    CPU.read().unwrap_or_else(|e| e.into_inner())
}

/// See [`cpu_share`].
pub fn cpu_alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    CPU.write().unwrap_or_else(|e| e.into_inner())
}

static CPU: std::sync::RwLock<()> = std::sync::RwLock::new(());
