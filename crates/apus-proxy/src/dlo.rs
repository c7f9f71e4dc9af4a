//! Dynamic large objects (Swift's `dlo` middleware): a manifest object
//! with `X-Object-Manifest: <container>/<prefix>` is served as the
//! concatenation of the objects listed under that prefix.
//!
//! A GET or HEAD of an object goes through unchanged, except that the
//! object server is told to ignore `Range` when the object turns out to be
//! a manifest. If the answer carries `X-Object-Manifest`, it is replaced:
//! the segment container is listed (json, through the rest of the
//! pipeline, so the segment container's ACLs apply), the length is the
//! sum of the listed sizes and the ETag the quoted md5 of the segments'
//! etags, both only when the first listing page is the whole listing
//! (fewer than 10,000 entries). A GET then streams the segments in
//! listing order, one at a time, fetching further listing pages as it
//! goes.
//!
//! As in Swift:
//! - `?multipart-manifest=get` reads the manifest itself;
//! - a single byte range is served across segments (206); when only part
//!   of a long listing is known and the range might reach past it, the
//!   range is ignored (200, no length); several ranges are answered with
//!   the whole object (200);
//! - `If-Match` / `If-None-Match` are evaluated against the DLO's etag,
//!   the `If-*-Since` headers against the manifest's `Last-Modified`, and
//!   segment subrequests carry none of them;
//! - a failing listing answers with the listing's status; a first
//!   segment that cannot be read gives 409 (503 when its server failed);
//!   a later failure, a segment whose bytes do not match its etag or
//!   length, or a read exceeding `max_get_time` ends the body early.
//!   Where Swift would end a chunked body cleanly we end it with an
//!   error, so a client never takes a truncated object for a whole one.
//! - a PUT with a malformed `X-Object-Manifest` is refused (400).
//!
//! Deliberate difference: the conditional headers are evaluated before
//! the first segment is fetched (Swift fetches it first), so a request
//! that would be answered 304 or 412 costs no segment read.

pub(crate) mod util;

#[cfg(test)]
pub(crate) mod fake_swift;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use apus_core::conditional::{parse_http_date, Conditions};
use apus_core::range::{content_range_value, Range};
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, ETAG};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::segments::{
    dlo_etag, segmented_response, SegmentReader, Subrequests, Walker, CONTAINER_LISTING_LIMIT,
};
use crate::service::{
    add_to_header_list, env, error_response, header_str, BoxFuture, Req, Resp, Service,
    SharedService,
};
use util::{object_path, query_param, subrequest_headers, unquote};

const X_OBJECT_MANIFEST: &str = "x-object-manifest";
const IGNORE_RANGE: &str = "x-backend-ignore-range-if-metadata-present";

/// The `dlo` settings (Swift's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DloConfig {
    /// The longest a GET of a DLO may take before its body is cut off.
    pub max_get_time: Duration,
    /// Segments fetched at full speed before rate limiting starts.
    pub rate_limit_after_segment: u64,
    /// Segment fetches per second after that (0: no limit).
    pub rate_limit_segments_per_sec: u64,
}

impl Default for DloConfig {
    fn default() -> Self {
        DloConfig {
            max_get_time: Duration::from_secs(86_400),
            rate_limit_after_segment: 10,
            rate_limit_segments_per_sec: 1,
        }
    }
}

/// The `/info` entry for `dlo` with the default settings.
pub fn info() -> serde_json::Value {
    info_for(&DloConfig::default())
}

/// The `/info` entry for `dlo` with `config`.
pub fn info_for(config: &DloConfig) -> serde_json::Value {
    serde_json::json!({ "max_get_time": config.max_get_time.as_secs() })
}

pub struct Dlo {
    next: SharedService,
    config: Arc<DloConfig>,
}

impl Dlo {
    pub fn new(next: SharedService) -> Self {
        Dlo::with_config(next, DloConfig::default())
    }

    pub fn with_config(next: SharedService, config: DloConfig) -> Self {
        Dlo {
            next,
            config: Arc::new(config),
        }
    }
}

impl Service for Dlo {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        let Some([version, account, _container, _object]) = object_path(&req) else {
            return self.next.call(req);
        };
        let method = req.method().clone();
        if method == Method::GET || method == Method::HEAD {
            let manifest_get =
                query_param(req.uri().query(), "multipart-manifest").as_deref() == Some("get");
            if manifest_get || env(&req).raw_manifest {
                return self.next.call(req);
            }
            return Box::pin(self.get_or_head(req, version, account));
        }
        if method == Method::PUT {
            if let Some(err) = validate_manifest_header(req.headers()) {
                return Box::pin(async move { err });
            }
        }
        self.next.call(req)
    }
}

/// Swift's check of `X-Object-Manifest` on PUT: `<container>/<prefix>`,
/// both non-empty, the prefix not starting with `/`, no `?` or `&`.
fn validate_manifest_header(headers: &HeaderMap) -> Option<Resp> {
    let value = headers.get(X_OBJECT_MANIFEST)?;
    let ok = match std::str::from_utf8(value.as_bytes()) {
        Ok(v) => match v.split_once('/') {
            Some((container, prefix)) => {
                !container.is_empty()
                    && !prefix.is_empty()
                    && !prefix.starts_with('/')
                    && !v.contains('?')
                    && !v.contains('&')
            }
            None => false,
        },
        Err(_) => false,
    };
    if ok {
        None
    } else {
        Some(error_response(
            StatusCode::BAD_REQUEST,
            Some("X-Object-Manifest must be in the format container/prefix"),
        ))
    }
}

