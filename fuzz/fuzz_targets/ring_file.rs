//! Any bytes given to the ring-file parser give a ring or an error, never a
//! panic; a ring that loads also survives lookups. The first byte chooses
//! whether the rest is read as a gzip file or as the bytes inside one, so
//! the fuzzer reaches the header and table parsing without having to forge
//! gzip checksums.
#![no_main]

use apus_ring::{Ring, RingData};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let parsed = if mode & 1 == 0 {
        RingData::read_from(rest)
    } else {
        RingData::read_decompressed(rest)
    };
    if let Ok(ring_data) = parsed {
        if let Ok(ring) = Ring::new(ring_data) {
            let parts = ring.partition_count();
            for part in [0, parts / 2, parts.saturating_sub(1)] {
                let _ = ring.primaries(part);
                let _ = ring.handoffs(part).count();
            }
        }
    }
});
