//! `ferry usb sync PATH`: for someone who just plugged in a stick and wants
//! it done now.
//!
//! It asks the running ferryd to look at the folder right away
//! (`/ferry/usb/sync`, which hands `usbdir-sync:NONCE:PATH` to the usbdir
//! plugin's `connect`; the folder need not be the configured one), then
//! follows the progress the plugin writes to
//! `PATH/<this node's folder>/.ferry-sync.toml` — bundles taken from the
//! stick, bundles written onto it, files left there as unusable — with a
//! progress bar, until the plugin says nothing has moved for a moment. The
//! CLI must see the folder at the same path as ferryd (the API listens on
//! loopback by default).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use ferry_cla_usbdir::name::encode_node;
use ferry_cla_usbdir::sync::{SyncStatus, SYNC_STATUS_FILE};
use indicatif::{ProgressBar, ProgressStyle};
use rand::distributions::{Alphanumeric, DistString};

use super::client::Api;
use super::fmt::query_encode;

#[derive(Debug, Subcommand)]
pub enum UsbCommand {
    /// Exchange bundles with a plugged-in stick now, with a progress bar.
    Sync(SyncArgs),
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The stick's folder (its mount point, or the folder on it ferryd uses).
    pub path: PathBuf,
    /// Give up waiting for the sync to finish after this long.
    #[arg(long, value_name = "DURATION", default_value = "30m")]
    pub timeout: String,
}

/// How long ferryd's plugin may take to write its first progress report.
const FIRST_REPORT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);

pub fn run(api: &Api, command: &UsbCommand, json: bool) -> Result<ExitCode> {
    let UsbCommand::Sync(args) = command;
    let timeout = humantime::parse_duration(&args.timeout).with_context(|| format!("--timeout {}", args.timeout))?;
    let path = std::fs::canonicalize(&args.path)
        .with_context(|| format!("{}: no such folder (is the stick mounted?)", args.path.display()))?;
    anyhow::ensure!(path.is_dir(), "{} is not a folder", path.display());
    let path_text = path.to_str().context("the folder's path is not UTF-8")?.to_owned();
    let node_id = api.get("/status/nodeid")?.text();
    let mailbox = encode_node(node_id.trim()).with_context(|| format!("ferryd's node ID {node_id}"))?;
    let status_file = path.join(&mailbox).join(SYNC_STATUS_FILE);
    let nonce = Alphanumeric.sample_string(&mut rand::thread_rng(), 16);
    api.get(&format!("/ferry/usb/sync?path={}&nonce={nonce}", query_encode(&path_text)))?;
    let status = follow(&status_file, &nonce, timeout, json)?;
    if let Some(e) = &status.error {
        bail!("sync of {} did not run: {e}", path.display());
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "folder": path_text, "taken": status.taken, "written": status.written,
                "left_unusable": status.bad, "done": status.done,
            })
        );
    } else {
        println!(
            "{}: {} bundles taken, {} written{}",
            path.display(),
            status.taken,
            status.written,
            match status.bad {
                0 => String::new(),
                n => format!(", {n} unusable files left in place (see ferryd's log)"),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows the plugin's progress reports for request `nonce` until one says done.
fn follow(file: &Path, nonce: &str, timeout: Duration, quiet: bool) -> Result<SyncStatus> {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} bundles  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let start = Instant::now();
    let mut seen = false;
    loop {
        if let Some(s) = SyncStatus::read(file).filter(|s| s.nonce == nonce) {
            seen = true;
            let moved = s.taken + s.written;
            bar.set_length(moved + s.waiting);
            bar.set_position(moved);
            bar.set_message(format!(
                "taken {} · written {} · waiting {} · unusable {}",
                s.taken, s.written, s.waiting, s.bad
            ));
            if s.done {
                bar.finish();
                return Ok(s);
            }
        }
        let waited = start.elapsed();
        if !seen && waited > FIRST_REPORT {
            bar.abandon();
            bail!(
                "ferryd took the request but wrote no progress to {} within {FIRST_REPORT:?}: is the usbdir plugin \
                 loaded, and can it write to the folder? (see ferryd's log)",
                file.display()
            );
        }
        if waited > timeout {
            bar.abandon();
            bail!("the sync was not done after {timeout:?}; ferryd goes on with it in the background");
        }
        std::thread::sleep(POLL);
    }
}
