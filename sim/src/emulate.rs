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
//! Routers that plan with time get their inputs in real time: PRoPHET's
//! intervals shrink by the time scale, and contact-graph routing gets the
//! scenario's contact plan rewritten for ferryd (see [`real_time_plan`]).
//! Static routes are taken as they are.
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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_core::bundle::DTN_EPOCH_UNIX_SECS;
use ferry_core::codec;
use ferry_core::contact::ContactPlan;
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
    /// Contact-graph routing without a contact plan in the scenario.
    #[error("the cgr router needs the scenario's contact plan ([contacts] plan), and there is none")]
    NoPlan,
    #[error("time scale must be a positive number, not {0}")]
    TimeScale(f64),
    /// The system clock is before 1970: no contact plan can be written.
    #[error("the system clock is before 1970")]
    Clock,
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

/// The `router` line and `[routing]` table of ferryd's config (the plan file
/// a `contact_plan` names is [`real_time_plan`]'s); PRoPHET's times shrink
/// with the time scale.
fn router_config(spec: &RouterSpec, scale: f64) -> String {
    let real = |ms: u64| ((ms as f64 / scale) as u64).max(1);
    match spec {
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
        RouterSpec::Cgr(_) => "router = \"cgr\"\n[routing]\ncontact_plan = \"plan.txt\"\n".into(),
        // Top-level keys end here: [[routes]] is an array of tables.
        RouterSpec::Static(routes) => {
            let mut text = "router = \"static\"\n".to_owned();
            for r in routes {
                let pattern = toml::Value::String(r.pattern.clone());
                text.push_str(&format!("[[routes]]\npattern = {pattern}\nvia = \"{}\"\n", r.via));
            }
            text
        }
    }
}

/// The scenario's contact plan for ferryd's contact-graph router, in real
/// time: simulated time 0 is `t0` (Unix seconds), times shrink by `scale`
/// and rates grow by it (a contact carries the volume it had). ION plans
/// count whole seconds, so starts are rounded down and ends up: ferryd's
/// router sees each contact on from no later than the emulated link comes
/// up until no earlier than it goes down. Light times are rounded to whole
/// seconds too (on loopback they only rank routes).
pub fn real_time_plan(plan: &ContactPlan, epoch: u64, scale: f64, t0: u64) -> String {
    let real_s = |dtn_ms: u64| dtn_ms.saturating_sub(epoch) as f64 / 1000.0 / scale;
    let mut text = format!("# {} s of the scenario per second; simulated time 0 is {}\n", scale, utc(t0));
    for c in plan.contacts() {
        let start = t0.saturating_add(real_s(c.start).floor() as u64);
        let end = t0.saturating_add(real_s(c.end).ceil() as u64).max(start + 1);
        let rate = ((c.rate_bps as f64 * scale).ceil() as u64).max(1);
        let (from, to) = (ipn_number(&c.from), ipn_number(&c.to));
        text.push_str(&format!("a contact {} {} {from} {to} {rate}\n", utc(start), utc(end)));
        let owlt = (c.owlt_ms as f64 / 1000.0 / scale).round() as u64;
        if owlt > 0 {
            text.push_str(&format!("a range {} {} {from} {to} {owlt}\n", utc(start), utc(end)));
        }
    }
    text
}

