//! Payload files: bundles of at least [`crate::RocksOptions::file_threshold`]
//! bytes are kept in a file of their own in `<store>/payloads/`, and their
//! `bundles` record only points to it.
//!
//! Why: a bundle in RocksDB is written twice on its way to disk (the WAL,
//! then the memtable flush into a blob file), and Debian's RocksDB 7.8
//! checksums both copies in software. A file is written once, and synced
//! with the group that points to it.
//!
//! Order, which the crash promise rests on: the commit thread writes a
//! group's files, syncs them and the folder, and only then writes the batch
//! whose records point to them; a removed bundle's file goes after the batch
//! that deleted its records. So a durable record never points to a missing
//! file, and whatever a crash leaves over is a file no record points to,
//! which the next open removes.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::keys;

/// The store's payload folder.
#[derive(Debug)]
pub(crate) struct PayloadFiles {
    dir: PathBuf,
    next_id: AtomicU64,
}

impl PayloadFiles {
    pub const FOLDER: &'static str = "payloads";

    /// Opens (creating) `<store>/payloads`; new IDs start above every file
    /// already there.
    pub fn open(store: &Path) -> Result<PayloadFiles, String> {
        let dir = store.join(Self::FOLDER);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut max = 0;
        for name in Self::names(&dir)? {
            if let Some(id) = keys::file_id(&name) {
                max = max.max(id);
            }
        }
        Ok(PayloadFiles { dir, next_id: AtomicU64::new(max + 1) })
    }

    fn names(dir: &Path) -> Result<Vec<String>, String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    /// A fresh file ID.
    pub fn allocate(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(keys::file_name(id))
    }

    /// The `len` bytes of file `id`. `NotFound` if it is gone (deleted since
    /// its record was read).
    pub fn read(&self, id: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let path = self.path(id);
        let named = |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let mut f = File::open(&path).map_err(named)?;
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.read_to_end(&mut bytes).map_err(named)?;
        if bytes.len() as u64 != len {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                format!("{} holds {} bytes, its record says {len}", path.display(), bytes.len()),
            ));
        }
        Ok(bytes)
    }

    /// Starts writing a group's files.
    pub fn writer(&self) -> GroupFiles<'_> {
        GroupFiles { files: self, open: Vec::new() }
    }

    /// Removes these files, logging (not failing) what cannot be removed:
    /// an unreferenced file costs only space, and the next open retries.
    pub fn remove_quietly(&self, ids: &[u64]) {
        for &id in ids {
            match std::fs::remove_file(self.path(id)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = %self.path(id).display(), error = %e, "cannot remove a payload file"),
            }
        }
    }

    /// Removes every file in the folder that is not in `referenced` (left by
    /// a crash, see the module docs), and anything else that is not a payload
    /// file name. Returns how many it removed.
    pub fn remove_unreferenced(&self, referenced: &HashSet<u64>) -> Result<usize, String> {
        let mut removed = 0;
        for name in Self::names(&self.dir)? {
            if keys::file_id(&name).is_some_and(|id| referenced.contains(&id)) {
                continue;
            }
            let path = self.dir.join(&name);
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
            }
        }
        Ok(removed)
    }
}

/// The files of one group, written but not yet synced.
pub(crate) struct GroupFiles<'a> {
    files: &'a PayloadFiles,
    open: Vec<(u64, File)>,
}

impl GroupFiles<'_> {
    /// Creates file `id` with `bytes` and starts its writeback, so that the
    /// disk works on it while the next one is written.
    pub fn write(&mut self, id: u64, bytes: &[u8]) -> Result<(), String> {
        let path = self.files.path(id);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        f.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        // SAFETY: a plain system call on a file descriptor we own; it only
        // starts writeback and reads no memory of ours.
        unsafe { libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
        self.open.push((id, f));
        Ok(())
    }

    /// Syncs every file written, then the folder (their names), if any.
    pub fn sync(self) -> Result<(), String> {
        if self.open.is_empty() {
            return Ok(());
        }
        for (id, f) in &self.open {
            f.sync_data().map_err(|e| format!("cannot sync {}: {e}", self.files.path(*id).display()))?;
        }
        File::open(&self.files.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("cannot sync the folder {}: {e}", self.files.dir.display()))
    }
}
