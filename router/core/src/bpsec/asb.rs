//! The Abstract Security Block (RFC 9172 §3.6): the block-type-specific data
//! of every BIB and BCB.
//!
//! On the wire it is not one CBOR item but a sequence of them inside the
//! block's byte string: targets, security context ID, security context flags,
//! security source, parameters (only when flag bit 0 is set), results.
//! Parameter and result values are whatever CBOR item their context defines;
//! [`Asb::parse`] checks that each is one well-formed item and keeps its bytes
//! for the context to read.
//!
//! Parsing follows [`crate::cbor`]: every count is checked against a limit
//! and against the bytes left before anything is allocated, nesting is
//! bounded, and malformed input is an [`AsbError`], never a panic.

use crate::cbor::{self, CborError, Reader, Seq};
use crate::codec::{decode_eid, encode_eid, EidDecodeError};
use crate::eid::Eid;

/// The most targets one security block may name here. A bundle has at most
/// [`crate::codec::MAX_BLOCKS`] canonical blocks plus its primary block.
pub const MAX_TARGETS: usize = crate::codec::MAX_BLOCKS + 1;
/// The most parameters, and the most results per target, one block may carry
/// (a resource bound of ours; the RFC 9173 contexts define at most four).
pub const MAX_ITEMS: usize = 64;

/// Security context flags (RFC 9172 §3.6).
pub mod context_flags {
    /// Bit 0: the security context parameters field is present.
    pub const PARAMETERS_PRESENT: u64 = 0x01;
}

/// One security context parameter or security result: `[id, value]`, the
/// value kept as the bytes of its single CBOR item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityItem {
    pub id: u64,
    /// One encoded CBOR item.
    pub value: Vec<u8>,
}

impl SecurityItem {
    /// An item whose value is a byte string.
    pub fn bytes(id: u64, value: &[u8]) -> SecurityItem {
        let mut v = Vec::with_capacity(value.len() + 9);
        cbor::write_bytes(&mut v, value);
        SecurityItem { id, value: v }
    }

    /// An item whose value is an unsigned integer.
    pub fn uint(id: u64, value: u64) -> SecurityItem {
        let mut v = Vec::with_capacity(9);
        cbor::write_uint(&mut v, value);
        SecurityItem { id, value: v }
    }

    /// The value as a byte string, if it is exactly one.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        let mut r = Reader::new(&self.value);
        let b = r.read_bytes().ok()?;
        r.is_empty().then_some(b)
    }

    /// The value as an unsigned integer, if it is exactly one.
    pub fn as_uint(&self) -> Option<u64> {
        let mut r = Reader::new(&self.value);
        let n = r.read_uint().ok()?;
        r.is_empty().then_some(n)
    }
}

/// A decoded abstract security block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asb {
    /// Block numbers of the security targets (0 is the primary block), in the
    /// order the results follow; at least one, none twice.
    pub targets: Vec<u64>,
    /// Security context ID: positive IDs are IANA-assigned (1 BIB-HMAC-SHA2,
    /// 2 BCB-AES-GCM), negative ones private or experimental.
    pub context_id: i64,
    /// Security context flags. [`Asb::emit`] sets bit 0 from `parameters`.
    pub flags: u64,
    /// The security source: the node that added the operation.
    pub source: Eid,
    pub parameters: Vec<SecurityItem>,
    /// One list of results per target, in target order.
    pub results: Vec<Vec<SecurityItem>>,
}

/// Which list of an ASB an [`AsbError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AsbField {
    Targets,
    Parameters,
    Results,
}

/// Why block-type-specific data is not an abstract security block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AsbError {
    /// Malformed or truncated CBOR, or an item of the wrong type.
    #[error("{0}")]
    Cbor(#[from] CborError),
    /// The target list is empty (RFC 9172 §3.6: at least one entry).
    #[error("an abstract security block has no targets")]
    NoTargets,
    /// A block number appears twice in the target list (§3.6).
    #[error("security target {target} is listed twice")]
    DuplicateTarget { target: u64 },
    /// A list longer than [`MAX_TARGETS`] or [`MAX_ITEMS`].
    #[error("more than {limit} {field:?}")]
    TooMany { field: AsbField, limit: usize },
    /// The security source is not an EID.
    #[error("security source: {0}")]
    Source(EidDecodeError),
    /// A parameter or result that is not `[id, value]`.
    #[error("{field:?} entry at offset {offset} is not [id, value]")]
    ItemShape { field: AsbField, offset: usize },
    /// A parameter ID given twice, or a result ID twice for one target.
    #[error("{field:?} id {id} is given twice")]
    DuplicateId { field: AsbField, id: u64 },
    /// The number of result lists differs from the number of targets (§3.6).
    #[error("{results} result sets for {targets} targets")]
    ResultCount { targets: usize, results: usize },
    /// Bytes follow the results.
    #[error("{len} trailing bytes after the security results at offset {offset}")]
    TrailingBytes { offset: usize, len: usize },
}

