//! A whole pcap or pcapng file through `CaptureReader`: every frame it
//! yields lies inside its buffer, and reading always ends.

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use rstwall_pcap::capture::{CaptureReader, MAX_CAPLEN};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = CaptureReader::new(Cursor::new(data)) else {
        return;
    };
    let mut frames = 0u64;
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                frames += 1;
                assert_eq!(frame.number, frames);
                assert!(frame.data.len() <= MAX_CAPLEN as usize);
                assert!(frame.data.len() <= data.len());
            }
            Ok(None) => break,
            Err(damage) => {
                let _ = damage.to_string();
                assert_eq!(damage.frame, frames + 1);
                break;
            }
        }
    }
    assert_eq!(reader.frames_read(), frames);
    // Finished readers stay finished.
    assert!(matches!(reader.next_frame(), Ok(None)));
});
