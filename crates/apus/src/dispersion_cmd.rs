//! `apus dispersion populate|report`: what `swift-dispersion-populate` and
//! `swift-dispersion-report` do, with their options, configuration file
//! and output.
//!
//! `populate` logs in through the proxy (v1.0 auth) and creates
//! containers `dispersion_<policy>_<n>` and, in `dispersion_objects_<policy>`,
//! objects `dispersion_<n>`, choosing each `n` so that every name lands on
//! a partition none before it took, until `dispersion_coverage` percent of
//! the ring's partitions have one. `report` lists them through the proxy,
//! then asks every primary of each partition directly (a HEAD to the
//! storage server, as Swift's `direct_client`) whether it holds its copy,
//! and prints how many copies were found and how many partitions miss
//! how many copies. Partitions are computed from the rings and the hash
//! path salt of `swift_dir`, as Swift does.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use apus_core::policy::{config_true, storage_policy_sections};
use apus_core::HashConfig;
use apus_http::{full, BackendClient, ClientConfig};
use apus_ring::{Device, Ring};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::progress::Progress;

const DEFAULT_CONF: &str = "/etc/swift/dispersion.conf";
/// The longest listing or error body read from the proxy.
const BODY_LIMIT: usize = 64 << 20;
/// Off a terminal, a progress line this often.
const PLAIN_PROGRESS: Duration = Duration::from_secs(5);
/// The longest wait between two tries of one request.
const MAX_BACKOFF: Duration = Duration::from_secs(16);

#[derive(clap::Args)]
pub struct DispersionArgs {
    #[command(subcommand)]
    command: DispersionCommand,
}

#[derive(clap::Subcommand)]
enum DispersionCommand {
    /// Create the containers and objects the report checks
    /// (swift-dispersion-populate).
    Populate(PopulateArgs),
    /// Check that every copy of them is where the rings say
    /// (swift-dispersion-report).
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct CommonArgs {
    /// The configuration file, whose [dispersion] section is read
    /// (default /etc/swift/dispersion.conf).
    conf_file: Option<PathBuf>,
    /// An option of the [dispersion] section, over the file's
    /// (`--set auth_url=http://127.0.0.1:8080/auth/v1.0`); repeatable.
    /// With --set and no conf_file, the default file is read only if it
    /// exists.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Only containers.
    #[arg(long)]
    container_only: bool,
    /// Only objects.
    #[arg(long)]
    object_only: bool,
    /// Accepted for compatibility; only http:// auth URLs are supported,
    /// so there is no certificate to check.
    #[arg(long)]
    insecure: bool,
    /// The storage policy (default: swift.conf's default policy).
    #[arg(short = 'P', long, value_name = "NAME")]
    policy_name: Option<String>,
}

#[derive(clap::Args)]
struct PopulateArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Container suffixes below this are taken as created already.
    #[arg(long, default_value_t = 0)]
    container_suffix_start: u64,
    /// Object suffixes below this are taken as created already.
    #[arg(long, default_value_t = 0)]
    object_suffix_start: u64,
    /// Skip partitions already covered by an earlier run, so the coverage
    /// grows by dispersion_coverage.
    #[arg(long)]
    no_overlap: bool,
}

#[derive(clap::Args)]
struct ReportArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Print the report as JSON, with swift-dispersion-report's keys.
    #[arg(short = 'j', long = "dump-json", visible_alias = "json")]
    dump_json: bool,
    /// Print every 404 to standard error.
    #[arg(short = 'd', long)]
    debug: bool,
    /// Print each partition missing copies to standard error.
    #[arg(short = 'p', long)]
    partitions: bool,
}

