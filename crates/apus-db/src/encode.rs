//! Small encodings shared by both brokers: the three-timestamp `created_at`
//! form, the `chexor` rolling hash, base64 for pending lines, the
//! `swift_bytes` content-type parameter and database ids.

use std::borrow::Cow;

use apus_core::Timestamp;
use md5::{Digest, Md5};

/// The data, content-type and metadata timestamps of an object row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowTimestamps {
    pub data: Timestamp,
    pub ctype: Timestamp,
    pub meta: Timestamp,
}

impl RowTimestamps {
    pub fn same(ts: Timestamp) -> Self {
        RowTimestamps {
            data: ts,
            ctype: ts,
            meta: ts,
        }
    }
}

/// Swift's short form: normalized, plus `_<hex offset>` without padding.
fn short_form(ts: &Timestamp) -> String {
    if ts.offset() == 0 {
        ts.normal()
    } else {
        format!("{}_{:x}", ts.normal(), ts.offset())
    }
}

fn signed_hex(delta: i128) -> String {
    if delta < 0 {
        format!("-{:x}", -delta)
    } else {
        format!("+{delta:x}")
    }
}

/// Encodes three timestamps as `<t1>[<±hex t2-t1><±hex t3-t2>]`, the form
/// stored in an object row's `created_at`. Offsets of the second and third
/// timestamps are not kept (they are POST times and never carry one).
pub fn encode_timestamps(ts: &RowTimestamps) -> String {
    let mut out = short_form(&ts.data);
    let d2 = i128::from(ts.ctype.ticks()) - i128::from(ts.data.ticks());
    let d3 = i128::from(ts.meta.ticks()) - i128::from(ts.ctype.ticks());
    if d2 != 0 || d3 != 0 {
        out.push_str(&signed_hex(d2));
        out.push_str(&signed_hex(d3));
    }
    out
}

/// Inverse of [`encode_timestamps`]; missing parts take the previous value.
pub fn decode_timestamps(encoded: &str) -> Option<RowTimestamps> {
    // Most rows were never POSTed to: one timestamp, nothing to split
    // (a listing decodes one per object).
    if !encoded.bytes().any(|b| b == b'+' || b == b'-') {
        let data = Timestamp::parse(encoded).ok()?;
        return Some(RowTimestamps {
            data,
            ctype: data,
            meta: data,
        });
    }
    // Split into signed pieces: "a+b-c" gives [(+,a), (+,b), (-,c)].
    let mut parts: Vec<(i128, &str)> = Vec::with_capacity(3);
    for (i, plus_piece) in encoded.split('+').enumerate() {
        for (j, piece) in plus_piece.split('-').enumerate() {
            let sign = if j == 0 { 1 } else { -1 };
            if i == 0 && j == 0 {
                parts.push((1, piece));
            } else {
                parts.push((sign, piece));
            }
        }
    }
    let (_, first) = parts.first()?;
    let data = Timestamp::parse(first).ok()?;
    let shifted = |base: Timestamp, part: Option<&(i128, &str)>| -> Option<Timestamp> {
        let Some((sign, hex)) = part else {
            return Some(base);
        };
        let hex = hex.trim();
        if hex.is_empty() {
            return None;
        }
        let delta = sign * i128::from_str_radix(hex, 16).ok()?;
        if delta == 0 {
            return Some(base);
        }
        let ticks = i128::from(base.ticks()) + delta;
        let ticks = u64::try_from(ticks).ok()?;
        Timestamp::from_ticks(ticks, 0)
    };
    let ctype = shifted(data, parts.get(1))?;
    let meta = shifted(ctype, parts.get(2))?;
    Some(RowTimestamps { data, ctype, meta })
}

