//! [`Link`]: the LoRa convergence layer as a sans-IO state machine — the
//! neighbour table, the fragmenter and the reassembler with selective
//! retransmission, and the airtime/duty-cycle scheduler of one radio.
//!
//! It reads no clock, opens no device and spawns no thread (quinn-proto's
//! `Connection` is the model). Every method that depends on time takes `now`
//! in microseconds from any monotonic origin. Its methods, by group:
//!
//! - inputs: [`Link::handle_packet`] (a radio packet the modem received),
//!   [`Link::handle_transmit`] and [`Link::handle_verdict`] (the host's
//!   calls), [`Link::handle_timeout`], [`Link::close`];
//! - outputs, to poll in this order after every input:
//!   [`Link::poll_transmit`] until it returns `None` (the next radio packet,
//!   handed out only when the radio is idle and the duty-cycle budget has
//!   room), [`Link::poll_event`] until `None` (peers, received bundles,
//!   transmission outcomes, log lines), then [`Link::poll_timeout`] (when to
//!   call `handle_timeout` next).
//!
//! # The transfer protocol
//!
//! The sender cuts a bundle into DATA frames of [`MAX_CHUNK`] bytes (the
//! last one shorter) and sends them all; the last frame of a round carries
//! the POLL flag. The receiver answers a poll with an ACK: a bitmap of the
//! frames it holds. The sender then resends exactly the missing frames, the
//! last again with the poll flag, until the bitmap is full. When the last
//! frame arrives the receiver hands the bundle to its host and answers
//! polls with *pending*; only the host's verdict turns that into the final
//! ACK (*accepted*, *duplicate*, *invalid*, *no resources*), sent at once.
//! An ACK carries the state current when it goes on air, so a verdict that
//! arrives while the ACK waits for the radio is already in it.
//!
//! A lost poll or ACK is covered by the sender's timer: it sends a small
//! POLL frame after `ack_timeout` and gives up with `Failed` after
//! `max_retries` polls in a row without progress; the host tries again
//! later. The timer does not back off: on a radio link a lost ACK is noise,
//! not congestion, and waiting longer only wastes the link. While the
//! receiver answers *pending*, the sender polls ten times less often and
//! gives up after `max_retries` such answers (a store that never decides).
//! A receiver remembers finished transfers (`completed_ttl`) so a repeated
//! poll gets the same final answer and a retransmitted frame is not
//! delivered twice.
//!
//! Memory is bounded on both sides: `max_reassemblies` transfers and
//! `max_reassembly_bytes` (counted as frames × [`MAX_CHUNK`] from the first
//! frame on) at once, each dropped after `reassembly_timeout` of silence;
//! `max_queued` bundles per neighbour waiting to be sent; at most
//! [`MAX_NEIGHBOURS`] neighbours and [`MAX_COMPLETED`] finished transfers.
//!
//! # Neighbours
//!
//! LoRa is a broadcast medium: every frame reaches every neighbour in range.
//! Each node sends a HELLO (its short ID and node ID) every
//! `hello_interval`, and one soon after hearing a new neighbour so that
//! discovery is mutual within seconds. A neighbour is up from the first
//! HELLO heard and down after `peer_timeout` without hearing any frame from
//! it. DATA, POLL and ACK frames name their receiver; every other node
//! ignores them (and only notes that the sender is alive).

use std::collections::{HashMap, VecDeque};

use ferry_cla_abi::{Outcome, Verdict};

use crate::airtime::RadioParams;
use crate::duty::DutyCycle;
use crate::frame::{bitmap_len, short_id, AckStatus, Frame, FrameError, MAX_CHUNK, MAX_FRAMES, MAX_PACKET};

/// Most neighbours tracked at once; HELLOs from more are ignored.
pub const MAX_NEIGHBOURS: usize = 256;
/// Most finished transfers remembered for repeated polls.
pub const MAX_COMPLETED: usize = 1024;
/// Malformed packets of one kind are logged at most once per this (µs).
const BAD_PACKET_LOG_US: u64 = 60_000_000;
/// How much longer than `ack_timeout` to wait between polls while the
/// receiver's store is deciding.
const PENDING_POLL_FACTOR: u64 = 10;
/// The share of the duty-cycle budget DATA frames may use.
pub const DATA_SHARE: f64 = 0.9;

