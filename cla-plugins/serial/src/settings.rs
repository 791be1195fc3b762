//! The plugin's settings (the `[cla.settings]` TOML table).
//!
//! [`Settings::parse`] is the one checked constructor: unknown keys, wrong
//! types and unusable values are errors that name the key. The defaults and
//! the meaning of every key are in the [crate documentation](crate#settings).

use std::path::PathBuf;

use serde::Deserialize;

use crate::link;
use crate::wire::MIN_MAX_FRAME;

/// The validated settings of one plugin instance (one serial device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The tty, e.g. `/dev/ttyUSB0`.
    pub device: PathBuf,
    /// Line speed in bits per second.
    pub baud: u32,
    /// The largest frame sent or accepted (unescaped, header to CRC).
    pub max_frame: usize,
    /// Sequenced frames in flight before an acknowledgement.
    pub window: usize,
    /// The largest bundle accepted (reassembled in memory).
    pub max_bundle_size: u64,
    /// Bundles awaiting a RESULT (sending) or a verdict (receiving).
    pub max_transfers: usize,
    /// Base retransmission timeout.
    pub ack_timeout_ms: u64,
    /// Timeouts without progress before the link is down.
    pub max_retries: u32,
    /// HELLO interval while no session is up.
    pub hello_interval_ms: u64,
    /// A NOP after this long without sending, to notice a vanished peer.
    pub keepalive_secs: u64,
    /// First delay before reopening a device that failed or vanished.
    pub reopen_min_ms: u64,
    /// The delay doubles up to this.
    pub reopen_max_secs: u64,
}

