//! Node configuration: which roles this process runs and with what settings.
//!
//! The file is TOML (documented in `docs/config.md`). It is read into the
//! `File*` types below, which mirror the file one to one, then checked and
//! resolved into a [`NodeConfig`]. Settings left out keep the defaults of
//! the proxy and server crates (Swift's defaults), so this module only
//! overrides what the file names.
//!
//! Two layouts:
//! - local (`data = "dir"`, or no file at all): one process runs the whole
//!   cluster over a data directory it manages itself (rings, `swift.conf`
//!   and device directories are created on first start);
//! - node (no `data`): the operator provides rings, the hash salt and the
//!   devices, and names the roles, as on each machine of a real cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use apus_core::policy::{
    config_true, storage_policy_sections, EcParams, PolicyKind, PolicySection,
};
use apus_core::HashConfig;
use apus_proxy::keystone::KeystoneConfig;
use apus_proxy::{Pipeline, ProxyConfig, TempAuthConfig, TempAuthUser};
use apus_server::db_common::DbServerConfig;
use apus_server::object::ObjectServerConfig;
use serde::Deserialize;

/// Where `apus serve` keeps a local cluster when given neither `--data`
/// nor `--config`.
pub const DEFAULT_DATA_DIR: &str = "apus-data";
/// The proxy's address of a local cluster.
pub const LOCAL_PROXY_BIND: &str = "127.0.0.1:8080";
/// Swift's defaults for a node: the proxy and storage servers listen on
/// every address; the storage ports of Swift's sample configs.
const NODE_PROXY_BIND: &str = "0.0.0.0:8080";
const NODE_STORAGE_IP: &str = "0.0.0.0";
const OBJECT_PORT: u16 = 6200;
const CONTAINER_PORT: u16 = 6201;
const ACCOUNT_PORT: u16 = 6202;
const DEFAULT_DEVICES: &str = "/srv/node";
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The file, as written

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub roles: Option<Vec<Role>>,
    pub data: Option<PathBuf>,
    pub swift_conf: Option<PathBuf>,
    pub hash: Option<FileHash>,
    pub rings_dir: Option<PathBuf>,
    #[serde(default, rename = "policy")]
    pub policies: Vec<FilePolicy>,
    /// Makes the policy of this name (or alias) the default, whatever
    /// the policies themselves say: one line to put new containers on
    /// `ec42` in a one-process cluster.
    pub default_policy: Option<String>,
    pub shutdown_timeout: Option<f64>,
    pub log_requests: Option<bool>,
    pub proxy: Option<FileProxy>,
    pub storage: Option<FileStorage>,
    pub daemons: Option<FileDaemons>,
    /// `apus images`, the Glance-compatible image service beside the proxy.
    pub images: Option<FileImages>,
}

/// `[images]`: `apus images`, served beside the proxy (it keeps image
/// data through the proxy's pipeline and checks tokens with the proxy's
/// authentication).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileImages {
    /// On by default in a one-process cluster; elsewhere `[images]` turns
    /// it on unless this is `false`.
    pub enabled: Option<bool>,
    pub bind: Option<String>,
    /// The SQLite file of the image records.
    pub db: Option<PathBuf>,
    /// Where the data lives: `<account>/<container>` and
    /// `<account>/<container>_segments`.
    pub account: Option<String>,
    pub container: Option<String>,
    pub segment_size: Option<u64>,
    pub image_size_cap: Option<u64>,
    pub member_roles: Option<Vec<String>>,
    pub public_endpoint: Option<String>,
    pub disk_formats: Option<Vec<String>>,
    pub container_formats: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Proxy,
    Storage,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileHash {
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub suffix: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePolicy {
    pub index: u32,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub deprecated: bool,
    /// `replication` (the default) or `erasure_coding`, and the latter's
    /// options, as in Swift's `[storage-policy:N]`.
    pub policy_type: Option<String>,
    pub ec_type: Option<String>,
    pub ec_num_data_fragments: Option<u32>,
    pub ec_num_parity_fragments: Option<u32>,
    pub ec_object_segment_size: Option<u64>,
    pub ec_duplication_factor: Option<u32>,
    /// What the options above resolve to.
    #[serde(skip)]
    pub kind: PolicyKind,
}

impl FilePolicy {
    /// A replicated policy.
    pub fn replicated(index: u32, name: &str, default: bool) -> Self {
        FilePolicy {
            index,
            name: name.to_string(),
            aliases: Vec::new(),
            default,
            deprecated: false,
            policy_type: None,
            ec_type: None,
            ec_num_data_fragments: None,
            ec_num_parity_fragments: None,
            ec_object_segment_size: None,
            ec_duplication_factor: None,
            kind: PolicyKind::Replication,
        }
    }

    /// A policy from a `swift.conf` section, its values as Swift reads
    /// them; an error names the option that is not understood.
    fn from_swift_conf(section: &PolicySection) -> Result<Self> {
        let index = section.index;
        let mut p = FilePolicy::replicated(index, "", false);
        let number = |key: &str, value: &str| -> Result<u64> {
            value.trim().parse::<u64>().map_err(|_| {
                anyhow!("storage-policy:{index}: {key} = {value:?} is not a whole number")
            })
        };
        for (key, value) in &section.options {
            match key.as_str() {
                "name" => p.name = value.clone(),
                "aliases" => {
                    p.aliases = value
                        .split(',')
                        .map(|a| a.trim().to_string())
                        .filter(|a| !a.is_empty())
                        .collect()
                }
                "default" => p.default = config_true(value),
                "deprecated" => p.deprecated = config_true(value),
                "policy_type" => p.policy_type = Some(value.clone()),
                "ec_type" => p.ec_type = Some(value.clone()),
                "ec_num_data_fragments" => {
                    p.ec_num_data_fragments = Some(narrow(key, number(key, value)?)?)
                }
                "ec_num_parity_fragments" => {
                    p.ec_num_parity_fragments = Some(narrow(key, number(key, value)?)?)
                }
                "ec_object_segment_size" => p.ec_object_segment_size = Some(number(key, value)?),
                "ec_duplication_factor" => {
                    p.ec_duplication_factor = Some(narrow(key, number(key, value)?)?)
                }
                // Swift's own choice of on-disk module has one value here.
                "diskfile_module" => {}
                other => bail!("storage-policy:{index}: invalid option {other:?}"),
            }
        }
        if p.name.is_empty() {
            bail!("storage-policy:{index}: no name");
        }
        Ok(p)
    }

    /// Checks the type and its options as Swift's `StoragePolicy` classes
    /// do, and sets [`FilePolicy::kind`].
    fn resolve_kind(&mut self) -> Result<()> {
        let index = self.index;
        let ec_options_set = self.ec_type.is_some()
            || self.ec_num_data_fragments.is_some()
            || self.ec_num_parity_fragments.is_some()
            || self.ec_object_segment_size.is_some()
            || self.ec_duplication_factor.is_some();
        match self.policy_type.as_deref().unwrap_or("replication") {
            "replication" => {
                if ec_options_set {
                    bail!("policy {index}: ec_* options are for policy_type = \"erasure_coding\"");
                }
                self.kind = PolicyKind::Replication;
            }
            "erasure_coding" => {
                let ec_type = self
                    .ec_type
                    .clone()
                    .ok_or_else(|| anyhow!("policy {index}: erasure_coding needs ec_type"))?;
                let parsed: apus_ec::EcType = ec_type.parse().map_err(|_| {
                    anyhow!(
                        "policy {index}: ec_type {ec_type:?} is not one of liberasurecode_rs_vand, \
                         isa_l_rs_vand, isa_l_rs_cauchy"
                    )
                })?;
                let positive = |key: &str, v: Option<u64>| -> Result<u64> {
                    match v {
                        Some(n) if n > 0 => Ok(n),
                        Some(n) => bail!("policy {index}: {key} = {n} must be above 0"),
                        None => bail!("policy {index}: erasure_coding needs {key}"),
                    }
                };
                let ndata = positive(
                    "ec_num_data_fragments",
                    self.ec_num_data_fragments.map(u64::from),
                )?;
                let nparity = positive(
                    "ec_num_parity_fragments",
                    self.ec_num_parity_fragments.map(u64::from),
                )?;
                let segment_size = positive(
                    "ec_object_segment_size",
                    Some(
                        self.ec_object_segment_size
                            .unwrap_or(apus_core::policy::DEFAULT_EC_SEGMENT_SIZE),
                    ),
                )?;
                let duplication =
                    positive("ec_duplication_factor", Some(u64::from(self.ec_duplication_factor.unwrap_or(1))))?;
                // Duplicated fragments need the proxy and reconstructor
                // to map ring positions onto indexes modulo the width:
                // refused rather than served wrong.
                if duplication != 1 {
                    bail!(
                        "policy {index}: ec_duplication_factor = {duplication} is not supported yet (only 1)"
                    );
                }
                let (ndata, nparity) = (narrow("ec_num_data_fragments", ndata)?, narrow("ec_num_parity_fragments", nparity)?);
                apus_ec::EcScheme::new(parsed, ndata as usize, nparity as usize)
                    .map_err(|e| anyhow!("policy {index}: {ec_type} {ndata}+{nparity}: {e}"))?;
                // Swift's guard for liberasurecode bug 1639691.
                if ec_type == "isa_l_rs_vand" && nparity >= 5 && !self.deprecated {
                    bail!(
                        "policy {index}: isa_l_rs_vand with 5 or more parity fragments is known \
                         to harm durability; such a policy must be deprecated"
                    );
                }
                self.kind = PolicyKind::ErasureCoding(EcParams {
                    ec_type,
                    ndata,
                    nparity,
                    segment_size,
                    duplication_factor: narrow("ec_duplication_factor", duplication)?,
                });
            }
            other => bail!(
                "policy {index}: policy_type {other:?} is neither \"replication\" nor \"erasure_coding\""
            ),
        }
        Ok(())
    }
}

fn narrow(key: &str, v: u64) -> Result<u32> {
    u32::try_from(v).map_err(|_| anyhow!("{key} = {v} is too large"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProxy {
    pub bind: Option<String>,
    /// The admin address of the proxy's `/metrics` (`"off"` or `""`: none).
    pub metrics_bind: Option<String>,
    pub conn_timeout: Option<f64>,
    pub node_timeout: Option<f64>,
    pub client_timeout: Option<f64>,
    pub recheck_account_existence: Option<f64>,
    pub recheck_container_existence: Option<f64>,
    pub error_suppression_limit: Option<u32>,
    pub error_suppression_interval: Option<f64>,
    pub error_suppression_probe_interval: Option<f64>,
    pub concurrent_gets: Option<bool>,
    pub concurrency_timeout: Option<f64>,
    pub post_quorum_timeout: Option<f64>,
    pub account_autocreate: Option<bool>,
    pub allow_account_management: Option<bool>,
    pub allow_open_expired: Option<bool>,
    /// Origins allowed for every container (comma-separated, as Swift's).
    pub cors_allow_origin: Option<String>,
    /// Headers exposed to every allowed origin (comma-separated).
    pub cors_expose_headers: Option<String>,
    pub strict_cors_mode: Option<bool>,
    pub max_containers_per_account: Option<u64>,
    pub object_chunk_size: Option<usize>,
    pub ring_reload_time: Option<f64>,
    /// Swift's `[pipeline:main]`: a list of names, or one line of them.
    pub pipeline: Option<FilePipeline>,
    pub tempauth: Option<FileTempAuth>,
    /// Keystone authentication (`authtoken` and `keystoneauth`).
    pub keystone: Option<FileKeystone>,
    pub slo: Option<FileSlo>,
    pub symlink: Option<FileSymlink>,
    pub versioned_writes: Option<FileVersionedWrites>,
    pub tempurl: Option<FileTempUrl>,
    pub ratelimit: Option<FileRateLimit>,
    pub name_check: Option<FileNameCheck>,
    pub formpost: Option<FileFormPost>,
    pub domain_remap: Option<FileDomainRemap>,
    pub s3api: Option<FileS3Api>,
    pub etag_quoter: Option<FileEtagQuoter>,
    pub crossdomain: Option<FileCrossDomain>,
    pub read_only: Option<FileReadOnly>,
}

/// `[proxy.crossdomain]`: Swift's `[filter:crossdomain]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCrossDomain {
    pub cross_domain_policy: Option<String>,
}

/// `[proxy.read_only]`: Swift's `[filter:read_only]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileReadOnly {
    pub read_only: Option<bool>,
    pub allow_deletes: Option<bool>,
}

/// `[proxy.etag_quoter]`: Swift's `[filter:etag-quoter]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEtagQuoter {
    pub enable_by_default: Option<bool>,
}

/// `[proxy.domain_remap]`: Swift's `[filter:domain_remap]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDomainRemap {
    /// Comma-separated, as in Swift; empty turns the filter off.
    pub storage_domain: Option<String>,
    pub path_root: Option<String>,
    pub reseller_prefixes: Option<String>,
    pub default_reseller_prefix: Option<String>,
    pub mangle_client_paths: Option<bool>,
}

