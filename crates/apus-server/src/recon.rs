//! `/recon/<what>`: Swift's recon middleware, answered by the object,
//! container and account servers alike.
//!
//! Each answer is a JSON document in the shape Swift's middleware gives
//! (key names, nesting, `null` where a figure is missing), read from the
//! node at request time: `/proc` (`load`, `mem`, `mounted`, `sockstat`),
//! the devices directory (`unmounted`, `diskusage`, `quarantined`,
//! `devices`), the ring files and `swift.conf` (`ringmd5`,
//! `swiftconfmd5`), or the recon cache the daemons write after each pass
//! (`replication`, `auditor`, `updater`, `expirer`, `reconstruction`,
//! `async`, `sharding`, `driveaudit`, `relinker`; see
//! [`apus_proto::recon`]). A cache file that is missing or unreadable
//! gives `null` for each of its keys; a `/proc` file or devices
//! directory that cannot be read gives a 500, as an exception in Swift's
//! middleware does. Every method is answered as GET is (HEAD without the
//! body), as Swift's middleware does; an unknown check is a 404.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apus_http::{empty, full, Body};
use apus_proto::recon as rc;
use http::{HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Map, Value};

/// Where a node's recon answers come from.
#[derive(Clone, Debug)]
pub struct ReconConfig {
    /// The directory holding one directory per device (`devices`).
    pub devices: PathBuf,
    /// The directory of the recon cache files (`recon_cache_path`).
    pub cache_path: PathBuf,
    /// The ring files this node loads, by full path: account, container,
    /// then one object ring per policy, as Swift lists them.
    pub rings: Vec<PathBuf>,
    /// The cluster's `swift.conf` (its path is the key of the answer).
    pub swift_conf: PathBuf,
}

impl ReconConfig {
    /// The rings of `swift_dir` for these policy indexes:
    /// `account.ring.gz`, `container.ring.gz`, then `object.ring.gz` or
    /// `object-N.ring.gz` per policy.
    pub fn ring_paths(swift_dir: &Path, policies: &[u32]) -> Vec<PathBuf> {
        let mut rings = vec![
            swift_dir.join("account.ring.gz"),
            swift_dir.join("container.ring.gz"),
        ];
        for &p in policies {
            rings.push(swift_dir.join(match p {
                0 => "object.ring.gz".to_string(),
                n => format!("object-{n}.ring.gz"),
            }));
        }
        rings
    }
}

/// Whether a request's raw path is the middleware's (it takes every
/// path under `/recon/`, before the server sees it).
pub fn is_recon_path(raw_path: &str) -> bool {
    raw_path.starts_with("/recon/")
}

/// Answers a request under `/recon/`.
pub async fn answer(cfg: Arc<ReconConfig>, method: &Method, raw_path: &str) -> Response<Body> {
    let path = raw_path.to_string();
    let outcome = tokio::task::spawn_blocking(move || route(&cfg, &path))
        .await
        .unwrap_or(Outcome::Error);
    let (status, content_type, body) = match outcome {
        Outcome::Json(v) => (StatusCode::OK, "application/json", rc::to_python_json(&v)),
        Outcome::NotFound => (
            StatusCode::NOT_FOUND,
            "text/plain",
            format!("Invalid path: {raw_path}"),
        ),
        Outcome::Error => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "Internal Server Error".to_string(),
        ),
    };
    let len = body.len();
    let mut resp = Response::new(if *method == Method::HEAD {
        empty()
    } else {
        full(body)
    });
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// What a check came to.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Json(Value),
    /// Not a check Swift knows: 404.
    NotFound,
    /// A file the check needs could not be read or parsed: 500.
    Error,
}

/// Failure of a check whose source is unreadable.
#[derive(Debug)]
struct Unreadable;

type Check = Result<Value, Unreadable>;

impl From<std::io::Error> for Unreadable {
    fn from(_: std::io::Error) -> Self {
        Unreadable
    }
}

