//! `ferry doctor`: checks a node's setup the way ferryd would use it, and
//! says what to fix. Nothing is changed: no key is created, no store is
//! opened (the running ferryd holds it), no port is bound.
//!
//! Checks, in order: the config; the data folder (there, writable, free
//! space above `[store] min_free_mib`); the node key's permissions; every
//! `[[cla]]` plugin (the file, its SHA-256 pin, that it is a Ferry plugin of
//! this ABI, that it takes its settings); the TCP plugin's TLS files (they
//! load, and the certificate names this node); every `[[app]]` component
//! (the file and its pin); the running ferryd through the API; and whether
//! the TCP plugin's static peers answer now (a DTN peer that does not is a
//! warning, not a failure).
//!
//! Exit code 0 when nothing failed (warnings allowed), 1 otherwise.

use std::net::ToSocketAddrs as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use ferry_cla_abi::host::{HostCallbacks, Plugin};
use ferry_cla_abi::{Outcome, PeerUp};
use serde::Serialize;

use crate::config::{Overrides, Settings};
use crate::security::KEY_FILE;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// ferryd's config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The node's data folder; overrides the config's.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Skip trying to reach the static peers.
    #[arg(long)]
    pub no_peers: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    status: Status,
    what: String,
    detail: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Default)]
struct Report(Vec<Check>);

impl Report {
    fn add(&mut self, status: Status, what: impl Into<String>, detail: impl Into<String>, fix: Option<String>) {
        self.0.push(Check { status, what: what.into(), detail: detail.into(), fix });
    }
    fn ok(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.add(Status::Ok, what, detail, None);
    }
    fn warn(&mut self, what: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(Status::Warn, what, detail, Some(fix.into()));
    }
    fn fail(&mut self, what: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) {
        self.add(Status::Fail, what, detail, Some(fix.into()));
    }
}

/// A host that takes nothing: plugins are only created (settings checked),
/// never started.
struct Silent;

