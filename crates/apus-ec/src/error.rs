//! Errors: every way a scheme, a segment or a set of fragments can be
//! unusable, as values (nothing here panics on input).

/// What went wrong. `position` is the fragment's place in the list the
/// caller passed (0-based), so a caller can drop that one and retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcError {
    #[error(
        "unknown ec_type {0:?} (expected liberasurecode_rs_vand, isa_l_rs_vand or isa_l_rs_cauchy)"
    )]
    UnknownEcType(String),
    #[error("invalid scheme: {0}")]
    InvalidScheme(String),
    #[error(
        "segment of {len} bytes is too large to encode (a fragment payload must fit in 32 bits)"
    )]
    SegmentTooLarge { len: u64 },
    #[error("segment size must be positive")]
    ZeroSegmentSize,
    #[error("no fragments given")]
    NoFragments,
    #[error("fragment {position}: {len} bytes is shorter than the 80-byte header")]
    FragmentTooShort { position: usize, len: usize },
    #[error("fragment {position}: bad magic {magic:#010x}, not an erasure-coded fragment")]
    BadMagic { position: usize, magic: u32 },
    #[error("fragment {position}: header has no library version")]
    MissingLibraryVersion { position: usize },
    #[error("fragment {position}: header metadata checksum mismatch")]
    BadMetadataChecksum { position: usize },
    #[error("fragment {position}: index {index} out of range for {total} fragments")]
    IndexOutOfRange {
        position: usize,
        index: u32,
        total: usize,
    },
    #[error("fragment {position}: written by backend {found}, expected {expected}")]
    BackendMismatch {
        position: usize,
        found: u8,
        expected: u8,
    },
    #[error("fragment {position}: {reason}")]
    MalformedFragment {
        position: usize,
        reason: &'static str,
    },
    #[error("fragment {position}: {field} differs from the first fragment's")]
    InconsistentFragments {
        position: usize,
        field: &'static str,
    },
    #[error("fragment {position} (index {index}): payload checksum mismatch")]
    PayloadChecksumMismatch { position: usize, index: u32 },
    #[error("need {needed} distinct fragments, got {available}")]
    InsufficientFragments { needed: usize, available: usize },
    #[error("fragment index {index} out of range for {total} fragments")]
    BadTargetIndex { index: usize, total: usize },
    #[error("the available fragments do not determine the data (singular decoding matrix)")]
    SingularMatrix,
}

impl EcError {
    /// The place of the fragment (or source) the error is about, in the
    /// list the caller passed, when it is about one.
    pub fn position(&self) -> Option<usize> {
        match self {
            EcError::FragmentTooShort { position, .. }
            | EcError::BadMagic { position, .. }
            | EcError::MissingLibraryVersion { position }
            | EcError::BadMetadataChecksum { position }
            | EcError::IndexOutOfRange { position, .. }
            | EcError::BackendMismatch { position, .. }
            | EcError::MalformedFragment { position, .. }
            | EcError::InconsistentFragments { position, .. }
            | EcError::PayloadChecksumMismatch { position, .. } => Some(*position),
            _ => None,
        }
    }
}
