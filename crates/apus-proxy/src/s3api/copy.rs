//! CopyObject (`PUT` with `x-amz-copy-source`) and the copy-source checks
//! UploadPartCopy shares (Swift's `S3Request.check_copy_source`). The
//! copy itself is Swift's: a PUT with `X-Copy-From`, which the copy
//! filter serves.

use apus_s3::{ErrorCode, S3Error};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::multi_upload::{xml_time_of_http_date, SYSMETA_ETAG};
use super::obj::{s3_etag, swift_object_headers};
use super::{esc, quote, xml_response, S3Api, S3Request, XMLNS, XML_DECL};
use crate::service::{add_to_header_list, header_str, set_header, Resp};

/// The object a copy reads, as checked.
pub(crate) struct CopySource {
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    /// The source's HEAD answer's headers.
    pub head: HeaderMap,
}

/// Headers a `COPY` metadata directive keeps from the source rather than
/// the request (Swift's `copy_exclude_headers`).
const DIRECTIVE_HEADERS: [&str; 7] = [
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-type",
    "expires",
    "cache-control",
    "x-robots-tag",
];

fn copy_source_argument(value: &str, message: &'static str) -> S3Error {
    S3Error::with_message(ErrorCode::InvalidArgument, message)
        .detail("ArgumentName", "X-Amz-Copy-Source")
        .detail("ArgumentValue", value)
}

/// The bucket, key and version id an `x-amz-copy-source` names
/// (`[/]bucket/key[?versionId=v]`, URL-encoded): a query with anything
/// but one `versionId` is `InvalidArgument`.
pub(crate) fn parse_copy_source(
    value: &str,
) -> Result<(String, Option<String>, Option<String>), S3Error> {
    let (path, qs) = value.split_once('?').unwrap_or((value, ""));
    let pairs: Vec<(String, String)> = qs
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| {
                let s = s.replace('+', " ");
                apus_proto::path::percent_decode(&s).unwrap_or(s)
            };
            (d(k), d(v))
        })
        .collect();
    let version_id = match pairs.as_slice() {
        [] => None,
        [(k, v)] if k == "versionId" => Some(v.clone()),
        _ => {
            return Err(copy_source_argument(
                value,
                "Unsupported copy source parameter.",
            ))
        }
    };
    let path = apus_proto::path::percent_decode(path).unwrap_or_else(|_| path.to_string());
    let path = path.strip_prefix('/').unwrap_or(&path);
    let (bucket, key) = match path.split_once('/') {
        Some((b, k)) => (b.to_string(), Some(k.to_string())),
        None => (path.to_string(), None),
    };
    Ok((bucket, key, version_id))
}

