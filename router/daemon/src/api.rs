//! The HTTP application API: dtn7-rs's routes and texts, so that its tools
//! (dtnsend, dtnrecv, dtnquery) and scripts work against Ferry, plus
//! `/ferry/*` routes for the `ferry` CLI.
//!
//! Differences from dtn7-rs, all on the side of saying what happened: a
//! request that cannot be honoured (unparsable destination, lifetime or
//! source) gets a 4xx answer instead of being dropped; an API call that takes a
//! bundle answers only after the bundle is on disk, and 500 if it could not be
//! stored.
//!
//! The routes, their answers and the JSON shapes are listed in the crate
//! docs (`lib.rs`, "HTTP API").

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, RawQuery, State, WebSocketUpgrade};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ferry_core::bundle::{bundle_flags, BundleMeta};
use ferry_core::eid::Eid;
use ferry_core::node::{Rejected, SendRequest};
use ferry_core::store::StoreError;
use serde::Serialize;

use crate::config::parse_lifetime;
use crate::daemon::{BundleState, ConfiguredPeer, Daemon, DaemonError, PeerType, Received, SyncStats};
use crate::shutdown::Shutdown;

/// Largest request body (a bundle, a payload) and websocket message.
pub const MAX_BODY: usize = 128 * 1024 * 1024;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub daemon: Arc<Daemon>,
    /// Handed to websocket sessions so that shutdown waits for them.
    pub shutdown: Shutdown,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/send", post(send))
        .route("/insert", get(insert_hex).post(insert))
        .route("/push", post(push))
        .route("/register", get(register))
        .route("/unregister", get(unregister))
        .route("/endpoint", get(endpoint))
        .route("/endpoint.hex", get(endpoint_hex))
        .route("/delete", get(delete).delete(delete))
        .route("/download", get(download))
        .route("/download.hex", get(download_hex))
        .route("/cts", get(cts))
        .route("/peers/add", get(peers_add))
        .route("/peers/del", get(peers_del))
        .route("/status/nodeid", get(status_nodeid))
        .route("/status/eids", get(status_eids))
        .route("/status/bundles", get(status_bundles))
        .route("/status/bundles/verbose", get(status_bundles_verbose))
        .route("/status/bundles/digest", get(status_bundles_digest))
        .route("/status/bundles/filtered", get(status_bundles_filtered))
        .route("/status/bundles/filtered/digest", get(status_bundles_filtered_digest))
        .route("/status/store", get(status_store))
        .route("/status/peers", get(status_peers))
        .route("/status/info", get(status_info))
        .route("/ferry/bundles", get(ferry_bundles))
        .route("/ferry/bundle", get(ferry_bundle))
        .route("/ferry/bundle.cbor", get(ferry_bundle_cbor))
        .route("/ferry/usb/sync", get(usb_sync))
        .route("/ws", get(ws))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

// ----- response helpers -----

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body.into()).into_response()
}

fn ok(body: impl Into<String>) -> Response {
    text(StatusCode::OK, body)
}

fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(s) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode JSON: {e}")),
    }
}

