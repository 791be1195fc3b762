//! `ferry bench link`: what a link between two routers carries, Ferry next to
//! dtn7-rs, measured in one run on this machine.
//!
//! Two ferryd are started on loopback (durable RocksDB stores in a temporary
//! folder, the TCP plugin next to this binary), A dialing B over TCPCLv4; then
//! two dtnd (dtn7-rs, its default in-memory store), A dialing B over TCPCLv4
//! and B dialing A (dtnd sends only over sessions it opened). Both pairs get
//! the same workload and the same client:
//!
//! - **Throughput**: bundles of 100 B, of 10 KiB, and 1 MiB bundles (100 MiB
//!   by default), one size at a time. Bundles are built here and injected at
//!   A through `/ws` in bundle mode, pipelined over a few connections as
//!   `bench ingest --via ws` does; B delivers them to a `/ws` subscriber that
//!   the bench holds (bundle mode: every delivery is pushed as it happens,
//!   where `/endpoint` polling would cost a request per bundle and an idle
//!   wait when the queue is empty). A phase's time runs from the first send
//!   to the last delivery at B. Injection stops at `--max-time`; deliveries
//!   get a further minute, and a phase whose deliveries stop for 20 s ends
//!   there (incomplete, with the rate it reached). Every size, and the pings,
//!   run on a pair started afresh, so that a backlog one size leaves behind
//!   cannot slow the next.
//! - **Ping**: neither daemon has an echo service, so the bench relays: a
//!   1-byte bundle goes A → B to `dtn://bench-b/echo`, where the bench's
//!   subscriber receives it and sends a 1-byte bundle back B → A to
//!   `dtn://bench-a/pong`, where its other subscriber receives it. The
//!   round-trip time runs from the send at A to the receipt at A, one ping
//!   at a time, after three pings that are not counted (they bring dtnd's
//!   sessions up). With ferryd each ping is stored durably four times (A, B,
//!   B, A); each node forwards or delivers it while its WAL sync runs.
//!   Each size also reports `disk_bound_mb_per_s` (that rate divided by
//!   the bytes both daemons wrote per payload byte in that phase) and the
//!   share of it reached.
//! - **Sync latency**: 200 small bundles stored one at a time in a fresh
//!   RocksDB store in the same folder, each put waiting for its WAL sync.
//!   Four of them in series (`ferry_ping_serial_syncs_ms`) are what a ping
//!   would take if every store held the bundle until its sync was done.
//! - **Disk**: `dd bs=1M conv=fdatasync` into the folder the ferryd stores
//!   live in, before the daemons start. Ferry writes each payload byte of a
//!   1 MiB bundle [`FERRY_WRITES_PER_PAYLOAD_BYTE`] times on the way (its
//!   payload file in the store, at A and again at B, on the same disk), so
//!   disk rate / that number is the
//!   ceiling for Ferry's payload throughput here. The bytes each ferryd
//!   actually wrote (`/proc/<pid>/io` `write_bytes`) are reported next to it.
//!
//! Every child process is killed (and its folder removed) when the bench
//! ends, however it ends; every wait is bounded.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use ferry_core::bundle::CrcType;
use ferry_core::codec::BundleBuilder;
use ferry_core::{CreationTimestamp, Eid};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::bench::{
    cpu_seconds, proc_status_kib, round3, ws_phase, Outcome, Template, Work, LIFETIME_MS, LISTENING,
    MAX_IN_FLIGHT_BYTES, SPAWN_TIMEOUT,
};
use super::fmt::dtn_now;

/// Node names of the two routers of either pair.
const NODE_A: &str = "bench-a";
const NODE_B: &str = "bench-b";
const NODE_RELAY: &str = "bench-relay";
/// Services: throughput bundles come from A's source (dtnd refuses to send
/// bundles whose source is not a registered endpoint of its own) and go to
/// B's sink; pings go to B's echo, and back to A's pong.
const SOURCE: &str = "bench";
const SINK: &str = "sink";
const ECHO: &str = "echo";
const PONG: &str = "pong";
/// Ferry's writes of each payload byte of a large bundle crossing A → B: the
/// store keeps a bundle of 256 KiB or more in a payload file of its own
/// (synced before the bundle is acknowledged), at A and again at B. The
/// measured figure is in the report.
pub const FERRY_WRITES_PER_PAYLOAD_BYTE: u64 = 2;
/// Time for the last deliveries after injection ended.
const DRAIN_GRACE: Duration = Duration::from_secs(60);
/// A phase ends early when no bundle was delivered for this long after
/// injection ended.
const STALL: Duration = Duration::from_secs(20);
/// Time for one leg of a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Pings sent before measuring (they bring dtnd's sessions up).
const WARMUP_PINGS: u64 = 3;
/// Time for a daemon to listen, and for ferryd A's session to B.
const LINK_TIMEOUT: Duration = Duration::from_secs(30);
/// Time dd may take.
const DD_TIMEOUT: Duration = Duration::from_secs(300);
/// Interval of the bench's own WebSocket pings (dtnd drops a client it has
/// not heard a ping or pong from for 30 s).
const WS_KEEPALIVE: Duration = Duration::from_secs(5);
/// Sequence numbers of pings start here (throughput bundles count from 0).
const PING_SEQ_BASE: u64 = 1 << 40;

