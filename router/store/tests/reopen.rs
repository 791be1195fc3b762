//! What survives closing and reopening the store, and what the store refuses.

mod common;

use std::collections::BTreeMap;

use common::{destination, meta, payload};
use ferry_core::bundle::{BundleId, BundleMeta};
use ferry_core::store::{Store, StoreError, StoreStats};
use ferry_store::{RocksOptions, RocksStore};

/// Checks that `s` holds exactly `want` (bundle bytes by metadata), through
/// every read path.
fn assert_holds(s: &RocksStore, want: &BTreeMap<BundleId, (BundleMeta, Vec<u8>)>) {
    let all = s.all_meta().unwrap();
    assert_eq!(all.len(), want.len());
    for (m, (want_meta, want_bytes)) in all.iter().zip(want.values()) {
        assert_eq!(m, want_meta);
        assert_eq!(s.get_meta(&m.id).unwrap().as_ref(), Some(want_meta));
        assert_eq!(s.get_bytes(&m.id).unwrap().as_ref(), Some(want_bytes));
    }
    let bytes = want.values().map(|(_, b)| b.len() as u64).sum();
    assert_eq!(s.stats().unwrap(), StoreStats { bundles: want.len() as u64, bytes });

    let mut by_expiry: Vec<(u64, BundleId)> = want.values().map(|(m, _)| (m.expires_at, m.id.clone())).collect();
    by_expiry.sort();
    let ids: Vec<BundleId> = by_expiry.into_iter().map(|(_, id)| id).collect();
    assert_eq!(s.expiring_by(u64::MAX).unwrap(), ids);
    for d in 0..3 {
        let dst = destination(d);
        let want_ids: Vec<BundleId> =
            want.values().filter(|(m, _)| m.destination.to_string() == dst).map(|(m, _)| m.id.clone()).collect();
        assert_eq!(s.for_destination(&dst.parse().unwrap()).unwrap(), want_ids);
    }
}

#[test]
fn bundles_metadata_indexes_and_state_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = BTreeMap::new();
    {
        let s = RocksStore::open(dir.path()).unwrap();
        for seq in 0..200 {
            let m = meta("dtn://src/", seq);
            let b = payload(seq);
            s.put(&m, &b).unwrap();
            want.insert(m.id.clone(), (m, b));
        }
        // One big bundle, well past the blob threshold.
        let big = meta("ipn:7.1", 1);
        let big_bytes: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
        s.put(&big, &big_bytes).unwrap();
        want.insert(big.id.clone(), (big, big_bytes));
        s.put_state("node_id", b"dtn://me/").unwrap();
        assert_holds(&s, &want);
    }
    {
        let s = RocksStore::open(dir.path()).unwrap();
        assert_holds(&s, &want);
        assert_eq!(s.get_state("node_id").unwrap().as_deref(), Some(&b"dtn://me/"[..]));

        // Delete some one at a time, some in a batch; change the metadata of
        // others; replace one with different bytes.
        for seq in (0..200).step_by(5) {
            let id = meta("dtn://src/", seq).id;
            assert!(s.delete(&id).unwrap());
            want.remove(&id);
        }
        let batch: Vec<BundleId> = (1..200).step_by(5).map(|seq| meta("dtn://src/", seq).id).collect();
        let gone = meta("dtn://src/", 0).id;
        let mut ids = batch.clone();
        ids.push(gone);
        let found = s.delete_many(&ids).unwrap();
        assert_eq!(found.iter().filter(|&&f| f).count(), batch.len());
        assert!(!found[found.len() - 1]);
        for id in &batch {
            want.remove(id);
        }
        for seq in (2..200).step_by(5) {
            let mut m = meta("dtn://src/", seq);
            m.expires_at = 5;
            m.destination = destination(seq + 1).parse().unwrap();
            m.forwarded_to.push("dtn://peer/".parse().unwrap());
            assert!(s.update_meta(&m).unwrap());
            let bytes = want.remove(&m.id).unwrap().1;
            want.insert(m.id.clone(), (m, bytes));
        }
        let m = meta("dtn://src/", 3);
        s.put(&m, b"replaced").unwrap();
        want.insert(m.id.clone(), (m, b"replaced".to_vec()));
        assert_holds(&s, &want);
        // This time the memtables go to SST and blob files before closing.
        s.flush().unwrap();
    }
    let s = RocksStore::open(dir.path()).unwrap();
    assert_holds(&s, &want);
    assert_eq!(s.expiring_by(5).unwrap().len(), 40);
}

