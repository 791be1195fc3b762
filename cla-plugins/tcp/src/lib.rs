//! Ferry's TCP convergence-layer plugin: TCPCLv4 (RFC 9174), MTCP and STCP,
//! with IPND-style discovery compatible with dtn7-rs.
//!
//! Built as a `cdylib` it is a Ferry CLA plugin (ABI 1, see
//! [`ferry_cla_abi`]); as an `rlib` the same plugin runs in-process through
//! [`DESCRIPTOR`] and [`ferry_cla_abi::host::Plugin::in_process`].
//!
//! # Layout
//! Sans-IO protocol code (no sockets, threads or clocks):
//! - [`tcpcl`]: TCPCLv4. [`tcpcl::wire`] holds every message as a `Repr`
//!   type (checked `parse`, `emit`, `buffer_len`); [`tcpcl::session`] holds
//!   [`tcpcl::Session`], the session state machine for either role.
//! - [`mtcp`]: MTCP framing (one CBOR byte string per bundle), as dtn7-rs,
//!   dtn7-go and µD3TN speak it.
//! - [`stcp`]: STCP framing (a u32 length per bundle), as ION speaks it.
//! - [`discovery::beacon`]: dtn7-rs's IPND beacons.
//! - [`tls`]: TCPCLv4 over TLS: credentials, peer authentication by node
//!   ID, and the record layer ([`tls::TlsLayer`]); [`tls::eid`] reads and
//!   writes the id-on-bundleEID names of certificates.
//! - [`settings`]: the plugin's settings and peer URLs.
//!
//! The plugin (tokio, private modules):
//! - [`plugin`]: [`TcpCla`], the [`ferry_cla_abi::Cla`] implementation: its
//!   lifecycle, the registry its tasks share, and the threading and
//!   ownership rules;
//! - `conn`: one TCPCL session's task; `framed`: one MTCP/STCP connection's
//!   task; `dial`: listeners, static peers with reconnect, discovered peers;
//!   [`discovery`]: the beacon task.
//!
//! # Configuring it in ferryd
//!
//! ```toml
//! [[cla]]
//! path = "target/release/libferry_cla_tcp.so"
//! [cla.settings]
//! listen = ["0.0.0.0:4556"]
//! mtcp_listen = ["0.0.0.0:16162"]
//! peers = ["tcpcl://192.0.2.7:4556", "mtcp://192.0.2.8:16162/dtn://node8/"]
//! keepalive_secs = 30
//! # dtn7-rs advertises a 64000-octet transfer MRU but takes more:
//! respect_peer_transfer_mru = false
//! [cla.settings.discovery]
//! enabled = true
//! ```
//!
//! # Settings
//!
//! Unknown keys are errors; every error names its key.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `listen` | `["0.0.0.0:4556"]` | TCPCLv4 listeners (`ip:port`; port 0 picks one, the bound address is logged as `listening on tcpcl://…`) |
//! | `mtcp_listen` | `[]` | MTCP listeners (dtn7-rs uses 16162) |
//! | `stcp_listen` | `[]` | STCP listeners (ION uses 4456) |
//! | `peers` | `[]` | static peers, connected at start and reconnected when lost (backoff 1 s doubling to 60 s, ±25 % jitter); see [`PeerUrl`] |
//! | `keepalive_secs` | `30` | TCPCL keepalive (RFC 9174 §5.1.1), 0 disables; also the STCP keepalive-frame interval on outgoing STCP links |
//! | `segment_mru` | `1048576` | largest TCPCL segment accepted |
//! | `transfer_mru` | `67108864` | largest bundle accepted on any link (TCPCL transfer MRU, MTCP/STCP frame limit); bundles are reassembled in memory |
//! | `respect_peer_transfer_mru` | `true` | never send a TCPCL peer a bundle larger than its transfer MRU (the peer is reported with that MTU, so the host can fragment); turn off for dtn7-rs peers, which advertise 64000 octets and accept more |
//! | `contact_timeout_secs` | `30` | time allowed for the contact header and SESS_INIT exchange |
//! | `transfer_timeout_secs` | `60` | a transfer with no progress this long (no ack from the peer for ours, no next segment of theirs) ends the session with SESS_TERM "idle timeout", keepalives notwithstanding; 0 = never |
//! | `max_connections` | `256` | accepted connections served at once; more are closed |
//! | `max_pipelined_transfers` | `256` | TCPCL transfers sent and awaiting their acknowledgement at once, per session (the receiver's store batches what arrives together, so more in flight means fewer syncs per bundle) |
//! | `max_unaccepted_transfers` | `512` | received bundles awaiting the host's verdict (durable storage), per session; at this many the session stops reading from the peer until the host catches up |
//! | `max_unaccepted_mib` | `64` | the same bound in MiB of bundle data, so a session's memory stays bounded whatever its peer sends |
//! | `threads` | `2` | worker threads of the plugin's runtime |
//! | `discovery.enabled` | `false` | send and receive IPND beacons |
//! | `discovery.beacon_addr` | `"224.0.0.26:3003"` | where beacons go (dtn7-rs's group); multicast groups are joined, unicast works too |
//! | `discovery.interval_secs` | `10` | seconds between beacons |
//! | `discovery.listen` | `"0.0.0.0:3003"` | where beacons are received (SO_REUSEADDR, like dtn7-rs) |
//! | `tls.cert` | | PEM file: this node's certificate (`ferry tls gen` makes one); with a `[tls]` table every TCPCL session offers TLS |
//! | `tls.key` | | PEM file: its private key |
//! | `tls.trust` | | PEM files of trust anchors: each peer's certificate, or the CA that signed them (at least one) |
//! | `tls.require` | `false` | refuse every TCPCL session without TLS (SESS_TERM "Contact Failure") |
//! | `tls.require_for` | `[]` | refuse sessions without TLS from these node IDs |
//!
//! # TLS
//!
//! With a `[tls]` table the plugin sets CAN_TLS in its contact header; when
//! the peer sets it too, TLS 1.3 runs right after the contact headers
//! (RFC 9174 §4.4), the active side as client, both sides presenting
//! certificates. A certificate is accepted when it chains to a `trust`
//! anchor (host names and addresses are not checked); the node IDs it names
//! as subjectAltName otherName id-on-bundleEID are the only ones the peer may
//! claim in SESS_INIT (§4.4.3), else the session ends with "Contact
//! Failure". A peer without TLS (dtn7-rs 0.21 has none) gets a plain session
//! unless `require` or `require_for` says otherwise. MTCP and STCP never use
//! TLS.
//!
//! ```toml
//! [cla.settings.tls]
//! cert = "/var/lib/ferry/tls/cert.pem"   # ferry tls gen --config /etc/ferry/ferryd.toml
//! key = "/var/lib/ferry/tls/key.pem"
//! trust = ["/etc/ferry/peers/ship.pem", "/etc/ferry/peers/camp.pem"]
//! require_for = ["dtn://ship/"]
//! ```
//!
//! Peer URLs (`peers`, and the host's `connect`): `tcpcl://host[:port]`
//! (also `tcp://`), `mtcp://host[:port]/<node-id>`, `stcp://host[:port]/<node-id>`,
//! e.g. `mtcp://192.0.2.8:16162/dtn://node8/` or `stcp://[2001:db8::1]/ipn:5.0`.
//! MTCP and STCP exchange no node IDs, hence the suffix.
//!
//! # What the host sees
//!
//! - **Peers.** A TCPCL session is reported up once SESS_INIT is exchanged:
//!   node ID from the peer's SESS_INIT (an empty one means undisclosed,
//!   RFC 9174 §4.6, unless the peer URL named one), address
//!   `tcpcl://ip:port`, MTU the peer's transfer MRU when
//!   `respect_peer_transfer_mru` is on. The peer handle is the connection's:
//!   a reconnect is a new peer. A node can be up under two handles at once
//!   when both sides dialed (static peers on both, or discovery racing):
//!   both sessions are kept, because dtn7-rs sends only over sessions it
//!   opened. Dialers avoid it where they can: a static TCPCL peer is not
//!   dialed while a TCPCL session with its node is up, and discovery dials
//!   after a random delay and only if no link to the node is up.
//! - **Received bundles** come with a token. TCPCL: the final XFER_ACK is
//!   sent only when `verdict(token, Accepted)` arrives; `Duplicate` refuses
//!   the transfer with XFER_REFUSE "Completed", `NoResources` with "No
//!   Resources", `Invalid` with "Not Acceptable".
//! - **Transmissions**: `Sent` once the peer acknowledged the whole transfer,
//!   or refused it as "Completed" (it has the bundle, RFC 9174 §5.2.4);
//!   `Refused` for "Not Acceptable", "Extension Failure" and unknown reasons,
//!   and for a bundle beyond the peer's transfer MRU; `Failed` (try again
//!   later) for "No Resources", "Retransmit", "Session Terminating" and
//!   whenever the session ends first. Exactly one outcome per accepted
//!   `transmit`.
//! - **MTCP and STCP are unacknowledged**: an outgoing link is up when TCP
//!   connects (node ID from the URL); a bundle counts as `Sent` once written
//!   to the socket. Accepted MTCP/STCP connections are not peers (no node
//!   ID): their bundles arrive with peer handle 0. Verdicts on them change
//!   nothing on the wire.
//! - **Hostile peers** (garbage, wrong magic, another TCPCL version, stalls,
//!   no acknowledgements, absurd lengths) end only their own session, with
//!   what RFC 9174 prescribes (SESS_TERM, MSG_REJECT or a silent close, as
//!   [`tcpcl::Session`] decides); the reason is logged as a warning.
//!
//! # Interoperating with dtn7-rs 0.21
//! - It advertises a 64000-octet transfer MRU yet takes larger bundles: set
//!   `respect_peer_transfer_mru = false` to send it large bundles whole.
//! - It can not parse XFER_REFUSE reason 6 ("Session Terminating") or
//!   MSG_REJECT. Ferry sends them only where RFC 9174 requires (a transfer
//!   started while our session is ending; a message it can not accept);
//!   dtn7-rs then drops the session, and the bundle, never acknowledged,
//!   stays with its sender.
//! - It sends only over sessions it opened (it keys them by address), so
//!   sessions it opens to us are never closed as duplicates.
//! - Its beacons (`discovery`) and its names for agents (`tcp`, `mtcp`) are
//!   understood and used in ours.
//! - tests/dtn7.rs exchanges bundles with a real dtnd over TCPCL and MTCP
//!   when scripts/install-dtn7 has installed it.
//!
//! # Architecture invariant
//! The protocol modules (and [`tls::TlsLayer`]) do no I/O, spawn no thread and read no clock: bytes
//! and the time (milliseconds, from any monotonic origin) are passed in;
//! bytes to write, events and the next deadline come out. Only `plugin`,
//! `conn`, `framed`, `dial` and `discovery`'s task touch sockets and time.
//!
//! Every parser takes untrusted input: declared lengths are checked against
//! configured limits as soon as they are read, before any byte they announce
//! is awaited or allocated, and no input makes any of them panic.

pub mod discovery;
pub mod mtcp;
pub mod plugin;
pub mod settings;
pub mod stcp;
pub mod tcpcl;
pub mod tls;

mod conn;
mod dial;
mod framed;

pub use plugin::{descriptor, TcpCla, DESCRIPTOR};
pub use settings::{PeerUrl, Settings, SettingsError};

#[cfg(feature = "export")]
ferry_cla_abi::export_cla!(plugin::TcpCla);
