//! Region kernels: `dst ^= c * src` over byte regions, the only hot loop in
//! erasure coding. GF(2^8) uses the split-nibble technique: the product of
//! a constant and a byte is the XOR of the products with its low and its
//! high nibble, each looked up in a 16-entry table, so one byte-shuffle
//! instruction (SSSE3 `pshufb`, AVX2 `vpshufb`) multiplies 16 or 32 bytes
//! at once. The instruction set is chosen at run time; the portable path
//! gives the same bytes and is what other machines use. Where the CPU has
//! GFNI, multiplying by a constant is one affine instruction instead:
//! in a field of characteristic 2 it is a linear map on the 8 bits of a
//! byte, an 8x8 bit matrix that `gf2p8affineqb` applies to every byte.
//!
//! This is the only module with `unsafe`: the SIMD paths need it for the
//! intrinsics and unaligned loads and stores.

use crate::gf::{gf256_mul, gf65536_mul, Field};

/// Which implementation of the GF(2^8) kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Ssse3,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// GFNI affine instructions on 32-byte vectors; single multiplies use
    /// the AVX2 kernel.
    #[cfg(target_arch = "x86_64")]
    Avx2Gfni,
    /// GFNI affine instructions on 64-byte AVX-512 vectors; single
    /// multiplies use the AVX2 kernel.
    #[cfg(target_arch = "x86_64")]
    Avx512Gfni,
}

impl Kernel {
    /// The fastest kernel this CPU supports (detected once).
    pub fn best() -> Kernel {
        use std::sync::OnceLock;
        static BEST: OnceLock<Kernel> = OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if Kernel::Avx512Gfni.is_supported() {
                    return Kernel::Avx512Gfni;
                }
                if Kernel::Avx2Gfni.is_supported() {
                    return Kernel::Avx2Gfni;
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    return Kernel::Avx2;
                }
                if std::arch::is_x86_feature_detected!("ssse3") {
                    return Kernel::Ssse3;
                }
            }
            Kernel::Portable
        })
    }

    /// Every kernel this CPU can run, portable first (for tests and
    /// benchmarks that compare them).
    pub fn available() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("ssse3") {
                kernels.push(Kernel::Ssse3);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                kernels.push(Kernel::Avx2);
            }
            for kernel in [Kernel::Avx2Gfni, Kernel::Avx512Gfni] {
                if kernel.is_supported() {
                    kernels.push(kernel);
                }
            }
        }
        kernels
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Ssse3 => std::arch::is_x86_feature_detected!("ssse3"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Gfni => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("gfni")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Gfni => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("gfni")
            }
        }
    }
}

/// The two 16-entry tables for one GF(2^8) constant, and the 256-entry
/// table the portable path folds them into.
#[derive(Clone, Debug)]
pub struct NibbleTables {
    low: [u8; 16],
    high: [u8; 16],
    full: [u8; 256],
}

impl NibbleTables {
    pub fn new(c: u8) -> Self {
        let mut low = [0u8; 16];
        let mut high = [0u8; 16];
        for n in 0..16u8 {
            low[usize::from(n)] = gf256_mul(c, n);
            high[usize::from(n)] = gf256_mul(c, n << 4);
        }
        let mut full = [0u8; 256];
        for (b, slot) in full.iter_mut().enumerate() {
            *slot = low[b & 0x0f] ^ high[b >> 4];
        }
        NibbleTables { low, high, full }
    }
}

/// The tables for one GF(2^16) constant. Portable: the products of a
/// word's low and of its high byte (256 entries each). SIMD: for each of
/// the word's four nibbles, the low and the high byte of its 16 possible
/// products (eight 16-entry byte tables, indexed `2 * nibble + half`).
#[derive(Clone, Debug)]
pub struct WordTables {
    bytes: [u16; 512],
    nibbles: [[u8; 16]; 8],
}

impl WordTables {
    pub fn new(c: u16) -> Self {
        let mut bytes = [0u16; 512];
        for b in 0..256u16 {
            bytes[usize::from(b)] = gf65536_mul(c, b);
            bytes[256 + usize::from(b)] = gf65536_mul(c, b << 8);
        }
        let mut nibbles = [[0u8; 16]; 8];
        for nibble in 0..4 {
            for v in 0..16u16 {
                let [lo, hi] = gf65536_mul(c, v << (4 * nibble)).to_le_bytes();
                nibbles[2 * nibble][usize::from(v)] = lo;
                nibbles[2 * nibble + 1][usize::from(v)] = hi;
            }
        }
        WordTables { bytes, nibbles }
    }
}

/// Multiplication by one constant, prepared once and applied to many
/// regions (building the tables per region would cost more than a small
/// region's multiplication).
#[derive(Clone, Debug)]
pub enum Multiplier {
    Zero,
    One,
    Gf256(Box<NibbleTables>),
    Gf65536(Box<WordTables>),
}

impl Multiplier {
    pub fn new(field: Field, c: u16) -> Self {
        match (c, field) {
            (0, _) => Multiplier::Zero,
            (1, _) => Multiplier::One,
            (_, Field::Gf256) => Multiplier::Gf256(Box::new(NibbleTables::new(c as u8))),
            (_, Field::Gf65536) => Multiplier::Gf65536(Box::new(WordTables::new(c))),
        }
    }
}

/// `dst ^= c * src` over the common length with the fastest kernel. In
/// GF(2^16) the regions are little-endian 16-bit words and a trailing odd
/// byte is left alone (payloads of that field always have even length).
pub fn mul_acc(dst: &mut [u8], src: &[u8], multiplier: &Multiplier) {
    mul_acc_with(Kernel::best(), dst, src, multiplier);
}

