//! Erasure-coding schemes: an ec_type with k data and m parity fragments,
//! and encode, decode and reconstruct of one segment, byte-identical with
//! pyeclib over liberasurecode.
//!
//! Encoding splits a segment into k equal payloads (zero-padded to the
//! backend's symbol alignment), computes m parity payloads as rows of the
//! backend's systematic generator matrix applied to them, and prefixes each
//! with an 80-byte [`FragmentHeader`].

use std::fmt;
use std::str::FromStr;

use crate::checksum::{crc32, crc32_legacy};
use crate::error::EcError;
use crate::gf::{Field, Matrix};
use crate::header::{ChecksumType, FragmentHeader, HEADER_SIZE, LIBEC_VERSION};
use crate::kernel::{gf256_dot_prod, mul_acc, Gf256Coefficients, Multiplier};

/// The erasure-code types Swift deployments use, by their pyeclib names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EcType {
    /// liberasurecode's built-in Reed-Solomon: a systematic Vandermonde
    /// code over GF(2^16).
    LiberasurecodeRsVand,
    /// ISA-L's Reed-Solomon with its Vandermonde-style matrix, GF(2^8).
    IsaLRsVand,
    /// ISA-L's Reed-Solomon with a Cauchy matrix, GF(2^8).
    IsaLRsCauchy,
}

impl EcType {
    pub const ALL: [EcType; 3] = [
        EcType::LiberasurecodeRsVand,
        EcType::IsaLRsVand,
        EcType::IsaLRsCauchy,
    ];

    /// The name Swift's `ec_type` option and pyeclib use.
    pub fn name(self) -> &'static str {
        match self {
            EcType::LiberasurecodeRsVand => "liberasurecode_rs_vand",
            EcType::IsaLRsVand => "isa_l_rs_vand",
            EcType::IsaLRsCauchy => "isa_l_rs_cauchy",
        }
    }

    /// liberasurecode's backend id, stored in every fragment header.
    pub fn backend_id(self) -> u8 {
        match self {
            EcType::LiberasurecodeRsVand => 6,
            EcType::IsaLRsVand => 4,
            EcType::IsaLRsCauchy => 7,
        }
    }

    /// The backend version liberasurecode stamps for this backend (a
    /// constant per backend, not the installed ISA-L's version).
    pub fn backend_version(self) -> u32 {
        match self {
            EcType::LiberasurecodeRsVand => 1 << 16,
            EcType::IsaLRsVand => (2 << 16) | (13 << 8),
            EcType::IsaLRsCauchy => (2 << 16) | (14 << 8) | 1,
        }
    }

    pub fn field(self) -> Field {
        match self {
            EcType::LiberasurecodeRsVand => Field::Gf65536,
            EcType::IsaLRsVand | EcType::IsaLRsCauchy => Field::Gf256,
        }
    }
}

impl fmt::Display for EcType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EcType {
    type Err = EcError;

    fn from_str(s: &str) -> Result<Self, EcError> {
        EcType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| EcError::UnknownEcType(s.to_owned()))
    }
}

/// liberasurecode's limit on k + m (its fragment bitmaps hold 256).
pub const MAX_FRAGMENTS: usize = 256;

/// A validated (ec_type, k, m) with its generator matrix.
#[derive(Clone, Debug)]
pub struct EcScheme {
    ec_type: EcType,
    k: usize,
    m: usize,
    checksum_type: ChecksumType,
    /// (k + m) x k; the top k rows are the identity.
    generator: Matrix,
}

/// Bytes of each payload processed together: small enough that the k
/// sources and m outputs stay in cache while every coefficient is applied.
const BLOCK: usize = 16 * 1024;

