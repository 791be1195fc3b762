//! What happened lately, for the status page (`/ui`): peers up and down,
//! deliveries, deletions with their reason, and the warnings of plugins
//! (a refused session, a bad file on a stick). The last [`RECENT`] are kept
//! (`GET /ferry/events/recent`); live subscribers get each as it happens
//! (`GET /ferry/events`, server-sent events).
//!
//! Also the traffic of each peer with a link up (`GET /ferry/peers/traffic`):
//! since when, bundles and bytes each way.
//!
//! One registry per process, like [`crate::metrics::METRICS`]. Bundles that
//! merely pass through (received, forwarded) are not events: at tens of
//! thousands a second they would drown the rest; their counts are in the
//! metrics.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::Stream;
use serde::Serialize;
use tokio::sync::broadcast;

/// Events kept for a page that just opened.
pub const RECENT: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Increases by one per event.
    pub seq: u64,
    /// Unix time, milliseconds.
    pub at_ms: u64,
    /// `peer_up`, `peer_down`, `delivered`, `deleted`, `warning`.
    pub kind: &'static str,
    pub text: String,
}

/// One peer's link, for the page.
#[derive(Debug, Clone, Serialize)]
pub struct PeerTraffic {
    pub node_id: String,
    pub cla: String,
    pub address: String,
    pub up_since_ms: u64,
    pub bundles_in: u64,
    pub bytes_in: u64,
    pub bundles_out: u64,
    pub bytes_out: u64,
}

pub struct Events {
    ring: Mutex<(u64, VecDeque<Event>)>,
    live: broadcast::Sender<Event>,
    peers: Mutex<BTreeMap<u64, PeerTraffic>>,
}

pub static EVENTS: LazyLock<Events> = LazyLock::new(|| Events {
    ring: Mutex::new((0, VecDeque::with_capacity(RECENT))),
    live: broadcast::channel(256).0,
    peers: Mutex::new(BTreeMap::new()),
});

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Events {
    pub fn publish(&self, kind: &'static str, text: impl Into<String>) {
        let event = {
            let mut ring = lock(&self.ring);
            ring.0 += 1;
            let e = Event { seq: ring.0, at_ms: now_ms(), kind, text: text.into() };
            if ring.1.len() == RECENT {
                ring.1.pop_front();
            }
            ring.1.push_back(e.clone());
            e
        };
        // No subscriber is no error.
        let _ = self.live.send(event);
    }

    pub fn recent(&self) -> Vec<Event> {
        lock(&self.ring).1.iter().cloned().collect()
    }

    pub fn peer_up(&self, peer: u64, node_id: &str, cla: &str, address: &str) {
        lock(&self.peers).insert(
            peer,
            PeerTraffic {
                node_id: node_id.to_owned(),
                cla: cla.to_owned(),
                address: address.to_owned(),
                up_since_ms: now_ms(),
                bundles_in: 0,
                bytes_in: 0,
                bundles_out: 0,
                bytes_out: 0,
            },
        );
        self.publish("peer_up", format!("{node_id} up over {cla} ({address})"));
    }

    pub fn peer_down(&self, peer: u64) {
        let gone = lock(&self.peers).remove(&peer);
        if let Some(p) = gone {
            self.publish(
                "peer_down",
                format!("{} down ({}; {} bundles in, {} out)", p.node_id, p.address, p.bundles_in, p.bundles_out),
            );
        }
    }

    pub fn traffic_in(&self, peer: u64, bytes: usize) {
        if let Some(p) = lock(&self.peers).get_mut(&peer) {
            p.bundles_in += 1;
            p.bytes_in += bytes as u64;
        }
    }

    pub fn traffic_out(&self, peer: u64, bytes: u64) {
        if let Some(p) = lock(&self.peers).get_mut(&peer) {
            p.bundles_out += 1;
            p.bytes_out += bytes;
        }
    }

    pub fn traffic(&self) -> Vec<PeerTraffic> {
        lock(&self.peers).values().cloned().collect()
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }
}

/// `GET /ferry/events` (live), `/ferry/events/recent`, `/ferry/peers/traffic`.
pub fn router() -> Router {
    Router::new()
        .route("/ferry/events", get(live))
        .route("/ferry/events/recent", get(|| async { json(&EVENTS.recent()) }))
        .route("/ferry/peers/traffic", get(|| async { json(&EVENTS.traffic()) }))
}

fn json<T: Serialize>(v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(s) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn live() -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = EVENTS.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => {
                    let data = serde_json::to_string(&e).unwrap_or_default();
                    return Some((Ok(SseEvent::default().event(e.kind).data(data)), rx));
                }
                // A slow page missed some: it refetches on the next one.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_latest_and_numbers_them() {
        let e = Events {
            ring: Mutex::new((0, VecDeque::new())),
            live: broadcast::channel(4).0,
            peers: Mutex::new(BTreeMap::new()),
        };
        let mut rx = e.subscribe();
        for i in 0..RECENT + 5 {
            e.publish("deleted", format!("b{i}"));
        }
        let r = e.recent();
        assert_eq!(r.len(), RECENT);
        assert_eq!((r[0].seq, r[0].text.as_str()), (6, "b5"));
        assert_eq!(r.last().map(|x| x.seq), Some(RECENT as u64 + 5));
        // A live subscriber that fell behind skips, then gets the newest.
        assert!(matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Lagged(_))));
        e.peer_up(7, "dtn://b/", "tcp", "tcpcl://127.0.0.1:1");
        e.traffic_in(7, 100);
        e.traffic_out(7, 50);
        e.traffic_out(8, 50); // a peer not up: nothing
        let t = e.traffic();
        assert_eq!((t.len(), t[0].bundles_in, t[0].bytes_out), (1, 1, 50));
        e.peer_down(7);
        assert!(e.traffic().is_empty());
        assert_eq!(e.recent().last().map(|x| x.kind), Some("peer_down"));
    }
}
