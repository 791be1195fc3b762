//! `ferry bench ingest`: how fast ferryd takes bundles into its durable store.
//!
//! Bundles are built here (unique creation timestamps, CRC-32C, addressed to a
//! node that is not there, so they stay stored) and pushed through the API with
//! many requests in flight, so that the store's group commit has something to
//! group. A bundle counts once ferryd acknowledged it, and ferryd acknowledges
//! only what is on disk. Nothing is deleted and nothing expires during a run.
//!
//! Two ways in:
//! - `http`: `POST /push`, one bundle per request, over a pool of keep-alive
//!   connections (HTTP/1.1 answers in order, so in-flight requests = connections);
//! - `ws`: `/ws` in dtn7's `/bundle` mode, binary frames pipelined over a few
//!   connections, each frame acknowledged with a text reply.
//!
//! With `--spawn`, the bench starts its own ferryd (the binary next to this
//! one) on a fresh data folder and a free loopback port, reports its memory
//! (VmHWM, the peak resident set) and CPU time, and stops it at the end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use ferry_core::bundle::CrcType;
use ferry_core::codec::BundleBuilder;
use ferry_core::{CreationTimestamp, Eid};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use super::fmt::dtn_now;

/// How long a spawned ferryd may take to say where its API listens.
pub(super) const SPAWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The line ferryd prints on stdout once its API is up.
pub(super) const LISTENING: &str = crate::server::LISTENING_PREFIX;
/// Bytes of payload in flight at most, whatever the concurrency: large bundles
/// get fewer requests in flight so that the bench measures the store, not how
/// much memory both sides can throw at buffers.
pub(super) const MAX_IN_FLIGHT_BYTES: u64 = 32 << 20;
/// Lifetime of bench bundles: long enough that none expires during a run.
pub(super) const LIFETIME_MS: u64 = 24 * 3600 * 1000;
/// Extra time, past `--max-time`, for the answers still outstanding.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// `POST /push`, one bundle per request, many keep-alive connections.
    Http,
    /// dtn7's WebSocket `/bundle` mode, frames pipelined.
    Ws,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::Http => "http",
            Via::Ws => "ws",
        }
    }
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Start a private ferryd (next to this binary) on a temporary data folder
    /// and a free loopback port instead of using --api; stop it at the end.
    #[arg(long)]
    pub spawn: bool,
    /// The ferryd binary for --spawn.
    #[arg(long, value_name = "PATH", requires = "spawn")]
    pub ferryd: Option<PathBuf>,
    /// Bundles per payload size (default: about 50 MB of payload, 200 to 20,000 bundles).
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Payload sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,10240,1048576")]
    pub sizes: Vec<u64>,
    /// Bundles in flight at once (http: connections; ws: across all connections).
    #[arg(long, short = 'c', default_value_t = 128)]
    pub concurrency: u64,
    /// WebSocket connections for --via ws.
    #[arg(long, default_value_t = 4)]
    pub connections: u64,
    /// How bundles go in.
    #[arg(long, value_enum, default_value_t = Via::Ws)]
    pub via: Via,
    /// Stop pushing one size after this long, even if not all bundles went in.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub max_time: String,
}

/// One payload size's run.
struct Phase {
    payload_bytes: u64,
    count: u64,
    in_flight: u64,
    /// Sequence numbers `seq_base..seq_base + count` are this phase's.
    seq_base: u64,
}

/// What a phase achieved.
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) acked: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) first_error: Mutex<Option<String>>,
}

impl Outcome {
    pub(super) fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(why);
        }
    }
}

/// The bundles' fixed parts.
pub(super) struct Template {
    pub(super) source: Eid,
    pub(super) destination: Eid,
    pub(super) time: u64,
}

impl Template {
    pub(super) fn build(&self, seq: u64, payload: &[u8]) -> Vec<u8> {
        BundleBuilder::new(
            self.source.clone(),
            self.destination.clone(),
            CreationTimestamp { time: self.time, seq },
            LIFETIME_MS,
        )
        .crc_type(CrcType::Crc32c)
        .build(payload)
    }
}

