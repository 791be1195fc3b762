//! Helpers shared by the integration tests.
#![allow(dead_code)]

use ferry_core::bundle::{BundleId, BundleMeta, CreationTimestamp};
use ferry_core::eid::Eid;

/// Metadata for bundle `seq` from `src`, with a destination and expiry that
/// vary with `seq` so the indexes have something to do.
pub fn meta(src: &str, seq: u64) -> BundleMeta {
    BundleMeta {
        id: BundleId {
            source: src.parse().expect("test EID"),
            creation: CreationTimestamp { time: 700_000_000_000, seq },
            fragment: None,
        },
        destination: destination(seq).parse().expect("test EID"),
        report_to: Eid::Null,
        flags: 0,
        lifetime_ms: 86_400_000,
        expires_at: expiry(seq),
        received_at: 700_000_000_000,
        age_at_receipt_ms: None,
        hop_count: None,
        previous_node: None,
        size: 0,
        payload_len: 0,
        total_adu_len: None,
        forwarded_to: vec![],
        discard_blocks: vec![],
        copies: None,
    }
}

pub fn destination(seq: u64) -> String {
    format!("dtn://dst{}/in", seq % 3)
}

pub fn expiry(seq: u64) -> u64 {
    1_000_000 + (seq * 7919) % 1000
}

/// Deterministic bytes of bundle `seq`: sizes from a few bytes to tens of KiB
/// (so some go to blob files), content that identifies the bundle.
pub fn payload(seq: u64) -> Vec<u8> {
    let len = match seq % 4 {
        0 => 16,
        1 => 700,
        2 => 5_000,
        _ => 40_000,
    } + (seq % 13) as usize;
    (0..len).map(|i| (seq as usize).wrapping_mul(31).wrapping_add(i) as u8).collect()
}
