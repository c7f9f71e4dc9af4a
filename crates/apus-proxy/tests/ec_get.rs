//! Erasure-coded GETs when fragments fail, disagree or are missing, EC
//! ranges against the replicated answer, and EC objects through the
//! other verbs and middlewares; an in-process cluster with a 4+2
//! `isa_l_rs_vand` policy of 4096-byte segments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use apus_ec::{EcScheme, EcType};
use apus_http::{BackendClient, ClientConfig};
use apus_testkit::{Cluster, ClusterOptions};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use md5::Digest;
use support::{hdrs, Client};

const SEGMENT: usize = 4096;

fn bytes(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Bytes::from(
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect::<Vec<u8>>(),
    )
}

fn md5_hex(data: &[u8]) -> String {
    format!("{:x}", md5::Md5::digest(data))
}

/// The size of a whole segment's fragment, header included.
fn fragment_size() -> u64 {
    EcScheme::new("isa_l_rs_vand".parse::<EcType>().unwrap(), 4, 2)
        .unwrap()
        .fragment_size(SEGMENT as u64)
}

/// A cluster with an EC container `ec` and a replicated container `rep`.
async fn cluster() -> (Cluster, Client) {
    let cluster = Cluster::start_with(ClusterOptions::with_ec(6, SEGMENT as u64))
        .await
        .unwrap();
    let mut c = Client::new(&cluster);
    c.login("test:tester", "testing").await;
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/ec",
            hdrs(&[("x-storage-policy", "EC-1")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c.call(Method::PUT, "/v1/AUTH_test/rep").await;
    assert_eq!(a.status, StatusCode::CREATED);
    (cluster, c)
}

async fn put(c: &Client, path: &str, data: &Bytes) {
    let a = c.send(Method::PUT, path, hdrs(&[]), data.clone()).await;
    assert_eq!(a.status, StatusCode::CREATED, "PUT {path}: {:?}", a.body);
}

async fn get_range(c: &Client, path: &str, range: &str) -> support::Answer {
    c.send(Method::GET, path, hdrs(&[("range", range)]), Bytes::new())
        .await
}

/// The EC policy's `.data` files under the devices.
fn data_files(root: &Path) -> Vec<PathBuf> {
    support::data_files(root, "objects-1")
}

/// The fragment index in a `<ts>#<index>[#d].data` name.
fn frag_index(path: &Path) -> usize {
    let name = path.file_name().unwrap().to_str().unwrap();
    name.split('#').nth(1).unwrap().parse().unwrap()
}

/// The archives of the one EC object stored, by fragment index.
fn archives(cluster: &Cluster) -> BTreeMap<usize, PathBuf> {
    let files = data_files(cluster.devices_root());
    let by_index: BTreeMap<usize, PathBuf> =
        files.iter().map(|p| (frag_index(p), p.clone())).collect();
    assert_eq!(
        by_index.len(),
        files.len(),
        "one archive per index: {files:?}"
    );
    by_index
}

/// Breaks the metadata checksum of segment `segment`'s fragment header in
/// an archive.
fn corrupt_header(path: &Path, segment: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = (segment * fragment_size()) as usize + 30;
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// A GET's status and body, or `None` when the body was cut off.
async fn get_raw(c: &Client, path: &str) -> (StatusCode, Option<Bytes>) {
    let http = BackendClient::new(ClientConfig::default());
    let mut h = HeaderMap::new();
    h.insert(
        "x-auth-token",
        HeaderValue::from_str(c.token.as_deref().unwrap()).unwrap(),
    );
    let resp = http
        .request(Method::GET, &c.host, path, h, apus_http::empty())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.ok().map(|b| b.to_bytes());
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_fragments_are_replaced_mid_stream() {
    let (cluster, c) = cluster().await;
    let data = bytes(10 * SEGMENT + 123, 1);
    let path = "/v1/AUTH_test/ec/o";
    put(&c, path, &data).await;
    let files = archives(&cluster);
    // The first k primaries hold indexes 0..4, so these sources are in
    // use when their bad fragment comes up.
    corrupt_header(&files[&0], 3);
    corrupt_header(&files[&1], 6);

    let a = c.call(Method::GET, path).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body == data, "whole object differs");
    // Ranges that start before, at and after the broken fragments.
    for (start, end) in [
        (0, data.len() - 1),
        (3 * SEGMENT - 5, 4 * SEGMENT + 5),
        (6 * SEGMENT, 6 * SEGMENT),
        (5 * SEGMENT + 17, data.len() - 1),
    ] {
        let a = get_range(&c, path, &format!("bytes={start}-{end}")).await;
        assert_eq!(a.status, StatusCode::PARTIAL_CONTENT, "{start}-{end}");
        assert!(a.body == data.slice(start..=end), "{start}-{end} differs");
    }
    let a = get_range(&c, path, "bytes=-5000").await;
    assert!(a.body == data.slice(data.len() - 5000..));

    // With a third bad archive too, no k good fragments remain for
    // segment 3 (object servers may also have quarantined the archives
    // whose checksum failed by now): the client gets a 503 or a cut-off
    // body, never wrong bytes.
    corrupt_header(&files[&4], 3);
    let (status, body) = get_raw(&c, path).await;
    match status {
        StatusCode::OK => assert!(body.is_none(), "body should have been cut off"),
        StatusCode::SERVICE_UNAVAILABLE => {}
        other => panic!("unexpected {other}"),
    }
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_cut_short_are_replaced() {
    let (cluster, c) = cluster().await;
    let data = bytes(6 * SEGMENT, 2);
    let path = "/v1/AUTH_test/ec/short";
    put(&c, path, &data).await;
    let files = archives(&cluster);
    // A fragment whose bytes end early in the archive: the header of the
    // next one is garbage, and the archive ends before the object.
    let f = &files[&2];
    let mut archive = std::fs::read(f).unwrap();
    let cut = (2 * fragment_size()) as usize + 100;
    archive.drain(cut..cut + 50);
    std::fs::write(f, &archive).unwrap();
    let a = c.call(Method::GET, path).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body == data);
    cluster.stop().await.unwrap();
}

/// Hard links every archive into `stash` (xattrs and all), by index:
/// (its place, the stashed copy).
fn stash(cluster: &Cluster, tag: &str) -> BTreeMap<usize, (PathBuf, PathBuf)> {
    let dir = cluster.devices_root().join("stash");
    std::fs::create_dir_all(&dir).unwrap();
    data_files(cluster.devices_root())
        .into_iter()
        .map(|p| {
            let i = frag_index(&p);
            let copy = dir.join(format!("{tag}-{i}"));
            std::fs::hard_link(&p, &copy).unwrap();
            (i, (p, copy))
        })
        .collect()
}

/// Puts a stashed archive back (a no-op when it is there).
fn restore(place: &Path, copy: &Path) {
    if !place.exists() {
        std::fs::hard_link(copy, place).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_timestamps() {
    let (cluster, c) = cluster().await;
    let path = "/v1/AUTH_test/ec/m";
    let v1 = bytes(3 * SEGMENT + 7, 10);
    let v2 = bytes(2 * SEGMENT + 99, 20);
    put(&c, path, &v1).await;
    let old = stash(&cluster, "old");
    put(&c, path, &v2).await;
    let new = stash(&cluster, "new");
    assert_eq!(old.len(), 6);
    assert_eq!(new.len(), 6);
    // `indexes` get the old archive back instead of the new one.
    let roll_back = |indexes: &[usize]| {
        for i in 0..6 {
            let (o, n) = (&old[&i], &new[&i]);
            if indexes.contains(&i) {
                let _ = std::fs::remove_file(&n.0);
                restore(&o.0, &o.1);
            } else {
                let _ = std::fs::remove_file(&o.0);
                restore(&n.0, &n.1);
            }
        }
    };

    // Four new fragments, two old: the new object.
    roll_back(&[1, 4]);
    let a = c.call(Method::GET, path).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body == v2, "expected the newer object");
    assert_eq!(a.header("etag"), md5_hex(&v2));
    let a = get_range(&c, path, "bytes=4000-5000").await;
    assert!(a.body == v2.slice(4000..5001));

    // Two new, four old: the newest timestamp that can be decoded.
    roll_back(&[0, 2, 3, 5]);
    let a = c.call(Method::GET, path).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body == v1, "expected the older complete object");
    assert_eq!(a.header("etag"), md5_hex(&v1));

    // Three and three: neither decodes; durable fragments exist, so 503.
    roll_back(&[0, 1, 2]);
    let a = c.call(Method::GET, path).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);

    // Every node with the old durable archive and the new one not yet
    // durable: the old object, found through the fragment preferences.
    roll_back(&[0, 1, 2, 3, 4, 5]);
    for (place, copy) in new.values() {
        let name = place.to_str().unwrap().replace("#d.data", ".data");
        restore(Path::new(&name), copy);
    }
    assert_eq!(data_files(cluster.devices_root()).len(), 12);
    let a = c.call(Method::GET, path).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body == v1, "expected the durable object");

    // Only non-durable fragments: no object.
    for (place, _) in old.values() {
        std::fs::remove_file(place).unwrap();
    }
    let a = c.call(Method::GET, path).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fewer_than_k_fragments() {
    let (cluster, c) = cluster().await;
    let a = c.call(Method::GET, "/v1/AUTH_test/ec/nothing").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = get_range(&c, "/v1/AUTH_test/ec/nothing", "bytes=0-10").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    let path = "/v1/AUTH_test/ec/few";
    let data = bytes(SEGMENT + 5, 3);
    put(&c, path, &data).await;
    let files = archives(&cluster);
    for i in [0, 3] {
        std::fs::remove_file(&files[&i]).unwrap();
    }
    let a = c.call(Method::GET, path).await;
    assert!(a.body == data);
    // Three of six left: some fragments, not enough.
    std::fs::remove_file(&files[&5]).unwrap();
    let a = c.call(Method::GET, path).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let a = get_range(&c, path, "bytes=1-2").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    // HEAD needs only one.
    let a = c.call(Method::HEAD, path).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-length"), data.len().to_string());
    assert_eq!(a.header("etag"), md5_hex(&data));

    // Deleted: the tombstones win over the fragments left behind.
    let a = c.call(Method::DELETE, path).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::GET, path).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    cluster.stop().await.unwrap();
}

/// The parts of a `multipart/byteranges` answer: (Content-Range, bytes).
fn parts(a: &support::Answer) -> Vec<(String, Bytes)> {
    let ct = a.header("content-type");
    let boundary = ct.split("boundary=").nth(1).unwrap().to_string();
    let delim = format!("--{boundary}");
    let body = &a.body[..];
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let pos = find(rest, delim.as_bytes()).unwrap();
        rest = &rest[pos + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let head_end = find(rest, b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&rest[..head_end]).unwrap();
        let cr = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .unwrap()
            .to_string();
        rest = &rest[head_end + 4..];
        let next = find(rest, format!("\r\n{delim}").as_bytes()).unwrap();
        out.push((cr, Bytes::copy_from_slice(&rest[..next])));
        rest = &rest[next + 2..];
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_match_the_replicated_answer() {
    let (cluster, c) = cluster().await;
    for (n, size) in [0usize, 1, 100, SEGMENT, 2 * SEGMENT, 3 * SEGMENT + 1000]
        .into_iter()
        .enumerate()
    {
        let data = bytes(size, 100 + n as u64);
        let ec = format!("/v1/AUTH_test/ec/r{size}");
        let rep = format!("/v1/AUTH_test/rep/r{size}");
        put(&c, &ec, &data).await;
        put(&c, &rep, &data).await;
        let s = SEGMENT;
        let ranges = [
            "bytes=0-0".to_string(),
            "bytes=0-".to_string(),
            "bytes=1-".to_string(),
            format!("bytes={}-{}", s - 1, s),
            format!("bytes={}-{}", s, 2 * s - 1),
            format!("bytes={}-{}", s + 1, 3 * s + 1),
            format!("bytes={}-", 2 * s + 10),
            format!("bytes={}-", size.saturating_sub(1)),
            format!("bytes={}-", size),
            format!("bytes={}-", size + 1),
            format!("bytes={}-", 100 * s),
            format!("bytes=5-{}", 100 * s),
            "bytes=-1".to_string(),
            "bytes=-10".to_string(),
            format!("bytes=-{}", s),
            format!("bytes=-{}", s + 1),
            format!("bytes=-{}", 2 * s),
            format!("bytes=-{}", 100 * s),
            "bytes=-0".to_string(),
            "bytes=0-1,-1".to_string(),
            format!("bytes=0-9,{}-{},-5", s - 3, s + 3),
            format!("bytes={}-{},0-0", 2 * s, 2 * s + 50),
            format!("bytes=10-20,15-30,{}-", 3 * s),
            format!("bytes=1-2,{}-", 50 * s),
            "bytes=9-3".to_string(),
            "bytes=oops".to_string(),
        ];
        for range in &ranges {
            let e = get_range(&c, &ec, range).await;
            let r = get_range(&c, &rep, range).await;
            let what = format!("size {size}, {range}");
            assert_eq!(e.status, r.status, "{what}");
            assert_eq!(
                e.header("content-range"),
                r.header("content-range"),
                "{what}"
            );
            assert!(!e.header("content-length").is_empty(), "{what}");
            // A 416 names the object too (its ETag, as Swift's tests check).
            assert_eq!(e.header("etag"), r.header("etag"), "{what}");
            if r.header("content-type").starts_with("multipart/byteranges") {
                assert!(e.header("content-type").starts_with("multipart/byteranges"));
                assert_eq!(parts(&e), parts(&r), "{what}");
                assert_eq!(e.header("content-length"), e.body.len().to_string());
            } else if r.status.is_success() {
                assert!(e.body == r.body, "{what}: bodies differ");
                assert_eq!(e.header("content-length"), r.header("content-length"));
            }
        }
    }
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_delete_and_copy() {
    let (cluster, c) = cluster().await;
    let data = bytes(2 * SEGMENT + 3, 7);
    let path = "/v1/AUTH_test/ec/p";
    let a = c
        .send(
            Method::PUT,
            path,
            hdrs(&[("x-object-meta-a", "1"), ("content-type", "text/plain")]),
            data.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c
        .send(
            Method::POST,
            path,
            hdrs(&[("x-object-meta-b", "2"), ("content-type", "text/x-new")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    for method in [Method::GET, Method::HEAD] {
        let a = c.call(method.clone(), path).await;
        assert_eq!(a.status, StatusCode::OK, "{method}");
        assert_eq!(a.header("x-object-meta-b"), "2", "{method}");
        assert_eq!(a.header("x-object-meta-a"), "", "{method}");
        assert_eq!(a.header("content-type"), "text/x-new", "{method}");
        assert_eq!(a.header("etag"), md5_hex(&data), "{method}");
        assert_eq!(a.header("content-length"), data.len().to_string());
        assert!(a
            .headers
            .keys()
            .all(|k| !k.as_str().starts_with("x-object-sysmeta-ec")
                && !k.as_str().starts_with("x-backend")));
    }
    assert!(c.call(Method::GET, path).await.body == data);

    // COPY out of and into EC containers, and within one.
    for (from, to) in [
        (path, "/v1/AUTH_test/rep/from-ec"),
        ("/v1/AUTH_test/rep/from-ec", "/v1/AUTH_test/ec/from-rep"),
        (path, "/v1/AUTH_test/ec/ec-to-ec"),
    ] {
        let dest = to.trim_start_matches("/v1/AUTH_test");
        let a = c
            .send(
                Method::from_bytes(b"COPY").unwrap(),
                from,
                hdrs(&[("destination", dest)]),
                Bytes::new(),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "COPY {from} {to}");
        let a = c.call(Method::GET, to).await;
        assert_eq!(a.status, StatusCode::OK, "{to}");
        assert!(a.body == data, "{to}");
        assert_eq!(a.header("x-object-meta-b"), "2", "{to}");
        assert_eq!(a.header("etag"), md5_hex(&data), "{to}");
    }
    // PUT with X-Copy-From, a range of the source.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/ec/ranged-copy",
            hdrs(&[("x-copy-from", "/ec/p"), ("range", "bytes=4000-4200")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c.call(Method::GET, "/v1/AUTH_test/ec/ranged-copy").await;
    assert!(a.body == data.slice(4000..4201));

    let a = c.call(Method::DELETE, path).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::HEAD] {
        let a = c.call(method.clone(), path).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method}");
    }
    let a = c.call(Method::DELETE, path).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_with_ec_segments() {
    let (cluster, c) = cluster().await;
    let segs: Vec<Bytes> = (0..3)
        .map(|i| bytes(SEGMENT * (i + 1) + 11 * i, 50 + i as u64))
        .collect();
    let whole: Bytes = segs.iter().flat_map(|s| s.iter().copied()).collect();
    for (i, s) in segs.iter().enumerate() {
        put(&c, &format!("/v1/AUTH_test/ec/seg/{i:02}"), s).await;
    }
    // DLO: the manifest in the replicated container, segments in EC.
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/rep/dlo",
            hdrs(&[("x-object-manifest", "ec/seg/")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    // SLO: the manifest itself in the EC container.
    let manifest: Vec<serde_json::Value> = segs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"path": format!("/ec/seg/{i:02}"), "etag": md5_hex(s), "size_bytes": s.len()})
        })
        .collect();
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/ec/slo?multipart-manifest=put",
            hdrs(&[]),
            Bytes::from(serde_json::Value::Array(manifest).to_string()),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    for path in ["/v1/AUTH_test/rep/dlo", "/v1/AUTH_test/ec/slo"] {
        let a = c.call(Method::GET, path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(a.body == whole, "{path}");
        let (start, end) = (SEGMENT + 100, 3 * SEGMENT + 50);
        let a = get_range(&c, path, &format!("bytes={start}-{end}")).await;
        assert_eq!(a.status, StatusCode::PARTIAL_CONTENT, "{path}");
        assert!(a.body == whole.slice(start..=end), "{path}");
        let a = get_range(&c, path, "bytes=-100").await;
        assert!(a.body == whole.slice(whole.len() - 100..), "{path}");
    }
    let a = c
        .call(Method::GET, "/v1/AUTH_test/ec/slo?multipart-manifest=get")
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let listed: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    // Conditions on the manifest compare the large object's ETag, not
    // the manifest archive's nor the manifest's own.
    let head = c.call(Method::HEAD, "/v1/AUTH_test/ec/slo").await;
    let etag = head.header("etag").to_string();
    assert!(!etag.is_empty());
    for method in [Method::GET, Method::HEAD] {
        for (name, value, want) in [
            ("if-match", etag.as_str(), StatusCode::OK),
            ("if-match", "\"nope\"", StatusCode::PRECONDITION_FAILED),
            ("if-none-match", etag.as_str(), StatusCode::NOT_MODIFIED),
            ("if-none-match", "\"nope\"", StatusCode::OK),
        ] {
            let a = c
                .send(
                    method.clone(),
                    "/v1/AUTH_test/ec/slo",
                    hdrs(&[(name, value)]),
                    Bytes::new(),
                )
                .await;
            assert_eq!(a.status, want, "{method} {name}: {value}");
        }
    }
    cluster.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_ec_objects() {
    let (cluster, c) = cluster().await;
    let data = bytes(SEGMENT + 1, 9);
    let path = "/v1/AUTH_test/ec/x";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let a = c
        .send(
            Method::PUT,
            path,
            hdrs(&[("x-delete-at", &(now - 10).to_string())]),
            data.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);

    let at = now + 2;
    let a = c
        .send(
            Method::PUT,
            path,
            hdrs(&[("x-delete-at", &at.to_string())]),
            data.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let a = c.call(Method::HEAD, path).await;
    if a.status == StatusCode::OK {
        assert_eq!(a.header("x-delete-at"), at.to_string());
    }
    // Past its time the object is gone, whether or not an expirer ran.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let a = c.call(Method::GET, path).await;
        if a.status == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(a.status, StatusCode::OK);
        assert!(a.body == data);
        assert!(
            tokio::time::Instant::now() < deadline,
            "still there past X-Delete-At"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let a = c.call(Method::HEAD, path).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    // POST can set it on an EC object too.
    let path = "/v1/AUTH_test/ec/y";
    put(&c, path, &data).await;
    let a = c
        .send(
            Method::POST,
            path,
            hdrs(&[("x-delete-after", "1000")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let a = c.call(Method::HEAD, path).await;
    assert_eq!(a.status, StatusCode::OK);
    let set: u64 = a.header("x-delete-at").parse().unwrap();
    assert!(set >= now + 1000 && set <= now + 1100, "{set}");
    cluster.stop().await.unwrap();
}
