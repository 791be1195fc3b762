//! Prometheus metrics: `GET /metrics`, in the text exposition format
//! (version 0.0.4), behind the same token as the rest of the API.
//!
//! Names follow Prometheus conventions: the `ferry_` prefix, `_total` on
//! counters, base units (bytes, seconds). Counters count since ferryd
//! started.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ferry_info` | gauge (1) | `node_id`, `version`, `router` |
//! | `ferry_uptime_seconds` | gauge | |
//! | `ferry_bundles_received_total` | counter | (from peers) |
//! | `ferry_bundles_created_total` | counter | (by this node: API, apps, reports) |
//! | `ferry_bundles_delivered_total` | counter | |
//! | `ferry_bundles_forwarded_total` | counter | |
//! | `ferry_bundles_duplicate_total` | counter | |
//! | `ferry_bundles_invalid_total` | counter | |
//! | `ferry_bundles_deleted_total` | counter | `reason`: `delivered`, `forwarded`, or the RFC 9171 reason (`lifetime_expired`, `hop_limit_exceeded`, `failed_security_operation`, …) |
//! | `ferry_bundles` | gauge | (held by the node) |
//! | `ferry_store_bundles`, `ferry_store_bytes` | gauge | |
//! | `ferry_peers_connected` | gauge | |
//! | `ferry_cla_sessions_total` | counter | `cla` (peers that came up) |
//! | `ferry_cla_peers` | gauge | `cla` |
//! | `ferry_cla_bundles_total`, `ferry_cla_bytes_total` | counter | `cla`, `direction` (`in`, `out`) |
//! | `ferry_cla_errors_total` | counter | `cla`, `kind` (`failed`: try again later; `refused`: the peer will not take it) |
//! | `ferry_app_invocations_total`, `ferry_app_deliveries_total`, `ferry_app_failures_total`, `ferry_app_traps_total`, `ferry_app_restarts_total`, `ferry_app_sent_total`, `ferry_app_seconds_total` | counter | `app` |
//! | `ferry_app_memory_bytes` | gauge | `app` |
//! | `ferry_api_requests_total` | counter | `code` (HTTP status) |
//!
//! The counters that ferryd's parts update as things happen (deletions by
//! reason, convergence layers, API requests) live in one registry per
//! process, [`METRICS`], as the Prometheus client libraries keep theirs; the
//! rest is read from the node, its store and its apps at scrape time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ferry_core::admin::ReasonCode;

use crate::apps::AppHost as Apps;
use crate::daemon::Daemon;
use ferry_core::node::TransmitOutcome;

/// What ferryd's parts count as it runs.
#[derive(Debug)]
pub struct Registry {
    deleted: Mutex<BTreeMap<&'static str, u64>>,
    cla: Mutex<BTreeMap<String, ClaCounters>>,
    api: Mutex<BTreeMap<u16, u64>>,
}

/// One convergence-layer plugin's counters.
#[derive(Debug, Clone, Default)]
struct ClaCounters {
    sessions: u64,
    peers: u64,
    bundles_in: u64,
    bytes_in: u64,
    bundles_out: u64,
    bytes_out: u64,
    failed: u64,
    refused: u64,
}

