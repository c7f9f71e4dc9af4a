//! Swift's on-disk names: per-policy directories, object file names and
//! device checks.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use apus_core::Timestamp;

use crate::error::{DiskFileError, Result};

/// `base` for policy 0, `base-N` otherwise (Swift's `get_policy_string`).
pub fn policy_dir(base: &str, policy: u32) -> String {
    if policy == 0 {
        base.to_string()
    } else {
        format!("{base}-{policy}")
    }
}

/// `objects` / `objects-N`.
pub fn data_dir(policy: u32) -> String {
    policy_dir("objects", policy)
}

/// `async_pending` / `async_pending-N`.
pub fn async_dir(policy: u32) -> String {
    policy_dir("async_pending", policy)
}

/// `tmp` / `tmp-N`.
pub fn tmp_dir(policy: u32) -> String {
    policy_dir("tmp", policy)
}

/// The last three hex digits of an object hash: its suffix directory.
pub fn suffix_of(hash: &str) -> &str {
    // A hash is 32 hex digits; anything else gets its last three
    // characters rather than a panic on a byte that splits one.
    let start = hash.char_indices().rev().nth(2).map_or(0, |(at, _)| at);
    &hash[start..]
}

/// `<device_path>/objects[-N]/<partition>`.
pub fn partition_path(device_path: &Path, policy: u32, partition: u32) -> PathBuf {
    device_path
        .join(data_dir(policy))
        .join(partition.to_string())
}

/// `<device_path>/objects[-N]/<partition>/<suffix>/<hash>`.
pub fn hash_dir_path(device_path: &Path, policy: u32, partition: u32, hash: &str) -> PathBuf {
    partition_path(device_path, policy, partition)
        .join(suffix_of(hash))
        .join(hash)
}

/// True when `s` is three lowercase hex digits.
pub fn valid_suffix(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The kinds of object files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Data,
    Meta,
    Tombstone,
}

impl FileKind {
    pub fn ext(self) -> &'static str {
        match self {
            FileKind::Data => ".data",
            FileKind::Meta => ".meta",
            FileKind::Tombstone => ".ts",
        }
    }
}

/// Swift's short timestamp form: normal, plus `_<hex>` without padding when
/// there is an offset.
fn short(ts: &Timestamp) -> String {
    if ts.offset() == 0 {
        ts.normal()
    } else {
        format!("{}_{:x}", ts.normal(), ts.offset())
    }
}

/// The file name for an object file. A `.meta` carrying a content-type
/// timestamp gets it encoded as a signed hex delta (Swift's
/// `encode_timestamps(t, ctype_t, explicit=True)`).
pub fn make_filename(ts: &Timestamp, kind: FileKind, ctype_ts: Option<&Timestamp>) -> String {
    match (kind, ctype_ts) {
        (FileKind::Meta, Some(ct)) => {
            let delta = i128::from(ct.ticks()) - i128::from(ts.ticks());
            let sign = if delta < 0 { "-" } else { "+" };
            format!("{}{sign}{:x}.meta", short(ts), delta.unsigned_abs())
        }
        _ => format!("{}{}", ts.internal(), kind.ext()),
    }
}

/// A parsed object file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub filename: String,
    /// The extension including its dot (any extension parses, as in Swift).
    pub ext: String,
    pub timestamp: Timestamp,
    /// For `.meta` files: the content-type timestamp encoded in the name.
    pub ctype_timestamp: Option<Timestamp>,
    /// For erasure-coded `.data` files: the fragment index in the name
    /// (`None` for every other file).
    pub frag_index: Option<u32>,
    /// For erasure-coded `.data` files: the name carries the durable
    /// marker `#d`, or a legacy `.durable` file at the same timestamp makes
    /// it durable (set by the EC classification). Always false otherwise.
    pub durable: bool,
}

impl FileInfo {
    pub fn kind(&self) -> Option<FileKind> {
        match self.ext.as_str() {
            ".data" => Some(FileKind::Data),
            ".meta" => Some(FileKind::Meta),
            ".ts" => Some(FileKind::Tombstone),
            _ => None,
        }
    }
}

/// Python's `os.path.splitext` on a bare file name.
fn splitext(name: &str) -> (&str, &str) {
    let stem_start = name.len() - name.trim_start_matches('.').len();
    match name[stem_start..].rfind('.') {
        Some(i) => name.split_at(stem_start + i),
        None => (name, ""),
    }
}

