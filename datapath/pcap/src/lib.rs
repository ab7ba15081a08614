//! Capture files and the engine: rstwall's offline side.
//!
//! * [`capture`] — classic pcap and pcapng readers that never panic on
//!   damaged files, and a pcap writer.
//! * [`analyze`] — capture files through the same engine the frame sources
//!   run, each frame's own timestamp as the clock.

pub mod analyze;
pub mod capture;
