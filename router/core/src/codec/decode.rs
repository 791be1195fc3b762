//! Strict decoding and validation of a bundle (RFC 9171 §4), in one pass.

use crate::bundle::{
    block_flags, block_types, bundle_flags, Bundle, CanonicalBlock, CrcType, CreationTimestamp, Fragment, HopCount,
    PrimaryBlock,
};
use crate::cbor::{self, major, Arg, CborError, Reader, Seq};
use crate::codec::{decode_eid, decode_eid_exact, DecodeError, EidField};
use crate::crc;
use crate::eid::Eid;

/// The most canonical blocks a bundle may have here. RFC 9171 sets no limit;
/// this bounds the work and memory one bundle can cost.
pub const MAX_BLOCKS: usize = 1024;

/// CBOR tag 24, "encoded CBOR data item": RFC 9171 Appendix B allows it on
/// block-type-specific data (`bstr / #6.24(bstr)`), and HDTN and Hardy accept it.
const TAG_ENCODED_CBOR: u64 = 24;

/// Decodes and validates a bundle.
///
/// The verdict follows RFC 9171 and is never stricter than it: unknown bundle
/// and block flags are ignored (§4.2.3, §4.2.4), unknown block types are
/// listed in [`Bundle::unsupported_blocks`] for the node to handle per their
/// flags, non-shortest CBOR heads and indefinite-length block arrays are
/// accepted, and a hop count above its limit is left for the node to act on.
/// Block type 0 (reserved) is handled like any unknown type, and block data
/// tagged 24 is accepted (Appendix B). What it does enforce, each a
/// [`DecodeError`] variant: the §4.3.1 element counts and version 7, CRC
/// types 0–2 and every CRC (over the bytes as received), a primary CRC unless
/// a BIB is present, the §4.2.3 rules for admin records and dtn:none sources
/// (no report requests; must-not-fragment set) and the §4.2.4 block flag rule,
/// block numbering and a single, last payload block (§4.1), definite-length
/// byte-string block data (§4.3.2), the §4.4 extension block rules, and a
/// fragment's payload lying within its ADU.
///
/// The bundle itself must be an indefinite-length array: §4.1 says it "SHALL
/// be ... represented as a CBOR indefinite-length array", and a definite-length
/// one (or one wrapped in the self-describe tag of the informative CDDL) is
/// the kind of non-conformant input §4.1 lets an implementation discard.
pub fn decode(bytes: &[u8]) -> Result<Bundle, DecodeError> {
    decode_with(bytes, &DecodeOptions::default())
}

/// Departures from the strict verdict of [`decode`], for interoperating with
/// peers that break a rule. The default is strict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// Accept a primary block with CRC type 0 in a bundle without a BIB, which
    /// RFC 9171 §4.3.1 forbids. dtn7-rs (bp7) sends such bundles by default.
    pub allow_unprotected_primary: bool,
    /// Accept creation time 0 without a bundle age block, which RFC 9171
    /// §4.4.2 forbids. The worked examples of RFC 9173 Appendix A are such
    /// bundles (creation time 0, no age block).
    pub allow_missing_bundle_age: bool,
}

impl DecodeOptions {
    /// The strict options of [`decode`].
    pub fn strict() -> DecodeOptions {
        DecodeOptions::default()
    }

    pub fn allow_unprotected_primary(mut self, allow: bool) -> DecodeOptions {
        self.allow_unprotected_primary = allow;
        self
    }

    pub fn allow_missing_bundle_age(mut self, allow: bool) -> DecodeOptions {
        self.allow_missing_bundle_age = allow;
        self
    }
}

