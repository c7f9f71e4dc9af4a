//! SLO manifests, both forms: the list a client PUTs with
//! `?multipart-manifest=put` (checked as Swift's
//! `parse_and_validate_input` checks it, with its messages), and the list
//! the proxy stores and reads back (`name`, `bytes`, `hash`,
//! `content_type`, `last_modified`, optional `range` and `sub_slo`, or
//! inline `data`). Pure functions: no I/O.

use apus_core::range::Range;
use base64::Engine;
use md5::{Digest, Md5};
use serde_json::{Map, Value};

/// Swift's defaults for `max_manifest_segments` and `max_manifest_size`.
pub const DEFAULT_MAX_MANIFEST_SEGMENTS: usize = 1000;
pub const DEFAULT_MAX_MANIFEST_SIZE: usize = 8 * 1024 * 1024;

/// One entry of a manifest a client PUTs, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputSegment {
    Object {
        /// `/container/object` (or `container/object`), as given.
        path: String,
        etag: Option<String>,
        size_bytes: Option<i64>,
        /// One byte range of the object, not yet resolved against its
        /// length.
        range: Option<Range>,
    },
    /// Inline bytes (`data`, base64 in the manifest).
    Data(Vec<u8>),
}

/// Why a PUT manifest is refused (400).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputError {
    NotJson,
    NotList,
    /// One line per problem, as Swift lists them.
    Problems(Vec<String>),
}

impl InputError {
    /// The response body Swift sends, and whether it is `text/plain`
    /// (the other two are swob's default `text/html`).
    pub fn body(&self) -> (String, bool) {
        match self {
            InputError::NotJson => ("Manifest must be valid JSON.\n".into(), false),
            InputError::NotList => ("Manifest must be a list.\n".into(), false),
            InputError::Problems(lines) => (lines.iter().map(|l| format!("{l}\n")).collect(), true),
        }
    }
}

/// Python's `int()` of a JSON value, as Swift applies it to `size_bytes`.
fn python_int(v: &Value) -> Option<i64> {
    match v {
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 9.2e18)
                .map(|f| f.trunc() as i64)
        }),
        Value::String(s) => {
            let t = s.trim();
            let (neg, digits) = match t.as_bytes().first() {
                Some(b'-') => (true, &t[1..]),
                Some(b'+') => (false, &t[1..]),
                _ => (false, t),
            };
            // Underscores may only sit between digits.
            if digits.is_empty()
                || digits.starts_with('_')
                || digits.ends_with('_')
                || digits.contains("__")
                || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_')
            {
                return None;
            }
            let v: i64 = digits.replace('_', "").parse().ok()?;
            Some(if neg { -v } else { v })
        }
        _ => None,
    }
}

/// Swift's `strict_b64decode`: only the base64 alphabet (padding at the
/// ends aside), and enough padding.
pub fn strict_b64decode(s: &str) -> Option<Vec<u8>> {
    let core = s.trim_matches('=');
    if !core
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return None;
    }
    // Python decodes the leading characters and needs the padding that
    // completes the last quantum; more padding than that is ignored.
    let trailing = s.len() - s.trim_end_matches('=').len();
    let needed = (4 - core.len() % 4) % 4;
    if core.len() % 4 == 1 || trailing < needed || s.starts_with('=') && !core.is_empty() {
        return None;
    }
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(core)
        .ok()
}

