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

/// A channel-backed `OnDurable` and the receiver that learns the outcome.
fn notified() -> (ferry_store::OnDurable, std::sync::mpsc::Receiver<Result<(), ferry_core::store::StoreError>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    (
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
        rx,
    )
}

#[test]
fn submitted_puts_are_durable_when_notified_and_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    const SUBMITS: u64 = 200;
    {
        let s = RocksStore::open(dir.path()).unwrap();
        // Queue everything before waiting for anything: nothing blocks, and
        // the commit thread groups whatever piled up during each sync.
        let receivers: Vec<_> = (0..SUBMITS)
            .map(|i| {
                let (done, rx) = notified();
                s.submit_put_many(vec![(meta("dtn://src/", i), vec![i as u8; 10])], done);
                (i, rx)
            })
            .collect();
        for (i, rx) in receivers {
            rx.recv().unwrap().unwrap();
            // Visible to readers once notified.
            assert_eq!(s.get_bytes(&meta("dtn://src/", i).id).unwrap().unwrap(), vec![i as u8; 10]);
        }
        let c = s.commit_stats();
        assert_eq!(c.writes, SUBMITS);
        assert!(c.batches < c.writes, "no group commit: {c:?}");
        assert_eq!(s.stats().unwrap(), StoreStats { bundles: SUBMITS, bytes: SUBMITS * 10 });

        // A batch of deletes, some of IDs that are not there.
        let ids: Vec<_> = (0..SUBMITS / 2).chain([10_000, 10_001]).map(|i| meta("dtn://src/", i).id).collect();
        let (done, rx) = notified();
        s.submit_delete_many(&ids, done);
        rx.recv().unwrap().unwrap();
        assert_eq!(s.stats().unwrap().bundles, SUBMITS / 2);
    }
    // Everything notified survives a reopen.
    let s = RocksStore::open(dir.path()).unwrap();
    assert_eq!(s.stats().unwrap(), StoreStats { bundles: SUBMITS / 2, bytes: SUBMITS / 2 * 10 });
    assert!(s.get_bytes(&meta("dtn://src/", SUBMITS - 1).id).unwrap().is_some());
}

#[test]
fn a_submit_that_writes_nothing_is_told_at_once_and_a_closed_store_says_closed() {
    let dir = tempfile::tempdir().unwrap();
    let s = RocksStore::open(dir.path()).unwrap();
    let (done, rx) = notified();
    s.submit_delete_many(&[meta("dtn://src/", 1).id], done);
    rx.recv().unwrap().unwrap();
    assert_eq!(s.commit_stats().batches, 0, "nothing to delete: no sync");

    s.close().unwrap();
    let (done, rx) = notified();
    s.submit_put_many(vec![(meta("dtn://src/", 2), b"x".to_vec())], done);
    assert!(matches!(rx.recv().unwrap(), Err(ferry_core::store::StoreError::Closed)));
}
