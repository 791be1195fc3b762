//! The link state machine on a virtual clock: two `Link`s joined by a
//! channel that can lose, corrupt and cut, and a scripted raw peer that
//! sends exactly the frames a test wants (quinn's `Pair`, in small).

use super::*;
use crate::wire::{FLAG_END, FLAG_START};

/// Deterministic xorshift, for loss patterns and payloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, per_million: u64) -> bool {
        self.next() % 1_000_000 < per_million
    }
}

fn bundle(len: usize, seed: u64) -> Vec<u8> {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    (0..len).map(|_| r.next() as u8).collect()
}

fn config(node: &str, seed: u64) -> Config {
    let mut c = Config::new(node);
    c.max_frame = 256;
    c.window = 4;
    c.max_transfers = 4;
    c.ack_timeout_ms = 100;
    c.max_retries = 4;
    c.hello_interval_ms = 200;
    c.keepalive_ms = 1000;
    c.baud = 1_000_000;
    c.seed = seed;
    c
}

/// Log lines at warning level or worse.
fn warnings(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log { level, msg } if *level <= LOG_WARN => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

/// What the test host does with a received bundle.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Answer {
    Now(Verdict),
    Hold,
    /// Like the node: `Duplicate` for a bundle it already accepted.
    Dedup,
}

/// One side: its link and what its host saw.
struct Side {
    link: Link,
    events: Vec<Event>,
    answer: Answer,
    held: Vec<u64>,
    accepted: Vec<Vec<u8>>,
}

impl Side {
    fn new(c: Config) -> Side {
        Side {
            link: Link::new(c).unwrap(),
            events: Vec::new(),
            answer: Answer::Now(Verdict::Accepted),
            held: vec![],
            accepted: vec![],
        }
    }

    fn drain(&mut self, now: u64) {
        while let Some(e) = self.link.poll_event() {
            if let Event::Received { token, bundle } = &e {
                match self.answer {
                    Answer::Hold => self.held.push(*token),
                    Answer::Now(v) => {
                        if v == Verdict::Accepted {
                            self.accepted.push(bundle.clone());
                        }
                        self.link.handle_verdict(now, *token, v);
                    }
                    Answer::Dedup => {
                        let v = if self.accepted.contains(bundle) { Verdict::Duplicate } else { Verdict::Accepted };
                        if v == Verdict::Accepted {
                            self.accepted.push(bundle.clone());
                        }
                        self.link.handle_verdict(now, *token, v);
                    }
                }
            }
            self.events.push(e);
        }
    }

    fn ups(&self) -> usize {
        self.events.iter().filter(|e| matches!(e, Event::Up(_))).count()
    }
    fn downs(&self) -> Vec<DownReason> {
        self.events.iter().filter_map(|e| if let Event::Down(r) = e { Some(r.clone()) } else { None }).collect()
    }
    fn outcomes(&self, id: u64) -> Vec<Outcome> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Done { transmit, outcome } if *transmit == id => Some(*outcome),
                _ => None,
            })
            .collect()
    }
    fn received(&self) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter_map(|e| if let Event::Received { bundle, .. } = e { Some(bundle.clone()) } else { None })
            .collect()
    }
    fn warnings(&self) -> Vec<String> {
        warnings(&self.events)
    }
}

/// The channel between the two sides.
#[derive(Default)]
struct Faults {
    /// Per million bytes: one bit flipped.
    corrupt: u64,
    /// Per million bytes: the byte vanishes.
    drop: u64,
    /// Nothing passes (a pulled cable).
    cut: bool,
}

struct Pair {
    a: Side,
    b: Side,
    now: u64,
    faults: Faults,
    rng: Rng,
}

impl Pair {
    fn new() -> Pair {
        Pair::with(config("dtn://a/", 1), config("dtn://b/", 2))
    }

    fn with(a: Config, b: Config) -> Pair {
        let mut p = Pair { a: Side::new(a), b: Side::new(b), now: 0, faults: Faults::default(), rng: Rng(77) };
        p.a.link.handle_open(0);
        p.b.link.handle_open(0);
        p
    }

