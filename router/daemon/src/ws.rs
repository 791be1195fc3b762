//! The `/ws` application agent, speaking dtn7-rs's websocket protocol so that
//! its clients work against Ferry.
//!
//! Text frames are commands; each gets a text reply that starts with a status
//! code:
//!
//! | command              | reply                                                   |
//! |----------------------|---------------------------------------------------------|
//! | `/node`              | `200 node: <node id>`                                   |
//! | `/bundle`            | `200 tx mode: bundle` (binary frames are whole bundles) |
//! | `/data`              | `200 tx mode: data` (binary frames are CBOR records)    |
//! | `/json`              | `200 tx mode: JSON` (binary frames are JSON records; the default) |
//! | `/subscribe <svc>`   | `200 subscribed`, `404 unknown endpoint` (not registered), `400 ...` |
//! | `/unsubscribe <svc>` | `200 unsubscribed`, `404 endpoint not found`, `400 invalid endpoint` |
//! | anything else `/...` | `501 unknown command: "<text>"`                         |
//!
//! `<svc>` is a service name on this node (`incoming`) or a full EID.
//!
//! Binary frames send bundles. In bundle mode a frame is a whole CBOR bundle,
//! answered `200 Sent payload with <n> bytes` once it is stored (`200 ...
//! already stored` for a duplicate, `400 Invalid binary bundle: <why>` for
//! garbage). In data and JSON modes a frame is a send request
//! `{src, dst, delivery_notification, lifetime (ms), data}` (`data` is bytes in
//! CBOR, base64 in JSON), answered `200 Sent bundle <bid> with <n> bytes` once
//! stored. Unlike dtn7-rs, which answers 200 and drops the bundle, a `src`
//! that is not on this node or a `dst` that does not parse is answered `400
//! ...`. In JSON mode a text frame that starts with `{` is taken as a send
//! request too.
//!
//! Frames are pipelined: many are processed at once and share the store's
//! syncs, but the replies of one connection go out in the order the frames
//! came in (at most [`MAX_IN_FLIGHT`] frames and [`MAX_IN_FLIGHT_BYTES`] bytes
//! of them are in flight; then reading waits). In bundle mode, the frames
//! already received when one is read (up to [`MAX_BATCH`]) go through the node
//! together and are stored as one write; a burst costs one lock, one store
//! request and one task instead of one of each per bundle. Replies that are
//! ready together go out in one socket write.
//!
//! Bundles for subscribed endpoints are pushed as binary frames: the bundle
//! in bundle mode, else a record `{bid, src, dst, cts: [time, seq], lifetime,
//! data}`. A bundle counts as delivered (and is deleted) once its frame has
//! been written to the socket; if the connection fails first, it goes back to
//! its endpoint's queue.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket};
use base64::Engine as _;
use ferry_core::bundle::bundle_flags;
use ferry_core::eid::Eid;
use ferry_core::node::SendRequest;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::daemon::{Daemon, DaemonError, Received};
use crate::shutdown::Shutdown;

/// Frames of one connection that may be processed at once.
pub const MAX_IN_FLIGHT: usize = 256;
/// Bytes of frames of one connection that may be processed at once (a bigger
/// frame goes alone). Bounds the daemon's memory per connection, whatever the
/// client sends.
pub const MAX_IN_FLIGHT_BYTES: usize = 32 << 20;
/// Bundle frames taken through the node and the store as one batch, at most.
pub const MAX_BATCH: usize = 128;
/// A batch stops taking frames once it holds this many bytes.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// The byte budget is counted in KiB, so that it fits a semaphore's permits.
const BUDGET_UNIT: usize = 1024;

/// What binary frames carry, and what deliveries look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Whole CBOR bundles.
    Bundle = 0,
    /// CBOR-encoded send/receive records.
    Data = 1,
    /// JSON-encoded send/receive records (dtn7's default).
    Json = 2,
}

impl Mode {
    fn from_u8(v: u8) -> Mode {
        match v {
            0 => Mode::Bundle,
            1 => Mode::Data,
            _ => Mode::Json,
        }
    }
}

/// A send request in data or JSON mode (dtn7-plus's `WsSendData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsSendData {
    pub src: String,
    pub dst: String,
    #[serde(default)]
    pub delivery_notification: bool,
    /// Lifetime in milliseconds.
    pub lifetime: u64,
    #[serde(with = "base64_or_bytes")]
    pub data: Vec<u8>,
}

