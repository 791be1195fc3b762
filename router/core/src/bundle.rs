//! The bundle model (RFC 9171 §4): what a decoded bundle looks like, its ID, its
//! flags, and [`BundleMeta`], the payload-free record that the node and the
//! stores keep about every bundle.

use std::fmt;
use std::ops::Range;

use crate::eid::Eid;

/// DTN time: milliseconds since 2000-01-01T00:00:00Z (RFC 9171 §4.2.6).
pub type DtnTime = u64;

/// Seconds between the Unix epoch and the DTN epoch (2000-01-01T00:00:00Z).
pub const DTN_EPOCH_UNIX_SECS: u64 = 946_684_800;

/// Bundle processing control flags (RFC 9171 §4.2.3).
pub mod bundle_flags {
    pub const IS_FRAGMENT: u64 = 0x01;
    pub const ADMIN_RECORD: u64 = 0x02;
    pub const MUST_NOT_FRAGMENT: u64 = 0x04;
    pub const APP_ACK_REQUESTED: u64 = 0x20;
    pub const STATUS_TIME_REQUESTED: u64 = 0x40;
    pub const REPORT_RECEPTION: u64 = 0x4000;
    pub const REPORT_FORWARDING: u64 = 0x1_0000;
    pub const REPORT_DELIVERY: u64 = 0x2_0000;
    pub const REPORT_DELETION: u64 = 0x4_0000;
    /// Every status-report request flag.
    pub const REPORT_ANY: u64 = REPORT_RECEPTION | REPORT_FORWARDING | REPORT_DELIVERY | REPORT_DELETION;
}

/// Block processing control flags (RFC 9171 §4.2.4).
pub mod block_flags {
    pub const REPLICATE_IN_FRAGMENTS: u64 = 0x01;
    pub const REPORT_IF_UNPROCESSABLE: u64 = 0x02;
    pub const DELETE_BUNDLE_IF_UNPROCESSABLE: u64 = 0x04;
    pub const DISCARD_BLOCK_IF_UNPROCESSABLE: u64 = 0x10;
}

/// Block type codes (RFC 9171 §9.1, RFC 9172).
pub mod block_types {
    pub const PAYLOAD: u64 = 1;
    pub const PREVIOUS_NODE: u64 = 6;
    pub const BUNDLE_AGE: u64 = 7;
    pub const HOP_COUNT: u64 = 10;
    pub const BIB: u64 = 11;
    pub const BCB: u64 = 12;
    /// Ferry's spray-and-wait copy count: how many copies the receiving node
    /// holds (CBOR unsigned integer). A type from the private and experimental
    /// range (RFC 9171 §9.1: 192–255); sent with "discard block if it can't be
    /// processed", so nodes that do not know it drop it rather than pass on a
    /// stale count.
    pub const COPY_COUNT: u64 = 192;
}

/// CRC type of a block (RFC 9171 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrcType {
    None,
    /// CRC-16/X.25.
    Crc16,
    /// CRC-32C (Castagnoli).
    Crc32c,
}

impl CrcType {
    pub fn code(self) -> u8 {
        match self {
            CrcType::None => 0,
            CrcType::Crc16 => 1,
            CrcType::Crc32c => 2,
        }
    }

    /// `None` for the values RFC 9171 does not define (3 and up are invalid).
    pub fn from_code(code: u64) -> Option<CrcType> {
        match code {
            0 => Some(CrcType::None),
            1 => Some(CrcType::Crc16),
            2 => Some(CrcType::Crc32c),
            _ => None,
        }
    }

    /// Length of the CRC value on the wire.
    #[allow(clippy::len_without_is_empty)] // a CRC type is not a container
    pub fn len(self) -> usize {
        match self {
            CrcType::None => 0,
            CrcType::Crc16 => 2,
            CrcType::Crc32c => 4,
        }
    }
}

/// Creation timestamp (RFC 9171 §4.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CreationTimestamp {
    /// DTN time of creation; 0 when the source had no accurate clock.
    pub time: DtnTime,
    pub seq: u64,
}

/// Fragment offset and total application data unit length (RFC 9171 §4.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fragment {
    pub offset: u64,
    pub total_adu_len: u64,
}

/// Hop count block content (RFC 9171 §4.4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HopCount {
    pub limit: u64,
    pub count: u64,
}