    fn carry(&mut self, bytes: Vec<u8>) -> Vec<u8> {
        if self.faults.cut {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(bytes.len());
        for mut b in bytes {
            if self.rng.chance(self.faults.drop) {
                continue;
            }
            if self.rng.chance(self.faults.corrupt) {
                b ^= 1 << (self.rng.next() % 8);
            }
            out.push(b);
        }
        out
    }

    /// Moves every frame due now across; true if anything moved.
    fn exchange(&mut self) -> bool {
        let mut moved = false;
        for a_to_b in [true, false] {
            let from = if a_to_b { &mut self.a } else { &mut self.b };
            let mut bytes = Vec::new();
            while let Some(f) = from.link.poll_transmit(self.now) {
                bytes.extend(f);
            }
            if bytes.is_empty() {
                continue;
            }
            moved = true;
            let bytes = self.carry(bytes);
            let to = if a_to_b { &mut self.b } else { &mut self.a };
            to.link.handle_bytes(self.now, &bytes);
        }
        self.a.drain(self.now);
        self.b.drain(self.now);
        moved
    }

    /// Runs until `done` holds, moving frames and jumping to the next
    /// timeout; panics after `limit_ms` of virtual time.
    fn run_until(&mut self, limit_ms: u64, mut done: impl FnMut(&Pair) -> bool) {
        let end = self.now + limit_ms;
        for _ in 0..1_000_000 {
            if done(self) {
                return;
            }
            if self.exchange() {
                continue;
            }
            let next = [self.a.link.poll_timeout(), self.b.link.poll_timeout()].into_iter().flatten().min();
            let Some(t) = next else { break };
            self.now = self.now.max(t);
            assert!(self.now <= end, "virtual time limit reached");
            self.a.link.handle_timeout(self.now);
            self.b.link.handle_timeout(self.now);
            self.a.drain(self.now);
            self.b.drain(self.now);
        }
        assert!(done(self), "the pair went quiet before the condition held");
    }

    fn up(&mut self) {
        self.run_until(10_000, |p| p.a.link.is_up() && p.b.link.is_up());
    }
}

#[test]
fn handshake_names_both_nodes_and_their_limits() {
    let mut p = Pair::new();
    p.up();
    let want_b = Peer { node_id: "dtn://b/".into(), max_frame: 256, max_bundle: 16 << 20 };
    assert_eq!(p.a.events.iter().filter(|e| matches!(e, Event::Up(_))).collect::<Vec<_>>(), [&Event::Up(want_b)]);
    assert_eq!(p.b.link.peer().map(|x| x.node_id.as_str()), Some("dtn://a/"));
    assert_eq!((p.a.ups(), p.b.ups()), (1, 1));
    // A quiet session stays up: keepalives are answered.
    let t = p.now;
    p.run_until(20_000, |p| p.now >= t + 10_000);
    assert!(p.a.downs().is_empty() && p.b.downs().is_empty());
}

#[test]
fn a_lost_handshake_frame_is_repaired_by_the_next_hello() {
    let mut p = Pair::new();
    // A's first HELLO vanishes.
    let first = p.a.link.poll_transmit(0).unwrap();
    assert!(!first.is_empty());
    p.up();
    assert_eq!((p.a.ups(), p.b.ups()), (1, 1));
}

#[test]
fn bundles_arrive_whole_in_order_and_once() {
    let mut p = Pair::new();
    p.up();
    let room = 256 - HEADER_LEN - DATA_HEADER_LEN - CRC_LEN;
    let sizes = [0, 1, room - START_LEN, room - START_LEN + 1, room * 3, 100_000];
    for (i, &n) in sizes.iter().enumerate() {
        p.a.link.handle_transmit(p.now, i as u64, bundle(n, i as u64).into());
        p.b.link.handle_transmit(p.now, 100 + i as u64, bundle(n, 100 + i as u64).into());
    }
    p.run_until(60_000, |p| {
        p.a.events.iter().chain(&p.b.events).filter(|e| matches!(e, Event::Done { .. })).count() == 12
    });
    for (i, &n) in sizes.iter().enumerate() {
        assert_eq!(p.a.outcomes(i as u64), [Outcome::Sent]);
        assert_eq!(p.b.outcomes(100 + i as u64), [Outcome::Sent]);
        assert!(p.b.received()[i] == bundle(n, i as u64), "a->b bundle {i}");
        assert!(p.a.received()[i] == bundle(n, 100 + i as u64), "b->a bundle {i}");
    }
    assert_eq!((p.a.received().len(), p.b.received().len()), (6, 6));
    assert!(p.a.warnings().is_empty() && p.b.warnings().is_empty(), "{:?}", p.a.warnings());
}

#[test]
fn the_result_waits_for_the_verdict() {
    let mut p = Pair::new();
    p.up();
    p.b.answer = Answer::Hold;
    p.a.link.handle_transmit(p.now, 7, bundle(1000, 7).into());
    p.run_until(10_000, |p| !p.b.held.is_empty());
    // Everything is acknowledged at the frame level, yet nothing is sent.
    let t = p.now;
    p.run_until(20_000, |p| p.now >= t + 5_000);
    assert!(p.a.outcomes(7).is_empty(), "counted as sent before the receiver's host had it");
    let token = p.b.held[0];
    p.b.link.handle_verdict(p.now, token, Verdict::Accepted);
    p.run_until(10_000, |p| !p.a.outcomes(7).is_empty());
    assert_eq!(p.a.outcomes(7), [Outcome::Sent]);
    // A second verdict for the same token changes nothing.
    p.b.link.handle_verdict(p.now, token, Verdict::Invalid);
    p.run_until(10_000, |p| p.now >= t + 8_000);
    assert_eq!(p.a.outcomes(7), [Outcome::Sent]);
}

#[test]
fn verdicts_map_to_outcomes() {
    for (verdict, outcome) in [
        (Verdict::Accepted, Outcome::Sent),
        (Verdict::Duplicate, Outcome::Sent),
        (Verdict::NoResources, Outcome::Failed),
        (Verdict::Invalid, Outcome::Refused),
    ] {
        let mut p = Pair::new();
        p.up();
        p.b.answer = Answer::Now(verdict);
        p.a.link.handle_transmit(p.now, 1, bundle(500, 1).into());
        p.run_until(10_000, |p| !p.a.outcomes(1).is_empty());
        assert_eq!(p.a.outcomes(1), [outcome], "{verdict:?}");
        assert!(p.a.link.is_up(), "a refusal does not end the session");
    }
}

#[test]
fn a_bundle_beyond_the_peers_limit_is_refused_without_sending() {
    let mut b = config("dtn://b/", 2);
    b.max_bundle = 1000;
    let mut p = Pair::with(config("dtn://a/", 1), b);
    p.up();
    p.a.link.handle_transmit(p.now, 1, bundle(1001, 1).into());
    p.a.link.handle_transmit(p.now, 2, bundle(1000, 2).into());
    p.a.drain(p.now);
    assert_eq!(p.a.outcomes(1), [Outcome::Refused]);
    assert!(p.a.warnings()[0].contains("accepts at most 1000 bytes"), "{:?}", p.a.warnings());
    p.run_until(10_000, |p| !p.a.outcomes(2).is_empty());
    assert_eq!(p.a.outcomes(2), [Outcome::Sent]);
    assert_eq!(p.b.received().len(), 1);
}

#[test]
fn noise_and_lost_bytes_lose_and_duplicate_nothing() {
    let mut p = Pair::new();
    p.up();
    p.b.answer = Answer::Dedup;
    p.a.answer = Answer::Dedup;
    // About one byte in 2,000 corrupted and one in 5,000 lost: most 256-byte
    // frames pass, many do not.
    p.faults = Faults { corrupt: 500, drop: 200, cut: false };
    let n = 60u64;
    let mut pending: Vec<u64> = (0..n).collect();
    for &i in &pending {
        p.a.link.handle_transmit(p.now, i, bundle(100 + 37 * i as usize, i).into());
        p.b.link.handle_transmit(p.now, 1000 + i, bundle(50 + 91 * i as usize, 1000 + i).into());
    }
    // Like the node: a transmission that failed with the session is sent
    // again once the peer is back.
    for round in 0..20 {
        p.run_until(600_000, |p| (0..n).all(|i| !p.a.outcomes(i).is_empty() && !p.b.outcomes(1000 + i).is_empty()));
        pending.retain(|&i| {
            p.a.outcomes(i).last() != Some(&Outcome::Sent) || p.b.outcomes(1000 + i).last() != Some(&Outcome::Sent)
        });
        if pending.is_empty() {
            break;
        }
        assert!(round < 19, "still unsent after 20 rounds: {pending:?}");
        p.up();
        for &i in &pending {
            if p.a.outcomes(i).last() != Some(&Outcome::Sent) {
                p.a.events.retain(|e| !matches!(e, Event::Done { transmit, .. } if *transmit == i));
                p.a.link.handle_transmit(p.now, i, bundle(100 + 37 * i as usize, i).into());
            }
            if p.b.outcomes(1000 + i).last() != Some(&Outcome::Sent) {
                p.b.events.retain(|e| !matches!(e, Event::Done { transmit, .. } if *transmit == 1000 + i));
                p.b.link.handle_transmit(p.now, 1000 + i, bundle(50 + 91 * i as usize, 1000 + i).into());
            }
        }
    }
    // Every bundle accepted exactly once, none corrupt.
    let mut at_b = p.b.accepted.clone();
    let mut want_b: Vec<Vec<u8>> = (0..n).map(|i| bundle(100 + 37 * i as usize, i)).collect();
    at_b.sort();
    want_b.sort();
    assert!(at_b == want_b, "a->b: {} accepted, {} sent", at_b.len(), want_b.len());
    let mut at_a = p.a.accepted.clone();
    let mut want_a: Vec<Vec<u8>> = (0..n).map(|i| bundle(50 + 91 * i as usize, 1000 + i)).collect();
    at_a.sort();
    want_a.sort();
    assert!(at_a == want_a, "b->a");
    // Within one session nothing reaches the host twice.
    let received = p.b.received();
    let sessions = p.b.ups();
    if sessions == 1 {
        assert_eq!(received.len(), n as usize);
    }
    assert!(p.b.warnings().iter().any(|w| w.contains("dropped")), "noise is reported");
}

#[test]
fn a_short_cut_is_bridged_and_a_long_one_takes_the_link_down() {
    let mut p = Pair::new();
    p.up();
    p.a.link.handle_transmit(p.now, 1, bundle(20_000, 1).into());
    p.run_until(10_000, |p| p.b.link.reassembly.is_some());
    // Shorter than the retries: the transfer resumes where it stopped.
    p.faults.cut = true;
    let t = p.now;
    p.run_until(10_000, |p| p.now >= t + 300);
    p.faults.cut = false;
    p.run_until(30_000, |p| !p.a.outcomes(1).is_empty());
    assert_eq!(p.a.outcomes(1), [Outcome::Sent]);
    assert_eq!(p.b.received(), [bundle(20_000, 1)]);
    assert!(p.a.downs().is_empty());
    // Longer: both ends give up, and what was in flight fails, once each.
    p.b.answer = Answer::Hold;
    for i in 10..14 {
        p.a.link.handle_transmit(p.now, i, bundle(3000, i).into());
    }
    p.run_until(10_000, |p| !p.b.held.is_empty());
    p.faults.cut = true;
    p.run_until(60_000, |p| !p.a.downs().is_empty() && !p.b.downs().is_empty());
    assert!(matches!(p.a.downs()[0], DownReason::NoAcknowledgement { retries: 4 }), "{:?}", p.a.downs());
    for i in 10..14 {
        assert_eq!(p.a.outcomes(i), [Outcome::Failed], "transmit {i}");
    }
    // A verdict for the old session's bundle goes nowhere.
    let token = p.b.held[0];
    p.b.link.handle_verdict(p.now, token, Verdict::Accepted);
    // Plugged back in: a new session.
    p.faults.cut = false;
    p.up();
    assert_eq!((p.a.ups(), p.b.ups()), (2, 2));
}

#[test]
fn a_peer_that_restarts_ends_the_session() {
    let mut p = Pair::new();
    p.up();
    p.a.link.handle_transmit(p.now, 1, bundle(10_000, 1).into());
    p.run_until(10_000, |p| p.b.link.reassembly.is_some());
    p.b = Side::new(config("dtn://b/", 99));
    p.b.link.handle_open(p.now);
    p.run_until(10_000, |p| !p.a.downs().is_empty());
    assert_eq!(p.a.downs(), [DownReason::PeerRestarted]);
    assert_eq!(p.a.outcomes(1), [Outcome::Failed]);
    p.up();
    assert_eq!(p.a.ups(), 2);
}

#[test]
fn closing_the_device_fails_everything_once() {
    let mut p = Pair::new();
    p.up();
    p.b.answer = Answer::Hold;
    for i in 0..6 {
        p.a.link.handle_transmit(p.now, i, bundle(2000, i).into());
    }
    p.run_until(10_000, |p| !p.b.held.is_empty());
    p.a.link.handle_closed(p.now);
    p.a.drain(p.now);
    assert_eq!(p.a.downs(), [DownReason::DeviceClosed]);
    for i in 0..6 {
        assert_eq!(p.a.outcomes(i), [Outcome::Failed]);
    }
    assert!(p.a.link.poll_transmit(p.now).is_none() && p.a.link.poll_timeout().is_none());
    p.a.link.handle_transmit(p.now, 9, bundle(1, 9).into());
    p.a.drain(p.now);
    assert_eq!(p.a.outcomes(9), [Outcome::Failed]);
}

// ----- a scripted peer -------------------------------------------------------------

/// The far end, frame by frame, so a test can send what no `Link` would.
struct Raw {
    nonce: u32,
    seq: u32,
    link: Link,
    now: u64,
    events: Vec<Event>,
}

impl Raw {
    /// A link under test, up with this raw peer.
    fn up(c: Config) -> Raw {
        let mut link = Link::new(c).unwrap();
        link.handle_open(0);
        let mut raw = Raw { nonce: 0x5eed, seq: 0, link, now: 0, events: vec![] };
        let theirs = raw.link.nonce();
        raw.send(Frame { nonce: 0x5eed, seq: 0, ack: 0, body: Body::Hello(raw.hello(theirs, true)) });
        assert!(raw.link.is_up());
        raw.drain();
        raw.frames();
        raw
    }

