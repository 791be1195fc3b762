//! One TCPCLv4 session over one TCP connection: the I/O around
//! [`tcpcl::Session`].
//!
//! The task owns the socket and the session. Each turn of its loop waits for
//! one of: bytes from the peer, room in the socket for the pending output, a
//! command (transmit, verdict), the session's next deadline, or the
//! plugin's shutdown; feeds it to the session; then handles every event and
//! refills the output. Output is written as produced by
//! [`tcpcl::Session::transmit_into`]: a batch of whole messages, one `write`
//! per batch while the socket takes it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_cla_abi::{Outcome, PeerUp, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::plugin::{Cmd, Pending, Shared};
use crate::tcpcl::{self, CommandError, Event, FailReason, RefuseReason, SessTermReason, SessionError, TransferId};
use crate::tls::TlsLayer;

/// How a connection ended, for its dialer.
#[derive(Debug, Default)]
pub(crate) struct ConnEnd {
    /// The peer's node ID, if the session got that far.
    pub(crate) peer_node_id: Option<String>,
    /// Whether the host was told the peer was up.
    pub(crate) was_up: bool,
}

/// Time allowed to flush the last output once the session is closed.
const FINAL_FLUSH: Duration = Duration::from_secs(1);
/// Input read per call.
const READ_CHUNK: usize = 64 * 1024;

/// Runs one TCPCL session to its end. `url_node_id` is the node ID a peer URL
/// named, used when the peer discloses none.
pub(crate) async fn run(shared: Arc<Shared>, stream: TcpStream, active: bool, url_node_id: Option<String>) -> ConnEnd {
    let remote = match stream.peer_addr() {
        Ok(a) => a,
        Err(e) => {
            shared.host.debug(&format!("tcpcl: connection gone before it started: {e}"));
            return ConnEnd::default();
        }
    };
    if let Err(e) = stream.set_nodelay(true) {
        shared.host.debug(&format!("tcpcl {remote}: TCP_NODELAY: {e}"));
    }
    let config = shared.settings.session_config(&shared.node_id, active);
    let session = match tcpcl::Session::new(config, shared.now_ms()) {
        Ok(s) => s,
        Err(e) => {
            shared.host.error(&format!("tcpcl {remote}: cannot start a session: {e}"));
            return ConnEnd::default();
        }
    };
    let (handle, rx) = shared.register();
    let mut conn = Conn {
        shared,
        handle,
        remote,
        active,
        url_node_id,
        session,
        rx,
        pending: HashMap::new(),
        tokens: HashMap::new(),
        up: false,
        end: ConnEnd::default(),
        out: Vec::new(),
        off: 0,
        stopping: false,
        rx_closed: false,
        finished: false,
        tls: None,
        plain: Vec::new(),
    };
    conn.drive(stream).await;
    conn.finish();
    std::mem::take(&mut conn.end)
}

struct Conn {
    shared: Arc<Shared>,
    handle: u64,
    remote: SocketAddr,
    active: bool,
    url_node_id: Option<String>,
    session: tcpcl::Session,
    rx: mpsc::UnboundedReceiver<Cmd>,
    /// Our transfers: session transfer ID → the host's transmit.
    pending: HashMap<u64, Pending>,
    /// Received bundles awaiting the host's verdict: token → transfer.
    tokens: HashMap<u64, TransferId>,
    up: bool,
    end: ConnEnd,
    /// Output not yet written: `out[off..]`.
    out: Vec<u8>,
    off: usize,
    /// The plugin is stopping: SESS_TERM sent, waiting for the reply.
    stopping: bool,
    /// The command channel reported its end.
    rx_closed: bool,
    finished: bool,
    /// The TLS record layer, once both contact headers offered CAN_TLS.
    tls: Option<TlsLayer>,
    /// Scratch for plaintext on its way through `tls`.
    plain: Vec<u8>,
}