pub fn run(args: &DispersionArgs) -> ExitCode {
    let result = (|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let out = match &args.command {
            DispersionCommand::Populate(a) => runtime.block_on(populate(a)),
            DispersionCommand::Report(a) => runtime.block_on(report(a)),
        };
        runtime.shutdown_timeout(Duration::from_secs(1));
        out
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration

/// The options of one section of an INI file, read as Python's
/// `ConfigParser` reads them (names lowercased, values stripped, `#` and
/// `;` comment lines, `key = value` or `key: value`, indented lines
/// continuing a value), with `[DEFAULT]`'s options under every section's.
fn ini_section(text: &str, wanted: &str) -> Option<BTreeMap<String, String>> {
    let mut defaults: BTreeMap<String, String> = BTreeMap::new();
    let mut section: BTreeMap<String, String> = BTreeMap::new();
    let mut found = false;
    let mut current: Option<String> = None;
    let mut last_key: Option<String> = None;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let target = match current.as_deref() {
            Some("DEFAULT") => Some(&mut defaults),
            Some(name) if name == wanted => Some(&mut section),
            _ => None,
        };
        if raw.starts_with([' ', '\t']) {
            if let (Some(map), Some(key)) = (target, &last_key) {
                if let Some(v) = map.get_mut(key) {
                    v.push('\n');
                    v.push_str(line);
                }
            }
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            let name = line[1..line.len() - 1].to_string();
            found |= name == wanted;
            current = Some(name);
            last_key = None;
            continue;
        }
        let Some(at) = line.find(['=', ':']) else {
            continue;
        };
        let key = line[..at].trim().to_ascii_lowercase();
        if let Some(map) = target {
            map.insert(key.clone(), line[at + 1..].trim().to_string());
        }
        last_key = Some(key);
    }
    found.then(|| {
        for (k, v) in defaults {
            section.entry(k).or_insert(v);
        }
        section
    })
}

/// The [dispersion] options: the file's, then `--set`'s.
fn read_conf(common: &CommonArgs) -> anyhow::Result<BTreeMap<String, String>> {
    let (path, required) = match &common.conf_file {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONF), common.set.is_empty()),
    };
    let mut conf = match std::fs::read_to_string(&path) {
        Ok(text) => ini_section(&text, "dispersion")
            .ok_or_else(|| anyhow!("{}: no [dispersion] section", path.display()))?,
        Err(e) if required => {
            bail!("Unable to read config file: {}: {e}", path.display())
        }
        Err(_) => BTreeMap::new(),
    };
    for kv in &common.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--set {kv:?}: expected KEY=VALUE"))?;
        conf.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    Ok(conf)
}

fn conf_number<T: std::str::FromStr>(
    conf: &BTreeMap<String, String>,
    key: &str,
    default: T,
) -> anyhow::Result<T> {
    match conf.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| anyhow!("{key} = {v:?} is not a valid number")),
    }
}

fn conf_flag(conf: &BTreeMap<String, String>, key: &str, default: bool) -> bool {
    conf.get(key).map_or(default, |v| config_true(v))
}

/// What both commands take from the configuration.
struct Settings {
    auth_url: String,
    auth_user: String,
    auth_key: String,
    swift_dir: PathBuf,
    retries: u32,
    concurrency: usize,
}

fn settings(conf: &BTreeMap<String, String>) -> anyhow::Result<Settings> {
    let need = |key: &str| {
        conf.get(key)
            .cloned()
            .ok_or_else(|| anyhow!("the [dispersion] section has no {key}"))
    };
    if let Some(v) = conf.get("auth_version") {
        if !matches!(v.as_str(), "1" | "1.0") {
            bail!("auth_version = {v}: only v1.0 auth is supported");
        }
    }
    // endpoint_type, region_name and the keystone options only matter to
    // keystone auth, which a v1.0 login does not use.
    let concurrency: usize = conf_number(conf, "concurrency", 25)?;
    Ok(Settings {
        auth_url: need("auth_url")?,
        auth_user: need("auth_user")?,
        auth_key: need("auth_key")?,
        swift_dir: PathBuf::from(conf.get("swift_dir").map_or("/etc/swift", String::as_str)),
        retries: conf_number(conf, "retries", 5)?,
        concurrency: concurrency.max(1),
    })
}

/// A storage policy, as far as these commands need one.
struct Policy {
    index: u32,
    name: String,
}

impl Policy {
    fn ring_file(&self) -> String {
        match self.index {
            0 => "object.ring.gz".to_string(),
            n => format!("object-{n}.ring.gz"),
        }
    }
}

