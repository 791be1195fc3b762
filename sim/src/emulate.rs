//! Emulation: the scenario's contacts and messages played against real ferryd
//! processes on loopback, in compressed time — the proof that the daemon, not
//! only the model, survives disruption.
//!
//! Every node is a ferryd (`ipn:N.0`, the scenario's router, its own data
//! folder) with the TCP plugin listening on a free loopback port. Each pair
//! of nodes that ever meets gets a relay owned by ferry-sim between them; a
//! link comes up by opening the relay and asking the lower-numbered node
//! through its API to dial the other (`/peers/add`), and goes down by
//! removing that peer (`/peers/del`) and cutting every connection through the
//! relay, which then refuses new ones. Messages are sent with `/send` at their
//! (scaled) creation time and collected from every node's `/endpoint`.
//!
//! What is measured is what applications see: created, delivered, delivery
//! probability, latency and hop counts. Transfers inside the daemons are not
//! observed from outside, so those figures are absent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_core::codec;
use ferry_core::router::RouterSpec;
use serde::Serialize;

use crate::report::{mean, median, percentile};
use crate::scenario::{ipn_number, GeneratedMessages, Messages, Scenario};

/// What ferryd prints once its API listens (ferry-daemon's `LISTENING_PREFIX`;
/// this crate does not link the daemon).
const LISTENING: &str = "ferryd: api listening on ";
/// The most nodes an emulation starts.
pub const MAX_NODES: u64 = 16;
/// Bounds on waiting: ferryd start-up and one HTTP exchange.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How to emulate.
#[derive(Debug, Clone)]
pub struct Options {
    pub ferryd: PathBuf,
    pub tcp_plugin: PathBuf,
    /// Simulated seconds per real second.
    pub time_scale: f64,
    /// Data folders, configs and logs go here.
    pub dir: PathBuf,
    /// How often endpoints are polled (real time).
    pub poll: Duration,
    /// Message payloads are capped at this many bytes (the emulated links are
    /// loopback TCP; sizes do not shape the result as they do in the model).
    pub max_payload: u64,
}

/// Why an emulation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulateError {
    #[error("emulation runs at most {MAX_NODES} nodes; the scenario has {0}")]
    TooManyNodes(u64),
    #[error("the {0} router cannot be emulated (its contact plan or routes would need rescaling in time)")]
    Router(&'static str),
    #[error("time scale must be a positive number, not {0}")]
    TimeScale(f64),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("ferryd for node {node} did not start in time; see {log}")]
    Start { node: u64, log: PathBuf },
    #[error("node {node}: {request} answered {status}: {body}")]
    Api { node: u64, request: String, status: u16, body: String },
    #[error("node {node}: malformed HTTP response to {request}")]
    Http { node: u64, request: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmulateError {
    let what = what.into();
    move |source| EmulateError::Io { what, source }
}

/// The figures an emulation measures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmulatedStats {
    pub scenario: String,
    pub router: String,
    pub nodes: u64,
    pub time_scale: f64,
    pub created: u64,
    pub delivered: u64,
    pub delivery_prob: Option<f64>,
    /// Simulated seconds (real seconds × time scale).
    pub latency_avg: Option<f64>,
    pub latency_med: Option<f64>,
    pub latency_p90: Option<f64>,
    pub hopcount_avg: Option<f64>,
    pub hopcount_med: Option<u64>,
}

/// A running ferryd, killed when dropped.
struct Ferryd {
    number: u64,
    child: Child,
    api: String,
}