impl EcScheme {
    /// A scheme as liberasurecode accepts it: k >= 1, m >= 1,
    /// k + m <= 256. Fragments carry no payload checksum (Swift's policies
    /// use none); see [`EcScheme::with_checksum`].
    pub fn new(ec_type: EcType, k: usize, m: usize) -> Result<Self, EcError> {
        if k == 0 {
            return Err(EcError::InvalidScheme(
                "the number of data fragments (k) must be at least 1".into(),
            ));
        }
        if m == 0 {
            return Err(EcError::InvalidScheme(
                "the number of parity fragments (m) must be at least 1".into(),
            ));
        }
        if k + m > MAX_FRAGMENTS {
            return Err(EcError::InvalidScheme(format!(
                "k + m = {} exceeds {MAX_FRAGMENTS}",
                k + m
            )));
        }
        let generator = match ec_type {
            EcType::LiberasurecodeRsVand => liberasurecode_vandermonde(k, m),
            EcType::IsaLRsVand => isa_l_vandermonde(k, m),
            EcType::IsaLRsCauchy => isa_l_cauchy(k, m),
        };
        Ok(EcScheme {
            ec_type,
            k,
            m,
            checksum_type: ChecksumType::None,
            generator,
        })
    }

    /// Makes encode and reconstruct write this payload checksum type
    /// (pyeclib's `chksum_type`); only CRC-32 fills in a value.
    pub fn with_checksum(mut self, checksum_type: ChecksumType) -> Self {
        self.checksum_type = checksum_type;
        self
    }

    pub fn ec_type(&self) -> EcType {
        self.ec_type
    }

    /// Data fragments per segment.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Parity fragments per segment.
    pub fn m(&self) -> usize {
        self.m
    }

    /// k + m.
    pub fn fragment_count(&self) -> usize {
        self.k + self.m
    }

    /// The generator matrix, (k + m) rows of k coefficients.
    pub fn generator_row(&self, index: usize) -> Option<&[u16]> {
        (index < self.fragment_count()).then(|| self.generator.row(index))
    }

    /// The smallest segment that fills one symbol of every data fragment
    /// (liberasurecode's minimum encode size).
    pub fn min_segment_size(&self) -> u64 {
        (self.k * self.ec_type.field().symbol_bytes()) as u64
    }

    /// Payload bytes per fragment for a segment of `segment_len` bytes:
    /// the length rounded up to k symbols, divided by k.
    pub fn payload_size(&self, segment_len: u64) -> u64 {
        let align = self.min_segment_size();
        segment_len.div_ceil(align) * align / self.k as u64
    }

    /// Bytes per fragment (header included) for a segment of
    /// `segment_len` bytes.
    pub fn fragment_size(&self, segment_len: u64) -> u64 {
        HEADER_SIZE as u64 + self.payload_size(segment_len)
    }

    /// Encodes one segment into k + m fragments, in index order, exactly
    /// as pyeclib's `encode` does.
    pub fn encode(&self, segment: &[u8]) -> Result<Vec<Vec<u8>>, EcError> {
        let mut fragments = Vec::new();
        self.encode_into(segment, &mut fragments)?;
        Ok(fragments)
    }

    /// [`EcScheme::encode`] into `fragments`, reusing its buffers: a
    /// caller encoding segment after segment saves the allocation (and the
    /// page faults of fresh memory) that otherwise cost as much as the
    /// coding itself.
    pub fn encode_into(&self, segment: &[u8], fragments: &mut Vec<Vec<u8>>) -> Result<(), EcError> {
        let orig_len = segment.len() as u64;
        let payload = self.payload_size(orig_len);
        let payload_u32 =
            u32::try_from(payload).map_err(|_| EcError::SegmentTooLarge { len: orig_len })?;
        let payload = payload_u32 as usize;
        fragments.truncate(self.fragment_count());
        fragments.resize_with(self.fragment_count(), Vec::new);
        // No clearing first: every byte is written below (headers by
        // write_header, parity payloads by combine), so a reused buffer
        // costs no extra pass over it.
        for fragment in fragments.iter_mut() {
            fragment.resize(HEADER_SIZE + payload, 0);
        }
        for (index, fragment) in fragments[..self.k].iter_mut().enumerate() {
            let chunk = segment
                .get(index.saturating_mul(payload)..)
                .unwrap_or_default();
            let chunk = &chunk[..chunk.len().min(payload)];
            let (data, padding) = fragment[HEADER_SIZE..].split_at_mut(chunk.len());
            data.copy_from_slice(chunk);
            padding.fill(0);
        }
        {
            let (data, parity) = fragments.split_at_mut(self.k);
            let sources: Vec<&[u8]> = data.iter().map(|f| &f[HEADER_SIZE..]).collect();
            let mut outputs: Vec<&mut [u8]> =
                parity.iter_mut().map(|f| &mut f[HEADER_SIZE..]).collect();
            let rows: Vec<&[u16]> = (self.k..self.fragment_count())
                .map(|i| self.generator.row(i))
                .collect();
            self.combine(&rows, &sources, &mut outputs);
        }
        for (index, fragment) in fragments.iter_mut().enumerate() {
            self.write_header(fragment, index as u32, orig_len, payload_u32);
        }
        Ok(())
    }

