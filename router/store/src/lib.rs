//! ferry-store: the durable bundle store, on RocksDB.
//!
//! [`RocksStore`] implements [`ferry_core::store::Store`]: bundle bytes, their
//! metadata and a little node state, in one RocksDB database. It runs the same conformance suite as the in-memory
//! store (`ferry_core::store::conformance`).
//!
//! # Layout
//!
//! - `src/lib.rs`: [`RocksStore`], its options, and the `Store` implementation.
//! - `src/commit.rs`: the commit thread (group commit) and its completion
//!   watermark.
//! - `src/keys.rs`: the on-disk layout below.
//! - `src/files.rs`: payload files, for big bundles.
//!
//! One column family per kind of record; keys order like what they index:
//!
//! | CF               | key                                          | value |
//! |------------------|----------------------------------------------|-------|
//! | `bundles`        | [`BundleId::to_key`]                         | the bundle's bytes, or a pointer to its payload file |
//! | `meta`           | bundle key                                   | stored length (u64 BE; top bit: in a payload file) ++ [`BundleMeta::to_bytes`] |
//! | `state`          | UTF-8 key                                    | bytes |
//! | `delivered`      | bundle key                                   | DTN time (u64 BE) until which a delivered bundle is remembered |
//!
//! Bundles of at least [`RocksOptions::file_threshold`] bytes (256 KiB) are
//! kept in a file of their own, `payloads/<16 hex digits>.bundle`, and their
//! `bundles` value is a 28-byte pointer (a zero byte, `ferry-file`, a zero
//! byte, the file's number and the length; a bundle never starts with a zero
//! byte). RocksDB would write such a bundle twice (its WAL, then a blob file
//! when the memtable is flushed); a file is written once.
//!
//! `bundles` has BlobDB enabled: values of at least
//! [`RocksOptions::min_blob_size`] bytes go to blob files when the memtable is
//! flushed, so big payloads are not rewritten by every LSM compaction, and
//! reading metadata never pages them in. Listings, recovery and `stats()`
//! read `meta` only; bundle bytes are read one bundle at a time with
//! [`Store::get_bytes`]. `stats()` is O(1): the counts are kept in memory,
//! counted from `meta` alone when the store opens (that is why `meta` records
//! carry the stored length).
//!
//! There are no index column families: a put writes two keys and a delete
//! two tombstones. The node keeps its expiry and destination indexes in
//! memory, rebuilt from `meta` at start-up, so [`Store::expiring_by`] and
//! [`Store::for_destination`] scan `meta` (O(bundles)) for the rare caller
//! that asks the store. Stores written with the old `by_expiry` and
//! `by_destination` families lose them when opened.
//!
//! # Durability
//!
//! When `put`, `put_many`, `update_meta`, `delete`, `delete_many` or
//! `put_state` return `Ok` (or the [`OnDurable`] callback of
//! `submit_put_many` / `submit_delete_many` is called with `Ok`), the change
//! is in RocksDB's write-ahead log and the log has been synced (`WriteOptions::set_sync(true)`): it survives a process
//! crash and a power cut, so the caller may acknowledge the bundle (TCPCL
//! XFER_ACK, API success). A change becomes visible to readers only when it is
//! durable: a reader never sees a bundle that a crash could still take away.
//! Each call's changes (bundle, metadata) are written in one atomic batch, so
//! `bundles` and `meta` always agree after a crash. A payload file is written
//! and synced (with its folder) before the batch that points to it, and
//! removed only after the batch that stopped pointing to it: a crash leaves at
//! worst files nothing points to, which the next open removes.
//!
//! # Group commit
//!
//! An fsync costs milliseconds; one per bundle would cap the router at a few
//! hundred bundles a second. So writes go through one commit thread
//! (`commit.rs`): callers decide their changes under a short writer lock (the
//! read-before-write that keeps the indexes right), queue them and wait; the
//! thread writes everything queued as one batch with one sync and wakes the
//! waiters. A lone caller is written at once (no timer waits for company);
//! callers arriving during a sync share the next one. [`RocksStore::commit_stats`]
//! counts batches against writes.
//!
//! Callers that must not block (ferryd's async tasks) use
//! [`RocksStore::submit_put_many`] and [`RocksStore::submit_delete_many`]: the
//! same request, queued the same way, but instead of a parked thread per
//! write the commit thread calls an [`OnDurable`] callback once the group is
//! synced. Parking and waking a thread per write cost more CPU than the write
//! itself for small bundles.
//!
//! Memory: until its write returns, a queued request owns its bundle's bytes
//! (a copy for `put`; `submit_put_many` takes them over) and the group's
//! batch copies them, freeing each request's copy as it goes;
//! [`RocksOptions::max_group_bytes`] bounds a group. Memtables hold bundle
//! bytes, blobs included, until they are flushed:
//! [`RocksOptions::memtable_budget`] bounds them all together. (The `Store`
//! trait hands `put` the whole bundle as one slice, so a bundle is in memory
//! once anyway.)
//!
//! Because queued changes are not in RocksDB yet, the writer lock also guards
//! an overlay of pending per-bundle state: a `delete` right after a
//! concurrent `put` of the same ID sees that put, so the two serialize in lock
//! order and the indexes stay right.
//!
//! # Errors
//!
//! RocksDB errors become [`StoreError::Engine`] with RocksDB's message; a
//! `meta` record or index key that does not decode is [`StoreError::Corrupt`].
//! After a failed commit the store refuses writes (its in-memory view may be
//! ahead of the disk); reopen it. A data directory that another process (or
//! another `RocksStore` in this one) has open is refused with an error that
//! says so.