impl Drop for Ferryd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Ferryd {
    fn request(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), EmulateError> {
        let bad = || EmulateError::Http { node: self.number, request: path.to_owned() };
        let mut s = TcpStream::connect(&self.api).map_err(io(format!("connecting to node {}", self.number)))?;
        s.set_read_timeout(Some(HTTP_TIMEOUT)).map_err(io("socket"))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.api,
            body.len()
        );
        s.write_all(head.as_bytes()).and_then(|_| s.write_all(body)).map_err(io("sending a request"))?;
        let mut raw = vec![];
        s.read_to_end(&mut raw).map_err(io(format!("reading node {}'s answer to {path}", self.number)))?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(bad)?;
        let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad())?;
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let mut body = raw[split + 4..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = dechunk(&body).ok_or_else(bad)?;
        }
        Ok((status, body))
    }

    fn ok(&self, method: &str, path: &str, body: &[u8]) -> Result<Vec<u8>, EmulateError> {
        let (status, got) = self.request(method, path, body)?;
        if status != 200 {
            let body = String::from_utf8_lossy(&got).into_owned();
            return Err(EmulateError::Api { node: self.number, request: path.to_owned(), status, body });
        }
        Ok(got)
    }
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![];
    // Bounded: every round consumes a chunk header.
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).ok()?.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// A relay between two nodes that ferry-sim opens and cuts.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Result<Relay, EmulateError> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io("binding a relay"))?;
        let port = listener.local_addr().map_err(io("relay address"))?.port();
        let (up, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (u, st, c) = (up.clone(), stop.clone(), conns.clone());
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(a) = incoming else { continue };
                if !u.load(Ordering::SeqCst) {
                    let _ = a.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(b) = TcpStream::connect(target) else { continue };
                let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else { continue };
                if let Ok(mut list) = c.lock() {
                    list.extend(a.try_clone().ok());
                    list.extend(b.try_clone().ok());
                }
                std::thread::spawn(move || pipe(a, b2));
                std::thread::spawn(move || pipe(b, a2));
            }
        });
        Ok(Relay { port, up, stop, conns })
    }

    fn open(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        if let Ok(mut list) = self.conns.lock() {
            for s in list.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies bytes one way until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

fn free_port() -> Result<u16, EmulateError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

/// The `router` line and `[routing]` table of ferryd's config; PRoPHET's
/// times shrink with the time scale.
fn router_config(spec: &RouterSpec, scale: f64) -> Result<String, EmulateError> {
    let real = |ms: u64| ((ms as f64 / scale) as u64).max(1);
    Ok(match spec {
        RouterSpec::Epidemic => "router = \"epidemic\"\n".into(),
        RouterSpec::SprayAndWait { copies, .. } => {
            format!("router = \"{}\"\n[routing]\ncopies = {copies}\n", spec.name())
        }
        RouterSpec::Prophet(p) => {
            format!(
            "router = \"prophet\"\n[routing]\np_encounter_max = {}\np_encounter_first = {}\np_first_threshold = {}\n\
             beta = {}\ngamma = {}\ndelta = {}\ntypical_interval = \"{}\"\ntime_unit = \"{}\"\n",
            p.p_encounter_max, p.p_encounter_first, p.p_first_threshold, p.beta, p.gamma, p.delta,
            real(p.typical_interval_ms),
            real(p.time_unit_ms)
        )
        }
        other => return Err(EmulateError::Router(other.name())),
    })
}

fn start(n: u64, dir: &Path, opt: &Options, router: &str, tcp_port: u16) -> Result<Ferryd, EmulateError> {
    let node_dir = dir.join(format!("n{n}"));
    std::fs::create_dir_all(&node_dir).map_err(io(format!("creating {}", node_dir.display())))?;
    let cfg = node_dir.join("ferry.toml");
    // Top-level keys and [routing] first: after [[cla]] they would be the plugin's.
    let text = format!(
        "node_id = \"ipn:{n}.0\"\n{router}[[cla]]\npath = \"{}\"\n[cla.settings]\nlisten = [\"127.0.0.1:{tcp_port}\"]\n",
        opt.tcp_plugin.display()
    );
    std::fs::write(&cfg, text).map_err(io(format!("writing {}", cfg.display())))?;
    let log = node_dir.join("ferryd.log");
    let log_file = std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
    let mut child = Command::new(&opt.ferryd)
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(node_dir.join("data"))
        .args(["--api", "127.0.0.1:0", "--no-default-cla"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(io(format!("starting {}", opt.ferryd.display())))?;
    let Some(stdout) = child.stdout.take() else { return Err(EmulateError::Start { node: n, log }) };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end: ferryd must never block on a full pipe.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.strip_prefix(LISTENING) {
                let _ = tx.send(addr.trim().to_owned());
            }
        }
    });
    let mut node = Ferryd { number: n, child, api: String::new() };
    node.api = rx.recv_timeout(START_TIMEOUT).map_err(|_| EmulateError::Start { node: n, log })?;
    Ok(node)
}

enum Step {
    Link { a: u64, b: u64, up: bool },
    Send { msg: usize },
}

/// Plays `sc` against real ferryd processes; `say` gets progress lines.
pub fn emulate(sc: &Scenario, opt: &Options, say: &mut dyn FnMut(&str)) -> Result<EmulatedStats, EmulateError> {
    if sc.nodes > MAX_NODES {
        return Err(EmulateError::TooManyNodes(sc.nodes));
    }
    if !(opt.time_scale.is_finite() && opt.time_scale > 0.0) {
        return Err(EmulateError::TimeScale(opt.time_scale));
    }
    let router = router_config(&sc.router, opt.time_scale)?;
    // The timeline: (simulated ms, order, step). Contacts of a pair in either
    // direction are one connection, up while any of them is.
    let mut steps: Vec<(u64, usize, Step)> = vec![];
    let mut edges: Vec<(u64, u64, u64, bool)> = vec![];
    if let Some(plan) = &sc.plan {
        for c in plan.contacts() {
            let (a, b) = (ipn_number(&c.from), ipn_number(&c.to));
            edges.push((c.start.saturating_sub(sc.epoch), a.min(b), a.max(b), true));
            edges.push((c.end.saturating_sub(sc.epoch), a.min(b), a.max(b), false));
        }
    }
    for c in &sc.connections {
        edges.push((c.time_ms, c.a.min(c.b), c.a.max(c.b), c.up));
    }
    edges.sort_by_key(|e| (e.0, !e.3));
    let mut count: BTreeMap<(u64, u64), u32> = BTreeMap::new();
    for (t, a, b, up) in edges {
        let n = count.entry((a, b)).or_insert(0);
        let change = if up {
            *n += 1;
            *n == 1
        } else if *n > 0 {
            *n -= 1;
            *n == 0
        } else {
            false
        };
        if change {
            steps.push((t, steps.len(), Step::Link { a, b, up }));
        }
    }
    let messages: Vec<(u64, u64, u64, u64)> = match &sc.messages {
        Messages::Trace(m) => m.iter().map(|e| (e.time_ms, e.from, e.to, e.size)).collect(),
        Messages::Generator(g) => GeneratedMessages::new(g, sc.seed).collect(),
    };
    for (i, m) in messages.iter().enumerate() {
        steps.push((m.0, steps.len(), Step::Send { msg: i }));
    }
    steps.sort_by_key(|s| (s.0, s.1));

    std::fs::create_dir_all(&opt.dir).map_err(io(format!("creating {}", opt.dir.display())))?;
    let mut tcp_ports = vec![];
    for _ in 0..sc.nodes {
        tcp_ports.push(free_port()?);
    }
    let mut nodes = vec![];
    for n in 1..=sc.nodes {
        nodes.push(start(n, &opt.dir, opt, &router, tcp_ports[(n - 1) as usize])?);
    }
    for node in &nodes {
        node.ok("GET", "/register?1", b"")?;
    }
    say(&format!("{} ferryd processes up in {}", nodes.len(), opt.dir.display()));
    let mut relays: BTreeMap<(u64, u64), Relay> = BTreeMap::new();
    for (_, _, s) in &steps {
        if let Step::Link { a, b, .. } = s {
            if let std::collections::btree_map::Entry::Vacant(e) = relays.entry((*a, *b)) {
                let target = SocketAddr::from(([127, 0, 0, 1], tcp_ports[(*b - 1) as usize]));
                e.insert(Relay::start(target)?);
            }
        }
    }

    let scale = opt.time_scale;
    let begin = Instant::now();
    let sim_now = |begin: Instant| (begin.elapsed().as_secs_f64() * scale * 1000.0) as u64;
    let real_at = |t: u64| begin + Duration::from_secs_f64(t as f64 / 1000.0 / scale);
    let mut delivered: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    let lifetime_ms = ((sc.ttl_ms as f64 / scale) as u64).max(1000);
    let node = |n: u64| &nodes[(n - 1) as usize];
    let mut steps = steps.into_iter().peekable();
    let end = real_at(sc.duration_ms);
    // Bounded by the scenario's duration in real time.
    loop {
        let now = Instant::now();
        while let Some((t, _, _)) = steps.peek() {
            if real_at(*t) > now {
                break;
            }
            let Some((_, _, step)) = steps.next() else { break };
            match step {
                Step::Link { a, b, up } => {
                    let Some(relay) = relays.get(&(a, b)) else { continue };
                    let url = format!("/peers/{}?p=tcp://127.0.0.1:{}/{b}", if up { "add" } else { "del" }, relay.port);
                    if up {
                        relay.open();
                        node(a).ok("GET", &url, b"")?;
                    } else {
                        let _ = node(a).request("GET", &url, b"");
                        relay.cut();
                    }
                }
                Step::Send { msg } => {
                    let (_, src, dst, size) = messages[msg];
                    let mut payload = format!("ferry-sim message {msg}\n").into_bytes();
                    payload.resize(payload.len().max(size.min(opt.max_payload) as usize), b'.');
                    let path = format!("/send?dst=ipn:{dst}.1&lifetime={lifetime_ms}");
                    node(src).ok("POST", &path, &payload)?;
                }
            }
        }
        for n in &nodes {
            // Take what arrived; bounded per poll.
            for _ in 0..1000 {
                let body = n.ok("GET", "/endpoint?1", b"")?;
                if body == b"Nothing to receive" {
                    break;
                }
                let Ok(bundle) =
                    codec::decode_with(&body, &codec::DecodeOptions::strict().allow_unprotected_primary(true))
                else {
                    continue;
                };
                let text = String::from_utf8_lossy(&body[bundle.payload().data.clone()]).into_owned();
                let msg = text.strip_prefix("ferry-sim message ").and_then(|r| r.split('\n').next()?.parse().ok());
                if let Some(msg) = msg {
                    let hops = bundle.hop_count.map_or(0, |h| h.count);
                    delivered.entry(msg).or_insert((sim_now(begin), hops));
                }
            }
        }
        if Instant::now() >= end {
            break;
        }
        let next_step = steps.peek().map(|(t, _, _)| real_at(*t)).unwrap_or(end);
        let wake = (Instant::now() + opt.poll).min(next_step).min(end);
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
    say(&format!("emulated {} s in {:.1} s", sc.duration_ms / 1000, begin.elapsed().as_secs_f64()));
    drop(relays);
    drop(nodes);

    let mut latencies: Vec<u64> = delivered.iter().map(|(m, (at, _))| at.saturating_sub(messages[*m].0)).collect();
    latencies.sort_unstable();
    let mut hops: Vec<u64> = delivered.values().map(|(_, h)| *h).collect();
    hops.sort_unstable();
    let created = messages.len() as u64;
    let secs = |ms: u64| ms as f64 / 1000.0;
    Ok(EmulatedStats {
        scenario: sc.name.clone(),
        router: sc.router.name().to_owned(),
        nodes: sc.nodes,
        time_scale: scale,
        created,
        delivered: delivered.len() as u64,
        delivery_prob: (created > 0).then(|| delivered.len() as f64 / created as f64),
        latency_avg: mean(&latencies).map(|m| m / 1000.0),
        latency_med: median(&latencies).map(secs),
        latency_p90: percentile(&latencies, 90).map(secs),
        hopcount_avg: mean(&hops),
        hopcount_med: median(&hops),
    })
}
