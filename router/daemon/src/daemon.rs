//! The async driver: runs a [`Node`] against a durable store on tokio.
//!
//! It follows the same rules as ferry-core's `SyncDriver`, with concurrency:
//!
//! - the node sits behind a `std::sync::Mutex` that is held only to call one
//!   input and drain every action it produced — never across an `.await` and
//!   never across a store call;
//! - the drained actions are then carried out in order by the caller's task;
//!   the persists among them go to the store as one batch that the task
//!   awaits without holding a thread (the store calls back once the batch is
//!   synced), so many API calls can have a write in flight at once and the
//!   store's group commit turns them into one sync; the rarer store calls
//!   (reads, metadata updates, node state) run on the blocking pool;
//! - [`Daemon::receive_many`] takes a burst of bundles (a websocket's frames
//!   already read) through the node under one lock and persists them as one
//!   batch: per-bundle locking and wake-ups are most of what a small bundle
//!   costs;
//! - an API call reports success for a bundle only once its
//!   [`Action::Persist`] completed (the storage promise: what Ferry
//!   acknowledged is on disk first);
//! - deliveries wait in per-endpoint queues in memory until an application
//!   fetches them (`/endpoint`) or a websocket subscriber takes them; the node
//!   is told the bundle was delivered only then, and the resulting deletion is
//!   made durable before the application gets the bytes (see
//!   [`Daemon::take_delivery`]);
//! - a timer task calls [`Node::handle_timeout`] at [`Node::poll_timeout`], re-armed after
//!   every batch of actions, so bundles expire (with their deletion reports)
//!   while nobody calls the API.
//!
//! At start-up the node ID, the registrations and the configured peers come
//! back from the store's state, then every stored bundle is fed to
//! [`Node::handle_recovered`]: delivery queues refill and routing resumes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferry_core::admin::ReasonCode;
use ferry_core::bundle::{Bundle, BundleId, BundleMeta, DtnTime};
use ferry_core::codec;
use ferry_core::eid::Eid;
use ferry_core::node::{
    decode_stored, transmission, Action, Node, NodeStats, Rejected, SendError, SendRequest, Transmit, TransmitOutcome,
};
use ferry_core::router::{PeerId, PeerInfo};
use ferry_core::store::{MemStore, Store, StoreError, StoreStats};
use ferry_core::time::Clock;
use ferry_store::{OnDurable, RocksStore};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use crate::cla::Cla;
use crate::hot::HotCache;
use crate::shutdown::Shutdown;

/// Store state key of the node ID.
pub const STATE_NODE_ID: &str = "node_id";
/// Store state key of the registrations (newline-separated EIDs).
pub const STATE_REGISTRATIONS: &str = "registrations";
/// Store state key of the configured peers (JSON).
pub const STATE_PEERS: &str = "peers";

/// A store the daemon can run on: a [`Store`] that can also be flushed and
/// closed on shutdown.
pub trait DurableStore: Store {
    /// Makes everything written so far durable and cheap to reopen.
    fn flush(&self) -> Result<(), StoreError>;
    /// Finishes queued writes; writes after it fail.
    fn close(&self) -> Result<(), StoreError>;
    /// Synced write batches and the writes they carried, if the store counts
    /// them (`writes / syncs` is the mean group-commit size).
    fn sync_stats(&self) -> Option<SyncStats> {
        None
    }
    /// Stores several bundles as one batch without blocking the caller;
    /// `done` is told (exactly once) when they are durable or failed. The
    /// default stores them right here, for stores whose writes are cheap.
    fn submit_put_many(&self, items: Vec<(BundleMeta, Vec<u8>)>, done: OnDurable) {
        done(items.iter().try_for_each(|(meta, bytes)| self.put(meta, bytes)));
    }
    /// Deletes several bundles as one batch without blocking the caller (IDs
    /// that are not there are skipped); `done` as for `submit_put_many`.
    fn submit_delete_many(&self, ids: Vec<BundleId>, done: OnDurable) {
        done(ids.iter().try_for_each(|id| self.delete(id).map(|_| ())));
    }
    /// Deletes bundles and, in the same batch, forgets the delivered IDs in
    /// `forget`, then remembers those delivered here until their time (see
    /// [`Node::handle_recovered_delivered`]). The default remembers nothing.
    fn submit_delete_and_remember(
        &self,
        ids: Vec<BundleId>,
        _delivered: Vec<(BundleId, DtnTime)>,
        _forget: Vec<BundleId>,
        done: OnDurable,
    ) {
        self.submit_delete_many(ids, done)
    }
    /// The delivered bundles remembered, each with its time.
    fn delivered(&self) -> Result<Vec<(BundleId, DtnTime)>, StoreError> {
        Ok(Vec::new())
    }
}

/// One store write that tidies up after the node: bundles to delete,
/// delivered IDs to remember (each until its time) and to forget, in the
/// order the node decided them.
#[derive(Debug, Default)]
struct Cleanup {
    ids: Vec<BundleId>,
    remember: Vec<(BundleId, DtnTime)>,
    /// Forgotten IDs, each with the number of `remember` entries made before
    /// it: a forget cancels only those.
    forgotten: Vec<(BundleId, usize)>,
}

impl Cleanup {
    fn forget(&mut self, ids: Vec<BundleId>) {
        let before = self.remember.len();
        self.forgotten.extend(ids.into_iter().map(|id| (id, before)));
    }

    /// The write that leaves the store as the node's order of events would:
    /// the store applies forgets before remembers, so an ID remembered and
    /// then forgotten in this run is not remembered at all.
    fn resolved(self) -> ResolvedCleanup {
        let Cleanup { ids, mut remember, forgotten } = self;
        // Latest position at which each ID was forgotten.
        let mut forgotten_at: HashMap<&BundleId, usize> = HashMap::new();
        for (id, at) in &forgotten {
            let e = forgotten_at.entry(id).or_insert(*at);
            *e = (*e).max(*at);
        }
        if !forgotten_at.is_empty() {
            let mut i = 0;
            remember.retain(|(id, _)| {
                let keep = forgotten_at.get(id).is_none_or(|&at| i >= at);
                i += 1;
                keep
            });
        }
        let forgotten = forgotten.into_iter().map(|(id, _)| id).collect();
        ResolvedCleanup { ids, remember, forgotten }
    }
}

/// A [`Cleanup`] ready for the store.
struct ResolvedCleanup {
    ids: Vec<BundleId>,
    remember: Vec<(BundleId, DtnTime)>,
    forgotten: Vec<BundleId>,
}

/// How well group commit works: syncs and the writes they carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SyncStats {
    pub syncs: u64,
    pub writes: u64,
}

impl DurableStore for RocksStore {
    fn flush(&self) -> Result<(), StoreError> {
        RocksStore::flush(self)
    }
    fn close(&self) -> Result<(), StoreError> {
        RocksStore::close(self)
    }
    fn sync_stats(&self) -> Option<SyncStats> {
        let c = self.commit_stats();
        Some(SyncStats { syncs: c.batches, writes: c.writes })
    }
    fn submit_put_many(&self, items: Vec<(BundleMeta, Vec<u8>)>, done: OnDurable) {
        RocksStore::submit_put_many(self, items, done)
    }
    fn submit_delete_many(&self, ids: Vec<BundleId>, done: OnDurable) {
        RocksStore::submit_delete_many(self, &ids, done)
    }
    fn submit_delete_and_remember(
        &self,
        ids: Vec<BundleId>,
        delivered: Vec<(BundleId, DtnTime)>,
        forget: Vec<BundleId>,
        done: OnDurable,
    ) {
        RocksStore::submit_delete_and_remember(self, &ids, &delivered, &forget, done)
    }
    fn delivered(&self) -> Result<Vec<(BundleId, DtnTime)>, StoreError> {
        RocksStore::delivered(self)
    }
}

/// For tests: nothing to flush.
impl DurableStore for MemStore {
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
    fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Why an API operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The node would not create the bundle.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The node would not take the bundle.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The store failed; nothing was acknowledged.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    /// Writing the bundle to the store failed; the bundle was not accepted.
    #[error("storing bundle {id} failed: {reason}")]
    NotStored { id: BundleId, reason: String },
    /// The store is (nearly) full: the bundle was not accepted; send it
    /// again once space is freed.
    #[error("storage full, bundle {id} not accepted: {reason}")]
    StorageFull { id: BundleId, reason: String },
    /// No application is registered on the endpoint.
    #[error("no such endpoint registered: {0}")]
    NotRegistered(Eid),
    /// A blocking task died (a panic in the store engine).
    #[error("a storage task failed: {0}")]
    Task(String),
    /// A peer URL that is not `<cla>://<host>:<port>/<node>`.
    #[error("malformed peer URL `{0}` (expected e.g. tcp://192.0.2.1:4556/node2)")]
    PeerUrl(String),
    /// The state stored under a key does not parse.
    #[error("corrupt node state `{key}`: {reason}")]
    CorruptState { key: &'static str, reason: String },
}

/// What became of a bundle handed to [`Daemon::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Stored durably now.
    Stored(BundleId),
    /// This node already had it (durably).
    Duplicate(BundleId),
}

/// Whether a configured peer is dialled again after it goes away (dtn7's
/// `p_t=STATIC|DYNAMIC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerType {
    Static,
    Dynamic,
}

/// A peer the operator configured (`/peers/add`). Nothing dials it until a
/// convergence layer that speaks `cla` is loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfiguredPeer {
    /// The peer's node ID.
    pub eid: String,
    /// Convergence layer name from the URL scheme ("tcp", "mtcp").
    pub cla: String,
    pub addr: String,
    pub port: Option<u16>,
    pub con_type: PeerType,
    /// Whether a convergence layer has a session with it up (filled in by `configured_peers`).
    pub connected: bool,
}

