//! python-swiftclient's `swift` command against `apus serve`: upload, list,
//! stat, post -m, download (same bytes), delete, and a segmented upload
//! (`-S`) that makes a DLO manifest downloading byte-identical, and the
//! same with `--use-slo` (a static large object whose segments `swift
//! delete` removes); temporary URLs from `swift tempurl` and form
//! signatures from Swift's `swift-form-signature`. The client
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

/// Runs Swift's `swift-form-signature` tool from the reference venv and
/// returns its (expires, signature). Its console script calls `main()`
/// without the arguments `main(argv)` requires (Swift 2.38.3), so the
/// same function is called as the script would, with `sys.argv`.
fn form_signature(args: &[&str]) -> (String, String) {
    let tool = swift_command().with_file_name("swift-form-signature");
    assert!(tool.exists(), "{} not found", tool.display());
    let out = Command::new(swift_command().with_file_name("python"))
        .args([
            "-c",
            "import sys; from swift.cli.form_signature import main; sys.exit(main(sys.argv))",
        ])
        .args(args)
        .output()
        .expect("run swift-form-signature");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "swift-form-signature {args:?} failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    (field("Expires:"), field("Signature:"))
}

/// A browser-style form: the fields, then one file.
fn form_body(boundary: &str, fields: &[(&str, &str)], filename: &str, data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file1\"; \
             filename=\"{filename}\"\r\nContent-Type: text/plain\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend(data);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// A form signed by Swift's `swift-form-signature` with the account's
/// key uploads its file without a token and redirects; the same form
/// with its signature altered is refused.
#[test]
fn swift_formpost_signed_by_swift_form_signature() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(dir.path(), &data, "serve");
    let proxy = server.wait_ready();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    swift(proxy, &files, &["post", "uploads"]);
    swift(proxy, &files, &["post", "-m", "Temp-URL-Key:formsecret"]);

    let path = "/v1/AUTH_test/uploads/web_";
    let redirect = "http://example.com/after";
    let (expires, signature) =
        form_signature(&[path, redirect, "1048576", "2", "600", "formsecret"]);
    let boundary = "----formboundary7MA4YWxkTrZu0gW";
    let content = b"uploaded from a browser form\n";
    let fields = [
        ("redirect", redirect),
        ("max_file_size", "1048576"),
        ("max_file_count", "2"),
        ("expires", expires.as_str()),
        ("signature", signature.as_str()),
    ];
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let (head, _) = support::exchange(
        proxy,
        "POST",
        path,
        &[("Content-Type", &content_type)],
        &form_body(boundary, &fields, "hello.txt", content),
    );
    assert_eq!(head.status, 303);
    assert_eq!(
        head.header("location"),
        Some("http://example.com/after?status=201&message=")
    );
    let down = dir.path().join("down");
    std::fs::create_dir_all(&down).unwrap();
    swift(proxy, &down, &["download", "uploads", "web_hello.txt"]);
    assert_eq!(
        std::fs::read(down.join("web_hello.txt")).unwrap(),
        content.to_vec()
    );
    let stat = swift(proxy, &files, &["stat", "uploads", "web_hello.txt"]);
    assert!(stat.contains("Content Type: text/plain"), "{stat}");

    // One hex digit changed: refused, and nothing stored.
    let mut forged = signature.clone().into_bytes();
    forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let fields = [
        ("redirect", redirect),
        ("max_file_size", "1048576"),
        ("max_file_count", "2"),
        ("expires", expires.as_str()),
        ("signature", forged.as_str()),
    ];
    let (head, body) = support::exchange(
        proxy,
        "POST",
        path,
        &[("Content-Type", &content_type)],
        &form_body(boundary, &fields, "forged.txt", b"no"),
    );
    assert_eq!(head.status, 401);
    assert_eq!(body, b"FormPost: Invalid Signature");
    let listing = swift(proxy, &files, &["list", "uploads"]);
    assert_eq!(listing.lines().collect::<Vec<_>>(), ["web_hello.txt"]);
    server.terminate();
}
