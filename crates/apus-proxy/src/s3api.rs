//! Swift's `s3api`: S3 requests on the same objects, entered before the
//! auth filter as in Swift's pipeline.
//!
//! A request carrying S3 authentication (`apus_s3::AuthRequest::parse`:
//! SigV4 or SigV2, header or query) is verified here against the
//! tempauth users (access key `account:user`, secret the user's key);
//! the auth filter then takes the user from [`Env::s3_user`] instead of a
//! token. The S3 request becomes a Swift one on the user's account
//! (path style: `/bucket/key`), passed down the rest of the pipeline, and
//! the answer becomes S3's: XML documents, `x-amz-meta-*`, quoted ETags
//! and S3's error codes. A request without S3 authentication passes on
//! untouched.
//!
//! So far: ListBuckets, bucket PUT/HEAD/DELETE, ListObjects v1 and v2
//! (prefix, delimiter, marker, start-after, continuation tokens,
//! max-keys, encoding-type=url), GetBucketLocation, object
//! PUT/GET/HEAD/DELETE with metadata, ranges and conditions. A signed
//! payload hash (`x-amz-content-sha256`) is checked as the body streams:
//! a body that does not match ends in an error and nothing is stored.
//! Other sub-resources and aws-chunked bodies answer `NotImplemented`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use apus_s3::{AuthConfig, AuthRequest, ErrorCode, PayloadHash, S3Error, Secret};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use crate::config::TempAuthConfig;
use crate::service::{
    env_mut, header_str, set_header, BoxFuture, Req, Resp, Service, SharedService,
};

/// The S3 XML namespace.
const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// The largest listing answer read back to build an S3 document.
const MAX_LISTING: usize = 16 * 1024 * 1024;
/// S3's default and largest `max-keys`.
const MAX_KEYS: usize = 1000;

struct S3User {
    secret: Secret,
    /// The Swift account the user's buckets live in (`AUTH_test`).
    account_id: String,
}

pub struct S3Api {
    next: SharedService,
    auth: AuthConfig,
    users: HashMap<String, S3User>,
}

