//! Fault scenarios of erasure-coded objects on `apus serve` with `ec42`
//! (4+2) as the default policy: lost fragments served and rebuilt, a
//! fragment written to a handoff while its device was away and reverted,
//! PUTs that never reached their commit, and bit rot found by the
//! auditor. The cluster's `ec42` ring is widened to 8 devices first (an
//! operator adding two disks), so each partition has handoffs. The
//! daemons do not run by themselves: each scenario runs the passes it
//! needs (`apus object-reconstructor --once`, `apus object-auditor
//! --once`) and checks the devices' files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use apus_core::HashConfig;
use apus_ring::builder::{RingBuilder, AUTO_ID};
use apus_ring::{Device, Ring};
use support::{apus_bin, exchange, login, md5_hex, serial, Server};

const EC_DEVICES: u32 = 8;

struct EcServe {
    _dir: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
    _server: Server,
    proxy: SocketAddr,
    object_server: SocketAddr,
    token: String,
    account: String,
    hash: HashConfig,
    ring: Ring,
}

fn serve_with_config(dir: &Path, config: &Path, run: &str) -> Server {
    let stdout = dir.join(format!("{run}.out"));
    let stderr = dir.join(format!("{run}.err"));
    let child = Command::new(apus_bin())
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--bind")
        .arg("127.0.0.1:0")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("run apus serve");
    Server {
        child,
        stdout,
        stderr,
    }
}

/// The object server's address from the banner.
fn object_server_addr(banner: &str) -> SocketAddr {
    let line = banner
        .lines()
        .find(|l| l.trim_start().starts_with("storage"))
        .unwrap();
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == "object" {
            return words.next().unwrap().parse().unwrap();
        }
    }
    panic!("no object server in {line:?}");
}

impl EcServe {
    fn start() -> EcServe {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = dir.path().join("apus.toml");
        std::fs::write(
            &config,
            format!(
                "data = \"{}\"\ndefault_policy = \"ec42\"\n\
                 [daemons]\nrun = false\nreclaim_age = 3600\n",
                data.display()
            ),
        )
        .unwrap();
        // First start lays the cluster out; then ec42's ring gets two more
        // devices on the object server's address.
        let mut first = serve_with_config(dir.path(), &config, "first");
        first.wait_ready();
        let banner = std::fs::read_to_string(&first.stdout).unwrap();
        let object_server = object_server_addr(&banner);
        first.terminate();
        drop(first);
        let mut builder = RingBuilder::new(10, 6.0, 1).unwrap();
        for n in 1..=EC_DEVICES {
            builder
                .add_dev(Device {
                    id: AUTO_ID,
                    region: 1,
                    zone: n,
                    ip: "127.0.0.1".into(),
                    port: object_server.port(),
                    replication_ip: "127.0.0.1".into(),
                    replication_port: object_server.port(),
                    device: format!("d{n}"),
                    weight: 100.0,
                    meta: String::new(),
                })
                .unwrap();
        }
        builder.rebalance(None, &mut |_| {}).unwrap();
        builder.save(&data.join("object-2.builder")).unwrap();
        let ring_data = builder.ring_data().unwrap();
        ring_data.save(&data.join("object-2.ring.gz")).unwrap();
        let ring = Ring::new(ring_data).unwrap();

        let mut server = serve_with_config(dir.path(), &config, "serve");
        let proxy = server.wait_ready();
        let (token, account) = login(proxy, "test:tester", "testing");
        let swift_conf = std::fs::read_to_string(data.join("swift.conf")).unwrap();
        let hash = HashConfig::from_swift_conf(&swift_conf).unwrap();
        EcServe {
            _dir: dir,
            data,
            config,
            _server: server,
            proxy,
            object_server,
            token,
            account,
            hash,
            ring,
        }
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let full = format!("{}{path}", self.account);
        let (head, body) = exchange(
            self.proxy,
            method,
            &full,
            &[("X-Auth-Token", &self.token)],
            body,
        );
        (head.status, body)
    }

