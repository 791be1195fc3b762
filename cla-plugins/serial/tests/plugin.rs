//! The serial plugin over real pseudo-terminals: two instances (in-process
//! and dlopened) joined by a relay that corrupts, drops, injects, pulls the
//! cable and unplugs the adapter. Nothing lost, nothing duplicated, nothing
//! corrupt delivered; bad input is logged, never fatal. Every wait is bounded.

mod common;

use std::time::Duration;

use common::*;
use ferry_cla_abi::{Outcome, Verdict};
use ferry_cla_serial::wire::{Body, Frame};

/// Baud rate in these tests: ptys do not pace, and a high rate keeps the
/// retransmission timeout (which adds the line time of two windows) short.
const LINE: &str = "baud = 1000000\nmax_frame = 512\n";

/// Two nodes on the ends of a relay, both up: (a, b, a's peer handle, b's).
fn pair(relay: &Relay, extra: &str) -> (Node, Node, u64, u64) {
    let a = Node::start(&in_process(), "dtn://a/", &relay.settings(0, &format!("{LINE}{extra}")));
    let b = Node::start(&dlopened(), "dtn://b/", &relay.settings(1, &format!("{LINE}{extra}")));
    let pa = a.wait_up(1);
    let pb = b.wait_up(1);
    (a, b, pa, pb)
}

/// The peer handle of the session that is up now (waits for one).
fn current_peer(n: &Node) -> u64 {
    n.host.wait("a session up", |evs| {
        let mut up = None;
        for e in evs {
            match e {
                Ev::Up { peer, .. } => up = Some(*peer),
                Ev::Down { peer } if Some(*peer) == up => up = None,
                _ => {}
            }
        }
        up
    })
}

/// Sends every bundle the way the node does: a transmission that fails (the
/// session ended under it) is sent again once a session is up.
fn deliver_all(from: &Node, bundles: &[Vec<u8>], first_id: u64) {
    let mut pending: Vec<usize> = (0..bundles.len()).collect();
    let mut next_id = first_id;
    for _round in 0..10 {
        let peer = current_peer(from);
        let mut ids = Vec::new();
        for &i in &pending {
            next_id += 1;
            // Refused at once if the session just ended: no outcome follows.
            if from.inst().transmit(peer, next_id, &bundles[i]).is_ok() {
                ids.push((i, next_id));
            }
        }
        let sent: Vec<usize> =
            ids.iter().filter(|(_, id)| from.wait_done(*id) == Outcome::Sent).map(|(i, _)| *i).collect();
        pending.retain(|i| !sent.contains(i));
        if pending.is_empty() {
            return;
        }
    }
    panic!("{} bundles still unsent after 10 rounds", pending.len());
}

/// Every bundle accepted exactly once at `to`, byte-identical, and nothing
/// that was not sent ever reached its host.
fn assert_exactly_once(to: &Node, sent: &[Vec<u8>]) {
    let mut accepted = to.host.accepted();
    let mut want = sent.to_vec();
    accepted.sort();
    want.sort();
    assert_eq!(accepted.len(), want.len(), "bundles accepted");
    assert!(accepted == want, "accepted bundles differ from those sent");
    for (_, _, b) in to.host.received() {
        assert!(sent.contains(&b), "a corrupt bundle ({} B) reached the host", b.len());
    }
}

#[test]
fn loads_in_process_and_through_dlopen_and_names_bad_settings() {
    for plugin in [in_process(), dlopened()] {
        assert_eq!((plugin.name(), plugin.version()), ("serial", "0.1.0"));
        let err = Node::try_start(&plugin, "dtn://x/", "device = \"/dev/null\"\nbaud_rate = 9600").err().unwrap();
        assert!(err.contains("unknown field `baud_rate`"), "{err}");
        let err = Node::try_start(&plugin, "dtn://x/", "baud = 9600").err().unwrap();
        assert!(err.contains("`device` is required"), "{err}");
        let err = Node::try_start(&plugin, "dtn://x/", "device = \"/dev/x\"\nmax_frame = 8").err().unwrap();
        assert!(err.contains("`max_frame` = 8 is smaller than 46"), "{err}");
    }
    // Not a terminal: a clear, repeated-but-not-flooding warning, no peer.
    let node = Node::start(&in_process(), "dtn://x/", &format!("device = \"/dev/null\"\n{FAST}"));
    let line = node.wait_log("is not a serial device");
    assert!(line.contains("/dev/null") && line.contains("retrying in"), "{line}");
    let err = node.inst().transmit(1, 1, b"x").unwrap_err();
    assert!(err.to_string().contains("no peer 1"), "{err}");
    let host = node.stop();
    assert!(host.ups().is_empty());
}

