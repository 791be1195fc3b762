//! What the pty tests share: a test host that records every callback and
//! answers verdicts like a node would, and a relay between two real
//! pseudo-terminals that can corrupt, drop, pace, inject and "pull the cable",
//! with each side's device reached through a symlink so an adapter can be
//! unplugged and plugged back in.

#![allow(dead_code)] // each test file uses a different part

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_cla_abi::host::{HostCallbacks, Instance, Plugin};
use ferry_cla_abi::{Outcome, PeerUp, Verdict, LOG_WARN};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::{self, OptionalActions};

/// The longest any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(60);

/// Short timers, so that the tests take seconds.
pub const FAST: &str = "ack_timeout_ms = 200\nmax_retries = 4\nkeepalive_secs = 1\n\
                        hello_interval_ms = 100\nreopen_min_ms = 50\nreopen_max_secs = 1\n";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn in_process() -> Arc<Plugin> {
    Plugin::in_process(ferry_cla_serial::descriptor()).expect("in-process descriptor")
}

/// The plugin as ferryd loads it: the cdylib cargo built for this test run.
pub fn dlopened() -> Arc<Plugin> {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let candidates: Vec<PathBuf> =
        [Some(deps), deps.parent()].into_iter().flatten().map(|d| d.join("libferry_cla_serial.so")).collect();
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

// ----- the test host -------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub enum Ev {
    Up { peer: u64, node_id: String, address: String, mtu: Option<u64>, rate: Option<u64> },
    Down { peer: u64 },
    Received { peer: u64, token: u64, bundle: Vec<u8> },
    Done { id: u64, outcome: Outcome },
    Log { level: i32, msg: String },
}

/// How the host answers received bundles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Answer {
    /// Like the node: `Accepted` the first time, `Duplicate` after;
    /// `Invalid` for bundles that start with "junk".
    Node,
    /// No verdict: the test gives it.
    Hold,
}

pub struct TestHost {
    pub name: String,
    events: Mutex<Vec<Ev>>,
    changed: Condvar,
    answer: Mutex<Answer>,
    /// Bundles answered `Accepted`, in order.
    accepted: Mutex<Vec<Vec<u8>>>,
    /// Set once the instance exists, for verdicts given from the callback.
    instance: Mutex<Option<std::sync::Weak<Instance>>>,
}

impl TestHost {
    pub fn events(&self) -> Vec<Ev> {
        lock(&self.events).clone()
    }

    fn push(&self, ev: Ev) {
        lock(&self.events).push(ev);
        self.changed.notify_all();
    }

    /// Waits (at most [`WAIT`]) until `f` finds what it looks for.
    pub fn wait<T>(&self, what: &str, mut f: impl FnMut(&[Ev]) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        let mut events = lock(&self.events);
        loop {
            if let Some(t) = f(&events) {
                return t;
            }
            let now = Instant::now();
            if now >= deadline {
                let tail = format!("{:#?}", events.iter().rev().take(30).rev().collect::<Vec<_>>());
                drop(events);
                panic!("{}: timed out waiting for {what}; last events: {tail}", self.name);
            }
            events = self.changed.wait_timeout(events, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    pub fn warnings(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Log { level, msg } if level <= LOG_WARN => Some(msg),
                _ => None,
            })
            .collect()
    }

    pub fn outcomes(&self, id: u64) -> Vec<Outcome> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Done { id: i, outcome } if i == id => Some(outcome),
                _ => None,
            })
            .collect()
    }

    pub fn received(&self) -> Vec<(u64, u64, Vec<u8>)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Ev::Received { peer, token, bundle } => Some((peer, token, bundle)),
                _ => None,
            })
            .collect()
    }

    pub fn accepted(&self) -> Vec<Vec<u8>> {
        lock(&self.accepted).clone()
    }

    pub fn ups(&self) -> Vec<Ev> {
        self.events().into_iter().filter(|e| matches!(e, Ev::Up { .. })).collect()
    }

    pub fn downs(&self) -> usize {
        self.events().iter().filter(|e| matches!(e, Ev::Down { .. })).count()
    }
}