/// How the link behaves. Times are microseconds (of virtual radio time when
/// the driver scales its clock).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// SF, bandwidth, coding rate, preamble: decide every frame's airtime.
    pub radio: RadioParams,
    /// Duty cycle in percent (100 = no limit).
    pub duty_cycle_percent: f64,
    /// The sliding window the duty cycle is measured over.
    pub duty_window_us: u64,
    /// Between HELLOs.
    pub hello_interval_us: u64,
    /// Silence after which a neighbour is down.
    pub peer_timeout_us: u64,
    /// Wait for an ACK after a poll has gone out (first retry).
    pub ack_timeout_us: u64,
    /// Polls without progress before a transmission fails.
    pub max_retries: u32,
    /// Largest bundle sent or accepted (the MTU reported to the host).
    pub max_bundle: usize,
    /// Transfers being reassembled at once.
    pub max_reassemblies: usize,
    /// Bytes reserved by reassemblies at once.
    pub max_reassembly_bytes: usize,
    /// Silence after which a reassembly is dropped.
    pub reassembly_timeout_us: u64,
    /// How long finished transfers are remembered.
    pub completed_ttl_us: u64,
    /// Bundles queued per neighbour.
    pub max_queued: usize,
}

impl LinkConfig {
    /// Defaults derived from the radio and the duty cycle: HELLOs take at
    /// most a tenth of the budget, timers scale with the longest frame.
    pub fn new(radio: RadioParams, duty_cycle_percent: f64) -> LinkConfig {
        let max_air = radio.airtime_us(MAX_PACKET);
        let hello_air = radio.airtime_us(64);
        let fraction = (duty_cycle_percent / 100.0).clamp(1e-6, 1.0);
        let hello_interval_us = ((hello_air as f64 / (fraction * 0.1)) as u64).max(60_000_000);
        let duty_window_us = 3_600_000_000;
        // A sender whose data budget is spent pauses for up to a window: its
        // transfers (and the receiver's memory of them) must outlast that.
        let pause = if fraction < 1.0 { duty_window_us } else { 0 };
        LinkConfig {
            radio,
            duty_cycle_percent,
            duty_window_us,
            hello_interval_us,
            // Five HELLOs missed in a row: rare even at 50 % loss (3 %).
            peer_timeout_us: hello_interval_us.saturating_mul(5).saturating_add(max_air),
            // The receiver may be sending a full frame when the poll ends;
            // then its ACK (a bitmap for up to 256 frames); and 300 ms for
            // serial lines and modem queues.
            ack_timeout_us: max_air + radio.airtime_us(18 + 32) + 300_000,
            max_retries: 20,
            max_bundle: 64 * 1024,
            max_reassemblies: 8,
            max_reassembly_bytes: 512 * 1024,
            reassembly_timeout_us: hello_interval_us.saturating_mul(3).max(600_000_000) + pause,
            completed_ttl_us: 3_600_000_000 + 2 * pause,
            max_queued: 64,
        }
    }

    /// Bytes per second a neighbour can expect in the long run: full DATA
    /// frames, at most the duty cycle's share of the time (at least 1).
    pub fn rate_bps(&self) -> u64 {
        let air = self.radio.airtime_us(MAX_PACKET) as f64 / 1e6;
        let fraction = (self.duty_cycle_percent / 100.0).clamp(1e-9, 1.0);
        ((MAX_CHUNK as f64 / air * fraction) as u64).max(1)
    }
}

/// Log levels of [`Event::Log`] (the ABI's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Warn,
    Info,
    Debug,
}

/// What the link tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A neighbour was heard for the first time (or again after going down).
    PeerUp { peer: u64, node_id: String, rate_bps: u64, mtu: u64 },
    /// A neighbour fell silent.
    PeerDown { peer: u64 },
    /// A complete bundle from `peer` (0 if its HELLO was not heard yet);
    /// answer with `handle_verdict(token, ..)`.
    BundleReceived { peer: u64, token: u64, bundle: Vec<u8> },
    /// The end of a `handle_transmit`: exactly one per accepted transmit.
    TransmitDone { transmit: u64, outcome: Outcome },
    /// Something worth a log line.
    Log { level: Level, message: String },
}

/// Why `handle_transmit` did not queue a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransmitError {
    /// No neighbour with that handle is up.
    #[error("no peer {0}")]
    NoPeer(u64),
    /// Larger than `max_bundle`.
    #[error("bundle of {len} bytes is larger than max_bundle ({max} bytes)")]
    TooLarge { len: usize, max: usize },
    /// Zero bytes.
    #[error("an empty bundle can not be sent")]
    Empty,
    /// `max_queued` bundles already wait for this neighbour.
    #[error("{0} bundles already queued for this peer")]
    QueueFull(usize),
}

/// The peer handle of a short ID: never 0 (0 means "not heard yet").
pub fn peer_handle(short: u32) -> u64 {
    1 << 32 | u64::from(short)
}

fn short_of(peer: u64) -> Option<u32> {
    (peer >> 32 == 1).then_some(peer as u32)
}

