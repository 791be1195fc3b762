//! The convergence-layer plugin host: loads every `[[cla]]` of the config
//! through the C ABI (`ferry-cla-abi`), bridges the plugins' callbacks into the
//! daemon, and carries the node's transmissions out through them.
//!
//! A plugin that cannot be loaded (missing file, not a Ferry plugin, another
//! ABI major, a failing `create` or `start`) is logged with the reason and
//! left out; the node runs on with the others. A plugin that panics inside a
//! call gets an error back at the boundary: the transmission counts as
//! failed, and the node retries the bundle later.
//!
//! Peer IDs: a plugin names its peers with its own `u64` handles; the node
//! sees `PeerId(slot << 48 | handle)`, so handles of different plugins never
//! collide.
//!
//! Received bundles: the plugin gets its verdict only after the daemon has
//! the bundle on disk (`Daemon::receive_from` returns after the store's
//! sync), so its acknowledgement to the peer (TCPCL's final XFER_ACK) never
//! runs ahead of durability.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use ferry_cla_abi::host::{HostCallbacks, Instance, Plugin};
use ferry_cla_abi::{Outcome, PeerUp, Verdict};
use ferry_core::bundle::BundleId;
use ferry_core::eid::Eid;
use ferry_core::node::TransmitOutcome;
use ferry_core::router::{PeerId, PeerInfo};

use crate::cla::Cla;
use crate::daemon::{Daemon, DaemonError, Received};

const HANDLE_BITS: u32 = 48;
const HANDLE_MASK: u64 = (1 << HANDLE_BITS) - 1;

/// One `[[cla]]` entry: a library and its settings as TOML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaSpec {
    pub path: PathBuf,
    pub settings: String,
    /// `sha256 = "..."`: the library is loaded only if it has this digest.
    pub sha256: Option<crate::security::pin::Sha256Pin>,
}

/// A transmission handed to a plugin, until every part is settled.
struct Pending {
    peer: PeerId,
    id: BundleId,
    remaining: usize,
    outcome: TransmitOutcome,
    /// The plugin's slot and the bytes handed to it (metrics).
    slot: usize,
    bytes: u64,
}

struct Slot {
    name: String,
    instance: Instance,
}

/// All loaded plugins. Built before the daemon, attached to it with
/// [`ClaHost::attach`], started with [`ClaHost::start`].
pub struct ClaHost {
    slots: OnceLock<Vec<Slot>>,
    daemon: OnceLock<Weak<Daemon>>,
    rt: tokio::runtime::Handle,
    /// Keyed by the transmit ID of a transmission's first part.
    pending: Mutex<HashMap<u64, Pending>>,
    /// Transmit ID of every part in flight -> its transmission's key.
    parts: Mutex<HashMap<u64, u64>>,
    next_transmit: AtomicU64,
    /// Received bundles on their way into the node, batched by `run_intake`.
    intake: tokio::sync::mpsc::UnboundedSender<Arrival>,
    intake_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Arrival>>>,
    /// Settled transmissions on their way to the node, batched by `run_settled`.
    settled: tokio::sync::mpsc::UnboundedSender<(PeerId, BundleId, TransmitOutcome)>,
    settled_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(PeerId, BundleId, TransmitOutcome)>>>,
}

/// A bundle a plugin handed over, waiting for its verdict.
struct Arrival {
    slot: usize,
    from: Option<PeerId>,
    bytes: Vec<u8>,
    token: u64,
}

/// Most bundles (and bytes) taken into the node under one lock.
const INTAKE_BATCH: usize = 512;
const INTAKE_BATCH_BYTES: usize = 8 << 20;

