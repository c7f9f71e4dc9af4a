//! Talking to a peer object server, shared by the object replicator and
//! the reconstructor: suffix hashes (`REPLICATE`), the missing check, and
//! pushing one object's data, metadata or tombstone as a replication
//! request (`X-Backend-Replication: True`, so the peer keeps the sender's
//! timestamps and metadata). Every request is bounded by the backend
//! client's connect and node timeouts; every answer read is bounded in
//! size.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use apus_diskfile::pickle::{self, Value};
use apus_diskfile::{DiskFileError, Metadata};
use apus_http::body::collect_limited;
use apus_http::{empty, full, Body};
use apus_proto::headers as h;
use apus_proto::replication::{self as repl, Wanted, MAX_MISSING_CHECK_BODY};
use apus_ring::{Device, Ring};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::context::{replication_host, DaemonContext, ServerKind};
use crate::rate::RateLimiter;
use crate::stats::Stats;

/// Largest answer read from a peer: hashes of at most 4096 suffixes, or
/// wanted lines (never longer than the offer).
const MAX_ANSWER: usize = MAX_MISSING_CHECK_BODY;

/// Why a peer could not be synced with.
#[derive(Debug)]
pub(crate) enum PeerError {
    /// Connection refused, timed out: worth trying a handoff instead.
    Unreachable(String),
    /// The peer's device is missing or unmounted (507): likewise.
    Unmounted,
    /// Anything else: an unexpected status, a bad answer, a failed push.
    Failed(String),
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::Unreachable(e) => write!(f, "unreachable: {e}"),
            PeerError::Unmounted => f.write_str("device unmounted (507)"),
            PeerError::Failed(e) => f.write_str(e),
        }
    }
}

impl PeerError {
    pub(crate) fn wants_handoff(&self) -> bool {
        matches!(self, PeerError::Unreachable(_) | PeerError::Unmounted)
    }
}

/// Runs disk work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DiskFileError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The partition directories of one device's `objects[-N]`.
pub(crate) fn list_partitions(dir: &Path) -> std::io::Result<Vec<u32>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut parts = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(part) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            parts.push(part);
        }
    }
    parts.sort_unstable();
    Ok(parts)
}

/// One partition directory of a local device in a policy's `objects[-N]`.
pub(crate) struct LocalPartition<'r> {
    pub local: &'r Device,
    pub partition: u32,
    pub part_dir: std::path::PathBuf,
    /// The ring positions (for EC policies, fragment indexes) this
    /// device holds among the partition's primaries; empty on a handoff.
    pub positions: Vec<u32>,
}

/// Every partition directory of `policy` on this node's devices of
/// `ring`, in device then partition order. Missing devices and
/// unreadable directories are counted as failures and skipped.
pub(crate) async fn local_partitions<'r>(
    ctx: &DaemonContext,
    ring: &'r Ring,
    policy: u32,
    stats: &Stats,
) -> Vec<LocalPartition<'r>> {
    let mut out = Vec::new();
    for dev in ctx.local_devices(ring, ServerKind::Object) {
        let Some(dev_path) = ctx.device_path(&dev.device) else {
            tracing::warn!(device = %dev.device, "skipping missing or unmounted device");
            stats.incr("failures");
            continue;
        };
        let data_dir = dev_path.join(apus_diskfile::layout::data_dir(policy));
        let dir = data_dir.clone();
        let parts = match tokio::task::spawn_blocking(move || list_partitions(&dir)).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::error!(dir = %data_dir.display(), error = %e, "cannot list partitions");
                stats.incr("failures");
                continue;
            }
            Err(_) => continue,
        };
        for partition in parts {
            if partition >= ring.partition_count() {
                tracing::warn!(partition, device = %dev.device, "partition beyond the ring");
                continue;
            }
            let positions = ring
                .primaries(partition)
                .iter()
                .enumerate()
                .filter(|(_, d)| {
                    d.device == dev.device && ctx.identity.is_local(d, ServerKind::Object)
                })
                .map(|(i, _)| i as u32)
                .collect();
            out.push(LocalPartition {
                local: dev,
                partition,
                part_dir: data_dir.join(partition.to_string()),
                positions,
            });
        }
    }
    out
}

/// The rate limiters a pass's concurrent partitions share: objects and
/// bytes pushed per second.
pub(crate) struct Limits {
    pub objects: tokio::sync::Mutex<RateLimiter>,
    pub bytes: tokio::sync::Mutex<RateLimiter>,
}