/// The hash path salt and the chosen policy, from `swift_dir/swift.conf`.
fn cluster_conf(
    swift_dir: &Path,
    policy_name: Option<&str>,
) -> anyhow::Result<(HashConfig, Policy)> {
    let path = swift_dir.join("swift.conf");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let hash =
        HashConfig::from_swift_conf(&text).with_context(|| format!("in {}", path.display()))?;
    let sections =
        storage_policy_sections(&text).with_context(|| format!("in {}", path.display()))?;
    // Swift's implicit policy when swift.conf declares none.
    let mut policies: Vec<(Policy, bool, Vec<String>)> = Vec::new();
    if sections.is_empty() {
        policies.push((
            Policy {
                index: 0,
                name: "Policy-0".to_string(),
            },
            true,
            Vec::new(),
        ));
    }
    for s in &sections {
        let name = s
            .get("name")
            .map_or_else(|| format!("Policy-{}", s.index), str::to_string);
        let aliases = s
            .get("aliases")
            .map(|a| {
                a.split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let default = s.get("default").is_some_and(config_true);
        policies.push((
            Policy {
                index: s.index,
                name,
            },
            default,
            aliases,
        ));
    }
    let chosen = match policy_name {
        Some(wanted) => {
            let wanted = wanted.to_lowercase();
            policies.into_iter().find(|(p, _, aliases)| {
                p.name.to_lowercase() == wanted
                    || aliases.iter().any(|a| a.to_lowercase() == wanted)
            })
        }
        None if policies.len() == 1 => policies.into_iter().next(),
        None => policies.into_iter().find(|(_, default, _)| *default),
    };
    let Some((policy, _, _)) = chosen else {
        match policy_name {
            Some(name) => bail!("Unable to find policy: {name}"),
            None => bail!("{}: no default storage policy", path.display()),
        }
    };
    Ok((hash, policy))
}

fn load_ring(swift_dir: &Path, file: &str) -> anyhow::Result<Ring> {
    let path = swift_dir.join(file);
    Ring::load(&path).with_context(|| format!("cannot load {}", path.display()))
}

// ---------------------------------------------------------------------------
// Talking to the proxy and the storage nodes

/// Swift's `get_time_units`: seconds, or minutes, or hours.
fn time_units(mut amount: f64) -> (f64, &'static str) {
    let mut unit = "s";
    if amount > 60.0 {
        amount /= 60.0;
        unit = "m";
        if amount > 60.0 {
            amount /= 60.0;
            unit = "h";
        }
    }
    (amount, unit)
}

/// Swift's `compute_eta`: the time left at this rate.
fn eta(begun: Instant, done: u64, total: u64) -> (f64, &'static str) {
    let elapsed = begun.elapsed().as_secs_f64();
    let mut completion = done as f64 / total.max(1) as f64;
    if completion == 0.0 {
        completion = 0.00001;
    }
    time_units(elapsed / completion - elapsed)
}

fn elapsed_text(begun: Instant) -> String {
    let (amount, unit) = time_units(begun.elapsed().as_secs_f64());
    format!("{}{unit}", amount.round() as u64)
}

/// The wait before try number `attempt + 1`: 1 s, doubling, capped.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(4)).min(MAX_BACKOFF)
}

/// Splits `http://host:port/path` into host and path.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("{url}: only http:// URLs are supported");
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        bail!("{url}: no host");
    }
    Ok((host.to_string(), path.to_string()))
}

fn http_client(concurrency: usize) -> BackendClient {
    BackendClient::new(ClientConfig {
        connect_timeout: Duration::from_secs(3),
        node_timeout: Duration::from_secs(30),
        pool_max_idle_per_host: concurrency,
        ..ClientConfig::default()
    })
}

/// A logged-in client of the proxy, retrying as Swift's `SimpleClient`
/// does: failures to get an answer and 5xx answers, `retries` times.
struct Proxy {
    http: BackendClient,
    host: String,
    /// The storage URL's path, `/v1/AUTH_test`.
    base: String,
    token: HeaderValue,
    /// The account's name, the storage URL's last segment.
    account: String,
    retries: u32,
}

/// One answer of the proxy and the tries it took.
struct Answer {
    status: StatusCode,
    body: Bytes,
    attempts: u32,
}

