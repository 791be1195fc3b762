//! The daemon's side of the ABI: load a plugin, check it, make instances, and
//! call them without `unsafe` at the call site.

use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::plugin::{Outcome, PeerUp, Verdict};
use crate::{
    DescriptorFn, FerryClaDescriptor, FerryError, FerryHost, FerryPeerInfo, ABI_MAJOR, DESCRIPTOR_SYMBOL,
    FERRY_ERR_PANIC, FERRY_OK,
};

/// What the host does when a plugin calls back. Called from the plugin's
/// threads, concurrently; must not block for long.
pub trait HostCallbacks: Send + Sync + 'static {
    fn bundle_received(&self, peer: u64, bundle: &[u8], token: u64);
    fn peer_up(&self, peer: u64, info: PeerUp<'_>);
    fn peer_down(&self, peer: u64);
    fn transmit_done(&self, transmit: u64, outcome: Outcome);
    fn log(&self, level: i32, msg: &str);
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file is missing or is not a loadable library.
    #[error("cannot load plugin {path}: {source}")]
    Open { path: PathBuf, source: libloading::Error },
    /// The library has no `ferry_cla_descriptor` symbol.
    #[error("{path} is not a Ferry plugin (no `ferry_cla_descriptor` symbol)")]
    NotAPlugin { path: PathBuf },
    /// The descriptor pointer was null.
    #[error("{path}: ferry_cla_descriptor returned nothing")]
    NullDescriptor { path: PathBuf },
    /// Different major ABI version.
    #[error("{path}: plugin ABI {major}.{minor}, this ferryd speaks ABI {ours}.x")]
    AbiMismatch { path: PathBuf, major: u16, minor: u16, ours: u16 },
    /// The descriptor is smaller than version 1.0's.
    #[error("{path}: plugin descriptor is {size} bytes, ABI 1.0 needs {needed}")]
    DescriptorTooSmall { path: PathBuf, size: u32, needed: usize },
}

/// A call into a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaError {
    /// The plugin returned an error with this message.
    #[error("{plugin}: {message}")]
    Failed { plugin: String, message: String },
    /// The plugin panicked; the call had no effect.
    #[error("{plugin} panicked: {message}")]
    Panicked { plugin: String, message: String },
    /// The instance was stopped.
    #[error("{plugin} is stopped")]
    Stopped { plugin: String },
}

/// A loaded (or in-process) plugin: its descriptor, checked.
pub struct Plugin {
    name: String,
    version: String,
    desc: *const FerryClaDescriptor,
    /// The descriptor's `size`: which of the fields after ABI 1.0 it has.
    size: usize,
    // Declared after `desc`, dropped after everything that uses it.
    _lib: Option<libloading::Library>,
}

// The descriptor is immutable static data of a library we keep loaded.
unsafe impl Send for Plugin {}
unsafe impl Sync for Plugin {}

impl Plugin {
    /// `dlopen`s `path` and checks its descriptor.
    pub fn load(path: &Path) -> Result<Arc<Plugin>, LoadError> {
        let path_buf = path.to_path_buf();
        // Loading runs the library's initialisers; plugins are loaded only from
        // paths in the operator's config.
        let lib = unsafe { libloading::Library::new(path) }
            .map_err(|source| LoadError::Open { path: path_buf.clone(), source })?;
        let desc = unsafe {
            let f = lib
                .get::<DescriptorFn>(DESCRIPTOR_SYMBOL.as_bytes())
                .map_err(|_| LoadError::NotAPlugin { path: path_buf.clone() })?;
            f()
        };
        unsafe { Plugin::checked(desc, Some(lib), &path_buf) }
    }

    /// A plugin linked into this process (tests, the simulator): the same
    /// checks and the same calls, without `dlopen`.
    pub fn in_process(desc: &'static FerryClaDescriptor) -> Result<Arc<Plugin>, LoadError> {
        unsafe { Plugin::checked(desc, None, Path::new("<in-process>")) }
    }

