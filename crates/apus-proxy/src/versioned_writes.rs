//! Legacy object versioning (Swift's `versioned_writes` middleware): a
//! container with `X-Versions-Location: <container>` (stack mode) or
//! `X-History-Location: <container>` (history mode) keeps every
//! overwritten version of its objects in that container, named
//! `<3 hex digits of the name's length><name>/<timestamp>`.
//!
//! - Container PUT/POST: the location is checked (412 for an empty name
//!   or one with a slash, 400 for both headers at once) and stored as
//!   system metadata with its mode; an empty value or
//!   `X-Remove-Versions-Location`/`X-Remove-History-Location` removes it.
//!   Container answers show the location under the header of its mode.
//! - Object PUT: the current object, if any, is first copied into the
//!   versions container (as stored: a manifest stays a manifest, a link a
//!   link).
//! - Object DELETE, stack mode: the newest version is copied back over
//!   the object and removed from the versions container (a delete marker
//!   left by history mode restores what preceded it); with no versions
//!   the object is simply deleted. History mode: the current object is
//!   copied into the versions container, followed by a delete marker
//!   (`application/x-deleted;swift_versions_deleted=1`), then deleted.
//!
//! The caller must be allowed to write the container (its write ACL) for
//! any copying to happen; the copies themselves are made without further
//! checks, as Swift's pre-authorized requests are.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use apus_core::timestamp::Timestamp;
use apus_proto::constraints::MAX_FILE_SIZE;

use crate::dlo::util::{build_request, content_length, quote_query, unquote};
use crate::info::InfoLookup;
use crate::service::{
    env, error_response, header_str, header_text, set_header, text_error, AuthRequest, BoxFuture,
    Env, Req, Resp, Service, SharedService,
};

const CLIENT_VERSIONS_LOC: &str = "x-versions-location";
const CLIENT_HISTORY_LOC: &str = "x-history-location";
const REMOVE_VERSIONS: &str = "x-remove-versions-location";
const REMOVE_HISTORY: &str = "x-remove-history-location";
const SYSMETA_VERSIONS_LOC: &str = "x-container-sysmeta-versions-location";
const SYSMETA_VERSIONS_MODE: &str = "x-container-sysmeta-versions-mode";
/// The content type of a history-mode delete marker.
pub const DELETE_MARKER_CONTENT_TYPE: &str = "application/x-deleted;swift_versions_deleted=1";
const SWIFT_SOURCE: &str = "VW";

/// The `/info` entry for `versioned_writes`.
pub fn info() -> serde_json::Value {
    serde_json::json!({"allowed_flags": [CLIENT_VERSIONS_LOC, CLIENT_HISTORY_LOC]})
}

pub struct VersionedWrites {
    next: SharedService,
    info: std::sync::Arc<dyn InfoLookup>,
}

impl VersionedWrites {
    pub fn new(next: SharedService, info: std::sync::Arc<dyn InfoLookup>) -> Self {
        VersionedWrites { next, info }
    }
}

/// `<length as 3 hex digits><name>/`: where an object's versions are
/// listed (the length in bytes, as Swift counts a WSGI string).
pub fn versions_prefix(object: &str) -> String {
    format!("{:03x}{object}/", object.len())
}

impl Service for VersionedWrites {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let Some(decoded) = apus_proto::percent_decode_internal(req.uri().path()).ok() else {
            return self.next.call(req);
        };
        let Ok(parts) = apus_proto::split_path(&decoded, 3, 4, true) else {
            return self.next.call(req);
        };
        let mut it = parts.into_iter();
        let (Some(Some(version)), Some(Some(account)), Some(Some(container))) =
            (it.next(), it.next(), it.next())
        else {
            return self.next.call(req);
        };
        let object = it.next().flatten().filter(|o| !o.is_empty());
        match object {
            None => Box::pin(self.container_request(req)),
            Some(object) if req.method() == Method::PUT || req.method() == Method::DELETE => {
                Box::pin(self.object_request(req, version, account, container, object))
            }
            Some(_) => self.next.call(req),
        }
    }
}