fn binary(bytes: Vec<u8>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

/// The status code for a failed operation.
fn error(e: DaemonError) -> Response {
    let status = match &e {
        DaemonError::Send(_) | DaemonError::PeerUrl(_) => StatusCode::BAD_REQUEST,
        DaemonError::Rejected(Rejected::Invalid(_)) => StatusCode::BAD_REQUEST,
        DaemonError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        DaemonError::NotRegistered(_) => StatusCode::NOT_FOUND,
        DaemonError::StorageFull { .. } | DaemonError::Store(StoreError::Full(_)) => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(status, e.to_string())
}

/// Runs an operation in its own task, so that a client hanging up (which
/// drops the handler's future) cannot stop it halfway: between a store write
/// and telling the node about it, or between taking a bundle off a queue and
/// marking it delivered.
async fn detached<T: Send + 'static>(
    op: impl std::future::Future<Output = Result<T, DaemonError>> + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::spawn(op).await.map_err(|e| DaemonError::Task(e.to_string()))?
}

/// Percent-decodes a raw query (`dtn%3A%2F%2Fnode%2Fx`); `+` stays `+`.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The argument of a dtn7-style raw query (`/register?incoming`), decoded;
/// `key=` in front is dropped (`/delete?bid=...`).
fn raw_arg(query: Option<String>, key: &str) -> Option<String> {
    let q = query?;
    let q = q.strip_prefix(&format!("{key}=")).unwrap_or(&q);
    let q = percent_decode(q);
    let q = q.trim();
    (!q.is_empty()).then(|| q.to_owned())
}

/// An endpoint named by a service on this node (`incoming`, `7` on an ipn
/// node) or by a full EID. The bool says whether a full EID was given.
fn endpoint_of(daemon: &Daemon, arg: &str) -> Result<(Eid, bool), String> {
    if arg.contains(':') {
        arg.parse::<Eid>().map(|e| (e, true)).map_err(|e| format!("`{arg}` is not an endpoint ID: {e}"))
    } else {
        let node = daemon.node_id();
        node.with_service(arg).map(|e| (e, false)).map_err(|e| format!("`{arg}` is not a service name on {node}: {e}"))
    }
}

fn hexify(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhexify(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 == 1 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

// ----- bundles in -----

async fn index(State(st): State<AppState>) -> Response {
    ok(format!(
        "Ferry {} — node {}\n{} bundles, {} registrations\nAPI: see /status/info\n",
        env!("CARGO_PKG_VERSION"),
        st.daemon.node_id(),
        st.daemon.bundle_count(),
        st.daemon.registrations().len()
    ))
}

/// `POST /send?dst=EID[&lifetime=1h|ms][&flags=N][&src=svc|EID][&report_to=EID]`
async fn send(State(st): State<AppState>, Query(q): Query<HashMap<String, String>>, body: Bytes) -> Response {
    let d = &st.daemon;
    let Some(dst) = q.get("dst").map(|s| s.trim()).filter(|s| !s.is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "Missing destination endpoint id!");
    };
    let destination = match dst.parse::<Eid>() {
        Ok(e) => e,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("invalid destination `{dst}`: {e}")),
    };
    let lifetime = match q.get("lifetime") {
        Some(l) => match parse_lifetime(l) {
            Ok(l) => l,
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("invalid lifetime: {e}")),
        },
        None => d.default_lifetime(),
    };
    let Ok(lifetime_ms) = u64::try_from(lifetime.as_millis()) else {
        return text(StatusCode::BAD_REQUEST, "invalid lifetime: too long");
    };
    // dtn7-rs sends with "must not fragment" unless told otherwise.
    let flags = match q.get("flags") {
        Some(f) => match f.trim().parse::<u64>() {
            Ok(f) => f,
            Err(_) => return text(StatusCode::BAD_REQUEST, "Invalid Bundle Processing Control Flags!"),
        },
        None => bundle_flags::MUST_NOT_FRAGMENT,
    };
    let source = match q.get("src").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(s) => match endpoint_of(d, s) {
            Ok((e, _)) => Some(e),
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("invalid source: {e}")),
        },
        None => None,
    };
    let report_to = match q.get("report_to").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(s) => match s.parse::<Eid>() {
            Ok(e) => Some(e),
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("invalid report_to `{s}`: {e}")),
        },
        None => None,
    };
    let req = SendRequest { source, destination, lifetime_ms, flags, report_to };
    let daemon = Arc::clone(d);
    let payload = body.clone();
    match detached(async move { daemon.send(req, &payload).await }).await {
        Ok(id) => ok(format!("Sent ADU in bundle {id} with {} bytes", body.len())),
        Err(e) => error(e),
    }
}

