//! Galois-field arithmetic for the two word sizes the supported backends
//! use: GF(2^8) with polynomial 0x11d (ISA-L) and GF(2^16) with polynomial
//! 0x1100b (liberasurecode's built-in Reed-Solomon, whose words are
//! little-endian pairs of bytes). Both use logarithm tables; the bulk work
//! on regions goes through [`crate::kernel`], which builds per-constant
//! tables from these.

use std::sync::OnceLock;

/// The field a code's symbols live in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// GF(2^8), polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d).
    Gf256,
    /// GF(2^16), polynomial x^16 + x^12 + x^3 + x + 1 (0x1100b).
    Gf65536,
}

impl Field {
    /// Bytes per symbol: fragment payloads are whole numbers of symbols.
    pub fn symbol_bytes(self) -> usize {
        match self {
            Field::Gf256 => 1,
            Field::Gf65536 => 2,
        }
    }

    pub fn mul(self, a: u16, b: u16) -> u16 {
        match self {
            Field::Gf256 => u16::from(gf256_mul(a as u8, b as u8)),
            Field::Gf65536 => gf65536_mul(a, b),
        }
    }

    /// The multiplicative inverse; `None` for zero.
    pub fn inv(self, a: u16) -> Option<u16> {
        if a == 0 {
            return None;
        }
        Some(match self {
            Field::Gf256 => u16::from(gf256_inv(a as u8)),
            Field::Gf65536 => gf65536_inv(a),
        })
    }

    /// `base` raised to `exp`, by repeated multiplication as the matrix
    /// constructions define it.
    pub fn pow(self, base: u16, exp: usize) -> u16 {
        let mut acc = 1;
        for _ in 0..exp {
            acc = self.mul(acc, base);
        }
        acc
    }
}

struct Gf256Tables {
    /// `exp[i]` = 2^i, doubled in length so a sum of two logs indexes it.
    exp: [u8; 512],
    /// `log[x]` for x != 0.
    log: [u16; 256],
}

const GF256: Gf256Tables = build_gf256();

const fn build_gf256() -> Gf256Tables {
    let mut exp = [0u8; 512];
    let mut log = [0u16; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        log[x as usize] = i as u16;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= 0x11d;
        }
        i += 1;
    }
    // 2^510 and 2^511 are never indexed (logs are < 255); keep them sane.
    exp[510] = exp[0];
    exp[511] = exp[1];
    Gf256Tables { exp, log }
}

pub fn gf256_mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    GF256.exp[(GF256.log[a as usize] + GF256.log[b as usize]) as usize]
}

/// Inverse of a non-zero element (zero maps to zero).
pub fn gf256_inv(a: u8) -> u8 {
    if a == 0 {
        return 0;
    }
    GF256.exp[(255 - GF256.log[a as usize]) as usize]
}

struct Gf65536Tables {
    exp: Vec<u16>,
    log: Vec<u32>,
}

fn gf65536() -> &'static Gf65536Tables {
    static TABLES: OnceLock<Gf65536Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        const ORDER: usize = 65535;
        let mut exp = vec![0u16; ORDER * 2];
        let mut log = vec![0u32; 65536];
        let mut x: u32 = 1;
        for i in 0..ORDER {
            exp[i] = x as u16;
            exp[i + ORDER] = x as u16;
            log[x as usize] = i as u32;
            x <<= 1;
            if x & 0x1_0000 != 0 {
                x ^= 0x1_100b;
            }
        }
        Gf65536Tables { exp, log }
    })
}

pub fn gf65536_mul(a: u16, b: u16) -> u16 {
    if a == 0 || b == 0 {
        return 0;
    }
    let t = gf65536();
    t.exp[(t.log[a as usize] + t.log[b as usize]) as usize]
}

fn gf65536_inv(a: u16) -> u16 {
    let t = gf65536();
    t.exp[(65535 - t.log[a as usize]) as usize % 65535]
}

/// A dense row-major matrix of field elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub cells: Vec<u16>,
}

impl Matrix {
    pub fn zero(rows: usize, cols: usize) -> Self {
        Matrix {
            rows,
            cols,
            cells: vec![0; rows * cols],
        }
    }

