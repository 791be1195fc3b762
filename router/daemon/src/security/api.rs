//! `/ferry/id` and `/ferry/trust` routes, for `ferry id` and `ferry trust`.
//!
//! | route | answer |
//! |-------|--------|
//! | `GET /ferry/id` | `{node_id, public_key, key_type: "ed25519"}` (key in base64) |
//! | `GET /ferry/trust` | `[{node, key, from}]`, `from` is `self`, `config` or `added` |
//! | `POST /ferry/trust/add?node=NODE&key=KEY` | 200 `Trusting NODE` once kept in the trust file; 400 bad node or key |
//! | `POST /ferry/trust/remove?node=NODE` | 200 `No longer trusting NODE`; 404 not added; 409 configured in the config file |

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::{encode_public_key, parse_public_key, parse_trusted_node, Security, SecurityError};

/// The routes, to merge into the API's router.
pub fn router(security: Arc<Security>) -> Router {
    Router::new()
        .route("/ferry/id", get(id))
        .route("/ferry/trust", get(list))
        .route("/ferry/trust/add", post(add))
        .route("/ferry/trust/remove", post(remove))
        .with_state(security)
}

type Params = Query<HashMap<String, String>>;

/// What `GET /ferry/id` answers.
#[derive(Debug, Serialize)]
pub struct NodeIdentity {
    pub node_id: String,
    pub public_key: String,
    pub key_type: &'static str,
}

async fn id(State(s): State<Arc<Security>>) -> Response {
    Json(NodeIdentity {
        node_id: s.node_id().to_string(),
        public_key: encode_public_key(&s.public_key()),
        key_type: "ed25519",
    })
    .into_response()
}

async fn list(State(s): State<Arc<Security>>) -> Response {
    Json(s.trust_list()).into_response()
}

fn param<'a>(q: &'a Params, key: &str) -> Result<&'a str, Response> {
    q.get(key).map(String::as_str).ok_or_else(|| (StatusCode::BAD_REQUEST, format!("missing ?{key}=")).into_response())
}

async fn add(State(s): State<Arc<Security>>, q: Params) -> Response {
    let (node, key) = match (param(&q, "node"), param(&q, "key")) {
        (Ok(n), Ok(k)) => (n, k),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let node = match parse_trusted_node(node) {
        Ok(n) => n,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let key = match parse_public_key(key) {
        Ok(k) => k,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let blocking = tokio::task::spawn_blocking(move || s.trust_add(node.clone(), key).map(|new| (node, new)));
    match blocking.await {
        Ok(Ok((node, true))) => (StatusCode::OK, format!("Trusting {node}")).into_response(),
        Ok(Ok((node, false))) => (StatusCode::OK, format!("Trusting {node} (its key replaced)")).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn remove(State(s): State<Arc<Security>>, q: Params) -> Response {
    let node = match param(&q, "node").map(parse_trusted_node) {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
        Err(r) => return r,
    };
    let n = node.clone();
    match tokio::task::spawn_blocking(move || s.trust_remove(&n)).await {
        Ok(Ok(true)) => (StatusCode::OK, format!("No longer trusting {node}")).into_response(),
        Ok(Ok(false)) => {
            (StatusCode::NOT_FOUND, format!("{node} has no key added with `ferry trust add`")).into_response()
        }
        Ok(Err(e @ SecurityError::Configured(_))) => (StatusCode::CONFLICT, e.to_string()).into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
