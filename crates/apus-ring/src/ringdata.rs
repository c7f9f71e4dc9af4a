//! The ring as a file: Swift's v1 `*.ring.gz` format.
//!
//! Layout (inside one gzip stream): the magic `R1NG`, a big-endian u16
//! format version (1), a big-endian u32 length and that many bytes of JSON
//! (`devs`, `part_shift`, `replica_count`, `byteorder`, optionally `version`
//! and `next_part_power`), then `replica_count` arrays of
//! `2^part_power` u16 device ids in the byte order the JSON names.
//!
//! Everything read from a file is checked before use: sizes are bounded and
//! read incrementally (a truncated file fails before any large allocation),
//! and every device id in the tables must name a device, so lookups never
//! index out of bounds.

use std::io::{Read, Write};
use std::path::Path;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use serde::{Deserialize, Serialize};

use crate::device::Device;

/// gzip header mtime Swift writes, so identical rings give identical bytes.
const GZIP_MTIME: u32 = 1_300_507_380;
/// Larger JSON headers than this are taken as corruption, not as rings.
const MAX_HEADER_BYTES: u32 = 256 << 20;
/// The most replicas a ring file may claim.
pub const MAX_REPLICAS: usize = 256;
/// The largest partition power we accept: part_shift >= 32 - MAX_PART_POWER.
pub const MAX_PART_POWER: u32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum RingFileError {
    /// Not `#[from]`: the message already carries the I/O error, and a
    /// source would make error chains print it twice.
    #[error("cannot read ring file: {0}")]
    Io(std::io::Error),
    #[error("not a ring file: bad magic {0:?}")]
    BadMagic(Vec<u8>),
    #[error("ring format version {0} is not supported (apus reads and writes version 1)")]
    UnsupportedVersion(u16),
    #[error("ring header is {0} bytes, more than a ring can have")]
    HeaderTooLarge(u32),
    #[error("ring header is not valid JSON: {0}")]
    BadHeader(String),
    #[error("ring file is truncated: {0}")]
    Truncated(String),
    #[error("invalid ring: {0}")]
    Invalid(String),
}

impl From<std::io::Error> for RingFileError {
    fn from(e: std::io::Error) -> Self {
        RingFileError::Io(e)
    }
}

/// The minimum a node needs to route requests: devices and assignments.
#[derive(Clone, Debug, PartialEq)]
pub struct RingData {
    /// Indexed by device id; removed devices leave holes.
    pub devs: Vec<Option<Device>>,
    /// `replica2part2dev[r][p]` is the device of replica `r` of partition `p`.
    pub replica2part2dev: Vec<Vec<u16>>,
    pub part_shift: u32,
    pub next_part_power: Option<u32>,
    pub version: Option<u64>,
}

/// A device entry as it may appear in a ring file written by any Swift
/// version: older rings lack the replication address and meta.
#[derive(Deserialize)]
struct RawDevice {
    id: u32,
    region: u32,
    zone: u32,
    ip: String,
    port: u16,
    replication_ip: Option<String>,
    replication_port: Option<u16>,
    device: String,
    weight: f64,
    #[serde(default)]
    meta: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    devs: Vec<Option<RawDevice>>,
    part_shift: u32,
    replica_count: usize,
    byteorder: Option<String>,
    version: Option<u64>,
    next_part_power: Option<u32>,
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    byteorder: &'static str,
    devs: &'a [Option<Device>],
    #[serde(skip_serializing_if = "Option::is_none")]
    next_part_power: Option<u32>,
    part_shift: u32,
    replica_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
}

impl RingData {
    pub fn part_power(&self) -> u32 {
        32 - self.part_shift
    }

    pub fn partition_count(&self) -> usize {
        self.replica2part2dev.first().map_or(0, Vec::len)
    }

    pub fn replica_count(&self) -> usize {
        self.replica2part2dev.len()
    }

