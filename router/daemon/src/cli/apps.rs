//! `ferry apps list|start|stop|logs`: the node's WebAssembly apps
//! (`/ferry/apps`).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde::Deserialize;

use super::client::Api;
use super::fmt::{bytes, query_encode, table};

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Every app: state, endpoints, bundles delivered, traps, memory.
    List,
    /// Start a stopped (or failed) app.
    Start { name: String },
    /// Stop an app; its bundles wait in the store.
    Stop { name: String },
    /// The app's recent log lines (oldest first).
    Logs {
        name: String,
        /// How many lines.
        #[arg(short = 'n', long, default_value_t = 100)]
        lines: usize,
    },
}

#[derive(Debug, Deserialize)]
struct App {
    name: String,
    state: String,
    endpoints: Vec<String>,
    delivered: u64,
    failures: u64,
    traps: u64,
    restarts: u64,
    set_aside: u64,
    memory_bytes: u64,
    memory_cap: u64,
    cold_start_ms: Option<f64>,
    last_error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Line {
    unix_ms: u64,
    level: String,
    message: String,
}

/// Whether some application (an app, or a client) has registered `eid` on
/// the node: submissions to an endpoint nobody takes would only wait.
pub fn is_registered(api: &Api, eid: &str) -> Result<bool> {
    let eids: Vec<String> = api.get("/status/eids")?.json()?;
    Ok(eids.iter().any(|e| e == eid))
}

pub fn run(api: &Api, command: &AppsCommand, json: bool) -> Result<ExitCode> {
    match command {
        AppsCommand::List => {
            let answer = api.get("/ferry/apps")?;
            if json {
                println!("{}", answer.text());
                return Ok(ExitCode::SUCCESS);
            }
            let apps: Vec<App> = answer.json()?;
            if apps.is_empty() {
                println!("no apps configured ([[app]] in ferryd's config)");
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = apps
                .iter()
                .map(|a| {
                    vec![
                        a.name.clone(),
                        a.state.clone(),
                        a.endpoints.join(" "),
                        a.delivered.to_string(),
                        format!("{}/{}/{}", a.failures, a.traps, a.restarts),
                        a.set_aside.to_string(),
                        format!("{} of {}", bytes(a.memory_bytes), bytes(a.memory_cap)),
                        a.cold_start_ms.map(|m| format!("{m:.1} ms")).unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "app",
                        "state",
                        "endpoints",
                        "delivered",
                        "failed/traps/restarts",
                        "set aside",
                        "memory",
                        "start"
                    ],
                    &rows
                )
            );
            for a in apps.iter().filter(|a| a.last_error.is_some()) {
                println!("{}: last error: {}", a.name, a.last_error.as_deref().unwrap_or(""));
            }
        }
        AppsCommand::Start { name } => {
            println!("{}", api.post(&format!("/ferry/apps/start?name={}", query_encode(name)), vec![])?.text())
        }
        AppsCommand::Stop { name } => {
            println!("{}", api.post(&format!("/ferry/apps/stop?name={}", query_encode(name)), vec![])?.text())
        }
        AppsCommand::Logs { name, lines } => {
            let answer = api.get(&format!("/ferry/apps/logs?name={}&lines={lines}", query_encode(name)))?;
            if json {
                println!("{}", answer.text());
                return Ok(ExitCode::SUCCESS);
            }
            for l in answer.json::<Vec<Line>>()? {
                let secs = l.unix_ms / 1000;
                println!("{}.{:03} {:5} {}", secs, l.unix_ms % 1000, l.level, l.message);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