impl Proxy {
    async fn login(s: &Settings) -> anyhow::Result<Proxy> {
        let http = http_client(s.concurrency);
        let (host, path) = split_url(&s.auth_url)?;
        let mut h = HeaderMap::new();
        h.insert(
            "x-auth-user",
            HeaderValue::from_str(&s.auth_user).context("auth_user is not a header value")?,
        );
        h.insert(
            "x-auth-key",
            HeaderValue::from_str(&s.auth_key).context("auth_key is not a header value")?,
        );
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            match http
                .request(Method::GET, &host, &path, h.clone(), apus_http::empty())
                .await
            {
                Ok(r) if !r.status().is_server_error() || attempt > s.retries => break r,
                Ok(r) => eprintln!("auth at {}: {}", s.auth_url, r.status()),
                Err(e) if attempt > s.retries => {
                    return Err(e).with_context(|| format!("auth request to {}", s.auth_url))
                }
                Err(e) => eprintln!("auth at {}: {e}", s.auth_url),
            }
            tokio::time::sleep(backoff(attempt)).await;
        };
        if !resp.status().is_success() {
            bail!("auth at {} failed: {}", s.auth_url, resp.status());
        }
        let token = resp
            .headers()
            .get("x-auth-token")
            .cloned()
            .context("the auth response has no X-Auth-Token")?;
        let url = resp
            .headers()
            .get("x-storage-url")
            .and_then(|v| v.to_str().ok())
            .context("the auth response has no X-Storage-Url")?
            .to_string();
        // As apus bench: requests go to the auth URL's host, under the
        // storage URL's path (whose host may not resolve from here).
        let (_, base) = split_url(&url)?;
        let account = base
            .rsplit('/')
            .next()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| anyhow!("the storage URL {url} names no account"))?
            .to_string();
        Ok(Proxy {
            http,
            host,
            base,
            token,
            account,
            retries: s.retries,
        })
    }

    /// `method base+path`, with the token, retried on failures and 5xx.
    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> anyhow::Result<Answer> {
        let target = format!("{}{path}", self.base);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut h = headers.clone();
            h.insert("x-auth-token", self.token.clone());
            h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            let result = async {
                let resp = self
                    .http
                    .request(method.clone(), &self.host, &target, h, full(body.clone()))
                    .await?;
                let status = resp.status();
                let body = apus_http::body::collect_limited(resp.into_body(), BODY_LIMIT).await?;
                anyhow::Ok((status, body))
            }
            .await;
            match result {
                Ok((status, body)) if !status.is_server_error() || attempts > self.retries => {
                    return Ok(Answer {
                        status,
                        body,
                        attempts,
                    })
                }
                Ok(_) => {}
                Err(e) if attempts > self.retries => {
                    return Err(e.context(format!("{method} {target}")))
                }
                Err(_) => {}
            }
            tokio::time::sleep(backoff(attempts)).await;
        }
    }

    /// Every name of a listing (`""` for the account, `/<container>`)
    /// starting with `prefix`, page by page; `None` if it is not found.
    async fn list(&self, path: &str, prefix: &str) -> anyhow::Result<Option<Vec<String>>> {
        let mut names: Vec<String> = Vec::new();
        loop {
            let mut query = format!("{path}?format=json&prefix={}", query_quote(prefix));
            if let Some(last) = names.last() {
                query.push_str(&format!("&marker={}", query_quote(last)));
            }
            let a = self
                .call(Method::GET, &query, &HeaderMap::new(), &Bytes::new())
                .await?;
            if a.status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if a.status == StatusCode::NO_CONTENT {
                break;
            }
            if !a.status.is_success() {
                bail!("listing {}{path}: {}", self.base, a.status);
            }
            let page: Vec<Value> = serde_json::from_slice(&a.body)
                .with_context(|| format!("listing {}{path} is not JSON", self.base))?;
            let before = names.len();
            names.extend(
                page.iter()
                    .filter_map(|e| e.get("name").and_then(Value::as_str))
                    .map(str::to_string),
            );
            // An empty page ends the listing; so does one that does not
            // move the marker on (which would never end).
            if names.len() == before || names.last() <= names.get(before.wrapping_sub(1)) {
                break;
            }
        }
        Ok(Some(names))
    }
}

