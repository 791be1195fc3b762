//! TCPCLv4 sessions driven back to back in memory on a virtual clock (like
//! quinn-proto's `Pair`), and single sessions fed hand-made bytes.

use ferry_cla_tcp::tcpcl::wire::{
    message_type, ContactFlags, ContactHeader, ExtensionFlags, ExtensionItem, ExtensionItems, Limits, Message,
    MsgReject, SegmentFlags, SessInit, SessTerm, SessTermFlags, XferAck, XferRefuse, XferSegment,
};
use ferry_cla_tcp::tcpcl::{
    CommandError, Config, Event, FailReason, Phase, RefuseReason, RejectReason, SessTermReason, Session, SessionError,
    TransferId, WireError,
};

// ----- helpers ---------------------------------------------------------------

/// Deterministic bundle-ish bytes.
fn bundle(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn config(node: &str, active: bool) -> Config {
    let mut c = Config::new(node, active);
    c.segment_mru = 1000;
    c.max_tx_segment = 1 << 20;
    c
}

/// A message as seen on the wire, owned, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Init { keepalive: u16, segment_mru: u64, transfer_mru: u64, node_id: String, ext: Vec<u8> },
    Seg { flags: u8, id: u64, ext: Vec<u8>, data: Vec<u8> },
    Ack { flags: u8, id: u64, len: u64 },
    Refuse { reason: RefuseReason, id: u64 },
    Keepalive,
    Term { flags: u8, reason: SessTermReason },
    Reject { reason: RejectReason, header: u8 },
}

fn to_owned(m: Message<'_>) -> Msg {
    match m {
        Message::SessInit(i) => Msg::Init {
            keepalive: i.keepalive,
            segment_mru: i.segment_mru,
            transfer_mru: i.transfer_mru,
            node_id: i.node_id.to_owned(),
            ext: i.extensions.as_bytes().to_vec(),
        },
        Message::XferSegment(s) => Msg::Seg {
            flags: s.flags.bits(),
            id: s.transfer_id,
            ext: s.extensions.as_bytes().to_vec(),
            data: s.data.to_vec(),
        },
        Message::XferAck(a) => Msg::Ack { flags: a.flags.bits(), id: a.transfer_id, len: a.acknowledged_len },
        Message::XferRefuse(r) => Msg::Refuse { reason: r.reason, id: r.transfer_id },
        Message::Keepalive => Msg::Keepalive,
        Message::SessTerm(t) => Msg::Term { flags: t.flags.bits(), reason: t.reason },
        Message::MsgReject(r) => Msg::Reject { reason: r.reason, header: r.rejected_header },
    }
}

const ANY: Limits = Limits { segment_mru: u64::MAX, max_extensions_len: u32::MAX, max_node_id_len: u16::MAX };

/// Decode messages (no contact header) from `wire`.
fn decode_messages(wire: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < wire.len() {
        let (m, n) = Message::parse(&wire[pos..], &ANY).unwrap().expect("whole messages only");
        out.push(to_owned(m));
        pos += n;
    }
    out
}

/// Decode a whole direction of a session: contact header, then messages.
fn decode(wire: &[u8]) -> (ContactHeader, Vec<Msg>) {
    let (ch, n) = ContactHeader::parse(wire).unwrap().unwrap();
    (ch, decode_messages(&wire[n..]))
}

fn encode(m: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    m.emit(&mut out);
    out
}

fn contact_header(version: u8) -> Vec<u8> {
    let mut out = Vec::new();
    ContactHeader { version, flags: ContactFlags::EMPTY }.emit(&mut out);
    out
}

fn sess_init(keepalive: u16, segment_mru: u64, transfer_mru: u64, node_id: &str) -> Vec<u8> {
    encode(&Message::SessInit(SessInit {
        keepalive,
        segment_mru,
        transfer_mru,
        node_id,
        extensions: ExtensionItems::EMPTY,
    }))
}

fn segment(flags: SegmentFlags, id: u64, ext: &[u8], data: &[u8]) -> Vec<u8> {
    let extensions = ExtensionItems::new_checked(ext).unwrap();
    encode(&Message::XferSegment(XferSegment { flags, transfer_id: id, extensions, data }))
}

fn ack(flags: SegmentFlags, id: u64, len: u64) -> Vec<u8> {
    encode(&Message::XferAck(XferAck { flags, transfer_id: id, acknowledged_len: len }))
}

fn drain_output(s: &mut Session, now: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(bytes) = s.poll_transmit(now) {
        out.extend_from_slice(&bytes);
    }
    out
}

fn drain_events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// A session fed by a hand-driven peer: `raw` plays the other side.
struct Raw {
    s: Session,
    now: u64,
    /// Everything the session wrote, not yet examined.
    out: Vec<u8>,
    events: Vec<Event>,
}

impl Raw {
    /// A passive session that received a v4 contact header and SESS_INIT.
    fn passive(cfg: Config, peer_segment_mru: u64, peer_transfer_mru: u64) -> Raw {
        let mut raw = Raw { s: Session::new(cfg, 0).unwrap(), now: 0, out: Vec::new(), events: Vec::new() };
        let mut input = contact_header(4);
        input.extend(sess_init(30, peer_segment_mru, peer_transfer_mru, "dtn://peer/"));
        raw.feed(&input);
        let (_, msgs) = decode(&raw.take_out());
        assert!(matches!(msgs[..], [Msg::Init { .. }]), "{msgs:?}");
        assert!(raw.s.is_established());
        assert!(matches!(raw.events[..], [Event::Established { .. }]));
        raw.events.clear();
        raw
    }

    /// An active session that received the peer's contact header and SESS_INIT.
    fn active(cfg: Config, peer_segment_mru: u64, peer_transfer_mru: u64) -> Raw {
        let mut raw = Raw { s: Session::new(cfg, 0).unwrap(), now: 0, out: Vec::new(), events: Vec::new() };
        raw.feed(&contact_header(4));
        raw.feed(&sess_init(30, peer_segment_mru, peer_transfer_mru, "dtn://peer/"));
        let (_, msgs) = decode(&raw.take_out());
        assert!(matches!(msgs[..], [Msg::Init { .. }]), "{msgs:?}");
        assert!(raw.s.is_established());
        raw.events.clear();
        raw
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.s.handle_bytes(self.now, bytes);
        self.collect();
    }

    fn collect(&mut self) {
        let out = drain_output(&mut self.s, self.now);
        self.out.extend(out);
        self.events.extend(drain_events(&mut self.s));
    }

    fn take_out(&mut self) -> Vec<u8> {
        self.collect();
        std::mem::take(&mut self.out)
    }

    fn take_msgs(&mut self) -> Vec<Msg> {
        decode_messages(&self.take_out())
    }

    fn take_events(&mut self) -> Vec<Event> {
        self.collect();
        std::mem::take(&mut self.events)
    }
}

/// Two sessions back to back: `a` active, `b` passive, on a virtual clock.
struct Pair {
    now: u64,
    a: Session,
    b: Session,
    a_events: Vec<Event>,
    b_events: Vec<Event>,
    /// Everything each side wrote.
    a_wire: Vec<u8>,
    b_wire: Vec<u8>,
    /// Whether bytes reach the other side (false: the link is down).
    deliver_a_to_b: bool,
    deliver_b_to_a: bool,
    /// Accept every received bundle at once (false: the test decides).
    auto_accept: bool,
    /// Deliver bytes in pieces of at most this many octets.
    chunk: usize,
}

impl Pair {
    fn new(a: Config, b: Config) -> Pair {
        assert!(a.active && !b.active);
        Pair {
            now: 0,
            a: Session::new(a, 0).unwrap(),
            b: Session::new(b, 0).unwrap(),
            a_events: Vec::new(),
            b_events: Vec::new(),
            a_wire: Vec::new(),
            b_wire: Vec::new(),
            deliver_a_to_b: true,
            deliver_b_to_a: true,
            auto_accept: true,
            chunk: usize::MAX,
        }
    }

    fn connected() -> Pair {
        let mut pair = Pair::new(config("dtn://a/", true), config("dtn://b/", false));
        pair.drive();
        assert!(pair.a.is_established() && pair.b.is_established());
        pair
    }

    /// Move bytes and events until nothing happens.
    fn drive(&mut self) {
        for _ in 0..10_000_000 {
            let mut progress = false;
            while let Some(bytes) = self.a.poll_transmit(self.now) {
                progress = true;
                self.a_wire.extend_from_slice(&bytes);
                if self.deliver_a_to_b {
                    for piece in bytes.chunks(self.chunk) {
                        self.b.handle_bytes(self.now, piece);
                    }
                }
            }
            while let Some(bytes) = self.b.poll_transmit(self.now) {
                progress = true;
                self.b_wire.extend_from_slice(&bytes);
                if self.deliver_b_to_a {
                    for piece in bytes.chunks(self.chunk) {
                        self.a.handle_bytes(self.now, piece);
                    }
                }
            }
            for (s, events) in [(&mut self.a, &mut self.a_events), (&mut self.b, &mut self.b_events)] {
                while let Some(ev) = s.poll_event() {
                    progress = true;
                    if let (true, Event::BundleReceived { transfer_id, .. }) = (self.auto_accept, &ev) {
                        s.accept_transfer(*transfer_id).unwrap();
                    }
                    events.push(ev);
                }
            }
            if !progress {
                return;
            }
        }
        panic!("the pair never went quiet");
    }

