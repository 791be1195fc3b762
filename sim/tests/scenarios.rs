//! Scenarios small enough to work out by hand, with the exact figures they
//! must give; determinism; scenario errors.

use ferry_core::bundle::BundleMeta;
use ferry_sim::engine::Sim;
use ferry_sim::report::{to_csv, to_json, Report};
use ferry_sim::scenario::Scenario;

/// Writes `files` (name, text) into a temp dir and loads `scenario.toml` from it.
fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, Scenario) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let sc = Scenario::load(&dir.path().join("scenario.toml")).unwrap();
    (dir, sc)
}

fn load_err(files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let e = Scenario::load(&dir.path().join("scenario.toml")).unwrap_err().to_string();
    e.replace(&dir.path().display().to_string(), "DIR")
}

fn run(sc: &Scenario) -> Report {
    Sim::new(sc).run(None)
}

/// Messages (by creation index) whose bundles `node` holds, with its copy counts.
fn held(sim: &Sim<'_>, node: u64) -> Vec<(usize, Option<u64>)> {
    let mut v: Vec<(usize, Option<u64>)> =
        sim.node(node).unwrap().bundles().map(|m: &BundleMeta| (sim.message_of(&m.id).unwrap(), m.copies)).collect();
    v.sort();
    v
}

const LINE_PLAN: &str = "a contact +10 +20 1 2 1000\na contact +30 +40 2 3 1000\n";
const ONE_MESSAGE: &str = "0 C M1 0 2 500\n"; // ONE hosts 0 and 2: nodes 1 and 3

fn line(router: &str, plan: &str) -> (tempfile::TempDir, Scenario) {
    let toml = format!(
        "duration = 100\n[router]\nname = \"{router}\"\n[contacts]\nplan = \"plan.txt\"\n[messages]\ntrace = \"msgs.txt\"\n"
    );
    load(&[("scenario.toml", &toml), ("plan.txt", plan), ("msgs.txt", ONE_MESSAGE)])
}

