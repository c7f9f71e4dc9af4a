//! Objects: PUT, GET, HEAD and DELETE of a key, with `x-amz-meta-*`,
//! Content-MD5, ranges, conditional requests and the `response-*`
//! overrides of a GET's headers.

use apus_s3::{ErrorCode, S3Error};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::{empty_response, S3Api, S3Request};
use crate::service::{set_header, Resp};

/// Copies a Swift answer's object headers into S3's: user metadata as
/// `x-amz-meta-*`, the ETag quoted, the rest as is.
pub(crate) fn s3_object_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        let n = name.as_str();
        if let Some(meta) = n.strip_prefix("x-object-meta-") {
            if let Ok(h) = http::HeaderName::from_bytes(format!("x-amz-meta-{meta}").as_bytes()) {
                to.insert(h, value.clone());
            }
        } else if n == "etag" {
            if let Some(e) = s3_etag(from) {
                set_header(to, "etag", &format!("\"{e}\""));
            }
        } else if n == "x-parts-count" {
            to.insert("x-amz-mp-parts-count", value.clone());
        } else if n == "x-object-version-id" {
            to.insert("x-amz-version-id", value.clone());
        } else if n == "x-copied-from-version-id" {
            to.insert("x-amz-copy-source-version-id", value.clone());
        } else if n == "x-backend-content-type"
            && value.as_bytes() == crate::versioned_writes::DELETE_MARKER_CONTENT_TYPE.as_bytes()
        {
            to.insert("x-amz-delete-marker", HeaderValue::from_static("true"));
        } else if n == "x-delete-at" {
            // S3 tells of an object's expiry as if a lifecycle rule set it.
            if let Some(v) = expiration_header(value) {
                to.insert("x-amz-expiration", v);
            }
        } else if matches!(
            n,
            "content-type"
                | "content-length"
                | "content-range"
                | "last-modified"
                | "accept-ranges"
                | "content-encoding"
                | "content-disposition"
                | "cache-control"
                | "expires"
                | "content-language"
                | "x-robots-tag"
        ) {
            to.insert(name.clone(), value.clone());
        }
    }
}

/// `x-amz-expiration` for a Swift `X-Delete-At` (whole seconds since the
/// epoch); nothing for a value that is not one.
fn expiration_header(delete_at: &HeaderValue) -> Option<HeaderValue> {
    let secs: i64 = delete_at.to_str().ok()?.trim().parse().ok()?;
    let date = apus_core::conditional::format_http_date(secs);
    HeaderValue::from_str(&format!(
        "expiry-date=\"{date}\", rule-id=\"swift-object-expiration\""
    ))
    .ok()
}

/// The response headers a GET or HEAD may have replaced by a
/// `response-<header>` query parameter.
const RESPONSE_OVERRIDES: [&str; 6] = [
    "content-type",
    "content-language",
    "expires",
    "cache-control",
    "content-disposition",
    "content-encoding",
];

/// Replaces the headers of a successful GET or HEAD that the request's
/// `response-*` parameters name with the values given.
fn apply_response_overrides(params: &[(String, String)], to: &mut HeaderMap) {
    for name in RESPONSE_OVERRIDES {
        let Some(value) = super::param(params, &format!("response-{name}")) else {
            continue;
        };
        // A value no header can carry (a control character) cannot be
        // sent; the stored one stays.
        if let Ok(v) = HeaderValue::from_str(value) {
            to.insert(name, v);
        }
    }
}

