//! Group commit: one thread writes every change, many callers share each sync.
//!
//! Callers build a [`Request`] (a list of column family operations) while
//! holding the store's writer lock, take the next sequence number and send the
//! request down a channel, all under that lock, so channel order is the order
//! in which the changes were decided. The commit thread takes the first request
//! (blocking), then everything else already queued without waiting (up to a
//! size limit), builds one `WriteBatch` from the lot and writes it with
//! `sync = true`: one WAL append, one fsync, for the whole group. A lone caller
//! therefore pays one sync and no timer; under load, the callers that queued
//! during a sync all ride the next one.
//!
//! Completion is a watermark: the thread publishes the highest sequence number
//! it has written (and the first one that failed, if any) under a mutex, and
//! wakes all waiters on a condvar; a caller is done when the watermark reaches
//! its number.
//!
//! A caller that must not block (an async task: parking a thread per write
//! costs two context switches and a futex wake-up each, which is most of the
//! CPU a small bundle costs) hands its request a [`Notifier`] instead of
//! waiting; the commit thread calls it once the group holding the request is
//! on disk (or failed). It runs on the commit thread, after the watermark is
//! published, so a notified caller sees its write like a waiting one does.
//!
//! A failed write poisons the store for writing: the changes after it were
//! decided against state that never reached the disk, so every later request
//! fails too (RocksDB itself refuses writes after a failed WAL write). Reads
//! keep working; reopening recovers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use ferry_core::store::{StoreError, StoreStats};
use rocksdb::{WriteBatch, WriteOptions};

use crate::OnDurable;

use crate::keys::Cf;
use crate::Shared;

/// One change: a column family operation, or a payload file to write before
/// the batch (it must be on disk before a record points to it) or to remove
/// after it (once no durable record points to it).
pub(crate) enum Op {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
    WriteFile(u64, Vec<u8>),
    RemoveFile(u64),
}

impl Op {
    fn len(&self) -> usize {
        match self {
            Op::Put(_, k, v) => k.len() + v.len(),
            Op::Delete(_, k) => k.len(),
            Op::WriteFile(_, bytes) => bytes.len(),
            Op::RemoveFile(_) => 0,
        }
    }
}

/// Signed change to the store's counts, applied once the request is on disk.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Delta {
    pub bundles: i64,
    pub bytes: i64,
}

impl Delta {
    /// A bundle of `len` bytes comes in.
    pub fn added(&mut self, len: u64) {
        self.bundles += 1;
        self.bytes = self.bytes.saturating_add(i64::try_from(len).unwrap_or(i64::MAX));
    }

    /// A bundle of `len` bytes goes (deleted or replaced).
    pub fn removed(&mut self, len: u64) {
        self.bundles -= 1;
        self.bytes = self.bytes.saturating_sub(i64::try_from(len).unwrap_or(i64::MAX));
    }

    pub fn apply(self, s: &mut StoreStats) {
        s.bundles = s.bundles.saturating_add_signed(self.bundles);
        s.bytes = s.bytes.saturating_add_signed(self.bytes);
    }
}

/// Calls an [`OnDurable`] exactly once: with the outcome, or with
/// [`StoreError::Closed`] if it is dropped uncalled (its request was still
/// queued when the commit thread died, or never got queued), so that nobody
/// waits forever for a write that will not happen.
pub(crate) struct Notifier(Option<OnDurable>);

impl Notifier {
    pub fn new(f: OnDurable) -> Notifier {
        Notifier(Some(f))
    }

    pub fn fire(mut self, result: Result<(), StoreError>) {
        if let Some(f) = self.0.take() {
            f(result);
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(StoreError::Closed));
        }
    }
}

/// A unit of work for the commit thread.
pub(crate) struct Request {
    pub seq: u64,
    pub ops: Vec<Op>,
    /// Bundle keys whose pending (not yet written) state this request set in
    /// the writer's overlay; the commit thread clears them once written.
    pub keys: Vec<Vec<u8>>,
    pub delta: Delta,
    /// Told when the request is durable, for callers that do not wait.
    pub notify: Option<Notifier>,
}

