//! The store conformance suite from ferry-core, against RocksDB.

use std::sync::Mutex;

use ferry_core::store::conformance;
use ferry_store::RocksStore;

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
