//! Compile the BPF programs under `src/bpf/` with clang and generate a
//! libbpf-rs skeleton for each into `OUT_DIR` (included by `src/lib.rs`,
//! never committed): rstwall's XDP program (`rstwall.bpf.c`), host mode's
//! tc and tracing programs (`rstwall_host_*.bpf.c`) and the bench's own
//! programs (`bench_*.bpf.c`).
//!
//! Headers: libbpf's own (`bpf/bpf_helpers.h`, ...) come from libbpf-sys,
//! which libbpf-cargo puts on the include path; the kernel UAPI headers
//! (`linux/bpf.h`, ...) from linux-libc-dev. Those include `asm/types.h`,
//! which lives under the multiarch directory (`/usr/include/x86_64-linux-gnu`)
//! that clang does not search for `-target bpf`; gcc-multilib adds an
//! `/usr/include/asm` link, and we pass the multiarch directory as well so
//! the build does not depend on it.
//!
//! `CLANG` overrides the compiler (default `clang` on PATH).

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use libbpf_cargo::SkeletonBuilder;

/// Each program: its source, and the skeleton it becomes.
const PROGRAMS: [(&str, &str); 6] = [
    ("src/bpf/rstwall.bpf.c", "rstwall.skel.rs"),
    ("src/bpf/rstwall_host_tc.bpf.c", "rstwall_host_tc.skel.rs"),
    (
        "src/bpf/rstwall_host_trace.bpf.c",
        "rstwall_host_trace.skel.rs",
    ),
    ("src/bpf/bench_sink.bpf.c", "bench_sink.skel.rs"),
    ("src/bpf/bench_gen.bpf.c", "bench_gen.skel.rs"),
    ("src/bpf/bench_steer.bpf.c", "bench_steer.skel.rs"),
];
/// The headers the programs include: the one kernel/userspace contract,
/// the packet programs' parsing definitions, the XDP program's RST guard
/// and host mode's kernel structures (CO-RE).
const HEADERS: [&str; 4] = [
    "src/bpf/rstwall_shared.h",
    "src/bpf/rstwall_kern.h",
    "src/bpf/rstwall_guard.h",
    "src/bpf/rstwall_host_kernel.h",
];

fn multiarch_include() -> Option<PathBuf> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").ok()?;
    let triple = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "riscv64" => "riscv64-linux-gnu",
        "powerpc64" => "powerpc64le-linux-gnu",
        "s390x" => "s390x-linux-gnu",
        _ => return None,
    };
    let dir = Path::new("/usr/include").join(triple);
    dir.join("asm/types.h").is_file().then_some(dir)
}

fn main() {
    for header in HEADERS {
        println!("cargo:rerun-if-changed={header}");
    }
    println!("cargo:rerun-if-env-changed=CLANG");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));

    let mut args: Vec<OsString> = vec!["-Wall".into(), "-Wextra".into(), "-Werror".into()];
    if let Some(dir) = multiarch_include() {
        args.push("-idirafter".into());
        args.push(dir.into_os_string());
    }

    for (src, skeleton) in PROGRAMS {
        println!("cargo:rerun-if-changed={src}");
        let mut builder = SkeletonBuilder::new();
        builder.source(src).clang_args(args.clone());
        if let Some(clang) = env::var_os("CLANG") {
            builder.clang(clang);
        }
        if let Err(e) = builder.build_and_generate(out_dir.join(skeleton)) {
            // libbpf-cargo logs clang's diagnostics only at info level; print
            // the whole chain so a C error is visible in cargo's output.
            panic!(
                "building the BPF program {src} failed (needs clang, and the kernel UAPI \
                 headers from linux-libc-dev; see scripts/setup): {e:#}"
            );
        }
    }
}
