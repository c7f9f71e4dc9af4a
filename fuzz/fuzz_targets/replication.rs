//! Object replication messages (apus-proto `replication`): missing-check
//! and wanted lines and bodies parse or are refused, never a panic. A
//! parsed line encodes to a line that parses to the same offer (the
//! content-type time travels only with a metadata time, as in Swift), and
//! a wanted line round-trips.
#![no_main]

use apus_proto::replication::{
    encode_wanted, parse_missing_check, parse_wanted, parse_wanted_body, valid_hash, wanted,
    LocalState, MissingLine,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(lines) = parse_missing_check(text) {
        for line in &lines {
            assert!(valid_hash(line.hash));
            let encoded = line.encode();
            let again = MissingLine::parse(&encoded).expect("an encoded line parses");
            let mut expected = *line;
            if line.ts_meta == line.ts_data {
                expected.ts_ctype = line.ts_data;
            }
            assert_eq!(again, expected, "{encoded}");
            for local in [
                LocalState::Missing,
                LocalState::Deleted(line.ts_meta),
                LocalState::Present {
                    ts_data: line.ts_data,
                    ts_meta: line.ts_meta,
                    ts_ctype: line.ts_ctype,
                },
            ] {
                if let Some(want) = wanted(line, local) {
                    assert!(want.data || want.meta);
                    let encoded = encode_wanted(line.hash, want);
                    assert_eq!(parse_wanted(&encoded), Ok((line.hash, want)));
                }
            }
            // An object in the state it is offered in is wanted for nothing.
            let local = LocalState::Present {
                ts_data: line.ts_data,
                ts_meta: line.ts_meta,
                ts_ctype: line.ts_ctype,
            };
            assert_eq!(wanted(line, local), None);
        }
    }
    if let Ok(lines) = parse_wanted_body(text) {
        for (hash, want) in lines {
            assert!(valid_hash(hash));
            assert_eq!(parse_wanted(&encode_wanted(hash, want)), Ok((hash, want)));
        }
    }
});