mod commit;
mod files;
mod keys;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use ferry_core::bundle::{BundleId, BundleMeta, DtnTime};
use ferry_core::eid::Eid;
use ferry_core::store::{Store, StoreError, StoreStats};
use rocksdb::{BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, Options, ReadOptions, DB};

use crate::commit::{Completion, Delta, GroupLimits, Notifier, Op, Request};
use crate::files::PayloadFiles;
use crate::keys::{Cf, StoredLen};

/// Told when a write handed to [`RocksStore::submit_put_many`] (or
/// [`RocksStore::submit_delete_many`]) is durable (`Ok`) or failed. Called
/// exactly once, possibly before the submit call returns (an error found
/// while queueing, or nothing to write). It runs on the store's commit thread:
/// it must be quick and must not block (send on a channel, wake a task).
pub type OnDurable = Box<dyn FnOnce(Result<(), StoreError>) + Send + 'static>;

/// Tuning for [`RocksStore::open_with`]. `Default` is what `open` uses.
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Bundles of at least this many bytes are kept in a file of their own
    /// (`<store>/payloads/`), written once and synced with their group,
    /// instead of in RocksDB (its WAL, then a blob file). Default 256 KiB;
    /// `u64::MAX` keeps every bundle in RocksDB.
    pub file_threshold: u64,
    /// Bundles of at least this many bytes (and below `file_threshold`) go
    /// to BlobDB blob files instead of the LSM tree. Default 4 KiB.
    pub min_blob_size: u64,
    /// Target size of one blob file. Default 256 MiB.
    pub blob_file_size: u64,
    /// A commit group stops taking queued requests once it holds this many
    /// bytes (one request may take it past). While it is written, a group is
    /// in memory twice (the requests, then RocksDB's batch). Default 8 MiB:
    /// big enough that a sync is shared by several large bundles, small
    /// enough not to matter for memory.
    pub max_group_bytes: usize,
    /// ...or this many requests. Default 1024.
    pub max_group_requests: usize,
    /// Memtable size per column family. Default 16 MiB.
    pub write_buffer_size: usize,
    /// New bundles are refused ([`StoreError::Full`]) when storing them would
    /// leave less than this many bytes free on the store's filesystem, so
    /// that the disk never fills up under RocksDB (which then stops writing
    /// altogether) and deletions always have room. Default 64 MiB.
    pub min_free_bytes: u64,
    /// Memtables of all column families together, at most (RocksDB's
    /// `db_write_buffer_size`: past it the largest is flushed early).
    /// Memtables hold bundle bytes until they are flushed, blobs included, so
    /// this is most of the store's share of the daemon's memory. Default
    /// 48 MiB.
    pub memtable_budget: usize,
    /// The write-ahead log's files together, at most, before the column
    /// families holding the oldest of them are flushed (RocksDB's
    /// `max_total_wal_size`). Default 64 MiB.
    pub max_wal_bytes: u64,
}

impl Default for RocksOptions {
    fn default() -> RocksOptions {
        RocksOptions {
            file_threshold: 256 << 10,
            min_free_bytes: 64 << 20,
            min_blob_size: 4096,
            blob_file_size: 256 << 20,
            max_group_bytes: 8 << 20,
            max_group_requests: 1024,
            write_buffer_size: 16 << 20,
            memtable_budget: 48 << 20,
            max_wal_bytes: 64 << 20,
        }
    }
}

/// How many durable batches the commit thread wrote, and how many write
/// requests (one per `put`, `put_many`, `delete`... call that changed
/// something) they carried. `writes / batches` is the mean group size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Synced write batches (one WAL sync each).
    pub batches: u64,
    /// Requests written.
    pub writes: u64,
}

/// A bundle's state as the writer sees it: what is in `meta`, or what a queued
/// request will put there.
#[derive(Debug, Clone)]
struct Stored {
    /// Length of the stored bundle bytes.
    len: u64,
    /// The payload file holding them, if they are not in `bundles`.
    file: Option<u64>,
}

impl Stored {
    fn stored_len(&self) -> StoredLen {
        StoredLen { len: self.len, in_file: self.file.is_some() }
    }
}

