//! Erasure-coded object PUTs between an apus proxy and apus object
//! servers.
//!
//! Swift's proxy writes a fragment archive as a multipart MIME body and
//! commits it with a second interim `100 Continue` carrying headers, which
//! hyper cannot send. apus uses two ordinary requests to the same path
//! instead:
//!
//! 1. **Fragment PUT**: `X-Backend-Storage-Policy-Index` naming an EC
//!    policy, `X-Timestamp`, [`X_OBJECT_SYSMETA_EC_FRAG_INDEX`], the
//!    object's metadata headers and the archive as the body. Metadata known
//!    only once the body is sent (the object's ETag and length in
//!    [`X_OBJECT_SYSMETA_EC_ETAG`] / [`X_OBJECT_SYSMETA_EC_CONTENT_LENGTH`],
//!    the archive's `Etag`, any other `X-Object-Sysmeta-*`, and
//!    `X-Backend-Container-Update-Override-*`) comes as HTTP trailers of a
//!    chunked body ([`is_trailer_allowed`] says which names); a body with a
//!    `Content-Length` has no trailers, so the same names are also read
//!    from the request head. The object server writes the archive
//!    non-durable and answers `201` with `X-Backend-Durable: no`; it sends
//!    no container update yet.
//! 2. **Commit**: a `PUT` with the same policy, `X-Timestamp` and fragment
//!    index, [`X_BACKEND_EC_COMMIT`]` : yes` and an empty body. The object
//!    server makes that fragment durable, answers `201` (`404` when the
//!    fragment is not on disk), and sends the container update then, with
//!    the object's size and ETag from the EC sysmeta. The commit carries
//!    the container-update headers (`X-Container-*`).
//!
//! **Replication** (the reconstructor reverting or rebuilding a fragment):
//! a `PUT` with `X-Backend-Replication: True` and
//! [`X_BACKEND_SSYNC_FRAG_INDEX`] naming the index it carries is written
//! and made durable at once, as Swift's object server does for a PUT that
//! is not multiphase, unless it carries [`X_BACKEND_NO_COMMIT`]` : True`
//! (the fragment was not durable where it came from). It sends no
//! container update. The missing check (`apus_proto::replication`) on an
//! EC policy names the index it offers in [`X_BACKEND_SSYNC_FRAG_INDEX`]
//! too, and the receiver compares that index's fragment.
//!
//! GET and HEAD take Swift's `X-Backend-Fragment-Preferences`
//! ([`parse_fragment_preferences`]) and answer with `X-Backend-Fragments`
//! ([`fragments_header`]), `X-Backend-Data-Timestamp` and
//! `X-Backend-Durable-Timestamp`, as Swift's object server does.

use apus_core::Timestamp;

pub const X_OBJECT_SYSMETA_EC_FRAG_INDEX: &str = "x-object-sysmeta-ec-frag-index";
pub const X_OBJECT_SYSMETA_EC_ETAG: &str = "x-object-sysmeta-ec-etag";
pub const X_OBJECT_SYSMETA_EC_CONTENT_LENGTH: &str = "x-object-sysmeta-ec-content-length";
pub const X_OBJECT_SYSMETA_EC_SCHEME: &str = "x-object-sysmeta-ec-scheme";
pub const X_OBJECT_SYSMETA_EC_SEGMENT_SIZE: &str = "x-object-sysmeta-ec-segment-size";
/// `yes` on the commit request of a fragment (apus only).
pub const X_BACKEND_EC_COMMIT: &str = "x-backend-ec-commit";
/// The fragment PUT's answer: `no` until the commit (apus only).
pub const X_BACKEND_DURABLE: &str = "x-backend-durable";
pub const X_BACKEND_FRAGMENT_PREFERENCES: &str = "x-backend-fragment-preferences";
pub const X_BACKEND_FRAGMENTS: &str = "x-backend-fragments";
/// The fragment index a replication request or missing check is about
/// (Swift's ssync header; apus also takes it on GET and HEAD to read one
/// index of a handoff).
pub const X_BACKEND_SSYNC_FRAG_INDEX: &str = "x-backend-ssync-frag-index";
/// `True` on a replication PUT of a fragment that must stay non-durable.
pub const X_BACKEND_NO_COMMIT: &str = "x-backend-no-commit";

/// Whether a fragment PUT may carry `name` (lower case) as a trailer:
/// the archive's `etag`, object sysmeta, and container-update overrides.
pub fn is_trailer_allowed(name: &str) -> bool {
    name == "etag"
        || name.starts_with("x-object-sysmeta-")
        || name.starts_with(crate::headers::X_BACKEND_CONTAINER_UPDATE_OVERRIDE_PREFIX)
}

