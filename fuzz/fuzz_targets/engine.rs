//! A whole pcap or pcapng file through the engine, as `rstwall analyze`
//! runs it, with tables small enough to fill, evict and expire; then the
//! snapshot a report is built from.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = rstwall_fuzz::small_engine_config();
    if let Some(engine) = rstwall_fuzz::run_capture(data, &cfg) {
        let snapshot = engine.snapshot(5);
        assert!(engine.flows().len() <= cfg.flow_capacity);
        assert_eq!(
            snapshot.counters.frames,
            snapshot.counters.passed + snapshot.counters.dropped
        );
    }
});
