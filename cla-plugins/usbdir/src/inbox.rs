//! What to do with the files in this node's mailbox, scan after scan — the
//! sans-IO part of reading a folder.
//!
//! [`Inbox::plan`] takes one scan's listing and says which files to read
//! (new ones, and ones that changed since they were found wanting), which to
//! report (once), and how many wait for room. [`verify`] checks a file's
//! bytes: the SHA-256 in its name, then the bundle itself through ferry-core's
//! decoder. Nothing here touches the filesystem.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::SystemTime;

use ferry_core::bundle::BundleId;

use crate::name::{self, FileKind};

/// What a file looked like when it was listed: a file that changes (a later,
/// complete copy over a truncated one) is looked at again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSig {
    pub len: u64,
    pub modified: Option<SystemTime>,
}

/// One file of a scan of `<self>/<from>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    /// The sending node's folder name.
    pub from: String,
    /// The file's name.
    pub name: String,
    pub sig: FileSig,
}

/// Why a file is left where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unusable {
    /// Its name is not `<sha256>.bundle`.
    #[error("not a bundle file (expected <sha256>.bundle); left alone")]
    Junk,
    /// A `.part` file: a write that did not finish.
    #[error("an unfinished write; left alone until a complete copy arrives")]
    Unfinished,
    /// Larger than `max_bundle_size`.
    #[error("{len} bytes is over max_bundle_size ({max}); left alone")]
    TooLarge { len: u64, max: u64 },
    /// The bytes do not hash to the name: truncated, half-copied or damaged.
    #[error("content does not match its SHA-256 name ({len} bytes; truncated or damaged); left alone until a complete copy arrives")]
    HashMismatch { len: u64 },
    /// The hash matches but the bytes are not a valid bundle.
    #[error("not a valid bundle: {0}; left alone")]
    Invalid(String),
    /// The node refused the bundle (expired, over its hop limit ...).
    #[error("the node refused the bundle; left alone")]
    Refused,
    /// Reading it failed.
    #[error("cannot be read: {0}")]
    Unreadable(String),
}

/// What one scan calls for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files to read and verify now.
    pub read: Vec<Entry>,
    /// Files to report (each only once while it stays the same).
    pub report: Vec<(Entry, Unusable)>,
    /// Files that could be read but wait for room (pending verdicts).
    pub waiting: usize,
}

/// Room for files handed to the host and not yet settled.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    pub files: usize,
    pub bytes: u64,
}

/// The state kept across scans of one mailbox.
#[derive(Debug, Default)]
pub struct Inbox {
    /// Files found wanting, as they were then.
    reported: HashMap<PathBuf, FileSig>,
    /// Files handed to the host, waiting for a verdict: path -> (size, bundle ID).
    pending: HashMap<PathBuf, (u64, BundleId)>,
    /// The bundle IDs of `pending`, with how many files carry each.
    pending_ids: HashMap<BundleId, usize>,
}

impl Inbox {
    pub fn new() -> Inbox {
        Inbox::default()
    }

    /// Decides about one scan's listing. `max_size` is `max_bundle_size`;
    /// `room` what may still be handed to the host.
    pub fn plan(&mut self, listing: Vec<Entry>, max_size: u64, room: Room) -> Plan {
        let present: HashSet<PathBuf> = listing.iter().map(|e| e.path.clone()).collect();
        // Gone files are forgotten, so a new file under the same name is new.
        self.reported.retain(|p, _| present.contains(p));
        let mut plan = Plan::default();
        let (mut files, mut bytes) = (self.pending.len(), self.pending.values().map(|(n, _)| *n).sum::<u64>());
        for e in listing {
            if self.pending.contains_key(&e.path) || self.reported.get(&e.path) == Some(&e.sig) {
                continue;
            }
            let why = match name::classify(&e.name) {
                FileKind::Hidden => continue,
                FileKind::Junk => Some(Unusable::Junk),
                FileKind::Part => Some(Unusable::Unfinished),
                FileKind::Bundle { .. } if e.sig.len > max_size => {
                    Some(Unusable::TooLarge { len: e.sig.len, max: max_size })
                }
                FileKind::Bundle { .. } => None,
            };
            if let Some(why) = why {
                self.reported.insert(e.path.clone(), e.sig);
                plan.report.push((e, why));
                continue;
            }
            // One file always fits, however large: it is read alone.
            if files >= room.files || (files > 0 && bytes.saturating_add(e.sig.len) > room.bytes) {
                plan.waiting += 1;
                continue;
            }
            files += 1;
            bytes = bytes.saturating_add(e.sig.len);
            plan.read.push(e);
        }
        plan
    }

