//! Listeners, static peers and discovered peers: where connections come from.
//!
//! - Each listener has an accept task. Accepted connections beyond
//!   `max_connections` are closed at once.
//! - Each static peer (settings `peers`, or `connect`) has a dialer task: it
//!   connects, runs the connection until it ends, and reconnects after an
//!   exponential backoff (1 s doubling to 60 s, ±25 % jitter; back to 1 s
//!   after a session was established). A TCPCL dialer does not dial while a
//!   TCPCL session with the peer's node ID is up in either direction.
//! - A discovered peer gets one dial per beacon while no link to it is up;
//!   the next beacon is the retry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::conn::{self, ConnEnd};
use crate::framed::{self, Framing};
use crate::plugin::Shared;
use crate::settings::{PeerUrl, Scheme};

/// Time allowed for a TCP connect (name lookup included).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The bound listeners, before their tasks start.
pub(crate) struct Listeners(Vec<(Scheme, TcpListener)>);

/// Binds every configured listener; the error names the address.
pub(crate) fn bind_listeners(shared: &Shared) -> Result<Listeners, String> {
    let s = &shared.settings;
    let mut out = Vec::new();
    let all = s.listen.iter().map(|a| (Scheme::Tcpcl, a)).chain(s.mtcp_listen.iter().map(|a| (Scheme::Mtcp, a)));
    for (scheme, addr) in all.chain(s.stcp_listen.iter().map(|a| (Scheme::Stcp, a))) {
        let bind = || -> std::io::Result<TcpListener> {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        };
        let listener = bind().map_err(|e| format!("cannot listen for {} on {addr}: {e}", scheme.as_str()))?;
        out.push((scheme, listener));
    }
    Ok(Listeners(out))
}

/// Starts the accept tasks and records what beacons advertise.
pub(crate) fn spawn_listeners(shared: &Arc<Shared>, listeners: Listeners) {
    for (scheme, listener) in listeners.0 {
        let local = listener.local_addr().ok();
        if let Some(local) = local {
            shared.host.info(&format!("listening on {}://{local}", scheme.as_str()));
            // dtn7-rs's names for its agents: "tcp" is TCPCLv4.
            let name = match scheme {
                Scheme::Tcpcl => Some("tcp"),
                Scheme::Mtcp => Some("mtcp"),
                Scheme::Stcp => None,
            };
            if let Some(name) = name {
                let mut adv = crate::plugin::lock(&shared.advertised);
                if !adv.iter().any(|(n, _)| n == name) {
                    adv.push((name.to_owned(), Some(local.port())));
                }
            }
        }
        let s = shared.clone();
        shared.spawn(accept_loop(s, scheme, listener));
    }
}

async fn accept_loop(shared: Arc<Shared>, scheme: Scheme, listener: TcpListener) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: wait instead of spinning.
                shared.host.warn(&format!("{}: accept: {e}", scheme.as_str()));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = shared.conn_limit.clone().try_acquire_owned() else {
            shared.host.warn(&format!(
                "{}: refusing {remote}: {} connections already",
                scheme.as_str(),
                shared.settings.max_connections
            ));
            continue;
        };
        let s = shared.clone();
        shared.spawn(async move {
            match scheme {
                Scheme::Tcpcl => drop(conn::run(s, stream, false, None).await),
                Scheme::Mtcp => drop(framed::run(s, stream, Framing::Mtcp, None).await),
                Scheme::Stcp => drop(framed::run(s, stream, Framing::Stcp, None).await),
            }
            drop(permit);
        });
    }
}

/// Adds a static peer (once) and starts its dialer.
pub(crate) fn add_static_peer(shared: &Arc<Shared>, url: PeerUrl) {
    if !crate::plugin::lock(&shared.static_peers).insert(url.clone()) {
        return;
    }
    let s = shared.clone();
    shared.spawn(static_peer(s, url));
}

