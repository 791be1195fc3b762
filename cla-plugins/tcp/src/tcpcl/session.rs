//! The TCPCLv4 session state machine (RFC 9174 §3, §4, §5, §6), sans-IO.
//!
//! A [`Session`] is one TCPCL session over one TCP connection, either role.
//! It never touches a socket or a clock: bytes and the time in milliseconds
//! come in, bytes, events and the next deadline go out.
//!
//! # Methods, grouped
//! - Getters: [`Session::phase`], [`Session::negotiated`], [`Session::is_closed`], ...
//! - Inputs: [`Session::handle_bytes`], [`Session::handle_timeout`],
//!   [`Session::handle_connection_closed`].
//! - Commands: [`Session::send_bundle`], [`Session::accept_transfer`],
//!   [`Session::refuse_transfer`], [`Session::close`], and for TLS
//!   [`Session::take_unprocessed_input`] / [`Session::tls_established`].
//! - Outputs: [`Session::poll_transmit`] (or [`Session::transmit_into`]),
//!   [`Session::poll_event`], [`Session::poll_timeout`].
//!
//! # Driving it
//! After every input or command: write out everything `poll_transmit`
//! returns, handle every `poll_event`, then sleep until the socket is
//! readable/writable or `poll_timeout` passes, and call `handle_timeout`.
//! Once [`Session::is_closed`] is true, flush `poll_transmit` one last time
//! and close the connection.
//!
//! # Phases
//! [`Phase::ContactHeader`] → ([`Phase::Tls`]) → [`Phase::SessInit`] →
//! [`Phase::Established`] → [`Phase::Ending`] → [`Phase::Closed`]. Each phase
//! accepts only its own messages; anything else is a typed [`SessionError`]
//! answered per the RFC (MSG_REJECT, SESS_TERM or closing), never a panic.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::wire::{
    message_type, ContactFlags, ContactHeader, ExtensionFlags, ExtensionItem, ExtensionItems, Limits, Message,
    MsgReject, RefuseReason, RejectReason, SegmentFlags, SessInit, SessTerm, SessTermFlags, SessTermReason, WireError,
    XferAck, XferRefuse, XferSegment, TRANSFER_LENGTH_EXTENSION, VERSION,
};

/// A transfer ID (RFC 9174 §5.2.1). Ours count up from 0 per session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransferId(pub u64);

/// How a session behaves. [`Config::new`] gives defaults fit for a LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our node ID, sent in SESS_INIT; empty to not disclose it (RFC 9174 §4.6).
    pub node_id: String,
    /// Whether we opened the TCP connection (the active entity, RFC 9174 §4.1).
    pub active: bool,
    /// Our keepalive interval in seconds; 0 disables keepalives (§5.1.1).
    pub keepalive_secs: u16,
    /// Our segment MRU: the largest segment we accept (§4.6).
    pub segment_mru: u64,
    /// Our transfer MRU: the largest bundle we accept; reassembly never holds
    /// more than this (§4.6).
    pub transfer_mru: u64,
    /// The largest segment we send, whatever the peer's segment MRU allows.
    pub max_tx_segment: u64,
    /// Set CAN_TLS in our contact header (§4.2). When both sides set it the
    /// session pauses in [`Phase::Tls`] for the I/O side to run TLS.
    pub can_tls: bool,
    /// Refuse a session that does not negotiate TLS: SESS_TERM "Contact
    /// Failure" right after the contact headers (RFC 9174 §4.3).
    pub require_tls: bool,
    /// Refuse a session without TLS from a peer whose SESS_INIT claims one of
    /// these node IDs (SESS_TERM "Contact Failure").
    pub require_tls_for: Vec<String>,
    /// The longest session or transfer extension item list we accept.
    pub max_extensions_len: u32,
    /// The longest node ID we accept from the peer.
    pub max_node_id_len: u16,
    /// Time allowed for the contact header and SESS_INIT exchange (§4.2
    /// advises at most 60 s for the contact header).
    pub contact_timeout_ms: u64,
    /// Time allowed in the Ending phase before the connection is closed
    /// regardless (§6.1).
    pub termination_timeout_ms: u64,
    /// A transfer that makes no progress for this long ends the session with
    /// SESS_TERM "idle timeout": one of ours that the peer stopped
    /// acknowledging, or one of the peer's whose next segment never came.
    /// Keepalives alone do not count, so a peer that keeps the session alive
    /// but stalls mid-transfer does not hold the bundle forever. 0 = never.
    pub transfer_timeout_ms: u64,
    /// Never send a bundle larger than the peer's transfer MRU (§4.7). dtn7-rs
    /// 0.21 advertises 64000 octets but accepts more; clear this to send it
    /// larger bundles anyway.
    pub respect_peer_transfer_mru: bool,
    /// Put a Transfer Length extension (§5.2.5.1) on each START segment. It is
    /// sent non-critical, so a peer that does not know it skips it.
    pub send_transfer_length: bool,
    /// How many of our transfers may be fully sent and not yet acknowledged
    /// before the next one starts (transfers are pipelined, never interleaved:
    /// §5.2.2).
    pub max_pipelined_transfers: usize,
    /// How many received bundles may wait for [`Session::accept_transfer`].
    /// At this many (or [`Config::max_unaccepted_bytes`]) the session stops
    /// taking input ([`Session::wants_input`] turns false) until the owner
    /// accepts some: the peer is slowed down by TCP, not refused. Input
    /// already buffered waits unparsed.
    pub max_unaccepted_transfers: usize,
    /// Octets of received bundles that may wait for [`Session::accept_transfer`]
    /// before the session stops taking input. Bounds a session's memory
    /// together with the transfer MRU.
    pub max_unaccepted_bytes: u64,
    /// How many octets [`Session::poll_transmit`] returns at most per call
    /// (at least one whole message, however long).
    pub transmit_batch: usize,
}

