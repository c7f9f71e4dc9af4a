//! Bucket versioning on Swift's object versioning, as Swift's s3api
//! maps it:
//!
//! - Get/PutBucketVersioning (`?versioning`) read and set the container's
//!   `X-Versions-Enabled`; a bucket never configured has no `Status`.
//! - ListObjectVersions (`GET ?versions`) is the container's `?versions`
//!   listing: `Version` and `DeleteMarker` entries with their version id
//!   (`null` for an object written while versioning was off) and
//!   `IsLatest`.
//! - `versionId` on an object GET, HEAD or DELETE is Swift's `version-id`;
//!   the answers carry `x-amz-version-id` (and `x-amz-delete-marker` for
//!   a delete that wrote a marker). A version of a bucket that was never
//!   versioned is `NoSuchVersion` (GET, HEAD) or already gone (DELETE).
//! - Deleting the current version makes the newest remaining one current
//!   again, unless that is a delete marker.

use std::fmt::Write as _;

use apus_core::timestamp::Timestamp;
use apus_s3::{ErrorCode, S3Error};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::multi_upload::{listing_etag, s3_xml_time};
use super::{
    empty_response, esc, quote, read_json, xml_body, xml_response, S3Api, S3Request, XMLNS,
    XML_DECL,
};
use crate::service::{header_str, set_header, Resp};
use crate::versioned_writes::DELETE_MARKER_CONTENT_TYPE;

/// The largest VersioningConfiguration document read.
const MAX_PUT_VERSIONING_BODY_SIZE: usize = 10240;
/// The largest `max-keys` (and any integer parameter) S3 accepts.
const MAX_32BIT_INT: u64 = 2_147_483_647;

const SYSMETA_VERSIONS_ENABLED: &str = "x-container-sysmeta-versions-enabled";
const SYSMETA_VERSIONS_CONTAINER: &str = "x-container-sysmeta-versions-container";

/// `?versioning` on a bucket (a key in the path is ignored).
pub(super) async fn handle(api: &S3Api, mut req: S3Request) -> Result<Resp, S3Error> {
    match req.method {
        Method::GET => get(api, &req).await,
        Method::PUT => put(api, &mut req).await,
        _ => Err(S3Error::method_not_allowed(
            req.method.as_str(),
            "VERSIONING",
        )),
    }
}

async fn container_head(api: &S3Api, req: &S3Request) -> Result<Resp, S3Error> {
    api.get_response(
        req,
        Method::HEAD,
        req.bucket.as_deref(),
        None,
        None,
        HeaderMap::new(),
        apus_http::empty(),
    )
    .await
}

async fn get(api: &S3Api, req: &S3Request) -> Result<Resp, S3Error> {
    let head = container_head(api, req).await?;
    let flag = header_str(head.headers(), SYSMETA_VERSIONS_ENABLED)
        .or_else(|| header_str(head.headers(), "x-versions-enabled"))
        .filter(|v| !v.is_empty());
    let body = match flag {
        None => format!("{XML_DECL}<VersioningConfiguration xmlns=\"{XMLNS}\"/>"),
        Some(v) => format!(
            "{XML_DECL}<VersioningConfiguration xmlns=\"{XMLNS}\"><Status>{}</Status>\
             </VersioningConfiguration>",
            if apus_proto::headers::is_true(v) {
                "Enabled"
            } else {
                "Suspended"
            }
        ),
    };
    Ok(xml_response(StatusCode::OK, body))
}

async fn put(api: &S3Api, req: &mut S3Request) -> Result<Resp, S3Error> {
    if !api.object_versioning {
        return Err(S3Error::new(ErrorCode::NotImplemented));
    }
    let Some(doc) = xml_body::read(req, MAX_PUT_VERSIONING_BODY_SIZE).await? else {
        // Swift fails here with an internal error; S3 names the problem.
        return Err(S3Error::new(ErrorCode::MissingRequestBodyError));
    };
    let enabled = parse_configuration(&doc)?;
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-versions-enabled",
        HeaderValue::from_static(if enabled { "true" } else { "false" }),
    );
    api.get_response(
        req,
        Method::POST,
        req.bucket.as_deref(),
        None,
        None,
        headers,
        apus_http::empty(),
    )
    .await?;
    Ok(empty_response(StatusCode::OK))
}