#[test]
fn bundles_of_0_b_to_1_mib_both_ways_arrive_byte_identical() {
    let relay = Relay::new();
    let (a, b, pa, pb) = pair(&relay, "");
    let up = &a.host.ups()[0];
    let address = format!("serial:{}", relay.device(0).display());
    assert_eq!(*up, Ev::Up { peer: pa, node_id: "dtn://b/".into(), address, mtu: Some(16 << 20), rate: Some(100_000) });
    assert!(matches!(&b.host.ups()[0], Ev::Up { node_id, .. } if node_id == "dtn://a/"));
    let sizes = [0usize, 1, 489, 490, 1000, 100_000, 1 << 20];
    for (i, &n) in sizes.iter().enumerate() {
        a.transmit(pa, 100 + i as u64, &bundle(n, i as u64));
        b.transmit(pb, 200 + i as u64, &bundle(n, 1000 + i as u64));
    }
    for i in 0..sizes.len() as u64 {
        assert_eq!(a.wait_done(100 + i), Outcome::Sent, "a->b {i}");
        assert_eq!(b.wait_done(200 + i), Outcome::Sent, "b->a {i}");
    }
    let at_b = b.wait_received(sizes.len());
    let at_a = a.wait_received(sizes.len());
    for (i, &n) in sizes.iter().enumerate() {
        assert_eq!(at_b[i].0, pb);
        assert!(at_b[i].2 == bundle(n, i as u64), "a->b bundle {i} ({n} B) differs");
        assert!(at_a[i].2 == bundle(n, 1000 + i as u64), "b->a bundle {i} ({n} B) differs");
    }
    assert_eq!((a.host.received().len(), b.host.received().len()), (sizes.len(), sizes.len()));
    assert!(a.host.warnings().is_empty(), "{:?}", a.host.warnings());
    assert!(b.host.warnings().is_empty(), "{:?}", b.host.warnings());
}

#[test]
fn the_result_waits_for_the_verdict() {
    let relay = Relay::new();
    let (a, b, pa, _) = pair(&relay, "");
    b.set_answer(Answer::Hold);
    a.transmit(pa, 1, &bundle(30_000, 1));
    let (_, token, got) = b.wait_received(1).remove(0);
    assert!(got == bundle(30_000, 1));
    // The whole bundle is there and acknowledged frame by frame; keepalives
    // go back and forth; still it is not counted as sent.
    let keepalives_before = relay.carried();
    eventually("a few keepalives each way", || {
        let now = relay.carried();
        now[0] > keepalives_before[0] + 60 && now[1] > keepalives_before[1] + 60
    });
    assert!(a.host.outcomes(1).is_empty(), "counted as sent before the receiver's host had it");
    // The verdict comes from another thread, as the store's would.
    std::thread::scope(|s| {
        s.spawn(|| b.inst().verdict(token, Verdict::Accepted));
    });
    assert_eq!(a.wait_done(1), Outcome::Sent);
    b.inst().verdict(token, Verdict::Accepted);
    b.inst().verdict(987_654, Verdict::Invalid);
}

