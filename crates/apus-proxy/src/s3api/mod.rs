//! Swift's `s3api`: S3 requests on the same objects, entered before the
//! auth filter as in Swift's pipeline.
//!
//! A request carrying S3 authentication (`apus_s3::AuthRequest::parse`:
//! SigV4 or SigV2, header or query) is verified here against the
//! tempauth users (access key `account:user`, secret the user's key);
//! the auth filter then takes the user from [`Env::s3_user`] instead of a
//! token. A request without S3 authentication passes on untouched.
//!
//! The verified request becomes an [`S3Request`] and goes to the
//! controller its sub-resources name, as in Swift's `S3Request.controller`
//! (service, bucket, object, location, ...). Controllers speak to Swift
//! through [`S3Api::get_response`], which sends a Swift request down the
//! rest of the pipeline as the client's and turns an unexpected Swift
//! status into S3's error for that method and resource (Swift's
//! `_swift_success_codes`/`_swift_error_codes`). Every answer carries the
//! transaction id as `x-amz-request-id` and `x-amz-id-2`.
//!
//! A signed payload hash (`x-amz-content-sha256`) is checked as the body
//! streams: a body that does not match ends in an error and nothing is
//! stored.
//!
//! [`Env::s3_user`]: crate::service::Env::s3_user

mod bucket;
mod multi_delete;
mod obj;
mod service;
mod subresource;
mod versioning;
mod xml_body;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use apus_s3::{AuthConfig, AuthRequest, ErrorCode, PayloadHash, S3Error, Secret};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use crate::config::TempAuthConfig;
use crate::service::{env_mut, set_header, BoxFuture, Env, Req, Resp, Service, SharedService};

/// The S3 XML namespace.
pub(crate) const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// The XML declaration every S3 document starts with.
pub(crate) const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
/// The largest listing answer read back to build an S3 document.
pub(crate) const MAX_LISTING: usize = 16 * 1024 * 1024;
/// S3's default and largest `max-keys`.
pub(crate) const MAX_KEYS: usize = 1000;

struct S3User {
    secret: Secret,
    /// The Swift account the user's buckets live in (`AUTH_test`).
    account_id: String,
}

pub struct S3Api {
    next: SharedService,
    auth: AuthConfig,
    users: HashMap<String, S3User>,
    /// Whether Swift's object versioning runs below (what `/info` calls
    /// `object_versioning`): S3 versioning is built on it.
    object_versioning: bool,
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
            object_versioning: false,
        }
    }

    /// Serves bucket versioning on Swift's object versioning.
    pub fn with_object_versioning(mut self, on: bool) -> Self {
        self.object_versioning = on;
        self
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One verified S3 request, as its controller sees it.
pub(crate) struct S3Request {
    pub method: Method,
    pub headers: HeaderMap,
    /// The query's parameters, decoded, in order.
    pub params: Vec<(String, String)>,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// The Swift account the user's buckets live in (`AUTH_test`).
    pub account: String,
    /// The authenticated `account:user` (S3's owner id).
    pub user_id: String,
    /// The client request's extensions (its [`Env`]), given to every
    /// Swift subrequest.
    pub ext: http::Extensions,
    body: Option<apus_http::Body>,
    /// Why the body was refused, once it was.
    pub body_fault: BodyFault,
}

impl S3Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        param(&self.params, name)
    }

    pub fn has_param(&self, name: &str) -> bool {
        self.params.iter().any(|(k, _)| k == name)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        crate::service::header_str(&self.headers, name)
    }

    /// The request body; empty once taken.
    pub fn take_body(&mut self) -> apus_http::Body {
        self.body.take().unwrap_or_else(apus_http::empty)
    }

    pub fn bucket_name(&self) -> &str {
        self.bucket.as_deref().unwrap_or_default()
    }

    pub fn key_name(&self) -> &str {
        self.key.as_deref().unwrap_or_default()
    }

    /// The Swift path of `container` and `obj` in the user's account.
    pub fn swift_path(&self, container: Option<&str>, obj: Option<&str>) -> String {
        let mut path = format!("/v1/{}", self.account);
        if let Some(c) = container {
            path.push('/');
            path.push_str(&quote(c));
            if let Some(o) = obj {
                path.push('/');
                path.push_str(&quote(o));
            }
        }
        path
    }
}

