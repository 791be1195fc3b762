//! Bundle decoding and everything a node does with bytes it accepted.
//!
//! Input: one control byte, then the bundle bytes. Properties checked:
//! - strict and lenient decoding agree where strict accepts, and every range
//!   of a decoded bundle lies within the input;
//! - forwarding (RFC 9171 §5.4 step 4) turns an accepted bundle into one that
//!   decodes again with the same ID and payload and the edited extension
//!   blocks;
//! - fragmenting (§5.8) at a size from the control byte gives fragments no
//!   larger than that size, each decodes, and reassembling them (§5.9) gives
//!   back the original payload and ID;
//! - a `Node` fed the bytes from a peer never panics, and every transmission
//!   it orders can be prepared (`node::transmission`) from what it persisted.
#![no_main]

use ferry_core::bundle::{block_flags, bundle_flags, Bundle, HopCount};
use ferry_core::codec::{self, DecodeOptions, ForwardEdit};
use ferry_core::node::{self, Action, Node, NodeConfig};
use ferry_core::router::{Epidemic, PeerId, PeerInfo};
use ferry_core::Eid;
use libfuzzer_sys::fuzz_target;

/// 2025-01-01 in DTN time: recent enough that fixture bundles are alive.
const NOW: u64 = 788_918_400_000;

fuzz_target!(|data: &[u8]| {
    let Some((&control, bytes)) = data.split_first() else { return };
    let lenient = DecodeOptions::strict().allow_unprotected_primary(true).allow_missing_bundle_age(true);
    let strict = codec::decode(bytes);
    let loose = codec::decode_with(bytes, &lenient);
    if let Ok(b) = &strict {
        assert_eq!(loose.as_ref().ok(), Some(b), "lenient decoding must accept what strict decoding accepts");
    }
    if let Ok(b) = &loose {
        check_ranges(bytes, b);
        check_forward(bytes, b, &lenient, control);
        // Fragments must pass what the original passed: the node's own
        // verdict when the original does.
        let stored = DecodeOptions::strict().allow_unprotected_primary(true);
        let fragment_options = if codec::decode_with(bytes, &stored).is_ok() { stored } else { lenient };
        check_fragments(bytes, b, &fragment_options, control);
    }
    run_node(bytes, control);
});

fn check_ranges(bytes: &[u8], b: &Bundle) {
    assert!(b.primary.range.end <= bytes.len());
    for blk in &b.blocks {
        assert!(blk.range.end <= bytes.len() && blk.data.start >= blk.range.start && blk.data.end <= blk.range.end);
    }
    assert_eq!(b.payload().block_type, 1);
}

fn check_forward(bytes: &[u8], b: &Bundle, options: &DecodeOptions, control: u8) {
    let edit = ForwardEdit {
        previous_node: Eid::ipn_node(7),
        bundle_age_ms: match (b.bundle_age_ms, b.primary.creation.time) {
            (Some(age), _) => Some(age.saturating_add(1500)),
            (None, 0) => Some(1500),
            (None, _) => None,
        },
        hop_count: b.hop_count.map(|h| HopCount { limit: h.limit, count: h.count.saturating_add(1) }),
        // What the node leaves out: unsupported blocks flagged "discard".
        discard_blocks: b
            .unsupported_blocks
            .iter()
            .copied()
            .filter(|n| b.block(*n).is_some_and(|blk| blk.flags & block_flags::DISCARD_BLOCK_IF_UNPROCESSABLE != 0))
            .collect(),
        copies: (control & 1 != 0).then_some(u64::from(control >> 4)),
    };
    let out = codec::rewrite_for_forward(bytes, b, &edit);
    let fwd = match codec::decode_with(&out, options) {
        Ok(f) => f,
        Err(e) => panic!("a forwarded bundle does not decode: {e}"),
    };
    assert_eq!(fwd.id(), b.id());
    assert_eq!(payload(&out, &fwd), payload(bytes, b));
    assert_eq!(fwd.previous_node.as_ref(), Some(&edit.previous_node));
    assert_eq!(fwd.hop_count, edit.hop_count);
    if edit.bundle_age_ms.is_some() {
        assert_eq!(fwd.bundle_age_ms, edit.bundle_age_ms);
    }
    assert_eq!(fwd.copy_count, edit.copies);
    for n in &edit.discard_blocks {
        assert!(fwd.block(*n).is_none(), "block {n} was to be discarded");
    }
}

