//! apus-http: the HTTP plumbing every apus server and the proxy share.
//!
//! It owns:
//! - [`server`]: serving a [`Handler`] on a `TcpListener` with hyper's
//!   HTTP/1.1 (keep-alive, a header read timeout, any method, the raw
//!   request target untouched) and a graceful shutdown bounded in time;
//! - [`wire`]: the two changes made to the bytes on a connection where
//!   hyper and Swift differ (raw non-ASCII bytes in a first request's
//!   target, `Content-Length: 0` on a 204);
//! - [`limits`]: the limits Swift's servers put on a request's head
//!   (request line, header line, header bytes, header fields), answered
//!   as Swift answers before a handler sees the request;
//! - [`body`]: the one streaming body type ([`Body`]) and its constructors,
//!   including a bounded channel so a blocking disk reader can stream with
//!   backpressure and bounded memory;
//! - [`client`]: the backend client ([`BackendClient`]) with connection
//!   pooling, a connect timeout and a node timeout (no progress for that
//!   long fails the request), streaming bodies both ways and raw paths;
//! - [`local`]: uploads handed to a server of the same process without a
//!   socket ([`local::LocalNodes`]), used by the upload pool of
//!   [`expect`];
//! - [`metrics`]: the Prometheus figures every server shares (requests
//!   counted by the accept loop, process figures) and `/metrics` itself;
//! - [`healthcheck`]: Swift's `/healthcheck` answer, the same on every
//!   server.
//!
//! Invariant: no storage crates (diskfile, db, ring) and no protocol
//! semantics: this crate moves bytes and headers; what they mean belongs to
//! `apus-proto` and the servers.

pub mod body;
pub mod client;
pub mod expect;
pub mod healthcheck;
pub mod limits;
pub mod local;
pub mod metrics;
pub mod server;
pub mod wire;

pub use body::{channel, empty, full, incoming, Body, BodySender};
pub use client::{BackendClient, ClientConfig, ClientError};
pub use limits::HeadLimits;
pub use metrics::{RequestMetrics, ServerKind, ServerMetrics};
pub use server::{serve, serve_with, Handler, RemoteAddr, ServerConfig};
