//! Swift's `s3api`: S3 requests on the same objects, entered before the
//! auth filter as in Swift's pipeline.
//!
//! A request carrying S3 authentication (`apus_s3::AuthRequest::parse`:
//! SigV4 or SigV2, header or query) is verified here against the
//! tempauth users (access key `account:user`, secret the user's key);
//! the auth filter then takes the user from [`Env::s3_user`] instead of a
//! token. When the pipeline authenticates with Keystone, an access key
//! that is no tempauth user's is an EC2 credential, checked as Swift's
//! `s3token` does (see [`keystone_user`]); its owner goes down the
//! pipeline as a Keystone identity. A request without S3 authentication
//! passes on untouched.
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

pub(crate) mod acl;
mod bucket;
mod copy;
mod multi_delete;
mod multi_upload;
mod obj;
mod service;
mod subresource;
mod versioning;
mod xml_body;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use apus_s3::input::{InputError, S3Input};
use apus_s3::{AuthConfig, AuthRequest, ErrorCode, S3Error, Secret};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Body as _;
use http_body::Frame;
use http_body_util::BodyExt;

use crate::config::ProxyConfig;
use crate::service::{env_mut, set_header, BoxFuture, Env, Req, Resp, Service, SharedService};

/// The S3 XML namespace.
pub(crate) const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
/// The XML declaration every S3 document starts with.
pub(crate) const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
/// The largest listing answer read back to build an S3 document.
pub(crate) const MAX_LISTING: usize = 16 * 1024 * 1024;

/// How long a Keystone EC2 credential's secret and owner are trusted
/// before Keystone is asked again (Swift's `secret_cache_duration`).
const SECRET_CACHE_TIME: std::time::Duration = std::time::Duration::from_secs(60);
/// At most this many EC2 credentials are remembered.
const SECRET_CACHE_SIZE: usize = 10_000;

/// What Keystone told us of an EC2 credential, for a while.
struct CachedEc2 {
    secret: Secret,
    identity: Arc<crate::keystone::KeystoneIdentity>,
    until: std::time::Instant,
}

/// The user a request's S3 signature names, found and verified.
struct Authenticated {
    verified: apus_s3::Verified,
    /// The Swift account the user's buckets live in.
    account_id: String,
    account_owner: bool,
    /// S3's owner id: `account:user` (tempauth), `project:user` (Keystone).
    user_id: String,
    /// The Keystone identity, for the auth filters downstream.
    keystone: Option<Arc<crate::keystone::KeystoneIdentity>>,
}

struct S3User {
    secret: Secret,
    /// The Swift account the user's buckets live in (`AUTH_test`).
    account_id: String,
    /// tempauth makes the user an owner of its account (`.admin`,
    /// `.reseller_admin`): Swift's `swift_owner`, which creating a bucket
    /// takes under S3 ACLs.
    account_owner: bool,
}

/// The `s3api` filter's settings (Swift's `[filter:s3api]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3ApiConfig {
    /// Domains under which `<bucket>.<domain>` names a bucket
    /// (virtual-hosted style); none by default, as in Swift.
    pub storage_domains: Vec<String>,
    /// The region SigV4 scopes must name and GetBucketLocation reports.
    pub location: String,
    /// Seconds a signed request's time may be from ours.
    pub allowable_clock_skew: i64,
    pub max_bucket_listing: usize,
}

impl Default for S3ApiConfig {
    fn default() -> Self {
        S3ApiConfig {
            storage_domains: Vec::new(),
            location: "us-east-1".to_string(),
            allowable_clock_skew: 15 * 60,
            max_bucket_listing: 1000,
        }
    }
}

/// What `/info` says of s3api.
pub fn info(config: &S3ApiConfig) -> serde_json::Value {
    serde_json::json!({
        "max_bucket_listing": config.max_bucket_listing,
        "max_parts_listing": multi_upload::MAX_PARTS_LISTING,
        "max_upload_part_num": multi_upload::MAX_UPLOAD_PART_NUM,
        "max_multi_delete_objects": 1000,
        "allow_multipart_uploads": true,
        "min_segment_size": multi_upload::MIN_SEGMENT_SIZE,
        "s3_acl": true,
    })
}