#[test]
fn large_bundles_go_to_blob_files() {
    let dir = tempfile::tempdir().unwrap();
    let s = RocksStore::open(dir.path()).unwrap();
    let big: Vec<u8> = vec![0xAB; 100_000];
    for seq in 0..20 {
        s.put(&meta("dtn://src/", seq), &big).unwrap();
    }
    s.flush().unwrap();
    let blobs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".blob"))
        .count();
    assert!(blobs > 0, "no blob files after flushing 2 MB of bundles");
    assert_eq!(s.get_bytes(&meta("dtn://src/", 7).id).unwrap().as_deref(), Some(&big[..]));
}

fn payload_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("payloads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn bundles_above_the_file_threshold_live_in_payload_files() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || RocksOptions { file_threshold: 10_000, ..RocksOptions::default() };
    let big = |seq: u64| -> Vec<u8> { (0..20_000 + seq as usize).map(|i| (i as u64 * 7 + seq) as u8).collect() };
    let s = RocksStore::open_with(dir.path(), opts()).unwrap();
    for seq in 0..3 {
        s.put(&meta("dtn://src/", seq), &big(seq)).unwrap();
    }
    s.put(&meta("dtn://src/", 9), b"small").unwrap();
    assert_eq!(payload_files(dir.path()).len(), 3, "one file per big bundle, none for the small one");
    assert_eq!(s.get_bytes(&meta("dtn://src/", 1).id).unwrap(), Some(big(1)));
    let stats = s.stats().unwrap();
    assert_eq!((stats.bundles, stats.bytes), (4, (0..3).map(|q| big(q).len() as u64).sum::<u64>() + 5));

    // New metadata leaves the bytes where they are.
    let mut m = meta("dtn://src/", 0);
    m.forwarded_to.push("dtn://peer/".parse().unwrap());
    assert!(s.update_meta(&m).unwrap());
    assert_eq!(s.get_bytes(&m.id).unwrap(), Some(big(0)));
    // Replacing a bundle's bytes swaps its file; deleting one removes its file.
    let before = payload_files(dir.path());
    s.put(&meta("dtn://src/", 2), &big(7)).unwrap();
    assert!(s.delete(&meta("dtn://src/", 1).id).unwrap());
    let after = payload_files(dir.path());
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after.iter().filter(|n| before.contains(n)).count(), 1, "only bundle 0's file is the same");
    assert_eq!(s.get_bytes(&meta("dtn://src/", 2).id).unwrap(), Some(big(7)));
    assert_eq!(s.get_bytes(&meta("dtn://src/", 1).id).unwrap(), None);
    drop(s);

    // What a crash leaves (a file no record points to, a half-written one)
    // goes at the next open; the rest is read back, also with another threshold.
    std::fs::write(dir.path().join("payloads/00000000000000ff.bundle"), b"orphan").unwrap();
    std::fs::write(dir.path().join("payloads/junk"), b"?").unwrap();
    let s = RocksStore::open(dir.path()).unwrap();
    assert_eq!(payload_files(dir.path()), after);
    assert_eq!(s.get_meta(&m.id).unwrap().unwrap().forwarded_to, m.forwarded_to);
    assert_eq!(s.get_bytes(&m.id).unwrap(), Some(big(0)));
    assert_eq!(s.get_bytes(&meta("dtn://src/", 2).id).unwrap(), Some(big(7)));
    assert_eq!(s.get_bytes(&meta("dtn://src/", 9).id).unwrap().as_deref(), Some(&b"small"[..]));
    assert_eq!(s.stats().unwrap().bundles, 3);
    // New files do not reuse the names of files that are there.
    drop(s);
    let s = RocksStore::open_with(dir.path(), opts()).unwrap();
    s.put(&meta("dtn://src/", 20), &big(20)).unwrap();
    assert_eq!(payload_files(dir.path()).len(), 3);
    assert!(s.delete_many(&[meta("dtn://src/", 0).id, meta("dtn://src/", 2).id]).unwrap().iter().all(|&f| f));
    assert_eq!(payload_files(dir.path()).len(), 1);
}

