//! Encoding blocks and building new bundles.

use crate::bundle::{block_flags, block_types, bundle_flags, CrcType, CreationTimestamp, Fragment, PrimaryBlock};
use crate::cbor;
use crate::codec::{encode_eid, encoded_eid_len};
use crate::crc;
use crate::eid::Eid;

/// Appends a primary block (RFC 9171 §4.3.1) built from `p`'s fields, with
/// `flags` and `fragment` instead of `p`'s and a freshly computed CRC of
/// `p.crc_type`. (`p.range` is not used.) The IS_FRAGMENT flag is set or
/// cleared to agree with `fragment`.
pub fn encode_primary_block(out: &mut Vec<u8>, p: &PrimaryBlock, flags: u64, fragment: Option<Fragment>) {
    encode_primary(out, PrimaryFields::of(p, flags, fragment));
}

pub(crate) struct PrimaryFields<'a> {
    pub flags: u64,
    pub crc_type: CrcType,
    pub destination: &'a Eid,
    pub source: &'a Eid,
    pub report_to: &'a Eid,
    pub creation: CreationTimestamp,
    pub lifetime_ms: u64,
    pub fragment: Option<Fragment>,
}

impl<'a> PrimaryFields<'a> {
    /// The fields of a decoded primary block, with `flags` and `fragment` replaced.
    pub(crate) fn of(p: &'a PrimaryBlock, flags: u64, fragment: Option<Fragment>) -> PrimaryFields<'a> {
        PrimaryFields {
            flags,
            crc_type: p.crc_type,
            destination: &p.destination,
            source: &p.source,
            report_to: &p.report_to,
            creation: p.creation,
            lifetime_ms: p.lifetime_ms,
            fragment,
        }
    }
}

pub(crate) fn encode_primary(out: &mut Vec<u8>, p: PrimaryFields<'_>) {
    let start = out.len();
    let flags = match p.fragment {
        Some(_) => p.flags | bundle_flags::IS_FRAGMENT,
        None => p.flags & !bundle_flags::IS_FRAGMENT,
    };
    let len = 8 + if p.fragment.is_some() { 2 } else { 0 } + if p.crc_type == CrcType::None { 0 } else { 1 };
    out.reserve(16 + encoded_eid_len(p.destination) + encoded_eid_len(p.source) + encoded_eid_len(p.report_to) + 40);
    cbor::write_array(out, len);
    cbor::write_uint(out, 7);
    cbor::write_uint(out, flags);
    cbor::write_uint(out, u64::from(p.crc_type.code()));
    encode_eid(out, p.destination);
    encode_eid(out, p.source);
    encode_eid(out, p.report_to);
    out.push(0x82);
    cbor::write_uint(out, p.creation.time);
    cbor::write_uint(out, p.creation.seq);
    cbor::write_uint(out, p.lifetime_ms);
    if let Some(f) = p.fragment {
        cbor::write_uint(out, f.offset);
        cbor::write_uint(out, f.total_adu_len);
    }
    finish_with_crc(out, start, p.crc_type);
}

/// Appends the zero-filled CRC byte string of `crc_type` (if any) and fills it
/// in, computed over the block that starts at `start` (§4.3.1, §4.3.2).
fn finish_with_crc(out: &mut Vec<u8>, start: usize, crc_type: CrcType) {
    match crc_type {
        CrcType::None => {}
        CrcType::Crc16 => out.extend_from_slice(&[0x42, 0, 0]),
        CrcType::Crc32c => out.extend_from_slice(&[0x44, 0, 0, 0, 0]),
    }
    let value_at = out.len() - crc_type.len();
    crc::fill(crc_type, &mut out[start..], value_at - start);
}

/// Appends a canonical block (RFC 9171 §4.3.2) as a definite-length array,
/// with its CRC computed.
pub fn encode_canonical_block(
    out: &mut Vec<u8>,
    block_type: u64,
    number: u64,
    flags: u64,
    crc_type: CrcType,
    data: &[u8],
) {
    let start = out.len();
    out.reserve(canonical_block_len(block_type, number, flags, crc_type, data.len()));
    out.push(if crc_type == CrcType::None { 0x85 } else { 0x86 });
    cbor::write_uint(out, block_type);
    cbor::write_uint(out, number);
    cbor::write_uint(out, flags);
    cbor::write_uint(out, u64::from(crc_type.code()));
    cbor::write_bytes(out, data);
    finish_with_crc(out, start, crc_type);
}

/// The length of [`encode_canonical_block`]'s output.
pub(crate) fn canonical_block_len(
    block_type: u64,
    number: u64,
    flags: u64,
    crc_type: CrcType,
    data_len: usize,
) -> usize {
    canonical_header_len(block_type, number, flags)
        + cbor::head_len(data_len as u64)
        + data_len
        + crc_item_len(crc_type)
}

/// Array head, type, number, flags and CRC type.
pub(crate) fn canonical_header_len(block_type: u64, number: u64, flags: u64) -> usize {
    1 + cbor::head_len(block_type) + cbor::head_len(number) + cbor::head_len(flags) + 1
}

/// The CRC byte string, head included.
pub(crate) fn crc_item_len(crc_type: CrcType) -> usize {
    match crc_type {
        CrcType::None => 0,
        t => 1 + t.len(),
    }
}

/// Builds new bundles (RFC 9171 §5.2 "bundle transmission").
///
/// Blocks come out as: primary, previous node, bundle age, hop count, the
/// other extension blocks in the order added, payload; numbered 2, 3, ... in
/// that order, payload 1. The outer array is indefinite-length, every block a
/// definite-length array.
///
/// `build` always produces a bundle that [`decode`](crate::codec::decode)
/// accepts, and to that end enforces the RFC's rules on the request:
/// - a dtn:none source gets "must not fragment" set and no status report
///   requests (§4.2.3), and no "report if unprocessable" block flags (§4.2.4);
///   so does an administrative record, for the report requests and flags;
/// - creation time 0 without a bundle age gets a bundle age block of 0 (§4.4.2);
/// - a hop limit is clamped into 1..=255 (§4.4.3);
/// - IS_FRAGMENT follows [`BundleBuilder::fragment`];
/// - extension blocks of type 1 (payload) are ignored.
#[derive(Debug, Clone)]
pub struct BundleBuilder {
    source: Eid,
    destination: Eid,
    report_to: Eid,
    creation: CreationTimestamp,
    lifetime_ms: u64,
    flags: u64,
    crc_type: CrcType,
    previous_node: Option<Eid>,
    bundle_age_ms: Option<u64>,
    hop_limit: Option<u64>,
    extensions: Vec<(u64, u64, Vec<u8>)>,
    fragment: Option<Fragment>,
}

impl BundleBuilder {
    /// Report-to defaults to the source, flags to 0, CRC type to CRC-32C on
    /// every block.
    pub fn new(source: Eid, destination: Eid, creation: CreationTimestamp, lifetime_ms: u64) -> Self {
        BundleBuilder {
            report_to: source.clone(),
            source,
            destination,
            creation,
            lifetime_ms,
            flags: 0,
            crc_type: CrcType::Crc32c,
            previous_node: None,
            bundle_age_ms: None,
            hop_limit: None,
            extensions: Vec::new(),
            fragment: None,
        }
    }