/// Unix seconds as ION's `yyyy/mm/dd-hh:mm:ss` (UTC); times before the DTN
/// epoch (2000) are written as the epoch.
fn utc(unix: u64) -> String {
    let unix = unix.max(DTN_EPOCH_UNIX_SECS);
    let (days, secs) = (unix / 86_400, unix % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (≥ 0 here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}/{month:02}/{day:02}-{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn start(
    n: u64,
    dir: &Path,
    opt: &Options,
    router: &str,
    plan: Option<&str>,
    tcp_port: u16,
) -> Result<Ferryd, EmulateError> {
    let node_dir = dir.join(format!("n{n}"));
    std::fs::create_dir_all(&node_dir).map_err(io(format!("creating {}", node_dir.display())))?;
    if let Some(plan) = plan {
        let path = node_dir.join("plan.txt");
        std::fs::write(&path, plan).map_err(io(format!("writing {}", path.display())))?;
    }
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
    let router = router_config(&sc.router, opt.time_scale);
    // Contact-graph routing needs the plan in real time, so the emulation's
    // time 0 is fixed before ferryd starts: whole seconds (the plan's unit)
    // far enough ahead for the nodes to come up.
    let t0 = match &sc.router {
        RouterSpec::Cgr(_) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| EmulateError::Clock)?;
            Some(now.as_secs() + 2 + sc.nodes.div_ceil(2))
        }
        _ => None,
    };
    let plan = match (&sc.router, t0) {
        (RouterSpec::Cgr(_), Some(t0)) => {
            let plan = sc.plan.as_ref().ok_or(EmulateError::NoPlan)?;
            Some(real_time_plan(plan, sc.epoch, opt.time_scale, t0))
        }
        _ => None,
    };
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
        nodes.push(start(n, &opt.dir, opt, &router, plan.as_deref(), tcp_ports[(n - 1) as usize])?);
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
    let begin = match t0 {
        // On the plan's clock: wait for its time 0, or start late and catch up.
        Some(t0) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| EmulateError::Clock)?;
            let zero = Duration::from_secs(t0);
            if zero >= now {
                std::thread::sleep(zero - now);
                Instant::now()
            } else {
                let late = now - zero;
                say(&format!("ferryd took {:.1} s longer to start than planned; catching up", late.as_secs_f64()));
                Instant::now().checked_sub(late).unwrap_or_else(Instant::now)
            }
        }
        None => Instant::now(),
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::contact::parse_utc;
    use ferry_core::eid::Eid;

    #[test]
    fn utc_writes_what_ion_plans_read() {
        // 2000-01-01, a leap day, the last second of a year, and far ahead.
        for unix in [DTN_EPOCH_UNIX_SECS, 951_782_400, 1_767_225_599, 4_102_444_800 + 86_399] {
            let text = utc(unix);
            assert_eq!(parse_utc(&text), Some((unix - DTN_EPOCH_UNIX_SECS) * 1000), "{text}");
        }
        assert_eq!(utc(951_782_400), "2000/02/29-00:00:00");
        assert_eq!(utc(1_767_225_599), "2025/12/31-23:59:59");
    }

    #[test]
    fn the_plan_for_ferryd_covers_each_contact_in_real_time_with_its_volume() {
        let text = "a contact +20 +60 1 2 1000\na contact +25 +61 2 3 500\na range +0 +100 2 3 30\n";
        let plan = ContactPlan::parse_ion(text, "plan.txt", 5_000).unwrap();
        // At 10× from 2000-01-01T00:00:10: 2 s to 6 s; 2.5 s to 6.1 s widens to 2 s to 7 s.
        let out = real_time_plan(&plan, 5_000, 10.0, DTN_EPOCH_UNIX_SECS + 10);
        let lines: Vec<&str> = out.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "a contact 2000/01/01-00:00:12 2000/01/01-00:00:16 1 2 10000",
                "a contact 2000/01/01-00:00:12 2000/01/01-00:00:17 2 3 5000",
                "a range 2000/01/01-00:00:12 2000/01/01-00:00:17 2 3 3",
            ]
        );
        let real = ContactPlan::parse_ion(&out, "real.txt", 0).unwrap();
        for (sim, emu) in plan.contacts().iter().zip(real.contacts()) {
            assert!(emu.volume() >= sim.volume(), "{emu:?} carries less than {sim:?}");
        }
        assert_eq!(real.contacts()[1].owlt_ms, 3_000);
    }

    #[test]
    fn static_routes_and_cgr_become_ferryd_config() {
        let routes = vec![ferry_core::router::StaticRoute { pattern: "ipn:3.*".into(), via: Eid::ipn_node(2) }];
        assert_eq!(
            router_config(&RouterSpec::Static(routes), 10.0),
            "router = \"static\"\n[[routes]]\npattern = \"ipn:3.*\"\nvia = \"ipn:2.0\"\n"
        );
        let cgr = RouterSpec::Cgr(Arc::new(ContactPlan::default()));
        assert_eq!(router_config(&cgr, 10.0), "router = \"cgr\"\n[routing]\ncontact_plan = \"plan.txt\"\n");
    }
}
