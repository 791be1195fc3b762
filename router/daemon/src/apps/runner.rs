//! One app's thread: instantiate the component, deliver its bundles, tick it,
//! and restart it with back-off when it traps.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::admin::{decode_admin_record, AdminRecord, ReasonCode};
use ferry_core::bundle::BundleId;
use ferry_core::eid::Eid;
use ferry_core::node::decode_stored;
use tokio::sync::mpsc;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, ResourceTable, WasiCtxBuilder};

use super::host::{App, HostState, Incoming, Limiter, LogLevel, StatusReport};
use super::{AppShared, AppState};
use crate::daemon::Daemon;

/// Bundles taken off the queues per round (their deletions share one store write).
pub const DELIVERY_WINDOW: usize = 256;
/// First back-off after a failure; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the API asks of an app's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Start,
    Stop,
    Shutdown,
}

/// A running instance.
struct Live {
    store: Store<HostState>,
    app: App,
}

/// How a call into the app ended.
enum Call<T> {
    Ok(T),
    /// The app returned an error.
    Refused(String),
    /// It trapped (panic, time budget, memory cap): the instance is unusable.
    Trapped(String),
}

/// How a round of deliveries went.
enum Round {
    /// Nothing was waiting.
    Idle,
    /// Bundles were delivered; look again.
    Progress,
    /// A bundle failed; wait a back-off (and, if trapped, replace the instance).
    Failed { trapped: bool },
}

pub struct Runner {
    shared: Arc<AppShared>,
    daemon: Arc<Daemon>,
    runtime: tokio::runtime::Handle,
    engine: Engine,
    control: mpsc::UnboundedReceiver<Control>,
    set_aside_dir: PathBuf,
    linker: Option<Arc<Linker<HostState>>>,
    component: Option<Component>,
    /// Failures per bundle (in memory: a restart of ferryd starts again at 0).
    attempts: HashMap<BundleId, u32>,
    backoff: Duration,
    started_once: bool,
}

impl Runner {
    pub fn new(
        shared: Arc<AppShared>,
        daemon: Arc<Daemon>,
        runtime: tokio::runtime::Handle,
        engine: Engine,
        control: mpsc::UnboundedReceiver<Control>,
        set_aside_dir: PathBuf,
    ) -> Runner {
        Runner {
            shared,
            daemon,
            runtime,
            engine,
            control,
            set_aside_dir,
            linker: None,
            component: None,
            attempts: HashMap::new(),
            backoff: FIRST_BACKOFF,
            started_once: false,
        }
    }

    fn next_backoff(&mut self) -> Duration {
        let b = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        b
    }

