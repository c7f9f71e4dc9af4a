//! apus-core: the pure vocabulary every other apus crate shares.
//!
//! It owns Swift's hash paths (`md5(prefix + /a/c/o + suffix)`), the
//! `[swift-hash]` configuration that seeds them, and Swift's `Timestamp` in
//! its normalized and internal forms, and the HTTP vocabulary the servers
//! and the proxy share: `Range` requests ([`range`]) and conditional
//! requests with HTTP dates ([`conditional`]), with Swift's rules; JSON
//! strings as Python writes them ([`pyjson`]); and storage policies as
//! `swift.conf` declares them ([`policy`]).
//!
//! It also owns apus's wall clock ([`clock`]): every "now" compared with a
//! Swift timestamp comes from there, so that a test can move one process's
//! clock.
//!
//! Invariant: no I/O beyond parsing text handed to it, no async runtime, no
//! HTTP, no SQLite. Everything here is a function of its arguments (the
//! clock apart, which reads the system clock and, once, one environment
//! variable), so it can be property-tested and fuzzed in isolation. It must
//! never depend on another apus crate.

pub mod clock;
pub mod conditional;
pub mod hash;
pub mod policy;
pub mod pyjson;
pub mod range;
pub mod timestamp;

pub use hash::{HashConfig, HashConfigError};
pub use timestamp::{Timestamp, TimestampError};
