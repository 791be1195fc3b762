//! Soak: bundles at a fixed rate through a chain of three ferryd with
//! durable stores and static routes, A → B → C over the TCP plugin on
//! loopback, to an app at C
//! (a `/ws` subscriber). Every few seconds each node's resident memory, open
//! file descriptors, store (bundles, bytes, size on disk) and the latency of
//! the bundles the app received are sampled. When the traffic stops the
//! chain drains, and a few more samples show where it settles.
//!
//! It passes when every bundle A acknowledged reached the app once, every
//! store is back to no bundles, the descriptors are where they started and
//! memory did not keep growing. It writes the samples as CSV and a plot as
//! SVG (`$FERRY_SOAK_OUT`, else `<target>/tmp/soak/`) and prints a JSON line
//! of figures. CI runs 20 seconds; RELIABILITY.md's hour comes from
//!
//! ```sh
//! FERRY_SOAK_SECS=3600 FERRY_SOAK_RATE=100 FERRY_SOAK_SAMPLE_SECS=10 \
//!   cargo test -p ferry-daemon --test soak -- --nocapture
//! ```

mod api_support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use api_support::{free_port, tcp_plugin, Ferryd};
use tokio_tungstenite::tungstenite::{self, Message};

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// A chain node: `dtn://<name>/` listening on `listen`, dialing `peer`.
/// Static routing, as an operator would set up a fixed chain: bundles for C
/// go through `via`, and a node keeps no copy of what the next hop took (so
/// the stores drain when the traffic stops; epidemic routing would keep
/// every copy until it expires).
fn node(dir: &Path, name: &str, listen: u16, peer: Option<u16>, via: Option<&str>) -> Ferryd {
    let peers = peer.map(|p| format!("\"tcpcl://127.0.0.1:{p}\"")).unwrap_or_default();
    let route = via.map(|v| format!("[[routes]]\npattern = \"dtn://c/*\"\nvia = \"dtn://{v}/\"\n")).unwrap_or_default();
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "node_id = \"dtn://{name}/\"\nrouter = \"static\"\n{route}[[cla]]\npath = \"{}\"\n[cla.settings]\n\
             listen = [\"127.0.0.1:{listen}\"]\npeers = [{peers}]\n",
            tcp_plugin().display()
        ),
    )
    .unwrap();
    Ferryd::start_logging(&dir.join(name), "warn", &["--config", config.to_str().unwrap()])
}

/// One node at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct NodeSample {
    rss_kib: u64,
    fds: u64,
    store_bundles: u64,
    store_bytes: u64,
    disk_kib: u64,
}

