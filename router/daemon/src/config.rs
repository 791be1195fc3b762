//! ferryd's configuration: one TOML file, overridden by command-line flags.
//!
//! ```toml
//! node_id = "dtn://camp/"          # default: generated once, kept in the store
//! data_dir = "/var/lib/ferry"      # default: $FERRY_DATA_DIR or $XDG_DATA_HOME/ferry
//! router = "static"                # "epidemic" (default), "static", "spray-and-wait",
//!                                  # "binary-spray-and-wait", "prophet" or "cgr"
//! default_lifetime = "1h"          # for /send without ?lifetime
//! hop_limit = 32                   # put on bundles created here (1..=255)
//! strict_primary_crc = false       # true: refuse primary blocks without CRC (dtn7-rs sends them)
//! log = "info"                     # tracing filter when RUST_LOG is unset
//!
//! [api]
//! listen = "127.0.0.1:3000"
//! allow_remote = false             # listening elsewhere than loopback needs this,
//!                                  # and then a bearer token (crate::auth)
//! token_file = "api-token"         # default off loopback: <data_dir>/api-token, generated
//! max_connections = 256            # API connections served at once; more are closed at once
//! header_timeout = "10s"           # a request's headers must arrive within this (slow clients)
//!
//! [[routes]]
//! pattern = "dtn://far/*"
//! via = "dtn://gateway/"
//!
//! [routing]                        # parameters of the router named above
//! copies = 8                       # spray-and-wait's L (default 6)
//! p_encounter_max = 0.7            # prophet: RFC 6693 §3.3 names and defaults, and
//! typical_interval = "30m"         # I_typ and the aging time unit as durations
//! time_unit = "30s"
//! contact_plan = "plan.txt"        # cgr: ION contact plan, relative to this file;
//!                                  # +t times count from ferryd's start
//!
//! [[cla]]                          # default: the TCP plugin next to ferryd, listen = ["0.0.0.0:4556"]
//! path = "libferry_cla_tcp.so"     # relative to this file
//! sha256 = "..."                   # optional pin: a library with another digest is not loaded
//! [cla.settings]                   # the plugin's own settings
//! listen = ["0.0.0.0:4556"]
//! peers = ["tcpcl://10.0.0.2:4556"]
//!
//! [store]
//! min_free_mib = 64                # refuse new bundles (API 507) rather than fill the disk
//!
//! [security]                       # BPSec policy: see crate::security
//! sign_originated = true           # Ed25519 BIB on every bundle this node creates
//! require_signature = ["secure"]   # endpoints (services, EIDs, "*") that take only
//!                                  # bundles signed by their source with a trusted key
//! encrypt_for = ["dtn://c/"]       # payloads for these nodes are encrypted (BCB-AES-GCM)
//!
//! [[trust]]                        # a peer's key (`ferry id` on that node prints it)
//! node = "dtn://a/"
//! key = "base64 of the 32-byte Ed25519 public key"
//!
//! [[app]]                          # WebAssembly apps: see crate::apps::spec
//! name = "email"
//! component = "email.wasm"
//! endpoints = ["mail", "mail-submit"]
//! ```
//!
//! Unknown keys are errors. Every error names the file, the line and the key.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_core::contact::ContactPlan;
use ferry_core::eid::Eid;
use ferry_core::router::prophet::ProphetParams;
use ferry_core::router::spray::SprayMode;
use ferry_core::router::{RouterSpec, StaticRoute};
use ferry_core::time::Clock;
use serde::Deserialize;
use toml::Spanned;

/// The API's default listen address (dtnd's port).
pub const DEFAULT_API: &str = "127.0.0.1:3000";
/// Lifetime of bundles sent without one.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Settings of the TCP plugin loaded when the config names no `[[cla]]`:
/// TCPCLv4 on the IANA port on every interface (RFC 9174 §8.1).
pub const DEFAULT_TCP_SETTINGS: &str = "listen = [\"0.0.0.0:4556\"]\n";
/// Hop limit put on bundles created here when the config names none.
pub const DEFAULT_HOP_LIMIT: u64 = 32;

