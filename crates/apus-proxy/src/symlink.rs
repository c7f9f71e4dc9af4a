//! Symlinks (Swift's `symlink` middleware): a zero-byte object whose
//! `X-Symlink-Target: <container>/<object>` (and optionally
//! `X-Symlink-Target-Account`) names another object.
//!
//! - A PUT with `X-Symlink-Target` must have no body (400). The target is
//!   checked (412 unless `<container>/<object>`, 400 for the link itself)
//!   and stored as system metadata, with the etag for container listings
//!   carrying `symlink_target=...`. With `X-Symlink-Target-Etag` the link
//!   is static: the target must exist (409 otherwise) and have that etag,
//!   and its length is recorded. Without a content type a dynamic link is
//!   `application/symlink`, a static one takes its target's.
//! - A GET or HEAD follows links (at most `symloop_max`, else 409) and
//!   answers the target with `Content-Location` naming it; a static link
//!   whose target's etag changed answers 409. `?symlink=get` answers the
//!   link itself with its `X-Symlink-*` headers.
//! - A POST to a link is applied to the link and answered 307 with
//!   `Location` naming the target; `X-Symlink-Target` on a POST is 400.
//! - JSON container listings show `symlink_path` (and `symlink_etag`,
//!   `symlink_bytes` for static links) and a clean `hash`.
//! - DELETE, OPTIONS and other PUTs are plain object requests. COPY follows
//!   the link (the copy's source GET passes through here), unless
//!   `?symlink=get`, which copies the link.

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::dlo::util::{build_request, query_param};
use crate::service::{
    add_to_header_list, env, header_str, header_text, set_header, text_error, BoxFuture, Req, Resp,
    Service, SharedService,
};

const TARGET: &str = "x-symlink-target";
const TARGET_ACCOUNT: &str = "x-symlink-target-account";
const TARGET_ETAG: &str = "x-symlink-target-etag";
const TARGET_BYTES: &str = "x-symlink-target-bytes";
const SYSMETA_TARGET: &str = "x-object-sysmeta-symlink-target";
const SYSMETA_TARGET_ACCOUNT: &str = "x-object-sysmeta-symlink-target-account";
const SYSMETA_TARGET_ETAG: &str = "x-object-sysmeta-symlink-target-etag";
const SYSMETA_TARGET_BYTES: &str = "x-object-sysmeta-symlink-target-bytes";
const SYMLOOP_EXTEND: &str = "x-object-sysmeta-symloop-extend";
/// Set by middleware on links whose targets are in the reserved namespace.
const ALLOW_RESERVED_NAMES_SYSMETA: &str = "x-object-sysmeta-allow-reserved-names";
const OVERRIDE_ETAG: &str = "x-object-sysmeta-container-update-override-etag";
const IGNORE_RANGE: &str = "x-backend-ignore-range-if-metadata-present";
const MD5_OF_EMPTY: &str = "d41d8cd98f00b204e9800998ecf8427e";
const SWIFT_SOURCE: &str = "SYM";

/// Swift's default `symloop_max`.
pub const DEFAULT_SYMLOOP_MAX: u32 = 2;

/// `symloop_max` as Swift uses it: below 1 means the default.
pub fn effective_symloop_max(configured: u32) -> u32 {
    if configured < 1 {
        DEFAULT_SYMLOOP_MAX
    } else {
        configured
    }
}

/// The `/info` entry for `symlink`.
pub fn info(symloop_max: u32) -> serde_json::Value {
    serde_json::json!({"symloop_max": symloop_max, "static_links": true})
}

pub struct Symlink {
    next: SharedService,
    symloop_max: u32,
}

impl Symlink {
    /// `symloop_max` below 1 means Swift's default.
    pub fn new(next: SharedService, symloop_max: u32) -> Self {
        Symlink {
            next,
            symloop_max: effective_symloop_max(symloop_max),
        }
    }
}

