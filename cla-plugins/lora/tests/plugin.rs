//! The LoRa plugin end to end, in-process (and once through dlopen), over
//! the simulated channel (`ferry_cla_lora::sim`): real ptys, KISS, airtime
//! delays and seeded loss.
//!
//! Time is scaled: the channel and the plugins run their radio clocks 100×
//! faster than real time (`time_scale = 100`), so a 0.4 s SF7 packet takes
//! 4 ms. The duty cycle is off here (region "none", 100 %); the virtual-time
//! tests in the crate check the budget. Every wait is bounded.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_cla_abi::host::{HostCallbacks, Instance, Plugin};
use ferry_cla_abi::{Outcome, PeerUp, Verdict};
use ferry_cla_lora::airtime::RadioParams;
use ferry_cla_lora::frame::{short_id, Frame, MAX_CHUNK};
use ferry_cla_lora::sim::{ChannelConfig, SimChannel};

const SCALE: u32 = 100;
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Up { peer: u64, node_id: String, address: String, mtu: Option<u64>, rate: Option<u64> },
    Down(u64),
    Received { peer: u64, token: u64, bytes: Vec<u8> },
    Done(u64, Outcome),
    Log(i32, String),
}

#[derive(Default)]
struct Rec {
    events: Mutex<Vec<Ev>>,
}

impl Rec {
    fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }
    fn push(&self, e: Ev) {
        self.events.lock().unwrap().push(e);
    }
}

impl HostCallbacks for Rec {
    fn bundle_received(&self, peer: u64, bundle: &[u8], token: u64) {
        self.push(Ev::Received { peer, token, bytes: bundle.to_vec() });
    }
    fn peer_up(&self, peer: u64, info: PeerUp<'_>) {
        self.push(Ev::Up {
            peer,
            node_id: info.node_id.into(),
            address: info.address.into(),
            mtu: info.mtu,
            rate: info.rate_bps,
        });
    }
    fn peer_down(&self, peer: u64) {
        self.push(Ev::Down(peer));
    }
    fn transmit_done(&self, transmit: u64, outcome: Outcome) {
        self.push(Ev::Done(transmit, outcome));
    }
    fn log(&self, level: i32, msg: &str) {
        self.push(Ev::Log(level, msg.into()));
    }
}

/// One plugin instance on one simulated radio, with a host that answers
/// verdicts as told.
struct Node {
    inst: Instance,
    rec: Arc<Rec>,
    /// `None`: hold every verdict.
    answer: Mutex<Option<Verdict>>,
    answered: Mutex<usize>,
}

/// Scaled time makes every timer 100× shorter in real time; generous
/// retry and silence limits keep a test machine's scheduling stalls from
/// looking like a dead link (loss recovery itself stays fast).
fn settings(device: &Path, extra: &str) -> String {
    format!(
        "device = \"{}\"\nregion = \"none\"\nduty_cycle_percent = 100\ntime_scale = {SCALE}\n\
         hello_interval_secs = 10\npeer_timeout_secs = 600\nmax_retries = 300\nack_timeout_ms = 2000\n{extra}",
        device.display()
    )
}

fn in_process() -> Arc<Plugin> {
    Plugin::in_process(ferry_cla_lora::descriptor()).unwrap()
}

impl Node {
    fn start(plugin: &Arc<Plugin>, node_id: &str, device: &Path, extra: &str) -> Node {
        let rec = Arc::new(Rec::default());
        let inst = plugin.instantiate(node_id, &settings(device, extra), rec.clone()).unwrap();
        inst.start().unwrap();
        Node { inst, rec, answer: Mutex::new(Some(Verdict::Accepted)), answered: Mutex::new(0) }
    }

    /// Gives the host's verdict on bundles not answered yet; a bundle whose
    /// bytes arrived before is a `Duplicate`, as ferryd says.
    fn pump(&self) {
        let Some(answer) = *self.answer.lock().unwrap() else { return };
        let received: Vec<(u64, Vec<u8>)> = self
            .rec
            .events()
            .into_iter()
            .filter_map(|e| if let Ev::Received { token, bytes, .. } = e { Some((token, bytes)) } else { None })
            .collect();
        let mut answered = self.answered.lock().unwrap();
        for i in *answered..received.len() {
            let seen = received[..i].iter().any(|r| r.1 == received[i].1);
            let v = if seen && answer == Verdict::Accepted { Verdict::Duplicate } else { answer };
            self.inst.verdict(received[i].0, v);
        }
        *answered = received.len();
    }