/// XORs the md5 of `"<name>-<stamp>"` into a 128-bit hex hash: the
/// order-independent rolling hash replicas compare.
pub fn chexor(old: &str, name: &str, stamp: &str) -> String {
    let old = u128::from_str_radix(old.trim(), 16).unwrap_or(0);
    let mut hasher = Md5::new();
    hasher.update(name.as_bytes());
    hasher.update(b"-");
    hasher.update(stamp.as_bytes());
    let digest: [u8; 16] = hasher.finalize().into();
    format!("{:032x}", old ^ u128::from_be_bytes(digest))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64; characters outside the alphabet are skipped
/// (as Python's non-validating decoder does); bad padding is an error.
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut sextets = 0usize;
    let mut pad = 0usize;
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            _ => continue,
        };
        if pad > 0 {
            return None;
        }
        sextets += 1;
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    match sextets % 4 {
        0 if pad == 0 => Some(out),
        2 if pad == 2 => Some(out),
        3 if pad == 1 => Some(out),
        _ => None,
    }
}

fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn is_token_char(c: char) -> bool {
    !(matches!(
        c,
        '(' | ')'
            | '<'
            | '>'
            | '@'
            | ','
            | ';'
            | ':'
            | '"'
            | '/'
            | '['
            | ']'
            | '?'
            | '='
            | '{'
            | '}'
    ) || c <= ' '
        || c == '\u{7f}')
}

/// Matches one `;key[=value]` parameter at the start of `s`, the way Swift's
/// content-type parameter pattern does; returns (key, value, bytes used).
fn match_param(s: &str) -> Option<(&str, &str, usize)> {
    let skip_ws = |from: usize| -> usize {
        s[from..]
            .char_indices()
            .find(|(_, c)| !is_py_space(*c))
            .map_or(s.len(), |(i, _)| from + i)
    };
    let token_end = |from: usize| -> usize {
        s[from..]
            .char_indices()
            .find(|(_, c)| !is_token_char(*c))
            .map_or(s.len(), |(i, _)| from + i)
    };
    let mut pos = skip_ws(0);
    if !s[pos..].starts_with(';') {
        return None;
    }
    pos = skip_ws(pos + 1);
    let key_start = pos;
    let key_end = token_end(pos);
    if key_end == key_start {
        return None;
    }
    let after_key = skip_ws(key_end);
    let key = &s[key_start..key_end];
    // The optional `= value` part.
    if s[after_key..].starts_with('=') {
        let vstart = skip_ws(after_key + 1);
        let vend = token_end(vstart);
        if vend > vstart {
            return Some((key, &s[vstart..vend], vend));
        }
        if s[vstart..].starts_with('"') {
            let mut chars = s[vstart + 1..].char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        let end = vstart + 1 + i + 1;
                        return Some((key, &s[vstart..end], end));
                    }
                    '\\' if chars.next().is_none() => break,
                    _ => {}
                }
            }
        }
    }
    Some((key, "", after_key))
}

