//! The database daemons against real container and account servers: four
//! "nodes" on 127.0.0.1 (one device each, told apart by port), rings with
//! three replicas, one pass at a time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use apus_core::{HashConfig, Timestamp};
use apus_daemons::container_updater::{ContainerUpdater, ContainerUpdaterConfig};
use apus_daemons::db_auditor::{ContainerAuditor, DbAuditorConfig};
use apus_daemons::db_replicator::{AccountReplicator, ContainerReplicator, DbReplicatorConfig};
use apus_daemons::{run_once, DaemonContext, LocalIdentity, PassStats, Shutdown};
use apus_db::{
    AccountBroker, BrokerOptions, ContainerBroker, ContainerRecord, ListParams, Listing,
    ObjectRecord,
};
use apus_ring::builder::RingBuilder;
use apus_ring::{Device, Ring};
use apus_server::account::AccountServer;
use apus_server::container::ContainerServer;
use apus_server::db_common::{db_path, DbKind, DbServerConfig, ServerHandle};

const NODES: usize = 4;

struct Cluster {
    dir: tempfile::TempDir,
    devices: PathBuf,
    hash: HashConfig,
    container_ring: Ring,
    account_ring: Ring,
    container_addrs: Vec<SocketAddr>,
    account_addrs: Vec<SocketAddr>,
    _servers: Vec<ServerHandle>,
}