impl S3Api {
    pub fn new(tempauth: &TempAuthConfig, next: SharedService) -> Self {
        let prefix = tempauth
            .reseller_prefixes
            .first()
            .cloned()
            .unwrap_or_else(|| "AUTH_".to_string());
        let users = tempauth
            .users
            .iter()
            .map(|u| {
                (
                    format!("{}:{}", u.account, u.user),
                    S3User {
                        secret: Secret::new(u.key.as_bytes().to_vec()),
                        account_id: format!("{prefix}{}", u.account),
                    },
                )
            })
            .collect();
        S3Api {
            next,
            auth: AuthConfig::default(),
            users,
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A fresh request id, as S3 answers carry one.
fn request_id() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:016X}", n as u64)
}

fn error(e: S3Error) -> Resp {
    let id = request_id();
    let body = e.to_xml(Some(&id));
    let mut resp = Response::new(apus_http::full(body.clone()));
    *resp.status_mut() = e.status();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    set_header(h, "x-amz-request-id", &id);
    set_header(h, "x-amz-id-2", &id);
    resp
}

fn xml_response(status: StatusCode, body: String) -> Resp {
    let mut resp = Response::new(apus_http::full(body.clone()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp
}

fn empty_response(status: StatusCode) -> Resp {
    let mut resp = Response::new(apus_http::empty());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

/// XML text with its five special characters escaped.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A query string's parameters, decoded (`+` stays itself, as S3 signs
/// it).
fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| apus_proto::path::percent_decode(s).unwrap_or_else(|_| s.to_string());
            (d(k), d(v))
        })
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Sub-resources this layer does not serve yet.
const UNSERVED: &[&str] = &[
    "acl",
    "cors",
    "delete",
    "lifecycle",
    "logging",
    "notification",
    "object-lock",
    "policy",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versioning",
    "versionId",
    "versions",
    "website",
    "partNumber",
];

/// Swift's percent-encoding of a path segment.
fn quote(s: &str) -> String {
    apus_proto::quote(s)
}

/// S3's ISO 8601 time from Swift's listing time (`2026-12-06T14:13:57.123456`).
fn iso_time(listing: &str) -> String {
    let base = listing.get(..19).unwrap_or("1970-01-01T00:00:00");
    let millis = listing.get(20..23).unwrap_or("000");
    format!("{base}.{millis}Z")
}

/// Copies a Swift answer's object headers into S3's: user metadata as
/// `x-amz-meta-*`, the ETag quoted, the rest as is.
fn s3_object_headers(from: &HeaderMap, to: &mut HeaderMap) {
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

/// A body that hashes itself as it streams and fails at its end when the
/// SHA-256 differs from what the client signed.
struct CheckedBody {
    inner: apus_http::Body,
    hasher: Option<Sha256>,
    expected: String,
}

impl http_body::Body for CheckedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(h)) = (frame.data_ref(), this.hasher.as_mut()) {
                    h.update(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                if let Some(h) = this.hasher.take() {
                    let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
                    if got != this.expected {
                        return Poll::Ready(Some(Err(std::io::Error::other(
                            "XAmzContentSHA256Mismatch",
                        ))));
                    }
                }
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Service for S3Api {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let (parts, body) = req.into_parts();
        let auth = match AuthRequest::parse(&parts, &self.auth) {
            Ok(None) => return self.next.call(Req::from_parts(parts, body)),
            Ok(Some(a)) => a,
            Err(e) => return Box::pin(async move { error(e) }),
        };
        Box::pin(async move {
            let Some(user) = self.users.get(&auth.access_key) else {
                return error(S3Error::invalid_access_key_id(&auth.access_key));
            };
            if let Err(e) = apus_s3::verify(&auth, &user.secret, now_secs()) {
                return error(e);
            }
            if auth.payload.is_streaming() {
                return error(S3Error::with_message(
                    ErrorCode::NotImplemented,
                    "aws-chunked bodies are not supported yet",
                ));
            }
            let body = match &auth.payload {
                PayloadHash::Sha256(expected) => CheckedBody {
                    inner: body,
                    hasher: Some(Sha256::new()),
                    expected: expected.clone(),
                }
                .boxed(),
                _ => body,
            };
            let mut req = Req::from_parts(parts, body);
            env_mut(&mut req).s3_user = Some(auth.access_key.clone());
            self.handle(req, &user.account_id).await
        })
    }
}

/// The bucket and key of a path-style request (`/bucket/key`), decoded.
fn bucket_and_key(path: &str) -> (Option<String>, Option<String>) {
    let decoded = apus_proto::path::percent_decode(path).unwrap_or_else(|_| path.to_string());
    let rest = decoded.strip_prefix('/').unwrap_or(&decoded);
    match rest.split_once('/') {
        None if rest.is_empty() => (None, None),
        None => (Some(rest.to_string()), None),
        Some((b, "")) => (Some(b.to_string()), None),
        Some((b, k)) => (Some(b.to_string()), Some(k.to_string())),
    }
}

/// S3's bucket name rules (s3api's `validate_bucket_name`, DNS-compliant).
fn valid_bucket(name: &str) -> bool {
    let len_ok = (3..=63).contains(&name.len());
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' || c == '_');
    let ends_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    len_ok && chars_ok && ends_ok && !name.contains("..") && !name.contains(".-")
}

impl S3Api {
    /// Sends a Swift request down the pipeline, as the client's request.
    async fn swift(
        &self,
        ext: &http::Extensions,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: apus_http::Body,
    ) -> Resp {
        let mut req = Req::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = match path.parse() {
            Ok(u) => u,
            Err(_) => return error(S3Error::new(ErrorCode::InvalidURI)),
        };
        *req.headers_mut() = headers;
        *req.extensions_mut() = ext.clone();
        self.next.call(req).await
    }

    async fn handle(&self, req: Req, account: &str) -> Resp {
        let params = query_params(req.uri().query());
        if let Some((name, _)) = params.iter().find(|(k, _)| UNSERVED.contains(&k.as_str())) {
            return error(S3Error::with_message(
                ErrorCode::NotImplemented,
                format!("The {name} sub-resource is not supported yet"),
            ));
        }
        let (bucket, key) = bucket_and_key(req.uri().path());
        match (bucket, key) {
            (None, _) if req.method() == Method::GET => self.list_buckets(&req, account).await,
            (None, _) => error(S3Error::method_not_allowed(
                req.method().as_str(),
                "SERVICE",
            )),
            (Some(b), None) => self.bucket(req, account, &b, &params).await,
            (Some(b), Some(k)) => self.object(req, account, &b, &k).await,
        }
    }

    async fn list_buckets(&self, req: &Req, account: &str) -> Resp {
        let path = format!("/v1/{account}?format=json");
        let resp = self
            .swift(
                req.extensions(),
                Method::GET,
                &path,
                HeaderMap::new(),
                apus_http::empty(),
            )
            .await;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            // An account never written to has no buckets.
        } else if !status.is_success() {
            return swift_error(status, None, None);
        }
        let listing = read_json(resp).await.unwrap_or(serde_json::Value::Null);
        let owner = req
            .extensions()
            .get::<crate::service::Env>()
            .and_then(|e| e.s3_user.clone())
            .unwrap_or_default();
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult xmlns=\"{XMLNS}\">\
             <Owner><ID>{o}</ID><DisplayName>{o}</DisplayName></Owner><Buckets>",
            o = esc(&owner)
        );
        for c in listing.as_array().map(Vec::as_slice).unwrap_or_default() {
            let name = c["name"].as_str().unwrap_or_default();
            let modified = c["last_modified"]
                .as_str()
                .unwrap_or("2009-02-03T16:45:09.000000");
            let _ = write!(
                out,
                "<Bucket><Name>{}</Name><CreationDate>{}</CreationDate></Bucket>",
                esc(name),
                iso_time(modified)
            );
        }
        out.push_str("</Buckets></ListAllMyBucketsResult>");
        xml_response(StatusCode::OK, out)
    }

    async fn bucket(
        &self,
        req: Req,
        account: &str,
        bucket: &str,
        params: &[(String, String)],
    ) -> Resp {
        let path = format!("/v1/{account}/{}", quote(bucket));
        match *req.method() {
            Method::PUT => {
                if !valid_bucket(bucket) {
                    return error(S3Error::invalid_bucket_name(bucket));
                }
                let resp = self
                    .swift(
                        req.extensions(),
                        Method::PUT,
                        &path,
                        HeaderMap::new(),
                        apus_http::empty(),
                    )
                    .await;
                match resp.status() {
                    StatusCode::CREATED => {
                        let mut r = empty_response(StatusCode::OK);
                        set_header(r.headers_mut(), "location", &format!("/{bucket}"));
                        r
                    }
                    StatusCode::ACCEPTED => error(S3Error::bucket_already_owned_by_you(bucket)),
                    s => swift_error(s, Some(bucket), None),
                }
            }
            Method::HEAD => {
                let resp = self
                    .swift(
                        req.extensions(),
                        Method::HEAD,
                        &path,
                        HeaderMap::new(),
                        apus_http::empty(),
                    )
                    .await;
                match resp.status() {
                    s if s.is_success() => empty_response(StatusCode::OK),
                    // HEAD answers carry no body: the status alone.
                    s => {
                        let e = swift_s3_error(s, Some(bucket), None);
                        empty_response(e.status())
                    }
                }
            }
            Method::DELETE => {
                let resp = self
                    .swift(
                        req.extensions(),
                        Method::DELETE,
                        &path,
                        HeaderMap::new(),
                        apus_http::empty(),
                    )
                    .await;
                match resp.status() {
                    s if s.is_success() => empty_response(StatusCode::NO_CONTENT),
                    StatusCode::CONFLICT => {
                        error(S3Error::new(ErrorCode::BucketNotEmpty).detail("BucketName", bucket))
                    }
                    s => swift_error(s, Some(bucket), None),
                }
            }
            Method::GET if params.iter().any(|(k, _)| k == "location") => {
                let resp = self
                    .swift(
                        req.extensions(),
                        Method::HEAD,
                        &path,
                        HeaderMap::new(),
                        apus_http::empty(),
                    )
                    .await;
                if !resp.status().is_success() {
                    return swift_error(resp.status(), Some(bucket), None);
                }
                // us-east-1 is S3's empty location constraint.
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"{XMLNS}\"/>"
                );
                xml_response(StatusCode::OK, body)
            }
            Method::GET => self.list_objects(&req, &path, bucket, params).await,
            _ => error(S3Error::method_not_allowed(req.method().as_str(), "BUCKET")),
        }
    }

