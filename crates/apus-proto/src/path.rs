//! Request paths as Swift's servers see them.
//!
//! A backend path arrives percent-encoded. Swift's WSGI layer unquotes it
//! byte by byte (a `%` not followed by two hex digits stays as is), then
//! the servers require the result to be valid UTF-8 without NUL (412
//! otherwise) and split it with `split_path` (400 otherwise).

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not valid UTF-8 once decoded, or contains NUL: Swift answers 412
    /// "Invalid UTF8 or contains NULL".
    #[error("Invalid UTF8 or contains NULL")]
    InvalidUtf8,
    /// The path does not split as required: 400.
    #[error("Invalid path: {0}")]
    Invalid(String),
}

impl PathError {
    pub fn http_status(&self) -> u16 {
        match self {
            PathError::InvalidUtf8 => 412,
            PathError::Invalid(_) => 400,
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Python's `unquote_to_bytes`: `%XX` decoded, a `%` not followed by two
/// hex digits kept as it is.
pub fn unquote_bytes(raw: &str) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Percent-decodes a raw path (no query string) into text, refusing
/// invalid UTF-8, NUL and the empty string (Swift's `check_utf8`).
pub fn percent_decode(raw: &str) -> Result<String, PathError> {
    let text = String::from_utf8(unquote_bytes(raw)).map_err(|_| PathError::InvalidUtf8)?;
    if text.is_empty() || text.contains('\0') {
        return Err(PathError::InvalidUtf8);
    }
    Ok(text)
}

/// Percent-decodes a path that may name the reserved namespace (Swift's
/// `check_utf8(internal=True)`): invalid UTF-8 and the empty string are
/// refused, NUL is allowed. Storage servers and the middleware that route
/// on paths use this; the proxy application itself admits NUL only on
/// requests that carry `X-Backend-Allow-Reserved-Names`.
pub fn percent_decode_internal(raw: &str) -> Result<String, PathError> {
    match String::from_utf8(unquote_bytes(raw)) {
        Ok(text) if !text.is_empty() => Ok(text),
        _ => Err(PathError::InvalidUtf8),
    }
}

/// Percent-encodes a path for an outgoing backend request as Swift's
/// `quote(path, safe='/')`: everything but `A-Z a-z 0-9 _ . - ~ /` as
/// `%XX` of its UTF-8 bytes.
pub fn quote(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Swift's `split_path`: splits `/seg1/seg2/...` into exactly `maxsegs`
/// entries (missing trailing ones `None`), requiring at least `minsegs`
/// non-empty leading segments. With `rest_with_last`, everything after the
/// `maxsegs - 1`th slash is the last segment (object names with `/`).
pub fn split_path(
    path: &str,
    minsegs: usize,
    maxsegs: usize,
    rest_with_last: bool,
) -> Result<Vec<Option<String>>, PathError> {
    let maxsegs = maxsegs.max(minsegs);
    let invalid = || PathError::Invalid(quote(path));
    let segs: Vec<&str> = if rest_with_last {
        let segs: Vec<&str> = path.splitn(maxsegs + 1, '/').collect();
        let count = segs.len();
        if !segs[0].is_empty()
            || count < minsegs + 1
            || count > maxsegs + 1
            || segs[1..(minsegs + 1).min(count)]
                .iter()
                .any(|s| s.is_empty())
        {
            return Err(invalid());
        }
        segs
    } else {
        let segs: Vec<&str> = path.splitn(maxsegs + 2, '/').collect();
        let count = segs.len();
        if !segs[0].is_empty()
            || count < minsegs + 1
            || count > maxsegs + 2
            || segs[1..(minsegs + 1).min(count)]
                .iter()
                .any(|s| s.is_empty())
            || (count == maxsegs + 2 && !segs[maxsegs + 1].is_empty())
        {
            return Err(invalid());
        }
        segs
    };
    let kept = &segs[1..segs.len().min(maxsegs + 1)];
    if kept.len() > 1 && kept[..kept.len() - 1].iter().any(|s| s.is_empty()) {
        return Err(invalid());
    }
    let mut out: Vec<Option<String>> = kept.iter().map(|s| Some(s.to_string())).collect();
    out.resize(maxsegs, None);
    Ok(out)
}

/// Checks a device and partition path segment against directory traversal
/// (Swift's `validate_device_partition`).
pub fn validate_device_partition(device: &str, partition: &str) -> Result<(), PathError> {
    for (what, v) in [("device", device), ("partition", partition)] {
        if v.is_empty() || v.contains('/') || v == "." || v == ".." {
            return Err(PathError::Invalid(format!("Invalid {what}: {}", quote(v))));
        }
    }
    Ok(())
}

/// Python's `str.title()`, which Swift's WSGI layer applies to header
/// names (`x-object-meta-foo1bar` → `X-Object-Meta-Foo1Bar`): a letter
/// after a letter is lowered, any other letter raised.
pub fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut prev_cased = false;
    for c in name.chars() {
        if prev_cased {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_cased = c.is_alphabetic();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sp(p: &str, min: usize, max: usize, rest: bool) -> Option<Vec<Option<String>>> {
        split_path(p, min, max, rest).ok()
    }
    fn v(items: &[Option<&str>]) -> Option<Vec<Option<String>>> {
        Some(items.iter().map(|s| s.map(str::to_string)).collect())
    }

    #[test]
    fn split_path_like_swift() {
        assert_eq!(sp("/a", 1, 1, false), v(&[Some("a")]));
        assert_eq!(sp("/a", 1, 2, false), v(&[Some("a"), None]));
        assert_eq!(sp("/a/c", 1, 2, false), v(&[Some("a"), Some("c")]));
        assert_eq!(
            sp("/a/c/o/r", 1, 3, true),
            v(&[Some("a"), Some("c"), Some("o/r")])
        );
        assert_eq!(
            sp("/a/c/", 1, 3, true),
            v(&[Some("a"), Some("c"), Some("")])
        );
        assert_eq!(sp("/a/", 1, 2, false), v(&[Some("a"), Some("")]));
        assert_eq!(sp("/a/c/", 2, 2, false), v(&[Some("a"), Some("c")]));
        assert_eq!(sp("", 1, 1, false), None);
        assert_eq!(sp("a", 1, 1, false), None);
        assert_eq!(sp("//c", 1, 2, false), None);
        assert_eq!(sp("/a/c/o", 1, 2, false), None);
        assert_eq!(sp("/a//o", 1, 3, true), None);
        assert_eq!(
            sp("/d/p/a/c/o//x", 5, 5, true),
            v(&[Some("d"), Some("p"), Some("a"), Some("c"), Some("o//x")])
        );
        assert_eq!(sp("/d/p/a/c/", 5, 5, true), None);
        assert_eq!(sp("/d/p/a/c", 5, 5, true), None);
    }

    #[test]
    fn decoding_and_quoting() {
        assert_eq!(
            percent_decode("/a%20b/%E2%98%83"),
            Ok("/a b/\u{2603}".into())
        );
        assert_eq!(percent_decode("/a%zz%2"), Ok("/a%zz%2".into()));
        assert_eq!(percent_decode("/a%ff"), Err(PathError::InvalidUtf8));
        assert_eq!(percent_decode("/a%00"), Err(PathError::InvalidUtf8));
        assert_eq!(quote("/a b/\u{2603}~_.-"), "/a%20b/%E2%98%83~_.-");
        assert_eq!(title_case("x-object-meta-foo1bar"), "X-Object-Meta-Foo1Bar");
        assert_eq!(title_case("CONTENT-TYPE"), "Content-Type");
        assert!(validate_device_partition("sda", "1").is_ok());
        assert!(validate_device_partition("..", "1").is_err());
    }

    proptest! {
        #[test]
        fn quote_then_decode_round_trips(s in "/[^\u{0}]{0,30}") {
            prop_assert_eq!(percent_decode(&quote(&s)), Ok(s.clone()));
        }

        #[test]
        fn split_path_never_panics(p in "[/a-c]{0,12}", min in 1usize..5, extra in 0usize..3, rest: bool) {
            if let Ok(segs) = split_path(&p, min, min + extra, rest) {
                prop_assert_eq!(segs.len(), min + extra);
                prop_assert!(segs[..min].iter().all(|s| s.as_deref().is_some_and(|s| !s.is_empty())));
            }
        }
    }
}
