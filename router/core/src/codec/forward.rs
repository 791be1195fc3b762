//! Rewriting a stored bundle for forwarding (RFC 9171 §5.4 step 4).

use crate::bundle::{block_flags, block_types, Bundle, CrcType, HopCount};
use crate::cbor;
use crate::codec::encode::{encode_canonical_block, encode_hop_count};
use crate::codec::encode_eid;
use crate::eid::Eid;

/// The changes forwarding makes to a bundle's extension blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardEdit {
    /// The forwarding node's ID, for the previous node block that replaces any
    /// the bundle has, or is inserted (RFC 9171 §4.4.1, §5.4 step 4).
    pub previous_node: Eid,
    /// New bundle age (§4.4.2): present if the bundle has an age block or its
    /// creation time is 0.
    pub bundle_age_ms: Option<u64>,
    /// New hop count block content (§4.4.3), if the bundle has one.
    pub hop_count: Option<HopCount>,
    /// Numbers of blocks to remove (unsupported blocks flagged "discard").
    pub discard_blocks: Vec<u64>,
    /// Copies the receiving node gets (spray-and-wait): the copy count block
    /// is replaced or inserted with this value, or left out when `None` (a
    /// count is only meaningful from the router that hands the copies over).
    pub copies: Option<u64>,
}

/// Re-encodes a stored (already validated) bundle for forwarding.
///
/// The primary block is copied verbatim (it is immutable in transit, §4.3.1);
/// so is every block that does not change, the payload block included (one
/// copy). The previous node block is replaced in place, keeping its number,
/// flags and CRC type, or inserted before the payload with the next free
/// number and the payload block's CRC type. The bundle age and hop count
/// blocks are re-encoded with their new values and a fresh CRC of their own
/// CRC type, or inserted the same way when the bundle has none and the edit
/// gives a value. Blocks in `discard_blocks` are left out (the payload block
/// never is). The copy count block carries `copies` or is left out.
///
/// `bundle` must be what [`decode`](crate::codec::decode) returned for `bytes`.
/// If it is not, the output is not a valid bundle, but nothing panics.
pub fn rewrite_for_forward(bytes: &[u8], bundle: &Bundle, edit: &ForwardEdit) -> Vec<u8> {
    let slice = |r: &std::ops::Range<usize>| bytes.get(r.clone()).unwrap_or_default();
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut data = Vec::with_capacity(64);
    out.push(cbor::INDEFINITE_ARRAY);
    out.extend_from_slice(slice(&bundle.primary.range));

    let mut next_number = bundle.blocks.iter().map(|b| b.number).max().unwrap_or(1).max(1);
    let mut alloc_number = || {
        next_number = next_number.saturating_add(1);
        next_number
    };
    let (mut wrote_previous, mut has_age, mut has_hop_count, mut has_copies) = (false, false, false, false);
    let payload = bundle.blocks.last().filter(|b| b.block_type == block_types::PAYLOAD);
    let payload_crc = payload.map_or(CrcType::Crc32c, |b| b.crc_type);

    for b in &bundle.blocks {
        if b.block_type == block_types::PAYLOAD {
            continue;
        }
        has_age |= b.block_type == block_types::BUNDLE_AGE;
        has_hop_count |= b.block_type == block_types::HOP_COUNT;
        has_copies |= b.block_type == block_types::COPY_COUNT && edit.copies.is_some();
        if edit.discard_blocks.contains(&b.number) {
            continue;
        }
        match b.block_type {
            block_types::PREVIOUS_NODE if !wrote_previous => {
                data.clear();
                encode_eid(&mut data, &edit.previous_node);
                encode_canonical_block(&mut out, b.block_type, b.number, b.flags, b.crc_type, &data);
                wrote_previous = true;
            }
            // A second one cannot come out of `decode`; never copy it.
            block_types::PREVIOUS_NODE => {}
            block_types::BUNDLE_AGE if edit.bundle_age_ms.is_some() => {
                data.clear();
                cbor::write_uint(&mut data, edit.bundle_age_ms.unwrap_or_default());
                encode_canonical_block(&mut out, b.block_type, b.number, b.flags, b.crc_type, &data);
            }
            block_types::HOP_COUNT if edit.hop_count.is_some() => {
                let hc = edit.hop_count.unwrap_or(HopCount { limit: 1, count: 0 });
                data.clear();
                encode_hop_count(&mut data, hc.limit, hc.count);
                encode_canonical_block(&mut out, b.block_type, b.number, b.flags, b.crc_type, &data);
            }
            block_types::COPY_COUNT => {
                if let Some(n) = edit.copies {
                    data.clear();
                    cbor::write_uint(&mut data, n);
                    encode_canonical_block(&mut out, b.block_type, b.number, b.flags, b.crc_type, &data);
                }
            }
            _ => out.extend_from_slice(slice(&b.range)),
        }
    }

    if !wrote_previous {
        data.clear();
        encode_eid(&mut data, &edit.previous_node);
        encode_canonical_block(&mut out, block_types::PREVIOUS_NODE, alloc_number(), 0, payload_crc, &data);
    }
    if let (false, Some(age)) = (has_age, edit.bundle_age_ms) {
        data.clear();
        cbor::write_uint(&mut data, age);
        encode_canonical_block(&mut out, block_types::BUNDLE_AGE, alloc_number(), 0, payload_crc, &data);
    }
    if let (false, Some(hc)) = (has_hop_count, edit.hop_count) {
        data.clear();
        encode_hop_count(&mut data, hc.limit, hc.count);
        encode_canonical_block(&mut out, block_types::HOP_COUNT, alloc_number(), 0, payload_crc, &data);
    }
    if let (false, Some(n)) = (has_copies, edit.copies) {
        data.clear();
        cbor::write_uint(&mut data, n);
        let flags = block_flags::DISCARD_BLOCK_IF_UNPROCESSABLE;
        encode_canonical_block(&mut out, block_types::COPY_COUNT, alloc_number(), flags, payload_crc, &data);
    }
    if let Some(p) = payload {
        out.extend_from_slice(slice(&p.range));
    }
    out.push(cbor::BREAK);
    out
}
