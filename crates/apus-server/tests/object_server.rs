//! The object server on 127.0.0.1 with temp devices, driven by the backend
//! client as a proxy would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use apus_core::{HashConfig, Timestamp};
use apus_diskfile::{read_async_pending, DiskFileManager};
use apus_http::body::collect_limited;
use apus_http::{channel, empty, full, BackendClient, Body, ClientConfig, Handler};
use apus_server::object::ObjectServerConfig;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use md5::{Digest, Md5};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Server {
    addr: String,
    devices: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    client: BackendClient,
    hash: HashConfig,
}

impl Server {
    async fn start() -> Server {
        let devices = tempfile::tempdir().unwrap();
        std::fs::create_dir(devices.path().join("sda")).unwrap();
        let hash = HashConfig::new("", "testsuffix");
        let mut conf = ObjectServerConfig::with_devices(devices.path(), hash.clone());
        conf.diskfile.mount_check = false;
        conf.diskfile.fallocate_reserve = apus_diskfile::FallocateReserve::Bytes(0);
        conf.policies = vec![0, 1];
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
            hash,
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

    async fn put(&self, path: &str, ts: &str, data: &'static [u8], extra: &[(&str, &str)]) -> u16 {
        let len = data.len().to_string();
        let mut h = vec![
            ("x-timestamp", ts),
            ("content-type", "text/plain"),
            ("content-length", len.as_str()),
        ];
        h.extend_from_slice(extra);
        self.req("PUT", path, &h, full(data)).await.0
    }

    fn tmp_files(&self) -> usize {
        std::fs::read_dir(self.devices.path().join("sda").join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
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

fn hv<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn ts(secs: f64) -> String {
    Timestamp::from_secs_f64(secs).unwrap().internal()
}

fn now() -> f64 {
    Timestamp::now().as_secs_f64()
}

#[tokio::test]
async fn put_get_head_round_trip_of_a_streamed_body() {
    let s = Server::start().await;
    const CHUNK: usize = 256 * 1024;
    const CHUNKS: usize = 24; // 6 MiB
    let (tx, body) = channel(2, None);
    tokio::spawn(async move {
        for i in 0..CHUNKS {
            let chunk: Vec<u8> = (0..CHUNK).map(|j| ((i * 7 + j) % 251) as u8).collect();
            if tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
        }
    });
    let mut md5 = Md5::new();
    for i in 0..CHUNKS {
        let chunk: Vec<u8> = (0..CHUNK).map(|j| ((i * 7 + j) % 251) as u8).collect();
        md5.update(&chunk);
    }
    let etag = apus_core::hash::to_hex(&md5.finalize());
    let t1 = ts(now());
    let total = (CHUNK * CHUNKS).to_string();
    let (status, h, _) = s
        .req(
            "PUT",
            "/sda/0/AUTH_a/c/dir/obj%20one",
            &[
                ("x-timestamp", &t1),
                ("content-type", "application/x-test"),
                ("transfer-encoding", "chunked"),
                ("x-object-meta-color", "blue"),
                ("x-object-sysmeta-thing", "s"),
                ("content-disposition", "inline"),
                ("x-unkept-header", "dropped"),
                ("etag", &format!("\"{etag}\"")),
            ],
            body,
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(hv(&h, "etag"), format!("\"{etag}\""));

    let (status, h, data) = s
        .req("GET", "/sda/0/AUTH_a/c/dir/obj%20one", &[], empty())
        .await;
    assert_eq!(status, 200);
    assert_eq!(data.len(), CHUNK * CHUNKS);
    assert_eq!(apus_core::hash::to_hex(&Md5::digest(&data)), etag);
    assert_eq!(hv(&h, "content-length"), total);
    assert_eq!(hv(&h, "content-type"), "application/x-test");
    assert_eq!(hv(&h, "x-object-meta-color"), "blue");
    assert_eq!(hv(&h, "x-object-sysmeta-thing"), "s");
    assert_eq!(hv(&h, "content-disposition"), "inline");
    assert_eq!(hv(&h, "x-unkept-header"), "");
    assert_eq!(hv(&h, "x-backend-timestamp"), t1);
    assert_eq!(hv(&h, "x-backend-data-timestamp"), t1);
    let t1p = Timestamp::parse(&t1).unwrap();
    assert_eq!(hv(&h, "x-timestamp"), t1p.normal());
    assert_eq!(
        hv(&h, "last-modified"),
        apus_core::conditional::format_http_date(t1p.ceil_secs() as i64)
    );

    let (status, h, data) = s
        .req("HEAD", "/sda/0/AUTH_a/c/dir/obj%20one", &[], empty())
        .await;
    assert_eq!(status, 200);
    assert!(data.is_empty());
    assert_eq!(hv(&h, "content-length"), total);
    assert_eq!(s.tmp_files(), 0);
    s.stop().await;
}

#[tokio::test]
async fn ranges() {
    let s = Server::start().await;
    assert_eq!(
        s.put("/sda/1/a/c/r", &ts(now()), b"0123456789", &[]).await,
        201
    );
    let get = |r: &'static str| {
        let s = &s;
        async move { s.req("GET", "/sda/1/a/c/r", &[("range", r)], empty()).await }
    };
    let (st, h, b) = get("bytes=2-4").await;
    assert_eq!((st, &b[..]), (206, &b"234"[..]));
    assert_eq!(hv(&h, "content-range"), "bytes 2-4/10");
    let (st, _, b) = get("bytes=-3").await;
    assert_eq!((st, &b[..]), (206, &b"789"[..]));
    let (st, _, b) = get("bytes=7-").await;
    assert_eq!((st, &b[..]), (206, &b"789"[..]));
    let (st, h, b) = get("bytes=20-30").await;
    assert_eq!(st, 416);
    assert_eq!(hv(&h, "content-range"), "bytes */10");
    assert!(!b.is_empty());
    let (st, _, b) = get("bytes=5-3").await; // invalid: ignored
    assert_eq!((st, &b[..]), (200, &b"0123456789"[..]));
    let (st, h, b) = get("bytes=0-1,8-").await;
    assert_eq!(st, 206);
    let ct = hv(&h, "content-type");
    let boundary = ct.strip_prefix("multipart/byteranges;boundary=").unwrap();
    assert_eq!(boundary.len(), 32);
    let expected = format!(
        "--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n01\r\n\
         --{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n\
         --{boundary}--"
    );
    assert_eq!(std::str::from_utf8(&b).unwrap(), expected);
    assert_eq!(hv(&h, "content-length"), expected.len().to_string());
    s.stop().await;
}

#[tokio::test]
async fn conditional_requests() {
    let s = Server::start().await;
    let t = now() - 100.0;
    assert_eq!(s.put("/sda/1/a/c/o", &ts(t), b"hello", &[]).await, 201);
    let etag = apus_core::hash::to_hex(&Md5::digest(b"hello"));
    let p = "/sda/1/a/c/o";
    let q = format!("\"{etag}\"");
    assert_eq!(s.req("GET", p, &[("if-match", &q)], empty()).await.0, 200);
    assert_eq!(
        s.req("GET", p, &[("if-match", "\"nope\"")], empty())
            .await
            .0,
        412
    );
    assert_eq!(
        s.req("GET", p, &[("if-none-match", &etag)], empty())
            .await
            .0,
        304
    );
    assert_eq!(
        s.req("HEAD", p, &[("if-none-match", "*")], empty()).await.0,
        304
    );
    assert_eq!(
        s.req("GET", p, &[("if-none-match", "\"other\"")], empty())
            .await
            .0,
        200
    );
    let later = apus_core::conditional::format_http_date(t as i64 + 50);
    let earlier = apus_core::conditional::format_http_date(t as i64 - 50);
    assert_eq!(
        s.req("GET", p, &[("if-modified-since", &later)], empty())
            .await
            .0,
        304
    );
    assert_eq!(
        s.req("GET", p, &[("if-modified-since", &earlier)], empty())
            .await
            .0,
        200
    );
    assert_eq!(
        s.req("GET", p, &[("if-unmodified-since", &earlier)], empty())
            .await
            .0,
        412
    );
    assert_eq!(
        s.req("GET", p, &[("if-unmodified-since", &later)], empty())
            .await
            .0,
        200
    );
    assert_eq!(
        s.req("GET", p, &[("if-modified-since", "garbage")], empty())
            .await
            .0,
        200
    );
    // A missing object with If-Match: * is a failed precondition.
    assert_eq!(
        s.req("GET", "/sda/1/a/c/none", &[("if-match", "*")], empty())
            .await
            .0,
        412
    );
    // X-Backend-Etag-Is-At points at another etag.
    let (st, _, _) = s
        .req(
            "GET",
            p,
            &[
                ("if-match", "alt"),
                ("x-backend-etag-is-at", "X-Object-Sysmeta-Alt"),
            ],
            empty(),
        )
        .await;
    assert_eq!(st, 412);
    s.stop().await;
}

#[tokio::test]
async fn post_replaces_metadata() {
    let s = Server::start().await;
    let p = "/sda/1/a/c/o";
    let t = now();
    assert_eq!(
        s.put(
            p,
            &ts(t),
            b"data",
            &[("x-object-meta-a", "1"), ("x-object-sysmeta-keep", "k")]
        )
        .await,
        201
    );
    let (st, h, _) = s
        .req(
            "POST",
            p,
            &[("x-timestamp", &ts(t + 1.0)), ("x-object-meta-b", "2")],
            empty(),
        )
        .await;
    assert_eq!(st, 202);
    assert_eq!(hv(&h, "x-backend-content-type"), "text/plain");
    assert_eq!(hv(&h, "x-object-sysmeta-keep"), "k");
    let (st, h, b) = s.req("GET", p, &[], empty()).await;
    assert_eq!((st, &b[..]), (200, &b"data"[..]));
    assert_eq!(hv(&h, "x-object-meta-a"), "");
    assert_eq!(hv(&h, "x-object-meta-b"), "2");
    assert_eq!(hv(&h, "x-object-sysmeta-keep"), "k");
    assert_eq!(hv(&h, "x-backend-timestamp"), ts(t + 1.0));
    assert_eq!(hv(&h, "x-backend-data-timestamp"), ts(t));
    // An older POST conflicts; a POST to nothing is 404.
    let (st, h, _) = s
        .req(
            "POST",
            p,
            &[("x-timestamp", &ts(t + 0.5)), ("x-object-meta-c", "3")],
            empty(),
        )
        .await;
    assert_eq!(st, 409);
    assert_eq!(hv(&h, "x-backend-timestamp"), ts(t + 1.0));
    let (st, _, _) = s
        .req(
            "POST",
            "/sda/1/a/c/missing",
            &[("x-timestamp", &ts(t))],
            empty(),
        )
        .await;
    assert_eq!(st, 404);
    s.stop().await;
}

#[tokio::test]
async fn delete_tombstones_and_timestamps() {
    let s = Server::start().await;
    let p = "/sda/1/a/c/o";
    let t = now();
    assert_eq!(s.put(p, &ts(t), b"data", &[]).await, 201);
    // Older or equal PUT: 409 with the current timestamp.
    let (st, h, _) = s
        .req(
            "PUT",
            p,
            &[
                ("x-timestamp", &ts(t)),
                ("content-type", "a/b"),
                ("content-length", "1"),
            ],
            full("x"),
        )
        .await;
    assert_eq!(st, 409);
    assert_eq!(hv(&h, "x-backend-timestamp"), ts(t));
    // If-None-Match: * on an existing object.
    let (st, _, _) = s
        .req(
            "PUT",
            p,
            &[
                ("x-timestamp", &ts(t + 5.0)),
                ("content-type", "a/b"),
                ("content-length", "1"),
                ("if-none-match", "*"),
            ],
            full("x"),
        )
        .await;
    assert_eq!(st, 412);
    let (st, h, _) = s
        .req("DELETE", p, &[("x-timestamp", &ts(t + 1.0))], empty())
        .await;
    assert_eq!(st, 204);
    assert_eq!(hv(&h, "x-backend-timestamp"), ts(t + 1.0));
    let (st, h, _) = s.req("GET", p, &[], empty()).await;
    assert_eq!(st, 404);
    assert_eq!(hv(&h, "x-backend-timestamp"), ts(t + 1.0));
    let (st, h, _) = s.req("HEAD", p, &[], empty()).await;
    assert_eq!(st, 404);
    assert_eq!(hv(&h, "x-backend-timestamp"), ts(t + 1.0));
    let (st, _, _) = s
        .req("DELETE", p, &[("x-timestamp", &ts(t + 2.0))], empty())
        .await;
    assert_eq!(st, 404);
    let (st, _, _) = s
        .req(
            "DELETE",
            "/sda/1/a/c/never",
            &[("x-timestamp", &ts(t))],
            empty(),
        )
        .await;
    assert_eq!(st, 404);
    // A PUT over the tombstone with an older timestamp conflicts.
    assert_eq!(s.put(p, &ts(t + 1.5), b"zz", &[]).await, 409);
    assert_eq!(
        s.put(p, &ts(t + 3.0), b"zz", &[("if-none-match", "*")])
            .await,
        201
    );
    // X-If-Delete-At mismatch.
    let (st, _, _) = s
        .req(
            "DELETE",
            p,
            &[("x-timestamp", &ts(t + 4.0)), ("x-if-delete-at", "12345")],
            empty(),
        )
        .await;
    assert_eq!(st, 412);
    s.stop().await;
}

#[tokio::test]
async fn bad_requests() {
    let s = Server::start().await;
    let t = ts(now());
    // ETag mismatch: 422, nothing stored, no temp file left.
    let (st, _, _) = s
        .req(
            "PUT",
            "/sda/1/a/c/bad",
            &[
                ("x-timestamp", &t),
                ("content-type", "a/b"),
                ("content-length", "3"),
                ("etag", "0123456789abcdef0123456789abcdef"),
            ],
            full("abc"),
        )
        .await;
    assert_eq!(st, 422);
    assert_eq!(s.req("GET", "/sda/1/a/c/bad", &[], empty()).await.0, 404);
    assert_eq!(s.tmp_files(), 0);
    // Missing device, bad paths, bad timestamps, unknown policies.
    let (st, _, b) = s.req("GET", "/nodev/1/a/c/o", &[], empty()).await;
    assert_eq!(st, 507);
    assert!(String::from_utf8_lossy(&b).contains("nodev"));
    assert_eq!(s.put("/nodev/1/a/c/o", &t, b"x", &[]).await, 507);
    assert_eq!(s.req("GET", "/sda/1/a/c", &[], empty()).await.0, 400);
    assert_eq!(s.req("GET", "/sda/x/a/c/o", &[], empty()).await.0, 400);
    assert_eq!(s.req("GET", "/sda/1/a/c/%FF", &[], empty()).await.0, 412);
    // NUL starts names of the reserved namespace, and only there: a
    // reserved object lives in a reserved container.
    assert_eq!(s.req("GET", "/sda/1/a/c/%00", &[], empty()).await.0, 400);
    assert_eq!(s.req("GET", "/sda/1/a/c/o%00", &[], empty()).await.0, 400);
    assert_eq!(s.req("GET", "/sda/1/a/%00c/o", &[], empty()).await.0, 400);
    assert_eq!(
        s.req("GET", "/sda/1/a/%00c/%00o", &[], empty()).await.0,
        404
    );
    assert_eq!(
        s.req("PUT", "/sda/1/a/c/o", &[("content-length", "0")], empty())
            .await
            .0,
        400
    );
    assert_eq!(
        s.req(
            "GET",
            "/sda/1/a/c/o",
            &[("x-backend-storage-policy-index", "7")],
            empty()
        )
        .await
        .0,
        503
    );
    assert_eq!(s.req("COPY", "/sda/1/a/c/o", &[], empty()).await.0, 405);
    assert_eq!(
        s.req(
            "PUT",
            "/sda/1/a/c/o",
            &[("x-timestamp", &t), ("content-length", "0")],
            empty()
        )
        .await
        .0,
        400,
        "no content type"
    );
    assert_eq!(
        s.put("/sda/1/a/c/o", &t, b"x", &[("x-delete-at", "1000")])
            .await,
        400,
        "x-delete-at in the past"
    );
    // Policy 1 stores under objects-1.
    assert_eq!(
        s.put(
            "/sda/1/a/c/p1",
            &t,
            b"x",
            &[("x-backend-storage-policy-index", "1")]
        )
        .await,
        201
    );
    assert!(s.devices.path().join("sda/objects-1/1").is_dir());
    assert_eq!(s.req("GET", "/sda/1/a/c/p1", &[], empty()).await.0, 404);
    s.stop().await;
}

#[tokio::test]
async fn client_disconnect_mid_upload_leaves_nothing() {
    let s = Server::start().await;
    let mut conn = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    let head = format!(
        "PUT /sda/1/a/c/cut HTTP/1.1\r\nHost: x\r\nX-Timestamp: {}\r\nContent-Type: a/b\r\nContent-Length: 1048576\r\n\r\n",
        ts(now())
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&vec![b'x'; 300_000]).await.unwrap();
    conn.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(conn);
    // Give the server a moment to notice and clean up.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if s.tmp_files() == 0 {
            ok = true;
            break;
        }
    }
    assert!(ok, "temp file left behind");
    assert_eq!(s.req("GET", "/sda/1/a/c/cut", &[], empty()).await.0, 404);
    s.stop().await;
}

#[tokio::test]
async fn a_small_put_is_held_to_its_declared_size_and_etag() {
    let s = Server::start().await;
    // Chunked, claiming 10 bytes through X-Backend-Obj-Content-Length, and
    // offering 64 MiB: refused as soon as it is past the small-body limit,
    // not read (and gathered) to the end.
    const CHUNKS: usize = 1024;
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (tx, body) = channel(2, None);
    let counter = Arc::clone(&sent);
    let sender = tokio::spawn(async move {
        for _ in 0..CHUNKS {
            if tx.send(Bytes::from(vec![b'x'; 64 * 1024])).await.is_err() {
                return;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let t = ts(now());
    let (status, _, _) = s
        .req(
            "PUT",
            "/sda/0/AUTH_a/c/liar",
            &[
                ("x-timestamp", &t),
                ("content-type", "a/b"),
                ("transfer-encoding", "chunked"),
                ("x-backend-obj-content-length", "10"),
            ],
            body,
        )
        .await;
    assert_eq!(status, 499);
    sender.await.unwrap();
    let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent < CHUNKS, "the whole body was read: {sent} chunks");
    assert_eq!(
        s.req("GET", "/sda/0/AUTH_a/c/liar", &[], empty()).await.0,
        404
    );
    assert_eq!(s.tmp_files(), 0);

    // A small body with the wrong ETag: 422, nothing stored.
    let t = ts(now());
    let wrong = apus_core::hash::to_hex(&Md5::digest(b"other"));
    let status = s
        .put("/sda/0/AUTH_a/c/small", &t, b"hello", &[("etag", &wrong)])
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        s.req("GET", "/sda/0/AUTH_a/c/small", &[], empty()).await.0,
        404
    );
    assert_eq!(s.tmp_files(), 0);
    // And with the right one: stored, and read back.
    let right = apus_core::hash::to_hex(&Md5::digest(b"hello"));
    let status = s
        .put(
            "/sda/0/AUTH_a/c/small",
            &ts(now()),
            b"hello",
            &[("etag", &right)],
        )
        .await;
    assert_eq!(status, 201);
    let (status, _, data) = s.req("GET", "/sda/0/AUTH_a/c/small", &[], empty()).await;
    assert_eq!((status, &data[..]), (200, &b"hello"[..]));
    s.stop().await;
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

#[tokio::test]
async fn container_updates_and_async_pendings() {
    let s = Server::start().await;
    let fake = Arc::new(FakeContainer::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let caddr = listener.local_addr().unwrap().to_string();
    let (ctx, crx) = oneshot::channel::<()>();
    let f2 = fake.clone();
    let ctask = tokio::spawn(async move {
        let _ = apus_http::serve(listener, f2, async {
            let _ = crx.await;
        })
        .await;
    });
    let t = now();
    let upd = [
        ("x-container-host", caddr.as_str()),
        ("x-container-partition", "9"),
        ("x-container-device", "sdc"),
        ("x-trans-id", "tx123"),
    ];
    assert_eq!(s.put("/sda/1/a/c/o%20x", &ts(t), b"hello", &upd).await, 201);
    {
        let seen = fake.seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let (m, p, h) = &seen[0];
        assert_eq!(m, "PUT");
        assert_eq!(p, "/sdc/9/a/c/o%20x");
        assert_eq!(hv(h, "x-size"), "5");
        assert_eq!(hv(h, "x-content-type"), "text/plain");
        assert_eq!(
            hv(h, "x-etag"),
            apus_core::hash::to_hex(&Md5::digest(b"hello"))
        );
        assert_eq!(hv(h, "x-timestamp"), ts(t));
        assert_eq!(hv(h, "x-trans-id"), "tx123");
        assert_eq!(hv(h, "x-backend-storage-policy-index"), "0");
    }
    let (st, _, _) = s
        .req(
            "DELETE",
            "/sda/1/a/c/o%20x",
            &[&upd[..], &[("x-timestamp", &ts(t + 1.0))]].concat(),
            empty(),
        )
        .await;
    assert_eq!(st, 204);
    {
        let seen = fake.seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].0, "DELETE");
        assert_eq!(hv(&seen[1].2, "x-timestamp"), ts(t + 1.0));
    }
    ctx.send(()).unwrap();
    ctask.await.unwrap();

    // The container server is gone: the update is saved as an async pending.
    assert_eq!(
        s.put("/sda/1/a/c/later", &ts(t + 2.0), b"abc", &upd).await,
        201
    );
    let mgr = DiskFileManager::new({
        let mut c = apus_diskfile::DiskFileConfig::new(s.devices.path(), s.hash.clone());
        c.mount_check = false;
        c
    });
    let pendings = mgr.list_async_pendings("sda").unwrap();
    assert_eq!(pendings.len(), 1);
    let saved = read_async_pending(&pendings[0].path).unwrap();
    assert_eq!(saved.op, "PUT");
    assert_eq!(
        (
            saved.account.as_str(),
            saved.container.as_str(),
            saved.obj.as_str()
        ),
        ("a", "c", "later")
    );
    let hget = |k: &str| {
        saved
            .headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(hget("X-Size").as_deref(), Some("3"));
    assert_eq!(hget("X-Timestamp"), Some(ts(t + 2.0)));
    assert_eq!(hget("X-Backend-Storage-Policy-Index").as_deref(), Some("0"));
    assert_eq!(pendings[0].timestamp, ts(t + 2.0));

    // X-Delete-At without queue hosts: the queue entry goes to async pending too.
    let at = ((t as u64) + 3600).to_string();
    let (st, _, _) = s
        .req(
            "PUT",
            "/sda/1/a/c/exp",
            &[
                ("x-timestamp", &ts(t + 3.0)),
                ("content-type", "a/b"),
                ("content-length", "2"),
                ("x-delete-at", &at),
                ("x-delete-at-host", ""),
                ("x-delete-at-container", "0"),
            ],
            full("hi"),
        )
        .await;
    assert_eq!(st, 201);
    let pendings = mgr.list_async_pendings("sda").unwrap();
    let queued: Vec<_> = pendings
        .iter()
        .filter_map(|p| read_async_pending(&p.path).ok())
        .filter(|u| u.account == ".expiring_objects")
        .collect();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].obj, format!("{at:0>10}-a/c/exp"));
    s.stop().await;
}

#[tokio::test]
async fn corrupt_data_aborts_the_body_and_quarantines() {
    let s = Server::start().await;
    assert_eq!(
        s.put("/sda/1/a/c/rot", &ts(now()), b"good data here", &[])
            .await,
        201
    );
    // Flip bytes in the data file, keeping its size.
    let mut data_file = None;
    let mut stack = vec![s.devices.path().join("sda/objects")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "data") {
                data_file = Some(p);
            }
        }
    }
    let data_file = data_file.unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&data_file)
        .unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"BAD", 0).unwrap();
    drop(f);
    // Either the response never completes its headers (the first read
    // already failed) or its body is cut short: never a complete 200.
    let result = s
        .client
        .request(
            Method::GET,
            &s.addr,
            "/sda/1/a/c/rot",
            HeaderMap::new(),
            empty(),
        )
        .await;
    if let Ok(resp) = result {
        assert_eq!(resp.status().as_u16(), 200);
        let body = collect_limited(resp.into_body(), 1 << 20).await;
        assert!(body.is_err(), "body must not complete");
    }
    assert!(s.devices.path().join("sda/quarantined/objects").is_dir());
    assert_eq!(s.req("GET", "/sda/1/a/c/rot", &[], empty()).await.0, 404);
    s.stop().await;
}