    /// # Safety
    /// `desc` is null or points to a descriptor valid while `lib` is loaded.
    unsafe fn checked(
        desc: *const FerryClaDescriptor,
        lib: Option<libloading::Library>,
        path: &Path,
    ) -> Result<Arc<Plugin>, LoadError> {
        let path = path.to_path_buf();
        if desc.is_null() {
            return Err(LoadError::NullDescriptor { path });
        }
        // Version and size first, before any other field is read (abi_stable's rule).
        let (major, minor, size) = unsafe { ((*desc).abi_major, (*desc).abi_minor, (*desc).size) };
        if major != ABI_MAJOR {
            return Err(LoadError::AbiMismatch { path, major, minor, ours: ABI_MAJOR });
        }
        let needed = crate::DESCRIPTOR_1_0_SIZE;
        if (size as usize) < needed {
            return Err(LoadError::DescriptorTooSmall { path, size, needed });
        }
        let text = |p: *const std::ffi::c_char| {
            if p.is_null() {
                String::new()
            } else {
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        let (name, version) = unsafe { (text((*desc).name), text((*desc).version)) };
        Ok(Arc::new(Plugin { name, version, desc, size: size as usize, _lib: lib }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    fn desc(&self) -> &FerryClaDescriptor {
        // Valid while self (and so the library) lives.
        unsafe { &*self.desc }
    }

    /// The ABI 1.1 `preparing` entry point, if the descriptor is big enough
    /// to have the field and the plugin set it.
    fn preparing(&self) -> Option<unsafe extern "C" fn(*mut std::ffi::c_void, u64, i64)> {
        let end = std::mem::offset_of!(FerryClaDescriptor, preparing)
            + std::mem::size_of::<Option<unsafe extern "C" fn(*mut std::ffi::c_void, u64, i64)>>();
        if self.size < end {
            return None;
        }
        // In bounds (checked above); read through the raw pointer, field by
        // field, as for a descriptor of any size.
        unsafe { std::ptr::addr_of!((*self.desc).preparing).read() }
    }

    /// Creates an instance with the plugin's TOML settings.
    pub fn instantiate(
        self: &Arc<Self>,
        node_id: &str,
        config: &str,
        callbacks: Arc<dyn HostCallbacks>,
    ) -> Result<Instance, ClaError> {
        let ctx: Box<Arc<dyn HostCallbacks>> = Box::new(callbacks);
        let node_id: Box<str> = node_id.into();
        let host = Box::new(FerryHost {
            size: std::mem::size_of::<FerryHost>(),
            ctx: &*ctx as *const Arc<dyn HostCallbacks> as *mut c_void,
            node_id: node_id.as_ptr(),
            node_id_len: node_id.len(),
            bundle_received: cb_bundle_received,
            peer_up: cb_peer_up,
            peer_down: cb_peer_down,
            transmit_done: cb_transmit_done,
            log: cb_log,
        });
        let mut out: *mut c_void = std::ptr::null_mut();
        let mut buf = ErrBuf::new();
        let code = unsafe { (self.desc().create)(config.as_ptr(), config.len(), &*host, &mut out, buf.raw()) };
        if code != FERRY_OK || out.is_null() {
            return Err(self.error(code, buf.message()));
        }
        Ok(Instance {
            plugin: self.clone(),
            inst: out,
            _host: host,
            _ctx: ctx,
            _node_id: node_id,
            stopped: AtomicBool::new(false),
        })
    }

    fn error(&self, code: i32, message: String) -> ClaError {
        let plugin = self.name.clone();
        if code == FERRY_ERR_PANIC {
            ClaError::Panicked { plugin, message }
        } else {
            ClaError::Failed {
                plugin,
                message: if message.is_empty() { format!("error code {code}") } else { message },
            }
        }
    }
}

struct ErrBuf {
    buf: Vec<u8>,
    err: FerryError,
}

impl ErrBuf {
    fn new() -> ErrBuf {
        let mut buf = vec![0u8; 1024];
        let err = FerryError { buf: buf.as_mut_ptr(), cap: buf.len(), len: 0 };
        ErrBuf { buf, err }
    }
    fn raw(&mut self) -> *mut FerryError {
        self.err.buf = self.buf.as_mut_ptr();
        &mut self.err
    }
    fn message(&self) -> String {
        String::from_utf8_lossy(&self.buf[..self.err.len.min(self.buf.len())]).into_owned()
    }
}

/// A running plugin instance. Dropping it stops and destroys it.
pub struct Instance {
    plugin: Arc<Plugin>,
    inst: *mut c_void,
    _host: Box<FerryHost>,
    _ctx: Box<Arc<dyn HostCallbacks>>,
    _node_id: Box<str>,
    stopped: AtomicBool,
}

// The ABI requires plugin entry points to be callable from any thread.
unsafe impl Send for Instance {}
unsafe impl Sync for Instance {}

impl Instance {
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    fn check(&self) -> Result<(), ClaError> {
        if self.stopped.load(Ordering::Acquire) {
            Err(ClaError::Stopped { plugin: self.plugin.name.clone() })
        } else {
            Ok(())
        }
    }

    pub fn start(&self) -> Result<(), ClaError> {
        self.check()?;
        let mut buf = ErrBuf::new();
        let code = unsafe { (self.plugin.desc().start)(self.inst, buf.raw()) };
        if code == FERRY_OK {
            Ok(())
        } else {
            Err(self.plugin.error(code, buf.message()))
        }
    }

    /// Queues `bundle` for `peer`. `Ok` means a `transmit_done` will follow.
    pub fn transmit(&self, peer: u64, transmit: u64, bundle: &[u8]) -> Result<(), ClaError> {
        self.check()?;
        let mut buf = ErrBuf::new();
        let code = unsafe {
            (self.plugin.desc().transmit)(self.inst, peer, transmit, bundle.as_ptr(), bundle.len(), buf.raw())
        };
        if code == FERRY_OK {
            Ok(())
        } else {
            Err(self.plugin.error(code, buf.message()))
        }
    }

    pub fn verdict(&self, token: u64, verdict: Verdict) {
        if self.check().is_ok() {
            unsafe { (self.plugin.desc().verdict)(self.inst, token, verdict.code()) }
        }
    }

    /// Tells the plugin that `delta` more (negative: fewer) transmissions to
    /// `peer` are being prepared (ABI 1.1); nothing if the plugin predates it.
    pub fn preparing(&self, peer: u64, delta: i64) {
        if self.check().is_err() {
            return;
        }
        if let Some(f) = self.plugin.preparing() {
            unsafe { f(self.inst, peer, delta) }
        }
    }

    pub fn connect(&self, address: &str) -> Result<(), ClaError> {
        self.check()?;
        let mut buf = ErrBuf::new();
        let code = unsafe { (self.plugin.desc().connect)(self.inst, address.as_ptr(), address.len(), buf.raw()) };
        if code == FERRY_OK {
            Ok(())
        } else {
            Err(self.plugin.error(code, buf.message()))
        }
    }

    /// Stops the instance (idempotent); no callbacks arrive after this returns.
    pub fn stop(&self) {
        if !self.stopped.swap(true, Ordering::AcqRel) {
            unsafe { (self.plugin.desc().stop)(self.inst) }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
        unsafe { (self.plugin.desc().destroy)(self.inst) }
    }
}

/// # Safety
/// `ctx` is the pointer `instantiate` put in the `FerryHost`.
unsafe fn callbacks<'a>(ctx: *mut c_void) -> Option<&'a Arc<dyn HostCallbacks>> {
    unsafe { (ctx as *const Arc<dyn HostCallbacks>).as_ref() }
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

// Host callbacks: a panic in the host must not unwind into the plugin.

unsafe extern "C" fn cb_bundle_received(ctx: *mut c_void, peer: u64, data: *const u8, len: usize, token: u64) {
    let Some(cb) = (unsafe { callbacks(ctx) }) else { return };
    let data = unsafe { bytes(data, len) };
    let _ = catch_unwind(AssertUnwindSafe(|| cb.bundle_received(peer, data, token)));
}

unsafe extern "C" fn cb_peer_up(ctx: *mut c_void, peer: u64, info: *const FerryPeerInfo) {
    let Some(cb) = (unsafe { callbacks(ctx) }) else { return };
    let Some(info) = (unsafe { info.as_ref() }) else { return };
    let node_id = String::from_utf8_lossy(unsafe { bytes(info.node_id, info.node_id_len) });
    let address = String::from_utf8_lossy(unsafe { bytes(info.address, info.address_len) });
    let up = PeerUp {
        node_id: &node_id,
        address: &address,
        mtu: (info.mtu != 0).then_some(info.mtu),
        rate_bps: (info.rate_bps != 0).then_some(info.rate_bps),
    };
    let _ = catch_unwind(AssertUnwindSafe(|| cb.peer_up(peer, up)));
}

unsafe extern "C" fn cb_peer_down(ctx: *mut c_void, peer: u64) {
    let Some(cb) = (unsafe { callbacks(ctx) }) else { return };
    let _ = catch_unwind(AssertUnwindSafe(|| cb.peer_down(peer)));
}

unsafe extern "C" fn cb_transmit_done(ctx: *mut c_void, transmit: u64, outcome: i32) {
    let Some(cb) = (unsafe { callbacks(ctx) }) else { return };
    let _ = catch_unwind(AssertUnwindSafe(|| cb.transmit_done(transmit, Outcome::from_code(outcome))));
}

unsafe extern "C" fn cb_log(ctx: *mut c_void, level: i32, msg: *const u8, len: usize) {
    let Some(cb) = (unsafe { callbacks(ctx) }) else { return };
    let msg = String::from_utf8_lossy(unsafe { bytes(msg, len) });
    let _ = catch_unwind(AssertUnwindSafe(|| cb.log(level, &msg)));
}
