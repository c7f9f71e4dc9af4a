//! What apus-http changes on a connection (`wire`): the first request
//! line's raw high bytes percent-encoded, announced 204 marks rewritten.
//! Whatever the bytes and however they are split: nothing panics, the
//! encoder changes only high bytes of the first line's target, and the
//! rewriter keeps the length, changes only whole mark lines, at most as
//! many as announced.
#![no_main]

use std::sync::atomic::Ordering;

use apus_http::wire::{MarkRewriter, TargetEncoder};
use libfuzzer_sys::fuzz_target;

const MARK_LINE: &[u8] = b"\r\nX-Apus-Cl-Zero: 0\r\n";
const FIXED_LINE: &[u8] = b"\r\nContent-Length: 0\r\n";

/// The encoder's contract, written out plainly: in the first line that
/// is not empty (ending at its LF, or 64 KiB into the input), the bytes
/// of 0x80 and above between its first space and the next become `%XX`.
fn expected_encoding(input: &[u8]) -> Vec<u8> {
    let start = input
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(input.len());
    let end = input[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(input.len(), |at| start + at)
        .min(64 * 1024);
    let mut out = Vec::new();
    let mut spaces = 0;
    for (i, &b) in input.iter().enumerate() {
        let in_line = (start..end).contains(&i);
        if in_line && spaces == 1 && b >= 0x80 {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
            continue;
        }
        if in_line && b == b' ' {
            spaces += 1;
        }
        out.push(b);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, input)) = data.split_first() else {
        return;
    };
    let piece = usize::from(knobs & 0x1f) + 1;
    let announced = usize::from(knobs >> 5);

    let mut encoder = TargetEncoder::new();
    let mut encoded = Vec::new();
    for part in input.chunks(piece) {
        encoder.encode(part, &mut encoded);
    }
    assert_eq!(encoded, expected_encoding(input));
    assert_eq!(encoder.grown(), encoded.len() - input.len());

    let mut rewriter = MarkRewriter::new();
    rewriter.announcer().store(announced, Ordering::Release);
    let mut out = Vec::new();
    while out.len() < input.len() {
        let offered = &input[out.len()..];
        if !rewriter.is_active() {
            out.extend_from_slice(offered);
            break;
        }
        let (bytes, rewrites) = rewriter.rewrite(offered);
        assert_eq!(bytes.len(), offered.len());
        let n = piece.min(bytes.len());
        out.extend_from_slice(&bytes[..n]);
        rewriter.written(n, &rewrites);
    }
    assert_eq!(out.len(), input.len());
    let mut changed = 0;
    let mut i = 0;
    while i < input.len() {
        if out[i] == input[i] {
            i += 1;
            continue;
        }
        // A difference opens a whole rewritten mark line, which begins
        // (with its CRLF, unchanged) two bytes earlier.
        let start = i.checked_sub(2).expect("a change inside a mark line");
        let end = start + MARK_LINE.len();
        assert!(input[start..end].eq_ignore_ascii_case(MARK_LINE));
        assert_eq!(&out[start..end], FIXED_LINE);
        changed += 1;
        i = end - 2;
    }
    assert!(changed <= announced);
});