    /// Checks the invariants lookups rely on.
    pub fn validate(&self) -> Result<(), RingFileError> {
        if self.part_shift > 32 {
            return Err(RingFileError::Invalid(format!(
                "part_shift {} above 32",
                self.part_shift
            )));
        }
        let parts = 1usize << (32 - self.part_shift);
        for (r, table) in self.replica2part2dev.iter().enumerate() {
            if table.len() > parts {
                return Err(RingFileError::Invalid(format!(
                    "replica {r} has {} partitions, more than 2^{}",
                    table.len(),
                    32 - self.part_shift
                )));
            }
            for (p, &dev_id) in table.iter().enumerate() {
                if self.devs.get(dev_id as usize).is_none_or(Option::is_none) {
                    return Err(RingFileError::Invalid(format!(
                        "partition {p} replica {r} names device {dev_id}, which the ring does not have"
                    )));
                }
            }
        }
        for (i, dev) in self.devs.iter().enumerate() {
            if let Some(dev) = dev {
                if dev.id as usize != i {
                    return Err(RingFileError::Invalid(format!(
                        "device at index {i} has id {}",
                        dev.id
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Self, RingFileError> {
        let file = std::fs::File::open(path)?;
        Self::read_from(std::io::BufReader::new(file))
    }

    /// Reads a gzip-compressed v1 ring.
    pub fn read_from(reader: impl Read) -> Result<Self, RingFileError> {
        Self::read_decompressed(GzDecoder::new(reader))
    }

    /// Reads a v1 ring from the bytes inside its gzip stream. The decoder's
    /// end-of-stream check (the gzip CRC) runs when this reads to the end.
    pub fn read_decompressed(mut gz: impl Read) -> Result<Self, RingFileError> {
        let mut magic = [0u8; 4];
        read_exact_or_truncated(&mut gz, &mut magic, "magic")?;
        if &magic != b"R1NG" {
            return Err(RingFileError::BadMagic(magic.to_vec()));
        }
        let mut word = [0u8; 2];
        read_exact_or_truncated(&mut gz, &mut word, "format version")?;
        let format_version = u16::from_be_bytes(word);
        if format_version != 1 {
            return Err(RingFileError::UnsupportedVersion(format_version));
        }
        let mut len = [0u8; 4];
        read_exact_or_truncated(&mut gz, &mut len, "header length")?;
        let header_len = u32::from_be_bytes(len);
        if header_len > MAX_HEADER_BYTES {
            return Err(RingFileError::HeaderTooLarge(header_len));
        }
        let json = read_bounded(&mut gz, header_len as usize, "header")?;
        let header: RawHeader =
            serde_json::from_slice(&json).map_err(|e| RingFileError::BadHeader(e.to_string()))?;
        if header.part_shift > 32 {
            return Err(RingFileError::Invalid(format!(
                "part_shift {} above 32",
                header.part_shift
            )));
        }
        if header.replica_count > MAX_REPLICAS {
            return Err(RingFileError::Invalid(format!(
                "replica_count {} above {MAX_REPLICAS}",
                header.replica_count
            )));
        }
        let swap = match header.byteorder.as_deref() {
            None | Some("little") => false,
            Some("big") => true,
            Some(other) => {
                return Err(RingFileError::Invalid(format!(
                    "unknown byteorder {other:?}"
                )))
            }
        };
        let parts = 1usize << (32 - header.part_shift);
        let mut replica2part2dev = Vec::with_capacity(header.replica_count);
        for r in 0..header.replica_count {
            let bytes = read_bounded(&mut gz, parts * 2, &format!("replica {r} table"))?;
            let table = bytes
                .chunks_exact(2)
                .map(|pair| {
                    let pair = [pair[0], pair[1]];
                    if swap {
                        u16::from_be_bytes(pair)
                    } else {
                        u16::from_le_bytes(pair)
                    }
                })
                .collect();
            replica2part2dev.push(table);
        }
        // Reading to the end makes the decoder check the gzip trailer (CRC
        // and length), which catches a file cut after its last table.
        let mut extra = [0u8; 1];
        match gz.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => {
                return Err(RingFileError::Invalid(
                    "data after the last table".to_string(),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(RingFileError::Truncated(
                    "ends inside the gzip trailer".to_string(),
                ))
            }
            Err(e) => return Err(RingFileError::Io(e)),
        }
        let devs = header
            .devs
            .into_iter()
            .map(|d| {
                d.map(|d| Device {
                    replication_ip: d.replication_ip.unwrap_or_else(|| d.ip.clone()),
                    replication_port: d.replication_port.unwrap_or(d.port),
                    id: d.id,
                    region: d.region,
                    zone: d.zone,
                    ip: d.ip,
                    port: d.port,
                    device: d.device,
                    weight: d.weight,
                    meta: d.meta.unwrap_or_default(),
                })
            })
            .collect();
        let ring = RingData {
            devs,
            replica2part2dev,
            part_shift: header.part_shift,
            next_part_power: header.next_part_power,
            version: header.version,
        };
        ring.validate()?;
        Ok(ring)
    }

    /// Writes the ring in Swift's v1 format (little-endian tables).
    pub fn write_to(&self, writer: impl Write) -> Result<(), RingFileError> {
        if self
            .replica2part2dev
            .iter()
            .any(|t| t.len() != self.partition_count())
        {
            return Err(RingFileError::Invalid(
                "the v1 format holds only whole replicas".to_string(),
            ));
        }
        let header = HeaderOut {
            byteorder: "little",
            devs: &self.devs,
            next_part_power: self.next_part_power,
            part_shift: self.part_shift,
            replica_count: self.replica2part2dev.len(),
            version: self.version,
        };
        let json =
            serde_json::to_vec(&header).map_err(|e| RingFileError::Invalid(e.to_string()))?;
        let json_len =
            u32::try_from(json.len()).map_err(|_| RingFileError::HeaderTooLarge(u32::MAX))?;
        let mut gz: GzEncoder<_> = GzBuilder::new()
            .mtime(GZIP_MTIME)
            // The fastest level: a ring is written on every rebalance and read
            // rarely; level 1 costs a few milliseconds where the default
            // costs most of a large ring's rebalance time.
            .write(writer, Compression::fast());
        gz.write_all(b"R1NG")?;
        gz.write_all(&1u16.to_be_bytes())?;
        gz.write_all(&json_len.to_be_bytes())?;
        gz.write_all(&json)?;
        let mut buf = Vec::with_capacity(64 * 1024);
        for table in &self.replica2part2dev {
            for chunk in table.chunks(32 * 1024) {
                buf.clear();
                for id in chunk {
                    buf.extend_from_slice(&id.to_le_bytes());
                }
                gz.write_all(&buf)?;
            }
        }
        gz.finish()?.flush()?;
        Ok(())
    }

    /// Writes atomically: a temp file beside the target, fsynced, renamed.
    pub fn save(&self, path: &Path) -> Result<(), RingFileError> {
        crate::atomic_write(path, |file| self.write_to(file))
    }
}

fn read_exact_or_truncated(
    r: &mut impl Read,
    buf: &mut [u8],
    what: &str,
) -> Result<(), RingFileError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            RingFileError::Truncated(format!("ends inside the {what}"))
        }
        _ => RingFileError::Io(e),
    })
}

/// Reads exactly `len` bytes, growing the buffer only as data arrives.
fn read_bounded(r: &mut impl Read, len: usize, what: &str) -> Result<Vec<u8>, RingFileError> {
    let mut out = Vec::with_capacity(len.min(1 << 20));
    let got = r.take(len as u64).read_to_end(&mut out)?;
    if got != len {
        return Err(RingFileError::Truncated(format!(
            "ends inside the {what} ({got} of {len} bytes)"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_ring() -> RingData {
        let devs = (0..4)
            .map(|i| {
                Some(Device {
                    id: i,
                    region: 1,
                    zone: i,
                    ip: format!("127.0.0.{}", i + 1),
                    port: 6200,
                    replication_ip: format!("127.0.0.{}", i + 1),
                    replication_port: 6200,
                    device: format!("d{i}"),
                    weight: 100.0,
                    meta: String::new(),
                })
            })
            .collect();
        RingData {
            devs,
            replica2part2dev: vec![
                (0..16).map(|p| (p % 4) as u16).collect(),
                (0..16).map(|p| ((p + 1) % 4) as u16).collect(),
                (0..16).map(|p| ((p + 2) % 4) as u16).collect(),
            ],
            part_shift: 28,
            next_part_power: None,
            version: Some(3),
        }
    }

    #[test]
    fn round_trips() {
        let ring = sample_ring();
        let mut bytes = Vec::new();
        ring.write_to(&mut bytes).unwrap();
        let back = RingData::read_from(&bytes[..]).unwrap();
        assert_eq!(back, ring);
    }

    #[test]
    fn same_ring_same_bytes() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        sample_ring().write_to(&mut a).unwrap();
        sample_ring().write_to(&mut b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut bytes = Vec::new();
        sample_ring().write_to(&mut bytes).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                RingData::read_from(&bytes[..cut]).is_err(),
                "cut at {cut} accepted"
            );
        }
    }

    #[test]
    fn rejects_dangling_device_ids() {
        let mut ring = sample_ring();
        ring.replica2part2dev[0][3] = 9;
        let mut bytes = Vec::new();
        ring.write_to(&mut bytes).unwrap();
        let err = RingData::read_from(&bytes[..]).unwrap_err();
        assert!(err.to_string().contains("device 9"), "{err}");
    }

    #[test]
    fn rejects_other_magic_and_versions() {
        let mut plain = Vec::new();
        {
            let mut gz = GzEncoder::new(&mut plain, Compression::default());
            gz.write_all(b"R1NG\x00\x02").unwrap();
            gz.finish().unwrap();
        }
        assert!(matches!(
            RingData::read_from(&plain[..]),
            Err(RingFileError::UnsupportedVersion(2))
        ));
        assert!(RingData::read_from(&b"not gzip at all"[..]).is_err());
    }
}
