//! The plugin author's side: implement [`Cla`], then `export_cla!(MyCla);`.
//!
//! ```ignore
//! struct Loopback { host: Host }
//! impl Cla for Loopback {
//!     const NAME: &'static CStr = c"loopback";
//!     fn create(_config: &str, host: Host) -> Result<Self, String> { Ok(Loopback { host }) }
//!     fn transmit(&self, peer: u64, id: u64, bundle: &[u8]) -> Result<(), String> {
//!         self.host.transmit_done(id, Outcome::Sent);
//!         Ok(())
//!     }
//!     fn verdict(&self, _token: u64, _verdict: Verdict) {}
//!     fn stop(&self) {}
//! }
//! ferry_cla_abi::export_cla!(Loopback);
//! ```

use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::{
    FerryClaDescriptor, FerryError, FerryHost, FerryPeerInfo, ABI_MAJOR, ABI_MINOR, FERRY_ERR_FAILED,
    FERRY_ERR_INVALID, FERRY_ERR_PANIC, FERRY_OK, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_TRACE, LOG_WARN, OUTCOME_FAILED,
    OUTCOME_REFUSED, OUTCOME_SENT, VERDICT_ACCEPTED, VERDICT_DUPLICATE, VERDICT_INVALID, VERDICT_NO_RESOURCES,
};

/// The host's verdict on a received bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Durable in the host's store: acknowledge it to the peer.
    Accepted,
    /// The host already has it.
    Duplicate,
    /// The host could not store it.
    NoResources,
    /// Not a valid bundle.
    Invalid,
}

impl Verdict {
    pub fn code(self) -> i32 {
        match self {
            Verdict::Accepted => VERDICT_ACCEPTED,
            Verdict::Duplicate => VERDICT_DUPLICATE,
            Verdict::NoResources => VERDICT_NO_RESOURCES,
            Verdict::Invalid => VERDICT_INVALID,
        }
    }

    /// Unknown codes (a newer host) count as `NoResources`: refuse, the peer retries.
    pub fn from_code(code: i32) -> Verdict {
        match code {
            VERDICT_ACCEPTED => Verdict::Accepted,
            VERDICT_DUPLICATE => Verdict::Duplicate,
            VERDICT_INVALID => Verdict::Invalid,
            _ => Verdict::NoResources,
        }
    }
}

/// How a transmission ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Refused,
    Failed,
}

impl Outcome {
    pub fn code(self) -> i32 {
        match self {
            Outcome::Sent => OUTCOME_SENT,
            Outcome::Refused => OUTCOME_REFUSED,
            Outcome::Failed => OUTCOME_FAILED,
        }
    }

    /// Unknown codes count as `Failed`: the host retries.
    pub fn from_code(code: i32) -> Outcome {
        match code {
            OUTCOME_SENT => Outcome::Sent,
            OUTCOME_REFUSED => Outcome::Refused,
            _ => Outcome::Failed,
        }
    }
}

/// A peer that came up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUp<'a> {
    pub node_id: &'a str,
    pub address: &'a str,
    pub mtu: Option<u64>,
    pub rate_bps: Option<u64>,
}

/// The host's callbacks, safe to call from any thread.
#[derive(Clone, Copy)]
pub struct Host {
    raw: FerryHost,
}

// The ABI requires the host's callbacks to be thread-safe.
unsafe impl Send for Host {}
unsafe impl Sync for Host {}

impl Host {
    /// # Safety
    /// `raw` must hold valid callbacks for as long as the `Host` is used.
    pub unsafe fn from_raw(raw: FerryHost) -> Host {
        Host { raw }
    }

    /// The host node's ID (`dtn://name/` or `ipn:N.0`).
    pub fn node_id(&self) -> &str {
        if self.raw.node_id.is_null() {
            return "";
        }
        let bytes = unsafe { std::slice::from_raw_parts(self.raw.node_id, self.raw.node_id_len) };
        std::str::from_utf8(bytes).unwrap_or("")
    }

    pub fn bundle_received(&self, peer: u64, bundle: &[u8], token: u64) {
        unsafe { (self.raw.bundle_received)(self.raw.ctx, peer, bundle.as_ptr(), bundle.len(), token) }
    }

    pub fn peer_up(&self, peer: u64, info: &PeerUp<'_>) {
        let raw = FerryPeerInfo {
            node_id: info.node_id.as_ptr(),
            node_id_len: info.node_id.len(),
            address: info.address.as_ptr(),
            address_len: info.address.len(),
            mtu: info.mtu.unwrap_or(0),
            rate_bps: info.rate_bps.unwrap_or(0),
        };
        unsafe { (self.raw.peer_up)(self.raw.ctx, peer, &raw) }
    }

