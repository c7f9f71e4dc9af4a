//! Erasure-coded objects through the proxy, against an in-process cluster
//! with a 4+2 `isa_l_rs_vand` policy of 4096-byte segments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use apus_ec::{split_archive, EcScheme, EcType};
use apus_testkit::{Cluster, ClusterOptions};
use bytes::Bytes;
use http::{Method, StatusCode};
use md5::Digest;
use support::{hdrs, Client};

const SEGMENT: usize = 4096;

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

async fn ec_cluster() -> (Cluster, Client) {
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
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    (cluster, c)
}

/// Every `.data` file of the EC policy under the devices.
fn data_files(root: &Path) -> BTreeSet<PathBuf> {
    support::data_files(root, "objects-1").into_iter().collect()
}

/// The fragment index in a `<ts>#<index>[#d].data` name.
fn frag_index(path: &Path) -> usize {
    let name = path.file_name().unwrap().to_str().unwrap();
    name.split('#')
        .nth(1)
        .unwrap()
        .trim_end_matches(".data")
        .parse()
        .unwrap()
}

/// Decodes the object from the first four archives on disk.
fn decode_from_disk(files: &[PathBuf]) -> Vec<u8> {
    let scheme = EcScheme::new("isa_l_rs_vand".parse::<EcType>().unwrap(), 4, 2).unwrap();
    let archives: Vec<Vec<u8>> = files
        .iter()
        .take(4)
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    let split: Vec<Vec<&[u8]>> = archives.iter().map(|a| split_archive(a).unwrap()).collect();
    let segments = split[0].len();
    let mut out = Vec::new();
    for s in 0..segments {
        let frags: Vec<&[u8]> = split.iter().map(|a| a[s]).collect();
        out.extend(scheme.decode(&frags).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_every_size_round_trip() {
    let (cluster, c) = ec_cluster().await;
    let sizes = [
        0,
        1,
        SEGMENT - 1,
        SEGMENT,
        SEGMENT + 1,
        3 * SEGMENT + 100,
        (1 << 20) + 3,
    ];
    for (n, size) in sizes.into_iter().enumerate() {
        let data = Bytes::from(bytes(size, n as u64 + 1));
        let md5 = format!("{:x}", md5::Md5::digest(&data));
        let path = format!("/v1/AUTH_test/ec/obj-{size}");
        let before = data_files(cluster.devices_root());
        let a = c
            .send(
                Method::PUT,
                &path,
                hdrs(&[("x-object-meta-size", &size.to_string()), ("etag", &md5)]),
                data.clone(),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "size {size}: {:?}", a.body);
        assert_eq!(a.header("etag"), md5, "size {size}");

        let a = c.call(Method::GET, &path).await;
        assert_eq!(a.status, StatusCode::OK, "size {size}");
        assert!(a.body == data, "size {size}: body differs");
        assert_eq!(a.header("etag"), md5);
        assert_eq!(a.header("content-length"), size.to_string());
        assert_eq!(a.header("x-object-meta-size"), size.to_string());
        assert!(
            !a.headers
                .keys()
                .any(|k| k.as_str().starts_with("x-object-sysmeta-ec")),
            "{:?}",
            a.headers
        );

        // Six durable archives, one per fragment index, that decode to it.
        let new: Vec<PathBuf> = data_files(cluster.devices_root())
            .difference(&before)
            .cloned()
            .collect();
        assert_eq!(new.len(), 6, "size {size}: {new:?}");
        assert!(new.iter().all(|p| p.to_str().unwrap().ends_with("#d.data")));
        let indexes: BTreeSet<usize> = new.iter().map(|p| frag_index(p)).collect();
        assert_eq!(indexes, (0..6).collect());
        let mut by_index = new.clone();
        by_index.sort_by_key(|p| frag_index(p));
        assert!(decode_from_disk(&by_index) == data.to_vec(), "size {size}");
        // Parity only plus two data archives decode too.
        by_index.reverse();
        assert!(decode_from_disk(&by_index) == data.to_vec(), "size {size}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_fragments_up_to_parity_are_survived() {
    let (cluster, c) = ec_cluster().await;
    let data = Bytes::from(bytes(5 * SEGMENT + 17, 99));
    let md5 = format!("{:x}", md5::Md5::digest(&data));
    let a = c
        .send(Method::PUT, "/v1/AUTH_test/ec/o", hdrs(&[]), data.clone())
        .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let files: Vec<PathBuf> = data_files(cluster.devices_root()).into_iter().collect();
    assert_eq!(files.len(), 6);
    for (lost, file) in files.iter().enumerate().take(3) {
        std::fs::remove_file(file).unwrap();
        let a = c.call(Method::GET, "/v1/AUTH_test/ec/o").await;
        if lost < 2 {
            assert_eq!(a.status, StatusCode::OK, "{} lost", lost + 1);
            assert!(a.body == data, "{} lost: body differs", lost + 1);
            assert_eq!(a.header("etag"), md5);
        } else {
            assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "3 lost");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_etag_stores_nothing() {
    let (cluster, c) = ec_cluster().await;
    let data = Bytes::from(bytes(2 * SEGMENT + 5, 3));
    let a = c
        .send(
            Method::PUT,
            "/v1/AUTH_test/ec/bad",
            hdrs(&[("etag", "0123456789abcdef0123456789abcdef")]),
            data,
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", a.body);
    assert!(data_files(cluster.devices_root()).is_empty());
    let a = c.call(Method::GET, "/v1/AUTH_test/ec/bad").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_head_post_and_delete() {
    let (_cluster, c) = ec_cluster().await;
    let data = Bytes::from(bytes(3 * SEGMENT + 1000, 5));
    let md5 = format!("{:x}", md5::Md5::digest(&data));
    let path = "/v1/AUTH_test/ec/r.bin";
    let a = c
        .send(
            Method::PUT,
            path,
            hdrs(&[("x-object-meta-color", "blue")]),
            data.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED);

    for (range, start, end) in [
        ("bytes=0-0", 0, 1),
        ("bytes=4000-9000", 4000, 9001),
        ("bytes=-10", data.len() - 10, data.len()),
        ("bytes=8192-", 8192, data.len()),
    ] {
        let a = c
            .send(Method::GET, path, hdrs(&[("range", range)]), Bytes::new())
            .await;
        assert_eq!(a.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert!(a.body == data.slice(start..end), "{range}");
        assert_eq!(
            a.header("content-range"),
            format!("bytes {}-{}/{}", start, end - 1, data.len())
        );
    }
    let a = c
        .send(
            Method::GET,
            path,
            hdrs(&[("range", "bytes=99999-")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);

    // The commit's container update carries the object's size and ETag.
    let a = c.call(Method::GET, "/v1/AUTH_test/ec?format=json").await;
    assert_eq!(a.status, StatusCode::OK);
    let listing: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(listing[0]["name"], "r.bin");
    assert_eq!(listing[0]["bytes"], data.len() as u64);
    assert_eq!(listing[0]["hash"], md5.as_str());

    let a = c.call(Method::HEAD, path).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("content-length"), data.len().to_string());
    assert_eq!(a.header("etag"), md5);
    assert_eq!(a.header("x-object-meta-color"), "blue");
    assert!(a.body.is_empty());

    // Conditions compare the object's ETag, not a fragment's.
    let a = c
        .send(
            Method::GET,
            path,
            hdrs(&[("if-none-match", &md5)]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    let a = c
        .send(Method::GET, path, hdrs(&[("if-match", &md5)]), Bytes::new())
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body == data);

    let a = c
        .send(
            Method::POST,
            path,
            hdrs(&[("x-object-meta-color", "red")]),
            Bytes::new(),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let a = c.call(Method::GET, path).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.header("x-object-meta-color"), "red");
    assert!(a.body == data);

    let a = c.call(Method::DELETE, path).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    let a = c.call(Method::GET, path).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = c.call(Method::HEAD, path).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}
