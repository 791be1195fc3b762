//! `ferry bundles list|show|delete|export|import`: the node's store,
//! through ferryd's `/ferry/bundles`, `/ferry/bundle`, `/ferry/bundle.cbor`,
//! and dtn7's `/delete` and `/push`.
//!
//! `export DIR` writes every stored bundle to `DIR/<bundle ID>.bundle`
//! (the bundle as stored, CBOR; temporary name, fsync, rename), `import`
//! pushes bundle files into the node (strictly validated, as from a peer;
//! one it has already is counted, not an error): a store moved by hand, or
//! a backup. Both show a progress bar on a terminal.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::Value;

use super::client::Api;
use super::fmt::{self, query_encode};

#[derive(Debug, Subcommand)]
pub enum BundlesCommand {
    /// One line per bundle: ID, destination, size, time to expiry, state.
    List,
    /// Everything ferryd knows about one bundle.
    Show {
        /// The bundle ID, as `bundles list` prints it.
        bid: String,
        /// Write the bundle's payload to standard output instead.
        #[arg(long)]
        payload: bool,
    },
    /// Delete a bundle from the store.
    Delete {
        /// The bundle ID, as `bundles list` prints it.
        bid: String,
    },
    /// Write every stored bundle to DIR/<bundle ID>.bundle (created if missing).
    Export { dir: std::path::PathBuf },
    /// Push bundle files (or the *.bundle files of folders) into the node.
    Import {
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
    },
}

pub fn run(api: &Api, cmd: &BundlesCommand, json: bool) -> Result<ExitCode> {
    match cmd {
        BundlesCommand::List => list(api, json),
        BundlesCommand::Show { bid, payload: true } => show_payload(api, bid),
        BundlesCommand::Show { bid, payload: false } => show(api, bid, json),
        BundlesCommand::Delete { bid } => delete(api, bid, json),
        BundlesCommand::Export { dir } => export(api, dir, json),
        BundlesCommand::Import { paths } => import(api, paths, json),
    }
}

fn export(api: &Api, dir: &std::path::Path, json: bool) -> Result<ExitCode> {
    let bundles: Vec<Value> = api.get("/ferry/bundles")?.json()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let bar = fmt::count_bar(bundles.len() as u64, json, "exporting");
    let (mut written, mut bytes, mut gone) = (0u64, 0u64, 0u64);
    for b in &bundles {
        let bid = text(b, "bid");
        // Deleted (delivered, expired) since the listing: nothing to export.
        let Some(answer) = api.get_optional(&format!("/ferry/bundle.cbor?bid={}", query_encode(&bid)))? else {
            gone += 1;
            bar.inc(1);
            continue;
        };
        let path = dir.join(format!("{}.bundle", fmt::sanitise_file_name(&bid)));
        let tmp = path.with_extension("bundle.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&answer.body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().with_context(|| format!("cannot write {}", path.display()))?;
        written += 1;
        bytes += answer.body.len() as u64;
        bar.inc(1);
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::json!({ "exported": written, "bytes": bytes, "gone": gone, "dir": dir }));
    } else {
        println!("exported {written} bundles ({}) to {}", fmt::bytes(bytes), dir.display());
        if gone > 0 {
            println!("{gone} left the store while exporting (delivered or expired)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn import(api: &Api, paths: &[std::path::PathBuf], json: bool) -> Result<ExitCode> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut in_dir: Vec<_> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "bundle") && f.is_file())
                .collect();
            in_dir.sort();
            files.extend(in_dir);
        } else {
            files.push(p.clone());
        }
    }
    let bar = fmt::count_bar(files.len() as u64, json, "importing");
    let (mut imported, mut had, mut failed) = (0u64, 0u64, Vec::new());
    for f in &files {
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                failed.push(format!("{}: {e}", f.display()));
                bar.inc(1);
                continue;
            }
        };
        match api.post("/push", bytes) {
            Ok(a) if a.text().to_lowercase().contains("duplicate") || a.text().contains("already") => had += 1,
            Ok(_) => imported += 1,
            Err(e) => failed.push(format!("{}: {}", f.display(), fmt::error_chain(&e))),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::json!({ "imported": imported, "already_there": had, "failed": failed }));
    } else {
        println!("imported {imported} bundles, {had} already there, {} failed", failed.len());
        for f in &failed {
            eprintln!("ferry: {f}");
        }
    }
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn list(api: &Api, json: bool) -> Result<ExitCode> {
    let bundles: Vec<Value> = api.get("/ferry/bundles")?.json()?;
    if json {
        println!("{}", Value::Array(bundles));
        return Ok(ExitCode::SUCCESS);
    }
    if bundles.is_empty() {
        println!("no bundles");
        return Ok(ExitCode::SUCCESS);
    }
    let now = fmt::dtn_now();
    let rows: Vec<Vec<String>> = bundles
        .iter()
        .map(|b| {
            vec![
                text(b, "bid"),
                text(b, "dst"),
                b.get("size").and_then(Value::as_u64).map(fmt::bytes).unwrap_or_default(),
                b.get("expires_at").and_then(Value::as_u64).map(|t| fmt::expires_in(now, t)).unwrap_or_default(),
                text(b, "state"),
            ]
        })
        .collect();
    print!("{}", fmt::table(&["BUNDLE ID", "DESTINATION", "SIZE", "EXPIRES IN", "STATE"], &rows));
    Ok(ExitCode::SUCCESS)
}