pub struct S3Api {
    next: SharedService,
    auth: AuthConfig,
    users: HashMap<String, S3User>,
    pub(crate) config: S3ApiConfig,
    /// S3 ACLs decide what a user may do (Swift's `s3_acl = yes`, with
    /// `check_bucket_owner = yes`); see [`acl`].
    s3_acl: bool,
    /// Whether Swift's object versioning runs below (what `/info` calls
    /// `object_versioning`): S3 versioning is built on it.
    object_versioning: bool,
    /// Keystone, when the pipeline authenticates with it (`authtoken`):
    /// EC2 credentials then sign S3 requests.
    keystone: Option<Keystone>,
}

struct Keystone {
    client: crate::keystone::client::KeystoneClient,
    config: crate::keystone::KeystoneConfig,
    secrets: Mutex<HashMap<String, CachedEc2>>,
}

impl S3Api {
    pub fn new(proxy: &ProxyConfig, next: SharedService) -> Self {
        let tempauth = &proxy.tempauth;
        let config = proxy.s3api.clone();
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
                        account_owner: u
                            .groups
                            .iter()
                            .any(|g| g == ".admin" || g == ".reseller_admin"),
                    },
                )
            })
            .collect();
        S3Api {
            next,
            auth: AuthConfig {
                location: config.location.clone(),
                allowable_clock_skew: config.allowable_clock_skew,
                storage_domains: config.storage_domains.clone(),
            },
            users,
            config,
            s3_acl: true,
            object_versioning: false,
            keystone: proxy
                .pipeline
                .stages()
                .contains(&"authtoken")
                .then(|| Keystone {
                    client: crate::keystone::client::KeystoneClient::new(proxy.keystone.clone()),
                    config: proxy.keystone.clone(),
                    secrets: Mutex::new(HashMap::new()),
                }),
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
    /// Whether the user owns its Swift account (Swift's `swift_owner`).
    pub account_owner: bool,
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

/// The client's body as it streams through [`S3Input`]: aws-chunked
/// framing removed, signatures, payload hash and checksum verified. The
/// last payload bytes are held back until every check has passed, so a
/// refused body never completes its Swift PUT; the refusal is recorded in
/// the [`BodyFault`] for `get_response` to answer.
struct VerifiedBody {
    inner: apus_http::Body,
    input: S3Input,
    auth: AuthRequest,
    fault: BodyFault,
    held: Vec<u8>,
    done: bool,
}

impl VerifiedBody {
    fn refuse(&mut self, e: InputError) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.done = true;
        self.fault.set(e.to_s3(&self.auth));
        Poll::Ready(Some(Err(std::io::Error::other(
            "the S3 request body was refused",
        ))))
    }

    /// What may go on: everything decoded so far unless the payload is
    /// all in but not yet proven.
    fn release(&mut self) -> Option<Bytes> {
        let hold = !self.input.is_complete() && self.input.payload_remaining() == 0;
        if hold || self.held.is_empty() {
            return None;
        }
        Some(Bytes::from(std::mem::take(&mut self.held)))
    }
}

impl http_body::Body for VerifiedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        // HTTP trailers carry nothing S3 reads.
                        continue;
                    };
                    let mut out = std::mem::take(&mut this.held);
                    let fed = this.input.feed(&data, &mut out);
                    this.held = out;
                    if let Err(e) = fed {
                        return this.refuse(e);
                    }
                    if let Some(b) = this.release() {
                        return Poll::Ready(Some(Ok(Frame::data(b))));
                    }
                }
                Poll::Ready(None) => {
                    if let Err(e) = this.input.finish() {
                        return this.refuse(e);
                    }
                    this.done = true;
                    return match this.release() {
                        Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                        None => Poll::Ready(None),
                    };
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(std::io::Error::other(e))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.input.payload_remaining() + self.held.len() as u64)
    }
}