impl Conn {
    async fn drive(&mut self, stream: TcpStream) {
        let (mut rd, mut wr) = stream.into_split();
        let mut rbuf = vec![0u8; READ_CHUNK];
        let mut shutdown = self.shared.shutdown.clone();
        let mut grace_until: Option<tokio::time::Instant> = None;
        let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        if *shutdown.borrow_and_update() {
            return;
        }
        loop {
            self.process();
            if self.session.is_closed() {
                self.final_flush(&mut wr).await;
                return;
            }
            let deadline = self.session.poll_timeout().map(|ms| self.shared.instant(ms));
            let deadline = match (deadline, grace_until) {
                (Some(d), Some(g)) => Some(d.min(g)),
                (d, g) => d.or(g),
            };
            let deadline = deadline.unwrap_or_else(far);
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            let want_write = self.off < self.out.len();
            tokio::select! {
                // While received bundles wait for the host, the peer waits
                // too (TCP flow control) instead of filling our memory.
                r = rd.read(&mut rbuf), if self.session.wants_input() => match r {
                    Ok(0) => self.session.handle_connection_closed(),
                    Ok(n) => self.input(&rbuf[..n]),
                    Err(e) => {
                        self.shared.host.debug(&format!("tcpcl {}: read: {e}", self.remote));
                        self.session.handle_connection_closed();
                    }
                },
                w = wr.write(&self.out[self.off..]), if want_write => match w {
                    Ok(n) if n > 0 => self.off += n,
                    Ok(_) => self.session.handle_connection_closed(),
                    Err(e) => {
                        self.shared.host.debug(&format!("tcpcl {}: write: {e}", self.remote));
                        self.session.handle_connection_closed();
                    }
                },
                cmd = self.rx.recv(), if !self.rx_closed => match cmd {
                    Some(cmd) => self.command(cmd),
                    // The registry dropped us: only at shutdown.
                    None => {
                        self.rx_closed = true;
                        self.session.close(self.shared.now_ms(), SessTermReason::Unknown);
                    }
                },
                () = &mut sleep => {
                    if grace_until.is_some_and(|g| tokio::time::Instant::now() >= g) {
                        self.shared.host.debug(&format!("tcpcl {}: no SESS_TERM reply before shutdown", self.remote));
                        return;
                    }
                    self.session.handle_timeout(self.shared.now_ms());
                },
                r = shutdown.changed(), if !self.stopping => {
                    // An error means the plugin is gone: stop as well.
                    if r.is_err() || *shutdown.borrow_and_update() {
                        self.stopping = true;
                        grace_until = Some(tokio::time::Instant::now() + crate::plugin::STOP_GRACE);
                        self.session.close(self.shared.now_ms(), SessTermReason::Unknown);
                    }
                }
            }
        }
    }

    /// The session closed: write what is left (a SESS_TERM, a MSG_REJECT),
    /// briefly, then close the socket.
    async fn final_flush(&mut self, wr: &mut tokio::net::tcp::OwnedWriteHalf) {
        while self.fill_output(usize::MAX) > 0 {}
        if let Some(tls) = &mut self.tls {
            tls.close(&mut self.out);
        }
        if self.off < self.out.len() {
            let _ = tokio::time::timeout(FINAL_FLUSH, wr.write_all(&self.out[self.off..])).await;
        }
        let _ = tokio::time::timeout(FINAL_FLUSH, wr.shutdown()).await;
    }

    /// Handle the session's events, then refill the output.
    fn process(&mut self) {
        while let Some(event) = self.session.poll_event() {
            self.event(event);
        }
        if self.off >= self.out.len() {
            self.out.clear();
            self.off = 0;
            let batch = self.session.config().transmit_batch;
            self.fill_output(batch);
        }
    }