impl ConfiguredPeer {
    /// The URL the TCP plugin takes for this peer: `tcpcl://host:port/<node>`
    /// for dtn7's `tcp`, `mtcp://host:port/<node>` and `stcp://...` as they are.
    pub fn cla_url(&self) -> String {
        let scheme = match self.cla.as_str() {
            "tcp" | "tcpcl" => "tcpcl",
            other => other,
        };
        let hostport = match self.port {
            Some(p) if self.addr.contains(':') => format!("[{}]:{p}", self.addr),
            Some(p) => format!("{}:{p}", self.addr),
            None => self.addr.clone(),
        };
        format!("{scheme}://{hostport}/{}", self.eid)
    }

    /// Parses dtn7's peer URL: `<cla>://<host>[:<port>]/<node>`, where `<node>`
    /// is a name (`node2` → `dtn://node2/`), a number (`23` → `ipn:23.0`) or a
    /// node ID.
    pub fn parse(url: &str, con_type: PeerType) -> Result<ConfiguredPeer, DaemonError> {
        let bad = || DaemonError::PeerUrl(url.to_owned());
        let (cla, rest) = url.split_once("://").ok_or_else(bad)?;
        let (hostport, node) = rest.split_once('/').ok_or_else(bad)?;
        if cla.is_empty() || !cla.bytes().all(|b| b.is_ascii_alphanumeric()) || hostport.is_empty() {
            return Err(bad());
        }
        let (addr, port) = if let Some(rest) = hostport.strip_prefix('[') {
            // [v6 address]:port
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?.parse::<u16>().map_err(|_| bad())?),
            };
            (format!("[{host}]"), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(p.parse::<u16>().map_err(|_| bad())?)),
                None => (hostport.to_owned(), None),
            }
        };
        let node = node.trim_end_matches('/');
        let eid = if node.starts_with("dtn:") || node.starts_with("ipn:") {
            let e: Eid = node.parse().map_err(|_| bad())?;
            e.node_id()
        } else if !node.is_empty() && node.bytes().all(|b| b.is_ascii_digit()) {
            Eid::ipn_node(node.parse().map_err(|_| bad())?)
        } else {
            Eid::dtn_node(node).map_err(|_| bad())?
        };
        Ok(ConfiguredPeer { eid: eid.to_string(), cla: cla.to_owned(), addr, port, con_type, connected: false })
    }
}

/// Outcomes of the persists one [`Daemon::execute`] call carried out.
#[derive(Debug, Default)]
pub struct Executed {
    /// By ID: a burst persists hundreds of bundles at once.
    persisted: HashMap<BundleId, Result<(), StoreError>>,
}

impl Executed {
    /// How the persist of `id` went, if this call carried it out.
    pub fn persist_of(&self, id: &BundleId) -> Option<&Result<(), StoreError>> {
        self.persisted.get(id)
    }
}

/// Bundles the node has taken ([`Daemon::take_in`]) whose persists are yet to
/// be carried out ([`Daemon::store_intake`]).
#[must_use = "the bundles stay half-received until store_intake carries out their persists"]
pub struct Intake {
    results: Vec<Result<BundleId, Rejected>>,
    actions: Vec<Action>,
}

/// Options the daemon runs with (besides the node's own).
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Lifetime of bundles sent through the API without one.
    pub default_lifetime: Duration,
}

/// A bundle's place in the daemon, for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleState {
    /// Being written to the store.
    Persisting,
    /// In an endpoint's queue, waiting for the application to fetch it.
    Deliverable,
    /// Being handed to an application right now.
    Delivering,
    /// For an endpoint of this node that no application has registered.
    WaitingForApplication,
    /// For another node, waiting for a contact.
    WaitingForContact,
}

impl BundleState {
    pub fn as_str(self) -> &'static str {
        match self {
            BundleState::Persisting => "persisting",
            BundleState::Deliverable => "deliverable",
            BundleState::Delivering => "delivering",
            BundleState::WaitingForApplication => "waiting_for_application",
            BundleState::WaitingForContact => "waiting_for_contact",
        }
    }
}

/// The bundle protocol agent of ferryd: the node, its store, and what the
/// applications are waiting for. Shared as `Arc<Daemon>` by every task.
pub struct Daemon {
    node: Mutex<Node>,
    store: Arc<dyn DurableStore>,
    clock: Arc<dyn Clock>,
    cla: Arc<dyn Cla>,
    /// Connected peers' node IDs -> how they are reached (for /status/peers).
    links: Mutex<BTreeMap<String, String>>,
    options: DaemonOptions,
    /// Bundles handed to an endpoint (Deliver) that no application took yet.
    queues: Mutex<HashMap<Eid, VecDeque<BundleId>>>,
    /// Bumped whenever a queue gets a bundle; websocket subscribers watch it.
    deliveries: watch::Sender<u64>,
    /// Re-arms the timer task.
    timer: Notify,
    /// The deadline (DTN ms) the timer task sleeps until, `u64::MAX` for none.
    /// Read and written under the node lock, so that an input that moves the
    /// next timeout earlier always sees what the timer armed, and wakes it.
    timer_armed: AtomicU64,
    /// Bundles whose Persist is running.
    persisting: Mutex<HashMap<BundleId, Writing>>,
    /// Woken when a persist finishes (for duplicates that wait on the first copy).
    persist_done: Notify,
    /// IDs whose last write failed, newest last (at most
    /// [`FAILED_WRITES_KEPT`]): a duplicate that waited on such a write is
    /// not acknowledged. A bundle gone from the node for any other reason
    /// (delivered, forwarded, deleted) was stored first, so its duplicate is.
    failed_writes: Mutex<VecDeque<BundleId>>,
    /// Copies of recently stored small bundles, for the transmission or
    /// delivery that follows (see [`crate::hot`]).
    hot: Mutex<HotCache>,
    /// Where this node takes its peers' routing information (PRoPHET's
    /// predictabilities), when its router exchanges any.
    routing_endpoint: Option<Eid>,
    /// Serializes writes of node state so that the newest snapshot wins.
    state_writes: tokio::sync::Mutex<()>,
    peers: Mutex<BTreeMap<String, ConfiguredPeer>>,
    /// Last timestamp handed out by [`Daemon::creation_timestamp`].
    started: Instant,
}

/// A bundle whose write is running.
#[derive(Default)]
struct Writing {
    /// A Delete came meanwhile: carried out once the write is done.
    delete_after: bool,
    /// ...of a bundle delivered here, remembered until then.
    delivered: Option<DtnTime>,
    /// Its bytes, when the node was told of it before the sync (see
    /// [`Daemon::persist`]): what forwards or delivers it reads them here.
    bytes: Option<Arc<[u8]>>,
}

/// A batch handed to the store whose sync has not been awaited yet.
struct PendingWrite {
    ids: Vec<BundleId>,
    copies: Vec<Option<Arc<[u8]>>>,
    /// The node was told (`handle_persisted`) before the sync.
    early: bool,
    synced: tokio::sync::oneshot::Receiver<Result<(), StoreError>>,
}

/// How many failed writes [`Daemon`] remembers for the duplicates that
/// waited on them (failures are rare: a failing disk).
const FAILED_WRITES_KEPT: usize = 4096;

/// Bundles to transmit that are not in memory are read from the store in
/// chunks of about this many bytes (a bigger bundle alone), each handed to its
/// convergence layer as soon as its chunk is read.
const LOAD_CHUNK_BYTES: usize = 8 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few map operations that leave the data
    // consistent; a panic in one must not take the daemon down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn drain(node: &mut Node) -> Vec<Action> {
    std::iter::from_fn(|| node.poll_action()).collect()
}

/// How long routing information sent to a new peer lives: it is only worth
/// something while the link it was sent over is up.
const ROUTING_INFO_LIFETIME_MS: u64 = 60_000;

/// A node's endpoint for routing information: `dtn://<node>/~routing`.
/// Nodes with `ipn` IDs exchange none (there is no agreed service number).
fn routing_endpoint_of(node: &Eid) -> Option<Eid> {
    match node {
        Eid::Dtn { node, .. } => Some(Eid::Dtn { node: node.clone(), demux: "~routing".into() }),
        _ => None,
    }
}

/// Hands a write to the store and waits for it to be durable, without
/// holding a thread: the store's commit thread completes a oneshot.
async fn durable(submit: impl FnOnce(OnDurable)) -> Result<(), StoreError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    submit(Box::new(move |r| {
        // The waiting task may be gone (its caller hung up): nothing to tell.
        let _ = tx.send(r);
    }));
    // A dropped sender means the store dropped the write uncalled: closed.
    rx.await.unwrap_or(Err(StoreError::Closed))
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| DaemonError::Task(e.to_string()))
}

/// Reads the node ID kept in the store's state, if any.
pub fn stored_node_id(store: &dyn Store) -> Result<Option<Eid>, DaemonError> {
    let Some(raw) = store.get_state(STATE_NODE_ID)? else { return Ok(None) };
    let text =
        String::from_utf8(raw).map_err(|e| DaemonError::CorruptState { key: STATE_NODE_ID, reason: e.to_string() })?;
    let eid: Eid = text.trim().parse().map_err(|e: ferry_core::eid::EidError| DaemonError::CorruptState {
        key: STATE_NODE_ID,
        reason: e.to_string(),
    })?;
    Ok(Some(eid))
}

/// A fresh node ID: `dtn://<8 random hex digits>/`.
pub fn random_node_id() -> Eid {
    let name = format!("{:08x}", rand::random::<u32>());
    Eid::dtn_node(&name).unwrap_or_else(|_| Eid::ipn_node(u64::from(rand::random::<u32>())))
}

