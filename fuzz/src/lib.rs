//! What the fuzz targets share: how a `parse` input names its link type,
//! and how a capture file is run through an engine.

use std::io::Cursor;

use rstwall_engine::engine::{Engine, EngineConfig};
use rstwall_engine::telemetry::TelemetryConfig;
use rstwall_engine::wire::LinkType;
use rstwall_pcap::capture::CaptureReader;

/// The link types a `parse` input can name: its first byte, modulo the
/// length, picks one; the rest of the input is the frame.
pub const LINK_TYPES: [LinkType; 12] = LinkType::ALL;

/// Split a `parse` input into its link type and frame.
pub fn link_and_frame(data: &[u8]) -> Option<(LinkType, &[u8])> {
    let (&first, frame) = data.split_first()?;
    Some((LINK_TYPES[first as usize % LINK_TYPES.len()], frame))
}

/// The byte that names `link` in a `parse` input.
pub fn link_byte(link: LinkType) -> u8 {
    LINK_TYPES
        .iter()
        .position(|&l| l == link)
        .expect("every link type is listed") as u8
}

/// Tables this small fill, evict and expire within a fuzz input.
pub fn small_engine_config() -> EngineConfig {
    EngineConfig {
        flow_capacity: 16,
        telemetry: TelemetryConfig { hosts: 8, ports: 4 },
        ..EngineConfig::default()
    }
}

/// Run a whole capture file through an engine, as `rstwall analyze` does:
/// each frame at its own timestamp, unreadable link types counted, damage
/// ending the file. Returns the engine for inspection.
pub fn run_capture(data: &[u8], cfg: &EngineConfig) -> Option<Engine> {
    let mut reader = CaptureReader::new(Cursor::new(data)).ok()?;
    let mut engine = Engine::new(cfg);
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => match frame.link {
                Some(link) => {
                    engine.process(link, frame.data, frame.timestamp_ns);
                }
                None => {
                    engine.advance(frame.timestamp_ns);
                    engine.count_unsupported_link(frame.data.len());
                }
            },
            Ok(None) => break,
            Err(damage) => {
                // Formatting is part of what a damaged file exercises.
                let _ = damage.to_string();
                break;
            }
        }
    }
    engine.finish();
    Some(engine)
}
