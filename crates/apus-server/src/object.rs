//! The object server: Swift's backend object API over `apus-diskfile`.
//!
//! Requests are `<METHOD> /<device>/<partition>/<account>/<container>/<object>`
//! (the object name may contain `/`), with `X-Timestamp` on writes and
//! `X-Backend-Storage-Policy-Index` choosing `objects[-N]`:
//!
//! - `PUT` streams the body into a temp file on a blocking thread fed by a
//!   bounded channel, checks `ETag` (422), refuses older-or-equal
//!   timestamps (409 with `X-Backend-Timestamp`) and `If-None-Match`
//!   matches (412), answers 201 only once the file is fsynced and renamed,
//!   then updates the container servers named in `X-Container-*` (and the
//!   expiring-objects queue for `X-Delete-At`), saving an async pending for
//!   each update that fails. A body of at most 64 KiB is gathered first and
//!   checked, written and committed in one blocking trip (its 409 and 412
//!   then come after the body, not before). With `X-Backend-Etag-Trailer:
//!   crc32` (apus's proxy, for larger bodies) the body is not hashed with
//!   MD5: the ETag comes in an `Etag` trailer and is taken only when the
//!   `X-Backend-Body-Crc32` trailer matches the CRC-32 of what was stored
//!   (422 otherwise, 400 without both trailers).
//! - `GET` / `HEAD` answer with the object's metadata, conditional
//!   requests (304/412) and ranges (206, `multipart/byteranges`, 416) as
//!   swob does; the body streams from a blocking reader through a bounded
//!   channel and is aborted, never completed, when the data fails its MD5.
//! - `POST` writes a `.meta` (202), `DELETE` a tombstone (204/404).
//! - `REPLICATE /<device>/<partition>[/<suffixes>]` serves replicators:
//!   suffix hashes, and apus's missing check (see [`crate::object_replication`]).
//!
//! Requests with `X-Backend-Replication: True` (a replicator pushing a
//! copy) keep the timestamps and metadata they carry, may carry an
//! `X-Delete-At` in the past, and send no container or expirer updates.
//!
//! Erasure-coded policies (those in [`ObjectServerConfig::ec_policies`])
//! store fragment archives (see [`apus_proto::ec`]):
//!
//! - a fragment `PUT` names its index in `X-Object-Sysmeta-Ec-Frag-Index`
//!   and sends the archive; late metadata (`X-Object-Sysmeta-Ec-Etag`,
//!   `X-Object-Sysmeta-Ec-Content-Length`, the archive's `Etag`, other
//!   object sysmeta) comes as trailers of a chunked body or, with a
//!   `Content-Length`, in the head. The archive is written
//!   `<ts>#<i>.data`, not durable, fsynced; the answer is `201` with
//!   `X-Backend-Durable: no` and no container update is sent;
//! - a commit is a `PUT` with the same timestamp and index,
//!   `X-Backend-Ec-Commit: yes` and no body: the fragment becomes
//!   `<ts>#<i>#d.data`, then the container is updated with the object's
//!   size and etag (from the EC sysmeta); 404 when the fragment is absent;
//! - `GET`/`HEAD` serve the durable fragment, or the one
//!   `X-Backend-Fragment-Preferences` or `X-Backend-Ssync-Frag-Index`
//!   select, with `X-Backend-Fragments`, `X-Backend-Data-Timestamp` and
//!   `X-Backend-Durable-Timestamp`; ranges are archive ranges; non-durable
//!   fragments alone are a bare 404, as in Swift;
//! - `POST` and `DELETE` follow the EC disk-file rules; `REPLICATE` answers
//!   per-index suffix hashes.
//!
//! Differences from Swift: the partition must be a decimal number (400
//! otherwise); `SSYNC` and Swift's multi-phase MIME PUT are not served
//! (405 for `SSYNC`); a bad fragment index or bad fragment preferences are
//! a 400 before any body is read (Swift fails with a 500); apus
//! replicators run their missing check over `REPLICATE` instead (not for
//! EC policies yet).

// Handlers return early with a ready response; boxing it buys nothing.
#![allow(clippy::result_large_err)]

mod ec;

use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apus_core::conditional::{format_http_date, Conditions};
use apus_core::range::{
    content_range_value, multipart_body_length, multipart_part_header, multipart_terminator, Range,
};
use apus_core::{HashConfig, Timestamp};
use apus_diskfile::{
    AsyncUpdate, DiskFile, DiskFileConfig, DiskFileError, DiskFileManager, DiskFileReader,
    DiskFileWriter, FragSelect, Metadata, OpenDiskFile, OpenOptions, PutStage,
};
use apus_http::{channel, empty, BackendClient, Body, BodySender, ClientConfig, Handler};
use apus_proto::constraints::{self, NameKind, MAX_FILE_SIZE};
use apus_proto::headers::{self as h, is_true};
use apus_proto::update::{self as upd, ContainerUpdate, UpdateTarget};
use apus_proto::{percent_decode, percent_decode_internal, split_path, title_case};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::common::{
    header, header_true, insufficient_storage, py_int, set_header, set_header_bytes,
    status_response, text_response, valid_timestamp,
};
use crate::failpoint;

use crate::slow_hosts::{SlowHosts, UpdatePlan};
/// An erasure-coded policy's code shape, as [`ObjectServerConfig::ec_policies`] takes it.
pub use apus_diskfile::EcPolicy;

/// Object server settings (Swift's `object-server.conf` names in docs).
#[derive(Clone, Debug)]
pub struct ObjectServerConfig {
    pub diskfile: DiskFileConfig,
    /// Storage policy indexes this cluster has (others: 503).
    pub policies: Vec<u32>,
    /// The erasure-coded ones among them, with their codes' shapes;
    /// requests for these go down the EC path (see [`ec`]).
    pub ec_policies: Vec<EcPolicy>,
    /// `conn_timeout`: connecting to a container server.
    pub conn_timeout: Duration,
    /// `node_timeout`: a container server's answer.
    pub node_timeout: Duration,
    /// `container_update_timeout`: how long a PUT/POST/DELETE waits for its
    /// container updates before answering (they go on in the background).
    pub container_update_timeout: Duration,
    /// `client_timeout`: longest wait for the next chunk of a PUT body.
    pub client_timeout: Duration,
    /// Bytes per read from disk when serving a GET.
    pub disk_chunk_size: usize,
    /// Chunks queued between the disk thread and the socket, per request.
    pub queue_depth: usize,
    /// Headers kept with an object besides metadata (`allowed_headers`).
    pub allowed_headers: Vec<String>,
    /// Answer Swift's `/recon/*` checks from these sources (`None`:
    /// such paths are object paths like any other).
    pub recon: Option<Arc<crate::recon::ReconConfig>>,
}

impl ObjectServerConfig {
    pub fn new(diskfile: DiskFileConfig) -> Self {
        ObjectServerConfig {
            diskfile,
            policies: vec![0],
            ec_policies: Vec::new(),
            conn_timeout: Duration::from_millis(500),
            node_timeout: Duration::from_secs(3),
            container_update_timeout: Duration::from_secs(1),
            client_timeout: Duration::from_secs(60),
            disk_chunk_size: 65536,
            queue_depth: 4,
            allowed_headers: h::DEFAULT_ALLOWED_HEADERS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            recon: None,
        }
    }

    /// The default settings over `devices` with `hash`.
    pub fn with_devices(devices: impl Into<std::path::PathBuf>, hash: HashConfig) -> Self {
        Self::new(DiskFileConfig::new(devices, hash))
    }
}

/// The object server. Share it in an `Arc`; it is a [`Handler`].
#[derive(Debug)]
pub struct ObjectServer {
    mgr: DiskFileManager,
    conf: ObjectServerConfig,
    client: BackendClient,
    allowed_headers: HashSet<String>,
    /// Container servers whose updates go straight to async pendings.
    slow_hosts: Arc<SlowHosts>,
}

/// Serves an object server on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: ObjectServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    apus_http::serve(listener, Arc::new(ObjectServer::new(config)), shutdown).await
}

/// The request's coordinates, parsed from its path and headers.
struct Target {
    device: String,
    partition: u32,
    account: String,
    container: String,
    obj: String,
    policy: u32,
    /// The policy's code when it is erasure-coded.
    ec: Option<EcPolicy>,
}