    pub fn report_to(mut self, eid: Eid) -> Self {
        self.report_to = eid;
        self
    }

    /// Bundle processing control flags (§4.2.3).
    pub fn flags(mut self, bundle_processing_flags: u64) -> Self {
        self.flags = bundle_processing_flags;
        self
    }

    /// The CRC type of every block, primary included. [`CrcType::None`] makes
    /// a bundle that is valid only with a BIB (§4.3.1).
    pub fn crc_type(mut self, t: CrcType) -> Self {
        self.crc_type = t;
        self
    }

    /// Adds a hop count block `[limit, 0]`.
    pub fn hop_limit(mut self, limit: u64) -> Self {
        self.hop_limit = Some(limit.clamp(1, 255));
        self
    }

    /// Adds a bundle age block.
    pub fn bundle_age(mut self, age_ms: u64) -> Self {
        self.bundle_age_ms = Some(age_ms);
        self
    }

    /// Adds a previous node block.
    pub fn previous_node(mut self, eid: Eid) -> Self {
        self.previous_node = Some(eid);
        self
    }

    /// Adds an extension block with the given type, flags and data.
    pub fn extension_block(mut self, block_type: u64, block_flags: u64, data: Vec<u8>) -> Self {
        if block_type != block_types::PAYLOAD {
            self.extensions.push((block_type, block_flags, data));
        }
        self
    }