/// A delivered bundle in data or JSON mode (dtn7-plus's `WsRecvData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsRecvData {
    pub bid: String,
    pub src: String,
    pub dst: String,
    /// Creation timestamp: `[dtn time, sequence number]`.
    pub cts: (u64, u64),
    /// Lifetime in milliseconds.
    pub lifetime: u64,
    #[serde(with = "base64_or_bytes")]
    pub data: Vec<u8>,
}

/// Bytes as base64 text in JSON, as a byte string in CBOR (what dtn7-plus does).
pub mod base64_or_bytes {
    use base64::Engine as _;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
        } else {
            s.serialize_bytes(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("base64 text or a byte string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                base64::engine::general_purpose::STANDARD.decode(v).map_err(E::custom)
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(V)
        } else {
            d.deserialize_bytes(V)
        }
    }
}

/// What the writer task sends.
enum Out {
    /// A window of deliveries; `done` learns whether all were written.
    Frames { msgs: Vec<Message>, done: oneshot::Sender<bool> },
    /// Replies, in order.
    Replies(Vec<String>),
}

/// A reply in the connection's order: ready, or still being worked on.
enum Pending {
    Ready(String),
    /// One frame's task.
    Task(JoinHandle<String>, InFlight),
    /// A batch of bundle frames: one reply per frame, `usize` of them.
    Batch(JoinHandle<Vec<String>>, usize, InFlight),
}

/// The share of the connection's in-flight budget that frames hold until
/// their replies are handed to the writer.
#[allow(dead_code)] // held for its drop
struct InFlight(OwnedSemaphorePermit, OwnedSemaphorePermit);

