//! The container server over real sockets: status codes, headers and
//! listings as Swift's container server produces them, and the account
//! updates it sends.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;

use apus_core::{HashConfig, Timestamp};
use apus_db::{AccountBroker, BrokerOptions};
use apus_server::account::AccountServer;
use apus_server::container::ContainerServer;
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
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        req.push_str("Content-Length: 0\r\n");
    }
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
    _server: ServerHandle,
}

fn config(devices: PathBuf) -> DbServerConfig {
    let mut cfg = DbServerConfig::new(devices, HashConfig::new("", "apus-test"));
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
    cfg
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let devices = dir.path().to_path_buf();
    std::fs::create_dir(devices.join("sda")).unwrap();
    let cfg = config(devices.clone());
    let server = ContainerServer::new(cfg.clone())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    Env {
        _dir: dir,
        devices,
        cfg,
        addr: server.addr,
        _server: server,
    }
}

async fn put_obj(env: &Env, name: &str, t: u64, size: u64, ctype: &str) -> Resp {
    let size = size.to_string();
    let t = ts(t);
    raw(
        env.addr,
        "PUT",
        &format!("/sda/0/a/c/{name}"),
        &[
            ("X-Timestamp", &t),
            ("X-Size", &size),
            ("X-Content-Type", ctype),
            ("X-Etag", "d41d8cd98f00b204e9800998ecf8427e"),
            ("X-Backend-Storage-Policy-Index", "0"),
        ],
    )
    .await
}

