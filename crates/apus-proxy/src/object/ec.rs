//! Erasure-coded objects (see [`apus_proto::ec`] for the object servers'
//! side).
//!
//! PUT: the client's body goes through an [`ArchiveEncoder`] segment by
//! segment and each of the k + m fragment archives streams, chunked, to
//! the primary of its fragment index (a handoff standing in for a failed
//! one keeps the index of its slot). The object's MD5, its length and
//! each archive's own MD5 are known only at the end, so they follow the
//! last chunk as HTTP trailers. Once `ndata + 1` servers have taken their
//! fragment (`201`, not yet durable), each of them gets a commit request;
//! `ndata + 1` commits make the client's `201`. A client `Etag` that does
//! not match the body ends every upload unfinished (the servers discard
//! the fragments) and answers `422`.
//!
//! GET and HEAD are in [`get`]: fragments gathered and grouped by
//! timestamp as Swift does, client ranges turned into fragment ranges,
//! failed sources replaced mid-stream. The client sees the object's length
//! and ETag from the EC sysmeta, never the fragments' own.

mod get;

use apus_core::conditional::{format_http_date, normalize_etag};
use apus_core::policy::EcParams;
use apus_core::Timestamp;
use apus_ec::{ArchiveEncoder, EcScheme, EcType};
use apus_http::expect::Started;
use apus_proto::constraints::MAX_FILE_SIZE;
use apus_proto::ec as pec;
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use md5::{Digest, Md5};

use super::{bad_request, Putter};
use crate::app::Ctx;
use crate::backend::{backend_path, node_host, NodePlan};
use crate::config::Policy;
use crate::metrics::{BackendFailure, NodeType};
use crate::service::{error_response, header_str, set_header, Req, Resp};

/// The trailers every fragment PUT ends with.
const TRAILER_NAMES: &str = "Etag, X-Object-Sysmeta-Ec-Etag, X-Object-Sysmeta-Ec-Content-Length";

/// The code a policy names.
pub(crate) fn scheme_of(ec: &EcParams) -> Result<EcScheme, apus_ec::EcError> {
    let ec_type: EcType = ec.ec_type.parse()?;
    EcScheme::new(ec_type, ec.ndata as usize, ec.nparity as usize)
}

fn unavailable() -> Resp {
    error_response(StatusCode::SERVICE_UNAVAILABLE, None)
}

fn client_gone() -> Resp {
    error_response(
        StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        None,
    )
}

