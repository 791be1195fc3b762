//! The simulated channel on its own: broadcast to every other node, delay by
//! airtime, seeded loss, refusal of what a modem would refuse, unplugging.
//! Every wait is bounded.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_cla_kiss::{Decoder, Event};
use ferry_cla_lora::airtime::RadioParams;
use ferry_cla_lora::sim::{ChannelConfig, SimChannel};

/// A node's end of the channel: writes KISS frames, collects the data
/// frames that arrive (from a reader thread).
struct End {
    file: std::fs::File,
    frames: mpsc::Receiver<Vec<u8>>,
}

impl End {
    fn open(device: &Path) -> End {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(device).unwrap();
        let mut reader = file.try_clone().unwrap();
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            let mut d = Decoder::new(1024);
            let mut buf = [0u8; 1024];
            // Ends when the channel closes the pty (read fails).
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                d.feed(&buf[..n], |e| {
                    if let Event::Frame { data, .. } = e {
                        let _ = tx.send(data.to_vec());
                    }
                });
            }
        });
        End { file, frames }
    }

    fn send(&mut self, packet: &[u8]) {
        self.file.write_all(&ferry_cla_kiss::encode_to_vec(0, packet)).unwrap();
    }

    fn next(&self, limit: Duration) -> Option<Vec<u8>> {
        self.frames.recv_timeout(limit).ok()
    }
}

/// A folder for one test's device symlinks, removed when dropped.
fn tempdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("ferry-lora-sim-{name}-")).tempdir().unwrap()
}

fn cfg(nodes: usize, loss: f64, time_scale: u32) -> ChannelConfig {
    ChannelConfig { nodes, radio: RadioParams::default(), loss, seed: 5, time_scale }
}

#[test]
fn a_packet_reaches_every_other_node_after_its_airtime() {
    let tmp = tempdir("broadcast");
    let dir = tmp.path();
    // Scale 10: a 200-byte SF7 packet (323.1 ms on air) takes 32 ms.
    let ch = SimChannel::start(cfg(3, 0.0, 10), dir).unwrap();
    let mut ends: Vec<End> = (0..3).map(|i| End::open(&ch.device(i))).collect();
    let packet: Vec<u8> = (0..200u32).map(|i| (i * 7) as u8).collect();
    let sent = Instant::now();
    ends[0].send(&packet);
    for (i, end) in ends.iter().enumerate().skip(1) {
        assert_eq!(end.next(Duration::from_secs(10)).as_deref(), Some(&packet[..]), "node {i}");
    }
    let air = Duration::from_micros(RadioParams::default().airtime_us(200) / 10);
    assert!(sent.elapsed() >= air, "delivered after {:?}, before its airtime {air:?}", sent.elapsed());
    // Not back to the sender.
    assert_eq!(ends[0].next(Duration::from_millis(100)), None);
    let s = ch.stats();
    assert_eq!((s.packets, s.delivered, s.lost), (1, 2, 0));
}

#[test]
fn loss_is_per_receiver_and_what_a_modem_refuses_is_refused() {
    let tmp = tempdir("loss");
    let dir = tmp.path();
    let ch = SimChannel::start(cfg(2, 1.0, 1000), dir).unwrap();
    let mut a = End::open(&ch.device(0));
    let b = End::open(&ch.device(1));
    for _ in 0..20 {
        a.send(b"lost in the noise");
    }
    // Longer than a LoRa packet, and a KISS command that is not data.
    a.send(&[1u8; 300]);
    a.file.write_all(&ferry_cla_kiss::encode_to_vec(0x06, &[1])).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (ch.stats().packets < 20 || ch.stats().refused < 2) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = ch.stats();
    assert_eq!((s.packets, s.lost, s.delivered, s.refused), (20, 20, 0, 2), "{s:?}");
    assert!(ch.log().iter().any(|l| l.contains("refused")), "{:?}", ch.log());
    assert_eq!(b.next(Duration::from_millis(100)), None);
}

#[test]
fn unplugging_removes_the_device_and_replugging_brings_it_back() {
    let tmp = tempdir("unplug");
    let dir = tmp.path();
    let ch = SimChannel::start(cfg(2, 0.0, 1000), dir).unwrap();
    let dev = ch.device(1);
    let b = End::open(&dev);
    ch.unplug(1);
    assert!(!dev.exists());
    // The open end sees the hang-up: its reader thread ends.
    assert_eq!(b.next(Duration::from_secs(5)), None);
    ch.replug(1).unwrap();
    assert!(dev.exists());
    let mut a = End::open(&ch.device(0));
    let b = End::open(&dev);
    a.send(b"hello again");
    assert_eq!(b.next(Duration::from_secs(10)).as_deref(), Some(&b"hello again"[..]));
}
