//! `/ferry/apps` routes, for `ferry apps`.
//!
//! | route | answer |
//! |-------|--------|
//! | `GET /ferry/apps` | `[{name, state, component, endpoints, delivered, failures, traps, restarts, set_aside, sent, ticks, memory_bytes, memory_cap, compile_ms, cold_start_ms, last_error}]` |
//! | `GET\|POST /ferry/apps/start?name=N` | 200 `Starting N`; 404 `no app named ...` |
//! | `GET\|POST /ferry/apps/stop?name=N` | 200 `Stopping N`; 404 |
//! | `GET /ferry/apps/logs?name=N[&lines=100]` | `[{unix_ms, level, message}]`, oldest first; 404 |

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::{AppError, AppHost};

/// The routes, to merge into the API's router.
pub fn router(host: Arc<AppHost>) -> Router {
    Router::new()
        .route("/ferry/apps", get(list))
        .route("/ferry/apps/start", get(start).post(start))
        .route("/ferry/apps/stop", get(stop).post(stop))
        .route("/ferry/apps/logs", get(logs))
        .with_state(host)
}

type Params = Query<HashMap<String, String>>;

fn error(e: AppError) -> Response {
    let status = match e {
        AppError::NoSuchApp(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, e.to_string()).into_response()
}

/// The `?name=` parameter; `None` answers 400.
fn name(q: &Params) -> Option<&str> {
    q.get("name").map(String::as_str)
}

fn missing_name() -> Response {
    (StatusCode::BAD_REQUEST, "missing ?name=APP").into_response()
}

async fn list(State(host): State<Arc<AppHost>>) -> Response {
    Json(host.list()).into_response()
}

async fn start(State(host): State<Arc<AppHost>>, q: Params) -> Response {
    control(&host, &q, "Starting", AppHost::start_app)
}

async fn stop(State(host): State<Arc<AppHost>>, q: Params) -> Response {
    control(&host, &q, "Stopping", AppHost::stop_app)
}

/// Starts or stops the app that `?name=` names.
fn control(host: &AppHost, q: &Params, doing: &str, op: fn(&AppHost, &str) -> Result<(), AppError>) -> Response {
    let Some(n) = name(q) else { return missing_name() };
    match op(host, n) {
        Ok(()) => format!("{doing} {n}").into_response(),
        Err(e) => error(e),
    }
}

async fn logs(State(host): State<Arc<AppHost>>, q: Params) -> Response {
    let Some(n) = name(&q) else { return missing_name() };
    let lines = match q.get("lines").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(l)) => l,
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "lines must be a number").into_response(),
    };
    match host.logs(n, lines) {
        Ok(l) => Json(l).into_response(),
        Err(e) => error(e),
    }
}