    fn part(&self, container: &str, obj: &str) -> u32 {
        let account = self.account.trim_start_matches("/v1/");
        self.ring
            .partition(&self.hash, account, Some(container), Some(obj))
    }

    /// The device of fragment index `i` of an object.
    fn primary(&self, container: &str, obj: &str, i: usize) -> String {
        self.ring.primaries(self.part(container, obj))[i]
            .device
            .clone()
    }

    fn hash_dir(&self, device: &str, container: &str, obj: &str) -> PathBuf {
        let account = self.account.trim_start_matches("/v1/");
        let h = self.hash.hash_path(account, Some(container), Some(obj));
        self.data.join(format!(
            "devices/{device}/objects-2/{}/{}/{h}",
            self.part(container, obj),
            &h[29..]
        ))
    }

    /// Every `.data` file of an object, by device.
    fn fragments(&self, container: &str, obj: &str) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for n in 1..=EC_DEVICES {
            let dev = format!("d{n}");
            let dir = self.hash_dir(&dev, container, obj);
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|n| n.ends_with(".data"))
                        .collect()
                })
                .unwrap_or_default();
            if !names.is_empty() {
                names.sort();
                out.insert(dev, names);
            }
        }
        out
    }

    /// The durable fragment of index `i` on its primary, if there.
    fn durable_fragment(&self, container: &str, obj: &str, i: usize) -> Option<Vec<u8>> {
        let dev = self.primary(container, obj, i);
        let dir = self.hash_dir(&dev, container, obj);
        let suffix = format!("#{i}#d.data");
        let name = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .find(|n| n.ends_with(&suffix))?;
        std::fs::read(dir.join(name)).ok()
    }

    fn all_durable(&self, container: &str, obj: &str) -> Vec<Vec<u8>> {
        (0..6)
            .map(|i| {
                self.durable_fragment(container, obj, i)
                    .unwrap_or_else(|| panic!("{obj}: no durable fragment {i} on its primary"))
            })
            .collect()
    }

    /// One pass of `daemon` over the cluster's devices; its stats.
    fn run_daemon(&self, daemon: &str) -> serde_json::Value {
        let out = Command::new(apus_bin())
            .arg(daemon)
            .arg("--config")
            .arg(&self.config)
            .arg("--once")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{daemon}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("{daemon} printed no stats: {text}"));
        serde_json::from_str(line).unwrap()
    }

    /// Sets an object's fragment files' modification times `ago` back, as
    /// if written then.
    fn age_files(&self, container: &str, obj: &str, ago: Duration) {
        let when = SystemTime::now() - ago;
        for n in 1..=EC_DEVICES {
            let dir = self.hash_dir(&format!("d{n}"), container, obj);
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let f = std::fs::File::options().write(true).open(e.path()).unwrap();
                f.set_modified(when).unwrap();
            }
        }
    }
}

fn count(stats: &serde_json::Value, key: &str) -> u64 {
    stats["counts"][key].as_u64().unwrap_or(0)
}

