//! The backend client: how the proxy and the daemons talk to storage
//! servers, and how object servers send container updates.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::Body;

/// Client settings (Swift's `conn_timeout` and `node_timeout`).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Time allowed to establish a TCP connection.
    pub connect_timeout: Duration,
    /// Longest wait without progress: for the response headers (counted
    /// from the last request-body chunk sent) and for each response-body
    /// chunk.
    pub node_timeout: Duration,
    /// Idle pooled connections are closed after this.
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_millis(500),
            node_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid request target {0:?}")]
    InvalidUri(String),
    #[error("connecting to {host} failed: {source}")]
    Connect {
        host: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("{host} did not answer within the node timeout")]
    Timeout { host: String },
    #[error("{host} (in this process) failed: {source}")]
    Local {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error("request to {host} failed: {source}")]
    Http {
        host: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
}

impl ClientError {
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Timeout { .. })
    }
}

/// A pooled HTTP/1.1 client for backend requests. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BackendClient {
    inner: Client<HttpConnector, ProgressBody>,
    config: Arc<ClientConfig>,
    /// Servers of this process, which take requests without a socket.
    local: crate::local::LocalNodes,
}

impl BackendClient {
    pub fn new(config: ClientConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            // Swift allows 90 metadata items plus its own headers; hyper's
            // default of 100 response headers is too few.
            .http1_max_headers(256)
            .timer(TokioTimer::new())
            .build(connector);
        BackendClient {
            inner,
            config: Arc::new(config),
            local: crate::local::LocalNodes::default(),
        }
    }

    /// Hands requests to the servers registered in `local` without a
    /// socket when they are for the address one listens on (see
    /// [`crate::local`]).
    pub fn with_local(mut self, local: crate::local::LocalNodes) -> Self {
        self.local = local;
        self
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Sends `method path` to `host` (`ip:port`). `path` is the request
    /// target exactly as it goes on the wire (already quoted, with any
    /// query string): it is not re-encoded. The response body fails with a
    /// timeout error when no chunk arrives within the node timeout.
    pub async fn request(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response<Body>, ClientError> {
        let node_timeout = self.config.node_timeout;
        if let Some((node, uri)) = crate::local::route(&self.local, host, path) {
            let progress = Arc::new(Progress::new());
            let body = ProgressBody {
                inner: body,
                progress: progress.clone(),
            }
            .boxed();
            return crate::local::call(
                node,
                uri,
                method,
                host,
                headers,
                body,
                node_timeout,
                &progress,
            )
            .await
            .map_err(|e| match e {
                crate::local::CallError::Timeout => ClientError::Timeout {
                    host: host.to_string(),
                },
                crate::local::CallError::Failed(source) => ClientError::Local {
                    host: host.to_string(),
                    source,
                },
            });
        }
        let target = format!("http://{host}{path}");
        let uri: Uri = target
            .parse()
            .map_err(|_| ClientError::InvalidUri(target.clone()))?;
        let progress = Arc::new(Progress::new());
        let mut req = Request::new(ProgressBody {
            inner: body,
            progress: progress.clone(),
        });
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let fut = self.inner.request(req);
        tokio::pin!(fut);
        let result = loop {
            let idle = progress.idle();
            if idle >= node_timeout {
                return Err(ClientError::Timeout {
                    host: host.to_string(),
                });
            }
            tokio::select! {
                res = &mut fut => break res,
                _ = tokio::time::sleep(node_timeout - idle) => {}
            }
        };
        let resp = result.map_err(|source| {
            if source.is_connect() {
                ClientError::Connect {
                    host: host.to_string(),
                    source,
                }
            } else {
                ClientError::Http {
                    host: host.to_string(),
                    source,
                }
            }
        })?;
        let (parts, incoming) = resp.into_parts();
        let body = with_node_timeout(crate::body::incoming(incoming), node_timeout);
        Ok(Response::from_parts(parts, body))
    }
}

/// When the request last made progress (milliseconds since `start`).
#[derive(Debug)]
pub(crate) struct Progress {
    start: Instant,
    last_ms: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// The request body, noting each chunk handed to the connection.
struct ProgressBody {
    inner: Body,
    progress: Arc<Progress>,
}

impl http_body::Body for ProgressBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        if res.is_ready() {
            self.progress.touch();
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// `body`, each of whose chunks must arrive within `timeout`: a backend
/// answer's body, from a connection or from a server of this process.
pub(crate) fn with_node_timeout(body: Body, timeout: Duration) -> Body {
    TimeoutBody {
        inner: body,
        timeout,
        sleep: None,
    }
    .boxed()
}

/// A response body whose every chunk must arrive within `timeout`.
struct TimeoutBody {
    inner: Body,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for TimeoutBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(res) => {
                self.sleep = None;
                Poll::Ready(res)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.sleep = None;
                        Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "backend response body timed out",
                        ))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