impl HostCallbacks for TestHost {
    fn bundle_received(&self, peer: u64, bundle: &[u8], token: u64) {
        self.push(Ev::Received { peer, token, bundle: bundle.to_vec() });
        if *lock(&self.answer) == Answer::Hold {
            return;
        }
        let verdict = if bundle.starts_with(b"junk") {
            Verdict::Invalid
        } else {
            let mut accepted = lock(&self.accepted);
            if accepted.iter().any(|b| b == bundle) {
                Verdict::Duplicate
            } else {
                accepted.push(bundle.to_vec());
                Verdict::Accepted
            }
        };
        // From the callback itself, as a host may: the plugin must not deadlock.
        let inst = lock(&self.instance).as_ref().and_then(|w| w.upgrade());
        if let Some(inst) = inst {
            inst.verdict(token, verdict);
        }
    }
    fn peer_up(&self, peer: u64, info: PeerUp<'_>) {
        self.push(Ev::Up {
            peer,
            node_id: info.node_id.to_owned(),
            address: info.address.to_owned(),
            mtu: info.mtu,
            rate: info.rate_bps,
        });
    }
    fn peer_down(&self, peer: u64) {
        self.push(Ev::Down { peer });
    }
    fn transmit_done(&self, id: u64, outcome: Outcome) {
        self.push(Ev::Done { id, outcome });
    }
    fn log(&self, level: i32, msg: &str) {
        self.push(Ev::Log { level, msg: msg.to_owned() });
    }
}

/// A running plugin instance with its host.
pub struct Node {
    pub host: Arc<TestHost>,
    inst: Option<Arc<Instance>>,
}

impl Node {
    pub fn start(plugin: &Arc<Plugin>, node_id: &str, settings: &str) -> Node {
        Node::try_start(plugin, node_id, settings).unwrap_or_else(|e| panic!("{node_id}: {e}"))
    }

    pub fn try_start(plugin: &Arc<Plugin>, node_id: &str, settings: &str) -> Result<Node, String> {
        let host = Arc::new(TestHost {
            name: node_id.to_owned(),
            events: Mutex::new(Vec::new()),
            changed: Condvar::new(),
            answer: Mutex::new(Answer::Node),
            accepted: Mutex::new(Vec::new()),
            instance: Mutex::new(None),
        });
        let inst = Arc::new(plugin.instantiate(node_id, settings, host.clone()).map_err(|e| e.to_string())?);
        *lock(&host.instance) = Some(Arc::downgrade(&inst));
        inst.start().map_err(|e| e.to_string())?;
        Ok(Node { host, inst: Some(inst) })
    }

    pub fn inst(&self) -> &Instance {
        self.inst.as_ref().expect("running")
    }

    pub fn set_answer(&self, a: Answer) {
        *lock(&self.host.answer) = a;
    }

    pub fn transmit(&self, peer: u64, id: u64, bundle: &[u8]) {
        self.inst().transmit(peer, id, bundle).unwrap_or_else(|e| panic!("transmit {id}: {e}"));
    }

    /// The peer handle of the `n`th session (1-based) once it is up.
    pub fn wait_up(&self, n: usize) -> u64 {
        self.host.wait(&format!("session {n} up"), |evs| {
            evs.iter().filter_map(|e| if let Ev::Up { peer, .. } = e { Some(*peer) } else { None }).nth(n - 1)
        })
    }

    pub fn wait_down(&self, n: usize) {
        self.host.wait(&format!("{n} sessions down"), |evs| {
            (evs.iter().filter(|e| matches!(e, Ev::Down { .. })).count() >= n).then_some(())
        })
    }

    pub fn wait_done(&self, id: u64) -> Outcome {
        self.host.wait(&format!("transmit {id} done"), |evs| {
            evs.iter().find_map(|e| match e {
                Ev::Done { id: i, outcome } if *i == id => Some(*outcome),
                _ => None,
            })
        })
    }

    pub fn wait_received(&self, n: usize) -> Vec<(u64, u64, Vec<u8>)> {
        self.host.wait(&format!("{n} bundles"), |evs| {
            let got: Vec<_> = evs
                .iter()
                .filter_map(|e| match e {
                    Ev::Received { peer, token, bundle } => Some((*peer, *token, bundle.clone())),
                    _ => None,
                })
                .collect();
            (got.len() >= n).then_some(got)
        })
    }

