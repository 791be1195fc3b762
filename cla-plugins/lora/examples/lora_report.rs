//! The LoRa link's figures, as JSON on stdout:
//!
//! ```sh
//! cargo run --release -p ferry-cla-lora --example lora_report
//! ```
//!
//! Computed in virtual time: two [`Link`](ferry_cla_lora::link::Link)s on
//! the seeded virtual channel ([`ferry_cla_lora::vsim`]), with the real
//! airtime formula and the real duty-cycle rules, the same protocol code the
//! plugin runs. Hours of radio time take milliseconds, so the figures are
//! exact for the model (independent loss per packet and receiver, no
//! collisions, instant storage at the receiver), not wall-clock measurements
//! of a radio.
//!
//! - `goodput`: bundle bytes acknowledged per second against loss rate, at
//!   SF7 and SF12 (125 kHz, 4/5, 8 preamble symbols, radio CRC on), with the
//!   duty cycle off (what the modulation allows) and at EU868's 1 %. The
//!   workload is a queue of 4 KiB bundles (SF7: 40, SF12: 8 with the duty
//!   cycle off; SF7: 16, SF12: 2 at 1 %); the clock runs from the first
//!   transmit to the last acknowledgement. Rows with `half_duplex` model
//!   radios that are deaf while they send and packets that collide.
//! - `ten_kib_at_1_percent`: the time from handing one 10 KiB bundle to the
//!   link until its final ACK, at 1 % over a sliding hour, with a fresh budget
//!   and with a budget that earlier traffic has just spent.

use ferry_cla_abi::Outcome;
use ferry_cla_lora::airtime::RadioParams;
use ferry_cla_lora::frame::{MAX_CHUNK, MAX_PACKET};
use ferry_cla_lora::link::LinkConfig;
use ferry_cla_lora::vsim::VirtualNet;

const S: f64 = 1e6;

fn radio(sf: u8) -> RadioParams {
    RadioParams { spreading_factor: sf, bandwidth_hz: 125_000, ..RadioParams::default() }
}

