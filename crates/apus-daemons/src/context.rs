//! What every worker shares: where the devices are, the rings, which ring
//! devices are this node's, and the backend client.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use apus_core::HashConfig;
use apus_http::{BackendClient, ClientConfig};
use apus_ring::{Device, Ring};

/// The three kinds of storage server, each with its own ring and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerKind {
    Account,
    Container,
    Object,
}

/// Which ring devices belong to this node: those whose replication address
/// is one this node listens on, as Swift's `whataremyips` plus
/// `bind_port` decide.
#[derive(Clone, Debug)]
pub struct LocalIdentity {
    pub account: SocketAddr,
    pub container: SocketAddr,
    pub object: SocketAddr,
}

impl LocalIdentity {
    fn addr(&self, kind: ServerKind) -> SocketAddr {
        match kind {
            ServerKind::Account => self.account,
            ServerKind::Container => self.container,
            ServerKind::Object => self.object,
        }
    }

    /// Whether `dev` (a device of `kind`'s ring) is served by this node.
    pub fn is_local(&self, dev: &Device, kind: ServerKind) -> bool {
        let bind = self.addr(kind);
        if dev.replication_port != bind.port() {
            return false;
        }
        let Ok(ip) = dev.replication_ip.parse::<IpAddr>() else {
            return false;
        };
        if bind.ip().is_unspecified() {
            is_local_ip(ip)
        } else {
            ip == bind.ip()
        }
    }
}

/// Whether `ip` is an address of this host: binding a socket to it only
/// works if it is (the whole of 127.0.0.0/8 is, on Linux).
pub fn is_local_ip(ip: IpAddr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

/// The rings of a cluster: account, container and one object ring per
/// storage policy.
#[derive(Debug)]
pub struct Rings {
    pub account: Ring,
    pub container: Ring,
    pub objects: BTreeMap<u32, Ring>,
}

impl Rings {
    /// Loads `account.ring.gz`, `container.ring.gz` and, per policy,
    /// `object.ring.gz` (policy 0) or `object-N.ring.gz` from `dir`.
    pub fn load(dir: &Path, policies: &[u32]) -> Result<Rings, String> {
        let load = |name: String| {
            let path = dir.join(&name);
            Ring::load(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let mut objects = BTreeMap::new();
        for &policy in policies {
            let name = if policy == 0 {
                "object.ring.gz".to_string()
            } else {
                format!("object-{policy}.ring.gz")
            };
            objects.insert(policy, load(name)?);
        }
        Ok(Rings {
            account: load("account.ring.gz".into())?,
            container: load("container.ring.gz".into())?,
            objects,
        })
    }

    pub fn ring(&self, kind: ServerKind, policy: u32) -> Option<&Ring> {
        match kind {
            ServerKind::Account => Some(&self.account),
            ServerKind::Container => Some(&self.container),
            ServerKind::Object => self.objects.get(&policy),
        }
    }
}

/// Settings shared by every worker of a node.
#[derive(Clone, Debug)]
pub struct DaemonContext {
    /// The directory holding one directory per device.
    pub devices: PathBuf,
    /// Require each device to be a mount point (Swift's `mount_check`).
    pub mount_check: bool,
    pub hash: HashConfig,
    pub rings_dir: PathBuf,
    /// Storage policy indexes, each with an object ring.
    pub policies: Vec<u32>,
    /// Those of [`DaemonContext::policies`] that are erasure-coded: the
    /// object replicator, which knows only whole replicas, leaves their
    /// partitions to the reconstructor (as Swift's does), and the auditor
    /// checks their fragment archives.
    pub ec_policies: Vec<u32>,
    /// The codes of the erasure-coded policies, by index: what the
    /// reconstructor rebuilds fragments with.
    pub ec_params: BTreeMap<u32, apus_core::policy::EcParams>,
    pub identity: LocalIdentity,
    pub client: BackendClient,
    /// Where each pass leaves its figures for `/recon` (`None`: nowhere).
    pub recon: Option<crate::recon::ReconCache>,
    /// Where each pass is counted for `/metrics` (`None`: nowhere).
    pub metrics: Option<std::sync::Arc<crate::metrics::DaemonMetrics>>,
}

impl DaemonContext {
    pub fn new(
        devices: PathBuf,
        hash: HashConfig,
        rings_dir: PathBuf,
        policies: Vec<u32>,
        identity: LocalIdentity,
        client_config: ClientConfig,
    ) -> Self {
        DaemonContext {
            devices,
            mount_check: false,
            hash,
            rings_dir,
            policies,
            ec_policies: Vec::new(),
            ec_params: BTreeMap::new(),
            identity,
            client: BackendClient::new(client_config),
            recon: None,
            metrics: None,
        }
    }

    /// The policies whose objects are whole replicas.
    pub fn replicated_policies(&self) -> impl Iterator<Item = u32> + '_ {
        self.policies
            .iter()
            .copied()
            .filter(|p| !self.ec_policies.contains(p))
    }

    /// A disk-file manager over this node's devices.
    pub fn diskfile(&self) -> apus_diskfile::DiskFileManager {
        let mut conf = apus_diskfile::DiskFileConfig::new(self.devices.clone(), self.hash.clone());
        conf.mount_check = self.mount_check;
        apus_diskfile::DiskFileManager::new(conf)
    }

    /// The names of the device directories under `devices`, sorted; the
    /// updaters walk these, as Swift's do, rather than the rings.
    pub fn device_dirs(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.devices)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Reads the rings afresh, so a pass sees the newest ring files.
    pub fn load_rings(&self) -> Result<Arc<Rings>, String> {
        Rings::load(&self.rings_dir, &self.policies).map(Arc::new)
    }

    /// The devices of `ring` served by this node, each once, in ring order.
    pub fn local_devices<'r>(&self, ring: &'r Ring, kind: ServerKind) -> Vec<&'r Device> {
        let mut out: Vec<&Device> = Vec::new();
        for dev in ring.devs() {
            if self.identity.is_local(dev, kind) && !out.iter().any(|d| d.device == dev.device) {
                out.push(dev);
            }
        }
        out
    }

    /// The path of a local device, or `None` when it is missing (or, with
    /// `mount_check`, not mounted): a worker skips such a device.
    pub fn device_path(&self, device: &str) -> Option<PathBuf> {
        apus_diskfile::layout::device_path(&self.devices, device, self.mount_check).ok()
    }
}

