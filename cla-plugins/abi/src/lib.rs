//! ferry-cla-abi: the C ABI between ferryd and its convergence-layer plugins.
//!
//! # Layout
//! - this page: the ABI itself, version 1 — the `repr(C)` types, constants
//!   and the one exported symbol, documented for plugin authors in any
//!   language;
//! - [`plugin`]: the safe Rust side for plugin authors: the [`Cla`] trait, the
//!   [`Host`] handle and the [`export_cla!`] macro (no `unsafe` needed);
//! - [`host`]: the daemon's side: loading a plugin (`dlopen` through
//!   `libloading`, or in-process for tests and the simulator), checking its
//!   version, and calling it safely.
//!
//! # The ABI, version 1.1
//!
//! A plugin is a shared library exporting one symbol,
//!
//! ```c
//! const FerryClaDescriptor *ferry_cla_descriptor(void);
//! ```
//!
//! returning a pointer to a static [`FerryClaDescriptor`]. C plugins include
//! `include/ferry_cla.h` (its layout is checked against these types by
//! `tests/c_header.rs`); `examples/c/drop_plugin.c` is a complete one, and
//! docs/guide/4-a-plugin-in-c.md walks through it. The host checks,
//! before it touches anything else, that `abi_major` equals its own
//! [`ABI_MAJOR`] and that `size` covers the fields of version 1.0
//! ([`DESCRIPTOR_1_0_SIZE`]); it reads a later field only if `size` covers
//! it. Fields are only ever appended (a minor version bump), never reordered
//! or removed (that is a major bump). Version 1.1 appended `preparing`.
//!
//! Lifecycle: `create(config) → start → (transmit | verdict | connect |
//! preparing)* → stop → destroy`. `create` receives the plugin's own settings as TOML text
//! and a [`FerryHost`] with the host's callbacks; it returns an opaque
//! instance pointer that every other call takes. After `stop` returns the
//! plugin makes no more callbacks.
//!
//! Rules both sides keep:
//! - **Bytes are borrowed for the call.** Every `(pointer, length)` pair is
//!   valid only until the function it was passed to returns; the receiver
//!   copies what it keeps. Nothing allocated on one side is freed on the other.
//! - **No panics cross the boundary.** The Rust side catches them and returns
//!   [`FERRY_ERR_PANIC`]; a C plugin must not `longjmp` out of a callback.
//! - **Threads.** A plugin runs its own threads and may call the host's
//!   callbacks from any of them, concurrently. The host may call `transmit`,
//!   `verdict`, `connect` and `preparing` from any thread, concurrently; they must not
//!   block for long (queue the work).
//! - **Durability.** `bundle_received` hands the host a bundle together with a
//!   plugin-chosen `token`. The plugin must not acknowledge the bundle to its
//!   peer (TCPCL: the final XFER_ACK) until the host calls `verdict(token, …)`
//!   with [`VERDICT_ACCEPTED`], which it does only once the bundle is on disk.
//! - **Transmissions.** `transmit(peer, transmit_id, bytes)` queues a bundle;
//!   the plugin reports the end with `transmit_done(transmit_id, outcome)`,
//!   exactly once per accepted `transmit` call, also when the peer goes away.
//!
//! Error reporting: functions that can fail take a [`FerryError`], a buffer
//! the caller owns, into which the callee writes a UTF-8 message (truncated to
//! the capacity).

use std::ffi::{c_char, c_void};

pub mod host;
pub mod plugin;

pub use plugin::{Cla, Host, Outcome, PeerUp, Verdict};

/// ABI major version: a host refuses a plugin whose major differs.
pub const ABI_MAJOR: u16 = 1;
/// ABI minor version: grows when fields are appended. 1.1 appended
/// [`FerryClaDescriptor::preparing`].
pub const ABI_MINOR: u16 = 1;
/// The symbol every plugin exports.
pub const DESCRIPTOR_SYMBOL: &str = "ferry_cla_descriptor";

/// Success.
pub const FERRY_OK: i32 = 0;
/// The callee panicked (Rust) or crashed in a recoverable way; the call had no effect.
pub const FERRY_ERR_PANIC: i32 = -1;
/// An argument was invalid (not UTF-8, not TOML, unknown peer ...).
pub const FERRY_ERR_INVALID: i32 = -2;
/// The operation failed; the error buffer says why.
pub const FERRY_ERR_FAILED: i32 = -3;

/// Verdicts on a received bundle (`verdict`).
pub const VERDICT_ACCEPTED: i32 = 0;
/// The host already has it (TCPCL: XFER_REFUSE "completed").
pub const VERDICT_DUPLICATE: i32 = 1;
/// The host could not store it (TCPCL: XFER_REFUSE "no resources").
pub const VERDICT_NO_RESOURCES: i32 = 2;
/// It is not a valid bundle (TCPCL: XFER_REFUSE "not acceptable").
pub const VERDICT_INVALID: i32 = 3;

/// Transmission outcomes (`transmit_done`).
pub const OUTCOME_SENT: i32 = 0;
/// The peer refused the bundle and will not take it.
pub const OUTCOME_REFUSED: i32 = 1;
/// The link failed; the host retries later.
pub const OUTCOME_FAILED: i32 = 2;

/// Log levels (`log`).
pub const LOG_ERROR: i32 = 1;
pub const LOG_WARN: i32 = 2;
pub const LOG_INFO: i32 = 3;
pub const LOG_DEBUG: i32 = 4;
pub const LOG_TRACE: i32 = 5;

