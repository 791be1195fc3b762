//! Scenario files (TOML): what to simulate. Times are in seconds, sizes and
//! rates in bytes (per second); paths are relative to the scenario file.
//!
//! ```toml
//! name = "line"
//! seed = 1
//! duration = 3600            # s of simulated time
//! nodes = 3                  # default: the highest node number the inputs use
//! buffer_size = 5_000_000    # bytes per node; default unlimited
//! link_model = "one"         # "ion" (default): each direction its own queue and rate
//! sample_interval = 60       # s between samples of the time series (default duration/100)
//!
//! [router]
//! name = "binary-spray-and-wait"   # epidemic, spray-and-wait, binary-spray-and-wait, prophet, cgr, static
//! copies = 8                       # spray-and-wait's L
//! # prophet: p_encounter_max, p_encounter_first, p_first_threshold, beta, gamma, delta,
//! #          typical_interval (s), time_unit (s)
//! # static: routes = [{ pattern = "ipn:3.*", via = 2 }]
//!
//! [contacts]
//! plan = "plan.txt"          # ION contact plan (a contact / a range), and/or
//! trace = "trace.txt"        # the ONE's external events (CONN lines)
//! rate = 250_000             # bytes/s of trace links
//!
//! [messages]                 # a trace (C lines of a ONE events file) ...
//! trace = "messages.txt"
//! # ... or a generator like the ONE's MessageEventGenerator:
//! interval = [25, 35]        # s between creations, uniform
//! size = [500_000, 1_000_000]
//! hosts = [1, 50]            # node numbers, inclusive; default all
//! start = 0
//! end = 3000                 # default: duration
//! ttl = 18000                # s; default: the rest of the run, never expires
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_core::contact::{ContactPlan, PlanError};
use ferry_core::eid::Eid;
use ferry_core::router::prophet::ProphetParams;
use ferry_core::router::spray::SprayMode;
use ferry_core::router::{RouterSpec, StaticRoute};
use serde::Deserialize;

use crate::rng::Rng;
use crate::trace::{self, ConnEvent, MessageEvent, TraceError};

/// The DTN time that simulated time 0 stands for (2025-01-01T00:00:00Z):
/// creation times must not be 0 (RFC 9171 §4.2.7 reserves it for nodes
/// without a clock).
pub const DEFAULT_EPOCH: u64 = 788_918_400_000;

/// How links carry bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkModel {
    /// ION's: a contact is one direction with its own rate; transfers in the
    /// two directions of a pair do not wait for each other, and a bundle
    /// arrives its one-way light time after it is sent.
    Ion,
    /// The ONE's: a connection is both ways and carries one transfer at a time
    /// in either direction; a transfer still running when it goes down is
    /// aborted.
    One,
}

/// Where messages come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Messages {
    Trace(Vec<MessageEvent>),
    Generator(Generator),
}

/// Uniformly random messages, like the ONE's MessageEventGenerator.
#[derive(Debug, Clone, PartialEq)]
pub struct Generator {
    pub interval_ms: (u64, u64),
    pub size: (u64, u64),
    /// Node numbers, inclusive.
    pub hosts: (u64, u64),
    pub start_ms: u64,
    pub end_ms: u64,
}

/// One generated message: (creation ms, source node, destination node, size).
pub type Generated = (u64, u64, u64, u64);

/// The messages a [`Generator`] makes, in order: the first one interval after
/// `start`, then one every interval (uniform in its range) until `end`;
/// source and destination are distinct hosts, the size uniform in its range.
#[derive(Debug, Clone)]
pub struct GeneratedMessages {
    g: Generator,
    rng: Rng,
    next: u64,
}

impl GeneratedMessages {
    pub fn new(g: &Generator, seed: u64) -> GeneratedMessages {
        let mut rng = Rng::new(seed);
        let next = g.start_ms + rng.between(g.interval_ms.0, g.interval_ms.1);
        GeneratedMessages { g: g.clone(), rng, next }
    }
}

impl Iterator for GeneratedMessages {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        let g = &self.g;
        if self.next >= g.end_ms {
            return None;
        }
        let src = self.rng.between(g.hosts.0, g.hosts.1);
        let mut dst = self.rng.between(g.hosts.0, g.hosts.1 - 1);
        if dst >= src {
            dst += 1;
        }
        let size = self.rng.between(g.size.0, g.size.1);
        let at = self.next;
        self.next = at + self.rng.between(g.interval_ms.0, g.interval_ms.1);
        Some((at, src, dst, size))
    }
}