struct Neighbour {
    node_id: String,
    last_heard: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    /// Waiting behind another transfer to the same neighbour.
    Queued,
    /// Frames to send (`to_send`); the last one carries the poll flag.
    Sending,
    /// A poll went out; waiting for the ACK until `deadline`.
    Awaiting { deadline: u64 },
    /// The deadline passed: a POLL frame is due.
    PollDue,
}

struct Outgoing {
    transmit: u64,
    dst: u32,
    transfer: u32,
    bundle: Vec<u8>,
    total: u16,
    /// Frames the receiver holds (from its ACKs).
    held: Vec<bool>,
    /// Frames put on air at least once.
    sent: Vec<bool>,
    /// Frames of this round still to send, in order.
    to_send: VecDeque<u16>,
    state: OutState,
    /// Polls since the last progress.
    retries: u32,
    /// "Pending" answers: the receiver has it all and waits for its store.
    pending_answers: u32,
}

impl Outgoing {
    fn chunk(&self, seq: u16) -> &[u8] {
        let start = usize::from(seq) * MAX_CHUNK;
        &self.bundle[start..(start + MAX_CHUNK).min(self.bundle.len())]
    }

    fn held_count(&self) -> usize {
        self.held.iter().filter(|h| **h).count()
    }
}

struct Reassembly {
    total: u16,
    chunks: Vec<Option<Vec<u8>>>,
    received: u16,
    last_activity: u64,
}

impl Reassembly {
    fn reserved(total: u16) -> usize {
        usize::from(total) * MAX_CHUNK
    }

    fn bitmap(&self) -> Vec<u8> {
        let mut map = vec![0u8; bitmap_len(self.total)];
        for (i, c) in self.chunks.iter().enumerate() {
            if c.is_some() {
                map[i / 8] |= 1 << (i % 8);
            }
        }
        map
    }
}

struct Completed {
    status: AckStatus,
    total: u16,
    at: u64,
    token: Option<u64>,
}

/// An ACK to send: its contents are read from the state when it goes on air.
#[derive(Clone, Copy, PartialEq, Eq)]
struct AckJob {
    to: u32,
    transfer: u32,
    total: u16,
    /// What to say if the transfer is neither being reassembled nor finished.
    otherwise: AckStatus,
}

/// One radio's LoRa convergence layer. See the [module docs](self).
pub struct Link {
    cfg: LinkConfig,
    me: u32,
    node_id: String,
    duty: DutyCycle,
    rng: fastrand::Rng,
    busy_until: u64,
    /// When a frame that is ready may go (radio busy or budget spent).
    send_wakeup: Option<u64>,
    hello_due: u64,
    /// The latest `now` seen: a HELLO already due is not a future timer.
    now: u64,
    last_hello: Option<u64>,
    neighbours: HashMap<u32, Neighbour>,
    outgoing: Vec<Outgoing>,
    /// Where the round-robin over active transfers resumes.
    rr: usize,
    next_transfer: u32,
    reassemblies: HashMap<(u32, u32), Reassembly>,
    reserved: usize,
    completed: HashMap<(u32, u32), Completed>,
    tokens: HashMap<u64, (u32, u32)>,
    next_token: u64,
    acks: VecDeque<AckJob>,
    events: VecDeque<Event>,
    /// Frames sent and bytes of airtime, for reports.
    stats: Stats,
    /// Per kind of malformed packet: when it was last logged, and how many
    /// were not logged since.
    bad_logged: HashMap<std::mem::Discriminant<FrameError>, (Option<u64>, u64)>,
}

/// Counters of one link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames put on air, by kind.
    pub data_frames: u64,
    pub retransmitted_frames: u64,
    pub control_frames: u64,
    /// Total airtime spent, µs.
    pub airtime_us: u64,
    /// Packets received that were not frames (bad CRC, malformed).
    pub bad_packets: u64,
}

impl Link {
    /// A link for the node `node_id`. `seed` makes transfer IDs and HELLO
    /// jitter reproducible (use a random one in production: transfer IDs
    /// must not repeat across restarts).
    pub fn new(cfg: LinkConfig, node_id: &str, now: u64, seed: u64) -> Link {
        let mut rng = fastrand::Rng::with_seed(seed);
        let duty = DutyCycle::new(cfg.duty_cycle_percent, cfg.duty_window_us);
        let hello_due = now + rng.u64(0..=cfg.hello_interval_us / 20);
        Link {
            me: short_id(node_id),
            node_id: node_id.to_owned(),
            duty,
            next_transfer: rng.u32(..),
            rng,
            busy_until: now,
            send_wakeup: None,
            hello_due,
            now,
            last_hello: None,
            neighbours: HashMap::new(),
            outgoing: Vec::new(),
            rr: 0,
            reassemblies: HashMap::new(),
            reserved: 0,
            completed: HashMap::new(),
            tokens: HashMap::new(),
            next_token: 1,
            acks: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            bad_logged: HashMap::new(),
            cfg,
        }
    }

