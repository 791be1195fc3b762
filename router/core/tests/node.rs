//! The node state machine, driven by the synchronous driver against in-memory
//! stores, with nodes wired together in-process (the way quinn's `Pair` tests
//! two endpoints): RFC 9171 §5 processing end to end.

use std::sync::Arc;

use ferry_core::admin::{decode_admin_record, AdminRecord, ReasonCode};
use ferry_core::bundle::{bundle_flags, BundleId, CreationTimestamp};
use ferry_core::codec::{self, BundleBuilder};
use ferry_core::driver::SyncDriver;
use ferry_core::node::{Action, Node, NodeConfig, Rejected, SendRequest, TransmitOutcome};
use ferry_core::router::{Epidemic, PeerId, PeerInfo, StaticRoute, StaticRouter};
use ferry_core::store::{MemStore, Store};
use ferry_core::Eid;

const T0: u64 = 800_000_000_000; // a DTN time in 2025

fn eid(s: &str) -> Eid {
    s.parse().unwrap()
}

/// A store shared by reference, so a test can "restart" a node on the same data.
#[derive(Clone, Default)]
struct Shared(Arc<MemStore>);

impl Store for Shared {
    fn put(&self, m: &ferry_core::BundleMeta, b: &[u8]) -> Result<(), ferry_core::store::StoreError> {
        self.0.put(m, b)
    }
    fn update_meta(&self, m: &ferry_core::BundleMeta) -> Result<bool, ferry_core::store::StoreError> {
        self.0.update_meta(m)
    }
    fn get_bytes(&self, id: &BundleId) -> Result<Option<Vec<u8>>, ferry_core::store::StoreError> {
        self.0.get_bytes(id)
    }
    fn get_meta(&self, id: &BundleId) -> Result<Option<ferry_core::BundleMeta>, ferry_core::store::StoreError> {
        self.0.get_meta(id)
    }
    fn delete(&self, id: &BundleId) -> Result<bool, ferry_core::store::StoreError> {
        self.0.delete(id)
    }
    fn all_meta(&self) -> Result<Vec<ferry_core::BundleMeta>, ferry_core::store::StoreError> {
        self.0.all_meta()
    }
    fn expiring_by(&self, t: u64) -> Result<Vec<BundleId>, ferry_core::store::StoreError> {
        self.0.expiring_by(t)
    }
    fn for_destination(&self, e: &Eid) -> Result<Vec<BundleId>, ferry_core::store::StoreError> {
        self.0.for_destination(e)
    }
    fn stats(&self) -> Result<ferry_core::store::StoreStats, ferry_core::store::StoreError> {
        self.0.stats()
    }
    fn put_state(&self, k: &str, v: &[u8]) -> Result<(), ferry_core::store::StoreError> {
        self.0.put_state(k, v)
    }
    fn get_state(&self, k: &str) -> Result<Option<Vec<u8>>, ferry_core::store::StoreError> {
        self.0.get_state(k)
    }
}

fn node(name: &str) -> SyncDriver<Shared> {
    SyncDriver::new(Node::new(NodeConfig::new(eid(&format!("dtn://{name}/")), Box::new(Epidemic))), Shared::default())
}

fn payload_of(bytes: &[u8]) -> Vec<u8> {
    let b = codec::decode(bytes).unwrap();
    bytes[b.payload().data.clone()].to_vec()
}

fn send(d: &mut SyncDriver<Shared>, now: u64, dst: &str, flags: u64, lifetime_ms: u64, payload: &[u8]) -> BundleId {
    let req = SendRequest { source: None, destination: eid(dst), lifetime_ms, flags, report_to: None };
    let id = d.node.send(now, req, payload).unwrap();
    d.run(now);
    id
}

/// Moves everything `from` has queued for `peer` into `to`, reporting success.
fn carry(now: u64, from: &mut SyncDriver<Shared>, peer: PeerId, to: &mut SyncDriver<Shared>, to_peer: PeerId) -> usize {
    let mut n = 0;
    while let Some(out) = from.outgoing.pop_front() {
        assert_eq!(out.peer, peer);
        for b in out.bundles {
            to.node.handle_received(now, b, Some(to_peer)).unwrap();
            n += 1;
        }
        to.run(now);
        from.node.handle_transmitted(now, peer, &out.id, TransmitOutcome::Sent);
        from.run(now);
    }
    n
}

