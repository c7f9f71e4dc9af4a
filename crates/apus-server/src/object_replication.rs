//! The object server's `REPLICATE` verb: suffix hashes for replicators,
//! and apus's missing check.
//!
//! - `REPLICATE /<device>/<partition>` answers 200 with the partition's
//!   suffix hashes as a pickled dict `{suffix: md5 hex or None}` (protocol
//!   2), recomputing invalidated suffixes and reclaiming tombstones older
//!   than `reclaim_age` on the way, exactly as Swift's object server does.
//! - `REPLICATE /<device>/<partition>/<suffix>[-<suffix>...]` marks those
//!   suffixes for recalculation at the next hash request and answers 200
//!   with a pickled `None`. This is Swift 2.38's behaviour (older Swift
//!   rehashed at once and answered with the dict): senders call it after
//!   pushing, and the next pass's hash request does the work.
//! - `REPLICATE /<device>/<partition>` with `X-Apus-Missing-Check: true`
//!   (an apus extension, see `apus_proto::replication`) takes
//!   missing-check lines as its body and answers 200 with the wanted
//!   lines: what this device lacks of each offered object.
//!
//! A missing or unmounted device is 507, an unknown storage policy 503.

// Handlers return early with a ready response; boxing it buys nothing.
#![allow(clippy::result_large_err)]

use apus_diskfile::hashes::get_hashes;
use apus_diskfile::pickle::{self, Value};
use apus_diskfile::{layout, DiskFileError, DiskFileManager, EcPolicy, FragSelect, OpenOptions};
use apus_http::{full, Body};
use apus_proto::ec as pec;
use apus_proto::headers as h;
use apus_proto::replication::{self as repl, LocalState, MAX_MISSING_CHECK_BODY};
use apus_proto::split_path;
use http::{HeaderMap, HeaderValue, Request, Response};

use crate::common::{
    header, header_true, insufficient_storage, py_int, status_response, text_response,
};
use crate::object::ObjectServerConfig;

type Resp = Response<Body>;

/// The policy a request names (`X-Backend-Storage-Policy-Index`, 0 when
/// absent); 503 for one the cluster does not have.
fn policy_of(headers: &HeaderMap, policies: &[u32]) -> Result<u32, Resp> {
    let raw = header(headers, h::X_BACKEND_STORAGE_POLICY_INDEX);
    let policy = match &raw {
        None => Some(0),
        Some(v) => v.trim().parse::<u32>().ok(),
    };
    match policy {
        Some(p) if policies.contains(&p) => Ok(p),
        _ => Err(text_response(
            503,
            &format!("No policy with index {}", raw.unwrap_or_default()),
        )),
    }
}

