//! The account server over real sockets: accounts, container rows
//! reported by container servers, stats and listings as Swift's account
//! server produces them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;

use apus_core::HashConfig;
use apus_server::account::AccountServer;
use apus_server::db_common::{DbServerConfig, Policies, PolicyInfo, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP/1.1 exchange, so that paths go out exactly as written.
async fn raw(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}

fn ts(n: u64) -> String {
    format!("{}.00000", 1_700_000_000 + n)
}

struct Env {
    _dir: tempfile::TempDir,
    devices: PathBuf,
    cfg: DbServerConfig,
    addr: SocketAddr,
    server: ServerHandle,
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let devices = dir.path().to_path_buf();
    std::fs::create_dir(devices.join("sda")).unwrap();
    let mut cfg = DbServerConfig::new(devices.clone(), HashConfig::new("", "apus-test"));
    cfg.fallocate_reserve_percent = 0.0;
    cfg.policies = Policies {
        policies: vec![
            PolicyInfo {
                index: 0,
                name: "gold".into(),
            },
            PolicyInfo {
                index: 1,
                name: "silver".into(),
            },
        ],
        default_index: 0,
    };
    let server = AccountServer::new(cfg.clone())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Env {
        _dir: dir,
        devices,
        cfg,
        addr: server.addr,
        server,
    }
}

/// A container server's report of container `c` of account `a`.
async fn report(
    env: &Env,
    c: &str,
    put: u64,
    delete: u64,
    objects: u64,
    bytes: u64,
    policy: u64,
) -> Resp {
    let delete = if delete == 0 {
        "0000000000.00000".to_string()
    } else {
        ts(delete)
    };
    raw(
        env.addr,
        "PUT",
        &format!("/sda/0/a/{c}"),
        &[
            ("X-Put-Timestamp", &ts(put)),
            ("X-Delete-Timestamp", &delete),
            ("X-Object-Count", &objects.to_string()),
            ("X-Bytes-Used", &bytes.to_string()),
            ("X-Backend-Storage-Policy-Index", &policy.to_string()),
            ("X-Timestamp", &ts(put)),
            ("X-Trans-Id", "tx-test"),
        ],
    )
    .await
}

#[tokio::test]
async fn create_head_and_missing() {
    let env = start().await;
    let r = raw(env.addr, "HEAD", "/sda/0/a", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("X-Account-Status"), None);
    let r = raw(env.addr, "GET", "/sda/0/a", &[]).await;
    assert_eq!(r.status, 404);
    let r = raw(env.addr, "POST", "/sda/0/a", &[("X-Timestamp", &ts(0))]).await;
    assert_eq!(r.status, 404);
    // Container reports for a missing account are refused.
    assert_eq!(report(&env, "c", 1, 0, 0, 0, 0).await.status, 404);

    let r = raw(env.addr, "PUT", "/sda/0/a", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 201);
    let r = raw(env.addr, "PUT", "/sda/0/a", &[("X-Timestamp", &ts(2))]).await;
    assert_eq!(r.status, 202);
    let hash = env.cfg.hash.hash_path("a", None, None);
    let db = env
        .devices
        .join("sda/accounts/0")
        .join(&hash[29..])
        .join(&hash)
        .join(format!("{hash}.db"));
    assert!(db.is_file(), "{db:?}");

    let r = raw(env.addr, "HEAD", "/sda/0/a", &[]).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("X-Account-Container-Count"), Some("0"));
    assert_eq!(r.header("X-Account-Object-Count"), Some("0"));
    assert_eq!(r.header("X-Account-Bytes-Used"), Some("0"));
    assert_eq!(r.header("X-PUT-Timestamp"), Some(ts(2).as_str()));
    assert!(r.header("X-Timestamp").is_some());
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    let r = raw(env.addr, "GET", "/sda/0/a", &[]).await;
    assert_eq!(r.status, 204);
    let r = raw(env.addr, "GET", "/sda/0/a?format=json", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
    let r = raw(env.addr, "GET", "/sda/0/a?format=xml", &[]).await;
    assert_eq!(
        r.body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<account name=\"a\">\n</account>"
    );

    // Auto-created accounts come into being with their first container.
    let r = raw(
        env.addr,
        "PUT",
        "/sda/0/.expiring_objects/1700000000",
        &[
            ("X-Put-Timestamp", &ts(3)),
            ("X-Delete-Timestamp", "0"),
            ("X-Object-Count", "1"),
            ("X-Bytes-Used", "0"),
        ],
    )
    .await;
    assert_eq!(r.status, 201);
    let r = raw(env.addr, "GET", "/sda/0/.expiring_objects", &[]).await;
    assert_eq!(r.body, "1700000000\n");

    env.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_requests() {
    let env = start().await;
    let r = raw(env.addr, "PUT", "/sda/0/a", &[]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Missing X-Timestamp header")
    );
    let r = raw(env.addr, "POST", "/sda/0/a", &[("X-Timestamp", "x")]).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Invalid X-Timestamp header")
    );
    let r = raw(env.addr, "PUT", "/sdz/0/a", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 507);
    let r = raw(env.addr, "HEAD", "/sdz/0/a", &[]).await;
    assert_eq!(r.status, 507);
    let r = raw(env.addr, "GET", "/sdz/0/a", &[]).await;
    assert_eq!(r.status, 507);
    let r = raw(env.addr, "DELETE", "/sdz/0/a", &[]).await;
    assert_eq!(r.status, 507);
    let r = raw(env.addr, "GET", "/sda/0/a%FF", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (412, "Invalid UTF8"));
    let r = raw(env.addr, "GET", "/sda/0/a/c", &[]).await;
    assert_eq!(r.status, 400);
    let r = raw(env.addr, "PUT", "/sda/0/a/c/o", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 400);
    let r = raw(env.addr, "COPY", "/sda/0/a", &[]).await;
    assert_eq!(r.status, 405);
    raw(env.addr, "PUT", "/sda/0/a", &[("X-Timestamp", &ts(1))]).await;
    let r = raw(env.addr, "GET", "/sda/0/a?limit=10001", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (412, "Maximum limit is 10000"));
    let r = raw(env.addr, "GET", "/sda/0/a?limit=10000", &[]).await;
    assert_eq!(r.status, 204);
    // A report missing its counts
    let r = raw(
        env.addr,
        "PUT",
        "/sda/0/a/c",
        &[("X-Put-Timestamp", &ts(2)), ("X-Delete-Timestamp", "0")],
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn container_rows_stats_and_listings() {
    let env = start().await;
    raw(env.addr, "PUT", "/sda/0/a", &[("X-Timestamp", &ts(0))]).await;
    for (i, c) in ["a", "b-1", "b-2", "c-x-y", "d"].iter().enumerate() {
        let r = report(&env, c, 10 + i as u64, 0, i as u64, 100 * i as u64, 0).await;
        assert_eq!(r.status, 201, "{c}");
    }
    let r = report(&env, "s", 20, 0, 7, 70, 1).await;
    assert_eq!(r.status, 201);

    let r = raw(env.addr, "HEAD", "/sda/0/a", &[]).await;
    assert_eq!(r.header("X-Account-Container-Count"), Some("6"));
    assert_eq!(r.header("X-Account-Object-Count"), Some("17"));
    assert_eq!(r.header("X-Account-Bytes-Used"), Some("1070"));
    assert_eq!(
        r.header("X-Account-Storage-Policy-Gold-Container-Count"),
        Some("5")
    );
    assert_eq!(
        r.header("X-Account-Storage-Policy-Gold-Object-Count"),
        Some("10")
    );
    assert_eq!(
        r.header("X-Account-Storage-Policy-Gold-Bytes-Used"),
        Some("1000")
    );
    assert_eq!(
        r.header("X-Account-Storage-Policy-Silver-Container-Count"),
        Some("1")
    );
    assert_eq!(
        r.header("X-Account-Storage-Policy-Silver-Bytes-Used"),
        Some("70")
    );

    let r = raw(env.addr, "GET", "/sda/0/a?format=json&limit=2", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("X-Account-Container-Count"), Some("6"));
    assert_eq!(
        r.body,
        "[{\"name\": \"a\", \"count\": 0, \"bytes\": 0, \"last_modified\": \"2023-11-14T22:13:30.000000\", \"storage_policy\": \"gold\"}, \
         {\"name\": \"b-1\", \"count\": 1, \"bytes\": 100, \"last_modified\": \"2023-11-14T22:13:31.000000\", \"storage_policy\": \"gold\"}]"
    );
    let list = |q: &'static str| {
        let addr = env.addr;
        async move {
            let r = raw(addr, "GET", &format!("/sda/0/a{q}"), &[]).await;
            assert!(r.status == 200 || r.status == 204, "{q}: {}", r.status);
            r.body.lines().map(str::to_string).collect::<Vec<_>>()
        }
    };
    assert_eq!(list("").await, ["a", "b-1", "b-2", "c-x-y", "d", "s"]);
    assert_eq!(list("?delimiter=-").await, ["a", "b-", "c-", "d", "s"]);
    assert_eq!(list("?prefix=b-").await, ["b-1", "b-2"]);
    assert_eq!(list("?prefix=c-&delimiter=-").await, ["c-x-"]);
    assert_eq!(list("?marker=b-2").await, ["c-x-y", "d", "s"]);
    assert_eq!(list("?end_marker=b-2").await, ["a", "b-1"]);
    assert_eq!(list("?marker=a&end_marker=d&limit=2").await, ["b-1", "b-2"]);
    assert_eq!(list("?reverse=yes&limit=3").await, ["s", "d", "c-x-y"]);
    assert_eq!(
        list("?reverse=true&marker=c&end_marker=a").await,
        ["b-2", "b-1"]
    );
    assert_eq!(list("?prefix=zzz").await, Vec::<String>::new());

    let r = raw(
        env.addr,
        "GET",
        "/sda/0/a?format=json&prefix=b&delimiter=-",
        &[],
    )
    .await;
    assert_eq!(r.body, "[{\"subdir\": \"b-\"}]");
    let r = raw(
        env.addr,
        "GET",
        "/sda/0/a?prefix=c&delimiter=-&limit=5",
        &[("Accept", "application/xml")],
    )
    .await;
    assert_eq!(
        r.body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<account name=\"a\">\n<subdir name=\"c-\" />\n</account>"
    );
    let r = raw(env.addr, "GET", "/sda/0/a?format=xml&prefix=s", &[]).await;
    assert_eq!(
        r.body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<account name=\"a\">\n<container><name>s</name>\
         <count>7</count><bytes>70</bytes><last_modified>2023-11-14T22:13:40.000000</last_modified>\
         <storage_policy>silver</storage_policy></container>\n</account>"
    );

    // Newer stats replace older ones; a deletion report removes the row.
    assert_eq!(report(&env, "a", 30, 0, 3, 33, 0).await.status, 201);
    let r = report(&env, "d", 14, 40, 0, 0, 0).await;
    assert_eq!(r.status, 204);
    let r = raw(env.addr, "HEAD", "/sda/0/a", &[]).await;
    assert_eq!(r.header("X-Account-Container-Count"), Some("5"));
    assert_eq!(r.header("X-Account-Object-Count"), Some("16"));
    assert_eq!(list("?prefix=d").await, Vec::<String>::new());
}

#[tokio::test]
async fn metadata_and_deletion() {
    let env = start().await;
    let r = raw(
        env.addr,
        "PUT",
        "/sda/0/a",
        &[
            ("X-Timestamp", &ts(1)),
            ("X-Account-Meta-Color", "blue"),
            ("X-Account-Sysmeta-Quota", "10"),
            ("X-Container-Meta-Nope", "no"),
        ],
    )
    .await;
    assert_eq!(r.status, 201);
    let r = raw(env.addr, "HEAD", "/sda/0/a", &[]).await;
    assert_eq!(r.header("X-Account-Meta-Color"), Some("blue"));
    assert_eq!(r.header("X-Account-Sysmeta-Quota"), Some("10"));
    assert_eq!(r.header("X-Container-Meta-Nope"), None);
    let r = raw(
        env.addr,
        "POST",
        "/sda/0/a",
        &[
            ("X-Timestamp", &ts(2)),
            ("X-Account-Meta-Shape", "round"),
            ("X-Remove-Account-Meta-Color", "x"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    let r = raw(env.addr, "GET", "/sda/0/a", &[]).await;
    assert_eq!(r.header("X-Account-Meta-Color"), None);
    assert_eq!(r.header("X-Account-Meta-Shape"), Some("round"));
    let r = raw(
        env.addr,
        "POST",
        "/sda/0/a",
        &[("X-Timestamp", &ts(3)), ("X-Account-Meta-Shape", "")],
    )
    .await;
    assert_eq!(r.status, 204);
    let r = raw(env.addr, "HEAD", "/sda/0/a", &[]).await;
    assert_eq!(r.header("X-Account-Meta-Shape"), None);
    let r = raw(
        env.addr,
        "POST",
        "/sda/0/a",
        &[
            ("X-Timestamp", &ts(4)),
            ("X-Account-Meta-Big", &"x".repeat(5000)),
        ],
    )
    .await;
    assert_eq!(r.status, 400);

    // Deletion: the account is marked, and says so.
    assert_eq!(report(&env, "c", 5, 0, 1, 1, 0).await.status, 201);
    let r = raw(env.addr, "DELETE", "/sda/0/a", &[]).await;
    assert_eq!(r.status, 400);
    let r = raw(env.addr, "DELETE", "/sda/0/a", &[("X-Timestamp", &ts(10))]).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("X-Account-Status"), Some("Deleted"));
    let r = raw(env.addr, "HEAD", "/sda/0/a", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("X-Account-Status"), Some("Deleted"));
    let r = raw(env.addr, "GET", "/sda/0/a", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("X-Account-Status"), Some("Deleted"));
    let r = raw(env.addr, "DELETE", "/sda/0/a", &[("X-Timestamp", &ts(11))]).await;
    assert_eq!(r.status, 404);
    let r = raw(env.addr, "POST", "/sda/0/a", &[("X-Timestamp", &ts(12))]).await;
    assert_eq!(r.status, 404);
    let r = raw(env.addr, "PUT", "/sda/0/a", &[("X-Timestamp", &ts(13))]).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("X-Account-Status"), Some("Deleted"));
    assert_eq!(r.body, "Recently deleted");
    // Reports for a deleted account are refused unless overridden.
    assert_eq!(report(&env, "c2", 14, 0, 0, 0, 0).await.status, 404);
    let r = raw(
        env.addr,
        "PUT",
        "/sda/0/a/c3",
        &[
            ("X-Put-Timestamp", &ts(15)),
            ("X-Delete-Timestamp", "0"),
            ("X-Object-Count", "0"),
            ("X-Bytes-Used", "0"),
            ("X-Account-Override-Deleted", "yes"),
        ],
    )
    .await;
    assert_eq!(r.status, 201);
}

/// A report of container `c` (put at `ts(10)`) whose counts were read at
/// `stats` (`X-Apus-Stats-Timestamp`), or without one, as Swift sends it.
async fn stamped_report(env: &Env, c: &str, objects: u64, stats: Option<&str>) -> Resp {
    let (put, count, bytes) = (ts(10), objects.to_string(), (10 * objects).to_string());
    let mut headers = vec![
        ("X-Put-Timestamp", put.as_str()),
        ("X-Delete-Timestamp", "0"),
        ("X-Object-Count", count.as_str()),
        ("X-Bytes-Used", bytes.as_str()),
        ("X-Backend-Storage-Policy-Index", "0"),
    ];
    if let Some(s) = stats {
        headers.push(("X-Apus-Stats-Timestamp", s));
    }
    raw(env.addr, "PUT", &format!("/sda/0/a/{c}"), &headers).await
}

#[tokio::test]
async fn reports_keep_the_newest_stats() {
    let env = start().await;
    raw(env.addr, "PUT", "/sda/0/a", &[("X-Timestamp", &ts(0))]).await;
    let counts = || async {
        let r = raw(env.addr, "HEAD", "/sda/0/a", &[]).await;
        (
            r.header("X-Account-Object-Count").unwrap().to_string(),
            r.header("X-Account-Bytes-Used").unwrap().to_string(),
        )
    };
    let stamp = |n: u64| format!("{}.00000", 1_700_000_000 + n);
    let r = stamped_report(&env, "c", 3, Some(&stamp(50))).await;
    assert_eq!(r.status, 201);
    assert_eq!(counts().await, ("3".to_string(), "30".to_string()));
    // Counts read earlier arrive late: they do not replace newer ones.
    assert_eq!(
        stamped_report(&env, "c", 1, Some(&stamp(40))).await.status,
        201
    );
    assert_eq!(counts().await, ("3".to_string(), "30".to_string()));
    // A sender without the header (Swift's): its counts are as of now,
    // newer than any read in 2023.
    assert_eq!(stamped_report(&env, "c", 5, None).await.status, 201);
    assert_eq!(counts().await, ("5".to_string(), "50".to_string()));
    assert_eq!(
        stamped_report(&env, "c", 2, Some(&stamp(60))).await.status,
        201
    );
    assert_eq!(counts().await, ("5".to_string(), "50".to_string()));
    let r = stamped_report(&env, "c", 2, Some("soon")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Invalid X-Apus-Stats-Timestamp header")
    );
    assert_eq!(counts().await, ("5".to_string(), "50".to_string()));
    env.server.shutdown().await.unwrap();
}