/// What the plugin's callbacks reach: the host and the plugin's slot.
struct Bridge {
    host: Weak<ClaHost>,
    slot: u64,
    name: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClaHost {
    /// Loads and instantiates every plugin in `specs` (not started yet).
    /// Failures are logged and the plugin is left out.
    pub fn load(node_id: &Eid, specs: &[ClaSpec]) -> Arc<ClaHost> {
        let (intake, intake_rx) = tokio::sync::mpsc::unbounded_channel();
        let (settled, settled_rx) = tokio::sync::mpsc::unbounded_channel();
        let host = Arc::new(ClaHost {
            settled,
            settled_rx: Mutex::new(Some(settled_rx)),
            intake,
            intake_rx: Mutex::new(Some(intake_rx)),
            slots: OnceLock::new(),
            daemon: OnceLock::new(),
            rt: tokio::runtime::Handle::current(),
            pending: Mutex::new(HashMap::new()),
            parts: Mutex::new(HashMap::new()),
            next_transmit: AtomicU64::new(1),
        });
        let mut slots = vec![];
        for spec in specs {
            match load_one(&host, node_id, spec, slots.len() as u64) {
                Ok(slot) => {
                    tracing::info!(plugin = %slot.name, path = %spec.path.display(), version = slot.instance.plugin().version(), "convergence-layer plugin loaded");
                    slots.push(slot);
                }
                Err(e) => tracing::error!(path = %spec.path.display(), "convergence-layer plugin not loaded: {e}"),
            }
        }
        let _ = host.slots.set(slots);
        host
    }

    /// Gives the callbacks the daemon to talk to.
    pub fn attach(self: &Arc<Self>, daemon: &Arc<Daemon>) {
        let _ = self.daemon.set(Arc::downgrade(daemon));
        if let Some(rx) = lock(&self.intake_rx).take() {
            self.rt.spawn(Arc::clone(self).run_intake(rx));
        }
        if let Some(rx) = lock(&self.settled_rx).take() {
            self.rt.spawn(Arc::clone(self).run_settled(rx));
        }
    }

    /// Tells the node how transmissions ended, as many at a time as have
    /// ended, each batch in its own task.
    async fn run_settled(
        self: Arc<Self>,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<(PeerId, BundleId, TransmitOutcome)>,
    ) {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < INTAKE_BATCH {
                match rx.try_recv() {
                    Ok(d) => batch.push(d),
                    Err(_) => break,
                }
            }
            let Some(daemon) = self.daemon() else { return };
            self.rt.spawn(async move { daemon.transmitted_many(batch).await });
        }
    }

    /// Takes received bundles into the node in arrival order, as many as are
    /// waiting under one node lock, and stores each batch in its own task
    /// (so that batches share syncs and the next one need not wait). Verdicts
    /// go back to the plugins once their batch is on disk.
    async fn run_intake(self: Arc<Self>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Arrival>) {
        while let Some(first) = rx.recv().await {
            let mut bytes = first.bytes.len();
            let mut batch = vec![first];
            while batch.len() < INTAKE_BATCH && bytes < INTAKE_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(a) => {
                        bytes += a.bytes.len();
                        batch.push(a);
                    }
                    Err(_) => break,
                }
            }
            let Some(daemon) = self.daemon() else { return };
            let tickets: Vec<(usize, u64)> = batch.iter().map(|a| (a.slot, a.token)).collect();
            let intake = daemon.take_in_from(batch.into_iter().map(|a| (a.from, a.bytes)).collect());
            let host = Arc::clone(&self);
            self.rt.spawn(async move {
                let outcomes = daemon.store_intake(intake).await;
                for ((slot, token), result) in tickets.into_iter().zip(outcomes) {
                    if let Err(e) = &result {
                        tracing::debug!("bundle from a peer not taken: {e}");
                    }
                    if let Some(s) = host.slots().get(slot) {
                        s.instance.verdict(token, verdict(&result));
                    }
                }
            });
        }
    }

    /// Starts every plugin; one that fails to start is stopped and logged.
    pub fn start(&self) {
        for slot in self.slots() {
            if let Err(e) = slot.instance.start() {
                tracing::error!(plugin = %slot.name, "convergence-layer plugin failed to start: {e}");
                slot.instance.stop();
            }
        }
    }

    /// Stops every plugin (each settles its transmissions first).
    pub fn stop(&self) {
        for slot in self.slots() {
            slot.instance.stop();
        }
    }

    /// Names of the loaded plugins.
    pub fn names(&self) -> Vec<String> {
        self.slots().iter().map(|s| s.name.clone()).collect()
    }

    fn slots(&self) -> &[Slot] {
        self.slots.get().map(Vec::as_slice).unwrap_or(&[])
    }

    fn daemon(&self) -> Option<Arc<Daemon>> {
        self.daemon.get().and_then(Weak::upgrade)
    }

    /// Asks the plugins to reach `url` (`tcp://host:port/node`, ...): the first
    /// that accepts it wins.
    pub fn connect(&self, url: &str) -> Result<String, String> {
        let mut errors = vec![];
        for slot in self.slots() {
            match slot.instance.connect(url) {
                Ok(()) => return Ok(slot.name.clone()),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if errors.is_empty() {
            Err("no convergence-layer plugin is loaded".into())
        } else {
            Err(errors.join("; "))
        }
    }

    fn settle(&self, transmit: u64, outcome: TransmitOutcome) {
        let done = {
            let mut pending = lock(&self.pending);
            let Some(p) = pending.get_mut(&transmit) else { return };
            p.remaining = p.remaining.saturating_sub(1);
            // The whole bundle counts as sent only if every fragment was.
            if outcome != TransmitOutcome::Sent && p.outcome == TransmitOutcome::Sent {
                p.outcome = outcome;
            }
            if p.remaining > 0 {
                return;
            }
            pending.remove(&transmit)
        };
        if let Some(p) = done {
            if let Some(slot) = self.slots().get(p.slot) {
                crate::metrics::METRICS.cla_transmitted(&slot.name, p.bytes, p.outcome);
                if p.outcome == TransmitOutcome::Sent {
                    crate::events::EVENTS.traffic_out(p.peer.0, p.bytes);
                }
            }
            let _ = self.settled.send((p.peer, p.id, p.outcome));
        }
    }
}

fn load_one(host: &Arc<ClaHost>, node_id: &Eid, spec: &ClaSpec, slot: u64) -> Result<Slot, String> {
    let plugin = match &spec.sha256 {
        None => Plugin::load(&spec.path).map_err(|e| e.to_string())?,
        Some(pin) => {
            // The file is hashed through an open descriptor and loaded through
            // the same descriptor, so a file swapped at the path in between
            // is not the one loaded.
            let mut file = std::fs::File::open(&spec.path)
                .map_err(|e| format!("cannot open {} to check its sha256: {e}", spec.path.display()))?;
            pin.check_file(&spec.path, &mut file).map_err(|e| e.to_string())?;
            let by_fd = PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file)));
            let plugin = Plugin::load(&by_fd).map_err(|e| e.to_string())?;
            drop(file);
            plugin
        }
    };
    let name = plugin.name().to_owned();
    let bridge = Arc::new(Bridge { host: Arc::downgrade(host), slot, name: name.clone() });
    let instance = plugin.instantiate(&node_id.to_string(), &spec.settings, bridge).map_err(|e| e.to_string())?;
    Ok(Slot { name, instance })
}