type Resp = Response<Body>;

fn disk_error_response(err: &DiskFileError, device: &str) -> Resp {
    match err.http_status() {
        507 => insufficient_storage(device),
        _ if matches!(err, DiskFileError::Collision { .. }) => status_response(403),
        s => status_response(s),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DiskFileError> + Send + 'static,
) -> Result<T, DiskFileError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(DiskFileError::Io {
            path: Default::default(),
            source: io::Error::other(e.to_string()),
        }),
    }
}

fn now_secs() -> f64 {
    Timestamp::now().as_secs_f64()
}

impl Handler for ObjectServer {
    async fn call(&self, req: Request<Incoming>) -> Response<Body> {
        self.answer(req.map(apus_http::incoming)).await
    }
}

/// The proxy of the same process hands its uploads here without a socket
/// (see `apus_http::local`); they are answered, logged and counted as
/// those that come on a connection.
impl apus_http::local::LocalHandler for ObjectServer {
    fn call_local(
        self: Arc<Self>,
        req: Request<Body>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send>> {
        Box::pin(async move { self.answer(req).await })
    }
}

impl ObjectServer {
    async fn answer(&self, req: Request<Body>) -> Response<Body> {
        let start = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let trans_id = header(req.headers(), h::X_TRANS_ID)
            .map(|s| s.into_owned())
            .unwrap_or_else(|| "-".into());
        let remote = req
            .extensions()
            .get::<apus_http::RemoteAddr>()
            .map(|r| r.0.to_string())
            .unwrap_or_default();
        // Replication traffic is bulk: logged at debug, as Swift does.
        let replication =
            req.headers().contains_key(h::X_BACKEND_REPLICATION) || method.as_str() == "REPLICATE";
        let resp = self.handle(req).await;
        let status = resp.status().as_u16();
        let elapsed = start.elapsed().as_secs_f64();
        if replication {
            tracing::debug!(target: "object-server", %remote, %method, %path, status, txn = %trans_id, elapsed);
        } else {
            tracing::info!(target: "object-server", %remote, %method, %path, status, txn = %trans_id, elapsed);
        }
        resp
    }
}

/// `OPTIONS`: the verbs served, and which server this is (what
/// `swift-recon --validate-servers` checks), as Swift's servers answer.
fn options_response() -> Resp {
    let mut resp = status_response(200);
    let h = resp.headers_mut();
    h.insert(
        http::header::ALLOW,
        HeaderValue::from_static("DELETE, GET, HEAD, OPTIONS, POST, PUT, REPLICATE"),
    );
    if let Ok(v) =
        HeaderValue::from_str(&format!("object-server/apus-{}", env!("CARGO_PKG_VERSION")))
    {
        h.insert(http::header::SERVER, v);
    }
    resp
}

impl ObjectServer {
    /// A server over `conf`'s devices. Starting one removes the stale
    /// temp files a crash left there (see
    /// [`DiskFileManager::remove_stale_temp_files`]): it assumes it is the
    /// only object server writing to these devices.
    pub fn new(conf: ObjectServerConfig) -> Self {
        let client = BackendClient::new(ClientConfig {
            connect_timeout: conf.conn_timeout,
            node_timeout: conf.node_timeout,
            ..ClientConfig::default()
        });
        let reserved: HashSet<&str> = h::RESERVED_DATAFILE_META.iter().copied().collect();
        let allowed_headers = conf
            .allowed_headers
            .iter()
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty() && !reserved.contains(s.as_str()))
            .collect();
        // Failpoints are armed (in fault tests) when the server starts.
        failpoint::armed();
        let mgr = DiskFileManager::new(conf.diskfile.clone());
        // Temp files older than this server are what a crash left of
        // writes in progress: none of them can complete any more.
        let removed = mgr.remove_stale_temp_files(std::time::SystemTime::now());
        if removed > 0 {
            tracing::info!(target: "object-server", removed, "removed stale temp files");
        }
        ObjectServer {
            mgr,
            conf,
            client,
            allowed_headers,
            slow_hosts: Arc::new(SlowHosts::default()),
        }
    }

    pub fn manager(&self) -> &DiskFileManager {
        &self.mgr
    }

    /// Sends container updates to the container servers of this process
    /// without a socket (see `apus_http::local`).
    pub fn with_local_nodes(mut self, nodes: apus_http::local::LocalNodes) -> Self {
        self.client = self.client.with_local(nodes);
        self
    }

    async fn handle(&self, req: Request<Body>) -> Resp {
        if apus_http::healthcheck::is_healthcheck(req.method(), req.uri().path()) {
            return apus_http::healthcheck::answer();
        }
        if let Some(recon) = &self.conf.recon {
            if crate::recon::is_recon_path(req.uri().path()) {
                return crate::recon::answer(recon.clone(), req.method(), req.uri().path()).await;
            }
        }
        if req.method() == Method::OPTIONS {
            return options_response();
        }
        let decoded = match percent_decode_internal(req.uri().path()) {
            Ok(p) => p,
            Err(e) => return text_response(412, &e.to_string()),
        };
        let method = req.method().clone();
        if method.as_str() == "REPLICATE" {
            return crate::object_replication::replicate(&self.mgr, &self.conf, &decoded, req)
                .await;
        }
        if !matches!(method.as_str(), "PUT" | "GET" | "HEAD" | "POST" | "DELETE") {
            return status_response(405);
        }
        let target = match self.target(&decoded, req.headers()) {
            Ok(t) => t,
            Err(resp) => return resp,
        };
        if let Some(ec) = target.ec {
            match method {
                Method::PUT => return self.ec_put(target, ec, req).await,
                Method::GET | Method::HEAD => return self.ec_get_or_head(target, ec, req).await,
                _ => {}
            }
        }
        match method {
            Method::PUT => self.put(target, req).await,
            Method::GET | Method::HEAD => self.get_or_head(target, req).await,
            Method::POST => self.post(target, req).await,
            _ => self.delete(target, req).await,
        }
    }

    fn target(&self, path: &str, headers: &HeaderMap) -> Result<Target, Resp> {
        let policy = match header(headers, h::X_BACKEND_STORAGE_POLICY_INDEX) {
            None => Some(0),
            Some(v) => v.trim().parse::<u32>().ok(),
        };
        let policy = match policy {
            Some(p) if self.conf.policies.contains(&p) => p,
            _ => {
                let shown = header(headers, h::X_BACKEND_STORAGE_POLICY_INDEX).unwrap_or_default();
                return Err(text_response(503, &format!("No policy with index {shown}")));
            }
        };
        let segs = split_path(path, 5, 5, true).map_err(|e| text_response(400, &e.to_string()))?;
        let mut it = segs.into_iter().map(Option::unwrap_or_default);
        let (device, partition, account, container, obj) = (
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
        );
        apus_proto::path::validate_device_partition(&device, &partition)
            .map_err(|e| text_response(400, &e.to_string()))?;
        crate::db_common::validate_internal_names(&account, Some(&container), Some(&obj))
            .map_err(|e| text_response(400, e.body.as_deref().unwrap_or("")))?;
        let partition = partition
            .parse::<u32>()
            .map_err(|_| text_response(400, &format!("Invalid partition: {partition}")))?;
        let ec = self
            .conf
            .ec_policies
            .iter()
            .find(|p| p.index == policy)
            .copied();
        Ok(Target {
            device,
            partition,
            account,
            container,
            obj,
            policy,
            ec,
        })
    }

    /// The request's disk file; in an EC policy one that follows the EC
    /// rules and opens the durable fragment (POST, DELETE, PUT checks).
    fn diskfile(&self, t: &Target) -> Result<DiskFile, Resp> {
        if let Some(ec) = &t.ec {
            return self
                .ec_diskfile(t, ec, FragSelect::any())
                .map(|d| d.as_diskfile().clone());
        }
        self.mgr
            .diskfile(
                &t.device,
                t.partition,
                &t.account,
                &t.container,
                &t.obj,
                t.policy,
            )
            .map_err(|e| disk_error_response(&e, &t.device))
    }