#[tokio::test]
async fn create_head_and_layout() {
    let env = start().await;
    let r = raw(env.addr, "PUT", "/sda/0/a/c", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("X-Backend-Storage-Policy-Index"), Some("0"));
    let r = raw(env.addr, "PUT", "/sda/0/a/c", &[("X-Timestamp", &ts(2))]).await;
    assert_eq!(r.status, 202);

    // Swift's layout: containers/<part>/<suffix>/<hash>/<hash>.db
    let hash = env.cfg.hash.hash_path("a", Some("c"), None);
    let db = env
        .devices
        .join("sda/containers/0")
        .join(&hash[29..])
        .join(&hash)
        .join(format!("{hash}.db"));
    assert!(db.is_file(), "{db:?}");

    let r = raw(env.addr, "HEAD", "/sda/0/a/c", &[]).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("X-Container-Object-Count"), Some("0"));
    assert_eq!(r.header("X-Container-Bytes-Used"), Some("0"));
    assert_eq!(r.header("X-PUT-Timestamp"), Some(ts(2).as_str()));
    assert!(r.header("X-Timestamp").is_some());
    assert_eq!(r.header("X-Backend-Put-Timestamp"), Some(ts(2).as_str()));
    assert_eq!(r.header("X-Backend-Storage-Policy-Index"), Some("0"));
    assert_eq!(r.header("X-Backend-Sharding-State"), Some("unsharded"));
    assert_eq!(r.header("Content-Length"), Some("0"));
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        r.header("Last-Modified"),
        Some("Tue, 14 Nov 2023 22:13:22 GMT")
    );

    let r = raw(env.addr, "HEAD", "/sda/0/a/nope", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("X-Backend-Put-Timestamp"),
        Some("0000000000.00000")
    );
    assert_eq!(r.header("X-Container-Object-Count"), None);
    let r = raw(env.addr, "GET", "/sda/0/a/nope", &[]).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn bad_requests() {
    let env = start().await;
    // X-Timestamp validation
    let r = raw(env.addr, "PUT", "/sda/0/a/c", &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, "Missing X-Timestamp header");
    let r = raw(env.addr, "PUT", "/sda/0/a/c", &[("X-Timestamp", "nope")]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, "Invalid X-Timestamp header");
    let r = raw(env.addr, "DELETE", "/sda/0/a/c", &[("X-Timestamp", "-1")]).await;
    assert_eq!(r.status, 400);
    // missing device (and a device name quote_plus would change)
    let r = raw(env.addr, "PUT", "/sdz/0/a/c", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 507);
    assert!(r.body.contains("Drive: sdz"), "{}", r.body);
    let r = raw(env.addr, "HEAD", "/sdz/0/a/c", &[]).await;
    assert_eq!(r.status, 507);
    let r = raw(env.addr, "GET", "/sd%20a/0/a/c", &[]).await;
    assert_eq!(r.status, 507);
    // paths
    let r = raw(env.addr, "PUT", "/sda/0/a", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 400);
    let r = raw(env.addr, "POST", "/sda/0/a/c/o", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 400);
    let r = raw(env.addr, "HEAD", "/sda/0/a/c%FF", &[]).await;
    assert_eq!(r.status, 412);
    let r = raw(env.addr, "GET", "/sda/0/a/c%FF", &[]).await;
    assert_eq!(r.body, "Invalid UTF8 or contains NULL");
    let r = raw(env.addr, "GET", "/sda/0/a/c%00d", &[]).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body, "Invalid reserved-namespace container");
    // methods
    let r = raw(env.addr, "COPY", "/sda/0/a/c", &[]).await;
    assert_eq!(r.status, 405);
    let r = raw(env.addr, "OPTIONS", "/sda/0/a/c", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.header("Allow").unwrap().contains("PUT"));
    // policies
    let r = raw(
        env.addr,
        "PUT",
        "/sda/0/a/c",
        &[
            ("X-Timestamp", &ts(1)),
            ("X-Backend-Storage-Policy-Index", "7"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    // listing limit
    raw(env.addr, "PUT", "/sda/0/a/c", &[("X-Timestamp", &ts(1))]).await;
    let r = raw(env.addr, "GET", "/sda/0/a/c?limit=10001", &[]).await;
    assert_eq!(r.status, 412);
    assert_eq!(r.body, "Maximum limit is 10000");
    let r = raw(env.addr, "GET", "/sda/0/a/c?limit=10000&format=json", &[]).await;
    assert_eq!(r.status, 200);
    let r = raw(env.addr, "GET", "/sda/0/a/c?prefix=%FF", &[]).await;
    assert_eq!(r.status, 400);
    let r = raw(env.addr, "GET", "/sda/0/a/c", &[("Accept", "image/png")]).await;
    assert_eq!(r.status, 406);
    let r = raw(env.addr, "GET", "/sda/0/a/c", &[("Accept", "bogus")]).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn object_rows_stats_and_listings() {
    let env = start().await;
    // No container yet: object updates are refused.
    assert_eq!(put_obj(&env, "x", 1, 1, "text/plain").await.status, 404);
    assert_eq!(
        raw(env.addr, "PUT", "/sda/0/a/c", &[("X-Timestamp", &ts(1))])
            .await
            .status,
        201
    );
    for (i, name) in ["a", "b/1", "b/2", "c/x/y", "d", "\u{e9}"]
        .iter()
        .enumerate()
    {
        let enc: String = name
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'/' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let r = put_obj(&env, &enc, 10 + i as u64, 10, "text/plain").await;
        assert_eq!(r.status, 201, "{name}");
    }
    // swift_bytes overrides the size in listings
    let r = put_obj(&env, "e", 20, 0, "application/x-seg;swift_bytes=1234").await;
    assert_eq!(r.status, 201);

    let r = raw(env.addr, "HEAD", "/sda/0/a/c", &[]).await;
    assert_eq!(r.header("X-Container-Object-Count"), Some("7"));
    assert_eq!(r.header("X-Container-Bytes-Used"), Some("60"));

    let r = raw(env.addr, "GET", "/sda/0/a/c?format=json&limit=1", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(r.header("X-Backend-Record-Type"), Some("object"));
    assert_eq!(r.header("X-Container-Object-Count"), Some("7"));
    assert_eq!(
        r.body,
        "[{\"bytes\": 10, \"hash\": \"d41d8cd98f00b204e9800998ecf8427e\", \"name\": \"a\", \
         \"content_type\": \"text/plain\", \"last_modified\": \"2023-11-14T22:13:30.000000\"}]"
    );
    let names = |body: &str| -> Vec<String> { body.lines().map(str::to_string).collect() };
    let list = |q: &'static str| {
        let addr = env.addr;
        async move {
            let r = raw(addr, "GET", &format!("/sda/0/a/c{q}"), &[]).await;
            assert!(r.status == 200 || r.status == 204, "{q}: {}", r.status);
            names(&r.body)
        }
    };
    assert_eq!(
        list("").await,
        ["a", "b/1", "b/2", "c/x/y", "d", "e", "\u{e9}"]
    );
    assert_eq!(
        list("?delimiter=/").await,
        ["a", "b/", "c/", "d", "e", "\u{e9}"]
    );
    assert_eq!(list("?prefix=b/").await, ["b/1", "b/2"]);
    assert_eq!(list("?prefix=c/&delimiter=/").await, ["c/x/"]);
    assert_eq!(list("?path=b").await, ["b/1", "b/2"]);
    assert_eq!(list("?path=c").await, Vec::<String>::new());
    assert_eq!(list("?marker=b/2").await, ["c/x/y", "d", "e", "\u{e9}"]);
    assert_eq!(list("?end_marker=b/2").await, ["a", "b/1"]);
    assert_eq!(
        list("?marker=a&end_marker=d").await,
        ["b/1", "b/2", "c/x/y"]
    );
    assert_eq!(list("?reverse=on&limit=2").await, ["\u{e9}", "e"]);
    assert_eq!(
        list("?reverse=true&marker=c&end_marker=a").await,
        ["b/2", "b/1"]
    );
    assert_eq!(
        list("?reverse=1&delimiter=/&limit=4").await,
        ["\u{e9}", "e", "d", "c/"]
    );
    assert_eq!(list("?prefix=%C3%A9").await, ["\u{e9}"]);
    assert_eq!(list("?prefix=zzz").await, Vec::<String>::new());

    // An empty plain listing is a 204; JSON is always a body.
    let r = raw(env.addr, "GET", "/sda/0/a/c?prefix=zzz", &[]).await;
    assert_eq!(r.status, 204);
    let r = raw(env.addr, "GET", "/sda/0/a/c?prefix=zzz&format=json", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));

    // subdirs and swift_bytes in JSON; non-ASCII escaped as Python does
    let r = raw(
        env.addr,
        "GET",
        "/sda/0/a/c?format=json&delimiter=/&marker=d",
        &[],
    )
    .await;
    assert_eq!(
        r.body,
        "[{\"bytes\": 1234, \"hash\": \"d41d8cd98f00b204e9800998ecf8427e\", \"name\": \"e\", \
         \"content_type\": \"application/x-seg\", \"last_modified\": \"2023-11-14T22:13:40.000000\"}, \
         {\"bytes\": 10, \"hash\": \"d41d8cd98f00b204e9800998ecf8427e\", \"name\": \"\\u00e9\", \
         \"content_type\": \"text/plain\", \"last_modified\": \"2023-11-14T22:13:35.000000\"}]"
    );
    let r = raw(
        env.addr,
        "GET",
        "/sda/0/a/c?format=json&prefix=b&delimiter=/",
        &[],
    )
    .await;
    assert_eq!(r.body, "[{\"subdir\": \"b/\"}]");

    // XML, by format and by Accept
    let r = raw(
        env.addr,
        "GET",
        "/sda/0/a/c?format=xml&prefix=c&delimiter=/",
        &[],
    )
    .await;
    assert_eq!(
        r.body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<container name=\"c\">\
         <subdir name=\"c/\"><name>c/</name></subdir></container>"
    );
    let r = raw(
        env.addr,
        "GET",
        "/sda/0/a/c?limit=1",
        &[("Accept", "text/xml")],
    )
    .await;
    assert_eq!(r.header("Content-Type"), Some("text/xml; charset=utf-8"));
    assert!(r.body.contains("<object><name>a</name><hash>d41d8cd98f00b204e9800998ecf8427e</hash><bytes>10</bytes><content_type>text/plain</content_type><last_modified>2023-11-14T22:13:30.000000</last_modified></object>"), "{}", r.body);
    let r = raw(
        env.addr,
        "GET",
        "/sda/0/a/c?limit=1",
        &[("Accept", "application/json;q=0.9, text/plain;q=0.1")],
    )
    .await;
    assert!(r.body.starts_with("[{"));

    // Object deletes: newer tombstones remove rows, older ones do not.
    let r = raw(
        env.addr,
        "DELETE",
        "/sda/0/a/c/a",
        &[
            ("X-Timestamp", &ts(5)),
            ("X-Backend-Storage-Policy-Index", "0"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(list("?limit=1").await, ["a"]);
    let r = raw(
        env.addr,
        "DELETE",
        "/sda/0/a/c/a",
        &[("X-Timestamp", &ts(50))],
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(list("?limit=1").await, ["b/1"]);
    let r = raw(env.addr, "HEAD", "/sda/0/a/c", &[]).await;
    assert_eq!(r.header("X-Container-Object-Count"), Some("6"));
    assert_eq!(r.header("X-Container-Bytes-Used"), Some("50"));

    // Bad object updates
    let r = raw(
        env.addr,
        "PUT",
        "/sda/0/a/c/z",
        &[
            ("X-Timestamp", &ts(60)),
            ("X-Content-Type", "t"),
            ("X-Etag", "e"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn post_metadata_and_removal() {
    let env = start().await;
    let r = raw(env.addr, "POST", "/sda/0/a/c", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 404);
    let r = raw(
        env.addr,
        "PUT",
        "/sda/0/a/c",
        &[
            ("X-Timestamp", &ts(1)),
            ("X-Container-Meta-Color", "blue"),
            ("X-Container-Read", ".r:*"),
            ("X-Container-Sysmeta-Internal", "x"),
            ("X-Versions-Location", "ignored"),
            ("X-Object-Meta-Nope", "no"),
        ],
    )
    .await;
    assert_eq!(r.status, 201);
    let r = raw(env.addr, "HEAD", "/sda/0/a/c", &[]).await;
    assert_eq!(r.header("X-Container-Meta-Color"), Some("blue"));
    assert_eq!(r.header("X-Container-Read"), Some(".r:*"));
    assert_eq!(r.header("X-Container-Sysmeta-Internal"), Some("x"));
    assert_eq!(r.header("X-Versions-Location"), None);
    assert_eq!(r.header("X-Object-Meta-Nope"), None);

    let r = raw(
        env.addr,
        "POST",
        "/sda/0/a/c",
        &[
            ("X-Timestamp", &ts(2)),
            ("X-Container-Meta-Shape", "round"),
            ("X-Container-Write", "bob"),
            ("X-Remove-Container-Meta-Color", "x"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    let r = raw(env.addr, "GET", "/sda/0/a/c", &[]).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("X-Container-Meta-Color"), None);
    assert_eq!(r.header("X-Container-Meta-Shape"), Some("round"));
    assert_eq!(r.header("X-Container-Write"), Some("bob"));
    // POST moves put_timestamp unless told not to
    assert_eq!(r.header("X-PUT-Timestamp"), Some(ts(2).as_str()));
    let r = raw(
        env.addr,
        "POST",
        "/sda/0/a/c",
        &[
            ("X-Timestamp", &ts(3)),
            ("X-Container-Meta-Shape", ""),
            ("X-Backend-No-Timestamp-Update", "true"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    let r = raw(env.addr, "HEAD", "/sda/0/a/c", &[]).await;
    assert_eq!(r.header("X-Container-Meta-Shape"), None);
    assert_eq!(r.header("X-PUT-Timestamp"), Some(ts(2).as_str()));
    // An older value does not win.
    raw(
        env.addr,
        "POST",
        "/sda/0/a/c",
        &[("X-Timestamp", &ts(1)), ("X-Container-Meta-Shape", "old")],
    )
    .await;
    let r = raw(env.addr, "HEAD", "/sda/0/a/c", &[]).await;
    assert_eq!(r.header("X-Container-Meta-Shape"), None);
    // Too much metadata
    let big = "x".repeat(5000);
    let r = raw(
        env.addr,
        "POST",
        "/sda/0/a/c",
        &[("X-Timestamp", &ts(4)), ("X-Container-Meta-Big", &big)],
    )
    .await;
    assert_eq!(r.status, 400);
    // Sync-to validation
    let r = raw(
        env.addr,
        "POST",
        "/sda/0/a/c",
        &[
            ("X-Timestamp", &ts(5)),
            ("X-Container-Sync-To", "ftp://x/y"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn delete_rules_and_policy_conflicts() {
    let env = start().await;
    let r = raw(env.addr, "DELETE", "/sda/0/a/c", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 404);
    let r = raw(
        env.addr,
        "PUT",
        "/sda/0/a/c",
        &[
            ("X-Timestamp", &ts(1)),
            ("X-Backend-Storage-Policy-Index", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("X-Backend-Storage-Policy-Index"), Some("1"));
    let r = raw(
        env.addr,
        "PUT",
        "/sda/0/a/c",
        &[
            ("X-Timestamp", &ts(2)),
            ("X-Backend-Storage-Policy-Index", "0"),
        ],
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.header("X-Backend-Storage-Policy-Index"), Some("1"));
    // No policy given: keeps the container's.
    let r = raw(env.addr, "PUT", "/sda/0/a/c", &[("X-Timestamp", &ts(3))]).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("X-Backend-Storage-Policy-Index"), Some("1"));

    let r = raw(
        env.addr,
        "PUT",
        "/sda/0/a/c/o",
        &[
            ("X-Timestamp", &ts(4)),
            ("X-Size", "5"),
            ("X-Content-Type", "text/plain"),
            ("X-Etag", "e"),
            ("X-Backend-Storage-Policy-Index", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 201);
    let r = raw(env.addr, "DELETE", "/sda/0/a/c", &[("X-Timestamp", &ts(5))]).await;
    assert_eq!(r.status, 409);
    let r = raw(
        env.addr,
        "DELETE",
        "/sda/0/a/c/o",
        &[
            ("X-Timestamp", &ts(6)),
            ("X-Backend-Storage-Policy-Index", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    // A delete older than the last PUT conflicts.
    let r = raw(env.addr, "DELETE", "/sda/0/a/c", &[("X-Timestamp", &ts(2))]).await;
    assert_eq!(r.status, 409);
    let r = raw(env.addr, "DELETE", "/sda/0/a/c", &[("X-Timestamp", &ts(7))]).await;
    assert_eq!(r.status, 204);
    let r = raw(env.addr, "HEAD", "/sda/0/a/c", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("X-Backend-Delete-Timestamp"), Some(ts(7).as_str()));
    let r = raw(env.addr, "DELETE", "/sda/0/a/c", &[("X-Timestamp", &ts(8))]).await;
    assert_eq!(r.status, 404);
    let r = raw(env.addr, "POST", "/sda/0/a/c", &[("X-Timestamp", &ts(9))]).await;
    assert_eq!(r.status, 404);
    // Re-created in another policy.
    let r = raw(
        env.addr,
        "PUT",
        "/sda/0/a/c",
        &[
            ("X-Timestamp", &ts(10)),
            ("X-Backend-Storage-Policy-Index", "0"),
        ],
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("X-Backend-Storage-Policy-Index"), Some("0"));
}

#[tokio::test]
async fn auto_created_containers() {
    let env = start().await;
    let r = raw(
        env.addr,
        "PUT",
        "/sda/0/.expiring_objects/1700000000/o",
        &[
            ("X-Timestamp", "1700000001.00000_0000000000000001"),
            ("X-Size", "0"),
            ("X-Content-Type", "text/plain"),
            ("X-Etag", "e"),
        ],
    )
    .await;
    assert_eq!(r.status, 201);
    let r = raw(env.addr, "HEAD", "/sda/0/.expiring_objects/1700000000", &[]).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("X-Put-Timestamp"), Some("1700000001.00000"));
    assert_eq!(r.header("X-Container-Object-Count"), Some("1"));
}

async fn start_account(devices: PathBuf) -> ServerHandle {
    AccountServer::new(config(devices))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn account_updates() {
    let env = start().await;
    std::fs::create_dir(env.devices.join("sdb")).unwrap();
    let account = start_account(env.devices.clone()).await;
    let host = account.addr.to_string();
    let upd = |t: String| {
        vec![
            ("X-Timestamp".to_string(), t),
            ("X-Account-Host".to_string(), host.clone()),
            ("X-Account-Partition".to_string(), "3".to_string()),
            ("X-Account-Device".to_string(), "sdb".to_string()),
        ]
    };
    let as_refs = |v: &Vec<(String, String)>| -> Vec<(String, String)> { v.clone() };
    let send = |method: &'static str, path: &'static str, h: Vec<(String, String)>| {
        let addr = env.addr;
        async move {
            let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            raw(addr, method, path, &hs).await
        }
    };

    // The account does not exist yet: every account server says 404.
    let r = send("PUT", "/sda/0/acct/c1", as_refs(&upd(ts(1)))).await;
    assert_eq!(r.status, 404);

    let r = raw(
        account.addr,
        "PUT",
        "/sdb/3/acct",
        &[("X-Timestamp", &ts(0))],
    )
    .await;
    assert_eq!(r.status, 201);
    let before = Timestamp::now();
    let r = send("PUT", "/sda/0/acct/c1", as_refs(&upd(ts(2)))).await;
    assert_eq!(r.status, 202);
    // The report says when the container's stats were read.
    let hash = env.cfg.hash.hash_path("acct", None, None);
    let account_db = env
        .devices
        .join("sdb/accounts/3")
        .join(&hash[29..])
        .join(&hash)
        .join(format!("{hash}.db"));
    let row = AccountBroker::open(&account_db, BrokerOptions::default())
        .unwrap()
        .get_container_row("c1")
        .unwrap()
        .unwrap();
    assert!(
        before <= row.stats_timestamp && row.stats_timestamp <= Timestamp::now(),
        "{row:?}"
    );
    let r = send("PUT", "/sda/0/acct/c2", as_refs(&upd(ts(3)))).await;
    assert_eq!(r.status, 201);
    let r = raw(account.addr, "GET", "/sdb/3/acct?format=json", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        "[{\"name\": \"c1\", \"count\": 0, \"bytes\": 0, \"last_modified\": \"2023-11-14T22:13:22.000000\", \"storage_policy\": \"gold\"}, \
         {\"name\": \"c2\", \"count\": 0, \"bytes\": 0, \"last_modified\": \"2023-11-14T22:13:23.000000\", \"storage_policy\": \"gold\"}]"
    );
    let r = send("DELETE", "/sda/0/acct/c1", as_refs(&upd(ts(4)))).await;
    assert_eq!(r.status, 204);
    let r = raw(account.addr, "GET", "/sdb/3/acct", &[]).await;
    assert_eq!(r.body, "c2\n");
    assert_eq!(r.header("X-Account-Container-Count"), Some("1"));

    // Mismatched hosts and devices
    let mut bad = upd(ts(5));
    bad[3].1 = "sdb,sdc".into();
    let r = send("PUT", "/sda/0/acct/c3", bad).await;
    assert_eq!(r.status, 400);

    // An unreachable account server: the container PUT still succeeds,
    // within the bounded timeouts.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut h = upd(ts(6));
    h[1].1 = dead;
    let started = std::time::Instant::now();
    let r = send("PUT", "/sda/0/acct/c4", h).await;
    assert_eq!(r.status, 201);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn damaged_databases_are_quarantined() {
    let env = start().await;
    let r = raw(env.addr, "PUT", "/sda/0/a/c", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 201);
    let hash = env.cfg.hash.hash_path("a", Some("c"), None);
    let hash_dir = env
        .devices
        .join("sda/containers/0")
        .join(&hash[29..])
        .join(&hash);
    std::fs::write(hash_dir.join(format!("{hash}.db")), vec![0x55u8; 8192]).unwrap();
    let r = raw(env.addr, "HEAD", "/sda/0/a/c", &[]).await;
    assert_eq!(r.status, 500);
    assert!(!hash_dir.exists());
    assert!(env
        .devices
        .join("sda/quarantined/containers")
        .join(&hash)
        .join(format!("{hash}.db"))
        .is_file());
    let r = raw(env.addr, "HEAD", "/sda/0/a/c", &[]).await;
    assert_eq!(r.status, 404);
}

/// Sends one request whose last header value is raw bytes; returns the
/// status and body.
async fn raw_bytes_header(
    addr: SocketAddr,
    method: &str,
    path: &str,
    name: &str,
    value: &[u8],
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\nX-Timestamp: {}\r\n{name}: ",
        ts(5)
    )
    .into_bytes();
    req.extend_from_slice(value);
    req.extend_from_slice(b"\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// Swift's databases keep metadata as JSON text: a value that is not
/// UTF-8 is 400, in any header the server keeps.
#[tokio::test]
async fn non_utf8_metadata_is_refused() {
    let env = start().await;
    let account = start_account(env.devices.clone()).await;
    let r = raw(env.addr, "PUT", "/sda/0/a/c", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 201);
    for (method, name) in [
        ("POST", "X-Container-Meta-Bad"),
        ("POST", "X-Container-Sync-Key"),
        ("POST", "X-Container-Read"),
        ("POST", "X-Container-Sysmeta-Bad"),
        ("PUT", "X-Container-Meta-Bad"),
    ] {
        // (A NUL never gets this far: hyper refuses it, 400.)
        for value in [&b"\xff\xfe"[..], b"caf\xc3"] {
            let (status, body) =
                raw_bytes_header(env.addr, method, "/sda/0/a/c", name, value).await;
            assert_eq!(status, 400, "{method} {name}");
            assert_eq!(
                body, "Metadata must be valid UTF-8",
                "{method} {name} {value:?}"
            );
        }
    }
    let (status, _) = raw_bytes_header(
        env.addr,
        "POST",
        "/sda/0/a/c",
        "X-Container-Meta-Ok",
        "caf\u{e9}".as_bytes(),
    )
    .await;
    assert_eq!(status, 204);
    let r = raw(env.addr, "HEAD", "/sda/0/a/c", &[]).await;
    assert_eq!(r.header("X-Container-Meta-Ok"), Some("caf\u{e9}"));
    assert_eq!(r.header("X-Container-Sync-Key"), None);

    let r = raw(account.addr, "PUT", "/sda/0/a", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 201);
    for method in ["POST", "PUT"] {
        let (status, body) = raw_bytes_header(
            account.addr,
            method,
            "/sda/0/a",
            "X-Account-Meta-Bad",
            b"\xff",
        )
        .await;
        assert_eq!(status, 400, "{method}");
        assert_eq!(body, "Metadata must be valid UTF-8");
    }
}

#[tokio::test]
async fn object_rows_are_recorded_while_the_database_is_locked() {
    let env = start().await;
    let r = raw(env.addr, "PUT", "/sda/0/a/c", &[("X-Timestamp", &ts(1))]).await;
    assert_eq!(r.status, 201);
    assert_eq!(put_obj(&env, "o1", 2, 1, "text/plain").await.status, 201);
    let hash = env.cfg.hash.hash_path("a", Some("c"), None);
    let db = env
        .devices
        .join("sda/containers/0")
        .join(&hash[29..])
        .join(&hash)
        .join(format!("{hash}.db"));
    // Another process holds the database exclusively: reads wait for it
    // (Swift's 25 s broker timeout), object rows need not.
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = std::time::Instant::now();
    assert_eq!(put_obj(&env, "o2", 3, 1, "text/plain").await.status, 201);
    let r = raw(
        env.addr,
        "DELETE",
        "/sda/0/a/c/o1",
        &[
            ("X-Timestamp", &ts(4)),
            ("X-Backend-Storage-Policy-Index", "0"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "object rows waited for the lock: {:?}",
        started.elapsed()
    );
    holder.execute_batch("COMMIT").unwrap();
    let r = raw(env.addr, "GET", "/sda/0/a/c?format=plain", &[]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "o2\n"));
}