/// Where a body wrapper records why the client's body was refused (a
/// payload hash or chunk signature that does not match), so that the
/// Swift error it causes is answered as S3's error for the body (Swift's
/// `translate_read_errors`).
#[derive(Clone, Default)]
pub(crate) struct BodyFault(Arc<Mutex<Option<S3Error>>>);

impl BodyFault {
    pub fn set(&self, e: S3Error) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert(e);
        }
    }

    pub fn take(&self) -> Option<S3Error> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// A body that hashes itself as it streams and fails at its end when the
/// SHA-256 differs from what the client signed.
struct CheckedBody {
    inner: apus_http::Body,
    hasher: Option<Sha256>,
    expected: String,
    fault: BodyFault,
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
                        this.fault.set(
                            S3Error::new(ErrorCode::XAmzContentSHA256Mismatch)
                                .detail("ClientComputedContentSHA256", this.expected.clone())
                                .detail("S3ComputedContentSHA256", got),
                        );
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
            Err(e) => {
                let id = parts
                    .extensions
                    .get::<Env>()
                    .map(|e| e.trans_id.clone())
                    .unwrap_or_default();
                let head = parts.method == Method::HEAD;
                return Box::pin(async move { finish(Err(e), &id, head) });
            }
        };
        Box::pin(async move {
            let trans_id = parts
                .extensions
                .get::<Env>()
                .map(|e| e.trans_id.clone())
                .unwrap_or_default();
            let head = parts.method == Method::HEAD;
            let result = self.authenticated(parts, body, auth).await;
            finish(result, &trans_id, head)
        })
    }
}

/// The answer as the client gets it: errors as S3's XML (no body for a
/// HEAD), and the request id headers on everything.
fn finish(result: Result<Resp, S3Error>, trans_id: &str, head: bool) -> Resp {
    let mut resp = match result {
        Ok(r) => r,
        Err(e) if head => empty_response(e.status()),
        Err(e) => {
            let body = e.to_xml(Some(trans_id));
            let mut resp = xml_response(e.status(), body);
            *resp.status_mut() = e.status();
            resp
        }
    };
    // A Location stays as the controller wrote it (s3api's
    // `swift.leave_relative_location`).
    resp.extensions_mut()
        .insert(crate::service::RelativeLocation);
    let h = resp.headers_mut();
    set_header(h, "x-amz-request-id", trans_id);
    set_header(h, "x-amz-id-2", trans_id);
    if !h.contains_key("x-openstack-request-id") {
        set_header(h, "x-openstack-request-id", trans_id);
    }
    resp
}

impl S3Api {
    async fn authenticated(
        &self,
        parts: http::request::Parts,
        body: apus_http::Body,
        auth: AuthRequest,
    ) -> Result<Resp, S3Error> {
        let Some(user) = self.users.get(&auth.access_key) else {
            return Err(S3Error::invalid_access_key_id(&auth.access_key));
        };
        apus_s3::verify(&auth, &user.secret, now_secs())?;
        if auth.payload.is_streaming() {
            return Err(S3Error::with_message(
                ErrorCode::NotImplemented,
                "aws-chunked bodies are not supported yet",
            ));
        }
        let body_fault = BodyFault::default();
        let body = match &auth.payload {
            PayloadHash::Sha256(expected) => CheckedBody {
                inner: body,
                hasher: Some(Sha256::new()),
                expected: expected.clone(),
                fault: body_fault.clone(),
            }
            .boxed(),
            _ => body,
        };
        let mut req = Req::from_parts(parts, body);
        env_mut(&mut req).s3_user = Some(auth.access_key.clone());
        let (parts, body) = req.into_parts();
        let (bucket, key) = bucket_and_key(parts.uri.path());
        let req = S3Request {
            method: parts.method,
            headers: parts.headers,
            params: query_params(parts.uri.query()),
            bucket,
            key,
            account: user.account_id.clone(),
            user_id: auth.access_key,
            ext: parts.extensions,
            body: Some(body),
            body_fault,
        };
        self.dispatch(req).await
    }

