//! MTCP and STCP connections: bundles framed on a TCP stream with no
//! handshake and no acknowledgement.
//!
//! - Outgoing (a peer URL `mtcp://host:port/<node-id>`): the peer is reported
//!   up, with the node ID from the URL, as soon as TCP connects. A bundle is
//!   reported `Sent` once its last octet is written to the socket: nothing
//!   more can be known. A bundle written into a connection the peer has
//!   already closed is lost (ION's STCP has the same weakness).
//! - Incoming: these framings carry no node ID, so an accepted connection is
//!   never reported as a peer. Its bundles reach the host with peer handle
//!   0, which never names a peer. The host's verdict still comes back, and
//!   is ignored: there is nothing to acknowledge on the wire.
//!
//! Bytes received on an outgoing connection are decoded too and delivered
//! with that peer's handle.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_cla_abi::{Outcome, PeerUp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::conn::ConnEnd;
use crate::plugin::{Cmd, Pending, Shared};
use crate::{mtcp, stcp};

/// Which framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Mtcp,
    Stcp,
}

impl Framing {
    fn name(self) -> &'static str {
        match self {
            Framing::Mtcp => "mtcp",
            Framing::Stcp => "stcp",
        }
    }
}

enum Decoder {
    Mtcp(mtcp::Decoder),
    Stcp(stcp::Decoder),
}

impl Decoder {
    fn feed(&mut self, input: &[u8]) -> Result<(), String> {
        match self {
            Decoder::Mtcp(d) => d.feed(input).map_err(|e| e.to_string()),
            Decoder::Stcp(d) => d.feed(input).map_err(|e| e.to_string()),
        }
    }
    fn next_bundle(&mut self) -> Option<Vec<u8>> {
        match self {
            Decoder::Mtcp(d) => d.next_bundle(),
            Decoder::Stcp(d) => d.next_bundle(),
        }
    }
    fn is_between_frames(&self) -> bool {
        match self {
            Decoder::Mtcp(d) => d.is_between_frames(),
            Decoder::Stcp(d) => d.is_between_frames(),
        }
    }
}

/// Output gathered per write.
const BATCH: usize = 256 * 1024;

/// Runs one MTCP or STCP connection. `peer_node_id` is `Some` for outgoing
/// connections (the peer is reported up) and `None` for accepted ones.
pub(crate) async fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    framing: Framing,
    peer_node_id: Option<String>,
) -> ConnEnd {
    let Ok(remote) = stream.peer_addr() else { return ConnEnd::default() };
    let _ = stream.set_nodelay(true);
    let max = shared.settings.transfer_mru;
    let decoder = match framing {
        Framing::Mtcp => Decoder::Mtcp(mtcp::Decoder::new(max)),
        Framing::Stcp => Decoder::Stcp(stcp::Decoder::new(max)),
    };
    let mut conn = Framed {
        shared: shared.clone(),
        framing,
        remote,
        handle: None,
        up: false,
        decoder,
        queue: VecDeque::new(),
        frames: VecDeque::new(),
        out: Vec::new(),
        off: 0,
        finished: false,
    };
    let mut end = ConnEnd::default();
    let rx = if let Some(node_id) = peer_node_id {
        let (handle, rx) = shared.register();
        conn.handle = Some(handle);
        shared.mark_up(handle, &node_id, false);
        conn.up = true;
        end = ConnEnd { peer_node_id: Some(node_id.clone()), was_up: true };
        let address = format!("{}://{remote}", framing.name());
        shared.host.info(&format!("{address}: connected to {node_id}"));
        shared.host.peer_up(handle, &PeerUp { node_id: &node_id, address: &address, mtu: None, rate_bps: None });
        Some(rx)
    } else {
        shared.host.debug(&format!("{}://{remote}: accepted", framing.name()));
        None
    };
    conn.drive(stream, rx).await;
    conn.finish();
    end
}

struct Framed {
    shared: Arc<Shared>,
    framing: Framing,
    remote: SocketAddr,
    handle: Option<u64>,
    up: bool,
    decoder: Decoder,
    /// Bundles not yet framed.
    queue: VecDeque<(Pending, Arc<[u8]>)>,
    /// Bundles framed into `out`, with the offset just past their last octet.
    frames: VecDeque<(usize, Pending)>,
    out: Vec<u8>,
    off: usize,
    finished: bool,
}

