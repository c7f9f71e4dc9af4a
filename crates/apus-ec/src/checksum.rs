//! The CRC-32 liberasurecode puts in fragment headers: zlib's (IEEE 802.3,
//! reflected, polynomial 0xEDB88320), and the "legacy" variant that
//! liberasurecode releases before 1.5 wrote on some builds and that readers
//! still accept.

/// One entry per byte value: the CRC of that byte with a zero register.
const TABLE: [u32; 256] = build_table();

const fn build_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut crc = n as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[n] = crc;
        n += 1;
    }
    table
}

/// zlib's `crc32(0, bytes, len)`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The legacy variant: the register was a signed C `int`, so shifting it
/// right copied its top bit into the vacated byte instead of zero.
/// Fragments written with it must still verify.
pub fn crc32_legacy(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        // The cast to i32 makes the shift arithmetic, as in the original.
        let shifted = ((crc as i32) >> 8) as u32;
        crc = TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ shifted;
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_zlib_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn legacy_variant_diverges_once_the_register_top_bit_is_set() {
        let long: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        assert_ne!(crc32(&long), crc32_legacy(&long));
        assert_eq!(crc32(b""), crc32_legacy(b""));
    }
}
