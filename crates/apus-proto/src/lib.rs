//! apus-proto: the backend wire protocol spoken between the proxy, the
//! storage servers and the background daemons, as OpenStack Swift speaks it.
//!
//! It owns:
//! - the names of the backend headers ([`headers`]);
//! - request paths: percent-decoding with Swift's UTF-8/NUL rules, Swift's
//!   `split_path`, and quoting for outgoing backend requests ([`path`]);
//! - Swift's constraints: metadata limits and name lengths, checked by
//!   the proxy and re-checked by the storage servers ([`constraints`]);
//! - listing requests: query parameters, `limit` and the negotiation of
//!   the output format, read the same by the servers and the proxy
//!   ([`listing`]);
//! - the container-update message an object server sends to container
//!   servers (and saves as an async pending), the expiring-objects queue
//!   names, and the target lists the proxy hands over in
//!   `X-Container-*` / `X-Delete-At-*` headers ([`update`]);
//! - the account update a container server or the container updater
//!   sends to account servers ([`account_update`]);
//! - the account/container replication RPC and apus's whole-database copy
//!   ([`db_replication`]);
//! - the object replication messages: missing-check and wanted lines, and
//!   the receiver's rule for what it wants ([`replication`]);
//! - Swift's response vocabulary: each status's title, explanation and
//!   default body, shared by the proxy and every server ([`status`]);
//! - Swift's recon cache: its file names and the merge rule of the
//!   daemons' figures, read by the storage servers' `/recon` ([`recon`]).
//!
//! Known differences from Swift's wire protocol are documented here as
//! they are decided: databases are copied whole over HTTP rather than
//! rsync ([`db_replication`]), object replication runs its missing
//! check as a `REPLICATE` request with `X-Apus-Missing-Check` instead of
//! Swift's `SSYNC` verb ([`replication`]), and account updates carry
//! `X-Apus-Stats-Timestamp`, when the container's counts were read, so
//! account replicas keep the newest counts ([`account_update`]; without
//! it an account server uses its own clock). Erasure-coded PUTs replace
//! Swift's multi-phase commit (a second `100 Continue` carrying headers)
//! with a fragment PUT whose late metadata comes as HTTP trailers and a
//! separate commit request ([`ec`]).
//!
//! Invariant: no I/O, no async runtime, no storage crates. Everything here
//! is a pure function of its arguments. Of apus it depends only on
//! `apus-core`; of the HTTP stack only on the `http` types; and serde for
//! the JSON messages.

pub mod account_update;
pub mod constraints;
pub mod db_replication;
pub mod ec;
pub mod headers;
pub mod listing;
pub mod path;
pub mod recon;
pub mod replication;
pub mod status;
pub mod update;

pub use account_update::AccountUpdate;
pub use path::{percent_decode, percent_decode_internal, quote, split_path, title_case, PathError};
pub use update::{ContainerUpdate, UpdateTarget};
