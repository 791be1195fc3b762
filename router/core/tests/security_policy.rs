//! The node's BPSec hook (`NodeConfig::security`): what a policy adds to the
//! bundles a node creates, and how its verdict on a bundle for the node is
//! carried out (stored decrypted, or deleted with the RFC 9172 reason and a
//! deletion report), with the real BPSec operations underneath.

use ed25519_dalek::SigningKey;
use ferry_core::admin::{decode_admin_record, AdminRecord, ReasonCode};
use ferry_core::bpsec::{self, Integrity, Keys, NewBlock, Role, Status};
use ferry_core::bundle::{block_types, bundle_flags, Bundle, CreationTimestamp};
use ferry_core::codec::{self, BundleBuilder, DecodeOptions};
use ferry_core::node::{Action, Node, NodeConfig, OriginateError, Refusal, Rejected, SecurityPolicy, SendRequest};
use ferry_core::router::Epidemic;
use ferry_core::Eid;

const T0: u64 = 800_000_000_000;

fn eid(s: &str) -> Eid {
    s.parse().unwrap()
}

/// Signs what it originates with `key`; for its own endpoints requires an
/// Ed25519 signature by the source that `keys` verifies.
struct SignAndRequire {
    node: Eid,
    key: SigningKey,
    keys: Keys,
}

impl SecurityPolicy for SignAndRequire {
    fn originate(&mut self, bytes: &[u8], bundle: &Bundle) -> Result<Option<Vec<u8>>, OriginateError> {
        let ctx = Integrity::Ed25519 { scope: 7, key: &self.key };
        Ok(Some(bpsec::sign(bytes, bundle, &[1], &self.node, &ctx, &NewBlock::default())?))
    }

    fn accept_local(&mut self, bytes: &[u8], bundle: &Bundle) -> Result<Option<Vec<u8>>, Refusal> {
        let p = bpsec::process(bytes, bundle, Role::Destination, &self.keys, &DecodeOptions::strict())?;
        let source_node = bundle.primary.source.node_id();
        let signed = p
            .outcomes
            .iter()
            .any(|o| o.status == Status::Verified && o.target == Some(1) && o.source.as_ref() == Some(&source_node));
        if !signed {
            let signer = p.outcomes.iter().find_map(|o| o.source.clone());
            return Err(Refusal::MissingSignature {
                endpoint: bundle.primary.destination.clone(),
                source_node,
                signer,
            });
        }
        Ok(p.decrypted.map(|(b, _)| b))
    }
}

fn node(name: &str, key: SigningKey, keys: Keys) -> Node {
    let id = eid(&format!("dtn://{name}/"));
    let mut cfg = NodeConfig::new(id.clone(), Box::new(Epidemic));
    cfg.security = Some(Box::new(SignAndRequire { node: id, key, keys }));
    Node::new(cfg)
}