#[test]
fn a_payload_file_that_went_missing_is_an_error_not_a_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let s = RocksStore::open_with(dir.path(), RocksOptions { file_threshold: 100, ..RocksOptions::default() }).unwrap();
    let m = meta("dtn://src/", 1);
    s.put(&m, &[7; 1000]).unwrap();
    let name = payload_files(dir.path()).pop().unwrap();
    std::fs::write(dir.path().join("payloads").join(&name), [7; 10]).unwrap();
    let err = s.get_bytes(&m.id).unwrap_err().to_string();
    assert!(err.contains("holds 10 bytes, its record says 1000"), "{err}");
    std::fs::remove_file(dir.path().join("payloads").join(&name)).unwrap();
    let err = s.get_bytes(&m.id).unwrap_err().to_string();
    assert!(err.contains(&name), "{err}");
    assert!(s.delete(&m.id).unwrap(), "a damaged bundle can still be deleted");
}

#[test]
fn put_many_replaces_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = RocksStore::open(dir.path()).unwrap();
    let a = meta("dtn://src/", 1);
    let mut a2 = a.clone();
    a2.expires_at = 42;
    let b = meta("dtn://src/", 2);
    s.put_many(&[(&a, b"first"), (&b, b"b"), (&a2, b"second!")]).unwrap();
    assert_eq!(s.commit_stats().batches, 1);
    assert_eq!(s.get_bytes(&a.id).unwrap().as_deref(), Some(&b"second!"[..]));
    assert_eq!(s.get_meta(&a.id).unwrap(), Some(a2.clone()));
    assert_eq!(s.expiring_by(42).unwrap(), vec![a.id.clone()]);
    assert_eq!(s.expiring_by(u64::MAX).unwrap().len(), 2);
    assert_eq!(s.stats().unwrap(), StoreStats { bundles: 2, bytes: 8 });
    s.put_many(&[]).unwrap();
    assert_eq!(s.delete_many(&[]).unwrap(), Vec::<bool>::new());
}

#[test]
fn a_second_open_says_the_directory_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RocksStore::open(dir.path()).unwrap();
    let err = RocksStore::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("in use"), "{err}");
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    eprintln!("{err}");
}

#[test]
fn a_closed_store_refuses_writes_but_reads() {
    let dir = tempfile::tempdir().unwrap();
    let s = RocksStore::open(dir.path()).unwrap();
    let m = meta("dtn://src/", 1);
    s.put(&m, b"x").unwrap();
    s.close().unwrap();
    s.close().unwrap();
    assert!(matches!(s.put(&meta("dtn://src/", 2), b"y"), Err(StoreError::Closed)));
    assert!(matches!(s.delete(&m.id), Err(StoreError::Closed)));
    assert!(matches!(s.put_state("k", b"v"), Err(StoreError::Closed)));
    assert_eq!(s.get_bytes(&m.id).unwrap().as_deref(), Some(&b"x"[..]));
}

#[test]
fn undecodable_metadata_is_corrupt_and_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let bad = meta("dtn://src/", 1);
    let good = meta("dtn://src/", 2);
    {
        let s = RocksStore::open(dir.path()).unwrap();
        s.put(&bad, b"bad one").unwrap();
        s.put(&good, b"good").unwrap();
    }
    {
        // Damage the record behind the store's back.
        let db =
            rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), ["bundles", "meta", "state", "delivered"])
                .unwrap();
        let cf = db.cf_handle("meta").unwrap();
        db.put_cf(cf, bad.id.to_key(), b"\x00\x01").unwrap();
    }
    let s = RocksStore::open(dir.path()).unwrap();
    // Counted from the bundle's bytes, since the record cannot say.
    assert_eq!(s.stats().unwrap(), StoreStats { bundles: 2, bytes: 11 });
    match s.get_meta(&bad.id) {
        Err(StoreError::Corrupt { key }) => assert_eq!(key, bad.id.to_key()),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(s.all_meta(), Err(StoreError::Corrupt { .. })));
    assert_eq!(s.get_meta(&good.id).unwrap(), Some(good.clone()));
    // It can still be deleted.
    assert!(s.delete(&bad.id).unwrap());
    assert_eq!(s.all_meta().unwrap(), vec![good.clone()]);
    assert_eq!(s.expiring_by(u64::MAX).unwrap(), vec![good.id.clone()]);
    assert_eq!(s.stats().unwrap(), StoreStats { bundles: 1, bytes: 4 });
}