    /// Step the clock through every deadline up to `t`.
    fn run_until(&mut self, t: u64) {
        self.drive();
        for _ in 0..1_000_000 {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()].into_iter().flatten().min();
            match next {
                Some(n) if n <= t => {
                    self.now = self.now.max(n);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                    self.drive();
                }
                _ => {
                    self.now = t;
                    return;
                }
            }
        }
        panic!("timeouts never settled");
    }

    fn received(events: &[Event]) -> Vec<(TransferId, &[u8])> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::BundleReceived { transfer_id, bundle } => Some((*transfer_id, bundle.as_slice())),
                _ => None,
            })
            .collect()
    }

    fn acked(events: &[Event]) -> Vec<TransferId> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::TransferAcked { transfer_id } => Some(*transfer_id),
                _ => None,
            })
            .collect()
    }
}

fn count<T>(items: &[T], pred: impl Fn(&T) -> bool) -> usize {
    items.iter().filter(|i| pred(i)).count()
}

// ----- negotiation -------------------------------------------------------------

#[test]
fn contact_and_session_init_negotiate() {
    let mut a = config("dtn://a/", true);
    a.keepalive_secs = 30;
    a.segment_mru = 4000;
    a.transfer_mru = 1 << 30;
    let mut b = config("dtn://b/", false);
    b.keepalive_secs = 10;
    b.segment_mru = 1500;
    b.transfer_mru = 5 << 20;
    let mut pair = Pair::new(a, b);
    pair.drive();

    assert!(pair.a.is_established() && pair.b.is_established());
    assert_eq!(
        pair.a_events,
        [Event::Established {
            peer_node_id: Some("dtn://b/".into()),
            peer_segment_mru: 1500,
            peer_transfer_mru: 5 << 20,
            keepalive: 10,
            tls: false,
        }]
    );
    assert_eq!(
        pair.b_events,
        [Event::Established {
            peer_node_id: Some("dtn://a/".into()),
            peer_segment_mru: 4000,
            peer_transfer_mru: 1 << 30,
            keepalive: 10,
            tls: false,
        }]
    );
    let neg = pair.a.negotiated().unwrap();
    assert_eq!((neg.keepalive, neg.tls), (10, false));

    // RFC 9174 §4.2, §4.6: active sends contact header then SESS_INIT; the
    // passive answers each.
    let (ch_a, msgs_a) = decode(&pair.a_wire);
    let (ch_b, msgs_b) = decode(&pair.b_wire);
    assert_eq!((ch_a.version, ch_a.flags), (4, ContactFlags::EMPTY));
    assert_eq!(ch_b.version, 4);
    assert_eq!(
        msgs_a,
        [Msg::Init {
            keepalive: 30,
            segment_mru: 4000,
            transfer_mru: 1 << 30,
            node_id: "dtn://a/".into(),
            ext: vec![]
        }]
    );
    assert!(matches!(&msgs_b[..], [Msg::Init { keepalive: 10, segment_mru: 1500, .. }]));
}

#[test]
fn keepalive_zero_disables_keepalives() {
    let mut a = config("dtn://a/", true);
    a.keepalive_secs = 0;
    let mut pair = Pair::new(a, config("dtn://b/", false));
    pair.drive();
    assert_eq!(pair.b.negotiated().unwrap().keepalive, 0);
    assert_eq!(pair.a.poll_timeout(), None);
    pair.run_until(10_000_000);
    assert!(pair.a.is_established() && pair.b.is_established());
    assert!(!decode(&pair.a_wire).1.contains(&Msg::Keepalive));
}

#[test]
fn empty_node_id_means_undisclosed() {
    let mut pair = Pair::new(config("", true), config("dtn://b/", false));
    pair.drive();
    assert_eq!(pair.b.negotiated().unwrap().peer_node_id, None);
}

#[test]
fn tls_phase_when_both_offer_it() {
    let mut a = config("dtn://a/", true);
    a.can_tls = true;
    let mut b = config("dtn://b/", false);
    b.can_tls = true;
    let mut pair = Pair::new(a, b);
    pair.drive();
    assert_eq!((pair.a.phase(), pair.b.phase()), (Phase::Tls, Phase::Tls));
    assert_eq!(pair.a_events, [Event::StartTls { client: true }]);
    assert_eq!(pair.b_events, [Event::StartTls { client: false }]);
    assert_eq!(decode(&pair.a_wire).0.flags, ContactFlags::CAN_TLS);
    // Nothing followed the contact headers: the handshake would start here.
    assert!(pair.a.take_unprocessed_input().is_empty());
    assert!(pair.b.take_unprocessed_input().is_empty());
    // The "TLS layer" here is the identity; each certificate names its node.
    pair.a.tls_established(pair.now, vec!["dtn://b/".into()]).unwrap();
    pair.b.tls_established(pair.now, vec!["dtn://a/".into()]).unwrap();
    pair.drive();
    assert!(pair.a.is_established() && pair.b.is_established());
    assert!(pair.a.negotiated().unwrap().tls);
    assert!(
        matches!(&pair.b_events[..], [_, Event::Established { tls: true, peer_node_id: Some(id), .. }] if id == "dtn://a/")
    );
    assert_eq!(pair.a.tls_established(0, vec![]), Err(CommandError::NotInTlsPhase));
}

fn tls_pair(a_id: &str, b_id: &str) -> Pair {
    let mut a = config(a_id, true);
    a.can_tls = true;
    let mut b = config(b_id, false);
    b.can_tls = true;
    let mut pair = Pair::new(a, b);
    pair.drive();
    pair
}

#[test]
fn a_node_id_its_certificate_does_not_name_is_refused() {
    // RFC 9174 §4.4.3: a claims dtn://a/ but its certificate names dtn://x/.
    let mut pair = tls_pair("dtn://a/", "dtn://b/");
    pair.a.tls_established(pair.now, vec!["dtn://b/".into()]).unwrap();
    pair.b.tls_established(pair.now, vec!["dtn://x/".into()]).unwrap();
    pair.drive();
    assert!(!pair.b.is_established());
    assert!(pair.b_events.iter().any(|e| matches!(e,
        Event::ProtocolError(SessionError::NodeIdNotCertified { claimed, certified })
            if claimed == "dtn://a/" && certified == &["dtn://x/".to_owned()])));
    assert!(!pair.b_events.iter().any(|e| matches!(e, Event::Established { .. })));
    let (_, msgs_b) = decode(&pair.b_wire);
    assert!(msgs_b.contains(&Msg::Term { flags: 0, reason: SessTermReason::ContactFailure }), "{msgs_b:?}");
    // b never sent its SESS_INIT, so a never established either.
    assert!(!pair.a_events.iter().any(|e| matches!(e, Event::Established { .. })));
}

#[test]
fn an_undisclosed_node_id_is_the_certified_one() {
    let mut pair = tls_pair("", "dtn://b/");
    pair.a.tls_established(pair.now, vec!["dtn://b/".into()]).unwrap();
    pair.b.tls_established(pair.now, vec!["dtn://a/".into(), "ipn:1.0".into()]).unwrap();
    pair.drive();
    assert_eq!(pair.b.negotiated().unwrap().peer_node_id.as_deref(), Some("dtn://a/"));
}

#[test]
fn required_tls_that_the_peer_does_not_offer_ends_the_session() {
    // §4.3: the passive side requires TLS, the active one lacks CAN_TLS.
    let mut b = config("dtn://b/", false);
    b.can_tls = true;
    b.require_tls = true;
    let mut pair = Pair::new(config("dtn://a/", true), b);
    pair.drive();
    assert!(pair.b.is_closed());
    assert!(pair.b_events.contains(&Event::ProtocolError(SessionError::TlsRequired)));
    let (ch_b, msgs_b) = decode(&pair.b_wire);
    assert_eq!(ch_b.flags, ContactFlags::CAN_TLS);
    assert_eq!(msgs_b, [Msg::Term { flags: 0, reason: SessTermReason::ContactFailure }]);
    assert!(!pair.a_events.iter().any(|e| matches!(e, Event::Established { .. })));
}

