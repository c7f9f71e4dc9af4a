//! Container updates: the message an object server sends to each container
//! server holding the object's container after a PUT, POST or DELETE (and
//! to the expiring-objects queue), and that it saves as an async pending
//! when the container server cannot be reached. The object updater replays
//! saved messages with the same request.
//!
//! On the wire an update is `<op> /<device>/<partition>/<account>/<container>/<object>`
//! (the path quoted) with the headers of [`ContainerUpdate::headers`]:
//! `X-Timestamp`, and for PUTs `X-Size`, `X-Content-Type`, `X-Etag`
//! (optionally `X-Content-Type-Timestamp`, `X-Meta-Timestamp`), plus
//! `X-Trans-Id`, `Referer`, `X-Backend-Storage-Policy-Index` and
//! `User-Agent`. Header names are kept title-cased as Swift pickles them.

use apus_core::HashConfig;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::headers as h;
use crate::path::title_case;

/// The account holding the expiring-objects queue.
pub const EXPIRER_ACCOUNT: &str = ".expiring_objects";
/// Seconds per task-container window.
pub const EXPIRER_DIVISOR: u64 = 86_400;
/// Task containers per window (spread by the object's hash).
pub const EXPIRER_TASK_CONTAINERS_PER_DIVISOR: u64 = 100;
/// The content type of queue entries.
pub const X_DELETE_TYPE: &str = "text/plain";
/// MD5 of nothing: the ETag of queue entries.
pub const EMPTY_ETAG: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// One container update, as sent and as saved.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ContainerUpdate {
    /// `PUT` or `DELETE`.
    pub op: String,
    pub account: String,
    pub container: String,
    pub obj: String,
    /// Headers to send, names title-cased, in insertion order.
    pub headers: Vec<(String, String)>,
    /// `account/container` to send to instead (a shard), if redirected.
    pub container_path: Option<String>,
    /// `X-Container-Root-Db-State` as the proxy passed it.
    pub db_state: Option<String>,
}

impl ContainerUpdate {
    pub fn new(op: &str, account: &str, container: &str, obj: &str) -> Self {
        ContainerUpdate {
            op: op.to_string(),
            account: account.to_string(),
            container: container.to_string(),
            obj: obj.to_string(),
            ..Default::default()
        }
    }

    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets a header, replacing any of the same name.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        if let Some(slot) = self
            .headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            slot.1 = value;
        } else {
            self.headers.push((title_case(name), value));
        }
    }

    /// The (unquoted) path of the update below `/<device>/<partition>`.
    pub fn object_path(&self) -> String {
        match &self.container_path {
            Some(cp) => format!("/{}/{}", cp, self.obj),
            None => format!("/{}/{}/{}", self.account, self.container, self.obj),
        }
    }

    /// The full quoted request path for a container device and partition.
    pub fn request_path(&self, device: &str, partition: &str) -> String {
        crate::path::quote(&format!("/{device}/{partition}{}", self.object_path()))
    }

    /// The timestamp naming the saved async pending (`X-Meta-Timestamp`
    /// when present, else `X-Timestamp`).
    pub fn pending_timestamp(&self) -> Option<&str> {
        self.header(h::X_META_TIMESTAMP)
            .or_else(|| self.header(h::X_TIMESTAMP))
    }

    /// The headers as an `http::HeaderMap`; headers that are not valid HTTP
    /// are skipped (they cannot be sent anyway).
    pub fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.headers.len());
        for (k, v) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                map.insert(name, value);
            }
        }
        map
    }

    /// Rebuilds an update from received headers (the container server side).
    pub fn from_header_map(
        op: &str,
        account: &str,
        container: &str,
        obj: &str,
        map: &HeaderMap,
    ) -> Self {
        let mut update = ContainerUpdate::new(op, account, container, obj);
        for (k, v) in map {
            if let Ok(v) = v.to_str() {
                update.set_header(k.as_str(), v);
            }
        }
        update
    }
}

/// A container server to update: `ip:port`, device and partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateTarget {
    pub host: String,
    pub device: String,
    pub partition: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("different numbers of hosts and devices: {hosts:?} vs {devices:?}")]
pub struct TargetMismatch {
    pub hosts: String,
    pub devices: String,
}

/// The container servers of `X-Container-Host` / `-Device` (comma-separated,
/// paired in order) and `X-Container-Partition`. No partition: no updates.
pub fn container_targets(
    hosts: Option<&str>,
    partition: Option<&str>,
    devices: Option<&str>,
) -> Result<Vec<UpdateTarget>, TargetMismatch> {
    let hosts_s = hosts.unwrap_or("");
    let devices_s = devices.unwrap_or("");
    let hosts: Vec<&str> = hosts_s.split(',').map(str::trim).collect();
    let devices: Vec<&str> = devices_s.split(',').map(str::trim).collect();
    if hosts.len() != devices.len() {
        return Err(TargetMismatch {
            hosts: hosts_s.to_string(),
            devices: devices_s.to_string(),
        });
    }
    let partition = partition.unwrap_or("");
    if partition.is_empty() {
        return Ok(Vec::new());
    }
    Ok(hosts
        .into_iter()
        .zip(devices)
        .map(|(host, device)| UpdateTarget {
            host: host.to_string(),
            device: device.to_string(),
            partition: partition.to_string(),
        })
        .collect())
}

