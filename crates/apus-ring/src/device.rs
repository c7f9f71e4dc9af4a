//! A storage device as the ring knows it.

use serde::{Deserialize, Serialize};

/// One device (a disk on a host). Field names match the keys of Swift's ring
/// JSON, so a `Device` serializes into the `devs` list of a ring file as is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: u32,
    pub region: u32,
    pub zone: u32,
    pub ip: String,
    pub port: u16,
    pub replication_ip: String,
    pub replication_port: u16,
    pub device: String,
    pub weight: f64,
    #[serde(default)]
    pub meta: String,
}

impl Device {
    /// The failure-domain tiers of this device, widest first:
    /// region, (region, zone), (region, zone, ip), device id.
    /// The IP (not IP and port) is the host tier, as in Swift.
    pub fn region_key(&self) -> u32 {
        self.region
    }

    pub fn zone_key(&self) -> (u32, u32) {
        (self.region, self.zone)
    }

    pub fn host_key(&self) -> (u32, u32, &str) {
        (self.region, self.zone, self.ip.as_str())
    }
}
