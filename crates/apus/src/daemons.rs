//! The daemons of a storage node, built from its configuration: all of
//! them inside `apus serve`, or one alone (`apus object-updater --once`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use apus_core::HashConfig;
use apus_daemons::container_updater::{ContainerUpdater, ContainerUpdaterConfig};
use apus_daemons::db_auditor::{AccountAuditor, ContainerAuditor, DbAuditor, DbAuditorConfig};
use apus_daemons::db_replicator::{
    AccountReplicator, ContainerReplicator, DbReplicator, DbReplicatorConfig,
};
use apus_daemons::expirer::{ExpirerSettings, InternalClient, ObjectExpirer};
use apus_daemons::object_auditor::{ObjectAuditor, ObjectAuditorSettings};
use apus_daemons::object_replicator::{ObjectReplicator, ObjectReplicatorSettings};
use apus_daemons::object_updater::{ObjectUpdater, ObjectUpdaterSettings};
use apus_daemons::reconciler::{ContainerReconciler, ReconcilerSettings};
use apus_daemons::reconstructor::{ObjectReconstructor, ObjectReconstructorSettings};
use apus_daemons::{run_forever, run_once, DaemonContext, LocalIdentity, PassStats, Shutdown};
use apus_http::ClientConfig;
use apus_proxy::{Proxy, ProxyConfig, SharedService};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use tokio::task::JoinSet;

use crate::node_config::{FileDaemon, FileDaemons, NodeConfig};

/// Swift's default `reclaim_age`: a week.
const DEFAULT_RECLAIM_AGE: f64 = 604_800.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DaemonName {
    ObjectReplicator,
    ObjectReconstructor,
    ObjectAuditor,
    ObjectUpdater,
    ObjectExpirer,
    ContainerReplicator,
    ContainerAuditor,
    ContainerUpdater,
    ContainerReconciler,
    AccountReplicator,
    AccountAuditor,
}

impl DaemonName {
    pub const ALL: [DaemonName; 11] = [
        DaemonName::ObjectReplicator,
        DaemonName::ObjectReconstructor,
        DaemonName::ObjectAuditor,
        DaemonName::ObjectUpdater,
        DaemonName::ObjectExpirer,
        DaemonName::ContainerReplicator,
        DaemonName::ContainerAuditor,
        DaemonName::ContainerUpdater,
        DaemonName::ContainerReconciler,
        DaemonName::AccountReplicator,
        DaemonName::AccountAuditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DaemonName::ObjectReplicator => "object-replicator",
            DaemonName::ObjectReconstructor => "object-reconstructor",
            DaemonName::ObjectAuditor => "object-auditor",
            DaemonName::ObjectUpdater => "object-updater",
            DaemonName::ObjectExpirer => "object-expirer",
            DaemonName::ContainerReplicator => "container-replicator",
            DaemonName::ContainerAuditor => "container-auditor",
            DaemonName::ContainerUpdater => "container-updater",
            DaemonName::ContainerReconciler => "container-reconciler",
            DaemonName::AccountReplicator => "account-replicator",
            DaemonName::AccountAuditor => "account-auditor",
        }
    }

    fn file_settings(self, d: &FileDaemons) -> FileDaemon {
        let s = match self {
            DaemonName::ObjectReplicator => &d.object_replicator,
            DaemonName::ObjectReconstructor => &d.object_reconstructor,
            DaemonName::ObjectAuditor => &d.object_auditor,
            DaemonName::ObjectUpdater => &d.object_updater,
            DaemonName::ObjectExpirer => &d.object_expirer,
            DaemonName::ContainerReplicator => &d.container_replicator,
            DaemonName::ContainerAuditor => &d.container_auditor,
            DaemonName::ContainerUpdater => &d.container_updater,
            DaemonName::ContainerReconciler => &d.container_reconciler,
            DaemonName::AccountReplicator => &d.account_replicator,
            DaemonName::AccountAuditor => &d.account_auditor,
        };
        s.clone().unwrap_or_default()
    }

    /// Swift's default pause between passes.
    fn default_interval(self) -> f64 {
        match self {
            DaemonName::ObjectUpdater
            | DaemonName::ContainerUpdater
            | DaemonName::ObjectExpirer => 300.0,
            _ => 30.0,
        }
    }
}