#[test]
fn tls_required_for_a_node_refuses_it_in_plain_and_lets_others_in() {
    let mut b = config("dtn://b/", false);
    b.require_tls_for = vec!["dtn://a/".into()];
    let mut pair = Pair::new(config("dtn://a/", true), b.clone());
    pair.drive();
    assert!(!pair.b.is_established());
    assert!(pair
        .b_events
        .contains(&Event::ProtocolError(SessionError::TlsRequiredForNode { node_id: "dtn://a/".into() })));
    let (_, msgs_b) = decode(&pair.b_wire);
    assert!(msgs_b.contains(&Msg::Term { flags: 0, reason: SessTermReason::ContactFailure }), "{msgs_b:?}");

    let mut pair = Pair::new(config("dtn://c/", true), b);
    pair.drive();
    assert!(pair.b.is_established());
}

#[test]
fn can_tls_on_one_side_only_means_no_tls() {
    let mut a = config("dtn://a/", true);
    a.can_tls = true;
    let mut pair = Pair::new(a, config("dtn://b/", false));
    pair.drive();
    assert!(pair.a.is_established());
    assert!(!pair.a.negotiated().unwrap().tls);
}

// ----- transfers -------------------------------------------------------------

#[test]
fn bundles_of_0_1_and_10_mib_both_directions() {
    let mut pair = Pair::connected();
    let sizes = [0usize, 1, 10 << 20];
    let from_a: Vec<Vec<u8>> = sizes.iter().map(|&n| bundle(n, n as u32 + 1)).collect();
    let from_b: Vec<Vec<u8>> = sizes.iter().map(|&n| bundle(n, n as u32 + 7)).collect();
    for (x, y) in from_a.iter().zip(&from_b) {
        pair.a.send_bundle(x.clone()).unwrap();
        pair.b.send_bundle(y.clone()).unwrap();
    }
    pair.drive();

    let got_b: Vec<(TransferId, Vec<u8>)> =
        Pair::received(&pair.b_events).into_iter().map(|(id, b)| (id, b.to_vec())).collect();
    let got_a: Vec<(TransferId, Vec<u8>)> =
        Pair::received(&pair.a_events).into_iter().map(|(id, b)| (id, b.to_vec())).collect();
    let expect = |bundles: &[Vec<u8>]| -> Vec<(TransferId, Vec<u8>)> {
        bundles.iter().enumerate().map(|(i, b)| (TransferId(i as u64), b.clone())).collect()
    };
    assert!(got_b == expect(&from_a), "a -> b bundles differ");
    assert!(got_a == expect(&from_b), "b -> a bundles differ");
    let ids = vec![TransferId(0), TransferId(1), TransferId(2)];
    assert_eq!(Pair::acked(&pair.a_events), ids);
    assert_eq!(Pair::acked(&pair.b_events), ids);
    assert_eq!(pair.a.pending_transfers(), 0);

    // Segmented to the peer's segment MRU of 1000: 1 + 1 + ceil(10 MiB / 1000).
    let (_, msgs) = decode(&pair.a_wire);
    let segs: Vec<&Msg> = msgs.iter().filter(|m| matches!(m, Msg::Seg { .. })).collect();
    assert_eq!(segs.len(), 1 + 1 + (10usize << 20).div_ceil(1000));
    assert!(segs.iter().all(|m| matches!(m, Msg::Seg { data, .. } if data.len() <= 1000)));
    // The 0-octet bundle is one START|END segment carrying no data.
    assert!(
        matches!(&msgs[1], Msg::Seg { flags: 0x03, id: 0, data, ext } if data.is_empty() && ext.len() == 13),
        "{:?}",
        msgs[1]
    );
}

#[test]
fn byte_at_a_time_delivery_gives_the_same_result() {
    let mut pair = Pair::new(config("dtn://a/", true), config("dtn://b/", false));
    pair.chunk = 1;
    let bundles: Vec<Vec<u8>> = [0usize, 1, 999, 1000, 1001, 4321].iter().map(|&n| bundle(n, n as u32)).collect();
    for b in &bundles {
        pair.a.send_bundle(b.clone()).unwrap();
        pair.b.send_bundle(b.clone()).unwrap();
    }
    pair.drive();
    for events in [&pair.a_events, &pair.b_events] {
        let got: Vec<&[u8]> = Pair::received(events).into_iter().map(|(_, b)| b).collect();
        let want: Vec<&[u8]> = bundles.iter().map(Vec::as_slice).collect();
        assert_eq!(got, want);
        assert_eq!(Pair::acked(events).len(), bundles.len());
    }
    assert!(pair.a.buffered_input_len() == 0 && pair.b.buffered_input_len() == 0);
}

#[test]
fn pipelining_is_bounded() {
    let mut a = config("dtn://a/", true);
    a.max_pipelined_transfers = 1;
    let mut pair = Pair::new(a, config("dtn://b/", false));
    pair.auto_accept = false;
    pair.drive();
    let first = pair.a.send_bundle(vec![1; 10]).unwrap();
    let second = pair.a.send_bundle(vec![2; 10]).unwrap();
    pair.drive();
    // The second waits for the first's final ack.
    assert_eq!(Pair::received(&pair.b_events), [(first, &[1u8; 10][..])]);
    assert!(!pair.a.has_pending_transmit());
    pair.b.accept_transfer(first).unwrap();
    pair.drive();
    assert_eq!(Pair::received(&pair.b_events).len(), 2);
    pair.b.accept_transfer(second).unwrap();
    pair.drive();
    assert_eq!(Pair::acked(&pair.a_events), [first, second]);
}

#[test]
fn transmit_into_respects_its_budget_and_always_progresses() {
    let mut raw = Raw::active(config("dtn://a/", true), 100, 1 << 20);
    raw.s.send_bundle(bundle(1000, 1)).unwrap();
    assert!(raw.s.has_pending_transmit());
    let mut out = Vec::new();
    // A budget of 0 still yields one segment: type, flags, transfer ID,
    // extension length, the Transfer Length item, data length, data.
    assert_eq!(raw.s.transmit_into(0, &mut out, 0), (1 + 1 + 8 + 4 + 13 + 8) + 100);
    let n = raw.s.transmit_into(0, &mut out, 300);
    assert_eq!(n, 3 * (18 + 100));
    while raw.s.transmit_into(0, &mut out, 1 << 20) > 0 {}
    let segs = decode_messages(&out);
    assert_eq!(segs.len(), 10);
    assert!(!raw.s.has_pending_transmit());
}

#[test]
fn waiting_output_suppresses_the_keepalive_deadline() {
    let mut cfg = config("dtn://a/", true);
    cfg.keepalive_secs = 10;
    let mut raw = Raw::active(cfg, 1000, 1 << 20);
    assert_eq!(raw.s.poll_timeout(), Some(10_000));
    // Output is queued but the socket is full: no keepalive deadline, only
    // the idle one (twice the interval after the last receipt).
    raw.s.send_bundle(vec![0; 10]).unwrap();
    assert_eq!(raw.s.poll_timeout(), Some(20_000));
    raw.s.handle_timeout(15_000);
    assert!(raw.s.poll_transmit(15_000).is_some());
    assert_eq!(raw.s.poll_timeout(), Some(20_000));
    assert_eq!(raw.s.poll_transmit(15_000), None);
}

#[test]
fn final_ack_waits_for_accept_and_acks_reflect_flags() {
    let mut pair = Pair::connected();
    pair.auto_accept = false;
    let data = bundle(2500, 3);
    let id = pair.a.send_bundle(data.clone()).unwrap();
    pair.drive();

    assert_eq!(Pair::received(&pair.b_events), [(id, data.as_slice())]);
    // Segments START (1000), none (1000), END (500); only the first two acked.
    let (_, b_msgs) = decode(&pair.b_wire);
    let acks: Vec<&Msg> = b_msgs.iter().filter(|m| matches!(m, Msg::Ack { .. })).collect();
    assert_eq!(acks, [&Msg::Ack { flags: 0x02, id: 0, len: 1000 }, &Msg::Ack { flags: 0x00, id: 0, len: 2000 }]);
    assert!(Pair::acked(&pair.a_events).is_empty());
    assert_eq!(pair.a.pending_transfers(), 1);

    // The bundle is durable now.
    pair.b.accept_transfer(id).unwrap();
    pair.drive();
    let (_, b_msgs) = decode(&pair.b_wire);
    assert_eq!(b_msgs.last(), Some(&Msg::Ack { flags: 0x01, id: 0, len: 2500 }));
    assert_eq!(Pair::acked(&pair.a_events), [id]);
    assert_eq!(pair.b.accept_transfer(id), Err(CommandError::UnknownTransfer(id)));

    // A single-segment transfer's ack carries START|END.
    let id = pair.a.send_bundle(vec![1, 2, 3]).unwrap();
    pair.drive();
    pair.b.accept_transfer(id).unwrap();
    pair.drive();
    assert_eq!(decode(&pair.b_wire).1.last(), Some(&Msg::Ack { flags: 0x03, id: 1, len: 3 }));
    assert_eq!(Pair::acked(&pair.a_events), [TransferId(0), TransferId(1)]);
}

