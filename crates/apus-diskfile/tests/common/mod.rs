//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use apus_core::{HashConfig, Timestamp};
use apus_diskfile::{DiskFileConfig, DiskFileManager, FallocateReserve, Metadata};

pub const HASH_SUFFIX: &str = "apus-test-suffix";

pub fn hash_config() -> HashConfig {
    HashConfig::new("", HASH_SUFFIX)
}

/// A devices root with one device `sda`, and a manager over it.
pub struct Env {
    pub root: tempfile::TempDir,
    pub mgr: DiskFileManager,
}

impl Env {
    pub fn new() -> Env {
        Env::with(|_| {})
    }

    pub fn with(tweak: impl FnOnce(&mut DiskFileConfig)) -> Env {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sda")).unwrap();
        let mut conf = DiskFileConfig::new(root.path(), hash_config());
        conf.mount_check = false;
        conf.fallocate_reserve = FallocateReserve::Bytes(0);
        tweak(&mut conf);
        Env {
            root,
            mgr: DiskFileManager::new(conf),
        }
    }

    pub fn dev(&self) -> PathBuf {
        self.root.path().join("sda")
    }

    pub fn tmp_entries(&self) -> Vec<String> {
        names(&self.dev().join("tmp"))
    }
}

pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

pub fn ts(secs: f64) -> Timestamp {
    Timestamp::from_secs_f64(secs).unwrap()
}

/// A timestamp `ago` seconds in the past (recent enough not to be reclaimed).
pub fn recent(ago: f64) -> Timestamp {
    ts(Timestamp::now().as_secs_f64() - ago)
}

pub fn put_metadata(t: &Timestamp, body: &[u8]) -> Metadata {
    let mut md = Metadata::new();
    md.insert("X-Timestamp", t.internal());
    md.insert("Content-Type", "application/octet-stream");
    md.insert("Content-Length", body.len().to_string());
    md.insert("ETag", md5_hex(body));
    md
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    apus_core::hash::to_hex(&Md5::digest(data))
}

/// Swift's python, from `APUS_SWIFT_PYTHON` or the default venv.
pub fn swift_python() -> PathBuf {
    let path = std::env::var_os("APUS_SWIFT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/swift-ref/swift-venv/bin/python")
        });
    assert!(
        path.exists(),
        "reference Swift python not found at {}: run scripts/swift-ref.sh \
         (or set APUS_SWIFT_PYTHON) to install Swift 2.38.3 for the compatibility tests",
        path.display()
    );
    path
}

/// Runs a python script with Swift importable and the test hash salt set;
/// returns its stdout (panics with stderr on failure).
pub fn run_python(script: &str, args: &[&str]) -> String {
    let prelude = format!(
        "import sys, json, os, logging\n\
         from swift.common import utils\n\
         utils.HASH_PATH_PREFIX = b''\n\
         utils.HASH_PATH_SUFFIX = b'{HASH_SUFFIX}'\n"
    );
    let out = Command::new(swift_python())
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .args(args)
        .output()
        .expect("running Swift's python");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}
