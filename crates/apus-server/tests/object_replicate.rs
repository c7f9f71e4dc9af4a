//! The object server's REPLICATE verb: suffix hashes as Swift serves
//! them, the missing check, and replication writes that keep their
//! timestamps.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use apus_core::{HashConfig, Timestamp};
use apus_diskfile::pickle::{self, Value};
use apus_http::body::collect_limited;
use apus_http::{empty, full, BackendClient, Body, ClientConfig};
use apus_proto::replication::{self as repl, MissingLine};
use apus_server::object::ObjectServerConfig;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Server {
    addr: String,
    devices: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = apus_server::object::serve(listener, conf, async {
                let _ = rx.await;
            })
            .await;
        });
        Server {
            addr,
            devices,
            stop: Some(tx),
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
        let body = collect_limited(resp.into_body(), 16 << 20).await.unwrap();
        (status, headers, body)
    }

    async fn put(&self, obj: &str, ts: &Timestamp, data: &'static [u8]) -> u16 {
        let len = data.len().to_string();
        let ts = ts.internal();
        let h = [
            ("x-timestamp", ts.as_str()),
            ("content-type", "text/plain"),
            ("content-length", len.as_str()),
        ];
        self.req("PUT", &format!("/sda/0/a/c/{obj}"), &h, full(data))
            .await
            .0
    }

    fn hash_of(&self, obj: &str) -> String {
        self.hash.hash_path("a", Some("c"), Some(obj))
    }

    async fn missing_check(&self, body: String) -> (u16, String) {
        let len = body.len().to_string();
        let (status, _, answer) = self
            .req(
                "REPLICATE",
                "/sda/0",
                &[
                    ("x-apus-missing-check", "true"),
                    ("content-length", len.as_str()),
                ],
                full(body),
            )
            .await;
        (status, String::from_utf8(answer.to_vec()).unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn ts(secs: f64) -> Timestamp {
    Timestamp::from_secs_f64(secs).unwrap()
}

fn now() -> f64 {
    Timestamp::now().as_secs_f64()
}

fn dict(body: &[u8]) -> Vec<(String, Option<String>)> {
    let Value::Dict(items) = pickle::loads(body).unwrap() else {
        panic!("not a dict");
    };
    items
        .into_iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_string(),
                v.as_str().map(str::to_string),
            )
        })
        .collect()
}

#[tokio::test]
async fn replicate_answers_suffix_hashes_like_swift() {
    let s = Server::start().await;
    // No partition yet: an empty dict.
    let (status, _, body) = s.req("REPLICATE", "/sda/0", &[], empty()).await;
    assert_eq!(status, 200);
    assert!(dict(&body).is_empty());

    assert_eq!(s.put("o1", &ts(now() - 10.0), b"hello").await, 201);
    let (status, _, body) = s.req("REPLICATE", "/sda/0", &[], empty()).await;
    assert_eq!(status, 200);
    let got = dict(&body);
    let suffix = s.hash_of("o1")[29..].to_string();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, suffix);
    // The same value the disk layer computes (and Swift would).
    let expected = apus_diskfile::get_hashes(
        &s.devices.path().join("sda/objects/0"),
        &[],
        apus_diskfile::DEFAULT_RECLAIM_AGE,
        0,
    )
    .unwrap();
    assert_eq!(got[0].1, expected[&suffix]);
    assert_eq!(got[0].1.as_ref().map(String::len), Some(32));

    // Naming suffixes marks them for rehashing and answers None (2.38).
    let (status, _, body) = s
        .req(
            "REPLICATE",
            &format!("/sda/0/{suffix}-fff-zzz"),
            &[],
            empty(),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(pickle::loads(&body).unwrap(), Value::None);
    let inv =
        std::fs::read_to_string(s.devices.path().join("sda/objects/0/hashes.invalid")).unwrap();
    assert_eq!(inv, format!("{suffix}\nfff\n"));

    // Other policies have their own directories.
    let (status, _, body) = s
        .req(
            "REPLICATE",
            "/sda/0",
            &[("x-backend-storage-policy-index", "1")],
            empty(),
        )
        .await;
    assert_eq!(status, 200);
    assert!(dict(&body).is_empty());
}