#[test]
fn reserved_segment_flags_are_reflected_in_acks() {
    let mut raw = Raw::passive(config("dtn://b/", false), 1000, 1 << 20);
    raw.feed(&segment(SegmentFlags(0x02 | 0x80), 5, &[], b"abc"));
    raw.feed(&segment(SegmentFlags(0x40), 5, &[], b"def"));
    assert_eq!(raw.take_msgs(), [Msg::Ack { flags: 0x82, id: 5, len: 3 }, Msg::Ack { flags: 0x40, id: 5, len: 6 }]);
    raw.feed(&segment(SegmentFlags(0x01 | 0x10), 5, &[], b"g"));
    raw.s.accept_transfer(TransferId(5)).unwrap();
    assert_eq!(raw.take_msgs(), [Msg::Ack { flags: 0x11, id: 5, len: 7 }]);
}

#[test]
fn flags_zero_acks_from_dtn7_rs_are_accepted() {
    let mut raw = Raw::active(config("dtn://a/", true), 1000, 1 << 20);
    let id = raw.s.send_bundle(bundle(2500, 9)).unwrap();
    let segs = raw.take_msgs();
    assert_eq!(segs.len(), 3);
    // dtn7-rs 0.21 acks every segment with flags 0.
    raw.feed(&ack(SegmentFlags::EMPTY, 0, 1000));
    raw.feed(&ack(SegmentFlags::EMPTY, 0, 2000));
    assert!(raw.take_events().is_empty());
    raw.feed(&ack(SegmentFlags::EMPTY, 0, 2500));
    assert_eq!(raw.take_events(), [Event::TransferAcked { transfer_id: id }]);

    // Single segment, flags-0 ack.
    let id = raw.s.send_bundle(vec![7; 10]).unwrap();
    raw.take_out();
    raw.feed(&ack(SegmentFlags::EMPTY, id.0, 10));
    assert_eq!(raw.take_events(), [Event::TransferAcked { transfer_id: id }]);
    assert!(raw.take_msgs().is_empty(), "no MSG_REJECT for flags-0 acks");
}

#[test]
fn bad_acks_are_rejected() {
    let mut raw = Raw::active(config("dtn://a/", true), 1000, 1 << 20);
    let id = raw.s.send_bundle(bundle(10, 1)).unwrap();
    raw.take_out();
    // More than was sent.
    raw.feed(&ack(SegmentFlags::END, id.0, 11));
    assert_eq!(raw.take_msgs(), [Msg::Reject { reason: RejectReason::Unexpected, header: message_type::XFER_ACK }]);
    // A transfer never started (RFC 9174 §5.1.2's own example).
    raw.feed(&ack(SegmentFlags::END, 99, 1));
    assert_eq!(raw.take_msgs(), [Msg::Reject { reason: RejectReason::Unexpected, header: message_type::XFER_ACK }]);
    let events = raw.take_events();
    assert!(matches!(events[0], Event::ProtocolError(SessionError::BadAckLength { .. })));
    assert!(matches!(events[1], Event::ProtocolError(SessionError::UnknownTransfer { transfer_id: 99 })));
    // A START-only ack of the whole length is not the final ack.
    raw.feed(&ack(SegmentFlags::START, id.0, 10));
    assert!(raw.take_events().is_empty());
    raw.feed(&ack(SegmentFlags::START | SegmentFlags::END, id.0, 10));
    assert_eq!(raw.take_events(), [Event::TransferAcked { transfer_id: id }]);
    // A late ack of a finished transfer is ignored.
    raw.feed(&ack(SegmentFlags::END, id.0, 10));
    assert!(raw.take_msgs().is_empty());
    assert!(raw.s.is_established());
}

#[test]
fn refusing_a_received_transfer() {
    let mut pair = Pair::connected();
    pair.auto_accept = false;
    let id = pair.a.send_bundle(bundle(1500, 2)).unwrap();
    pair.drive();
    assert_eq!(Pair::received(&pair.b_events).len(), 1);
    pair.b.refuse_transfer(id, RefuseReason::NotAcceptable).unwrap();
    pair.drive();
    assert_eq!(decode(&pair.b_wire).1.last(), Some(&Msg::Refuse { reason: RefuseReason::NotAcceptable, id: 0 }));
    assert_eq!(
        pair.a_events.last(),
        Some(&Event::TransferRefused { transfer_id: id, reason: RefuseReason::NotAcceptable })
    );
    assert_eq!(pair.a.pending_transfers(), 0);
    assert_eq!(pair.b.refuse_transfer(id, RefuseReason::Unknown), Err(CommandError::UnknownTransfer(id)));
}

#[test]
fn transfers_beyond_the_transfer_mru_are_refused_without_reassembly() {
    let mut a = config("dtn://a/", true);
    a.respect_peer_transfer_mru = false; // behave like dtn7-rs
    let mut b = config("dtn://b/", false);
    b.transfer_mru = 5000;
    let mut pair = Pair::new(a, b);
    pair.drive();

    // With the Transfer Length extension: refused at START.
    let id = pair.a.send_bundle(bundle(8000, 4)).unwrap();
    pair.drive();
    let (_, b_msgs) = decode(&pair.b_wire);
    assert!(!b_msgs.iter().any(|m| matches!(m, Msg::Ack { .. })), "{b_msgs:?}");
    assert!(b_msgs.contains(&Msg::Refuse { reason: RefuseReason::NoResources, id: 0 }));
    assert!(Pair::received(&pair.b_events).is_empty());
    assert!(pair.a_events.contains(&Event::TransferRefused { transfer_id: id, reason: RefuseReason::NoResources }));

    // Without it: refused when the data passes the MRU.
    let mut a = config("dtn://a/", true);
    a.respect_peer_transfer_mru = false;
    a.send_transfer_length = false;
    let mut b = config("dtn://b/", false);
    b.transfer_mru = 5000;
    let mut pair = Pair::new(a, b);
    pair.drive();
    let id = pair.a.send_bundle(bundle(8000, 4)).unwrap();
    let next = pair.a.send_bundle(bundle(100, 5)).unwrap();
    pair.drive();
    let (_, b_msgs) = decode(&pair.b_wire);
    let acks = count(&b_msgs, |m| matches!(m, Msg::Ack { id: 0, .. }));
    assert_eq!(acks, 5, "{b_msgs:?}");
    assert!(b_msgs.contains(&Msg::Refuse { reason: RefuseReason::NoResources, id: 0 }));
    assert!(pair.a_events.contains(&Event::TransferRefused { transfer_id: id, reason: RefuseReason::NoResources }));
    // The sender stopped that transfer and went on with the next.
    assert_eq!(Pair::received(&pair.b_events), [(next, bundle(100, 5).as_slice())]);
    assert_eq!(Pair::acked(&pair.a_events), [next]);
}

#[test]
fn the_peer_transfer_mru_is_respected() {
    let mut b = config("dtn://b/", false);
    b.transfer_mru = 5000;
    let mut pair = Pair::new(config("dtn://a/", true), b);
    // Queued before the peer's MRU was known.
    let early = pair.a.send_bundle(bundle(6000, 1)).unwrap();
    let fits = pair.a.send_bundle(bundle(5000, 1)).unwrap();
    pair.drive();
    assert!(pair
        .a_events
        .contains(&Event::TransferFailed { transfer_id: early, reason: FailReason::ExceedsPeerTransferMru }));
    assert_eq!(Pair::acked(&pair.a_events), [fits]);
    assert_eq!(
        pair.a.send_bundle(bundle(5001, 1)),
        Err(CommandError::ExceedsPeerTransferMru { len: 5001, peer_transfer_mru: 5000 })
    );
}

#[test]
fn many_transfers_go_out_in_order() {
    let mut pair = Pair::connected();
    let bundles: Vec<Vec<u8>> = (0..20).map(|i| bundle(100 + i * 300, i as u32)).collect();
    for b in &bundles {
        pair.a.send_bundle(b.clone()).unwrap();
    }
    pair.drive();
    let got = Pair::received(&pair.b_events);
    assert_eq!(got.len(), 20);
    for (i, (id, data)) in got.iter().enumerate() {
        assert_eq!((id.0, *data), (i as u64, bundles[i].as_slice()));
    }
    assert_eq!(Pair::acked(&pair.a_events).len(), 20);
}

#[test]
fn unknown_critical_transfer_extension_is_refused() {
    let mut raw = Raw::passive(config("dtn://b/", false), 1000, 1 << 20);
    let mut ext = Vec::new();
    ExtensionItem { flags: ExtensionFlags::CRITICAL, item_type: 0x7777, value: b"x" }.emit(&mut ext);
    raw.feed(&segment(SegmentFlags::START, 1, &ext, b"abc"));
    assert_eq!(raw.take_msgs(), [Msg::Refuse { reason: RefuseReason::ExtensionFailure, id: 1 }]);
    // Segments crossing the refusal are dropped, not acked.
    raw.feed(&segment(SegmentFlags::END, 1, &[], b"def"));
    assert!(raw.take_msgs().is_empty());
    assert!(raw.take_events().is_empty());

    // Non-critical unknown items are skipped.
    let mut ext = Vec::new();
    ExtensionItem { flags: ExtensionFlags::EMPTY, item_type: 0x7777, value: b"x" }.emit(&mut ext);
    raw.feed(&segment(SegmentFlags::START | SegmentFlags::END, 2, &ext, b"abc"));
    assert_eq!(raw.take_events(), [Event::BundleReceived { transfer_id: TransferId(2), bundle: b"abc".to_vec() }]);
}

