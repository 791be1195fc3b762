//! The WebAssembly app host: runs the components of the `ferry:app` world
//! (wasm-apps/wit) that the config's `[[app]]` tables name.
//!
//! # Design
//! - One wasmtime `Engine` for all apps (compiled code is shared machinery);
//!   one `Store` per app, owned by the app's own OS thread ([`runner`]). The
//!   thread calls the app synchronously and drives the daemon's async API with
//!   `Handle::block_on`, so a busy or stuck app never holds a tokio worker.
//! - Memory: a [`host::Limiter`] caps the app's memories and tables
//!   (`memory`, default 64 MiB); a failed grow makes a Rust app abort (a trap).
//! - Time: an epoch ticker thread advances the engine's epoch every
//!   [`EPOCH_TICK`]; each call runs with a deadline (`time_budget`, default 5 s)
//!   checked at every epoch. Host calls (a store write, a git run) do not count.
//! - A trap (panic, runaway loop, memory cap) drops the instance; a fresh one
//!   is made after a back-off that doubles from 100 ms to 30 s. Other apps and
//!   the node go on meanwhile: they share no thread and no store with it.
//! - Delivery is the websocket's rule: a bundle is confirmed delivered (and so
//!   deleted from the store) only after `on-bundle` returned `ok`; an `err` or
//!   a trap puts it back at the head of its queue; after `max_attempts`
//!   failures it is copied to `<data_dir>/apps/<name>/set-aside/` and deleted
//!   with a deletion status report (`Daemon::delete_for`).
//! - Endpoints in the config are registered at start-up, whether or not the
//!   app runs, so bundles wait for a stopped app in the store.
//!
//! # Layout
//! - [`spec`]: the `[[app]]` config, checked.
//! - [`host`]: bindings of the WIT world and the imports apps call.
//! - [`capability`]: named programs an app may run (git in one repository).
//! - [`runner`]: one app's thread: instantiate, deliver, tick, restart.
//! - [`api`]: `/ferry/apps` routes for `ferry apps`.

pub mod api;
pub mod capability;
pub mod host;
pub mod runner;
pub mod spec;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use ferry_core::eid::Eid;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::daemon::Daemon;
use host::LogLevel;
use runner::{Control, Runner};
use spec::AppSpec;

/// How often the engine's epoch advances: the granularity of time budgets.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Log lines kept per app for `ferry apps logs`.
pub const LOG_LINES: usize = 1000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the app host could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// wasmtime could not be set up.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    /// No app has that name.
    #[error("no app named `{0}`")]
    NoSuchApp(String),
    /// A configured endpoint is not an endpoint of this node, or is taken.
    #[error("app `{app}`: {message}")]
    Endpoint { app: String, message: String },
    /// Registering an endpoint in the node failed.
    #[error("app `{app}`: registering {endpoint}: {source}")]
    Register { app: String, endpoint: Eid, source: Box<crate::daemon::DaemonError> },
    /// The app's thread could not be started.
    #[error("app `{app}`: cannot start its thread: {source}")]
    Thread { app: String, source: std::io::Error },
}

/// Where an app is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    /// Not running (not started, or `ferry apps stop`).
    Stopped,
    /// Being compiled and instantiated.
    Starting,
    Running,
    /// Trapped or failed to start; a fresh instance comes after a back-off.
    Backoff,
    /// Its `start` returned an error: it stays down until `ferry apps start`.
    Failed,
}

/// Counters of one app since ferryd started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Bundles `on-bundle` took.
    pub delivered: u64,
    /// `on-bundle` calls that returned an error or trapped.
    pub failures: u64,
    /// Traps (including time budget and memory cap).
    pub traps: u64,
    /// Fresh instances made after the first.
    pub restarts: u64,
    /// Bundles set aside after `max_attempts` failures.
    pub set_aside: u64,
    /// Bundles the app sent.
    pub sent: u64,
    pub ticks: u64,
    /// Calls into the app (start, on-bundle, on-tick), and the time they took.
    pub calls: u64,
    pub busy_ns: u64,
}

/// What `ferry apps list` shows of one app.
#[derive(Debug, Clone, Serialize)]
pub struct AppStatus {
    pub name: String,
    pub state: AppState,
    pub component: String,
    pub endpoints: Vec<String>,
    #[serde(flatten)]
    pub counters: Counters,
    /// Bytes of linear memory the instance holds now.
    pub memory_bytes: usize,
    pub memory_cap: usize,
    /// Compiling the component (once per ferryd run).
    pub compile_ms: Option<f64>,
    /// The last instantiation plus its `start` call (a cold start of a
    /// compiled component).
    pub cold_start_ms: Option<f64>,
    pub last_error: Option<String>,
}

