//! The status page, `GET /ui`: what the node holds, whom it talks to and
//! what went wrong, updating live. Plain HTML, CSS and JavaScript compiled
//! into ferryd (no CDN, no build step); it reads the API like any client:
//! `/status/info`, `/status/peers`, `/ferry/peers/traffic`, `/ferry/bundles`,
//! `/ferry/apps`, `/ferry/events/recent`, and follows `/ferry/events`
//! (server-sent events) to refresh as things happen.
//!
//! With an API token (`allow_remote`), the browser cannot send it with
//! these requests: open the page through an SSH tunnel to the loopback API
//! instead.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

pub fn router() -> Router {
    Router::new()
        .route("/ui", get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response() }))
        .route(
            "/ui/app.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS).into_response() }),
        )
        .route(
            "/ui/style.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response() }),
        )
}