/// `[proxy.s3api]`: Swift's `[filter:s3api]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileS3Api {
    /// Comma-separated domains for virtual-hosted style, as in Swift.
    pub storage_domain: Option<String>,
    pub location: Option<String>,
    pub allowable_clock_skew: Option<i64>,
    pub max_bucket_listing: Option<usize>,
}

/// `[proxy.tempurl]`: Swift's `[filter:tempurl]`, each a space-separated
/// list as in Swift's file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTempUrl {
    pub methods: Option<String>,
    pub incoming_remove_headers: Option<String>,
    pub incoming_allow_headers: Option<String>,
    pub outgoing_remove_headers: Option<String>,
    pub outgoing_allow_headers: Option<String>,
    pub allowed_digests: Option<String>,
}

impl FileTempUrl {
    /// The file's settings over the defaults; an error when no supported
    /// digest is left.
    fn apply(&self, c: &mut apus_proxy::tempurl::TempUrlConfig) -> anyhow::Result<()> {
        let words = |s: &String| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        for (field, value) in [
            (&mut c.methods, &self.methods),
            (
                &mut c.incoming_remove_headers,
                &self.incoming_remove_headers,
            ),
            (&mut c.incoming_allow_headers, &self.incoming_allow_headers),
            (
                &mut c.outgoing_remove_headers,
                &self.outgoing_remove_headers,
            ),
            (&mut c.outgoing_allow_headers, &self.outgoing_allow_headers),
        ] {
            if let Some(v) = value {
                *field = words(v);
            }
        }
        if let Some(d) = &self.allowed_digests {
            *c = c.clone().with_digests(&words(d)).ok_or_else(|| {
                anyhow::anyhow!(
                    "proxy.tempurl.allowed_digests: no supported digest (sha1, sha256, sha512)"
                )
            })?;
        }
        Ok(())
    }
}

/// `[proxy.formpost]`: Swift's `[filter:formpost]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFormPost {
    /// Space-separated, as in Swift's file.
    pub allowed_digests: Option<String>,
}

impl FileFormPost {
    /// The settings; an error when no supported digest is left (Swift
    /// refuses to start too).
    fn resolve(&self) -> anyhow::Result<apus_proxy::formpost::FormPostConfig> {
        let Some(d) = &self.allowed_digests else {
            return Ok(apus_proxy::formpost::FormPostConfig::default());
        };
        let words: Vec<String> = d.split_whitespace().map(str::to_string).collect();
        apus_proxy::formpost::FormPostConfig::with_digests(&words).ok_or_else(|| {
            anyhow::anyhow!(
                "proxy.formpost.allowed_digests: no supported digest (sha1, sha256, sha512)"
            )
        })
    }
}

/// `[proxy.ratelimit]`: Swift's `[filter:ratelimit]`. Swift's
/// `container_ratelimit_<count> = <rate>` lines are a table here:
/// `container_ratelimits = { 100 = 100, 1000 = 50 }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRateLimit {
    pub account_ratelimit: Option<f64>,
    pub max_sleep_time_seconds: Option<f64>,
    pub log_sleep_time_seconds: Option<f64>,
    pub clock_accuracy: Option<u32>,
    pub rate_buffer_seconds: Option<u32>,
    /// Comma-separated, as in Swift (deprecated there for sysmeta).
    pub account_whitelist: Option<String>,
    pub account_blacklist: Option<String>,
    pub container_ratelimits: Option<std::collections::BTreeMap<String, f64>>,
    pub container_listing_ratelimits: Option<std::collections::BTreeMap<String, f64>>,
}

impl FileRateLimit {
    /// The file's settings over Swift's defaults; an error names the key
    /// that is out of range.
    fn resolve(&self) -> anyhow::Result<apus_proxy::ratelimit::RateLimitConfig> {
        let mut c = apus_proxy::ratelimit::RateLimitConfig::default();
        let non_negative = |key: &str, v: Option<f64>, into: &mut f64| -> anyhow::Result<()> {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0) {
                    bail!("proxy.ratelimit.{key}: {v} is not a number of 0 or more");
                }
                *into = v;
            }
            Ok(())
        };
        non_negative(
            "account_ratelimit",
            self.account_ratelimit,
            &mut c.account_ratelimit,
        )?;
        non_negative(
            "max_sleep_time_seconds",
            self.max_sleep_time_seconds,
            &mut c.max_sleep_time_seconds,
        )?;
        non_negative(
            "log_sleep_time_seconds",
            self.log_sleep_time_seconds,
            &mut c.log_sleep_time_seconds,
        )?;
        if let Some(v) = self.clock_accuracy {
            if v == 0 {
                bail!("proxy.ratelimit.clock_accuracy: must be 1 or more");
            }
            c.clock_accuracy = v;
        }
        if let Some(v) = self.rate_buffer_seconds {
            c.rate_buffer_seconds = v;
        }
        let csv = |v: &String| {
            v.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
        };
        if let Some(v) = &self.account_whitelist {
            c.account_whitelist = csv(v);
        }
        if let Some(v) = &self.account_blacklist {
            c.account_blacklist = csv(v);
        }
        let points = |key: &str,
                      table: &std::collections::BTreeMap<String, f64>|
         -> anyhow::Result<Vec<(u64, f64)>> {
            let mut points = Vec::new();
            for (count, rate) in table {
                let count: u64 = count.parse().map_err(|_| {
                    anyhow!("proxy.ratelimit.{key}: {count:?} is not an object count")
                })?;
                if !(rate.is_finite() && *rate > 0.0) {
                    bail!("proxy.ratelimit.{key}.{count}: the rate must be above 0");
                }
                points.push((count, *rate));
            }
            points.sort_by_key(|point| point.0);
            Ok(points)
        };
        if let Some(t) = &self.container_ratelimits {
            c.container_ratelimits = points("container_ratelimits", t)?;
        }
        if let Some(t) = &self.container_listing_ratelimits {
            c.container_listing_ratelimits = points("container_listing_ratelimits", t)?;
        }
        Ok(c)
    }
}

/// `[proxy.name_check]`: Swift's `[filter:name_check]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileNameCheck {
    pub forbidden_chars: Option<String>,
    pub maximum_length: Option<usize>,
    /// Empty checks no expression.
    pub forbidden_regexp: Option<String>,
}

impl FileNameCheck {
    fn resolve(&self) -> anyhow::Result<apus_proxy::name_check::NameCheckConfig> {
        use apus_proxy::name_check as nc;
        nc::NameCheckConfig::new(
            self.forbidden_chars
                .as_deref()
                .unwrap_or(nc::DEFAULT_FORBIDDEN_CHARS),
            self.maximum_length.unwrap_or(nc::DEFAULT_MAXIMUM_LENGTH),
            self.forbidden_regexp
                .as_deref()
                .unwrap_or(nc::DEFAULT_FORBIDDEN_REGEXP),
        )
        .map_err(|e| anyhow!("proxy.name_check.{e}"))
    }
}

/// `[proxy.versioned_writes]`: Swift's `[filter:versioned_writes]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileVersionedWrites {
    pub allow_versioned_writes: Option<bool>,
    pub allow_object_versioning: Option<bool>,
}

/// `[proxy.symlink]`: Swift's `[filter:symlink]` settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSymlink {
    /// Links followed at most in a chain (below 1: Swift's default, 2).
    pub symloop_max: Option<u32>,
}

impl FileSlo {
    /// The file's settings over `c`.
    fn apply(&self, c: &mut apus_proxy::slo::SloConfig) {
        if let Some(v) = self.max_manifest_segments {
            c.max_manifest_segments = v;
        }
        if let Some(v) = self.max_manifest_size {
            c.max_manifest_size = v;
        }
        set_secs(&mut c.max_get_time, self.max_get_time);
        if let Some(v) = self.rate_limit_under_size {
            c.rate_limit_under_size = v;
        }
        if let Some(v) = self.rate_limit_after_segment {
            c.rate_limit_after_segment = v;
        }
        if let Some(v) = self.rate_limit_segments_per_sec {
            c.rate_limit_segments_per_sec = v;
        }
        if let Some(v) = self.concurrency {
            // Swift keeps it within 1..=1000 (0 would never HEAD).
            c.concurrency = v.clamp(1, 1000);
        }
        if let Some(v) = self.allow_async_delete {
            c.allow_async_delete = v;
        }
    }
}

/// `[proxy.slo]`: Swift's `[filter:slo]` settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSlo {
    pub allow_async_delete: Option<bool>,
    pub max_manifest_segments: Option<usize>,
    pub max_manifest_size: Option<usize>,
    pub max_get_time: Option<f64>,
    pub rate_limit_under_size: Option<u64>,
    pub rate_limit_after_segment: Option<u64>,
    pub rate_limit_segments_per_sec: Option<u64>,
    pub concurrency: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FilePipeline {
    Names(Vec<String>),
    Line(String),
}