    pub fn peer_down(&self, peer: u64) {
        unsafe { (self.raw.peer_down)(self.raw.ctx, peer) }
    }

    pub fn transmit_done(&self, transmit: u64, outcome: Outcome) {
        unsafe { (self.raw.transmit_done)(self.raw.ctx, transmit, outcome.code()) }
    }

    pub fn log(&self, level: i32, msg: &str) {
        unsafe { (self.raw.log)(self.raw.ctx, level, msg.as_ptr(), msg.len()) }
    }
    pub fn error(&self, msg: &str) {
        self.log(LOG_ERROR, msg)
    }
    pub fn warn(&self, msg: &str) {
        self.log(LOG_WARN, msg)
    }
    pub fn info(&self, msg: &str) {
        self.log(LOG_INFO, msg)
    }
    pub fn debug(&self, msg: &str) {
        self.log(LOG_DEBUG, msg)
    }
    pub fn trace(&self, msg: &str) {
        self.log(LOG_TRACE, msg)
    }
}

/// A convergence layer, in safe Rust. Every method may be called from any
/// thread; queue work rather than block.
pub trait Cla: Send + Sync + Sized + 'static {
    /// The plugin's name, as configs and logs show it.
    const NAME: &'static CStr;
    /// The plugin's version.
    const VERSION: &'static CStr = c"0";

    /// Builds an instance from the plugin's TOML settings. Start no threads here.
    fn create(config: &str, host: Host) -> Result<Self, String>;
    /// Starts listening and connecting.
    fn start(&self) -> Result<(), String> {
        Ok(())
    }
    /// Queues `bundle` for `peer`; report the end with `Host::transmit_done(transmit, ..)`.
    fn transmit(&self, peer: u64, transmit: u64, bundle: &[u8]) -> Result<(), String>;
    /// The host's verdict on the bundle received with `token`.
    fn verdict(&self, token: u64, verdict: Verdict);
    /// Reach a peer at `address`.
    fn connect(&self, address: &str) -> Result<(), String> {
        Err(format!("the {} plugin does not connect to addresses on request ({address})", Self::NAME.to_string_lossy()))
    }
    /// Stops everything; no callbacks after it returns.
    fn stop(&self);
    /// `delta` more (negative: fewer) transmissions to `peer` are on their
    /// way from the host (ABI 1.1, [`crate::FerryClaDescriptor::preparing`]).
    /// Most plugins ignore it.
    fn preparing(&self, _peer: u64, _delta: i64) {}
}

/// Writes `msg` into the caller's error buffer (truncated at a char boundary).
///
/// # Safety
/// `err` is null or points to a valid `FerryError` whose `buf` has `cap` writable bytes.
pub unsafe fn write_error(err: *mut FerryError, msg: &str) {
    let Some(err) = (unsafe { err.as_mut() }) else { return };
    if err.buf.is_null() {
        return;
    }
    let mut n = msg.len().min(err.cap);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), err.buf, n) };
    err.len = n;
}

/// # Safety
/// `ptr` is null only with `len == 0`, else valid for `len` bytes.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 || ptr.is_null() {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

unsafe extern "C" fn create<T: Cla>(
    config: *const u8,
    config_len: usize,
    host: *const FerryHost,
    out: *mut *mut c_void,
    err: *mut FerryError,
) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let Some(host) = (unsafe { host.as_ref() }) else {
            return Err((FERRY_ERR_INVALID, "no host callbacks".to_string()));
        };
        if host.size < std::mem::size_of::<FerryHost>() {
            return Err((FERRY_ERR_INVALID, "the host's callback table is older than this plugin".into()));
        }
        let config = std::str::from_utf8(unsafe { bytes(config, config_len) })
            .map_err(|e| (FERRY_ERR_INVALID, format!("config is not UTF-8: {e}")))?;
        let instance = T::create(config, unsafe { Host::from_raw(*host) }).map_err(|m| (FERRY_ERR_FAILED, m))?;
        Ok(Box::into_raw(Box::new(instance)) as *mut c_void)
    }));
    match result {
        Ok(Ok(instance)) => {
            if !out.is_null() {
                unsafe { *out = instance };
            }
            FERRY_OK
        }
        Ok(Err((code, msg))) => {
            unsafe { write_error(err, &msg) };
            code
        }
        Err(p) => {
            unsafe { write_error(err, &format!("plugin panicked in create: {}", panic_message(&*p))) };
            FERRY_ERR_PANIC
        }
    }
}

