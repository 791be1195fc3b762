//! A test host for the TCP plugin: records every callback, answers verdicts
//! from a thread of its own (after a delay, or never), and finds the
//! plugin's bound addresses in its log.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_cla_abi::host::{HostCallbacks, Instance, Plugin};
use ferry_cla_abi::{Outcome, PeerUp, Verdict, LOG_WARN};

/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// The plugin linked into the test.
pub fn in_process() -> Arc<Plugin> {
    Plugin::in_process(ferry_cla_tcp::descriptor()).expect("in-process descriptor")
}

/// The plugin as ferryd loads it: the cdylib cargo built for this test run,
/// found from this test's path (target/<profile>/deps/plugin-<hash>).
/// `cargo test` leaves it in target/<profile>/deps; `cargo build` copies it
/// up to target/<profile>.
pub fn dlopened() -> Arc<Plugin> {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let candidates: Vec<PathBuf> =
        [Some(deps), deps.parent()].into_iter().flatten().map(|d| d.join("libferry_cla_tcp.so")).collect();
    let path = candidates.iter().find(|p| p.exists()).unwrap_or_else(|| panic!("cdylib not built: {candidates:?}"));
    Plugin::load(path).expect("load the cdylib")
}

/// Deterministic bytes standing in for a bundle (the plugin does not look inside).
pub fn bundle(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[derive(Clone, PartialEq)]
pub enum Ev {
    Up { peer: u64, node_id: String, address: String, mtu: Option<u64> },
    Down { peer: u64 },
    Received { peer: u64, token: u64, bundle: Vec<u8> },
    Done { id: u64, outcome: Outcome },
    Log { level: i32, msg: String },
}

impl std::fmt::Debug for Ev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ev::Up { peer, node_id, address, mtu } => write!(f, "Up({peer} {node_id} {address} mtu={mtu:?})"),
            Ev::Down { peer } => write!(f, "Down({peer})"),
            Ev::Received { peer, token, bundle } => {
                write!(f, "Received(peer {peer} token {token}, {} B)", bundle.len())
            }
            Ev::Done { id, outcome } => write!(f, "Done({id} {outcome:?})"),
            Ev::Log { level, msg } => write!(f, "Log({level} {msg})"),
        }
    }
}

/// How the host answers received bundles.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// This verdict, from the verdict thread, after this delay.
    After(Duration, Verdict),
    /// No verdict: the test gives it.
    Hold,
}

pub struct TestHost {
    pub name: String,
    events: Mutex<Vec<Ev>>,
    changed: Condvar,
    answer: Mutex<Answer>,
    verdicts: Mutex<Option<mpsc::Sender<(Instant, u64, Verdict)>>>,
}

impl TestHost {
    pub fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, ev: Ev) {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(ev);
        self.changed.notify_all();
    }

    /// Waits (at most [`WAIT`]) until `f` finds what it looks for in the events.
    pub fn wait<T>(&self, what: &str, mut f: impl FnMut(&[Ev]) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(t) = f(&events) {
                return t;
            }
            let now = Instant::now();
            if now >= deadline {
                let tail = format!("{:#?}", events.iter().rev().take(40).rev().collect::<Vec<_>>());
                drop(events);
                panic!("{}: timed out waiting for {what}; last events: {tail}", self.name);
            }
            events = self.changed.wait_timeout(events, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Log messages at warning level or worse.
    pub fn warnings(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Log { level, msg } if level <= LOG_WARN => Some(msg),
                _ => None,
            })
            .collect()
    }

    /// Peers up now: (handle, node ID).
    pub fn peers(&self) -> Vec<(u64, String)> {
        peers_in(&self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Outcomes reported for transmit `id`.
    pub fn outcomes(&self, id: u64) -> Vec<Outcome> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Done { id: i, outcome } if i == id => Some(outcome),
                _ => None,
            })
            .collect()
    }

    /// Bundles received so far, in order: (peer, token, bytes).
    pub fn received(&self) -> Vec<(u64, u64, Vec<u8>)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Received { peer, token, bundle } => Some((peer, token, bundle)),
                _ => None,
            })
            .collect()
    }
}

/// Peers up after `evs`: (handle, node ID).
pub fn peers_in(evs: &[Ev]) -> Vec<(u64, String)> {
    let mut up = Vec::new();
    for e in evs {
        match e {
            Ev::Up { peer, node_id, .. } => up.push((*peer, node_id.clone())),
            Ev::Down { peer } => up.retain(|(p, _)| p != peer),
            _ => {}
        }
    }
    up
}

impl HostCallbacks for TestHost {
    fn bundle_received(&self, peer: u64, bundle: &[u8], token: u64) {
        self.push(Ev::Received { peer, token, bundle: bundle.to_vec() });
        if let Answer::After(delay, verdict) = *self.answer.lock().unwrap_or_else(|e| e.into_inner()) {
            if let Some(tx) = &*self.verdicts.lock().unwrap_or_else(|e| e.into_inner()) {
                let _ = tx.send((Instant::now() + delay, token, verdict));
            }
        }
    }
    fn peer_up(&self, peer: u64, info: PeerUp<'_>) {
        self.push(Ev::Up { peer, node_id: info.node_id.into(), address: info.address.into(), mtu: info.mtu });
    }
    fn peer_down(&self, peer: u64) {
        self.push(Ev::Down { peer });
    }
    fn transmit_done(&self, id: u64, outcome: Outcome) {
        self.push(Ev::Done { id, outcome });
    }
    fn log(&self, level: i32, msg: &str) {
        if level <= LOG_WARN {
            eprintln!("[{}] level {level}: {msg}", self.name);
        }
        self.push(Ev::Log { level, msg: msg.into() });
    }
}

