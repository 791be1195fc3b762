//! `ferry-sim`: run a scenario, sweep routers and seeds, measure scale, or
//! replay a contact plan against real ferryd processes. See the crate docs
//! and the README's "Simulating a DTN".

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ferry_core::router::RouterSpec;
use ferry_sim::bench::{self, BenchSize};
use ferry_sim::report::{to_csv, to_json, Report};
use ferry_sim::scenario::{RouterParams, Scenario, ROUTERS};
use ferry_sim::{emulate, plot, sweep};
use indicatif::{ProgressBar, ProgressStyle};

/// A simulation allocates and frees a few small blocks per transfer (bundle
/// bytes, metadata vectors, actions); mimalloc does that faster than the
/// system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ferry-sim", version, about = "Discrete-event DTN simulator driving ferry-core nodes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario: report.json, report.csv and SVG plots in --out.
    Run {
        scenario: PathBuf,
        /// Output folder (default: <scenario>-out next to the scenario).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the scenario's router (keeps its parameters if it is the same one).
        #[arg(long)]
        router: Option<String>,
        /// Override spray-and-wait's L.
        #[arg(long)]
        copies: Option<u64>,
        /// Override the seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Show a progress bar even when stderr is not a terminal; --quiet hides it.
        #[arg(long)]
        progress: bool,
        #[arg(long)]
        quiet: bool,
    },
    /// Run a scenario under several routers, copy counts and seeds in parallel:
    /// sweep.csv, sweep.json and comparison.svg (plus delivery, latency and
    /// buffer plots of the first seed of each router) in --out.
    Sweep {
        scenario: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Comma-separated routers (default: the scenario's).
        #[arg(long, value_delimiter = ',')]
        routers: Vec<String>,
        /// Comma-separated spray-and-wait L values.
        #[arg(long, value_delimiter = ',')]
        copies: Vec<u64>,
        /// Seeds: a list (1,2,3) or a range (1-10).
        #[arg(long, default_value = "1")]
        seeds: String,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long)]
        quiet: bool,
    },
    /// Print a random ION contact plan (the kind `bench` runs): contacts of
    /// 30 s to 5 min at 250 kB/s between random pairs.
    Plan {
        #[arg(long)]
        nodes: u64,
        #[arg(long)]
        contacts: u64,
        /// Simulated seconds the contacts fall in.
        #[arg(long)]
        duration: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Replay a scenario (3–16 nodes) against real ferryd processes on
    /// loopback in compressed time, and print its figures beside the
    /// simulation's. Writes emulate.json in --dir.
    Emulate {
        scenario: PathBuf,
        /// Simulated seconds per real second.
        #[arg(long, default_value_t = 60.0)]
        time_scale: f64,
        /// ferryd (default: next to ferry-sim).
        #[arg(long)]
        ferryd: Option<PathBuf>,
        /// The TCP plugin (default: libferry_cla_tcp.so next to ferry-sim).
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Folder for the nodes' data, configs and logs (default: a new temp folder).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Endpoint polling interval, real milliseconds.
        #[arg(long, default_value_t = 50)]
        poll_ms: u64,
    },
    /// Generate a scenario of the given size, run it, print wall time, events/s and peak memory.
    Bench {
        #[arg(long, default_value_t = 1000)]
        nodes: u64,
        #[arg(long, default_value_t = 24_000)]
        contacts: u64,
        #[arg(long, default_value_t = 10_000)]
        messages: u64,
        /// Bytes per message.
        #[arg(long, default_value_t = 100_000)]
        size: u64,
        /// Simulated seconds.
        #[arg(long, default_value_t = 43_200)]
        duration: u64,
        /// Buffer per node in bytes (default: unlimited).
        #[arg(long)]
        buffer: Option<u64>,
        #[arg(long, default_value = "epidemic")]
        router: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write the run's full report (JSON) here, to compare runs byte for byte.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write the scenario as the ONE's inputs into this folder (events.txt,
        /// settings.txt, reports/) instead of running it; run them with
        /// `./one.sh -b 1 DIR/settings.txt` from a ONE checkout.
        #[arg(long, value_name = "DIR")]
        export_one: Option<PathBuf>,
        /// The ONE's Scenario.updateInterval in the exported settings (s).
        #[arg(long, default_value_t = 0.1, value_name = "SECONDS")]
        one_update_interval: f64,
        #[arg(long)]
        quiet: bool,
    },
}

/// Errors as a sentence and its causes on one line, exit status 1 (no
/// `Debug` dump or backtrace, whatever RUST_BACKTRACE says).
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-sim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { scenario, out, router, copies, seed, progress, quiet } => {
            let mut sc = Scenario::load(&scenario)?;
            if router.is_some() || copies.is_some() {
                let name = router.unwrap_or_else(|| sc.router.name().to_owned());
                sc = sc.with_router(&name, RouterParams { copies }).map_err(anyhow::Error::msg)?;
            }
            if let Some(s) = seed {
                sc.seed = s;
            }
            let out = out.unwrap_or_else(|| default_out(&scenario));
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            let show = !quiet && (progress || std::io::stderr().is_terminal());
            let report = run_with_bar(&sc, show);
            write(&out.join("report.json"), &to_json(&report))?;
            write(&out.join("report.csv"), &to_csv(&report))?;
            write_run_plots(&out, &[&report])?;
            print!("{}", to_csv(&report));
            eprintln!("wrote report.json, report.csv, delivery.svg, latency_cdf.svg, buffer.svg in {}", out.display());
        }
        Command::Sweep { scenario, out, routers, copies, seeds, threads, quiet } => {
            let sc = Scenario::load(&scenario)?;
            let routers = if routers.is_empty() { vec![sc.router.name().to_owned()] } else { routers };
            for r in &routers {
                if !ROUTERS.contains(&r.as_str()) {
                    bail!("unknown router `{r}` (expected one of {})", ROUTERS.join(", "));
                }
            }
            let seeds = parse_seeds(&seeds)?;
            let points = sweep::points(&routers, &copies, &seeds);
            let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            let bar = bar(points.len() as u64, !quiet, "{bar:40} {pos}/{len} runs, {elapsed} (eta {eta})");
            let reports = sweep::run(&sc, &points, threads, &|| bar.inc(1)).map_err(anyhow::Error::msg)?;
            bar.finish_and_clear();
            write(&out.join("sweep.csv"), &sweep::to_csv(&points, &reports))?;
            let json = serde_json::to_string_pretty(&reports)? + "\n";
            write(&out.join("sweep.json"), &json)?;
            let summary = sweep::summary(&points, &reports);
            write(&out.join("comparison.svg"), &plot::comparison(&summary)?)?;
            // Time series of the first seed of each router, side by side.
            let firsts: Vec<&Report> =
                points.iter().zip(&reports).filter(|(p, _)| p.seed == seeds[0]).map(|(_, r)| r).collect();
            write_run_plots(&out, &firsts)?;
            print!("{}", sweep::to_csv(&points, &reports));
            eprintln!(
                "{} runs on {threads} threads; wrote sweep.csv, sweep.json and plots in {}",
                reports.len(),
                out.display()
            );
        }
        Command::Emulate { scenario, time_scale, ferryd, plugin, dir, poll_ms } => {
            let sc = Scenario::load(&scenario)?;
            let here = std::env::current_exe()?.parent().map(Path::to_path_buf).unwrap_or_default();
            let dir = dir.unwrap_or_else(|| std::env::temp_dir().join(format!("ferry-emulate-{}", std::process::id())));
            let opt = emulate::Options {
                ferryd: ferryd.unwrap_or_else(|| here.join("ferryd")),
                tcp_plugin: plugin.unwrap_or_else(|| here.join("libferry_cla_tcp.so")),
                time_scale,
                dir: dir.clone(),
                poll: std::time::Duration::from_millis(poll_ms.max(1)),
                max_payload: 64 * 1024,
            };
            for (what, p) in [("ferryd", &opt.ferryd), ("the TCP plugin", &opt.tcp_plugin)] {
                if !p.exists() {
                    bail!("{what} is not at {} (build it: cargo build -p ferry-daemon -p ferry-cla-tcp)", p.display());
                }
            }
            let emulated = emulate::emulate(&sc, &opt, &mut |line| eprintln!("{line}"))?;
            write(&dir.join("emulate.json"), &(serde_json::to_string_pretty(&emulated)? + "\n"))?;
            let simulated = ferry_sim::engine::run(&sc, None).stats;
            let f = |v: Option<f64>| v.map_or("-".into(), |x| format!("{x:.3}"));
            println!("figure          simulated   emulated (ferryd)");
            println!("created         {:<11} {}", simulated.counts.created, emulated.created);
            println!("delivered       {:<11} {}", simulated.delivered, emulated.delivered);
            println!("delivery_prob   {:<11} {}", f(simulated.delivery_prob), f(emulated.delivery_prob));
            println!("latency_avg     {:<11} {}", f(simulated.latency_avg), f(emulated.latency_avg));
            println!("latency_med     {:<11} {}", f(simulated.latency_med), f(emulated.latency_med));
            println!("hopcount_avg    {:<11} {}", f(simulated.hopcount_avg), f(emulated.hopcount_avg));
        }
        Command::Plan { nodes, contacts, duration, seed } => {
            if nodes < 2 {
                bail!("a plan needs at least 2 nodes");
            }
            print!("{}", bench::generate_plan(nodes, contacts, duration, seed));
        }
        Command::Bench {
            nodes,
            contacts,
            messages,
            size,
            duration,
            buffer,
            router,
            seed,
            report,
            export_one,
            one_update_interval,
            quiet,
        } => {
            let size = BenchSize { nodes, contacts, messages, size, duration_s: duration, buffer, seed };
            let base = bench::scenario(&size, RouterSpec::Epidemic);
            let sc = base.with_router(&router, RouterParams::default()).map_err(anyhow::Error::msg)?;
            if let Some(dir) = export_one {
                let x = bench::export_one(&sc, &dir, one_update_interval).map_err(anyhow::Error::msg)?;
                println!("scenario      {} ({} router, seed {seed})", sc.name, sc.router.name());
                println!(
                    "events        {} ({} connections, {} contacts merged into one already up, {} messages)",
                    x.events_file.display(),
                    x.events.connections,
                    x.events.merged,
                    x.events.messages
                );
                println!("settings      {}", x.settings_file.display());
                println!(
                    "report        {}",
                    x.report_dir.join(format!("{}_MessageStatsReport.txt", sc.name)).display()
                );
                return Ok(());
            }
            let bar = bar(
                sc.duration_ms,
                !quiet && std::io::stderr().is_terminal(),
                "{bar:40} {percent}% simulated, {elapsed}",
            );
            let mut tick = |done: u64, _total: u64| bar.set_position(done);
            let r = bench::run(&sc, Some(&mut tick));
            bar.finish_and_clear();
            let s = &r.report.stats;
            println!("scenario      {} ({} router, seed {seed})", sc.name, sc.router.name());
            println!("simulated     {} s", duration);
            println!("events        {}", r.report.events);
            println!("wall time     {:.3} s", r.wall_s);
            println!("events/s      {:.0}", r.events_per_s);
            match r.peak_rss_kb {
                Some(kb) => println!("peak memory   {:.1} MiB", kb as f64 / 1024.0),
                None => println!("peak memory   unknown"),
            }
            println!(
                "figures       created {} delivered {} delivery_prob {} relayed {} dropped {} latency_avg {} s",
                s.counts.created,
                s.delivered,
                s.delivery_prob.map_or("-".into(), |p| format!("{p:.4}")),
                s.counts.relayed,
                s.counts.dropped,
                s.latency_avg.map_or("-".into(), |l| format!("{l:.1}")),
            );
            if let Some(path) = report {
                write(&path, &to_json(&r.report))?;
            }
        }
    }
    Ok(())
}