fn link(a: &mut SyncDriver<Shared>, b: &mut SyncDriver<Shared>, now: u64, mtu: Option<u64>) {
    a.node.handle_peer_up(now, PeerInfo { id: PeerId(1), node_id: b.node.node_id().clone(), mtu, rate_bps: None });
    a.run(now);
    b.node.handle_peer_up(now, PeerInfo { id: PeerId(1), node_id: a.node.node_id().clone(), mtu, rate_bps: None });
    b.run(now);
}

#[test]
fn local_delivery_waits_for_registration_and_happens_once() {
    let mut a = node("a");
    let id = send(&mut a, T0, "dtn://a/inbox", 0, 60_000, b"hello");
    assert!(a.delivered.is_empty(), "no app registered yet: kept, not delivered, not lost");
    assert!(a.store.get_bytes(&id).unwrap().is_some());
    a.node.register(T0 + 5, eid("dtn://a/inbox"));
    a.run(T0 + 5);
    let got = a.delivered.pop_front().unwrap();
    assert_eq!(got.id, id);
    assert_eq!(payload_of(&got.bytes), b"hello");
    assert!(a.store.get_bytes(&id).unwrap().is_none(), "delivered bundles leave the store");
    a.node.unregister(&eid("dtn://a/inbox"));
    a.node.register(T0 + 6, eid("dtn://a/inbox"));
    a.run(T0 + 6);
    assert!(a.delivered.is_empty(), "nothing is delivered twice");
}

#[test]
fn persist_comes_before_anything_else() {
    let mut n = Node::new(NodeConfig::new(eid("dtn://a/"), Box::new(Epidemic)));
    n.register(T0, eid("dtn://a/inbox"));
    let req =
        SendRequest { source: None, destination: eid("dtn://a/inbox"), lifetime_ms: 1000, flags: 0, report_to: None };
    let id = n.send(T0, req, b"x").unwrap();
    assert!(matches!(n.poll_action(), Some(Action::Persist { .. })));
    assert_eq!(n.poll_action(), None, "no delivery before the store confirms the write");
    n.handle_persisted(T0, &id, true);
    assert!(matches!(n.poll_action(), Some(Action::Deliver { .. })));
}

#[test]
fn a_write_that_fails_after_dispatch_drops_the_bundle_and_a_resend_is_taken() {
    let mut n = Node::new(NodeConfig::new(eid("dtn://a/"), Box::new(Epidemic)));
    n.register(T0, eid("dtn://a/in"));
    let bytes = BundleBuilder::new(eid("dtn://x/"), eid("dtn://a/in"), CreationTimestamp { time: T0, seq: 1 }, 1000)
        .build(b"p");
    let id = n.handle_received(T0, bytes.clone(), None).unwrap();
    while n.poll_action().is_some() {}
    // Reported ahead of its sync: delivery starts...
    n.handle_persisted(T0, &id, true);
    assert!(matches!(n.poll_action(), Some(Action::Deliver { .. })));
    // ...then the sync fails: the bundle is dropped, with no deletion report.
    n.handle_write_failed(&id);
    assert!(!n.contains(&id));
    assert!(matches!(n.poll_action(), Some(Action::Delete { reason: None, .. })));
    assert_eq!(n.poll_action(), None);
    assert_eq!(n.stats().deleted, 0);
    // Its sender was never acknowledged and sends it again: taken anew.
    assert!(n.handle_received(T0, bytes, None).is_ok());
}

#[test]
fn a_failed_write_is_not_accepted() {
    let mut n = Node::new(NodeConfig::new(eid("dtn://a/"), Box::new(Epidemic)));
    let bytes = BundleBuilder::new(eid("dtn://x/"), eid("dtn://a/in"), CreationTimestamp { time: T0, seq: 1 }, 1000)
        .build(b"p");
    let id = n.handle_received(T0, bytes.clone(), None).unwrap();
    n.handle_persisted(T0, &id, false);
    assert!(!n.contains(&id));
    // The sender was not acknowledged and may send it again: not a duplicate.
    while n.poll_action().is_some() {}
    assert!(n.handle_received(T0, bytes, None).is_ok());
}

