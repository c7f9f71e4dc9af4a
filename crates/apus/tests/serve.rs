//! `apus serve` as a user runs it: the built binary on a temp data
//! directory, reached over HTTP, stopped with SIGTERM and started again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;

use apus_core::HashConfig;
use apus_ring::{Ring, RingData};
use support::{get, request, Server};

fn ring_port(data: &Path, kind: &str) -> u16 {
    let ring = RingData::load(&data.join(format!("{kind}.ring.gz"))).unwrap();
    ring.devs.iter().flatten().next().unwrap().port
}

#[test]
fn serve_builds_a_cluster_once_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(dir.path(), &data, "first");
    let proxy = server.wait_ready();

    let swift_conf = fs::read_to_string(data.join("swift.conf")).unwrap();
    assert!(swift_conf.contains("[swift-hash]"), "{swift_conf}");
    let mut rings = Vec::new();
    for kind in ["account", "container", "object"] {
        assert!(data.join(format!("{kind}.builder")).is_file());
        let ring = RingData::load(&data.join(format!("{kind}.ring.gz"))).unwrap();
        assert_eq!(ring.replica_count(), 3);
        assert_eq!(ring.devs.iter().flatten().count(), 4);
        // The storage server of each ring listens where the ring says.
        let ring_port = ring.devs.iter().flatten().next().unwrap().port;
        TcpStream::connect(("127.0.0.1", ring_port)).unwrap();
        rings.push(ring);
    }
    for d in 1..=4 {
        assert!(data.join(format!("devices/d{d}")).is_dir());
    }
    // The object server stores on the cluster's devices. The object goes
    // to a primary of its partition: the running replicator would move it
    // off any other device.
    let object_port = ring_port(&data, "object");
    let object_server = SocketAddr::from(([127, 0, 0, 1], object_port));
    let hash = HashConfig::from_swift_conf(&swift_conf).unwrap();
    let ring = Ring::load(&data.join("object.ring.gz")).unwrap();
    let part = ring.partition(&hash, "AUTH_test", Some("c"), Some("o"));
    let device = &ring.primaries(part)[0].device;
    let object = format!("/{device}/{part}/AUTH_test/c/o");
    let put = request(
        object_server,
        "PUT",
        &object,
        &[
            ("X-Timestamp", "1700000000.00000"),
            ("Content-Type", "text/plain"),
        ],
        "hello",
    );
    assert_eq!(put.map(|r| r.0), Some(201));

    // A second process on the same data is refused while the first runs.
    let mut second = Server::start(dir.path(), &data, "second");
    assert_eq!(second.wait_exit().code(), Some(2));
    assert!(second.stderr().contains("in use"), "{}", second.stderr());

    assert!(server.terminate().success(), "{}", server.stderr());
    let banner = fs::read_to_string(&server.stdout).unwrap();
    assert!(
        banner.contains(&format!("http://{proxy}/auth/v1.0")),
        "{banner}"
    );
    assert!(banner.contains("test:tester"), "{banner}");

    // A restart whose recorded port is taken says so and changes nothing.
    let taken = TcpListener::bind(("127.0.0.1", object_port)).unwrap();
    let mut blocked = Server::start(dir.path(), &data, "blocked");
    assert_eq!(blocked.wait_exit().code(), Some(2));
    let err = blocked.stderr();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("object.ring.gz"), "{err}");
    drop(taken);

    // A restart reuses the salt and the rings.
    let mut server = Server::start(dir.path(), &data, "restart");
    server.wait_ready();
    assert_eq!(
        fs::read_to_string(data.join("swift.conf")).unwrap(),
        swift_conf
    );
    for (kind, ring) in ["account", "container", "object"].iter().zip(&rings) {
        let again = RingData::load(&data.join(format!("{kind}.ring.gz"))).unwrap();
        assert_eq!(&again, ring, "{kind}");
    }
    assert_eq!(
        get(object_server, &object),
        Some((200, "hello".to_string()))
    );
    assert!(server.terminate().success(), "{}", server.stderr());
}