/// A bundle's identity (RFC 9171 §5.1, §5.6): source node, creation timestamp and,
/// for a fragment, its offset and payload length.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleId {
    pub source: Eid,
    pub creation: CreationTimestamp,
    /// `(offset, payload length)` of a fragment.
    pub fragment: Option<(u64, u64)>,
}

impl BundleId {
    /// A key that no two IDs share (EIDs never contain NUL): source, NUL, then
    /// big-endian numbers. Byte order of keys is not `BundleId` order
    /// (`ipn:10.1` sorts before `ipn:9.1`); stores sort listings themselves.
    pub fn to_key(&self) -> Vec<u8> {
        let src = self.source.to_string();
        let mut key = Vec::with_capacity(src.len() + 1 + 32);
        key.extend_from_slice(src.as_bytes());
        key.push(0);
        key.extend_from_slice(&self.creation.time.to_be_bytes());
        key.extend_from_slice(&self.creation.seq.to_be_bytes());
        if let Some((offset, len)) = self.fragment {
            key.extend_from_slice(&offset.to_be_bytes());
            key.extend_from_slice(&len.to_be_bytes());
        }
        key
    }

    /// Inverse of [`BundleId::to_key`].
    pub fn from_key(key: &[u8]) -> Option<BundleId> {
        let nul = key.iter().position(|&b| b == 0)?;
        let source: Eid = std::str::from_utf8(&key[..nul]).ok()?.parse().ok()?;
        let rest = &key[nul + 1..];
        let num = |i: usize| -> Option<u64> { Some(u64::from_be_bytes(rest.get(i * 8..i * 8 + 8)?.try_into().ok()?)) };
        let creation = CreationTimestamp { time: num(0)?, seq: num(1)? };
        let fragment = match rest.len() {
            16 => None,
            32 => Some((num(2)?, num(3)?)),
            _ => return None,
        };
        Some(BundleId { source, creation, fragment })
    }
}

/// dtn7-rs's textual form, so `/delete?bid=` and `/status/bundles` match its tools:
/// `<source>-<time>-<seq>`, plus `-<offset>-<length>` for a fragment.
impl fmt::Display for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.source, self.creation.time, self.creation.seq)?;
        if let Some((offset, len)) = self.fragment {
            write!(f, "-{offset}-{len}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BundleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleId({self})")
    }
}

/// The primary block, decoded (RFC 9171 §4.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryBlock {
    pub flags: u64,
    pub crc_type: CrcType,
    pub destination: Eid,
    pub source: Eid,
    pub report_to: Eid,
    pub creation: CreationTimestamp,
    /// Lifetime in milliseconds.
    pub lifetime_ms: u64,
    pub fragment: Option<Fragment>,
    /// Where the block's encoding sits in the bundle bytes.
    pub range: Range<usize>,
}

/// A canonical block (RFC 9171 §4.3.2). Its data is not copied: `data` indexes
/// the bundle bytes it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalBlock {
    pub block_type: u64,
    pub number: u64,
    pub flags: u64,
    pub crc_type: CrcType,
    /// The content of the block-type-specific data byte string.
    pub data: Range<usize>,
    /// The whole block's encoding.
    pub range: Range<usize>,
}

/// A decoded, validated bundle. It borrows nothing: the ranges index the bytes it
/// was decoded from, which the caller keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub primary: PrimaryBlock,
    /// Canonical blocks in wire order; the payload block is last.
    pub blocks: Vec<CanonicalBlock>,
    /// Previous node block content, if present (RFC 9171 §4.4.1).
    pub previous_node: Option<Eid>,
    /// Bundle age block content in ms, if present (§4.4.2).
    pub bundle_age_ms: Option<u64>,
    /// Hop count block content, if present (§4.4.3).
    pub hop_count: Option<HopCount>,
    /// Copy count block content, if present ([`block_types::COPY_COUNT`]).
    pub copy_count: Option<u64>,
    /// Numbers of blocks whose type this node cannot process (§4.2.4 / §5.4 step 3);
    /// their flags say what to do.
    pub unsupported_blocks: Vec<u64>,
}

impl Bundle {
    pub fn id(&self) -> BundleId {
        let p = &self.primary;
        BundleId {
            source: p.source.clone(),
            creation: p.creation,
            fragment: p.fragment.map(|f| (f.offset, self.payload().data.len() as u64)),
        }
    }

