//! The 80-byte header liberasurecode puts before every fragment payload.
//!
//! Layout (packed, in the writer's byte order; x86 writes little-endian):
//!
//! | offset | size | field |
//! |-------:|-----:|-------|
//! | 0  | 4  | fragment index |
//! | 4  | 4  | payload size (bytes after the header) |
//! | 8  | 4  | backend metadata size (0 for every backend here) |
//! | 12 | 8  | original segment size |
//! | 20 | 1  | checksum type: 1 none, 2 CRC-32, 3 MD5 (never filled in) |
//! | 21 | 32 | checksum words; CRC-32 of the payload in the first 4 bytes |
//! | 53 | 1  | checksum-mismatch flag (only set by readers, written 0) |
//! | 54 | 1  | backend id |
//! | 55 | 4  | backend version |
//! | 59 | 4  | magic 0x0b0c5ecc |
//! | 63 | 4  | liberasurecode version that wrote it |
//! | 67 | 4  | CRC-32 (zlib) of bytes 0..59 |
//! | 71 | 9  | zero padding to 80 |
//!
//! A fragment written on a big-endian machine has every multi-byte field
//! byte-swapped, which the magic reveals; such headers parse too.

use crate::checksum::{crc32, crc32_legacy};
use crate::error::EcError;

/// Size of the header in bytes.
pub const HEADER_SIZE: usize = 80;
/// The magic number identifying a fragment.
pub const MAGIC: u32 = 0x0b0c_5ecc;
/// The liberasurecode version apus writes (1.8.0): the release whose output
/// apus reproduces byte for byte.
pub const LIBEC_VERSION: u32 = (1 << 16) | (8 << 8);
/// Headers from liberasurecode before 1.2.0 carry no metadata checksum.
const FIRST_VERSION_WITH_METADATA_CHECKSUM: u32 = (1 << 16) | (2 << 8);
/// Bytes covered by the metadata checksum (everything before the magic).
const METADATA_SIZE: usize = 59;

/// How a fragment's payload is checksummed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumType {
    /// No payload checksum (type 1): what Swift's policies use.
    None,
    /// zlib CRC-32 of the payload (type 2, pyeclib's `inline_crc32`).
    Crc32,
    /// Type 3: declared by liberasurecode but never computed, so nothing
    /// can be verified.
    Md5,
    /// Any other value, kept as read; treated like `None`, as
    /// liberasurecode does.
    Other(u8),
}

impl ChecksumType {
    pub fn from_byte(b: u8) -> Self {
        match b {
            1 => ChecksumType::None,
            2 => ChecksumType::Crc32,
            3 => ChecksumType::Md5,
            other => ChecksumType::Other(other),
        }
    }

    pub fn to_byte(self) -> u8 {
        match self {
            ChecksumType::None => 1,
            ChecksumType::Crc32 => 2,
            ChecksumType::Md5 => 3,
            ChecksumType::Other(b) => b,
        }
    }
}

/// A parsed fragment header. Fields hold values in host terms whatever
/// byte order the fragment was written in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentHeader {
    pub index: u32,
    pub payload_size: u32,
    pub backend_metadata_size: u32,
    pub orig_data_size: u64,
    pub checksum_type: ChecksumType,
    /// The raw checksum area (eight 32-bit words in the writer's order).
    pub checksum: [u8; 32],
    pub checksum_mismatch: u8,
    pub backend_id: u8,
    pub backend_version: u32,
    pub libec_version: u32,
    pub metadata_checksum: u32,
    /// Whether the writer was big-endian (fields were byte-swapped).
    pub big_endian: bool,
}

impl FragmentHeader {
    /// Parses and validates the header at the start of `fragment`: length,
    /// magic, version and (from liberasurecode 1.2.0 on) the metadata
    /// checksum, accepting the legacy CRC variant as liberasurecode does.
    /// `position` only labels errors.
    pub fn parse(fragment: &[u8], position: usize) -> Result<FragmentHeader, EcError> {
        let Some(head) = fragment.get(..HEADER_SIZE) else {
            return Err(EcError::FragmentTooShort {
                position,
                len: fragment.len(),
            });
        };
        let raw_magic = read_u32(head, 59, false);
        let big_endian = if raw_magic == MAGIC {
            false
        } else if raw_magic.swap_bytes() == MAGIC {
            true
        } else {
            return Err(EcError::BadMagic {
                position,
                magic: raw_magic,
            });
        };
        let libec_version = read_u32(head, 63, big_endian);
        if libec_version == 0 {
            return Err(EcError::MissingLibraryVersion { position });
        }
        let metadata_checksum = read_u32(head, 67, big_endian);
        if libec_version >= FIRST_VERSION_WITH_METADATA_CHECKSUM {
            let metadata = &head[..METADATA_SIZE];
            if metadata_checksum != crc32(metadata) && metadata_checksum != crc32_legacy(metadata) {
                return Err(EcError::BadMetadataChecksum { position });
            }
        }
        let mut checksum = [0u8; 32];
        checksum.copy_from_slice(&head[21..53]);
        Ok(FragmentHeader {
            index: read_u32(head, 0, big_endian),
            payload_size: read_u32(head, 4, big_endian),
            backend_metadata_size: read_u32(head, 8, big_endian),
            orig_data_size: read_u64(head, 12, big_endian),
            checksum_type: ChecksumType::from_byte(head[20]),
            checksum,
            checksum_mismatch: head[53],
            backend_id: head[54],
            backend_version: read_u32(head, 55, big_endian),
            libec_version,
            metadata_checksum,
            big_endian,
        })
    }