/// Hands raw bundle bytes to the node; `success` words the answer. Callers
/// pass `Vec::from(body)`: it takes over the body's buffer when axum collected
/// it into one, instead of copying a bundle that may be megabytes.
async fn take_bundle(d: &Arc<Daemon>, bytes: Vec<u8>, success: impl FnOnce(usize) -> String) -> Response {
    let len = bytes.len();
    let daemon = Arc::clone(d);
    match detached(async move { daemon.receive(bytes).await }).await {
        Ok(Received::Stored(_)) => ok(success(len)),
        Ok(Received::Duplicate(id)) => ok(format!("Bundle {id} is already stored ({len} bytes)")),
        Err(DaemonError::Rejected(Rejected::Invalid(e))) => {
            text(StatusCode::BAD_REQUEST, format!("Error decoding bundle: {e}"))
        }
        Err(e) => error(e),
    }
}

/// `POST /insert` (body: a CBOR bundle).
async fn insert(State(st): State<AppState>, body: Bytes) -> Response {
    take_bundle(&st.daemon, Vec::from(body), |n| format!("Sent {n} bytes")).await
}

/// `GET /insert?<hex of a CBOR bundle>`.
async fn insert_hex(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Some(hex) = raw_arg(q, "bundle") else {
        return text(StatusCode::BAD_REQUEST, "missing hex-encoded bundle");
    };
    match unhexify(&hex) {
        Some(bytes) => take_bundle(&st.daemon, bytes, |n| format!("Sent {n} bytes")).await,
        None => text(StatusCode::BAD_REQUEST, "the query is not a hex-encoded bundle"),
    }
}

/// `POST /push` (body: a CBOR bundle).
async fn push(State(st): State<AppState>, body: Bytes) -> Response {
    take_bundle(&st.daemon, Vec::from(body), |n| format!("Received {n} bytes")).await
}

// ----- applications -----

/// `GET /register?<service or EID>`.
async fn register(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Some(arg) = raw_arg(q, "endpoint") else {
        return text(StatusCode::BAD_REQUEST, "missing query parameter");
    };
    let (eid, full) = match endpoint_of(&st.daemon, &arg) {
        Ok(x) => x,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("Malformed endpoint path: {e}")),
    };
    let (daemon, e) = (Arc::clone(&st.daemon), eid.clone());
    match detached(async move { daemon.register(e).await }).await {
        Ok(_) if full => ok(format!("Registered URI: {eid}")),
        Ok(_) => ok(format!("Registered {eid}")),
        Err(e) => error(e),
    }
}

/// `GET /unregister?<service or EID>`.
async fn unregister(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Some(arg) = raw_arg(q, "endpoint") else {
        return text(StatusCode::BAD_REQUEST, "missing query parameter");
    };
    let (eid, full) = match endpoint_of(&st.daemon, &arg) {
        Ok(x) => x,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("Malformed endpoint path: {e}")),
    };
    let (daemon, e) = (Arc::clone(&st.daemon), eid.clone());
    match detached(async move { daemon.unregister(&e).await }).await {
        Ok(true) if full => ok(format!("Unregistered URI: {eid}")),
        Ok(true) => ok(format!("Unregistered {eid}")),
        Ok(false) => text(StatusCode::NOT_FOUND, "No such endpoint registered!"),
        Err(e) => error(e),
    }
}

async fn take(st: &AppState, q: Option<String>) -> Result<Option<Vec<u8>>, Response> {
    let Some(arg) = raw_arg(q, "endpoint") else {
        return Err(text(StatusCode::BAD_REQUEST, "missing query parameter"));
    };
    let (eid, _) = endpoint_of(&st.daemon, &arg)
        .map_err(|e| text(StatusCode::BAD_REQUEST, format!("Malformed endpoint path: {e}")))?;
    let daemon = Arc::clone(&st.daemon);
    match detached(async move { daemon.take_delivery(&eid).await }).await {
        Ok(got) => Ok(got.map(|(_, bytes)| bytes)),
        Err(DaemonError::NotRegistered(_)) => Err(text(StatusCode::NOT_FOUND, "No such endpoint registered!")),
        Err(e) => Err(error(e)),
    }
}

