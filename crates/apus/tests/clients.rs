//! Third-party clients against `apus serve`, as users run them: rclone's
//! swift backend (segmented upload, download, purge) and openstacksdk's
//! `create_object` with segments (a static large object). The README's
//! test command installs both (`scripts/clients.sh`); `APUS_RCLONE` and
//! `APUS_OPENSTACK_PYTHON` name them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;

use support::{client_tool as tool, pattern, run_client as run, Server};

fn rclone(proxy: std::net::SocketAddr, config_dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(tool("APUS_RCLONE", "/usr/bin/rclone"));
    cmd.env("RCLONE_CONFIG", config_dir.join("rclone.conf"))
        .env("RCLONE_CONFIG_APUS_TYPE", "swift")
        .env("RCLONE_CONFIG_APUS_USER", "test:tester")
        .env("RCLONE_CONFIG_APUS_KEY", "testing")
        .env(
            "RCLONE_CONFIG_APUS_AUTH",
            format!("http://{proxy}/auth/v1.0"),
        )
        .args(["-q"])
        .args(args);
    run(&mut cmd)
}

#[test]
fn rclone_uploads_downloads_and_purges_a_segmented_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &dir.path().join("data"), "serve");
    let proxy = server.wait_ready();
    let file = dir.path().join("big.bin");
    let data = pattern(20 * 1024 * 1024, 11);
    std::fs::write(&file, &data).unwrap();

    rclone(
        proxy,
        dir.path(),
        &[
            "copy",
            "--swift-chunk-size",
            "5M",
            file.to_str().unwrap(),
            "apus:rcl",
        ],
    );
    let listing = rclone(proxy, dir.path(), &["ls", "apus:"]);
    assert_eq!(
        listing.lines().count(),
        5,
        "a manifest and four segments: {listing}"
    );
    let down = dir.path().join("down.bin");
    rclone(
        proxy,
        dir.path(),
        &["copyto", "apus:rcl/big.bin", down.to_str().unwrap()],
    );
    assert!(
        std::fs::read(&down).unwrap() == data,
        "downloaded bytes differ"
    );

    rclone(proxy, dir.path(), &["purge", "apus:rcl"]);
    let listing = rclone(proxy, dir.path(), &["ls", "apus:"]);
    assert_eq!(listing.trim(), "", "objects left behind: {listing}");
    server.terminate();
}

const OPENSTACKSDK_SCRIPT: &str = r#"
import sys, urllib.request
import openstack
endpoint, source, target = sys.argv[1:4]
req = urllib.request.Request(endpoint + "/auth/v1.0",
                             headers={"X-Auth-User": "test:tester", "X-Auth-Key": "testing"})
with urllib.request.urlopen(req) as r:
    token, url = r.headers["X-Auth-Token"], r.headers["X-Storage-Url"]
conn = openstack.connect(auth_type="admin_token", auth={"token": token, "endpoint": url},
                         object_store_endpoint_override=url)
conn.create_container("sdk")
conn.create_object("sdk", "big.bin", filename=source, segment_size=1048576)
conn.get_object("sdk", "big.bin", outfile=target)
meta = conn.object_store.get_object_metadata("big.bin", container="sdk")
print("slo", meta.is_static_large_object)
print("objects", len(conn.list_objects("sdk")))
conn.delete_object("sdk", "big.bin")
print("left", len(conn.list_objects("sdk")))
"#;

#[test]
fn openstacksdk_creates_a_segmented_object() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &dir.path().join("data"), "serve");
    let proxy = server.wait_ready();
    let source = dir.path().join("big.bin");
    let target = dir.path().join("down.bin");
    let data = pattern(3_500_000, 5);
    std::fs::write(&source, &data).unwrap();
    let python = tool(
        "APUS_OPENSTACK_PYTHON",
        &format!(
            "{}/.cache/apus-clients/venv/bin/python",
            std::env::var("HOME").unwrap_or_default()
        ),
    );
    let out = run(Command::new(python).args([
        "-c",
        OPENSTACKSDK_SCRIPT,
        &format!("http://{proxy}"),
        source.to_str().unwrap(),
        target.to_str().unwrap(),
    ]));
    assert!(
        std::fs::read(&target).unwrap() == data,
        "downloaded bytes differ"
    );
    let lines: Vec<&str> = out.lines().collect();
    // The manifest and its four segments, then nothing once deleted.
    assert_eq!(lines, ["slo True", "objects 5", "left 0"], "{out}");
    server.terminate();
}