    /// The controller the request's sub-resources name (Swift's
    /// `S3Request.controller`).
    async fn dispatch(&self, req: S3Request) -> Result<Resp, S3Error> {
        if let Some(name) = UNSUPPORTED.iter().find(|n| req.has_param(n)) {
            return Err(not_implemented(name));
        }
        if req.bucket.is_none() {
            return service::handle(self, req).await;
        }
        if let Some(name) = NOT_YET.iter().find(|n| req.has_param(n)) {
            return Err(not_implemented(name));
        }
        if req.has_param("delete") {
            return multi_delete::handle(self, req).await;
        }
        if req.has_param("location") {
            return bucket::location(self, req).await;
        }
        if req.has_param("logging") {
            return subresource::logging(self, req).await;
        }
        if req.has_param("versioning") {
            return versioning::handle(self, req).await;
        }
        if req.has_param("tagging") {
            return subresource::tagging(req);
        }
        if req.has_param("object-lock") {
            return subresource::object_lock(req);
        }
        if req.key.is_some() {
            return obj::handle(self, req).await;
        }
        bucket::handle(self, req).await
    }

    /// Sends a Swift request down the pipeline as the client's, and
    /// answers it as is.
    pub(crate) async fn swift(
        &self,
        req: &S3Request,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: apus_http::Body,
    ) -> Result<Resp, S3Error> {
        let mut sw = Req::new(body);
        *sw.method_mut() = method;
        *sw.uri_mut() = path
            .parse()
            .map_err(|_| S3Error::new(ErrorCode::InvalidURI))?;
        *sw.headers_mut() = headers;
        *sw.extensions_mut() = req.ext.clone();
        Ok(self.next.call(sw).await)
    }

    /// Swift's `S3Request.get_response`: a Swift request on `container`
    /// and `obj` of the user's account (`query` without its `?`); a status
    /// Swift's s3api expects for that method and resource is the answer,
    /// any other is turned into S3's error.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn get_response(
        &self,
        req: &S3Request,
        method: Method,
        container: Option<&str>,
        obj: Option<&str>,
        query: Option<&str>,
        headers: HeaderMap,
        body: apus_http::Body,
    ) -> Result<Resp, S3Error> {
        let mut path = req.swift_path(container, obj);
        if let Some(q) = query {
            path.push('?');
            path.push_str(q);
        }
        let resp = self
            .swift(req, method.clone(), &path, headers, body)
            .await?;
        let status = resp.status();
        if success_codes(&method, container, obj).contains(&status.as_u16()) {
            return Ok(resp);
        }
        if let Some(e) = req.body_fault.take() {
            return Err(e);
        }
        Err(self.swift_error(req, &method, container, obj, resp).await)
    }

    /// S3's error for a Swift answer `get_response` did not expect.
    async fn swift_error(
        &self,
        req: &S3Request,
        method: &Method,
        container: Option<&str>,
        obj: Option<&str>,
        resp: Resp,
    ) -> S3Error {
        let status = resp.status();
        let c = container.unwrap_or_default();
        match (container.is_some(), obj, method.as_str(), status.as_u16()) {
            (true, None, "HEAD" | "GET" | "POST", 404) => return S3Error::no_such_bucket(c),
            (true, None, "DELETE", 404) => return S3Error::no_such_bucket(c),
            (true, None, "DELETE", 409) => {
                return S3Error::new(ErrorCode::BucketNotEmpty).detail("BucketName", c)
            }
            (true, None, "PUT", 202) => return S3Error::bucket_already_owned_by_you(c),
            (true, Some(o), "HEAD" | "GET" | "POST", 404) => {
                // A missing key in a missing bucket is NoSuchBucket.
                if c.ends_with(MULTIUPLOAD_SUFFIX) || self.bucket_exists(req, c).await {
                    return S3Error::no_such_key(o);
                }
                return S3Error::no_such_bucket(c);
            }
            (true, Some(_), "HEAD" | "GET" | "POST" | "PUT", 412) => {
                return S3Error::new(ErrorCode::PreconditionFailed)
            }
            (true, Some(_), "PUT", 404) => return S3Error::no_such_bucket(c),
            (true, Some(_), "PUT", 422) => return S3Error::new(ErrorCode::BadDigest),
            (true, Some(_), "PUT", 413) => return S3Error::new(ErrorCode::EntityTooLarge),
            (true, Some(_), "PUT", 411) => return S3Error::new(ErrorCode::MissingContentLength),
            (true, Some(_), "PUT", 408 | 499) => {
                return S3Error::with_message(
                    ErrorCode::RequestTimeout,
                    "Your socket connection to the server was not read from or written to within the timeout period.",
                )
            }
            (true, Some(o), "DELETE", 404) => return S3Error::no_such_key(o),
            _ => {}
        }
        match status.as_u16() {
            400 => {
                let body = read_text(resp).await;
                S3Error::with_message(ErrorCode::InvalidRequest, body)
            }
            401 => S3Error::new(ErrorCode::SignatureDoesNotMatch),
            403 => S3Error::access_denied("Access Denied."),
            416 => S3Error::new(ErrorCode::InvalidRange),
            503 => S3Error::new(ErrorCode::ServiceUnavailable),
            429 | 498 => S3Error::new(ErrorCode::SlowDown),
            409 if *method == Method::GET => S3Error::with_message(
                ErrorCode::InternalError,
                "The multipart upload is broken: a segment is missing",
            ),
            409 => S3Error::new(ErrorCode::ServiceUnavailable),
            s => S3Error::with_message(
                ErrorCode::InternalError,
                format!("unexpected status code {s}"),
            ),
        }
    }

    /// Whether the user's bucket `name` exists.
    pub(crate) async fn bucket_exists(&self, req: &S3Request, name: &str) -> bool {
        let path = req.swift_path(Some(name), None);
        match self
            .swift(
                req,
                Method::HEAD,
                &path,
                HeaderMap::new(),
                apus_http::empty(),
            )
            .await
        {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }
}