/// [`decode`] with [`DecodeOptions`].
pub fn decode_with(bytes: &[u8], options: &DecodeOptions) -> Result<Bundle, DecodeError> {
    let mut r = Reader::new(bytes);
    match r.peek() {
        Some(cbor::INDEFINITE_ARRAY) => {
            r.take(1)?;
        }
        Some(initial) => return Err(DecodeError::NotIndefiniteArray { initial }),
        None => return Err(CborError::Truncated { offset: 0 }.into()),
    }

    let primary = decode_primary(&mut r)?;
    let p_flags = primary.flags;
    if p_flags & bundle_flags::REPORT_ANY != 0
        && (primary.source.is_null() || p_flags & bundle_flags::ADMIN_RECORD != 0)
    {
        return Err(DecodeError::StatusReportsForbidden { flags: p_flags });
    }
    if primary.source.is_null() && p_flags & bundle_flags::MUST_NOT_FRAGMENT == 0 {
        return Err(DecodeError::AnonymousFragmentable);
    }
    // §4.2.4: no "report if unprocessable" block flag in these bundles.
    let no_block_reports = primary.source.is_null() || p_flags & bundle_flags::ADMIN_RECORD != 0;

    let mut blocks: Vec<CanonicalBlock> = Vec::with_capacity(4);
    let mut previous_node = None;
    let mut bundle_age_ms = None;
    let mut hop_count = None;
    let mut copy_count = None;
    let mut unsupported_blocks = Vec::new();
    let mut has_bib = false;
    let mut payload_seen = false;

    loop {
        if r.read_break()? {
            break;
        }
        if blocks.len() == MAX_BLOCKS {
            return Err(DecodeError::TooManyBlocks { limit: MAX_BLOCKS });
        }
        let block = decode_canonical(&mut r)?;
        let (block_type, number) = (block.block_type, block.number);

        let number_ok = match block_type {
            block_types::PAYLOAD => number == 1,
            _ => number > 1,
        };
        if !number_ok {
            return Err(DecodeError::InvalidBlockNumber { block_type, block_number: number });
        }
        if payload_seen {
            return Err(if block_type == block_types::PAYLOAD {
                DecodeError::DuplicatePayload
            } else {
                DecodeError::PayloadNotLast { block_number: number }
            });
        }
        // Few blocks in practice: a scan beats hashing. MAX_BLOCKS bounds the worst case.
        if blocks.iter().any(|b| b.number == number) {
            return Err(DecodeError::DuplicateBlockNumber { block_number: number });
        }
        if no_block_reports && block.flags & block_flags::REPORT_IF_UNPROCESSABLE != 0 {
            return Err(DecodeError::BlockStatusReportForbidden { block_number: number });
        }

        let data = &bytes[block.data.clone()];
        let unintelligible = || DecodeError::ExtensionBlockContent { block_type, block_number: number };
        match block_type {
            block_types::PAYLOAD => payload_seen = true,
            block_types::PREVIOUS_NODE => {
                if previous_node.is_some() {
                    return Err(DecodeError::DuplicateExtensionBlock { block_type });
                }
                previous_node = Some(decode_eid_exact(data).map_err(|_| unintelligible())?);
            }
            block_types::BUNDLE_AGE => {
                if bundle_age_ms.is_some() {
                    return Err(DecodeError::DuplicateExtensionBlock { block_type });
                }
                bundle_age_ms = Some(decode_uint_exact(data).ok_or_else(unintelligible)?);
            }
            block_types::HOP_COUNT => {
                if hop_count.is_some() {
                    return Err(DecodeError::DuplicateExtensionBlock { block_type });
                }
                let hc = decode_hop_count(data).ok_or_else(unintelligible)?;
                if !(1..=255).contains(&hc.limit) {
                    return Err(DecodeError::HopLimitOutOfRange { limit: hc.limit });
                }
                hop_count = Some(hc);
            }
            block_types::COPY_COUNT => {
                if copy_count.is_some() {
                    return Err(DecodeError::DuplicateExtensionBlock { block_type });
                }
                copy_count = Some(decode_uint_exact(data).ok_or_else(unintelligible)?);
            }
            _ => {
                // BIB (11), BCB (12) and every type we do not know: not parsed
                // here; the node applies their block processing flags.
                has_bib |= block_type == block_types::BIB;
                unsupported_blocks.push(number);
            }
        }
        blocks.push(block);
    }
    if !r.is_empty() {
        return Err(DecodeError::TrailingBytes { offset: r.position(), len: r.remaining() });
    }
    if !payload_seen {
        return Err(DecodeError::MissingPayload);
    }
    // §4.3.1: the primary block MAY go without a CRC only if a BIB targets it.
    // We do not parse BIBs (an encrypted BIB cannot be read anyway), so any
    // BIB is taken as possibly protecting it: never stricter than the RFC.
    if primary.crc_type == CrcType::None && !has_bib && !options.allow_unprotected_primary {
        return Err(DecodeError::PrimaryCrcMissing);
    }
    if primary.creation.time == 0 && bundle_age_ms.is_none() && !options.allow_missing_bundle_age {
        return Err(DecodeError::MissingBundleAge);
    }
    if let (Some(f), Some(payload)) = (primary.fragment, blocks.last()) {
        let payload_len = payload.data.len() as u64;
        if f.offset.checked_add(payload_len).is_none_or(|end| end > f.total_adu_len) {
            return Err(DecodeError::FragmentOutOfRange {
                offset: f.offset,
                payload_len,
                total_adu_len: f.total_adu_len,
            });
        }
    }

    Ok(Bundle { primary, blocks, previous_node, bundle_age_ms, hop_count, copy_count, unsupported_blocks })
}