impl Limits {
    pub(crate) fn new(objects_per_second: f64, bytes_per_second: f64) -> Self {
        Limits {
            objects: tokio::sync::Mutex::new(RateLimiter::new(objects_per_second)),
            bytes: tokio::sync::Mutex::new(RateLimiter::new(bytes_per_second)),
        }
    }
}

/// Text in a pickle: a str, or bytes that are UTF-8.
fn pickled_text(v: Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s),
        Value::Bytes(b) => String::from_utf8(b).ok(),
        _ => None,
    }
}

/// A pickled `{suffix: value}` dict as a `REPLICATE` answer carries it,
/// each value read by `value` (which sees `None` too).
pub(crate) fn parse_pickled_suffixes<V>(
    body: &[u8],
    value: impl Fn(Value) -> Result<V, String>,
) -> Result<BTreeMap<String, V>, String> {
    let Value::Dict(items) = pickle::loads(body).map_err(|e| e.to_string())? else {
        return Err("suffix hashes are not a dict".into());
    };
    let mut out = BTreeMap::new();
    for (k, v) in items {
        let suffix = pickled_text(k).ok_or("suffix is not text")?;
        out.insert(suffix, value(v)?);
    }
    Ok(out)
}

/// A replicated partition's `{suffix: hash or None}`.
pub(crate) fn parse_remote_hashes(body: &[u8]) -> Result<apus_diskfile::SuffixHashes, String> {
    parse_pickled_suffixes(body, |v| match v {
        Value::None => Ok(None),
        v => Ok(Some(pickled_text(v).ok_or("suffix hash is not text")?)),
    })
}

pub(crate) fn header_map(pairs: &[(&str, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            map.insert(n, v);
        }
    }
    map
}

/// Copies stored metadata into request headers, naming each (but the
/// ETag, which the server computes itself) in
/// `X-Backend-Replication-Headers` so the peer stores it as is, as
/// Swift's ssync receiver does.
pub(crate) fn metadata_headers(md: &Metadata, headers: &mut HeaderMap) -> Result<(), String> {
    let mut names = Vec::new();
    for (k, v) in md.iter() {
        if k == "name" || k.eq_ignore_ascii_case("content-length") {
            continue;
        }
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("metadata key {k:?} is not a header name"))?;
        let value = HeaderValue::from_bytes(v)
            .map_err(|_| format!("metadata value of {k:?} is not a header value"))?;
        if !k.eq_ignore_ascii_case("etag") {
            names.push(name.as_str().to_string());
        }
        headers.insert(name, value);
    }
    if headers.contains_key(http::header::CONTENT_LENGTH) {
        names.push("content-length".into());
    }
    let value = HeaderValue::from_str(&names.join(" "))
        .map_err(|_| "replication header list is not a header value".to_string())?;
    headers.insert(h::X_BACKEND_REPLICATION_HEADERS, value);
    Ok(())
}

/// Streams an object's body into a request; the reader's MD5 check fails
/// the last read of a corrupt object, which aborts the request.
pub(crate) fn stream_body(
    mut reader: apus_diskfile::DiskFileReader,
    chunk: usize,
    tx: apus_http::BodySender,
) {
    let mut buf = vec![0u8; chunk.max(1)];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return tx.blocking_abort(e),
        }
    }
}

fn replicate_method() -> Method {
    Method::from_bytes(b"REPLICATE").unwrap_or(Method::POST)
}

/// Requests to peers about one partition of one policy.
pub(crate) struct Peers<'a> {
    pub ctx: &'a DaemonContext,
    pub stats: &'a Stats,
    pub policy: u32,
    pub partition: u32,
}