    pub fn wait_log(&self, needle: &str) -> String {
        self.host.wait(&format!("a log line with {needle:?}"), |evs| {
            evs.iter().find_map(|e| match e {
                Ev::Log { msg, .. } if msg.contains(needle) => Some(msg.clone()),
                _ => None,
            })
        })
    }

    /// Stops and destroys the instance; returns the host for inspection.
    pub fn stop(mut self) -> Arc<TestHost> {
        if let Some(inst) = self.inst.take() {
            inst.stop();
        }
        self.host.clone()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(inst) = self.inst.take() {
            inst.stop();
        }
    }
}

// ----- pseudo-terminals and the relay ----------------------------------------------

/// One pseudo-terminal: the master the relay uses, and the slave kept open by
/// the test (so the master never sees a hang-up while the plugin reopens).
pub struct Pty {
    master: OwnedFd,
    _slave: OwnedFd,
    pub slave_path: PathBuf,
}

impl Pty {
    pub fn open() -> Pty {
        let master =
            rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
        rustix::pty::grantpt(&master).expect("grantpt");
        rustix::pty::unlockpt(&master).expect("unlockpt");
        let name = rustix::pty::ptsname(&master, Vec::new()).expect("ptsname");
        let slave_path = PathBuf::from(name.to_str().expect("pts path"));
        let slave = rustix::fs::open(&slave_path, OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())
            .expect("slave");
        // Raw from the start: no echo of what the relay writes before the
        // plugin opens its end.
        let mut t = termios::tcgetattr(&slave).expect("tcgetattr");
        t.make_raw();
        termios::tcsetattr(&slave, OptionalActions::Now, &t).expect("tcsetattr");
        let flags = rustix::fs::fcntl_getfl(&master).expect("getfl");
        rustix::fs::fcntl_setfl(&master, flags | OFlags::NONBLOCK).expect("setfl");
        Pty { master, _slave: slave, slave_path }
    }
}

/// What the relay does to the bytes, per direction or both.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Per million bytes: one bit flipped.
    pub corrupt: u64,
    /// Per million bytes: the byte vanishes.
    pub drop: u64,
    /// Nothing passes; what is sent meanwhile is lost (a pulled cable).
    pub cut: bool,
    /// Bytes per second each way (a real line's speed); 0: as fast as the ptys go.
    pub pace: u64,
}

struct RelayState {
    ends: [Option<Pty>; 2],
    faults: Faults,
    /// Bytes to write into side i (as if the other side had sent them).
    inject: [Vec<u8>; 2],
    /// Bytes read from side i, waiting to be written to the other side.
    pending: [Vec<u8>; 2],
    /// Bytes carried from side i to the other.
    carried: [u64; 2],
}

/// Two ptys joined by a relay thread. Side 0's device is `dir/a.tty`, side
/// 1's `dir/b.tty` (symlinks to the slaves).
pub struct Relay {
    state: Arc<Mutex<RelayState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub dir: tempfile::TempDir,
}