/// [`mul_acc`] with a chosen GF(2^8) kernel. A kernel the CPU lacks falls
/// back to the portable one rather than faulting.
pub fn mul_acc_with(kernel: Kernel, dst: &mut [u8], src: &[u8], multiplier: &Multiplier) {
    let len = dst.len().min(src.len());
    let (dst, src) = (&mut dst[..len], &src[..len]);
    match multiplier {
        Multiplier::Zero => {}
        Multiplier::One => xor_into(dst, src),
        Multiplier::Gf256(tables) => gf256_mul_acc_tables(kernel, dst, src, tables),
        Multiplier::Gf65536(tables) => gf65536_mul_acc_tables(kernel, dst, src, tables),
    }
}

/// `dst[i] ^= c * src[i]` in GF(2^8) with a chosen kernel.
pub fn gf256_mul_acc_with(kernel: Kernel, dst: &mut [u8], src: &[u8], c: u8) {
    mul_acc_with(
        kernel,
        dst,
        src,
        &Multiplier::new(Field::Gf256, u16::from(c)),
    );
}

/// A matrix of GF(2^8) coefficients prepared for [`gf256_dot_prod`]: the
/// nibble tables of every coefficient, stored column by column, so the
/// tables one source needs for a group of outputs are adjacent.
#[derive(Clone, Debug)]
pub struct Gf256Coefficients {
    rows: usize,
    cols: usize,
    /// Entry `col * rows + row`: the low-nibble table, then the high one.
    nibbles: Vec<[u8; 32]>,
    /// Entry `col * rows + row`: the whole 256-byte product table.
    full: Vec<[u8; 256]>,
    /// Entry `col * rows + row`: the bit matrix for GFNI.
    affine: Vec<u64>,
}