impl Peers<'_> {
    fn policy_header(&self) -> (&'static str, String) {
        (h::X_BACKEND_STORAGE_POLICY_INDEX, self.policy.to_string())
    }

    /// The policy header plus `extra`.
    pub(crate) fn headers(&self, extra: &[(&str, String)]) -> HeaderMap {
        let mut map = header_map(&[self.policy_header()]);
        map.extend(header_map(extra));
        map
    }

    /// The headers of a replication request, plus `extra`.
    pub(crate) fn replication_headers(&self, extra: &[(&str, String)]) -> HeaderMap {
        let mut map = self.headers(&[(h::X_BACKEND_REPLICATION, "True".into())]);
        map.extend(header_map(extra));
        map
    }

    pub(crate) fn object_path(&self, node: &Device, name: &str) -> String {
        format!(
            "/{}/{}{}",
            apus_proto::quote(&node.device),
            self.partition,
            apus_proto::quote(name)
        )
    }

    /// Sends one request and reads its (bounded) answer.
    pub(crate) async fn request(
        &self,
        method: Method,
        node: &Device,
        path: &str,
        headers: HeaderMap,
        body: Body,
        body_len: u64,
    ) -> Result<(u16, Bytes), PeerError> {
        self.stats.incr("requests");
        self.stats.add("bytes_sent", body_len);
        let host = replication_host(node);
        let resp = self
            .ctx
            .client
            .request(method, &host, path, headers, body)
            .await
            .map_err(|e| PeerError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = collect_limited(resp.into_body(), MAX_ANSWER)
            .await
            .map_err(|e| PeerError::Failed(format!("{host}: reading answer: {e}")))?;
        Ok((status, body))
    }

    /// The peer's pickled suffix hashes for the partition (`extra`
    /// headers added).
    pub(crate) async fn remote_hashes_raw(
        &self,
        node: &Device,
        extra: &[(&str, String)],
    ) -> Result<Bytes, PeerError> {
        let path = format!("/{}/{}", apus_proto::quote(&node.device), self.partition);
        let (status, body) = self
            .request(
                replicate_method(),
                node,
                &path,
                self.headers(extra),
                empty(),
                0,
            )
            .await?;
        match status {
            200 => Ok(body),
            507 => Err(PeerError::Unmounted),
            s => Err(PeerError::Failed(format!("REPLICATE answered {s}"))),
        }
    }

    /// Has the peer rehash `suffixes` at its next hash request (Swift
    /// does so after rsync); a failure only costs a later rehash.
    pub(crate) async fn invalidate_suffixes(&self, node: &Device, suffixes: &[String]) {
        let path = format!(
            "/{}/{}/{}",
            apus_proto::quote(&node.device),
            self.partition,
            suffixes.join("-")
        );
        if let Err(e) = self
            .request(
                replicate_method(),
                node,
                &path,
                self.headers(&[]),
                empty(),
                0,
            )
            .await
        {
            tracing::debug!(node = %replication_host(node), error = %e, "suffix rehash request failed");
        }
    }

    /// One missing check: offers `body`'s lines, returns the wanted ones.
    pub(crate) async fn missing_check(
        &self,
        node: &Device,
        body: String,
        extra: &[(&str, String)],
    ) -> Result<Vec<(String, Wanted)>, PeerError> {
        let path = format!("/{}/{}", apus_proto::quote(&node.device), self.partition);
        let len = body.len();
        let mut headers = self.headers(&[
            (repl::X_APUS_MISSING_CHECK, "true".into()),
            ("content-length", len.to_string()),
        ]);
        headers.extend(header_map(extra));
        let (status, answer) = self
            .request(
                replicate_method(),
                node,
                &path,
                headers,
                full(body),
                len as u64,
            )
            .await?;
        match status {
            200 => {}
            507 => return Err(PeerError::Unmounted),
            s => return Err(PeerError::Failed(format!("missing check answered {s}"))),
        }
        let text = std::str::from_utf8(&answer)
            .map_err(|_| PeerError::Failed("wanted lines are not UTF-8".into()))?;
        let wanted = repl::parse_wanted_body(text)
            .map_err(|e| PeerError::Failed(format!("wanted lines: {e}")))?;
        Ok(wanted
            .into_iter()
            .map(|(hash, want)| (hash.to_string(), want))
            .collect())
    }

    /// A replication PUT of `len` bytes streamed from `body`.
    pub(crate) async fn send_put(
        &self,
        node: &Device,
        name: &str,
        headers: HeaderMap,
        body: Body,
        len: u64,
    ) -> Result<(), PeerError> {
        let path = self.object_path(node, name);
        match self
            .request(Method::PUT, node, &path, headers, body, len)
            .await?
        {
            (201, _) => {
                self.stats.incr("objects_pushed");
                Ok(())
            }
            // The peer has something newer: nothing to do.
            (409, _) => Ok(()),
            (507, _) => Err(PeerError::Unmounted),
            (s, _) => Err(PeerError::Failed(format!("PUT answered {s}"))),
        }
    }

    /// A replication PUT of an opened object (or fragment archive) with
    /// all its metadata, streamed from disk in `chunk`-byte reads, after
    /// booking its bytes with `limits`.
    pub(crate) async fn push_file(
        &self,
        node: &Device,
        open: apus_diskfile::OpenDiskFile,
        extra: &[(&str, String)],
        chunk: usize,
        limits: &Limits,
    ) -> Result<(), PeerError> {
        let md = open.datafile_metadata();
        let Some(name) = md.name().map(str::to_string) else {
            return Err(PeerError::Failed("data file has no name".into()));
        };
        let len = open.content_length();
        let mut headers = self.replication_headers(extra);
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
        metadata_headers(md, &mut headers).map_err(PeerError::Failed)?;
        limits.bytes.lock().await.acquire(len as f64).await;
        let reader = open.reader();
        let (tx, body) = apus_http::channel(4, Some(len));
        let producer = tokio::task::spawn_blocking(move || stream_body(reader, chunk, tx));
        let result = self.send_put(node, &name, headers, body, len).await;
        // The producer ends once its chunks are taken or refused.
        let _ = producer.await;
        result
    }

    /// A replication POST of a `.meta`'s metadata.
    pub(crate) async fn send_post(
        &self,
        node: &Device,
        name: &str,
        md: &Metadata,
        extra: &[(&str, String)],
    ) -> Result<(), PeerError> {
        let mut headers = self.replication_headers(extra);
        metadata_headers(md, &mut headers).map_err(PeerError::Failed)?;
        let path = self.object_path(node, name);
        match self
            .request(Method::POST, node, &path, headers, empty(), 0)
            .await?
        {
            (202, _) => {
                self.stats.incr("metas_pushed");
                Ok(())
            }
            (409, _) => Ok(()),
            (507, _) => Err(PeerError::Unmounted),
            (s, _) => Err(PeerError::Failed(format!("POST answered {s}"))),
        }
    }

    /// A replication DELETE writing a tombstone at `timestamp`.
    pub(crate) async fn send_delete(
        &self,
        node: &Device,
        name: &str,
        timestamp: apus_core::Timestamp,
        extra: &[(&str, String)],
    ) -> Result<(), PeerError> {
        let mut headers = self.replication_headers(extra);
        headers.insert(
            h::X_TIMESTAMP,
            HeaderValue::from_str(&timestamp.internal())
                .map_err(|e| PeerError::Failed(e.to_string()))?,
        );
        let path = self.object_path(node, name);
        match self
            .request(Method::DELETE, node, &path, headers, empty(), 0)
            .await?
        {
            // 404: it had nothing; the tombstone is written all the same.
            (204 | 404, _) => {
                self.stats.incr("tombstones_pushed");
                Ok(())
            }
            (409, _) => Ok(()),
            (507, _) => Err(PeerError::Unmounted),
            (s, _) => Err(PeerError::Failed(format!("DELETE answered {s}"))),
        }
    }
}