    /// The payload block (always present in a decoded bundle, always last).
    pub fn payload(&self) -> &CanonicalBlock {
        // The decoder guarantees a payload block is last; a Bundle is never empty.
        &self.blocks[self.blocks.len() - 1]
    }

    pub fn block(&self, number: u64) -> Option<&CanonicalBlock> {
        self.blocks.iter().find(|b| b.number == number)
    }

    pub fn is_admin_record(&self) -> bool {
        self.primary.flags & bundle_flags::ADMIN_RECORD != 0
    }
}

/// What the node and the stores remember about a bundle without its bytes:
/// enough to route it, expire it, list it and deliver it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleMeta {
    pub id: BundleId,
    pub destination: Eid,
    pub report_to: Eid,
    /// Bundle processing control flags.
    pub flags: u64,
    pub lifetime_ms: u64,
    /// DTN time after which the bundle has expired (RFC 9171 §5.4 step... §4.2.8).
    pub expires_at: DtnTime,
    /// When this node received (or created) it.
    pub received_at: DtnTime,
    /// Bundle age (ms) when it was received, if the bundle has an age block.
    pub age_at_receipt_ms: Option<u64>,
    pub hop_count: Option<HopCount>,
    pub previous_node: Option<Eid>,
    /// Total encoded size in bytes.
    pub size: u64,
    pub payload_len: u64,
    /// Total ADU length for a fragment.
    pub total_adu_len: Option<u64>,
    /// Node IDs of peers this bundle has been forwarded to (epidemic routing must
    /// not send it twice over, not even after a restart).
    pub forwarded_to: Vec<Eid>,
    /// Blocks to discard when forwarding (unsupported, flagged "discard").
    pub discard_blocks: Vec<u64>,
    /// Router state: the spray-and-wait copies this node holds (from the copy
    /// count block it arrived with, then what the router keeps after handing
    /// copies on). `None` for routers that do not count copies.
    pub copies: Option<u64>,
}

/// Why stored metadata could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt bundle metadata record")]
pub struct MetaDecodeError;

/// Version 2 appended the copy count; version 1 records read as having none.
const META_VERSION: u8 = 2;

impl BundleMeta {
    /// A compact, versioned binary encoding for stores.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = MetaWriter(Vec::with_capacity(128));
        w.0.push(META_VERSION);
        w.bytes(&self.id.to_key());
        w.str(&self.destination.to_string());
        w.str(&self.report_to.to_string());
        for n in [self.flags, self.lifetime_ms, self.expires_at, self.received_at, self.size, self.payload_len] {
            w.u64(n);
        }
        w.opt(self.age_at_receipt_ms);
        w.opt(self.hop_count.map(|h| h.limit));
        w.opt(self.hop_count.map(|h| h.count));
        w.opt(self.total_adu_len);
        match &self.previous_node {
            Some(e) => w.str(&e.to_string()),
            None => w.str(""),
        }
        w.u64(self.forwarded_to.len() as u64);
        for e in &self.forwarded_to {
            w.str(&e.to_string());
        }
        w.u64(self.discard_blocks.len() as u64);
        for n in &self.discard_blocks {
            w.u64(*n);
        }
        w.opt(self.copies);
        w.0
    }

    pub fn from_bytes(buf: &[u8]) -> Result<BundleMeta, MetaDecodeError> {
        let mut r = MetaReader(buf);
        let version = r.take(1)?;
        if version != [1] && version != [META_VERSION] {
            return Err(MetaDecodeError);
        }
        let has_copies = version == [META_VERSION];
        let id = BundleId::from_key(r.bytes()?).ok_or(MetaDecodeError)?;
        let destination = r.eid()?;
        let report_to = r.eid()?;
        let [flags, lifetime_ms, expires_at, received_at, size, payload_len] =
            [r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?];
        let age_at_receipt_ms = r.opt()?;
        let hop_count = match (r.opt()?, r.opt()?) {
            (Some(limit), Some(count)) => Some(HopCount { limit, count }),
            _ => None,
        };
        let total_adu_len = r.opt()?;
        let prev = r.str()?;
        let previous_node = if prev.is_empty() { None } else { Some(prev.parse().map_err(|_| MetaDecodeError)?) };
        let n = r.u64()?;
        let mut forwarded_to = Vec::new();
        for _ in 0..n {
            forwarded_to.push(r.eid()?);
        }
        let n = r.u64()?;
        let mut discard_blocks = Vec::new();
        for _ in 0..n {
            discard_blocks.push(r.u64()?);
        }
        let copies = if has_copies { r.opt()? } else { None };
        Ok(BundleMeta {
            id,
            destination,
            report_to,
            flags,
            lifetime_ms,
            expires_at,
            received_at,
            age_at_receipt_ms,
            hop_count,
            previous_node,
            size,
            payload_len,
            total_adu_len,
            forwarded_to,
            discard_blocks,
            copies,
        })
    }
}

