//! TCP convergence layers: TCPCLv4 (RFC 9174), MTCP and STCP.
//!
//! # Layout
//! - [`tcpcl`]: TCPCLv4. [`tcpcl::wire`] holds every message as a `Repr`
//!   type (checked `parse`, `emit`, `buffer_len`); [`tcpcl::session`] holds
//!   [`tcpcl::Session`], the session state machine for either role.
//! - [`mtcp`]: MTCP framing (one CBOR byte string per bundle), as dtn7-rs,
//!   dtn7-go and µD3TN speak it.
//! - [`stcp`]: STCP framing (a u32 length per bundle), as ION speaks it.
//!
//! # Architecture invariant
//! Nothing here does I/O, spawns a thread or reads a clock. Bytes and the
//! time (milliseconds, from any monotonic origin) are passed in; bytes to
//! write, events and the next deadline come out. The socket side and the
//! plugin ABI live elsewhere and only move bytes and time in and out.
//!
//! Every parser takes untrusted input: declared lengths are checked against
//! configured limits as soon as they are read, before any byte they announce
//! is awaited or allocated, and no input makes any of them panic.

pub mod mtcp;
pub mod stcp;
pub mod tcpcl;