/// A fragment index as Swift's `validate_fragment_index` reads it: a
/// whole, non-negative number below `width` (`ndata + nparity`).
pub fn parse_frag_index(text: &str, width: u32) -> Option<u32> {
    let t = text.trim();
    let digits = t.strip_prefix('+').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u32>().ok().filter(|i| *i < width)
}

/// One entry of `X-Backend-Fragment-Preferences`: fragments at
/// `timestamp` are acceptable except the `exclude`d indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentPreference {
    pub timestamp: Timestamp,
    pub exclude: Vec<u32>,
}

/// Why fragment preferences were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad fragment preferences: {0}")]
pub struct BadFragmentPreferences(pub String);

/// Parses `X-Backend-Fragment-Preferences`: a JSON list of
/// `{"timestamp": <ts>, "exclude": [<frag index>...]}`. Text that is not
/// JSON counts as absent (`Ok(None)`), as Swift's `safe_json_loads`; JSON
/// of the wrong shape, a bad timestamp or an index outside `0..width` is
/// an error (Swift fails the request).
pub fn parse_fragment_preferences(
    text: &str,
    width: u32,
) -> Result<Option<Vec<FragmentPreference>>, BadFragmentPreferences> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return Ok(None);
    };
    if value.is_null() {
        return Ok(None);
    }
    let bad = |why: &str| BadFragmentPreferences(why.to_string());
    let list = value.as_array().ok_or_else(|| bad("not a list"))?;
    let mut out = Vec::with_capacity(list.len());
    for pref in list {
        let obj = pref
            .as_object()
            .ok_or_else(|| bad("entry is not an object"))?;
        let ts_text = match obj.get("timestamp") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => return Err(bad("entry without a timestamp")),
        };
        let timestamp = Timestamp::parse(ts_text.trim()).map_err(|_| bad("bad timestamp"))?;
        let exclude = obj
            .get("exclude")
            .and_then(|e| e.as_array())
            .ok_or_else(|| bad("entry without an exclude list"))?
            .iter()
            .map(|v| match v {
                serde_json::Value::Number(n) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|i| *i < width),
                serde_json::Value::String(s) => parse_frag_index(s, width),
                _ => None,
            })
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| bad("bad fragment index"))?;
        out.push(FragmentPreference { timestamp, exclude });
    }
    Ok(Some(out))
}

/// `X-Backend-Fragments`: a JSON object from each timestamp (internal
/// form) to the fragment indexes present at it; `None` when there are none
/// (Swift then sends no header).
pub fn fragments_header(fragments: &[(Timestamp, Vec<u32>)]) -> Option<String> {
    if fragments.is_empty() {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = fragments
        .iter()
        .map(|(ts, idx)| (ts.internal(), serde_json::Value::from(idx.clone())))
        .collect();
    Some(serde_json::Value::Object(map).to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frag_index() {
        assert_eq!(parse_frag_index("3", 6), Some(3));
        assert_eq!(parse_frag_index(" 0 ", 6), Some(0));
        assert_eq!(parse_frag_index("6", 6), None);
        assert_eq!(parse_frag_index("-1", 6), None);
        assert_eq!(parse_frag_index("x", 6), None);
        assert_eq!(parse_frag_index("", 6), None);
        assert_eq!(parse_frag_index("99999999999999999999", 6), None);
    }

    #[test]
    fn preferences() {
        assert_eq!(parse_fragment_preferences("nope", 6), Ok(None));
        assert_eq!(parse_fragment_preferences("[]", 6), Ok(Some(vec![])));
        let p = parse_fragment_preferences(
            r#"[{"timestamp": "0000000001.00000", "exclude": [1, 2]}]"#,
            6,
        )
        .unwrap();
        assert_eq!(p.unwrap()[0].exclude, vec![1, 2]);
        assert!(parse_fragment_preferences(r#"{"a": 1}"#, 6).is_err());
        assert!(parse_fragment_preferences(r#"[{"timestamp": "x", "exclude": []}]"#, 6).is_err());
        assert!(parse_fragment_preferences(r#"[{"timestamp": "1", "exclude": [9]}]"#, 6).is_err());
        assert!(parse_fragment_preferences(r#"[{"exclude": []}]"#, 6).is_err());
    }

    #[test]
    fn fragments() {
        assert_eq!(fragments_header(&[]), None);
        let ts = Timestamp::parse("1.5").unwrap();
        assert_eq!(
            fragments_header(&[(ts, vec![0, 3])]).unwrap(),
            format!("{{\"{}\":[0,3]}}", ts.internal())
        );
    }
}