    /// Request headers kept as object metadata: user metadata, sysmeta,
    /// transient sysmeta, and the allowed headers (plus any listed in
    /// `X-Backend-Replication-Headers`), names title-cased as Swift stores.
    fn request_metadata(&self, headers: &HeaderMap, with_sysmeta: bool, md: &mut Metadata) {
        for (name, value) in headers {
            let n = name.as_str();
            if h::is_object_user_meta(n)
                || h::is_object_transient_sysmeta(n)
                || (with_sysmeta && h::is_object_sysmeta(n))
            {
                md.insert(title_case(n), value.as_bytes());
            }
        }
        let extra: Vec<String> = header(headers, h::X_BACKEND_REPLICATION_HEADERS)
            .map(|v| {
                v.split_whitespace()
                    .map(|s| s.to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        for key in extra.iter().chain(self.allowed_headers.iter()) {
            if let Some(v) = headers.get(key.as_str()) {
                md.insert(title_case(key), v.as_bytes());
            }
        }
    }

    /// Whether a PUT at `ts` may replace what `df` holds now, as Swift's
    /// PUT checks: 412 when `If-None-Match` matches the current object,
    /// 409 (naming the current timestamp) when that is not older. Gives
    /// the current object's metadata (none when deleted or missing) and
    /// what `make` made (the new object's writer) in the same trip to a
    /// blocking thread: each trip is a hand-off and a wake-up of two
    /// threads.
    async fn check_replaceable<W: Send + 'static>(
        &self,
        t: &Target,
        df: apus_diskfile::DiskFile,
        headers: &HeaderMap,
        ts: Timestamp,
        make: impl FnOnce() -> Result<W, DiskFileError> + Send + 'static,
    ) -> Result<(Option<Metadata>, W), Resp> {
        let if_none_match = if_none_match(headers);
        let (opened, writer) = match blocking(move || Ok((open_current(&df, ts), make()))).await {
            Ok(both) => both,
            Err(e) => return Err(disk_error_response(&e, &t.device)),
        };
        let orig_metadata = replaceable(opened, if_none_match.as_ref(), ts, &t.device)?;
        match writer {
            Ok(writer) => Ok((orig_metadata, writer)),
            Err(e) => Err(disk_error_response(&e, &t.device)),
        }
    }

    // ---- PUT -------------------------------------------------------------

    async fn put(&self, t: Target, req: Request<Body>) -> Resp {
        let (parts, body) = req.into_parts();
        let headers = &parts.headers;
        let ts = match valid_timestamp(headers) {
            Ok(ts) => ts,
            Err(r) => return r,
        };
        let mut fsize = match body_size(headers) {
            Ok(n) => n,
            Err(r) => return r,
        };
        if let Err(e) = constraints::check_name_length(NameKind::Object, &t.account, &t.obj) {
            return text_response(e.status, &e.body);
        }
        let Some(content_type) = header(headers, "content-type").map(|c| c.into_owned()) else {
            return text_response(400, "No content type");
        };
        let delete_at = match check_delete_headers(headers, ts) {
            Ok(d) => d,
            Err(r) => return r,
        };
        if content_type.contains('\0') || content_type.contains('\u{FFFD}') {
            return text_response(400, "Invalid Content-Type");
        }
        if let Err(e) = check_metadata(headers) {
            return e;
        }
        if fsize.is_none() {
            if let Some(v) = header(headers, h::X_BACKEND_OBJ_CONTENT_LENGTH) {
                match py_int(&v) {
                    Some(n) if n >= 0 => fsize = Some(n as u64),
                    _ => return text_response(400, "Invalid X-Backend-Obj-Content-Length"),
                }
            }
        }

        // The proxy hashed the body already: its ETag comes as a trailer,
        // and the CRC-32 this writer computes anyway proves the bytes are
        // the ones it hashed.
        let etag_trailer = match header(headers, h::X_BACKEND_ETAG_TRAILER).as_deref() {
            None => false,
            Some("crc32") => true,
            Some(_) => return text_response(400, "Invalid X-Backend-Etag-Trailer"),
        };
        let df = match self.diskfile(&t) {
            Ok(df) => df,
            Err(r) => return r,
        };
        let create = move |df: &apus_diskfile::DiskFile| {
            let writer = df.create(fsize)?;
            if etag_trailer {
                writer.without_md5()
            } else {
                Ok(writer)
            }
        };
        // A small body is gathered first, then checked against the current
        // object, written and committed in one trip to a blocking thread
        // (each trip is a hand-off and a wake-up of two threads). A larger
        // one is checked first, so that a refused upload is not sent, then
        // streams to a writer thread through a bounded channel.
        let (mut sink, opened_early) = match fsize {
            Some(n) if n <= SMALL_PUT_BODY => (BodySink::Memory(Vec::new()), None),
            _ => {
                let new = df.clone();
                let make = move || create(&new);
                let (orig_metadata, writer) = match self
                    .check_replaceable(&t, df.clone(), headers, ts, make)
                    .await
                {
                    Ok(both) => both,
                    Err(r) => return r,
                };
                let (tx, mut rx) =
                    tokio::sync::mpsc::channel::<Bytes>(self.conf.queue_depth.max(1));
                let write_task = tokio::task::spawn_blocking(move || {
                    let mut writer = writer;
                    while let Some(chunk) = rx.blocking_recv() {
                        writer.write(&chunk)?;
                    }
                    Ok::<_, DiskFileError>(writer)
                });
                (BodySink::Thread(tx, write_task), Some(orig_metadata))
            }
        };
        let mut body = body;
        let mut received: u64 = 0;
        let mut failure: Option<u16> = None;
        let mut trailers = HeaderMap::new();
        loop {
            let frame = match tokio::time::timeout(self.conf.client_timeout, body.frame()).await {
                Err(_) => {
                    failure = Some(408);
                    break;
                }
                Ok(None) => break,
                Ok(Some(Err(_))) => {
                    failure = Some(499);
                    break;
                }
                Ok(Some(Ok(f))) => f,
            };
            let frame = match frame.into_data() {
                Ok(data) => Ok(data),
                Err(frame) => Err(frame.into_trailers()),
            };
            if let Err(Ok(t)) = frame {
                trailers.extend(t);
                continue;
            }
            if let Ok(data) = frame {
                received += data.len() as u64;
                let stopped = match &mut sink {
                    // A chunked body's size comes from a header that
                    // hyper does not hold it to: past it, the PUT fails
                    // (499, as a short body does) rather than gather more.
                    BodySink::Memory(_) if received > SMALL_PUT_BODY => {
                        failure = Some(499);
                        true
                    }
                    BodySink::Memory(chunks) => {
                        chunks.push(data);
                        false
                    }
                    // The writer thread stopped: its error says why.
                    BodySink::Thread(tx, _) => tx.send(data).await.is_err(),
                };
                if stopped {
                    break;
                }
            }
        }
        // The writer thread's writer, or what is still in memory.
        let (writer, chunks) = match sink {
            BodySink::Memory(chunks) => (None, chunks),
            BodySink::Thread(tx, write_task) => {
                drop(tx);
                match write_task.await {
                    Ok(Ok(w)) => (Some(w), Vec::new()),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "object write failed");
                        return disk_error_response(&e, &t.device);
                    }
                    Err(_) => return status_response(500),
                }
            }
        };
        // The body is whole and, from a proxy that hashed it, vouched for:
        // the proxy's ETag and CRC-32, or the refusal.
        let checked = if let Some(status) = failure {
            Err(status_response(status))
        } else if fsize.is_some_and(|n| n != received) {
            Err(status_response(499))
        } else if etag_trailer {
            proxy_digest(&trailers).map(Some)
        } else {
            Ok(None)
        };
        let proxy_hashed = match checked {
            Ok(digest) => digest,
            Err(refusal) => {
                if let Some(writer) = writer {
                    let _ = tokio::task::spawn_blocking(move || drop(writer)).await;
                }
                return refusal;
            }
        };
        let mut metadata = Metadata::new();
        metadata.insert("X-Timestamp", ts.internal());
        metadata.insert("Content-Type", content_type.clone());
        self.request_metadata(headers, true, &mut metadata);
        if let Some(d) = &delete_at {
            metadata.insert("X-Delete-At", d.clone());
        }
        let sent_etag = header(headers, "etag")
            .map(|sent| normalized_etag(&sent))
            .filter(|sent| !sent.is_empty());
        let if_none_match = if_none_match(headers);
        let device = t.device.clone();
        // Check the current object (small bodies), write what is still in
        // memory, check the ETag the client sent (or the proxy's CRC-32),
        // and commit (fsync, rename), all in one trip.
        let committed = blocking(move || {
            let (orig_metadata, mut writer) = match (opened_early, writer) {
                (Some(orig_metadata), Some(writer)) => (orig_metadata, writer),
                _ => {
                    let opened = open_current(&df, ts);
                    match replaceable(opened, if_none_match.as_ref(), ts, &device) {
                        Ok(orig_metadata) => (orig_metadata, create(&df)?),
                        Err(refused) => return Ok(Err(refused)),
                    }
                }
            };
            for chunk in &chunks {
                writer.write(chunk)?;
            }
            let etag = match (proxy_hashed, writer.etag()) {
                (Some((etag, crc)), _) if crc == writer.crc32() => etag,
                (Some(_), _) => {
                    tracing::warn!("object PUT: the body's CRC-32 differs from the proxy's");
                    drop(writer);
                    return Ok(Err(status_response(422)));
                }
                (None, Some(etag)) => etag,
                (None, None) => {
                    return Err(DiskFileError::InvalidMetadata(
                        "a writer without MD5 and no ETag from the proxy".into(),
                    ))
                }
            };
            if sent_etag.is_some_and(|sent| sent != etag) {
                drop(writer);
                return Ok(Err(status_response(422)));
            }
            metadata.insert("Content-Length", writer.bytes_written().to_string());
            metadata.insert("ETag", etag.clone());
            let md = metadata.clone();
            writer.put_observed(md, |stage| {
                failpoint::hit(match stage {
                    PutStage::BeforeFsync => failpoint::PUT_BEFORE_FSYNC,
                    PutStage::BeforeRename => failpoint::PUT_BEFORE_RENAME,
                })
            })?;
            Ok(Ok((orig_metadata, metadata, etag)))
        })
        .await;
        let (orig_metadata, metadata, etag) = match committed {
            Ok(Ok(done)) => done,
            Ok(Err(refused)) => return refused,
            Err(e) => {
                tracing::error!(error = %e, "object commit failed");
                return disk_error_response(&e, &t.device);
            }
        };
        failpoint::hit(failpoint::PUT_AFTER_RENAME);

        // Post-commit: expiring-objects queue, then the container.
        let orig_delete_at = orig_metadata
            .as_ref()
            .and_then(|m| m.get("X-Delete-At"))
            .and_then(py_int)
            .unwrap_or(0);
        let new_delete_at = delete_at.as_deref().and_then(py_int).unwrap_or(0);
        self.conditional_delete_at_update(
            &t,
            &parts.method,
            &parts.uri,
            headers,
            ts,
            &metadata,
            orig_delete_at,
            new_delete_at,
        )
        .await;
        let mut update = ContainerUpdate::new("PUT", &t.account, &t.container, &t.obj);
        update.set_header("x-size", metadata.get("Content-Length").unwrap_or("0"));
        update.set_header("x-content-type", content_type);
        update.set_header("x-timestamp", ts.internal());
        update.set_header("x-etag", etag.clone());
        apply_container_overrides(
            &mut update,
            headers.iter().map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            }),
        );
        self.container_update(&t, &parts.method, &parts.uri, headers, update)
            .await;
        failpoint::hit(failpoint::PUT_AFTER_CONTAINER_UPDATE);

        let mut resp = status_response(201);
        set_header(resp.headers_mut(), "etag", &format!("\"{etag}\""));
        resp
    }

    // ---- GET / HEAD ------------------------------------------------------

    async fn get_or_head(&self, t: Target, req: Request<Body>) -> Resp {
        let headers = req.headers().clone();
        let is_head = req.method() == Method::HEAD;
        drop(req);
        let now =
            match header(&headers, h::X_TIMESTAMP).and_then(|v| Timestamp::parse(v.trim()).ok()) {
                Some(ts) => ts.as_secs_f64(),
                None => now_secs(),
            };
        let open_expired = header_true(&headers, h::X_BACKEND_OPEN_EXPIRED)
            || header_true(&headers, h::X_BACKEND_REPLICATION);
        let conditions = Conditions::from_headers(|n| headers.get(n).and_then(|v| v.to_str().ok()));
        let df = match self.diskfile(&t) {
            Ok(df) => df,
            Err(r) => return r,
        };
        let opened = blocking(move || {
            Ok(df.open(OpenOptions {
                open_expired,
                now: Some(now),
            }))
        })
        .await;
        let open = match opened {
            Ok(Ok(open)) => open,
            Ok(Err(e)) | Err(e) => {
                let backend_ts = match &e {
                    DiskFileError::Deleted { timestamp, .. } => Some(*timestamp),
                    DiskFileError::Expired { metadata, .. } => metadata.timestamp(),
                    _ => None,
                };
                if e.http_status() != 404 {
                    return disk_error_response(&e, &t.device);
                }
                let mut resp = match conditions.evaluate(false, None, None) {
                    Some(s) => status_response(s),
                    None => status_response(404),
                };
                if let Some(ts) = backend_ts {
                    set_header(resp.headers_mut(), h::X_BACKEND_TIMESTAMP, &ts.internal());
                }
                return resp;
            }
        };
        self.object_response(open, &headers, is_head, &conditions)
    }

    fn object_response(
        &self,
        open: OpenDiskFile,
        req_headers: &HeaderMap,
        is_head: bool,
        conditions: &Conditions,
    ) -> Resp {
        let md = open.metadata().clone();
        let size = open.content_length();
        let ts = md.timestamp().unwrap_or_else(|| open.timestamp());
        let content_type = md
            .get("Content-Type")
            .unwrap_or("application/octet-stream")
            .to_string();
        let etag = md.etag().unwrap_or("").to_string();

        let mut resp = Response::new(empty());
        let out = resp.headers_mut();
        set_header(out, "content-type", &content_type);
        for (k, v) in md.iter() {
            let lower = k.to_ascii_lowercase();
            if h::is_object_user_meta(k)
                || h::is_object_sysmeta(k)
                || h::is_object_transient_sysmeta(k)
                || self.allowed_headers.contains(&lower)
            {
                set_header_bytes(out, k, v);
            }
        }
        set_header(out, "etag", &format!("\"{etag}\""));
        set_header(
            out,
            "last-modified",
            &format_http_date(ts.ceil_secs() as i64),
        );
        if let Some(enc) = md.get("Content-Encoding") {
            set_header(out, "content-encoding", enc);
        }
        set_header(out, h::X_TIMESTAMP, &ts.normal());
        set_header(out, h::X_BACKEND_TIMESTAMP, &ts.internal());
        set_header(
            out,
            h::X_BACKEND_DATA_TIMESTAMP,
            &open.data_timestamp().internal(),
        );
        set_header(
            out,
            h::X_BACKEND_DURABLE_TIMESTAMP,
            &open.data_timestamp().internal(),
        );
        set_header(out, "accept-ranges", "bytes");

        // X-Backend-Etag-Is-At names metadata holding the etag to compare.
        let conditional_etag = header(req_headers, h::X_BACKEND_ETAG_IS_AT)
            .and_then(|names| {
                names.split(',').map(str::trim).find_map(|n| {
                    md.get_ignore_case(n)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
            })
            .unwrap_or_else(|| etag.clone());
        if let Some(status) =
            conditions.evaluate(true, Some(&conditional_etag), Some(ts.ceil_secs() as i64))
        {
            *resp.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::PRECONDITION_FAILED);
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(0));
            return resp;
        }
        if is_head {
            resp.headers_mut()
                .insert(http::header::CONTENT_LENGTH, HeaderValue::from(size));
            return resp;
        }

        let ignore_range = header(req_headers, h::X_BACKEND_IGNORE_RANGE_IF_METADATA_PRESENT)
            .is_some_and(|names| {
                names
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .any(|n| md.get_ignore_case(n).is_some())
            });
        let ranges = if ignore_range {
            None
        } else {
            header(req_headers, "range")
                .and_then(|r| Range::parse(&r).ok())
                .and_then(|r| r.ranges_for_length(size))
        };
        let reader = open.reader();
        let chunk = self.conf.disk_chunk_size.max(1);
        let depth = self.conf.queue_depth;
        match ranges {
            Some(r) if r.is_empty() => {
                let mut resp416 = status_response(416);
                for (k, v) in resp.headers() {
                    if k != http::header::CONTENT_LENGTH && k != http::header::CONTENT_TYPE {
                        resp416.headers_mut().insert(k.clone(), v.clone());
                    }
                }
                set_header(
                    resp416.headers_mut(),
                    "content-range",
                    &format!("bytes */{size}"),
                );
                resp416
            }
            Some(r) if size > 0 && r.len() == 1 => {
                let (start, end) = r[0];
                *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
                let out = resp.headers_mut();
                set_header(out, "content-range", &content_range_value(start, end, size));
                out.insert(http::header::CONTENT_LENGTH, HeaderValue::from(end - start));
                let (tx, body) = channel(depth, Some(end - start));
                tokio::task::spawn_blocking(move || {
                    stream_ranges(reader, &[(start, end)], None, size, chunk, tx)
                });
                *resp.body_mut() = body;
                resp
            }
            Some(r) if size > 0 => {
                let boundary = new_boundary();
                let total = multipart_body_length(&boundary, &content_type, &r, size);
                *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
                let out = resp.headers_mut();
                set_header(
                    out,
                    "content-type",
                    &format!("multipart/byteranges;boundary={boundary}"),
                );
                out.insert(http::header::CONTENT_LENGTH, HeaderValue::from(total));
                let (tx, body) = channel(depth, Some(total));
                tokio::task::spawn_blocking(move || {
                    stream_ranges(
                        reader,
                        &r,
                        Some((&boundary, &content_type)),
                        size,
                        chunk,
                        tx,
                    )
                });
                *resp.body_mut() = body;
                resp
            }
            _ => {
                resp.headers_mut()
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from(size));
                let (tx, body) = channel(depth, Some(size));
                let chunk = whole_read_chunk(chunk, size);
                tokio::task::spawn_blocking(move || stream_full(reader, chunk, tx));
                *resp.body_mut() = body;
                resp
            }
        }
    }

    // ---- POST ------------------------------------------------------------

    async fn post(&self, t: Target, req: Request<Body>) -> Resp {
        let (parts, _body) = req.into_parts();
        let headers = &parts.headers;
        let ts = match valid_timestamp(headers) {
            Ok(ts) => ts,
            Err(r) => return r,
        };
        let new_delete_at = match header(headers, h::X_DELETE_AT).filter(|v| !v.is_empty()) {
            None => 0,
            Some(v) => match py_int(&v) {
                Some(n) => n,
                None => return text_response(400, "Non-integer X-Delete-At"),
            },
        };
        if new_delete_at != 0 && (new_delete_at as f64) < ts.as_secs_f64() {
            return text_response(400, "X-Delete-At in past");
        }
        if let Err(e) = check_metadata(headers) {
            return e;
        }
        let req_ctype = header(headers, "content-type").map(|c| c.into_owned());
        let req_ctype_ts = match &req_ctype {
            Some(c) if !c.is_empty() => match header(headers, h::CONTENT_TYPE_TIMESTAMP) {
                Some(v) => match Timestamp::parse(v.trim()) {
                    Ok(t) => t,
                    Err(e) => return text_response(400, &e.to_string()),
                },
                None => ts,
            },
            _ => Timestamp::ZERO,
        };
        let df = match self.diskfile(&t) {
            Ok(df) => df,
            Err(r) => return r,
        };
        let open_expired = header_true(headers, h::X_BACKEND_OPEN_EXPIRED)
            || header_true(headers, h::X_BACKEND_REPLICATION);
        let now = ts.as_secs_f64();
        let df2 = df.clone();
        let open = match blocking(move || {
            df2.open(OpenOptions {
                open_expired,
                now: Some(now),
            })
        })
        .await
        {
            Ok(open) => open,
            Err(e) if e.http_status() == 404 => return status_response(404),
            Err(e) => return disk_error_response(&e, &t.device),
        };
        let orig_metadata = open.metadata().clone();
        let orig_ts = orig_metadata.timestamp().unwrap_or(Timestamp::ZERO);
        let orig_ctype_ts = open.content_type_timestamp();
        let data_ts = open.data_timestamp();
        if orig_ts >= ts && orig_ctype_ts >= req_ctype_ts {
            let mut r = status_response(409);
            set_header(r.headers_mut(), h::X_BACKEND_TIMESTAMP, &orig_ts.internal());
            return r;
        }
        let mut metadata;
        if ts > orig_ts {
            metadata = Metadata::new();
            metadata.insert("X-Timestamp", ts.internal());
            self.request_metadata(headers, false, &mut metadata);
            let orig_delete_at = orig_metadata
                .get("X-Delete-At")
                .and_then(py_int)
                .unwrap_or(0);
            let datafile_md = open.datafile_metadata().clone();
            self.conditional_delete_at_update(
                &t,
                &parts.method,
                &parts.uri,
                headers,
                ts,
                &datafile_md,
                orig_delete_at,
                new_delete_at,
            )
            .await;
        } else {
            metadata = open.metafile_metadata().cloned().unwrap_or_default();
        }
        let (ctype, ctype_ts) = if req_ctype_ts > orig_ctype_ts {
            let c = req_ctype.unwrap_or_default();
            metadata.insert("Content-Type", c.clone());
            metadata.insert("Content-Type-Timestamp", req_ctype_ts.internal());
            (c, req_ctype_ts)
        } else {
            let c = open.content_type().unwrap_or("").to_string();
            if orig_ctype_ts != data_ts {
                metadata.insert("Content-Type", c.clone());
                metadata.insert("Content-Type-Timestamp", orig_ctype_ts.internal());
            }
            (c, orig_ctype_ts)
        };
        let meta_ts = metadata.get("X-Timestamp").unwrap_or_default().to_string();
        let datafile_ctype = open
            .datafile_metadata()
            .get("Content-Type")
            .unwrap_or("")
            .to_string();
        drop(open);
        if let Err(e) = blocking(move || df.write_metadata(metadata)).await {
            return disk_error_response(&e, &t.device);
        }
        let mut update_ctype = ctype.clone();
        if ctype_ts != data_ts {
            if let Some(sb) = swift_bytes(&datafile_ctype) {
                update_ctype = format!("{update_ctype};swift_bytes={sb}");
            }
        }
        let mut update = ContainerUpdate::new("PUT", &t.account, &t.container, &t.obj);
        update.set_header("x-size", orig_metadata.get("Content-Length").unwrap_or("0"));
        update.set_header("x-content-type", update_ctype);
        update.set_header("x-timestamp", data_ts.internal());
        update.set_header("x-content-type-timestamp", ctype_ts.internal());
        update.set_header("x-meta-timestamp", meta_ts);
        update.set_header("x-etag", orig_metadata.etag().unwrap_or(""));
        if let Some(e) = orig_metadata.get("X-Object-Sysmeta-Ec-Etag") {
            update.set_header("x-etag", e);
        }
        if let Some(s) = orig_metadata.get("X-Object-Sysmeta-Ec-Content-Length") {
            update.set_header("x-size", s);
        }
        apply_container_overrides(
            &mut update,
            orig_metadata
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned())),
        );
        self.container_update(&t, &parts.method, &parts.uri, headers, update)
            .await;

        let mut resp = status_response(202);
        set_header(resp.headers_mut(), h::X_BACKEND_CONTENT_TYPE, &ctype);
        for (k, v) in orig_metadata.iter() {
            if h::is_object_sysmeta(k) {
                set_header_bytes(resp.headers_mut(), k, v);
            }
        }
        resp
    }

    // ---- DELETE ----------------------------------------------------------

    async fn delete(&self, t: Target, req: Request<Body>) -> Resp {
        let (parts, _body) = req.into_parts();
        let headers = &parts.headers;
        let ts = match valid_timestamp(headers) {
            Ok(ts) => ts,
            Err(r) => return r,
        };
        let df = match self.diskfile(&t) {
            Ok(df) => df,
            Err(r) => return r,
        };
        let now = ts.as_secs_f64();
        let df2 = df.clone();
        // The common case, an older object with no expiry and no
        // X-If-Delete-At, is deleted in the same trip to a blocking thread
        // as it is opened; anything else is decided here first.
        let conditional = headers.contains_key(h::X_IF_DELETE_AT);
        let opened = blocking(move || {
            let opened = df2.open(OpenOptions {
                open_expired: false,
                now: Some(now),
            });
            let plain_older = opened.as_ref().is_ok_and(|open| {
                open.data_timestamp() < ts && open.metadata().get("X-Delete-At").is_none()
            });
            let deleted = match !conditional && plain_older {
                true => Some(df2.delete(ts)),
                false => None,
            };
            Ok((opened, deleted))
        })
        .await;
        let (opened, deleted) = match opened {
            Ok((opened, deleted)) => (Ok(opened), deleted),
            Err(e) => (Err(e), None),
        };
        if let Some(Err(e)) = &deleted {
            return disk_error_response(e, &t.device);
        }
        let (orig_ts, orig_md, mut status) = match opened {
            Ok(Ok(open)) => {
                let dts = open.data_timestamp();
                (
                    dts,
                    open.metadata().clone(),
                    if dts < ts { 204 } else { 409 },
                )
            }
            Ok(Err(DiskFileError::Expired { metadata, .. })) => (
                metadata.timestamp().unwrap_or(Timestamp::ZERO),
                *metadata,
                404,
            ),
            Ok(Err(DiskFileError::Deleted { timestamp, .. })) => (timestamp, Metadata::new(), 404),
            Ok(Err(DiskFileError::NotFound | DiskFileError::Quarantined { .. })) => {
                (Timestamp::ZERO, Metadata::new(), 404)
            }
            Ok(Err(e)) | Err(e) => return disk_error_response(&e, &t.device),
        };
        let response_ts = orig_ts.max(ts);
        let orig_delete_at = orig_md
            .get("X-Delete-At")
            .and_then(|v| Timestamp::parse(v.trim()).ok())
            .unwrap_or(Timestamp::ZERO);
        if let Some(v) = header(headers, h::X_IF_DELETE_AT) {
            let Ok(wanted) = Timestamp::parse(v.trim()) else {
                return text_response(400, "Bad X-If-Delete-At header value");
            };
            if orig_ts == Timestamp::ZERO {
                return status_response(404);
            }
            if orig_ts >= ts {
                return status_response(409);
            }
            if orig_delete_at != wanted {
                return text_response(412, "X-If-Delete-At and X-Delete-At do not match");
            }
            status = 204;
        }
        let orig_delete_at_secs = orig_delete_at.secs() as i64;
        self.conditional_delete_at_update(
            &t,
            &parts.method,
            &parts.uri,
            headers,
            ts,
            &Metadata::new(),
            orig_delete_at_secs,
            0,
        )
        .await;
        if orig_ts < ts {
            if deleted.is_none() {
                if let Err(e) = blocking(move || df.delete(ts)).await {
                    return disk_error_response(&e, &t.device);
                }
            }
            let mut update = ContainerUpdate::new("DELETE", &t.account, &t.container, &t.obj);
            update.set_header("x-timestamp", ts.internal());
            self.container_update(&t, &parts.method, &parts.uri, headers, update)
                .await;
        }
        let mut resp = status_response(status);
        set_header(
            resp.headers_mut(),
            h::X_BACKEND_TIMESTAMP,
            &response_ts.internal(),
        );
        set_header(
            resp.headers_mut(),
            h::X_BACKEND_CONTENT_TYPE,
            orig_md.get("Content-Type").unwrap_or(""),
        );
        resp
    }

    // ---- container and expirer-queue updates -------------------------------

    fn referer(method: &Method, uri: &http::Uri, headers: &HeaderMap) -> String {
        let host = header(headers, "host").unwrap_or_default();
        format!("{method} http://{host}{}", uri.path())
    }

    fn decorate(
        &self,
        update: &mut ContainerUpdate,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
    ) {
        update.set_header(
            "x-trans-id",
            header(headers, h::X_TRANS_ID).unwrap_or(std::borrow::Cow::Borrowed("-")),
        );
        update.set_header("referer", Self::referer(method, uri, headers));
    }

    /// Sends `update` to the container servers named in the request (at
    /// most `container_update_timeout` waited for; the rest go on in the
    /// background and fall back to async pendings).
    async fn container_update(
        &self,
        t: &Target,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        mut update: ContainerUpdate,
    ) {
        let targets = match upd::container_targets(
            header(headers, h::X_CONTAINER_HOST).as_deref(),
            header(headers, h::X_CONTAINER_PARTITION).as_deref(),
            header(headers, h::X_CONTAINER_DEVICE).as_deref(),
        ) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "ERROR Container update failed");
                return;
            }
        };
        let contpath = header(headers, h::X_BACKEND_QUOTED_CONTAINER_PATH)
            .and_then(|q| percent_decode(&q).ok())
            .or_else(|| header(headers, h::X_BACKEND_CONTAINER_PATH).map(|c| c.into_owned()));
        update.container_path = contpath.filter(|cp| {
            let ok = split_path(&format!("/{cp}"), 2, 2, false).is_ok();
            if !ok {
                tracing::error!(container_path = %cp, "Invalid X-Backend-Container-Path");
            }
            ok
        });
        update.db_state = header(headers, h::X_CONTAINER_ROOT_DB_STATE).map(|s| s.into_owned());
        self.decorate(&mut update, method, uri, headers);
        update.set_header(h::X_BACKEND_STORAGE_POLICY_INDEX, t.policy.to_string());
        let mut waited = Vec::new();
        for target in targets {
            let sender = self.update_sender(t);
            let update = update.clone();
            let host = target.host.clone();
            let plan = self.slow_hosts.plan(&host);
            if plan == UpdatePlan::Save {
                sender.save(update).await;
                continue;
            }
            let slow_hosts = self.slow_hosts.clone();
            let sent_to = host.clone();
            let task = tokio::spawn(async move {
                let reached = sender.send(update, Some(target)).await;
                slow_hosts.done(&sent_to, reached);
            });
            if plan == UpdatePlan::Wait {
                waited.push((host, task));
            }
        }
        let deadline = tokio::time::Instant::now() + self.conf.container_update_timeout;
        for (host, mut task) in waited {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                // It goes on in the background (and is saved as an async
                // pending if it fails); later writes stop waiting for it.
                tracing::debug!(
                    host = %host,
                    timeout = ?self.conf.container_update_timeout,
                    "container update timeout; continuing in the background"
                );
                self.slow_hosts.timed_out(&host);
            }
        }
    }

    fn update_sender(&self, t: &Target) -> UpdateSender {
        UpdateSender {
            client: self.client.clone(),
            mgr: self.mgr.clone(),
            objdevice: t.device.clone(),
            policy: t.policy,
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn conditional_delete_at_update(
        &self,
        t: &Target,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        ts: Timestamp,
        metadata: &Metadata,
        orig_delete_at: i64,
        new_delete_at: i64,
    ) {
        if new_delete_at != 0 {
            let bytes = metadata.get("Content-Length").and_then(py_int).unwrap_or(0);
            let extra = [
                (
                    "x-content-type".to_string(),
                    format!("{};swift_expirer_bytes={bytes}", upd::X_DELETE_TYPE),
                ),
                (
                    "x-content-type-timestamp".to_string(),
                    metadata.get("X-Timestamp").unwrap_or_default().to_string(),
                ),
            ];
            self.delete_at_update("PUT", new_delete_at, t, method, uri, headers, ts, &extra)
                .await;
        }
        if orig_delete_at != 0 && orig_delete_at != new_delete_at {
            self.delete_at_update("DELETE", orig_delete_at, t, method, uri, headers, ts, &[])
                .await;
        }
    }

    /// Adds or removes the object's entry in the expiring-objects queue.
    #[allow(clippy::too_many_arguments)]
    async fn delete_at_update(
        &self,
        op: &str,
        delete_at: i64,
        t: &Target,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        ts: Timestamp,
        extra: &[(String, String)],
    ) {
        if header_true(headers, h::X_BACKEND_REPLICATION) {
            return;
        }
        let delete_at = delete_at.clamp(0, 9_999_999_999) as u64;
        let mut container = upd::expirer_container(
            &self.conf.diskfile.hash,
            delete_at,
            &t.account,
            &t.container,
            &t.obj,
        );
        let targets: Vec<Option<UpdateTarget>>;
        let mut update = ContainerUpdate::new(op, upd::EXPIRER_ACCOUNT, "", "");
        update.set_header(h::X_BACKEND_STORAGE_POLICY_INDEX, "0");
        update.set_header("x-timestamp", ts.internal());
        self.decorate(&mut update, method, uri, headers);
        if op != "DELETE" {
            let Some(hosts) = header(headers, h::X_DELETE_AT_HOST) else {
                return;
            };
            match header(headers, h::X_DELETE_AT_CONTAINER) {
                Some(pc) if !pc.is_empty() && *pc != container => {
                    tracing::debug!(proxy = %pc, expected = %container, "X-Delete-At-Container differs");
                    match pc.trim().parse::<f64>() {
                        Ok(v) => container = upd::normalize_delete_at(v),
                        Err(_) => {
                            tracing::error!(value = %pc, "bad X-Delete-At-Container");
                        }
                    }
                }
                Some(pc) if !pc.is_empty() => {}
                _ => tracing::warn!(
                    "X-Delete-At-Container header must be specified for expiring objects background {op} to work properly. Making best guess as to the container name for now."
                ),
            }
            targets = match upd::delete_at_targets(
                &hosts,
                header(headers, h::X_DELETE_AT_PARTITION).as_deref(),
                header(headers, h::X_DELETE_AT_DEVICE).as_deref(),
            ) {
                Some(v) => v.into_iter().map(Some).collect(),
                None => vec![None],
            };
            update.set_header("x-size", "0");
            update.set_header("x-content-type", upd::X_DELETE_TYPE);
            update.set_header("x-etag", upd::EMPTY_ETAG);
            for (k, v) in extra {
                update.set_header(k, v.clone());
            }
        } else {
            let clean = header(headers, h::X_BACKEND_CLEAN_EXPIRING_OBJECT_QUEUE)
                .map(|v| is_true(&v))
                .unwrap_or(true);
            if !clean {
                return;
            }
            targets = vec![None];
        }
        update.container = container;
        update.obj = upd::expirer_task_obj(delete_at, &t.account, &t.container, &t.obj);
        let sender = self.update_sender(t);
        for target in targets {
            sender.send(update.clone(), target).await;
        }
    }
}

/// Sends one update, or saves it as an async pending on the object's
/// device when it cannot be delivered.
#[derive(Clone)]
struct UpdateSender {
    client: BackendClient,
    mgr: DiskFileManager,
    objdevice: String,
    policy: u32,
}

impl UpdateSender {
    /// Sends `update` to `target`, saving it as an async pending unless the
    /// container server took it; returns whether the target answered at
    /// all.
    async fn send(&self, mut update: ContainerUpdate, target: Option<UpdateTarget>) -> bool {
        let mut reached = false;
        update.set_header(
            "user-agent",
            format!("object-server {}", std::process::id()),
        );
        if let Some(target) =
            target.filter(|t| !t.host.is_empty() && !t.device.is_empty() && !t.partition.is_empty())
        {
            let path = update.request_path(&target.device, &target.partition);
            let method = Method::from_bytes(update.op.as_bytes()).unwrap_or(Method::PUT);
            match self
                .client
                .request(method, &target.host, &path, update.to_header_map(), empty())
                .await
            {
                Ok(resp) => {
                    reached = true;
                    let status = resp.status();
                    // Drain (bounded by the node timeout per chunk).
                    let _ = apus_http::body::collect_limited(resp.into_body(), 1 << 20).await;
                    if status.is_success() {
                        return true;
                    }
                    tracing::error!(
                        status = status.as_u16(),
                        host = %target.host,
                        device = %target.device,
                        "ERROR Container update failed (saving for async update later)"
                    );
                }
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        host = %target.host,
                        device = %target.device,
                        "ERROR container update failed (saving for async update later)"
                    )
                }
            }
        }
        self.save(update).await;
        reached
    }

    async fn save(&self, update: ContainerUpdate) {
        let Some(ts) = update
            .pending_timestamp()
            .and_then(|t| Timestamp::parse(t).ok())
        else {
            tracing::error!("container update without a timestamp; not saved");
            return;
        };
        let pending = AsyncUpdate {
            op: update.op,
            account: update.account,
            container: update.container,
            obj: update.obj,
            headers: update.headers,
            db_state: update.db_state,
            container_path: update.container_path,
            successes: Vec::new(),
        };
        let mgr = self.mgr.clone();
        let device = self.objdevice.clone();
        let policy = self.policy;
        if let Err(e) =
            blocking(move || mgr.write_async_pending(&device, policy, &pending, ts)).await
        {
            tracing::error!(error = %e, "could not save async pending");
        }
    }
}