impl Config {
    /// Defaults: keepalive 30 s (RFC 9174 §5.1.1 advises ≥ 30 s on shared
    /// networks), segment MRU 1 MiB, transfer MRU 64 MiB, no TLS.
    pub fn new(node_id: impl Into<String>, active: bool) -> Self {
        Config {
            node_id: node_id.into(),
            active,
            keepalive_secs: 30,
            segment_mru: 1 << 20,
            transfer_mru: 64 << 20,
            max_tx_segment: 1 << 20,
            can_tls: false,
            require_tls: false,
            require_tls_for: Vec::new(),
            max_extensions_len: 64 * 1024,
            max_node_id_len: 1024,
            contact_timeout_ms: 30_000,
            termination_timeout_ms: 30_000,
            transfer_timeout_ms: 60_000,
            respect_peer_transfer_mru: true,
            send_transfer_length: true,
            max_pipelined_transfers: 4,
            max_unaccepted_transfers: 16,
            max_unaccepted_bytes: 64 << 20,
            transmit_batch: 64 * 1024,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id.len() > usize::from(u16::MAX) {
            return Err(ConfigError::NodeIdTooLong { len: self.node_id.len() });
        }
        if self.segment_mru == 0 {
            return Err(ConfigError::ZeroSegmentMru);
        }
        if self.max_tx_segment == 0 {
            return Err(ConfigError::ZeroTxSegment);
        }
        if self.max_pipelined_transfers == 0 {
            return Err(ConfigError::ZeroPipelinedTransfers);
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        Limits {
            segment_mru: self.segment_mru,
            max_extensions_len: self.max_extensions_len,
            max_node_id_len: self.max_node_id_len,
        }
    }
}

/// Why a [`Config`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The node ID does not fit SESS_INIT's u16 length field.
    #[error("node ID of {len} octets does not fit SESS_INIT")]
    NodeIdTooLong {
        /// Its length.
        len: usize,
    },
    /// A segment MRU of 0 would refuse every segment.
    #[error("segment MRU must be at least 1")]
    ZeroSegmentMru,
    /// A maximum outgoing segment of 0 could not send anything.
    #[error("max_tx_segment must be at least 1")]
    ZeroTxSegment,
    /// Zero pipelined transfers could never send one.
    #[error("max_pipelined_transfers must be at least 1")]
    ZeroPipelinedTransfers,
}

/// Where a session is in its life (RFC 9174 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Waiting for the peer's contact header.
    ContactHeader,
    /// Both sides set CAN_TLS: the I/O side runs the TLS handshake (§4.4).
    Tls,
    /// Waiting for the peer's SESS_INIT.
    SessInit,
    /// Transfers flow.
    Established,
    /// SESS_TERM sent or received: in-progress transfers finish, no new ones
    /// begin (§6.1).
    Ending,
    /// Done; flush the output and close the connection.
    Closed,
}

/// The session parameters both SESS_INITs settled (RFC 9174 §4.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's node ID, if it disclosed one.
    pub peer_node_id: Option<String>,
    /// The session keepalive in seconds: the minimum of both; 0 = none.
    pub keepalive: u16,
    /// The peer's segment MRU: our segments are at most this long.
    pub peer_segment_mru: u64,
    /// The peer's transfer MRU.
    pub peer_transfer_mru: u64,
    /// Whether TLS was negotiated (both sides set CAN_TLS).
    pub tls: bool,
}

/// Why one of our transfers was not delivered, other than a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailReason {
    /// The session terminated before the transfer began (§6.1: no new
    /// transfers once Ending) or closed before it was acknowledged.
    SessionClosed,
    /// The bundle is larger than the peer's transfer MRU (§4.7).
    ExceedsPeerTransferMru,
}

/// What the session tells its owner. Drain with [`Session::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Both sides set CAN_TLS (RFC 9174 §4.4): flush `poll_transmit`, then run
    /// the TLS handshake (as the client if `client`) starting with
    /// [`Session::take_unprocessed_input`], then call
    /// [`Session::tls_established`] and feed decrypted bytes from then on.
    StartTls {
        /// Whether we are the TLS client (the active entity, §4.4).
        client: bool,
    },
    /// SESS_INIT exchanged: transfers may flow.
    Established {
        /// The peer's node ID, if disclosed.
        peer_node_id: Option<String>,
        /// The peer's segment MRU.
        peer_segment_mru: u64,
        /// The peer's transfer MRU.
        peer_transfer_mru: u64,
        /// The negotiated keepalive interval in seconds (0 = none).
        keepalive: u16,
        /// The session runs over TLS; `peer_node_id` is then one its
        /// certificate names.
        tls: bool,
    },
    /// A whole bundle arrived. Its final XFER_ACK is held back until
    /// [`Session::accept_transfer`] (once the bundle is durable) or
    /// [`Session::refuse_transfer`].
    BundleReceived {
        /// The peer's transfer ID.
        transfer_id: TransferId,
        /// The bundle.
        bundle: Vec<u8>,
    },
    /// The peer acknowledged all of one of our transfers: it has the bundle.
    TransferAcked {
        /// Our transfer ID.
        transfer_id: TransferId,
    },
    /// The peer refused one of our transfers (RFC 9174 §5.2.4). With
    /// [`RefuseReason::Completed`] the peer already has the bundle.
    TransferRefused {
        /// Our transfer ID.
        transfer_id: TransferId,
        /// The peer's reason.
        reason: RefuseReason,
    },
    /// One of our transfers will not be acknowledged on this session.
    TransferFailed {
        /// Our transfer ID.
        transfer_id: TransferId,
        /// Why.
        reason: FailReason,
    },
    /// SESS_TERM was sent or received; the session is Ending.
    Terminated {
        /// The termination reason.
        reason: SessTermReason,
        /// Whether the peer sent the first SESS_TERM.
        by_peer: bool,
    },
    /// Something the peer did wrong, or a timeout; for logging. What the
    /// session did about it is already done.
    ProtocolError(SessionError),
    /// The session is over: flush the output and close the connection.
    Closed,
}

