//! Swift's recon vocabulary: the cache files storage daemons leave their
//! pass figures in, the keys each `/recon/<what>` answer reads from them,
//! and the rule by which one daemon's figures are merged into a file other
//! daemons write too.
//!
//! The files hold one JSON object each (`object.recon`,
//! `container.recon`, `account.recon`, `drive.recon`, `relinker.recon`
//! under the node's `recon_cache_path`). The storage servers read them
//! when asked (`apus-server`'s `recon`); the daemons write them after
//! each pass (`apus-daemons`' `recon`). Everything here is pure.

use serde_json::{Map, Value};

/// The object daemons' file (replicator, reconstructor, auditor,
/// updater, expirer, and the async pending count).
pub const OBJECT_FILE: &str = "object.recon";
/// The container daemons' file.
pub const CONTAINER_FILE: &str = "container.recon";
/// The account daemons' file.
pub const ACCOUNT_FILE: &str = "account.recon";
/// Drive audit errors (Swift's `swift-drive-audit`; apus writes none).
pub const DRIVE_FILE: &str = "drive.recon";
/// Relinker progress (Swift's `swift-object-relinker`; apus writes none).
pub const RELINKER_FILE: &str = "relinker.recon";

/// The Swift release whose behaviour apus follows, reported by
/// `/recon/version` (as `/info` reports it).
pub const SWIFT_VERSION: &str = "2.38.3";

/// The cache file a server or daemon of `server_type` (`object`,
/// `container`, `account`) writes.
pub fn server_file(server_type: &str) -> Option<&'static str> {
    match server_type {
        "object" => Some(OBJECT_FILE),
        "container" => Some(CONTAINER_FILE),
        "account" => Some(ACCOUNT_FILE),
        _ => None,
    }
}

/// Merges one key of an update into a cache entry, as Swift's
/// `put_recon_cache_entry`: a non-object value replaces what was there;
/// an empty object removes the key; any other object is merged one level
/// deep, its members replacing those of the same name, and a member whose
/// value is an empty object removing that member.
pub fn put_entry(entry: &mut Map<String, Value>, key: &str, item: Value) {
    let Value::Object(members) = item else {
        entry.insert(key.to_string(), item);
        return;
    };
    if members.is_empty() {
        entry.remove(key);
        return;
    }
    let slot = entry
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    if let Value::Object(existing) = slot {
        for (k, v) in members {
            if v.as_object().is_some_and(Map::is_empty) {
                existing.remove(&k);
            } else {
                existing.insert(k, v);
            }
        }
    }
}

/// Merges every key of `update` into `entry` (see [`put_entry`]).
pub fn merge(entry: &mut Map<String, Value>, update: Map<String, Value>) {
    for (k, v) in update {
        put_entry(entry, &k, v);
    }
}

/// A cache file's text as an entry: what is not a JSON object (an empty
/// file, a torn or foreign one) counts as empty, as Swift recreates it.
pub fn parse_entry(text: &str) -> Map<String, Value> {
    // Swift reads the first line only; apus writes one line.
    let first = text.lines().next().unwrap_or("");
    match serde_json::from_str(first) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// An entry as a file's text: keys sorted (`serde_json`'s maps are), one
/// line, non-ASCII escaped, as Swift writes it.
pub fn entry_text(entry: &Map<String, Value>) -> String {
    let mut out = String::new();
    push_value(&mut out, &Value::Object(entry.clone()));
    out.push('\n');
    out
}

/// A value as Python's `json.dumps` writes it by default: `", "` and
/// `": "` separators, non-ASCII as `\uXXXX`, whole floats with `.0`.
pub fn to_python_json(v: &Value) -> String {
    let mut out = String::new();
    push_value(&mut out, v);
    out
}

fn push_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => push_number(out, n),
        Value::String(s) => apus_core::pyjson::push_json_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                push_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            // Sorted whatever order the map keeps (Swift sorts its files).
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                apus_core::pyjson::push_json_str(out, k);
                out.push_str(": ");
                push_value(out, item);
            }
            out.push('}');
        }
    }
}

