//! The plugin: [`TcpCla`] implements [`ferry_cla_abi::Cla`]; `Shared` is
//! what its tasks share.
//!
//! # Threads and ownership
//! `create` parses the settings and starts nothing. `start` binds every
//! listener (so "address in use" is `start`'s error), builds a tokio runtime
//! with `threads` workers and spawns one task per listener, per connection,
//! per static peer (its dialer) and one for discovery. Every ABI call returns
//! at once: `transmit` and `verdict` are messages on the connection's
//! unbounded channel; `connect` spawns a dialer.
//!
//! A connection task owns its socket and its session outright; the only
//! shared state is the registry below (connection handle → channel, token →
//! connection), each behind a mutex that is never held across a host
//! callback or an await.
//!
//! Every accepted `transmit` becomes a `Pending`, which reports its outcome
//! exactly once: explicitly, or `Failed` when dropped — whether it sat in a
//! session, in a channel, or in a task that the runtime's shutdown dropped.
//! `stop` closes sessions (SESS_TERM, up to a second for the replies), then
//! shuts the runtime down on a thread of its own (so a host that calls it
//! from inside its own tokio runtime does not panic); every task, and so every
//! `Pending`, is gone before `stop` returns, and with it every callback.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferry_cla_abi::{Cla, FerryClaDescriptor, Host, Outcome, Verdict};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::settings::{PeerUrl, Settings};

/// The descriptor of this plugin, for [`ferry_cla_abi::host::Plugin::in_process`].
pub static DESCRIPTOR: FerryClaDescriptor = ferry_cla_abi::plugin::descriptor::<TcpCla>();

/// The same descriptor as [`DESCRIPTOR`], as a function.
pub fn descriptor() -> &'static FerryClaDescriptor {
    &DESCRIPTOR
}

/// How long `stop` waits for sessions to exchange SESS_TERM.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(1);

/// The TCP convergence-layer plugin. See the [crate documentation](crate).
pub struct TcpCla {
    host: Host,
    settings: Settings,
    state: Mutex<State>,
}

enum State {
    Created,
    Running(Box<Running>),
    Stopped,
}

struct Running {
    rt: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    all_done: mpsc::Receiver<()>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere never leaves these maps half-updated: every critical
    // section is a single insert, remove or lookup.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cla for TcpCla {
    const NAME: &'static CStr = c"tcp";
    const VERSION: &'static CStr = c"0.1.0";

    fn create(config: &str, host: Host) -> Result<Self, String> {
        let settings = Settings::parse(config).map_err(|e| e.to_string())?;
        Ok(TcpCla { host, settings, state: Mutex::new(State::Created) })
    }

    fn start(&self) -> Result<(), String> {
        let mut state = lock(&self.state);
        match *state {
            State::Created => {}
            State::Running(_) => return Err("already started".into()),
            State::Stopped => return Err("stopped".into()),
        }
        let running = self.launch()?;
        *state = State::Running(Box::new(running));
        Ok(())
    }

    fn transmit(&self, peer: u64, transmit: u64, bundle: &[u8]) -> Result<(), String> {
        self.shared().ok_or("not running")?.transmit(peer, transmit, bundle)
    }

    fn verdict(&self, token: u64, verdict: Verdict) {
        if let Some(shared) = self.shared() {
            shared.verdict(token, verdict);
        }
    }

    fn connect(&self, address: &str) -> Result<(), String> {
        let url: PeerUrl = address.parse().map_err(|e| format!("{address}: {e}"))?;
        let shared = self.shared().ok_or("not running")?;
        crate::dial::add_static_peer(&shared, url);
        Ok(())
    }

    fn stop(&self) {
        let running = match std::mem::replace(&mut *lock(&self.state), State::Stopped) {
            State::Running(r) => r,
            _ => return,
        };
        // Dropping a runtime inside another runtime's context panics: shut
        // this one down from a thread of its own.
        let joined = std::thread::Builder::new()
            .name("ferry-cla-tcp-stop".into())
            .spawn(move || running.shut_down())
            .map(|t| t.join());
        if !matches!(joined, Ok(Ok(()))) {
            self.host.error("tcp: shutting down the plugin's runtime failed");
        }
    }
}

impl Drop for TcpCla {
    fn drop(&mut self) {
        self.stop();
    }
}

impl TcpCla {
    fn shared(&self) -> Option<Arc<Shared>> {
        match &*lock(&self.state) {
            State::Running(r) => Some(r.shared.clone()),
            _ => None,
        }
    }