#[derive(Debug, Args)]
pub struct LinkArgs {
    /// Bundles of 100 B.
    #[arg(long, default_value_t = 10_000)]
    pub small: u64,
    /// Bundles of 10 KiB.
    #[arg(long, default_value_t = 5_000)]
    pub medium: u64,
    /// MiB of payload sent as 1 MiB bundles.
    #[arg(long, default_value_t = 100)]
    pub large_mib: u64,
    /// Pings measured, one at a time.
    #[arg(long, default_value_t = 20)]
    pub pings: u64,
    /// Stop injecting one size after this long (deliveries get a further minute).
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub max_time: String,
    /// Bundles in flight into A at once (fewer for large bundles: at most 32 MiB).
    #[arg(long, short = 'c', default_value_t = 128)]
    pub concurrency: u64,
    /// WebSocket connections injecting into A.
    #[arg(long, default_value_t = 4)]
    pub connections: u64,
    /// The ferryd binary (default: next to this one).
    #[arg(long, value_name = "PATH")]
    pub ferryd: Option<PathBuf>,
    /// The TCP plugin (default: libferry_cla_tcp.so next to this binary).
    #[arg(long, value_name = "PATH")]
    pub plugin: Option<PathBuf>,
    /// Folder with dtn7-rs's dtnd (default: $FERRY_DTN7_BIN, else
    /// ~/.cache/ferry-tools/dtn7-0.21.0/bin, where scripts/install-dtn7 puts it).
    #[arg(long, value_name = "DIR", env = "FERRY_DTN7_BIN")]
    pub dtn7_bin: Option<PathBuf>,
    /// Measure Ferry only.
    #[arg(long)]
    pub no_dtn7: bool,
    /// Also measure a ferryd pair over TCPCLv4 with TLS 1.3 (certificates
    /// as `ferry tls gen` makes them), with its ratios to plain TCPCLv4.
    #[arg(long)]
    pub tls: bool,
    /// Also measure a chain of three ferryd, A → R → B (R a relay with a
    /// durable store of its own), with its ratios to the pair.
    #[arg(long)]
    pub chain: bool,
    /// MiB dd writes to measure the disk.
    #[arg(long, default_value_t = 256)]
    pub dd_mib: u64,
    /// Where the temporary data folders go (default: the system's temp folder).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the temporary folder (stores, configs, daemon logs) and print its path.
    #[arg(long)]
    pub keep: bool,
    /// RUST_LOG of the daemons (their logs go to the temporary folder).
    #[arg(long, value_name = "FILTER", default_value = "warn")]
    pub log: String,
}

pub fn run(args: &LinkArgs) -> Result<ExitCode> {
    let max_time =
        humantime::parse_duration(&args.max_time).with_context(|| format!("--max-time {}", args.max_time))?;
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(args.dd_mib > 0, "--dd-mib must be at least 1");
    let here = std::env::current_exe().context("cannot find this program's path")?;
    let ferryd = args.ferryd.clone().unwrap_or_else(|| here.with_file_name("ferryd"));
    anyhow::ensure!(ferryd.is_file(), "no ferryd at {} (build it, or name it with --ferryd)", ferryd.display());
    let plugin = args.plugin.clone().unwrap_or_else(|| here.with_file_name("libferry_cla_tcp.so"));
    anyhow::ensure!(
        plugin.is_file(),
        "no TCP plugin at {} (cargo build -p ferry-cla-tcp, or name it with --plugin)",
        plugin.display()
    );
    let dtnd = if args.no_dtn7 { None } else { find_dtnd(args.dtn7_bin.as_deref()) };

    // Declared first, so dropped last: the daemons are gone before their folder.
    let work = WorkDir::create(args.dir.as_deref(), args.keep)?;
    eprintln!("ferry: bench link: measuring the disk ({} MiB, fdatasync) in {}", args.dd_mib, work.0.display());
    // Syncs first: right after dd's 256 MiB the disk (or the host under a
    // virtual one) may still be busy with them.
    let sync = measure_sync_latency(&work.0)?;
    let disk = measure_disk(&work.0, args.dd_mib)?;
    let disk_mb_s = disk["mb_per_s"].as_f64().unwrap_or(0.0);
    let floor = |key: &str| sync[key].as_f64().map(|us| round3(us * DURABLE_WRITES_PER_PING as f64 / 1000.0));
    let (floor_median, floor_p10) = (floor("median_us"), floor("p10_us"));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let plan = Plan::new(args, max_time);

    eprintln!("ferry: bench link: ferryd -> ferryd over TCPCLv4");
    let mut ferry = plan.run(&runtime, &work.0.join("ferry"), args.keep, true, &|dir: &Path| {
        Pair::ferryd(&ferryd, &plugin, dir, &args.log, false, false)
    })?;
    let ferry_chain = if args.chain {
        eprintln!("ferry: bench link: ferryd -> ferryd -> ferryd over TCPCLv4 (a chain through a relay)");
        Some(plan.run(&runtime, &work.0.join("ferry-chain"), args.keep, true, &|dir: &Path| {
            Pair::ferryd(&ferryd, &plugin, dir, &args.log, false, true)
        })?)
    } else {
        None
    };
    let ferry_tls = if args.tls {
        eprintln!("ferry: bench link: ferryd -> ferryd over TCPCLv4 with TLS 1.3");
        Some(plan.run(&runtime, &work.0.join("ferry-tls"), args.keep, true, &|dir: &Path| {
            Pair::ferryd(&ferryd, &plugin, dir, &args.log, true, false)
        })?)
    } else {
        None
    };
    // How close each size came to what the disk allows: its durable write
    // rate divided by the bytes both daemons wrote per payload byte.
    for p in ferry["throughput"].as_array_mut().into_iter().flatten() {
        let bound = p["written_per_payload_byte"].as_f64().filter(|w| *w > 0.0).map(|w| disk_mb_s / w);
        p["disk_bound_mb_per_s"] = json!(bound.map(round3));
        p["share_of_disk_bound"] = json!(bound.zip(p["mb_per_s"].as_f64()).map(|(b, mb)| round3(mb / b)));
    }

    let dtn7 = match &dtnd {
        Some(dtnd) => {
            eprintln!("ferry: bench link: dtnd -> dtnd over TCPCLv4");
            let report = plan.run(&runtime, &work.0.join("dtn7"), args.keep, false, &|dir: &Path| {
                Pair::dtnd(dtnd, dir, &args.log)
            })?;
            Some(report)
        }
        None if args.no_dtn7 => None,
        None => {
            eprintln!("ferry: bench link: dtn7-rs's dtnd not found (scripts/install-dtn7, or --dtn7-bin); Ferry only");
            None
        }
    };

    let large = phase_of(&ferry, 1 << 20);
    let measured = large.and_then(|p| p.get("written_per_payload_byte").cloned());
    let ceiling = disk_mb_s / FERRY_WRITES_PER_PAYLOAD_BYTE as f64;
    let share = large.and_then(|p| p["mb_per_s"].as_f64()).filter(|_| ceiling > 0.0).map(|mb| round3(mb / ceiling));
    let vs = dtn7.as_ref().map(|d| ratios(&ferry, d));
    let tls_vs = ferry_tls.as_ref().map(|t| ratios(t, &ferry));
    let chain_vs = ferry_chain.as_ref().map(|c| ratios(c, &ferry));
    let report = json!({
        "disk": disk,
        "ferry_writes_per_payload_byte": {
            "estimate": FERRY_WRITES_PER_PAYLOAD_BYTE,
            "why": "each payload byte of a 1 MiB bundle goes to a payload file in the store (synced), at A, then \
                    again at B, on the same disk",
            "measured_1mib": measured,
        },
        "ceiling_mb_per_s": round3(ceiling),
        "sync_latency": sync,
        "ferry_ping_serial_syncs_ms": {
            "at_median_sync_ms": floor_median,
            "at_p10_sync_ms": floor_p10,
            "why": "a ping is stored durably four times on its way (at A, at B, its answer at B, at A): what it would \
                    take if each store waited for its WAL sync before the bundle moved on. ferryd forwards and \
                    delivers small bundles while their sync runs (acknowledging only after it), so its ping can \
                    be shorter than this",
        },
        "ferry_1mib_share_of_ceiling": share,
        "ferry": ferry,
        "dtn7": dtn7,
        "ferry_over_dtn7": vs,
        "ferry_tls": ferry_tls,
        "ferry_tls_over_plain": tls_vs,
        "ferry_chain": ferry_chain,
        "ferry_chain_over_pair": chain_vs,
    });
    drop(work);
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_else(|_| report.to_string()));
    // Success when Ferry's pair got everything through; how far dtnd got is
    // a result, not a failure of the bench.
    let ferry = &report["ferry"];
    let complete = |r: &Value| {
        r["throughput"].as_array().is_some_and(|ps| ps.iter().all(|p| p["complete"] == true))
            && r["ping"]["count"].as_u64() == Some(plan.pings)
    };
    let ok =
        complete(ferry) && ["ferry_tls", "ferry_chain"].iter().all(|k| report[*k].is_null() || complete(&report[*k]));
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Ferry's figure divided by dtn7-rs's for every measurement: above 1, Ferry
/// moves more bundles or bytes per second; for the ping, below 1, Ferry's
/// round trip is shorter.
fn ratios(ferry: &Value, dtn7: &Value) -> Value {
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => json!(round3(a / b)),
        _ => Value::Null,
    };
    let mut out = serde_json::Map::new();
    for p in ferry["throughput"].as_array().into_iter().flatten() {
        let Some(size) = p["payload_bytes"].as_u64() else { continue };
        let d = phase_of(dtn7, size);
        let key = if size >= 1 << 20 { "mb_per_s" } else { "bundles_per_s" };
        out.insert(format!("{key}_{}", size_name(size)), div(p[key].as_f64(), d.and_then(|d| d[key].as_f64())));
    }
    out.insert(
        "ping_rtt_median".into(),
        div(ferry["ping"]["rtt_ms"]["median"].as_f64(), dtn7["ping"]["rtt_ms"]["median"].as_f64()),
    );
    Value::Object(out)
}

