//! TCPCLv4 (RFC 9174): the wire format and the session state machine.
//!
//! - [`wire`]: every message as a `Repr` type with checked `parse`, `emit`
//!   and `buffer_len`.
//! - [`session`]: [`Session`], one session in either role, sans-IO.

pub mod session;
pub mod wire;

pub use session::{
    CommandError, Config, ConfigError, Event, FailReason, Negotiated, Phase, Session, SessionError, TransferId,
};
pub use wire::{RefuseReason, RejectReason, SessTermReason, WireError};