    /// Makes the bundle a fragment of an ADU of `total_adu_len` bytes whose
    /// payload starts at `offset`.
    pub fn fragment(mut self, offset: u64, total_adu_len: u64) -> Self {
        self.fragment = Some(Fragment { offset, total_adu_len });
        self
    }

    /// The bundle's bytes.
    pub fn build(self, payload: &[u8]) -> Vec<u8> {
        let mut flags = self.flags;
        let anonymous = self.source.is_null();
        let admin = flags & bundle_flags::ADMIN_RECORD != 0;
        if anonymous {
            flags |= bundle_flags::MUST_NOT_FRAGMENT;
        }
        if anonymous || admin {
            flags &= !bundle_flags::REPORT_ANY;
        }
        let block_flag_mask = if anonymous || admin { !block_flags::REPORT_IF_UNPROCESSABLE } else { u64::MAX };
        let bundle_age_ms = match (self.bundle_age_ms, self.creation.time) {
            (None, 0) => Some(0),
            (age, _) => age,
        };

        let ext_len: usize = self.extensions.iter().map(|(_, _, d)| d.len() + 24).sum();
        let mut out = Vec::with_capacity(256 + ext_len + payload.len());
        out.push(cbor::INDEFINITE_ARRAY);
        encode_primary(
            &mut out,
            PrimaryFields {
                flags,
                crc_type: self.crc_type,
                destination: &self.destination,
                source: &self.source,
                report_to: &self.report_to,
                creation: self.creation,
                lifetime_ms: self.lifetime_ms,
                fragment: self.fragment,
            },
        );
        let mut number = 2;
        let mut data = Vec::with_capacity(64);
        if let Some(eid) = &self.previous_node {
            encode_eid(&mut data, eid);
            encode_canonical_block(&mut out, block_types::PREVIOUS_NODE, number, 0, self.crc_type, &data);
            number += 1;
        }
        if let Some(age) = bundle_age_ms {
            data.clear();
            cbor::write_uint(&mut data, age);
            encode_canonical_block(&mut out, block_types::BUNDLE_AGE, number, 0, self.crc_type, &data);
            number += 1;
        }
        if let Some(limit) = self.hop_limit {
            data.clear();
            encode_hop_count(&mut data, limit, 0);
            encode_canonical_block(&mut out, block_types::HOP_COUNT, number, 0, self.crc_type, &data);
            number += 1;
        }
        for (block_type, block_flags, data) in &self.extensions {
            encode_canonical_block(&mut out, *block_type, number, block_flags & block_flag_mask, self.crc_type, data);
            number += 1;
        }
        encode_canonical_block(&mut out, block_types::PAYLOAD, 1, 0, self.crc_type, payload);
        out.push(cbor::BREAK);
        out
    }
}

/// The data of a hop count block: `[limit, count]` (§4.4.3).
pub(crate) fn encode_hop_count(out: &mut Vec<u8>, limit: u64, count: u64) {
    cbor::write_array(out, 2);
    cbor::write_uint(out, limit);
    cbor::write_uint(out, count);
}