pub(super) fn size_name(size: u64) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{}mib", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{}kib", s >> 10),
        s => format!("{s}b"),
    }
}

fn phase_of(report: &Value, size: u64) -> Option<&Value> {
    report["throughput"].as_array()?.iter().find(|p| p["payload_bytes"].as_u64() == Some(size))
}

/// What each pair is put through.
struct Plan {
    /// (payload bytes, bundles)
    sizes: Vec<(u64, u64)>,
    pings: u64,
    max_time: Duration,
    concurrency: u64,
    connections: u64,
}

impl Plan {
    fn new(args: &LinkArgs, max_time: Duration) -> Plan {
        let sizes = [(100, args.small), (10 << 10, args.medium), (1 << 20, args.large_mib)]
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .collect();
        Plan { sizes, pings: args.pings, max_time, concurrency: args.concurrency, connections: args.connections }
    }

    /// Pings, then every size, each on a fresh pair that `start` brings up
    /// in its own folder under `dir` (so that a backlog one size leaves
    /// behind cannot slow the next); a JSON report.
    fn run(
        &self,
        rt: &tokio::runtime::Runtime,
        dir: &Path,
        keep: bool,
        durable: bool,
        start: &dyn Fn(&Path) -> Result<Pair>,
    ) -> Result<Value> {
        let fresh = |name: &str| -> Result<(Pair, PathBuf)> {
            let folder = dir.join(name);
            std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
            Ok((start(&folder)?, folder))
        };
        // Stops a pair, removes its folder (unless kept); its peak RSS.
        let done = |pair: Pair, folder: PathBuf| {
            let mut rss = json!({
                "a": proc_status_kib(pair.a.pid(), "VmHWM:"),
                "b": proc_status_kib(pair.b.pid(), "VmHWM:"),
            });
            if let Some(r) = &pair.relay {
                rss["relay"] = json!(proc_status_kib(r.pid(), "VmHWM:"));
            }
            drop(pair);
            if !keep {
                let _ = std::fs::remove_dir_all(folder);
            }
            rss
        };

        // Warm-up pings bring the sessions up (dtnd dials when it first has
        // something to send); then the measured ones.
        eprintln!("ferry: bench link:   {} pings", self.pings);
        let (pair, folder) = fresh("ping")?;
        let (daemon, store) = (pair.daemon.clone(), pair.store);
        let rtts = rt.block_on(pings(&pair, self.pings));
        done(pair, folder);
        let rtts = rtts?;

        let mut phases = Vec::new();
        for &(size, count) in &self.sizes {
            eprintln!("ferry: bench link:   {count} bundles of {size} B");
            let (pair, folder) = fresh(&size_name(size))?;
            let before = pair.usage();
            let p = rt.block_on(self.throughput(&pair, size, count));
            let after = pair.usage();
            let rss = done(pair, folder);
            let mut report = p?.report(size, count, &before, &after, durable);
            report["peak_rss_kib"] = rss;
            phases.push(report);
        }
        Ok(json!({
            "daemon": daemon,
            "store": store,
            "link": "TCPCLv4 over 127.0.0.1",
            "inject": format!("/ws bundle mode at A, {} connections", self.connections),
            "deliver": "/ws subscriber (bundle mode) at B",
            "fresh_pair_per_phase": true,
            "throughput": phases,
            "ping": ping_report(&rtts),
        }))
    }

