//! ferry-daemon: `ferryd`, the Ferry DTN daemon, and `ferry`, its command-line
//! client.
//!
//! # Layout
//! - [`config`]: the TOML config file and command-line overrides, checked into
//!   [`config::Settings`]; errors name the file, line and key.
//! - [`daemon`]: the async driver of the sans-IO `ferry_core::node::Node`: the
//!   node behind a mutex, persists handed to the store as batches that are
//!   awaited without parking a thread (concurrent writes share the store's
//!   syncs), delivery queues, the timer, recovery at start-up.
//! - [`api`]: the HTTP API (dtn7-rs compatible routes plus `/ferry/*`).
//! - [`auth`]: the API's bearer token (required off loopback).
//! - [`ws`]: the `/ws` websocket application agent (dtn7-rs's protocol).
//! - [`apps`]: the WebAssembly app host (wasmtime; `[[app]]`, `/ferry/apps`).
//! - [`security`]: the node's Ed25519 identity, trusted keys and BPSec policy
//!   (sign, require, encrypt), `/ferry/id` and `/ferry/trust`.
//! - [`server`]: start-up and graceful shutdown of the whole daemon.
//! - [`shutdown`]: the shutdown signal and completion tracking (mini-redis style).
//! - [`cla`]: the convergence-layer seam (no CLAs yet; transmissions fail).
//! - [`clock`]: DTN time from the system clock.
//! - [`memory`]: allocator tuning that keeps ferryd's memory flat with volume.
//! - `cli`: the `ferry` command-line client.
//!
//! # HTTP API
//!
//! All routes listen on loopback unless `api.allow_remote = true`; off
//! loopback, or with `api.token_file`, every request needs
//! `Authorization: Bearer <token>` (401 otherwise, see [`auth`]). Texts are
//! `text/plain`, JSON is pretty-printed `application/json`, bundles are
//! `application/octet-stream`. `<svc>` is a service name on this node
//! (`incoming`; a number on an ipn node) or a full EID; raw queries may be
//! percent-encoded. `<bid>` is a bundle ID as `BundleId`'s Display writes it
//! (`<source>-<time>-<seq>[-<offset>-<len>]`).
//!
//! | route | answer |
//! |-------|--------|
//! | `POST /send?dst=EID[&lifetime=1h\|<ms>][&flags=N][&src=<svc>][&report_to=EID]`, body = payload | 200 `Sent ADU in bundle <bid> with <n> bytes` once stored; 400 bad parameter; 500 not stored |
//! | `POST /insert`, `POST /push`, body = CBOR bundle; `GET /insert?<hex>` | 200 `Sent <n> bytes` / `Received <n> bytes` once stored; 200 `Bundle <bid> is already stored (<n> bytes)`; 400 `Error decoding bundle: <why>`; 422 expired, hop limit, unsupported block, refused by the security policy (`... refused by the security policy: <why>`) |
//! | `GET /register?<svc>` | 200 `Registered <eid>` (`Registered URI: <eid>` for a full EID); durable |
//! | `GET /unregister?<svc>` | 200 `Unregistered <eid>`; 404 if not registered |
//! | `GET /endpoint?<svc>` | 200 one bundle (CBOR) or 200 `Nothing to receive`; 404 `No such endpoint registered!` |
//! | `GET /endpoint.hex?<svc>` | the same, hex |
//! | `GET\|DELETE /delete?<bid>` (or `?bid=<bid>`) | 200 `Deleted <bid>`; 404 `Bundle not found` |
//! | `GET /download?<bid>`, `/download.hex?<bid>` | the stored bundle (not taken); 404 |
//! | `GET /cts` | `[time, seq]` for client-built bundles |
//! | `GET /peers/add?p=<cla>://<host>:<port>/<node>[&p_t=STATIC\|DYNAMIC]` | 200 `Added new peer; ...` / `Updated existing peer; ...` (no CLA connects yet) |
//! | `GET /peers/del?p=<url>` | 200 `Removed peer`; 404 |
//! | `GET /status/nodeid` | the node ID, text |
//! | `GET /status/eids` | `["dtn://n/in", ...]` registered endpoints |
//! | `GET /status/bundles` | `["<bid>", ...]`, ordered by ID |
//! | `GET /status/bundles/verbose` | `["<src> <dst> <creation time> <size>", ...]` (`dtnquery bundles -v`) |
//! | `GET /status/bundles/filtered?addr=<text>` | IDs of bundles whose source or destination contains `<text>`; 400 without `addr` |
//! | `GET /status/bundles/digest`, `/status/bundles/filtered/digest?addr=<text>` | SHA-1 (hex) of the IDs one after the other, as dtn7-rs (all IDs sorted as text; filtered in ID order) |
//! | `GET /status/store` | `{"<bid>": "<state>", ...}`; states: `persisting`, `deliverable`, `delivering`, `waiting_for_application`, `waiting_for_contact` |
//! | `GET /status/peers` | `{"<node id>": {eid, cla, addr, port, con_type, connected}}` |
//! | `GET /status/info` | `{node_id, version, router, bundles, store_bundles, store_bytes, store_syncs: {syncs, writes}, registrations, peers, peers_connected, uptime_secs, stats: {received, created, delivered, forwarded, deleted, expired, duplicates, invalid, reports_sent, reports_received}}` |
//! | `GET /ferry/bundles` | `[{bid, src, dst, report_to, creation_time, seq, lifetime_ms, expires_at, received_at, size, payload_len, flags, hop_count: {limit, count}?, fragment: {offset, length, total_adu_len}?, previous_node?, age_at_receipt_ms?, forwarded_to: [..], state}]` (times: DTN ms) |
//! | `GET /ferry/bundle?bid=<bid>` | one such object; 404 `Bundle not found` |
//! | `GET /ferry/bundle.cbor?bid=<bid>` | the stored bytes; 404 |
//! | `GET /ws` | websocket, see [`ws`] |
//! | `GET /ferry/apps`, `/ferry/apps/{start,stop,logs}?name=N` | the apps, see [`apps::api`] |
//! | `GET /metrics` | Prometheus metrics, see [`metrics`] |
//! | `GET /ui` | the status page, see [`ui`]; its feeds: `/ferry/events` (server-sent events), `/ferry/events/recent`, `/ferry/peers/traffic`, see [`events`] |
//! | `GET /ferry/id`, `GET /ferry/trust`, `POST /ferry/trust/{add,remove}` | identity and trusted keys, see [`security::api`] |

pub mod api;
pub mod apps;
pub mod auth;
pub mod cla;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod events;
pub mod hot;
pub mod memory;
pub mod metrics;
pub mod plugins;
pub mod security;
pub mod server;
pub mod shutdown;
pub mod ui;
pub mod ws;

pub mod cli;
