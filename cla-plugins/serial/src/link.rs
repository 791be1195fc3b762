//! The link protocol as a sans-IO state machine: [`Link`].
//!
//! No file descriptors, threads or clocks: bytes read from the tty, the
//! host's requests and the time (milliseconds from any monotonic origin) go
//! in; bytes to write, events for the host and the next deadline come out.
//!
//! # Using a `Link`
//! - getters: [`Link::is_up`], [`Link::peer`], [`Link::nonce`];
//! - inputs (`handle_*`): [`Link::handle_open`] and [`Link::handle_closed`]
//!   (the device appeared or went away), [`Link::handle_bytes`] (what the tty
//!   returned), [`Link::handle_transmit`], [`Link::handle_verdict`],
//!   [`Link::handle_timeout`] (call it once [`Link::poll_timeout`] has passed);
//! - outputs (`poll_*`): after any input, drain [`Link::poll_event`], then
//!   write what [`Link::poll_transmit`] returns (ask for the next frame only
//!   when the previous one is written: the retransmission timer of a frame
//!   starts when it is handed out), then sleep until [`Link::poll_timeout`].
//!
//! # The protocol
//! **Handshake.** While no session is up the link sends HELLO every
//! `hello_interval_ms` with a fresh random nonce, the nonce it last heard
//! from the peer (`echo`) and its limits. A side is up once it has the
//! peer's HELLO and that HELLO echoes its own current nonce. A HELLO without
//! the `up` flag is answered at once, so the exchange is HELLO, HELLO, HELLO
//! (`up`) when no frame is lost. A HELLO with a nonce other than the one the
//! session was built on means the peer started over (it restarted, or it
//! declared the link down): the session ends here too.
//!
//! **Reliable stream.** DATA, RESULT and NOP frames carry a sequence number
//! (from 0 in every session, wrapping) and are delivered in order, exactly
//! once: a frame is taken only if its number is the next expected one.
//! Every frame carries a cumulative acknowledgement (the next number its
//! sender expects); a receiver with nothing to send answers with an ACK.
//! Up to `window` frames are in flight; the oldest one's timer runs from
//! when it was handed out. A frame ahead of the expected one means a frame
//! was lost: the receiver sends one NAK per gap and the sender goes back to
//! its oldest unacknowledged frame at once (go-back-N) instead of waiting
//! for the timer. After `max_retries` timeouts without progress the link is
//! down. An idle session sends a NOP every `keepalive_ms`, so a vanished
//! peer is noticed the same way. Frames whose nonce is not the session's are
//! ignored, so a retransmission from a previous session can not be taken
//! for a new one.
//!
//! **Bundles.** A bundle is one transfer: DATA segments with a transfer
//! number, the first carrying the total length (checked against
//! `max_bundle` before anything is buffered), the last flagged END. The
//! receiver hands the reassembled bundle to the host with a token and sends
//! RESULT (itself a sequenced frame) only when the host's verdict arrives:
//! the sender reports `Sent` only for an `Accepted` or `Duplicate` result,
//! that is, once the bundle is durable on the other side. Up to
//! `max_transfers` bundles may await their RESULT. When the session ends,
//! everything not yet answered is reported `Failed` (the host sends it again
//! later; if the receiver had already stored it, its host answers
//! `Duplicate` and the sender counts it as sent).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ferry_cla_abi::{Outcome, Verdict};
use ferry_cla_kiss::{self as kiss, DropReason};

use crate::wire::{
    Body, Data, Frame, FrameError, Hello, ResultCode, CRC_LEN, DATA_HEADER_LEN, HEADER_LEN, MAX_NODE_ID_LEN,
    MIN_MAX_FRAME, START_LEN, VERSION,
};

/// Log levels of [`Event::Log`] (the ABI's `LOG_*` values).
pub use ferry_cla_abi::{LOG_DEBUG, LOG_INFO, LOG_WARN};

/// How often a summary of dropped frames may be logged.
const DROP_REPORT_MS: u64 = 5_000;
/// Bytes a bundle's reassembly buffer reserves up front at most; it grows
/// as segments arrive, so a declared length costs nothing until it is sent.
const MAX_PREALLOCATION: usize = 64 * 1024;

