//! apus-server: the storage servers, speaking Swift's backend protocol.
//!
//! It owns [`object`], the object server over `apus-diskfile` (PUT, GET,
//! HEAD, POST, DELETE with Swift's status codes and `X-Backend-*`
//! headers, container updates and async pendings) with its `REPLICATE`
//! verb in [`object_replication`], and the container and
//! account servers over `apus-db` ([`container`], [`account`], sharing
//! [`db_common`] and the replication RPC of [`db_replicate`]). For fault
//! tests, [`failpoint`] can crash the object server at chosen points of a
//! PUT. All three answer Swift's `/recon/*` monitoring checks ([`recon`])
//! and `/healthcheck` (`apus_http::healthcheck`), and [`metrics`] reads their
//! devices' figures for `/metrics`.
//!
//! Invariant: never depends on the proxy. The object, container and
//! account servers do not use each other's modules; what they share lives
//! in [`common`] / [`db_common`] or in `apus-proto` / `apus-http`.
//! Blocking storage calls run on tokio's blocking pool, and no object body
//! is held whole in memory beyond a small PUT's 64 KiB.

pub mod account;
pub mod common;
pub mod container;
pub mod db_common;
pub mod db_replicate;
pub mod failpoint;
pub mod metrics;
pub mod object;
pub mod object_replication;
pub mod recon;
pub mod slow_hosts;