/// Where a container keeps versions, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stack,
    History,
}

impl VersionedWrites {
    async fn container_request(&self, mut req: Req) -> Resp {
        let h = req.headers_mut();
        if h.contains_key(CLIENT_VERSIONS_LOC) && h.contains_key(CLIENT_HISTORY_LOC) {
            let history = header_text(h, CLIENT_HISTORY_LOC).unwrap_or_default();
            let versions = header_text(h, CLIENT_VERSIONS_LOC).unwrap_or_default();
            if history.is_empty() {
                h.remove(CLIENT_HISTORY_LOC);
            } else if !versions.is_empty() {
                return text_error(
                    StatusCode::BAD_REQUEST,
                    "Only one of X-Versions-Location or X-History-Location may be specified",
                );
            } else {
                h.remove(CLIENT_VERSIONS_LOC);
            }
        }
        let given = match (
            h.get(CLIENT_VERSIONS_LOC).cloned(),
            h.get(CLIENT_HISTORY_LOC).cloned(),
        ) {
            (Some(v), _) => Some((v, "stack")),
            (None, Some(v)) => Some((v, "history")),
            (None, None) => None,
        };
        if let Some((value, mode)) = given {
            if value.is_empty() {
                h.insert(
                    HeaderName::from_static(REMOVE_VERSIONS),
                    HeaderValue::from_static("x"),
                );
            } else {
                let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
                if text.contains('/') {
                    return error_response(
                        StatusCode::PRECONDITION_FAILED,
                        Some("Container name cannot contain slashes"),
                    );
                }
                h.insert(HeaderName::from_static(SYSMETA_VERSIONS_LOC), value);
                set_header(h, SYSMETA_VERSIONS_MODE, mode);
                h.insert(
                    HeaderName::from_static(CLIENT_VERSIONS_LOC),
                    HeaderValue::from_static(""),
                );
                h.remove(CLIENT_HISTORY_LOC);
                h.remove(REMOVE_VERSIONS);
                h.remove(REMOVE_HISTORY);
            }
        }
        let removing = [REMOVE_VERSIONS, REMOVE_HISTORY]
            .iter()
            .any(|n| header_str(h, n).is_some_and(|v| !v.is_empty()));
        if removing {
            for name in [
                CLIENT_VERSIONS_LOC,
                SYSMETA_VERSIONS_LOC,
                SYSMETA_VERSIONS_MODE,
            ] {
                h.insert(HeaderName::from_static(name), HeaderValue::from_static(""));
            }
            h.remove(CLIENT_HISTORY_LOC);
        }
        h.remove(REMOVE_VERSIONS);
        h.remove(REMOVE_HISTORY);
        let mut resp = self.next.call(req).await;
        let h = resp.headers_mut();
        if let Some(location) = h
            .get(SYSMETA_VERSIONS_LOC)
            .cloned()
            .filter(|v| !v.is_empty())
        {
            let name = if header_str(h, SYSMETA_VERSIONS_MODE) == Some("history") {
                CLIENT_HISTORY_LOC
            } else {
                CLIENT_VERSIONS_LOC
            };
            h.insert(HeaderName::from_static(name), location);
        }
        resp
    }