impl Service for S3Api {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let (parts, body) = req.into_parts();
        let auth = match AuthRequest::parse(&parts, &self.auth) {
            Ok(None) => return self.next.call(Req::from_parts(parts, body)),
            Ok(Some(a)) => Ok(a),
            Err(e) => Err(e),
        };
        let (body, read_all) = TrackedBody::wrap(body);
        let trans_id = parts
            .extensions
            .get::<Env>()
            .map(|e| e.trans_id.clone())
            .unwrap_or_default();
        let head = parts.method == Method::HEAD;
        Box::pin(async move {
            let result = match auth {
                Ok(auth) => self.authenticated(parts, body, auth).await,
                Err(e) => Err(streaming_refused(e, &parts, body).await),
            };
            let mut resp = finish(result, &trans_id, head);
            if !read_all.load(Ordering::Acquire) {
                // The client's body was not read to its end, so the
                // connection cannot carry another request; say so rather
                // than let the client reuse a connection being closed.
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        })
    }
}

/// The client's body, noting when it has been read to its end.
struct TrackedBody {
    inner: apus_http::Body,
    read_all: Arc<AtomicBool>,
}

impl TrackedBody {
    fn wrap(inner: apus_http::Body) -> (apus_http::Body, Arc<AtomicBool>) {
        let read_all = Arc::new(AtomicBool::new(inner.is_end_stream()));
        let body = TrackedBody {
            inner,
            read_all: read_all.clone(),
        };
        (body.boxed(), read_all)
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read_all.store(true, Ordering::Release);
        }
        polled.map(|f| f.map(|r| r.map_err(std::io::Error::other)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The largest refused aws-chunked body hashed for its error: Swift's
/// `max_file_size`.
const MAX_HASHED_REFUSAL: u64 = 5 * 1024 * 1024 * 1024 + 2;

/// An aws-chunked body outside a SigV4 header signature is refused as a
/// payload hash mismatch; Swift words it with the hash of the body as
/// sent (or, when the decoded length is below the sent one, as an
/// incomplete body). The body is hashed as it streams, never held.
async fn streaming_refused(
    e: S3Error,
    parts: &http::request::Parts,
    body: apus_http::Body,
) -> S3Error {
    if e.code != ErrorCode::XAmzContentSHA256Mismatch
        || e.detail_text("S3ComputedContentSHA256").is_some()
    {
        return e;
    }
    let number = |name: &str| {
        crate::service::header_str(&parts.headers, name).and_then(|v| v.trim().parse::<u64>().ok())
    };
    // Without a length the body's end is not known in advance: it is
    // not read.
    let Some(sent) = number("content-length") else {
        return e;
    };
    if let Some(decoded) = number("x-amz-decoded-content-length") {
        if decoded < sent {
            return S3Error::new(ErrorCode::IncompleteBody)
                .detail("NumberBytesExpected", decoded.to_string())
                .detail("NumberBytesProvided", sent.to_string());
        }
    }
    // Past Swift's largest object the body is not worth reading.
    if sent > MAX_HASHED_REFUSAL {
        return e;
    }
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    hasher.update(d);
                }
            }
            Err(_) => return S3Error::new(ErrorCode::IncompleteBody),
        }
    }
    let computed = apus_s3::wire::hex(&hasher.finalize());
    e.detail("S3ComputedContentSHA256", computed)
}

