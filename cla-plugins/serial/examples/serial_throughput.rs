//! Throughput of the serial plugin over a pseudo-terminal pair: two
//! in-process instances, one sending a batch of bundles to the other, timed
//! from the first `transmit` to the last `Sent` (which waits for the
//! receiver's verdict, as with a real store).
//!
//! A pty carries bytes as fast as the CPU moves them and ignores the baud
//! rate, so the relay between the two masters paces each direction at
//! `baud / 10` bytes/s (8N1) to stand for a real line; the unpaced rows show
//! what the protocol costs when the line is not the limit.
//!
//! ```sh
//! cargo run --release -p ferry-cla-serial --example serial_throughput
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use ferry_cla_abi::Outcome;

struct Row {
    line: &'static str,
    baud: u64,
    pace: bool,
    count: u64,
    size: usize,
}

fn run(row: &Row) {
    let relay = Relay::new();
    let settings = format!("baud = {}\n", row.baud);
    let a = Node::start(&in_process(), "dtn://a/", &relay.settings(0, &settings));
    let b = Node::start(&in_process(), "dtn://b/", &relay.settings(1, &settings));
    let peer = a.wait_up(1);
    b.wait_up(1);
    if row.pace {
        relay.set_faults(Faults { pace: row.baud / 10, ..Faults::default() });
    }
    let bundles: Vec<Vec<u8>> = (0..row.count).map(|i| bundle(row.size, i)).collect();
    let carried_before = relay.carried()[0];
    let started = Instant::now();
    for (i, x) in bundles.iter().enumerate() {
        a.transmit(peer, i as u64, x);
    }
    for i in 0..row.count {
        assert_eq!(a.wait_done(i), Outcome::Sent, "bundle {i}");
    }
    let secs = started.elapsed().as_secs_f64();
    let payload = (row.count as usize * row.size) as f64;
    let wire = (relay.carried()[0] - carried_before) as f64;
    println!(
        "| {} | {} | {} × {} B | {:.1} | {:.0} | {} | {:.0} % |",
        row.line,
        row.baud,
        row.count,
        row.size,
        row.count as f64 / secs,
        payload / secs,
        if row.pace { (row.baud / 10).to_string() } else { "—".into() },
        100.0 * payload / wire,
    );
    assert_eq!(b.host.received().len() as u64, row.count);
}

fn main() {
    println!("| line | baud | bundles | bundles/s | payload B/s | line B/s | payload / bytes on the wire |");
    println!("|---|---|---|---|---|---|---|");
    let rows = [
        Row { line: "paced", baud: 115_200, pace: true, count: 100, size: 1024 },
        Row { line: "paced", baud: 115_200, pace: true, count: 4, size: 64 * 1024 },
        Row { line: "paced", baud: 1_000_000, pace: true, count: 10, size: 100 * 1024 },
        Row { line: "pty, unpaced", baud: 115_200, pace: false, count: 2000, size: 1024 },
        Row { line: "pty, unpaced", baud: 115_200, pace: false, count: 10, size: 1 << 20 },
    ];
    for row in &rows {
        run(row);
    }
}