impl Relay {
    pub fn new() -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = Arc::new(Mutex::new(RelayState {
            ends: [None, None],
            faults: Faults::default(),
            inject: [Vec::new(), Vec::new()],
            pending: [Vec::new(), Vec::new()],
            carried: [0, 0],
        }));
        let mut relay = Relay { state: state.clone(), stop: Arc::new(AtomicBool::new(false)), thread: None, dir };
        relay.plug(0);
        relay.plug(1);
        let stop = relay.stop.clone();
        relay.thread = Some(std::thread::spawn(move || run_relay(&state, &stop)));
        relay
    }

    /// The device path of side `i`.
    pub fn device(&self, i: usize) -> PathBuf {
        self.dir.path().join(if i == 0 { "a.tty" } else { "b.tty" })
    }

    /// Settings for the plugin on side `i`: [`FAST`], overridden by `extra`.
    pub fn settings(&self, i: usize, extra: &str) -> String {
        let key = |line: &str| line.split('=').next().unwrap_or("").trim().to_owned();
        let overridden: Vec<String> = extra.lines().map(key).collect();
        let fast: String =
            FAST.lines().filter(|l| !overridden.contains(&key(l))).map(|l| format!("{}\n", l.trim())).collect();
        format!("device = \"{}\"\n{fast}{extra}", self.device(i).display())
    }

    pub fn set_faults(&self, f: Faults) {
        lock(&self.state).faults = f;
    }

    pub fn faults(&self) -> Faults {
        lock(&self.state).faults.clone()
    }

    /// Writes raw bytes into side `i`'s line, as if its peer had sent them.
    pub fn inject(&self, i: usize, bytes: &[u8]) {
        lock(&self.state).inject[i].extend_from_slice(bytes);
    }

    /// Bytes carried each way so far.
    pub fn carried(&self) -> [u64; 2] {
        lock(&self.state).carried
    }

    /// Unplugs side `i`'s adapter: its pty is closed (the plugin sees a
    /// hang-up) and the device path disappears.
    pub fn unplug(&self, i: usize) {
        let _ = std::fs::remove_file(self.device(i));
        let mut s = lock(&self.state);
        s.ends[i] = None;
        s.pending = [Vec::new(), Vec::new()];
    }

    /// Plugs a new adapter in on side `i`: a new pty behind the same path.
    pub fn plug(&self, i: usize) {
        let pty = Pty::open();
        let tmp = self.dir.path().join(format!("link{i}.tmp"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&pty.slave_path, &tmp).expect("symlink");
        std::fs::rename(&tmp, self.device(i)).expect("rename symlink");
        lock(&self.state).ends[i] = Some(pty);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_relay(state: &Mutex<RelayState>, stop: &AtomicBool) {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut buf = vec![0u8; 64 * 1024];
    let started = Instant::now();
    let mut budget_at = [started; 2];
    while !stop.load(Ordering::Acquire) {
        let mut s = lock(state);
        let s = &mut *s;
        // Wait (briefly) for either master to have bytes or room.
        {
            let mut fds: Vec<PollFd<'_>> = Vec::new();
            for (i, end) in s.ends.iter().enumerate() {
                if let Some(p) = end {
                    let mut ev = PollFlags::IN;
                    if !s.pending[1 - i].is_empty() || !s.inject[i].is_empty() {
                        ev |= PollFlags::OUT;
                    }
                    fds.push(PollFd::new(&p.master, ev));
                }
            }
            let ts = Timespec { tv_sec: 0, tv_nsec: 5_000_000 };
            if fds.is_empty() {
                drop(fds);
                std::thread::sleep(Duration::from_millis(5));
            } else {
                let _ = rustix::event::poll(&mut fds, Some(&ts));
            }
        }
        for (i, budget_at) in budget_at.iter_mut().enumerate() {
            // Read from side i (bounded by the pacing budget).
            let Some(p) = &s.ends[i] else { continue };
            let mut room = buf.len();
            if s.faults.pace > 0 {
                let now = Instant::now();
                let earned = now.duration_since(*budget_at).as_secs_f64() * s.faults.pace as f64;
                room = room.min(earned as usize);
                if room == 0 {
                    continue;
                }
            }
            match rustix::io::read(&p.master, &mut buf[..room]) {
                Ok(n) if n > 0 => {
                    if s.faults.pace > 0 {
                        let spent = Duration::from_secs_f64(n as f64 / s.faults.pace as f64);
                        // No credit for idle time beyond 10 ms: a line does not save up.
                        *budget_at = (*budget_at + spent).max(Instant::now() - Duration::from_millis(10));
                    }
                    if s.faults.cut {
                        continue;
                    }
                    s.carried[i] += n as u64;
                    for &b in &buf[..n] {
                        let mut next = || {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            rng % 1_000_000
                        };
                        if next() < s.faults.drop {
                            continue;
                        }
                        let flip = next() < s.faults.corrupt;
                        let bit = next() % 8;
                        s.pending[i].push(if flip { b ^ (1 << bit) } else { b });
                    }
                }
                _ => {}
            }
        }
        for i in 0..2 {
            // Write what side 1-i sent, and injected bytes, into side i.
            let Some(p) = &s.ends[i] else { continue };
            for queue in [&mut s.inject[i], &mut s.pending[1 - i]] {
                if queue.is_empty() {
                    continue;
                }
                if let Ok(n) = rustix::io::write(p.master.as_fd(), queue) {
                    queue.drain(..n);
                }
            }
        }
    }
}

/// True when `haystack` contains `needle` as a contiguous run.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Waits (bounded) for a condition outside the host's events.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}
