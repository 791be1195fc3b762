//! ferryd: the Ferry DTN daemon.
//!
//! `ferryd [--config FILE] [--data-dir DIR] [--api ADDR:PORT] [--node-id EID]`
//!
//! Runs with no config at all: the data folder is `$FERRY_DATA_DIR` or
//! `$XDG_DATA_HOME/ferry` (`~/.local/share/ferry`), the node ID is generated
//! once and kept in the store, and the API listens on 127.0.0.1:3000 (dtnd's
//! port). Flags override the config file. Logs go to stderr (RUST_LOG, default
//! `info`); stdout gets two machine-readable lines: `ferryd: node id <eid>` and
//! `ferryd: api listening on <addr>`. SIGINT and SIGTERM shut it down
//! gracefully (exit status 0).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use ferry_daemon::config::{Overrides, Settings};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "ferryd", version, about = "Ferry: a Bundle Protocol 7 (RFC 9171) DTN router")]
struct Args {
    /// Config file (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data folder (the store lives in DIR/store).
    #[arg(short, long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the HTTP/websocket API (port 0: any free port).
    #[arg(short, long, value_name = "ADDR:PORT")]
    api: Option<String>,
    /// Node ID (dtn://name/ or ipn:N.0); replaces the stored one.
    #[arg(short, long, value_name = "EID")]
    node_id: Option<String>,
    /// Load no TCP plugin unless the config has a `[[cla]]` table (tests, API-only nodes).
    #[arg(long)]
    no_default_cla: bool,
}

fn main() -> ExitCode {
    if !ferry_daemon::memory::tune_allocator() {
        eprintln!("ferryd: warning: could not fix malloc's mmap threshold; memory may grow with bundle volume");
    }
    let args = Args::parse();
    let flags = Overrides {
        data_dir: args.data_dir,
        api: args.api,
        node_id: args.node_id,
        no_default_cla: args.no_default_cla,
    };
    let settings = match Settings::load(args.config.as_deref(), &flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ferryd: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(settings.log.as_deref().unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }

    match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = chain(&e);
            tracing::error!("{message}");
            eprintln!("ferryd: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once (our errors already name their
/// source in their own message).
fn chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

fn run(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let stop = stop_signal()?;
        ferry_daemon::server::run(settings, stop).await?;
        anyhow::Ok(())
    })
}

/// Resolves on the first SIGINT or SIGTERM.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}