/// The decoded `/<version>/<account>/<container>[/<object>]` of a request.
fn split(req: &Req) -> Option<(String, String, String, Option<String>)> {
    let decoded = apus_proto::percent_decode_internal(req.uri().path()).ok()?;
    let mut parts = apus_proto::split_path(&decoded, 3, 4, true)
        .ok()?
        .into_iter();
    let version = parts.next()??;
    let account = parts.next()??;
    let container = parts.next()??;
    let object = parts.next().flatten().filter(|o| !o.is_empty());
    Some((version, account, container, object))
}

impl Service for Symlink {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let Some((version, account, container, object)) = split(&req) else {
            return self.next.call(req);
        };
        let method = req.method().clone();
        if object.is_none() {
            if method == Method::GET {
                return Box::pin(self.container_listing(req, version, account));
            }
            return self.next.call(req);
        }
        let object = object.unwrap_or_default();
        if method == Method::GET || method == Method::HEAD {
            if query_param(req.uri().query(), "symlink").as_deref() == Some("get") {
                return Box::pin(async move {
                    let mut resp = self.next.call(req).await;
                    sysmeta_to_user(resp.headers_mut());
                    resp
                });
            }
            return Box::pin(self.get_or_head(req, version, account));
        }
        if method == Method::PUT && req.headers().contains_key(TARGET) {
            return Box::pin(self.put(req, version, account, container, object));
        }
        if method == Method::POST {
            return Box::pin(self.post(req, version, account));
        }
        self.next.call(req)
    }
}

fn with_location(mut resp: Resp, location: Option<&str>) -> Resp {
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        resp.headers_mut().insert(http::header::CONTENT_LOCATION, v);
    }
    resp
}

/// The link's system metadata as the `X-Symlink-*` headers a client sees.
fn sysmeta_to_user(headers: &mut HeaderMap) {
    for (user, sysmeta) in [
        (TARGET, SYSMETA_TARGET),
        (TARGET_ACCOUNT, SYSMETA_TARGET_ACCOUNT),
        (TARGET_ETAG, SYSMETA_TARGET_ETAG),
        (TARGET_BYTES, SYSMETA_TARGET_BYTES),
    ] {
        if let Some(v) = headers.remove(sysmeta) {
            headers.insert(HeaderName::from_static(user), v);
        }
    }
}

/// swob's `normalize_etag`: the value without its surrounding quotes.
fn unquoted(etag: &str) -> &str {
    apus_core::conditional::normalize_etag(etag)
}