/// A PUT as the proxy sends a body it hashed itself: chunked, announced by
/// `X-Backend-Etag-Trailer: crc32`, ending in `Etag` and
/// `X-Backend-Body-Crc32` trailers.
async fn put_proxy_hashed(
    s: &Server,
    path: &str,
    data: &[u8],
    extra: &[(&str, &str)],
    trailers: &[(&str, &str)],
) -> (u16, HeaderMap) {
    let mut head = HeaderMap::new();
    let t = ts(now());
    let len = data.len().to_string();
    for (k, v) in [
        ("x-timestamp", t.as_str()),
        ("content-type", "application/octet-stream"),
        ("x-backend-etag-trailer", "crc32"),
        ("x-backend-obj-content-length", len.as_str()),
        ("trailer", "Etag, X-Backend-Body-Crc32"),
    ]
    .iter()
    .chain(extra)
    {
        head.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let started = apus_http::expect::start(
        &s.addr,
        &Method::PUT,
        path,
        &head,
        None,
        Duration::from_secs(5),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let mut conn = match started {
        apus_http::expect::Started::Continue(conn) => conn,
        apus_http::expect::Started::Final(f) => return (f.status.as_u16(), f.headers),
    };
    for chunk in data.chunks(100_000) {
        conn.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    let mut t = HeaderMap::new();
    for (k, v) in trailers {
        t.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let f = conn.finish_with_trailers(&t).await.unwrap();
    (f.status.as_u16(), f.headers)
}

#[tokio::test]
async fn a_proxy_hashed_put_is_taken_when_the_crc32_agrees() {
    let s = Server::start().await;
    for (name, size) in [("large", 1_000_000usize), ("small", 5_000)] {
        let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let etag = apus_core::hash::to_hex(&Md5::digest(&data));
        let crc = format!("{:08x}", crc32fast::hash(&data));
        let path = format!("/sda/0/AUTH_a/c/{name}");
        let trailers = [
            ("etag", etag.as_str()),
            ("x-backend-body-crc32", crc.as_str()),
        ];

        // One flipped byte on the way: the CRC-32 says so, nothing is kept.
        let mut bent = data.clone();
        bent[size / 2] ^= 1;
        let (status, _) = put_proxy_hashed(&s, &path, &bent, &[], &trailers).await;
        assert_eq!(status, 422, "{name}: a body that is not the proxy's");
        assert_eq!(s.req("GET", &path, &[], empty()).await.0, 404);
        assert_eq!(s.tmp_files(), 0);

        // Without the CRC trailer there is nothing to check against: 400.
        let (status, _) = put_proxy_hashed(&s, &path, &data, &[], &trailers[..1]).await;
        assert_eq!(status, 400, "{name}: no X-Backend-Body-Crc32");
        assert_eq!(s.req("GET", &path, &[], empty()).await.0, 404);

        // A client ETag in the head that is not the proxy's: 422.
        let other = apus_core::hash::to_hex(&Md5::digest(b"other"));
        let (status, _) =
            put_proxy_hashed(&s, &path, &data, &[("etag", other.as_str())], &trailers).await;
        assert_eq!(status, 422, "{name}: the client's ETag differs");
        assert_eq!(s.tmp_files(), 0);

        // The real thing: stored under the proxy's ETag, read back whole
        // (the full read checks the stored CRC-32).
        let (status, headers) =
            put_proxy_hashed(&s, &path, &data, &[("etag", etag.as_str())], &trailers).await;
        assert_eq!(status, 201, "{name}");
        assert_eq!(hv(&headers, "etag"), format!("\"{etag}\""));
        let (status, headers, body) = s.req("GET", &path, &[], empty()).await;
        assert_eq!(status, 200);
        assert_eq!(hv(&headers, "etag").trim_matches('"'), etag);
        assert_eq!(body.len(), size);
        assert!(body[..] == data[..], "{name}: the body read back differs");
    }

    // Any other way of announcing it is refused before the body.
    let (status, _) = put_proxy_hashed(
        &s,
        "/sda/0/AUTH_a/c/x",
        b"abc",
        &[("x-backend-etag-trailer", "md5")],
        &[],
    )
    .await;
    assert_eq!(status, 400);
    s.stop().await;
}
