//! Swift's own `swift-recon` against a real four-node cluster (see
//! `support::cluster`): after some writes and one pass of each daemon on
//! every node, every node answers every check, disk usage and the
//! daemons' figures are reported, the rings and `swift.conf` match, and
//! a node whose object ring differs is named. The tool comes from the
//! reference venv (`scripts/swift-ref.sh`); `APUS_SWIFT_PYTHON` names its
//! interpreter, `swift-recon` sits beside it.
//!
//! `swift-recon` compares the nodes' `swift.conf` with the local one it
//! reads from the path its module was imported with (`/etc/swift`),
//! whatever `--swiftdir` says, and looks the nodes' answers up by that
//! path. The test runs the tool's own script with that one module
//! constant pointed at the cluster's `swift.conf`, which the nodes report.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use apus_ring::builder::{RingBuilder, AUTO_ID};
use apus_ring::Device;
use support::cluster::{Kind, MultiCluster, Options, NODES};
use support::{get, serial, swift_python};

/// Runs the reference venv's `swift-recon` script with `args`, its local
/// `swift.conf` being `swift_conf`; returns what it printed.
fn swift_recon(swift_conf: &Path, args: &[&str]) -> String {
    let python = swift_python();
    let script = python.with_file_name("swift-recon");
    assert!(script.exists(), "{} not found", script.display());
    let wrapper = "import runpy, sys\n\
                   import swift.cli.recon as recon\n\
                   recon.SWIFT_CONF_FILE = sys.argv[1]\n\
                   sys.argv = sys.argv[2:]\n\
                   runpy.run_path(sys.argv[0], run_name='__main__')\n";
    let out = Command::new(&python)
        .arg("-c")
        .arg(wrapper)
        .arg(swift_conf)
        .arg(&script)
        .args(args)
        .output()
        .expect("run swift-recon");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "swift-recon {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("Traceback"),
        "swift-recon {args:?}:\n{stdout}"
    );
    stdout
}

/// The line of `out` that starts with `prefix`, or a failure showing all.
fn line<'a>(out: &'a str, prefix: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{out}"))
}

/// The `reported: N` figure of a statistics line.
fn reported(stats_line: &str) -> u32 {
    stats_line
        .rsplit("reported: ")
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no reported count in {stats_line:?}"))
}

/// The `total: N` figure of a statistics line.
fn total(stats_line: &str) -> u64 {
    stats_line
        .split("total: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total in {stats_line:?}"))
}

/// An object ring over the cluster's four nodes that differs from
/// theirs (another partition power), at `path`.
fn other_object_ring(cluster: &MultiCluster, path: &Path) {
    let mut builder = RingBuilder::new(7, 3.0, 0).unwrap();
    for node in &cluster.nodes {
        builder
            .add_dev(Device {
                id: AUTO_ID,
                region: 1,
                zone: node.index as u32 + 1,
                ip: node.ip.to_string(),
                port: node.object_port,
                replication_ip: node.ip.to_string(),
                replication_port: node.object_port,
                device: node.device.clone(),
                weight: 100.0,
                meta: String::new(),
            })
            .unwrap();
    }
    builder.rebalance(Some(1), &mut |_| {}).unwrap();
    builder.ring_data().unwrap().save(path).unwrap();
}

