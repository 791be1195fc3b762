//! Progress of a sync request (`ferry usb sync PATH`), as the plugin writes
//! it to `<folder>/<this node>/.ferry-sync.toml` and the CLI reads it.
//!
//! The plugin rewrites the file after every look at the folder while the
//! request runs (temp file + rename, so a reader never sees half of it). A
//! request is done when the folder was looked at [`QUIET_POLLS`](crate::plugin)
//! times in a row with nothing taken, nothing written and nothing waiting.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The status file's name inside this node's mailbox.
pub const SYNC_STATUS_FILE: &str = ".ferry-sync.toml";

/// One sync request's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncStatus {
    /// The request's nonce: the CLI knows its own report by it.
    pub nonce: String,
    /// Bundles taken from this node's mailbox (stored durably, files removed).
    pub taken: u64,
    /// Bundles written onto the folder for other nodes.
    pub written: u64,
    /// Files found unusable (reported in ferryd's log, left in place).
    pub bad: u64,
    /// Files still to be read or waiting for the node's verdict.
    pub waiting: u64,
    /// Nothing moved for a while: the sync is over.
    pub done: bool,
    /// Why the sync could not run, if it could not.
    pub error: Option<String>,
}

impl SyncStatus {
    /// Writes the status atomically (temp file + rename; no sync: it is a
    /// progress report, not data).
    pub fn write(&self, file: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, file)
    }

    /// Reads a status file; `None` if it is missing or not (yet) one.
    pub fn read(file: &Path) -> Option<SyncStatus> {
        let text = std::fs::read_to_string(file).ok()?;
        toml::from_str(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(SYNC_STATUS_FILE);
        assert_eq!(SyncStatus::read(&f), None);
        let s = SyncStatus { nonce: "n1".into(), taken: 3, written: 2, bad: 1, waiting: 0, done: true, error: None };
        s.write(&f).unwrap();
        assert_eq!(SyncStatus::read(&f), Some(s));
        std::fs::write(&f, "garbage = [").unwrap();
        assert_eq!(SyncStatus::read(&f), None);
    }
}