    async fn throughput(&self, pair: &Pair, size: u64, count: u64) -> Result<PhaseOutcome> {
        let in_flight = self.concurrency.min((MAX_IN_FLIGHT_BYTES / size.max(1)).max(1));
        let sink = Arc::new(SinkStats::default());
        let mut receiver = Subscriber::open(&pair.b_api, SINK).await?;
        let counter = sink.clone();
        // A delivered bundle is at least as long as its payload.
        let min_len = usize::try_from(size).unwrap_or(usize::MAX);
        let receiving = tokio::spawn(async move { receiver.count_into(&counter, min_len).await });

        let template = Arc::new(Template {
            source: eid(&format!("dtn://{NODE_A}/{SOURCE}"))?,
            destination: eid(&format!("dtn://{NODE_B}/{SINK}"))?,
            time: dtn_now(),
        });
        let payload: Arc<[u8]> = (0..size).map(|i| (i % 251) as u8).collect();
        let outcome = Arc::new(Outcome::default());
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.max_time;
        let work = Work { next: Arc::new(AtomicU64::new(0)), count, seq_base: 0, payload, template, deadline };
        let injected = tokio::time::timeout(
            self.max_time + DRAIN_GRACE,
            ws_phase(&pair.a_api, self.connections, in_flight, &work, &outcome),
        )
        .await;
        let inject_error = match injected {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some("A did not answer every bundle in time".to_owned()),
        };
        let sent = outcome.acked.load(Ordering::Relaxed);
        let injected_s = started.elapsed().as_secs_f64();
        let drain_deadline = started + self.max_time + DRAIN_GRACE;
        // Wait for the last deliveries, but not for a link that stopped moving.
        let mut seen = (sink.count.load(Ordering::Relaxed), Instant::now());
        loop {
            let now_count = sink.count.load(Ordering::Relaxed);
            if now_count >= sent || Instant::now() >= drain_deadline || receiving.is_finished() {
                break;
            }
            if now_count != seen.0 {
                seen = (now_count, Instant::now());
            } else if seen.1.elapsed() >= STALL {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        receiving.abort();
        let delivered = sink.count.load(Ordering::Relaxed);
        let last = *sink.last.lock().unwrap_or_else(|e| e.into_inner());
        let complete = inject_error.is_none() && sent == count && delivered >= sent;
        let seconds = match last {
            Some(t) if complete => t.duration_since(started).as_secs_f64(),
            _ => started.elapsed().as_secs_f64(),
        };
        let failed = outcome.failed.load(Ordering::Relaxed);
        let first_error = outcome.first_error.lock().ok().and_then(|f| f.clone()).or(inject_error);
        Ok(PhaseOutcome {
            in_flight,
            sent,
            delivered,
            short: sink.short.load(Ordering::Relaxed),
            complete,
            seconds,
            injected_s,
            failed,
            first_error,
        })
    }
}

/// What one size's run achieved.
struct PhaseOutcome {
    in_flight: u64,
    /// Bundles A acknowledged.
    sent: u64,
    /// Bundles B delivered to the bench.
    delivered: u64,
    /// Deliveries shorter than the payload (not bundles of this phase).
    short: u64,
    complete: bool,
    /// First send to last delivery (or to the end of the wait, if incomplete).
    seconds: f64,
    /// First send to the last acknowledgement from A.
    injected_s: f64,
    failed: u64,
    first_error: Option<String>,
}

impl PhaseOutcome {
    fn report(&self, size: u64, count: u64, before: &Usage, after: &Usage, durable: bool) -> Value {
        // u64 → f64: exact far beyond any count or size a bench reaches.
        let per_s = self.delivered.min(self.sent) as f64 / self.seconds.max(1e-9);
        let payload = self.delivered.min(self.sent) * size;
        let written = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a.saturating_sub(b));
        let (wa, wb) = (written(after.write_a, before.write_a), written(after.write_b, before.write_b));
        let wr = written(after.write_relay, before.write_relay);
        let cpu = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| round3(a - b));
        let mut r = json!({
            "payload_bytes": size,
            "bundles": count,
            "sent": self.sent,
            "delivered": self.delivered,
            "complete": self.complete,
            "seconds": round3(self.seconds),
            "inject_seconds": round3(self.injected_s),
            "bundles_per_s": round3(per_s),
            "mb_per_s": round3(per_s * size as f64 / 1e6),
            "in_flight": self.in_flight,
            "errors": self.failed,
            "cpu_s": {
                "a": cpu(after.cpu_a, before.cpu_a),
                "b": cpu(after.cpu_b, before.cpu_b),
                "bench": cpu(after.cpu_bench, before.cpu_bench),
            },
            "disk_write_mb": {
                "a": wa.map(|w| round3(w as f64 / 1e6)),
                "b": wb.map(|w| round3(w as f64 / 1e6)),
            },
        });
        if before.cpu_relay.is_some() {
            r["cpu_s"]["relay"] = json!(cpu(after.cpu_relay, before.cpu_relay));
            r["disk_write_mb"]["relay"] = json!(wr.map(|w| round3(w as f64 / 1e6)));
        }
        if durable && payload > 0 {
            let total = wa.zip(wb).map(|(a, b)| a + b + wr.unwrap_or(0));
            r["written_per_payload_byte"] = json!(total.map(|t| round3(t as f64 / payload as f64)));
        }
        if self.short > 0 {
            r["short_deliveries"] = json!(self.short);
        }
        if let Some(e) = &self.first_error {
            r["first_error"] = json!(e);
        }
        r
    }
}