impl Asb {
    /// Decodes block-type-specific data as an ASB.
    pub fn parse(data: &[u8]) -> Result<Asb, AsbError> {
        let mut r = Reader::new(data);
        let mut seq = bounded_seq(&mut r, AsbField::Targets, MAX_TARGETS)?;
        let mut targets = Vec::new();
        while seq.next(&mut r)? {
            if targets.len() == MAX_TARGETS {
                return Err(AsbError::TooMany { field: AsbField::Targets, limit: MAX_TARGETS });
            }
            let t = r.read_uint()?;
            if targets.contains(&t) {
                return Err(AsbError::DuplicateTarget { target: t });
            }
            targets.push(t);
        }
        if targets.is_empty() {
            return Err(AsbError::NoTargets);
        }
        let context_id = r.read_int()?;
        let flags = r.read_uint()?;
        let source = decode_eid(&mut r).map_err(AsbError::Source)?;
        let parameters = if flags & context_flags::PARAMETERS_PRESENT != 0 {
            read_items(&mut r, AsbField::Parameters)?
        } else {
            Vec::new()
        };
        let mut seq = bounded_seq(&mut r, AsbField::Results, MAX_TARGETS)?;
        let mut results = Vec::new();
        while seq.next(&mut r)? {
            if results.len() == targets.len() {
                return Err(AsbError::ResultCount { targets: targets.len(), results: results.len() + 1 });
            }
            results.push(read_items(&mut r, AsbField::Results)?);
        }
        if results.len() != targets.len() {
            return Err(AsbError::ResultCount { targets: targets.len(), results: results.len() });
        }
        if !r.is_empty() {
            return Err(AsbError::TrailingBytes { offset: r.position(), len: r.remaining() });
        }
        Ok(Asb { targets, context_id, flags, source, parameters, results })
    }

    /// Appends the encoding (shortest CBOR heads, definite-length arrays).
    pub fn emit(&self, out: &mut Vec<u8>) {
        cbor::write_array(out, self.targets.len() as u64);
        for t in &self.targets {
            cbor::write_uint(out, *t);
        }
        cbor::write_int(out, self.context_id);
        let flags = if self.parameters.is_empty() {
            self.flags & !context_flags::PARAMETERS_PRESENT
        } else {
            self.flags | context_flags::PARAMETERS_PRESENT
        };
        cbor::write_uint(out, flags);
        encode_eid(out, &self.source);
        if !self.parameters.is_empty() {
            write_items(out, &self.parameters);
        }
        cbor::write_array(out, self.results.len() as u64);
        for r in &self.results {
            write_items(out, r);
        }
    }

    /// The encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.emit(&mut out);
        out
    }

    /// The parameter with this ID.
    pub fn parameter(&self, id: u64) -> Option<&SecurityItem> {
        self.parameters.iter().find(|p| p.id == id)
    }

    /// The result with this ID for the target at `index`.
    pub fn result(&self, index: usize, id: u64) -> Option<&SecurityItem> {
        self.results.get(index)?.iter().find(|r| r.id == id)
    }
}

/// An array head whose definite length is checked against `limit` and
/// against the bytes left (every entry takes at least one byte).
fn bounded_seq(r: &mut Reader<'_>, field: AsbField, limit: usize) -> Result<Seq, AsbError> {
    let at = r.position();
    let seq = r.read_seq()?;
    if let Some(n) = seq.remaining() {
        if n > limit as u64 {
            return Err(AsbError::TooMany { field, limit });
        }
        if n > r.remaining() as u64 {
            return Err(CborError::Truncated { offset: at }.into());
        }
    }
    Ok(seq)
}

/// `[[id, value], ...]` with unique IDs.
fn read_items(r: &mut Reader<'_>, field: AsbField) -> Result<Vec<SecurityItem>, AsbError> {
    let mut seq = bounded_seq(r, field, MAX_ITEMS)?;
    let mut items: Vec<SecurityItem> = Vec::new();
    while seq.next(r)? {
        if items.len() == MAX_ITEMS {
            return Err(AsbError::TooMany { field, limit: MAX_ITEMS });
        }
        let offset = r.position();
        let shape = AsbError::ItemShape { field, offset };
        let mut pair = r.read_seq()?;
        if !pair.next(r)? {
            return Err(shape);
        }
        let id = r.read_uint()?;
        if !pair.next(r)? {
            return Err(shape);
        }
        let start = r.position();
        r.skip_item()?;
        let value = r.buf().get(start..r.position()).unwrap_or_default().to_vec();
        if pair.next(r)? {
            return Err(shape);
        }
        if items.iter().any(|i| i.id == id) {
            return Err(AsbError::DuplicateId { field, id });
        }
        items.push(SecurityItem { id, value });
    }
    Ok(items)
}

