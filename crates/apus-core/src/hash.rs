//! Swift's hash path: `md5(prefix + "/" + account[/container[/object]] + suffix)`.
//!
//! The prefix and suffix are cluster secrets; every node of a cluster must
//! agree on them or objects become unreachable. They come from apus's own
//! configuration or from a Swift `swift.conf` (`[swift-hash]` section).

use md5::{Digest, Md5};

/// MD5 of `data` (Swift splits work between processes by it).
pub fn md5_digest(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// The cluster-wide salt mixed into every hash path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HashConfig {
    pub prefix: Vec<u8>,
    pub suffix: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashConfigError {
    #[error("swift.conf has no [swift-hash] section")]
    NoSection,
    #[error("[swift-hash] sets neither swift_hash_path_prefix nor swift_hash_path_suffix")]
    NoSaltSet,
}

impl HashConfig {
    pub fn new(prefix: impl Into<Vec<u8>>, suffix: impl Into<Vec<u8>>) -> Self {
        HashConfig {
            prefix: prefix.into(),
            suffix: suffix.into(),
        }
    }

    /// Reads `swift_hash_path_prefix` and `swift_hash_path_suffix` from the
    /// `[swift-hash]` section of a Swift `swift.conf` text, as Swift does:
    /// at least one of them must be set.
    pub fn from_swift_conf(text: &str) -> Result<Self, HashConfigError> {
        let mut in_section = false;
        let mut seen_section = false;
        let mut prefix = None;
        let mut suffix = None;
        for raw in text.lines() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with('[') && line.ends_with(']') {
                in_section = line[1..line.len() - 1].trim() == "swift-hash";
                seen_section |= in_section;
                continue;
            }
            if !in_section {
                continue;
            }
            let Some((key, value)) = line.split_once(['=', ':']) else {
                continue;
            };
            match key.trim() {
                "swift_hash_path_prefix" => prefix = Some(value.trim().as_bytes().to_vec()),
                "swift_hash_path_suffix" => suffix = Some(value.trim().as_bytes().to_vec()),
                _ => {}
            }
        }
        if !seen_section {
            return Err(HashConfigError::NoSection);
        }
        if prefix.as_deref().unwrap_or_default().is_empty()
            && suffix.as_deref().unwrap_or_default().is_empty()
        {
            return Err(HashConfigError::NoSaltSet);
        }
        Ok(HashConfig {
            prefix: prefix.unwrap_or_default(),
            suffix: suffix.unwrap_or_default(),
        })
    }

    /// The raw 16-byte digest of a path. An empty container counts as absent,
    /// as in Swift; an object is only hashed when a container is given.
    pub fn hash_path_raw(
        &self,
        account: &str,
        container: Option<&str>,
        object: Option<&str>,
    ) -> [u8; 16] {
        let mut md5 = Md5::new();
        md5.update(&self.prefix);
        md5.update(b"/");
        md5.update(account.as_bytes());
        if let Some(container) = container.filter(|c| !c.is_empty()) {
            md5.update(b"/");
            md5.update(container.as_bytes());
            if let Some(object) = object.filter(|o| !o.is_empty()) {
                md5.update(b"/");
                md5.update(object.as_bytes());
            }
        }
        md5.update(&self.suffix);
        md5.finalize().into()
    }

    /// The hash as the 32 lowercase hex digits Swift uses for directory names.
    pub fn hash_path(
        &self,
        account: &str,
        container: Option<&str>,
        object: Option<&str>,
    ) -> String {
        to_hex(&self.hash_path_raw(account, container, object))
    }
}

/// The partition of a raw digest: its first four bytes as a big-endian u32,
/// shifted right by `32 - part_power`.
pub fn partition_of(digest: &[u8; 16], part_shift: u32) -> u32 {
    let top = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    top.checked_shr(part_shift).unwrap_or(0)
}

/// Lowercase hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5_hex(data: &[u8]) -> String {
        to_hex(&Md5::digest(data))
    }

    #[test]
    fn hash_path_is_md5_of_prefix_path_suffix() {
        let conf = HashConfig::new("pre", "suf");
        assert_eq!(
            conf.hash_path("AUTH_a", Some("c"), Some("o/x")),
            md5_hex(b"pre/AUTH_a/c/o/xsuf")
        );
        assert_eq!(
            conf.hash_path("AUTH_a", None, None),
            md5_hex(b"pre/AUTH_asuf")
        );
        assert_eq!(
            conf.hash_path("AUTH_a", Some("c"), None),
            md5_hex(b"pre/AUTH_a/csuf")
        );
    }

    #[test]
    fn empty_container_counts_as_absent() {
        let conf = HashConfig::new("", "x");
        assert_eq!(
            conf.hash_path("a", Some(""), Some("o")),
            conf.hash_path("a", None, None)
        );
    }

    #[test]
    fn known_swift_value() {
        // With an empty prefix and suffix "endcap", Swift's own unit tests
        // give this hash for /a/c/o.
        let conf = HashConfig::new("", "endcap");
        assert_eq!(
            conf.hash_path("a", Some("c"), Some("o")),
            "06fbf0b514e5199dfc4e00f42eb5ea83"
        );
    }

    #[test]
    fn partition_takes_top_bits() {
        let digest = [0xAB, 0xCD, 0xEF, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(partition_of(&digest, 32 - 8), 0xAB);
        assert_eq!(partition_of(&digest, 32 - 16), 0xABCD);
        assert_eq!(partition_of(&digest, 0), 0xABCDEF01);
        assert_eq!(partition_of(&digest, 32), 0);
    }

    #[test]
    fn swift_conf_parsing() {
        let text = "[swift-hash]\nswift_hash_path_suffix = changeme\nswift_hash_path_prefix = p\n\n[storage-policy:0]\nname = gold\n";
        let conf = HashConfig::from_swift_conf(text).unwrap();
        assert_eq!(conf, HashConfig::new("p", "changeme"));
        assert_eq!(
            HashConfig::from_swift_conf("[other]\nx=1\n"),
            Err(HashConfigError::NoSection)
        );
        assert_eq!(
            HashConfig::from_swift_conf("[swift-hash]\n"),
            Err(HashConfigError::NoSaltSet)
        );
    }
}
