//! Concurrent writers share syncs; a lone writer is not kept waiting.

mod common;

use common::meta;
use ferry_core::store::{Store, StoreStats};
use ferry_store::RocksStore;

#[test]
fn concurrent_puts_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let s = RocksStore::open(dir.path()).unwrap();
    const THREADS: u64 = 8;
    const PUTS: u64 = 200;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let s = &s;
            scope.spawn(move || {
                for i in 0..PUTS {
                    s.put(&meta("dtn://src/", t * 10_000 + i), &[t as u8; 100]).unwrap();
                }
            });
        }
    });
    let c = s.commit_stats();
    assert_eq!(c.writes, THREADS * PUTS);
    assert!(c.batches < c.writes, "no group commit: {c:?}");
    assert_eq!(s.stats().unwrap(), StoreStats { bundles: THREADS * PUTS, bytes: THREADS * PUTS * 100 });
    eprintln!("{} puts in {} synced batches", c.writes, c.batches);
}

#[test]
fn a_lone_writer_gets_one_sync_per_put() {
    let dir = tempfile::tempdir().unwrap();
    let s = RocksStore::open(dir.path()).unwrap();
    for i in 0..20 {
        s.put(&meta("dtn://src/", i), b"x").unwrap();
    }
    s.put_state("k", b"v").unwrap();
    // Nothing to delete: no write, no sync.
    assert!(!s.delete(&meta("dtn://src/", 999).id).unwrap());
    let c = s.commit_stats();
    assert_eq!((c.batches, c.writes), (21, 21));
}
