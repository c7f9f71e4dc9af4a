//! REPLICATE on the container and account servers over real sockets: the
//! sync / merge_items / merge_syncs RPCs and the whole-database copy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;

use apus_core::{HashConfig, Timestamp};
use apus_db::{
    AccountBroker, BrokerOptions, ContainerBroker, ContainerRecord, ObjectRecord, ReplicaBroker,
};
use apus_http::{BackendClient, ClientConfig};
use apus_proto::db_replication::{
    PolicyArgs, ReplicateOp, SyncArgs, SyncPoint, SyncReply, COMPLETE_COPY, COPY_SOURCE_ID_HEADER,
    REPLICATE_MODE_HEADER,
};
use apus_server::account::AccountServer;
use apus_server::container::ContainerServer;
use apus_server::db_common::{db_path, DbKind, DbServerConfig, ServerHandle};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::BodyExt;

struct Env {
    _dir: tempfile::TempDir,
    devices: PathBuf,
    hash: HashConfig,
    container: ServerHandle,
    account: ServerHandle,
    client: BackendClient,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let devices = dir.path().join("devices");
    for d in ["d1", "d2", "d3"] {
        std::fs::create_dir_all(devices.join(d)).unwrap();
    }
    let hash = HashConfig::new(b"pre".to_vec(), b"suf".to_vec());
    let cfg = DbServerConfig::new(&devices, hash.clone());
    let container = ContainerServer::new(cfg.clone())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let account = AccountServer::new(cfg)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Env {
        _dir: dir,
        devices,
        hash,
        container,
        account,
        client: BackendClient::new(ClientConfig::default()),
    }
}

fn ts(n: u64) -> Timestamp {
    Timestamp::parse(&format!("{}.00000", 1_700_000_000 + n)).unwrap()
}

impl Env {
    fn container_db(&self, dev: &str, a: &str, c: &str) -> PathBuf {
        let h = self.hash.hash_path(a, Some(c), None);
        db_path(&self.devices, dev, DbKind::Container, "3", &h)
    }

    fn account_db(&self, dev: &str, a: &str) -> PathBuf {
        let h = self.hash.hash_path(a, None, None);
        db_path(&self.devices, dev, DbKind::Account, "5", &h)
    }

