//! Putting ferryd together: open the store, settle the node ID, start the
//! daemon, serve the API, and shut down in order.
//!
//! Shutdown (on the `stop` future: SIGINT/SIGTERM in ferryd) goes like
//! mini-redis's: stop accepting connections, let in-flight HTTP requests
//! finish, tell websocket sessions and the timer to stop and wait for them
//! (they finish the frames they were given and send the replies owed), then
//! flush and close the store.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_core::eid::Eid;
use ferry_core::node::{Node, NodeConfig};
use ferry_core::store::{Store, StoreError};
use ferry_store::RocksStore;

use crate::api::{self, AppState};
use crate::cla::{Cla, NoCla};
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::daemon::{random_node_id, stored_node_id, Daemon, DaemonError, DaemonOptions, DurableStore, STATE_NODE_ID};
use crate::plugins::ClaHost;
use crate::shutdown::ShutdownController;

/// How long shutdown waits for requests and sessions before flushing anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The line ferryd prints on stdout once the API listens (tests and scripts
/// parse it): `ferryd: api listening on <addr>`.
pub const LISTENING_PREFIX: &str = "ferryd: api listening on ";

/// Why ferryd could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot create the data folder {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the store in {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("the API server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Apps(#[from] crate::apps::AppError),
    #[error(transparent)]
    Security(#[from] crate::security::SecurityError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
}

/// Opens the RocksDB store in `<data_dir>/store`, keeping `min_free_bytes`
/// free on its filesystem.
pub async fn open_store(data_dir: &Path, min_free_bytes: u64) -> Result<Arc<RocksStore>, ServerError> {
    std::fs::create_dir_all(data_dir).map_err(|source| ServerError::DataDir { path: data_dir.to_owned(), source })?;
    let path = data_dir.join("store");
    let p = path.clone();
    let options = ferry_store::RocksOptions { min_free_bytes, ..ferry_store::RocksOptions::default() };
    let store = tokio::task::spawn_blocking(move || RocksStore::open_with(&p, options))
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?
        .map_err(|source| ServerError::Store { path, source })?;
    Ok(Arc::new(store))
}

/// The node ID to run with: the configured one, else the stored one, else a
/// fresh random one. Whatever it is ends up in the store.
pub async fn settle_node_id(store: Arc<dyn DurableStore>, configured: Option<Eid>) -> Result<Eid, DaemonError> {
    tokio::task::spawn_blocking(move || -> Result<Eid, DaemonError> {
        let stored = stored_node_id(&*store as &dyn Store)?;
        let id = match (configured, stored) {
            (Some(c), Some(s)) if c != s => {
                tracing::warn!(old = %s, new = %c, "the configured node ID replaces the stored one");
                c
            }
            (Some(c), _) => c,
            (None, Some(s)) => s,
            (None, None) => {
                let id = random_node_id();
                tracing::info!(node_id = %id, "generated a node ID");
                id
            }
        };
        if stored_node_id(&*store as &dyn Store)?.as_ref() != Some(&id) {
            store.put_state(STATE_NODE_ID, id.to_string().as_bytes())?;
        }
        Ok(id)
    })
    .await
    .map_err(|e| DaemonError::Task(e.to_string()))?
}