impl Cla for ClaHost {
    fn connect(&self, url: &str) -> Result<String, String> {
        ClaHost::connect(self, url)
    }

    fn name(&self) -> String {
        let names = self.names();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(",")
        }
    }

    fn preparing(&self, peer: PeerId, delta: i64) {
        let slot = (peer.0 >> HANDLE_BITS) as usize;
        if let Some(slot) = self.slots().get(slot) {
            slot.instance.preparing(peer.0 & HANDLE_MASK, delta);
        }
    }

    fn transmit(&self, peer: PeerId, id: &BundleId, bundles: &[Vec<u8>]) -> Result<(), TransmitOutcome> {
        let slot_index = (peer.0 >> HANDLE_BITS) as usize;
        let handle = peer.0 & HANDLE_MASK;
        let Some(slot) = self.slots().get(slot_index) else { return Err(TransmitOutcome::Failed) };
        if bundles.is_empty() {
            return Err(TransmitOutcome::Failed);
        }
        // One entry for all parts, keyed by the first part's transmit ID; the
        // other parts' IDs map to it.
        let first = self.next_transmit.fetch_add(bundles.len() as u64, Ordering::Relaxed);
        lock(&self.pending).insert(
            first,
            Pending {
                peer,
                id: id.clone(),
                remaining: bundles.len(),
                outcome: TransmitOutcome::Sent,
                slot: slot_index,
                bytes: bundles.iter().map(|b| b.len() as u64).sum(),
            },
        );
        lock(&self.parts).extend((0..bundles.len() as u64).map(|i| (first + i, first)));
        for (i, part) in bundles.iter().enumerate() {
            let tid = first + i as u64;
            if let Err(e) = slot.instance.transmit(handle, tid, part) {
                tracing::warn!(plugin = %slot.name, bundle = %id, "transmission not queued: {e}");
                // This part and the ones not yet handed over fail now.
                for j in i..bundles.len() {
                    self.settle_part(first + j as u64, TransmitOutcome::Failed);
                }
                break;
            }
        }
        Ok(())
    }
}

impl ClaHost {
    /// Settles one part of a transmission whose parts share the entry of
    /// the first part's ID.
    fn settle_part(&self, tid: u64, outcome: TransmitOutcome) {
        // A part settles once; a second report of it is ignored.
        let key = lock(&self.parts).remove(&tid);
        if let Some(k) = key {
            self.settle(k, outcome);
        }
    }
}