    pub fn identity(n: usize) -> Self {
        let mut m = Matrix::zero(n, n);
        for i in 0..n {
            m.set(i, i, 1);
        }
        m
    }

    pub fn get(&self, r: usize, c: usize) -> u16 {
        self.cells[r * self.cols + c]
    }

    pub fn set(&mut self, r: usize, c: usize, v: u16) {
        self.cells[r * self.cols + c] = v;
    }

    pub fn row(&self, r: usize) -> &[u16] {
        &self.cells[r * self.cols..(r + 1) * self.cols]
    }

    /// The matrix made of the given rows, in that order.
    pub fn select_rows(&self, rows: &[usize]) -> Matrix {
        let mut out = Matrix::zero(rows.len(), self.cols);
        for (i, &r) in rows.iter().enumerate() {
            out.cells[i * self.cols..(i + 1) * self.cols].copy_from_slice(self.row(r));
        }
        out
    }

    pub fn mul(&self, field: Field, other: &Matrix) -> Matrix {
        let mut out = Matrix::zero(self.rows, other.cols);
        for r in 0..self.rows {
            for c in 0..other.cols {
                let mut acc = 0;
                for i in 0..self.cols {
                    acc ^= field.mul(self.get(r, i), other.get(i, c));
                }
                out.set(r, c, acc);
            }
        }
        out
    }

    /// Gauss-Jordan inverse of a square matrix; `None` when singular. The
    /// inverse is unique, so how it is reached does not affect the bytes.
    pub fn invert(&self, field: Field) -> Option<Matrix> {
        let n = self.rows;
        if self.cols != n {
            return None;
        }
        let mut work = self.clone();
        let mut inv = Matrix::identity(n);
        for col in 0..n {
            let pivot = (col..n).find(|&r| work.get(r, col) != 0)?;
            if pivot != col {
                for c in 0..n {
                    work.cells.swap(pivot * n + c, col * n + c);
                    inv.cells.swap(pivot * n + c, col * n + c);
                }
            }
            let scale = field.inv(work.get(col, col))?;
            for c in 0..n {
                work.set(col, c, field.mul(work.get(col, c), scale));
                inv.set(col, c, field.mul(inv.get(col, c), scale));
            }
            for r in 0..n {
                let factor = work.get(r, col);
                if r == col || factor == 0 {
                    continue;
                }
                for c in 0..n {
                    let w = work.get(r, c) ^ field.mul(factor, work.get(col, c));
                    work.set(r, c, w);
                    let v = inv.get(r, c) ^ field.mul(factor, inv.get(col, c));
                    inv.set(r, c, v);
                }
            }
        }
        Some(inv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gf256_inverse_and_known_products() {
        for a in 1..=255u8 {
            assert_eq!(gf256_mul(a, gf256_inv(a)), 1, "a={a}");
        }
        // 0x80 * 2 wraps through the polynomial: 0x100 ^ 0x11d = 0x1d.
        assert_eq!(gf256_mul(0x80, 2), 0x1d);
        assert_eq!(gf256_mul(0, 7), 0);
    }

    #[test]
    fn gf65536_inverse_and_known_products() {
        for a in [1u16, 2, 3, 0x100, 0x8000, 0xffff, 12345] {
            let inv = Field::Gf65536.inv(a).unwrap();
            assert_eq!(gf65536_mul(a, inv), 1, "a={a}");
        }
        assert_eq!(gf65536_mul(0x8000, 2), 0x100b);
    }

    #[test]
    fn matrix_inverse_round_trips_and_detects_singular() {
        for field in [Field::Gf256, Field::Gf65536] {
            let mut m = Matrix::zero(3, 3);
            // A Vandermonde matrix on the distinct points 0, 1, 2.
            m.cells.copy_from_slice(&[1, 0, 0, 1, 1, 1, 1, 2, 4]);
            let inv = m.invert(field).unwrap();
            assert_eq!(m.mul(field, &inv), Matrix::identity(3));
            assert_eq!(inv.mul(field, &m), Matrix::identity(3));
            let mut singular = Matrix::zero(2, 2);
            singular.cells.copy_from_slice(&[3, 3, 3, 3]);
            assert!(singular.invert(field).is_none());
        }
    }
}
