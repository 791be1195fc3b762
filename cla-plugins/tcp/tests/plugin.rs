//! The TCP plugin end to end on loopback: loaded in-process and through
//! dlopen, two (or three) instances exchanging bundles, the durability and
//! transmission rules of the ABI, reconnects, hostile peers, MTCP/STCP and
//! discovery. Every socket is on 127.0.0.1; every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use ferry_cla_abi::{Outcome, Verdict};
use ferry_cla_tcp::tcpcl::wire::{
    ContactFlags, ContactHeader, ExtensionItems, Limits, Message, SegmentFlags, SessInit, SessTerm, SessTermFlags,
    XferSegment,
};
use ferry_cla_tcp::tcpcl::SessTermReason;

// ----- raw TCPCL peers ---------------------------------------------------------

fn contact_header(version: u8) -> Vec<u8> {
    let mut out = Vec::new();
    ContactHeader { version, flags: ContactFlags::EMPTY }.emit(&mut out);
    out
}

fn sess_init(keepalive: u16, node_id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    Message::SessInit(SessInit {
        keepalive,
        segment_mru: 1 << 20,
        transfer_mru: 1 << 30,
        node_id,
        extensions: ExtensionItems::EMPTY,
    })
    .emit(&mut out);
    out
}

/// Everything the peer sends until it closes or `limit` passes.
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (got, false);
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return (got, false)
            }
            Err(_) => return (got, true),
        }
    }
}

const ANY: Limits = Limits { segment_mru: u64::MAX, max_extensions_len: u32::MAX, max_node_id_len: u16::MAX };

/// Parses a contact header and the messages after it; stops at an incomplete one.
fn messages(wire: &[u8]) -> (Option<ContactHeader>, Vec<String>) {
    let Ok(Some((ch, mut pos))) = ContactHeader::parse(wire) else { return (None, Vec::new()) };
    let mut out = Vec::new();
    while let Ok(Some((m, n))) = Message::parse(&wire[pos..], &ANY) {
        out.push(match m {
            Message::SessTerm(t) => format!("SESS_TERM {:?}{}", t.reason, if t.is_reply() { " reply" } else { "" }),
            Message::SessInit(i) => format!("SESS_INIT {}", i.node_id),
            Message::XferSegment(s) => format!("XFER_SEGMENT {} {} B", s.transfer_id, s.data.len()),
            Message::XferAck(a) => format!("XFER_ACK {} {}", a.transfer_id, a.acknowledged_len),
            Message::XferRefuse(r) => format!("XFER_REFUSE {:?}", r.reason),
            Message::Keepalive => "KEEPALIVE".into(),
            Message::MsgReject(r) => format!("MSG_REJECT {:?}", r.reason),
        });
        pos += n;
    }
    (Some(ch), out)
}

/// A connected pair: `a` (in-process) dialed `b` (dlopened).
fn pair(a_settings: &str, b_settings: &str) -> (Node, Node, u64, u64) {
    let b = Node::start(&dlopened(), "dtn://b/", &format!("{LOOPBACK}{b_settings}"));
    let a = Node::start(&in_process(), "dtn://a/", &format!("{LOOPBACK}{a_settings}"));
    a.inst().connect(&format!("tcpcl://{}", b.tcpcl_addr())).unwrap();
    let pa = a.wait_peer("dtn://b/");
    let pb = b.wait_peer("dtn://a/");
    (a, b, pa, pb)
}

// ----- tests ---------------------------------------------------------------------

#[test]
fn loads_in_process_and_through_dlopen() {
    for plugin in [in_process(), dlopened()] {
        assert_eq!(plugin.name(), "tcp");
        assert_eq!(plugin.version(), "0.1.0");
        let node = Node::start(&plugin, "dtn://solo/", LOOPBACK);
        assert_eq!(node.tcpcl_addr().ip().to_string(), "127.0.0.1");
        let err = node.inst().transmit(99, 1, b"x").unwrap_err();
        assert!(err.to_string().contains("no peer 99"), "{err}");
        let err = node.inst().connect("udp://127.0.0.1:1").unwrap_err();
        assert!(err.to_string().contains("unknown scheme"), "{err}");
        let host = node.stop();
        assert!(host.warnings().is_empty(), "{:?}", host.warnings());
    }
}

