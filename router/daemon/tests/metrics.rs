//! `GET /metrics` on real ferryd processes: the exposition format holds
//! (every family announced with HELP and TYPE, names with the `ferry_`
//! prefix, counters ending in `_total`, numbers as values), and the
//! counters move when a bundle crosses from A to B over the TCP plugin.

mod api_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use api_support::{free_port, tcp_plugin, Ferryd};

fn node(dir: &Path, name: &str, listen: u16, peer: Option<u16>, extra: &str) -> Ferryd {
    let peers = peer.map(|p| format!("\"tcpcl://127.0.0.1:{p}\"")).unwrap_or_default();
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "node_id = \"dtn://{name}/\"\n[[cla]]\npath = \"{}\"\n[cla.settings]\nlisten = [\"127.0.0.1:{listen}\"]\n\
             peers = [{peers}]\n{extra}",
            tcp_plugin().display()
        ),
    )
    .unwrap();
    Ferryd::start_with(&dir.join(name), &["--config", cfg.to_str().unwrap()])
}

/// Parses the text format strictly; sample (`name{labels}`) → value.
fn scrape(f: &Ferryd) -> BTreeMap<String, f64> {
    let a = f.get("/metrics");
    assert_eq!(a.status, 200);
    let text = a.text();
    let mut announced: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.is_empty(), "{line}");
            helped.insert(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            assert!(announced.insert(name.to_owned(), kind.to_owned()).is_none(), "announced twice: {line}");
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample value");
            let name = series.split('{').next().unwrap();
            let kind = announced.get(name).unwrap_or_else(|| panic!("sample of an unannounced family: {line}"));
            assert!(
                name.starts_with("ferry_")
                    && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{line}"
            );
            assert_eq!(kind == "counter", name.ends_with("_total"), "counters and only counters end in _total: {line}");
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                }
            }
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
            assert!(v >= 0.0, "{line}");
            assert!(samples.insert(series.to_owned(), v).is_none(), "sample twice: {line}");
        }
    }
    samples
}

fn value(m: &BTreeMap<String, f64>, series: &str) -> f64 {
    *m.get(series).unwrap_or_else(|| panic!("no {series} in {m:#?}"))
}

#[test]
fn counters_follow_a_bundle_from_a_to_b() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    // B runs the no-op app (scripts/build-wasm-apps builds it).
    let noop =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wasm-apps/target/wasm32-wasip2/release/ferry_app_noop.wasm");
    assert!(noop.exists(), "{} is not built: run scripts/build-wasm-apps", noop.display());
    let app = format!("[[app]]\nname = \"noop\"\ncomponent = \"{}\"\nendpoints = [\"noop\"]\n", noop.display());
    let b = node(dir.path(), "b", pb, None, &app);
    let a = node(dir.path(), "a", pa, Some(pb), "");
    b.get_ok("/register?inbox");
    let before_a = scrape(&a);
    let payload = vec![b'm'; 5000];
    let sent = a.post("/send?dst=dtn://b/inbox&lifetime=1h", payload.clone());
    assert_eq!(sent.status, 200, "{}", sent.text());
    assert_eq!(b.receive("inbox", Duration::from_secs(20)), payload);
    assert_eq!(a.get("/no/such/route").status, 404);

    a.eventually("A's transmission to settle", Duration::from_secs(20), || {
        scrape(&a).get("ferry_cla_bundles_total{cla=\"tcp\",direction=\"out\"}").copied() == Some(1.0)
    });
    let ma = scrape(&a);
    let mb = scrape(&b);
    let info =
        format!("ferry_info{{node_id=\"dtn://a/\",version=\"{}\",router=\"epidemic\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(value(&ma, &info), 1.0);
    assert!(value(&ma, "ferry_cla_bytes_total{cla=\"tcp\",direction=\"out\"}") > 5000.0);
    assert_eq!(value(&ma, "ferry_cla_sessions_total{cla=\"tcp\"}"), 1.0);
    assert_eq!(value(&ma, "ferry_cla_peers{cla=\"tcp\"}"), 1.0);
    assert_eq!(value(&ma, "ferry_bundles_created_total"), 1.0);
    assert_eq!(value(&ma, "ferry_bundles_forwarded_total"), 1.0);
    assert_eq!(value(&mb, "ferry_bundles_received_total"), 1.0);
    assert_eq!(value(&mb, "ferry_bundles_delivered_total"), 1.0);
    assert_eq!(value(&mb, "ferry_cla_bundles_total{cla=\"tcp\",direction=\"in\"}"), 1.0);
    assert!(value(&mb, "ferry_cla_bytes_total{cla=\"tcp\",direction=\"in\"}") > 5000.0);
    b.eventually("B to delete what it delivered", Duration::from_secs(20), || {
        scrape(&b).get("ferry_bundles_deleted_total{reason=\"delivered\"}").copied() == Some(1.0)
    });
    assert_eq!(value(&scrape(&b), "ferry_store_bundles"), 0.0);
    // The app: one bundle taken, its calls counted and timed.
    let sent = a.post("/send?dst=dtn://b/noop&lifetime=1h", b"for the app".to_vec());
    assert_eq!(sent.status, 200);
    b.eventually("the app to take it", Duration::from_secs(20), || {
        scrape(&b).get("ferry_app_deliveries_total{app=\"noop\"}").copied() == Some(1.0)
    });
    let mb = scrape(&b);
    assert!(value(&mb, "ferry_app_invocations_total{app=\"noop\"}") >= 2.0, "start and on-bundle at least");
    assert!(value(&mb, "ferry_app_seconds_total{app=\"noop\"}") > 0.0);
    assert_eq!(value(&mb, "ferry_app_traps_total{app=\"noop\"}"), 0.0);
    // The API's own answers, by status: the 404 above, and the 200s.
    assert_eq!(value(&ma, "ferry_api_requests_total{code=\"404\"}"), 1.0);
    let before = before_a.get("ferry_api_requests_total{code=\"200\"}").copied().unwrap_or(0.0);
    assert!(value(&ma, "ferry_api_requests_total{code=\"200\"}") > before);
}
