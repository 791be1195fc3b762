//! Proactive fragmentation (RFC 9171 §5.8) and ADU reassembly (§5.9).

use crate::bundle::{block_flags, block_types, bundle_flags, Bundle, CanonicalBlock, CrcType, Fragment};
use crate::cbor;
use crate::codec::encode::{canonical_header_len, crc_item_len, encode_canonical_block, encode_primary, PrimaryFields};

/// Why a bundle cannot be fragmented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FragmentError {
    /// The bundle's "must not be fragmented" flag is set (§4.2.3).
    #[error("the bundle must not be fragmented")]
    MustNotFragment,
    /// Even a fragment with a one-byte payload would exceed the size limit.
    #[error("no fragment fits in {max_bundle_size} bytes (at least {needed} needed)")]
    TooSmall { max_bundle_size: usize, needed: usize },
}

/// Why fragments cannot be reassembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReassemblyError {
    /// No fragments were given.
    #[error("no fragments")]
    Empty,
    /// A bundle that is not a fragment.
    #[error("not a fragment")]
    NotAFragment,
    /// Fragments of different ADUs (source, creation timestamp or total ADU length differ).
    #[error("the fragments are not of one ADU")]
    Mismatch,
    /// A fragment's payload lies outside the ADU, or its ranges do not fit its bytes.
    #[error("fragment payload at {offset}+{len} outside the ADU of {total} bytes")]
    OutOfRange { offset: u64, len: u64, total: u64 },
    /// The fragments do not cover the whole ADU.
    #[error("the fragments do not cover the ADU")]
    Incomplete,
}

/// Splits a bundle into fragments of at most `max_bundle_size` encoded bytes
/// each (RFC 9171 §5.8).
///
/// Each fragment's primary block is the original's with IS_FRAGMENT set, the
/// fragment offset and total ADU length, and a new CRC of the original's CRC
/// type; fragmenting a fragment keeps its total ADU length and adds its
/// offset. Extension blocks flagged "replicate in every fragment" go into every
/// fragment (and so does the bundle age block when the creation time is 0),
/// all others into the first only; they are copied verbatim. Each
/// payload block keeps the original's flags and CRC type.
///
/// A bundle that already fits is returned unchanged, as the only element.
/// `bundle` must be what [`decode`](crate::codec::decode) returned for `bytes`.
pub fn fragment(bytes: &[u8], bundle: &Bundle, max_bundle_size: usize) -> Result<Vec<Vec<u8>>, FragmentError> {
    if bytes.len() <= max_bundle_size {
        return Ok(vec![bytes.to_vec()]);
    }
    let p = &bundle.primary;
    if p.flags & bundle_flags::MUST_NOT_FRAGMENT != 0 {
        return Err(FragmentError::MustNotFragment);
    }
    let slice = |r: &std::ops::Range<usize>| bytes.get(r.clone()).unwrap_or_default();
    let payload_block = bundle.payload();
    let payload = slice(&payload_block.data);
    let (base, total) = match p.fragment {
        Some(f) => (f.offset, f.total_adu_len),
        None => (0, payload.len() as u64),
    };
    let extensions = &bundle.blocks[..bundle.blocks.len() - 1];
    // §4.4.2: a bundle whose creation time is 0 must carry a bundle age
    // block, and so must each of its fragments, or receivers discard them.
    let no_clock = p.creation.time == 0;
    let is_replicated = |b: &&CanonicalBlock| {
        b.flags & block_flags::REPLICATE_IN_FRAGMENTS != 0 || (no_clock && b.block_type == block_types::BUNDLE_AGE)
    };
    let all_ext_len: usize = extensions.iter().map(|b| b.range.len()).sum();
    let replicated_len: usize = extensions.iter().filter(is_replicated).map(|b| b.range.len()).sum();
    let payload_fixed =
        canonical_header_len(block_types::PAYLOAD, 1, payload_block.flags) + crc_item_len(payload_block.crc_type);

    let mut fragments = Vec::new();
    let mut primary = Vec::with_capacity(p.range.len() + 20);
    let mut offset = 0usize;
    while offset < payload.len() {
        let first = offset == 0;
        primary.clear();
        let fragment = Fragment { offset: base.saturating_add(offset as u64), total_adu_len: total };
        encode_primary(&mut primary, PrimaryFields::of(&bundle.primary, p.flags, Some(fragment)));
        let fixed = 2 + primary.len() + if first { all_ext_len } else { replicated_len } + payload_fixed;
        let too_small = FragmentError::TooSmall { max_bundle_size, needed: fixed + 2 };
        let avail = max_bundle_size.checked_sub(fixed).ok_or(too_small.clone())?;
        // The largest n with n + head(n) <= avail.
        let mut n = avail.saturating_sub(1);
        while n > 0 && n.saturating_add(cbor::head_len(n as u64)) > avail {
            n -= 1;
        }
        let n = n.min(payload.len() - offset);
        if n == 0 {
            return Err(too_small);
        }
        let mut out = Vec::with_capacity(fixed + 9 + n);
        out.push(cbor::INDEFINITE_ARRAY);
        out.extend_from_slice(&primary);
        for b in extensions.iter().filter(|b| first || is_replicated(b)) {
            out.extend_from_slice(slice(&b.range));
        }
        let chunk = &payload[offset..offset + n];
        encode_canonical_block(&mut out, block_types::PAYLOAD, 1, payload_block.flags, payload_block.crc_type, chunk);
        out.push(cbor::BREAK);
        fragments.push(out);
        offset += n;
    }
    Ok(fragments)
}

