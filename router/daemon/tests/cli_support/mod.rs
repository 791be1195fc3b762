//! What the CLI tests share: a real ferryd on a loopback port, the real `ferry`
//! binary, and bounded waits for both.

#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long ferryd may take to print where its API listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `ferry` invocation may take.
pub const FERRY_TIMEOUT: Duration = Duration::from_secs(60);
const LISTENING: &str = ferry_daemon::server::LISTENING_PREFIX;

/// A ferryd child process; SIGKILLed on drop.
pub struct Ferryd {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub api: String,
    pub log: PathBuf,
}

impl Ferryd {
    /// Starts ferryd on `data_dir` with its API on a free loopback port; its
    /// stderr goes to `log` (appended).
    pub fn start(data_dir: &Path, log: &Path) -> Ferryd {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("create ferryd log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferryd"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--api", "127.0.0.1:0", "--no-default-cla"])
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
        let mut ferryd = Ferryd { child, api: String::new(), log: log.to_path_buf() };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => ferryd.api = format!("http://{addr}"),
            Err(_) => panic!("ferryd did not print '{LISTENING}<addr>' in time; log:\n{}", ferryd.log_tail()),
        }
        ferryd
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (Child::kill on unix), then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines of ferryd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Ferryd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking HTTP client with bounded waits.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(20))
        .no_proxy()
        .build()
        .expect("http client")
}

/// `GET /status/nodeid`, trimmed.
pub fn node_id(api: &str) -> String {
    let resp = http().get(format!("{api}/status/nodeid")).send().expect("GET /status/nodeid");
    assert!(resp.status().is_success(), "/status/nodeid: {}", resp.status());
    resp.text().expect("nodeid text").trim().to_owned()
}

/// What a `ferry` run did.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Panics with everything the run printed unless it exited 0.
    pub fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "ferry failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout_text(),
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("ferry's stdout is not JSON ({e}): {}", self.stdout_text()))
    }
}

/// Runs the real `ferry` binary with `args`, killed after [`FERRY_TIMEOUT`].
pub fn ferry(args: &[&str]) -> Run {
    ferry_with_stdin(args, None)
}

/// As [`ferry`], feeding `stdin` to it.
pub fn ferry_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env_remove("FERRY_API")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferry");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("ferry stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&input);
        });
    }
    let mut out = child.stdout.take().expect("ferry stdout");
    let mut err = child.stderr.take().expect("ferry stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = err.read_to_string(&mut buf);
        buf
    });
    let deadline = Instant::now() + FERRY_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ferry") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ferry {args:?} did not finish within {FERRY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run { status, stdout: out_reader.join().expect("stdout reader"), stderr: err_reader.join().expect("stderr reader") }
}