pub fn b64encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Python's `repr` of a JSON object key list entry: `json.dumps(key)`.
fn json_str(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

/// Checks a manifest a client PUTs to `/<version>/<account>/...` at
/// `req_path` (decoded), as Swift does.
pub fn parse_input(body: &[u8], req_path: &str) -> Result<Vec<InputSegment>, InputError> {
    let parsed: Value = serde_json::from_slice(body).map_err(|_| InputError::NotJson)?;
    let Value::Array(entries) = parsed else {
        return Err(InputError::NotList);
    };
    let mut parts = req_path.splitn(4, '/').skip(1);
    let (version, account) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let count = entries.len();
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(count);
    for (index, entry) in entries.into_iter().enumerate() {
        match check_entry(index, count, entry, version, account, req_path) {
            Ok(seg) => out.push(seg),
            Err(problem) => problems.push(problem),
        }
    }
    if !out.is_empty()
        && problems.is_empty()
        && out.iter().all(|s| matches!(s, InputSegment::Data(_)))
    {
        problems.push("Inline data segments require at least one object-backed segment.".into());
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(InputError::Problems(problems))
    }
}

fn check_entry(
    index: usize,
    count: usize,
    entry: Value,
    version: &str,
    account: &str,
    req_path: &str,
) -> Result<InputSegment, String> {
    let Value::Object(entry) = entry else {
        return Err(format!("Index {index}: not a JSON object"));
    };
    let kind = if entry.contains_key("data") {
        "data"
    } else if entry.contains_key("path") {
        "path"
    } else {
        return Err(format!(
            "Index {index}: expected keys to include one of 'data' or 'path'"
        ));
    };
    let allowed: &[&str] = match kind {
        "data" => &["data"],
        _ => &["path", "range", "etag", "size_bytes"],
    };
    let mut extra: Vec<&String> = entry
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    if !extra.is_empty() {
        extra.sort();
        let list: Vec<String> = extra.iter().map(|k| json_str(k)).collect();
        return Err(format!(
            "Index {index}: extraneous keys {}",
            list.join(", ")
        ));
    }
    if kind == "data" {
        let data = entry
            .get("data")
            .and_then(Value::as_str)
            .and_then(strict_b64decode)
            .ok_or_else(|| format!("Index {index}: data must be valid base64"))?;
        if data.is_empty() {
            return Err(format!(
                "Index {index}: too small; each segment must be at least 1 byte."
            ));
        }
        return Ok(InputSegment::Data(data));
    }
    let Some(Value::String(path)) = entry.get("path") else {
        return Err(format!("Index {index}: \"path\" must be a string"));
    };
    let etag = match entry.get("etag") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(e.clone()),
        Some(_) => {
            return Err(format!(
                "Index {index}: \"etag\" must be a string or null (if provided)"
            ))
        }
    };
    if !path.trim_matches('/').contains('/') {
        return Err(format!(
            "Index {index}: path does not refer to an object. Path must be of the form /container/object."
        ));
    }
    let size_bytes = match entry.get("size_bytes") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let size = python_int(v).ok_or_else(|| format!("Index {index}: invalid size_bytes"))?;
            if size < 1 && index + 1 != count {
                return Err(format!(
                    "Index {index}: too small; each segment must be at least 1 byte."
                ));
            }
            Some(size)
        }
    };
    if format!("/{version}/{account}/{}", path.trim_start_matches('/')) == req_path {
        return Err(format!(
            "Index {index}: manifest must not include itself as a segment"
        ));
    }
    let range = match entry.get("range") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::String(r)) if r.is_empty() => None,
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => None,
        Some(v) => {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let range = Range::parse(&format!("bytes={text}"))
                .map_err(|_| format!("Index {index}: invalid range"))?;
            if range.specs.len() > 1 {
                return Err(format!("Index {index}: multiple ranges (only one allowed)"));
            }
            if let Some(size) = size_bytes {
                let n = range
                    .ranges_for_length(u64::try_from(size).unwrap_or(0))
                    .map_or(0, |r| r.len());
                if n != 1 {
                    return Err(format!("Index {index}: unsatisfiable range"));
                }
            }
            Some(range)
        }
    };
    Ok(InputSegment::Object {
        path: path.clone(),
        etag,
        size_bytes,
        range,
    })
}

/// One entry of a stored manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredSegment {
    Object {
        /// `/container/object`.
        name: String,
        /// The segment object's whole length.
        bytes: u64,
        hash: String,
        content_type: String,
        last_modified: String,
        /// The inclusive byte range used of it.
        range: Option<(u64, u64)>,
        /// The segment is itself an SLO manifest.
        sub_slo: bool,
    },
    Data(Vec<u8>),
}

impl StoredSegment {
    /// How many bytes of the large object this entry makes.
    pub fn length(&self) -> u64 {
        match self {
            StoredSegment::Data(d) => d.len() as u64,
            StoredSegment::Object {
                range: Some((first, last)),
                ..
            } => last.saturating_sub(*first).saturating_add(1),
            StoredSegment::Object { bytes, .. } => *bytes,
        }
    }

    /// The entry as Swift stores it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        match self {
            StoredSegment::Data(d) => {
                m.insert("data".into(), Value::String(b64encode(d)));
            }
            StoredSegment::Object {
                name,
                bytes,
                hash,
                content_type,
                last_modified,
                range,
                sub_slo,
            } => {
                m.insert("name".into(), Value::String(name.clone()));
                m.insert("bytes".into(), Value::from(*bytes));
                m.insert("hash".into(), Value::String(hash.clone()));
                m.insert("content_type".into(), Value::String(content_type.clone()));
                m.insert("last_modified".into(), Value::String(last_modified.clone()));
                if let Some((first, last)) = range {
                    m.insert("range".into(), Value::String(format!("{first}-{last}")));
                }
                if *sub_slo {
                    m.insert("sub_slo".into(), Value::Bool(true));
                }
            }
        }
        Value::Object(m)
    }

    /// The entry in the form a client PUTs (`?multipart-manifest=get&format=raw`).
    pub fn to_input_json(&self) -> Value {
        let mut m = Map::new();
        match self {
            StoredSegment::Data(d) => {
                m.insert("data".into(), Value::String(b64encode(d)));
            }
            StoredSegment::Object {
                name,
                bytes,
                hash,
                range,
                ..
            } => {
                m.insert("path".into(), Value::String(name.clone()));
                m.insert("etag".into(), Value::String(hash.clone()));
                m.insert("size_bytes".into(), Value::from(*bytes));
                if let Some((first, last)) = range {
                    m.insert("range".into(), Value::String(format!("{first}-{last}")));
                }
            }
        }
        Value::Object(m)
    }
}

