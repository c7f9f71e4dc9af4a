#![allow(dead_code)]

use std::path::PathBuf;

use apus_core::Timestamp;
use apus_db::{AccountBroker, BrokerOptions, ContainerBroker, Listing, ObjectEntry};

pub fn ts(secs: u64) -> Timestamp {
    Timestamp::from_ticks(secs * 100_000, 0).unwrap()
}

pub fn tsf(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// A database path laid out like a device: dev/containers/part/suf/hash/hash.db
pub fn db_path(dir: &tempfile::TempDir, kind: &str) -> PathBuf {
    dir.path()
        .join("sda1")
        .join(kind)
        .join("7")
        .join("abc")
        .join("0123456789abcdef0123456789abcabc")
        .join("0123456789abcdef0123456789abcabc.db")
}

pub fn container(dir: &tempfile::TempDir) -> ContainerBroker {
    ContainerBroker::create(
        &db_path(dir, "containers"),
        "AUTH_test",
        "cont",
        ts(1),
        0,
        BrokerOptions::default(),
    )
    .unwrap()
}

pub fn account(dir: &tempfile::TempDir) -> AccountBroker {
    AccountBroker::create(
        &db_path(dir, "accounts"),
        "AUTH_test",
        ts(1),
        BrokerOptions::default(),
    )
    .unwrap()
}

pub fn names<T>(rows: &[Listing<T>], name: impl Fn(&T) -> String) -> Vec<String> {
    rows.iter()
        .map(|r| match r {
            Listing::Item(t) => name(t),
            Listing::Subdir(s) => format!("{s} (dir)"),
        })
        .collect()
}

pub fn obj_names(rows: &[Listing<ObjectEntry>]) -> Vec<String> {
    names(rows, |o| o.name.clone())
}

pub fn swift_python() -> PathBuf {
    if let Ok(p) = std::env::var("APUS_SWIFT_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/swift-ref/swift-venv/bin/python")
}