fn body_of(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Lost fragments: one of six, then two, of many objects. Every GET stays
/// byte-exact; one reconstructor pass puts back six durable fragments,
/// byte-identical to the lost ones, each on the primary of its index.
#[test]
fn scenario_40_lost_fragments_are_served_and_rebuilt() {
    let _serial = serial();
    let c = EcServe::start();
    assert_eq!(c.request("PUT", "/ec", b"").0, 201);
    let segment = 1_048_576;
    let sizes = [
        0,
        1,
        4096,
        70_000,
        segment - 1,
        segment + 1,
        2 * segment + 333,
    ];
    let mut objects = Vec::new();
    for (n, size) in sizes.iter().chain(&[10, 20, 30, 40, 50]).enumerate() {
        let name = format!("o{n}");
        let body = body_of(*size, n as u64 + 1);
        assert_eq!(c.request("PUT", &format!("/ec/{name}"), &body).0, 201);
        let originals = c.all_durable("ec", &name);
        objects.push((name, body, originals));
    }
    let check_gets = |what: &str| {
        for (name, body, _) in &objects {
            let (status, got) = c.request("GET", &format!("/ec/{name}"), b"");
            assert_eq!(status, 200, "{what}: {name}");
            assert!(got == *body, "{what}: {name} differs ({} bytes)", got.len());
        }
    };
    let remove = |name: &str, i: usize| {
        let dev = c.primary("ec", name, i);
        for e in std::fs::read_dir(c.hash_dir(&dev, "ec", name))
            .unwrap()
            .flatten()
        {
            if e.file_name().to_string_lossy().ends_with(".data") {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    };
    for (n, (name, _, _)) in objects.iter().enumerate() {
        remove(name, n % 6);
    }
    check_gets("one fragment lost");
    for (n, (name, _, _)) in objects.iter().enumerate() {
        remove(name, (n + 3) % 6);
    }
    check_gets("two fragments lost");

    let stats = c.run_daemon("object-reconstructor");
    assert_eq!(
        count(&stats, "fragments_rebuilt"),
        2 * objects.len() as u64,
        "{stats}"
    );
    assert_eq!(count(&stats, "rebuild_failures"), 0, "{stats}");
    for (name, _, originals) in &objects {
        assert!(
            c.all_durable("ec", name) == *originals,
            "{name}: rebuilt fragments differ"
        );
        let files: usize = c.fragments("ec", name).values().map(Vec::len).sum();
        assert_eq!(files, 6, "{name}: {:?}", c.fragments("ec", name));
    }
    check_gets("rebuilt");
    // Nothing is left to do.
    let stats = c.run_daemon("object-reconstructor");
    assert_eq!(count(&stats, "fragments_rebuilt"), 0, "{stats}");
}

/// A device away while objects are written: its fragments go to
/// handoffs. Back, one reconstructor pass moves them home and empties the
/// handoffs; nothing is lost on the way.
#[test]
fn scenario_41_fragments_on_handoffs_revert() {
    let _serial = serial();
    let c = EcServe::start();
    assert_eq!(c.request("PUT", "/ho", b"").0, 201);
    // Objects with d3 among their primaries.
    let names: Vec<String> = (0..200)
        .map(|i| format!("h{i}"))
        .filter(|n| (0..6).any(|i| c.primary("ho", n, i) == "d3"))
        .take(8)
        .collect();
    assert_eq!(names.len(), 8);
    let d3 = c.data.join("devices/d3");
    let away = c.data.join("devices/d3.away");
    std::fs::rename(&d3, &away).unwrap();
    let mut bodies = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let body = body_of(5000 + n * 777, n as u64 + 50);
        assert_eq!(c.request("PUT", &format!("/ho/{name}"), &body).0, 201);
        bodies.push(body);
    }
    std::fs::rename(&away, &d3).unwrap();
    for name in &names {
        let frags = c.fragments("ho", name);
        assert!(!frags.contains_key("d3"));
        let on_handoffs = frags
            .keys()
            .filter(|d| !(0..6).any(|i| c.primary("ho", name, i) == **d))
            .count();
        assert_eq!(on_handoffs, 1, "{name}: {frags:?}");
    }
    let stats = c.run_daemon("object-reconstructor");
    assert_eq!(
        count(&stats, "fragments_reverted"),
        names.len() as u64,
        "{stats}"
    );
    for (name, body) in names.iter().zip(&bodies) {
        c.all_durable("ho", name);
        let frags = c.fragments("ho", name);
        assert_eq!(frags.len(), 6, "{name}: {frags:?}");
        let (status, got) = c.request("GET", &format!("/ho/{name}"), b"");
        assert_eq!(status, 200);
        assert!(got == *body, "{name} differs");
    }
}

/// Fragment PUTs that never got their commit (the proxy died between
/// the phases) leave no object: GET 404, not listed. Once older than
/// `reclaim_age`, such fragments, like a lone non-durable fragment, are
/// reclaimed by the next pass; a recent one is kept for its commit.
#[test]
fn scenario_42_uncommitted_fragments_are_reclaimed() {
    let _serial = serial();
    let c = EcServe::start();
    assert_eq!(c.request("PUT", "/nc", b"").0, 201);
    let account = c.account.trim_start_matches("/v1/").to_string();
    let two_hours_ago = apus_core::Timestamp::from_secs_f64(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            - 7200.0,
    )
    .unwrap()
    .internal();
    let now = apus_core::Timestamp::now().internal();
    // Writes fragment `i` of `obj` at `ts` straight to its object server,
    // without the commit.
    let write_fragment = |obj: &str, i: usize, ts: &str| {
        let part = c.part("nc", obj);
        let dev = c.primary("nc", obj, i);
        let body = body_of(4096, i as u64);
        let index = i.to_string();
        let (head, _) = exchange(
            c.object_server,
            "PUT",
            &format!("/{dev}/{part}/{account}/nc/{obj}"),
            &[
                ("X-Backend-Storage-Policy-Index", "2"),
                ("X-Timestamp", ts),
                ("X-Object-Sysmeta-Ec-Frag-Index", &index),
                ("Content-Type", "application/octet-stream"),
            ],
            &body,
        );
        assert_eq!(head.status, 201);
        assert_eq!(head.header("x-backend-durable"), Some("no"));
    };
    for i in 0..6 {
        write_fragment("interrupted", i, &two_hours_ago);
    }
    write_fragment("lone-old", 2, &two_hours_ago);
    write_fragment("lone-new", 4, &now);
    for obj in ["interrupted", "lone-old", "lone-new"] {
        assert_eq!(c.request("GET", &format!("/nc/{obj}"), b"").0, 404, "{obj}");
        assert_eq!(
            c.request("HEAD", &format!("/nc/{obj}"), b"").0,
            404,
            "{obj}"
        );
    }
    let (status, listing) = c.request("GET", "/nc", b"");
    assert!(status == 204 || listing.is_empty(), "{status} {listing:?}");
    assert_eq!(c.fragments("nc", "interrupted").len(), 6);

    // Within the commit window nothing goes, whatever the timestamp.
    c.run_daemon("object-reconstructor");
    assert_eq!(c.fragments("nc", "interrupted").len(), 6);
    // Written long enough ago: the old ones are reclaimed, the new kept.
    for obj in ["interrupted", "lone-old", "lone-new"] {
        c.age_files("nc", obj, Duration::from_secs(600));
    }
    let stats = c.run_daemon("object-reconstructor");
    assert_eq!(count(&stats, "fragments_rebuilt"), 0, "{stats}");
    assert!(
        c.fragments("nc", "interrupted").is_empty(),
        "{:?}",
        c.fragments("nc", "interrupted")
    );
    assert!(c.fragments("nc", "lone-old").is_empty());
    assert_eq!(c.fragments("nc", "lone-new").len(), 1);
}

/// Bit rot in one fragment archive: the auditor quarantines it, the
/// reconstructor rebuilds it byte-identical, and the object reads back.
#[test]
fn scenario_43_bit_rot_is_quarantined_and_rebuilt() {
    let _serial = serial();
    let c = EcServe::start();
    assert_eq!(c.request("PUT", "/rot", b"").0, 201);
    let body = body_of(300_000, 43);
    assert_eq!(c.request("PUT", "/rot/obj", &body).0, 201);
    let originals = c.all_durable("rot", "obj");
    // Flip one byte in the middle of fragment 1's payload.
    let dev = c.primary("rot", "obj", 1);
    let dir = c.hash_dir(&dev, "rot", "obj");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("#1#d.data"))
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    let stats = c.run_daemon("object-auditor");
    assert!(count(&stats, "quarantined") >= 1, "{stats}");
    assert!(c.durable_fragment("rot", "obj", 1).is_none());
    let quarantined = c.data.join(format!("devices/{dev}/quarantined/objects-2"));
    assert!(quarantined.is_dir());

    let stats = c.run_daemon("object-reconstructor");
    assert_eq!(count(&stats, "fragments_rebuilt"), 1, "{stats}");
    assert!(c.all_durable("rot", "obj") == originals);
    let (status, got) = c.request("GET", "/rot/obj", b"");
    assert_eq!(status, 200);
    assert_eq!(md5_hex(&got), md5_hex(&body));
}