/// The overlay entry of a bundle with a queued, unwritten change.
struct Pending {
    /// Sequence number of the request that made the change.
    seq: u64,
    /// `None`: the queued change deletes it.
    state: Option<Stored>,
}

/// Committed states kept by [`Recent`] per generation: two generations hold
/// at most twice this many (a few MB).
const RECENT_PER_GENERATION: usize = 32 * 1024;

/// The committed state of bundles written lately, so that the delete (or
/// update) that usually follows a put soon after does not read `meta` back
/// from RocksDB: on a relay that read was a tenth of the store's time.
///
/// Two generations: entries go into `young`; when it is full it becomes
/// `old` and the previous `old` is dropped. A key is in at most one of them
/// with its state as committed (written and synced); a key in neither is
/// read from RocksDB. Guarded by the writer lock, like the overlay.
#[derive(Default)]
struct Recent {
    young: HashMap<Vec<u8>, Stored>,
    old: HashMap<Vec<u8>, Stored>,
}

impl Recent {
    fn get(&self, key: &[u8]) -> Option<&Stored> {
        self.young.get(key).or_else(|| self.old.get(key))
    }

    /// `key` now has `state` on disk (`None`: it is gone).
    fn committed(&mut self, key: &[u8], state: Option<&Stored>) {
        self.old.remove(key);
        match state {
            None => {
                self.young.remove(key);
            }
            Some(s) => {
                if self.young.len() >= RECENT_PER_GENERATION {
                    self.old = std::mem::take(&mut self.young);
                }
                self.young.insert(key.to_vec(), s.clone());
            }
        }
    }

    fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }
}

/// Guarded by the writer lock.
struct WriterState {
    /// `None` once the store is closed.
    sender: Option<Sender<Request>>,
    next_seq: u64,
    pending: HashMap<Vec<u8>, Pending>,
    recent: Recent,
}

impl WriterState {
    /// Drops the overlay entries that these (now written or failed) requests
    /// set, unless a later queued request has replaced them. Written ones
    /// move to [`Recent`]; after a failure nothing is trusted any more.
    pub(crate) fn forget_pending(&mut self, group: &[Request], written: bool) {
        if !written {
            self.recent.clear();
        }
        for r in group {
            for k in &r.keys {
                if self.pending.get(k).is_some_and(|p| p.seq == r.seq) {
                    if let Some(p) = self.pending.remove(k) {
                        if written {
                            self.recent.committed(k, p.state.as_ref());
                        }
                    }
                }
            }
        }
    }
}

/// What the store's handle and its commit thread share.
pub(crate) struct Shared {
    db: DB,
    files: PayloadFiles,
    file_threshold: u64,
    /// The store's folder and the free space to keep on its filesystem.
    path: PathBuf,
    min_free: u64,
    writer: Mutex<WriterState>,
    stats: Mutex<StoreStats>,
    completion: Completion,
}

impl Shared {
    pub(crate) fn cf(&self, cf: Cf) -> Result<&ColumnFamily, StoreError> {
        // Every CF is created at open; a missing one means the handle is broken.
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| StoreError::Engine(format!("column family {} is missing", cf.name())))
    }

    fn writer_state(&self) -> MutexGuard<'_, WriterState> {
        // Writer-state updates are single map operations and counter bumps;
        // nothing is left half-done by a panic.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats_lock(&self) -> MutexGuard<'_, StoreStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_pinned_cf(self.cf(cf)?, key).map_err(engine)?.map(|v| v.to_vec()))
    }

    /// A bundle's committed state, from `meta` (and, only when the record is
    /// too damaged to say, the length of its bytes).
    fn stored(&self, bundle_key: &[u8]) -> Result<Option<Stored>, StoreError> {
        let Some(value) = self.db.get_pinned_cf(self.cf(Cf::Meta)?, bundle_key).map_err(engine)? else {
            return Ok(None);
        };
        Ok(Some(self.stored_from_record(bundle_key, &value)?))
    }

    fn stored_from_record(&self, bundle_key: &[u8], value: &[u8]) -> Result<Stored, StoreError> {
        match keys::meta_stored_len(value) {
            Some(StoredLen { len, in_file: false }) => Ok(Stored { len, file: None }),
            Some(StoredLen { len, in_file: true }) => {
                let pointer = self.db.get_pinned_cf(self.cf(Cf::Bundles)?, bundle_key).map_err(engine)?;
                match pointer.as_deref().and_then(keys::decode_pointer) {
                    Some((id, _)) => Ok(Stored { len, file: Some(id) }),
                    None => Err(StoreError::Corrupt { key: bundle_key.to_vec() }),
                }
            }
            None => {
                let bytes = self.db.get_pinned_cf(self.cf(Cf::Bundles)?, bundle_key).map_err(engine)?;
                Ok(Stored { len: bytes.map_or(0, |b| b.len() as u64), file: None })
            }
        }
    }

    /// Refuses `bytes` more of new bundles if they would leave less than
    /// `min_free` bytes free on the store's filesystem.
    fn check_room(&self, bytes: u64) -> Result<(), StoreError> {
        if bytes == 0 || self.min_free == 0 {
            return Ok(());
        }
        let Some(free) = free_bytes(&self.path) else { return Ok(()) };
        if free < self.min_free.saturating_add(bytes) {
            return Err(StoreError::Full(format!(
                "{} has {} MiB free; {} MiB are kept free, and these bundles need {} KiB",
                self.path.display(),
                free >> 20,
                self.min_free >> 20,
                bytes.div_ceil(1024)
            )));
        }
        Ok(())
    }

    /// A bundle's bytes: its `bundles` value, or the payload file it points to.
    fn bundle_bytes(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(value) = self.db.get_pinned_cf(self.cf(Cf::Bundles)?, key).map_err(engine)? else {
            return Ok(None);
        };
        let Some((id, len)) = keys::decode_pointer(&value) else {
            return Ok(Some(value.to_vec()));
        };
        drop(value);
        match self.files.read(id, len) {
            Ok(bytes) => Ok(Some(bytes)),
            // Deleted since its record was read: gone, as a reader a moment
            // later would see it.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && self.db.get_pinned_cf(self.cf(Cf::Bundles)?, key).map_err(engine)?.is_none() =>
            {
                Ok(None)
            }
            Err(e) => Err(StoreError::Engine(format!("payload file of a stored bundle: {e}"))),
        }
    }
}

