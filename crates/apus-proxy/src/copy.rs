//! Server-side copy (Swift's `copy` middleware): `COPY` with
//! `Destination`, and `PUT` with `X-Copy-From`, become a GET of the source
//! and a PUT of the destination through the rest of the pipeline.
//!
//! - `COPY /v1/a/c/o` with `Destination: c2/o2` (and optionally
//!   `Destination-Account: a2`) is turned into `PUT /v1/a2/c2/o2` with
//!   `X-Copy-From: c/o` (and `X-Copy-From-Account: a`).
//! - `PUT` with `X-Copy-From: c/o` (and optionally `X-Copy-From-Account`)
//!   must have no body (400). The source is read with a GET subrequest
//!   carrying the client's headers (so `Range` and conditional headers
//!   apply to the source) plus `X-Newest`, through the rest of the
//!   pipeline: a DLO source yields its content, unless the request has
//!   `?multipart-manifest=get`, in which case the manifest is copied as a
//!   manifest. A source without a known length (a DLO with more than one
//!   listing page) or longer than the largest object is refused (413);
//!   any other source status of 300 or more is the answer.
//! - The destination PUT streams the source's body. It carries the
//!   source's metadata and other headers (not its `X-Static-Large-Object`,
//!   `X-Object-Manifest`, `ETag`, `Content-Type` or timestamps), then the
//!   client's headers over them; with `X-Fresh-Metadata: true` only the
//!   source's system metadata is kept. The source's content type is used
//!   unless the client gives one; the source's etag is sent for checking
//!   when the source is a whole plain object.
//! - A successful answer carries `X-Copied-From`, `X-Copied-From-Account`,
//!   `X-Copied-From-Last-Modified` and the metadata written.
//! - `OPTIONS` answers list `COPY` among the allowed methods.
//!
//! `POST` is not a copy (Swift removed post-as-copy). Names in
//! `Destination` and `X-Copy-From` are URL-decoded, as Swift does.
//!
//! Differences from Swift: `?heartbeat=on` (202 with whitespace while the
//! copy runs) is not supported, the copy is answered when it is done; the
//! source's `X-Backend-*` and framing headers are not carried into the
//! destination PUT.

#[cfg(test)]
mod tests;

use http::header::{HeaderName, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use apus_proto::constraints::MAX_FILE_SIZE;
use apus_proto::headers::{
    is_object_sysmeta, is_object_transient_sysmeta, is_object_user_meta, is_true,
};

use crate::dlo::util::{
    build_query, build_request, content_length, object_path, parse_query, query_param, unquote,
};
use crate::service::{
    env, error_response, header_text, BoxFuture, Req, Resp, Service, SharedService,
};

const SWIFT_SOURCE: &str = "SSC";

/// Source headers never carried into the destination PUT.
const NOT_COPIED: [&str; 6] = [
    "x-static-large-object",
    "x-object-manifest",
    "etag",
    "content-type",
    "x-timestamp",
    "x-backend-timestamp",
];

/// Response framing and per-request headers of the source GET, which mean
/// nothing on a PUT.
const NOT_CARRIED: [&str; 8] = [
    "content-length",
    "content-range",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "x-trans-id",
    "x-openstack-request-id",
    "date",
];

const CONTAINER_UPDATE_OVERRIDE: &str = "x-object-sysmeta-container-update-override-";

pub struct Copy {
    next: SharedService,
    max_file_size: u64,
}

impl Copy {
    pub fn new(next: SharedService) -> Self {
        Copy {
            next,
            max_file_size: MAX_FILE_SIZE,
        }
    }

    /// With a different largest object size (for tests).
    pub fn with_max_file_size(next: SharedService, max_file_size: u64) -> Self {
        Copy {
            next,
            max_file_size,
        }
    }
}

impl Service for Copy {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let Some(parts) = object_path(&req) else {
            return self.next.call(req);
        };
        let method = req.method().clone();
        let copy_from = req
            .headers()
            .get("x-copy-from")
            .is_some_and(|v| !v.is_empty());
        if method == Method::PUT && copy_from {
            return Box::pin(self.handle_put(req, parts));
        }
        if method.as_str() == "COPY" {
            return Box::pin(self.handle_copy(req, parts));
        }
        if method == Method::OPTIONS {
            return Box::pin(self.handle_options(req));
        }
        self.next.call(req)
    }
}

fn precondition_failed(body: &str) -> Resp {
    error_response(StatusCode::PRECONDITION_FAILED, Some(body))
}

/// Swift's `check_account_format` on an already decoded name: the
/// complaint (a 412 body), if any.
fn check_account(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("Account name cannot be empty");
    }
    if name.contains('/') {
        return Some("Account name cannot contain slashes");
    }
    None
}