/// A VersioningConfiguration document: whether it enables versioning
/// (`Enabled`) or suspends it (`Suspended`). Anything outside S3's
/// schema (another root, unknown or repeated elements, another status,
/// an `MfaDelete` other than `Enabled`/`Disabled`) is `MalformedXML`;
/// a document without a status is S3's
/// `IllegalVersioningConfigurationException` (Swift fails on it with an
/// internal error).
pub(crate) fn parse_configuration(doc: &[u8]) -> Result<bool, S3Error> {
    let malformed = || S3Error::new(ErrorCode::MalformedXML);
    let root = apus_s3::xml::parse(doc)?;
    if root.name != "VersioningConfiguration" || !xml_body::no_text(&root) {
        return Err(malformed());
    }
    let mut status: Option<&str> = None;
    let mut mfa = false;
    for child in &root.children {
        if !child.children.is_empty() {
            return Err(malformed());
        }
        match child.name.as_str() {
            "Status" if status.is_none() => status = Some(child.text.as_str()),
            // The schema compares values as tokens (whitespace folded).
            "MfaDelete" if !mfa && matches!(child.text.trim(), "Enabled" | "Disabled") => {
                mfa = true
            }
            _ => return Err(malformed()),
        }
    }
    match status {
        None => Err(S3Error::with_message(
            ErrorCode::IllegalVersioningConfigurationException,
            "The Versioning element must be specified",
        )),
        Some("Enabled") => Ok(true),
        Some("Suspended") => Ok(false),
        Some(_) => Err(malformed()),
    }
}

/// `InvalidArgument` naming the argument, with S3's message for it.
fn invalid_argument(name: &str, value: &str, message: &str) -> S3Error {
    S3Error::with_message(ErrorCode::InvalidArgument, message.to_string())
        .detail("ArgumentName", name)
        .detail("ArgumentValue", value)
}

/// An integer query parameter as s3api reads it (Swift's
/// `get_validated_param`): 0 to 2^31-1, `default` when absent.
pub(crate) fn validated_param(req: &S3Request, name: &str, default: u64) -> Result<u64, S3Error> {
    let Some(v) = req.param(name) else {
        return Ok(default);
    };
    let not_int = || {
        invalid_argument(
            name,
            v,
            &format!("Provided {name} not an integer or within integer range"),
        )
    };
    let n: i128 = v.trim().parse().map_err(|_| not_int())?;
    if n < 0 {
        return Err(invalid_argument(
            name,
            v,
            &format!("Argument {name} must be an integer between 0 and {MAX_32BIT_INT}"),
        ));
    }
    if n > i128::from(MAX_32BIT_INT) {
        return Err(not_int());
    }
    Ok(n as u64)
}