impl FilePipeline {
    fn resolve(&self) -> Result<Pipeline> {
        let names: Vec<&str> = match self {
            FilePipeline::Names(names) => names.iter().map(String::as_str).collect(),
            FilePipeline::Line(line) => line.split_whitespace().collect(),
        };
        Ok(Pipeline::from_names(&names)?)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTempAuth {
    pub reseller_prefixes: Option<Vec<String>>,
    pub require_group: Option<BTreeMap<String, String>>,
    pub token_life: Option<f64>,
    pub users: Option<Vec<FileUser>>,
}

/// `[proxy.keystone]`: the settings Swift splits between
/// `[filter:authtoken]` and `[filter:keystoneauth]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKeystone {
    pub auth_url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub user_domain_id: Option<String>,
    pub project_name: Option<String>,
    pub project_domain_id: Option<String>,
    pub delay_auth_decision: Option<bool>,
    pub token_cache_time: Option<f64>,
    pub token_cache_size: Option<usize>,
    pub http_timeout: Option<f64>,
    pub reseller_prefixes: Option<Vec<String>>,
    pub operator_roles: Option<Vec<String>>,
    pub service_roles: Option<Vec<String>>,
    pub project_reader_roles: Option<Vec<String>>,
    /// Roles for one reseller prefix's accounts, replacing the three lists
    /// above for it (Swift's `<PREFIX>_operator_roles` and friends).
    pub prefix_roles: Option<BTreeMap<String, FilePrefixRoles>>,
    pub reseller_admin_role: Option<String>,
    pub system_reader_roles: Option<Vec<String>>,
    pub allow_overrides: Option<bool>,
    pub default_domain_id: Option<String>,
    pub allow_names_in_acls: Option<bool>,
}

impl std::fmt::Debug for FileKeystone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The service password stays out of logs and error messages.
        f.debug_struct("FileKeystone")
            .field("auth_url", &self.auth_url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePrefixRoles {
    pub operator_roles: Option<Vec<String>>,
    pub service_roles: Option<Vec<String>>,
    pub project_reader_roles: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUser {
    /// `account:user`.
    pub name: String,
    pub key: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileStorage {
    pub devices: Option<PathBuf>,
    pub bind_ip: Option<IpAddr>,
    pub object_port: Option<u16>,
    pub container_port: Option<u16>,
    pub account_port: Option<u16>,
    pub mount_check: Option<bool>,
    pub conn_timeout: Option<f64>,
    pub node_timeout: Option<f64>,
    pub container_update_timeout: Option<f64>,
    pub client_timeout: Option<f64>,
    pub disable_fallocate: Option<bool>,
    /// Where the daemons leave their pass figures and the servers read
    /// them for `/recon` (Swift's `recon_cache_path`) [default: `recon`
    /// beside the devices directory].
    pub recon_cache_path: Option<PathBuf>,
}

/// `[daemons]`: the background workers of a storage node.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDaemons {
    /// Run the daemons inside `apus serve` (default true).
    pub run: Option<bool>,
    /// Seconds after which tombstones and deleted database rows are
    /// reclaimed (every daemon that reclaims uses it).
    pub reclaim_age: Option<f64>,
    #[serde(rename = "object-replicator")]
    pub object_replicator: Option<FileDaemon>,
    #[serde(rename = "object-reconstructor")]
    pub object_reconstructor: Option<FileDaemon>,
    #[serde(rename = "object-auditor")]
    pub object_auditor: Option<FileDaemon>,
    #[serde(rename = "object-updater")]
    pub object_updater: Option<FileDaemon>,
    #[serde(rename = "object-expirer")]
    pub object_expirer: Option<FileDaemon>,
    #[serde(rename = "container-replicator")]
    pub container_replicator: Option<FileDaemon>,
    #[serde(rename = "container-auditor")]
    pub container_auditor: Option<FileDaemon>,
    #[serde(rename = "container-updater")]
    pub container_updater: Option<FileDaemon>,
    #[serde(rename = "container-reconciler")]
    pub container_reconciler: Option<FileDaemon>,
    #[serde(rename = "account-replicator")]
    pub account_replicator: Option<FileDaemon>,
    #[serde(rename = "account-auditor")]
    pub account_auditor: Option<FileDaemon>,
}

/// One daemon's settings; what a daemon does not use is an error.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDaemon {
    /// Run this daemon inside `apus serve`.
    pub run: Option<bool>,
    /// Seconds from the start of one pass to the start of the next.
    pub interval: Option<f64>,
    /// Work items in flight at once.
    pub concurrency: Option<usize>,
    /// Items (files, objects, containers, tasks) per second; 0 = no limit.
    pub per_second: Option<f64>,
    /// Bytes per second; 0 = no limit.
    pub bytes_per_second: Option<f64>,
    /// Expirer and reconciler only: split the queue among this many
    /// processes...
    pub processes: Option<u64>,
    /// ...of which this is number `process` (from 0).
    pub process: Option<u64>,
}

impl FileConfig {
    pub fn parse(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            // toml's Display quotes the line over several lines; errors of
            // this binary are one line.
            let message = e.message().trim();
            match e.span() {
                Some(span) => {
                    let before = text.get(..span.start).unwrap_or(text);
                    let line = before.matches('\n').count() + 1;
                    anyhow!("line {line}: {message}")
                }
                None => anyhow!("{message}"),
            }
        })
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{}", path.display()))
    }
}

// ---------------------------------------------------------------------------
// Resolved

/// What the command line adds to (or puts in place of) the file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub bind: Option<SocketAddr>,
}

#[derive(Debug)]
pub enum Layout {
    /// The whole cluster in this process over a self-managed directory.
    Local { data: PathBuf },
    /// Rings and hash salt provided by the operator.
    Node {
        hash: HashSource,
        rings_dir: PathBuf,
    },
}

#[derive(Debug)]
pub enum HashSource {
    SwiftConf(PathBuf),
    Inline(HashConfig),
}

#[derive(Debug)]
pub struct NodeConfig {
    pub layout: Layout,
    pub policies: Vec<FilePolicy>,
    /// Bound on each server's graceful shutdown.
    pub shutdown_timeout: Duration,
    pub log_requests: bool,
    pub proxy: Option<ProxyNode>,
    pub storage: Option<StorageNode>,
    pub daemons: FileDaemons,
    pub images: Option<ImagesNode>,
}

/// `apus images` on this node.
#[derive(Debug)]
pub struct ImagesNode {
    pub bind: SocketAddr,
    /// The address is the one-process default, not a choice: when it is
    /// taken, any free port will do.
    pub bind_is_default: bool,
    pub config: apus_images::ImagesConfig,
}

/// Where a one-process cluster's image service listens, as Glance does.
pub const LOCAL_IMAGES_BIND: &str = "127.0.0.1:9292";
const NODE_IMAGES_BIND: &str = "0.0.0.0:9292";

fn resolve_images(
    file: Option<FileImages>,
    base: &Path,
    data: Option<&Path>,
    has_proxy: bool,
) -> Result<Option<ImagesNode>> {
    let local = data.is_some();
    let enabled = match &file {
        Some(f) => f.enabled.unwrap_or(true),
        None => local,
    };
    if !enabled {
        return Ok(None);
    }
    let Some(file) = file.or_else(|| local.then(FileImages::default)) else {
        return Ok(None);
    };
    if !has_proxy {
        bail!("[images] runs beside the proxy: this node needs the proxy role");
    }
    let (bind, bind_is_default) = match &file.bind {
        Some(b) => (
            b.parse()
                .map_err(|_| anyhow!("images.bind: {b:?} is not an ADDRESS:PORT"))?,
            false,
        ),
        None => {
            let default = if local {
                LOCAL_IMAGES_BIND
            } else {
                NODE_IMAGES_BIND
            };
            (
                default
                    .parse()
                    .map_err(|_| anyhow!("bad default address {default}"))?,
                local,
            )
        }
    };
    let db = match (&file.db, data) {
        (Some(p), _) => base.join(p),
        (None, Some(d)) => d.join("images").join("images.db"),
        (None, None) => bail!("images.db: name the SQLite file of the image records"),
    };
    let mut c = apus_images::ImagesConfig::new(db);
    if let Some(a) = &file.account {
        if a.is_empty() || a.contains('/') {
            bail!("images.account: {a:?} is not an account name");
        }
        c.account = a.clone();
    }
    if let Some(name) = &file.container {
        if name.is_empty() || name.contains('/') {
            bail!("images.container: {name:?} is not a container name");
        }
        c.container = name.clone();
    }
    if let Some(n) = file.segment_size {
        // The proxy's largest object (5 GiB) bounds a segment.
        if n == 0 || n > 5 << 30 {
            bail!("images.segment_size: {n} must be between 1 and 5 GiB");
        }
        c.segment_size = n;
    }
    if let Some(n) = file.image_size_cap {
        c.image_size_cap = n;
    }
    if let Some(roles) = &file.member_roles {
        c.member_roles = roles.iter().map(|r| r.to_lowercase()).collect();
    }
    if let Some(url) = &file.public_endpoint {
        c.public_endpoint = Some(url.clone());
    }
    if let Some(f) = &file.disk_formats {
        c.disk_formats = f.clone();
    }
    if let Some(f) = &file.container_formats {
        c.container_formats = f.clone();
    }
    Ok(Some(ImagesNode {
        bind,
        bind_is_default,
        config: c,
    }))
}

#[derive(Debug)]
pub struct ProxyNode {
    pub bind: SocketAddr,
    /// Where the proxy's `/metrics` is served, apart from clients
    /// (`None`: nowhere; the client port never serves it).
    pub metrics_bind: Option<SocketAddr>,
    pub tempauth: TempAuthConfig,
    /// Keystone's settings (`[proxy.keystone]`), when configured.
    pub keystone: Option<KeystoneConfig>,
    pub pipeline: Pipeline,
    pub tempurl: apus_proxy::tempurl::TempUrlConfig,
    pub ratelimit: apus_proxy::ratelimit::RateLimitConfig,
    pub name_check: apus_proxy::name_check::NameCheckConfig,
    pub formpost: apus_proxy::formpost::FormPostConfig,
    /// A one-process cluster (`apus serve --data`), set up as Swift's
    /// functional-test cluster is.
    local: bool,
    settings: FileProxy,
}

#[derive(Debug)]
pub struct StorageNode {
    pub devices: PathBuf,
    /// The recon cache directory (`recon_cache_path`).
    pub recon_cache: PathBuf,
    /// `None` in the local layout: each server listens where its ring says.
    pub addrs: Option<StorageAddrs>,
    settings: FileStorage,
}

impl StorageNode {
    pub fn mount_check(&self) -> bool {
        self.settings.mount_check.unwrap_or(false)
    }

