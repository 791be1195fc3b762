//! What the API tests share: a real ferryd on a free loopback port, started on
//! a data folder the test owns, HTTP helpers, and bounded waits.

#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_core::bundle::CreationTimestamp;
use ferry_core::codec::BundleBuilder;
use ferry_core::eid::Eid;

/// How long ferryd may take to print where its API listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long ferryd may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const LISTENING: &str = ferry_daemon::server::LISTENING_PREFIX;

/// A ferryd child process; SIGKILLed on drop.
pub struct Ferryd {
    child: Child,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub log: PathBuf,
}

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("HTTP client")
}

/// Runs ferryd with `args` and waits (bounded) for it to exit: for start-up
/// failures. Returns its exit status and stderr.
pub fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferryd"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("start ferryd");
    let status = wait_bounded(&mut child, STOP_TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("ferryd {args:?} did not exit")
    });
    (status, std::fs::read_to_string(&err).unwrap_or_default())
}

fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

impl Ferryd {
    /// Starts ferryd on `data_dir` with its API on a free loopback port.
    pub fn start(data_dir: &Path) -> Ferryd {
        Ferryd::start_with(data_dir, &[])
    }

    /// Starts ferryd on `data_dir` with extra arguments; stderr is appended to
    /// `<data_dir>/../ferryd.log`.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Ferryd {
        Ferryd::start_wrapped(data_dir, &[], extra)
    }

    /// [`Ferryd::start_with`], run through `wrapper` (a command that ends
    /// by running its arguments, e.g. `unshare -m sh -c '... && exec "$@"' sh`).
    pub fn start_wrapped(data_dir: &Path, wrapper: &[&str], extra: &[&str]) -> Ferryd {
        Ferryd::spawn(data_dir, wrapper, extra, "info,ferry_daemon=debug")
    }

    /// [`Ferryd::start_with`] with `RUST_LOG=<log_filter>` (long runs keep
    /// their logs small with "warn").
    pub fn start_logging(data_dir: &Path, log_filter: &str, extra: &[&str]) -> Ferryd {
        Ferryd::spawn(data_dir, &[], extra, log_filter)
    }

    fn spawn(data_dir: &Path, wrapper: &[&str], extra: &[&str], log_filter: &str) -> Ferryd {
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("create ferryd log");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_ferryd"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_ferryd")),
        };
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--api", "127.0.0.1:0", "--no-default-cla"])
            .args(extra)
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("start ferryd");
        let stdout = child.stdout.take().expect("ferryd stdout");
        let (tx, rx) = mpsc::channel();
        // Keep reading to the end: ferryd must never block on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix(LISTENING) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let mut ferryd = Ferryd { child, addr: String::new(), log };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => ferryd.addr = addr,
            Err(_) => {
                let log = ferryd.log_text();
                panic!("ferryd did not print '{LISTENING}<addr>' in time; log:\n{log}")
            }
        }
        ferryd
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> Answer {
        let r = client().get(self.url(path)).send().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        Answer { status, body: r.bytes().expect("body").to_vec() }
    }

    pub fn post(&self, path: &str, body: Vec<u8>) -> Answer {
        let r = client().post(self.url(path)).body(body).send().unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        Answer { status, body: r.bytes().expect("body").to_vec() }
    }

    /// GET that must answer 200; returns the text.
    pub fn get_ok(&self, path: &str) -> String {
        let a = self.get(path);
        assert_eq!(a.status, 200, "GET {path}: {}", a.text());
        a.text()
    }

    pub fn node_id(&self) -> Eid {
        self.get_ok("/status/nodeid").trim().parse().expect("node ID")
    }

    pub fn bundle_ids(&self) -> Vec<String> {
        serde_json::from_value(self.get("/status/bundles").json()).expect("list of bundle IDs")
    }

    /// Waits (bounded) until `f` holds.
    pub fn eventually(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; log:\n{}", self.log_text());
    }

    /// Waits (bounded) for one bundle on the registered endpoint `svc`
    /// (polling `/endpoint`) and returns its payload.
    #[allow(dead_code)] // not every test binary receives
    pub fn receive(&self, svc: &str, limit: Duration) -> Vec<u8> {
        let mut got = None;
        self.eventually(&format!("a bundle on {svc}"), limit, || {
            let a = self.get(&format!("/endpoint?{svc}"));
            if a.status == 200 && a.body != b"Nothing to receive" {
                got = Some(payload_of(&a.body));
                true
            } else {
                false
            }
        });
        got.expect("received")
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on a child we spawned and have not reaped yet.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM ferryd");
    }

    /// Waits (bounded) for ferryd to exit.
    pub fn wait_exit(mut self) -> ExitStatus {
        match wait_bounded(&mut self.child, STOP_TIMEOUT) {
            Some(status) => status,
            None => panic!("ferryd did not exit; log:\n{}", self.log_text()),
        }
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn terminate(self) -> ExitStatus {
        self.sigterm();
        self.wait_exit()
    }
}

impl Drop for Ferryd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A valid bundle from another node, created now.
pub fn bundle(src: &str, dst: &str, seq: u64, lifetime_ms: u64, payload: &[u8]) -> Vec<u8> {
    let now_dtn =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_millis()
            as u64
            - 946_684_800_000;
    BundleBuilder::new(
        src.parse().expect("source EID"),
        dst.parse().expect("destination EID"),
        CreationTimestamp { time: now_dtn, seq },
        lifetime_ms,
    )
    .build(payload)
}

/// The payload of a bundle.
pub fn payload_of(bytes: &[u8]) -> Vec<u8> {
    // Bundles come back as they were stored, also without a primary CRC (dtn7-style).
    let b = ferry_core::node::decode_stored(bytes).expect("a valid bundle");
    bytes[b.payload().data.clone()].to_vec()
}

/// Bytes that are not a bundle, of every value.
pub fn binary_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 256) as u8).collect()
}

/// The TCP plugin, built next to ferryd (`cargo build --workspace`).
pub fn tcp_plugin() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_ferryd")).parent().expect("target dir").join("libferry_cla_tcp.so");
    assert!(p.exists(), "{} is not built: run `cargo build --workspace` first", p.display());
    p
}

/// A TCP port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}
