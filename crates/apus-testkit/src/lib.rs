//! apus-testkit (dev-only): a whole cluster in one process for integration
//! tests: `devices` device directories in a temporary directory, rings
//! with 3 replicas over them, account, container and object servers and a
//! proxy with the functional-test tempauth users, all on 127.0.0.1 with
//! ephemeral ports. Dropping the [`Cluster`] stops every server and
//! removes the directory.
//!
//! Never a dependency of anything but tests and benchmarks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use apus_core::policy::{EcParams, PolicyKind};
use apus_core::HashConfig;
use apus_proxy::{Policy, Proxy, ProxyConfig, TempAuthConfig};
use apus_ring::builder::RingBuilder;
use apus_ring::{Device, Ring};
use apus_server::account::AccountServer;
use apus_server::container::ContainerServer;
use apus_server::db_common::{DbServerConfig, PolicyInfo, ServerHandle};
use apus_server::object::{EcPolicy, ObjectServerConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running in-process cluster.
pub struct Cluster {
    pub proxy_addr: SocketAddr,
    pub devices: PathBuf,
    pub hash: HashConfig,
    _account: ServerHandle,
    _container: ServerHandle,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// Knobs for [`Cluster::start_with`].
pub struct ClusterOptions {
    pub devices: usize,
    /// Where the proxy listens (an ephemeral loopback port by default).
    pub proxy_bind: String,
    /// Adjusts the proxy's settings before it starts.
    pub proxy: Box<dyn FnOnce(&mut ProxyConfig) + Send>,
    /// An erasure-coded policy 1 (`EC-1`) besides the replicated default,
    /// its object ring with `ndata + nparity` replicas over the devices
    /// (so `devices` must be at least that many).
    pub ec: Option<EcParams>,
}

impl ClusterOptions {
    /// `devices` devices and an `isa_l_rs_vand` 4+2 policy 1 with
    /// `segment_size`-byte segments.
    pub fn with_ec(devices: usize, segment_size: u64) -> Self {
        ClusterOptions {
            devices,
            ec: Some(EcParams {
                ec_type: "isa_l_rs_vand".to_string(),
                ndata: 4,
                nparity: 2,
                segment_size,
                duplication_factor: 1,
            }),
            ..ClusterOptions::default()
        }
    }
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            devices: 4,
            proxy_bind: "127.0.0.1:0".to_string(),
            proxy: Box::new(|_| {}),
            ec: None,
        }
    }
}

fn build_ring(devices: usize, port: u16) -> anyhow::Result<Ring> {
    build_ring_with(devices, port, 3)
}

fn build_ring_with(devices: usize, port: u16, replicas: u32) -> anyhow::Result<Ring> {
    let mut builder = RingBuilder::new(8, f64::from(replicas), 0)?;
    for i in 0..devices {
        builder.add_dev(Device {
            id: apus_ring::builder::AUTO_ID,
            region: 1,
            zone: (i + 1) as u32,
            ip: "127.0.0.1".into(),
            port,
            replication_ip: "127.0.0.1".into(),
            replication_port: port,
            device: format!("d{}", i + 1),
            weight: 100.0,
            meta: String::new(),
        })?;
    }
    builder.rebalance(Some(1), &mut |_| {})?;
    Ok(Ring::new(builder.ring_data()?)?)
}

impl Cluster {
    pub async fn start() -> anyhow::Result<Cluster> {
        Self::start_with(ClusterOptions::default()).await
    }

    pub async fn start_with(options: ClusterOptions) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let devices = dir.path().join("devices");
        for i in 0..options.devices {
            std::fs::create_dir_all(devices.join(format!("d{}", i + 1)))?;
        }
        let hash = HashConfig::new(b"testkit-prefix".to_vec(), b"testkit-suffix".to_vec());

        let account_listener = TcpListener::bind("127.0.0.1:0").await?;
        let container_listener = TcpListener::bind("127.0.0.1:0").await?;
        let object_listener = TcpListener::bind("127.0.0.1:0").await?;
        let account_ring = build_ring(options.devices, account_listener.local_addr()?.port())?;
        let container_ring = build_ring(options.devices, container_listener.local_addr()?.port())?;
        let object_port = object_listener.local_addr()?.port();
        let object_ring = build_ring(options.devices, object_port)?;
        let ec_ring = match &options.ec {
            Some(ec) => {
                anyhow::ensure!(
                    options.devices >= ec.unique_fragments() as usize,
                    "an EC policy needs a device per fragment"
                );
                Some(build_ring_with(
                    options.devices,
                    object_port,
                    ec.ring_replicas(),
                )?)
            }
            None => None,
        };

        let mut db_config = DbServerConfig::new(&devices, hash.clone());
        if options.ec.is_some() {
            db_config.policies.policies.push(PolicyInfo {
                index: 1,
                name: "EC-1".into(),
            });
        }
        let account = Arc::new(AccountServer::new(db_config.clone())).spawn(account_listener)?;
        let container = Arc::new(ContainerServer::new(db_config)).spawn(container_listener)?;

        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        let mut object_config = ObjectServerConfig::with_devices(&devices, hash.clone());
        object_config.diskfile.mount_check = false;
        if let Some(ec) = &options.ec {
            object_config.policies = vec![0, 1];
            object_config.ec_policies = vec![EcPolicy::new(1, ec.ndata, ec.nparity)];
        }
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        tasks.push(tokio::spawn(async move {
            let _ = apus_server::object::serve(object_listener, object_config, async {
                let _ = rx.await;
            })
            .await;
        }));

        let mut policies = vec![Policy {
            index: 0,
            name: "Policy-0".into(),
            aliases: Vec::new(),
            default: true,
            deprecated: false,
            ring: Arc::new(object_ring.into()),
            kind: PolicyKind::Replication,
        }];
        if let (Some(ec), Some(ring)) = (options.ec.clone(), ec_ring) {
            policies.push(Policy {
                index: 1,
                name: "EC-1".into(),
                aliases: Vec::new(),
                default: false,
                deprecated: false,
                ring: Arc::new(ring.into()),
                kind: PolicyKind::ErasureCoding(ec),
            });
        }
        let mut proxy_config = ProxyConfig::new(
            hash.clone(),
            Arc::new(account_ring.into()),
            Arc::new(container_ring.into()),
            policies,
        );
        proxy_config.tempauth = TempAuthConfig::functest_defaults();
        proxy_config.allow_account_management = true;
        (options.proxy)(&mut proxy_config);
        let proxy_listener = TcpListener::bind(&options.proxy_bind).await?;
        let proxy_addr = proxy_listener.local_addr()?;
        let proxy = Arc::new(Proxy::new(proxy_config));
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        tasks.push(tokio::spawn(async move {
            let _ = apus_http::serve(proxy_listener, proxy, async {
                let _ = rx.await;
            })
            .await;
        }));
        Ok(Cluster {
            proxy_addr,
            devices,
            hash,
            _account: account,
            _container: container,
            stops,
            tasks,
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.proxy_addr)
    }

    pub fn device_path(&self, n: usize) -> PathBuf {
        self.devices.join(format!("d{n}"))
    }

    pub fn devices_root(&self) -> &Path {
        &self.devices
    }

    /// Stops the servers and waits for them (bounded by their graceful
    /// shutdown timeouts).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for tx in self.stops.drain(..) {
            let _ = tx.send(());
        }
        for task in self.tasks.drain(..) {
            task.await.context("server task")?;
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for tx in self.stops.drain(..) {
            let _ = tx.send(());
        }
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}
