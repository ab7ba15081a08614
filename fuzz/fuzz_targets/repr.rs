//! One Ethernet frame through the write side of `wire`: a frame that reads
//! as a `TcpFrameRepr` is written back (when its options fit a header laid
//! out anew) and reads as the same Repr, with both checksums right; and
//! whatever reads as TCP through `wire::parse` agrees with the Repr.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rstwall_engine::wire::{self, EmitError, LinkType, Parsed, TcpFrameRepr};

fuzz_target!(|frame: &[u8]| {
    let Ok(r) = TcpFrameRepr::parse(frame) else {
        return;
    };
    let Ok(Parsed::Tcp(seg)) = wire::parse(LinkType::Ethernet, frame) else {
        panic!("a TcpFrameRepr that wire::parse does not read as TCP: {r:?}");
    };
    assert_eq!((seg.src, seg.dst), (r.ip.src(), r.ip.dst()));
    assert_eq!(
        (seg.seq, seg.ack, seg.flags),
        (r.tcp.seq, r.tcp.ack, r.tcp.flags)
    );
    assert_eq!(seg.options, r.tcp.options());
    assert_eq!(seg.payload, r.tcp.payload);

    let mut out = vec![0u8; r.len()];
    match r.emit(&mut out) {
        Ok(n) => {
            assert_eq!(n, out.len());
            assert_eq!(TcpFrameRepr::parse(&out), Ok(r));
            let seg = r.tcp;
            let tcp_at = n - seg.len();
            let h = wire::TcpHeader::new_checked(&out[tcp_at..]).unwrap();
            assert!(h.checksum_ok(r.ip.src(), r.ip.dst()));
        }
        // Options packed tighter than Linux lays them out may not fit.
        Err(e) => assert!(matches!(e, EmitError::TooLarge { .. }), "{e}"),
    }
});