impl Gf256Coefficients {
    /// Prepares `rows` (one slice of coefficients per output; every row
    /// has the length of the first, shorter rows are padded with zeros).
    pub fn new(rows: &[&[u8]]) -> Self {
        let cols = rows.first().map_or(0, |row| row.len());
        let mut nibbles = Vec::with_capacity(rows.len() * cols);
        let mut full = Vec::with_capacity(rows.len() * cols);
        let mut affine = Vec::with_capacity(rows.len() * cols);
        for col in 0..cols {
            for row in rows {
                let c = row.get(col).copied().unwrap_or(0);
                affine.push(affine_matrix(c));
                let tables = NibbleTables::new(c);
                let mut packed = [0u8; 32];
                packed[..16].copy_from_slice(&tables.low);
                packed[16..].copy_from_slice(&tables.high);
                nibbles.push(packed);
                full.push(tables.full);
            }
        }
        Gf256Coefficients {
            rows: rows.len(),
            cols,
            nibbles,
            full,
            affine,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// Multiplication by `c` as the bit matrix `gf2p8affineqb` takes: bit `i`
/// of a product is the parity of the byte ANDed with matrix byte `7 - i`,
/// so that byte holds bit `i` of the products of `c` with each of the 8
/// basis bytes `1 << j`.
fn affine_matrix(c: u8) -> u64 {
    let basis_products: [u8; 8] = std::array::from_fn(|j| gf256_mul(c, 1 << j));
    (0..8).fold(0u64, |matrix, i| {
        let row = (0..8).fold(0u8, |row, j| row | (((basis_products[j] >> i) & 1) << j));
        matrix | (u64::from(row) << (8 * (7 - i)))
    })
}

/// `outputs[r][i] = XOR over j of c[r][j] * sources[j][i]` in GF(2^8), with
/// the fastest kernel: each source byte is loaded once for all outputs
/// (rather than once per output), and each output byte is stored once.
///
/// Rows pair with outputs and columns with sources as far as both exist;
/// only the first `len` bytes of each output are written, `len` being the
/// shortest of the sources and outputs involved.
pub fn gf256_dot_prod(
    coefficients: &Gf256Coefficients,
    sources: &[&[u8]],
    outputs: &mut [&mut [u8]],
) {
    gf256_dot_prod_with(Kernel::best(), coefficients, sources, outputs);
}

/// Bytes of every region worked on together when the outputs need more
/// than one pass over the sources: k sources of this size stay in the L2
/// cache between the passes. A multiple of every kernel's vector width.
const STRIPE: usize = 16 * 1024;

/// [`gf256_dot_prod`] with a chosen kernel. A kernel the CPU lacks falls
/// back to the portable one rather than faulting.
pub fn gf256_dot_prod_with(
    kernel: Kernel,
    coefficients: &Gf256Coefficients,
    sources: &[&[u8]],
    outputs: &mut [&mut [u8]],
) {
    let rows = coefficients.rows.min(outputs.len());
    let cols = coefficients.cols.min(sources.len());
    let (sources, outputs) = (&sources[..cols], &mut outputs[..rows]);
    let len = sources
        .iter()
        .map(|s| s.len())
        .chain(outputs.iter().map(|o| o.len()))
        .min()
        .unwrap_or(0);
    let mut start = 0;
    while start < len {
        let end = (start + STRIPE).min(len);
        dot_prod_stripe(kernel, coefficients, sources, outputs, start, end);
        start = end;
    }
}

/// Bytes `start..end` of every output, by the largest groups of outputs
/// the kernel keeps in registers. `end` is within every region.
fn dot_prod_stripe(
    kernel: Kernel,
    coefficients: &Gf256Coefficients,
    sources: &[&[u8]],
    outputs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) {
    let group_size = match kernel {
        Kernel::Portable => 1,
        #[cfg(target_arch = "x86_64")]
        Kernel::Ssse3 | Kernel::Avx2 => x86::MAX_GROUP,
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Gfni | Kernel::Avx512Gfni => x86::MAX_GFNI_GROUP,
    };
    for (group, first_row) in outputs
        .chunks_mut(group_size)
        .zip((0..).step_by(group_size))
    {
        let done = match kernel {
            Kernel::Portable => start,
            #[cfg(target_arch = "x86_64")]
            Kernel::Ssse3 => {
                if std::arch::is_x86_feature_detected!("ssse3") {
                    // SAFETY: the CPU supports SSSE3 (checked just above).
                    unsafe {
                        x86::ssse3_dot_prod(coefficients, first_row, sources, group, start, end)
                    }
                } else {
                    start
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    unsafe {
                        x86::avx2_dot_prod(coefficients, first_row, sources, group, start, end)
                    }
                } else {
                    start
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Gfni => {
                if kernel.is_supported() {
                    // SAFETY: the CPU supports AVX2 and GFNI (checked just
                    // above).
                    unsafe {
                        x86::avx2_gfni_dot_prod(coefficients, first_row, sources, group, start, end)
                    }
                } else {
                    start
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Gfni => {
                if kernel.is_supported() {
                    // SAFETY: the CPU supports AVX-512F and GFNI (checked
                    // just above).
                    let done = unsafe {
                        x86::avx512_gfni_dot_prod(
                            coefficients,
                            first_row,
                            sources,
                            group,
                            start,
                            end,
                        )
                    };
                    // A 32..63-byte tail still gets a vector pass.
                    // SAFETY: the CPU supports AVX2 and GFNI (implied by
                    // the check above).
                    unsafe {
                        x86::avx2_gfni_dot_prod(coefficients, first_row, sources, group, done, end)
                    }
                } else {
                    start
                }
            }
        };
        portable_dot_prod(coefficients, first_row, sources, group, done, end);
    }
}

/// The portable dot product over bytes `start..end`: each output is
/// cleared, then every source's products are added by table lookup.
fn portable_dot_prod(
    coefficients: &Gf256Coefficients,
    first_row: usize,
    sources: &[&[u8]],
    outputs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) {
    for (row, output) in (first_row..).zip(outputs.iter_mut()) {
        let Some(output) = output.get_mut(start..end) else {
            continue;
        };
        output.fill(0);
        for (col, source) in sources.iter().enumerate() {
            let (Some(source), Some(table)) = (
                source.get(start..end),
                coefficients.full.get(col * coefficients.rows + row),
            ) else {
                continue;
            };
            for (d, &s) in output.iter_mut().zip(source) {
                *d ^= table[usize::from(s)];
            }
        }
    }
}

fn gf256_mul_acc_tables(kernel: Kernel, dst: &mut [u8], src: &[u8], tables: &NibbleTables) {
    match kernel {
        Kernel::Portable => portable_mul_acc(dst, src, tables),
        #[cfg(target_arch = "x86_64")]
        Kernel::Ssse3 => {
            if std::arch::is_x86_feature_detected!("ssse3") {
                // SAFETY: the CPU supports SSSE3 (checked just above).
                unsafe { x86::ssse3_mul_acc(dst, src, tables) }
            } else {
                portable_mul_acc(dst, src, tables)
            }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx2Gfni | Kernel::Avx512Gfni => {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                unsafe { x86::avx2_mul_acc(dst, src, tables) }
            } else {
                portable_mul_acc(dst, src, tables)
            }
        }
    }
}

/// The portable GF(2^8) path: one lookup per byte in the folded table.
fn portable_mul_acc(dst: &mut [u8], src: &[u8], tables: &NibbleTables) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d ^= tables.full[usize::from(s)];
    }
}

/// `dst ^= src` over the common length, eight bytes at a time.
pub fn xor_into(dst: &mut [u8], src: &[u8]) {
    let mut dst_words = dst.chunks_exact_mut(8);
    let mut src_words = src.chunks_exact(8);
    for (d, s) in (&mut dst_words).zip(&mut src_words) {
        let mut dw = [0u8; 8];
        let mut sw = [0u8; 8];
        dw.copy_from_slice(d);
        sw.copy_from_slice(s);
        let x = u64::from_ne_bytes(dw) ^ u64::from_ne_bytes(sw);
        d.copy_from_slice(&x.to_ne_bytes());
    }
    for (d, s) in dst_words
        .into_remainder()
        .iter_mut()
        .zip(src_words.remainder())
    {
        *d ^= s;
    }
}

/// GF(2^16) with a chosen kernel; SSSE3 has no word kernel and uses the
/// portable one, the GFNI kernels use the AVX2 one.
fn gf65536_mul_acc_tables(kernel: Kernel, dst: &mut [u8], src: &[u8], tables: &WordTables) {
    #[cfg(target_arch = "x86_64")]
    if matches!(kernel, Kernel::Avx2 | Kernel::Avx2Gfni | Kernel::Avx512Gfni)
        && std::arch::is_x86_feature_detected!("avx2")
    {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { x86::avx2_gf65536_mul_acc(dst, src, tables) };
    }
    let _ = kernel;
    portable_gf65536_mul_acc(dst, src, tables);
}

/// The portable GF(2^16) path: the product of a word is the XOR of the
/// products of its two bytes.
fn portable_gf65536_mul_acc(dst: &mut [u8], src: &[u8], tables: &WordTables) {
    let tables = &tables.bytes;
    for (d, s) in dst.chunks_exact_mut(2).zip(src.chunks_exact(2)) {
        let product = tables[usize::from(s[0])] ^ tables[256 + usize::from(s[1])];
        let [p0, p1] = product.to_le_bytes();
        d[0] ^= p0;
        d[1] ^= p1;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{
        portable_gf65536_mul_acc, portable_mul_acc, Gf256Coefficients, NibbleTables, WordTables,
    };
    use std::arch::x86_64::*;

    /// Outputs whose accumulators the dot-product kernels keep in
    /// registers at once: with the source's two nibble vectors, the mask
    /// and the two tables in flight that is 11 of the 16 vector registers.
    pub const MAX_GROUP: usize = 6;

    /// The dot product of `sources` with rows `first_row..` of the
    /// coefficients into `outputs` (at most [`MAX_GROUP`] of them), over
    /// the whole 32-byte vectors of bytes `start..end`; returns where it
    /// stopped (the caller finishes the tail).
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2_dot_prod(
        coefficients: &Gf256Coefficients,
        first_row: usize,
        sources: &[&[u8]],
        outputs: &mut [&mut [u8]],
        start: usize,
        end: usize,
    ) -> usize {
        match outputs.len() {
            1 => avx2_dot_prod_group::<1>(coefficients, first_row, sources, outputs, start, end),
            2 => avx2_dot_prod_group::<2>(coefficients, first_row, sources, outputs, start, end),
            3 => avx2_dot_prod_group::<3>(coefficients, first_row, sources, outputs, start, end),
            4 => avx2_dot_prod_group::<4>(coefficients, first_row, sources, outputs, start, end),
            5 => avx2_dot_prod_group::<5>(coefficients, first_row, sources, outputs, start, end),
            6 => avx2_dot_prod_group::<6>(coefficients, first_row, sources, outputs, start, end),
            _ => start,
        }
    }

    /// [`avx2_dot_prod`] for exactly `G` outputs, so the accumulators are
    /// an array the compiler keeps in registers.
    #[target_feature(enable = "avx2")]
    fn avx2_dot_prod_group<const G: usize>(
        coefficients: &Gf256Coefficients,
        first_row: usize,
        sources: &[&[u8]],
        outputs: &mut [&mut [u8]],
        start: usize,
        end: usize,
    ) -> usize {
        let Some(end) = checked_end(coefficients, first_row, G, sources, outputs, end) else {
            return start;
        };
        let rows = coefficients.rows;
        let mask = _mm256_set1_epi8(0x0f);
        let mut i = start;
        while i + 32 <= end {
            let mut acc = [_mm256_setzero_si256(); G];
            for (col, source) in sources.iter().enumerate() {
                let first = col * rows + first_row;
                let Some(tables) = coefficients
                    .nibbles
                    .get(first..first + G)
                    .and_then(|t| <&[[u8; 32]; G]>::try_from(t).ok())
                else {
                    return i;
                };
                // SAFETY: `i + 32 <= end`, and `end` is within every
                // source (checked_end); the load is unaligned.
                let s = unsafe { _mm256_loadu_si256(source.as_ptr().add(i).cast()) };
                let low_nibbles = _mm256_and_si256(s, mask);
                let high_nibbles = _mm256_and_si256(_mm256_srli_epi64(s, 4), mask);
                for (sum, table) in acc.iter_mut().zip(tables) {
                    // SAFETY: reads the 32-byte table array's two halves.
                    let (low, high) = unsafe {
                        (
                            _mm256_broadcastsi128_si256(_mm_loadu_si128(table.as_ptr().cast())),
                            _mm256_broadcastsi128_si256(_mm_loadu_si128(
                                table.as_ptr().add(16).cast(),
                            )),
                        )
                    };
                    let product = _mm256_xor_si256(
                        _mm256_shuffle_epi8(low, low_nibbles),
                        _mm256_shuffle_epi8(high, high_nibbles),
                    );
                    *sum = _mm256_xor_si256(*sum, product);
                }
            }
            for (output, sum) in outputs.iter_mut().zip(acc) {
                // SAFETY: `i + 32 <= end`, and `end` is within every output
                // (checked_end); the store is unaligned.
                unsafe { _mm256_storeu_si256(output.as_mut_ptr().add(i).cast(), sum) };
            }
            i += 32;
        }
        i
    }

    /// [`avx2_dot_prod`] with 16-byte vectors.
    ///
    /// # Safety
    /// The CPU must support SSSE3.
    #[target_feature(enable = "ssse3")]
    pub unsafe fn ssse3_dot_prod(
        coefficients: &Gf256Coefficients,
        first_row: usize,
        sources: &[&[u8]],
        outputs: &mut [&mut [u8]],
        start: usize,
        end: usize,
    ) -> usize {
        match outputs.len() {
            1 => ssse3_dot_prod_group::<1>(coefficients, first_row, sources, outputs, start, end),
            2 => ssse3_dot_prod_group::<2>(coefficients, first_row, sources, outputs, start, end),
            3 => ssse3_dot_prod_group::<3>(coefficients, first_row, sources, outputs, start, end),
            4 => ssse3_dot_prod_group::<4>(coefficients, first_row, sources, outputs, start, end),
            5 => ssse3_dot_prod_group::<5>(coefficients, first_row, sources, outputs, start, end),
            6 => ssse3_dot_prod_group::<6>(coefficients, first_row, sources, outputs, start, end),
            _ => start,
        }
    }

    #[target_feature(enable = "ssse3")]
    fn ssse3_dot_prod_group<const G: usize>(
        coefficients: &Gf256Coefficients,
        first_row: usize,
        sources: &[&[u8]],
        outputs: &mut [&mut [u8]],
        start: usize,
        end: usize,
    ) -> usize {
        let Some(end) = checked_end(coefficients, first_row, G, sources, outputs, end) else {
            return start;
        };
        let rows = coefficients.rows;
        let mask = _mm_set1_epi8(0x0f);
        let mut i = start;
        while i + 16 <= end {
            let mut acc = [_mm_setzero_si128(); G];
            for (col, source) in sources.iter().enumerate() {
                let first = col * rows + first_row;
                let Some(tables) = coefficients
                    .nibbles
                    .get(first..first + G)
                    .and_then(|t| <&[[u8; 32]; G]>::try_from(t).ok())
                else {
                    return i;
                };
                // SAFETY: `i + 16 <= end`, and `end` is within every
                // source (checked_end); the load is unaligned.
                let s = unsafe { _mm_loadu_si128(source.as_ptr().add(i).cast()) };
                let low_nibbles = _mm_and_si128(s, mask);
                let high_nibbles = _mm_and_si128(_mm_srli_epi64(s, 4), mask);
                for (sum, table) in acc.iter_mut().zip(tables) {
                    // SAFETY: reads the 32-byte table array's two halves.
                    let (low, high) = unsafe {
                        (
                            _mm_loadu_si128(table.as_ptr().cast()),
                            _mm_loadu_si128(table.as_ptr().add(16).cast()),
                        )
                    };
                    let product = _mm_xor_si128(
                        _mm_shuffle_epi8(low, low_nibbles),
                        _mm_shuffle_epi8(high, high_nibbles),
                    );
                    *sum = _mm_xor_si128(*sum, product);
                }
            }
            for (output, sum) in outputs.iter_mut().zip(acc) {
                // SAFETY: `i + 16 <= end`, and `end` is within every output
                // (checked_end); the store is unaligned.
                unsafe { _mm_storeu_si128(output.as_mut_ptr().add(i).cast(), sum) };
            }
            i += 16;
        }
        i
    }

    /// Outputs per group for the GFNI kernels: each needs only its
    /// accumulator, the source vector and one matrix in flight.
    pub const MAX_GFNI_GROUP: usize = 8;

    /// [`avx2_dot_prod`] with GFNI affine multiplies on 32-byte vectors.
    ///
    /// # Safety
    /// The CPU must support AVX2 and GFNI.
    #[target_feature(enable = "avx2,gfni")]
    pub unsafe fn avx2_gfni_dot_prod(
        coefficients: &Gf256Coefficients,
        first_row: usize,
        sources: &[&[u8]],
        outputs: &mut [&mut [u8]],
        start: usize,
        end: usize,
    ) -> usize {
        let (c, f, s, o) = (coefficients, first_row, sources, outputs);
        match o.len() {
            1 => avx2_gfni_dot_prod_group::<1>(c, f, s, o, start, end),
            2 => avx2_gfni_dot_prod_group::<2>(c, f, s, o, start, end),
            3 => avx2_gfni_dot_prod_group::<3>(c, f, s, o, start, end),
            4 => avx2_gfni_dot_prod_group::<4>(c, f, s, o, start, end),
            5 => avx2_gfni_dot_prod_group::<5>(c, f, s, o, start, end),
            6 => avx2_gfni_dot_prod_group::<6>(c, f, s, o, start, end),
            7 => avx2_gfni_dot_prod_group::<7>(c, f, s, o, start, end),
            8 => avx2_gfni_dot_prod_group::<8>(c, f, s, o, start, end),
            _ => start,
        }
    }

    #[target_feature(enable = "avx2,gfni")]
    fn avx2_gfni_dot_prod_group<const G: usize>(
        coefficients: &Gf256Coefficients,
        first_row: usize,
        sources: &[&[u8]],
        outputs: &mut [&mut [u8]],
        start: usize,
        end: usize,
    ) -> usize {
        let Some(end) = checked_end(coefficients, first_row, G, sources, outputs, end) else {
            return start;
        };
        let rows = coefficients.rows;
        let mut i = start;
        while i + 32 <= end {
            let mut acc = [_mm256_setzero_si256(); G];
            for (col, source) in sources.iter().enumerate() {
                let first = col * rows + first_row;
                let Some(matrices) = coefficients
                    .affine
                    .get(first..first + G)
                    .and_then(|t| <&[u64; G]>::try_from(t).ok())
                else {
                    return i;
                };
                // SAFETY: `i + 32 <= end`, and `end` is within every
                // source (checked_end); the load is unaligned.
                let s = unsafe { _mm256_loadu_si256(source.as_ptr().add(i).cast()) };
                for (sum, &matrix) in acc.iter_mut().zip(matrices) {
                    let product =
                        _mm256_gf2p8affine_epi64_epi8::<0>(s, _mm256_set1_epi64x(matrix as i64));
                    *sum = _mm256_xor_si256(*sum, product);
                }
            }
            for (output, sum) in outputs.iter_mut().zip(acc) {
                // SAFETY: `i + 32 <= end`, and `end` is within every output
                // (checked_end); the store is unaligned.
                unsafe { _mm256_storeu_si256(output.as_mut_ptr().add(i).cast(), sum) };
            }
            i += 32;
        }
        i
    }

    /// [`avx2_gfni_dot_prod`] on 64-byte AVX-512 vectors.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and GFNI.
    #[target_feature(enable = "avx512f,gfni")]
    pub unsafe fn avx512_gfni_dot_prod(
        coefficients: &Gf256Coefficients,
        first_row: usize,
        sources: &[&[u8]],
        outputs: &mut [&mut [u8]],
        start: usize,
        end: usize,
    ) -> usize {
        let (c, f, s, o) = (coefficients, first_row, sources, outputs);
        match o.len() {
            1 => avx512_gfni_dot_prod_group::<1>(c, f, s, o, start, end),
            2 => avx512_gfni_dot_prod_group::<2>(c, f, s, o, start, end),
            3 => avx512_gfni_dot_prod_group::<3>(c, f, s, o, start, end),
            4 => avx512_gfni_dot_prod_group::<4>(c, f, s, o, start, end),
            5 => avx512_gfni_dot_prod_group::<5>(c, f, s, o, start, end),
            6 => avx512_gfni_dot_prod_group::<6>(c, f, s, o, start, end),
            7 => avx512_gfni_dot_prod_group::<7>(c, f, s, o, start, end),
            8 => avx512_gfni_dot_prod_group::<8>(c, f, s, o, start, end),
            _ => start,
        }
    }

    #[target_feature(enable = "avx512f,gfni")]
    fn avx512_gfni_dot_prod_group<const G: usize>(
        coefficients: &Gf256Coefficients,
        first_row: usize,
        sources: &[&[u8]],
        outputs: &mut [&mut [u8]],
        start: usize,
        end: usize,
    ) -> usize {
        let Some(end) = checked_end(coefficients, first_row, G, sources, outputs, end) else {
            return start;
        };
        let rows = coefficients.rows;
        let mut i = start;
        while i + 64 <= end {
            let mut acc = [_mm512_setzero_si512(); G];
            for (col, source) in sources.iter().enumerate() {
                let first = col * rows + first_row;
                let Some(matrices) = coefficients
                    .affine
                    .get(first..first + G)
                    .and_then(|t| <&[u64; G]>::try_from(t).ok())
                else {
                    return i;
                };
                // SAFETY: `i + 64 <= end`, and `end` is within every
                // source (checked_end); the load is unaligned.
                let s = unsafe { _mm512_loadu_si512(source.as_ptr().add(i).cast()) };
                for (sum, &matrix) in acc.iter_mut().zip(matrices) {
                    let product =
                        _mm512_gf2p8affine_epi64_epi8::<0>(s, _mm512_set1_epi64(matrix as i64));
                    *sum = _mm512_xor_si512(*sum, product);
                }
            }
            for (output, sum) in outputs.iter_mut().zip(acc) {
                // SAFETY: `i + 64 <= end`, and `end` is within every output
                // (checked_end); the store is unaligned.
                unsafe { _mm512_storeu_si512(output.as_mut_ptr().add(i).cast(), sum) };
            }
            i += 64;
        }
        i
    }

    /// `end` if the group is what the kernels assume: exactly `group`
    /// outputs, rows that exist, no more sources than columns, and every
    /// region at least `end` bytes long. The pointer arithmetic in the
    /// kernels relies on this.
    fn checked_end(
        coefficients: &Gf256Coefficients,
        first_row: usize,
        group: usize,
        sources: &[&[u8]],
        outputs: &[&mut [u8]],
        end: usize,
    ) -> Option<usize> {
        let fits = outputs.len() == group
            && first_row + group <= coefficients.rows
            && sources.len() <= coefficients.cols
            && sources.iter().all(|s| s.len() >= end)
            && outputs.iter().all(|o| o.len() >= end);
        fits.then_some(end)
    }

    /// # Safety
    /// The CPU must support SSSE3.
    #[target_feature(enable = "ssse3")]
    pub unsafe fn ssse3_mul_acc(dst: &mut [u8], src: &[u8], tables: &NibbleTables) {
        let len = dst.len().min(src.len());
        let whole = len - len % 16;
        // SAFETY: SSSE3 is enabled for this function (the caller checked
        // the CPU); every load and store covers bytes `i..i + 16` with
        // `i + 16 <= whole <= len` of both slices, and the unaligned forms
        // have no alignment requirement.
        unsafe {
            let low = _mm_loadu_si128(tables.low.as_ptr().cast());
            let high = _mm_loadu_si128(tables.high.as_ptr().cast());
            let mask = _mm_set1_epi8(0x0f);
            let mut i = 0;
            while i < whole {
                let s = _mm_loadu_si128(src.as_ptr().add(i).cast());
                let lo_n = _mm_and_si128(s, mask);
                let hi_n = _mm_and_si128(_mm_srli_epi64(s, 4), mask);
                let product =
                    _mm_xor_si128(_mm_shuffle_epi8(low, lo_n), _mm_shuffle_epi8(high, hi_n));
                let d = _mm_loadu_si128(dst.as_ptr().add(i).cast());
                _mm_storeu_si128(dst.as_mut_ptr().add(i).cast(), _mm_xor_si128(d, product));
                i += 16;
            }
        }
        portable_mul_acc(&mut dst[whole..len], &src[whole..len], tables);
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2_mul_acc(dst: &mut [u8], src: &[u8], tables: &NibbleTables) {
        let len = dst.len().min(src.len());
        let whole = len - len % 64;
        // SAFETY: AVX2 is enabled for this function (the caller checked
        // the CPU); each iteration loads and stores bytes `i..i + 64` with
        // `i + 64 <= whole <= len` of both slices, unaligned forms only.
        unsafe {
            let low = _mm256_broadcastsi128_si256(_mm_loadu_si128(tables.low.as_ptr().cast()));
            let high = _mm256_broadcastsi128_si256(_mm_loadu_si128(tables.high.as_ptr().cast()));
            let mask = _mm256_set1_epi8(0x0f);
            let mut i = 0;
            while i < whole {
                let sp = src.as_ptr().add(i);
                let dp = dst.as_mut_ptr().add(i);
                let s0 = _mm256_loadu_si256(sp.cast());
                let s1 = _mm256_loadu_si256(sp.add(32).cast());
                let p0 = _mm256_xor_si256(
                    _mm256_shuffle_epi8(low, _mm256_and_si256(s0, mask)),
                    _mm256_shuffle_epi8(high, _mm256_and_si256(_mm256_srli_epi64(s0, 4), mask)),
                );
                let p1 = _mm256_xor_si256(
                    _mm256_shuffle_epi8(low, _mm256_and_si256(s1, mask)),
                    _mm256_shuffle_epi8(high, _mm256_and_si256(_mm256_srli_epi64(s1, 4), mask)),
                );
                let d0 = _mm256_loadu_si256(dp.cast_const().cast());
                let d1 = _mm256_loadu_si256(dp.add(32).cast_const().cast());
                _mm256_storeu_si256(dp.cast(), _mm256_xor_si256(d0, p0));
                _mm256_storeu_si256(dp.add(32).cast(), _mm256_xor_si256(d1, p1));
                i += 64;
            }
        }
        // A 16..63-byte tail still gets SSSE3-class speed from the
        // portable table; it is at most 63 bytes per call.
        portable_mul_acc(&mut dst[whole..len], &src[whole..len], tables);
    }

    /// GF(2^16) words, 64 bytes (32 words) per iteration: the low and the
    /// high bytes of the words are gathered into separate vectors, each
    /// output byte is the XOR of four nibble-table lookups, and the bytes
    /// are interleaved back into words.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2_gf65536_mul_acc(dst: &mut [u8], src: &[u8], tables: &WordTables) {
        let len = dst.len().min(src.len()) & !1;
        let whole = len - len % 64;
        // SAFETY: AVX2 is enabled for this function (the caller checked
        // the CPU); each iteration loads and stores bytes `i..i + 64` with
        // `i + 64 <= whole <= len` of both slices, unaligned forms only;
        // the tables are 16-byte arrays read with unaligned loads.
        unsafe {
            let table = |t: usize| {
                _mm256_broadcastsi128_si256(_mm_loadu_si128(tables.nibbles[t].as_ptr().cast()))
            };
            let (l0, h0, l1, h1) = (table(0), table(1), table(2), table(3));
            let (l2, h2, l3, h3) = (table(4), table(5), table(6), table(7));
            let mask = _mm256_set1_epi8(0x0f);
            // Within each 128-bit lane: even bytes (word lows) first, then
            // odd bytes (word highs).
            let split = _mm256_setr_epi8(
                0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12, 14, 1,
                3, 5, 7, 9, 11, 13, 15,
            );
            let mut i = 0;
            while i < whole {
                let sp = src.as_ptr().add(i);
                let dp = dst.as_mut_ptr().add(i);
                let a = _mm256_shuffle_epi8(_mm256_loadu_si256(sp.cast()), split);
                let b = _mm256_shuffle_epi8(_mm256_loadu_si256(sp.add(32).cast()), split);
                let lows = _mm256_unpacklo_epi64(a, b);
                let highs = _mm256_unpackhi_epi64(a, b);
                let n0 = _mm256_and_si256(lows, mask);
                let n1 = _mm256_and_si256(_mm256_srli_epi64(lows, 4), mask);
                let n2 = _mm256_and_si256(highs, mask);
                let n3 = _mm256_and_si256(_mm256_srli_epi64(highs, 4), mask);
                let out_low = _mm256_xor_si256(
                    _mm256_xor_si256(_mm256_shuffle_epi8(l0, n0), _mm256_shuffle_epi8(l1, n1)),
                    _mm256_xor_si256(_mm256_shuffle_epi8(l2, n2), _mm256_shuffle_epi8(l3, n3)),
                );
                let out_high = _mm256_xor_si256(
                    _mm256_xor_si256(_mm256_shuffle_epi8(h0, n0), _mm256_shuffle_epi8(h1, n1)),
                    _mm256_xor_si256(_mm256_shuffle_epi8(h2, n2), _mm256_shuffle_epi8(h3, n3)),
                );
                let words_a = _mm256_unpacklo_epi8(out_low, out_high);
                let words_b = _mm256_unpackhi_epi8(out_low, out_high);
                let d0 = _mm256_loadu_si256(dp.cast_const().cast());
                let d1 = _mm256_loadu_si256(dp.add(32).cast_const().cast());
                _mm256_storeu_si256(dp.cast(), _mm256_xor_si256(d0, words_a));
                _mm256_storeu_si256(dp.add(32).cast(), _mm256_xor_si256(d1, words_b));
                i += 64;
            }
        }
        portable_gf65536_mul_acc(&mut dst[whole..len], &src[whole..len], tables);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift) so failures reproduce.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn reference_mul_acc(dst: &mut [u8], src: &[u8], c: u8) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d ^= gf256_mul(c, s);
        }
    }

    #[test]
    fn every_kernel_matches_the_field_definition() {
        let lengths = [
            0usize, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 200, 1000, 4099,
        ];
        for kernel in Kernel::available() {
            for (n, &len) in lengths.iter().enumerate() {
                for c in [0u8, 1, 2, 0x1d, 0x80, 0xff, (n as u8).wrapping_mul(37)] {
                    // Offsets make the regions start unaligned.
                    for offset in [0usize, 1, 7] {
                        let src = bytes(len as u64 * 31 + u64::from(c), len + offset);
                        let start = bytes(len as u64 + 7, len + offset);
                        let mut expected = start.clone();
                        reference_mul_acc(&mut expected[offset..], &src[offset..], c);
                        let mut got = start.clone();
                        gf256_mul_acc_with(kernel, &mut got[offset..], &src[offset..], c);
                        assert_eq!(got, expected, "{kernel:?} len={len} c={c} offset={offset}");
                    }
                }
            }
        }
    }

    /// The dot product straight from the field definition.
    fn reference_dot_prod(rows: &[Vec<u8>], sources: &[Vec<u8>], len: usize) -> Vec<Vec<u8>> {
        rows.iter()
            .map(|row| {
                (0..len)
                    .map(|i| {
                        row.iter()
                            .zip(sources)
                            .fold(0u8, |acc, (&c, s)| acc ^ gf256_mul(c, s[i]))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_dot_prod_kernel_matches_the_field_definition() {
        let lengths = [
            0usize,
            1,
            15,
            16,
            17,
            31,
            32,
            33,
            63,
            64,
            65,
            100,
            4095,
            4096 + 17,
            STRIPE - 1,
            STRIPE + 33,
            2 * STRIPE + 100,
        ];
        // (outputs, sources): single and multiple groups of outputs.
        let shapes = [(1, 1), (2, 4), (3, 8), (4, 10), (6, 3), (7, 5), (13, 2)];
        for kernel in Kernel::available() {
            for (n, &len) in lengths.iter().enumerate() {
                for &(m, k) in &shapes {
                    let seed = (n * 100 + m * 10 + k) as u64;
                    // Coefficients include 0 and 1, which have no special case.
                    let rows: Vec<Vec<u8>> = (0..m)
                        .map(|r| {
                            let mut row = bytes(seed * 7 + r as u64, k);
                            row[r % k] = (r % 2) as u8;
                            row
                        })
                        .collect();
                    let row_refs: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
                    let coefficients = Gf256Coefficients::new(&row_refs);
                    // The regions start unaligned.
                    let offset = 1 + n % 7;
                    let sources: Vec<Vec<u8>> = (0..k)
                        .map(|j| bytes(seed * 13 + j as u64, len + offset))
                        .collect();
                    let source_refs: Vec<&[u8]> = sources.iter().map(|s| &s[offset..]).collect();
                    // Outputs start as garbage (they are overwritten) and
                    // have one byte more than the sources, left alone.
                    let mut outputs: Vec<Vec<u8>> = (0..m)
                        .map(|r| bytes(seed * 17 + r as u64, len + offset + 1))
                        .collect();
                    let guards: Vec<u8> = outputs.iter().map(|o| o[len + offset]).collect();
                    {
                        let mut output_refs: Vec<&mut [u8]> =
                            outputs.iter_mut().map(|o| &mut o[offset..]).collect();
                        gf256_dot_prod_with(kernel, &coefficients, &source_refs, &mut output_refs);
                    }
                    let trimmed: Vec<Vec<u8>> =
                        sources.iter().map(|s| s[offset..].to_vec()).collect();
                    let expected = reference_dot_prod(&rows, &trimmed, len);
                    for (r, output) in outputs.iter().enumerate() {
                        assert!(
                            output[offset..offset + len] == expected[r][..],
                            "{kernel:?} len={len} m={m} k={k} output {r}"
                        );
                        assert_eq!(output[len + offset], guards[r], "{kernel:?} wrote past len");
                    }
                }
            }
        }
    }

    #[test]
    fn dot_prod_pairs_what_exists_and_stops_at_the_shortest_region() {
        let rows = [vec![2u8, 3], vec![5, 7]];
        let row_refs: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
        let coefficients = Gf256Coefficients::new(&row_refs);
        let (a, b) = (bytes(1, 100), bytes(2, 90));
        for kernel in Kernel::available() {
            // Three outputs for two rows: the third is left alone; the
            // shorter source limits every output to 90 bytes.
            let mut outputs = vec![vec![0xaau8; 100]; 3];
            {
                let mut refs: Vec<&mut [u8]> = outputs.iter_mut().map(Vec::as_mut_slice).collect();
                gf256_dot_prod_with(kernel, &coefficients, &[&a, &b], &mut refs);
            }
            let expected = reference_dot_prod(&rows, &[a.clone(), b.clone()], 90);
            for r in 0..2 {
                assert_eq!(outputs[r][..90], expected[r][..], "{kernel:?}");
                assert!(outputs[r][90..].iter().all(|&x| x == 0xaa), "{kernel:?}");
            }
            assert!(outputs[2].iter().all(|&x| x == 0xaa), "{kernel:?}");
            // One source for two columns: only the first column counts.
            let mut single = vec![vec![0u8; 100]; 2];
            {
                let mut refs: Vec<&mut [u8]> = single.iter_mut().map(Vec::as_mut_slice).collect();
                gf256_dot_prod_with(kernel, &coefficients, &[&a], &mut refs);
            }
            let expected = reference_dot_prod(&[vec![2], vec![5]], std::slice::from_ref(&a), 100);
            assert_eq!(single, expected, "{kernel:?}");
        }
        // Nothing at all is fine too.
        gf256_dot_prod(&Gf256Coefficients::new(&[]), &[], &mut []);
    }

    #[test]
    fn the_portable_kernel_is_always_available_and_listed_first() {
        assert_eq!(Kernel::available().first(), Some(&Kernel::Portable));
        assert!(Kernel::available().contains(&Kernel::best()));
    }

    #[test]
    fn gf65536_kernel_multiplies_little_endian_words() {
        let src = bytes(9, 1002);
        for c in [0u16, 1, 2, 0x100b, 0xffff, 0x1234] {
            let mut dst = bytes(3, 1002);
            let mut expected = dst.clone();
            for (d, s) in expected.chunks_exact_mut(2).zip(src.chunks_exact(2)) {
                let w = u16::from_le_bytes([s[0], s[1]]);
                let p = gf65536_mul(w, c) ^ u16::from_le_bytes([d[0], d[1]]);
                d.copy_from_slice(&p.to_le_bytes());
            }
            mul_acc(&mut dst, &src, &Multiplier::new(Field::Gf65536, c));
            assert_eq!(dst, expected, "c={c:#x}");
        }
    }

    #[test]
    fn every_gf65536_kernel_agrees_with_the_portable_one() {
        for kernel in Kernel::available() {
            for len in [0usize, 2, 30, 62, 64, 66, 126, 128, 130, 1000, 4098] {
                for c in [2u16, 0x100b, 0xffff, 0x8001, len as u16 | 3] {
                    for offset in [0usize, 1, 2] {
                        let src = bytes(len as u64 + u64::from(c), len + offset);
                        let start = bytes(len as u64 * 3 + 1, len + offset);
                        let tables = WordTables::new(c);
                        let mut expected = start.clone();
                        portable_gf65536_mul_acc(&mut expected[offset..], &src[offset..], &tables);
                        let mut got = start.clone();
                        let multiplier = Multiplier::new(Field::Gf65536, c);
                        mul_acc_with(kernel, &mut got[offset..], &src[offset..], &multiplier);
                        assert_eq!(
                            got, expected,
                            "{kernel:?} len={len} c={c:#x} offset={offset}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn xor_into_handles_tails() {
        for len in [0usize, 3, 8, 13, 64] {
            let a = bytes(1, len);
            let b = bytes(2, len);
            let mut got = a.clone();
            xor_into(&mut got, &b);
            let expected: Vec<u8> = a.iter().zip(&b).map(|(x, y)| x ^ y).collect();
            assert_eq!(got, expected);
        }
    }
}