    /// Decodes the segment from any k or more distinct fragments of it (in
    /// any order; duplicates of an index are ignored after the first).
    /// Every header is validated and payload checksums are verified when
    /// present. With all data fragments at hand it only concatenates, as
    /// liberasurecode does; otherwise it solves from the first k available
    /// indexes in index order.
    pub fn decode<F: AsRef<[u8]>>(&self, fragments: &[F]) -> Result<Vec<u8>, EcError> {
        let set = self.check_fragments(fragments)?;
        let orig_len =
            usize::try_from(set.orig_data_size).map_err(|_| EcError::SegmentTooLarge {
                len: set.orig_data_size,
            })?;
        let payload = set.payload_size;
        let missing_data: Vec<usize> = (0..self.k).filter(|&i| set.by_index[i].is_none()).collect();
        let mut recovered: Vec<Vec<u8>> = Vec::new();
        if !missing_data.is_empty() {
            let (available, inverse) = self.solve(&set)?;
            let sources: Vec<&[u8]> = available.iter().filter_map(|&i| set.by_index[i]).collect();
            recovered = missing_data.iter().map(|_| vec![0u8; payload]).collect();
            let rows: Vec<&[u16]> = missing_data.iter().map(|&d| inverse.row(d)).collect();
            let mut outputs: Vec<&mut [u8]> =
                recovered.iter_mut().map(|v| v.as_mut_slice()).collect();
            self.combine(&rows, &sources, &mut outputs);
        }
        let mut out = Vec::with_capacity(orig_len);
        let mut recovered_iter = recovered.iter();
        for slot in &set.by_index[..self.k] {
            let payload_bytes: &[u8] = match slot {
                Some(p) => p,
                None => recovered_iter.next().map(Vec::as_slice).unwrap_or_default(),
            };
            let take = payload_bytes.len().min(orig_len - out.len());
            out.extend_from_slice(&payload_bytes[..take]);
        }
        Ok(out)
    }

    /// Rebuilds the fragment with `index` from at least k other distinct
    /// fragments, header included, exactly as pyeclib's `reconstruct`
    /// returns it. If that index is among the given fragments, it is
    /// returned unchanged (as liberasurecode does).
    pub fn reconstruct<F: AsRef<[u8]>>(
        &self,
        fragments: &[F],
        index: usize,
    ) -> Result<Vec<u8>, EcError> {
        if index >= self.fragment_count() {
            return Err(EcError::BadTargetIndex {
                index,
                total: self.fragment_count(),
            });
        }
        let set = self.check_fragments(fragments)?;
        if let Some(position) = set.position_of[index] {
            return Ok(fragments[position].as_ref().to_vec());
        }
        let (available, inverse) = self.solve(&set)?;
        let field = self.ec_type.field();
        // Data fragment `index` is row `index` of the inverse; a parity
        // fragment is its generator row applied to the recovered data.
        let row: Vec<u16> = if index < self.k {
            inverse.row(index).to_vec()
        } else {
            let generator_row = Matrix {
                rows: 1,
                cols: self.k,
                cells: self.generator.row(index).to_vec(),
            };
            generator_row.mul(field, &inverse).cells
        };
        let sources: Vec<&[u8]> = available.iter().filter_map(|&i| set.by_index[i]).collect();
        let payload = set.payload_size;
        let mut fragment = vec![0u8; HEADER_SIZE + payload];
        {
            let mut outputs = [&mut fragment[HEADER_SIZE..]];
            self.combine(&[&row], &sources, &mut outputs);
        }
        self.write_header(
            &mut fragment,
            index as u32,
            set.orig_data_size,
            payload as u32,
        );
        Ok(fragment)
    }

