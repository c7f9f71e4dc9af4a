//! `apus dispersion populate|report` and `apus status` against a real
//! four-node cluster (see `support::cluster`). The dispersion report is
//! 100% on a healthy cluster and drops by exactly the copies of a wiped
//! device (counted from the rings here), and Swift's own
//! `swift-dispersion-report`, from the reference venv (`APUS_SWIFT_PYTHON`
//! names its interpreter, the script sits beside it), reports the same
//! figures on the same cluster. `apus status` lists every server OK on a
//! healthy cluster and a stopped node's servers first, as unreachable,
//! with a failing exit code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use apus_ring::Ring;
use support::cluster::{Kind, MultiCluster, Options, NODES};
use support::{apus_bin, serial, swift_python};

/// The cluster's rings directory, with a `swift.conf` holding the salt
/// the nodes are given inline, and device directories marked as mount
/// points for recon.
fn prepare(cluster: &MultiCluster) -> PathBuf {
    let rings = fs::canonicalize(cluster.dir.path().join("rings")).unwrap();
    fs::write(
        rings.join("swift.conf"),
        "[swift-hash]\nswift_hash_path_prefix = scenario-prefix\n\
         swift_hash_path_suffix = scenario-suffix\n",
    )
    .unwrap();
    for node in &cluster.nodes {
        fs::write(node.device_path().join(".ismount"), "").unwrap();
    }
    rings
}