/// Parses an object file name as Swift's `parse_on_disk_filename` does;
/// `None` for names Swift counts as unexpected.
pub fn parse_filename(name: &str) -> Option<FileInfo> {
    let (stem, ext) = splitext(name);
    let (timestamp, ctype_timestamp) = if ext == ".meta" {
        decode_meta_stem(stem)?
    } else {
        (Timestamp::parse(stem).ok()?, None)
    };
    Some(FileInfo {
        filename: name.to_string(),
        ext: ext.to_string(),
        timestamp,
        ctype_timestamp,
        frag_index: None,
        durable: false,
    })
}

/// An erasure-coded policy's shape: what the on-disk layer needs of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EcPolicy {
    /// The policy index (`objects-N`).
    pub index: u32,
    pub ec_ndata: u32,
    pub ec_nparity: u32,
}

impl EcPolicy {
    pub fn new(index: u32, ec_ndata: u32, ec_nparity: u32) -> Self {
        EcPolicy {
            index,
            ec_ndata,
            ec_nparity,
        }
    }

    /// How many fragment archives an object has: valid fragment indexes
    /// are `0..width`.
    pub fn width(&self) -> u32 {
        self.ec_ndata.saturating_add(self.ec_nparity)
    }
}

/// Python's `int(text)` for a base-10 integer: surrounding whitespace, an
/// optional sign, digits with single underscores between them. Values
/// beyond `i64` read as `None` (no fragment index is that large).
fn python_int(text: &str) -> Option<i64> {
    // Python's str.isspace also counts the ASCII separators 0x1c..0x1f.
    let is_space = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
    let t = text.trim_matches(is_space);
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let bytes = digits.as_bytes();
    let digit_at = |b: Option<&u8>| matches!(b, Some(b) if b.is_ascii_digit());
    if !digit_at(bytes.first()) || !digit_at(bytes.last()) {
        return None;
    }
    let mut value: i64 = 0;
    let mut prev_underscore = false;
    for &b in bytes {
        match b {
            b'_' if !prev_underscore => prev_underscore = true,
            b'0'..=b'9' => {
                prev_underscore = false;
                value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
            }
            _ => return None,
        }
    }
    Some(if negative { -value } else { value })
}

/// Swift's `validate_fragment_index`: a whole number, not negative, and
/// below the policy's width when a policy is given.
pub fn validate_fragment_index(text: &str, policy: Option<&EcPolicy>) -> Option<u32> {
    let value = python_int(text)?;
    let index = u32::try_from(value).ok()?;
    match policy {
        Some(p) if index >= p.width() => None,
        _ => Some(index),
    }
}

/// The name of an erasure-coded fragment archive:
/// `<timestamp>#<frag_index>[#d].data`.
pub fn make_ec_data_filename(ts: &Timestamp, frag_index: u32, durable: bool) -> String {
    let marker = if durable { "#d" } else { "" };
    format!("{}#{frag_index}{marker}.data", ts.internal())
}

/// Parses an object file name of an erasure-coded policy as Swift's
/// `ECDiskFileManager.parse_on_disk_filename` does: `.data` names carry a
/// fragment index (checked against `policy` when given) and maybe the
/// durable marker; every other name parses as for a replicated policy
/// (legacy `<timestamp>.durable` files included). `None` for names Swift
/// counts as unexpected.
pub fn parse_ec_filename(name: &str, policy: Option<&EcPolicy>) -> Option<FileInfo> {
    let (stem, ext) = splitext(name);
    if ext != ".data" {
        return parse_filename(name);
    }
    let mut parts = stem.split('#');
    let timestamp = Timestamp::parse(parts.next()?).ok()?;
    let frag_index = validate_fragment_index(parts.next()?, policy)?;
    let durable = parts.next() == Some("d");
    Some(FileInfo {
        filename: name.to_string(),
        ext: ext.to_string(),
        timestamp,
        ctype_timestamp: None,
        frag_index: Some(frag_index),
        durable,
    })
}

/// `<t1>[<+|-><hex delta>[...]]` as Swift's `decode_timestamps(explicit=True)`.
fn decode_meta_stem(stem: &str) -> Option<(Timestamp, Option<Timestamp>)> {
    let mut parts: Vec<(i64, &str)> = Vec::new();
    for plus_part in stem.split('+') {
        for (j, p) in plus_part.split('-').enumerate() {
            let sign = if j == 0 { 1 } else { -1 };
            parts.push((sign, p));
        }
    }
    let t1 = Timestamp::parse(parts.first()?.1).ok()?;
    let ct = match parts.get(1) {
        None => None,
        Some(&(sign, hex)) => {
            let delta = i64::from_str_radix(hex, 16).ok()? * sign;
            if delta == 0 {
                Some(t1)
            } else {
                let ticks = i128::from(t1.ticks()) + i128::from(delta);
                Some(Timestamp::from_ticks(u64::try_from(ticks).ok()?, 0)?)
            }
        }
    };
    Some((t1, ct))
}

