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
    /// Bundle key -> the DTN time (u64 BE) until which a bundle delivered
    /// here is remembered, so that a copy arriving again is a duplicate.
    Delivered,
}

impl Cf {
    pub(crate) const ALL: [Cf; 4] = [Cf::Bundles, Cf::Meta, Cf::State, Cf::Delivered];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Cf::Bundles => "bundles",
            Cf::Meta => "meta",
            Cf::State => "state",
            Cf::Delivered => "delivered",
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

/// The top bit of the stored-size prefix: the bundle's bytes are in a file
/// of their own (`bundles` holds a [`encode_pointer`] record). Stored
/// lengths never come near 2^63.
const IN_FILE: u64 = 1 << 63;

/// What a `meta` record says about the stored bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StoredLen {
    pub len: u64,
    /// The bytes are in a payload file, not in `bundles`.
    pub in_file: bool,
}

/// A `meta` value: the length of the stored bundle bytes (u64 big-endian, its
/// top bit set if they are in a payload file), then
/// [`BundleMeta::to_bytes`]. The length lives here, not in `bundles`, so that
/// `stats()` and the count at open never touch bundle bytes. (It is not
/// `BundleMeta::size`: that is what the bundle says about itself, this is
/// what the store holds.)
pub(crate) fn encode_meta(meta: &BundleMeta, stored: StoredLen) -> Vec<u8> {
    let m = meta.to_bytes();
    let mut v = Vec::with_capacity(LEN_PREFIX + m.len());
    let prefix = if stored.in_file { stored.len | IN_FILE } else { stored.len };
    v.extend_from_slice(&prefix.to_be_bytes());
    v.extend_from_slice(&m);
    v
}

/// The stored length (and where the bytes are), if the prefix is there.
pub(crate) fn meta_stored_len(value: &[u8]) -> Option<StoredLen> {
    let prefix = u64::from_be_bytes(value.get(..LEN_PREFIX)?.try_into().ok()?);
    Some(StoredLen { len: prefix & !IN_FILE, in_file: prefix & IN_FILE != 0 })
}

/// The metadata, if the record decodes.
pub(crate) fn decode_meta(value: &[u8]) -> Option<BundleMeta> {
    BundleMeta::from_bytes(value.get(LEN_PREFIX..)?).ok()
}

/// Starts a `bundles` value that points to a payload file. A bundle starts
/// with 0x9F (an indefinite-length CBOR array, RFC 9171 §4.1), never with a
/// zero byte.
const POINTER_MAGIC: &[u8; 12] = b"\0ferry-file\0";
const POINTER_LEN: usize = POINTER_MAGIC.len() + 16;

/// The `bundles` value of a bundle whose `len` bytes are in payload file `id`.
pub(crate) fn encode_pointer(id: u64, len: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(POINTER_LEN);
    v.extend_from_slice(POINTER_MAGIC);
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v
}

/// The payload file and length a `bundles` value points to; `None` for a
/// value that holds the bundle itself.
pub(crate) fn decode_pointer(value: &[u8]) -> Option<(u64, u64)> {
    if value.len() != POINTER_LEN || !value.starts_with(POINTER_MAGIC) {
        return None;
    }
    let id = u64::from_be_bytes(value[12..20].try_into().ok()?);
    let len = u64::from_be_bytes(value[20..28].try_into().ok()?);
    Some((id, len))
}

/// The name of payload file `id` in the store's payload folder.
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:016x}.bundle")
}

/// The ID of a payload file, from its name.
pub(crate) fn file_id(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".bundle")?;
    (hex.len() == 16).then(|| u64::from_str_radix(hex, 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_meta_record_is_not_a_length() {
        assert_eq!(meta_stored_len(&[1, 2, 3]), None);
        assert_eq!(decode_meta(&[0; 8]), None);
    }

    #[test]
    fn the_file_flag_rides_on_the_length() {
        let v = [0x80, 0, 0, 0, 0, 0, 0, 5];
        assert_eq!(meta_stored_len(&v), Some(StoredLen { len: 5, in_file: true }));
        let v = [0, 0, 0, 0, 0, 0, 0, 5];
        assert_eq!(meta_stored_len(&v), Some(StoredLen { len: 5, in_file: false }));
    }

    #[test]
    fn pointers_and_bundles_are_told_apart() {
        let p = encode_pointer(0x0102, 1 << 20);
        assert_eq!(decode_pointer(&p), Some((0x0102, 1 << 20)));
        assert_eq!(decode_pointer(&[0x9f; 28]), None, "a bundle is not a pointer");
        assert_eq!(decode_pointer(&p[..27]), None);
        assert_eq!(file_id(&file_name(0xabc)), Some(0xabc));
        assert_eq!(file_id("0000000000000abc.tmp"), None);
        assert_eq!(file_id("abc.bundle"), None);
    }
}
