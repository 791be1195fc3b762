//! `ferry`, the command-line client of ferryd.
//!
//! # Layout
//! - this module: the command line (clap) and the exit-code policy;
//! - [`client`]: a blocking HTTP client for ferryd's dtn7-compatible API, with
//!   the error messages a person can act on;
//! - [`send`], [`recv`]: create a bundle, receive bundles on an endpoint;
//! - [`bundles`], [`status`]: inspect and manage the node's store;
//! - [`decode`]: decode and validate a bundle offline (no daemon involved);
//! - [`doctor`]: check a node's setup and say what to fix;
//! - [`mod@bench`]: measure durable ingest through the API;
//! - [`bench_link`]: measure a link between two ferryd (and two dtnd, for comparison);
//! - [`usb`]: sync with a plugged-in stick now (the usbdir plugin);
//! - [`bench_usb`]: two ferryd through a folder, next to NNCP;
//! - [`apps`], [`mail`], [`git`]: the WebAssembly apps, and submission to
//!   the email and gitsync apps;
//! - [`security`]: `ferry id` and `ferry trust` (the node's key, trusted peers);
//! - [`tls`]: `ferry tls gen` (the node's certificate for TCPCLv4 over TLS);
//! - [`fmt`]: small text helpers shared by the commands (hex, durations, tables).
//!
//! Exit codes: 0 success; 1 failure (an error message on stderr), and for
//! `bundle decode` "the bundle is invalid"; 2 for `bundle decode` when the input
//! could not be read at all (grep's convention: 1 is a verdict, 2 is trouble).

pub mod apps;
pub mod bench;
pub mod bench_apps;
pub mod bench_link;
pub mod bench_usb;
pub mod bundles;
pub mod client;
pub mod decode;
pub mod doctor;
pub mod fmt;
pub mod git;
pub mod mail;
pub mod recv;
pub mod security;
pub mod send;
pub mod status;
pub mod tls;
pub mod usb;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// The address ferryd's API listens on by default (dtn7-rs's port).
pub const DEFAULT_API: &str = "http://127.0.0.1:3000";

/// Command-line client of ferryd, the Ferry DTN router.
#[derive(Debug, Parser)]
#[command(name = "ferry", version)]
pub struct Cli {
    /// Base URL of ferryd's HTTP API.
    #[arg(long, global = true, env = "FERRY_API", default_value = DEFAULT_API, value_name = "URL")]
    pub api: String,
    /// File holding ferryd's API token (FERRY_TOKEN, if set, wins); default:
    /// the data folder's api-token, when readable.
    #[arg(long, global = true, env = "FERRY_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a file (or standard input) as a bundle.
    Send(send::SendArgs),
    /// Register an endpoint and receive bundles addressed to it.
    Recv(recv::RecvArgs),
    /// List, show and delete the bundles in the node's store.
    Bundles {
        #[command(subcommand)]
        command: bundles::BundlesCommand,
    },
    /// Show the node's status: node ID, bundles, store, registrations, peers.
    Status,
    /// Work on bundle files without a daemon.
    Bundle {
        #[command(subcommand)]
        command: BundleCommand,
    },
    /// Exchange bundles with a USB stick (the usbdir plugin) now.
    Usb {
        #[command(subcommand)]
        command: usb::UsbCommand,
    },
    /// Manage the node's WebAssembly apps.
    Apps {
        #[command(subcommand)]
        command: apps::AppsCommand,
    },
    /// Submit a mail to the email app (sendmail-compatible: reads the message on stdin).
    Mail(mail::MailArgs),
    /// Git repositories synchronised by the gitsync app.
    Git {
        #[command(subcommand)]
        command: git::GitCommand,
    },
    /// Show this node's ID and Ed25519 public key (for peers' `ferry trust add`).
    Id,
    /// The peers' keys this node trusts (signatures, encryption).
    Trust {
        #[command(subcommand)]
        command: security::TrustCommand,
    },
    /// The node's TLS certificate for TCPCLv4 over TLS (no daemon involved).
    Tls {
        #[command(subcommand)]
        command: tls::TlsCommand,
    },
    /// Check a node's config, data folder, store, plugins, apps, TLS files
    /// and peers, and say what to fix.
    Doctor(doctor::DoctorArgs),
    /// Print a shell completion script: `ferry completions bash > /etc/bash_completion.d/ferry`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Measure ferryd's performance.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Decode and validate a bundle; print it as JSON. Exit 0 if valid, 1 if not.
    Decode(DecodeArgs),
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The input is hex text (whitespace and lines starting with '#' are ignored).
    #[arg(long)]
    pub hex: bool,
    /// The bundle file; '-' reads standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Push bundles into ferryd's durable store as fast as it takes them.
    Ingest(bench::IngestArgs),
    /// Two ferryd on loopback over TCPCLv4, next to two dtn7-rs dtnd: bundles/s,
    /// MB/s, ping round trip and the disk's ceiling, as JSON.
    Link(bench_link::LinkArgs),
    /// Two ferryd exchanging bundles through a folder (the usbdir plugin),
    /// next to NNCP (nncp-file, nncp-xfer, nncp-toss) in the same run, as JSON.
    Usb(bench_usb::UsbArgs),
    /// The WebAssembly app host: bundles/s through a no-op app, cold start,
    /// memory per app, as JSON.
    Apps(bench_apps::AppsArgs),
}

/// Runs the command line of this process and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ferry: {}", fmt::error_chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    let token = client::token(cli.token_file.as_deref())?;
    let base = cli.api.clone();
    let api = move || client::Api::new(&base).map(|a| a.with_token(token.clone()));
    match cli.command {
        Command::Send(args) => send::run(&api()?, &args, json),
        Command::Recv(args) => recv::run(&api()?, &args, json),
        Command::Bundles { command } => bundles::run(&api()?, &command, json),
        Command::Status => status::run(&api()?, json),
        Command::Bundle { command: BundleCommand::Decode(args) } => Ok(decode::run(&args)),
        Command::Apps { command } => apps::run(&api()?, &command, json),
        Command::Mail(args) => mail::run(&api()?, &args),
        Command::Git { command } => git::run(&api()?, &command, json),
        Command::Bench { command: BenchCommand::Ingest(args) } => bench::run(&cli.api, &args),
        Command::Bench { command: BenchCommand::Link(args) } => bench_link::run(&args),
        Command::Bench { command: BenchCommand::Usb(args) } => bench_usb::run(&args),
        Command::Usb { command } => usb::run(&api()?, &command, json),
        Command::Bench { command: BenchCommand::Apps(args) } => bench_apps::run(&args),
        Command::Id => security::id(&api()?, json),
        Command::Trust { command } => security::trust(&api()?, &command, json),
        Command::Tls { command } => tls::run(&command, json),
        Command::Doctor(args) => doctor::run(&args, &cli.api, json),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}