    /// The first k available indexes and the inverse of their generator
    /// rows (maps those payloads back to the data payloads).
    fn solve(&self, set: &FragmentSet<'_>) -> Result<(Vec<usize>, Matrix), EcError> {
        let available: Vec<usize> = (0..self.fragment_count())
            .filter(|&i| set.by_index[i].is_some())
            .take(self.k)
            .collect();
        if available.len() < self.k {
            return Err(EcError::InsufficientFragments {
                needed: self.k,
                available: available.len(),
            });
        }
        let inverse = self
            .generator
            .select_rows(&available)
            .invert(self.ec_type.field())
            .ok_or(EcError::SingularMatrix)?;
        Ok((available, inverse))
    }

    /// `outputs[r] = sum_j rows[r][j] * sources[j]`. GF(2^8) goes through
    /// the fused kernel, which reads each source once for all outputs;
    /// GF(2^16) clears the outputs and adds one product at a time, block by
    /// block so the regions being combined stay in cache.
    fn combine(&self, rows: &[&[u16]], sources: &[&[u8]], outputs: &mut [&mut [u8]]) {
        let field = self.ec_type.field();
        if field == Field::Gf256 {
            // GF(2^8) coefficients are below 256, so the narrowing is exact.
            let narrow: Vec<Vec<u8>> = rows
                .iter()
                .map(|row| row.iter().map(|&c| c as u8).collect())
                .collect();
            let narrow: Vec<&[u8]> = narrow.iter().map(Vec::as_slice).collect();
            gf256_dot_prod(&Gf256Coefficients::new(&narrow), sources, outputs);
            return;
        }
        let multipliers: Vec<Vec<Multiplier>> = rows
            .iter()
            .map(|row| row.iter().map(|&c| Multiplier::new(field, c)).collect())
            .collect();
        for output in outputs.iter_mut() {
            output.fill(0);
        }
        let len = outputs.iter().map(|o| o.len()).min().unwrap_or(0);
        let mut start = 0;
        while start < len {
            let end = (start + BLOCK).min(len);
            for (output, row) in outputs.iter_mut().zip(&multipliers) {
                for (source, multiplier) in sources.iter().zip(row) {
                    if let Some(src) = source.get(start..end) {
                        mul_acc(&mut output[start..end], src, multiplier);
                    }
                }
            }
            start = end;
        }
    }

    fn write_header(&self, fragment: &mut [u8], index: u32, orig_len: u64, payload: u32) {
        let mut checksum = [0u8; 32];
        if self.checksum_type == ChecksumType::Crc32 {
            let crc = crc32(&fragment[HEADER_SIZE..]);
            checksum[..4].copy_from_slice(&crc.to_le_bytes());
        }
        let header = FragmentHeader {
            index,
            payload_size: payload,
            backend_metadata_size: 0,
            orig_data_size: orig_len,
            checksum_type: self.checksum_type,
            checksum,
            checksum_mismatch: 0,
            backend_id: self.ec_type.backend_id(),
            backend_version: self.ec_type.backend_version(),
            libec_version: LIBEC_VERSION,
            metadata_checksum: 0,
            big_endian: false,
        };
        fragment[..HEADER_SIZE].copy_from_slice(&header.to_bytes());
    }