/// The name a tombstone's metadata gives, checked against the hash
/// directory it was found in: the peer writes the tombstone where the
/// name hashes, so it must be this object's.
pub(crate) fn tombstone_name<'m>(
    ctx: &DaemonContext,
    md: &'m Metadata,
    hash: &str,
) -> Result<&'m str, PeerError> {
    let name = md.name().unwrap_or_default();
    let named_hash = ctx.hash.hash_path(name.trim_start_matches('/'), None, None);
    if name.is_empty() || named_hash != hash {
        return Err(PeerError::Failed(format!(
            "tombstone {hash} has no usable name"
        )));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_hashes_parse_from_pickles_and_reject_others() {
        let dict = Value::Dict(vec![
            (Value::Str("abc".into()), Value::Str("d41d8".into())),
            (Value::Bytes(b"fff".to_vec()), Value::None),
        ]);
        let parsed = parse_remote_hashes(&pickle::dumps(&dict)).unwrap();
        assert_eq!(parsed.get("abc"), Some(&Some("d41d8".to_string())));
        assert_eq!(parsed.get("fff"), Some(&None));
        assert!(parse_remote_hashes(&pickle::dumps(&Value::None)).is_err());
        assert!(parse_remote_hashes(b"garbage").is_err());
        let bad = Value::Dict(vec![(Value::Int(1), Value::None)]);
        assert!(parse_remote_hashes(&pickle::dumps(&bad)).is_err());
    }
}