    fn launch(&self) -> Result<Running, String> {
        let node_id = self.host.node_id().to_owned();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.settings.threads)
            .thread_name("ferry-cla-tcp")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the plugin's runtime: {e}"))?;
        let tls = match &self.settings.tls {
            Some(t) => Some(crate::tls::TlsContext::load(t, &node_id).map_err(|e| e.to_string())?),
            None => None,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (alive, all_done) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            host: self.host,
            node_id,
            settings: self.settings.clone(),
            tls,
            origin: Instant::now(),
            next_handle: AtomicU64::new(1),
            next_token: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashSet::new()),
            static_peers: Mutex::new(HashSet::new()),
            advertised: Mutex::new(Vec::new()),
            shutdown: shutdown_rx,
            alive: Mutex::new(Some(alive)),
            conn_limit: Arc::new(Semaphore::new(self.settings.max_connections)),
            rt: rt.handle().clone(),
        });
        let _enter = rt.enter();
        // Bind everything first: a failure leaves nothing running.
        let listeners = crate::dial::bind_listeners(&shared)?;
        let discovery = if self.settings.discovery.enabled { Some(crate::discovery::bind(&shared)?) } else { None };
        crate::dial::spawn_listeners(&shared, listeners);
        if let Some(socket) = discovery {
            crate::discovery::spawn(&shared, socket);
        }
        for url in self.settings.peers.clone() {
            crate::dial::add_static_peer(&shared, url);
        }
        Ok(Running { rt, shared, shutdown, all_done })
    }
}

impl Running {
    fn shut_down(mut self) {
        let _ = self.shutdown.send(true);
        // Tasks hold clones of `alive`; once the last one ends, recv sees None.
        lock(&self.shared.alive).take();
        let all_done = &mut self.all_done;
        self.rt.block_on(async {
            let _ = tokio::time::timeout(STOP_GRACE + Duration::from_millis(500), all_done.recv()).await;
        });
        // Tasks still running (a session that never answered SESS_TERM) are
        // dropped here, on the runtime's threads; their `Pending`s report
        // `Failed` and their peers go down before this returns.
        self.rt.shutdown_timeout(Duration::from_secs(2));
        lock(&self.shared.conns).clear();
        lock(&self.shared.tokens).clear();
    }
}

/// What a connection task is sent.
pub(crate) enum Cmd {
    /// Send this bundle.
    Transmit(Pending, Arc<[u8]>),
    /// The host's verdict on a received bundle.
    Verdict(u64, Verdict),
}

/// One accepted `transmit`: reports its outcome exactly once, `Failed` if it
/// is dropped unsettled.
pub(crate) struct Pending {
    id: u64,
    host: Host,
    settled: bool,
}

impl Pending {
    pub(crate) fn settle(mut self, outcome: Outcome) {
        self.settled = true;
        self.host.transmit_done(self.id, outcome);
    }

    /// The transmit was not accepted after all: no outcome follows.
    fn defuse(mut self) {
        self.settled = true;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.settled {
            self.host.transmit_done(self.id, Outcome::Failed);
        }
    }
}

/// A connection in the registry.
struct ConnEntry {
    tx: mpsc::UnboundedSender<Cmd>,
    /// Set once the host was told `peer_up`.
    up: Option<UpInfo>,
}

struct UpInfo {
    node_id: String,
    /// A TCPCL session (else an MTCP/STCP link).
    tcpcl: bool,
}

/// State shared by the plugin's tasks.
pub(crate) struct Shared {
    pub(crate) host: Host,
    pub(crate) node_id: String,
    pub(crate) settings: Settings,
    /// The TLS credentials, when `[tls]` is configured.
    pub(crate) tls: Option<crate::tls::TlsContext>,
    origin: Instant,
    next_handle: AtomicU64,
    next_token: AtomicU64,
    conns: Mutex<HashMap<u64, ConnEntry>>,
    /// Token → the handle of the connection that received the bundle.
    tokens: Mutex<HashMap<u64, u64>>,
    /// Addresses (`scheme://ip:port`) a dialer is connecting to or connected to.
    dialing: Mutex<HashSet<String>>,
    /// Static peers (settings and `connect`), each with its own dialer.
    pub(crate) static_peers: Mutex<HashSet<PeerUrl>>,
    /// The CLAs our beacons advertise: name and bound port.
    pub(crate) advertised: Mutex<Vec<(String, Option<u16>)>>,
    pub(crate) shutdown: watch::Receiver<bool>,
    alive: Mutex<Option<mpsc::Sender<()>>>,
    pub(crate) conn_limit: Arc<Semaphore>,
    /// The plugin's runtime: ABI calls arrive on the host's threads.
    rt: tokio::runtime::Handle,
}

