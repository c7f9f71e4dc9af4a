//! Object metadata and its on-disk encoding, the pickled dict Swift keeps in
//! the `user.swift.metadata*` xattrs.
//!
//! # Text encoding
//!
//! [`Metadata`] holds header values as bytes, exactly as the client sent
//! them (Swift's object metadata is bytes: a value need not be UTF-8 and
//! comes back unchanged), header names as text, and the object's `name`
//! (`/account/container/object`) as UTF-8 text.
//!
//! Swift's Python 3 object server keeps header values as "WSGI strings"
//! (each byte of the raw header as one code point, U+0000 to U+00FF) and
//! UTF-8-encodes those strings when it pickles them: every byte of 0x80 or
//! more is stored as two bytes, so `\xff\xfe` is stored as
//! `\xc3\xbf\xc3\xbe`, and UTF-8 text is stored UTF-8-encoded twice;
//! `name` is stored UTF-8-encoded once. This module writes exactly that and
//! inverts it on reading, so what apus and Swift read from the same file
//! agrees. Metadata written by Python 2 Swift (no `_codecs.encode` in the
//! first 32 bytes) holds the raw header bytes, which Swift reads back as
//! they are, and so does apus.

use crate::pickle::{self, PickleError, Value};

/// An ordered map of metadata keys to values (keys are case-sensitive, as
/// in Swift's dict; insertion order is kept). Values are bytes; [`get`]
/// reads one as text.
///
/// [`get`]: Metadata::get
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, Vec<u8>)>,
}

impl Metadata {
    pub fn new() -> Self {
        Metadata::default()
    }

    /// A value as text: `None` if the key is absent or its value is not
    /// UTF-8 (see [`Metadata::get_bytes`]).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_bytes(key)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A value as the bytes it was sent as.
    pub fn get_bytes(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Looks a key up ignoring ASCII case (HTTP header semantics).
    pub fn get_ignore_case(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_slice())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Option<Vec<u8>> {
        let key = key.into();
        let value = value.into();
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(&mut slot.1, value));
        }
        self.entries.push((key, value));
        None
    }

    pub fn remove(&mut self, key: &str) -> Option<Vec<u8>> {
        let idx = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(idx).1)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str, &[u8]) -> bool) {
        self.entries.retain(|(k, v)| keep(k, v));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `X-Timestamp`, parsed.
    pub fn timestamp(&self) -> Option<apus_core::Timestamp> {
        self.get("X-Timestamp")
            .and_then(|t| apus_core::Timestamp::parse(t).ok())
    }

    pub fn etag(&self) -> Option<&str> {
        self.get("ETag")
    }

    pub fn content_type(&self) -> Option<&str> {
        self.get("Content-Type")
    }

    /// `Content-Length`, parsed.
    pub fn content_length(&self) -> Option<u64> {
        self.get("Content-Length").and_then(|v| v.parse().ok())
    }

    /// The object's `/account/container/object` name.
    pub fn name(&self) -> Option<&str> {
        self.get("name")
    }

    /// Swift's pickled form (protocol 2, as Python 3 Swift writes it).
    pub fn to_pickle(&self) -> Vec<u8> {
        let items = self
            .entries
            .iter()
            .map(|(k, v)| {
                let value = if k == "name" { v.clone() } else { wsgi_utf8(v) };
                (Value::Bytes(wsgi_utf8(k.as_bytes())), Value::Bytes(value))
            })
            .collect();
        pickle::dumps(&Value::Dict(items))
    }

    /// Reads Swift's pickled form (any Swift version, Python 2 or 3).
    pub fn from_pickle(data: &[u8]) -> Result<Metadata, PickleError> {
        let written_by_py3 = data[..data.len().min(32)]
            .windows(14)
            .any(|w| w == b"_codecs\nencode");
        let Value::Dict(items) = pickle::loads(data)? else {
            return Err(PickleError::Malformed {
                pos: 0,
                what: "metadata is not a dict".into(),
            });
        };
        let mut md = Metadata::new();
        for (k, v) in items {
            let key = to_text(&k, written_by_py3);
            let value = if key == "name" {
                to_raw(&v, false)
            } else {
                to_raw(&v, written_by_py3)
            };
            md.insert(key, value);
        }
        Ok(md)
    }
}