fn write_items(out: &mut Vec<u8>, items: &[SecurityItem]) {
    cbor::write_array(out, items.len() as u64);
    for i in items {
        cbor::write_array(out, 2);
        cbor::write_uint(out, i.id);
        out.extend_from_slice(&i.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 9173 Appendix A.1.3.2: the BIB's abstract security block.
    const A1_ASB: &str = "810101018202820201828201078203008181820158403bdc69b3a34a2b5d3a8554368bd1e808f606219d2a10a846eae3886ae4ecc83c4ee550fdfb1cc636b904e2f1a73e303dcd4b6ccece003e95e8164dcc89a156e1";

    #[test]
    fn rfc9173_a1_asb_round_trips() {
        let bytes = hex(A1_ASB);
        let asb = Asb::parse(&bytes).unwrap();
        assert_eq!(asb.targets, [1]);
        assert_eq!(asb.context_id, 1);
        assert_eq!(asb.source, "ipn:2.1".parse().unwrap());
        assert_eq!(asb.parameter(1).and_then(SecurityItem::as_uint), Some(7));
        assert_eq!(asb.parameter(3).and_then(SecurityItem::as_uint), Some(0));
        assert_eq!(asb.result(0, 1).and_then(SecurityItem::as_bytes).map(<[u8]>::len), Some(64));
        assert_eq!(asb.to_bytes(), bytes);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = hex(A1_ASB);
        for cut in 0..bytes.len() {
            assert!(Asb::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn malformed_blocks_are_typed_errors() {
        let ok = Asb {
            targets: vec![1, 2],
            context_id: -25519,
            flags: context_flags::PARAMETERS_PRESENT,
            source: "ipn:2.1".parse().unwrap(),
            parameters: vec![SecurityItem::uint(1, 7)],
            results: vec![vec![SecurityItem::bytes(1, &[1, 2])], vec![]],
        };
        let bytes = ok.to_bytes();
        assert_eq!(Asb::parse(&bytes).unwrap(), ok);

        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(Asb::parse(&trailing), Err(AsbError::TrailingBytes { .. })));

        let no_targets = Asb { targets: vec![], results: vec![], ..ok.clone() }.to_bytes();
        assert_eq!(Asb::parse(&no_targets), Err(AsbError::NoTargets));

        let dup = Asb { targets: vec![1, 1], ..ok.clone() }.to_bytes();
        assert_eq!(Asb::parse(&dup), Err(AsbError::DuplicateTarget { target: 1 }));

        let few = Asb { results: vec![vec![]], ..ok.clone() }.to_bytes();
        assert_eq!(Asb::parse(&few), Err(AsbError::ResultCount { targets: 2, results: 1 }));
        let many = Asb { results: vec![vec![], vec![], vec![]], ..ok.clone() }.to_bytes();
        assert!(matches!(Asb::parse(&many), Err(AsbError::ResultCount { .. })));

        let dup_param =
            Asb { parameters: vec![SecurityItem::uint(1, 7), SecurityItem::uint(1, 6)], ..ok.clone() }.to_bytes();
        assert!(matches!(Asb::parse(&dup_param), Err(AsbError::DuplicateId { .. })));

        // A target count far beyond the bytes present fails before allocating.
        assert!(Asb::parse(&[0x9a, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(matches!(
            Asb::parse(&[0x9b, 0, 0, 0, 1, 0, 0, 0, 0]),
            Err(AsbError::TooMany { field: AsbField::Targets, .. })
        ));
        // A parameter that is not [id, value].
        let mut shape = Vec::new();
        shape.extend_from_slice(&[0x81, 0x01, 0x01, 0x01, 0x82, 0x02, 0x82, 0x02, 0x01]);
        shape.extend_from_slice(&[0x81, 0x81, 0x01, 0x80]);
        assert!(matches!(Asb::parse(&shape), Err(AsbError::ItemShape { .. })));
        // Deeply nested parameter values are bounded.
        let mut deep = vec![0x81, 0x01, 0x01, 0x01, 0x82, 0x02, 0x82, 0x02, 0x01, 0x81, 0x82, 0x01];
        deep.extend(std::iter::repeat_n(0x81, 100));
        deep.push(0x00);
        assert!(Asb::parse(&deep).is_err());
        // A context ID beyond i64.
        let big = [0x81, 0x01, 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(Asb::parse(&big), Err(AsbError::Cbor(CborError::TooLong { .. }))));
    }
}