/// What a HEAD with a `Range` answers, since Swift's HEAD ignores it:
/// one satisfiable range makes a 206 with that range's length, a range
/// that misses the object is `InvalidRange`, and an unparsable header or
/// several ranges leave the full answer as it is (Swift's
/// `_gen_head_range_resp`).
fn head_range(range: &str, resp: &mut Resp) -> Result<(), S3Error> {
    let Some(length) = crate::service::header_str(resp.headers(), "content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        return Ok(());
    };
    let Ok(parsed) = apus_core::range::Range::parse(range) else {
        return Ok(());
    };
    match parsed.ranges_for_length(length).as_deref() {
        Some([]) => Err(S3Error::new(ErrorCode::InvalidRange)),
        Some([(start, end)]) => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = resp.headers_mut();
            set_header(
                h,
                "content-range",
                &apus_core::range::content_range_value(*start, *end, length),
            );
            h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(end - start));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The ETag S3 shows for a Swift answer (unquoted): a multipart upload's
/// S3 ETag, a Swift SLO's etag with `-N` (clients take the `-` to mean
/// "not an MD5"), or the object's own.
pub(crate) fn s3_etag(from: &HeaderMap) -> Option<String> {
    let stored = crate::service::header_str(from, super::multi_upload::SYSMETA_ETAG)
        .filter(|e| !e.is_empty());
    if let Some(e) = stored {
        return Some(e.to_string());
    }
    let etag = String::from_utf8_lossy(from.get("etag")?.as_bytes())
        .trim_matches('"')
        .to_string();
    let slo = crate::service::header_str(from, "x-static-large-object")
        .is_some_and(apus_proto::headers::is_true);
    Some(if slo { format!("{etag}-N") } else { etag })
}

/// The Swift headers of an S3 object request: `x-amz-meta-*` as
/// `x-object-meta-*`, and the standard headers Swift stores or obeys.
pub(crate) fn swift_object_headers(from: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in from {
        let n = name.as_str();
        if let Some(meta) = n.strip_prefix("x-amz-meta-") {
            if let Ok(h) = http::HeaderName::from_bytes(format!("x-object-meta-{meta}").as_bytes())
            {
                headers.insert(h, value.clone());
            }
        } else if matches!(
            n,
            "content-length"
                | "content-type"
                | "content-encoding"
                | "content-disposition"
                | "cache-control"
                | "expires"
                | "content-language"
                | "range"
                | "if-match"
                | "if-none-match"
                | "if-modified-since"
                | "if-unmodified-since"
                | "transfer-encoding"
                | "x-robots-tag"
                | "x-delete-at"
                | "x-delete-after"
        ) {
            headers.insert(name.clone(), value.clone());
        }
    }
    headers
}

/// The hex MD5 a `Content-MD5` header carries (base64), or `InvalidDigest`.
pub(crate) fn content_md5_hex(req: &S3Request) -> Result<Option<String>, S3Error> {
    let Some(md5) = req.header("content-md5") else {
        return Ok(None);
    };
    use base64::Engine;
    match base64::engine::general_purpose::STANDARD.decode(md5.trim()) {
        Ok(b) if b.len() == 16 => Ok(Some(b.iter().map(|x| format!("{x:02x}")).collect())),
        _ => Err(S3Error::new(ErrorCode::InvalidDigest)),
    }
}

/// A key longer than Swift takes for an object name (in bytes) is
/// `KeyTooLongError` before anything is sent.
fn check_key_length(key: &str) -> Result<(), S3Error> {
    if key.len() > apus_proto::constraints::MAX_OBJECT_NAME_LENGTH {
        return Err(S3Error::new(ErrorCode::KeyTooLongError));
    }
    Ok(())
}

pub(super) async fn handle(api: &S3Api, mut req: S3Request) -> Result<Resp, S3Error> {
    let bucket = req.bucket_name().to_string();
    let key = req.key_name().to_string();
    let method = req.method.clone();
    let mut headers = swift_object_headers(&req.headers);
    match method {
        Method::PUT => {
            check_key_length(&key)?;
            if req.headers.contains_key("x-amz-copy-source") {
                return super::copy::copy_object(api, req).await;
            }
            if let Some(hex) = content_md5_hex(&req)? {
                set_header(&mut headers, "etag", &hex);
            }
            let body = req.take_body();
            let resp = api
                .get_response(
                    &req,
                    Method::PUT,
                    Some(&bucket),
                    Some(&key),
                    None,
                    headers,
                    body,
                )
                .await?;
            let mut r = empty_response(StatusCode::OK);
            s3_object_headers(resp.headers(), r.headers_mut());
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
            Ok(r)
        }
        Method::DELETE => super::versioning::delete_object(api, &req).await,
        Method::GET | Method::HEAD => {
            if headers.contains_key("if-match") || headers.contains_key("if-none-match") {
                // Conditions are judged against a multipart object's S3
                // ETag.
                crate::service::add_to_header_list(
                    &mut headers,
                    "x-backend-etag-is-at",
                    super::multi_upload::SYSMETA_ETAG,
                );
            }
            let part_number = super::multi_upload::validate_part_number(&req, None, false)?;
            let version = super::versioning::object_version_query(api, &req).await?;
            let query: Vec<String> = part_number
                .map(|n| format!("part-number={n}"))
                .into_iter()
                .chain(version)
                .collect();
            let query = (!query.is_empty()).then(|| query.join("&"));
            let resp = api
                .get_response(
                    &req,
                    method.clone(),
                    Some(&bucket),
                    Some(&key),
                    query.as_deref(),
                    headers,
                    apus_http::empty(),
                )
                .await?;
            let (parts, body) = resp.into_parts();
            let mut r = Response::new(body);
            *r.status_mut() = parts.status;
            s3_object_headers(&parts.headers, r.headers_mut());
            let is_slo = crate::service::header_str(&parts.headers, "x-static-large-object")
                .is_some_and(apus_proto::headers::is_true);
            // SLO ignores a part number for other objects; S3 allows
            // only 1 of them, and answers it as a range of everything.
            if !is_slo && super::multi_upload::validate_part_number(&req, Some(1), true)? == Some(1)
            {
                let len = crate::service::header_str(&parts.headers, "content-length")
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .unwrap_or(0);
                *r.status_mut() = StatusCode::PARTIAL_CONTENT;
                set_header(
                    r.headers_mut(),
                    "content-range",
                    &format!("bytes 0-{}/{len}", len - 1),
                );
            }
            apply_response_overrides(&req.params, r.headers_mut());
            if method == Method::HEAD && r.status() == StatusCode::OK {
                // Only a full answer is narrowed: a 304 has no length
                // to take a range of.
                if let Some(range) = req.header("range") {
                    head_range(range, &mut r)?;
                }
            }
            Ok(r)
        }
        _ => Err(S3Error::method_not_allowed(method.as_str(), "OBJECT")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn full(len: u64) -> Resp {
        let mut r = empty_response(StatusCode::OK);
        r.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        r
    }

    #[test]
    fn keys_longer_than_swift_names_are_too_long() {
        let max = apus_proto::constraints::MAX_OBJECT_NAME_LENGTH;
        assert!(check_key_length(&"x".repeat(max)).is_ok());
        let e = check_key_length(&"x".repeat(max + 1)).unwrap_err();
        assert_eq!(e.code, ErrorCode::KeyTooLongError);
        // Bytes count, not characters.
        let e = check_key_length(&"\u{e9}".repeat(max / 2 + 1)).unwrap_err();
        assert_eq!(e.code, ErrorCode::KeyTooLongError);
    }

    #[test]
    fn response_parameters_replace_their_headers_only() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert("cache-control", HeaderValue::from_static("no-cache"));
        apply_response_overrides(
            &params(&[
                ("response-content-type", "text/plain"),
                ("response-content-disposition", "inline"),
                ("response-content-encoding", "gzip"),
                ("response-expires", "Thu, 01 Dec 1994 16:00:00 GMT"),
                // Not one of the six: ignored.
                ("response-etag", "nope"),
                // No header can carry it: the stored value stays.
                ("response-cache-control", "a\nb"),
            ]),
            &mut h,
        );
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
        assert_eq!(get("content-type"), Some("text/plain"));
        assert_eq!(get("content-disposition"), Some("inline"));
        assert_eq!(get("content-encoding"), Some("gzip"));
        assert_eq!(get("expires"), Some("Thu, 01 Dec 1994 16:00:00 GMT"));
        assert_eq!(get("cache-control"), Some("no-cache"));
        assert_eq!(get("etag"), None);
        assert_eq!(get("content-language"), None);
    }

    #[test]
    fn delete_at_becomes_an_expiration() {
        let mut to = HeaderMap::new();
        let mut from = HeaderMap::new();
        from.insert("x-delete-at", HeaderValue::from_static("1700000000"));
        from.insert(
            "x-robots-tag",
            HeaderValue::from_static("googlebot: noarchive"),
        );
        s3_object_headers(&from, &mut to);
        assert_eq!(
            to.get("x-amz-expiration").and_then(|v| v.to_str().ok()),
            Some(
                "expiry-date=\"Tue, 14 Nov 2023 22:13:20 GMT\", \
                 rule-id=\"swift-object-expiration\""
            )
        );
        assert_eq!(
            to.get("x-robots-tag").and_then(|v| v.to_str().ok()),
            Some("googlebot: noarchive")
        );
        assert!(to.get("x-delete-at").is_none());
        assert!(expiration_header(&HeaderValue::from_static("soon")).is_none());
    }

    #[test]
    fn expiry_and_robots_headers_go_to_swift() {
        let mut h = HeaderMap::new();
        for n in ["x-delete-at", "x-delete-after", "x-robots-tag"] {
            h.insert(n, HeaderValue::from_static("1"));
        }
        h.insert("authorization", HeaderValue::from_static("AWS a:b"));
        let sw = swift_object_headers(&h);
        for n in ["x-delete-at", "x-delete-after", "x-robots-tag"] {
            assert!(sw.contains_key(n), "{n}");
        }
        assert!(!sw.contains_key("authorization"));
    }

    #[test]
    fn a_head_range_narrows_the_answer() {
        let cases = [
            ("bytes=1-5", "bytes 1-5/10", "5"),
            ("bytes=5-", "bytes 5-9/10", "5"),
            ("bytes=-5", "bytes 5-9/10", "5"),
            ("bytes=8-20", "bytes 8-9/10", "2"),
        ];
        for (range, content_range, len) in cases {
            let mut r = full(10);
            head_range(range, &mut r).unwrap();
            assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
            let get = |n: &str| r.headers().get(n).and_then(|v| v.to_str().ok());
            assert_eq!(get("content-range"), Some(content_range), "{range}");
            assert_eq!(get("content-length"), Some(len), "{range}");
        }
        // Unparsable, or several ranges: the full answer.
        for range in ["bytes=x-y", "items=1-2", "bytes=0-1,3-4"] {
            let mut r = full(10);
            head_range(range, &mut r).unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{range}");
            assert!(r.headers().get("content-range").is_none(), "{range}");
        }
        let e = head_range("bytes=10-", &mut full(10)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRange);
    }
}