    /// Appends the session's next output, up to about `limit` plaintext
    /// octets, to `out`: as is, or through TLS once it runs. Returns the
    /// plaintext octets taken from the session.
    fn fill_output(&mut self, limit: usize) -> usize {
        let now = self.shared.now_ms();
        let Some(tls) = &mut self.tls else {
            return self.session.transmit_into(now, &mut self.out, limit);
        };
        let mut n = 0;
        // During the handshake the session (in its TLS phase) has nothing.
        if !tls.is_handshaking() {
            self.plain.clear();
            n = self.session.transmit_into(now, &mut self.plain, limit);
            tls.write_to_peer(&self.plain, &mut self.out);
        }
        tls.take_output(&mut self.out);
        n
    }

    /// Bytes from the socket: to the session, through TLS once it runs.
    fn input(&mut self, bytes: &[u8]) {
        let now = self.shared.now_ms();
        let Some(tls) = &mut self.tls else {
            self.session.handle_bytes(now, bytes);
            return;
        };
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        let result = tls.read_from_peer(bytes, &mut plain);
        // Handshake messages, or the alert that reports a failure.
        tls.take_output(&mut self.out);
        if let Err(e) = result {
            self.tls_failed(&e.to_string());
            return;
        }
        match tls.take_established() {
            None => {}
            Some(Ok(node_ids)) => {
                self.shared
                    .host
                    .debug(&format!("tcpcl {}: TLS established, certificate names {node_ids:?}", self.remote));
                if let Err(e) = self.session.tls_established(now, node_ids) {
                    self.shared.host.warn(&format!("tcpcl {}: {e}", self.remote));
                }
            }
            Some(Err(e)) => {
                self.tls_failed(&e.to_string());
                return;
            }
        }
        if !plain.is_empty() {
            self.session.handle_bytes(now, &plain);
        }
        self.plain = plain;
    }

    /// TLS cannot go on (the handshake failed, a record did not decrypt):
    /// the connection is unusable; the alert, if any, goes out first.
    fn tls_failed(&mut self, why: &str) {
        let msg = format!("tcpcl {}: {why}", self.remote);
        if self.stopping {
            self.shared.host.debug(&msg);
        } else {
            self.shared.host.warn(&msg);
        }
        self.session.handle_connection_closed();
    }

    /// Both contact headers offered CAN_TLS (RFC 9174 §4.4): our contact
    /// header goes out in plain, then the handshake starts.
    fn start_tls(&mut self, client: bool) {
        let Some(ctx) = self.shared.tls.as_ref() else {
            // can_tls is set only when the plugin has a TLS context.
            self.session.close(self.shared.now_ms(), SessTermReason::Unknown);
            return;
        };
        self.session.transmit_into(self.shared.now_ms(), &mut self.out, usize::MAX);
        match TlsLayer::new(ctx, client, self.remote.ip()) {
            Ok(mut tls) => {
                tls.take_output(&mut self.out);
                self.tls = Some(tls);
            }
            Err(e) => {
                self.tls_failed(&e.to_string());
                return;
            }
        }
        let early = self.session.take_unprocessed_input();
        if !early.is_empty() {
            self.input(&early);
        }
    }

