//! An in-memory stand-in for the controllers at the end of the pipeline,
//! for middleware tests: objects with headers and bodies, containers with
//! json listings (prefix, marker, limit), single byte ranges, PUTs that
//! store what they get, injected failures and delays, and a record of
//! every request with the [`Env`] it carried.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apus_core::range::{content_range_value, Range};
use apus_http::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use md5::{Digest, Md5};

use super::util::{object_path, parse_query};
use crate::service::{
    env, error_response, AuthRequest, Authorize, BoxFuture, Env, Grant, Req, Resp, Service,
};

pub(crate) const LAST_MODIFIED: &str = "Fri, 22 Nov 2013 02:42:13 GMT";

pub(crate) fn md5_hex(data: &[u8]) -> String {
    let mut md5 = Md5::new();
    md5.update(data);
    format!("{:x}", md5.finalize())
}

#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub method: Method,
    /// Decoded path.
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub source: Option<&'static str>,
    pub has_authorize: bool,
}

impl Call {
    /// `METHOD /path[?query]`, for compact assertions.
    pub fn line(&self) -> String {
        if self.query.is_empty() {
            format!("{} {}", self.method, self.path)
        } else {
            format!("{} {}?{}", self.method, self.path, self.query)
        }
    }
}

#[derive(Clone)]
struct Canned {
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// A container whose objects `<prefix><n:06>` (n < count) are made up on
/// demand, each `size` bytes of one letter.
#[derive(Clone)]
struct Generated {
    prefix: String,
    count: usize,
    size: usize,
}

impl Generated {
    fn body(&self, n: usize) -> Bytes {
        Bytes::from(vec![b'a' + (n % 26) as u8; self.size])
    }
    fn name(&self, n: usize) -> String {
        format!("{}{:06}", self.prefix, n)
    }
    fn index(&self, name: &str) -> Option<usize> {
        let n: usize = name.strip_prefix(&self.prefix)?.parse().ok()?;
        (n < self.count && self.name(n) == name).then_some(n)
    }
}

#[derive(Default)]
struct State {
    /// Object path (`/v1/a/c/o`) to headers and body.
    objects: BTreeMap<String, (Vec<(String, String)>, Bytes)>,
    containers: BTreeSet<String>,
    generated: HashMap<String, Generated>,
    /// Canned answers by `METHOD /path[?query]` or `METHOD /path`.
    canned: HashMap<String, Canned>,
    delays: HashMap<String, Duration>,
    calls: Vec<Call>,
}

#[derive(Clone, Default)]
pub(crate) struct FakeSwift {
    state: Arc<Mutex<State>>,
    /// Size of the chunks object bodies are sent in.
    pub chunk: usize,
}

impl FakeSwift {
    pub fn new() -> Self {
        FakeSwift {
            state: Arc::default(),
            chunk: 3,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Stores an object (its container comes into being).
    pub fn put_object(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut st = self.lock();
        st.containers.insert(container_of(path).unwrap());
        st.objects.insert(
            path.to_string(),
            (
                headers
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
                    .collect(),
                Bytes::copy_from_slice(body),
            ),
        );
    }

    /// Makes `count` objects of `size` bytes under `prefix` in `container`.
    pub fn generate(&self, container: &str, prefix: &str, count: usize, size: usize) {
        let mut st = self.lock();
        st.containers.insert(container.to_string());
        st.generated.insert(
            container.to_string(),
            Generated {
                prefix: prefix.to_string(),
                count,
                size,
            },
        );
    }

    /// Answers `key` (`METHOD /path` or `METHOD /path?query`) with a
    /// fixed response.
    pub fn register(&self, key: &str, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.lock().canned.insert(
            key.to_string(),
            Canned {
                status: StatusCode::from_u16(status).unwrap(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: Bytes::copy_from_slice(body),
            },
        );
    }

    /// Delays the answers to GETs of `path`.
    pub fn delay(&self, path: &str, delay: Duration) {
        self.lock().delays.insert(path.to_string(), delay);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn call_lines(&self) -> Vec<String> {
        self.calls().iter().map(Call::line).collect()
    }

    pub fn object(&self, path: &str) -> Option<(Vec<(String, String)>, Bytes)> {
        self.lock().objects.get(path).cloned()
    }

    /// A stored object's header.
    pub fn object_header(&self, path: &str, name: &str) -> Option<String> {
        let (headers, _) = self.object(path)?;
        headers
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    fn chunked(&self, body: Bytes) -> Body {
        let size = self.chunk.max(1);
        let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = (0..body.len())
            .step_by(size)
            .map(|i| Ok(Frame::data(body.slice(i..(i + size).min(body.len())))))
            .collect();
        StreamBody::new(futures_util::stream::iter(chunks)).boxed()
    }

    async fn handle(&self, req: Req) -> Resp {
        let method = req.method().clone();
        let path = apus_proto::percent_decode(req.uri().path()).unwrap();
        let query = req.uri().query().unwrap_or("").to_string();
        let e = env(&req);
        let call = Call {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            headers: req.headers().clone(),
            source: e.source,
            has_authorize: e.authorize.is_some(),
        };
        let delay = {
            let mut st = self.lock();
            st.calls.push(call);
            st.delays.get(&path).copied()
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let canned = {
            let st = self.lock();
            let get = if method == Method::HEAD {
                Method::GET
            } else {
                method.clone()
            };
            let with_query = format!("{method} {path}?{query}");
            let with_query_get = format!("{get} {path}?{query}");
            let plain = format!("{method} {path}");
            let plain_get = format!("{get} {path}");
            [with_query, with_query_get, plain, plain_get]
                .iter()
                .find_map(|k| st.canned.get(k).cloned())
        };
        if let Some(c) = canned {
            let mut resp = Response::new(if method == Method::HEAD {
                apus_http::empty()
            } else {
                self.chunked(c.body.clone())
            });
            *resp.status_mut() = c.status;
            let h = resp.headers_mut();
            h.insert("content-length", HeaderValue::from(c.body.len()));
            for (k, v) in &c.headers {
                h.insert(
                    http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            return resp;
        }
        if object_path(&req).is_some() {
            return match method {
                Method::GET | Method::HEAD => self.get_object(&req, &path),
                Method::PUT => self.put(req, &path).await,
                _ => error_response(StatusCode::METHOD_NOT_ALLOWED, None),
            };
        }
        if method == Method::GET && path.matches('/').count() == 3 {
            return self.listing(&path, &query);
        }
        error_response(StatusCode::NOT_FOUND, None)
    }

    fn listing(&self, path: &str, query: &str) -> Resp {
        let st = self.lock();
        if !st.containers.contains(path) {
            return error_response(StatusCode::NOT_FOUND, None);
        }
        let params: HashMap<String, String> = parse_query(Some(query)).into_iter().collect();
        let prefix = params.get("prefix").cloned().unwrap_or_default();
        let marker = params.get("marker").cloned().unwrap_or_default();
        let limit: usize = params
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(10_000)
            .min(10_000);
        let mut entries: Vec<serde_json::Value> = Vec::new();
        let dir = format!("{path}/");
        let mut names: Vec<(String, u64, String)> = st
            .objects
            .range(dir.clone()..)
            .take_while(|(k, _)| k.starts_with(&dir))
            .map(|(k, (h, b))| {
                let etag = h
                    .iter()
                    .find(|(n, _)| n == "etag")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| md5_hex(b));
                (k[dir.len()..].to_string(), b.len() as u64, etag)
            })
            .filter(|(n, _, _)| n.starts_with(&prefix) && *n > marker)
            .take(limit)
            .collect();
        if let Some(g) = st.generated.get(path) {
            // names sort as their numbers do; start after the marker
            let start = if marker.is_empty() || marker < g.prefix {
                0
            } else {
                g.index(&marker).map_or(g.count, |n| n + 1)
            };
            if g.prefix.starts_with(&prefix) || prefix.starts_with(&g.prefix) {
                for n in start..g.count {
                    let name = g.name(n);
                    if !name.starts_with(&prefix) {
                        continue;
                    }
                    names.push((name, g.size as u64, md5_hex(&g.body(n))));
                    if names.len() >= limit {
                        break;
                    }
                }
            }
            names.sort();
            names.truncate(limit);
        }
        for (name, bytes, hash) in names {
            entries.push(serde_json::json!({
                "name": name, "bytes": bytes, "hash": hash,
                "content_type": "application/octet-stream",
                "last_modified": "2013-11-22T02:42:13.781760",
            }));
        }
        let body = serde_json::to_vec(&entries).unwrap();
        let mut resp = Response::new(apus_http::full(body.clone()));
        let h = resp.headers_mut();
        h.insert(
            "content-type",
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h.insert("content-length", HeaderValue::from(body.len()));
        resp
    }

    fn get_object(&self, req: &Req, path: &str) -> Resp {
        let found = {
            let st = self.lock();
            st.objects.get(path).cloned().or_else(|| {
                let (container, name) = path.rsplit_once('/')?;
                let g = st.generated.get(container)?;
                let n = g.index(name)?;
                Some((Vec::new(), g.body(n)))
            })
        };
        let Some((stored, body)) = found else {
            return error_response(StatusCode::NOT_FOUND, None);
        };
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from(body.len()));
        headers.insert(
            "etag",
            HeaderValue::from_str(&format!("\"{}\"", md5_hex(&body))).unwrap(),
        );
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert("last-modified", HeaderValue::from_static(LAST_MODIFIED));
        headers.insert("accept-ranges", HeaderValue::from_static("bytes"));
        headers.insert("x-timestamp", HeaderValue::from_static("1385088133.78176"));
        headers.insert(
            "x-backend-timestamp",
            HeaderValue::from_static("1385088133.78176"),
        );
        for (k, v) in &stored {
            headers.insert(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let ignore_range = req
            .headers()
            .get("x-backend-ignore-range-if-metadata-present")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|names| {
                names
                    .split(',')
                    .any(|n| stored.iter().any(|(k, _)| k.eq_ignore_ascii_case(n.trim())))
            });
        let mut status = StatusCode::OK;
        let mut body = body;
        let range = req
            .headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Range::parse(v).ok())
            .filter(|_| !ignore_range);
        if let Some(range) = range {
            match range.ranges_for_length(body.len() as u64) {
                Some(r) if r.is_empty() => {
                    let mut resp = error_response(StatusCode::RANGE_NOT_SATISFIABLE, None);
                    resp.headers_mut().insert(
                        "content-range",
                        HeaderValue::from_str(&format!("bytes */{}", body.len())).unwrap(),
                    );
                    return resp;
                }
                Some(r) if r.len() == 1 && !body.is_empty() => {
                    let (s, e) = r[0];
                    status = StatusCode::PARTIAL_CONTENT;
                    headers.insert(
                        "content-range",
                        HeaderValue::from_str(&content_range_value(s, e, body.len() as u64))
                            .unwrap(),
                    );
                    body = body.slice(s as usize..e as usize);
                    headers.insert("content-length", HeaderValue::from(body.len()));
                }
                _ => {}
            }
        }
        let mut resp = Response::new(if req.method() == Method::HEAD {
            apus_http::empty()
        } else {
            self.chunked(body)
        });
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        resp
    }

    async fn put(&self, req: Req, path: &str) -> Resp {
        let (parts, body) = req.into_parts();
        let Ok(body) = apus_http::body::collect_limited(body, 1 << 30).await else {
            return error_response(StatusCode::from_u16(499).unwrap(), None);
        };
        if let Some(cl) = parts.headers.get("content-length") {
            if cl.to_str().unwrap().parse::<usize>().unwrap() != body.len() {
                return error_response(StatusCode::from_u16(499).unwrap(), None);
            }
        }
        let etag = md5_hex(&body);
        if let Some(want) = parts.headers.get("etag") {
            if want.to_str().unwrap().trim_matches('"') != etag {
                return error_response(StatusCode::UNPROCESSABLE_ENTITY, None);
            }
        }
        let mut stored = Vec::new();
        for (k, v) in &parts.headers {
            let k = k.as_str();
            if matches!(
                k,
                "content-length" | "etag" | "transfer-encoding" | "x-timestamp"
            ) {
                continue;
            }
            stored.push((k.to_string(), v.to_str().unwrap().to_string()));
        }
        {
            let mut st = self.lock();
            st.containers.insert(container_of(path).unwrap());
            st.objects.insert(path.to_string(), (stored, body));
        }
        let mut resp = error_response(StatusCode::CREATED, Some(""));
        resp.headers_mut().insert(
            "etag",
            HeaderValue::from_str(&format!("\"{etag}\"")).unwrap(),
        );
        resp.headers_mut()
            .insert("last-modified", HeaderValue::from_static(LAST_MODIFIED));
        resp
    }
}

fn container_of(path: &str) -> Option<String> {
    let mut parts = path.splitn(5, '/');
    let (_, v, a, c) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some(format!("/{v}/{a}/{c}"))
}

impl Service for FakeSwift {
    fn call(&self, req: Req) -> BoxFuture<'_, Resp> {
        Box::pin(self.handle(req))
    }
}

/// An authorize callback that lets everything through (its presence on
/// subrequests is what tests look at).
pub(crate) struct AllowAll;

impl Authorize for AllowAll {
    fn authorize<'a>(&'a self, _req: AuthRequest<'a>) -> BoxFuture<'a, Result<Grant, Resp>> {
        Box::pin(async { Ok(Grant::default()) })
    }
}

/// A client request with a pending authorize callback.
pub(crate) fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Req {
    request_with_body(method, uri, headers, Bytes::new())
}

pub(crate) fn request_with_body(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Req {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(apus_http::full(body))
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    req.extensions_mut().insert(Env {
        trans_id: "tx-test".into(),
        authorize: Some(Arc::new(AllowAll)),
        ..Env::default()
    });
    req
}

/// A response's body, and whether it ended with an error.
pub(crate) async fn read_body(resp: Resp) -> (Vec<u8>, bool) {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    out.extend_from_slice(&d);
                }
            }
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

/// A response header as text.
pub(crate) fn header(resp: &Resp, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}