fn persists(n: &mut Node) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| n.poll_action())
        .filter_map(|a| match a {
            Action::Persist { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect()
}

fn unsigned(src: &str, dst: &str, flags: u64) -> Vec<u8> {
    BundleBuilder::new(eid(src), eid(dst), CreationTimestamp { time: T0, seq: 1 }, 60_000)
        .flags(flags)
        .report_to(eid(src))
        .build(b"payload")
}

#[test]
fn originated_bundles_are_signed_and_verified_at_the_destination() {
    let (ka, kc) = (SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[3; 32]));
    let mut a = node("a", ka.clone(), Keys::new());
    let req =
        SendRequest { source: None, destination: eid("dtn://c/in"), lifetime_ms: 60_000, flags: 0, report_to: None };
    a.send(T0, req, b"hello").unwrap();
    let stored = persists(&mut a).pop().expect("the bundle is stored");
    let b = codec::decode(&stored).unwrap();
    assert!(b.blocks.iter().any(|x| x.block_type == block_types::BIB), "signed");

    let trusting = Keys::new().with_ed25519(eid("dtn://a/"), ka.verifying_key());
    let mut c = node("c", kc.clone(), trusting);
    c.register(T0, eid("dtn://c/in"));
    c.handle_received(T0, stored.clone(), None).expect("a valid signature from a trusted source");

    // The same bundle with one payload byte flipped: deleted, reason 15.
    let mut c = node("c", kc.clone(), Keys::new().with_ed25519(eid("dtn://a/"), ka.verifying_key()));
    let altered = flip_payload_byte(&stored);
    match c.handle_received(T0, altered, None) {
        Err(Rejected::Security { refusal, .. }) => assert_eq!(refusal.reason(), ReasonCode::FailedSecurityOperation),
        other => panic!("altered bundle taken: {other:?}"),
    }

    // Signed, but by a key C does not trust: missing (reason 12).
    let mut c = node("c", kc, Keys::new());
    match c.handle_received(T0, stored, None) {
        Err(Rejected::Security { refusal, .. }) => {
            assert_eq!(refusal.reason(), ReasonCode::MissingSecurityOperation);
            assert!(refusal.to_string().contains("dtn://a/"), "{refusal}");
        }
        other => panic!("untrusted signature taken: {other:?}"),
    }
}

#[test]
fn a_refused_bundle_is_deleted_with_a_report_and_never_stored() {
    let mut c = node("c", SigningKey::from_bytes(&[3; 32]), Keys::new());
    c.register(T0, eid("dtn://c/in"));
    let bytes = unsigned("dtn://x/", "dtn://c/in", bundle_flags::REPORT_DELETION);
    assert!(matches!(c.handle_received(T0, bytes, None), Err(Rejected::Security { .. })));
    let persisted = persists(&mut c);
    assert_eq!(persisted.len(), 1, "only the deletion report is stored");
    let report = codec::decode(&persisted[0]).unwrap();
    assert_eq!(report.primary.destination, eid("dtn://x/"));
    let payload = &persisted[0][report.payload().data.clone()];
    let Ok(AdminRecord::StatusReport(r)) = decode_admin_record(payload) else { panic!("not a status report") };
    assert_eq!(r.reason, ReasonCode::MissingSecurityOperation);
    assert!(r.deleted.is_some());
    // The report itself went through originate: it is signed.
    assert!(report.blocks.iter().any(|x| x.block_type == block_types::BIB));
    assert_eq!(c.stats().deleted, 1);
}

#[test]
fn bundles_for_other_nodes_and_fragments_are_not_judged_here() {
    let mut b = node("b", SigningKey::from_bytes(&[2; 32]), Keys::new());
    b.handle_received(T0, unsigned("dtn://a/", "dtn://c/in", 0), None).expect("forwarded unsigned: not b's business");
    let whole = BundleBuilder::new(eid("dtn://a/"), eid("dtn://b/in"), CreationTimestamp { time: T0, seq: 2 }, 60_000)
        .build(&[7; 300]);
    let parsed = codec::decode(&whole).unwrap();
    let parts = codec::fragment(&whole, &parsed, 200).unwrap();
    assert!(parts.len() > 1);
    b.handle_received(T0, parts[0].clone(), None).expect("a fragment waits for its reassembly");
}

/// The bundle with the first payload byte flipped and the payload block's
/// CRC recomputed, as a tamperer on the way would do (the CRC alone would
/// catch a careless one).
fn flip_payload_byte(bytes: &[u8]) -> Vec<u8> {
    let b = codec::decode(bytes).unwrap();
    let p = b.payload();
    let mut data = bytes[p.data.clone()].to_vec();
    data[0] ^= 1;
    let mut block = Vec::new();
    codec::encode_canonical_block(&mut block, p.block_type, p.number, p.flags, p.crc_type, &data);
    let mut out = bytes[..p.range.start].to_vec();
    out.extend_from_slice(&block);
    out.extend_from_slice(&bytes[p.range.end..]);
    assert!(codec::decode(&out).is_ok(), "still a valid bundle");
    out
}

/// A bundle for `dtn://far/in` carrying a BIB in context `context_id` whose
/// block flags say "delete the bundle if this block cannot be processed".
fn with_bib(context_id: i64, seq: u64) -> Vec<u8> {
    let asb = bpsec::Asb {
        targets: vec![1],
        context_id,
        flags: 0,
        source: eid("dtn://a/"),
        parameters: vec![bpsec::SecurityItem::uint(1, 7)],
        results: vec![vec![bpsec::SecurityItem::bytes(1, &[0; 64])]],
    };
    BundleBuilder::new(eid("dtn://a/"), eid("dtn://far/in"), CreationTimestamp { time: T0, seq }, 60_000)
        .extension_block(
            block_types::BIB,
            ferry_core::bundle::block_flags::DELETE_BUNDLE_IF_UNPROCESSABLE,
            asb.to_bytes(),
        )
        .build(b"payload")
}

#[test]
fn a_forwarder_without_keys_keeps_known_security_blocks_whatever_their_flags() {
    // No policy at all, as on a relay: a BIB in a known context (Ed25519,
    // HMAC) is processable even without a key, and goes on untouched.
    let mut b = Node::new(NodeConfig::new(eid("dtn://b/"), Box::new(Epidemic)));
    for (seq, ctx) in [(1, bpsec::ED25519_CONTEXT_ID), (2, bpsec::BIB_HMAC_SHA2)] {
        let bytes = with_bib(ctx, seq);
        b.handle_received(T0, bytes.clone(), None).expect("kept");
        let stored = persists(&mut b).pop().expect("stored");
        assert_eq!(stored, bytes, "byte for byte");
    }
    // An unknown context cannot be processed: its flags delete the bundle.
    match b.handle_received(T0, with_bib(-7, 3), None) {
        Err(Rejected::UnsupportedBlock(_)) => {}
        other => panic!("unknown context kept: {other:?}"),
    }
}