/// A scenario with its inputs read and checked.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    pub duration_ms: u64,
    /// Nodes are numbered 1..=nodes (`ipn:N.0`).
    pub nodes: u64,
    pub buffer_size: Option<u64>,
    pub link_model: LinkModel,
    pub sample_ms: u64,
    pub router: RouterSpec,
    pub plan: Option<Arc<ContactPlan>>,
    pub connections: Vec<ConnEvent>,
    pub trace_rate: u64,
    pub messages: Messages,
    pub ttl_ms: u64,
    /// DTN time of simulated time 0.
    pub epoch: u64,
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Toml { path: PathBuf, source: Box<toml::de::Error> },
    #[error("{path}: {what}")]
    Invalid { path: PathBuf, what: String },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Trace(#[from] TraceError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    #[serde(default = "one")]
    seed: u64,
    duration: f64,
    nodes: Option<u64>,
    buffer_size: Option<u64>,
    link_model: Option<LinkModel>,
    sample_interval: Option<f64>,
    #[serde(default)]
    router: RouterFile,
    #[serde(default)]
    contacts: ContactsFile,
    #[serde(default)]
    messages: MessagesFile,
}

fn one() -> u64 {
    1
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouterFile {
    name: Option<String>,
    copies: Option<u64>,
    p_encounter_max: Option<f64>,
    p_encounter_first: Option<f64>,
    p_first_threshold: Option<f64>,
    beta: Option<f64>,
    gamma: Option<f64>,
    delta: Option<f64>,
    typical_interval: Option<f64>,
    time_unit: Option<f64>,
    #[serde(default)]
    routes: Vec<RouteFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    pattern: String,
    via: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactsFile {
    plan: Option<PathBuf>,
    trace: Option<PathBuf>,
    rate: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagesFile {
    trace: Option<PathBuf>,
    interval: Option<[f64; 2]>,
    size: Option<[u64; 2]>,
    hosts: Option<[u64; 2]>,
    start: Option<f64>,
    end: Option<f64>,
    ttl: Option<f64>,
}

/// The router names a scenario (and `ferry-sim sweep --router`) accepts.
pub const ROUTERS: &[&str] = &["epidemic", "spray-and-wait", "binary-spray-and-wait", "prophet", "cgr", "static"];

/// Router parameters a sweep can vary.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RouterParams {
    pub copies: Option<u64>,
}

impl Scenario {
    /// Reads a scenario file and the files it names.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read { path: path.into(), source })?;
        Scenario::parse(&text, path)
    }

    /// Parses scenario text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        Scenario::parse_with(text, path, &|p| std::fs::read_to_string(p))
    }

    /// [`Scenario::parse`], reading the files the scenario names (contact
    /// plan, traces) through `read_file` instead of the filesystem: the fuzz
    /// target serves them from memory.
    pub fn parse_with(
        text: &str,
        path: &Path,
        read_file: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Scenario, ScenarioError> {
        let f: File =
            toml::from_str(text).map_err(|e| ScenarioError::Toml { path: path.into(), source: Box::new(e) })?;
        let invalid = |what: String| ScenarioError::Invalid { path: path.into(), what };
        let dir = path.parent().unwrap_or(Path::new("."));
        let read = |p: &Path| {
            let full = dir.join(p);
            read_file(&full)
                .map(|t| (t, full.display().to_string()))
                .map_err(|source| ScenarioError::Read { path: full, source })
        };
        let secs = |what: &str, v: f64| {
            if (0.0..1e12).contains(&v) {
                Ok((v * 1000.0).round() as u64)
            } else {
                Err(invalid(format!("{what} must be a number of seconds ≥ 0, not {v}")))
            }
        };
        let epoch = DEFAULT_EPOCH;
        let duration_ms = secs("duration", f.duration)?;
        if duration_ms == 0 {
            return Err(invalid("duration must be greater than 0".into()));
        }
        let plan = match &f.contacts.plan {
            Some(p) => {
                let (text, name) = read(p)?;
                Some(Arc::new(ContactPlan::parse_ion(&text, &name, epoch)?))
            }
            None => None,
        };
        let connections = match &f.contacts.trace {
            Some(p) => {
                let (text, name) = read(p)?;
                let t = trace::parse(&text, &name)?;
                if !t.messages.is_empty() {
                    return Err(invalid(format!("{name} has message lines: name it under [messages] trace")));
                }
                t.connections
            }
            None => vec![],
        };
        let trace_rate = f.contacts.rate.unwrap_or(250_000);
        if plan.is_none() && connections.is_empty() {
            return Err(invalid("[contacts] needs a plan or a trace".into()));
        }
        if trace_rate == 0 {
            return Err(invalid("[contacts] rate must be greater than 0".into()));
        }
        let m = &f.messages;
        let messages = match (&m.trace, m.interval) {
            (Some(_), Some(_)) => return Err(invalid("[messages] has both a trace and an interval: pick one".into())),
            (Some(p), None) => {
                let (text, name) = read(p)?;
                let t = trace::parse(&text, &name)?;
                if !t.connections.is_empty() {
                    return Err(invalid(format!("{name} has CONN lines: name it under [contacts] trace")));
                }
                Messages::Trace(t.messages)
            }
            (None, Some([lo, hi])) => {
                let interval_ms = (secs("interval", lo)?, secs("interval", hi)?);
                if interval_ms.0 == 0 || interval_ms.0 > interval_ms.1 {
                    return Err(invalid("[messages] interval must be [min, max] with 0 < min ≤ max".into()));
                }
                let size = m.size.map(|[a, b]| (a, b)).unwrap_or((1000, 1000));
                if size.0 == 0 || size.0 > size.1 {
                    return Err(invalid("[messages] size must be [min, max] with 0 < min ≤ max".into()));
                }
                Messages::Generator(Generator {
                    interval_ms,
                    size,
                    hosts: m.hosts.map(|[a, b]| (a, b)).unwrap_or((1, 0)),
                    start_ms: secs("start", m.start.unwrap_or(0.0))?,
                    end_ms: match m.end {
                        Some(e) => secs("end", e)?,
                        None => duration_ms,
                    },
                })
            }
            (None, None) => return Err(invalid("[messages] needs a trace or an interval".into())),
        };
        // Nodes: as given, else the highest number any input uses.
        let mut highest = 0;
        if let Some(p) = &plan {
            for c in p.contacts() {
                highest = highest.max(ipn_number(&c.from)).max(ipn_number(&c.to));
            }
        }
        for c in &connections {
            highest = highest.max(c.a).max(c.b);
        }
        if let Messages::Trace(msgs) = &messages {
            for e in msgs {
                highest = highest.max(e.from).max(e.to);
            }
        }
        let nodes = f.nodes.unwrap_or(highest);
        if nodes < 2 {
            return Err(invalid("a scenario needs at least 2 nodes".into()));
        }
        if highest > nodes {
            return Err(invalid(format!("the inputs name node {highest}, but nodes = {nodes}")));
        }
        let messages = match messages {
            Messages::Generator(mut g) => {
                if g.hosts == (1, 0) {
                    g.hosts = (1, nodes);
                }
                if g.hosts.0 < 1 || g.hosts.0 >= g.hosts.1 || g.hosts.1 > nodes {
                    return Err(invalid(format!("[messages] hosts must be [first, last] within 1..={nodes}")));
                }
                Messages::Generator(g)
            }
            t => t,
        };
        let ttl_ms = match m.ttl {
            Some(t) => secs("ttl", t)?.max(1),
            None => duration_ms.saturating_add(1),
        };
        let sample_ms = match f.sample_interval {
            Some(s) => secs("sample_interval", s)?.max(1),
            None => (duration_ms / 100).max(1),
        };
        let router = router_spec(&f.router, plan.as_ref(), RouterParams::default()).map_err(invalid)?;
        Ok(Scenario {
            name: f
                .name
                .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()),
            seed: f.seed,
            duration_ms,
            nodes,
            buffer_size: f.buffer_size,
            link_model: f.link_model.unwrap_or(LinkModel::Ion),
            sample_ms,
            router,
            plan,
            connections,
            trace_rate,
            messages,
            ttl_ms,
            epoch,
        })
    }

    /// This scenario with another router (a sweep): `name` from [`ROUTERS`];
    /// parameters not given keep their defaults.
    pub fn with_router(&self, name: &str, params: RouterParams) -> Result<Scenario, String> {
        let file = RouterFile { name: Some(name.into()), ..RouterFile::default() };
        let mut s = self.clone();
        s.router = match (&self.router, name) {
            (RouterSpec::Static(routes), "static") => RouterSpec::Static(routes.clone()),
            (RouterSpec::Prophet(p), "prophet") => RouterSpec::Prophet(*p),
            _ => router_spec(&file, self.plan.as_ref(), params)?,
        };
        if let (RouterSpec::SprayAndWait { copies, .. }, Some(c)) = (&mut s.router, params.copies) {
            *copies = c;
        }
        Ok(s)
    }
}

