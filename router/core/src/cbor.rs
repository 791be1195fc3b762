//! A minimal, strict CBOR (RFC 8949) reader and writer for the subset that
//! BPv7 uses: unsigned integers, definite-length byte and text strings, arrays
//! (definite and indefinite length), booleans and the "break" stop code.
//!
//! The [`Reader`] works over a borrowed `&[u8]` and hands out sub-slices, never
//! copies. Every accessor checks that the bytes it needs are there before it
//! touches them, a declared length is compared with what is left before
//! anything is sliced or allocated, and nothing panics on any input. Typed
//! reads (`read_uint`, `read_bytes`, ...) reject every other major type; the one
//! generic walker, [`Reader::skip_item`], is bounded in depth.
//!
//! Heads that are not in the shortest form are accepted: RFC 9171 §4.1 asks
//! encoders for the deterministic encoding of RFC 8949 §4.2, but rejecting a
//! longer head would be stricter than any rule a receiver is given.
//!
//! The writers always emit the shortest form.

use std::ops::Range;

/// CBOR major types (RFC 8949 §3.1).
pub mod major {
    pub const UINT: u8 = 0;
    pub const NEGATIVE: u8 = 1;
    pub const BYTES: u8 = 2;
    pub const TEXT: u8 = 3;
    pub const ARRAY: u8 = 4;
    pub const MAP: u8 = 5;
    pub const TAG: u8 = 6;
    pub const SIMPLE: u8 = 7;
}

/// The "break" stop code that ends an indefinite-length item.
pub const BREAK: u8 = 0xff;
/// The head of an indefinite-length array.
pub const INDEFINITE_ARRAY: u8 = 0x9f;

/// How deep [`Reader::skip_item`] descends into nested arrays, maps and tags.
pub const MAX_SKIP_DEPTH: usize = 16;

/// Why bytes are not the CBOR item that was expected. `offset` is where the
/// offending head (or the missing bytes) starts in the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CborError {
    /// The input ends inside an item.
    #[error("CBOR input truncated at offset {offset}")]
    Truncated { offset: usize },
    /// An item of another major type (or another simple value) than expected.
    #[error("unexpected CBOR initial byte {initial:#04x} at offset {offset}")]
    UnexpectedType { offset: usize, initial: u8 },
    /// Additional information 28–30, reserved by RFC 8949 §3.
    #[error("reserved CBOR additional information at offset {offset}")]
    Reserved { offset: usize },
    /// An indefinite-length byte or text string: BPv7 has none (RFC 9171 §4.3.2
    /// requires definite-length block data).
    #[error("indefinite-length string at offset {offset}")]
    IndefiniteString { offset: usize },
    /// A "break" where no indefinite-length item is open, or a definite length
    /// given as "indefinite" where that is not allowed.
    #[error("misplaced break or indefinite length at offset {offset}")]
    UnexpectedBreak { offset: usize },
    /// A declared length that cannot be held in memory on this machine.
    #[error("CBOR length too large at offset {offset}")]
    TooLong { offset: usize },
    /// A text string that is not UTF-8.
    #[error("text string is not UTF-8 at offset {offset}")]
    InvalidUtf8 { offset: usize },
    /// Nesting deeper than [`MAX_SKIP_DEPTH`].
    #[error("CBOR nesting too deep at offset {offset}")]
    TooDeep { offset: usize },
}

/// The argument of a head: a number, or "indefinite length" (additional info 31).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    Value(u64),
    Indefinite,
}

/// A decoded head: major type and argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub major: u8,
    /// The additional information (low five bits of the initial byte).
    pub info: u8,
    pub arg: Arg,
}

