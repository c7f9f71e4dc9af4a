//! The byte-level pieces signatures are built from: percent-decoding and
//! -encoding as S3 canonicalises them, query strings read into parameters,
//! header values trimmed and collapsed, and the dates S3 clients send.
//!
//! Header values and decoded paths are bytes: HTTP carries them as
//! ISO-8859-1, and a signature covers the bytes the client sent.

use apus_core::conditional::parse_http_date;
use apus_core::timestamp::civil_from_days;

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as
/// it is. With `plus`, `+` decodes to a space (query strings).
pub fn percent_decode(input: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex_val(input[i + 1]), hex_val(input[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if plus && b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes every byte but letters, digits, `-_.~` and those in
/// `also_safe`, with upper-case hex, as SigV4 canonicalises.
pub fn percent_encode(input: &[u8], also_safe: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in input {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || also_safe.contains(&b)
        {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// A query string read into (name, value) pairs, as a WSGI framework
/// reads it: split on `&`, empty fields skipped, a field without `=` has
/// an empty value, both halves percent- and plus-decoded.
pub fn parse_query(query: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    query
        .split(|&b| b == b'&')
        .filter(|field| !field.is_empty())
        .map(|field| match field.iter().position(|&b| b == b'=') {
            Some(i) => (
                percent_decode(&field[..i], true),
                percent_decode(&field[i + 1..], true),
            ),
            None => (percent_decode(field, true), Vec::new()),
        })
        .collect()
}

/// Whitespace as Python's `str.split()` sees it in an ISO-8859-1 string.
pub fn is_py_space(b: u8) -> bool {
    matches!(
        b,
        b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f | b' ' | 0x85 | 0xa0
    )
}

/// Strips Python whitespace from both ends.
pub fn py_strip(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_py_space(b)).unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| !is_py_space(b))
        .map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

/// Strips control characters and spaces (bytes up to 0x20) from both ends.
pub fn strip_controls(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b > 0x20).unwrap_or(v.len());
    let end = v.iter().rposition(|&b| b > 0x20).map_or(start, |i| i + 1);
    &v[start..end.max(start)]
}

/// A header value as SigV4 canonicalises it: trimmed, and each run of
/// whitespace inside collapsed to one space.
pub fn collapse_spaces(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    for word in strip_controls(v)
        .split(|&b| is_py_space(b))
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(word);
    }
    out
}

/// Bytes read as ISO-8859-1 text (each byte one character).
pub fn latin1(v: &[u8]) -> String {
    v.iter().map(|&b| char::from(b)).collect()
}

/// ISO-8859-1 bytes as UTF-8 text where they are, lossily otherwise: how
/// a name the client wrote in UTF-8 reads back.
pub fn utf8ish(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}

/// Whether `v` looks like a hex SHA-256 digest (either case).
pub fn looks_like_sha256(v: &[u8]) -> bool {
    v.len() == 64 && v.iter().all(u8::is_ascii_hexdigit)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Seconds since the epoch of a calendar date and time, checked as
/// `strptime` checks them (seconds may be 60 or 61).
fn epoch(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    if !(1..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || d < 1
        || d > days_in_month(y, mo)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&mi)
        || !(0..=61).contains(&s)
    {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

fn digits(v: &[u8]) -> Option<i64> {
    if v.is_empty() || v.len() > 4 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0, |n, &b| n * 10 + i64::from(b - b'0')))
}

/// `YYYYMMDDTHHMMSSZ`, SigV4's `X-Amz-Date`.
pub fn parse_amz_date(v: &[u8]) -> Option<i64> {
    if v.len() != 16 || v[8] != b'T' || v[15] != b'Z' {
        return None;
    }
    epoch(
        digits(&v[0..4])?,
        digits(&v[4..6])?,
        digits(&v[6..8])?,
        digits(&v[9..11])?,
        digits(&v[11..13])?,
        digits(&v[13..15])?,
    )
}

/// `YYYY-MM-DDTHH:MM:SS` (one- or two-digit fields after the year).
pub fn parse_iso_date(v: &[u8]) -> Option<i64> {
    let (date, time) = {
        let t = v.iter().position(|&b| b == b'T')?;
        (&v[..t], &v[t + 1..])
    };
    let d: Vec<&[u8]> = date.split(|&b| b == b'-').collect();
    let t: Vec<&[u8]> = time.split(|&b| b == b':').collect();
    if d.len() != 3
        || t.len() != 3
        || d[0].len() != 4
        || [d[1], d[2], t[0], t[1], t[2]].iter().any(|f| f.len() > 2)
    {
        return None;
    }
    epoch(
        digits(d[0])?,
        digits(d[1])?,
        digits(d[2])?,
        digits(t[0])?,
        digits(t[1])?,
        digits(t[2])?,
    )
}

/// The UTC offset, in seconds, of an RFC 2822 zone: a name Python's
/// `email.utils` knows or a signed `HHMM`.
fn zone_offset(tz: &str) -> Option<i64> {
    let hhmm: i64 = match tz.to_ascii_uppercase().as_str() {
        "UT" | "UTC" | "GMT" | "Z" => 0,
        "AST" => -400,
        "ADT" => -300,
        "EST" => -500,
        "EDT" => -400,
        "CST" => -600,
        "CDT" => -500,
        "MST" => -700,
        "MDT" => -600,
        "PST" => -800,
        "PDT" => -700,
        _ => {
            let (neg, body) = match tz.as_bytes().first() {
                Some(b'-') => (true, &tz[1..]),
                Some(b'+') => (false, &tz[1..]),
                _ => (false, tz),
            };
            if body.is_empty() || body.len() > 4 || !body.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: i64 = body.parse().ok()?;
            match (neg, n) {
                // "-0000" means "zone unknown"
                (true, 0) => return None,
                (true, n) => -n,
                (false, n) => n,
            }
        }
    };
    let (sign, n) = if hhmm < 0 { (-1, -hhmm) } else { (1, hhmm) };
    Some(sign * ((n / 100) * 3600 + (n % 100) * 60))
}

/// An RFC 2822 date with its zone; `None` when it is not one, `Some(None)`
/// when it reads as one without a known zone (which cannot be placed in
/// time).
fn parse_rfc_date(v: &[u8]) -> Option<Option<i64>> {
    let text = latin1(v);
    let local = parse_http_date(&text)?;
    let last = text.split_whitespace().last().unwrap_or("");
    Some(zone_offset(last).map(|off| local - off))
}

/// How s3api reads a date header: RFC 2822 first, else `fallback`.
/// `None` means no valid date.
pub fn parse_date(v: &[u8], fallback: fn(&[u8]) -> Option<i64>) -> Option<i64> {
    match parse_rfc_date(v) {
        Some(zoned) => zoned,
        None => fallback(v),
    }
}

/// Seconds since the epoch as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_keeps_broken_escapes() {
        assert_eq!(percent_decode(b"a%20b%2", false), b"a b%2");
        assert_eq!(percent_decode(b"%zz%4", false), b"%zz%4");
        assert_eq!(percent_decode(b"a+b%2B", true), b"a b+");
        assert_eq!(percent_decode(b"a+b", false), b"a+b");
        assert_eq!(percent_decode(b"%", false), b"%");
        assert_eq!(percent_decode(b"%e2%82%ac", false), "\u{20ac}".as_bytes());
    }

    #[test]
    fn encoding_keeps_unreserved_only() {
        let mut out = Vec::new();
        percent_encode(b"a b/~-_.+%\xff", b"/", &mut out);
        assert_eq!(out, b"a%20b/~-_.%2B%25%FF");
    }

    #[test]
    fn query_parameters() {
        assert_eq!(
            parse_query(b"acl&a=1&&b=&c=x=y&d+e=%41"),
            vec![
                (b"acl".to_vec(), b"".to_vec()),
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"".to_vec()),
                (b"c".to_vec(), b"x=y".to_vec()),
                (b"d e".to_vec(), b"A".to_vec()),
            ]
        );
    }

    #[test]
    fn header_values_collapse() {
        assert_eq!(collapse_spaces(b"  a   b\t c  "), b"a b c");
        assert_eq!(collapse_spaces(b"\x01a\x85b\xa0"), b"a b");
        assert_eq!(collapse_spaces(b"   "), b"");
        assert_eq!(py_strip(b" \tx y\r\n"), b"x y");
        assert_eq!(strip_controls(b"\x00 x\x7f "), b"x\x7f");
    }

    #[test]
    fn dates() {
        let t = parse_amz_date(b"20240229T235960Z").unwrap();
        assert_eq!(format_amz_date(t), "20240301T000000Z");
        assert_eq!(parse_amz_date(b"20130524T000000Z"), Some(1_369_353_600));
        assert_eq!(parse_amz_date(b"20130230T000000Z"), None);
        assert_eq!(parse_amz_date(b"2013052T0000000Z"), None);
        assert_eq!(parse_iso_date(b"2013-05-24T00:00:00"), Some(1_369_353_600));
        let rfc = |s: &str| parse_date(s.as_bytes(), parse_amz_date);
        assert_eq!(rfc("Fri, 24 May 2013 00:00:00 GMT"), Some(1_369_353_600));
        assert_eq!(rfc("Fri, 24 May 2013 02:00:00 +0200"), Some(1_369_353_600));
        assert_eq!(rfc("Thu, 23 May 2013 17:00:00 PDT"), Some(1_369_353_600));
        assert_eq!(rfc("Fri, 24 May 2013 00:00:00"), None);
        assert_eq!(rfc("Fri, 24 May 2013 00:00:00 -0000"), None);
        assert_eq!(rfc("20130524T000000Z"), Some(1_369_353_600));
        assert_eq!(rfc("garbage"), None);
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert!(looks_like_sha256(&[b'A'; 64]));
        assert!(!looks_like_sha256(&[b'g'; 64]));
    }
}
