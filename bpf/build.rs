//! Compile `src/bpf/rstwall.bpf.c` with clang and generate its libbpf-rs
//! skeleton into `OUT_DIR` (included by `src/lib.rs`, never committed).
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

const SRC: &str = "src/bpf/rstwall.bpf.c";
const HEADER: &str = "src/bpf/rstwall_shared.h";

/// Host mode's programs (`rstwall_bpf::host`): source and skeleton file;
/// and the headers the shared one does not cover (`rstwall_kern.h` is the
/// XDP program's too).
const HOST_PROGRAMS: [(&str, &str); 2] = [
    ("src/bpf/rstwall_host_tc.bpf.c", "rstwall_host_tc.skel.rs"),
    (
        "src/bpf/rstwall_host_trace.bpf.c",
        "rstwall_host_trace.skel.rs",
    ),
];
const HOST_HEADERS: [&str; 2] = ["src/bpf/rstwall_host_kernel.h", "src/bpf/rstwall_kern.h"];

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
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed={HEADER}");
    println!("cargo:rerun-if-env-changed=CLANG");

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"))
        .join("rstwall.skel.rs");

    let mut args: Vec<OsString> = vec!["-Wall".into(), "-Wextra".into(), "-Werror".into()];
    if let Some(dir) = multiarch_include() {
        args.push("-idirafter".into());
        args.push(dir.into_os_string());
    }

    let mut builder = SkeletonBuilder::new();
    builder.source(SRC).clang_args(&args);
    if let Some(clang) = env::var_os("CLANG") {
        builder.clang(clang);
    }
    if let Err(e) = builder.build_and_generate(&out) {
        // libbpf-cargo logs clang's diagnostics only at info level; print the
        // whole chain so a C error is visible in cargo's output.
        panic!(
            "building the XDP program {SRC} failed (needs clang, and the kernel UAPI \
             headers from linux-libc-dev; see scripts/setup): {e:#}"
        );
    }
    build_host_programs(&args);
}

/// Host mode's objects, each with its own skeleton, with the same flags.
fn build_host_programs(args: &[OsString]) {
    for header in HOST_HEADERS {
        println!("cargo:rerun-if-changed={header}");
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    for (src, skel) in HOST_PROGRAMS {
        println!("cargo:rerun-if-changed={src}");
        let mut builder = SkeletonBuilder::new();
        builder.source(src).clang_args(args);
        if let Some(clang) = env::var_os("CLANG") {
            builder.clang(clang);
        }
        if let Err(e) = builder.build_and_generate(out_dir.join(skel)) {
            panic!("building the host-mode program {src} failed (see scripts/setup): {e:#}");
        }
    }
}
