//! Crash recovery through a chain: three ferryd with durable stores, A → B → C
//! over the TCP plugin on loopback. Bundles for C's app are sent into A
//! while a random node is killed with SIGKILL at a random moment and
//! restarted on the same data folder, again and again. Every bundle that A
//! acknowledged (its `/send` answered 200) must reach the app at C; the
//! suite also counts bundles the app got twice (reported, not yet refused:
//! see the end of the test).
//!
//! The app is a `/ws` subscriber at C (reconnecting whenever C restarts),
//! which records each payload's sequence number.
//!
//! The second test does the same across a folder that both ends see (the
//! usbdir plugin; a synced folder, or a stick in a hub): A writes, C reads
//! and removes, and either is killed at random.
//!
//! Sizes come from the environment, small by default so that CI runs it in
//! seconds. The figures in RELIABILITY.md come from
//!
//! ```sh
//! FERRY_CRASH_BUNDLES=10000 FERRY_CRASH_KILLS=20 \
//!   cargo test --release -p ferry-daemon --test crash_chain -- --nocapture
//! ```
//!
//! which prints a JSON line of figures for each (`crash_chain: {...}`,
//! `crash_usb: {...}`). A seed
//! (`FERRY_CRASH_SEED`, else the clock) picks the victims and moments; it is
//! printed so that a run can be repeated.

mod api_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_support::{free_port, tcp_plugin, Ferryd};
use tokio_tungstenite::tungstenite::{self, Message};

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small deterministic generator (xorshift64*), so a seed replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One node of the chain: how to (re)start it, and the running process.
struct Node {
    name: &'static str,
    data: PathBuf,
    config: PathBuf,
    proc: Mutex<Option<Ferryd>>,
    /// Its API address now (`127.0.0.1:PORT`; it changes at each restart).
    api: Mutex<String>,
    restarts: AtomicU64,
}

/// The TCP plugin listening on `listen` and dialing `peers`.
fn tcp_cla(listen: u16, peers: &[u16]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"tcpcl://127.0.0.1:{p}\"")).collect();
    format!(
        "[[cla]]\npath = \"{}\"\n[cla.settings]\nlisten = [\"127.0.0.1:{listen}\"]\npeers = [{}]\n",
        tcp_plugin().display(),
        peers.join(", ")
    )
}

/// The usbdir plugin on `folder` (shared by both ends, as a synced folder
/// or a stick in a hub would be), its state in `state`.
fn usbdir_cla(folder: &Path, state: &Path) -> String {
    let p = Path::new(env!("CARGO_BIN_EXE_ferryd")).parent().expect("target dir").join("libferry_cla_usbdir.so");
    assert!(p.exists(), "{} is not built: run `cargo build --workspace` first", p.display());
    format!(
        "[[cla]]\npath = \"{}\"\n[cla.settings]\npath = \"{}\"\nstate_dir = \"{}\"\nnodes = [\"dtn://c/\"]\n\
         poll_interval_ms = 100\n",
        p.display(),
        folder.display(),
        state.display()
    )
}

impl Node {
    /// `dtn://<name>/` with `clas` as its `[[cla]]` blocks.
    fn new(dir: &Path, name: &'static str, clas: &str) -> Node {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, format!("node_id = \"dtn://{name}/\"\n{clas}")).unwrap();
        let node = Node {
            name,
            data: dir.join(name),
            config,
            proc: Mutex::new(None),
            api: Mutex::new(String::new()),
            restarts: AtomicU64::new(0),
        };
        node.start();
        node
    }

    fn start(&self) {
        let f = Ferryd::start_with(&self.data, &["--config", self.config.to_str().unwrap()]);
        *self.api.lock().unwrap() = f.addr.clone();
        *self.proc.lock().unwrap() = Some(f);
    }

    /// SIGKILL (dropping a `Ferryd` kills it and reaps it), then a restart
    /// on the same data folder.
    fn crash_and_restart(&self) {
        drop(self.proc.lock().unwrap().take());
        self.restarts.fetch_add(1, Ordering::Relaxed);
        self.start();
    }

