//! The plugin's settings (the `[cla.settings]` TOML table).
//!
//! [`Settings::parse`] is the one checked constructor: unknown keys, wrong
//! types and values the radio or the law does not allow are errors that name
//! the key. The meaning and default of every key are in the
//! [crate documentation](crate#settings).

use std::path::PathBuf;

use serde::Deserialize;

use crate::airtime::RadioParams;
use crate::frame::{MAX_CHUNK, MAX_FRAMES, MAX_PACKET};
use crate::link::LinkConfig;

/// The bandwidths a LoRa modem offers, in Hz.
pub const BANDWIDTHS: [u32; 10] = [7_800, 10_400, 15_600, 20_800, 31_250, 41_700, 62_500, 125_000, 250_000, 500_000];

/// A regulatory preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// EU 863–870 MHz (ETSI EN 300 220, sub-band g1): 1 % duty cycle.
    Eu868,
    /// EU 433 MHz (433.05–434.79 MHz): 10 % duty cycle.
    Eu433,
    /// US 902–928 MHz (FCC 15.247): no duty cycle, 400 ms dwell time per packet.
    Us915,
    /// No preset: `duty_cycle_percent` must be given.
    None,
}

impl Region {
    fn parse(s: &str) -> Option<Region> {
        Some(match s.to_ascii_uppercase().as_str() {
            "EU868" => Region::Eu868,
            "EU433" => Region::Eu433,
            "US915" => Region::Us915,
            "NONE" => Region::None,
            _ => return None,
        })
    }

    /// The region's duty cycle in percent.
    pub fn duty_cycle_percent(self) -> Option<f64> {
        match self {
            Region::Eu868 => Some(1.0),
            Region::Eu433 => Some(10.0),
            Region::Us915 => Some(100.0),
            Region::None => None,
        }
    }

    /// The longest a single packet may be on air, µs.
    pub fn dwell_limit_us(self) -> Option<u64> {
        match self {
            Region::Us915 => Some(400_000),
            _ => None,
        }
    }
}

/// The validated settings of one plugin instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The modem's serial device.
    pub device: PathBuf,
    /// Its baud rate.
    pub baud: u32,
    /// The regulatory preset.
    pub region: Region,
    /// The link's timing and limits (radio parameters included).
    pub link: LinkConfig,
    /// Longest wait between attempts to reopen a vanished device, seconds.
    pub reopen_max_secs: u64,
    /// Simulation only: the plugin's clock runs this many times faster.
    pub time_scale: u32,
}

/// Why settings are unusable. Every message names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Not TOML, an unknown key, or a value of the wrong type (toml's
    /// message shows the line and the key).
    #[error("lora plugin settings: {0}")]
    Toml(String),
    /// A key that has no default.
    #[error("lora plugin settings: `{0}` is required (e.g. device = \"/dev/ttyUSB0\")")]
    Missing(&'static str),
    /// A number outside its range.
    #[error("lora plugin settings: `{key}` = {value} is out of range ({range})")]
    Range {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        range: &'static str,
    },
    /// An unknown region.
    #[error("lora plugin settings: `region` \"{0}\" is unknown (EU868, EU433, US915 or none)")]
    Region(String),
    /// Region `none` without a duty cycle.
    #[error("lora plugin settings: region \"none\" needs `duty_cycle_percent`")]
    NoDutyCycle,
    /// A duty cycle above what the region allows.
    #[error("lora plugin settings: `duty_cycle_percent` = {value} is more than {region} allows ({max} %)")]
    DutyAboveRegion {
        /// The value given.
        value: f64,
        /// The region's name.
        region: &'static str,
        /// The region's limit.
        max: f64,
    },
    /// A full frame would be on air longer than the region's dwell time.
    #[error("lora plugin settings: a {MAX_PACKET}-byte packet at SF{sf}/{bw} Hz lasts {airtime_ms} ms, more than US915's 400 ms dwell time; lower `spreading_factor` or raise `bandwidth_hz`")]
    Dwell {
        /// Spreading factor.
        sf: u8,
        /// Bandwidth.
        bw: u32,
        /// The airtime of a full packet.
        airtime_ms: u64,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    device: Option<String>,
    baud: Option<u32>,
    region: Option<String>,
    duty_cycle_percent: Option<f64>,
    duty_window_secs: Option<u64>,
    spreading_factor: Option<u8>,
    bandwidth_hz: Option<u32>,
    coding_rate: Option<u8>,
    preamble_symbols: Option<u16>,
    radio_crc: Option<bool>,
    hello_interval_secs: Option<u64>,
    peer_timeout_secs: Option<u64>,
    ack_timeout_ms: Option<u64>,
    max_retries: Option<u32>,
    max_bundle: Option<usize>,
    max_reassemblies: Option<usize>,
    max_reassembly_bytes: Option<usize>,
    reassembly_timeout_secs: Option<u64>,
    max_queued: Option<usize>,
    reopen_max_secs: Option<u64>,
    time_scale: Option<u32>,
}

fn range<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    value: T,
    lo: T,
    hi: T,
    text: &'static str,
) -> Result<T, SettingsError> {
    if value < lo || value > hi {
        Err(SettingsError::Range { key, value: value.to_string(), range: text })
    } else {
        Ok(value)
    }
}