    async fn send(
        &self,
        host: std::net::SocketAddr,
        path: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> (u16, Bytes) {
        let method = Method::from_bytes(b"REPLICATE").unwrap();
        let resp = self
            .client
            .request(
                method,
                &host.to_string(),
                path,
                headers,
                apus_http::full(body),
            )
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }
}

fn rpc_path(dev: &str, part: &str, db: &std::path::Path) -> String {
    let hash = db.file_stem().unwrap().to_str().unwrap();
    format!("/{dev}/{part}/{hash}")
}

fn sync_args<B: ReplicaBroker>(b: &B) -> SyncArgs {
    let i = b.get_replication_info().unwrap();
    SyncArgs {
        max_row: i.max_row,
        hash: i.hash,
        id: i.id,
        created_at: i.created_at,
        put_timestamp: i.put_timestamp,
        delete_timestamp: i.delete_timestamp,
        metadata: i.metadata,
        policy: Some(PolicyArgs {
            status_changed_at: i.status_changed_at,
            count: i.count,
            storage_policy_index: i.storage_policy_index,
        }),
    }
}

fn new_container(path: &std::path::Path, objects: u64) -> ContainerBroker {
    let b = ContainerBroker::create(path, "a", "c", ts(0), 0, BrokerOptions::default()).unwrap();
    for i in 0..objects {
        b.put_object(ObjectRecord::put(
            &format!("o{i}"),
            ts(i + 1),
            10,
            "text/plain",
            "e",
            0,
        ))
        .unwrap();
    }
    b
}

#[tokio::test]
async fn bad_requests_are_refused_without_touching_anything() {
    let env = env().await;
    let db = env.container_db("d1", "a", "c");
    let path = rpc_path("d1", "3", &db);
    let sync = ReplicateOp::<ObjectRecord>::Sync(SyncArgs {
        max_row: -1,
        hash: String::new(),
        id: "peer".into(),
        created_at: ts(0),
        put_timestamp: ts(0),
        delete_timestamp: Timestamp::ZERO,
        metadata: String::new(),
        policy: None,
    })
    .to_json()
    .unwrap();
    let c = env.container.addr;
    // No such device: 507. No database: 404.
    let missing = rpc_path("nodev", "3", &db);
    assert_eq!(
        env.send(c, &missing, HeaderMap::new(), sync.clone())
            .await
            .0,
        507
    );
    assert_eq!(
        env.send(c, &path, HeaderMap::new(), sync.clone()).await.0,
        404
    );
    // Garbage, unknown operations, bad paths: 400.
    for body in [
        &b"not json"[..],
        b"{}",
        b"[\"complete_rsync\", \"x\"]",
        b"[\"sync\", 1]",
    ] {
        assert_eq!(
            env.send(c, &path, HeaderMap::new(), body.to_vec()).await.0,
            400
        );
    }
    assert_eq!(
        env.send(c, "/d1/3/nothex", HeaderMap::new(), sync.clone())
            .await
            .0,
        400
    );
    assert_eq!(
        env.send(
            c,
            "/d1/x/0123456789abcdef0123456789abcdef",
            HeaderMap::new(),
            sync
        )
        .await
        .0,
        400
    );
    // Over the RPC size bound: 413.
    let huge = vec![b' '; 16 * 1024 * 1024 + 1];
    assert_eq!(env.send(c, &path, HeaderMap::new(), huge).await.0, 413);
    assert!(!db.exists());
}

#[tokio::test]
async fn sync_merge_items_and_merge_syncs_bring_a_container_copy_up_to_date() {
    let env = env().await;
    let src_path = env.container_db("d1", "a", "c");
    let dst_path = env.container_db("d2", "a", "c");
    let src = new_container(&src_path, 5);
    src.delete_object("o0", ts(50), 0).unwrap();
    let mut md = apus_db::Metadata::new();
    md.insert("X-Container-Meta-Color".into(), ("blue".into(), ts(60)));
    src.update_metadata(&md, true).unwrap();
    let dst = new_container(&dst_path, 0);
    let c = env.container.addr;
    let path = rpc_path("d2", "3", &dst_path);

    // sync: the receiver takes our metadata and says it has none of our rows.
    let args = sync_args(&src);
    let (status, body) = env
        .send(
            c,
            &path,
            HeaderMap::new(),
            ReplicateOp::<ObjectRecord>::Sync(args.clone())
                .to_json()
                .unwrap(),
        )
        .await;
    assert_eq!(status, 200, "{body:?}");
    let reply = SyncReply::parse(&body).unwrap();
    assert_eq!(reply.point, -1);
    assert_eq!(reply.id, dst.get_replication_info().unwrap().id);
    assert_eq!(reply.container.as_deref(), Some("c"));
    assert_eq!(dst.metadata().unwrap()["X-Container-Meta-Color"].0, "blue");

    // merge_items, then merge_syncs.
    let rows = src.get_items_since(-1, 1000).unwrap();
    let last = rows.last().unwrap().rowid.unwrap();
    let op = ReplicateOp::MergeItems {
        items: rows,
        source_id: args.id.clone(),
    };
    assert_eq!(
        env.send(c, &path, HeaderMap::new(), op.to_json().unwrap())
            .await
            .0,
        202
    );
    let op = ReplicateOp::<ObjectRecord>::MergeSyncs(vec![SyncPoint {
        remote_id: "third".into(),
        sync_point: 77,
    }]);
    assert_eq!(
        env.send(c, &path, HeaderMap::new(), op.to_json().unwrap())
            .await
            .0,
        202
    );

    let (s, d) = (src.get_info().unwrap(), dst.get_info().unwrap());
    assert_eq!((d.object_count, d.bytes_used), (4, 40));
    assert_eq!(
        (s.object_count, s.hash.clone()),
        (d.object_count, d.hash.clone())
    );
    assert_eq!(dst.get_sync(&args.id, true).unwrap(), last);
    assert_eq!(dst.get_sync("third", true).unwrap(), 77);

    // A second sync with equal hashes answers the sender's max_row.
    let (_, body) = env
        .send(
            c,
            &path,
            HeaderMap::new(),
            ReplicateOp::<ObjectRecord>::Sync(sync_args(&src))
                .to_json()
                .unwrap(),
        )
        .await;
    let reply = SyncReply::parse(&body).unwrap();
    assert_eq!(reply.hash, s.hash);
    assert_eq!(reply.point, src.get_replication_info().unwrap().max_row);
}

#[tokio::test]
async fn sync_merges_status_timestamps() {
    let env = env().await;
    let src_path = env.container_db("d1", "a", "c");
    let dst_path = env.container_db("d2", "a", "c");
    let src = new_container(&src_path, 0);
    src.delete_db(ts(100)).unwrap();
    let dst = new_container(&dst_path, 0);
    let path = rpc_path("d2", "3", &dst_path);
    let op = ReplicateOp::<ObjectRecord>::Sync(sync_args(&src))
        .to_json()
        .unwrap();
    assert_eq!(
        env.send(env.container.addr, &path, HeaderMap::new(), op)
            .await
            .0,
        200
    );
    assert!(dst.is_deleted().unwrap());
    assert_eq!(dst.get_info().unwrap().delete_timestamp, ts(100));
}

#[tokio::test]
async fn a_whole_copy_lands_once_with_a_new_id_and_only_where_it_belongs() {
    let env = env().await;
    let src_path = env.container_db("d1", "a", "c");
    let src = new_container(&src_path, 3);
    src.flush_pending().unwrap();
    let info = src.get_replication_info().unwrap();
    let file = std::fs::read(&src_path).unwrap();
    let copy_headers = |id: &str| {
        let mut h = HeaderMap::new();
        h.insert(
            REPLICATE_MODE_HEADER,
            HeaderValue::from_static(COMPLETE_COPY),
        );
        h.insert(COPY_SOURCE_ID_HEADER, HeaderValue::from_str(id).unwrap());
        h
    };
    let c = env.container.addr;
    let dst_path = env.container_db("d3", "a", "c");
    let path = rpc_path("d3", "3", &dst_path);
    let (status, body) = env
        .send(c, &path, copy_headers(&info.id), file.clone())
        .await;
    assert_eq!(status, 201, "{body:?}");
    let dst = ContainerBroker::open(&dst_path, BrokerOptions::default()).unwrap();
    let dinfo = dst.get_replication_info().unwrap();
    assert_ne!(dinfo.id, info.id);
    assert_eq!((dinfo.count, dinfo.hash.clone()), (3, info.hash.clone()));
    assert_eq!(dst.get_sync(&info.id, true).unwrap(), info.max_row);
    // Nothing left beside it but the database.
    let names: Vec<_> = std::fs::read_dir(dst_path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![dst_path.file_name().unwrap().to_str().unwrap().to_string()]
    );

    // A second copy never replaces an existing database.
    assert_eq!(
        env.send(c, &path, copy_headers(&info.id), file.clone())
            .await
            .0,
        409
    );

    // A database sent to another name's place, a torn file, or no source
    // id is refused and leaves nothing behind.
    let other = env.container_db("d3", "a", "other");
    let other_rpc = rpc_path("d3", "3", &other);
    assert_eq!(
        env.send(c, &other_rpc, copy_headers(&info.id), file.clone())
            .await
            .0,
        400
    );
    assert_eq!(
        env.send(
            c,
            &other_rpc,
            copy_headers(&info.id),
            file[..file.len() / 2].to_vec()
        )
        .await
        .0,
        400
    );
    assert_eq!(
        env.send(c, &other_rpc, copy_headers(""), file.clone())
            .await
            .0,
        400
    );
    // An account database is not a container database.
    let acct_path = env.account_db("d1", "a");
    AccountBroker::create(&acct_path, "a", ts(0), BrokerOptions::default()).unwrap();
    let acct_file = std::fs::read(&acct_path).unwrap();
    assert_eq!(
        env.send(c, &other_rpc, copy_headers("x"), acct_file)
            .await
            .0,
        400
    );
    assert!(!other.exists());
    assert!(!other.parent().unwrap().exists());
}

#[tokio::test]
async fn the_account_server_answers_the_same_rpcs() {
    let env = env().await;
    let src_path = env.account_db("d1", "a");
    let dst_path = env.account_db("d2", "a");
    let src = AccountBroker::create(&src_path, "a", ts(0), BrokerOptions::default()).unwrap();
    src.put_container(ContainerRecord::new("c1", ts(1), Timestamp::ZERO, 2, 20, 0))
        .unwrap();
    src.put_container(ContainerRecord::new("c2", ts(2), Timestamp::ZERO, 3, 30, 0))
        .unwrap();
    let dst = AccountBroker::create(&dst_path, "a", ts(0), BrokerOptions::default()).unwrap();
    let a = env.account.addr;
    let path = rpc_path("d2", "5", &dst_path);
    let mut args = sync_args(&src);
    args.policy = None;
    let (status, body) = env
        .send(
            a,
            &path,
            HeaderMap::new(),
            ReplicateOp::<ContainerRecord>::Sync(args.clone())
                .to_json()
                .unwrap(),
        )
        .await;
    assert_eq!(status, 200);
    let reply = SyncReply::parse(&body).unwrap();
    assert_eq!((reply.point, reply.container.clone()), (-1, None));
    let op = ReplicateOp::MergeItems {
        items: src.get_items_since(-1, 1000).unwrap(),
        source_id: args.id,
    };
    assert_eq!(
        env.send(a, &path, HeaderMap::new(), op.to_json().unwrap())
            .await
            .0,
        202
    );
    let info = dst.get_info().unwrap();
    assert_eq!(
        (info.container_count, info.object_count, info.bytes_used),
        (2, 5, 50)
    );
    assert_eq!(info.hash, src.get_info().unwrap().hash);
}

#[tokio::test]
async fn servers_stay_up_behind_concurrent_copies() {
    // Two copies of the same database racing: exactly one lands.
    let env = Arc::new(env().await);
    let src_path = env.container_db("d1", "a", "c");
    let src = new_container(&src_path, 2);
    src.flush_pending().unwrap();
    let id = src.get_replication_info().unwrap().id;
    let file = std::fs::read(&src_path).unwrap();
    let dst_path = env.container_db("d2", "a", "c");
    let path = rpc_path("d2", "3", &dst_path);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (env, path, file, id) = (env.clone(), path.clone(), file.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = HeaderMap::new();
            h.insert(
                REPLICATE_MODE_HEADER,
                HeaderValue::from_static(COMPLETE_COPY),
            );
            h.insert(COPY_SOURCE_ID_HEADER, HeaderValue::from_str(&id).unwrap());
            env.send(env.container.addr, &path, h, file).await.0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let dst = ContainerBroker::open(&dst_path, BrokerOptions::default()).unwrap();
    assert_eq!(dst.get_info().unwrap().object_count, 2);
}
