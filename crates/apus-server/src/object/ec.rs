//! Erasure-coded policies in the object server: fragment PUT, commit and
//! GET/HEAD (POST and DELETE share the replicated code over a disk file
//! that follows the EC rules). The protocol is described in
//! [`apus_proto::ec`] and in the object server's header.

use apus_diskfile::layout::make_ec_data_filename;
use apus_diskfile::{EcDiskFile, FragPref};
use apus_proto::ec::{self as pec, parse_frag_index, parse_fragment_preferences};

use super::*;

use apus_proto::ec::{X_BACKEND_NO_COMMIT, X_BACKEND_SSYNC_FRAG_INDEX};

fn frag_index_header(headers: &HeaderMap, name: &str, ec: &EcPolicy) -> Result<Option<u32>, Resp> {
    match header(headers, name) {
        None => Ok(None),
        Some(v) => match parse_frag_index(&v, ec.width()) {
            Some(i) => Ok(Some(i)),
            None => Err(text_response(400, &format!("Invalid {}", title_case(name)))),
        },
    }
}

impl ObjectServer {
    pub(super) fn ec_diskfile(
        &self,
        t: &Target,
        ec: &EcPolicy,
        select: FragSelect,
    ) -> Result<EcDiskFile, Resp> {
        self.mgr
            .ec_diskfile(
                &t.device,
                t.partition,
                &t.account,
                &t.container,
                &t.obj,
                ec,
                select,
            )
            .map_err(|e| disk_error_response(&e, &t.device))
    }

    // ---- fragment PUT and commit ------------------------------------------