/// The file as written. Values that need checking keep their position so that
/// an error can point at them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node_id: Option<Spanned<String>>,
    pub data_dir: Option<PathBuf>,
    pub router: Option<Spanned<String>>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Parameters of the router (`[routing]`).
    #[serde(default)]
    pub routing: RoutingConfig,
    pub default_lifetime: Option<Spanned<String>>,
    pub hop_limit: Option<Spanned<u64>>,
    /// Refuse bundles whose primary block has no CRC and no BIB (RFC 9171
    /// §4.3.1 to the letter). Off by default: dtn7-rs sends such bundles.
    #[serde(default)]
    pub strict_primary_crc: bool,
    pub log: Option<String>,
    #[serde(default)]
    pub api: ApiConfig,
    /// Convergence-layer plugins to load.
    #[serde(default)]
    pub cla: Vec<ClaConfig>,
    /// Load the TCP plugin found next to ferryd when no `[[cla]]` is given
    /// (default true).
    pub default_cla: Option<bool>,
    /// WebAssembly apps to run (see `crate::apps::spec`).
    #[serde(default)]
    pub app: Vec<crate::apps::spec::AppConfig>,
    /// BPSec policy (`[security]`).
    #[serde(default)]
    pub security: SecurityConfig,
    /// Trusted peers' keys (`[[trust]]`).
    #[serde(default)]
    pub trust: Vec<TrustConfig>,
    /// The store (`[store]`).
    #[serde(default)]
    pub store: StoreConfig,
}

/// `[store]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// New bundles are refused (API 507, TCPCL XFER_REFUSE "no resources")
    /// while storing them would leave less than this many MiB free on the
    /// data folder's filesystem (default 64; 0: no check).
    pub min_free_mib: Option<u64>,
}

/// `[security]`: see `crate::security`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    #[serde(default)]
    pub sign_originated: bool,
    #[serde(default)]
    pub require_signature: Vec<Spanned<String>>,
    #[serde(default)]
    pub encrypt_for: Vec<Spanned<String>>,
}

/// One `[[trust]]`: a node and its Ed25519 public key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    pub node: Spanned<String>,
    pub key: Spanned<String>,
}

/// One `[[cla]]`: a plugin library and its own settings table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaConfig {
    /// Path of the shared library; relative paths are relative to the config file.
    pub path: Spanned<PathBuf>,
    /// Handed to the plugin as TOML text; the plugin checks it.
    #[serde(default)]
    pub settings: toml::Table,
    /// The library's SHA-256 (64 hex digits): any other file is not loaded.
    pub sha256: Option<Spanned<String>>,
}

/// `[api]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: Option<Spanned<String>>,
    #[serde(default)]
    pub allow_remote: bool,
    /// The bearer token's file (relative to the config file).
    pub token_file: Option<Spanned<PathBuf>>,
    pub max_connections: Option<Spanned<usize>>,
    pub header_timeout: Option<Spanned<String>>,
}

/// One `[[routes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub pattern: String,
    pub via: Spanned<String>,
}

/// `[routing]`: parameters of the router; each applies to one router only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    pub copies: Option<Spanned<u64>>,
    pub p_encounter_max: Option<Spanned<f64>>,
    pub p_encounter_first: Option<Spanned<f64>>,
    pub p_first_threshold: Option<Spanned<f64>>,
    pub beta: Option<Spanned<f64>>,
    pub gamma: Option<Spanned<f64>>,
    pub delta: Option<Spanned<f64>>,
    pub typical_interval: Option<Spanned<String>>,
    pub time_unit: Option<Spanned<String>>,
    pub contact_plan: Option<Spanned<PathBuf>>,
}

/// Which routing algorithm the node runs, with its parameters.
pub type RouterChoice = RouterSpec;

/// What the command line may override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub api: Option<String>,
    pub node_id: Option<String>,
    /// `--no-default-cla`: no TCP plugin unless `[[cla]]` names one.
    pub no_default_cla: bool,
}