#[test]
fn swift_recon_reads_every_node() {
    let _serial = serial();
    let mut cluster = MultiCluster::start(Options::default());
    let rings = fs::canonicalize(cluster.dir.path().join("rings")).unwrap();
    let swift_conf = rings.join("swift.conf");
    // The salt the nodes are given inline, where swift-recon reads it.
    fs::write(
        &swift_conf,
        "[swift-hash]\nswift_hash_path_prefix = scenario-prefix\n\
         swift_hash_path_suffix = scenario-suffix\n",
    )
    .unwrap();
    // Device directories are mount points for recon (Swift's marker).
    for node in &cluster.nodes {
        fs::write(node.device_path().join(".ismount"), "").unwrap();
    }

    // Some writes, then one pass of each daemon on every node.
    let (head, _) = cluster.request("PUT", "/recon-c", &[], b"");
    assert_eq!(head.status, 201);
    for i in 0..12 {
        let body = format!("object {i}");
        let (head, _) = cluster.request("PUT", &format!("/recon-c/o{i}"), &[], body.as_bytes());
        assert_eq!(head.status, 201);
    }
    for daemon in [
        "object-replicator",
        "object-reconstructor",
        "object-auditor",
        "object-updater",
        "object-expirer",
        "container-replicator",
        "container-auditor",
        "container-updater",
        "account-replicator",
        "account-auditor",
    ] {
        cluster.run_daemon_everywhere(daemon);
    }

    // A node's answers, straight.
    let object0 = cluster.nodes[0].addr(Kind::Object);
    let json = |addr, path: &str| -> serde_json::Value {
        let (status, body) = get(addr, path).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let repl = json(object0, "/recon/replication/object");
    assert!(
        repl["replication_stats"]["attempted"].as_u64().unwrap() > 0,
        "{repl}"
    );
    assert!(
        repl["object_replication_last"].as_f64().unwrap() > 1.6e9,
        "{repl}"
    );
    let asyncs = json(object0, "/recon/async");
    assert_eq!(asyncs["async_pending"], 0, "{asyncs}");
    let usage = json(object0, "/recon/diskusage");
    assert_eq!(usage[0]["device"], "d1", "{usage}");
    assert_eq!(usage[0]["mounted"], true, "{usage}");
    let audits = json(
        cluster.nodes[1].addr(Kind::Container),
        "/recon/auditor/container",
    );
    assert!(
        audits["container_audits_passed"].as_u64().is_some(),
        "{audits}"
    );
    let (status, body) = get(object0, "/recon/unknown").unwrap();
    assert_eq!(
        (status, body.as_str()),
        (404, "Invalid path: /recon/unknown")
    );

    // swift-recon: every check of the object servers.
    let dir = rings.to_str().unwrap();
    let out = swift_recon(
        &swift_conf,
        &[
            "object",
            "-a",
            "-r",
            "-u",
            "-d",
            "-q",
            "-l",
            "--md5",
            "--time",
            "--all",
            "--swiftdir",
            dir,
        ],
    );
    assert!(
        out.contains(&format!(
            "--> Starting reconnaissance on {NODES} hosts (object)"
        )),
        "{out}"
    );
    let all_matched = format!("{NODES}/{NODES} hosts matched, 0 error[s] while checking hosts.");
    // Ring md5s, swift.conf md5 and time.
    assert_eq!(out.matches(&all_matched).count(), 3, "{out}");
    assert!(
        out.contains(&format!("{NODES}/{NODES} hosts ok, 0 error[s]")),
        "{out}"
    );
    assert!(
        out.contains("Versions matched (2.38.3), 0 error[s]"),
        "{out}"
    );
    for stats in [
        "[async_pending]",
        "[replication_time]",
        "[replication_attempted]",
        "[replication_success]",
        "[replication_failure]",
        "[ALL_passes_last_path]",
        "[updater_last_sweep]",
        "[object_expiration_pass]",
        "[expired_last_pass]",
        "[object_reconstruction_time]",
        "[1m_load_avg]",
        "[quarantined_objects]",
        "[tcp_in_use]",
    ] {
        assert_eq!(reported(line(&out, stats)), NODES as u32, "{stats}:\n{out}");
    }
    // Figures that depend on no timing: every node replicated partitions
    // and audited objects (at least a write quorum of each of the 12),
    // and nothing was quarantined.
    assert!(total(line(&out, "[replication_attempted]")) > 0, "{out}");
    assert!(total(line(&out, "[replication_success]")) > 0, "{out}");
    assert!(
        total(line(&out, "[ALL_passes_last_path]")) >= 12 * 2,
        "{out}"
    );
    assert_eq!(total(line(&out, "[quarantined_objects]")), 0, "{out}");
    assert!(line(&out, "Most recent completion was ").contains(" ago) by "));
    // Disk usage of four mounted devices, none reported unmounted.
    assert!(!out.contains("Not mounted:"), "{out}");
    assert!(!out.contains("Device errors:"), "{out}");
    assert!(!out.contains("No drive info available"), "{out}");
    assert!(out.contains("Distribution Graph:"), "{out}");
    let used = line(&out, "Disk usage: space used: ");
    let figures: Vec<u64> = used
        .trim_start_matches("Disk usage: space used: ")
        .split(" of ")
        .map(|n| n.trim().parse().unwrap())
        .collect();
    assert!(figures[0] > 0 && figures[0] < figures[1], "{used}");
    assert!(!out.contains("!!"), "{out}");

    // The container and account servers.
    let out = swift_recon(
        &swift_conf,
        &["container", "account", "--all", "--swiftdir", dir],
    );
    for kind in ["container", "account"] {
        assert!(
            out.contains(&format!(
                "--> Starting reconnaissance on {NODES} hosts ({kind})"
            )),
            "{out}"
        );
        let done = format!("[{kind}_auditor_pass_completed]");
        assert_eq!(reported(line(&out, &done)), NODES as u32, "{out}");
    }
    assert_eq!(out.matches(&all_matched).count(), 6, "{out}");
    assert!(!out.contains("!!"), "{out}");
    assert_eq!(
        out.matches("[replication_attempted]").count(),
        2,
        "one replication report per server type:\n{out}"
    );

    // A local object ring unlike the nodes': no node matches it.
    let alt = cluster.dir.path().join("rings-alt");
    fs::create_dir_all(&alt).unwrap();
    for name in ["account.ring.gz", "container.ring.gz", "swift.conf"] {
        fs::copy(rings.join(name), alt.join(name)).unwrap();
    }
    other_object_ring(&cluster, &alt.join("object.ring.gz"));
    let out = swift_recon(
        &swift_conf,
        &["object", "--md5", "--swiftdir", alt.to_str().unwrap()],
    );
    assert!(
        out.contains(&format!(
            "0/{NODES} hosts matched, {NODES} error[s] while checking hosts."
        )),
        "{out}"
    );
    assert_eq!(
        out.matches("doesn't match on disk md5sum").count(),
        NODES,
        "{out}"
    );

    // One node loading that ring instead: it alone is named.
    let last = NODES - 1;
    let config = cluster.nodes[last].config.clone();
    let text = fs::read_to_string(&config).unwrap();
    let hash = "[hash]\nprefix = \"scenario-prefix\"\nsuffix = \"scenario-suffix\"\n";
    assert!(text.contains(hash) && text.contains("rings_dir = \"../rings\"\n"));
    let text = text.replace(hash, "").replace(
        "rings_dir = \"../rings\"\n",
        "rings_dir = \"../rings-alt\"\nswift_conf = \"../rings/swift.conf\"\n",
    );
    fs::write(&config, text).unwrap();
    cluster.stop_node(last);
    cluster.start_node(last);
    let out = swift_recon(&swift_conf, &["object", "--md5", "--swiftdir", dir]);
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("hosts matched"))
        .collect();
    assert_eq!(
        lines,
        [
            format!(
                "{}/{NODES} hosts matched, 1 error[s] while checking hosts.",
                NODES - 1
            ),
            all_matched.clone(),
        ],
        "{out}"
    );
    let mismatch = line(&out, "!! ");
    let node = &cluster.nodes[last];
    assert!(
        mismatch.starts_with(&format!(
            "!! http://{}/recon/ringmd5 (object.ring.gz => ",
            node.addr(Kind::Object)
        )),
        "{out}"
    );
    assert_eq!(out.matches("!! ").count(), 1, "{out}");
}