    async fn object_request(
        &self,
        req: Req,
        version: String,
        account: String,
        container: String,
        object: String,
    ) -> Resp {
        let client_env = env(&req);
        let info = self
            .info
            .container_info(&client_env, &account, &container)
            .await;
        let sysmeta_loc =
            header_text(&info.headers, SYSMETA_VERSIONS_LOC).filter(|l| !l.is_empty());
        let (location, mode) = match sysmeta_loc {
            Some(l) => {
                let mode = match header_str(&info.headers, SYSMETA_VERSIONS_MODE) {
                    Some("history") => Mode::History,
                    _ => Mode::Stack,
                };
                (l.to_string(), mode)
            }
            None => match header_text(&info.headers, CLIENT_VERSIONS_LOC).filter(|v| !v.is_empty())
            {
                Some(v) => (v, Mode::Stack),
                None => return self.next.call(req).await,
            },
        };
        let versions = unquote(&location)
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        let ctx = Versioning {
            next: &self.next,
            env: client_env.subrequest(SWIFT_SOURCE),
            token: req.headers().get("x-auth-token").cloned(),
            version,
            account,
            container,
            object,
            versions,
            write_acl: info.write_acl.clone(),
        };
        if req.method() == Method::PUT {
            if let Err(resp) = ctx.authorize(&req).await {
                return resp;
            }
            if let Err(resp) = ctx.copy_current().await {
                return resp;
            }
            return self.next.call(req).await;
        }
        match mode {
            Mode::History => {
                if let Err(resp) = ctx.authorize(&req).await {
                    return resp;
                }
                if let Err(resp) = ctx.copy_current().await {
                    return resp;
                }
                if let Err(resp) = ctx.put_delete_marker().await {
                    return resp;
                }
                self.next.call(req).await
            }
            Mode::Stack => ctx.delete_pop(req).await,
        }
    }
}

/// One object request on a versioned container.
struct Versioning<'a> {
    next: &'a SharedService,
    /// The environment of the copies: pre-authorized (see `authorize`).
    env: Env,
    token: Option<HeaderValue>,
    version: String,
    account: String,
    container: String,
    object: String,
    versions: String,
    write_acl: Option<String>,
}