/// Checks a device the way Swift's `check_drive` does and returns its path:
/// the name must need no URL quoting; with `mount_check` the path must be a
/// mount point (or carry Swift's `.ismount` marker), otherwise a directory.
pub fn device_path(devices_root: &Path, device: &str, mount_check: bool) -> Result<PathBuf> {
    let unavailable = |reason: &str| DiskFileError::DeviceUnavailable {
        device: device.to_string(),
        reason: reason.to_string(),
    };
    let valid_name = !device.is_empty()
        && device != "."
        && device != ".."
        && device
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'~'));
    if !valid_name {
        return Err(unavailable("not a valid drive name"));
    }
    let path = devices_root.join(device);
    if mount_check {
        if !is_mount(&path) {
            return Err(unavailable("not mounted"));
        }
    } else if !path.is_dir() {
        return Err(unavailable("not a directory"));
    }
    Ok(path)
}

/// Swift's `ismount`: a different device or inode from the parent, or a
/// `.ismount` marker file (for symlinked or containerized devices).
pub fn is_mount(path: &Path) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    if meta.file_type().is_symlink() {
        return path.join(".ismount").is_file();
    }
    if let Ok(parent) = fs::symlink_metadata(path.join("..")) {
        if parent.dev() != meta.dev() || parent.ino() == meta.ino() {
            return true;
        }
    }
    path.join(".ismount").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suffix_is_the_last_three_characters_even_of_odd_hashes() {
        assert_eq!(suffix_of("d41d8cd98f00b204e9800998ecf8427e"), "27e");
        assert_eq!(suffix_of("ab"), "ab");
        assert_eq!(suffix_of(""), "");
        assert_eq!(suffix_of("xx\u{e9}\u{e9}z"), "\u{e9}\u{e9}z");
    }

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[test]
    fn names() {
        assert_eq!(data_dir(0), "objects");
        assert_eq!(data_dir(2), "objects-2");
        assert_eq!(async_dir(1), "async_pending-1");
        let t = ts("1400000000.5");
        assert_eq!(
            make_filename(&t, FileKind::Data, None),
            "1400000000.50000.data"
        );
        assert_eq!(
            make_filename(&t, FileKind::Tombstone, None),
            "1400000000.50000.ts"
        );
        let ct = ts("1400000000.4");
        assert_eq!(
            make_filename(&t, FileKind::Meta, Some(&ct)),
            "1400000000.50000-2710.meta"
        );
        assert_eq!(
            make_filename(&t, FileKind::Meta, Some(&t)),
            "1400000000.50000+0.meta"
        );
        let to = t.with_offset(3);
        assert_eq!(
            make_filename(&to, FileKind::Meta, Some(&ct)),
            "1400000000.50000_3-2710.meta"
        );
    }

    #[test]
    fn parse_round_trip() {
        let t = ts("1400000000.5");
        let ct = ts("1400000000.4");
        let info = parse_filename("1400000000.50000-2710.meta").unwrap();
        assert_eq!(info.timestamp, t);
        assert_eq!(info.ctype_timestamp, Some(ct));
        let info = parse_filename("1400000000.50000.meta").unwrap();
        assert_eq!(info.ctype_timestamp, None);
        let info = parse_filename("1400000000.50000_0000000000000002.data").unwrap();
        assert_eq!(info.timestamp, t.with_offset(2));
        assert_eq!(info.kind(), Some(FileKind::Data));
        assert!(parse_filename("1400000000.50000.data.spill").is_none());
        assert!(parse_filename(".lock").is_none());
        assert!(parse_filename("junk").is_none());
        assert_eq!(parse_filename("1400000000.50000.foo").unwrap().ext, ".foo");
    }

    #[test]
    fn splitext_like_python() {
        assert_eq!(splitext("a.b.c"), ("a.b", ".c"));
        assert_eq!(splitext(".lock"), (".lock", ""));
        assert_eq!(splitext("abc"), ("abc", ""));
    }

    #[test]
    fn device_checks() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("sda")).unwrap();
        assert!(device_path(root.path(), "sda", false).is_ok());
        assert!(matches!(
            device_path(root.path(), "sdb", false),
            Err(DiskFileError::DeviceUnavailable { .. })
        ));
        assert!(device_path(root.path(), "sda", true).is_err());
        assert!(device_path(root.path(), "../x", false).is_err());
        fs::write(root.path().join("sda/.ismount"), b"").unwrap();
        assert!(device_path(root.path(), "sda", true).is_ok());
    }
}
