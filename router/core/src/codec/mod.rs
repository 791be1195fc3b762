//! Bundle encoding and decoding (RFC 9171 §4), and the edits a node makes to
//! bundle bytes: rewriting extension blocks on forward (§5.4), fragmentation
//! (§5.8) and reassembly (§5.9).
//!
//! - [`decode`] is the one entry point for untrusted bytes: one pass over the
//!   input, every CRC checked over the bytes as received, every rule of §4
//!   that a receiver can check enforced — and nothing stricter than the RFC.
//!   The [`Bundle`] it returns holds ranges into the input, not copies.
//! - [`BundleBuilder`] makes new bundles.
//! - [`rewrite_for_forward`], [`fragment`] and [`reassemble`] work on bytes
//!   that `decode` accepted, copying what does not change verbatim.
//! - [`encode_eid`] / [`decode_eid`] are the EID encoding of §4.2.5.1, shared
//!   with the administrative records.
//!
//! [`Bundle`]: crate::bundle::Bundle

mod decode;
mod encode;
mod forward;
mod fragment;

pub use decode::{decode, decode_with, DecodeOptions, MAX_BLOCKS};
pub use encode::{encode_canonical_block, encode_primary_block, BundleBuilder};
pub use forward::{rewrite_for_forward, ForwardEdit};
pub use fragment::{covers, fragment, reassemble, FragmentError, ReassemblyError};

use crate::admin::ReasonCode;
use crate::cbor::{self, major, CborError, Reader};
use crate::eid::{Eid, EidError};

/// URI scheme codes (RFC 9171 §9.6).
pub mod scheme {
    pub const DTN: u64 = 1;
    pub const IPN: u64 = 2;
}

/// Which EID field of the primary block a [`DecodeError::Eid`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EidField {
    Destination,
    Source,
    ReportTo,
}

