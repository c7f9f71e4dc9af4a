//! A small object cluster for daemon tests: devices `d1`.. in a temp
//! dir, an object ring with 3 replicas over them, each device served by
//! its own in-process object server on its own loopback port (so each
//! device is a "node" of its own).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apus_core::{HashConfig, Timestamp};
use apus_daemons::{DaemonContext, LocalIdentity};
use apus_diskfile::{DiskFileConfig, DiskFileManager, FallocateReserve, Metadata};
use apus_http::ClientConfig;
use apus_ring::builder::RingBuilder;
use apus_ring::{Device, Ring};
use apus_server::object::{ObjectServer, ObjectServerConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub devices: PathBuf,
    pub rings_dir: PathBuf,
    pub hash: HashConfig,
    pub ring: Ring,
    pub ports: Vec<u16>,
    stops: Vec<oneshot::Sender<()>>,
}

impl Cluster {
    pub async fn start(devs: usize, part_power: u32, base: Option<&Path>) -> Cluster {
        let dir = match base {
            Some(b) => tempfile::tempdir_in(b).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let devices = dir.path().join("devices");
        let rings_dir = dir.path().join("rings");
        std::fs::create_dir_all(&rings_dir).unwrap();
        let hash = HashConfig::new("pre", "suf");
        let mut listeners = Vec::new();
        let mut ports = Vec::new();
        for i in 0..devs {
            std::fs::create_dir_all(devices.join(format!("d{}", i + 1))).unwrap();
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            ports.push(l.local_addr().unwrap().port());
            listeners.push(l);
        }
        let mut builder = RingBuilder::new(part_power, 3.0, 0).unwrap();
        for (i, port) in ports.iter().enumerate() {
            builder
                .add_dev(Device {
                    id: apus_ring::builder::AUTO_ID,
                    region: 1,
                    zone: (i + 1) as u32,
                    ip: "127.0.0.1".into(),
                    port: *port,
                    replication_ip: "127.0.0.1".into(),
                    replication_port: *port,
                    device: format!("d{}", i + 1),
                    weight: 100.0,
                    meta: String::new(),
                })
                .unwrap();
        }
        builder.rebalance(Some(1), &mut |_| {}).unwrap();
        let data = builder.ring_data().unwrap();
        for name in ["object.ring.gz", "account.ring.gz", "container.ring.gz"] {
            data.save(&rings_dir.join(name)).unwrap();
        }
        let ring = Ring::new(data).unwrap();
        let mut stops = Vec::new();
        for listener in listeners {
            let mut conf = ObjectServerConfig::with_devices(&devices, hash.clone());
            conf.diskfile.mount_check = false;
            conf.diskfile.fallocate_reserve = FallocateReserve::Bytes(0);
            // Built here, not in the task: a starting server removes the
            // devices' temp files, which must not race the first writes.
            let server = Arc::new(ObjectServer::new(conf));
            let (tx, rx) = oneshot::channel::<()>();
            stops.push(tx);
            tokio::spawn(async move {
                let _ = apus_http::serve(listener, server, async {
                    let _ = rx.await;
                })
                .await;
            });
        }
        Cluster {
            dir,
            devices,
            rings_dir,
            hash,
            ring,
            ports,
            stops,
        }
    }

    /// The context of the node serving device `dN` (1-based).
    pub fn ctx(&self, dev: usize) -> DaemonContext {
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        DaemonContext::new(
            self.devices.clone(),
            self.hash.clone(),
            self.rings_dir.clone(),
            vec![0],
            LocalIdentity {
                account: addr(1),
                container: addr(1),
                object: addr(self.ports[dev - 1]),
            },
            ClientConfig {
                node_timeout: Duration::from_secs(5),
                ..ClientConfig::default()
            },
        )
    }

    pub fn mgr(&self) -> DiskFileManager {
        let mut conf = DiskFileConfig::new(&self.devices, self.hash.clone());
        conf.mount_check = false;
        conf.fallocate_reserve = FallocateReserve::Bytes(0);
        DiskFileManager::new(conf)
    }

    pub fn part(&self, obj: &str) -> u32 {
        self.ring.partition(&self.hash, "a", Some("c"), Some(obj))
    }

    /// Device names (`dN`) of an object's primaries.
    pub fn primaries(&self, obj: &str) -> Vec<String> {
        self.ring
            .primaries(self.part(obj))
            .iter()
            .map(|d| d.device.clone())
            .collect()
    }

    /// The first name `prefix<N>` whose primaries do (or do not) include `dev`.
    pub fn name_where(&self, prefix: &str, dev: &str, primary: bool) -> String {
        (0..10_000)
            .map(|i| format!("{prefix}{i}"))
            .find(|n| self.primaries(n).iter().any(|d| d == dev) == primary)
            .expect("some name lands there")
    }

    pub fn write(&self, dev: &str, obj: &str, ts: Timestamp, body: &[u8], extra: &[(&str, &str)]) {
        let df = self
            .mgr()
            .diskfile(dev, self.part(obj), "a", "c", obj, 0)
            .unwrap();
        let mut w = df.create(Some(body.len() as u64)).unwrap();
        w.write(body).unwrap();
        let mut md = Metadata::new();
        md.insert("X-Timestamp", ts.internal());
        md.insert("Content-Type", "text/plain");
        md.insert("Content-Length", body.len().to_string());
        md.insert("ETag", w.etag().unwrap());
        for (k, v) in extra {
            md.insert(*k, *v);
        }
        w.put(md).unwrap();
    }

    pub fn delete(&self, dev: &str, obj: &str, ts: Timestamp) {
        let df = self
            .mgr()
            .diskfile(dev, self.part(obj), "a", "c", obj, 0)
            .unwrap();
        df.delete(ts).unwrap();
    }

    pub fn post(&self, dev: &str, obj: &str, md: Metadata) {
        let df = self
            .mgr()
            .diskfile(dev, self.part(obj), "a", "c", obj, 0)
            .unwrap();
        df.write_metadata(md).unwrap();
    }

    pub fn open(&self, dev: &str, obj: &str) -> apus_diskfile::Result<apus_diskfile::OpenDiskFile> {
        self.mgr()
            .diskfile(dev, self.part(obj), "a", "c", obj, 0)?
            .open(apus_diskfile::OpenOptions {
                open_expired: true,
                now: None,
            })
    }

    pub fn hash_dir(&self, dev: &str, obj: &str) -> PathBuf {
        let h = self.hash.hash_path("a", Some("c"), Some(obj));
        self.devices
            .join(dev)
            .join(format!("objects/{}/{}/{h}", self.part(obj), &h[29..]))
    }

    pub fn part_dir(&self, dev: &str, part: u32) -> PathBuf {
        self.devices.join(dev).join(format!("objects/{part}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
    }
}

pub fn ts(secs: f64) -> Timestamp {
    Timestamp::from_secs_f64(secs).unwrap()
}

pub fn now() -> f64 {
    Timestamp::now().as_secs_f64()
}