/// Protocol failures a session detects, reported as [`Event::ProtocolError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The peer's bytes could not be framed (see [`WireError`]).
    #[error("malformed TCPCL input: {0}")]
    Wire(#[from] WireError),
    /// The peer's contact header has another version (RFC 9174 §4.3).
    #[error("peer speaks TCPCL version {version}, not 4")]
    VersionMismatch {
        /// The peer's version.
        version: u8,
    },
    /// A message that is not valid in the current phase (§5.1.2 "Message
    /// Unexpected").
    #[error("unexpected message type {message_type:#04x} in phase {phase:?}")]
    UnexpectedMessage {
        /// Our phase.
        phase: Phase,
        /// The message type.
        message_type: u8,
    },
    /// A critical session extension item we do not know (§4.8).
    #[error("unknown critical session extension item type {item_type:#06x}")]
    UnknownCriticalSessionExtension {
        /// Its type.
        item_type: u16,
    },
    /// The peer's segment MRU is 0: nothing could be sent (§4.7).
    #[error("peer segment MRU of 0 is unacceptable")]
    UnacceptableSegmentMru,
    /// The peer rejected one of our messages (§5.1.2).
    #[error("peer rejected message type {rejected_header:#04x}: {reason:?}")]
    PeerRejected {
        /// The peer's reason.
        reason: RejectReason,
        /// The rejected message type.
        rejected_header: u8,
    },
    /// An XFER_ACK or XFER_REFUSE for a transfer we never started.
    #[error("acknowledgement or refusal for unknown transfer {transfer_id}")]
    UnknownTransfer {
        /// The transfer ID.
        transfer_id: u64,
    },
    /// An XFER_ACK acknowledging more than we sent, or less than before.
    #[error("transfer {transfer_id}: acknowledged length {acknowledged_len} but {sent} sent, {acked} acked before")]
    BadAckLength {
        /// The transfer ID.
        transfer_id: u64,
        /// The acknowledged length.
        acknowledged_len: u64,
        /// Octets we sent.
        sent: u64,
        /// Octets acknowledged before.
        acked: u64,
    },
    /// A segment without START for a transfer that is not in progress.
    #[error("segment of transfer {transfer_id} without START")]
    SegmentWithoutStart {
        /// The transfer ID.
        transfer_id: u64,
    },
    /// The peer started a transfer before ending the previous one (§5.2.2
    /// forbids interleaving); the previous one is dropped.
    #[error("transfer {transfer_id} abandoned without END")]
    TransferAbandoned {
        /// The abandoned transfer.
        transfer_id: u64,
    },
    /// The data does not match the Transfer Length extension (§5.2.5.1).
    #[error("transfer {transfer_id}: declared {declared} octets, received {received}")]
    TransferLengthMismatch {
        /// The transfer ID.
        transfer_id: u64,
        /// The declared total.
        declared: u64,
        /// Octets received so far.
        received: u64,
    },
    /// The contact header or SESS_INIT did not arrive in time.
    #[error("contact header or SESS_INIT exchange timed out")]
    ContactTimeout,
    /// Nothing received for twice the keepalive interval (§5.1.1).
    #[error("nothing received for twice the keepalive interval")]
    IdleTimeout,
    /// The peer did not acknowledge any of our transfer for
    /// [`Config::transfer_timeout_ms`].
    #[error("transfer {transfer_id}: no acknowledgement from the peer for {waited_ms} ms")]
    AckTimeout {
        /// Our oldest unacknowledged transfer.
        transfer_id: u64,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The peer started a transfer and sent no further segment of it for
    /// [`Config::transfer_timeout_ms`].
    #[error("transfer {transfer_id}: peer stalled mid-transfer for {waited_ms} ms")]
    TransferStalled {
        /// The peer's transfer.
        transfer_id: u64,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The Ending phase lasted longer than the termination timeout.
    #[error("session termination timed out")]
    TerminationTimeout,
    /// The transport closed before SESS_TERM was exchanged both ways.
    #[error("connection closed before the session terminated")]
    ConnectionLost,
    /// TLS is required ([`Config::require_tls`]) and the peer did not offer it.
    #[error("TLS is required and the peer does not offer it (no CAN_TLS)")]
    TlsRequired,
    /// TLS is required for the node ID the peer claims
    /// ([`Config::require_tls_for`]) and the session has none.
    #[error("{node_id} must use TLS, and this session has none")]
    TlsRequiredForNode {
        /// The node ID in the peer's SESS_INIT.
        node_id: String,
    },
    /// The peer's SESS_INIT claims a node ID its TLS certificate does not
    /// name (RFC 9174 §4.4.3).
    #[error("the peer claims to be {claimed} but its certificate names {certified:?}")]
    NodeIdNotCertified {
        /// The node ID in the peer's SESS_INIT.
        claimed: String,
        /// The node IDs in its certificate.
        certified: Vec<String>,
    },
}

/// Why a command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The session is closed.
    #[error("session is closed")]
    Closed,
    /// The session is Ending: no new transfers (RFC 9174 §6.1).
    #[error("session is terminating")]
    Terminating,
    /// The bundle is larger than the peer's transfer MRU.
    #[error("bundle of {len} octets exceeds the peer's transfer MRU of {peer_transfer_mru}")]
    ExceedsPeerTransferMru {
        /// The bundle length.
        len: u64,
        /// The peer's transfer MRU.
        peer_transfer_mru: u64,
    },
    /// All 2^64 transfer IDs are used; RFC 9174 §5.2.1 asks to close with
    /// "Resource Exhaustion".
    #[error("transfer IDs exhausted")]
    TransferIdsExhausted,
    /// No received transfer with this ID awaits a decision.
    #[error("no received transfer {0:?} awaits a decision")]
    UnknownTransfer(TransferId),
    /// The session is not waiting for TLS.
    #[error("session is not in the TLS phase")]
    NotInTlsPhase,
}

/// One of our transfers.
struct Outgoing {
    id: u64,
    data: Arc<[u8]>,
    /// Octets put into segments so far.
    sent: usize,
    /// Octets the peer acknowledged so far.
    acked: u64,
    started: bool,
    end_sent: bool,
}

/// The peer's transfer being reassembled.
struct Incoming {
    id: u64,
    data: Vec<u8>,
    declared: Option<u64>,
}

/// The XFER_ACK of a received transfer's last segment, held back until the
/// owner accepts the bundle.
#[derive(Clone, Copy)]
struct FinalAck {
    flags: SegmentFlags,
    len: u64,
}

/// How much reassembly reserves ahead from a Transfer Length extension. The
/// declared length is checked against the transfer MRU first, but a peer can
/// still declare a lot and send little; beyond this the buffer grows with data.
const RESERVE_CAP: u64 = 1 << 20;

/// One TCPCLv4 session. See the [module documentation](self).
pub struct Session {
    config: Config,
    limits: Limits,
    phase: Phase,
    created: u64,
    last_rx: u64,
    last_tx: u64,
    ending_since: u64,
    /// When the peer last acknowledged (or refused) one of our transfers, or
    /// when we started waiting for it to.
    tx_progress: u64,
    /// When the current incoming transfer last received a segment.
    rx_progress: u64,
    negotiated: Option<Negotiated>,
    rx_buf: Vec<u8>,
    control: Vec<u8>,
    events: VecDeque<Event>,
    term_sent: bool,
    term_received: bool,
    /// `None` once every transfer ID has been used.
    next_transfer_id: Option<u64>,
    outgoing: VecDeque<Outgoing>,
    incoming: Option<Incoming>,
    awaiting_accept: BTreeMap<u64, FinalAck>,
    /// Octets of the bundles in `awaiting_accept`.
    awaiting_bytes: u64,
    last_refused: Option<u64>,
    /// TLS was negotiated and the I/O side reported it established.
    tls: bool,
    /// The node IDs the peer's TLS certificate names.
    certified: Vec<String>,
}

impl Session {
    /// A new session at time `now` (ms). The active side queues its contact
    /// header at once (RFC 9174 §4.2); the passive side waits for the peer's.
    pub fn new(config: Config, now: u64) -> Result<Session, ConfigError> {
        config.validate()?;
        let mut session = Session {
            limits: config.limits(),
            config,
            phase: Phase::ContactHeader,
            created: now,
            last_rx: now,
            last_tx: now,
            ending_since: now,
            tx_progress: now,
            rx_progress: now,
            negotiated: None,
            rx_buf: Vec::new(),
            control: Vec::new(),
            events: VecDeque::new(),
            term_sent: false,
            term_received: false,
            next_transfer_id: Some(0),
            outgoing: VecDeque::new(),
            incoming: None,
            awaiting_accept: BTreeMap::new(),
            awaiting_bytes: 0,
            last_refused: None,
            tls: false,
            certified: Vec::new(),
        };
        if session.config.active {
            session.send_contact_header();
        }
        Ok(session)
    }

    // ----- getters -------------------------------------------------------

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The negotiated parameters, once SESS_INIT has been exchanged.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Whether transfers can flow now.
    pub fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// Whether the session is over (flush the output, then close).
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Our transfers not yet acknowledged, refused or failed.
    pub fn pending_transfers(&self) -> usize {
        self.outgoing.len()
    }

    /// Whether [`Session::poll_transmit`] has something to return: register
    /// interest in the socket becoming writable while this is true.
    pub fn has_pending_transmit(&self) -> bool {
        if !self.control.is_empty() {
            return true;
        }
        if self.negotiated.is_none() || !matches!(self.phase, Phase::Established | Phase::Ending) {
            return false;
        }
        // The same test fill_segments makes for its next segment.
        match self.outgoing.iter().position(|o| !o.end_sent) {
            Some(idx) => {
                idx < self.config.max_pipelined_transfers
                    && (self.outgoing[idx].started || self.phase == Phase::Established)
            }
            None => false,
        }
    }

    /// Whether the owner should read more from the connection. False while
    /// received bundles awaiting [`Session::accept_transfer`] reach
    /// [`Config::max_unaccepted_transfers`] or [`Config::max_unaccepted_bytes`];
    /// call [`Session::resume_input`] after accepting or refusing some.
    pub fn wants_input(&self) -> bool {
        !self.intake_full() || self.incoming.is_some() || self.phase == Phase::Closed
    }

    /// Parses input that waited while the intake was full.
    pub fn resume_input(&mut self, now: u64) {
        if !self.rx_buf.is_empty() && !self.intake_full() && self.phase != Phase::Tls {
            self.process_input(now);
        }
    }

    /// Octets of input held back as part of an incomplete message. Bounded
    /// by [`Limits::max_message_len`] plus the last input chunk, except in
    /// [`Phase::Tls`], where input waits for [`Session::take_unprocessed_input`].
    pub fn buffered_input_len(&self) -> usize {
        self.rx_buf.len()
    }

    // ----- inputs --------------------------------------------------------

    /// Bytes received from the peer at `now`. Parses every complete message;
    /// a partial one waits for more.
    pub fn handle_bytes(&mut self, now: u64, bytes: &[u8]) {
        if self.phase == Phase::Closed || bytes.is_empty() {
            return;
        }
        // §5.1.1 idle detection counts any received octet as liveness, so a
        // long segment arriving slowly does not time the session out.
        self.last_rx = now;
        self.rx_buf.extend_from_slice(bytes);
        self.process_input(now);
    }

    /// Time has reached `now`: send a KEEPALIVE when idle, end the session
    /// when the peer went silent, and enforce the contact and termination
    /// timeouts.
    pub fn handle_timeout(&mut self, now: u64) {
        match self.phase {
            Phase::Closed => {}
            Phase::ContactHeader | Phase::Tls => {
                if now >= self.contact_deadline() {
                    // No contact header yet: there is no session to SESS_TERM.
                    self.protocol_error(SessionError::ContactTimeout);
                    self.finish();
                }
            }
            Phase::SessInit => {
                if now >= self.contact_deadline() {
                    self.protocol_error(SessionError::ContactTimeout);
                    self.terminate(now, SessTermReason::IdleTimeout);
                    self.finish();
                }
            }
            Phase::Established | Phase::Ending => {
                if self.phase == Phase::Ending
                    && now >= self.ending_since.saturating_add(self.config.termination_timeout_ms)
                {
                    self.protocol_error(SessionError::TerminationTimeout);
                    self.finish();
                    return;
                }
                if self.phase == Phase::Established {
                    self.check_transfer_progress(now);
                }
                let keepalive_ms = self.keepalive_ms();
                if keepalive_ms == 0 {
                    return;
                }
                // §5.1.1: nothing received for (exactly, as the RFC advises
                // when not configurable) twice the keepalive interval.
                if !self.term_sent && now >= self.last_rx.saturating_add(2 * keepalive_ms) {
                    self.protocol_error(SessionError::IdleTimeout);
                    self.terminate(now, SessTermReason::IdleTimeout);
                }
                // §5.1.1: KEEPALIVE when nothing was sent for the interval
                // (output already waiting will do instead).
                if self.phase != Phase::Closed
                    && !self.has_pending_transmit()
                    && now >= self.last_tx.saturating_add(keepalive_ms)
                {
                    self.push(&Message::Keepalive);
                    self.last_tx = now;
                }
            }
        }
    }

    /// The transport closed (EOF or error). Transfers not yet acknowledged fail.
    pub fn handle_connection_closed(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        if !(self.term_sent && self.term_received) {
            self.protocol_error(SessionError::ConnectionLost);
        }
        self.finish();
    }

    // ----- commands ------------------------------------------------------

    /// Queue a bundle for transfer; transfers go out in the order queued,
    /// segmented to the peer's segment MRU. May be called before the session
    /// is established. The bundle is not copied until it is segmented into
    /// the output.
    pub fn send_bundle(&mut self, bundle: impl Into<Arc<[u8]>>) -> Result<TransferId, CommandError> {
        match self.phase {
            Phase::Closed => return Err(CommandError::Closed),
            Phase::Ending => return Err(CommandError::Terminating),
            _ => {}
        }
        let data: Arc<[u8]> = bundle.into();
        let len = data.len() as u64;
        if let Some(neg) = &self.negotiated {
            if self.config.respect_peer_transfer_mru && len > neg.peer_transfer_mru {
                return Err(CommandError::ExceedsPeerTransferMru { len, peer_transfer_mru: neg.peer_transfer_mru });
            }
        }
        let id = self.next_transfer_id.ok_or(CommandError::TransferIdsExhausted)?;
        self.next_transfer_id = id.checked_add(1);
        self.outgoing.push_back(Outgoing { id, data, sent: 0, acked: 0, started: false, end_sent: false });
        Ok(TransferId(id))
    }

    /// The bundle of a received transfer is durable: send the final XFER_ACK
    /// (RFC 9174 §5.2.3), telling the peer it may drop its copy.
    pub fn accept_transfer(&mut self, transfer_id: TransferId) -> Result<(), CommandError> {
        if self.phase == Phase::Closed {
            return Err(CommandError::Closed);
        }
        let fin = self.awaiting_accept.remove(&transfer_id.0).ok_or(CommandError::UnknownTransfer(transfer_id))?;
        self.awaiting_bytes -= fin.len;
        self.push(&Message::XferAck(XferAck {
            flags: fin.flags,
            transfer_id: transfer_id.0,
            acknowledged_len: fin.len,
        }));
        self.maybe_close();
        Ok(())
    }

    /// Refuse a received transfer instead of accepting it (RFC 9174 §5.2.4
    /// allows a refusal after segments were acknowledged).
    pub fn refuse_transfer(&mut self, transfer_id: TransferId, reason: RefuseReason) -> Result<(), CommandError> {
        if self.phase == Phase::Closed {
            return Err(CommandError::Closed);
        }
        let id = transfer_id.0;
        let awaited = self.awaiting_accept.remove(&id);
        if let Some(fin) = &awaited {
            self.awaiting_bytes -= fin.len;
        }
        if awaited.is_some() || self.incoming.as_ref().is_some_and(|inc| inc.id == id) {
            self.refuse_incoming(id, reason);
            self.maybe_close();
            Ok(())
        } else {
            Err(CommandError::UnknownTransfer(transfer_id))
        }
    }

    /// Terminate the session cleanly with SESS_TERM (RFC 9174 §6.1): transfers
    /// in progress finish, queued ones fail, then the session closes. Before
    /// the contact headers are exchanged there is no session to terminate,
    /// and the session simply closes.
    pub fn close(&mut self, now: u64, reason: SessTermReason) {
        match self.phase {
            Phase::Closed => {}
            Phase::ContactHeader | Phase::Tls => self.finish(),
            Phase::SessInit | Phase::Established | Phase::Ending => self.terminate(now, reason),
        }
    }

    /// In [`Phase::Tls`]: the bytes received after the peer's contact header,
    /// which belong to the TLS handshake.
    pub fn take_unprocessed_input(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.rx_buf)
    }

    /// The TLS handshake completed and authenticated the peer's certificate,
    /// which names `certified_node_ids` (RFC 9174 §4.4.1: its id-on-bundleEID
    /// subjectAltNames). SESS_INIT follows; the node ID the peer claims there
    /// must be one of them (§4.4.3), and an undisclosed one becomes the first.
    pub fn tls_established(&mut self, now: u64, certified_node_ids: Vec<String>) -> Result<(), CommandError> {
        if self.phase != Phase::Tls {
            return Err(CommandError::NotInTlsPhase);
        }
        self.tls = true;
        self.certified = certified_node_ids;
        self.enter_sess_init();
        self.process_input(now);
        Ok(())
    }

    // ----- outputs -------------------------------------------------------

    /// The next bytes to write to the peer, at most about
    /// [`Config::transmit_batch`] octets (whole messages), or `None`.
    pub fn poll_transmit(&mut self, now: u64) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let limit = self.config.transmit_batch;
        self.transmit_into(now, &mut out, limit);
        (!out.is_empty()).then_some(out)
    }

    /// Append pending output to `out`: control messages first, then segments
    /// until `out` grew by `max_len` octets (or by one message if that is
    /// longer). Returns the number of octets appended. Each bundle octet is
    /// copied exactly once, from the queued bundle into `out`.
    pub fn transmit_into(&mut self, now: u64, out: &mut Vec<u8>, max_len: usize) -> usize {
        let start = out.len();
        if out.is_empty() {
            std::mem::swap(out, &mut self.control);
        } else {
            out.append(&mut self.control);
        }
        // The peer's clock for acknowledging starts when the first segment
        // goes out after a time with nothing awaiting its acks.
        if !self.awaiting_peer() {
            self.tx_progress = now;
        }
        // A `max_len` of 0 is taken as 1, so output always makes progress.
        self.fill_segments(out, start.saturating_add(max_len.max(1)));
        let n = out.len() - start;
        if n > 0 {
            self.last_tx = now;
        }
        n
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.phase {
            Phase::Closed => None,
            Phase::ContactHeader | Phase::Tls | Phase::SessInit => Some(self.contact_deadline()),
            Phase::Established | Phase::Ending => {
                let mut deadline: Option<u64> = None;
                let mut consider = |t: u64| deadline = Some(deadline.map_or(t, |d| d.min(t)));
                let keepalive_ms = self.keepalive_ms();
                if keepalive_ms > 0 {
                    // While output waits (the socket may be full) a KEEPALIVE
                    // would add nothing; the deadline returns once it is sent.
                    if !self.has_pending_transmit() {
                        consider(self.last_tx.saturating_add(keepalive_ms));
                    }
                    if !self.term_sent {
                        consider(self.last_rx.saturating_add(2 * keepalive_ms));
                    }
                }
                if self.phase == Phase::Ending {
                    consider(self.ending_since.saturating_add(self.config.termination_timeout_ms));
                } else if let Some(t) = self.transfer_deadline() {
                    consider(t);
                }
                deadline
            }
        }
    }

    // ----- internals -----------------------------------------------------

    /// When the transfer that waits longest for the peer times out, if one waits.
    fn transfer_deadline(&self) -> Option<u64> {
        let timeout = self.config.transfer_timeout_ms;
        if timeout == 0 || self.term_sent {
            return None;
        }
        let tx = self.awaiting_peer().then(|| self.tx_progress.saturating_add(timeout));
        let rx = self.incoming.as_ref().map(|_| self.rx_progress.saturating_add(timeout));
        tx.into_iter().chain(rx).min()
    }

    /// Whether one of our transfers has segments out that the peer has not
    /// fully acknowledged.
    fn awaiting_peer(&self) -> bool {
        self.outgoing.front().is_some_and(|o| o.started)
    }

    /// Ends the session when a transfer stopped making progress.
    fn check_transfer_progress(&mut self, now: u64) {
        let timeout = self.config.transfer_timeout_ms;
        if timeout == 0 || self.term_sent {
            return;
        }
        if self.awaiting_peer() && now >= self.tx_progress.saturating_add(timeout) {
            let transfer_id = self.outgoing.front().map_or(0, |o| o.id);
            let waited_ms = now - self.tx_progress;
            self.protocol_error(SessionError::AckTimeout { transfer_id, waited_ms });
            self.terminate(now, SessTermReason::IdleTimeout);
        } else if let Some(inc) = self.incoming.as_ref().filter(|_| now >= self.rx_progress.saturating_add(timeout)) {
            let err = SessionError::TransferStalled { transfer_id: inc.id, waited_ms: now - self.rx_progress };
            self.protocol_error(err);
            self.terminate(now, SessTermReason::IdleTimeout);
        }
    }

    fn intake_full(&self) -> bool {
        self.awaiting_accept.len() >= self.config.max_unaccepted_transfers
            || self.awaiting_bytes >= self.config.max_unaccepted_bytes
    }

    fn contact_deadline(&self) -> u64 {
        self.created.saturating_add(self.config.contact_timeout_ms)
    }

    fn keepalive_ms(&self) -> u64 {
        self.negotiated.as_ref().map_or(0, |n| u64::from(n.keepalive) * 1000)
    }

    fn push(&mut self, msg: &Message<'_>) {
        msg.emit(&mut self.control);
    }

    fn protocol_error(&mut self, err: SessionError) {
        self.events.push_back(Event::ProtocolError(err));
    }

    fn send_contact_header(&mut self) {
        let flags = if self.config.can_tls { ContactFlags::CAN_TLS } else { ContactFlags::EMPTY };
        ContactHeader::new(flags).emit(&mut self.control);
    }

    fn send_sess_init(&mut self) {
        let msg = Message::SessInit(SessInit {
            keepalive: self.config.keepalive_secs,
            segment_mru: self.config.segment_mru,
            transfer_mru: self.config.transfer_mru,
            node_id: &self.config.node_id,
            extensions: ExtensionItems::EMPTY,
        });
        msg.emit(&mut self.control);
    }

    fn process_input(&mut self, now: u64) {
        let mut buf = std::mem::take(&mut self.rx_buf);
        let mut pos = 0;
        while pos < buf.len() {
            match self.phase {
                Phase::Closed | Phase::Tls => break,
                Phase::ContactHeader => match ContactHeader::parse(&buf[pos..]) {
                    Ok(None) => break,
                    Ok(Some((header, n))) => {
                        pos += n;
                        self.on_contact_header(now, header);
                    }
                    Err(err) => {
                        self.on_wire_error(now, err);
                        break;
                    }
                },
                // Received bundles wait for the owner: stop between transfers.
                Phase::Established | Phase::Ending if self.intake_full() && self.incoming.is_none() => break,
                Phase::SessInit | Phase::Established | Phase::Ending => match Message::parse(&buf[pos..], &self.limits)
                {
                    Ok(None) => break,
                    Ok(Some((msg, n))) => {
                        pos += n;
                        self.on_message(now, msg);
                    }
                    Err(err) => {
                        self.on_wire_error(now, err);
                        break;
                    }
                },
            }
        }
        if self.phase != Phase::Closed {
            buf.drain(..pos);
            self.rx_buf = buf;
        }
    }

    /// The stream can not be framed any further.
    fn on_wire_error(&mut self, now: u64, err: WireError) {
        self.protocol_error(SessionError::Wire(err));
        match err {
            // RFC 9174 §4.3: not a TCPCL peer; close without a word.
            WireError::BadMagic => {}
            // §5.1.2: MSG_REJECT "Message Type Unknown", then close.
            WireError::UnknownMessageType(header) => {
                self.push(&Message::MsgReject(MsgReject { reason: RejectReason::TypeUnknown, rejected_header: header }))
            }
            // §6.1 allows an unclean termination: SESS_TERM, then close at
            // once, since the rest of the stream can not be parsed.
            _ => {
                let reason = match (self.phase, err) {
                    (Phase::SessInit, _) => SessTermReason::ContactFailure,
                    (_, WireError::SegmentTooLong { .. } | WireError::ExtensionsTooLong { .. }) => {
                        SessTermReason::ResourceExhaustion
                    }
                    _ => SessTermReason::Unknown,
                };
                self.terminate(now, reason);
            }
        }
        self.finish();
    }

    fn on_contact_header(&mut self, now: u64, header: ContactHeader) {
        if header.version != VERSION {
            self.protocol_error(SessionError::VersionMismatch { version: header.version });
            if !self.config.active {
                // RFC 9174 §4.3: the passive entity sends its contact header
                // and terminates with "Version Mismatch". The active entity
                // (§4.3) just closes the connection.
                self.send_contact_header();
                self.push(&Message::SessTerm(SessTerm {
                    flags: SessTermFlags::EMPTY,
                    reason: SessTermReason::VersionMismatch,
                }));
                self.term_sent = true;
                self.events.push_back(Event::Terminated { reason: SessTermReason::VersionMismatch, by_peer: false });
            }
            self.finish();
            return;
        }
        if !self.config.active {
            // §4.2: the passive entity answers the active one's header.
            self.send_contact_header();
        }
        if self.config.can_tls && header.flags.contains(ContactFlags::CAN_TLS) {
            // §4.4: TLS right after the contact headers, active = client.
            self.phase = Phase::Tls;
            self.events.push_back(Event::StartTls { client: self.config.active });
        } else if self.config.require_tls {
            // §4.3: TLS required by policy but not negotiated: "Contact
            // Failure", then close (no SESS_INIT will be parsed).
            self.protocol_error(SessionError::TlsRequired);
            self.terminate(now, SessTermReason::ContactFailure);
            self.finish();
        } else {
            self.enter_sess_init();
        }
    }

    fn enter_sess_init(&mut self) {
        self.phase = Phase::SessInit;
        // §4.6 /: the active entity sends SESS_INIT first; the
        // passive one answers it.
        if self.config.active {
            self.send_sess_init();
        }
    }

    fn on_message(&mut self, now: u64, msg: Message<'_>) {
        match (self.phase, msg) {
            // Liveness was noted in handle_bytes.
            (_, Message::Keepalive) => {}
            (_, Message::SessTerm(term)) => self.on_sess_term(now, term),
            (_, Message::MsgReject(reject)) => self.protocol_error(SessionError::PeerRejected {
                reason: reject.reason,
                rejected_header: reject.rejected_header,
            }),
            (Phase::SessInit, Message::SessInit(init)) => self.on_sess_init(now, init),
            (Phase::Established | Phase::Ending, Message::XferSegment(seg)) => {
                self.rx_progress = now;
                self.on_segment(seg);
            }
            (Phase::Established | Phase::Ending, Message::XferAck(ack)) => {
                self.tx_progress = now;
                self.on_ack(ack);
            }
            (Phase::Established | Phase::Ending, Message::XferRefuse(refuse)) => {
                self.tx_progress = now;
                self.on_refuse(refuse);
            }
            // §5.1.2: e.g. SESS_INIT once established, or a transfer message
            // before SESS_INIT: "Message Unexpected".
            (phase, other) => {
                let message_type = other.message_type();
                self.reject(message_type, SessionError::UnexpectedMessage { phase, message_type });
            }
        }
    }

    fn reject(&mut self, header: u8, err: SessionError) {
        self.push(&Message::MsgReject(MsgReject { reason: RejectReason::Unexpected, rejected_header: header }));
        self.protocol_error(err);
    }

    fn on_sess_init(&mut self, now: u64, init: SessInit<'_>) {
        // RFC 9174 §4.8: an unknown critical item ends the session with
        // "Contact Failure"; unknown non-critical ones are skipped. We know no
        // session extensions, so any critical item is unknown.
        if let Some(item) = init.extensions.iter().find(ExtensionItem::is_critical) {
            self.protocol_error(SessionError::UnknownCriticalSessionExtension { item_type: item.item_type });
            self.terminate(now, SessTermReason::ContactFailure);
            return;
        }
        // §4.7: an unacceptable MRU ends the session with "Contact Failure".
        if init.segment_mru == 0 {
            self.protocol_error(SessionError::UnacceptableSegmentMru);
            self.terminate(now, SessTermReason::ContactFailure);
            return;
        }
        let claimed = (!init.node_id.is_empty()).then(|| init.node_id.to_owned());
        let peer_node_id = if self.tls {
            match claimed {
                // §4.4.3: the certificate must name the node ID claimed.
                Some(id) if !self.certified.contains(&id) => {
                    let certified = self.certified.clone();
                    self.protocol_error(SessionError::NodeIdNotCertified { claimed: id, certified });
                    self.terminate(now, SessTermReason::ContactFailure);
                    return;
                }
                Some(id) => Some(id),
                None => self.certified.first().cloned(),
            }
        } else {
            if let Some(id) = claimed.as_ref().filter(|id| self.config.require_tls_for.contains(id)) {
                self.protocol_error(SessionError::TlsRequiredForNode { node_id: id.clone() });
                self.terminate(now, SessTermReason::ContactFailure);
                return;
            }
            claimed
        };
        if !self.config.active {
            self.send_sess_init();
        }
        let negotiated = Negotiated {
            peer_node_id,
            // §4.7: the minimum of both; 0 disables keepalives.
            keepalive: self.config.keepalive_secs.min(init.keepalive),
            peer_segment_mru: init.segment_mru,
            peer_transfer_mru: init.transfer_mru,
            tls: self.tls,
        };
        self.events.push_back(Event::Established {
            peer_node_id: negotiated.peer_node_id.clone(),
            peer_segment_mru: negotiated.peer_segment_mru,
            peer_transfer_mru: negotiated.peer_transfer_mru,
            keepalive: negotiated.keepalive,
            tls: negotiated.tls,
        });
        let peer_transfer_mru = negotiated.peer_transfer_mru;
        self.negotiated = Some(negotiated);
        self.phase = Phase::Established;
        self.last_rx = now;
        if self.config.respect_peer_transfer_mru {
            // Bundles queued before the peer's transfer MRU was known.
            let (fit, too_large): (VecDeque<_>, VecDeque<_>) =
                std::mem::take(&mut self.outgoing).into_iter().partition(|o| o.data.len() as u64 <= peer_transfer_mru);
            self.outgoing = fit;
            for o in too_large {
                self.events.push_back(Event::TransferFailed {
                    transfer_id: TransferId(o.id),
                    reason: FailReason::ExceedsPeerTransferMru,
                });
            }
        }
    }

    fn on_sess_term(&mut self, now: u64, term: SessTerm) {
        if self.term_received {
            return;
        }
        self.term_received = true;
        if !self.term_sent {
            // RFC 9174 §6.1: acknowledge with identical content but REPLY.
            self.push(&Message::SessTerm(SessTerm { flags: term.flags | SessTermFlags::REPLY, reason: term.reason }));
            self.term_sent = true;
            self.enter_ending(now, term.reason, true);
        }
        self.maybe_close();
    }

    /// Send SESS_TERM (once) and enter Ending.
    fn terminate(&mut self, now: u64, reason: SessTermReason) {
        if self.term_sent || self.phase == Phase::Closed {
            return;
        }
        self.push(&Message::SessTerm(SessTerm { flags: SessTermFlags::EMPTY, reason }));
        self.term_sent = true;
        self.enter_ending(now, reason, false);
        self.maybe_close();
    }

    fn enter_ending(&mut self, now: u64, reason: SessTermReason, by_peer: bool) {
        if matches!(self.phase, Phase::Ending | Phase::Closed) {
            return;
        }
        self.phase = Phase::Ending;
        self.ending_since = now;
        self.events.push_back(Event::Terminated { reason, by_peer });
        // §6.1: no new outgoing transfer once Ending; those not begun fail
        // now so the owner can send them another way.
        let (started, queued): (VecDeque<_>, VecDeque<_>) =
            std::mem::take(&mut self.outgoing).into_iter().partition(|o| o.started);
        self.outgoing = started;
        for o in queued {
            self.events
                .push_back(Event::TransferFailed { transfer_id: TransferId(o.id), reason: FailReason::SessionClosed });
        }
    }

    /// Close once both SESS_TERMs are exchanged and nothing is in flight.
    fn maybe_close(&mut self) {
        if self.phase == Phase::Ending
            && self.term_sent
            && self.term_received
            && self.outgoing.is_empty()
            && self.incoming.is_none()
            && self.awaiting_accept.is_empty()
        {
            self.finish();
        }
    }

    fn finish(&mut self) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        for o in std::mem::take(&mut self.outgoing) {
            self.events
                .push_back(Event::TransferFailed { transfer_id: TransferId(o.id), reason: FailReason::SessionClosed });
        }
        self.incoming = None;
        self.awaiting_accept.clear();
        self.awaiting_bytes = 0;
        self.rx_buf = Vec::new();
        self.events.push_back(Event::Closed);
    }

    // ----- receiving transfers -------------------------------------------

    fn on_segment(&mut self, seg: XferSegment<'_>) {
        let id = seg.transfer_id;
        if !seg.flags.is_start() {
            if self.incoming.as_ref().is_some_and(|inc| inc.id == id) {
                self.receive_data(seg);
            } else if self.last_refused == Some(id) {
                // RFC 9174 §5.2.4 asks to refuse segments that crossed our
                // XFER_REFUSE again. We drop them silently instead: dtn7-rs
                // 0.21 treats a second XFER_REFUSE for one transfer as a
                // protocol error and drops the session, and a compliant
                // sender has stopped at the first refusal anyway.
            } else {
                self.reject(message_type::XFER_SEGMENT, SessionError::SegmentWithoutStart { transfer_id: id });
            }
            return;
        }
        if let Some(previous) = self.incoming.take() {
            // §5.2.2: no interleaving. The previous transfer never ended;
            // its sender gave up on it.
            self.protocol_error(SessionError::TransferAbandoned { transfer_id: previous.id });
        }
        // §6.1: no new incoming transfers while Ending.
        if self.phase == Phase::Ending {
            self.refuse_incoming(id, RefuseReason::SessionTerminating);
            return;
        }
        let mut declared = None;
        for item in seg.extensions.iter() {
            if let Some(len) = item.transfer_length() {
                declared = Some(len);
            } else if item.is_critical() {
                // §5.2.5: an unknown (or, for type 0x0001, malformed)
                // critical item refuses the transfer with "Extension Failure".
                self.refuse_incoming(id, RefuseReason::ExtensionFailure);
                return;
            }
            // Non-critical items we do not understand are skipped (§5.2.5).
            // dtn7-rs puts a bundle ID string under type 0x0001; it is not 8
            // octets long, so it lands here.
        }
        let mut data = Vec::new();
        if let Some(len) = declared {
            // The transfer MRU bounds what we reassemble (§4.6); a declared
            // length beyond it is refused before any data is taken.
            if len > self.config.transfer_mru {
                self.refuse_incoming(id, RefuseReason::NoResources);
                return;
            }
            data.reserve(usize::try_from(len.min(RESERVE_CAP)).unwrap_or(0));
        }
        self.incoming = Some(Incoming { id, data, declared });
        self.receive_data(seg);
    }

    fn receive_data(&mut self, seg: XferSegment<'_>) {
        let id = seg.transfer_id;
        let Some(inc) = self.incoming.as_mut() else { return };
        // usize -> u64 never truncates; the sum is bounded by the transfer
        // MRU (checked before appending) plus one segment MRU.
        let received = (inc.data.len() as u64).saturating_add(seg.data.len() as u64);
        if received > self.config.transfer_mru {
            self.refuse_incoming(id, RefuseReason::NoResources);
            return;
        }
        if let Some(declared) = inc.declared {
            if received > declared || (seg.flags.is_end() && received != declared) {
                self.protocol_error(SessionError::TransferLengthMismatch { transfer_id: id, declared, received });
                self.refuse_incoming(id, RefuseReason::NotAcceptable);
                return;
            }
        }
        inc.data.extend_from_slice(seg.data);
        if seg.flags.is_end() {
            if let Some(inc) = self.incoming.take() {
                // The final XFER_ACK waits for accept_transfer: the peer must
                // not drop its copy before ours is durable.
                self.awaiting_accept.insert(id, FinalAck { flags: seg.flags, len: received });
                self.awaiting_bytes += received;
                self.events.push_back(Event::BundleReceived { transfer_id: TransferId(id), bundle: inc.data });
            }
        } else {
            // §5.2.3: acknowledge each segment once processed, reflecting its
            // flags octet exactly, reserved bits included.
            self.push(&Message::XferAck(XferAck { flags: seg.flags, transfer_id: id, acknowledged_len: received }));
        }
    }

    fn refuse_incoming(&mut self, id: u64, reason: RefuseReason) {
        self.push(&Message::XferRefuse(XferRefuse { reason, transfer_id: id }));
        if self.incoming.as_ref().is_some_and(|inc| inc.id == id) {
            self.incoming = None;
        }
        self.last_refused = Some(id);
    }

    // ----- sending transfers ---------------------------------------------

    /// Whether `id` is one of ours that has already finished.
    fn is_finished_transfer(&self, id: u64) -> bool {
        let used = self.next_transfer_id.is_none_or(|next| id < next);
        used && !self.outgoing.iter().any(|o| o.id == id)
    }

    fn on_ack(&mut self, ack: XferAck) {
        let id = ack.transfer_id;
        let Some(idx) = self.outgoing.iter().position(|o| o.id == id && o.started) else {
            // A late ack of a transfer already settled (e.g. refused while
            // acks were in flight) is harmless; one for a transfer we never
            // started is "Message Unexpected" (§5.1.2).
            if !self.is_finished_transfer(id) {
                self.reject(message_type::XFER_ACK, SessionError::UnknownTransfer { transfer_id: id });
            }
            return;
        };
        let o = &mut self.outgoing[idx];
        let sent = o.sent as u64;
        if ack.acknowledged_len > sent || ack.acknowledged_len < o.acked {
            let err = SessionError::BadAckLength {
                transfer_id: id,
                acknowledged_len: ack.acknowledged_len,
                sent,
                acked: o.acked,
            };
            self.reject(message_type::XFER_ACK, err);
            return;
        }
        o.acked = ack.acknowledged_len;
        // §5.2.3 wants the acknowledged segment's flags reflected, so the
        // final ack carries END. dtn7-rs 0.21 sends flags 0 on every ack;
        // accepting an ack without START that covers the whole, fully sent
        // transfer loses nothing: the ID and length say the same.
        let whole = o.end_sent && ack.acknowledged_len == o.data.len() as u64;
        if whole && (ack.flags.is_end() || !ack.flags.is_start()) {
            self.outgoing.remove(idx);
            self.events.push_back(Event::TransferAcked { transfer_id: TransferId(id) });
            self.maybe_close();
        }
    }

    fn on_refuse(&mut self, refuse: XferRefuse) {
        let id = refuse.transfer_id;
        match self.outgoing.iter().position(|o| o.id == id && o.started) {
            Some(idx) => {
                // §5.2.4: the sender stops the transfer; remaining segments
                // are not generated since it leaves the queue.
                self.outgoing.remove(idx);
                self.events.push_back(Event::TransferRefused { transfer_id: TransferId(id), reason: refuse.reason });
                self.maybe_close();
            }
            None if self.is_finished_transfer(id) => {}
            None => self.reject(message_type::XFER_REFUSE, SessionError::UnknownTransfer { transfer_id: id }),
        }
    }

    fn fill_segments(&mut self, out: &mut Vec<u8>, limit: usize) {
        if !matches!(self.phase, Phase::Established | Phase::Ending) {
            return;
        }
        let Some(neg) = &self.negotiated else { return };
        // §4.7: our segments never exceed the peer's segment MRU (≥ 1, checked).
        let seg_len = usize::try_from(neg.peer_segment_mru.min(self.config.max_tx_segment)).unwrap_or(usize::MAX);
        let send_transfer_length = self.config.send_transfer_length;
        let may_start = self.phase == Phase::Established;
        while out.len() < limit {
            // Transfers before `idx` are fully sent and await their acks.
            let Some(idx) = self.outgoing.iter().position(|o| !o.end_sent) else { break };
            if idx >= self.config.max_pipelined_transfers {
                break;
            }
            let o = &mut self.outgoing[idx];
            let mut flags = SegmentFlags::EMPTY;
            if !o.started {
                if !may_start {
                    break;
                }
                flags |= SegmentFlags::START;
            }
            let total = o.data.len();
            let n = (total - o.sent).min(seg_len);
            if o.sent + n == total {
                flags |= SegmentFlags::END;
            }
            let mut ext_buf = Vec::new();
            if flags.is_start() && send_transfer_length {
                let total_be = (total as u64).to_be_bytes();
                ExtensionItem { flags: ExtensionFlags::EMPTY, item_type: TRANSFER_LENGTH_EXTENSION, value: &total_be }
                    .emit(&mut ext_buf);
            }
            let ext = ExtensionItems::new_checked(&ext_buf).unwrap_or_default();
            XferSegment::emit_header(flags, o.id, &ext, n as u64, out);
            out.extend_from_slice(&o.data[o.sent..o.sent + n]);
            o.sent += n;
            o.started = true;
            o.end_sent = flags.is_end();
        }
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("active", &self.config.active)
            .field("phase", &self.phase)
            .field("negotiated", &self.negotiated)
            .field("pending_transfers", &self.outgoing.len())
            .field("buffered_input", &self.rx_buf.len())
            .finish_non_exhaustive()
    }
}