#[test]
fn a_store_with_the_old_index_families_opens_and_drops_them() {
    let dir = tempfile::tempdir().unwrap();
    let m = meta("dtn://src/", 1);
    {
        let s = RocksStore::open(dir.path()).unwrap();
        s.put(&m, b"kept").unwrap();
    }
    {
        // What a store written before the indexes left the disk looks like.
        let mut opts = rocksdb::Options::default();
        opts.create_missing_column_families(true);
        let names = ["bundles", "meta", "state", "delivered", "by_expiry", "by_destination"];
        let db = rocksdb::DB::open_cf(&opts, dir.path(), names).unwrap();
        db.put_cf(db.cf_handle("by_expiry").unwrap(), b"old index key", b"").unwrap();
    }
    let s = RocksStore::open(dir.path()).unwrap();
    assert_eq!(s.get_bytes(&m.id).unwrap().as_deref(), Some(&b"kept"[..]));
    assert_eq!(s.expiring_by(u64::MAX).unwrap(), vec![m.id.clone()]);
    assert_eq!(s.for_destination(&m.destination).unwrap(), vec![m.id.clone()]);
    s.close().unwrap();
    drop(s);
    let mut families = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
    families.sort();
    assert_eq!(families, ["bundles", "default", "delivered", "meta", "state"]);
}

fn done_channel() -> (ferry_store::OnDurable, std::sync::mpsc::Receiver<Result<(), StoreError>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    (Box::new(move |r| tx.send(r).unwrap()), rx)
}

#[test]
fn delivered_bundles_are_remembered_with_their_deletion_and_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let s = RocksStore::open(dir.path()).unwrap();
    let (a, b) = (meta("dtn://src/", 1), meta("dtn://src/", 2));
    s.put(&a, b"a").unwrap();
    s.put(&b, b"b").unwrap();
    let (done, rx) = done_channel();
    s.submit_delete_and_remember(std::slice::from_ref(&a.id), &[(a.id.clone(), 5_000)], &[], done);
    rx.recv().unwrap().unwrap();
    assert_eq!(s.get_bytes(&a.id).unwrap(), None);
    assert_eq!(s.delivered().unwrap(), vec![(a.id.clone(), 5_000)]);
    // One batch that forgets one and remembers others: the remembered win,
    // also over a forget of the same ID in that batch.
    let (c, d) = (meta("dtn://src/", 3), meta("dtn://src/", 4));
    s.put(&c, b"c").unwrap();
    let (done, rx) = done_channel();
    s.submit_delete_and_remember(
        std::slice::from_ref(&c.id),
        &[(c.id.clone(), 6_000), (d.id.clone(), 7_000)],
        &[a.id.clone(), d.id.clone()],
        done,
    );
    rx.recv().unwrap().unwrap();
    assert_eq!(s.delivered().unwrap(), vec![(c.id.clone(), 6_000), (d.id.clone(), 7_000)]);
    let (done, rx) = done_channel();
    s.submit_delete_and_remember(&[], &[(a.id.clone(), 5_000)], &[c.id.clone(), d.id.clone()], done);
    rx.recv().unwrap().unwrap();
    assert_eq!(s.delivered().unwrap(), vec![(a.id.clone(), 5_000)]);
    drop(s);

    let s = RocksStore::open(dir.path()).unwrap();
    assert_eq!(s.delivered().unwrap(), vec![(a.id.clone(), 5_000)]);
    assert_eq!(s.stats().unwrap().bundles, 1, "a remembered ID is not a stored bundle");
    let (done, rx) = done_channel();
    s.submit_forget_delivered(std::slice::from_ref(&a.id), done);
    rx.recv().unwrap().unwrap();
    assert!(s.delivered().unwrap().is_empty());
}

