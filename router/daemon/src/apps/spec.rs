//! `[[app]]` in ferryd's config: what an app may do, checked at start-up.
//!
//! ```toml
//! [[app]]
//! name = "email"                      # [a-z0-9_-]+, unique
//! component = "apps/email.wasm"       # relative to the config file
//! sha256 = "..."                       # optional pin: a component with another digest is not run
//! endpoints = ["mail", "mail-submit"] # services on this node (or full EIDs), registered for it
//! memory = "64MiB"                    # cap on the app's memories and tables (default 64MiB)
//! time_budget = "5s"                  # per call of start/on-bundle/on-tick (default 5s)
//! tick = "1s"                         # how often on-tick runs (default 1s)
//! max_attempts = 5                    # failures on one bundle before it is set aside (default 5)
//! autostart = true                    # start with ferryd (default true)
//! [app.dirs]                          # WASI preopens: folder seen by the app = folder on this machine
//! "/mail" = "/var/mail/ferry"
//! [app.config]                        # handed to the app's start() as JSON
//! lifetime = "7d"
//! [app.capabilities.project]          # a named capability: run `git` in one repository
//! program = "git"
//! dir = "/home/me/project"
//! allow = ["bundle", "rev-parse"]     # first arguments it accepts (git: a safe default list)
//! timeout = "60s"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{parse_lifetime, ConfigError};

/// Default cap on an app's linear memories and tables.
pub const DEFAULT_MEMORY: usize = 64 << 20;
/// Default time budget of one call into an app.
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(5);
/// Default interval of on-tick.
pub const DEFAULT_TICK: Duration = Duration::from_secs(1);
/// Default number of failures on one bundle before it is set aside.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default time limit of one capability run.
pub const DEFAULT_CAPABILITY_TIMEOUT: Duration = Duration::from_secs(60);
/// The git subcommands a `git` capability accepts when its config lists none:
/// enough to make, read and apply bundles and refs, nothing that talks to a
/// remote or runs a configured program.
pub const GIT_DEFAULT_ALLOW: &[&str] =
    &["bundle", "rev-parse", "for-each-ref", "update-ref", "rev-list", "cat-file", "show-ref", "merge-base"];

/// One `[[app]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub name: Spanned<String>,
    pub component: Spanned<PathBuf>,
    /// The component's SHA-256 (64 hex digits): any other file is not run.
    pub sha256: Option<Spanned<String>>,
    #[serde(default)]
    pub endpoints: Vec<Spanned<String>>,
    pub memory: Option<Spanned<String>>,
    pub time_budget: Option<Spanned<String>>,
    pub tick: Option<Spanned<String>>,
    pub max_attempts: Option<Spanned<u32>>,
    pub autostart: Option<bool>,
    #[serde(default)]
    pub dirs: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub config: toml::Table,
    #[serde(default)]
    pub capabilities: BTreeMap<String, CapabilityConfig>,
}

/// One `[app.capabilities.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapabilityConfig {
    pub program: Spanned<String>,
    pub dir: Spanned<PathBuf>,
    pub allow: Option<Vec<String>>,
    pub timeout: Option<Spanned<String>>,
}

/// An app as ferryd runs it.
#[derive(Debug, Clone)]
pub struct AppSpec {
    pub name: String,
    pub component: PathBuf,
    /// `sha256 = "..."`: the component is run only if it has this digest.
    pub sha256: Option<crate::security::pin::Sha256Pin>,
    /// As written: service names or EIDs; resolved against the node ID at start.
    pub endpoints: Vec<String>,
    pub memory: usize,
    pub time_budget: Duration,
    pub tick: Duration,
    pub max_attempts: u32,
    pub autostart: bool,
    /// Guest path -> host folder.
    pub dirs: BTreeMap<String, PathBuf>,
    /// `[app.config]` as JSON text.
    pub config_json: String,
    pub capabilities: BTreeMap<String, CapabilitySpec>,
}