/// The queue servers of `X-Delete-At-Host` / `-Device` / `-Partition`:
/// pairs with an empty member are dropped; `None` when there is nothing
/// to send to (the update is then saved for the updater directly).
pub fn delete_at_targets(
    hosts: &str,
    partition: Option<&str>,
    devices: Option<&str>,
) -> Option<Vec<UpdateTarget>> {
    let partition = partition.unwrap_or("");
    let targets: Vec<UpdateTarget> = hosts
        .split(',')
        .map(str::trim)
        .zip(devices.unwrap_or("").split(',').map(str::trim))
        .filter(|(h, d)| !h.is_empty() && !d.is_empty() && !partition.is_empty())
        .map(|(host, device)| UpdateTarget {
            host: host.to_string(),
            device: device.to_string(),
            partition: partition.to_string(),
        })
        .collect();
    (!targets.is_empty()).then_some(targets)
}

/// Swift's `normalize_delete_at_timestamp`: whole seconds, ten digits,
/// clamped to `0..=9999999999`.
pub fn normalize_delete_at(secs: f64) -> String {
    let v = if secs.is_nan() {
        0.0
    } else {
        secs.clamp(0.0, 9_999_999_999.999_99)
    };
    format!("{:010}", v.trunc() as u64)
}

/// The queue container for an object expiring at `delete_at`: the start
/// of its day, minus a spread of up to 99 seconds chosen by its hash.
pub fn expirer_container(
    hash: &HashConfig,
    delete_at: u64,
    account: &str,
    container: &str,
    obj: &str,
) -> String {
    let digest = hash.hash_path(account, Some(container), Some(obj));
    let shard = u128::from_str_radix(&digest, 16).unwrap_or(0)
        % u128::from(EXPIRER_TASK_CONTAINERS_PER_DIVISOR);
    let base = (delete_at / EXPIRER_DIVISOR * EXPIRER_DIVISOR) as i128 - shard as i128;
    normalize_delete_at(base as f64)
}

/// The queue entry's object name: `<delete_at>-<account>/<container>/<object>`.
pub fn expirer_task_obj(delete_at: u64, account: &str, container: &str, obj: &str) -> String {
    format!(
        "{}-{account}/{container}/{obj}",
        normalize_delete_at(delete_at as f64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = container_targets(Some("1.2.3.4:5, 1.2.3.5:6"), Some("7"), Some("sda,sdb"));
        assert_eq!(t.as_ref().map(|v| v.len()), Ok(2));
        assert_eq!(
            t.as_ref().ok().map(|v| v[1].host.as_str()),
            Some("1.2.3.5:6")
        );
        assert!(container_targets(Some("a,b"), Some("1"), Some("sda")).is_err());
        assert_eq!(container_targets(None, None, None), Ok(vec![]));
        assert_eq!(container_targets(Some("a"), None, Some("d")), Ok(vec![]));
        assert_eq!(
            delete_at_targets("a,", Some("1"), Some("d,e")).map(|v| v.len()),
            Some(1)
        );
        assert_eq!(delete_at_targets("a", None, Some("d")), None);
    }

    #[test]
    fn headers_and_paths() {
        let mut u = ContainerUpdate::new("PUT", "AUTH_a", "c", "o b");
        u.set_header("x-size", "3");
        u.set_header("X-Size", "4");
        u.set_header("x-timestamp", "1.00000");
        assert_eq!(
            u.headers,
            vec![
                ("X-Size".into(), "4".into()),
                ("X-Timestamp".into(), "1.00000".into())
            ]
        );
        assert_eq!(u.request_path("sda", "12"), "/sda/12/AUTH_a/c/o%20b");
        assert_eq!(u.pending_timestamp(), Some("1.00000"));
        let back =
            ContainerUpdate::from_header_map("PUT", "AUTH_a", "c", "o b", &u.to_header_map());
        assert_eq!(back.header("x-size"), Some("4"));
    }

    #[test]
    fn expirer_names() {
        assert_eq!(normalize_delete_at(-5.0), "0000000000");
        assert_eq!(normalize_delete_at(1e12), "9999999999");
        assert_eq!(
            expirer_task_obj(1700000000, "a", "c", "o"),
            "1700000000-a/c/o"
        );
        let hc = HashConfig::new("", "changeme");
        let name = expirer_container(&hc, 1_700_000_000, "a", "c", "o");
        // Swift 2.38.3's ExpirerConfig gives the same for this hash config.
        assert_eq!(name, "1699919963");
    }
}