/// `X-Object-Sysmeta-Container-Update-Override-*` and
/// `X-Backend-Container-Update-Override-*` replace the update's `X-*`
/// headers (sysmeta taking precedence).
fn apply_container_overrides(
    update: &mut ContainerUpdate,
    items: impl Iterator<Item = (String, String)>,
) {
    let items: Vec<(String, String)> = items.collect();
    for prefix in [
        h::X_BACKEND_CONTAINER_UPDATE_OVERRIDE_PREFIX,
        h::X_OBJECT_SYSMETA_CONTAINER_UPDATE_OVERRIDE_PREFIX,
    ] {
        for (k, v) in &items {
            let lower = k.to_ascii_lowercase();
            if let Some(rest) = lower.strip_prefix(prefix) {
                update.set_header(&format!("x-{rest}"), v.clone());
            }
        }
    }
}

/// Swift's `check_delete_headers` for a PUT: `X-Delete-After` becomes
/// `X-Delete-At`; either must be an integer in the future (unless
/// replicating). Returns the normalized `X-Delete-At` to store.
fn check_delete_headers(headers: &HeaderMap, ts: Timestamp) -> Result<Option<String>, Resp> {
    let now = ts.as_secs_f64();
    let mut delete_at: Option<String> = None;
    if let Some(v) = header(headers, h::X_DELETE_AFTER) {
        let Some(after) = py_int(&v) else {
            return Err(text_response(400, "Non-integer X-Delete-After"));
        };
        let at = upd::normalize_delete_at(now + after as f64);
        if at.parse::<f64>().unwrap_or(0.0) <= now {
            return Err(text_response(400, "X-Delete-After in past"));
        }
        delete_at = Some(at);
    }
    let raw = delete_at.or_else(|| header(headers, h::X_DELETE_AT).map(|v| v.into_owned()));
    if let Some(v) = raw {
        let Some(n) = py_int(&v) else {
            return Err(text_response(400, "Non-integer X-Delete-At"));
        };
        let at = upd::normalize_delete_at(n as f64);
        let at_n = at.parse::<f64>().unwrap_or(0.0);
        if at_n <= now && !header_true(headers, h::X_BACKEND_REPLICATION) {
            return Err(text_response(400, "X-Delete-At in past"));
        }
        return Ok(Some(at));
    }
    Ok(None)
}