/// The node number of `ipn:N.x` (0 for other EIDs, which plans do not have).
pub fn ipn_number(eid: &Eid) -> u64 {
    match eid {
        Eid::Ipn { node, .. } => *node,
        _ => 0,
    }
}

fn router_spec(f: &RouterFile, plan: Option<&Arc<ContactPlan>>, over: RouterParams) -> Result<RouterSpec, String> {
    let name = f.name.as_deref().unwrap_or("epidemic");
    let copies = over.copies.or(f.copies);
    let only = |allowed: &[&str]| -> Result<(), String> {
        let given = [
            ("copies", f.copies.is_some()),
            ("p_encounter_max", f.p_encounter_max.is_some()),
            ("p_encounter_first", f.p_encounter_first.is_some()),
            ("p_first_threshold", f.p_first_threshold.is_some()),
            ("beta", f.beta.is_some()),
            ("gamma", f.gamma.is_some()),
            ("delta", f.delta.is_some()),
            ("typical_interval", f.typical_interval.is_some()),
            ("time_unit", f.time_unit.is_some()),
            ("routes", !f.routes.is_empty()),
        ];
        match given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
            Some((k, _)) => Err(format!("[router] {k} does not apply to {name}")),
            None => Ok(()),
        }
    };
    let spec = match name {
        "epidemic" => {
            only(&[])?;
            RouterSpec::Epidemic
        }
        "spray-and-wait" | "binary-spray-and-wait" => {
            only(&["copies"])?;
            let copies = copies.unwrap_or(6);
            if copies == 0 {
                return Err("[router] copies must be at least 1".into());
            }
            let mode = if name == "spray-and-wait" { SprayMode::Vanilla } else { SprayMode::Binary };
            RouterSpec::SprayAndWait { copies, mode }
        }
        "prophet" => {
            only(&[
                "p_encounter_max",
                "p_encounter_first",
                "p_first_threshold",
                "beta",
                "gamma",
                "delta",
                "typical_interval",
                "time_unit",
            ])?;
            let d = ProphetParams::default();
            let ms = |v: Option<f64>, default: u64| match v {
                Some(s) if s.is_finite() && s > 0.0 => Ok((s * 1000.0).round() as u64),
                Some(s) => Err(format!("[router] a time must be a positive number of seconds, not {s}")),
                None => Ok(default),
            };
            let p = ProphetParams {
                p_encounter_max: f.p_encounter_max.unwrap_or(d.p_encounter_max),
                p_encounter_first: f.p_encounter_first.unwrap_or(d.p_encounter_first),
                p_first_threshold: f.p_first_threshold.unwrap_or(d.p_first_threshold),
                beta: f.beta.unwrap_or(d.beta),
                gamma: f.gamma.unwrap_or(d.gamma),
                delta: f.delta.unwrap_or(d.delta),
                typical_interval_ms: ms(f.typical_interval, d.typical_interval_ms)?,
                time_unit_ms: ms(f.time_unit, d.time_unit_ms)?,
            };
            for (k, v) in [
                ("p_encounter_max", p.p_encounter_max),
                ("p_encounter_first", p.p_encounter_first),
                ("p_first_threshold", p.p_first_threshold),
                ("beta", p.beta),
                ("gamma", p.gamma),
                ("delta", p.delta),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("[router] {k} must be from 0 to 1, not {v}"));
                }
            }
            RouterSpec::Prophet(p)
        }
        "cgr" => {
            only(&[])?;
            let plan = plan.ok_or("[router] cgr needs a contact plan ([contacts] plan)")?;
            RouterSpec::Cgr(plan.clone())
        }
        "static" => {
            only(&["routes"])?;
            RouterSpec::Static(
                f.routes
                    .iter()
                    .map(|r| StaticRoute { pattern: r.pattern.clone(), via: Eid::ipn_node(r.via) })
                    .collect(),
            )
        }
        other => return Err(format!("[router] unknown router `{other}` (expected one of {})", ROUTERS.join(", "))),
    };
    Ok(spec)
}