    fn api(&self) -> String {
        self.api.lock().unwrap().clone()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

/// The app at C: subscribes to `sink` over `/ws` (bundle mode off: records
/// carry the payload), reconnecting to C's current address after a crash;
/// counts each sequence number it gets.
fn app(c: Arc<Node>, got: Arc<Mutex<BTreeMap<u64, u32>>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let addr = c.api();
        let Ok(stream) = TcpStream::connect(&addr) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let Ok((mut ws, _)) = tungstenite::client(format!("ws://{addr}/ws"), stream) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let ok = ws.send(Message::text("/json")).is_ok() && ws.send(Message::text("/subscribe sink")).is_ok();
        if !ok {
            continue;
        }
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match ws.read() {
                Ok(Message::Binary(record)) => {
                    let v: serde_json::Value = serde_json::from_slice(&record).expect("a JSON record");
                    let data = v["data"].as_str().expect("base64 data");
                    use base64::Engine as _;
                    let payload = base64::engine::general_purpose::STANDARD.decode(data).expect("base64");
                    let text = String::from_utf8(payload).expect("UTF-8 payload");
                    let seq: u64 = text.strip_prefix("seq ").and_then(|s| s.parse().ok()).expect("seq N");
                    *got.lock().unwrap().entry(seq).or_default() += 1;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
    }
}

#[test]
fn acknowledged_bundles_survive_random_kills_along_the_chain() {
    let (bundles, kills, seed) = sizes("crash_chain");
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let b = Arc::new(Node::new(dir.path(), "b", &tcp_cla(pb, &[])));
    let c = Arc::new(Node::new(dir.path(), "c", &tcp_cla(pc, &[pb])));
    let a = Arc::new(Node::new(dir.path(), "a", &tcp_cla(pa, &[pb])));
    crash_run("crash_chain", &[a, b, c], bundles, kills, seed);
}

/// The same through a folder both nodes see (a synced folder, or a stick
/// in a hub): A writes each bundle as a file (temporary name, fsync,
/// rename) and forgets it; C reads it, stores it, and removes the file.
/// Kills land between A's write and its own record of it, and between C's
/// store and its removal of the file.
#[test]
fn acknowledged_bundles_survive_random_kills_at_both_ends_of_a_usb_folder() {
    let (bundles, kills, seed) = sizes("crash_usb");
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("stick");
    std::fs::create_dir(&folder).unwrap();
    let c = Arc::new(Node::new(dir.path(), "c", &usbdir_cla(&folder, &dir.path().join("c-state"))));
    let a = Arc::new(Node::new(dir.path(), "a", &usbdir_cla(&folder, &dir.path().join("a-state"))));
    crash_run("crash_usb", &[a, c], bundles, kills, seed);
    // Nothing is left on the stick but the plugin's own bookkeeping.
    let left: Vec<String> =
        walk(&folder).into_iter().filter(|f| f.ends_with(".bundle") || f.ends_with(".part")).collect();
    assert!(left.is_empty(), "files left on the stick: {left:?}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// Bundles, kills and the seed, from FERRY_CRASH_BUNDLES, FERRY_CRASH_KILLS
/// and FERRY_CRASH_SEED (else the clock).
fn sizes(label: &str) -> (u64, u64, u64) {
    let bundles = env_or("FERRY_CRASH_BUNDLES", 600);
    let kills = env_or("FERRY_CRASH_KILLS", 4);
    let seed = env_or(
        "FERRY_CRASH_SEED",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    ) | 1;
    eprintln!("{label}: seed {seed}, {bundles} bundles, {kills} kills");
    (bundles, kills, seed)
}

/// Sends `bundles` into the first node for the app at the last one (`c`)
/// while `kills` random nodes are killed and restarted; then lets it drain
/// and checks that every acknowledged bundle arrived.
fn crash_run(label: &str, nodes: &[Arc<Node>], bundles: u64, kills: u64, seed: u64) {
    let (a, c) = (Arc::clone(&nodes[0]), Arc::clone(&nodes[nodes.len() - 1]));
    let client = http();
    let register = client.get(format!("http://{}/register?sink", c.api())).send().unwrap();
    assert!(register.status().is_success());

    let got = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let app = {
        let (c, got, stop) = (Arc::clone(&c), Arc::clone(&got), Arc::clone(&stop));
        std::thread::spawn(move || app(c, got, stop))
    };

    // Senders: each bundle once; a send that gets no 200 is not acknowledged
    // and, unless its connection was refused, not sent again (it may still
    // have been stored: such a bundle may arrive, and is counted apart).
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let next = Arc::new(AtomicU64::new(0));
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (a, acked, next) = (Arc::clone(&a), Arc::clone(&acked), Arc::clone(&next));
            std::thread::spawn(move || {
                let client = http();
                let deadline = Instant::now() + Duration::from_secs(300);
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= bundles {
                        return;
                    }
                    // A connection refused reached no ferryd (A is down or
                    // restarting): that bundle is sent again. Any other failure
                    // may have come after A stored it: not sent again.
                    while Instant::now() < deadline {
                        let url = format!("http://{}/send?dst=dtn://c/sink&lifetime=1h", a.api());
                        match client.post(url).body(format!("seq {seq}")).send() {
                            Ok(r) if r.status().is_success() => {
                                acked.lock().unwrap().insert(seq);
                                break;
                            }
                            Err(e) if e.is_connect() => std::thread::sleep(Duration::from_millis(20)),
                            _ => break,
                        }
                    }
                }
            })
        })
        .collect();

    // The killer: a random node at a random moment, while bundles flow.
    let mut rng = Rng(seed);
    // FERRY_CRASH_VICTIMS=bc: kill only B and C (default: any of a, b, c).
    let names: String = nodes.iter().map(|n| n.name).collect();
    let allowed = std::env::var("FERRY_CRASH_VICTIMS").unwrap_or_else(|_| names.clone());
    assert!(allowed.chars().any(|c| names.contains(c)), "FERRY_CRASH_VICTIMS names none of {names}");
    let mut victims = Vec::new();
    let started = Instant::now();
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(100 + rng.below(700)));
        let victim = loop {
            let n = &nodes[rng.below(nodes.len() as u64) as usize];
            if allowed.contains(n.name) {
                break n;
            }
        };
        victims.push(victim.name);
        victim.crash_and_restart();
    }
    for s in senders {
        s.join().unwrap();
    }
    let acked: BTreeSet<u64> = acked.lock().unwrap().clone();