/// What a link is configured with; see the [settings](crate#settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our node ID, sent in HELLO (at most [`MAX_NODE_ID_LEN`] bytes).
    pub node_id: String,
    /// The largest frame we send or accept (unescaped, header to CRC).
    pub max_frame: usize,
    /// The largest bundle we accept.
    pub max_bundle: u64,
    /// Sequenced frames in flight before an acknowledgement.
    pub window: usize,
    /// Bundles sent and awaiting their RESULT; bundles received and awaiting
    /// the host's verdict.
    pub max_transfers: usize,
    /// The base retransmission timeout; the line time of two windows is added.
    pub ack_timeout_ms: u64,
    /// Timeouts without progress before the link is declared down.
    pub max_retries: u32,
    pub hello_interval_ms: u64,
    pub keepalive_ms: u64,
    /// Line speed in bits per second (8N1: ten bits per byte).
    pub baud: u32,
    /// Seeds the nonces (any value; a fresh random one in the plugin).
    pub seed: u64,
}

/// A `Config` the link can not work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("node ID is longer than {MAX_NODE_ID_LEN} bytes")]
    NodeIdTooLong,
    #[error("max_frame must be at least {MIN_MAX_FRAME}")]
    FrameTooSmall,
    #[error("window, max_transfers and baud must be at least 1")]
    Zero,
}

impl Config {
    /// Defaults for everything but the node ID.
    pub fn new(node_id: &str) -> Config {
        Config {
            node_id: node_id.to_owned(),
            max_frame: 1024,
            max_bundle: 16 << 20,
            window: 8,
            max_transfers: 8,
            ack_timeout_ms: 1000,
            max_retries: 8,
            hello_interval_ms: 1000,
            keepalive_ms: 5000,
            baud: 115_200,
            seed: 0,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.node_id.len() > MAX_NODE_ID_LEN {
            return Err(ConfigError::NodeIdTooLong);
        }
        if self.max_frame < MIN_MAX_FRAME {
            return Err(ConfigError::FrameTooSmall);
        }
        if self.window == 0 || self.max_transfers == 0 || self.baud == 0 {
            return Err(ConfigError::Zero);
        }
        Ok(())
    }

    /// The retransmission timeout: the base plus the time the line needs
    /// for two full windows (ours ahead of the frame, the peer's ahead of its
    /// acknowledgement) and a few KiB of kernel buffers, each byte escaped
    /// at worst (two bytes on the wire), ten bits per byte.
    pub fn rto_ms(&self) -> u64 {
        let bytes = (2 * self.window * self.max_frame + 8192) as u64 * 2;
        self.ack_timeout_ms.saturating_add(bytes.saturating_mul(10_000) / u64::from(self.baud.max(1)))
    }
}

/// What the peer told us in its HELLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node_id: String,
    pub max_frame: usize,
    pub max_bundle: u64,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// `max_retries` timeouts without an acknowledgement.
    NoAcknowledgement { retries: u32 },
    /// The peer started a new session.
    PeerRestarted,
    /// The device went away ([`Link::handle_closed`]).
    DeviceClosed,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::NoAcknowledgement { retries } => {
                write!(f, "no acknowledgement after {retries} retransmissions")
            }
            DownReason::PeerRestarted => f.write_str("the peer started a new session"),
            DownReason::DeviceClosed => f.write_str("the device was closed"),
        }
    }
}

/// What the link tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A session is up.
    Up(Peer),
    /// The session ended.
    Down(DownReason),
    /// A whole bundle arrived; answer with [`Link::handle_verdict`].
    Received { token: u64, bundle: Vec<u8> },
    /// The end of a [`Link::handle_transmit`] (exactly one per call).
    Done { transmit: u64, outcome: Outcome },
    /// A line for the host's log (`LOG_*` level).
    Log { level: i32, msg: String },
}

/// A sequenced message waiting for, or in, the window.
#[derive(Debug, Clone)]
enum Message {
    Data { bundle: Arc<[u8]>, transfer: u32, start: usize, end: usize },
    Result { transfer: u32, code: ResultCode },
    Nop,
}

