//! Capture files built byte by byte, and reading them back whole: what
//! the tests of every part of the reader and the writer share.

use std::io::{Cursor, Read};

use rstwall_engine::wire::LinkType;

use super::pcap::{MAGIC_NS as PCAP_MAGIC_NS, MAGIC_US as PCAP_MAGIC_US};
use super::pcapng::{block_type, BOM as PCAPNG_BOM, SHB as PCAPNG_SHB};
use super::{CaptureReader, Damage};

pub const ETH_FRAME: [u8; 14] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00, // dst, src, IPv4
];

/// A classic pcap file: (ts_sec, ts_frac, orig_len, data) per record.
pub fn pcap(
    big: bool,
    nanos: bool,
    snaplen: u32,
    linktype: u32,
    recs: &[(u32, u32, u32, &[u8])],
) -> Vec<u8> {
    let w32 = |v: &mut Vec<u8>, x: u32| {
        v.extend_from_slice(&if big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    let w16 = |v: &mut Vec<u8>, x: u16| {
        v.extend_from_slice(&if big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    let mut v = Vec::new();
    w32(&mut v, if nanos { PCAP_MAGIC_NS } else { PCAP_MAGIC_US });
    w16(&mut v, 2);
    w16(&mut v, 4);
    w32(&mut v, 0);
    w32(&mut v, 0);
    w32(&mut v, snaplen);
    w32(&mut v, linktype);
    for &(sec, frac, orig, data) in recs {
        w32(&mut v, sec);
        w32(&mut v, frac);
        w32(&mut v, data.len() as u32);
        w32(&mut v, orig);
        v.extend_from_slice(data);
    }
    v
}

/// pcapng blocks in one byte order.
pub struct Ng {
    big: bool,
    out: Vec<u8>,
}

impl Ng {
    pub fn new(big: bool) -> Ng {
        let mut ng = Ng {
            big,
            out: Vec::new(),
        };
        ng.shb();
        ng
    }
    fn u16(&self, x: u16) -> [u8; 2] {
        if self.big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    }
    fn u32(&self, x: u32) -> [u8; 4] {
        if self.big {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    }
    pub fn block(&mut self, block_type: u32, body: &[u8]) -> &mut Ng {
        let mut body = body.to_vec();
        body.resize(body.len().next_multiple_of(4), 0);
        let len = body.len() as u32 + 12;
        let (t, l) = (self.u32(block_type), self.u32(len));
        self.out.extend_from_slice(&t);
        self.out.extend_from_slice(&l);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&l);
        self
    }
    pub fn shb(&mut self) -> &mut Ng {
        let mut b = self.u32(PCAPNG_BOM).to_vec();
        b.extend_from_slice(&self.u16(1));
        b.extend_from_slice(&self.u16(0));
        b.extend_from_slice(&[0xff; 8]); // section length: unknown
        self.block(PCAPNG_SHB, &b)
    }
    /// An IDB; `tsresol` adds an if_tsresol option, `offset` if_tsoffset.
    pub fn idb(
        &mut self,
        linktype: u16,
        snaplen: u32,
        tsresol: Option<u8>,
        offset: Option<u64>,
    ) -> &mut Ng {
        let mut b = self.u16(linktype).to_vec();
        b.extend_from_slice(&self.u16(0));
        b.extend_from_slice(&self.u32(snaplen));
        // A comment that is not UTF-8, which pcap-file's typed IDB refuses.
        b.extend_from_slice(&self.u16(1));
        b.extend_from_slice(&self.u16(3));
        b.extend_from_slice(&[0xff, 0xfe, 0xfd, 0]);
        if let Some(r) = tsresol {
            b.extend_from_slice(&self.u16(9));
            b.extend_from_slice(&self.u16(1));
            b.extend_from_slice(&[r, 0, 0, 0]);
        }
        if let Some(o) = offset {
            b.extend_from_slice(&self.u16(14));
            b.extend_from_slice(&self.u16(8));
            let raw = if self.big {
                o.to_be_bytes()
            } else {
                o.to_le_bytes()
            };
            b.extend_from_slice(&raw);
        }
        b.extend_from_slice(&[0; 4]); // opt_endofopt
        self.block(block_type::INTERFACE_DESCRIPTION, &b)
    }
    pub fn epb(&mut self, iface: u32, units: u64, orig: u32, data: &[u8]) -> &mut Ng {
        let mut b = self.u32(iface).to_vec();
        b.extend_from_slice(&self.u32((units >> 32) as u32));
        b.extend_from_slice(&self.u32(units as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(&self.u32(orig));
        b.extend_from_slice(data);
        self.block(block_type::ENHANCED_PACKET, &b)
    }
    pub fn spb(&mut self, orig: u32, data: &[u8]) -> &mut Ng {
        let mut b = self.u32(orig).to_vec();
        b.extend_from_slice(data);
        self.block(block_type::SIMPLE_PACKET, &b)
    }
    pub fn pb(&mut self, iface: u16, units: u64, data: &[u8]) -> &mut Ng {
        let mut b = self.u16(iface).to_vec();
        b.extend_from_slice(&self.u16(0));
        b.extend_from_slice(&self.u32((units >> 32) as u32));
        b.extend_from_slice(&self.u32(units as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(data);
        self.block(block_type::PACKET, &b)
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.out.clone()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Owned {
    pub number: u64,
    pub ts: u64,
    pub orig_len: u32,
    pub data: Vec<u8>,
    pub link: Option<LinkType>,
    pub linktype: u32,
    pub interface: u32,
}

/// Read everything: the frames, then the damage if any.
pub fn read_all<R: Read>(mut r: CaptureReader<R>) -> (Vec<Owned>, Option<Damage>) {
    let mut frames = Vec::new();
    loop {
        match r.next_frame() {
            Ok(Some(f)) => frames.push(Owned {
                number: f.number,
                ts: f.timestamp_ns,
                orig_len: f.orig_len,
                data: f.data.to_vec(),
                link: f.link,
                linktype: f.linktype,
                interface: f.interface,
            }),
            Ok(None) => break,
            Err(d) => {
                assert_eq!(r.damage(), Some(&d));
                assert_eq!(r.next_frame(), Ok(None), "finished after damage");
                return (frames, Some(d));
            }
        }
    }
    assert_eq!(r.next_frame(), Ok(None));
    (frames, None)
}

pub fn read_bytes(b: &[u8]) -> (Vec<Owned>, Option<Damage>) {
    read_all(CaptureReader::new(Cursor::new(b.to_vec())).expect("opens"))
}
