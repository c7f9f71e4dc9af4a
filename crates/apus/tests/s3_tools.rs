//! The S3 command-line tools users run against `apus serve`: s3cmd
//! (`mb`, `put` with multipart, `ls`, `get`, `del`, `sync` of a
//! directory) and rclone's s3 backend (`copy`, `check`, `purge`), with
//! what they store read back through the Swift API. The README's test
//! command installs both (`scripts/clients.sh`); `APUS_S3CMD` and
//! `APUS_RCLONE` name them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{client_tool as tool, exchange, login, pattern, run_client as run, Server};

fn s3cmd(proxy: SocketAddr, dir: &Path, args: &[&str]) -> String {
    let home = std::env::var_os("HOME").unwrap_or_default();
    let default = PathBuf::from(home).join(".cache/apus-clients/venv/bin/s3cmd");
    let config = dir.join("s3cfg");
    std::fs::write(
        &config,
        format!(
            "[default]\naccess_key = test:tester\nsecret_key = testing\n\
             host_base = {proxy}\nhost_bucket = {proxy}\nuse_https = False\n\
             signature_v2 = False\nmultipart_chunk_size_mb = 5\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(tool("APUS_S3CMD", default.to_str().unwrap()));
    cmd.arg("-c").arg(&config).arg("--no-progress").args(args);
    run(&mut cmd)
}

fn swift_get(proxy: SocketAddr, token: &str, path: &str) -> (u16, Vec<u8>, Option<String>) {
    let (head, body) = exchange(proxy, "GET", path, &[("X-Auth-Token", token)], b"");
    let attrs = head.header("x-object-meta-s3cmd-attrs").map(str::to_string);
    (head.status, body, attrs)
}

#[test]
fn s3cmd_puts_lists_gets_syncs_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &dir.path().join("data"), "serve");
    let proxy = server.wait_ready();
    let (token, account) = login(proxy, "test:tester", "testing");

    s3cmd(proxy, dir.path(), &["mb", "s3://tools"]);
    // 12 MiB: three 5 MiB-at-most parts.
    let big = pattern(12 * 1024 * 1024, 3);
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &big).unwrap();
    s3cmd(
        proxy,
        dir.path(),
        &["put", file.to_str().unwrap(), "s3://tools/big.bin"],
    );
    let listing = s3cmd(proxy, dir.path(), &["ls", "s3://tools"]);
    assert!(
        listing.contains("12582912") && listing.contains("s3://tools/big.bin"),
        "{listing}"
    );
    let down = dir.path().join("down.bin");
    s3cmd(
        proxy,
        dir.path(),
        &["get", "s3://tools/big.bin", down.to_str().unwrap()],
    );
    assert!(std::fs::read(&down).unwrap() == big, "s3cmd get differs");
    // The same object through the Swift API, with s3cmd's metadata.
    let (status, body, attrs) = swift_get(proxy, &token, &format!("{account}/tools/big.bin"));
    assert_eq!(status, 200);
    assert!(body == big, "the Swift API reads other bytes");
    assert!(
        attrs.as_deref().is_some_and(|a| a.contains("md5:")),
        "s3cmd's attributes are not metadata: {attrs:?}"
    );

    // sync uploads a tree, then only what changed.
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("a.txt"), b"alpha").unwrap();
    std::fs::write(tree.join("sub/b.txt"), b"beta").unwrap();
    let source = format!("{}/", tree.display());
    s3cmd(proxy, dir.path(), &["sync", &source, "s3://tools/tree/"]);
    let listing = s3cmd(proxy, dir.path(), &["ls", "-r", "s3://tools/tree/"]);
    assert!(
        listing.contains("s3://tools/tree/a.txt") && listing.contains("s3://tools/tree/sub/b.txt"),
        "{listing}"
    );
    std::fs::write(tree.join("a.txt"), b"alpha two").unwrap();
    let out = s3cmd(proxy, dir.path(), &["sync", &source, "s3://tools/tree/"]);
    assert!(
        out.contains("a.txt") && !out.contains("b.txt"),
        "sync sent more than the changed file: {out}"
    );
    let (status, body, _) = swift_get(proxy, &token, &format!("{account}/tools/tree/a.txt"));
    assert_eq!((status, body.as_slice()), (200, &b"alpha two"[..]));

    s3cmd(proxy, dir.path(), &["del", "s3://tools/big.bin"]);
    let listing = s3cmd(proxy, dir.path(), &["ls", "s3://tools"]);
    assert!(!listing.contains("big.bin"), "{listing}");
    // The manifest is gone through the Swift API too (its segments wait
    // for the expirer, as with Swift's s3api).
    let (status, _, _) = swift_get(proxy, &token, &format!("{account}/tools/big.bin"));
    assert_eq!(status, 404);
    assert!(server.terminate().success(), "{}", server.stderr());
}