/// Why a bundle is not a valid RFC 9171 bundle. Every variant names one rule;
/// [`DecodeError::reason_code`] maps it to the status report reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Malformed CBOR, a truncated bundle, or a CBOR item of another type than
    /// the field needs (e.g. a negative integer, a tag, a map).
    #[error("malformed bundle: {0}")]
    Cbor(#[from] CborError),
    /// The bundle is not a CBOR indefinite-length array (RFC 9171 §4.1).
    /// `initial` is the first byte (0x80–0x9b: a definite-length array).
    #[error("a bundle is an indefinite-length CBOR array (first byte {initial:#04x})")]
    NotIndefiniteArray { initial: u8 },
    /// Bytes follow the break that ends the bundle (§4.1).
    #[error("{len} trailing bytes after the bundle at offset {offset}")]
    TrailingBytes { offset: usize, len: usize },
    /// The primary block's version is not 7 (§4.3.1).
    #[error("bundle protocol version {version} (expected 7)")]
    UnsupportedVersion { version: u64 },
    /// The primary block does not have the 8, 9, 10 or 11 elements that its
    /// fragment flag and CRC type call for (§4.3.1).
    #[error("the primary block at offset {offset} has the wrong number of elements")]
    PrimaryBlockLength { offset: usize },
    /// A canonical block is not an array of 5 (CRC type 0) or 6 elements (§4.3.2).
    #[error("the canonical block at offset {offset} has the wrong number of elements")]
    BlockLength { offset: usize },
    /// The creation timestamp is not an array of two unsigned integers (§4.2.7).
    #[error("the creation timestamp at offset {offset} is not [time, sequence number]")]
    CreationTimestamp { offset: usize },
    /// A CRC type other than 0, 1 or 2 (§4.2.1). Block number 0 is the primary block.
    #[error("block {block_number}: invalid CRC type {crc_type}")]
    InvalidCrcType { block_number: u64, crc_type: u64 },
    /// The CRC is not a byte string of 2 (CRC-16) or 4 (CRC-32C) bytes (§4.2.2).
    #[error("block {block_number}: CRC value of {len} bytes does not match the CRC type")]
    CrcValueLength { block_number: u64, len: usize },
    /// A block's CRC does not match its bytes (§4.3.1, §4.3.2). Block 0 is the primary.
    #[error("block {block_number}: CRC mismatch (received {received:#x}, computed {computed:#x})")]
    CrcMismatch { block_number: u64, received: u32, computed: u32 },
    /// The primary block has CRC type 0 but the bundle has no Block Integrity
    /// Block that could protect it (§4.3.1).
    #[error("the primary block has no CRC and the bundle no BIB")]
    PrimaryCrcMissing,
    /// An EID in the primary block is not a valid EID.
    #[error("invalid {field:?} EID: {error}")]
    Eid { field: EidField, error: EidDecodeError },
    /// Status reports are requested for an administrative record or a bundle
    /// whose source is dtn:none (§4.2.3). `flags` are the bundle processing flags.
    #[error("status reports requested by an admin record or anonymous bundle (flags {flags:#x})")]
    StatusReportsForbidden { flags: u64 },
    /// The source is dtn:none but the "must not be fragmented" flag is 0 (§4.2.3).
    #[error("an anonymous bundle must have the must-not-fragment flag set")]
    AnonymousFragmentable,
    /// A block of an administrative record or an anonymous bundle asks for a
    /// status report if it can't be processed (§4.2.4).
    #[error("block {block_number} requests a status report in an admin record or anonymous bundle")]
    BlockStatusReportForbidden { block_number: u64 },
    /// A fragment whose payload does not lie within the ADU: offset + payload
    /// length > total ADU length (§4.3.1).
    #[error("fragment at {offset}+{payload_len} exceeds the ADU length {total_adu_len}")]
    FragmentOutOfRange { offset: u64, payload_len: u64, total_adu_len: u64 },
    /// The bundle has no payload block (§4.1).
    #[error("the bundle has no payload block")]
    MissingPayload,
    /// A block follows the payload block, which must be last (§4.1).
    #[error("block {block_number} follows the payload block")]
    PayloadNotLast { block_number: u64 },
    /// A second payload block (§4.1).
    #[error("the bundle has more than one payload block")]
    DuplicatePayload,
    /// Block number 0 (the primary block's), number 1 on a block other than the
    /// payload, or a payload block not numbered 1 (§4.1).
    #[error("block type {block_type} cannot have block number {block_number}")]
    InvalidBlockNumber { block_type: u64, block_number: u64 },
    /// Two blocks share a block number (§4.1).
    #[error("block number {block_number} is used twice")]
    DuplicateBlockNumber { block_number: u64 },
    /// More canonical blocks than [`MAX_BLOCKS`] (a resource bound of ours).
    #[error("more than {limit} blocks")]
    TooManyBlocks { limit: usize },
    /// The block-type-specific data is not a definite-length byte string
    /// (§4.3.2): e.g. a text string (bp7-rs #20) or an indefinite-length string.
    #[error("block {block_number}: block data at offset {offset} is not a definite-length byte string")]
    BlockDataNotByteString { block_number: u64, offset: usize },
    /// A second previous node, bundle age or hop count block (§4.4.1–4.4.3).
    #[error("more than one block of type {block_type}")]
    DuplicateExtensionBlock { block_type: u64 },
    /// The data of a previous node (an EID), bundle age (an unsigned integer) or
    /// hop count block ([limit, count]) is not what §4.4 defines.
    #[error("block {block_number} of type {block_type}: content is not intelligible")]
    ExtensionBlockContent { block_type: u64, block_number: u64 },
    /// A hop limit outside 1..=255 (§4.4.3). (A count above the limit is not a
    /// decoding error: the node deletes such a bundle with reason 9.)
    #[error("hop limit {limit} is outside 1..=255")]
    HopLimitOutOfRange { limit: u64 },
    /// The creation time is 0 and there is no bundle age block (§4.4.2).
    #[error("creation time 0 without a bundle age block")]
    MissingBundleAge,
}

impl DecodeError {
    /// The status report reason code for a bundle rejected for this reason
    /// (RFC 9171 §6.1.1, Table 1).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Eid { field: EidField::Destination, .. } => ReasonCode::DestinationEidUnintelligible,
            _ => ReasonCode::BlockUnintelligible,
        }
    }
}

/// Why a CBOR item is not an endpoint ID (RFC 9171 §4.2.5.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EidDecodeError {
    /// Malformed CBOR or an item of the wrong type.
    #[error("{0}")]
    Cbor(#[from] CborError),
    /// Not an array of two items, `[scheme, SSP]`.
    #[error("an EID is an array [scheme code, SSP] (offset {offset})")]
    Shape { offset: usize },
    /// A URI scheme code other than 1 (dtn) and 2 (ipn).
    #[error("unknown URI scheme code {scheme}")]
    UnknownScheme { scheme: u64 },
    /// A dtn SSP given as an integer other than 0 (dtn:none), or as the text "none".
    #[error("a dtn SSP is a text string, or 0 for dtn:none")]
    DtnNone,
    /// A dtn SSP text that is not `//node/demux`.
    #[error("invalid dtn SSP: {0}")]
    Dtn(EidError),
    /// An ipn SSP that is not `[node, service]` or `[allocator, node, service]`.
    #[error("an ipn SSP is [node, service] or [allocator, node, service] (offset {offset})")]
    IpnShape { offset: usize },
    /// RFC 9758's three-element form with an allocator or node number of 2^32 or more.
    #[error("ipn allocator and node numbers are 32-bit in the three-element form")]
    IpnComponentRange,
}

