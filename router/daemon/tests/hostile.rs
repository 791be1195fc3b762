//! Hostile peers at every listening port of a real ferryd (B): its API,
//! TCPCLv4, MTCP, STCP and discovery (UDP), all on 127.0.0.1. Idle
//! connections beyond the limits, slow-loris headers, random bytes and
//! absurd declared lengths, all at once, while A sends B bundles over
//! TCPCL. B must deliver every bundle, answer its API, close the slow and
//! idle connections within its timeouts, and end with its descriptors back
//! where they were and its memory bounded.
//!
//! Sizes from the environment (CI uses the defaults):
//! `FERRY_HOSTILE_CONNS` idle connections per port (300),
//! `FERRY_HOSTILE_SECS` seconds of attack (6). RELIABILITY.md's figures:
//! `FERRY_HOSTILE_CONNS=2000 FERRY_HOSTILE_SECS=30 cargo test -p ferry-daemon
//! --test hostile -- --nocapture`.

mod api_support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use api_support::{free_port, tcp_plugin, Ferryd};

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A small deterministic generator (xorshift64*) for the junk.
struct Rng(u64);
impl Rng {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }
}

fn proc_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.split_whitespace().next()?.parse().ok()))
        .unwrap_or(0)
}

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Raises this process's soft descriptor limit (the attack holds many).
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// GET with fresh connections and retries: the API is under attack.
fn get_retrying(addr: &str, path: &str, limit: Duration) -> Option<(u16, Vec<u8>)> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        if let Ok(r) = client.get(format!("http://{addr}{path}")).send() {
            let status = r.status().as_u16();
            if let Ok(b) = r.bytes() {
                return Some((status, b.to_vec()));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Holds up to `n` connections to `port` for `secs`; how many the server
/// closed within a second of opening (refused over its limit).
fn hold_idle(port: u16, n: u64, secs: Duration) -> u64 {
    let mut held = Vec::new();
    for _ in 0..n {
        match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut closed_at_once = 0;
    for s in &held {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut b = [0u8; 1];
        if let Ok(0) = (&*s).read(&mut b) {
            closed_at_once += 1;
        }
    }
    std::thread::sleep(secs);
    closed_at_once
}

#[test]
fn hostile_peers_at_every_port_do_not_stop_valid_traffic() {
    let conns = env_or("FERRY_HOSTILE_CONNS", 300);
    let secs = Duration::from_secs(env_or("FERRY_HOSTILE_SECS", 6));
    raise_nofile(conns * 4 + 512);
    let dir = tempfile::tempdir().unwrap();
    let (ta, tb, mb, sb, db) = (free_port(), free_port(), free_port(), free_port(), free_udp_port());
    let beacons_to = free_udp_port();
    let cfg_b = dir.path().join("b.toml");
    std::fs::write(
        &cfg_b,
        format!(
            "node_id = \"dtn://b/\"\n[api]\nmax_connections = 64\nheader_timeout = \"2s\"\n[[cla]]\npath = \"{}\"\n\
             [cla.settings]\nlisten = [\"127.0.0.1:{tb}\"]\nmtcp_listen = [\"127.0.0.1:{mb}\"]\n\
             stcp_listen = [\"127.0.0.1:{sb}\"]\nmax_connections = 64\ncontact_timeout_secs = 2\n\
             [cla.settings.discovery]\nenabled = true\nlisten = \"127.0.0.1:{db}\"\n\
             beacon_addr = \"127.0.0.1:{beacons_to}\"\ninterval_secs = 1\n",
            tcp_plugin().display()
        ),
    )
    .unwrap();
    let b = Ferryd::start_logging(&dir.path().join("b"), "info", &["--config", cfg_b.to_str().unwrap()]);
    let cfg_a = dir.path().join("a.toml");
    std::fs::write(
        &cfg_a,
        format!(
            "node_id = \"dtn://a/\"\n[[cla]]\npath = \"{}\"\n[cla.settings]\nlisten = [\"127.0.0.1:{ta}\"]\n\
             peers = [\"tcpcl://127.0.0.1:{tb}\"]\n",
            tcp_plugin().display()
        ),
    )
    .unwrap();
    let a = Ferryd::start_with(&dir.path().join("a"), &["--config", cfg_a.to_str().unwrap()]);
    b.get_ok("/register?inbox");
    a.eventually("A's session with B", Duration::from_secs(30), || {
        a.get("/status/peers").json()["dtn://b/"]["connected"] == true
    });
    let pid = b.pid();
    let (fds_before, rss_before) = (fds(pid), proc_kib(pid, "VmRSS:"));
    let api_port: u16 = b.addr.rsplit(':').next().unwrap().parse().unwrap();

    let slow_closed_after = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    // Idle connections at every TCP port.
    for port in [api_port, tb, mb, sb] {
        attackers.push(std::thread::spawn(move || ("idle", port, hold_idle(port, conns, secs))));
    }
    // Slow-loris at the API: a header byte every 300 ms.
    for _ in 0..20 {
        let slow = Arc::clone(&slow_closed_after);
        attackers.push(std::thread::spawn(move || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", api_port)) else { return ("slow", api_port, 0) };
            let start = Instant::now();
            let _ = s.write_all(b"GET /status/info HTTP/1.1\r\nHost: b\r\n");
            while start.elapsed() < secs {
                if s.write_all(b"X").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            slow.fetch_max(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            ("slow", api_port, 0)
        }));
    }
    // Random bytes and absurd lengths at every port.
    attackers.push(std::thread::spawn(move || {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let deadline = Instant::now() + secs;
        let huge: Vec<(u16, Vec<u8>)> = vec![
            // HTTP: a body of a terabyte.
            (
                api_port,
                b"POST /send?dst=dtn://b/inbox HTTP/1.1\r\nHost: b\r\nContent-Length: 1000000000000\r\n\r\nxx".to_vec(),
            ),
            // TCPCL: contact header, then an XFER_SEGMENT (START|END) of 2^62 octets.
            (tb, [b"dtn!\x04\x00".as_slice(), &[0x01, 0x03], &[0; 8], &[0x40, 0, 0, 0, 0, 0, 0, 0]].concat()),
            // MTCP: a CBOR byte string declaring 2^60 octets.
            (mb, [0x5b, 0x10, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3].to_vec()),
            // STCP: a length of 4 GiB - 1.
            (sb, [0xff, 0xff, 0xff, 0xff, 1, 2, 3].to_vec()),
        ];
        let mut rounds = 0;
        while Instant::now() < deadline && rounds < 200 {
            rounds += 1;
            for (port, msg) in &huge {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", *port)) {
                    let _ = s.write_all(msg);
                    let _ = s.write_all(&rng.bytes(4096));
                }
            }
            for port in [api_port, tb, mb, sb] {
                if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                    let _ = s.write_all(&rng.bytes(8192));
                }
            }
            if let Ok(u) = UdpSocket::bind("127.0.0.1:0") {
                for _ in 0..20 {
                    let _ = u.send_to(&rng.bytes(512), ("127.0.0.1", db));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        ("junk", 0, rounds)
    }));

    // Meanwhile: valid traffic A -> B, and B's API answers.
    std::thread::sleep(Duration::from_millis(700));
    let sent_at = Instant::now();
    for i in 0..10 {
        let r = a.post("/send?dst=dtn://b/inbox&lifetime=1h", format!("valid {i}").into_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < 10 && Instant::now() < deadline {
        match get_retrying(&b.addr, "/endpoint?inbox", Duration::from_secs(10)) {
            Some((200, body)) if body != b"Nothing to receive" => got.push(body),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let delivered_in = sent_at.elapsed();
    let info_ok = get_retrying(&b.addr, "/status/info", Duration::from_secs(10)).is_some_and(|(s, _)| s == 200);
    let (fds_peak, rss_peak) = (fds(pid), proc_kib(pid, "VmHWM:"));
    let mut refused = Vec::new();
    for t in attackers {
        refused.push(t.join().unwrap());
    }
    // The attackers are gone: B's descriptors come back.
    let settle = Instant::now() + Duration::from_secs(15);
    while fds(pid) > fds_before + 8 && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(200));
    }
    let fds_after = fds(pid);
    let figures = serde_json::json!({
        "idle_connections_per_port": conns,
        "attack_seconds": secs.as_secs(),
        "valid_bundles_delivered": got.len(),
        "valid_delivery_seconds": delivered_in.as_secs_f64(),
        "api_answered_under_attack": info_ok,
        "slow_loris_cut_after_ms": slow_closed_after.load(Ordering::Relaxed),
        "idle_closed_at_once_by_port": refused.iter().filter(|r| r.0 == "idle").map(|r| (r.1, r.2)).collect::<Vec<_>>(),
        "junk_rounds": refused.iter().find(|r| r.0 == "junk").map(|r| r.2),
        "fds": { "before": fds_before, "peak": fds_peak, "after": fds_after },
        "rss_kib": { "before": rss_before, "peak": rss_peak },
        "b_alive": std::path::Path::new(&format!("/proc/{pid}")).exists(),
    });
    println!("hostile: {figures}");
    assert_eq!(got.len(), 10, "every valid bundle arrives: {figures}\n{}", b.log_text());
    assert!(info_ok, "{figures}");
    assert!(figures["b_alive"] == true, "{figures}");
    // The slow-loris connections were cut by the 2 s header timeout, well
    // before the attack would have ended them.
    assert!(slow_closed_after.load(Ordering::Relaxed) < 5_000 || secs < Duration::from_secs(5), "{figures}");
    // Bounded: each listener serves at most 64; a few dozen more for the
    // store, the plugin and the sessions.
    assert!(fds_peak <= fds_before + 64 * 4 + 64, "descriptors: {figures}");
    assert!(fds_after <= fds_before + 8, "descriptors after the attack: {figures}");
    assert!(rss_peak <= rss_before + 200 * 1024, "memory: {figures}");
}
