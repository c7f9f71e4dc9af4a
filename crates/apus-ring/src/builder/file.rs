//! The builder file: apus's own format (Swift pickles Python objects,
//! which apus neither reads nor writes).
//!
//! # Layout, format version 1
//!
//! One gzip stream (header mtime 0, so equal builders give equal bytes)
//! holding, in order:
//!
//! 1. the magic `APUSRBLD` (8 bytes);
//! 2. the length of the JSON header, a big-endian u32;
//! 3. the JSON header, an object with
//!    * `format`: `"apus-ring-builder"`, `format_version`: `1`;
//!    * `id` (string), `part_power` (1..=32), `replicas` (1..=256, may be
//!      fractional), `min_part_hours` (0..=255), `overload` (>= 0, a
//!      fraction), `version`, `devs_changed`, `dispersion` (number or
//!      null before the first rebalance);
//!    * `last_part_moves_epoch`: Unix seconds the move ages count from;
//!    * `devs`: an array indexed by device id, `null` for unused ids; each
//!      device has the ring's device keys (`id`, `region`, `zone`, `ip`,
//!      `port`, `replication_ip`, `replication_port`, `device`, `weight`,
//!      `meta`) plus `parts_wanted` and `marked_for_removal`;
//!    * `replica_lengths`: partitions covered by each replica row, empty
//!      before the first rebalance, otherwise `2^part_power` for each
//!      whole replica plus the fractional row if any;
//!    * `last_part_moves_len`: 0 before the first rebalance, otherwise
//!      `2^part_power`;
//! 4. for each replica row, its device ids as little-endian u16;
//! 5. `last_part_moves_len` bytes: hours since each partition last moved.
//!
//! Nothing may follow. Readers check everything before building a
//! builder: the magic and format, every range above, that every device id
//! in the rows names a device, that row lengths match the replica count,
//! and the gzip checksum; large sections are read incrementally, so a
//! length field never allocates more than the data that actually arrives.
//! Per-device partition counts are not stored but recounted from the rows.

use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::{Compression, GzBuilder};
use serde::{Deserialize, Serialize};

use super::{
    check_replicas, row_lengths, BuilderDevice, BuilderError, RingBuilder, MAX_DEVICES,
    MAX_MIN_PART_HOURS, MAX_PART_POWER, MIN_PART_POWER, NONE_DEV,
};
use crate::device::Device;

pub const MAGIC: &[u8; 8] = b"APUSRBLD";
pub const FORMAT: &str = "apus-ring-builder";
pub const FORMAT_VERSION: u32 = 1;
/// Larger JSON headers than this are taken as corruption.
const MAX_HEADER_BYTES: u32 = 256 << 20;

#[derive(Serialize, Deserialize)]
struct FileDevice {
    #[serde(flatten)]
    dev: Device,
    #[serde(default)]
    parts_wanted: i64,
    #[serde(default)]
    marked_for_removal: bool,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    format_version: u32,
    id: String,
    part_power: u32,
    replicas: f64,
    min_part_hours: u32,
    overload: f64,
    version: u64,
    devs_changed: bool,
    dispersion: Option<f64>,
    last_part_moves_epoch: u64,
    devs: Vec<Option<FileDevice>>,
    replica_lengths: Vec<u64>,
    last_part_moves_len: u64,
}

fn corrupt(msg: impl Into<String>) -> BuilderError {
    BuilderError::Corrupt(msg.into())
}