/// Bytes an unprivileged user may still write on `path`'s filesystem;
/// `None` if the system will not say.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path; statvfs writes only into `st`,
    // which is read only if it succeeded.
    let st = unsafe {
        if libc::statvfs(c.as_ptr(), st.as_mut_ptr()) != 0 {
            return None;
        }
        st.assume_init()
    };
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

pub(crate) fn engine(e: rocksdb::Error) -> StoreError {
    StoreError::Engine(e.into_string())
}

/// A durable [`Store`] on RocksDB. See the crate docs for the layout, the
/// durability promise and group commit.
///
/// Share it between threads (`Arc<RocksStore>` or scoped borrows): concurrent
/// writers share syncs. Dropping it finishes queued writes and stops the
/// commit thread; call [`RocksStore::flush`] first on an orderly shutdown.
pub struct RocksStore {
    shared: Arc<Shared>,
    committer: Mutex<Option<JoinHandle<()>>>,
    path: PathBuf,
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RocksStore {
    /// Opens (creating if needed) the store in directory `path`, with default
    /// options.
    pub fn open(path: &Path) -> Result<RocksStore, StoreError> {
        RocksStore::open_with(path, RocksOptions::default())
    }

    /// Opens (creating if needed) the store in directory `path`.
    ///
    /// Counts the stored bundles by scanning `meta` (never `bundles`) and
    /// starts the commit thread. Fails with a message saying the data
    /// directory is in use if another process, or another open `RocksStore`,
    /// holds it.
    pub fn open_with(path: &Path, options: RocksOptions) -> Result<RocksStore, StoreError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        // Recovery stops at the first damaged WAL record (RocksDB's default,
        // stated here because the durability promise rests on it): everything
        // synced before it is replayed.
        db_opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        db_opts.set_db_write_buffer_size(options.memtable_budget);
        // A WAL file is kept until every column family with data in it has
        // flushed that data. `state` is written once (the node ID) and
        // then rarely, so without a cap its memtable never fills and pins
        // every WAL file written since: the soak suite saw a store with no
        // bundles grow by 500 MB an hour. Past this total, RocksDB flushes
        // the families holding the oldest WAL, and the files go.
        db_opts.set_max_total_wal_size(options.max_wal_bytes);

        let cfs = Cf::ALL.iter().map(|&cf| {
            let mut o = Options::default();
            o.set_write_buffer_size(options.write_buffer_size);
            if cf == Cf::Bundles {
                o.set_enable_blob_files(true);
                o.set_min_blob_size(options.min_blob_size);
                o.set_blob_file_size(options.blob_file_size);
                // Without blob GC, blob files of deleted bundles are only
                // reclaimed when every blob in them is dead.
                o.set_enable_blob_gc(true);
                // Each compaction of this CF also relocates the live blobs of
                // the oldest blob files (the GC above): compacting after every
                // 4 flushes, as RocksDB does by default, writes big payloads
                // over and over while bundles pour in. Its SST files hold
                // keys and blob references only (or small bundles), so more
                // of them may wait in level 0.
                o.set_level_zero_file_num_compaction_trigger(16);
                o.set_level_zero_slowdown_writes_trigger(48);
                o.set_level_zero_stop_writes_trigger(64);
            }
            if cf == Cf::Meta {
                // Every put reads `meta` first (is the ID there already?) and
                // almost always finds nothing: bloom filters, in the memtable
                // and in the SST files, answer that without a search.
                o.set_memtable_prefix_bloom_ratio(0.1);
                o.set_memtable_whole_key_filtering(true);
                let mut table = BlockBasedOptions::default();
                table.set_bloom_filter(10.0, false);
                o.set_block_based_table_factory(&table);
            }
            ColumnFamilyDescriptor::new(cf.name(), o)
        });
        // A store from before the indexes left the disk still has their
        // families: RocksDB opens a store only with all of them, so they are
        // opened, then dropped.
        let existing = DB::list_cf(&db_opts, path).unwrap_or_default();
        let legacy: Vec<&str> = keys::LEGACY_CFS.into_iter().filter(|n| existing.iter().any(|e| e == n)).collect();
        let cfs = cfs.chain(legacy.iter().map(|n| ColumnFamilyDescriptor::new(*n, Options::default())));
        let mut db = DB::open_cf_descriptors(&db_opts, path, cfs).map_err(|e| open_error(path, e))?;
        for name in legacy {
            db.drop_cf(name).map_err(|e| {
                StoreError::Engine(format!("cannot drop the old column family {name} in {}: {e}", path.display()))
            })?;
            tracing::info!(path = %path.display(), family = name, "dropped an index column family the store no longer keeps");
        }

        let files = PayloadFiles::open(path).map_err(StoreError::Engine)?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            db,
            files,
            file_threshold: options.file_threshold,
            path: path.to_owned(),
            min_free: options.min_free_bytes,
            writer: Mutex::new(WriterState {
                sender: Some(tx),
                next_seq: 1,
                pending: HashMap::new(),
                recent: Recent::default(),
            }),
            stats: Mutex::new(StoreStats::default()),
            completion: Completion::default(),
        });
        let (counted, referenced) = count(&shared)?;
        *shared.stats_lock() = counted;
        let removed = shared.files.remove_unreferenced(&referenced).map_err(StoreError::Engine)?;
        if removed > 0 {
            tracing::info!(path = %path.display(), files = removed, "removed payload files that no bundle points to (left by a crash)");
        }

        let limits =
            GroupLimits { max_bytes: options.max_group_bytes.max(1), max_requests: options.max_group_requests.max(1) };
        let thread_shared = Arc::clone(&shared);
        let committer = std::thread::Builder::new()
            .name("ferry-store-commit".to_owned())
            .spawn(move || commit::run(thread_shared, rx, limits))
            .map_err(|e| StoreError::Engine(format!("cannot start the commit thread: {e}")))?;
        tracing::info!(path = %path.display(), bundles = counted.bundles, bytes = counted.bytes, "store opened");
        Ok(RocksStore { shared, committer: Mutex::new(Some(committer)), path: path.to_owned() })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores several bundles in one batch with one sync. Later items replace
    /// earlier ones with the same ID. Durable when it returns `Ok`.
    pub fn put_many(&self, items: &[(&BundleMeta, &[u8])]) -> Result<(), StoreError> {
        let mut txn = Txn::begin(&self.shared)?;
        for (meta, bytes) in items {
            txn.put(meta, bytes)?;
        }
        txn.commit()
    }

    /// Queues several bundles for storing in one batch and returns at once;
    /// `done` is told when they are durable (the same promise as
    /// [`RocksStore::put_many`] returning `Ok`). Takes the bytes by value so
    /// that they are not copied on the way.
    ///
    /// For async callers: nothing blocks but the short writer lock, so no
    /// thread is parked per write. Changes are visible to readers, and to
    /// later writes' read-before-write, exactly as with `put_many`.
    pub fn submit_put_many(&self, items: Vec<(BundleMeta, Vec<u8>)>, done: OnDurable) {
        self.submit(done, |txn| items.into_iter().try_for_each(|(meta, bytes)| txn.put_owned(&meta, bytes)));
    }

    /// Queues the deletion of several bundles in one batch and returns at
    /// once; `done` is told when the deletions are durable. IDs that are not
    /// there are skipped.
    pub fn submit_delete_many(&self, ids: &[BundleId], done: OnDurable) {
        self.submit(done, |txn| ids.iter().try_for_each(|id| txn.delete(id).map(|_| ())));
    }

    /// Like [`RocksStore::submit_delete_many`], and in the same batch
    /// forgets the delivered bundles `forget`, then remembers those in
    /// `delivered`, each until its time (see [`RocksStore::delivered`]). An
    /// ID in both ends up remembered.
    pub fn submit_delete_and_remember(
        &self,
        ids: &[BundleId],
        delivered: &[(BundleId, DtnTime)],
        forget: &[BundleId],
        done: OnDurable,
    ) {
        self.submit(done, |txn| {
            ids.iter().try_for_each(|id| txn.delete(id).map(|_| ()))?;
            for id in forget {
                txn.ops.push(Op::Delete(Cf::Delivered, id.to_key()));
            }
            for (id, until) in delivered {
                txn.ops.push(Op::Put(Cf::Delivered, id.to_key(), until.to_be_bytes().to_vec()));
            }
            Ok(())
        });
    }

    /// Forgets delivered bundles (expired, or the node's memory is full).
    pub fn submit_forget_delivered(&self, ids: &[BundleId], done: OnDurable) {
        self.submit(done, |txn| {
            for id in ids {
                txn.ops.push(Op::Delete(Cf::Delivered, id.to_key()));
            }
            Ok(())
        });
    }

    /// Builds one request with `build` and queues it without blocking;
    /// `done` is told (exactly once) when it is durable or why it failed.
    fn submit(&self, done: OnDurable, build: impl FnOnce(&mut Txn<'_>) -> Result<(), StoreError>) {
        let notify = Notifier::new(done);
        let mut txn = match Txn::begin(&self.shared) {
            Ok(t) => t,
            Err(e) => return notify.fire(Err(e)),
        };
        match build(&mut txn) {
            Ok(()) => txn.submit(notify),
            Err(e) => notify.fire(Err(e)),
        }
    }

    /// The delivered bundles remembered, with the time until which each is.
    /// Records that do not decode are skipped (and logged): forgetting one
    /// only lets a late copy through again.
    pub fn delivered(&self) -> Result<Vec<(BundleId, DtnTime)>, StoreError> {
        let mut ro = ReadOptions::default();
        ro.fill_cache(false);
        let mut it = self.shared.db.raw_iterator_cf_opt(self.shared.cf(Cf::Delivered)?, ro);
        it.seek_to_first();
        let mut all = Vec::new();
        while let Some((k, v)) = it.item() {
            match (BundleId::from_key(k), <[u8; 8]>::try_from(v)) {
                (Some(id), Ok(until)) => all.push((id, u64::from_be_bytes(until))),
                _ => tracing::warn!(key = ?k, "skipping a damaged delivered-bundle record"),
            }
            it.next();
        }
        it.status().map_err(engine)?;
        Ok(all)
    }

    /// Deletes several bundles in one batch with one sync; for each ID, whether
    /// it was there. Durable when it returns `Ok`.
    pub fn delete_many(&self, ids: &[BundleId]) -> Result<Vec<bool>, StoreError> {
        let mut txn = Txn::begin(&self.shared)?;
        let found = ids.iter().map(|id| txn.delete(id)).collect::<Result<Vec<bool>, StoreError>>()?;
        txn.commit()?;
        Ok(found)
    }

    /// Synced batches and the write requests in them, since open.
    pub fn commit_stats(&self) -> CommitStats {
        let c = &self.shared.completion;
        CommitStats { batches: c.batches.load(Ordering::Relaxed), writes: c.writes.load(Ordering::Relaxed) }
    }

    /// Flushes every memtable to SST/blob files and syncs the WAL, so that the
    /// next open has no log to replay. Acknowledged writes are durable
    /// without it; the daemon calls it on shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        for cf in Cf::ALL {
            self.shared.db.flush_cf(self.shared.cf(cf)?).map_err(engine)?;
        }
        self.shared.db.flush_wal(true).map_err(engine)
    }

    /// Stops taking writes, lets the commit thread finish what is queued, and
    /// waits for it. Reads keep working; writes fail with
    /// [`StoreError::Closed`]. Idempotent; `Drop` calls it.
    pub fn close(&self) -> Result<(), StoreError> {
        // Dropping the only sender lets the thread drain the queue and exit.
        drop(self.shared.writer_state().sender.take());
        let handle = self.committer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            h.join().map_err(|_| StoreError::Engine("the store's commit thread panicked".to_owned()))?;
        }
        Ok(())
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!(error = %e, path = %self.path.display(), "closing the store");
        }
    }
}