/// The answer as the client gets it: errors as S3's XML (no body for a
/// HEAD), and the request id headers on everything.
fn finish(result: Result<Resp, S3Error>, trans_id: &str, head: bool) -> Resp {
    let mut resp = match result {
        Ok(r) => r,
        Err(e) if head => {
            // No body, but the type of the one a GET would carry, as
            // Swift's error answers keep theirs on a HEAD.
            let mut resp = empty_response(e.status());
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml"),
            );
            resp
        }
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

impl Keystone {
    fn remember(
        &self,
        access: &str,
        secret: Secret,
        identity: Arc<crate::keystone::KeystoneIdentity>,
        now: std::time::Instant,
    ) {
        let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        if secrets.len() >= SECRET_CACHE_SIZE {
            secrets.retain(|_, c| c.until > now);
            if secrets.len() >= SECRET_CACHE_SIZE {
                secrets.clear();
            }
        }
        secrets.insert(
            access.to_string(),
            CachedEc2 {
                secret,
                identity,
                until: now + SECRET_CACHE_TIME,
            },
        );
    }
}

impl S3Api {
    async fn authenticated(
        &self,
        parts: http::request::Parts,
        body: apus_http::Body,
        auth: AuthRequest,
    ) -> Result<Resp, S3Error> {
        let tempauth_user = self.users.get(&auth.access_key);
        if tempauth_user.is_none() && self.keystone.is_none() {
            return Err(S3Error::invalid_access_key_id(&auth.access_key));
        }
        // What the body must prove is read before the signature is
        // checked, as Swift's S3Request does.
        auth.check_time(now_secs())?;
        let multi_delete = parts.method == Method::POST
            && query_params(parts.uri.query())
                .iter()
                .any(|(k, _)| k == "delete");
        let plan = apus_s3::input::plan(&parts, &auth, multi_delete)?;
        let user = match tempauth_user {
            Some(user) => Authenticated {
                verified: apus_s3::verify(&auth, &user.secret, now_secs())?,
                account_id: user.account_id.clone(),
                account_owner: user.account_owner,
                user_id: auth.access_key.clone(),
                keystone: None,
            },
            None => self.keystone_user(&auth).await?,
        };
        let verified = user.verified;
        let mut parts = parts;
        if let Some(len) = plan.payload_length.filter(|_| plan.streaming.is_some()) {
            // Swift sees the decoded payload.
            let h = &mut parts.headers;
            h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
            h.remove(http::header::TRANSFER_ENCODING);
            let encodings: Vec<String> = h
                .get_all(http::header::CONTENT_ENCODING)
                .iter()
                .flat_map(|v| v.to_str().unwrap_or("").split(','))
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty() && e != "aws-chunked")
                .collect();
            h.remove(http::header::CONTENT_ENCODING);
            if !encodings.is_empty() {
                set_header(h, "content-encoding", &encodings.join(", "));
            }
        }
        let body_fault = BodyFault::default();
        let body = if plan.needs_input() {
            VerifiedBody {
                inner: body,
                input: S3Input::new(&plan, verified.chunk_signer),
                auth: auth.clone(),
                fault: body_fault.clone(),
                held: Vec::new(),
                done: false,
            }
            .boxed()
        } else {
            body
        };
        let mut req = Req::from_parts(parts, body);
        let env = env_mut(&mut req);
        env.s3_user = Some(auth.access_key.clone());
        // authtoken keeps an identity s3api found (Swift's s3token sets
        // `keystone.token_info`).
        env.keystone = user.keystone;
        if self.s3_acl {
            // S3 ACLs authorize every Swift request made for this one
            // (Swift's `swift.authorize_override`), as an owner so that
            // ACL sysmeta may be written.
            env.authorize_override = true;
            env.swift_owner = true;
        }
        let (parts, body) = req.into_parts();
        let (bucket, key) = match apus_s3::auth::host_bucket(&parts, &self.auth) {
            // Virtual-hosted style: the whole path is the key.
            Some(b) => {
                let path = parts.uri.path();
                let decoded =
                    apus_proto::path::percent_decode(path).unwrap_or_else(|_| path.to_string());
                let key = decoded.strip_prefix('/').unwrap_or(&decoded);
                (Some(b), (!key.is_empty()).then(|| key.to_string()))
            }
            None => {
                let (bucket, key) = bucket_and_key(parts.uri.path());
                // A path-style bucket name is checked before anything
                // else (Swift's `parse_path`).
                if let Some(b) = bucket.as_deref().filter(|b| !bucket::valid_bucket(b)) {
                    return Err(S3Error::invalid_bucket_name(b));
                }
                (bucket, key)
            }
        };
        let req = S3Request {
            method: parts.method,
            headers: parts.headers,
            params: query_params(parts.uri.query()),
            bucket,
            key,
            account: user.account_id,
            user_id: user.user_id,
            account_owner: user.account_owner,
            ext: parts.extensions,
            body: Some(body),
            body_fault,
        };
        self.dispatch(req).await
    }

    /// An access key that is no tempauth user's, checked with Keystone as
    /// Swift's `s3token` does: `POST /v3/s3tokens` says whether the
    /// signature is the EC2 credential's and whose it is; its secret,
    /// read with the proxy's service token, is remembered for a minute so
    /// that the next requests are verified here, and so that a streaming
    /// body's chunk signatures can be. The credential's project is the
    /// account (`<reseller prefix><project id>`); an operator role or the
    /// reseller admin role owns it.
    async fn keystone_user(&self, auth: &AuthRequest) -> Result<Authenticated, S3Error> {
        let Some(ks) = &self.keystone else {
            return Err(S3Error::invalid_access_key_id(&auth.access_key));
        };
        let now = std::time::Instant::now();
        let cached = {
            let secrets = ks.secrets.lock().unwrap_or_else(|e| e.into_inner());
            secrets
                .get(&auth.access_key)
                .filter(|c| c.until > now)
                .map(|c| (c.secret.clone(), c.identity.clone()))
        };
        let (verified, identity) = match cached.and_then(|(secret, identity)| {
            apus_s3::verify(auth, &secret, now_secs())
                .ok()
                .map(|v| (v, identity))
        }) {
            Some(found) => found,
            None => {
                let check = ks
                    .client
                    .s3_token(&auth.access_key, &auth.string_to_sign, &auth.signature)
                    .await;
                match check {
                    crate::keystone::client::Ec2Check::Valid { identity, secret } => {
                        let verified = match secret {
                            Some(secret) => {
                                let secret = Secret::new(secret.into_bytes());
                                let verified = apus_s3::verify(auth, &secret, now_secs())?;
                                ks.remember(&auth.access_key, secret, identity.clone(), now);
                                verified
                            }
                            // Keystone vouched for the signature; chunk
                            // signatures cannot be checked without the secret.
                            None if auth.payload.is_streaming() => {
                                return Err(S3Error::access_denied("Access Denied."))
                            }
                            None => apus_s3::Verified {
                                access_key: auth.access_key.clone(),
                                version: auth.version,
                                payload: auth.payload.clone(),
                                decoded_content_length: auth.decoded_content_length,
                                chunk_signer: None,
                            },
                        };
                        (verified, identity)
                    }
                    crate::keystone::client::Ec2Check::Invalid => {
                        return Err(S3Error::access_denied("Access Denied."))
                    }
                    crate::keystone::client::Ec2Check::Unavailable => {
                        return Err(S3Error::new(ErrorCode::ServiceUnavailable))
                    }
                }
            }
        };
        let Some(project) = identity.project_id.clone() else {
            return Err(S3Error::access_denied("Access Denied."));
        };
        let prefix = ks
            .config
            .reseller_prefixes
            .first()
            .cloned()
            .unwrap_or_else(|| "AUTH_".to_string());
        let roles = ks.config.roles_for(&prefix);
        let account_owner = identity
            .roles
            .iter()
            .any(|r| roles.operator_roles.contains(r) || *r == ks.config.reseller_admin_role);
        Ok(Authenticated {
            verified,
            account_id: format!("{prefix}{project}"),
            account_owner,
            user_id: format!(
                "{}:{}",
                identity.project_name.clone().unwrap_or(project),
                identity.user_name
            ),
            keystone: Some(identity),
        })
    }

    /// The controller the request's sub-resources name (Swift's
    /// `S3Request.controller`).
    async fn dispatch(&self, req: S3Request) -> Result<Resp, S3Error> {
        copy::validate_copy_headers(&req)?;
        if let Some(name) = UNSUPPORTED.iter().find(|n| req.has_param(n)) {
            return Err(not_implemented(name));
        }
        if req.bucket.is_none() {
            return service::handle(self, req).await;
        }
        if self.s3_acl && req.has_param("acl") {
            return acl::handle(self, req).await;
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
        if req.has_param("partNumber") && req.method == Method::PUT {
            return multi_upload::part(self, req).await;
        }
        if !req.has_param("partNumber") {
            if req.has_param("uploadId") {
                return multi_upload::upload(self, req).await;
            }
            if req.has_param("uploads") {
                return multi_upload::uploads(self, req).await;
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
        self.swift_with_ext(req.ext.clone(), method, path, headers, body)
            .await
    }

    /// [`S3Api::swift`] with the subrequest's extensions given (the
    /// client's, with what a controller adds for a later filter).
    pub(crate) async fn swift_with_ext(
        &self,
        ext: http::Extensions,
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
        *sw.extensions_mut() = ext;
        Ok(self.next.call(sw).await)
    }

    /// Swift's `S3Request.get_response`: a Swift request on `container`
    /// and `obj` of the user's account (`query` without its `?`); a status
    /// Swift's s3api expects for that method and resource is the answer,
    /// any other is turned into S3's error. With S3 ACLs, the user's
    /// permission for it is checked first ([`acl::get_response`]).
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
        if self.s3_acl {
            return acl::get_response(self, req, method, container, obj, query, headers, body)
                .await;
        }
        self.get_acl_response(req, method, container, obj, query, headers, body)
            .await
    }

    /// [`S3Api::get_response`] without the ACL check (Swift's
    /// `get_acl_response`): what the checks themselves use.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn get_acl_response(
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
            (true, None, "PUT", 202) => return acl::bucket_put_accepted_error(self, req, c).await,
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
            (true, Some(_), "PUT", 422) => {
                // Swift quotes the Content-MD5 back in hex ("yes, really").
                let mut e = S3Error::new(ErrorCode::BadDigest);
                if let Ok(Some(hex)) = obj::content_md5_hex(req) {
                    e = e.detail("ExpectedDigest", hex);
                }
                return e;
            }
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
            400 => bad_request_error(req, read_text(resp).await),
            401 => S3Error::new(ErrorCode::SignatureDoesNotMatch),
            403 => S3Error::access_denied("Access Denied."),
            416 => {
                // A part number past a large object's last part.
                let count = crate::service::header_str(resp.headers(), "x-parts-count")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match multi_upload::validate_part_number(req, count, true) {
                    Err(e) => e,
                    Ok(_) => S3Error::new(ErrorCode::InvalidRange),
                }
            }
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

/// S3's error for a Swift 400 with `body`: a refused expiry header is
/// `InvalidArgument` naming it, anything else `InvalidRequest`.
fn bad_request_error(req: &S3Request, body: String) -> S3Error {
    // The names as Swift's messages spell them ("Non-integer
    // X-Delete-At", "X-Delete-After in past"), tested in this order.
    for name in ["X-Delete-At", "X-Delete-After"] {
        if body.contains(name) {
            let value = req.header(name).unwrap_or_default().to_string();
            return S3Error::with_message(ErrorCode::InvalidArgument, body)
                .detail("ArgumentName", name)
                .detail("ArgumentValue", value);
        }
    }
    S3Error::with_message(ErrorCode::InvalidRequest, body)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn put_with(headers: &[(&'static str, &'static str)]) -> S3Request {
        let mut h = HeaderMap::new();
        for (n, v) in headers {
            h.insert(*n, HeaderValue::from_static(v));
        }
        S3Request {
            method: Method::PUT,
            headers: h,
            params: Vec::new(),
            bucket: Some("b".into()),
            key: Some("o".into()),
            account: "AUTH_test".into(),
            user_id: "test:tester".into(),
            account_owner: true,
            ext: http::Extensions::new(),
            body: None,
            body_fault: Default::default(),
        }
    }

    #[test]
    fn refused_expiry_headers_are_invalid_arguments() {
        let req = put_with(&[("x-delete-at", "test"), ("x-delete-after", "-140")]);
        let e = bad_request_error(&req, "Non-integer X-Delete-At".into());
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(e.message, "Non-integer X-Delete-At");
        assert_eq!(e.detail_text("ArgumentName"), Some("X-Delete-At"));
        assert_eq!(e.detail_text("ArgumentValue"), Some("test"));
        let e = bad_request_error(&req, "X-Delete-After in past".into());
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert_eq!(e.detail_text("ArgumentName"), Some("X-Delete-After"));
        assert_eq!(e.detail_text("ArgumentValue"), Some("-140"));
        let e = bad_request_error(&req, "Metadata name too long".into());
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn head_errors_say_their_type_without_a_body() {
        let resp = finish(Err(S3Error::no_such_key("o")), "tx1", true);
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/xml")
        );
        assert_eq!(
            resp.headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok()),
            Some("0")
        );
    }
}