/// CPU time and bytes written of the daemons (the relay's in a chain) and
/// of the bench itself.
struct Usage {
    cpu_a: Option<f64>,
    cpu_b: Option<f64>,
    cpu_relay: Option<f64>,
    cpu_bench: Option<f64>,
    write_a: Option<u64>,
    write_b: Option<u64>,
    write_relay: Option<u64>,
}

fn ping_report(rtts: &[f64]) -> Value {
    let mut sorted = rtts.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| {
        // Nearest rank; the index is within bounds for a non-empty list.
        let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
        sorted.get(i).copied().map(round3)
    };
    json!({
        "count": rtts.len(),
        "payload_bytes": 1,
        "how": "A -> B to the bench's /ws subscriber at B, which sends a bundle back B -> A to its subscriber at A; \
                send at A to receipt at A, one at a time",
        "rtt_ms": {
            "min": sorted.first().copied().map(round3),
            "median": at(0.5),
            "p90": at(0.9),
            "max": sorted.last().copied().map(round3),
        },
    })
}

fn eid(s: &str) -> Result<Eid> {
    s.parse().map_err(|e| anyhow!("{s}: {e}"))
}

/// One bundle of the bench, built here (CRC-32C on every block).
fn bundle(src: &str, dst: &str, seq: u64, payload: &[u8]) -> Result<Vec<u8>> {
    Ok(BundleBuilder::new(eid(src)?, eid(dst)?, CreationTimestamp { time: dtn_now(), seq }, LIFETIME_MS)
        .crc_type(CrcType::Crc32c)
        .build(payload))
}

