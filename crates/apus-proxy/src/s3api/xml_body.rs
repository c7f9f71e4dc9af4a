//! Reading the small XML documents some S3 requests carry (Swift's
//! `S3Request.xml`): never more than the caller's bound, and a body that
//! fails its signed payload hash is answered as that failure.

use apus_s3::{ErrorCode, S3Error};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use super::S3Request;

/// The request body when it is at most `max` bytes long; `None` when the
/// request has none (no or a zero `Content-Length`, and not chunked).
/// A longer body is `MalformedXML`, as S3 answers a document too big to
/// be one of its own.
pub(crate) async fn read(req: &mut S3Request, max: usize) -> Result<Option<Bytes>, S3Error> {
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let length = req
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|l| l > max as u64) {
        drain(req.take_body()).await;
        return Err(S3Error::new(ErrorCode::MalformedXML));
    }
    if !chunked && length.unwrap_or(0) == 0 {
        return Ok(None);
    }
    let mut body = req.take_body();
    match collect_at_most(&mut body, max).await {
        Ok(b) => Ok(Some(b)),
        Err(e) => {
            if let Some(fault) = req.body_fault.take() {
                return Err(fault);
            }
            if e.kind() == std::io::ErrorKind::InvalidData {
                drain(body).await;
                return Err(S3Error::new(ErrorCode::MalformedXML));
            }
            Err(S3Error::with_message(
                ErrorCode::IncompleteBody,
                "The request body terminated unexpectedly",
            ))
        }
    }
}

/// How much of a refused body is read and thrown away, so that the
/// client, still sending, gets to read the answer (as Swift's server
/// reads what the application left); past this the connection just
/// closes.
const DRAIN_LIMIT: u64 = 256 * 1024 * 1024;

/// The body's first `max` bytes; `InvalidData` when there is more, with
/// the rest left in `body`.
async fn collect_at_most(body: &mut apus_http::Body, max: usize) -> std::io::Result<Bytes> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(std::io::Error::other)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("body larger than {max} bytes"),
                ));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Reads what is left of a body without keeping it, up to
/// [`DRAIN_LIMIT`].
async fn drain(mut body: apus_http::Body) {
    let mut seen = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            seen += data.len() as u64;
            if seen > DRAIN_LIMIT {
                return;
            }
        }
    }
}

/// Whether an element holds only whitespace besides its children, as a
/// schema of elements alone requires.
pub(crate) fn no_text(el: &apus_s3::xml::Element) -> bool {
    el.text.trim().is_empty()
}
