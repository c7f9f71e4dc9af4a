//! The object server in an erasure-coded policy: fragment PUTs (chunked
//! with trailers, or with a length and every header up front), the commit
//! request, GET/HEAD with fragment preferences, DELETE and REPLICATE.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apus_core::{HashConfig, Timestamp};
use apus_diskfile::pickle::{self, Value};
use apus_http::body::collect_limited;
use apus_http::{empty, full, BackendClient, Body, ClientConfig, Handler};
use apus_server::object::{EcPolicy, ObjectServerConfig};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use md5::{Digest, Md5};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const EC: &str = "1";

struct Server {
    addr: String,
    devices: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    client: BackendClient,
}

impl Server {
    async fn start() -> Server {
        let devices = tempfile::tempdir().unwrap();
        std::fs::create_dir(devices.path().join("sda")).unwrap();
        let hash = HashConfig::new("", "testsuffix");
        let mut conf = ObjectServerConfig::with_devices(devices.path(), hash);
        conf.diskfile.mount_check = false;
        conf.diskfile.fallocate_reserve = apus_diskfile::FallocateReserve::Bytes(0);
        conf.policies = vec![0, 1];
        conf.ec_policies = vec![EcPolicy::new(1, 4, 2)];
        conf.container_update_timeout = Duration::from_secs(2);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            apus_server::object::serve(listener, conf, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Server {
            addr,
            devices,
            stop: Some(tx),
            task: Some(task),
            client: BackendClient::new(ClientConfig::default()),
        }
    }

    async fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> (u16, HeaderMap, Bytes) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let resp = self
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                &self.addr,
                path,
                map,
                body,
            )
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = collect_limited(resp.into_body(), 64 << 20).await.unwrap();
        (status, headers, body)
    }

    /// A chunked PUT written by hand, so that it can end with trailers.
    async fn put_chunked(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        chunks: &[&[u8]],
        trailers: &[(&str, &str)],
    ) -> (u16, String) {
        let mut msg = format!(
            "PUT {path} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n",
            self.addr
        )
        .into_bytes();
        for (k, v) in headers {
            msg.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        msg.extend_from_slice(b"\r\n");
        for c in chunks {
            msg.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            msg.extend_from_slice(c);
            msg.extend_from_slice(b"\r\n");
        }
        msg.extend_from_slice(b"0\r\n");
        for (k, v) in trailers {
            msg.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        msg.extend_from_slice(b"\r\n");
        let mut sock = TcpStream::connect(&self.addr).await.unwrap();
        sock.write_all(&msg).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut out))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap();
        (status, text)
    }

    /// Every file name under the EC policy's partitions.
    fn ec_files(&self) -> Vec<String> {
        fn walk(dir: &Path, out: &mut Vec<String>) {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.devices.path().join("sda").join("objects-1"), &mut out);
        out.retain(|n| !n.starts_with("hashes") && n != ".lock");
        out.sort();
        out
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// A fake container server recording what it receives.
#[derive(Default)]
struct FakeContainer {
    seen: Mutex<Vec<(String, String, HeaderMap)>>,
}

impl Handler for FakeContainer {
    async fn call(&self, req: Request<Incoming>) -> Response<Body> {
        self.seen.lock().unwrap().push((
            req.method().to_string(),
            req.uri().path().to_string(),
            req.headers().clone(),
        ));
        let mut r = Response::new(empty());
        *r.status_mut() = http::StatusCode::CREATED;
        r
    }
}

async fn fake_container() -> (Arc<FakeContainer>, String, oneshot::Sender<()>) {
    let fake = Arc::new(FakeContainer::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = oneshot::channel::<()>();
    let f2 = fake.clone();
    tokio::spawn(async move {
        let _ = apus_http::serve(listener, f2, async {
            let _ = rx.await;
        })
        .await;
    });
    (fake, addr, tx)
}

fn hv<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn ts(secs: f64) -> String {
    Timestamp::from_secs_f64(secs).unwrap().internal()
}

fn now() -> f64 {
    Timestamp::now().as_secs_f64()
}

fn md5hex(b: &[u8]) -> String {
    apus_core::hash::to_hex(&Md5::digest(b))
}

#[tokio::test]
async fn chunked_fragment_put_with_trailers_then_commit_then_get() {
    let s = Server::start().await;
    let (fake, caddr, cstop) = fake_container().await;
    let t = ts(now());
    let archive: &[u8] = b"fragment archive number two";
    let object_etag = md5hex(b"the whole object");
    let path = "/sda/3/a/c/o";
    let head = [
        ("x-backend-storage-policy-index", EC),
        ("x-timestamp", t.as_str()),
        ("x-object-sysmeta-ec-frag-index", "2"),
        ("content-type", "text/plain"),
        ("x-object-meta-color", "blue"),
        ("x-container-host", caddr.as_str()),
        ("x-container-partition", "9"),
        ("x-container-device", "sdc"),
    ];
    let archive_etag = md5hex(archive);
    let trailers = [
        ("X-Object-Sysmeta-Ec-Etag", object_etag.as_str()),
        ("X-Object-Sysmeta-Ec-Content-Length", "16"),
        ("Etag", archive_etag.as_str()),
    ];
    let (st, resp) = s
        .put_chunked(path, &head, &[&archive[..10], &archive[10..]], &trailers)
        .await;
    assert_eq!(st, 201, "{resp}");
    assert!(resp.contains("x-backend-durable: no"), "{resp}");
    assert_eq!(s.ec_files(), vec![format!("{t}#2.data")]);
    assert!(
        fake.seen.lock().unwrap().is_empty(),
        "no update before the commit"
    );

    // Not durable: a plain GET finds nothing (a bare 404, as Swift)...
    let pol = [("x-backend-storage-policy-index", EC)];
    let (st, h, _) = s.req("GET", path, &pol, empty()).await;
    assert_eq!(st, 404);
    assert_eq!(hv(&h, "x-backend-timestamp"), "");
    // ...but fragment preferences accept a non-durable fragment.
    let prefs = [
        ("x-backend-storage-policy-index", EC),
        ("x-backend-fragment-preferences", "[]"),
    ];
    let (st, h, body) = s.req("GET", path, &prefs, empty()).await;
    assert_eq!(st, 200);
    assert_eq!(&body[..], archive);
    assert_eq!(hv(&h, "x-backend-durable-timestamp"), "");
    assert_eq!(hv(&h, "x-backend-data-timestamp"), t);

    // The commit.
    let commit = [
        ("x-backend-storage-policy-index", EC),
        ("x-timestamp", t.as_str()),
        ("x-object-sysmeta-ec-frag-index", "2"),
        ("x-backend-ec-commit", "yes"),
        ("x-container-host", caddr.as_str()),
        ("x-container-partition", "9"),
        ("x-container-device", "sdc"),
    ];
    let (st, _, _) = s.req("PUT", path, &commit, empty()).await;
    assert_eq!(st, 201);
    assert_eq!(s.ec_files(), vec![format!("{t}#2#d.data")]);
    {
        let seen = fake.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (m, p, h) = &seen[0];
        assert_eq!(m, "PUT");
        assert_eq!(p, "/sdc/9/a/c/o");
        assert_eq!(hv(h, "x-size"), "16");
        assert_eq!(hv(h, "x-etag"), object_etag);
        assert_eq!(hv(h, "x-timestamp"), t);
        assert_eq!(hv(h, "x-content-type"), "text/plain");
        assert_eq!(hv(h, "x-backend-storage-policy-index"), EC);
    }

    for method in ["GET", "HEAD"] {
        let (st, h, body) = s.req(method, path, &pol, empty()).await;
        assert_eq!(st, 200, "{method}");
        if method == "GET" {
            assert_eq!(&body[..], archive);
        }
        assert_eq!(hv(&h, "content-length"), archive.len().to_string());
        assert_eq!(hv(&h, "etag"), format!("\"{archive_etag}\""));
        assert_eq!(hv(&h, "x-object-sysmeta-ec-etag"), object_etag);
        assert_eq!(hv(&h, "x-object-sysmeta-ec-content-length"), "16");
        assert_eq!(hv(&h, "x-object-sysmeta-ec-frag-index"), "2");
        assert_eq!(hv(&h, "x-object-meta-color"), "blue");
        assert_eq!(hv(&h, "x-backend-durable-timestamp"), t);
        assert_eq!(hv(&h, "x-backend-data-timestamp"), t);
        assert_eq!(hv(&h, "x-backend-fragments"), format!("{{\"{t}\":[2]}}"));
    }
    // A range is a range of the archive.
    let (st, _, body) = s
        .req("GET", path, &[pol[0], ("range", "bytes=0-7")], empty())
        .await;
    assert_eq!(st, 206);
    assert_eq!(&body[..], &archive[..8]);
    let _ = cstop.send(());
    s.stop().await;
}

#[tokio::test]
async fn put_with_length_and_headers_up_front() {
    let s = Server::start().await;
    let t = ts(now());
    let archive: &'static [u8] = b"0123456789";
    let len = archive.len().to_string();
    let etag = md5hex(archive);
    let path = "/sda/3/a/c/o2";
    let head = |e: &str| {
        vec![
            ("x-backend-storage-policy-index".to_string(), EC.to_string()),
            ("x-timestamp".to_string(), t.clone()),
            (
                "x-object-sysmeta-ec-frag-index".to_string(),
                "0".to_string(),
            ),
            ("content-type".to_string(), "application/x".to_string()),
            ("content-length".to_string(), len.clone()),
            ("x-object-sysmeta-ec-etag".to_string(), md5hex(b"obj")),
            (
                "x-object-sysmeta-ec-content-length".to_string(),
                "3".to_string(),
            ),
            ("etag".to_string(), e.to_string()),
        ]
    };
    let as_refs = |v: &[(String, String)]| -> Vec<(String, String)> { v.to_vec() };
    // A wrong archive etag: 422 and nothing on disk.
    let bad = as_refs(&head(&md5hex(b"other")));
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (st, _, _) = s.req("PUT", path, &bad, full(archive)).await;
    assert_eq!(st, 422);
    assert!(s.ec_files().is_empty());

    // A commit of a fragment that is not there: 404, nothing changes.
    let commit = [
        ("x-backend-storage-policy-index", EC),
        ("x-timestamp", t.as_str()),
        ("x-object-sysmeta-ec-frag-index", "0"),
        ("x-backend-ec-commit", "yes"),
    ];
    assert_eq!(s.req("PUT", path, &commit, empty()).await.0, 404);
    assert!(s.ec_files().is_empty());

    let good = head(&etag);
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (st, h, _) = s.req("PUT", path, &good, full(archive)).await;
    assert_eq!(st, 201);
    assert_eq!(hv(&h, "x-backend-durable"), "no");
    assert_eq!(s.ec_files(), vec![format!("{t}#0.data")]);
    assert_eq!(s.req("PUT", path, &commit, empty()).await.0, 201);
    assert_eq!(s.ec_files(), vec![format!("{t}#0#d.data")]);
    // Committing again is harmless.
    assert_eq!(s.req("PUT", path, &commit, empty()).await.0, 201);
    let (st, h, body) = s
        .req(
            "GET",
            path,
            &[("x-backend-storage-policy-index", EC)],
            empty(),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(&body[..], archive);
    assert_eq!(hv(&h, "x-object-sysmeta-ec-content-length"), "3");

    // DELETE: a tombstone, then 404 with its timestamp.
    let t2 = ts(now() + 1.0);
    let (st, _, _) = s
        .req(
            "DELETE",
            path,
            &[("x-backend-storage-policy-index", EC), ("x-timestamp", &t2)],
            empty(),
        )
        .await;
    assert_eq!(st, 204);
    assert_eq!(s.ec_files(), vec![format!("{t2}.ts")]);
    let (st, h, _) = s
        .req(
            "GET",
            path,
            &[("x-backend-storage-policy-index", EC)],
            empty(),
        )
        .await;
    assert_eq!(st, 404);
    assert_eq!(hv(&h, "x-backend-timestamp"), t2);
    s.stop().await;
}

async fn put_and_commit(s: &Server, path: &str, t: &str, index: &str, data: &'static [u8]) {
    let len = data.len().to_string();
    let h = [
        ("x-backend-storage-policy-index", EC),
        ("x-timestamp", t),
        ("x-object-sysmeta-ec-frag-index", index),
        ("x-backend-ssync-frag-index", index),
        ("content-type", "text/plain"),
        ("content-length", len.as_str()),
    ];
    assert_eq!(s.req("PUT", path, &h, full(data)).await.0, 201);
    let c = [
        ("x-backend-storage-policy-index", EC),
        ("x-timestamp", t),
        ("x-object-sysmeta-ec-frag-index", index),
        ("x-backend-ec-commit", "yes"),
    ];
    assert_eq!(s.req("PUT", path, &c, empty()).await.0, 201);
}

#[tokio::test]
async fn a_handoff_with_two_indexes_and_fragment_preferences() {
    let s = Server::start().await;
    let t = ts(now());
    let path = "/sda/3/a/c/h";
    put_and_commit(&s, path, &t, "1", b"index one").await;
    put_and_commit(&s, path, &t, "3", b"index three").await;
    assert_eq!(
        s.ec_files(),
        vec![format!("{t}#1#d.data"), format!("{t}#3#d.data")]
    );
    let pol = ("x-backend-storage-policy-index", EC);
    let (st, h, _) = s.req("HEAD", path, &[pol], empty()).await;
    assert_eq!(st, 200);
    assert_eq!(hv(&h, "x-backend-fragments"), format!("{{\"{t}\":[1,3]}}"));
    let exclude3 = format!("[{{\"timestamp\": \"{t}\", \"exclude\": [3]}}]");
    let (st, h, body) = s
        .req(
            "GET",
            path,
            &[pol, ("x-backend-fragment-preferences", &exclude3)],
            empty(),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(&body[..], b"index one");
    assert_eq!(hv(&h, "x-object-sysmeta-ec-frag-index"), "1");
    let exclude1 = format!("[{{\"timestamp\": \"{t}\", \"exclude\": [1]}}]");
    let (_, _, body) = s
        .req(
            "GET",
            path,
            &[pol, ("x-backend-fragment-preferences", &exclude1)],
            empty(),
        )
        .await;
    assert_eq!(&body[..], b"index three");
    let (_, _, body) = s
        .req(
            "GET",
            path,
            &[pol, ("x-backend-ssync-frag-index", "1")],
            empty(),
        )
        .await;
    assert_eq!(&body[..], b"index one");

    // REPLICATE answers per-index hashes for the EC partition.
    let (st, _, body) = s.req("REPLICATE", "/sda/3", &[pol], empty()).await;
    assert_eq!(st, 200);
    let Value::Dict(items) = pickle::loads(&body).unwrap() else {
        panic!("not a dict");
    };
    assert_eq!(items.len(), 1);
    let Value::Dict(per_index) = &items[0].1 else {
        panic!("not per-index hashes: {:?}", items[0].1);
    };
    let mut keys: Vec<String> = per_index.iter().map(|(k, _)| format!("{k:?}")).collect();
    keys.sort();
    // One hash per fragment index, and None for the durable names.
    assert_eq!(keys, vec!["Int(1)", "Int(3)", "None"]);
    s.stop().await;
}

#[tokio::test]
async fn bad_input() {
    let s = Server::start().await;
    let t = ts(now());
    let path = "/sda/3/a/c/bad";
    let put = |fi: &'static str| {
        vec![
            ("x-backend-storage-policy-index", EC),
            ("x-object-sysmeta-ec-frag-index", fi),
            ("content-type", "text/plain"),
            ("content-length", "1"),
        ]
    };
    for fi in ["6", "-1", "x", ""] {
        let mut h = put(fi);
        h.push(("x-timestamp", &t));
        assert_eq!(s.req("PUT", path, &h, full("a")).await.0, 400, "{fi:?}");
    }
    // No fragment index at all.
    let h = [
        ("x-backend-storage-policy-index", EC),
        ("x-timestamp", t.as_str()),
        ("content-type", "text/plain"),
        ("content-length", "1"),
    ];
    assert_eq!(s.req("PUT", path, &h, full("a")).await.0, 400);
    // A commit without a fragment index, or with a body.
    let c = [
        ("x-backend-storage-policy-index", EC),
        ("x-timestamp", t.as_str()),
        ("x-backend-ec-commit", "yes"),
    ];
    assert_eq!(s.req("PUT", path, &c, empty()).await.0, 400);
    let c = [
        ("x-backend-storage-policy-index", EC),
        ("x-timestamp", t.as_str()),
        ("x-object-sysmeta-ec-frag-index", "1"),
        ("x-backend-ec-commit", "yes"),
        ("content-length", "1"),
    ];
    assert_eq!(s.req("PUT", path, &c, full("a")).await.0, 400);
    // Trailers: a malformed length, a differing index, a name not allowed.
    let head = [
        ("x-backend-storage-policy-index", EC),
        ("x-timestamp", t.as_str()),
        ("x-object-sysmeta-ec-frag-index", "1"),
        ("content-type", "text/plain"),
    ];
    for trailer in [
        ("X-Object-Sysmeta-Ec-Content-Length", "many"),
        ("X-Object-Sysmeta-Ec-Frag-Index", "2"),
        ("Content-Type", "text/html"),
    ] {
        let (st, resp) = s.put_chunked(path, &head, &[b"abc"], &[trailer]).await;
        assert_eq!(st, 400, "{trailer:?}: {resp}");
    }
    assert!(s.ec_files().is_empty());
    // Bad fragment preferences or GET index.
    for (k, v) in [
        ("x-backend-fragment-preferences", "{\"a\": 1}"),
        (
            "x-backend-fragment-preferences",
            "[{\"timestamp\": \"x\", \"exclude\": []}]",
        ),
        ("x-backend-ssync-frag-index", "9"),
    ] {
        let (st, _, _) = s
            .req(
                "GET",
                path,
                &[("x-backend-storage-policy-index", EC), (k, v)],
                empty(),
            )
            .await;
        assert_eq!(st, 400, "{k}: {v}");
    }
    s.stop().await;
}

/// The hash directory name of `/a/c/<obj>` under this server's hash
/// settings, read back from the file the PUT wrote.
fn hash_of(s: &Server, part: u32) -> String {
    let part_dir = s.devices.path().join(format!("sda/objects-1/{part}"));
    for suffix in std::fs::read_dir(part_dir).unwrap() {
        let suffix = suffix.unwrap().path();
        if suffix.is_dir() {
            let hash = std::fs::read_dir(suffix).unwrap().next().unwrap().unwrap();
            return hash.file_name().into_string().unwrap();
        }
    }
    panic!("no hash dir");
}

#[tokio::test]
async fn missing_check_and_replicated_fragments() {
    let s = Server::start().await;
    let t = ts(now());
    let path = "/sda/5/a/c/r";
    let pol = ("x-backend-storage-policy-index", EC);
    // A replicated fragment PUT is durable at once and needs no commit.
    let h = [
        pol,
        ("x-timestamp", t.as_str()),
        ("x-object-sysmeta-ec-frag-index", "2"),
        ("x-backend-ssync-frag-index", "2"),
        ("x-backend-replication", "True"),
        ("content-type", "text/plain"),
        ("content-length", "4"),
    ];
    let (st, rh, _) = s.req("PUT", path, &h, full(&b"frag"[..])).await;
    assert_eq!(st, 201);
    assert_eq!(hv(&rh, "x-backend-durable"), "yes");
    assert_eq!(s.ec_files(), vec![format!("{t}#2#d.data")]);
    // X-Backend-No-Commit keeps one non-durable (in another partition:
    // beside a durable fragment of its timestamp it would count as
    // durable, as in Swift).
    let mut nc = h.to_vec();
    nc[2] = ("x-object-sysmeta-ec-frag-index", "4");
    nc[3] = ("x-backend-ssync-frag-index", "4");
    nc.push(("x-backend-no-commit", "True"));
    let (st, rh, _) = s.req("PUT", "/sda/6/a/c/r", &nc, full(&b"frag"[..])).await;
    assert_eq!(st, 201);
    assert_eq!(hv(&rh, "x-backend-durable"), "no");
    assert_eq!(
        s.ec_files(),
        vec![format!("{t}#2#d.data"), format!("{t}#4.data")]
    );

    let hash = hash_of(&s, 5);
    let check = |index: &'static str, line: String| check_in(&s, "/sda/5", index, line);
    let check6 = |index: &'static str, line: String| check_in(&s, "/sda/6", index, line);

    // Index 2 is held at this timestamp; index 0 is wanted.
    assert_eq!(check("2", format!("{hash} {t}")).await, "");
    assert_eq!(
        check("0", format!("{hash} {t}")).await,
        format!("{hash} dm\n")
    );
    // A newer timestamp is wanted whatever the index.
    let t2 = ts(now() + 1.0);
    assert_eq!(
        check("2", format!("{hash} {t2}")).await,
        format!("{hash} dm\n")
    );
    // Index 4 is held non-durable: offered non-durable, not wanted again;
    // offered durable, the durable mark is added instead.
    assert_eq!(check6("4", format!("{hash} {t} durable:False")).await, "");
    assert_eq!(s.ec_files()[1], format!("{t}#4.data"));
    assert_eq!(check6("4", format!("{hash} {t}")).await, "");
    assert_eq!(
        s.ec_files(),
        vec![format!("{t}#2#d.data"), format!("{t}#4#d.data")]
    );
    // An EC missing check must name a valid index.
    for bad in [None, Some("6"), Some("x")] {
        let mut headers = vec![pol, ("x-apus-missing-check", "true")];
        if let Some(b) = bad {
            headers.push(("x-backend-ssync-frag-index", b));
        }
        let line = format!("{hash} {t}");
        let (st, _, _) = s.req("REPLICATE", "/sda/5", &headers, full(line)).await;
        assert_eq!(st, 400, "{bad:?}");
    }
    s.stop().await;
}

async fn check_in(s: &Server, part_path: &str, index: &str, line: String) -> String {
    let len = line.len().to_string();
    let (st, _, body) = s
        .req(
            "REPLICATE",
            part_path,
            &[
                ("x-backend-storage-policy-index", EC),
                ("x-apus-missing-check", "true"),
                ("x-backend-ssync-frag-index", index),
                ("content-length", len.as_str()),
            ],
            full(line),
        )
        .await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    String::from_utf8(body.to_vec()).unwrap()
}

/// An overwrite with a new X-Delete-At queues the new expiry and removes
/// the replaced object's, at its commit.
#[tokio::test]
async fn a_commit_replaces_the_old_objects_expiry_entry() {
    let s = Server::start().await;
    let (fake, caddr, cstop) = fake_container().await;
    let path = "/sda/4/a/c/x";
    let put = |t: String, delete_at: &'static str| {
        let s = &s;
        let caddr = caddr.clone();
        async move {
            let headers = [
                ("x-backend-storage-policy-index", EC),
                ("x-timestamp", t.as_str()),
                ("x-object-sysmeta-ec-frag-index", "1"),
                ("content-type", "text/plain"),
                ("content-length", "4"),
                ("x-delete-at", delete_at),
                ("x-delete-at-host", caddr.as_str()),
                ("x-delete-at-partition", "3"),
                ("x-delete-at-device", "sdq"),
                ("x-delete-at-container", "0"),
            ];
            assert_eq!(
                s.req("PUT", path, &headers, full(&b"frag"[..])).await.0,
                201
            );
            let commit = [
                ("x-backend-storage-policy-index", EC),
                ("x-timestamp", t.as_str()),
                ("x-object-sysmeta-ec-frag-index", "1"),
                ("x-backend-ec-commit", "yes"),
                ("x-delete-at-host", caddr.as_str()),
                ("x-delete-at-partition", "3"),
                ("x-delete-at-device", "sdq"),
                ("x-delete-at-container", "0"),
            ];
            assert_eq!(s.req("PUT", path, &commit, empty()).await.0, 201);
        }
    };
    put(ts(now()), "9999999990").await;
    put(ts(now() + 1.0), "9999999999").await;
    let seen: Vec<(String, String)> = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    let entry = |ts: &str| {
        seen.iter()
            .filter(|(_, p)| p.contains(&format!("/{ts}-a/c/x")))
            .map(|(m, _)| m.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(entry("9999999990"), ["PUT"], "{seen:?}");
    assert_eq!(entry("9999999999"), ["PUT"], "{seen:?}");
    // The old entry's DELETE has no host to go to (its queue container is
    // not known any more): it waits as an async pending, as in Swift.
    let mut conf =
        apus_diskfile::DiskFileConfig::new(s.devices.path(), HashConfig::new("", "testsuffix"));
    conf.mount_check = false;
    let mgr = apus_diskfile::DiskFileManager::new(conf);
    let removals: Vec<_> = mgr
        .list_async_pendings("sda")
        .unwrap()
        .iter()
        .filter_map(|p| apus_diskfile::read_async_pending(&p.path).ok())
        .filter(|u| u.account == ".expiring_objects")
        .map(|u| (u.op.clone(), u.obj.clone()))
        .collect();
    assert_eq!(
        removals,
        [("DELETE".to_string(), "9999999990-a/c/x".to_string())]
    );
    let _ = cstop.send(());
    s.stop().await;
}