/// A checked cursor over CBOR bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// The whole buffer this reader walks.
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// Offset of the next unread byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next byte, not consumed.
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn truncated(&self) -> CborError {
        CborError::Truncated { offset: self.pos }
    }

    /// Consumes `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(self.truncated())?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads one head (initial byte and argument).
    pub fn head(&mut self) -> Result<Head, CborError> {
        let start = self.pos;
        let initial = self.peek().ok_or(self.truncated())?;
        let major = initial >> 5;
        let info = initial & 0x1f;
        let arg = match info {
            0..=23 => {
                self.pos += 1;
                Arg::Value(u64::from(info))
            }
            24..=27 => {
                let n = 1usize << (info - 24);
                let Some(bytes) = self.buf.get(start + 1..start + 1 + n) else {
                    return Err(CborError::Truncated { offset: start });
                };
                let mut v = 0u64;
                for &b in bytes {
                    v = (v << 8) | u64::from(b);
                }
                self.pos = start + 1 + n;
                Arg::Value(v)
            }
            28..=30 => return Err(CborError::Reserved { offset: start }),
            _ => {
                self.pos += 1;
                Arg::Indefinite
            }
        };
        Ok(Head { major, info, arg })
    }

    /// Reads a head of major type `want` with a definite argument.
    fn head_of(&mut self, want: u8) -> Result<u64, CborError> {
        let start = self.pos;
        let initial = self.peek().ok_or(self.truncated())?;
        if initial >> 5 != want {
            return Err(CborError::UnexpectedType { offset: start, initial });
        }
        match self.head() {
            Ok(Head { arg: Arg::Value(v), .. }) => Ok(v),
            Ok(Head { arg: Arg::Indefinite, .. }) => {
                self.pos = start;
                Err(if want == major::BYTES || want == major::TEXT {
                    CborError::IndefiniteString { offset: start }
                } else {
                    CborError::UnexpectedBreak { offset: start }
                })
            }
            Err(e) => {
                self.pos = start;
                Err(e)
            }
        }
    }

    /// An unsigned integer (major type 0). Negative integers are rejected.
    pub fn read_uint(&mut self) -> Result<u64, CborError> {
        self.head_of(major::UINT)
    }

    /// A signed integer (major type 0 or 1) that fits an `i64`; anything
    /// outside `i64` is [`CborError::TooLong`]. BPSec security context IDs are
    /// the one signed field BPv7 carries (RFC 9172 §3.6).
    pub fn read_int(&mut self) -> Result<i64, CborError> {
        let start = self.pos;
        let initial = self.peek().ok_or(self.truncated())?;
        let negative = match initial >> 5 {
            major::UINT => false,
            major::NEGATIVE => true,
            _ => return Err(CborError::UnexpectedType { offset: start, initial }),
        };
        let v = match self.head() {
            Ok(Head { arg: Arg::Value(v), .. }) => v,
            Ok(Head { arg: Arg::Indefinite, .. }) => {
                self.pos = start;
                return Err(CborError::UnexpectedBreak { offset: start });
            }
            Err(e) => {
                self.pos = start;
                return Err(e);
            }
        };
        // A negative integer encodes -1 - v (RFC 8949 §3.1).
        let Ok(v) = i64::try_from(v) else {
            self.pos = start;
            return Err(CborError::TooLong { offset: start });
        };
        Ok(if negative { -1 - v } else { v })
    }

    /// A definite-length byte string; returns its content.
    pub fn read_bytes(&mut self) -> Result<&'a [u8], CborError> {
        let r = self.read_bytes_range()?;
        Ok(&self.buf[r])
    }

    /// A definite-length byte string; returns where its content is in the buffer.
    pub fn read_bytes_range(&mut self) -> Result<Range<usize>, CborError> {
        let start = self.pos;
        let len = self.head_of(major::BYTES)?;
        self.content(start, len)
    }

    /// A definite-length UTF-8 text string.
    pub fn read_text(&mut self) -> Result<&'a str, CborError> {
        let start = self.pos;
        let len = self.head_of(major::TEXT)?;
        let r = self.content(start, len)?;
        std::str::from_utf8(&self.buf[r]).map_err(|_| CborError::InvalidUtf8 { offset: start })
    }

    /// Claims `len` content bytes after a string head that started at `start`,
    /// checking that they are all there first.
    fn content(&mut self, start: usize, len: u64) -> Result<Range<usize>, CborError> {
        let Ok(len) = usize::try_from(len) else {
            self.pos = start;
            return Err(CborError::TooLong { offset: start });
        };
        if len > self.remaining() {
            self.pos = start;
            return Err(CborError::Truncated { offset: start });
        }
        let r = self.pos..self.pos + len;
        self.pos += len;
        Ok(r)
    }

    /// An array head: `Some(n)` for a definite length, `None` for indefinite.
    pub fn read_array(&mut self) -> Result<Option<u64>, CborError> {
        let start = self.pos;
        let initial = self.peek().ok_or(self.truncated())?;
        if initial >> 5 != major::ARRAY {
            return Err(CborError::UnexpectedType { offset: start, initial });
        }
        match self.head()?.arg {
            Arg::Value(n) => Ok(Some(n)),
            Arg::Indefinite => Ok(None),
        }
    }

    /// An array head, returned as a [`Seq`] to walk its items with.
    pub fn read_seq(&mut self) -> Result<Seq, CborError> {
        Ok(Seq { left: self.read_array()? })
    }

    /// A boolean (simple values 20 and 21).
    pub fn read_bool(&mut self) -> Result<bool, CborError> {
        match self.peek() {
            Some(0xf4) => {
                self.pos += 1;
                Ok(false)
            }
            Some(0xf5) => {
                self.pos += 1;
                Ok(true)
            }
            Some(initial) => Err(CborError::UnexpectedType { offset: self.pos, initial }),
            None => Err(self.truncated()),
        }
    }

    /// Consumes a "break" if it is next; false (nothing consumed) otherwise.
    pub fn read_break(&mut self) -> Result<bool, CborError> {
        match self.peek() {
            Some(BREAK) => {
                self.pos += 1;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(self.truncated()),
        }
    }

    /// Skips one complete data item of any type, descending at most
    /// [`MAX_SKIP_DEPTH`] levels. Indefinite-length strings are skipped too
    /// (chunk by chunk); this is for tolerating unknown content, e.g. extra
    /// elements in an administrative record.
    pub fn skip_item(&mut self) -> Result<(), CborError> {
        self.skip_depth(0)
    }

    fn skip_depth(&mut self, depth: usize) -> Result<(), CborError> {
        let start = self.pos;
        if depth > MAX_SKIP_DEPTH {
            return Err(CborError::TooDeep { offset: start });
        }
        let h = self.head()?;
        match (h.major, h.arg) {
            (major::UINT | major::NEGATIVE, Arg::Value(_)) => Ok(()),
            (major::BYTES | major::TEXT, Arg::Value(n)) => self.content(start, n).map(|_| ()),
            (major::BYTES | major::TEXT, Arg::Indefinite) => loop {
                if self.read_break()? {
                    return Ok(());
                }
                let chunk = self.pos;
                let inner = self.head()?;
                match inner.arg {
                    Arg::Value(n) if inner.major == h.major => {
                        self.content(chunk, n)?;
                    }
                    _ => return Err(CborError::UnexpectedType { offset: chunk, initial: self.buf[chunk] }),
                }
            },
            (major::ARRAY | major::MAP, Arg::Value(n)) => {
                let items = if h.major == major::MAP { n.checked_mul(2) } else { Some(n) };
                let items = items.ok_or(CborError::TooLong { offset: start })?;
                // Every item takes at least one byte: a count larger than what
                // is left is truncated input, found without looping over it.
                if items > self.remaining() as u64 {
                    return Err(CborError::Truncated { offset: start });
                }
                for _ in 0..items {
                    self.skip_depth(depth + 1)?;
                }
                Ok(())
            }
            (major::ARRAY | major::MAP, Arg::Indefinite) => loop {
                if self.read_break()? {
                    return Ok(());
                }
                self.skip_depth(depth + 1)?;
                if h.major == major::MAP {
                    self.skip_depth(depth + 1)?;
                }
            },
            (major::TAG, Arg::Value(_)) => self.skip_depth(depth + 1),
            (major::SIMPLE, Arg::Value(_)) => Ok(()),
            // A lone break (or indefinite uint/tag, which does not exist).
            _ => Err(CborError::UnexpectedBreak { offset: start }),
        }
    }
}