pub fn run(api: &str, args: &IngestArgs) -> Result<ExitCode> {
    let max_time =
        humantime::parse_duration(&args.max_time).with_context(|| format!("--max-time {}", args.max_time))?;
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(!args.sizes.is_empty(), "--sizes: name at least one payload size");
    if let Some(0) = args.count {
        bail!("--count must be at least 1");
    }

    let spawned = if args.spawn { Some(Spawned::start(args.ferryd.as_deref())?) } else { None };
    let base = match &spawned {
        Some(s) => s.api.clone(),
        None => api.trim_end_matches('/').to_owned(),
    };
    let pid = spawned.as_ref().map(|s| s.child.id());

    let template = Arc::new(Template {
        source: "dtn://ferry-bench/".parse().context("bench source EID")?,
        destination: "dtn://ferry-bench-sink/ingest".parse().context("bench destination EID")?,
        time: dtn_now(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;

    let mut results = Vec::new();
    let mut seq_base = 0u64;
    let mut failures = 0u64;
    for &size in &args.sizes {
        let count = args.count.unwrap_or_else(|| default_count(size));
        let in_flight = args.concurrency.min((MAX_IN_FLIGHT_BYTES / size.max(1)).max(1));
        let phase = Phase { payload_bytes: size, count, in_flight, seq_base };
        seq_base += count;
        let cpu_before = pid.and_then(cpu_seconds);
        let own_cpu_before = cpu_seconds(std::process::id());
        let started = Instant::now();
        let outcome = runtime.block_on(run_phase(&base, args, &phase, &template, max_time))?;
        let seconds = started.elapsed().as_secs_f64();
        let acked = outcome.acked.load(Ordering::Relaxed);
        let failed = outcome.failed.load(Ordering::Relaxed);
        failures += failed;
        if failed > 0 {
            let first = outcome.first_error.lock().ok().and_then(|f| f.clone()).unwrap_or_default();
            eprintln!("ferry: bench: {failed} of {count} bundles of {size} B failed; first: {first}");
        }
        // u64 → f64: exact far beyond any count or size a bench reaches.
        let per_s = acked as f64 / seconds;
        let mut r = json!({
            "payload_bytes": size,
            "bundles": acked,
            "seconds": round3(seconds),
            "bundles_per_s": round3(per_s),
            "mb_per_s": round3(per_s * size as f64 / 1e6),
            "in_flight": in_flight,
            "errors": failed,
        });
        // The bench shares the machine with ferryd: its own CPU time says how
        // much of the machine the client took.
        r["client_cpu_s"] = json!(cpu_seconds(std::process::id()).zip(own_cpu_before).map(|(a, b)| round3(a - b)));
        if let Some(pid) = pid {
            r["ferryd_rss_kib"] = json!(proc_status_kib(pid, "VmRSS:"));
            r["ferryd_cpu_s"] = json!(cpu_seconds(pid).zip(cpu_before).map(|(a, b)| round3(a - b)));
        }
        results.push(r);
    }
    let peak_rss_kib = pid.and_then(|p| proc_status_kib(p, "VmHWM:"));
    let report = json!({
        "via": args.via.name(),
        "concurrency": args.concurrency,
        "connections": if args.via == Via::Ws { args.connections.min(args.concurrency) } else { args.concurrency },
        "ferryd": if spawned.is_some() { "spawned" } else { base.as_str() },
        "results": results,
        "peak_rss_kib": peak_rss_kib,
    });
    drop(spawned);
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_else(|_| report.to_string()));
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// About 50 MB of payload per size, between 200 and 20,000 bundles: 20,000 ×
/// 100 B, 5,120 × 10 KiB, 200 × 1 MiB.
fn default_count(size: u64) -> u64 {
    (50 * 1024 * 1024 / size.max(1)).clamp(200, 20_000)
}

pub(super) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn run_phase(
    base: &str,
    args: &IngestArgs,
    phase: &Phase,
    template: &Arc<Template>,
    max_time: Duration,
) -> Result<Arc<Outcome>> {
    let outcome = Arc::new(Outcome::default());
    let next = Arc::new(AtomicU64::new(0));
    let payload: Arc<[u8]> = (0..phase.payload_bytes).map(|i| (i % 251) as u8).collect();
    let deadline = tokio::time::Instant::now() + max_time;
    let work =
        Work { next, count: phase.count, seq_base: phase.seq_base, payload, template: template.clone(), deadline };
    let all = async {
        match args.via {
            Via::Http => http_phase(base, phase.in_flight, &work, &outcome).await,
            Via::Ws => ws_phase(base, args.connections, phase.in_flight, &work, &outcome).await,
        }
    };
    tokio::time::timeout(max_time + DRAIN_GRACE, all)
        .await
        .map_err(|_| anyhow!("ferryd did not acknowledge the last bundles in time"))??;
    Ok(outcome)
}

/// The bundles of one phase, handed out one at a time to whoever pushes next.
#[derive(Clone)]
pub(super) struct Work {
    pub(super) next: Arc<AtomicU64>,
    pub(super) count: u64,
    pub(super) seq_base: u64,
    pub(super) payload: Arc<[u8]>,
    pub(super) template: Arc<Template>,
    pub(super) deadline: tokio::time::Instant,
}

impl Work {
    /// The next bundle to push, or `None` when all are out or time is up.
    fn take(&self) -> Option<Vec<u8>> {
        if tokio::time::Instant::now() >= self.deadline {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.count).then(|| self.template.build(self.seq_base + i, &self.payload))
    }
}

async fn http_phase(base: &str, in_flight: u64, work: &Work, outcome: &Arc<Outcome>) -> Result<()> {
    let n = usize::try_from(in_flight).unwrap_or(usize::MAX);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .tcp_nodelay(true)
        .no_proxy()
        .build()
        .context("cannot set up the HTTP client")?;
    let url = format!("{base}/push");
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (client, url, work, outcome) = (client.clone(), url.clone(), work.clone(), outcome.clone());
        let base = base.to_owned();
        tasks.push(tokio::spawn(async move {
            while let Some(bytes) = work.take() {
                match client.post(&url).body(bytes).send().await {
                    Ok(resp) if resp.status().is_success() => {
                        // Read the answer so the connection goes back to the pool.
                        let _ = resp.bytes().await;
                        outcome.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => {
                        let status = resp.status();
                        let text = resp.text().await.unwrap_or_default();
                        outcome.fail(format!("{status}: {}", text.trim()));
                    }
                    Err(err) => outcome.fail(super::client::describe_transport_error(&base, &err).to_string()),
                }
            }
        }));
    }
    for t in tasks {
        t.await.context("a push task panicked")?;
    }
    Ok(())
}

pub(super) async fn ws_phase(
    base: &str,
    connections: u64,
    in_flight: u64,
    work: &Work,
    outcome: &Arc<Outcome>,
) -> Result<()> {
    let ws_url = match base.strip_prefix("http://") {
        Some(rest) => format!("ws://{rest}/ws"),
        None => bail!("--via ws needs an http:// API address (got {base})"),
    };
    let connections = connections.min(in_flight);
    let mut tasks = Vec::new();
    for c in 0..connections {
        // Spread the in-flight budget; the first connections take the remainder.
        let window = in_flight / connections + u64::from(c < in_flight % connections);
        let (url, work, outcome) = (ws_url.clone(), work.clone(), outcome.clone());
        tasks.push(tokio::spawn(async move { ws_connection(&url, window, &work, &outcome).await }));
    }
    for t in tasks {
        t.await.context("a WebSocket task panicked")??;
    }
    Ok(())
}

/// One WebSocket: switch to `/bundle` mode, then keep `window` frames unacknowledged.
async fn ws_connection(url: &str, window: u64, work: &Work, outcome: &Arc<Outcome>) -> Result<()> {
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .with_context(|| format!("cannot open WebSocket {url}"))?;
    let (mut sink, mut stream) = ws.split();
    sink.send(Message::text("/bundle")).await.context("WebSocket: cannot select /bundle mode")?;
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with('2') => break,
            Some(Ok(Message::Text(t))) => bail!("WebSocket: ferryd refused /bundle mode: {t}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("WebSocket: {e}"),
            None => bail!("WebSocket: ferryd closed the connection"),
        }
    }

    let window32 = u32::try_from(window).unwrap_or(u32::MAX);
    let permits = Arc::new(Semaphore::new(usize::try_from(window).unwrap_or(usize::MAX)));
    let reader_permits = permits.clone();
    let reader_outcome = outcome.clone();
    // Acknowledgements come back in order, one text message per frame.
    let reader = tokio::spawn(async move {
        while let Some(msg) = stream.next().await {
            match msg {
                Ok(Message::Text(t)) => {
                    if t.starts_with('2') {
                        reader_outcome.acked.fetch_add(1, Ordering::Relaxed);
                    } else {
                        reader_outcome.fail(t.to_string());
                    }
                    reader_permits.add_permits(1);
                }
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(e) => {
                    reader_outcome.fail(format!("WebSocket: {e}"));
                    break;
                }
            }
        }
        // Wake the writer if it waits for answers that will never come.
        reader_permits.close();
    });

    let mut result = Ok(());
    while let Some(bytes) = work.take() {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Window full: push out what is buffered, then wait for an answer.
                if let Err(e) = sink.flush().await {
                    result = Err(anyhow!("WebSocket: {e}"));
                    break;
                }
                match permits.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => {
                        result = Err(anyhow!("WebSocket: ferryd closed the connection"));
                        break;
                    }
                }
            }
        };
        permit.forget();
        if let Err(e) = sink.feed(Message::binary(bytes)).await {
            result = Err(anyhow!("WebSocket: {e}"));
            break;
        }
    }
    if result.is_ok() {
        if let Err(e) = sink.flush().await {
            result = Err(anyhow!("WebSocket: {e}"));
        }
    }
    // All answers are in when the whole window is free again.
    if result.is_ok() && permits.acquire_many(window32).await.is_err() {
        result = Err(anyhow!("WebSocket: ferryd closed the connection before answering every frame"));
    }
    let _ = sink.close().await;
    reader.abort();
    result
}