/// One line of an app's log.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Unix time in milliseconds.
    pub unix_ms: u64,
    pub level: &'static str,
    pub message: String,
}

/// What an app's thread, its imports and the API share.
pub struct AppShared {
    pub spec: AppSpec,
    status: Mutex<AppStatus>,
    logs: Mutex<VecDeque<LogLine>>,
    endpoints: Mutex<BTreeSet<Eid>>,
    /// Endpoint -> app, for all apps: an endpoint belongs to one app.
    owners: Arc<Mutex<HashMap<Eid, String>>>,
}

impl AppShared {
    fn new(spec: AppSpec, owners: Arc<Mutex<HashMap<Eid, String>>>) -> AppShared {
        let status = AppStatus {
            name: spec.name.clone(),
            state: AppState::Stopped,
            component: spec.component.display().to_string(),
            endpoints: vec![],
            counters: Counters::default(),
            memory_bytes: 0,
            memory_cap: spec.memory,
            compile_ms: None,
            cold_start_ms: None,
            last_error: None,
        };
        AppShared {
            spec,
            status: Mutex::new(status),
            logs: Mutex::new(VecDeque::new()),
            endpoints: Mutex::new(BTreeSet::new()),
            owners,
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// A line in the app's log and in ferryd's.
    pub fn log(&self, level: LogLevel, message: &str) {
        let app = self.name();
        let level = match level {
            LogLevel::Trace => {
                tracing::trace!(app, "{message}");
                "trace"
            }
            LogLevel::Debug => {
                tracing::debug!(app, "{message}");
                "debug"
            }
            LogLevel::Info => {
                tracing::info!(app, "{message}");
                "info"
            }
            LogLevel::Warn => {
                tracing::warn!(app, "{message}");
                "warn"
            }
            LogLevel::Error => {
                tracing::error!(app, "{message}");
                "error"
            }
        };
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut logs = lock(&self.logs);
        if logs.len() == LOG_LINES {
            logs.pop_front();
        }
        logs.push_back(LogLine { unix_ms, level, message: message.to_owned() });
    }

    pub fn counters(&self) -> CountersGuard<'_> {
        CountersGuard(lock(&self.status))
    }

    fn set_state(&self, state: AppState) {
        lock(&self.status).state = state;
    }

    fn update(&self, f: impl FnOnce(&mut AppStatus)) {
        f(&mut lock(&self.status));
    }

    fn status(&self) -> AppStatus {
        let mut s = lock(&self.status).clone();
        s.endpoints = self.endpoints().iter().map(|e| e.to_string()).collect();
        s
    }

    /// The endpoints delivered to this app.
    pub fn endpoints(&self) -> Vec<Eid> {
        lock(&self.endpoints).iter().cloned().collect()
    }

    /// Makes `eid` this app's; fails if another app has it.
    pub fn claim(&self, eid: &Eid) -> Result<(), String> {
        let mut owners = lock(&self.owners);
        match owners.get(eid) {
            Some(other) if other != self.name() => return Err(format!("{eid} belongs to app `{other}`")),
            _ => {}
        }
        owners.insert(eid.clone(), self.name().to_owned());
        lock(&self.endpoints).insert(eid.clone());
        Ok(())
    }

    /// Gives up `eid`; false if it was not this app's.
    pub fn release(&self, eid: &Eid) -> bool {
        let was = lock(&self.endpoints).remove(eid);
        if was {
            lock(&self.owners).remove(eid);
        }
        was
    }
}

/// The counters of an app, locked.
pub struct CountersGuard<'a>(MutexGuard<'a, AppStatus>);

impl std::ops::Deref for CountersGuard<'_> {
    type Target = Counters;
    fn deref(&self) -> &Counters {
        &self.0.counters
    }
}

impl std::ops::DerefMut for CountersGuard<'_> {
    fn deref_mut(&mut self) -> &mut Counters {
        &mut self.0.counters
    }
}