    fn hello(&self, echo: u32, up: bool) -> Hello<'static> {
        Hello { version: VERSION, up, echo, max_frame: 1024, max_bundle: 1 << 20, node_id: "dtn://raw/" }
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.link.handle_bytes(self.now, bytes);
        self.drain();
    }

    fn send(&mut self, f: Frame<'_>) {
        let mut raw = Vec::new();
        f.emit(&mut raw);
        self.send_bytes(&kiss::encode_to_vec(0, &raw));
    }

    /// A sequenced frame with the next sequence number.
    fn send_seq(&mut self, body: Body<'_>) {
        let seq = self.seq;
        self.seq += 1;
        self.send(Frame { nonce: self.nonce, seq, ack: 0, body });
    }

    fn data(&mut self, transfer: u32, start: Option<u64>, end: bool, payload: &[u8]) {
        self.send_seq(Body::Data(Data { transfer, start, end, payload }));
    }

    fn drain(&mut self) {
        while let Some(e) = self.link.poll_event() {
            self.events.push(e);
        }
    }

    /// What the link under test wrote, parsed: (type, seq, ack, body summary).
    fn frames(&mut self) -> Vec<String> {
        let mut wire = Vec::new();
        while let Some(f) = self.link.poll_transmit(self.now) {
            wire.extend(f);
        }
        let mut out = Vec::new();
        kiss::Decoder::new(4096).feed(&wire, |e| {
            if let kiss::Event::Frame { data, .. } = e {
                let f = Frame::parse(data).unwrap();
                out.push(match f.body {
                    Body::Result { transfer, code } => format!("RESULT {transfer} {code:?}"),
                    Body::Ack => format!("ACK {}", f.ack),
                    Body::Nak => format!("NAK {}", f.ack),
                    b => format!("{:?} {}", b.frame_type(), f.seq),
                });
            }
        });
        out
    }