fn default_out(scenario: &Path) -> PathBuf {
    let stem = scenario.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "scenario".into());
    scenario.with_file_name(format!("{stem}-out"))
}

fn bar(len: u64, show: bool, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

fn run_with_bar(sc: &Scenario, show: bool) -> Report {
    let bar = bar(sc.duration_ms, show, "{bar:40} {percent}% simulated, {elapsed} (eta {eta})");
    let mut tick = |done: u64, _total: u64| bar.set_position(done);
    let report = ferry_sim::engine::run(sc, Some(&mut tick));
    bar.finish_and_clear();
    report
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn write_run_plots(dir: &Path, reports: &[&Report]) -> Result<()> {
    write(&dir.join("delivery.svg"), &plot::delivery_over_time(reports)?)?;
    write(&dir.join("latency_cdf.svg"), &plot::latency_cdf(reports)?)?;
    write(&dir.join("buffer.svg"), &plot::buffer_occupancy(reports)?)?;
    Ok(())
}

/// `1,2,5` or `1-10`.
fn parse_seeds(text: &str) -> Result<Vec<u64>> {
    if let Some((a, b)) = text.split_once('-') {
        let (a, b): (u64, u64) = (a.trim().parse()?, b.trim().parse()?);
        if a > b || b - a >= 100_000 {
            bail!("seed range {text}: expected FIRST-LAST with FIRST ≤ LAST and at most 100000 seeds");
        }
        return Ok((a..=b).collect());
    }
    let seeds: Vec<u64> = text
        .split(',')
        .map(|s| s.trim().parse().with_context(|| format!("seed `{s}` is not a number")))
        .collect::<Result<_>>()?;
    if seeds.is_empty() {
        bail!("no seeds");
    }
    Ok(seeds)
}
