//! The data directory of a one-process cluster (`apus serve --data DIR`).
//!
//! ```text
//! DIR/.lock                      held while a process serves DIR
//! DIR/swift.conf                 [swift-hash] prefix and suffix, random on first start
//! DIR/{account,container,object,object-1,object-2}.builder
//! DIR/{account,container,object,object-1,object-2}.ring.gz
//! DIR/devices/d1 .. d6           the devices root the storage servers see
//! ```
//!
//! Everything is created on first start and reused afterwards; nothing is
//! ever rewritten, so a restart finds the same salt and placements. Each
//! ring has 4 devices in 4 zones on 127.0.0.1 and one port, chosen free on
//! first start: one server per ring serves all its devices, as in Swift's
//! all-in-one setups. There are three storage policies: `Policy-0`, the
//! default, and `Policy-1`, replicated, as in Swift's all-in-one setups,
//! and `ec42`, erasure-coded 4+2, whose ring `object-2` places its 6
//! fragments on 6 devices (d1 .. d6, 6 zones), so no two fragments of an
//! object share a device. The object server serves every policy, so the
//! object rings have its address. A directory made before a policy
//! existed gets that policy's ring on next start.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use apus_core::HashConfig;
use apus_ring::builder::{RingBuilder, AUTO_ID};
use apus_ring::{Device, Ring};

const PART_POWER: u32 = 10;
const MIN_PART_HOURS: u32 = 1;

/// How a ring spreads over the local devices: replicas (fragments for an
/// erasure-coded policy) over devices `d1 ..= dN`, one zone each.
#[derive(Clone, Copy)]
struct Shape {
    replicas: f64,
    devices: u32,
}

/// The replicated rings: 3 replicas on 4 devices.
const REPLICATED: Shape = Shape {
    replicas: 3.0,
    devices: 4,
};
/// `ec42`'s ring: 6 fragments on 6 devices.
const EC_4_2: Shape = Shape {
    replicas: 6.0,
    devices: 6,
};

/// A ring of the local cluster and where its server listens.
pub struct LocalRing {
    pub ring: Ring,
    pub path: PathBuf,
    /// The one address every device of the ring has.
    pub addr: SocketAddr,
    /// Already bound when the ring was just created on a free port.
    pub listener: Option<TcpListener>,
}

pub struct LocalCluster {
    pub hash: HashConfig,
    pub account: LocalRing,
    pub container: LocalRing,
    pub object: LocalRing,
    /// The object ring of policy 1 (on the object server's address).
    pub object_1: LocalRing,
    /// The object ring of policy 2, `ec42` (likewise).
    pub object_2: LocalRing,
    /// Holds the directory's lock for as long as the cluster runs.
    _lock: File,
}

impl LocalCluster {
    /// Opens `data`, creating what is missing.
    pub fn open(data: &Path) -> Result<Self> {
        fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
        let lock = lock_dir(data)?;
        let conf = data.join("swift.conf");
        if !conf.exists() && devices_hold_data(data) {
            // A new salt would hash every name to another place: all that
            // is stored would be unreachable, and the auditors would
            // quarantine it as misplaced.
            bail!(
                "{} is missing, but {} holds data stored under its hash salt; \
                 restore that swift.conf, or start in an empty directory",
                conf.display(),
                devices_dir(data).display()
            );
        }
        let hash = ensure_swift_conf(&conf)?;
        let account = ensure_ring(data, "account", None, REPLICATED)?;
        let container = ensure_ring(data, "container", None, REPLICATED)?;
        let object = ensure_ring(data, "object", None, REPLICATED)?;
        let object_1 = ensure_ring(data, "object-1", Some(object.addr), REPLICATED)?;
        let object_2 = ensure_ring(data, "object-2", Some(object.addr), EC_4_2)?;
        for r in [&object_1, &object_2] {
            if r.addr != object.addr {
                bail!(
                    "{} is served at {}, but the object server listens at {} ({})",
                    r.path.display(),
                    r.addr,
                    object.addr,
                    object.path.display()
                );
            }
        }
        let devices = devices_dir(data);
        for r in [&account, &container, &object, &object_1, &object_2] {
            for dev in r.ring.devs() {
                if dev.device.is_empty()
                    || dev.device.contains('/')
                    || dev.device == "."
                    || dev.device == ".."
                {
                    bail!(
                        "{}: device name {:?} cannot be a directory name",
                        r.path.display(),
                        dev.device
                    );
                }
                let dir = devices.join(&dev.device);
                fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                // Each directory stands for a whole disk: Swift's
                // `.ismount` marker says so to whatever checks mounts
                // (recon, `apus status`, the console's cluster page).
                let marker = dir.join(".ismount");
                if !marker.exists() {
                    fs::write(&marker, b"")
                        .with_context(|| format!("cannot create {}", marker.display()))?;
                }
            }
        }
        Ok(LocalCluster {
            hash,
            account,
            container,
            object,
            object_1,
            object_2,
            _lock: lock,
        })
    }
}

