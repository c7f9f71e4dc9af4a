//! Multipart uploads, stored as Swift's s3api stores them so that both
//! read each other's data:
//!
//! - the bucket's segments live in the container `<bucket>+segments`,
//!   made on the first upload with the bucket's storage policy and ACLs;
//! - an upload in progress is the empty marker object
//!   `<key>/<upload-id>` there, carrying the metadata and content type the
//!   final object gets (`X-Object-Sysmeta-S3Api-Has-Content-Type` and
//!   `-Content-Type`);
//! - part N is the object `<key>/<upload-id>/<N>`;
//! - completing writes an SLO manifest of the named parts over the key
//!   (`?multipart-manifest=put&heartbeat=on`), with the S3 ETag (the MD5
//!   of the parts' binary MD5s, `-<count>`) in
//!   `X-Object-Sysmeta-S3Api-Etag`, the upload id in
//!   `X-Object-Sysmeta-S3Api-Upload-Id` and `s3_etag=` in the container
//!   listing's etag, and then deletes the marker. Non-last parts under
//!   [`MIN_SEGMENT_SIZE`] are refused through SLO's manifest hook.
//!
//! An upload id whose marker is gone still names the completed object
//! while that object carries the id: completing it again with the same
//! parts answers as the first completion did.

use std::fmt::Write as _;
use std::sync::Arc;

use apus_s3::{ErrorCode, S3Error};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use md5::{Digest, Md5};

use super::obj::{content_md5_hex, swift_object_headers};
use super::{
    empty_response, esc, quote, read_json, xml_response, S3Api, S3Request, MULTIUPLOAD_SUFFIX,
    XMLNS, XML_DECL,
};
use crate::service::{header_str, set_header, Resp};
use crate::slo::manifest::StoredSegment;
use crate::slo::ManifestHook;

/// The largest part number (Swift's `max_upload_part_num` default).
pub(crate) const MAX_UPLOAD_PART_NUM: u64 = 1000;
/// The smallest part but the last (Swift's `min_segment_size` default).
pub(crate) const MIN_SEGMENT_SIZE: u64 = 5 * 1024 * 1024;
/// ListParts' largest `max-parts` (Swift's `max_parts_listing`).
pub(crate) const MAX_PARTS_LISTING: u64 = 1000;
/// ListMultipartUploads' default and largest `max-uploads`.
const MAX_UPLOADS: u64 = 1000;
/// The largest CompleteMultipartUpload document read.
const MAX_COMPLETE_BODY: usize = 2048 * 1024;
/// Integer parameters above this are refused (Swift's `MAX_32BIT_INT`).
const MAX_32BIT_INT: u64 = 2_147_483_647;
/// Listing pages read at most while gathering parts or uploads: a
/// bucket's uploads are bounded by what its clients made, this bounds the
/// work one request does.
const MAX_LISTING_PAGES: usize = 100;

pub(crate) const SYSMETA_ETAG: &str = "x-object-sysmeta-s3api-etag";
const SYSMETA_UPLOAD_ID: &str = "x-object-sysmeta-s3api-upload-id";
const SYSMETA_HAS_CONTENT_TYPE: &str = "x-object-sysmeta-s3api-has-content-type";
const SYSMETA_CONTENT_TYPE: &str = "x-object-sysmeta-s3api-content-type";
const OVERRIDE_ETAG: &str = "x-object-sysmeta-container-update-override-etag";

/// swob's content type for a body-less answer, which s3api passes on.
const HTML_TYPE: &str = "text/html; charset=UTF-8";

fn too_small_message() -> String {
    format!("s3api requires that each segment be at least {MIN_SEGMENT_SIZE} bytes")
}

/// S3's `InvalidArgument` for a bad `partNumber`.
fn invalid_part_argument(max_parts: u64, value: &str) -> S3Error {
    S3Error::with_message(
        ErrorCode::InvalidArgument,
        format!("Part number must be an integer between 1 and {max_parts}, inclusive"),
    )
    .detail("ArgumentName", "partNumber")
    .detail("ArgumentValue", value)
}

/// Swift's `S3Request.validate_part_number`: the `partNumber` parameter,
/// if any, checked against the largest part number (raised to
/// `parts_count` when an object has more parts) and, with `check_max`,
/// against `parts_count` itself (416 `InvalidPartNumber`).
pub(crate) fn validate_part_number(
    req: &S3Request,
    parts_count: Option<u64>,
    check_max: bool,
) -> Result<Option<u64>, S3Error> {
    let Some(raw) = req.param("partNumber") else {
        return Ok(None);
    };
    if req
        .header("range")
        .is_some_and(|r| apus_core::range::Range::parse(r).is_ok())
    {
        return Err(S3Error::with_message(
            ErrorCode::InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter",
        ));
    }
    let parts_count = parts_count.unwrap_or(MAX_UPLOAD_PART_NUM);
    let max_parts = MAX_UPLOAD_PART_NUM.max(parts_count);
    let n = match py_int(raw) {
        Some(n) if n >= 1 => n as u64,
        Some(n) => return Err(invalid_part_argument(max_parts, &n.to_string())),
        None => return Err(invalid_part_argument(max_parts, raw)),
    };
    if check_max {
        if n > max_parts {
            return Err(invalid_part_argument(max_parts, &n.to_string()));
        }
        if n > parts_count {
            return Err(S3Error::new(ErrorCode::InvalidPartNumber));
        }
    }
    Ok(Some(n))
}

/// An integer as Python's `int()` reads one (surrounding space, a sign).
fn py_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<i64>().ok()
}

/// Swift's `get_validated_param`: a non-negative integer parameter,
/// `default` when absent, capped at `limit`.
fn validated_param(req: &S3Request, name: &str, default: u64, limit: u64) -> Result<u64, S3Error> {
    let Some(raw) = req.param(name) else {
        return Ok(default);
    };
    let bad = |msg: String| {
        S3Error::with_message(ErrorCode::InvalidArgument, msg)
            .detail("ArgumentName", name)
            .detail("ArgumentValue", raw)
    };
    match py_int(raw) {
        Some(v) if v < 0 => Err(bad(format!(
            "Argument {name} must be an integer between 0 and {MAX_32BIT_INT}"
        ))),
        Some(v) if (v as u64) <= MAX_32BIT_INT => Ok((v as u64).min(limit)),
        _ => Err(bad(format!(
            "Provided {name} not an integer or within integer range"
        ))),
    }
}

