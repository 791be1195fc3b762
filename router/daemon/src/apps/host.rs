//! The `ferry:app` world on the host side: bindings generated from
//! wasm-apps/wit and the imports an app calls (`host` interface), with the
//! per-app store data they need.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_core::bundle::bundle_flags;
use ferry_core::eid::Eid;
use ferry_core::node::SendRequest;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::capability;
use super::spec::CapabilitySpec;
use super::AppShared;
use crate::daemon::Daemon;

wasmtime::component::bindgen!({
    world: "app",
    path: "../../wasm-apps/wit",
});

pub use ferry::app::types::{InvokeError, InvokeOutput, LogLevel, Outgoing, ReportFlags, SendError, StatusReport};

/// Caps what an app's memories and tables may grow to, and counts what they
/// hold (the `memory` figure of `ferry apps list`).
pub struct Limiter {
    cap: usize,
    /// Bytes of linear memory the app's instances hold.
    pub used: usize,
}

impl Limiter {
    pub fn new(cap: usize) -> Limiter {
        Limiter { cap, used: 0 }
    }
}

/// Table elements one app may have (function references; a few thousand in
/// practice).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let after = self.used.saturating_sub(current).saturating_add(desired);
        if after > self.cap {
            return Ok(false);
        }
        self.used = after;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// What one app's `Store` holds.
pub struct HostState {
    pub shared: Arc<AppShared>,
    pub daemon: Arc<Daemon>,
    pub runtime: tokio::runtime::Handle,
    pub capabilities: Arc<BTreeMap<String, CapabilitySpec>>,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    /// When the running call's time budget ends. Time spent in host calls
    /// (a store write, a git run) is added to it: the budget counts the app's
    /// own computing, which is what a runaway app burns.
    pub deadline: std::time::Instant,
}

impl HostState {
    /// Runs a host call, not counting its time against the app's budget.
    fn uncounted<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let start = std::time::Instant::now();
        let r = f(self);
        self.deadline += start.elapsed();
        r
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// An endpoint an app names: a service on this node or a full EID, which must
/// be on this node.
pub fn resolve_endpoint(node_id: &Eid, text: &str) -> Result<Eid, String> {
    let eid = if text.contains(':') {
        text.parse::<Eid>().map_err(|e| format!("`{text}` is not an EID: {e}"))?
    } else {
        node_id.with_service(text).map_err(|e| format!("`{text}` is not a service name: {e}"))?
    };
    if !eid.is_on_node(node_id) || eid.is_node_id() {
        return Err(format!("`{text}` is not an endpoint of this node ({node_id})"));
    }
    Ok(eid)
}

impl ferry::app::types::Host for HostState {}

impl ferry::app::host::Host for HostState {
    fn node_id(&mut self) -> String {
        self.daemon.node_id().to_string()
    }

    fn now(&mut self) -> u64 {
        self.daemon.now()
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.shared.log(level, &message);
    }

    fn send(&mut self, bundle: Outgoing) -> Result<String, SendError> {
        self.uncounted(|s| s.send_now(bundle))
    }

    fn register(&mut self, endpoint: String) -> Result<(), String> {
        self.uncounted(|s| s.register_now(endpoint))
    }

    fn unregister(&mut self, endpoint: String) -> Result<(), String> {
        self.uncounted(|s| s.unregister_now(endpoint))
    }

    fn invoke(&mut self, capability: String, args: Vec<String>, stdin: Vec<u8>) -> Result<InvokeOutput, InvokeError> {
        self.uncounted(|s| s.invoke_now(capability, args, stdin))
    }
}

impl HostState {
    fn send_now(&mut self, bundle: Outgoing) -> Result<String, SendError> {
        let destination: Eid =
            bundle.destination.parse().map_err(|e| SendError::BadEid(format!("`{}`: {e}", bundle.destination)))?;
        let node_id = self.daemon.node_id();
        let source = match &bundle.source_service {
            Some(s) => Some(resolve_endpoint(&node_id, s).map_err(SendError::BadEid)?),
            None => None,
        };
        let report_to = match &bundle.report_to {
            Some(r) => Some(r.parse::<Eid>().map_err(|e| SendError::BadEid(format!("`{r}`: {e}")))?),
            None => None,
        };
        let mut flags = 0;
        for (flag, bit) in [
            (ReportFlags::RECEPTION, bundle_flags::REPORT_RECEPTION),
            (ReportFlags::FORWARDING, bundle_flags::REPORT_FORWARDING),
            (ReportFlags::DELIVERY, bundle_flags::REPORT_DELIVERY),
            (ReportFlags::DELETION, bundle_flags::REPORT_DELETION),
        ] {
            if bundle.report.contains(flag) {
                flags |= bit;
            }
        }
        let lifetime_ms = match bundle.lifetime_ms {
            0 => u64::try_from(self.daemon.default_lifetime().as_millis()).unwrap_or(u64::MAX),
            n => n,
        };
        let req = SendRequest { source, destination, lifetime_ms, flags, report_to };
        let daemon = Arc::clone(&self.daemon);
        match self.runtime.block_on(daemon.send(req, &bundle.payload)) {
            Ok(id) => {
                self.shared.counters().sent += 1;
                Ok(id.to_string())
            }
            Err(crate::daemon::DaemonError::Send(e)) => Err(SendError::Refused(e.to_string())),
            Err(crate::daemon::DaemonError::Rejected(e)) => Err(SendError::Refused(e.to_string())),
            Err(e) => Err(SendError::NotStored(e.to_string())),
        }
    }

    fn register_now(&mut self, endpoint: String) -> Result<(), String> {
        let eid = resolve_endpoint(&self.daemon.node_id(), &endpoint)?;
        self.shared.claim(&eid)?;
        let daemon = Arc::clone(&self.daemon);
        self.runtime.block_on(daemon.register(eid)).map(|_| ()).map_err(|e| e.to_string())
    }

    fn unregister_now(&mut self, endpoint: String) -> Result<(), String> {
        let eid = resolve_endpoint(&self.daemon.node_id(), &endpoint)?;
        if !self.shared.release(&eid) {
            return Err(format!("{eid} is not an endpoint of this app"));
        }
        let daemon = Arc::clone(&self.daemon);
        self.runtime.block_on(daemon.unregister(&eid)).map(|_| ()).map_err(|e| e.to_string())
    }

    fn invoke_now(
        &mut self,
        capability: String,
        args: Vec<String>,
        stdin: Vec<u8>,
    ) -> Result<InvokeOutput, InvokeError> {
        let Some(spec) = self.capabilities.get(&capability) else {
            return Err(InvokeError::NotGranted(format!("no capability `{capability}` is granted to this app")));
        };
        match capability::run(spec, &args, &stdin) {
            Ok(out) => Ok(InvokeOutput { status: out.status, stdout: out.stdout, stderr: out.stderr }),
            Err(capability::CapabilityError::Refused(m)) => Err(InvokeError::Refused(m)),
            Err(capability::CapabilityError::Failed(m)) => Err(InvokeError::Failed(m)),
        }
    }
}
