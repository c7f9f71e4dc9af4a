//! The proxy's settings, with Swift's `proxy-server.conf` defaults.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apus_core::policy::PolicyKind;
use apus_core::HashConfig;
use apus_ring::ReloadingRing;

/// A storage policy as the proxy and `/info` see it.
#[derive(Clone, Debug)]
pub struct Policy {
    pub index: u32,
    pub name: String,
    pub aliases: Vec<String>,
    pub default: bool,
    pub deprecated: bool,
    /// The object ring of this policy (`object.ring.gz`, `object-N.ring.gz`).
    pub ring: Arc<ReloadingRing>,
    /// Whole copies or fragment archives of an erasure code.
    pub kind: PolicyKind,
}

/// One tempauth user: `user_<account>_<user> = <key> [group ...]`.
#[derive(Clone, Debug)]
pub struct TempAuthUser {
    pub account: String,
    pub user: String,
    pub key: String,
    /// Groups besides `<account>` and `<account>:<user>`: `.admin`,
    /// `.reseller_admin`, or named groups such as `service`.
    pub groups: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct TempAuthConfig {
    /// Reseller prefixes with their trailing `_`, the first being the
    /// default (`AUTH_`), as `reseller_prefix = AUTH, SERVICE` gives.
    pub reseller_prefixes: Vec<String>,
    /// `<PREFIX>_require_group` settings, keyed by prefix with its `_`.
    pub require_group: BTreeMap<String, String>,
    pub users: Vec<TempAuthUser>,
    /// `token_life`.
    pub token_life: Duration,
    /// `auth_prefix`, `/auth/` by default.
    pub auth_prefix: String,
    /// The tokens issued: shared by every copy of this configuration, so
    /// a service beside the proxy (`apus images`) can tell who a token
    /// belongs to.
    pub tokens: Arc<crate::tempauth::TempAuthTokens>,
}

impl Default for TempAuthConfig {
    fn default() -> Self {
        TempAuthConfig {
            reseller_prefixes: vec!["AUTH_".to_string()],
            require_group: BTreeMap::new(),
            users: Vec::new(),
            token_life: Duration::from_secs(86_400),
            auth_prefix: "/auth/".to_string(),
            tokens: Arc::default(),
        }
    }
}

impl TempAuthConfig {
    /// The users of Swift's functional-test configuration, which
    /// `apus serve` creates by default.
    pub fn functest_defaults() -> Self {
        let user = |account: &str, user: &str, key: &str, groups: &[&str]| TempAuthUser {
            account: account.to_string(),
            user: user.to_string(),
            key: key.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        let mut require_group = BTreeMap::new();
        require_group.insert("SERVICE_".to_string(), "service".to_string());
        TempAuthConfig {
            reseller_prefixes: vec!["AUTH_".to_string(), "SERVICE_".to_string()],
            require_group,
            users: vec![
                user("admin", "admin", "admin", &[".admin", ".reseller_admin"]),
                user("test", "tester", "testing", &[".admin"]),
                user("test", "tester2", "testing2", &[".admin"]),
                user("test", "tester3", "testing3", &[]),
                user("test2", "tester2", "testing2", &[".admin"]),
                user("test5", "tester5", "testing5", &[".admin", "service"]),
            ],
            ..TempAuthConfig::default()
        }
    }
}

#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub hash: HashConfig,
    /// The rings, reloaded when their files change (Swift's
    /// `reload_time`); each lookup takes the ring in use at that moment.
    pub account_ring: Arc<ReloadingRing>,
    pub container_ring: Arc<ReloadingRing>,
    /// Storage policies by index; exactly one is the default.
    pub policies: Vec<Policy>,
    /// `conn_timeout`.
    pub conn_timeout: Duration,
    /// `node_timeout`: no progress from a storage node for this long fails
    /// that node's request.
    pub node_timeout: Duration,
    /// `client_timeout`: no progress from the client for this long ends
    /// its upload with 408.
    pub client_timeout: Duration,
    /// `recheck_account_existence` / `recheck_container_existence`: how
    /// long account and container info is cached.
    pub recheck_account_existence: Duration,
    pub recheck_container_existence: Duration,
    /// `error_suppression_limit` errors within `error_suppression_interval`
    /// take a node out of use for that interval.
    pub error_suppression_limit: u32,
    pub error_suppression_interval: Duration,
    /// How often an error-limited node gets one request as a probe; its
    /// first answer readmits it (apus's own; Swift waits out the interval).
    pub error_suppression_probe_interval: Duration,
    /// `concurrency_timeout`, `concurrent_gets` and `post_quorum_timeout`.
    pub timing: crate::backend::Timing,
    /// `account_autocreate`: accounts spring into being on first write.
    pub account_autocreate: bool,
    /// `allow_account_management`: account PUT and DELETE are allowed.
    pub allow_account_management: bool,
    /// `allow_open_expired`: `X-Open-Expired` reads expired objects.
    pub allow_open_expired: bool,
    /// `max_containers_per_account` (0: unlimited).
    pub max_containers_per_account: u64,
    /// Bytes per chunk when streaming objects.
    pub object_chunk_size: usize,
    pub tempauth: TempAuthConfig,
    /// The `authtoken` and `keystoneauth` filters' settings.
    pub keystone: crate::keystone::KeystoneConfig,
    /// The `s3api` filter's settings.
    pub s3api: crate::s3api::S3ApiConfig,
    /// The `slo` filter's settings.
    pub slo: crate::slo::SloConfig,
    /// The `bulk` filter's settings.
    pub bulk: crate::bulk::BulkConfig,
    /// The `symlink` filter's `symloop_max`.
    pub symloop_max: u32,
    /// The `versioned_writes` filter's two modes.
    pub versioning: VersioningConfig,
    /// The `tempurl` filter's settings.
    pub tempurl: crate::tempurl::TempUrlConfig,
    /// The `formpost` filter's settings.
    pub formpost: crate::formpost::FormPostConfig,
    /// Cross-origin settings (`cors_allow_origin`, `cors_expose_headers`,
    /// `strict_cors_mode`).
    pub cors: crate::cors::CorsConfig,
    /// The `crossdomain` filter's policy lines.
    pub cross_domain_policy: String,
    /// The `read_only` filter's settings.
    pub read_only: crate::read_only::ReadOnlyConfig,
    /// Where client requests and backend failures are counted for
    /// `/metrics` (`None`: not counted).
    pub metrics: Option<Arc<crate::metrics::ProxyMetrics>>,
    /// The `name_check` filter's settings.
    pub name_check: crate::name_check::NameCheckConfig,
    /// The `ratelimit` filter's settings.
    pub ratelimit: crate::ratelimit::RateLimitConfig,
    /// The `etag_quoter` filter's `enable_by_default`.
    pub etag_quoter_by_default: bool,
    /// The `domain_remap` filter's settings (no storage domain: it does
    /// nothing and is not in `/info`).
    pub domain_remap: crate::domain_remap::DomainRemapConfig,
    /// The filters in front of the controllers (`[pipeline:main]`).
    pub pipeline: crate::pipeline::Pipeline,
    /// Object servers of this process, which take uploads without a
    /// socket (`apus serve` registers them; none by default).
    pub local_nodes: apus_http::local::LocalNodes,
}

/// Swift's `[filter:versioned_writes]`: which versioning APIs run. Swift's
/// sample configuration turns both off; apus runs both unless told not
/// to, since a container only uses one when its owner asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersioningConfig {
    /// Legacy `X-Versions-Location` / `X-History-Location`.
    pub allow_versioned_writes: bool,
    /// `X-Versions-Enabled` (needs the `symlink` filter).
    pub allow_object_versioning: bool,
}