/// # Safety
/// `instance` came from `create::<T>` and was not destroyed.
unsafe fn instance<'a, T>(instance: *mut c_void) -> Option<&'a T> {
    unsafe { (instance as *const T).as_ref() }
}

fn status(result: std::thread::Result<Result<(), String>>, err: *mut FerryError, what: &str) -> i32 {
    match result {
        Ok(Ok(())) => FERRY_OK,
        Ok(Err(msg)) => {
            unsafe { write_error(err, &msg) };
            FERRY_ERR_FAILED
        }
        Err(p) => {
            unsafe { write_error(err, &format!("plugin panicked in {what}: {}", panic_message(&*p))) };
            FERRY_ERR_PANIC
        }
    }
}

unsafe extern "C" fn start<T: Cla>(inst: *mut c_void, err: *mut FerryError) -> i32 {
    let Some(cla) = (unsafe { instance::<T>(inst) }) else { return FERRY_ERR_INVALID };
    status(catch_unwind(AssertUnwindSafe(|| cla.start())), err, "start")
}

unsafe extern "C" fn transmit<T: Cla>(
    inst: *mut c_void,
    peer: u64,
    id: u64,
    data: *const u8,
    len: usize,
    err: *mut FerryError,
) -> i32 {
    let Some(cla) = (unsafe { instance::<T>(inst) }) else { return FERRY_ERR_INVALID };
    let data = unsafe { bytes(data, len) };
    status(catch_unwind(AssertUnwindSafe(|| cla.transmit(peer, id, data))), err, "transmit")
}

unsafe extern "C" fn verdict<T: Cla>(inst: *mut c_void, token: u64, code: i32) {
    if let Some(cla) = unsafe { instance::<T>(inst) } {
        let _ = catch_unwind(AssertUnwindSafe(|| cla.verdict(token, Verdict::from_code(code))));
    }
}

unsafe extern "C" fn connect<T: Cla>(inst: *mut c_void, addr: *const u8, len: usize, err: *mut FerryError) -> i32 {
    let Some(cla) = (unsafe { instance::<T>(inst) }) else { return FERRY_ERR_INVALID };
    let Ok(addr) = std::str::from_utf8(unsafe { bytes(addr, len) }) else {
        unsafe { write_error(err, "address is not UTF-8") };
        return FERRY_ERR_INVALID;
    };
    status(catch_unwind(AssertUnwindSafe(|| cla.connect(addr))), err, "connect")
}

unsafe extern "C" fn preparing<T: Cla>(inst: *mut c_void, peer: u64, delta: i64) {
    if let Some(cla) = unsafe { instance::<T>(inst) } {
        let _ = catch_unwind(AssertUnwindSafe(|| cla.preparing(peer, delta)));
    }
}

unsafe extern "C" fn stop<T: Cla>(inst: *mut c_void) {
    if let Some(cla) = unsafe { instance::<T>(inst) } {
        let _ = catch_unwind(AssertUnwindSafe(|| cla.stop()));
    }
}

unsafe extern "C" fn destroy<T: Cla>(inst: *mut c_void) {
    if !inst.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(inst as *mut T) })));
    }
}

/// The descriptor of a Rust plugin type; `export_cla!` puts it in a static.
pub const fn descriptor<T: Cla>() -> FerryClaDescriptor {
    FerryClaDescriptor {
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        size: std::mem::size_of::<FerryClaDescriptor>() as u32,
        name: T::NAME.as_ptr(),
        version: T::VERSION.as_ptr(),
        create: create::<T>,
        start: start::<T>,
        transmit: transmit::<T>,
        verdict: verdict::<T>,
        connect: connect::<T>,
        stop: stop::<T>,
        destroy: destroy::<T>,
        preparing: Some(preparing::<T>),
    }
}

/// Exports a [`Cla`] implementation as a Ferry plugin: defines the
/// `ferry_cla_descriptor` symbol. Use it once, in a `cdylib` crate.
#[macro_export]
macro_rules! export_cla {
    ($ty:ty) => {
        #[no_mangle]
        pub extern "C" fn ferry_cla_descriptor() -> *const $crate::FerryClaDescriptor {
            static DESCRIPTOR: $crate::FerryClaDescriptor = $crate::plugin::descriptor::<$ty>();
            &DESCRIPTOR
        }
    };
}
