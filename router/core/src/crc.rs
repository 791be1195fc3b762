//! The block CRCs of RFC 9171 §4.2.1–4.2.2: CRC-16/X.25 (CRC type 1) and
//! CRC-32C (Castagnoli, CRC type 2), and the "computed with the CRC field
//! zeroed" rule that every block uses.
//!
//! CRC-32C goes through the `crc32c` crate, which uses the SSE 4.2 / ARMv8
//! CRC instructions when the CPU has them. CRC-16/X.25 is ours: a
//! slicing-by-8 table version of the reflected 0x1021 polynomial.

use crate::bundle::CrcType;

/// CRC-16/X.25 (a.k.a. CRC-16/IBM-SDLC): polynomial 0x1021 reflected (0x8408),
/// init 0xffff, reflected in and out, xorout 0xffff. `check("123456789") = 0x906e`.
pub fn crc16_x25(data: &[u8]) -> u16 {
    Crc16::new().update(data).finish()
}

/// CRC-32C (Castagnoli). `check("123456789") = 0xe3069283`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// An incremental CRC-16/X.25.
#[derive(Debug, Clone, Copy)]
pub struct Crc16(u16);

impl Default for Crc16 {
    fn default() -> Self {
        Crc16::new()
    }
}

impl Crc16 {
    pub fn new() -> Crc16 {
        Crc16(0xffff)
    }

    #[must_use]
    pub fn update(self, data: &[u8]) -> Crc16 {
        let mut crc = self.0;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            // Slicing-by-8: fold the running CRC into the first two bytes, then
            // look every byte up in the table for its distance from the end.
            let a = c[0] ^ crc as u8;
            let b = c[1] ^ (crc >> 8) as u8;
            crc = CRC16_TABLES[7][usize::from(a)]
                ^ CRC16_TABLES[6][usize::from(b)]
                ^ CRC16_TABLES[5][usize::from(c[2])]
                ^ CRC16_TABLES[4][usize::from(c[3])]
                ^ CRC16_TABLES[3][usize::from(c[4])]
                ^ CRC16_TABLES[2][usize::from(c[5])]
                ^ CRC16_TABLES[1][usize::from(c[6])]
                ^ CRC16_TABLES[0][usize::from(c[7])];
        }
        for &b in chunks.remainder() {
            crc = (crc >> 8) ^ CRC16_TABLES[0][usize::from((crc as u8) ^ b)];
        }
        Crc16(crc)
    }

    pub fn finish(self) -> u16 {
        self.0 ^ 0xffff
    }
}

const CRC16_TABLES: [[u16; 256]; 8] = crc16_tables();

const fn crc16_tables() -> [[u16; 256]; 8] {
    let mut t = [[0u16; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u16;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x8408 } else { crc >> 1 };
            bit += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// The CRC of a block's encoding `block` whose CRC value (the content of the
/// CRC byte string, `crc_type.len()` bytes) starts at `value_at`, computed as
/// if those bytes were zero (RFC 9171 §4.3.1, §4.3.2). The bytes are read as
/// received, so indefinite-length blocks are checked correctly.
///
/// Returns `None` when the value does not fit inside `block`; 0 for
/// [`CrcType::None`].
pub fn block_crc(crc_type: CrcType, block: &[u8], value_at: usize) -> Option<u32> {
    let n = crc_type.len();
    let end = value_at.checked_add(n)?;
    let head = block.get(..value_at)?;
    let tail = block.get(end..)?;
    const ZEROS: [u8; 4] = [0; 4];
    Some(match crc_type {
        CrcType::None => 0,
        CrcType::Crc16 => u32::from(Crc16::new().update(head).update(&ZEROS[..2]).update(tail).finish()),
        CrcType::Crc32c => {
            let c = crc32c::crc32c(head);
            let c = crc32c::crc32c_append(c, &ZEROS);
            crc32c::crc32c_append(c, tail)
        }
    })
}

/// The CRC value bytes found on the wire, as a number (network byte order,
/// RFC 9171 §4.2.2). `None` when the length does not match the CRC type.
pub fn read_value(crc_type: CrcType, value: &[u8]) -> Option<u32> {
    match (crc_type, value) {
        (CrcType::Crc16, &[a, b]) => Some(u32::from(u16::from_be_bytes([a, b]))),
        (CrcType::Crc32c, &[a, b, c, d]) => Some(u32::from_be_bytes([a, b, c, d])),
        _ => None,
    }
}

/// Fills in the CRC of a block just encoded into `block`, whose zeroed CRC
/// value starts at `value_at` (the last `crc_type.len()` bytes of a
/// definite-length block).
pub(crate) fn fill(crc_type: CrcType, block: &mut [u8], value_at: usize) {
    match crc_type {
        CrcType::None => {}
        CrcType::Crc16 => {
            let v = crc16_x25(block).to_be_bytes();
            if let Some(dst) = block.get_mut(value_at..value_at + 2) {
                dst.copy_from_slice(&v);
            }
        }
        CrcType::Crc32c => {
            let v = crc32c(block).to_be_bytes();
            if let Some(dst) = block.get_mut(value_at..value_at + 4) {
                dst.copy_from_slice(&v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc16_bitwise(data: &[u8]) -> u16 {
        let mut crc = 0xffffu16;
        for &b in data {
            crc ^= u16::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0x8408 } else { crc >> 1 };
            }
        }
        crc ^ 0xffff
    }

    #[test]
    fn check_values() {
        assert_eq!(crc16_x25(b"123456789"), 0x906e);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc16_x25(b""), 0);
    }

    #[test]
    fn sliced_matches_bitwise_for_every_length_and_split() {
        let data: Vec<u8> = (0..100u32).map(|i| (i.wrapping_mul(167) ^ 0x5a) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(crc16_x25(&data[..len]), crc16_bitwise(&data[..len]), "len {len}");
            let (a, b) = data[..len].split_at(len / 3);
            assert_eq!(Crc16::new().update(a).update(b).finish(), crc16_bitwise(&data[..len]));
        }
    }

    #[test]
    fn block_crc_zeroes_the_value() {
        let mut block = b"abcdefgh\x11\x22\x33\x44xyz".to_vec();
        let expect = {
            let mut z = block.clone();
            z[8..12].fill(0);
            crc32c(&z)
        };
        assert_eq!(block_crc(CrcType::Crc32c, &block, 8), Some(expect));
        block[8..10].fill(0);
        assert_eq!(block_crc(CrcType::Crc16, &block, 8), Some(u32::from(crc16_x25(&block))));
        assert_eq!(block_crc(CrcType::Crc32c, &block, 12), None);
        assert_eq!(block_crc(CrcType::Crc32c, &block, usize::MAX), None);
    }

    #[test]
    fn values_are_big_endian() {
        assert_eq!(read_value(CrcType::Crc16, &[0x90, 0x6e]), Some(0x906e));
        assert_eq!(read_value(CrcType::Crc32c, &[0xe3, 0x06, 0x92, 0x83]), Some(0xe306_9283));
        assert_eq!(read_value(CrcType::Crc32c, &[0, 0]), None);
        assert_eq!(read_value(CrcType::None, &[]), None);
    }
}