    /// A file read by [`Inbox::plan`]'s order turned out unusable: it is not
    /// read again until it changes. Returns whether to report it (first time).
    pub fn unusable(&mut self, e: &Entry) -> bool {
        self.reported.insert(e.path.clone(), e.sig).is_none_or(|old| old != e.sig)
    }

    /// Whether a bundle with this ID is already with the host.
    pub fn is_pending(&self, id: &BundleId) -> bool {
        self.pending_ids.contains_key(id)
    }

    /// The file went to the host.
    pub fn handed_over(&mut self, e: &Entry, id: BundleId) {
        *self.pending_ids.entry(id.clone()).or_default() += 1;
        if let Some((_, old)) = self.pending.insert(e.path.clone(), (e.sig.len, id)) {
            self.forget_id(&old);
        }
    }

    /// The host's verdict on the file came (whatever it was).
    pub fn settled(&mut self, path: &PathBuf) {
        if let Some((_, id)) = self.pending.remove(path) {
            self.forget_id(&id);
        }
    }

    fn forget_id(&mut self, id: &BundleId) {
        if let Some(n) = self.pending_ids.get_mut(id) {
            *n -= 1;
            if *n == 0 {
                self.pending_ids.remove(id);
            }
        }
    }

    /// Files handed to the host and not settled.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// A file that passed [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub id: BundleId,
    /// When the bundle expires, in Unix milliseconds (for the taken-bundle record).
    pub expires_unix_ms: u64,
}

/// Milliseconds from the Unix epoch to the DTN epoch (2000-01-01T00:00:00Z).
pub const DTN_EPOCH_UNIX_MS: u64 = 946_684_800_000;