/// ListObjectVersions.
pub(super) async fn list_versions(api: &S3Api, req: &S3Request) -> Result<Resp, S3Error> {
    let limit = api.config.max_bucket_listing;
    let tag_max_keys = validated_param(req, "max-keys", limit as u64)?;
    let max_keys = (tag_max_keys as usize).min(limit);
    match req.param("encoding-type") {
        None | Some("url") => {}
        Some(v) => {
            return Err(invalid_argument(
                "encoding-type",
                v,
                "Invalid Encoding Method specified in Request",
            ))
        }
    }
    let mut query = vec![
        ("format", "json".to_string()),
        ("limit", (max_keys + 1).to_string()),
    ];
    for name in ["prefix", "delimiter"] {
        if let Some(v) = req.param(name) {
            query.push((name, v.to_string()));
        }
    }
    query.push(("versions", req.param("versions").unwrap_or("").to_string()));
    let version_marker = req.param("version-id-marker");
    match (req.param("key-marker"), version_marker) {
        (Some(key_marker), vm) => {
            query.push(("marker", key_marker.to_string()));
            if let Some(vm) = vm {
                if vm != "null" && Timestamp::parse(vm).is_err() {
                    return Err(invalid_argument(
                        "version-id-marker",
                        vm,
                        "Invalid version id specified",
                    ));
                }
                query.push(("version_marker", vm.to_string()));
            }
        }
        (None, Some(vm)) => {
            return Err(invalid_argument(
                "version-id-marker",
                vm,
                "A version-id marker cannot be specified without a key marker.",
            ))
        }
        (None, None) => {}
    }
    let query: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect();
    let bucket = req.bucket_name();
    let resp = api
        .get_response(
            req,
            Method::GET,
            Some(bucket),
            None,
            Some(&query.join("&")),
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await?;
    let listing = read_json(resp).await.ok_or_else(|| {
        S3Error::with_message(ErrorCode::InternalError, "unreadable container listing")
    })?;
    let mut entries = listing.as_array().cloned().unwrap_or_default();
    let truncated = max_keys > 0 && entries.len() > max_keys;
    entries.truncate(max_keys);
    Ok(xml_response(
        StatusCode::OK,
        versions_result(
            bucket,
            &req.user_id,
            &req.params,
            &entries,
            tag_max_keys,
            truncated,
            api.object_versioning,
        ),
    ))
}

/// The ListVersionsResult document for (at most `max-keys`) entries of a
/// Swift `?versions` listing, in the listing's order.
pub(crate) fn versions_result(
    bucket: &str,
    owner: &str,
    params: &[(String, String)],
    entries: &[serde_json::Value],
    tag_max_keys: u64,
    truncated: bool,
    versioning: bool,
) -> String {
    let param = |n: &str| super::param(params, n);
    let url = param("encoding-type") == Some("url");
    let enc = |s: &str| if url { esc(&quote(s)) } else { esc(s) };
    let mut out = format!(
        "{XML_DECL}<ListVersionsResult xmlns=\"{XMLNS}\"><Name>{}</Name>",
        esc(bucket)
    );
    let _ = write!(
        out,
        "<Prefix>{}</Prefix>",
        enc(param("prefix").unwrap_or(""))
    );
    let _ = write!(
        out,
        "<KeyMarker>{}</KeyMarker>",
        enc(param("key-marker").unwrap_or(""))
    );
    let _ = write!(
        out,
        "<VersionIdMarker>{}</VersionIdMarker>",
        esc(param("version-id-marker").unwrap_or(""))
    );
    if truncated {
        if let Some(last) = entries.last() {
            // Swift gives the next markers as they are, even for `url`.
            let (key, version) = match (last.get("name"), last.get("subdir")) {
                (Some(n), _) => (
                    n.as_str().unwrap_or(""),
                    last.get("version_id")
                        .and_then(|v| v.as_str())
                        .filter(|v| !v.is_empty())
                        .unwrap_or("null"),
                ),
                (None, Some(s)) => (s.as_str().unwrap_or(""), "null"),
                (None, None) => ("", "null"),
            };
            let _ = write!(
                out,
                "<NextKeyMarker>{}</NextKeyMarker><NextVersionIdMarker>{}</NextVersionIdMarker>",
                esc(key),
                esc(version)
            );
        }
    }
    let _ = write!(out, "<MaxKeys>{tag_max_keys}</MaxKeys>");
    if let Some(d) = param("delimiter") {
        let _ = write!(out, "<Delimiter>{}</Delimiter>", enc(d));
    }
    if url {
        out.push_str("<EncodingType>url</EncodingType>");
    }
    let _ = write!(out, "<IsTruncated>{truncated}</IsTruncated>");
    for e in entries {
        if let Some(subdir) = e.get("subdir").and_then(|s| s.as_str()) {
            let _ = write!(
                out,
                "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
                enc(subdir)
            );
            continue;
        }
        let name = e.get("name").and_then(|n| n.as_str()).unwrap_or("");
        let marker =
            e.get("content_type").and_then(|c| c.as_str()) == Some(DELETE_MARKER_CONTENT_TYPE);
        let tag = if marker { "DeleteMarker" } else { "Version" };
        let version = e
            .get("version_id")
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .unwrap_or("null");
        // Without object versioning every listed object is current.
        let latest = !versioning || e.get("is_latest").and_then(|l| l.as_bool()) == Some(true);
        let _ = write!(
            out,
            "<{tag}><Key>{}</Key><VersionId>{}</VersionId><IsLatest>{latest}</IsLatest>\
             <LastModified>{}</LastModified>",
            enc(name),
            esc(version),
            s3_xml_time(
                e.get("last_modified")
                    .and_then(|t| t.as_str())
                    .unwrap_or("")
            )
        );
        if !marker {
            let _ = write!(
                out,
                "<ETag>{}</ETag><Size>{}</Size>",
                esc(&listing_etag(e)),
                e.get("bytes").and_then(|b| b.as_u64()).unwrap_or(0)
            );
        }
        let _ = write!(
            out,
            "<Owner><ID>{o}</ID><DisplayName>{o}</DisplayName></Owner>",
            o = esc(owner)
        );
        if !marker {
            out.push_str("<StorageClass>STANDARD</StorageClass>");
        }
        let _ = write!(out, "</{tag}>");
    }
    out.push_str("</ListVersionsResult>");
    out
}

/// Whether the bucket has (or had) versioning: its versions container is
/// recorded. A missing bucket is `NoSuchBucket`.
async fn has_versions_container(api: &S3Api, req: &S3Request) -> Result<bool, S3Error> {
    let head = container_head(api, req).await?;
    Ok(header_str(head.headers(), SYSMETA_VERSIONS_CONTAINER).is_some_and(|v| !v.is_empty()))
}

/// The `version-id` query of an object GET or HEAD with `versionId`:
/// a real version id needs object versioning, and a bucket that was
/// never versioned has no such version.
pub(crate) async fn object_version_query(
    api: &S3Api,
    req: &S3Request,
) -> Result<Option<String>, S3Error> {
    let Some(version) = req.param("versionId") else {
        return Ok(None);
    };
    if version != "null" {
        if !api.object_versioning {
            return Err(S3Error::new(ErrorCode::NotImplemented));
        }
        if !has_versions_container(api, req).await? {
            return Err(no_such_version(req.key_name(), version));
        }
    }
    Ok(Some(format!("version-id={}", quote(version))))
}

pub(crate) fn no_such_version(key: &str, version: &str) -> S3Error {
    S3Error::new(ErrorCode::NoSuchVersion)
        .detail("Key", key)
        .detail("VersionId", version)
}

/// DeleteObject, with or without `versionId`, as Swift's s3api does it:
/// an SLO goes with its segments, and deleting the current version makes
/// the newest remaining one current.
pub(crate) async fn delete_object(api: &S3Api, req: &S3Request) -> Result<Resp, S3Error> {
    let bucket = req.bucket_name();
    let key = req.key_name();
    let version = req.param("versionId");
    if let Some(v) = version.filter(|v| *v != "null") {
        if !api.object_versioning {
            return Err(S3Error::new(ErrorCode::NotImplemented));
        }
        if !has_versions_container(api, req).await? {
            // Never versioned: no such version to delete, which S3
            // answers as done.
            let mut r = empty_response(StatusCode::NO_CONTENT);
            set_header(r.headers_mut(), "x-amz-version-id", v);
            return Ok(r);
        }
    }
    let mut query = match super::multi_delete::manifest_delete_query(api, req, key, version).await {
        Ok(q) => q,
        Err(e) if e.code == ErrorCode::NoSuchKey => Vec::new(),
        Err(e) => return Err(e),
    };
    if let Some(v) = version {
        query.push(("version-id", v.to_string()));
        query.push(("symlink", "get".to_string()));
    }
    let manifest = query.iter().any(|(k, _)| *k == "multipart-manifest");
    let mut headers = super::obj::swift_object_headers(&req.headers);
    // A client's type and length describe no body here.
    for h in ["content-type", "content-length", "transfer-encoding"] {
        headers.remove(h);
    }
    let result = api
        .get_response(
            req,
            Method::DELETE,
            Some(bucket),
            Some(key),
            Some(&query_string(&query)),
            headers,
            apus_http::empty(),
        )
        .await;
    let resp = match result {
        Ok(r) => r,
        Err(e) if e.code == ErrorCode::NoSuchKey => {
            // Gone already, unless the bucket itself is missing.
            if api.bucket_exists(req, bucket).await {
                return Ok(empty_response(StatusCode::NO_CONTENT));
            }
            return Err(S3Error::no_such_bucket(bucket));
        }
        Err(e) => return Err(e),
    };
    let (parts, body) = resp.into_parts();
    if manifest && parts.status == StatusCode::OK {
        // The segments went synchronously; their report is not S3's.
        let _ = apus_http::body::collect_limited(body, super::MAX_LISTING).await;
    }
    let current = header_str(&parts.headers, "x-object-current-version-id").map(str::to_string);
    let mut out = empty_response(StatusCode::NO_CONTENT);
    s3_delete_headers(&parts.headers, out.headers_mut());
    if current.as_deref() == Some("null") {
        restore_on_delete(api, req).await?;
    }
    Ok(out)
}

/// The S3 headers of a Swift DELETE answer: the version it removed or
/// the delete marker it wrote.
fn s3_delete_headers(from: &HeaderMap, to: &mut HeaderMap) {
    if let Some(v) = header_str(from, "x-object-version-id") {
        set_header(to, "x-amz-version-id", v);
    }
    if header_str(from, "x-backend-content-type") == Some(DELETE_MARKER_CONTENT_TYPE) {
        set_header(to, "x-amz-delete-marker", "true");
    }
}

/// `k=v&...` with the values quoted, keys sorted as Swift sends them.
pub(crate) fn query_string(query: &[(&str, String)]) -> String {
    let mut q: Vec<&(&str, String)> = query.iter().collect();
    q.sort_by(|a, b| a.0.cmp(b.0));
    q.iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// After the current version was deleted: the newest remaining version
/// of the key becomes current again, unless it is a delete marker.
/// Whether one was restored. (Swift answers the delete with the
/// restoring PUT's headers, so that `x-amz-version-id` names the restored
/// version; S3 names the deleted one, which the delete's own answer
/// does.)
async fn restore_on_delete(api: &S3Api, req: &S3Request) -> Result<bool, S3Error> {
    let bucket = req.bucket_name();
    let key = req.key_name();
    let query = format!("format=json&prefix={}&versions=True", quote(key));
    let listing = api
        .get_response(
            req,
            Method::GET,
            Some(bucket),
            None,
            Some(&query),
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await?;
    if listing.status() != StatusCode::OK {
        return Ok(false);
    }
    let items = read_json(listing).await.unwrap_or(serde_json::Value::Null);
    for item in items.as_array().map(Vec::as_slice).unwrap_or_default() {
        if item.get("name").and_then(|n| n.as_str()) != Some(key) {
            break;
        }
        if item.get("content_type").and_then(|c| c.as_str()) == Some(DELETE_MARKER_CONTENT_TYPE) {
            break;
        }
        let Some(id) = item.get("version_id").and_then(|v| v.as_str()) else {
            continue;
        };
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
        let put = api
            .get_response(
                req,
                Method::PUT,
                Some(bucket),
                Some(key),
                Some(&format!("version-id={}", quote(id))),
                headers,
                apus_http::empty(),
            )
            .await;
        match put {
            Ok(_) => return Ok(true),
            // That version went meanwhile (a stale listing): try the
            // next.
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::PreconditionFailed | ErrorCode::NoSuchBucket
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn configuration_documents_as_s3_validates_them() {
        let doc = |body: &str| {
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
                 <VersioningConfiguration xmlns=\"{XMLNS}\">{body}</VersioningConfiguration>"
            )
        };
        assert!(parse_configuration(doc("<Status>Enabled</Status>").as_bytes()).unwrap());
        assert!(!parse_configuration(doc("<Status>Suspended</Status>").as_bytes()).unwrap());
        assert!(parse_configuration(
            doc("<MfaDelete>Disabled</MfaDelete><Status>Enabled</Status>").as_bytes()
        )
        .unwrap());
        for bad in [
            "<Status>Disabled</Status>",
            "<Status></Status>",
            "<Status>...</Status>",
            "<Status> Enabled </Status>",
            "<Status>Enabled</Status><Status>Enabled</Status>",
            "<Status>Enabled</Status><Other/>",
            "<Status><Enabled/></Status>",
            "<MfaDelete>Maybe</MfaDelete><Status>Enabled</Status>",
            "text<Status>Enabled</Status>",
        ] {
            let err = parse_configuration(doc(bad).as_bytes()).unwrap_err();
            assert_eq!(err.code, ErrorCode::MalformedXML, "{bad}");
        }
        let err = parse_configuration(b"<foo><Status>Enabled</Status></foo>").unwrap_err();
        assert_eq!(err.code, ErrorCode::MalformedXML);
        let xxe = br#"<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<VersioningConfiguration><Status>&xxe;</Status></VersioningConfiguration>"#;
        assert_eq!(
            parse_configuration(xxe).unwrap_err().code,
            ErrorCode::MalformedXML
        );
        let err = parse_configuration(doc("").as_bytes()).unwrap_err();
        assert_eq!(err.code, ErrorCode::IllegalVersioningConfigurationException);
    }

    #[test]
    fn listing_times_round_up_to_the_second() {
        assert_eq!(
            s3_xml_time("2026-12-31T23:59:59.000001"),
            "2027-01-01T00:00:00.000Z"
        );
        assert_eq!(
            s3_xml_time("2020-02-29T12:00:00.000000"),
            "2020-02-29T12:00:00.000Z"
        );
        assert_eq!(
            s3_xml_time("2020-02-29T12:00:00"),
            "2020-02-29T12:00:00.000Z"
        );
    }

    #[test]
    fn etags_of_plain_slo_and_multipart_entries() {
        let e = serde_json::json!({"hash": "abc"});
        assert_eq!(listing_etag(&e), "\"abc\"");
        let e = serde_json::json!({"hash": "\"abc\""});
        assert_eq!(listing_etag(&e), "\"abc\"");
        let e = serde_json::json!({"hash": "abc", "slo_etag": "\"def\""});
        assert_eq!(listing_etag(&e), "\"def-N\"");
        let e = serde_json::json!({"hash": "abc", "s3_etag": "\"ghi-2\""});
        assert_eq!(listing_etag(&e), "\"ghi-2\"");
    }

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn versions_result_lists_versions_markers_and_prefixes_in_order() {
        let entries = vec![
            serde_json::json!({"subdir": "d/"}),
            serde_json::json!({"name": "k", "version_id": "1700000002.00000",
                "is_latest": true, "content_type": DELETE_MARKER_CONTENT_TYPE,
                "bytes": 0, "hash": "x", "last_modified": "2023-11-14T22:13:22.000000"}),
            serde_json::json!({"name": "k", "version_id": "1700000001.00000",
                "is_latest": false, "content_type": "text/plain",
                "bytes": 3, "hash": "abc", "last_modified": "2023-11-14T22:13:21.500000"}),
            serde_json::json!({"name": "k&l", "version_id": "null",
                "is_latest": true, "content_type": "text/plain",
                "bytes": 1, "hash": "def", "last_modified": "2023-11-14T22:13:20.000000"}),
        ];
        let p = params(&[("versions", ""), ("delimiter", "/")]);
        let x = versions_result("b", "test:tester", &p, &entries, 1000, true, true);
        assert!(x.starts_with(XML_DECL));
        assert!(x.contains(
            "<Name>b</Name><Prefix></Prefix><KeyMarker></KeyMarker>\
             <VersionIdMarker></VersionIdMarker><NextKeyMarker>k&amp;l</NextKeyMarker>\
             <NextVersionIdMarker>null</NextVersionIdMarker><MaxKeys>1000</MaxKeys>\
             <Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>\
             <CommonPrefixes><Prefix>d/</Prefix></CommonPrefixes>\
             <DeleteMarker><Key>k</Key><VersionId>1700000002.00000</VersionId>\
             <IsLatest>true</IsLatest><LastModified>2023-11-14T22:13:22.000Z</LastModified>\
             <Owner><ID>test:tester</ID><DisplayName>test:tester</DisplayName></Owner>\
             </DeleteMarker>\
             <Version><Key>k</Key><VersionId>1700000001.00000</VersionId>\
             <IsLatest>false</IsLatest><LastModified>2023-11-14T22:13:22.000Z</LastModified>\
             <ETag>\"abc\"</ETag><Size>3</Size>"
        ));
        assert!(x.contains("<Key>k&amp;l</Key><VersionId>null</VersionId>"));
        assert!(x.ends_with("<StorageClass>STANDARD</StorageClass></Version></ListVersionsResult>"));

        let p = params(&[
            ("versions", ""),
            ("encoding-type", "url"),
            ("prefix", "k l"),
        ]);
        let x = versions_result("b", "o", &p, &entries[3..], 1, false, true);
        assert!(x.contains("<Prefix>k%20l</Prefix>"));
        assert!(x.contains("<Key>k%26l</Key>"));
        assert!(x.contains("<EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>"));
        assert!(!x.contains("NextKeyMarker"));
        // Without object versioning nothing can be an older version.
        let x = versions_result("b", "o", &p, &entries[2..3], 1, false, false);
        assert!(x.contains("<IsLatest>true</IsLatest>"));
    }

    #[test]
    fn query_strings_are_sorted_and_quoted() {
        let q = vec![
            ("version-id", "1.0".to_string()),
            ("multipart-manifest", "delete".to_string()),
            ("symlink", "get".to_string()),
            ("async", "on".to_string()),
        ];
        assert_eq!(
            query_string(&q),
            "async=on&multipart-manifest=delete&symlink=get&version-id=1.0"
        );
    }
}
