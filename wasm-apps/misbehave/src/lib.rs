//! A deliberately bad app, for the app host's tests. Its config picks what
//! it does with every bundle:
//!
//! - `{"mode": "trap"}`: traps (a Rust panic).
//! - `{"mode": "loop"}`: never returns (stopped by the time budget).
//! - `{"mode": "hog"}`: allocates until the memory cap stops it.
//! - `{"mode": "trap-once", "dir": "/state"}`: traps the first time it sees a
//!   bundle and keeps it the second time, writing its payload to
//!   `<dir>/<bundle id>.payload`. It remembers what it saw in
//!   `<dir>`, since a trapped instance is replaced by a fresh one.

wit_bindgen::generate!({ world: "app", path: "../wit" });

use std::cell::RefCell;

use ferry::app::host::{log, LogLevel};
struct Misbehave;

thread_local! {
    static CONFIG: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
}

/// Pulls `"key": "value"` out of the config's flat JSON object (this app has
/// no JSON parser to stay tiny).
fn field(config: &str, key: &str) -> Option<String> {
    let at = config.find(&format!("\"{key}\""))?;
    let rest = &config[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

/// A file name for a bundle ID.
fn tag(id: &str) -> String {
    id.bytes().map(|b| if b.is_ascii_alphanumeric() { b as char } else { '_' }).collect()
}

impl Guest for Misbehave {
    fn start(config: String) -> Result<(), String> {
        let mode = field(&config, "mode").ok_or("config has no \"mode\"")?;
        let dir = field(&config, "dir").unwrap_or_default();
        if !["trap", "loop", "hog", "trap-once"].contains(&mode.as_str()) {
            return Err(format!("unknown mode {mode:?}"));
        }
        CONFIG.with(|c| *c.borrow_mut() = (mode, dir));
        Ok(())
    }

    fn on_bundle(bundle: Incoming) -> Result<(), String> {
        let (mode, dir) = CONFIG.with(|c| c.borrow().clone());
        match mode.as_str() {
            "trap" => panic!("trapping on {} as configured", bundle.id),
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = vec![];
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            _ => {
                let seen = format!("{dir}/{}.seen", tag(&bundle.id));
                if std::fs::metadata(&seen).is_err() {
                    std::fs::write(&seen, b"").map_err(|e| format!("{seen}: {e}"))?;
                    panic!("trapping once on {}", bundle.id);
                }
                let out = format!("{dir}/{}.payload", tag(&bundle.id));
                std::fs::write(&out, &bundle.payload).map_err(|e| format!("{out}: {e}"))?;
                log(LogLevel::Info, &format!("kept {} on the second try", bundle.id));
                Ok(())
            }
        }
    }

    fn on_tick(_now: u64) -> Result<(), String> {
        Ok(())
    }
}

export!(Misbehave);