const SEC: u64 = 1_000_000;

impl Settings {
    /// Parses and checks the TOML settings text.
    pub fn parse(text: &str) -> Result<Settings, SettingsError> {
        let raw: Raw = toml::from_str(text).map_err(|e| SettingsError::Toml(e.to_string().trim_end().to_owned()))?;
        let device = raw.device.filter(|d| !d.trim().is_empty()).ok_or(SettingsError::Missing("device"))?;
        let baud = range("baud", raw.baud.unwrap_or(115_200), 1_200, 4_000_000, "1200 ..= 4000000")?;
        let region_text = raw.region.unwrap_or_else(|| "EU868".into());
        let region = Region::parse(&region_text).ok_or(SettingsError::Region(region_text.clone()))?;
        let duty = match (raw.duty_cycle_percent, region.duty_cycle_percent()) {
            (Some(v), Some(max)) if v > max => {
                let region = match region {
                    Region::Eu868 => "EU868",
                    Region::Eu433 => "EU433",
                    _ => "the region",
                };
                return Err(SettingsError::DutyAboveRegion { value: v, region, max });
            }
            (Some(v), _) => v,
            (None, Some(d)) => d,
            (None, None) => return Err(SettingsError::NoDutyCycle),
        };
        if !(duty > 0.0 && duty <= 100.0) {
            return Err(SettingsError::Range {
                key: "duty_cycle_percent",
                value: duty.to_string(),
                range: "above 0, at most 100",
            });
        }
        let sf = range("spreading_factor", raw.spreading_factor.unwrap_or(7), 6, 12, "6 ..= 12")?;
        let bw = raw.bandwidth_hz.unwrap_or(125_000);
        if !BANDWIDTHS.contains(&bw) {
            return Err(SettingsError::Range {
                key: "bandwidth_hz",
                value: bw.to_string(),
                range: "7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000 or 500000",
            });
        }
        let radio = RadioParams {
            spreading_factor: sf,
            bandwidth_hz: bw,
            coding_rate: range("coding_rate", raw.coding_rate.unwrap_or(5), 5, 8, "5 ..= 8, for 4/5 ..= 4/8")?,
            preamble_symbols: range("preamble_symbols", raw.preamble_symbols.unwrap_or(8), 6, 65_535, "6 ..= 65535")?,
            crc: raw.radio_crc.unwrap_or(true),
            explicit_header: true,
        };
        let full = radio.airtime_us(MAX_PACKET);
        if let Some(limit) = region.dwell_limit_us() {
            if full > limit {
                return Err(SettingsError::Dwell { sf, bw, airtime_ms: full / 1000 });
            }
        }
        let mut link = LinkConfig::new(radio, duty);
        if let Some(w) = raw.duty_window_secs {
            link.duty_window_us = range("duty_window_secs", w, 1, 86_400, "1 ..= 86400")? * SEC;
        }
        if link.duty_window_us as f64 * duty / 100.0 < full as f64 && duty < 100.0 {
            return Err(SettingsError::Range {
                key: "duty_window_secs",
                value: (link.duty_window_us / SEC).to_string(),
                range: "long enough that the budget holds one full packet",
            });
        }
        if let Some(h) = raw.hello_interval_secs {
            link.hello_interval_us = range("hello_interval_secs", h, 1, 86_400, "1 ..= 86400")? * SEC;
            link.peer_timeout_us = link.hello_interval_us * 5 + full;
        }
        if let Some(p) = raw.peer_timeout_secs {
            link.peer_timeout_us = range("peer_timeout_secs", p, 1, 7 * 86_400, "1 ..= 604800")? * SEC;
            if link.peer_timeout_us <= link.hello_interval_us {
                return Err(SettingsError::Range {
                    key: "peer_timeout_secs",
                    value: p.to_string(),
                    range: "longer than hello_interval_secs",
                });
            }
        }
        if let Some(a) = raw.ack_timeout_ms {
            link.ack_timeout_us = range("ack_timeout_ms", a, 1, 3_600_000, "1 ..= 3600000")? * 1000;
        }
        if let Some(r) = raw.max_retries {
            link.max_retries = range("max_retries", r, 1, 1000, "1 ..= 1000")?;
        }
        let max_frames_bytes = usize::from(MAX_FRAMES) * MAX_CHUNK;
        if let Some(b) = raw.max_bundle {
            link.max_bundle = range("max_bundle", b, 1, max_frames_bytes, "1 ..= 241664 (1024 frames)")?;
        }
        if let Some(r) = raw.max_reassemblies {
            link.max_reassemblies = range("max_reassemblies", r, 1, 4096, "1 ..= 4096")?;
        }
        if let Some(b) = raw.max_reassembly_bytes {
            link.max_reassembly_bytes = range("max_reassembly_bytes", b, 1, 1 << 30, "1 ..= 1073741824")?;
        }
        let one_bundle = link.max_bundle.div_ceil(MAX_CHUNK) * MAX_CHUNK;
        if link.max_reassembly_bytes < one_bundle {
            return Err(SettingsError::Range {
                key: "max_reassembly_bytes",
                value: link.max_reassembly_bytes.to_string(),
                range: "at least max_bundle rounded up to whole frames (236 bytes each)",
            });
        }
        if let Some(t) = raw.reassembly_timeout_secs {
            link.reassembly_timeout_us = range("reassembly_timeout_secs", t, 1, 7 * 86_400, "1 ..= 604800")? * SEC;
        }
        if let Some(q) = raw.max_queued {
            link.max_queued = range("max_queued", q, 1, 100_000, "1 ..= 100000")?;
        }
        Ok(Settings {
            device: PathBuf::from(device),
            baud,
            region,
            link,
            reopen_max_secs: range("reopen_max_secs", raw.reopen_max_secs.unwrap_or(30), 1, 3600, "1 ..= 3600")?,
            time_scale: range("time_scale", raw.time_scale.unwrap_or(1), 1, 10_000, "1 ..= 10000")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_eu868_sf7() {
        let s = Settings::parse("device = \"/dev/ttyUSB0\"").unwrap();
        assert_eq!(s.device, PathBuf::from("/dev/ttyUSB0"));
        assert_eq!((s.baud, s.region, s.time_scale), (115_200, Region::Eu868, 1));
        assert_eq!(s.link.radio, RadioParams::default());
        assert_eq!(s.link.duty_cycle_percent, 1.0);
        assert_eq!(s.link.duty_window_us, 3600 * SEC);
        assert_eq!(s.link.max_bundle, 65_536);
    }

    #[test]
    fn a_full_table() {
        let s = Settings::parse(
            r#"
            device = "/dev/ttyACM0"
            baud = 9600
            region = "none"
            duty_cycle_percent = 0.5
            spreading_factor = 12
            bandwidth_hz = 250000
            coding_rate = 8
            preamble_symbols = 12
            radio_crc = false
            hello_interval_secs = 900
            max_bundle = 20000
            time_scale = 100
            "#,
        )
        .unwrap();
        assert_eq!(s.link.radio.spreading_factor, 12);
        assert_eq!(s.link.radio.coding_rate, 8);
        assert!(!s.link.radio.crc);
        assert_eq!(s.link.duty_cycle_percent, 0.5);
        assert_eq!(s.link.hello_interval_us, 900 * SEC);
        assert!(s.link.peer_timeout_us > 2700 * SEC);
        assert_eq!(s.time_scale, 100);
    }

    #[test]
    fn errors_name_the_key() {
        let err = |t: &str| Settings::parse(t).unwrap_err().to_string();
        let d = "device = \"/dev/x\"\n";
        assert!(err("").contains("`device` is required"));
        assert!(err(&format!("{d}sf = 7")).contains("unknown field `sf`"), "{}", err(&format!("{d}sf = 7")));
        assert!(err(&format!("{d}spreading_factor = 13")).contains("`spreading_factor` = 13 is out of range"));
        assert!(err(&format!("{d}spreading_factor = \"7\"")).contains("spreading_factor"));
        assert!(err(&format!("{d}bandwidth_hz = 100000")).contains("`bandwidth_hz` = 100000"));
        assert!(err(&format!("{d}coding_rate = 4")).contains("`coding_rate`"));
        assert!(err(&format!("{d}region = \"mars\"")).contains("\"mars\" is unknown"));
        assert!(err(&format!("{d}region = \"none\"")).contains("needs `duty_cycle_percent`"));
        assert!(err(&format!("{d}duty_cycle_percent = 5")).contains("more than EU868 allows (1 %)"));
        assert!(err(&format!("{d}region = \"none\"\nduty_cycle_percent = 0")).contains("`duty_cycle_percent`"));
        assert!(err(&format!("{d}region = \"US915\"\nspreading_factor = 10")).contains("400 ms dwell time"));
        assert!(Settings::parse(&format!("{d}region = \"US915\"")).is_ok(), "SF7/125 kHz: 399.6 ms fits");
        assert!(err(&format!("{d}max_bundle = 300000")).contains("`max_bundle`"));
        assert!(err(&format!("{d}max_reassembly_bytes = 1000")).contains("`max_reassembly_bytes`"));
        assert!(err(&format!("{d}hello_interval_secs = 60\npeer_timeout_secs = 30")).contains("`peer_timeout_secs`"));
        assert!(err(&format!("{d}spreading_factor = 12\nduty_window_secs = 60")).contains("`duty_window_secs`"));
    }
}