#[derive(Debug)]
struct InFlight {
    seq: u32,
    msg: Message,
}

/// A bundle being segmented.
struct Segmenting {
    transfer: u32,
    bundle: Arc<[u8]>,
    offset: usize,
}

/// The receiver's state for the transfer in progress.
enum Reassembly {
    Receiving {
        transfer: u32,
        total: usize,
        buf: Vec<u8>,
    },
    /// Refused at its start (already answered): its segments are skipped.
    Skipping {
        transfer: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No device.
    Closed,
    Handshake,
    Up,
}

/// Counts of frames dropped since the last summary.
#[derive(Default)]
struct Drops {
    count: u64,
    last: String,
}

/// One end of a serial link. See the [module documentation](self).
pub struct Link {
    config: Config,
    rto_ms: u64,
    rng: u64,
    phase: Phase,
    decoder: kiss::Decoder,

    // Session.
    nonce: u32,
    peer_nonce: Option<u32>,
    peer: Option<Peer>,
    /// Send a HELLO at this time (handshake) or now (answer).
    hello_at: Option<u64>,

    // Sending side of the stream.
    next_seq: u32,
    in_flight: VecDeque<InFlight>,
    /// Index into `in_flight` of the next frame to hand out.
    next_out: usize,
    rto_at: Option<u64>,
    retries: u32,
    /// The base at which a NAK last sent us back (one go-back per gap).
    recovered_at: Option<u32>,
    results: VecDeque<(u32, ResultCode)>,
    queue: VecDeque<(u64, Arc<[u8]>)>,
    segmenting: Option<Segmenting>,
    /// Transfer number → transmit ID, from its first segment to its RESULT.
    awaiting: HashMap<u32, u64>,
    next_transfer: u32,
    keepalive_at: Option<u64>,

    // Receiving side of the stream.
    expected: u32,
    ack_due: bool,
    /// A gap was seen: ask the sender to go back (once per gap).
    nak_due: bool,
    nak_sent_for: Option<u32>,
    reassembly: Option<Reassembly>,
    /// Token → transfer number, until the host's verdict.
    verdicts: HashMap<u64, u32>,
    next_token: u64,

    events: VecDeque<Event>,
    drops: Drops,
    last_drop_report: Option<u64>,
    drop_report_at: Option<u64>,
    version_warned: bool,
}

impl Link {
    pub fn new(config: Config) -> Result<Link, ConfigError> {
        config.check()?;
        let decoder = kiss::Decoder::new(config.max_frame + 1);
        Ok(Link {
            rto_ms: config.rto_ms(),
            rng: config.seed ^ 0x6a09_e667_f3bc_c908,
            config,
            phase: Phase::Closed,
            decoder,
            nonce: 0,
            peer_nonce: None,
            peer: None,
            hello_at: None,
            next_seq: 0,
            in_flight: VecDeque::new(),
            next_out: 0,
            rto_at: None,
            retries: 0,
            recovered_at: None,
            results: VecDeque::new(),
            queue: VecDeque::new(),
            segmenting: None,
            awaiting: HashMap::new(),
            next_transfer: 0,
            keepalive_at: None,
            expected: 0,
            ack_due: false,
            nak_due: false,
            nak_sent_for: None,
            reassembly: None,
            verdicts: HashMap::new(),
            next_token: 1,
            events: VecDeque::new(),
            drops: Drops::default(),
            last_drop_report: None,
            drop_report_at: None,
            version_warned: false,
        })
    }

    // ----- getters -------------------------------------------------------------

    pub fn is_up(&self) -> bool {
        self.phase == Phase::Up
    }

    /// The peer of the session that is up.
    pub fn peer(&self) -> Option<&Peer> {
        self.peer.as_ref().filter(|_| self.is_up())
    }

    /// Our nonce for the current session attempt (0 while closed).
    pub fn nonce(&self) -> u32 {
        self.nonce
    }

    // ----- inputs --------------------------------------------------------------

    /// The device is open: start a handshake.
    pub fn handle_open(&mut self, now: u64) {
        if self.phase == Phase::Closed {
            self.decoder = kiss::Decoder::new(self.config.max_frame + 1);
            self.new_session(now);
        }
    }