    /// The CRC-32 stored for the payload (first checksum word).
    pub fn stored_crc32(&self) -> u32 {
        read_u32(&self.checksum, 0, self.big_endian)
    }

    /// Serializes little-endian, computing the metadata checksum afresh
    /// (the stored `metadata_checksum` and `big_endian` are ignored).
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut out = [0u8; HEADER_SIZE];
        out[0..4].copy_from_slice(&self.index.to_le_bytes());
        out[4..8].copy_from_slice(&self.payload_size.to_le_bytes());
        out[8..12].copy_from_slice(&self.backend_metadata_size.to_le_bytes());
        out[12..20].copy_from_slice(&self.orig_data_size.to_le_bytes());
        out[20] = self.checksum_type.to_byte();
        out[21..53].copy_from_slice(&self.checksum);
        out[53] = self.checksum_mismatch;
        out[54] = self.backend_id;
        out[55..59].copy_from_slice(&self.backend_version.to_le_bytes());
        out[59..63].copy_from_slice(&MAGIC.to_le_bytes());
        out[63..67].copy_from_slice(&self.libec_version.to_le_bytes());
        let metadata_checksum = crc32(&out[..METADATA_SIZE]);
        out[67..71].copy_from_slice(&metadata_checksum.to_le_bytes());
        out
    }
}

fn read_u32(bytes: &[u8], at: usize, big_endian: bool) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

fn read_u64(bytes: &[u8], at: usize, big_endian: bool) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    if big_endian {
        u64::from_be_bytes(b)
    } else {
        u64::from_le_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FragmentHeader {
        FragmentHeader {
            index: 4,
            payload_size: 26,
            backend_metadata_size: 0,
            orig_data_size: 100,
            checksum_type: ChecksumType::None,
            checksum: [0; 32],
            checksum_mismatch: 0,
            backend_id: 6,
            backend_version: 1 << 16,
            libec_version: LIBEC_VERSION,
            metadata_checksum: 0,
            big_endian: false,
        }
    }

    /// Written by pyeclib 1.8.0 (`liberasurecode_rs_vand`, 4+2): fragment 4
    /// of a 100-byte segment.
    const PYECLIB_HEADER: &str = "040000001a000000000000006400000000000000010000000000000000000000000000000000000000000000000000000000000000000600000100cc5e0c0b00080100e4addd1a000000000000000000";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn serializes_like_liberasurecode() {
        assert_eq!(sample().to_bytes().to_vec(), unhex(PYECLIB_HEADER));
    }

    #[test]
    fn parses_and_round_trips() {
        let bytes = unhex(PYECLIB_HEADER);
        let header = FragmentHeader::parse(&bytes, 0).unwrap();
        let expected = FragmentHeader {
            metadata_checksum: 0x1add_ade4,
            ..sample()
        };
        assert_eq!(header, expected);
        assert_eq!(header.to_bytes().to_vec(), bytes);
    }

    #[test]
    fn rejects_short_bad_magic_and_bad_checksum() {
        let bytes = unhex(PYECLIB_HEADER);
        assert!(matches!(
            FragmentHeader::parse(&bytes[..79], 3),
            Err(EcError::FragmentTooShort {
                position: 3,
                len: 79
            })
        ));
        let mut bad_magic = bytes.clone();
        bad_magic[60] ^= 1;
        assert!(matches!(
            FragmentHeader::parse(&bad_magic, 0),
            Err(EcError::BadMagic { .. })
        ));
        let mut flipped = bytes.clone();
        flipped[12] ^= 1;
        assert_eq!(
            FragmentHeader::parse(&flipped, 1),
            Err(EcError::BadMetadataChecksum { position: 1 })
        );
        let mut no_version = bytes;
        no_version[63..67].fill(0);
        assert_eq!(
            FragmentHeader::parse(&no_version, 2),
            Err(EcError::MissingLibraryVersion { position: 2 })
        );
    }

    #[test]
    fn parses_a_big_endian_header() {
        let little = sample().to_bytes();
        let mut big = little;
        for (at, len) in [(0, 4), (4, 4), (8, 4), (12, 8), (55, 4), (59, 4), (63, 4)] {
            big[at..at + len].reverse();
        }
        // The checksum covers the bytes as written, in the writer's order.
        let crc = crc32(&big[..59]);
        big[67..71].copy_from_slice(&crc.to_be_bytes());
        let header = FragmentHeader::parse(&big, 0).unwrap();
        assert!(header.big_endian);
        assert_eq!((header.index, header.orig_data_size), (4, 100));
        assert_eq!(header.payload_size, 26);
    }
}