/// Bundles stored and deleted for a long time leave the write-ahead log
/// bounded, and an idle store without it: one column family (`state`, written once) never fills its
/// memtable, and without a cap on the log's total it pins every WAL file
/// written since (85 MB of log after 66 MB of bundles here; the soak suite
/// saw 500 MB an hour at 100 bundles/s with an empty store).
#[test]
fn the_wal_stays_bounded_while_bundles_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let opts = RocksOptions { max_wal_bytes: 16 << 20, ..RocksOptions::default() };
    let s = RocksStore::open_with(dir.path(), opts).unwrap();
    s.put_state("node_id", b"dtn://me/").unwrap();
    let wal_bytes = || -> u64 {
        std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum()
    };
    let mut peak = 0;
    // 66 MB of bundles through the store, never more than 100 at once.
    for seq in 0..60_000u64 {
        let m = meta("dtn://src/", seq);
        s.put(&m, &vec![(seq % 251) as u8; 1100]).unwrap();
        if seq >= 100 {
            s.delete(&meta("dtn://src/", seq - 100).id).unwrap();
        }
        if seq % 2000 == 0 {
            peak = peak.max(wal_bytes());
        }
    }
    peak = peak.max(wal_bytes());
    assert!(peak < 40 << 20, "the WAL reached {peak} bytes with a 16 MiB cap (66 MB went through)");
    // Once writes stop, the memtables are flushed and the log goes too
    // (the commit thread does it after 5 s without a write).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while wal_bytes() > 1 << 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(wal_bytes() <= 1 << 20, "an idle store kept {} bytes of log", wal_bytes());
    assert_eq!(s.get_state("node_id").unwrap().as_deref(), Some(&b"dtn://me/"[..]));
}

#[test]
fn deletes_and_replacements_are_right_for_bundles_written_lately_and_long_ago() {
    // The store keeps the committed state of the last tens of thousands of
    // writes in memory and reads older ones from RocksDB: both must count
    // bytes and remove payload files alike.
    let dir = tempfile::tempdir().unwrap();
    let opts = || RocksOptions { file_threshold: 1_000, ..RocksOptions::default() };
    let s = RocksStore::open_with(dir.path(), opts()).unwrap();
    let n: u64 = 100_000;
    let big = vec![7u8; 2_000];
    s.put(&meta("dtn://src/", 0), &big).unwrap();
    let small: Vec<(BundleMeta, Vec<u8>)> = (1..n).map(|q| (meta("dtn://src/", q), vec![1u8; 10])).collect();
    for chunk in small.chunks(10_000) {
        let items: Vec<(&BundleMeta, &[u8])> = chunk.iter().map(|(m, b)| (m, b.as_slice())).collect();
        s.put_many(&items).unwrap();
    }
    s.put(&meta("dtn://src/", n), &big).unwrap();
    assert_eq!(payload_files(dir.path()).len(), 2);
    assert_eq!(s.stats().unwrap(), StoreStats { bundles: n + 1, bytes: 2 * 2_000 + (n - 1) * 10 });

    // Long ago: the big bundle 0 becomes small, small bundle 1 goes.
    s.put(&meta("dtn://src/", 0), b"tiny").unwrap();
    assert!(s.delete(&meta("dtn://src/", 1).id).unwrap());
    // Lately: the big bundle n goes, small bundle n - 1 goes, twice.
    assert!(s.delete(&meta("dtn://src/", n).id).unwrap());
    assert!(s.delete(&meta("dtn://src/", n - 1).id).unwrap());
    assert!(!s.delete(&meta("dtn://src/", n - 1).id).unwrap());
    assert!(!s.delete(&meta("dtn://src/", 1).id).unwrap());
    assert!(payload_files(dir.path()).is_empty());
    let want = StoreStats { bundles: n - 2, bytes: 4 + (n - 3) * 10 };
    assert_eq!(s.stats().unwrap(), want);
    assert_eq!(s.get_bytes(&meta("dtn://src/", 0).id).unwrap().as_deref(), Some(&b"tiny"[..]));
    drop(s);
    let s = RocksStore::open_with(dir.path(), opts()).unwrap();
    assert_eq!(s.stats().unwrap(), want);
    assert!(s.update_meta(&meta("dtn://src/", 2)).unwrap());
    assert!(!s.update_meta(&meta("dtn://src/", n)).unwrap());
}
