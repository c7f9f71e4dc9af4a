//! Ring compatibility with Swift itself: rings written by `apus ring` load in
//! Swift's `Ring` with identical placements, and rings written by
//! `swift-ring-builder` load in apus with identical placements.
//!
//! Needs the reference Swift (`pip install swift==2.38.3` in a venv). The
//! test command in the README installs it; `APUS_SWIFT_PYTHON` names its
//! interpreter (default: `$HOME/.cache/swift-ref/swift-venv/bin/python`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use apus_core::HashConfig;
use apus_ring::Ring;

const HANDOFFS: usize = 10;
const PREFIX: &str = "apus-prefix";
const SUFFIX: &str = "apus-suffix";

fn swift_python() -> PathBuf {
    let python = match std::env::var_os("APUS_SWIFT_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/swift-ref/swift-venv/bin/python")
        }
    };
    assert!(
        python.exists(),
        "the reference Swift is not installed at {}: run the README's test command (scripts/test), \
         which installs it, or set APUS_SWIFT_PYTHON",
        python.display()
    );
    python
}

fn apus(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_apus"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run apus");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "apus {args:?} failed ({code}): {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Deterministic names mixing ASCII, Latin-1, CJK and astral characters,
/// with the account, container and object forms Swift hashes.
fn random_names(count: usize) -> Vec<(String, Option<String>, Option<String>)> {
    const ALPHABET: &[char] = &[
        'a', 'b', 'z', '0', '9', '-', '_', '.', '/', ' ', '%', 'é', 'ß', 'Ω', 'я', '中', '文',
        'ア', '😀', '𝄞', '\u{202e}',
    ];
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let word = |next: &mut dyn FnMut() -> u64| -> String {
        let len = 1 + (next() % 24) as usize;
        (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect()
    };
    (0..count)
        .map(|i| {
            let account = format!("AUTH_{}", word(&mut next));
            match i % 3 {
                0 => (account, None, None),
                1 => (account, Some(word(&mut next)), None),
                _ => (account, Some(word(&mut next)), Some(word(&mut next))),
            }
        })
        .collect()
}

/// Runs Swift's Ring over `ring_file` and checks apus's answers equal it.
fn assert_swift_agrees(dir: &Path, ring_file: &Path) {
    let names = random_names(10_000);
    let names_json: Vec<serde_json::Value> = names
        .iter()
        .map(|(a, c, o)| serde_json::json!([a, c, o]))
        .collect();
    let names_file = dir.join("names.json");
    std::fs::write(&names_file, serde_json::to_vec(&names_json).unwrap()).unwrap();
    let out_file = dir.join("swift.json");
    let status = Command::new(swift_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/swift_ring_dump.py"))
        .arg(ring_file)
        .args([PREFIX, SUFFIX])
        .arg(&names_file)
        .arg(HANDOFFS.to_string())
        .arg(&out_file)
        .status()
        .expect("run Swift's python");
    assert!(
        status.success(),
        "Swift could not load {}",
        ring_file.display()
    );
    let swift: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();

    let ring = Ring::load(ring_file).expect("apus loads the ring");
    assert_eq!(
        swift["part_power"].as_u64().unwrap(),
        u64::from(ring.part_power())
    );
    let parts = swift["parts"].as_array().unwrap();
    assert_eq!(parts.len(), ring.partition_count() as usize);
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let mut handoffs_seen = 0;
    for (part, entry) in parts.iter().enumerate() {
        let part = part as u32;
        let primaries: Vec<u32> = ring.primaries(part).iter().map(|d| d.id).collect();
        assert_eq!(primaries, ids(&entry[0]), "primaries of partition {part}");
        let handoffs: Vec<u32> = ring.handoffs(part).take(HANDOFFS).map(|d| d.id).collect();
        assert_eq!(handoffs, ids(&entry[1]), "handoffs of partition {part}");
        handoffs_seen += handoffs.len();
    }
    assert!(handoffs_seen > 0, "the ring has handoffs to compare");
    let hash = HashConfig::new(PREFIX, SUFFIX);
    let swift_name_parts = swift["names"].as_array().unwrap();
    assert_eq!(swift_name_parts.len(), names.len());
    for ((a, c, o), swift_part) in names.iter().zip(swift_name_parts) {
        let part = ring.partition(&hash, a, c.as_deref(), o.as_deref());
        assert_eq!(
            u64::from(part),
            swift_part.as_u64().unwrap(),
            "partition of {a:?}/{c:?}/{o:?}"
        );
    }
}

/// Devices over 2 regions, 5 zones, 2 hosts per zone and 2 disks per host,
/// with unequal weights, in swift-ring-builder's add syntax.
fn device_args() -> Vec<String> {
    let mut args = Vec::new();
    let mut n = 0;
    for (region, zones) in [(1, 3), (2, 2)] {
        for zone in 1..=zones {
            for host in 1..=2 {
                for disk in 1..=2 {
                    n += 1;
                    args.push(format!(
                        "r{region}z{zone}-127.0.{zone}.{host}:60{region}0/d{disk}_rack{zone}"
                    ));
                    args.push(if n % 3 == 0 {
                        "150".into()
                    } else {
                        "100".into()
                    });
                }
            }
        }
    }
    args
}

fn build_with_apus(dir: &Path, part_power: u32) -> PathBuf {
    let builder = "object.builder";
    apus(
        dir,
        &["ring", builder, "create", &part_power.to_string(), "3", "1"],
    );
    let mut add = vec!["ring".to_string(), builder.to_string(), "add".to_string()];
    add.extend(device_args());
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    apus(dir, &add);
    apus(dir, &["ring", builder, "rebalance", "--seed", "7"]);
    // A second generation: one device removed, one added, so the ring has
    // a hole in its device list and moved partitions.
    apus(dir, &["ring", builder, "pretend_min_part_hours_passed"]);
    apus(dir, &["ring", builder, "remove", "d3"]);
    apus(
        dir,
        &["ring", builder, "add", "r2z3-127.0.9.1:6020/d9", "100"],
    );
    apus(dir, &["ring", builder, "rebalance", "--seed", "8"]);
    dir.join("object.ring.gz")
}

#[test]
fn apus_ring_loads_in_swift_identically() {
    let dir = tempfile::tempdir().unwrap();
    let ring_file = build_with_apus(dir.path(), 12);
    assert_swift_agrees(dir.path(), &ring_file);
}

/// Part power 17 makes Swift's handoff walk step by 2 partitions, a path
/// smaller rings never take.
#[test]
fn apus_ring_with_stepped_handoff_walk_loads_in_swift_identically() {
    let dir = tempfile::tempdir().unwrap();
    let ring_file = build_with_apus(dir.path(), 17);
    assert_swift_agrees(dir.path(), &ring_file);
}

#[test]
fn swift_built_ring_loads_in_apus_identically() {
    let dir = tempfile::tempdir().unwrap();
    let python = swift_python();
    let srb = python.with_file_name("swift-ring-builder");
    let run = |args: &[String]| {
        let out = Command::new(&srb)
            .current_dir(dir.path())
            .arg("object.builder")
            .args(args)
            .output()
            .expect("run swift-ring-builder");
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code == 0 || code == 1,
            "swift-ring-builder {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["create".into(), "11".into(), "3".into(), "1".into()]);
    let mut add = vec!["add".to_string()];
    add.extend(device_args());
    run(&add);
    // A third region with a single host makes the region pass of the
    // handoff walk matter.
    run(&["add".into(), "r3z1-127.0.30.1:6030/d1".into(), "100".into()]);
    run(&["rebalance".into(), "7".into()]);
    assert_swift_agrees(dir.path(), &dir.path().join("object.ring.gz"));
}