/// Swift's `check_path_header`: the URL-decoded value, with a leading
/// `/` added if missing, must be `/<container>/<object>`.
fn check_path_header(value: &str) -> Option<(String, String)> {
    let mut path = unquote(value);
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let parts = apus_proto::split_path(&path, 2, 2, true).ok()?;
    match (parts.first(), parts.get(1)) {
        (Some(Some(c)), Some(Some(o))) => Some((c.clone(), o.clone())),
        _ => None,
    }
}

fn set(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(n, v);
    }
}

/// What a COPY or an `X-Copy-From` PUT is about.
struct CopyRequest {
    version: String,
    /// Destination.
    account: String,
    container: String,
    object: String,
    src_account: String,
    src_container: String,
    src_object: String,
    /// The client's headers, without `X-Copy-From*` / `Destination*`.
    headers: HeaderMap,
    query: Option<String>,
}

impl Copy {
    async fn handle_copy(&self, req: Req, parts: [String; 4]) -> Resp {
        let [version, account, container, object] = parts;
        let Some(destination) = header_text(req.headers(), "destination").filter(|d| !d.is_empty())
        else {
            return precondition_failed("Destination header required");
        };
        let mut dest_account = account.clone();
        if let Some(value) = header_text(req.headers(), "destination-account") {
            dest_account = unquote(&value);
            if let Some(complaint) = check_account(&dest_account) {
                return precondition_failed(complaint);
            }
        }
        let Some((dest_container, dest_object)) = check_path_header(&destination) else {
            return precondition_failed(
                "Destination header must be of the form <container name>/<object name>",
            );
        };
        let query = req.uri().query().map(str::to_string);
        let env = env(&req);
        let (parts, _body) = req.into_parts();
        let mut headers = parts.headers;
        for h in [
            "destination",
            "destination-account",
            "x-copy-from",
            "x-copy-from-account",
        ] {
            headers.remove(h);
        }
        let copy = CopyRequest {
            version,
            account: dest_account,
            container: dest_container,
            object: dest_object,
            src_account: account,
            src_container: container,
            src_object: object,
            headers,
            query,
        };
        self.copy(copy, env).await
    }