impl HostCallbacks for Silent {
    fn bundle_received(&self, _peer: u64, _bundle: &[u8], _token: u64) {}
    fn peer_up(&self, _peer: u64, _info: PeerUp<'_>) {}
    fn peer_down(&self, _peer: u64) {}
    fn transmit_done(&self, _transmit: u64, _outcome: Outcome) {}
    fn log(&self, _level: i32, _msg: &str) {}
}

pub fn run(args: &DoctorArgs, api: &str, json: bool) -> Result<ExitCode> {
    let report = examine(args, api);
    if json {
        println!("{}", serde_json::to_string_pretty(&report.0)?);
    } else {
        for c in &report.0 {
            let tag = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{tag}  {}: {}", c.what, c.detail);
            if let Some(fix) = &c.fix {
                println!("      -> {fix}");
            }
        }
        let (warns, fails) = (count(&report, Status::Warn), count(&report, Status::Fail));
        println!("\n{} checks: {fails} failed, {warns} warnings", report.0.len());
    }
    Ok(if count(&report, Status::Fail) == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn count(r: &Report, s: Status) -> usize {
    r.0.iter().filter(|c| c.status == s).count()
}

fn examine(args: &DoctorArgs, api: &str) -> Report {
    let mut r = Report::default();
    let flags = Overrides { data_dir: args.data_dir.clone(), ..Overrides::default() };
    let settings = match Settings::load(args.config.as_deref(), &flags) {
        Ok(s) => {
            let what = args.config.as_ref().map_or("no config file (defaults)".into(), |p| p.display().to_string());
            r.ok("config", what);
            for w in &s.warnings {
                r.warn("config", w.clone(), "see the message; ferryd starts anyway");
            }
            s
        }
        Err(e) => {
            r.fail("config", e.to_string(), "fix the file at the line named; `ferryd --config FILE` says the same");
            return r;
        }
    };
    data_folder(&mut r, &settings);
    node_key(&mut r, &settings);
    plugins(&mut r, &settings);
    apps(&mut r, &settings);
    running(&mut r, api);
    if !args.no_peers {
        peers(&mut r, &settings);
    }
    r
}

fn data_folder(r: &mut Report, s: &Settings) {
    let dir = &s.data_dir;
    if !dir.exists() {
        r.warn("data folder", format!("{} does not exist yet", dir.display()), "ferryd creates it at first start");
        return;
    }
    let probe = dir.join(format!(".ferry-doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"probe") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            r.ok("data folder", format!("{} is writable", dir.display()));
        }
        Err(e) => r.fail(
            "data folder",
            format!("{} is not writable: {e}", dir.display()),
            format!("give the user ferryd runs as write access: chown -R <user> {}", dir.display()),
        ),
    }
    match free_bytes(dir) {
        Some(free) if free < s.store_min_free_bytes => r.fail(
            "disk space",
            format!("{} MiB free, below [store] min_free_mib = {}", free >> 20, s.store_min_free_bytes >> 20),
            "free space on that disk; ferryd refuses new bundles (API 507) until there is",
        ),
        Some(free) => r.ok("disk space", format!("{} MiB free", free >> 20)),
        None => r.warn("disk space", "cannot tell (statvfs failed)", "check with df"),
    }
}

fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a
    // valid NUL-terminated string for the duration of the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

fn node_key(r: &mut Report, s: &Settings) {
    let path = s.data_dir.join(KEY_FILE);
    match std::fs::metadata(&path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => r.fail(
            "node key",
            format!("{} has mode {:o}: group or others may read it", path.display(), m.permissions().mode() & 0o777),
            format!("chmod 600 {} (ferryd refuses to start otherwise)", path.display()),
        ),
        Ok(_) => r.ok("node key", format!("{} (mode 600)", path.display())),
        Err(_) => {
            r.warn("node key", format!("{} does not exist yet", path.display()), "ferryd creates it at first start")
        }
    }
}

fn plugins(r: &mut Report, s: &Settings) {
    if s.clas.is_empty() {
        r.warn("plugins", "no convergence-layer plugin: this node reaches no peer", "add a [[cla]] (see README)");
    }
    let node_id = s.node_id.as_ref().map(|e| e.to_string()).unwrap_or_default();
    for spec in &s.clas {
        let what = format!("plugin {}", spec.path.display());
        let mut file = match std::fs::File::open(&spec.path) {
            Ok(f) => f,
            Err(e) => {
                r.fail(what, format!("cannot open it: {e}"), "build it (cargo build --release) or fix `path`");
                continue;
            }
        };
        if let Some(pin) = &spec.sha256 {
            if let Err(e) = pin.check_file(&spec.path, &mut file) {
                r.fail(what, e.to_string(), "rebuild the pinned version, or update `sha256` to the new file's");
                continue;
            }
        }
        let plugin = match Plugin::load(&spec.path) {
            Ok(p) => p,
            Err(e) => {
                r.fail(what, e.to_string(), "rebuild the plugin against this ferryd's ferry-cla-abi");
                continue;
            }
        };
        match plugin.instantiate(&node_id, &spec.settings, Arc::new(Silent)) {
            Ok(_) => r.ok(what.clone(), format!("{} {} takes its settings", plugin.name(), plugin.version())),
            Err(e) => {
                r.fail(what, e.to_string(), "fix the [cla.settings] table named in the message");
                continue;
            }
        }
        if plugin.name() == "tcp" {
            tcp_tls(r, &spec.settings, &node_id);
        }
    }
}

fn tcp_tls(r: &mut Report, settings: &str, node_id: &str) {
    let Ok(tcp) = ferry_cla_tcp::Settings::parse(settings) else { return };
    let Some(tls) = &tcp.tls else { return };
    match ferry_cla_tcp::tls::TlsContext::load(tls, node_id) {
        Ok(_) => r.ok("TLS", format!("{} and {} trust anchor file(s) load", tls.cert.display(), tls.trust.len())),
        Err(e) => r.fail("TLS", e.to_string(), "`ferry tls gen` makes a certificate for this node; check the paths"),
    }
}

fn apps(r: &mut Report, s: &Settings) {
    for app in &s.apps {
        let what = format!("app {}", app.name);
        match std::fs::read(&app.component) {
            Err(e) => r.fail(
                what,
                format!("{}: {e}", app.component.display()),
                "build it (scripts/build-wasm-apps) or fix `component`",
            ),
            Ok(bytes) => match &app.sha256 {
                Some(pin) if pin.check(&app.component, &bytes).is_err() => r.fail(
                    what,
                    format!("{} does not have the pinned SHA-256", app.component.display()),
                    "rebuild the pinned version, or update `sha256`",
                ),
                _ => r.ok(what, format!("{} ({} KiB)", app.component.display(), bytes.len() / 1024)),
            },
        }
    }
}

fn running(r: &mut Report, api: &str) {
    let Ok(client) = super::client::Api::new(api) else {
        r.warn("ferryd", format!("{api} is not a usable URL"), "pass --api http://HOST:PORT");
        return;
    };
    match client.get("/status/info") {
        Ok(a) => {
            let v: serde_json::Value = a.json().unwrap_or_default();
            r.ok(
                "ferryd",
                format!(
                    "running at {api}: {} holds {} bundles, {} of {} peers connected",
                    v["node_id"].as_str().unwrap_or("?"),
                    v["bundles"],
                    v["peers_connected"],
                    v["peers"]
                ),
            );
        }
        Err(e) => {
            r.warn("ferryd", format!("not reachable at {api}: {e:#}"), "start it (ferryd --config FILE), or pass --api")
        }
    }
}

fn peers(r: &mut Report, s: &Settings) {
    for spec in &s.clas {
        let Ok(tcp) = ferry_cla_tcp::Settings::parse(&spec.settings) else { continue };
        for peer in &tcp.peers {
            let target = format!("{}:{}", peer.host, peer.port);
            let what = format!("peer {peer}");
            let addrs: Vec<_> = match (peer.host.as_str(), peer.port).to_socket_addrs() {
                Ok(a) => a.collect(),
                Err(e) => {
                    r.warn(what, format!("{target} does not resolve: {e}"), "check the name, or DNS on this network");
                    continue;
                }
            };
            let reached = addrs.iter().any(|a| std::net::TcpStream::connect_timeout(a, Duration::from_secs(2)).is_ok());
            if reached {
                r.ok(what, format!("{target} answers"));
            } else {
                r.warn(
                    what,
                    format!("{target} does not answer now"),
                    "normal when that node is off or out of reach; ferryd keeps trying",
                );
            }
        }
    }
}