    fn event(&mut self, event: Event) {
        let host = self.shared.host;
        match event {
            Event::StartTls { client } => self.start_tls(client),
            Event::Established { peer_node_id, peer_transfer_mru, keepalive, tls, .. } => {
                let node_id = peer_node_id.or_else(|| self.url_node_id.clone()).unwrap_or_default();
                self.end.peer_node_id = Some(node_id.clone());
                self.shared.mark_up(self.handle, &node_id, true);
                self.up = true;
                self.end.was_up = true;
                host.info(&format!(
                    "tcpcl {}: session with {} established ({}{}, keepalive {keepalive} s, peer transfer MRU {peer_transfer_mru})",
                    self.remote,
                    if node_id.is_empty() { "an undisclosed node" } else { &node_id },
                    if self.active { "active" } else { "passive" },
                    if tls { ", TLS" } else { "" },
                ));
                let address = format!("tcpcl://{}", self.remote);
                let respect = self.session.config().respect_peer_transfer_mru;
                host.peer_up(
                    self.handle,
                    &PeerUp {
                        node_id: &node_id,
                        address: &address,
                        mtu: respect.then_some(peer_transfer_mru),
                        rate_bps: None,
                    },
                );
            }
            Event::BundleReceived { transfer_id, bundle } => {
                let token = self.shared.new_token(self.handle);
                self.tokens.insert(token, transfer_id);
                host.bundle_received(self.handle, &bundle, token);
            }
            Event::TransferAcked { transfer_id } => self.settle(transfer_id, Outcome::Sent),
            Event::TransferRefused { transfer_id, reason } => {
                let outcome = match reason {
                    // RFC 9174 §5.2.4: the peer already has it.
                    RefuseReason::Completed => Outcome::Sent,
                    // Temporary: the host may try again later.
                    RefuseReason::NoResources | RefuseReason::Retransmit | RefuseReason::SessionTerminating => {
                        Outcome::Failed
                    }
                    _ => Outcome::Refused,
                };
                host.debug(&format!("tcpcl {}: transfer {} refused: {reason:?}", self.remote, transfer_id.0));
                self.settle(transfer_id, outcome);
            }
            Event::TransferFailed { transfer_id, reason } => {
                let outcome = match reason {
                    FailReason::ExceedsPeerTransferMru => Outcome::Refused,
                    _ => Outcome::Failed,
                };
                self.settle(transfer_id, outcome);
            }
            Event::Terminated { reason, by_peer } => {
                let who = if by_peer { "peer" } else { "we" };
                host.debug(&format!("tcpcl {}: session terminating ({who}: {reason:?})", self.remote));
            }
            Event::ProtocolError(err) => {
                let quiet = self.stopping || matches!(err, SessionError::ConnectionLost);
                let msg = format!("tcpcl {}: {err}", self.remote);
                if quiet {
                    host.debug(&msg)
                } else {
                    host.warn(&msg)
                }
            }
            // Closed is seen through is_closed.
            _ => {}
        }
    }

    fn settle(&mut self, transfer_id: TransferId, outcome: Outcome) {
        if let Some(p) = self.pending.remove(&transfer_id.0) {
            p.settle(outcome);
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Transmit(pending, bundle) => match self.session.send_bundle(bundle) {
                Ok(id) => {
                    self.pending.insert(id.0, pending);
                }
                Err(err @ CommandError::ExceedsPeerTransferMru { .. }) => {
                    self.shared.host.debug(&format!("tcpcl {}: {err}", self.remote));
                    pending.settle(Outcome::Refused);
                }
                Err(_) => pending.settle(Outcome::Failed),
            },
            Cmd::Verdict(token, verdict) => {
                let Some(id) = self.tokens.remove(&token) else { return };
                let result = match verdict {
                    Verdict::Accepted => self.session.accept_transfer(id),
                    Verdict::Duplicate => self.session.refuse_transfer(id, RefuseReason::Completed),
                    Verdict::NoResources => self.session.refuse_transfer(id, RefuseReason::NoResources),
                    Verdict::Invalid => self.session.refuse_transfer(id, RefuseReason::NotAcceptable),
                };
                if let Err(e) = result {
                    self.shared.host.debug(&format!("tcpcl {}: verdict on transfer {}: {e}", self.remote, id.0));
                }
                self.session.resume_input(self.shared.now_ms());
            }
        }
    }

    /// Leave the registry, fail what is left, report the peer down. Runs
    /// once, also when the task is dropped mid-way (runtime shutdown).
    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.shared.unregister(self.handle, self.tokens.keys().copied());
        // Transmits that reached the channel but not the session.
        self.rx.close();
        while let Ok(cmd) = self.rx.try_recv() {
            drop(cmd);
        }
        // Dropping a Pending reports Failed.
        self.pending.clear();
        if self.up {
            self.up = false;
            self.shared.host.peer_down(self.handle);
            self.shared.host.info(&format!("tcpcl {}: session closed", self.remote));
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.finish();
    }
}
