//! Object versioning (Swift's `object_versioning`, the `X-Versions-Enabled`
//! API): a container with versioning enabled keeps every version of its
//! objects in a hidden container of the reserved namespace
//! (`\0versions\0<container>`), and the object itself is a static link to
//! its current version.
//!
//! - Container PUT/POST with `X-Versions-Enabled`: enabling creates the
//!   versions container (in the container's policy) and records it and
//!   the flag as system metadata; disabling keeps the versions. A
//!   container using legacy `versioned_writes` or container sync cannot
//!   enable it (400). Answers show `X-Versions-Enabled`, and the bytes
//!   used include the versions'.
//! - Object PUT (enabled): an object written before versioning is first
//!   copied into the versions container; the client's data is written
//!   there as version `<object>\0<inverted timestamp>`, and the object
//!   becomes a link to it. The answer carries `X-Object-Version-Id`.
//! - Object DELETE (enabled): a zero-byte delete marker version is
//!   written, then the link deleted.
//! - `?version-id=<id>`: GET, HEAD and DELETE act on that version (`null`
//!   is the object written while versioning was off); PUT with an empty
//!   body makes that version current again; POST is refused.
//! - Container GET `?versions`: every version of every object, newest
//!   first within a name, with `version_id` and `is_latest`; JSON only.
//! - Account GET: versions containers stay hidden, their bytes counted
//!   into their containers'.
//! - Container DELETE: refused (409) while versions remain; the versions
//!   container goes with the container.
//!
//! Requests on the client's behalf into the versions container are made
//! after the client was authorized for the container it named, as
//! Swift's pre-authorized requests are.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;

use apus_core::timestamp::Timestamp;
use apus_proto::constraints::MAX_FILE_SIZE;
use apus_proto::headers::is_true;

use crate::app::ALLOW_RESERVED_NAMES;
use crate::config::ProxyConfig;
use crate::dlo::util::{build_query, build_request, content_length, parse_query, unquote};
use crate::info::InfoLookup;
use crate::service::{
    env, error_response, header_str, header_text, set_header, text_error, AuthRequest, BoxFuture,
    Env, Req, Resp, Service, SharedService,
};
use crate::versioned_writes::DELETE_MARKER_CONTENT_TYPE;

const CLIENT_VERSIONS_ENABLED: &str = "x-versions-enabled";
const SYSMETA_VERSIONS_ENABLED: &str = "x-container-sysmeta-versions-enabled";
const SYSMETA_VERSIONS_CONT: &str = "x-container-sysmeta-versions-container";
const SYSMETA_LEGACY_LOCATION: &str = "x-container-sysmeta-versions-location";
const SYSMETA_VERSIONS_SYMLINK: &str = "x-object-sysmeta-versions-symlink";
const SYMLINK_TARGET: &str = "x-symlink-target";
const SYMLINK_TARGET_ACCOUNT: &str = "x-symlink-target-account";
const SYSMETA_TARGET_ETAG: &str = "x-object-sysmeta-symlink-target-etag";
const SYSMETA_TARGET_BYTES: &str = "x-object-sysmeta-symlink-target-bytes";
const SYMLOOP_EXTEND: &str = "x-object-sysmeta-symloop-extend";
const LINK_ALLOWS_RESERVED: &str = "x-object-sysmeta-allow-reserved-names";
const RESERVED: char = '\0';
const SWIFT_SOURCE: &str = "OV";
const CONTAINER_LISTING_LIMIT: usize = 10_000;
const ACCOUNT_LISTING_LIMIT: usize = 10_000;
const NO_VERSIONS_CONTAINER: &str =
    "The versions container does not exist. You may want to re-enable object versioning.";

pub struct ObjectVersioning {
    next: SharedService,
    info: Arc<dyn InfoLookup>,
    config: Arc<ProxyConfig>,
}

impl ObjectVersioning {
    pub fn new(next: SharedService, info: Arc<dyn InfoLookup>, config: Arc<ProxyConfig>) -> Self {
        ObjectVersioning { next, info, config }
    }
}

/// `\0` + the parts joined by `\0`; `None` if a part holds a NUL itself.
pub fn reserved_name(parts: &[&str]) -> Option<String> {
    if parts.iter().any(|p| p.contains(RESERVED)) {
        return None;
    }
    Some(format!("{RESERVED}{}", parts.join("\0")))
}

/// The parts of a reserved name, `None` for a name outside the namespace.
fn split_reserved(name: &str) -> Option<Vec<&str>> {
    name.strip_prefix(RESERVED)
        .map(|rest| rest.split(RESERVED).collect())
}

/// Where the versions of `container` are kept.
pub fn versions_container_name(container: &str) -> Option<String> {
    reserved_name(&["versions", container])
}

/// The prefix of every version of `object` in its versions container.
fn versions_object_prefix(object: &str) -> Option<String> {
    reserved_name(&[object, ""])
}

/// The name of `object`'s version `version_id`: inverted, so that the
/// newest lists first.
pub fn version_object_name(object: &str, version_id: &str) -> Option<String> {
    let inverted = Timestamp::parse(version_id).ok()?.invert()?;
    reserved_name(&[object, &inverted.internal()])
}

/// `(object, Some(version_id))` of a version's name; the name itself and
/// `None` when it is not one.
pub fn parse_version_object_name(name: &str) -> (String, Option<String>) {
    match split_reserved(name).as_deref() {
        Some([object, inverted]) => {
            match Timestamp::parse(inverted).ok().and_then(|t| t.invert()) {
                Some(ts) => (object.to_string(), Some(ts.internal())),
                None => (name.to_string(), None),
            }
        }
        _ => (name.to_string(), None),
    }
}

/// Swift's `timestamp_to_version`: the timestamp without its offset.
fn timestamp_to_version(ts: Timestamp) -> String {
    ts.with_offset(0).internal()
}

fn bad_request(body: &str) -> Resp {
    error_response(StatusCode::BAD_REQUEST, Some(body))
}

fn internal_error(body: &str) -> Resp {
    error_response(StatusCode::INTERNAL_SERVER_ERROR, Some(body))
}

/// Swift's `_check_response_error`: a missing container or object is a
/// failed precondition, another client error is passed on, anything else
/// means the data could not be versioned.
async fn check(resp: Resp) -> Result<Resp, Resp> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    if status == StatusCode::NOT_FOUND {
        return Err(error_response(StatusCode::PRECONDITION_FAILED, None));
    }
    if status.is_client_error() {
        let (parts, body) = resp.into_parts();
        let body = apus_http::body::collect_limited(body, 64 * 1024)
            .await
            .unwrap_or_default();
        let mut out = http::Response::from_parts(parts, apus_http::full(body.clone()));
        out.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        return Err(out);
    }
    Err(error_response(StatusCode::SERVICE_UNAVAILABLE, None))
}

fn with_query(path_and_query: &str, query: Option<&str>) -> String {
    match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{path_and_query}?{q}"),
        None => path_and_query.to_string(),
    }
}

/// Points `req` at `path` (decoded), keeping or replacing its query.
fn retarget(req: &mut Req, path: &str, query: Option<&str>) -> Result<(), Resp> {
    let uri = with_query(&apus_proto::quote(path), query);
    *req.uri_mut() = uri
        .parse()
        .map_err(|_| error_response(StatusCode::PRECONDITION_FAILED, None))?;
    Ok(())
}