/// The devices root of the cluster in `data`.
pub fn devices_dir(data: &Path) -> PathBuf {
    data.join("devices")
}

/// Whether any device of the cluster in `data` holds accounts, containers
/// or objects. A directory that cannot be read counts as holding data: the
/// caller refuses to start rather than risk it.
fn devices_hold_data(data: &Path) -> bool {
    let non_empty = |dir: &Path| match fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    };
    let devices = match fs::read_dir(devices_dir(data)) {
        Ok(devices) => devices,
        Err(e) => return e.kind() != std::io::ErrorKind::NotFound,
    };
    devices.into_iter().any(|device| {
        let Ok(device) = device else { return true };
        let Ok(kinds) = fs::read_dir(device.path()) else {
            return device.path().is_dir();
        };
        kinds.into_iter().any(|kind| {
            let Ok(kind) = kind else { return true };
            let name = kind.file_name();
            let name = name.to_string_lossy();
            (name == "accounts" || name == "containers" || name.starts_with("objects"))
                && non_empty(&kind.path())
        })
    })
}

/// Two processes serving one directory would both write its databases and
/// objects; the second one is refused.
fn lock_dir(data: &Path) -> Result<File> {
    let path = data.join(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => bail!(
            "{} is in use by another apus process (it holds {})",
            data.display(),
            path.display()
        ),
        Err(e) => bail!("cannot lock {}: {e}", path.display()),
    }
}