#[tokio::test]
async fn replicate_refuses_missing_devices_bad_paths_and_policies() {
    let s = Server::start().await;
    assert_eq!(s.req("REPLICATE", "/sdz/0", &[], empty()).await.0, 507);
    assert_eq!(s.req("REPLICATE", "/sda", &[], empty()).await.0, 400);
    assert_eq!(s.req("REPLICATE", "/sda/x", &[], empty()).await.0, 400);
    let policy = [("x-backend-storage-policy-index", "7")];
    assert_eq!(s.req("REPLICATE", "/sda/0", &policy, empty()).await.0, 503);
    let mc = [("x-apus-missing-check", "true")];
    assert_eq!(s.req("REPLICATE", "/sdz/0", &mc, empty()).await.0, 507);
}

#[tokio::test]
async fn missing_check_wants_what_is_missing_or_older() {
    let s = Server::start().await;
    let base = now() - 100.0;
    let (t1, t2, t3) = (ts(base), ts(base + 1.0), ts(base + 2.0));
    assert_eq!(s.put("same", &t1, b"x").await, 201);
    assert_eq!(s.put("older", &t1, b"x").await, 201);
    assert_eq!(s.put("meta", &t1, b"x").await, 201);
    assert_eq!(s.put("gone", &t1, b"x").await, 201);
    let t3s = t3.internal();
    let (st, _, _) = s
        .req(
            "DELETE",
            "/sda/0/a/c/gone",
            &[("x-timestamp", &t3s)],
            empty(),
        )
        .await;
    assert_eq!(st, 204);

    let same = s.hash_of("same");
    let older = s.hash_of("older");
    let meta = s.hash_of("meta");
    let gone = s.hash_of("gone");
    let absent = s.hash_of("absent");
    let mut with_meta = MissingLine::new(&meta, t1);
    with_meta.ts_meta = t2;
    let body = [
        MissingLine::new(&same, t1),
        MissingLine::new(&older, t2),
        with_meta,
        MissingLine::new(&gone, t2),
        MissingLine::new(&absent, t1),
    ]
    .iter()
    .map(|l| l.encode() + "\n")
    .collect::<String>();
    let (status, answer) = s.missing_check(body).await;
    assert_eq!(status, 200);
    let wanted = repl::parse_wanted_body(&answer).unwrap();
    let flags = |h: &str| {
        wanted
            .iter()
            .find(|(w, _)| *w == h)
            .map(|(_, want)| (want.data, want.meta))
    };
    assert_eq!(flags(&same), None);
    // Swift's rule: an older local copy wants the metadata too; a sender
    // without a newer .meta sends only the data.
    assert_eq!(flags(&older), Some((true, true)));
    assert_eq!(flags(&meta), Some((false, true)));
    assert_eq!(flags(&gone), None);
    assert_eq!(flags(&absent), Some((true, true)));
    assert_eq!(wanted.len(), 3);

    // An empty offer wants nothing.
    assert_eq!(s.missing_check(String::new()).await, (200, String::new()));
}

