//! Object metadata and its on-disk encoding, the pickled dict Swift keeps in
//! the `user.swift.metadata*` xattrs.
//!
//! # Text encoding
//!
//! [`Metadata`] holds real text: header names and values as the client sent
//! them (UTF-8), and the object's `name` (`/account/container/object`).
//! Swift's Python 3 object server keeps header values as "WSGI strings"
//! (each byte of the raw header as one code point) and UTF-8-encodes those
//! strings when it pickles them, so a non-ASCII header byte sequence is
//! stored UTF-8-encoded twice; `name` is stored UTF-8-encoded once. This
//! module writes exactly that and inverts it on reading, so what apus and
//! Swift read from the same file agrees. Metadata written by Python 2 Swift
//! (no `_codecs.encode` in the first 32 bytes) holds the raw header bytes
//! and is decoded as UTF-8. Bytes that are not valid UTF-8 are replaced
//! (`U+FFFD`): the API is text, as HTTP header values are for apus.

use crate::pickle::{self, PickleError, Value};

/// An ordered map of metadata keys to values (keys are case-sensitive, as
/// in Swift's dict; insertion order is kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, String)>,
}

impl Metadata {
    pub fn new() -> Self {
        Metadata::default()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Looks a key up ignoring ASCII case (HTTP header semantics).
    pub fn get_ignore_case(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let key = key.into();
        let value = value.into();
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(&mut slot.1, value));
        }
        self.entries.push((key, value));
        None
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let idx = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(idx).1)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.entries.retain(|(k, v)| keep(k, v));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
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
                let value = if k == "name" {
                    v.as_bytes().to_vec()
                } else {
                    wsgi_utf8(v)
                };
                (Value::Bytes(wsgi_utf8(k)), Value::Bytes(value))
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
                to_text(&v, false)
            } else {
                to_text(&v, written_by_py3)
            };
            md.insert(key, value);
        }
        Ok(md)
    }
}

/// What Python 3 Swift stores for a header value: the UTF-8 encoding of the
/// WSGI string whose code points are the header's bytes.
fn wsgi_utf8(text: &str) -> Vec<u8> {
    wsgi_str(text).into_bytes()
}

/// The WSGI string of a text: one code point per UTF-8 byte.
pub(crate) fn wsgi_str(text: &str) -> String {
    text.bytes().map(char::from).collect()
}

/// Turns a stored key or value into text. With `unwsgi`, a string whose code
/// points all fit in a byte is taken as a WSGI string and decoded back.
pub(crate) fn to_text(v: &Value, unwsgi: bool) -> String {
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
    if !unwsgi || raw.is_ascii() {
        return raw;
    }
    let bytes: Option<Vec<u8>> = raw
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect();
    match bytes.map(String::from_utf8) {
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

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut md = Metadata::new();
        md.extend(iter);
        md
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for Metadata {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for Metadata {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
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
        fn any_text_round_trips(items in proptest::collection::vec(("[a-zA-Z-]{1,20}", "\\PC{0,30}"), 0..20)) {
            let mut md = Metadata::new();
            for (k, v) in items {
                md.insert(k, v);
            }
            proptest::prop_assert_eq!(Metadata::from_pickle(&md.to_pickle()).unwrap(), md);
        }
    }
}