fn apus(args: &[&str]) -> Output {
    Command::new(apus_bin())
        .args(args)
        .output()
        .expect("run apus")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the reference venv's `swift-dispersion-report` with the cluster's
/// `swift_dir` (its salt and policies are read from the module-level
/// swift.conf path, pointed there first).
fn swift_dispersion_report(swift_dir: &Path, conf: &Path) -> serde_json::Value {
    let python = swift_python();
    let script = python.with_file_name("swift-dispersion-report");
    assert!(script.exists(), "{} not found", script.display());
    let wrapper = "import runpy, sys\n\
                   import swift.common.utils as utils\n\
                   utils.set_swift_dir(sys.argv[1])\n\
                   import swift.common.storage_policy as sp\n\
                   sp.reload_storage_policies()\n\
                   sys.argv = sys.argv[2:]\n\
                   runpy.run_path(sys.argv[0], run_name='__main__')\n";
    let out = Command::new(&python)
        .arg("-c")
        .arg(wrapper)
        .arg(swift_dir)
        .arg(&script)
        .arg("-j")
        .arg(conf)
        .output()
        .expect("run swift-dispersion-report");
    assert!(
        out.status.success(),
        "swift-dispersion-report: {}",
        text(&out)
    );
    let line = stdout(&out);
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// Partitions of `ring` (all of them are sampled) with a copy on `dev`.
fn parts_on(ring: &Ring, dev: &str) -> u64 {
    (0..ring.partition_count())
        .filter(|p| ring.primaries(*p).iter().any(|d| d.device == dev))
        .count() as u64
}

#[test]
fn dispersion_report_counts_a_wiped_device() {
    let _serial = serial();
    let mut cluster = MultiCluster::start(Options::default());
    let rings = prepare(&cluster);
    let conf = cluster.dir.path().join("dispersion.conf");
    fs::write(
        &conf,
        format!(
            "[dispersion]\nauth_url = http://{}/auth/v1.0\nauth_user = test:tester\n\
             auth_key = testing\nswift_dir = {}\ndispersion_coverage = 100\n\
             retries = 1\nconcurrency = 8\n",
            cluster.proxy_addr,
            rings.display()
        ),
    )
    .unwrap();
    let conf_s = conf.to_str().unwrap();
    let container_ring = cluster.ring(Kind::Container);
    let object_ring = cluster.ring(Kind::Object);
    let parts = u64::from(container_ring.partition_count());
    assert_eq!(parts, u64::from(object_ring.partition_count()));
    let copies = parts * 3;

    let out = apus(&["dispersion", "populate", conf_s]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains("Using storage policy: Policy-0"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "Created {parts} containers for dispersion reporting"
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("Created {parts} objects for dispersion reporting")),
        "{printed}"
    );

    // Healthy: every copy found, every partition sampled.
    let out = apus(&["dispersion", "report", conf_s]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    for kind in ["container", "object"] {
        assert!(
            printed.contains(&format!(
                "100.00% of {kind} copies found ({copies} of {copies})"
            )),
            "{printed}"
        );
        assert!(
            printed.contains(&format!(
                "Sample represents 100.00% of the {kind} partition space"
            )),
            "{printed}"
        );
    }
    let ours = report_json(conf_s);
    assert_eq!(ours["container"]["pct_found"], 100.0, "{ours}");
    assert_eq!(ours["object"]["pct_found"], 100.0, "{ours}");
    let swift = swift_dispersion_report(&rings, &conf);
    assert_eq!(ours, swift, "apus and Swift disagree on a healthy cluster");

    // Node 1's device wiped: each partition with a copy there misses one.
    let wiped = &cluster.nodes[0].device.clone();
    let lost_containers = parts_on(&container_ring, wiped);
    let lost_objects = parts_on(&object_ring, wiped);
    assert!(lost_containers > 0 && lost_objects > 0);
    cluster.stop_node(0);
    let dev = cluster.nodes[0].device_path();
    for entry in fs::read_dir(&dev).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            fs::remove_dir_all(&path).unwrap();
        }
    }
    cluster.start_node(0);

    let out = apus(&["dispersion", "report", conf_s]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    for (kind, lost) in [("container", lost_containers), ("object", lost_objects)] {
        let found = copies - lost;
        let pct = 100.0 * found as f64 / copies as f64;
        assert!(
            printed.contains(&format!(
                "{pct:.2}% of {kind} copies found ({found} of {copies})"
            )),
            "{printed}"
        );
    }
    assert!(
        printed.contains(&format!(
            "There were {lost_containers} partitions missing 1 copy."
        )),
        "{printed}"
    );
    let ours = report_json(conf_s);
    assert_eq!(ours["container"]["missing_1"], lost_containers, "{ours}");
    assert_eq!(ours["object"]["missing_1"], lost_objects, "{ours}");
    assert_eq!(
        ours["object"]["copies_found"],
        copies - lost_objects,
        "{ours}"
    );
    let swift = swift_dispersion_report(&rings, &conf);
    assert_eq!(ours, swift, "apus and Swift disagree after the wipe");
}

fn report_json(conf: &str) -> serde_json::Value {
    let out = apus(&["dispersion", "report", "--dump-json", conf]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_str(stdout(&out).trim()).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

#[test]
fn dispersion_takes_its_options_inline() {
    let _serial = serial();
    let cluster = MultiCluster::start(Options::default());
    let rings = prepare(&cluster);
    let auth = format!("auth_url=http://{}/auth/v1.0", cluster.proxy_addr);
    let dir = format!("swift_dir={}", rings.display());
    let set = [
        "--set",
        &auth,
        "--set",
        "auth_user=test:tester",
        "--set",
        "auth_key=testing",
        "--set",
        &dir,
        "--set",
        "dispersion_coverage=10",
    ];
    let mut args = vec!["dispersion", "populate", "--container-only"];
    args.extend(set);
    let out = apus(&args);
    assert!(out.status.success(), "{}", text(&out));
    // 10% of 64 partitions: 6.4 asked for, 6 created.
    assert!(
        stdout(&out).contains("Created 6 containers"),
        "{}",
        text(&out)
    );
    let mut args = vec!["dispersion", "report", "--container-only", "-j"];
    args.extend(set);
    let out = apus(&args);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["container"]["copies_found"], 18, "{v}");
    assert_eq!(v["container"]["pct_found"], 100.0, "{v}");
    assert!(v.get("object").is_none(), "{v}");
}

#[test]
fn status_lists_a_stopped_node_first() {
    let _serial = serial();
    let mut cluster = MultiCluster::start(Options::default());
    let rings = prepare(&cluster);
    let dir = rings.to_str().unwrap();

    // The devices live on whatever disk the machine has; how full it is
    // is not this test's business.
    let out = apus(&["status", "--swift-dir", dir, "--full-percent", "100"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    assert!(
        printed.contains(&format!("{NODES} of {NODES} nodes OK")),
        "{printed}"
    );
    let ok_lines = printed.lines().filter(|l| l.starts_with("OK ")).count();
    assert_eq!(ok_lines, NODES * 3, "{printed}");

    let out = apus(&[
        "status",
        "--swift-dir",
        dir,
        "--json",
        "--full-percent",
        "100",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["nodes"], NODES, "{v}");
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), NODES * 3, "{v}");
    for s in servers {
        assert_eq!(s["ring_md5_matches"], true, "{s}");
        assert_eq!(s["swift_conf_md5_matches"], true, "{s}");
        assert_eq!(s["healthcheck"], true, "{s}");
    }

    let stopped = 2;
    let ip = cluster.nodes[stopped].ip.to_string();
    cluster.stop_node(stopped);
    let out = apus(&["status", "--swift-dir", dir, "--timeout", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let printed = stdout(&out);
    let rows: Vec<&str> = printed.lines().skip(1).collect();
    for row in &rows[..3] {
        assert!(row.starts_with("UNREACHABLE "), "{printed}");
        assert!(row.contains(&format!("{ip}:")), "{printed}");
    }
    assert!(rows[3].starts_with("OK "), "{printed}");
    assert!(
        printed.contains(&format!("{} of {NODES} nodes OK", NODES - 1)),
        "{printed}"
    );

    let out = apus(&["status", "--swift-dir", dir, "--timeout", "2", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["servers"][0]["reachable"], false, "{v}");
    assert_eq!(v["servers"][0]["ip"], ip.as_str(), "{v}");
    assert_eq!(v["nodes_ok"], NODES - 1, "{v}");
}