    // ----- getters ---------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// This node's short ID.
    pub fn short_id(&self) -> u32 {
        self.me
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Neighbours up now: (peer handle, node ID).
    pub fn neighbours(&self) -> Vec<(u64, String)> {
        let mut v: Vec<_> = self.neighbours.iter().map(|(s, n)| (peer_handle(*s), n.node_id.clone())).collect();
        v.sort();
        v
    }

    /// Transfers being reassembled, and bytes they reserve.
    pub fn reassembly_load(&self) -> (usize, usize) {
        (self.reassemblies.len(), self.reserved)
    }

    /// Accepted transmissions not yet done.
    pub fn pending_transmits(&self) -> usize {
        self.outgoing.len()
    }

    // ----- inputs ----------------------------------------------------------

    /// A packet the modem received (one KISS data frame's bytes).
    pub fn handle_packet(&mut self, now: u64, packet: &[u8]) {
        self.now = self.now.max(now);
        let frame = match Frame::parse(packet) {
            Ok(f) => f,
            Err(e) => {
                self.stats.bad_packets += 1;
                // Another LoRa network on the channel would otherwise fill
                // the log: one line per kind of error per minute, with a count.
                let (last, quiet) = self.bad_logged.entry(std::mem::discriminant(&e)).or_insert((None, 0));
                if last.is_some_and(|t| t + BAD_PACKET_LOG_US > now) {
                    *quiet += 1;
                    return;
                }
                let more = match std::mem::replace(quiet, 0) {
                    0 => String::new(),
                    n => format!(" ({n} more like it since the last report)"),
                };
                *last = Some(now);
                self.log(Level::Warn, format!("dropped a {}-byte radio packet: {e}{more}", packet.len()));
                return;
            }
        };
        let src = match frame {
            Frame::Hello { src, .. } | Frame::Data { src, .. } | Frame::Poll { src, .. } | Frame::Ack { src, .. } => {
                src
            }
        };
        if src == self.me {
            return; // our own frame, echoed (or a node with our short ID)
        }
        if let Some(n) = self.neighbours.get_mut(&src) {
            n.last_heard = now;
        }
        match frame {
            Frame::Hello { src, node_id } => self.on_hello(now, src, node_id),
            Frame::Data { dst, .. } | Frame::Poll { dst, .. } | Frame::Ack { dst, .. } if dst != self.me => {}
            Frame::Data { src, transfer, seq, total, poll, chunk, .. } => {
                self.on_data(now, src, transfer, seq, total, poll, chunk)
            }
            Frame::Poll { src, transfer, total, .. } => {
                self.queue_ack(AckJob { to: src, transfer, total, otherwise: AckStatus::Partial })
            }
            Frame::Ack { src, transfer, status, total, bitmap, .. } => {
                self.on_ack(now, src, transfer, status, total, bitmap)
            }
        }
    }

    /// Queues `bundle` for the neighbour `peer`. `Ok` means exactly one
    /// `TransmitDone { transmit, .. }` follows.
    pub fn handle_transmit(&mut self, peer: u64, transmit: u64, bundle: &[u8]) -> Result<(), TransmitError> {
        let dst = short_of(peer).filter(|s| self.neighbours.contains_key(s)).ok_or(TransmitError::NoPeer(peer))?;
        if bundle.is_empty() {
            return Err(TransmitError::Empty);
        }
        if bundle.len() > self.cfg.max_bundle || bundle.len() > usize::from(MAX_FRAMES) * MAX_CHUNK {
            return Err(TransmitError::TooLarge { len: bundle.len(), max: self.cfg.max_bundle });
        }
        let queued = self.outgoing.iter().filter(|o| o.dst == dst).count();
        if queued >= self.cfg.max_queued {
            return Err(TransmitError::QueueFull(queued));
        }
        // ≤ MAX_FRAMES, checked above.
        let total = bundle.len().div_ceil(MAX_CHUNK) as u16;
        let transfer = self.next_transfer;
        self.next_transfer = self.next_transfer.wrapping_add(1);
        let state = if queued == 0 { OutState::Sending } else { OutState::Queued };
        self.outgoing.push(Outgoing {
            transmit,
            dst,
            transfer,
            bundle: bundle.to_vec(),
            total,
            held: vec![false; usize::from(total)],
            sent: vec![false; usize::from(total)],
            to_send: (0..total).collect(),
            state,
            retries: 0,
            pending_answers: 0,
        });
        Ok(())
    }

    /// The host's verdict on the bundle received with `token`. Only now
    /// does the final ACK go out.
    pub fn handle_verdict(&mut self, now: u64, token: u64, verdict: Verdict) {
        let Some(key) = self.tokens.remove(&token) else { return };
        let Some(done) = self.completed.get_mut(&key) else { return };
        done.status = match verdict {
            Verdict::Accepted => AckStatus::Accepted,
            Verdict::Duplicate => AckStatus::Duplicate,
            Verdict::Invalid => AckStatus::Invalid,
            Verdict::NoResources => AckStatus::NoResources,
        };
        done.at = now;
        done.token = None;
        let total = done.total;
        if verdict == Verdict::Invalid {
            self.log(
                Level::Warn,
                format!("the bundle of transfer {:08x} from {:08x} is not a valid bundle; refused", key.1, key.0),
            );
        }
        self.queue_ack(AckJob { to: key.0, transfer: key.1, total, otherwise: AckStatus::Partial });
    }

    /// Timers: HELLOs, ACK deadlines, silent neighbours, stale reassemblies.
    pub fn handle_timeout(&mut self, now: u64) {
        self.now = self.now.max(now);
        for o in &mut self.outgoing {
            if let OutState::Awaiting { deadline } = o.state {
                if deadline <= now {
                    o.retries += 1;
                    o.state = OutState::PollDue;
                }
            }
        }
        let max_retries = self.cfg.max_retries;
        let mut failed = Vec::new();
        self.outgoing.retain(|o| {
            let give_up = o.retries > max_retries;
            if give_up {
                failed.push((o.transmit, o.dst, o.transfer, o.held_count(), o.total));
            }
            !give_up
        });
        for (transmit, dst, transfer, held, total) in failed {
            self.log(
                Level::Info,
                format!(
                    "transfer {transfer:08x} to {dst:08x}: no answer after {max_retries} polls ({held}/{total} frames acknowledged); the host will retry"
                ),
            );
            self.finish(transmit, dst, Outcome::Failed);
        }
        // Silent neighbours.
        let timeout = self.cfg.peer_timeout_us;
        let silent: Vec<u32> =
            self.neighbours.iter().filter(|(_, n)| n.last_heard + timeout <= now).map(|(s, _)| *s).collect();
        for s in silent {
            self.neighbour_down(s, "silent");
        }
        // Stale reassemblies.
        let rt = self.cfg.reassembly_timeout_us;
        let stale: Vec<(u32, u32)> =
            self.reassemblies.iter().filter(|(_, r)| r.last_activity + rt <= now).map(|(k, _)| *k).collect();
        for key in stale {
            if let Some(r) = self.reassemblies.remove(&key) {
                self.reserved -= Reassembly::reserved(r.total);
                self.log(
                    Level::Info,
                    format!(
                        "dropped stale reassembly of transfer {:08x} from {:08x} ({}/{} frames)",
                        key.1, key.0, r.received, r.total
                    ),
                );
            }
        }
        let ttl = self.cfg.completed_ttl_us;
        self.completed.retain(|_, c| c.token.is_some() || c.at + ttl > now);
    }

    /// The radio is gone (device unplugged) or the plugin stops: every
    /// neighbour goes down and every transmission fails.
    pub fn close(&mut self, _now: u64) {
        let all: Vec<u32> = self.neighbours.keys().copied().collect();
        for s in all {
            self.neighbour_down(s, "radio closed");
        }
        for o in std::mem::take(&mut self.outgoing) {
            self.events.push_back(Event::TransmitDone { transmit: o.transmit, outcome: Outcome::Failed });
        }
        self.acks.clear();
    }

    // ----- outputs ---------------------------------------------------------

    /// The next packet to put on air now, if the radio is idle, something
    /// is due and the duty-cycle budget allows it. Otherwise `None`, and
    /// [`Link::poll_timeout`] says when to try again.
    pub fn poll_transmit(&mut self, now: u64) -> Option<Vec<u8>> {
        self.now = self.now.max(now);
        self.send_wakeup = None;
        let (packet, commit) = self.next_packet(now)?;
        let air = self.cfg.radio.airtime_us(packet.len());
        // Data may spend only part of the budget: the rest keeps HELLOs,
        // ACKs and polls going, so that a busy sender neither falls silent
        // to its neighbours nor starves its own acknowledgements.
        let share = if matches!(commit, Commit::Data(_)) { DATA_SHARE } else { 1.0 };
        let at = match self.duty.earliest_within(now, air, share) {
            Some(at) => at.max(self.busy_until),
            None => {
                // Longer than the whole budget: can never go. Only possible
                // with absurd settings, which the settings check refuses.
                self.log(
                    Level::Warn,
                    format!("a {}-byte frame needs more airtime than the duty cycle allows", packet.len()),
                );
                return None;
            }
        };
        if at > now {
            self.send_wakeup = Some(at);
            return None;
        }
        self.duty.record(now, air);
        self.busy_until = now + air;
        self.stats.airtime_us += air;
        self.commit(now, commit, air);
        Some(packet)
    }

    /// The next event for the host.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` (or `poll_transmit`) has something to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut t = None;
        let mut min = |x: u64| t = Some(t.map_or(x, |t: u64| t.min(x)));
        // A HELLO already due waits for the radio: `send_wakeup` covers it.
        if self.hello_due > self.now {
            min(self.hello_due);
        }
        if let Some(w) = self.send_wakeup {
            min(w);
        }
        for o in &self.outgoing {
            if let OutState::Awaiting { deadline } = o.state {
                min(deadline);
            }
        }
        for n in self.neighbours.values() {
            min(n.last_heard + self.cfg.peer_timeout_us);
        }
        for r in self.reassemblies.values() {
            min(r.last_activity + self.cfg.reassembly_timeout_us);
        }
        t
    }