/// The process's registry.
pub static METRICS: Registry = Registry::new();

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is one map update: a panic elsewhere leaves
    // nothing half-done.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub const fn new() -> Registry {
        Registry {
            deleted: Mutex::new(BTreeMap::new()),
            cla: Mutex::new(BTreeMap::new()),
            api: Mutex::new(BTreeMap::new()),
        }
    }

    /// A bundle left the node: delivered (`delivered`), handed on with no
    /// copy kept (no reason), or deleted for `reason`.
    pub fn deleted(&self, reason: Option<ReasonCode>, delivered: bool) {
        let label = match (delivered, reason) {
            (true, _) => "delivered",
            (false, None) => "forwarded",
            (false, Some(r)) => reason_label(r),
        };
        *lock(&self.deleted).entry(label).or_default() += 1;
    }

    fn with_cla(&self, cla: &str, f: impl FnOnce(&mut ClaCounters)) {
        let mut map = lock(&self.cla);
        match map.get_mut(cla) {
            Some(c) => f(c),
            None => f(map.entry(cla.to_owned()).or_default()),
        }
    }

    /// A plugin handed over a bundle of `bytes` octets.
    pub fn cla_received(&self, cla: &str, bytes: usize) {
        self.with_cla(cla, |c| {
            c.bundles_in += 1;
            c.bytes_in += bytes as u64;
        });
    }

    pub fn cla_peer_up(&self, cla: &str) {
        self.with_cla(cla, |c| {
            c.sessions += 1;
            c.peers += 1;
        });
    }

    pub fn cla_peer_down(&self, cla: &str) {
        self.with_cla(cla, |c| c.peers = c.peers.saturating_sub(1));
    }

    /// A transmission of `bytes` octets through a plugin ended.
    pub fn cla_transmitted(&self, cla: &str, bytes: u64, outcome: TransmitOutcome) {
        self.with_cla(cla, |c| match outcome {
            TransmitOutcome::Sent => {
                c.bundles_out += 1;
                c.bytes_out += bytes;
            }
            TransmitOutcome::Failed => c.failed += 1,
            TransmitOutcome::Refused => c.refused += 1,
        });
    }

    /// The API answered with `status`.
    pub fn api_request(&self, status: StatusCode) {
        *lock(&self.api).entry(status.as_u16()).or_default() += 1;
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

/// `LifetimeExpired` → `lifetime_expired`.
fn reason_label(r: ReasonCode) -> &'static str {
    match r {
        ReasonCode::NoInformation => "no_information",
        ReasonCode::LifetimeExpired => "lifetime_expired",
        ReasonCode::ForwardedOverUnidirectionalLink => "forwarded_over_unidirectional_link",
        ReasonCode::TransmissionCanceled => "transmission_canceled",
        ReasonCode::DepletedStorage => "depleted_storage",
        ReasonCode::DestinationEidUnintelligible => "destination_eid_unintelligible",
        ReasonCode::NoKnownRoute => "no_known_route",
        ReasonCode::NoTimelyContact => "no_timely_contact",
        ReasonCode::BlockUnintelligible => "block_unintelligible",
        ReasonCode::HopLimitExceeded => "hop_limit_exceeded",
        ReasonCode::TrafficPared => "traffic_pared",
        ReasonCode::BlockUnsupported => "block_unsupported",
        ReasonCode::MissingSecurityOperation => "missing_security_operation",
        ReasonCode::UnknownSecurityOperation => "unknown_security_operation",
        ReasonCode::UnexpectedSecurityOperation => "unexpected_security_operation",
        ReasonCode::FailedSecurityOperation => "failed_security_operation",
        ReasonCode::ConflictingSecurityOperation => "conflicting_security_operation",
    }
}

/// Writes the text format: `# HELP`, `# TYPE`, then the samples of each
/// family.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Label values escape `\`, `"` and newlines.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[derive(Clone)]
struct MetricsState {
    daemon: Arc<Daemon>,
    apps: Arc<Apps>,
}

/// `GET /metrics`.
pub fn router(daemon: Arc<Daemon>, apps: Arc<Apps>) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(MetricsState { daemon, apps })
}