#[test]
fn corruption_and_dropped_bytes_lose_duplicate_and_corrupt_nothing() {
    let relay = Relay::new();
    let (a, b, _, _) = pair(&relay, "");
    // About one 512-byte frame in 13 hit by a flipped bit, one in 40 by a lost byte.
    relay.set_faults(Faults { corrupt: 150, drop: 50, ..Faults::default() });
    let to_b: Vec<Vec<u8>> = (0..40).map(|i| bundle(200 + 1733 * i, i as u64)).collect();
    let to_a: Vec<Vec<u8>> = (0..40).map(|i| bundle(100 + 2311 * i, 500 + i as u64)).collect();
    std::thread::scope(|s| {
        s.spawn(|| deliver_all(&a, &to_b, 0));
        s.spawn(|| deliver_all(&b, &to_a, 10_000));
    });
    assert_exactly_once(&b, &to_b);
    assert_exactly_once(&a, &to_a);
    // Within a session retransmissions never reach the host twice.
    if a.host.downs() == 0 {
        assert_eq!((a.host.received().len(), b.host.received().len()), (to_a.len(), to_b.len()));
    }
    // The noise was real, and reported.
    assert!(b.host.warnings().iter().chain(&a.host.warnings()).any(|w| w.contains("dropped")));
}

#[test]
fn a_cable_pulled_mid_transfer_loses_nothing() {
    let relay = Relay::new();
    // Many retries: a one-second cut is bridged without ending the session.
    let (a, b, pa, _) = pair(&relay, "max_retries = 30\n");
    let big = bundle(400_000, 7);
    a.transmit(pa, 1, &big);
    eventually("the transfer to be under way", || relay.carried()[0] > 50_000);
    relay.set_faults(Faults { cut: true, ..Faults::default() });
    std::thread::sleep(Duration::from_secs(1));
    relay.set_faults(Faults::default());
    assert_eq!(a.wait_done(1), Outcome::Sent);
    assert_exactly_once(&b, &[big]);
    assert_eq!(b.host.received().len(), 1);
}

#[test]
fn a_cable_pulled_for_good_takes_the_link_down_and_nothing_is_lost() {
    let relay = Relay::new();
    let (a, b, pa, _) = pair(&relay, "");
    // A line of 200 kB/s: the 300 kB take 1.5 s, so the cut always comes
    // before the last transfer ends (unpaced, a pty can carry them all
    // between two looks at the relay's counter).
    let pace = 200_000;
    relay.set_faults(Faults { pace, ..Faults::default() });
    let bundles: Vec<Vec<u8>> = (0..5).map(|i| bundle(60_000, 40 + i)).collect();
    for (i, x) in bundles.iter().enumerate() {
        a.transmit(pa, i as u64, x);
    }
    eventually("the transfer to be under way", || relay.carried()[0] > 20_000);
    relay.set_faults(Faults { cut: true, pace, ..Faults::default() });
    a.wait_down(1);
    b.wait_down(1);
    let unsent: Vec<Vec<u8>> = (0..5u64)
        .filter(|&i| {
            let outcome = a.wait_done(i);
            assert!(matches!(outcome, Outcome::Sent | Outcome::Failed), "{outcome:?}");
            outcome == Outcome::Failed
        })
        .map(|i| bundles[i as usize].clone())
        .collect();
    assert!(!unsent.is_empty(), "the cut came before the last transfer ended");
    for i in 0..5 {
        assert_eq!(a.host.outcomes(i).len(), 1, "exactly one outcome for transmit {i}");
    }
    // The cable goes back in: a new session, and the node sends again what failed.
    relay.set_faults(Faults::default());
    a.wait_up(2);
    b.wait_up(2);
    deliver_all(&a, &unsent, 100);
    assert_exactly_once(&b, &bundles);
}