/// `GET /endpoint?<service or EID>`: one bundle (raw CBOR), or the text
/// `Nothing to receive` (200, as dtn7-rs). Delivery is at most once: see
/// [`Daemon::take_delivery`].
async fn endpoint(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    match take(&st, q).await {
        Ok(Some(bytes)) => binary(bytes),
        Ok(None) => ok("Nothing to receive"),
        Err(r) => r,
    }
}

/// `GET /endpoint.hex?<service or EID>`: as `/endpoint`, hex-encoded.
async fn endpoint_hex(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    match take(&st, q).await {
        Ok(Some(bytes)) => ok(hexify(&bytes)),
        Ok(None) => ok("Nothing to receive"),
        Err(r) => r,
    }
}

/// `GET|DELETE /delete?<bid>` (or `?bid=<bid>`).
async fn delete(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Some(bid) = raw_arg(q, "bid") else {
        return text(StatusCode::BAD_REQUEST, "Bundle ID not specified");
    };
    let (daemon, b) = (Arc::clone(&st.daemon), bid.clone());
    if detached(async move { Ok(daemon.delete(&b).await) }).await.unwrap_or(false) {
        tracing::info!(bundle = bid, "bundle deleted on request");
        ok(format!("Deleted {bid}"))
    } else {
        text(StatusCode::NOT_FOUND, "Bundle not found")
    }
}

async fn stored_bytes(st: &AppState, q: Option<String>) -> Result<Vec<u8>, Response> {
    let Some(bid) = raw_arg(q, "bid") else {
        return Err(text(StatusCode::BAD_REQUEST, "Bundle ID not specified"));
    };
    let Some(id) = st.daemon.find(&bid) else {
        return Err(text(StatusCode::NOT_FOUND, "Bundle not found"));
    };
    match st.daemon.load(&id).await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(text(StatusCode::NOT_FOUND, "Bundle not found")),
        Err(e) => Err(error(e)),
    }
}

/// `GET /download?<bid>`: the stored bundle, without taking it.
async fn download(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    stored_bytes(&st, q).await.map(binary).unwrap_or_else(|r| r)
}

/// `GET /download.hex?<bid>`.
async fn download_hex(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    stored_bytes(&st, q).await.map(|b| ok(hexify(&b))).unwrap_or_else(|r| r)
}

/// `GET /cts`: a creation timestamp `[time, seq]` for a bundle a client builds
/// itself (dtnsend).
async fn cts(State(st): State<AppState>) -> Response {
    let (t, seq) = st.daemon.creation_timestamp();
    json(&(t, seq))
}

// ----- peers -----

/// `GET /peers/add?p=<cla>://<host>:<port>/<node>[&p_t=STATIC|DYNAMIC]`.
async fn peers_add(State(st): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(url) = q.get("p") else {
        return text(StatusCode::BAD_REQUEST, "missing peer parameter p");
    };
    let con_type = match q.get("p_t").map(|s| s.to_ascii_uppercase()) {
        None => PeerType::Dynamic,
        Some(t) if t == "DYNAMIC" => PeerType::Dynamic,
        Some(t) if t == "STATIC" => PeerType::Static,
        Some(t) => return text(StatusCode::BAD_REQUEST, format!("p_t must be STATIC or DYNAMIC, not {t}")),
    };
    let peer = match ConfiguredPeer::parse(url, con_type) {
        Ok(p) => p,
        Err(_) => return text(StatusCode::BAD_REQUEST, "Malformed peer URL"),
    };
    let note = |reached: Result<String, String>| match reached {
        Ok(cla) => format!("; connecting through the {cla} convergence layer"),
        Err(e) => format!("; not connecting: {e}"),
    };
    match st.daemon.add_peer(peer).await {
        Ok((true, reached)) => ok(format!("Added new peer{}", note(reached))),
        Ok((false, reached)) => ok(format!("Updated existing peer{}", note(reached))),
        Err(e) => error(e),
    }
}