/// Swift's `check_object_creation` on the body framing: the body's length
/// (`None` when chunked), or the error response.
fn body_size(headers: &HeaderMap) -> Result<Option<u64>, Resp> {
    let chunked = match header(headers, "transfer-encoding") {
        Some(te) => {
            let encs: Vec<&str> = te.split(',').collect();
            if encs.len() > 1 {
                return Err(text_response(
                        501,
                        "Unsupported Transfer-Coding header value specified in Transfer-Encoding header",
                    ));
            }
            if !encs[0].trim().eq_ignore_ascii_case("chunked") {
                return Err(text_response(400, "Invalid Transfer-Encoding header value"));
            }
            true
        }
        None => false,
    };
    let mut fsize: Option<u64> = None;
    if !chunked {
        if let Some(cl) = header(headers, "content-length") {
            match py_int(&cl) {
                Some(v) if v >= 0 => fsize = Some(v as u64),
                _ => return Err(text_response(400, "Invalid Content-Length header value")),
            }
        }
    }
    if fsize.is_some_and(|n| n > MAX_FILE_SIZE) {
        return Err(text_response(413, "Your request is too large."));
    }
    if fsize.is_none() && !chunked {
        return Err(text_response(411, "Missing Content-Length header."));
    }
    Ok(fsize)
}