    fn received(&self) -> Vec<(u64, Vec<u8>)> {
        self.events
            .iter()
            .filter_map(
                |e| if let Event::Received { token, bundle } = e { Some((*token, bundle.clone())) } else { None },
            )
            .collect()
    }

    fn warnings(&self) -> Vec<String> {
        warnings(&self.events)
    }
}

#[test]
fn a_retransmitted_frame_is_acknowledged_again_not_delivered_again() {
    let mut r = Raw::up(config("dtn://a/", 1));
    r.data(0, Some(3), true, b"abc");
    assert_eq!(r.frames(), ["ACK 1"]);
    r.seq = 0;
    r.data(0, Some(3), true, b"abc");
    assert_eq!(r.frames(), ["ACK 1"]);
    assert_eq!(r.received().len(), 1);
    // A frame past a gap: one NAK naming the missing frame, nothing taken.
    r.seq = 2;
    r.data(1, Some(1), true, b"x");
    r.data(2, Some(1), true, b"y");
    assert_eq!(r.frames(), ["NAK 1"]);
    assert_eq!(r.received().len(), 1);
}

#[test]
fn declared_lengths_beyond_the_limit_are_refused_before_buffering() {
    let mut c = config("dtn://a/", 1);
    c.max_bundle = 4096;
    let mut r = Raw::up(c);
    r.data(0, Some(u64::MAX), false, &[1; 64]);
    assert!(r.link.reassembly.as_ref().is_some_and(|x| matches!(x, Reassembly::Skipping { .. })));
    r.data(0, None, false, &[2; 64]);
    r.data(0, None, true, &[3; 64]);
    assert_eq!(r.frames(), ["RESULT 0 TooLarge"]);
    assert!(r.warnings()[0].contains("larger than max_bundle_size (4096)"), "{:?}", r.warnings());
    // The link still takes the next bundle.
    r.data(1, Some(2), true, b"ok");
    assert_eq!(r.received(), [(1, b"ok".to_vec())]);
}