    /// The thread's body: runs until [`Control::Shutdown`] (or the host is gone).
    pub fn run(mut self) {
        let tick = self.shared.spec.tick;
        let mut want = self.shared.spec.autostart;
        let mut live: Option<Live> = None;
        let mut not_before = Instant::now();
        let mut next_tick = Instant::now() + tick;
        let mut deliveries = self.daemon.watch_deliveries();
        let mut pending: Option<Control> = None;
        loop {
            while let Some(c) = pending.take().or_else(|| self.control.try_recv().ok()) {
                match c {
                    Control::Start => {
                        if !want || live.is_none() {
                            not_before = Instant::now();
                            self.backoff = FIRST_BACKOFF;
                        }
                        want = true;
                    }
                    Control::Stop => {
                        want = false;
                        if live.take().is_some() {
                            self.shared.log(LogLevel::Info, "stopped");
                        }
                        self.shared.update(|s| s.memory_bytes = 0);
                        self.shared.set_state(AppState::Stopped);
                    }
                    Control::Shutdown => return,
                }
            }
            let now = Instant::now();
            if want && live.is_none() && now >= not_before {
                match self.instantiate() {
                    Ok(l) => {
                        live = Some(l);
                        self.shared.set_state(AppState::Running);
                    }
                    Err(Call::Refused(e)) => {
                        self.shared.log(LogLevel::Error, &format!("start failed: {e}; the app stays down"));
                        self.shared.update(|s| s.last_error = Some(e));
                        self.shared.set_state(AppState::Failed);
                        want = false;
                    }
                    Err(Call::Trapped(e)) | Err(Call::Ok(e)) => {
                        let wait = self.next_backoff();
                        self.shared.log(LogLevel::Error, &format!("cannot start: {e}; trying again in {wait:?}"));
                        self.shared.update(|s| s.last_error = Some(e));
                        self.shared.set_state(AppState::Backoff);
                        not_before = now + wait;
                    }
                }
            }

            let mut busy = false;
            if let Some(l) = live.as_mut() {
                if now >= not_before {
                    // Mark the queues seen before looking: nothing is missed.
                    deliveries.borrow_and_update();
                    match self.deliver_round(l) {
                        Round::Idle => {}
                        Round::Progress => busy = true,
                        Round::Failed { trapped } => {
                            not_before = Instant::now() + self.next_backoff();
                            if trapped {
                                live = None;
                                self.shared.set_state(AppState::Backoff);
                            }
                        }
                    }
                }
            }
            if let Some(l) = live.as_mut() {
                if Instant::now() >= next_tick {
                    next_tick = Instant::now() + tick;
                    let now_dtn = self.daemon.now();
                    match self.call(l, |app, store| app.call_on_tick(store, now_dtn)) {
                        Call::Ok(()) => self.shared.counters().ticks += 1,
                        Call::Refused(e) => self.shared.log(LogLevel::Warn, &format!("on-tick: {e}")),
                        Call::Trapped(e) => {
                            self.trapped(&format!("on-tick trapped: {e}"));
                            live = None;
                            not_before = Instant::now() + self.next_backoff();
                            self.shared.set_state(AppState::Backoff);
                        }
                    }
                }
            }
            if busy {
                continue;
            }

            // Sleep until something happens: a command, a bundle, the tick,
            // the end of a back-off.
            let mut wake = Instant::now() + Duration::from_secs(3600);
            if live.is_some() {
                wake = wake.min(next_tick);
            }
            if want {
                wake = wake.min(not_before.max(Instant::now()));
            }
            let deliveries_matter = live.is_some() && Instant::now() >= not_before;
            let control = &mut self.control;
            pending = self.runtime.block_on(async {
                tokio::select! {
                    c = control.recv() => Some(c.unwrap_or(Control::Shutdown)),
                    r = deliveries.changed(), if deliveries_matter => {
                        // The daemon is gone: stop.
                        r.err().map(|_| Control::Shutdown)
                    }
                    _ = tokio::time::sleep_until(wake.into()) => None,
                }
            });
        }
    }

    fn trapped(&self, what: &str) {
        self.shared.log(LogLevel::Error, what);
        self.shared.counters().traps += 1;
        self.shared.update(|s| s.last_error = Some(what.to_owned()));
    }