/// A ferryd the bench started; killed and cleaned up on drop.
pub(super) struct Spawned {
    pub(super) child: Child,
    pub(super) dir: PathBuf,
    pub(super) api: String,
}

impl Spawned {
    fn start(ferryd: Option<&Path>) -> Result<Spawned> {
        Spawned::start_with(ferryd, &[])
    }

    /// [`Spawned::start`] with more arguments for ferryd (`--config FILE`).
    pub(super) fn start_with(ferryd: Option<&Path>, extra: &[std::ffi::OsString]) -> Result<Spawned> {
        let exe = match ferryd {
            Some(p) => p.to_path_buf(),
            None => {
                let me = std::env::current_exe().context("cannot find this program's path")?;
                me.with_file_name(format!("ferryd{}", std::env::consts::EXE_SUFFIX))
            }
        };
        anyhow::ensure!(exe.is_file(), "--spawn: no ferryd at {} (build it, or name it with --ferryd)", exe.display());
        let dir = std::env::temp_dir().join(format!(
            "ferry-bench-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        let data = dir.join("data");
        std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
        let log_path = dir.join("ferryd.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = Command::new(&exe)
            .arg("--data-dir")
            .arg(&data)
            .args(["--api", "127.0.0.1:0", "--no-default-cla"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut spawned = Spawned { child, dir, api: String::new() };
        let stdout = spawned.child.stdout.take().context("ferryd's stdout")?;
        let (tx, rx) = mpsc::channel();
        // Reads ferryd's stdout to the end so that ferryd never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix(LISTENING) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(SPAWN_TIMEOUT) {
            Ok(addr) => spawned.api = format!("http://{addr}"),
            Err(_) => {
                let status = spawned.child.try_wait().ok().flatten();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
                bail!(
                    "ferryd did not report its API address within {}s ({}); its log:\n{}",
                    SPAWN_TIMEOUT.as_secs(),
                    status.map(|s| s.to_string()).unwrap_or_else(|| "still running".to_owned()),
                    tail.join("\n")
                );
            }
        }
        Ok(spawned)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `kB` line of /proc/<pid>/status, such as `VmHWM:`.
pub(super) fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// User + system CPU seconds of a process, from /proc/<pid>/stat.
pub(super) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parentheses;
    // utime and stime are fields 14 and 15, i.e. 12 and 13 after the ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    // Tick counts of a bench run are far below 2^52: the conversion is exact.
    Some((utime + stime) as f64 / ticks as f64)
}
