//! The shape every stage of the proxy pipeline shares: a [`Service`] takes a
//! request with a streaming body and answers a response, and a middleware
//! is a `Service` holding the next one. Per-request state that Swift keeps
//! in the WSGI environ (transaction id, the authorize callback, whether the
//! caller owns the account, which middleware made a subrequest) travels in
//! the request's extensions as an [`Env`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use apus_http::{full, Body};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

pub type Req = Request<Body>;
pub type Resp = Response<Body>;
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One stage of the pipeline (a middleware or the controllers at the end).
pub trait Service: Send + Sync + 'static {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp>;
}

pub type SharedService = Arc<dyn Service>;

/// What an authorization check sees: Swift's `req` with `req.acl` set by
/// the controller to the container's read or write ACL when it has one.
pub struct AuthRequest<'a> {
    pub method: &'a Method,
    /// The decoded path, `/v1/<account>[/<container>[/<object>]]`.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub env: &'a Env,
    /// The container ACL that applies (`X-Container-Read` for reads,
    /// `X-Container-Write` for writes), when the controller knows it.
    pub acl: Option<&'a str>,
}

/// What a successful authorization grants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    /// The caller may see and set owner-only headers (ACLs, sync keys):
    /// Swift's `swift_owner`.
    pub owner: bool,
}

/// Swift's `swift.authorize` callback, installed by the auth middleware.
pub trait Authorize: Send + Sync + 'static {
    /// `Ok` when the request may proceed, or the denial (401/403) to send.
    fn authorize<'a>(&'a self, req: AuthRequest<'a>) -> BoxFuture<'a, Result<Grant, Resp>>;
}

/// Per-request state, kept in the request's extensions.
#[derive(Clone, Default)]
pub struct Env {
    /// `X-Trans-Id` of the client request; subrequests share it.
    pub trans_id: String,
    /// Pending authorization: present until a check has passed.
    pub authorize: Option<Arc<dyn Authorize>>,
    /// The caller owns the account (see [`Grant::owner`]).
    pub swift_owner: bool,
    /// Groups of the authenticated user (Swift's `REMOTE_USER`), empty
    /// when anonymous.
    pub remote_user: Vec<String>,
    /// Which middleware issued this request when it is a subrequest
    /// (Swift's `swift.source`), `None` for client requests.
    pub source: Option<&'static str>,
    /// Set by middleware that must see the stored object itself rather
    /// than what a later stage would make of it (DLO manifests).
    pub raw_manifest: bool,
    /// A middleware wrote the content type (SLO's `swift_bytes`), so the
    /// `swift_*` parameters a client may not send are allowed (Swift's
    /// `swift.content_type_overridden`).
    pub content_type_overridden: bool,
    /// The request may name the reserved namespace (it carried
    /// `X-Backend-Allow-Reserved-Names`); its backend requests say so too.
    pub allow_reserved_names: bool,
    /// An earlier filter (tempurl) authorized the request its own way; the
    /// auth filter leaves it alone (Swift's `swift.authorize_override`).
    pub authorize_override: bool,
    /// The `account:user` whose S3 signature `s3api` verified: the auth
    /// filter takes this user instead of a token. Only `s3api` sets it.
    pub s3_user: Option<String>,
    /// The caller as Keystone vouched for them (the `authtoken` filter's
    /// finding; `None` when anonymous or not using Keystone).
    pub keystone: Option<Arc<crate::keystone::KeystoneIdentity>>,
}

impl Env {
    /// The environment of a subrequest made on behalf of `self`.
    pub fn subrequest(&self, source: &'static str) -> Env {
        let mut env = self.clone();
        env.source = Some(source);
        env
    }
}

/// The request's [`Env`], inserting an empty one first if needed.
pub fn env_mut(req: &mut Req) -> &mut Env {
    req.extensions_mut().get_or_insert_default::<Env>()
}

/// The request's [`Env`] (a default one when none was set).
pub fn env(req: &Req) -> Env {
    req.extensions().get::<Env>().cloned().unwrap_or_default()
}

/// Marks a response whose `Location` stays a path (Swift's
/// `swift.leave_relative_location`); others get the client's scheme and
/// host in front of it, as swob writes them.
#[derive(Clone, Copy, Debug)]
pub struct RelativeLocation;

