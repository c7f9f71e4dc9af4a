//! Header names of Swift's backend protocol, lower case (HTTP header names
//! are case-insensitive; `http::HeaderName` wants lower case).

pub const X_TIMESTAMP: &str = "x-timestamp";
pub const X_TRANS_ID: &str = "x-trans-id";
pub const X_BACKEND_STORAGE_POLICY_INDEX: &str = "x-backend-storage-policy-index";
pub const X_BACKEND_TIMESTAMP: &str = "x-backend-timestamp";
pub const X_BACKEND_DATA_TIMESTAMP: &str = "x-backend-data-timestamp";
pub const X_BACKEND_DURABLE_TIMESTAMP: &str = "x-backend-durable-timestamp";
pub const X_BACKEND_REPLICATION: &str = "x-backend-replication";
pub const X_BACKEND_REPLICATION_HEADERS: &str = "x-backend-replication-headers";
pub const X_BACKEND_OPEN_EXPIRED: &str = "x-backend-open-expired";
pub const X_BACKEND_CLEAN_EXPIRING_OBJECT_QUEUE: &str = "x-backend-clean-expiring-object-queue";
pub const X_BACKEND_CONTENT_TYPE: &str = "x-backend-content-type";
pub const X_BACKEND_ETAG_IS_AT: &str = "x-backend-etag-is-at";
pub const X_BACKEND_IGNORE_RANGE_IF_METADATA_PRESENT: &str =
    "x-backend-ignore-range-if-metadata-present";
pub const X_BACKEND_OBJ_CONTENT_LENGTH: &str = "x-backend-obj-content-length";
pub const X_BACKEND_CONTAINER_PATH: &str = "x-backend-container-path";
pub const X_BACKEND_QUOTED_CONTAINER_PATH: &str = "x-backend-quoted-container-path";
pub const X_BACKEND_CONTAINER_UPDATE_OVERRIDE_PREFIX: &str = "x-backend-container-update-override-";
pub const X_BACKEND_NO_COMMIT: &str = "x-backend-no-commit";
pub const X_BACKEND_USE_REPLICATION_NETWORK: &str = "x-backend-use-replication-network";
/// apus's own: on an object PUT, `crc32` says the proxy hashed the body
/// and sends its `Etag` and its CRC-32 ([`X_BACKEND_BODY_CRC32`]) as
/// trailers; the object server then checks the CRC-32 of what it stored
/// against the proxy's instead of hashing the body with MD5 again.
pub const X_BACKEND_ETAG_TRAILER: &str = "x-backend-etag-trailer";
/// The trailer carrying the CRC-32 (8 hex digits) of the body the proxy sent.
pub const X_BACKEND_BODY_CRC32: &str = "x-backend-body-crc32";

pub const X_CONTAINER_HOST: &str = "x-container-host";
pub const X_CONTAINER_PARTITION: &str = "x-container-partition";
pub const X_CONTAINER_DEVICE: &str = "x-container-device";
pub const X_CONTAINER_ROOT_DB_STATE: &str = "x-container-root-db-state";

pub const X_DELETE_AT: &str = "x-delete-at";
pub const X_DELETE_AFTER: &str = "x-delete-after";
pub const X_DELETE_AT_HOST: &str = "x-delete-at-host";
pub const X_DELETE_AT_PARTITION: &str = "x-delete-at-partition";
pub const X_DELETE_AT_DEVICE: &str = "x-delete-at-device";
pub const X_DELETE_AT_CONTAINER: &str = "x-delete-at-container";
pub const X_IF_DELETE_AT: &str = "x-if-delete-at";

/// Container-update message headers (object server → container server).
pub const X_SIZE: &str = "x-size";
pub const X_CONTENT_TYPE: &str = "x-content-type";
pub const X_ETAG: &str = "x-etag";
pub const X_CONTENT_TYPE_TIMESTAMP: &str = "x-content-type-timestamp";
pub const X_META_TIMESTAMP: &str = "x-meta-timestamp";

pub const CONTENT_TYPE_TIMESTAMP: &str = "content-type-timestamp";
pub const X_STATIC_LARGE_OBJECT: &str = "x-static-large-object";
pub const X_OBJECT_MANIFEST: &str = "x-object-manifest";

/// Metadata name prefixes.
pub const X_OBJECT_META_PREFIX: &str = "x-object-meta-";
pub const X_OBJECT_SYSMETA_PREFIX: &str = "x-object-sysmeta-";
pub const X_OBJECT_TRANSIENT_SYSMETA_PREFIX: &str = "x-object-transient-sysmeta-";
pub const X_OBJECT_SYSMETA_CONTAINER_UPDATE_OVERRIDE_PREFIX: &str =
    "x-object-sysmeta-container-update-override-";

/// Headers an object server keeps with an object besides metadata, by
/// default (Swift's `allowed_headers`).
pub const DEFAULT_ALLOWED_HEADERS: &[&str] = &[
    "content-disposition",
    "content-encoding",
    "x-delete-at",
    "x-object-manifest",
    "x-static-large-object",
    "cache-control",
    "content-language",
    "expires",
    "x-robots-tag",
];

/// Data-file keys a POST can never change (never "allowed headers").
pub const RESERVED_DATAFILE_META: &[&str] = &[
    "content-length",
    "deleted",
    "etag",
    "x-timestamp",
    "x-object-meta-",
    "x-object-sysmeta-",
];

/// Swift's truthy config/header values (`config_true_value`).
pub fn is_true(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on" | "t" | "y"
    )
}

fn has_longer_prefix(key: &str, prefix: &str) -> bool {
    key.len() > prefix.len()
        && key
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

/// `X-Object-Meta-<something>` (Swift's `is_user_meta('object', key)`).
pub fn is_object_user_meta(key: &str) -> bool {
    has_longer_prefix(key, X_OBJECT_META_PREFIX)
}

/// `X-Object-Sysmeta-<something>`.
pub fn is_object_sysmeta(key: &str) -> bool {
    has_longer_prefix(key, X_OBJECT_SYSMETA_PREFIX)
}

/// `X-Object-Transient-Sysmeta-<something>`.
pub fn is_object_transient_sysmeta(key: &str) -> bool {
    has_longer_prefix(key, X_OBJECT_TRANSIENT_SYSMETA_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_prefixes() {
        assert!(is_object_user_meta("X-Object-Meta-Color"));
        assert!(!is_object_user_meta("X-Object-Meta-"));
        assert!(is_object_sysmeta("x-object-sysmeta-slo-etag"));
        assert!(!is_object_sysmeta("x-object-transient-sysmeta-a"));
        assert!(is_object_transient_sysmeta(
            "X-Object-Transient-Sysmeta-Crypto"
        ));
        assert!(is_true(" Yes") && !is_true("no") && !is_true(""));
    }
}