#[test]
fn a_bad_config_file_is_one_line_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("node.toml");
    fs::write(&conf, "roles = [\"proxy\"]\n[proxy]\nbind = 8080\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_apus"))
        .args(["serve", "--config"])
        .arg(&conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("node.toml"), "{stderr}");
}

#[test]
fn a_clock_offset_that_is_not_seconds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_apus"))
        .args(["serve", "--data"])
        .arg(dir.path().join("data"))
        .env("APUS_CLOCK_OFFSET_SECS", "5 minutes")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("APUS_CLOCK_OFFSET_SECS"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "it started anyway");
}

/// Builds `<name>.ring.gz` in `dir` with `replicas` replicas over eight
/// devices.
fn build_ring(dir: &Path, name: &str, replicas: u32) {
    let builder = format!("{name}.builder");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_apus"))
            .current_dir(dir)
            .arg("ring")
            .arg(&builder)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["create", "6", &replicas.to_string(), "1"]);
    for d in 0..8 {
        run(&["add", &format!("r1z{}-127.0.0.1:6200/d{d}", d + 1), "100"]);
    }
    run(&["rebalance"]);
}

/// An erasure-coded policy whose ring does not place one device per
/// fragment, or whose code is unknown, stops the node at startup with one
/// line naming the policy.
#[test]
fn erasure_coded_policies_must_match_their_rings() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("srv")).unwrap();
    let swift_conf = |ec: &str| {
        fs::write(
            dir.path().join("swift.conf"),
            format!(
                "[swift-hash]\nswift_hash_path_suffix = s\n\n\
                 [storage-policy:0]\nname = gold\ndefault = yes\n\n\
                 [storage-policy:1]\nname = ec42\npolicy_type = erasure_coding\n{ec}"
            ),
        )
        .unwrap();
    };
    // The checks come before anything listens: these ports are never
    // bound.
    let conf = dir.path().join("node.toml");
    fs::write(
        &conf,
        "roles = [\"storage\"]\n[storage]\ndevices = \"srv\"\nobject_port = 1\ncontainer_port = 2\naccount_port = 3\n",
    )
    .unwrap();
    for (name, replicas) in [
        ("account", 3),
        ("container", 3),
        ("object", 3),
        ("object-1", 3),
    ] {
        build_ring(dir.path(), name, replicas);
    }
    let serve = || {
        let out = Command::new(env!("CARGO_BIN_EXE_apus"))
            .args(["serve", "--config"])
            .arg(&conf)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        stderr
    };
    let four_two =
        "ec_type = isa_l_rs_vand\nec_num_data_fragments = 4\nec_num_parity_fragments = 2\n";
    swift_conf(four_two);
    let stderr = serve();
    assert!(
        stderr.contains("policy 1 (ec42)")
            && stderr.contains("exactly 6 replicas")
            && stderr.contains("has 3"),
        "{stderr}"
    );
    // The ring fits 4+2, and the policy says 10+4.
    build_ring(dir.path(), "object-1", 6);
    swift_conf(
        "ec_type = isa_l_rs_vand\nec_num_data_fragments = 10\nec_num_parity_fragments = 4\n",
    );
    let stderr = serve();
    assert!(
        stderr.contains("policy 1 (ec42)")
            && stderr.contains("exactly 14 replicas")
            && stderr.contains("has 6"),
        "{stderr}"
    );
    // A code apus does not have.
    swift_conf(
        "ec_type = jerasure_rs_vand\nec_num_data_fragments = 4\nec_num_parity_fragments = 2\n",
    );
    let stderr = serve();
    assert!(
        stderr.contains("jerasure_rs_vand") && stderr.contains("not one of"),
        "{stderr}"
    );
}

