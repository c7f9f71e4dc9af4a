//! The object reconstructor against real object servers: an EC 4+2
//! policy over eight devices, each served by its own object server, with
//! fragment archives encoded by apus-ec and written straight to disk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use apus_core::policy::EcParams;
use apus_core::{HashConfig, Timestamp};
use apus_daemons::reconstructor::{ObjectReconstructor, ObjectReconstructorSettings};
use apus_daemons::{run_once, DaemonContext, LocalIdentity, Shutdown};
use apus_diskfile::{
    DiskFileConfig, DiskFileManager, EcPolicy, FallocateReserve, FragSelect, Metadata, OpenOptions,
};
use apus_ec::{EcScheme, EcType};
use apus_http::ClientConfig;
use apus_ring::builder::RingBuilder;
use apus_ring::{Device, Ring};
use apus_server::object::{ObjectServer, ObjectServerConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const POLICY: u32 = 1;
const SEGMENT: usize = 4096;
const DEVICES: usize = 8;

struct EcCluster {
    _dir: tempfile::TempDir,
    devices: PathBuf,
    rings_dir: PathBuf,
    hash: HashConfig,
    ring: Ring,
    ports: Vec<u16>,
    scheme: EcScheme,
    stops: Vec<Option<oneshot::Sender<()>>>,
}

fn ec_policy() -> EcPolicy {
    EcPolicy::new(POLICY, 4, 2)
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl EcCluster {
    async fn start() -> EcCluster {
        let dir = tempfile::tempdir().unwrap();
        let devices = dir.path().join("devices");
        let rings_dir = dir.path().join("rings");
        std::fs::create_dir_all(&rings_dir).unwrap();
        let hash = HashConfig::new("pre", "suf");
        let mut listeners = Vec::new();
        let mut ports = Vec::new();
        for i in 0..DEVICES {
            std::fs::create_dir_all(devices.join(format!("d{}", i + 1))).unwrap();
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            ports.push(l.local_addr().unwrap().port());
            listeners.push(l);
        }
        let ring_of = |replicas: f64| {
            let mut builder = RingBuilder::new(4, replicas, 0).unwrap();
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
            builder.ring_data().unwrap()
        };
        let replicated = ring_of(3.0);
        for name in ["object.ring.gz", "account.ring.gz", "container.ring.gz"] {
            replicated.save(&rings_dir.join(name)).unwrap();
        }
        let ec = ring_of(6.0);
        ec.save(&rings_dir.join("object-1.ring.gz")).unwrap();
        let ring = Ring::new(ec).unwrap();
        let mut stops = Vec::new();
        for listener in listeners {
            let mut conf = ObjectServerConfig::with_devices(&devices, hash.clone());
            conf.diskfile.mount_check = false;
            conf.diskfile.fallocate_reserve = FallocateReserve::Bytes(0);
            conf.policies = vec![0, POLICY];
            conf.ec_policies = vec![ec_policy()];
            let server = Arc::new(ObjectServer::new(conf));
            let (tx, rx) = oneshot::channel::<()>();
            stops.push(Some(tx));
            tokio::spawn(async move {
                let _ = apus_http::serve(listener, server, async {
                    let _ = rx.await;
                })
                .await;
            });
        }
        EcCluster {
            _dir: dir,
            devices,
            rings_dir,
            hash,
            ring,
            ports,
            scheme: EcScheme::new(EcType::IsaLRsVand, 4, 2).unwrap(),
            stops,
        }
    }

    /// Stops the object server of `dN`: it refuses connections from then
    /// on.
    async fn stop_device(&mut self, dev: &str) {
        let n: usize = dev[1..].parse().unwrap();
        if let Some(tx) = self.stops[n - 1].take() {
            let _ = tx.send(());
        }
        // Bounded wait until the port refuses.
        let addr = format!("127.0.0.1:{}", self.ports[n - 1]);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(&addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{dev}'s server still accepts connections");
    }

    fn ctx(&self, dev: usize) -> DaemonContext {
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let mut ctx = DaemonContext::new(
            self.devices.clone(),
            self.hash.clone(),
            self.rings_dir.clone(),
            vec![0, POLICY],
            LocalIdentity {
                account: addr(1),
                container: addr(1),
                object: addr(self.ports[dev - 1]),
            },
            ClientConfig {
                node_timeout: Duration::from_secs(5),
                ..ClientConfig::default()
            },
        );
        ctx.ec_policies = vec![POLICY];
        ctx.ec_params = BTreeMap::from([(
            POLICY,
            EcParams {
                ec_type: "isa_l_rs_vand".into(),
                ndata: 4,
                nparity: 2,
                segment_size: SEGMENT as u64,
                duplication_factor: 1,
            },
        )]);
        ctx
    }

    fn mgr(&self) -> DiskFileManager {
        let mut conf = DiskFileConfig::new(&self.devices, self.hash.clone());
        conf.mount_check = false;
        conf.fallocate_reserve = FallocateReserve::Bytes(0);
        DiskFileManager::new(conf)
    }

    fn part(&self, obj: &str) -> u32 {
        self.ring.partition(&self.hash, "a", Some("c"), Some(obj))
    }

    /// The device (`dN`) holding fragment index `i` of `obj`.
    fn primary(&self, obj: &str, i: usize) -> String {
        self.ring.primaries(self.part(obj))[i].device.clone()
    }

    fn handoff(&self, obj: &str) -> String {
        self.ring
            .handoffs(self.part(obj))
            .next()
            .unwrap()
            .device
            .clone()
    }

    fn archives(&self, body: &[u8]) -> Vec<Vec<u8>> {
        self.scheme.encode_archives(body, SEGMENT).unwrap()
    }

    /// Writes fragment `index` of `obj` (encoded from `body`) on `dev`.
    fn write_fragment(
        &self,
        dev: &str,
        obj: &str,
        ts: Timestamp,
        body: &[u8],
        index: u32,
        durable: bool,
    ) {
        let archive = &self.archives(body)[index as usize];
        self.write_archive(dev, obj, ts, body, index, archive, durable);
    }

    /// Writes `archive` as fragment `index` of `obj` (whose whole body is
    /// `body`) on `dev`, with the archive's own MD5 as its ETag, whatever
    /// its bytes.
    #[allow(clippy::too_many_arguments)]
    fn write_archive(
        &self,
        dev: &str,
        obj: &str,
        ts: Timestamp,
        body: &[u8],
        index: u32,
        archive: &[u8],
        durable: bool,
    ) {
        let df = self
            .mgr()
            .ec_diskfile(
                dev,
                self.part(obj),
                "a",
                "c",
                obj,
                &ec_policy(),
                FragSelect::index(index),
            )
            .unwrap();
        let mut w = df.create(Some(archive.len() as u64)).unwrap();
        w.write(archive).unwrap();
        let mut md = Metadata::new();
        md.insert("X-Timestamp", ts.internal());
        md.insert("Content-Type", "application/octet-stream");
        md.insert("Content-Length", archive.len().to_string());
        md.insert("ETag", w.etag());
        md.insert("X-Object-Sysmeta-Ec-Frag-Index", index.to_string());
        md.insert("X-Object-Sysmeta-Ec-Etag", md5_hex(body));
        md.insert("X-Object-Sysmeta-Ec-Content-Length", body.len().to_string());
        md.insert("X-Object-Sysmeta-Ec-Scheme", "isa_l_rs_vand 4+2");
        md.insert("X-Object-Sysmeta-Ec-Segment-Size", SEGMENT.to_string());
        let put = w.put(md).unwrap();
        if durable {
            put.commit().unwrap();
        }
    }

    /// Writes all six fragments of `obj` on their primaries, durable.
    fn write_object(&self, obj: &str, ts: Timestamp, body: &[u8]) {
        for i in 0..6 {
            let dev = self.primary(obj, i);
            self.write_fragment(&dev, obj, ts, body, i as u32, true);
        }
    }

    fn hash_dir(&self, dev: &str, obj: &str) -> PathBuf {
        let h = self.hash.hash_path("a", Some("c"), Some(obj));
        self.devices
            .join(dev)
            .join(format!("objects-1/{}/{}/{h}", self.part(obj), &h[29..]))
    }

    /// The `.data` file names in `obj`'s hash dir on `dev`.
    fn data_files(&self, dev: &str, obj: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.hash_dir(dev, obj))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".data"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The bytes of the durable fragment `index` of `obj` on `dev`.
    fn read_fragment(&self, dev: &str, obj: &str, index: u32) -> Option<Vec<u8>> {
        let df = self
            .mgr()
            .ec_diskfile(
                dev,
                self.part(obj),
                "a",
                "c",
                obj,
                &ec_policy(),
                FragSelect::index(index),
            )
            .unwrap();
        let open = df
            .open(OpenOptions {
                open_expired: true,
                now: None,
            })
            .ok()?;
        if open.frag_index() != index || !open.durable() {
            return None;
        }
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut open.into_inner().reader(), &mut out).unwrap();
        Some(out)
    }

    /// One reconstructor pass on every node.
    async fn reconstruct_all(&self) {
        for dev in 1..=DEVICES {
            let worker = ObjectReconstructor::new(ObjectReconstructorSettings {
                nondurable_purge_delay: 0.0,
                ..ObjectReconstructorSettings::default()
            });
            let stats = run_once(&worker, &self.ctx(dev), Shutdown::never()).await;
            assert_eq!(
                stats.count("rebuild_failures"),
                0,
                "d{dev}: {}",
                stats.to_json()
            );
        }
    }

    fn assert_complete(&self, obj: &str, body: &[u8]) {
        let archives = self.archives(body);
        for (i, archive) in archives.iter().enumerate() {
            let dev = self.primary(obj, i);
            let got = self.read_fragment(&dev, obj, i as u32);
            assert!(got.is_some(), "{obj}: no durable fragment {i} on {dev}");
            assert!(
                got.as_deref() == Some(&archive[..]),
                "{obj}: fragment {i} differs"
            );
        }
    }
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn remove_data_files(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "data") {
            std::fs::remove_file(path).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_fragments_are_rebuilt_byte_identical_on_their_primaries() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let c = EcCluster::start().await;
    let ts = Timestamp::now();
    let sizes = [
        0usize,
        1,
        SEGMENT - 1,
        SEGMENT + 1,
        3 * SEGMENT + 17,
        70_000,
    ];
    let mut objects = Vec::new();
    for (n, size) in sizes.iter().enumerate() {
        let obj = format!("o{n}");
        let body = bytes(*size, n as u64 + 1);
        c.write_object(&obj, ts, &body);
        // One object loses one fragment, the next two (at most parity).
        let lost: Vec<usize> = if n % 2 == 0 {
            vec![n % 6]
        } else {
            vec![n % 6, (n + 3) % 6]
        };
        for i in lost {
            remove_data_files(&c.hash_dir(&c.primary(&obj, i), &obj));
        }
        objects.push((obj, body));
    }
    c.reconstruct_all().await;
    for (obj, body) in &objects {
        c.assert_complete(obj, body);
    }
    // A second pass finds nothing to do.
    let worker = ObjectReconstructor::default();
    for dev in 1..=DEVICES {
        let stats = run_once(&worker, &c.ctx(dev), Shutdown::never()).await;
        assert_eq!(stats.count("fragments_rebuilt"), 0, "{}", stats.to_json());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_on_a_handoff_reverts_and_leaves_the_handoff() {
    let c = EcCluster::start().await;
    let ts = Timestamp::now();
    let obj = "moved";
    let body = bytes(3 * SEGMENT + 5, 9);
    for i in 0..6u32 {
        // Fragment 2's primary was down: a handoff took it.
        let dev = if i == 2 {
            c.handoff(obj)
        } else {
            c.primary(obj, i as usize)
        };
        c.write_fragment(&dev, obj, ts, &body, i, true);
    }
    let handoff = c.handoff(obj);
    let part_dir = c
        .devices
        .join(&handoff)
        .join(format!("objects-1/{}", c.part(obj)));
    assert!(part_dir.exists());
    let dev_no: usize = handoff[1..].parse().unwrap();
    let stats = run_once(
        &ObjectReconstructor::default(),
        &c.ctx(dev_no),
        Shutdown::never(),
    )
    .await;
    assert_eq!(stats.count("fragments_reverted"), 1, "{}", stats.to_json());
    c.assert_complete(obj, &body);
    assert!(
        !part_dir.exists(),
        "the reverted handoff partition is removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_durable_mark_is_added_rather_than_the_fragment_resent() {
    let c = EcCluster::start().await;
    let ts = Timestamp::now();
    let obj = "pending";
    let body = bytes(2 * SEGMENT, 4);
    for i in 0..6u32 {
        // Index 3 never got its commit.
        c.write_fragment(&c.primary(obj, i as usize), obj, ts, &body, i, i != 3);
    }
    let dev3 = c.primary(obj, 3);
    assert!(c.read_fragment(&dev3, obj, 3).is_none());
    c.reconstruct_all().await;
    c.assert_complete(obj, &body);
    assert_eq!(
        c.data_files(&dev3, obj),
        [format!("{}#3#d.data", ts.internal())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_reaches_a_primary_that_missed_the_delete() {
    let c = EcCluster::start().await;
    let ts = Timestamp::now();
    let obj = "deleted";
    let body = bytes(100, 5);
    c.write_object(obj, ts, &body);
    let later = Timestamp::from_secs_f64(ts.as_secs_f64() + 1.0).unwrap();
    // Every primary but index 4's took the DELETE.
    for i in (0..6).filter(|&i| i != 4) {
        let dev = c.primary(obj, i);
        c.mgr()
            .ec_diskfile(
                &dev,
                c.part(obj),
                "a",
                "c",
                obj,
                &ec_policy(),
                FragSelect::any(),
            )
            .unwrap()
            .delete(later)
            .unwrap();
    }
    c.reconstruct_all().await;
    let dev4 = c.primary(obj, 4);
    assert!(c.data_files(&dev4, obj).is_empty());
    assert!(c
        .hash_dir(&dev4, obj)
        .join(format!("{}.ts", later.internal()))
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_fragments_rebuild_nothing_and_say_so() {
    let c = EcCluster::start().await;
    let ts = Timestamp::now();
    let obj = "doomed";
    let body = bytes(SEGMENT * 2, 8);
    c.write_object(obj, ts, &body);
    // Three of six lost: below ndata = 4 survivors.
    for i in [0usize, 2, 4] {
        remove_data_files(&c.hash_dir(&c.primary(obj, i), obj));
    }
    let mut failures = 0;
    for dev in 1..=DEVICES {
        let stats = run_once(
            &ObjectReconstructor::default(),
            &c.ctx(dev),
            Shutdown::never(),
        )
        .await;
        failures += stats.count("rebuild_failures");
        assert_eq!(stats.count("fragments_rebuilt"), 0);
    }
    assert!(failures > 0);
    for i in [1usize, 3, 5] {
        assert!(c.read_fragment(&c.primary(obj, i), obj, i as u32).is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_with_a_corrupt_fragment_header_is_replaced_by_another() {
    let c = EcCluster::start().await;
    let ts = Timestamp::now();
    let obj = "corrupt-source";
    let body = bytes(3 * SEGMENT + 100, 12);
    c.write_object(obj, ts, &body);
    let archives = c.archives(&body);
    remove_data_files(&c.hash_dir(&c.primary(obj, 0), obj));
    // Index 2's first fragment header goes bad (its checksum no longer
    // matches), stored with a matching ETag so that its object server
    // serves it whole: only the rebuild's decoder can find it out, and
    // must drop it for another source.
    let dev2 = c.primary(obj, 2);
    remove_data_files(&c.hash_dir(&dev2, obj));
    let mut bad = archives[2].clone();
    bad[4] ^= 0xff;
    c.write_archive(&dev2, obj, ts, &body, 2, &bad, true);
    let (mut rebuilt, mut source_errors) = (0, 0);
    for dev in 1..=DEVICES {
        let stats = run_once(
            &ObjectReconstructor::default(),
            &c.ctx(dev),
            Shutdown::never(),
        )
        .await;
        rebuilt += stats.count("fragments_rebuilt");
        source_errors += stats.count("rebuild_source_errors");
    }
    assert!(rebuilt >= 1);
    assert!(source_errors >= 1, "the corrupt source was never read");
    let got = c.read_fragment(&c.primary(obj, 0), obj, 0);
    assert!(
        got.as_deref() == Some(&archives[0][..]),
        "index 0 not rebuilt exactly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_primarys_fragment_is_rebuilt_on_a_handoff() {
    let mut c = EcCluster::start().await;
    let ts = Timestamp::now();
    let obj = "primary-down";
    let body = bytes(2 * SEGMENT + 77, 21);
    c.write_object(obj, ts, &body);
    let archives = c.archives(&body);
    let down = c.primary(obj, 3);
    c.stop_device(&down).await;
    // Index 3's partners (2 and 4) find its node down.
    let partner = c.primary(obj, 2);
    let n: usize = partner[1..].parse().unwrap();
    let stats = run_once(
        &ObjectReconstructor::default(),
        &c.ctx(n),
        Shutdown::never(),
    )
    .await;
    assert_eq!(stats.count("handoff_rebuilds"), 1, "{}", stats.to_json());
    let handoff = c.handoff(obj);
    let files = c.data_files(&handoff, obj);
    assert_eq!(files, [format!("{}#3#d.data", ts.internal())]);
    let got = c.read_fragment(&handoff, obj, 3);
    assert!(
        got.as_deref() == Some(&archives[3][..]),
        "rebuilt fragment differs"
    );
}