/// What Python 3 Swift stores for a header value: the UTF-8 encoding of the
/// WSGI string whose code points are the header's bytes.
fn wsgi_utf8(raw: &[u8]) -> Vec<u8> {
    raw.iter()
        .map(|b| char::from(*b))
        .collect::<String>()
        .into_bytes()
}

/// The WSGI string of a text: one code point per UTF-8 byte.
pub(crate) fn wsgi_str(text: &str) -> String {
    text.bytes().map(char::from).collect()
}

/// The bytes a WSGI string stands for, if every code point fits in a byte.
fn unwsgi(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// Turns a stored value into the bytes it stands for. With `unwsgi`
/// (Python 3 Swift's files), a string whose code points all fit in a byte
/// is taken as a WSGI string and turned back into its bytes; anything
/// else is kept as stored.
fn to_raw(v: &Value, unwsgi_strings: bool) -> Vec<u8> {
    match v {
        Value::Bytes(b) if unwsgi_strings => std::str::from_utf8(b)
            .ok()
            .and_then(unwsgi)
            .unwrap_or_else(|| b.clone()),
        Value::Bytes(b) => b.clone(),
        Value::Str(s) if unwsgi_strings => unwsgi(s).unwrap_or_else(|| s.clone().into_bytes()),
        Value::Str(s) => s.clone().into_bytes(),
        other => to_text(other, false).into_bytes(),
    }
}

/// Turns a stored key or value into text. With `unwsgi`, a string whose code
/// points all fit in a byte is taken as a WSGI string and decoded back.
pub(crate) fn to_text(v: &Value, unwsgi_strings: bool) -> String {
    let raw: String = match v {
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Str(s) => s.clone(),
        Value::Int(i) => return i.to_string(),
        Value::Float(f) => return python_float_repr(*f),
        Value::Bool(true) => return "True".into(),
        Value::Bool(false) => return "False".into(),
        Value::None => return "None".into(),
        other => return format!("{other:?}"),
    };
    if !unwsgi_strings || raw.is_ascii() {
        return raw;
    }
    match unwsgi(&raw).map(String::from_utf8) {
        Some(Ok(s)) => s,
        _ => raw,
    }
}

fn python_float_repr(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

impl<K: Into<String>, V: Into<Vec<u8>>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut md = Metadata::new();
        md.extend(iter);
        md
    }
}

impl<K: Into<String>, V: Into<Vec<u8>>> Extend<(K, V)> for Metadata {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for Metadata {
    type Item = (String, Vec<u8>);
    type IntoIter = std::vec::IntoIter<(String, Vec<u8>)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_ascii_is_double_encoded_except_name() {
        let md: Metadata = [
            ("name", "/a/c/\u{2603}"),
            ("X-Object-Meta-\u{2603}", "\u{e9}t\u{e9}"),
        ]
        .into_iter()
        .collect();
        let data = md.to_pickle();
        assert!(data.windows(6).any(|w| w == b"\xc3\xa2\xc2\x98\xc2\x83"));
        assert_eq!(Metadata::from_pickle(&data).unwrap(), md);
    }

    #[test]
    fn reads_swift_2_31_py3_sample() {
        // From Swift's test_diskfile: python3.8 / swift 2.31 replicated.
        let mut data = Vec::new();
        data.extend_from_slice(b"\x80\x02}q\x00(c_codecs\nencode\nq\x01X\x04\x00\x00\x00nameq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05h\x01X\x18\x00\x00\x00/AUTH_test/\xc3\xa2\xc2\x98\xc2\x83/\xc3\xa2\xc2\x98\xc2\x83q\x06h\x03\x86q\x07Rq\x08h\x01X\x1a\x00\x00\x00X-Object-Meta-\xc3\x83\xc2\xa2\xc3\x82\xc2\x98\xc3\x82\xc2\x83q\th\x03\x86q\nRq\x0bh\x01X\x0c\x00\x00\x00\xc3\x83\xc2\xa2\xc3\x82\xc2\x98\xc3\x82\xc2\x83q\x0ch\x03\x86q\rRq\x0eu.");
        let md = Metadata::from_pickle(&data).unwrap();
        assert_eq!(md.name(), Some("/AUTH_test/\u{2603}/\u{2603}"));
        assert_eq!(md.get("X-Object-Meta-\u{2603}"), Some("\u{2603}"));
    }

