//! `ferry bench apps`: figures of the WebAssembly app host, printed as JSON.
//!
//! - `bundles_per_s`: a spawned ferryd holds N bundles for a stopped no-op
//!   app; the app is started and the bench times until it has taken them all
//!   (each confirmed, so deleted from the store). That is the app host's
//!   delivery rate: read from the store, one `on-bundle` call each, deletions
//!   in shared writes.
//! - `cold_start_ms`: the app stopped and started again K times; ferryd
//!   reports each instantiation plus `start` (the component is compiled once
//!   per ferryd run; `compile_ms` is that).
//! - `memory`: ferryd's resident memory with A copies of the no-op app
//!   running, minus without apps, per app; and the linear memory each
//!   instance holds.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

use super::bench::{proc_status_kib, Spawned};
use super::client::Api;

#[derive(Debug, Args)]
pub struct AppsArgs {
    /// The no-op app's component (wasm-apps/target/wasm32-wasip2/release/ferry_app_noop.wasm).
    #[arg(long, value_name = "FILE")]
    pub component: PathBuf,
    /// Bundles to deliver through the app.
    #[arg(long, default_value_t = 50_000)]
    pub bundles: u64,
    /// Stop/start cycles for the cold-start figure.
    #[arg(long, default_value_t = 20)]
    pub starts: u32,
    /// Apps loaded at once for the memory figure.
    #[arg(long, default_value_t = 20)]
    pub apps: u32,
    /// The ferryd to run (default: next to this program).
    #[arg(long, value_name = "FILE")]
    pub ferryd: Option<PathBuf>,
    /// Give up a phase after this long.
    #[arg(long, default_value = "5m")]
    pub max_time: String,
}

/// A config with `n` no-op apps `noop0..`, on endpoints of the same names.
fn config(dir: &Path, component: &Path, n: u32, autostart: bool) -> Result<PathBuf> {
    let mut text = String::from("node_id = \"dtn://bench/\"\n");
    for i in 0..n {
        text.push_str(&format!(
            "[[app]]\nname = \"noop{i}\"\ncomponent = \"{}\"\nendpoints = [\"noop{i}\"]\nautostart = {autostart}\n",
            component.display()
        ));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("apps-{n}.toml"));
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn spawn(ferryd: Option<&Path>, config: &Path) -> Result<Spawned> {
    Spawned::start_with(ferryd, &[OsString::from("--config"), config.as_os_str().to_owned()])
}

fn app(api: &Api, name: &str) -> Result<Value> {
    let list: Value = api.get("/ferry/apps")?.json()?;
    list.as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name).cloned())
        .with_context(|| format!("ferryd lists no app {name}"))
}

/// Polls until `f` holds, at most `limit`.
fn until(limit: Duration, what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("gave up waiting for {what} after {limit:?}")
}

/// Sends `n` small bundles to `dst` from a few threads.
fn load(api: &str, dst: &str, n: u64) -> Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let next = Arc::clone(&next);
            let api = Api::new(api);
            let path = format!("/send?dst={dst}&lifetime=1h");
            std::thread::spawn(move || -> Result<()> {
                let api = api?;
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    api.post(&path, b"x".to_vec())?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
    }
    Ok(())
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn run(args: &AppsArgs) -> Result<ExitCode> {
    anyhow::ensure!(
        args.component.is_file(),
        "--component {}: no such file (build wasm-apps first)",
        args.component.display()
    );
    anyhow::ensure!(args.bundles > 0 && args.starts > 0 && args.apps > 0, "counts must be at least 1");
    let limit = humantime::parse_duration(&args.max_time).with_context(|| format!("--max-time {}", args.max_time))?;
    let component = std::fs::canonicalize(&args.component)?;
    let dir = std::env::temp_dir().join(format!("ferry-bench-apps-{}", std::process::id()));
    let ferryd = args.ferryd.as_deref();

    // Throughput and cold start, one app.
    let one = spawn(ferryd, &config(&dir, &component, 1, false)?)?;
    let api = Api::new(&one.api)?;
    let loading = Instant::now();
    load(&one.api, "dtn://bench/noop0", args.bundles)?;
    let load_s = loading.elapsed().as_secs_f64();
    let started = Instant::now();
    api.post("/ferry/apps/start?name=noop0", vec![])?;
    until(limit, "the app to take every bundle", || {
        Ok(app(&api, "noop0")?["delivered"].as_u64() == Some(args.bundles))
    })?;
    let drain_s = started.elapsed().as_secs_f64();
    let first = app(&api, "noop0")?;
    let mut starts = vec![];
    for _ in 0..args.starts {
        api.post("/ferry/apps/stop?name=noop0", vec![])?;
        until(limit, "the app to stop", || Ok(app(&api, "noop0")?["state"] == "stopped"))?;
        let before = app(&api, "noop0")?["restarts"].as_u64();
        api.post("/ferry/apps/start?name=noop0", vec![])?;
        until(limit, "the app to start", || {
            let a = app(&api, "noop0")?;
            Ok(a["state"] == "running" && a["restarts"].as_u64() != before)
        })?;
        if let Some(ms) = app(&api, "noop0")?["cold_start_ms"].as_f64() {
            starts.push(ms);
        }
    }
    drop(one);
    starts.sort_by(f64::total_cmp);
    let median = starts.get(starts.len() / 2).copied();

    // Memory: ferryd with no app, then with `apps` running.
    let rss = |n: u32| -> Result<(Option<u64>, Value)> {
        let s = spawn(ferryd, &config(&dir, &component, n, true)?)?;
        let api = Api::new(&s.api)?;
        if n > 0 {
            until(limit, "every app to run", || {
                let list: Value = api.get("/ferry/apps")?.json()?;
                Ok(list.as_array().is_some_and(|a| a.iter().all(|x| x["state"] == "running")))
            })?;
        }
        // Let start-up settle before reading the resident set.
        std::thread::sleep(Duration::from_millis(500));
        let kib = proc_status_kib(s.child.id(), "VmRSS:");
        let linear = if n > 0 { app(&api, "noop0")?["memory_bytes"].clone() } else { Value::Null };
        Ok((kib, linear))
    };
    let (base_kib, _) = rss(0)?;
    let (loaded_kib, linear) = rss(args.apps)?;
    let per_app_kib = base_kib.zip(loaded_kib).map(|(b, l)| round(l.saturating_sub(b) as f64 / f64::from(args.apps)));
    let _ = std::fs::remove_dir_all(&dir);

    // u64 → f64: exact far beyond any count a bench reaches.
    let report = json!({
        "bundles": args.bundles,
        "load_s": round(load_s),
        "drain_s": round(drain_s),
        "bundles_per_s": round(args.bundles as f64 / drain_s),
        "compile_ms": first["compile_ms"],
        "cold_start_ms": { "median": median.map(round), "min": starts.first().copied().map(round), "max": starts.last().copied().map(round), "samples": starts.len() },
        "memory": { "apps": args.apps, "ferryd_rss_kib_without_apps": base_kib, "ferryd_rss_kib_with_apps": loaded_kib, "rss_kib_per_app": per_app_kib, "linear_memory_bytes_per_app": linear },
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_else(|_| report.to_string()));
    Ok(ExitCode::SUCCESS)
}
