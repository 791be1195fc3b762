//! `ferry bench usb`: bundles carried A → folder → B by the usbdir plugin,
//! next to NNCP doing the same with files, measured in one run.
//!
//! For each workload (1,000 × 1 KiB, 200 × 100 KiB, 5 × 50 MiB by default):
//!
//! - **Ferry**: two fresh ferryd (durable RocksDB stores) with the usbdir
//!   plugin, A's folder `at-a/`, B's `at-b/`, both absent at first. The
//!   payloads go into A's store (`POST /send`, a few in flight: *ingest*).
//!   Then the "stick" (a folder on the same disk) is plugged into A by
//!   renaming it to `at-a` and `/ferry/usb/sync` is asked for, as
//!   `ferry usb sync` does: *tx* runs until A holds no bundle any more (each
//!   was reported sent, i.e. synced and renamed on the stick, and dropped).
//!   The stick is moved to B (`at-a` → `at-b`) and synced there: *rx* runs
//!   until B's mailbox on the stick is empty (a file is removed only after
//!   its bundle is durable in B's store) and B holds every bundle. The
//!   payloads are then fetched from B and compared byte for byte (untimed).
//! - **NNCP**: two nodes from `nncp-cfgnew` in the same folder; the payloads
//!   are files there. *ingest*: `nncp-file` per file into A's spool; *tx*:
//!   `nncp-xfer -tx -mkdir` onto the stick; *rx*: `nncp-xfer -rx` and
//!   `nncp-toss` at B. NNCP syncs its writes by default. The received files
//!   are compared byte for byte.
//!
//! The headline rate is the folder part, tx + rx: from a sender's durable
//! spool to the receiver's durable store, through the stick. The disk's rate
//! is measured first with `dd bs=1M conv=fdatasync` in the bench folder.
//! Ferry writes each payload byte of a large bundle about
//! [`FERRY_FOLDER_WRITES`] times in tx + rx (the stick file, then B's
//! store's payload file); the bytes the two ferryd really wrote
//! (`/proc/<pid>/io` `write_bytes`) are reported and used for the ceiling.
//!
//! Every child process is killed and the bench folder removed when the bench
//! ends, however it ends; every wait is bounded.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use ferry_cla_usbdir::name::encode_node;
use serde_json::{json, Value};

use super::bench::{round3, LISTENING, SPAWN_TIMEOUT};

const NODE_A: &str = "dtn://bench-a/";
const NODE_B: &str = "dtn://bench-b/";
const SINK: &str = "sink";
/// Times Ferry writes a payload byte of a large bundle between A's store and
/// B's store: the stick file, then the store's payload file at B.
pub const FERRY_FOLDER_WRITES: u64 = 2;
/// Longest a stage may take.
const STAGE_TIMEOUT: Duration = Duration::from_secs(900);
/// How often a stage's end is checked.
const CHECK_EVERY: Duration = Duration::from_millis(10);
/// MiB dd writes.
const DD_MIB: u64 = 256;

#[derive(Debug, Args)]
pub struct UsbArgs {
    /// Bundles (files) of 1 KiB.
    #[arg(long, default_value_t = 1000)]
    pub small: u64,
    /// Bundles (files) of 100 KiB.
    #[arg(long, default_value_t = 200)]
    pub medium: u64,
    /// Bundles (files) of 50 MiB.
    #[arg(long, default_value_t = 5)]
    pub large: u64,
    /// `/send` calls in flight into A.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub concurrency: u64,
    /// Leave NNCP out.
    #[arg(long)]
    pub no_nncp: bool,
    /// Parent of the bench folder (the disk measured); the system's temp folder by default.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the bench folder (logs, configs) afterwards.
    #[arg(long)]
    pub keep: bool,
    /// RUST_LOG of the two ferryd.
    #[arg(long, default_value = "warn")]
    pub rust_log: String,
}