#[test]
fn settings_and_start_errors_name_the_culprit() {
    let plugin = dlopened();
    let err = Node::try_start(&plugin, "dtn://x/", "lisen = []").err().unwrap();
    assert!(err.contains("unknown field `lisen`"), "{err}");
    let err = Node::try_start(&plugin, "dtn://x/", "peers = [\"mtcp://127.0.0.1:1\"]").err().unwrap();
    assert!(err.contains("`peers` entry \"mtcp://127.0.0.1:1\"") && err.contains("name the peer"), "{err}");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Node::try_start(&plugin, "dtn://x/", &format!("listen = [\"{addr}\"]")).err().unwrap();
    assert!(err.contains(&format!("cannot listen for tcpcl on {addr}")), "{err}");
}

#[test]
fn bundles_of_0_b_to_10_mib_both_ways_arrive_byte_identical() {
    let (a, b, pa, pb) = pair("", "");
    b.set_answer(Answer::After(Duration::from_millis(5), Verdict::Accepted));
    // The peer's transfer MRU (64 MiB by default) is its MTU.
    assert!(a.host.events().iter().any(|e| matches!(e, Ev::Up { mtu: Some(m), address, .. }
        if *m == 64 << 20 && address == &format!("tcpcl://{}", b.tcpcl_addr()))));
    let sizes = [0usize, 1, 100, 65_536, 1 << 20, 10 << 20];
    for (i, &size) in sizes.iter().enumerate() {
        a.transmit(pa, 100 + i as u64, &bundle(size, i as u64));
        b.transmit(pb, 200 + i as u64, &bundle(size, 1000 + i as u64));
    }
    for i in 0..sizes.len() as u64 {
        assert_eq!(a.wait_done(100 + i), Outcome::Sent);
        assert_eq!(b.wait_done(200 + i), Outcome::Sent);
    }
    let at_b: Vec<Vec<u8>> = b
        .wait_received(sizes.len())
        .into_iter()
        .map(|(p, _, x)| {
            assert_eq!(p, pb);
            x
        })
        .collect();
    let at_a: Vec<Vec<u8>> = a.wait_received(sizes.len()).into_iter().map(|(_, _, x)| x).collect();
    for (i, &size) in sizes.iter().enumerate() {
        assert!(at_b[i] == bundle(size, i as u64), "bundle {i} ({size} B) a->b differs");
        assert!(at_a[i] == bundle(size, 1000 + i as u64), "bundle {i} ({size} B) b->a differs");
    }
    for id in (100..106).chain(200..206) {
        let host = if id < 200 { &a.host } else { &b.host };
        assert_eq!(host.outcomes(id), vec![Outcome::Sent], "transmit {id}");
    }
}

#[test]
fn a_thousand_small_bundles() {
    let (a, b, pa, _) = pair("", "");
    let n = 1000u64;
    for i in 0..n {
        a.transmit(pa, i, &bundle(100, i));
    }
    for i in 0..n {
        assert_eq!(a.wait_done(i), Outcome::Sent, "transmit {i}");
    }
    let got = b.wait_received(n as usize);
    assert_eq!(got.len(), n as usize);
    for (i, (_, _, x)) in got.iter().enumerate() {
        assert!(*x == bundle(100, i as u64), "bundle {i} differs or is out of order");
    }
    assert!(a.host.events().iter().filter(|e| matches!(e, Ev::Done { .. })).count() == n as usize);
}

#[test]
fn the_final_ack_waits_for_the_verdict() {
    let (a, b, pa, _) = pair("", "");
    b.set_answer(Answer::Hold);
    a.transmit(pa, 1, &bundle(300_000, 1));
    let (_, token, bytes) = b.wait_received(1).remove(0);
    assert_eq!(bytes, bundle(300_000, 1));
    std::thread::sleep(Duration::from_millis(400));
    assert!(a.host.outcomes(1).is_empty(), "acknowledged before the bundle was durable");
    // The verdict comes from another thread, as the store's would.
    std::thread::scope(|s| {
        s.spawn(|| b.inst().verdict(token, Verdict::Accepted));
    });
    assert_eq!(a.wait_done(1), Outcome::Sent);
    // A verdict for a token nobody knows is ignored.
    b.inst().verdict(token, Verdict::Accepted);
    b.inst().verdict(987_654, Verdict::Invalid);
}