fn allow_reserved(headers: &mut HeaderMap) {
    headers.insert(ALLOW_RESERVED_NAMES, HeaderValue::from_static("true"));
}

impl Service for ObjectVersioning {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let Some(decoded) = apus_proto::percent_decode_internal(req.uri().path()).ok() else {
            return self.next.call(req);
        };
        let Ok(parts) = apus_proto::split_path(&decoded, 2, 4, true) else {
            return self.next.call(req);
        };
        let mut it = parts.into_iter();
        let (Some(Some(version)), Some(Some(account))) = (it.next(), it.next()) else {
            return self.next.call(req);
        };
        if version != "v1" && version != "v1.0" {
            return self.next.call(req);
        }
        let container = it.next().flatten().filter(|c| !c.is_empty());
        let object = it.next().flatten().filter(|o| !o.is_empty());
        let handler = Handler {
            next: &self.next,
            info: &self.info,
            config: &self.config,
            version,
            account,
        };
        match (container, object) {
            (None, _) if req.method() == Method::GET => {
                Box::pin(async move { handler.list_containers(req).await })
            }
            (None, _) => self.next.call(req),
            (Some(container), None) => Box::pin(async move {
                handler
                    .container_request(req, container)
                    .await
                    .unwrap_or_else(|e| e)
            }),
            (Some(container), Some(object)) => Box::pin(async move {
                handler
                    .object_request(req, container, object)
                    .await
                    .unwrap_or_else(|e| e)
            }),
        }
    }
}

struct Handler<'a> {
    next: &'a SharedService,
    info: &'a Arc<dyn InfoLookup>,
    config: &'a ProxyConfig,
    version: String,
    account: String,
}

/// The client's timestamp for this write (set now if it has none).
fn ensure_timestamp(req: &mut Req) -> Result<Timestamp, Resp> {
    if let Some(ts) = header_str(req.headers(), "x-timestamp") {
        return Timestamp::parse(ts)
            .map_err(|_| bad_request("X-Timestamp should be a UNIX timestamp float value"));
    }
    let ts = Timestamp::now();
    set_header(req.headers_mut(), "x-timestamp", &ts.internal());
    Ok(ts)
}