/// `GET /peers/del?p=<peer URL>`.
async fn peers_del(State(st): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(url) = q.get("p") else {
        return text(StatusCode::BAD_REQUEST, "missing peer parameter p");
    };
    let peer = match ConfiguredPeer::parse(url, PeerType::Dynamic) {
        Ok(p) => p,
        Err(_) => return text(StatusCode::BAD_REQUEST, "Malformed peer URL"),
    };
    match st.daemon.remove_peer(&peer.eid).await {
        Ok(true) => ok("Removed peer"),
        Ok(false) => text(StatusCode::NOT_FOUND, "No such peer"),
        Err(e) => error(e),
    }
}

/// `GET /ferry/usb/sync?path=/media/stick&nonce=N` (`ferry usb sync`): the
/// usbdir plugin looks at that folder now and writes its progress there.
async fn usb_sync(State(st): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (Some(path), Some(nonce)) = (q.get("path"), q.get("nonce")) else {
        return text(StatusCode::BAD_REQUEST, "expected ?path=/absolute/folder&nonce=<letters and digits>");
    };
    match st.daemon.connect_cla(&format!("usbdir-sync:{nonce}:{path}")) {
        Ok(cla) => ok(format!("syncing {path} through the {cla} convergence layer")),
        Err(e) => text(StatusCode::UNPROCESSABLE_ENTITY, format!("nothing syncs {path}: {e}")),
    }
}

// ----- status -----

async fn status_nodeid(State(st): State<AppState>) -> Response {
    ok(st.daemon.node_id().to_string())
}

async fn status_eids(State(st): State<AppState>) -> Response {
    let eids: Vec<String> = st.daemon.registrations().iter().map(|e| e.to_string()).collect();
    json(&eids)
}

async fn status_bundles(State(st): State<AppState>) -> Response {
    let bids: Vec<String> = st.daemon.bundles().iter().map(|(m, _)| m.id.to_string()).collect();
    json(&bids)
}

/// `GET /status/bundles/verbose` (`dtnquery bundles -v`): one line per
/// bundle, `<source> <destination> <creation time (DTN ms)> <size>`, as dtn7-rs.
async fn status_bundles_verbose(State(st): State<AppState>) -> Response {
    let lines: Vec<String> = st
        .daemon
        .bundles()
        .iter()
        .map(|(m, _)| format!("{} {} {} {}", m.id.source, m.destination, m.id.creation.time, m.size))
        .collect();
    json(&lines)
}

/// The IDs of the bundles whose source or destination contains `addr`
/// (a substring, as dtn7-rs matches it).
fn bids_matching(d: &Daemon, addr: &str) -> Vec<String> {
    d.bundles()
        .iter()
        .filter(|(m, _)| m.id.source.to_string().contains(addr) || m.destination.to_string().contains(addr))
        .map(|(m, _)| m.id.to_string())
        .collect()
}

/// dtn7-rs's digest of a list of bundle IDs: SHA-1 over the IDs, one after
/// the other, in lowercase hex. Peers compare digests to tell whether they
/// know the same bundles.
fn digest_of(bids: &[String]) -> String {
    use sha1::Digest;
    let mut hasher = sha1::Sha1::new();
    for bid in bids {
        hasher.update(bid.as_bytes());
    }
    hexify(&hasher.finalize())
}

/// `GET /status/bundles/digest` (`dtnquery bundles -d`): the digest of every
/// stored bundle's ID, sorted as text.
async fn status_bundles_digest(State(st): State<AppState>) -> Response {
    let mut bids: Vec<String> = st.daemon.bundles().iter().map(|(m, _)| m.id.to_string()).collect();
    bids.sort();
    ok(digest_of(&bids))
}