/// Requires another element in a block array, or fails with `err`.
fn need(seq: &mut Seq, r: &mut Reader<'_>, err: impl Fn() -> DecodeError) -> Result<(), DecodeError> {
    if seq.next(r)? {
        Ok(())
    } else {
        Err(err())
    }
}

fn decode_primary(r: &mut Reader<'_>) -> Result<PrimaryBlock, DecodeError> {
    let start = r.position();
    let shape = || DecodeError::PrimaryBlockLength { offset: start };
    let mut seq = r.read_seq()?;
    if seq.remaining().is_some_and(|n| !(8..=11).contains(&n)) {
        return Err(shape());
    }
    need(&mut seq, r, shape)?;
    let version = r.read_uint()?;
    if version != 7 {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    need(&mut seq, r, shape)?;
    let flags = r.read_uint()?;
    need(&mut seq, r, shape)?;
    let crc_type = read_crc_type(r, 0)?;
    need(&mut seq, r, shape)?;
    let destination = read_eid(r, EidField::Destination)?;
    need(&mut seq, r, shape)?;
    let source = read_eid(r, EidField::Source)?;
    need(&mut seq, r, shape)?;
    let report_to = read_eid(r, EidField::ReportTo)?;
    need(&mut seq, r, shape)?;
    let creation = read_creation(r)?;
    need(&mut seq, r, shape)?;
    let lifetime_ms = r.read_uint()?;
    // §4.3.1: the fragment fields are there if and only if the flag says so.
    let fragment = if flags & bundle_flags::IS_FRAGMENT != 0 {
        need(&mut seq, r, shape)?;
        let offset = r.read_uint()?;
        need(&mut seq, r, shape)?;
        let total_adu_len = r.read_uint()?;
        Some(Fragment { offset, total_adu_len })
    } else {
        None
    };
    let crc_at = if crc_type != CrcType::None {
        need(&mut seq, r, shape)?;
        Some(read_crc_value(r, crc_type, 0)?)
    } else {
        None
    };
    if seq.next(r)? {
        return Err(shape());
    }
    let range = start..r.position();
    if let Some((at, received)) = crc_at {
        check_crc(r.buf(), crc_type, &range, at, received, 0)?;
    }
    // EID errors count only once the CRC has vouched for the bytes: a
    // corrupted destination is a damaged block, not an unintelligible EID.
    let (destination, source, report_to) = (destination?, source?, report_to?);
    Ok(PrimaryBlock { flags, crc_type, destination, source, report_to, creation, lifetime_ms, fragment, range })
}

fn decode_canonical(r: &mut Reader<'_>) -> Result<CanonicalBlock, DecodeError> {
    let start = r.position();
    let shape = || DecodeError::BlockLength { offset: start };
    let mut seq = r.read_seq()?;
    if seq.remaining().is_some_and(|n| n != 5 && n != 6) {
        return Err(shape());
    }
    need(&mut seq, r, shape)?;
    let block_type = r.read_uint()?;
    need(&mut seq, r, shape)?;
    let number = r.read_uint()?;
    need(&mut seq, r, shape)?;
    let flags = r.read_uint()?;
    need(&mut seq, r, shape)?;
    let crc_type = read_crc_type(r, number)?;
    need(&mut seq, r, shape)?;
    let data = read_block_data(r, number)?;
    let crc_at = if crc_type != CrcType::None {
        need(&mut seq, r, shape)?;
        Some(read_crc_value(r, crc_type, number)?)
    } else {
        None
    };
    if seq.next(r)? {
        return Err(shape());
    }
    let range = start..r.position();
    if let Some((at, received)) = crc_at {
        check_crc(r.buf(), crc_type, &range, at, received, number)?;
    }
    Ok(CanonicalBlock { block_type, number, flags, crc_type, data, range })
}

/// Reads an EID. A well-formed CBOR item that is not a valid EID is skipped
/// and its error returned in the inner `Result`, to be reported after the
/// block's CRC has been checked.
fn read_eid(r: &mut Reader<'_>, field: EidField) -> Result<Result<Eid, DecodeError>, DecodeError> {
    let mut probe = r.clone();
    match decode_eid(&mut probe) {
        Ok(eid) => {
            *r = probe;
            Ok(Ok(eid))
        }
        Err(error) => {
            r.skip_item()?;
            Ok(Err(DecodeError::Eid { field, error }))
        }
    }
}

fn read_creation(r: &mut Reader<'_>) -> Result<CreationTimestamp, DecodeError> {
    let offset = r.position();
    let shape = || DecodeError::CreationTimestamp { offset };
    let mut seq = r.read_seq()?;
    need(&mut seq, r, shape)?;
    let time = r.read_uint()?;
    need(&mut seq, r, shape)?;
    let seq_no = r.read_uint()?;
    if seq.next(r)? {
        return Err(shape());
    }
    Ok(CreationTimestamp { time, seq: seq_no })
}

fn read_crc_type(r: &mut Reader<'_>, block_number: u64) -> Result<CrcType, DecodeError> {
    let code = r.read_uint()?;
    CrcType::from_code(code).ok_or(DecodeError::InvalidCrcType { block_number, crc_type: code })
}

/// Reads the CRC byte string; returns where its value starts and the value.
fn read_crc_value(r: &mut Reader<'_>, crc_type: CrcType, block_number: u64) -> Result<(usize, u32), DecodeError> {
    let range = r.read_bytes_range()?;
    let value = crc::read_value(crc_type, &r.buf()[range.clone()])
        .ok_or(DecodeError::CrcValueLength { block_number, len: range.len() })?;
    Ok((range.start, value))
}

fn check_crc(
    buf: &[u8],
    crc_type: CrcType,
    block: &std::ops::Range<usize>,
    value_at: usize,
    received: u32,
    block_number: u64,
) -> Result<(), DecodeError> {
    // The ranges come from the reader, so they are inside `buf`; the `get`s
    // keep that an invariant rather than a panic.
    let computed = buf
        .get(block.clone())
        .and_then(|b| crc::block_crc(crc_type, b, value_at - block.start))
        .ok_or(CborError::Truncated { offset: block.start })?;
    if computed != received {
        return Err(DecodeError::CrcMismatch { block_number, received, computed });
    }
    Ok(())
}

/// The block-type-specific data: a definite-length byte string (§4.3.2),
/// optionally tagged 24 (Appendix B).
fn read_block_data(r: &mut Reader<'_>, block_number: u64) -> Result<std::ops::Range<usize>, DecodeError> {
    let offset = r.position();
    let not_bytes = DecodeError::BlockDataNotByteString { block_number, offset };
    let mut initial = r.peek().ok_or(CborError::Truncated { offset })?;
    if initial >> 5 == major::TAG {
        let head = r.head()?;
        if head.arg != Arg::Value(TAG_ENCODED_CBOR) {
            return Err(not_bytes);
        }
        initial = r.peek().ok_or(CborError::Truncated { offset: r.position() })?;
    }
    if initial >> 5 != major::BYTES {
        return Err(not_bytes);
    }
    match r.read_bytes_range() {
        Ok(range) => Ok(range),
        Err(CborError::IndefiniteString { .. }) => Err(not_bytes),
        Err(e) => Err(e.into()),
    }
}

/// An unsigned integer that is all of `data` (bundle age, §4.4.2).
fn decode_uint_exact(data: &[u8]) -> Option<u64> {
    let mut r = Reader::new(data);
    let n = r.read_uint().ok()?;
    r.is_empty().then_some(n)
}

/// `[limit, count]`, all of `data` (§4.4.3).
fn decode_hop_count(data: &[u8]) -> Option<HopCount> {
    let mut r = Reader::new(data);
    let mut seq = r.read_seq().ok()?;
    if !seq.next(&mut r).ok()? {
        return None;
    }
    let limit = r.read_uint().ok()?;
    if !seq.next(&mut r).ok()? {
        return None;
    }
    let count = r.read_uint().ok()?;
    if seq.next(&mut r).ok()? || !r.is_empty() {
        return None;
    }
    Some(HopCount { limit, count })
}
