//! The link's protocol on the virtual channel: discovery, lossy delivery,
//! verdict-gated acknowledgements, the duty cycle, bounded memory and bad
//! packets. Everything runs in virtual time, deterministic per seed.

use ferry_cla_abi::{Outcome, Verdict};

use crate::airtime::RadioParams;
use crate::frame::{Frame, MAX_CHUNK};
use crate::link::{Level, LinkConfig};
use crate::vsim::{Answer, VirtualNet};

const S: u64 = 1_000_000;

fn cfg(duty_percent: f64) -> LinkConfig {
    LinkConfig::new(RadioParams::default(), duty_percent)
}

fn bundle(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// Two or more nodes that have heard each other.
fn net(cfg: &LinkConfig, ids: &[&str], loss: f64, seed: u64) -> VirtualNet {
    let mut net = VirtualNet::new(cfg, ids, loss, seed);
    let n = ids.len();
    let discovered = net.run_until(3600 * S, |net| net.nodes.iter().all(|node| node.link.neighbours().len() == n - 1));
    assert!(discovered, "neighbours not discovered: {:?}", net.nodes.iter().map(|n| n.ups.clone()).collect::<Vec<_>>());
    net
}

fn warnings(net: &VirtualNet, node: usize) -> Vec<String> {
    net.nodes[node].logs.iter().filter(|(l, _)| *l == Level::Warn).map(|(_, m)| m.clone()).collect()
}

#[test]
fn neighbours_discover_each_other_and_report_rate_and_mtu() {
    let c = cfg(1.0);
    let net = net(&c, &["dtn://a/", "dtn://b/", "dtn://c/"], 0.0, 1);
    assert_eq!(net.nodes[0].ups.iter().map(|u| u.1.as_str()).collect::<Vec<_>>().len(), 2);
    // 236 B per 399.616 ms frame at 1 %: 5.9 B/s, reported as 5.
    assert_eq!(c.rate_bps(), 5);
    assert_eq!(cfg(100.0).rate_bps(), 590);
    // HELLOs use at most a tenth of the budget: SF7 64 B is 118.016 ms,
    // so one every 118 s at 1 %.
    assert_eq!(c.hello_interval_us, 118_016_000);
}

#[test]
fn a_lossless_channel_sends_each_frame_once() {
    let mut net = net(&cfg(100.0), &["dtn://a/", "dtn://b/"], 0.0, 2);
    let b = bundle(10 * 1024, 1);
    net.transmit(0, "dtn://b/", 7, &b).unwrap();
    assert!(net.run_until(3600 * S, |n| n.nodes[0].outcome(7).is_some()));
    assert_eq!(net.nodes[0].outcome(7), Some(Outcome::Sent));
    assert_eq!(net.nodes[1].stored.len(), 1);
    assert!(net.nodes[1].stored[0].1 == b, "bundle differs");
    assert_eq!(net.nodes[1].stored[0].0, net.nodes[1].peer("dtn://a/").unwrap());
    let st = net.nodes[0].link.stats();
    assert_eq!(st.data_frames, (10 * 1024usize).div_ceil(MAX_CHUNK) as u64);
    assert_eq!(st.retransmitted_frames, 0);
}

#[test]
fn lossy_channels_deliver_everything_once_and_byte_identical() {
    for (loss, seed) in [(0.1, 11), (0.3, 12), (0.5, 13)] {
        let mut net = net(&cfg(100.0), &["dtn://a/", "dtn://b/"], loss, seed);
        // At 50 % loss a neighbour can miss enough HELLOs to go down for a
        // while; the host then sends the bundle again, as ferryd does.
        net.nodes[0].retry_failed = true;
        net.nodes[1].retry_failed = true;
        let sizes = [1usize, 235, 236, 237, 1000, 10 * 1024, 64 * 1024];
        let bundles: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &s)| bundle(s, i as u64 + seed)).collect();
        for (i, b) in bundles.iter().enumerate() {
            net.transmit(0, "dtn://b/", i as u64, b).unwrap();
            // And one the other way at the same time.
            net.transmit(1, "dtn://a/", 100 + i as u64, &bundle(300, 1000 + i as u64)).unwrap();
        }
        let all_done = |n: &VirtualNet| n.nodes[0].finished() == sizes.len() && n.nodes[1].finished() == sizes.len();
        assert!(net.run_until(100 * 3600 * S, all_done), "loss {loss}: not done: {:?}", net.nodes[0].done);
        for i in 0..sizes.len() as u64 {
            assert_eq!(net.nodes[0].outcome(i), Some(Outcome::Sent), "loss {loss}, bundle {i}");
            assert_eq!(net.nodes[1].outcome(100 + i), Some(Outcome::Sent), "loss {loss}, bundle {i} back");
        }
        let got: Vec<&Vec<u8>> = net.nodes[1].stored.iter().map(|s| &s.1).collect();
        assert_eq!(got.len(), bundles.len());
        for b in &bundles {
            assert!(got.contains(&b), "loss {loss}: a {}-byte bundle is missing or differs", b.len());
        }
        // Nothing handed up twice: retransmitted frames of a finished
        // transfer are recognised by the link itself. Only a bundle its host
        // sent again after a failure can arrive again (and the host's store
        // calls it a duplicate, as `stored` shows).
        for (rx, tx) in [(1, 0), (0, 1)] {
            let extra = net.nodes[tx].retried as usize;
            let up = net.nodes[rx].handed_up;
            assert!(up >= sizes.len() && up <= sizes.len() + extra, "loss {loss}: {up} handed up, {extra} resent");
        }
        assert!(net.nodes[0].link.stats().retransmitted_frames > 0, "loss {loss} but nothing retransmitted");
        assert_eq!(net.nodes[1].link.reassembly_load(), (0, 0));
    }
}

