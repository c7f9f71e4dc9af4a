//! `apus serve`: run a node's servers in this process.
//!
//! With no arguments it runs a whole cluster over `./apus-data` (see
//! [`crate::local_cluster`]); with `--config` it runs the roles a node
//! configuration names (see [`crate::node_config`] and `docs/config.md`).
//! Everything that can fail at start (configuration, rings, salt, ports)
//! is checked before anything serves, and fails with one line on stderr.
//! SIGINT or SIGTERM stops the proxy first, letting its requests finish,
//! then the storage servers, each within `shutdown_timeout`; a second
//! signal exits at once.

use std::fmt::Write as _;
use std::future::Future;
use std::io::{IsTerminal, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use apus_core::policy::PolicyKind;
use apus_core::HashConfig;
use apus_daemons::metrics::DaemonMetrics;
use apus_daemons::{LocalIdentity, Shutdown};
use apus_http::metrics::ProcessCollector;
use apus_http::{RequestMetrics, ServerConfig, ServerKind, ServerMetrics};
use apus_proxy::metrics::ProxyMetrics;
use apus_proxy::{Policy, Proxy, ProxyConfig};
use apus_ring::ReloadingRing;
use apus_server::account::AccountServer;
use apus_server::container::ContainerServer;
use apus_server::db_common::{DbServerConfig, Policies, PolicyInfo};
use apus_server::metrics::DeviceCollector;
use apus_server::object::{EcPolicy, ObjectServer, ObjectServerConfig};
use apus_server::recon::ReconConfig;
use prometheus_client::registry::Registry;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::daemons::Daemons;
use crate::local_cluster::{LocalCluster, LocalRing};
use crate::node_config::{FileConfig, HashSource, Layout, NodeConfig, Overrides, DEFAULT_DATA_DIR};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Data directory of a one-process cluster, created on first start
    /// [default: ./apus-data, unless --config describes a node]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Address of the proxy [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR:PORT")]
    bind: Option<SocketAddr>,
    /// Node configuration (TOML; see docs/config.md)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address of the image service, `apus images` [default: 127.0.0.1:9292
    /// in a one-process cluster; `[images] bind` in a node configuration]
    #[arg(long, value_name = "ADDR:PORT")]
    images_bind: Option<SocketAddr>,
}

/// Targets of the one-line-per-request logs, quieted by `log_requests = false`.
const REQUEST_LOG_TARGETS: [&str; 3] = ["apus_proxy::catch_errors", "object-server", "apus_images"];
/// How long blocking disk work may keep the process alive after the
/// servers have stopped.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(5);
/// Threads for disk and SQLite work (tokio's default is 512). Each thread
/// costs a stack and allocator caches: 64 concurrent small PUTs grew the
/// pool past 250 threads (and, with a per-thread-cache allocator, the
/// process past 600 MB); beyond a few dozen, more threads only queue on
/// the same disks.
const MAX_BLOCKING_THREADS: usize = 64;