/// Walks the items of an array, definite or indefinite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seq {
    /// Items left in a definite-length array; `None` for indefinite length.
    left: Option<u64>,
}

impl Seq {
    /// The declared length of a definite-length array, as far as not yet walked.
    pub fn remaining(&self) -> Option<u64> {
        self.left
    }

    pub fn is_indefinite(&self) -> bool {
        self.left.is_none()
    }

    /// True when another item follows (the caller then reads it); false at the
    /// end of the array, whose closing break, if any, is consumed.
    pub fn next(&mut self, r: &mut Reader<'_>) -> Result<bool, CborError> {
        match &mut self.left {
            Some(0) => Ok(false),
            Some(n) => {
                *n -= 1;
                Ok(true)
            }
            None => Ok(!r.read_break()?),
        }
    }
}

// --- Writing -----------------------------------------------------------------

/// Writes a head in its shortest form.
pub fn write_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= 0xffff {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// The encoded length of a head with argument `n`.
pub fn head_len(n: u64) -> usize {
    match n {
        0..=23 => 1,
        24..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

pub fn write_uint(out: &mut Vec<u8>, n: u64) {
    write_head(out, major::UINT, n);
}

/// A signed integer: major type 0 for `n >= 0`, 1 otherwise.
pub fn write_int(out: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        write_head(out, major::UINT, n.unsigned_abs());
    } else {
        // -1 - n, computed without overflow for i64::MIN.
        write_head(out, major::NEGATIVE, (n + 1).unsigned_abs());
    }
}

pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_head(out, major::BYTES, b.len() as u64);
    out.extend_from_slice(b);
}

pub fn write_text(out: &mut Vec<u8>, s: &str) {
    write_head(out, major::TEXT, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A definite-length array head.
pub fn write_array(out: &mut Vec<u8>, len: u64) {
    write_head(out, major::ARRAY, len);
}

pub fn write_bool(out: &mut Vec<u8>, b: bool) {
    out.push(if b { 0xf5 } else { 0xf4 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_at_every_width() {
        for n in [0, 1, 23, 24, 255, 256, 65535, 65536, 0xffff_ffff, 0x1_0000_0000, u64::MAX] {
            let mut out = Vec::new();
            write_uint(&mut out, n);
            assert_eq!(out.len(), head_len(n));
            let mut r = Reader::new(&out);
            assert_eq!(r.read_uint().unwrap(), n);
            assert!(r.is_empty());
        }
    }

    #[test]
    fn accepts_non_shortest_heads() {
        // 1 encoded in 2, 3, 5 and 9 bytes.
        for enc in [&[0x18, 1][..], &[0x19, 0, 1], &[0x1a, 0, 0, 0, 1], &[0x1b, 0, 0, 0, 0, 0, 0, 0, 1]] {
            assert_eq!(Reader::new(enc).read_uint().unwrap(), 1);
        }
        assert_eq!(Reader::new(&[0x58, 1, 0xaa]).read_bytes().unwrap(), &[0xaa]);
    }

    #[test]
    fn rejects_what_bpv7_does_not_use() {
        assert_eq!(Reader::new(&[0x20]).read_uint(), Err(CborError::UnexpectedType { offset: 0, initial: 0x20 }));
        assert_eq!(Reader::new(&[0x1c]).read_uint(), Err(CborError::Reserved { offset: 0 }));
        assert_eq!(Reader::new(&[0x1f]).read_uint(), Err(CborError::UnexpectedBreak { offset: 0 }));
        assert_eq!(Reader::new(&[0x5f, 0x41, 0, 0xff]).read_bytes(), Err(CborError::IndefiniteString { offset: 0 }));
        assert_eq!(Reader::new(&[0x7f, 0xff]).read_text(), Err(CborError::IndefiniteString { offset: 0 }));
        assert_eq!(Reader::new(&[0x62, 0xff, 0xfe]).read_text(), Err(CborError::InvalidUtf8 { offset: 0 }));
        assert!(matches!(Reader::new(&[0x41, 1]).read_text(), Err(CborError::UnexpectedType { .. })));
        assert!(matches!(Reader::new(&[0xc1, 1]).read_uint(), Err(CborError::UnexpectedType { .. })));
    }

    #[test]
    fn lengths_are_checked_before_use() {
        // A byte string claiming 2^64-1 bytes, and one claiming 5 with 1 there.
        let huge = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Reader::new(&huge).read_bytes(),
            Err(CborError::Truncated { offset: 0 } | CborError::TooLong { offset: 0 })
        ));
        let mut r = Reader::new(&[0x45, 1]);
        assert_eq!(r.read_bytes(), Err(CborError::Truncated { offset: 0 }));
        assert_eq!(r.position(), 0);
        // An array claiming 2^32 items of which none is there.
        assert_eq!(Reader::new(&[0x9a, 0xff, 0xff, 0xff, 0xff]).skip_item(), Err(CborError::Truncated { offset: 0 }));
        assert_eq!(Reader::new(&[0x19, 1]).read_uint(), Err(CborError::Truncated { offset: 0 }));
    }

    #[test]
    fn walks_definite_and_indefinite_arrays() {
        for enc in [&[0x82, 1, 2][..], &[0x9f, 1, 2, 0xff]] {
            let mut r = Reader::new(enc);
            let mut seq = r.read_seq().unwrap();
            let mut items = vec![];
            while seq.next(&mut r).unwrap() {
                items.push(r.read_uint().unwrap());
            }
            assert_eq!(items, [1, 2]);
            assert!(r.is_empty());
        }
        let mut r = Reader::new(&[0x9f, 1]);
        let mut seq = r.read_seq().unwrap();
        assert!(seq.next(&mut r).unwrap());
        r.read_uint().unwrap();
        assert_eq!(seq.next(&mut r), Err(CborError::Truncated { offset: 2 }));
    }

    #[test]
    fn skip_is_depth_bounded_and_total() {
        let deep = vec![0x81; 1000];
        assert!(matches!(Reader::new(&deep).skip_item(), Err(CborError::TooDeep { .. })));
        let ok = [0xa1, 0x61, b'k', 0xc0, 0x9f, 0x5f, 0x41, 0, 0xff, 0xf5, 0xfb, 0, 0, 0, 0, 0, 0, 0, 0, 0xff];
        let mut r = Reader::new(&ok);
        r.skip_item().unwrap();
        assert!(r.is_empty());
        for cut in 0..ok.len() {
            assert!(Reader::new(&ok[..cut]).skip_item().is_err());
        }
        assert!(Reader::new(&[0xff]).skip_item().is_err());
        assert!(Reader::new(&[0x5f, 0x61, b'x', 0xff]).skip_item().is_err());
    }

    #[test]
    fn signed_integers_round_trip_and_bound() {
        for n in [0, 1, 23, 24, -1, -24, -25, -25519, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            write_int(&mut out, n);
            let mut r = Reader::new(&out);
            assert_eq!(r.read_int().unwrap(), n);
            assert!(r.is_empty());
        }
        // -2^64 and 2^64-1 do not fit an i64.
        for enc in [
            &[0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
            &[0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(matches!(Reader::new(enc).read_int(), Err(CborError::TooLong { offset: 0 })));
        }
        assert!(Reader::new(&[0x40]).read_int().is_err());
        assert!(Reader::new(&[0x38]).read_int().is_err());
    }

    #[test]
    fn booleans_and_breaks() {
        let mut r = Reader::new(&[0xf5, 0xf4, 0xff]);
        assert!(r.read_bool().unwrap());
        assert!(!r.read_bool().unwrap());
        assert!(r.read_bool().is_err());
        assert!(r.read_break().unwrap());
        assert!(r.read_break().is_err());
    }
}
