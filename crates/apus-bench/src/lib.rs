//! apus-bench: the load tool behind `apus bench`, for any endpoint that
//! speaks the Swift API with v1.0 auth (apus, Swift, Ceph RGW) or, with
//! S3, path-style AWS Signature V4, so different stores can be measured
//! the same way on the same machine.
//!
//! It owns two workloads. The mixed one ([`mix`]) sends a weighted mix of
//! PUT, GET, HEAD, DELETE and container listing requests over objects of
//! a fixed or random size, for a duration or a number of ops, showing
//! progress and ending with per-op rates and latency percentiles
//! ([`summary`]); failed requests are counted, not fatal. The fixed suite
//! ([`suite`]) prints the `metric value unit` lines `scripts/bench.sh`
//! compares apus and Swift with. Both delete what they wrote.
//!
//! It depends on `apus-http` only, as an HTTP client, and never on the
//! storage, proxy or daemon crates: it sees the system under test from
//! outside, exactly as it sees Swift.

pub mod client;
pub mod histogram;
pub mod mix;
mod sigv4;
pub mod suite;
pub mod summary;
pub mod workload;

pub use client::{Api, Endpoint};
pub use mix::{Interrupt, MixConfig, ProgressStyle, StopAfter};
pub use suite::SuiteConfig;
pub use summary::Summary;
pub use workload::{Mix, Op, SizeDist};