fn show(api: &Api, bid: &str, json: bool) -> Result<ExitCode> {
    let Some(answer) = api.get_optional(&format!("/ferry/bundle?bid={}", query_encode(bid)))? else {
        bail!("no bundle {bid} in the store");
    };
    let b: Value = answer.json()?;
    if json {
        println!("{b}");
        return Ok(ExitCode::SUCCESS);
    }
    let now = fmt::dtn_now();
    let num = |k: &str| b.get(k).and_then(Value::as_u64);
    let mut lines: Vec<(&str, String)> = vec![
        ("bundle id", text(&b, "bid")),
        ("source", text(&b, "src")),
        ("destination", text(&b, "dst")),
        ("report to", text(&b, "report_to")),
        ("state", text(&b, "state")),
    ];
    if let Some(t) = num("creation_time") {
        lines.push(("created", format!("{} (seq {})", fmt::dtn_date(t), num("seq").unwrap_or(0))));
    }
    if let Some(t) = num("received_at") {
        lines.push(("received", fmt::dtn_date(t)));
    }
    if let Some(ms) = num("lifetime_ms") {
        lines.push(("lifetime", fmt::duration(std::time::Duration::from_millis(ms))));
    }
    if let Some(t) = num("expires_at") {
        lines.push(("expires", format!("{} (in {})", fmt::dtn_date(t), fmt::expires_in(now, t))));
    }
    if let Some(n) = num("size") {
        lines.push(("size", format!("{} ({n} bytes)", fmt::bytes(n))));
    }
    if let Some(n) = num("payload_len") {
        lines.push(("payload", format!("{n} bytes")));
    }
    if let Some(f) = num("flags") {
        let names = super::decode::bundle_flag_names(f);
        let names = if names.is_empty() { String::new() } else { format!(" ({})", names.join(", ")) };
        lines.push(("flags", format!("{f:#x}{names}")));
    }
    let hop = b.get("hop_count");
    let hops = match (hop.and_then(|h| h.get("count")), hop.and_then(|h| h.get("limit"))) {
        (Some(count), Some(limit)) => format!("{} of at most {}", as_text(count), as_text(limit)),
        _ => compact(hop),
    };
    lines.push(("hop count", hops));
    lines.push(("fragment", compact(b.get("fragment"))));
    if let Some(prev) = b.get("previous_node").filter(|v| !v.is_null()) {
        lines.push(("previous node", as_text(prev)));
    }
    let forwarded = match b.get("forwarded_to").and_then(Value::as_array) {
        Some(peers) if !peers.is_empty() => peers.iter().map(as_text).collect::<Vec<_>>().join(", "),
        _ => "nobody yet".to_owned(),
    };
    lines.push(("forwarded to", forwarded));
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in lines {
        println!("{k:<width$}  {v}");
    }
    Ok(ExitCode::SUCCESS)
}

fn show_payload(api: &Api, bid: &str) -> Result<ExitCode> {
    let Some(answer) = api.get_optional(&format!("/ferry/bundle.cbor?bid={}", query_encode(bid)))? else {
        bail!("no bundle {bid} in the store");
    };
    // As ferryd accepted it (a primary block without CRC from dtn7-rs too).
    let bundle = ferry_core::node::decode_stored(&answer.body).context("the stored bundle does not decode")?;
    let payload = answer.body.get(bundle.payload().data.clone()).context("payload block outside the bundle")?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(payload).and_then(|()| stdout.flush()).context("cannot write to standard output")?;
    Ok(ExitCode::SUCCESS)
}

fn delete(api: &Api, bid: &str, json: bool) -> Result<ExitCode> {
    let Some(answer) = api.get_optional(&format!("/delete?{}", query_encode(bid)))? else {
        bail!("no bundle {bid} in the store");
    };
    if json {
        println!("{}", serde_json::json!({ "bid": bid, "deleted": true, "answer": answer.text() }));
    } else {
        let text = answer.text();
        if text.is_empty() {
            println!("deleted {bid}");
        } else {
            println!("{text}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A field as text: strings bare, absent or null as "-", anything else as JSON.
fn text(v: &Value, key: &str) -> String {
    v.get(key).map(as_text).unwrap_or_else(|| "-".to_owned())
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A small object such as `{"limit": 32, "count": 1}` as "limit 32, count 1".
fn compact(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::Object(m)) => m.iter().map(|(k, v)| format!("{k} {}", as_text(v))).collect::<Vec<_>>().join(", "),
        Some(other) => as_text(other),
    }
}
