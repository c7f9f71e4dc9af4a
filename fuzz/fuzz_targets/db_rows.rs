//! What the database layer (apus-db) parses out of replication and update
//! messages: an object row's three-timestamp `created_at`, the
//! `swift_bytes` content-type parameter, and database metadata JSON.
//! Nothing panics; decoded timestamps encode back to text that decodes to
//! the same timestamps; extracting `swift_bytes` twice changes nothing.
#![no_main]

use apus_db::{
    decode_timestamps, encode_timestamps, extract_swift_bytes, parse_metadata_json,
    validate_metadata,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(ts) = decode_timestamps(text) {
        let encoded = encode_timestamps(&ts);
        let again = decode_timestamps(&encoded).expect("encoded timestamps decode");
        // Only the data timestamp keeps its offset.
        assert_eq!(again.data, ts.data, "{encoded}");
        assert_eq!(again.ctype.ticks(), ts.ctype.ticks(), "{encoded}");
        assert_eq!(again.meta.ticks(), ts.meta.ticks(), "{encoded}");
        assert_eq!(encode_timestamps(&again), encoded);
    }
    let (ctype, swift_bytes) = extract_swift_bytes(text);
    let (again, none) = extract_swift_bytes(&ctype);
    assert_eq!(again, ctype);
    assert_eq!(none, None, "{text:?} gave {swift_bytes:?}");
    if let Ok(md) = parse_metadata_json(text) {
        let _ = validate_metadata(&md);
    }
});
