//! `rstwall capture`: the daemon's live capture into a pcap file that
//! stays valid however the capture ends.

use std::io::{self, Read, Write};
use std::time::Duration;

use anyhow::anyhow;
use rstwall_api::{CaptureClass, CaptureQuery, Client};

use super::{catch_interrupts, interrupted, parse_duration};
use crate::cli::CaptureArgs;
use crate::Failure;

/// Splits a pcap byte stream into whole records, so that an interrupted
/// capture still leaves a valid file.
#[derive(Default)]
struct PcapSplitter {
    buf: Vec<u8>,
    header_done: bool,
    big_endian: bool,
    records: u64,
}

impl PcapSplitter {
    /// Feed bytes; the prefix that ends on a record boundary is returned.
    fn feed(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        self.buf.extend_from_slice(bytes);
        let mut end = 0;
        if !self.header_done {
            if self.buf.len() < 24 {
                return Ok(Vec::new());
            }
            let magic = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
            self.big_endian = match magic {
                0xa1b2_c3d4 | 0xa1b2_3c4d => false,
                0xd4c3_b2a1 | 0x4d3c_b2a1 => true,
                _ => return Err("the daemon sent something that is not a pcap stream".into()),
            };
            self.header_done = true;
            end = 24;
        }
        while self.buf.len() >= end + 16 {
            let b = [
                self.buf[end + 8],
                self.buf[end + 9],
                self.buf[end + 10],
                self.buf[end + 11],
            ];
            let incl = if self.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            } as usize;
            if self.buf.len() < end + 16 + incl {
                break;
            }
            end += 16 + incl;
            self.records += 1;
        }
        Ok(self.buf.drain(..end).collect())
    }
}

pub fn capture(args: CaptureArgs) -> Result<(), Failure> {
    let class: CaptureClass = args
        .class
        .parse()
        .map_err(|e| Failure::usage(anyhow!("--class: {e}")))?;
    let timeout = args
        .timeout
        .as_deref()
        .map(|t| parse_duration("--timeout", t))
        .transpose()?;
    let mut stream = Client::at(&args.socket.socket).capture(CaptureQuery {
        class,
        count: args.count,
        timeout_s: timeout.map_or(0, |t| t.as_secs()),
    })?;
    let mut file = std::fs::File::create(&args.write)
        .map_err(|e| Failure::usage(anyhow!("cannot create {}: {e}", args.write.display())))?;
    catch_interrupts();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut split = PcapSplitter::default();
    let write_err =
        |e: io::Error| Failure::runtime(anyhow!("writing {}: {e}", args.write.display()));
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if interrupted() {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                let whole = split
                    .feed(&chunk[..n])
                    .map_err(|e| Failure::runtime(anyhow!(e)))?;
                file.write_all(&whole).map_err(write_err)?;
            }
            Err(e) if rstwall_api::http::nothing_yet(&e) => {}
            Err(e) => return Err(Failure::runtime(anyhow!("reading the capture: {e}"))),
        }
    }
    if !split.header_done {
        // Nothing at all arrived: still leave a valid, empty capture.
        let empty = rstwall_pcap::capture::CaptureWriter::new(
            Vec::new(),
            rstwall_engine::wire::LinkType::Ethernet,
            rstwall_pcap::capture::Resolution::Nanos,
        )
        .and_then(|w| w.finish())
        .map_err(|e| Failure::runtime(anyhow!("{e}")))?;
        file.write_all(&empty).map_err(write_err)?;
    }
    file.sync_all().map_err(write_err)?;
    eprintln!(
        "{} packet{} written to {}",
        split.records,
        if split.records == 1 { "" } else { "s" },
        args.write.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pcap_splitter_keeps_whole_records_only() {
        let mut w = rstwall_pcap::capture::CaptureWriter::new(
            Vec::new(),
            rstwall_engine::wire::LinkType::Ethernet,
            rstwall_pcap::capture::Resolution::Nanos,
        )
        .unwrap();
        w.write(1, 60, &[1; 60]).unwrap();
        w.write(2, 70, &[2; 70]).unwrap();
        let bytes = w.finish().unwrap();
        let mut sp = PcapSplitter::default();
        let mut out = Vec::new();
        // Byte by byte: only whole records come out.
        for (i, b) in bytes.iter().enumerate() {
            let got = sp.feed(&[*b]).unwrap();
            out.extend_from_slice(&got);
            if i + 1 < 24 + 16 + 60 {
                assert!(out.len() <= 24, "{i}");
            }
        }
        assert_eq!(out, bytes);
        assert_eq!(sp.records, 2);
        let mut bad = PcapSplitter::default();
        assert!(bad.feed(&[0u8; 24]).is_err());
    }
}