/// `count` measured pings A → B → A (after [`WARMUP_PINGS`]); their
/// round-trip times in milliseconds.
async fn pings(pair: &Pair, count: u64) -> Result<Vec<f64>> {
    let mut at_a = Subscriber::open(&pair.a_api, PONG).await?;
    let mut at_b = Subscriber::open(&pair.b_api, ECHO).await?;
    let (to_b, to_a) = (format!("dtn://{NODE_B}/{ECHO}"), format!("dtn://{NODE_A}/{PONG}"));
    let mut rtts = Vec::new();
    for i in 0..WARMUP_PINGS + count {
        // The payload is one byte: which ping this is, modulo 256.
        let byte = [(i % 256) as u8];
        let request = bundle(&to_a, &to_b, PING_SEQ_BASE + 2 * i, &byte)?;
        let reply = bundle(&to_b, &to_a, PING_SEQ_BASE + 2 * i + 1, &byte)?;
        let started = Instant::now();
        at_a.send(request).await?;
        at_b.next_bundle().await.with_context(|| format!("ping {i}: nothing reached B"))?;
        at_b.send(reply).await?;
        at_a.next_bundle().await.with_context(|| format!("ping {i}: no answer reached A"))?;
        if i >= WARMUP_PINGS {
            rtts.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(rtts)
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A `/ws` connection in bundle mode, subscribed to one service.
struct Subscriber {
    ws: WsStream,
}

/// What the throughput subscriber saw.
#[derive(Default)]
struct SinkStats {
    count: AtomicU64,
    short: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl Subscriber {
    async fn open(api: &str, service: &str) -> Result<Subscriber> {
        let url = match api.strip_prefix("http://") {
            Some(rest) => format!("ws://{rest}/ws"),
            None => bail!("not an http:// API address: {api}"),
        };
        let (ws, _) =
            tokio::time::timeout(LINK_TIMEOUT, tokio_tungstenite::connect_async_with_config(&url, None, true))
                .await
                .map_err(|_| anyhow!("{url}: no WebSocket handshake in time"))?
                .with_context(|| format!("cannot open WebSocket {url}"))?;
        let mut s = Subscriber { ws };
        s.command("/bundle").await?;
        s.command(&format!("/subscribe {service}")).await?;
        Ok(s)
    }

    /// Sends a command; its reply must start with 2.
    async fn command(&mut self, cmd: &str) -> Result<()> {
        self.ws.send(Message::text(cmd)).await.with_context(|| format!("WebSocket: {cmd}"))?;
        let deadline = tokio::time::Instant::now() + LINK_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => bail!("WebSocket: no reply to {cmd}"),
                Ok(Some(Ok(Message::Text(t)))) if t.starts_with('2') => return Ok(()),
                Ok(Some(Ok(Message::Text(t)))) => bail!("WebSocket: {cmd} answered {t}"),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => bail!("WebSocket: {e}"),
                Ok(None) => bail!("WebSocket closed after {cmd}"),
            }
        }
    }

    async fn send(&mut self, bundle: Vec<u8>) -> Result<()> {
        self.ws.send(Message::binary(bundle)).await.context("WebSocket: cannot send a bundle")
    }

    /// The next delivered bundle, skipping the replies to our own sends
    /// (which must say 2xx); bounded by [`PING_TIMEOUT`].
    async fn next_bundle(&mut self) -> Result<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + PING_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => bail!("no bundle within {PING_TIMEOUT:?}"),
                Ok(Some(Ok(Message::Binary(b)))) => return Ok(b.to_vec()),
                Ok(Some(Ok(Message::Text(t)))) if t.starts_with('2') => continue,
                Ok(Some(Ok(Message::Text(t)))) => bail!("WebSocket: {t}"),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => bail!("WebSocket: {e}"),
                Ok(None) => bail!("WebSocket closed"),
            }
        }
    }

    /// Counts delivered bundles into `stats` until the connection ends (the
    /// caller aborts it), pinging every [`WS_KEEPALIVE`]. Frames shorter than
    /// `min_len` are counted apart.
    async fn count_into(&mut self, stats: &SinkStats, min_len: usize) {
        let mut keepalive = tokio::time::interval(WS_KEEPALIVE);
        keepalive.tick().await;
        loop {
            tokio::select! {
                msg = self.ws.next() => match msg {
                    Some(Ok(Message::Binary(b))) if b.len() < min_len => {
                        stats.short.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(Message::Binary(_))) => {
                        stats.count.fetch_add(1, Ordering::Relaxed);
                        *stats.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                },
                _ = keepalive.tick() => {
                    if self.ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Two daemons, A dialing B, and how to reach their APIs.
struct Pair {
    daemon: String,
    store: &'static str,
    a: Proc,
    b: Proc,
    /// In a chain: the node between A and B.
    relay: Option<Proc>,
    a_api: String,
    b_api: String,
}

impl Pair {
    /// Two ferryd with durable stores in `dir`, A's TCP plugin dialing B's;
    /// with `tls`, each with a certificate over its node key that the other
    /// trusts, and TLS required; with `chain`, A dials a relay R that dials
    /// B, with static routes through R both ways.
    fn ferryd(exe: &Path, plugin: &Path, dir: &Path, log: &str, tls: bool, chain: bool) -> Result<Pair> {
        let (pa, pb) = (free_port("127.0.0.1:0")?, free_port("127.0.0.1:0")?);
        let (tls_a, tls_b) = if tls {
            let (a, b) = (tls_credentials(dir, NODE_A)?, tls_credentials(dir, NODE_B)?);
            (Some(tls_table(&a, &b)), Some(tls_table(&b, &a)))
        } else {
            (None, None)
        };
        // A chain uses static routes, as an operator would for a fixed
        // line: no node keeps a copy of what the next hop took.
        let via = |to| chain.then_some((to, NODE_RELAY));
        let (b, b_api) = start_ferryd(exe, plugin, dir, log, NODE_B, pb, None, via(NODE_A), tls_b.as_deref())?;
        let (relay, a_dials) = if chain {
            let pr = free_port("127.0.0.1:0")?;
            let static_direct = Some((NODE_B, NODE_B));
            let (r, r_api) = start_ferryd(exe, plugin, dir, log, NODE_RELAY, pr, Some(pb), static_direct, None)?;
            (Some((r, r_api)), pr)
        } else {
            (None, pb)
        };
        let (a, a_api) = start_ferryd(exe, plugin, dir, log, NODE_A, pa, Some(a_dials), via(NODE_B), tls_a.as_deref())?;
        let client = http_client()?;
        for (api, service) in [(&b_api, SINK), (&b_api, ECHO), (&a_api, PONG), (&a_api, SOURCE)] {
            let url = format!("{api}/register?{service}");
            let r = client.get(&url).send().with_context(|| format!("GET {url}"))?;
            anyhow::ensure!(r.status().is_success(), "GET {url}: {}", r.status());
        }
        // Each link up before the clock starts: A's, and in a chain R's.
        let mut links = vec![(&a_api, format!("dtn://{}/", if chain { NODE_RELAY } else { NODE_B }), &a)];
        if let Some((r, r_api)) = &relay {
            links.push((r_api, format!("dtn://{NODE_B}/"), r));
        }
        for (api, peer, proc) in links {
            let deadline = Instant::now() + LINK_TIMEOUT;
            loop {
                let body = client.get(format!("{api}/status/peers")).send().and_then(|r| r.bytes());
                let peers: Value = body.ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null);
                if peers[&peer]["connected"] == true {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "ferryd at {api} did not connect to {peer} within {LINK_TIMEOUT:?}; its log:\n{}",
                        proc.log_tail()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let relay = relay.map(|(r, _)| r);
        let daemon = format!("ferryd {}", env!("CARGO_PKG_VERSION"));
        let store = "RocksDB, every bundle synced to disk before it is acknowledged";
        Ok(Pair { daemon, store, a, b, relay, a_api, b_api })
    }

    /// Two dtnd with dtn7-rs's default in-memory store, each with the other as
    /// a static TCPCL peer (dtnd sends only over sessions it opened).
    fn dtnd(bin: &Path, dir: &Path, log: &str) -> Result<Pair> {
        let (ta, tb) = (free_port("127.0.0.1:0")?, free_port("127.0.0.1:0")?);
        let (wa, wb) = (free_port("[::1]:0")?, free_port("[::1]:0")?);
        let b = start_dtnd(bin, dir, log, NODE_B, tb, wb, (ta, NODE_A))?;
        let a = start_dtnd(bin, dir, log, NODE_A, ta, wa, (tb, NODE_B))?;
        let daemon = dtnd_version(bin).unwrap_or_else(|| "dtnd".to_owned());
        Ok(Pair {
            daemon,
            store: "in memory (dtnd -D mem, its default)",
            a,
            b,
            relay: None,
            a_api: format!("http://[::1]:{wa}"),
            b_api: format!("http://[::1]:{wb}"),
        })
    }

    fn usage(&self) -> Usage {
        Usage {
            cpu_a: cpu_seconds(self.a.pid()),
            cpu_b: cpu_seconds(self.b.pid()),
            cpu_relay: self.relay.as_ref().and_then(|r| cpu_seconds(r.pid())),
            cpu_bench: cpu_seconds(std::process::id()),
            write_a: io_write_bytes(self.a.pid()),
            write_b: io_write_bytes(self.b.pid()),
            write_relay: self.relay.as_ref().and_then(|r| io_write_bytes(r.pid())),
        }
    }
}

/// A child process, killed and reaped on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bench's temporary folder, removed on drop unless kept.
struct WorkDir(PathBuf, bool);

impl WorkDir {
    fn create(parent: Option<&Path>, keep: bool) -> Result<WorkDir> {
        let parent = parent.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = parent.join(format!("ferry-bench-link-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(WorkDir(dir, keep))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.1 {
            eprintln!("ferry: bench link: kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn http_client() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .context("cannot set up the HTTP client")
}

/// A port nothing listens on now, on the address `bind` names.
fn free_port(bind: &str) -> Result<u16> {
    let l = std::net::TcpListener::bind(bind).with_context(|| format!("cannot bind {bind}"))?;
    Ok(l.local_addr()?.port())
}

/// Waits (bounded) until something accepts connections at `addr`.
fn wait_listening(addr: &str, what: &str, proc: &mut Proc) -> Result<()> {
    let deadline = Instant::now() + LINK_TIMEOUT;
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = proc.child.try_wait() {
            bail!("{what} exited ({status}) before listening on {addr}; its log:\n{}", proc.log_tail());
        }
        if Instant::now() >= deadline {
            bail!("{what} did not listen on {addr} within {LINK_TIMEOUT:?}; its log:\n{}", proc.log_tail());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The certificate and key of `dtn://<name>/` in `dir/<name>/tls`, over the
/// node key in its data folder, as `ferry tls gen` makes them: (cert, key).
fn tls_credentials(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
    let data = dir.join(name);
    let tls = data.join("tls");
    std::fs::create_dir_all(&tls).with_context(|| format!("cannot create {}", tls.display()))?;
    let identity = crate::security::Identity::load_or_create(&data)?;
    let (cert, key) = super::tls::node_certificate(&identity, &format!("dtn://{name}/"), 30)?;
    let paths = (tls.join("cert.pem"), tls.join("key.pem"));
    std::fs::write(&paths.0, cert).with_context(|| format!("cannot write {}", paths.0.display()))?;
    std::fs::write(&paths.1, key).with_context(|| format!("cannot write {}", paths.1.display()))?;
    Ok(paths)
}

/// The TCP plugin's `[tls]` table: `own` credentials, trusting `peer`'s certificate.
fn tls_table(own: &(PathBuf, PathBuf), peer: &(PathBuf, PathBuf)) -> String {
    let q = |p: &Path| toml::Value::String(p.display().to_string());
    format!("[cla.settings.tls]\ncert = {}\nkey = {}\ntrust = [{}]\nrequire = true\n", q(&own.0), q(&own.1), q(&peer.0))
}

/// Starts ferryd `dtn://<name>/` on `dir/<name>` with the TCP plugin
/// listening on 127.0.0.1:`listen` and dialing 127.0.0.1:`peer` (with the
/// `[cla.settings.tls]` table `tls`); its API base URL.
#[allow(clippy::too_many_arguments)]
fn start_ferryd(
    exe: &Path,
    plugin: &Path,
    dir: &Path,
    rust_log: &str,
    name: &str,
    listen: u16,
    peer: Option<u16>,
    route_via: Option<(&str, &str)>,
    tls: Option<&str>,
) -> Result<(Proc, String)> {
    // A static route (to, via): bundles for node `to` go through node `via`.
    let router = match route_via {
        Some((to, via)) => {
            format!("router = \"static\"\n[[routes]]\npattern = \"dtn://{to}/*\"\nvia = \"dtn://{via}/\"\n")
        }
        None => String::new(),
    };
    let peers = peer.map(|p| format!("\"tcpcl://127.0.0.1:{p}\"")).unwrap_or_default();
    let config = dir.join(format!("{name}.toml"));
    let plugin = plugin.to_str().context("the plugin's path is not UTF-8")?;
    std::fs::write(
        &config,
        format!(
            "node_id = \"dtn://{name}/\"\n{router}[[cla]]\npath = {}\n[cla.settings]\n\
             listen = [\"127.0.0.1:{listen}\"]\npeers = [{peers}]\n{}",
            toml::Value::String(plugin.to_owned()),
            tls.unwrap_or_default()
        ),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(exe)
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join(name))
        .args(["--api", "127.0.0.1:0"])
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let mut proc = Proc { child, log };
    let stdout = proc.child.stdout.take().context("ferryd's stdout")?;
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
    let api = match rx.recv_timeout(SPAWN_TIMEOUT) {
        Ok(addr) => format!("http://{addr}"),
        Err(_) => bail!("ferryd {name} did not report its API address in time; its log:\n{}", proc.log_tail()),
    };
    wait_listening(&format!("127.0.0.1:{listen}"), &format!("ferryd {name}'s TCPCL"), &mut proc)?;
    Ok((proc, api))
}

/// Starts dtnd `dtn://<name>/`: TCPCL on 127.0.0.1:`tcp`, its API on
/// [::1]:`web` (`-6`), no discovery, epidemic routing, in-memory store, the
/// bench's endpoints registered, and `peer` (port, name) as static peer.
fn start_dtnd(
    bin: &Path,
    dir: &Path,
    rust_log: &str,
    name: &str,
    tcp: u16,
    web: u16,
    peer: (u16, &str),
) -> Result<Proc> {
    let workdir = dir.join(name);
    std::fs::create_dir_all(&workdir).with_context(|| format!("cannot create {}", workdir.display()))?;
    let log = dir.join(format!("{name}.log"));
    let exe = bin.join("dtnd");
    let child = Command::new(&exe)
        .args(["-n", name, "-W"])
        .arg(&workdir)
        .args(["-w", &web.to_string(), "-6", "-i", "0", "--disable_nd", "-r", "epidemic", "-D", "mem"])
        .args(["-C", &format!("tcp:port={tcp}:bind=127.0.0.1")])
        .args(["-e", SOURCE, "-e", SINK, "-e", ECHO, "-e", PONG])
        .args(["-s", &format!("tcp://127.0.0.1:{}/{}", peer.0, peer.1)])
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let mut proc = Proc { child, log };
    wait_listening(&format!("[::1]:{web}"), &format!("dtnd {name}'s API"), &mut proc)?;
    wait_listening(&format!("127.0.0.1:{tcp}"), &format!("dtnd {name}'s TCPCL"), &mut proc)?;
    Ok(proc)
}

/// dtn7-rs's folder: `--dtn7-bin`/`$FERRY_DTN7_BIN`, else where
/// scripts/install-dtn7 puts it.
fn find_dtnd(given: Option<&Path>) -> Option<PathBuf> {
    let dir = match given {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/ferry-tools/dtn7-0.21.0/bin"),
    };
    dir.join("dtnd").is_file().then_some(dir)
}

/// `dtnd -V` (`dtn7-rs 0.21.0`), bounded by the child's own speed: it only
/// prints and exits.
fn dtnd_version(bin: &Path) -> Option<String> {
    let out = Command::new(bin.join("dtnd")).arg("-V").stdin(Stdio::null()).output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|v| !v.is_empty())
}

/// `write_bytes` of /proc/<pid>/io: bytes the process caused to be written
/// to storage.
fn io_write_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok())
}

/// Durable writes on a ping's way with ferryd: A stores it, B stores it,
/// B stores its answer, A stores the answer.
const DURABLE_WRITES_PER_PING: u64 = 4;
/// Stores timed by [`measure_sync_latency`].
const SYNCS_TIMED: u64 = 200;

/// The latency of one durable store, as ferryd makes it: a fresh RocksDB
/// store in the bench folder takes 100-byte bundles one at a time, each
/// `put` returning once its write-ahead log is synced. Microseconds: median,
/// 10th and 90th percentile.
fn measure_sync_latency(dir: &Path) -> Result<Value> {
    let path = dir.join("sync-store");
    let result = (|| -> Result<Value> {
        let store = ferry_store::RocksStore::open(&path)
            .map_err(|e| anyhow!("cannot open a store in {}: {e}", path.display()))?;
        let mut us = Vec::new();
        for seq in 0..SYNCS_TIMED {
            let bytes = bundle(&format!("dtn://{NODE_A}/"), &format!("dtn://{NODE_B}/{SINK}"), seq, &[0x5a; 100])?;
            let decoded = ferry_core::codec::decode(&bytes).map_err(|e| anyhow!("bench bundle: {e}"))?;
            let meta = ferry_core::node::meta_of(dtn_now(), &decoded, bytes.len() as u64);
            let t = Instant::now();
            ferry_core::store::Store::put(&store, &meta, &bytes).map_err(|e| anyhow!("store: {e}"))?;
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
        us.sort_by(f64::total_cmp);
        let at = |q: f64| round3(us[((us.len() - 1) as f64 * q) as usize]);
        Ok(json!({
            "how": format!("{SYNCS_TIMED} x one 100-byte bundle stored durably (RocksDB put, WAL synced), one at a time"),
            "median_us": at(0.5),
            "p10_us": at(0.1),
            "p90_us": at(0.9),
        }))
    })();
    let _ = std::fs::remove_dir_all(&path);
    result
}

/// Writes `mib` MiB with `dd ... conv=fdatasync` into `dir`; its rate.
pub(super) fn measure_disk(dir: &Path, mib: u64) -> Result<Value> {
    let file = dir.join("dd.tmp");
    let err = dir.join("dd.err");
    let mut child = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .args(["bs=1M", &format!("count={mib}"), "conv=fdatasync"])
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).with_context(|| format!("cannot create {}", err.display()))?)
        .spawn()
        .context("cannot run dd")?;
    let deadline = Instant::now() + DD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&file);
            bail!("dd did not finish within {DD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_file(&file);
    let text = std::fs::read_to_string(&err).unwrap_or_default();
    let _ = std::fs::remove_file(&err);
    anyhow::ensure!(status.success(), "dd failed ({status}): {}", text.trim());
    let (bytes, seconds) = parse_dd(&text).ok_or_else(|| anyhow!("cannot read dd's summary: {}", text.trim()))?;
    Ok(json!({
        "command": format!("dd if=/dev/zero of=<bench folder>/dd.tmp bs=1M count={mib} conv=fdatasync"),
        "bytes": bytes,
        "seconds": seconds,
        "mb_per_s": round3(bytes as f64 / seconds.max(1e-9) / 1e6),
        "dd_says": text.lines().last().unwrap_or_default().trim(),
    }))
}

/// Bytes and seconds from dd's last line (LC_ALL=C):
/// `268435456 bytes (268 MB, 256 MiB) copied, 0.4 s, 671 MB/s`.
fn parse_dd(text: &str) -> Option<(u64, f64)> {
    let line = text.lines().rev().find(|l| l.contains(" copied, "))?;
    let bytes = line.split_whitespace().next()?.parse().ok()?;
    let after = line.split(" copied, ").nth(1)?;
    let seconds: f64 = after.split_whitespace().next()?.parse().ok()?;
    Some((bytes, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dd_summaries() {
        let out = "256+0 records in\n256+0 records out\n268435456 bytes (268 MB, 256 MiB) copied, 0.5 s, 537 MB/s\n";
        assert_eq!(parse_dd(out), Some((268435456, 0.5)));
        assert_eq!(parse_dd("1048576 bytes (1.0 MB, 1.0 MiB) copied, 0.00213 s, 492 MB/s"), Some((1048576, 0.00213)));
        assert_eq!(parse_dd("dd: error writing"), None);
    }

    #[test]
    fn names_sizes() {
        assert_eq!(size_name(100), "100b");
        assert_eq!(size_name(10 << 10), "10kib");
        assert_eq!(size_name(1 << 20), "1mib");
    }

    #[test]
    fn ping_percentiles() {
        let r = ping_report(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(r["rtt_ms"]["min"], 1.0);
        assert_eq!(r["rtt_ms"]["median"], 3.0);
        assert_eq!(r["rtt_ms"]["max"], 5.0);
        assert_eq!(ping_report(&[])["rtt_ms"]["median"], Value::Null);
    }
}
