//! `REPLICATE /<device>/<partition>/<hash>` for the account and container
//! servers (Swift's `ReplicatorRpc`), written once over
//! [`ReplicaBroker`]: the `sync`, `merge_items` and `merge_syncs` RPCs and
//! apus's whole-database copy, as `apus_proto::db_replication` defines
//! them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use apus_db::{parse_metadata_json, BrokerOptions, DbError, PolicyState, ReplicaBroker, SyncPoint};
use apus_proto::db_replication::{
    valid_db_id, ReplicateOp, SyncArgs, SyncReply, COMPLETE_COPY, COPY_SOURCE_ID_HEADER,
    MAX_COPY_BYTES, MAX_RPC_BODY, REPLICATE_MODE_HEADER,
};
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use crate::db_common::{
    blocking, bytes_response, check_drive, db_path, decode_path, has_free_space, header_str,
    quarantine_db, split_path, status_response, DbBody, DbKind, DbServerConfig, HttpError,
    HttpResult,
};

/// The REPLICATE method.
pub fn is_replicate(method: &Method) -> bool {
    method.as_str() == "REPLICATE"
}

/// The database a REPLICATE request names.
struct Target {
    device: String,
    hash: String,
    db: PathBuf,
}

fn parse_target(cfg: &DbServerConfig, kind: DbKind, path: &str) -> HttpResult<Target> {
    let segs = split_path(path, 3, 3, false).map_err(HttpError::bad_request)?;
    let mut it = segs.into_iter().map(Option::unwrap_or_default);
    let (device, partition, hash) = (
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
    );
    if device.is_empty() || device == "." || device == ".." {
        return Err(HttpError::bad_request(format!("Invalid device: {device}")));
    }
    if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::bad_request(format!(
            "Invalid partition: {partition}"
        )));
    }
    // The hash names directories: only Swift's 32 hex digits.
    if hash.len() != 32 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HttpError::bad_request("Invalid hash"));
    }
    let db = db_path(&cfg.devices, &device, kind, &partition, &hash);
    Ok(Target { device, hash, db })
}

/// Answers a REPLICATE request for databases of type `B`.
pub async fn replicate<B: ReplicaBroker>(
    cfg: &DbServerConfig,
    kind: DbKind,
    parts: &http::request::Parts,
    body: apus_http::Body,
) -> Response<DbBody> {
    let result = match decode_path(parts.uri.path(), "Invalid UTF8 or contains NULL") {
        Ok(path) => dispatch::<B>(cfg, kind, &path, &parts.headers, body).await,
        Err(e) => Err(e),
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => e.into_response(&parts.method),
    };
    tracing::debug!(path = %parts.uri.path(), status = resp.status().as_u16(), "replicate request");
    resp
}