    async fn list_objects(
        &self,
        req: &Req,
        path: &str,
        bucket: &str,
        params: &[(String, String)],
    ) -> Resp {
        let v2 = param(params, "list-type") == Some("2");
        let max_keys = match param(params, "max-keys") {
            None => MAX_KEYS,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 0 => (n as usize).min(MAX_KEYS),
                _ => return error(S3Error::invalid_argument("max-keys", v)),
            },
        };
        let prefix = param(params, "prefix").unwrap_or_default();
        let delimiter = param(params, "delimiter").unwrap_or_default();
        let url_encode = match param(params, "encoding-type") {
            None => false,
            Some("url") => true,
            Some(v) => return error(S3Error::invalid_argument("encoding-type", v)),
        };
        let marker = if v2 {
            match param(params, "continuation-token") {
                Some(t) => {
                    use base64::Engine;
                    match base64::engine::general_purpose::STANDARD
                        .decode(t)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                    {
                        Some(m) => m,
                        None => return error(S3Error::invalid_argument("continuation-token", t)),
                    }
                }
                None => param(params, "start-after").unwrap_or_default().to_string(),
            }
        } else {
            param(params, "marker").unwrap_or_default().to_string()
        };
        let mut query = format!("format=json&limit={}", max_keys + 1);
        for (k, v) in [
            ("prefix", prefix),
            ("delimiter", delimiter),
            ("marker", &marker),
        ] {
            if !v.is_empty() {
                let _ = write!(query, "&{k}={}", quote(v));
            }
        }
        let resp = self
            .swift(
                req.extensions(),
                Method::GET,
                &format!("{path}?{query}"),
                HeaderMap::new(),
                apus_http::empty(),
            )
            .await;
        if !resp.status().is_success() {
            return swift_error(resp.status(), Some(bucket), None);
        }
        let listing = read_json(resp).await.unwrap_or(serde_json::Value::Null);
        let mut entries: Vec<serde_json::Value> = listing.as_array().cloned().unwrap_or_default();
        let truncated = entries.len() > max_keys;
        entries.truncate(max_keys);
        let enc = |s: &str| {
            if url_encode {
                esc(&quote(s))
            } else {
                esc(s)
            }
        };
        let owner = req
            .extensions()
            .get::<crate::service::Env>()
            .and_then(|e| e.s3_user.clone())
            .unwrap_or_default();
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"{XMLNS}\">\
             <Name>{}</Name><Prefix>{}</Prefix>",
            esc(bucket),
            enc(prefix)
        );
        if v2 {
            if let Some(sa) = param(params, "start-after") {
                let _ = write!(out, "<StartAfter>{}</StartAfter>", enc(sa));
            }
            if let Some(t) = param(params, "continuation-token") {
                let _ = write!(out, "<ContinuationToken>{}</ContinuationToken>", esc(t));
            }
            let _ = write!(out, "<KeyCount>{}</KeyCount>", entries.len());
        } else {
            let _ = write!(out, "<Marker>{}</Marker>", enc(&marker));
        }
        let last_name = entries
            .last()
            .and_then(|e| e["name"].as_str().or_else(|| e["subdir"].as_str()))
            .unwrap_or_default()
            .to_string();
        if truncated {
            if v2 {
                use base64::Engine;
                let token = base64::engine::general_purpose::STANDARD.encode(last_name.as_bytes());
                let _ = write!(
                    out,
                    "<NextContinuationToken>{}</NextContinuationToken>",
                    esc(&token)
                );
            } else if !delimiter.is_empty() {
                let _ = write!(out, "<NextMarker>{}</NextMarker>", enc(&last_name));
            }
        }
        let _ = write!(out, "<MaxKeys>{max_keys}</MaxKeys>");
        if !delimiter.is_empty() {
            let _ = write!(out, "<Delimiter>{}</Delimiter>", enc(delimiter));
        }
        if url_encode {
            out.push_str("<EncodingType>url</EncodingType>");
        }
        let _ = write!(out, "<IsTruncated>{truncated}</IsTruncated>");
        let fetch_owner = !v2 || param(params, "fetch-owner") == Some("true");
        for e in &entries {
            if let Some(name) = e["name"].as_str() {
                let _ = write!(
                    out,
                    "<Contents><Key>{}</Key><LastModified>{}</LastModified>\
                     <ETag>&quot;{}&quot;</ETag><Size>{}</Size>",
                    enc(name),
                    iso_time(e["last_modified"].as_str().unwrap_or_default()),
                    esc(e["hash"].as_str().unwrap_or_default()),
                    e["bytes"].as_u64().unwrap_or(0)
                );
                if fetch_owner {
                    let _ = write!(
                        out,
                        "<Owner><ID>{o}</ID><DisplayName>{o}</DisplayName></Owner>",
                        o = esc(&owner)
                    );
                }
                out.push_str("<StorageClass>STANDARD</StorageClass></Contents>");
            }
        }
        for e in &entries {
            if let Some(subdir) = e["subdir"].as_str() {
                let _ = write!(
                    out,
                    "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
                    enc(subdir)
                );
            }
        }
        out.push_str("</ListBucketResult>");
        xml_response(StatusCode::OK, out)
    }

    async fn object(&self, req: Req, account: &str, bucket: &str, key: &str) -> Resp {
        let path = format!("/v1/{account}/{}/{}", quote(bucket), quote(key));
        let method = req.method().clone();
        let mut headers = HeaderMap::new();
        for (name, value) in req.headers() {
            let n = name.as_str();
            if let Some(meta) = n.strip_prefix("x-amz-meta-") {
                if let Ok(h) =
                    http::HeaderName::from_bytes(format!("x-object-meta-{meta}").as_bytes())
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
        if method == Method::PUT {
            if let Some(md5) = header_str(req.headers(), "content-md5") {
                use base64::Engine;
                match base64::engine::general_purpose::STANDARD.decode(md5.trim()) {
                    Ok(b) if b.len() == 16 => {
                        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                        set_header(&mut headers, "etag", &hex);
                    }
                    _ => return error(S3Error::new(ErrorCode::InvalidDigest)),
                }
            }
        }
        let ext = req.extensions().clone();
        let resp = self
            .swift(&ext, method.clone(), &path, headers, req.into_body())
            .await;
        let status = resp.status();
        match method {
            Method::PUT => match status {
                StatusCode::CREATED => {
                    let mut r = empty_response(StatusCode::OK);
                    s3_object_headers(resp.headers(), r.headers_mut());
                    r.headers_mut()
                        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
                    r
                }
                StatusCode::UNPROCESSABLE_ENTITY => error(S3Error::new(ErrorCode::BadDigest)),
                s => swift_error(s, Some(bucket), Some(key)),
            },
            Method::DELETE => match status {
                s if s.is_success() => empty_response(StatusCode::NO_CONTENT),
                StatusCode::NOT_FOUND => {
                    // S3 deletes what is not there too, unless the bucket
                    // itself is missing.
                    let container = format!("/v1/{account}/{}", quote(bucket));
                    let probe = self
                        .swift(
                            &ext,
                            Method::HEAD,
                            &container,
                            HeaderMap::new(),
                            apus_http::empty(),
                        )
                        .await;
                    if probe.status() == StatusCode::NOT_FOUND {
                        error(S3Error::no_such_bucket(bucket))
                    } else {
                        empty_response(StatusCode::NO_CONTENT)
                    }
                }
                s => swift_error(s, Some(bucket), Some(key)),
            },
            Method::GET | Method::HEAD => {
                if status.is_success() || status == StatusCode::NOT_MODIFIED {
                    let (parts, body) = resp.into_parts();
                    let mut r = Response::new(body);
                    *r.status_mut() = parts.status;
                    s3_object_headers(&parts.headers, r.headers_mut());
                    r
                } else if method == Method::HEAD {
                    let e = swift_s3_error(status, Some(bucket), Some(key));
                    empty_response(e.status())
                } else {
                    swift_error(status, Some(bucket), Some(key))
                }
            }
            _ => error(S3Error::method_not_allowed(method.as_str(), "OBJECT")),
        }
    }
}

async fn read_json(resp: Resp) -> Option<serde_json::Value> {
    let body = apus_http::body::collect_limited(resp.into_body(), MAX_LISTING)
        .await
        .ok()?;
    serde_json::from_slice(&body).ok()
}

/// The S3 error for a Swift status.
fn swift_s3_error(status: StatusCode, bucket: Option<&str>, key: Option<&str>) -> S3Error {
    match status {
        StatusCode::NOT_FOUND => match key {
            Some(k) => S3Error::no_such_key(k),
            None => S3Error::no_such_bucket(bucket.unwrap_or_default()),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            S3Error::access_denied("Access Denied.")
        }
        StatusCode::PRECONDITION_FAILED => S3Error::new(ErrorCode::PreconditionFailed),
        StatusCode::RANGE_NOT_SATISFIABLE => S3Error::new(ErrorCode::InvalidRange),
        StatusCode::PAYLOAD_TOO_LARGE => S3Error::new(ErrorCode::EntityTooLarge),
        StatusCode::LENGTH_REQUIRED => S3Error::new(ErrorCode::MissingContentLength),
        StatusCode::BAD_REQUEST => S3Error::new(ErrorCode::InvalidArgument),
        StatusCode::SERVICE_UNAVAILABLE => S3Error::new(ErrorCode::ServiceUnavailable),
        // Swift's ratelimit answers 498.
        s if s == StatusCode::TOO_MANY_REQUESTS || s.as_u16() == 498 => {
            S3Error::new(ErrorCode::SlowDown)
        }
        _ => S3Error::new(ErrorCode::InternalError),
    }
}

fn swift_error(status: StatusCode, bucket: Option<&str>, key: Option<&str>) -> Resp {
    error(swift_s3_error(status, bucket, key))
}
