//! Image data in the object store: an upload streams into SLO segments
//! (`<container>_segments/<id>/<n>`, `segment_size` bytes each) while
//! MD5 and SHA-512 run over it, then a manifest at `<container>/<id>`
//! ties them together; an empty image is one empty object. Reads are a
//! GET of the manifest, which the store's SLO layer streams.
//!
//! Memory per upload is one bounded channel of chunks per segment being
//! written: the client's body is never gathered.

use std::io;

use apus_http::Body;
use apus_proto::path::quote;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use sha2::Sha512;

use crate::Shared;

/// Chunks in flight per segment PUT.
const CHANNEL_CHUNKS: usize = 8;
/// The largest error body read back from the store.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What an upload stored.
#[derive(Debug)]
pub struct Stored {
    pub size: u64,
    pub checksum: String,
    pub sha512: String,
    pub segments: u64,
}

#[derive(Debug)]
pub enum UploadError {
    /// Larger than the image size cap (or than the manifest may hold).
    TooLarge(u64),
    /// The client's body failed (disconnect, bad chunking).
    Client(io::Error),
    /// The store refused or failed.
    Store(String),
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UploadError::TooLarge(cap) => {
                write!(f, "Image exceeds the storage quota of {cap} bytes")
            }
            UploadError::Client(e) => write!(f, "reading the image data: {e}"),
            UploadError::Store(e) => write!(f, "storing the image data: {e}"),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Shared {
    fn object_path(&self, id: &str) -> String {
        format!(
            "/v1/{}/{}/{}",
            quote(&self.config.account),
            quote(&self.config.container),
            quote(id)
        )
    }

    fn segments_container(&self) -> String {
        format!("{}_segments", self.config.container)
    }

    /// `/<container>_segments/<id>/<n>` as a manifest names it, and the
    /// full path to PUT it.
    fn segment_paths(&self, id: &str, n: u64) -> (String, String) {
        let within = format!("{}/{id}/{n:08}", self.segments_container());
        let full = format!("/v1/{}/{}", quote(&self.config.account), quote(&within));
        (format!("/{within}"), full)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: Body,
    ) -> Result<Response<Body>, String> {
        // The store wants every PUT's length (or chunking) declared.
        let length = http_body::Body::size_hint(&body).exact();
        let mut req = Request::new(body);
        if let (Some(n), true) = (length, method == Method::PUT) {
            req.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        *req.method_mut() = method;
        *req.uri_mut() = path
            .parse()
            .map_err(|e| format!("bad store path {path:?}: {e}"))?;
        for (name, value) in headers {
            let value = HeaderValue::from_str(value).map_err(|e| format!("{name}: {e}"))?;
            req.headers_mut().insert(*name, value);
        }
        Ok(self.objects.call(req).await)
    }

    /// A request whose answer must be 2xx; the error carries the status
    /// and the start of the body.
    async fn expect_success(
        &self,
        method: Method,
        path: &str,
        headers: &[(&'static str, String)],
        body: Body,
    ) -> Result<Response<Body>, String> {
        let resp = self.send(method.clone(), path, headers, body).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = error_text(resp.into_body()).await;
        Err(format!("{method} {path}: {status} {text}"))
    }

    async fn ensure_containers(&self) -> Result<(), String> {
        for container in [self.config.container.clone(), self.segments_container()] {
            let path = format!("/v1/{}/{}", quote(&self.config.account), quote(&container));
            self.expect_success(Method::PUT, &path, &[], apus_http::empty())
                .await?;
        }
        Ok(())
    }

    /// Streams `body` into the store as image `id`.
    pub(crate) async fn store_data<B>(&self, id: &str, mut body: B) -> Result<Stored, UploadError>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let cap = self.config.image_size_cap.min(
            self.config
                .segment_size
                .saturating_mul(self.config.max_segments),
        );
        self.ensure_containers().await.map_err(UploadError::Store)?;
        let mut md5 = Md5::new();
        let mut sha512 = Sha512::new();
        let mut total: u64 = 0;
        let mut manifest: Vec<serde_json::Value> = Vec::new();
        let mut current: Option<Segment> = None;
        let outcome: Result<(), UploadError> = async {
            while let Some(frame) = body.frame().await {
                let frame =
                    frame.map_err(|e| UploadError::Client(io::Error::other(e.to_string())))?;
                let Ok(mut data) = frame.into_data() else {
                    continue;
                };
                if total.saturating_add(data.len() as u64) > cap {
                    return Err(UploadError::TooLarge(cap));
                }
                total += data.len() as u64;
                md5.update(&data);
                sha512.update(&data);
                while !data.is_empty() {
                    if current.is_none() {
                        let n = manifest.len() as u64 + 1;
                        current = Some(self.start_segment(id, n)?);
                    }
                    let Some(seg) = current.as_mut() else { break };
                    let room = self.config.segment_size - seg.size;
                    let take = data.split_to((room as usize).min(data.len()));
                    seg.size += take.len() as u64;
                    seg.md5.update(&take);
                    if seg.sender.send(take).await.is_err() {
                        // The store gave up on the segment; its answer says why.
                        if let Some(seg) = current.take() {
                            return Err(UploadError::Store(seg.finish_error().await));
                        }
                    }
                    if seg_full(&current, self.config.segment_size) {
                        if let Some(seg) = current.take() {
                            manifest.push(seg.finish().await.map_err(UploadError::Store)?);
                        }
                    }
                }
            }
            if let Some(seg) = current.take() {
                manifest.push(seg.finish().await.map_err(UploadError::Store)?);
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            if let Some(seg) = current.take() {
                seg.abort().await;
            }
            self.remove_segments(id, manifest.len() as u64).await;
            return Err(e);
        }
        let path = self.object_path(id);
        let stored = if manifest.is_empty() {
            self.expect_success(
                Method::PUT,
                &path,
                &[("content-type", "application/octet-stream".into())],
                apus_http::full(Bytes::new()),
            )
            .await
        } else {
            let doc = serde_json::Value::Array(manifest.clone()).to_string();
            self.expect_success(
                Method::PUT,
                &format!("{path}?multipart-manifest=put"),
                &[("content-type", "application/octet-stream".into())],
                apus_http::full(doc),
            )
            .await
        };
        if let Err(e) = stored {
            self.remove_segments(id, manifest.len() as u64).await;
            return Err(UploadError::Store(e));
        }
        Ok(Stored {
            size: total,
            checksum: hex(&md5.finalize()),
            sha512: hex(&sha512.finalize()),
            segments: manifest.len() as u64,
        })
    }

    fn start_segment(&self, id: &str, n: u64) -> Result<Segment, UploadError> {
        let (name, path) = self.segment_paths(id, n);
        let (sender, body) = apus_http::body::channel(CHANNEL_CHUNKS, None);
        let mut req = Request::new(body);
        *req.method_mut() = Method::PUT;
        *req.uri_mut() = path
            .parse()
            .map_err(|e| UploadError::Store(format!("bad segment path {path:?}: {e}")))?;
        req.headers_mut().insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let objects = self.objects.clone();
        let task = tokio::spawn(async move {
            let resp = objects.call(req).await;
            let status = resp.status();
            let etag = resp
                .headers()
                .get(header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.trim_matches('"').to_string());
            let text = if status.is_success() {
                String::new()
            } else {
                error_text(resp.into_body()).await
            };
            (status, etag, text)
        });
        Ok(Segment {
            name,
            path,
            sender,
            task,
            size: 0,
            md5: Md5::new(),
        })
    }

    /// Deletes segments `1..=count` of `id`, best effort (an upload that
    /// failed leaves nothing behind when the store lets it).
    async fn remove_segments(&self, id: &str, count: u64) {
        for n in 1..=count {
            let (_, path) = self.segment_paths(id, n);
            if let Err(e) = self
                .expect_success(Method::DELETE, &path, &[], apus_http::empty())
                .await
            {
                tracing::warn!(image = id, error = %e, "segment of a failed upload not removed");
            }
        }
    }

    /// GETs image `id`'s data, passing `range` on.
    pub(crate) async fn read_data(
        &self,
        id: &str,
        range: Option<&HeaderValue>,
    ) -> Result<Response<Body>, String> {
        let mut headers = Vec::new();
        if let Some(r) = range.and_then(|r| r.to_str().ok()) {
            headers.push(("range", r.to_string()));
        }
        let path = self.object_path(id);
        let resp = self
            .send(Method::GET, &path, &headers, apus_http::empty())
            .await?;
        let status = resp.status();
        if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(resp);
        }
        Err(format!("GET {path}: {status}"))
    }

    /// Deletes image `id`'s data (the manifest and its segments).
    pub(crate) async fn remove_data(&self, id: &str, segments: i64) -> Result<(), String> {
        let mut path = self.object_path(id);
        if segments > 0 {
            path.push_str("?multipart-manifest=delete");
        }
        let resp = self
            .send(Method::DELETE, &path, &[], apus_http::empty())
            .await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(format!("DELETE {path}: {s}")),
        }
    }
}

/// The start of a refusal's body, for the error it becomes.
async fn error_text(body: Body) -> String {
    apus_http::body::collect_limited(body, MAX_ERROR_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default()
}

fn seg_full(current: &Option<Segment>, segment_size: u64) -> bool {
    current.as_ref().is_some_and(|s| s.size >= segment_size)
}

/// One segment being written: its body's sender and the PUT's task.
struct Segment {
    name: String,
    path: String,
    sender: apus_http::body::BodySender,
    task: tokio::task::JoinHandle<(StatusCode, Option<String>, String)>,
    size: u64,
    md5: Md5,
}

impl Segment {
    /// Ends the body and waits for the store: the manifest entry, or why
    /// the segment was not stored as sent.
    async fn finish(self) -> Result<serde_json::Value, String> {
        let Segment {
            name,
            path,
            sender,
            task,
            size,
            md5,
        } = self;
        drop(sender);
        let (status, etag, text) = task
            .await
            .map_err(|e| format!("PUT {path}: task failed: {e}"))?;
        if status != StatusCode::CREATED {
            return Err(format!("PUT {path}: {status} {text}"));
        }
        let sent = hex(&md5.finalize());
        if etag.as_deref() != Some(sent.as_str()) {
            return Err(format!(
                "PUT {path}: stored etag {etag:?} is not the sent data's {sent}"
            ));
        }
        Ok(serde_json::json!({ "path": name, "etag": sent, "size_bytes": size }))
    }

    async fn finish_error(self) -> String {
        let path = self.path.clone();
        match self.finish().await {
            Err(e) => e,
            Ok(_) => format!("PUT {path}: the store stopped reading"),
        }
    }

    /// Fails the segment's body so the store discards it.
    async fn abort(self) {
        self.sender
            .abort(io::Error::other("image upload abandoned"))
            .await;
        let _ = self.task.await;
    }
}
