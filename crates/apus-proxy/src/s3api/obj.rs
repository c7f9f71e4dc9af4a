//! Objects: PUT, GET, HEAD and DELETE of a key, with `x-amz-meta-*`,
//! Content-MD5, ranges and conditional requests.

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
        ) {
            to.insert(name.clone(), value.clone());
        }
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

pub(super) async fn handle(api: &S3Api, mut req: S3Request) -> Result<Resp, S3Error> {
    let bucket = req.bucket_name().to_string();
    let key = req.key_name().to_string();
    let method = req.method.clone();
    let mut headers = swift_object_headers(&req.headers);
    match method {
        Method::PUT => {
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
            Ok(r)
        }
        _ => Err(S3Error::method_not_allowed(method.as_str(), "OBJECT")),
    }
}
