//! HTTP `Range: bytes=...` requests with Swift's rules (swob's `Range`).
//!
//! Parsing is all-or-nothing: one syntactically invalid byte-range-spec
//! makes the whole header invalid, and an invalid header is *ignored* (the
//! answer is a plain 200), as RFC 7233 requires. A valid header whose
//! ranges all miss the content is *unsatisfiable* (416).
//!
//! [`Range::ranges_for_length`] resolves the specs against a content
//! length into half-open `(start, end)` pairs and applies Swift's limits on
//! egregious requests (more than [`MAX_RANGES`] ranges, more than
//! [`MAX_RANGE_OVERLAPS`] overlapping pairs, or [`MAX_NONASCENDING_RANGES`]
//! or more ranges out of order): those are answered like unsatisfiable
//! ones.

use std::fmt;

/// More ranges than this in one request: 416.
pub const MAX_RANGES: usize = 50;
/// More overlapping pairs of ranges than this: 416.
pub const MAX_RANGE_OVERLAPS: usize = 2;
/// This many or more ranges, not in ascending order: 416.
pub const MAX_NONASCENDING_RANGES: usize = 8;

/// One `first-last`, `first-` or `-suffix` spec as written (inclusive end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRangeSpec {
    pub start: Option<u64>,
    pub end: Option<u64>,
}

/// A parsed, syntactically valid `Range` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub specs: Vec<ByteRangeSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Range header: {0:?}")]
pub struct RangeError(pub String);