/// The checks every request gets (s3api's `_validate_headers`): a copy
/// source names a bucket and a key, a metadata directive is `COPY` or
/// `REPLACE`.
pub(crate) fn validate_copy_headers(req: &S3Request) -> Result<(), S3Error> {
    if let Some(value) = req.header("x-amz-copy-source") {
        let path = apus_proto::path::percent_decode(value).unwrap_or_else(|_| value.to_string());
        let path = path.strip_prefix('/').unwrap_or(&path);
        let named = path
            .split_once('/')
            .is_some_and(|(b, k)| !b.is_empty() && !k.is_empty());
        if !named {
            return Err(S3Error::with_message(
                ErrorCode::InvalidArgument,
                "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            )
            .detail("ArgumentName", "x-amz-copy-source")
            .detail("ArgumentValue", value));
        }
    }
    if let Some(value) = req.header("x-amz-metadata-directive") {
        if value != "COPY" && value != "REPLACE" {
            return Err(S3Error::with_message(
                ErrorCode::InvalidArgument,
                "Unknown metadata directive.",
            )
            .detail("ArgumentName", "x-amz-metadata-directive")
            .detail("ArgumentValue", value));
        }
    }
    Ok(())
}

/// Swift's `check_copy_source`: with `x-amz-copy-source`, the source is
/// HEADed with the `x-amz-copy-source-if-*` conditions (judged against
/// the S3 ETag for multipart objects); a copy onto itself must replace
/// the metadata.
pub(crate) async fn check_copy_source(
    api: &S3Api,
    req: &S3Request,
    dest_container: &str,
    dest_obj: &str,
) -> Result<Option<CopySource>, S3Error> {
    let Some(value) = req.header("x-amz-copy-source") else {
        return Ok(None);
    };
    let (bucket, key, version_id) = parse_copy_source(value)?;
    // A source without a key names the request's own key, as in Swift.
    let key = key.unwrap_or_else(|| req.key_name().to_string());

    let mut headers = HeaderMap::new();
    for (name, v) in &req.headers {
        if let Some(cond) = name.as_str().strip_prefix("x-amz-copy-source-if-") {
            set_header(
                &mut headers,
                &format!("if-{cond}"),
                v.to_str().unwrap_or(""),
            );
        }
    }
    add_to_header_list(&mut headers, "x-backend-etag-is-at", SYSMETA_ETAG);
    add_to_header_list(
        &mut headers,
        "x-backend-etag-is-at",
        "x-object-sysmeta-swift3-etag",
    );
    let query = version_id
        .as_ref()
        .map(|v| format!("version-id={}", quote(v)));
    let head = api
        .get_response(
            req,
            Method::HEAD,
            Some(&bucket),
            Some(&key),
            query.as_deref(),
            headers,
            apus_http::empty(),
        )
        .await?;
    if head.status() == StatusCode::NOT_MODIFIED {
        return Err(S3Error::new(ErrorCode::PreconditionFailed));
    }
    let directive = req.header("x-amz-metadata-directive").unwrap_or("COPY");
    if dest_container == bucket && dest_obj == key && directive == "COPY" && version_id.is_none() {
        return Err(S3Error::with_message(
            ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself \
             without changing the object's metadata, storage class, website redirect location \
             or encryption attributes.",
        ));
    }
    Ok(Some(CopySource {
        bucket,
        key,
        version_id,
        head: head.headers().clone(),
    }))
}

/// The Swift PUT of a copy: `X-Copy-From` the source, no body, and the
/// metadata directive applied (`REPLACE` takes the request's metadata
/// only, `COPY` the source's).
pub(crate) async fn copy_put(
    api: &S3Api,
    req: &S3Request,
    container: &str,
    obj: &str,
    source: &CopySource,
    mut headers: HeaderMap,
) -> Result<Resp, S3Error> {
    set_header(
        &mut headers,
        "x-copy-from",
        &quote(&format!("/{}/{}", source.bucket, source.key)),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
    headers.remove("transfer-encoding");
    headers.remove("etag");
    if req.header("x-amz-metadata-directive") == Some("REPLACE") {
        set_header(&mut headers, "x-fresh-metadata", "True");
    } else {
        for h in DIRECTIVE_HEADERS {
            headers.remove(h);
        }
        let meta: Vec<_> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("x-object-meta-"))
            .cloned()
            .collect();
        for k in meta {
            headers.remove(k);
        }
    }
    let query = source
        .version_id
        .as_ref()
        .map(|v| format!("version-id={}", quote(v)));
    api.get_response(
        req,
        Method::PUT,
        Some(container),
        Some(obj),
        query.as_deref(),
        headers,
        apus_http::empty(),
    )
    .await
}

/// CopyObject: the copy and its `CopyObjectResult`.
pub(super) async fn copy_object(api: &S3Api, req: S3Request) -> Result<Resp, S3Error> {
    let bucket = req.bucket_name().to_string();
    let key = req.key_name().to_string();
    if key.len() > apus_proto::constraints::MAX_OBJECT_NAME_LENGTH {
        return Err(S3Error::new(ErrorCode::KeyTooLongError));
    }
    if let Some(rng) = req.header("x-amz-copy-source-range") {
        return Err(
            S3Error::with_message(ErrorCode::InvalidArgument, "Illegal copy header")
                .detail("ArgumentName", "x-amz-copy-source-range")
                .detail("ArgumentValue", rng),
        );
    }
    let Some(source) = check_copy_source(api, &req, &bucket, &key).await? else {
        return Err(S3Error::new(ErrorCode::InternalError));
    };
    let mut headers = swift_object_headers(&req.headers);
    if !headers.contains_key(http::header::CONTENT_TYPE) {
        set_header(&mut headers, "content-type", "binary/octet-stream");
    }
    let resp = copy_put(api, &req, &bucket, &key, &source, headers).await?;
    let h = resp.headers();
    let etag = s3_etag(h).unwrap_or_default();
    let body = format!(
        "{XML_DECL}<CopyObjectResult xmlns=\"{XMLNS}\"><LastModified>{}</LastModified>\
         <ETag>\"{}\"</ETag></CopyObjectResult>",
        xml_time_of_http_date(header_str(h, "last-modified")),
        esc(&etag)
    );
    let mut r = xml_response(StatusCode::OK, body);
    for name in ["last-modified", "x-copied-from-version-id"] {
        if let Some(v) = h.get(name) {
            let to = if name == "last-modified" {
                name
            } else {
                "x-amz-copy-source-version-id"
            };
            r.headers_mut().insert(to, v.clone());
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources_name_a_bucket_a_key_and_maybe_a_version() {
        assert_eq!(
            parse_copy_source("/b/k%20x/y").unwrap(),
            ("b".into(), Some("k x/y".into()), None)
        );
        assert_eq!(
            parse_copy_source("b/k?versionId=null").unwrap(),
            ("b".into(), Some("k".into()), Some("null".into()))
        );
        assert_eq!(parse_copy_source("b").unwrap(), ("b".into(), None, None));
        for bad in ["/b/k?nonsense", "/b/k?versionId=null&nonsense", "/b/k?x=1"] {
            let e = parse_copy_source(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument);
            assert_eq!(e.detail_text("ArgumentValue"), Some(bad));
        }
    }
}
