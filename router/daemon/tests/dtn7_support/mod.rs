//! What the dtn7-rs interop tests share: finding dtn7-rs's binaries (skip or
//! fail when they are missing), a dtnd child process on loopback, ferryd nodes
//! with the TCP plugin, and bounded waits.
//!
//! dtnd runs with neighbour discovery off (`--disable_nd -i 0`: no beacons to
//! 224.0.0.26), its CLAs bound to 127.0.0.1, its HTTP API on [::1] only
//! (`-6`), an in-memory store and epidemic routing, in a temporary working
//! folder. It is killed and reaped on drop.

#![allow(dead_code)] // each test uses a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::api_support::{payload_of, Answer, Ferryd};

/// The largest body dtnd's HTTP routes take (axum's default limit).
pub const DTND_MAX_BODY: usize = 2 << 20;

/// How long one bundle may take to cross a link in these tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// The folder with dtnd, dtnsend, dtnrecv and dtnquery: `FERRY_DTN7_BIN`, or
/// where scripts/install-dtn7 puts them.
fn dtn7_bin() -> Option<PathBuf> {
    let dir = match std::env::var_os("FERRY_DTN7_BIN").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/ferry-tools/dtn7-0.21.0/bin"),
    };
    ["dtnd", "dtnsend", "dtnrecv", "dtnquery"].iter().all(|b| dir.join(b).is_file()).then_some(dir)
}

/// dtn7-rs's binaries, or `None` (with a message) when they are not
/// installed. With `FERRY_REQUIRE_DTN7` set (scripts/test sets it) a missing
/// dtn7-rs fails the test instead.
pub fn dtn7(test: &str) -> Option<PathBuf> {
    let bin = dtn7_bin();
    if bin.is_none() {
        assert!(
            std::env::var_os("FERRY_REQUIRE_DTN7").is_none(),
            "FERRY_REQUIRE_DTN7 is set but dtn7-rs is not installed (run scripts/install-dtn7, or set FERRY_DTN7_BIN)"
        );
        eprintln!("dtn7-rs not installed (scripts/install-dtn7); skipping {test}");
    }
    bin
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// Waits (bounded) until something listens on 127.0.0.1:`port`.
pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded, polling every 50 ms) until `f` holds; panics with `what`
/// and `context()` otherwise.
pub fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    loop {
        if f() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).no_proxy().build().expect("HTTP client")
}

/// A dtnd child process; killed and reaped on drop.
pub struct Dtnd {
    child: Child,
    bin: PathBuf,
    /// Its node name: the node ID is `dtn://<name>/`.
    pub name: String,
    /// HTTP API port (on [::1]).
    pub web: u16,
    /// TCPCLv4 port (on 127.0.0.1).
    pub tcp: u16,
    /// MTCP port (on 127.0.0.1).
    pub mtcp: u16,
    pub log: PathBuf,
    _workdir: tempfile::TempDir,
}

impl Dtnd {
    /// Starts dtnd `dtn://<name>/` with the endpoint `incoming` registered
    /// and `static_peers` (dtn7 URLs: `tcp://127.0.0.1:PORT/<node name>`,
    /// `mtcp://...`), and waits until its API and CLAs listen.
    pub fn start(bin: &Path, name: &str, static_peers: &[String]) -> Dtnd {
        Dtnd::start_with(bin, name, static_peers, &[])
    }