    async fn handle_put(&self, req: Req, parts: [String; 4]) -> Resp {
        let [version, account, container, object] = parts;
        let has_body = match req.headers().get(CONTENT_LENGTH) {
            Some(v) => v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) != Some(0),
            None => false,
        };
        if has_body {
            let mut resp = error_response(
                StatusCode::BAD_REQUEST,
                Some("Copy requests require a zero byte body"),
            );
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return resp;
        }
        let mut src_account = account.clone();
        if let Some(value) =
            header_text(req.headers(), "x-copy-from-account").filter(|v| !v.is_empty())
        {
            src_account = unquote(&value);
            if let Some(complaint) = check_account(&src_account) {
                return precondition_failed(complaint);
            }
        }
        let copy_from = header_text(req.headers(), "x-copy-from").unwrap_or_default();
        let Some((src_container, src_object)) = check_path_header(&copy_from) else {
            return precondition_failed(
                "X-Copy-From header must be of the form <container name>/<object name>",
            );
        };
        let query = req.uri().query().map(str::to_string);
        let env = env(&req);
        let (parts, _body) = req.into_parts();
        let mut headers = parts.headers;
        headers.remove("x-copy-from");
        headers.remove("x-copy-from-account");
        let copy = CopyRequest {
            version,
            account,
            container,
            object,
            src_account,
            src_container,
            src_object,
            headers,
            query,
        };
        self.copy(copy, env).await
    }

    async fn copy(&self, copy: CopyRequest, client_env: crate::service::Env) -> Resp {
        let sub_env = client_env.subrequest(SWIFT_SOURCE);
        let manifest_get =
            query_param(copy.query.as_deref(), "multipart-manifest").as_deref() == Some("get");

        // GET the source with the client's headers.
        let mut get_headers = copy.headers.clone();
        for h in [
            "content-length",
            "transfer-encoding",
            "x-backend-storage-policy-index",
        ] {
            get_headers.remove(h);
        }
        set(&mut get_headers, "x-newest", "true");
        let mut get_query = parse_query(copy.query.as_deref());
        if manifest_get {
            get_query.retain(|(k, _)| k != "format");
            get_query.push(("format".into(), "raw".into()));
        }
        let src_path = format!(
            "/{}/{}/{}/{}",
            copy.version, copy.src_account, copy.src_container, copy.src_object
        );
        let Ok(get) = build_request(
            Method::GET,
            &src_path,
            Some(&build_query(&get_query)),
            get_headers,
            sub_env.clone(),
            apus_http::empty(),
        ) else {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, None);
        };
        let source = self.next.call(get).await;
        let length = match content_length(&source) {
            Some(len) if len <= self.max_file_size => len,
            // no length: a DLO with more segments than one listing page
            _ => return error_response(StatusCode::PAYLOAD_TOO_LARGE, None),
        };
        if source.status().as_u16() >= 300 {
            return source;
        }
        let (src_parts, src_body) = source.into_parts();
        let src_headers = src_parts.headers;

        // The destination's headers: the source's, then the client's.
        let mut sink = HeaderMap::new();
        let fresh = header_text(&copy.headers, "x-fresh-metadata").is_some_and(|v| is_true(&v));
        for (name, value) in &src_headers {
            let n = name.as_str();
            let wanted = if fresh {
                is_object_sysmeta(n)
            } else {
                !NOT_COPIED.contains(&n)
                    && !NOT_CARRIED.contains(&n)
                    && !n.starts_with("x-backend-")
            };
            if wanted {
                sink.insert(name.clone(), value.clone());
            }
        }
        for name in copy.headers.keys() {
            if name == CONTENT_LENGTH || name.as_str() == "transfer-encoding" {
                continue;
            }
            sink.remove(name);
            for value in copy.headers.get_all(name) {
                sink.append(name.clone(), value.clone());
            }
        }

        let mut put_query = parse_query(copy.query.as_deref());
        if manifest_get {
            if src_headers.contains_key("x-static-large-object") {
                for (k, v) in put_query.iter_mut() {
                    if k == "multipart-manifest" {
                        *v = "put".into();
                    }
                }
            }
            if let Some(manifest) = src_headers.get("x-object-manifest") {
                put_query.retain(|(k, _)| k != "multipart-manifest");
                sink.insert("x-object-manifest", manifest.clone());
            }
        }
        put_query.retain(|(k, _)| k != "version-id");

        let whole_plain_object = src_parts.status == StatusCode::OK
            && !src_headers.contains_key("x-static-large-object")
            && (!src_headers.contains_key("x-object-manifest") || manifest_get);
        let src_etag = src_headers
            .get(ETAG)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).replace('"', ""))
            .filter(|e| !e.is_empty());
        match src_etag {
            Some(etag) if whole_plain_object => set(&mut sink, "etag", &etag),
            _ if whole_plain_object => {}
            _ => {
                let overrides: Vec<HeaderName> = sink
                    .keys()
                    .filter(|k| k.as_str().starts_with(CONTAINER_UPDATE_OVERRIDE))
                    .cloned()
                    .collect();
                for k in overrides {
                    sink.remove(k);
                }
            }
        }
        let client_type = copy
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| !v.is_empty());
        if !client_type {
            if let Some(ct) = src_headers.get(CONTENT_TYPE) {
                sink.insert(CONTENT_TYPE, ct.clone());
            }
        }
        sink.insert(CONTENT_LENGTH, HeaderValue::from(length));

        // What the answer reports.
        let mut extra = HeaderMap::new();
        set(
            &mut extra,
            "x-copied-from-account",
            &apus_proto::quote(&copy.src_account),
        );
        set(
            &mut extra,
            "x-copied-from",
            &apus_proto::quote(&format!("{}/{}", copy.src_container, copy.src_object)),
        );
        if let Some(lm) = src_headers.get("last-modified") {
            extra.insert("x-copied-from-last-modified", lm.clone());
        }
        if let Some(v) = src_headers.get("x-object-version-id") {
            extra.insert("x-copied-from-version-id", v.clone());
        }
        for (name, value) in &sink {
            let n = name.as_str();
            if is_object_user_meta(n)
                || is_object_sysmeta(n)
                || is_object_transient_sysmeta(n)
                || n == "x-delete-at"
            {
                extra.insert(name.clone(), value.clone());
            }
        }

        let dest_path = format!(
            "/{}/{}/{}/{}",
            copy.version, copy.account, copy.container, copy.object
        );
        let Ok(put) = build_request(
            Method::PUT,
            &dest_path,
            Some(&build_query(&put_query)),
            sink,
            sub_env,
            src_body,
        ) else {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, None);
        };
        let mut resp = self.next.call(put).await;
        if resp.status().is_success() {
            for (name, value) in extra {
                if let Some(name) = name {
                    resp.headers_mut().insert(name, value);
                }
            }
        }
        resp
    }

    async fn handle_options(&self, req: Req) -> Resp {
        let mut resp = self.next.call(req).await;
        if resp.status().is_success() {
            for name in ["allow", "access-control-allow-methods"] {
                let Some(value) = header_text(resp.headers(), name) else {
                    continue;
                };
                if !value.contains("COPY") {
                    set(resp.headers_mut(), name, &format!("{value}, COPY"));
                }
            }
        }
        resp
    }
}