/// The internal client of the expirer: the proxy's logic in process.
pub struct InternalProxy {
    service: SharedService,
}

impl InternalProxy {
    pub fn new(config: ProxyConfig) -> Self {
        InternalProxy {
            service: Proxy::internal(config).pipeline(),
        }
    }
}

impl InternalClient for InternalProxy {
    async fn call(
        &self,
        method: Method,
        path: String,
        headers: HeaderMap,
        max_body: usize,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut req = Request::new(apus_http::empty());
        *req.method_mut() = method;
        *req.uri_mut() = path
            .parse()
            .map_err(|e| format!("bad path {path:?}: {e}"))?;
        *req.headers_mut() = headers;
        let resp = self.service.call(req).await;
        let status = resp.status();
        let body = apus_http::body::collect_limited(resp.into_body(), max_body)
            .await
            .map_err(|e| format!("reading the answer to {path}: {e}"))?;
        Ok((status, body))
    }

    async fn send(&self, req: Request<apus_http::Body>) -> http::Response<apus_http::Body> {
        self.service.call(req).await
    }
}

/// Everything needed to build any daemon of this node.
pub struct Daemons {
    ctx: Arc<DaemonContext>,
    file: FileDaemons,
    reclaim_age: f64,
    /// For the expirer; `None` when the rings could not be read.
    internal: Option<Arc<InternalProxy>>,
    /// Whether this node runs the expirer by default (it has a proxy).
    expirer_by_default: bool,
}

impl Daemons {
    pub fn new(
        conf: &NodeConfig,
        hash: HashConfig,
        rings_dir: PathBuf,
        identity: LocalIdentity,
        proxy_config: Option<ProxyConfig>,
    ) -> Result<Self> {
        let storage = conf
            .storage
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the daemons run on nodes with the storage role"))?;
        let (connect_timeout, node_timeout) = storage.daemon_timeouts();
        let client = ClientConfig {
            connect_timeout,
            node_timeout,
            ..ClientConfig::default()
        };
        let policies = conf.policies.iter().map(|p| p.index).collect();
        let mut ctx = DaemonContext::new(
            storage.devices.clone(),
            hash,
            rings_dir,
            policies,
            identity,
            client,
        );
        ctx.mount_check = storage.mount_check();
        ctx.metrics = Some(apus_daemons::metrics::DaemonMetrics::new());
        ctx.recon = Some(apus_daemons::recon::ReconCache::new(
            storage.recon_cache.clone(),
        ));
        for p in &conf.policies {
            if let apus_core::policy::PolicyKind::ErasureCoding(ec) = &p.kind {
                ctx.ec_policies.push(p.index);
                ctx.ec_params.insert(p.index, ec.clone());
            }
        }
        let reclaim_age = conf.daemons.reclaim_age.unwrap_or(DEFAULT_RECLAIM_AGE);
        Ok(Daemons {
            ctx: Arc::new(ctx),
            file: conf.daemons.clone(),
            reclaim_age,
            internal: proxy_config.map(|pc| Arc::new(InternalProxy::new(pc))),
            expirer_by_default: conf.proxy.is_some(),
        })
    }

    /// The daemons `apus serve` runs.
    pub fn enabled(&self) -> Vec<DaemonName> {
        if !self.file.run.unwrap_or(true) {
            return Vec::new();
        }
        DaemonName::ALL
            .into_iter()
            .filter(|d| {
                // The queue walkers run where a proxy runs (one per
                // cluster is enough; more split the queue by `processes`).
                let queue_walker = matches!(
                    d,
                    DaemonName::ObjectExpirer | DaemonName::ContainerReconciler
                );
                let default = !queue_walker || self.expirer_by_default;
                d.file_settings(&self.file).run.unwrap_or(default)
            })
            .collect()
    }