struct Session {
    daemon: Arc<Daemon>,
    mode: Arc<AtomicU8>,
    subscriptions: Arc<Mutex<BTreeSet<Eid>>>,
    subscriptions_changed: Arc<Notify>,
    replies: mpsc::Sender<Pending>,
    /// In-flight budget: frames, and bytes in [`BUDGET_UNIT`]s.
    frames: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    shutdown: Shutdown,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a websocket connection may be silent before ferryd pings it.
pub const WS_PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs one websocket connection until the client leaves or the daemon shuts
/// down. Replies already owed are sent before the connection closes.
pub async fn session(daemon: Arc<Daemon>, socket: WebSocket, mut shutdown: Shutdown) {
    let (mut sink, mut stream) = socket.split();

    // Writer: the only task that writes to the socket. It queues everything
    // already waiting and flushes once: one write(2) for a burst of replies.
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(64);
    let writer = tokio::spawn(async move {
        let mut written = Vec::new();
        // A ping when nothing else was written for a while: a dead client is
        // noticed, and the API's idle-connection timeout never ends a
        // subscriber that simply waits for bundles.
        let mut ping = tokio::time::interval(WS_PING_INTERVAL);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        loop {
            let first = tokio::select! {
                first = out_rx.recv() => match first {
                    Some(f) => f,
                    None => break,
                },
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            ping.reset();
            let mut ok = true;
            let mut next = Some(first);
            while let Some(out) = next.take() {
                match out {
                    Out::Frames { msgs, done } => {
                        for msg in msgs {
                            ok = sink.feed(msg).await.is_ok();
                            if !ok {
                                break;
                            }
                        }
                        written.push(done);
                    }
                    Out::Replies(texts) => {
                        for t in texts {
                            ok = sink.feed(Message::Text(t.into())).await.is_ok();
                            if !ok {
                                break;
                            }
                        }
                    }
                }
                if ok && written.len() < MAX_IN_FLIGHT {
                    next = out_rx.try_recv().ok();
                }
            }
            ok = ok && sink.flush().await.is_ok();
            // A delivery counts once it is on the socket: after the flush.
            for done in written.drain(..) {
                let _ = done.send(ok);
            }
            if !ok {
                break;
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    });

    // Replier: sends replies in frame order, waiting for each frame's task.
    let (reply_tx, mut reply_rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT);
    let replier_out = out_tx.clone();
    let replier = tokio::spawn(async move {
        while let Some(p) = reply_rx.recv().await {
            let (texts, in_flight) = match p {
                Pending::Ready(t) => (vec![t], None),
                Pending::Task(h, f) => (vec![h.await.unwrap_or_else(|e| format!("500 internal error: {e}"))], Some(f)),
                Pending::Batch(h, n, f) => {
                    (h.await.unwrap_or_else(|e| vec![format!("500 internal error: {e}"); n]), Some(f))
                }
            };
            if replier_out.send(Out::Replies(texts)).await.is_err() {
                break;
            }
            // Only now may the reader take more frames in.
            drop(in_flight);
        }
    });

    let s = Session {
        daemon: Arc::clone(&daemon),
        mode: Arc::new(AtomicU8::new(Mode::Json as u8)),
        subscriptions: Arc::new(Mutex::new(BTreeSet::new())),
        subscriptions_changed: Arc::new(Notify::new()),
        replies: reply_tx,
        frames: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        bytes: Arc::new(Semaphore::new(MAX_IN_FLIGHT_BYTES / BUDGET_UNIT)),
        shutdown: shutdown.clone(),
    };

    // Deliverer: pushes bundles of subscribed endpoints.
    let (closing_tx, closing_rx) = watch::channel(false);
    let deliverer = tokio::spawn(deliver_loop(
        Arc::clone(&daemon),
        Arc::clone(&s.mode),
        Arc::clone(&s.subscriptions),
        Arc::clone(&s.subscriptions_changed),
        out_tx.clone(),
        closing_rx,
    ));
    drop(out_tx);

    // A message read while gathering a batch that does not belong in it.
    let mut held: Option<Option<Result<Message, axum::Error>>> = None;
    loop {
        let msg = match held.take() {
            Some(m) => m,
            None => tokio::select! {
                m = stream.next() => m,
                _ = shutdown.recv() => break,
            },
        };
        let keep_going = match msg {
            Some(Ok(Message::Binary(b))) if s.mode() == Mode::Bundle => {
                // Every bundle frame already received goes in one batch.
                let mut size = b.len();
                let mut frames = vec![Vec::from(b)];
                while frames.len() < MAX_BATCH && size < MAX_BATCH_BYTES {
                    match stream.next().now_or_never() {
                        Some(Some(Ok(Message::Binary(b)))) => {
                            size += b.len();
                            frames.push(Vec::from(b));
                        }
                        Some(other) => {
                            held = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                s.on_bundles(frames).await
            }
            Some(Ok(Message::Text(t))) => s.on_text(t.as_str()).await,
            Some(Ok(Message::Binary(b))) => s.on_binary(Vec::from(b)).await,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => true,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => false,
        };
        if !keep_going {
            break;
        }
    }

    // Owed replies first, then stop delivering, then close the socket.
    drop(s);
    let _ = replier.await;
    let _ = closing_tx.send(true);
    let _ = deliverer.await;
    let _ = writer.await;
    tracing::debug!("websocket session ended");
}

impl Session {
    async fn reply(&self, text: impl Into<String>) -> bool {
        self.replies.send(Pending::Ready(text.into())).await.is_ok()
    }

    fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// The endpoint a command names: a full EID, or a service on this node.
    fn endpoint(&self, arg: &str) -> Result<Eid, String> {
        if arg.contains(':') {
            arg.parse::<Eid>().map_err(|e| e.to_string())
        } else {
            self.daemon.node_id().with_service(arg).map_err(|e| e.to_string())
        }
    }

    async fn on_text(&self, text: &str) -> bool {
        let m = text.trim();
        if m.starts_with('{') && self.mode() == Mode::Json {
            return self.on_binary(m.as_bytes().to_vec()).await;
        }
        if !m.starts_with('/') {
            return self
                .reply(format!(
                    "400 expected a command (/node, /bundle, /data, /json, /subscribe, /unsubscribe): {m:?}"
                ))
                .await;
        }
        let (cmd, arg) = match m.split_once(' ') {
            Some((c, a)) => (c, Some(a.trim()).filter(|a| !a.is_empty())),
            None => (m, None),
        };
        let reply = match cmd {
            "/node" => format!("200 node: {}", self.daemon.node_id()),
            "/bundle" => {
                self.mode.store(Mode::Bundle as u8, Ordering::Relaxed);
                "200 tx mode: bundle".to_owned()
            }
            "/data" => {
                self.mode.store(Mode::Data as u8, Ordering::Relaxed);
                "200 tx mode: data".to_owned()
            }
            "/json" => {
                self.mode.store(Mode::Json as u8, Ordering::Relaxed);
                "200 tx mode: JSON".to_owned()
            }
            "/subscribe" => match arg.map(|a| self.endpoint(a)) {
                None => "400 endpoint is missing".to_owned(),
                Some(Err(e)) => format!("400 invalid endpoint combination: {e}"),
                Some(Ok(eid)) if !self.daemon.is_registered(&eid) => {
                    tracing::debug!(%eid, "websocket subscription to an unregistered endpoint");
                    "404 unknown endpoint".to_owned()
                }
                Some(Ok(eid)) => {
                    tracing::debug!(%eid, "websocket subscribed");
                    lock(&self.subscriptions).insert(eid);
                    self.subscriptions_changed.notify_one();
                    "200 subscribed".to_owned()
                }
            },
            "/unsubscribe" => match arg.map(|a| self.endpoint(a)) {
                None | Some(Err(_)) => "400 invalid endpoint".to_owned(),
                Some(Ok(eid)) => {
                    if lock(&self.subscriptions).remove(&eid) {
                        "200 unsubscribed".to_owned()
                    } else {
                        "404 endpoint not found".to_owned()
                    }
                }
            },
            _ => format!("501 unknown command: {m:?}"),
        };
        self.reply(reply).await
    }

    /// Takes `frames` and `bytes` out of the in-flight budget, waiting for
    /// replies to go out if it is spent. A frame bigger than the whole byte
    /// budget takes all of it.
    async fn budget(&self, frames: usize, bytes: usize) -> Option<InFlight> {
        let frames = u32::try_from(frames.min(MAX_IN_FLIGHT)).unwrap_or(u32::MAX);
        let units = u32::try_from(bytes.div_ceil(BUDGET_UNIT).min(MAX_IN_FLIGHT_BYTES / BUDGET_UNIT)).unwrap_or(0);
        let f = Arc::clone(&self.frames).acquire_many_owned(frames).await.ok()?;
        let b = Arc::clone(&self.bytes).acquire_many_owned(units).await.ok()?;
        Some(InFlight(f, b))
    }

    /// Bundle mode: stores a batch of bundles, one reply per frame.
    async fn on_bundles(&self, frames: Vec<Vec<u8>>) -> bool {
        let n = frames.len();
        let Some(in_flight) = self.budget(n, frames.iter().map(Vec::len).sum()).await else { return false };
        let lens: Vec<usize> = frames.iter().map(Vec::len).collect();
        // The node takes them here, in the reader, so that it sees frames in
        // the order they came (a later batch's task may run first: a
        // duplicate of a bundle would then be stored, and the original
        // answered "already stored"). Only the wait for the disk is a task.
        let intake = self.daemon.take_in(frames);
        let daemon = Arc::clone(&self.daemon);
        let guard = self.shutdown.clone();
        let task = tokio::spawn(async move {
            let _guard = guard;
            let outcomes = daemon.store_intake(intake).await;
            lens.into_iter().zip(outcomes).map(|(len, r)| bundle_reply(len, r)).collect()
        });
        self.replies.send(Pending::Batch(task, n, in_flight)).await.is_ok()
    }

    async fn on_binary(&self, bin: Vec<u8>) -> bool {
        let parsed = match self.mode() {
            Mode::Bundle => return self.on_bundles(vec![bin]).await,
            Mode::Data => ciborium::from_reader::<WsSendData, _>(bin.as_slice())
                .map_err(|e| format!("400 Unexpected binary: not a CBOR send record: {e}")),
            Mode::Json => serde_json::from_slice::<WsSendData>(&bin)
                .map_err(|e| format!("400 Unexpected binary: not a JSON send record: {e}")),
        };
        let req = match parsed {
            Ok(req) => req,
            Err(reply) => return self.reply(reply).await,
        };
        let Some(in_flight) = self.budget(1, req.data.len()).await else { return false };
        let daemon = Arc::clone(&self.daemon);
        let guard = self.shutdown.clone();
        let task = tokio::spawn(async move {
            let _guard = guard;
            send_data(&daemon, req).await
        });
        self.replies.send(Pending::Task(task, in_flight)).await.is_ok()
    }
}

/// The reply to a bundle frame of `len` bytes.
fn bundle_reply(len: usize, outcome: Result<Received, DaemonError>) -> String {
    match outcome {
        Ok(Received::Stored(id)) => {
            tracing::debug!(bundle = %id, "bundle received over websocket");
            format!("200 Sent payload with {len} bytes")
        }
        Ok(Received::Duplicate(id)) => format!("200 Sent payload with {len} bytes (bundle {id} was already stored)"),
        Err(DaemonError::Rejected(ferry_core::node::Rejected::Invalid(e))) => {
            format!("400 Invalid binary bundle: {e}")
        }
        Err(e @ DaemonError::Rejected(_)) => format!("422 {e}"),
        Err(e) => format!("500 {e}"),
    }
}

async fn send_data(daemon: &Daemon, req: WsSendData) -> String {
    let source = match req.src.trim().parse::<Eid>() {
        Ok(e) => e,
        Err(e) => return format!("400 invalid source {:?}: {e}", req.src),
    };
    let destination = match req.dst.trim().parse::<Eid>() {
        Ok(e) => e,
        Err(e) => return format!("400 invalid destination {:?}: {e}", req.dst),
    };
    let mut flags = bundle_flags::MUST_NOT_FRAGMENT;
    if req.delivery_notification {
        flags |= bundle_flags::REPORT_DELIVERY;
    }
    let send = SendRequest { source: Some(source), destination, lifetime_ms: req.lifetime, flags, report_to: None };
    let len = req.data.len();
    match daemon.send(send, &req.data).await {
        Ok(id) => format!("200 Sent bundle {id} with {len} bytes"),
        Err(e @ DaemonError::Send(_)) => format!("400 {e}"),
        Err(e) => format!("500 {e}"),
    }
}

/// Bundles written to a subscriber before their deliveries are confirmed.
const DELIVERY_WINDOW: usize = 256;
/// Bytes of bundles in one window at most (a single larger bundle goes alone).
const DELIVERY_WINDOW_BYTES: u64 = 8 << 20;
/// Written windows that may wait for their confirmation. Past this the
/// deliverer waits: a subscriber that reads faster than the node can confirm
/// (mark delivered, sync the deletions) is held back instead of piling up
/// unconfirmed bundles in the store and in memory.
const UNCONFIRMED_WINDOWS: usize = 8;

async fn deliver_loop(
    daemon: Arc<Daemon>,
    mode: Arc<AtomicU8>,
    subscriptions: Arc<Mutex<BTreeSet<Eid>>>,
    changed: Arc<Notify>,
    out: mpsc::Sender<Out>,
    mut closing: watch::Receiver<bool>,
) {
    let mut queued = daemon.watch_deliveries();
    // Written windows are confirmed by their own task, in order, while the
    // next windows are written; windows that wait meanwhile are confirmed
    // together (one node lock, one store write).
    let (written_tx, written_rx) = mpsc::channel(UNCONFIRMED_WINDOWS);
    let confirmer = tokio::spawn(confirm_loop(Arc::clone(&daemon), written_rx));
    loop {
        // Mark the queues seen before looking at them: nothing is missed.
        queued.borrow_and_update();
        let endpoints: Vec<Eid> = lock(&subscriptions).iter().cloned().collect();
        for endpoint in endpoints {
            if !lock(&subscriptions).contains(&endpoint) {
                continue;
            }
            // Bundles go out in windows: every frame of a window is written,
            // then the window's deliveries are confirmed together instead of
            // one sync per bundle.
            loop {
                let window = daemon.pop_deliveries(&endpoint, DELIVERY_WINDOW, DELIVERY_WINDOW_BYTES);
                if window.is_empty() {
                    break;
                }
                if *closing.borrow() {
                    for id in window.into_iter().rev() {
                        daemon.requeue(&endpoint, id);
                    }
                    return finish(written_tx, confirmer).await;
                }
                let mode = Mode::from_u8(mode.load(Ordering::Relaxed));
                let (written, failed) = deliver_window(&daemon, &out, mode, &window).await;
                if !written.is_empty() && written_tx.send(written).await.is_err() {
                    // The confirmer is gone (it panicked): deliveries stay
                    // unconfirmed and are made again after a restart.
                    tracing::error!("delivery confirmer stopped; closing the subscriber's deliveries");
                    return;
                }
                if failed {
                    for id in window.into_iter().rev() {
                        daemon.requeue(&endpoint, id);
                    }
                    return finish(written_tx, confirmer).await;
                }
            }
        }
        tokio::select! {
            r = queued.changed() => if r.is_err() { break },
            _ = changed.notified() => {}
            _ = closing.wait_for(|c| *c) => break,
        }
    }
    finish(written_tx, confirmer).await;
}

/// Confirms written windows in order; whatever has queued up while one
/// confirmation ran is confirmed in the next, together.
async fn confirm_loop(daemon: Arc<Daemon>, mut written: mpsc::Receiver<Vec<ferry_core::BundleId>>) {
    while let Some(mut ids) = written.recv().await {
        while let Ok(more) = written.try_recv() {
            ids.extend(more);
        }
        daemon.confirm_deliveries(&ids).await;
    }
}

/// Waits until every written window is confirmed, so that a closing
/// connection's deliveries are settled before it reports closed.
async fn finish(written: mpsc::Sender<Vec<ferry_core::BundleId>>, confirmer: JoinHandle<()>) {
    drop(written);
    let _ = confirmer.await;
}

/// Writes one window of deliveries to the subscriber: the bundles are read
/// in one go (mostly from memory), their frames go to the writer together and
/// leave in one flush. Returns the bundles written, and whether the socket
/// failed (then nothing of the window counts as delivered and the caller puts
/// it back; bundles already written may arrive twice, never not at all).
async fn deliver_window(
    daemon: &Daemon,
    out: &mpsc::Sender<Out>,
    mode: Mode,
    window: &[ferry_core::BundleId],
) -> (Vec<ferry_core::BundleId>, bool) {
    let loaded = match daemon.load_many(window).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(bundles = window.len(), first = %window[0], error = %e, "cannot load bundles for delivery");
            return (vec![], true);
        }
    };
    let mut ids = vec![];
    let mut msgs = vec![];
    for (id, bytes) in window.iter().zip(loaded) {
        // Gone meanwhile (expired, deleted): nothing to deliver.
        let Some(bytes) = bytes else { continue };
        if let Some(frame) = frame(mode, id, bytes) {
            ids.push(id.clone());
            msgs.push(Message::Binary(frame.into()));
        }
    }
    if msgs.is_empty() {
        return (vec![], false);
    }
    let (done_tx, done_rx) = oneshot::channel();
    if out.send(Out::Frames { msgs, done: done_tx }).await.is_err() || !done_rx.await.unwrap_or(false) {
        return (vec![], true);
    }
    tracing::debug!(bundles = ids.len(), "bundles delivered over websocket");
    (ids, false)
}

/// The frame a subscriber in `mode` gets for a stored bundle, or `None` when
/// the stored bytes do not decode (logged; the bundle stays stored).
fn frame(mode: Mode, id: &ferry_core::BundleId, bytes: Vec<u8>) -> Option<Vec<u8>> {
    Some(match mode {
        Mode::Bundle => bytes,
        Mode::Data | Mode::Json => {
            // As stored: dtn7-style bundles without a primary CRC included.
            let bundle = match ferry_core::node::decode_stored(&bytes) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(bundle = %id, error = %e, "stored bundle does not decode; not delivered");
                    return None;
                }
            };
            let p = &bundle.primary;
            let record = WsRecvData {
                bid: id.to_string(),
                src: p.source.to_string(),
                dst: p.destination.to_string(),
                cts: (p.creation.time, p.creation.seq),
                lifetime: p.lifetime_ms,
                data: bytes.get(bundle.payload().data.clone()).unwrap_or_default().to_vec(),
            };
            if mode == Mode::Json {
                serde_json::to_vec(&record).ok()?
            } else {
                let mut v = Vec::new();
                ciborium::into_writer(&record, &mut v).ok()?;
                v
            }
        }
    })
}

/// Base64 of `data` as dtn7-plus writes it (for tests and clients).
pub fn base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cla::NoCla;
    use crate::daemon::tests::GatedStore;
    use crate::daemon::DaemonOptions;
    use ferry_core::node::{Node, NodeConfig};
    use ferry_core::router::Epidemic;
    use ferry_core::store::Store as _;
    use ferry_core::time::ManualClock;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    /// A subscriber that reads faster than the node confirms its deliveries
    /// (the deletions' sync is slow) is held back after a bounded number of
    /// windows: unconfirmed bundles do not pile up. Once the store catches
    /// up, every bundle is delivered once and deleted.
    #[tokio::test]
    async fn a_subscriber_faster_than_the_confirmations_is_held_back() {
        const BUNDLES: usize = 6_000;
        let store = Arc::new(GatedStore::holding_deletes());
        let node = Node::new(NodeConfig::new("dtn://me/".parse().unwrap(), Box::new(Epidemic)));
        let clock = Arc::new(ManualClock::new(800_000_000_000));
        let options = DaemonOptions { default_lifetime: Duration::from_secs(3600) };
        let daemon = Daemon::start(node, store.clone(), clock, Arc::new(NoCla), options).await.unwrap();
        let ep: Eid = "dtn://me/in".parse().unwrap();
        daemon.register(ep.clone()).await.unwrap();
        let request =
            SendRequest { source: None, destination: ep.clone(), lifetime_ms: 60_000, flags: 0, report_to: None };
        for _ in 0..BUNDLES {
            daemon.send(request.clone(), b"x").await.unwrap();
        }

        // The subscriber's socket takes every frame at once.
        let (out_tx, mut out_rx) = mpsc::channel(4);
        let written = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&written);
        tokio::spawn(async move {
            while let Some(out) = out_rx.recv().await {
                if let Out::Frames { msgs, done } = out {
                    counted.fetch_add(msgs.len(), Ordering::SeqCst);
                    let _ = done.send(true);
                }
            }
        });
        let (closing_tx, closing_rx) = watch::channel(false);
        let subscriptions = Arc::new(Mutex::new(BTreeSet::from([ep.clone()])));
        let deliverer = tokio::spawn(deliver_loop(
            Arc::clone(&daemon),
            Arc::new(AtomicU8::new(Mode::Bundle as u8)),
            subscriptions,
            Arc::new(Notify::new()),
            out_tx,
            closing_rx,
        ));

        // No deletion is durable yet: the deliverer stops after the windows
        // it may have unconfirmed (plus the one being confirmed and the one
        // it is handing over).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ahead = written.load(Ordering::SeqCst);
        assert!(ahead >= DELIVERY_WINDOW, "the first window goes out: {ahead}");
        assert!(
            ahead <= (UNCONFIRMED_WINDOWS + 2) * DELIVERY_WINDOW,
            "{ahead} bundles written with none of their deliveries confirmed"
        );

        // The store catches up: everything is delivered and deleted.
        for _ in 0..1_000 {
            store.release_deletes();
            if written.load(Ordering::SeqCst) == BUNDLES && store.stats().unwrap().bundles == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(written.load(Ordering::SeqCst), BUNDLES, "each bundle is delivered once");
        assert_eq!(store.stats().unwrap().bundles, 0, "each delivered bundle is deleted");
        closing_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), deliverer).await.unwrap().unwrap();
    }

    #[test]
    fn records_round_trip_in_json_and_cbor() {
        let r = WsRecvData {
            bid: "dtn://a/-1-0".into(),
            src: "dtn://a/".into(),
            dst: "dtn://b/x".into(),
            cts: (1, 0),
            lifetime: 5,
            data: b"hi".to_vec(),
        };
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"data\":\"aGk=\""), "{json}");
        assert!(json.contains("\"cts\":[1,0]"), "{json}");
        assert_eq!(serde_json::from_str::<WsRecvData>(&json).unwrap(), r);
        let mut cbor = vec![];
        ciborium::into_writer(&r, &mut cbor).unwrap();
        assert_eq!(ciborium::from_reader::<WsRecvData, _>(cbor.as_slice()).unwrap(), r);
        let s: WsSendData = serde_json::from_str(
            r#"{"src":"dtn://a/","dst":"dtn://b/x","delivery_notification":false,"lifetime":1000,"data":"aGk="}"#,
        )
        .unwrap();
        assert_eq!(s.data, b"hi");
    }
}