struct AppHandle {
    shared: Arc<AppShared>,
    control: mpsc::UnboundedSender<Control>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// All apps of the node.
pub struct AppHost {
    apps: Vec<AppHandle>,
    ticker_stop: Arc<AtomicBool>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

/// The engine every app runs on: component model, epoch interruption.
pub fn engine() -> Result<wasmtime::Engine, AppError> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    wasmtime::Engine::new(&config).map_err(|e| AppError::Engine(e.to_string()))
}

impl AppHost {
    /// Registers every app's endpoints and starts one thread per app (which
    /// compiles and starts the app unless `autostart = false`). Must be called
    /// inside the tokio runtime.
    pub async fn start(specs: Vec<AppSpec>, daemon: &Arc<Daemon>, data_dir: &Path) -> Result<AppHost, AppError> {
        let ticker_stop = Arc::new(AtomicBool::new(false));
        if specs.is_empty() {
            return Ok(AppHost { apps: vec![], ticker_stop, ticker: Mutex::new(None) });
        }
        let engine = engine()?;
        let owners = Arc::new(Mutex::new(HashMap::new()));
        let node_id = daemon.node_id();
        let mut apps = vec![];
        for spec in specs {
            let shared = Arc::new(AppShared::new(spec, Arc::clone(&owners)));
            for text in shared.spec.endpoints.clone() {
                let app = shared.name().to_owned();
                let eid = host::resolve_endpoint(&node_id, &text)
                    .map_err(|message| AppError::Endpoint { app: app.clone(), message })?;
                shared.claim(&eid).map_err(|message| AppError::Endpoint { app: app.clone(), message })?;
                daemon.register(eid.clone()).await.map_err(|e| AppError::Register {
                    app,
                    endpoint: eid,
                    source: Box::new(e),
                })?;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let runner = Runner::new(
                Arc::clone(&shared),
                Arc::clone(daemon),
                tokio::runtime::Handle::current(),
                engine.clone(),
                rx,
                data_dir.join("apps").join(shared.name()).join("set-aside"),
            );
            let thread = std::thread::Builder::new()
                .name(format!("app-{}", shared.name()))
                .spawn(move || runner.run())
                .map_err(|source| AppError::Thread { app: shared.name().to_owned(), source })?;
            apps.push(AppHandle { shared, control: tx, thread: Mutex::new(Some(thread)) });
        }
        let stop = Arc::clone(&ticker_stop);
        let ticker = std::thread::Builder::new()
            .name("app-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|source| AppError::Thread { app: "epoch ticker".into(), source })?;
        tracing::info!(apps = apps.len(), "app host started");
        Ok(AppHost { apps, ticker_stop, ticker: Mutex::new(Some(ticker)) })
    }

    fn find(&self, name: &str) -> Result<&AppHandle, AppError> {
        self.apps.iter().find(|a| a.shared.name() == name).ok_or_else(|| AppError::NoSuchApp(name.to_owned()))
    }

    /// Every app's status, in config order.
    pub fn list(&self) -> Vec<AppStatus> {
        self.apps.iter().map(|a| a.shared.status()).collect()
    }

    pub fn status(&self, name: &str) -> Result<AppStatus, AppError> {
        Ok(self.find(name)?.shared.status())
    }

    /// Starts a stopped (or failed) app; a running one is left alone.
    pub fn start_app(&self, name: &str) -> Result<(), AppError> {
        let a = self.find(name)?;
        let _ = a.control.send(Control::Start);
        Ok(())
    }

    /// Stops an app: its instance is dropped, its bundles wait in the store.
    pub fn stop_app(&self, name: &str) -> Result<(), AppError> {
        let a = self.find(name)?;
        let _ = a.control.send(Control::Stop);
        Ok(())
    }

    /// The last `n` lines of an app's log.
    pub fn logs(&self, name: &str, n: usize) -> Result<Vec<LogLine>, AppError> {
        let a = self.find(name)?;
        let logs = lock(&a.shared.logs);
        Ok(logs.iter().skip(logs.len().saturating_sub(n)).cloned().collect())
    }

    /// Stops every app and waits for their threads (each finishes the call it
    /// is in, which its time budget bounds). Blocking: call it off the runtime.
    pub fn shutdown(&self) {
        for a in &self.apps {
            let _ = a.control.send(Control::Shutdown);
        }
        for a in &self.apps {
            if let Some(t) = lock(&a.thread).take() {
                if t.join().is_err() {
                    tracing::error!(app = a.shared.name(), "the app's thread panicked");
                }
            }
        }
        self.ticker_stop.store(true, Ordering::Relaxed);
        if let Some(t) = lock(&self.ticker).take() {
            let _ = t.join();
        }
    }
}