/// A stored manifest's body, one JSON list.
pub fn render_stored(segments: &[StoredSegment]) -> String {
    Value::Array(segments.iter().map(StoredSegment::to_json).collect()).to_string()
}

/// Reads a stored manifest (written by apus or by Swift). `None` when it
/// is not a list of entries Swift could have written.
pub fn parse_stored(body: &[u8]) -> Option<Vec<StoredSegment>> {
    let Value::Array(entries) = serde_json::from_slice(body).ok()? else {
        return None;
    };
    entries.into_iter().map(parse_stored_entry).collect()
}

fn parse_stored_entry(entry: Value) -> Option<StoredSegment> {
    let Value::Object(m) = entry else {
        return None;
    };
    if let Some(data) = m.get("data") {
        return strict_b64decode(data.as_str()?).map(StoredSegment::Data);
    }
    let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    let name = text("name")?;
    let mut bytes = match m.get("bytes")? {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    let sub_slo = match m.get("sub_slo") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on" | "t" | "y"
        ),
        _ => false,
    };
    let content_type = text("content_type").unwrap_or_default();
    // A nested manifest's entry may carry its total in swift_bytes.
    if sub_slo {
        if let Some(total) = content_type
            .split(';')
            .filter_map(|p| p.trim().strip_prefix("swift_bytes="))
            .find_map(|v| v.parse::<u64>().ok())
        {
            bytes = total;
        }
    }
    let range = match text("range") {
        Some(r) => {
            let (a, b) = r.split_once('-')?;
            let (first, last): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            if last < first {
                return None;
            }
            Some((first, last))
        }
        None => None,
    };
    Some(StoredSegment::Object {
        name,
        bytes,
        hash: text("hash").unwrap_or_default(),
        content_type,
        last_modified: text("last_modified").unwrap_or_default(),
        range,
        sub_slo,
    })
}