#[test]
fn dtn7_rs_bundle_id_probe_is_handled() {
    // dtn7-rs with refuse-existing-bundles sends a START segment with no data
    // and a non-critical item of type 0x0001 holding a bundle ID string, waits
    // for its ack, then sends the rest without START.
    let mut raw = Raw::passive(config("dtn://b/", false), 64000, 64000);
    let mut ext = Vec::new();
    ExtensionItem { flags: ExtensionFlags::EMPTY, item_type: 0x0001, value: b"dtn://x/-123-0" }.emit(&mut ext);
    raw.feed(&segment(SegmentFlags::START, 1, &ext, b""));
    assert_eq!(raw.take_msgs(), [Msg::Ack { flags: 0x02, id: 1, len: 0 }]);
    raw.feed(&segment(SegmentFlags::EMPTY, 1, &[], b"hello "));
    raw.feed(&segment(SegmentFlags::END, 1, &[], b"world"));
    assert_eq!(raw.take_msgs(), [Msg::Ack { flags: 0x00, id: 1, len: 6 }]);
    assert_eq!(
        raw.take_events(),
        [Event::BundleReceived { transfer_id: TransferId(1), bundle: b"hello world".to_vec() }]
    );
}

#[test]
fn transfer_length_mismatch_is_not_acceptable() {
    let mut raw = Raw::passive(config("dtn://b/", false), 1000, 1 << 20);
    let mut ext = Vec::new();
    ExtensionItem { flags: ExtensionFlags::CRITICAL, item_type: 1, value: &5u64.to_be_bytes() }.emit(&mut ext);
    raw.feed(&segment(SegmentFlags::START | SegmentFlags::END, 3, &ext, b"abc"));
    assert_eq!(raw.take_msgs(), [Msg::Refuse { reason: RefuseReason::NotAcceptable, id: 3 }]);
    assert!(matches!(
        raw.take_events()[..],
        [Event::ProtocolError(SessionError::TransferLengthMismatch { declared: 5, received: 3, .. })]
    ));
}

#[test]
fn segments_without_start_are_unexpected() {
    let mut raw = Raw::passive(config("dtn://b/", false), 1000, 1 << 20);
    raw.feed(&segment(SegmentFlags::END, 42, &[], b"abc"));
    assert_eq!(raw.take_msgs(), [Msg::Reject { reason: RejectReason::Unexpected, header: 0x01 }]);
    assert!(raw.s.is_established());
}

/// Received bundles awaiting the owner's verdict bound what the session
/// takes: beyond the limit it parses no further input (and asks its owner
/// not to read any) until bundles are accepted; nothing is refused or lost.
#[test]
fn the_intake_pauses_at_the_unaccepted_limits_and_resumes() {
    let mut cfg = config("dtn://b/", false);
    cfg.max_unaccepted_transfers = 2;
    let mut raw = Raw::passive(cfg, 1000, 1 << 20);
    let mut input = vec![];
    for id in 0..5 {
        input.extend(segment(SegmentFlags::START | SegmentFlags::END, id, &[], &[id as u8]));
    }
    raw.feed(&input);
    let received = |events: &[Event]| -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::BundleReceived { transfer_id, .. } => Some(transfer_id.0),
                _ => None,
            })
            .collect()
    };
    assert_eq!(received(&raw.take_events()), [0, 1]);
    assert!(!raw.s.wants_input());
    assert!(raw.take_msgs().is_empty(), "nothing refused");
    raw.s.accept_transfer(TransferId(0)).unwrap();
    raw.s.resume_input(raw.now);
    assert_eq!(received(&raw.take_events()), [2]);
    raw.s.refuse_transfer(TransferId(1), RefuseReason::Completed).unwrap();
    raw.s.accept_transfer(TransferId(2)).unwrap();
    raw.s.resume_input(raw.now);
    assert_eq!(received(&raw.take_events()), [3, 4]);
    assert!(!raw.s.wants_input());
    raw.s.accept_transfer(TransferId(3)).unwrap();
    assert!(raw.s.wants_input());
    let msgs = raw.take_msgs();
    assert!(!msgs.iter().any(|m| matches!(m, Msg::Refuse { reason: RefuseReason::NoResources, .. })), "{msgs:?}");
}

/// The same in bytes: one bundle over the byte limit pauses the intake.
#[test]
fn the_intake_pauses_at_the_unaccepted_byte_limit() {
    let mut cfg = config("dtn://b/", false);
    cfg.max_unaccepted_bytes = 1500;
    let mut raw = Raw::passive(cfg, 1000, 1 << 20);
    let mut input = segment(SegmentFlags::START, 0, &[], &[1; 1000]);
    input.extend(segment(SegmentFlags::END, 0, &[], &[2; 600]));
    input.extend(segment(SegmentFlags::START | SegmentFlags::END, 1, &[], b"next"));
    raw.feed(&input);
    assert_eq!(count(&raw.take_events(), |e| matches!(e, Event::BundleReceived { .. })), 1);
    assert!(!raw.s.wants_input());
    raw.s.accept_transfer(TransferId(0)).unwrap();
    raw.s.resume_input(raw.now);
    assert!(raw
        .take_events()
        .contains(&Event::BundleReceived { transfer_id: TransferId(1), bundle: b"next".to_vec() }));
}

// ----- keepalive and idle timeout ---------------------------------------------

#[test]
fn keepalives_are_sent_when_idle() {
    let mut a = config("dtn://a/", true);
    a.keepalive_secs = 10;
    let mut pair = Pair::new(a, config("dtn://b/", false));
    pair.drive();
    assert_eq!(pair.a.poll_timeout(), Some(10_000));
    pair.run_until(9_999);
    assert!(!decode(&pair.a_wire).1.contains(&Msg::Keepalive));
    pair.run_until(10_000);
    assert_eq!(count(&decode(&pair.a_wire).1, |m| *m == Msg::Keepalive), 1);
    assert_eq!(count(&decode(&pair.b_wire).1, |m| *m == Msg::Keepalive), 1);
    // An hour of silence but for keepalives: still established.
    pair.run_until(3_600_000);
    assert!(pair.a.is_established() && pair.b.is_established());
    assert_eq!(count(&decode(&pair.a_wire).1, |m| *m == Msg::Keepalive), 360);

    // Traffic defers the keepalive.
    let before = count(&decode(&pair.a_wire).1, |m| *m == Msg::Keepalive);
    pair.run_until(3_605_000);
    pair.a.send_bundle(vec![1]).unwrap();
    pair.run_until(3_614_999);
    assert_eq!(count(&decode(&pair.a_wire).1, |m| *m == Msg::Keepalive), before);
}

#[test]
fn idle_timeout_terminates_the_session() {
    let mut a = config("dtn://a/", true);
    a.keepalive_secs = 10;
    a.termination_timeout_ms = 5_000;
    let mut pair = Pair::new(a, config("dtn://b/", false));
    pair.drive();
    // The peer goes silent (its bytes no longer arrive).
    pair.deliver_b_to_a = false;
    pair.deliver_a_to_b = false;
    pair.run_until(19_999);
    assert!(pair.a.is_established());
    pair.run_until(20_000);
    assert_eq!(pair.a.phase(), Phase::Ending);
    assert!(pair.a_events.contains(&Event::ProtocolError(SessionError::IdleTimeout)));
    assert!(pair.a_events.contains(&Event::Terminated { reason: SessTermReason::IdleTimeout, by_peer: false }));
    assert_eq!(decode(&pair.a_wire).1.last(), Some(&Msg::Term { flags: 0, reason: SessTermReason::IdleTimeout }));
    // No reply ever comes: the termination timeout closes it.
    pair.run_until(25_000);
    assert!(pair.a.is_closed());
    assert_eq!(pair.a_events.last(), Some(&Event::Closed));
    assert_eq!(pair.a.poll_timeout(), None);
}