    fn linker(&mut self) -> Result<Arc<Linker<HostState>>, String> {
        if let Some(l) = &self.linker {
            return Ok(Arc::clone(l));
        }
        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| format!("linking WASI: {e}"))?;
        App::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| format!("linking the ferry:app host: {e}"))?;
        let linker = Arc::new(linker);
        self.linker = Some(Arc::clone(&linker));
        Ok(linker)
    }

    /// Compiles (once), instantiates and starts the app.
    fn instantiate(&mut self) -> Result<Live, Call<String>> {
        self.shared.set_state(AppState::Starting);
        let spec = self.shared.spec.clone();
        if self.component.is_none() {
            let t = Instant::now();
            let path = &spec.component;
            let bytes = std::fs::read(path).map_err(|e| Call::Ok(format!("loading {}: {e}", path.display())))?;
            // Pinned: checked on the very bytes that are compiled.
            if let Some(pin) = &spec.sha256 {
                pin.check(path, &bytes).map_err(|e| Call::Ok(e.to_string()))?;
            }
            let component = Component::new(&self.engine, &bytes)
                .map_err(|e| Call::Ok(format!("loading {}: {e:#}", path.display())))?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            self.shared.update(|s| s.compile_ms = Some(ms));
            self.component = Some(component);
        }
        let linker = self.linker().map_err(Call::Ok)?;
        let t = Instant::now();
        let mut wasi = WasiCtxBuilder::new();
        for (guest, host) in &spec.dirs {
            std::fs::create_dir_all(host).map_err(|e| Call::Ok(format!("folder {}: {e}", host.display())))?;
            wasi.preopened_dir(host, guest, FsPerms::ReadWrite)
                .map_err(|e| Call::Ok(format!("opening {} for the app: {e}", host.display())))?;
        }
        let state = HostState {
            shared: Arc::clone(&self.shared),
            daemon: Arc::clone(&self.daemon),
            runtime: self.runtime.clone(),
            capabilities: Arc::new(spec.capabilities.clone()),
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter::new(spec.memory),
            deadline: Instant::now() + spec.time_budget,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Continue(1)
            })
        });
        store.set_epoch_deadline(1);
        let Some(component) = self.component.as_ref() else {
            return Err(Call::Ok("the component is not compiled".into()));
        };
        let app = App::instantiate(&mut store, component, &linker).map_err(|e| Call::Trapped(format!("{e:#}")))?;
        let mut live = Live { store, app };
        let config = spec.config_json.clone();
        match self.call(&mut live, |app, store| app.call_start(store, &config)) {
            Call::Ok(()) => {}
            Call::Refused(e) => return Err(Call::Refused(e)),
            Call::Trapped(e) => {
                self.shared.counters().traps += 1;
                return Err(Call::Trapped(format!("start trapped: {e}")));
            }
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if self.started_once {
            self.shared.counters().restarts += 1;
        }
        self.started_once = true;
        self.shared.update(|s| s.cold_start_ms = Some(ms));
        self.shared.log(LogLevel::Info, &format!("started in {ms:.1} ms"));
        Ok(live)
    }

    /// One call into the app within its time budget.
    fn call<T>(
        &self,
        live: &mut Live,
        f: impl FnOnce(&App, &mut Store<HostState>) -> wasmtime::Result<Result<T, String>>,
    ) -> Call<T> {
        live.store.data_mut().deadline = Instant::now() + self.shared.spec.time_budget;
        live.store.set_epoch_deadline(1);
        let started = Instant::now();
        let r = f(&live.app, &mut live.store);
        let took = started.elapsed();
        {
            let mut c = self.shared.counters();
            c.calls += 1;
            c.busy_ns = c.busy_ns.saturating_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        }
        let used = live.store.data().limiter.used;
        self.shared.update(|s| s.memory_bytes = used);
        match r {
            Ok(Ok(v)) => Call::Ok(v),
            Ok(Err(e)) => Call::Refused(e),
            Err(trap) => {
                let why = if Instant::now() >= live.store.data().deadline {
                    format!("time budget of {:?} exceeded", self.shared.spec.time_budget)
                } else {
                    // The trap itself, without the wasm backtrace around it.
                    match trap.downcast_ref::<wasmtime::Trap>() {
                        Some(t) => format!("wasm trap: {t}"),
                        None => trap.root_cause().to_string(),
                    }
                };
                Call::Trapped(why)
            }
        }
    }

    /// Takes a window of bundles off the app's queues and hands them to
    /// `on-bundle` in order; confirms the ones it took.
    fn deliver_round(&mut self, live: &mut Live) -> Round {
        let mut window: Vec<(Eid, BundleId)> = vec![];
        for endpoint in self.shared.endpoints() {
            let room = DELIVERY_WINDOW - window.len();
            if room == 0 {
                break;
            }
            let ids = self.daemon.pop_deliveries(&endpoint, room, u64::MAX);
            window.extend(ids.into_iter().map(|id| (endpoint.clone(), id)));
        }
        if window.is_empty() {
            return Round::Idle;
        }
        let ids: Vec<BundleId> = window.iter().map(|(_, id)| id.clone()).collect();
        let loaded = match self.runtime.block_on(self.daemon.load_many(&ids)) {
            Ok(l) => l,
            Err(e) => {
                self.shared.log(LogLevel::Error, &format!("reading bundles from the store: {e}"));
                self.requeue(&window);
                return Round::Failed { trapped: false };
            }
        };
        let mut delivered = vec![];
        let mut round = Round::Progress;
        for (i, ((endpoint, id), bytes)) in window.iter().zip(loaded).enumerate() {
            let Some(bytes) = bytes else {
                tracing::error!(app = self.shared.name(), bundle = %id, "bundle queued for the app is not in the store");
                continue;
            };
            let incoming = match incoming(id, endpoint, &bytes) {
                Ok(b) => b,
                Err(e) => {
                    self.shared.log(LogLevel::Error, &format!("bundle {id} does not decode: {e}"));
                    self.set_aside(id, &bytes);
                    continue;
                }
            };
            let outcome = self.call(live, |app, store| app.call_on_bundle(store, &incoming));
            let (why, trapped) = match outcome {
                Call::Ok(()) => {
                    self.attempts.remove(id);
                    self.backoff = FIRST_BACKOFF;
                    delivered.push(id.clone());
                    continue;
                }
                Call::Refused(e) => (format!("on-bundle refused {id}: {e}"), false),
                Call::Trapped(e) => (format!("on-bundle trapped on {id}: {e}"), true),
            };
            if trapped {
                self.trapped(&why);
            } else {
                self.shared.log(LogLevel::Warn, &why);
                self.shared.update(|s| s.last_error = Some(why.clone()));
            }
            self.shared.counters().failures += 1;
            // The rest of the window goes back first, so that the failed
            // bundle ends up at the head of its queue again.
            self.requeue(&window[i + 1..]);
            let n = self.attempts.entry(id.clone()).or_insert(0);
            *n += 1;
            if *n >= self.shared.spec.max_attempts {
                self.attempts.remove(id);
                self.set_aside(id, &bytes);
            } else {
                self.daemon.requeue(endpoint, id.clone());
            }
            round = Round::Failed { trapped };
            break;
        }
        if !delivered.is_empty() {
            self.runtime.block_on(self.daemon.confirm_deliveries(&delivered));
            self.shared.counters().delivered += delivered.len() as u64;
        }
        round
    }

    fn requeue(&self, window: &[(Eid, BundleId)]) {
        for (endpoint, id) in window.iter().rev() {
            self.daemon.requeue(endpoint, id.clone());
        }
    }

    /// Copies a bundle the app keeps failing on to the set-aside folder and
    /// deletes it, with a deletion status report if it asked for one.
    fn set_aside(&self, id: &BundleId, bytes: &[u8]) {
        let name: String =
            id.to_string().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        let path = self.set_aside_dir.join(format!("{name}.bundle"));
        let saved = std::fs::create_dir_all(&self.set_aside_dir).and_then(|_| std::fs::write(&path, bytes));
        match saved {
            Ok(()) => self.shared.log(
                LogLevel::Error,
                &format!("set aside {id} after {} failures: {}", self.shared.spec.max_attempts, path.display()),
            ),
            Err(e) => self.shared.log(
                LogLevel::Error,
                &format!("set aside {id} after repeated failures; could not keep a copy in {}: {e}", path.display()),
            ),
        }
        self.runtime.block_on(self.daemon.delete_for(id, ReasonCode::NoInformation));
        self.shared.counters().set_aside += 1;
    }
}

/// The WIT record for a stored bundle.
fn incoming(id: &BundleId, endpoint: &Eid, bytes: &[u8]) -> Result<Incoming, String> {
    let bundle = decode_stored(bytes).map_err(|e| e.to_string())?;
    let payload = bytes.get(bundle.payload().data.clone()).ok_or("payload out of range")?.to_vec();
    let report = if bundle.is_admin_record() {
        match decode_admin_record(&payload) {
            Ok(AdminRecord::StatusReport(r)) => Some(StatusReport {
                subject: r.subject.to_string(),
                received: r.received.is_some(),
                forwarded: r.forwarded.is_some(),
                delivered: r.delivered.is_some(),
                deleted: r.deleted.is_some(),
                reason: u8::try_from(r.reason.code()).unwrap_or(0),
            }),
            _ => None,
        }
    } else {
        None
    };
    Ok(Incoming {
        id: id.to_string(),
        source: bundle.primary.source.to_string(),
        destination: endpoint.to_string(),
        creation_time: bundle.primary.creation.time,
        payload,
        report,
    })
}