fn invalid_encoding(value: &str) -> S3Error {
    S3Error::with_message(
        ErrorCode::InvalidArgument,
        "Invalid Encoding Method specified in Request",
    )
    .detail("ArgumentName", "encoding-type")
    .detail("ArgumentValue", value)
}

fn no_such_upload(upload_id: &str) -> S3Error {
    S3Error::new(ErrorCode::NoSuchUpload).detail("UploadId", upload_id)
}

fn key_required() -> S3Error {
    S3Error::with_message(ErrorCode::InvalidRequest, "A key must be specified")
}

/// The S3 ETag of a multipart object: the MD5 of the parts' binary MD5s,
/// then `-` and the number of parts. `None` if an ETag is not 32 hex
/// digits.
pub(crate) fn multipart_etag<'a>(part_etags: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut hasher = Md5::new();
    let mut count = 0usize;
    for etag in part_etags {
        hasher.update(hex_md5(etag)?);
        count += 1;
    }
    Some(format!("{:x}-{count}", hasher.finalize()))
}

/// The 16 bytes of a lowercase hex MD5.
fn hex_md5(etag: &str) -> Option<[u8; 16]> {
    if etag.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in etag.as_bytes().chunks(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = digit(chunk[0])? << 4 | digit(chunk[1])?;
    }
    Some(out)
}

/// A new upload id: a random UUID's text in URL-safe base64, the shape
/// Swift's `unique_id` gives.
fn new_upload_id() -> String {
    use base64::Engine;
    let mut b = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read;
        f.read_exact(&mut b)
    });
    if read.is_err() {
        // No urandom: the std hasher's per-process random keys, mixed
        // with the time and a counter, still give distinct ids.
        use std::hash::{BuildHasher, Hasher};
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        for half in b.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            half.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    base64::engine::general_purpose::URL_SAFE.encode(uuid.as_bytes())
}

/// S3's XML time (`2026-12-06T14:13:58.000Z`) of Swift's listing time
/// (`2026-12-06T14:13:57.123456`), rounded up to the second as s3api's
/// `S3Timestamp` does.
pub(crate) fn s3_xml_time(listing: &str) -> String {
    let num = |r: std::ops::Range<usize>| listing.get(r).and_then(|s| s.parse::<i64>().ok());
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return "1970-01-01T00:00:00.000Z".to_string();
    };
    let fraction = listing.get(20..).unwrap_or("");
    let up = i64::from(fraction.bytes().any(|b| (b'1'..=b'9').contains(&b)));
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s + up;
    xml_time_of_secs(secs)
}

/// S3's XML time of seconds since the epoch.
pub(crate) fn xml_time_of_secs(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = apus_core::timestamp::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// S3's XML time of an HTTP date (a `Last-Modified`).
pub(crate) fn xml_time_of_http_date(date: Option<&str>) -> String {
    let secs = date
        .and_then(apus_core::conditional::parse_http_date)
        .unwrap_or(0);
    xml_time_of_secs(secs)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The ETag a bucket listing shows for one entry (s3api's bucket
/// controller): a multipart object's S3 ETag, a Swift SLO's etag with
/// `-N`, or the MD5.
pub(crate) fn listing_etag(entry: &serde_json::Value) -> String {
    if let Some(e) = entry.get("s3_etag").and_then(|e| e.as_str()) {
        return format!("\"{}\"", e.trim_matches('"'));
    }
    let hash = entry["hash"].as_str().unwrap_or_default();
    let mut parts = hash.split(';');
    let value = parts.next().unwrap_or_default().trim();
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim() == "s3_etag" {
                return format!("\"{}\"", v.trim());
            }
        }
    }
    if let Some(slo) = entry["slo_etag"].as_str() {
        return format!("\"{}-N\"", slo.trim_matches('"'));
    }
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        value.to_string()
    } else {
        format!("\"{value}\"")
    }
}

/// The container update override for a multipart object's listing etag:
/// SLO puts the manifest's etag in front and adds `slo_etag`.
fn listing_override(s3_etag: &str) -> String {
    format!("; s3_etag={s3_etag}")
}

