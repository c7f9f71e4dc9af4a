//! apus-ec owns erasure coding and the fragment format: encoding a segment
//! into k data and m parity fragments, decoding a segment from any k of
//! them, rebuilding one lost fragment, the 80-byte fragment header, and the
//! segment/fragment-archive size arithmetic, and whole objects as streams
//! of segments both ways ([`ArchiveEncoder`], [`ArchiveDecoder`]). It is
//! bit-exact with
//! liberasurecode as Swift uses it through pyeclib, for the ec_types
//! `liberasurecode_rs_vand`, `isa_l_rs_vand` and `isa_l_rs_cauchy`, so apus
//! reads fragments Swift wrote and Swift reads apus's.
//!
//! It is pure computation on byte slices: no I/O, no HTTP, no async, and no
//! dependency on other apus crates (they depend on it, never the reverse).
//! Nothing in it panics on input; bad fragments are [`EcError`] values.
//!
//! ```
//! use apus_ec::{EcScheme, EcType};
//!
//! let scheme = EcScheme::new("isa_l_rs_vand".parse::<EcType>()?, 4, 2)?;
//! let fragments = scheme.encode(b"hello, erasure coding")?;
//! assert_eq!(fragments.len(), 6);
//! // Any 4 distinct fragments give the segment back.
//! assert_eq!(scheme.decode(&fragments[2..])?, b"hello, erasure coding");
//! assert_eq!(scheme.reconstruct(&fragments[1..5], 0)?, fragments[0]);
//! # Ok::<(), apus_ec::EcError>(())
//! ```

mod checksum;
mod error;
mod gf;
mod header;
pub mod kernel;
mod layout;
mod scheme;
mod stream;

pub use checksum::{crc32, crc32_legacy};
pub use error::EcError;
pub use gf::Field;
pub use header::{ChecksumType, FragmentHeader, HEADER_SIZE, LIBEC_VERSION, MAGIC};
pub use layout::{split_archive, SegmentInfo};
pub use scheme::{EcScheme, EcType, MAX_FRAGMENTS};
pub use stream::{ArchiveDecoder, ArchiveEncoder};
