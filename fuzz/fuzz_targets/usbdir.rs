//! The USB-folder plugin's naming rules and file reader, which see whatever
//! is on a stick that went through other hands.
//!
//! Input: a mode byte, then bytes read as (1) a folder or file name, (2) a
//! node ID to encode, (3) the content of a bundle file (named by its own
//! hash when mode bit 0 is set, else by a hash from the input), and (4) a
//! listing of a mailbox for `Inbox::plan`. Properties:
//! - `decode_node` accepts only canonical names: a decoded node ID encodes
//!   back to the very name; a node ID the host takes (`is_node_id`) encodes
//!   to a name that decodes back to it;
//! - `classify` calls a file a bundle only for `<64 lowercase hex>.bundle`;
//! - `verify` accepts only bytes that hash to the name and decode as a
//!   bundle, and says the ID that decoding gives;
//! - a plan never hands over more files or bytes than there is room for
//!   (one file always fits), and never a file it reports.
#![no_main]

use std::collections::HashSet;
use std::path::PathBuf;

use ferry_cla_usbdir::inbox::{verify, Entry, FileSig, Inbox, Room};
use ferry_cla_usbdir::name::{self, FileKind};
use ferry_cla_usbdir::settings::is_node_id;
use libfuzzer_sys::fuzz_target;

/// 2025-01-01 in Unix milliseconds.
const NOW_UNIX_MS: u64 = 1_735_689_600_000;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(bytes);
    check_names(&text);
    check_file(bytes, mode);
    check_plan(&text, mode);
});

fn check_names(text: &str) {
    if let Some(node) = name::decode_node(text) {
        assert_eq!(name::encode_node(&node).ok().as_deref(), Some(text), "{text} is not canonical");
    }
    if let Ok(encoded) = name::encode_node(text) {
        assert!(encoded.len() <= name::MAX_ENCODED_LEN);
        assert!(encoded.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b)));
        if is_node_id(text) {
            assert_eq!(name::decode_node(&encoded).as_deref(), Some(text), "{text} does not come back");
        }
    }
    if let FileKind::Bundle { hash } = name::classify(text) {
        assert_eq!(hash.len(), 64);
        assert_eq!(name::bundle_file(&hash), text);
    }
}

fn check_file(bytes: &[u8], mode: u8) {
    let hash = if mode & 1 != 0 {
        name::content_hash(bytes)
    } else {
        String::from_utf8_lossy(bytes.get(..64).unwrap_or(bytes)).into_owned()
    };
    if let Ok(v) = verify(&hash, bytes, NOW_UNIX_MS) {
        assert_eq!(hash, name::content_hash(bytes));
        match ferry_core::node::decode_stored(bytes) {
            Ok(b) => assert_eq!(b.id(), v.id),
            Err(e) => panic!("verify accepted a bundle that does not decode: {e}"),
        }
    }
}

/// One entry per line: `<name> <len>`; lines without a length are 0 bytes.
/// A name appears once, as in a real directory listing.
fn check_plan(text: &str, mode: u8) {
    let mut seen = HashSet::new();
    let listing: Vec<Entry> = text
        .lines()
        .take(64)
        .filter(|line| seen.insert(line.rsplit_once(' ').map_or(*line, |(f, _)| f)))
        .map(|line| {
            let (file, len) = line.rsplit_once(' ').unwrap_or((line, "0"));
            Entry {
                path: PathBuf::from("inbox/dtn-peer").join(file),
                from: "dtn-peer".to_owned(),
                name: file.to_owned(),
                sig: FileSig { len: len.parse().unwrap_or(0), modified: None },
            }
        })
        .collect();
    let room = Room { files: usize::from(mode >> 4), bytes: u64::from(mode & 0x0f) * 1000 };
    let max_size = 5000;
    let mut inbox = Inbox::new();
    for _ in 0..2 {
        let plan = inbox.plan(listing.clone(), max_size, room);
        assert!(plan.read.len() <= room.files, "{} files read with room for {}", plan.read.len(), room.files);
        let bytes: u64 = plan.read.iter().map(|e| e.sig.len).sum();
        assert!(plan.read.len() <= 1 || bytes <= room.bytes, "{bytes} bytes read with room for {}", room.bytes);
        for e in &plan.read {
            assert!(matches!(name::classify(&e.name), FileKind::Bundle { .. }) && e.sig.len <= max_size);
            assert!(!plan.report.iter().any(|(r, _)| r.path == e.path));
        }
    }
}
