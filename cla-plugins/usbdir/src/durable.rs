//! Making a batch of written `.part` files durable before they are renamed,
//! and the renames durable after.
//!
//! The order is what keeps the promises of the [crate docs](crate): (1) every
//! part file's bytes reach the device, (2) the parts are renamed to
//! `<sha256>.bundle`, (3) the folders holding them are synced; only then does
//! a transmission count as sent. A batch stopped anywhere before (3) — a
//! pulled stick, a crash, a power cut — leaves `.part` files (never read) or
//! complete `.bundle` files, and the node sends its bundles again.
//!
//! Step (1) is done one of two ways ([`Method`]):
//!
//! - [`Method::EachFile`]: `fdatasync` on every part, up to
//!   [`PARALLEL`] side by side. Nothing else on the filesystem is waited for.
//!   Each sync ends in a device cache flush, and a filesystem without a
//!   journal (FAT, exFAT, ext4 without one) does not merge them.
//! - [`Method::Filesystem`]: one `syncfs(2)` per filesystem the parts are on,
//!   then an `fsync` of each folder holding them. Linux's `syncfs` writes
//!   back every dirty page and inode of that filesystem and waits until the
//!   device has them (`sync_filesystem`); since Linux 5.8 it also returns the
//!   writeback errors it met. It does not itself ask every filesystem to
//!   flush the device's write cache (FAT's has no `sync_fs`), so the folder
//!   syncs that follow, which do, make the parts durable before any rename
//!   can reach the device. One flush instead of one per file; the price is
//!   that other programs' dirty data on the same filesystem is written too:
//!   nothing on a stick of its own, possibly much on a shared disk (measured
//!   here: usually a few ms for 30 files, once 0.64 s). So it is used for
//!   any batch of two files or more on a folder whose filesystem is not the
//!   node's own disk (the one holding `state_dir`: a stick, a card), and on
//!   the node's own disk only for batches of [`SYNCFS_MIN_FILES`] or more,
//!   where per-file syncs cost more than that risk (300 files: 35 ms against
//!   9 ms). Only on kernels whose `syncfs` reports errors.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Threads that sync or remove files at once.
pub const PARALLEL: usize = 64;

/// Batches of at least this many files on the node's own disk are synced
/// with `syncfs` (on another filesystem, batches of two or more).
pub const SYNCFS_MIN_FILES: usize = 64;

/// How the bytes of a batch of part files are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `fdatasync` on each file.
    EachFile,
    /// `syncfs` on their filesystem, then `fsync` on their folders.
    Filesystem,
}

impl Method {
    /// The method for a batch of `files` files on a folder that is
    /// (`own_disk`) or is not on the node's own disk; `syncfs_reports_errors`
    /// is [`syncfs_reports_errors`] (asked once).
    pub fn for_batch(files: usize, own_disk: bool, syncfs_reports_errors: bool) -> Method {
        let min = if own_disk { SYNCFS_MIN_FILES } else { 2 };
        if files >= min && syncfs_reports_errors {
            Method::Filesystem
        } else {
            Method::EachFile
        }
    }
}

/// The device number of the filesystem holding `path`, if it can be read.
pub fn device_of(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.dev())
}

/// Whether this kernel's `syncfs` returns writeback errors (Linux 5.8 and
/// later; before, it returned 0 even when the device failed).
pub fn syncfs_reports_errors() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    kernel_at_least(&release, (5, 8))
}

