//! Putting ferryd together: open the store, settle the node ID, start the
//! daemon, serve the API, and shut down in order.
//!
//! Shutdown (on the `stop` future: SIGINT/SIGTERM in ferryd) goes like
//! mini-redis's: stop accepting connections, let in-flight HTTP requests
//! finish, tell websocket sessions and the timer to stop and wait for them
//! (they finish the frames they were given and send the replies owed), then
//! flush and close the store.

use std::future::Future;
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
    let limits =
        ApiLimits { max_connections: settings.api_max_connections, header_timeout: settings.api_header_timeout };
    let server = serve_api(listener, app, limits, async move { server_stop.recv().await });
    let mut server = Box::pin(server);

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

/// How long an API connection may sit with nothing read or written once it
/// served a request (keep-alive): longer than HTTP clients keep idle pooled
/// connections (reqwest: 90 s), so none is closed under a client about to
/// reuse it. Websocket sessions are pinged more often (`ws::WS_PING_INTERVAL`).
const API_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// A connection of the API: it must send its first byte within
/// `first_byte` (hyper's header timer starts only then, so a connection that
/// sends nothing would hold its slot for ever) and is closed after
/// `idle` with no byte read or written.
struct Guarded {
    inner: tokio::net::TcpStream,
    /// Until the first byte arrives.
    first_byte: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    idle: Duration,
    idle_timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Guarded {
    fn new(inner: tokio::net::TcpStream, first_byte: Duration, idle: Duration) -> Guarded {
        Guarded {
            inner,
            first_byte: Some(Box::pin(tokio::time::sleep(first_byte))),
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn active(&mut self) {
        let at = tokio::time::Instant::now() + self.idle;
        self.idle_timer.as_mut().reset(at);
    }

    /// An error when a deadline passed (registering the waker otherwise).
    fn expired(&mut self, cx: &mut std::task::Context<'_>) -> Option<std::io::Error> {
        let first = self.first_byte.as_mut().is_some_and(|s| s.as_mut().poll(cx).is_ready());
        if first || self.idle_timer.as_mut().poll(cx).is_ready() {
            let what = if first { "no request within the header timeout" } else { "idle" };
            return Some(std::io::Error::new(std::io::ErrorKind::TimedOut, what));
        }
        None
    }
}

impl tokio::io::AsyncRead for Guarded {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut self.inner).poll_read(cx, buf) {
            std::task::Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.first_byte = None;
                    self.active();
                }
                std::task::Poll::Ready(Ok(()))
            }
            std::task::Poll::Pending => match self.expired(cx) {
                Some(e) => std::task::Poll::Ready(Err(e)),
                None => std::task::Poll::Pending,
            },
            other => other,
        }
    }
}

impl tokio::io::AsyncWrite for Guarded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if let std::task::Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.active();
            }
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.active();
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What the API's accept loop allows a client.
#[derive(Debug, Clone, Copy)]
struct ApiLimits {
    /// Connections served at once; further ones are closed as soon as they
    /// are accepted, so that a flood neither queues up nor takes descriptors.
    max_connections: usize,
    /// Time from a connection's (or a keep-alive request's) first byte to
    /// the end of its request headers: a slow-loris client is cut off.
    header_timeout: Duration,
}

/// Serves the API on `listener` until `stop` resolves, then lets the
/// requests in flight finish (the caller bounds how long). hyper's own
/// loop, not `axum::serve`, because only hyper's builder has a header
/// timer.
async fn serve_api(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: ApiLimits,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let mut last_refusal_log: Option<tokio::time::Instant> = None;
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, or the like: wait, then go on.
                    tracing::warn!(error = %e, "API: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if last_refusal_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(
                    %peer,
                    max_connections = limits.max_connections,
                    "API: connection limit reached; closing new connections ([api] max_connections)"
                );
                last_refusal_log = Some(tokio::time::Instant::now());
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(
            app.clone().map_request(|r: axum::http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new)),
        );
        let io = Guarded::new(stream, limits.header_timeout, API_IDLE_TIMEOUT);
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "API connection ended: {e}");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}
