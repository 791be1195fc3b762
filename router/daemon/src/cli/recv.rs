//! `ferry recv`: register an endpoint, then collect bundles from it by polling
//! `GET /endpoint?<svc>` (dtn7's API), and write out their payloads.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Args;

use super::client::Api;
use super::fmt::{query_encode, sanitise_file_name};

/// First and longest pause between two polls of an empty endpoint.
const POLL_MIN: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(250);

#[derive(Debug, Args)]
pub struct RecvArgs {
    /// The endpoint: a service name on this node (such as `incoming`) or a full EID.
    pub endpoint: String,
    /// How many bundles to receive before exiting.
    #[arg(long, short = 'n', default_value_t = 1)]
    pub count: u64,
    /// Write each payload to DIR/<bundle id, sanitised> instead of standard output.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Give up (exit 1) when the bundles have not all arrived by then, such as 10s;
    /// wait for ever when absent.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

/// One bundle taken from the endpoint.
struct Received {
    bid: String,
    source: String,
    destination: String,
    payload: Vec<u8>,
}

pub fn run(api: &Api, args: &RecvArgs, json: bool) -> Result<ExitCode> {
    let timeout = match &args.timeout {
        Some(t) => Some(humantime::parse_duration(t).with_context(|| format!("--timeout {t}"))?),
        None => None,
    };
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let svc = query_encode(&args.endpoint);
    api.get(&format!("/register?{svc}")).with_context(|| format!("cannot register {}", args.endpoint))?;

    let deadline = timeout.map(|t| Instant::now() + t);
    let mut got = 0u64;
    let mut pause = POLL_MIN;
    while got < args.count {
        match take_one(api, &svc, json)? {
            Some(bundle) => {
                got += 1;
                pause = POLL_MIN;
                emit(&bundle, args.out.as_deref(), json)?;
            }
            None => {
                if let Some(deadline) = deadline {
                    let now = Instant::now();
                    if now >= deadline {
                        bail!(
                            "timed out after {}: received {got} of {} bundle(s) on {}",
                            args.timeout.as_deref().unwrap_or_default(),
                            args.count,
                            args.endpoint
                        );
                    }
                    std::thread::sleep(pause.min(deadline - now));
                } else {
                    std::thread::sleep(pause);
                }
                pause = (pause * 2).min(POLL_MAX);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Pops one bundle from the endpoint; `None` when it has nothing (dtn7 answers
/// the text "Nothing to receive"; an empty body or 204/404 mean the same).
fn take_one(api: &Api, svc: &str, json: bool) -> Result<Option<Received>> {
    let bar = |len| super::fmt::transfer_bar(len, json, "receiving");
    let Some(answer) = api.get_optional_with_progress(&format!("/endpoint?{svc}"), bar)? else {
        return Ok(None);
    };
    let body = answer.body;
    if body.is_empty() || answer.status == reqwest::StatusCode::NO_CONTENT || body.starts_with(b"Nothing to receive") {
        return Ok(None);
    }
    // What ferryd stored, decoded as ferryd accepted it: dtn7-rs's tools
    // leave the primary block without a CRC (RFC 9171 wants one, or a BIB),
    // which ferryd takes unless `strict_primary_crc` is set.
    let bundle = ferry_core::node::decode_stored(&body).context("ferryd handed out a bundle that does not decode")?;
    let payload = body.get(bundle.payload().data.clone()).context("payload block outside the bundle")?.to_vec();
    Ok(Some(Received {
        bid: bundle.id().to_string(),
        source: bundle.primary.source.to_string(),
        destination: bundle.primary.destination.to_string(),
        payload,
    }))
}

fn emit(b: &Received, out: Option<&Path>, json: bool) -> Result<()> {
    match out {
        Some(dir) => {
            let path = dir.join(sanitise_file_name(&b.bid));
            write_file(&path, &b.payload)?;
            if json {
                let v = serde_json::json!({
                    "bid": b.bid, "source": b.source, "destination": b.destination,
                    "payload_len": b.payload.len(), "file": path.display().to_string(),
                });
                println!("{v}");
            } else {
                println!("{} ({} bytes) -> {}", b.bid, b.payload.len(), path.display());
            }
        }
        None if json => {
            let v = serde_json::json!({
                "bid": b.bid, "source": b.source, "destination": b.destination,
                "payload_len": b.payload.len(),
                "payload_base64": base64::engine::general_purpose::STANDARD.encode(&b.payload),
            });
            println!("{v}");
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&b.payload).and_then(|()| stdout.flush()).context("cannot write to standard output")?;
        }
    }
    Ok(())
}

/// Writes through a temporary name and renames, so a reader of DIR never sees
/// half a payload.
fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".part");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}