fn outcome(o: Outcome) -> TransmitOutcome {
    match o {
        Outcome::Sent => TransmitOutcome::Sent,
        Outcome::Refused => TransmitOutcome::Refused,
        Outcome::Failed => TransmitOutcome::Failed,
    }
}

fn verdict(r: &Result<Received, DaemonError>) -> Verdict {
    match r {
        Ok(Received::Stored(_)) => Verdict::Accepted,
        Ok(Received::Duplicate(_)) => Verdict::Duplicate,
        // Invalid, expired, over its hop limit: the peer must not retry it.
        Err(DaemonError::Rejected(_)) => Verdict::Invalid,
        Err(_) => Verdict::NoResources,
    }
}

impl Bridge {
    fn peer(&self, handle: u64) -> PeerId {
        PeerId((self.slot << HANDLE_BITS) | (handle & HANDLE_MASK))
    }

    fn with_daemon(&self) -> Option<(Arc<ClaHost>, Arc<Daemon>)> {
        let host = self.host.upgrade()?;
        let daemon = host.daemon()?;
        Some((host, daemon))
    }
}

impl HostCallbacks for Bridge {
    fn bundle_received(&self, handle: u64, bundle: &[u8], token: u64) {
        let Some(host) = self.host.upgrade() else { return };
        crate::metrics::METRICS.cla_received(&self.name, bundle.len());
        if handle != 0 {
            crate::events::EVENTS.traffic_in(self.peer(handle).0, bundle.len());
        }
        let from = (handle != 0).then(|| self.peer(handle));
        let arrival = Arrival { slot: self.slot as usize, from, bytes: bundle.to_vec(), token };
        if host.intake.send(arrival).is_err() {
            // The daemon is shutting down: refuse, so that the peer keeps it.
            if let Some(s) = host.slots().get(self.slot as usize) {
                s.instance.verdict(token, Verdict::NoResources);
            }
        }
    }

    fn peer_up(&self, handle: u64, info: PeerUp<'_>) {
        let Some((host, daemon)) = self.with_daemon() else { return };
        let node_id: Eid = match info.node_id.parse() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(plugin = %self.name, node_id = info.node_id, "peer with an unusable node ID ignored: {e}");
                return;
            }
        };
        let peer = PeerInfo { id: self.peer(handle), node_id, mtu: info.mtu, rate_bps: info.rate_bps };
        tracing::info!(plugin = %self.name, peer = %peer.node_id, address = info.address, "peer up");
        crate::metrics::METRICS.cla_peer_up(&self.name);
        crate::events::EVENTS.peer_up(peer.id.0, &peer.node_id.to_string(), &self.name, info.address);
        let address = info.address.to_owned();
        host.rt.spawn(async move { daemon.peer_up(peer, address).await });
    }

    fn peer_down(&self, handle: u64) {
        let Some((host, daemon)) = self.with_daemon() else { return };
        let peer = self.peer(handle);
        tracing::info!(plugin = %self.name, peer = peer.0, "peer down");
        crate::metrics::METRICS.cla_peer_down(&self.name);
        crate::events::EVENTS.peer_down(peer.0);
        host.rt.spawn(async move { daemon.peer_down(peer).await });
    }

    fn transmit_done(&self, transmit: u64, o: Outcome) {
        if let Some(host) = self.host.upgrade() {
            host.settle_part(transmit, outcome(o));
        }
    }

    fn log(&self, level: i32, msg: &str) {
        let plugin = self.name.as_str();
        match level {
            ferry_cla_abi::LOG_ERROR => {
                tracing::error!(plugin, "{msg}");
                crate::events::EVENTS.publish("warning", format!("{plugin}: {msg}"));
            }
            ferry_cla_abi::LOG_WARN => {
                tracing::warn!(plugin, "{msg}");
                crate::events::EVENTS.publish("warning", format!("{plugin}: {msg}"));
            }
            ferry_cla_abi::LOG_INFO => tracing::info!(plugin, "{msg}"),
            ferry_cla_abi::LOG_DEBUG => tracing::debug!(plugin, "{msg}"),
            _ => tracing::trace!(plugin, "{msg}"),
        }
    }
}

/// The TCP plugin next to the ferryd executable, if it was built there.
pub fn default_tcp_plugin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("libferry_cla_tcp.so"), dir.join("../libferry_cla_tcp.so")].into_iter().find(|p| Path::new(p).exists())
}
