//! The simulator's TOML scenario files (sim/src/scenario.rs), with the files
//! they name (contact plan, traces) served from the same input.
//!
//! Input: the scenario text, then optionally a NUL byte and the content of
//! every file the scenario names. Properties: a scenario that parses has a
//! positive duration, at least two nodes, and every input it names within
//! those nodes; its generated messages (the first few) stay within the
//! generator's hosts, sizes and time span.
#![no_main]

use std::path::Path;

use ferry_sim::scenario::{GeneratedMessages, Messages, Scenario};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (scenario, file) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(scenario);
    let file = String::from_utf8_lossy(file).into_owned();
    let read = |_: &Path| Ok(file.clone());
    let Ok(s) = Scenario::parse_with(&text, Path::new("fuzz/scenario.toml"), &read) else { return };
    assert!(s.duration_ms > 0);
    assert!(s.nodes >= 2);
    assert!(s.ttl_ms >= 1 && s.sample_ms >= 1);
    for c in &s.connections {
        assert!(c.a <= s.nodes && c.b <= s.nodes);
    }
    match &s.messages {
        Messages::Trace(m) => assert!(m.iter().all(|e| e.from <= s.nodes && e.to <= s.nodes)),
        Messages::Generator(g) => {
            assert!(1 <= g.hosts.0 && g.hosts.0 < g.hosts.1 && g.hosts.1 <= s.nodes);
            for (at, src, dst, size) in GeneratedMessages::new(g, s.seed).take(50) {
                assert!(at >= g.start_ms && at < g.end_ms);
                assert!(src != dst, "a message to itself");
                assert!((g.hosts.0..=g.hosts.1).contains(&src) && (g.hosts.0..=g.hosts.1).contains(&dst));
                assert!((g.size.0..=g.size.1).contains(&size));
            }
        }
    }
});