    #[test]
    fn python2_metadata_is_raw_utf8() {
        // pickle.dumps({'name': '/a/c/\xe2\x98\x83', 'X-Object-Meta-A':
        // '\xe2\x98\x83'}, 2) under Python 2.
        let data = b"\x80\x02}q\x00(U\x04nameq\x01U\x08/a/c/\xe2\x98\x83q\x02U\x0fX-Object-Meta-Aq\x03U\x03\xe2\x98\x83q\x04u.";
        let md = Metadata::from_pickle(data).unwrap();
        assert_eq!(md.name(), Some("/a/c/\u{2603}"));
        assert_eq!(md.get("X-Object-Meta-A"), Some("\u{2603}"));
    }

    #[test]
    fn non_utf8_values_are_bytes_stored_as_swift_stores_them() {
        let mut md = Metadata::new();
        md.insert("name", "/a/c/o");
        md.insert("X-Object-Meta-Raw", b"\xff\xfe".to_vec());
        let data = md.to_pickle();
        // Each byte as a code point, UTF-8-encoded (c3 bf c3 be), which
        // protocol 2 pickles as `_codecs.encode(<those bytes as latin-1
        // text>, 'latin1')`, the text UTF-8-encoded once more.
        let stored = b"\xc3\x83\xc2\xbf\xc3\x83\xc2\xbe";
        assert!(data.windows(stored.len()).any(|w| w == stored));
        let back = Metadata::from_pickle(&data).unwrap();
        assert_eq!(back.get_bytes("X-Object-Meta-Raw"), Some(&b"\xff\xfe"[..]));
        assert_eq!(back.get("X-Object-Meta-Raw"), None);
        assert!(back.contains_key("X-Object-Meta-Raw"));
        assert_eq!(back, md);
    }

    #[test]
    fn python2_metadata_keeps_raw_bytes() {
        // pickle.dumps({'X-Object-Meta-A': '\xff\xfe'}, 2) under Python 2.
        let data = b"\x80\x02}q\x00U\x0fX-Object-Meta-Aq\x01U\x02\xff\xfeq\x02s.";
        let md = Metadata::from_pickle(data).unwrap();
        assert_eq!(md.get_bytes("X-Object-Meta-A"), Some(&b"\xff\xfe"[..]));
    }

    #[test]
    fn ints_become_decimal_text() {
        let v = Value::Dict(vec![(
            Value::Bytes(b"Content-Length".to_vec()),
            Value::Int(99),
        )]);
        let md = Metadata::from_pickle(&pickle::dumps(&v)).unwrap();
        assert_eq!(md.content_length(), Some(99));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_round_trip(items in proptest::collection::vec(("[a-zA-Z-]{1,20}", proptest::collection::vec(proptest::prelude::any::<u8>(), 0..30)), 0..20)) {
            let mut md = Metadata::new();
            for (k, v) in items {
                md.insert(k, v);
            }
            proptest::prop_assert_eq!(Metadata::from_pickle(&md.to_pickle()).unwrap(), md);
        }

        #[test]
        fn any_text_round_trips(items in proptest::collection::vec(("[a-zA-Z-]{1,20}", "\\PC{0,30}"), 0..20)) {
            let mut md = Metadata::new();
            for (k, v) in items {
                md.insert(k, v);
            }
            proptest::prop_assert_eq!(Metadata::from_pickle(&md.to_pickle()).unwrap(), md);
        }
    }
}