    // ----- internals -------------------------------------------------------

    fn log(&mut self, level: Level, message: String) {
        self.events.push_back(Event::Log { level, message });
    }

    fn on_hello(&mut self, now: u64, src: u32, node_id: &str) {
        if let Some(n) = self.neighbours.get(&src) {
            if n.node_id != node_id {
                let known = n.node_id.clone();
                self.log(
                    Level::Warn,
                    format!("HELLO from {node_id} ignored: its short ID {src:08x} is already {known}'s"),
                );
            }
            return;
        }
        if node_id.is_empty() || node_id == self.node_id {
            self.log(Level::Warn, format!("HELLO with an unusable node ID \"{node_id}\" ignored"));
            return;
        }
        if short_id(node_id) != src {
            self.log(Level::Warn, format!("HELLO from {node_id} ignored: short ID {src:08x} does not match"));
            return;
        }
        if self.neighbours.len() >= MAX_NEIGHBOURS {
            self.log(Level::Warn, format!("HELLO from {node_id} ignored: {MAX_NEIGHBOURS} neighbours already"));
            return;
        }
        self.neighbours.insert(src, Neighbour { node_id: node_id.to_owned(), last_heard: now });
        self.events.push_back(Event::PeerUp {
            peer: peer_handle(src),
            node_id: node_id.to_owned(),
            rate_bps: self.cfg.rate_bps(),
            mtu: self.cfg.max_bundle as u64,
        });
        // Answer soon, so that discovery is mutual, but not more than once
        // per twentieth of the interval.
        let gap = self.cfg.hello_interval_us / 20;
        if self.last_hello.is_none_or(|t| t + gap <= now) {
            let soon = now + self.rng.u64(0..=self.cfg.radio.airtime_us(MAX_PACKET) * 2);
            self.hello_due = self.hello_due.min(soon);
        }
    }