async fn metrics(State(st): State<MetricsState>) -> Response {
    let store = st.daemon.store_stats().await;
    let text = render(&st.daemon, store.ok().map(|s| (s.bundles, s.bytes)), &st.apps, &METRICS);
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

fn render(d: &Daemon, store: Option<(u64, u64)>, apps: &Apps, reg: &Registry) -> String {
    let mut e = Exposition(String::new());
    e.family("ferry_info", "gauge", "The node: its ID, ferryd's version and the router.");
    let node_id = d.node_id().to_string();
    e.sample(
        "ferry_info",
        &[("node_id", &node_id), ("version", env!("CARGO_PKG_VERSION")), ("router", d.router_name())],
        1,
    );
    e.single("ferry_uptime_seconds", "gauge", "Seconds since ferryd started.", d.uptime().as_secs_f64());
    let s = d.stats();
    for (name, help, v) in [
        ("ferry_bundles_received_total", "Bundles received from peers.", s.received),
        ("ferry_bundles_created_total", "Bundles this node created (API, apps, status reports).", s.created),
        ("ferry_bundles_delivered_total", "Bundles delivered to endpoints on this node.", s.delivered),
        ("ferry_bundles_forwarded_total", "Bundles sent on to peers.", s.forwarded),
        ("ferry_bundles_duplicate_total", "Copies of bundles the node had or had delivered, refused.", s.duplicates),
        ("ferry_bundles_invalid_total", "Received bundles that did not decode or validate.", s.invalid),
    ] {
        e.single(name, "counter", help, v);
    }
    e.family("ferry_bundles_deleted_total", "counter", "Bundles that left the node, by reason.");
    for (reason, n) in lock(&reg.deleted).iter() {
        e.sample("ferry_bundles_deleted_total", &[("reason", reason)], n);
    }
    e.single("ferry_bundles", "gauge", "Bundles the node holds.", d.bundle_count());
    if let Some((bundles, bytes)) = store {
        e.single("ferry_store_bundles", "gauge", "Bundles in the durable store.", bundles);
        e.single("ferry_store_bytes", "gauge", "Bytes of bundles in the durable store.", bytes);
    }
    e.single("ferry_peers_connected", "gauge", "Peers with a link up.", d.connected_peers());

    let cla = lock(&reg.cla).clone();
    e.family("ferry_cla_sessions_total", "counter", "Peers that came up, by convergence-layer plugin.");
    for (name, c) in &cla {
        e.sample("ferry_cla_sessions_total", &[("cla", name)], c.sessions);
    }
    e.family("ferry_cla_peers", "gauge", "Peers up now, by convergence-layer plugin.");
    for (name, c) in &cla {
        e.sample("ferry_cla_peers", &[("cla", name)], c.peers);
    }
    e.family("ferry_cla_bundles_total", "counter", "Bundles received (in) and sent (out) by plugin.");
    for (name, c) in &cla {
        e.sample("ferry_cla_bundles_total", &[("cla", name), ("direction", "in")], c.bundles_in);
        e.sample("ferry_cla_bundles_total", &[("cla", name), ("direction", "out")], c.bundles_out);
    }
    e.family("ferry_cla_bytes_total", "counter", "Bytes of bundles received (in) and sent (out) by plugin.");
    for (name, c) in &cla {
        e.sample("ferry_cla_bytes_total", &[("cla", name), ("direction", "in")], c.bytes_in);
        e.sample("ferry_cla_bytes_total", &[("cla", name), ("direction", "out")], c.bytes_out);
    }
    e.family(
        "ferry_cla_errors_total",
        "counter",
        "Transmissions that did not go through: failed (tried again later) or refused by the peer.",
    );
    for (name, c) in &cla {
        e.sample("ferry_cla_errors_total", &[("cla", name), ("kind", "failed")], c.failed);
        e.sample("ferry_cla_errors_total", &[("cla", name), ("kind", "refused")], c.refused);
    }

    let apps = apps.list();
    type Counter = fn(&crate::apps::Counters) -> u64;
    let app_counters: [(&str, &str, Counter); 6] = [
        ("ferry_app_deliveries_total", "Bundles an app took.", |c| c.delivered),
        ("ferry_app_failures_total", "An app's calls that returned an error or trapped.", |c| c.failures),
        ("ferry_app_traps_total", "An app's traps (time budget and memory cap included).", |c| c.traps),
        ("ferry_app_restarts_total", "Fresh instances of an app after its first.", |c| c.restarts),
        ("ferry_app_sent_total", "Bundles an app sent.", |c| c.sent),
        ("ferry_app_invocations_total", "Calls into an app (start, on-bundle, on-tick).", |c| c.calls),
    ];
    for (name, help, get) in app_counters {
        e.family(name, "counter", help);
        for a in &apps {
            e.sample(name, &[("app", &a.name)], get(&a.counters));
        }
    }
    e.family("ferry_app_seconds_total", "counter", "Time spent in an app's calls.");
    for a in &apps {
        e.sample("ferry_app_seconds_total", &[("app", &a.name)], a.counters.busy_ns as f64 / 1e9);
    }
    e.family("ferry_app_memory_bytes", "gauge", "Linear memory an app's instance holds.");
    for a in &apps {
        e.sample("ferry_app_memory_bytes", &[("app", &a.name)], a.memory_bytes);
    }

    e.family("ferry_api_requests_total", "counter", "API requests answered, by HTTP status.");
    for (code, n) in lock(&reg.api).iter() {
        e.sample("ferry_api_requests_total", &[("code", &code.to_string())], n);
    }
    e.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_their_label_values() {
        let mut e = Exposition(String::new());
        e.family("ferry_x_total", "counter", "An example.");
        e.sample("ferry_x_total", &[("app", "a\"b\\c\nd"), ("kind", "k")], 3);
        assert_eq!(
            e.0,
            "# HELP ferry_x_total An example.\n# TYPE ferry_x_total counter\nferry_x_total{app=\"a\\\"b\\\\c\\nd\",kind=\"k\"} 3\n"
        );
    }

    #[test]
    fn deletions_are_counted_by_reason() {
        let r = Registry::new();
        r.deleted(None, true);
        r.deleted(None, false);
        r.deleted(Some(ReasonCode::LifetimeExpired), false);
        r.deleted(Some(ReasonCode::LifetimeExpired), false);
        let d = lock(&r.deleted).clone();
        assert_eq!(d.into_iter().collect::<Vec<_>>(), [("delivered", 1), ("forwarded", 1), ("lifetime_expired", 2)]);
    }
}