    fn interval(&self, name: DaemonName) -> Duration {
        let secs = name
            .file_settings(&self.file)
            .interval
            .unwrap_or(name.default_interval());
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(30))
    }

    /// One pass of `name`.
    /// Where the daemons' passes are counted for `/metrics`.
    pub fn metrics(&self) -> Option<Arc<apus_daemons::metrics::DaemonMetrics>> {
        self.ctx.metrics.clone()
    }

    pub async fn run_once(&self, name: DaemonName) -> Result<PassStats> {
        macro_rules! once {
            ($w:expr) => {
                Ok(run_once(&$w, &self.ctx, Shutdown::never()).await)
            };
        }
        match name {
            DaemonName::ObjectReplicator => once!(self.object_replicator()),
            DaemonName::ObjectReconstructor => once!(self.object_reconstructor()),
            DaemonName::ObjectAuditor => once!(self.object_auditor()),
            DaemonName::ObjectUpdater => once!(self.object_updater()),
            DaemonName::ObjectExpirer => once!(self.expirer()?),
            DaemonName::ContainerReplicator => {
                once!(self.db_replicator::<_>(name) as ContainerReplicator)
            }
            DaemonName::ContainerAuditor => once!(self.db_auditor::<_>(name) as ContainerAuditor),
            DaemonName::ContainerUpdater => once!(self.container_updater()),
            DaemonName::ContainerReconciler => once!(self.reconciler()?),
            DaemonName::AccountReplicator => {
                once!(self.db_replicator::<_>(name) as AccountReplicator)
            }
            DaemonName::AccountAuditor => once!(self.db_auditor::<_>(name) as AccountAuditor),
        }
    }

    /// Starts `name` in continuous mode on `tasks`.
    pub fn spawn(
        &self,
        name: DaemonName,
        shutdown: Shutdown,
        tasks: &mut JoinSet<()>,
    ) -> Result<()> {
        let interval = self.interval(name);
        let ctx = self.ctx.clone();
        let report = |pass: &PassStats| tracing::debug!(stats = %pass.to_json(), "pass stats");
        macro_rules! forever {
            ($w:expr) => {{
                let w = Arc::new($w);
                tasks.spawn(run_forever(w, ctx, interval, shutdown, report));
            }};
        }
        match name {
            DaemonName::ObjectReplicator => forever!(self.object_replicator()),
            DaemonName::ObjectReconstructor => forever!(self.object_reconstructor()),
            DaemonName::ObjectAuditor => forever!(self.object_auditor()),
            DaemonName::ObjectUpdater => forever!(self.object_updater()),
            DaemonName::ObjectExpirer => forever!(self.expirer()?),
            DaemonName::ContainerReplicator => {
                forever!(self.db_replicator::<_>(name) as ContainerReplicator)
            }
            DaemonName::ContainerAuditor => {
                forever!(self.db_auditor::<_>(name) as ContainerAuditor)
            }
            DaemonName::ContainerUpdater => forever!(self.container_updater()),
            DaemonName::ContainerReconciler => forever!(self.reconciler()?),
            DaemonName::AccountReplicator => {
                forever!(self.db_replicator::<_>(name) as AccountReplicator)
            }
            DaemonName::AccountAuditor => forever!(self.db_auditor::<_>(name) as AccountAuditor),
        }
        Ok(())
    }

    fn object_replicator(&self) -> ObjectReplicator {
        let s = DaemonName::ObjectReplicator.file_settings(&self.file);
        let mut settings = ObjectReplicatorSettings {
            reclaim_age: self.reclaim_age,
            ..ObjectReplicatorSettings::default()
        };
        if let Some(v) = s.concurrency {
            settings.concurrency = v;
        }
        if let Some(v) = s.per_second {
            settings.objects_per_second = v;
        }
        if let Some(v) = s.bytes_per_second {
            settings.bytes_per_second = v;
        }
        ObjectReplicator::new(settings)
    }

    fn object_reconstructor(&self) -> ObjectReconstructor {
        let s = DaemonName::ObjectReconstructor.file_settings(&self.file);
        let mut settings = ObjectReconstructorSettings {
            reclaim_age: self.reclaim_age,
            ..ObjectReconstructorSettings::default()
        };
        if let Some(v) = s.concurrency {
            settings.concurrency = v;
        }
        if let Some(v) = s.per_second {
            settings.objects_per_second = v;
        }
        if let Some(v) = s.bytes_per_second {
            settings.bytes_per_second = v;
        }
        ObjectReconstructor::new(settings)
    }

    fn object_auditor(&self) -> ObjectAuditor {
        let s = DaemonName::ObjectAuditor.file_settings(&self.file);
        let mut settings = ObjectAuditorSettings {
            reclaim_age: self.reclaim_age,
            ..ObjectAuditorSettings::default()
        };
        if let Some(v) = s.per_second {
            settings.files_per_second = v;
        }
        if let Some(v) = s.bytes_per_second {
            settings.bytes_per_second = v;
        }
        ObjectAuditor::new(settings)
    }

    fn db_replicator<B>(&self, name: DaemonName) -> DbReplicator<B>
    where
        DbReplicator<B>: apus_daemons::Worker,
    {
        let s = name.file_settings(&self.file);
        let mut config = DbReplicatorConfig {
            reclaim_age: Duration::try_from_secs_f64(self.reclaim_age)
                .unwrap_or(DbReplicatorConfig::default().reclaim_age),
            ..DbReplicatorConfig::default()
        };
        if let Some(v) = s.concurrency {
            config.concurrency = v;
        }
        if let Some(v) = s.per_second {
            config.databases_per_second = v;
        }
        DbReplicator::new(config)
    }

    fn db_auditor<B>(&self, name: DaemonName) -> DbAuditor<B>
    where
        DbAuditor<B>: apus_daemons::Worker,
    {
        let s = name.file_settings(&self.file);
        let mut config = DbAuditorConfig::default();
        if let Some(v) = s.per_second {
            config.files_per_second = v;
        }
        DbAuditor::new(config)
    }

    fn container_updater(&self) -> ContainerUpdater {
        let s = DaemonName::ContainerUpdater.file_settings(&self.file);
        let mut config = ContainerUpdaterConfig::default();
        if let Some(v) = s.concurrency {
            config.concurrency = v;
        }
        if let Some(v) = s.per_second {
            config.max_containers_per_second = v;
        }
        ContainerUpdater::new(config)
    }

    fn object_updater(&self) -> ObjectUpdater {
        let s = DaemonName::ObjectUpdater.file_settings(&self.file);
        let mut settings = ObjectUpdaterSettings::default();
        if let Some(v) = s.per_second {
            settings.objects_per_second = v;
        }
        if let Some(v) = s.concurrency {
            settings.concurrency = v;
        }
        ObjectUpdater::new(settings)
    }

    fn expirer(&self) -> Result<ObjectExpirer<InternalProxy>> {
        let s = DaemonName::ObjectExpirer.file_settings(&self.file);
        let mut settings = ExpirerSettings {
            reclaim_age: self.reclaim_age,
            ..ExpirerSettings::default()
        };
        if let Some(v) = s.concurrency {
            settings.concurrency = v;
        }
        if let Some(v) = s.per_second {
            settings.tasks_per_second = v;
        }
        settings.processes = s.processes.unwrap_or(0);
        settings.process = s.process.unwrap_or(0);
        if settings.processes > 0 && settings.process >= settings.processes {
            anyhow::bail!("object-expirer: process must be less than processes");
        }
        let internal = self
            .internal
            .clone()
            .ok_or_else(|| anyhow::anyhow!("object-expirer: the rings could not be read"))?;
        Ok(ObjectExpirer::new(settings, internal))
    }

    fn reconciler(&self) -> Result<ContainerReconciler<InternalProxy>> {
        let s = DaemonName::ContainerReconciler.file_settings(&self.file);
        let mut settings = ReconcilerSettings {
            reclaim_age: self.reclaim_age,
            ..ReconcilerSettings::default()
        };
        if let Some(v) = s.concurrency {
            settings.concurrency = v;
        }
        if let Some(v) = s.per_second {
            settings.objects_per_second = v;
        }
        settings.processes = s.processes.unwrap_or(0);
        settings.process = s.process.unwrap_or(0);
        if settings.processes > 0 && settings.process >= settings.processes {
            anyhow::bail!("container-reconciler: process must be less than processes");
        }
        let internal = self
            .internal
            .clone()
            .ok_or_else(|| anyhow::anyhow!("container-reconciler: the rings could not be read"))?;
        Ok(ContainerReconciler::new(settings, internal))
    }
}
