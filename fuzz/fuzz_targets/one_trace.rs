//! The ONE's external events files (sim/src/trace.rs).
//!
//! Input: the trace's text. Properties: events come out in time order with
//! two distinct hosts, and written back as `CONN` and `C` lines they parse
//! to the same trace.
#![no_main]

use std::fmt::Write;

use ferry_sim::trace::{self, Trace};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(t) = trace::parse(&text, "fuzz") else { return };
    assert!(t.connections.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    assert!(t.messages.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    assert!(t.connections.iter().all(|c| c.a != c.b && c.a > 0 && c.b > 0));
    assert!(t.messages.iter().all(|m| m.from != m.to && m.from > 0 && m.to > 0));

    // Written back merged by time (connections first at equal times).
    let mut lines: Vec<(u64, u8, String)> = Vec::new();
    for c in &t.connections {
        let state = if c.up { "up" } else { "down" };
        lines.push((c.time_ms, 0, format!("CONN {} {} {state}", c.a - 1, c.b - 1)));
    }
    for m in &t.messages {
        lines.push((m.time_ms, 1, format!("C {} n{} n{} {}", m.id, m.from - 1, m.to - 1, m.size)));
    }
    lines.sort_by_key(|(time, kind, _)| (*time, *kind));
    let mut out = String::new();
    for (time, _, line) in &lines {
        let _ = writeln!(out, "{}.{:03} {line}", time / 1000, time % 1000);
    }
    let again: Trace = match trace::parse(&out, "rewritten") {
        Ok(a) => a,
        Err(e) => panic!("a rewritten trace does not parse: {e}\n{out}"),
    };
    assert_eq!(again, t, "a rewritten trace differs");
});