/// The settings ferryd runs with: file, flags and defaults merged and checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `None`: use the one in the store, or generate one.
    pub node_id: Option<Eid>,
    pub data_dir: PathBuf,
    pub router: RouterChoice,
    pub default_lifetime: Duration,
    pub hop_limit: u64,
    /// See `FileConfig::strict_primary_crc`.
    pub strict_primary_crc: bool,
    /// Tracing filter used when RUST_LOG is unset.
    pub log: Option<String>,
    /// Where the API listens (resolved).
    pub api: SocketAddr,
    pub allow_remote: bool,
    /// The API's bearer token, if it needs one.
    pub api_token: crate::auth::TokenSource,
    /// API connections served at once (`[api] max_connections`).
    pub api_max_connections: usize,
    /// Time allowed for a request's headers (`[api] header_timeout`).
    pub api_header_timeout: Duration,
    /// Convergence-layer plugins to load, in order.
    pub clas: Vec<crate::plugins::ClaSpec>,
    /// WebAssembly apps to run, in order.
    pub apps: Vec<crate::apps::spec::AppSpec>,
    /// BPSec policy and configured trust.
    pub security: crate::security::Policy,
    /// Free space the store keeps on its filesystem (`[store] min_free_mib`).
    pub store_min_free_bytes: u64,
    /// Things worth logging once logging is set up (e.g. ignored settings).
    pub warnings: Vec<String>,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("{path}:{line}:{column}: {message}{key}\n    {text}", key = key_note(.key))]
    Syntax { path: PathBuf, line: usize, column: usize, key: Option<String>, message: String, text: String },
    /// The file is valid TOML but a value is not acceptable.
    #[error("{path}:{line}: `{key}`: {message}")]
    Value { path: PathBuf, line: usize, key: String, message: String },
    /// A command-line value is not acceptable.
    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    /// No data folder was given and no home folder is known.
    #[error("no data folder: set --data-dir, data_dir in the config, FERRY_DATA_DIR or HOME")]
    NoDataDir,
    /// The API would listen on a non-loopback address without `api.allow_remote = true`.
    #[error(
        "refusing to serve the API on {addr}, which is not a loopback address: anyone who can reach it could \
         send, read and delete bundles. Set `allow_remote = true` under [api] in the config to do it anyway \
         (every request then needs the API's bearer token: see `token_file`)"
    )]
    RemoteApi { addr: SocketAddr },
}

fn key_note(key: &Option<String>) -> String {
    match key {
        Some(k) => format!(" (key `{k}`)"),
        None => String::new(),
    }
}

/// Where a config value came from, for error messages.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn value_error<T>(&self, spanned: &Spanned<T>, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::Value {
            path: self.path.to_owned(),
            line: self.line_of(spanned.span().start),
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// The router `name` with its `[routing]` parameters.
fn routing_spec(
    src: &Source<'_>,
    at: &Spanned<String>,
    name: &str,
    r: &RoutingConfig,
) -> Result<RouterSpec, ConfigError> {
    Ok(match name {
        "spray-and-wait" | "binary-spray-and-wait" => {
            let copies = match &r.copies {
                Some(c) if *c.get_ref() == 0 => return Err(src.value_error(c, "copies", "must be at least 1")),
                Some(c) => *c.get_ref(),
                None => 6,
            };
            let mode = if name == "spray-and-wait" { SprayMode::Vanilla } else { SprayMode::Binary };
            RouterSpec::SprayAndWait { copies, mode }
        }
        "prophet" => {
            let d = ProphetParams::default();
            let p = |v: &Option<Spanned<f64>>, key: &str, default: f64| match v {
                Some(x) if (0.0..=1.0).contains(x.get_ref()) => Ok(*x.get_ref()),
                Some(x) => Err(src.value_error(x, key, "must be from 0 to 1")),
                None => Ok(default),
            };
            let ms = |v: &Option<Spanned<String>>, key: &str, default: u64| match v {
                Some(x) => match parse_lifetime(x.get_ref()) {
                    Ok(d) if !d.is_zero() => Ok(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    Ok(_) => Err(src.value_error(x, key, "must be greater than zero")),
                    Err(m) => Err(src.value_error(x, key, m)),
                },
                None => Ok(default),
            };
            RouterSpec::Prophet(ProphetParams {
                p_encounter_max: p(&r.p_encounter_max, "p_encounter_max", d.p_encounter_max)?,
                p_encounter_first: p(&r.p_encounter_first, "p_encounter_first", d.p_encounter_first)?,
                p_first_threshold: p(&r.p_first_threshold, "p_first_threshold", d.p_first_threshold)?,
                beta: p(&r.beta, "beta", d.beta)?,
                gamma: p(&r.gamma, "gamma", d.gamma)?,
                delta: p(&r.delta, "delta", d.delta)?,
                typical_interval_ms: ms(&r.typical_interval, "typical_interval", d.typical_interval_ms)?,
                time_unit_ms: ms(&r.time_unit, "time_unit", d.time_unit_ms)?,
            })
        }
        _ => {
            let Some(plan) = &r.contact_plan else {
                return Err(src.value_error(at, "router", "cgr needs contact_plan under [routing]"));
            };
            let path = src.path.parent().unwrap_or(Path::new(".")).join(plan.get_ref());
            let text = std::fs::read_to_string(&path)
                .map_err(|e| src.value_error(plan, "contact_plan", format!("cannot read {}: {e}", path.display())))?;
            let now = crate::clock::SystemClock.now();
            let parsed = ContactPlan::parse_ion(&text, &path.display().to_string(), now)
                .map_err(|e| src.value_error(plan, "contact_plan", e.to_string()))?;
            RouterSpec::Cgr(std::sync::Arc::new(parsed))
        }
    })
}

/// A `[routing]` key that the chosen router does not use is an error.
fn routing_unused(src: &Source<'_>, name: &str, r: &RoutingConfig) -> Result<(), ConfigError> {
    let spray = name.contains("spray");
    let prophet = name == "prophet";
    let floats = [
        ("p_encounter_max", &r.p_encounter_max),
        ("p_encounter_first", &r.p_encounter_first),
        ("p_first_threshold", &r.p_first_threshold),
        ("beta", &r.beta),
        ("gamma", &r.gamma),
        ("delta", &r.delta),
    ];
    let unused = || format!("does not apply to the {name} router");
    if let (Some(c), false) = (&r.copies, spray) {
        return Err(src.value_error(c, "copies", unused()));
    }
    for (key, v) in floats {
        if let (Some(v), false) = (v, prophet) {
            return Err(src.value_error(v, key, unused()));
        }
    }
    for (key, v) in [("typical_interval", &r.typical_interval), ("time_unit", &r.time_unit)] {
        if let (Some(v), false) = (v, prophet) {
            return Err(src.value_error(v, key, unused()));
        }
    }
    if let (Some(p), false) = (&r.contact_plan, name == "cgr") {
        return Err(src.value_error(p, "contact_plan", unused()));
    }
    Ok(())
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<(FileConfig, String), ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let cfg = FileConfig::parse(path, &text)?;
        Ok((cfg, text))
    }

    /// Parses config text; `path` is only used in error messages.
    pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| syntax_error(path, text, &e))
    }
}

