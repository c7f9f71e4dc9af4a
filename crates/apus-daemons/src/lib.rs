//! apus-daemons: the background workers that keep three good copies.
//!
//! It owns the replicators (objects, containers, accounts), the object
//! reconstructor (erasure-coded fragments), the auditors,
//! the object and container updaters and the object expirer, all on one
//! [`Worker`] trait: a worker runs passes over the local devices, either
//! once (`--once`) or continuously with a pause between passes, throttled
//! by [`RateLimiter`]s and reporting [`PassStats`], which [`recon`] turns
//! into Swift's recon cache after each pass and [`metrics`] into
//! Prometheus figures.
//!
//! Workers reach other nodes only over HTTP through `apus-http`, with the
//! messages of `apus-proto`; they read local data through `apus-diskfile`
//! and `apus-db`. This crate must never depend on `apus-server` or
//! `apus-proxy`: a storage node can run its daemons without either.

pub mod container_updater;
pub mod context;
pub mod db_auditor;
pub mod db_replicator;
pub mod db_walk;
pub mod expirer;
pub mod metrics;
pub mod object_auditor;
pub mod object_replicator;
pub mod object_updater;
mod push;
pub mod rate;
pub mod recon;
pub mod reconciler;
pub mod reconstructor;
pub mod stats;
pub mod worker;

pub use context::{DaemonContext, LocalIdentity, Rings};
pub use object_auditor::{ObjectAuditor, ObjectAuditorSettings};
pub use object_replicator::{ObjectReplicator, ObjectReplicatorSettings};
pub use rate::RateLimiter;
pub use reconstructor::{ObjectReconstructor, ObjectReconstructorSettings};
pub use stats::{PassStats, Stats};
pub use worker::{run_forever, run_once, Shutdown, Worker};