fn rclone(proxy: SocketAddr, dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(tool("APUS_RCLONE", "/usr/bin/rclone"));
    // rclone 1.60 refuses AWS_CA_BUNDLE with its own transport; the
    // endpoint is plain HTTP on loopback anyway.
    cmd.env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG", dir.join("rclone.conf"))
        .env("RCLONE_CONFIG_S3_TYPE", "s3")
        .env("RCLONE_CONFIG_S3_PROVIDER", "Other")
        .env("RCLONE_CONFIG_S3_ACCESS_KEY_ID", "test:tester")
        .env("RCLONE_CONFIG_S3_SECRET_ACCESS_KEY", "testing")
        .env("RCLONE_CONFIG_S3_ENDPOINT", format!("http://{proxy}"))
        .env("RCLONE_CONFIG_S3_FORCE_PATH_STYLE", "true")
        .args(["-q", "--s3-chunk-size", "5M", "--s3-upload-cutoff", "5M"])
        .args(args);
    run(&mut cmd)
}

#[test]
fn rclone_s3_copies_checks_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &dir.path().join("data"), "serve");
    let proxy = server.wait_ready();
    let (token, account) = login(proxy, "test:tester", "testing");

    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("deep/er")).unwrap();
    let big = pattern(11 * 1024 * 1024, 5);
    std::fs::write(tree.join("big.bin"), &big).unwrap();
    std::fs::write(tree.join("deep/small.txt"), b"small").unwrap();
    std::fs::write(tree.join("deep/er/empty"), b"").unwrap();
    let source = tree.to_str().unwrap();

    rclone(proxy, dir.path(), &["mkdir", "s3:rcl"]);
    rclone(proxy, dir.path(), &["copy", source, "s3:rcl"]);
    // check compares sizes and hashes of every file both ways.
    rclone(proxy, dir.path(), &["check", source, "s3:rcl"]);
    let (status, body, _) = swift_get(proxy, &token, &format!("{account}/rcl/big.bin"));
    assert_eq!(status, 200);
    assert!(body == big, "the Swift API reads other bytes");

    // A changed file is found by check.
    std::fs::write(tree.join("deep/small.txt"), b"SMALL").unwrap();
    let mut cmd = Command::new(tool("APUS_RCLONE", "/usr/bin/rclone"));
    let failed = cmd
        .env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG", dir.path().join("rclone.conf"))
        .env("RCLONE_CONFIG_S3_TYPE", "s3")
        .env("RCLONE_CONFIG_S3_PROVIDER", "Other")
        .env("RCLONE_CONFIG_S3_ACCESS_KEY_ID", "test:tester")
        .env("RCLONE_CONFIG_S3_SECRET_ACCESS_KEY", "testing")
        .env("RCLONE_CONFIG_S3_ENDPOINT", format!("http://{proxy}"))
        .args(["-q", "check", source, "s3:rcl"])
        .output()
        .unwrap();
    assert!(!failed.status.success(), "check missed a changed file");

    rclone(proxy, dir.path(), &["purge", "s3:rcl"]);
    let (head, _) = exchange(
        proxy,
        "HEAD",
        &format!("{account}/rcl"),
        &[("X-Auth-Token", &token)],
        b"",
    );
    assert_eq!(head.status, 404, "purge left the bucket");
    assert!(server.terminate().success(), "{}", server.stderr());
}