/// Splits the path as Swift's `split_path(path, 1, 3, True)` and runs the
/// check it names.
pub fn route(cfg: &ReconConfig, raw_path: &str) -> Outcome {
    let decoded = match apus_proto::percent_decode(raw_path) {
        Ok(p) => p,
        Err(_) => return Outcome::Error,
    };
    // "/recon/<check>[/<type...>]": at most three segments, the last
    // taking the rest; an empty segment before the last is an error.
    let mut segs = decoded.splitn(4, '/');
    let _root = segs.next();
    let _recon = segs.next();
    let check = segs.next().unwrap_or("");
    let rtype = segs.next();
    if check.is_empty() && rtype.is_some() {
        return Outcome::Error;
    }
    let result = match (check, rtype) {
        ("mem", _) => mem(&read_proc("/proc/meminfo")),
        ("load", _) => load(&read_proc("/proc/loadavg")),
        ("async", _) => Ok(from_cache(
            cfg,
            rc::OBJECT_FILE,
            &["async_pending", "async_pending_last"],
        )),
        ("replication", None) => Ok(replication(cfg, "object")),
        ("replication", Some(t @ ("account" | "container" | "object"))) => Ok(replication(cfg, t)),
        ("devices", _) => Ok(devices(cfg)),
        ("updater", Some("container")) => Ok(from_cache(
            cfg,
            rc::CONTAINER_FILE,
            &["container_updater_sweep"],
        )),
        ("updater", Some("object")) => Ok(from_cache(
            cfg,
            rc::OBJECT_FILE,
            &[
                "object_updater_sweep",
                "object_updater_stats",
                "object_updater_last",
            ],
        )),
        ("auditor", Some(t @ ("account" | "container"))) => {
            let keys = [
                format!("{t}_audits_passed"),
                format!("{t}_auditor_pass_completed"),
                format!("{t}_audits_since"),
                format!("{t}_audits_failed"),
            ];
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            let file = rc::server_file(t).unwrap_or(rc::OBJECT_FILE);
            Ok(from_cache(cfg, file, &keys))
        }
        ("auditor", Some("object")) => Ok(from_cache(
            cfg,
            rc::OBJECT_FILE,
            &["object_auditor_stats_ALL", "object_auditor_stats_ZBF"],
        )),
        ("expirer", Some("object")) => Ok(from_cache(
            cfg,
            rc::OBJECT_FILE,
            &["object_expiration_pass", "expired_last_pass"],
        )),
        ("mounted", _) => mounted(&read_proc("/proc/mounts")),
        ("unmounted", _) => unmounted(&cfg.devices),
        ("diskusage", _) => diskusage(&cfg.devices),
        ("ringmd5", _) => Ok(ring_md5(&cfg.rings)),
        ("swiftconfmd5", _) => Ok(swift_conf_md5(&cfg.swift_conf)),
        ("quarantined", _) => quarantined(&cfg.devices),
        ("sockstat", _) => sockstat(
            &read_optional("/proc/net/sockstat"),
            &read_optional("/proc/net/sockstat6"),
            page_size(),
        ),
        ("version", _) => Ok(json!({ "version": rc::SWIFT_VERSION })),
        ("driveaudit", _) => Ok(from_cache(cfg, rc::DRIVE_FILE, &["drive_audit_errors"])),
        ("time", _) => Ok(json!(apus_core::clock::now_secs())),
        ("sharding", _) => Ok(from_cache(
            cfg,
            rc::CONTAINER_FILE,
            &["sharding_stats", "sharding_time", "sharding_last"],
        )),
        ("relinker", _) => Ok(from_cache(cfg, rc::RELINKER_FILE, &["devices", "workers"])),
        ("reconstruction", Some("object")) => Ok(from_cache(
            cfg,
            rc::OBJECT_FILE,
            &["object_reconstruction_last", "object_reconstruction_time"],
        )),
        _ => return Outcome::NotFound,
    };
    match result {
        Ok(v) => Outcome::Json(v),
        Err(Unreadable) => Outcome::Error,
    }
}