impl Handler<'_> {
    fn path(&self, container: &str, object: Option<&str>) -> String {
        match object {
            Some(o) => format!("/{}/{}/{container}/{o}", self.version, self.account),
            None => format!("/{}/{}/{container}", self.version, self.account),
        }
    }

    /// A subrequest on the client's behalf, already authorized.
    fn pre_authed(env: &Env) -> Env {
        let mut env = env.subrequest(SWIFT_SOURCE);
        env.authorize = None;
        env
    }

    async fn call(
        &self,
        env: &Env,
        method: Method,
        path: &str,
        query: Option<&str>,
        headers: HeaderMap,
        body: apus_http::Body,
    ) -> Resp {
        match build_request(method, path, query, headers, Self::pre_authed(env), body) {
            Ok(r) => self.next.call(r).await,
            Err(_) => error_response(StatusCode::PRECONDITION_FAILED, None),
        }
    }

    // ---- objects ----

    async fn object_request(
        &self,
        req: Req,
        container: String,
        object: String,
    ) -> Result<Resp, Resp> {
        let client_env = env(&req);
        let info = self
            .info
            .container_info(&client_env, &self.account, &container)
            .await;
        let versions = header_text(&info.headers, SYSMETA_VERSIONS_CONT)
            .map(|v| unquote(&v).split('/').next().unwrap_or("").to_string())
            .filter(|v| !v.is_empty());
        let enabled = header_str(&info.headers, SYSMETA_VERSIONS_ENABLED).is_some_and(is_true);
        let version_id = crate::dlo::util::query_param(req.uri().query(), "version-id")
            .filter(|v| !v.is_empty());
        let obj = ObjectCtx {
            h: self,
            env: client_env,
            container,
            object,
            versions,
            enabled,
            write_acl: info.write_acl.clone(),
        };
        match version_id {
            Some(id) => obj.with_version_id(req, id).await,
            None if obj.versions.is_some() => obj.without_version_id(req).await,
            None => Ok(self.next.call(req).await),
        }
    }

    // ---- containers ----

    async fn container_request(&self, req: Req, container: String) -> Result<Resp, Resp> {
        let method = req.method().clone();
        if (method == Method::PUT || method == Method::POST)
            && req.headers().contains_key(CLIENT_VERSIONS_ENABLED)
        {
            return self.enable_versioning(req, container).await;
        }
        if method == Method::DELETE {
            return self.delete_container(req, container).await;
        }
        self.container_get_head(req, container).await
    }

    async fn enable_versioning(&self, mut req: Req, container: String) -> Result<Resp, Resp> {
        let client_env = env(&req);
        let info = self
            .info
            .container_info(&client_env, &self.account, &container)
            .await;
        let legacy = header_str(&info.headers, SYSMETA_LEGACY_LOCATION)
            .is_some_and(|v| !v.is_empty())
            || info.versions.as_deref().is_some_and(|v| !v.is_empty());
        if legacy {
            return Err(bad_request(
                "Cannot enable object versioning on a container that is already using the legacy versioned writes feature.",
            ));
        }
        if header_str(&info.headers, "x-container-sync-to").is_some_and(|v| !v.is_empty()) {
            return Err(bad_request(
                "Cannot enable object versioning on a container configured as source of container syncing.",
            ));
        }
        let enable = header_str(req.headers(), CLIENT_VERSIONS_ENABLED).is_some_and(is_true);
        // Python's str() of the flag, as Swift stores it.
        set_header(
            req.headers_mut(),
            SYSMETA_VERSIONS_ENABLED,
            if enable { "True" } else { "False" },
        );
        req.headers_mut().remove(CLIENT_VERSIONS_ENABLED);
        let mut created: Option<(String, HeaderMap)> = None;
        if enable {
            let mut headers = HeaderMap::new();
            if info.exists() {
                // The versions keep to the container's policy.
                if let Some(policy) = self.config.policy(info.storage_policy) {
                    if policy.deprecated {
                        if let Some(auth) = client_env.authorize.clone() {
                            let path = self.path(&container, None);
                            auth.authorize(AuthRequest {
                                method: req.method(),
                                path: &path,
                                headers: req.headers(),
                                env: &client_env,
                                acl: None,
                            })
                            .await?;
                        }
                        return Err(bad_request(
                            "Cannot enable object versioning on a container that uses a deprecated storage policy.",
                        ));
                    }
                    set_header(&mut headers, "x-storage-policy", &policy.name);
                }
            } else if req.method() == Method::PUT {
                if let Some(p) = req.headers().get("x-storage-policy") {
                    headers.insert("x-storage-policy", p.clone());
                }
            }
            allow_reserved(&mut headers);
            let Some(versions) = versions_container_name(&container) else {
                return Err(bad_request("Invalid container name"));
            };
            let path = self.path(&versions, None);
            let resp = self
                .call(
                    &client_env,
                    Method::PUT,
                    &path,
                    None,
                    headers.clone(),
                    apus_http::empty(),
                )
                .await;
            if !(resp.status().is_success() || resp.status() == StatusCode::CONFLICT) {
                return Err(internal_error("Error enabling object versioning"));
            }
            set_header(
                req.headers_mut(),
                SYSMETA_VERSIONS_CONT,
                &apus_proto::quote(&versions),
            );
            created = Some((path, headers));
        }
        let mut resp = self.next.call(req).await;
        if !resp.status().is_success() {
            if let Some((path, headers)) = created {
                // Let the client try again from a clean state.
                let _ = self
                    .call(
                        &client_env,
                        Method::DELETE,
                        &path,
                        None,
                        headers,
                        apus_http::empty(),
                    )
                    .await;
            }
        }
        show_enabled_flag(resp.headers_mut());
        Ok(resp)
    }

    async fn delete_container(&self, req: Req, container: String) -> Result<Resp, Resp> {
        let client_env = env(&req);
        let info = self
            .info
            .container_info(&client_env, &self.account, &container)
            .await;
        if !info.exists() && info.status != 404 {
            // No replica could say whether versions hang on this
            // container: it is not deleted blindly (and a DELETE that
            // none of them answered could not have succeeded anyway).
            return Err(error_response(StatusCode::SERVICE_UNAVAILABLE, None));
        }
        let versions = header_text(&info.headers, SYSMETA_VERSIONS_CONT)
            .map(|v| unquote(&v))
            .filter(|v| !v.is_empty());
        if let Some(versions) = versions {
            let path = self.path(&versions, None);
            let mut headers = HeaderMap::new();
            allow_reserved(&mut headers);
            let head = self
                .call(
                    &client_env,
                    Method::HEAD,
                    &path,
                    None,
                    headers.clone(),
                    apus_http::empty(),
                )
                .await;
            let count = header_str(head.headers(), "x-container-object-count")
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(0);
            if head.status().is_success() && count > 0 {
                return Err(error_response(
                    StatusCode::CONFLICT,
                    Some("Delete all versions before deleting container."),
                ));
            }
            if !head.status().is_success() && head.status() != StatusCode::NOT_FOUND {
                return Err(internal_error("Error deleting versioned container"));
            }
            let del = self
                .call(
                    &client_env,
                    Method::DELETE,
                    &path,
                    None,
                    headers,
                    apus_http::empty(),
                )
                .await;
            if !del.status().is_success() && del.status() != StatusCode::NOT_FOUND {
                return Err(internal_error("Error deleting versioned container"));
            }
        }
        Ok(self.next.call(req).await)
    }

    async fn container_get_head(&self, mut req: Req, container: String) -> Result<Resp, Resp> {
        let client_env = env(&req);
        let method = req.method().clone();
        let query = parse_query(req.uri().query());
        let wants_versions = query.iter().any(|(k, _)| k == "versions");
        if wants_versions && method == Method::GET {
            // Version listings are JSON only: the format asked for must
            // allow it (listing_formats, always in front, has put the
            // client's `format=` choice into `Accept`).
            let accept = header_str(req.headers(), "accept").unwrap_or("*/*");
            if !matches!(
                apus_proto::listing::best_match(accept, &["application/json"]),
                Ok(Some(_))
            ) {
                return Err(error_response(StatusCode::NOT_ACCEPTABLE, None));
            }
            let mut q: Vec<(String, String)> = query
                .iter()
                .filter(|(k, _)| k != "format")
                .cloned()
                .collect();
            q.push(("format".into(), "json".into()));
            let path = apus_proto::percent_decode_internal(req.uri().path())
                .map_err(|_| error_response(StatusCode::PRECONDITION_FAILED, None))?;
            retarget(&mut req, &path, Some(&build_query(&q)))?;
        }
        let mut resp = self.next.call(req).await;
        let h = resp.headers_mut();
        show_enabled_flag(h);
        let mut location = header_text(h, SYSMETA_VERSIONS_CONT)
            .map(|v| unquote(&v))
            .filter(|v| !v.is_empty());
        if let Some(loc) = &location {
            if h.contains_key("x-container-bytes-used") {
                let mut headers = HeaderMap::new();
                allow_reserved(&mut headers);
                let path = self.path(loc, None);
                let vresp = self
                    .call(
                        &client_env,
                        Method::HEAD,
                        &path,
                        None,
                        headers,
                        apus_http::empty(),
                    )
                    .await;
                if vresp.status().is_success() {
                    let own: u64 = header_str(resp.headers(), "x-container-bytes-used")
                        .and_then(|b| b.parse().ok())
                        .unwrap_or(0);
                    let theirs: u64 = header_str(vresp.headers(), "x-container-bytes-used")
                        .and_then(|b| b.parse().ok())
                        .unwrap_or(0);
                    set_header(
                        resp.headers_mut(),
                        "x-container-bytes-used",
                        &(own + theirs).to_string(),
                    );
                }
            }
        } else if resp.status().is_success() {
            // Never versioned as far as we know: a version listing still
            // looks where the versions would be.
            location = versions_container_name(&container);
        }
        if !(resp.status().is_success() && method == Method::GET) {
            return Ok(resp);
        }
        let location = location.unwrap_or_default();
        if !is_json(&resp) {
            return Ok(resp);
        }
        let (mut parts, body) = resp.into_parts();
        let body = apus_http::body::collect_limited(body, crate::segments::MAX_LISTING_BYTES)
            .await
            .map_err(|_| error_response(StatusCode::INTERNAL_SERVER_ERROR, None))?;
        // Only an entry with a `symlink_path` (which symlink adds) can
        // change: without one anywhere, the listing passes as the container
        // server wrote it, without a parse (Swift re-serializes with the
        // same json.dumps the container server used, so the bytes match).
        if !wants_versions && memchr::memmem::find(&body, b"\"symlink_path\"").is_none() {
            return Ok(http::Response::from_parts(parts, apus_http::full(body)));
        }
        let Ok(serde_json::Value::Array(mut listing)) =
            serde_json::from_slice::<serde_json::Value>(&body)
        else {
            return Ok(http::Response::from_parts(parts, apus_http::full(body)));
        };
        let mut changed = false;
        for item in &mut listing {
            changed |= self.show_version_link(item, &container, &location, wants_versions);
        }
        if !wants_versions && !changed {
            return Ok(http::Response::from_parts(parts, apus_http::full(body)));
        }
        let out = if wants_versions {
            let limit = listing_limit(&query, CONTAINER_LISTING_LIMIT)?;
            let versions = self
                .list_versions(&client_env, &query, &location, listing, limit)
                .await?;
            match versions {
                Listing::Body(v) => v,
                Listing::Answer(resp) => return Ok(resp),
            }
        } else {
            serde_json::Value::Array(listing).to_string()
        };
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(out.len()));
        if wants_versions {
            // JSON whatever the format asked: listing_formats leaves it.
            parts
                .extensions
                .insert(crate::listing_formats::FormattedListing);
        }
        Ok(http::Response::from_parts(parts, apus_http::full(out)))
    }

    /// A listing entry that links to a version shows the version's size
    /// and etag (and, outside version listings, a `?version-id` path);
    /// `false` when the entry is left as it was.
    fn show_version_link(
        &self,
        item: &mut serde_json::Value,
        container: &str,
        location: &str,
        wants_versions: bool,
    ) -> bool {
        let Some(obj) = item.as_object_mut() else {
            return false;
        };
        if !["symlink_path", "symlink_etag", "symlink_bytes"]
            .iter()
            .all(|k| obj.contains_key(*k))
        {
            return false;
        }
        let path = unquote(obj["symlink_path"].as_str().unwrap_or(""));
        let Ok(parts) = apus_proto::split_path(&path, 4, 4, true) else {
            return false;
        };
        let (Some(tgt_account), Some(tgt_container), Some(tgt_object)) =
            (parts[1].clone(), parts[2].clone(), parts[3].clone())
        else {
            return false;
        };
        if tgt_container != location {
            return false;
        }
        let hash = obj
            .get("hash")
            .and_then(|h| h.as_str())
            .unwrap_or("")
            .to_string();
        let params: String = hash
            .split(';')
            .skip(1)
            .filter_map(|p| p.trim().split_once('='))
            .map(|(k, v)| format!("; {}={}", k.trim(), v.trim()))
            .collect();
        let bytes = obj
            .remove("symlink_bytes")
            .unwrap_or(serde_json::Value::from(0));
        let etag = obj
            .remove("symlink_etag")
            .and_then(|e| e.as_str().map(str::to_string))
            .unwrap_or_default();
        obj.insert("bytes".into(), bytes);
        obj.insert("version_symlink".into(), serde_json::Value::Bool(true));
        obj.insert("hash".into(), serde_json::Value::String(etag + &params));
        let (name, version_id) = parse_version_object_name(&tgt_object);
        if let (Some(id), false) = (version_id, wants_versions) {
            let sp = format!(
                "{}?version-id={id}",
                apus_proto::quote(&format!("/v1/{tgt_account}/{container}/{name}"))
            );
            obj.insert("symlink_path".into(), serde_json::Value::String(sp));
        }
        true
    }

    async fn list_versions(
        &self,
        env: &Env,
        query: &[(String, String)],
        location: &str,
        primary: Vec<serde_json::Value>,
        limit: usize,
    ) -> Result<Listing, Resp> {
        let mut params: HashMap<String, String> = query.iter().cloned().collect();
        if let Some(marker) = params.get("marker").cloned() {
            let prefix = versions_object_prefix(&marker).unwrap_or_default();
            let new_marker = match params.get("version_marker").map(String::as_str) {
                None => format!("{prefix}:"),
                Some("null") => prefix,
                Some(v) => {
                    let v_marker = Timestamp::parse(v)
                        .map_err(|_| bad_request("invalid version_marker param"))?
                        .internal();
                    params.remove("version_marker");
                    version_object_name(&marker, &v_marker)
                        .ok_or_else(|| bad_request("invalid version_marker param"))?
                }
            };
            params.insert("marker".into(), new_marker);
        } else if params.contains_key("version_marker") {
            return Err(bad_request("version_marker param requires marker"));
        }
        let delimiter = params.get("delimiter").cloned().unwrap_or_default();
        if delimiter
            .chars()
            .any(|c| c.is_ascii_digit() || c == '.' || c == RESERVED)
        {
            return Err(bad_request("invalid delimiter param"));
        }
        let reverse = params.get("reverse").is_some_and(|r| is_true(r));

        let mut null_listing = Vec::new();
        let mut subdirs: Vec<String> = Vec::new();
        let mut current: HashMap<String, serde_json::Value> = HashMap::new();
        let mut latest: HashSet<String> = HashSet::new();
        for mut item in primary {
            let Some(obj) = item.as_object_mut() else {
                continue;
            };
            if !obj.contains_key("name") {
                if let Some(s) = obj.get("subdir").and_then(|s| s.as_str()) {
                    if !subdirs.iter().any(|d| d == s) {
                        subdirs.push(s.to_string());
                    }
                }
                continue;
            }
            if obj.get("version_symlink").and_then(|v| v.as_bool()) == Some(true) {
                let path = unquote(
                    obj.get("symlink_path")
                        .and_then(|p| p.as_str())
                        .unwrap_or(""),
                );
                current.insert(path, item);
            } else {
                let name = obj
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or("")
                    .to_string();
                obj.insert("version_id".into(), "null".into());
                obj.insert("is_latest".into(), true.into());
                latest.insert(name);
                null_listing.push(item);
            }
        }

        let path = self.path(location, None);
        let versions_exist = self
            .info
            .container_info(env, &self.account, location)
            .await
            .status
            != 404;
        let mut versions_listing = Vec::new();
        let mut found_versions = false;
        if versions_exist {
            let prefix = match params.get("prefix") {
                Some(p) => reserved_name(&[p]).unwrap_or_default(),
                None => String::new(),
            };
            let mut q: Vec<(String, String)> = Vec::new();
            q.push(("prefix".into(), prefix));
            for k in ["marker", "limit", "delimiter", "reverse"] {
                q.push((k.into(), params.get(k).cloned().unwrap_or_default()));
            }
            q.push(("format".into(), "json".into()));
            let mut headers = HeaderMap::new();
            allow_reserved(&mut headers);
            let resp = self
                .call(
                    env,
                    Method::GET,
                    &path,
                    Some(&build_query(&q)),
                    headers,
                    apus_http::empty(),
                )
                .await;
            if resp.status().is_success() {
                found_versions = true;
                let body = apus_http::body::collect_limited(
                    resp.into_body(),
                    crate::segments::MAX_LISTING_BYTES,
                )
                .await
                .map_err(|_| error_response(StatusCode::INTERNAL_SERVER_ERROR, None))?;
                let items: Vec<serde_json::Value> =
                    serde_json::from_slice(&body).unwrap_or_default();
                let account_path = format!("/v1/{}/{location}/", self.account);
                for mut item in items {
                    let Some(obj) = item.as_object_mut() else {
                        continue;
                    };
                    let Some(name) = obj.get("name").and_then(|n| n.as_str()).map(str::to_string)
                    else {
                        if let Some(s) = obj.get("subdir").and_then(|s| s.as_str()) {
                            let s = split_reserved(s)
                                .and_then(|p| p.first().map(|f| f.to_string()))
                                .unwrap_or_else(|| s.to_string());
                            if !subdirs.contains(&s) {
                                subdirs.push(s);
                            }
                        }
                        continue;
                    };
                    let (object, version_id) = parse_version_object_name(&name);
                    let Some(version_id) = version_id else {
                        continue;
                    };
                    let full = format!("{account_path}{name}");
                    let is_marker = obj.get("content_type").and_then(|c| c.as_str())
                        == Some(DELETE_MARKER_CONTENT_TYPE);
                    // The version a link points at is the latest; so is a
                    // delete marker newer than anything else of its name.
                    let is_latest =
                        current.remove(&full).is_some() || (is_marker && !latest.contains(&object));
                    if is_latest {
                        latest.insert(object.clone());
                    }
                    obj.insert("is_latest".into(), is_latest.into());
                    obj.insert("name".into(), object.into());
                    obj.insert("version_id".into(), version_id.into());
                    versions_listing.push(item);
                }
            } else if resp.status() != StatusCode::NOT_FOUND {
                return Ok(Listing::Answer(resp));
            }
        }
        // Links whose version is missing still show, as the latest.
        let mut broken = Vec::new();
        let mut current: Vec<(String, serde_json::Value)> = current.into_iter().collect();
        current.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, item) in current {
            if found_versions {
                // Swift reads these paths without their leading parts
                // only when the versions container is missing; with it
                // present, a link to a missing version is not listed.
                continue;
            }
            let linked = path.splitn(5, '/').last().unwrap_or("");
            let (name, version_id) = parse_version_object_name(linked);
            let Some(version_id) = version_id else {
                continue;
            };
            let is_latest = latest.insert(name.clone());
            let field = |k: &str| item.get(k).cloned().unwrap_or(serde_json::Value::Null);
            broken.push(serde_json::json!({
                "name": name,
                "is_latest": is_latest,
                "version_id": version_id,
                "content_type": field("content_type"),
                "bytes": field("bytes"),
                "hash": field("hash"),
                "last_modified": field("last_modified"),
            }));
        }
        let subdir_listing = subdirs
            .into_iter()
            .map(|s| serde_json::json!({ "subdir": s }));
        let all: Vec<serde_json::Value> = null_listing
            .into_iter()
            .chain(versions_listing)
            .chain(subdir_listing)
            .chain(broken)
            .collect();
        Ok(Listing::Body(build_listing(all, reverse, limit)))
    }

    // ---- accounts ----

    async fn list_containers(&self, req: Req) -> Resp {
        let client_env = env(&req);
        let query = parse_query(req.uri().query());
        let resp = self.next.call(req).await;
        if !resp.status().is_success() || !is_json(&resp) {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        let Ok(body) =
            apus_http::body::collect_limited(body, crate::segments::MAX_LISTING_BYTES).await
        else {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, None);
        };
        let Ok(serde_json::Value::Array(mut listing)) =
            serde_json::from_slice::<serde_json::Value>(&body)
        else {
            return http::Response::from_parts(parts, apus_http::full(body));
        };
        let mut params: Vec<(String, String)> = Vec::new();
        let mut has_prefix = false;
        for (k, v) in &query {
            let v = match k.as_str() {
                "prefix" => {
                    has_prefix = true;
                    versions_container_name(v).unwrap_or_else(|| v.clone())
                }
                "marker" | "end_marker" => versions_container_name(v).unwrap_or_else(|| v.clone()),
                "format" => continue,
                _ => v.clone(),
            };
            params.push((k.clone(), v));
        }
        if !has_prefix {
            params.push((
                "prefix".into(),
                reserved_name(&["versions"]).unwrap_or_default(),
            ));
        }
        params.push(("format".into(), "json".into()));
        let mut headers = HeaderMap::new();
        allow_reserved(&mut headers);
        let path = format!("/{}/{}", self.version, self.account);
        let vresp = self
            .call(
                &client_env,
                Method::GET,
                &path,
                Some(&build_query(&params)),
                headers,
                apus_http::empty(),
            )
            .await;
        let vbody = if vresp.status().is_success() {
            apus_http::body::collect_limited(vresp.into_body(), crate::segments::MAX_LISTING_BYTES)
                .await
                .unwrap_or_default()
        } else {
            Bytes::new()
        };
        let versions: Vec<serde_json::Value> = serde_json::from_slice(&vbody).unwrap_or_default();
        let mut by_name: Vec<(String, serde_json::Value)> = Vec::new();
        for item in versions {
            let Some(name) = item.get("name").and_then(|n| n.as_str()) else {
                continue;
            };
            let container = match split_reserved(name).as_deref() {
                Some(["versions", c]) => c.to_string(),
                _ => name.to_string(),
            };
            by_name.retain(|(n, _)| n != &container);
            by_name.push((container, item));
        }
        if by_name.is_empty() {
            return http::Response::from_parts(parts, apus_http::full(body));
        }
        for item in &mut listing {
            let Some(name) = item
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
            else {
                continue;
            };
            if let Some(pos) = by_name.iter().position(|(n, _)| *n == name) {
                let (_, v) = by_name.remove(pos);
                let extra = v.get("bytes").and_then(|b| b.as_u64()).unwrap_or(0);
                let own = item.get("bytes").and_then(|b| b.as_u64()).unwrap_or(0);
                item["bytes"] = serde_json::Value::from(own + extra);
            }
        }
        // Versions containers left over (their container is gone) show,
        // with no current objects, so their owner can clean them up.
        for (name, mut item) in by_name {
            item["name"] = serde_json::Value::String(name);
            item["count"] = serde_json::Value::from(0);
            listing.push(item);
        }
        let reverse = query
            .iter()
            .rev()
            .find(|(k, _)| k == "reverse")
            .is_some_and(|(_, v)| is_true(v));
        let limit = match listing_limit(&query, ACCOUNT_LISTING_LIMIT) {
            Ok(l) => l,
            Err(resp) => return resp,
        };
        let out = build_listing(listing, reverse, limit);
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(out.len()));
        http::Response::from_parts(parts, apus_http::full(out))
    }
}