/// What waiters watch.
#[derive(Debug, Default)]
pub(crate) struct CommitState {
    /// Every request with `seq <= committed` has been handled.
    pub committed: u64,
    /// The first sequence number whose write failed, and why. Every request
    /// from there on fails.
    pub failed: Option<(u64, String)>,
    /// The commit thread has exited; nothing more will be written.
    pub stopped: bool,
    /// Callers that do not block, waiting for a sequence number that another
    /// request carries (see [`Completion::notify_when_done`]).
    watchers: Vec<(u64, Notifier)>,
}

impl CommitState {
    /// The outcome for request `seq`, if it is decided.
    fn outcome(&self, seq: u64) -> Option<Result<(), StoreError>> {
        if let Some((first_failed, why)) = &self.failed {
            if seq >= *first_failed {
                return Some(Err(StoreError::Engine(why.clone())));
            }
        }
        if self.committed >= seq {
            return Some(Ok(()));
        }
        if self.stopped {
            return Some(Err(StoreError::Closed));
        }
        None
    }

    /// Takes the watchers whose outcome is decided, with it.
    fn decided_watchers(&mut self) -> Vec<(Notifier, Result<(), StoreError>)> {
        if self.watchers.is_empty() {
            return Vec::new();
        }
        let mut fired = Vec::new();
        let mut i = 0;
        while i < self.watchers.len() {
            match self.outcome(self.watchers[i].0) {
                Some(r) => fired.push((self.watchers.swap_remove(i).1, r)),
                None => i += 1,
            }
        }
        fired
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

/// The completion side, shared between callers and the commit thread.
#[derive(Debug, Default)]
pub(crate) struct Completion {
    state: Mutex<CommitState>,
    cond: Condvar,
    /// Synced write batches, and requests in them (`commit_stats`).
    pub batches: AtomicU64,
    pub writes: AtomicU64,
}

impl Completion {
    pub fn lock(&self) -> MutexGuard<'_, CommitState> {
        // Every update below is a few plain assignments: a panic cannot leave
        // the state half-changed.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why writes are refused, after a failed commit.
    pub fn failure(&self) -> Option<String> {
        self.lock().failed.as_ref().map(|(_, why)| why.clone())
    }

    /// Blocks until request `seq` is on disk (or failed).
    pub fn wait(&self, seq: u64) -> Result<(), StoreError> {
        let mut s = self.lock();
        loop {
            if let Some(r) = s.outcome(seq) {
                return r;
            }
            s = self.cond.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Calls `notify` once request `seq` is on disk (or failed): now, if it
    /// already is.
    pub fn notify_when_done(&self, seq: u64, notify: Notifier) {
        let mut s = self.lock();
        match s.outcome(seq) {
            Some(r) => {
                drop(s);
                notify.fire(r);
            }
            None => s.watchers.push((seq, notify)),
        }
    }

    fn publish(&self, last: u64, failure: Option<(u64, String)>) {
        let mut s = self.lock();
        s.committed = s.committed.max(last);
        if s.failed.is_none() {
            s.failed = failure;
        }
        let fired = s.decided_watchers();
        drop(s);
        self.cond.notify_all();
        // Outside the lock: a callback may well look at the store again.
        for (n, r) in fired {
            n.fire(r);
        }
    }
}

/// Marks the commit thread stopped however it exits, so that no caller waits
/// forever on a thread that is gone.
struct StopGuard<'a>(&'a Completion);

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        if std::thread::panicking() && s.failed.is_none() {
            let next = s.committed.saturating_add(1);
            s.failed = Some((next, "the store's commit thread panicked".to_owned()));
        }
        s.stopped = true;
        let fired = s.decided_watchers();
        drop(s);
        self.0.cond.notify_all();
        for (n, r) in fired {
            n.fire(r);
        }
    }
}

/// Limits on one group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupLimits {
    pub max_bytes: usize,
    pub max_requests: usize,
}

/// After this long without a write, the commit thread flushes the
/// memtables: the write-ahead log they pinned is then deleted, so a store
/// that traffic has passed through shrinks back to what it holds instead of
/// keeping up to `max_total_wal_size` of log until the next busy spell.
const IDLE_FLUSH: Duration = Duration::from_secs(5);