/// Why settings are unusable. Every message names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Not TOML, an unknown key, or a value of the wrong type (toml's message
    /// shows the line and the key).
    #[error("serial plugin settings: {0}")]
    Toml(String),
    /// `device` is missing or empty.
    #[error("serial plugin settings: `device` is required (the tty to use, e.g. \"/dev/ttyUSB0\")")]
    NoDevice,
    /// A value below what the setting allows.
    #[error("serial plugin settings: `{key}` = {value} is smaller than {min}")]
    TooSmall {
        /// The key.
        key: &'static str,
        /// The value given.
        value: u64,
        /// The smallest allowed.
        min: u64,
    },
    /// A value beyond what the setting allows.
    #[error("serial plugin settings: `{key}` = {value} is larger than {max}")]
    TooLarge {
        /// The key.
        key: &'static str,
        /// The value given.
        value: u64,
        /// The largest allowed.
        max: u64,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Raw {
    device: String,
    baud: u64,
    max_frame: u64,
    window: u64,
    max_bundle_size: u64,
    max_transfers: u64,
    ack_timeout_ms: u64,
    max_retries: u64,
    hello_interval_ms: u64,
    keepalive_secs: u64,
    reopen_min_ms: u64,
    reopen_max_secs: u64,
}

impl Default for Raw {
    fn default() -> Self {
        let link = link::Config::new("");
        Raw {
            device: String::new(),
            baud: u64::from(link.baud),
            max_frame: link.max_frame as u64,
            window: link.window as u64,
            max_bundle_size: link.max_bundle,
            max_transfers: link.max_transfers as u64,
            ack_timeout_ms: link.ack_timeout_ms,
            max_retries: u64::from(link.max_retries),
            hello_interval_ms: link.hello_interval_ms,
            keepalive_secs: link.keepalive_ms / 1000,
            reopen_min_ms: 500,
            reopen_max_secs: 30,
        }
    }
}

impl Settings {
    /// Parses and checks the TOML settings text.
    pub fn parse(text: &str) -> Result<Settings, SettingsError> {
        let raw: Raw = toml::from_str(text).map_err(|e| SettingsError::Toml(e.to_string().trim_end().to_owned()))?;
        if raw.device.trim().is_empty() {
            return Err(SettingsError::NoDevice);
        }
        for (key, value, min, max) in [
            ("baud", raw.baud, 50, 16_000_000),
            ("max_frame", raw.max_frame, MIN_MAX_FRAME as u64, 1 << 20),
            ("window", raw.window, 1, 1024),
            ("max_bundle_size", raw.max_bundle_size, 1, 1 << 32),
            ("max_transfers", raw.max_transfers, 1, 1024),
            ("ack_timeout_ms", raw.ack_timeout_ms, 10, 600_000),
            ("max_retries", raw.max_retries, 1, 1000),
            ("hello_interval_ms", raw.hello_interval_ms, 10, 600_000),
            ("keepalive_secs", raw.keepalive_secs, 1, 86_400),
            ("reopen_min_ms", raw.reopen_min_ms, 10, 600_000),
            ("reopen_max_secs", raw.reopen_max_secs, 1, 86_400),
        ] {
            if value < min {
                return Err(SettingsError::TooSmall { key, value, min });
            }
            if value > max {
                return Err(SettingsError::TooLarge { key, value, max });
            }
        }
        // Every value is within a range that fits the narrower types.
        let narrow = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Ok(Settings {
            device: PathBuf::from(raw.device),
            baud: u32::try_from(raw.baud).unwrap_or(u32::MAX),
            max_frame: narrow(raw.max_frame),
            window: narrow(raw.window),
            max_bundle_size: raw.max_bundle_size,
            max_transfers: narrow(raw.max_transfers),
            ack_timeout_ms: raw.ack_timeout_ms,
            max_retries: u32::try_from(raw.max_retries).unwrap_or(u32::MAX),
            hello_interval_ms: raw.hello_interval_ms,
            keepalive_secs: raw.keepalive_secs,
            reopen_min_ms: raw.reopen_min_ms,
            reopen_max_secs: raw.reopen_max_secs,
        })
    }

    /// The link configuration for a node, nonces seeded with `seed`.
    pub fn link_config(&self, node_id: &str, seed: u64) -> link::Config {
        link::Config {
            node_id: node_id.to_owned(),
            max_frame: self.max_frame,
            max_bundle: self.max_bundle_size,
            window: self.window,
            max_transfers: self.max_transfers,
            ack_timeout_ms: self.ack_timeout_ms,
            max_retries: self.max_retries,
            hello_interval_ms: self.hello_interval_ms,
            keepalive_ms: self.keepalive_secs.saturating_mul(1000),
            baud: self.baud,
            seed,
        }
    }

    /// The link rate the host is told: bytes per second on an 8N1 line.
    pub fn rate_bytes_per_sec(&self) -> u64 {
        u64::from(self.baud) / 10
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_only_a_device() {
        let s = Settings::parse("device = \"/dev/ttyUSB0\"").unwrap();
        assert_eq!(s.device, PathBuf::from("/dev/ttyUSB0"));
        assert_eq!((s.baud, s.max_frame, s.window, s.max_transfers), (115_200, 1024, 8, 8));
        assert_eq!(s.rate_bytes_per_sec(), 11_520);
        assert_eq!(s.link_config("dtn://a/", 1).keepalive_ms, 5000);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("", "`device` is required"),
            ("device = \"\"", "`device` is required"),
            ("device = \"/dev/x\"\nbaud_rate = 9600", "unknown field `baud_rate`"),
            ("device = \"/dev/x\"\nbaud = \"fast\"", "baud"),
            ("device = \"/dev/x\"\nbaud = 0", "`baud` = 0 is smaller than 50"),
            ("device = \"/dev/x\"\nmax_frame = 20", "`max_frame` = 20 is smaller than"),
            ("device = \"/dev/x\"\nwindow = 5000", "`window` = 5000 is larger than 1024"),
            ("device = \"/dev/x\"\nbaud = -1", "baud"),
            ("device = [", "serial plugin settings"),
        ];
        for (text, want) in cases {
            let err = Settings::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