/// The container of a bucket's multipart upload segments is the bucket's
/// name with this suffix.
pub(crate) const MULTIUPLOAD_SUFFIX: &str = "+segments";

/// The statuses `get_response` answers as they are (Swift's
/// `_swift_success_codes`).
fn success_codes(method: &Method, container: Option<&str>, obj: Option<&str>) -> &'static [u16] {
    match (container.is_some(), obj.is_some(), method.as_str()) {
        (false, _, "GET") => &[200],
        (true, false, "HEAD") => &[204],
        (true, false, "GET") => &[200, 204],
        (true, false, "PUT") => &[201],
        (true, false, "POST") => &[204],
        (true, false, "DELETE") => &[204],
        (true, true, "HEAD" | "GET") => &[200, 206, 304],
        (true, true, "PUT") => &[201, 202],
        (true, true, "POST") => &[202],
        (true, true, "DELETE") => &[200, 204],
        _ => &[],
    }
}

/// Sub-resources Swift's s3api answers `NotImplemented` for.
const UNSUPPORTED: &[&str] = &[
    "notification",
    "policy",
    "publicAccessBlock",
    "requestPayment",
    "torrent",
    "website",
    "cors",
    "restore",
];

/// Sub-resources this layer does not serve yet.
const NOT_YET: &[&str] = &[
    "acl",
    "partNumber",
    "uploadId",
    "uploads",
    // Swift has no controller for these: it lets them fall through to
    // the bucket or object one (so that DELETE ?lifecycle would delete
    // the bucket). Refusing them is safer.
    "lifecycle",
    "replication",
    "retention",
];

fn not_implemented(name: &str) -> S3Error {
    S3Error::with_message(
        ErrorCode::NotImplemented,
        format!("The requested resource ({name}) is not implemented"),
    )
}

pub(crate) fn xml_response(status: StatusCode, body: String) -> Resp {
    let len = body.len();
    let mut resp = Response::new(apus_http::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

pub(crate) fn empty_response(status: StatusCode) -> Resp {
    let mut resp = Response::new(apus_http::empty());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
    resp
}

/// XML text with its special characters escaped.
pub(crate) fn esc(text: &str) -> String {
    apus_s3::error::escape(text)
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

pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Swift's percent-encoding of a path segment.
pub(crate) fn quote(s: &str) -> String {
    apus_proto::quote(s)
}

/// S3's ISO 8601 time from Swift's listing time (`2026-12-06T14:13:57.123456`).
pub(crate) fn iso_time(listing: &str) -> String {
    let base = listing.get(..19).unwrap_or("1970-01-01T00:00:00");
    let millis = listing.get(20..23).unwrap_or("000");
    format!("{base}.{millis}Z")
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

pub(crate) async fn read_json(resp: Resp) -> Option<serde_json::Value> {
    let body = apus_http::body::collect_limited(resp.into_body(), MAX_LISTING)
        .await
        .ok()?;
    serde_json::from_slice(&body).ok()
}

async fn read_text(resp: Resp) -> String {
    match apus_http::body::collect_limited(resp.into_body(), 64 * 1024).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    }
}