    /// As [`Dtnd::start`], with extra arguments.
    pub fn start_with(bin: &Path, name: &str, static_peers: &[String], extra: &[&str]) -> Dtnd {
        let workdir = tempfile::Builder::new().prefix("ferry-dtnd-").tempdir().expect("dtnd workdir");
        let (web, tcp, mtcp) = (free_port(), free_port(), free_port());
        let log = workdir.path().join("dtnd.log");
        let mut cmd = Command::new(bin.join("dtnd"));
        cmd.args(["-n", name, "-W"])
            .arg(workdir.path())
            .args(["-w", &web.to_string(), "-6", "-i", "0", "--disable_nd", "-r", "epidemic", "-D", "mem"])
            .args(["-C", &format!("tcp:port={tcp}:bind=127.0.0.1")])
            .args(["-C", &format!("mtcp:port={mtcp}:bind=127.0.0.1")])
            .args(["-e", "incoming"])
            .args(extra);
        for p in static_peers {
            cmd.args(["-s", p]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("dtnd log"))
            .spawn()
            .expect("start dtnd");
        let dtnd = Dtnd { child, bin: bin.to_owned(), name: name.to_owned(), web, tcp, mtcp, log, _workdir: workdir };
        wait_listening(tcp, "dtnd's TCPCL");
        wait_listening(mtcp, "dtnd's MTCP");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("::1", web)).is_err() {
            assert!(Instant::now() < deadline, "dtnd's API never listened on [::1]:{web}\n{}", dtnd.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        dtnd
    }

    pub fn node_id(&self) -> String {
        format!("dtn://{}/", self.name)
    }

    /// `tcpcl://127.0.0.1:PORT` for a Ferry `peers` entry.
    pub fn tcpcl_url(&self) -> String {
        format!("tcpcl://127.0.0.1:{}", self.tcp)
    }

    /// `mtcp://127.0.0.1:PORT/dtn://<name>/` for a Ferry `peers` entry.
    pub fn mtcp_url(&self) -> String {
        format!("mtcp://127.0.0.1:{}/{}", self.mtcp, self.node_id())
    }

    pub fn log_text(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        // The end is what matters; 10 MiB bundles make long debug lines.
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("dtnd log (tail):\n{}", tail.join("\n"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://[::1]:{}{path}", self.web)
    }

    pub fn get(&self, path: &str) -> Answer {
        let r = client().get(self.url(path)).send().unwrap_or_else(|e| panic!("dtnd GET {path}: {e}"));
        let status = r.status().as_u16();
        Answer { status, body: r.bytes().expect("body").to_vec() }
    }

    pub fn post(&self, path: &str, body: Vec<u8>) -> Answer {
        let r = client().post(self.url(path)).body(body).send().unwrap_or_else(|e| panic!("dtnd POST {path}: {e}"));
        let status = r.status().as_u16();
        Answer { status, body: r.bytes().expect("body").to_vec() }
    }

    /// Sends `payload` from dtnd to `dst`. Up to [`DTND_MAX_BODY`] through
    /// `POST /send` (dtnd builds the bundle: no primary CRC, a hop-count
    /// block); larger payloads as a bundle built the way dtnsend builds it
    /// (bp7), through dtnd's `/ws` in bundle mode, because dtnd's HTTP routes
    /// refuse bodies over axum's default limit of 2 MiB.
    pub fn send(&self, dst: &str, payload: Vec<u8>) {
        if payload.len() <= DTND_MAX_BODY {
            let a = self.post(&format!("/send?dst={dst}&lifetime=1h"), payload);
            assert_eq!(a.status, 200, "dtnd /send: {}", a.text());
            return;
        }
        let src: bp7::EndpointID = self.node_id().as_str().try_into().expect("dtnd's node ID");
        let dst: bp7::EndpointID = dst.try_into().expect("destination EID");
        let mut b = bp7::bundle::new_std_payload_bundle(src, dst, payload);
        b.set_crc(bp7::crc::CRC_32);
        let reply = self.ws_bundle(b.to_cbor());
        assert!(reply.starts_with("200"), "dtnd /ws: {reply}");
    }

    /// Sends one bundle through dtnd's `/ws` in bundle mode; its reply.
    pub fn ws_bundle(&self, bundle: Vec<u8>) -> String {
        use tokio_tungstenite::tungstenite::{connect, Message};
        let (mut ws, _) = connect(format!("ws://[::1]:{}/ws", self.web)).expect("dtnd /ws");
        let text = |ws: &mut tokio_tungstenite::tungstenite::WebSocket<_>| -> String {
            // dtnd pings every 5 s; a reply comes well within a few messages.
            for _ in 0..100 {
                match ws.read().expect("dtnd /ws read") {
                    Message::Text(t) => return t.to_string(),
                    Message::Close(_) => panic!("dtnd closed /ws"),
                    _ => {}
                }
            }
            panic!("dtnd /ws sent no reply")
        };
        ws.send(Message::text("/bundle")).expect("dtnd /ws /bundle");
        let mode = text(&mut ws);
        assert!(mode.starts_with("200"), "dtnd /ws /bundle: {mode}");
        ws.send(Message::binary(bundle)).expect("dtnd /ws bundle");
        let reply = text(&mut ws);
        let _ = ws.close(None);
        reply
    }

    /// Takes one bundle from `/endpoint?incoming`, if there is one.
    pub fn take(&self) -> Option<Vec<u8>> {
        let a = self.get("/endpoint?incoming");
        assert_eq!(a.status, 200, "dtnd /endpoint: {}", a.text());
        (a.body != b"Nothing to receive").then_some(a.body)
    }

    /// Waits (bounded) for a bundle on `incoming`; its payload.
    pub fn receive(&self, limit: Duration) -> Vec<u8> {
        let mut got = None;
        eventually(
            "a bundle at dtnd's incoming",
            limit,
            || {
                got = self.take();
                got.is_some()
            },
            || self.log_text(),
        );
        payload_of(&got.expect("received"))
    }

    /// Bundles dtnd processed, `(new, duplicates)`: its `/status/info`
    /// counters `incoming` (bundles from peers and `/push`, and those it
    /// created) and `dups` (copies of bundles it already had).
    pub fn copies_received(&self) -> (u64, u64) {
        let info = self.get("/status/info").json();
        let n = |k: &str| info[k].as_u64().unwrap_or_else(|| panic!("dtnd /status/info has no {k}: {info}"));
        (n("incoming"), n("dups"))
    }

    /// Runs one of dtn7's tools (`dtnsend`, `dtnrecv`, `dtnquery`) with
    /// `args`, `stdin` as its input, bounded in time.
    pub fn tool(&self, tool: &str, args: &[&str], stdin: &[u8]) -> Output {
        run_tool(&self.bin, tool, args, stdin)
    }
}

impl Drop for Dtnd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long one run of dtnsend, dtnrecv or dtnquery may take.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `bin/tool args` with `stdin`, killing it after [`TOOL_TIMEOUT`].
pub fn run_tool(bin: &Path, tool: &str, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin.join(tool))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {tool}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    // Written from a thread: a tool that does not read its input must not block us.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = tx.send(());
        out
    });
    if rx.recv_timeout(TOOL_TIMEOUT).is_err() {
        // SAFETY: kill(2) on our own child, which has not been reaped (the
        // waiter is still blocked in wait).
        unsafe { libc::kill(libc::pid_t::try_from(pid).expect("pid"), libc::SIGKILL) };
        let _ = waiter.join();
        panic!("{tool} {args:?} did not finish within {TOOL_TIMEOUT:?}");
    }
    let _ = writer.join();
    waiter.join().expect("waiter").unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// The target folder this test binary was built into (ferryd, the plugins).
pub fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_ferryd")).parent().expect("target/<profile>").to_path_buf()
}

pub fn tcp_plugin() -> PathBuf {
    let p = target_dir().join("libferry_cla_tcp.so");
    assert!(p.exists(), "{} is not built: run `cargo build --workspace --all-targets` first", p.display());
    p
}

/// Ports of a ferryd's TCP plugin.
pub struct FerryPorts {
    pub tcpcl: u16,
    pub mtcp: u16,
}

impl FerryPorts {
    pub fn new() -> FerryPorts {
        FerryPorts { tcpcl: free_port(), mtcp: free_port() }
    }