    fn neighbour_down(&mut self, short: u32, why: &str) {
        let Some(n) = self.neighbours.remove(&short) else { return };
        self.log(Level::Info, format!("neighbour {} {why}: down", n.node_id));
        let mut failed = Vec::new();
        self.outgoing.retain(|o| {
            if o.dst == short {
                failed.push(o.transmit);
            }
            o.dst != short
        });
        for transmit in failed {
            self.events.push_back(Event::TransmitDone { transmit, outcome: Outcome::Failed });
        }
        self.events.push_back(Event::PeerDown { peer: peer_handle(short) });
    }

    #[allow(clippy::too_many_arguments)]
    fn on_data(&mut self, now: u64, src: u32, transfer: u32, seq: u16, total: u16, poll: bool, chunk: &[u8]) {
        let key = (src, transfer);
        let ack = AckJob { to: src, transfer, total, otherwise: AckStatus::NoResources };
        if self.completed.contains_key(&key) {
            if poll {
                self.queue_ack(ack);
            }
            return;
        }
        // Every frame but the last is full: the bundle's size is known from
        // the frame count, and nothing beyond it is ever held.
        let last = seq + 1 == total;
        if chunk.is_empty() || chunk.len() > MAX_CHUNK || (!last && chunk.len() != MAX_CHUNK) {
            self.log(
                Level::Warn,
                format!("transfer {transfer:08x} from {src:08x}: frame {seq} carries {} bytes; dropped", chunk.len()),
            );
            return;
        }
        if !self.reassemblies.contains_key(&key) {
            let need = Reassembly::reserved(total);
            if need > self.cfg.max_bundle.div_ceil(MAX_CHUNK) * MAX_CHUNK {
                self.log(
                    Level::Warn,
                    format!(
                        "transfer {transfer:08x} from {src:08x} announces {total} frames (up to {need} bytes), more than max_bundle ({}); refused",
                        self.cfg.max_bundle
                    ),
                );
                self.remember(key, AckStatus::Invalid, total, now, None);
                self.queue_ack(ack);
                return;
            }
            if self.reassemblies.len() >= self.cfg.max_reassemblies
                || self.reserved + need > self.cfg.max_reassembly_bytes
            {
                if poll {
                    self.log(
                        Level::Info,
                        format!(
                            "transfer {transfer:08x} from {src:08x} refused for now: {} reassemblies hold {} bytes",
                            self.reassemblies.len(),
                            self.reserved
                        ),
                    );
                    self.queue_ack(ack);
                }
                return;
            }
            self.reserved += need;
            self.reassemblies.insert(
                key,
                Reassembly { total, chunks: vec![None; usize::from(total)], received: 0, last_activity: now },
            );
        }
        let Some(r) = self.reassemblies.get_mut(&key) else { return };
        if r.total != total {
            let was = r.total;
            self.log(
                Level::Warn,
                format!(
                    "transfer {transfer:08x} from {src:08x}: frame count changed from {was} to {total}; frame dropped"
                ),
            );
            return;
        }
        r.last_activity = now;
        let slot = &mut r.chunks[usize::from(seq)];
        if slot.is_none() {
            *slot = Some(chunk.to_vec());
            r.received += 1;
        }
        if r.received == r.total {
            if let Some(r) = self.reassemblies.remove(&key) {
                self.reserved -= Reassembly::reserved(r.total);
                let bundle: Vec<u8> = r.chunks.into_iter().flatten().flatten().collect();
                let token = self.next_token;
                self.next_token += 1;
                self.tokens.insert(token, key);
                self.remember(key, AckStatus::Pending, total, now, Some(token));
                let peer = if self.neighbours.contains_key(&src) { peer_handle(src) } else { 0 };
                self.events.push_back(Event::BundleReceived { peer, token, bundle });
            }
        }
        if poll {
            self.queue_ack(AckJob { otherwise: AckStatus::Partial, ..ack });
        }
    }