#[test]
fn an_unplugged_adapter_is_reopened_and_a_missing_one_waited_for() {
    let relay = Relay::new();
    relay.unplug(0);
    // A's device does not exist yet: it warns once and keeps trying.
    let a = Node::start(&in_process(), "dtn://a/", &relay.settings(0, LINE));
    let b = Node::start(&dlopened(), "dtn://b/", &relay.settings(1, LINE));
    let line = a.wait_log("cannot open");
    assert!(line.contains("a.tty") && line.contains("retrying in"), "{line}");
    relay.plug(0);
    let pa = a.wait_up(1);
    b.wait_up(1);
    // Paced at 200 kB/s, so the adapter goes while transfers are still
    // running, however fast the ptys are.
    relay.set_faults(Faults { pace: 200_000, ..Faults::default() });
    let bundles: Vec<Vec<u8>> = (0..3).map(|i| bundle(150_000, 70 + i)).collect();
    for (i, x) in bundles.iter().enumerate() {
        a.transmit(pa, i as u64, x);
    }
    eventually("the transfer to be under way", || relay.carried()[0] > 30_000);
    relay.unplug(0);
    let line = a.wait_log("lost");
    assert!(line.contains("a.tty"), "{line}");
    a.wait_down(1);
    let failed: Vec<Vec<u8>> =
        (0..3u64).filter(|&i| a.wait_done(i) == Outcome::Failed).map(|i| bundles[i as usize].clone()).collect();
    assert!(!failed.is_empty());
    relay.plug(0);
    a.wait_up(2);
    deliver_all(&a, &failed, 100);
    assert_exactly_once(&b, &bundles);
    assert!(a.host.events().iter().filter(|e| matches!(e, Ev::Log { msg, .. } if msg.contains("opened"))).count() >= 2);
}

#[test]
fn garbage_and_malformed_input_are_logged_and_the_link_keeps_serving() {
    let relay = Relay::new();
    let (a, b, pa, _) = pair(&relay, "");
    // Line noise without delimiters, a garbage frame, an overlong frame, a bad
    // escape, and a frame with a valid CRC but an unknown type.
    relay.inject(1, &bundle(3000, 5).into_iter().filter(|&x| x != 0xC0).collect::<Vec<u8>>());
    relay.inject(1, b"\xc0\x00not a frame\xc0");
    let mut long = vec![0xC0, 0x00];
    long.extend(std::iter::repeat_n(0x55, 5000));
    long.push(0xC0);
    relay.inject(1, &long);
    relay.inject(1, &[0xC0, 0x00, 0x01, 0xDB, 0x01, 0xC0]);
    let mut unknown = Vec::new();
    Frame { nonce: 1, seq: 0, ack: 0, body: Body::Nop }.emit(&mut unknown);
    unknown[0] = 0x7F;
    let n = unknown.len();
    let crc = crc32c(&unknown[..n - 4]);
    unknown[n - 4..].copy_from_slice(&crc.to_be_bytes());
    relay.inject(1, &ferry_cla_kiss::encode_to_vec(0, &unknown));
    let line = b.wait_log("dropped");
    assert!(line.contains("from the line"), "{line}");
    // A transfer whose frames are fine but whose bundle is not: the host says
    // Invalid, the sender hears Refused, and the session goes on.
    a.transmit(pa, 1, b"junk: not CBOR at all");
    assert_eq!(a.wait_done(1), Outcome::Refused);
    a.transmit(pa, 2, &bundle(5000, 2));
    assert_eq!(a.wait_done(2), Outcome::Sent);
    assert_eq!(b.host.accepted(), [bundle(5000, 2)]);
    assert_eq!((a.host.downs(), b.host.downs()), (0, 0));
}

#[test]
fn stop_settles_everything_and_then_stays_silent() {
    let relay = Relay::new();
    let (a, b, pa, _) = pair(&relay, "");
    b.set_answer(Answer::Hold);
    for i in 0..10 {
        a.transmit(pa, i, &bundle(20_000, i));
    }
    b.wait_received(1);
    let host = a.stop();
    for i in 0..10 {
        assert_eq!(host.outcomes(i), [Outcome::Failed], "transmit {i}");
    }
    assert_eq!(host.downs(), 1);
    let seen = host.events().len();
    b.wait_down(1);
    assert_eq!(host.events().len(), seen, "a callback after stop returned");
}

fn crc32c(bytes: &[u8]) -> u32 {
    // CRC-32C (Castagnoli), bitwise: an independent check of the plugin's.
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}