impl Dlo {
    async fn get_or_head(&self, mut req: Req, version: String, account: String) -> Resp {
        let client_env = env(&req);
        let orig_headers = req.headers().clone();
        let method = req.method().clone();
        let name = apus_proto::percent_decode_internal(req.uri().path())
            .unwrap_or_else(|_| req.uri().path().to_string());
        add_to_header_list(req.headers_mut(), IGNORE_RANGE, "X-Object-Manifest");
        let resp = self.next.call(req).await;
        let Some(manifest) = resp
            .headers()
            .get(X_OBJECT_MANIFEST)
            .map(|v| unquote(&String::from_utf8_lossy(v.as_bytes())))
        else {
            return resp;
        };
        // The manifest's own body is not wanted.
        let (parts, _body) = resp.into_parts();
        let Some((container, prefix)) = manifest.split_once('/') else {
            tracing::error!(path = %name, manifest, "DLO: X-Object-Manifest has no container");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, None);
        };
        let sub = Arc::new(Subrequests {
            next: self.next.clone(),
            env: client_env.subrequest("DLO"),
            headers: subrequest_headers(
                &orig_headers,
                "DLO MultipartGET",
                &["x-auth-token", "x-open-expired"],
            ),
            version,
            account,
        });
        let first_page = match sub.listing(container, prefix, None).await {
            Ok(page) => page,
            Err(resp) if method == Method::HEAD => {
                let (mut parts, _) = resp.into_parts();
                parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
                return Response::from_parts(parts, apus_http::empty());
            }
            Err(resp) => return resp,
        };
        let complete = first_page.len() < CONTAINER_LISTING_LIMIT;
        let listed: u64 = first_page.iter().map(|s| s.bytes).sum();

        // A single range is served when it is known to be satisfiable;
        // several ranges, or one that may reach past what the first
        // listing page covers, get the whole object.
        let range = orig_headers
            .get(http::header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Range::parse(v).ok())
            .filter(|r| r.specs.len() == 1);
        let mut byterange: Option<(u64, u64)> = None;
        if let Some(range) = range {
            let range_end = range
                .ranges_for_length(u64::MAX)
                .and_then(|r| r.first().map(|r| r.1))
                .unwrap_or(u64::MAX);
            if complete || range_end < listed {
                let ranges = range.ranges_for_length(listed).unwrap_or_default();
                let Some(&first) = ranges.first() else {
                    let mut resp = error_response(StatusCode::RANGE_NOT_SATISFIABLE, None);
                    let h = resp.headers_mut();
                    h.insert(
                        http::header::ACCEPT_RANGES,
                        HeaderValue::from_static("bytes"),
                    );
                    if complete {
                        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{listed}")) {
                            h.insert(CONTENT_RANGE, v);
                        }
                    }
                    return resp;
                };
                byterange = Some(first);
            }
        }

        let mut headers = parts.headers;
        headers.remove(CONTENT_LENGTH);
        headers.remove(CONTENT_RANGE);
        headers.remove(http::header::TRANSFER_ENCODING);
        // The length of the whole as far as the response tells it, and the
        // number of body bytes promised.
        let total = if byterange.is_some() || complete {
            Some(listed)
        } else {
            None
        };
        if let Some(total) = total {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(total));
        }
        if complete {
            if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", dlo_etag(&first_page))) {
                headers.insert(ETAG, v);
            }
        }

        let conditions = Conditions::from_headers(|name| header_str(&orig_headers, name));
        let etag = header_str(&headers, "etag").map(str::to_string);
        let last_modified = header_str(&headers, "last-modified").and_then(parse_http_date);
        if let Some(code) = conditions.evaluate(true, etag.as_deref(), last_modified) {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(0));
            let mut resp = Response::new(apus_http::empty());
            *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
            *resp.headers_mut() = headers;
            return resp;
        }

        if method == Method::HEAD {
            let mut resp = Response::new(apus_http::empty());
            *resp.headers_mut() = headers;
            return resp;
        }

        let mut status = StatusCode::OK;
        let (first_byte, last_byte, body_length) = match byterange {
            Some((start, end)) => {
                if listed > 0 {
                    status = StatusCode::PARTIAL_CONTENT;
                    if let Ok(v) = HeaderValue::from_str(&content_range_value(start, end, listed)) {
                        headers.insert(CONTENT_RANGE, v);
                    }
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(end - start));
                }
                (Some(start), Some(i128::from(end) - 1), Some(end - start))
            }
            None => (None, None, total),
        };
        let walker = Walker::new(
            sub.clone(),
            &self.config,
            container.to_string(),
            prefix.to_string(),
            first_page,
            first_byte,
            last_byte,
        );
        let reader = SegmentReader::new(
            sub,
            Box::new(walker),
            self.config.max_get_time,
            body_length,
            name,
        );
        segmented_response(reader, status, headers, "DLO").await
    }
}