fn check_metadata(headers: &HeaderMap) -> Result<(), Resp> {
    // Byte lengths, as Swift counts them: object metadata need not be UTF-8.
    constraints::check_metadata(
        headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
        "object",
    )
    .map_err(|e| text_response(e.status, &e.body))
}

/// The `swift_bytes` parameter of a content type (set by SLO manifests).
fn swift_bytes(content_type: &str) -> Option<String> {
    content_type
        .split(';')
        .skip(1)
        .map(str::trim)
        .find_map(|p| p.strip_prefix("swift_bytes=").map(str::to_string))
}

/// A 32-hex-digit multipart boundary, as swob makes.
fn new_boundary() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(Timestamp::now().ticks() as u128);
        out.push_str(&format!("{:016x}", hasher.finish()));
    }
    out
}

fn read_error(err: io::Error) -> io::Error {
    tracing::error!(error = %err, "object read failed");
    err
}

/// The read buffers of one whole-object GET, handed back as the body's
/// chunks are written out and dropped. Reading into recycled buffers
/// spares a copy per chunk (into a fresh allocation) and the page faults
/// of fresh memory, which at 1 MiB chunks were a fifth of a large GET's
/// CPU. The pool holds no more buffers than were in flight at once:
/// `queue_depth` plus the few hyper is writing.
#[derive(Default)]
struct ChunkPool(std::sync::Mutex<Vec<Vec<u8>>>);