async fn dispatch<B: ReplicaBroker>(
    cfg: &DbServerConfig,
    kind: DbKind,
    path: &str,
    headers: &HeaderMap,
    body: apus_http::Body,
) -> HttpResult<Response<DbBody>> {
    let target = parse_target(cfg, kind, path)?;
    let (devices, device, mount_check, reserve) = (
        cfg.devices.clone(),
        target.device.clone(),
        cfg.mount_check,
        cfg.fallocate_reserve_percent,
    );
    blocking(move || {
        let dev = check_drive(&devices, &device, mount_check)
            .ok_or_else(|| HttpError::insufficient_storage(&device))?;
        if !has_free_space(&dev, reserve) {
            return Err(HttpError::insufficient_storage(&device));
        }
        Ok(())
    })
    .await?;
    match header_str(headers, REPLICATE_MODE_HEADER) {
        None => {}
        Some(COMPLETE_COPY) => return complete_copy::<B>(cfg, target, headers, body).await,
        Some(other) => {
            return Err(HttpError::bad_request(format!(
                "Unknown {REPLICATE_MODE_HEADER}: {other}"
            )))
        }
    }
    let declared = header_str(headers, CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_RPC_BODY as u64) {
        return Err(HttpError::new(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let raw = apus_http::body::collect_limited(body, MAX_RPC_BODY)
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                HttpError::new(StatusCode::PAYLOAD_TOO_LARGE)
            } else {
                HttpError::bad_request(format!("reading the body: {e}"))
            }
        })?;
    let op =
        ReplicateOp::<B::Item>::parse(&raw).map_err(|e| HttpError::bad_request(e.to_string()))?;
    let db = target.db;
    blocking(move || {
        if !db.exists() {
            return Err(HttpError::new(StatusCode::NOT_FOUND));
        }
        let run = || -> Result<Response<DbBody>, DbError> {
            let broker = B::open(&db, BrokerOptions::default())?;
            match op {
                ReplicateOp::Sync(args) => sync(&broker, args),
                ReplicateOp::MergeItems { items, source_id } => {
                    broker.merge_items(items, Some(&source_id))?;
                    Ok(status_response(StatusCode::ACCEPTED, &Method::POST, None))
                }
                ReplicateOp::MergeSyncs(points) => {
                    let points: Vec<SyncPoint> = points
                        .into_iter()
                        .map(|p| SyncPoint {
                            remote_id: p.remote_id,
                            sync_point: p.sync_point,
                            updated_at: None,
                        })
                        .collect();
                    broker.merge_syncs(&points, true)?;
                    Ok(status_response(StatusCode::ACCEPTED, &Method::POST, None))
                }
            }
        };
        match run() {
            Ok(r) => Ok(r),
            // A damaged copy is moved aside and reported missing, so the
            // peer sends a whole copy (Swift's behaviour for `sync`).
            Err(DbError::Corrupt { path, reason, .. }) => {
                match quarantine_db(&path) {
                    Ok(to) => tracing::error!(db = %path.display(), to = %to.display(), reason, "quarantined a damaged database"),
                    Err(e) => tracing::error!(db = %path.display(), reason, error = %e, "damaged database could not be quarantined"),
                }
                Err(HttpError::new(StatusCode::NOT_FOUND))
            }
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// Swift's `_handle_sync_request`: settle the policy index (containers),
/// merge the sender's metadata and status timestamps, and answer with our
/// replication info and how far we have the sender's rows.
fn sync<B: ReplicaBroker>(broker: &B, args: SyncArgs) -> Result<Response<DbBody>, DbError> {
    let mut info = broker.get_replication_info()?;
    if let Some(p) = &args.policy {
        let remote = PolicyState {
            put_timestamp: args.put_timestamp,
            delete_timestamp: args.delete_timestamp,
            status_changed_at: p.status_changed_at,
            count: p.count,
            storage_policy_index: p.storage_policy_index,
        };
        if broker.adopt_remote_policy(&info, &remote)? {
            info = broker.get_replication_info()?;
        }
    }
    if !args.metadata.is_empty() {
        match parse_metadata_json(&args.metadata) {
            Ok(md) => broker.update_metadata(&md, false)?,
            Err(e) => {
                tracing::warn!(db = %broker.path().display(), error = %e, "peer sent unreadable metadata")
            }
        }
    }
    if (info.created_at, info.put_timestamp, info.delete_timestamp)
        != (args.created_at, args.put_timestamp, args.delete_timestamp)
    {
        broker.merge_timestamps(args.created_at, args.put_timestamp, args.delete_timestamp)?;
    }
    let mut point = broker.get_sync(&args.id, true)?;
    if args.hash == info.hash && point < args.max_row {
        broker.merge_syncs(
            &[SyncPoint {
                remote_id: args.id.clone(),
                sync_point: args.max_row,
                updated_at: None,
            }],
            true,
        )?;
        point = args.max_row;
    }
    let is_container = B::SERVER_TYPE == "container";
    let reply = SyncReply {
        account: info.account,
        container: is_container.then_some(info.container),
        created_at: info.created_at,
        put_timestamp: info.put_timestamp,
        delete_timestamp: info.delete_timestamp,
        status_changed_at: info.status_changed_at,
        count: info.count,
        object_count: info.object_count,
        bytes_used: info.bytes_used,
        hash: info.hash,
        id: info.id,
        metadata: info.metadata,
        max_row: info.max_row,
        point,
        storage_policy_index: is_container.then_some(info.storage_policy_index),
        shard_max_row: is_container.then_some(info.shard_max_row),
    };
    let body = serde_json::to_vec(&reply).map_err(|e| DbError::Invalid(e.to_string()))?;
    let mut resp = bytes_response(StatusCode::OK, Bytes::from(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}

static COPY_SEQ: AtomicU64 = AtomicU64::new(0);

/// A name for an incoming copy beside its final place; `.tmp` so the
/// replicator's tmp cleanup removes any left by a crash.
fn copy_tmp_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "copy-{nanos:x}-{:x}-{:x}.tmp",
        std::process::id(),
        COPY_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the filesystem holding `path` has room for `bytes` more and
/// still keeps the reserve.
fn has_room(path: &Path, bytes: u64, reserve_percent: f64) -> bool {
    match rustix::fs::statvfs(path) {
        Ok(st) => {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            let total = st.f_blocks.saturating_mul(st.f_frsize);
            let reserve = (total as f64 * reserve_percent.max(0.0) / 100.0) as u64;
            free.saturating_sub(reserve) > bytes
        }
        Err(_) => true,
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// apus's whole-database copy: stream the body to a temporary file beside
/// the database's place, check it, re-id it and link it in unless a
/// database appeared there meanwhile.
async fn complete_copy<B: ReplicaBroker>(
    cfg: &DbServerConfig,
    target: Target,
    headers: &HeaderMap,
    mut body: apus_http::Body,
) -> HttpResult<Response<DbBody>> {
    let source_id = header_str(headers, COPY_SOURCE_ID_HEADER)
        .filter(|id| valid_db_id(id))
        .ok_or_else(|| {
            HttpError::bad_request(format!("Missing or invalid {COPY_SOURCE_ID_HEADER}"))
        })?
        .to_string();
    let length = header_str(headers, CONTENT_LENGTH.as_str())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| HttpError::new(StatusCode::LENGTH_REQUIRED))?;
    if length > MAX_COPY_BYTES {
        return Err(HttpError::new(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let db = target.db.clone();
    let dir = db
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR))?;
    let tmp = dir.join(copy_tmp_name());
    {
        let (db, dir, device, reserve) = (
            db.clone(),
            dir.clone(),
            target.device.clone(),
            cfg.fallocate_reserve_percent,
        );
        let dev_path = cfg.devices.join(&target.device);
        blocking(move || {
            if db.exists() {
                return Err(HttpError::new(StatusCode::CONFLICT));
            }
            if !has_room(&dev_path, length, reserve) {
                return Err(HttpError::insufficient_storage(&device));
            }
            std::fs::create_dir_all(&dir).map_err(|e| {
                tracing::error!(dir = %dir.display(), error = %e, "creating a database directory");
                HttpError::new(StatusCode::INTERNAL_SERVER_ERROR)
            })
        })
        .await?;
    }
    let received = receive_file(&tmp, length, &mut body).await;
    let result = match received {
        Ok(()) => {
            let (hash_cfg, want_hash, tmp2, db2) = (
                cfg.hash.clone(),
                target.hash.clone(),
                tmp.clone(),
                db.clone(),
            );
            blocking(move || install_copy::<B>(&hash_cfg, &want_hash, &tmp2, &db2, &source_id))
                .await
        }
        Err(e) => Err(e),
    };
    let (tmp2, dir2) = (tmp.clone(), dir.clone());
    let _ = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_file(&tmp2);
        // Leaves no empty hash directory behind a refused copy.
        let _ = std::fs::remove_dir(&dir2);
    })
    .await;
    result?;
    Ok(status_response(StatusCode::CREATED, &Method::PUT, None))
}

/// Writes exactly `length` body bytes to `tmp` and syncs it.
async fn receive_file(tmp: &Path, length: u64, body: &mut apus_http::Body) -> HttpResult<()> {
    let io_err = |e: std::io::Error| {
        tracing::error!(error = %e, "receiving a database copy");
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR)
    };
    let open = || async {
        tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .await
    };
    let mut file = match open().await {
        // A refused concurrent copy may have just removed the empty
        // directory; make it again, once.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = tmp.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(io_err)?;
            }
            open().await.map_err(io_err)?
        }
        other => other.map_err(io_err)?,
    };
    let mut got: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| HttpError::bad_request(format!("reading the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            got = got.saturating_add(data.len() as u64);
            if got > length {
                return Err(HttpError::bad_request("body longer than Content-Length"));
            }
            file.write_all(&data).await.map_err(io_err)?;
        }
    }
    if got != length {
        return Err(HttpError::bad_request("body shorter than Content-Length"));
    }
    file.sync_all().await.map_err(io_err)?;
    Ok(())
}

/// Checks a received copy and links it into place. Blocking.
fn install_copy<B: ReplicaBroker>(
    hash_cfg: &apus_core::HashConfig,
    want_hash: &str,
    tmp: &Path,
    db: &Path,
    source_id: &str,
) -> HttpResult<()> {
    let refuse = |why: String| {
        tracing::warn!(db = %db.display(), why, "refused a database copy");
        HttpError::bad_request(format!("Invalid database copy: {why}"))
    };
    {
        let broker = B::open(tmp, BrokerOptions::default()).map_err(|e| refuse(e.to_string()))?;
        broker.quick_check().map_err(|e| refuse(e.to_string()))?;
        let (account, container) = broker.names().map_err(|e| refuse(e.to_string()))?;
        let hash = hash_cfg.hash_path(&account, container.as_deref(), None);
        if !hash.eq_ignore_ascii_case(want_hash) {
            return Err(refuse(format!("it belongs under {hash}")));
        }
        broker.newid(source_id).map_err(|e| refuse(e.to_string()))?;
    }
    let io_err = |e: std::io::Error| {
        tracing::error!(db = %db.display(), error = %e, "installing a database copy");
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR)
    };
    // A hard link never replaces: a database created meanwhile wins.
    match std::fs::hard_link(tmp, db) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(HttpError::new(StatusCode::CONFLICT))
        }
        Err(e) => return Err(io_err(e)),
    }
    std::fs::remove_file(tmp).map_err(io_err)?;
    // Make the new name and any directories created for it durable.
    for dir in db.ancestors().skip(1).take(4) {
        fsync_dir(dir).map_err(io_err)?;
    }
    Ok(())
}