impl Versioning<'_> {
    fn path(&self, container: &str, object: &str) -> String {
        format!("/{}/{}/{container}/{object}", self.version, self.account)
    }

    fn version_name(&self, timestamp: &str) -> String {
        format!("{}{timestamp}", versions_prefix(&self.object))
    }

    /// The caller must be able to write the container; the copies that
    /// follow are made on its behalf without further checks.
    async fn authorize(&self, req: &Req) -> Result<(), Resp> {
        let Some(auth) = self.env.authorize.clone() else {
            return Ok(());
        };
        let path = self.path(&self.container, &self.object);
        auth.authorize(AuthRequest {
            method: req.method(),
            path: &path,
            headers: req.headers(),
            env: &self.env,
            acl: self.write_acl.as_deref(),
        })
        .await
        .map(|_| ())
    }

    fn pre_authed(&self) -> Env {
        let mut env = self.env.clone();
        env.authorize = None;
        env
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: HeaderMap,
        body: apus_http::Body,
    ) -> Resp {
        match build_request(method, path, query, headers, self.pre_authed(), body) {
            Ok(r) => self.next.call(r).await,
            Err(_) => error_response(StatusCode::PRECONDITION_FAILED, None),
        }
    }

    fn token_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = &self.token {
            h.insert("x-auth-token", t.clone());
        }
        h
    }

    /// Swift's `_check_response_error`: a client error means the versions
    /// container is missing or not writable (412), anything else 503.
    fn check(resp: &Resp) -> Result<(), Resp> {
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        Err(if status.is_client_error() {
            error_response(StatusCode::PRECONDITION_FAILED, None)
        } else {
            error_response(StatusCode::SERVICE_UNAVAILABLE, None)
        })
    }

    /// The object as stored (a link not followed), newest copy; `None`
    /// when there is none.
    async fn get_source(&self, path: &str) -> Result<Option<Resp>, Resp> {
        let mut headers = HeaderMap::new();
        headers.insert("x-newest", HeaderValue::from_static("True"));
        let resp = self
            .call(
                Method::GET,
                path,
                Some("symlink=get"),
                headers,
                apus_http::empty(),
            )
            .await;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Self::check(&resp)?;
        match content_length(&resp) {
            Some(len) if len <= MAX_FILE_SIZE => Ok(Some(resp)),
            _ => Err(error_response(StatusCode::PAYLOAD_TOO_LARGE, None)),
        }
    }

    /// PUTs what `source` answered at `path`, with its headers.
    async fn put_copy(&self, path: &str, source: Resp) -> Result<(), Resp> {
        let (parts, body) = source.into_parts();
        let mut headers = HeaderMap::new();
        for (k, v) in &parts.headers {
            if !matches!(
                k.as_str(),
                "x-timestamp"
                    | "content-range"
                    | "transfer-encoding"
                    | "connection"
                    | "date"
                    | "last-modified"
                    | "accept-ranges"
                    | "x-trans-id"
                    | "x-openstack-request-id"
            ) {
                headers.append(k.clone(), v.clone());
            }
        }
        let mut env = self.pre_authed();
        if let Some(size) = header_str(&headers, "x-object-sysmeta-slo-size").map(str::to_string) {
            let ct = header_str(&headers, "content-type")
                .unwrap_or("")
                .to_string();
            set_header(
                &mut headers,
                "content-type",
                &format!("{ct}; swift_bytes={size}"),
            );
            env.content_type_overridden = true;
        }
        let resp = match build_request(Method::PUT, path, None, headers, env, body) {
            Ok(r) => self.next.call(r).await,
            Err(_) => error_response(StatusCode::PRECONDITION_FAILED, None),
        };
        Self::check(&resp)
    }

    /// Copies the current object, if any, into the versions container.
    async fn copy_current(&self) -> Result<(), Resp> {
        let current = self.path(&self.container, &self.object);
        let Some(source) = self.get_source(&current).await? else {
            return Ok(());
        };
        let timestamp = header_str(source.headers(), "x-timestamp")
            .and_then(|t| t.parse::<f64>().ok())
            .or_else(|| {
                header_str(source.headers(), "last-modified")
                    .and_then(apus_core::conditional::parse_http_date)
                    .map(|s| s as f64)
            })
            .and_then(Timestamp::from_secs_f64)
            .unwrap_or_else(Timestamp::now);
        let target = self.path(&self.versions, &self.version_name(&timestamp.internal()));
        self.put_copy(&target, source).await
    }

    async fn put_delete_marker(&self) -> Result<(), Resp> {
        let path = self.path(
            &self.versions,
            &self.version_name(&Timestamp::now().internal()),
        );
        let mut headers = self.token_headers();
        set_header(&mut headers, "content-type", DELETE_MARKER_CONTENT_TYPE);
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
        let mut env = self.pre_authed();
        env.content_type_overridden = true;
        let resp = match build_request(Method::PUT, &path, None, headers, env, apus_http::empty()) {
            Ok(r) => self.next.call(r).await,
            Err(_) => error_response(StatusCode::PRECONDITION_FAILED, None),
        };
        Self::check(&resp)
    }

    /// One page of the versions listing, newest first, after `marker`.
    async fn listing_page(&self, marker: &str) -> Result<Vec<(String, String)>, Resp> {
        let path = format!("/{}/{}/{}", self.version, self.account, self.versions);
        let query = format!(
            "format=json&reverse=on&prefix={}&marker={}",
            quote_query(&versions_prefix(&self.object)),
            quote_query(marker)
        );
        let resp = self
            .call(
                Method::GET,
                &path,
                Some(&query),
                HeaderMap::new(),
                apus_http::empty(),
            )
            .await;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if status.is_client_error() {
            return Err(error_response(StatusCode::PRECONDITION_FAILED, None));
        }
        if !status.is_success() {
            return Err(error_response(StatusCode::INTERNAL_SERVER_ERROR, None));
        }
        let body =
            apus_http::body::collect_limited(resp.into_body(), crate::segments::MAX_LISTING_BYTES)
                .await
                .unwrap_or_default();
        let items: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
        Ok(items
            .iter()
            .filter_map(|i| {
                Some((
                    i.get("name")?.as_str()?.to_string(),
                    i.get("content_type")
                        .and_then(|c| c.as_str())
                        .unwrap_or("")
                        .to_string(),
                ))
            })
            .collect())
    }

    /// Every version, newest first, a page at a time.
    async fn next_version(
        &self,
        page: &mut std::collections::VecDeque<(String, String)>,
        marker: &mut Option<String>,
    ) -> Result<Option<(String, String)>, Resp> {
        if page.is_empty() {
            let Some(m) = marker.clone() else {
                return Ok(None);
            };
            let items = self.listing_page(&m).await?;
            *marker = items.last().map(|(n, _)| n.clone());
            page.extend(items);
        }
        Ok(page.pop_front())
    }

    /// Copies version `name` back over the object; `false` when it is gone.
    async fn restore(&self, name: &str) -> Result<bool, Resp> {
        let source_path = self.path(&self.versions, name);
        let Some(source) = self.get_source(&source_path).await? else {
            return Ok(false);
        };
        self.put_copy(&self.path(&self.container, &self.object), source)
            .await?;
        Ok(true)
    }

    /// Stack mode DELETE: the newest version takes the object's place.
    async fn delete_pop(&self, mut req: Req) -> Resp {
        let mut page = std::collections::VecDeque::new();
        let mut marker = Some(String::new());
        let mut authorized = false;
        loop {
            let previous = match self.next_version(&mut page, &mut marker).await {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(resp) => return resp,
            };
            if !authorized {
                if let Err(resp) = self.authorize(&req).await {
                    return resp;
                }
                authorized = true;
            }
            let (name, content_type) = previous;
            if content_type == DELETE_MARKER_CONTENT_TYPE {
                let mut headers = self.token_headers();
                headers.insert("x-newest", HeaderValue::from_static("True"));
                let current = self.path(&self.container, &self.object);
                let head = self
                    .call(Method::HEAD, &current, None, headers, apus_http::empty())
                    .await;
                if head.status() != StatusCode::NOT_FOUND {
                    if let Err(resp) = Self::check(&head) {
                        return resp;
                    }
                    // The object exists: delete it, back to the marker's state.
                    break;
                }
                // Only the marker is current: restore what preceded it.
                loop {
                    let older = match self.next_version(&mut page, &mut marker).await {
                        Ok(Some(o)) => o,
                        Ok(None) => break,
                        Err(resp) => return resp,
                    };
                    if older.1 == DELETE_MARKER_CONTENT_TYPE {
                        break;
                    }
                    match self.restore(&older.0).await {
                        Ok(false) => continue,
                        Ok(true) => {}
                        Err(resp) => return resp,
                    }
                    let older_path = self.path(&self.versions, &older.0);
                    let del = self
                        .call(
                            Method::DELETE,
                            &older_path,
                            None,
                            self.token_headers(),
                            apus_http::empty(),
                        )
                        .await;
                    if del.status() != StatusCode::NOT_FOUND {
                        if let Err(resp) = Self::check(&del) {
                            return resp;
                        }
                    }
                    break;
                }
                req = match self.redirected_delete(&name) {
                    Ok(r) => r,
                    Err(resp) => return resp,
                };
            } else {
                match self.restore(&name).await {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(resp) => return resp,
                }
                req = match self.redirected_delete(&name) {
                    Ok(r) => r,
                    Err(resp) => return resp,
                };
            }
            break;
        }
        self.next.call(req).await
    }

    /// The DELETE of version `name` that stands in for the client's.
    fn redirected_delete(&self, name: &str) -> Result<Req, Resp> {
        build_request(
            Method::DELETE,
            &self.path(&self.versions, name),
            None,
            self.token_headers(),
            self.pre_authed(),
            apus_http::full(Bytes::new()),
        )
        .map_err(|_| error_response(StatusCode::PRECONDITION_FAILED, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_named_by_length_and_name() {
        assert_eq!(versions_prefix("obj"), "003obj/");
        // The length counts bytes, as Swift's WSGI strings do.
        assert_eq!(versions_prefix("caf\u{e9}"), "005caf\u{e9}/");
    }
}