/// Makes the error for a failed open say plainly when the directory is taken.
fn open_error(path: &Path, e: rocksdb::Error) -> StoreError {
    let msg = e.into_string();
    // RocksDB's LOCK file (env/fs_posix.cc): "While lock file: <dir>/LOCK:
    // Resource temporarily unavailable" when another process holds it, "lock
    // hold by current process" when this one does.
    if msg.contains("While lock file") || msg.contains("lock hold by current process") {
        StoreError::Engine(format!(
            "data directory {} is in use (another ferryd or store has it open): {msg}",
            path.display()
        ))
    } else {
        StoreError::Engine(format!("cannot open store in {}: {msg}", path.display()))
    }
}

/// Counts bundles and bytes from `meta` (reading `bundles` only for the
/// pointers of bundles kept in payload files, whose IDs it also returns).
fn count(shared: &Shared) -> Result<(StoreStats, HashSet<u64>), StoreError> {
    let mut ro = ReadOptions::default();
    ro.fill_cache(false);
    let mut it = shared.db.raw_iterator_cf_opt(shared.cf(Cf::Meta)?, ro);
    it.seek_to_first();
    let mut stats = StoreStats::default();
    let mut referenced = HashSet::new();
    while let Some((k, v)) = it.item() {
        let len = match keys::meta_stored_len(v) {
            Some(StoredLen { len, in_file: false }) => len,
            _ => {
                let stored = shared.stored_from_record(k, v)?;
                referenced.extend(stored.file);
                stored.len
            }
        };
        stats.bundles += 1;
        stats.bytes += len;
        it.next();
    }
    it.status().map_err(engine)?;
    Ok((stats, referenced))
}