/// Why a response is an error, carried to `catch_errors`, which logs it
/// with the request's line: errors are built here and logged there, and
/// nowhere else needs to log them.
#[derive(Clone, Debug)]
pub struct ErrorDetail(pub String);

/// A plain-text response with Swift's default body for `status` when
/// `body` is `None`.
pub fn error_response(status: StatusCode, body: Option<&str>) -> Resp {
    let text = match body {
        Some(b) => b.to_string(),
        None => default_body(status),
    };
    let len = text.len();
    let detail = match body {
        Some(b) => ErrorDetail(b.chars().take(200).collect()),
        None => ErrorDetail(status.canonical_reason().unwrap_or("").to_string()),
    };
    let mut resp = Response::new(full(text));
    resp.extensions_mut().insert(detail);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(apus_proto::status::DEFAULT_BODY_CONTENT_TYPE),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// An error with its own text and `Content-Type: text/plain`, as Swift's
/// middleware answer (`content_type='text/plain'`).
pub fn text_error(status: StatusCode, body: &str) -> Resp {
    let mut resp = error_response(status, Some(body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}

/// A response with no body, e.g. 204 or 201.
pub fn status_response(status: StatusCode) -> Resp {
    match status.as_u16() {
        204 | 304 => {
            let mut resp = Response::new(apus_http::empty());
            *resp.status_mut() = status;
            resp
        }
        _ => error_response(status, None),
    }
}

/// Swift's default body for `status` (empty when it has none).
pub fn default_body(status: StatusCode) -> String {
    apus_proto::status::default_body(status.as_u16(), None).unwrap_or_default()
}

/// Sets a header from a string, skipping values that are not valid header
/// text (they can only come from our own formatting of trusted data).
pub fn set_header(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        http::header::HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(n, v);
    }
}

/// Adds `value` to the comma-separated list in header `name` (as Swift's
/// `update_etag_is_at_header` and `update_ignore_range_header` do).
pub fn add_to_header_list(headers: &mut HeaderMap, name: &str, value: &str) {
    let joined = match header_str(headers, name) {
        Some(old) if !old.is_empty() => format!("{old},{value}"),
        _ => value.to_string(),
    };
    set_header(headers, name, &joined);
}

/// A header's value as UTF-8 text, whatever bytes it holds (clients send
/// names in headers as raw UTF-8; invalid bytes become U+FFFD).
pub fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// A header's value as text (`None` when absent or not valid UTF-8).
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A successful JSON container listing with each entry passed through
/// `edit` (which says whether it changed anything); any other answer, or
/// a body that is not a JSON list, passes unchanged. `edit` is called only
/// when `needle` occurs somewhere in the body: it names what an entry must
/// contain for `edit` to change it (a hash parameter, written unescaped by
/// every container server), so the common listing is never parsed.
pub async fn edit_json_listing(
    resp: Resp,
    needle: &[u8],
    mut edit: impl FnMut(&mut serde_json::Value) -> bool,
) -> Resp {
    let json = header_str(resp.headers(), "content-type").is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|t| t.trim() == "application/json")
    });
    if !resp.status().is_success() || !json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(body) = apus_http::body::collect_limited(body, crate::segments::MAX_LISTING_BYTES).await
    else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, None);
    };
    if memchr::memmem::find(&body, needle).is_none() {
        return Response::from_parts(parts, full(body));
    }
    let Ok(serde_json::Value::Array(mut items)) =
        serde_json::from_slice::<serde_json::Value>(&body)
    else {
        return Response::from_parts(parts, full(body));
    };
    let mut changed = false;
    for item in &mut items {
        changed |= edit(item);
    }
    if !changed {
        return Response::from_parts(parts, full(body));
    }
    let out = serde_json::Value::Array(items).to_string();
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    Response::from_parts(parts, full(out))
}

/// The path's account, container and object (empty segments as `None`),
/// or `None` when the path does not split as `/v1/a[/c[/o]]`: what the
/// auth filters' rules look at.
pub type PathParts = (Option<String>, Option<String>, Option<String>);

pub fn split_request_path(path: &str) -> Option<PathParts> {
    let segs = apus_proto::path::split_path(path, 1, 4, true).ok()?;
    let mut it = segs
        .into_iter()
        .skip(1)
        .map(|s| s.filter(|s| !s.is_empty()));
    Some((
        it.next().flatten(),
        it.next().flatten(),
        it.next().flatten(),
    ))
}