fn ring(ports: &[u16]) -> RingBuilder {
    let mut b = RingBuilder::new(4, 3.0, 0).unwrap();
    for (i, port) in ports.iter().enumerate() {
        b.add_dev(Device {
            id: apus_ring::builder::AUTO_ID,
            region: 1,
            zone: i as u32 + 1,
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
    b.rebalance(Some(1), &mut |_| {}).unwrap();
    b
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let devices = dir.path().join("devices");
    let rings_dir = dir.path().join("rings");
    std::fs::create_dir_all(&rings_dir).unwrap();
    for i in 1..=NODES {
        std::fs::create_dir_all(devices.join(format!("d{i}"))).unwrap();
    }
    let hash = HashConfig::new(b"p".to_vec(), b"s".to_vec());
    let cfg = DbServerConfig::new(&devices, hash.clone());
    let mut servers = Vec::new();
    let (mut container_addrs, mut account_addrs) = (Vec::new(), Vec::new());
    for _ in 0..NODES {
        let c = ContainerServer::new(cfg.clone())
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = AccountServer::new(cfg.clone())
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        container_addrs.push(c.addr);
        account_addrs.push(a.addr);
        servers.push(c);
        servers.push(a);
    }
    let ports = |addrs: &[SocketAddr]| addrs.iter().map(|a| a.port()).collect::<Vec<_>>();
    let cdata = ring(&ports(&container_addrs)).ring_data().unwrap();
    let adata = ring(&ports(&account_addrs)).ring_data().unwrap();
    cdata.save(&rings_dir.join("container.ring.gz")).unwrap();
    adata.save(&rings_dir.join("account.ring.gz")).unwrap();
    Cluster {
        dir,
        devices,
        hash,
        container_ring: Ring::new(cdata).unwrap(),
        account_ring: Ring::new(adata).unwrap(),
        container_addrs,
        account_addrs,
        _servers: servers,
    }
}

/// A timestamp `n` seconds into the last hour.
fn recent(n: u64) -> Timestamp {
    // One base for the whole run: the same `n` is the same timestamp in
    // every call, even across a second's boundary.
    static BASE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| Timestamp::now().as_secs_f64().floor() - 3600.0);
    Timestamp::from_secs_f64(base + n as f64).unwrap()
}

impl Cluster {
    /// The daemon context of the node serving device `dN` (n from 1).
    fn ctx(&self, n: usize) -> DaemonContext {
        DaemonContext::new(
            self.devices.clone(),
            self.hash.clone(),
            self.dir.path().join("rings"),
            vec![],
            LocalIdentity {
                account: self.account_addrs[n - 1],
                container: self.container_addrs[n - 1],
                object: "127.0.0.1:1".parse().unwrap(),
            },
            Default::default(),
        )
    }

    /// Device numbers (1-based) of the container's primaries, and the one
    /// device that is not.
    fn container_nodes(&self, a: &str, c: &str) -> (u32, Vec<usize>, usize) {
        let part = self.container_ring.partition(&self.hash, a, Some(c), None);
        nodes(&self.container_ring, part)
    }

    fn container_db(&self, dev: usize, a: &str, c: &str) -> PathBuf {
        let part = self.container_ring.partition(&self.hash, a, Some(c), None);
        let h = self.hash.hash_path(a, Some(c), None);
        db_path(
            &self.devices,
            &format!("d{dev}"),
            DbKind::Container,
            &part.to_string(),
            &h,
        )
    }

    fn account_db(&self, dev: usize, a: &str) -> PathBuf {
        let part = self.account_ring.partition(&self.hash, a, None, None);
        let h = self.hash.hash_path(a, None, None);
        db_path(
            &self.devices,
            &format!("d{dev}"),
            DbKind::Account,
            &part.to_string(),
            &h,
        )
    }
}

fn nodes(ring: &Ring, part: u32) -> (u32, Vec<usize>, usize) {
    let dev_no = |d: &Device| d.device[1..].parse::<usize>().unwrap();
    let primaries: Vec<usize> = ring.primaries(part).into_iter().map(dev_no).collect();
    let other = (1..=NODES).find(|n| !primaries.contains(n)).unwrap();
    (part, primaries, other)
}

fn create_container(path: &Path, put: Timestamp) -> ContainerBroker {
    ContainerBroker::create(path, "a", "c", put, 0, BrokerOptions::default()).unwrap()
}

fn open(path: &Path) -> ContainerBroker {
    ContainerBroker::open(path, BrokerOptions::default()).unwrap()
}

fn names(b: &ContainerBroker) -> Vec<(String, i64)> {
    b.list_objects(&ListParams::default(), 0)
        .unwrap()
        .into_iter()
        .filter_map(|l| match l {
            Listing::Item(e) => Some((e.name, e.size)),
            Listing::Subdir(_) => None,
        })
        .collect()
}

async fn replicate(cl: &Cluster, node: usize) -> PassStats {
    let w = ContainerReplicator::new(DbReplicatorConfig::default());
    let pass = run_once(&w, &cl.ctx(node), Shutdown::never()).await;
    assert!(pass.completed, "{pass}");
    pass
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_reach_every_replica_and_a_second_pass_sends_nothing() {
    let cl = cluster().await;
    let (_, prim, _) = cl.container_nodes("a", "c");
    let put = recent(0);
    let brokers: Vec<_> = prim
        .iter()
        .map(|&n| create_container(&cl.container_db(n, "a", "c"), put))
        .collect();
    for i in 0..10u64 {
        brokers[0]
            .put_object(ObjectRecord::put(
                &format!("o{i}"),
                recent(i + 1),
                100 + i,
                "text/plain",
                "e",
                0,
            ))
            .unwrap();
    }
    brokers[0].delete_object("o3", recent(20), 0).unwrap();
    // A row the second replica has that the first does not.
    brokers[1]
        .put_object(ObjectRecord::put(
            "only-on-2",
            recent(21),
            7,
            "text/plain",
            "e",
            0,
        ))
        .unwrap();

    let pass = replicate(&cl, prim[0]).await;
    assert_eq!(pass.count("dbs"), 1);
    assert_eq!(pass.count("diff"), 2, "{pass}");
    assert_eq!(pass.count("rows_sent"), 2 * 10, "{pass}");
    assert_eq!(pass.count("failures"), 0, "{pass}");
    let want_third: Vec<_> = names(&brokers[0]);
    assert_eq!(names(&brokers[2]), want_third);
    // Stats after a merge count only live rows: 9 objects of the first
    // replica (+1 on the second).
    let bytes: i64 = (0..10).filter(|i| *i != 3).map(|i| 100 + i).sum();
    let i2 = brokers[2].get_info().unwrap();
    assert_eq!((i2.object_count, i2.bytes_used), (9, bytes));
    let i1 = brokers[1].get_info().unwrap();
    assert_eq!((i1.object_count, i1.bytes_used), (10, bytes + 7));

    // The second replica's pass brings its extra row to the others.
    replicate(&cl, prim[1]).await;
    let all = names(&brokers[1]);
    assert_eq!(all.len(), 10);
    for b in &brokers {
        assert_eq!(names(b), all);
        assert_eq!(
            b.get_info().unwrap().hash,
            brokers[1].get_info().unwrap().hash
        );
    }

    // The third replica never pushed to anyone, so neither side has a
    // sync point, but the hashes match: the peers take the shortcut
    // (recording the third's rows as theirs) and nothing is sent.
    let third = brokers[2].get_replication_info().unwrap();
    let pass = replicate(&cl, prim[2]).await;
    assert_eq!(
        pass.count("no_change") + pass.count("hashmatch"),
        2,
        "{pass}"
    );
    assert_eq!(
        (pass.count("rows_sent"), pass.count("diff")),
        (0, 0),
        "{pass}"
    );
    for b in &brokers[..2] {
        assert_eq!(b.get_sync(&third.id, true).unwrap(), third.max_row);
    }

    // Nothing changed: every later pass sends no rows.
    for &n in &prim {
        let pass = replicate(&cl, n).await;
        assert_eq!(pass.count("rows_sent"), 0, "{pass}");
        assert_eq!(pass.count("diff"), 0, "{pass}");
        assert_eq!(
            pass.count("no_change") + pass.count("hashmatch"),
            2,
            "{pass}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_the_database_gets_a_whole_copy() {
    let cl = cluster().await;
    let (_, prim, _) = cl.container_nodes("a", "c");
    let put = recent(0);
    let first = create_container(&cl.container_db(prim[0], "a", "c"), put);
    for i in 0..5u64 {
        first
            .put_object(ObjectRecord::put(
                &format!("o{i}"),
                recent(i + 1),
                10,
                "text/plain",
                "e",
                0,
            ))
            .unwrap();
    }
    let pass = replicate(&cl, prim[0]).await;
    assert_eq!(pass.count("rsync"), 2, "{pass}");
    assert!(pass.count("bytes_sent") > 0);
    let id = first.get_replication_info().unwrap().id;
    for &n in &prim[1..] {
        let b = open(&cl.container_db(n, "a", "c"));
        let info = b.get_replication_info().unwrap();
        assert_ne!(info.id, id);
        assert_eq!(info.count, 5);
        assert_eq!(names(&b), names(&first));
    }
    // A copy lost later is restored the same way.
    std::fs::remove_file(cl.container_db(prim[2], "a", "c")).unwrap();
    let pass = replicate(&cl, prim[0]).await;
    assert_eq!(pass.count("rsync"), 1, "{pass}");
    assert_eq!(
        open(&cl.container_db(prim[2], "a", "c"))
            .get_info()
            .unwrap()
            .object_count,
        5
    );
    // No snapshot is left in the device's tmp directory.
    let tmp = cl.devices.join(format!("d{}", prim[0])).join("tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_database_goes_to_the_primaries_and_away() {
    let cl = cluster().await;
    let (_, prim, other) = cl.container_nodes("a", "c");
    // The primaries have some of it, the handoff all of it.
    let put = recent(0);
    let p0 = create_container(&cl.container_db(prim[0], "a", "c"), put);
    p0.put_object(ObjectRecord::put("o0", recent(1), 1, "text/plain", "e", 0))
        .unwrap();
    let handoff_path = cl.container_db(other, "a", "c");
    let handoff = create_container(&handoff_path, put);
    for i in 0..4u64 {
        handoff
            .put_object(ObjectRecord::put(
                &format!("h{i}"),
                recent(i + 2),
                2,
                "text/plain",
                "e",
                0,
            ))
            .unwrap();
    }
    let want = {
        let mut v = names(&handoff);
        v.push(("o0".into(), 1));
        v.sort();
        v
    };
    drop(handoff);
    let pass = replicate(&cl, other).await;
    assert_eq!(pass.count("remove"), 1, "{pass}");
    assert_eq!(pass.count("rsync"), 2, "{pass}");
    assert_eq!(pass.count("diff"), 1, "{pass}");
    assert!(!handoff_path.exists());
    assert!(!handoff_path.parent().unwrap().exists());
    // The primaries' own replication settles the rest.
    replicate(&cl, prim[0]).await;
    for &n in &prim {
        let b = open(&cl.container_db(n, "a", "c"));
        assert_eq!(names(&b), want, "d{n}");
        let i = b.get_info().unwrap();
        assert_eq!((i.object_count, i.bytes_used), (5, 9));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_tombstones_and_old_deleted_databases_are_reclaimed() {
    let cl = cluster().await;
    let (_, prim, _) = cl.container_nodes("a", "c");
    let long_ago = |n: u64| Timestamp::parse(&format!("{}.00000", 1_600_000_000 + n)).unwrap();
    let b = create_container(&cl.container_db(prim[0], "a", "c"), long_ago(0));
    b.put_object(ObjectRecord::put("old-gone", long_ago(1), 1, "t", "e", 0))
        .unwrap();
    b.delete_object("old-gone", long_ago(2), 0).unwrap();
    b.put_object(ObjectRecord::put("new-gone", recent(1), 1, "t", "e", 0))
        .unwrap();
    b.delete_object("new-gone", recent(2), 0).unwrap();
    b.put_object(ObjectRecord::put("live", recent(3), 1, "t", "e", 0))
        .unwrap();
    replicate(&cl, prim[0]).await;
    let rows: Vec<String> = b
        .get_items_since(-1, 100)
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.contains(&"new-gone".to_string()) && rows.contains(&"live".to_string()));
    // The peers got only what was left.
    let peer = open(&cl.container_db(prim[1], "a", "c"));
    assert_eq!(peer.get_items_since(-1, 100).unwrap().len(), 2);

    // A container deleted long ago, reported to its account, is removed
    // from every replica.
    let paths: Vec<_> = prim
        .iter()
        .map(|&n| cl.container_db(n, "a", "gone"))
        .collect();
    for p in &paths {
        let b = ContainerBroker::create(p, "a", "gone", long_ago(0), 0, BrokerOptions::default())
            .unwrap();
        b.delete_db(long_ago(5)).unwrap();
        let i = b.get_info().unwrap();
        b.reported(i.put_timestamp, i.delete_timestamp, 0, 0)
            .unwrap();
    }
    for &n in &prim {
        replicate(&cl, n).await;
    }
    assert!(paths.iter().all(|p| !p.exists()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_databases_replicate_too() {
    let (cl, prim) = cl_with_account().await;
    let put = recent(0);
    let first = AccountBroker::create(
        &cl.account_db(prim[0], "acct"),
        "acct",
        put,
        BrokerOptions::default(),
    )
    .unwrap();
    first
        .put_container(ContainerRecord::new(
            "c1",
            recent(1),
            Timestamp::ZERO,
            3,
            30,
            0,
        ))
        .unwrap();
    AccountBroker::create(
        &cl.account_db(prim[1], "acct"),
        "acct",
        put,
        BrokerOptions::default(),
    )
    .unwrap();
    let w = AccountReplicator::new(DbReplicatorConfig::default());
    let pass = run_once(&w, &cl.ctx(prim[0]), Shutdown::never()).await;
    assert_eq!(
        (
            pass.count("rsync"),
            pass.count("diff"),
            pass.count("rows_sent")
        ),
        (1, 1, 1),
        "{pass}"
    );
    for &n in &prim {
        let i = AccountBroker::open(&cl.account_db(n, "acct"), BrokerOptions::default())
            .unwrap()
            .get_info()
            .unwrap();
        assert_eq!(
            (i.container_count, i.object_count, i.bytes_used),
            (1, 3, 30),
            "d{n}"
        );
    }
}

async fn cl_with_account() -> (Cluster, Vec<usize>) {
    let cl = cluster().await;
    let part = cl.account_ring.partition(&cl.hash, "acct", None, None);
    let (_, prim, _) = nodes(&cl.account_ring, part);
    (cl, prim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_quarantines_a_damaged_database_and_leaves_good_ones() {
    let cl = cluster().await;
    let (_, prim, _) = cl.container_nodes("a", "c");
    let n = prim[0];
    let good = create_container(&cl.container_db(n, "a", "c"), recent(0));
    good.put_object(ObjectRecord::put("o", recent(1), 1, "t", "e", 0))
        .unwrap();
    good.flush_pending().unwrap();
    // Another container on the same device, then damaged.
    let bad_container = "bad";
    let bad_path = cl.container_db(n, "a", bad_container);
    ContainerBroker::create(
        &bad_path,
        "a",
        bad_container,
        recent(0),
        0,
        BrokerOptions::default(),
    )
    .unwrap();
    let mut bytes = std::fs::read(&bad_path).unwrap();
    for b in bytes.iter_mut().take(100) {
        *b = 0x5a;
    }
    std::fs::write(&bad_path, bytes).unwrap();

    let w = ContainerAuditor::new(DbAuditorConfig::default());
    let pass = run_once(&w, &cl.ctx(n), Shutdown::never()).await;
    assert_eq!(pass.count("audited"), 2, "{pass}");
    assert_eq!(pass.count("passes"), 1, "{pass}");
    assert_eq!(
        (pass.count("failures"), pass.count("quarantined")),
        (1, 1),
        "{pass}"
    );
    let hash = cl.hash.hash_path("a", Some(bad_container), None);
    let q = cl
        .devices
        .join(format!("d{n}/quarantined/containers"))
        .join(&hash);
    assert!(q.join(format!("{hash}.db")).exists());
    assert!(!bad_path.exists());
    assert_eq!(
        open(&cl.container_db(n, "a", "c"))
            .get_info()
            .unwrap()
            .object_count,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_updater_brings_the_account_up_to_date() {
    let (cl, acct_prim) = cl_with_account().await;
    for &n in &acct_prim {
        AccountBroker::create(
            &cl.account_db(n, "acct"),
            "acct",
            recent(0),
            BrokerOptions::default(),
        )
        .unwrap();
    }
    let part = cl
        .container_ring
        .partition(&cl.hash, "acct", Some("box"), None);
    let (_, cprim, _) = nodes(&cl.container_ring, part);
    let node = cprim[0];
    let path = cl.container_db(node, "acct", "box");
    let b = ContainerBroker::create(&path, "acct", "box", recent(1), 0, BrokerOptions::default())
        .unwrap();
    for i in 0..3u64 {
        b.put_object(ObjectRecord::put(
            &format!("o{i}"),
            recent(i + 2),
            5,
            "t",
            "e",
            0,
        ))
        .unwrap();
    }
    let w = ContainerUpdater::new(ContainerUpdaterConfig::default());
    let before = Timestamp::now();
    let pass = run_once(&w, &cl.ctx(node), Shutdown::never()).await;
    let after = Timestamp::now();
    assert_eq!(pass.count("successes"), 1, "{pass}");
    for &n in &acct_prim {
        let a = AccountBroker::open(&cl.account_db(n, "acct"), BrokerOptions::default()).unwrap();
        let i = a.get_info().unwrap();
        assert_eq!(
            (i.container_count, i.object_count, i.bytes_used),
            (1, 3, 15),
            "d{n}"
        );
        let row = a.get_container_row("box").unwrap().unwrap();
        assert_eq!(row.put_timestamp, recent(1));
        // Stamped with the time the updater read the container's stats.
        assert!(
            before <= row.stats_timestamp && row.stats_timestamp <= after,
            "{row:?}"
        );
    }
    let info = b.get_info().unwrap();
    assert_eq!(
        (info.reported_object_count, info.reported_bytes_used),
        (3, 15)
    );
    // Reported: nothing to do next time; a change is reported again.
    let pass = run_once(&w, &cl.ctx(node), Shutdown::never()).await;
    assert_eq!(
        (pass.count("no_changes"), pass.count("successes")),
        (1, 0),
        "{pass}"
    );
    b.delete_object("o0", recent(10), 0).unwrap();
    let pass = run_once(&w, &cl.ctx(node), Shutdown::never()).await;
    assert_eq!(pass.count("successes"), 1, "{pass}");
    let a = AccountBroker::open(
        &cl.account_db(acct_prim[0], "acct"),
        BrokerOptions::default(),
    )
    .unwrap();
    assert_eq!(a.get_info().unwrap().object_count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_takes_the_turn_of_a_primary_whose_drive_is_gone() {
    let cl = cluster().await;
    let (_, prim, other) = cl.container_nodes("a", "c");
    let first = create_container(&cl.container_db(prim[0], "a", "c"), recent(0));
    first
        .put_object(ObjectRecord::put("o", recent(1), 3, "t", "e", 0))
        .unwrap();
    // The third primary's drive is unmounted: its server answers 507.
    let dev = cl.devices.join(format!("d{}", prim[2]));
    std::fs::rename(&dev, cl.dir.path().join("unmounted")).unwrap();
    let pass = replicate(&cl, prim[0]).await;
    assert_eq!(pass.count("rsync"), 2, "{pass}");
    assert_eq!(
        (pass.count("success"), pass.count("failures")),
        (2, 1),
        "{pass}"
    );
    for n in [prim[1], other] {
        let b = open(&cl.container_db(n, "a", "c"));
        assert_eq!(b.get_info().unwrap().object_count, 1, "d{n}");
    }
}
