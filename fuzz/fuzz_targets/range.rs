//! `Range` headers (apus-core `range`): any text parses or is refused,
//! never a panic. A parsed header prints back to itself, and resolved
//! against a content length every range lies within the content, Swift's
//! limits hold, and the multipart layout's length adds up.
#![no_main]

use apus_core::range::{self, Range, MAX_RANGES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first 6 bytes choose the content length (below 2^48, larger than
    // any object), the rest is the header.
    if data.len() < 6 {
        return;
    }
    let (len_bytes, header) = data.split_at(6);
    let mut le = [0u8; 8];
    le[..6].copy_from_slice(len_bytes);
    let length = u64::from_le_bytes(le);
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    let Ok(parsed) = Range::parse(header) else {
        return;
    };
    assert!(!parsed.specs.is_empty());
    let printed = parsed.to_string();
    assert_eq!(Range::parse(&printed).as_ref(), Ok(&parsed), "{printed:?}");
    let resolved = parsed
        .ranges_for_length(length)
        .expect("a parsed header has specs");
    assert!(resolved.len() <= MAX_RANGES);
    for &(start, end) in &resolved {
        assert!(start <= end && end <= length, "{start}-{end} of {length}");
        assert!(start < end || length == 0);
    }
    let boundary = "0123456789abcdef";
    let mut body_len = 0u64;
    for &(start, end) in &resolved {
        body_len += range::multipart_part_header(boundary, "text/plain", start, end, length).len()
            as u64
            + (end - start)
            + 2;
    }
    body_len += range::multipart_terminator(boundary).len() as u64;
    assert_eq!(
        range::multipart_body_length(boundary, "text/plain", &resolved, length),
        body_len
    );
});