/// HEADs the user's bucket, answering `NoSuchBucket` if it is missing
/// (s3api's `check_container_existence`).
async fn bucket_head(api: &S3Api, req: &S3Request) -> Result<HeaderMap, S3Error> {
    let resp = api
        .get_response(
            req,
            Method::HEAD,
            req.bucket.as_deref(),
            None,
            None,
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await?;
    Ok(resp.headers().clone())
}

fn segments_container(req: &S3Request) -> String {
    format!("{}{MULTIUPLOAD_SUFFIX}", req.bucket_name())
}

/// Swift's `_get_upload_info`: the upload marker's headers, or, once the
/// marker is gone, the completed object's if it carries the upload id
/// (`false` then). `NoSuchUpload` otherwise.
async fn upload_info(
    api: &S3Api,
    req: &S3Request,
    upload_id: &str,
) -> Result<(HeaderMap, bool), S3Error> {
    let container = segments_container(req);
    let marker = format!("{}/{upload_id}", req.key_name());
    match api
        .get_response(
            req,
            Method::HEAD,
            Some(&container),
            Some(&marker),
            None,
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await
    {
        Ok(resp) => return Ok((resp.headers().clone(), true)),
        Err(e) if e.code == ErrorCode::NoSuchKey => {}
        Err(e) => return Err(e),
    }
    match api
        .get_response(
            req,
            Method::HEAD,
            req.bucket.as_deref(),
            req.key.as_deref(),
            None,
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await
    {
        Ok(resp) if header_str(resp.headers(), SYSMETA_UPLOAD_ID) == Some(upload_id) => {
            Ok((resp.headers().clone(), false))
        }
        Ok(_) => Err(no_such_upload(upload_id)),
        Err(e) if e.code == ErrorCode::NoSuchKey => Err(no_such_upload(upload_id)),
        Err(e) => Err(e),
    }
}

/// `?uploads`: ListMultipartUploads (GET on the bucket) and
/// CreateMultipartUpload (POST on a key).
pub(super) async fn uploads(api: &S3Api, req: S3Request) -> Result<Resp, S3Error> {
    match req.method {
        Method::GET => {
            if req.key.is_some() {
                return Err(S3Error::with_message(
                    ErrorCode::InvalidRequest,
                    "Key is not expected for the GET method ?uploads subresource",
                ));
            }
            list_uploads(api, &req).await
        }
        Method::POST => {
            if req.key.is_none() {
                return Err(key_required());
            }
            initiate(api, &req).await
        }
        _ => Err(S3Error::method_not_allowed(req.method.as_str(), "UPLOADS")),
    }
}

/// `?uploadId` without `partNumber`: ListParts, AbortMultipartUpload and
/// CompleteMultipartUpload.
pub(super) async fn upload(api: &S3Api, mut req: S3Request) -> Result<Resp, S3Error> {
    if !matches!(req.method, Method::GET | Method::DELETE | Method::POST) {
        return Err(S3Error::method_not_allowed(req.method.as_str(), "UPLOAD"));
    }
    if req.key.is_none() {
        return Err(key_required());
    }
    match req.method {
        Method::GET => list_parts(api, &req).await,
        Method::DELETE => abort(api, &req).await,
        _ => complete(api, &mut req).await,
    }
}

async fn initiate(api: &S3Api, req: &S3Request) -> Result<Resp, S3Error> {
    let bucket_headers = bucket_head(api, req).await?;
    if req.key_name().len() > apus_proto::constraints::MAX_OBJECT_NAME_LENGTH {
        return Err(S3Error::new(ErrorCode::KeyTooLongError));
    }
    let upload_id = new_upload_id();
    let container = segments_container(req);

    // The segments container, made on demand like the bucket it serves.
    if !api.bucket_exists(req, &container).await {
        let mut headers = HeaderMap::new();
        for (from, to) in [
            ("x-storage-policy", "x-storage-policy"),
            ("x-container-read", "x-container-read"),
            ("x-container-write", "x-container-write"),
        ] {
            if let Some(v) = bucket_headers.get(from) {
                headers.insert(to, v.clone());
            }
        }
        match api
            .get_response(
                req,
                Method::PUT,
                Some(&container),
                None,
                None,
                headers,
                apus_http::empty(),
            )
            .await
        {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::BucketAlreadyExists | ErrorCode::BucketAlreadyOwnedByYou
                ) => {}
            Err(e) => return Err(e),
        }
    }

    let mut headers = swift_object_headers(&req.headers);
    for h in [
        "etag",
        "range",
        "if-match",
        "if-none-match",
        "transfer-encoding",
    ] {
        headers.remove(h);
    }
    match req.headers.get("content-type").filter(|v| !v.is_empty()) {
        Some(ct) => {
            headers.insert(SYSMETA_HAS_CONTENT_TYPE, HeaderValue::from_static("yes"));
            headers.insert(SYSMETA_CONTENT_TYPE, ct.clone());
        }
        None => {
            headers.insert(SYSMETA_HAS_CONTENT_TYPE, HeaderValue::from_static("no"));
        }
    }
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/directory"),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
    let marker = format!("{}/{upload_id}", req.key_name());
    api.get_response(
        req,
        Method::PUT,
        Some(&container),
        Some(&marker),
        None,
        headers,
        apus_http::empty(),
    )
    .await?;
    let body = format!(
        "{XML_DECL}<InitiateMultipartUploadResult xmlns=\"{XMLNS}\"><Bucket>{}</Bucket>\
         <Key>{}</Key><UploadId>{}</UploadId></InitiateMultipartUploadResult>",
        esc(req.bucket_name()),
        esc(req.key_name()),
        esc(&upload_id)
    );
    Ok(xml_response(StatusCode::OK, body))
}

/// `PUT ?partNumber&uploadId`: UploadPart, or UploadPartCopy with
/// `x-amz-copy-source` (and `x-amz-copy-source-range`).
pub(super) async fn part(api: &S3Api, mut req: S3Request) -> Result<Resp, S3Error> {
    if req.key.is_none() {
        return Err(key_required());
    }
    bucket_head(api, &req).await?;
    let Some(upload_id) = req.param("uploadId").map(str::to_string) else {
        return Err(S3Error::with_message(
            ErrorCode::InvalidArgument,
            "Unexpected query string parameter",
        )
        .detail("ArgumentName", "ResourceType")
        .detail("ArgumentValue", "partNumber"));
    };
    let part_number = validate_part_number(&req, None, true)?.unwrap_or(1);
    upload_info(api, &req, &upload_id).await?;
    let container = segments_container(&req);
    let obj = format!("{}/{upload_id}/{part_number}", req.key_name());

    let source = super::copy::check_copy_source(api, &req, &container, &obj).await?;
    let mut headers = swift_object_headers(&req.headers);
    let Some(source) = source else {
        if let Some(hex) = content_md5_hex(&req)? {
            set_header(&mut headers, "etag", &hex);
        }
        let body = req.take_body();
        let resp = api
            .get_response(
                &req,
                Method::PUT,
                Some(&container),
                Some(&obj),
                None,
                headers,
                body,
            )
            .await?;
        let mut r = empty_response(StatusCode::OK);
        super::obj::s3_object_headers(resp.headers(), r.headers_mut());
        r.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
        if !r.headers().contains_key(http::header::CONTENT_TYPE) {
            set_header(r.headers_mut(), "content-type", HTML_TYPE);
        }
        return Ok(r);
    };

    headers.remove("range");
    if let Some(rng) = req.header("x-amz-copy-source-range") {
        let bad = |msg: String| {
            S3Error::with_message(ErrorCode::InvalidArgument, msg)
                .detail("ArgumentName", "x-amz-source-range")
                .detail("ArgumentValue", rng)
        };
        let parsed = match apus_core::range::Range::parse(rng) {
            Ok(r) if r.specs.len() == 1 => r,
            _ => {
                return Err(bad(
                    "The x-amz-copy-source-range value must be of the form \
                     bytes=first-last where first and last are the zero-based offsets \
                     of the first and last bytes to copy"
                        .to_string(),
                ))
            }
        };
        let size = header_str(&source.head, "content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if parsed.ranges_for_length(size).is_none_or(|r| r.is_empty()) {
            return Err(bad(format!(
                "Range specified is not valid for source object of size: {size}"
            )));
        }
        set_header(&mut headers, "range", rng);
    }
    // What the source's own S3 and SLO identity would wrongly say of a
    // part cut from it.
    for h in [
        SYSMETA_ETAG,
        "x-object-sysmeta-swift3-etag",
        "x-object-sysmeta-slo-etag",
        "x-object-sysmeta-slo-size",
    ] {
        headers.insert(h, HeaderValue::from_static(""));
    }
    let resp = super::copy::copy_put(api, &req, &container, &obj, &source, headers).await?;
    let etag = header_str(resp.headers(), "etag")
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    let last_modified = xml_time_of_http_date(header_str(resp.headers(), "last-modified"));
    let body = format!(
        "{XML_DECL}<CopyPartResult xmlns=\"{XMLNS}\"><LastModified>{last_modified}</LastModified>\
         <ETag>\"{}\"</ETag></CopyPartResult>",
        esc(&etag)
    );
    let mut r = xml_response(StatusCode::OK, body);
    if let Some(lm) = resp.headers().get("last-modified") {
        r.headers_mut().insert("last-modified", lm.clone());
    }
    Ok(r)
}

/// The parts of an upload, as the segments container lists them: every
/// object under `<key>/<upload-id>/`.
async fn list_segments(
    api: &S3Api,
    req: &S3Request,
    upload_id: &str,
) -> Result<Vec<serde_json::Value>, S3Error> {
    let container = segments_container(req);
    let prefix = format!("{}/{upload_id}/", req.key_name());
    let mut out = Vec::new();
    let mut marker = String::new();
    for _ in 0..MAX_LISTING_PAGES {
        let mut query = format!("delimiter=/&format=json&prefix={}", quote(&prefix));
        if !marker.is_empty() {
            let _ = write!(query, "&marker={}", quote(&marker));
        }
        let resp = api
            .get_response(
                req,
                Method::GET,
                Some(&container),
                None,
                Some(&query),
                HeaderMap::new(),
                apus_http::empty(),
            )
            .await?;
        let page = read_json(resp)
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        let Some(last) = page
            .last()
            .and_then(|e| e["name"].as_str().or_else(|| e["subdir"].as_str()))
        else {
            break;
        };
        marker = last.to_string();
        out.extend(page);
    }
    Ok(out)
}

/// The part number of a segment's name (`<key>/<upload-id>/<N>`).
fn part_of(name: &str) -> Option<i64> {
    py_int(name.rsplit('/').next()?)
}

async fn list_parts(api: &S3Api, req: &S3Request) -> Result<Resp, S3Error> {
    bucket_head(api, req).await?;
    let encoding = req.param("encoding-type");
    if let Some(e) = encoding.filter(|e| *e != "url") {
        return Err(invalid_encoding(e));
    }
    let upload_id = req.param("uploadId").unwrap_or_default().to_string();
    upload_info(api, req, &upload_id).await?;
    let max_parts = validated_param(req, "max-parts", MAX_PARTS_LISTING, MAX_PARTS_LISTING)?;
    let marker = validated_param(req, "part-number-marker", 0, MAX_32BIT_INT)?;

    let mut parts: Vec<(i64, serde_json::Value)> = list_segments(api, req, &upload_id)
        .await?
        .into_iter()
        .filter_map(|o| {
            let n = part_of(o["name"].as_str()?)?;
            (n > marker as i64).then_some((n, o))
        })
        .collect();
    parts.sort_by_key(|(n, _)| *n);
    let truncated = parts.len() as u64 > max_parts;
    parts.truncate(max_parts as usize);
    let next_marker = parts
        .last()
        .and_then(|(_, o)| o["name"].as_str())
        .and_then(|n| n.rsplit('/').next())
        .unwrap_or("0")
        .to_string();

    let key = match encoding {
        Some(_) => quote(req.key_name()),
        None => req.key_name().to_string(),
    };
    let user = esc(&req.user_id);
    let mut out = format!(
        "{XML_DECL}<ListPartsResult xmlns=\"{XMLNS}\"><Bucket>{}</Bucket><Key>{}</Key>\
         <UploadId>{}</UploadId><Initiator><ID>{user}</ID><DisplayName>{user}</DisplayName>\
         </Initiator><Owner><ID>{user}</ID><DisplayName>{user}</DisplayName></Owner>\
         <StorageClass>STANDARD</StorageClass><PartNumberMarker>{marker}</PartNumberMarker>\
         <NextPartNumberMarker>{}</NextPartNumberMarker><MaxParts>{max_parts}</MaxParts>",
        esc(req.bucket_name()),
        esc(&key),
        esc(&upload_id),
        esc(&next_marker),
    );
    if let Some(e) = encoding {
        let _ = write!(out, "<EncodingType>{}</EncodingType>", esc(e));
    }
    let _ = write!(out, "<IsTruncated>{truncated}</IsTruncated>");
    for (_, o) in &parts {
        let name = o["name"].as_str().unwrap_or_default();
        let _ = write!(
            out,
            "<Part><PartNumber>{}</PartNumber><LastModified>{}</LastModified>\
             <ETag>\"{}\"</ETag><Size>{}</Size></Part>",
            esc(name.rsplit('/').next().unwrap_or_default()),
            s3_xml_time(o["last_modified"].as_str().unwrap_or_default()),
            esc(o["hash"].as_str().unwrap_or_default()),
            o["bytes"].as_u64().unwrap_or(0)
        );
    }
    out.push_str("</ListPartsResult>");
    Ok(xml_response(StatusCode::OK, out))
}

/// One upload in a ListMultipartUploads answer.
struct Upload {
    key: String,
    upload_id: String,
    last_modified: String,
}

/// A segments container name that is a part (`.../<digits>`), not a
/// marker.
fn is_segment(name: &str) -> bool {
    name.rsplit_once('/')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

async fn list_uploads(api: &S3Api, req: &S3Request) -> Result<Resp, S3Error> {
    bucket_head(api, req).await?;
    let encoding = req.param("encoding-type");
    if let Some(e) = encoding.filter(|e| *e != "url") {
        return Err(invalid_encoding(e));
    }
    let key_marker = req.param("key-marker").unwrap_or_default();
    let id_marker = req.param("upload-id-marker").unwrap_or_default();
    let prefix = req.param("prefix").unwrap_or_default();
    let delimiter = req.param("delimiter");
    let max_uploads = validated_param(req, "max-uploads", MAX_UPLOADS, MAX_UPLOADS)? as usize;

    let mut marker = if !id_marker.is_empty() && !key_marker.is_empty() {
        format!("{key_marker}/{id_marker}")
    } else if !key_marker.is_empty() {
        format!("{key_marker}/~")
    } else {
        String::new()
    };
    let container = segments_container(req);
    let mut uploads: Vec<Upload> = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    for _ in 0..MAX_LISTING_PAGES {
        if uploads.len() >= max_uploads {
            break;
        }
        let mut query = format!("format=json&marker={}", quote(&marker));
        if req.has_param("prefix") {
            let _ = write!(query, "&prefix={}", quote(prefix));
        }
        let page = match api
            .get_response(
                req,
                Method::GET,
                Some(&container),
                None,
                Some(&query),
                HeaderMap::new(),
                apus_http::empty(),
            )
            .await
        {
            Ok(resp) => read_json(resp)
                .await
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default(),
            // No segments container: no uploads yet.
            Err(e) if e.code == ErrorCode::NoSuchBucket => Vec::new(),
            Err(e) => return Err(e),
        };
        let Some(last) = page.last().and_then(|o| o["name"].as_str()) else {
            break;
        };
        marker = last.to_string();
        let mut page_prefixes = std::collections::BTreeSet::new();
        for o in &page {
            let Some(name) = o["name"].as_str().filter(|n| !is_segment(n)) else {
                continue;
            };
            let Some((key, id)) = name.rsplit_once('/') else {
                continue;
            };
            if let Some(d) = delimiter {
                if let Some(end) = key.get(prefix.len()..).and_then(|rest| rest.find(d)) {
                    let cut = prefix.len() + end + d.len();
                    page_prefixes.insert(key[..cut].to_string());
                    continue;
                }
            }
            uploads.push(Upload {
                key: key.to_string(),
                upload_id: id.to_string(),
                last_modified: o["last_modified"].as_str().unwrap_or_default().to_string(),
            });
        }
        prefixes.extend(page_prefixes);
    }
    let truncated = uploads.len() >= max_uploads;
    uploads.truncate(max_uploads);
    // Swift gives the next markers only when more than one upload is
    // listed.
    let (next_key, next_id) = match uploads.last() {
        Some(u) if uploads.len() > 1 => (u.key.as_str(), u.upload_id.as_str()),
        _ => ("", ""),
    };
    let mut out = format!(
        "{XML_DECL}<ListMultipartUploadsResult xmlns=\"{XMLNS}\"><Bucket>{}</Bucket>\
         <KeyMarker>{}</KeyMarker><UploadIdMarker>{}</UploadIdMarker>\
         <NextKeyMarker>{}</NextKeyMarker><NextUploadIdMarker>{}</NextUploadIdMarker>",
        esc(req.bucket_name()),
        esc(key_marker),
        esc(id_marker),
        esc(next_key),
        esc(next_id)
    );
    if let Some(d) = delimiter {
        let _ = write!(out, "<Delimiter>{}</Delimiter>", esc(d));
    }
    if req.has_param("prefix") {
        let _ = write!(out, "<Prefix>{}</Prefix>", esc(prefix));
    }
    let _ = write!(out, "<MaxUploads>{max_uploads}</MaxUploads>");
    if let Some(e) = encoding {
        let _ = write!(out, "<EncodingType>{}</EncodingType>", esc(e));
    }
    let _ = write!(out, "<IsTruncated>{truncated}</IsTruncated>");
    let user = esc(&req.user_id);
    for u in &uploads {
        let key = match encoding {
            Some(_) => quote(&u.key),
            None => u.key.clone(),
        };
        let _ = write!(
            out,
            "<Upload><Key>{}</Key><UploadId>{}</UploadId><Initiator><ID>{user}</ID>\
             <DisplayName>{user}</DisplayName></Initiator><Owner><ID>{user}</ID>\
             <DisplayName>{user}</DisplayName></Owner><StorageClass>STANDARD</StorageClass>\
             <Initiated>{}</Initiated></Upload>",
            esc(&key),
            esc(&u.upload_id),
            s3_xml_time(&u.last_modified)
        );
    }
    for p in &prefixes {
        let _ = write!(
            out,
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            esc(p)
        );
    }
    out.push_str("</ListMultipartUploadsResult>");
    Ok(xml_response(StatusCode::OK, out))
}

async fn abort(api: &S3Api, req: &S3Request) -> Result<Resp, S3Error> {
    bucket_head(api, req).await?;
    let upload_id = req.param("uploadId").unwrap_or_default().to_string();
    upload_info(api, req, &upload_id).await?;
    let container = segments_container(req);
    // The marker goes first; a completed upload has none and is not
    // aborted (Swift answers NoSuchKey for the marker).
    let marker = format!("{}/{upload_id}", req.key_name());
    api.get_response(
        req,
        Method::DELETE,
        Some(&container),
        Some(&marker),
        None,
        HeaderMap::new(),
        apus_http::empty(),
    )
    .await?;
    for o in list_segments(api, req, &upload_id).await? {
        let Some(name) = o["name"].as_str() else {
            continue;
        };
        api.get_response(
            req,
            Method::DELETE,
            Some(&container),
            Some(name),
            None,
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await?;
    }
    let mut r = empty_response(StatusCode::NO_CONTENT);
    set_header(r.headers_mut(), "content-type", HTML_TYPE);
    Ok(r)
}

/// One `<Part>` of a CompleteMultipartUpload document.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct CompletePart {
    pub number: i64,
    pub etag: String,
}

/// The parts a CompleteMultipartUpload document names, checked as
/// s3api checks them: the document's shape (`MalformedXML`), ascending
/// part numbers (`InvalidPartOrder`), ETags of 32 lowercase hex digits,
/// quoted or not (`InvalidPart`).
pub(crate) fn parse_complete(doc: &[u8], upload_id: &str) -> Result<Vec<CompletePart>, S3Error> {
    let malformed = || S3Error::new(ErrorCode::MalformedXML);
    let root = apus_s3::xml::parse(doc)?;
    if root.name != "CompleteMultipartUpload" || root.children.is_empty() {
        return Err(malformed());
    }
    const OPTIONAL: [&str; 5] = [
        "ChecksumCRC32",
        "ChecksumCRC32C",
        "ChecksumCRC64NVME",
        "ChecksumSHA1",
        "ChecksumSHA256",
    ];
    // The whole document's shape first, as the schema check does.
    let mut numbers = Vec::with_capacity(root.children.len());
    for part in &root.children {
        if part.name != "Part" {
            return Err(malformed());
        }
        let mut seen: Vec<&str> = Vec::new();
        for c in &part.children {
            if !(c.name == "PartNumber" || c.name == "ETag" || OPTIONAL.contains(&c.name.as_str()))
                || seen.contains(&c.name.as_str())
            {
                return Err(malformed());
            }
            seen.push(&c.name);
        }
        let number = part
            .child_text("PartNumber")
            .and_then(py_int)
            .filter(|n| i32::try_from(*n).is_ok())
            .ok_or_else(malformed)?;
        part.child("ETag").ok_or_else(malformed)?;
        numbers.push(number);
    }
    let mut out = Vec::with_capacity(numbers.len());
    let mut previous = 0i64;
    for (part, number) in root.children.iter().zip(numbers) {
        if number <= previous {
            return Err(S3Error::new(ErrorCode::InvalidPartOrder).detail("UploadId", upload_id));
        }
        previous = number;
        let raw = part.child_text("ETag").unwrap_or_default();
        let etag = if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
            &raw[1..raw.len() - 1]
        } else {
            raw
        };
        if hex_md5(etag).is_none() {
            return Err(S3Error::new(ErrorCode::InvalidPart)
                .detail("UploadId", upload_id)
                .detail("PartNumber", number.to_string())
                .detail("ETag", etag));
        }
        out.push(CompletePart {
            number,
            etag: etag.to_string(),
        });
    }
    Ok(out)
}

/// The CompleteMultipartUploadResult document.
fn complete_body(req: &S3Request, s3_etag: &str) -> String {
    let host = req.header("host").unwrap_or("localhost");
    let location = format!(
        "http://{host}/{}/{}",
        quote(req.bucket_name()),
        quote(req.key_name())
    );
    format!(
        "{XML_DECL}<CompleteMultipartUploadResult xmlns=\"{XMLNS}\"><Location>{}</Location>\
         <Bucket>{}</Bucket><Key>{}</Key><ETag>\"{}\"</ETag>\
         </CompleteMultipartUploadResult>",
        esc(&location),
        esc(req.bucket_name()),
        esc(req.key_name()),
        esc(s3_etag)
    )
}

/// Reads the CompleteMultipartUpload document, bounded as Swift's
/// `S3Request.xml` bounds it.
async fn read_complete_doc(req: &mut S3Request) -> Result<Option<Vec<u8>>, S3Error> {
    let length = req
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    if length.is_some_and(|l| l > MAX_COMPLETE_BODY as u64) {
        return Err(S3Error::new(ErrorCode::MalformedXML));
    }
    if !chunked && length.unwrap_or(0) == 0 {
        return Ok(None);
    }
    let body = req.take_body();
    match apus_http::body::collect_limited(body, MAX_COMPLETE_BODY + 1).await {
        Ok(b) if b.len() > MAX_COMPLETE_BODY => Err(S3Error::new(ErrorCode::MalformedXML)),
        Ok(b) => Ok(Some(b.to_vec())),
        Err(_) => Err(req
            .body_fault
            .take()
            .unwrap_or_else(|| S3Error::new(ErrorCode::IncompleteBody))),
    }
}

async fn complete(api: &S3Api, req: &mut S3Request) -> Result<Resp, S3Error> {
    bucket_head(api, req).await?;
    let upload_id = req.param("uploadId").unwrap_or_default().to_string();
    if req.header("if-none-match").is_some_and(|v| v != "*")
        || ["if-match", "if-modified-since", "if-unmodified-since"]
            .iter()
            .any(|h| req.headers.contains_key(*h))
    {
        return Err(S3Error::with_message(
            ErrorCode::NotImplemented,
            "Conditional uploads are not supported.",
        ));
    }
    let (info, _is_marker) = upload_info(api, req, &upload_id).await?;

    // The final object's metadata, as the upload started with.
    let mut headers = HeaderMap::new();
    set_header(&mut headers, "accept", "application/json");
    set_header(&mut headers, SYSMETA_UPLOAD_ID, &upload_id);
    for (name, value) in &info {
        let n = name.as_str();
        if n.starts_with("x-object-meta-")
            || matches!(
                n,
                "content-encoding"
                    | "content-language"
                    | "content-disposition"
                    | "expires"
                    | "cache-control"
            )
        {
            headers.insert(name.clone(), value.clone());
        }
    }
    let content_type = match header_str(&info, SYSMETA_HAS_CONTENT_TYPE) {
        Some("yes") => info.get(SYSMETA_CONTENT_TYPE).cloned(),
        // Created without one: SLO guesses from the name.
        Some(_) => None,
        None => info.get("content-type").cloned(),
    };
    if let Some(ct) = content_type {
        headers.insert(http::header::CONTENT_TYPE, ct);
    }
    if let Some(v) = req.headers.get("if-none-match") {
        headers.insert("if-none-match", v.clone());
    }

    let Some(doc) = read_complete_doc(req).await? else {
        return Err(S3Error::with_message(
            ErrorCode::InvalidRequest,
            "You must specify at least one part",
        ));
    };
    if let Some(md5) = req.header("content-md5") {
        use base64::Engine;
        let digest = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&doc));
        if md5 != digest {
            return Err(S3Error::new(ErrorCode::BadDigest).detail("ExpectedDigest", md5));
        }
    }
    let parts = parse_complete(&doc, &upload_id)?;
    let container = segments_container(req);
    let manifest: Vec<serde_json::Value> = parts
        .iter()
        .map(|p| {
            serde_json::json!({
                "path": format!("/{container}/{}/{upload_id}/{}", req.key_name(), p.number),
                "etag": p.etag,
            })
        })
        .collect();
    let s3_etag = multipart_etag(parts.iter().map(|p| p.etag.as_str()))
        .ok_or_else(|| S3Error::new(ErrorCode::InvalidPart))?;

    // The marker is gone but the object carries this upload id: the same
    // parts mean this completion already happened.
    match header_str(&info, SYSMETA_ETAG).filter(|e| !e.is_empty()) {
        Some(done) if done == s3_etag => {
            return Ok(xml_response(StatusCode::OK, complete_body(req, &s3_etag)))
        }
        Some(_) => return Err(no_such_upload(&upload_id)),
        None => {}
    }
    set_header(&mut headers, SYSMETA_ETAG, &s3_etag);
    set_header(&mut headers, OVERRIDE_ETAG, &listing_override(&s3_etag));

    let put = manifest_put(
        api,
        req,
        serde_json::Value::Array(manifest).to_string(),
        headers,
    );
    put.await.map_err(|e| match e {
        PutError::S3(e) => e,
        PutError::InvalidPart => no_such_part(&upload_id),
    })?;

    // The upload is done: its marker goes (already gone is as good).
    let marker = format!("{}/{upload_id}", req.key_name());
    match api
        .get_response(
            req,
            Method::DELETE,
            Some(&container),
            Some(&marker),
            None,
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.code == ErrorCode::NoSuchKey => {}
        Err(e) => return Err(e),
    }
    Ok(xml_response(StatusCode::OK, complete_body(req, &s3_etag)))
}