    /// Swift's `disable_fallocate`: on by default in a one-process cluster
    /// (as in Swift's all-in-one setups, whose disks are small and shared;
    /// Swift's functional tests start uploads of 5 GiB each), off on a node.
    pub fn disable_fallocate(&self) -> bool {
        self.settings
            .disable_fallocate
            .unwrap_or(self.addrs.is_none())
    }

    /// Connect and node timeouts of the daemons' requests: the storage
    /// settings when given, else Swift's daemon defaults (0.5 s and 10 s).
    pub fn daemon_timeouts(&self) -> (Duration, Duration) {
        let secs = |v: Option<f64>, default: f64| {
            Duration::try_from_secs_f64(v.unwrap_or(default))
                .unwrap_or(Duration::from_secs_f64(default))
        };
        (
            secs(self.settings.conn_timeout, 0.5),
            secs(self.settings.node_timeout, 10.0),
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageAddrs {
    pub object: SocketAddr,
    pub container: SocketAddr,
    pub account: SocketAddr,
}

impl NodeConfig {
    /// Checks `file` and resolves it. Relative paths in the file are taken
    /// from `base` (the file's directory); `overrides` come from the
    /// command line and are relative to the working directory already.
    pub fn resolve(file: FileConfig, base: &Path, overrides: Overrides) -> Result<Self> {
        let data = match overrides.data {
            Some(d) => Some(d),
            None => file.data.as_ref().map(|d| base.join(d)),
        };
        let mut policies = resolve_policies(&file.policies)?;
        let shutdown_timeout = match file.shutdown_timeout {
            Some(s) => seconds("shutdown_timeout", s)?,
            None => DEFAULT_SHUTDOWN_TIMEOUT,
        };
        let log_requests = file.log_requests.unwrap_or(true);
        let file_proxy = file.proxy.unwrap_or_default();
        let file_storage = file.storage.unwrap_or_default();
        let daemons = file.daemons.unwrap_or_default();
        let file_images = file.images;

        let (layout, roles) = match data {
            Some(data) => {
                let mut set = Vec::new();
                if file.swift_conf.is_some() {
                    set.push("swift_conf");
                }
                if file.hash.is_some() {
                    set.push("[hash]");
                }
                if file.rings_dir.is_some() {
                    set.push("rings_dir");
                }
                if file_storage.devices.is_some() {
                    set.push("storage.devices");
                }
                if file_storage.bind_ip.is_some() {
                    set.push("storage.bind_ip");
                }
                if file_storage.object_port.is_some()
                    || file_storage.container_port.is_some()
                    || file_storage.account_port.is_some()
                {
                    set.push("storage ports");
                }
                if !set.is_empty() {
                    bail!(
                        "`data` (a one-process cluster) keeps its own rings, swift.conf and devices; \
                         remove {} or remove `data`",
                        set.join(", ")
                    );
                }
                if let Some(roles) = &file.roles {
                    if !(roles.contains(&Role::Proxy) && roles.contains(&Role::Storage)) {
                        bail!(
                            "`data` runs the whole cluster: roles must be [\"proxy\", \"storage\"]"
                        );
                    }
                }
                if file.policies.is_empty() {
                    policies = local_policies()?;
                } else if policies.iter().any(|p| p.index > 2)
                    || !policies.iter().any(|p| p.index == 0)
                {
                    bail!(
                        "`data` builds object rings for policies 0, 1 and 2: configure policy 0, and 1 or 2 if wanted"
                    );
                } else if policies
                    .iter()
                    .any(|p| p.index == 2 && !matches!(p.kind, PolicyKind::ErasureCoding(_)))
                {
                    bail!(
                        "policy 2 of a one-process cluster is erasure-coded: its ring places 6 fragments on 6 devices"
                    );
                }
                (Layout::Local { data }, (true, true))
            }
            None => {
                let Some(roles) = &file.roles else {
                    bail!("the configuration sets neither `roles` nor `data`");
                };
                if roles.is_empty() {
                    bail!("`roles` is empty: name \"proxy\", \"storage\" or both");
                }
                let hash = match (file.swift_conf, file.hash) {
                    (Some(_), Some(_)) => bail!("set either `swift_conf` or [hash], not both"),
                    (Some(p), None) => HashSource::SwiftConf(base.join(p)),
                    (None, Some(h)) => {
                        if h.prefix.is_empty() && h.suffix.is_empty() {
                            bail!("[hash] sets neither prefix nor suffix");
                        }
                        HashSource::Inline(HashConfig::new(h.prefix, h.suffix))
                    }
                    (None, None) => HashSource::SwiftConf(base.join("swift.conf")),
                };
                if let HashSource::SwiftConf(path) = &hash {
                    if let Some(declared) = swift_conf_policies(path)? {
                        if !file.policies.is_empty() {
                            bail!(
                                "storage policies are declared both in {} and as [[policy]]: keep one",
                                path.display()
                            );
                        }
                        policies = declared;
                    }
                }
                let rings_dir = base.join(file.rings_dir.unwrap_or_else(|| PathBuf::from(".")));
                (
                    Layout::Node { hash, rings_dir },
                    (roles.contains(&Role::Proxy), roles.contains(&Role::Storage)),
                )
            }
        };
        let local = matches!(layout, Layout::Local { .. });

        let proxy = if roles.0 {
            let bind = match (overrides.bind, &file_proxy.bind) {
                (Some(b), _) => b,
                (None, Some(b)) => b
                    .parse()
                    .map_err(|_| anyhow!("proxy.bind: {b:?} is not an ADDRESS:PORT"))?,
                (None, None) => {
                    let default = if local {
                        LOCAL_PROXY_BIND
                    } else {
                        NODE_PROXY_BIND
                    };
                    default
                        .parse()
                        .map_err(|_| anyhow!("bad default address {default}"))?
                }
            };
            let metrics_bind = match file_proxy.metrics_bind.as_deref().map(str::trim) {
                Some("" | "off") => None,
                Some(b) => Some(b.parse().map_err(|_| {
                    anyhow!("proxy.metrics_bind: {b:?} is not an ADDRESS:PORT or \"off\"")
                })?),
                None if local => Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                None => None,
            };
            let keystone = file_proxy
                .keystone
                .as_ref()
                .map(resolve_keystone)
                .transpose()?;
            check_proxy_durations(&file_proxy)?;
            let pipeline = match (&file_proxy.pipeline, &keystone) {
                (Some(p), _) => p.resolve()?,
                // Keystone configured: it takes tempauth's place.
                (None, Some(_)) => Pipeline::keystone_default(),
                (None, None) => Pipeline::default(),
            };
            let uses_keystone = pipeline
                .stages()
                .iter()
                .any(|s| *s == "keystoneauth" || *s == "authtoken");
            if uses_keystone && keystone.is_none() {
                bail!("the pipeline has Keystone's filters: configure them in [proxy.keystone]");
            }
            // A node authenticating with Keystone alone needs no tempauth users.
            let tempauth = if uses_keystone
                && !pipeline.stages().contains(&"tempauth")
                && file_proxy.tempauth.is_none()
            {
                TempAuthConfig::default()
            } else {
                resolve_tempauth(file_proxy.tempauth.as_ref(), local)?
            };
            let mut tempurl = apus_proxy::tempurl::TempUrlConfig::default();
            if let Some(t) = &file_proxy.tempurl {
                t.apply(&mut tempurl)?;
            }
            let formpost = match &file_proxy.formpost {
                Some(f) => f.resolve()?,
                None => apus_proxy::formpost::FormPostConfig::default(),
            };
            let ratelimit = match &file_proxy.ratelimit {
                Some(r) => r.resolve()?,
                None => apus_proxy::ratelimit::RateLimitConfig::default(),
            };
            let name_check = match &file_proxy.name_check {
                Some(n) => n.resolve()?,
                None => apus_proxy::name_check::NameCheckConfig::default(),
            };
            Some(ProxyNode {
                bind,
                metrics_bind,
                tempauth,
                keystone,
                pipeline,
                tempurl,
                ratelimit,
                name_check,
                formpost,
                local,
                settings: file_proxy,
            })
        } else {
            if overrides.bind.is_some() {
                bail!("--bind sets the proxy's address, and this node has no proxy role");
            }
            None
        };

        let storage = if roles.1 {
            check_storage_durations(&file_storage)?;
            let (devices, addrs) = match &layout {
                Layout::Local { data } => (crate::local_cluster::devices_dir(data), None),
                Layout::Node { .. } => {
                    let ip = match file_storage.bind_ip {
                        Some(ip) => ip,
                        None => NODE_STORAGE_IP
                            .parse()
                            .map_err(|_| anyhow!("bad default address {NODE_STORAGE_IP}"))?,
                    };
                    let addrs = StorageAddrs {
                        object: SocketAddr::new(
                            ip,
                            file_storage.object_port.unwrap_or(OBJECT_PORT),
                        ),
                        container: SocketAddr::new(
                            ip,
                            file_storage.container_port.unwrap_or(CONTAINER_PORT),
                        ),
                        account: SocketAddr::new(
                            ip,
                            file_storage.account_port.unwrap_or(ACCOUNT_PORT),
                        ),
                    };
                    let ports = [
                        addrs.object.port(),
                        addrs.container.port(),
                        addrs.account.port(),
                    ];
                    if ports.iter().collect::<BTreeSet<_>>().len() != 3 {
                        bail!("storage: the object, container and account ports must differ");
                    }
                    let devices = base.join(
                        file_storage
                            .devices
                            .clone()
                            .unwrap_or_else(|| PathBuf::from(DEFAULT_DEVICES)),
                    );
                    (devices, Some(addrs))
                }
            };
            let recon_cache = match &file_storage.recon_cache_path {
                Some(p) => base.join(p),
                None => default_recon_cache(&devices),
            };
            Some(StorageNode {
                devices,
                recon_cache,
                addrs,
                settings: file_storage,
            })
        } else {
            None
        };

        if let Some(name) = &file.default_policy {
            make_default(&mut policies, name)?;
        }

        let local_data = match &layout {
            Layout::Local { data } => Some(data.as_path()),
            Layout::Node { .. } => None,
        };
        let images = resolve_images(file_images, base, local_data, proxy.is_some())?;
        Ok(NodeConfig {
            layout,
            policies,
            shutdown_timeout,
            log_requests,
            proxy,
            storage,
            daemons,
            images,
        })
    }

    /// The directory of the ring files (Swift's `swift_dir`).
    pub fn rings_dir(&self) -> &Path {
        match &self.layout {
            Layout::Local { data } => data,
            Layout::Node { rings_dir, .. } => rings_dir,
        }
    }

    /// The cluster's `swift.conf`: the one the hash salt comes from, or
    /// the one beside the rings when the salt is given inline.
    pub fn swift_conf_path(&self) -> PathBuf {
        match &self.layout {
            Layout::Local { data } => data.join("swift.conf"),
            Layout::Node {
                hash: HashSource::SwiftConf(p),
                ..
            } => p.clone(),
            Layout::Node { rings_dir, .. } => rings_dir.join("swift.conf"),
        }
    }

    /// The default policy's index (a checked configuration has one).
    pub fn default_policy(&self) -> u32 {
        self.policies
            .iter()
            .find(|p| p.default)
            .map_or(0, |p| p.index)
    }
}

/// The recon cache of a node whose file does not name one: `recon`
/// beside the devices directory (in the node's directory, not among the
/// devices), or Swift's own default when the devices are at `/`.
fn default_recon_cache(devices: &Path) -> PathBuf {
    match devices.parent() {
        Some(parent) => parent.join("recon"),
        None => PathBuf::from("/var/cache/swift"),
    }
}

/// Swift's rules: indexes and names (with aliases) unique, names made of
/// letters, digits and `-`, one default (implied when there is one
/// policy), and the default not deprecated. None given: `Policy-0`.
/// The policies of a one-process cluster, as in Swift's all-in-one
/// setups: the default `Policy-0` and a second replicated `Policy-1`,
/// and `ec42`, erasure-coded 4+2 (one fragment on each of 6 devices).
fn local_policies() -> Result<Vec<FilePolicy>> {
    let mut policies: Vec<FilePolicy> = [(0, "Policy-0", true), (1, "Policy-1", false)]
        .into_iter()
        .map(|(index, name, default)| FilePolicy::replicated(index, name, default))
        .collect();
    let mut ec = FilePolicy::replicated(2, "ec42", false);
    ec.policy_type = Some("erasure_coding".into());
    ec.ec_type = Some(LOCAL_EC_TYPE.into());
    ec.ec_num_data_fragments = Some(4);
    ec.ec_num_parity_fragments = Some(2);
    ec.resolve_kind()?;
    policies.push(ec);
    Ok(policies)
}

/// The code of a one-process cluster's `ec42`: the one Swift's
/// all-in-one setups name.
const LOCAL_EC_TYPE: &str = "liberasurecode_rs_vand";

/// `default_policy`: the named policy (by name or alias, any case)
/// becomes the only default; it must exist and not be deprecated.
fn make_default(policies: &mut [FilePolicy], name: &str) -> Result<()> {
    let wanted = |p: &FilePolicy| {
        std::iter::once(&p.name)
            .chain(&p.aliases)
            .any(|n| n.eq_ignore_ascii_case(name))
    };
    let Some(chosen) = policies.iter().find(|p| wanted(p)) else {
        let names: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "default_policy = {name:?} names no policy (there are {})",
            names.join(", ")
        );
    };
    if chosen.deprecated {
        bail!("default_policy = {name:?}: the default policy cannot be deprecated");
    }
    let index = chosen.index;
    for p in policies.iter_mut() {
        p.default = p.index == index;
    }
    Ok(())
}

/// The policies a `swift.conf` declares, resolved; `None` when the file
/// is missing (the hash salt from it is needed too, and its absence is
/// reported there) or declares none.
fn swift_conf_policies(path: &Path) -> Result<Option<Vec<FilePolicy>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
    };
    let sections =
        storage_policy_sections(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    if sections.is_empty() {
        return Ok(None);
    }
    let policies = sections
        .iter()
        .map(FilePolicy::from_swift_conf)
        .collect::<Result<Vec<_>>>()
        .map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    resolve_policies(&policies)
        .map(Some)
        .map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

fn resolve_policies(given: &[FilePolicy]) -> Result<Vec<FilePolicy>> {
    if given.is_empty() {
        return Ok(vec![FilePolicy::replicated(0, "Policy-0", true)]);
    }
    let mut indexes = BTreeSet::new();
    let mut names = BTreeSet::new();
    for p in given {
        if !indexes.insert(p.index) {
            bail!("policy index {} is defined twice", p.index);
        }
        for name in std::iter::once(&p.name).chain(&p.aliases) {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                bail!("policy name {name:?}: use letters, digits and '-'");
            }
            if !names.insert(name.to_ascii_lowercase()) {
                bail!("policy name {name:?} is used twice");
            }
        }
    }
    let mut policies = given.to_vec();
    for p in &mut policies {
        p.resolve_kind()?;
    }
    match policies.iter().filter(|p| p.default).count() {
        0 if policies.len() == 1 => policies[0].default = true,
        0 => bail!("several policies and none has `default = true`"),
        1 => {}
        _ => bail!("more than one policy has `default = true`"),
    }
    if policies.iter().any(|p| p.default && p.deprecated) {
        bail!("the default policy cannot be deprecated");
    }
    policies.sort_by_key(|p| p.index);
    Ok(policies)
}

fn resolve_tempauth(file: Option<&FileTempAuth>, local: bool) -> Result<TempAuthConfig> {
    // A local cluster is for trying things and for Swift's functional
    // tests: it has their users unless told otherwise. A real node must
    // name its users: well-known passwords do not belong there.
    let mut conf = if local {
        TempAuthConfig::functest_defaults()
    } else {
        TempAuthConfig::default()
    };
    let Some(file) = file else {
        if !local {
            bail!("the proxy role needs users: add [[proxy.tempauth.users]]");
        }
        return Ok(conf);
    };
    if let Some(prefixes) = &file.reseller_prefixes {
        if prefixes.is_empty() {
            bail!("proxy.tempauth.reseller_prefixes is empty");
        }
        conf.reseller_prefixes = prefixes.iter().map(|p| reseller_prefix(p)).collect();
    }
    if let Some(groups) = &file.require_group {
        conf.require_group = groups
            .iter()
            .map(|(prefix, group)| (reseller_prefix(prefix), group.clone()))
            .collect();
    }
    if let Some(life) = file.token_life {
        conf.token_life = seconds("proxy.tempauth.token_life", life)?;
    }
    match &file.users {
        Some(users) => {
            let mut seen = BTreeSet::new();
            conf.users = Vec::with_capacity(users.len());
            for u in users {
                let Some((account, user)) = u.name.split_once(':') else {
                    bail!("tempauth user {:?}: the name is account:user", u.name);
                };
                if account.is_empty() || user.is_empty() || user.contains(':') {
                    bail!("tempauth user {:?}: the name is account:user", u.name);
                }
                if !seen.insert(u.name.as_str()) {
                    bail!("tempauth user {:?} is defined twice", u.name);
                }
                conf.users.push(TempAuthUser {
                    account: account.to_string(),
                    user: user.to_string(),
                    key: u.key.clone(),
                    groups: u.groups.clone(),
                });
            }
        }
        None if !local => bail!("the proxy role needs users: add [[proxy.tempauth.users]]"),
        None => {}
    }
    Ok(conf)
}

/// `AUTH` and `AUTH_` both mean the prefix `AUTH_`, as in Swift's
/// `reseller_prefix`; an empty prefix stays empty.
fn resolve_keystone(file: &FileKeystone) -> Result<KeystoneConfig> {
    let mut conf = KeystoneConfig::default();
    let Some(url) = file.auth_url.as_deref().map(str::trim) else {
        bail!("proxy.keystone.auth_url is required (Keystone's address, http://host:port)");
    };
    if !url.starts_with("http://") {
        bail!("proxy.keystone.auth_url {url:?}: only http:// addresses are supported");
    }
    conf.auth_url = url.trim_end_matches('/').to_string();
    let Some(password) = &file.password else {
        bail!("proxy.keystone.password is required (the proxy's own service user's)");
    };
    conf.password = password.clone();
    let text = |into: &mut String, v: &Option<String>| {
        if let Some(v) = v {
            *into = v.clone();
        }
    };
    text(&mut conf.username, &file.username);
    text(&mut conf.user_domain_id, &file.user_domain_id);
    text(&mut conf.project_name, &file.project_name);
    text(&mut conf.project_domain_id, &file.project_domain_id);
    text(&mut conf.default_domain_id, &file.default_domain_id);
    if let Some(v) = file.delay_auth_decision {
        conf.delay_auth_decision = v;
    }
    if let Some(v) = file.token_cache_time {
        conf.token_cache_time = seconds("proxy.keystone.token_cache_time", v)?;
    }
    if let Some(v) = file.token_cache_size {
        if v == 0 {
            bail!("proxy.keystone.token_cache_size must be at least 1");
        }
        conf.token_cache_size = v;
    }
    if let Some(v) = file.http_timeout {
        conf.http_timeout = seconds("proxy.keystone.http_timeout", v)?;
    }
    if let Some(prefixes) = &file.reseller_prefixes {
        if prefixes.is_empty() {
            bail!("proxy.keystone.reseller_prefixes is empty");
        }
        conf.reseller_prefixes = prefixes.iter().map(|p| reseller_prefix(p)).collect();
    }
    let lower = |roles: &[String]| -> Vec<String> {
        roles
            .iter()
            .map(|r| r.trim().to_lowercase())
            .filter(|r| !r.is_empty())
            .collect()
    };
    let roles = |into: &mut Vec<String>, v: &Option<Vec<String>>| {
        if let Some(v) = v {
            *into = lower(v);
        }
    };
    roles(&mut conf.roles.operator_roles, &file.operator_roles);
    roles(&mut conf.roles.service_roles, &file.service_roles);
    roles(
        &mut conf.roles.project_reader_roles,
        &file.project_reader_roles,
    );
    roles(&mut conf.system_reader_roles, &file.system_reader_roles);
    if let Some(per_prefix) = &file.prefix_roles {
        for (prefix, r) in per_prefix {
            // Unset lists fall back to the general ones, as Swift's
            // per-prefix options do.
            let mut these = conf.roles.clone();
            roles(&mut these.operator_roles, &r.operator_roles);
            roles(&mut these.service_roles, &r.service_roles);
            roles(&mut these.project_reader_roles, &r.project_reader_roles);
            conf.prefix_roles.insert(reseller_prefix(prefix), these);
        }
    }
    if let Some(r) = &file.reseller_admin_role {
        conf.reseller_admin_role = r.trim().to_lowercase();
    }
    if let Some(v) = file.allow_overrides {
        conf.allow_overrides = v;
    }
    if let Some(v) = file.allow_names_in_acls {
        conf.allow_names_in_acls = v;
    }
    Ok(conf)
}

fn reseller_prefix(p: &str) -> String {
    let p = p.trim();
    if p.is_empty() || p.ends_with('_') {
        p.to_string()
    } else {
        format!("{p}_")
    }
}

fn seconds(name: &str, value: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow!("{name}: {value} is not a number of seconds"))
}

