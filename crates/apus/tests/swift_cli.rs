//! python-swiftclient's `swift` command against `apus serve`: upload, list,
//! stat, post -m, download (same bytes), delete, and a segmented upload
//! (`-S`) that makes a DLO manifest downloading byte-identical, and the
//! same with `--use-slo` (a static large object whose segments `swift
//! delete` removes). The client
//! comes from the reference venv that the README's test command installs
//! (`scripts/swift-ref.sh`); `APUS_SWIFT_PYTHON` names its interpreter.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{pattern, Server};

fn swift_command() -> PathBuf {
    let python = match std::env::var_os("APUS_SWIFT_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/swift-ref/swift-venv/bin/python")
        }
    };
    let swift = python.with_file_name("swift");
    assert!(
        swift.exists(),
        "{} not found: run scripts/swift-ref.sh (the README's test command does), \
         or set APUS_SWIFT_PYTHON",
        swift.display()
    );
    swift
}

/// Runs `swift <args>` in `cwd` and returns its stdout; fails the test
/// with the client's output when it does not succeed.
fn swift(proxy: std::net::SocketAddr, cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(swift_command())
        .args([
            "-A",
            &format!("http://{proxy}/auth/v1.0"),
            "-U",
            "test:tester",
            "-K",
            "testing",
        ])
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run swift");
    assert!(
        out.status.success(),
        "swift {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn swift_cli_session() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(dir.path(), &data, "serve");
    let proxy = server.wait_ready();

    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let small = b"hello, swift client\n".to_vec();
    let big = pattern(3_500_000, 7);
    std::fs::write(files.join("small.txt"), &small).unwrap();
    std::fs::write(files.join("big.bin"), &big).unwrap();

    swift(proxy, &files, &["upload", "photos", "small.txt", "big.bin"]);
    let containers = swift(proxy, &files, &["list"]);
    assert_eq!(containers.lines().collect::<Vec<_>>(), ["photos"]);
    let objects = swift(proxy, &files, &["list", "photos"]);
    assert_eq!(
        objects.lines().collect::<Vec<_>>(),
        ["big.bin", "small.txt"]
    );

    swift(
        proxy,
        &files,
        &["post", "-m", "color:blue", "photos", "small.txt"],
    );
    let stat = swift(proxy, &files, &["stat", "photos", "small.txt"]);
    assert!(stat.contains("Content Length: 20"), "{stat}");
    assert!(stat.contains("Meta Color: blue"), "{stat}");
    assert!(stat.contains("Content Type: text/plain"), "{stat}");

    // Segmented upload as a DLO (the client makes an SLO by default when
    // /info lists slo): 1 MiB segments in `segs_segments` plus a manifest.
    swift(
        proxy,
        &files,
        &["upload", "--use-dlo", "-S", "1048576", "segs", "big.bin"],
    );
    let segments = swift(proxy, &files, &["list", "segs_segments"]);
    assert_eq!(segments.lines().count(), 4, "{segments}");
    let stat = swift(proxy, &files, &["stat", "segs", "big.bin"]);
    assert!(stat.contains("Manifest: segs_segments/big.bin/"), "{stat}");
    assert!(stat.contains("Content Length: 3500000"), "{stat}");

    let down = dir.path().join("down");
    std::fs::create_dir_all(&down).unwrap();
    swift(proxy, &down, &["download", "segs", "big.bin"]);
    swift(
        proxy,
        &down,
        &["download", "photos", "small.txt", "big.bin"],
    );
    assert!(std::fs::read(down.join("big.bin")).unwrap() == big);
    assert_eq!(std::fs::read(down.join("small.txt")).unwrap(), small);

    swift(proxy, &files, &["delete", "photos", "small.txt"]);
    let objects = swift(proxy, &files, &["list", "photos"]);
    assert_eq!(objects.lines().collect::<Vec<_>>(), ["big.bin"]);
    // Deleting a manifest with the client removes its segments too.
    swift(proxy, &files, &["delete", "segs", "big.bin"]);
    let segments = swift(proxy, &files, &["list", "segs_segments"]);
    assert_eq!(segments.trim(), "");

    // The same as a static large object: the manifest is not what comes
    // back, the file is.
    swift(
        proxy,
        &files,
        &["upload", "--use-slo", "-S", "1048576", "videos", "big.bin"],
    );
    let segments = swift(proxy, &files, &["list", "videos_segments"]);
    assert_eq!(segments.lines().count(), 4, "{segments}");
    let stat = swift(proxy, &files, &["stat", "videos", "big.bin"]);
    assert!(stat.contains("Content Length: 3500000"), "{stat}");
    let slo_down = dir.path().join("slo-down");
    std::fs::create_dir_all(&slo_down).unwrap();
    swift(proxy, &slo_down, &["download", "videos", "big.bin"]);
    assert!(std::fs::read(slo_down.join("big.bin")).unwrap() == big);
    swift(proxy, &files, &["delete", "videos", "big.bin"]);
    let segments = swift(proxy, &files, &["list", "videos_segments"]);
    assert_eq!(segments.trim(), "");
    let objects = swift(proxy, &files, &["list", "videos"]);
    assert_eq!(objects.trim(), "");
    server.terminate();
}

/// `swift tempurl`: a URL made by the client for an account key and for a
/// container key downloads without a token; an expired one does not.
#[test]
fn swift_tempurl_links_work_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(dir.path(), &data, "serve");
    let proxy = server.wait_ready();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("shared.txt"), b"for your eyes\n").unwrap();
    swift(proxy, &files, &["upload", "c", "shared.txt"]);
    swift(proxy, &files, &["post", "-m", "Temp-URL-Key:acctsecret"]);
    swift(
        proxy,
        &files,
        &["post", "-m", "Temp-URL-Key:contsecret", "c"],
    );

    let path = "/v1/AUTH_test/c/shared.txt";
    for key in ["acctsecret", "contsecret"] {
        let url = swift(proxy, &files, &["tempurl", "GET", "3600", path, key]);
        let url = url.trim();
        assert!(url.starts_with(path), "{url}");
        let (status, body) = support::get(proxy, url).expect("an answer");
        assert_eq!(status, 200, "{key}: {url}");
        assert_eq!(body, "for your eyes\n");
        // The same URL is for GET (and HEAD) only.
        let (status, _) =
            support::request(proxy, "PUT", url, &[], "overwritten").expect("an answer");
        assert_eq!(status, 401);
    }
    // Signed with the right key, but expired long ago.
    let url = swift(
        proxy,
        &files,
        &["tempurl", "--absolute", "GET", "1", path, "acctsecret"],
    );
    let (status, _) = support::get(proxy, url.trim()).expect("an answer");
    assert_eq!(status, 401);
    server.terminate();
}