    /// The device went away: the session (if any) ends, everything in flight fails.
    pub fn handle_closed(&mut self, now: u64) {
        if self.phase != Phase::Closed {
            self.end_session(now, DownReason::DeviceClosed);
            self.phase = Phase::Closed;
            self.hello_at = None;
            self.nonce = 0;
        }
    }

    /// Bytes read from the device.
    pub fn handle_bytes(&mut self, now: u64, bytes: &[u8]) {
        if self.phase == Phase::Closed {
            return;
        }
        let mut decoder = std::mem::replace(&mut self.decoder, kiss::Decoder::new(0));
        decoder.feed(bytes, |event| match event {
            kiss::Event::Frame { command, data } => self.handle_frame(now, command, data),
            kiss::Event::Dropped(reason) => self.dropped(now, &DropDetail::Kiss(reason)),
        });
        self.decoder = decoder;
        self.pump(now);
    }

    /// Queues a bundle. Exactly one [`Event::Done`] for `transmit` follows.
    pub fn handle_transmit(&mut self, now: u64, transmit: u64, bundle: Arc<[u8]>) {
        let Some(peer) = self.peer() else {
            self.done(transmit, Outcome::Failed);
            return;
        };
        if bundle.len() as u64 > peer.max_bundle {
            let msg = format!(
                "bundle of {} bytes refused: {} accepts at most {} bytes over this link",
                bundle.len(),
                peer.node_id,
                peer.max_bundle
            );
            self.log(LOG_WARN, msg);
            self.done(transmit, Outcome::Refused);
            return;
        }
        self.queue.push_back((transmit, bundle));
        self.pump(now);
    }

    /// The host's verdict on the bundle received with `token`.
    pub fn handle_verdict(&mut self, now: u64, token: u64, verdict: Verdict) {
        let Some(transfer) = self.verdicts.remove(&token) else {
            self.log(LOG_DEBUG, format!("verdict {verdict:?} for token {token}: its session is over"));
            return;
        };
        let code = match verdict {
            Verdict::Accepted => ResultCode::Accepted,
            Verdict::Duplicate => ResultCode::Duplicate,
            Verdict::NoResources => ResultCode::NoResources,
            Verdict::Invalid => ResultCode::Invalid,
        };
        self.results.push_back((transfer, code));
        self.pump(now);
    }