fn check_fragments(bytes: &[u8], b: &Bundle, options: &DecodeOptions, control: u8) {
    if b.primary.flags & bundle_flags::MUST_NOT_FRAGMENT != 0 || b.primary.fragment.is_some() {
        return;
    }
    // From a size that fits only a few payload bytes to one that fits most.
    let max = 40 + usize::from(control >> 1) * bytes.len().max(1) / 64;
    let Ok(frags) = codec::fragment(bytes, b, max) else { return };
    let mut decoded = Vec::with_capacity(frags.len());
    for f in &frags {
        if frags.len() > 1 {
            assert!(f.len() <= max, "a fragment of {} bytes exceeds {max}", f.len());
        }
        match codec::decode_with(f, options) {
            Ok(d) => decoded.push(d),
            Err(e) => panic!("a fragment does not decode: {e}"),
        }
    }
    if frags.len() == 1 {
        assert_eq!(frags[0], bytes);
        return;
    }
    let parts: Vec<(&[u8], &Bundle)> = frags.iter().map(Vec::as_slice).zip(&decoded).collect();
    let whole = match codec::reassemble(&parts) {
        Ok(w) => w,
        Err(e) => panic!("fragments do not reassemble: {e}"),
    };
    let r = match codec::decode_with(&whole, options) {
        Ok(r) => r,
        Err(e) => panic!("a reassembled bundle does not decode: {e}"),
    };
    assert_eq!(r.id(), b.id());
    assert_eq!(payload(&whole, &r), payload(bytes, b));
}

fn payload<'a>(bytes: &'a [u8], b: &Bundle) -> &'a [u8] {
    bytes.get(b.payload().data.clone()).unwrap_or_default()
}

/// The bytes arrive from a peer at a node that has another peer up with a
/// small MTU: the node validates, persists, and orders transmissions, which
/// are prepared as the daemon would.
fn run_node(bytes: &[u8], control: u8) {
    let mut cfg = NodeConfig::new(Eid::ipn_node(1), Box::new(Epidemic));
    cfg.accept_unprotected_primary = control & 2 != 0;
    let mut node = Node::new(cfg);
    let mtu = 64 + u64::from(control) * 4;
    node.handle_peer_up(NOW, PeerInfo { id: PeerId(1), node_id: Eid::ipn_node(2), mtu: Some(mtu), rate_bps: None });
    let received = node.handle_received(NOW, bytes.to_vec(), Some(PeerId(9)));
    let mut stored: Vec<Vec<u8>> = Vec::new();
    let mut steps = 0;
    while let Some(action) = node.poll_action() {
        steps += 1;
        assert!(steps < 10_000, "the node keeps asking for actions");
        match action {
            Action::Persist { meta, bytes } => {
                // The received bundle, or one the node made (a status report).
                let ours = meta.id.source.node_id() == Eid::ipn_node(1);
                assert!(received.as_ref().is_ok_and(|id| *id == meta.id) || ours, "persisting {:?}", meta.id);
                node.handle_persisted(NOW, &meta.id, true);
                stored.push(bytes);
            }
            Action::Transmit(t) => {
                for s in &stored {
                    if node::decode_stored(s).is_ok_and(|b| b.id() == t.id) {
                        if let Ok(parts) = node::transmission(s, &t) {
                            for p in &parts {
                                if parts.len() > 1 {
                                    assert!(p.len() as u64 <= mtu, "a transmitted fragment exceeds the MTU");
                                }
                                assert!(node::decode_stored(p).is_ok(), "a transmitted bundle does not decode");
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    node.handle_timeout(NOW.saturating_add(u64::from(control) * 3_600_000));
    while node.poll_action().is_some() {}
}