fn no_such_part(upload_id: &str) -> S3Error {
    S3Error::new(ErrorCode::InvalidPart).detail("UploadId", upload_id)
}

enum PutError {
    S3(S3Error),
    /// A part is missing or not the ETag named.
    InvalidPart,
}

/// The largest heartbeating manifest PUT answer read: its JSON lists at
/// most one problem per part.
const MAX_PUT_RESULT: usize = 4 * 1024 * 1024;

/// PUTs the manifest through SLO (heartbeating, as s3api does) and turns
/// SLO's verdict into S3's.
async fn manifest_put(
    api: &S3Api,
    req: &S3Request,
    manifest: String,
    mut headers: HeaderMap,
) -> Result<(), PutError> {
    let message = too_small_message();
    let hook_message = message.clone();
    // Swift's `slo_manifest_hook`: every part but the last must be at
    // least the minimum segment size.
    let hook = ManifestHook(Arc::new(move |segments: &[StoredSegment]| {
        let n = segments.len();
        segments
            .iter()
            .take(n.saturating_sub(1))
            .filter_map(|s| match s {
                StoredSegment::Object { name, bytes, .. } if *bytes < MIN_SEGMENT_SIZE => {
                    Some((name.clone(), hook_message.clone()))
                }
                _ => None,
            })
            .collect()
    }));
    headers.insert(
        http::header::CONTENT_LENGTH,
        HeaderValue::from(manifest.len()),
    );
    let mut ext = req.ext.clone();
    ext.insert(hook);
    let path = format!(
        "{}?heartbeat=on&multipart-manifest=put",
        req.swift_path(req.bucket.as_deref(), req.key.as_deref())
    );
    let resp = api
        .swift_with_ext(ext, Method::PUT, &path, headers, apus_http::full(manifest))
        .await
        .map_err(PutError::S3)?;
    let status = resp.status();
    if status != StatusCode::ACCEPTED {
        if status.is_success() {
            return Ok(());
        }
        return Err(PutError::S3(
            api.swift_error(
                req,
                &Method::PUT,
                req.bucket.as_deref(),
                req.key.as_deref(),
                resp,
            )
            .await,
        ));
    }
    let body = apus_http::body::collect_limited(resp.into_body(), MAX_PUT_RESULT)
        .await
        .map_err(|_| PutError::S3(S3Error::new(ErrorCode::InternalError)))?;
    let text = String::from_utf8_lossy(&body);
    let result: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|_| PutError::S3(S3Error::new(ErrorCode::InternalError)))?;
    heartbeat_verdict(&result, &message)
}