impl RingBuilder {
    /// Writes the builder in the format above.
    pub fn write_to(&self, writer: impl Write) -> Result<(), BuilderError> {
        let header = Header {
            format: FORMAT.to_string(),
            format_version: FORMAT_VERSION,
            id: self.id.clone(),
            part_power: self.part_power,
            replicas: self.replicas,
            min_part_hours: self.min_part_hours,
            overload: self.overload,
            version: self.version,
            devs_changed: self.devs_changed,
            dispersion: self.dispersion,
            last_part_moves_epoch: self.last_part_moves_epoch,
            devs: self
                .devs
                .iter()
                .map(|b| {
                    b.as_ref().map(|b| FileDevice {
                        dev: b.dev.clone(),
                        parts_wanted: b.parts_wanted,
                        marked_for_removal: b.marked_for_removal,
                    })
                })
                .collect(),
            replica_lengths: self.rows.iter().map(|r| r.len() as u64).collect(),
            last_part_moves_len: self.last_part_moves.len() as u64,
        };
        let json = serde_json::to_vec(&header).map_err(|e| corrupt(e.to_string()))?;
        let json_len = u32::try_from(json.len())
            .ok()
            .filter(|&n| n <= MAX_HEADER_BYTES)
            .ok_or_else(|| corrupt("header too large"))?;
        let mut gz = GzBuilder::new().mtime(0).write(writer, Compression::fast());
        gz.write_all(MAGIC)?;
        gz.write_all(&json_len.to_be_bytes())?;
        gz.write_all(&json)?;
        let mut buf = Vec::with_capacity(64 * 1024);
        for row in &self.rows {
            for chunk in row.chunks(32 * 1024) {
                buf.clear();
                for id in chunk {
                    buf.extend_from_slice(&id.to_le_bytes());
                }
                gz.write_all(&buf)?;
            }
        }
        gz.write_all(&self.last_part_moves)?;
        gz.finish()?.flush()?;
        Ok(())
    }