pub fn run(args: &ServeArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        // Like the other commands: one line, exit code 2.
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Reads and resolves the configuration the way `apus serve` does:
/// `--data` or no `--config` means the local layout.
pub fn load_config(
    data: Option<&Path>,
    config: Option<&Path>,
    bind: Option<SocketAddr>,
) -> Result<NodeConfig> {
    let (file, base) = match config {
        Some(path) => (
            FileConfig::load(path)?,
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
        ),
        None => (FileConfig::default(), PathBuf::new()),
    };
    let data = match (data, config) {
        (Some(d), _) => Some(d.to_path_buf()),
        (None, None) => Some(PathBuf::from(DEFAULT_DATA_DIR)),
        (None, Some(_)) => None,
    };
    NodeConfig::resolve(file, &base, Overrides { data, bind }).with_context(|| match config {
        Some(p) => p.display().to_string(),
        None => "configuration".to_string(),
    })
}

/// Refuses an `APUS_CLOCK_OFFSET_SECS` that does not parse (the clock
/// would silently stay unmoved), and says when the clock is moved.
pub fn check_clock_offset() -> Result<()> {
    let offset = apus_core::clock::offset_from_env()?;
    if offset.by > std::time::Duration::ZERO {
        let sign = if offset.ahead { "+" } else { "-" };
        tracing::warn!(
            "this process's clock is moved by {sign}{} s ({})",
            offset.by.as_secs_f64(),
            apus_core::clock::OFFSET_VAR
        );
    }
    Ok(())
}

/// The hash salt of a node layout.
pub fn node_hash(source: &HashSource) -> Result<HashConfig> {
    Ok(match source {
        HashSource::Inline(h) => h.clone(),
        HashSource::SwiftConf(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            HashConfig::from_swift_conf(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
        }
    })
}

fn run_inner(args: &ServeArgs) -> Result<ExitCode> {
    let mut conf = load_config(args.data.as_deref(), args.config.as_deref(), args.bind)?;
    if let Some(bind) = args.images_bind {
        let Some(images) = conf.images.as_mut() else {
            bail!("--images-bind: this node runs no image service ([images] enabled = false, or no proxy)");
        };
        images.bind = bind;
        images.bind_is_default = false;
    }
    init_logging(conf.log_requests);
    check_clock_offset()?;
    let plan = prepare(&conf)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(serve(plan, conf.shutdown_timeout));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    code
}

pub fn init_logging(log_requests: bool) {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter};
    let mut filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    if !log_requests {
        for target in REQUEST_LOG_TARGETS {
            if let Ok(directive) = format!("{target}=warn").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The three storage servers.
#[derive(Clone, Copy)]
enum Server {
    Object,
    Container,
    Account,
}

impl Server {
    const ALL: [Server; 3] = [Server::Object, Server::Container, Server::Account];

    fn name(self) -> &'static str {
        match self {
            Server::Object => "object",
            Server::Container => "container",
            Server::Account => "account",
        }
    }
}

enum StorageConfig {
    Object(ObjectServerConfig),
    Container(DbServerConfig),
    Account(DbServerConfig),
}

/// Everything checked and bound, ready to serve.
struct Plan {
    /// The proxy, its client listener and its metrics (admin) listener.
    proxy: Option<(ProxyConfig, TcpListener, Option<TcpListener>)>,
    storage: Vec<(Server, StorageConfig, TcpListener)>,
    /// `apus images` and its listener.
    images: Option<(apus_images::ImagesConfig, TcpListener)>,
    daemons: Option<Daemons>,
    banner: String,
    /// Keeps the data directory locked while serving.
    _local: Option<LocalCluster>,
}

fn prepare(conf: &NodeConfig) -> Result<Plan> {
    let mut local = None;
    let mut listeners = Vec::new();
    let (hash, rings, rings_dir, identity) = match &conf.layout {
        Layout::Local { data } => {
            let mut cluster = LocalCluster::open(data)?;
            for server in Server::ALL {
                let ring = match server {
                    Server::Object => &mut cluster.object,
                    Server::Container => &mut cluster.container,
                    Server::Account => &mut cluster.account,
                };
                listeners.push((server, ring_listener(server, ring)?));
            }
            // A local cluster's rings do not change while it runs.
            let fixed = |r: &LocalRing| Arc::new(ReloadingRing::fixed(r.ring.clone()));
            let objects = [
                (0, &cluster.object),
                (1, &cluster.object_1),
                (2, &cluster.object_2),
            ]
            .into_iter()
            .filter(|(i, _)| conf.policies.iter().any(|p| p.index == *i))
            .map(|(i, r)| (i, fixed(r)))
            .collect();
            let rings = Rings {
                account: fixed(&cluster.account),
                container: fixed(&cluster.container),
                objects,
            };
            check_policy_rings(conf, &rings)?;
            let hash = cluster.hash.clone();
            let identity = LocalIdentity {
                account: cluster.account.addr,
                container: cluster.container.addr,
                object: cluster.object.addr,
            };
            local = Some(cluster);
            (hash, Some(rings), data.clone(), Some(identity))
        }
        Layout::Node { hash, rings_dir } => {
            let hash = node_hash(hash)?;
            // The proxy cannot start without rings; the daemons of a
            // storage-only node report missing rings on each pass instead.
            let rings = match conf.proxy {
                Some(_) => Some(Rings::load(rings_dir, conf)?),
                None => match Rings::load(rings_dir, conf) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::warn!(error = %e, "no rings: the daemons cannot run");
                        None
                    }
                },
            };
            // Before anything listens.
            if let Some(rings) = &rings {
                check_policy_rings(conf, rings)?;
            }
            if let Some(addrs) = conf.storage.as_ref().and_then(|s| s.addrs) {
                for server in Server::ALL {
                    let addr = match server {
                        Server::Object => addrs.object,
                        Server::Container => addrs.container,
                        Server::Account => addrs.account,
                    };
                    let l = TcpListener::bind(addr).map_err(|e| {
                        anyhow!("cannot listen on {addr} ({} server): {e}", server.name())
                    })?;
                    listeners.push((server, l));
                }
            }
            let identity = conf
                .storage
                .as_ref()
                .and_then(|s| s.addrs)
                .map(|a| LocalIdentity {
                    account: a.account,
                    container: a.container,
                    object: a.object,
                });
            (hash, rings, rings_dir.clone(), identity)
        }
    };

    let mut banner = String::new();
    let proxy = match (&conf.proxy, &rings) {
        (Some(node), Some(rings)) => {
            let mut pc = proxy_config(conf, &hash, rings)?;
            node.apply(&mut pc);
            let listener = TcpListener::bind(node.bind)
                .map_err(|e| anyhow!("cannot listen on {} (proxy): {e}", node.bind))?;
            let addr = listener.local_addr()?;
            describe_proxy(&mut banner, conf, &pc, addr);
            let admin = match node.metrics_bind {
                Some(at) => {
                    let l = TcpListener::bind(at)
                        .map_err(|e| anyhow!("cannot listen on {at} (proxy metrics): {e}"))?;
                    let _ = writeln!(banner, "  metrics    http://{}/metrics", l.local_addr()?);
                    Some(l)
                }
                None => None,
            };
            Some((pc, listener, admin))
        }
        _ => None,
    };
    let images = match (&conf.images, &proxy) {
        (Some(node), Some(_)) => {
            let listener = match TcpListener::bind(node.bind) {
                Ok(l) => l,
                // The one-process default is Glance's port; another
                // cluster (or a Glance) may hold it.
                Err(e) if node.bind_is_default => {
                    let any = SocketAddr::new(node.bind.ip(), 0);
                    tracing::warn!(
                        "cannot listen on {} (images): {e}; using a free port instead",
                        node.bind
                    );
                    TcpListener::bind(any)
                        .map_err(|e| anyhow!("cannot listen on {any} (images): {e}"))?
                }
                Err(e) => return Err(anyhow!("cannot listen on {} (images): {e}", node.bind)),
            };
            let addr = listener.local_addr()?;
            let _ = writeln!(
                banner,
                "  images     http://{addr} (Glance v2 image API; try curl http://{addr}/images)"
            );
            Some((node.config.clone(), listener))
        }
        _ => None,
    };

    let mut storage = Vec::new();
    if let Some(node) = &conf.storage {
        if !node.devices.is_dir() {
            return Err(anyhow!(
                "storage devices directory {} does not exist",
                node.devices.display()
            ));
        }
        let policies = Policies {
            policies: conf
                .policies
                .iter()
                .map(|p| PolicyInfo {
                    index: i64::from(p.index),
                    name: p.name.clone(),
                })
                .collect(),
            default_index: i64::from(conf.default_policy()),
        };
        let policy_indexes: Vec<u32> = conf.policies.iter().map(|p| p.index).collect();
        // The paths `/recon` names: absolute, as an operator wrote them
        // in Swift's configuration (not relative to this node's file).
        let absolute = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let swift_conf = conf.swift_conf_path();
        let swift_conf = match (swift_conf.parent(), swift_conf.file_name()) {
            (Some(dir), Some(name)) => absolute(dir).join(name),
            _ => swift_conf,
        };
        let recon = Arc::new(ReconConfig {
            devices: node.devices.clone(),
            cache_path: node.recon_cache.clone(),
            rings: ReconConfig::ring_paths(&absolute(conf.rings_dir()), &policy_indexes),
            swift_conf,
        });
        let db_config = || {
            let mut c = DbServerConfig::new(&node.devices, hash.clone());
            c.policies = policies.clone();
            c.recon = Some(recon.clone());
            node.apply_db(&mut c);
            c
        };
        let _ = write!(banner, "  storage    devices {}:", node.devices.display());
        for (server, listener) in listeners {
            let _ = write!(banner, " {} {}", server.name(), listener.local_addr()?);
            let config = match server {
                Server::Object => {
                    let mut c = ObjectServerConfig::with_devices(&node.devices, hash.clone());
                    c.policies = conf.policies.iter().map(|p| p.index).collect();
                    c.ec_policies = conf
                        .policies
                        .iter()
                        .filter_map(|p| match &p.kind {
                            PolicyKind::ErasureCoding(ec) => {
                                Some(EcPolicy::new(p.index, ec.ndata, ec.nparity))
                            }
                            PolicyKind::Replication => None,
                        })
                        .collect();
                    c.recon = Some(recon.clone());
                    node.apply_object(&mut c);
                    // The object server rehashes suffixes for the
                    // replicators; it reclaims as they do.
                    if let Some(age) = conf.daemons.reclaim_age {
                        c.diskfile.reclaim_age = age;
                    }
                    StorageConfig::Object(c)
                }
                Server::Container => StorageConfig::Container(db_config()),
                Server::Account => StorageConfig::Account(db_config()),
            };
            storage.push((server, config, listener));
        }
        banner.push_str(" (each with /metrics)\n");
    }
    if let (Layout::Local { data }, Some(_)) = (&conf.layout, &proxy) {
        banner.insert_str(
            0,
            &format!(
                "apus serve: a whole cluster in one process over {} \
                 (3 replicas on 4 devices, ec42 as 4+2 fragments on 6; default policy {}; \
                 rings and swift.conf there)\n",
                data.display(),
                conf.policies
                    .iter()
                    .find(|p| p.default)
                    .map_or("Policy-0", |p| p.name.as_str())
            ),
        );
    } else {
        banner.insert_str(0, "apus serve: node started\n");
    }
    let daemons = match (&conf.storage, identity) {
        (Some(_), Some(identity)) => {
            let internal = rings
                .as_ref()
                .map(|r| proxy_config(conf, &hash, r))
                .transpose()?;
            let d = Daemons::new(conf, hash.clone(), rings_dir, identity, internal)?;
            let names: Vec<&str> = d.enabled().iter().map(|n| n.as_str()).collect();
            if !names.is_empty() {
                let _ = writeln!(banner, "  daemons    {}", names.join(" "));
            }
            Some(d)
        }
        _ => None,
    };
    Ok(Plan {
        proxy,
        storage,
        images,
        daemons,
        banner,
        _local: local,
    })
}

/// The listener of a local ring's server: the one bound when the ring was
/// created, or its recorded address bound again. A recorded port that is
/// taken is an error, not a reason to move the devices: the usual cause is
/// another cluster still running, and the rings must not change under it.
fn ring_listener(server: Server, r: &mut LocalRing) -> Result<TcpListener> {
    if let Some(l) = r.listener.take() {
        return Ok(l);
    }
    let name = server.name();
    TcpListener::bind(r.addr).map_err(|e| {
        let builder = r.path.with_file_name(format!("{name}.builder"));
        anyhow!(
            "cannot listen on {}, the {name} server's address in {}: {e} \
             (free that port, or give the devices another one with `apus ring {} set_info` and `write_ring`)",
            r.addr,
            r.path.display(),
            builder.display()
        )
    })
}

/// Each erasure-coded policy's object ring places one device per
/// fragment archive: `(ndata + nparity) * ec_duplication_factor` replicas,
/// as Swift checks when it loads the ring.
fn check_policy_rings(conf: &NodeConfig, rings: &Rings) -> Result<()> {
    for p in &conf.policies {
        let PolicyKind::ErasureCoding(ec) = &p.kind else {
            continue;
        };
        let Some((_, ring)) = rings.objects.iter().find(|(i, _)| *i == p.index) else {
            continue;
        };
        let replicas = ring.get().replica_count();
        if replicas != ec.ring_replicas() as usize {
            bail!(
                "policy {} ({}): an {} policy needs an object ring of exactly {} replicas, and its ring has {replicas}",
                p.index,
                p.name,
                ec.scheme_description(),
                ec.ring_replicas()
            );
        }
    }
    Ok(())
}

/// The proxy's settings over `rings` (one object ring per policy), before
/// the file's `[proxy]` settings are applied.
pub fn proxy_config(conf: &NodeConfig, hash: &HashConfig, rings: &Rings) -> Result<ProxyConfig> {
    let policies = conf
        .policies
        .iter()
        .map(|p| {
            let ring = rings
                .objects
                .iter()
                .find(|(i, _)| *i == p.index)
                .map(|(_, r)| r.clone())
                .ok_or_else(|| anyhow!("no object ring for policy {}", p.index))?;
            Ok(Policy {
                index: p.index,
                name: p.name.clone(),
                aliases: p.aliases.clone(),
                default: p.default,
                deprecated: p.deprecated,
                ring,
                kind: p.kind.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ProxyConfig::new(
        hash.clone(),
        rings.account.clone(),
        rings.container.clone(),
        policies,
    ))
}

pub struct Rings {
    pub account: Arc<ReloadingRing>,
    pub container: Arc<ReloadingRing>,
    /// Object ring of each policy index.
    pub objects: Vec<(u32, Arc<ReloadingRing>)>,
}

impl Rings {
    /// A node's rings: `account.ring.gz`, `container.ring.gz` and one
    /// object ring per policy (`object.ring.gz`, `object-N.ring.gz`),
    /// each reloaded when its file changes, checked every
    /// `proxy.ring_reload_time`.
    pub fn load(dir: &Path, conf: &NodeConfig) -> Result<Self> {
        let reload_time = conf
            .proxy
            .as_ref()
            .map(|p| p.ring_reload_time())
            .unwrap_or(apus_ring::reload::DEFAULT_RELOAD_TIME);
        let load = |name: &str| -> Result<Arc<ReloadingRing>> {
            let path = dir.join(name);
            ReloadingRing::load(&path, reload_time)
                .map(Arc::new)
                .map_err(|e| anyhow!("{}: {e}", path.display()))
        };
        let mut objects = Vec::new();
        for p in &conf.policies {
            let name = match p.index {
                0 => "object.ring.gz".to_string(),
                n => format!("object-{n}.ring.gz"),
            };
            objects.push((p.index, load(&name)?));
        }
        Ok(Rings {
            account: load("account.ring.gz")?,
            container: load("container.ring.gz")?,
            objects,
        })
    }
}

fn describe_proxy(out: &mut String, conf: &NodeConfig, pc: &ProxyConfig, addr: SocketAddr) {
    // An unspecified bind address serves loopback too; print one a client can use.
    let shown = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    };
    let _ = writeln!(out, "  proxy      http://{shown}");
    let stages = pc.pipeline.stages();
    let _ = writeln!(out, "  pipeline   {}", stages.join(" "));
    if stages.contains(&"console") {
        let _ = writeln!(out, "  console    http://{shown}/console/");
    }
    if stages.contains(&"keystoneauth") {
        let _ = writeln!(out, "  keystone   {}/v3", pc.keystone.auth_url);
    }
    if !stages.contains(&"tempauth") {
        return;
    }
    let auth = format!("http://{shown}{}v1.0", pc.tempauth.auth_prefix);
    let _ = writeln!(out, "  auth URL   {auth}");
    // Keys are shown for a local cluster only: its users are the
    // well-known test ones; a node's keys stay in its file.
    let local = matches!(conf.layout, Layout::Local { .. });
    let _ = writeln!(out, "  users");
    for u in &pc.tempauth.users {
        let name = format!("{}:{}", u.account, u.user);
        let key = if local { u.key.as_str() } else { "***" };
        let _ = writeln!(out, "    {name:<16} {key:<10} {}", u.groups.join(" "));
    }
    let example = pc
        .tempauth
        .users
        .iter()
        .find(|u| u.account == "test" && u.user == "tester")
        .or(pc.tempauth.users.first());
    if let Some(u) = example.filter(|_| local) {
        let _ = writeln!(
            out,
            "  try        swift -A {auth} -U {}:{} -K {} stat",
            u.account, u.user, u.key
        );
    }
}

async fn serve(mut plan: Plan, shutdown_timeout: Duration) -> Result<ExitCode> {
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let server_conf = ServerConfig {
        graceful_timeout: shutdown_timeout,
        ..ServerConfig::default()
    };

    let daemon_metrics = plan.daemons.as_ref().and_then(Daemons::metrics);
    let (storage_stop, storage_rx) = watch::channel(false);
    let mut storage = JoinSet::new();
    // The proxy, the object servers (container updates) and the container
    // servers (account updates) hand their requests to the storage
    // servers of this process without a socket (`apus_http::local`).
    let local_nodes = apus_http::local::LocalNodes::default();
    for (server, config, listener) in plan.storage {
        let listener = into_tokio(listener)?;
        let addr = listener
            .local_addr()
            .context("a storage listener's address")?;
        let stop = stopped(storage_rx.clone());
        let mut sc = server_conf.clone();
        let devices = match &config {
            StorageConfig::Object(c) => c.diskfile.devices.clone(),
            StorageConfig::Container(c) | StorageConfig::Account(c) => c.devices.clone(),
        };
        sc.metrics = storage_metrics(server, devices, daemon_metrics.as_ref());
        // The servers are made here, not in the task: an object server's
        // start (removing what a crash left in its temp directories) is
        // over before the proxy answers anything.
        let requests = sc.metrics.requests.clone();
        let (serving, registration): (Pin<Box<dyn Future<Output = _> + Send>>, _) = match config {
            StorageConfig::Object(c) => {
                let server = Arc::new(ObjectServer::new(c).with_local_nodes(local_nodes.clone()));
                let registration = local_nodes.register(addr, server.clone(), requests);
                (
                    Box::pin(apus_http::serve_with(listener, server, stop, sc)),
                    registration,
                )
            }
            StorageConfig::Container(c) => {
                let server =
                    Arc::new(ContainerServer::new(c).with_local_nodes(local_nodes.clone()));
                let registration = local_nodes.register(addr, server.clone(), requests);
                (
                    Box::pin(apus_http::serve_with(listener, server, stop, sc)),
                    registration,
                )
            }
            StorageConfig::Account(c) => {
                let server = Arc::new(AccountServer::new(c));
                let registration = local_nodes.register(addr, server.clone(), requests);
                (
                    Box::pin(apus_http::serve_with(listener, server, stop, sc)),
                    registration,
                )
            }
        };
        // Once a server stopped, requests for its address go to the network
        // (and find nothing listening there), as before.
        let serving = async move {
            let served: std::io::Result<()> = serving.await;
            drop(registration);
            served
        };
        storage.spawn(async move { (server.name(), serving.await) });
    }
    if let Some((pc, _, _)) = plan.proxy.as_mut() {
        pc.local_nodes = local_nodes;
    }
    let (proxy_stop, proxy_rx) = watch::channel(false);
    let mut proxy = JoinSet::new();
    if let (Some((ic, listener)), Some((pc, _, _))) = (plan.images, &plan.proxy) {
        let store = Arc::new(crate::images::InProcessStore::new(pc.clone())?);
        let identities = Arc::new(crate::images::ProxyIdentities::new(pc));
        let db = ic.db_path.clone();
        let service = apus_images::ImagesService::new(ic, identities, store)
            .with_context(|| format!("images: cannot open {}", db.display()))?;
        let listener = into_tokio(listener)?;
        let stop = stopped(proxy_rx.clone());
        let sc = server_conf.clone();
        proxy.spawn(async move {
            let result = apus_http::serve_with(listener, Arc::new(service), stop, sc).await;
            ("images", result)
        });
    }
    if let Some((mut pc, listener, admin)) = plan.proxy {
        let listener = into_tokio(listener)?;
        let mut sc = server_conf.clone();
        if let Some(admin) = admin {
            // Counted on the client port, shown only on the admin one.
            let (requests, registry) = proxy_metrics(&mut pc);
            sc.metrics.requests = Some(requests);
            let admin_conf = ServerConfig {
                metrics: ServerMetrics {
                    requests: None,
                    registry: Some(registry),
                },
                ..server_conf.clone()
            };
            let admin = into_tokio(admin)?;
            let stop = stopped(proxy_rx.clone());
            proxy.spawn(async move {
                let handler = Arc::new(apus_http::metrics::NotFound);
                let result = apus_http::serve_with(admin, handler, stop, admin_conf).await;
                ("proxy metrics", result)
            });
        }
        let stop = stopped(proxy_rx);
        proxy.spawn(async move {
            let result = apus_http::serve_with(listener, Arc::new(Proxy::new(pc)), stop, sc).await;
            ("proxy", result)
        });
    }

    let (daemons_stop, daemons_shutdown) = Shutdown::new();
    let mut daemons = JoinSet::new();
    if let Some(d) = &plan.daemons {
        for name in d.enabled() {
            if let Err(e) = d.spawn(name, daemons_shutdown.clone(), &mut daemons) {
                tracing::error!(daemon = name.as_str(), error = %e, "daemon not started");
            }
        }
    }

    // The banner is for people; a closed stdout must not stop the servers.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(plan.banner.as_bytes());
    let _ = stdout.flush();
    drop(stdout);
    tracing::info!("serving");

    let mut failed = false;
    tokio::select! {
        _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        Some(ended) = proxy.join_next() => {
            report(ended);
            tracing::error!("a server stopped by itself: shutting down");
            failed = true;
        }
        Some(ended) = storage.join_next() => {
            report(ended);
            tracing::error!("a server stopped by itself: shutting down");
            failed = true;
        }
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        eprintln!("apus serve: second signal, exiting without waiting");
        std::process::exit(130);
    });
    // Daemons first: a pass cut short is simply redone later.
    let _ = daemons_stop.send(true);
    if tokio::time::timeout(shutdown_timeout, async {
        while daemons.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        daemons.abort_all();
    }
    // The proxy next: its requests in flight still need the storage servers.
    let _ = proxy_stop.send(true);
    while let Some(ended) = proxy.join_next().await {
        failed |= !report(ended);
    }
    let _ = storage_stop.send(true);
    while let Some(ended) = storage.join_next().await {
        failed |= !report(ended);
    }
    tracing::info!("stopped");
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A storage server's figures: its requests, its devices, the process
/// and the node's daemons of its kind.
fn storage_metrics(
    server: Server,
    devices: PathBuf,
    daemons: Option<&Arc<DaemonMetrics>>,
) -> ServerMetrics {
    let kind = match server {
        Server::Object => ServerKind::Object,
        Server::Container => ServerKind::Container,
        Server::Account => ServerKind::Account,
    };
    let mut registry = Registry::default();
    let requests = RequestMetrics::new(kind);
    requests.register(&mut registry);
    registry.register_collector(Box::new(DeviceCollector::new(devices, kind)));
    registry.register_collector(Box::new(ProcessCollector));
    if let Some(d) = daemons {
        let prefix = match server {
            Server::Object => "object-",
            Server::Container => "container-",
            Server::Account => "account-",
        };
        registry.register_collector(Box::new(d.collector(prefix)));
    }
    ServerMetrics {
        requests: Some(requests),
        registry: Some(Arc::new(registry)),
    }
}

/// The proxy's figures, set in its configuration; the registry showing
/// them with its requests and the process's.
fn proxy_metrics(pc: &mut ProxyConfig) -> (Arc<RequestMetrics>, Arc<Registry>) {
    let mut registry = Registry::default();
    let requests = RequestMetrics::new(ServerKind::Proxy);
    requests.register(&mut registry);
    let indexes: Vec<u32> = pc.policies.iter().map(|p| p.index).collect();
    let proxy = ProxyMetrics::new(&indexes);
    registry.register_collector(Box::new(proxy.clone()));
    registry.register_collector(Box::new(ProcessCollector));
    pc.metrics = Some(proxy);
    (requests, Arc::new(registry))
}

/// Logs how a server task ended; true if it ended cleanly.
fn report(ended: Result<(&'static str, std::io::Result<()>), tokio::task::JoinError>) -> bool {
    match ended {
        Ok((_, Ok(()))) => true,
        Ok((name, Err(e))) => {
            tracing::error!(server = name, error = %e, "server failed");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "server task failed");
            false
        }
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn into_tokio(listener: TcpListener) -> Result<tokio::net::TcpListener> {
    listener.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(listener)?)
}
