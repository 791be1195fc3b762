//! The on-disk layout: column family names and the `meta` record. Everything that knows how bytes sit in RocksDB is here.

use ferry_core::bundle::BundleMeta;

/// The column families, in the order they are opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cf {
    /// Bundle key -> the bundle's encoded bytes (BlobDB keeps large ones out of
    /// the LSM tree).
    Bundles,
    /// Bundle key -> [`MetaRecord`].
    Meta,
    /// UTF-8 key -> small node state value.
    State,
}

impl Cf {
    pub(crate) const ALL: [Cf; 3] = [Cf::Bundles, Cf::Meta, Cf::State];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Cf::Bundles => "bundles",
            Cf::Meta => "meta",
            Cf::State => "state",
        }
    }
}

/// Column families of stores written before the indexes left the disk (an
/// expiry index and a destination index, two more keys written and deleted
/// per bundle that nothing read at run time: the node keeps its own indexes
/// in memory). Opening such a store drops them.
pub(crate) const LEGACY_CFS: [&str; 2] = ["by_expiry", "by_destination"];

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
    fn short_meta_record_is_not_a_length() {
        assert_eq!(meta_stored_len(&[1, 2, 3]), None);
        assert_eq!(decode_meta(&[0; 8]), None);
    }
}
