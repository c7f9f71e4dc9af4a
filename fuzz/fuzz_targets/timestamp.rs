//! Timestamps (apus-core `Timestamp::parse`): any text parses or is
//! refused, never a panic; a parsed timestamp reads back from its internal
//! and normal forms, and both forms sort as the timestamps do.
#![no_main]

use apus_core::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parsed = Vec::new();
    for part in text.split('\n') {
        let Ok(ts) = Timestamp::parse(part) else {
            continue;
        };
        assert_eq!(Timestamp::parse(&ts.internal()), Ok(ts), "{part:?}");
        assert_eq!(
            Timestamp::parse(&ts.normal()),
            Ok(ts.with_offset(0)),
            "{part:?}"
        );
        assert_eq!(ts.to_string(), ts.internal());
        assert!(ts.ceil_secs() >= ts.secs());
        assert_eq!(ts.isoformat().len(), 26, "{}", ts.isoformat());
        parsed.push(ts);
    }
    for pair in parsed.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert_eq!(a.cmp(&b), a.internal().cmp(&b.internal()));
    }
});