/// Percent-encodes a query value (unreserved characters kept).
fn query_quote(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a path segment as Swift's `quote` does (`/` kept).
fn path_quote(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn node_string(dev: &Device) -> String {
    if dev.ip.contains(':') {
        format!("[{}]:{}/{}", dev.ip, dev.port, dev.device)
    } else {
        format!("{}:{}/{}", dev.ip, dev.port, dev.device)
    }
}

fn node_host(dev: &Device) -> String {
    if dev.ip.contains(':') {
        format!("[{}]:{}", dev.ip, dev.port)
    } else {
        format!("{}:{}", dev.ip, dev.port)
    }
}

/// Errors of the direct requests, printed as swift-dispersion-report
/// prints them: an unmounted device once, a 404 once per device with
/// `--debug`, anything else each time.
struct ErrorLog {
    debug: bool,
    unmounted: Mutex<HashSet<String>>,
    notfound: Mutex<HashSet<String>>,
}

impl ErrorLog {
    fn status(&self, dev: &Device, status: StatusCode) {
        let id = node_string(dev);
        if status == StatusCode::INSUFFICIENT_STORAGE {
            let first = self
                .unmounted
                .lock()
                .map(|mut s| s.insert(id.clone()))
                .unwrap_or(false);
            if first {
                eprintln!(
                    "ERROR: {id} is unmounted -- This will cause replicas designated \
                     for that device to be considered missing until resolved or the \
                     ring is updated."
                );
            }
        }
        if self.debug {
            let first = self
                .notfound
                .lock()
                .map(|mut s| s.insert(id.clone()))
                .unwrap_or(false);
            if first {
                eprintln!("ERROR: {id} returned a 404");
            }
        }
        if status != StatusCode::NOT_FOUND && status != StatusCode::INSUFFICIENT_STORAGE {
            eprintln!("ERROR: {id}: status {status}");
        }
    }

    fn failure(&self, dev: &Device, what: &str) {
        eprintln!("ERROR: {}: {what}", node_string(dev));
    }
}

/// HEADs `path` on `dev` as Swift's `direct_client.retry` does: tries
/// again after a failure to get an answer or a 5xx other than 507.
/// Whether the copy is there, and the tries it took.
async fn direct_head(
    http: &BackendClient,
    dev: &Device,
    path: &str,
    policy_index: Option<u32>,
    retries: u32,
    log: &ErrorLog,
) -> (bool, u32) {
    let host = node_host(dev);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut h = HeaderMap::new();
        if let Some(i) = policy_index {
            h.insert("x-backend-storage-policy-index", HeaderValue::from(i));
        }
        let retry = match http
            .request(Method::HEAD, &host, path, h, apus_http::empty())
            .await
        {
            Ok(resp) if resp.status().is_success() => return (true, attempts),
            Ok(resp) => {
                let status = resp.status();
                log.status(dev, status);
                status.is_server_error() && status != StatusCode::INSUFFICIENT_STORAGE
            }
            Err(e) => {
                log.failure(dev, &e.to_string());
                true
            }
        };
        if !retry || attempts > retries {
            if retry {
                log.failure(dev, &format!("Giving up on {path}"));
            }
            return (false, attempts);
        }
        tokio::time::sleep(backoff(attempts)).await;
    }
}

// ---------------------------------------------------------------------------
// populate

/// The names to create: `name(n)` for growing `n`, each on a partition
/// left in `parts_left`, until `need` (a fraction allowed, as Swift's
/// float) falls below one. Each with whether it is to be created (its
/// suffix is at least `start`).
fn choose_names(
    need: f64,
    parts_left: &mut BTreeSet<u32>,
    start: u64,
    part_of: impl Fn(&str) -> u32,
    name: impl Fn(u64) -> String,
) -> (Vec<(String, bool)>, f64) {
    let mut left = need;
    let mut out = Vec::new();
    let mut suffix = 0u64;
    while left >= 1.0 && !parts_left.is_empty() {
        let n = name(suffix);
        if parts_left.remove(&part_of(&n)) {
            out.push((n, suffix >= start));
            left -= 1.0;
        }
        suffix += 1;
    }
    (out, left)
}

/// Sends one request per name, `concurrency` at a time, with a progress
/// line; the retries they took. The first failure ends the run.
async fn create_all(
    proxy: &Arc<Proxy>,
    what: &'static str,
    names: Vec<(String, bool)>,
    concurrency: usize,
    request: impl Fn(&str) -> (Method, String, HeaderMap, Bytes),
) -> anyhow::Result<u64> {
    let total = names.len() as u64;
    let begun = Instant::now();
    let mut bar = Progress::new(Some(PLAIN_PROGRESS));
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    let mut done = 0u64;
    let mut retries = 0u64;
    for (name, create) in names {
        if !create {
            done += 1;
            continue;
        }
        let (method, path, headers, body) = request(&name);
        let proxy = proxy.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let a = proxy.call(method, &path, &headers, &body).await?;
            if !a.status.is_success() {
                bail!("PUT {path}: {}", a.status);
            }
            anyhow::Ok(a.attempts - 1)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let r = joined.map_err(|e| anyhow!("a request task failed: {e}"))?;
        match r {
            Ok(n) => retries += u64::from(n),
            Err(e) => {
                tasks.abort_all();
                bar.finish();
                return Err(e.context("Gave up due to error(s)."));
            }
        }
        done += 1;
        bar.update(done == total, || {
            let (left, unit) = eta(begun, done, total);
            format!(
                "Creating {what}: {done} of {total}, {}{unit} left, {retries} retries",
                left.round() as u64
            )
        });
    }
    bar.finish();
    Ok(retries)
}

async fn populate(args: &PopulateArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let conf = read_conf(common)?;
    let s = settings(&conf)?;
    let (hash, policy) = cluster_conf(&s.swift_dir, common.policy_name.as_deref())?;
    println!("Using storage policy: {} ", policy.name);
    let coverage: f64 = conf_number(&conf, "dispersion_coverage", 1.0)?;
    let containers = conf_flag(&conf, "container_populate", true) && !common.object_only;
    let objects = conf_flag(&conf, "object_populate", true) && !common.container_only;
    if !containers && !objects {
        bail!("Neither container or object populate is set to run");
    }
    let proxy = Arc::new(Proxy::login(&s).await?);
    let account = proxy.account.clone();
    let mut policy_header = HeaderMap::new();
    policy_header.insert(
        "x-storage-policy",
        HeaderValue::from_str(&policy.name).context("the policy name is not a header value")?,
    );

    if containers {
        let ring = load_ring(&s.swift_dir, "container.ring.gz")?;
        let mut parts_left: BTreeSet<u32> = (0..ring.partition_count()).collect();
        let part_of = |c: &str| ring.partition(&hash, &account, Some(c), None);
        if args.no_overlap {
            let listed = proxy
                .list("", &format!("dispersion_{}", policy.index))
                .await?
                .unwrap_or_default();
            for c in &listed {
                parts_left.remove(&part_of(c));
            }
        }
        let begun = Instant::now();
        let need = coverage / 100.0 * f64::from(ring.partition_count());
        let (names, left) = choose_names(
            need,
            &mut parts_left,
            args.container_suffix_start,
            part_of,
            |n| format!("dispersion_{}_{n}", policy.index),
        );
        let retries = create_all(&proxy, "containers", names, s.concurrency, |c| {
            (
                Method::PUT,
                format!("/{}", path_quote(c)),
                policy_header.clone(),
                Bytes::new(),
            )
        })
        .await?;
        println!(
            "Created {} containers for dispersion reporting, {}, {retries} retries",
            (need - left) as u64,
            elapsed_text(begun)
        );
        if args.no_overlap {
            let covered = ring.partition_count() as usize - parts_left.len();
            println!(
                "Total container coverage is now {:.2}%.",
                100.0 * covered as f64 / f64::from(ring.partition_count())
            );
        }
    }

    if objects {
        let container = format!("dispersion_objects_{}", policy.index);
        let a = proxy
            .call(
                Method::PUT,
                &format!("/{container}"),
                &policy_header,
                &Bytes::new(),
            )
            .await?;
        if !a.status.is_success() {
            bail!("PUT {container}: {}", a.status);
        }
        let ring = load_ring(&s.swift_dir, &policy.ring_file())?;
        let mut parts_left: BTreeSet<u32> = (0..ring.partition_count()).collect();
        let part_of = |o: &str| ring.partition(&hash, &account, Some(&container), Some(o));
        if args.no_overlap {
            let listed = proxy
                .list(&format!("/{container}"), "dispersion_")
                .await?
                .unwrap_or_default();
            for o in &listed {
                parts_left.remove(&part_of(o));
            }
        }
        let begun = Instant::now();
        let need = coverage / 100.0 * f64::from(ring.partition_count());
        let (names, left) = choose_names(
            need,
            &mut parts_left,
            args.object_suffix_start,
            part_of,
            |n| format!("dispersion_{n}"),
        );
        let retries = create_all(&proxy, "objects", names, s.concurrency, |o| {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(o) {
                h.insert("x-object-meta-dispersion", v);
            }
            (
                Method::PUT,
                format!("/{container}/{}", path_quote(o)),
                h,
                Bytes::copy_from_slice(o.as_bytes()),
            )
        })
        .await?;
        println!(
            "Created {} objects for dispersion reporting, {}, {retries} retries",
            (need - left) as u64,
            elapsed_text(begun)
        );
        if args.no_overlap {
            let covered = ring.partition_count() as usize - parts_left.len();
            println!(
                "Total object coverage is now {:.2}%.",
                100.0 * covered as f64 / f64::from(ring.partition_count())
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// report

/// Swift's sentence for `partitions` partitions missing `missing` of
/// `copies` copies.
fn missing_sentence(partitions: u64, missing: usize, copies: usize) -> String {
    let (marks, how_many) = if missing == copies {
        ("!!! ", "all".to_string())
    } else if copies.saturating_sub(missing) == 1 {
        ("! ", missing.to_string())
    } else {
        ("", missing.to_string())
    };
    let (verb, noun) = if partitions > 1 {
        ("were", "partitions")
    } else {
        ("was", "partition")
    };
    let copy = if missing == 1 { "copy" } else { "copies" };
    format!("{marks}There {verb} {partitions} {noun} missing {how_many} {copy}.")
}

/// What one kind's report found.
struct Tally {
    listed: u64,
    partitions: u64,
    found: u64,
    expected: u64,
    retries: u64,
    /// Partitions by how many copies they miss.
    missing: BTreeMap<usize, u64>,
}

struct Check<'a> {
    /// `container` or `object`.
    kind: &'static str,
    ring: &'a Ring,
    names: Vec<String>,
    /// The name's partition.
    part_of: &'a dyn Fn(&str) -> u32,
    /// The storage server path of a name on a device and partition.
    path_of: &'a dyn Fn(&Device, u32, &str) -> String,
    policy_index: Option<u32>,
}

/// HEADs every primary of each distinct partition of `check.names`.
async fn check_copies(
    check: Check<'_>,
    http: &BackendClient,
    s: &Settings,
    log: &Arc<ErrorLog>,
    show_partitions: bool,
    mut bar: Progress,
) -> Tally {
    let listed = check.names.len() as u64;
    let mut seen = BTreeSet::new();
    let mut jobs: Vec<(u32, Vec<(Device, String)>)> = Vec::new();
    for name in &check.names {
        let part = (check.part_of)(name);
        if seen.insert(part) {
            let devs = check
                .ring
                .primaries(part)
                .into_iter()
                .map(|d| (d.clone(), (check.path_of)(d, part, name)))
                .collect();
            jobs.push((part, devs));
        }
    }
    let mut tally = Tally {
        listed,
        partitions: jobs.len() as u64,
        found: 0,
        expected: jobs.iter().map(|(_, d)| d.len() as u64).sum(),
        retries: 0,
        missing: BTreeMap::new(),
    };
    let begun = Instant::now();
    let permits = Arc::new(Semaphore::new(s.concurrency));
    let mut tasks = JoinSet::new();
    for (part, devs) in jobs {
        let (http, permits, log) = (http.clone(), permits.clone(), log.clone());
        let (retries, policy_index) = (s.retries, check.policy_index);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let mut found = 0usize;
            let mut extra = 0u64;
            for (dev, path) in &devs {
                let (ok, attempts) =
                    direct_head(&http, dev, path, policy_index, retries, &log).await;
                found += usize::from(ok);
                extra += u64::from(attempts.saturating_sub(1));
            }
            (part, devs.len(), found, extra)
        });
    }
    let label = if check.kind == "container" {
        "Container"
    } else {
        "Object"
    };
    let mut queried = 0u64;
    while let Some(joined) = tasks.join_next().await {
        let Ok((part, copies, found, extra)) = joined else {
            continue;
        };
        let missing = copies - found;
        if show_partitions && missing > 0 {
            bar.finish();
            eprintln!(
                "# {label} partition {part} missing {missing} cop{}",
                if missing == 1 { "y" } else { "ies" }
            );
        }
        tally.found += found as u64;
        tally.retries += extra;
        *tally.missing.entry(missing).or_default() += 1;
        queried += 1;
        bar.update(queried == tally.partitions, || {
            let (left, unit) = eta(begun, queried, tally.partitions);
            format!(
                "Querying {}s: {queried} of {listed}, {}{unit} left, {} retries",
                check.kind,
                left.round() as u64,
                tally.retries
            )
        });
    }
    bar.finish();
    // swift-dispersion-report leaves "missing 0" out for containers only.
    if check.kind == "container" {
        tally.missing.remove(&0);
    }
    tally
}

fn tally_text(kind: &str, t: &Tally, ring: &Ring, begun: Instant) {
    println!(
        "Queried {} {kind}s for dispersion reporting, {}, {} retries",
        t.listed,
        elapsed_text(begun),
        t.retries
    );
    let overlapping = t.listed - t.partitions;
    if overlapping > 0 {
        println!("There were {overlapping} overlapping partitions");
    }
    for (missing, parts) in &t.missing {
        println!(
            "{}",
            missing_sentence(*parts, *missing, ring.replica_count())
        );
    }
    println!(
        "{:.2}% of {kind} copies found ({} of {})",
        pct_found(t),
        t.found,
        t.expected
    );
    println!(
        "Sample represents {:.2}% of the {kind} partition space",
        100.0 * t.partitions as f64 / f64::from(ring.partition_count())
    );
}

fn pct_found(t: &Tally) -> f64 {
    100.0 * t.found as f64 / t.expected.max(1) as f64
}

fn tally_json(t: &Tally) -> Value {
    let mut m = Map::new();
    m.insert("retries".into(), json!(t.retries));
    m.insert("overlapping".into(), json!(t.listed - t.partitions));
    m.insert("pct_found".into(), json!(pct_found(t)));
    m.insert("copies_found".into(), json!(t.found));
    m.insert("copies_expected".into(), json!(t.expected));
    for (missing, parts) in &t.missing {
        m.insert(format!("missing_{missing}"), json!(parts));
    }
    Value::Object(m)
}

async fn report(args: &ReportArgs) -> anyhow::Result<()> {
    let common = &args.common;
    let conf = read_conf(common)?;
    let s = settings(&conf)?;
    let json_out = args.dump_json || conf_flag(&conf, "dump_json", false);
    let show_partitions = args.partitions || conf_flag(&conf, "partitions", false);
    let containers = conf_flag(&conf, "container_report", true) && !common.object_only;
    let objects = conf_flag(&conf, "object_report", true) && !common.container_only;
    let (hash, policy) = cluster_conf(&s.swift_dir, common.policy_name.as_deref())?;
    if !json_out {
        println!("Using storage policy: {} ", policy.name);
    }
    if !containers && !objects {
        bail!("Neither container or object report is set to run");
    }
    let proxy = Proxy::login(&s).await?;
    let account = proxy.account.clone();
    let container_ring = load_ring(&s.swift_dir, "container.ring.gz")?;
    let object_ring = load_ring(&s.swift_dir, &policy.ring_file())?;
    let http = http_client(s.concurrency);
    let log = Arc::new(ErrorLog {
        debug: args.debug,
        unmounted: Mutex::new(HashSet::new()),
        notfound: Mutex::new(HashSet::new()),
    });
    let bar = || {
        if json_out || args.debug {
            Progress::silent()
        } else {
            Progress::new(Some(PLAIN_PROGRESS))
        }
    };
    let mut output = Map::new();

    if containers {
        let names = proxy
            .list("", &format!("dispersion_{}", policy.index))
            .await?
            .unwrap_or_default();
        let value = if names.is_empty() {
            eprintln!("No containers to query. Has apus dispersion populate been run?");
            Value::Null
        } else {
            let begun = Instant::now();
            let part_of = |c: &str| container_ring.partition(&hash, &account, Some(c), None);
            let path_of = |d: &Device, part: u32, c: &str| {
                format!("/{}/{part}/{account}/{}", d.device, path_quote(c))
            };
            let check = Check {
                kind: "container",
                ring: &container_ring,
                names,
                part_of: &part_of,
                path_of: &path_of,
                policy_index: None,
            };
            let t = check_copies(check, &http, &s, &log, show_partitions, bar()).await;
            if json_out {
                tally_json(&t)
            } else {
                tally_text("container", &t, &container_ring, begun);
                Value::Null
            }
        };
        output.insert("container".into(), value);
    }

    if objects {
        let container = format!("dispersion_objects_{}", policy.index);
        let names = proxy
            .list(&format!("/{container}"), "dispersion_")
            .await?
            .unwrap_or_default();
        let value = if names.is_empty() {
            eprintln!("No objects to query. Has apus dispersion populate been run?");
            Value::Null
        } else {
            let begun = Instant::now();
            let part_of =
                |o: &str| object_ring.partition(&hash, &account, Some(&container), Some(o));
            let path_of = |d: &Device, part: u32, o: &str| {
                format!(
                    "/{}/{part}/{account}/{container}/{}",
                    d.device,
                    path_quote(o)
                )
            };
            let check = Check {
                kind: "object",
                ring: &object_ring,
                names,
                part_of: &part_of,
                path_of: &path_of,
                policy_index: Some(policy.index),
            };
            let t = check_copies(check, &http, &s, &log, show_partitions, bar()).await;
            if json_out {
                tally_json(&t)
            } else {
                tally_text("object", &t, &object_ring, begun);
                Value::Null
            }
        };
        output.insert("object".into(), value);
    }
    if json_out {
        println!("{}", Value::Object(output));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_reads_the_section_with_defaults() {
        let text = "[DEFAULT]\nretries = 3\n# c\n[other]\nauth_url = x\n\
                    [dispersion]\nAuth_URL = http://h:1/auth/v1.0\nauth_key: k\n  more\n";
        let s = ini_section(text, "dispersion").unwrap();
        assert_eq!(s["auth_url"], "http://h:1/auth/v1.0");
        assert_eq!(s["auth_key"], "k\nmore");
        assert_eq!(s["retries"], "3");
        assert!(ini_section(text, "missing").is_none());
    }

    #[test]
    fn sentences_match_swift() {
        assert_eq!(
            missing_sentence(1, 1, 3),
            "There was 1 partition missing 1 copy."
        );
        assert_eq!(
            missing_sentence(5, 2, 3),
            "! There were 5 partitions missing 2 copies."
        );
        assert_eq!(
            missing_sentence(2, 3, 3),
            "!!! There were 2 partitions missing all copies."
        );
        assert_eq!(
            missing_sentence(7, 0, 3),
            "There were 7 partitions missing 0 copies."
        );
    }

    #[test]
    fn names_cover_distinct_partitions() {
        let mut left: BTreeSet<u32> = (0..8).collect();
        let (names, rest) = choose_names(
            4.5,
            &mut left,
            2,
            |n| n.len() as u32 % 8 + n.bytes().last().map_or(0, u32::from) % 3,
            |n| format!("x{n}"),
        );
        assert_eq!(names.len(), 4);
        assert!(rest < 1.0);
        let parts: BTreeSet<u32> = names
            .iter()
            .map(|(n, _)| n.len() as u32 % 8 + n.bytes().last().map_or(0, u32::from) % 3)
            .collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(left.len(), 4);
    }

    #[test]
    fn time_units_are_swifts() {
        assert_eq!(time_units(30.0), (30.0, "s"));
        assert_eq!(time_units(120.0), (2.0, "m"));
        assert_eq!(time_units(7200.0 * 1.5), (3.0, "h"));
    }
}