impl Daemon {
    /// Starts the daemon on `store` with `node` (which has the final node ID):
    /// restores registrations and peers, recovers every stored bundle.
    /// Blocking store reads happen on the blocking pool.
    pub async fn start(
        node: Node,
        store: Arc<dyn DurableStore>,
        clock: Arc<dyn Clock>,
        cla: Arc<dyn Cla>,
        options: DaemonOptions,
    ) -> Result<Arc<Daemon>, DaemonError> {
        let s = Arc::clone(&store);
        let (registrations, peers, metas, delivered) = blocking(move || -> Result<_, DaemonError> {
            let regs = s.get_state(STATE_REGISTRATIONS)?.unwrap_or_default();
            let peers = s.get_state(STATE_PEERS)?;
            let metas = s.all_meta()?;
            let delivered = s.delivered()?;
            Ok((regs, peers, metas, delivered))
        })
        .await??;

        let registrations: Vec<Eid> = String::from_utf8_lossy(&registrations)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| match l.trim().parse::<Eid>() {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!(line = l, error = %e, "skipping a stored registration that does not parse");
                    None
                }
            })
            .collect();
        let peers: BTreeMap<String, ConfiguredPeer> = match peers {
            Some(raw) => serde_json::from_slice(&raw)
                .map_err(|e| DaemonError::CorruptState { key: STATE_PEERS, reason: e.to_string() })?,
            None => BTreeMap::new(),
        };

        let mut node = node;
        let routing_endpoint = node.routing_info(clock.now()).and_then(|_| routing_endpoint_of(node.node_id()));
        let daemon = Arc::new(Daemon {
            node: Mutex::new(node),
            store,
            clock,
            cla,
            links: Mutex::new(BTreeMap::new()),
            options,
            queues: Mutex::new(HashMap::new()),
            deliveries: watch::channel(0).0,
            timer: Notify::new(),
            timer_armed: AtomicU64::new(u64::MAX),
            persisting: Mutex::new(HashMap::new()),
            persist_done: Notify::new(),
            failed_writes: Mutex::new(VecDeque::new()),
            hot: Mutex::new(HotCache::default()),
            routing_endpoint: routing_endpoint.clone(),
            state_writes: tokio::sync::Mutex::new(()),
            peers: Mutex::new(peers),
            started: Instant::now(),
        });

        let n_regs = registrations.len();
        let n_bundles = metas.len();
        let ((), actions) = daemon.input(|node, now| {
            if let Some(eid) = routing_endpoint {
                node.register(now, eid);
            }
            for eid in registrations {
                node.register(now, eid);
            }
            for (id, until) in delivered {
                node.handle_recovered_delivered(now, id, until);
            }
            for meta in metas {
                node.handle_recovered(now, meta);
            }
        });
        daemon.execute(actions).await;
        tracing::info!(
            node_id = %daemon.node_id(),
            registrations = n_regs,
            bundles = n_bundles,
            cla = daemon.cla.name(),
            "node recovered"
        );
        Ok(daemon)
    }

    // ----- the driver loop -----

    fn node(&self) -> MutexGuard<'_, Node> {
        lock(&self.node)
    }

    /// Calls one input on the node and drains every action it produced.
    /// Wakes the timer task if the node's next timeout moved before what the
    /// timer sleeps until (and only then: waking it on every call would cost
    /// a task switch per bundle).
    fn input<R>(&self, f: impl FnOnce(&mut Node, DtnTime) -> R) -> (R, Vec<Action>) {
        let mut node = self.node();
        let now = self.clock.now();
        let r = f(&mut node, now);
        let actions = drain(&mut node);
        if node.poll_timeout().is_some_and(|t| t < self.timer_armed.load(Ordering::Relaxed)) {
            self.timer.notify_one();
        }
        (r, actions)
    }

    /// Carries out `actions` in order, and the actions that follow from them,
    /// until none are left. Consecutive persists (and consecutive deletes) go
    /// to the store as one write, so they share one sync. Returns once every
    /// write it started is durable (or failed): the outcomes say what may be
    /// acknowledged.
    pub async fn execute(&self, actions: Vec<Action>) -> Executed {
        let mut work: VecDeque<Action> = actions.into();
        let mut done = Executed::default();
        let mut writes: Vec<PendingWrite> = vec![];
        loop {
            self.carry_out(&mut work, &mut done, &mut writes).await;
            if writes.is_empty() {
                return done;
            }
            for w in std::mem::take(&mut writes) {
                work.extend(self.finish_write(w, &mut done).await);
            }
        }
    }

    /// [`Daemon::execute`]'s loop, up to the writes still syncing.
    async fn carry_out(&self, work: &mut VecDeque<Action>, done: &mut Executed, writes: &mut Vec<PendingWrite>) {
        while let Some(action) = work.pop_front() {
            match action {
                Action::Persist { meta, bytes } => {
                    let mut batch = vec![(meta, bytes)];
                    while let Some(Action::Persist { .. }) = work.front() {
                        if let Some(Action::Persist { meta, bytes }) = work.pop_front() {
                            batch.push((meta, bytes));
                        }
                    }
                    let more = self.persist(batch, done, writes).await;
                    work.extend(more);
                }
                Action::UpdateMeta(meta) => {
                    let store = Arc::clone(&self.store);
                    let id = meta.id.clone();
                    match blocking(move || store.update_meta(&meta)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::error!(bundle = %id, error = %e, "updating bundle metadata failed"),
                        Err(e) => tracing::error!(bundle = %id, error = %e, "updating bundle metadata failed"),
                    }
                }
                action @ (Action::Delete { .. } | Action::ForgetDelivered(_)) => {
                    // Deletions come in runs (expiry, deliveries), and once
                    // the node's memory of delivered IDs is full each
                    // delivery also forgets the oldest one: the whole run is
                    // one batch, one sync. A bundle whose write still runs is
                    // deleted once that is done.
                    let mut cleanup = Cleanup::default();
                    let mut next = Some(action);
                    while let Some(action) = next.take() {
                        match action {
                            Action::Delete { id, reason, delivered } => {
                                self.plan_delete(&mut cleanup, id, reason, delivered)
                            }
                            Action::ForgetDelivered(ids) => cleanup.forget(ids),
                            _ => {}
                        }
                        if let Some(Action::Delete { .. } | Action::ForgetDelivered(_)) = work.front() {
                            next = work.pop_front();
                        }
                    }
                    self.clean_up(cleanup).await;
                }
                Action::Deliver { id, endpoint } if self.routing_endpoint.as_ref() == Some(&endpoint) => {
                    work.extend(Box::pin(self.take_routing_info(id)).await);
                }
                Action::Deliver { id, endpoint } => {
                    tracing::debug!(bundle = %id, %endpoint, "bundle ready for delivery");
                    lock(&self.queues).entry(endpoint).or_default().push_back(id);
                    self.deliveries.send_modify(|n| *n = n.wrapping_add(1));
                }
                Action::Transmit(t) => {
                    // Runs of transmissions (a peer came up, a burst arrived)
                    // are prepared in one trip to the blocking pool.
                    let mut orders = vec![t];
                    while let Some(Action::Transmit(_)) = work.front() {
                        if let Some(Action::Transmit(t)) = work.pop_front() {
                            orders.push(t);
                        }
                    }
                    work.extend(self.transmit(orders).await);
                }
                Action::Reassemble { parts } => work.extend(self.reassemble(parts).await),
            }
        }
    }

    /// Hands `batch` to the store as one write (one group-commit request, so
    /// one sync at most).
    ///
    /// When every bundle in it is small enough to keep in memory, the node is
    /// told at once and what follows — forwarding, delivery — runs while the
    /// store syncs; the write joins `writes`, and [`Daemon::execute`] awaits
    /// it before it returns, so acknowledgements still wait for the disk. A
    /// crash before the sync loses nothing that was acknowledged: at worst a
    /// bundle forwarded meanwhile arrives twice, which the protocol allows.
    /// Larger bundles are read back from the store to be sent, so for them
    /// the node hears only once the write is durable.
    async fn persist(
        &self,
        batch: Vec<(BundleMeta, Vec<u8>)>,
        done: &mut Executed,
        writes: &mut Vec<PendingWrite>,
    ) -> Vec<Action> {
        let ids: Vec<BundleId> = batch.iter().map(|(m, _)| m.id.clone()).collect();
        let copies: Vec<Option<Arc<[u8]>>> = {
            let hot = lock(&self.hot);
            batch.iter().map(|(_, b)| hot.wants(b.len()).then(|| Arc::from(b.as_slice()))).collect()
        };
        let early = copies.iter().all(Option::is_some);
        {
            let mut p = lock(&self.persisting);
            for (id, copy) in ids.iter().zip(&copies) {
                let bytes = if early { copy.clone() } else { None };
                p.insert(id.clone(), Writing { delete_after: false, delivered: None, bytes });
            }
        }
        let (tx, synced) = tokio::sync::oneshot::channel();
        self.store.submit_put_many(
            batch,
            Box::new(move |r| {
                // The waiting task may be gone (its caller hung up): nothing to tell.
                let _ = tx.send(r);
            }),
        );
        let write = PendingWrite { ids, copies, early, synced };
        if !early {
            return self.finish_write(write, done).await;
        }
        let ((), more) = self.input(|node, now| {
            for id in &write.ids {
                node.handle_persisted(now, id, true);
            }
        });
        writes.push(write);
        more
    }

    /// Awaits the sync of a write [`Daemon::persist`] started, and settles
    /// what waited on it: the node (unless told already), deletions that came
    /// meanwhile, and the outcomes that acknowledgements follow.
    async fn finish_write(&self, write: PendingWrite, done: &mut Executed) -> Vec<Action> {
        let PendingWrite { ids, copies, early, synced } = write;
        // A dropped sender means the store dropped the write uncalled: closed.
        let result = synced.await.unwrap_or(Err(StoreError::Closed));
        if let Err(e) = &result {
            tracing::error!(bundles = ids.len(), first = %ids[0], error = %e, "storing bundles failed; they are not accepted");
        }
        let ok = result.is_ok();
        if ok {
            let mut hot = lock(&self.hot);
            for (id, copy) in ids.iter().zip(copies) {
                if let Some(bytes) = copy {
                    hot.insert(id.clone(), bytes);
                }
            }
        }
        {
            let mut failed = lock(&self.failed_writes);
            if ok {
                if !failed.is_empty() {
                    failed.retain(|f| !ids.contains(f));
                }
            } else {
                failed.extend(ids.iter().cloned());
                let excess = failed.len().saturating_sub(FAILED_WRITES_KEPT);
                failed.drain(..excess);
            }
        }
        let delete_after: Vec<(bool, Option<DtnTime>)> = {
            let mut p = lock(&self.persisting);
            ids.iter().map(|id| p.remove(id).map_or((false, None), |w| (w.delete_after, w.delivered))).collect()
        };
        let ((), more) = self.input(|node, now| {
            for id in &ids {
                match (early, ok) {
                    (false, _) => node.handle_persisted(now, id, ok),
                    (true, false) => node.handle_write_failed(id),
                    (true, true) => {}
                }
            }
        });
        let gone: Vec<BundleId> =
            ids.iter().zip(&delete_after).filter(|(_, d)| ok && d.0).map(|(id, _)| id.clone()).collect();
        let remember: Vec<(BundleId, DtnTime)> = ids
            .iter()
            .zip(&delete_after)
            .filter_map(|(id, d)| d.1.filter(|_| ok && d.0).map(|until| (id.clone(), until)))
            .collect();
        if !gone.is_empty() {
            self.delete_stored(gone, remember).await;
        }
        done.persisted.extend(ids.into_iter().map(|id| (id, result.clone())));
        self.persist_done.notify_waiters();
        more
    }

    /// The bytes of a bundle kept in memory: just stored, or still being
    /// written after the node was told of it.
    fn in_memory(&self, id: &BundleId) -> Option<Arc<[u8]>> {
        if let Some(bytes) = lock(&self.hot).get(id) {
            return Some(bytes);
        }
        lock(&self.persisting).get(id).and_then(|w| w.bytes.clone())
    }

    async fn delete_stored(&self, ids: Vec<BundleId>, delivered: Vec<(BundleId, DtnTime)>) {
        self.clean_up(Cleanup { ids, remember: delivered, forgotten: Vec::new() }).await;
    }

    /// Adds one deletion the node ordered to `cleanup`, or, for a bundle
    /// whose write still runs, leaves it to [`Daemon::finish_write`].
    fn plan_delete(&self, cleanup: &mut Cleanup, id: BundleId, reason: Option<ReasonCode>, delivered: Option<DtnTime>) {
        tracing::debug!(bundle = %id, ?reason, delivered = delivered.is_some(), "deleting bundle");
        crate::metrics::METRICS.deleted(reason, delivered.is_some());
        match (delivered.is_some(), reason) {
            (true, _) => crate::events::EVENTS.publish("delivered", id.to_string()),
            (false, Some(r)) => crate::events::EVENTS.publish("deleted", format!("{id}: {r:?}")),
            (false, None) => {}
        }
        match lock(&self.persisting).get_mut(&id) {
            Some(w) => {
                w.delete_after = true;
                w.delivered = delivered;
            }
            None => {
                if let Some(until) = delivered {
                    cleanup.remember.push((id.clone(), until));
                }
                cleanup.ids.push(id);
            }
        }
    }

    /// Deletes bundles, forgets and remembers delivered IDs, in one store
    /// write, and waits until it is durable.
    async fn clean_up(&self, cleanup: Cleanup) {
        let ResolvedCleanup { ids, remember, forgotten } = cleanup.resolved();
        if ids.is_empty() && remember.is_empty() && forgotten.is_empty() {
            return;
        }
        {
            let mut hot = lock(&self.hot);
            for id in &ids {
                hot.remove(id);
            }
        }
        let (n, f) = (ids.len(), forgotten.len());
        let write = |done| match (remember.is_empty(), forgotten.is_empty()) {
            (true, true) => self.store.submit_delete_many(ids, done),
            _ => self.store.submit_delete_and_remember(ids, remember, forgotten, done),
        };
        if let Err(e) = durable(write).await {
            tracing::error!(bundles = n, forgotten = f, error = %e, "deleting bundles from the store failed");
        }
    }

    async fn transmit(&self, orders: Vec<Transmit>) -> Vec<Action> {
        // Bundles just stored are usually still in memory: those are
        // prepared here; the rest are read from the store a few at a time
        // (at most LOAD_CHUNK_BYTES in memory) and each is handed over as
        // soon as it is read, so that big bundles go out one after another
        // rather than all after the last is read.
        let cached: Vec<Option<Arc<[u8]>>> = orders.iter().map(|o| self.in_memory(&o.id)).collect();
        let mut queued: Vec<Option<Result<(), TransmitOutcome>>> = orders
            .iter()
            .zip(&cached)
            .map(|(order, bytes)| bytes.as_ref().map(|b| self.hand_to_cla(order, Ok(Some(b)))))
            .collect();
        let misses: Vec<usize> = (0..orders.len()).filter(|&i| cached[i].is_none()).collect();
        // The plugins hear what is still on its way (`ferry usb sync` must not
        // call a stick done while a bundle for it is being read).
        let mut per_peer: HashMap<PeerId, i64> = HashMap::new();
        for &i in &misses {
            *per_peer.entry(orders[i].peer).or_default() += 1;
        }
        for (&peer, &n) in &per_peer {
            self.cla.preparing(peer, n);
        }
        let mut next = 0;
        while next < misses.len() {
            let chunk: Vec<Transmit> = misses[next..].iter().map(|&i| orders[i].clone()).collect();
            let store = Arc::clone(&self.store);
            let loaded = blocking(move || {
                let mut out = Vec::new();
                let mut bytes = 0;
                for o in &chunk {
                    let b = store.get_bytes(&o.id);
                    bytes += b.as_ref().ok().and_then(|b| b.as_ref()).map_or(0, Vec::len);
                    out.push(b);
                    if bytes >= LOAD_CHUNK_BYTES {
                        break;
                    }
                }
                out
            })
            .await
            .unwrap_or_else(|e| vec![Err(StoreError::Engine(e.to_string()))]);
            for bytes in loaded {
                let i = misses[next];
                next += 1;
                let order = &orders[i];
                queued[i] =
                    Some(self.hand_to_cla(order, bytes.as_ref().map(|b| b.as_deref()).map_err(|e| e.to_string())));
                self.cla.preparing(order.peer, -1);
            }
        }
        // Queued ones report back through `transmitted`; the rest end now.
        let failed: Vec<(&Transmit, TransmitOutcome)> = orders
            .iter()
            .zip(queued)
            .filter_map(|(t, q)| q.unwrap_or(Err(TransmitOutcome::Failed)).err().map(|o| (t, o)))
            .collect();
        if failed.is_empty() {
            return vec![];
        }
        let ((), actions) = self.input(|node, now| {
            for (t, outcome) in failed {
                node.handle_transmitted(now, t.peer, &t.id, outcome);
            }
        });
        actions
    }

    /// Prepares one transmission from the stored bytes and queues it with the
    /// convergence layer (which must not block: it queues the work).
    fn hand_to_cla(&self, order: &Transmit, stored: Result<Option<&[u8]>, String>) -> Result<(), TransmitOutcome> {
        let prepared = match stored {
            Ok(Some(bytes)) => transmission(bytes, order).map_err(|e| e.to_string()),
            Ok(None) => Err("bundle to transmit is not in the store".to_owned()),
            Err(e) => Err(e),
        };
        match prepared {
            Ok(bundles) => self.cla.transmit(order.peer, &order.id, &bundles),
            Err(what) => {
                tracing::error!(bundle = %order.id, error = what, "cannot prepare bundle for transmission");
                Err(TransmitOutcome::Failed)
            }
        }
    }

    /// A convergence layer finished a transmission the node ordered.
    pub async fn transmitted(&self, peer: PeerId, id: &BundleId, outcome: TransmitOutcome) {
        self.transmitted_many(vec![(peer, id.clone(), outcome)]).await;
    }

    /// [`Daemon::transmitted`] for several: one node lock, and what follows
    /// (metadata updates, deletions) in shared store writes.
    pub async fn transmitted_many(&self, done: Vec<(PeerId, BundleId, TransmitOutcome)>) {
        let ((), actions) = self.input(|node, now| {
            for (peer, id, outcome) in &done {
                node.handle_transmitted(now, *peer, id, *outcome);
            }
        });
        self.execute(actions).await;
    }

    /// A convergence layer reaches a peer now.
    pub async fn peer_up(&self, peer: PeerInfo, address: String) {
        let node_id = peer.node_id.to_string();
        let to = routing_endpoint_of(&peer.node_id);
        let (info, actions) = self.input(|node, now| {
            node.handle_peer_up(now, peer);
            node.routing_info(now)
        });
        lock(&self.links).insert(node_id, address);
        self.execute(actions).await;
        // The router's view (PRoPHET's predictabilities) goes to the new peer
        // as a short-lived bundle between the two nodes' routing endpoints.
        if let (Some(info), Some(from), Some(to)) = (info, self.routing_endpoint.clone(), to) {
            let req = SendRequest {
                source: Some(from),
                destination: to,
                lifetime_ms: ROUTING_INFO_LIFETIME_MS,
                flags: 0,
                report_to: None,
            };
            if let Err(e) = self.send(req, &info).await {
                tracing::warn!(error = %e, "cannot send routing information to a new peer");
            }
        }
    }

    /// A bundle for this node's routing endpoint: the router learns what it
    /// says, and the bundle is consumed.
    async fn take_routing_info(&self, id: BundleId) -> Vec<Action> {
        let bytes = match self.load(&id).await {
            Ok(Some(b)) => b,
            Ok(None) => return vec![],
            Err(e) => {
                tracing::warn!(bundle = %id, error = %e, "cannot read routing information");
                return vec![];
            }
        };
        let ((), actions) = self.input(|node, now| {
            match ferry_core::node::decode_stored(&bytes) {
                Ok(bundle) => {
                    let from = bundle.primary.source.node_id();
                    let payload = bytes.get(bundle.payload().data.clone()).unwrap_or_default();
                    match node.handle_routing_info(now, &from, payload) {
                        Ok(()) => tracing::debug!(%from, "routing information received"),
                        Err(e) => tracing::warn!(%from, error = %e, "routing information not understood"),
                    }
                }
                Err(e) => tracing::warn!(bundle = %id, error = %e, "routing information bundle does not decode"),
            }
            node.handle_delivered(now, &id);
        });
        actions
    }

    /// A peer is gone.
    pub async fn peer_down(&self, peer: PeerId) {
        let ((), actions) = self.input(|node, now| {
            let gone = node.peers().find(|p| p.id == peer).map(|p| p.node_id.to_string());
            node.handle_peer_down(now, peer);
            let still = gone.as_ref().is_some_and(|g| node.peers().any(|p| &p.node_id.to_string() == g));
            if let (Some(g), false) = (gone, still) {
                lock(&self.links).remove(&g);
            }
        });
        self.execute(actions).await;
    }

    /// Node IDs of connected peers and how they are reached.
    pub fn links(&self) -> BTreeMap<String, String> {
        lock(&self.links).clone()
    }

    async fn reassemble(&self, parts: Vec<BundleId>) -> Vec<Action> {
        let store = Arc::clone(&self.store);
        let ids = parts.clone();
        let whole = blocking(move || -> Option<Vec<u8>> {
            let loaded: Vec<Vec<u8>> =
                ids.iter().map(|id| store.get_bytes(id).ok().flatten()).collect::<Option<_>>()?;
            let decoded: Vec<Bundle> = loaded.iter().map(|b| decode_stored(b)).collect::<Result<_, _>>().ok()?;
            let pairs: Vec<(&[u8], &Bundle)> = loaded.iter().map(|b| b.as_slice()).zip(decoded.iter()).collect();
            codec::reassemble(&pairs).ok()
        })
        .await
        .ok()
        .flatten();
        let ((), actions) = self.input(|node, now| match whole {
            Some(bytes) => {
                if let Err(e) = node.handle_received(now, bytes, None) {
                    tracing::warn!(error = %e, "reassembled bundle not accepted");
                    node.handle_reassembly_failed(now, &parts);
                }
            }
            None => {
                tracing::warn!(parts = parts.len(), "reassembly failed; deleting the fragments");
                node.handle_reassembly_failed(now, &parts);
            }
        });
        actions
    }

    /// Waits until no persist of `id` is running.
    async fn wait_persisted(&self, id: &BundleId) {
        loop {
            let notified = self.persist_done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !lock(&self.persisting).contains_key(id) {
                return;
            }
            notified.await;
        }
    }

    /// Runs the node's timer until shutdown: [`Node::handle_timeout`] at
    /// [`Node::poll_timeout`], re-armed after every batch of actions.
    pub async fn run_timer(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            let next = {
                let node = self.node();
                let next = node.poll_timeout();
                // Under the node lock: see `timer_armed`.
                self.timer_armed.store(next.unwrap_or(u64::MAX), Ordering::Relaxed);
                next
            };
            let wait = match next {
                Some(t) => Duration::from_millis(t.saturating_sub(self.clock.now())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {
                    if next.is_some() {
                        let ((), actions) = self.input(|node, now| node.handle_timeout(now));
                        self.execute(actions).await;
                    }
                }
                _ = self.timer.notified() => {}
                _ = shutdown.recv() => break,
            }
        }
    }

    // ----- operations for the API -----

    /// Creates a bundle (`/send`); returns once it is stored.
    pub async fn send(&self, req: SendRequest, payload: &[u8]) -> Result<BundleId, DaemonError> {
        let (result, actions) = self.input(|node, now| node.send(now, req, payload));
        let done = self.execute(actions).await;
        let id = result?;
        self.check_persisted(&id, &done)
    }

    fn check_persisted(&self, id: &BundleId, done: &Executed) -> Result<BundleId, DaemonError> {
        match done.persist_of(id) {
            Some(Ok(())) => Ok(id.clone()),
            Some(Err(StoreError::Full(reason))) => {
                Err(DaemonError::StorageFull { id: id.clone(), reason: reason.clone() })
            }
            Some(Err(e)) => Err(DaemonError::NotStored { id: id.clone(), reason: e.to_string() }),
            // Accepted without a Persist cannot happen; say so rather than acknowledge.
            None => Err(DaemonError::NotStored { id: id.clone(), reason: "the node did not ask to store it".into() }),
        }
    }

    /// Takes a bundle from a local application or a peer (`/push`, `/insert`,
    /// websocket bundle mode); returns once it is stored.
    pub async fn receive(&self, bytes: Vec<u8>) -> Result<Received, DaemonError> {
        self.receive_from(None, bytes).await
    }

    /// [`Daemon::receive`] for a bundle that came from a peer (`None`: from an
    /// application or an anonymous link).
    pub async fn receive_from(&self, from: Option<PeerId>, bytes: Vec<u8>) -> Result<Received, DaemonError> {
        let (result, actions) = self.input(|node, now| node.handle_received(now, bytes, from));
        let done = self.execute(actions).await;
        self.received(result, &done).await
    }

    /// Takes several bundles at once, as [`Daemon::receive`] does each: one
    /// node lock for all of them, one store write for all that are new. The
    /// outcomes are in the order of `bundles`; each is final (a success is
    /// on disk).
    pub async fn receive_many(&self, bundles: Vec<Vec<u8>>) -> Vec<Result<Received, DaemonError>> {
        let intake = self.take_in(bundles);
        self.store_intake(intake).await
    }

    /// The first half of [`Daemon::receive_many`]: the node takes the bundles
    /// (one lock), right now, in order. A caller that pipelines (a websocket)
    /// calls this in arrival order and awaits [`Daemon::store_intake`]
    /// elsewhere: the node then sees bundles in the order they came, whatever
    /// order the tasks run in. The intake must be handed to `store_intake`:
    /// until then its bundles are "being written" to the node.
    pub fn take_in(&self, bundles: Vec<Vec<u8>>) -> Intake {
        self.take_in_from(bundles.into_iter().map(|b| (None, b)).collect())
    }

    /// [`Daemon::take_in`] for bundles that came from peers (`None`: from an
    /// application or an anonymous link).
    pub fn take_in_from(&self, bundles: Vec<(Option<PeerId>, Vec<u8>)>) -> Intake {
        let (results, actions) = self.input(|node, now| {
            bundles.into_iter().map(|(from, bytes)| node.handle_received(now, bytes, from)).collect::<Vec<_>>()
        });
        Intake { results, actions }
    }

    /// The second half of [`Daemon::receive_many`]: stores what the node took
    /// and says what became of each bundle.
    pub async fn store_intake(&self, intake: Intake) -> Vec<Result<Received, DaemonError>> {
        let Intake { results, actions } = intake;
        let done = self.execute(actions).await;
        let mut outcomes = Vec::with_capacity(results.len());
        for result in results {
            outcomes.push(self.received(result, &done).await);
        }
        outcomes
    }

    /// What became of one received bundle, once `done` has been carried out.
    async fn received(&self, result: Result<BundleId, Rejected>, done: &Executed) -> Result<Received, DaemonError> {
        match result {
            Ok(id) => self.check_persisted(&id, done).map(Received::Stored),
            Err(Rejected::Duplicate(id)) => {
                // The first copy may still be on its way to disk: acknowledge
                // the duplicate only once it is there.
                self.wait_persisted(&id).await;
                let failed = !self.node().contains(&id) && lock(&self.failed_writes).contains(&id);
                if failed {
                    // The first copy failed to store: this one was not taken either.
                    Err(DaemonError::NotStored {
                        id,
                        reason: "an earlier copy of this bundle was not stored; send it again".into(),
                    })
                } else {
                    // Stored (and maybe delivered, forwarded or deleted since):
                    // the node has had it, so the copy is a duplicate.
                    Ok(Received::Duplicate(id))
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Registers an application endpoint; bundles waiting for it become
    /// deliverable. Returns false if it was registered already. The
    /// registration is durable when this returns.
    pub async fn register(&self, eid: Eid) -> Result<bool, DaemonError> {
        let (new, actions) = self.input(|node, now| {
            let new = !node.is_registered(&eid);
            node.register(now, eid);
            new
        });
        self.execute(actions).await;
        if new {
            self.save_registrations().await?;
        }
        Ok(new)
    }

    /// Unregisters an endpoint. Bundles queued for it wait again (and are
    /// delivered when it is registered again). Returns false if it was not
    /// registered.
    pub async fn unregister(&self, eid: &Eid) -> Result<bool, DaemonError> {
        let (was, actions) = self.input(|node, _| {
            let was = node.is_registered(eid);
            node.unregister(eid);
            was
        });
        lock(&self.queues).remove(eid);
        self.execute(actions).await;
        if was {
            self.save_registrations().await?;
        }
        Ok(was)
    }

    async fn save_registrations(&self) -> Result<(), DaemonError> {
        let _turn = self.state_writes.lock().await;
        let text = self.node().registrations().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        let store = Arc::clone(&self.store);
        blocking(move || store.put_state(STATE_REGISTRATIONS, text.as_bytes())).await??;
        Ok(())
    }

    /// The next bundle queued for `endpoint`, taken off its queue. The caller
    /// must then [`Daemon::confirm_delivery`] or [`Daemon::requeue`] it.
    ///
    /// Deleted bundles are not searched out of the queues when they are
    /// deleted (that scan cost O(queued) per deletion, most of a busy node's
    /// CPU); they are skipped here instead.
    pub fn pop_delivery(&self, endpoint: &Eid) -> Option<BundleId> {
        self.pop_deliveries(endpoint, 1, u64::MAX).pop()
    }

    /// Bundles queued for `endpoint`, taken off its queue in order under one
    /// lock (see [`Daemon::pop_delivery`]): at most `max`, and no more than
    /// `max_bytes` of bundles in all, but always at least one if any waits.
    pub fn pop_deliveries(&self, endpoint: &Eid, max: usize, max_bytes: u64) -> Vec<BundleId> {
        let mut out = vec![];
        let mut bytes = 0u64;
        let mut queues = lock(&self.queues);
        let Some(q) = queues.get_mut(endpoint) else { return out };
        let node = self.node();
        while out.len() < max {
            let Some(id) = q.front() else { break };
            let Some(size) = node.meta(id).map(|m| m.size) else {
                q.pop_front();
                continue;
            };
            if !out.is_empty() && bytes.saturating_add(size) > max_bytes {
                break;
            }
            bytes = bytes.saturating_add(size);
            out.extend(q.pop_front());
        }
        out
    }

    /// Puts a bundle back at the head of its endpoint's queue (the application
    /// did not get it after all).
    pub fn requeue(&self, endpoint: &Eid, id: BundleId) {
        {
            // Gone meanwhile, or the endpoint was unregistered (the node then
            // dispatches the bundle again when it is registered again).
            let node = self.node();
            if !node.contains(&id) || !node.is_registered(endpoint) {
                return;
            }
        }
        lock(&self.queues).entry(endpoint.clone()).or_default().push_front(id);
        self.deliveries.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The bytes of a stored bundle.
    pub async fn load(&self, id: &BundleId) -> Result<Option<Vec<u8>>, DaemonError> {
        let mut one = self.load_many(std::slice::from_ref(id)).await?;
        Ok(one.pop().flatten())
    }

    /// The bytes of several stored bundles, in order (`None`: not stored):
    /// from memory when just stored, the rest in one trip to the store.
    pub async fn load_many(&self, ids: &[BundleId]) -> Result<Vec<Option<Vec<u8>>>, DaemonError> {
        let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(ids.len());
        let mut misses = vec![];
        for (i, id) in ids.iter().enumerate() {
            match self.in_memory(id) {
                Some(bytes) => out.push(Some(bytes.to_vec())),
                None => {
                    out.push(None);
                    misses.push((i, id.clone()));
                }
            }
        }
        if !misses.is_empty() {
            let store = Arc::clone(&self.store);
            let loaded = blocking(move || {
                misses.into_iter().map(|(i, id)| store.get_bytes(&id).map(|b| (i, b))).collect::<Result<Vec<_>, _>>()
            })
            .await??;
            for (i, bytes) in loaded {
                out[i] = bytes;
            }
        }
        Ok(out)
    }

    /// The application has the bundle: the node is told, and the deletion that
    /// follows (§5.7: delivered, so no longer kept) is durable on return.
    pub async fn confirm_delivery(&self, id: &BundleId) {
        self.confirm_deliveries(std::slice::from_ref(id)).await;
    }

    /// [`Daemon::confirm_delivery`] for several bundles: one node lock, and
    /// their deletions in one store write.
    pub async fn confirm_deliveries(&self, ids: &[BundleId]) {
        let ((), actions) = self.input(|node, now| {
            for id in ids {
                node.handle_delivered(now, id);
            }
        });
        self.execute(actions).await;
    }

    /// Deletes a bundle by ID for `reason` (one deletion path: the deletion
    /// status report goes out if the bundle asked for one). The app host sets
    /// aside a bundle that its app keeps failing on this way. False if the
    /// node no longer has it.
    pub async fn delete_for(&self, id: &BundleId, reason: ReasonCode) -> bool {
        let (found, actions) = self.input(|node, now| node.delete(now, id, reason));
        self.execute(actions).await;
        found
    }

    /// A bundle queued for delivery is gone from the store: the node is told.
    async fn delivery_failed(&self, id: &BundleId) {
        let ((), actions) = self.input(|node, now| node.handle_delivery_failed(now, id));
        self.execute(actions).await;
    }

    /// Takes the next bundle queued for `endpoint` (`/endpoint`): its bytes, or
    /// `None` when nothing waits.
    ///
    /// Delivery is **at most once at the HTTP boundary**: the bundle is marked
    /// delivered and its deletion made durable *before* the bytes go out in
    /// the response. A crash before the deletion is durable means the bundle
    /// is delivered again after the restart (the client never got it); a
    /// crash — or a client that hangs up — after it means the response may
    /// not have reached the client, and the bundle is not delivered again.
    /// We chose this over at-least-once because a plain HTTP GET has no
    /// acknowledgement to wait for; applications that need end-to-end
    /// assurance ask for delivery status reports or use the websocket, where a
    /// bundle counts as delivered only once its frame has been written.
    pub async fn take_delivery(&self, endpoint: &Eid) -> Result<Option<(BundleId, Vec<u8>)>, DaemonError> {
        if !self.node().is_registered(endpoint) {
            return Err(DaemonError::NotRegistered(endpoint.clone()));
        }
        while let Some(id) = self.pop_delivery(endpoint) {
            match self.load(&id).await {
                Ok(Some(bytes)) => {
                    // Delivery may start while the bundle's own write syncs;
                    // the deletion must follow that write to be durable here.
                    self.wait_persisted(&id).await;
                    self.confirm_delivery(&id).await;
                    return Ok(Some((id, bytes)));
                }
                Ok(None) => {
                    tracing::error!(bundle = %id, "bundle queued for delivery is not in the store");
                    self.delivery_failed(&id).await;
                }
                Err(e) => {
                    self.requeue(endpoint, id);
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// Deletes a bundle by its textual ID (`/delete`), with a deletion status
    /// report if it asked for one. False if there is no such bundle.
    pub async fn delete(&self, bid: &str) -> bool {
        let (found, actions) = self.input(|node, now| match node.find(bid).cloned() {
            Some(id) => node.delete(now, &id, ReasonCode::TransmissionCanceled),
            None => false,
        });
        self.execute(actions).await;
        found
    }

    /// Adds or replaces a configured peer; true if it is new.
    pub async fn add_peer(&self, peer: ConfiguredPeer) -> Result<(bool, Result<String, String>), DaemonError> {
        let url = peer.cla_url();
        let new = lock(&self.peers).insert(peer.eid.clone(), peer).is_none();
        self.save_peers().await?;
        let reached = self.cla.connect(&url);
        match &reached {
            Ok(cla) => tracing::info!(%url, cla, "connecting to peer"),
            Err(e) => tracing::warn!(%url, "peer kept, but no convergence layer takes it: {e}"),
        }
        Ok((new, reached))
    }

    /// Hands an address to the convergence layers' `connect` without keeping
    /// it as a peer (e.g. `usbdir-sync:NONCE:/media/stick` for `ferry usb
    /// sync`); returns the name of the one that took it.
    pub fn connect_cla(&self, address: &str) -> Result<String, String> {
        self.cla.connect(address)
    }

    /// Asks the convergence layers to reach every configured peer (start-up).
    pub fn connect_configured_peers(&self) {
        let urls: Vec<String> = lock(&self.peers).values().map(ConfiguredPeer::cla_url).collect();
        for url in urls {
            if let Err(e) = self.cla.connect(&url) {
                tracing::warn!(%url, "configured peer not reachable by any convergence layer: {e}");
            }
        }
    }

    /// Removes a configured peer by node ID; true if it was there.
    pub async fn remove_peer(&self, eid: &str) -> Result<bool, DaemonError> {
        let was = lock(&self.peers).remove(eid).is_some();
        if was {
            self.save_peers().await?;
        }
        Ok(was)
    }

    async fn save_peers(&self) -> Result<(), DaemonError> {
        let _turn = self.state_writes.lock().await;
        let json = serde_json::to_vec(&*lock(&self.peers))
            .map_err(|e| DaemonError::CorruptState { key: STATE_PEERS, reason: e.to_string() })?;
        let store = Arc::clone(&self.store);
        blocking(move || store.put_state(STATE_PEERS, &json)).await??;
        Ok(())
    }

    /// Flushes the store (on shutdown, after every task stopped) and closes it.
    pub async fn close(&self) -> Result<(), DaemonError> {
        let store = Arc::clone(&self.store);
        blocking(move || {
            store.flush()?;
            store.close()
        })
        .await??;
        Ok(())
    }

    /// A creation timestamp for a bundle that a client builds itself (`/cts`,
    /// dtnsend), from the node's own sequence, so that a client bundle with
    /// this node's ID as source never collides with one the node made.
    pub fn creation_timestamp(&self) -> (DtnTime, u64) {
        let ((t, seq), _) = self.input(|node, now| {
            let c = node.next_creation_timestamp(now);
            (c.time, c.seq)
        });
        (t, seq)
    }

    // ----- getters -----

    pub fn node_id(&self) -> Eid {
        self.node().node_id().clone()
    }

    pub fn now(&self) -> DtnTime {
        self.clock.now()
    }

    pub fn default_lifetime(&self) -> Duration {
        self.options.default_lifetime
    }

    pub fn router_name(&self) -> &'static str {
        self.node().router_name()
    }

    pub fn stats(&self) -> NodeStats {
        self.node().stats()
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn is_registered(&self, eid: &Eid) -> bool {
        self.node().is_registered(eid)
    }

    pub fn registrations(&self) -> Vec<Eid> {
        self.node().registrations().cloned().collect()
    }

    /// Metadata and state of every bundle, ordered by ID.
    pub fn bundles(&self) -> Vec<(BundleMeta, BundleState)> {
        let (mut metas, node_id, registered): (Vec<BundleMeta>, Eid, HashSet<Eid>) = {
            let node = self.node();
            (node.bundles().cloned().collect(), node.node_id().clone(), node.registrations().cloned().collect())
        };
        metas.sort_by(|a, b| a.id.cmp(&b.id));
        let queued: HashSet<BundleId> = lock(&self.queues).values().flatten().cloned().collect();
        let persisting: HashSet<BundleId> = lock(&self.persisting).keys().cloned().collect();
        metas
            .into_iter()
            .map(|m| {
                let state = if persisting.contains(&m.id) {
                    BundleState::Persisting
                } else if queued.contains(&m.id) {
                    BundleState::Deliverable
                } else if m.destination.is_on_node(&node_id) && registered.contains(&m.destination) {
                    BundleState::Delivering
                } else if m.destination.is_on_node(&node_id) {
                    BundleState::WaitingForApplication
                } else {
                    BundleState::WaitingForContact
                };
                (m, state)
            })
            .collect()
    }

    /// One bundle's metadata and state, by textual ID.
    pub fn bundle(&self, bid: &str) -> Option<(BundleMeta, BundleState)> {
        let id = self.node().find(bid).cloned()?;
        self.bundles().into_iter().find(|(m, _)| m.id == id)
    }

    /// The ID of a bundle by its textual form, if the node has it.
    pub fn find(&self, bid: &str) -> Option<BundleId> {
        self.node().find(bid).cloned()
    }

    pub fn bundle_count(&self) -> usize {
        self.node().bundle_count()
    }

    pub async fn store_stats(&self) -> Result<StoreStats, DaemonError> {
        let store = Arc::clone(&self.store);
        Ok(blocking(move || store.stats()).await??)
    }

    pub fn sync_stats(&self) -> Option<SyncStats> {
        self.store.sync_stats()
    }

    pub fn configured_peers(&self) -> BTreeMap<String, ConfiguredPeer> {
        let links = self.links();
        let mut peers = lock(&self.peers).clone();
        for (eid, p) in peers.iter_mut() {
            p.connected = links.contains_key(eid);
        }
        // Peers a convergence layer found by itself (its own config, discovery,
        // an incoming session) are listed too.
        for (eid, address) in links {
            if peers.contains_key(&eid) {
                continue;
            }
            let (cla, hostport) = address.split_once("://").unwrap_or(("", address.as_str()));
            let hostport = hostport.trim_end_matches('/');
            let (addr, port) = match hostport.rsplit_once(':') {
                Some((h, p)) => (h.trim_matches(|c| c == '[' || c == ']').to_owned(), p.parse().ok()),
                None => (hostport.to_owned(), None),
            };
            let peer = ConfiguredPeer {
                eid: eid.clone(),
                cla: cla.to_owned(),
                addr,
                port,
                con_type: PeerType::Dynamic,
                connected: true,
            };
            peers.insert(eid, peer);
        }
        peers
    }

    /// Number of peers with a session up.
    pub fn connected_peers(&self) -> usize {
        self.node().peers().count()
    }

    /// A receiver that changes whenever a bundle becomes deliverable.
    pub fn watch_deliveries(&self) -> watch::Receiver<u64> {
        self.deliveries.subscribe()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cla::NoCla;
    use ferry_core::bundle::CreationTimestamp;
    use ferry_core::codec::BundleBuilder;
    use ferry_core::node::NodeConfig;
    use ferry_core::router::Epidemic;
    use ferry_core::time::ManualClock;

    const T0: DtnTime = 800_000_000_000;

    async fn daemon(store: Arc<MemStore>, clock: Arc<ManualClock>) -> Arc<Daemon> {
        let node = Node::new(NodeConfig::new("dtn://me/".parse().unwrap(), Box::new(Epidemic)));
        Daemon::start(
            node,
            store,
            clock,
            Arc::new(NoCla),
            DaemonOptions { default_lifetime: Duration::from_secs(3600) },
        )
        .await
        .unwrap()
    }

    fn req(dst: &str, lifetime_ms: u64) -> SendRequest {
        SendRequest { source: None, destination: dst.parse().unwrap(), lifetime_ms, flags: 0, report_to: None }
    }

    #[tokio::test]
    async fn send_register_take_and_the_bundle_is_gone() {
        let store = Arc::new(MemStore::new());
        let clock = Arc::new(ManualClock::new(T0));
        let d = daemon(store.clone(), clock).await;
        let id = d.send(req("dtn://me/in", 60_000), b"hello").await.unwrap();
        assert!(store.get_bytes(&id).unwrap().is_some());
        let ep: Eid = "dtn://me/in".parse().unwrap();
        assert!(matches!(d.take_delivery(&ep).await, Err(DaemonError::NotRegistered(_))));
        assert!(d.register(ep.clone()).await.unwrap());
        assert_eq!(store.get_state(STATE_REGISTRATIONS).unwrap().unwrap(), b"dtn://me/in");
        let (got, bytes) = d.take_delivery(&ep).await.unwrap().unwrap();
        assert_eq!(got, id);
        let b = codec::decode(&bytes).unwrap();
        assert_eq!(&bytes[b.payload().data.clone()], b"hello");
        assert!(store.get_bytes(&id).unwrap().is_none(), "delivered bundle deleted durably");
        assert!(d.take_delivery(&ep).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn deliveries_past_the_delivered_memory_are_one_store_write_that_remembers_the_latest() {
        // Once the node's memory of delivered IDs is full, every delivery
        // also forgets the ID expiring first. Those forgets used to be store
        // writes of their own, each awaited, between the deletions: a sink
        // fell behind its link after 100,000 deliveries.
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RocksStore::open(dir.path()).unwrap());
        let mut cfg = NodeConfig::new("dtn://me/".parse().unwrap(), Box::new(Epidemic));
        cfg.delivered_memory = 5;
        let options = DaemonOptions { default_lifetime: Duration::from_secs(3600) };
        let clock = Arc::new(ManualClock::new(T0));
        let d = Daemon::start(Node::new(cfg), store.clone(), clock, Arc::new(NoCla), options).await.unwrap();
        let ep: Eid = "dtn://me/in".parse().unwrap();
        d.register(ep.clone()).await.unwrap();
        let mut ids = vec![];
        for i in 0..20 {
            ids.push(d.send(req("dtn://me/in", 60_000 + i * 1_000), b"x").await.unwrap());
        }
        let popped = d.pop_deliveries(&ep, 100, u64::MAX);
        assert_eq!(popped, ids);
        let before = store.commit_stats().writes;
        d.confirm_deliveries(&popped).await;
        assert_eq!(store.commit_stats().writes - before, 1, "20 deletions, 20 remembered, 15 forgotten: one write");
        let mut remembered: Vec<BundleId> = store.delivered().unwrap().into_iter().map(|(id, _)| id).collect();
        remembered.sort();
        let mut latest = ids[15..].to_vec();
        latest.sort();
        assert_eq!(remembered, latest, "the store remembers what the node does: the five expiring last");
        for id in &ids {
            assert!(store.get_bytes(id).unwrap().is_none());
        }
    }

    #[test]
    fn a_cleanup_cancels_a_remember_only_by_a_later_forget() {
        let id = |seq| BundleId {
            source: "dtn://a/".parse().unwrap(),
            creation: CreationTimestamp { time: T0, seq },
            fragment: None,
        };
        let mut c = Cleanup::default();
        c.forget(vec![id(1)]);
        c.remember.push((id(1), 5));
        c.remember.push((id(2), 6));
        c.forget(vec![id(2), id(3)]);
        c.remember.push((id(3), 7));
        let r = c.resolved();
        assert_eq!(r.remember, vec![(id(1), 5), (id(3), 7)]);
        assert_eq!(r.forgotten, vec![id(1), id(2), id(3)]);
    }

    #[tokio::test]
    async fn restart_recovers_registrations_and_queues() {
        let store = Arc::new(MemStore::new());
        let clock = Arc::new(ManualClock::new(T0));
        let ep: Eid = "dtn://me/in".parse().unwrap();
        let id = {
            let d = daemon(store.clone(), clock.clone()).await;
            d.register(ep.clone()).await.unwrap();
            d.send(req("dtn://me/in", 60_000), b"x").await.unwrap()
        };
        let d = daemon(store.clone(), clock).await;
        assert!(d.is_registered(&ep));
        assert_eq!(d.take_delivery(&ep).await.unwrap().unwrap().0, id);
    }

    #[tokio::test]
    async fn duplicates_and_invalid_bundles() {
        let store = Arc::new(MemStore::new());
        let clock = Arc::new(ManualClock::new(T0));
        let d = daemon(store, clock).await;
        let bytes = BundleBuilder::new(
            "dtn://other/".parse().unwrap(),
            "dtn://far/x".parse().unwrap(),
            CreationTimestamp { time: T0, seq: 1 },
            60_000,
        )
        .build(b"p");
        let first = d.receive(bytes.clone()).await.unwrap();
        assert!(matches!(first, Received::Stored(_)));
        assert!(matches!(d.receive(bytes).await.unwrap(), Received::Duplicate(_)));
        assert!(matches!(d.receive(vec![1, 2, 3]).await, Err(DaemonError::Rejected(Rejected::Invalid(_)))));
        let (meta, state) = d.bundles().pop().unwrap();
        assert_eq!(state, BundleState::WaitingForContact);
        assert!(d.delete(&meta.id.to_string()).await);
        assert!(!d.delete(&meta.id.to_string()).await);
        assert_eq!(d.bundle_count(), 0);
    }

    #[tokio::test]
    async fn a_burst_is_taken_in_order_with_one_store_write() {
        let store = Arc::new(MemStore::new());
        let d = daemon(store.clone(), Arc::new(ManualClock::new(T0))).await;
        let build = |seq| {
            BundleBuilder::new(
                "dtn://other/".parse().unwrap(),
                "dtn://far/x".parse().unwrap(),
                CreationTimestamp { time: T0, seq },
                60_000,
            )
            .build(b"p")
        };
        let burst = vec![build(1), vec![0xff, 0], build(2), build(1)];
        let out = d.receive_many(burst).await;
        assert!(matches!(out[0], Ok(Received::Stored(_))), "{:?}", out[0]);
        assert!(matches!(out[1], Err(DaemonError::Rejected(Rejected::Invalid(_)))), "{:?}", out[1]);
        assert!(matches!(out[2], Ok(Received::Stored(_))), "{:?}", out[2]);
        // The copy later in the same burst is the duplicate, not the first one.
        assert!(matches!(out[3], Ok(Received::Duplicate(_))), "{:?}", out[3]);
        assert_eq!(store.stats().unwrap().bundles, 2);
        assert_eq!(d.bundles().iter().filter(|(_, s)| *s == BundleState::Persisting).count(), 0);
    }

    #[tokio::test]
    async fn concurrent_sends_all_persist() {
        let store = Arc::new(MemStore::new());
        let clock = Arc::new(ManualClock::new(T0));
        let d = daemon(store.clone(), clock).await;
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let d = Arc::clone(&d);
                tokio::spawn(async move { d.send(req("dtn://far/x", 60_000), b"x").await.unwrap() })
            })
            .collect();
        let ids: HashSet<BundleId> =
            futures_util::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(ids.len(), 50);
        assert_eq!(store.stats().unwrap().bundles, 50);
    }

    #[tokio::test]
    async fn dtnsend_style_bundles_without_primary_crc_are_accepted_unchanged() {
        let src: bp7::EndpointID = "dtn://dtn7node/".try_into().unwrap();
        let dst: bp7::EndpointID = "dtn://far/in".try_into().unwrap();
        let mut b = bp7::bundle::new_std_payload_bundle(src, dst, b"from dtnsend".to_vec());
        let raw = b.to_cbor();
        assert!(matches!(codec::decode(&raw), Err(codec::DecodeError::PrimaryCrcMissing)));
        let store = Arc::new(MemStore::new());
        let d = daemon(store.clone(), Arc::new(ManualClock::new(T0))).await;
        let Received::Stored(id) = d.receive(raw.clone()).await.unwrap() else { panic!("not stored") };
        // Stored byte for byte: the primary block is immutable in transit (§4.3.1).
        assert_eq!(store.get_bytes(&id).unwrap().unwrap(), raw);
    }

    #[test]
    fn peer_urls() {
        let p = ConfiguredPeer::parse("tcp://127.0.0.1:4223/node2", PeerType::Static).unwrap();
        assert_eq!(
            (p.eid.as_str(), p.cla.as_str(), p.addr.as_str(), p.port),
            ("dtn://node2/", "tcp", "127.0.0.1", Some(4223))
        );
        assert_eq!(ConfiguredPeer::parse("mtcp://h:1/23", PeerType::Dynamic).unwrap().eid, "ipn:23.0");
        assert_eq!(ConfiguredPeer::parse("tcp://[::1]:4556/dtn://n/", PeerType::Static).unwrap().addr, "[::1]");
        for bad in ["", "tcp://", "tcp://h:1", "tcp://h:x/n", "://h:1/n", "tcp://h:1/bad name"] {
            assert!(ConfiguredPeer::parse(bad, PeerType::Static).is_err(), "{bad}");
        }
    }

    /// A store whose writes wait until the test lets them through (or fails
    /// them), to look at what happens while a sync is running. MemStore
    /// underneath: a held write is not in it yet. Puts are held by default;
    /// [`GatedStore::holding_deletes`] holds deletions instead.
    #[derive(Default)]
    pub(crate) struct GatedStore {
        inner: MemStore,
        deletes_only: bool,
        held: Mutex<Vec<(Vec<(BundleMeta, Vec<u8>)>, OnDurable)>>,
        held_deletes: Mutex<Vec<(Vec<BundleId>, OnDurable)>>,
    }

    impl GatedStore {
        /// Puts go straight through; deletions wait for [`Self::release_deletes`].
        pub(crate) fn holding_deletes() -> Self {
            GatedStore { deletes_only: true, ..GatedStore::default() }
        }
        fn held(&self) -> usize {
            lock(&self.held).len()
        }
        /// Finishes every held write: stored and durable, or failed.
        fn release(&self, ok: bool) {
            for (items, done) in std::mem::take(&mut *lock(&self.held)) {
                if ok {
                    done(items.iter().try_for_each(|(m, b)| self.inner.put(m, b)));
                } else {
                    done(Err(StoreError::Engine("the disk went away".into())));
                }
            }
        }
        /// Carries out every held deletion; the number of bundles they named.
        pub(crate) fn release_deletes(&self) -> usize {
            let held = std::mem::take(&mut *lock(&self.held_deletes));
            let mut n = 0;
            for (ids, done) in held {
                n += ids.len();
                done(ids.iter().try_for_each(|id| self.inner.delete(id).map(|_| ())));
            }
            n
        }
    }

    impl Store for GatedStore {
        fn put(&self, meta: &BundleMeta, bytes: &[u8]) -> Result<(), StoreError> {
            self.inner.put(meta, bytes)
        }
        fn update_meta(&self, meta: &BundleMeta) -> Result<bool, StoreError> {
            self.inner.update_meta(meta)
        }
        fn get_bytes(&self, id: &BundleId) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get_bytes(id)
        }
        fn get_meta(&self, id: &BundleId) -> Result<Option<BundleMeta>, StoreError> {
            self.inner.get_meta(id)
        }
        fn delete(&self, id: &BundleId) -> Result<bool, StoreError> {
            self.inner.delete(id)
        }
        fn all_meta(&self) -> Result<Vec<BundleMeta>, StoreError> {
            self.inner.all_meta()
        }
        fn expiring_by(&self, t: DtnTime) -> Result<Vec<BundleId>, StoreError> {
            self.inner.expiring_by(t)
        }
        fn for_destination(&self, eid: &Eid) -> Result<Vec<BundleId>, StoreError> {
            self.inner.for_destination(eid)
        }
        fn stats(&self) -> Result<StoreStats, StoreError> {
            self.inner.stats()
        }
        fn put_state(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.inner.put_state(key, value)
        }
        fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get_state(key)
        }
    }

    impl DurableStore for GatedStore {
        fn flush(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn close(&self) -> Result<(), StoreError> {
            Ok(())
        }
        fn submit_put_many(&self, items: Vec<(BundleMeta, Vec<u8>)>, done: OnDurable) {
            if self.deletes_only {
                done(items.iter().try_for_each(|(m, b)| self.inner.put(m, b)));
            } else {
                lock(&self.held).push((items, done));
            }
        }
        fn submit_delete_many(&self, ids: Vec<BundleId>, done: OnDurable) {
            if self.deletes_only {
                lock(&self.held_deletes).push((ids, done));
            } else {
                done(ids.iter().try_for_each(|id| self.inner.delete(id).map(|_| ())));
            }
        }
    }

    /// Sends a bundle to `dtn://me/in` (registered) on a store that holds
    /// writes; returns once it is queued for delivery, with the send still
    /// waiting for its sync.
    async fn send_while_the_write_is_held(
        store: &Arc<GatedStore>,
    ) -> (Arc<Daemon>, tokio::task::JoinHandle<Result<BundleId, DaemonError>>, BundleId) {
        let node = Node::new(NodeConfig::new("dtn://me/".parse().unwrap(), Box::new(Epidemic)));
        let d = Daemon::start(
            node,
            store.clone(),
            Arc::new(ManualClock::new(T0)),
            Arc::new(NoCla),
            DaemonOptions { default_lifetime: Duration::from_secs(3600) },
        )
        .await
        .unwrap();
        let ep: Eid = "dtn://me/in".parse().unwrap();
        d.register(ep.clone()).await.unwrap();
        let sending = tokio::spawn({
            let d = Arc::clone(&d);
            async move { d.send(req("dtn://me/in", 60_000), b"early").await }
        });
        let mut queued = None;
        for _ in 0..2_000 {
            queued = d.pop_delivery(&ep);
            if queued.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let id = queued.expect("the bundle is queued for delivery while its write is held");
        assert_eq!(store.held(), 1, "its write is still held");
        assert!(!sending.is_finished(), "the send is not acknowledged before the sync");
        (d, sending, id)
    }

    #[tokio::test]
    async fn delivery_overlaps_the_sync_and_the_acknowledgement_waits_for_it() {
        let store = Arc::new(GatedStore::default());
        let (d, sending, id) = send_while_the_write_is_held(&store).await;
        // The bytes come from memory: the store does not have them yet.
        assert!(store.inner.get_bytes(&id).unwrap().is_none());
        let bytes = d.load(&id).await.unwrap().expect("bytes of a bundle being written");
        let b = codec::decode(&bytes).unwrap();
        assert_eq!(&bytes[b.payload().data.clone()], b"early");
        // The application took it before the sync: its deletion waits for the write.
        d.confirm_delivery(&id).await;
        assert!(d.find(&id.to_string()).is_none());
        store.release(true);
        assert_eq!(sending.await.unwrap().unwrap(), id);
        assert!(store.inner.get_bytes(&id).unwrap().is_none(), "deleted once written");
    }

    #[tokio::test]
    async fn a_sync_that_fails_after_delivery_started_is_not_acknowledged() {
        let store = Arc::new(GatedStore::default());
        let (d, sending, id) = send_while_the_write_is_held(&store).await;
        store.release(false);
        assert!(matches!(sending.await.unwrap(), Err(DaemonError::NotStored { .. })));
        assert!(d.find(&id.to_string()).is_none(), "the node dropped it");
        assert_eq!(d.load(&id).await.unwrap(), None, "and nothing serves its bytes");
        assert_eq!(d.stats().deleted, 0, "dropped without a deletion report");
    }

    /// `Daemon::receive` on a task of its own, to look at it while it waits.
    fn receive_in_background(
        d: &Arc<Daemon>,
        bytes: Vec<u8>,
    ) -> tokio::task::JoinHandle<Result<Received, DaemonError>> {
        let d = Arc::clone(d);
        tokio::spawn(async move { d.receive(bytes).await })
    }

    #[tokio::test]
    async fn a_copy_of_a_bundle_delivered_during_its_sync_is_a_duplicate() {
        let store = Arc::new(GatedStore::default());
        let (d, sending, id) = send_while_the_write_is_held(&store).await;
        let bytes = d.load(&id).await.unwrap().unwrap();
        // A copy arrives (a peer sent it again) while the first is written...
        let copy = receive_in_background(&d, bytes);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!copy.is_finished(), "the copy waits for the first write");
        // ...and the first is delivered and discarded before that write is durable.
        d.confirm_delivery(&id).await;
        store.release(true);
        assert_eq!(sending.await.unwrap().unwrap(), id);
        assert!(matches!(copy.await.unwrap(), Ok(Received::Duplicate(got)) if got == id));
    }

    #[tokio::test]
    async fn a_copy_of_a_bundle_whose_write_failed_is_not_acknowledged() {
        let store = Arc::new(GatedStore::default());
        let (d, sending, id) = send_while_the_write_is_held(&store).await;
        let bytes = d.load(&id).await.unwrap().unwrap();
        let copy = receive_in_background(&d, bytes);
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.release(false);
        assert!(sending.await.unwrap().is_err());
        assert!(matches!(copy.await.unwrap(), Err(DaemonError::NotStored { .. })));
    }
}