/// What a heartbeating manifest PUT's closing JSON means for S3.
fn heartbeat_verdict(result: &serde_json::Value, too_small: &str) -> Result<(), PutError> {
    let status = result["Response Status"].as_str().unwrap_or_default();
    if status == "201 Created" {
        return Ok(());
    }
    if status == "412 Precondition Failed" {
        return Err(PutError::S3(S3Error::new(ErrorCode::PreconditionFailed)));
    }
    let errors: Vec<(String, String)> = result["Errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some((
                        e.get(0)?.as_str()?.to_string(),
                        e.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    for (_, err) in &errors {
        if err == too_small {
            return Err(PutError::S3(S3Error::new(ErrorCode::EntityTooSmall)));
        }
        if err == "Etag Mismatch" || err == "404 Not Found" {
            return Err(PutError::InvalidPart);
        }
    }
    let msg: Vec<String> = errors.iter().map(|(n, e)| format!("{n}: {e}")).collect();
    Err(PutError::S3(S3Error::with_message(
        ErrorCode::InvalidRequest,
        msg.join("\n"),
    )))
}

/// Before a bucket is deleted, its segments container goes, unless the
/// bucket still holds objects (s3api's `_delete_segments_bucket`).
pub(crate) async fn delete_segments_bucket(api: &S3Api, req: &S3Request) -> Result<(), S3Error> {
    match api
        .get_response(
            req,
            Method::HEAD,
            req.bucket.as_deref(),
            None,
            None,
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await
    {
        Ok(resp) => {
            let count = header_str(resp.headers(), "x-container-object-count")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if count > 0 {
                return Err(
                    S3Error::new(ErrorCode::BucketNotEmpty).detail("BucketName", req.bucket_name())
                );
            }
        }
        Err(e) if e.code == ErrorCode::NoSuchBucket => {}
        Err(e) => return Err(e),
    }
    let container = segments_container(req);
    for _ in 0..MAX_LISTING_PAGES {
        let resp = match api
            .get_response(
                req,
                Method::GET,
                Some(&container),
                None,
                Some("format=json"),
                HeaderMap::new(),
                apus_http::empty(),
            )
            .await
        {
            Ok(r) => r,
            Err(e) if e.code == ErrorCode::NoSuchBucket => return Ok(()),
            Err(e) => return Err(e),
        };
        let page = read_json(resp)
            .await
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        if page.is_empty() {
            break;
        }
        for o in &page {
            let Some(name) = o["name"].as_str() else {
                continue;
            };
            match api
                .get_response(
                    req,
                    Method::DELETE,
                    Some(&container),
                    Some(name),
                    None,
                    HeaderMap::new(),
                    apus_http::empty(),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::NoSuchKey => {}
                Err(e) if e.code == ErrorCode::InternalError => {
                    return Err(S3Error::new(ErrorCode::ServiceUnavailable))
                }
                Err(e) => return Err(e),
            }
        }
    }
    match api
        .get_response(
            req,
            Method::DELETE,
            Some(&container),
            None,
            None,
            HeaderMap::new(),
            apus_http::empty(),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.code == ErrorCode::NoSuchBucket => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_etag_is_the_md5_of_the_binary_md5s_and_the_count() {
        // md5(b"a" * 5 MiB) twice, as Swift's functional test computes it.
        let a = "79b281060d337b9b2b84ccf390adcf74";
        let got = multipart_etag([a, a]).unwrap();
        let mut h = Md5::new();
        h.update(hex_md5(a).unwrap());
        h.update(hex_md5(a).unwrap());
        assert_eq!(got, format!("{:x}-2", h.finalize()));
        assert!(multipart_etag(["nothex"]).is_none());
        assert!(multipart_etag(["79B281060D337B9B2B84CCF390ADCF74"]).is_none());
        // Of one part: the md5 of its 16 bytes.
        let d41 = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(
            multipart_etag([d41]).unwrap(),
            format!("{:x}-1", Md5::digest(hex_md5(d41).unwrap()))
        );
    }

    #[test]
    fn complete_documents_are_checked_as_s3api_checks_them() {
        let e1 = "0cc175b9c0f1b6a831c399e269772661";
        let e2 = "92eb5ffee6ae2fec3ad71c777531578f";
        let doc = format!(
            "<CompleteMultipartUpload xmlns=\"{XMLNS}\"><Part><PartNumber>1</PartNumber>\
             <ETag>\"{e1}\"</ETag></Part><Part><ETag>{e2}</ETag><PartNumber>3</PartNumber>\
             </Part></CompleteMultipartUpload>"
        );
        let parts = parse_complete(doc.as_bytes(), "u").unwrap();
        assert_eq!(
            parts,
            vec![
                CompletePart {
                    number: 1,
                    etag: e1.into()
                },
                CompletePart {
                    number: 3,
                    etag: e2.into()
                }
            ]
        );
        let code = |doc: &str| parse_complete(doc.as_bytes(), "u").unwrap_err();
        assert_eq!(
            code("<CompleteMultipartUpload/>").code,
            ErrorCode::MalformedXML
        );
        assert_eq!(
            code("<Other><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></Other>").code,
            ErrorCode::MalformedXML
        );
        assert_eq!(
            code("<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>").code,
            ErrorCode::MalformedXML
        );
        let order = code(&format!(
            "<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>{e1}</ETag></Part>\
             <Part><PartNumber>1</PartNumber><ETag>{e2}</ETag></Part></CompleteMultipartUpload>"
        ));
        assert_eq!(order.code, ErrorCode::InvalidPartOrder);
        let bad = code(
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag></ETag></Part>\
             </CompleteMultipartUpload>",
        );
        assert_eq!(bad.code, ErrorCode::InvalidPart);
        assert_eq!(bad.detail_text("UploadId"), Some("u"));
        assert_eq!(bad.detail_text("PartNumber"), Some("1"));
        assert_eq!(bad.detail_text("ETag"), Some(""));
    }

    #[test]
    fn listing_times_round_up_to_the_second() {
        assert_eq!(
            s3_xml_time("2026-12-06T14:13:57.123456"),
            "2026-12-06T14:13:58.000Z"
        );
        assert_eq!(
            s3_xml_time("2026-12-31T23:59:59.000001"),
            "2027-01-01T00:00:00.000Z"
        );
        assert_eq!(
            s3_xml_time("2026-12-06T14:13:57.000000"),
            "2026-12-06T14:13:57.000Z"
        );
        assert_eq!(
            s3_xml_time("2026-12-06T14:13:57"),
            "2026-12-06T14:13:57.000Z"
        );
        assert_eq!(
            xml_time_of_http_date(Some("Sun, 06 Nov 1994 08:49:37 GMT")),
            "1994-11-06T08:49:37.000Z"
        );
    }

    #[test]
    fn listing_etags_prefer_the_s3_etag() {
        let e = |v: serde_json::Value| listing_etag(&v);
        assert_eq!(
            e(serde_json::json!({"hash": "abc; s3_etag=def-2", "slo_etag": "\"ghi\""})),
            "\"def-2\""
        );
        assert_eq!(
            e(serde_json::json!({"hash": "abc", "slo_etag": "\"ghi\""})),
            "\"ghi-N\""
        );
        assert_eq!(e(serde_json::json!({"hash": "abc"})), "\"abc\"");
        assert_eq!(e(serde_json::json!({"hash": "\"abc\""})), "\"abc\"");
    }

    #[test]
    fn segment_names_and_upload_ids() {
        assert!(is_segment("key/upload/12"));
        assert!(!is_segment("key/upload"));
        assert!(!is_segment("key/upload/"));
        assert_eq!(part_of("a/b/c/7"), Some(7));
        assert_eq!(part_of("a/b/c/x"), None);
        let id = new_upload_id();
        assert_eq!(id.len(), 48);
        assert_ne!(id, new_upload_id());
    }

    #[test]
    fn heartbeat_results_become_s3_errors() {
        let small = too_small_message();
        let v = |s: &str, errs: serde_json::Value| {
            heartbeat_verdict(
                &serde_json::json!({"Response Status": s, "Errors": errs}),
                &small,
            )
        };
        assert!(v("201 Created", serde_json::json!([])).is_ok());
        let code = |r: Result<(), PutError>| match r {
            Err(PutError::S3(e)) => Some(e.code),
            Err(PutError::InvalidPart) => None,
            Ok(()) => Some(ErrorCode::InternalError),
        };
        assert_eq!(
            code(v("412 Precondition Failed", serde_json::json!([]))),
            Some(ErrorCode::PreconditionFailed)
        );
        assert_eq!(
            code(v(
                "400 Bad Request",
                serde_json::json!([["/c/o/u/1", small]])
            )),
            Some(ErrorCode::EntityTooSmall)
        );
        assert_eq!(
            code(v(
                "400 Bad Request",
                serde_json::json!([["/c/o/u/1", "Etag Mismatch"]])
            )),
            None
        );
        assert_eq!(
            code(v(
                "400 Bad Request",
                serde_json::json!([["/c/o/u/1", "404 Not Found"]])
            )),
            None
        );
        assert_eq!(
            code(v(
                "400 Bad Request",
                serde_json::json!([["/c/o", "Size Mismatch"]])
            )),
            Some(ErrorCode::InvalidRequest)
        );
    }
}