/// Turns toml's error into one that names the file, the line and, when it can be
/// told, the key.
fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = text[offset..].find('\n').map(|i| offset + i).unwrap_or(text.len());
    let line_text = text[line_start..line_end].trim_end_matches('\r');
    let line = text[..offset].matches('\n').count() + 1;
    let column = text[line_start..offset].chars().count() + 1;
    // `key = value`: the key is what stands before the '=' on that line.
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    ConfigError::Syntax {
        path: path.to_owned(),
        line,
        column,
        key,
        message: e.message().trim().to_owned(),
        text: line_text.to_owned(),
    }
}

/// The default data folder: `$FERRY_DATA_DIR`, else `$XDG_DATA_HOME/ferry`, else
/// `~/.local/share/ferry`.
pub fn default_data_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = nonempty("FERRY_DATA_DIR") {
        return Some(d);
    }
    if let Some(d) = nonempty("XDG_DATA_HOME") {
        return Some(d.join("ferry"));
    }
    nonempty("HOME").map(|h| h.join(".local/share/ferry"))
}

/// Parses a lifetime as dtn7 does (humantime: `90s`, `1h 30m`), or a bare
/// number of milliseconds.
pub fn parse_lifetime(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().map(Duration::from_millis).map_err(|e| e.to_string());
    }
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 90s, 1h or 2days ({e})"))
}

fn parse_node_id(s: &str) -> Result<Eid, String> {
    let eid: Eid = s.parse().map_err(|e| format!("`{s}` is not an endpoint ID: {e}"))?;
    if !eid.is_node_id() {
        return Err(format!("`{s}` is not a node ID (dtn://name/ or ipn:N.0)"));
    }
    Ok(eid)
}

fn resolve_listen(s: &str) -> Result<SocketAddr, String> {
    let addrs: Vec<SocketAddr> =
        s.to_socket_addrs().map_err(|e| format!("`{s}` is not an ADDRESS:PORT to listen on ({e})"))?.collect();
    // Prefer IPv4 (the tools dial 127.0.0.1 by default).
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("`{s}` resolves to no address"))
}