impl ChunkPool {
    fn take(&self, size: usize) -> Vec<u8> {
        let recycled = self.0.lock().ok().and_then(|mut free| free.pop());
        match recycled {
            Some(buf) if buf.len() == size => buf,
            _ => vec![0; size],
        }
    }

    fn give_back(&self, buf: Vec<u8>) {
        if let Ok(mut free) = self.0.lock() {
            free.push(buf);
        }
    }
}

/// A chunk of a body in a [`ChunkPool`] buffer; returns it on drop.
struct PooledChunk {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<ChunkPool>,
}

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

/// Bodies of at most this many bytes (by their Content-Length) are
/// gathered in memory and written in the same blocking trip as the commit.
const SMALL_PUT_BODY: u64 = 64 * 1024;

/// The object a write at `ts` would replace, as a PUT or DELETE sees it
/// (an expired one too).
fn open_current(
    df: &apus_diskfile::DiskFile,
    ts: Timestamp,
) -> Result<apus_diskfile::OpenDiskFile, DiskFileError> {
    df.open(OpenOptions {
        open_expired: false,
        now: Some(ts.as_secs_f64()),
    })
}

fn if_none_match(headers: &HeaderMap) -> Option<apus_core::conditional::EtagList> {
    header(headers, "if-none-match").map(|v| apus_core::conditional::EtagList::parse(&v))
}