    fn received(&self) -> Vec<(u64, Vec<u8>)> {
        self.rec
            .events()
            .into_iter()
            .filter_map(|e| if let Ev::Received { peer, bytes, .. } = e { Some((peer, bytes)) } else { None })
            .collect()
    }

    fn outcome(&self, id: u64) -> Vec<Outcome> {
        self.rec
            .events()
            .into_iter()
            .filter_map(|e| if let Ev::Done(t, o) = e { (t == id).then_some(o) } else { None })
            .collect()
    }

    fn peer(&self, node_id: &str) -> Option<u64> {
        let mut up = None;
        for e in self.rec.events() {
            match e {
                Ev::Up { peer, node_id: n, .. } if n == node_id => up = Some(peer),
                Ev::Down(p) if Some(p) == up => up = None,
                _ => {}
            }
        }
        up
    }

    fn logs(&self) -> String {
        self.rec
            .events()
            .into_iter()
            .filter_map(|e| if let Ev::Log(l, m) = e { Some(format!("[{l}] {m}")) } else { None })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Waits (bounded) until `f` holds, answering verdicts meanwhile.
fn wait(nodes: &[&Node], what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        for n in nodes {
            n.pump();
        }
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let logs: Vec<String> = nodes.iter().map(|n| n.logs()).collect();
    panic!("timed out waiting for {what}; logs:\n{}", logs.join("\n----\n"));
}

fn channel(nodes: usize, loss: f64, seed: u64, dir: &Path) -> SimChannel {
    let cfg = ChannelConfig { nodes, radio: RadioParams::default(), loss, seed, time_scale: SCALE };
    SimChannel::start(cfg, dir).unwrap()
}

fn bundle(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// A folder for one test's device symlinks, removed when dropped.
fn tempdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("ferry-lora-{name}-")).tempdir().unwrap()
}

/// Nodes a and b (and more) up to each other on one channel.
fn up(nodes: &[&Node], ids: &[&str]) {
    wait(nodes, "neighbours to come up", || {
        nodes.iter().zip(ids).all(|(n, me)| ids.iter().filter(|id| *id != me).all(|id| n.peer(id).is_some()))
    });
}

#[test]
fn loads_in_process_and_through_dlopen_and_refuses_bad_settings() {
    // cargo builds the cdylib in target/<profile>/deps (and copies it up).
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let so = [deps.join("libferry_cla_lora.so"), deps.join("../libferry_cla_lora.so")]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("libferry_cla_lora.so not built in {}", deps.display()));
    for plugin in [in_process(), Plugin::load(&so).unwrap()] {
        assert_eq!(plugin.name(), "lora");
        assert_eq!(plugin.version(), "0.1.0");
        let err = |s: &str| plugin.instantiate("dtn://x/", s, Arc::new(Rec::default())).err().unwrap().to_string();
        assert!(err("").contains("`device` is required"), "{}", err(""));
        assert!(err("device = \"/dev/x\"\nsf = 7").contains("unknown field `sf`"));
        assert!(err("device = \"/dev/x\"\nspreading_factor = 5").contains("`spreading_factor` = 5 is out of range"));
    }
}