fn bundle(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// Two nodes that have discovered each other.
fn pair(cfg: &LinkConfig, loss: f64, seed: u64) -> VirtualNet {
    let mut net = VirtualNet::new(cfg, &["dtn://a/", "dtn://b/"], loss, seed);
    net.nodes[0].retry_failed = true;
    let ok = net.run_until(u64::MAX / 4, |n| n.nodes.iter().all(|x| x.link.neighbours().len() == 1));
    assert!(ok, "discovery");
    net
}

struct Run {
    seconds: f64,
    bytes: usize,
    data_frames: u64,
    retransmitted: u64,
    airtime_s: f64,
}

/// Sends `count` bundles of `size` from a to b; time from the first transmit
/// to the last acknowledgement.
fn transfer(net: &mut VirtualNet, count: u64, size: usize, first_id: u64) -> Run {
    let start = net.now;
    let before = net.nodes[0].link.stats();
    for i in 0..count {
        net.transmit(0, "dtn://b/", first_id + i, &bundle(size, first_id + i)).expect("queued");
    }
    let done = net.run_until(u64::MAX / 4, |n| (0..count).all(|i| n.nodes[0].outcome(first_id + i).is_some()));
    assert!(done, "transfers did not finish");
    for i in 0..count {
        assert_eq!(net.nodes[0].outcome(first_id + i), Some(Outcome::Sent));
    }
    let end = (0..count)
        .filter_map(|i| net.nodes[0].done.iter().find(|d| d.0 == first_id + i).map(|d| d.2))
        .max()
        .unwrap_or(start);
    let after = net.nodes[0].link.stats();
    Run {
        seconds: (end - start) as f64 / S,
        bytes: count as usize * size,
        data_frames: after.data_frames - before.data_frames,
        retransmitted: after.retransmitted_frames - before.retransmitted_frames,
        airtime_s: (after.airtime_us - before.airtime_us) as f64 / S,
    }
}

fn goodput_row(sf: u8, duty: f64, loss: f64, count: u64, half_duplex: bool) -> String {
    let cfg = LinkConfig::new(radio(sf), duty);
    let mut net = pair(&cfg, loss, 1000 + sf as u64 + (loss * 100.0) as u64);
    net.half_duplex = half_duplex;
    let r = transfer(&mut net, count, 4096, 1);
    let goodput = r.bytes as f64 / r.seconds;
    // What the modulation carries at best: full frames back to back, times the duty cycle.
    let ideal = MAX_CHUNK as f64 / (cfg.radio.airtime_us(MAX_PACKET) as f64 / S) * (duty / 100.0);
    format!(
        "{{\"sf\":{sf},\"bandwidth_hz\":125000,\"duty_cycle_percent\":{duty},\"loss\":{loss},\"half_duplex\":{half_duplex},\"bundles\":{count},\"bundle_bytes\":4096,\
         \"seconds\":{:.1},\"goodput_bytes_per_s\":{:.3},\"of_ideal\":{:.3},\"data_frames\":{},\"retransmitted_frames\":{},\"airtime_s\":{:.1}}}",
        r.seconds,
        goodput,
        goodput / ideal,
        r.data_frames,
        r.retransmitted,
        r.airtime_s
    )
}

fn ten_kib_row(sf: u8, loss: f64, spent_budget: bool) -> String {
    let cfg = LinkConfig::new(radio(sf), 1.0);
    let mut net = pair(&cfg, 0.0, 2000 + sf as u64);
    if spent_budget {
        // Earlier traffic that just spent (nearly) all of the data budget,
        // 90 % of 36 s: SF7 frames last 0.4 s, SF12 frames 9 s.
        let air = cfg.radio.airtime_us(MAX_PACKET) as f64;
        let frames = ((32.4e6 / air).floor() as usize).saturating_sub(1).max(1);
        transfer(&mut net, 1, frames * MAX_CHUNK, 500);
    }
    // The earlier traffic went over a clean channel, so that it spent
    // exactly what it was meant to; the 10 KiB bundle sees the loss.
    net.loss = loss;
    let r = transfer(&mut net, 1, 10 * 1024, 1);
    format!(
        "{{\"sf\":{sf},\"bandwidth_hz\":125000,\"loss\":{loss},\"budget\":\"{}\",\"seconds\":{:.1},\"hours\":{:.2},\"data_frames\":{},\"airtime_s\":{:.1}}}",
        if spent_budget { "spent by earlier traffic" } else { "fresh" },
        r.seconds,
        r.seconds / 3600.0,
        r.data_frames,
        r.airtime_s
    )
}

fn main() {
    let mut goodput = Vec::new();
    for (sf, count_off, count_duty) in [(7u8, 40u64, 16u64), (12, 8, 2)] {
        for loss in [0.0, 0.1, 0.3, 0.5] {
            goodput.push(goodput_row(sf, 100.0, loss, count_off, false));
            goodput.push(goodput_row(sf, 1.0, loss, count_duty, false));
        }
        // The same with deaf-while-sending radios whose packets collide.
        goodput.push(goodput_row(sf, 100.0, 0.1, count_off, true));
        goodput.push(goodput_row(sf, 1.0, 0.1, count_duty, true));
    }
    let mut ten = Vec::new();
    for sf in [7u8, 12] {
        for loss in [0.0, 0.1] {
            for spent in [false, true] {
                ten.push(ten_kib_row(sf, loss, spent));
            }
        }
    }
    println!(
        "{{\"model\":\"virtual time; Semtech airtime; sliding-hour duty cycle; independent loss per packet and receiver; no collisions\",\n\"goodput\":[\n  {}\n],\n\"ten_kib_at_1_percent\":[\n  {}\n]}}",
        goodput.join(",\n  "),
        ten.join(",\n  ")
    );
}