/// A program the app may run, in one folder, with checked arguments.
#[derive(Debug, Clone)]
pub struct CapabilitySpec {
    pub program: String,
    pub dir: PathBuf,
    /// First arguments accepted; `None`: any arguments.
    pub allow: Option<Vec<String>>,
    pub timeout: Duration,
}

/// Reports a bad value at a span of the config text.
pub type ValueError<'a> = &'a dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError;

/// Parses `64MiB`, `10 MB`, `512k`, or a number of bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("`{s}` is not a size like 64MiB"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{s}` (B, KiB, MiB, GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn duration(
    v: &Option<Spanned<String>>,
    key: &str,
    default: Duration,
    err: ValueError,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) => {
            let d = parse_lifetime(s.get_ref()).map_err(|m| err(s.span(), key, m))?;
            if d.is_zero() {
                return Err(err(s.span(), key, "must be greater than zero".into()));
            }
            Ok(d)
        }
    }
}

/// Checks every `[[app]]`; `base` is the config file's folder.
pub fn build(apps: &[AppConfig], base: &Path, err: ValueError) -> Result<Vec<AppSpec>, ConfigError> {
    let mut out: Vec<AppSpec> = vec![];
    for a in apps {
        let name = a.name.get_ref();
        if !valid_name(name) {
            return Err(err(a.name.span(), "name", format!("`{name}` is not an app name (a-z, 0-9, - and _)")));
        }
        if out.iter().any(|o| &o.name == name) {
            return Err(err(a.name.span(), "name", format!("two apps are named `{name}`")));
        }
        if a.component.get_ref().as_os_str().is_empty() {
            return Err(err(a.component.span(), "component", "names no component file".into()));
        }
        let mut endpoints = vec![];
        for e in &a.endpoints {
            let text = e.get_ref().trim();
            if text.is_empty() {
                return Err(err(e.span(), "endpoints", "an endpoint is empty".into()));
            }
            if let Some(other) = out.iter().find(|o| o.endpoints.iter().any(|x| x == text)) {
                return Err(err(e.span(), "endpoints", format!("`{text}` already belongs to app `{}`", other.name)));
            }
            endpoints.push(text.to_owned());
        }
        let memory = match &a.memory {
            None => DEFAULT_MEMORY,
            Some(m) => {
                let n = parse_size(m.get_ref()).map_err(|msg| err(m.span(), "memory", msg))?;
                if n < 1 << 20 {
                    return Err(err(m.span(), "memory", "must be at least 1MiB".into()));
                }
                n
            }
        };
        let max_attempts = match &a.max_attempts {
            Some(n) if *n.get_ref() == 0 => return Err(err(n.span(), "max_attempts", "must be at least 1".into())),
            Some(n) => *n.get_ref(),
            None => DEFAULT_MAX_ATTEMPTS,
        };
        let mut dirs = BTreeMap::new();
        for (guest, host) in &a.dirs {
            if !guest.starts_with('/') {
                return Err(err(
                    a.name.span(),
                    "dirs",
                    format!("`{guest}`: the folder the app sees must start with /"),
                ));
            }
            dirs.insert(guest.clone(), base.join(host));
        }
        let config_json = serde_json::to_string(&a.config)
            .map_err(|e| err(a.name.span(), "config", format!("cannot be handed to the app as JSON: {e}")))?;
        let mut capabilities = BTreeMap::new();
        for (cname, c) in &a.capabilities {
            let program = c.program.get_ref().trim().to_owned();
            if program.is_empty() {
                return Err(err(c.program.span(), "program", format!("capability `{cname}` names no program")));
            }
            let timeout = duration(&c.timeout, "timeout", DEFAULT_CAPABILITY_TIMEOUT, err)?;
            let is_git = Path::new(&program).file_name().is_some_and(|f| f == "git");
            let allow = match (&c.allow, is_git) {
                (Some(list), _) => Some(list.clone()),
                (None, true) => Some(GIT_DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect()),
                (None, false) => None,
            };
            capabilities
                .insert(cname.clone(), CapabilitySpec { program, dir: base.join(c.dir.get_ref()), allow, timeout });
        }
        let sha256 = match &a.sha256 {
            Some(d) => {
                Some(crate::security::pin::Sha256Pin::parse(d.get_ref()).map_err(|m| err(d.span(), "sha256", m))?)
            }
            None => None,
        };
        out.push(AppSpec {
            name: name.clone(),
            component: base.join(a.component.get_ref()),
            sha256,
            endpoints,
            memory,
            time_budget: duration(&a.time_budget, "time_budget", DEFAULT_TIME_BUDGET, err)?,
            tick: duration(&a.tick, "tick", DEFAULT_TICK, err)?,
            max_attempts,
            autostart: a.autostart.unwrap_or(true),
            dirs,
            config_json,
            capabilities,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FileConfig, Overrides, Settings};

    fn apps(text: &str) -> Result<Vec<AppSpec>, ConfigError> {
        let path = Path::new("/etc/ferry/ferry.toml");
        let cfg = FileConfig::parse(path, text)?;
        let flags = Overrides { data_dir: Some("/tmp/x".into()), no_default_cla: true, ..Default::default() };
        Ok(Settings::build(Some((path, text, cfg)), &flags)?.apps)
    }

    #[test]
    fn a_full_app_table() {
        let a = apps(
            "[[app]]\nname = \"gitsync\"\ncomponent = \"apps/g.wasm\"\nendpoints = [\"gitsync\"]\nmemory = \"32MiB\"\n\
             time_budget = \"2s\"\ntick = \"500ms\"\nmax_attempts = 3\nautostart = false\n\
             [app.dirs]\n\"/state\" = \"state\"\n[app.config]\nlifetime = \"1d\"\n\
             [app.capabilities.project]\nprogram = \"git\"\ndir = \"/srv/p\"\n\
             [app.capabilities.sh]\nprogram = \"/bin/sh\"\ndir = \"/tmp\"\nallow = [\"-c\"]\ntimeout = \"3s\"\n",
        )
        .unwrap();
        let a = &a[0];
        assert_eq!(a.component, PathBuf::from("/etc/ferry/apps/g.wasm"));
        assert_eq!((a.memory, a.max_attempts, a.autostart), (32 << 20, 3, false));
        assert_eq!((a.time_budget, a.tick), (Duration::from_secs(2), Duration::from_millis(500)));
        assert_eq!(a.dirs["/state"], PathBuf::from("/etc/ferry/state"));
        assert_eq!(a.config_json, r#"{"lifetime":"1d"}"#);
        let git = &a.capabilities["project"];
        assert_eq!(git.allow.as_deref().map(<[String]>::len), Some(GIT_DEFAULT_ALLOW.len()));
        assert_eq!(git.timeout, DEFAULT_CAPABILITY_TIMEOUT);
        assert_eq!(a.capabilities["sh"].allow.as_deref(), Some(&["-c".to_owned()][..]));
    }

    #[test]
    fn bad_tables_name_line_and_key() {
        let e = apps("[[app]]\nname = \"a\"\ncomponent = \"a.wasm\"\n\n[[app]]\nname = \"b\"\ncomponent = \"b.wasm\"\nmax_attempts = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/etc/ferry/ferry.toml:8: `max_attempts`"), "{e}");
        let e = apps("[[app]]\nname = \"a\"\ncomponent = \"a.wasm\"\nendpoints = [\"x\"]\n[[app]]\nname = \"b\"\ncomponent = \"b.wasm\"\nendpoints = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":8: `endpoints`") && e.contains("belongs to app `a`"), "{e}");
        let e = apps("[[app]]\nname = \"a\"\ncomponent = \"a.wasm\"\n[app.dirs]\n\"state\" = \"/s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`dirs`"), "{e}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("10 mb").unwrap(), 10 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }
}