#[test]
fn duplicates_are_suppressed_by_bundle_id() {
    let mut a = node("a");
    let bytes = BundleBuilder::new(eid("dtn://x/"), eid("dtn://a/in"), CreationTimestamp { time: T0, seq: 1 }, 60_000)
        .build(b"p");
    a.node.handle_received(T0, bytes.clone(), Some(PeerId(3))).unwrap();
    a.run(T0);
    assert!(matches!(a.node.handle_received(T0, bytes, Some(PeerId(4))), Err(Rejected::Duplicate(_))));
    // Same source and timestamp but a different fragment is a different bundle.
    let frag = BundleBuilder::new(eid("dtn://x/"), eid("dtn://a/in"), CreationTimestamp { time: T0, seq: 1 }, 60_000)
        .fragment(0, 10)
        .build(b"p");
    assert!(a.node.handle_received(T0, frag, Some(PeerId(3))).is_ok());
}

#[test]
fn invalid_bundles_are_rejected_with_the_reason() {
    let mut a = node("a");
    let mut bytes =
        BundleBuilder::new(eid("dtn://x/"), eid("dtn://a/in"), CreationTimestamp { time: T0, seq: 1 }, 1000)
            .build(b"p");
    let last = bytes.len() - 2;
    bytes[last] ^= 0xff; // inside the payload block's CRC
    assert!(matches!(a.node.handle_received(T0, bytes, None), Err(Rejected::Invalid(_))));
    assert_eq!(a.node.bundle_count(), 0);
}

#[test]
fn two_nodes_forward_with_extension_blocks_updated() {
    let (mut a, mut b) = (node("a"), node("b"));
    b.node.register(T0, eid("dtn://b/inbox"));
    let id = send(&mut a, T0, "dtn://b/inbox", 0, 60_000, b"over the link");
    link(&mut a, &mut b, T0 + 100, None);
    let out = a.outgoing.front().unwrap().clone();
    let wire = codec::decode(&out.bundles[0]).unwrap();
    assert_eq!(wire.previous_node, Some(eid("dtn://a/")), "§4.4.1: previous node names the forwarder");
    assert_eq!(wire.hop_count.map(|h| h.count), Some(1), "§4.4.3: hop count incremented");
    assert_eq!(carry(T0 + 100, &mut a, PeerId(1), &mut b, PeerId(1)), 1);
    let got = b.delivered.pop_front().unwrap();
    assert_eq!(got.id, id);
    assert_eq!(payload_of(&got.bytes), b"over the link");
    assert!(a.store.get_bytes(&id).unwrap().is_none(), "epidemic releases once the destination node has it");
}

#[test]
fn bundle_age_is_required_without_a_clock_and_updated_per_hop() {
    let (mut a, mut b) = (node("a"), node("b"));
    let bytes = BundleBuilder::new(eid("dtn://x/"), eid("dtn://b/in"), CreationTimestamp { time: 0, seq: 7 }, 60_000)
        .bundle_age(1_000)
        .build(b"no clock");
    a.node.handle_received(T0, bytes, Some(PeerId(9))).unwrap();
    a.run(T0);
    link(&mut a, &mut b, T0 + 2_500, None);
    let out = a.outgoing.front().unwrap();
    let wire = codec::decode(&out.bundles[0]).unwrap();
    assert_eq!(wire.bundle_age_ms, Some(3_500), "age at receipt + residence time");
    // Expiry from age: 60 s lifetime, 1 s old on arrival at T0.
    let meta = a.node.meta(&out.id).unwrap();
    assert_eq!(meta.expires_at, T0 + 59_000);
}