/// One write request being built, under the writer lock: the read-before-write
/// sees committed state, then queued changes, then this request's own.
struct Txn<'a> {
    shared: &'a Shared,
    w: MutexGuard<'a, WriterState>,
    ops: Vec<Op>,
    /// This request's own changes, by bundle key.
    mine: HashMap<Vec<u8>, Option<Stored>>,
    delta: Delta,
    /// The latest queued request whose change a read here relied on: a call
    /// that ends up writing nothing must still not return before that change
    /// is durable (a `delete` answering "not there" because of a queued delete).
    depends_on: u64,
    /// Bytes of the bundles this request stores.
    put_bytes: u64,
}

impl<'a> Txn<'a> {
    fn begin(shared: &'a Shared) -> Result<Txn<'a>, StoreError> {
        let w = shared.writer_state();
        if w.sender.is_none() {
            return Err(StoreError::Closed);
        }
        if let Some(why) = shared.completion.failure() {
            return Err(StoreError::Engine(why));
        }
        Ok(Txn {
            shared,
            w,
            ops: Vec::new(),
            mine: HashMap::new(),
            delta: Delta::default(),
            depends_on: 0,
            put_bytes: 0,
        })
    }

    fn current(&mut self, key: &[u8]) -> Result<Option<Stored>, StoreError> {
        if let Some(s) = self.mine.get(key) {
            return Ok(s.clone());
        }
        if let Some(p) = self.w.pending.get(key) {
            self.depends_on = self.depends_on.max(p.seq);
            return Ok(p.state.clone());
        }
        if let Some(s) = self.w.recent.get(key) {
            return Ok(Some(s.clone()));
        }
        self.shared.stored(key)
    }

    fn put_meta(&mut self, key: &[u8], meta: &BundleMeta, stored: StoredLen) {
        self.ops.push(Op::Put(Cf::Meta, key.to_vec(), keys::encode_meta(meta, stored)));
    }

    fn put(&mut self, meta: &BundleMeta, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_owned(meta, bytes.to_vec())
    }

    fn put_owned(&mut self, meta: &BundleMeta, bytes: Vec<u8>) -> Result<(), StoreError> {
        let key = meta.id.to_key();
        if let Some(old) = self.current(&key)? {
            self.delta.removed(old.len);
            if let Some(id) = old.file {
                self.ops.push(Op::RemoveFile(id));
            }
        }
        let len = bytes.len() as u64;
        self.put_bytes += len;
        let file = if len >= self.shared.file_threshold {
            let id = self.shared.files.allocate();
            self.ops.push(Op::WriteFile(id, bytes));
            self.ops.push(Op::Put(Cf::Bundles, key.clone(), keys::encode_pointer(id, len)));
            Some(id)
        } else {
            self.ops.push(Op::Put(Cf::Bundles, key.clone(), bytes));
            None
        };
        let stored = Stored { len, file };
        self.put_meta(&key, meta, stored.stored_len());
        self.delta.added(len);
        self.mine.insert(key, Some(stored));
        Ok(())
    }

    fn update_meta(&mut self, meta: &BundleMeta) -> Result<bool, StoreError> {
        let key = meta.id.to_key();
        let Some(old) = self.current(&key)? else {
            return Ok(false);
        };
        self.put_meta(&key, meta, old.stored_len());
        self.mine.insert(key, Some(old));
        Ok(true)
    }

    fn delete(&mut self, id: &BundleId) -> Result<bool, StoreError> {
        let key = id.to_key();
        let Some(old) = self.current(&key)? else {
            return Ok(false);
        };
        self.ops.push(Op::Delete(Cf::Bundles, key.clone()));
        self.ops.push(Op::Delete(Cf::Meta, key.clone()));
        if let Some(id) = old.file {
            self.ops.push(Op::RemoveFile(id));
        }
        self.delta.removed(old.len);
        self.mine.insert(key, None);
        Ok(true)
    }

    /// Queues the request (if it changes anything) and releases the writer
    /// lock. Returns the sequence number to wait for, 0 if none.
    fn queue(self, notify: Option<Notifier>) -> Result<u64, StoreError> {
        if let Err(e) = self.shared.check_room(self.put_bytes) {
            drop(self);
            if let Some(n) = notify {
                n.fire(Err(e.clone()));
            }
            return Err(e);
        }
        let Txn { shared: _, mut w, ops, mine, delta, depends_on, put_bytes: _ } = self;
        if ops.is_empty() {
            drop(w);
            if let Some(n) = notify {
                n.fire(Ok(()));
            }
            return Ok(depends_on);
        }
        let seq = w.next_seq;
        let request = Request { seq, ops, keys: mine.keys().cloned().collect(), delta, notify };
        let sender = w.sender.as_ref().ok_or(StoreError::Closed)?;
        // A failed send drops the request, and with it its notifier (which
        // then reports `Closed`).
        sender.send(request).map_err(|_| StoreError::Closed)?;
        w.next_seq += 1;
        for (key, state) in mine {
            w.pending.insert(key, Pending { seq, state });
        }
        Ok(seq)
    }

    /// Queues the request and waits until it is durable.
    fn commit(self) -> Result<(), StoreError> {
        let shared = self.shared;
        match self.queue(None)? {
            0 => Ok(()),
            seq => shared.completion.wait(seq),
        }
    }

    /// Queues the request; `notify` is told when it is durable.
    fn submit(self, notify: Notifier) {
        let shared = self.shared;
        if self.ops.is_empty() {
            // Nothing to write, but what it read may still be on its way to
            // disk (a queued delete): tell the caller once that is durable.
            let depends_on = self.depends_on;
            drop(self);
            return shared.completion.notify_when_done(depends_on, notify);
        }
        // On error the request, and so `notify`, is dropped: it reports `Closed`.
        let _ = self.queue(Some(notify));
    }
}

impl Store for RocksStore {
    fn put(&self, meta: &BundleMeta, bytes: &[u8]) -> Result<(), StoreError> {
        let mut txn = Txn::begin(&self.shared)?;
        txn.put(meta, bytes)?;
        txn.commit()
    }

