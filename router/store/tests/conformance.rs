//! The store conformance suite from ferry-core, against RocksDB.

use std::sync::Mutex;

use ferry_core::store::conformance;
use ferry_store::{RocksOptions, RocksStore};

#[test]
fn rocks_store_conforms() {
    // Each check gets its own store in its own directory; the directories
    // outlive the stores (which the suite drops after each check).
    let dirs = Mutex::new(Vec::new());
    conformance::run_all(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RocksStore::open(dir.path()).expect("open store");
        dirs.lock().unwrap_or_else(|e| e.into_inner()).push(dir);
        store
    });
}

#[test]
fn rocks_store_with_every_bundle_in_a_payload_file_conforms() {
    let dirs = Mutex::new(Vec::new());
    conformance::run_all(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = RocksOptions { file_threshold: 0, ..RocksOptions::default() };
        let store = RocksStore::open_with(dir.path(), opts).expect("open store");
        dirs.lock().unwrap_or_else(|e| e.into_inner()).push(dir);
        store
    });
}