#[test]
fn hop_limit_exceeded_deletes_with_reason_9() {
    let mut a = node("a");
    a.node.register(T0, eid("dtn://a/status"));
    let mut hop =
        BundleBuilder::new(eid("dtn://a/status"), eid("dtn://z/in"), CreationTimestamp { time: T0, seq: 1 }, 60_000)
            .hop_limit(2)
            .flags(bundle_flags::REPORT_DELETION)
            .report_to(eid("dtn://a/status"));
    hop = hop.extension_block(200, 0, vec![]);
    let ok = hop.build(b"x");
    let b = codec::decode(&ok).unwrap();
    assert_eq!(b.hop_count.unwrap().count, 0);
    // A bundle that has already made 3 hops of a limit of 2.
    let over = ferry_core::node::transmission(
        &ok,
        &ferry_core::node::Transmit {
            peer: PeerId(0),
            id: b.id(),
            edit: codec::ForwardEdit {
                previous_node: eid("dtn://q/"),
                bundle_age_ms: None,
                hop_count: Some(ferry_core::bundle::HopCount { limit: 2, count: 3 }),
                discard_blocks: vec![],
                copies: None,
            },
            max_bundle_size: None,
        },
    )
    .unwrap()
    .remove(0);
    assert!(matches!(a.node.handle_received(T0, over, Some(PeerId(2))), Err(Rejected::HopLimitExceeded(_))));
    a.run(T0);
    let report = a.delivered.pop_front().expect("deletion report delivered to report-to");
    let rb = codec::decode(&report.bytes).unwrap();
    assert!(rb.is_admin_record());
    match decode_admin_record(&report.bytes[rb.payload().data.clone()]).unwrap() {
        AdminRecord::StatusReport(r) => {
            assert!(r.deleted.is_some());
            assert_eq!(r.reason, ReasonCode::HopLimitExceeded);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn expiry_takes_the_deletion_path_with_its_report() {
    let mut a = node("a");
    a.node.register(T0, eid("dtn://a/reports"));
    let req = SendRequest {
        source: Some(eid("dtn://a/app")),
        destination: eid("dtn://far/x"),
        lifetime_ms: 1_000,
        flags: bundle_flags::REPORT_DELETION | bundle_flags::STATUS_TIME_REQUESTED,
        report_to: Some(eid("dtn://a/reports")),
    };
    let id = a.node.send(T0, req, b"short-lived").unwrap();
    a.run(T0);
    assert_eq!(a.node.poll_timeout(), Some(T0 + 1_001));
    a.node.handle_timeout(T0 + 1_000);
    a.run(T0 + 1_000);
    assert!(a.node.contains(&id), "not expired at exactly creation + lifetime");
    a.node.handle_timeout(T0 + 1_001);
    a.run(T0 + 1_001);
    assert!(!a.node.contains(&id));
    assert!(a.store.get_bytes(&id).unwrap().is_none());
    let report = a.delivered.pop_front().expect("deletion report (dtn7-rs #85 is the bug where it is missing)");
    let rb = codec::decode(&report.bytes).unwrap();
    let AdminRecord::StatusReport(r) = decode_admin_record(&report.bytes[rb.payload().data.clone()]).unwrap() else {
        panic!("not a status report")
    };
    assert_eq!(r.reason, ReasonCode::LifetimeExpired);
    assert_eq!(r.deleted, Some(Some(T0 + 1_001)), "status time requested");
    assert_eq!(r.subject, id);
    assert_eq!(a.node.stats().expired, 1);
}

#[test]
fn reports_are_never_about_reports_or_anonymous_bundles() {
    let mut a = node("a");
    // An admin record asking for reports is invalid on the wire; a dtn:none
    // source cannot ask either. Both must give no report when deleted.
    let anon = BundleBuilder::new(Eid::Null, eid("dtn://z/x"), CreationTimestamp { time: T0, seq: 1 }, 10)
        .flags(bundle_flags::MUST_NOT_FRAGMENT)
        .build(b"anon");
    a.node.handle_received(T0, anon, Some(PeerId(1))).unwrap();
    a.run(T0);
    a.node.handle_timeout(T0 + 100);
    a.run(T0 + 100);
    assert_eq!(a.node.bundle_count(), 0);
    assert_eq!(a.node.stats().reports_sent, 0);
}

#[test]
fn reception_and_delivery_reports_reach_the_source() {
    let (mut a, mut b) = (node("a"), node("b"));
    a.node.register(T0, eid("dtn://a/app"));
    b.node.register(T0, eid("dtn://b/inbox"));
    let req = SendRequest {
        source: Some(eid("dtn://a/app")),
        destination: eid("dtn://b/inbox"),
        lifetime_ms: 60_000,
        flags: bundle_flags::REPORT_RECEPTION | bundle_flags::REPORT_DELIVERY | bundle_flags::REPORT_FORWARDING,
        report_to: None,
    };
    a.node.send(T0, req, b"ping").unwrap();
    a.run(T0);
    link(&mut a, &mut b, T0, None);
    carry(T0, &mut a, PeerId(1), &mut b, PeerId(1));
    assert_eq!(payload_of(&b.delivered.pop_front().unwrap().bytes), b"ping");
    // b now holds two reports for dtn://a/app (received, delivered).
    b.node.handle_peer_up(T0, PeerInfo { id: PeerId(1), node_id: eid("dtn://a/"), mtu: None, rate_bps: None });
    b.run(T0);
    carry(T0, &mut b, PeerId(1), &mut a, PeerId(1));
    let mut kinds = vec![];
    while let Some(d) = a.delivered.pop_front() {
        let rb = codec::decode(&d.bytes).unwrap();
        if let AdminRecord::StatusReport(r) = decode_admin_record(&d.bytes[rb.payload().data.clone()]).unwrap() {
            kinds.push((r.received.is_some(), r.forwarded.is_some(), r.delivered.is_some()));
        }
    }
    kinds.sort();
    assert_eq!(kinds, vec![(false, false, true), (false, true, false), (true, false, false)]);
}

#[test]
fn proactive_fragmentation_and_reassembly_before_delivery() {
    let (mut a, mut b) = (node("a"), node("b"));
    b.node.register(T0, eid("dtn://b/inbox"));
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    send(&mut a, T0, "dtn://b/inbox", 0, 60_000, &payload);
    link(&mut a, &mut b, T0, Some(1024));
    let out = a.outgoing.front().unwrap();
    assert!(out.bundles.len() >= 5, "5000 B over a 1024 B link: {} fragments", out.bundles.len());
    assert!(out.bundles.iter().all(|f| f.len() <= 1024));
    // Deliver the fragments in reverse order.
    let mut out = a.outgoing.pop_front().unwrap();
    out.bundles.reverse();
    for f in out.bundles {
        b.node.handle_received(T0, f, Some(PeerId(1))).unwrap();
        b.run(T0);
    }
    let got = b.delivered.pop_front().expect("reassembled and delivered");
    assert_eq!(payload_of(&got.bytes), payload);
    assert!(got.id.fragment.is_none());
    assert_eq!(b.store.stats().unwrap().bundles, 0, "fragments and the whole are gone after delivery");
}

#[test]
fn must_not_fragment_is_honoured() {
    let (mut a, mut b) = (node("a"), node("b"));
    send(&mut a, T0, "dtn://b/inbox", bundle_flags::MUST_NOT_FRAGMENT, 60_000, &[0u8; 3000]);
    link(&mut a, &mut b, T0, Some(1024));
    assert!(a.outgoing.is_empty(), "too big for the link and must not be fragmented: kept");
    assert_eq!(a.node.bundle_count(), 1);
}

#[test]
fn restart_recovers_every_pending_bundle() {
    let store = Shared::default();
    let mk = |s: Shared| SyncDriver::new(Node::new(NodeConfig::new(eid("dtn://a/"), Box::new(Epidemic))), s);
    let mut a = mk(store.clone());
    let local = send(&mut a, T0, "dtn://a/later", 0, 60_000, b"for me");
    let remote = send(&mut a, T0, "dtn://b/in", 0, 60_000, b"for b");
    drop(a);
    let mut a = mk(store.clone());
    assert_eq!(a.recover(T0 + 10).unwrap(), 2);
    a.node.register(T0 + 10, eid("dtn://a/later"));
    a.run(T0 + 10);
    assert_eq!(a.delivered.pop_front().unwrap().id, local);
    a.node.handle_peer_up(T0 + 10, PeerInfo { id: PeerId(5), node_id: eid("dtn://b/"), mtu: None, rate_bps: None });
    a.run(T0 + 10);
    assert_eq!(a.outgoing.pop_front().unwrap().id, remote);
}

#[test]
fn epidemic_does_not_send_back_or_twice() {
    let (mut a, mut b) = (node("a"), node("b"));
    let id = send(&mut a, T0, "dtn://c/in", 0, 60_000, b"flood");
    link(&mut a, &mut b, T0, None);
    assert_eq!(carry(T0, &mut a, PeerId(1), &mut b, PeerId(1)), 1);
    assert!(a.node.contains(&id), "multi-copy: a keeps its copy");
    assert!(b.outgoing.is_empty(), "b does not send it back to a");
    a.node.handle_peer_down(T0, PeerId(1));
    a.node.handle_peer_up(T0 + 1, PeerInfo { id: PeerId(2), node_id: eid("dtn://b/"), mtu: None, rate_bps: None });
    a.run(T0 + 1);
    assert!(a.outgoing.is_empty(), "already forwarded to b");
}

#[test]
fn static_routing_picks_the_next_hop_and_releases() {
    let routes = vec![StaticRoute { pattern: "dtn://c/*".into(), via: eid("dtn://b/") }];
    let mut a = SyncDriver::new(
        Node::new(NodeConfig::new(eid("dtn://a/"), Box::new(StaticRouter::new(routes)))),
        Shared::default(),
    );
    let id = send(&mut a, T0, "dtn://c/in", 0, 60_000, b"routed");
    a.node.handle_peer_up(T0, PeerInfo { id: PeerId(1), node_id: eid("dtn://x/"), mtu: None, rate_bps: None });
    a.run(T0);
    assert!(a.outgoing.is_empty(), "x is no route to c");
    a.node.handle_peer_up(T0, PeerInfo { id: PeerId(2), node_id: eid("dtn://b/"), mtu: None, rate_bps: None });
    a.run(T0);
    let out = a.outgoing.pop_front().unwrap();
    assert_eq!(out.peer, PeerId(2));
    a.node.handle_transmitted(T0, PeerId(2), &id, TransmitOutcome::Sent);
    a.run(T0);
    assert!(!a.node.contains(&id));
}

#[test]
fn failed_transmissions_are_retried() {
    let (mut a, b) = (node("a"), node("b"));
    let id = send(&mut a, T0, "dtn://b/in", 0, 60_000, b"again");
    a.node.handle_peer_up(T0, PeerInfo { id: PeerId(1), node_id: b.node.node_id().clone(), mtu: None, rate_bps: None });
    a.run(T0);
    a.outgoing.pop_front().unwrap();
    a.node.handle_transmitted(T0, PeerId(1), &id, TransmitOutcome::Failed);
    a.run(T0);
    assert!(a.outgoing.is_empty());
    let t = a.node.poll_timeout().unwrap();
    assert!(t > T0 && t <= T0 + 60_000);
    a.node.handle_timeout(t);
    a.run(t);
    assert_eq!(a.outgoing.pop_front().unwrap().id, id);
}

#[test]
fn operator_delete_reports_and_removes() {
    let mut a = node("a");
    a.node.register(T0, eid("dtn://a/r"));
    let req = SendRequest {
        source: None,
        destination: eid("dtn://z/in"),
        lifetime_ms: 60_000,
        flags: bundle_flags::REPORT_DELETION,
        report_to: Some(eid("dtn://a/r")),
    };
    let id = a.node.send(T0, req, b"cancel me").unwrap();
    a.run(T0);
    let text = id.to_string();
    let found = a.node.find(&text).cloned().unwrap();
    assert!(a.node.delete(T0, &found, ReasonCode::TransmissionCanceled));
    a.run(T0);
    assert!(a.store.get_bytes(&id).unwrap().is_none());
    assert_eq!(a.delivered.len(), 1, "deletion report delivered");
}

#[test]
fn dtn7_style_bundles_without_primary_crc_are_accepted_unless_strict() {
    // What dtn7-rs's /send produces: no CRC on any block (INTEROP-NOTES).
    let bytes =
        BundleBuilder::new(eid("dtn://dtn7/"), eid("dtn://a/in"), CreationTimestamp { time: T0, seq: 1 }, 60_000)
            .crc_type(ferry_core::bundle::CrcType::None)
            .build(b"from dtnd");
    assert!(codec::decode(&bytes).is_err(), "the strict RFC 9171 verdict is 'invalid'");
    let mut lenient = node("a");
    assert!(lenient.node.handle_received(T0, bytes.clone(), Some(PeerId(1))).is_ok());
    let mut cfg = NodeConfig::new(eid("dtn://a/"), Box::new(Epidemic));
    cfg.accept_unprotected_primary = false;
    let mut strict = Node::new(cfg);
    assert!(matches!(strict.handle_received(T0, bytes, Some(PeerId(1))), Err(Rejected::Invalid(_))));
}

#[test]
fn one_copy_per_node_even_over_two_links() {
    // Both sides dialed: the same node is up over two sessions.
    let mut a = node("a");
    send(&mut a, T0, "dtn://b/in", 0, 60_000, b"once");
    for id in [1, 2] {
        a.node.handle_peer_up(T0, PeerInfo { id: PeerId(id), node_id: eid("dtn://b/"), mtu: None, rate_bps: None });
    }
    a.run(T0);
    assert_eq!(a.outgoing.len(), 1, "one transmission, not one per session");
}

fn spray_node(name: &str, copies: u64) -> SyncDriver<Shared> {
    let router = ferry_core::router::spray::SprayAndWait::new(copies, ferry_core::router::spray::SprayMode::Binary);
    SyncDriver::new(Node::new(NodeConfig::new(eid(&format!("dtn://{name}/")), Box::new(router))), Shared::default())
}

fn up(d: &mut SyncDriver<Shared>, now: u64, peer: u64, node: &str) {
    d.node.handle_peer_up(now, PeerInfo { id: PeerId(peer), node_id: eid(node), mtu: None, rate_bps: None });
    d.run(now);
}

#[test]
fn spray_copies_travel_in_the_bundle_and_come_back_when_a_transmission_fails() {
    let (mut a, mut b) = (spray_node("a", 8), spray_node("b", 8));
    let id = send(&mut a, T0, "dtn://z/in", 0, 60_000, b"spray");
    up(&mut a, T0, 1, "dtn://b/");
    // The transmission carries half of the 8 copies; a keeps the rest meanwhile.
    let out = a.outgoing.front().unwrap().clone();
    assert_eq!(codec::decode(&out.bundles[0]).unwrap().copy_count, Some(4));
    assert_eq!(a.node.meta(&id).unwrap().copies, Some(4));
    // The link fails: the 4 copies are a's again, and so is the next attempt's half.
    a.outgoing.clear();
    a.node.handle_transmitted(T0, PeerId(1), &id, TransmitOutcome::Failed);
    assert_eq!(a.node.meta(&id).unwrap().copies, Some(8));
    a.node.handle_peer_down(T0, PeerId(1));
    up(&mut a, T0, 2, "dtn://b/");
    // A link that goes down with the transmission out gives them back too.
    a.node.handle_peer_down(T0, PeerId(2));
    assert_eq!(a.node.meta(&id).unwrap().copies, Some(8));
    a.outgoing.clear();
    up(&mut a, T0, 3, "dtn://b/");
    carry(T0, &mut a, PeerId(3), &mut b, PeerId(9));
    assert_eq!(b.node.meta(&id).unwrap().copies, Some(4));
    // What a keeps after the peer has its half is stored, for a restart.
    assert_eq!(a.store.get_meta(&id).unwrap().unwrap().copies, Some(4));
}

/// A copy of a bundle delivered here that arrives again (its sender crashed
/// before it recorded the forwarding) is a duplicate until the bundle
/// expires; the deletion carries the memory for the store, and expiry or a
/// full memory tell the store to forget.
#[test]
fn a_delivered_bundle_that_arrives_again_is_a_duplicate_until_it_expires() {
    let mut cfg = NodeConfig::new(eid("dtn://a/"), Box::new(Epidemic));
    cfg.delivered_memory = 2;
    let mut n = Node::new(cfg);
    n.register(T0, eid("dtn://a/in"));
    let bundle = |seq: u64, lifetime: u64| {
        BundleBuilder::new(eid("dtn://x/"), eid("dtn://a/in"), CreationTimestamp { time: T0, seq }, lifetime)
            .build(b"p")
    };
    let deliver = |n: &mut Node, bytes: Vec<u8>| {
        let id = n.handle_received(T0, bytes, None).unwrap();
        while n.poll_action().is_some() {}
        n.handle_persisted(T0, &id, true);
        assert!(matches!(n.poll_action(), Some(Action::Deliver { .. })));
        n.handle_delivered(T0, &id);
        id
    };
    let first = deliver(&mut n, bundle(1, 10_000));
    let until = T0 + 10_000;
    assert_eq!(n.poll_action(), Some(Action::Delete { id: first.clone(), reason: None, delivered: Some(until) }));
    assert!(n.was_delivered(&first));
    assert!(matches!(n.handle_received(T0 + 5, bundle(1, 10_000), None), Err(Rejected::Duplicate(_))));
    assert_eq!(n.stats().delivered, 1);

    // Memory full (2): the one expiring first is forgotten.
    let second = deliver(&mut n, bundle(2, 20_000));
    while n.poll_action().is_some() {}
    let _third = deliver(&mut n, bundle(3, 30_000));
    assert!(matches!(n.poll_action(), Some(Action::ForgetDelivered(f)) if f == vec![first.clone()]));
    while n.poll_action().is_some() {}
    assert!(!n.was_delivered(&first) && n.was_delivered(&second));

    // Expired: forgotten, and taken again if it comes back (a new bundle for
    // the node: an expired one is then deleted on arrival).
    assert_eq!(n.poll_timeout(), Some(T0 + 20_001));
    n.handle_timeout(T0 + 20_001);
    assert_eq!(n.poll_action(), Some(Action::ForgetDelivered(vec![second.clone()])));
    assert!(!n.was_delivered(&second));

    // At start-up the store hands back what it remembered.
    let mut n = Node::new(NodeConfig::new(eid("dtn://a/"), Box::new(Epidemic)));
    n.handle_recovered_delivered(T0, first.clone(), until);
    n.handle_recovered_delivered(T0, second.clone(), T0 - 1);
    assert_eq!(n.poll_action(), Some(Action::ForgetDelivered(vec![second])));
    assert!(matches!(n.handle_received(T0, bundle(1, 10_000), None), Err(Rejected::Duplicate(_))));
}

/// The clock jumps back, then forward: IDs of new bundles stay unique (a
/// bundle created after the jump back does not reuse an earlier one's
/// creation timestamp), nothing expires early, and a jump past a bundle's
/// lifetime expires it through the deletion path.
#[test]
fn a_clock_that_jumps_neither_reuses_ids_nor_loses_bundles() {
    let mut n = Node::new(NodeConfig::new(eid("dtn://a/"), Box::new(Epidemic)));
    let req = |lifetime_ms| SendRequest {
        source: None,
        destination: eid("dtn://b/in"),
        lifetime_ms,
        flags: 0,
        report_to: None,
    };
    let first = n.send(T0 + 10_000, req(60_000), b"1").unwrap();
    let second = n.send(T0, req(60_000), b"2").unwrap(); // ten seconds back
    assert_ne!(first, second);
    assert!(second.creation >= first.creation, "creation times never go back: {second:?} after {first:?}");
    for id in [&first, &second] {
        n.handle_persisted(T0, id, true);
    }
    while n.poll_action().is_some() {}
    n.handle_timeout(T0 + 1);
    assert!(n.contains(&first) && n.contains(&second), "nothing expires when the clock goes back");
    // Forward, past the lifetime (counted from the creation time).
    n.handle_timeout(T0 + 10_000 + 60_001);
    assert!(!n.contains(&first) && !n.contains(&second));
    assert_eq!(n.stats().expired, 2);
}
