//! `apus ring` and `apus nodes` on bad input: a clear one-line error on
//! stderr and exit code 2, never a panic; and the everyday flow works.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn apus(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apus"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run apus")
}

/// Asserts exit code 2 and a single `error: ...` line mentioning `needle`.
fn assert_clean_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(needle), "{needle:?} not in {stderr}");
}

fn ring_with_devices(dir: &Path, devices: usize) {
    assert!(apus(dir, &["ring", "b.builder", "create", "8", "3", "1"])
        .status
        .success());
    for d in 1..=devices {
        let value = format!("r1z{d}-127.0.0.1:6200/d{d}");
        let out = apus(dir, &["ring", "b.builder", "add", &value, "100"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn bad_create_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_clean_error(
        &apus(d, &["ring", "b.builder", "create", "33", "3", "1"]),
        "part power",
    );
    assert_clean_error(
        &apus(d, &["ring", "b.builder", "create", "0", "3", "1"]),
        "part power",
    );
    assert_clean_error(
        &apus(d, &["ring", "b.builder", "create", "8", "x", "1"]),
        "replica",
    );
    assert_clean_error(
        &apus(d, &["ring", "b.builder", "create", "8", "3", "-1"]),
        "min_part_hours",
    );
    assert_clean_error(
        &apus(d, &["ring", "b.builder", "create", "8", "3"]),
        "usage",
    );
    assert!(
        !d.join("b.builder").exists(),
        "no builder file from failed creates"
    );
}

#[test]
fn malformed_devices_and_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ring_with_devices(d, 2);
    for bad in [
        "r1z1-1.2.3:6200/d9",
        "r1z1-127.0.0.1/d9",
        "z-127.0.0.1:6200/d9",
        "r1z1-127.0.0.1:99999/d9",
        "r1z1-127.0.0.1:6200/",
    ] {
        assert_clean_error(&apus(d, &["ring", "b.builder", "add", bad, "100"]), "");
    }
    assert_clean_error(
        &apus(
            d,
            &["ring", "b.builder", "add", "r1z3-127.0.0.1:6200/d3", "-5"],
        ),
        "weight",
    );
    assert_clean_error(
        &apus(
            d,
            &["ring", "b.builder", "add", "r1z1-127.0.0.1:6200/d1", "100"],
        ),
        "",
    );
    assert_clean_error(
        &apus(d, &["ring", "b.builder", "set_weight", "d9", "10"]),
        "matches no devices",
    );
    assert_clean_error(
        &apus(d, &["ring", "b.builder", "remove", "d77"]),
        "matches no devices",
    );
    assert_clean_error(
        &apus(d, &["ring", "b.builder", "set_info", "d0", "bad host!:1/x"]),
        "",
    );
    assert_clean_error(
        &apus(d, &["ring", "b.builder", "search", "q"]),
        "search value",
    );
    assert_clean_error(
        &apus(d, &["ring", "b.builder", "frobnicate"]),
        "unknown command",
    );
}

#[test]
fn replicas_above_device_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ring_with_devices(d, 2);
    assert_clean_error(&apus(d, &["ring", "b.builder", "rebalance"]), "devices");
    assert!(!d.join("b.ring.gz").exists());
}

#[test]
fn corrupt_and_truncated_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ring_with_devices(d, 3);
    assert!(apus(d, &["ring", "b.builder", "rebalance"])
        .status
        .success());
    let builder = std::fs::read(d.join("b.builder")).unwrap();
    let ring = std::fs::read(d.join("b.ring.gz")).unwrap();
    for cut in [0, 5, 20, builder.len() / 2, builder.len() - 1] {
        std::fs::write(d.join("t.builder"), &builder[..cut]).unwrap();
        assert_clean_error(&apus(d, &["ring", "t.builder"]), "t.builder");
    }
    for cut in [0, 5, 20, ring.len() / 2, ring.len() - 1] {
        std::fs::write(d.join("t.ring.gz"), &ring[..cut]).unwrap();
        assert_clean_error(
            &apus(d, &["nodes", "t.ring.gz", "a", "--hash-suffix", "x"]),
            "t.ring.gz",
        );
    }
    let mut flipped = ring.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    std::fs::write(d.join("f.ring.gz"), &flipped).unwrap();
    assert_clean_error(
        &apus(d, &["nodes", "f.ring.gz", "a", "--hash-suffix", "x"]),
        "f.ring.gz",
    );
    std::fs::write(d.join("g.builder"), b"this is not a builder file at all").unwrap();
    assert_clean_error(&apus(d, &["ring", "g.builder"]), "g.builder");
    assert_clean_error(
        &apus(d, &["nodes", "missing.ring.gz", "a", "--hash-suffix", "x"]),
        "missing.ring.gz",
    );
}

#[test]
fn nodes_json_names_primaries_and_handoffs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ring_with_devices(d, 5);
    assert!(apus(d, &["ring", "b.builder", "rebalance"])
        .status
        .success());
    let out = apus(
        d,
        &[
            "nodes",
            "b.ring.gz",
            "AUTH_a",
            "c",
            "o",
            "--hash-suffix",
            "x",
            "--json",
        ],
    );
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let primaries = v["primaries"].as_array().unwrap();
    let handoffs = v["handoffs"].as_array().unwrap();
    assert_eq!(primaries.len(), 3);
    assert_eq!(handoffs.len(), 2);
    let hash = apus_core::HashConfig::new("", "x").hash_path("AUTH_a", Some("c"), Some("o"));
    assert_eq!(v["hash"], hash);
    let ring = apus_ring::Ring::load(&d.join("b.ring.gz")).unwrap();
    let part = ring.partition(
        &apus_core::HashConfig::new("", "x"),
        "AUTH_a",
        Some("c"),
        Some("o"),
    );
    assert_eq!(v["partition"], part);
    let mut ids: Vec<u64> = primaries
        .iter()
        .chain(handoffs)
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2, 3, 4]);
    assert_clean_error(&apus(d, &["nodes", "b.ring.gz", "AUTH_a"]), "hash");
}