#[test]
fn the_final_ack_waits_for_the_hosts_verdict() {
    let mut net = net(&cfg(100.0), &["dtn://a/", "dtn://b/"], 0.0, 3);
    net.nodes[1].answer = Answer::Hold;
    net.transmit(0, "dtn://b/", 1, &bundle(2000, 5)).unwrap();
    let t0 = net.now;
    net.run_for(t0 + 60 * S);
    assert_eq!(net.nodes[1].handed_up, 1);
    assert_eq!(net.nodes[0].outcome(1), None, "acknowledged before the bundle was durable");
    let token = net.nodes[1].held[0];
    let now = net.now;
    net.nodes[1].link.handle_verdict(now, token, Verdict::Accepted);
    assert!(net.run_until(now + 60 * S, |n| n.nodes[0].outcome(1).is_some()));
    assert_eq!(net.nodes[0].outcome(1), Some(Outcome::Sent));
    // A second verdict for the same token, or an unknown one, changes nothing.
    let now = net.now;
    net.nodes[1].link.handle_verdict(now, token, Verdict::Invalid);
    net.nodes[1].link.handle_verdict(now, 999, Verdict::Accepted);
}

#[test]
fn a_hung_store_fails_the_transmission_eventually_and_the_link_goes_on() {
    let mut net = net(&cfg(100.0), &["dtn://a/", "dtn://b/"], 0.0, 4);
    net.nodes[1].answer = Answer::Hold;
    net.transmit(0, "dtn://b/", 1, &bundle(500, 5)).unwrap();
    assert!(net.run_until(3600 * S, |n| n.nodes[0].outcome(1).is_some()));
    assert_eq!(net.nodes[0].outcome(1), Some(Outcome::Failed));
    net.nodes[1].answer = Answer::Store;
    net.transmit(0, "dtn://b/", 2, &bundle(500, 6)).unwrap();
    assert!(net.run_until(net.now + 3600 * S, |n| n.nodes[0].outcome(2).is_some()));
    assert_eq!(net.nodes[0].outcome(2), Some(Outcome::Sent));
}

#[test]
fn verdicts_map_to_outcomes() {
    let mut net = net(&cfg(100.0), &["dtn://a/", "dtn://b/"], 0.0, 5);
    net.nodes[1].answer = Answer::Invalid;
    net.transmit(0, "dtn://b/", 1, b"not a bundle at all").unwrap();
    assert!(net.run_until(3600 * S, |n| n.nodes[0].outcome(1).is_some()));
    assert_eq!(net.nodes[0].outcome(1), Some(Outcome::Refused));
    assert!(warnings(&net, 1).iter().any(|w| w.contains("is not a valid bundle")), "{:?}", warnings(&net, 1));
    // The same bytes again: the host has them (Duplicate) → Sent.
    net.nodes[1].answer = Answer::Store;
    net.transmit(0, "dtn://b/", 2, b"twice").unwrap();
    net.transmit(0, "dtn://b/", 3, b"twice").unwrap();
    assert!(net.run_until(net.now + 3600 * S, |n| n.nodes[0].done.len() == 3));
    assert_eq!(net.nodes[0].outcome(2), Some(Outcome::Sent));
    assert_eq!(net.nodes[0].outcome(3), Some(Outcome::Sent));
    assert_eq!(net.nodes[1].stored.len(), 1);
}

#[test]
fn frames_for_another_node_are_ignored() {
    let mut net = net(&cfg(100.0), &["dtn://a/", "dtn://b/", "dtn://c/"], 0.0, 6);
    net.transmit(0, "dtn://b/", 1, &bundle(3000, 1)).unwrap();
    assert!(net.run_until(3600 * S, |n| n.nodes[0].outcome(1).is_some()));
    assert_eq!(net.nodes[1].stored.len(), 1);
    assert_eq!(net.nodes[2].handed_up, 0);
    assert_eq!(net.nodes[2].link.reassembly_load(), (0, 0));
    // c put nothing but its HELLOs (16 bytes) on air: no ACKs for a's frames.
    assert!(net.on_air.iter().filter(|p| p.1 == 2).all(|p| p.3 == 8 + "dtn://c/".len()));
}