    fn remember(&mut self, key: (u32, u32), status: AckStatus, total: u16, at: u64, token: Option<u64>) {
        if self.completed.len() >= MAX_COMPLETED {
            // Forget the oldest answered one.
            if let Some(oldest) =
                self.completed.iter().filter(|(_, c)| c.token.is_none()).min_by_key(|(_, c)| c.at).map(|(k, _)| *k)
            {
                self.completed.remove(&oldest);
            }
        }
        self.completed.insert(key, Completed { status, total, at, token });
    }

    fn queue_ack(&mut self, job: AckJob) {
        if !self.acks.iter().any(|j| j.to == job.to && j.transfer == job.transfer) {
            self.acks.push_back(job);
        }
    }

    fn on_ack(&mut self, now: u64, src: u32, transfer: u32, status: AckStatus, total: u16, bitmap: &[u8]) {
        let Some(i) = self.outgoing.iter().position(|o| o.dst == src && o.transfer == transfer) else {
            return; // finished already, or not ours
        };
        let o = &mut self.outgoing[i];
        if o.total != total || o.state == OutState::Queued {
            return;
        }
        let outcome = match status {
            AckStatus::Accepted | AckStatus::Duplicate => Outcome::Sent,
            AckStatus::Invalid => Outcome::Refused,
            AckStatus::NoResources => Outcome::Failed,
            AckStatus::Pending if o.pending_answers < self.cfg.max_retries => {
                // The receiver answers, so the link is fine; its store is
                // slow. The final ACK comes unasked, so poll only rarely.
                o.held.iter_mut().for_each(|h| *h = true);
                o.retries = 0;
                o.pending_answers += 1;
                o.to_send.clear();
                o.state = OutState::Awaiting { deadline: now + PENDING_POLL_FACTOR * self.cfg.ack_timeout_us };
                return;
            }
            // The receiver's store gave no verdict in all that time.
            AckStatus::Pending => Outcome::Failed,
            AckStatus::Partial => {
                // The receiver's word is final, also when it shows less than
                // before: it dropped a stale reassembly or forgot a finished
                // transfer, and the frames must go again.
                let before = o.held_count();
                for (seq, h) in o.held.iter_mut().enumerate() {
                    *h = bitmap.get(seq / 8).is_some_and(|b| b & (1 << (seq % 8)) != 0);
                }
                if o.held_count() > before {
                    o.retries = 0;
                }
                if matches!(o.state, OutState::Awaiting { .. } | OutState::PollDue) {
                    o.to_send = (0..o.total).filter(|s| !o.held[usize::from(*s)]).collect();
                    o.state = if o.to_send.is_empty() {
                        OutState::Awaiting { deadline: now + self.cfg.ack_timeout_us }
                    } else {
                        OutState::Sending
                    };
                } else {
                    let held = &o.held;
                    o.to_send.retain(|s| !held[usize::from(*s)]);
                }
                return;
            }
        };
        let (transmit, dst) = (o.transmit, o.dst);
        self.outgoing.remove(i);
        if status == AckStatus::Pending {
            self.log(
                Level::Info,
                format!(
                    "transfer {transfer:08x} to {dst:08x}: the receiver's store gave no verdict; the host will retry"
                ),
            );
        } else if outcome != Outcome::Sent {
            self.log(Level::Info, format!("transfer {transfer:08x} to {dst:08x}: receiver answered {status:?}"));
        }
        self.finish(transmit, dst, outcome);
    }

