//! `ferry-sim emulate` against real ferryd processes with the TCP plugin on
//! loopback. Needs ferryd and libferry_cla_tcp.so next to ferry-sim
//! (`cargo build --workspace --all-targets`, as scripts/test does).

use std::path::PathBuf;
use std::time::Duration;

use ferry_sim::emulate::{emulate, Options};
use ferry_sim::scenario::Scenario;

fn built(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_ferry-sim")).parent().unwrap().to_path_buf();
    let p = dir.join(name);
    assert!(p.exists(), "{} is not built: run `cargo build --workspace --all-targets` first", p.display());
    p
}

fn options(run: PathBuf, ferryd: PathBuf, tcp_plugin: PathBuf, time_scale: f64) -> Options {
    Options { ferryd, tcp_plugin, time_scale, dir: run, poll: Duration::from_millis(50), max_payload: 4096 }
}

#[test]
fn ferryd_nodes_carry_a_bundle_across_two_disrupted_links() {
    let dir = tempfile::tempdir().unwrap();
    // 1 meets 2 from 20 s to 60 s, 2 meets 3 from 80 s to 120 s. A (1 → 3 at
    // 0 s) can only get there through 2, after 80 s; B (1 → 3 at 130 s) and
    // C (3 → 1 at 10 s) cannot get there at all.
    std::fs::write(dir.path().join("plan.txt"), "a contact +20 +60 1 2 100000\na contact +80 +120 2 3 100000\n")
        .unwrap();
    std::fs::write(dir.path().join("msgs.txt"), "0 C A 0 2 1000\n10 C C 2 0 1000\n130 C B 0 2 1000\n").unwrap();
    std::fs::write(
        dir.path().join("s.toml"),
        "duration = 180\nlink_model = \"one\"\n[contacts]\nplan = \"plan.txt\"\n[messages]\ntrace = \"msgs.txt\"\n",
    )
    .unwrap();
    let sc = Scenario::load(&dir.path().join("s.toml")).unwrap();
    let opt = options(dir.path().join("run"), built("ferryd"), built("libferry_cla_tcp.so"), 10.0);
    let stats = emulate(&sc, &opt, &mut |_| {}).unwrap();
    assert_eq!((stats.created, stats.delivered, stats.hopcount_med), (3, 1, Some(2)));
    // Causality, not timing: it cannot arrive before the 2 → 3 contact.
    assert!(stats.latency_avg.unwrap() >= 80.0, "{stats:?}");
    // The simulation of the same scenario agrees on what gets through.
    let simulated = ferry_sim::engine::run(&sc, None).stats;
    assert_eq!((simulated.delivered, simulated.hopcount_med), (1, Some(2)));
}

#[test]
fn static_routes_and_contact_graph_routing_run_in_ferryd_too() {
    // The line of the test above, one way (CGR plans with directions): A
    // (1 → 3 at 0 s) waits at 1 for 1 → 2, at 2 for 2 → 3. Under CGR ferryd
    // has the plan rewritten in real time; under static routes 1 sends ipn:3
    // through 2 and 2 sends it straight to 3.
    for router in ["name = \"cgr\"", "name = \"static\"\nroutes = [{ pattern = \"ipn:3.*\", via = 2 }]"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plan.txt"), "a contact +20 +60 1 2 100000\na contact +80 +120 2 3 100000\n")
            .unwrap();
        std::fs::write(dir.path().join("msgs.txt"), "0 C A 0 2 1000\n").unwrap();
        let toml = format!(
            "duration = 130\nlink_model = \"one\"\n[router]\n{router}\n[contacts]\nplan = \"plan.txt\"\n\
             [messages]\ntrace = \"msgs.txt\"\n"
        );
        std::fs::write(dir.path().join("s.toml"), toml).unwrap();
        let sc = Scenario::load(&dir.path().join("s.toml")).unwrap();
        let opt = options(dir.path().join("run"), built("ferryd"), built("libferry_cla_tcp.so"), 10.0);
        let stats = emulate(&sc, &opt, &mut |_| {}).unwrap();
        assert_eq!(
            (stats.router.as_str(), stats.created, stats.delivered, stats.hopcount_med),
            (sc.router.name(), 1, 1, Some(2))
        );
        assert!(stats.latency_avg.unwrap() >= 80.0, "{stats:?}");
    }
}

#[test]
fn cgr_without_a_contact_plan_is_refused() {
    // Scenario files cannot say this (they refuse CGR without a plan); a
    // scenario built in code can.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plan.txt"), "a contact +0 +10 1 2 1000\n").unwrap();
    std::fs::write(dir.path().join("m.txt"), "0 C A 0 1 10\n").unwrap();
    std::fs::write(
        dir.path().join("s.toml"),
        "duration = 10\n[router]\nname = \"cgr\"\n[contacts]\nplan = \"plan.txt\"\n[messages]\ntrace = \"m.txt\"\n",
    )
    .unwrap();
    let mut sc = Scenario::load(&dir.path().join("s.toml")).unwrap();
    sc.plan = None;
    let opt = options(dir.path().join("run"), "ferryd".into(), "x.so".into(), 1.0);
    let e = emulate(&sc, &opt, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("needs the scenario's contact plan"), "{e}");
}