/// Whether a PUT at `ts` may replace what [`open_current`] found: the
/// current object's metadata (none when deleted or missing), or the
/// refusal: 412 when `if_none_match` matches it, 409 (naming the current
/// timestamp) when that is not older.
fn replaceable(
    opened: Result<apus_diskfile::OpenDiskFile, DiskFileError>,
    if_none_match: Option<&apus_core::conditional::EtagList>,
    ts: Timestamp,
    device: &str,
) -> Result<Option<Metadata>, Resp> {
    let (orig_metadata, orig_timestamp) = match opened {
        Ok(open) => (Some(open.metadata().clone()), open.data_timestamp()),
        Err(DiskFileError::Deleted { timestamp, .. }) => (None, timestamp),
        Err(DiskFileError::Expired { metadata, .. }) => {
            (None, metadata.timestamp().unwrap_or(Timestamp::ZERO))
        }
        Err(
            DiskFileError::NotFound
            | DiskFileError::Quarantined { .. }
            | DiskFileError::StateChanged,
        ) => (None, Timestamp::ZERO),
        Err(e) => return Err(disk_error_response(&e, device)),
    };
    if let (Some(inm), Some(orig)) = (if_none_match, &orig_metadata) {
        if inm.has_star() || orig.etag().is_some_and(|e| inm.contains(e)) {
            return Err(status_response(412));
        }
    }
    if orig_timestamp >= ts {
        let mut r = status_response(409);
        set_header(
            r.headers_mut(),
            h::X_BACKEND_TIMESTAMP,
            &orig_timestamp.internal(),
        );
        return Err(r);
    }
    Ok(orig_metadata)
}

fn normalized_etag(sent: &str) -> String {
    apus_core::conditional::normalize_etag(sent.trim()).to_ascii_lowercase()
}

/// The ETag and body CRC-32 a proxy that hashed the body sends as
/// trailers; either missing or malformed is a 400.
fn proxy_digest(trailers: &HeaderMap) -> Result<(String, u32), Resp> {
    let etag = header(trailers, "etag")
        .map(|e| normalized_etag(&e))
        .filter(|e| e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit()));
    let crc = header(trailers, h::X_BACKEND_BODY_CRC32)
        .filter(|c| c.len() == 8 && c.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|c| u32::from_str_radix(&c, 16).ok());
    match (etag, crc) {
        (Some(etag), Some(crc)) => Ok((etag, crc)),
        _ => Err(text_response(
            400,
            "X-Backend-Etag-Trailer needs Etag and X-Backend-Body-Crc32 trailers",
        )),
    }
}

/// Where a PUT's body goes as it arrives.
enum BodySink {
    /// Gathered, to be written with the commit (small bodies).
    Memory(Vec<Bytes>),
    /// Streamed to a writer thread, which hands the writer back at the end.
    Thread(
        tokio::sync::mpsc::Sender<Bytes>,
        tokio::task::JoinHandle<Result<DiskFileWriter, DiskFileError>>,
    ),
}

/// Most a whole-object read hands on at once.
const LARGE_READ_CHUNK: usize = 1 << 20;

/// The read size of a whole-object GET: `disk_chunk_size`, or for an object
/// of many such chunks up to [`LARGE_READ_CHUNK`]. Every chunk is a hop
/// from the reading thread to the connection's task and a wake-up of
/// each side; at 64 KiB those hand-offs, not the copies, were most of a
/// 1 GiB GET's time. Memory stays bounded: `queue_depth` chunks per body.
fn whole_read_chunk(disk_chunk_size: usize, size: u64) -> usize {
    let per_eighth = usize::try_from(size / 8).unwrap_or(usize::MAX);
    disk_chunk_size.max(per_eighth.min(LARGE_READ_CHUNK))
}

/// Streams the whole object; the reader fails its last read when the data
/// does not match its ETag, which aborts the body.
fn stream_full(mut reader: DiskFileReader, chunk: usize, tx: BodySender) {
    let pool = Arc::new(ChunkPool::default());
    loop {
        let mut buf = pool.take(chunk);
        match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let chunk = Bytes::from_owner(PooledChunk {
                    buf,
                    len: n,
                    pool: Arc::clone(&pool),
                });
                if tx.blocking_send(chunk).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return tx.blocking_abort(read_error(e)),
        }
    }
}

/// Streams byte ranges, framed as `multipart/byteranges` when a boundary
/// and content type are given.
fn stream_ranges(
    mut reader: DiskFileReader,
    ranges: &[(u64, u64)],
    multipart: Option<(&str, &str)>,
    size: u64,
    chunk: usize,
    tx: BodySender,
) {
    let mut buf = vec![0u8; chunk];
    for &(start, end) in ranges {
        if let Some((boundary, ctype)) = multipart {
            let head = multipart_part_header(boundary, ctype, start, end, size);
            if tx.blocking_send(Bytes::from(head)).is_err() {
                return;
            }
        }
        if let Err(e) = reader.seek(SeekFrom::Start(start)) {
            return tx.blocking_abort(read_error(e));
        }
        let mut left = end - start;
        while left > 0 {
            let want = (left as usize).min(buf.len());
            match reader.read(&mut buf[..want]) {
                Ok(0) => {
                    return tx.blocking_abort(read_error(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "object shorter than its metadata says",
                    )))
                }
                Ok(n) => {
                    left -= n as u64;
                    if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return tx.blocking_abort(read_error(e)),
            }
        }
        if multipart.is_some() && tx.blocking_send(Bytes::from_static(b"\r\n")).is_err() {
            return;
        }
    }
    if let Some((boundary, _)) = multipart {
        let _ = tx.blocking_send(Bytes::from(multipart_terminator(boundary)));
    }
}