    /// Reports a transmission's end and starts the next one to `dst`.
    fn finish(&mut self, transmit: u64, dst: u32, outcome: Outcome) {
        self.events.push_back(Event::TransmitDone { transmit, outcome });
        if !self.outgoing.iter().any(|o| o.dst == dst && o.state != OutState::Queued) {
            if let Some(next) = self.outgoing.iter_mut().find(|o| o.dst == dst) {
                next.state = OutState::Sending;
            }
        }
    }

    /// The packet that would go next, and what to update when it does.
    fn next_packet(&mut self, now: u64) -> Option<(Vec<u8>, Commit)> {
        if let Some(job) = self.acks.front().copied() {
            return Some((self.ack_frame(job), Commit::Ack));
        }
        if self.hello_due <= now {
            let f = Frame::Hello { src: self.me, node_id: &self.node_id };
            return Some((f.to_vec(), Commit::Hello));
        }
        let n = self.outgoing.len();
        for k in 0..n {
            let i = (self.rr + k) % n;
            let o = &self.outgoing[i];
            match o.state {
                OutState::PollDue => {
                    let f = Frame::Poll { src: self.me, dst: o.dst, transfer: o.transfer, total: o.total };
                    return Some((f.to_vec(), Commit::Poll(i)));
                }
                OutState::Sending => {
                    let Some(&seq) = o.to_send.front() else { continue };
                    let f = Frame::Data {
                        src: self.me,
                        dst: o.dst,
                        transfer: o.transfer,
                        seq,
                        total: o.total,
                        poll: o.to_send.len() == 1,
                        chunk: o.chunk(seq),
                    };
                    return Some((f.to_vec(), Commit::Data(i)));
                }
                OutState::Queued | OutState::Awaiting { .. } => {}
            }
        }
        None
    }

    fn ack_frame(&self, job: AckJob) -> Vec<u8> {
        let key = (job.to, job.transfer);
        let (status, total, bitmap) = if let Some(r) = self.reassemblies.get(&key) {
            (AckStatus::Partial, r.total, r.bitmap())
        } else if let Some(c) = self.completed.get(&key) {
            (c.status, c.total, Vec::new())
        } else if job.otherwise == AckStatus::Partial {
            (AckStatus::Partial, job.total, vec![0; bitmap_len(job.total)])
        } else {
            (job.otherwise, job.total, Vec::new())
        };
        Frame::Ack { src: self.me, dst: job.to, transfer: job.transfer, status, total, bitmap: &bitmap }.to_vec()
    }

    fn commit(&mut self, now: u64, commit: Commit, air: u64) {
        match commit {
            Commit::Ack => {
                self.acks.pop_front();
                self.stats.control_frames += 1;
            }
            Commit::Hello => {
                self.last_hello = Some(now);
                let jitter = self.rng.u64(0..=self.cfg.hello_interval_us / 10);
                self.hello_due = now + self.cfg.hello_interval_us - self.cfg.hello_interval_us / 20 + jitter;
                self.stats.control_frames += 1;
            }
            Commit::Poll(i) => {
                let o = &mut self.outgoing[i];
                o.state = OutState::Awaiting { deadline: now + air + self.cfg.ack_timeout_us };
                self.stats.control_frames += 1;
                self.rr = i + 1;
            }
            Commit::Data(i) => {
                let o = &mut self.outgoing[i];
                self.stats.data_frames += 1;
                if let Some(seq) = o.to_send.pop_front() {
                    let first_time = !std::mem::replace(&mut o.sent[usize::from(seq)], true);
                    self.stats.retransmitted_frames += u64::from(!first_time);
                }
                if o.to_send.is_empty() {
                    o.state = OutState::Awaiting { deadline: now + air + self.cfg.ack_timeout_us };
                    self.rr = i + 1;
                }
            }
        }
    }
}

enum Commit {
    Ack,
    Hello,
    Poll(usize),
    Data(usize),
}
