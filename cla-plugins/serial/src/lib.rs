//! Ferry's serial convergence-layer plugin: bundles over a tty (an RS-232
//! cable, a USB serial adapter, a radio modem in transparent mode), with
//! CRC-checked frames, acknowledgements, retransmission and a handshake that
//! names the node at the other end.
//!
//! Built as a `cdylib` it is a Ferry CLA plugin (ABI 1, see
//! [`ferry_cla_abi`]); as an `rlib` the same plugin runs in-process through
//! [`DESCRIPTOR`] and [`ferry_cla_abi::host::Plugin::in_process`].
//!
//! # Layout
//! Sans-IO protocol code (no file descriptors, threads or clocks):
//! - [`wire`]: the link frames as a `Repr` type (checked `parse`, `emit`,
//!   `buffer_len`);
//! - [`link`]: [`Link`], the state machine of one end of the link:
//!   handshake, reliable ordered stream, bundle transfers and their results;
//! - [`settings`]: the plugin's settings.
//!
//! The plugin (I/O):
//! - [`tty`]: opening the device raw 8N1 at a baud rate;
//! - [`plugin`]: [`SerialCla`], the [`ferry_cla_abi::Cla`] implementation
//!   and its driver thread (threading and ownership rules there).
//!
//! KISS framing comes from the shared `ferry-cla-kiss` crate.
//!
//! # Configuring it in ferryd
//!
//! One plugin instance drives one device; add a `[[cla]]` block per port.
//! Both ends need the same `baud`.
//!
//! ```toml
//! [[cla]]
//! path = "/usr/lib/ferry/libferry_cla_serial.so"
//! [cla.settings]
//! device = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A1B2C3-if00-port0"
//! baud = 115200
//! ```
//!
//! # Settings
//!
//! Unknown keys are errors; every error names its key.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `device` | (required) | the tty; a `/dev/serial/by-id/…` path survives re-plugging into another USB port |
//! | `baud` | `115200` | line speed (any rate the driver takes, 50 to 16000000); the host is told `baud / 10` bytes/s (8N1) as the link rate |
//! | `max_frame` | `1024` | largest frame sent or accepted, unescaped, header to CRC (46 to 1048576); the smaller of both ends' is used. Smaller frames lose less to noise, larger ones carry more per header |
//! | `window` | `8` | frames sent ahead of an acknowledgement |
//! | `max_bundle_size` | `16777216` | largest bundle accepted (reassembled in memory); announced in HELLO and reported to the host as the peer's MTU, so a larger bundle is fragmented by the sender's node |
//! | `max_transfers` | `8` | bundles sent and awaiting the peer's result; bundles received and awaiting the host's verdict (more are refused "no resources", and the sender retries later) |
//! | `ack_timeout_ms` | `1000` | retransmission timeout, to which the line time of two windows and 8 KiB of buffers at `baud` is added |
//! | `max_retries` | `8` | timeouts in a row without an acknowledgement before the link is declared down |
//! | `hello_interval_ms` | `1000` | HELLO interval while no session is up |
//! | `keepalive_secs` | `5` | an idle session sends a NOP this often, so a vanished peer is noticed within `keepalive_secs + (max_retries + 1) × timeout` |
//! | `reopen_min_ms` | `500` | first delay before reopening a device that failed or disappeared (cable or adapter pulled) |
//! | `reopen_max_secs` | `30` | the delay doubles up to this |
//!
//! # What the host sees
//! - **Peers.** `peer_up` once the handshake is done: the node ID from the
//!   peer's HELLO, address `serial:<device>`, MTU the peer's
//!   `max_bundle_size`, rate `baud / 10` bytes/s. Every session is a new
//!   peer handle. `peer_down` when the session ends: no acknowledgement
//!   after `max_retries` timeouts, the peer started a new session, or the
//!   device failed.
//! - **Received bundles** come with a token; the RESULT that lets the sender
//!   count the bundle as sent goes out only with the host's verdict:
//!   `Accepted` and `Duplicate` (sender: `Sent`), `NoResources` (sender:
//!   `Failed`, it retries later), `Invalid` (sender: `Refused`).
//! - **Transmissions**: exactly one `transmit_done` per accepted `transmit`:
//!   `Sent` on an `Accepted` or `Duplicate` result, `Refused` on `Invalid`
//!   or a bundle beyond the peer's `max_bundle_size`, `Failed` on "no
//!   resources" and for everything unanswered when the session ends.
//! - **Noise and hostile input** (garbage, bad CRCs, overlong frames, frames
//!   that break the protocol, absurd declared lengths): the frame is dropped
//!   and counted; a summary is logged as a warning at most every 5 s
//!   ("dropped 12 frames from the line …; last: CRC-32C mismatch …"; while
//!   no session is up it asks whether both ends use the same baud rate). A
//!   transfer that breaks the stream rules is refused with RESULT `Invalid`,
//!   logged, and the link stays up.
//!
//! # Wire format
//!
//! Everything below is enough to write the other end. Integers are
//! big-endian.
//!
//! **Line.** 8 data bits, no parity, 1 stop bit, no flow control, both ends
//! at the same baud rate. The byte stream is KISS-framed: each frame is
//! `FEND (0xC0)`, the command byte `0x00`, the frame bytes with `0xC0`
//! escaped as `0xDB 0xDC` and `0xDB` as `0xDB 0xDD`, then `FEND`. Frames with
//! another command byte are ignored. Bytes between frames are ignored, so a
//! receiver resynchronises on the next `FEND` after noise.
//!
//! **Frame** (after unescaping):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | type: 1 HELLO, 2 DATA, 3 RESULT, 4 NOP, 5 ACK, 6 NAK |
//! | 1 | 4 | nonce: the sender's session nonce (random, non-zero, new for every session attempt) |
//! | 5 | 4 | seq: sequence number (DATA, RESULT, NOP); 0 in the others |
//! | 9 | 4 | ack: the next sequence number the sender expects from the receiver (cumulative); 0 in HELLO |
//! | 13 | n | body, by type |
//! | 13+n | 4 | CRC-32C (Castagnoli, as in RFC 9171's CRC type 2) of bytes 0 .. 13+n |
//!
//! A frame is at most the receiver's `max_frame` bytes (announced in its
//! HELLO); a longer one is dropped. Bodies:
//!
//! - **HELLO**: version `1` (u8); flags (u8, bit 0 `up`: the sender's session
//!   with the receiver's current nonce is up); echo (u32, the last nonce the
//!   sender received from the receiver, 0 if none); max_frame (u32, at least
//!   46); max_bundle (u64); node ID length (u16, 1 to 1024); node ID (UTF-8).
//!   Bytes after the node ID are ignored (room for later versions).
//! - **DATA**: flags (u8: bit 0 START, bit 1 END, the others must be 0);
//!   transfer number (u32); if START, the bundle's total length (u64); then
//!   payload bytes to the CRC.
//! - **RESULT**: transfer number (u32); code (u8: 0 accepted, 1 duplicate,
//!   2 no resources, 3 invalid, 4 too large).
//! - **NOP**, **ACK**, **NAK**: empty.
//!
//! **Handshake.** While no session is up, each side sends HELLO every
//! `hello_interval_ms` with a fresh nonce. A side is up once it has received
//! a HELLO whose `echo` is its own current nonce. A HELLO without the `up`
//! flag must be answered with a HELLO at once. Sequence numbers start at 0 in
//! every session. A HELLO with a nonce different from the one the session
//! was built on ends the session (the peer started over). Frames other than
//! HELLO whose nonce is not the peer's current one are ignored.
//!
//! **Reliable stream.** DATA, RESULT and NOP take consecutive sequence
//! numbers (u32, wrapping) and are accepted only in order: the receiver
//! takes a frame whose seq is the next expected one, acknowledges a repeat
//! of an older one again (ACK) and answers the first frame past a gap with a
//! NAK (its `ack` field names the missing frame; the sender goes back and
//! resends from there). Every frame's `ack` field acknowledges; a receiver
//! with nothing to send answers with an ACK. The sender keeps up to `window`
//! frames unacknowledged and, after its retransmission timeout, resends them
//! all from the oldest; after `max_retries` timeouts without progress the
//! session is down. An idle side sends NOP every `keepalive_secs`.
//!
//! **Transfers.** A bundle is one transfer, numbered from 0 in each session:
//! DATA frames in order, the first with START and the total length, the last
//! with END (one frame may be both), the payloads concatenated being the
//! bundle. A receiver refuses a transfer whose total exceeds its
//! `max_bundle` (RESULT 4) or while `max_transfers` bundles await verdicts
//! (RESULT 2), skipping its remaining DATA. A DATA frame of another transfer
//! than the one in progress, more bytes than declared, or an END short of
//! the total is a violation: the transfer is answered RESULT 3. Otherwise
//! the receiver delivers the bundle and sends RESULT — a sequenced frame,
//! so it is retransmitted until acknowledged — once the bundle is durable
//! (0) or known (1), or with 2 or 3. The sender counts the bundle as sent
//! only on RESULT 0 or 1, and keeps at most `max_transfers` transfers
//! awaiting their RESULT.
//!
//! # Architecture invariant
//! [`wire`] and [`link`] do no I/O, spawn no thread and read no clock. Every
//! length from the wire is checked before anything is sliced or allocated: a
//! frame is bounded by `max_frame` in the KISS decoder, a transfer's declared
//! length by `max_bundle_size` before its first byte is buffered, and a
//! reassembly buffer reserves at most 64 KiB up front and grows only with
//! bytes that arrived.

pub mod link;
pub mod plugin;
pub mod settings;
pub mod tty;
pub mod wire;

pub use link::Link;
pub use plugin::{descriptor, SerialCla, DESCRIPTOR};
pub use settings::{Settings, SettingsError};

#[cfg(feature = "export")]
ferry_cla_abi::export_cla!(plugin::SerialCla);