/// Waits (bounded) until the object servers logged `count` answers of
/// `status` to PUTs of `name`.
fn wait_for_object_puts(server: &support::Server, name: &str, status: u16, count: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = server.stderr();
        let seen = log
            .lines()
            .filter(|l| {
                l.contains("object-server")
                    && l.contains("method=PUT")
                    && l.contains(name)
                    && l.contains(&format!("status={status}"))
            })
            .count();
        if seen >= count {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{seen} of {count} object PUTs of {name} answered {status}:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `apus serve` hands its proxy's uploads to its own object servers
/// without a socket (`apus_http::local`); what a PUT guarantees must not
/// change with it: a body whose ETag is wrong, or whose client goes away
/// before the end, leaves no object on any replica, and a whole one reads
/// back whole.
#[test]
fn uploads_to_the_servers_of_the_process_keep_their_guarantees() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(dir.path(), &data, "local");
    let proxy = server.wait_ready();
    let (token, account) = support::login(proxy, "test:tester", "testing");
    let auth = [("X-Auth-Token", token.as_str())];
    let (head, _) = support::exchange(proxy, "PUT", &format!("{account}/c"), &auth, b"");
    assert_eq!(head.status, 201);

    let body = support::pattern(1 << 20, 7);
    let etag = support::md5_hex(&body);
    let put = |name: &str, etag: &str| {
        let headers = [("X-Auth-Token", token.as_str()), ("Etag", etag)];
        support::exchange(
            proxy,
            "PUT",
            &format!("{account}/c/{name}"),
            &headers,
            &body,
        )
        .0
        .status
    };
    assert_eq!(put("whole", &etag), 201);
    // Handed over in the process: the object servers saw no peer address.
    wait_for_object_puts(&server, "/c/whole", 201, 3);
    assert!(
        server
            .stderr()
            .lines()
            .any(|l| l.contains("/c/whole") && l.contains("remote=127.0.0.1:0")),
        "{}",
        server.stderr()
    );
    let (head, got) = support::exchange(proxy, "GET", &format!("{account}/c/whole"), &auth, b"");
    assert_eq!(head.status, 200);
    assert_eq!(support::md5_hex(&got), etag);
    assert_eq!(support::data_files(&data.join("devices")).len(), 3);

    assert_eq!(put("wrong-etag", &"0".repeat(32)), 422);

    // Clients that stop part-way: one that declared the length, one
    // sending chunks.
    let path = format!("{account}/c/cut-short");
    let len = body.len().to_string();
    let mut conn = support::send_head(
        proxy,
        "PUT",
        &path,
        &[("X-Auth-Token", token.as_str()), ("Content-Length", &len)],
        std::time::Duration::from_secs(30),
    );
    conn.write_all(&body[..300_000]).unwrap();
    conn.flush().unwrap();
    drop(conn);
    wait_for_object_puts(&server, "/c/cut-short", 499, 3);

    // HTTP/1.1: chunked bodies are not HTTP/1.0's.
    let mut conn = TcpStream::connect(proxy).unwrap();
    conn.write_all(
        format!(
            "PUT {account}/c/chunks-cut HTTP/1.1\r\nHost: localhost\r\n\
             X-Auth-Token: {token}\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    for piece in body[..400_000].chunks(100_000) {
        conn.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .unwrap();
        conn.write_all(piece).unwrap();
        conn.write_all(b"\r\n").unwrap();
    }
    conn.flush().unwrap();
    // Give the proxy time to pass what it got on before the client goes.
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(conn);
    wait_for_object_puts(&server, "/c/chunks-cut", 499, 3);

    for name in ["wrong-etag", "cut-short", "chunks-cut"] {
        let (head, _) = support::exchange(proxy, "GET", &format!("{account}/c/{name}"), &auth, b"");
        assert_eq!(head.status, 404, "{name}");
    }
    let left = support::data_files(&data.join("devices"));
    assert_eq!(left.len(), 3, "{left:?}");
    let mut listing = String::new();
    support::send_head(
        proxy,
        "GET",
        &format!("{account}/c"),
        &auth,
        std::time::Duration::from_secs(10),
    )
    .read_to_string(&mut listing)
    .unwrap();
    assert!(listing.ends_with("\r\n\r\nwhole\n"), "{listing}");
    assert!(server.terminate().success(), "{}", server.stderr());
}