#[derive(Debug, Clone)]
struct Sample {
    /// Seconds since the traffic started.
    t: f64,
    nodes: [NodeSample; 3],
    acked: u64,
    delivered: u64,
    /// Latency of the bundles delivered since the previous sample, ms.
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Bytes of the files under `dir` (depth-bounded: a store is two levels deep).
fn dir_bytes(dir: &Path, depth: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() && depth > 0 => dir_bytes(&e.path(), depth - 1),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

/// The app at C: `/ws` subscriber to `sink` (JSON records), noting each
/// payload's sequence number and its latency (the sender put its clock in).
fn app(addr: String, got: Arc<Mutex<BTreeMap<u64, u32>>>, latencies: Arc<Mutex<Vec<f64>>>, stop: Arc<AtomicBool>) {
    let stream = TcpStream::connect(&addr).expect("connect to C");
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/ws"), stream).expect("websocket");
    ws.send(Message::text("/json")).unwrap();
    ws.send(Message::text("/subscribe sink")).unwrap();
    while !stop.load(Ordering::Relaxed) {
        match ws.read() {
            Ok(Message::Binary(record)) => {
                let v: serde_json::Value = serde_json::from_slice(&record).expect("a JSON record");
                use base64::Engine as _;
                let payload =
                    base64::engine::general_purpose::STANDARD.decode(v["data"].as_str().expect("data")).expect("b64");
                let text = String::from_utf8_lossy(&payload);
                let mut words = text.split_whitespace();
                let (Some("seq"), Some(seq), Some("t"), Some(t)) =
                    (words.next(), words.next(), words.next(), words.next())
                else {
                    panic!("unexpected payload {text:?}")
                };
                let (seq, t): (u64, u64) = (seq.parse().unwrap(), t.parse().unwrap());
                *got.lock().unwrap().entry(seq).or_default() += 1;
                latencies.lock().unwrap().push(now_micros().saturating_sub(t) as f64 / 1000.0);
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("the app's websocket failed: {e}"),
        }
    }
}

#[test]
fn a_steady_load_through_a_chain_leaves_memory_descriptors_and_stores_flat() {
    let secs = env_or("FERRY_SOAK_SECS", 20);
    let rate = env_or("FERRY_SOAK_RATE", 100).max(1);
    let size = env_or("FERRY_SOAK_SIZE", 1024).max(64) as usize;
    let period = Duration::from_secs(env_or("FERRY_SOAK_SAMPLE_SECS", 2).max(1));
    let out_dir = std::env::var_os("FERRY_SOAK_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("soak"));
    std::fs::create_dir_all(&out_dir).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (pa, pb, pc) = (free_port(), free_port(), free_port());
    let c = node(dir.path(), "c", pc, None, None);
    let b = node(dir.path(), "b", pb, Some(pc), None);
    let a = node(dir.path(), "a", pa, Some(pb), Some("b"));
    c.get_ok("/register?sink");
    let nodes = [&a, &b, &c];
    let stores: Vec<PathBuf> = ["a", "b", "c"].iter().map(|n| dir.path().join(n).join("store")).collect();

    let got = Arc::new(Mutex::new(BTreeMap::new()));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let app_thread = {
        let (addr, got, latencies, stop) = (c.addr.clone(), got.clone(), latencies.clone(), stop.clone());
        std::thread::spawn(move || app(addr, got, latencies, stop))
    };
    // Let the chain's sessions come up before the clock starts.
    a.eventually("A's session to B", Duration::from_secs(30), || {
        a.get("/status/info").json()["peers_connected"].as_u64() == Some(1)
    });
    b.eventually("B's session to C", Duration::from_secs(30), || {
        b.get("/status/info").json()["peers_connected"].as_u64() >= Some(1)
    });

    let acked = Arc::new(AtomicU64::new(0));
    let sending = Arc::new(AtomicBool::new(true));
    let start = Instant::now();
    let sender = {
        let (addr, acked, sending) = (a.addr.clone(), acked.clone(), sending.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let url = format!("http://{addr}/send?dst=dtn://c/sink&lifetime=1h");
            let total = secs * rate;
            for i in 0..total {
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let mut payload = format!("seq {i} t {} ", now_micros()).into_bytes();
                payload.resize(size, b'.');
                if http.post(&url).body(payload).send().is_ok_and(|r| r.status().is_success()) {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            sending.store(false, Ordering::Relaxed);
        })
    };

    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let info = |f: &Ferryd| -> serde_json::Value {
        http.get(format!("http://{}/status/info", f.addr))
            .send()
            .and_then(|r| r.bytes())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let mut samples: Vec<Sample> = Vec::new();
    let drain_limit = Duration::from_secs(secs) + Duration::from_secs(60 + secs / 10);
    let mut settled_samples = 0;
    let mut next = start;
    // Bounded: the traffic phase, then at most `drain_limit` more.
    while start.elapsed() < drain_limit + Duration::from_secs(secs) {
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let mut s = Sample {
            t: start.elapsed().as_secs_f64(),
            nodes: [NodeSample::default(); 3],
            acked: acked.load(Ordering::Relaxed),
            delivered: got.lock().unwrap().len() as u64,
            p50_ms: None,
            p99_ms: None,
        };
        let mut window = std::mem::take(&mut *latencies.lock().unwrap());
        window.sort_by(f64::total_cmp);
        (s.p50_ms, s.p99_ms) = (percentile(&window, 0.5), percentile(&window, 0.99));
        for (i, f) in nodes.iter().enumerate() {
            let v = info(f);
            s.nodes[i] = NodeSample {
                rss_kib: proc_status_kib(f.pid(), "VmRSS:"),
                fds: open_fds(f.pid()),
                store_bundles: v["store_bundles"].as_u64().unwrap_or(u64::MAX),
                store_bytes: v["store_bytes"].as_u64().unwrap_or(u64::MAX),
                disk_kib: dir_bytes(&stores[i], 2) / 1024,
            };
        }
        let drained =
            !sending.load(Ordering::Relaxed) && s.delivered >= s.acked && s.nodes.iter().all(|n| n.store_bundles == 0);
        samples.push(s);
        if drained {
            settled_samples += 1;
            // Samples for 12 s after the drain show where memory and the
            // stores settle (an idle store flushes its log after 5 s).
            if settled_samples as u64 * period.as_secs() > 12 {
                break;
            }
        }
        if start.elapsed() > Duration::from_secs(secs) + drain_limit {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    app_thread.join().unwrap();

    write_csv(&out_dir.join("soak.csv"), &samples);
    std::fs::write(out_dir.join("soak.svg"), plot(&samples, secs as f64)).unwrap();
    let counts = got.lock().unwrap();
    let duplicates = counts.values().filter(|&&n| n > 1).count();
    let acked = acked.load(Ordering::Relaxed);
    let traffic: Vec<&Sample> = samples.iter().filter(|s| s.t <= secs as f64).collect();
    let last = samples.last().expect("samples").clone();
    let first = samples.first().expect("samples").clone();
    let rss_at = |frac: f64, i: usize| {
        traffic.iter().filter(|s| s.t <= secs as f64 * frac).map(|s| s.nodes[i].rss_kib).max().unwrap_or(0)
    };
    let mut all_p99: Vec<f64> = samples.iter().filter_map(|s| s.p99_ms).collect();
    all_p99.sort_by(f64::total_cmp);
    let summary = serde_json::json!({
        "seconds": secs, "rate": rate, "payload_bytes": size,
        "acknowledged": acked, "delivered": counts.len(), "duplicates": duplicates,
        "rss_kib_after_a_third": [rss_at(1.0 / 3.0, 0), rss_at(1.0 / 3.0, 1), rss_at(1.0 / 3.0, 2)],
        "rss_kib_peak": [rss_at(1.0, 0), rss_at(1.0, 1), rss_at(1.0, 2)],
        "rss_kib_end": last.nodes.map(|n| n.rss_kib),
        "fds_start": first.nodes.map(|n| n.fds), "fds_end": last.nodes.map(|n| n.fds),
        "store_disk_kib_start": first.nodes.map(|n| n.disk_kib), "store_disk_kib_end": last.nodes.map(|n| n.disk_kib),
        "store_bundles_end": last.nodes.map(|n| n.store_bundles),
        "latency_ms_p50_median": percentile(&{
            let mut v: Vec<f64> = samples.iter().filter_map(|s| s.p50_ms).collect();
            v.sort_by(f64::total_cmp);
            v
        }, 0.5),
        "latency_ms_p99_worst_window": all_p99.last(),
        "samples": samples.len(),
        "plot": out_dir.join("soak.svg"),
    });
    println!("soak: {summary}");

    assert_eq!(counts.len() as u64, acked, "every acknowledged bundle reaches the app: {summary}");
    assert_eq!(duplicates, 0, "{summary}");
    assert!(acked >= secs * rate * 9 / 10, "A acknowledged most of what was sent: {summary}");
    for (i, n) in last.nodes.iter().enumerate() {
        assert_eq!((n.store_bundles, n.store_bytes), (0, 0), "node {i}'s store drained: {summary}");
        // RocksDB's table files are open while they exist: their number
        // rises between compactions and falls with them (the hour's plot).
        assert!(n.fds <= first.nodes[i].fds + 32, "node {i}'s descriptors: {summary}");
        // Back to what it held: no bundle, and the log flushed away.
        assert!(n.disk_kib <= first.nodes[i].disk_kib + 16 * 1024, "node {i}'s store on disk: {summary}");
        // Flat memory: what a node holds at the end of the traffic is not
        // far above what it held a third of the way in (allocator slack and
        // the store's caches warm up in the first third).
        let early = rss_at(1.0 / 3.0, i);
        assert!(rss_at(1.0, i) <= early + early / 2 + 16 * 1024, "node {i}'s memory kept growing: {summary}");
    }
}

fn write_csv(path: &Path, samples: &[Sample]) {
    let mut s = String::from("t_s,acked,delivered,latency_p50_ms,latency_p99_ms");
    for n in ["a", "b", "c"] {
        let _ = write!(s, ",{n}_rss_kib,{n}_fds,{n}_store_bundles,{n}_store_bytes,{n}_store_disk_kib");
    }
    s.push('\n');
    for x in samples {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
        let _ = write!(s, "{:.1},{},{},{},{}", x.t, x.acked, x.delivered, opt(x.p50_ms), opt(x.p99_ms));
        for n in &x.nodes {
            let _ = write!(s, ",{},{},{},{},{}", n.rss_kib, n.fds, n.store_bundles, n.store_bytes, n.disk_kib);
        }
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
}

/// Four panels over time: resident memory, descriptors, store size on disk
/// (each per node), and latency (p50, p99 per sampling window); a dashed
/// line where the traffic stopped.
fn plot(samples: &[Sample], traffic_secs: f64) -> String {
    const W: f64 = 760.0;
    const PANEL: f64 = 170.0;
    const LEFT: f64 = 70.0;
    const COLORS: [&str; 3] = ["#1f77b4", "#d62728", "#2ca02c"];
    type Series<'a> = (&'a str, Box<dyn Fn(&Sample) -> Option<f64> + 'a>);
    let panels: Vec<(&str, Vec<Series>)> = vec![
        (
            "resident memory (MiB)",
            (0..3)
                .map(|i| {
                    (["A", "B", "C"][i], Box::new(move |s: &Sample| Some(s.nodes[i].rss_kib as f64 / 1024.0)) as _)
                })
                .collect(),
        ),
        (
            "open file descriptors",
            (0..3)
                .map(|i| (["A", "B", "C"][i], Box::new(move |s: &Sample| Some(s.nodes[i].fds as f64)) as _))
                .collect(),
        ),
        (
            "store on disk (MiB)",
            (0..3)
                .map(|i| {
                    (["A", "B", "C"][i], Box::new(move |s: &Sample| Some(s.nodes[i].disk_kib as f64 / 1024.0)) as _)
                })
                .collect(),
        ),
        (
            "latency A to app at C (ms)",
            vec![("p50", Box::new(|s: &Sample| s.p50_ms) as _), ("p99", Box::new(|s: &Sample| s.p99_ms) as _)],
        ),
    ];
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let x = |t: f64| LEFT + (W - LEFT - 20.0) * t / t_max;
    let height = 42.0 + panels.len() as f64 * (PANEL + 40.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{height}\" font-family=\"sans-serif\" \
         font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"13\">Ferry soak: A → B → C, {} samples over {t_max:.0} s (traffic \
         for {traffic_secs:.0} s)</text>\n",
        samples.len()
    );
    for (k, (title, series)) in panels.iter().enumerate() {
        let top = 52.0 + k as f64 * (PANEL + 40.0);
        let values: Vec<f64> = series.iter().flat_map(|(_, f)| samples.iter().filter_map(f)).collect();
        let v_max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-9) * 1.1;
        let y = |v: f64| top + PANEL - PANEL * v / v_max;
        let _ = writeln!(
            svg,
            "<text x=\"{LEFT}\" y=\"{}\">{title}</text>\n<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{LEFT}\" y2=\"{}\" \
             stroke=\"black\"/>\n<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v_max:.1}</text>\n<text x=\"{}\" y=\"{}\" \
             text-anchor=\"end\">0</text>\n<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{t_max:.0} s</text>\n\
             <line x1=\"{}\" y1=\"{top}\" x2=\"{}\" y2=\"{}\" stroke=\"gray\" stroke-dasharray=\"4 3\"/>",
            top - 6.0,
            top,
            top + PANEL,
            top + PANEL,
            W - 20.0,
            top + PANEL,
            LEFT - 4.0,
            top + 10.0,
            LEFT - 4.0,
            top + PANEL,
            W - 20.0,
            top + PANEL + 14.0,
            x(traffic_secs),
            x(traffic_secs),
            top + PANEL,
        );
        for (j, (name, f)) in series.iter().enumerate() {
            let points: Vec<String> =
                samples.iter().filter_map(|s| f(s).map(|v| format!("{:.1},{:.1}", x(s.t), y(v)))).collect();
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"/>\n\
                 <text x=\"{}\" y=\"{}\" fill=\"{}\">{name}</text>",
                COLORS[j % 3],
                points.join(" "),
                W - 60.0,
                top + 12.0 + 13.0 * j as f64,
                COLORS[j % 3],
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}