#[test]
fn stream_violations_are_refused_as_invalid_and_the_link_stays_up() {
    let mut r = Raw::up(config("dtn://a/", 1));
    // A segment of a transfer that never started.
    r.data(5, None, true, b"orphan");
    // More bytes than declared.
    r.data(6, Some(2), false, b"ab");
    r.data(6, None, true, b"c");
    // An END short of the total.
    r.data(7, Some(10), true, b"short");
    // A new transfer before the previous one ended.
    r.data(8, Some(4), false, b"ab");
    r.data(9, Some(2), true, b"ok");
    let frames = r.frames();
    for want in ["RESULT 6 Invalid", "RESULT 7 Invalid", "RESULT 8 Invalid"] {
        assert!(frames.contains(&want.to_string()), "{want}: {frames:?}");
    }
    assert_eq!(r.received(), [(1, b"ok".to_vec())]);
    let w = r.warnings().join("\n");
    for want in
        ["never started", "sent more than its 2 bytes", "ended at 5 of 10 bytes", "started before transfer 8 ended"]
    {
        assert!(w.contains(want), "{want}: {w}");
    }
    assert!(r.link.is_up());
}

#[test]
fn too_many_bundles_awaiting_verdicts_are_refused_for_now() {
    let mut c = config("dtn://a/", 1);
    c.max_transfers = 2;
    let mut r = Raw::up(c);
    for t in 0..3 {
        r.data(t, Some(1), true, b"x");
    }
    assert_eq!(r.received().len(), 2);
    assert!(r.frames().contains(&"RESULT 2 NoResources".to_string()));
    let token = r.received()[0].0;
    r.link.handle_verdict(r.now, token, Verdict::Accepted);
    r.data(3, Some(1), true, b"y");
    assert_eq!(r.received().len(), 3);
    let frames = r.frames();
    assert!(frames.contains(&"RESULT 0 Accepted".to_string()), "{frames:?}");
}

