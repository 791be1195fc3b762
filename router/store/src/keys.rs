//! The on-disk layout: column family names, index key encodings and the `meta`
//! record. Everything that knows how bytes sit in RocksDB is here.

use ferry_core::bundle::{BundleId, BundleMeta, DtnTime};
use ferry_core::eid::Eid;

/// The column families, in the order they are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cf {
    /// Bundle key -> the bundle's encoded bytes (BlobDB keeps large ones out of
    /// the LSM tree).
    Bundles,
    /// Bundle key -> [`MetaRecord`].
    Meta,
    /// `expires_at` (u64 big-endian) ++ bundle key -> empty.
    ByExpiry,
    /// Destination EID string ++ 0x00 ++ bundle key -> empty.
    ByDestination,
    /// UTF-8 key -> small node state value.
    State,
}

impl Cf {
    pub(crate) const ALL: [Cf; 5] = [Cf::Bundles, Cf::Meta, Cf::ByExpiry, Cf::ByDestination, Cf::State];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Cf::Bundles => "bundles",
            Cf::Meta => "meta",
            Cf::ByExpiry => "by_expiry",
            Cf::ByDestination => "by_destination",
            Cf::State => "state",
        }
    }
}

/// `by_expiry` key. Big-endian so that byte order is time order.
pub(crate) fn expiry_key(expires_at: DtnTime, bundle_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + bundle_key.len());
    k.extend_from_slice(&expires_at.to_be_bytes());
    k.extend_from_slice(bundle_key);
    k
}

/// The exclusive upper bound of `by_expiry` keys with `expires_at <= t`;
/// `None` when every key qualifies (`t == u64::MAX`).
pub(crate) fn expiry_upper_bound(t: DtnTime) -> Option<Vec<u8>> {
    t.checked_add(1).map(|n| n.to_be_bytes().to_vec())
}

/// The expiry time and bundle ID in a `by_expiry` key.
pub(crate) fn decode_expiry_key(key: &[u8]) -> Option<(DtnTime, BundleId)> {
    let t = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    Some((t, BundleId::from_key(key.get(8..)?)?))
}

/// `by_destination` key prefix of `eid`: its string form and a NUL. EID strings
/// never contain NUL, so the prefix of one EID is never the prefix of another
/// (`dtn://b/` does not match `dtn://b/in`).
pub(crate) fn destination_prefix(eid: &Eid) -> Vec<u8> {
    let s = eid.to_string();
    let mut k = Vec::with_capacity(s.len() + 1);
    k.extend_from_slice(s.as_bytes());
    k.push(0);
    k
}

/// The exclusive upper bound of keys starting with `prefix` (which ends in
/// 0x00, so bumping that last byte never overflows).
pub(crate) fn destination_upper_bound(prefix: &[u8]) -> Vec<u8> {
    let mut up = prefix.to_vec();
    if let Some(last) = up.last_mut() {
        *last += 1;
    }
    up
}

pub(crate) fn destination_key(eid: &Eid, bundle_key: &[u8]) -> Vec<u8> {
    let mut k = destination_prefix(eid);
    k.extend_from_slice(bundle_key);
    k
}

/// The bundle ID in a `by_destination` key: whatever follows the first NUL.
pub(crate) fn id_from_destination_key(key: &[u8]) -> Option<BundleId> {
    let nul = key.iter().position(|&b| b == 0)?;
    BundleId::from_key(&key[nul + 1..])
}

/// Does index key `key` (of either index CF) point at `bundle_key`? Used only to
/// clean up after a metadata record that cannot be decoded.
pub(crate) fn index_key_points_at(cf: Cf, key: &[u8], bundle_key: &[u8]) -> bool {
    match cf {
        Cf::ByExpiry => key.len() == 8 + bundle_key.len() && key.ends_with(bundle_key),
        Cf::ByDestination => match key.iter().position(|&b| b == 0) {
            Some(nul) => &key[nul + 1..] == bundle_key,
            None => false,
        },
        _ => false,
    }
}

/// Length of the stored-size prefix of a `meta` value.
const LEN_PREFIX: usize = 8;

/// A `meta` value: the length of the stored bundle bytes (u64 big-endian), then
/// [`BundleMeta::to_bytes`]. The length lives here, not in `bundles`, so that
/// `stats()` and the count at open never touch bundle bytes. (It is not
/// `BundleMeta::size`: that is what the bundle says about itself, this is
/// what the store holds.)
pub(crate) fn encode_meta(meta: &BundleMeta, stored_len: u64) -> Vec<u8> {
    let m = meta.to_bytes();
    let mut v = Vec::with_capacity(LEN_PREFIX + m.len());
    v.extend_from_slice(&stored_len.to_be_bytes());
    v.extend_from_slice(&m);
    v
}

/// The stored length, if the prefix is there.
pub(crate) fn meta_stored_len(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.get(..LEN_PREFIX)?.try_into().ok()?))
}

/// The metadata, if the record decodes.
pub(crate) fn decode_meta(value: &[u8]) -> Option<BundleMeta> {
    BundleMeta::from_bytes(value.get(LEN_PREFIX..)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_bounds_separate_prefixes() {
        let b: Eid = "dtn://b/".parse().unwrap();
        let bin: Eid = "dtn://b/in".parse().unwrap();
        let p = destination_prefix(&b);
        let up = destination_upper_bound(&p);
        let k = destination_key(&bin, b"x");
        // `dtn://b/in\0..` sorts after `dtn://b/\x01`: outside b's range.
        assert!(k.as_slice() >= up.as_slice());
        assert!(index_key_points_at(Cf::ByDestination, &k, b"x"));
        assert!(!index_key_points_at(Cf::ByDestination, &k, b"y"));
    }

    #[test]
    fn expiry_keys_order_by_time() {
        assert!(expiry_key(255, b"z") < expiry_key(256, b"a"));
        assert_eq!(expiry_upper_bound(u64::MAX), None);
        assert_eq!(expiry_upper_bound(1), Some(2u64.to_be_bytes().to_vec()));
        assert!(index_key_points_at(Cf::ByExpiry, &expiry_key(7, b"key"), b"key"));
        assert!(!index_key_points_at(Cf::ByExpiry, &expiry_key(7, b"xkey"), b"key"));
    }

    #[test]
    fn short_meta_record_is_not_a_length() {
        assert_eq!(meta_stored_len(&[1, 2, 3]), None);
        assert_eq!(decode_meta(&[0; 8]), None);
    }
}