fn read_proc(path: &str) -> Result<String, Unreadable> {
    Ok(std::fs::read_to_string(path)?)
}

/// A file that may be absent (`None`); any other failure is an error.
fn read_optional(path: &str) -> Result<Option<String>, Unreadable> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(_) => Err(Unreadable),
    }
}

fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// `keys` of a cache file; each `null` if the file is missing, unreadable
/// or not a JSON object.
fn from_cache(cfg: &ReconConfig, file: &str, keys: &[&str]) -> Value {
    let entry = std::fs::read_to_string(cfg.cache_path.join(file))
        .ok()
        .and_then(|text| match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        });
    let mut out = Map::new();
    for &k in keys {
        let v = entry
            .as_ref()
            .and_then(|m| m.get(k).cloned())
            .unwrap_or(Value::Null);
        out.insert(k.to_string(), v);
    }
    Value::Object(out)
}

fn replication(cfg: &ReconConfig, rtype: &str) -> Value {
    let mut keys = vec!["replication_time", "replication_stats", "replication_last"];
    if rtype == "object" {
        keys.extend(["object_replication_time", "object_replication_last"]);
    }
    from_cache(
        cfg,
        rc::server_file(rtype).unwrap_or(rc::OBJECT_FILE),
        &keys,
    )
}

/// `/proc/meminfo`: every `Name: value` line, the value trimmed.
fn mem(text: &Result<String, Unreadable>) -> Check {
    let text = text.as_ref().map_err(|_| Unreadable)?;
    let mut out = Map::new();
    for line in text.lines() {
        let mut parts = line.trim_end().split(':');
        let name = parts.next().unwrap_or("");
        let value = parts.next().ok_or(Unreadable)?;
        out.insert(name.to_string(), Value::String(value.trim().to_string()));
    }
    Ok(Value::Object(out))
}

/// `/proc/loadavg`: exactly five fields.
fn load(text: &Result<String, Unreadable>) -> Check {
    let text = text.as_ref().map_err(|_| Unreadable)?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [one, five, fifteen, tasks, procs] = fields[..] else {
        return Err(Unreadable);
    };
    let float = |s: &str| s.parse::<f64>().map_err(|_| Unreadable);
    Ok(json!({
        "1m": float(one)?,
        "5m": float(five)?,
        "15m": float(fifteen)?,
        "tasks": tasks,
        "processes": procs.parse::<i64>().map_err(|_| Unreadable)?,
    }))
}

/// `/proc/mounts`: device and mount point of every line of six fields.
fn mounted(text: &Result<String, Unreadable>) -> Check {
    let text = text.as_ref().map_err(|_| Unreadable)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, path, _, _, _, _] = fields[..] else {
            return Err(Unreadable);
        };
        out.push(json!({ "device": device, "path": path }));
    }
    Ok(Value::Array(out))
}

/// `/proc/net/sockstat` and `sockstat6` (either may be absent): TCP
/// sockets in use, orphaned and in TIME_WAIT, and TCP memory in bytes.
fn sockstat(
    v4: &Result<Option<String>, Unreadable>,
    v6: &Result<Option<String>, Unreadable>,
    page_size: u64,
) -> Check {
    let int = |fields: &[&str], i: usize| -> Result<i64, Unreadable> {
        fields
            .get(i)
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(Unreadable)
    };
    let mut out = Map::new();
    if let Some(text) = v4.as_ref().map_err(|_| Unreadable)? {
        for line in text.lines().filter(|l| l.starts_with("TCP: inuse")) {
            let f: Vec<&str> = line.split_whitespace().collect();
            out.insert("tcp_in_use".into(), json!(int(&f, 2)?));
            out.insert("orphan".into(), json!(int(&f, 4)?));
            out.insert("time_wait".into(), json!(int(&f, 6)?));
            let pages = int(&f, 10)?;
            out.insert(
                "tcp_mem_allocated_bytes".into(),
                json!(pages.saturating_mul(page_size as i64)),
            );
        }
    }
    if let Some(text) = v6.as_ref().map_err(|_| Unreadable)? {
        for line in text.lines().filter(|l| l.starts_with("TCP6: inuse")) {
            let f: Vec<&str> = line.split_whitespace().collect();
            out.insert("tcp6_in_use".into(), json!(int(&f, 2)?));
        }
    }
    Ok(Value::Object(out))
}