#[test]
fn a_line_of_three_nodes_delivers_at_the_computed_time() {
    // Node 1 holds the 500 B message until 1→2 opens at 10 s (0.5 s to send at
    // 1000 B/s); node 2 holds it until 2→3 opens at 30 s: delivered at 30.5 s
    // after 2 hops. Epidemic keeps node 1's copy; node 2 drops its copy once
    // the destination has it (removed, after 20 s in its buffer).
    let (_d, sc) = line("epidemic", LINE_PLAN);
    let r = run(&sc);
    let s = &r.stats;
    assert_eq!(
        (
            s.counts.created,
            s.counts.started,
            s.counts.relayed,
            s.counts.aborted,
            s.counts.dropped,
            s.counts.removed,
            s.delivered
        ),
        (1, 2, 2, 0, 0, 1, 1)
    );
    assert_eq!(s.delivery_prob, Some(1.0));
    assert_eq!(s.overhead_ratio, Some(1.0));
    assert_eq!((s.latency_avg, s.latency_med), (Some(30.5), Some(30.5)));
    assert_eq!((s.hopcount_avg, s.hopcount_med), (Some(2.0), Some(2)));
    assert_eq!((s.buffertime_avg, s.buffertime_med), (Some(20.0), Some(20.0)));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[test]
fn light_time_delays_arrival_but_not_the_sender() {
    // A 2 s one-way light time on 2→3: the bundle leaves node 2 at 30.5 s and
    // arrives at 32.5 s.
    let (_d, sc) = line("epidemic", &format!("{LINE_PLAN}a range +0 +100 2 3 2\n"));
    let s = run(&sc).stats;
    assert_eq!(s.latency_avg, Some(32.5));
    assert_eq!(s.buffertime_avg, Some(20.0));
}

#[test]
fn contact_graph_routing_follows_the_plan_and_releases_each_copy() {
    // Single copy: node 1 and node 2 each release the bundle once the next hop has it.
    let (_d, sc) = line("cgr", LINE_PLAN);
    let s = run(&sc).stats;
    assert_eq!((s.counts.started, s.counts.relayed, s.counts.removed, s.delivered), (2, 2, 2, 1));
    assert_eq!(s.latency_avg, Some(30.5));
    assert_eq!(s.overhead_ratio, Some(1.0));
    // Buffer times: node 1 from 0 to 10.5 s, node 2 from 10.5 to 30.5 s.
    assert_eq!(s.buffertime_avg, Some(15.25));
}

#[test]
fn a_contact_too_short_for_the_bundle_is_not_used_by_cgr() {
    // 1→3 directly at 5 s but only 0.4 s long: 500 B need 0.5 s. CGR waits for
    // the line instead; epidemic tries the short contact and is cut off.
    let plan = format!("{LINE_PLAN}a contact +5 +5 1 3 1000\n");
    let plan = plan.replace("+5 +5", "+5 +6"); // 1 s long ...
    let plan = plan.replace("1 3 1000", "1 3 400"); // ... at 400 B/s: 1.25 s needed
    let (_d, sc) = line("cgr", &plan);
    let s = run(&sc).stats;
    assert_eq!((s.counts.started, s.counts.aborted, s.latency_avg), (2, 0, Some(30.5)));
    let (_d, sc) = line("epidemic", &plan);
    let s = run(&sc).stats;
    assert_eq!((s.counts.started, s.counts.aborted, s.latency_avg), (3, 1, Some(30.5)));
}

fn star(router: &str, copies: u64) -> (tempfile::TempDir, Scenario) {
    // Node 1 (host 0) meets nodes 2, 3, 4 and 5 in turn; the destination,
    // node 6, is never met.
    let trace = "1 CONN 0 1 up\n2 CONN 0 1 down\n3 CONN 0 2 up\n4 CONN 0 2 down\n\
                 5 CONN 0 3 up\n6 CONN 0 3 down\n7 CONN 0 4 up\n8 CONN 0 4 down\n";
    let toml = format!(
        "duration = 20\nnodes = 6\nlink_model = \"one\"\n[router]\nname = \"{router}\"\ncopies = {copies}\n\
         [contacts]\ntrace = \"trace.txt\"\nrate = 1000\n[messages]\ntrace = \"msgs.txt\"\n"
    );
    load(&[("scenario.toml", &toml), ("trace.txt", trace), ("msgs.txt", "0 C M1 0 5 100\n")])
}

#[test]
fn binary_spray_and_wait_halves_the_copies() {
    let (_d, sc) = star("binary-spray-and-wait", 8);
    let mut sim = Sim::new(&sc);
    sim.advance(20_000, None);
    // 8 → node 2 gets 4, node 3 gets 2, node 4 gets 1; node 1 keeps 1 and
    // waits: node 5 gets nothing.
    assert_eq!(held(&sim, 1), vec![(0, Some(1))]);
    assert_eq!(held(&sim, 2), vec![(0, Some(4))]);
    assert_eq!(held(&sim, 3), vec![(0, Some(2))]);
    assert_eq!(held(&sim, 4), vec![(0, Some(1))]);
    assert_eq!(held(&sim, 5), vec![]);
    let s = sim.finish().stats;
    assert_eq!((s.counts.started, s.counts.relayed, s.delivered), (3, 3, 0));
}

#[test]
fn vanilla_spray_and_wait_gives_one_copy_per_encounter() {
    let (_d, sc) = star("spray-and-wait", 3);
    let mut sim = Sim::new(&sc);
    sim.advance(20_000, None);
    assert_eq!(held(&sim, 1), vec![(0, Some(1))]);
    assert_eq!(held(&sim, 2), vec![(0, Some(1))]);
    assert_eq!(held(&sim, 3), vec![(0, Some(1))]);
    assert_eq!(held(&sim, 4), vec![]);
    assert_eq!(sim.finish().stats.counts.started, 2);
}

#[test]
fn a_full_buffer_drops_the_oldest_bundle_not_being_sent() {
    // 1000 B buffers, 400 B messages to node 3 (never met). Node 1 starts
    // sending M0 to node 2 at 0 s (4 s at 100 B/s). M1 (1 s) queues behind
    // it. M2 (2 s) needs room: M0 is oldest but being sent, so M1 goes.
    let toml = "duration = 20\nnodes = 3\nbuffer_size = 1000\nlink_model = \"one\"\n\
                [contacts]\ntrace = \"trace.txt\"\nrate = 100\n[messages]\ntrace = \"msgs.txt\"\n";
    let msgs = "0 C M0 0 2 400\n1 C M1 0 2 400\n2 C M2 0 2 400\n";
    let (_d, sc) = load(&[("scenario.toml", toml), ("trace.txt", "0 CONN 0 1 up\n"), ("msgs.txt", msgs)]);
    let mut sim = Sim::new(&sc);
    sim.advance(20_000, None);
    assert_eq!(held(&sim, 1), vec![(0, None), (2, None)]);
    assert_eq!(held(&sim, 2), vec![(0, None), (2, None)]);
    assert_eq!(sim.buffer_used(1), Some(800));
    let s = sim.finish().stats;
    assert_eq!(
        (s.counts.created, s.counts.started, s.counts.relayed, s.counts.dropped, s.counts.removed, s.delivered),
        (3, 2, 2, 1, 0, 0)
    );
    // M1 was held from 1 s to 2 s.
    assert_eq!(s.buffertime_avg, Some(1.0));
    assert_eq!(s.delivery_prob, Some(0.0));
    assert_eq!(s.overhead_ratio, None);
}

#[test]
fn the_one_model_aborts_a_transfer_when_the_link_goes_down() {
    // 1000 B at 100 B/s need 10 s; the connection lasts 5 s.
    let toml = "duration = 20\nlink_model = \"one\"\n[contacts]\ntrace = \"trace.txt\"\nrate = 100\n\
                [messages]\ntrace = \"msgs.txt\"\n";
    let (_d, sc) = load(&[
        ("scenario.toml", toml),
        ("trace.txt", "0 CONN 0 1 up\n5 CONN 0 1 down\n"),
        ("msgs.txt", "0 C M 0 1 1000\n"),
    ]);
    let s = run(&sc).stats;
    assert_eq!((s.counts.started, s.counts.aborted, s.counts.relayed, s.delivered), (1, 1, 0, 0));
}

#[test]
fn the_one_model_sends_one_bundle_at_a_time_in_either_direction() {
    // Both nodes have a 1000 B message for the other at 0 s on a 1000 B/s
    // connection: one after the other, delivered at 1 s and 2 s. Under ION's
    // model each direction has its own link: both at 1 s.
    let msgs = "0 C A 0 1 1000\n0 C B 1 0 1000\n";
    for (model, latencies) in [("one", (1.5, 2.0)), ("ion", (1.0, 1.0))] {
        let toml = format!(
            "duration = 20\nlink_model = \"{model}\"\n[contacts]\ntrace = \"trace.txt\"\nrate = 1000\n\
             [messages]\ntrace = \"msgs.txt\"\n"
        );
        let (_d, sc) = load(&[("scenario.toml", &toml), ("trace.txt", "0 CONN 0 1 up\n"), ("msgs.txt", msgs)]);
        let s = run(&sc).stats;
        assert_eq!(s.delivered, 2, "{model}");
        assert_eq!((s.latency_avg, s.latency_med), (Some(latencies.0), Some(latencies.1)), "{model}");
    }
}

#[test]
fn prophet_hands_bundles_to_better_carriers_only() {
    // Node 2 meets node 3 (the destination) often; node 1 then meets node 2
    // and node 4. Node 1 gives its bundle for 3 to node 2 only.
    let trace = "0 CONN 1 2 up\n1 CONN 1 2 down\n2 CONN 0 1 up\n3 CONN 0 1 down\n4 CONN 0 3 up\n5 CONN 0 3 down\n";
    let toml = "duration = 10\nnodes = 4\nlink_model = \"one\"\n[router]\nname = \"prophet\"\n\
                [contacts]\ntrace = \"trace.txt\"\nrate = 1000\n[messages]\ntrace = \"msgs.txt\"\n";
    let (_d, sc) = load(&[("scenario.toml", toml), ("trace.txt", trace), ("msgs.txt", "0 C M 0 2 100\n")]);
    let mut sim = Sim::new(&sc);
    sim.advance(10_000, None);
    assert_eq!(held(&sim, 2).len(), 1);
    assert_eq!(held(&sim, 4).len(), 0);
    assert_eq!(sim.finish().stats.counts.started, 1);
}

fn random_scenario(seed: u64) -> (tempfile::TempDir, Scenario) {
    let plan = ferry_sim::bench::generate_plan(20, 200, 3600, seed);
    let toml = format!(
        "seed = {seed}\nduration = 3600\nnodes = 20\nbuffer_size = 2_000_000\n[router]\nname = \"binary-spray-and-wait\"\n\
         [contacts]\nplan = \"plan.txt\"\n[messages]\ninterval = [10, 30]\nsize = [10_000, 200_000]\n"
    );
    load(&[("scenario.toml", &toml), ("plan.txt", &plan)])
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let (_a, sc) = random_scenario(7);
    let (_b, again) = random_scenario(7);
    let (first, second) = (run(&sc), run(&again));
    assert!(
        first.stats.delivered > 0 && first.stats.counts.dropped > 0,
        "a scenario that exercises something: {:?}",
        first.stats
    );
    assert_eq!(to_json(&first), to_json(&second));
    assert_eq!(to_csv(&first), to_csv(&second));
    let (_c, other) = random_scenario(8);
    assert_ne!(to_json(&run(&other)), to_json(&first));
}

#[test]
fn scenario_errors_say_where_and_what() {
    let plan = ("plan.txt", LINE_PLAN);
    let msgs = ("msgs.txt", ONE_MESSAGE);
    let base = "duration = 100\n[contacts]\nplan = \"plan.txt\"\n[messages]\ntrace = \"msgs.txt\"\n";
    let e = load_err(&[("scenario.toml", &format!("speed = 3\n{base}")), plan, msgs]);
    assert!(e.contains("scenario.toml") && e.contains("unknown field `speed`") && e.contains("line 1"), "{e}");
    let e = load_err(&[("scenario.toml", &format!("{base}[router]\nname = \"epidemic\"\ncopies = 3\n")), plan, msgs]);
    assert!(e.ends_with("[router] copies does not apply to epidemic"), "{e}");
    let e = load_err(&[("scenario.toml", &format!("{base}[router]\nname = \"flood\"\n")), plan, msgs]);
    assert!(e.contains("unknown router `flood`"), "{e}");
    let e = load_err(&[("scenario.toml", base), ("plan.txt", "a contact +0 +10 1 2\n"), msgs]);
    assert_eq!(e, "DIR/plan.txt:1: expected a rate in bytes per second after `2`");
    let e = load_err(&[("scenario.toml", base), plan, ("msgs.txt", "0 C M1 0 1\n")]);
    assert_eq!(e, "DIR/msgs.txt:1: expected a size in bytes after `the destination host`");
    let e = load_err(&[("scenario.toml", base), msgs]);
    assert!(e.starts_with("cannot read DIR/plan.txt"), "{e}");
    let e = load_err(&[("scenario.toml", &base.replace("duration = 100", "duration = -1")), plan, msgs]);
    assert!(e.ends_with("duration must be a number of seconds ≥ 0, not -1"), "{e}");
    let e = load_err(&[("scenario.toml", &format!("nodes = 2\n{base}")), plan, msgs]);
    assert!(e.ends_with("the inputs name node 3, but nodes = 2"), "{e}");
    let e = load_err(&[("scenario.toml", "duration = 10\n[messages]\ninterval = [1, 2]\n")]);
    assert!(e.ends_with("[contacts] needs a plan or a trace"), "{e}");
}