impl Default for VersioningConfig {
    fn default() -> Self {
        VersioningConfig {
            allow_versioned_writes: true,
            allow_object_versioning: true,
        }
    }
}

impl ProxyConfig {
    pub fn new(
        hash: HashConfig,
        account_ring: Arc<ReloadingRing>,
        container_ring: Arc<ReloadingRing>,
        policies: Vec<Policy>,
    ) -> Self {
        ProxyConfig {
            hash,
            account_ring,
            container_ring,
            policies,
            conn_timeout: Duration::from_millis(500),
            node_timeout: Duration::from_secs(10),
            client_timeout: Duration::from_secs(60),
            recheck_account_existence: Duration::from_secs(60),
            recheck_container_existence: Duration::from_secs(60),
            error_suppression_limit: 10,
            error_suppression_interval: Duration::from_secs(60),
            error_suppression_probe_interval: Duration::from_secs(2),
            timing: crate::backend::Timing::default(),
            account_autocreate: true,
            allow_account_management: false,
            allow_open_expired: false,
            max_containers_per_account: 0,
            object_chunk_size: 65_536,
            tempauth: TempAuthConfig::default(),
            keystone: crate::keystone::KeystoneConfig::default(),
            slo: crate::slo::SloConfig::default(),
            symloop_max: crate::symlink::DEFAULT_SYMLOOP_MAX,
            versioning: VersioningConfig::default(),
            tempurl: crate::tempurl::TempUrlConfig::default(),
            formpost: crate::formpost::FormPostConfig::default(),
            domain_remap: crate::domain_remap::DomainRemapConfig::default(),
            s3api: crate::s3api::S3ApiConfig::default(),
            etag_quoter_by_default: false,
            cors: crate::cors::CorsConfig::default(),
            cross_domain_policy: crate::crossdomain::DEFAULT_POLICY.to_string(),
            read_only: crate::read_only::ReadOnlyConfig::default(),
            metrics: None,
            ratelimit: crate::ratelimit::RateLimitConfig::default(),
            name_check: crate::name_check::NameCheckConfig::default(),
            bulk: crate::bulk::BulkConfig::default(),
            pipeline: crate::pipeline::Pipeline::default(),
            local_nodes: apus_http::local::LocalNodes::default(),
        }
    }

    pub fn default_policy(&self) -> Option<&Policy> {
        self.policies
            .iter()
            .find(|p| p.default)
            .or_else(|| self.policies.first())
    }

    pub fn policy(&self, index: u32) -> Option<&Policy> {
        self.policies.iter().find(|p| p.index == index)
    }

    /// A policy by name or alias, compared case-insensitively as Swift does.
    pub fn policy_by_name(&self, name: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| {
            p.name.eq_ignore_ascii_case(name)
                || p.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
    }
}
