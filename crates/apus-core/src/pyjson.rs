//! JSON strings as Python's `json.dumps` writes them with its default
//! `ensure_ascii`: only printable ASCII as is, `"` and `\` escaped, the
//! usual short escapes for control characters, everything else as
//! `\uXXXX` (UTF-16 code units, so a character outside the BMP is a
//! surrogate pair). Swift's listings and database metadata are written
//! this way; writing the same bytes keeps files and answers identical.

use std::fmt::Write as _;

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    // Names are mostly printable ASCII: copy such runs whole (listings
    // write thousands of names per answer) and escape the rest below.
    let mut rest = s;
    while !rest.is_empty() {
        let plain = rest
            .bytes()
            .position(|b| !(b' '..=b'~').contains(&b) || b == b'"' || b == b'\\')
            .unwrap_or(rest.len());
        out.push_str(&rest[..plain]);
        rest = &rest[plain..];
        let Some(c) = rest.chars().next() else {
            break;
        };
        rest = &rest[c.len_utf8()..];
        push_escaped_char(out, c);
    }
    out.push('"');
}

/// Appends one character that is not plain printable ASCII (or is `"` or
/// `\`), escaped.
fn push_escaped_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        ' '..='~' => out.push(c),
        _ => {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        }
    }
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_str(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_python() {
        // json.dumps('a"b\\\n\x01é😀\x7f ~')
        assert_eq!(
            json_str("a\"b\\\n\u{1}\u{e9}\u{1f600}\u{7f} ~"),
            r#""a\"b\\\n\u0001\u00e9\ud83d\ude00\u007f ~""#
        );
        assert_eq!(json_str(""), "\"\"");
    }

    proptest::proptest! {
        /// Copying plain runs whole writes what escaping each character
        /// alone writes, and serde_json reads the original string back.
        #[test]
        fn runs_match_char_by_char(s in "\\PC*|[ -~\"\\\\\n\u{1}\u{7f}é]*") {
            let mut by_char = String::from("\"");
            for c in s.chars() {
                push_escaped_char(&mut by_char, c);
            }
            by_char.push('"');
            let written = json_str(&s);
            proptest::prop_assert_eq!(&written, &by_char);
            let back: String = serde_json::from_str(&written).unwrap();
            proptest::prop_assert_eq!(back, s);
        }
    }
}
