//! S3's wire vocabulary: request authentication (AWS Signature Version 4
//! and 2), the error codes and their XML bodies, and later the S3 XML
//! documents and the translation of S3 requests into Swift's.
//!
//! This crate never depends on apus-server, apus-daemons, apus-db or
//! apus-diskfile and does no disk I/O: the proxy enters it where Swift
//! places its `s3api` middleware, and it reaches storage only through the
//! proxy's pipeline. Everything here is pure functions over request parts
//! and bytes.

pub mod acl;
pub mod auth;
pub mod error;
pub mod input;
pub mod wire;
pub mod xml;

pub use auth::{
    authenticate, verify, AuthConfig, AuthForm, AuthRequest, ChunkSigner, CredentialStore,
    PayloadHash, Scope, Secret, SignatureVersion, Verified,
};
pub use error::{ErrorCode, S3Error};