#[tokio::test]
async fn missing_check_rejects_garbage_and_oversized_bodies() {
    let s = Server::start().await;
    let (status, text) = s.missing_check("not a line\n".into()).await;
    assert_eq!(status, 400);
    assert!(text.contains("line 1"), "{text}");
    let (status, _) = s.missing_check(format!("{} 12x\n", s.hash_of("o"))).await;
    assert_eq!(status, 400);
    let big = "x".repeat(repl::MAX_MISSING_CHECK_BODY + 1);
    let (status, _) = s.missing_check(big).await;
    assert_eq!(status, 413);
    // Suffixes and a missing check do not mix.
    let (status, _, _) = s
        .req(
            "REPLICATE",
            "/sda/0/abc",
            &[("x-apus-missing-check", "true")],
            empty(),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn replication_writes_keep_data_meta_and_content_type_timestamps() {
    let s = Server::start().await;
    let base = now() - 100.0;
    let (t1, t2, t3) = (ts(base), ts(base + 1.0), ts(base + 2.0));
    let (t1s, t2s, t3s) = (t1.internal(), t2.internal(), t3.internal());
    // A replicated PUT: every data-file key as a header, named in
    // X-Backend-Replication-Headers, including a past X-Delete-At.
    let past = format!("{}", (base - 50.0) as u64);
    let put = [
        ("x-backend-replication", "True"),
        ("x-timestamp", t1s.as_str()),
        ("content-type", "text/plain"),
        ("content-length", "5"),
        ("etag", "5d41402abc4b2a76b9719d911017c592"),
        ("x-object-meta-color", "blue"),
        ("x-object-sysmeta-thing", "s"),
        ("x-delete-at", past.as_str()),
        (
            "x-backend-replication-headers",
            "x-timestamp content-type content-length x-object-meta-color x-object-sysmeta-thing x-delete-at",
        ),
    ];
    let (status, _, _) = s.req("PUT", "/sda/0/a/c/o", &put, full("hello")).await;
    assert_eq!(status, 201);
    let head = [("x-backend-replication", "True")];
    let (status, headers, _) = s.req("HEAD", "/sda/0/a/c/o", &head, empty()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-delete-at"], past.as_str());
    assert_eq!(headers["x-object-sysmeta-thing"], "s");
    assert_eq!(headers["x-object-meta-color"], "blue");
    // A replicated POST at t3 carrying a content-type set at t2.
    let post = [
        ("x-backend-replication", "True"),
        ("x-timestamp", t3s.as_str()),
        ("content-type", "image/png"),
        ("content-type-timestamp", t2s.as_str()),
        ("x-object-meta-shape", "round"),
        (
            "x-backend-replication-headers",
            "x-timestamp content-type content-type-timestamp x-object-meta-shape",
        ),
    ];
    let (status, _, _) = s.req("POST", "/sda/0/a/c/o", &post, empty()).await;
    assert_eq!(status, 202);

    let hash = s.hash_of("o");
    let dir = s
        .devices
        .path()
        .join(format!("sda/objects/0/{}/{hash}", &hash[29..]));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    files.sort();
    // The .meta name carries the content-type timestamp as a delta.
    assert_eq!(
        files,
        [format!("{t1s}.data"), format!("{t3s}-186a0.meta")],
        "{files:?}"
    );
    let (status, headers, _) = s.req("HEAD", "/sda/0/a/c/o", &head, empty()).await;
    assert_eq!(status, 200);
    let hv = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(hv("x-backend-data-timestamp"), t1s);
    assert_eq!(hv("x-backend-timestamp"), t3s);
    assert_eq!(hv("content-type"), "image/png");
    assert_eq!(hv("x-object-meta-shape"), "round");
    assert_eq!(hv("x-object-sysmeta-thing"), "s");
    // As in Swift, a POST replaces user metadata and expiry.
    assert_eq!(hv("x-object-meta-color"), "");
    assert_eq!(hv("x-delete-at"), "");

    // So an offer of exactly that state wants nothing.
    let mut line = MissingLine::new(&hash, t1);
    line.ts_meta = t3;
    line.ts_ctype = t2;
    let (status, answer) = s.missing_check(line.encode()).await;
    assert_eq!((status, answer.as_str()), (200, ""));
    // A newer content-type on offer is wanted as metadata only.
    line.ts_ctype = ts(base + 2.5);
    line.ts_meta = ts(base + 2.5);
    let (_, answer) = s.missing_check(line.encode()).await;
    assert_eq!(answer, format!("{hash} m\n"));
}
