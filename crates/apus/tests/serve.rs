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