    /// Validates every fragment and indexes their payloads.
    fn check_fragments<'a, F: AsRef<[u8]>>(
        &self,
        fragments: &'a [F],
    ) -> Result<FragmentSet<'a>, EcError> {
        let n = self.fragment_count();
        let symbol = self.ec_type.field().symbol_bytes();
        let mut set = FragmentSet {
            orig_data_size: 0,
            payload_size: 0,
            by_index: vec![None; n],
            position_of: vec![None; n],
        };
        let mut first: Option<(u64, u32)> = None;
        for (position, fragment) in fragments.iter().enumerate() {
            let bytes = fragment.as_ref();
            let header = FragmentHeader::parse(bytes, position)?;
            let index = header.index as usize;
            if index >= n {
                return Err(EcError::IndexOutOfRange {
                    position,
                    index: header.index,
                    total: n,
                });
            }
            if header.backend_id != self.ec_type.backend_id() {
                return Err(EcError::BackendMismatch {
                    position,
                    found: header.backend_id,
                    expected: self.ec_type.backend_id(),
                });
            }
            let malformed = |reason| EcError::MalformedFragment { position, reason };
            if header.backend_metadata_size != 0 {
                return Err(malformed(
                    "backend metadata, which this backend never writes",
                ));
            }
            let payload_size = header.payload_size as usize;
            if !payload_size.is_multiple_of(symbol) {
                return Err(malformed("payload size is not a whole number of symbols"));
            }
            if (payload_size as u64) * (self.k as u64) < header.orig_data_size {
                return Err(malformed("payloads too small to hold the original size"));
            }
            if bytes.len() - HEADER_SIZE != payload_size {
                return Err(malformed("length differs from the header's payload size"));
            }
            match first {
                None => first = Some((header.orig_data_size, header.payload_size)),
                Some((orig, _)) if orig != header.orig_data_size => {
                    return Err(EcError::InconsistentFragments {
                        position,
                        field: "original data size",
                    })
                }
                Some((_, size)) if size != header.payload_size => {
                    return Err(EcError::InconsistentFragments {
                        position,
                        field: "payload size",
                    })
                }
                Some(_) => {}
            }
            let payload = &bytes[HEADER_SIZE..];
            if header.checksum_type == ChecksumType::Crc32 {
                let stored = header.stored_crc32();
                if stored != crc32(payload) && stored != crc32_legacy(payload) {
                    return Err(EcError::PayloadChecksumMismatch {
                        position,
                        index: header.index,
                    });
                }
            }
            if set.by_index[index].is_none() {
                set.by_index[index] = Some(payload);
                set.position_of[index] = Some(position);
            }
        }
        let Some((orig, size)) = first else {
            return Err(EcError::NoFragments);
        };
        set.orig_data_size = orig;
        set.payload_size = size as usize;
        let distinct = set.by_index.iter().filter(|p| p.is_some()).count();
        if distinct < self.k {
            return Err(EcError::InsufficientFragments {
                needed: self.k,
                available: distinct,
            });
        }
        Ok(set)
    }
}

/// Validated fragments of one segment, by index.
struct FragmentSet<'a> {
    orig_data_size: u64,
    payload_size: usize,
    by_index: Vec<Option<&'a [u8]>>,
    /// Where in the caller's list each index was found.
    position_of: Vec<Option<usize>>,
}

