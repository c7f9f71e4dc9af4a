//! Account updates: the report of a container's state that a container
//! server sends after a container PUT or DELETE, and the container updater
//! sends whenever the container's stats changed, to every account server
//! holding the container's account. On the wire it is `PUT
//! /<device>/<partition>/<account>/<container>` (the path quoted) with the
//! headers of [`AccountUpdate::headers`]: `X-Put-Timestamp`,
//! `X-Delete-Timestamp`, `X-Object-Count`, `X-Bytes-Used` and
//! `X-Backend-Storage-Policy-Index`, plus the sender's own `X-Trans-Id`,
//! `User-Agent` and `X-Account-Override-Deleted`.
//!
//! **apus's addition**: [`X_APUS_STATS_TIMESTAMP`], when the sender read
//! the object count and bytes from its container database (taken before
//! the read, so the counts hold at least every update acknowledged until
//! then). Account replicas keep the counts with the newest stats
//! timestamp, so a replica that missed a report cannot set the others
//! back by replicating its older row (Swift lets the last merged record
//! win). An account server given no stats timestamp (a Swift container
//! server or updater sent the update) uses its own clock; a Swift account
//! server ignores the header.

use apus_core::Timestamp;

use crate::headers::X_BACKEND_STORAGE_POLICY_INDEX;

pub const X_PUT_TIMESTAMP: &str = "x-put-timestamp";
pub const X_DELETE_TIMESTAMP: &str = "x-delete-timestamp";
pub const X_OBJECT_COUNT: &str = "x-object-count";
pub const X_BYTES_USED: &str = "x-bytes-used";
/// When the counts were read from the container (apus only).
pub const X_APUS_STATS_TIMESTAMP: &str = "x-apus-stats-timestamp";

/// A container's state as reported to its account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountUpdate {
    pub put_timestamp: Timestamp,
    pub delete_timestamp: Timestamp,
    pub object_count: i64,
    pub bytes_used: i64,
    pub storage_policy_index: i64,
    /// When `object_count` and `bytes_used` were read.
    pub stats_timestamp: Timestamp,
}

impl AccountUpdate {
    /// The headers carrying the report (timestamps in their internal form).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            (X_PUT_TIMESTAMP, self.put_timestamp.internal()),
            (X_DELETE_TIMESTAMP, self.delete_timestamp.internal()),
            (X_OBJECT_COUNT, self.object_count.to_string()),
            (X_BYTES_USED, self.bytes_used.to_string()),
            (
                X_BACKEND_STORAGE_POLICY_INDEX,
                self.storage_policy_index.to_string(),
            ),
            (X_APUS_STATS_TIMESTAMP, self.stats_timestamp.internal()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_the_report() {
        let ts = |s: &str| Timestamp::parse(s).unwrap();
        let u = AccountUpdate {
            put_timestamp: ts("1700000000.00000"),
            delete_timestamp: Timestamp::ZERO,
            object_count: 3,
            bytes_used: 600,
            storage_policy_index: 1,
            stats_timestamp: ts("1700000005.12345"),
        };
        let h = u.headers();
        let get = |name: &str| h.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("x-put-timestamp"), Some("1700000000.00000"));
        assert_eq!(get("x-delete-timestamp"), Some("0000000000.00000"));
        assert_eq!(get("x-object-count"), Some("3"));
        assert_eq!(get("x-bytes-used"), Some("600"));
        assert_eq!(get("x-backend-storage-policy-index"), Some("1"));
        assert_eq!(get("x-apus-stats-timestamp"), Some("1700000005.12345"));
        assert_eq!(
            Timestamp::parse(get(X_APUS_STATS_TIMESTAMP).unwrap()).unwrap(),
            u.stats_timestamp
        );
    }
}