/// `GET /status/bundles/filtered?addr=<text>` (`dtnquery bundles -a`).
async fn status_bundles_filtered(State(st): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Response {
    match q.get("addr") {
        Some(addr) => json(&bids_matching(&st.daemon, addr)),
        None => text(StatusCode::BAD_REQUEST, "missing filter criteria"),
    }
}

/// `GET /status/bundles/filtered/digest?addr=<text>` (`dtnquery bundles -a -d`).
async fn status_bundles_filtered_digest(
    State(st): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match q.get("addr") {
        Some(addr) => ok(digest_of(&bids_matching(&st.daemon, addr))),
        None => text(StatusCode::BAD_REQUEST, "missing filter criteria"),
    }
}

async fn status_store(State(st): State<AppState>) -> Response {
    let states: std::collections::BTreeMap<String, &'static str> =
        st.daemon.bundles().iter().map(|(m, s)| (m.id.to_string(), s.as_str())).collect();
    json(&states)
}

async fn status_peers(State(st): State<AppState>) -> Response {
    json(&st.daemon.configured_peers())
}

/// Node counters for `/status/info`.
#[derive(Debug, Serialize)]
pub struct StatsInfo {
    pub received: u64,
    pub created: u64,
    pub delivered: u64,
    pub forwarded: u64,
    pub deleted: u64,
    pub expired: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub reports_sent: u64,
    pub reports_received: u64,
}

/// `/status/info`.
#[derive(Debug, Serialize)]
pub struct Info {
    pub node_id: String,
    pub version: &'static str,
    pub router: &'static str,
    /// Bundles the node holds.
    pub bundles: usize,
    /// Bundles and bytes in the store.
    pub store_bundles: u64,
    pub store_bytes: u64,
    /// Group commit at work: WAL syncs and the writes they carried.
    pub store_syncs: Option<SyncStats>,
    pub registrations: Vec<String>,
    /// Configured peers, and peers with a session up.
    pub peers: usize,
    pub peers_connected: usize,
    pub uptime_secs: u64,
    pub stats: StatsInfo,
}

async fn status_info(State(st): State<AppState>) -> Response {
    let d = &st.daemon;
    let store = match d.store_stats().await {
        Ok(s) => s,
        Err(e) => return error(e),
    };
    let s = d.stats();
    json(&Info {
        node_id: d.node_id().to_string(),
        version: env!("CARGO_PKG_VERSION"),
        router: d.router_name(),
        bundles: d.bundle_count(),
        store_bundles: store.bundles,
        store_bytes: store.bytes,
        store_syncs: d.sync_stats(),
        registrations: d.registrations().iter().map(|e| e.to_string()).collect(),
        peers: d.configured_peers().len(),
        peers_connected: d.connected_peers(),
        uptime_secs: d.uptime().as_secs(),
        stats: StatsInfo {
            received: s.received,
            created: s.created,
            delivered: s.delivered,
            forwarded: s.forwarded,
            deleted: s.deleted,
            expired: s.expired,
            duplicates: s.duplicates,
            invalid: s.invalid,
            reports_sent: s.reports_sent,
            reports_received: s.reports_received,
        },
    })
}

// ----- ferry extensions -----

/// Hop count in a [`BundleInfo`].
#[derive(Debug, Serialize)]
pub struct HopCountInfo {
    pub limit: u64,
    pub count: u64,
}

/// Fragment position in a [`BundleInfo`].
#[derive(Debug, Serialize)]
pub struct FragmentInfo {
    pub offset: u64,
    /// Payload length of this fragment.
    pub length: u64,
    pub total_adu_len: Option<u64>,
}

/// One bundle as `/ferry/bundles` and `/ferry/bundle` show it. Times are DTN
/// time in milliseconds (since 2000-01-01T00:00:00Z).
#[derive(Debug, Serialize)]
pub struct BundleInfo {
    pub bid: String,
    pub src: String,
    pub dst: String,
    pub report_to: String,
    pub creation_time: u64,
    pub seq: u64,
    pub lifetime_ms: u64,
    pub expires_at: u64,
    pub received_at: u64,
    pub size: u64,
    pub payload_len: u64,
    pub flags: u64,
    pub hop_count: Option<HopCountInfo>,
    pub fragment: Option<FragmentInfo>,
    pub previous_node: Option<String>,
    pub age_at_receipt_ms: Option<u64>,
    pub forwarded_to: Vec<String>,
    pub state: &'static str,
}

impl BundleInfo {
    pub fn new(m: &BundleMeta, state: BundleState) -> BundleInfo {
        BundleInfo {
            bid: m.id.to_string(),
            src: m.id.source.to_string(),
            dst: m.destination.to_string(),
            report_to: m.report_to.to_string(),
            creation_time: m.id.creation.time,
            seq: m.id.creation.seq,
            lifetime_ms: m.lifetime_ms,
            expires_at: m.expires_at,
            received_at: m.received_at,
            size: m.size,
            payload_len: m.payload_len,
            flags: m.flags,
            hop_count: m.hop_count.map(|h| HopCountInfo { limit: h.limit, count: h.count }),
            fragment: m.id.fragment.map(|(offset, length)| FragmentInfo {
                offset,
                length,
                total_adu_len: m.total_adu_len,
            }),
            previous_node: m.previous_node.as_ref().map(|e| e.to_string()),
            age_at_receipt_ms: m.age_at_receipt_ms,
            forwarded_to: m.forwarded_to.iter().map(|e| e.to_string()).collect(),
            state: state.as_str(),
        }
    }
}

async fn ferry_bundles(State(st): State<AppState>) -> Response {
    let list: Vec<BundleInfo> = st.daemon.bundles().iter().map(|(m, s)| BundleInfo::new(m, *s)).collect();
    json(&list)
}

async fn ferry_bundle(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let Some(bid) = raw_arg(q, "bid") else {
        return text(StatusCode::BAD_REQUEST, "Bundle ID not specified");
    };
    match st.daemon.bundle(&bid) {
        Some((m, s)) => json(&BundleInfo::new(&m, s)),
        None => text(StatusCode::NOT_FOUND, "Bundle not found"),
    }
}

async fn ferry_bundle_cbor(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    stored_bytes(&st, q).await.map(binary).unwrap_or_else(|r| r)
}

// ----- websocket -----

async fn ws(State(st): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(MAX_BODY)
        .max_frame_size(MAX_BODY)
        .on_upgrade(move |socket| crate::ws::session(st.daemon, socket, st.shutdown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        assert_eq!(percent_decode("dtn%3A%2F%2Fn%2Fx"), "dtn://n/x");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(raw_arg(Some("bid=dtn%3A%2F%2Fa%2F-1-0".into()), "bid").as_deref(), Some("dtn://a/-1-0"));
        assert_eq!(raw_arg(Some("incoming".into()), "endpoint").as_deref(), Some("incoming"));
        assert_eq!(raw_arg(Some("".into()), "endpoint"), None);
        assert_eq!(raw_arg(None, "endpoint"), None);
    }

    #[test]
    fn digests_as_dtn7_rs() {
        // SHA-1 of the concatenated IDs; of nothing, SHA-1's empty digest.
        assert_eq!(digest_of(&[]), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(digest_of(&["ab".into(), "c".into()]), digest_of(&["abc".into()]));
        assert_eq!(digest_of(&["abc".into()]), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hexify(&[0x9f, 0x00, 0xff]), "9f00ff");
        assert_eq!(unhexify("9f00FF").unwrap(), vec![0x9f, 0, 0xff]);
        assert!(unhexify("9f0").is_none());
        assert!(unhexify("zz").is_none());
    }
}
