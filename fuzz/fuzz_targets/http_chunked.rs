//! What apus-http parses itself of a backend's answer to an upload
//! (`expect`): the response head and a `Transfer-Encoding: chunked` body
//! (hyper decodes every other body). Nothing panics; the decoder gives
//! the same result however the bytes arrive, keeps at most its limit, and
//! decodes what a chunked encoder writes back to the data.
#![no_main]

use apus_http::expect::{parse_response_head, ChunkedDecoder};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

/// Decodes `wire` fed `piece` bytes at a time: whether the last chunk was
/// read and the body, or `None` on an error.
fn decode(wire: &[u8], piece: usize, limit: usize) -> Option<(bool, Bytes)> {
    let mut decoder = ChunkedDecoder::new(limit);
    let mut buf = BytesMut::new();
    let mut done = false;
    for part in wire.chunks(piece.max(1)) {
        buf.extend_from_slice(part);
        done = decoder.decode(&mut buf).ok()?;
        if done {
            break;
        }
    }
    let body = decoder.into_body();
    assert!(body.len() <= limit);
    Some((done, body))
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, wire)) = data.split_first() else {
        return;
    };
    let piece = usize::from(knobs & 0x1f) + 1;
    let limit = if knobs & 0x20 != 0 { 16 } else { 1 << 16 };

    // Arbitrary bytes as a chunked body, whole and in pieces.
    let whole = decode(wire, wire.len(), limit);
    assert_eq!(decode(wire, piece, limit), whole);

    // The input cut into chunks, encoded, decodes back to itself.
    let mut encoded = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let n = usize::from(rest[0]).clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        if knobs & 0x40 != 0 {
            encoded.extend_from_slice(format!("{n:X};name=value\r\n").as_bytes());
        } else {
            encoded.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        }
        encoded.extend_from_slice(chunk);
        encoded.extend_from_slice(b"\r\n");
        rest = tail;
    }
    encoded.extend_from_slice(b"0\r\n\r\n");
    let (done, body) = decode(&encoded, piece, limit).expect("valid chunked bytes decode");
    assert!(done);
    assert_eq!(&body[..], &wire[..wire.len().min(limit)]);

    // Arbitrary bytes as a response head.
    if let Ok(Some((status, headers, used))) = parse_response_head(wire) {
        assert!(used <= wire.len());
        let (again, again_headers, again_used) = parse_response_head(&wire[..used])
            .expect("a complete head parses alone")
            .expect("and is complete");
        assert_eq!((again, again_used), (status, used));
        assert_eq!(again_headers, headers);
    }
});