impl Shared {
    /// Milliseconds since the plugin started: the sessions' clock.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The instant of a session deadline.
    pub(crate) fn instant(&self, ms: u64) -> tokio::time::Instant {
        let d = Duration::from_millis(ms.min(u64::MAX / 2));
        tokio::time::Instant::from_std(self.origin.checked_add(d).unwrap_or_else(|| Instant::now() + d))
    }

    /// Spawns a task that `stop` waits for. After `stop` began, nothing is spawned.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let Some(alive) = lock(&self.alive).clone() else { return };
        self.rt.spawn(async move {
            fut.await;
            drop(alive);
        });
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A new connection: its handle (also its peer handle) and command channel.
    pub(crate) fn register(&self) -> (u64, mpsc::UnboundedReceiver<Cmd>) {
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.conns).insert(handle, ConnEntry { tx, up: None });
        (handle, rx)
    }

    /// The connection is gone: no transmits or verdicts reach it any more.
    pub(crate) fn unregister(&self, handle: u64, tokens: impl IntoIterator<Item = u64>) {
        lock(&self.conns).remove(&handle);
        let mut map = lock(&self.tokens);
        for t in tokens {
            map.remove(&t);
        }
    }

    /// A token for a bundle received on connection `handle`. Registered
    /// before the host hears of the bundle, so an immediate verdict finds it.
    pub(crate) fn new_token(&self, handle: u64) -> u64 {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        lock(&self.tokens).insert(token, handle);
        token
    }

    /// A token the host's verdict will not be routed for (MTCP, STCP: nothing to acknowledge).
    pub(crate) fn unrouted_token(&self) -> u64 {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// Marks connection `handle` up with the peer `node_id`: from now on
    /// transmits reach it.
    ///
    /// A second session with a node that is already up is kept, whichever
    /// side opened it: dtn7-rs sends only over sessions it opened itself
    /// (keyed by address), so closing one could cut a peer's only way to
    /// send. Dialers avoid making duplicates instead (see `dial`).
    pub(crate) fn mark_up(&self, handle: u64, node_id: &str, tcpcl: bool) {
        if let Some(e) = lock(&self.conns).get_mut(&handle) {
            e.up = Some(UpInfo { node_id: node_id.to_owned(), tcpcl });
        }
    }

    /// Whether a link to `node_id` is up (only TCPCL sessions if `tcpcl_only`).
    pub(crate) fn has_peer(&self, node_id: &str, tcpcl_only: bool) -> bool {
        lock(&self.conns)
            .values()
            .any(|e| e.up.as_ref().is_some_and(|u| u.node_id == node_id && (u.tcpcl || !tcpcl_only)))
    }

    /// Claims `addr` for one dialer; false if another has it.
    pub(crate) fn claim_dial(&self, addr: &str) -> bool {
        lock(&self.dialing).insert(addr.to_owned())
    }

    pub(crate) fn release_dial(&self, addr: &str) {
        lock(&self.dialing).remove(addr);
    }

    fn transmit(&self, peer: u64, id: u64, bundle: &[u8]) -> Result<(), String> {
        let tx = lock(&self.conns).get(&peer).filter(|e| e.up.is_some()).map(|e| e.tx.clone());
        let tx = tx.ok_or_else(|| format!("no peer {peer}"))?;
        // The bytes are borrowed for this call only: one copy, shared by the
        // session until the bundle is segmented into the output.
        let cmd = Cmd::Transmit(Pending { id, host: self.host, settled: false }, Arc::from(bundle));
        tx.send(cmd).map_err(|mpsc::error::SendError(cmd)| {
            if let Cmd::Transmit(p, _) = cmd {
                p.defuse();
            }
            format!("peer {peer} went down")
        })
    }

    fn verdict(&self, token: u64, verdict: Verdict) {
        let Some(handle) = lock(&self.tokens).remove(&token) else { return };
        let tx = lock(&self.conns).get(&handle).map(|e| e.tx.clone());
        match tx {
            Some(tx) => {
                let _ = tx.send(Cmd::Verdict(token, verdict));
            }
            None => self.host.debug(&format!("verdict {verdict:?} for token {token}: its session is gone")),
        }
    }
}