#[test]
fn garbage_is_dropped_and_summarised_not_logged_per_frame() {
    let mut r = Raw::up(config("dtn://a/", 1));
    r.send_bytes(b"\xc0\x00this is not a frame at all\xc0");
    assert_eq!(r.warnings().len(), 1);
    assert!(r.warnings()[0].contains("dropped a frame from the line"), "{:?}", r.warnings());
    // Bad CRC, another command byte, a bad escape, an overlong frame, a
    // frame of an unknown type with a valid CRC: counted, not logged yet.
    let mut good = Vec::new();
    Frame { nonce: r.nonce, seq: 0, ack: 0, body: Body::Nop }.emit(&mut good);
    let mut bad_crc = good.clone();
    bad_crc[3] ^= 0x10;
    r.send_bytes(&kiss::encode_to_vec(0, &bad_crc));
    r.send_bytes(&kiss::encode_to_vec(0x10, &good));
    r.send_bytes(&[kiss::FEND, 0, 1, kiss::FESC, 0x01, 2, kiss::FEND]);
    r.send_bytes(&kiss::encode_to_vec(0, &vec![7u8; 5000]));
    let mut unknown = good.clone();
    unknown[0] = 42;
    let n = unknown.len();
    let crc = crc32c::crc32c(&unknown[..n - 4]);
    unknown[n - 4..].copy_from_slice(&crc.to_be_bytes());
    r.send_bytes(&kiss::encode_to_vec(0, &unknown));
    assert_eq!(r.warnings().len(), 1);
    assert!(r.link.poll_timeout().is_some());
    r.now += DROP_REPORT_MS;
    r.link.handle_timeout(r.now);
    r.drain();
    let w = r.warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[1].contains("dropped 5 frames") && w[1].contains("unknown frame type 42"), "{w:?}");
    assert!(r.received().is_empty());
    // Still up, still serving.
    r.data(0, Some(1), true, b"z");
    assert_eq!(r.received().len(), 1);
}