#[test]
fn refusals_map_to_outcomes() {
    let (a, b, pa, _) = pair("", "");
    let cases = [
        // XFER_REFUSE "Completed": the peer has it.
        (Verdict::Duplicate, Outcome::Sent),
        // "Not Acceptable": it will never take it.
        (Verdict::Invalid, Outcome::Refused),
        // "No Resources": try again later.
        (Verdict::NoResources, Outcome::Failed),
        (Verdict::Accepted, Outcome::Sent),
    ];
    for (i, (verdict, outcome)) in cases.into_iter().enumerate() {
        b.set_answer(Answer::After(Duration::from_millis(10), verdict));
        a.transmit(pa, i as u64, &bundle(2000, i as u64));
        assert_eq!(a.wait_done(i as u64), outcome, "{verdict:?}");
    }
    // The session survived every refusal.
    assert_eq!(a.host.peers().len(), 1);
}

#[test]
fn peer_down_fails_every_transfer_in_flight_exactly_once() {
    let (a, b, pa, _) = pair("", "");
    b.set_answer(Answer::Hold);
    for i in 0..20 {
        a.transmit(pa, i, &bundle(10_000, i));
    }
    b.wait_received(1);
    let b_host = b.stop();
    a.wait_down(pa);
    for i in 0..20 {
        assert_eq!(a.wait_done(i), Outcome::Failed, "transmit {i}");
    }
    // B's own host saw its peer go down before stop returned.
    assert!(b_host.events().iter().any(|e| matches!(e, Ev::Down { .. })));
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..20 {
        assert_eq!(a.host.outcomes(i), vec![Outcome::Failed], "transmit {i}");
    }
    // The peer is gone: a transmit to it is refused at once, with no outcome to follow.
    assert!(a.inst().transmit(pa, 99, b"late").is_err());
    assert!(a.host.outcomes(99).is_empty());
}

#[test]
fn stop_settles_everything_and_then_stays_silent() {
    let (a, b, pa, _) = pair("", "");
    b.set_answer(Answer::Hold);
    for i in 0..10 {
        a.transmit(pa, i, &bundle(50_000, i));
    }
    b.wait_received(1);
    let started = Instant::now();
    let host = a.stop();
    assert!(started.elapsed() < Duration::from_secs(5), "stop took {:?}", started.elapsed());
    let events = host.events();
    for i in 0..10 {
        assert_eq!(host.outcomes(i), vec![Outcome::Failed], "transmit {i}");
    }
    assert!(events.contains(&Ev::Down { peer: pa }));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(host.events().len(), events.len(), "callbacks after stop returned");
    drop(b);
}

#[test]
fn a_static_peer_reconnects_after_the_other_side_restarts() {
    let port = free_tcp_port();
    let b_settings = format!("listen = [\"127.0.0.1:{port}\"]");
    let b = Node::start(&dlopened(), "dtn://b/", &b_settings);
    let a = Node::start(&in_process(), "dtn://a/", &format!("{LOOPBACK}peers = [\"tcpcl://127.0.0.1:{port}\"]"));
    let first = a.wait_peer("dtn://b/");
    a.transmit(first, 1, b"before");
    assert_eq!(a.wait_done(1), Outcome::Sent);
    drop(b);
    a.wait_down(first);
    std::thread::sleep(Duration::from_millis(1500));
    let b = Node::start(&dlopened(), "dtn://b/", &b_settings);
    let second = a.wait_new_peer("dtn://b/", first);
    a.transmit(second, 2, b"after");
    assert_eq!(a.wait_done(2), Outcome::Sent);
    assert_eq!(b.wait_received(1)[0].2, b"after");
}

fn ups(host: &TestHost) -> usize {
    host.events().iter().filter(|e| matches!(e, Ev::Up { .. })).count()
}