impl Settings {
    /// Merges the file (if any), the flags and the defaults, checking every value.
    pub fn build(file: Option<(&Path, &str, FileConfig)>, flags: &Overrides) -> Result<Settings, ConfigError> {
        let empty = FileConfig::default();
        let (src, cfg) = match &file {
            Some((path, text, cfg)) => (Some(Source { path, text }), cfg),
            None => (None, &empty),
        };
        let src = src.unwrap_or(Source { path: Path::new("<none>"), text: "" });

        let node_id = match (&flags.node_id, &cfg.node_id) {
            (Some(s), _) => Some(parse_node_id(s).map_err(|message| ConfigError::Flag { flag: "--node-id", message })?),
            (None, Some(s)) => Some(parse_node_id(s.get_ref()).map_err(|m| src.value_error(s, "node_id", m))?),
            (None, None) => None,
        };

        let data_dir = match (&flags.data_dir, &cfg.data_dir) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => d.clone(),
            (None, None) => default_data_dir().ok_or(ConfigError::NoDataDir)?,
        };

        let mut warnings = vec![];
        let mut routes = vec![];
        for r in &cfg.routes {
            let via = parse_node_id(r.via.get_ref()).map_err(|m| src.value_error(&r.via, "via", m))?;
            routes.push(StaticRoute { pattern: r.pattern.clone(), via });
        }
        let name = cfg.router.as_ref().map_or("epidemic", |r| r.get_ref().as_str());
        if name != "static" && !routes.is_empty() {
            warnings.push(format!("[[routes]] are ignored by the {name} router; set router = \"static\""));
        }
        let router = match cfg.router.as_ref().map(|r| (r, r.get_ref().as_str())) {
            None | Some((_, "epidemic")) => RouterSpec::Epidemic,
            Some((_, "static")) => RouterSpec::Static(routes),
            Some((r, other @ ("spray-and-wait" | "binary-spray-and-wait" | "prophet" | "cgr"))) => {
                routing_spec(&src, r, other, &cfg.routing)?
            }
            Some((r, other)) => {
                return Err(src.value_error(
                    r,
                    "router",
                    format!(
                        "unknown router `{other}` (epidemic, static, spray-and-wait, binary-spray-and-wait, prophet or cgr)"
                    ),
                ))
            }
        };
        routing_unused(&src, name, &cfg.routing)?;

        let default_lifetime = match &cfg.default_lifetime {
            Some(s) => {
                let d = parse_lifetime(s.get_ref()).map_err(|m| src.value_error(s, "default_lifetime", m))?;
                if d.is_zero() {
                    return Err(src.value_error(s, "default_lifetime", "must be greater than zero"));
                }
                d
            }
            None => DEFAULT_LIFETIME,
        };

        let hop_limit = match &cfg.hop_limit {
            // RFC 9171 §4.4.3: the hop limit is in 1..=255.
            Some(h) if !(1..=255).contains(h.get_ref()) => {
                return Err(src.value_error(h, "hop_limit", "must be between 1 and 255 (RFC 9171 §4.4.3)"))
            }
            Some(h) => *h.get_ref(),
            None => DEFAULT_HOP_LIMIT,
        };

