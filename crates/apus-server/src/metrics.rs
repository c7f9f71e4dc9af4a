//! The storage servers' Prometheus figures about their devices, read at
//! each scrape: size, use and space left (`statvfs`), async pendings
//! waiting (object server) and quarantined objects or databases (counted
//! as recon counts them, from the link count of each `quarantined/<type>`
//! directory).

use std::path::{Path, PathBuf};

use apus_http::metrics::{encode_gauge, ServerKind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

/// One device's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceFigures {
    pub device: String,
    /// `None` when `statvfs` failed.
    pub space: Option<Space>,
    /// Async pendings of every policy (object server only).
    pub async_pendings: Option<u64>,
    /// Quarantined objects (all policies), containers or accounts: the
    /// server's own kind.
    pub quarantined: u64,
}

/// Size, use and space left of a device, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Space {
    pub capacity: u64,
    pub used: u64,
    pub free: u64,
}

/// Reads every device's figures at scrape time for one storage server.
#[derive(Debug)]
pub struct DeviceCollector {
    devices: PathBuf,
    server: ServerKind,
}

impl DeviceCollector {
    pub fn new(devices: impl Into<PathBuf>, server: ServerKind) -> Self {
        DeviceCollector {
            devices: devices.into(),
            server,
        }
    }

    /// The figures of each device directory, in name order; nothing when
    /// the devices directory cannot be read.
    pub fn read(&self) -> Vec<DeviceFigures> {
        let Ok(entries) = std::fs::read_dir(&self.devices) else {
            return Vec::new();
        };
        let mut dirs: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .filter(|(_, p)| p.is_dir())
            .collect();
        dirs.sort();
        dirs.into_iter()
            .map(|(device, path)| DeviceFigures {
                space: space(&path),
                async_pendings: (self.server == ServerKind::Object).then(|| async_pendings(&path)),
                quarantined: quarantined(&path, self.server),
                device,
            })
            .collect()
    }
}

fn space(path: &Path) -> Option<Space> {
    let st = rustix::fs::statvfs(path).ok()?;
    let bsize = st.f_frsize.max(1);
    Some(Space {
        capacity: bsize.saturating_mul(st.f_blocks),
        used: bsize.saturating_mul(st.f_blocks.saturating_sub(st.f_bfree)),
        free: bsize.saturating_mul(st.f_bavail),
    })
}

/// Files in `async_pending[-N]/<suffix>/`.
fn async_pendings(device: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(device) else {
        return 0;
    };
    let mut n = 0u64;
    for dir in entries.filter_map(Result::ok) {
        let name = dir.file_name();
        let name = name.to_string_lossy();
        if name != "async_pending" && !name.starts_with("async_pending-") {
            continue;
        }
        let Ok(suffixes) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for suffix in suffixes.filter_map(Result::ok) {
            if let Ok(files) = std::fs::read_dir(suffix.path()) {
                n = n.saturating_add(files.filter_map(Result::ok).count() as u64);
            }
        }
    }
    n
}

/// Quarantined entries of `server`'s kind: the link count of each
/// `quarantined/<type>` directory less two (recon's count).
fn quarantined(device: &Path, server: ServerKind) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(device.join("quarantined")) else {
        return 0;
    };
    let mut n = 0u64;
    for q in entries.filter_map(Result::ok) {
        let name = q.file_name();
        let name = name.to_string_lossy();
        let ours = match server {
            ServerKind::Object => name == "objects" || name.starts_with("objects-"),
            ServerKind::Container => name == "containers",
            ServerKind::Account => name == "accounts",
            ServerKind::Proxy => false,
        };
        if !ours {
            continue;
        }
        if let Ok(meta) = std::fs::symlink_metadata(q.path()) {
            n = n.saturating_add(meta.nlink().saturating_sub(2));
        }
    }
    n
}

/// A space figure's name, help and value.
type SpaceFigure = (&'static str, &'static str, fn(&Space) -> u64);

impl Collector for DeviceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let figures = self.read();
        let server = self.server.as_str();
        let spaces: [SpaceFigure; 3] = [
            (
                "apus_device_capacity_bytes",
                "Size of the filesystem holding the device",
                |s| s.capacity,
            ),
            (
                "apus_device_used_bytes",
                "Bytes used on the filesystem holding the device",
                |s| s.used,
            ),
            (
                "apus_device_free_bytes",
                "Bytes left for unprivileged use on the filesystem holding the device",
                |s| s.free,
            ),
        ];
        for (name, help, value) in spaces {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for f in &figures {
                if let Some(s) = &f.space {
                    let labels = [("server", server), ("device", f.device.as_str())];
                    encode_gauge(&mut family, &labels, value(s))?;
                }
            }
        }
        if self.server == ServerKind::Object {
            let mut family = encoder.encode_descriptor(
                "apus_device_async_pendings",
                "Container updates waiting in the device's async_pending directories",
                None,
                MetricType::Gauge,
            )?;
            for f in &figures {
                let labels = [("server", server), ("device", f.device.as_str())];
                encode_gauge(&mut family, &labels, f.async_pendings.unwrap_or(0))?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "apus_device_quarantined",
            "Objects, containers or accounts (the server's kind) quarantined on the device",
            None,
            MetricType::Gauge,
        )?;
        for f in &figures {
            let labels = [("server", server), ("device", f.device.as_str())];
            encode_gauge(&mut family, &labels, f.quarantined)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_pendings_and_quarantined_per_device() {
        let dir = tempfile::tempdir().unwrap();
        let d1 = dir.path().join("d1");
        std::fs::create_dir_all(d1.join("async_pending/abc")).unwrap();
        std::fs::create_dir_all(d1.join("async_pending-1/def")).unwrap();
        std::fs::write(d1.join("async_pending/abc/x-1"), b"").unwrap();
        std::fs::write(d1.join("async_pending-1/def/y-1"), b"").unwrap();
        std::fs::create_dir_all(d1.join("quarantined/objects/h1")).unwrap();
        std::fs::create_dir_all(d1.join("quarantined/objects-1/h2")).unwrap();
        std::fs::create_dir_all(d1.join("quarantined/containers/h3")).unwrap();
        std::fs::create_dir_all(dir.path().join("d2")).unwrap();
        let figures = DeviceCollector::new(dir.path(), ServerKind::Object).read();
        assert_eq!(figures.len(), 2);
        assert_eq!(figures[0].device, "d1");
        assert_eq!(figures[0].async_pendings, Some(2));
        assert_eq!(figures[0].quarantined, 2);
        assert!(figures[0].space.is_some_and(|s| s.capacity >= s.free));
        assert_eq!(figures[1].quarantined, 0);
        let c = DeviceCollector::new(dir.path(), ServerKind::Container).read();
        assert_eq!(c[0].quarantined, 1);
        assert_eq!(c[0].async_pendings, None);
        assert!(
            DeviceCollector::new(dir.path().join("none"), ServerKind::Account)
                .read()
                .is_empty()
        );
    }
}