/// Checks a bundle file's bytes: SHA-256 against the name's `hash`, then the
/// bundle through ferry-core's decoder (the leniency the node has too: a
/// primary block without CRC, as dtn7-rs sends). `now_unix_ms` dates bundles
/// whose creators had no clock.
pub fn verify(hash: &str, bytes: &[u8], now_unix_ms: u64) -> Result<Verified, Unusable> {
    if name::content_hash(bytes) != hash {
        return Err(Unusable::HashMismatch { len: bytes.len() as u64 });
    }
    let bundle = ferry_core::node::decode_stored(bytes).map_err(|e| Unusable::Invalid(e.to_string()))?;
    let p = &bundle.primary;
    let created = match p.creation.time {
        // RFC 9171 §4.2.7: no clock; the bundle age says how old it is.
        0 => now_unix_ms.saturating_sub(bundle.bundle_age_ms.unwrap_or(0)),
        t => t.saturating_add(DTN_EPOCH_UNIX_MS),
    };
    Ok(Verified { id: bundle.id(), expires_unix_ms: created.saturating_add(p.lifetime_ms) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::bundle::CreationTimestamp;
    use ferry_core::codec::BundleBuilder;

    const ROOM: Room = Room { files: 100, bytes: 1 << 30 };

    fn entry(name: &str, len: u64) -> Entry {
        Entry {
            path: PathBuf::from(format!("/s/dtn-me/dtn-a/{name}")),
            from: "dtn-a".into(),
            name: name.into(),
            sig: FileSig { len, modified: None },
        }
    }

    fn bundle(seq: u64) -> Vec<u8> {
        BundleBuilder::new(
            "dtn://a/".parse().unwrap(),
            "dtn://me/in".parse().unwrap(),
            CreationTimestamp { time: 1_000, seq },
            60_000,
        )
        .build(b"payload")
    }

    fn good_name(bytes: &[u8]) -> String {
        name::bundle_file(&name::content_hash(bytes))
    }

    #[test]
    fn junk_and_unfinished_files_are_reported_once_and_left() {
        let mut inbox = Inbox::new();
        let listing = vec![entry("notes.txt", 3), entry(&name::part_file(&"0".repeat(64), 1), 9), entry(".x", 1)];
        let plan = inbox.plan(listing.clone(), 1 << 20, ROOM);
        assert!(plan.read.is_empty());
        let whys: Vec<&Unusable> = plan.report.iter().map(|(_, w)| w).collect();
        assert_eq!(whys, [&Unusable::Junk, &Unusable::Unfinished]);
        // The next scan says nothing about them.
        assert_eq!(inbox.plan(listing, 1 << 20, ROOM), Plan::default());
    }

    #[test]
    fn a_file_found_wanting_is_looked_at_again_once_it_changes() {
        let mut inbox = Inbox::new();
        let b = bundle(1);
        let truncated = entry(&good_name(&b), 10);
        let plan = inbox.plan(vec![truncated.clone()], 1 << 20, ROOM);
        assert_eq!(plan.read, vec![truncated.clone()]);
        assert!(matches!(verify(&name::content_hash(&b), &b[..10], 0), Err(Unusable::HashMismatch { len: 10 })));
        assert!(inbox.unusable(&truncated), "reported the first time");
        assert!(!inbox.unusable(&truncated), "not twice");
        assert_eq!(inbox.plan(vec![truncated.clone()], 1 << 20, ROOM), Plan::default());
        // A complete copy under the same name: read again.
        let complete = Entry { sig: FileSig { len: b.len() as u64, modified: None }, ..truncated };
        assert_eq!(inbox.plan(vec![complete.clone()], 1 << 20, ROOM).read, vec![complete]);
    }

    #[test]
    fn a_vanished_file_is_forgotten() {
        let mut inbox = Inbox::new();
        let junk = entry("junk", 1);
        assert_eq!(inbox.plan(vec![junk.clone()], 10, ROOM).report.len(), 1);
        inbox.plan(vec![], 10, ROOM);
        assert_eq!(inbox.plan(vec![junk], 10, ROOM).report.len(), 1);
    }

    #[test]
    fn oversized_files_are_not_read() {
        let mut inbox = Inbox::new();
        let big = entry(&name::bundle_file(&"a".repeat(64)), 11);
        let plan = inbox.plan(vec![big], 10, ROOM);
        assert!(plan.read.is_empty());
        assert_eq!(plan.report[0].1, Unusable::TooLarge { len: 11, max: 10 });
    }

    #[test]
    fn pending_files_are_skipped_and_room_is_respected() {
        let mut inbox = Inbox::new();
        let (b1, b2, b3) = (bundle(1), bundle(2), bundle(3));
        let es: Vec<Entry> = [&b1, &b2, &b3].iter().map(|b| entry(&good_name(b), 100)).collect();
        let plan = inbox.plan(es.clone(), 1 << 20, Room { files: 2, bytes: 1 << 20 });
        assert_eq!((plan.read.len(), plan.waiting), (2, 1));
        let v = verify(&name::content_hash(&b1), &b1, 0).unwrap();
        inbox.handed_over(&es[0], v.id.clone());
        assert!(inbox.is_pending(&v.id));
        let plan = inbox.plan(es.clone(), 1 << 20, Room { files: 2, bytes: 1 << 20 });
        assert_eq!(plan.read, vec![es[1].clone()], "the pending one is skipped");
        // By bytes: a second file does not fit, but a lone big one always does.
        let mut fresh = Inbox::new();
        let plan = fresh.plan(es.clone(), 1 << 20, Room { files: 10, bytes: 150 });
        assert_eq!((plan.read.len(), plan.waiting), (1, 2));
        inbox.settled(&es[0].path);
        assert_eq!(inbox.pending(), 0);
        assert!(!inbox.is_pending(&v.id), "settled");
    }

    #[test]
    fn verify_checks_hash_then_bundle() {
        let b = bundle(7);
        let v = verify(&name::content_hash(&b), &b, 0).unwrap();
        assert_eq!(v.id.creation, CreationTimestamp { time: 1_000, seq: 7 });
        assert_eq!(v.expires_unix_ms, DTN_EPOCH_UNIX_MS + 1_000 + 60_000);
        let junk = b"not a bundle at all".to_vec();
        assert!(matches!(verify(&name::content_hash(&junk), &junk, 0), Err(Unusable::Invalid(_))));
        let mut flipped = b.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 1;
        assert!(matches!(verify(&name::content_hash(&b), &flipped, 0), Err(Unusable::HashMismatch { .. })));
        // Right hash, bad CRC inside: the decoder catches it.
        assert!(matches!(verify(&name::content_hash(&flipped), &flipped, 0), Err(Unusable::Invalid(_))));
    }
}
