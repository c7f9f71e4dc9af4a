//! The formpost `multipart/form-data` reader (apus-proxy
//! `formpost::multipart`): any body, with any boundary, is read or
//! refused, never a panic; reading it in pieces gives the same parts as
//! reading it at once; what the reader holds stays bounded; events come
//! in order (a part's data between its start and end, nothing after the
//! end). Header values parse as Content-Disposition without a panic.
#![no_main]

use apus_proxy::formpost::multipart::{
    parse_disposition, Event, MultipartError, MultipartReader, MAX_HEADER_BLOCK,
};
use libfuzzer_sys::fuzz_target;

/// A part as read: its headers and its whole body.
type Part = (Vec<(String, String)>, Vec<u8>);

/// Reads `body` fed in pieces of `step` bytes, checking the order of
/// events and the bound on what is held.
fn read(boundary: &[u8], body: &[u8], step: usize) -> Result<(Vec<Part>, bool), MultipartError> {
    let mut reader = MultipartReader::new(boundary)?;
    let mut parts: Vec<Part> = Vec::new();
    let mut in_part = false;
    let mut ended = false;
    let mut data_total = 0usize;
    let bound = step + MAX_HEADER_BLOCK + boundary.len() + 8;
    for piece in body.chunks(step).map(Some).chain([None]) {
        match piece {
            Some(p) => reader.feed(p),
            None => reader.finish(),
        }
        while let Some(event) = reader.next_event()? {
            assert!(!ended, "an event after the end");
            match event {
                Event::PartStart(headers) => {
                    assert!(!in_part, "a part started inside another");
                    in_part = true;
                    for (_, value) in headers.fields() {
                        let _ = parse_disposition(value);
                    }
                    parts.push((headers.fields().to_vec(), Vec::new()));
                }
                Event::Data(d) => {
                    assert!(in_part, "data outside a part");
                    assert!(!d.is_empty(), "empty data");
                    data_total += d.len();
                    parts.last_mut().expect("a part").1.extend_from_slice(&d);
                }
                Event::PartEnd => {
                    assert!(in_part, "a part ended that never started");
                    in_part = false;
                }
                Event::End => {
                    assert!(!in_part, "the form ended inside a part");
                    ended = true;
                }
            }
            assert!(reader.buffered() <= bound, "{} held", reader.buffered());
        }
        assert!(reader.buffered() <= bound, "{} held", reader.buffered());
    }
    assert!(data_total <= body.len());
    assert_eq!(ended, reader.is_done());
    Ok((parts, ended))
}

fuzz_target!(|data: &[u8]| {
    // [boundary length][step][boundary][body]
    let [blen, step, rest @ ..] = data else {
        return;
    };
    let blen = usize::from(*blen % 72).min(rest.len());
    let (boundary, body) = rest.split_at(blen);
    let whole = read(boundary, body, body.len().max(1));
    let pieces = read(boundary, body, usize::from(*step) + 1);
    assert_eq!(whole, pieces, "the pieces read differently");
    if let Ok((_, ended)) = whole {
        // Once the input is all given, the form always ends.
        assert!(ended, "the input ended but not the form");
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = parse_disposition(text);
    }
});
