//! The status page, `GET /ui`: what the node holds, whom it talks to and
//! what went wrong, updating live. Plain HTML, CSS and JavaScript compiled
//! into ferryd (no CDN, no build step); it reads the API like any client:
//! `/status/info`, `/status/peers`, `/ferry/peers/traffic`, `/ferry/bundles`,
//! `/ferry/apps`, `/ferry/events/recent`, `/ferry/contacts`, and follows
//! `/ferry/events` (server-sent events) to refresh as things happen.
//!
//! With an API token (`allow_remote`), the browser cannot send it with
//! these requests: open the page through an SSH tunnel to the loopback API
//! instead.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use ferry_core::contact::ContactPlan;
use ferry_core::eid::Eid;
use serde::Serialize;

/// Contacts listed at most.
const MAX_CONTACTS: usize = 200;
/// Unix ms of the DTN epoch, 2000-01-01 UTC.
const DTN_EPOCH_UNIX_MS: u64 = 946_684_800_000;

/// A contact of the plan that involves this node, for the page.
#[derive(Debug, Serialize)]
struct ContactInfo {
    from: String,
    to: String,
    /// Unix ms.
    start_ms: u64,
    end_ms: u64,
    rate_bps: u64,
    owlt_ms: u64,
    /// `now` or `planned`.
    state: &'static str,
}

/// The contacts of `plan` from or to `node` that have not ended at `now`
/// (DTN ms), the current ones first, in start order; at most [`MAX_CONTACTS`].
fn upcoming(plan: &ContactPlan, node: &Eid, now: u64) -> Vec<ContactInfo> {
    plan.contacts()
        .iter()
        .filter(|c| (&c.from == node || &c.to == node) && c.end > now)
        .take(MAX_CONTACTS)
        .map(|c| ContactInfo {
            from: c.from.to_string(),
            to: c.to.to_string(),
            start_ms: c.start + DTN_EPOCH_UNIX_MS,
            end_ms: c.end + DTN_EPOCH_UNIX_MS,
            rate_bps: c.rate_bps,
            owlt_ms: c.owlt_ms,
            state: if c.start <= now { "now" } else { "planned" },
        })
        .collect()
}

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE: &str = include_str!("style.css");

/// The page and its assets; `/ferry/contacts` lists `plan`'s contacts of
/// `node` (an empty list without a contact plan).
pub fn router(plan: Option<Arc<ContactPlan>>, node: Eid) -> Router {
    Router::new()
        .route(
            "/ferry/contacts",
            get(move || {
                let plan = plan.clone();
                let node = node.clone();
                async move {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64)
                        .saturating_sub(DTN_EPOCH_UNIX_MS);
                    let list = plan.map(|p| upcoming(&p, &node, now)).unwrap_or_default();
                    axum::Json(list)
                }
            }),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_of_this_node_that_have_not_ended_current_first() {
        let text = "a contact +0 +100 1 2 1000\na contact +200 +300 2 1 500\na contact +0 +50 3 4 10\n\
                    a contact +400 +500 3 1 10\n";
        let plan = ContactPlan::parse_ion(text, "plan.txt", 0).unwrap();
        let me: Eid = "ipn:1.0".parse().unwrap();
        // At 150 s: the first contact is over, the other two with node 1 are ahead.
        let list = upcoming(&plan, &me, 150_000);
        let got: Vec<_> = list.iter().map(|c| (c.from.as_str(), c.to.as_str(), c.state)).collect();
        assert_eq!(got, [("ipn:2.0", "ipn:1.0", "planned"), ("ipn:3.0", "ipn:1.0", "planned")]);
        let list = upcoming(&plan, &me, 250_000);
        assert_eq!(list[0].state, "now");
        assert_eq!(list[0].start_ms, 200_000 + DTN_EPOCH_UNIX_MS);
    }
}