/// A peer that keeps the session alive with keepalives but never acknowledges
/// our transfer: the transfer timeout ends the session, and the transfer fails
/// (the node sends the bundle again later) instead of waiting forever.
#[test]
fn a_peer_that_never_acks_is_timed_out_although_it_sends_keepalives() {
    let mut cfg = config("dtn://a/", true);
    cfg.transfer_timeout_ms = 60_000;
    cfg.termination_timeout_ms = 5_000;
    let mut raw = Raw::active(cfg, 1000, 1 << 20);
    raw.now = 1_000;
    let id = raw.s.send_bundle(bundle(2500, 9)).unwrap();
    let segs = raw.take_msgs();
    assert_eq!(count(&segs, |m| matches!(m, Msg::Seg { .. })), 3);
    // The first segment is acknowledged at 30 s, then only keepalives come.
    raw.now = 30_000;
    raw.feed(&ack(SegmentFlags::START, id.0, 1000));
    for t in (40_000..=89_000).step_by(10_000) {
        raw.now = t;
        raw.feed(&encode(&Message::Keepalive));
        raw.s.handle_timeout(t);
        assert!(raw.s.is_established(), "timed out early at {t} ms");
    }
    assert_eq!(raw.s.poll_timeout(), Some(90_000));
    raw.now = 90_000;
    raw.s.handle_timeout(90_000);
    let events = raw.take_events();
    let err = SessionError::AckTimeout { transfer_id: id.0, waited_ms: 60_000 };
    assert!(events.contains(&Event::ProtocolError(err)), "{events:?}");
    assert!(events.contains(&Event::Terminated { reason: SessTermReason::IdleTimeout, by_peer: false }));
    assert!(raw.take_msgs().contains(&Msg::Term { flags: 0, reason: SessTermReason::IdleTimeout }));
    // No reply and no ack: the termination timeout closes, the transfer fails.
    raw.now = 95_000;
    raw.s.handle_timeout(95_000);
    let events = raw.take_events();
    assert!(events.contains(&Event::TransferFailed { transfer_id: id, reason: FailReason::SessionClosed }));
    assert!(raw.s.is_closed());
}

/// A peer that starts a transfer and stops sending its segments, while
/// keeping the session alive, is cut off after the transfer timeout.
#[test]
fn a_peer_that_stalls_mid_transfer_is_timed_out() {
    let mut cfg = config("dtn://b/", false);
    cfg.transfer_timeout_ms = 20_000;
    let mut raw = Raw::passive(cfg, 1000, 1 << 20);
    assert_eq!(raw.s.poll_timeout(), Some(30_000), "no transfer: only the keepalive deadline");
    raw.now = 5_000;
    raw.feed(&segment(SegmentFlags::START, 7, &[], &[1; 500]));
    assert_eq!(raw.take_msgs(), [Msg::Ack { flags: 0x02, id: 7, len: 500 }]);
    assert_eq!(raw.s.poll_timeout(), Some(25_000));
    raw.now = 20_000;
    raw.feed(&segment(SegmentFlags::EMPTY, 7, &[], &[2; 500]));
    raw.now = 39_999;
    raw.feed(&encode(&Message::Keepalive));
    raw.s.handle_timeout(39_999);
    assert!(raw.s.is_established());
    raw.now = 40_000;
    raw.s.handle_timeout(40_000);
    let events = raw.take_events();
    let err = SessionError::TransferStalled { transfer_id: 7, waited_ms: 20_000 };
    assert!(events.contains(&Event::ProtocolError(err)), "{events:?}");
    assert_eq!(raw.s.phase(), Phase::Ending);
    assert!(!events.iter().any(|e| matches!(e, Event::BundleReceived { .. })));
}

/// A transfer timeout of 0 turns the check off.
#[test]
fn transfer_timeout_zero_waits_for_the_idle_timeout_only() {
    let mut cfg = config("dtn://a/", true);
    cfg.transfer_timeout_ms = 0;
    let mut raw = Raw::active(cfg, 1000, 1 << 20);
    raw.s.send_bundle(bundle(100, 1)).unwrap();
    raw.take_out();
    for t in (10_000..=600_000).step_by(10_000) {
        raw.now = t;
        raw.feed(&encode(&Message::Keepalive));
        raw.s.handle_timeout(t);
    }
    assert!(raw.s.is_established());
    assert_eq!(raw.s.pending_transfers(), 1);
}

#[test]
fn contact_timeout_closes_a_silent_connection() {
    let mut s = Session::new(Config::new("dtn://b/", false), 1000).unwrap();
    assert_eq!(s.poll_timeout(), Some(31_000));
    s.handle_timeout(30_999);
    assert!(!s.is_closed());
    s.handle_timeout(31_000);
    assert!(s.is_closed());
    assert_eq!(drain_events(&mut s), [Event::ProtocolError(SessionError::ContactTimeout), Event::Closed]);
    assert_eq!(s.poll_transmit(31_000), None);
}

// ----- termination -------------------------------------------------------------

#[test]
fn sess_term_is_answered_once_with_reply() {
    let mut pair = Pair::connected();
    pair.a.close(pair.now, SessTermReason::Busy);
    pair.drive();
    assert_eq!(decode(&pair.a_wire).1.last(), Some(&Msg::Term { flags: 0, reason: SessTermReason::Busy }));
    assert_eq!(decode(&pair.b_wire).1.last(), Some(&Msg::Term { flags: 1, reason: SessTermReason::Busy }));
    assert_eq!(count(&decode(&pair.b_wire).1, |m| matches!(m, Msg::Term { .. })), 1);
    assert!(pair.a.is_closed() && pair.b.is_closed());
    assert_eq!(pair.a_events[1..], [Event::Terminated { reason: SessTermReason::Busy, by_peer: false }, Event::Closed]);
    assert_eq!(pair.b_events[1..], [Event::Terminated { reason: SessTermReason::Busy, by_peer: true }, Event::Closed]);
    assert_eq!(pair.a.send_bundle(vec![1]), Err(CommandError::Closed));
}

#[test]
fn ending_finishes_transfers_in_progress_and_fails_queued_ones() {
    let mut pair = Pair::connected();
    let big = bundle(100_000, 8);
    let in_progress = pair.a.send_bundle(big.clone()).unwrap();
    let queued: Vec<TransferId> = (0..3).map(|i| pair.a.send_bundle(bundle(10, i)).unwrap()).collect();
    // Let the first batch of segments out, then terminate.
    let out = pair.a.poll_transmit(pair.now).unwrap();
    pair.b.handle_bytes(pair.now, &out);
    pair.a.close(pair.now, SessTermReason::Unknown);
    assert_eq!(pair.a.phase(), Phase::Ending);
    assert_eq!(pair.a.send_bundle(vec![1]), Err(CommandError::Terminating));
    pair.drive();
    // The transfer in progress completed and was acknowledged (RFC 9174 §6.1
    // lets it finish); the queued ones never began.
    assert_eq!(Pair::received(&pair.b_events), [(in_progress, big.as_slice())]);
    assert_eq!(Pair::acked(&pair.a_events), [in_progress]);
    for id in &queued {
        assert!(pair.a_events.contains(&Event::TransferFailed { transfer_id: *id, reason: FailReason::SessionClosed }));
    }
    assert!(pair.a.is_closed() && pair.b.is_closed());
}

#[test]
fn session_waits_for_accept_before_closing() {
    let mut pair = Pair::connected();
    pair.auto_accept = false;
    let id = pair.a.send_bundle(vec![5; 10]).unwrap();
    pair.drive();
    pair.b.close(pair.now, SessTermReason::Unknown);
    pair.drive();
    // b holds an unaccepted bundle: both wait for its final ack.
    assert_eq!((pair.a.phase(), pair.b.phase()), (Phase::Ending, Phase::Ending));
    pair.b.accept_transfer(id).unwrap();
    pair.drive();
    assert_eq!(Pair::acked(&pair.a_events), [id]);
    assert!(pair.a.is_closed() && pair.b.is_closed());
}

#[test]
fn new_transfers_are_refused_while_ending() {
    let mut raw = Raw::passive(config("dtn://b/", false), 1000, 1 << 20);
    raw.s.close(0, SessTermReason::Unknown);
    assert_eq!(raw.take_msgs(), [Msg::Term { flags: 0, reason: SessTermReason::Unknown }]);
    raw.feed(&segment(SegmentFlags::START | SegmentFlags::END, 7, &[], b"late"));
    assert_eq!(raw.take_msgs(), [Msg::Refuse { reason: RefuseReason::SessionTerminating, id: 7 }]);
    assert!(!raw.take_events().iter().any(|e| matches!(e, Event::BundleReceived { .. })));
    // The peer's reply closes it.
    raw.feed(&encode(&Message::SessTerm(SessTerm { flags: SessTermFlags::REPLY, reason: SessTermReason::Unknown })));
    assert!(raw.s.is_closed());
}