enum Listing {
    Body(String),
    Answer(Resp),
}

fn is_json(resp: &Resp) -> bool {
    header_str(resp.headers(), "content-type").is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|t| t.trim() == "application/json")
    })
}

/// Swift's `constrain_req_limit`.
fn listing_limit(query: &[(String, String)], max: usize) -> Result<usize, Resp> {
    let given = query
        .iter()
        .rev()
        .find(|(k, _)| k == "limit")
        .map(|(_, v)| v.as_str());
    match given {
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
            let n: usize = l.parse().unwrap_or(usize::MAX);
            if n > max {
                return Err(error_response(
                    StatusCode::PRECONDITION_FAILED,
                    Some(&format!("Maximum limit is {max}")),
                ));
            }
            Ok(n)
        }
        _ => Ok(max),
    }
}

/// Entries merged by name (a `subdir` by its own), stably, then cut to
/// `limit`: Swift's `build_listing`.
fn build_listing(mut items: Vec<serde_json::Value>, reverse: bool, limit: usize) -> String {
    fn key(v: &serde_json::Value) -> &str {
        v.get("subdir")
            .or_else(|| v.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or("")
    }
    if reverse {
        items.sort_by(|a, b| key(b).cmp(key(a)));
    } else {
        items.sort_by(|a, b| key(a).cmp(key(b)));
    }
    items.truncate(limit);
    serde_json::Value::Array(items).to_string()
}

/// The answer shows the flag under its client name.
fn show_enabled_flag(headers: &mut HeaderMap) {
    if let Some(v) = headers.get(SYSMETA_VERSIONS_ENABLED).cloned() {
        headers.insert(HeaderName::from_static(CLIENT_VERSIONS_ENABLED), v);
    }
}

/// One object request on a container that is or was versioned.
struct ObjectCtx<'a> {
    h: &'a Handler<'a>,
    env: Env,
    container: String,
    object: String,
    versions: Option<String>,
    enabled: bool,
    write_acl: Option<String>,
}

