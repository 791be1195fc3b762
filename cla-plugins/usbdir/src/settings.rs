//! The plugin's settings (the `[cla.settings]` TOML table).
//!
//! [`Settings::parse`] is the one checked constructor: unknown keys, wrong
//! types and unusable values are errors that name the key. The meaning of
//! every key is in the [crate documentation](crate#settings).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::name;

/// Which mailboxes found on the folder become peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Announce {
    /// Every node folder on the stick, and the `nodes` listed.
    All,
    /// Only the `nodes` listed.
    Listed,
}

/// The validated settings of one plugin instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The folder watched (a stick's mount point, or a folder on it).
    pub path: PathBuf,
    /// How often the folder is looked at.
    pub poll_interval: Duration,
    /// Node IDs whose mailboxes are peers even before the stick has a folder for them.
    pub nodes: Vec<String>,
    /// Which mailboxes become peers.
    pub announce: Announce,
    /// Where the IDs of bundles taken from the folder are remembered.
    pub state_dir: Option<PathBuf>,
    /// Larger files are reported and left alone, never read into memory.
    pub max_bundle_size: u64,
}

/// Why settings are unusable. Every message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Not TOML, an unknown key, or a value of the wrong type (toml's message
    /// shows the line and the key).
    #[error("usbdir plugin settings: {0}")]
    Toml(String),
    /// `path` is missing.
    #[error("usbdir plugin settings: `path` is required (the folder to use, e.g. path = \"/media/usb/ferry\")")]
    NoPath,
    /// A path that is not absolute.
    #[error("usbdir plugin settings: `{key}` must be an absolute path, not \"{value}\"")]
    Relative { key: &'static str, value: String },
    /// A poll interval of 0 or over an hour.
    #[error("usbdir plugin settings: `poll_interval_ms` must be between 10 and 3600000, not {0}")]
    PollInterval(u64),
    /// A `nodes` entry that is not a node ID.
    #[error("usbdir plugin settings: `nodes` entry \"{0}\" is not a node ID (e.g. \"dtn://town/\" or \"ipn:7.0\")")]
    NotANodeId(String),
    /// A node ID too long for a folder name.
    #[error("usbdir plugin settings: `nodes` entry: {0}")]
    Name(#[from] name::NameError),
    /// `max_bundle_size` of 0.
    #[error("usbdir plugin settings: `max_bundle_size` must be at least 1")]
    MaxBundleSize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    path: Option<PathBuf>,
    #[serde(default = "default_poll")]
    poll_interval_ms: u64,
    #[serde(default)]
    nodes: Vec<String>,
    #[serde(default = "default_announce")]
    announce: Announce,
    state_dir: Option<PathBuf>,
    #[serde(default = "default_max_size")]
    max_bundle_size: u64,
}

fn default_poll() -> u64 {
    1000
}
fn default_announce() -> Announce {
    Announce::All
}
fn default_max_size() -> u64 {
    4 << 30
}

impl Settings {
    /// Parses and checks the `[cla.settings]` table.
    pub fn parse(text: &str) -> Result<Settings, SettingsError> {
        let raw: Raw = toml::from_str(text).map_err(|e| SettingsError::Toml(e.to_string()))?;
        let path = raw.path.ok_or(SettingsError::NoPath)?;
        if !path.is_absolute() {
            return Err(SettingsError::Relative { key: "path", value: path.display().to_string() });
        }
        if let Some(d) = &raw.state_dir {
            if !d.is_absolute() {
                return Err(SettingsError::Relative { key: "state_dir", value: d.display().to_string() });
            }
        }
        if !(10..=3_600_000).contains(&raw.poll_interval_ms) {
            return Err(SettingsError::PollInterval(raw.poll_interval_ms));
        }
        for n in &raw.nodes {
            if !is_node_id(n) {
                return Err(SettingsError::NotANodeId(n.clone()));
            }
            name::encode_node(n)?;
        }
        if raw.max_bundle_size == 0 {
            return Err(SettingsError::MaxBundleSize);
        }
        Ok(Settings {
            path,
            poll_interval: Duration::from_millis(raw.poll_interval_ms),
            nodes: raw.nodes,
            announce: raw.announce,
            state_dir: raw.state_dir,
            max_bundle_size: raw.max_bundle_size,
        })
    }
}

/// A node ID as the host takes them: `dtn://name/` or `ipn:N.0`.
pub fn is_node_id(s: &str) -> bool {
    match s.parse::<ferry_core::eid::Eid>() {
        Ok(e) => e.is_node_id() && e.to_string() == s,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_key() {
        let s = Settings::parse("path = \"/media/usb\"").unwrap();
        assert_eq!(s.path, PathBuf::from("/media/usb"));
        assert_eq!(s.poll_interval, Duration::from_secs(1));
        assert_eq!(s.announce, Announce::All);
        assert!(s.nodes.is_empty() && s.state_dir.is_none());
        let s = Settings::parse(
            "path = \"/m\"\npoll_interval_ms = 250\nnodes = [\"dtn://town/\", \"ipn:7.0\"]\nannounce = \"listed\"\n\
             state_dir = \"/var/lib/ferry/usb\"\nmax_bundle_size = 1000",
        )
        .unwrap();
        assert_eq!(s.poll_interval, Duration::from_millis(250));
        assert_eq!(s.nodes, ["dtn://town/", "ipn:7.0"]);
        assert_eq!(s.announce, Announce::Listed);
        assert_eq!(s.max_bundle_size, 1000);
    }

    #[test]
    fn bad_settings_name_the_key() {
        let cases = [
            ("", "`path` is required"),
            ("path = \"rel/dir\"", "`path` must be an absolute path"),
            ("path = \"/m\"\nstate_dir = \"x\"", "`state_dir` must be an absolute path"),
            ("path = \"/m\"\npoll_interval_ms = 0", "poll_interval_ms"),
            ("path = \"/m\"\nnodes = [\"town\"]", "\"town\" is not a node ID"),
            ("path = \"/m\"\nnodes = [\"dtn://town/x\"]", "is not a node ID"),
            ("path = \"/m\"\nannounce = \"some\"", "announce"),
            ("path = \"/m\"\npoll = 3", "unknown field `poll`"),
            ("path = 3", "path"),
            ("path = \"/m\"\nmax_bundle_size = 0", "max_bundle_size"),
        ];
        for (text, want) in cases {
            let e = Settings::parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