/// Swift's SLO etag: the md5 of each entry's part, in order (an object's
/// etag, `<etag>:<first>-<last>;` for a range of one, the md5 of inline
/// data).
pub fn slo_etag(segments: &[StoredSegment]) -> String {
    let mut md5 = Md5::new();
    for s in segments {
        match s {
            StoredSegment::Data(d) => md5.update(format!("{:x}", Md5::digest(d)).as_bytes()),
            StoredSegment::Object {
                hash,
                range: Some((first, last)),
                ..
            } => md5.update(format!("{hash}:{first}-{last};").as_bytes()),
            StoredSegment::Object { hash, .. } => md5.update(hash.as_bytes()),
        }
    }
    format!("{:x}", md5.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/v1/AUTH_test/c/manifest";

    fn problems(body: &str) -> Vec<String> {
        match parse_input(body.as_bytes(), PATH) {
            Err(InputError::Problems(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn valid_manifests_parse() {
        let segs = parse_input(
            br#"[{"path": "/c/a", "etag": null, "size_bytes": "3"},
                 {"path": "c/b", "etag": "abc", "range": "1-2"},
                 {"data": "aGk="}]"#,
            PATH,
        )
        .unwrap();
        assert_eq!(segs.len(), 3);
        assert!(matches!(
            &segs[0],
            InputSegment::Object {
                size_bytes: Some(3),
                etag: None,
                ..
            }
        ));
        assert!(matches!(
            &segs[1],
            InputSegment::Object { range: Some(_), .. }
        ));
        assert_eq!(segs[2], InputSegment::Data(b"hi".to_vec()));
        assert_eq!(parse_input(b"[]", PATH), Ok(vec![]));
    }

    #[test]
    fn swifts_messages_for_bad_manifests() {
        assert_eq!(parse_input(b"{", PATH), Err(InputError::NotJson));
        assert_eq!(parse_input(b"{}", PATH), Err(InputError::NotList));
        assert_eq!(problems("[1]"), ["Index 0: not a JSON object"]);
        assert_eq!(
            problems(r#"[{"foo": 1}]"#),
            ["Index 0: expected keys to include one of 'data' or 'path'"]
        );
        assert_eq!(
            problems(r#"[{"path": "c/o", "zz": 1, "aa": 2}]"#),
            [r#"Index 0: extraneous keys "aa", "zz""#]
        );
        assert_eq!(
            problems(r#"[{"path": 5}]"#),
            [r#"Index 0: "path" must be a string"#]
        );
        assert_eq!(
            problems(r#"[{"path": "c/o", "etag": 5}]"#),
            [r#"Index 0: "etag" must be a string or null (if provided)"#]
        );
        assert_eq!(
            problems(r#"[{"path": "/c/"}]"#),
            ["Index 0: path does not refer to an object. Path must be of the form /container/object."]
        );
        assert_eq!(
            problems(r#"[{"path": "c/o", "size_bytes": "x"}]"#),
            ["Index 0: invalid size_bytes"]
        );
        assert_eq!(
            problems(r#"[{"path": "c/o", "size_bytes": 0}, {"path": "c/p"}]"#),
            ["Index 0: too small; each segment must be at least 1 byte."]
        );
        assert_eq!(
            problems(r#"[{"path": "/c/manifest"}]"#),
            ["Index 0: manifest must not include itself as a segment"]
        );
        assert_eq!(
            problems(r#"[{"path": "c/o", "range": "x"}]"#),
            ["Index 0: invalid range"]
        );
        assert_eq!(
            problems(r#"[{"path": "c/o", "range": "1-2,4-5"}]"#),
            ["Index 0: multiple ranges (only one allowed)"]
        );
        assert_eq!(
            problems(r#"[{"path": "c/o", "range": "10-", "size_bytes": 5}]"#),
            ["Index 0: unsatisfiable range"]
        );
        assert_eq!(
            problems(r#"[{"data": "!!"}, {"data": ""}]"#),
            [
                "Index 0: data must be valid base64",
                "Index 1: too small; each segment must be at least 1 byte."
            ]
        );
        assert_eq!(
            problems(r#"[{"data": "aGk="}]"#),
            ["Inline data segments require at least one object-backed segment."]
        );
        // The last segment may claim no bytes.
        assert!(parse_input(
            br#"[{"path": "c/o"}, {"path": "c/p", "size_bytes": 0}]"#,
            PATH
        )
        .is_ok());
    }

    #[test]
    fn size_bytes_is_read_as_python_int_reads_it() {
        for (v, want) in [
            ("12", Some(12)),
            ("\" 7 \"", Some(7)),
            ("\"1_000\"", Some(1000)),
            ("2.9", Some(2)),
            ("true", Some(1)),
            ("\"1.5\"", None),
            ("[]", None),
        ] {
            let v: Value = serde_json::from_str(v).unwrap();
            assert_eq!(python_int(&v), want, "{v}");
        }
    }

    #[test]
    fn base64_is_strict_about_characters_and_padding() {
        assert_eq!(strict_b64decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(strict_b64decode("aGk==="), Some(b"hi".to_vec()));
        assert_eq!(strict_b64decode("aGk"), None);
        assert_eq!(strict_b64decode("a Gk="), None);
        assert_eq!(strict_b64decode("aG=k"), None);
        assert_eq!(strict_b64decode(""), Some(Vec::new()));
    }

    #[test]
    fn stored_manifests_round_trip_with_swifts_etag() {
        let segs = vec![
            StoredSegment::Object {
                name: "/c/a".into(),
                bytes: 10,
                hash: "0123".into(),
                content_type: "text/plain".into(),
                last_modified: "2026-01-01T00:00:00.000000".into(),
                range: None,
                sub_slo: false,
            },
            StoredSegment::Object {
                name: "/c/b".into(),
                bytes: 10,
                hash: "4567".into(),
                content_type: "application/octet-stream;swift_bytes=99".into(),
                last_modified: "2026-01-01T00:00:00.000000".into(),
                range: Some((2, 5)),
                sub_slo: true,
            },
            StoredSegment::Data(b"xyz".to_vec()),
        ];
        let body = render_stored(&segs);
        let back = parse_stored(body.as_bytes()).unwrap();
        // The nested manifest's total comes from swift_bytes.
        assert!(matches!(&back[1], StoredSegment::Object { bytes: 99, .. }));
        assert_eq!(back[0], segs[0]);
        assert_eq!(back[2], segs[2]);
        assert_eq!(
            segs.iter().map(StoredSegment::length).collect::<Vec<_>>(),
            [10, 4, 3]
        );
        let mut md5 = Md5::new();
        md5.update(b"0123");
        md5.update(b"4567:2-5;");
        md5.update(format!("{:x}", Md5::digest(b"xyz")).as_bytes());
        assert_eq!(slo_etag(&segs), format!("{:x}", md5.finalize()));
        assert_eq!(parse_stored(b"{}"), None);
        assert_eq!(parse_stored(br#"[{"name": "/c/a"}]"#), None);
    }
}