fn check_proxy_durations(p: &FileProxy) -> Result<()> {
    for (name, v) in [
        ("proxy.conn_timeout", p.conn_timeout),
        ("proxy.node_timeout", p.node_timeout),
        ("proxy.client_timeout", p.client_timeout),
        (
            "proxy.recheck_account_existence",
            p.recheck_account_existence,
        ),
        (
            "proxy.recheck_container_existence",
            p.recheck_container_existence,
        ),
        (
            "proxy.error_suppression_interval",
            p.error_suppression_interval,
        ),
        (
            "proxy.error_suppression_probe_interval",
            p.error_suppression_probe_interval,
        ),
        ("proxy.concurrency_timeout", p.concurrency_timeout),
        ("proxy.post_quorum_timeout", p.post_quorum_timeout),
        ("proxy.ring_reload_time", p.ring_reload_time),
        (
            "proxy.slo.max_get_time",
            p.slo.as_ref().and_then(|s| s.max_get_time),
        ),
    ] {
        if let Some(v) = v {
            seconds(name, v)?;
        }
    }
    if p.object_chunk_size == Some(0) {
        bail!("proxy.object_chunk_size must be positive");
    }
    Ok(())
}

fn check_storage_durations(s: &FileStorage) -> Result<()> {
    for (name, v) in [
        ("storage.conn_timeout", s.conn_timeout),
        ("storage.node_timeout", s.node_timeout),
        (
            "storage.container_update_timeout",
            s.container_update_timeout,
        ),
        ("storage.client_timeout", s.client_timeout),
    ] {
        if let Some(v) = v {
            seconds(name, v)?;
        }
    }
    Ok(())
}