/// Python's `float.__repr__` for what JSON can carry: the shortest text
/// that reads back the same, with `.0` on whole numbers and an exponent
/// from 1e16 up or below 1e-4.
fn push_number(out: &mut String, n: &serde_json::Number) {
    if n.is_i64() || n.is_u64() {
        out.push_str(&n.to_string());
        return;
    }
    let Some(f) = n.as_f64() else {
        out.push_str(&n.to_string());
        return;
    };
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Rust writes `1e16` and `1.5e-5`; Python `1e+16` and `1.5e-05`.
        let text = format!("{f:e}");
        let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        out.push_str(mantissa);
        out.push('e');
        out.push(sign);
        if digits.len() < 2 {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let text = format!("{f}");
        out.push_str(&text);
        if !text.contains('.') {
            out.push_str(".0");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn merge_replaces_scalars_and_merges_objects_one_level() {
        let mut entry = obj(json!({
            "replication_time": 1.5,
            "replication_stats": {"attempted": 3, "failure": 1, "failure_nodes": {"a": {"d1": 1}}},
            "async_pending": 7,
        }));
        merge(
            &mut entry,
            obj(json!({
                "replication_time": 2.5,
                "replication_stats": {"attempted": 4, "failure_nodes": {"b": {"d2": 2}}},
            })),
        );
        assert_eq!(
            Value::Object(entry),
            json!({
                "replication_time": 2.5,
                // One level: "failure" stays, "failure_nodes" is replaced whole.
                "replication_stats": {"attempted": 4, "failure": 1, "failure_nodes": {"b": {"d2": 2}}},
                "async_pending": 7,
            })
        );
    }

    #[test]
    fn empty_objects_delete() {
        let mut entry = obj(json!({
            "object_reconstruction_per_disk": {"d1": {"pid": 1}},
            "object_auditor_stats_ZBF": {"d1d2": {"passes": 1}, "d3": {"passes": 2}},
            "scalar": 1,
        }));
        merge(
            &mut entry,
            obj(json!({
                "object_reconstruction_per_disk": {},
                "object_auditor_stats_ZBF": {"d1d2": {}},
                "scalar": {"now": "an object"},
            })),
        );
        assert_eq!(
            Value::Object(entry),
            json!({
                "object_auditor_stats_ZBF": {"d3": {"passes": 2}},
                "scalar": {"now": "an object"},
            })
        );
    }

    #[test]
    fn unreadable_files_are_empty_entries() {
        assert!(parse_entry("").is_empty());
        assert!(parse_entry("{\"a\": 1").is_empty());
        assert!(parse_entry("[1, 2]").is_empty());
        assert_eq!(parse_entry("{\"a\": 1}\ngarbage")["a"], json!(1));
    }

    #[test]
    fn text_is_python_json_with_sorted_keys() {
        let entry = obj(json!({
            "z": 1,
            "a": {"y": null, "b": [1.0, 2.5, "é"]},
            "t": 1700000000.25,
            "big": 1e16,
            "tiny": 0.00001,
            "m": 0.0001,
        }));
        assert_eq!(
            entry_text(&entry),
            "{\"a\": {\"b\": [1.0, 2.5, \"\\u00e9\"], \"y\": null}, \"big\": 1e+16, \
             \"m\": 0.0001, \"t\": 1700000000.25, \"tiny\": 1e-05, \"z\": 1}\n"
        );
        assert_eq!(parse_entry(&entry_text(&entry)), entry);
    }

    #[test]
    fn server_files() {
        assert_eq!(server_file("object"), Some("object.recon"));
        assert_eq!(server_file("container"), Some("container.recon"));
        assert_eq!(server_file("account"), Some("account.recon"));
        assert_eq!(server_file("proxy"), None);
    }
}
