//! The record of bundles taken from folders, kept on this node's disk.
//!
//! The node suppresses a duplicate only while it holds the bundle; once a
//! bundle is delivered and deleted, a copy of its file found later (a stick
//! copied before it was read, a second stick) would be new to it. So the
//! plugin remembers the ID of every bundle it took, until the bundle expires
//! (after that the node refuses it anyway), and removes such files without
//! handing them over.
//!
//! The record is one text file, a line per bundle: `<expiry, Unix ms> <bundle ID>`.
//! A batch of lines is appended and synced before the files it covers are
//! removed; expired lines are dropped when it is opened.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Bundle IDs taken, with their expiry.
pub struct Taken {
    path: PathBuf,
    file: File,
    ids: HashMap<String, u64>,
}

impl Taken {
    /// Opens (or creates) the record at `path`, dropping expired lines.
    pub fn open(path: &Path, now_unix_ms: u64) -> std::io::Result<Taken> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut ids = HashMap::new();
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines() {
                let line = line?;
                // A torn last line (a crash mid-append) does not parse: skipped.
                let Some((t, id)) = line.split_once(' ') else { continue };
                let Ok(t) = t.parse::<u64>() else { continue };
                if t >= now_unix_ms && !id.is_empty() {
                    ids.insert(id.to_owned(), t);
                }
            }
        }
        // Rewrite it without the expired lines: temp file, sync, rename.
        let tmp = path.with_extension("tmp");
        {
            let mut f = File::create(&tmp)?;
            let mut text = String::new();
            for (id, t) in &ids {
                text.push_str(&format!("{t} {id}\n"));
            }
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Taken { path: path.to_owned(), file, ids })
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// Records `ids` (bundle ID, expiry) durably: appended and synced.
    pub fn record(&mut self, ids: &[(String, u64)]) -> std::io::Result<()> {
        let mut text = String::new();
        for (id, t) in ids {
            if !self.ids.contains_key(id) {
                text.push_str(&format!("{t} {id}\n"));
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        self.file.write_all(text.as_bytes())?;
        self.file.sync_data()?;
        self.ids.extend(ids.iter().cloned());
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_a_reopen_until_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state/taken");
        let mut t = Taken::open(&p, 100).unwrap();
        t.record(&[("dtn://a/-1-0".into(), 500), ("dtn://a/-1-1".into(), 150)]).unwrap();
        assert!(t.contains("dtn://a/-1-0"));
        drop(t);
        // A torn line from a crash mid-append is skipped.
        OpenOptions::new().append(true).open(&p).unwrap().write_all(b"12").unwrap();
        let t = Taken::open(&p, 200).unwrap();
        assert!(t.contains("dtn://a/-1-0"));
        assert!(!t.contains("dtn://a/-1-1"), "expired");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "500 dtn://a/-1-0\n");
    }
}