struct MetaWriter(Vec<u8>);

impl MetaWriter {
    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }
    fn opt(&mut self, n: Option<u64>) {
        match n {
            Some(n) => {
                self.0.push(1);
                self.u64(n);
            }
            None => self.0.push(0),
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

struct MetaReader<'a>(&'a [u8]);

impl<'a> MetaReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MetaDecodeError> {
        if self.0.len() < n {
            return Err(MetaDecodeError);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u64(&mut self) -> Result<u64, MetaDecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| MetaDecodeError)?))
    }
    fn opt(&mut self) -> Result<Option<u64>, MetaDecodeError> {
        match self.take(1)? {
            [0] => Ok(None),
            [1] => Ok(Some(self.u64()?)),
            _ => Err(MetaDecodeError),
        }
    }
    fn bytes(&mut self) -> Result<&'a [u8], MetaDecodeError> {
        let n = usize::try_from(self.u64()?).map_err(|_| MetaDecodeError)?;
        self.take(n)
    }
    fn str(&mut self) -> Result<&'a str, MetaDecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| MetaDecodeError)
    }
    fn eid(&mut self) -> Result<Eid, MetaDecodeError> {
        self.str()?.parse().map_err(|_| MetaDecodeError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BundleMeta {
        BundleMeta {
            id: BundleId {
                source: "dtn://a/x-1-2".parse().unwrap(),
                creation: CreationTimestamp { time: 3, seq: 4 },
                fragment: Some((5, 6)),
            },
            destination: "ipn:1.2".parse().unwrap(),
            report_to: Eid::Null,
            flags: bundle_flags::REPORT_DELIVERY,
            lifetime_ms: 1000,
            expires_at: 1003,
            received_at: 10,
            age_at_receipt_ms: Some(7),
            hop_count: Some(HopCount { limit: 30, count: 2 }),
            previous_node: Some("dtn://b/".parse().unwrap()),
            size: 300,
            payload_len: 6,
            total_adu_len: Some(100),
            forwarded_to: vec!["dtn://c/".parse().unwrap()],
            discard_blocks: vec![9],
            copies: Some(3),
        }
    }

    #[test]
    fn version_1_records_read_without_copy_count() {
        let m = BundleMeta { copies: None, ..sample() };
        let mut v1 = m.to_bytes();
        v1[0] = 1;
        v1.pop(); // version 1 ends after the discard blocks
        assert_eq!(BundleMeta::from_bytes(&v1).unwrap(), m);
    }

    #[test]
    fn meta_round_trips_and_rejects_truncation() {
        let m = sample();
        let bytes = m.to_bytes();
        assert_eq!(BundleMeta::from_bytes(&bytes).unwrap(), m);
        for cut in 0..bytes.len() {
            assert!(BundleMeta::from_bytes(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn keys_do_not_collide_where_display_strings_do() {
        let a = BundleId {
            source: "dtn://a/x-1-2".parse().unwrap(),
            creation: CreationTimestamp { time: 3, seq: 4 },
            fragment: None,
        };
        let b = BundleId {
            source: "dtn://a/x".parse().unwrap(),
            creation: CreationTimestamp { time: 1, seq: 2 },
            fragment: Some((3, 4)),
        };
        assert_eq!(a.to_string(), b.to_string());
        assert_ne!(a.to_key(), b.to_key());
        assert_eq!(BundleId::from_key(&a.to_key()).unwrap(), a);
        assert_eq!(BundleId::from_key(&b.to_key()).unwrap(), b);
    }
}
