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
            let e = String::from_utf8_lossy(value.as_bytes());
            let e = e.trim_matches('"');
            set_header(to, "etag", &format!("\"{e}\""));
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
            let version = super::versioning::object_version_query(api, &req).await?;
            let resp = api
                .get_response(
                    &req,
                    method.clone(),
                    Some(&bucket),
                    Some(&key),
                    version.as_deref(),
                    headers,
                    apus_http::empty(),
                )
                .await?;
            let (parts, body) = resp.into_parts();
            let mut r = Response::new(body);
            *r.status_mut() = parts.status;
            s3_object_headers(&parts.headers, r.headers_mut());
            Ok(r)
        }
        _ => Err(S3Error::method_not_allowed(method.as_str(), "OBJECT")),
    }
}
