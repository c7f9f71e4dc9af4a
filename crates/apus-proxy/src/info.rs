//! Account and container info (Swift's `get_account_info` /
//! `get_container_info`): the existence, counts, ACLs, policy and metadata
//! the controllers decide on, from a HEAD to the storage servers, cached
//! for `recheck_*_existence` and dropped whenever this proxy changes the
//! account or container.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;

use crate::service::{BoxFuture, Env};

/// What the proxy knows of a container.
#[derive(Clone, Debug, Default)]
pub struct ContainerInfo {
    /// The backend status: 2xx when it exists, 404 when not, 503 unknown.
    pub status: u16,
    pub object_count: u64,
    pub bytes: u64,
    pub read_acl: Option<String>,
    pub write_acl: Option<String>,
    pub sync_key: Option<String>,
    pub storage_policy: u32,
    pub versions: Option<String>,
    /// All headers of the backend answer (metadata and sysmeta included).
    pub headers: HeaderMap,
}

impl ContainerInfo {
    pub fn exists(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn from_headers(status: u16, headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let num = |name: &str| text(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        ContainerInfo {
            status,
            object_count: num("x-container-object-count"),
            bytes: num("x-container-bytes-used"),
            read_acl: text("x-container-read"),
            write_acl: text("x-container-write"),
            sync_key: text("x-container-sync-key"),
            storage_policy: text("x-backend-storage-policy-index")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            versions: text("x-versions-location"),
            headers: headers.clone(),
        }
    }
}

/// What the proxy knows of an account.
#[derive(Clone, Debug, Default)]
pub struct AccountInfo {
    pub status: u16,
    pub container_count: u64,
    pub object_count: u64,
    pub bytes: u64,
    pub headers: HeaderMap,
}

impl AccountInfo {
    pub fn exists(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn from_headers(status: u16, headers: &HeaderMap) -> Self {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        AccountInfo {
            status,
            container_count: num("x-account-container-count"),
            object_count: num("x-account-object-count"),
            bytes: num("x-account-bytes-used"),
            headers: headers.clone(),
        }
    }
}

/// Swift's `get_account_info` / `get_container_info` as middleware see
/// them: one cache shared by the whole pipeline, filled by HEADs to the
/// storage servers made for the request's transaction.
pub trait InfoLookup: Send + Sync + 'static {
    fn account_info<'a>(&'a self, env: &'a Env, account: &'a str) -> BoxFuture<'a, AccountInfo>;
    fn container_info<'a>(
        &'a self,
        env: &'a Env,
        account: &'a str,
        container: &'a str,
    ) -> BoxFuture<'a, ContainerInfo>;
}

/// A small time-limited cache keyed by account or `account/container`.
pub struct InfoCache<T> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, T)>>,
    max_entries: usize,
}

impl<T: Clone> InfoCache<T> {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        InfoCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            max_entries,
        }
    }

    pub fn get(&self, key: &str) -> Option<T> {
        let entries = self.entries.lock().ok()?;
        match entries.get(key) {
            Some((at, value)) if at.elapsed() < self.ttl => Some(value.clone()),
            _ => None,
        }
    }

    pub fn put(&self, key: &str, value: T) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= self.max_entries {
                let ttl = self.ttl;
                entries.retain(|_, (at, _)| at.elapsed() < ttl);
                if entries.len() >= self.max_entries {
                    entries.clear();
                }
            }
            entries.insert(key.to_string(), (Instant::now(), value));
        }
    }

    pub fn forget(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    /// Drops every entry whose key starts with `prefix` (an account's
    /// containers when the account goes away).
    pub fn forget_prefix(&self, prefix: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|k, _| !k.starts_with(prefix));
        }
    }
}

/// The `/info` document: the cluster's constraints and policies under
/// `swift`, and the entry of each filter in the pipeline that registers
/// one, as Swift's `register_swift_info` does.
pub fn capabilities(config: &crate::config::ProxyConfig) -> serde_json::Value {
    use apus_proto::constraints as c;
    let policies: Vec<serde_json::Value> = config
        .policies
        .iter()
        .filter(|p| !p.deprecated)
        .map(|p| {
            let mut names = vec![p.name.clone()];
            names.extend(p.aliases.iter().cloned());
            let mut v = serde_json::json!({
                "name": p.name,
                "aliases": names.join(", "),
            });
            if p.default {
                v["default"] = serde_json::Value::Bool(true);
            }
            v
        })
        .collect();
    let mut info = serde_json::json!({
        "swift": {
            "version": "2.38.3",
            "strict_cors_mode": config.cors.strict_mode,
            "policies": policies,
            "allow_account_management": config.allow_account_management,
            "account_autocreate": config.account_autocreate,
            "allow_open_expired": config.allow_open_expired,
            "max_file_size": c::MAX_FILE_SIZE,
            "max_meta_name_length": c::MAX_META_NAME_LENGTH,
            "max_meta_value_length": c::MAX_META_VALUE_LENGTH,
            "max_meta_count": c::MAX_META_COUNT,
            "max_meta_overall_size": c::MAX_META_OVERALL_SIZE,
            "max_header_size": c::MAX_HEADER_SIZE,
            "max_object_name_length": c::MAX_OBJECT_NAME_LENGTH,
            "container_listing_limit": 10_000,
            "account_listing_limit": 10_000,
            "max_account_name_length": c::MAX_ACCOUNT_NAME_LENGTH,
            "max_container_name_length": c::MAX_CONTAINER_NAME_LENGTH,
            "extra_header_count": 0,
            "max_request_line": 8192,
        },
    });
    for (name, entry) in config.pipeline.info(config) {
        info[name] = entry;
    }
    info
}