impl Framed {
    async fn drive(&mut self, stream: TcpStream, mut rx: Option<tokio::sync::mpsc::UnboundedReceiver<Cmd>>) {
        let (mut rd, mut wr) = stream.into_split();
        let mut rbuf = vec![0u8; 64 * 1024];
        let mut shutdown = self.shared.shutdown.clone();
        if *shutdown.borrow_and_update() {
            return;
        }
        // ION's STCP sends a zero-length frame every 15 s; we send one every
        // keepalive interval on an idle outgoing STCP link.
        let keepalive = match (self.framing, self.shared.settings.keepalive_secs, self.up) {
            (Framing::Stcp, secs, true) if secs > 0 => Some(Duration::from_secs(secs.into())),
            _ => None,
        };
        let mut last_write = tokio::time::Instant::now();
        let far = Duration::from_secs(86_400);
        let name = self.framing.name();
        loop {
            self.refill();
            let want_write = self.off < self.out.len();
            let wake = last_write + keepalive.unwrap_or(far);
            tokio::select! {
                r = rd.read(&mut rbuf) => match r {
                    Ok(0) => {
                        if !self.decoder.is_between_frames() {
                            self.shared.host.warn(&format!("{name}://{}: connection closed mid-bundle", self.remote));
                        }
                        return;
                    }
                    Ok(n) => {
                        let fed = self.decoder.feed(&rbuf[..n]);
                        while let Some(bundle) = self.decoder.next_bundle() {
                            let token = self.shared.unrouted_token();
                            self.shared.host.bundle_received(self.handle.filter(|_| self.up).unwrap_or(0), &bundle, token);
                        }
                        if let Err(e) = fed {
                            self.shared.host.warn(&format!("{name}://{}: {e}; closing", self.remote));
                            return;
                        }
                    }
                    Err(e) => {
                        self.shared.host.debug(&format!("{name}://{}: read: {e}", self.remote));
                        return;
                    }
                },
                w = wr.write(&self.out[self.off..]), if want_write => match w {
                    Ok(n) if n > 0 => {
                        self.off += n;
                        last_write = tokio::time::Instant::now();
                        while self.frames.front().is_some_and(|(end, _)| *end <= self.off) {
                            if let Some((_, p)) = self.frames.pop_front() {
                                p.settle(Outcome::Sent);
                            }
                        }
                    }
                    Ok(_) => return,
                    Err(e) => {
                        self.shared.host.debug(&format!("{name}://{}: write: {e}", self.remote));
                        return;
                    }
                },
                cmd = async { match rx.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => match cmd {
                    Some(Cmd::Transmit(p, bundle)) => self.queue.push_back((p, bundle)),
                    Some(Cmd::Verdict(..)) => {}
                    None => return,
                },
                () = tokio::time::sleep_until(wake), if keepalive.is_some() && !want_write => {
                    stcp::encode_keepalive(&mut self.out);
                    last_write = tokio::time::Instant::now();
                },
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Frame queued bundles once the previous batch is written.
    fn refill(&mut self) {
        if self.off < self.out.len() {
            return;
        }
        self.out.clear();
        self.off = 0;
        while self.out.len() < BATCH {
            let Some((p, bundle)) = self.queue.pop_front() else { break };
            match self.framing {
                Framing::Mtcp => mtcp::encode(&bundle, &mut self.out),
                Framing::Stcp => {
                    if let Err(e) = stcp::encode(&bundle, &mut self.out) {
                        self.shared.host.debug(&format!("stcp://{}: {e}", self.remote));
                        p.settle(Outcome::Refused);
                        continue;
                    }
                }
            }
            self.frames.push_back((self.out.len(), p));
        }
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(handle) = self.handle {
            self.shared.unregister(handle, []);
        }
        // Dropping a Pending reports Failed: framed but not fully written, or
        // never framed.
        self.frames.clear();
        self.queue.clear();
        if self.up {
            self.up = false;
            if let Some(handle) = self.handle {
                self.shared.host.peer_down(handle);
            }
            self.shared.host.info(&format!("{}://{}: disconnected", self.framing.name(), self.remote));
        }
    }
}

impl Drop for Framed {
    fn drop(&mut self) {
        self.finish();
    }
}