#[test]
fn the_duty_cycle_is_never_exceeded_and_delays_a_burst() {
    // 1 % of an hour is 36 s of airtime: 30 KiB at SF7 (132 full frames of
    // 0.4 s = 53 s) can not go in one hour.
    let mut net = net(&cfg(1.0), &["dtn://a/", "dtn://b/"], 0.1, 7);
    let start = net.now;
    for i in 0..3 {
        net.transmit(0, "dtn://b/", i, &bundle(10 * 1024, i)).unwrap();
    }
    assert!(net.run_until(start + 48 * 3600 * S, |n| n.nodes[0].done.len() == 3));
    assert!(net.nodes[0].done.iter().all(|d| d.1 == Outcome::Sent), "{:?}", net.nodes[0].done);
    let finished = net.nodes[0].done.iter().map(|d| d.2).max().unwrap();
    assert!(finished - start > 3600 * S, "30 KiB in {} s at 1 %", (finished - start) / S);
    for node in 0..2 {
        let sent: Vec<(u64, u64)> = net.on_air.iter().filter(|p| p.1 == node).map(|p| (p.0, p.2)).collect();
        for &(s, a) in &sent {
            let end = s + a;
            let from = end.saturating_sub(3600 * S);
            let used: u64 = sent.iter().map(|&(s2, a2)| (s2 + a2).min(end).saturating_sub(s2.max(from))).sum();
            assert!(used <= 36 * S, "node {node}: {used} µs of airtime in the hour before {end}");
        }
        // And the radio never sent two packets at once.
        for w in sent.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "node {node} overlapped its own packets");
        }
    }
}

#[test]
fn a_silent_neighbour_goes_down_and_its_transmissions_fail() {
    let mut net = net(&cfg(100.0), &["dtn://a/", "dtn://b/"], 0.0, 8);
    let pb = net.nodes[0].peer("dtn://b/").unwrap();
    net.nodes[1].off = true;
    net.transmit(0, "dtn://b/", 1, &bundle(5000, 1)).unwrap();
    assert!(net.run_until(net.now + 3600 * S, |n| n.nodes[0].downs.contains(&pb)));
    assert_eq!(net.nodes[0].outcome(1), Some(Outcome::Failed));
    assert!(net.nodes[0].link.handle_transmit(pb, 2, b"x").is_err());
    // Back in range: up again, and it works.
    net.nodes[1].off = false;
    assert!(net.run_until(net.now + 3600 * S, |n| n.nodes[0].peer("dtn://b/").is_some()));
    net.transmit(0, "dtn://b/", 3, &bundle(5000, 1)).unwrap();
    assert!(net.run_until(net.now + 3600 * S, |n| n.nodes[0].outcome(3).is_some()));
    assert_eq!(net.nodes[0].outcome(3), Some(Outcome::Sent));
}

#[test]
fn transmit_errors() {
    let mut net = net(&cfg(100.0), &["dtn://a/", "dtn://b/"], 0.0, 9);
    let pb = net.nodes[0].peer("dtn://b/").unwrap();
    let link = &mut net.nodes[0].link;
    assert!(link.handle_transmit(12345, 1, b"x").unwrap_err().to_string().contains("no peer 12345"));
    assert!(link.handle_transmit(pb, 1, b"").is_err());
    let err = link.handle_transmit(pb, 1, &vec![0; 64 * 1024 + 1]).unwrap_err();
    assert!(err.to_string().contains("larger than max_bundle"), "{err}");
    for i in 0..64 {
        link.handle_transmit(pb, i, b"q").unwrap();
    }
    assert!(link.handle_transmit(pb, 64, b"q").unwrap_err().to_string().contains("already queued"));
}

/// A DATA frame from a node that never said HELLO.
fn data(src: u32, transfer: u32, seq: u16, total: u16, chunk: &[u8], poll: bool) -> Vec<u8> {
    let dst = crate::frame::short_id("dtn://b/");
    Frame::Data { src, dst, transfer, seq, total, poll, chunk }.to_vec()
}

