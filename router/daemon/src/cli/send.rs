//! `ferry send`: the contents of a file (or of standard input) as the payload of
//! a new bundle, created by ferryd (`POST /send`).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use ferry_core::Eid;

use super::client::Api;
use super::fmt::query_encode;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// Destination endpoint ID (dtn://node/service or ipn:node.service).
    #[arg(long, value_name = "EID")]
    pub to: String,
    /// Bundle lifetime, such as 30s, 1h or 2d (ferryd's default when absent).
    #[arg(long, value_name = "DURATION")]
    pub lifetime: Option<String>,
    /// The payload file; standard input when absent or '-'.
    pub file: Option<PathBuf>,
}

pub fn run(api: &Api, args: &SendArgs, json: bool) -> Result<ExitCode> {
    let dst: Eid = args.to.parse().with_context(|| format!("--to {}: not an endpoint ID", args.to))?;
    let mut query = format!("/send?dst={}", query_encode(&dst.to_string()));
    if let Some(lifetime) = &args.lifetime {
        let d = humantime::parse_duration(lifetime).with_context(|| format!("--lifetime {lifetime}"))?;
        anyhow::ensure!(!d.is_zero(), "--lifetime {lifetime}: a bundle's lifetime must be greater than zero");
        query.push_str(&format!("&lifetime={}", query_encode(lifetime)));
    }
    let payload = read_payload(args.file.as_ref())?;
    let len = payload.len();
    let bar = super::fmt::transfer_bar(len as u64, json, "sending");
    let answer = api.post_with_progress(&query, payload, &bar)?;
    let text = answer.text();
    if json {
        let value = serde_json::json!({
            "bid": bundle_id_in(&text),
            "destination": dst.to_string(),
            "payload_len": len,
            "answer": text,
        });
        println!("{value}");
    } else {
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The bundle ID in ferryd's answer "Sent ADU in bundle <bid> with <n> bytes"
/// (dtn7-rs answers without one).
fn bundle_id_in(answer: &str) -> Option<&str> {
    let rest = answer.split_once(" bundle ")?.1;
    rest.split_whitespace().next()
}

fn read_payload(file: Option<&PathBuf>) -> Result<Vec<u8>> {
    match file {
        Some(path) if path.as_os_str() != "-" => {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        }
        _ => {
            let mut buf = Vec::new();
            std::io::stdin().lock().read_to_end(&mut buf).context("cannot read standard input")?;
            Ok(buf)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_bundle_id_in_the_answer() {
        assert_eq!(
            super::bundle_id_in("Sent ADU in bundle dtn://n/-770000000000-0 with 5 bytes"),
            Some("dtn://n/-770000000000-0")
        );
        assert_eq!(super::bundle_id_in("Sent payload with 5 bytes"), None);
    }
}