/// Durations were checked by [`NodeConfig::resolve`]; an unchecked one
/// falls back to the crate default rather than panicking.
fn set_secs(target: &mut Duration, value: Option<f64>) {
    if let Some(d) = value.and_then(|v| Duration::try_from_secs_f64(v).ok()) {
        *target = d;
    }
}

impl ProxyNode {
    /// How often the proxy looks for changed ring files (Swift's ring
    /// `reload_time`, 15 s).
    pub fn ring_reload_time(&self) -> Duration {
        self.settings
            .ring_reload_time
            .and_then(|v| Duration::try_from_secs_f64(v).ok())
            .unwrap_or(apus_ring::reload::DEFAULT_RELOAD_TIME)
    }

    /// Applies the file's proxy settings over the proxy's defaults.
    pub fn apply(&self, conf: &mut ProxyConfig) {
        let s = &self.settings;
        set_secs(&mut conf.conn_timeout, s.conn_timeout);
        set_secs(&mut conf.node_timeout, s.node_timeout);
        set_secs(&mut conf.client_timeout, s.client_timeout);
        set_secs(
            &mut conf.recheck_account_existence,
            s.recheck_account_existence,
        );
        set_secs(
            &mut conf.recheck_container_existence,
            s.recheck_container_existence,
        );
        set_secs(
            &mut conf.error_suppression_interval,
            s.error_suppression_interval,
        );
        if let Some(v) = s.error_suppression_limit {
            conf.error_suppression_limit = v;
        }
        set_secs(
            &mut conf.error_suppression_probe_interval,
            s.error_suppression_probe_interval,
        );
        // As in Swift, concurrency_timeout defaults to conn_timeout.
        conf.timing.concurrency_timeout = conf.conn_timeout;
        set_secs(&mut conf.timing.concurrency_timeout, s.concurrency_timeout);
        set_secs(&mut conf.timing.post_quorum_timeout, s.post_quorum_timeout);
        if let Some(v) = s.concurrent_gets {
            conf.timing.concurrent_gets = v;
        }
        if let Some(v) = s.account_autocreate {
            conf.account_autocreate = v;
        }
        if let Some(v) = s.allow_account_management {
            conf.allow_account_management = v;
        }
        // Off in Swift by default; on in a one-process cluster, as in
        // Swift's functional-test setup.
        conf.allow_open_expired = s.allow_open_expired.unwrap_or(self.local);
        if let Some(v) = s.max_containers_per_account {
            conf.max_containers_per_account = v;
        }
        if let Some(v) = s.object_chunk_size {
            conf.object_chunk_size = v;
        }
        conf.tempauth = self.tempauth.clone();
        if let Some(k) = &self.keystone {
            conf.keystone = k.clone();
        }
        conf.pipeline = self.pipeline.clone();
        conf.tempurl = self.tempurl.clone();
        conf.ratelimit = self.ratelimit.clone();
        conf.name_check = self.name_check.clone();
        conf.formpost = self.formpost.clone();
        if let Some(slo) = &s.slo {
            slo.apply(&mut conf.slo);
        }
        if let Some(v) = s.symlink.as_ref().and_then(|l| l.symloop_max) {
            conf.symloop_max = v;
        }
        // A one-process cluster serves `<account>.example.com` as Swift's
        // functional-test setup does; a node only the domains it is given.
        if self.local {
            conf.domain_remap.storage_domain = vec!["example.com".to_string()];
        }
        // The all-in-one also answers virtual-hosted S3 requests for
        // `<bucket>.localhost`, which resolves to loopback.
        if self.local {
            conf.s3api.storage_domains = vec!["localhost".to_string()];
        }
        if let Some(f) = &s.s3api {
            let c = &mut conf.s3api;
            if let Some(v) = &f.storage_domain {
                c.storage_domains = v
                    .split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect();
            }
            if let Some(v) = &f.location {
                c.location = v.clone();
            }
            if let Some(v) = f.allowable_clock_skew {
                c.allowable_clock_skew = v;
            }
            if let Some(v) = f.max_bucket_listing {
                c.max_bucket_listing = v;
            }
        }
        if let Some(d) = &s.domain_remap {
            let csv = |v: &String| {
                v.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect::<Vec<_>>()
            };
            if let Some(v) = &d.storage_domain {
                conf.domain_remap.storage_domain = csv(v);
            }
            if let Some(v) = &d.path_root {
                conf.domain_remap.path_root = v.trim_matches('/').to_string();
            }
            if let Some(v) = &d.reseller_prefixes {
                conf.domain_remap.reseller_prefixes = csv(v);
            }
            if let Some(v) = &d.default_reseller_prefix {
                conf.domain_remap.default_reseller_prefix = Some(v.clone());
            }
            if let Some(v) = d.mangle_client_paths {
                conf.domain_remap.mangle_client_paths = v;
            }
        }
        let csv = |v: &String| {
            v.split(',')
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect::<Vec<_>>()
        };
        if let Some(v) = &s.cors_allow_origin {
            conf.cors.allow_origin = csv(v);
        }
        if let Some(v) = &s.cors_expose_headers {
            conf.cors.expose_headers = csv(v);
        }
        if let Some(v) = s.strict_cors_mode {
            conf.cors.strict_mode = v;
        }
        if let Some(p) = s
            .crossdomain
            .as_ref()
            .and_then(|c| c.cross_domain_policy.clone())
        {
            conf.cross_domain_policy = p;
        }
        if let Some(r) = &s.read_only {
            conf.read_only.read_only = r.read_only.unwrap_or(false);
            conf.read_only.allow_deletes = r.allow_deletes.unwrap_or(false);
        }
        if let Some(v) = s.etag_quoter.as_ref().and_then(|e| e.enable_by_default) {
            conf.etag_quoter_by_default = v;
        }
        if let Some(vw) = &s.versioned_writes {
            if let Some(v) = vw.allow_versioned_writes {
                conf.versioning.allow_versioned_writes = v;
            }
            if let Some(v) = vw.allow_object_versioning {
                conf.versioning.allow_object_versioning = v;
            }
        }
    }
}

impl StorageNode {
    /// Applies the file's storage settings to the object server's config.
    pub fn apply_object(&self, conf: &mut ObjectServerConfig) {
        let s = &self.settings;
        conf.diskfile.mount_check = s.mount_check.unwrap_or(false);
        conf.diskfile.disable_fallocate = self.disable_fallocate();
        set_secs(&mut conf.conn_timeout, s.conn_timeout);
        set_secs(&mut conf.node_timeout, s.node_timeout);
        set_secs(
            &mut conf.container_update_timeout,
            s.container_update_timeout,
        );
        set_secs(&mut conf.client_timeout, s.client_timeout);
    }