pub fn run(args: &UsbArgs) -> Result<ExitCode> {
    let bin = std::env::current_exe().context("where is this executable?")?;
    let bin = bin.parent().context("this executable's folder")?;
    let ferryd = bin.join("ferryd");
    let plugin = bin.join("libferry_cla_usbdir.so");
    for p in [&ferryd, &plugin] {
        anyhow::ensure!(
            p.is_file(),
            "{} is not built: cargo build --release -p ferry-daemon -p ferry-cla-usbdir",
            p.display()
        );
    }
    let nncp = !args.no_nncp && which("nncp-file");
    if !args.no_nncp && !nncp {
        bail!("NNCP is not installed (scripts/install-deps installs Debian's nncp); or pass --no-nncp");
    }
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("ferry-bench-usb-")
        .tempdir_in(&parent)
        .with_context(|| format!("cannot create a folder in {}", parent.display()))?;
    let dir = work.path().to_owned();
    let disk = super::bench_link::measure_disk(&dir, DD_MIB)?;
    let disk_mb_s = disk["mb_per_s"].as_f64().unwrap_or(0.0);
    let workloads: Vec<(u64, u64)> = [(args.small, 1 << 10), (args.medium, 100 << 10), (args.large, 50 << 20)]
        .into_iter()
        .filter(|w| w.0 > 0)
        .collect();
    let mut ferry = vec![];
    let mut theirs = vec![];
    for &(count, size) in &workloads {
        eprintln!("ferry bench usb: Ferry, {count} × {}", super::bench_link::size_name(size));
        ferry.push(ferry_workload(&ferryd, &plugin, &dir, count, size, args)?);
        if nncp {
            eprintln!("ferry bench usb: NNCP, {count} × {}", super::bench_link::size_name(size));
            theirs.push(nncp_workload(&dir, count, size)?);
        }
    }
    let ratios: Vec<Value> = ferry
        .iter()
        .zip(&theirs)
        .map(|(f, n)| {
            let r = |k: &str| round3(f[k].as_f64().unwrap_or(0.0) / n[k].as_f64().unwrap_or(f64::INFINITY));
            json!({
                "payload": f["payload"],
                "folder_rate_ferry_over_nncp": r("folder_bundles_per_s"),
                "end_to_end_rate_ferry_over_nncp": r("end_to_end_bundles_per_s"),
            })
        })
        .collect();
    let goals = goals(&ferry, &theirs, disk_mb_s);
    let report = json!({
        "what": "A → folder → B: tx + rx from the sender's durable spool to the receiver's durable store",
        "disk": disk,
        "ferry": { "daemon": format!("ferryd {} with the usbdir plugin", env!("CARGO_PKG_VERSION")), "workloads": ferry },
        "nncp": if nncp { json!({ "version": nncp_version(), "workloads": theirs }) } else { Value::Null },
        "ratios": ratios,
        "goals": goals,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if args.keep {
        eprintln!("ferry bench usb: kept {}", work.keep().display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The goals, checked against this run.
fn goals(ferry: &[Value], nncp: &[Value], disk_mb_s: f64) -> Value {
    let small = ferry.iter().find(|w| w["payload_bytes"] == 1 << 10);
    let large = ferry.iter().find(|w| w["payload_bytes"] == 50 << 20);
    let large_nncp = nncp.iter().find(|w| w["payload_bytes"] == 50 << 20);
    let mut out = serde_json::Map::new();
    if let Some(s) = small {
        let rate = s["folder_bundles_per_s"].as_f64().unwrap_or(0.0);
        out.insert("small_bundles_per_s".into(), json!({ "goal": 3000, "got": rate, "met": rate >= 3000.0 }));
    }
    if let Some(l) = large {
        let rate = l["folder_mb_per_s"].as_f64().unwrap_or(0.0);
        let writes = l["measured_writes_per_payload_byte"].as_f64().unwrap_or(FERRY_FOLDER_WRITES as f64).max(1.0);
        let half_ceiling = disk_mb_s / writes / 2.0;
        let nncp_rate = large_nncp.and_then(|n| n["folder_mb_per_s"].as_f64());
        out.insert(
            "large_mb_per_s".into(),
            json!({
                "disk_mb_per_s": disk_mb_s,
                "writes_per_payload_byte": round3(writes),
                "goal_half_of_disk_over_writes": round3(half_ceiling),
                "nncp": nncp_rate,
                "got": rate,
                "met": rate >= half_ceiling && nncp_rate.is_none_or(|n| rate > n),
            }),
        );
    }
    Value::Object(out)
}

/// The payload of bundle (file) `i`: `i` in its first 8 bytes, then
/// xorshift bytes seeded by `i`, so that every payload differs and can be checked.
fn payload(i: u64, size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(size as usize);
    out.extend_from_slice(&i.to_le_bytes());
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while (out.len() as u64) < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size as usize);
    out
}

fn rate(n: f64, d: Duration) -> f64 {
    round3(n / d.as_secs_f64().max(1e-9))
}

fn stage_report(count: u64, size: u64, ingest: Duration, tx: Duration, rx: Duration) -> serde_json::Map<String, Value> {
    let folder = tx + rx;
    let bytes = (count * size) as f64;
    let mut m = serde_json::Map::new();
    m.insert("payload".into(), json!(super::bench_link::size_name(size)));
    m.insert("payload_bytes".into(), json!(size));
    m.insert("count".into(), json!(count));
    m.insert("ingest_s".into(), json!(round3(ingest.as_secs_f64())));
    m.insert("tx_s".into(), json!(round3(tx.as_secs_f64())));
    m.insert("rx_s".into(), json!(round3(rx.as_secs_f64())));
    m.insert("folder_s".into(), json!(round3(folder.as_secs_f64())));
    m.insert("folder_bundles_per_s".into(), json!(rate(count as f64, folder)));
    m.insert("folder_mb_per_s".into(), json!(rate(bytes / 1e6, folder)));
    m.insert("end_to_end_bundles_per_s".into(), json!(rate(count as f64, ingest + folder)));
    m
}

fn ferry_workload(ferryd: &Path, plugin: &Path, dir: &Path, count: u64, size: u64, args: &UsbArgs) -> Result<Value> {
    let base = dir.join(format!("ferry-{}", super::bench_link::size_name(size)));
    let (stick, at_a, at_b) = (base.join("stick"), base.join("at-a"), base.join("at-b"));
    std::fs::create_dir_all(&stick).with_context(|| format!("cannot create {}", stick.display()))?;
    let a = Ferryd::start(ferryd, plugin, &base, NODE_A, &at_a, &[NODE_B], &args.rust_log)?;
    let b = Ferryd::start(ferryd, plugin, &base, NODE_B, &at_b, &[], &args.rust_log)?;
    b.get(&format!("/register?{SINK}"))?;

    let t = Instant::now();
    send_all(&a.api, count, size, args.concurrency)?;
    let ingest = t.elapsed();
    let before = a.write_bytes() + b.write_bytes();

    std::fs::rename(&stick, &at_a).context("plugging the stick into A")?;
    let t = Instant::now();
    a.sync(&at_a)?;
    wait("A to write every bundle onto the folder", &a, || Ok(a.info()?["bundles"].as_u64() == Some(0)))?;
    let tx = t.elapsed();

    std::fs::rename(&at_a, &at_b).context("moving the stick to B")?;
    let inbox = at_b.join(encode_node(NODE_B)?).join(encode_node(NODE_A)?);
    let t = Instant::now();
    b.sync(&at_b)?;
    wait("B to take every bundle from the folder", &b, || {
        Ok(count_files(&inbox)? == 0 && b.info()?["bundles"].as_u64() >= Some(count))
    })?;
    let rx = t.elapsed();
    let written = (a.write_bytes() + b.write_bytes()).saturating_sub(before);

    let identical = fetch_and_compare(&b, count, size)?;
    let mut m = stage_report(count, size, ingest, tx, rx);
    m.insert("bytes_written_by_both_ferryd_in_tx_rx".into(), json!(written));
    m.insert("measured_writes_per_payload_byte".into(), json!(round3(written as f64 / (count * size) as f64)));
    m.insert("payloads_byte_identical".into(), json!(identical));
    Ok(Value::Object(m))
}

/// Creates `count` bundles at A with `concurrency` threads, each waiting for
/// ferryd's answer (the bundle is durable) before its next.
fn send_all(api: &str, count: u64, size: u64, concurrency: u64) -> Result<()> {
    let threads = concurrency.clamp(1, count.max(1));
    let url = format!("{api}/send?dst={NODE_B}{SINK}&lifetime=1h");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let url = url.clone();
                s.spawn(move || -> Result<()> {
                    let http = http()?;
                    for i in (t..count).step_by(threads as usize) {
                        let r = http.post(&url).body(payload(i, size)).send().context("POST /send to A")?;
                        anyhow::ensure!(r.status().is_success(), "A refused /send: {}", r.status());
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| h.join().map_err(|_| anyhow!("a sending thread panicked"))?)
    })
}

/// Takes every bundle from B's sink and checks each payload.
fn fetch_and_compare(b: &Ferryd, count: u64, size: u64) -> Result<bool> {
    let mut seen = vec![false; count as usize];
    for _ in 0..count {
        let bytes = b.get_bytes(&format!("/endpoint?{SINK}"))?;
        let bundle = ferry_core::node::decode_stored(&bytes).map_err(|e| anyhow!("B delivered a bad bundle: {e}"))?;
        let p = &bytes[bundle.payload().data.clone()];
        let i = p.get(..8).and_then(|h| h.try_into().ok()).map(u64::from_le_bytes).context("payload too short")?;
        let Some(slot) = usize::try_from(i).ok().and_then(|i| seen.get_mut(i)) else { return Ok(false) };
        if *slot || p != payload(i, size).as_slice() {
            return Ok(false);
        }
        *slot = true;
    }
    Ok(seen.iter().all(|s| *s))
}

fn nncp_workload(dir: &Path, count: u64, size: u64) -> Result<Value> {
    let base = dir.join(format!("nncp-{}", super::bench_link::size_name(size)));
    let (src, stick, incoming) = (base.join("src"), base.join("stick"), base.join("b-in"));
    for d in [&src, &stick, &incoming, &base.join("a-spool"), &base.join("b-spool")] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let (cfg_a, cfg_b) = nncp_configs(&base, &incoming)?;
    for i in 0..count {
        std::fs::write(src.join(format!("f{i}")), payload(i, size)).context("writing NNCP's source files")?;
    }
    let t = Instant::now();
    for i in 0..count {
        let f = src.join(format!("f{i}"));
        nncp(&cfg_a, &["nncp-file", "-quiet"], &[f.to_str().context("path")?, &format!("b:f{i}")])?;
    }
    let ingest = t.elapsed();
    let stick_s = stick.to_str().context("path")?;
    let t = Instant::now();
    nncp(&cfg_a, &["nncp-xfer", "-quiet", "-mkdir", "-tx"], &[stick_s])?;
    let tx = t.elapsed();
    let t = Instant::now();
    nncp(&cfg_b, &["nncp-xfer", "-quiet", "-rx"], &[stick_s])?;
    nncp(&cfg_b, &["nncp-toss", "-quiet"], &[])?;
    let rx = t.elapsed();
    let identical =
        (0..count).all(|i| std::fs::read(incoming.join(format!("f{i}"))).is_ok_and(|b| b == payload(i, size)));
    let mut m = stage_report(count, size, ingest, tx, rx);
    m.insert("payloads_byte_identical".into(), json!(identical));
    Ok(Value::Object(m))
}

/// Two NNCP nodes, a and b, that know each other; b takes files from a
/// into `incoming`. Returns their config files.
fn nncp_configs(base: &Path, incoming: &Path) -> Result<(PathBuf, PathBuf)> {
    let keys = |_: u8| -> Result<Value> {
        let out = Command::new("nncp-cfgnew").arg("-nocomments").stdin(Stdio::null()).output()?;
        anyhow::ensure!(out.status.success(), "nncp-cfgnew failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let block = text.split("self: {").nth(1).and_then(|s| s.split('}').next()).context("nncp-cfgnew's output")?;
        let mut m = serde_json::Map::new();
        for line in block.lines() {
            if let Some((k, v)) = line.trim().split_once(": ") {
                m.insert(k.to_owned(), json!(v.trim()));
            }
        }
        Ok(Value::Object(m))
    };
    let public = |k: &Value| json!({ "id": k["id"], "exchpub": k["exchpub"], "signpub": k["signpub"], "noisepub": k["noisepub"] });
    let (ka, kb) = (keys(0)?, keys(1)?);
    let mut a_for_b = public(&ka);
    a_for_b["incoming"] = json!(incoming);
    let cfg = |me: &str, keys: &Value, peer: &str, peer_keys: Value| {
        json!({
            "spool": base.join(format!("{me}-spool")),
            "log": base.join(format!("{me}.log")),
            "self": keys,
            "neigh": { "self": public(keys), peer: peer_keys },
        })
    };
    let (pa, pb) = (base.join("a.json"), base.join("b.json"));
    std::fs::write(&pa, cfg("a", &ka, "b", public(&kb)).to_string())?;
    std::fs::write(&pb, cfg("b", &kb, "a", a_for_b).to_string())?;
    Ok((pa, pb))
}

/// Runs an NNCP command with `-cfg cfg`; fails with its output if it fails.
fn nncp(cfg: &Path, cmd: &[&str], rest: &[&str]) -> Result<()> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .arg("-cfg")
        .arg(cfg)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", cmd[0]))?;
    if !out.status.success() {
        bail!("{} failed ({}): {}", cmd.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

fn nncp_version() -> Option<String> {
    let out = Command::new("nncp-file").arg("-version").stdin(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines().next().map(|l| l.trim().to_owned())
}

fn which(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// Files (not folders) in `dir`; 0 if it is not there.
fn count_files(dir: &Path) -> Result<usize> {
    match std::fs::read_dir(dir) {
        Ok(entries) => Ok(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_file())).count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("cannot list {}", dir.display())),
    }
}

/// Waits (bounded) until `done` holds.
fn wait(what: &str, d: &Ferryd, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + STAGE_TIMEOUT;
    while !done()? {
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}; log:\n{}", d.log_tail());
        }
        std::thread::sleep(CHECK_EVERY);
    }
    Ok(())
}

fn http() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .no_proxy()
        .build()
        .context("cannot set up the HTTP client")
}

/// A ferryd with the usbdir plugin; killed on drop.
struct Ferryd {
    child: Child,
    api: String,
    log: PathBuf,
    http: reqwest::blocking::Client,
}

impl Ferryd {
    fn start(
        exe: &Path,
        plugin: &Path,
        base: &Path,
        node: &str,
        folder: &Path,
        nodes: &[&str],
        rust_log: &str,
    ) -> Result<Ferryd> {
        let name = node.trim_start_matches("dtn://").trim_end_matches('/');
        let s = |p: &Path| toml::Value::String(p.display().to_string());
        let nodes: Vec<toml::Value> = nodes.iter().map(|n| toml::Value::String((*n).to_owned())).collect();
        let config = base.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "node_id = \"{node}\"\n[[cla]]\npath = {}\n[cla.settings]\npath = {}\nstate_dir = {}\nnodes = {}\n",
                s(plugin),
                s(folder),
                s(&base.join(format!("{name}-usbdir"))),
                toml::Value::Array(nodes)
            ),
        )
        .with_context(|| format!("cannot write {}", config.display()))?;
        let log = base.join(format!("{name}.log"));
        let child = Command::new(exe)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(base.join(name))
            .args(["--api", "127.0.0.1:0", "--no-default-cla"])
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let mut d = Ferryd { child, api: String::new(), log, http: http()? };
        let stdout = d.child.stdout.take().context("ferryd's stdout")?;
        let (tx, rx) = mpsc::channel();
        // Reads ferryd's stdout to the end so that ferryd never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix(LISTENING) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        match rx.recv_timeout(SPAWN_TIMEOUT) {
            Ok(addr) => d.api = format!("http://{addr}"),
            Err(_) => bail!("ferryd {node} did not report its API address in time; log:\n{}", d.log_tail()),
        }
        Ok(d)
    }

    fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let r = self.http.get(format!("{}{path}", self.api)).send().with_context(|| format!("GET {path}"))?;
        let status = r.status();
        let body = r.bytes().with_context(|| format!("GET {path}"))?.to_vec();
        anyhow::ensure!(status.is_success(), "GET {path}: {status}: {}", String::from_utf8_lossy(&body));
        Ok(body)
    }

    fn get(&self, path: &str) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.get_bytes(path)?).into_owned())
    }

    fn info(&self) -> Result<Value> {
        serde_json::from_str(&self.get("/status/info")?).context("/status/info is not JSON")
    }

    /// What `ferry usb sync` asks for: look at the folder now.
    fn sync(&self, folder: &Path) -> Result<()> {
        let path = super::fmt::query_encode(folder.to_str().context("path")?);
        self.get(&format!("/ferry/usb/sync?path={path}&nonce=bench")).map(|_| ())
    }

    fn write_bytes(&self) -> u64 {
        let io = std::fs::read_to_string(format!("/proc/{}/io", self.child.id())).unwrap_or_default();
        io.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Ferryd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_differ_and_carry_their_index() {
        let (a, b) = (payload(1, 1024), payload(2, 1024));
        assert_eq!((a.len(), b.len()), (1024, 1024));
        assert_ne!(a, b);
        assert_eq!(u64::from_le_bytes(a[..8].try_into().unwrap()), 1);
        assert_eq!(payload(3, 5).len(), 5);
    }

    #[test]
    fn goals_compare_against_the_disk() {
        let ferry = [
            json!({"payload_bytes": 1024, "folder_bundles_per_s": 3500.0}),
            json!({"payload_bytes": 50u64 << 20, "folder_mb_per_s": 120.0, "measured_writes_per_payload_byte": 3.0}),
        ];
        let nncp = [json!({"payload_bytes": 50u64 << 20, "folder_mb_per_s": 90.0})];
        let g = goals(&ferry, &nncp, 600.0);
        assert_eq!(g["small_bundles_per_s"]["met"], true);
        assert_eq!(g["large_mb_per_s"]["goal_half_of_disk_over_writes"], 100.0);
        assert_eq!(g["large_mb_per_s"]["met"], true);
        let g = goals(&ferry, &nncp, 900.0);
        assert_eq!(g["large_mb_per_s"]["met"], false);
    }
}