/// liberasurecode's built-in generator: the Vandermonde matrix on the
/// points 0, 1, .., k+m-1 (row i is 1, i, i^2, ..; row 0 is 1, 0, .., 0),
/// made systematic by column operations (that is, multiplied on the right
/// by the inverse of its top k rows), then with each parity column scaled
/// so the first parity row is all ones.
fn liberasurecode_vandermonde(k: usize, m: usize) -> Matrix {
    let field = Field::Gf65536;
    let n = k + m;
    let mut vandermonde = Matrix::zero(n, k);
    for i in 0..n {
        for j in 0..k {
            // 0^0 = 1 and 0^j = 0, which `pow` gives for point 0.
            vandermonde.set(i, j, field.pow(i as u16, j));
        }
    }
    let top: Vec<usize> = (0..k).collect();
    // Distinct points make every square Vandermonde matrix invertible.
    let Some(top_inverse) = vandermonde.select_rows(&top).invert(field) else {
        return vandermonde;
    };
    let mut generator = vandermonde.mul(field, &top_inverse);
    for col in 0..k {
        let first_parity = generator.get(k, col);
        if first_parity == 1 {
            continue;
        }
        let Some(scale) = field.inv(first_parity) else {
            continue;
        };
        for row in k..n {
            let v = field.mul(generator.get(row, col), scale);
            generator.set(row, col, v);
        }
    }
    generator
}

/// ISA-L's `gf_gen_rs_matrix`: identity on top, then parity row r (from 0)
/// holds the powers 1, g, g^2, .. of g = 2^r.
fn isa_l_vandermonde(k: usize, m: usize) -> Matrix {
    let field = Field::Gf256;
    let mut generator = Matrix::identity(k);
    generator.rows = k + m;
    generator.cells.resize((k + m) * k, 0);
    let mut gen = 1u16;
    for row in k..k + m {
        let mut p = 1u16;
        for col in 0..k {
            generator.set(row, col, p);
            p = field.mul(p, gen);
        }
        gen = field.mul(gen, 2);
    }
    generator
}