        let api = match (&flags.api, &cfg.api.listen) {
            (Some(a), _) => resolve_listen(a).map_err(|message| ConfigError::Flag { flag: "--api", message })?,
            (None, Some(a)) => resolve_listen(a.get_ref()).map_err(|m| src.value_error(a, "api.listen", m))?,
            (None, None) => {
                resolve_listen(DEFAULT_API).map_err(|message| ConfigError::Flag { flag: "--api", message })?
            }
        };
        let allow_remote = cfg.api.allow_remote;
        if !api.ip().is_loopback() && !allow_remote {
            return Err(ConfigError::RemoteApi { addr: api });
        }
        let api_max_connections = match &cfg.api.max_connections {
            Some(n) if *n.get_ref() == 0 => {
                return Err(src.value_error(n, "api.max_connections", "must be at least 1"))
            }
            Some(n) => *n.get_ref(),
            None => 256,
        };
        let api_header_timeout = match &cfg.api.header_timeout {
            Some(t) => match humantime::parse_duration(t.get_ref()) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => return Err(src.value_error(t, "api.header_timeout", "must be longer than zero")),
                Err(e) => {
                    return Err(src.value_error(t, "api.header_timeout", format!("not a duration (\"10s\"): {e}")))
                }
            },
            None => Duration::from_secs(10),
        };

        let base = src.path.parent().unwrap_or(Path::new("."));
        let api_token = match &cfg.api.token_file {
            Some(f) if f.get_ref().as_os_str().is_empty() => {
                return Err(src.value_error(f, "token_file", "names no file"));
            }
            Some(f) => crate::auth::TokenSource::File(base.join(f.get_ref())),
            // Off loopback the API always needs a token.
            None if !api.ip().is_loopback() => crate::auth::TokenSource::Generated,
            None => crate::auth::TokenSource::None,
        };

        let mut clas = vec![];
        for c in &cfg.cla {
            let path = c.path.get_ref();
            if path.as_os_str().is_empty() {
                return Err(src.value_error(&c.path, "path", "names no plugin library"));
            }
            let settings = toml::to_string(&c.settings)
                .map_err(|e| src.value_error(&c.path, "settings", format!("cannot be handed to the plugin: {e}")))?;
            let sha256 = match &c.sha256 {
                Some(d) => Some(
                    crate::security::pin::Sha256Pin::parse(d.get_ref()).map_err(|m| src.value_error(d, "sha256", m))?,
                ),
                None => None,
            };
            clas.push(crate::plugins::ClaSpec { path: base.join(path), settings, sha256 });
        }
        if clas.is_empty() && cfg.default_cla.unwrap_or(true) && !flags.no_default_cla {
            match crate::plugins::default_tcp_plugin() {
                Some(path) => {
                    clas.push(crate::plugins::ClaSpec { path, settings: DEFAULT_TCP_SETTINGS.to_owned(), sha256: None })
                }
                None => warnings.push(
                    "no [[cla]] configured and no libferry_cla_tcp.so next to ferryd: this node has no convergence \
                     layer and reaches no peer"
                        .to_owned(),
                ),
            }
        }

        let app_error = |span: std::ops::Range<usize>, key: &str, message: String| ConfigError::Value {
            path: src.path.to_owned(),
            line: src.line_of(span.start),
            key: key.to_owned(),
            message,
        };
        let apps = crate::apps::spec::build(&cfg.app, base, &app_error)?;

        let mut security =
            crate::security::Policy { sign_originated: cfg.security.sign_originated, ..Default::default() };
        for r in &cfg.security.require_signature {
            let rule = crate::security::EndpointRule::parse(r.get_ref())
                .map_err(|m| src.value_error(r, "require_signature", m))?;
            security.require_signature.push(rule);
        }
        for n in &cfg.security.encrypt_for {
            security.encrypt_for.push(parse_node_id(n.get_ref()).map_err(|m| src.value_error(n, "encrypt_for", m))?);
        }
        for t in &cfg.trust {
            let node = parse_node_id(t.node.get_ref()).map_err(|m| src.value_error(&t.node, "node", m))?;
            let key = crate::security::parse_public_key(t.key.get_ref())
                .map_err(|e| src.value_error(&t.key, "key", e.to_string()))?;
            if security.trust.iter().any(|(n, _)| n == &node) {
                return Err(src.value_error(&t.node, "node", format!("{node} is trusted twice")));
            }
            security.trust.push((node, key));
        }

        Ok(Settings {
            node_id,
            data_dir,
            router,
            default_lifetime,
            hop_limit,
            strict_primary_crc: cfg.strict_primary_crc,
            log: cfg.log.clone(),
            api,
            allow_remote,
            api_token,
            api_max_connections,
            api_header_timeout,
            clas,
            apps,
            security,
            store_min_free_bytes: cfg.store.min_free_mib.unwrap_or(64).saturating_mul(1 << 20),
            warnings,
        })
    }

    /// Loads `path` (if given) and merges it with the flags.
    pub fn load(path: Option<&Path>, flags: &Overrides) -> Result<Settings, ConfigError> {
        match path {
            Some(p) => {
                let (cfg, text) = FileConfig::load(p)?;
                Settings::build(Some((p, &text, cfg)), flags)
            }
            None => Settings::build(None, flags),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Settings, ConfigError> {
        let path = Path::new("ferry.toml");
        let flags = Overrides { data_dir: Some("/tmp/x".into()), ..Default::default() };
        let cfg = FileConfig::parse(path, text)?;
        Settings::build(Some((path, text, cfg)), &flags)
    }

    #[test]
    fn full_config_parses() {
        let s = settings(
            "node_id = \"dtn://camp/\"\nrouter = \"static\"\ndefault_lifetime = \"2h\"\nhop_limit = 8\n\
             [api]\nlisten = \"127.0.0.1:4000\"\n[[routes]]\npattern = \"dtn://far/*\"\nvia = \"dtn://gw/\"\n",
        )
        .unwrap();
        assert_eq!(s.node_id, Some("dtn://camp/".parse().unwrap()));
        assert_eq!(s.default_lifetime, Duration::from_secs(7200));
        assert_eq!(s.hop_limit, 8);
        assert_eq!(s.api, "127.0.0.1:4000".parse().unwrap());
        assert_eq!(
            s.router,
            RouterSpec::Static(vec![StaticRoute { pattern: "dtn://far/*".into(), via: "dtn://gw/".parse().unwrap() }])
        );
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn api_limits_have_defaults_and_are_checked() {
        let s = settings("").unwrap();
        assert_eq!((s.api_max_connections, s.api_header_timeout), (256, Duration::from_secs(10)));
        let s = settings("[api]\nmax_connections = 8\nheader_timeout = \"500ms\"\n").unwrap();
        assert_eq!((s.api_max_connections, s.api_header_timeout), (8, Duration::from_millis(500)));
        let e = settings("[api]\nmax_connections = 0\n").unwrap_err().to_string();
        assert!(e.contains("api.max_connections") && e.contains("at least 1"), "{e}");
        let e = settings("[api]\n\nheader_timeout = \"soon\"\n").unwrap_err().to_string();
        assert!(e.starts_with("ferry.toml:3:") && e.contains("header_timeout"), "{e}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = settings("router = \"epidemic\"\n\nnode_idd = \"dtn://x/\"\n").unwrap_err().to_string();
        assert!(e.starts_with("ferry.toml:3:"), "{e}");
        assert!(e.contains("node_idd"), "{e}");
    }

    #[test]
    fn routers_take_their_parameters_from_routing() {
        let s = settings("router = \"binary-spray-and-wait\"\n[routing]\ncopies = 8\n").unwrap();
        assert_eq!(s.router, RouterSpec::SprayAndWait { copies: 8, mode: SprayMode::Binary });
        let s = settings("router = \"spray-and-wait\"\n").unwrap();
        assert_eq!(s.router, RouterSpec::SprayAndWait { copies: 6, mode: SprayMode::Vanilla });
        let s = settings("router = \"prophet\"\n[routing]\nbeta = 0.5\ntypical_interval = \"10m\"\n").unwrap();
        let want = ProphetParams { beta: 0.5, typical_interval_ms: 600_000, ..ProphetParams::default() };
        assert_eq!(s.router, RouterSpec::Prophet(want));
        let e = settings("router = \"prophet\"\n[routing]\n\ngamma = 2.0\n").unwrap_err().to_string();
        assert!(e.starts_with("ferry.toml:4: `gamma`: must be from 0 to 1"), "{e}");
        let e = settings("router = \"epidemic\"\n[routing]\ncopies = 3\n").unwrap_err().to_string();
        assert!(e.starts_with("ferry.toml:3: `copies`: does not apply to the epidemic router"), "{e}");
        let e = settings("router = \"binary-spray-and-wait\"\n[routing]\ncopies = 0\n").unwrap_err().to_string();
        assert!(e.starts_with("ferry.toml:3: `copies`: must be at least 1"), "{e}");
        let e = settings("router = \"cgr\"\n").unwrap_err().to_string();
        assert!(e.starts_with("ferry.toml:1: `router`: cgr needs contact_plan"), "{e}");
    }

    #[test]
    fn cgr_reads_its_contact_plan_next_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plan.txt"), "a contact +0 +60 1 2 1000\n").unwrap();
        let path = dir.path().join("ferry.toml");
        let text = "router = \"cgr\"\n[routing]\ncontact_plan = \"plan.txt\"\n";
        let cfg: FileConfig = toml::from_str(text).unwrap();
        let flags = Overrides { data_dir: Some("/tmp/x".into()), ..Overrides::default() };
        let s = Settings::build(Some((&path, text, cfg)), &flags).unwrap();
        let RouterSpec::Cgr(plan) = &s.router else { panic!("{:?}", s.router) };
        assert_eq!(plan.len(), 1);
        std::fs::write(dir.path().join("plan.txt"), "a contact +0 +60 1 2\n").unwrap();
        let cfg: FileConfig = toml::from_str(text).unwrap();
        let e = Settings::build(Some((&path, text, cfg)), &flags).unwrap_err().to_string();
        assert!(e.contains("`contact_plan`") && e.contains("plan.txt:1: expected a rate"), "{e}");
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let e = settings("hop_limit = \"many\"\n").unwrap_err().to_string();
        assert!(e.starts_with("ferry.toml:1:"), "{e}");
        assert!(e.contains("hop_limit"), "{e}");
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let e = settings("\nnode_id = \"dtn://camp/mail\"\n").unwrap_err().to_string();
        assert!(e.starts_with("ferry.toml:2: `node_id`"), "{e}");
        let e = settings("router = \"flooding\"\n").unwrap_err().to_string();
        assert!(e.starts_with("ferry.toml:1: `router`"), "{e}");
        let e = settings("[[routes]]\npattern = \"*\"\nvia = \"nowhere\"\n").unwrap_err().to_string();
        assert!(e.starts_with("ferry.toml:3: `via`"), "{e}");
        let e = settings("hop_limit = 0\n").unwrap_err().to_string();
        assert!(e.contains("`hop_limit`"), "{e}");
        let e = settings("[api]\nlisten = \"0.0.0.0:3000\"\n").unwrap_err().to_string();
        assert!(e.contains("allow_remote"), "{e}");
        let remote = settings("[api]\nlisten = \"0.0.0.0:3000\"\nallow_remote = true\n").unwrap();
        assert_eq!(remote.api_token, crate::auth::TokenSource::Generated, "off loopback a token is always needed");
        assert_eq!(settings("").unwrap().api_token, crate::auth::TokenSource::None);
        let own = settings("[api]\ntoken_file = \"t\"\n").unwrap();
        assert_eq!(own.api_token, crate::auth::TokenSource::File(PathBuf::from("t")));
    }

    #[test]
    fn security_policy_and_trust() {
        let key = crate::security::encode_public_key(&crate::security::Identity::from_seed(&[1; 32]).public_key());
        let s = settings(&format!(
            "[security]\nsign_originated = true\nrequire_signature = [\"secure\", \"dtn://x/y\", \"*\"]\n\
             encrypt_for = [\"dtn://c/\"]\n[[trust]]\nnode = \"dtn://a/\"\nkey = \"{key}\"\n"
        ))
        .unwrap();
        assert!(s.security.sign_originated);
        assert_eq!(s.security.require_signature.len(), 3);
        assert_eq!(s.security.encrypt_for, vec![Eid::dtn_node("c").unwrap()]);
        assert_eq!(s.security.trust.len(), 1);
        let e = settings("[[trust]]\nnode = \"dtn://a/\"\nkey = \"AAAA\"\n").unwrap_err().to_string();
        assert!(e.starts_with("ferry.toml:3: `key`") && e.contains("not an Ed25519 public key"), "{e}");
        let e = settings("[security]\nencrypt_for = [\"dtn://c/in\"]\n").unwrap_err().to_string();
        assert!(e.starts_with("ferry.toml:2: `encrypt_for`"), "{e}");
        let e = settings("[security]\nsign_everything = true\n").unwrap_err().to_string();
        assert!(e.contains("sign_everything"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let path = Path::new("f.toml");
        let text = "node_id = \"dtn://a/\"\n[api]\nlisten = \"127.0.0.1:1\"\n";
        let cfg = FileConfig::parse(path, text).unwrap();
        let flags = Overrides {
            data_dir: Some("/d".into()),
            api: Some("127.0.0.1:2".into()),
            node_id: Some("ipn:7.0".into()),
            no_default_cla: true,
        };
        let s = Settings::build(Some((path, text, cfg)), &flags).unwrap();
        assert_eq!(s.api.port(), 2);
        assert_eq!(s.node_id, Some(Eid::ipn_node(7)));
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_lifetime("1500").unwrap(), Duration::from_millis(1500));
        assert!(parse_lifetime("soon").is_err());
    }
}