async fn static_peer(shared: Arc<Shared>, url: PeerUrl) {
    let mut shutdown = shared.shutdown.clone();
    let mut backoff = BACKOFF_MIN;
    let mut known_node_id = url.node_id.clone();
    let mut rng = Jitter::new(&url.to_string());
    let key = url.to_string();
    let mut failures = 0u32;
    loop {
        if shared.is_shutting_down() {
            return;
        }
        let mut wait = backoff;
        if url.scheme == Scheme::Tcpcl && known_node_id.as_deref().is_some_and(|n| shared.has_peer(n, true)) {
            // A TCPCL session with this node runs already (perhaps it dialed
            // us): look again in a second.
            wait = BACKOFF_MIN;
        } else if shared.claim_dial(&key) {
            let end = dial(&shared, &url).await;
            shared.release_dial(&key);
            match end {
                Ok(end) => {
                    failures = 0;
                    if let Some(n) = end.peer_node_id.filter(|n| !n.is_empty()) {
                        known_node_id = Some(n);
                    }
                    if end.was_up {
                        backoff = BACKOFF_MIN;
                        wait = BACKOFF_MIN;
                    }
                }
                Err(e) => {
                    failures += 1;
                    // Say it once, then quietly keep trying.
                    let msg = format!("{url}: {e}; retrying in about {} s", backoff.as_secs());
                    if failures == 1 {
                        shared.host.info(&msg);
                    } else {
                        shared.host.debug(&msg);
                    }
                }
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        let wait = rng.jitter(wait);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// A beacon announced `url` (its node ID known): dial once, unless a link
/// to it is up or a dial to it is under way.
///
/// Two nodes hearing each other's beacons would both dial, often at once.
/// The dial waits a random fraction of the beacon interval (at most 2 s) and
/// looks again first, so usually the first session established stops the
/// other dial. Should both still connect, both sessions are kept.
pub(crate) fn dial_discovered(shared: &Arc<Shared>, url: PeerUrl, node_id: &str) {
    if shared.has_peer(node_id, false) || crate::plugin::lock(&shared.static_peers).iter().any(|p| same_target(p, &url))
    {
        return;
    }
    let key = url.to_string();
    if !shared.claim_dial(&key) {
        return;
    }
    let s = shared.clone();
    let node_id = node_id.to_owned();
    let spread = Duration::from_millis((shared.settings.discovery.interval_secs * 500).min(2000));
    shared.spawn(async move {
        let mut shutdown = s.shutdown.clone();
        let wait = Jitter::new(&key).fraction(spread);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {
                s.release_dial(&key);
                return;
            }
        }
        if !s.has_peer(&node_id, false) {
            s.host.info(&format!("discovered {node_id} at {key}; connecting"));
            if let Err(e) = dial(&s, &url).await {
                s.host.debug(&format!("{url}: {e}"));
            }
        }
        s.release_dial(&key);
    });
}

fn same_target(a: &PeerUrl, b: &PeerUrl) -> bool {
    a.scheme == b.scheme && a.port == b.port && a.host == b.host
}

/// Connects to `url` and runs the connection until it ends.
async fn dial(shared: &Arc<Shared>, url: &PeerUrl) -> Result<ConnEnd, String> {
    let mut shutdown = shared.shutdown.clone();
    let authority = url.authority();
    let connect = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&authority).await?.collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    let stream = tokio::select! {
        r = tokio::time::timeout(CONNECT_TIMEOUT, connect) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("connect timed out".into()),
        },
        _ = shutdown.changed() => return Err("stopping".into()),
    };
    let s = shared.clone();
    Ok(match url.scheme {
        Scheme::Tcpcl => conn::run(s, stream, true, url.node_id.clone()).await,
        Scheme::Mtcp => framed::run(s, stream, Framing::Mtcp, url.node_id.clone()).await,
        Scheme::Stcp => framed::run(s, stream, Framing::Stcp, url.node_id.clone()).await,
    })
}

/// ±25 % jitter so that peers that lost each other do not redial in step.
struct Jitter(u64);

impl Jitter {
    fn new(seed: &str) -> Jitter {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let h = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Jitter((t ^ h) | 1)
    }

    fn next(&mut self) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `d` ± 25 %.
    fn jitter(&mut self, d: Duration) -> Duration {
        let permille = 750 + self.next() % 501;
        d * u32::try_from(permille).unwrap_or(1000) / 1000
    }

    /// A random part of `d`.
    fn fraction(&mut self, d: Duration) -> Duration {
        let permille = self.next() % 1001;
        d * u32::try_from(permille).unwrap_or(500) / 1000
    }
}