/// Reads the `[swift-hash]` salt, or writes a random one first.
fn ensure_swift_conf(path: &Path) -> Result<HashConfig> {
    if !path.exists() {
        let text = format!(
            "# Written by `apus serve` on first start. Objects are placed by these\n\
             # values: changing them makes everything stored here unreachable.\n\
             [swift-hash]\n\
             swift_hash_path_prefix = {}\n\
             swift_hash_path_suffix = {}\n\
             \n\
             [storage-policy:0]\n\
             name = Policy-0\n\
             default = yes\n",
            random_hex()?,
            random_hex()?
        );
        apus_ring::atomic_write(path, |w| w.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    HashConfig::from_swift_conf(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// 128 random bits in hex, from the kernel.
fn random_hex() -> Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(apus_core::hash::to_hex(&bytes))
}

/// Loads `<kind>.ring.gz`, writing it from `<kind>.builder` if only that
/// exists (a first start stopped in between), or building both, on `at`
/// or else a free port, if neither does.
fn ensure_ring(data: &Path, kind: &str, at: Option<SocketAddr>, shape: Shape) -> Result<LocalRing> {
    let path = data.join(format!("{kind}.ring.gz"));
    let builder_path = data.join(format!("{kind}.builder"));
    let mut listener = None;
    if !path.exists() {
        let builder = if builder_path.exists() {
            RingBuilder::load(&builder_path)
                .map_err(|e| anyhow!("{}: {e}", builder_path.display()))?
        } else {
            let addr = match at {
                Some(addr) => addr,
                None => {
                    let l = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
                    let addr = l.local_addr()?;
                    listener = Some(l);
                    addr
                }
            };
            let builder = new_builder(addr, shape)?;
            builder
                .save(&builder_path)
                .map_err(|e| anyhow!("{}: {e}", builder_path.display()))?;
            builder
        };
        let ring = builder
            .ring_data()
            .map_err(|e| anyhow!("{}: {e}", builder_path.display()))?;
        ring.save(&path)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    }
    let ring = Ring::load(&path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let mut addrs = ring
        .devs()
        .map(|d| format!("{}:{}", bracket_v6(&d.ip), d.port))
        .collect::<Vec<_>>();
    addrs.sort();
    addrs.dedup();
    let [addr] = addrs.as_slice() else {
        bail!(
            "{}: its devices are on {} addresses; a one-process cluster serves each ring on one",
            path.display(),
            addrs.len()
        );
    };
    let addr = addr
        .parse()
        .map_err(|_| anyhow!("{}: {addr} is not an IP address and port", path.display()))?;
    Ok(LocalRing {
        ring,
        path,
        addr,
        listener,
    })
}

fn bracket_v6(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

fn new_builder(addr: SocketAddr, shape: Shape) -> Result<RingBuilder> {
    let mut builder = RingBuilder::new(PART_POWER, shape.replicas, MIN_PART_HOURS)?;
    let ip = addr.ip().to_string();
    for n in 1..=shape.devices {
        builder.add_dev(Device {
            id: AUTO_ID,
            region: 1,
            zone: n,
            ip: ip.clone(),
            port: addr.port(),
            replication_ip: ip.clone(),
            replication_port: addr.port(),
            device: format!("d{n}"),
            weight: 100.0,
            meta: String::new(),
        })?;
    }
    builder.rebalance(None, &mut |_| {})?;
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_everything_and_a_restart_reuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = LocalCluster::open(&data).unwrap();
        assert!(first.object.listener.is_some());
        assert_eq!(first.object.ring.replica_count(), 3);
        assert_eq!(first.object.ring.part_power(), PART_POWER);
        for n in 1..=EC_4_2.devices {
            assert!(data.join(format!("devices/d{n}")).is_dir());
            // Taken for a mount point by recon.
            assert!(data.join(format!("devices/d{n}/.ismount")).is_file());
        }
        assert_eq!(first.object_2.ring.replica_count(), 6);
        assert_eq!(first.object_2.addr, first.object.addr);
        let part = 7;
        let mut ec_devices: Vec<&str> = first
            .object_2
            .ring
            .primaries(part)
            .iter()
            .map(|d| d.device.as_str())
            .collect();
        ec_devices.sort_unstable();
        assert_eq!(ec_devices, ["d1", "d2", "d3", "d4", "d5", "d6"]);
        for kind in ["account", "container", "object"] {
            assert!(data.join(format!("{kind}.builder")).is_file());
        }
        let ports = [&first.account, &first.container, &first.object].map(|r| r.addr.port());
        assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2]);
        let hash = first.hash.clone();
        assert_eq!(hash.prefix.len(), 32);
        let ring_bytes = fs::read(data.join("object.ring.gz")).unwrap();

        // Locked while open.
        let err = LocalCluster::open(&data).err().unwrap().to_string();
        assert!(err.contains("in use"), "{err}");
        drop(first);

        let second = LocalCluster::open(&data).unwrap();
        assert_eq!(second.hash, hash);
        assert!(second.object.listener.is_none());
        assert_eq!(second.object.addr.port(), ports[2]);
        assert_eq!(fs::read(data.join("object.ring.gz")).unwrap(), ring_bytes);
    }

    #[test]
    fn a_lost_swift_conf_is_not_replaced_while_devices_hold_data() {
        let dir = tempfile::tempdir().unwrap();
        drop(LocalCluster::open(dir.path()).unwrap());
        // Fresh devices hold nothing yet: a lost salt may be made anew.
        fs::remove_file(dir.path().join("swift.conf")).unwrap();
        drop(LocalCluster::open(dir.path()).unwrap());
        let part = dir.path().join("devices/d2/objects/17");
        fs::create_dir_all(&part).unwrap();
        fs::write(part.join("hashes.pkl"), b"x").unwrap();
        let salt = fs::read(dir.path().join("swift.conf")).unwrap();
        fs::remove_file(dir.path().join("swift.conf")).unwrap();
        let err = LocalCluster::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("swift.conf is missing"), "{err}");
        assert!(!dir.path().join("swift.conf").exists());
        fs::write(dir.path().join("swift.conf"), salt).unwrap();
        drop(LocalCluster::open(dir.path()).unwrap());
    }

    #[test]
    fn a_lost_ring_file_is_written_again_from_its_builder() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalCluster::open(dir.path()).unwrap();
        let ring = first.container.ring.data().clone();
        let port = first.container.addr.port();
        drop(first);
        fs::remove_file(dir.path().join("container.ring.gz")).unwrap();
        let second = LocalCluster::open(dir.path()).unwrap();
        assert_eq!(second.container.addr.port(), port);
        assert_eq!(second.container.ring.data(), &ring);
    }
}