/// The names under the devices directory (`null` if it cannot be read),
/// keyed by the directory as configured.
fn devices(cfg: &ReconConfig) -> Value {
    let names: Option<Vec<Value>> = std::fs::read_dir(&cfg.devices).ok().map(|rd| {
        rd.filter_map(Result::ok)
            .map(|e| Value::String(e.file_name().to_string_lossy().into_owned()))
            .collect()
    });
    let mut out = Map::new();
    out.insert(
        cfg.devices.to_string_lossy().into_owned(),
        names.map_or(Value::Null, Value::Array),
    );
    Value::Object(out)
}

/// The device directories (following links) under `devices`, in the
/// order the directory lists them.
fn device_dirs(devices: &Path) -> Result<Vec<(String, PathBuf)>, Unreadable> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(devices)? {
        let entry = entry?;
        let path = entry.path();
        if path.is_dir() {
            out.push((entry.file_name().to_string_lossy().into_owned(), path));
        }
    }
    Ok(out)
}

/// Swift's `check_mount` as recon uses it (always, whatever the server's
/// `mount_check`): a name that needs no quoting, and a mount point.
fn mount_checked(name: &str, path: &Path) -> bool {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-~".contains(&c));
    plain && apus_diskfile::layout::is_mount(path)
}

/// Devices that are not mounted.
fn unmounted(devices: &Path) -> Check {
    let mut out = Vec::new();
    for (name, path) in device_dirs(devices)? {
        if !mount_checked(&name, &path) {
            out.push(json!({ "device": name, "mounted": false }));
        }
    }
    Ok(Value::Array(out))
}

/// Size, use and space left of each mounted device; the others with
/// `"mounted": false` and empty figures.
fn diskusage(devices: &Path) -> Check {
    let mut out = Vec::new();
    for (name, path) in device_dirs(devices)? {
        if !mount_checked(&name, &path) {
            out.push(json!({
                "device": name, "mounted": false, "size": "", "used": "", "avail": "",
            }));
            continue;
        }
        let st = rustix::fs::statvfs(&path).map_err(|_| Unreadable)?;
        let bsize = st.f_bsize;
        out.push(json!({
            "device": name,
            "mounted": true,
            "size": bsize.saturating_mul(st.f_blocks),
            "used": bsize.saturating_mul(st.f_blocks.saturating_sub(st.f_bavail)),
            "avail": bsize.saturating_mul(st.f_bavail),
        }));
    }
    Ok(Value::Array(out))
}

/// What each device's `quarantined/` holds: one directory per quarantined
/// object or database, counted from the link count of `objects[-N]`,
/// `containers` and `accounts`.
fn quarantined(devices: &Path) -> Check {
    let (mut objects, mut containers, mut accounts) = (0u64, 0u64, 0u64);
    let mut policies: Map<String, Value> = Map::new();
    for entry in std::fs::read_dir(devices)? {
        let qpath = entry?.path().join("quarantined");
        if !qpath.exists() {
            continue;
        }
        for q in std::fs::read_dir(&qpath)? {
            let q = q?;
            let qtype = q.file_name().to_string_lossy().into_owned();
            let links = std::fs::symlink_metadata(q.path())?.nlink();
            if links <= 2 {
                continue;
            }
            let n = links - 2;
            if qtype.starts_with("objects") {
                let pkey = qtype.split_once('-').map_or("0", |(_, p)| p).to_string();
                let slot = policies
                    .entry(pkey)
                    .or_insert_with(|| json!({ "objects": 0 }));
                let before = slot["objects"].as_u64().unwrap_or(0);
                slot["objects"] = json!(before + n);
                objects += n;
            } else if qtype == "containers" {
                containers += n;
            } else if qtype == "accounts" {
                accounts += n;
            } else {
                // Swift's middleware has no counter for it and fails.
                return Err(Unreadable);
            }
        }
    }
    Ok(json!({
        "objects": objects,
        "containers": containers,
        "accounts": accounts,
        "policies": policies,
    }))
}

