//! The device argument parsers (add values, search values) never panic.
#![no_main]

use apus_ring::parse::{parse_add_value, parse_search_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_add_value(text);
        let _ = parse_search_value(text);
    }
});