#[test]
fn peer_sess_term_while_receiving_lets_the_transfer_finish() {
    let mut raw = Raw::passive(config("dtn://b/", false), 1000, 1 << 20);
    raw.feed(&segment(SegmentFlags::START, 1, &[], b"abc"));
    raw.feed(&encode(&Message::SessTerm(SessTerm { flags: SessTermFlags::EMPTY, reason: SessTermReason::Busy })));
    assert_eq!(
        raw.take_msgs(),
        [Msg::Ack { flags: 2, id: 1, len: 3 }, Msg::Term { flags: 1, reason: SessTermReason::Busy }]
    );
    assert_eq!(raw.s.phase(), Phase::Ending);
    // A second SESS_TERM gets no second reply.
    raw.feed(&encode(&Message::SessTerm(SessTerm { flags: SessTermFlags::EMPTY, reason: SessTermReason::Busy })));
    assert!(raw.take_msgs().is_empty());
    raw.feed(&segment(SegmentFlags::END, 1, &[], b"def"));
    raw.s.accept_transfer(TransferId(1)).unwrap();
    assert_eq!(raw.take_msgs(), [Msg::Ack { flags: 1, id: 1, len: 6 }]);
    assert!(raw.s.is_closed());
}

#[test]
fn connection_loss_fails_pending_transfers() {
    let mut pair = Pair::connected();
    pair.auto_accept = false;
    let id = pair.a.send_bundle(vec![1; 100]).unwrap();
    pair.drive();
    pair.a.handle_connection_closed();
    let events = drain_events(&mut pair.a);
    assert_eq!(
        events,
        [
            Event::ProtocolError(SessionError::ConnectionLost),
            Event::TransferFailed { transfer_id: id, reason: FailReason::SessionClosed },
            Event::Closed
        ]
    );
}

// ----- contact header and malformed input ------------------------------------------

#[test]
fn bad_magic_closes_without_a_word() {
    let mut s = Session::new(config("dtn://b/", false), 0).unwrap();
    s.handle_bytes(0, b"GET / HTTP/1.1\r\n");
    assert!(s.is_closed());
    assert_eq!(s.poll_transmit(0), None);
    assert_eq!(drain_events(&mut s), [Event::ProtocolError(SessionError::Wire(WireError::BadMagic)), Event::Closed]);
}

#[test]
fn version_3_contact_header_gets_version_mismatch() {
    // Passive (RFC 9174 §4.3): send our contact header, then SESS_TERM.
    let mut s = Session::new(config("dtn://b/", false), 0).unwrap();
    // A TCPCLv3 contact header: magic, version 3, flags, keepalive, EID SDNV...
    s.handle_bytes(0, b"dtn!\x03\x00\x00\x0f\x08dtn://c/");
    assert!(s.is_closed());
    let out = drain_output(&mut s, 0);
    let (ch, msgs) = decode(&out);
    assert_eq!(ch.version, 4);
    assert_eq!(msgs, [Msg::Term { flags: 0, reason: SessTermReason::VersionMismatch }]);
    assert_eq!(
        drain_events(&mut s),
        [
            Event::ProtocolError(SessionError::VersionMismatch { version: 3 }),
            Event::Terminated { reason: SessTermReason::VersionMismatch, by_peer: false },
            Event::Closed
        ]
    );

    // Active (§4.3): a lower version in the reply closes the connection.
    let mut s = Session::new(config("dtn://a/", true), 0).unwrap();
    let ours = drain_output(&mut s, 0);
    assert_eq!(ours, [0x64, 0x74, 0x6e, 0x21, 0x04, 0x00]);
    s.handle_bytes(0, &contact_header(3));
    assert!(s.is_closed());
    assert_eq!(s.poll_transmit(0), None);
}

#[test]
fn unknown_message_type_is_rejected_and_closes() {
    let mut raw = Raw::passive(config("dtn://b/", false), 1000, 1 << 20);
    raw.feed(&[0x0a, 1, 2, 3]);
    assert_eq!(raw.take_msgs(), [Msg::Reject { reason: RejectReason::TypeUnknown, header: 0x0a }]);
    assert!(raw.s.is_closed());
    assert_eq!(
        raw.take_events(),
        [Event::ProtocolError(SessionError::Wire(WireError::UnknownMessageType(0x0a))), Event::Closed]
    );
}

#[test]
fn unexpected_messages_get_msg_reject() {
    let mut raw = Raw::passive(config("dtn://b/", false), 1000, 1 << 20);
    raw.feed(&sess_init(30, 1000, 1000, "dtn://again/"));
    assert_eq!(raw.take_msgs(), [Msg::Reject { reason: RejectReason::Unexpected, header: 0x07 }]);
    raw.feed(&encode(&Message::XferRefuse(XferRefuse { reason: RefuseReason::Unknown, transfer_id: 3 })));
    assert_eq!(raw.take_msgs(), [Msg::Reject { reason: RejectReason::Unexpected, header: 0x03 }]);
    // The peer rejecting us is only reported.
    raw.feed(&encode(&Message::MsgReject(MsgReject { reason: RejectReason::Unsupported, rejected_header: 4 })));
    assert!(raw.take_msgs().is_empty());
    assert!(raw.s.is_established());

    // A transfer message before SESS_INIT.
    let mut s = Session::new(config("dtn://b/", false), 0).unwrap();
    s.handle_bytes(0, &contact_header(4));
    s.handle_bytes(0, &segment(SegmentFlags::START | SegmentFlags::END, 0, &[], b"x"));
    let (_, msgs) = decode(&drain_output(&mut s, 0));
    assert_eq!(msgs, [Msg::Reject { reason: RejectReason::Unexpected, header: 0x01 }]);
    assert_eq!(s.phase(), Phase::SessInit);
}

#[test]
fn unknown_critical_session_extension_is_a_contact_failure() {
    let mut ext = Vec::new();
    ExtensionItem { flags: ExtensionFlags::CRITICAL, item_type: 0x4242, value: b"?" }.emit(&mut ext);
    let init = encode(&Message::SessInit(SessInit {
        keepalive: 30,
        segment_mru: 1000,
        transfer_mru: 1000,
        node_id: "dtn://c/",
        extensions: ExtensionItems::new_checked(&ext).unwrap(),
    }));
    let mut s = Session::new(config("dtn://b/", false), 0).unwrap();
    s.handle_bytes(0, &contact_header(4));
    s.handle_bytes(0, &init);
    let (_, msgs) = decode(&drain_output(&mut s, 0));
    // RFC 9174 §4.8: SESS_TERM "Contact Failure"; our SESS_INIT is never sent.
    assert_eq!(msgs, [Msg::Term { flags: 0, reason: SessTermReason::ContactFailure }]);
    assert_eq!(s.phase(), Phase::Ending);
    s.handle_bytes(
        0,
        &encode(&Message::SessTerm(SessTerm { flags: SessTermFlags::REPLY, reason: SessTermReason::ContactFailure })),
    );
    assert!(s.is_closed());

    // The same item, not critical, is ignored.
    let mut ext = Vec::new();
    ExtensionItem { flags: ExtensionFlags::EMPTY, item_type: 0x4242, value: b"?" }.emit(&mut ext);
    let init = encode(&Message::SessInit(SessInit {
        keepalive: 30,
        segment_mru: 1000,
        transfer_mru: 1000,
        node_id: "dtn://c/",
        extensions: ExtensionItems::new_checked(&ext).unwrap(),
    }));
    let mut s = Session::new(config("dtn://b/", false), 0).unwrap();
    s.handle_bytes(0, &contact_header(4));
    s.handle_bytes(0, &init);
    assert!(s.is_established());
}

#[test]
fn zero_segment_mru_is_a_contact_failure() {
    let mut s = Session::new(config("dtn://a/", true), 0).unwrap();
    drain_output(&mut s, 0);
    s.handle_bytes(0, &contact_header(4));
    s.handle_bytes(0, &sess_init(30, 0, 1000, "dtn://b/"));
    let msgs = decode_messages(&drain_output(&mut s, 0));
    assert_eq!(msgs.last(), Some(&Msg::Term { flags: 0, reason: SessTermReason::ContactFailure }));
}

#[test]
fn a_2_pow_63_segment_is_handled_at_once() {
    let mut raw = Raw::passive(config("dtn://b/", false), 1000, 1 << 20);
    // Just the header: flags START|END, ID, no extensions, length 2^63.
    let mut header = vec![message_type::XFER_SEGMENT, 0x03];
    header.extend_from_slice(&9u64.to_be_bytes());
    header.extend_from_slice(&0u32.to_be_bytes());
    header.extend_from_slice(&(1u64 << 63).to_be_bytes());
    raw.feed(&header);
    assert!(raw.s.is_closed());
    assert_eq!(raw.s.buffered_input_len(), 0);
    assert_eq!(raw.take_msgs(), [Msg::Term { flags: 0, reason: SessTermReason::ResourceExhaustion }]);
    assert_eq!(
        raw.take_events()[0],
        Event::ProtocolError(SessionError::Wire(WireError::SegmentTooLong { len: 1 << 63, max: 1000 }))
    );
}