    /// Reads a builder written by [`write_to`](Self::write_to), checking
    /// everything (see the module documentation).
    pub fn read_from(reader: impl Read) -> Result<Self, BuilderError> {
        let mut gz = GzDecoder::new(reader);
        let mut magic = [0u8; 8];
        read_exact(&mut gz, &mut magic, "magic")?;
        if &magic != MAGIC {
            return Err(corrupt("bad magic (not an apus builder file)"));
        }
        let mut len = [0u8; 4];
        read_exact(&mut gz, &mut len, "header length")?;
        let header_len = u32::from_be_bytes(len);
        if header_len > MAX_HEADER_BYTES {
            return Err(corrupt(format!("header of {header_len} bytes")));
        }
        let json = read_bounded(&mut gz, header_len as u64, "header")?;
        let h: Header =
            serde_json::from_slice(&json).map_err(|e| corrupt(format!("bad header: {e}")))?;
        if h.format != FORMAT {
            return Err(BuilderError::UnsupportedFormat(format!("{:?}", h.format)));
        }
        if h.format_version != FORMAT_VERSION {
            return Err(BuilderError::UnsupportedFormat(format!(
                "{FORMAT} version {}",
                h.format_version
            )));
        }
        if !(MIN_PART_POWER..=MAX_PART_POWER).contains(&h.part_power) {
            return Err(corrupt(format!("part_power {}", h.part_power)));
        }
        check_replicas(h.replicas).map_err(|e| corrupt(e.to_string()))?;
        if h.min_part_hours > MAX_MIN_PART_HOURS {
            return Err(corrupt(format!("min_part_hours {}", h.min_part_hours)));
        }
        if !h.overload.is_finite() || h.overload < 0.0 {
            return Err(corrupt(format!("overload {}", h.overload)));
        }
        if h.dispersion.is_some_and(|d| !d.is_finite() || d < 0.0) {
            return Err(corrupt("dispersion is not a number"));
        }
        if h.devs.len() > MAX_DEVICES {
            return Err(corrupt(format!("{} device slots", h.devs.len())));
        }
        let mut devs = Vec::with_capacity(h.devs.len());
        for (i, slot) in h.devs.into_iter().enumerate() {
            let Some(d) = slot else {
                devs.push(None);
                continue;
            };
            if d.dev.id as usize != i {
                return Err(corrupt(format!("device at index {i} has id {}", d.dev.id)));
            }
            if !d.dev.weight.is_finite() || d.dev.weight < 0.0 {
                return Err(corrupt(format!("device {i} has weight {}", d.dev.weight)));
            }
            devs.push(Some(BuilderDevice {
                dev: d.dev,
                parts: 0,
                parts_wanted: d.parts_wanted,
                marked_for_removal: d.marked_for_removal,
            }));
        }
        for (i, b) in devs.iter().enumerate() {
            if let Some(b) = b {
                for other in devs[..i].iter().flatten() {
                    if other.dev.ip == b.dev.ip
                        && other.dev.port == b.dev.port
                        && other.dev.device == b.dev.device
                    {
                        return Err(corrupt(format!(
                            "devices {} and {i} share {}:{}/{}",
                            other.dev.id, b.dev.ip, b.dev.port, b.dev.device
                        )));
                    }
                }
            }
        }
        let parts = 1u64 << h.part_power;
        let expected: Vec<u64> = row_lengths(parts as usize, h.replicas)
            .into_iter()
            .map(|n| n as u64)
            .collect();
        if !h.replica_lengths.is_empty() && h.replica_lengths != expected {
            // A replica count changed since the last rebalance leaves rows
            // of the old count; they must still be whole rows over the
            // partitions with only the last one shorter.
            let last = h.replica_lengths.len() - 1;
            let ok = h.replica_lengths.len() <= super::MAX_REPLICAS_ROWS
                && h.replica_lengths
                    .iter()
                    .enumerate()
                    .all(|(r, &n)| n == parts || (r == last && n > 0 && n < parts));
            if !ok {
                return Err(corrupt(format!(
                    "replica rows of {:?} partitions",
                    h.replica_lengths
                )));
            }
        }
        let rebalanced = !h.replica_lengths.is_empty();
        if h.last_part_moves_len != if rebalanced { parts } else { 0 } {
            return Err(corrupt(format!(
                "{} partition move ages for {parts} partitions",
                h.last_part_moves_len
            )));
        }
        let mut rows = Vec::with_capacity(h.replica_lengths.len());
        for (r, &n) in h.replica_lengths.iter().enumerate() {
            let what = format!("replica {r} assignments");
            let bytes = read_bounded(&mut gz, n * 2, &what)?;
            let mut row = Vec::with_capacity(n as usize);
            for (p, pair) in bytes.chunks_exact(2).enumerate() {
                let id = u16::from_le_bytes([pair[0], pair[1]]);
                match devs.get_mut(usize::from(id)).and_then(Option::as_mut) {
                    Some(b) if id != NONE_DEV => b.parts += 1,
                    _ => {
                        return Err(corrupt(format!(
                            "partition {p} replica {r} names device {id}, which does not exist"
                        )))
                    }
                }
                row.push(id);
            }
            rows.push(row);
        }
        let last_part_moves = read_bounded(&mut gz, h.last_part_moves_len, "partition move ages")?;
        let mut extra = [0u8; 1];
        match gz.read(&mut extra) {
            Ok(0) => {}
            Ok(_) => return Err(corrupt("data after the end")),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(BuilderError::Truncated(
                    "ends inside the gzip trailer".into(),
                ))
            }
            Err(e) => return Err(corrupt(e.to_string())),
        }
        while matches!(devs.last(), Some(None)) {
            devs.pop();
        }
        Ok(RingBuilder {
            part_power: h.part_power,
            replicas: h.replicas,
            min_part_hours: h.min_part_hours,
            overload: h.overload,
            version: h.version,
            id: h.id,
            devs,
            devs_changed: h.devs_changed,
            rows,
            last_part_moves,
            last_part_moves_epoch: h.last_part_moves_epoch,
            dispersion: h.dispersion,
        })
    }
}

fn read_error(e: std::io::Error, what: &str) -> BuilderError {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            BuilderError::Truncated(format!("ends inside the {what}"))
        }
        // The decoder reports corrupt deflate data and checksum mismatches
        // as I/O errors.
        _ => corrupt(format!("{what}: {e}")),
    }
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), BuilderError> {
    r.read_exact(buf).map_err(|e| read_error(e, what))
}

/// Reads exactly `len` bytes, growing the buffer only as data arrives.
fn read_bounded(r: &mut impl Read, len: u64, what: &str) -> Result<Vec<u8>, BuilderError> {
    let mut out = Vec::with_capacity(len.min(1 << 20) as usize);
    let got = r
        .take(len)
        .read_to_end(&mut out)
        .map_err(|e| read_error(e, what))? as u64;
    if got != len {
        return Err(BuilderError::Truncated(format!(
            "ends inside the {what} ({got} of {len} bytes)"
        )));
    }
    Ok(out)
}