fn pickle_response(value: &Value) -> Resp {
    let body = pickle::dumps(value);
    let len = body.len();
    let mut resp = Response::new(full(body));
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DiskFileError> + Send + 'static,
) -> Result<T, DiskFileError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(DiskFileError::Io {
            path: Default::default(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

fn disk_error(err: &DiskFileError, device: &str) -> Resp {
    match err.http_status() {
        507 => insufficient_storage(device),
        _ => status_response(500),
    }
}

/// Serves a `REPLICATE` request whose path is `decoded` (percent-decoded).
pub(crate) async fn replicate(
    mgr: &DiskFileManager,
    conf: &ObjectServerConfig,
    decoded: &str,
    req: Request<Body>,
) -> Resp {
    let segs = match split_path(decoded, 2, 3, true) {
        Ok(s) => s,
        Err(e) => return text_response(400, &e.to_string()),
    };
    let mut it = segs.into_iter().map(Option::unwrap_or_default);
    let (device, partition, suffix_part) = (
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
        it.next().unwrap_or_default(),
    );
    if let Err(e) = apus_proto::path::validate_device_partition(&device, &partition) {
        return text_response(400, &e.to_string());
    }
    let Ok(partition) = partition.parse::<u32>() else {
        return text_response(400, &format!("Invalid partition: {partition}"));
    };
    let policy = match policy_of(req.headers(), &conf.policies) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let device_path = match mgr.device_path(&device) {
        Ok(p) => p,
        Err(e) => return disk_error(&e, &device),
    };
    let part_dir = layout::partition_path(&device_path, policy, partition);

    if header_true(req.headers(), repl::X_APUS_MISSING_CHECK) {
        if !suffix_part.is_empty() {
            return text_response(400, "A missing check names no suffixes");
        }
        let ec = match conf.ec_policies.iter().find(|p| p.index == policy) {
            None => None,
            Some(ec) => {
                let named = header(req.headers(), pec::X_BACKEND_SSYNC_FRAG_INDEX)
                    .and_then(|v| pec::parse_frag_index(&v, ec.width()));
                match named {
                    Some(i) => Some((*ec, i)),
                    None => return text_response(
                        400,
                        "An erasure-coded missing check names a valid X-Backend-Ssync-Frag-Index",
                    ),
                }
            }
        };
        return missing_check(mgr, conf, device, partition, policy, ec, req).await;
    }

    if !suffix_part.is_empty() {
        // Swift 2.38: only mark them; the next hash request rehashes them.
        let suffixes: Vec<String> = suffix_part
            .split('-')
            .filter(|s| layout::valid_suffix(s))
            .map(str::to_string)
            .collect();
        let result = blocking(move || {
            if !part_dir.is_dir() {
                return Ok(());
            }
            for suffix in &suffixes {
                apus_diskfile::invalidate_hash(&part_dir, suffix)?;
            }
            Ok(())
        })
        .await;
        return match result {
            Ok(()) => pickle_response(&Value::None),
            Err(e) => disk_error(&e, &device),
        };
    }

    let reclaim_age = conf.diskfile.reclaim_age;
    if let Some(ec) = conf.ec_policies.iter().find(|p| p.index == policy).copied() {
        // Per-fragment-index hashes: the replicated hashing would rewrite
        // this partition's hashes.pkl in the wrong shape.
        let commit_window = conf.diskfile.commit_window;
        return match blocking(move || {
            apus_diskfile::get_hashes_ec(&part_dir, &[], reclaim_age, commit_window, &ec)
        })
        .await
        {
            Ok(hashes) => {
                use apus_diskfile::hashes::SuffixHashValue;
                let items = hashes
                    .into_iter()
                    .map(|(suffix, hash)| {
                        let v = hash.map(|h| h.to_pickle()).unwrap_or(Value::None);
                        (Value::Str(suffix), v)
                    })
                    .collect();
                pickle_response(&Value::Dict(items))
            }
            Err(e) => {
                tracing::error!(target: "object-server", error = %e, "get_hashes failed");
                disk_error(&e, &device)
            }
        };
    }
    match blocking(move || get_hashes(&part_dir, &[], reclaim_age, policy)).await {
        Ok(hashes) => {
            let items = hashes
                .into_iter()
                .map(|(suffix, hash)| {
                    let v = match hash {
                        Some(h) => Value::Str(h),
                        None => Value::None,
                    };
                    (Value::Str(suffix), v)
                })
                .collect();
            pickle_response(&Value::Dict(items))
        }
        Err(e) => {
            tracing::error!(target: "object-server", error = %e, "get_hashes failed");
            disk_error(&e, &device)
        }
    }
}

/// Reads the offered lines, compares each with this device's copy (in an
/// EC policy, its fragment of the offered index) and answers with the
/// wanted lines.
async fn missing_check(
    mgr: &DiskFileManager,
    conf: &ObjectServerConfig,
    device: String,
    partition: u32,
    policy: u32,
    ec: Option<(EcPolicy, u32)>,
    req: Request<Body>,
) -> Resp {
    if let Some(cl) = header(req.headers(), "content-length") {
        match py_int(&cl) {
            Some(n) if n >= 0 && n as u64 <= MAX_MISSING_CHECK_BODY as u64 => {}
            Some(n) if n >= 0 => return text_response(413, "Missing check too large"),
            _ => return text_response(400, "Invalid Content-Length header value"),
        }
    }
    let collected = tokio::time::timeout(
        conf.client_timeout,
        apus_http::body::collect_limited(req.into_body(), MAX_MISSING_CHECK_BODY),
    )
    .await;
    let body = match collected {
        Err(_) => return status_response(408),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            return text_response(413, "Missing check too large")
        }
        Ok(Err(_)) => return status_response(499),
        Ok(Ok(b)) => b,
    };
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return text_response(400, "Missing check is not UTF-8");
    };
    if let Err(e) = repl::parse_missing_check(&text) {
        return text_response(400, &e.to_string());
    }
    let mgr = mgr.clone();
    let dev = device.clone();
    let result = blocking(move || {
        let offers = repl::parse_missing_check(&text)
            .map_err(|e| DiskFileError::InvalidMetadata(e.to_string()))?;
        let mut out = String::new();
        for offer in &offers {
            let local = match ec {
                Some((ec, frag_index)) => {
                    ec_local_state(&mgr, &dev, partition, &ec, frag_index, offer)?
                }
                None => {
                    let df = mgr.diskfile_from_hash(&dev, partition, offer.hash, policy)?;
                    local_state(df.open(OpenOptions {
                        open_expired: true,
                        now: None,
                    }))?
                }
            };
            if let Some(want) = repl::wanted(offer, local) {
                out.push_str(&repl::encode_wanted(offer.hash, want));
                out.push('\n');
            }
        }
        Ok(out)
    })
    .await;
    match result {
        Ok(out) => {
            let len = out.len();
            let mut resp = Response::new(full(out));
            let headers = resp.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
            resp
        }
        Err(e) => disk_error(&e, &device),
    }
}

/// What a receiver compares from opening its copy: a data file, a
/// tombstone, or nothing usable. Anything unreadable (or just quarantined)
/// is as good as missing: the sender's copy is taken.
fn local_state(
    opened: Result<apus_diskfile::OpenDiskFile, DiskFileError>,
) -> Result<LocalState, DiskFileError> {
    match opened {
        Ok(open) => Ok(LocalState::Present {
            ts_data: open.data_timestamp(),
            ts_meta: open.timestamp(),
            ts_ctype: open.content_type_timestamp(),
        }),
        Err(DiskFileError::Deleted { timestamp, .. }) => Ok(LocalState::Deleted(timestamp)),
        Err(e @ DiskFileError::DeviceUnavailable { .. }) => Err(e),
        Err(_) => Ok(LocalState::Missing),
    }
}

/// The receiver's state of its fragment `frag_index` of an offered EC
/// object, as Swift's ssync receiver decides it: the durable fragment of
/// that index (or the tombstone); and when it holds that index at the
/// offered timestamp only non-durable, it makes it durable if the sender's
/// is (once), or else does not want it again.
fn ec_local_state(
    mgr: &DiskFileManager,
    device: &str,
    partition: u32,
    ec: &EcPolicy,
    frag_index: u32,
    offer: &apus_proto::replication::MissingLine<'_>,
) -> Result<LocalState, DiskFileError> {
    let df = match mgr.ec_diskfile_from_hash(
        device,
        partition,
        offer.hash,
        ec,
        FragSelect::index(frag_index),
    ) {
        Ok(df) => df,
        Err(e @ DiskFileError::DeviceUnavailable { .. }) => return Err(e),
        Err(_) => return Ok(LocalState::Missing),
    };
    let open = |df: &apus_diskfile::EcDiskFile| {
        local_state(
            df.open(OpenOptions {
                open_expired: true,
                now: None,
            })
            .map(|o| o.into_inner()),
        )
    };
    let local = open(&df)?;
    let Ok(files) = df.ondisk_files() else {
        return Ok(local);
    };
    let newer_than_durable = files.durable_timestamp().is_none_or(|d| d < offer.ts_data);
    let holds_offered = files
        .fragments()
        .iter()
        .any(|(ts, indexes)| *ts == offer.ts_data && indexes.contains(&frag_index));
    if !(newer_than_durable && holds_offered) {
        return Ok(local);
    }
    if offer.durable {
        // Only the durable mark is missing: add it rather than take the
        // whole fragment again.
        match df.commit(offer.ts_data, frag_index) {
            Ok(_) => open(&df),
            Err(e) => {
                tracing::warn!(target: "object-server", error = %e, "cannot make a fragment durable");
                Ok(local)
            }
        }
    } else {
        Ok(LocalState::NonDurable(offer.ts_data))
    }
}
