//! One frame through `wire::parse`: the first input byte picks the link
//! type, the rest is the frame. Parsing must never panic, and a segment it
//! returns must be consistent with the bytes it came from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rstwall_engine::wire::{self, Parsed};

fuzz_target!(|data: &[u8]| {
    let Some((link, frame)) = rstwall_fuzz::link_and_frame(data) else {
        return;
    };
    if let Ok(Parsed::Tcp(seg)) = wire::parse(link, frame) {
        // The payload is a view into the frame, never past its end.
        let start = seg.payload.as_ptr() as usize;
        let frame_start = frame.as_ptr() as usize;
        assert!(start >= frame_start && start + seg.payload.len() <= frame_start + frame.len());
        assert!(seg.payload.len() as u64 <= u64::from(seg.payload_len) || !seg.header_complete);
        let _ = seg.seq_len();
    }
});