fn hex_md5(hash: Md5) -> String {
    let digest = hash.finalize();
    let mut out = String::with_capacity(32);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Ctx<'_> {
    /// An EC object PUT once the request has passed the checks every
    /// object PUT does; `headers` holds one set of backend headers per
    /// fragment index (container updates assigned).
    pub(super) async fn ec_put(
        &self,
        req: Req,
        ec: &EcParams,
        plan: &NodePlan,
        mut headers: Vec<HeaderMap>,
        timestamp: Timestamp,
        content_length: Option<u64>,
    ) -> Resp {
        let scheme = match scheme_of(ec) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "EC policy with an unusable code");
                return unavailable();
            }
        };
        let width = scheme.fragment_count();
        let Ok(segment_size) = usize::try_from(ec.segment_size) else {
            return unavailable();
        };
        let mut encoder = match ArchiveEncoder::new(scheme, segment_size) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "EC policy with an unusable segment size");
                return unavailable();
            }
        };
        if plan.replicas != width || headers.len() != width {
            tracing::error!(
                replicas = plan.replicas,
                width,
                "EC object ring does not have one replica per fragment"
            );
            return unavailable();
        }
        let quorum = ec.quorum() as usize;
        let client_etag = header_str(req.headers(), "etag")
            .map(|e| normalize_etag(e.trim()).to_ascii_lowercase())
            .filter(|e| !e.is_empty());
        for (i, h) in headers.iter_mut().enumerate() {
            // The client's ETag is the object's, not an archive's.
            h.remove("etag");
            h.remove("content-md5");
            set_header(h, pec::X_OBJECT_SYSMETA_EC_FRAG_INDEX, &i.to_string());
            set_header(h, pec::X_OBJECT_SYSMETA_EC_SCHEME, &ec.scheme_description());
            set_header(
                h,
                pec::X_OBJECT_SYSMETA_EC_SEGMENT_SIZE,
                &ec.segment_size.to_string(),
            );
            set_header(h, "trailer", TRAILER_NAMES);
        }
        let (putters, early) = self
            .connect_putters(plan, &headers, None, None, quorum)
            .await;
        let if_none_match = req.headers().contains_key("if-none-match");
        if if_none_match && early.iter().any(|r| r.status == 412) {
            return error_response(StatusCode::PRECONDITION_FAILED, None);
        }
        if early.iter().any(|r| r.status == 409) {
            return error_response(StatusCode::ACCEPTED, None);
        }
        if putters.len() < quorum {
            tracing::error!(
                connected = putters.len(),
                quorum,
                "EC object PUT: not enough object servers took the upload"
            );
            return unavailable();
        }

        // The body, segment by segment.
        let mut body = req.into_body();
        let mut putters = putters;
        let mut archives = vec![Vec::new(); width];
        let mut archive_md5 = vec![Md5::new(); width];
        let mut object_md5 = Md5::new();
        let mut received: u64 = 0;
        let client_timeout = self.app.config.client_timeout;
        loop {
            let frame = match tokio::time::timeout(client_timeout, body.frame()).await {
                Err(_) => return error_response(StatusCode::REQUEST_TIMEOUT, None),
                Ok(None) => break,
                Ok(Some(Err(_))) => return client_gone(),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            received += data.len() as u64;
            if received > MAX_FILE_SIZE {
                return error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Some("Your request is too large."),
                );
            }
            if content_length.is_some_and(|len| received > len) {
                return bad_request("Request body longer than Content-Length");
            }
            object_md5.update(&data);
            if let Err(e) = encoder.push(&data, &mut archives) {
                tracing::error!(error = %e, "EC object PUT: encoding failed");
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, None);
            }
            putters = self
                .send_fragments(putters, &mut archives, &mut archive_md5)
                .await;
            if putters.len() < quorum {
                tracing::error!("EC object PUT: lost the write quorum while sending");
                return unavailable();
            }
        }
        if content_length.is_some_and(|len| received < len) {
            return client_gone();
        }
        if let Err(e) = encoder.finish(&mut archives) {
            tracing::error!(error = %e, "EC object PUT: encoding failed");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, None);
        }
        putters = self
            .send_fragments(putters, &mut archives, &mut archive_md5)
            .await;
        if putters.len() < quorum {
            return unavailable();
        }
        let etag = hex_md5(object_md5);
        if client_etag.as_ref().is_some_and(|e| *e != etag) {
            // Dropping the uploads unfinished makes every server discard
            // its fragment.
            drop(putters);
            return error_response(StatusCode::UNPROCESSABLE_ENTITY, None);
        }

        // Ending each archive with its trailers.
        let archive_etags: Vec<String> = archive_md5.into_iter().map(hex_md5).collect();
        let limiter = &self.app.backend.limiter;
        let finishing = putters.into_iter().map(|p| {
            let mut trailers = HeaderMap::new();
            let archive_etag = archive_etags.get(p.index).cloned().unwrap_or_default();
            set_header(&mut trailers, "etag", &archive_etag);
            set_header(&mut trailers, pec::X_OBJECT_SYSMETA_EC_ETAG, &etag);
            set_header(
                &mut trailers,
                pec::X_OBJECT_SYSMETA_EC_CONTENT_LENGTH,
                &received.to_string(),
            );
            let limiter = limiter.clone();
            tokio::spawn(async move {
                match p.conn.finish_with_trailers(&trailers).await {
                    Ok(f) => {
                        if f.status.is_server_error() {
                            limiter.failed(&p.dev, NodeType::Object, BackendFailure::ServerError);
                        }
                        (p.index, p.dev, f.status.as_u16())
                    }
                    Err(e) => {
                        tracing::warn!(device = %p.dev.device, error = %e, "EC object PUT: no answer");
                        limiter.failed(&p.dev, NodeType::Object, BackendFailure::Error);
                        (p.index, p.dev, 503)
                    }
                }
            })
        });
        let answers = futures_util::future::join_all(finishing).await;
        let stored: Vec<_> = answers
            .into_iter()
            .flatten()
            .filter(|(_, _, status)| (200..300).contains(status))
            .collect();
        if stored.len() < quorum {
            tracing::error!(
                stored = stored.len(),
                quorum,
                "EC object PUT: too few fragments stored; no commit"
            );
            return unavailable();
        }

        // The commit: each stored fragment made durable.
        let path = self.target.path();
        let cfg = &self.app.config;
        let commits = stored.into_iter().map(|(index, dev, _)| {
            let mut hdrs = headers.get(index).cloned().unwrap_or_default();
            hdrs.remove("trailer");
            set_header(&mut hdrs, pec::X_BACKEND_EC_COMMIT, "yes");
            let bpath = backend_path(&dev, plan.partition, &path, None);
            let limiter = limiter.clone();
            let uploads = self.app.backend.uploads.clone();
            let (conn_timeout, node_timeout) = (cfg.conn_timeout, cfg.node_timeout);
            tokio::spawn(async move {
                let answer = uploads.start(
                    &node_host(&dev),
                    &Method::PUT,
                    &bpath,
                    &hdrs,
                    Some(0),
                    conn_timeout,
                    node_timeout,
                )
                .await;
                match answer {
                    Ok(Started::Final(f)) => {
                        if f.status.is_server_error() {
                            limiter.failed(&dev, NodeType::Object, BackendFailure::ServerError);
                        }
                        f.status.is_success()
                    }
                    Ok(Started::Continue(_)) => false,
                    Err(e) => {
                        tracing::warn!(device = %dev.device, error = %e, "EC object PUT: commit failed");
                        limiter.failed(&dev, NodeType::Object, BackendFailure::Error);
                        false
                    }
                }
            })
        });
        let committed = futures_util::future::join_all(commits)
            .await
            .into_iter()
            .filter(|r| matches!(r, Ok(true)))
            .count();
        if committed < quorum {
            tracing::error!(committed, quorum, "EC object PUT: too few commits");
            return unavailable();
        }
        let mut resp = error_response(StatusCode::CREATED, None);
        set_header(resp.headers_mut(), "etag", &etag);
        let lm = format_http_date(timestamp.ceil_secs() as i64);
        set_header(resp.headers_mut(), "last-modified", &lm);
        resp
    }

    /// Sends each putter the archive bytes of its fragment index that the
    /// encoder has produced, dropping those that fail.
    async fn send_fragments(
        &self,
        putters: Vec<Putter>,
        archives: &mut [Vec<u8>],
        hashes: &mut [Md5],
    ) -> Vec<Putter> {
        let pieces: Vec<Bytes> = archives
            .iter_mut()
            .map(|a| Bytes::from(std::mem::take(a)))
            .collect();
        for (hash, piece) in hashes.iter_mut().zip(&pieces) {
            hash.update(piece);
        }
        self.send_chunk(
            putters,
            |index| pieces.get(index).cloned().unwrap_or_default(),
            "EC object PUT",
        )
        .await
    }

    /// GET or HEAD of an EC object (see [`get`]).
    pub(super) async fn ec_get(&self, req: Req, policy: &Policy, ec: &EcParams) -> Resp {
        self.ec_get_object(req, policy, ec).await
    }
}

/// Drops the fragments' own metadata from an answer for the client.
fn strip_ec_headers(headers: &mut HeaderMap) {
    let drop: Vec<_> = headers
        .keys()
        .filter(|n| {
            let n = n.as_str();
            n.starts_with("x-object-sysmeta-ec-") || n.starts_with("x-backend-")
        })
        .cloned()
        .collect();
    for name in drop {
        headers.remove(name);
    }
}