/// The md5 of a file in hex.
fn md5_file(path: &Path) -> std::io::Result<String> {
    use md5::{Digest, Md5};
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Each ring file that exists, by path: its md5, or `null` if it
/// cannot be read.
fn ring_md5(rings: &[PathBuf]) -> Value {
    let mut out = Map::new();
    for ring in rings.iter().filter(|r| r.exists()) {
        out.insert(
            ring.to_string_lossy().into_owned(),
            md5_file(ring).map_or(Value::Null, Value::String),
        );
    }
    Value::Object(out)
}

/// `swift.conf`'s md5, or `null` when it cannot be read.
fn swift_conf_md5(path: &Path) -> Value {
    let mut out = Map::new();
    out.insert(
        path.to_string_lossy().into_owned(),
        md5_file(path).map_or(Value::Null, Value::String),
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<String, Unreadable> {
        Ok(s.to_string())
    }

    fn config(dir: &Path) -> ReconConfig {
        ReconConfig {
            devices: dir.join("devices"),
            cache_path: dir.join("cache"),
            rings: ReconConfig::ring_paths(&dir.join("etc"), &[0, 1]),
            swift_conf: dir.join("etc").join("swift.conf"),
        }
    }

    fn json_of(cfg: &ReconConfig, path: &str) -> Value {
        match route(cfg, path) {
            Outcome::Json(v) => v,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn proc_files_parse_as_swift_reads_them() {
        assert_eq!(
            load(&text("0.52 0.58 0.59 3/1142 4167\n")).unwrap(),
            json!({"1m": 0.52, "5m": 0.58, "15m": 0.59, "tasks": "3/1142", "processes": 4167})
        );
        assert!(load(&text("0.52 0.58 0.59 3/1142\n")).is_err());
        assert!(load(&Err(Unreadable)).is_err());
        assert_eq!(
            mem(&text(
                "MemTotal:       16318360 kB\nHugePages_Total:       0\n"
            ))
            .unwrap(),
            json!({"MemTotal": "16318360 kB", "HugePages_Total": "0"})
        );
        assert!(mem(&text("no colon here\n")).is_err());
        assert_eq!(
            mounted(&text(
                "/dev/vda / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n"
            ))
            .unwrap(),
            json!([{"device": "/dev/vda", "path": "/"}, {"device": "proc", "path": "/proc"}])
        );
        assert!(mounted(&text("/dev/vda / ext4\n")).is_err());
        let v4 = Ok(Some(
            "sockets: used 290\nTCP: inuse 5 orphan 1 tw 2 alloc 7 mem 3\nUDP: inuse 1 mem 0\n"
                .to_string(),
        ));
        let v6 = Ok(Some("TCP6: inuse 4\nUDP6: inuse 1\n".to_string()));
        assert_eq!(
            sockstat(&v4, &v6, 4096).unwrap(),
            json!({"tcp_in_use": 5, "orphan": 1, "time_wait": 2,
                   "tcp_mem_allocated_bytes": 12288, "tcp6_in_use": 4})
        );
        // Absent files give what they have; a short line is an error.
        assert_eq!(sockstat(&Ok(None), &Ok(None), 4096).unwrap(), json!({}));
        assert!(sockstat(&Ok(Some("TCP: inuse 5\n".into())), &Ok(None), 4096).is_err());
    }

    #[test]
    fn cache_keys_are_null_without_a_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        assert_eq!(
            json_of(&cfg, "/recon/replication/object"),
            json!({"replication_time": null, "replication_stats": null, "replication_last": null,
                   "object_replication_time": null, "object_replication_last": null})
        );
        assert_eq!(
            json_of(&cfg, "/recon/replication"),
            json_of(&cfg, "/recon/replication/object")
        );
        assert_eq!(
            json_of(&cfg, "/recon/replication/account"),
            json!({"replication_time": null, "replication_stats": null, "replication_last": null})
        );
        assert_eq!(
            json_of(&cfg, "/recon/async"),
            json!({"async_pending": null, "async_pending_last": null})
        );
        assert_eq!(
            json_of(&cfg, "/recon/auditor/container"),
            json!({"container_audits_passed": null, "container_auditor_pass_completed": null,
                   "container_audits_since": null, "container_audits_failed": null})
        );
        assert_eq!(
            json_of(&cfg, "/recon/sharding"),
            json!({"sharding_stats": null, "sharding_time": null, "sharding_last": null})
        );
        assert_eq!(
            json_of(&cfg, "/recon/relinker"),
            json!({"devices": null, "workers": null})
        );
        assert_eq!(
            json_of(&cfg, "/recon/driveaudit"),
            json!({"drive_audit_errors": null})
        );
        assert_eq!(
            json_of(&cfg, "/recon/version"),
            json!({"version": "2.38.3"})
        );
        assert!(json_of(&cfg, "/recon/time").as_f64().unwrap() > 1.6e9);
    }

    #[test]
    fn cache_values_are_read_and_a_torn_file_is_null() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        std::fs::create_dir_all(&cfg.cache_path).unwrap();
        std::fs::write(
            cfg.cache_path.join("object.recon"),
            "{\"async_pending\": 3, \"object_updater_sweep\": 0.5, \"other\": 1}\n",
        )
        .unwrap();
        assert_eq!(
            json_of(&cfg, "/recon/async"),
            json!({"async_pending": 3, "async_pending_last": null})
        );
        assert_eq!(
            json_of(&cfg, "/recon/updater/object"),
            json!({"object_updater_sweep": 0.5, "object_updater_stats": null,
                   "object_updater_last": null})
        );
        std::fs::write(cfg.cache_path.join("object.recon"), "{\"async_pending\": ").unwrap();
        assert_eq!(
            json_of(&cfg, "/recon/async"),
            json!({"async_pending": null, "async_pending_last": null})
        );
    }

    #[test]
    fn unknown_checks_are_404() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        for path in [
            "/recon/",
            "/recon/nope",
            "/recon/replication/",
            "/recon/replication/proxy",
            "/recon/replication/object/x",
            "/recon/updater/account",
            "/recon/updater",
            "/recon/auditor",
            "/recon/expirer/container",
            "/recon/reconstruction",
        ] {
            assert_eq!(route(&cfg, path), Outcome::NotFound, "{path}");
        }
        assert_eq!(route(&cfg, "/recon//object"), Outcome::Error);
        assert!(is_recon_path("/recon/load"));
        assert!(!is_recon_path("/recon"));
        assert!(!is_recon_path("/d1/0/a/c/o"));
    }

    #[test]
    fn devices_usage_and_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        // No devices directory: listing checks fail, `devices` is null.
        assert_eq!(route(&cfg, "/recon/unmounted"), Outcome::Error);
        assert_eq!(route(&cfg, "/recon/diskusage"), Outcome::Error);
        let key = cfg.devices.to_string_lossy().into_owned();
        assert_eq!(
            json_of(&cfg, "/recon/devices"),
            json!({ key.clone(): null })
        );

        let d1 = cfg.devices.join("d1");
        let d2 = cfg.devices.join("d2");
        std::fs::create_dir_all(&d1).unwrap();
        std::fs::create_dir_all(&d2).unwrap();
        std::fs::write(d2.join(".ismount"), "").unwrap();
        std::fs::write(cfg.devices.join("a-file"), "").unwrap();
        assert_eq!(
            json_of(&cfg, "/recon/unmounted"),
            json!([{"device": "d1", "mounted": false}])
        );
        let usage = json_of(&cfg, "/recon/diskusage");
        let usage = usage.as_array().unwrap();
        assert_eq!(usage.len(), 2);
        let of = |name: &str| usage.iter().find(|d| d["device"] == name).unwrap().clone();
        assert_eq!(
            of("d1"),
            json!({"device": "d1", "mounted": false, "size": "", "used": "", "avail": ""})
        );
        let d2u = of("d2");
        assert_eq!(d2u["mounted"], json!(true));
        let (size, used, avail) = (
            d2u["size"].as_u64().unwrap(),
            d2u["used"].as_u64().unwrap(),
            d2u["avail"].as_u64().unwrap(),
        );
        assert!(size > 0 && used <= size && avail <= size);
        let mut listed: Vec<String> = json_of(&cfg, "/recon/devices")[&key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        listed.sort();
        assert_eq!(listed, ["a-file", "d1", "d2"]);

        assert_eq!(
            json_of(&cfg, "/recon/quarantined"),
            json!({"objects": 0, "containers": 0, "accounts": 0, "policies": {}})
        );
        for q in [
            "d1/quarantined/objects/h1",
            "d1/quarantined/objects/h2",
            "d2/quarantined/objects/h3",
            "d2/quarantined/objects-1/h4",
            "d2/quarantined/containers/h5",
            "d1/quarantined/accounts",
        ] {
            std::fs::create_dir_all(cfg.devices.join(q)).unwrap();
        }
        assert_eq!(
            json_of(&cfg, "/recon/quarantined"),
            json!({"objects": 4, "containers": 1, "accounts": 0,
                   "policies": {"0": {"objects": 3}, "1": {"objects": 1}}})
        );
    }

    #[test]
    fn md5_of_rings_and_swift_conf() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let conf_key = cfg.swift_conf.to_string_lossy().into_owned();
        assert_eq!(json_of(&cfg, "/recon/ringmd5"), json!({}));
        assert_eq!(
            json_of(&cfg, "/recon/swiftconfmd5"),
            json!({ conf_key.clone(): null })
        );
        let etc = dir.path().join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::write(etc.join("object.ring.gz"), "abc").unwrap();
        std::fs::write(etc.join("account.ring.gz"), "").unwrap();
        // Not a ring of this node's policies: left out.
        std::fs::write(etc.join("object-7.ring.gz"), "x").unwrap();
        std::fs::write(etc.join("swift.conf"), "abc").unwrap();
        let key = |n: &str| etc.join(n).to_string_lossy().into_owned();
        assert_eq!(
            json_of(&cfg, "/recon/ringmd5"),
            json!({
                key("object.ring.gz"): "900150983cd24fb0d6963f7d28e17f72",
                key("account.ring.gz"): "d41d8cd98f00b204e9800998ecf8427e",
            })
        );
        assert_eq!(
            json_of(&cfg, "/recon/swiftconfmd5"),
            json!({ conf_key: "900150983cd24fb0d6963f7d28e17f72" })
        );
    }

    #[tokio::test]
    async fn answers_are_json_or_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Arc::new(config(dir.path()));
        let resp = answer(cfg.clone(), &Method::GET, "/recon/version").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.headers()["content-length"], "21");
        let resp = answer(cfg.clone(), &Method::GET, "/recon/what").await;
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()["content-type"], "text/plain");
        let resp = answer(cfg, &Method::HEAD, "/recon/version").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-length"], "21");
    }
}
