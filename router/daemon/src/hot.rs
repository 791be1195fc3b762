//! Recently stored small bundles, kept in memory for the transmission or
//! delivery that usually follows at once.
//!
//! On a busy link nearly every bundle is read back right after it was
//! written: to forward it, or to deliver it. Reading it from RocksDB costs a
//! trip to the blocking pool (two thread switches) per bundle, which was most
//! of a relay's time. The cache holds a copy of bundles up to
//! [`MAX_BUNDLE`] bytes, at most [`CAPACITY`] bytes in all, oldest evicted
//! first, and forgets a bundle when it is deleted. It is only ever a copy:
//! the store stays the truth, and a miss reads the store.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ferry_core::BundleId;

/// Bundles larger than this are not cached (large ones are read once, and
/// holding them would crowd out many small ones).
pub const MAX_BUNDLE: usize = 64 * 1024;
/// Bytes of bundles the cache holds at most.
pub const CAPACITY: usize = 32 * 1024 * 1024;

/// See the [module documentation](self).
#[derive(Debug)]
pub struct HotCache {
    map: HashMap<BundleId, Arc<[u8]>>,
    /// Insertion order, for eviction; may name bundles already removed.
    order: VecDeque<BundleId>,
    bytes: usize,
    capacity: usize,
}

impl Default for HotCache {
    fn default() -> Self {
        HotCache::with_capacity(CAPACITY)
    }
}

impl HotCache {
    /// A cache holding at most `capacity` bytes of bundles.
    pub fn with_capacity(capacity: usize) -> HotCache {
        HotCache { map: HashMap::new(), order: VecDeque::new(), bytes: 0, capacity }
    }

    /// Whether a bundle of `len` bytes would be kept.
    pub fn wants(&self, len: usize) -> bool {
        len <= MAX_BUNDLE && len <= self.capacity
    }

    /// Keeps `bytes` as the stored bundle `id` (ignored when too large).
    pub fn insert(&mut self, id: BundleId, bytes: Arc<[u8]>) {
        if !self.wants(bytes.len()) {
            return;
        }
        self.bytes += bytes.len();
        if let Some(old) = self.map.insert(id.clone(), bytes) {
            self.bytes -= old.len();
        } else {
            self.order.push_back(id);
        }
        while self.bytes > self.capacity {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(gone) = self.map.remove(&oldest) {
                self.bytes -= gone.len();
            }
        }
        // Removed bundles leave their IDs in `order`; drop them in bulk
        // once they outnumber the live ones, so the queue stays bounded.
        if self.order.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            self.order.retain(|id| map.contains_key(id));
        }
    }

    /// The bundle's bytes, if cached.
    pub fn get(&self, id: &BundleId) -> Option<Arc<[u8]>> {
        self.map.get(id).cloned()
    }

    /// Forgets a bundle (it was deleted from the store).
    pub fn remove(&mut self, id: &BundleId) {
        if let Some(gone) = self.map.remove(id) {
            self.bytes -= gone.len();
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bundles held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::CreationTimestamp;

    fn id(n: u64) -> BundleId {
        BundleId {
            source: "dtn://a/".parse().unwrap(),
            creation: CreationTimestamp { time: 1, seq: n },
            fragment: None,
        }
    }

    fn bytes(len: usize, fill: u8) -> Arc<[u8]> {
        vec![fill; len].into()
    }

    #[test]
    fn keeps_removes_and_replaces() {
        let mut c = HotCache::with_capacity(1000);
        c.insert(id(1), bytes(10, 1));
        c.insert(id(2), bytes(20, 2));
        assert_eq!(c.get(&id(1)).as_deref(), Some(&[1u8; 10][..]));
        assert_eq!(c.bytes(), 30);
        c.remove(&id(1));
        assert!(c.get(&id(1)).is_none());
        assert_eq!(c.bytes(), 20);
        c.insert(id(2), bytes(5, 3));
        assert_eq!(c.get(&id(2)).as_deref(), Some(&[3u8; 5][..]));
        assert_eq!((c.bytes(), c.len()), (5, 1));
    }

    #[test]
    fn evicts_the_oldest_to_stay_within_capacity() {
        let mut c = HotCache::with_capacity(100);
        for n in 0..10 {
            c.insert(id(n), bytes(30, n as u8));
            assert!(c.bytes() <= 100);
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&id(6)).is_none());
        assert!((7..10).all(|n| c.get(&id(n)).is_some()));
    }

    #[test]
    fn large_bundles_are_not_kept() {
        let mut c = HotCache::default();
        c.insert(id(1), bytes(MAX_BUNDLE + 1, 0));
        assert!(c.is_empty());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn the_eviction_queue_stays_bounded_under_churn() {
        let mut c = HotCache::with_capacity(1 << 20);
        for n in 0..100_000 {
            c.insert(id(n), bytes(8, 0));
            c.remove(&id(n));
        }
        assert!(c.is_empty());
        assert!(c.order.len() <= 1025, "{}", c.order.len());
    }
}