/// Parses a decimal number the way Python's `int()` does for the digits
/// Swift sees here (an optional `+`, ASCII digits). Values beyond `u64`
/// saturate, which keeps Swift's comparisons (nothing is that long).
fn parse_num(s: &str, allow_plus: bool) -> Option<u64> {
    let digits = match s.strip_prefix('+') {
        Some(rest) if allow_plus => rest,
        _ => s,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for b in digits.bytes() {
        v = v.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    Some(v)
}

impl Range {
    /// Parses a `Range` header value. Spaces are ignored anywhere; the unit
    /// must be `bytes` (any case).
    pub fn parse(header: &str) -> Result<Range, RangeError> {
        let err = || RangeError(header.to_string());
        if header.is_empty() {
            return Err(err());
        }
        let compact: String = header.chars().filter(|c| *c != ' ').collect();
        let Some(prefix) = compact.get(..6) else {
            return Err(err());
        };
        if !prefix.eq_ignore_ascii_case("bytes=") {
            return Err(err());
        }
        let mut specs = Vec::new();
        for spec in compact[6..].split(',') {
            let Some((start, end)) = spec.split_once('-') else {
                return Err(err());
            };
            let start = if start.is_empty() {
                None
            } else {
                Some(parse_num(start, true).ok_or_else(err)?)
            };
            let end = if end.is_empty() {
                if start.is_none() {
                    return Err(err());
                }
                None
            } else {
                let e = parse_num(end, false).ok_or_else(err)?;
                if matches!(start, Some(s) if e < s) {
                    return Err(err());
                }
                Some(e)
            };
            specs.push(ByteRangeSpec { start, end });
        }
        Ok(Range { specs })
    }

    /// Resolves the ranges against `length` bytes of content: `None` when
    /// the header must be ignored (no specs), an empty list when it cannot
    /// be satisfied (416), otherwise half-open `(start, end)` pairs in the
    /// order requested.
    pub fn ranges_for_length(&self, length: u64) -> Option<Vec<(u64, u64)>> {
        if self.specs.is_empty() {
            return None;
        }
        let mut all = Vec::new();
        for spec in &self.specs {
            match (spec.start, spec.end) {
                (None, Some(0)) => {}
                (None, Some(suffix)) => {
                    if suffix > length {
                        all.push((0, length));
                    } else {
                        all.push((length - suffix, length));
                    }
                }
                (None, None) => {}
                (Some(begin), None) => {
                    if begin < length {
                        all.push((begin, length));
                    }
                }
                (Some(begin), Some(end)) => {
                    if begin < length {
                        all.push((begin, end.saturating_add(1).min(length)));
                    }
                }
            }
        }
        if all.len() > MAX_RANGES {
            return Some(Vec::new());
        }
        let mut overlaps = 0;
        for (i, &(s1, e1)) in all.iter().enumerate() {
            for &(s2, e2) in &all[i + 1..] {
                if (s1 < s2 && s2 < e1)
                    || (s1 < e2 && e2 < e1)
                    || (s2 < s1 && s1 < e2)
                    || (s2 < e1 && e1 < e2)
                {
                    overlaps += 1;
                    if overlaps > MAX_RANGE_OVERLAPS {
                        return Some(Vec::new());
                    }
                }
            }
        }
        let ascending = all.windows(2).all(|w| w[0] <= w[1]);
        if !ascending && all.len() >= MAX_NONASCENDING_RANGES {
            return Some(Vec::new());
        }
        Some(all)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes=")?;
        for (i, spec) in self.specs.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if let Some(s) = spec.start {
                write!(f, "{s}")?;
            }
            f.write_str("-")?;
            if let Some(e) = spec.end {
                write!(f, "{e}")?;
            }
        }
        Ok(())
    }
}

/// `bytes <start>-<end-1>/<size>` for the half-open range `[start, end)`.
pub fn content_range_value(start: u64, end: u64, size: u64) -> String {
    format!("bytes {}-{}/{}", start, end.saturating_sub(1), size)
}

/// What a `multipart/byteranges` body holds and how long it is, in Swift's
/// exact format: for each range `--<boundary>\r\nContent-Type: <type>\r\n
/// Content-Range: bytes a-b/len\r\n\r\n<bytes>\r\n`, then `--<boundary>--`
/// (no final CRLF).
pub fn multipart_part_header(
    boundary: &str,
    content_type: &str,
    start: u64,
    end: u64,
    size: u64,
) -> String {
    format!(
        "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: {}\r\n\r\n",
        content_range_value(start, end, size)
    )
}

/// The closing delimiter of a `multipart/byteranges` body.
pub fn multipart_terminator(boundary: &str) -> String {
    format!("--{boundary}--")
}

/// The total length of the `multipart/byteranges` body for `ranges`.
pub fn multipart_body_length(
    boundary: &str,
    content_type: &str,
    ranges: &[(u64, u64)],
    size: u64,
) -> u64 {
    let mut total = 0u64;
    for &(s, e) in ranges {
        total += multipart_part_header(boundary, content_type, s, e, size).len() as u64;
        total += e - s;
        total += 2;
    }
    total + multipart_terminator(boundary).len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(h: &str) -> Option<Vec<(u64, u64)>> {
        Range::parse(h).ok()?.ranges_for_length(10)
    }

    #[test]
    fn parses_like_swob() {
        assert!(Range::parse("").is_err());
        assert!(Range::parse("bytes=").is_err());
        assert!(Range::parse("bytes=5-3").is_err());
        assert!(Range::parse("bytes=-").is_err());
        assert!(Range::parse("bytes=45").is_err());
        assert!(Range::parse("bytes=a-4").is_err());
        assert!(Range::parse("bytes=1-2,x").is_err());
        assert!(Range::parse("bytes=--0").is_err());
        assert!(Range::parse("items=1-2").is_err());
        assert_eq!(
            Range::parse("Bytes = 1 - 2 ").map(|r| r.to_string()),
            Ok("bytes=1-2".into())
        );
        assert_eq!(
            Range::parse("bytes=+3-4").map(|r| r.to_string()),
            Ok("bytes=3-4".into())
        );
        assert!(Range::parse("bytes=3-+4").is_err());
        assert_eq!(
            Range::parse("bytes=0-1,-5,7-").map(|r| r.to_string()),
            Ok("bytes=0-1,-5,7-".into())
        );
    }

    #[test]
    fn resolves_like_swob() {
        assert_eq!(r("bytes=0-0"), Some(vec![(0, 1)]));
        assert_eq!(r("bytes=2-100"), Some(vec![(2, 10)]));
        assert_eq!(r("bytes=-3"), Some(vec![(7, 10)]));
        assert_eq!(r("bytes=-30"), Some(vec![(0, 10)]));
        assert_eq!(r("bytes=-0"), Some(vec![]));
        assert_eq!(r("bytes=10-"), Some(vec![]));
        assert_eq!(r("bytes=10-20,1-2"), Some(vec![(1, 3)]));
        assert_eq!(r("bytes=99999999999999999999999-"), Some(vec![]));
        assert_eq!(r("bytes=0-99999999999999999999999"), Some(vec![(0, 10)]));
        assert_eq!(
            Range::parse("bytes=-5")
                .ok()
                .and_then(|r| r.ranges_for_length(0)),
            Some(vec![(0, 0)])
        );
    }

    #[test]
    fn egregious_requests_are_refused() {
        let many: Vec<String> = (0..51).map(|i| format!("{i}-{i}")).collect();
        let h = format!("bytes={}", many.join(","));
        assert_eq!(
            Range::parse(&h).ok().and_then(|r| r.ranges_for_length(100)),
            Some(vec![])
        );
        let fifty = format!("bytes={}", many[..50].join(","));
        assert_eq!(
            Range::parse(&fifty)
                .ok()
                .and_then(|r| r.ranges_for_length(100))
                .map(|v| v.len()),
            Some(50)
        );
        // three overlapping pairs
        assert_eq!(r("bytes=0-5,1-6,2-7"), Some(vec![]));
        assert_eq!(r("bytes=0-5,1-6").map(|v| v.len()), Some(2));
        // eight out of order
        let desc: Vec<String> = (0..8).rev().map(|i| format!("{i}-{i}")).collect();
        assert_eq!(r(&format!("bytes={}", desc.join(","))), Some(vec![]));
        let desc7: Vec<String> = (0..7).rev().map(|i| format!("{i}-{i}")).collect();
        assert_eq!(
            r(&format!("bytes={}", desc7.join(","))).map(|v| v.len()),
            Some(7)
        );
    }

    #[test]
    fn multipart_length_matches_layout() {
        let ranges = [(0, 2), (5, 10)];
        let b = "0123456789abcdef0123456789abcdef";
        let mut body = String::new();
        for &(s, e) in &ranges {
            body += &multipart_part_header(b, "text/plain", s, e, 10);
            body += &"x".repeat((e - s) as usize);
            body += "\r\n";
        }
        body += &multipart_terminator(b);
        assert_eq!(
            body.len() as u64,
            multipart_body_length(b, "text/plain", &ranges, 10)
        );
        assert!(body.contains("Content-Range: bytes 5-9/10\r\n"));
    }

    proptest! {
        #[test]
        fn resolved_ranges_lie_within_content(
            specs in proptest::collection::vec((proptest::option::of(0u64..200), proptest::option::of(0u64..200)), 1..12),
            len in 0u64..150,
        ) {
            let text: Vec<String> = specs.iter().map(|(s, e)| format!(
                "{}-{}", s.map(|v| v.to_string()).unwrap_or_default(), e.map(|v| v.to_string()).unwrap_or_default())).collect();
            let header = format!("bytes={}", text.join(","));
            if let Ok(range) = Range::parse(&header) {
                prop_assert_eq!(Range::parse(&range.to_string()).ok(), Some(range.clone()));
                if let Some(out) = range.ranges_for_length(len) {
                    for (s, e) in out {
                        prop_assert!(s <= e && e <= len);
                        prop_assert!(s < e || len == 0);
                    }
                }
            }
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = Range::parse(&s).map(|r| r.ranges_for_length(17));
        }
    }
}