    fn update_meta(&self, meta: &BundleMeta) -> Result<bool, StoreError> {
        let mut txn = Txn::begin(&self.shared)?;
        let found = txn.update_meta(meta)?;
        txn.commit()?;
        Ok(found)
    }

    fn get_bytes(&self, id: &BundleId) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared.bundle_bytes(&id.to_key())
    }

    fn get_meta(&self, id: &BundleId) -> Result<Option<BundleMeta>, StoreError> {
        let key = id.to_key();
        let Some(value) = self.shared.db.get_pinned_cf(self.shared.cf(Cf::Meta)?, &key).map_err(engine)? else {
            return Ok(None);
        };
        keys::decode_meta(&value).map(Some).ok_or(StoreError::Corrupt { key })
    }

    fn delete(&self, id: &BundleId) -> Result<bool, StoreError> {
        let mut txn = Txn::begin(&self.shared)?;
        let found = txn.delete(id)?;
        txn.commit()?;
        Ok(found)
    }

    fn all_meta(&self) -> Result<Vec<BundleMeta>, StoreError> {
        let mut ro = ReadOptions::default();
        ro.fill_cache(false);
        let mut it = self.shared.db.raw_iterator_cf_opt(self.shared.cf(Cf::Meta)?, ro);
        it.seek_to_first();
        let mut all = Vec::new();
        while let Some((k, v)) = it.item() {
            all.push(keys::decode_meta(v).ok_or_else(|| StoreError::Corrupt { key: k.to_vec() })?);
            it.next();
        }
        it.status().map_err(engine)?;
        // Key order is nearly ID order but not quite (`ipn:10.1` sorts before
        // `ipn:9.1` as bytes), and the trait promises ID order. The input is
        // almost sorted, which the sort handles in about linear time.
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    /// A scan of `meta` (see the module docs: no index on disk).
    fn expiring_by(&self, t: DtnTime) -> Result<Vec<BundleId>, StoreError> {
        let mut found: Vec<(DtnTime, BundleId)> =
            self.all_meta()?.into_iter().filter(|m| m.expires_at <= t).map(|m| (m.expires_at, m.id)).collect();
        // Earliest first; ties in ID order (all_meta's order, kept by a stable sort).
        found.sort_by_key(|(at, _)| *at);
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }

    /// A scan of `meta` (see the module docs: no index on disk).
    fn for_destination(&self, eid: &Eid) -> Result<Vec<BundleId>, StoreError> {
        Ok(self.all_meta()?.into_iter().filter(|m| &m.destination == eid).map(|m| m.id).collect())
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(*self.shared.stats_lock())
    }

    fn put_state(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut txn = Txn::begin(&self.shared)?;
        txn.ops.push(Op::Put(Cf::State, key.as_bytes().to_vec(), value.to_vec()));
        txn.commit()
    }

    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared.get(Cf::State, key.as_bytes())
    }
}