/// Flushes every column family's memtable (not a durability step: the WAL
/// already has it). A failure is only logged; the next idle spell tries again.
fn flush_idle(shared: &Shared) {
    for cf in Cf::ALL {
        let flushed = shared.cf(cf).and_then(|h| shared.db.flush_cf(h).map_err(crate::engine));
        if let Err(e) = flushed {
            tracing::debug!(error = %e, "flushing an idle store failed");
            return;
        }
    }
}

/// The commit thread's body. Returns when every sender is gone and the queue
/// is empty, so a close finishes what was queued before it.
pub(crate) fn run(shared: Arc<Shared>, rx: Receiver<Request>, limits: GroupLimits) {
    let _guard = StopGuard(&shared.completion);
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let mut dirty = false;
    loop {
        let first = match rx.recv_timeout(IDLE_FLUSH) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                if dirty {
                    flush_idle(&shared);
                    dirty = false;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        dirty = true;
        let mut size = first.ops.iter().map(Op::len).sum::<usize>();
        let mut group = vec![first];
        while size < limits.max_bytes && group.len() < limits.max_requests {
            match rx.try_recv() {
                Ok(r) => {
                    size += r.ops.iter().map(Op::len).sum::<usize>();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let (first_seq, last_seq) = match (group.first(), group.last()) {
            (Some(f), Some(l)) => (f.seq, l.seq),
            _ => continue,
        };

        let result = match shared.completion.failure() {
            Some(why) => Err(why),
            None => write_group(&shared, &mut group, &sync),
        };

        // The overlay goes only after the write: until then it is what later
        // requests must see. On failure it goes too; the store is poisoned.
        shared.writer_state().forget_pending(&group, result.is_ok());
        let outcome = result.as_ref().map(|_| ()).map_err(|why| why.clone());
        let failure = match result {
            Ok(()) => {
                let mut stats = shared.stats_lock();
                for r in &group {
                    r.delta.apply(&mut stats);
                }
                drop(stats);
                shared.completion.batches.fetch_add(1, Ordering::Relaxed);
                shared.completion.writes.fetch_add(group.len() as u64, Ordering::Relaxed);
                None
            }
            Err(why) => {
                tracing::error!(error = %why, "store write failed; refusing further writes until reopened");
                Some((first_seq, why))
            }
        };
        shared.completion.publish(last_seq, failure);
        // After publishing, so that whoever is told sees the write as durable
        // everywhere (stats, reads, the watermark).
        for r in group {
            if let Some(n) = r.notify {
                n.fire(outcome.clone().map_err(StoreError::Engine));
            }
        }
    }
}

/// Writes the group: its payload files first, synced (and the folder that
/// names them), then its column family operations as one synced batch, then
/// removes the payload files that the batch stopped pointing to. Each
/// operation is freed as soon as it is written or the batch has its copy, so
/// that a group of big bundles is not in memory twice over.
///
/// A crash before the batch is durable leaves payload files that nothing
/// points to, and one after it files that were to be removed: the next open
/// removes both ([`crate::files::PayloadFiles::remove_unreferenced`]).
fn write_group(shared: &Shared, group: &mut [Request], sync: &WriteOptions) -> Result<(), String> {
    let mut batch = WriteBatch::default();
    let mut written = Vec::new();
    let mut to_remove = Vec::new();
    let mut files = shared.files.writer();
    for op in group.iter_mut().flat_map(|r| r.ops.drain(..)) {
        match op {
            Op::Put(cf, k, v) => batch.put_cf(shared.cf(cf).map_err(|e| e.to_string())?, k, v),
            Op::Delete(cf, k) => batch.delete_cf(shared.cf(cf).map_err(|e| e.to_string())?, k),
            Op::WriteFile(id, bytes) => {
                written.push(id);
                if let Err(e) = files.write(id, &bytes) {
                    drop(files);
                    shared.files.remove_quietly(&written);
                    return Err(e);
                }
            }
            Op::RemoveFile(id) => to_remove.push(id),
        }
    }
    if let Err(e) = files.sync() {
        shared.files.remove_quietly(&written);
        return Err(e);
    }
    if let Err(e) = shared.db.write_opt(batch, sync) {
        // Nothing durable points to them; if the removal fails, the next open
        // finds them unreferenced.
        shared.files.remove_quietly(&written);
        return Err(e.to_string());
    }
    shared.files.remove_quietly(&to_remove);
    Ok(())
}