    pub(super) async fn ec_put(&self, t: Target, ec: EcPolicy, req: Request<Body>) -> Resp {
        let (parts, body) = req.into_parts();
        let headers = &parts.headers;
        let ts = match valid_timestamp(headers) {
            Ok(ts) => ts,
            Err(r) => return r,
        };
        let frag_index = match frag_index_header(headers, pec::X_OBJECT_SYSMETA_EC_FRAG_INDEX, &ec)
        {
            Ok(Some(i)) => i,
            Ok(None) => return text_response(400, "Missing X-Object-Sysmeta-Ec-Frag-Index"),
            Err(r) => return r,
        };
        if header_true(headers, pec::X_BACKEND_EC_COMMIT) {
            let has_body = headers.contains_key("transfer-encoding")
                || header(headers, "content-length")
                    .is_some_and(|v| py_int(&v).is_none_or(|n| n != 0));
            if has_body {
                return text_response(400, "A fragment commit has no body");
            }
            drop(body);
            return self.ec_commit(t, ec, ts, frag_index, &parts).await;
        }
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

        // What is there now: the durable object, as Swift's PUT checks, or
        // only the named index when ssync (or a handoff's writer) names one.
        let select = match frag_index_header(headers, X_BACKEND_SSYNC_FRAG_INDEX, &ec) {
            Ok(Some(i)) => FragSelect::index(i),
            Ok(None) => FragSelect::any(),
            Err(r) => return r,
        };
        let df = match self.ec_diskfile(&t, &ec, select) {
            Ok(df) => df.as_diskfile().clone(),
            Err(r) => return r,
        };
        let edf = match self.ec_diskfile(&t, &ec, FragSelect::index(frag_index)) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let writer = match self
            .check_replaceable(&t, df, headers, ts, move || edf.create(fsize))
            .await
        {
            Ok((_, writer)) => writer,
            Err(r) => return r,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(self.conf.queue_depth.max(1));
        let write_task = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            while let Some(chunk) = rx.blocking_recv() {
                writer.write(&chunk)?;
            }
            Ok::<_, DiskFileError>(writer)
        });
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
            match frame.into_data() {
                Ok(data) => {
                    received += data.len() as u64;
                    if tx.send(data).await.is_err() {
                        break;
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        trailers.extend(t);
                    }
                }
            }
        }
        drop(tx);
        let writer = match write_task.await {
            Ok(Ok(w)) => w,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "fragment archive write failed");
                return disk_error_response(&e, &t.device);
            }
            Err(_) => return status_response(500),
        };
        let discard = |writer| async move {
            let _ = tokio::task::spawn_blocking(move || drop(writer)).await;
        };
        if let Some(status) = failure {
            discard(writer).await;
            return status_response(status);
        }
        if fsize.is_some_and(|n| n != received) {
            discard(writer).await;
            return status_response(499);
        }

        let etag = writer.etag();
        let mut metadata = Metadata::new();
        metadata.insert("X-Timestamp", ts.internal());
        metadata.insert("Content-Type", content_type);
        metadata.insert("Content-Length", writer.bytes_written().to_string());
        metadata.insert("ETag", etag.clone());
        self.request_metadata(headers, true, &mut metadata);
        if let Some(d) = &delete_at {
            metadata.insert("X-Delete-At", d.clone());
        }
        // Late metadata: the trailers, over what the head said.
        if let Err(r) = apply_trailers(&trailers, frag_index, &mut metadata) {
            discard(writer).await;
            return r;
        }
        metadata.insert("X-Object-Sysmeta-Ec-Frag-Index", frag_index.to_string());
        if let Some(v) = metadata.get("X-Object-Sysmeta-Ec-Content-Length") {
            if py_int(v).is_none_or(|n| n < 0) {
                discard(writer).await;
                return text_response(400, "Invalid X-Object-Sysmeta-Ec-Content-Length");
            }
        }
        let sent = header(&trailers, "etag").or_else(|| header(headers, "etag"));
        if let Some(sent) = sent {
            let sent = apus_core::conditional::normalize_etag(sent.trim()).to_ascii_lowercase();
            if !sent.is_empty() && sent != etag {
                discard(writer).await;
                return status_response(422);
            }
        }
        let put = blocking(move || {
            writer.put_observed(metadata, |stage| {
                failpoint::hit(match stage {
                    PutStage::BeforeFsync => failpoint::PUT_BEFORE_FSYNC,
                    PutStage::BeforeRename => failpoint::PUT_BEFORE_RENAME,
                })
            })
        })
        .await;
        let put = match put {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "fragment archive put failed");
                return disk_error_response(&e, &t.device);
            }
        };
        // A replicated fragment (reverted or rebuilt) is durable at once
        // unless it was not durable where it came from; it updates no
        // container. A proxy's fragment waits for its commit.
        let durable = header_true(headers, h::X_BACKEND_REPLICATION)
            && !header_true(headers, X_BACKEND_NO_COMMIT);
        if durable {
            if let Err(e) = blocking(move || put.commit()).await {
                tracing::error!(error = %e, "replicated fragment commit failed");
                return disk_error_response(&e, &t.device);
            }
        }
        let mut resp = status_response(201);
        set_header(resp.headers_mut(), "etag", &format!("\"{etag}\""));
        set_header(
            resp.headers_mut(),
            pec::X_BACKEND_DURABLE,
            if durable { "yes" } else { "no" },
        );
        resp
    }

    /// Makes the fragment written at `ts` durable, then updates the
    /// container (and the expiring-objects queue) as a replicated PUT does.
    async fn ec_commit(
        &self,
        t: Target,
        ec: EcPolicy,
        ts: Timestamp,
        frag_index: u32,
        parts: &http::request::Parts,
    ) -> Resp {
        let headers = &parts.headers;
        let edf = match self.ec_diskfile(&t, &ec, FragSelect::index(frag_index)) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let replaced = match self.ec_diskfile(&t, &ec, FragSelect::any()) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let committed = blocking(move || {
            let dir = edf.hash_dir().to_path_buf();
            let pending = dir.join(make_ec_data_filename(&ts, frag_index, false));
            let durable = dir.join(make_ec_data_filename(&ts, frag_index, true));
            // The object this commit replaces, whose expiry entry goes
            // (a replicated PUT removes it the same way).
            let orig_delete_at = match replaced.open(OpenOptions {
                open_expired: true,
                now: None,
            }) {
                Ok(open) if open.inner().data_timestamp() < ts => open
                    .inner()
                    .metadata()
                    .get("X-Delete-At")
                    .and_then(py_int)
                    .unwrap_or(0),
                _ => 0,
            };
            let path = if pending.exists() {
                edf.commit(ts, frag_index)?
            } else if durable.exists() {
                // Committed already: answer (and update) again.
                durable
            } else {
                return Ok(None);
            };
            match apus_diskfile::read_metadata(&path) {
                Ok(md) => Ok(Some((Some(md), orig_delete_at))),
                // Made obsolete by something newer as it was committed.
                Err(_) if !path.exists() => Ok(Some((None, 0))),
                Err(e) => Err(e),
            }
        })
        .await;
        let (metadata, orig_delete_at) = match committed {
            Ok(None) => return status_response(404),
            Ok(Some(found)) => found,
            Err(e) => {
                tracing::error!(error = %e, "fragment commit failed");
                return disk_error_response(&e, &t.device);
            }
        };
        if let Some(md) = &metadata {
            let new_delete_at = md.get("X-Delete-At").and_then(py_int).unwrap_or(0);
            self.conditional_delete_at_update(
                &t,
                &parts.method,
                &parts.uri,
                headers,
                ts,
                md,
                orig_delete_at,
                new_delete_at,
            )
            .await;
            let mut update = ContainerUpdate::new("PUT", &t.account, &t.container, &t.obj);
            // The container lists the object, not this archive (Swift's
            // proxy overrides the size and etag the same way).
            update.set_header(
                "x-size",
                md.get("X-Object-Sysmeta-Ec-Content-Length")
                    .or_else(|| md.get("Content-Length"))
                    .unwrap_or("0"),
            );
            update.set_header("x-content-type", md.get("Content-Type").unwrap_or(""));
            update.set_header("x-timestamp", ts.internal());
            update.set_header(
                "x-etag",
                md.get("X-Object-Sysmeta-Ec-Etag")
                    .or_else(|| md.etag())
                    .unwrap_or(""),
            );
            let stored = md
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()));
            let sent = headers.iter().map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            });
            apply_container_overrides(&mut update, stored.chain(sent));
            self.container_update(&t, &parts.method, &parts.uri, headers, update)
                .await;
        }
        let mut resp = status_response(201);
        if let Some(e) = metadata.as_ref().and_then(|m| m.etag()) {
            set_header(resp.headers_mut(), "etag", &format!("\"{e}\""));
        }
        set_header(resp.headers_mut(), pec::X_BACKEND_DURABLE, "yes");
        resp
    }

    // ---- GET / HEAD --------------------------------------------------------

    pub(super) async fn ec_get_or_head(&self, t: Target, ec: EcPolicy, req: Request<Body>) -> Resp {
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
        let frag_prefs = match header(&headers, pec::X_BACKEND_FRAGMENT_PREFERENCES) {
            None => None,
            Some(v) => match parse_fragment_preferences(&v, ec.width()) {
                Ok(p) => p,
                Err(e) => return text_response(400, &e.to_string()),
            },
        };
        let frag_index = match frag_index_header(&headers, X_BACKEND_SSYNC_FRAG_INDEX, &ec) {
            Ok(i) => i,
            Err(r) => return r,
        };
        let select = FragSelect {
            frag_index,
            frag_prefs: frag_prefs.map(|prefs| {
                prefs
                    .into_iter()
                    .map(|p| FragPref {
                        timestamp: p.timestamp,
                        exclude: p.exclude,
                    })
                    .collect()
            }),
        };
        let conditions = Conditions::from_headers(|n| headers.get(n).and_then(|v| v.to_str().ok()));
        let edf = match self.ec_diskfile(&t, &ec, select) {
            Ok(d) => d,
            Err(r) => return r,
        };
        let opened = blocking(move || {
            Ok(edf.open(OpenOptions {
                open_expired,
                now: Some(now),
            }))
        })
        .await;
        let open = match opened {
            Ok(Ok(open)) => open,
            Ok(Err(e)) | Err(e) => {
                // Swift: only a tombstone or expired object names a
                // timestamp; non-durable fragments alone are a bare 404.
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
        let durable_ts = open.durable_timestamp();
        let fragments = pec::fragments_header(open.fragments());
        let mut resp = self.object_response(open.into_inner(), &headers, is_head, &conditions);
        let out = resp.headers_mut();
        out.remove(h::X_BACKEND_DURABLE_TIMESTAMP);
        out.remove(pec::X_BACKEND_FRAGMENTS);
        if let Some(d) = durable_ts {
            set_header(out, h::X_BACKEND_DURABLE_TIMESTAMP, &d.internal());
        }
        if let Some(f) = fragments {
            set_header(out, pec::X_BACKEND_FRAGMENTS, &f);
        }
        resp
    }
}

/// Applies a fragment PUT's trailers to its metadata: object sysmeta and
/// user metadata are kept (over the head's), `Etag` is checked by the
/// caller, container-update overrides only matter at the commit. Any
/// other trailer, or a fragment index differing from the head's, is a 400.
fn apply_trailers(trailers: &HeaderMap, frag_index: u32, md: &mut Metadata) -> Result<(), Resp> {
    for (name, value) in trailers {
        let n = name.as_str();
        if !pec::is_trailer_allowed(n) {
            return Err(text_response(
                400,
                &format!("Trailer not allowed: {}", title_case(n)),
            ));
        }
        if n == pec::X_OBJECT_SYSMETA_EC_FRAG_INDEX {
            let same = value
                .to_str()
                .ok()
                .and_then(|v| parse_frag_index(v, u32::MAX))
                == Some(frag_index);
            if !same {
                return Err(text_response(
                    400,
                    "X-Object-Sysmeta-Ec-Frag-Index trailer differs from the header",
                ));
            }
        }
        if h::is_object_sysmeta(n) {
            md.insert(title_case(n), value.as_bytes());
        }
    }
    Ok(())
}