/// Splits a content type into the type without `swift_bytes` and the
/// `swift_bytes` value. Like Swift, the other parameters are re-joined as
/// `;key=value` (whitespace dropped) when the type has any parameter; a
/// type without parameters is returned as it is, not copied.
pub fn extract_swift_bytes(content_type: &str) -> (Cow<'_, str>, Option<String>) {
    let Some(semi) = content_type.find(';') else {
        return (Cow::Borrowed(content_type), None);
    };
    let mut out = content_type[..semi].to_string();
    let params = &content_type[semi..];
    let mut swift_bytes = None;
    let mut pos = 0;
    while pos < params.len() {
        match match_param(&params[pos..]) {
            Some((key, value, used)) => {
                let (key, value) = (key.trim(), value.trim());
                if key == "swift_bytes" {
                    swift_bytes = Some(value.to_string());
                } else {
                    out.push(';');
                    out.push_str(key);
                    out.push('=');
                    out.push_str(value);
                }
                pos += used.max(1);
            }
            None => {
                pos += params[pos..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    (Cow::Owned(out), swift_bytes)
}

/// A random (version 4) UUID in its usual text form.
pub fn uuid4() -> String {
    let mut bytes = [0u8; 16];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !filled {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let mut hasher = Md5::new();
        hasher.update(now.as_nanos().to_le_bytes());
        hasher.update(std::process::id().to_le_bytes());
        hasher.update(format!("{:?}", std::thread::current().id()).as_bytes());
        bytes = hasher.finalize().into();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Serde for [`Timestamp`] as its internal text form. Reading also takes
/// a number, as rows of old databases (and some peers) carry them.
pub(crate) mod serde_ts {
    use apus_core::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ts.internal())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u64),
            Float(f64),
        }
        let parsed = match Raw::deserialize(d)? {
            Raw::Text(t) if t.is_empty() => Some(Timestamp::ZERO),
            Raw::Text(t) => Timestamp::parse(&t).ok(),
            Raw::Int(i) => Timestamp::from_ticks(i.saturating_mul(100_000), 0),
            Raw::Float(f) => Timestamp::from_secs_f64(f),
        };
        parsed.ok_or_else(|| serde::de::Error::custom("invalid timestamp"))
    }
}

/// Serde for SQLite's 0/1 flags: written as an integer (Swift's rows),
/// read from an integer or a boolean.
pub(crate) mod int_bool {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(i64::from(*v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum B {
            I(i64),
            B(bool),
        }
        Ok(match B::deserialize(d)? {
            B::I(i) => i != 0,
            B::B(b) => b,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn timestamps_round_trip() {
        let t1 = ts("1402464677.04188");
        assert_eq!(
            encode_timestamps(&RowTimestamps::same(t1)),
            "1402464677.04188"
        );
        let rt = RowTimestamps {
            data: t1,
            ctype: ts("1402464678.04188"),
            meta: ts("1402464677.04190"),
        };
        let enc = encode_timestamps(&rt);
        assert_eq!(enc, "1402464677.04188+186a0-1869e");
        assert_eq!(decode_timestamps(&enc), Some(rt));
        let with_off = RowTimestamps {
            data: t1.with_offset(10),
            ctype: t1,
            meta: ts("1402464677.04189"),
        };
        let enc = encode_timestamps(&with_off);
        assert_eq!(enc, "1402464677.04188_a+0+1");
        let dec = decode_timestamps(&enc).unwrap();
        assert_eq!(dec.data, t1.with_offset(10));
        assert_eq!(dec.ctype, t1.with_offset(10));
        assert_eq!(dec.meta, ts("1402464677.04189"));
        assert!(decode_timestamps("garbage").is_none());
        assert!(decode_timestamps("1+zz").is_none());
    }

    #[test]
    fn chexor_matches_swift() {
        // python: chexor('0'*32, 'o', '0000000001.00000')
        let h = chexor("00000000000000000000000000000000", "o", "0000000001.00000");
        assert_eq!(h, "74930d4241dd50160de5da0a94a90443");
        let again = chexor(&h, "o", "0000000001.00000");
        assert_eq!(again, "00000000000000000000000000000000");
        assert_eq!(h.len(), 32);
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"a", b"ab", b"abc", b"abcd", b"\x00\xff\x10"] {
            let enc = base64_encode(data);
            assert_eq!(base64_decode(enc.as_bytes()).as_deref(), Some(data));
        }
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert!(base64_decode(b"YWI").is_none());
    }

    #[test]
    fn swift_bytes_extraction() {
        assert_eq!(
            extract_swift_bytes("text/plain"),
            ("text/plain".into(), None)
        );
        assert_eq!(
            extract_swift_bytes("text/plain; charset=utf-8;swift_bytes=12"),
            ("text/plain;charset=utf-8".into(), Some("12".into()))
        );
        assert_eq!(
            extract_swift_bytes("a/b; x=\"q;r\" ; y"),
            ("a/b;x=\"q;r\";y=".into(), None)
        );
    }

    #[test]
    fn uuid_shape() {
        let u = uuid4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