#[test]
fn a_lossy_channel_delivers_every_bundle_once_and_byte_identical() {
    let tmp = tempdir("lossy");
    let dir = tmp.path();
    let ch = channel(3, 0.3, 42, dir);
    let p = in_process();
    let a = Node::start(&p, "dtn://a/", &ch.device(0), "");
    let b = Node::start(&p, "dtn://b/", &ch.device(1), "");
    let c = Node::start(&p, "dtn://c/", &ch.device(2), "");
    up(&[&a, &b, &c], &["dtn://a/", "dtn://b/", "dtn://c/"]);
    // The rate is the radio's (duty cycle off): 236 B per 0.4 s frame; the
    // MTU is max_bundle.
    assert!(a
        .rec
        .events()
        .iter()
        .any(|e| matches!(e, Ev::Up { node_id, mtu: Some(65_536), rate: Some(590), address, .. }
        if node_id == "dtn://b/" && address.starts_with("lora://"))));
    let pb = a.peer("dtn://b/").unwrap();
    let pa = b.peer("dtn://a/").unwrap();
    let sizes = [1usize, MAX_CHUNK, MAX_CHUNK + 1, 1000, 10 * 1024, 30 * 1024];
    for (i, &n) in sizes.iter().enumerate() {
        a.inst.transmit(pb, i as u64, &bundle(n, i as u64)).unwrap();
    }
    b.inst.transmit(pa, 100, &bundle(5000, 100)).unwrap();
    wait(&[&a, &b, &c], "every transmission to end", || {
        (0..sizes.len() as u64).all(|i| !a.outcome(i).is_empty()) && !b.outcome(100).is_empty()
    });
    for i in 0..sizes.len() as u64 {
        assert_eq!(a.outcome(i), vec![Outcome::Sent], "bundle {i}");
    }
    assert_eq!(b.outcome(100), vec![Outcome::Sent]);
    let got = b.received();
    assert_eq!(got.len(), sizes.len(), "each bundle handed up exactly once");
    for (i, &n) in sizes.iter().enumerate() {
        assert!(
            got.iter().any(|(peer, x)| *peer == pa && *x == bundle(n, i as u64)),
            "bundle {i} ({n} B) missing or differs"
        );
    }
    assert_eq!(a.received(), vec![(pb, bundle(5000, 100))]);
    assert!(c.received().is_empty(), "c took frames addressed to b");
    let s = ch.stats();
    assert!(s.lost > 0 && s.delivered > 0, "{s:?}");
}

#[test]
fn the_final_ack_waits_for_the_verdict_and_invalid_bundles_are_refused() {
    let tmp = tempdir("verdict");
    let dir = tmp.path();
    let ch = channel(2, 0.0, 1, dir);
    let p = in_process();
    let a = Node::start(&p, "dtn://a/", &ch.device(0), "");
    let b = Node::start(&p, "dtn://b/", &ch.device(1), "");
    up(&[&a, &b], &["dtn://a/", "dtn://b/"]);
    let pb = a.peer("dtn://b/").unwrap();
    *b.answer.lock().unwrap() = None;
    a.inst.transmit(pb, 1, &bundle(3000, 1)).unwrap();
    wait(&[&a, &b], "b to receive", || b.received().len() == 1);
    // Longer than several ACK round trips (each ~40 ms here): no ack yet.
    std::thread::sleep(Duration::from_millis(300));
    assert!(a.outcome(1).is_empty(), "acknowledged before the bundle was durable");
    *b.answer.lock().unwrap() = Some(Verdict::Accepted);
    wait(&[&a, &b], "a's outcome", || !a.outcome(1).is_empty());
    assert_eq!(a.outcome(1), vec![Outcome::Sent]);
    // A host that says "not a bundle": refused, and logged at the receiver.
    *b.answer.lock().unwrap() = Some(Verdict::Invalid);
    a.inst.transmit(pb, 2, b"valid frames, but no bundle inside").unwrap();
    wait(&[&a, &b], "a's outcome", || !a.outcome(2).is_empty());
    assert_eq!(a.outcome(2), vec![Outcome::Refused]);
    assert!(b.logs().contains("is not a valid bundle; refused"), "{}", b.logs());
}