#[test]
fn a_static_peer_is_not_dialed_while_its_node_is_up() {
    // a names b (with its node ID) as a static peer before b listens; b then
    // dials a at runtime. a's dialer finds dtn://b/ up and does not add a
    // second session.
    let pa_port = free_tcp_port();
    let pb_port = free_tcp_port();
    let a = Node::start(
        &in_process(),
        "dtn://a/",
        &format!("listen = [\"127.0.0.1:{pa_port}\"]\npeers = [\"tcpcl://127.0.0.1:{pb_port}/dtn://b/\"]"),
    );
    let b = Node::start(&dlopened(), "dtn://b/", &format!("listen = [\"127.0.0.1:{pb_port}\"]"));
    b.inst().connect(&format!("tcp://127.0.0.1:{pa_port}")).unwrap();
    // connect is idempotent.
    b.inst().connect(&format!("tcp://127.0.0.1:{pa_port}")).unwrap();
    let pa = a.wait_peer("dtn://b/");
    let pb = b.wait_peer("dtn://a/");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!((ups(&a.host), ups(&b.host)), (1, 1), "a: {:?}, b: {:?}", a.host.peers(), b.host.peers());
    // a sends over the session b opened.
    a.transmit(pa, 1, b"over b's session");
    b.transmit(pb, 2, b"both ways");
    assert_eq!(a.wait_done(1), Outcome::Sent);
    assert_eq!(b.wait_done(2), Outcome::Sent);
}