#[test]
fn garbage_and_hostile_frames_are_logged_and_memory_stays_bounded() {
    let mut c = cfg(100.0);
    c.max_reassemblies = 3;
    c.max_reassembly_bytes = 20 * MAX_CHUNK;
    let mut net = net(&c, &["dtn://a/", "dtn://b/"], 0.0, 10);
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..500 {
        let junk: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
        net.inject(1, &junk);
    }
    assert_eq!(net.nodes[1].link.stats().bad_packets, 500);
    // Logged, but not 500 times: once per kind of error per minute.
    let crc = warnings(&net, 1).iter().filter(|w| w.contains("CRC mismatch")).count();
    assert_eq!(crc, 1, "{:?}", warnings(&net, 1));
    net.run_for(net.now + 61 * S);
    net.inject(1, &[0xff; 20]);
    assert!(warnings(&net, 1).iter().any(|w| w.contains("CRC mismatch") && w.contains("more like it since")));
    // An oversized transfer: 1000 frames is beyond max_bundle (64 KiB).
    net.inject(1, &data(77, 1, 0, 1000, &[0; MAX_CHUNK], true));
    assert!(warnings(&net, 1).iter().any(|w| w.contains("announces 1000 frames")), "{:?}", warnings(&net, 1));
    // Short middle frames are refused.
    net.inject(1, &data(77, 2, 0, 3, b"short", false));
    assert!(warnings(&net, 1).iter().any(|w| w.contains("frame 0 carries 5 bytes")));
    // Many half transfers from many senders: bounded.
    for t in 0..50u32 {
        net.inject(1, &data(1000 + t, t, 0, 5, &[1; MAX_CHUNK], true));
        let (n, bytes) = net.nodes[1].link.reassembly_load();
        assert!(n <= 3 && bytes <= 20 * MAX_CHUNK, "{n} reassemblies, {bytes} bytes");
    }
    // They expire, and then a real transfer gets through.
    net.run_for(net.now + c.reassembly_timeout_us + S);
    assert_eq!(net.nodes[1].link.reassembly_load(), (0, 0));
    assert!(net.nodes[1].logs.iter().any(|l| l.1.contains("dropped stale reassembly")));
    net.transmit(0, "dtn://b/", 1, &bundle(4000, 9)).unwrap();
    assert!(net.run_until(net.now + 3600 * S, |n| n.nodes[0].outcome(1).is_some()));
    assert_eq!(net.nodes[0].outcome(1), Some(Outcome::Sent));
    assert_eq!(net.nodes[1].handed_up, 1);
}

#[test]
fn a_replayed_transfer_is_not_delivered_twice() {
    let mut net = net(&cfg(100.0), &["dtn://a/", "dtn://b/"], 0.0, 11);
    let b = bundle(1000, 1);
    let chunks: Vec<&[u8]> = b.chunks(MAX_CHUNK).collect();
    let a = crate::frame::short_id("dtn://a/");
    for round in 0..3 {
        for (i, c) in chunks.iter().enumerate() {
            net.inject(1, &data(a, 42, i as u16, chunks.len() as u16, c, i + 1 == chunks.len()));
        }
        net.run_for(net.now + S);
        assert_eq!(net.nodes[1].handed_up, 1, "round {round}");
    }
    assert!(net.nodes[1].stored[0].1 == b);
}

#[test]
fn half_duplex_radios_that_collide_still_deliver_everything() {
    // Three nodes, traffic in every direction at once, on a channel where a
    // sender is deaf and overlapping packets destroy each other, plus 10 %
    // loss, at EU868's 1 %. (Without a duty cycle three busy senders that do
    // not listen before they talk collide nearly always: pure ALOHA beyond
    // saturation. Modems such as the RNode listen first; the link relies on
    // that, or on the duty cycle keeping the channel mostly quiet.)
    let mut net = VirtualNet::new(&cfg(1.0), &["dtn://a/", "dtn://b/", "dtn://c/"], 0.1, 21);
    net.half_duplex = true;
    assert!(net.run_until(3600 * S, |n| n.nodes.iter().all(|x| x.link.neighbours().len() == 2)));
    for node in &mut net.nodes {
        node.retry_failed = true;
    }
    let names = ["dtn://a/", "dtn://b/", "dtn://c/"];
    let mut expected = vec![Vec::new(); 3];
    for from in 0..3 {
        for k in 0..3u64 {
            let to = (from + 1 + (k as usize % 2)) % 3;
            let b = bundle(3000, from as u64 * 10 + k);
            net.transmit(from, names[to], k, &b).unwrap();
            expected[to].push(b);
        }
    }
    assert!(net.run_until(net.now + 100 * 3600 * S, |n| n.nodes.iter().all(|x| x.finished() == 3)));
    assert!(net.collided > 0, "nothing collided");
    for (i, node) in net.nodes.iter().enumerate() {
        assert!(node.done.iter().all(|d| d.1 == Outcome::Sent), "node {i}: {:?}", node.done);
        let mut got: Vec<&Vec<u8>> = node.stored.iter().map(|s| &s.1).collect();
        let mut want: Vec<&Vec<u8>> = expected[i].iter().collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "node {i}");
    }
}