#[test]
fn a_2_pow_63_transfer_length_is_refused_at_once() {
    let mut raw = Raw::passive(config("dtn://b/", false), 1000, 1 << 20);
    let mut ext = Vec::new();
    ExtensionItem { flags: ExtensionFlags::CRITICAL, item_type: 1, value: &(1u64 << 63).to_be_bytes() }.emit(&mut ext);
    raw.feed(&segment(SegmentFlags::START, 4, &ext, b"tiny"));
    assert_eq!(raw.take_msgs(), [Msg::Refuse { reason: RefuseReason::NoResources, id: 4 }]);
    assert!(raw.s.is_established());
    // The session goes on.
    raw.feed(&segment(SegmentFlags::START | SegmentFlags::END, 5, &[], b"ok"));
    assert_eq!(raw.take_events(), [Event::BundleReceived { transfer_id: TransferId(5), bundle: b"ok".to_vec() }]);
}

#[test]
fn oversized_sess_init_fields_are_contact_failures() {
    for tail in [
        // node ID length 65535
        {
            let mut v = vec![message_type::SESS_INIT, 0, 30];
            v.extend_from_slice(&[0; 16]);
            v.extend_from_slice(&u16::MAX.to_be_bytes());
            v
        },
        // session extension length 2^32-1
        {
            let mut v = vec![message_type::SESS_INIT, 0, 30];
            v.extend_from_slice(&[0; 16]);
            v.extend_from_slice(&0u16.to_be_bytes());
            v.extend_from_slice(&u32::MAX.to_be_bytes());
            v
        },
    ] {
        let mut s = Session::new(config("dtn://b/", false), 0).unwrap();
        s.handle_bytes(0, &contact_header(4));
        s.handle_bytes(0, &tail);
        assert!(s.is_closed());
        let (_, msgs) = decode(&drain_output(&mut s, 0));
        assert_eq!(msgs, [Msg::Term { flags: 0, reason: SessTermReason::ContactFailure }]);
    }
}

// ----- golden bytes ---------------------------------------------------------------

#[test]
fn golden_sess_init_and_xfer_segment() {
    let mut cfg = Config::new("dtn://a/", true);
    cfg.keepalive_secs = 30;
    cfg.segment_mru = 1000;
    cfg.transfer_mru = 0x10000;
    let mut s = Session::new(cfg, 0).unwrap();
    // RFC 9174 §4.2: magic "dtn!", version 4, flags 0.
    assert_eq!(drain_output(&mut s, 0), [0x64, 0x74, 0x6e, 0x21, 0x04, 0x00]);
    s.handle_bytes(0, &[0x64, 0x74, 0x6e, 0x21, 0x04, 0x00]);
    #[rustfmt::skip]
    let sess_init: &[u8] = &[
        0x07,                                           // message type SESS_INIT (§4.5)
        0x00, 0x1e,                                     // keepalive interval 30 s
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xe8, // segment MRU 1000
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, // transfer MRU 65536
        0x00, 0x08,                                     // node ID length
        b'd', b't', b'n', b':', b'/', b'/', b'a', b'/', // node ID
        0x00, 0x00, 0x00, 0x00,                         // session extension items length
    ];
    assert_eq!(drain_output(&mut s, 0), sess_init);

    // The peer's SESS_INIT, by hand: keepalive 60, segment MRU 4, transfer MRU 2^20, no node ID.
    #[rustfmt::skip]
    let peer_init: &[u8] = &[
        0x07, 0x00, 0x3c,
        0, 0, 0, 0, 0, 0, 0, 4,
        0, 0, 0, 0, 0, 0x10, 0, 0,
        0x00, 0x00,
        0, 0, 0, 0,
    ];
    s.handle_bytes(0, peer_init);
    assert_eq!(
        drain_events(&mut s),
        [Event::Established {
            peer_node_id: None,
            peer_segment_mru: 4,
            peer_transfer_mru: 1 << 20,
            keepalive: 30,
            tls: false
        }]
    );
    s.send_bundle(b"hello".to_vec()).unwrap();
    #[rustfmt::skip]
    let segments: &[u8] = &[
        // §5.2.2: XFER_SEGMENT with START: flags, transfer ID,
        // transfer extension items (§5.2.5.1 Transfer Length), data.
        0x01, 0x02,
        0, 0, 0, 0, 0, 0, 0, 0,                         // transfer ID 0 (§5.2.1)
        0x00, 0x00, 0x00, 0x0d,                         // transfer extension items length 13
        0x00, 0x00, 0x01, 0x00, 0x08,                   // flags 0, type 0x0001, length 8
        0, 0, 0, 0, 0, 0, 0, 5,                         // total length 5
        0, 0, 0, 0, 0, 0, 0, 4,                         // data length 4 (peer segment MRU)
        b'h', b'e', b'l', b'l',
        // Without START: no extension items field.
        0x01, 0x01,
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 1,
        b'o',
    ];
    assert_eq!(drain_output(&mut s, 0), segments);
    // §5.2.3: XFER_ACK flags END, transfer ID 0, length 5.
    s.handle_bytes(0, &[0x02, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
    assert_eq!(drain_events(&mut s), [Event::TransferAcked { transfer_id: TransferId(0) }]);
    // §6.1: SESS_TERM flags 0, reason "Busy".
    s.close(0, SessTermReason::Busy);
    assert_eq!(drain_output(&mut s, 0), [0x05, 0x00, 0x03]);
}

// ----- robustness -------------------------------------------------------------------

/// A full, valid exchange: what each side wrote.
fn recorded_streams() -> (Vec<u8>, Vec<u8>) {
    let mut a = config("dtn://a/", true);
    a.segment_mru = 100;
    a.keepalive_secs = 5;
    let mut b = config("dtn://b/", false);
    b.segment_mru = 100;
    let mut pair = Pair::new(a, b);
    pair.drive();
    for (i, n) in [0usize, 1, 250].into_iter().enumerate() {
        pair.a.send_bundle(bundle(n, i as u32)).unwrap();
        pair.b.send_bundle(bundle(n + 3, i as u32)).unwrap();
    }
    pair.run_until(6_000);
    pair.a.close(pair.now, SessTermReason::Unknown);
    pair.drive();
    assert!(pair.a.is_closed() && pair.b.is_closed());
    (pair.a_wire, pair.b_wire)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Feed `input` in random chunks to a fresh session; it must not panic and
/// must keep its input buffer bounded.
fn feed_mutant(input: &[u8], active: bool, rng: &mut Rng) {
    let mut cfg = config(if active { "dtn://a/" } else { "dtn://b/" }, active);
    cfg.segment_mru = 100;
    cfg.transfer_mru = 10_000;
    let limit =
        Limits { segment_mru: 100, max_extensions_len: cfg.max_extensions_len, max_node_id_len: cfg.max_node_id_len }
            .max_message_len() as usize;
    let mut s = Session::new(cfg, 0).unwrap();
    let mut now = 0;
    let mut rest = input;
    while !rest.is_empty() {
        let n = (1 + rng.below(64) as usize).min(rest.len());
        s.handle_bytes(now, &rest[..n]);
        assert!(s.buffered_input_len() <= limit + n);
        rest = &rest[n..];
        now += rng.below(3000);
        s.handle_timeout(now);
        while s.poll_transmit(now).is_some() {}
        while let Some(ev) = s.poll_event() {
            if let Event::BundleReceived { transfer_id, bundle } = ev {
                assert!(bundle.len() <= 10_000);
                let _ = s.accept_transfer(transfer_id);
            }
        }
    }
    s.handle_connection_closed();
    assert!(s.is_closed());
}

#[test]
fn truncations_and_byte_flips_never_panic() {
    let (a_wire, b_wire) = recorded_streams();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // a's stream goes to a passive session, b's to an active one.
    for (stream, active) in [(&a_wire, false), (&b_wire, true)] {
        for cut in 0..=stream.len() {
            feed_mutant(&stream[..cut], active, &mut rng);
        }
        for pos in 0..stream.len() {
            for flip in [0xffu8, 0x80, 0x01, rng.next() as u8 | 1] {
                let mut m = stream.clone();
                m[pos] ^= flip;
                feed_mutant(&m, active, &mut rng);
            }
        }
        // Spliced and shuffled streams.
        for _ in 0..200 {
            let mut m = stream.clone();
            for _ in 0..4 {
                let i = rng.below(m.len() as u64) as usize;
                let j = rng.below(m.len() as u64) as usize;
                m.swap(i, j);
            }
            let cut = rng.below(m.len() as u64) as usize;
            m.truncate(cut.max(6));
            feed_mutant(&m, active, &mut rng);
        }
    }
}

#[test]
fn random_garbage_after_a_valid_handshake_never_panics() {
    let mut rng = Rng(42);
    for _ in 0..500 {
        let mut input = contact_header(4);
        input.extend(sess_init(1, 100, 10_000, "dtn://x/"));
        let len = rng.below(300) as usize;
        // Bias towards valid message types so parsing goes deep.
        input.extend((0..len).map(|i| if i % 17 == 0 { 1 + rng.below(7) as u8 } else { rng.next() as u8 }));
        feed_mutant(&input, false, &mut rng);
    }
}
