//! The streaming body type used for requests and responses.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::mpsc;

/// A boxed streaming body of `Bytes` chunks. An `Err` chunk aborts the
/// message: a server closes the connection without completing the
/// response, so the peer sees a truncated body, never a complete one.
pub type Body = BoxBody<Bytes, io::Error>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A received hyper body as a [`Body`].
pub fn incoming(body: hyper::body::Incoming) -> Body {
    body.map_err(io::Error::other).boxed()
}

/// The sending half of [`channel`]. Dropping it ends the body normally;
/// [`abort`](Self::abort) ends it with an error.
#[derive(Debug, Clone)]
pub struct BodySender {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

/// The receiver is gone (the peer went away): stop producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("body receiver closed")]
pub struct Closed;

impl BodySender {
    /// Sends a chunk, waiting for room.
    pub async fn send(&self, chunk: Bytes) -> Result<(), Closed> {
        self.tx.send(Ok(chunk)).await.map_err(|_| Closed)
    }

    /// Sends a chunk from a blocking thread (never call from async code).
    pub fn blocking_send(&self, chunk: Bytes) -> Result<(), Closed> {
        self.tx.blocking_send(Ok(chunk)).map_err(|_| Closed)
    }

    /// Ends the body with an error, after the chunks already queued.
    pub async fn abort(self, err: io::Error) {
        let _ = self.tx.send(Err(err)).await;
    }

    /// [`abort`](Self::abort) from a blocking thread.
    pub fn blocking_abort(self, err: io::Error) {
        let _ = self.tx.blocking_send(Err(err));
    }

    /// True once the receiving body was dropped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

struct ChannelBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    remaining: Option<u64>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(r) = &mut self.remaining {
                    *r = r.saturating_sub(chunk.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(r) => SizeHint::with_exact(r),
            None => SizeHint::default(),
        }
    }
}

/// A body fed through a bounded channel of `capacity` chunks: memory per
/// body is bounded by `capacity` times the chunk size, and a slow reader
/// holds the producer back. `length`, when known, is reported as the
/// body's exact size.
pub fn channel(capacity: usize, length: Option<u64>) -> (BodySender, Body) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        BodySender { tx },
        ChannelBody {
            rx,
            remaining: length,
        }
        .boxed(),
    )
}

/// Reads a whole body, failing when it exceeds `limit` bytes (for small
/// backend answers: errors, listings, replication hashes). A body that
/// comes in one piece, as a server's rendered listing does, is returned
/// as it is; pieces are joined into one buffer sized by the body's hint.
pub async fn collect_limited<B>(body: B, limit: usize) -> io::Result<Bytes>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = body;
    let hint = body.size_hint().lower();
    let mut first: Option<Bytes> = None;
    let mut joined: Option<bytes::BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len();
        if len > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("body larger than {limit} bytes"),
            ));
        }
        match (&mut joined, first.take()) {
            (Some(out), _) => out.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(earlier)) => {
                let room = usize::try_from(hint).unwrap_or(0).clamp(len, limit);
                let mut out = bytes::BytesMut::with_capacity(room);
                out.extend_from_slice(&earlier);
                out.extend_from_slice(&data);
                joined = Some(out);
            }
        }
    }
    Ok(match joined {
        Some(out) => out.freeze(),
        None => first.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_in_one_piece_is_collected_without_a_copy() {
        let piece = Bytes::from(vec![7u8; 1000]);
        let collected = collect_limited(full(piece.clone()), 1000).await.unwrap();
        assert_eq!(collected, piece);
        assert_eq!(collected.as_ptr(), piece.as_ptr(), "not copied");
    }

    #[tokio::test]
    async fn pieces_are_joined_in_order_and_held_to_the_limit() {
        let (tx, body) = channel(8, Some(9));
        for piece in ["abc", "", "def", "ghi"] {
            tx.send(Bytes::from(piece)).await.unwrap();
        }
        drop(tx);
        assert_eq!(&collect_limited(body, 9).await.unwrap()[..], b"abcdefghi");

        let (tx, body) = channel(8, None);
        for piece in ["abc", "def", "ghi"] {
            tx.send(Bytes::from(piece)).await.unwrap();
        }
        drop(tx);
        let err = collect_limited(body, 8).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);

        assert!(collect_limited(empty(), 0).await.unwrap().is_empty());
    }
}