#[test]
fn garbage_oversized_and_malformed_frames_are_logged_and_the_link_goes_on() {
    let tmp = tempdir("garbage");
    let dir = tmp.path();
    let ch = channel(2, 0.0, 2, dir);
    let p = in_process();
    let a = Node::start(&p, "dtn://a/", &ch.device(0), "");
    let b = Node::start(&p, "dtn://b/", &ch.device(1), "");
    up(&[&a, &b], &["dtn://a/", "dtn://b/"]);
    // Line noise without a frame delimiter, then random KISS frames.
    ch.inject(1, &bundle(500, 7).into_iter().filter(|b| *b != 0xc0).collect::<Vec<_>>()).unwrap();
    for i in 0..20 {
        ch.inject(1, &ferry_cla_kiss::encode_to_vec(0, &bundle(10 + i * 10, i as u64))).unwrap();
    }
    // A KISS frame longer than any LoRa packet.
    ch.inject(1, &ferry_cla_kiss::encode_to_vec(0, &[0x55; 600])).unwrap();
    // Valid CRC, nonsense inside: another format version.
    let mut v2 = Frame::Hello { src: 9, node_id: "dtn://z/" }.to_vec();
    v2[0] = 0x21;
    let crc = ferry_core::crc::crc16_x25(&v2[..v2.len() - 2]);
    let n = v2.len();
    v2[n - 2..].copy_from_slice(&crc.to_be_bytes());
    ch.inject(1, &ferry_cla_kiss::encode_to_vec(0, &v2)).unwrap();
    // Valid frames announcing a bundle far beyond max_bundle.
    let huge = Frame::Data {
        src: 77,
        dst: short_id("dtn://b/"),
        transfer: 1,
        seq: 0,
        total: 1000,
        poll: true,
        chunk: &[0; MAX_CHUNK],
    };
    ch.inject(1, &ferry_cla_kiss::encode_to_vec(0, &huge.to_vec())).unwrap();
    wait(&[&a, &b], "the log lines", || {
        let l = b.logs();
        l.contains("CRC mismatch")
            && l.contains("dropped a KISS frame from the modem: frame longer than the maximum frame size")
            && l.contains("frame format version 2")
            && l.contains("announces 1000 frames")
    });
    // And the link still carries bundles both ways.
    let pb = a.peer("dtn://b/").unwrap();
    let pa = b.peer("dtn://a/").unwrap();
    a.inst.transmit(pb, 1, &bundle(2000, 3)).unwrap();
    b.inst.transmit(pa, 2, &bundle(2000, 4)).unwrap();
    wait(&[&a, &b], "both outcomes", || !a.outcome(1).is_empty() && !b.outcome(2).is_empty());
    assert_eq!((a.outcome(1), b.outcome(2)), (vec![Outcome::Sent], vec![Outcome::Sent]));
    assert_eq!(b.received(), vec![(pa, bundle(2000, 3))]);
}

#[test]
fn an_unplugged_modem_fails_its_transfers_and_is_reopened() {
    let tmp = tempdir("unplug");
    let dir = tmp.path();
    let ch = channel(2, 0.0, 3, dir);
    let p = in_process();
    let extra = "reopen_max_secs = 1\n";
    let a = Node::start(&p, "dtn://a/", &ch.device(0), extra);
    let b = Node::start(&p, "dtn://b/", &ch.device(1), extra);
    up(&[&a, &b], &["dtn://a/", "dtn://b/"]);
    let pa = b.peer("dtn://a/").unwrap();
    ch.unplug(1);
    wait(&[&a, &b], "b to notice", || b.logs().contains("lost"));
    // Its neighbours went down with it; nothing can be queued now.
    assert!(b.peer("dtn://a/").is_none());
    assert!(b.inst.transmit(pa, 1, b"x").is_err());
    ch.replug(1).unwrap();
    wait(&[&a, &b], "b to reopen and hear a again", || b.peer("dtn://a/").is_some());
    let pa = b.peer("dtn://a/").unwrap();
    b.inst.transmit(pa, 2, &bundle(1500, 2)).unwrap();
    wait(&[&a, &b], "the transfer", || !b.outcome(2).is_empty());
    assert_eq!(b.outcome(2), vec![Outcome::Sent]);
    assert!(a.received().iter().any(|r| r.1 == bundle(1500, 2)));
}

#[test]
fn a_missing_device_is_retried_and_stop_fails_what_is_queued_once() {
    let tmp = tempdir("stop");
    let dir = tmp.path();
    let p = in_process();
    let missing = dir.join("no-such-modem");
    let lonely = Node::start(&p, "dtn://l/", &missing, "reopen_max_secs = 1\n");
    wait(&[&lonely], "the warning", || lonely.logs().contains("cannot open modem"));
    lonely.inst.stop();

    let ch = channel(2, 0.0, 4, dir);
    let a = Node::start(&p, "dtn://a/", &ch.device(0), "");
    let b = Node::start(&p, "dtn://b/", &ch.device(1), "");
    up(&[&a, &b], &["dtn://a/", "dtn://b/"]);
    let pb = a.peer("dtn://b/").unwrap();
    for i in 0..5 {
        a.inst.transmit(pb, i, &bundle(20_000, i)).unwrap();
    }
    a.inst.stop();
    let after = a.rec.events().len();
    for i in 0..5 {
        assert_eq!(a.outcome(i).len(), 1, "transmit {i}: {:?}", a.outcome(i));
    }
    assert!(a.outcome(4) == vec![Outcome::Failed]);
    assert!(a.inst.transmit(pb, 9, b"x").is_err());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(a.rec.events().len(), after, "callbacks after stop");
}