#[test]
fn sessions_dialed_from_both_sides_are_both_kept_and_work() {
    let a = Node::start(&in_process(), "dtn://a/", LOOPBACK);
    let b = Node::start(&dlopened(), "dtn://b/", LOOPBACK);
    a.inst().connect(&format!("tcpcl://{}", b.tcpcl_addr())).unwrap();
    a.wait_peer("dtn://b/");
    b.inst().connect(&format!("tcpcl://{}", a.tcpcl_addr())).unwrap();
    let both = |n: &Node, id: &str| {
        n.host.wait("two sessions", |evs| {
            let p: Vec<u64> = peers_in(evs).into_iter().filter(|(_, x)| x == id).map(|(p, _)| p).collect();
            (p.len() == 2).then_some(p)
        })
    };
    let (pa, pb) = (both(&a, "dtn://b/"), both(&b, "dtn://a/"));
    for (i, p) in pa.iter().enumerate() {
        a.transmit(*p, i as u64, b"from a");
    }
    for (i, p) in pb.iter().enumerate() {
        b.transmit(*p, 10 + i as u64, b"from b");
    }
    for id in [0, 1] {
        assert_eq!(a.wait_done(id), Outcome::Sent);
        assert_eq!(b.wait_done(10 + id), Outcome::Sent);
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!((ups(&a.host), ups(&b.host)), (2, 2));
    assert_eq!((a.host.peers().len(), b.host.peers().len()), (2, 2));
}

#[test]
fn hostile_peers_end_only_their_own_session() {
    let (a, b, pa, _) = pair("", "keepalive_secs = 1\n");
    let addr = b.tcpcl_addr();
    let raw = || {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s
    };

    // Not TCPCL at all: closed without a word (RFC 9174 §4.3).
    let mut s = raw();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (got, closed) = read_until_closed(&mut s, WAIT);
    assert!(closed && got.is_empty(), "{got:?}");

    // The magic, then garbage in place of the version.
    let mut s = raw();
    s.write_all(b"dtn?\x04\x00").unwrap();
    let (got, closed) = read_until_closed(&mut s, WAIT);
    assert!(closed && got.is_empty(), "{got:?}");

    // TCPCL version 3: our contact header, then SESS_TERM "Version Mismatch".
    let mut s = raw();
    s.write_all(&contact_header(3)).unwrap();
    let (got, closed) = read_until_closed(&mut s, WAIT);
    let (ch, msgs) = messages(&got);
    assert!(closed);
    assert_eq!(ch.map(|c| c.version), Some(4));
    assert_eq!(msgs, vec![format!("SESS_TERM {:?}", SessTermReason::VersionMismatch)]);

    // A segment declaring 2^63 octets: refused before any is awaited.
    let mut s = raw();
    let mut out = contact_header(4);
    out.extend(sess_init(30, "dtn://raw/"));
    XferSegment::emit_header(SegmentFlags::START, 0, &ExtensionItems::EMPTY, 1 << 63, &mut out);
    s.write_all(&out).unwrap();
    let (got, closed) = read_until_closed(&mut s, WAIT);
    let (_, msgs) = messages(&got);
    assert!(closed);
    assert_eq!(
        msgs,
        vec!["SESS_INIT dtn://b/".to_string(), format!("SESS_TERM {:?}", SessTermReason::ResourceExhaustion)]
    );

    // An unknown message type after SESS_INIT: MSG_REJECT, then closed.
    let mut s = raw();
    let mut out = contact_header(4);
    out.extend(sess_init(30, "dtn://raw/"));
    out.extend([0x42, 1, 2, 3]);
    s.write_all(&out).unwrap();
    let (got, closed) = read_until_closed(&mut s, WAIT);
    assert!(closed);
    assert!(messages(&got).1.iter().any(|m| m.starts_with("MSG_REJECT")), "{:?}", messages(&got));

    // Stalled mid-transfer: b's keepalive is 1 s, so after 2 s of silence it
    // ends the session with SESS_TERM "Idle Timeout".
    let mut s = raw();
    let mut out = contact_header(4);
    out.extend(sess_init(1, "dtn://staller/"));
    XferSegment::emit_header(SegmentFlags::START, 0, &ExtensionItems::EMPTY, 1000, &mut out);
    out.extend([7u8; 10]);
    s.write_all(&out).unwrap();
    let started = Instant::now();
    let (got, _) = read_until_closed(&mut s, Duration::from_secs(6));
    let (_, msgs) = messages(&got);
    assert!(msgs.contains(&format!("SESS_TERM {:?}", SessTermReason::IdleTimeout)), "{msgs:?}");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    drop(s);

    // Many garbage connections at once, while the good session works.
    let junk: Vec<TcpStream> = (0..20)
        .map(|i| {
            let mut s = raw();
            let _ = s.write_all(&bundle(100, i));
            s
        })
        .collect();
    for i in 0..5 {
        a.transmit(pa, 1000 + i, &bundle(100_000, i));
    }
    for i in 0..5 {
        assert_eq!(a.wait_done(1000 + i), Outcome::Sent);
    }
    drop(junk);
    assert_eq!(a.host.peers().len(), 1);
    assert!(!a.host.events().iter().any(|e| matches!(e, Ev::Down { .. })));
    // Every hostile session was logged as a warning, with its reason.
    let warnings = b.host.warnings().join("\n");
    for needle in ["magic", "version 3", "exceeds the segment MRU", "unknown message type", "twice the keepalive"] {
        assert!(warnings.contains(needle), "no warning about {needle}:\n{warnings}");
    }
}

#[test]
fn a_peer_that_never_acknowledges_times_out_and_its_transfers_fail() {
    let a = Node::start(&in_process(), "dtn://a/", &format!("{LOOPBACK}keepalive_secs = 1\n"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    a.inst().connect(&format!("tcpcl://{}", listener.local_addr().unwrap())).unwrap();
    let (mut s, _) = listener.accept().unwrap();
    let mut out = contact_header(4);
    out.extend(sess_init(1, "dtn://mute/"));
    s.write_all(&out).unwrap();
    let peer = a.wait_peer("dtn://mute/");
    a.transmit(peer, 1, &bundle(10_000, 1));
    // Read what a sends (its segment, its SESS_TERM) but never answer; close
    // once a gave up on us.
    let msgs = read_until_sess_term(&mut s, None);
    assert!(msgs.contains(&"XFER_SEGMENT 0 10000 B".to_string()), "{msgs:?}");
    assert!(msgs.contains(&format!("SESS_TERM {:?}", SessTermReason::IdleTimeout)), "{msgs:?}");
    drop(s);
    a.wait_down(peer);
    assert_eq!(a.wait_done(1), Outcome::Failed);
    assert!(a.host.warnings().iter().any(|w| w.contains("twice the keepalive")));
}

/// What a peer that never acknowledges reads (message names) until the node
/// sends SESS_TERM or closes, bounded by [`WAIT`]; `keepalive`, if given, is
/// written before each read.
fn read_until_sess_term(s: &mut TcpStream, keepalive: Option<&[u8]>) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while !messages(&got).1.iter().any(|m| m.starts_with("SESS_TERM")) && Instant::now() < deadline {
        if keepalive.is_some_and(|k| s.write_all(k).is_err()) {
            break;
        }
        let (more, closed) = read_until_closed(s, Duration::from_millis(250));
        got.extend(more);
        if closed {
            break;
        }
    }
    messages(&got).1
}

/// A peer that keeps its session alive with keepalives but never acknowledges
/// a transfer: the transfer timeout ends the session, the transfer fails (the
/// node retries it later) and the reason is logged.
#[test]
fn a_peer_that_sends_keepalives_but_never_acks_is_cut_off_by_the_transfer_timeout() {
    let settings = format!("{LOOPBACK}keepalive_secs = 1\ntransfer_timeout_secs = 2\n");
    let a = Node::start(&in_process(), "dtn://a/", &settings);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    a.inst().connect(&format!("tcpcl://{}", listener.local_addr().unwrap())).unwrap();
    let (mut s, _) = listener.accept().unwrap();
    let mut out = contact_header(4);
    out.extend(sess_init(1, "dtn://keepalive-only/"));
    s.write_all(&out).unwrap();
    let peer = a.wait_peer("dtn://keepalive-only/");
    a.transmit(peer, 1, &bundle(10_000, 1));
    let mut keepalive = Vec::new();
    Message::Keepalive.emit(&mut keepalive);
    let started = Instant::now();
    // Alive, as far as keepalives go.
    let msgs = read_until_sess_term(&mut s, Some(&keepalive));
    assert!(msgs.contains(&"XFER_SEGMENT 0 10000 B".to_string()), "{msgs:?}");
    assert!(msgs.contains(&format!("SESS_TERM {:?}", SessTermReason::IdleTimeout)), "{msgs:?}");
    assert!(started.elapsed() >= Duration::from_millis(1500), "cut off before the transfer timeout");
    drop(s);
    a.wait_down(peer);
    assert_eq!(a.wait_done(1), Outcome::Failed);
    let warnings = a.host.warnings().join("\n");
    assert!(warnings.contains("no acknowledgement"), "{warnings}");
    assert!(!warnings.contains("twice the keepalive"), "the keepalives kept the session alive: {warnings}");
}

#[test]
fn a_peer_sess_term_is_answered_and_the_peer_goes_down() {
    let a = Node::start(&in_process(), "dtn://a/", LOOPBACK);
    let mut s = TcpStream::connect(a.tcpcl_addr()).unwrap();
    let mut out = contact_header(4);
    out.extend(sess_init(30, "dtn://polite/"));
    s.write_all(&out).unwrap();
    let peer = a.wait_peer("dtn://polite/");
    let mut term = Vec::new();
    Message::SessTerm(SessTerm { flags: SessTermFlags::EMPTY, reason: SessTermReason::Busy }).emit(&mut term);
    s.write_all(&term).unwrap();
    let (got, closed) = read_until_closed(&mut s, WAIT);
    assert!(closed);
    assert_eq!(messages(&got).1, vec!["SESS_INIT dtn://a/".to_string(), "SESS_TERM Busy reply".to_string()]);
    a.wait_down(peer);
    assert!(a.host.warnings().is_empty(), "{:?}", a.host.warnings());
}

#[test]
fn mtcp_and_stcp_links() {
    let b = Node::start(
        &dlopened(),
        "dtn://b/",
        "listen = []\nmtcp_listen = [\"127.0.0.1:0\"]\nstcp_listen = [\"127.0.0.1:0\"]",
    );
    let a = Node::start(&in_process(), "dtn://a/", "listen = []");
    let (m, s) = (b.addr("mtcp"), b.addr("stcp"));
    a.inst().connect(&format!("mtcp://{m}/dtn://b/")).unwrap();
    a.wait_peer("dtn://b/");
    a.inst().connect(&format!("stcp://{s}/dtn://b/")).unwrap();
    let (pm, ps) = a.host.wait("two peers", |evs| {
        let up = peers_in(evs);
        let find = |scheme: &str| {
            evs.iter().find_map(|e| match e {
                Ev::Up { peer, address, .. } if address.starts_with(scheme) && up.iter().any(|(p, _)| p == peer) => {
                    Some(*peer)
                }
                _ => None,
            })
        };
        Some((find("mtcp://")?, find("stcp://")?))
    });
    a.transmit(pm, 1, &bundle(1 << 20, 1));
    a.transmit(pm, 2, &[]);
    a.transmit(ps, 3, &bundle(70_000, 3));
    // STCP can not frame an empty bundle (a zero length is its keepalive).
    a.transmit(ps, 4, &[]);
    assert_eq!(a.wait_done(1), Outcome::Sent);
    assert_eq!(a.wait_done(2), Outcome::Sent);
    assert_eq!(a.wait_done(3), Outcome::Sent);
    assert_eq!(a.wait_done(4), Outcome::Refused);
    let mut got: Vec<Vec<u8>> = b
        .wait_received(3)
        .into_iter()
        .map(|(peer, _, x)| {
            // Accepted MTCP/STCP connections carry no node ID: no peer.
            assert_eq!(peer, 0);
            x
        })
        .collect();
    got.sort_by_key(|x| x.len());
    assert_eq!(got, vec![Vec::new(), bundle(70_000, 3), bundle(1 << 20, 1)]);
    assert!(b.host.peers().is_empty());

    // A hostile MTCP sender: a 2^63-octet byte string ends its connection only.
    let mut raw = TcpStream::connect(m).unwrap();
    raw.write_all(&[0x5b, 0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    let (_, closed) = read_until_closed(&mut raw, WAIT);
    assert!(closed);
    a.transmit(pm, 5, b"still here");
    assert_eq!(a.wait_done(5), Outcome::Sent);
    assert!(b.host.warnings().iter().any(|w| w.contains("exceeds the limit")), "{:?}", b.host.warnings());
}

#[test]
fn discovery_beacons_on_loopback_make_two_nodes_meet() {
    let (ua, ub) = (free_udp_port(), free_udp_port());
    let settings = |own: u16, other: u16| {
        format!(
            "{LOOPBACK}[discovery]\nenabled = true\nlisten = \"127.0.0.1:{own}\"\nbeacon_addr = \"127.0.0.1:{other}\"\ninterval_secs = 1\n"
        )
    };
    let a = Node::start(&in_process(), "dtn://a/", &settings(ua, ub));
    let b = Node::start(&dlopened(), "ipn:977.0", &settings(ub, ua));
    let pa = a.wait_peer("ipn:977.0");
    let pb = b.wait_peer("dtn://a/");
    a.transmit(pa, 1, b"found you");
    b.transmit(pb, 2, b"likewise");
    assert_eq!(a.wait_done(1), Outcome::Sent);
    assert_eq!(b.wait_done(2), Outcome::Sent);
    // Later beacons add no sessions. (Both nodes dialing at the same
    // moment may leave two, which is harmless; never more.)
    std::thread::sleep(Duration::from_millis(500));
    let before = (ups(&a.host), ups(&b.host));
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!((ups(&a.host), ups(&b.host)), before);
    assert!(before.0 <= 2 && before.1 <= 2, "{before:?}");

    // A dtn7-rs-shaped beacon from a third "node" is understood: a dials the
    // advertised tcp port at the beacon's source address.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = fake.local_addr().unwrap().port();
    let beacon = ferry_cla_tcp::discovery::Beacon::new("dtn://dtn7/", 0, vec![("tcp".into(), Some(port))], Some(2));
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(&beacon.encode().unwrap(), SocketAddr::from(([127, 0, 0, 1], ua))).unwrap();
    fake.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut s = loop {
        match fake.accept() {
            Ok((s, _)) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("a never dialed the beacon's sender: {e}"),
        }
    };
    s.set_nonblocking(false).unwrap();
    let (got, _) = read_until_closed(&mut s, Duration::from_millis(500));
    assert_eq!(ContactHeader::parse(&got).ok().flatten().map(|(c, _)| c.version), Some(4));
}