    /// Applies the file's storage settings to an account or container
    /// server's config.
    pub fn apply_db(&self, conf: &mut DbServerConfig) {
        let s = &self.settings;
        conf.mount_check = s.mount_check.unwrap_or(false);
        set_secs(&mut conf.conn_timeout, s.conn_timeout);
        set_secs(&mut conf.node_timeout, s.node_timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str) -> Result<NodeConfig> {
        NodeConfig::resolve(
            FileConfig::parse(text)?,
            Path::new("/etc/apus"),
            Overrides::default(),
        )
    }

    const USERS: &str = r#"
        [[proxy.tempauth.users]]
        name = "acct:alice"
        key = "secret"
        groups = [".admin"]
    "#;

    #[test]
    fn no_file_is_a_local_cluster_with_the_functest_users() {
        let conf = NodeConfig::resolve(
            FileConfig::default(),
            Path::new("."),
            Overrides {
                data: Some(PathBuf::from("d")),
                bind: None,
            },
        )
        .unwrap();
        assert!(matches!(&conf.layout, Layout::Local { data } if data == Path::new("d")));
        assert!(conf.storage.as_ref().unwrap().disable_fallocate());
        let proxy = conf.proxy.as_ref().unwrap();
        assert_eq!(proxy.bind, "127.0.0.1:8080".parse().unwrap());
        assert!(proxy
            .tempauth
            .users
            .iter()
            .any(|u| u.account == "test" && u.user == "tester"));
        let storage = conf.storage.as_ref().unwrap();
        assert_eq!(storage.devices, Path::new("d/devices"));
        assert!(storage.addrs.is_none());
        assert_eq!(conf.policies.len(), 3);
        assert!(conf.policies[0].default);
        assert_eq!(conf.policies[1].name, "Policy-1");
        assert_eq!(conf.policies[2].name, "ec42");
        let PolicyKind::ErasureCoding(ec) = &conf.policies[2].kind else {
            panic!("ec42 is not erasure-coded");
        };
        assert_eq!((ec.ndata, ec.nparity), (4, 2));
        assert_eq!(ec.ec_type, "liberasurecode_rs_vand");
        // One line makes it the default.
        let conf = resolve("data = \"d\"\ndefault_policy = \"EC42\"").unwrap();
        let defaults: Vec<&str> = conf
            .policies
            .iter()
            .filter(|p| p.default)
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(defaults, ["ec42"]);
        assert_eq!(conf.default_policy(), 2);
    }

    #[test]
    fn images_run_by_default_in_a_local_cluster_and_on_request_on_a_node() {
        let conf = resolve("data = \"d\"").unwrap();
        let images = conf.images.unwrap();
        assert_eq!(images.bind, LOCAL_IMAGES_BIND.parse().unwrap());
        assert!(images.bind_is_default, "a taken default port may move");
        assert_eq!(
            images.config.db_path,
            Path::new("/etc/apus/d/images/images.db")
        );
        assert_eq!(images.config.account, ".images");

        let off = resolve("data = \"d\"\n[images]\nenabled = false").unwrap();
        assert!(off.images.is_none());
        let set = resolve(
            "data = \"d\"\n[images]\nbind = \"127.0.0.2:9393\"\naccount = \"AUTH_img\"\n\
             segment_size = 1048576\nmember_roles = [\"Editor\"]",
        )
        .unwrap()
        .images
        .unwrap();
        assert!(!set.bind_is_default, "a chosen address is never moved");
        assert_eq!(set.config.account, "AUTH_img");
        assert_eq!(set.config.segment_size, 1 << 20);
        assert_eq!(set.config.member_roles, ["editor"]);

        let proxy_node = format!("roles = [\"proxy\"]\n{USERS}");
        assert!(resolve(&proxy_node).unwrap().images.is_none());
        let err = resolve(&format!("{proxy_node}\n[images]\n")).unwrap_err();
        assert!(err.to_string().contains("images.db"), "{err}");
        let node = resolve(&format!("{proxy_node}\n[images]\ndb = \"img/images.db\"\n"))
            .unwrap()
            .images
            .unwrap();
        assert_eq!(node.config.db_path, Path::new("/etc/apus/img/images.db"));
        assert_eq!(node.bind, "0.0.0.0:9292".parse().unwrap());
        let storage_only = "roles = [\"storage\"]\n[images]\ndb = \"x\"\n";
        assert!(resolve(storage_only)
            .unwrap_err()
            .to_string()
            .contains("proxy role"));
        for bad in [
            "segment_size = 0",
            "account = \"a/b\"",
            "bind = \"nowhere\"",
        ] {
            assert!(
                resolve(&format!("data = \"d\"\n[images]\n{bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_storage_node() {
        let conf = resolve(
            r#"
            roles = ["storage"]
            swift_conf = "/etc/swift/swift.conf"
            [storage]
            devices = "/srv/node"
            bind_ip = "10.0.0.5"
            object_port = 6000
            mount_check = true
            node_timeout = 2.5
            "#,
        )
        .unwrap();
        assert!(conf.proxy.is_none());
        let storage = conf.storage.unwrap();
        let addrs = storage.addrs.unwrap();
        assert_eq!(addrs.object, "10.0.0.5:6000".parse().unwrap());
        assert_eq!(addrs.container, "10.0.0.5:6201".parse().unwrap());
        assert_eq!(addrs.account, "10.0.0.5:6202".parse().unwrap());
        let mut obj = ObjectServerConfig::with_devices("/x", HashConfig::new("a", "b"));
        storage.apply_object(&mut obj);
        assert!(obj.diskfile.mount_check);
        assert_eq!(obj.node_timeout, Duration::from_millis(2500));
        assert!(
            matches!(conf.layout, Layout::Node { hash: HashSource::SwiftConf(p), .. }
            if p == Path::new("/etc/swift/swift.conf"))
        );
    }

    #[test]
    fn a_proxy_node_with_relative_paths_and_settings() {
        let conf = resolve(&format!(
            r#"
            roles = ["proxy"]
            rings_dir = "rings"
            [hash]
            suffix = "s3cret"
            [[policy]]
            index = 0
            name = "gold"
            [[policy]]
            index = 1
            name = "silver"
            aliases = ["cheap"]
            default = true
            [proxy]
            bind = "0.0.0.0:80"
            node_timeout = 20
            allow_account_management = true
            ring_reload_time = 2.5
            [proxy.tempauth]
            reseller_prefixes = ["AUTH", "SERVICE_"]
            require_group = {{ SERVICE = "service" }}
            {USERS}
            "#
        ))
        .unwrap();
        match &conf.layout {
            Layout::Node {
                hash: HashSource::Inline(h),
                rings_dir,
            } => {
                assert_eq!(h, &HashConfig::new("", "s3cret"));
                assert_eq!(rings_dir, Path::new("/etc/apus/rings"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(conf.default_policy(), 1);
        let proxy = conf.proxy.unwrap();
        assert_eq!(proxy.bind, "0.0.0.0:80".parse().unwrap());
        assert_eq!(proxy.ring_reload_time(), Duration::from_millis(2500));
        assert_eq!(proxy.tempauth.reseller_prefixes, ["AUTH_", "SERVICE_"]);
        assert_eq!(
            proxy
                .tempauth
                .require_group
                .get("SERVICE_")
                .map(String::as_str),
            Some("service")
        );
        assert_eq!(proxy.tempauth.users.len(), 1);
        assert_eq!(proxy.tempauth.users[0].account, "acct");
        assert_eq!(proxy.tempauth.users[0].user, "alice");
        assert!(conf.storage.is_none());
    }

    #[test]
    fn the_pipeline_as_a_list_or_as_swifts_line() {
        let conf = |pipeline: &str| {
            resolve(&format!(
                "roles = [\"proxy\", \"storage\"]\n[proxy]\npipeline = {pipeline}\n{USERS}"
            ))
        };
        let listed = conf(r#"["healthcheck", "tempauth"]"#).unwrap();
        let line = conf(
            r#""catch_errors gatekeeper healthcheck proxy-logging cache tempauth proxy-server""#,
        )
        .unwrap();
        // listing_formats goes in after the last of catch_errors,
        // gatekeeper, proxy-logging and cache that the line names.
        for (c, expected) in [
            (
                &listed,
                [
                    "catch_errors",
                    "gatekeeper",
                    "listing_formats",
                    "healthcheck",
                    "tempauth",
                    "copy",
                    "dlo",
                    "versioned_writes",
                ],
            ),
            (
                &line,
                [
                    "catch_errors",
                    "gatekeeper",
                    "healthcheck",
                    "listing_formats",
                    "tempauth",
                    "copy",
                    "dlo",
                    "versioned_writes",
                ],
            ),
        ] {
            assert_eq!(c.proxy.as_ref().unwrap().pipeline.stages(), expected);
        }
        let err = conf(r#"["tempauth", "no_such_filter"]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no filter \"no_such_filter\""), "{err}");
        // Named, but its settings are missing.
        let err = conf(r#"["tempauth", "keystoneauth"]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[proxy.keystone]"), "{err}");
        let default = resolve(&format!("roles = [\"proxy\"]\n{USERS}")).unwrap();
        assert_eq!(default.proxy.unwrap().pipeline, Pipeline::default());
    }

    #[test]
    fn keystone_settings() {
        // Keystone alone: no tempauth users needed, and it takes
        // tempauth's place in the default pipeline.
        let conf = resolve(
            "roles = [\"proxy\"]\n[proxy.keystone]\nauth_url = \"http://127.0.0.1:5000/\"\n\
             password = \"pw\"\nreseller_prefixes = [\"AUTH\", \"SERVICE\"]\n\
             operator_roles = [\"Admin\", \"SwiftOperator\"]\nreseller_admin_role = \"ResellerAdmin\"\n\
             token_cache_time = 60\n[proxy.keystone.prefix_roles.SERVICE]\nservice_roles = [\"service\"]\n",
        )
        .unwrap();
        let proxy = conf.proxy.unwrap();
        let k = proxy.keystone.clone().unwrap();
        assert_eq!(k.auth_url, "http://127.0.0.1:5000");
        assert_eq!(k.password, "pw");
        assert_eq!(k.reseller_prefixes, ["AUTH_", "SERVICE_"]);
        assert_eq!(k.roles.operator_roles, ["admin", "swiftoperator"]);
        assert_eq!(k.reseller_admin_role, "reselleradmin");
        assert_eq!(k.token_cache_time, Duration::from_secs(60));
        let service = k.roles_for("SERVICE_");
        assert_eq!(service.service_roles, ["service"]);
        assert_eq!(service.operator_roles, ["admin", "swiftoperator"]);
        assert!(k.roles_for("AUTH_").service_roles.is_empty());
        let stages = proxy.pipeline.stages().join(" ");
        assert!(stages.contains("authtoken keystoneauth"), "{stages}");
        assert!(!stages.contains("tempauth"), "{stages}");

        // What must be there, and what cannot be.
        for (body, want) in [
            ("password = \"pw\"\n", "auth_url is required"),
            ("auth_url = \"http://k:5000\"\n", "password is required"),
            (
                "auth_url = \"https://k:5000\"\npassword = \"pw\"\n",
                "only http://",
            ),
            (
                "auth_url = \"http://k:5000\"\npassword = \"pw\"\ntoken_cache_size = 0\n",
                "token_cache_size",
            ),
        ] {
            let err = resolve(&format!("roles = [\"proxy\"]\n[proxy.keystone]\n{body}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
        // keystoneauth named without its settings.
        let err = resolve(&format!(
            "roles = [\"proxy\"]\n[proxy]\npipeline = \"authtoken keystoneauth proxy-server\"\n{USERS}"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("[proxy.keystone]"), "{err}");
        // The password never shows in a debug print of the file.
        let file = FileConfig::parse(
            "roles = [\"proxy\"]\n[proxy.keystone]\nauth_url = \"http://k\"\npassword = \"s3cret\"\n",
        )
        .unwrap();
        assert!(!format!("{file:?}").contains("s3cret"));
    }

    #[test]
    fn formpost_settings() {
        let conf = resolve(&format!(
            "roles = [\"proxy\"]\n[proxy.formpost]\nallowed_digests = \"SHA512 md5 sha256\"\n{USERS}"
        ))
        .unwrap();
        assert_eq!(
            conf.proxy.unwrap().formpost.allowed_digests,
            ["sha256", "sha512"]
        );
        let conf = resolve(&format!("roles = [\"proxy\"]\n{USERS}")).unwrap();
        assert_eq!(
            conf.proxy.unwrap().formpost.allowed_digests,
            ["sha1", "sha256", "sha512"]
        );
        let err = resolve(&format!(
            "roles = [\"proxy\"]\n[proxy.formpost]\nallowed_digests = \"md4\"\n{USERS}"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("proxy.formpost.allowed_digests"), "{err}");
    }

    #[test]
    fn slo_settings() {
        let conf = resolve(&format!(
            "roles = [\"proxy\"]\n[proxy.slo]\nmax_manifest_segments = 5\nmax_get_time = 60\nconcurrency = 0\n{USERS}"
        ))
        .unwrap();
        let mut slo = apus_proxy::slo::SloConfig::default();
        let proxy = conf.proxy.unwrap();
        proxy.settings.slo.as_ref().unwrap().apply(&mut slo);
        assert_eq!(slo.max_manifest_segments, 5);
        assert_eq!(slo.max_get_time, Duration::from_secs(60));
        assert_eq!(slo.concurrency, 1);
        assert_eq!(slo.max_manifest_size, 8 * 1024 * 1024);
        let err = resolve(&format!(
            "roles = [\"proxy\"]\n[proxy.slo]\nmax_get_time = -1\n{USERS}"
        ));
        assert!(err.is_err());
    }

    #[test]
    fn ratelimit_settings() {
        let conf = resolve(&format!(
            "roles = [\"proxy\"]\n[proxy.ratelimit]\naccount_ratelimit = 2.5\n\
             max_sleep_time_seconds = 5\naccount_blacklist = \"AUTH_a, AUTH_b\"\n\
             container_ratelimits = {{ 1000 = 5, 100 = 20 }}\n{USERS}"
        ))
        .unwrap();
        let r = conf.proxy.unwrap().ratelimit;
        assert_eq!(r.account_ratelimit, 2.5);
        assert_eq!(r.max_sleep_time_seconds, 5.0);
        assert_eq!(r.account_blacklist, ["AUTH_a", "AUTH_b"]);
        assert_eq!(r.container_ratelimits, [(100, 20.0), (1000, 5.0)]);
        assert!(r.container_listing_ratelimits.is_empty());
        assert_eq!(r.clock_accuracy, 1000);
        for (bad, want) in [
            ("container_ratelimits = { ten = 5 }", "not an object count"),
            ("container_ratelimits = { 10 = 0 }", "above 0"),
            ("account_ratelimit = -1", "account_ratelimit"),
            ("clock_accuracy = 0", "clock_accuracy"),
        ] {
            let err = resolve(&format!(
                "roles = [\"proxy\"]\n[proxy.ratelimit]\n{bad}\n{USERS}"
            ))
            .unwrap_err();
            assert!(format!("{err:#}").contains(want), "{bad}: {err:#}");
        }
    }

    #[test]
    fn name_check_settings() {
        let conf = resolve(&format!(
            "roles = [\"proxy\"]\n[proxy.name_check]\nmaximum_length = 10\nforbidden_regexp = \"\"\n{USERS}"
        ))
        .unwrap();
        let n = conf.proxy.unwrap().name_check;
        assert_eq!(n.maximum_length, 10);
        assert_eq!(n.forbidden_chars, "'\"`<>");
        assert_eq!(n.refusal(b"/v1/a/./b"), None);
        let err = resolve(&format!(
            "roles = [\"proxy\"]\n[proxy.name_check]\nforbidden_regexp = \"(\"\n{USERS}"
        ))
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("proxy.name_check.forbidden_regexp"),
            "{err:#}"
        );
    }

    #[test]
    fn erasure_coded_policies_are_checked_as_swift_checks_them() {
        let conf = resolve(
            "roles = [\"storage\"]\n[hash]\nprefix = \"p\"\n\
             [[policy]]\nindex = 0\nname = \"gold\"\ndefault = true\n\
             [[policy]]\nindex = 2\nname = \"ec42\"\npolicy_type = \"erasure_coding\"\n\
             ec_type = \"isa_l_rs_cauchy\"\nec_num_data_fragments = 4\nec_num_parity_fragments = 2\n",
        )
        .unwrap();
        assert_eq!(conf.policies[0].kind, PolicyKind::Replication);
        let PolicyKind::ErasureCoding(ec) = &conf.policies[1].kind else {
            panic!("{:?}", conf.policies[1]);
        };
        assert_eq!(
            (
                ec.ec_type.as_str(),
                ec.ndata,
                ec.nparity,
                ec.segment_size,
                ec.duplication_factor
            ),
            ("isa_l_rs_cauchy", 4, 2, 1_048_576, 1)
        );
        let base = "roles = [\"storage\"]\n[hash]\nprefix = \"p\"\n\
                    [[policy]]\nindex = 0\nname = \"gold\"\ndefault = true\n\
                    [[policy]]\nindex = 2\nname = \"ec\"\n";
        for (extra, want) in [
            ("policy_type = \"erasure_coding\"\nec_num_data_fragments = 4\nec_num_parity_fragments = 2", "needs ec_type"),
            ("policy_type = \"erasure_coding\"\nec_type = \"jerasure_rs_vand\"\nec_num_data_fragments = 4\nec_num_parity_fragments = 2", "is not one of"),
            ("policy_type = \"erasure_coding\"\nec_type = \"isa_l_rs_vand\"\nec_num_data_fragments = 0\nec_num_parity_fragments = 2", "ec_num_data_fragments = 0"),
            ("policy_type = \"erasure_coding\"\nec_type = \"isa_l_rs_vand\"\nec_num_data_fragments = 4", "needs ec_num_parity_fragments"),
            ("policy_type = \"erasure_coding\"\nec_type = \"isa_l_rs_vand\"\nec_num_data_fragments = 200\nec_num_parity_fragments = 100", "200+100"),
            ("policy_type = \"erasure_coding\"\nec_type = \"isa_l_rs_vand\"\nec_num_data_fragments = 10\nec_num_parity_fragments = 5", "must be deprecated"),
            ("policy_type = \"erasure_coding\"\nec_type = \"isa_l_rs_vand\"\nec_num_data_fragments = 4\nec_num_parity_fragments = 2\nec_object_segment_size = 0", "ec_object_segment_size = 0"),
            ("ec_type = \"isa_l_rs_vand\"", "are for policy_type"),
            ("policy_type = \"mirrored\"", "neither"),
            ("policy_type = \"erasure_coding\"\nec_type = \"isa_l_rs_vand\"\nec_num_data_fragments = 4\nec_num_parity_fragments = 2\nec_duplication_factor = 2", "not supported yet"),
        ] {
            let err = format!("{:#}", resolve(&format!("{base}{extra}\n")).unwrap_err());
            assert!(err.contains(want), "{extra}: {err}");
        }
        // Deprecated, the durability guard lets it load.
        resolve(&format!(
            "{base}deprecated = true\npolicy_type = \"erasure_coding\"\nec_type = \"isa_l_rs_vand\"\n\
             ec_num_data_fragments = 10\nec_num_parity_fragments = 5\n"
        ))
        .unwrap();
    }

    #[test]
    fn policies_come_from_swift_conf_when_the_node_names_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("swift.conf"),
            "[swift-hash]\nswift_hash_path_suffix = s\n\n\
             [storage-policy:0]\nname = gold\naliases = yellow, orange\ndefault = yes\n\n\
             [storage-policy:1]\nname = ec42\npolicy_type = erasure_coding\nec_type = liberasurecode_rs_vand\n\
             ec_num_data_fragments = 4\nec_num_parity_fragments = 2\nec_object_segment_size = 65536\n",
        )
        .unwrap();
        let node = |text: &str| {
            NodeConfig::resolve(FileConfig::parse(text)?, dir.path(), Overrides::default())
        };
        let conf = node("roles = [\"storage\"]\n").unwrap();
        assert_eq!(conf.policies.len(), 2);
        assert_eq!(conf.policies[0].aliases, ["yellow", "orange"]);
        assert!(conf.policies[0].default);
        let PolicyKind::ErasureCoding(ec) = &conf.policies[1].kind else {
            panic!("{:?}", conf.policies[1]);
        };
        assert_eq!(ec.segment_size, 65536);
        let err = node("roles = [\"storage\"]\n[[policy]]\nindex = 0\nname = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("keep one"), "{err:#}");
        std::fs::write(
            dir.path().join("swift.conf"),
            "[swift-hash]\nswift_hash_path_suffix = s\n[storage-policy:0]\nname = gold\nfoo = bar\n",
        )
        .unwrap();
        let err = node("roles = [\"storage\"]\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("invalid option \"foo\""),
            "{err:#}"
        );
    }

    #[test]
    fn defaults_of_a_node() {
        let conf = resolve(&format!("roles = [\"proxy\", \"storage\"]\n{USERS}")).unwrap();
        assert!(
            matches!(&conf.layout, Layout::Node { hash: HashSource::SwiftConf(p), rings_dir }
            if p == Path::new("/etc/apus/swift.conf") && rings_dir == Path::new("/etc/apus/."))
        );
        let proxy = conf.proxy.unwrap();
        assert_eq!(proxy.bind, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(proxy.ring_reload_time(), Duration::from_secs(15));
        let storage = conf.storage.unwrap();
        assert_eq!(storage.devices, Path::new("/srv/node"));
        assert!(!storage.disable_fallocate());
        assert_eq!(
            storage.addrs.unwrap().object,
            "0.0.0.0:6200".parse().unwrap()
        );
        assert_eq!(conf.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
    }

    #[test]
    fn mistakes_are_errors() {
        let cases = [
            ("roles = [\"proxy\"]\nbogus = 1", "bogus"),
            ("roles = [\"web\"]", "web"),
            ("", "neither `roles` nor `data`"),
            ("roles = []", "empty"),
            ("roles = [\"proxy\"]", "needs users"),
            ("data = \"d\"\nrings_dir = \"r\"", "rings_dir"),
            ("data = \"d\"\nroles = [\"proxy\"]", "roles must be"),
            (
                "data = \"d\"\n[[policy]]\nindex = 1\nname = \"x\"",
                "policies 0, 1 and 2",
            ),
            (
                "data = \"d\"\n[[policy]]\nindex = 0\nname = \"x\"\ndefault = true\n[[policy]]\nindex = 2\nname = \"y\"",
                "policy 2 of a one-process cluster is erasure-coded",
            ),
            ("data = \"d\"\ndefault_policy = \"gold\"", "names no policy"),
            (
                "roles = [\"storage\"]\nswift_conf = \"a\"\n[hash]\nprefix = \"p\"",
                "not both",
            ),
            ("roles = [\"storage\"]\n[hash]\n", "neither prefix"),
            (
                "roles = [\"storage\"]\n[storage]\nobject_port = 6201",
                "must differ",
            ),
            ("roles = [\"storage\"]\n[storage]\nnode_timeout = -1", "seconds"),
            (
                "roles = [\"proxy\"]\n[proxy]\nring_reload_time = -1\n\
                 [[proxy.tempauth.users]]\nname = \"a:u\"\nkey = \"k\"",
                "ring_reload_time",
            ),
            (
                "roles = [\"storage\"]\n[[policy]]\nindex = 0\nname = \"a\"\n[[policy]]\nindex = 1\nname = \"b\"",
                "none has",
            ),
            (
                "roles = [\"storage\"]\n[[policy]]\nindex = 0\nname = \"a b\"",
                "letters",
            ),
            (
                "roles = [\"storage\"]\n[[policy]]\nindex = 0\nname = \"a\"\n[[policy]]\nindex = 1\nname = \"A\"\ndefault = true",
                "used twice",
            ),
            ("roles = [\"proxy\"]\n[proxy]\nbind = \"localhost\"", "ADDRESS:PORT"),
            (
                "roles = [\"proxy\"]\n[[proxy.tempauth.users]]\nname = \"nocolon\"\nkey = \"k\"",
                "account:user",
            ),
        ];
        for (text, want) in cases {
            let err = format!("{:#}", resolve(text).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains('\n'), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_documented_examples_are_valid() {
        let doc = include_str!("../../../docs/config.md");
        let mut blocks = 0;
        for block in doc.split("```toml\n").skip(1) {
            let text = block.split("```").next().unwrap();
            resolve(text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
            blocks += 1;
        }
        assert_eq!(blocks, 4);
    }

    #[test]
    fn bind_override_needs_a_proxy() {
        let err = NodeConfig::resolve(
            FileConfig::parse("roles = [\"storage\"]").unwrap(),
            Path::new("."),
            Overrides {
                data: None,
                bind: Some("127.0.0.1:1".parse().unwrap()),
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("--bind"), "{err}");
    }
}