/// A caller-owned buffer for an error message.
#[repr(C)]
pub struct FerryError {
    pub buf: *mut u8,
    pub cap: usize,
    /// Set by the callee: bytes written.
    pub len: usize,
}

/// What a plugin knows about a peer that came up. Strings are UTF-8, not
/// NUL-terminated, borrowed for the call.
#[repr(C)]
pub struct FerryPeerInfo {
    pub node_id: *const u8,
    pub node_id_len: usize,
    /// How the plugin reaches it (`tcp://127.0.0.1:4556`), for logs and status.
    pub address: *const u8,
    pub address_len: usize,
    /// Largest bundle the link takes whole; 0 when unlimited or unknown.
    pub mtu: u64,
    /// Link rate in bytes per second; 0 when unknown.
    pub rate_bps: u64,
}

/// The host's callbacks, handed to `create`. Valid until `destroy` returns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FerryHost {
    /// `size_of::<FerryHost>()` as the host built it.
    pub size: usize,
    /// Opaque; passed back as the first argument of every callback.
    pub ctx: *mut c_void,
    /// The node ID of the host (UTF-8, not NUL-terminated), e.g. for TCPCL's SESS_INIT.
    pub node_id: *const u8,
    pub node_id_len: usize,
    /// A bundle arrived from `peer`. The plugin withholds its acknowledgement
    /// until `verdict(token, ...)`.
    pub bundle_received: unsafe extern "C" fn(ctx: *mut c_void, peer: u64, data: *const u8, len: usize, token: u64),
    /// A peer is reachable. `peer` is the plugin's own handle for it, unique
    /// within the plugin for as long as the peer is up.
    pub peer_up: unsafe extern "C" fn(ctx: *mut c_void, peer: u64, info: *const FerryPeerInfo),
    pub peer_down: unsafe extern "C" fn(ctx: *mut c_void, peer: u64),
    /// The end of a `transmit`: one of the `OUTCOME_*` values.
    pub transmit_done: unsafe extern "C" fn(ctx: *mut c_void, transmit: u64, outcome: i32),
    /// A log line (`LOG_*` level, UTF-8 message).
    pub log: unsafe extern "C" fn(ctx: *mut c_void, level: i32, msg: *const u8, len: usize),
}

/// The plugin's descriptor: versions, name and entry points.
#[repr(C)]
pub struct FerryClaDescriptor {
    pub abi_major: u16,
    pub abi_minor: u16,
    /// `size_of::<FerryClaDescriptor>()` as the plugin was built.
    pub size: u32,
    /// NUL-terminated, static: the plugin's name ("tcp").
    pub name: *const c_char,
    /// NUL-terminated, static: the plugin's own version.
    pub version: *const c_char,
    /// Makes an instance from TOML settings. On success writes the instance
    /// to `*out` and returns `FERRY_OK`.
    pub create: unsafe extern "C" fn(
        config: *const u8,
        config_len: usize,
        host: *const FerryHost,
        out: *mut *mut c_void,
        err: *mut FerryError,
    ) -> i32,
    /// Starts listening/connecting (threads start here, not in `create`).
    pub start: unsafe extern "C" fn(instance: *mut c_void, err: *mut FerryError) -> i32,
    /// Queues a bundle for `peer`; completion comes through `transmit_done`.
    /// A non-`FERRY_OK` return means it was not queued and no `transmit_done`
    /// follows.
    pub transmit: unsafe extern "C" fn(
        instance: *mut c_void,
        peer: u64,
        transmit: u64,
        data: *const u8,
        len: usize,
        err: *mut FerryError,
    ) -> i32,
    /// The host's verdict on a bundle it received with `token`.
    pub verdict: unsafe extern "C" fn(instance: *mut c_void, token: u64, verdict: i32),
    /// Asks the plugin to reach a peer at `address` (its own syntax).
    pub connect:
        unsafe extern "C" fn(instance: *mut c_void, address: *const u8, len: usize, err: *mut FerryError) -> i32,
    /// Stops all activity; no callbacks after it returns.
    pub stop: unsafe extern "C" fn(instance: *mut c_void),
    /// Frees the instance.
    pub destroy: unsafe extern "C" fn(instance: *mut c_void),
    // ---- ABI 1.1 ----
    /// Optional (null: the plugin does not care): the host has decided on
    /// `delta` more transmissions to `peer` that it has not handed over yet
    /// (it is reading them from its store), or, with a negative `delta`,
    /// that it handed them over (`transmit` was called first) or dropped
    /// them. The running sum per peer is what is still on its way. A plugin
    /// that reports progress (the USB-folder plugin's `ferry usb sync`) uses
    /// it so as not to call a sync done while bundles are still coming.
    /// Must not block. A host reads this field only from a descriptor whose
    /// `size` covers it (plugins built for ABI 1.0 have no such field).
    pub preparing: Option<unsafe extern "C" fn(instance: *mut c_void, peer: u64, delta: i64)>,
}

/// The size of an ABI 1.0 descriptor: the least a host accepts.
pub const DESCRIPTOR_1_0_SIZE: usize = std::mem::offset_of!(FerryClaDescriptor, preparing);

// The descriptor is immutable static data; its pointers are to static strings.
unsafe impl Sync for FerryClaDescriptor {}
unsafe impl Send for FerryClaDescriptor {}

/// The type of the exported symbol.
pub type DescriptorFn = unsafe extern "C" fn() -> *const FerryClaDescriptor;