/// Reads an endpoint ID (RFC 9171 §4.2.5.1): `[1, "//node/demux"]`, `[1, 0]`
/// for dtn:none, `[2, [node, service]]`. RFC 9758's `[2, [allocator, node,
/// service]]` is accepted too and gives the fully qualified node number
/// `allocator << 32 | node`. Definite and indefinite arrays are accepted.
pub fn decode_eid(r: &mut Reader<'_>) -> Result<Eid, EidDecodeError> {
    let offset = r.position();
    let mut seq = r.read_seq()?;
    if !seq.next(r)? {
        return Err(EidDecodeError::Shape { offset });
    }
    let scheme = r.read_uint()?;
    if !seq.next(r)? {
        return Err(EidDecodeError::Shape { offset });
    }
    let eid = match scheme {
        scheme::DTN => match r.peek().map(|b| b >> 5) {
            Some(major::UINT) => match r.read_uint()? {
                0 => Eid::Null,
                _ => return Err(EidDecodeError::DtnNone),
            },
            _ => {
                let ssp = r.read_text()?;
                if ssp == "none" {
                    // §4.2.5.1.1: "none" SHALL be encoded as the integer 0.
                    return Err(EidDecodeError::DtnNone);
                }
                Eid::from_dtn_ssp(ssp).map_err(EidDecodeError::Dtn)?
            }
        },
        scheme::IPN => {
            let at = r.position();
            let mut ssp = r.read_seq()?;
            let mut n = [0u64; 3];
            let mut count = 0;
            while ssp.next(r)? {
                if count == 3 {
                    return Err(EidDecodeError::IpnShape { offset: at });
                }
                n[count] = r.read_uint()?;
                count += 1;
            }
            match count {
                2 => Eid::Ipn { node: n[0], service: n[1] },
                3 => {
                    let (allocator, node) = (n[0], n[1]);
                    if allocator > u64::from(u32::MAX) || node > u64::from(u32::MAX) {
                        return Err(EidDecodeError::IpnComponentRange);
                    }
                    Eid::Ipn { node: allocator << 32 | node, service: n[2] }
                }
                _ => return Err(EidDecodeError::IpnShape { offset: at }),
            }
        }
        scheme => return Err(EidDecodeError::UnknownScheme { scheme }),
    };
    if seq.next(r)? {
        return Err(EidDecodeError::Shape { offset });
    }
    Ok(eid)
}

/// Decodes an EID that is the whole of `bytes` (e.g. a previous node block's data).
pub fn decode_eid_exact(bytes: &[u8]) -> Result<Eid, EidDecodeError> {
    let mut r = Reader::new(bytes);
    let eid = decode_eid(&mut r)?;
    if !r.is_empty() {
        return Err(EidDecodeError::Shape { offset: r.position() });
    }
    Ok(eid)
}

/// Writes an endpoint ID in the encoding of RFC 9171 §4.2.5.1 (two-element
/// ipn form).
pub fn encode_eid(out: &mut Vec<u8>, eid: &Eid) {
    match eid {
        Eid::Null => out.extend_from_slice(&[0x82, 0x01, 0x00]),
        Eid::Dtn { node, demux } => {
            out.extend_from_slice(&[0x82, 0x01]);
            cbor::write_head(out, major::TEXT, dtn_ssp_len(node, demux) as u64);
            out.extend_from_slice(b"//");
            out.extend_from_slice(node.as_bytes());
            out.push(b'/');
            out.extend_from_slice(demux.as_bytes());
        }
        Eid::Ipn { node, service } => {
            out.extend_from_slice(&[0x82, 0x02, 0x82]);
            cbor::write_uint(out, *node);
            cbor::write_uint(out, *service);
        }
    }
}

/// The length of [`encode_eid`]'s output.
pub fn encoded_eid_len(eid: &Eid) -> usize {
    match eid {
        Eid::Null => 3,
        Eid::Dtn { node, demux } => {
            let n = dtn_ssp_len(node, demux);
            2 + cbor::head_len(n as u64) + n
        }
        Eid::Ipn { node, service } => 3 + cbor::head_len(*node) + cbor::head_len(*service),
    }
}

fn dtn_ssp_len(node: &str, demux: &str) -> usize {
    2 + node.len() + 1 + demux.len()
}

#[cfg(test)]
mod tests;