/// ISA-L's `gf_gen_cauchy1_matrix`: identity on top, then entry (i, j) is
/// 1 / (i xor j) for row i >= k.
fn isa_l_cauchy(k: usize, m: usize) -> Matrix {
    let field = Field::Gf256;
    let mut generator = Matrix::identity(k);
    generator.rows = k + m;
    generator.cells.resize((k + m) * k, 0);
    for row in k..k + m {
        for col in 0..k {
            // row >= k > col, so row ^ col is never zero.
            let v = field.inv((row ^ col) as u16).unwrap_or(0);
            generator.set(row, col, v);
        }
    }
    generator
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn parses_swift_names() {
        for t in EcType::ALL {
            assert_eq!(t.name().parse::<EcType>().unwrap(), t);
        }
        assert!(matches!(
            "jerasure_rs_vand".parse::<EcType>(),
            Err(EcError::UnknownEcType(_))
        ));
    }

    #[test]
    fn validates_k_and_m_like_liberasurecode() {
        let t = EcType::IsaLRsVand;
        assert!(EcScheme::new(t, 0, 2).is_err());
        assert!(EcScheme::new(t, 4, 0).is_err());
        assert!(EcScheme::new(t, 200, 57).is_err());
        assert!(EcScheme::new(t, 200, 56).is_ok());
        assert!(EcScheme::new(t, 1, 1).is_ok());
    }

    #[test]
    fn generators_are_systematic() {
        for t in EcType::ALL {
            let s = EcScheme::new(t, 5, 3).unwrap();
            for i in 0..5 {
                let row = s.generator_row(i).unwrap();
                for (j, &v) in row.iter().enumerate() {
                    assert_eq!(v, u16::from(i == j));
                }
            }
            assert!(s.generator_row(8).is_none());
        }
    }

    #[test]
    fn payload_alignment_per_backend() {
        let rs = EcScheme::new(EcType::LiberasurecodeRsVand, 4, 2).unwrap();
        let isa = EcScheme::new(EcType::IsaLRsVand, 4, 2).unwrap();
        assert_eq!(
            (rs.payload_size(0), rs.payload_size(1), rs.payload_size(100)),
            (0, 2, 26)
        );
        assert_eq!(
            (
                isa.payload_size(0),
                isa.payload_size(1),
                isa.payload_size(100)
            ),
            (0, 1, 25)
        );
        assert_eq!(rs.fragment_size(1000), 330);
        assert_eq!((rs.min_segment_size(), isa.min_segment_size()), (8, 4));
    }

    #[test]
    fn round_trips_from_every_k_subset() {
        for t in EcType::ALL {
            let s = EcScheme::new(t, 4, 2).unwrap();
            let segment = data(1001);
            let fragments = s.encode(&segment).unwrap();
            for drop_a in 0..6 {
                for drop_b in drop_a + 1..6 {
                    let subset: Vec<&Vec<u8>> = fragments
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != drop_a && *i != drop_b)
                        .map(|(_, f)| f)
                        .collect();
                    assert_eq!(
                        s.decode(&subset).unwrap(),
                        segment,
                        "{t} without {drop_a},{drop_b}"
                    );
                    for target in [drop_a, drop_b] {
                        assert_eq!(
                            s.reconstruct(&subset, target).unwrap(),
                            fragments[target],
                            "{t} rebuild {target}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn encode_into_reuses_buffers_and_matches_encode() {
        for t in EcType::ALL {
            let s = EcScheme::new(t, 3, 2).unwrap();
            // Stale bytes everywhere, and more buffers than fragments.
            let mut buffers = vec![vec![0xaa; 5000]; 7];
            for len in [4000, 10, 0, 777, 1, 4001] {
                let segment = data(len);
                s.encode_into(&segment, &mut buffers).unwrap();
                assert_eq!(buffers, s.encode(&segment).unwrap(), "{t} len={len}");
                buffers.iter_mut().for_each(|b| b.fill(0x55));
            }
        }
    }

    #[test]
    fn rejects_too_few_mixed_and_corrupt_fragments() {
        let s = EcScheme::new(EcType::IsaLRsCauchy, 4, 2).unwrap();
        let fragments = s.encode(&data(400)).unwrap();
        assert_eq!(
            s.decode(&fragments[..3]),
            Err(EcError::InsufficientFragments {
                needed: 4,
                available: 3
            })
        );
        // Duplicates do not count twice.
        let dup = [&fragments[0], &fragments[0], &fragments[1], &fragments[2]];
        assert!(matches!(
            s.decode(&dup),
            Err(EcError::InsufficientFragments { .. })
        ));
        let other = s.encode(&data(300)).unwrap();
        let mixed = [&fragments[0], &fragments[1], &fragments[2], &other[3]];
        assert!(matches!(
            s.decode(&mixed),
            Err(EcError::InconsistentFragments { position: 3, .. })
        ));
        let mut truncated = fragments.clone();
        truncated[1].pop();
        assert!(matches!(
            s.decode(&truncated),
            Err(EcError::MalformedFragment { position: 1, .. })
        ));
        let rs = EcScheme::new(EcType::LiberasurecodeRsVand, 4, 2).unwrap();
        assert!(matches!(
            rs.decode(&fragments),
            Err(EcError::BackendMismatch { .. })
        ));
        let empty: [&[u8]; 0] = [];
        assert_eq!(s.decode(&empty), Err(EcError::NoFragments));
        assert!(matches!(
            s.reconstruct(&fragments, 6),
            Err(EcError::BadTargetIndex { .. })
        ));
    }

    #[test]
    fn crc32_checksums_are_written_and_verified() {
        let s = EcScheme::new(EcType::IsaLRsVand, 3, 2)
            .unwrap()
            .with_checksum(ChecksumType::Crc32);
        let segment = data(999);
        let mut fragments = s.encode(&segment).unwrap();
        let header = FragmentHeader::parse(&fragments[4], 0).unwrap();
        assert_eq!(header.checksum_type, ChecksumType::Crc32);
        assert_eq!(header.stored_crc32(), crc32(&fragments[4][HEADER_SIZE..]));
        assert_eq!(s.decode(&fragments[2..]).unwrap(), segment);
        fragments[4][HEADER_SIZE + 10] ^= 0x40;
        assert_eq!(
            s.decode(&fragments[2..]),
            Err(EcError::PayloadChecksumMismatch {
                position: 2,
                index: 4
            })
        );
    }
}
