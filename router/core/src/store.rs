//! The `Store` trait: where bundles live between reception and the moment they are
//! delivered, forwarded for good, or deleted. [`MemStore`] is the in-memory one
//! (tests, the simulator); ferry-store has the durable RocksDB one.
//!
//! The promise every implementation keeps: when `put` returns `Ok`, the bundle is
//! as durable as the store can make it (for RocksDB: its write-ahead log is
//! synced), so that the caller may acknowledge it. Listings and routing only ever
//! read metadata; bundle bytes are read one bundle at a time, when needed.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::bundle::{BundleId, BundleMeta, DtnTime};
use crate::eid::Eid;

/// A store failure. Storage errors from an engine are carried as text because
/// the engines' error types differ; the kind says what the caller can do.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The engine failed (I/O error, disk full, corruption it detected).
    #[error("storage engine error: {0}")]
    Engine(String),
    /// A record in the store could not be decoded.
    #[error("corrupt record for key {key:?}")]
    Corrupt { key: Vec<u8> },
    /// The store is shutting down and takes no more writes.
    #[error("the store is closed")]
    Closed,
    /// Too little disk space is left: new bundles are refused (deletions
    /// still work) until space returns.
    #[error("storage full: {0}")]
    Full(String),
}

/// Counts for `/status/store` and listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    pub bundles: u64,
    pub bytes: u64,
}

/// Durable bundle storage. Methods take `&self`: implementations are shared
/// between threads, so that concurrent writers can share a sync (group commit).
pub trait Store: Send + Sync {
    /// Stores a bundle and its metadata; durable when it returns `Ok`.
    /// Storing an ID that is already there replaces it.
    fn put(&self, meta: &BundleMeta, bytes: &[u8]) -> Result<(), StoreError>;
    /// Replaces the metadata of a stored bundle (e.g. after forwarding it).
    /// Returns false when there is no such bundle.
    fn update_meta(&self, meta: &BundleMeta) -> Result<bool, StoreError>;
    /// The bundle's bytes.
    fn get_bytes(&self, id: &BundleId) -> Result<Option<Vec<u8>>, StoreError>;
    fn get_meta(&self, id: &BundleId) -> Result<Option<BundleMeta>, StoreError>;
    /// Deletes a bundle durably; returns whether it was there.
    fn delete(&self, id: &BundleId) -> Result<bool, StoreError>;
    /// Metadata of every stored bundle, ordered by ID (recovery and listings).
    fn all_meta(&self) -> Result<Vec<BundleMeta>, StoreError>;
    /// IDs of bundles whose expiry time is at or before `t`, earliest first.
    fn expiring_by(&self, t: DtnTime) -> Result<Vec<BundleId>, StoreError>;
    /// IDs of bundles for destination `eid`, ordered by ID.
    fn for_destination(&self, eid: &Eid) -> Result<Vec<BundleId>, StoreError>;
    fn stats(&self) -> Result<StoreStats, StoreError>;
    /// Small durable node state (node ID, registrations), by key.
    fn put_state(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// One map and no indexes: the queries that an index would serve
/// (`expiring_by`, `for_destination`, listings) are rare and scan and sort,
/// while every put and delete would pay for the indexes. A hash map, not a
/// B-tree: a B-tree moves its large values on every insertion and removal.
/// Together these were most of a simulation's time.
#[derive(Default)]
struct MemInner {
    bundles: HashMap<BundleId, (BundleMeta, Vec<u8>)>,
    state: HashMap<String, Vec<u8>>,
    bytes: u64,
}

/// The in-memory store: everything in a mutex-guarded map. Nothing survives
/// the process; "durable" means "in this map".
#[derive(Default)]
pub struct MemStore {
    inner: Mutex<MemInner>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        // A panic while holding the lock leaves consistent maps behind (every
        // mutation below is a sequence of infallible map operations).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemStore {
    fn put(&self, meta: &BundleMeta, bytes: &[u8]) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.bytes += bytes.len() as u64;
        if let Some((_, old_bytes)) = s.bundles.insert(meta.id.clone(), (meta.clone(), bytes.to_vec())) {
            s.bytes -= old_bytes.len() as u64;
        }
        Ok(())
    }

    fn update_meta(&self, meta: &BundleMeta) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let Some((old, _)) = s.bundles.get_mut(&meta.id) else {
            return Ok(false);
        };
        // In place: moving the bytes out and back would cost a copy each time.
        old.clone_from(meta);
        Ok(true)
    }