    // Then let the chain drain: every acknowledged bundle should arrive.
    let deadline = Instant::now() + Duration::from_secs(env_or("FERRY_CRASH_DRAIN_S", 120));
    loop {
        let missing = acked.iter().filter(|s| !got.lock().unwrap().contains_key(s)).count();
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // A little longer, for late duplicates.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    app.join().unwrap();

    let got = got.lock().unwrap().clone();
    let lost: Vec<u64> = acked.iter().copied().filter(|s| !got.contains_key(s)).collect();
    let twice: Vec<u64> = got.iter().filter(|(_, &n)| n > 1).map(|(&s, _)| s).collect();
    let unacked_delivered = got.keys().filter(|s| !acked.contains(s)).count();
    let by_node: Vec<usize> = nodes.iter().map(|n| victims.iter().filter(|v| **v == n.name).count()).collect();
    let figures = serde_json::json!({
        "seed": seed,
        "bundles_sent": bundles,
        "acknowledged": acked.len(),
        "delivered": got.len(),
        "lost": lost.len(),
        "delivered_twice": twice.len(),
        "unacknowledged_but_delivered": unacked_delivered,
        "kills": victims.len(),
        "kills_by_node": by_node,
        "seconds": started.elapsed().as_secs_f64(),
    });
    eprintln!("{label}: {figures}");
    assert!(acked.len() as u64 > bundles / 2, "most sends were acknowledged: {figures}");
    let logs: String = nodes.iter().map(|n| format!("\n{}:\n{}", n.name, tail(&n.log()))).collect();
    assert!(lost.is_empty(), "acknowledged bundles lost: {:?}…\n{figures}{logs}", &lost[..lost.len().min(20)]);
    // Duplicates are counted, not refused: a node forgets a bundle once it
    // delivered it, so a copy that a restarted upstream node sends again (it
    // had not yet recorded the forwarding) is delivered again, and a `/ws`
    // app that got a bundle just before C died gets it again after the
    // restart (RELIABILITY.md).
    if !twice.is_empty() {
        eprintln!("{label}: delivered twice: {:?}", &twice[..twice.len().min(20)]);
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().rev().take(30).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}