    /// What dtnd's `-s` takes to reach this node over TCPCL.
    pub fn dtn7_tcp(&self, name: &str) -> String {
        format!("tcp://127.0.0.1:{}/{name}", self.tcpcl)
    }

    /// What dtnd's `-s` takes to reach this node over MTCP.
    pub fn dtn7_mtcp(&self, name: &str) -> String {
        format!("mtcp://127.0.0.1:{}/{name}", self.mtcp)
    }
}

/// A ferryd `dtn://<name>/` in `dir` with the TCP plugin listening for TCPCL
/// and MTCP on `ports` and dialing `peers`; peer MRUs are not respected
/// (dtn7-rs advertises 64000 octets and takes more).
pub fn ferryd(dir: &Path, name: &str, ports: &FerryPorts, peers: &[String]) -> Ferryd {
    ferryd_with(dir, name, ports, peers, "")
}

/// [`ferryd`] with `more` appended to the plugin's settings (e.g. a
/// `[cla.settings.tls]` table).
pub fn ferryd_with(dir: &Path, name: &str, ports: &FerryPorts, peers: &[String], more: &str) -> Ferryd {
    std::fs::create_dir_all(dir).expect("test folder");
    let cfg = dir.join(format!("{name}.toml"));
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    std::fs::write(
        &cfg,
        format!(
            "node_id = \"dtn://{name}/\"\n[[cla]]\npath = \"{}\"\n[cla.settings]\nlisten = [\"127.0.0.1:{}\"]\n\
             mtcp_listen = [\"127.0.0.1:{}\"]\npeers = [{}]\nrespect_peer_transfer_mru = false\n{more}",
            tcp_plugin().display(),
            ports.tcpcl,
            ports.mtcp,
            peers.join(", ")
        ),
    )
    .expect("config file");
    let f = Ferryd::start_with(&dir.join(name), &["--config", cfg.to_str().expect("UTF-8 path")]);
    wait_listening(ports.tcpcl, "ferryd's TCPCL");
    wait_listening(ports.mtcp, "ferryd's MTCP");
    f
}

/// Takes one bundle from ferryd's `/endpoint?<svc>`, if there is one.
pub fn ferry_take(f: &Ferryd, svc: &str) -> Option<Vec<u8>> {
    let a = f.get(&format!("/endpoint?{svc}"));
    assert_eq!(a.status, 200, "ferryd /endpoint?{svc}: {}", a.text());
    (a.body != b"Nothing to receive").then_some(a.body)
}

/// Waits (bounded) for a bundle on ferryd's `svc`; its payload.
pub fn ferry_receive(f: &Ferryd, svc: &str, limit: Duration, dtnd: &Dtnd) -> Vec<u8> {
    payload_of(&ferry_receive_bundle(f, svc, limit, dtnd))
}

/// Waits (bounded) for a bundle on ferryd's `svc`; the whole bundle.
pub fn ferry_receive_bundle(f: &Ferryd, svc: &str, limit: Duration, dtnd: &Dtnd) -> Vec<u8> {
    let mut got = None;
    eventually(
        &format!("a bundle at ferryd's {svc}"),
        limit,
        || {
            got = ferry_take(f, svc);
            got.is_some()
        },
        || format!("ferryd log:\n{}\n{}", f.log_text(), dtnd.log_text()),
    );
    got.expect("received")
}

/// `POST /send` at ferryd.
pub fn ferry_send(f: &Ferryd, dst: &str, payload: Vec<u8>) {
    let a = f.post(&format!("/send?dst={dst}&lifetime=1h"), payload);
    assert_eq!(a.status, 200, "ferryd /send: {}", a.text());
}

/// Whether ferryd has a connected peer `node_id` (per `/status/peers`).
pub fn ferry_connected(f: &Ferryd, node_id: &str) -> bool {
    f.get("/status/peers").json()[node_id]["connected"] == true
}
