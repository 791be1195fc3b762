//! `ferry id` and `ferry trust`: the node's identity and the keys it trusts.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde::Deserialize;

use super::client::Api;
use super::fmt::query_encode;

#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Trust NODE's Ed25519 public KEY (base64 as `ferry id` prints it, or hex);
    /// kept in the data folder's trust.toml.
    Add {
        /// The node ID, e.g. dtn://camp/
        node: String,
        key: String,
    },
    /// The trusted keys: this node's, the config's [[trust]], and those added.
    List,
    /// Stop trusting a key added with `ferry trust add`.
    Remove { node: String },
}

#[derive(Debug, Deserialize)]
struct NodeIdentity {
    node_id: String,
    public_key: String,
}

#[derive(Debug, Deserialize)]
struct TrustEntry {
    node: String,
    key: String,
    from: String,
}

/// `ferry id`: the node ID and public key, and the line a peer runs to trust it.
pub fn id(api: &Api, json: bool) -> Result<ExitCode> {
    let answer = api.get("/ferry/id")?;
    if json {
        println!("{}", answer.text());
        return Ok(ExitCode::SUCCESS);
    }
    let id: NodeIdentity = answer.json()?;
    println!("node id     {}", id.node_id);
    println!("public key  {} (ed25519, base64)", id.public_key);
    println!("on a peer:  ferry trust add {} {}", id.node_id, id.public_key);
    Ok(ExitCode::SUCCESS)
}

pub fn trust(api: &Api, command: &TrustCommand, json: bool) -> Result<ExitCode> {
    match command {
        TrustCommand::Add { node, key } => {
            let a =
                api.post(&format!("/ferry/trust/add?node={}&key={}", query_encode(node), query_encode(key)), vec![])?;
            println!("{}", a.text());
        }
        TrustCommand::Remove { node } => {
            let a = api.post(&format!("/ferry/trust/remove?node={}", query_encode(node)), vec![])?;
            println!("{}", a.text());
        }
        TrustCommand::List => {
            let answer = api.get("/ferry/trust")?;
            if json {
                println!("{}", answer.text());
                return Ok(ExitCode::SUCCESS);
            }
            let entries: Vec<TrustEntry> = answer.json()?;
            for e in entries {
                println!("{:<28} {}  ({})", e.node, e.key, e.from);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