/// Runs ferryd until `stop` resolves, then shuts down gracefully.
pub async fn run(settings: Settings, stop: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
    let store = open_store(&settings.data_dir, settings.store_min_free_bytes).await?;
    let durable: Arc<dyn DurableStore> = store;
    let node_id = settle_node_id(Arc::clone(&durable), settings.node_id.clone()).await?;
    let token = crate::auth::Token::load(&settings.api_token, &settings.data_dir)?;

    let mut node_cfg = NodeConfig::new(node_id.clone(), settings.router.build(&node_id));
    node_cfg.default_hop_limit = Some(settings.hop_limit);
    node_cfg.accept_unprotected_primary = !settings.strict_primary_crc;
    let identity = crate::security::Identity::load_or_create(&settings.data_dir)?;
    let security = Arc::new(crate::security::Security::new(
        node_id.clone(),
        identity,
        settings.security.clone(),
        &settings.data_dir,
        ferry_core::codec::DecodeOptions::strict().allow_unprotected_primary(!settings.strict_primary_crc),
    )?);
    node_cfg.security = Some(security.node_policy());
    // Plugins are loaded before the daemon starts (it needs the CLA to send
    // through) and started after it (their callbacks need the daemon).
    let clas = ClaHost::load(&node_id, &settings.clas);
    let cla: Arc<dyn Cla> = if clas.names().is_empty() { Arc::new(NoCla) } else { clas.clone() };
    let daemon = Daemon::start(
        Node::new(node_cfg),
        Arc::clone(&durable),
        Arc::new(SystemClock),
        cla,
        DaemonOptions { default_lifetime: settings.default_lifetime },
    )
    .await?;
    clas.attach(&daemon);
    clas.start();
    daemon.connect_configured_peers();
    let apps = Arc::new(crate::apps::AppHost::start(settings.apps.clone(), &daemon, &settings.data_dir).await?);

    let listener = tokio::net::TcpListener::bind(settings.api)
        .await
        .map_err(|source| ServerError::Bind { addr: settings.api, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr: settings.api, source })?;
    tracing::info!(%addr, node_id = %node_id, router = daemon.router_name(), data_dir = %settings.data_dir.display(), "ferryd running");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ferryd: node id {node_id}");
        let _ = writeln!(out, "{LISTENING_PREFIX}{addr}");
        let _ = out.flush();
    }

    let mut controller = ShutdownController::new();
    tokio::spawn(Arc::clone(&daemon).run_timer(controller.handle()));

    let app = api::router(AppState { daemon: Arc::clone(&daemon), shutdown: controller.handle() })
        .merge(crate::apps::api::router(Arc::clone(&apps)))
        .merge(crate::security::api::router(Arc::clone(&security)))
        .merge(crate::metrics::router(Arc::clone(&daemon), Arc::clone(&apps)))
        .merge(crate::events::router())
        .merge(crate::ui::router(
            match &settings.router {
                ferry_core::router::RouterSpec::Cgr(plan) => Some(Arc::clone(plan)),
                _ => None,
            },
            node_id.clone(),
        ));
    let app = match token {
        Some(token) => crate::auth::require(app, token),
        None => app,
    };
    // Outermost, so that refusals (401) are counted too.
    let app = app.layer(axum::middleware::map_response(|r: axum::response::Response| async move {
        crate::metrics::METRICS.api_request(r.status());
        r
    }));
    let mut server_stop = controller.handle();
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { server_stop.recv().await });
    let mut server = Box::pin(server.into_future());

    tokio::select! {
        r = &mut server => {
            // The server stopped by itself: an accept error.
            r.map_err(ServerError::Serve)?;
        }
        _ = stop => {
            tracing::info!("shutting down: no new connections; finishing requests in flight");
            controller.trigger();
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(r) => r.map_err(ServerError::Serve)?,
                Err(_) => tracing::warn!("requests still running after {SHUTDOWN_GRACE:?}; going on"),
            }
        }
    }
    // Dropping the server drops its shutdown handle (and any connection it
    // could not finish).
    drop(server);
    if !controller.wait(SHUTDOWN_GRACE).await {
        tracing::warn!("websocket sessions or tasks still running after {SHUTDOWN_GRACE:?}; flushing anyway");
    }
    // Apps finish the call they are in (bounded by their time budgets).
    let stopping = Arc::clone(&apps);
    let _ = tokio::task::spawn_blocking(move || stopping.shutdown()).await;
    // Plugins stop on a blocking thread: they end their sessions politely
    // and settle every transmission before returning.
    let stopping = Arc::clone(&clas);
    let _ = tokio::task::spawn_blocking(move || stopping.stop()).await;
    daemon.close().await?;
    tracing::info!("store flushed; ferryd stopped");
    Ok(())
}