/// Whether a kernel release string (`6.1.0-18-amd64`) is at least `want`.
fn kernel_at_least(release: &str, want: (u32, u32)) -> bool {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

/// Step (1): the bytes of every part file reach the device. Returns the
/// first failure.
pub fn sync_parts(parts: &[PathBuf], method: Method) -> Result<(), String> {
    let failed = match method {
        Method::EachFile => in_parallel(parts, |p| {
            File::open(p).and_then(|f| f.sync_data()).err().map(|e| format!("{}: {e}", p.display()))
        }),
        Method::Filesystem => {
            let folders: BTreeSet<PathBuf> = parts.iter().filter_map(|p| p.parent()).map(Path::to_owned).collect();
            // One folder per filesystem (a device number) is enough for syncfs.
            let mut by_device: BTreeMap<u64, &Path> = BTreeMap::new();
            for f in &folders {
                match std::fs::metadata(f) {
                    Ok(m) => {
                        by_device.entry(m.dev()).or_insert(f);
                    }
                    Err(e) => return Err(format!("{}: {e}", f.display())),
                }
            }
            for folder in by_device.values() {
                syncfs(folder).map_err(|e| format!("syncfs on {}: {e}", folder.display()))?;
            }
            let folders: Vec<PathBuf> = folders.into_iter().collect();
            sync_folders_failures(&folders)
        }
    };
    failed.into_iter().next().map_or(Ok(()), Err)
}

/// Step (3), and the flush of step (1) by [`Method::Filesystem`]: every
/// folder is synced. Returns the first failure.
pub fn sync_folders(folders: &[PathBuf]) -> Result<(), String> {
    sync_folders_failures(folders).into_iter().next().map_or(Ok(()), Err)
}

fn sync_folders_failures(folders: &[PathBuf]) -> Vec<String> {
    in_parallel(folders, |d| File::open(d).and_then(|f| f.sync_all()).err().map(|e| format!("{}: {e}", d.display())))
}

/// `syncfs(2)` on the filesystem holding `folder`.
fn syncfs(folder: &Path) -> std::io::Result<()> {
    let f = File::open(folder)?;
    // SAFETY: syncfs only reads the descriptor, which `f` keeps open for the call.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on every item, [`PARALLEL`] threads at once (file syncs and
/// unlinks wait on the device; side by side they share its round trips).
/// Returns the messages of the calls that failed.
pub fn in_parallel<T: Sync>(items: &[T], f: impl Fn(&T) -> Option<String> + Sync) -> Vec<String> {
    if items.len() <= 1 {
        return items.iter().filter_map(&f).collect();
    }
    let chunk = items.len().div_ceil(PARALLEL);
    let f = &f;
    std::thread::scope(|s| {
        let workers: Vec<_> =
            items.chunks(chunk).map(|part| s.spawn(move || part.iter().filter_map(f).collect::<Vec<_>>())).collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|_| vec!["a file operation panicked".into()]))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncfs_for_batches_on_a_stick_or_big_ones_on_kernels_that_report_its_errors() {
        assert_eq!(Method::for_batch(1, true, true), Method::EachFile);
        assert_eq!(Method::for_batch(SYNCFS_MIN_FILES - 1, true, true), Method::EachFile);
        assert_eq!(Method::for_batch(SYNCFS_MIN_FILES, true, true), Method::Filesystem);
        // A stick of its own: nothing else is dirty there.
        assert_eq!(Method::for_batch(1, false, true), Method::EachFile);
        assert_eq!(Method::for_batch(2, false, true), Method::Filesystem);
        assert_eq!(Method::for_batch(1000, false, false), Method::EachFile);
        assert!(kernel_at_least("6.1.0-18-amd64\n", (5, 8)));
        assert!(kernel_at_least("5.8.0", (5, 8)));
        assert!(!kernel_at_least("5.4.0-150-generic", (5, 8)));
        assert!(!kernel_at_least("4.19.0", (5, 8)));
        assert!(!kernel_at_least("", (5, 8)));
    }

    #[test]
    fn both_methods_sync_files_in_several_folders_and_report_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = vec![];
        for i in 0..20 {
            let d = dir.path().join(format!("m{}", i % 3));
            std::fs::create_dir_all(&d).unwrap();
            let p = d.join(format!("{i}.part"));
            std::fs::write(&p, [i as u8; 100]).unwrap();
            parts.push(p);
        }
        sync_parts(&parts, Method::EachFile).unwrap();
        sync_parts(&parts, Method::Filesystem).unwrap();
        let gone = dir.path().join("gone/1.part");
        for m in [Method::EachFile, Method::Filesystem] {
            let err = sync_parts(&[parts[0].clone(), gone.clone()], m).unwrap_err();
            assert!(err.contains("gone"), "{err}");
        }
        assert!(sync_folders(&[dir.path().join("gone")]).is_err());
    }
}