#[test]
fn noise_before_any_session_suggests_checking_the_baud_rate() {
    let mut link = Link::new(config("dtn://a/", 1)).unwrap();
    link.handle_open(0);
    link.handle_bytes(0, b"\xc0\x00garbled at the wrong speed\xc0");
    let logs: Vec<Event> = std::iter::from_fn(|| link.poll_event()).collect();
    let w = warnings(&logs);
    assert!(w.len() == 1 && w[0].contains("same baud rate"), "{w:?}");
}

#[test]
fn a_hello_of_another_version_is_ignored_with_one_warning() {
    let mut link = Link::new(config("dtn://a/", 1)).unwrap();
    link.handle_open(0);
    let mut raw = Vec::new();
    let hello = Hello { version: 9, up: false, echo: 0, max_frame: 1024, max_bundle: 1, node_id: "dtn://new/" };
    Frame { nonce: 3, seq: 0, ack: 0, body: Body::Hello(hello) }.emit(&mut raw);
    let wire = kiss::encode_to_vec(0, &raw);
    link.handle_bytes(0, &wire);
    link.handle_bytes(0, &wire);
    let mut warnings = vec![];
    while let Some(e) = link.poll_event() {
        if let Event::Log { level: LOG_WARN, msg } = e {
            warnings.push(msg);
        }
    }
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("version 9"), "{warnings:?}");
    assert!(!link.is_up());
}

#[test]
fn flags_constants_match_the_documented_wire_format() {
    assert_eq!((FLAG_START, FLAG_END), (1, 2));
    assert_eq!(MIN_MAX_FRAME, 46);
}

#[test]
fn random_bytes_and_random_frames_with_valid_crcs_never_panic() {
    let mut r = Raw::up(config("dtn://a/", 1));
    let mut rng = Rng(12345);
    for _ in 0..2000 {
        let len = (rng.next() % 300) as usize;
        let noise: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if rng.chance(500_000) {
            r.send_bytes(&noise);
            continue;
        }
        // A sealed frame in this session: random type, sequence, ack and body.
        let mut content = vec![(rng.next() % 8) as u8];
        content.extend_from_slice(&r.nonce.to_be_bytes());
        content.extend_from_slice(&((rng.next() % 4) as u32).to_be_bytes());
        content.extend_from_slice(&((rng.next() % 4) as u32).to_be_bytes());
        content.extend_from_slice(&noise);
        content.extend_from_slice(&crc32c::crc32c(&content).to_be_bytes());
        r.send_bytes(&kiss::encode_to_vec(0, &content));
        r.now += rng.next() % 50;
        r.link.handle_timeout(r.now);
        r.drain();
        r.frames();
    }
    // Whatever that did, the link still ends or keeps its session cleanly and
    // never buffered more than one bundle's declared, bounded length.
    if let Some(Reassembly::Receiving { buf, total, .. }) = &r.link.reassembly {
        assert!(buf.len() <= *total && *total as u64 <= r.link.config.max_bundle);
    }
}