/// Python's `repr` of a text value, as Swift's messages quote etags.
fn py_repr(s: &str) -> String {
    if s.contains('\'') && !s.contains('"') {
        format!("\"{s}\"")
    } else {
        format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

impl Symlink {
    /// Follows links from the object `req` names to what is not a link.
    async fn get_or_head(&self, mut req: Req, version: String, account: String) -> Resp {
        add_to_header_list(
            req.headers_mut(),
            IGNORE_RANGE,
            "X-Object-Sysmeta-Symlink-Target",
        );
        let method = req.method().clone();
        let headers = req.headers().clone();
        let sub_env = env(&req).subrequest(SWIFT_SOURCE);
        let mut current_account = apus_proto::quote(&account);
        let mut loops = 0u32;
        let mut last_target: Option<String> = None;
        let mut wanted_etag: Option<String> = None;
        let mut resp = self.next.call(req).await;
        loop {
            let h = resp.headers();
            let target = header_str(h, SYSMETA_TARGET).map(str::to_string);
            let link_etag = header_str(h, SYSMETA_TARGET_ETAG).map(str::to_string);
            // A link's answer names its target whatever its status: a 412
            // or 304 judged the client's conditions against the link
            // itself, and the target must judge them again.
            let Some(target) = target else {
                // Not a link: the end of the chain.
                let final_etag =
                    header_str(resp.headers(), "etag").map(|e| unquoted(e).to_string());
                if let (Some(found), Some(wanted)) = (&final_etag, &wanted_etag) {
                    if found != wanted {
                        let msg = format!(
                            "Object Etag {} does not match X-Symlink-Target-Etag header {}",
                            py_repr(found),
                            py_repr(wanted)
                        );
                        return with_location(
                            text_error(StatusCode::CONFLICT, &msg),
                            last_target.as_deref(),
                        );
                    }
                }
                return with_location(resp, last_target.as_deref());
            };
            let found = link_etag
                .clone()
                .or_else(|| header_str(resp.headers(), "etag").map(|e| unquoted(e).to_string()));
            if wanted_etag.is_some() && wanted_etag != found {
                return with_location(
                    text_error(
                        StatusCode::CONFLICT,
                        "X-Symlink-Target-Etag headers do not match",
                    ),
                    last_target.as_deref(),
                );
            }
            if loops >= self.symloop_max {
                return text_error(
                    StatusCode::CONFLICT,
                    &format!(
                        "Too many levels of symbolic links, maximum allowed is {}",
                        self.symloop_max
                    ),
                );
            }
            if let Some(a) = header_str(resp.headers(), SYSMETA_TARGET_ACCOUNT) {
                current_account = a.to_string();
            }
            let extend = header_str(resp.headers(), SYMLOOP_EXTEND)
                .is_some_and(apus_proto::headers::is_true);
            // A link written by middleware (object versioning) into the
            // reserved namespace: the client was authorized for the link,
            // and may not name the target itself.
            let reserved = header_str(resp.headers(), ALLOW_RESERVED_NAMES_SYSMETA)
                .is_some_and(apus_proto::headers::is_true);
            if !extend {
                loops += 1;
            }
            // Stored quoted; Content-Location shows it so.
            let location = format!(
                "/{version}/{current_account}/{}",
                target.trim_start_matches('/')
            );
            let Ok(decoded) = apus_proto::percent_decode_internal(&location) else {
                return text_error(
                    StatusCode::PRECONDITION_FAILED,
                    "Invalid UTF8 or contains NULL",
                );
            };
            last_target = Some(location);
            wanted_etag = link_etag;
            let mut sub_headers = headers.clone();
            sub_headers.remove("x-backend-storage-policy-index");
            let mut target_env = sub_env.clone();
            if reserved {
                sub_headers.insert(
                    crate::app::ALLOW_RESERVED_NAMES,
                    HeaderValue::from_static("true"),
                );
                target_env.authorize = None;
            }
            let query = None;
            resp = match build_request(
                method.clone(),
                &decoded,
                query,
                sub_headers,
                target_env,
                apus_http::empty(),
            ) {
                Ok(r) => self.next.call(r).await,
                Err(_) => return text_error(StatusCode::PRECONDITION_FAILED, "bad symlink target"),
            };
        }
    }

    async fn put(
        &self,
        req: Req,
        version: String,
        account: String,
        container: String,
        object: String,
    ) -> Resp {
        let (mut parts, body) = req.into_parts();
        let has_body = match header_str(&parts.headers, "content-length") {
            Some(cl) => cl.trim() != "0",
            None => !apus_http::body::collect_limited(body, 1)
                .await
                .map(|b| b.is_empty())
                .unwrap_or(false),
        };
        if has_body {
            return text_error(
                StatusCode::BAD_REQUEST,
                "Symlink requests require a zero byte body",
            );
        }
        let form = "X-Symlink-Target header must be of the form <container name>/<object name>";
        let raw_target = header_text(&parts.headers, TARGET).unwrap_or_default();
        let target = crate::dlo::util::unquote(&raw_target);
        if target.starts_with('/') {
            return text_error(StatusCode::PRECONDITION_FAILED, form);
        }
        let Some((t_container, t_object)) =
            apus_proto::split_path(&format!("/{target}"), 2, 2, true)
                .ok()
                .and_then(|p| Some((p.first()?.clone()?, p.get(1)?.clone()?)))
        else {
            return error_412(form);
        };
        set_header(
            &mut parts.headers,
            TARGET,
            &apus_proto::quote(&format!("{t_container}/{t_object}")),
        );
        let mut t_account = account.clone();
        if let Some(a) = header_text(&parts.headers, TARGET_ACCOUNT) {
            let a = crate::dlo::util::unquote(&a);
            if a.is_empty() {
                return error_412("Account name cannot be empty");
            }
            if a.contains('/') {
                return error_412("Account name cannot contain slashes");
            }
            set_header(&mut parts.headers, TARGET_ACCOUNT, &apus_proto::quote(&a));
            t_account = a;
        }
        if (&t_account, &t_container, &t_object) == (&account, &container, &object) {
            return text_error(StatusCode::BAD_REQUEST, "Symlink cannot target itself");
        }
        let etag = header_str(&parts.headers, TARGET_ETAG)
            .map(|e| unquoted(e).to_string())
            .filter(|e| !e.is_empty());
        if etag
            .as_deref()
            .is_some_and(|e| e.contains([';', '"', '\\']))
        {
            return text_error(StatusCode::BAD_REQUEST, "Bad X-Symlink-Target-Etag format");
        }
        let has_type = header_str(&parts.headers, "content-type").is_some_and(|c| !c.is_empty());
        if etag.is_none() && !has_type {
            set_header(&mut parts.headers, "content-type", "application/symlink");
        }
        if let Some(etag) = &etag {
            let path = format!("/{version}/{t_account}/{t_container}/{t_object}");
            if let Err(resp) = self
                .check_static_target(&mut parts, &path, etag, has_type)
                .await
            {
                return resp;
            }
        }
        parts.headers.remove(TARGET_ETAG);
        parts.headers.remove(TARGET_BYTES);
        for (user, sysmeta) in [
            (TARGET, SYSMETA_TARGET),
            (TARGET_ACCOUNT, SYSMETA_TARGET_ACCOUNT),
        ] {
            if let Some(v) = parts.headers.remove(user) {
                parts.headers.insert(HeaderName::from_static(sysmeta), v);
            }
        }
        let h = &parts.headers;
        let mut listing_etag = vec![
            header_str(h, OVERRIDE_ETAG)
                .unwrap_or(MD5_OF_EMPTY)
                .to_string(),
            format!(
                "symlink_target={}",
                header_str(h, SYSMETA_TARGET).unwrap_or("")
            ),
        ];
        if let Some(a) = header_str(h, SYSMETA_TARGET_ACCOUNT) {
            listing_etag.push(format!("symlink_target_account={a}"));
        }
        if let Some(e) = header_str(h, SYSMETA_TARGET_ETAG) {
            listing_etag.push(format!("symlink_target_etag={e}"));
            listing_etag.push(format!(
                "symlink_target_bytes={}",
                header_str(h, SYSMETA_TARGET_BYTES).unwrap_or("0")
            ));
        }
        set_header(&mut parts.headers, OVERRIDE_ETAG, &listing_etag.join("; "));
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
        parts.headers.remove(http::header::TRANSFER_ENCODING);
        self.next
            .call(Req::from_parts(parts, apus_http::empty()))
            .await
    }

    /// A static link's target must exist with the etag given; its length
    /// (and a large object's etag for listings) go with the link.
    async fn check_static_target(
        &self,
        parts: &mut http::request::Parts,
        path: &str,
        etag: &str,
        has_type: bool,
    ) -> Result<(), Resp> {
        let sub_env = parts
            .extensions
            .get::<crate::service::Env>()
            .cloned()
            .unwrap_or_default()
            .subrequest(SWIFT_SOURCE);
        let mut headers = HeaderMap::new();
        for name in [
            "x-auth-token",
            "user-agent",
            crate::app::ALLOW_RESERVED_NAMES,
        ] {
            if let Some(v) = parts.headers.get(name) {
                headers.insert(HeaderName::from_static(name), v.clone());
            }
        }
        let location = apus_proto::quote(path);
        // Static links are followed; a dynamic one is the object checked.
        let mut wanted = etag.to_string();
        let mut current = path.to_string();
        let mut loops = 0u32;
        let mut hop_headers = headers.clone();
        let mut hop_env = sub_env.clone();
        let resp = loop {
            let req = build_request(
                Method::HEAD,
                &current,
                None,
                hop_headers.clone(),
                hop_env.clone(),
                apus_http::empty(),
            )
            .map_err(|_| error_412("bad symlink target"))?;
            let resp = self.next.call(req).await;
            let h = resp.headers();
            match (
                header_str(h, SYSMETA_TARGET),
                header_str(h, SYSMETA_TARGET_ETAG),
            ) {
                (Some(next), Some(next_etag)) if resp.status().is_success() => {
                    if next_etag != wanted {
                        return Err(with_location(
                            text_error(
                                StatusCode::CONFLICT,
                                "X-Symlink-Target-Etag headers do not match",
                            ),
                            Some(&location),
                        ));
                    }
                    if loops >= self.symloop_max {
                        return Err(text_error(
                            StatusCode::CONFLICT,
                            &format!(
                                "Too many levels of symbolic links, maximum allowed is {}",
                                self.symloop_max
                            ),
                        ));
                    }
                    loops += 1;
                    if header_str(h, ALLOW_RESERVED_NAMES_SYSMETA)
                        .is_some_and(apus_proto::headers::is_true)
                    {
                        // A versioned object: its link may reach the
                        // reserved namespace, on the caller's behalf.
                        hop_headers.insert(
                            crate::app::ALLOW_RESERVED_NAMES,
                            HeaderValue::from_static("true"),
                        );
                        hop_env.authorize = None;
                    }
                    let account = header_str(h, SYSMETA_TARGET_ACCOUNT)
                        .map(crate::dlo::util::unquote)
                        .unwrap_or_else(|| current.split('/').nth(2).unwrap_or("").to_string());
                    let version = current.split('/').nth(1).unwrap_or("v1").to_string();
                    current = format!("/{version}/{account}/{}", crate::dlo::util::unquote(next));
                    wanted = next_etag.to_string();
                }
                _ => break resp,
            }
        };
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Err(with_location(
                text_error(StatusCode::CONFLICT, "X-Symlink-Target does not exist"),
                Some(&location),
            ));
        }
        if !status.is_success() {
            return Err(crate::service::error_response(status, None));
        }
        let h = resp.headers();
        let found = header_str(h, "etag")
            .map(|e| unquoted(e).to_string())
            .unwrap_or_default();
        if found != wanted {
            let msg = format!(
                "Object Etag {} does not match X-Symlink-Target-Etag header {}",
                py_repr(&found),
                py_repr(&wanted)
            );
            return Err(with_location(
                text_error(StatusCode::CONFLICT, &msg),
                Some(&location),
            ));
        }
        if !parts.headers.contains_key(OVERRIDE_ETAG) {
            if let Some(params) = header_str(h, OVERRIDE_ETAG)
                .and_then(|v| v.split_once(';'))
                .map(|(_, p)| p)
            {
                set_header(
                    &mut parts.headers,
                    OVERRIDE_ETAG,
                    &format!("{MD5_OF_EMPTY};{params}"),
                );
            } else if let Some(slo_etag) = header_str(h, "x-object-sysmeta-slo-etag") {
                set_header(
                    &mut parts.headers,
                    OVERRIDE_ETAG,
                    &format!("{MD5_OF_EMPTY}; slo_etag={slo_etag}"),
                );
            }
        }
        let bytes = header_str(h, "x-object-sysmeta-slo-size")
            .or_else(|| header_str(h, "content-length"))
            .unwrap_or("0")
            .to_string();
        set_header(&mut parts.headers, SYSMETA_TARGET_BYTES, &bytes);
        set_header(&mut parts.headers, SYSMETA_TARGET_ETAG, etag);
        if !has_type {
            if let Some(ct) = header_str(h, "content-type").map(str::to_string) {
                set_header(&mut parts.headers, "content-type", &ct);
            }
        }
        Ok(())
    }

    async fn post(&self, req: Req, version: String, account: String) -> Resp {
        if req.headers().contains_key(TARGET) {
            return text_error(
                StatusCode::BAD_REQUEST,
                "A PUT request is required to set a symlink target",
            );
        }
        let resp = self.next.call(req).await;
        if !resp.status().is_success() {
            return resp;
        }
        let h = resp.headers();
        let Some(target) = header_str(h, SYSMETA_TARGET) else {
            return resp;
        };
        let target_account = header_str(h, SYSMETA_TARGET_ACCOUNT)
            .map(str::to_string)
            .unwrap_or_else(|| apus_proto::quote(&account));
        let body = "The requested POST was applied to a symlink. POST directly to the target to apply requested metadata.";
        let mut out = crate::service::error_response(StatusCode::TEMPORARY_REDIRECT, Some(body));
        let oh = out.headers_mut();
        set_header(
            oh,
            "location",
            &format!(
                "/{version}/{target_account}/{}",
                target.trim_start_matches('/')
            ),
        );
        if let Some(e) = header_str(h, SYSMETA_TARGET_ETAG) {
            set_header(oh, TARGET_ETAG, e);
        }
        for (k, v) in h {
            if k.as_str().starts_with("x-object-sysmeta-") {
                oh.insert(k.clone(), v.clone());
            }
        }
        // The target's path, as Swift's symlink leaves it.
        out.extensions_mut()
            .insert(crate::service::RelativeLocation);
        out
    }

    async fn container_listing(&self, req: Req, version: String, account: String) -> Resp {
        let resp = self.next.call(req).await;
        let account = apus_proto::quote(&account);
        crate::service::edit_json_listing(resp, b"symlink_target", |item| {
            annotate_listing_entry(item, &version, &account)
        })
        .await
    }
}

fn error_412(body: &str) -> Resp {
    crate::service::error_response(StatusCode::PRECONDITION_FAILED, Some(body))
}

/// Moves a listing entry's symlink parameters out of its `hash` into
/// `symlink_path`, `symlink_etag` and `symlink_bytes`; `false` when the
/// entry is not a link.
fn annotate_listing_entry(item: &mut serde_json::Value, version: &str, account: &str) -> bool {
    let Some(obj) = item.as_object_mut() else {
        return false;
    };
    let Some(hash) = obj.get("hash").and_then(|h| h.as_str()).map(str::to_string) else {
        return false;
    };
    let mut params = hash.split(';');
    let mut etag = params.next().unwrap_or("").trim().to_string();
    let mut target = None;
    let mut target_account = account.to_string();
    let mut link = false;
    for p in params {
        let Some((k, v)) = p.trim().split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        match k.trim() {
            "symlink_target" => {
                target = Some(v.to_string());
                link = true;
            }
            "symlink_target_account" => target_account = v.to_string(),
            "symlink_target_etag" => {
                obj.insert(
                    "symlink_etag".into(),
                    serde_json::Value::String(v.to_string()),
                );
            }
            "symlink_target_bytes" => {
                let n = v
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .unwrap_or(serde_json::Value::Null);
                obj.insert("symlink_bytes".into(), n);
            }
            k => etag.push_str(&format!("; {k}={v}")),
        }
    }
    if !link {
        return false;
    }
    obj.insert("hash".into(), serde_json::Value::String(etag));
    if let Some(t) = target {
        obj.insert(
            "symlink_path".into(),
            serde_json::Value::String(format!("/{version}/{target_account}/{t}")),
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_entries_show_their_links() {
        let mut item = serde_json::json!({
            "name": "link",
            "hash": "d41d8cd98f00b204e9800998ecf8427e; symlink_target=c/o%20x; symlink_target_etag=abc; symlink_target_bytes=12; slo_etag=zz"
        });
        assert!(annotate_listing_entry(&mut item, "v1", "AUTH_test"));
        assert_eq!(item["symlink_path"], "/v1/AUTH_test/c/o%20x");
        assert_eq!(item["symlink_etag"], "abc");
        assert_eq!(item["symlink_bytes"], 12);
        assert_eq!(
            item["hash"],
            "d41d8cd98f00b204e9800998ecf8427e; slo_etag=zz"
        );
        let mut plain = serde_json::json!({"name": "o", "hash": "abc"});
        assert!(!annotate_listing_entry(&mut plain, "v1", "AUTH_test"));
        assert_eq!(plain["hash"], "abc");
    }

    #[test]
    fn etags_are_quoted_as_python_does() {
        assert_eq!(py_repr("abc"), "'abc'");
        assert_eq!(py_repr("a'b"), "\"a'b\"");
    }
}