    fn get_bytes(&self, id: &BundleId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().bundles.get(id).map(|(_, b)| b.clone()))
    }

    fn get_meta(&self, id: &BundleId) -> Result<Option<BundleMeta>, StoreError> {
        Ok(self.lock().bundles.get(id).map(|(m, _)| m.clone()))
    }

    fn delete(&self, id: &BundleId) -> Result<bool, StoreError> {
        let mut s = self.lock();
        match s.bundles.remove(id) {
            Some((_, bytes)) => {
                s.bytes -= bytes.len() as u64;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn all_meta(&self) -> Result<Vec<BundleMeta>, StoreError> {
        let mut all: Vec<BundleMeta> = self.lock().bundles.values().map(|(m, _)| m.clone()).collect();
        all.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    fn expiring_by(&self, t: DtnTime) -> Result<Vec<BundleId>, StoreError> {
        let s = self.lock();
        let mut due: Vec<(DtnTime, &BundleId)> =
            s.bundles.values().filter(|(m, _)| m.expires_at <= t).map(|(m, _)| (m.expires_at, &m.id)).collect();
        due.sort_unstable();
        Ok(due.into_iter().map(|(_, id)| id.clone()).collect())
    }

    fn for_destination(&self, eid: &Eid) -> Result<Vec<BundleId>, StoreError> {
        let s = self.lock();
        let mut ids: Vec<&BundleId> =
            s.bundles.values().filter(|(m, _)| &m.destination == eid).map(|(m, _)| &m.id).collect();
        ids.sort_unstable();
        Ok(ids.into_iter().cloned().collect())
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let s = self.lock();
        Ok(StoreStats { bundles: s.bundles.len() as u64, bytes: s.bytes })
    }

    fn put_state(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.lock().state.insert(key.to_owned(), value.to_vec());
        Ok(())
    }

    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().state.get(key).cloned())
    }
}

/// The store conformance suite: every `Store` implementation runs these.
/// `fresh` makes an empty store.
pub mod conformance {
    use super::*;
    use crate::bundle::CreationTimestamp;

    fn meta(src: &str, seq: u64, dst: &str, expires_at: DtnTime) -> BundleMeta {
        BundleMeta {
            id: BundleId {
                source: src.parse().expect("test EID"),
                creation: CreationTimestamp { time: 1000, seq },
                fragment: None,
            },
            destination: dst.parse().expect("test EID"),
            report_to: Eid::Null,
            flags: 0,
            lifetime_ms: 1000,
            expires_at,
            received_at: 1000,
            age_at_receipt_ms: None,
            hop_count: None,
            previous_node: None,
            size: 0,
            payload_len: 0,
            total_adu_len: None,
            forwarded_to: vec![],
            discard_blocks: vec![],
            copies: None,
        }
    }

    /// Runs every check against stores made by `fresh`.
    pub fn run_all<S: Store>(fresh: impl Fn() -> S) {
        put_get_delete(&fresh());
        replace_keeps_indexes_right(&fresh());
        indexes(&fresh());
        meta_updates(&fresh());
        state(&fresh());
        concurrent_puts(&fresh());
        listings_order_by_id(&fresh());
        racing_writers_keep_indexes_right(&fresh());
    }

    pub fn put_get_delete<S: Store>(s: &S) {
        let m = meta("dtn://a/", 1, "dtn://b/in", 5000);
        assert_eq!(s.get_bytes(&m.id).unwrap(), None);
        s.put(&m, b"bundle bytes").unwrap();
        assert_eq!(s.get_bytes(&m.id).unwrap().as_deref(), Some(&b"bundle bytes"[..]));
        assert_eq!(s.get_meta(&m.id).unwrap(), Some(m.clone()));
        assert_eq!(s.stats().unwrap(), StoreStats { bundles: 1, bytes: 12 });
        assert!(s.delete(&m.id).unwrap());
        assert!(!s.delete(&m.id).unwrap());
        assert_eq!(s.get_bytes(&m.id).unwrap(), None);
        assert_eq!(s.get_meta(&m.id).unwrap(), None);
        assert_eq!(s.stats().unwrap(), StoreStats::default());
        assert!(s.expiring_by(u64::MAX).unwrap().is_empty());
        assert!(s.for_destination(&m.destination).unwrap().is_empty());
    }

    pub fn replace_keeps_indexes_right<S: Store>(s: &S) {
        let m = meta("dtn://a/", 1, "dtn://b/in", 5000);
        s.put(&m, b"one").unwrap();
        let mut m2 = m.clone();
        m2.expires_at = 9000;
        s.put(&m2, b"three").unwrap();
        assert_eq!(s.expiring_by(5000).unwrap(), vec![]);
        assert_eq!(s.expiring_by(9000).unwrap(), vec![m.id.clone()]);
        assert_eq!(s.stats().unwrap(), StoreStats { bundles: 1, bytes: 5 });
    }

    pub fn indexes<S: Store>(s: &S) {
        let a = meta("dtn://a/", 1, "dtn://b/in", 3000);
        let b = meta("dtn://a/", 2, "dtn://c/in", 2000);
        let c = meta("ipn:9.1", 3, "dtn://b/in", 4000);
        for m in [&a, &b, &c] {
            s.put(m, b"x").unwrap();
        }
        assert_eq!(s.expiring_by(1999).unwrap(), vec![]);
        assert_eq!(s.expiring_by(3000).unwrap(), vec![b.id.clone(), a.id.clone()]);
        assert_eq!(s.for_destination(&"dtn://b/in".parse().unwrap()).unwrap(), vec![a.id.clone(), c.id.clone()]);
        assert_eq!(s.for_destination(&"dtn://b/".parse().unwrap()).unwrap(), vec![]);
        let all: Vec<BundleId> = s.all_meta().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(all.len(), 3);
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
    }

    pub fn meta_updates<S: Store>(s: &S) {
        let mut m = meta("dtn://a/", 1, "dtn://b/in", 3000);
        assert!(!s.update_meta(&m).unwrap());
        s.put(&m, b"payload").unwrap();
        m.forwarded_to.push("dtn://peer/".parse().unwrap());
        m.expires_at = 100;
        assert!(s.update_meta(&m).unwrap());
        assert_eq!(s.get_meta(&m.id).unwrap(), Some(m.clone()));
        assert_eq!(s.get_bytes(&m.id).unwrap().as_deref(), Some(&b"payload"[..]));
        assert_eq!(s.expiring_by(100).unwrap(), vec![m.id.clone()]);
        assert_eq!(s.expiring_by(99).unwrap(), vec![]);
    }

    pub fn state<S: Store>(s: &S) {
        assert_eq!(s.get_state("node_id").unwrap(), None);
        s.put_state("node_id", b"dtn://x/").unwrap();
        s.put_state("node_id", b"dtn://y/").unwrap();
        assert_eq!(s.get_state("node_id").unwrap().as_deref(), Some(&b"dtn://y/"[..]));
    }

    pub fn concurrent_puts<S: Store>(s: &S) {
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                scope.spawn(move || {
                    for i in 0..50u64 {
                        let m = meta("dtn://a/", t * 1000 + i, "dtn://b/in", 5000);
                        s.put(&m, &[t as u8; 10]).unwrap();
                    }
                });
            }
        });
        assert_eq!(s.stats().unwrap(), StoreStats { bundles: 200, bytes: 2000 });
    }

    /// Listings come back in `BundleId` order even where the IDs' byte
    /// encodings sort differently (`ipn:10.1` before `ipn:9.1`); expiry ties
    /// are in ID order too.
    pub fn listings_order_by_id<S: Store>(s: &S) {
        let a = meta("ipn:10.1", 1, "dtn://b/in", 3000);
        let b = meta("ipn:9.1", 1, "dtn://b/in", 3000);
        let c = meta("dtn://a/", 7, "dtn://b/in", 3000);
        for m in [&a, &b, &c] {
            s.put(m, b"x").unwrap();
        }
        let mut want = vec![a.id.clone(), b.id.clone(), c.id.clone()];
        want.sort();
        let all: Vec<BundleId> = s.all_meta().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(all, want);
        assert_eq!(s.for_destination(&"dtn://b/in".parse().unwrap()).unwrap(), want);
        assert_eq!(s.expiring_by(3000).unwrap(), want);
    }

    /// Threads put, update and delete the same few IDs at once; afterwards
    /// every index entry matches exactly one stored bundle's metadata and the
    /// stats match the bundles.
    pub fn racing_writers_keep_indexes_right<S: Store>(s: &S) {
        let dsts = ["dtn://b/in", "dtn://c/in"];
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                scope.spawn(move || {
                    let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                    for _ in 0..150 {
                        // xorshift64: deterministic per thread, no rand crate.
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let mut m = meta("dtn://a/", x % 8, dsts[(x >> 8) as usize % 2], 1000 + (x >> 16) % 50);
                        match (x >> 32) % 3 {
                            0 => s.put(&m, &vec![t as u8; ((x >> 40) % 64) as usize]).unwrap(),
                            1 => {
                                m.forwarded_to.push("dtn://peer/".parse().unwrap());
                                s.update_meta(&m).unwrap();
                            }
                            _ => {
                                s.delete(&m.id).unwrap();
                            }
                        }
                    }
                });
            }
        });
        let all = s.all_meta().unwrap();
        let mut ids: Vec<BundleId> = all.iter().map(|m| m.id.clone()).collect();
        ids.sort();
        let mut expiring = s.expiring_by(u64::MAX).unwrap();
        expiring.sort();
        assert_eq!(expiring, ids, "one expiry entry per bundle");
        let mut by_dst: Vec<BundleId> =
            dsts.iter().flat_map(|d| s.for_destination(&d.parse().unwrap()).unwrap()).collect();
        by_dst.sort();
        assert_eq!(by_dst, ids, "one destination entry per bundle");
        let mut bytes = 0;
        for m in &all {
            assert!(s.expiring_by(m.expires_at).unwrap().contains(&m.id));
            assert!(!s.expiring_by(m.expires_at - 1).unwrap().contains(&m.id));
            assert!(s.for_destination(&m.destination).unwrap().contains(&m.id));
            bytes += s.get_bytes(&m.id).unwrap().expect("stored bundle has bytes").len() as u64;
        }
        assert_eq!(s.stats().unwrap(), StoreStats { bundles: all.len() as u64, bytes });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mem_store_conforms() {
        super::conformance::run_all(super::MemStore::new);
    }
}
