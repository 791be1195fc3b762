//! `lora-sim-channel`: a simulated LoRa channel behind pseudo-terminals
//! (see `ferry_cla_lora::sim`), for tests and demos without radios.
//!
//! ```text
//! lora-sim-channel --dir DIR [--nodes 2] [--loss 0.1] [--seed 1] [--time-scale 1]
//!                  [--sf 7] [--bw 125000] [--cr 5] [--preamble 8]
//! ```
//!
//! Prints `radio <i> <device>` per node, then `ready`; runs until its
//! standard input closes (or a signal), then prints its counters as one
//! JSON line.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use ferry_cla_lora::airtime::RadioParams;
use ferry_cla_lora::sim::{ChannelConfig, SimChannel};

fn usage(msg: &str) -> ! {
    eprintln!("lora-sim-channel: {msg}");
    eprintln!("usage: lora-sim-channel --dir DIR [--nodes N] [--loss P] [--seed S] [--time-scale K] [--sf SF] [--bw HZ] [--cr 5..8] [--preamble N]");
    std::process::exit(2)
}

fn value<T: std::str::FromStr>(flag: &str, v: Option<String>) -> T {
    let v = v.unwrap_or_else(|| usage(&format!("{flag} needs a value")));
    v.parse().unwrap_or_else(|_| usage(&format!("{flag}: \"{v}\" is not a valid value")))
}

fn main() {
    let mut cfg = ChannelConfig { nodes: 2, radio: RadioParams::default(), loss: 0.0, seed: 1, time_scale: 1 };
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--dir" => dir = Some(value(&flag, args.next())),
            "--nodes" => cfg.nodes = value(&flag, args.next()),
            "--loss" => cfg.loss = value(&flag, args.next()),
            "--seed" => cfg.seed = value(&flag, args.next()),
            "--time-scale" => cfg.time_scale = value(&flag, args.next()),
            "--sf" => cfg.radio.spreading_factor = value(&flag, args.next()),
            "--bw" => cfg.radio.bandwidth_hz = value(&flag, args.next()),
            "--cr" => cfg.radio.coding_rate = value(&flag, args.next()),
            "--preamble" => cfg.radio.preamble_symbols = value(&flag, args.next()),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let dir = dir.unwrap_or_else(|| usage("--dir is required"));
    if !(0.0..=1.0).contains(&cfg.loss) {
        usage("--loss must be between 0 and 1");
    }
    if !(6..=12).contains(&cfg.radio.spreading_factor) || !(5..=8).contains(&cfg.radio.coding_rate) {
        usage("--sf must be 6..=12 and --cr 5..=8");
    }
    if cfg.nodes < 2 || cfg.time_scale == 0 || cfg.radio.bandwidth_hz == 0 {
        usage("--nodes must be at least 2, --time-scale and --bw above 0");
    }
    let channel = SimChannel::start(cfg.clone(), &dir).unwrap_or_else(|e| {
        eprintln!("lora-sim-channel: cannot create the ptys in {}: {e}", dir.display());
        std::process::exit(1)
    });
    let mut out = std::io::stdout().lock();
    for i in 0..cfg.nodes {
        let _ = writeln!(out, "radio {i} {}", channel.device(i).display());
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    drop(out);
    // Run until stdin closes.
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    let s = channel.stats();
    for line in channel.log() {
        eprintln!("lora-sim-channel: {line}");
    }
    println!(
        "{{\"packets\":{},\"delivered\":{},\"lost\":{},\"refused\":{},\"overflowed\":{}}}",
        s.packets, s.delivered, s.lost, s.refused, s.overflowed
    );
}