impl ObjectCtx<'_> {
    fn versions(&self) -> &str {
        self.versions.as_deref().unwrap_or("")
    }

    fn object_path(&self) -> String {
        self.h.path(&self.container, Some(&self.object))
    }

    fn version_path(&self, version_name: &str) -> String {
        self.h.path(self.versions(), Some(version_name))
    }

    async fn without_version_id(&self, req: Req) -> Result<Resp, Resp> {
        match *req.method() {
            Method::PUT => self.put(req).await,
            Method::POST => Ok(self.post(req).await),
            Method::DELETE => self.delete(req).await,
            _ => Ok(self.get_head(req).await),
        }
    }

    async fn with_version_id(&self, req: Req, version_id: String) -> Result<Resp, Resp> {
        let method = req.method().clone();
        if method == Method::POST {
            return Err(bad_request("POST to a specific version is not allowed"));
        }
        if self.versions.is_none() && version_id != "null" {
            return Err(bad_request(
                "version-aware operations require that the container is versioned",
            ));
        }
        if version_id != "null" && Timestamp::parse(&version_id).is_err() {
            return Err(bad_request("Invalid version parameter"));
        }
        match method {
            Method::OPTIONS => Ok(self.h.next.call(req).await),
            Method::DELETE => self.delete_version(req, version_id).await,
            Method::PUT => self.put_version(req, version_id).await,
            _ if version_id == "null" => self.get_head_null(req).await,
            _ => self.get_head_version(req, version_id).await,
        }
    }

    /// The caller must be able to write the container before anything is
    /// copied on its behalf.
    async fn authorize(&self, req: &Req) -> Result<(), Resp> {
        let Some(auth) = self.env.authorize.clone() else {
            return Ok(());
        };
        let path = self.object_path();
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

    /// The object as stored (a link not followed), newest copy.
    async fn get_source(&self, path: &str, reserved: bool) -> Result<Option<Resp>, Resp> {
        let mut headers = HeaderMap::new();
        headers.insert("x-newest", HeaderValue::from_static("True"));
        if reserved {
            allow_reserved(&mut headers);
        }
        let resp = self
            .h
            .call(
                &self.env,
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
        let resp = check(resp).await?;
        match content_length(&resp) {
            Some(len) if len <= MAX_FILE_SIZE => Ok(Some(resp)),
            _ => Err(error_response(StatusCode::PAYLOAD_TOO_LARGE, None)),
        }
    }

    /// Copies an object written while versioning was off into the
    /// versions container, named by its own timestamp.
    async fn copy_current(&self, req: &Req) -> Result<(), Resp> {
        self.authorize(req).await?;
        let Some(source) = self.get_source(&self.object_path(), false).await? else {
            return Ok(());
        };
        if header_str(source.headers(), SYSMETA_VERSIONS_SYMLINK) == Some("true") {
            return Ok(());
        }
        let h = source.headers();
        let ts = header_str(h, "x-backend-timestamp")
            .or_else(|| header_str(h, "x-timestamp"))
            .and_then(|t| Timestamp::parse(t).ok())
            .or_else(|| {
                header_str(h, "last-modified")
                    .and_then(apus_core::conditional::parse_http_date)
                    .and_then(|s| Timestamp::from_secs_f64(s as f64))
            })
            .unwrap_or_else(Timestamp::now);
        let name = version_object_name(&self.object, &timestamp_to_version(ts))
            .ok_or_else(|| internal_error("Invalid object name"))?;
        let resp = self.put_copy(&self.version_path(&name), source).await;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(text_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                NO_VERSIONS_CONTAINER,
            ));
        }
        check(resp).await.map(|_| ())
    }

    /// PUTs what `source` answered at `path`, with its metadata.
    async fn put_copy(&self, path: &str, source: Resp) -> Resp {
        let (parts, body) = source.into_parts();
        let mut headers = HeaderMap::new();
        for (k, v) in &parts.headers {
            let name = k.as_str();
            let skip = matches!(
                name,
                "x-timestamp"
                    | "content-range"
                    | "transfer-encoding"
                    | "connection"
                    | "date"
                    | "last-modified"
                    | "accept-ranges"
                    | "x-trans-id"
                    | "x-openstack-request-id"
            ) || name.starts_with("x-backend-");
            if !skip {
                headers.append(k.clone(), v.clone());
            }
        }
        allow_reserved(&mut headers);
        let mut env = Handler::pre_authed(&self.env);
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
        match build_request(Method::PUT, path, None, headers, env, body) {
            Ok(r) => self.h.next.call(r).await,
            Err(_) => error_response(StatusCode::PRECONDITION_FAILED, None),
        }
    }

    async fn put(&self, mut req: Req) -> Result<Resp, Resp> {
        if !self.enabled {
            return Ok(self.h.next.call(req).await);
        }
        self.copy_current(&req).await?;
        let ts = ensure_timestamp(&mut req)?;
        let version_id = timestamp_to_version(ts);
        let name = version_object_name(&self.object, &version_id)
            .ok_or_else(|| internal_error("Invalid object name"))?;

        // The client's data goes straight into the versions container.
        let (mut parts, body) = req.into_parts();
        let mut headers = HeaderMap::new();
        for (k, v) in &parts.headers {
            if k != "x-delete-at" && k != "x-delete-after" {
                headers.append(k.clone(), v.clone());
            }
        }
        allow_reserved(&mut headers);
        // Without a type from the client, what is stored decides it (a
        // guess from the name, or a static link's target's type).
        let client_type = header_str(&headers, "content-type")
            .map(|t| t.split(';').next().unwrap_or("").trim().to_string());
        let slo_size = header_str(&headers, "x-object-sysmeta-slo-size").map(str::to_string);
        let counted = Arc::new(AtomicU64::new(0));
        let counter = counted.clone();
        let body = body
            .map_frame(move |frame| {
                if let Some(data) = frame.data_ref() {
                    counter.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                frame
            })
            .boxed();
        let mut put_env = Handler::pre_authed(&self.env);
        if self.env.content_type_overridden {
            put_env.content_type_overridden = true;
            if let Some(e) = parts.extensions.get_mut::<Env>() {
                e.content_type_overridden = false;
            }
        }
        let resp = match build_request(
            Method::PUT,
            &self.version_path(&name),
            None,
            headers,
            put_env,
            body,
        ) {
            Ok(r) => self.h.next.call(r).await,
            Err(_) => error_response(StatusCode::PRECONDITION_FAILED, None),
        };
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(text_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                NO_VERSIONS_CONTAINER,
            ));
        }
        let resp = check(resp).await?;
        let etag = header_str(resp.headers(), "etag")
            .map(|e| apus_core::conditional::normalize_etag(e).to_string())
            .unwrap_or_default();
        let bytes = slo_size.unwrap_or_else(|| counted.load(Ordering::Relaxed).to_string());
        let put_type = match client_type {
            Some(t) => t,
            None => self.stored_type(&name).await,
        };
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
        parts.headers.remove(http::header::TRANSFER_ENCODING);
        let req = Req::from_parts(parts, apus_http::empty());
        Ok(self
            .put_link(req, ts, &name, &etag, &bytes, &put_type)
            .await)
    }

    /// The content type version `name` was stored with, without its
    /// parameters.
    async fn stored_type(&self, name: &str) -> String {
        let mut headers = HeaderMap::new();
        allow_reserved(&mut headers);
        let head = self
            .h
            .call(
                &self.env,
                Method::HEAD,
                &self.version_path(name),
                Some("symlink=get"),
                headers,
                apus_http::empty(),
            )
            .await;
        header_str(head.headers(), "content-type")
            .unwrap_or("application/octet-stream")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    }

    /// Makes the object a link to version `name`.
    async fn put_link(
        &self,
        mut req: Req,
        ts: Timestamp,
        name: &str,
        etag: &str,
        bytes: &str,
        content_type: &str,
    ) -> Resp {
        *req.method_mut() = Method::PUT;
        let h = req.headers_mut();
        // Just after the version, so the link is the newer write.
        set_header(h, "x-timestamp", &ts.with_offset(1).internal());
        set_header(h, SYSMETA_TARGET_ETAG, etag);
        set_header(h, SYSMETA_TARGET_BYTES, bytes);
        set_header(h, "content-type", content_type);
        set_header(
            h,
            SYMLINK_TARGET,
            &apus_proto::quote(&format!("{}/{name}", self.versions())),
        );
        set_header(h, SYSMETA_VERSIONS_SYMLINK, "true");
        set_header(h, SYMLOOP_EXTEND, "true");
        set_header(h, LINK_ALLOWS_RESERVED, "true");
        allow_reserved(h);
        for name in [
            "etag",
            "x-if-delete-at",
            SYMLINK_TARGET_ACCOUNT,
            "x-object-manifest",
            "x-static-large-object",
            "x-object-sysmeta-slo-etag",
            "x-object-sysmeta-slo-size",
        ] {
            h.remove(name);
        }
        h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
        h.remove(http::header::TRANSFER_ENCODING);
        crate::service::env_mut(&mut req).source = Some(SWIFT_SOURCE);
        let mut resp = self.h.next.call(req).await;
        let rh = resp.headers_mut();
        set_header(rh, "etag", etag);
        if let Some(id) = parse_version_object_name(name).1 {
            set_header(rh, "x-object-version-id", &id);
        }
        resp
    }

    async fn delete(&self, mut req: Req) -> Result<Resp, Resp> {
        if !self.enabled {
            return Ok(self.h.next.call(req).await);
        }
        self.copy_current(&req).await?;
        let ts = ensure_timestamp(&mut req)?;
        let name = version_object_name(&self.object, &timestamp_to_version(ts))
            .ok_or_else(|| internal_error("Invalid object name"))?;
        let mut headers = HeaderMap::new();
        set_header(&mut headers, "content-type", DELETE_MARKER_CONTENT_TYPE);
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
        if let Some(t) = req.headers().get("x-auth-token") {
            headers.insert("x-auth-token", t.clone());
        }
        allow_reserved(&mut headers);
        set_header(&mut headers, "x-timestamp", &ts.internal());
        let mut env = Handler::pre_authed(&self.env);
        env.content_type_overridden = true;
        let marker = match build_request(
            Method::PUT,
            &self.version_path(&name),
            None,
            headers,
            env,
            apus_http::empty(),
        ) {
            Ok(r) => self.h.next.call(r).await,
            Err(_) => error_response(StatusCode::PRECONDITION_FAILED, None),
        };
        check(marker).await?;
        let mut resp = self.h.next.call(req).await;
        if resp.status().is_success() || resp.status() == StatusCode::NOT_FOUND {
            let rh = resp.headers_mut();
            if let Some(id) = parse_version_object_name(&name).1 {
                set_header(rh, "x-object-version-id", &id);
            }
            set_header(rh, "x-backend-content-type", DELETE_MARKER_CONTENT_TYPE);
        }
        Ok(resp)
    }

    async fn post(&self, req: Req) -> Resp {
        let mut headers = HeaderMap::new();
        for (k, v) in req.headers() {
            if !matches!(
                k.as_str(),
                "x-delete-at" | "x-delete-after" | "content-length" | "transfer-encoding"
            ) {
                headers.append(k.clone(), v.clone());
            }
        }
        allow_reserved(&mut headers);
        let resp = self.h.next.call(req).await;
        if resp.status() != StatusCode::TEMPORARY_REDIRECT
            || !header_str(resp.headers(), SYSMETA_VERSIONS_SYMLINK).is_some_and(is_true)
        {
            return resp;
        }
        // The link's metadata is its version's: the POST goes there.
        let Some(location) = header_str(resp.headers(), "location").map(unquote) else {
            return resp;
        };
        let follows = apus_proto::split_path(&location, 4, 4, true)
            .ok()
            .is_some_and(|p| {
                p[1].as_deref() == Some(self.h.account.as_str())
                    && p[2].as_deref() == Some(self.versions())
            });
        if !follows {
            return resp;
        }
        self.h
            .call(
                &self.env,
                Method::POST,
                &location,
                None,
                headers,
                apus_http::empty(),
            )
            .await
    }

    async fn get_head(&self, req: Req) -> Resp {
        let mut resp = self.h.next.call(req).await;
        set_header(resp.headers_mut(), "x-object-version-id", "null");
        let location = header_str(resp.headers(), "content-location")
            .map(unquote)
            .unwrap_or_default();
        if !location.is_empty() {
            if let Ok(p) = apus_proto::split_path(&location, 4, 4, true) {
                if p[1].as_deref() == Some(self.h.account.as_str())
                    && p[2].as_deref() == Some(self.versions())
                {
                    if let (_, Some(id)) = parse_version_object_name(p[3].as_deref().unwrap_or(""))
                    {
                        let rh = resp.headers_mut();
                        set_header(rh, "x-object-version-id", &id);
                        let loc =
                            format!("{}?version-id={id}", apus_proto::quote(&self.object_path()));
                        set_header(rh, "content-location", &loc);
                    }
                }
            }
        }
        let target = header_str(resp.headers(), SYMLINK_TARGET)
            .map(unquote)
            .unwrap_or_default();
        if !target.is_empty() {
            if let Ok(p) = apus_proto::split_path(&format!("/{target}"), 2, 2, true) {
                if p[0].as_deref() == Some(self.versions()) {
                    if let (_, Some(id)) = parse_version_object_name(p[1].as_deref().unwrap_or(""))
                    {
                        let rh = resp.headers_mut();
                        set_header(rh, "x-object-version-id", &id);
                        let t = format!(
                            "{}?version-id={id}",
                            apus_proto::quote(&format!("{}/{}", self.container, self.object))
                        );
                        set_header(rh, SYMLINK_TARGET, &t);
                    }
                }
            }
        }
        resp
    }

    /// The object as stored now: `(no current object, its version link)`.
    async fn current_link(&self, req: &Req) -> Result<(bool, Option<String>), Resp> {
        let mut headers = HeaderMap::new();
        headers.insert("x-newest", HeaderValue::from_static("True"));
        if let Some(t) = req.headers().get("x-auth-token") {
            headers.insert("x-auth-token", t.clone());
        }
        let resp = self
            .h
            .call(
                &self.env,
                Method::HEAD,
                &self.object_path(),
                Some("symlink=get"),
                headers,
                apus_http::empty(),
            )
            .await;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok((true, None));
        }
        let resp = check(resp).await?;
        let h = resp.headers();
        let target = if header_str(h, SYSMETA_VERSIONS_SYMLINK) == Some("true") {
            header_str(h, SYMLINK_TARGET).map(str::to_string)
        } else {
            None
        };
        Ok((false, target))
    }

    async fn delete_version(&self, mut req: Req, version_id: String) -> Result<Resp, Resp> {
        if version_id == "null" {
            return Ok(self.h.next.call(req).await);
        }
        let (tombstone, link) = self.current_link(&req).await?;
        let name = version_object_name(&self.object, &version_id)
            .ok_or_else(|| bad_request("Invalid version parameter"))?;
        let wanted = format!("{}/{name}", self.versions());
        let current_version;
        match link.as_deref().map(unquote) {
            Some(l) if !tombstone && l == wanted => {
                // The current version: the link goes first, then the data.
                let mut link_req = Req::new(apus_http::empty());
                *link_req.method_mut() = Method::DELETE;
                *link_req.headers_mut() = req.headers().clone();
                link_req.headers_mut().remove(http::header::CONTENT_LENGTH);
                link_req
                    .headers_mut()
                    .remove(http::header::TRANSFER_ENCODING);
                link_req.extensions_mut().insert(self.env.clone());
                retarget(&mut link_req, &self.object_path(), None)?;
                check(self.h.next.call(link_req).await).await?;
                retarget(&mut req, &self.version_path(&name), None)?;
                current_version = "null".to_string();
            }
            other => {
                // Another version (or none) is current: only this one goes.
                let query = req.uri().query().map(str::to_string);
                retarget(&mut req, &self.version_path(&name), query.as_deref())?;
                current_version = match other {
                    Some(l) if !tombstone => l
                        .split_once('/')
                        .and_then(|(_, n)| parse_version_object_name(n).1)
                        .unwrap_or_else(|| "null".to_string()),
                    _ => "null".to_string(),
                };
            }
        }
        allow_reserved(req.headers_mut());
        let mut resp = self.h.next.call(req).await;
        let rh = resp.headers_mut();
        set_header(rh, "x-object-version-id", &version_id);
        set_header(rh, "x-object-current-version-id", &current_version);
        Ok(resp)
    }

    async fn put_version(&self, req: Req, version_id: String) -> Result<Resp, Resp> {
        if version_id == "null" {
            return Err(bad_request("Invalid version parameter"));
        }
        let (parts, body) = req.into_parts();
        let chunked = header_str(&parts.headers, "transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        let has_body = if chunked {
            !apus_http::body::collect_limited(body, 1)
                .await
                .map(|b| b.is_empty())
                .unwrap_or(false)
        } else {
            match header_str(&parts.headers, "content-length") {
                None => return Err(error_response(StatusCode::LENGTH_REQUIRED, None)),
                Some(cl) => cl.trim() != "0",
            }
        };
        if has_body {
            return Err(text_error(
                StatusCode::BAD_REQUEST,
                "PUT version-id requests require a zero byte body",
            ));
        }
        let name = version_object_name(&self.object, &version_id)
            .ok_or_else(|| bad_request("Invalid version parameter"))?;
        let path = self.version_path(&name);
        let mut headers = HeaderMap::new();
        allow_reserved(&mut headers);
        let head = self
            .h
            .call(
                &self.env,
                Method::HEAD,
                &path,
                Some("symlink=get"),
                headers,
                apus_http::empty(),
            )
            .await;
        if head.status() == StatusCode::NOT_FOUND {
            let info = self
                .h
                .info
                .container_info(&self.env, &self.h.account, self.versions())
                .await;
            if info.exists() {
                return Err(text_error(
                    StatusCode::NOT_FOUND,
                    "The specified version does not exist",
                ));
            }
            return Err(text_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                NO_VERSIONS_CONTAINER,
            ));
        }
        let head = check(head).await?;
        let h = head.headers();
        let etag = header_str(h, "etag")
            .map(|e| apus_core::conditional::normalize_etag(e).to_string())
            .unwrap_or_default();
        let bytes = header_str(h, "content-length").unwrap_or("0").to_string();
        let content_type = header_str(h, "content-type").unwrap_or("").to_string();
        let mut req = Req::from_parts(parts, apus_http::empty());
        let ts = ensure_timestamp(&mut req)?;
        let query = None;
        let object_path = self.object_path();
        retarget(&mut req, &object_path, query)?;
        Ok(self
            .put_link(req, ts, &name, &etag, &bytes, &content_type)
            .await)
    }

    async fn get_head_version(&self, mut req: Req, version_id: String) -> Result<Resp, Resp> {
        let name = version_object_name(&self.object, &version_id)
            .ok_or_else(|| bad_request("Invalid version parameter"))?;
        let query = req.uri().query().map(str::to_string);
        retarget(&mut req, &self.version_path(&name), query.as_deref())?;
        allow_reserved(req.headers_mut());
        let mut resp = self.h.next.call(req).await;
        if resp.status().is_success() {
            set_header(resp.headers_mut(), "x-object-version-id", &version_id);
        }
        let content_type = header_str(resp.headers(), "x-backend-content-type")
            .or_else(|| header_str(resp.headers(), "content-type"))
            .unwrap_or("");
        if content_type == DELETE_MARKER_CONTENT_TYPE {
            let mut out = error_response(StatusCode::NOT_FOUND, None);
            let oh = out.headers_mut();
            set_header(oh, "x-object-version-id", &version_id);
            set_header(oh, "content-type", DELETE_MARKER_CONTENT_TYPE);
            return Err(out);
        }
        Ok(resp)
    }

    async fn get_head_null(&self, req: Req) -> Result<Resp, Resp> {
        let mut resp = self.h.next.call(req).await;
        if resp.status().is_success() {
            let location = header_str(resp.headers(), "content-location")
                .map(unquote)
                .unwrap_or_default();
            let marker = reserved_name(&["versions", ""]).unwrap_or_default();
            if location.contains(&marker) {
                // The current object is a real version, not the null one.
                return Err(error_response(StatusCode::NOT_FOUND, None));
            }
            set_header(resp.headers_mut(), "x-object-version-id", "null");
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_invert_their_timestamps() {
        // Swift: build_versions_object_name('o', '1600000000.12345')
        assert_eq!(
            version_object_name("o", "1600000000.12345").as_deref(),
            Some("\0o\08399999999.87654")
        );
        assert_eq!(
            parse_version_object_name("\0o\08399999999.87654"),
            ("o".to_string(), Some("1600000000.12345".to_string()))
        );
        assert_eq!(parse_version_object_name("plain"), ("plain".into(), None));
        assert_eq!(
            parse_version_object_name("\0a\0b\0c"),
            ("\0a\0b\0c".into(), None)
        );
        assert_eq!(version_object_name("o", "1.5_0000000000000001"), None);
        assert_eq!(
            versions_container_name("c").as_deref(),
            Some("\0versions\0c")
        );
        assert_eq!(versions_container_name("a\0b"), None);
    }

    #[test]
    fn listings_merge_by_name_stably() {
        let items = vec![
            serde_json::json!({"name": "b", "version_id": "null"}),
            serde_json::json!({"name": "a", "version_id": "2"}),
            serde_json::json!({"name": "b", "version_id": "1"}),
            serde_json::json!({"subdir": "a/"}),
        ];
        let out = build_listing(items.clone(), false, 10);
        let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        let keys: Vec<String> = v
            .iter()
            .map(|i| {
                format!(
                    "{}:{}",
                    i.get("name").or(i.get("subdir")).unwrap().as_str().unwrap(),
                    i.get("version_id").and_then(|x| x.as_str()).unwrap_or("")
                )
            })
            .collect();
        assert_eq!(keys, ["a:2", "a/:", "b:null", "b:1"]);
        let out = build_listing(items, true, 2);
        let v: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["version_id"], "null");
        assert_eq!(v[1]["version_id"], "1");
    }

    #[test]
    fn limits_are_checked_as_swift_does() {
        let q = |v: &str| vec![("limit".to_string(), v.to_string())];
        assert_eq!(listing_limit(&q("5"), 10).ok(), Some(5));
        assert_eq!(listing_limit(&q("-1"), 10).ok(), Some(10));
        assert_eq!(listing_limit(&[], 10).ok(), Some(10));
        assert_eq!(
            listing_limit(&q("11"), 10).err().map(|r| r.status()),
            Some(StatusCode::PRECONDITION_FAILED)
        );
    }
}