/// `ip:port` of a device's replication address, for requests.
pub fn replication_host(dev: &Device) -> String {
    match dev.replication_ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", dev.replication_port),
        _ => format!("{}:{}", dev.replication_ip, dev.replication_port),
    }
}

/// `ip:port` of a device's client-facing address.
pub fn device_host(dev: &Device) -> String {
    match dev.ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", dev.port),
        _ => format!("{}:{}", dev.ip, dev.port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(ip: &str, port: u16) -> Device {
        Device {
            id: 0,
            region: 1,
            zone: 1,
            ip: ip.into(),
            port,
            replication_ip: ip.into(),
            replication_port: port,
            device: "d1".into(),
            weight: 1.0,
            meta: String::new(),
        }
    }

    fn identity(ip: &str) -> LocalIdentity {
        let a = |p: u16| SocketAddr::new(ip.parse().unwrap(), p);
        LocalIdentity {
            account: a(6202),
            container: a(6201),
            object: a(6200),
        }
    }

    #[test]
    fn a_device_is_local_when_address_and_port_match() {
        let id = identity("127.0.0.2");
        assert!(id.is_local(&dev("127.0.0.2", 6200), ServerKind::Object));
        assert!(!id.is_local(&dev("127.0.0.2", 6201), ServerKind::Object));
        assert!(!id.is_local(&dev("127.0.0.3", 6200), ServerKind::Object));
        assert!(id.is_local(&dev("127.0.0.2", 6201), ServerKind::Container));
    }

    #[test]
    fn an_unspecified_bind_address_takes_every_address_of_this_host() {
        let id = identity("0.0.0.0");
        assert!(id.is_local(&dev("127.0.0.9", 6200), ServerKind::Object));
        // TEST-NET-3 is never assigned to a host.
        assert!(!id.is_local(&dev("203.0.113.7", 6200), ServerKind::Object));
        assert!(!id.is_local(&dev("not-an-ip", 6200), ServerKind::Object));
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(replication_host(&dev("::1", 6200)), "[::1]:6200");
        assert_eq!(device_host(&dev("10.0.0.1", 6200)), "10.0.0.1:6200");
    }
}