/// One plugin instance with its test host.
pub struct Node {
    pub node_id: String,
    pub host: Arc<TestHost>,
    inst: Option<Arc<Instance>>,
    worker: Option<JoinHandle<()>>,
}

impl Node {
    /// Instantiates and starts the plugin; panics on error.
    pub fn start(plugin: &Arc<Plugin>, node_id: &str, settings: &str) -> Node {
        Node::try_start(plugin, node_id, settings).unwrap_or_else(|e| panic!("{node_id}: {e}"))
    }

    pub fn try_start(plugin: &Arc<Plugin>, node_id: &str, settings: &str) -> Result<Node, String> {
        let (tx, rx) = mpsc::channel::<(Instant, u64, Verdict)>();
        let host = Arc::new(TestHost {
            name: node_id.into(),
            events: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            answer: Mutex::new(Answer::After(Duration::ZERO, Verdict::Accepted)),
            verdicts: Mutex::new(Some(tx)),
        });
        let inst = Arc::new(plugin.instantiate(node_id, settings, host.clone()).map_err(|e| e.to_string())?);
        let weak: Weak<Instance> = Arc::downgrade(&inst);
        // Verdicts come from another thread, as the daemon's store would give them.
        let worker = std::thread::spawn(move || {
            while let Ok((at, token, verdict)) = rx.recv() {
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                if let Some(inst) = weak.upgrade() {
                    inst.verdict(token, verdict);
                }
            }
        });
        let node = Node { node_id: node_id.into(), host, inst: Some(inst), worker: Some(worker) };
        node.inst().start().map_err(|e| e.to_string())?;
        Ok(node)
    }

    pub fn inst(&self) -> &Instance {
        self.inst.as_ref().expect("running")
    }

    pub fn set_answer(&self, answer: Answer) {
        *self.host.answer.lock().unwrap_or_else(|e| e.into_inner()) = answer;
    }

    /// The bound address of the first `scheme` listener, from the log.
    pub fn addr(&self, scheme: &str) -> SocketAddr {
        let prefix = format!("listening on {scheme}://");
        self.host.wait(&prefix, |evs| {
            evs.iter().find_map(|e| match e {
                Ev::Log { msg, .. } => msg.strip_prefix(&prefix).and_then(|a| a.parse().ok()),
                _ => None,
            })
        })
    }

    pub fn tcpcl_addr(&self) -> SocketAddr {
        self.addr("tcpcl")
    }

    /// Waits for a peer with `node_id` to be up; its handle.
    pub fn wait_peer(&self, node_id: &str) -> u64 {
        self.host.wait(&format!("peer {node_id} up"), |evs| {
            peers_in(evs).into_iter().find(|(_, n)| n == node_id).map(|(p, _)| p)
        })
    }

    /// A peer with `node_id` other than `old`.
    pub fn wait_new_peer(&self, node_id: &str, old: u64) -> u64 {
        self.host.wait(&format!("a new peer {node_id} up"), |evs| {
            peers_in(evs).into_iter().find(|(p, n)| n == node_id && *p != old).map(|(p, _)| p)
        })
    }

    pub fn wait_down(&self, peer: u64) {
        self.host.wait(&format!("peer {peer} down"), |evs| evs.contains(&Ev::Down { peer }).then_some(()));
    }

    pub fn transmit(&self, peer: u64, id: u64, bytes: &[u8]) {
        self.inst().transmit(peer, id, bytes).unwrap_or_else(|e| panic!("{}: transmit {id}: {e}", self.node_id));
    }

    /// Waits for the outcome of transmit `id`.
    pub fn wait_done(&self, id: u64) -> Outcome {
        self.host.wait(&format!("outcome of transmit {id}"), |evs| {
            evs.iter().find_map(|e| match e {
                Ev::Done { id: i, outcome } if *i == id => Some(*outcome),
                _ => None,
            })
        })
    }

    /// Waits for `n` received bundles; returns them all.
    pub fn wait_received(&self, n: usize) -> Vec<(u64, u64, Vec<u8>)> {
        self.host.wait(&format!("{n} received bundles"), |evs| {
            (evs.iter().filter(|e| matches!(e, Ev::Received { .. })).count() >= n).then_some(())
        });
        self.host.received()
    }

    /// Stops and destroys the instance; the host stays for inspection.
    pub fn stop(mut self) -> Arc<TestHost> {
        self.shut_down();
        self.host.clone()
    }

    fn shut_down(&mut self) {
        if let Some(inst) = self.inst.take() {
            inst.stop();
            drop(inst);
        }
        self.host.verdicts.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A free loopback port (bound and released; good enough on a test machine).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Settings with a loopback TCPCL listener on a port of the system's choosing.
pub const LOOPBACK: &str = "listen = [\"127.0.0.1:0\"]\n";
