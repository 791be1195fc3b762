//! gitsync's state in its preopened folder:
//!
//! ```text
//! <state>/out/<repo>/<peer>/state.json   next push number, refs sent, last acknowledged
//! <state>/out/<repo>/<peer>/<n>.bundle   push n, kept until acknowledged
//! <state>/in/<repo>/<peer>/state.json    last push applied, when a gap was last asked about
//! <state>/in/<repo>/<peer>/<n>.bundle    push n that came before n-1 was applied
//! ```
//!
//! Files are written whole to a temporary name and renamed, so a trap in the
//! middle leaves the old state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What this node sent a peer for one repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Out {
    pub next_seq: u64,
    pub acked: u64,
    /// refname -> object sent in some push (the basis of the next one).
    pub sent_refs: BTreeMap<String, String>,
    pub peer_eid: String,
}

impl Default for Out {
    fn default() -> Out {
        Out { next_seq: 1, acked: 0, sent_refs: BTreeMap::new(), peer_eid: String::new() }
    }
}

/// What this node applied from a peer for one repository.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct In {
    pub applied: u64,
    /// DTN time of the last resend request (0: none pending).
    pub requested_at: u64,
    pub peer_eid: String,
}

pub struct Store {
    root: String,
}

fn write_atomic(path: &str, bytes: &[u8]) -> Result<(), String> {
    let tmp = format!("{path}.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{tmp}: {e}"))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{path}: {e}"))
}

/// A file's bytes, or `None` if it is not there.
fn read_optional(path: &str) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(path: &str) -> Result<T, String> {
    match read_optional(path)? {
        Some(raw) => serde_json::from_slice(&raw).map_err(|e| format!("{path}: {e}")),
        None => Ok(T::default()),
    }
}

impl Store {
    pub fn open(root: &str) -> Result<Store, String> {
        for sub in ["out", "in"] {
            std::fs::create_dir_all(format!("{root}/{sub}")).map_err(|e| format!("{root}/{sub}: {e}"))?;
        }
        Ok(Store { root: root.to_owned() })
    }

    fn dir(&self, side: &str, repo: &str, peer: &str) -> Result<String, String> {
        let d = format!("{}/{side}/{repo}/{peer}", self.root);
        std::fs::create_dir_all(&d).map_err(|e| format!("{d}: {e}"))?;
        Ok(d)
    }

    pub fn out(&self, repo: &str, peer: &str) -> Result<Out, String> {
        read_json(&format!("{}/state.json", self.dir("out", repo, peer)?))
    }

    pub fn save_out(&self, repo: &str, peer: &str, st: &Out) -> Result<(), String> {
        let json = serde_json::to_vec(st).map_err(|e| e.to_string())?;
        write_atomic(&format!("{}/state.json", self.dir("out", repo, peer)?), &json)
    }

    pub fn inb(&self, repo: &str, peer: &str) -> Result<In, String> {
        read_json(&format!("{}/state.json", self.dir("in", repo, peer)?))
    }

    pub fn save_in(&self, repo: &str, peer: &str, st: &In) -> Result<(), String> {
        let json = serde_json::to_vec(st).map_err(|e| e.to_string())?;
        write_atomic(&format!("{}/state.json", self.dir("in", repo, peer)?), &json)
    }

    pub fn keep_push(&self, repo: &str, peer: &str, n: u64, bundle: &[u8]) -> Result<(), String> {
        write_atomic(&format!("{}/{n}.bundle", self.dir("out", repo, peer)?), bundle)
    }

    pub fn kept_push(&self, repo: &str, peer: &str, n: u64) -> Result<Option<Vec<u8>>, String> {
        read_optional(&format!("{}/{n}.bundle", self.dir("out", repo, peer)?))
    }

    /// Numbers of the `<n>.bundle` files in a folder.
    fn numbers(dir: &str) -> Result<Vec<u64>, String> {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{dir}: {e}"))?;
        Ok(entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".bundle")?.parse::<u64>().ok())
            .collect())
    }

    /// Forgets the kept pushes up to `acked`.
    pub fn forget_pushes(&self, repo: &str, peer: &str, acked: u64) -> Result<(), String> {
        let dir = self.dir("out", repo, peer)?;
        for n in Self::numbers(&dir)?.into_iter().filter(|n| *n <= acked) {
            let _ = std::fs::remove_file(format!("{dir}/{n}.bundle"));
        }
        Ok(())
    }

    pub fn keep_early(&self, repo: &str, peer: &str, n: u64, bundle: &[u8]) -> Result<(), String> {
        write_atomic(&format!("{}/{n}.bundle", self.dir("in", repo, peer)?), bundle)
    }

    pub fn early(&self, repo: &str, peer: &str, n: u64) -> Result<Option<Vec<u8>>, String> {
        read_optional(&format!("{}/{n}.bundle", self.dir("in", repo, peer)?))
    }

    pub fn drop_early(&self, repo: &str, peer: &str, n: u64) -> Result<(), String> {
        let path = format!("{}/{n}.bundle", self.dir("in", repo, peer)?);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("{path}: {e}")),
            _ => Ok(()),
        }
    }

    /// Whether pushes after `applied` wait for a gap to close (and drops the
    /// ones at or below it, which a duplicate may have left).
    pub fn has_early_after(&self, repo: &str, peer: &str, applied: u64) -> Result<bool, String> {
        let dir = self.dir("in", repo, peer)?;
        let mut waiting = false;
        for n in Self::numbers(&dir)? {
            if n <= applied {
                let _ = std::fs::remove_file(format!("{dir}/{n}.bundle"));
            } else {
                waiting = true;
            }
        }
        Ok(waiting)
    }

    /// Every (repo, peer) this node receives from.
    pub fn inbound(&self) -> Result<Vec<(String, String)>, String> {
        let base = format!("{}/in", self.root);
        let mut out = vec![];
        for repo in std::fs::read_dir(&base).map_err(|e| format!("{base}: {e}"))?.flatten() {
            let repo_name = repo.file_name().to_string_lossy().into_owned();
            let Ok(peers) = std::fs::read_dir(repo.path()) else { continue };
            for peer in peers.flatten() {
                out.push((repo_name.clone(), peer.file_name().to_string_lossy().into_owned()));
            }
        }
        Ok(out)
    }
}