/// Reassembles an ADU from decoded fragments (RFC 9171 §5.9), given in any
/// order and possibly overlapping. Returns the bytes of the whole bundle (not
/// a fragment): the primary block of the fragment at offset 0 with the
/// fragment fields removed and a new CRC, that fragment's extension blocks
/// (verbatim), and a payload block with the whole ADU and that fragment's
/// payload flags and CRC type.
pub fn reassemble(fragments: &[(&[u8], &Bundle)]) -> Result<Vec<u8>, ReassemblyError> {
    let (_, head) = fragments.first().ok_or(ReassemblyError::Empty)?;
    let f0 = head.primary.fragment.ok_or(ReassemblyError::NotAFragment)?;
    let total = f0.total_adu_len;
    let mut ranges = Vec::with_capacity(fragments.len());
    let mut first = None;
    for (bytes, b) in fragments {
        let f = b.primary.fragment.ok_or(ReassemblyError::NotAFragment)?;
        if f.total_adu_len != total
            || b.primary.source != head.primary.source
            || b.primary.creation != head.primary.creation
        {
            return Err(ReassemblyError::Mismatch);
        }
        let len = b.payload().data.len() as u64;
        let out_of_range = ReassemblyError::OutOfRange { offset: f.offset, len, total };
        if f.offset.checked_add(len).is_none_or(|end| end > total) || bytes.get(b.payload().data.clone()).is_none() {
            return Err(out_of_range);
        }
        ranges.push((f.offset, len));
        if f.offset == 0 && len > 0 && first.is_none() {
            first = Some((*bytes, *b));
        }
    }
    // Coverage bounds `total` by the sum of the payloads actually given, so
    // the allocation below is no larger than the input.
    if !covers(&ranges, total) {
        return Err(ReassemblyError::Incomplete);
    }
    let total_len = usize::try_from(total).map_err(|_| ReassemblyError::Incomplete)?;
    let mut adu = vec![0u8; total_len];
    for ((bytes, b), (offset, len)) in fragments.iter().zip(&ranges) {
        // Checked above: offset + len <= total, and the payload range is in `bytes`.
        let (Ok(offset), Ok(len)) = (usize::try_from(*offset), usize::try_from(*len)) else {
            return Err(ReassemblyError::Incomplete);
        };
        let src = bytes.get(b.payload().data.clone()).unwrap_or_default();
        if let (Some(dst), true) = (adu.get_mut(offset..offset + len), src.len() == len) {
            dst.copy_from_slice(src);
        }
    }

    // `covers` succeeded with total > 0, so some fragment starts at offset 0.
    let Some((bytes, b)) = first else {
        return Err(ReassemblyError::Incomplete);
    };
    let p = &b.primary;
    let mut fields = PrimaryFields::of(&b.primary, p.flags & !bundle_flags::IS_FRAGMENT, None);
    if fields.crc_type == CrcType::None {
        // A BIB over the fragment's primary block no longer applies to the
        // reassembled one, which therefore needs its own CRC (§4.3.1).
        fields.crc_type = CrcType::Crc32c;
    }
    let payload_block = b.payload();
    let mut out = Vec::with_capacity(bytes.len() + adu.len() + 32);
    out.push(cbor::INDEFINITE_ARRAY);
    encode_primary(&mut out, fields);
    for blk in &b.blocks[..b.blocks.len() - 1] {
        out.extend_from_slice(bytes.get(blk.range.clone()).unwrap_or_default());
    }
    encode_canonical_block(&mut out, block_types::PAYLOAD, 1, payload_block.flags, payload_block.crc_type, &adu);
    out.push(cbor::BREAK);
    Ok(out)
}

/// True when the union of the ranges `[offset, offset + len)` covers `0..total`.
pub fn covers(ranges: &[(u64, u64)], total: u64) -> bool {
    let mut sorted: Vec<(u64, u64)> = ranges.iter().filter(|r| r.1 > 0).copied().collect();
    sorted.sort_unstable();
    let mut covered = 0u64;
    for (offset, len) in sorted {
        if covered >= total {
            break;
        }
        if offset > covered {
            return false;
        }
        covered = covered.max(offset.saturating_add(len));
    }
    covered >= total
}