    /// Time passed: retransmissions, HELLOs, keepalives, log summaries.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.drop_report_at.is_some_and(|t| t <= now) {
            self.report_drops(now);
        }
        if self.phase == Phase::Up && self.rto_at.is_some_and(|t| t <= now) {
            self.retries += 1;
            if self.retries > self.config.max_retries {
                let retries = self.config.max_retries;
                self.end_session(now, DownReason::NoAcknowledgement { retries });
                return;
            }
            self.log(
                LOG_DEBUG,
                format!("no acknowledgement in {} ms: resending from frame {}", self.rto_ms, self.base()),
            );
            self.next_out = 0;
            self.rto_at = None;
        }
        if self.phase == Phase::Up && self.keepalive_at.is_some_and(|t| t <= now) && self.in_flight.is_empty() {
            self.keepalive_at = None;
            self.push_message(Message::Nop);
        }
        self.pump(now);
    }

    // ----- outputs -------------------------------------------------------------

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next frame to write (KISS-encoded), if any is due at `now`.
    pub fn poll_transmit(&mut self, now: u64) -> Option<Vec<u8>> {
        match self.phase {
            Phase::Closed => return None,
            Phase::Handshake | Phase::Up => {}
        }
        if self.hello_at.is_some_and(|t| t <= now) {
            self.hello_at =
                if self.phase == Phase::Handshake { Some(now + self.config.hello_interval_ms) } else { None };
            return Some(self.hello_frame());
        }
        if self.phase != Phase::Up {
            return None;
        }
        if self.nak_due {
            // Before our own frames: it is small and stops the peer's timer wait.
            self.nak_due = false;
            self.ack_due = false;
            return Some(self.control(Body::Nak));
        }
        if let Some(f) = self.in_flight.get(self.next_out) {
            let (seq, msg) = (f.seq, f.msg.clone());
            self.next_out += 1;
            self.ack_due = false;
            if self.rto_at.is_none() {
                self.rto_at = Some(now + self.rto_ms);
            }
            self.keepalive_at = None;
            return Some(self.encode(seq, &msg));
        }
        if self.ack_due {
            self.ack_due = false;
            return Some(self.control(Body::Ack));
        }
        None
    }

    /// When [`Link::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<u64> {
        [self.hello_at, self.rto_at, self.keepalive_at.filter(|_| self.in_flight.is_empty()), self.drop_report_at]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- the session ---------------------------------------------------------

    fn random(&mut self) -> u64 {
        // splitmix64: the nonces only need to differ between sessions.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn new_session(&mut self, now: u64) {
        let mut nonce = 0;
        while nonce == 0 || nonce == self.nonce {
            nonce = self.random() as u32;
        }
        self.nonce = nonce;
        self.phase = Phase::Handshake;
        self.peer_nonce = None;
        self.peer = None;
        self.hello_at = Some(now);
        self.next_seq = 0;
        self.expected = 0;
        self.next_transfer = 0;
        self.ack_due = false;
        self.nak_due = false;
        self.nak_sent_for = None;
        self.recovered_at = None;
        self.retries = 0;
        self.rto_at = None;
        self.keepalive_at = None;
    }

    /// Ends the session (reporting `Down` if it was up) and starts a new handshake.
    fn end_session(&mut self, now: u64, reason: DownReason) {
        if self.phase == Phase::Up {
            let who = self.peer.as_ref().map(|p| p.node_id.clone()).unwrap_or_default();
            self.log(LOG_INFO, format!("link to {who} down: {reason}"));
            self.events.push_back(Event::Down(reason));
        }
        let mut failed: Vec<u64> = self.queue.drain(..).map(|(id, _)| id).collect();
        let mut awaiting: Vec<(u32, u64)> = self.awaiting.drain().collect();
        awaiting.sort_unstable();
        failed.splice(0..0, awaiting.into_iter().map(|(_, id)| id));
        for id in failed {
            self.done(id, Outcome::Failed);
        }
        self.segmenting = None;
        self.in_flight.clear();
        self.next_out = 0;
        self.results.clear();
        self.reassembly = None;
        // Verdicts still to come find no session: the bundles are with the
        // host already, and its sender will hear `Duplicate` next time.
        self.verdicts.clear();
        self.new_session(now);
    }

    fn handle_hello(&mut self, now: u64, nonce: u32, h: Hello<'_>) {
        if h.version != VERSION {
            if !self.version_warned {
                self.version_warned = true;
                self.log(
                    LOG_WARN,
                    format!("peer speaks serial link protocol version {}, this plugin version {VERSION}", h.version),
                );
            }
            return;
        }
        let max_frame = usize::try_from(h.max_frame).unwrap_or(usize::MAX);
        if max_frame < MIN_MAX_FRAME || h.node_id.is_empty() {
            self.dropped(now, &DropDetail::Hello(format!("max_frame {max_frame}, node ID {:?}", h.node_id)));
            return;
        }
        if self.peer_nonce.is_some_and(|n| n != nonce) {
            if self.phase == Phase::Up {
                self.end_session(now, DownReason::PeerRestarted);
            }
            self.peer_nonce = None;
        }
        if self.peer_nonce.is_none() {
            self.peer_nonce = Some(nonce);
            self.peer = Some(Peer { node_id: h.node_id.to_owned(), max_frame, max_bundle: h.max_bundle });
        }
        if self.phase == Phase::Handshake && h.echo == self.nonce {
            self.phase = Phase::Up;
            self.hello_at = None;
            self.keepalive_at = Some(now + self.config.keepalive_ms);
            if let Some(peer) = self.peer.clone() {
                self.log(LOG_INFO, format!("link to {} up", peer.node_id));
                self.events.push_back(Event::Up(peer));
            }
        }
        if !h.up {
            // The peer is not up with our current nonce: tell it.
            self.hello_at = Some(now);
        }
    }

    // ----- receiving ------------------------------------------------------------

    fn handle_frame(&mut self, now: u64, command: u8, data: &[u8]) {
        if command != kiss::CMD_DATA {
            self.dropped(now, &DropDetail::Command(command));
            return;
        }
        let frame = match Frame::parse(data) {
            Ok(f) => f,
            Err(e) => {
                self.dropped(now, &DropDetail::Frame(e));
                return;
            }
        };
        if let Body::Hello(h) = frame.body {
            self.handle_hello(now, frame.nonce, h);
            return;
        }
        if self.phase != Phase::Up || self.peer_nonce != Some(frame.nonce) {
            // A frame of a session that is over, or not yet up.
            return;
        }
        self.handle_ack(now, frame.ack, matches!(frame.body, Body::Nak));
        if !frame.body.frame_type().is_sequenced() {
            return;
        }
        let ahead = frame.seq.wrapping_sub(self.expected) as i32;
        if ahead < 0 {
            // A retransmission of a frame we have: acknowledge again.
            self.ack_due = true;
            return;
        }
        if ahead > 0 {
            // A frame was lost before this one: one NAK per gap.
            if self.nak_sent_for != Some(self.expected) {
                self.nak_sent_for = Some(self.expected);
                self.nak_due = true;
            }
            return;
        }
        self.expected = self.expected.wrapping_add(1);
        self.nak_sent_for = None;
        self.nak_due = false;
        self.ack_due = true;
        match frame.body {
            Body::Data(d) => self.handle_data(d),
            Body::Result { transfer, code } => self.handle_result(transfer, code),
            Body::Nop | Body::Hello(_) | Body::Ack | Body::Nak => {}
        }
    }

    fn base(&self) -> u32 {
        self.in_flight.front().map_or(self.next_seq, |f| f.seq)
    }

    fn handle_ack(&mut self, now: u64, ack: u32, nak: bool) {
        // Frames in flight are base..next_seq; an ack outside base..=next_seq is stale.
        let acked = ack.wrapping_sub(self.base()) as usize;
        if acked > self.in_flight.len() {
            return;
        }
        if acked > 0 {
            self.in_flight.drain(..acked);
            self.next_out = self.next_out.saturating_sub(acked);
            self.retries = 0;
            self.rto_at = (self.next_out > 0).then_some(now + self.rto_ms);
            if self.in_flight.is_empty() {
                self.keepalive_at = Some(now + self.config.keepalive_ms);
            }
        }
        if nak && !self.in_flight.is_empty() && self.recovered_at != Some(ack) {
            self.recovered_at = Some(ack);
            self.next_out = 0;
            self.rto_at = None;
        }
    }

    fn handle_data(&mut self, d: Data<'_>) {
        if let Some(total) = d.start {
            if let Some(Reassembly::Receiving { transfer, .. }) = self.reassembly {
                self.violation(transfer, format!("transfer {} started before transfer {transfer} ended", d.transfer));
            }
            self.reassembly = None;
            let too_large = total > self.config.max_bundle;
            let total = usize::try_from(total).ok().filter(|_| !too_large);
            let Some(total) = total else {
                self.log(
                    LOG_WARN,
                    format!(
                        "refused a bundle of {} bytes from the peer: larger than max_bundle_size ({})",
                        d.start.unwrap_or_default(),
                        self.config.max_bundle
                    ),
                );
                self.refuse_transfer(d.transfer, ResultCode::TooLarge);
                return self.skip_rest(d);
            };
            if self.verdicts.len() >= self.config.max_transfers {
                self.log(
                    LOG_WARN,
                    format!(
                        "refused a bundle from the peer: {} bundles already await the host's verdict",
                        self.verdicts.len()
                    ),
                );
                self.refuse_transfer(d.transfer, ResultCode::NoResources);
                return self.skip_rest(d);
            }
            let buf = Vec::with_capacity(total.min(MAX_PREALLOCATION));
            self.reassembly = Some(Reassembly::Receiving { transfer: d.transfer, total, buf });
        }
        match self.reassembly.take() {
            Some(Reassembly::Skipping { transfer }) if transfer == d.transfer => self.skip_rest(d),
            Some(Reassembly::Receiving { transfer, total, mut buf }) if transfer == d.transfer => {
                if buf.len() + d.payload.len() > total {
                    return self.violation(transfer, format!("transfer {transfer} sent more than its {total} bytes"));
                }
                buf.extend_from_slice(d.payload);
                if !d.end {
                    self.reassembly = Some(Reassembly::Receiving { transfer, total, buf });
                } else if buf.len() != total {
                    self.violation(transfer, format!("transfer {transfer} ended at {} of {total} bytes", buf.len()));
                } else {
                    let token = self.next_token;
                    self.next_token += 1;
                    self.verdicts.insert(token, transfer);
                    self.events.push_back(Event::Received { token, bundle: buf });
                }
            }
            other => {
                let current = match &other {
                    Some(Reassembly::Receiving { transfer, .. }) => Some(*transfer),
                    _ => None,
                };
                self.log(LOG_WARN, format!("segment of transfer {} that never started: dropped", d.transfer));
                if let Some(transfer) = current {
                    self.violation(transfer, format!("transfer {transfer} interrupted by transfer {}", d.transfer));
                }
            }
        }
    }

    /// Keeps skipping a refused transfer's segments until its END.
    fn skip_rest(&mut self, d: Data<'_>) {
        self.reassembly = (!d.end).then_some(Reassembly::Skipping { transfer: d.transfer });
    }

    fn refuse_transfer(&mut self, transfer: u32, code: ResultCode) {
        self.results.push_back((transfer, code));
    }

    /// The peer broke the stream rules for `transfer`: drop it, answer Invalid.
    fn violation(&mut self, transfer: u32, msg: String) {
        self.log(LOG_WARN, format!("link protocol violation by the peer: {msg}; transfer refused"));
        self.reassembly = None;
        self.refuse_transfer(transfer, ResultCode::Invalid);
    }

    fn handle_result(&mut self, transfer: u32, code: ResultCode) {
        let Some(id) = self.awaiting.remove(&transfer) else {
            self.log(LOG_WARN, format!("RESULT {code:?} for transfer {transfer}, which is not awaiting one: ignored"));
            return;
        };
        let outcome = match code {
            ResultCode::Accepted | ResultCode::Duplicate => Outcome::Sent,
            ResultCode::NoResources => Outcome::Failed,
            ResultCode::Invalid | ResultCode::TooLarge => Outcome::Refused,
        };
        if outcome != Outcome::Sent {
            self.log(LOG_INFO, format!("the peer answered {code:?} to transfer {transfer}"));
        }
        self.done(id, outcome);
    }

    // ----- sending --------------------------------------------------------------

    /// Fills the window: RESULTs first, then segments of the current bundle,
    /// then a new bundle if fewer than `max_transfers` await their RESULT.
    fn pump(&mut self, _now: u64) {
        if self.phase != Phase::Up {
            return;
        }
        while self.in_flight.len() < self.config.window {
            if let Some((transfer, code)) = self.results.pop_front() {
                self.push_message(Message::Result { transfer, code });
                continue;
            }
            if self.segmenting.is_none() && self.awaiting.len() < self.config.max_transfers {
                if let Some((id, bundle)) = self.queue.pop_front() {
                    let transfer = self.next_transfer;
                    self.next_transfer = self.next_transfer.wrapping_add(1);
                    self.awaiting.insert(transfer, id);
                    self.segmenting = Some(Segmenting { transfer, bundle, offset: 0 });
                }
            }
            let Some(first) = self.segmenting.as_ref().map(|s| s.offset == 0) else { break };
            let room = self.payload_room(first);
            let Some(seg) = self.segmenting.as_mut() else { break };
            let start = seg.offset;
            let end = (start + room).min(seg.bundle.len());
            seg.offset = end;
            let msg = Message::Data { bundle: seg.bundle.clone(), transfer: seg.transfer, start, end };
            if end == seg.bundle.len() {
                self.segmenting = None;
            }
            self.push_message(msg);
        }
    }

    /// Payload bytes per DATA frame: the smaller of both sides' `max_frame`.
    fn payload_room(&self, first: bool) -> usize {
        let frame = self.peer.as_ref().map_or(self.config.max_frame, |p| p.max_frame.min(self.config.max_frame));
        frame - HEADER_LEN - DATA_HEADER_LEN - CRC_LEN - if first { START_LEN } else { 0 }
    }

    fn push_message(&mut self, msg: Message) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.in_flight.push_back(InFlight { seq, msg });
    }

    fn encode(&self, seq: u32, msg: &Message) -> Vec<u8> {
        let body = match msg {
            Message::Data { bundle, transfer, start, end } => Body::Data(Data {
                transfer: *transfer,
                start: (*start == 0).then_some(bundle.len() as u64),
                end: *end == bundle.len(),
                payload: &bundle[*start..*end],
            }),
            Message::Result { transfer, code } => Body::Result { transfer: *transfer, code: *code },
            Message::Nop => Body::Nop,
        };
        self.kiss(Frame { nonce: self.nonce, seq, ack: self.expected, body })
    }

    fn control(&self, body: Body<'_>) -> Vec<u8> {
        self.kiss(Frame { nonce: self.nonce, seq: 0, ack: self.expected, body })
    }

    fn hello_frame(&self) -> Vec<u8> {
        let hello = Hello {
            version: VERSION,
            up: self.phase == Phase::Up,
            echo: self.peer_nonce.unwrap_or(0),
            max_frame: u32::try_from(self.config.max_frame).unwrap_or(u32::MAX),
            max_bundle: self.config.max_bundle,
            node_id: &self.config.node_id,
        };
        self.kiss(Frame { nonce: self.nonce, seq: 0, ack: 0, body: Body::Hello(hello) })
    }

    fn kiss(&self, frame: Frame<'_>) -> Vec<u8> {
        let mut raw = Vec::with_capacity(frame.buffer_len());
        frame.emit(&mut raw);
        kiss::encode_to_vec(kiss::CMD_DATA, &raw)
    }

    // ----- events and logs ------------------------------------------------------

    fn done(&mut self, transmit: u64, outcome: Outcome) {
        self.events.push_back(Event::Done { transmit, outcome });
    }

    fn log(&mut self, level: i32, msg: String) {
        self.events.push_back(Event::Log { level, msg });
    }

    /// Counts a dropped frame; logs at most one summary per `DROP_REPORT_MS`.
    fn dropped(&mut self, now: u64, detail: &DropDetail) {
        self.drops.count += 1;
        self.drops.last = detail.to_string();
        let quiet = self.last_drop_report.is_none_or(|t| now >= t + DROP_REPORT_MS);
        if quiet {
            self.report_drops(now);
        } else if self.drop_report_at.is_none() {
            self.drop_report_at = self.last_drop_report.map(|t| t + DROP_REPORT_MS);
        }
    }

    fn report_drops(&mut self, now: u64) {
        self.drop_report_at = None;
        let drops = std::mem::take(&mut self.drops);
        if drops.count == 0 {
            return;
        }
        self.last_drop_report = Some(now);
        let msg = if drops.count == 1 {
            format!("dropped a frame from the line: {}", drops.last)
        } else {
            format!(
                "dropped {} frames from the line (line noise or a misconfigured peer); last: {}",
                drops.count, drops.last
            )
        };
        let hint = if self.phase == Phase::Handshake {
            " (no session is up: do both ends use the same baud rate?)"
        } else {
            ""
        };
        self.log(LOG_WARN, format!("{msg}{hint}"));
    }
}

/// Why a frame was dropped, for the log.
enum DropDetail {
    Kiss(DropReason),
    Command(u8),
    Frame(FrameError),
    Hello(String),
}

impl std::fmt::Display for DropDetail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DropDetail::Kiss(r) => write!(f, "{r}"),
            DropDetail::Command(c) => write!(f, "KISS command byte {c:#04x} (this link uses 0x00)"),
            DropDetail::Frame(e) => write!(f, "{e}"),
            DropDetail::Hello(what) => write!(f, "unusable HELLO ({what})"),
        }
    }
}

#[cfg(test)]
mod tests;
