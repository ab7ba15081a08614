//! Seed the `parse` corpus: the first frames of each given capture file,
//! each written to OUT_DIR as one `parse` input (link-type byte, then the
//! frame). Later frames of a file mostly repeat the shapes of the first.
//!
//! Usage: extract_frames OUT_DIR CAPTURE...

use std::path::PathBuf;

use rstwall_pcap::capture::CaptureReader;

/// Frames taken from each file.
const PER_FILE: u64 = 64;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let out = PathBuf::from(
        args.next()
            .expect("usage: extract_frames OUT_DIR CAPTURE..."),
    );
    std::fs::create_dir_all(&out).expect("creating the output directory");
    let (mut files, mut written) = (0, 0);
    for path in args {
        let Ok(mut reader) = CaptureReader::open(&path) else {
            continue;
        };
        files += 1;
        let stem = PathBuf::from(&path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        while let Ok(Some(frame)) = reader.next_frame() {
            if frame.number > PER_FILE {
                break;
            }
            let Some(link) = frame.link else { continue };
            let mut input = Vec::with_capacity(frame.data.len() + 1);
            input.push(rstwall_fuzz::link_byte(link));
            input.extend_from_slice(frame.data);
            let name = out.join(format!("{stem}-{}", frame.number));
            std::fs::write(&name, &input).expect("writing a seed");
            written += 1;
        }
    }
    eprintln!("{written} frames from {files} capture files");
}
